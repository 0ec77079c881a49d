//! The discrete-event world: nodes (real engine + real foca, a drifting clock, a
//! model kernel) and the dispatch of events to them. The parts live beside it:
//! [`queue`](crate::queue) (the event queue), [`network`](crate::network) (the faulty
//! network), [`shell`](crate::shell) (the model shell between engine and kernel),
//! [`checker`](crate::checker) (S1), [`liveness`](crate::liveness) (L1/B1),
//! [`inject`](crate::inject) (fault injection), [`report`](crate::report) (the
//! result) and [`trace`](crate::trace).
//!
//! One seed determines everything: the RNG, the clocks, the fault schedule (unless
//! scripted) and the network's choices. Events are ordered by (real time, insertion
//! number), so a run is a pure function of its configuration, and
//! [`RunResult::trace_hash`] proves it.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use wackamole::core::config::{
    ClusterConfig, FenceKind, GroupId, NodeConfig, Profile, QuorumMode, Timing, Vip, VipGroup,
};
use wackamole::core::engine::{Action, Breaks, Engine, EngineConfig, EngineInit, Event};
use wackamole::core::hash::{StableHasher, mix64};
use wackamole::core::time::Instant;

use crate::checker::Checker;
use crate::clock::{Clock, Tau};
use crate::faults::{Fault, FaultKind, Schedule};
use crate::kernel::{Kernel, KernelBreaks, WORKER_FUZZ_MAX};
use crate::liveness::{L1_WINDOW, LivenessState, settle_bound};
use crate::network::Network;
use crate::queue::{Ev, EventQueue, ShellStep};
pub use crate::report::{RunResult, Violation};
use crate::trace::{TRACE_TAIL, Tag, describe_datagram};

/// One millisecond of simulated time.
pub const MS: u64 = 1_000_000;
/// One second of simulated time.
pub const SEC: u64 = 1_000_000_000;

/// Largest socket buffer of a frozen node, in datagrams.
pub const MAX_FROZEN_BACKLOG: usize = 4096;
/// How long after a datagram wakes an agent its shell is still draining the
/// socket: what arrives by then is read in the same wake-up.
pub const WAKE_READ: u64 = 200_000;
/// Largest number of events one run may process (a runaway guard).
pub const MAX_EVENTS: u64 = 60_000_000;

/// Everything that defines a run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed.
    pub seed: u64,
    /// Number of nodes.
    pub nodes: usize,
    /// Number of VIP groups.
    pub groups: usize,
    /// Quorum mode.
    pub quorum: QuorumMode,
    /// Fence.
    pub fence: FenceKind,
    /// Timing profile.
    pub profile: Profile,
    /// Background datagram loss probability.
    pub loss: f64,
    /// Fault classes that may be scheduled.
    pub faults: Vec<FaultKind>,
    /// Number of faults to schedule (inclusive range).
    pub fault_count: (usize, usize),
    /// Time before the first fault.
    pub warmup_s: f64,
    /// Length of the fault phase.
    pub fault_phase_s: f64,
    /// Disabled core mechanisms.
    pub breaks: Breaks,
    /// Disabled kernel mechanisms.
    pub kernel_breaks: KernelBreaks,
    /// Scan every address after every event as well.
    pub full_check: bool,
    /// Make one voter a witness (majority mode, ≥ 3 nodes).
    pub witness: bool,
    /// Stop at the first violation.
    pub stop_on_violation: bool,
    /// Keep every trace line (for replays).
    pub full_trace: bool,
    /// Record the last trace lines (set when a failing seed is re-run).
    pub record_trace: bool,
    /// Override of the fail-back delay.
    pub failback_s: Option<f64>,
    /// Allow clock rates beyond ρ (the checker must then fire).
    pub clock_beyond_rho: bool,
    /// Number of voters in majority mode (the first nodes by name).
    pub voters: usize,
    /// A scripted schedule instead of one drawn from the seed.
    pub script: Option<Schedule>,
}

