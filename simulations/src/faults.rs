//! Fault schedules, drawn from the seed.
//!
//! A schedule is a list of timed faults during the fault phase. Each fault that has a
//! duration schedules its own end (reboot, resume, heal…) when it fires; all of them
//! end before the quiet point, after which the checker expects L1 and B1.

use std::collections::BTreeSet;

use rand::RngExt;
use rand::rngs::StdRng;
use wackamole::core::config::{ClusterConfig, QuorumMode};

use crate::clock::Tau;
use crate::world::SimConfig;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

/// Fault classes. The first group can be scheduled; the rest are the ends of faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Machine crash: kernel and agent gone; maybe reboots later.
    Crash,
    /// Agent SIGKILL: kernel keeps its VIPs until the fence expires; restarts quickly
    /// with the same name and a fresh nonce.
    AgentCrash,
    /// SIGSTOP-like freeze of the agent (kernel runs), then resume.
    Freeze,
    /// Graceful leave, maybe rejoining later.
    Leave,
    /// A node that starts late.
    Join,
    /// Operator drain, then undrain.
    Drain,
    /// Health check failing, then recovering.
    Health,
    /// An interface goes down on a node for some of its groups (a random subset:
    /// a multi-homed group's second interface), then comes back: those groups move,
    /// the others stay.
    Link,
    /// A preference change.
    Prefer,
    /// Symmetric split into two sides.
    Partition,
    /// One node cut off from everyone.
    Isolate,
    /// A↔B cut while both still reach everyone else.
    NonTransitive,
    /// One side cannot reach the other; the other way works.
    Asymmetric,
    /// A node's links flapping on and off.
    Flap,
    /// 50 % loss on one direction of one link.
    OneWayLoss,
    /// 30 % loss everywhere for a while.
    LossBurst,
    /// A clock running at half speed: far beyond ρ, so the checker must fire.
    ClockBeyondRho,
    /// Datagrams toward one node delayed by 100–500 ms (a congested link).
    Delay,
    /// A voter replaced by reload: one voter added, rolled node by node, then one
    /// of the original voters removed the same way (each node retrying while the
    /// step rule refuses).
    VoterChange,
    /// One agent crashing and restarting three times in a row (down 50–800 ms each
    /// time) while datagrams toward it are delayed by 0.4–1.5 s: answers from an
    /// earlier life arrive in the next one (the nonce timeline, F7).
    RestartStorm,
    /// A↔B cut (non-transitive), and while their views disagree a third node's
    /// agent crashes and restarts at once: the restart-wait timeline (F8).
    SplitRestart,
    /// A pool change by reload, rolled through the nodes at random spacing (all at
    /// once included), then rolled back: one group removed, two merged into one, an
    /// address added; back: the merged group split, the removed one re-added, the
    /// added address removed. One in two (majority mode) also replaces a voter by
    /// reload, as `VoterChange`.
    Reload,
    // ---- ends -------------------------------------------------------------------
    /// Machine boots.
    Boot,
    /// Agent restarts.
    Restart,
    /// Agent resumes.
    Resume,
    /// Undrain.
    Undrain,
    /// Health recovers.
    Healthy,
    /// The interface is back.
    LinkUp,
    /// Apply a stored set of cuts.
    Cut,
    /// Remove a stored set of cuts.
    Heal,
    /// End of a one-way loss.
    EndLinkLoss,
    /// End of a loss burst.
    EndLossBurst,
    /// End of a link delay.
    EndDelay,
    /// One node's file gets another voter set and its agent is reloaded towards it
    /// one step at a time.
    Reconfigure,
    /// One node reloads another pool.
    ReloadApply,
    /// Clock back within ρ.
    EndClock,
}

