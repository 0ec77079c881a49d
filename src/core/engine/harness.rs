//! A multi-engine harness for short stories (in the manner of quinn-proto's `Pair`):
//! two or three real engines, a scripted network and one clock.
//!
//! The network delivers every datagram after a fixed latency unless the direction is
//! cut; a crashed node neither sends, receives nor keeps its addresses. Kernel
//! operations complete at once against a model of each node's bound groups (a bind or
//! refresh past its deadline lapses), and a probe finds the group bound elsewhere.
//! After every event the harness checks that no address is bound on two live nodes
//! (nodes may be configured with different pools: [`Cluster::with_pools`]).
//! Everything is deterministic: the same story gives the same trace.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{Action, Engine, EngineConfig, EngineInit, Event, KernelOp};
use crate::core::config::{
    ClusterConfig, FenceKind, GroupId, NodeConfig, Profile, QuorumMode, Timing, Vip, VipGroup,
};
use crate::core::lease::Answer;
use crate::core::ownership::{KernelOutcome, ReleaseReason};
use crate::core::time::Instant;
use crate::core::wire::{self, Body};

/// Most events one story may take (a bound, never a target).
const MAX_EVENTS: usize = 2_000_000;

/// One node of the story.
pub(super) struct Node {
    pub engine: Engine,
    pub addr: SocketAddr,
    /// Groups whose addresses this node's (model) kernel has bound.
    pub bound: BTreeSet<GroupId>,
    pub up: bool,
    /// Every event and probe the engine emitted, with when.
    pub events: Vec<(Instant, Action)>,
}

/// A datagram on its way.
type InFlight = Reverse<(Instant, u64, usize, usize, Vec<u8>)>;

/// The cluster of a story.
pub(super) struct Cluster {
    pub nodes: Vec<Node>,
    pub now: Instant,
    latency: Duration,
    cut: BTreeSet<(usize, usize)>,
    queue: BinaryHeap<InFlight>,
    /// Datagrams sent, all nodes (also their order in the queue).
    pub sent: u64,
    /// Every answer delivered: (receiver, answer).
    pub answers: Vec<(usize, Answer)>,
    /// When each (receiver, sender) pair last delivered anything.
    pub last_delivery: Vec<Vec<Option<Instant>>>,
    /// Datagrams that reach a node at the same instant are handed over in one
    /// wake-up (`Engine::wakeup`), as the agent's shell does.
    pub wakeups: bool,
    /// Wake-ups that handed over more than one datagram.
    pub batches: u64,
}

/// `n` groups of one address each.
pub(super) fn groups(n: usize) -> Vec<VipGroup> {
    (0..n)
        .map(|i| {
            VipGroup::new(vec![Vip::host(
                format!("10.0.9.{}", 100 + i).parse().expect("an address"),
            )])
        })
        .collect()
}

impl Cluster {
    /// Nodes `names` (all voters) serving `n_groups`, started at 1 s.
    pub fn new(names: &[&str], n_groups: usize, quorum: QuorumMode) -> Cluster {
        Cluster::with_pools(names, vec![groups(n_groups); names.len()], quorum)
    }

