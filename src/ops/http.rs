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
//!
//! Control endpoints accept requests from loopback, or with
//! `Authorization: Bearer <token>` when `--admin-token-file` is set.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// The dashboard page.
pub const DASHBOARD: &str = include_str!("dashboard.html");
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
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
}

/// What the listener needs.
#[derive(Clone, Debug)]
pub struct Ops {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// To the agent loop.
    pub cmds: mpsc::UnboundedSender<Cmd>,
    /// Bearer token for control endpoints from other hosts.
    pub token: Option<String>,
}

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header("cache-control", "no-store")
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"internal error"))))
}

fn authorized(ops: &Ops, peer: SocketAddr, req: &Request<Incoming>) -> bool {
    if peer.ip().is_loopback() {
        return true;
    }
    let Some(token) = &ops.token else {
        return false;
    };
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| constant_time_eq(t.trim().as_bytes(), token.as_bytes()))
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
        (Method::POST, "/drain") | (Method::POST, "/undrain") => {
            if !authorized(&ops, peer, &req) {
                reply(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    "forbidden: use loopback or Authorization: Bearer <token>\n",
                )
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
        (_, "/metrics" | "/status" | "/healthz" | "/readyz" | "/" | "/drain" | "/undrain") => {
            reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            )
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    Ok(r)
}

/// Serves until the listener fails (the agent drops the task at shutdown).
pub async fn serve(listener: TcpListener, ops: Ops) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let ops = ops.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(ops.clone(), peer, req));
            let conn = http1::Builder::new()
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            drop(permit);
        });
    }
}