impl FaultKind {
    /// Every schedulable class that S1 must survive in majority mode.
    pub const ALL_SAFE: [FaultKind; 21] = [
        FaultKind::Link,
        FaultKind::Reload,
        FaultKind::VoterChange,
        FaultKind::Delay,
        FaultKind::RestartStorm,
        FaultKind::SplitRestart,
        FaultKind::Crash,
        FaultKind::AgentCrash,
        FaultKind::Freeze,
        FaultKind::Leave,
        FaultKind::Join,
        FaultKind::Drain,
        FaultKind::Health,
        FaultKind::Prefer,
        FaultKind::Partition,
        FaultKind::Isolate,
        FaultKind::NonTransitive,
        FaultKind::Asymmetric,
        FaultKind::Flap,
        FaultKind::OneWayLoss,
        FaultKind::LossBurst,
    ];

    /// The classes the two-node mode (quorum off) must survive: everything except
    /// the ones where the two nodes cannot hear each other, which the docs state can
    /// give two holders until heal + Q.
    pub fn two_node_safe() -> Vec<FaultKind> {
        FaultKind::ALL_SAFE
            .iter()
            .copied()
            .filter(|k| {
                !matches!(
                    k,
                    FaultKind::Partition
                        | FaultKind::Isolate
                        | FaultKind::NonTransitive
                        | FaultKind::Flap
                        | FaultKind::LossBurst
                )
            })
            .collect()
    }

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::AgentCrash => "agent-crash",
            FaultKind::Freeze => "freeze",
            FaultKind::Leave => "leave",
            FaultKind::Join => "join",
            FaultKind::Drain => "drain",
            FaultKind::Health => "health",
            FaultKind::Link => "link",
            FaultKind::LinkUp => "link-up",
            FaultKind::Prefer => "prefer",
            FaultKind::Partition => "partition",
            FaultKind::Isolate => "isolate",
            FaultKind::NonTransitive => "non-transitive",
            FaultKind::Asymmetric => "asymmetric",
            FaultKind::Flap => "flap",
            FaultKind::OneWayLoss => "one-way-loss",
            FaultKind::LossBurst => "loss-burst",
            FaultKind::ClockBeyondRho => "clock-beyond-rho",
            FaultKind::SplitRestart => "split-restart",
            FaultKind::Delay => "delay",
            FaultKind::RestartStorm => "restart-storm",
            FaultKind::EndDelay => "end-delay",
            FaultKind::VoterChange => "voter-change",
            FaultKind::Reconfigure => "reconfigure",
            FaultKind::Reload => "reload",
            FaultKind::ReloadApply => "reload-apply",
            FaultKind::Boot => "boot",
            FaultKind::Restart => "restart",
            FaultKind::Resume => "resume",
            FaultKind::Undrain => "undrain",
            FaultKind::Healthy => "healthy",
            FaultKind::Cut => "cut",
            FaultKind::Heal => "heal",
            FaultKind::EndLinkLoss => "end-link-loss",
            FaultKind::EndLossBurst => "end-loss-burst",
            FaultKind::EndClock => "end-clock",
        }
    }

    /// Parses a CLI name.
    pub fn parse(s: &str) -> Option<FaultKind> {
        FaultKind::ALL_SAFE
            .iter()
            .copied()
            .chain([FaultKind::ClockBeyondRho])
            .find(|k| k.name() == s)
    }
}

/// One scheduled fault.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Real time.
    pub at: Tau,
    /// What.
    pub kind: FaultKind,
    /// The node concerned (or side seed).
    pub node: usize,
    /// Another node, group or cut-set index, depending on the kind.
    pub other: Option<usize>,
    /// Duration (0: permanent where that makes sense).
    pub dur: Tau,
}

impl Fault {
    /// In words.
    pub fn describe(&self, name: &str) -> String {
        let o = self
            .other
            .map(|o| format!(" other={o}"))
            .unwrap_or_default();
        format!(
            "t={:.3}s {} {name}{o} for {:.2}s",
            self.at as f64 / SEC as f64,
            self.kind.name(),
            self.dur as f64 / SEC as f64
        )
    }
}

/// The faults of one run.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    /// Faults (the world appends fault ends as they are scheduled).
    pub faults: Vec<Fault>,
    /// Nodes that start late (Join).
    pub late_joiners: Vec<usize>,
    /// Stored cut sets, referenced by `Cut`/`Heal` faults.
    pub cuts: Vec<Vec<(usize, usize)>>,
    /// For each partition-like fault: the random side assignment drawn for it.
    sides: Vec<Vec<bool>>,
}