    /// Nodes `names` (all voters), node `i` configured with `pools[i]`, started at 1 s.
    pub fn with_pools(names: &[&str], pools: Vec<Vec<VipGroup>>, quorum: QuorumMode) -> Cluster {
        let cfg_of = |groups: Vec<VipGroup>| {
            ClusterConfig::new(
                quorum,
                FenceKind::Gate,
                names.iter().map(|n| n.to_string()).collect(),
                vec![],
                groups,
                Timing::profile(Profile::Default),
            )
        };
        let addrs: Vec<SocketAddr> = (0..names.len())
            .map(|i| SocketAddr::from(([10, 0, 0, 1 + i as u8], 7946)))
            .collect();
        let now = Instant::from_nanos(1_000_000_000);
        let nodes = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let config = EngineConfig {
                    cluster: cfg_of(pools[i].clone()),
                    node: NodeConfig::new(*name),
                    bind: addrs[i],
                    seeds: addrs.clone(),
                    cluster_size_hint: names.len(),
                    breaks: Default::default(),
                    keyring: 0,
                };
                let init = EngineInit {
                    nonce: 1000 + i as u64,
                    rng_seed: 7 + i as u64,
                    epoch: 1,
                };
                Node {
                    engine: Engine::new(config, init, now),
                    addr: addrs[i],
                    bound: BTreeSet::new(),
                    up: true,
                    events: Vec::new(),
                }
            })
            .collect();
        Cluster {
            nodes,
            now,
            latency: Duration::from_millis(1),
            cut: BTreeSet::new(),
            queue: BinaryHeap::new(),
            sent: 0,
            answers: Vec::new(),
            last_delivery: vec![vec![None; names.len()]; names.len()],
            wakeups: false,
            batches: 0,
        }
    }

    /// The live nodes that have `g` bound.
    pub fn holders(&self, g: GroupId) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].bound.contains(&g))
            .collect()
    }

    /// The addresses of node `i`'s group `g`.
    pub fn addrs_of(&self, i: usize, g: GroupId) -> Vec<IpAddr> {
        self.nodes[i].engine.config().groups[usize::from(g)]
            .vips
            .iter()
            .map(|v| v.addr)
            .collect()
    }

    /// The live nodes that have address `a` bound (in whatever group of theirs).
    pub fn addr_holders(&self, a: IpAddr) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].up
                    && self.nodes[i]
                        .bound
                        .iter()
                        .any(|&g| self.addrs_of(i, g).contains(&a))
            })
            .collect()
    }

    /// Whether every group is bound on exactly one live node.
    pub fn all_served(&self) -> bool {
        let n = self.nodes[0].engine.config().groups.len() as GroupId;
        (0..n).all(|g| self.holders(g).len() == 1)
    }

    /// Machine death: the node stops, its addresses with it.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].bound.clear();
    }

    /// Drops every datagram from `a` to `b` from now on.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cut.insert((a, b));
    }

    /// Runs the story until `d` from now.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until, |_| false);
    }

    /// Runs until `done` holds (checked after every event) or `limit` from now.
    /// Returns when it held.
    pub fn run_until_true(
        &mut self,
        limit: Duration,
        done: impl Fn(&Cluster) -> bool,
    ) -> Option<Instant> {
        let until = self.now + limit;
        self.run_until(until, done)
    }

    fn run_until(&mut self, until: Instant, done: impl Fn(&Cluster) -> bool) -> Option<Instant> {
        for _ in 0..MAX_EVENTS {
            self.perform_actions();
            self.check_safety();
            if done(self) {
                return Some(self.now);
            }
            let net = self.queue.peek().map(|Reverse((t, ..))| *t);
            let timer = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].up)
                .filter_map(|i| self.nodes[i].engine.poll_timeout().map(|t| (t, i)))
                .min();
            let next = match (net, timer) {
                (Some(n), Some((t, _))) => n.min(t),
                (Some(n), None) => n,
                (None, Some((t, _))) => t,
                (None, None) => until,
            };
            if next > until {
                self.now = until;
                return None;
            }
            self.now = self.now.max(next);
            if net.is_some_and(|n| n <= next) {
                self.deliver();
            } else if let Some((_, i)) = timer {
                self.nodes[i].engine.handle_timeout(self.now);
            }
        }
        panic!("the story took more than {MAX_EVENTS} events");
    }

    fn deliver(&mut self) {
        let Some(Reverse((at, _, from, to, bytes))) = self.queue.pop() else {
            return;
        };
        let now = self.now;
        if !self.wakeups {
            if let Some(a) = self.admit(from, to, &bytes) {
                self.nodes[to].engine.handle_datagram(a, &bytes, now);
            }
            return;
        }
        let mut batch = vec![(from, bytes)];
        while let Some(Reverse((t, _, _, j, _))) = self.queue.peek()
            && *t == at
            && *j == to
            && let Some(Reverse((_, _, f, _, b))) = self.queue.pop()
        {
            batch.push((f, b));
        }
        self.batches += u64::from(batch.len() > 1);
        let admitted: Vec<(SocketAddr, Vec<u8>)> = batch
            .into_iter()
            .filter_map(|(f, b)| self.admit(f, to, &b).map(|a| (a, b)))
            .collect();
        self.nodes[to].engine.wakeup(|e| {
            for (a, b) in &admitted {
                e.handle_datagram(*a, b, now);
            }
        });
    }

    /// Whether a datagram from `from` reaches `to` (both up, the link not cut),
    /// noted; the sender's address if so.
    fn admit(&mut self, from: usize, to: usize, bytes: &[u8]) -> Option<SocketAddr> {
        if !self.nodes[to].up || !self.nodes[from].up || self.cut.contains(&(from, to)) {
            return None;
        }
        self.last_delivery[to][from] = Some(self.now);
        if let Ok(Body::Answer(a)) = wire::decode(self.nodes[to].engine.cluster_id(), bytes) {
            self.answers.push((to, a));
        }
        Some(self.nodes[from].addr)
    }

    /// Carries out every node's pending actions at `now` (kernel and probes at once).
    fn perform_actions(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            // With `wakeups`, the kernel results of a pass are handed back together,
            // as the agent's shell does after a round of kernel operations.
            let mut done = Vec::new();
            loop {
                if !self.nodes[i].up {
                    break;
                }
                if let Some(a) = self.nodes[i].engine.poll_action() {
                    self.perform(i, a, &mut done);
                    continue;
                }
                if done.is_empty() {
                    break;
                }
                let results = std::mem::take(&mut done);
                self.nodes[i].engine.wakeup(|e| {
                    for (id, outcome) in results {
                        e.handle_kernel(id, outcome, now);
                    }
                });
            }
        }
    }

    /// Carries out one action of node `i`; a kernel result goes to `done` with
    /// `wakeups`, else straight back.
    fn perform(&mut self, i: usize, a: Action, done: &mut Vec<(u64, KernelOutcome)>) {
        let now = self.now;
        match &a {
            Action::Send { to, payload } => {
                if let Some(j) = self.nodes.iter().position(|n| n.addr == *to) {
                    self.sent += 1;
                    let at = now + self.latency;
                    self.queue
                        .push(Reverse((at, self.sent, i, j, payload.clone())));
                }
            }
            Action::Kernel { id, op } => {
                let outcome = self.kernel(i, op);
                if self.wakeups {
                    done.push((*id, outcome));
                } else {
                    self.nodes[i].engine.handle_kernel(*id, outcome, now);
                }
            }
            Action::Probe { group } => {
                let conflict = self
                    .addrs_of(i, *group)
                    .into_iter()
                    .any(|a| self.addr_holders(a).iter().any(|&h| h != i));
                self.nodes[i].events.push((now, a.clone()));
                self.nodes[i].engine.handle_probe(*group, conflict, now);
            }
            Action::Announce { .. } => {}
            Action::Event(_) => self.nodes[i].events.push((now, a.clone())),
        }
    }

    fn kernel(&mut self, i: usize, op: &KernelOp) -> KernelOutcome {
        let now = self.now;
        let bound = &mut self.nodes[i].bound;
        match *op {
            KernelOp::Flush => bound.clear(),
            KernelOp::Bind { group, deadline }
            | KernelOp::Refresh {
                group, deadline, ..
            } => {
                if now > deadline {
                    bound.remove(&group);
                    return KernelOutcome::Lapsed;
                }
                bound.insert(group);
            }
            KernelOp::Unbind { group } => {
                bound.remove(&group);
            }
        }
        KernelOutcome::Ok
    }

    /// S1 per address: no address bound on two live nodes, whatever their tables.
    fn check_safety(&self) {
        let mut all = BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for &g in &n.bound {
                all.extend(self.addrs_of(i, g));
            }
        }
        for a in all {
            let h = self.addr_holders(a);
            assert!(h.len() <= 1, "{a} bound on {h:?} at {:?}", self.now);
        }
    }

    /// When node `i` emitted its first event matching `f` after `since`.
    pub fn first_event(
        &self,
        i: usize,
        since: Instant,
        f: impl Fn(&Action) -> bool,
    ) -> Option<Instant> {
        self.nodes[i]
            .events
            .iter()
            .find(|(t, a)| *t >= since && f(a))
            .map(|(t, _)| *t)
    }
}

/// Whether `a` is the release of group `g` for `reason`.
pub(super) fn released(g: GroupId, reason: ReleaseReason) -> impl Fn(&Action) -> bool {
    move |a| matches!(a, Action::Event(Event::Released { group, reason: r }) if *group == g && *r == reason)
}

/// Whether `a` is the acquisition of group `g`.
pub(super) fn acquired(g: GroupId) -> impl Fn(&Action) -> bool {
    move |a| matches!(a, Action::Event(Event::Acquired { group, .. }) if *group == g)
}
