//! The discrete-event world: nodes (real engine + real foca, a drifting clock, a
//! model kernel), a faulty network, a model shell between engine and kernel, a fault
//! schedule, and the checker.
//!
//! One seed determines everything: the RNG, the clocks, the fault schedule and the
//! network's choices. Events are ordered by (real time, insertion number), so a run is
//! a pure function of its configuration, and [`RunResult::trace_hash`] proves it.
//!
//! **Checker.** S1 is checked on the kernels, not on what the nodes believe: after
//! every event that wrote to a kernel, every address it wrote is looked up in every
//! kernel (address present, and with the gate a live entry). A second answering
//! kernel is a violation. Checking at writes is complete: answering only *starts* or
//! is *extended* by a write; expiry and removal only end it. `full_check` also scans
//! every address after every event, to show the two agree.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use wackamole::core::config::{
    ClusterConfig, FenceKind, GroupId, NodeConfig, Profile, QuorumMode, Timing, Vip, VipGroup,
};
use wackamole::core::engine::{Action, Breaks, Engine, EngineConfig, EngineInit, Event, KernelOp};
use wackamole::core::hash::{StableHasher, mix64};
use wackamole::core::ownership::KernelOutcome;
use wackamole::core::time::Instant;

use crate::clock::{Clock, Tau};
use crate::faults::{Fault, FaultKind, Schedule};
use crate::kernel::{GateWrite, Kernel, KernelBreaks, WORKER_FUZZ_MAX};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// Largest socket buffer of a frozen node, in datagrams.
pub const MAX_FROZEN_BACKLOG: usize = 4096;
/// Largest number of events one run may process (a runaway guard).
pub const MAX_EVENTS: u64 = 60_000_000;
/// Length of the window after the settle bound over which L1 and B1 are sampled.
pub const L1_WINDOW: Tau = 2 * SEC;
/// Fraction of samples in which each group must be held by exactly one eligible
/// node (and B1 must hold), without background loss. With background loss p the
/// bar is min(0.95, 1 − p): a lease needs a quorum of answers every few rounds,
/// so heavy loss makes brief re-binds normal; a stuck group still fails.
pub const L1_MIN_COVERAGE: f64 = 0.95;

fn l1_bar(loss: f64) -> f64 {
    L1_MIN_COVERAGE.min(1.0 - loss)
}
/// How many trace lines a violation report keeps.
pub const TRACE_TAIL: usize = 80;

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
        }
    }
}

/// A dual ownership found by the checker.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Real time.
    pub at: Tau,
    /// The address answered twice.
    pub vip: IpAddr,
    /// The nodes answering it.
    pub nodes: Vec<String>,
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// Seed.
    pub seed: u64,
    /// S1 violations (empty when safe).
    pub violations: Vec<Violation>,
    /// L1/B1 failures after faults stopped.
    pub liveness: Vec<String>,
    /// Failover times after a holder's machine crashed, ms.
    pub failover_crash_ms: Vec<f64>,
    /// Failover times after agent crashes and freezes, ms.
    pub failover_other_ms: Vec<f64>,
    /// Handover gaps on graceful leave and drain, ms.
    pub handover_ms: Vec<f64>,
    /// Total time groups had no holder after first convergence, ms.
    pub unowned_ms: f64,
    /// Holder changes after first convergence.
    pub moves: u64,
    /// Of those, changes between two nodes no fault named (neither the old nor the
    /// new holder crashed, left, joined, …): moves for balance alone.
    pub bystander_moves: u64,
    /// Simulated node-seconds (for rates per node-hour).
    pub node_seconds: f64,
    /// Datagrams sent per node per second.
    pub datagrams_per_node_s: f64,
    /// Bytes sent per node per second.
    pub bytes_per_node_s: f64,
    /// Digest of the whole event sequence.
    pub trace_hash: u64,
    /// Last trace lines (or all with `full_trace`).
    pub trace: Vec<String>,
    /// Events processed.
    pub events: u64,
    /// Simulated seconds.
    pub sim_s: f64,
    /// The fault schedule, in words.
    pub schedule: Vec<String>,
    /// Probe conflicts seen by the engines (the canary for a too-small K).
    pub conflicts: u64,
    /// Lowest fraction, over groups, of L1 samples in which the group was held by
    /// exactly one eligible node.
    pub l1_min_coverage: f64,
}

#[derive(Clone, Debug)]
enum ShellStep {
    Check,
    Write,
    Ack {
        outcome: KernelOutcome,
        post_deadline: Option<Instant>,
    },
}

