//! The operations HTTP listener (`--metrics-addr`, default 127.0.0.1:9947):
//!
//! | path | method | what |
//! |---|---|---|
//! | `/metrics` | GET | Prometheus text exposition |
//! | `/status` | GET | JSON: node, members, VIP groups (owner, holders, phase), quorum, events |
//! | `/healthz` | GET | 200 while the agent loop answers |
//! | `/readyz` | GET | 200 when running, healthy, not draining and a quorum of voters is reachable |
//! | `/` | GET | the dashboard (self-contained page, refreshes every second) |
//! | `/drain`, `/undrain` | POST | move this node's VIPs away gracefully, and back |
//! | `/reload` | POST | re-read the config file and apply the difference (409 when refused) |
//!
//! Control endpoints accept requests from loopback, or with
//! `Authorization: Bearer <token>` when `--admin-token-file` is set. A browser must
//! not be able to drive them for someone else: a POST that names a foreign `Origin`
//! (or `Sec-Fetch-Site: cross-site`/`same-site`) is refused whoever sends it, and a
//! token-less POST must name the listener by address (`Host` an IP literal or
//! `localhost`), which a DNS-rebinding page cannot.
//!
//! Limits (a slow or hostile client must not starve `wackamole health` or the
//! liveness probe): request headers must arrive within [`HEADER_TIMEOUT`] (also the
//! keep-alive idle limit), a connection lives at most [`CONNECTION_LIFETIME`], at most
//! [`MAX_CONNECTIONS`] are served at once and [`MAX_PER_PEER`] per remote address,
//! and [`LOOPBACK_RESERVE`] more slots are kept for loopback clients.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// The dashboard page.
pub const DASHBOARD: &str = include_str!("dashboard.html");
/// Most connections served at once (loopback's reserve aside).
pub const MAX_CONNECTIONS: usize = 64;
/// Most connections from one remote address at once.
pub const MAX_PER_PEER: usize = 8;
/// Slots kept for clients on this host (loopback, or connecting to the listener's
/// own address from that address: `wackamole health`, a kubelet's probe of a
/// host-network pod) when the others are taken.
pub const LOOPBACK_RESERVE: usize = 4;
/// Longest wait for a request's headers (and between requests on a kept-alive
/// connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest life of one connection.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(10);
/// How long a handler waits for the agent loop.
pub const LOOP_TIMEOUT: Duration = Duration::from_secs(1);

/// A request the agent loop answers.
#[derive(Debug)]
pub enum Cmd {
    /// The `/status` document, and readiness.
    Status(oneshot::Sender<(String, bool)>),
    /// Bring the metrics up to date (before a scrape).
    Sync(oneshot::Sender<()>),
    /// Drain on (true) or off.
    Drain(bool, oneshot::Sender<String>),
    /// Re-read the configuration: (applied or unchanged, the JSON answer).
    Reload(oneshot::Sender<(bool, String)>),
}

/// The bearer token, replaced by a reload.
pub type TokenCell = Arc<std::sync::RwLock<Option<String>>>;

/// What the listener needs.
#[derive(Clone, Debug)]
pub struct Ops {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// To the agent loop.
    pub cmds: mpsc::UnboundedSender<Cmd>,
    /// Bearer token for control endpoints from other hosts.
    pub token: TokenCell,
}

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("cache-control", "no-store")
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"internal error"))))
}