impl Schedule {
    /// Draws a schedule.
    pub fn generate(cfg: &SimConfig, cluster: &ClusterConfig, rng: &mut StdRng) -> Schedule {
        let mut s = Schedule::default();
        let n = cfg.nodes;
        let start = (cfg.warmup_s * SEC as f64) as u64;
        let phase = (cfg.fault_phase_s * SEC as f64) as u64;
        let quiet = start + phase;
        let mut kinds: Vec<FaultKind> = cfg.faults.clone();
        if cfg.quorum == QuorumMode::Off {
            let ok = FaultKind::two_node_safe();
            kinds.retain(|k| ok.contains(k) || *k == FaultKind::ClockBeyondRho);
        }
        if kinds.is_empty() || phase == 0 {
            return s;
        }
        let count = rng.random_range(cfg.fault_count.0..=cfg.fault_count.1.max(cfg.fault_count.0));
        // Nodes that may end the run dead: never so many voters that no quorum is
        // left, and never the last node that may hold.
        let voters: BTreeSet<usize> = (0..n)
            .filter(|&i| cluster.voter_index(&format!("n{i:02}")).is_some())
            .collect();
        let holders: BTreeSet<usize> = (0..n)
            .filter(|&i| cluster.may_hold(&format!("n{i:02}")))
            .collect();
        let mut dead: BTreeSet<usize> = BTreeSet::new();
        let can_die = |dead: &BTreeSet<usize>, i: usize| {
            let mut d = dead.clone();
            d.insert(i);
            let live_voters = voters.iter().filter(|v| !d.contains(v)).count();
            let live_holders = holders.iter().filter(|h| !d.contains(h)).count();
            live_voters >= cluster.quorum_size()
                && live_holders >= 1
                && cluster.quorum == QuorumMode::Majority
        };
        let mut asymmetric_used = false;
        let mut voter_change = false;
        for _ in 0..count {
            let kind = kinds[rng.random_range(0..kinds.len())];
            // Two nodes: faults that silence one direction (a one-way cut, one-way
            // loss, link delays) add up to a full partition when two overlap in
            // opposite directions, which the two-node mode does not claim to survive
            // (docs/safety.md §2): at most one of them per run.
            if cfg.quorum == QuorumMode::Off
                && matches!(
                    kind,
                    FaultKind::Asymmetric
                        | FaultKind::Delay
                        | FaultKind::RestartStorm
                        | FaultKind::OneWayLoss
                )
            {
                if asymmetric_used {
                    continue;
                }
                asymmetric_used = true;
            }
            let node = rng.random_range(0..n);
            // Faults start early enough to end before the quiet point.
            let latest = quiet.saturating_sub(SEC).max(start + 1);
            let at = rng.random_range(start..latest);
            let room = quiet.saturating_sub(at).max(MS);
            let dur =
                |rng: &mut StdRng, lo: u64, hi: u64| rng.random_range(lo..hi.max(lo + 1)).min(room);
            let mut f = Fault {
                at,
                kind,
                node,
                other: None,
                dur: 0,
            };
            match kind {
                FaultKind::Join => {
                    if !s.late_joiners.contains(&node) && s.late_joiners.len() + 1 < n {
                        s.late_joiners.push(node);
                    } else {
                        continue;
                    }
                }
                FaultKind::Crash => {
                    if rng.random_bool(0.3) && can_die(&dead, node) {
                        dead.insert(node);
                    } else {
                        f.dur = dur(rng, 300 * MS, 4 * SEC);
                    }
                }
                FaultKind::AgentCrash => f.dur = rng.random_range(50 * MS..2 * SEC),
                FaultKind::Freeze => f.dur = dur(rng, 100 * MS, 10 * SEC),
                FaultKind::Leave => {
                    if rng.random_bool(0.3) && can_die(&dead, node) {
                        dead.insert(node);
                    } else {
                        f.dur = dur(rng, 500 * MS, 5 * SEC);
                    }
                }
                FaultKind::Drain | FaultKind::Health => f.dur = dur(rng, 300 * MS, 4 * SEC),
                FaultKind::Link => {
                    f.dur = dur(rng, 300 * MS, 4 * SEC);
                    // Which groups (bit g % 64) the interface carries; never none.
                    f.other = Some(rng.random_range(1..usize::MAX));
                }
                FaultKind::Prefer => {
                    f.other = Some(rng.random_range(0..cluster.groups.len().max(1)))
                }
                FaultKind::Partition | FaultKind::Asymmetric => {
                    let mut side: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
                    if side.iter().all(|&x| x) || side.iter().all(|&x| !x) {
                        side[node] = !side[node];
                    }
                    f.other = Some(s.sides.len());
                    s.sides.push(side);
                    f.dur = dur(rng, 300 * MS, 5 * SEC);
                }
                FaultKind::Isolate | FaultKind::Flap => f.dur = dur(rng, 300 * MS, 10 * SEC),
                FaultKind::SplitRestart => {
                    if n < 3 {
                        continue;
                    }
                    let mut j = rng.random_range(0..n);
                    if j == node {
                        j = (j + 1) % n;
                    }
                    f.other = Some(j);
                    f.dur = dur(rng, 2 * SEC, 5 * SEC);
                }
                FaultKind::NonTransitive | FaultKind::OneWayLoss => {
                    let mut j = rng.random_range(0..n);
                    if j == node {
                        j = (j + 1) % n;
                    }
                    f.other = Some(j);
                    f.dur = dur(rng, 300 * MS, 5 * SEC);
                }
                FaultKind::LossBurst => f.dur = dur(rng, 300 * MS, 3 * SEC),
                FaultKind::Delay => f.dur = dur(rng, 300 * MS, 4 * SEC),
                FaultKind::VoterChange => {
                    // Majority mode only, once per run, early enough for the rollout
                    // to finish before the quiet point; no permanent deaths then.
                    if cfg.quorum != QuorumMode::Majority
                        || voter_change
                        || cluster.voters.len() >= n
                    {
                        continue;
                    }
                    // Two rollouts of n reloads, spaced to fit `dur`, with the
                    // step rule's settling (retries) after each.
                    let settle = 3 * cluster.promise_hold().as_nanos() as u64 + 2 * SEC;
                    if start + settle + 4 * SEC >= quiet {
                        continue;
                    }
                    voter_change = true;
                    f.at = rng.random_range(start..quiet - settle - 4 * SEC);
                    f.dur = rng.random_range(MS..=quiet - settle - f.at);
                }
                FaultKind::RestartStorm => f.dur = dur(rng, 1500 * MS, 3 * SEC),
                FaultKind::Reload => {
                    if cluster.groups.len() < 3 || room < SEC {
                        continue;
                    }
                    f.dur = dur(rng, SEC, 8 * SEC);
                    // One reload in two also replaces a voter (as `VoterChange`),
                    // where a voter change may run.
                    let settle = 3 * cluster.promise_hold().as_nanos() as u64 + 2 * SEC;
                    if cfg.quorum == QuorumMode::Majority
                        && !voter_change
                        && cluster.voters.len() < n
                        && f.at + f.dur + settle + 4 * SEC < quiet
                        && rng.random_bool(0.5)
                    {
                        voter_change = true;
                        f.other = Some(1);
                    }
                }
                FaultKind::ClockBeyondRho => f.dur = dur(rng, SEC, 6 * SEC),
                _ => continue,
            }
            if kind != FaultKind::Join {
                s.faults.push(f);
            } else {
                s.faults.push(Fault {
                    at,
                    kind: FaultKind::Join,
                    node,
                    other: None,
                    dur: 0,
                });
            }
        }
        // A voter change raises q; a node dead for good could then leave no quorum.
        if voter_change && !dead.is_empty() {
            s.faults.retain(|f| f.kind != FaultKind::VoterChange);
            for f in s.faults.iter_mut().filter(|f| f.kind == FaultKind::Reload) {
                f.other = None;
            }
        }
        s
    }