#[derive(Clone, Debug)]
enum Ev {
    Timer {
        node: usize,
        life: u64,
        tgen: u64,
    },
    Deliver {
        to: usize,
        from: SocketAddr,
        payload: Vec<u8>,
    },
    Shell {
        node: usize,
        life: u64,
        id: u64,
        op: KernelOp,
        step: ShellStep,
    },
    Probe {
        node: usize,
        life: u64,
        group: GroupId,
    },
    Worker {
        node: usize,
        boot: u64,
        at_local: u64,
    },
    Fault(usize),
    Check,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Agent {
    /// Not started yet (joins later) or stopped after a graceful leave.
    Off,
    Running,
    Frozen,
    /// Process dead, kernel alive.
    Crashed,
}

struct Node {
    name: String,
    addr: SocketAddr,
    clock: Clock,
    kernel: Kernel,
    machine_up: bool,
    boot: u64,
    agent: Agent,
    engine: Option<Engine>,
    life: u64,
    timer_gen: u64,
    last_now: Instant,
    frozen_events: Vec<Ev>,
    healthy: bool,
    draining: bool,
    started_at: Tau,
    restarts: u64,
    /// Which cluster configuration this node's agent runs (voter changes).
    config: usize,
    /// Restart with the (new) configuration once the graceful leave completes.
    restart_after_leave: bool,
}

/// The world.
pub struct World {
    cfg: SimConfig,
    cluster: ClusterConfig,
    /// Configurations in use: the initial one, then one per voter change.
    configs: Vec<ClusterConfig>,
    rng: StdRng,
    now: Tau,
    seq: u64,
    queue: BinaryHeap<Reverse<(Tau, u64)>>,
    events: BTreeMap<u64, Ev>,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, usize>,
    vips: Vec<(IpAddr, GroupId)>,
    blocked: BTreeSet<(usize, usize)>,
    /// Extra delay on datagrams toward a node (congested link).
    slow_to: BTreeMap<usize, (Tau, Tau)>,
    link_loss: BTreeMap<(usize, usize), f64>,
    loss: f64,
    schedule: Schedule,
    // checker and metrics
    violations: Vec<Violation>,
    open: Vec<Vec<Option<(Tau, Tau)>>>,
    history: Vec<Vec<(usize, Tau, Tau)>>,
    pending_failover: Vec<(GroupId, usize, Tau, bool)>,
    pending_handover: Vec<(GroupId, usize, Tau)>,
    result: RunResult,
    trace: VecDeque<String>,
    hasher: StableHasher,
    touched: Vec<IpAddr>,
    quiet_at: Tau,
    end_at: Tau,
    l1_good: Vec<u64>,
    l1_samples: u64,
    b1_good: u64,
    l1_done: bool,
    /// Datagrams and bytes sent after the fault phase (steady state).
    steady: (u64, u64),
    converged_at: Option<Tau>,
}

fn ms_f(t: Tau) -> f64 {
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
                draining: false,
                started_at: 0,
                restarts: 0,
                config: 0,
                restart_after_leave: false,
            });
            by_addr.insert(addr, i);
        }
        let schedule = Schedule::generate(&cfg, &cluster, &mut rng);
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
            cluster,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes,
            by_addr,
            vips,
            blocked: BTreeSet::new(),
            slow_to: BTreeMap::new(),
            link_loss: BTreeMap::new(),
            loss,
            schedule,
            violations: Vec::new(),
            open: Vec::new(),
            history: vec![Vec::new(); groups],
            pending_failover: Vec::new(),
            pending_handover: Vec::new(),
            trace: VecDeque::new(),
            hasher: StableHasher::new(),
            touched: Vec::new(),
            quiet_at,
            end_at,
            l1_good: Vec::new(),
            l1_samples: 0,
            b1_good: 0,
            l1_done: false,
            steady: (0, 0),
            converged_at: None,
        }
    }

    fn push(&mut self, at: Tau, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// Records a trace event. The digest always covers (time, tag); the text is only
    /// built when the run records its trace (a failing seed is re-run to get it).
    fn log(&mut self, tag: u64, line: impl FnOnce() -> String) {
        self.hasher.write_u64(self.now).write_u64(tag);
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
        self.open = vec![vec![None; self.nodes.len()]; self.cluster.groups.len()];
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
            self.push(f.at, Ev::Fault(i));
        }
        let mut t = 0;
        while t < self.end_at {
            t += 50 * MS;
            self.push(t, Ev::Check);
        }
        let mut n_events = 0u64;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > self.end_at || n_events >= MAX_EVENTS {
                break;
            }
            self.now = at;
            let ev = self.events.remove(&seq).expect("event stored");
            n_events += 1;
            self.handle(ev);
            if !self.touched.is_empty() {
                self.check_touched();
            }
            if self.cfg.full_check {
                self.check_all();
            }
            if self.cfg.stop_on_violation && !self.violations.is_empty() {
                break;
            }
        }
        self.finish(n_events)
    }

    // ---- event handling ------------------------------------------------------------

    fn handle(&mut self, ev: Ev) {
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
                    Agent::Running => {
                        let len = payload.len();
                        // Decoded as the receiver would: its configuration may differ
                        // from the initial one after a voter change.
                        let cid = self.configs[self.nodes[to].config].cluster_id();
                        self.log(1 << 32 | to as u64, || {
                            format!(
                                "deliver {} -> {} ({len} B) {}",
                                from,
                                to,
                                describe_datagram(cid, &payload)
                            )
                        });
                        self.with_engine(to, |e, now| e.handle_datagram(from, &payload, now));
                    }
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
                self.log(2 << 32 | node as u64 | u64::from(conflict) << 16, || {
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
                    self.log(3 << 32 | node as u64, || {
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
                        | FaultKind::Prefer
                        | FaultKind::Leave
                        | FaultKind::Reconfigure
                );
                if command && self.nodes[f.node].agent == Agent::Frozen {
                    // A new configuration is a file on disk: whatever starts the
                    // agent next (this deferred restart, or a crash and a restart
                    // first) starts it with the new one (seed 55501978: a crash of
                    // the frozen node dropped the deferred command, and it came back
                    // on the old configuration for good).
                    if f.kind == FaultKind::Reconfigure {
                        self.nodes[f.node].config = f.other.unwrap_or(0);
                    }
                    self.nodes[f.node].frozen_events.push(Ev::Fault(i));
                    return;
                }
                self.apply_fault(f);
            }
            Ev::Check => self.periodic_check(),
        }
    }

    fn defer_if_frozen(&mut self, node: usize, ev: &Ev) -> bool {
        if self.nodes[node].agent == Agent::Frozen {
            self.nodes[node].frozen_events.push(ev.clone());
            return true;
        }
        false
    }

    /// Calls into a node's engine with a `now` read a little after the event (never
    /// going backwards), then carries out its actions.
    fn with_engine(&mut self, node: usize, f: impl FnOnce(&mut Engine, Instant)) {
        let read_delay = self.rng.random_range(0..=200_000u64);
        let n = &mut self.nodes[node];
        let Some(mut engine) = n.engine.take() else {
            return;
        };
        let now = n.clock.local(self.now + read_delay).max(n.last_now);
        n.last_now = now;
        f(&mut engine, now);
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
            self.push(at, Ev::Timer { node, life, tgen });
        }
        if finished && self.nodes[node].agent == Agent::Running {
            // A graceful leave completed: the process exits.
            self.log(4 << 32 | node as u64, || format!("n{node} left and exited"));
            self.stop_agent(node, Agent::Off);
            if std::mem::take(&mut self.nodes[node].restart_after_leave) {
                self.fault_after(50 * MS, FaultKind::Restart, node);
            }
        }
    }

    fn do_action(&mut self, node: usize, a: Action) {
        match a {
            Action::Send { to, payload } => {
                let d = self.rng.random_range(0..=300_000u64);
                self.net_send(node, to, payload, self.now + d);
            }
            Action::Kernel { id, op } => {
                let life = self.nodes[node].life;
                let d1 = self.rng.random_range(0..=2 * MS);
                self.push(
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
                self.push(self.now + d, Ev::Probe { node, life, group });
            }
            Action::Announce { .. } => {}
            Action::Event(e) => {
                if let Event::Conflict { .. } = e {
                    self.result.conflicts += 1;
                }
                self.log(5 << 32 | node as u64, || format!("n{node} {e:?}"));
            }
        }
    }

    fn net_send(&mut self, from: usize, to: SocketAddr, payload: Vec<u8>, at: Tau) {
        if self.now >= self.quiet_at {
            self.steady.0 += 1;
            self.steady.1 += payload.len() as u64;
        }
        let Some(&dst) = self.by_addr.get(&to) else {
            return;
        };
        if self.blocked.contains(&(from, dst)) {
            return;
        }
        let loss = self
            .loss
            .max(self.link_loss.get(&(from, dst)).copied().unwrap_or(0.0));
        if loss > 0.0 && self.rng.random::<f64>() < loss {
            return;
        }
        let copies = if self.rng.random::<f64>() < 0.005 {
            2
        } else {
            1
        };
        let src = self.nodes[from].addr;
        for _ in 0..copies {
            let r: f64 = self.rng.random();
            // LAN: 50–400 µs; 2 % 1–8 ms (reordering); 0.1 % 100–600 ms (a very late
            // datagram, e.g. a grant that arrives across a release).
            let extra = self
                .slow_to
                .get(&dst)
                .map_or(0, |&(lo, hi)| self.rng.random_range(lo..hi));
            let delay = extra
                + if r < 0.001 {
                    self.rng.random_range(100 * MS..600 * MS)
                } else if r < 0.021 {
                    self.rng.random_range(MS..8 * MS)
                } else {
                    self.rng.random_range(50_000..400_000)
                };
            self.push(
                at + delay,
                Ev::Deliver {
                    to: dst,
                    from: src,
                    payload: payload.clone(),
                },
            );
        }
    }

    // ---- the model shell -------------------------------------------------------------

    fn group_addrs(&self, g: GroupId) -> Vec<IpAddr> {
        self.cluster.groups[usize::from(g)]
            .vips
            .iter()
            .map(|v| v.addr)
            .collect()
    }

    fn local_now(&self, node: usize) -> Instant {
        self.nodes[node].clock.local(self.now)
    }

    fn shell_step(&mut self, node: usize, life: u64, id: u64, op: KernelOp, step: ShellStep) {
        self.log(11 << 32 | node as u64 | id << 40, || {
            format!("shell n{node} op{id} {op:?} step {step:?}")
        });
        let gate = self.cluster.fence == FenceKind::Gate;
        let e_ns = self.cluster.timing.gate_timeout.as_nanos() as u64;
        let a_ns = self.cluster.timing.gate_arm.as_nanos() as u64;
        let local = self.local_now(node);
        let d2 = self.rng.random_range(0..=MS);
        let d3 = self.rng.random_range(100_000..=MS);
        let ack = |w: &mut World, outcome: KernelOutcome, post: Option<Instant>| {
            w.push(
                w.now + d3,
                Ev::Shell {
                    node,
                    life,
                    id,
                    op: op.clone(),
                    step: ShellStep::Ack {
                        outcome,
                        post_deadline: post,
                    },
                },
            );
        };
        match step {
            ShellStep::Check => match &op {
                KernelOp::Flush => {
                    let addrs: Vec<IpAddr> = self.nodes[node].kernel.addrs().collect();
                    self.nodes[node].kernel.flush();
                    for a in addrs {
                        self.note_kernel_change(node, a);
                    }
                    ack(self, KernelOutcome::Ok, None);
                }
                KernelOp::Unbind { group } => {
                    for a in self.group_addrs(*group) {
                        self.nodes[node].kernel.del_gate(a);
                        self.nodes[node].kernel.del_addr(a);
                        self.note_kernel_change(node, a);
                    }
                    ack(self, KernelOutcome::Ok, None);
                }
                KernelOp::Bind { group, deadline } => {
                    if local > *deadline {
                        ack(self, KernelOutcome::Lapsed, None);
                        return;
                    }
                    for a in self.group_addrs(*group) {
                        if gate {
                            self.nodes[node].kernel.arm(a, local, a_ns);
                        }
                        let fuzz = self.rng.random_range(0..=WORKER_FUZZ_MAX);
                        self.nodes[node].kernel.replace_addr(a, local, fuzz);
                        self.note_kernel_change(node, a);
                    }
                    self.arm_worker(node);
                    if gate {
                        // The go-live write; a freeze may land between check and write.
                        self.push(
                            self.now + d2,
                            Ev::Shell {
                                node,
                                life,
                                id,
                                op: op.clone(),
                                step: ShellStep::Write,
                            },
                        );
                    } else {
                        ack(self, KernelOutcome::Ok, Some(*deadline));
                    }
                }
                KernelOp::Refresh {
                    group,
                    deadline,
                    renew_address,
                } => {
                    if local > *deadline {
                        ack(self, KernelOutcome::Lapsed, None);
                        return;
                    }
                    if gate {
                        self.push(
                            self.now + d2,
                            Ev::Shell {
                                node,
                                life,
                                id,
                                op: op.clone(),
                                step: ShellStep::Write,
                            },
                        );
                    } else {
                        let _ = renew_address;
                        for a in self.group_addrs(*group) {
                            let fuzz = self.rng.random_range(0..=WORKER_FUZZ_MAX);
                            self.nodes[node].kernel.replace_addr(a, local, fuzz);
                            self.note_kernel_change(node, a);
                        }
                        self.arm_worker(node);
                        ack(self, KernelOutcome::Ok, Some(*deadline));
                    }
                }
            },
            ShellStep::Write => {
                let (group, deadline, renew, bind) = match &op {
                    KernelOp::Bind { group, deadline } => (*group, *deadline, false, true),
                    KernelOp::Refresh {
                        group,
                        deadline,
                        renew_address,
                    } => (*group, *deadline, *renew_address, false),
                    _ => return,
                };
                let mut ok = true;
                for a in self.group_addrs(group) {
                    let r = if bind {
                        self.nodes[node].kernel.go_live(a, local, e_ns)
                    } else {
                        self.nodes[node].kernel.refresh_live(a, local, e_ns)
                    };
                    if r == GateWrite::Expired {
                        ok = false;
                    }
                    if renew {
                        let fuzz = self.rng.random_range(0..=WORKER_FUZZ_MAX);
                        self.nodes[node].kernel.replace_addr(a, local, fuzz);
                    }
                    self.note_kernel_change(node, a);
                }
                self.arm_worker(node);
                if ok {
                    ack(self, KernelOutcome::Ok, Some(deadline));
                } else {
                    for a in self.group_addrs(group) {
                        self.nodes[node].kernel.del_gate(a);
                        self.note_kernel_change(node, a);
                    }
                    ack(self, KernelOutcome::Lapsed, None);
                }
            }
            ShellStep::Ack {
                outcome,
                post_deadline,
            } => {
                let mut outcome = outcome;
                if let (KernelOutcome::Ok, Some(d)) = (&outcome, post_deadline)
                    && local > d
                {
                    // The write landed after the deadline: undo at once.
                    if let Some(g) = op.group() {
                        for a in self.group_addrs(g) {
                            self.nodes[node].kernel.del_gate(a);
                            if !gate {
                                self.nodes[node].kernel.del_addr(a);
                            }
                            self.note_kernel_change(node, a);
                        }
                    }
                    outcome = KernelOutcome::Lapsed;
                }
                self.log(6 << 32 | node as u64 | id << 40, || {
                    format!("kernel n{node} op{id} {op:?} -> {outcome:?}")
                });
                self.with_engine(node, |e, now| e.handle_kernel(id, outcome, now));
            }
        }
    }

    fn arm_worker(&mut self, node: usize) {
        let n = &self.nodes[node];
        if let Some(w) = n.kernel.worker_at {
            let at = n.clock.real_at(Instant::from_nanos(w), self.now);
            let boot = n.boot;
            self.push(
                at,
                Ev::Worker {
                    node,
                    boot,
                    at_local: w,
                },
            );
        }
    }

    fn probe_conflict(&mut self, node: usize, group: GroupId) -> bool {
        let addrs = self.group_addrs(group);
        for m in 0..self.nodes.len() {
            if m == node
                || !self.nodes[m].machine_up
                || self.blocked.contains(&(m, node))
                || self.blocked.contains(&(node, m))
            {
                continue;
            }
            let local = self.local_now(m);
            if addrs
                .iter()
                .any(|&a| self.nodes[m].kernel.answers(a, local))
            {
                return self.rng.random::<f64>() >= self.loss;
            }
        }
        false
    }

    // ---- checker and metrics -----------------------------------------------------------

    fn note_kernel_change(&mut self, _node: usize, addr: IpAddr) {
        self.touched.push(addr);
    }

    fn answering(&self, addr: IpAddr) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&m| {
                self.nodes[m].machine_up && self.nodes[m].kernel.answers(addr, self.local_now(m))
            })
            .collect()
    }

    fn check_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort();
        touched.dedup();
        for a in touched {
            self.check_addr(a);
        }
    }

    fn check_all(&mut self) {
        let vips: Vec<IpAddr> = self.vips.iter().map(|v| v.0).collect();
        for a in vips {
            self.check_addr(a);
        }
    }

    fn check_addr(&mut self, a: IpAddr) {
        let who = self.answering(a);
        if who.len() > 1 {
            let nodes: Vec<String> = who.iter().map(|&m| self.nodes[m].name.clone()).collect();
            self.log(7 << 32, || format!("VIOLATION {a} answered by {nodes:?}"));
            self.violations.push(Violation {
                at: self.now,
                vip: a,
                nodes,
            });
        }
        if let Some(&(_, g)) = self.vips.iter().find(|v| v.0 == a) {
            self.update_intervals(g);
        }
    }

    /// Keeps per (group, node) answering intervals, using the group's first address.
    fn update_intervals(&mut self, g: GroupId) {
        let gi = usize::from(g);
        let first = self.cluster.groups[gi].vips[0].addr;
        for m in 0..self.nodes.len() {
            let local = self.local_now(m);
            let answering = self.nodes[m].machine_up && self.nodes[m].kernel.answers(first, local);
            let until = if !answering {
                0
            } else if self.cluster.fence == FenceKind::Gate {
                match self.nodes[m].kernel.live_until(first) {
                    Some(u64::MAX) | None => u64::MAX,
                    Some(l) => self.nodes[m]
                        .clock
                        .real_at(Instant::from_nanos(l), self.now),
                }
            } else {
                u64::MAX
            };
            let cur = self.open[gi][m];
            match (cur, answering) {
                (None, true) => self.open[gi][m] = Some((self.now, until)),
                (Some((s, u)), true) => {
                    if u < self.now {
                        self.history[gi].push((m, s, u));
                        self.open[gi][m] = Some((self.now, until));
                    } else {
                        self.open[gi][m] = Some((s, until));
                    }
                }
                (Some((s, u)), false) => {
                    self.history[gi].push((m, s, u.min(self.now)));
                    self.open[gi][m] = None;
                }
                (None, false) => {}
            }
        }
    }

    fn holder_at(&self, g: usize, t: Tau) -> Option<usize> {
        for (m, o) in self.open[g].iter().enumerate() {
            if let Some((s, u)) = o
                && *s <= t
                && t < *u
            {
                return Some(m);
            }
        }
        self.history[g]
            .iter()
            .find(|(_, s, e)| *s <= t && t < *e)
            .map(|(m, _, _)| *m)
    }

    fn periodic_check(&mut self) {
        for g in 0..self.cluster.groups.len() {
            self.update_intervals(g as GroupId);
        }
        if self.converged_at.is_none()
            && (0..self.cluster.groups.len()).all(|g| self.holder_at(g, self.now).is_some())
        {
            self.converged_at = Some(self.now);
        }
        let settle = settle_bound(&self.cluster);
        let from = self.quiet_at + settle;
        if self.now >= from && self.now <= from + L1_WINDOW {
            self.liveness_sample();
        }
        if self.now > from + L1_WINDOW && !self.l1_done {
            self.l1_done = true;
            self.liveness_verdict();
        }
    }

    fn eligible_nodes(&self) -> Vec<usize> {
        let failback = self.cluster.timing.failback_delay.as_nanos() as u64;
        (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.machine_up
                    && n.agent == Agent::Running
                    && n.healthy
                    && !n.draining
                    && self.cluster.may_hold(&n.name)
                    && self.now >= n.started_at + failback
            })
            .collect()
    }

    /// One L1/B1 sample: which groups are answered by exactly one eligible node, and
    /// whether loads respect ceil(V/N).
    fn liveness_sample(&mut self) {
        let eligible = self.eligible_nodes();
        let mut load = vec![0usize; self.nodes.len()];
        let groups = self.cluster.groups.len();
        if self.l1_good.len() != groups {
            self.l1_good = vec![0; groups];
        }
        self.l1_samples += 1;
        for g in 0..groups {
            let first = self.cluster.groups[g].vips[0].addr;
            // The group must be kept whole: every address on the same node.
            if let [m] = self.answering(first).as_slice()
                && eligible.contains(m)
                && self.cluster.groups[g]
                    .vips
                    .iter()
                    .all(|v| self.answering(v.addr) == [*m])
            {
                load[*m] += 1;
                self.l1_good[g] += 1;
            }
        }
        let prefs_in_play = self
            .schedule
            .faults
            .iter()
            .any(|f| f.kind == FaultKind::Prefer);
        let cap = groups.div_ceil(eligible.len().max(1));
        if prefs_in_play || !self.cluster.witnesses.is_empty() || load.iter().all(|&l| l <= cap) {
            self.b1_good += 1;
        }
    }

    /// L1 and B1 over the window: each group answered by exactly one eligible node in
    /// at least `L1_MIN_COVERAGE` of the samples (brief re-binds under heavy loss are
    /// not failures; a group stuck unowned or doubly owned is), and B1 likewise.
    fn liveness_verdict(&mut self) {
        let need = (self.l1_samples as f64 * l1_bar(self.cfg.loss)).ceil() as u64;
        let min = self.l1_good.iter().copied().min().unwrap_or(0);
        self.result.l1_min_coverage = min as f64 / self.l1_samples.max(1) as f64;
        let bad: Vec<usize> = (0..self.l1_good.len())
            .filter(|&g| self.l1_good[g] < need)
            .collect();
        if self.b1_good < need || !bad.is_empty() || self.l1_samples == 0 {
            self.liveness_check();
        }
    }

    fn liveness_check(&mut self) {
        let eligible = self.eligible_nodes();
        let mut load = vec![0usize; self.nodes.len()];
        let mut failures = Vec::new();
        let need = (self.l1_samples as f64 * l1_bar(self.cfg.loss)).ceil() as u64;
        for g in 0..self.l1_good.len() {
            if self.l1_good[g] < need {
                failures.push(format!(
                    "g{g} owned by one eligible node in {}/{} samples",
                    self.l1_good[g], self.l1_samples
                ));
            }
        }
        if self.b1_good < need {
            failures.push(format!(
                "B1 held in {}/{} samples",
                self.b1_good, self.l1_samples
            ));
        }
        let prefs_in_play = self
            .schedule
            .faults
            .iter()
            .any(|f| f.kind == FaultKind::Prefer);
        for g in 0..self.cluster.groups.len() {
            let first = self.cluster.groups[g].vips[0].addr;
            let who = self.answering(first);
            match who.as_slice() {
                [m] if eligible.contains(m) => load[*m] += 1,
                [m] => failures.push(format!("g{g} held by ineligible {}", self.nodes[*m].name)),
                [] => failures.push(format!("g{g} unowned")),
                _ => failures.push(format!("g{g} held by {who:?}")),
            }
        }
        if !eligible.is_empty() && !prefs_in_play && self.cluster.witnesses.is_empty() {
            let cap = self.cluster.groups.len().div_ceil(eligible.len());
            for (m, l) in load.iter().enumerate() {
                if *l > cap {
                    failures.push(format!(
                        "B1: {} holds {l} > ceil(V/N) = {cap}",
                        self.nodes[m].name
                    ));
                }
            }
        }
        if !failures.is_empty() {
            for i in 0..self.nodes.len() {
                let local = self.local_now(i);
                let line = match &self.nodes[i].engine {
                    Some(e) => {
                        let st = e.status(local);
                        let members: Vec<String> = st
                            .members
                            .iter()
                            .map(|m| {
                                format!(
                                    "{}@{}:{:?}/{}",
                                    m.id.name,
                                    m.id.epoch,
                                    m.state,
                                    m.meta.as_ref().map_or("nometa".to_string(), |x| format!(
                                        "e{}d{}g{}v{}",
                                        x.eligible as u8, x.draining as u8, x.generation, x.version
                                    ))
                                )
                            })
                            .collect();
                        let owners: Vec<String> = st
                            .groups
                            .iter()
                            .map(|g| format!("{}:{}", g.owner.as_deref().unwrap_or("-"), g.phase))
                            .collect();
                        format!(
                            "STATUS n{i} now={local:?} next={:?} id={:?} timers={} life={:?} meta=e{} swim={:?} members={members:?} groups={owners:?}",
                            e.membership().poll_timeout(),
                            e.membership().identity().epoch,
                            e.membership().pending_timers(),
                            st.life,
                            st.meta.eligible as u8,
                            e.membership_stats()
                        )
                    }
                    None => format!(
                        "STATUS n{i} agent={:?} machine_up={}",
                        self.nodes[i].agent, self.nodes[i].machine_up
                    ),
                };
                self.log(8 << 32 | i as u64, || line);
            }
        }
        for f in failures {
            let at = ms_f(self.now - self.quiet_at);
            self.result.liveness.push(format!("{f} at quiet+{at:.0}ms"));
        }
    }

    // ---- faults ---------------------------------------------------------------------

    fn start_agent(&mut self, node: usize) {
        let cluster = self.configs[self.nodes[node].config].clone();
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
        self.log(9 << 32 | node as u64, || format!("n{node} agent started"));
        self.with_engine(node, |_, _| {});
    }

    fn stop_agent(&mut self, node: usize, to: Agent) {
        let n = &mut self.nodes[node];
        n.engine = None;
        n.agent = to;
        n.frozen_events.clear();
        n.life += 1;
    }

    fn holdings(&self, node: usize) -> Vec<GroupId> {
        (0..self.cluster.groups.len())
            .filter(|&g| {
                let first = self.cluster.groups[g].vips[0].addr;
                self.nodes[node].machine_up
                    && self.nodes[node].kernel.answers(first, self.local_now(node))
            })
            .map(|g| g as GroupId)
            .collect()
    }

    fn apply_fault(&mut self, f: Fault) {
        let i = f.node;
        if f.kind != FaultKind::Join || f.at > 0 {
            let d = f.describe(&self.nodes[i].name);
            self.log(10 << 32 | f.node as u64 | (f.kind as u64) << 16, || {
                format!("FAULT {d}")
            });
        }
        match f.kind {
            FaultKind::Join => {
                if self.nodes[i].agent == Agent::Off && self.nodes[i].machine_up {
                    self.start_agent(i);
                }
            }
            FaultKind::Crash => {
                for g in self.holdings(i) {
                    self.pending_failover.push((g, i, self.now, true));
                }
                let n = &mut self.nodes[i];
                n.machine_up = false;
                n.kernel = Kernel::new(
                    self.cluster.fence == FenceKind::Gate,
                    self.cfg.kernel_breaks,
                );
                n.boot += 1;
                self.stop_agent(i, Agent::Off);
                for a in self.vips.iter().map(|v| v.0).collect::<Vec<_>>() {
                    self.touched.push(a);
                }
                if f.dur > 0 {
                    self.fault_after(f.dur, FaultKind::Boot, i);
                }
            }
            FaultKind::Boot => {
                let n = &mut self.nodes[i];
                if !n.machine_up {
                    n.machine_up = true;
                    self.start_agent(i);
                }
            }
            FaultKind::AgentCrash => {
                if self.nodes[i].agent == Agent::Running || self.nodes[i].agent == Agent::Frozen {
                    for g in self.holdings(i) {
                        self.pending_failover.push((g, i, self.now, false));
                    }
                    self.stop_agent(i, Agent::Crashed);
                    let d = f.dur.max(50 * MS);
                    self.fault_after(d, FaultKind::Restart, i);
                }
            }
            FaultKind::Restart => {
                if self.nodes[i].agent == Agent::Crashed || self.nodes[i].agent == Agent::Off {
                    self.start_agent(i);
                }
            }
            FaultKind::Freeze => {
                if self.nodes[i].agent == Agent::Running {
                    for g in self.holdings(i) {
                        self.pending_failover.push((g, i, self.now, false));
                    }
                    self.nodes[i].agent = Agent::Frozen;
                    self.fault_after(f.dur, FaultKind::Resume, i);
                }
            }
            FaultKind::Resume => {
                if self.nodes[i].agent == Agent::Frozen {
                    self.nodes[i].agent = Agent::Running;
                    let evs = std::mem::take(&mut self.nodes[i].frozen_events);
                    for (k, ev) in evs.into_iter().enumerate() {
                        self.push(self.now + k as u64 * 1000, ev);
                    }
                    // The timer fires at once: the executor was stalled.
                    let tgen = self.nodes[i].timer_gen;
                    let life = self.nodes[i].life;
                    self.push(
                        self.now,
                        Ev::Timer {
                            node: i,
                            life,
                            tgen,
                        },
                    );
                }
            }
            FaultKind::Leave => {
                if self.nodes[i].agent == Agent::Running {
                    for g in self.holdings(i) {
                        self.pending_handover.push((g, i, self.now));
                    }
                    self.with_engine(i, |e, now| e.leave(now));
                    if f.dur > 0 {
                        self.fault_after(f.dur, FaultKind::Restart, i);
                    }
                }
            }
            FaultKind::Drain => {
                if self.nodes[i].agent == Agent::Running {
                    for g in self.holdings(i) {
                        self.pending_handover.push((g, i, self.now));
                    }
                    self.nodes[i].draining = true;
                    self.with_engine(i, |e, now| e.set_draining(true, now));
                    self.fault_after(f.dur, FaultKind::Undrain, i);
                }
            }
            FaultKind::Undrain => {
                self.nodes[i].draining = false;
                self.with_engine(i, |e, now| e.set_draining(false, now));
            }
            FaultKind::Health => {
                self.nodes[i].healthy = false;
                self.with_engine(i, |e, now| e.set_healthy(false, now));
                self.fault_after(f.dur, FaultKind::Healthy, i);
            }
            FaultKind::Healthy => {
                self.nodes[i].healthy = true;
                self.with_engine(i, |e, now| e.set_healthy(true, now));
            }
            FaultKind::Prefer => {
                let g = f.other.unwrap_or(0) % self.cluster.groups.len();
                self.with_engine(i, |e, now| e.set_prefers(vec![g as GroupId], now));
            }
            FaultKind::Partition
            | FaultKind::Isolate
            | FaultKind::NonTransitive
            | FaultKind::Asymmetric => {
                let cuts = self.schedule.cuts_for(&f, self.nodes.len());
                for c in &cuts {
                    self.blocked.insert(*c);
                }
                let end = self.schedule.push_heal(cuts);
                self.push(self.now + f.dur, Ev::Fault(end));
            }
            FaultKind::VoterChange => {
                // One step: the first node that is not a voter becomes one. Nodes are
                // restarted with the new configuration one at a time, P + 200 ms
                // apart (a rolling restart); meanwhile old and new configurations
                // refuse each other's datagrams (different cluster ids).
                let cur = self.configs.last().expect("initial config").clone();
                let Some(add) = self
                    .nodes
                    .iter()
                    .map(|n| n.name.clone())
                    .find(|n| cur.voter_index(n).is_none())
                else {
                    return;
                };
                let mut voters = cur.voters.clone();
                voters.push(add);
                let next = ClusterConfig::new(
                    cur.quorum,
                    cur.fence,
                    voters,
                    cur.witnesses.clone(),
                    cur.groups.clone(),
                    cur.timing.clone(),
                );
                self.configs.push(next);
                let idx = self.configs.len() - 1;
                let step = self.cluster.promise_hold().as_nanos() as u64 + 200 * MS;
                for k in 0..self.nodes.len() {
                    let e = self.schedule.push_end(FaultKind::Reconfigure, k);
                    self.schedule.faults[e].other = Some(idx);
                    self.push(self.now + k as u64 * step, Ev::Fault(e));
                }
            }
            FaultKind::Reconfigure => {
                self.nodes[i].config = f.other.unwrap_or(0);
                if self.nodes[i].agent == Agent::Running {
                    self.nodes[i].restart_after_leave = true;
                    self.with_engine(i, |e, now| e.leave(now));
                }
            }
            FaultKind::Delay => {
                self.slow_to.insert(i, (100 * MS, 500 * MS));
                self.fault_after(f.dur, FaultKind::EndDelay, i);
            }
            FaultKind::EndDelay => {
                self.slow_to.remove(&i);
            }
            FaultKind::RestartStorm => {
                self.slow_to.insert(i, (400 * MS, 1500 * MS));
                let mut t = 0;
                for _ in 0..3 {
                    t += self.rng.random_range(200 * MS..900 * MS);
                    let idx = self.schedule.push_end(FaultKind::AgentCrash, i);
                    self.schedule.faults[idx].dur = self.rng.random_range(50 * MS..800 * MS);
                    self.push(self.now + t, Ev::Fault(idx));
                }
                self.fault_after(f.dur.max(t + 500 * MS), FaultKind::EndDelay, i);
            }
            FaultKind::SplitRestart => {
                let cuts = self.schedule.cuts_for(&f, self.nodes.len());
                for c in &cuts {
                    self.blocked.insert(*c);
                }
                let end = self.schedule.push_heal(cuts);
                self.push(self.now + f.dur, Ev::Fault(end));
                // The third node: the first that is neither side of the cut.
                let j = f.other.unwrap_or(0);
                if let Some(v) = (0..self.nodes.len()).find(|&v| v != i && v != j) {
                    let at = self.rng.random_range(400 * MS..1500 * MS);
                    let idx = self.schedule.push_end(FaultKind::AgentCrash, v);
                    self.schedule.faults[idx].dur = self.rng.random_range(5 * MS..60 * MS);
                    self.push(self.now + at, Ev::Fault(idx));
                }
            }
            FaultKind::Flap => {
                // Toggle one node's links every 100–500 ms for the duration.
                let cuts = self.schedule.cuts_for(
                    &Fault {
                        kind: FaultKind::Isolate,
                        ..f.clone()
                    },
                    self.nodes.len(),
                );
                let mut t = self.now;
                let end = self.now + f.dur;
                let mut on = true;
                while t < end {
                    let idx = if on {
                        self.schedule.push_cut(cuts.clone())
                    } else {
                        self.schedule.push_heal(cuts.clone())
                    };
                    self.push(t, Ev::Fault(idx));
                    on = !on;
                    t += self.rng.random_range(100 * MS..500 * MS);
                }
                let idx = self.schedule.push_heal(cuts);
                self.push(end, Ev::Fault(idx));
            }
            FaultKind::Cut => {
                for c in self.schedule.cuts[f.other.unwrap_or(0)].clone() {
                    self.blocked.insert(c);
                }
            }
            FaultKind::Heal => {
                for c in self.schedule.cuts[f.other.unwrap_or(0)].clone() {
                    self.blocked.remove(&c);
                }
            }
            FaultKind::OneWayLoss => {
                let j = f.other.unwrap_or(0) % self.nodes.len();
                self.link_loss.insert((i, j), 0.5);
                let idx = self.schedule.push_end(FaultKind::EndLinkLoss, i);
                self.schedule.faults[idx].other = Some(j);
                self.push(self.now + f.dur, Ev::Fault(idx));
            }
            FaultKind::EndLinkLoss => {
                let j = f.other.unwrap_or(0) % self.nodes.len();
                self.link_loss.remove(&(i, j));
            }
            FaultKind::LossBurst => {
                self.loss = self.loss.max(0.3);
                let idx = self.schedule.push_end(FaultKind::EndLossBurst, i);
                self.push(self.now + f.dur, Ev::Fault(idx));
            }
            FaultKind::EndLossBurst => self.loss = self.cfg.loss,
            FaultKind::ClockBeyondRho => {
                let rate = self.nodes[i].clock.rate();
                self.nodes[i].clock.set_rate(self.now, rate * 0.5);
                let idx = self.schedule.push_end(FaultKind::EndClock, i);
                self.push(self.now + f.dur, Ev::Fault(idx));
            }
            FaultKind::EndClock => {
                let rate = self.nodes[i].clock.rate();
                self.nodes[i].clock.set_rate(self.now, rate / 0.5);
            }
        }
    }

    fn fault_after(&mut self, d: Tau, kind: FaultKind, node: usize) {
        let idx = self.schedule.push_end(kind, node);
        self.push(self.now + d, Ev::Fault(idx));
    }

    fn finish(mut self, n_events: u64) -> RunResult {
        for g in 0..self.cluster.groups.len() {
            self.update_intervals(g as GroupId);
            for m in 0..self.nodes.len() {
                if let Some((s, u)) = self.open[g][m].take() {
                    self.history[g].push((m, s, u.min(self.now)));
                }
            }
            self.history[g].sort_by_key(|&(m, s, _)| (s, m));
        }
        let conv = self.converged_at.unwrap_or(self.now);
        // Failovers: from the fault to the first interval of another node.
        for &(g, from, at, crash) in &self.pending_failover {
            let next = self.history[usize::from(g)]
                .iter()
                .filter(|&&(m, s, _)| m != from && s >= at)
                .map(|&(_, s, _)| s)
                .min();
            if let Some(s) = next {
                let v = ms_f(s - at);
                if crash {
                    self.result.failover_crash_ms.push(v);
                } else {
                    self.result.failover_other_ms.push(v);
                }
            }
        }
        for &(g, from, at) in &self.pending_handover {
            let h = &self.history[usize::from(g)];
            // The end of the old holder's interval that was open at the drain or leave,
            // then the next holder's start.
            if let Some(&(_, _, end)) = h.iter().find(|&&(m, s, e)| m == from && s <= at && at < e)
                && let Some(s) = h
                    .iter()
                    .filter(|&&(m, s, _)| m != from && s + 1 >= end.saturating_sub(1))
                    .map(|&(_, s, _)| s)
                    .min()
            {
                self.result.handover_ms.push(ms_f(s.saturating_sub(end)));
            }
        }
        // Unowned time and moves after first convergence.
        let mut unowned = 0u64;
        let mut moves = 0u64;
        let mut bystander = 0u64;
        let warmup = (self.cfg.warmup_s * SEC as f64) as u64;
        // Nodes some fault named (the boot-time joins of everyone excepted).
        let touched: std::collections::BTreeSet<usize> = self
            .schedule
            .faults
            .iter()
            .filter(|f| f.at >= warmup)
            .map(|f| f.node)
            .collect();
        for h in &self.history {
            let mut covered_until = conv;
            let mut last: Option<usize> = None;
            for &(m, s, e) in h {
                if e <= conv {
                    last = Some(m);
                    continue;
                }
                if s > covered_until {
                    unowned += s - covered_until;
                }
                covered_until = covered_until.max(e);
                // Moves are counted after the warm-up (start-up rebalancing done).
                if let Some(l) = last.filter(|&l| l != m && s >= warmup) {
                    moves += 1;
                    if !touched.contains(&l) && !touched.contains(&m) {
                        bystander += 1;
                    }
                }
                last = Some(m);
            }
            if covered_until < self.now {
                unowned += self.now - covered_until;
            }
        }
        self.result.unowned_ms = ms_f(unowned);
        self.result.moves = moves;
        self.result.bystander_moves = bystander;
        let secs = self.now as f64 / SEC as f64;
        let (mut dg, mut by) = (0u64, 0u64);
        for n in &self.nodes {
            if let Some(e) = &n.engine {
                dg += e.stats().datagrams_out;
                by += e.stats().bytes_out;
            }
        }
        let running = self
            .nodes
            .iter()
            .filter(|n| n.engine.is_some())
            .count()
            .max(1);
        self.result.node_seconds = (secs - self.cfg.warmup_s).max(0.0) * running as f64;
        let _ = (dg, by);
        // Traffic is measured in the steady state after the fault phase (start-up
        // joins and fault recovery excluded), per running node.
        let steady_s = (self.now.saturating_sub(self.quiet_at)) as f64 / SEC as f64;
        let node_s = (steady_s * running as f64).max(1e-9);
        self.result.datagrams_per_node_s = self.steady.0 as f64 / node_s;
        self.result.bytes_per_node_s = self.steady.1 as f64 / node_s;
        self.result.violations = self.violations;
        self.result.events = n_events;
        self.result.sim_s = secs;
        self.hasher.write_u64(n_events);
        self.result.trace_hash = self.hasher.finish();
        self.result.trace = self.trace.into_iter().collect();
        self.result
    }
}