/// Loopback, IPv4-mapped loopback (`::ffff:127.0.0.1`) included.
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Why a control request is refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Sent by a page of another site (or the same site's other origin).
    CrossOrigin,
    /// Neither loopback with an address as `Host`, nor a valid token.
    Unauthorized,
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether `host` (a `Host` header) names the listener by address: an IP literal,
/// with or without a port, or `localhost`. A DNS-rebinding page reaches us under
/// its own domain name, never under one of these.
fn host_is_address(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // "[v6]:port", "v4:port", "name:port"
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

/// The authorization rule of the control endpoints (see the module doc).
fn control_allowed(
    token: Option<&str>,
    peer: IpAddr,
    host: Option<&str>,
    origin: Option<&str>,
    fetch_site: Option<&str>,
    auth: Option<&str>,
) -> Result<(), Refusal> {
    if let Some(o) = origin {
        // Our own dashboard's origin is exactly "http://" + the Host it was loaded from.
        let own = host.map(|h| format!("http://{h}"));
        if own.as_deref() != Some(o) {
            return Err(Refusal::CrossOrigin);
        }
    }
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Err(Refusal::CrossOrigin);
    }
    let token_ok = match (token, auth.and_then(|v| v.strip_prefix("Bearer "))) {
        (Some(t), Some(given)) => constant_time_eq(given.trim().as_bytes(), t.as_bytes()),
        _ => false,
    };
    if token_ok || (is_loopback(peer) && host.is_some_and(host_is_address)) {
        Ok(())
    } else {
        Err(Refusal::Unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ask<T>(ops: &Ops, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    ops.cmds.send(make(tx)).ok()?;
    tokio::time::timeout(LOOP_TIMEOUT, rx).await.ok()?.ok()
}

async fn handle(
    ops: Ops,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let r = match (method, path.as_str()) {
        (Method::GET, "/metrics") => {
            // Stale values are better than none if the loop is busy.
            let _ = ask(&ops, Cmd::Sync).await;
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                ops.metrics.render(),
            )
        }
        (Method::GET, "/status") => match ask(&ops, Cmd::Status).await {
            Some((doc, _)) => reply(StatusCode::OK, "application/json", doc),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "agent loop not answering\n",
            ),
        },
        (Method::GET, "/healthz") => match ask(&ops, Cmd::Status).await {
            Some(_) => reply(StatusCode::OK, "text/plain", "ok\n"),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "agent loop not answering\n",
            ),
        },
        (Method::GET, "/readyz") => match ask(&ops, Cmd::Status).await {
            Some((_, true)) => reply(StatusCode::OK, "text/plain", "ready\n"),
            Some((_, false)) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n"),
            None => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "agent loop not answering\n",
            ),
        },
        (Method::GET, "/") | (Method::GET, "/index.html") => {
            reply(StatusCode::OK, "text/html; charset=utf-8", DASHBOARD)
        }
        (Method::POST, "/drain" | "/undrain" | "/reload") => {
            let token = ops.token.read().unwrap_or_else(|e| e.into_inner()).clone();
            let verdict = control_allowed(
                token.as_deref(),
                peer.ip(),
                header(&req, "host"),
                header(&req, "origin"),
                header(&req, "sec-fetch-site"),
                header(&req, "authorization"),
            );
            if let Err(why) = verdict {
                reply(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    match why {
                        Refusal::CrossOrigin => "forbidden: cross-origin request\n",
                        Refusal::Unauthorized => {
                            "forbidden: use loopback (Host: an address) or Authorization: Bearer <token>\n"
                        }
                    },
                )
            } else if path == "/reload" {
                match ask(&ops, Cmd::Reload).await {
                    Some((true, msg)) => reply(StatusCode::OK, "application/json", msg),
                    Some((false, msg)) => reply(StatusCode::CONFLICT, "application/json", msg),
                    None => reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "agent loop not answering\n",
                    ),
                }
            } else {
                let on = path == "/drain";
                match ask(&ops, |tx| Cmd::Drain(on, tx)).await {
                    Some(msg) => reply(StatusCode::OK, "application/json", msg),
                    None => reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "agent loop not answering\n",
                    ),
                }
            }
        }
        (
            _,
            "/metrics" | "/status" | "/healthz" | "/readyz" | "/" | "/drain" | "/undrain"
            | "/reload",
        ) => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    Ok(r)
}

/// Connection slots: a shared pool, a per-address count, and loopback's reserve.
#[derive(Debug, Default)]
struct Slots {
    general: usize,
    reserve: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// Which pool a connection took its slot from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pool {
    General,
    Reserve,
}

impl Slots {
    /// Takes a slot for a connection from `peer` (`local`: from this host), if one
    /// is free.
    fn take(&mut self, peer: IpAddr, local: bool) -> Option<Pool> {
        let peer = peer.to_canonical();
        let mine = self.per_peer.get(&peer).copied().unwrap_or(0);
        let pool = if self.general < MAX_CONNECTIONS && (local || mine < MAX_PER_PEER) {
            self.general += 1;
            Pool::General
        } else if local && self.reserve < LOOPBACK_RESERVE {
            self.reserve += 1;
            Pool::Reserve
        } else {
            return None;
        };
        *self.per_peer.entry(peer).or_default() += 1;
        Some(pool)
    }

    fn give(&mut self, peer: IpAddr, pool: Pool) {
        let peer = peer.to_canonical();
        match pool {
            Pool::General => self.general -= 1,
            Pool::Reserve => self.reserve -= 1,
        }
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }
}