impl SimConfig {
    /// A default configuration for a seed.
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes: 3,
            groups: 4,
            quorum: QuorumMode::Majority,
            fence: FenceKind::Gate,
            profile: Profile::Default,
            loss: 0.0,
            faults: FaultKind::ALL_SAFE.to_vec(),
            fault_count: (2, 6),
            warmup_s: 3.0,
            fault_phase_s: 15.0,
            breaks: Breaks::default(),
            kernel_breaks: KernelBreaks::default(),
            full_check: false,
            witness: false,
            stop_on_violation: true,
            full_trace: false,
            record_trace: false,
            failback_s: None,
            clock_beyond_rho: false,
            voters: 3,
            script: None,
        }
    }
}

/// Where a node's agent process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Agent {
    /// Not started yet (joins later) or stopped after a graceful leave.
    Off,
    Running,
    Frozen,
    /// Process dead, kernel alive.
    Crashed,
}

/// One machine: its clock and kernel, and the agent process on it.
pub(crate) struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub clock: Clock,
    pub kernel: Kernel,
    pub machine_up: bool,
    pub boot: u64,
    pub agent: Agent,
    pub engine: Option<Engine>,
    pub life: u64,
    pub timer_gen: u64,
    pub last_now: Instant,
    pub frozen_events: Vec<Ev>,
    pub healthy: bool,
    /// The groups (bit g % 64) whose interface is down on this machine (the
    /// `link` fault); a starting agent finds it so.
    pub link_down: u64,
    pub draining: bool,
    pub started_at: Tau,
    pub restarts: u64,
    /// Which cluster configuration this node's file holds (voter changes: the
    /// agent starts with it).
    pub config: usize,
    /// Which configuration's voter set the running engine has (a reload step at a
    /// time moves it towards `config`).
    pub voters_at: usize,
    /// Which pool (index into `World::pools`) this node is configured with.
    pub pool: usize,
    /// Its engine's group table, slot by slot (what the model shell binds), and
    /// that table's digest.
    pub table: Vec<Vec<IpAddr>>,
    pub table_digest: [u8; 16],
}

/// The world.
pub struct World {
    pub(crate) cfg: SimConfig,
    pub(crate) cluster: ClusterConfig,
    /// Configurations in use: the initial one, then one per voter step (each one
    /// voter from the one before).
    pub(crate) configs: Vec<ClusterConfig>,
    /// Pools in use: the initial one, then one per reload fault.
    pub(crate) pools: Vec<Vec<VipGroup>>,
    /// `link`/`link-up` faults whose machine part (the interface's state, the
    /// scheduled end) is done: a replay after a freeze only tells the agent.
    pub(crate) links_applied: std::collections::BTreeSet<usize>,
    pub(crate) rng: StdRng,
    pub(crate) now: Tau,
    pub(crate) queue: EventQueue,
    pub(crate) nodes: Vec<Node>,
    pub(crate) by_addr: BTreeMap<SocketAddr, usize>,
    pub(crate) vips: Vec<(IpAddr, GroupId)>,
    pub(crate) net: Network,
    pub(crate) schedule: Schedule,
    pub(crate) check: Checker,
    pub(crate) live: LivenessState,
    /// Faults that took groups from their holder: (group, node, when, machine crash).
    pub(crate) pending_failover: Vec<(GroupId, usize, Tau, bool)>,
    /// Drains and leaves: (group, node, when).
    pub(crate) pending_handover: Vec<(GroupId, usize, Tau)>,
    pub(crate) result: RunResult,
    pub(crate) trace: VecDeque<String>,
    pub(crate) hasher: StableHasher,
    /// End of the fault phase.
    pub(crate) quiet_at: Tau,
    pub(crate) end_at: Tau,
}

pub(crate) fn ms_f(t: Tau) -> f64 {
    t as f64 / MS as f64
}

