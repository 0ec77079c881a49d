//! The agent: a thin tokio shell around the engine.
//!
//! One task owns the [`Engine`] and everything it talks to; it waits on the UDP
//! socket, the engine's next deadline, the kernel worker's completions, the ARP
//! thread's probe results and the shutdown signal, feeds each to the engine with
//! `now` read after it arrived, and carries out the engine's actions:
//!
//! * `Send` → sealed with the [`Envelope`] and sent on the one UDP socket;
//! * `Kernel` → the kernel worker thread (addresses, gate), in order;
//! * `Probe`/`Announce` → the ARP thread;
//! * `Event` → logs.
//!
//! Start-up: validate everything (flags, key, interface, capabilities, the host
//! lock, the UDP port) before touching the kernel; then the engine's first action
//! is the flush of stale VIPs and gate entries. Shutdown: release every VIP, then
//! leave the cluster, then remove the gate and exit — within about a second.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::addr::arp;
use crate::addr::gate;
use crate::addr::kernel::KernelIo;
use crate::addr::rtnl::Rtnl;
use crate::cli::{OpsOptions, Settings};
use crate::clock;
use crate::core::config::{FenceKind, GroupId};
use crate::core::engine::{Action, Engine, EngineConfig, EngineInit, Event, KernelOp};
use crate::core::ownership::KernelOutcome;
use crate::net::envelope::Envelope;
use crate::ops::health::{self, Report as HealthReport};
use crate::ops::hooks::{HookEvent, HookKind, Hooks};
use crate::ops::http::{self, Cmd};
use crate::ops::metrics::{Metrics, ShellCounters};
use crate::ops::status::{self, Journal};

/// Largest datagram read.
const RECV_BUF: usize = 2048;
/// Most datagrams handled per wake-up before timers get a turn.
const MAX_BURST: usize = 64;
/// Timer coalescing grid.
const TIMER_GRID: Duration = Duration::from_millis(5);
/// Most rounds of "perform kernel operations, hand the results back" per wake-up:
/// the loop then serves its other inputs before going on (a bound, not a target).
const MAX_KERNEL_ROUNDS: usize = 16;
/// After SIGTERM, the longest the graceful release may take before the agent exits
/// anyway (removing what it can; the gate stays closed over anything left).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);
/// A failing kernel operation is logged at most this often with the same error.
const KERNEL_LOG_EVERY: Duration = Duration::from_secs(10);

/// A one-shot timer on the engine's clock (CLOCK_BOOTTIME), armed at an absolute
/// deadline in nanoseconds.
struct EngineTimer(nix::sys::timerfd::TimerFd);

impl EngineTimer {
    fn new() -> io::Result<EngineTimer> {
        use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
        TimerFd::new(
            ClockId::CLOCK_BOOTTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map(EngineTimer)
        .map_err(io::Error::from)
    }

    /// Fires at `deadline` (at once if it has passed).
    fn arm(&self, deadline: u64) -> io::Result<()> {
        use nix::sys::time::TimeSpec;
        use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
        // A zero time would disarm the timer; BOOTTIME is never zero after boot.
        let at = TimeSpec::from_duration(Duration::from_nanos(deadline.max(1)));
        self.0
            .set(
                Expiration::OneShot(at),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )
            .map_err(io::Error::from)
    }

    /// Consumes an expiry, if one is pending.
    fn clear(&self) {
        let _ = nix::unistd::read(&self.0, &mut [0u8; 8]);
    }
}

impl std::os::fd::AsRawFd for EngineTimer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// How start-up failed; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag names something that does not exist (exit 64).
    #[error("{0}")]
    Usage(String),
    /// Missing privilege (exit 77).
    #[error("{0}")]
    Permission(String),
    /// A needed facility is missing or busy (exit 69).
    #[error("{0}")]
    Unavailable(String),
}

impl StartError {
    /// The process exit code (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Usage(_) => 64,
            StartError::Permission(_) => 77,
            StartError::Unavailable(_) => 69,
        }
    }
}

/// Options of the shell that the core does not see.
#[derive(Clone, Debug)]
pub struct ShellOptions {
    /// Gratuitous ARP / NA packets per announcement.
    pub garp_count: u32,
    /// Spacing of those packets.
    pub garp_interval: Duration,
    /// Re-announce held VIPs this often (zero: never).
    pub garp_refresh: Duration,
    /// Addresses that get directed ARP replies after each announcement.
    pub notify: Vec<std::net::Ipv4Addr>,
    /// Secrets for the envelope (empty with `--insecure`).
    pub secrets: Vec<Vec<u8>>,
    /// Metrics, status API, health checks and hooks.
    pub ops: OpsOptions,
}