    /// An empty scripted schedule, to which a test adds exactly the faults of its
    /// scenario (times and durations in seconds of simulated time). A scripted run
    /// draws no schedule from its seed; the seed still drives clocks and the network.
    pub fn scripted() -> Schedule {
        Schedule::default()
    }

    /// Adds a fault of `kind` on `node` at `at_s` for `dur_s` (0: for good, where that
    /// makes sense).
    pub fn with(self, at_s: f64, kind: FaultKind, node: usize, dur_s: f64) -> Schedule {
        self.with_fault(at_s, kind, node, None, dur_s)
    }

    /// Adds a fault with its `other` operand (a node, group or configuration index,
    /// depending on the kind).
    pub fn with_fault(
        mut self,
        at_s: f64,
        kind: FaultKind,
        node: usize,
        other: Option<usize>,
        dur_s: f64,
    ) -> Schedule {
        self.faults.push(Fault {
            at: (at_s * SEC as f64) as u64,
            kind,
            node,
            other,
            dur: (dur_s * SEC as f64) as u64,
        });
        self
    }

    /// Adds a partition at `at_s` for `dur_s` between the nodes in `side` and the
    /// other nodes of `n` (with `one_way`, only `side`'s datagrams to the others are
    /// cut).
    pub fn with_partition(
        mut self,
        at_s: f64,
        side: &[usize],
        n: usize,
        dur_s: f64,
        one_way: bool,
    ) -> Schedule {
        let kind = if one_way {
            FaultKind::Asymmetric
        } else {
            FaultKind::Partition
        };
        self.sides.push((0..n).map(|i| side.contains(&i)).collect());
        let other = Some(self.sides.len() - 1);
        self.with_fault(at_s, kind, side.first().copied().unwrap_or(0), other, dur_s)
    }