/// Serves until the listener fails (the agent drops the task at shutdown).
pub async fn serve(listener: TcpListener, ops: Ops) {
    let slots = Arc::new(Mutex::new(Slots::default()));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // From this host: loopback, or a connection to our own address from it (the
        // kernel picks the destination as the source); TCP's handshake means a
        // remote client cannot pose as either.
        let local = is_loopback(peer.ip())
            || stream
                .local_addr()
                .is_ok_and(|l| l.ip().to_canonical() == peer.ip().to_canonical());
        let taken = slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(peer.ip(), local);
        let Some(pool) = taken else {
            drop(stream);
            continue;
        };
        let (ops, slots) = (ops.clone(), slots.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(ops.clone(), peer, req));
            let conn = http1::Builder::new()
                .max_buf_size(16 * 1024)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            slots
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .give(peer.ip(), pool);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn control_requests_from_a_browser_on_another_site_are_refused() {
        let ok = |host, origin, site| control_allowed(None, LO, host, origin, site, None);
        assert_eq!(ok(Some("127.0.0.1:9947"), None, None), Ok(()));
        assert_eq!(ok(Some("localhost:9947"), None, None), Ok(()));
        assert_eq!(ok(Some("[::1]:9947"), None, None), Ok(()));
        // The dashboard itself, same origin.
        assert_eq!(
            ok(
                Some("127.0.0.1:9947"),
                Some("http://127.0.0.1:9947"),
                Some("same-origin")
            ),
            Ok(())
        );
        // A page elsewhere posting to us (simple request, no preflight).
        assert_eq!(
            ok(Some("127.0.0.1:9947"), Some("http://evil.example"), None),
            Err(Refusal::CrossOrigin)
        );
        assert_eq!(
            ok(Some("127.0.0.1:9947"), None, Some("cross-site")),
            Err(Refusal::CrossOrigin)
        );
        // DNS rebinding: same origin for the browser, but the Host is a name.
        assert_eq!(
            ok(
                Some("evil.example:9947"),
                Some("http://evil.example:9947"),
                None
            ),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(ok(None, None, None), Err(Refusal::Unauthorized));
        // IPv4-mapped loopback is loopback.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            control_allowed(None, mapped, Some("127.0.0.1:1"), None, None, None),
            Ok(())
        );
        // Other hosts need the token; with it, any Host will do.
        let far: IpAddr = "10.1.2.3".parse().unwrap();
        let t = Some("0123456789abcdef0123");
        assert_eq!(
            control_allowed(t, far, Some("node1:9947"), None, None, None),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            control_allowed(
                t,
                far,
                Some("node1:9947"),
                None,
                None,
                Some("Bearer 0123456789abcdef0123")
            ),
            Ok(())
        );
        // A token does not excuse a foreign origin.
        assert_eq!(
            control_allowed(
                t,
                far,
                Some("node1:9947"),
                Some("http://evil.example"),
                None,
                Some("Bearer 0123456789abcdef0123")
            ),
            Err(Refusal::CrossOrigin)
        );
    }

    #[test]
    fn one_peer_cannot_take_every_slot_and_loopback_keeps_a_reserve() {
        let mut s = Slots::default();
        let far: IpAddr = "10.1.2.3".parse().unwrap();
        let taken: Vec<Pool> = (0..MAX_PER_PEER + 5)
            .filter_map(|_| s.take(far, false))
            .collect();
        assert_eq!(taken.len(), MAX_PER_PEER);
        // Many peers fill the shared pool...
        for i in 0..MAX_CONNECTIONS {
            let _ = s.take(
                IpAddr::V4(std::net::Ipv4Addr::new(
                    10,
                    9,
                    (i / 250) as u8,
                    (i % 250) as u8,
                )),
                false,
            );
        }
        assert_eq!(s.general, MAX_CONNECTIONS);
        assert_eq!(s.take("10.200.0.1".parse().unwrap(), false), None);
        // ...and loopback still gets in, up to its reserve.
        let lo: Vec<Pool> = (0..LOOPBACK_RESERVE + 2)
            .filter_map(|_| s.take(LO, true))
            .collect();
        assert_eq!(lo, vec![Pool::Reserve; LOOPBACK_RESERVE]);
        s.give(LO, Pool::Reserve);
        assert_eq!(s.take(LO, true), Some(Pool::Reserve));
        for p in taken {
            s.give(far, p);
        }
        assert!(!s.per_peer.contains_key(&far));
    }
}
