//! The shell: one task that owns the engine and everything it talks to, waits on
//! its inputs, feeds each to the engine with `now` read after it arrived, and carries
//! out the engine's actions.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixListener;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Sleep;
use tracing::{debug, info, warn};

use super::arp::{Announceable, ArpJob, ProbeDone, spawn_arp};
use super::ops::OpsState;
use super::setup::{Prepared, ShellOptions, StartError, map_io};
use super::timer::EngineTimer;
use crate::addr::gate;
use crate::addr::kernel::KernelIo;
use crate::addr::rtnl::LinkWatch;
use crate::cli::Settings;
use crate::clock;
use crate::core::config::{ClusterConfig, FenceKind};
use crate::core::engine::{Action, Engine, EngineConfig, EngineInit, KernelOp};
use crate::core::neighbours::Neighbour;
use crate::core::ownership::KernelOutcome;
use crate::core::time::{Hush, Instant};
use crate::net::envelope::{Drop as Unopened, Envelope};
use crate::ops::health::{self, Report as HealthReport};
use crate::ops::hooks::Hooks;
use crate::ops::http::{self, Cmd};
use crate::ops::metrics::{Metrics, ShellCounters};
use crate::ops::status::Journal;

/// Largest datagram read.
const RECV_BUF: usize = 2048;
/// Most datagrams taken from the socket per wake-up before other inputs are served.
const MAX_BURST: usize = 64;
/// Timers are coalesced on this grid: a deadline is never early, at most this late.
const TIMER_GRID: Duration = Duration::from_millis(5);
/// Most rounds of kernel work (operations, then the engine's reaction to their
/// results) per wake-up, so that a kernel that keeps failing cannot starve signals,
/// HTTP and gossip.
const MAX_KERNEL_ROUNDS: usize = 16;
/// How long SIGTERM's graceful release may take before the agent exits anyway (the
/// gate, closed, then keeps anything left silent).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(800);
/// A kernel error that repeats is logged once per this period.
const KERNEL_LOG_EVERY: Duration = Duration::from_secs(10);
/// A round of kernel operations this long is logged (at most once per
/// [`KERNEL_LOG_EVERY`]): normally a round takes well under 5 ms.
const SLOW_KERNEL_ROUND: Duration = Duration::from_millis(25);

/// How many operations of each kind a round of kernel operations had.
fn kernel_counts(kops: &[(u64, KernelOp)]) -> [usize; 4] {
    let mut n = [0usize; 4];
    for (_, op) in kops {
        n[match op {
            KernelOp::Flush => 0,
            KernelOp::Bind { .. } => 1,
            KernelOp::Refresh { .. } => 2,
            KernelOp::Unbind { .. } => 3,
        }] += 1;
    }
    n
}