/// After faults stop, how long until L1 must hold: fail-back, SWIM healing
/// (announce-to-down every 2 s), the failover bound, the longest backoff, margin.
pub fn settle_bound(c: &ClusterConfig) -> Tau {
    let f = c.failover_bound().as_nanos() as u64;
    let failback = c.timing.failback_delay.as_nanos() as u64;
    failback + 2 * SEC + f + 2 * SEC + SEC
}

/// A short description of a datagram, for traces.
pub fn describe_datagram(cluster_id: u64, payload: &[u8]) -> String {
    use foca::Codec;
    use wackamole::core::membership::NodeId;
    use wackamole::core::wire::{Body, decode};
    match decode(cluster_id, payload) {
        Ok(Body::Swim(d, _)) => {
            let mut codec = foca::PostcardCodec;
            match <foca::PostcardCodec as Codec<NodeId>>::decode_header(&mut codec, &d[..]) {
                Ok(h) => format!(
                    "swim {:?} {}@{}->{}@{}",
                    h.message, h.src.name, h.src.epoch, h.dst.name, h.dst.epoch
                ),
                Err(_) => "swim ?".into(),
            }
        }
        Ok(Body::Claim(c)) => format!("claim {} seq{} {:?}", c.name, c.seq, c.groups),
        Ok(Body::Answer(a)) => format!(
            "answer v{} seq{} +{:?} -{:?}",
            a.voter, a.seq, a.granted, a.denied
        ),
        Ok(b) => format!("{b:?}"),
        Err(e) => format!("undecodable {e:?}"),
    }
}

/// Runs one seed. A failing run is replayed with its trace recorded; the replay
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