/// Builds the cluster configuration of a run (shared with tests and the CLI).
pub fn cluster_config(cfg: &SimConfig) -> ClusterConfig {
    let names: Vec<String> = (0..cfg.nodes).map(|i| format!("n{i:02}")).collect();
    let voters: Vec<String> = match cfg.quorum {
        QuorumMode::Off => names.iter().take(2).cloned().collect(),
        QuorumMode::Majority => names
            .iter()
            .take(cfg.voters.clamp(1, cfg.nodes))
            .cloned()
            .collect(),
    };
    let witnesses = if cfg.witness && cfg.quorum == QuorumMode::Majority && voters.len() >= 3 {
        vec![voters[voters.len() - 1].clone()]
    } else {
        vec![]
    };
    let mut groups = Vec::new();
    for g in 0..cfg.groups {
        let a: IpAddr = format!("10.1.{}.{}", g / 200, 10 + g % 200)
            .parse()
            .expect("valid");
        let mut vips = vec![Vip::host(a)];
        if g % 4 == 3 {
            // A braced group: two addresses that move together, one of them IPv6.
            vips.push(Vip::host(
                format!("fd00::{:x}", 0x100 + g).parse().expect("valid"),
            ));
        }
        groups.push(VipGroup::new(vips));
    }
    let mut timing = Timing::profile(cfg.profile);
    if let Some(f) = cfg.failback_s {
        timing.failback_delay = Duration::from_secs_f64(f);
    }
    ClusterConfig::new(cfg.quorum, cfg.fence, voters, witnesses, groups, timing)
}
impl World {
    /// A world for `cfg`, with its schedule drawn from the seed.
    pub fn new(cfg: SimConfig) -> World {
        let mut rng = StdRng::seed_from_u64(mix64(cfg.seed ^ 0x5eed));
        let cluster = cluster_config(&cfg);
        let rho = cluster.timing.rho;
        let vips: Vec<(IpAddr, GroupId)> = cluster
            .groups
            .iter()
            .enumerate()
            .flat_map(|(g, grp)| grp.vips.iter().map(move |v| (v.addr, g as GroupId)))
            .collect();
        let mut nodes = Vec::new();
        let mut by_addr = BTreeMap::new();
        for i in 0..cfg.nodes {
            let addr: SocketAddr = format!("10.0.{}.{}:7946", i / 200, 1 + i % 200)
                .parse()
                .expect("valid");
            // Rates within ρ (well inside: 0.9ρ), offsets arbitrary.
            let rate = 1.0 + rho * 0.9 * (rng.random::<f64>() * 2.0 - 1.0);
            let offset = rng.random_range(0..1000 * SEC);
            nodes.push(Node {
                name: format!("n{i:02}"),
                addr,
                clock: Clock::new(offset, rate),
                kernel: Kernel::new(cfg.fence == FenceKind::Gate, cfg.kernel_breaks),
                machine_up: true,
                boot: 0,
                agent: Agent::Off,
                engine: None,
                life: 0,
                timer_gen: 0,
                last_now: Instant::ZERO,
                frozen_events: Vec::new(),
                healthy: true,
                link_down: 0,
                draining: false,
                started_at: 0,
                restarts: 0,
                config: 0,
                voters_at: 0,
                pool: 0,
                table: Vec::new(),
                table_digest: [0; 16],
            });
            by_addr.insert(addr, i);
        }
        let schedule = match &cfg.script {
            Some(s) => s.clone(),
            None => Schedule::generate(&cfg, &cluster, &mut rng),
        };
        let quiet_at = ((cfg.warmup_s + cfg.fault_phase_s) * SEC as f64) as u64;
        let settle = settle_bound(&cluster);
        let end_at = quiet_at + settle + L1_WINDOW + SEC;
        let groups = cluster.groups.len();
        let loss = cfg.loss;
        World {
            result: RunResult {
                seed: cfg.seed,
                schedule: schedule.describe(),
                ..RunResult::default()
            },
            cfg,
            configs: vec![cluster.clone()],
            pools: vec![cluster.groups.clone()],
            cluster,
            rng,
            now: 0,
            queue: EventQueue::default(),
            nodes,
            by_addr,
            vips,
            net: Network::new(loss),
            schedule,
            links_applied: Default::default(),
            check: Checker {
                history: vec![Vec::new(); groups],
                ..Checker::default()
            },
            live: LivenessState::default(),
            pending_failover: Vec::new(),
            pending_handover: Vec::new(),
            trace: VecDeque::new(),
            hasher: StableHasher::new(),
            quiet_at,
            end_at,
        }
    }