enum ArpJob {
    Probe {
        group: GroupId,
        addrs: Vec<IpAddr>,
    },
    Announce {
        group: GroupId,
        addrs: Vec<IpAddr>,
    },
    /// The interface changed (deleted, re-created): open the raw socket again.
    Reopen,
}

/// Groups that may be announced, with the lease-derived deadline of their latest
/// kernel write. Raw ARP/NA frames bypass the gate, so the ARP thread checks this
/// map — under its lock — before every frame: a queued burst stops the moment the
/// group is released or its lease lapses (e.g. after a freeze).
type Announceable = std::sync::Arc<
    std::sync::Mutex<std::collections::BTreeMap<GroupId, crate::core::time::Instant>>,
>;

/// Gratuitous ARP (0) and unsolicited NA (1) frames sent by the ARP thread.
type Announced = Arc<[AtomicU64; 2]>;

struct ProbeDone {
    group: GroupId,
    conflict: bool,
}

fn map_io(what: &str, e: io::Error) -> StartError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => StartError::Permission(format!(
            "{what}: permission denied; run as root or grant CAP_NET_ADMIN and CAP_NET_RAW"
        )),
        io::ErrorKind::AddrInUse => StartError::Unavailable(format!("{what}: address in use")),
        _ if e.raw_os_error() == Some(nix::errno::Errno::EPERM as i32) => {
            StartError::Permission(format!(
                "{what}: operation not permitted; run as root or grant CAP_NET_ADMIN and CAP_NET_RAW"
            ))
        }
        _ => StartError::Unavailable(format!("{what}: {e}")),
    }
}

/// Everything acquired at start-up, before the engine runs.
pub struct Prepared {
    settings: Settings,
    opts: ShellOptions,
    socket: std::net::UdpSocket,
    _lock: UnixListener,
    http: Option<std::net::TcpListener>,
    ifname: String,
    index: u32,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("ifname", &self.ifname)
            .finish_non_exhaustive()
    }
}

/// Whether `x` and `y` are in the same `/p` subnet (same family).
fn same_subnet(x: IpAddr, y: IpAddr, p: u8) -> bool {
    match (x, y) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(p.min(32))).unwrap_or(0);
            u32::from(x) & mask == u32::from(y) & mask
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(p.min(128)))
                .unwrap_or(0);
            u128::from(x) & mask == u128::from(y) & mask
        }
        _ => false,
    }
}

/// Whether `vip` fits the interface whose permanent addresses are `own`.
fn check_vip_on_link(vip: IpAddr, ifname: &str, own: &[(IpAddr, u8)]) -> Result<(), String> {
    if own.iter().any(|(a, _)| *a == vip) {
        return Err(format!(
            "--vip: {vip} is a permanent address of {ifname}; a VIP must not be a node address"
        ));
    }
    for (a, p) in own {
        if a.is_ipv4() != vip.is_ipv4() {
            continue;
        }
        if same_subnet(vip, *a, *p)
            && let Some(what) = crate::core::config::subnet_edge(vip, *p)
        {
            return Err(format!(
                "--vip: {vip} is the {what} address of {ifname}'s subnet {a}/{p}; pick a host address"
            ));
        }
    }
    let family = |v4: bool| own.iter().any(|(a, _)| a.is_ipv4() == v4);
    if !family(vip.is_ipv4()) {
        return Err(if vip.is_ipv4() {
            format!(
                "--vip: {vip} is IPv4 but {ifname} has no IPv4 address; give {ifname} one or use an IPv6 VIP"
            )
        } else {
            format!(
                "--vip: {vip} is IPv6 but {ifname} has no IPv6 address (is IPv6 disabled on it?); enable IPv6 on {ifname} or use an IPv4 VIP"
            )
        });
    }
    Ok(())
}