    /// `node` starts only at `at_s` (a late join).
    pub fn with_late_join(mut self, at_s: f64, node: usize) -> Schedule {
        self.late_joiners.push(node);
        self.with(at_s, FaultKind::Join, node, 0.0)
    }

    /// The schedule in words.
    pub fn describe(&self) -> Vec<String> {
        self.faults
            .iter()
            .map(|f| f.describe(&format!("n{:02}", f.node)))
            .collect()
    }

    /// Appends the end of a fault; returns its index.
    pub fn push_end(&mut self, kind: FaultKind, node: usize) -> usize {
        self.faults.push(Fault {
            at: 0,
            kind,
            node,
            other: None,
            dur: 0,
        });
        self.faults.len() - 1
    }

    /// Stores `cuts` and appends a Heal for them.
    pub fn push_heal(&mut self, cuts: Vec<(usize, usize)>) -> usize {
        self.cuts.push(cuts);
        let i = self.push_end(FaultKind::Heal, 0);
        self.faults[i].other = Some(self.cuts.len() - 1);
        i
    }

    /// Stores `cuts` and appends a Cut for them.
    pub fn push_cut(&mut self, cuts: Vec<(usize, usize)>) -> usize {
        self.cuts.push(cuts);
        let i = self.push_end(FaultKind::Cut, 0);
        self.faults[i].other = Some(self.cuts.len() - 1);
        i
    }

    /// The directed links a partition-like fault cuts.
    pub fn cuts_for(&self, f: &Fault, n: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        match f.kind {
            FaultKind::Partition | FaultKind::Asymmetric => {
                let side = &self.sides[f.other.unwrap_or(0)];
                for a in 0..n {
                    for b in 0..n {
                        if side[a] && !side[b] {
                            out.push((a, b));
                            if f.kind == FaultKind::Partition {
                                out.push((b, a));
                            }
                        }
                    }
                }
            }
            FaultKind::Isolate | FaultKind::Flap => {
                for j in 0..n {
                    if j != f.node {
                        out.push((f.node, j));
                        out.push((j, f.node));
                    }
                }
            }
            FaultKind::NonTransitive | FaultKind::SplitRestart => {
                let j = f.other.unwrap_or(0);
                out.push((f.node, j));
                out.push((j, f.node));
            }
            _ => {}
        }
        out
    }
}