    /// Records a trace event. The digest always covers (time, tag); the text is only
    /// built when the run records its trace (a failing seed is re-run to get it).
    pub(crate) fn log(&mut self, tag: Tag, line: impl FnOnce() -> String) {
        self.hasher.write_u64(self.now).write_u64(tag.key());
        if self.cfg.record_trace || self.cfg.full_trace {
            let l = format!("{:>10.3}ms {}", ms_f(self.now), line());
            self.trace.push_back(l);
            if !self.cfg.full_trace && self.trace.len() > TRACE_TAIL {
                self.trace.pop_front();
            }
        }
    }

    /// Runs to the end and returns the result.
    pub fn run(mut self) -> RunResult {
        self.check.open = vec![vec![None; self.nodes.len()]; self.cluster.groups.len()];
        // Nodes that join later start Off; the others boot at t=0 with a small spread.
        for i in 0..self.nodes.len() {
            if !self.schedule.late_joiners.contains(&i) {
                let at = self.rng.random_range(0..50 * MS);
                self.schedule.faults.push(Fault {
                    at,
                    kind: FaultKind::Join,
                    node: i,
                    other: None,
                    dur: 0,
                });
            }
        }
        self.schedule.faults.sort_by_key(|f| f.at);
        for (i, f) in self.schedule.faults.clone().iter().enumerate() {
            self.queue.push(f.at, Ev::Fault(i));
        }
        let mut t = 0;
        while t < self.end_at {
            t += 50 * MS;
            self.queue.push(t, Ev::Check);
        }
        let mut n_events = 0u64;
        while let Some((at, ev)) = self.queue.pop() {
            if at > self.end_at || n_events >= MAX_EVENTS {
                break;
            }
            self.now = at;
            n_events += 1;
            self.handle(ev);
            if !self.check.touched.is_empty() {
                self.check_touched();
            }
            if self.cfg.full_check {
                self.check_all();
            }
            if self.cfg.stop_on_violation && !self.check.violations.is_empty() {
                break;
            }
        }
        self.finish(n_events)
    }