/// Checks everything that can fail before any kernel state is touched: the
/// interface, the address family of each VIP, privileges, the host lock (one agent
/// per node name per network namespace), and the UDP port.
pub fn prepare(settings: Settings, opts: ShellOptions) -> Result<Prepared, StartError> {
    let ifname = settings.interface.clone().ok_or_else(|| {
        StartError::Usage("--interface: required to run (the interface the VIPs live on)".into())
    })?;
    let mut rtnl = Rtnl::new().map_err(|e| map_io("netlink", e))?;
    let link = rtnl
        .link(&ifname)
        .map_err(|e| StartError::Unavailable(e.to_string()))?
        .ok_or_else(|| {
            StartError::Usage(format!(
                "--interface: no interface named {ifname:?} in this network namespace"
            ))
        })?;
    // A VIP must not be one of the interface's own addresses, nor the network or
    // broadcast address of one of its subnets, and the interface must speak the
    // VIP's family.
    let own: Vec<(IpAddr, u8)> = rtnl
        .addrs(link.index)
        .map_err(|e| StartError::Unavailable(e.to_string()))?
        .into_iter()
        .filter(|a| a.valid_lft == u32::MAX)
        .map(|a| (a.addr, a.prefix_len))
        .collect();
    for g in &settings.cluster.groups {
        for v in &g.vips {
            check_vip_on_link(v.addr, &ifname, &own).map_err(StartError::Usage)?;
        }
    }
    // Privileges: raw sockets (ARP) need CAP_NET_RAW; address changes CAP_NET_ADMIN.
    arp::Link::open(&ifname).map_err(|e| map_io(&format!("raw socket on {ifname}"), e))?;
    if settings.cluster.fence == FenceKind::Gate {
        match std::process::Command::new("nft").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => return Err(StartError::Unavailable("`nft` (nftables) is not installed: install it, or run with --fence address (slower failover)".into())),
        }
    }
    let lock_name = format!(
        "wackamole-{:016x}-{}",
        settings.cluster.cluster_id(),
        settings.node.name
    );
    let lock = std::os::unix::net::SocketAddr::from_abstract_name(lock_name.as_bytes())
        .and_then(|a| UnixListener::bind_addr(&a))
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                StartError::Unavailable(format!(
                    "another agent named {} already runs here (host lock @{lock_name})",
                    settings.node.name
                ))
            } else {
                map_io("host lock", e)
            }
        })?;
    let socket = std::net::UdpSocket::bind(settings.bind)
        .map_err(|e| map_io(&format!("--bind {}", settings.bind), e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| map_io("socket", e))?;
    let http = match opts.ops.listen {
        Some(a) => {
            let l = std::net::TcpListener::bind(a)
                .map_err(|e| map_io(&format!("--metrics-addr {a}"), e))?;
            l.set_nonblocking(true).map_err(|e| map_io("listener", e))?;
            Some(l)
        }
        None => None,
    };
    Ok(Prepared {
        settings,
        opts,
        socket,
        _lock: lock,
        http,
        ifname,
        index: link.index,
    })
}

fn spawn_arp(
    ifname: &str,
    probe_wait: Duration,
    opts: &ShellOptions,
    results: mpsc::UnboundedSender<ProbeDone>,
    allowed: Announceable,
    sent: Announced,
) -> io::Result<std_mpsc::Sender<ArpJob>> {
    let mut link = Some(arp::Link::open(ifname)?);
    let ifname = ifname.to_string();
    let (tx, rx) = std_mpsc::channel::<ArpJob>();
    let (count, interval, notify) = (
        opts.garp_count.max(1),
        opts.garp_interval,
        opts.notify.clone(),
    );
    std::thread::Builder::new()
        .name("wm-arp".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while let Ok(j) = rx.try_recv() {
                    jobs.push(j);
                }
                // All waiting probes share one listening window.
                let mut probes: Vec<(GroupId, Vec<IpAddr>)> = Vec::new();
                for j in jobs {
                    if matches!(j, ArpJob::Reopen) || link.is_none() {
                        // A raw socket is bound to an interface index, which a deleted
                        // and re-created interface does not keep.
                        link = arp::Link::open(&ifname)
                            .inspect_err(|e| debug!(interface = %ifname, error = %e, "raw socket not reopened"))
                            .ok();
                    }
                    let Some(link) = link.as_mut() else {
                        if let ArpJob::Probe { group, .. } = j {
                            // No interface, nobody to hear: silent, as a failed probe
                            // (the bind then fails on the missing interface; the lease
                            // is what keeps a bind safe, never the probe).
                            let _ = results.send(ProbeDone { group, conflict: false });
                        }
                        continue;
                    };
                    match j {
                        ArpJob::Reopen => {}
                        ArpJob::Probe { group, addrs } => probes.push((group, addrs)),
                        ArpJob::Announce { group, addrs } => {
                            'burst: for k in 0..count {
                                for a in &addrs {
                                    let guard = allowed.lock().unwrap_or_else(|e| e.into_inner());
                                    if guard.get(&group).is_none_or(|d| clock::now() > *d) {
                                        break 'burst;
                                    }
                                    let r = link.announce_once(*a);
                                    drop(guard);
                                    match r {
                                        Ok(()) => {
                                            sent[usize::from(a.is_ipv6())]
                                                .fetch_add(1, Ordering::Relaxed);
                                        }
                                        Err(e) => warn!(vip = %a, error = %e, "announce failed"),
                                    }
                                    if let IpAddr::V4(v) = a
                                        && k == 0
                                    {
                                        for t in &notify {
                                            let _ = link.notify(*v, *t);
                                        }
                                    }
                                }
                                if k + 1 < count {
                                    std::thread::sleep(interval);
                                }
                            }
                        }
                    }
                }
                if let (false, Some(l)) = (probes.is_empty(), link.as_mut()) {
                    let all: Vec<IpAddr> =
                        probes.iter().flat_map(|(_, a)| a.iter().copied()).collect();
                    l.drain();
                    let conflicts = l.probe(&all, probe_wait).unwrap_or_else(|e| {
                        warn!(error = %e, "probe failed; treating as silent");
                        vec![false; all.len()]
                    });
                    let mut i = 0;
                    for (group, addrs) in probes {
                        let conflict = conflicts[i..i + addrs.len()].iter().any(|c| *c);
                        i += addrs.len();
                        let _ = results.send(ProbeDone { group, conflict });
                    }
                }
            }
        })?;
    Ok(tx)
}