/// "2 refresh, 1 bind", for the log.
fn kernel_summary(n: [usize; 4]) -> String {
    ["flush", "bind", "refresh", "unbind"]
        .iter()
        .zip(n)
        .filter(|(_, k)| *k > 0)
        .map(|(w, k)| format!("{k} {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Channels into the loop from the shell's helpers.
struct Inputs {
    probes: mpsc::UnboundedReceiver<ProbeDone>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    health: mpsc::UnboundedReceiver<HealthReport>,
    hooks: mpsc::UnboundedReceiver<(&'static str, &'static str)>,
}

/// The running agent.
pub(super) struct Shell {
    settings: Settings,
    opts: ShellOptions,
    cfg: ClusterConfig,
    _lock: UnixListener,
    engine: Engine,
    socket: AsyncFd<UdpSocket>,
    env: Option<Envelope>,
    buf: Vec<u8>,
    kernel: KernelIo,
    link_watch: AsyncFd<LinkWatch>,
    /// Each interface VIPs live on: its index (`None`: gone) and whether it is up.
    links: BTreeMap<String, (Option<u32>, bool)>,
    arp: std_mpsc::Sender<ArpJob>,
    /// Groups that may be announced, with their latest write deadline.
    allowed: Announceable,
    /// Each group's addresses.
    groups: Vec<Vec<IpAddr>>,
    ops: OpsState,
    inputs: Inputs,
    /// Kept so the command channel stays open without an HTTP listener.
    _cmd_tx: mpsc::UnboundedSender<Cmd>,
    tasks: Vec<JoinHandle<()>>,
    timer: AsyncFd<EngineTimer>,
    armed: Option<u64>,
    /// Kernel failures already logged (error text → when).
    kernel_logged: BTreeMap<String, Instant>,
    suspend: clock::SuspendDetector,
    /// When held groups are re-announced next (`--garp-refresh`). The sleeps live
    /// as long as the shell: one made per turn of the loop costs a timer-wheel
    /// insert and removal per wake-up.
    next_reannounce: Pin<Box<Sleep>>,
    /// When the neighbour caches are sampled and shared next (`--notify-neighbours`).
    next_neighbours: Pin<Box<Sleep>>,
    leave_deadline: Option<tokio::time::Instant>,
    /// What a reload reads again (`None`: reloads are refused).
    reloading: Option<super::setup::Reloading>,
    /// SIGHUP (a reload), when the handler could be installed.
    hangup: Option<tokio::signal::unix::Signal>,
    /// The admin token the HTTP listener checks.
    token: http::TokenCell,
    /// Where a restarted health checker reports.
    health_tx: mpsc::UnboundedSender<HealthReport>,
    /// The running health checker.
    health_task: Option<JoinHandle<()>>,
    /// The engine's group table the shell's copies (`groups`, the kernel's) follow.
    table_seen: crate::core::table::TableDigest,
    /// Datagrams sealed with a key this node lacks, said in the log at most once per
    /// [`KEY_WARN_PERIOD`] (`receive`).
    key_warn: Hush,
}

/// Registers `fd` with tokio for readability only. A UDP send never wakes the loop
/// (tokio's UdpSocket also registers for writability, and every send then costs a
/// wake-up). `with_interest` is deprecated because an arbitrary `AsRawFd` might close
/// its fd while registered; here the AsyncFd owns it, so the fd lives exactly as long
/// as the registration.
fn readable<T: std::os::fd::AsRawFd>(fd: T, what: &str) -> Result<AsyncFd<T>, StartError> {
    #[allow(deprecated)]
    AsyncFd::with_interest(fd, Interest::READABLE).map_err(|e| map_io(what, e))
}

impl Shell {
    /// Installs the gate, opens netlink, the link watch, the raw socket and the
    /// timer, starts the engine, the HTTP listener and the health checks.
    pub fn start(p: Prepared) -> Result<Shell, StartError> {
        let Prepared {
            reloading,
            settings,
            opts,
            socket,
            advertise,
            advertise_source,
            lock,
            http,
            links,
        } = p;
        let cfg = settings.cluster.clone();
        install_gate(&cfg, &settings.homes)?;
        let kernel =
            KernelIo::open(&cfg, &settings.homes, &links).map_err(|e| map_io("netlink", e))?;
        let names: Vec<String> = links.iter().map(|l| l.0.clone()).collect();
        let ifname = names.join(",");
        // The interface may be deleted, re-created (new index) or set down under a
        // running agent.
        let link_watch = readable(
            LinkWatch::open().map_err(|e| map_io("netlink link watch", e))?,
            "netlink link watch",
        )?;
        let (probe_tx, probes) = mpsc::unbounded_channel();
        let allowed = Announceable::default();
        let announced = Default::default();
        let arp = spawn_arp(
            &settings.homes,
            &names,
            cfg.timing.probe_wait,
            &opts,
            probe_tx,
            allowed.clone(),
            std::sync::Arc::clone(&announced),
        )
        .map_err(|e| map_io("raw socket", e))?;
        let socket = readable(socket, "socket")?;
        let timer = readable(
            EngineTimer::new().map_err(|e| map_io("engine timer", e))?,
            "engine timer",
        )?;
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let env = (!opts.secrets.is_empty()).then(|| Envelope::new(&opts.secrets, salt));
        let engine = new_engine(&settings, advertise, keyring_digest(env.as_ref()));
        let started = start_ops(&settings, &opts, &ifname, announced, http)?;
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| warn!(error = %e, "no SIGHUP handler; reload with POST /reload"))
            .ok();
        let table_seen = engine.table_digest();
        let mut shell = Shell {
            next_reannounce: Box::pin(tokio::time::sleep(reannounce_period(&opts))),
            next_neighbours: Box::pin(tokio::time::sleep(first_neighbours(&opts))),
            groups: cfg
                .groups
                .iter()
                .map(|g| g.vips.iter().map(|v| v.addr).collect())
                .collect(),
            settings,
            opts,
            cfg,
            _lock: lock,
            engine,
            socket,
            env,
            reloading,
            hangup,
            token: started.token,
            health_tx: started.health_tx,
            health_task: started.health_task,
            table_seen,
            key_warn: Hush::new(KEY_WARN_PERIOD),
            buf: vec![0u8; RECV_BUF],
            kernel,
            link_watch,
            links: links
                .iter()
                .map(|(n, i)| (n.clone(), (*i, i.is_some())))
                .collect(),
            arp,
            allowed,
            ops: started.ops,
            inputs: Inputs {
                probes,
                cmds: started.cmds,
                health: started.health,
                hooks: started.hooks,
            },
            _cmd_tx: started.cmd_tx,
            tasks: started.tasks,
            timer,
            armed: None,
            kernel_logged: BTreeMap::new(),
            suspend: clock::SuspendDetector::new(),
            leave_deadline: None,
        };
        shell.greet(&ifname, advertise, &advertise_source);
        Ok(shell)
    }

    /// The interfaces as they are now (one may be down already at start), and the
    /// start line in the log.
    fn greet(&mut self, ifname: &str, advertise: std::net::SocketAddr, source: &str) {
        self.on_link_change();
        let s = &self.settings;
        info!(node = %s.node.name, interface = %ifname, bind = %s.bind, %advertise, advertised_from = source, cluster = format!("{:016x}", self.cfg.cluster_id()), "starting");
    }

    /// The loop: carry out the engine's actions, arm its timer, wait for one input
    /// and hand it over. Ends when the engine has left (after `shutdown`), or the
    /// graceful release ran out of time.
    pub async fn serve(&mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut leaving = false;
        loop {
            let backlog = self.perform_actions();
            if self.engine.is_finished() {
                break;
            }
            self.arm_timer();
            let leave_at = self.leave_deadline;
            tokio::select! {
                _ = std::future::ready(()), if backlog => {}
                // The socket and the timer are read together (`wake`).
                r = self.socket.readable() => match r {
                    Ok(g) => {
                        drop(g);
                        self.wake();
                    }
                    Err(e) => warn!(error = %e, "socket poll failed"),
                },
                Some(p) = self.inputs.probes.recv() => {
                    self.engine.handle_probe(p.group, p.conflict, clock::now());
                }
                Some(c) = self.inputs.cmds.recv() => match c {
                    Cmd::Reload(tx) => {
                        let r = self.reload("POST /reload");
                        let _ = tx.send(r);
                    }
                    c => self.ops.command(&mut self.engine, c),
                },
                Some(()) = recv_signal(&mut self.hangup) => {
                    self.reload("SIGHUP");
                }
                Some(r) = self.inputs.health.recv() => self.ops.health(&mut self.engine, r),
                Some((hook, result)) = self.inputs.hooks.recv() => {
                    *self.ops.shell.hooks.entry((hook, result)).or_default() += 1;
                }
                r = self.timer.readable() => match r {
                    Ok(g) => {
                        drop(g);
                        self.wake();
                    }
                    Err(e) => warn!(error = %e, "timer poll failed"),
                },
                _ = &mut self.next_reannounce => self.reannounce(),
                _ = &mut self.next_neighbours => self.share_neighbours(),
                r = self.link_watch.readable_mut() => {
                    if let Ok(mut g) = r {
                        g.get_inner_mut().drain();
                        g.clear_ready();
                    }
                    self.on_link_change();
                }
                _ = &mut shutdown, if !leaving => {
                    leaving = true;
                    self.begin_leave();
                }
                _ = sleep_until_some(leave_at), if leave_at.is_some() => {
                    warn!(grace_ms = SHUTDOWN_GRACE.as_millis() as u64, "the graceful release did not finish in time; exiting anyway");
                    break;
                }
            }
            self.check_suspend();
        }
    }

    /// One wake-up: every datagram already queued, then the timer if it expired,
    /// handed to the engine as one batch, so that it re-evaluates its state once
    /// (`Engine::wakeup`) and the loop turns once, instead of once per input.
    fn wake(&mut self) {
        let Shell {
            engine,
            socket,
            timer,
            armed,
            buf,
            env,
            ops,
            key_warn,
            ..
        } = self;
        engine.wakeup(|e| {
            if let Some(g) = ready_now(socket) {
                receive(g, buf, env, e, &mut ops.shell, key_warn);
            }
            if let Some(mut g) = ready_now(timer) {
                let expired = g.get_inner().clear();
                g.clear_ready();
                // Not expired: the readiness was left from an expiry that a re-arm
                // cancelled; the timer is armed as `armed` says.
                if expired {
                    *armed = None;
                    e.handle_timeout(clock::now());
                }
            }
        });
    }

    /// Carries out the engine's actions, with at most [`MAX_KERNEL_ROUNDS`] rounds of
    /// kernel work. Returns whether actions are left (the other inputs are served
    /// first; the loop comes back at once).
    fn perform_actions(&mut self) -> bool {
        self.sync_table();
        let ks = self.kernel.stats();
        (self.ops.shell.gate_reinstalls, self.ops.shell.link_changes) =
            (ks.gate_reinstalls, ks.link_changes);
        let mut left = true;
        for _ in 0..MAX_KERNEL_ROUNDS {
            let kops = self.dispatch_actions();
            if kops.is_empty() {
                left = false;
                break;
            }
            self.kernel_round(kops);
        }
        self.ops.end_round(&self.engine);
        left && self.engine.has_actions()
    }

    /// Follows the engine's group table (a reload changed the pool, a removed group's
    /// slot retired): the addresses the ARP thread and the kernel use per slot.
    fn sync_table(&mut self) {
        let d = self.engine.table_digest();
        if d == self.table_seen {
            return;
        }
        self.table_seen = d;
        let groups = &self.engine.config().groups;
        self.groups = groups
            .iter()
            .map(|g| g.vips.iter().map(|v| v.addr).collect())
            .collect();
        self.kernel.set_groups(groups, &self.settings.homes);
        super::note_pool(groups.iter().flat_map(|g| g.vips.clone()));
        // New interfaces are resolved; the engine learns what it cannot hold.
        self.on_link_change();
    }

    /// Sends, probes, announces and logs what the engine asked for; returns its
    /// kernel operations, in order.
    fn dispatch_actions(&mut self) -> Vec<(u64, KernelOp)> {
        let mut kops = Vec::new();
        while let Some(a) = self.engine.poll_action() {
            match a {
                Action::Send { to, payload } => self.send(to, payload),
                Action::Kernel { id, op } => {
                    self.note_announceable(&op);
                    kops.push((id, op));
                }
                Action::Probe { group } => {
                    let addrs = self.groups[usize::from(group)].clone();
                    let _ = self.arp.send(ArpJob::Probe { group, addrs });
                }
                Action::Announce { group } => {
                    let addrs = self.groups[usize::from(group)].clone();
                    let _ = self.arp.send(ArpJob::Announce { group, addrs });
                }
                Action::Event(e) => self.ops.on_event(&self.engine, &e),
            }
        }
        kops
    }

    fn send(&mut self, to: SocketAddr, payload: Vec<u8>) {
        let out = match &mut self.env {
            Some(e) => e.seal(&payload),
            None => payload,
        };
        if let Err(e) = self.socket.get_ref().send_to(&out, to) {
            debug!(%to, error = %e, "send failed");
        }
    }

    /// Keeps the ARP thread's map of announceable groups in step with the kernel
    /// operations: no announcement may leave once an unbind is on its way.
    fn note_announceable(&self, op: &KernelOp) {
        let mut a = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        match op {
            KernelOp::Bind { group, deadline }
            | KernelOp::Refresh {
                group, deadline, ..
            } => {
                a.insert(*group, *deadline);
            }
            KernelOp::Unbind { group } => {
                a.remove(group);
            }
            KernelOp::Flush => a.clear(),
        }
    }

    /// Performs kernel operations in order; their results go straight back. A
    /// repeating error is logged once per [`KERNEL_LOG_EVERY`].
    fn kernel_round(&mut self, kops: Vec<(u64, KernelOp)>) {
        let started = clock::now();
        let counts = kernel_counts(&kops);
        let done = self.kernel.perform(kops);
        let took = clock::now() - started;
        if took >= SLOW_KERNEL_ROUND {
            // A bind or unbind writes addresses, which waits for the kernel's
            // global RTNL lock; anything else on the machine may hold it (a
            // namespace or interface torn down). Refreshes stay on time (counted
            // from their issue; renewals are written off the loop), but the loop
            // serves nothing else meanwhile.
            let key = "slow kernel round".to_string();
            let now = clock::now();
            if self
                .kernel_logged
                .get(&key)
                .is_none_or(|t| now >= *t + KERNEL_LOG_EVERY)
            {
                let ops = kernel_summary(counts);
                warn!(took_ms = took.as_millis() as u64, %ops, "kernel operations held the loop");
                self.kernel_logged.insert(key, now);
            }
        }
        for d in &done {
            if let KernelOutcome::Failed(why) = &d.outcome {
                let now = clock::now();
                if self
                    .kernel_logged
                    .get(why)
                    .is_none_or(|t| now >= *t + KERNEL_LOG_EVERY)
                {
                    warn!(op = d.id, error = %why, "kernel operation failed; retrying");
                    if self.kernel_logged.len() >= 64 {
                        self.kernel_logged.clear();
                    }
                    self.kernel_logged.insert(why.clone(), now);
                }
            }
        }
        // The round's results, re-evaluated once (`Engine::wakeup`).
        self.engine.wakeup(|e| {
            for d in done {
                e.handle_kernel(d.id, d.outcome, clock::now());
            }
        });
    }

    /// Arms the timerfd at the engine's next deadline, on a 5 ms grid, so the refresh
    /// round, the claim and SWIM's timers share wake-ups.
    fn arm_timer(&mut self) {
        let deadline = match self.engine.poll_timeout() {
            Some(t) => {
                let grid = TIMER_GRID.as_nanos() as u64;
                t.as_nanos().div_ceil(grid) * grid
            }
            None => (clock::now() + Duration::from_secs(1)).as_nanos(),
        };
        if self.armed != Some(deadline) {
            match self.timer.get_ref().arm(deadline) {
                Ok(()) => self.armed = Some(deadline),
                Err(e) => warn!(error = %e, "cannot arm the engine timer"),
            }
        }
    }

    /// Re-announces every held group (`--garp-refresh`).
    fn reannounce(&mut self) {
        let refresh = self.opts.garp_refresh;
        let next = tokio::time::Instant::now() + reannounce_period(&self.opts);
        self.next_reannounce.as_mut().reset(next);
        if !refresh.is_zero() {
            for g in self.engine.bound_groups().collect::<Vec<_>>() {
                let addrs = self.groups[usize::from(g)].clone();
                let _ = self.arp.send(ArpJob::Announce { group: g, addrs });
            }
        }
    }

    /// `--notify-neighbours`: samples the neighbour caches of the VIP interfaces,
    /// shares them with the members, and hands the ARP thread every known
    /// neighbour of each interface (this node's and the members' shares, by the
    /// interface's own prefixes). Link-local IPv6 neighbours are left out (their
    /// prefix is on every interface), and so are the VIPs themselves.
    fn share_neighbours(&mut self) {
        let n = &self.opts.notify;
        let next = tokio::time::Instant::now()
            + if n.neighbours {
                n.interval
            } else {
                Duration::from_secs(3600)
            };
        self.next_neighbours.as_mut().reset(next);
        if !n.neighbours {
            return;
        }
        let vips: Vec<IpAddr> = self.groups.iter().flatten().copied().collect();
        let usable = |ip: &IpAddr| {
            !vips.contains(ip)
                && !matches!(ip, IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80)
        };
        let sampled = self.kernel.neighbours();
        let own: Vec<Neighbour> = sampled
            .iter()
            .flat_map(|(_, n, _)| n.iter().copied())
            .filter(|n| usable(&n.ip))
            .collect();
        let now = clock::now();
        self.engine.share_neighbours(&own, now);
        let known = self.engine.neighbours(now);
        let per: BTreeMap<String, Vec<Neighbour>> = sampled
            .iter()
            .map(|(ifname, _, prefixes)| {
                let on: Vec<Neighbour> = known
                    .iter()
                    .filter(|k| usable(&k.ip))
                    .filter(|k| {
                        prefixes
                            .iter()
                            .any(|(a, p)| super::setup::same_subnet(k.ip, *a, *p))
                    })
                    .copied()
                    .collect();
                (ifname.clone(), on)
            })
            .collect();
        self.ops.shell.neighbours_known = per.values().map(Vec::len).sum::<usize>() as u64;
        let _ = self.arp.send(ArpJob::Neighbours(per));
    }

    /// An interface came, went, was re-created or changed state: reopen raw
    /// sockets on a new index, and tell the engine which groups cannot be held
    /// while an interface they need is missing or down (they move; the others stay).
    fn on_link_change(&mut self) {
        let mut reopen = false;
        for (name, link) in self.kernel.relink() {
            let index = link.as_ref().map(|l| l.index);
            let up = link.as_ref().is_some_and(|l| l.up && l.running);
            let was = self.links.insert(name.clone(), (index, up));
            reopen |= was.is_some_and(|w| w.0 != index);
            if was.is_none_or(|w| w.1 != up) {
                let what = match &link {
                    None => "gone",
                    Some(_) if up => "up",
                    Some(_) => "down",
                };
                self.ops.link(&self.engine, &name, up, what);
            }
        }
        if reopen {
            let _ = self.arp.send(ArpJob::Reopen);
        }
        self.ops.shell.link_up = self.links.values().all(|l| l.1);
        self.update_unable();
    }

    /// The groups of the engine's table that an interface which is not up keeps
    /// this node from holding.
    fn update_unable(&mut self) {
        let links = &self.links;
        let unable = self
            .settings
            .homes
            .unable(&self.engine.config().groups, |i| {
                links.get(i).is_some_and(|l| l.1)
            });
        if unable != self.engine.unable() {
            self.engine.set_unable(unable, clock::now());
        }
    }

    /// Re-reads the configuration and applies the difference, or nothing (see
    /// `reload.rs`). Returns whether it was accepted, and the JSON answer.
    fn reload(&mut self, via: &str) -> (bool, String) {
        // A reload reads files and talks netlink before the loop turns again, and
        // the loop survives only one late refresh period (docs/safety.md §4.14):
        // refresh every held group first, so the whole E is left for it.
        self.engine.refresh_all(clock::now());
        self.perform_actions();
        let loaded = match &self.reloading {
            Some(r) => r.source.load_run().map_err(|e| e.to_string()),
            None => Err("this agent cannot re-read its configuration".into()),
        };
        let planned = loaded.and_then(|new| {
            let p = super::reload::plan(&self.settings, &self.opts, &new)?;
            if p.voters {
                self.engine
                    .check_voters(&new.settings.cluster.voter_set(), clock::now())?;
            }
            if p.pool {
                self.prepare_pool(&new.settings)?;
            }
            Ok((p, new))
        });
        let result = match planned {
            Ok((plan, new)) => {
                let changes = plan.changes.clone();
                if !plan.is_empty() {
                    self.apply_reload(&plan, new);
                }
                Ok(changes)
            }
            Err(why) => Err(why),
        };
        let file = self.reloading.as_ref().and_then(|r| r.source.config_path());
        self.ops.reloaded(&self.engine, via, file, result)
    }

    /// Before a pool change is applied: every new VIP fits the interface (as at
    /// start), and the gate closes over it before the engine may bind it (netlink: a
    /// reload never stalls the loop long enough for a refresh to lapse). A failure
    /// refuses the reload with nothing changed (a gate element added for a VIP that
    /// then stays out of the pool is harmless: the gate only ever drops).
    fn prepare_pool(&mut self, new: &Settings) -> Result<(), String> {
        let have: Vec<IpAddr> = self.groups.iter().flatten().copied().collect();
        let added: Vec<IpAddr> = new
            .cluster
            .groups
            .iter()
            .flat_map(|g| g.vips.iter().map(|v| v.addr))
            .filter(|a| !have.contains(a))
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        let mut own: BTreeMap<&str, Vec<(IpAddr, u8)>> = BTreeMap::new();
        for a in &added {
            let ifname = new.homes.iface(*a).ok_or_else(|| {
                format!("{a} has no interface: give --interface, the default, or write it IF:{a}")
            })?;
            if !own.contains_key(ifname) {
                own.insert(ifname, super::setup::own_addrs(ifname)?);
            }
            super::setup::check_vip_on_link(*a, ifname, &own[ifname])?;
        }
        // The kernel side learns where the new addresses live before the gate
        // closes over them.
        self.kernel
            .set_groups(&self.engine.config().groups.clone(), &new.homes);
        self.kernel
            .extend_gate_pool(&added)
            .map_err(|e| format!("cannot add the new VIPs to the nftables gate: {e}"))?;
        Ok(())
    }

    /// Applies a reload's plan. Everything in `new` was validated; nothing here can
    /// fail half-way.
    fn apply_reload(&mut self, plan: &super::reload::Plan, new: crate::cli::load::Loaded) {
        let now = clock::now();
        let (s, o) = (new.settings, new.opts);
        if plan.voters
            && let Err(e) = self.engine.set_voters(s.cluster.voter_set(), now)
        {
            // Checked a moment ago on the same loop turn; nothing moved in between.
            warn!(error = %e, "voter step refused after its check");
        }
        if plan.pool {
            // New interfaces are watched (and get raw sockets) from now on.
            for name in s.homes.interfaces(&s.cluster.groups) {
                self.links.entry(name).or_insert((None, false));
            }
            self.settings.homes = s.homes.clone();
            let _ = self.arp.send(ArpJob::Homes(s.homes.clone()));
            let mut h = self.ops.hooks.config().clone();
            h.homes = s.homes.clone();
            self.ops.hooks.set_config(h);
            self.engine.set_pool(s.cluster.groups.clone(), now);
        }
        if plan.node || plan.pool {
            // Preferences name groups of the new pool; the engine keeps groups in
            // slots of its own table.
            let table = &self.engine.config().groups;
            let prefers = s
                .node
                .prefers
                .iter()
                .filter_map(|&p| s.cluster.groups.get(usize::from(p)))
                .filter_map(|g| table.iter().position(|x| x == g))
                .map(|i| i as crate::core::config::GroupId)
                .collect();
            let n = &s.node;
            self.engine.set_node(n.weight, n.eligible, prefers, now);
        }
        if plan.checks {
            if let Some(t) = self.health_task.take() {
                t.abort();
            }
            if o.ops.checks.is_empty() && !self.ops.shell.healthy {
                self.ops
                    .health(&mut self.engine, HealthReport::Healthy(true));
            }
            self.health_task = Some(tokio::spawn(health::run(
                o.ops.checks.clone(),
                o.ops.policy,
                self.ops.shell.healthy,
                self.health_tx.clone(),
            )));
        }
        if plan.hooks {
            let mut h = o.ops.hooks.clone();
            h.interface = self.ops.hooks.config().interface.clone();
            h.homes = s.homes.clone();
            h.node = self.ops.hooks.config().node.clone();
            self.ops.hooks.set_config(h);
        }
        if plan.arp {
            let _ = self.arp.send(ArpJob::Configure {
                count: o.garp_count,
                interval: o.garp_interval,
                notify: o.notify.clone(),
            });
        }
        if plan.arp {
            let next = tokio::time::Instant::now() + first_neighbours(&o);
            self.next_neighbours.as_mut().reset(next);
        }
        if plan.garp_refresh {
            let next = tokio::time::Instant::now() + reannounce_period(&o);
            self.next_reannounce.as_mut().reset(next);
        }
        if plan.token {
            *self.token.write().unwrap_or_else(|e| e.into_inner()) = o.ops.token.clone();
        }
        if plan.keys
            && let Some(env) = &mut self.env
        {
            env.set_secrets(&o.secrets);
            self.engine.set_keyring(keyring_digest(Some(env)));
        }
        if plan.log
            && let Some(Err(e)) = self
                .reloading
                .as_ref()
                .and_then(|r| r.set_log.as_ref())
                .map(|f| f(&o.log))
        {
            warn!(error = %e, "cannot change the log filter");
        }
        self.settings = s;
        self.opts = o;
    }

    fn begin_leave(&mut self) {
        self.leave_deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
        info!("shutting down: releasing VIPs, then leaving");
        self.engine.leave(clock::now());
    }

    fn check_suspend(&mut self) {
        if let Some(d) = self.suspend.check() {
            warn!(
                suspended_ms = d.as_millis() as u64,
                "clock jump (suspend): unbinding everything first"
            );
            self.engine.handle_clock_jump(clock::now());
        }
    }

    /// After the loop: remove the addresses, then the gate (if one address could not
    /// be removed, the closed gate keeps it silent), stop the helpers and give the
    /// shutdown's release hooks their chance to run.
    pub async fn stop(mut self) {
        let flushed = self.kernel.flush() == KernelOutcome::Ok;
        if self.cfg.fence == FenceKind::Gate && flushed {
            gate::uninstall();
        }
        for t in self.tasks.iter().chain(&self.health_task) {
            t.abort();
        }
        self.ops.hooks.finish(self.opts.ops.hooks.timeout).await;
        info!(drops = ?self.ops.shell.drops, "stopped");
    }
}

/// With the gate: the nftables tables and sets, closed over every pool address.
fn install_gate(cfg: &ClusterConfig, homes: &crate::core::links::Homes) -> Result<(), StartError> {
    if cfg.fence == FenceKind::Gate {
        let vips: Vec<(IpAddr, &str)> = cfg
            .groups
            .iter()
            .flat_map(|g| {
                g.vips
                    .iter()
                    .map(|v| (v.addr, homes.iface(v.addr).unwrap_or("")))
            })
            .collect();
        gate::install(&vips, cfg.timing.gate_timeout, cfg.timing.gate_arm)
            .map_err(|e| map_io("nftables gate", e))?;
    }
    Ok(())
}

/// What [`start_ops`] started: the ops state, its channels, the command sender and
/// the helper tasks.
struct StartedOps {
    ops: OpsState,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    health: mpsc::UnboundedReceiver<HealthReport>,
    hooks: mpsc::UnboundedReceiver<(&'static str, &'static str)>,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    health_tx: mpsc::UnboundedSender<HealthReport>,
    health_task: Option<JoinHandle<()>>,
    token: http::TokenCell,
    tasks: Vec<JoinHandle<()>>,
}

/// Metrics, the journal, hooks, the health checks and the HTTP listener.
fn start_ops(
    settings: &Settings,
    opts: &ShellOptions,
    ifname: &str,
    announced: super::arp::Announced,
    http: Option<std::net::TcpListener>,
) -> Result<StartedOps, StartError> {
    let (hook_tx, hooks) = mpsc::unbounded_channel();
    let mut hook_cfg = opts.ops.hooks.clone();
    hook_cfg.interface = ifname.to_string();
    hook_cfg.homes = settings.homes.clone();
    hook_cfg.node = settings.node.name.clone();
    let ops = OpsState {
        metrics: Metrics::new(),
        shell: ShellCounters {
            healthy: true,
            link_up: true,
            ..Default::default()
        },
        journal: Journal::default(),
        hooks: Hooks::new(hook_cfg, hook_tx),
        announced,
        config: serde_json::Value::Null,
        round: Default::default(),
    };
    let (cmd_tx, cmds) = mpsc::unbounded_channel();
    let (health_tx, health) = mpsc::unbounded_channel();
    let health_task = Some(tokio::spawn(health::run(
        opts.ops.checks.clone(),
        opts.ops.policy,
        true,
        health_tx.clone(),
    )));
    let token: http::TokenCell =
        std::sync::Arc::new(std::sync::RwLock::new(opts.ops.token.clone()));
    let mut tasks = Vec::new();
    if let Some(l) = http {
        tasks.push(serve_http(l, &ops, &cmd_tx, &token)?);
    }
    Ok(StartedOps {
        ops,
        cmds,
        health,
        hooks,
        cmd_tx,
        health_tx,
        health_task,
        token,
        tasks,
    })
}

/// The engine, with a fresh nonce and RNG seed, and the wall clock as its SWIM epoch
/// (it must grow across restarts).
fn new_engine(settings: &Settings, advertise: std::net::SocketAddr, keyring: u64) -> Engine {
    let cfg = &settings.cluster;
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let init = EngineInit {
        nonce: rand::random(),
        rng_seed: rand::random(),
        epoch,
    };
    let ecfg = EngineConfig {
        cluster: cfg.clone(),
        node: settings.node.clone(),
        bind: advertise,
        seeds: settings.join.clone(),
        cluster_size_hint: cfg.voters.len().max(settings.join.len()).max(3),
        breaks: Default::default(),
        keyring,
    };
    Engine::new(ecfg, init, clock::now())
}

/// Starts the metrics, status and dashboard listener.
fn serve_http(
    l: std::net::TcpListener,
    ops: &OpsState,
    cmds: &mpsc::UnboundedSender<Cmd>,
    token: &http::TokenCell,
) -> Result<JoinHandle<()>, StartError> {
    let addr = l.local_addr().ok();
    let l = tokio::net::TcpListener::from_std(l).map_err(|e| map_io("listener", e))?;
    info!(addr = ?addr, "metrics, status and dashboard at http://{}/", addr.map(|a| a.to_string()).unwrap_or_default());
    Ok(tokio::spawn(http::serve(
        l,
        http::Ops {
            metrics: ops.metrics.handle(),
            cmds: cmds.clone(),
            token: std::sync::Arc::clone(token),
        },
    )))
}

/// The first neighbour share: soon after start (2 s at most), then every interval.
fn first_neighbours(opts: &ShellOptions) -> Duration {
    if opts.notify.neighbours {
        opts.notify.interval.min(Duration::from_secs(2))
    } else {
        Duration::from_secs(3600)
    }
}

fn reannounce_period(opts: &ShellOptions) -> Duration {
    if opts.garp_refresh.is_zero() {
        Duration::from_secs(3600)
    } else {
        opts.garp_refresh
    }
}

/// The keyring's digest for the gossiped metadata (0 without a keyring): its key ids,
/// sending key first — never the keys.
fn keyring_digest(env: Option<&Envelope>) -> u64 {
    env.map_or(0, |e| {
        let mut h = crate::core::hash::StableHasher::new();
        for id in e.key_ids() {
            h.write_u64(u64::from(id));
        }
        h.finish()
    })
}

/// The next delivery of a signal, or never without a handler.
async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// `fd`'s read readiness if tokio already knows it (no waiting, nothing registered
/// that outlives this call: the loop polls again before it sleeps).
fn ready_now<T: std::os::fd::AsRawFd>(fd: &AsyncFd<T>) -> Option<AsyncFdReadyGuard<'_, T>> {
    match fd.poll_read_ready(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(g)) => Some(g),
        _ => None,
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    if let Some(d) = at {
        tokio::time::sleep_until(d).await
    }
}

/// Datagrams that this node's keys cannot open are said in the log at most this
/// often (each is counted in the drops).
const KEY_WARN_PERIOD: Duration = Duration::from_secs(60);

/// A datagram sealed with a key this node does not have, or that fails to
/// authenticate: a node whose `--key-file` differs from its peers' would otherwise
/// sit alone, not ready, with only a counter to say why.
fn warn_key_mismatch(hush: &mut Hush, from: std::net::SocketAddr, d: Unopened) {
    let Some(n) = hush.hit(clock::now()) else {
        return;
    };
    let more = if n > 1 {
        format!(" ({n} such datagrams since the last warning)")
    } else {
        String::new()
    };
    let why = match d {
        Unopened::UnknownKey => "sealed with a key this node does not have",
        _ => "failing authentication",
    };
    warn!(
        "dropping datagrams from {from}, {why}{more}: is --key-file the same on every node (during a key rotation, every node must list the new key before any seals with it)?"
    );
}

/// Takes every datagram already queued (up to [`MAX_BURST`]) before sleeping again,
/// each opened and handed to the engine with `now` read after it arrived.
fn receive(
    mut guard: AsyncFdReadyGuard<'_, UdpSocket>,
    buf: &mut [u8],
    env: &mut Option<Envelope>,
    engine: &mut Engine,
    counters: &mut ShellCounters,
    key_warn: &mut Hush,
) {
    for _ in 0..MAX_BURST {
        let now = clock::now();
        match guard.get_inner().recv_from(buf) {
            Ok((n, from)) => {
                counters.datagrams_in += 1;
                counters.bytes_in += n as u64;
                let plain = match env {
                    Some(e) => match e.open(&buf[..n]) {
                        Ok(p) => Some(p),
                        Err(d) => {
                            *counters.drops.entry(d.label()).or_default() += 1;
                            debug!(%from, reason = d.label(), "datagram dropped");
                            if matches!(d, Unopened::UnknownKey | Unopened::Auth) {
                                warn_key_mismatch(key_warn, from, d);
                            }
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