    pub(crate) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Timer { node, life, tgen } => {
                if self.defer_if_frozen(node, &Ev::Timer { node, life, tgen }) {
                    return;
                }
                let n = &self.nodes[node];
                if n.life != life || n.timer_gen != tgen || n.agent != Agent::Running {
                    return;
                }
                self.with_engine(node, |e, now| e.handle_timeout(now));
            }
            Ev::Deliver { to, from, payload } => {
                let n = &self.nodes[to];
                if !n.machine_up {
                    return;
                }
                match n.agent {
                    Agent::Frozen if self.nodes[to].frozen_events.len() < MAX_FROZEN_BACKLOG => {
                        self.nodes[to]
                            .frozen_events
                            .push(Ev::Deliver { to, from, payload });
                    }
                    Agent::Running => self.wake_on_datagram(to, from, payload),
                    _ => {}
                }
            }
            Ev::Shell {
                node,
                life,
                id,
                op,
                step,
            } => {
                let ev = Ev::Shell {
                    node,
                    life,
                    id,
                    op: op.clone(),
                    step: step.clone(),
                };
                if self.defer_if_frozen(node, &ev) {
                    return;
                }
                if self.nodes[node].life != life
                    || self.nodes[node].agent != Agent::Running
                    || !self.nodes[node].machine_up
                {
                    return;
                }
                self.shell_step(node, life, id, op, step);
            }
            Ev::Probe { node, life, group } => {
                if self.defer_if_frozen(node, &Ev::Probe { node, life, group }) {
                    return;
                }
                if self.nodes[node].life != life || self.nodes[node].agent != Agent::Running {
                    return;
                }
                let conflict = self.probe_conflict(node, group);
                self.log(Tag::Probe { node, conflict }, || {
                    format!("probe n{node} g{group} conflict={conflict}")
                });
                self.with_engine(node, |e, now| e.handle_probe(group, conflict, now));
            }
            Ev::Worker {
                node,
                boot,
                at_local,
            } => {
                let n = &mut self.nodes[node];
                if n.boot != boot || !n.machine_up || n.kernel.worker_at != Some(at_local) {
                    return;
                }
                let local = n.clock.local(self.now).as_nanos().max(at_local);
                let fuzz = self.rng.random_range(0..=WORKER_FUZZ_MAX);
                let gone = self.nodes[node].kernel.run_worker(local, fuzz);
                for a in gone {
                    self.log(Tag::Expired { node }, || {
                        format!("kernel n{node} expired {a}")
                    });
                    self.note_kernel_change(node, a);
                }
                self.arm_worker(node);
            }
            Ev::Fault(i) => {
                let f = self.schedule.faults[i].clone();
                // A frozen process cannot take commands: they wait in its socket.
                let command = matches!(
                    f.kind,
                    FaultKind::Drain
                        | FaultKind::Undrain
                        | FaultKind::Health
                        | FaultKind::Healthy
                        | FaultKind::Link
                        | FaultKind::LinkUp
                        | FaultKind::Prefer
                        | FaultKind::Leave
                        | FaultKind::Reconfigure
                        | FaultKind::ReloadApply
                );
                // An interface is the machine's: it goes down and up at the fault's
                // times whatever the agent is doing (a frozen agent is told when it
                // runs again, a restarted one reads it at start; seed 9300000873:
                // a crash of the frozen node dropped the deferred `link-up`, and its
                // next agent found the link down for good).
                if matches!(f.kind, FaultKind::Link | FaultKind::LinkUp)
                    && self.links_applied.insert(i)
                {
                    if f.kind == FaultKind::Link {
                        self.nodes[f.node].link_down = f.other.unwrap_or(1) as u64;
                        self.fault_after(f.dur, FaultKind::LinkUp, f.node);
                    } else {
                        self.nodes[f.node].link_down = 0;
                    }
                }
                if command && self.nodes[f.node].agent == Agent::Frozen {
                    // A new configuration is a file on disk: whatever starts the
                    // agent next (this deferred restart, or a crash and a restart
                    // first) starts it with the new one (seed 55501978: a crash of
                    // the frozen node dropped the deferred command, and it came back
                    // on the old configuration for good).
                    if f.kind == FaultKind::Reconfigure {
                        let target = f.other.unwrap_or(0);
                        if self.nodes[f.node].config < target {
                            if !self.operator_reaches(f.node)
                                || !self.may_write_voters(f.node, target)
                            {
                                // Not written yet: the operator comes back later (a
                                // deferred command would be lost with a restart of
                                // the frozen agent, seed 4400000787).
                                let e = self.schedule.push_end(FaultKind::Reconfigure, f.node);
                                self.schedule.faults[e].other = Some(target);
                                let wait = self.rng.random_range(200 * MS..800 * MS);
                                self.queue.push(self.now + wait, Ev::Fault(e));
                                return;
                            }
                            self.nodes[f.node].config = target;
                        }
                    }
                    if f.kind == FaultKind::ReloadApply {
                        self.nodes[f.node].pool = f.other.unwrap_or(0);
                    }
                    self.nodes[f.node].frozen_events.push(Ev::Fault(i));
                    return;
                }
                self.apply_fault(f);
            }
            Ev::Check => self.periodic_check(),
        }
    }

    pub(crate) fn defer_if_frozen(&mut self, node: usize, ev: &Ev) -> bool {
        if self.nodes[node].agent == Agent::Frozen {
            self.nodes[node].frozen_events.push(ev.clone());
            return true;
        }
        false
    }

    /// A datagram reaches a running agent, which wakes and drains its socket: the
    /// datagrams to it that arrive within [`WAKE_READ`] (and its timer, if due by
    /// then) may be handed over in the same wake-up, as the agent's shell does
    /// (`Engine::wakeup`: one re-evaluation after the round's datagrams); each
    /// joins with probability 1/2.
    fn wake_on_datagram(&mut self, to: usize, from: SocketAddr, payload: Vec<u8>) {
        self.log_deliver(to, from, &payload);
        let mut batch = vec![(from, payload)];
        let mut timer = false;
        let limit = self.now + WAKE_READ;
        let (life, tgen) = (self.nodes[to].life, self.nodes[to].timer_gen);
        // Whether the agent is still reading when the next one comes is a coin: a
        // real agent drains what is queued, but may have gone back to sleep
        // already, so both orders of evaluation stay in the sweeps.
        while self.rng.random_bool(0.5)
            && let Some((at, ev)) = self.queue.pop_if(|at, ev| {
                at <= limit
                    && match ev {
                        Ev::Deliver { to: t, .. } => *t == to,
                        Ev::Timer {
                            node,
                            life: l,
                            tgen: g,
                        } => *node == to && *l == life && *g == tgen,
                        _ => false,
                    }
            })
        {
            self.now = at;
            match ev {
                Ev::Deliver { from, payload, .. } => {
                    self.log_deliver(to, from, &payload);
                    batch.push((from, payload));
                }
                _ => timer = true,
            }
        }
        self.with_engine(to, |e, now| {
            e.wakeup(|e| {
                for (from, payload) in &batch {
                    e.handle_datagram(*from, payload, now);
                }
                if timer {
                    e.handle_timeout(now);
                }
            })
        });
    }

    fn log_deliver(&mut self, to: usize, from: SocketAddr, payload: &[u8]) {
        let len = payload.len();
        // Decoded as the receiver would: its configuration may differ from the
        // initial one after a voter change.
        let cid = self.configs[self.nodes[to].config].cluster_id();
        self.log(Tag::Deliver { node: to }, || {
            format!(
                "deliver {} -> {} ({len} B) {}",
                from,
                to,
                describe_datagram(cid, payload)
            )
        });
    }

    /// Calls into a node's engine with a `now` read a little after the event (never
    /// going backwards), then carries out its actions.
    pub(crate) fn with_engine(&mut self, node: usize, f: impl FnOnce(&mut Engine, Instant)) {
        let read_delay = self.rng.random_range(0..=200_000u64);
        let n = &mut self.nodes[node];
        let Some(mut engine) = n.engine.take() else {
            return;
        };
        let now = n.clock.local(self.now + read_delay).max(n.last_now);
        n.last_now = now;
        f(&mut engine, now);
        // The model shell follows the engine's group table (a reload, a retired slot).
        let d = engine.table_digest();
        if d != n.table_digest {
            n.table_digest = d;
            n.table = engine
                .config()
                .groups
                .iter()
                .map(|g| g.vips.iter().map(|v| v.addr).collect())
                .collect();
        }
        let mut actions = Vec::new();
        while let Some(a) = engine.poll_action() {
            actions.push(a);
        }
        let next = engine.poll_timeout();
        let finished = engine.is_finished();
        self.nodes[node].engine = Some(engine);
        for a in actions {
            self.do_action(node, a);
        }
        let n = &mut self.nodes[node];
        n.timer_gen += 1;
        let (life, tgen) = (n.life, n.timer_gen);
        if let Some(t) = next {
            let at = n.clock.real_at(t, self.now).max(self.now + read_delay);
            self.queue.push(at, Ev::Timer { node, life, tgen });
        }
        if finished && self.nodes[node].agent == Agent::Running {
            // A graceful leave completed: the process exits.
            self.log(Tag::Left { node }, || format!("n{node} left and exited"));
            self.stop_agent(node, Agent::Off);
        }
    }

    pub(crate) fn do_action(&mut self, node: usize, a: Action) {
        match a {
            Action::Send { to, payload } => {
                let d = self.rng.random_range(0..=300_000u64);
                self.net_send(node, to, payload, self.now + d);
            }
            Action::Kernel { id, op } => {
                let life = self.nodes[node].life;
                let d1 = self.rng.random_range(0..=2 * MS);
                self.queue.push(
                    self.now + d1,
                    Ev::Shell {
                        node,
                        life,
                        id,
                        op,
                        step: ShellStep::Check,
                    },
                );
            }
            Action::Probe { group } => {
                let life = self.nodes[node].life;
                let w = self.cluster.timing.probe_wait.as_nanos() as u64;
                let d = w + self.rng.random_range(0..=2 * MS);
                self.queue
                    .push(self.now + d, Ev::Probe { node, life, group });
            }
            Action::Announce { .. } => {}
            Action::Event(e) => {
                match e {
                    Event::Conflict { .. } => self.result.conflicts += 1,
                    Event::Rearmed { .. } => self.result.rearms += 1,
                    _ => {}
                }
                self.log(Tag::Event { node }, || format!("n{node} {e:?}"));
            }
        }
    }

    pub(crate) fn net_send(&mut self, from: usize, to: SocketAddr, payload: Vec<u8>, at: Tau) {
        if self.now >= self.quiet_at {
            self.net.steady.0 += 1;
            self.net.steady.1 += payload.len() as u64;
        }
        let Some(&dst) = self.by_addr.get(&to) else {
            return;
        };
        let src = self.nodes[from].addr;
        for delay in self.net.route(&mut self.rng, from, dst) {
            self.queue.push(
                at + delay,
                Ev::Deliver {
                    to: dst,
                    from: src,
                    payload: payload.clone(),
                },
            );
        }
    }

    pub(crate) fn start_agent(&mut self, node: usize) {
        self.nodes[node].voters_at = self.nodes[node].config;
        let mut cluster = self.configs[self.nodes[node].config].clone();
        cluster.groups = self.pools[self.nodes[node].pool].clone();
        let n = &mut self.nodes[node];
        if !n.machine_up {
            return;
        }
        n.life += 1;
        n.restarts += 1;
        n.agent = Agent::Running;
        n.started_at = self.now;
        n.healthy = true;
        n.draining = false;
        let seeds: Vec<SocketAddr> = self.nodes.iter().take(3).map(|n| n.addr).collect();
        let n = &self.nodes[node];
        let config = EngineConfig {
            cluster,
            node: NodeConfig::new(n.name.clone()),
            bind: n.addr,
            seeds,
            cluster_size_hint: self.nodes.len(),
            breaks: self.cfg.breaks,
            keyring: 0,
        };
        let init = EngineInit {
            nonce: self.rng.random(),
            rng_seed: self.rng.random(),
            // Epochs grow across restarts, as wall-clock microseconds do.
            epoch: 1_000_000_000 + self.now / 1000 + n.restarts,
        };
        let now = n.clock.local(self.now).max(n.last_now);
        let engine = Engine::new(config, init, now);
        self.nodes[node].engine = Some(engine);
        self.log(Tag::Started { node }, || format!("n{node} agent started"));
        let mask = self.nodes[node].link_down;
        self.with_engine(node, |e, now| {
            if mask != 0 {
                // The shell reads the links at start (greet).
                let unable = unable_of(e, mask);
                e.set_unable(unable, now);
            }
        });
    }

    pub(crate) fn stop_agent(&mut self, node: usize, to: Agent) {
        let n = &mut self.nodes[node];
        n.engine = None;
        n.agent = to;
        n.frozen_events.clear();
        n.life += 1;
    }

    pub(crate) fn holdings(&self, node: usize) -> Vec<GroupId> {
        (0..self.cluster.groups.len())
            .filter(|&g| {
                let first = self.cluster.groups[g].vips[0].addr;
                self.nodes[node].machine_up
                    && self.nodes[node].kernel.answers(first, self.local_now(node))
            })
            .map(|g| g as GroupId)
            .collect()
    }
}

/// must produce the same digest, or determinism is broken.
pub fn run(cfg: SimConfig) -> RunResult {
    let r = World::new(cfg.clone()).run();
    if (r.violations.is_empty() && r.liveness.is_empty()) || cfg.record_trace || cfg.full_trace {
        return r;
    }
    let again = World::new(SimConfig {
        record_trace: true,
        ..cfg
    })
    .run();
    assert_eq!(
        again.trace_hash, r.trace_hash,
        "seed {} is not deterministic",
        r.seed
    );
    again
}

/// The slots of `e`'s table whose interface is down under `mask` (bit g % 64).
pub(crate) fn unable_of(e: &Engine, mask: u64) -> Vec<GroupId> {
    (0..e.config().groups.len())
        .filter(|g| mask >> (g % 64) & 1 == 1)
        .map(|g| g as GroupId)
        .collect()
}