/// The shell's operations state: metrics, the journal behind `/status`, hooks.
struct OpsState {
    metrics: Metrics,
    shell: ShellCounters,
    journal: Journal,
    hooks: Hooks,
    announced: Announced,
}

impl OpsState {
    fn vips(engine: &Engine, g: GroupId) -> Vec<String> {
        engine.config().groups[usize::from(g)]
            .vips
            .iter()
            .map(|v| v.addr.to_string())
            .collect()
    }

    fn hook(&mut self, engine: &Engine, kind: HookKind, group: GroupId, reason: String) {
        let vips = Self::vips(engine, group);
        self.hooks.fire(HookEvent {
            kind,
            group,
            vips,
            reason,
        });
    }

    /// Logs an engine event (one line per ownership change), records it for
    /// `/status` and the metrics, and fires hooks.
    fn on_event(&mut self, engine: &Engine, e: &Event, now: crate::core::time::Instant) {
        let name = |g: &GroupId| engine.config().groups[usize::from(*g)].to_string();
        match e {
            Event::Acquired {
                group: g,
                took,
                since_assigned,
                from,
            } => {
                let from_active = from.as_deref().is_some_and(|f| {
                    engine
                        .membership()
                        .members()
                        .iter()
                        .any(|m| m.id.name == f && m.state.is_active())
                });
                let kind = match from.as_deref() {
                    None => "assigned",
                    Some(f) if f == engine.name() => "rebound",
                    Some(_) if from_active => "handover",
                    Some(_) => "failover",
                };
                info!(
                    vip = %name(g),
                    from = from.as_deref().unwrap_or("-"),
                    to = engine.name(),
                    reason = kind,
                    took_ms = took.as_millis() as u64,
                    since_assigned_ms = since_assigned.as_millis() as u64,
                    "acquired"
                );
                if kind == "failover" || kind == "handover" {
                    let secs = since_assigned.as_secs_f64();
                    self.metrics.failover(kind, secs);
                    self.journal.failover(name(g), kind, secs);
                }
                self.journal.event(
                    "acquired",
                    Some(name(g)),
                    format!(
                        "{} → {} ({kind}, {} ms)",
                        from.as_deref().unwrap_or("-"),
                        engine.name(),
                        since_assigned.as_millis()
                    ),
                );
                self.hook(engine, HookKind::Acquire, *g, kind.to_string());
            }
            Event::Released { group: g, reason } => {
                let to = engine.owner(*g).unwrap_or("-").to_string();
                info!(vip = %name(g), from = engine.name(), to = %to, reason = reason.label(), "released");
                self.journal.event(
                    "released",
                    Some(name(g)),
                    format!("{} → {to} ({})", engine.name(), reason.label()),
                );
                self.hook(engine, HookKind::Release, *g, reason.label().to_string());
            }
            Event::Fenced { group: g, reason } => {
                warn!(vip = %name(g), from = engine.name(), reason = reason.label(), "fenced: stopped answering");
                self.journal.event(
                    "fenced",
                    Some(name(g)),
                    format!("{} stopped answering ({})", engine.name(), reason.label()),
                );
                self.hook(
                    engine,
                    HookKind::Release,
                    *g,
                    format!("fenced:{}", reason.label()),
                );
            }
            Event::Conflict { group: g } => {
                warn!(vip = %name(g), "probe conflict: someone else answers; not binding");
                self.journal.event(
                    "conflict",
                    Some(name(g)),
                    "a probe found another holder; not binding".into(),
                );
                self.hook(engine, HookKind::Conflict, *g, "probe".into());
            }
            Event::Withdrew { group: g } => {
                debug!(vip = %name(g), "claim withdrawn (contention)")
            }
            Event::Started { .. } => {
                info!(
                    node = engine.name(),
                    "started; stale VIPs and gate entries removed"
                );
                self.journal
                    .event("started", None, format!("{} started", engine.name()));
            }
            Event::ViewChanged { members } => {
                info!(members, "membership changed");
                self.journal
                    .event("view", None, format!("{members} members active"));
            }
            Event::Left => {
                info!(node = engine.name(), "left the cluster");
                self.journal
                    .event("left", None, format!("{} left", engine.name()));
            }
            Event::Warning(w) => {
                warn!("{w}");
                self.journal.event("warning", None, w.to_string());
            }
        }
        let _ = now;
    }

    fn sync(&mut self, engine: &Engine, now: crate::core::time::Instant) {
        self.shell.garp = self.announced[0].load(Ordering::Relaxed);
        self.shell.na = self.announced[1].load(Ordering::Relaxed);
        let ready = status::ready(engine, self.healthy(), now);
        self.metrics.sync(engine, &self.shell, ready, now);
    }

    fn command(&mut self, engine: &mut Engine, cmd: Cmd) {
        let now = clock::now();
        match cmd {
            Cmd::Status(tx) => {
                let doc = status::document(engine, &self.journal, self.healthy(), now);
                let ready = status::ready(engine, self.healthy(), now);
                let _ = tx.send((doc.to_string(), ready));
            }
            Cmd::Sync(tx) => {
                self.sync(engine, now);
                let _ = tx.send(());
            }
            Cmd::Drain(on, tx) => {
                if on != engine.status(now).meta.draining {
                    if on {
                        info!(node = engine.name(), "draining: moving VIPs away");
                    } else {
                        info!(node = engine.name(), "undrained: may take VIPs again");
                    }
                    self.journal.event(
                        if on { "drain" } else { "undrain" },
                        None,
                        format!(
                            "{} {}",
                            engine.name(),
                            if on { "drained" } else { "undrained" }
                        ),
                    );
                }
                engine.set_draining(on, now);
                let held: Vec<String> = engine
                    .bound_groups()
                    .map(|g| engine.config().groups[usize::from(g)].to_string())
                    .collect();
                let _ = tx.send(
                    serde_json::json!({ "node": engine.name(), "draining": on, "held": held })
                        .to_string(),
                );
            }
        }
    }

    fn health(&mut self, engine: &mut Engine, r: HealthReport) {
        match r {
            HealthReport::Run(check, result) => {
                *self
                    .shell
                    .checks
                    .entry((check.clone(), result))
                    .or_default() += 1;
                if result != "ok" {
                    debug!(check, result, "health check failed");
                }
            }
            HealthReport::Healthy(h) => {
                self.shell.healthy = h;
                if h {
                    info!(node = engine.name(), "healthy again: eligible for VIPs");
                } else {
                    warn!(node = engine.name(), "unhealthy: moving VIPs away");
                }
                self.journal.event(
                    "health",
                    None,
                    format!(
                        "{} {}",
                        engine.name(),
                        if h { "healthy" } else { "unhealthy" }
                    ),
                );
                engine.set_healthy(h && self.shell.link_up, clock::now());
            }
        }
    }

    /// The interface came, went, or changed state: a node whose interface is missing
    /// or down cannot answer for its VIPs, so it is not eligible (its groups move away
    /// by the release path, like a failed health check) until the interface is back.
    fn link(&mut self, engine: &mut Engine, up: bool, what: &str) {
        self.shell.link_up = up;
        if up {
            info!(
                node = engine.name(),
                "interface {what}: eligible for VIPs again"
            );
        } else {
            warn!(node = engine.name(), "interface {what}: moving VIPs away");
        }
        self.journal
            .event("link", None, format!("{}: interface {what}", engine.name()));
        engine.set_healthy(self.shell.healthy && up, clock::now());
    }

    /// Health as `/readyz`, `/status` and the metrics report it: the checks and
    /// the interface.
    fn healthy(&self) -> bool {
        self.shell.healthy && self.shell.link_up
    }
}

/// Runs the agent until `shutdown` resolves (then releases everything and leaves).
pub async fn run(p: Prepared, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let Prepared {
        settings,
        opts,
        socket,
        _lock,
        http: http_listener,
        ifname,
        index,
    } = p;
    let cfg = settings.cluster.clone();
    if cfg.fence == FenceKind::Gate {
        let vips: Vec<IpAddr> = cfg
            .groups
            .iter()
            .flat_map(|g| g.vips.iter().map(|v| v.addr))
            .collect();
        gate::install(&vips, cfg.timing.gate_timeout, cfg.timing.gate_arm)
            .map_err(|e| map_io("nftables gate", e))?;
    }
    let mut kernel = KernelIo::open(&cfg, &ifname, index).map_err(|e| map_io("netlink", e))?;
    // Link notifications: the interface may be deleted, re-created (new index) or
    // set down under a running agent.
    #[allow(deprecated)]
    let mut link_watch = crate::addr::rtnl::LinkWatch::open()
        .and_then(|w| AsyncFd::with_interest(w, Interest::READABLE))
        .map_err(|e| map_io("netlink link watch", e))?;
    let mut link_index = Some(index);
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel::<ProbeDone>();
    let allowed: Announceable = Default::default();
    let announced: Announced = Default::default();
    let arp = spawn_arp(
        &ifname,
        cfg.timing.probe_wait,
        &opts,
        probe_tx,
        allowed.clone(),
        announced.clone(),
    )
    .map_err(|e| map_io("raw socket", e))?;
    // Registered for readability only: a send never wakes the loop (tokio's UdpSocket
    // also registers for writability, and every send then costs a wake-up).
    // `with_interest` is deprecated because an arbitrary `AsRawFd` might close its fd
    // while registered; here the AsyncFd owns the socket, so the fd lives exactly as
    // long as the registration.
    #[allow(deprecated)]
    let socket =
        AsyncFd::with_interest(socket, Interest::READABLE).map_err(|e| map_io("socket", e))?;
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let mut env = (!opts.secrets.is_empty()).then(|| Envelope::new(&opts.secrets, salt));
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let init = EngineInit {
        nonce: rand::random(),
        rng_seed: rand::random(),
        epoch,
    };
    let groups: Vec<Vec<IpAddr>> = cfg
        .groups
        .iter()
        .map(|g| g.vips.iter().map(|v| v.addr).collect())
        .collect();
    let ecfg = EngineConfig {
        cluster: cfg.clone(),
        node: settings.node.clone(),
        bind: settings.bind,
        seeds: settings.join.clone(),
        cluster_size_hint: cfg.voters.len().max(settings.join.len()).max(3),
        breaks: Default::default(),
    };
    let mut engine = Engine::new(ecfg, init, clock::now());
    let mut suspend = clock::SuspendDetector::new();
    let mut buf = vec![0u8; RECV_BUF];
    let mut leaving = false;
    // Operations: metrics, status API, health checks, hooks.
    let (hook_tx, mut hook_rx) = mpsc::unbounded_channel();
    let mut hook_cfg = opts.ops.hooks.clone();
    hook_cfg.interface = ifname.clone();
    hook_cfg.node = settings.node.name.clone();
    let mut ops = OpsState {
        metrics: Metrics::new(),
        shell: ShellCounters {
            healthy: true,
            link_up: true,
            ..Default::default()
        },
        journal: Journal::default(),
        hooks: Hooks::new(hook_cfg, hook_tx),
        announced,
    };
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Cmd>();
    let http_task = match http_listener {
        Some(l) => {
            let addr = l.local_addr().ok();
            let l = tokio::net::TcpListener::from_std(l).map_err(|e| map_io("listener", e))?;
            info!(addr = ?addr, "metrics, status and dashboard at http://{}/", addr.map(|a| a.to_string()).unwrap_or_default());
            Some(tokio::spawn(http::serve(
                l,
                http::Ops {
                    metrics: ops.metrics.handle(),
                    cmds: cmd_tx.clone(),
                    token: opts.ops.token.clone(),
                },
            )))
        }
        None => None,
    };
    let (health_tx, mut health_rx) = mpsc::unbounded_channel();
    let health_task = tokio::spawn(health::run(
        opts.ops.checks.clone(),
        opts.ops.policy,
        health_tx,
    ));
    let refresh = opts.garp_refresh;
    let mut next_reannounce = tokio::time::Instant::now()
        + if refresh.is_zero() {
            Duration::from_secs(3600)
        } else {
            refresh
        };
    tokio::pin!(shutdown);
    // The AsyncFd owns the timerfd (see the socket above for the deprecation).
    #[allow(deprecated)]
    let timer = EngineTimer::new()
        .and_then(|t| AsyncFd::with_interest(t, Interest::READABLE))
        .map_err(|e| map_io("engine timer", e))?;
    let mut armed: Option<u64> = None;
    // Kernel failures already logged (error text → when), so a kernel that keeps
    // refusing is logged once per KERNEL_LOG_EVERY, not once per retry.
    let mut kernel_logged: std::collections::BTreeMap<String, crate::core::time::Instant> =
        Default::default();
    // Actions left in the engine when the kernel round bound was hit.
    let mut backlog;
    let mut leave_deadline: Option<tokio::time::Instant> = None;
    // The interface as it is now (it may be down already at start).
    if let Some(l) = kernel.relink()
        && !(l.up && l.running)
    {
        ops.link(&mut engine, false, "down");
    }
    info!(node = %settings.node.name, interface = %ifname, bind = %settings.bind, cluster = format!("{:016x}", cfg.cluster_id()), "starting");
    loop {
        let ks = kernel.stats();
        (ops.shell.gate_reinstalls, ops.shell.link_changes) = (ks.gate_reinstalls, ks.link_changes);
        backlog = false;
        for round in 0..=MAX_KERNEL_ROUNDS {
            if round == MAX_KERNEL_ROUNDS {
                // Serve the other inputs first; the select below returns at once.
                backlog = engine.has_actions();
                break;
            }
            let mut kops = Vec::new();
            while let Some(a) = engine.poll_action() {
                match a {
                    Action::Send { to, payload } => {
                        let out = match &mut env {
                            Some(e) => e.seal(&payload),
                            None => payload,
                        };
                        if let Err(e) = socket.get_ref().send_to(&out, to) {
                            debug!(%to, error = %e, "send failed");
                        }
                    }
                    Action::Kernel { id, op } => {
                        let mut a = allowed.lock().unwrap_or_else(|e| e.into_inner());
                        match &op {
                            KernelOp::Bind { group, deadline }
                            | KernelOp::Refresh {
                                group, deadline, ..
                            } => {
                                a.insert(*group, *deadline);
                            }
                            // No announcement may leave once an unbind is on its way.
                            KernelOp::Unbind { group } => {
                                a.remove(group);
                            }
                            KernelOp::Flush => a.clear(),
                        }
                        drop(a);
                        kops.push((id, op));
                    }
                    Action::Probe { group } => {
                        let _ = arp.send(ArpJob::Probe {
                            group,
                            addrs: groups[usize::from(group)].clone(),
                        });
                    }
                    Action::Announce { group } => {
                        let _ = arp.send(ArpJob::Announce {
                            group,
                            addrs: groups[usize::from(group)].clone(),
                        });
                    }
                    Action::Event(e) => ops.on_event(&engine, &e, clock::now()),
                }
            }
            if kops.is_empty() {
                break;
            }
            // Kernel work runs here, in order, and its results go straight back.
            for d in kernel.perform(kops) {
                if let KernelOutcome::Failed(why) = &d.outcome {
                    let now = clock::now();
                    if kernel_logged
                        .get(why)
                        .is_none_or(|t| now >= *t + KERNEL_LOG_EVERY)
                    {
                        warn!(op = d.id, error = %why, "kernel operation failed; retrying");
                        if kernel_logged.len() >= 64 {
                            kernel_logged.clear();
                        }
                        kernel_logged.insert(why.clone(), now);
                    }
                }
                engine.handle_kernel(d.id, d.outcome, clock::now());
            }
        }
        if engine.is_finished() {
            break;
        }
        // Timers are coalesced on a 5 ms grid (a deadline is never early, at most
        // 5 ms late), so the refresh round, the claim and SWIM's timers share
        // wake-ups instead of each costing one. The engine's timer is a timerfd on
        // the engine's own clock, armed to the nanosecond: tokio's millisecond
        // wheel wakes up to 1 ms early and then sleeps again, two wake-ups per timer.
        let deadline = match engine.poll_timeout() {
            Some(t) => {
                let grid = TIMER_GRID.as_nanos() as u64;
                t.as_nanos().div_ceil(grid) * grid
            }
            None => (clock::now() + Duration::from_secs(1)).as_nanos(),
        };
        if armed != Some(deadline) {
            match timer.get_ref().arm(deadline) {
                Ok(()) => armed = Some(deadline),
                Err(e) => warn!(error = %e, "cannot arm the engine timer"),
            }
        }
        tokio::select! {
            _ = std::future::ready(()), if backlog => {}
            guard = socket.readable() => {
                let mut guard = match guard {
                    Ok(g) => g,
                    Err(e) => {
                        warn!(error = %e, "socket poll failed");
                        continue;
                    }
                };
                // Take every datagram already queued before sleeping again.
                for _ in 0..MAX_BURST {
                    let now = clock::now();
                    match guard.get_inner().recv_from(&mut buf) {
                        Ok((n, from)) => {
                            ops.shell.datagrams_in += 1;
                            ops.shell.bytes_in += n as u64;
                            let plain = match &mut env {
                                Some(e) => match e.open(&buf[..n]) {
                                    Ok(p) => Some(p),
                                    Err(d) => {
                                        *ops.shell.drops.entry(d.label()).or_default() += 1;
                                        debug!(%from, reason = d.label(), "datagram dropped");
                                        None
                                    }
                                },
                                None => Some(buf[..n].to_vec()),
                            };
                            if let Some(p) = plain {
                                engine.handle_datagram(from, &p, now);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            guard.clear_ready();
                            break;
                        }
                        Err(e) => {
                            debug!(error = %e, "recv failed");
                            break;
                        }
                    }
                }
            }
            Some(p) = probe_rx.recv() => engine.handle_probe(p.group, p.conflict, clock::now()),
            Some(c) = cmd_rx.recv() => ops.command(&mut engine, c),
            Some(r) = health_rx.recv() => ops.health(&mut engine, r),
            Some((hook, result)) = hook_rx.recv() => {
                *ops.shell.hooks.entry((hook, result)).or_default() += 1;
            }
            guard = timer.readable() => {
                if let Ok(mut g) = guard {
                    g.get_inner().clear();
                    g.clear_ready();
                }
                armed = None;
                engine.handle_timeout(clock::now());
            }
            _ = tokio::time::sleep_until(next_reannounce) => {
                next_reannounce = tokio::time::Instant::now() + if refresh.is_zero() { Duration::from_secs(3600) } else { refresh };
                if !refresh.is_zero() {
                    for g in engine.bound_groups().collect::<Vec<_>>() {
                        let _ = arp.send(ArpJob::Announce { group: g, addrs: groups[usize::from(g)].clone() });
                    }
                }
            }
            guard = link_watch.readable_mut() => {
                if let Ok(mut g) = guard {
                    g.get_inner_mut().drain();
                    g.clear_ready();
                }
                let link = kernel.relink();
                let index = link.as_ref().map(|l| l.index);
                if index != link_index {
                    link_index = index;
                    let _ = arp.send(ArpJob::Reopen);
                }
                let up = link.as_ref().is_some_and(|l| l.up && l.running);
                if up != ops.shell.link_up {
                    let what = match &link {
                        None => "gone",
                        Some(_) if up => "up",
                        Some(_) => "down",
                    };
                    ops.link(&mut engine, up, what);
                }
            }
            _ = &mut shutdown, if !leaving => {
                leaving = true;
                leave_deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                info!("shutting down: releasing VIPs, then leaving");
                engine.leave(clock::now());
            }
            _ = async { if let Some(d) = leave_deadline { tokio::time::sleep_until(d).await } }, if leave_deadline.is_some() => {
                warn!(grace_ms = SHUTDOWN_GRACE.as_millis() as u64, "the graceful release did not finish in time; exiting anyway");
                break;
            }
        }
        if let Some(d) = suspend.check() {
            warn!(
                suspended_ms = d.as_millis() as u64,
                "clock jump (suspend): unbinding everything first"
            );
            engine.handle_clock_jump(clock::now());
        }
    }
    // The gate goes only after the addresses: if one could not be removed, the
    // closed gate keeps it silent.
    let flushed = kernel.flush() == KernelOutcome::Ok;
    if cfg.fence == FenceKind::Gate && flushed {
        gate::uninstall();
    }
    health_task.abort();
    if let Some(t) = http_task {
        t.abort();
    }
    drop(cmd_tx);
    // Release hooks of the shutdown get their chance to run.
    ops.hooks.finish(opts.ops.hooks.timeout).await;
    info!(drops = ?ops.shell.drops, "stopped");
    Ok(())
}

/// Removes this agent's VIPs and gate after a panic or a fatal error.
pub fn emergency_flush(cfg: &crate::core::config::ClusterConfig, ifname: &str) {
    let mut all_gone = false;
    if let Ok(mut r) = Rtnl::new()
        && let Ok(Some(link)) = r.link(ifname)
    {
        all_gone = true;
        for g in &cfg.groups {
            for v in &g.vips {
                all_gone &= r.addr_del(link.index, v).is_ok();
            }
        }
    }
    // The gate stays (closed) unless every address is known to be gone.
    if cfg.fence == FenceKind::Gate && all_gone {
        gate::uninstall();
    }
}
