//! The engine: membership, assignment, lease and ownership glued into one
//! deterministic state machine.
//!
//! # Call order
//!
//! ```text
//! let mut e = Engine::new(config, init, now);      // emits Kernel(Flush) first
//! loop {
//!     // inputs, each with `now` read *after* the input arrived:
//!     e.handle_datagram(from, bytes, now);           // UDP payload (envelope removed)
//!     e.handle_timeout(now);                         // when `poll_timeout()` is reached
//!     e.handle_kernel(op_id, outcome, now);          // a kernel operation finished
//!     e.handle_probe(group, conflict, now);          // the ARP/NS probe finished
//!     // outputs:
//!     while let Some(a) = e.poll_action() { /* send, kernel op, probe, announce, event */ }
//!     let next = e.poll_timeout();
//! }
//! ```
//!
//! Commands: [`Engine::leave`], [`Engine::set_draining`], [`Engine::set_healthy`],
//! [`Engine::handle_clock_jump`]. Getters: [`Engine::status`], [`Engine::stats`].
//!
//! The engine never sends a datagram before the start-up flush is confirmed (rule 3),
//! emits at most one kernel operation per group at a time (rule 6), and computes each
//! claim's send time from the `now` of the call that emits it (rule 5).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};

use super::assign::{self, Candidate};
use super::config::{ClusterConfig, FenceKind, GroupId, NodeConfig, QuorumMode};
use super::hash::{StableHasher, combine, hash_str};
use super::lease::{Answer, Claim, Claimer, Ignored, Voter};
use super::membership::{Liveness, MemberView, Membership, NodeId};
use super::ownership::{
    self, Ctx, Effect, FenceReason, KernelOutcome, OpKind, Phase, ReleaseReason,
};
use super::time::Instant;
use super::wire::{self, Body, NodeMeta, WireError};

/// Longest contention backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often a missing member's metadata is requested.
pub const META_REQUEST_PERIOD: Duration = Duration::from_millis(500);
/// How often expired promises are swept.
const GC_PERIOD: Duration = Duration::from_secs(1);
/// First retry delay after a failed kernel operation (start-up flush, unbind, bind);
/// it doubles with each further failure of the same group, up to
/// [`MAX_KERNEL_RETRY`]. A failure is retried on a timer, never inside the same
/// drive: a kernel that keeps refusing (a flushed ruleset, a vanished interface)
/// must not keep the shell from serving signals, HTTP and gossip.
const KERNEL_RETRY: Duration = Duration::from_millis(50);
/// Longest delay between retries of a failing kernel operation.
pub const MAX_KERNEL_RETRY: Duration = Duration::from_secs(1);
/// A name collision (another process with this node's name) is assumed to last this
/// long after its last sign.
pub const COLLISION_HOLD: Duration = Duration::from_secs(5);
/// Most rounds of [`Engine::drive_alone`].
pub const DRIVE_ALONE_STEPS: usize = 100_000;
/// Most actions queued before the shell drains them (a bound, not a target).
pub const MAX_QUEUED_ACTIONS: usize = 65_536;

/// Safety mechanisms the simulator can switch off to show its checker catches the
/// result. Never set in the agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breaks {
    /// Q = 0, and the two-node mode counts a silent peer absent at once.
    pub quiescence: bool,
    /// Q ignores the previous holder's state and incarnation.
    pub incarnation: bool,
    /// One grant (anyone's) is a lease.
    pub quorum_lease: bool,
    /// W = 0: a restarted voter grants at once.
    pub restart_wait: bool,
    /// Drop a group from claims before its unbind is verified.
    pub release_order: bool,
    /// A fixed nonce per name: a restarted claimer reuses its old lease identity.
    pub nonce: bool,
}

/// Everything the engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The cluster-wide configuration (validated).
    pub cluster: ClusterConfig,
    /// This node.
    pub node: NodeConfig,
    /// Gossip address of this node.
    pub bind: SocketAddr,
    /// Addresses to announce to (may include our own; it is skipped).
    pub seeds: Vec<SocketAddr>,
    /// Expected cluster size, for foca's dissemination count.
    pub cluster_size_hint: usize,
    /// Disabled mechanisms (simulator only).
    pub breaks: Breaks,
}

/// Per-process randomness and identity, supplied by the shell.
#[derive(Clone, Copy, Debug)]
pub struct EngineInit {
    /// Lease nonce: 64 random bits, fresh at every start.
    pub nonce: u64,
    /// Seed for the engine's RNG (foca, backoff).
    pub rng_seed: u64,
    /// SWIM epoch: must grow across restarts (e.g. wall-clock milliseconds).
    pub epoch: u64,
}

/// A kernel operation for the shell. The shell performs one group's operations in
/// order and reports each with [`Engine::handle_kernel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOp {
    /// Remove every pool VIP and gate entry, then verify they are gone.
    Flush,
    /// Bind the group: with the gate, arm then go live; add the addresses with
    /// `valid_lft 1`. Check `now ≤ deadline` right before each write and right after
    /// its ack; if it has passed, undo and report `Lapsed`.
    Bind {
        /// The group.
        group: GroupId,
        /// Latest instant a write may happen.
        deadline: Instant,
    },
    /// Refresh: the gate's atomic delete+add (reports `Lapsed` if the entry had
    /// expired), and the address lifetime if `renew_address`. Same deadline checks.
    Refresh {
        /// The group.
        group: GroupId,
        /// Latest instant a write may happen.
        deadline: Instant,
        /// Also renew the addresses' `valid_lft`.
        renew_address: bool,
    },
    /// Remove the gate entries and addresses, then verify they are gone.
    Unbind {
        /// The group.
        group: GroupId,
    },
}

impl KernelOp {
    /// The group concerned, if any.
    pub fn group(&self) -> Option<GroupId> {
        match self {
            KernelOp::Flush => None,
            KernelOp::Bind { group, .. }
            | KernelOp::Refresh { group, .. }
            | KernelOp::Unbind { group } => Some(*group),
        }
    }
}

/// Something worth logging or counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This node now answers for the group; `took` is from claim start to bound.
    Acquired {
        /// Group.
        group: GroupId,
        /// Claim start → bound.
        took: Duration,
        /// From this node's view naming it the owner to bound (the failover time
        /// this node can see).
        since_assigned: Duration,
        /// The previous designated owner in this node's view.
        from: Option<String>,
    },
    /// This node stopped answering for the group, on purpose.
    Released {
        /// Group.
        group: GroupId,
        /// Why.
        reason: ReleaseReason,
    },
    /// This node stopped answering because its lease or the kernel said so.
    Fenced {
        /// Group.
        group: GroupId,
        /// Why.
        reason: FenceReason,
    },
    /// The probe found the group answered by someone else.
    Conflict {
        /// Group.
        group: GroupId,
    },
    /// A claim was withdrawn after contention.
    Withdrew {
        /// Group.
        group: GroupId,
    },
    /// The start-up flush and wait are over; voting starts at `voting_from`.
    Started {
        /// End of the start-up wait W.
        voting_from: Instant,
    },
    /// The membership view changed.
    ViewChanged {
        /// Active members, this node included.
        members: usize,
    },
    /// All groups released and the cluster left.
    Left,
    /// Something the operator should know.
    Warning(String),
}

/// An effect for the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a datagram (core format; the shell wraps it in its envelope).
    Send {
        /// Destination.
        to: SocketAddr,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Perform a kernel operation and report it with its id.
    Kernel {
        /// Id to report back.
        id: u64,
        /// The operation.
        op: KernelOp,
    },
    /// Probe (ARP / NS) the group's addresses and report with `handle_probe`.
    Probe {
        /// Group.
        group: GroupId,
    },
    /// Announce the group's addresses (gratuitous ARP / unsolicited NA burst).
    Announce {
        /// Group.
        group: GroupId,
    },
    /// Log or count.
    Event(Event),
}

/// Counters. Names are stable; the metrics layer exports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the engine.
    pub datagrams_in: u64,
    /// Datagrams emitted.
    pub datagrams_out: u64,
    /// Bytes handed in.
    pub bytes_in: u64,
    /// Bytes emitted.
    pub bytes_out: u64,
    /// Dropped datagrams by cause.
    pub drops: BTreeMap<&'static str, u64>,
    /// Claims sent (one per round, to all voters).
    pub claims_sent: u64,
    /// Claims ignored as a voter, by cause.
    pub claims_ignored: BTreeMap<&'static str, u64>,
    /// Groups acquired.
    pub acquisitions: u64,
    /// Releases by reason.
    pub releases: BTreeMap<&'static str, u64>,
    /// Fences by reason.
    pub fences: BTreeMap<&'static str, u64>,
    /// Probe conflicts.
    pub conflicts: u64,
    /// Contention withdrawals.
    pub withdrawals: u64,
    /// Quiescence windows started (restarts of Q).
    pub quiescence_waits: u64,
    /// Refreshes issued.
    pub refreshes: u64,
    /// Refreshes that failed or lapsed.
    pub refresh_failures: u64,
    /// Kernel operations the shell reported failed (each retried on a timer).
    pub kernel_failures: u64,
    /// Times another process with this node's name was found running.
    pub name_collisions: u64,
    /// Assignment recomputations.
    pub view_changes: u64,
}

/// Names carried by two or more active members of `view` at once.
fn colliding_names(view: &[MemberView]) -> Vec<&str> {
    let mut names: Vec<&str> = view
        .iter()
        .filter(|m| m.state.is_active())
        .map(|m| m.id.name.as_str())
        .collect();
    names.sort_unstable();
    let mut out: Vec<&str> = names
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    out.dedup();
    out
}

fn bump(m: &mut BTreeMap<&'static str, u64>, k: &'static str) {
    *m.entry(k).or_default() += 1;
}

/// Where the engine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Waiting for the start-up flush to be confirmed.
    Flushing,
    /// Running.
    Running,
    /// Releasing everything before leaving.
    Leaving,
    /// Left the cluster.
    Left,
}

#[derive(Clone, Debug)]
struct Slot {
    owner: Option<String>,
    prev: Option<String>,
    prev_sig: Option<(Liveness, u16, u64)>,
    calm_since: Instant,
    /// When the phase last changed.
    phase_since: Instant,
    hint: bool,
    /// When the last release hint arrived.
    hint_at: Instant,
    phase: Phase,
    inflight: Option<u64>,
    backoff_exp: u32,
    /// After a failed kernel operation: no new one before then (see [`KERNEL_RETRY`]).
    retry_at: Option<Instant>,
    /// Consecutive failed kernel operations of this group.
    kernel_failures: u32,
}

/// Delay before the next try after `failures` consecutive kernel failures.
fn kernel_retry_delay(failures: u32) -> Duration {
    (KERNEL_RETRY * (1u32 << failures.saturating_sub(1).min(5))).min(MAX_KERNEL_RETRY)
}

/// One group as [`Engine::status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// Group id.
    pub group: GroupId,
    /// Designated owner in this node's view.
    pub owner: Option<String>,
    /// This node's phase for it.
    pub phase: &'static str,
    /// Since when the current assignment has been calm.
    pub calm_since: Instant,
    /// Since when the group has been in its phase.
    pub phase_since: Instant,
}

/// A snapshot for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Node name.
    pub name: String,
    /// Life stage.
    pub life: Life,
    /// Our own metadata.
    pub meta: NodeMeta,
    /// Members (not this node).
    pub members: Vec<MemberView>,
    /// Per group.
    pub groups: Vec<GroupStatus>,
    /// Whether the quorum is currently reachable in the two-node mode's sense, or
    /// how many voters answered recently in majority mode.
    pub voters_heard: usize,
}

/// The deterministic core of one node.
pub struct Engine {
    cfg: ClusterConfig,
    node: NodeConfig,
    breaks: Breaks,
    cluster_id: u64,
    name_hash: u64,
    group_hash: Vec<u64>,
    rng: StdRng,
    life: Life,
    running_since: Instant,
    membership: Membership,
    /// The membership view, refreshed whenever it changes.
    view: Vec<MemberView>,
    voter: Option<Voter>,
    claimer: Option<Claimer>,
    slots: Vec<Slot>,
    ops: BTreeMap<u64, KernelOp>,
    next_op: u64,
    flush_op: Option<u64>,
    flush_retry_at: Option<Instant>,
    next_claim_at: Instant,
    next_group_tick: Option<Instant>,
    /// From then on a wake-up for any other reason also runs the refresh round (half
    /// a refresh period after the oldest held group's last refresh).
    next_soft_refresh: Option<Instant>,
    next_meta_request: Instant,
    next_gc: Instant,
    /// When this process became eligible (or will, by fail-back).
    eligible: bool,
    healthy: bool,
    draining: bool,
    /// Voter index → last time an answer came from it.
    voter_heard: Vec<Option<Instant>>,
    /// Two-node mode: the peer's name, when we last heard its lease traffic, and the
    /// nonce it announced leaving with.
    peer: Option<String>,
    peer_heard: Option<Instant>,
    peer_left_nonce: Option<u64>,
    /// Last time any input reached the engine.
    last_input: Instant,
    /// After a stall of our own, no sign of the peer's absence is trusted until then.
    stall_until: Option<Instant>,
    leave_claim_sent: bool,
    /// When metadata was last requested from each address (and when each was last
    /// told it is superseded, under the address with port 0).
    meta_asked: BTreeMap<SocketAddr, Instant>,
    /// Until then another process with this node's name is taken to be running:
    /// this node neither holds, claims nor votes (DESIGN §2.3 rule 1).
    collision_until: Option<Instant>,
    /// Every group must be re-evaluated at the next drive (view, command, life).
    dirty_all: bool,
    /// A refresh round is under way at this tick (see `tick_groups`).
    refresh_round: bool,
    /// Release hints to send once the claim dropping their groups is out.
    pending_hints: Vec<GroupId>,
    /// These groups must be re-evaluated (answers, hints).
    dirty: Vec<GroupId>,
    actions: VecDeque<Action>,
    fx: Vec<Effect>,
    stats: Stats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.node.name)
            .field("life", &self.life)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A new engine at `now`. Its first action is the start-up flush.
    pub fn new(config: EngineConfig, init: EngineInit, now: Instant) -> Engine {
        let EngineConfig {
            cluster,
            node,
            bind,
            seeds,
            cluster_size_hint,
            breaks,
        } = config;
        let cluster_id = cluster.cluster_id();
        let fingerprint = {
            let mut h = StableHasher::new();
            h.write_u64(cluster_id);
            h.write_u64(cluster.timing.quiescence.as_nanos() as u64);
            h.write_u64(cluster.timing.failback_delay.as_nanos() as u64);
            h.write_u64(cluster.timing.probe_period.as_nanos() as u64);
            h.write_u64(cluster.timing.suspect_to_down.as_nanos() as u64);
            h.finish()
        };
        let witness = cluster.is_witness(&node.name);
        let nonce = if breaks.nonce {
            hash_str(&node.name)
        } else {
            init.nonce
        };
        let meta = NodeMeta {
            name: node.name.clone(),
            generation: init.epoch,
            version: 0,
            eligible: false,
            draining: false,
            weight: node.weight,
            fingerprint,
            prefers: if witness {
                Vec::new()
            } else {
                node.prefers.clone()
            },
            held: Vec::new(),
            lease_nonce: nonce,
        };
        let id = NodeId {
            addr: bind,
            name: node.name.clone(),
            epoch: init.epoch,
        };
        let membership = Membership::new(
            id,
            &cluster.timing,
            cluster_size_hint,
            init.rng_seed ^ 0x5157_494d,
            meta,
            seeds,
            now,
        );
        let claimer = cluster.may_hold(&node.name).then(|| {
            Claimer::new(
                &node.name,
                nonce,
                cluster.voters.len(),
                cluster.lease_validity(),
            )
        });
        let peer = (cluster.quorum == QuorumMode::Off)
            .then(|| cluster.voters.iter().find(|v| **v != node.name).cloned())
            .flatten();
        let group_hash: Vec<u64> = cluster
            .groups
            .iter()
            .map(|g| assign::group_hash(&g.key()))
            .collect();
        let slots = vec![
            Slot {
                owner: None,
                prev: None,
                prev_sig: None,
                calm_since: now,
                phase_since: now,
                hint: false,
                hint_at: now,
                phase: Phase::Free,
                inflight: None,
                backoff_exp: 0,
                retry_at: None,
                kernel_failures: 0,
            };
            cluster.groups.len()
        ];
        let n_voters = cluster.voters.len();
        let mut e = Engine {
            name_hash: hash_str(&node.name),
            cluster_id,
            group_hash,
            rng: StdRng::seed_from_u64(init.rng_seed),
            life: Life::Flushing,
            running_since: now,
            membership,
            view: Vec::new(),
            voter: None,
            claimer,
            slots,
            ops: BTreeMap::new(),
            next_op: 0,
            flush_op: None,
            flush_retry_at: None,
            next_claim_at: now,
            next_group_tick: None,
            next_soft_refresh: None,
            next_meta_request: now,
            next_gc: now + GC_PERIOD,
            eligible: false,
            healthy: true,
            draining: false,
            voter_heard: vec![None; n_voters],
            peer,
            peer_heard: None,
            peer_left_nonce: None,
            last_input: now,
            stall_until: None,
            leave_claim_sent: false,
            meta_asked: BTreeMap::new(),
            collision_until: None,
            dirty_all: true,
            refresh_round: false,
            pending_hints: Vec::new(),
            dirty: Vec::new(),
            actions: VecDeque::new(),
            fx: Vec::new(),
            stats: Stats::default(),
            breaks,
            cfg: cluster,
            node,
        };
        e.issue_flush();
        e
    }

    // ---- getters -------------------------------------------------------------------

    /// The cluster id carried in every datagram.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Life stage.
    pub fn life(&self) -> Life {
        self.life
    }

    /// Whether the engine has released everything and left.
    pub fn is_finished(&self) -> bool {
        self.life == Life::Left
    }

    /// The cluster configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.node.name
    }

    /// Groups this node currently has bound or is binding/unbinding.
    pub fn bound_groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase.maybe_bound())
            .map(|(g, _)| g as GroupId)
    }

    /// The phase of a group.
    pub fn phase(&self, g: GroupId) -> Phase {
        self.slots[usize::from(g)].phase
    }

    /// The designated owner of a group in this node's view.
    pub fn owner(&self, g: GroupId) -> Option<&str> {
        self.slots[usize::from(g)].owner.as_deref()
    }

    /// A snapshot for status output.
    pub fn status(&self, now: Instant) -> Status {
        let recent = self.cfg.lease_validity();
        Status {
            name: self.node.name.clone(),
            life: self.life,
            meta: self.membership.own_meta().clone(),
            members: self.view.clone(),
            groups: self
                .slots
                .iter()
                .enumerate()
                .map(|(g, s)| GroupStatus {
                    group: g as GroupId,
                    owner: s.owner.clone(),
                    phase: s.phase.label(),
                    calm_since: s.calm_since,
                    phase_since: s.phase_since,
                })
                .collect(),
            voters_heard: self
                .voter_heard
                .iter()
                .flatten()
                .filter(|&&t| t + recent > now)
                .count(),
        }
    }

    /// The membership layer (read-only), for diagnostics.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Foca counters.
    pub fn membership_stats(&self) -> &super::membership::MembershipStats {
        &self.membership.stats
    }

    // ---- outputs -------------------------------------------------------------------

    /// Whether effects are waiting to be polled.
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    /// The next effect to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.life == Life::Left {
            return None;
        }
        if self.life == Life::Flushing {
            return self.flush_retry_at;
        }
        let mut t = self.membership.poll_timeout();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |y| y.min(x)));
            }
        };
        consider(self.next_group_tick);
        consider(Some(self.next_gc));
        if self.claims_flowing() {
            consider(Some(self.next_claim_at));
        }
        consider(Some(self.next_meta_request));
        consider(self.collision_until);
        if !self.eligible {
            consider(Some(self.eligible_at()));
        }
        t
    }

    // ---- inputs --------------------------------------------------------------------

    /// A datagram (core format) from `from`, with `now` read after it arrived.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        self.note_input(now);
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if self.life == Life::Flushing || self.life == Life::Left {
            bump(&mut self.stats.drops, "not_running");
            return;
        }
        let body = match wire::decode(self.cluster_id, bytes) {
            Ok(b) => b,
            Err(e) => {
                bump(&mut self.stats.drops, e.label());
                return;
            }
        };
        match body {
            Body::Swim(data, version) => {
                if self.membership.handle_data(&data, now).is_err() {
                    bump(&mut self.stats.drops, "swim");
                }
                self.check_meta_version(from, version, now);
                self.check_superseded(from, version.0, now);
                // Two-node mode: any traffic from the peer means it is present, so a
                // node that held alone must now get its grants (or fence).
                if let Some(peer) = &self.peer
                    && self
                        .membership
                        .members()
                        .iter()
                        .any(|m| m.id.addr == from && m.id.name == *peer)
                {
                    self.peer_heard = Some(now);
                }
            }
            Body::Claim(c) => self.on_claim(from, c, now),
            Body::Answer(a) => self.on_answer(a, now),
            Body::Released { group, from: who } => {
                if let Some(s) = self.slots.get_mut(usize::from(group)) {
                    if s.owner.as_deref() == Some(self.node.name.as_str()) && who != self.node.name
                    {
                        s.hint = true;
                        s.hint_at = now;
                        self.dirty.push(group);
                        match s.phase {
                            Phase::Backoff { .. } => s.phase = Phase::Backoff { until: now },
                            Phase::Claiming { .. } => {
                                // The voters have just freed it: ask again now.
                                if let Some(c) = &mut self.claimer {
                                    c.mark_urgent();
                                }
                            }
                            _ => {}
                        }
                    }
                } else {
                    bump(&mut self.stats.drops, "unknown_group");
                }
            }
            Body::Leaving { name, nonce } => {
                if self.peer.as_deref() == Some(name.as_str()) {
                    self.peer_left_nonce = Some(nonce);
                    self.dirty_all = true;
                }
            }
            Body::MetaRequest => {
                let meta = self.membership.own_meta().clone();
                self.send(from, &Body::Meta(meta));
            }
            Body::Meta(m) => {
                self.membership.offer_meta(m);
            }
            Body::Superseded { generation } => {
                if generation > self.membership.own_meta().generation {
                    let epoch = self.membership.supersede(generation, now);
                    self.emit(Action::Event(Event::Warning(format!(
                        "a predecessor of {} had a newer generation ({generation}): is the wall clock behind? Identity renewed at {epoch}",
                        self.node.name
                    ))));
                    self.dirty_all = true;
                }
            }
        }
        self.drive(now);
    }

    /// Timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_input(now);
        match self.life {
            Life::Flushing => {
                if self.flush_retry_at.is_some_and(|t| now >= t) {
                    self.flush_retry_at = None;
                    self.issue_flush();
                }
            }
            Life::Left => {}
            _ => {
                self.membership.handle_timeout(now);
                self.drive(now);
            }
        }
    }

    /// Completion of kernel operation `id`.
    pub fn handle_kernel(&mut self, id: u64, outcome: KernelOutcome, now: Instant) {
        self.note_input(now);
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        match op {
            KernelOp::Flush => {
                self.flush_op = None;
                if outcome == KernelOutcome::Ok {
                    self.start_running(now);
                } else {
                    self.emit(Action::Event(Event::Warning(format!(
                        "start-up flush failed: {outcome:?}; retrying"
                    ))));
                    self.flush_retry_at = Some(now + KERNEL_RETRY);
                }
                return;
            }
            KernelOp::Bind { group, .. }
            | KernelOp::Refresh { group, .. }
            | KernelOp::Unbind { group } => {
                let g = usize::from(group);
                if self.slots[g].inflight == Some(id) {
                    self.slots[g].inflight = None;
                }
                let s = &mut self.slots[g];
                if matches!(outcome, KernelOutcome::Failed(_)) {
                    s.kernel_failures = s.kernel_failures.saturating_add(1);
                    s.retry_at = Some(now + kernel_retry_delay(s.kernel_failures));
                    self.stats.kernel_failures += 1;
                } else {
                    s.kernel_failures = 0;
                    s.retry_at = None;
                }
                if matches!(op, KernelOp::Refresh { .. }) && outcome != KernelOutcome::Ok {
                    self.stats.refresh_failures += 1;
                }
                let kind = match op {
                    KernelOp::Bind { .. } => OpKind::Bind,
                    KernelOp::Refresh { renew_address, .. } => OpKind::Refresh {
                        renewed_address: renew_address,
                    },
                    _ => OpKind::Unbind,
                };
                let ctx = self.ctx(group, now);
                let mut fx = std::mem::take(&mut self.fx);
                let phase =
                    ownership::kernel_done(self.slots[g].phase, kind, &outcome, &ctx, now, &mut fx);
                self.set_phase(group, phase, now);
                self.apply(group, &mut fx, now);
                self.fx = fx;
                self.dirty.push(group);
            }
        }
        self.drive(now);
    }

    /// The probe for `group` finished; `conflict` if someone answered.
    pub fn handle_probe(&mut self, group: GroupId, conflict: bool, now: Instant) {
        self.note_input(now);
        let g = usize::from(group);
        if g >= self.slots.len() {
            return;
        }
        let ctx = self.ctx(group, now);
        let mut fx = std::mem::take(&mut self.fx);
        let phase = ownership::probe_result(self.slots[g].phase, conflict, &ctx, now, &mut fx);
        self.set_phase(group, phase, now);
        self.apply(group, &mut fx, now);
        self.fx = fx;
        self.dirty.push(group);
        self.drive(now);
    }

    /// Health changed (checks with rise/fall applied by the shell).
    pub fn set_healthy(&mut self, healthy: bool, now: Instant) {
        self.healthy = healthy;
        self.dirty_all = true;
        self.refresh_meta();
        self.drive(now);
    }

    /// Operator drain on/off.
    pub fn set_draining(&mut self, draining: bool, now: Instant) {
        self.draining = draining;
        self.dirty_all = true;
        self.refresh_meta();
        self.drive(now);
    }

    /// Changes the groups this node prefers (gossiped to everyone).
    pub fn set_prefers(&mut self, prefers: Vec<GroupId>, now: Instant) {
        let n = self.cfg.groups.len();
        let mut prefers: Vec<GroupId> = prefers
            .into_iter()
            .filter(|&g| usize::from(g) < n)
            .collect();
        prefers.sort_unstable();
        prefers.dedup();
        if !self.cfg.is_witness(&self.node.name) {
            self.node.prefers = prefers.clone();
            self.dirty_all = true;
            self.membership.update_meta(|m| m.prefers = prefers);
        }
        self.drive(now);
    }

    /// Drives a lone engine with no peers from `now` until `until`: every kernel
    /// operation succeeds and every probe finds nothing, at once, and timers fire in
    /// order. Returns every action seen (at most [`DRIVE_ALONE_STEPS`] rounds). The
    /// in-process harness of unit tests, fuzz targets and examples; pure like the
    /// rest of the engine.
    pub fn drive_alone(&mut self, mut now: Instant, until: Instant) -> Vec<Action> {
        let mut seen = Vec::new();
        for _ in 0..DRIVE_ALONE_STEPS {
            let mut progressed = false;
            while let Some(a) = self.poll_action() {
                progressed = true;
                match &a {
                    Action::Kernel { id, .. } => self.handle_kernel(*id, KernelOutcome::Ok, now),
                    Action::Probe { group } => self.handle_probe(*group, false, now),
                    _ => {}
                }
                seen.push(a);
            }
            if progressed {
                continue;
            }
            match self.poll_timeout() {
                Some(t) if t <= until => {
                    now = now.max(t);
                    self.handle_timeout(now);
                }
                _ => break,
            }
        }
        seen
    }

    /// Graceful leave: release every group, then leave the cluster.
    pub fn leave(&mut self, now: Instant) {
        match self.life {
            Life::Flushing => {
                self.life = Life::Left;
                self.emit(Action::Event(Event::Left));
            }
            Life::Running => {
                self.life = Life::Leaving;
                self.dirty_all = true;
                self.refresh_meta();
                self.drive(now);
            }
            _ => {}
        }
    }

    /// The clock jumped (a suspend was detected): unbind everything first.
    pub fn handle_clock_jump(&mut self, now: Instant) {
        for g in 0..self.slots.len() {
            let group = g as GroupId;
            if let Phase::Held { .. } | Phase::Binding { .. } = self.slots[g].phase {
                self.set_phase(
                    group,
                    Phase::Fencing {
                        reason: FenceReason::ClockJump,
                    },
                    now,
                );
                let mut fx = vec![Effect::Fenced(FenceReason::ClockJump)];
                if self.slots[g].inflight.is_none() {
                    fx.push(Effect::Unbind);
                }
                self.apply(group, &mut fx, now);
            }
        }
        self.dirty_all = true;
        self.drive(now);
    }

    // ---- internals -----------------------------------------------------------------

    /// A gap in our own activity longer than the contention window means we were
    /// frozen or stalled: silence from the two-node peer during that gap proves
    /// nothing (its datagrams may be waiting in our socket), so the peer's absence
    /// is measured afresh from now.
    fn note_input(&mut self, now: Instant) {
        if self.peer.is_some()
            && now > self.last_input + self.cfg.contention_window()
            && self.life == Life::Running
        {
            self.peer_heard = Some(now);
            // Nor does a leave notice read from that backlog: a newer process of the
            // peer may have started and, not hearing us, taken the groups alone. For
            // Q₂ we trust no sign of absence; a live peer is heard within that time.
            self.stall_until = Some(now + self.cfg.absent_after());
            self.dirty_all = true;
        }
        self.last_input = self.last_input.max(now);
    }

    fn emit(&mut self, a: Action) {
        if self.actions.len() < MAX_QUEUED_ACTIONS {
            self.actions.push_back(a);
        }
    }

    fn send_swim(&mut self, to: SocketAddr, data: Vec<u8>) {
        let m = self.membership.own_meta();
        let v = (m.generation, m.version);
        self.send(to, &Body::Swim(data, v));
    }

    /// Anti-entropy: the sender's metadata is newer than our copy; ask for it (at
    /// most once per META_REQUEST_PERIOD per sender).
    fn check_meta_version(&mut self, from: SocketAddr, version: (u64, u64), now: Instant) {
        let Some(m) = self.view.iter().find(|m| m.id.addr == from) else {
            return;
        };
        let stale = m
            .meta
            .as_ref()
            .is_none_or(|x| (x.generation, x.version) < version);
        if !stale {
            return;
        }
        if self
            .meta_asked
            .get(&from)
            .is_some_and(|&t| now < t + META_REQUEST_PERIOD)
        {
            return;
        }
        if self.meta_asked.len() > 4096 {
            self.meta_asked.clear();
        }
        self.meta_asked.insert(from, now);
        self.send(from, &Body::MetaRequest);
    }

    /// A member whose packets carry an older generation than the metadata we hold for
    /// its name restarted with its clock behind: tell it (at most once per
    /// [`META_REQUEST_PERIOD`] per address) so it renews above.
    fn check_superseded(&mut self, from: SocketAddr, generation: u64, now: Instant) {
        let Some(known) = self
            .view
            .iter()
            .find(|m| m.id.addr == from)
            .and_then(|m| m.meta.as_ref().filter(|x| x.name == m.id.name))
            .map(|x| x.generation)
        else {
            return;
        };
        if generation >= known {
            return;
        }
        let key = SocketAddr::new(from.ip(), 0);
        if self
            .meta_asked
            .get(&key)
            .is_some_and(|&t| now < t + META_REQUEST_PERIOD)
        {
            return;
        }
        self.meta_asked.insert(key, now);
        self.send(from, &Body::Superseded { generation: known });
    }

    /// Whether another process with this node's name is taken to be running.
    pub fn name_collision(&self, now: Instant) -> bool {
        self.collision_until.is_some_and(|t| now < t)
    }

    /// Names carried by two or more active members at once (two processes with one
    /// name): their claims and votes do not count, and they are given no group.
    fn colliding_names(&self) -> Vec<&str> {
        colliding_names(&self.view)
    }

    /// A sign that another process runs under this node's name.
    fn note_collision(&mut self, why: &str, now: Instant) {
        if !self.name_collision(now) {
            self.stats.name_collisions += 1;
            self.emit(Action::Event(Event::Warning(format!(
                "another agent runs with the node name {:?} ({why}): this one holds nothing, claims nothing and votes for nobody until it is gone; give every node its own name",
                self.node.name
            ))));
            self.dirty_all = true;
            self.collision_until = Some(now + COLLISION_HOLD);
            self.refresh_meta();
        }
        self.collision_until = Some(now + COLLISION_HOLD);
    }

    fn send(&mut self, to: SocketAddr, body: &Body) {
        let encoded = wire::encode(self.cluster_id, body);
        self.send_encoded(to, encoded);
    }

    fn send_encoded(&mut self, to: SocketAddr, encoded: Result<Vec<u8>, WireError>) {
        match encoded {
            Ok(payload) => {
                self.stats.datagrams_out += 1;
                self.stats.bytes_out += payload.len() as u64;
                self.emit(Action::Send { to, payload });
            }
            Err(e) => bump(
                &mut self.stats.drops,
                if e == WireError::Oversize {
                    "send_oversize"
                } else {
                    "send_error"
                },
            ),
        }
    }

    fn issue_flush(&mut self) {
        self.next_op += 1;
        let id = self.next_op;
        self.ops.insert(id, KernelOp::Flush);
        self.flush_op = Some(id);
        self.emit(Action::Kernel {
            id,
            op: KernelOp::Flush,
        });
    }

    fn start_running(&mut self, now: Instant) {
        self.life = Life::Running;
        self.dirty_all = true;
        self.running_since = now;
        let wait = if self.breaks.restart_wait {
            Duration::ZERO
        } else {
            self.cfg.restart_wait()
        };
        if let Some(i) = self.cfg.voter_index(&self.node.name) {
            self.voter = Some(Voter::new(
                i as u16,
                &self.node.name,
                self.cfg.groups.len(),
                self.cfg.promise_hold(),
                wait,
                self.cfg.quorum == QuorumMode::Off,
                now,
            ));
        }
        self.emit(Action::Event(Event::Started {
            voting_from: now + wait,
        }));
        self.membership.start(now);
        self.drive(now);
    }

    fn eligible_at(&self) -> Instant {
        self.running_since + self.cfg.timing.failback_delay
    }

    /// Fail-back: a node makes itself eligible after it has been up for the fail-back
    /// delay, or as soon as it has settled and sees no eligible member (cold start).
    fn update_eligibility(&mut self, now: Instant) {
        if self.eligible || self.life != Life::Running {
            return;
        }
        let settle = self.cfg.timing.probe_period * 3;
        let someone_eligible = || {
            self.view
                .iter()
                .any(|m| m.state.is_active() && m.meta.as_ref().is_some_and(|x| x.eligible))
        };
        if now >= self.eligible_at() || (now >= self.running_since + settle && !someone_eligible())
        {
            self.eligible = true;
            self.refresh_meta();
        }
    }

    fn refresh_meta(&mut self) {
        let eligible = self.eligible
            && self.healthy
            && self.collision_until.is_none()
            && self.node.eligible
            && !self.draining
            && self.life == Life::Running
            && self.cfg.may_hold(&self.node.name);
        let draining = self.draining || self.life == Life::Leaving;
        let before = self.membership.own_meta().clone();
        self.membership.update_meta(|m| {
            m.eligible = eligible;
            m.draining = draining;
        });
        if (before.eligible, before.draining) != (eligible, draining) {
            // Tell every member at once rather than by gossip: a handover is only as
            // fast as the new owner learns it is the owner.
            let meta = Body::Meta(self.membership.own_meta().clone());
            let to: Vec<SocketAddr> = self
                .view
                .iter()
                .filter(|m| m.state.is_active())
                .map(|m| m.id.addr)
                .collect();
            for a in to {
                self.send(a, &meta);
            }
        }
    }

    fn claims_flowing(&self) -> bool {
        let linger = self.cfg.promise_hold();
        match &self.claimer {
            Some(c) => {
                matches!(self.life, Life::Running | Life::Leaving)
                    && (c.active(self.next_claim_at, linger) || self.cfg.quorum == QuorumMode::Off)
            }
            None => false,
        }
    }

    fn q_eff(&self, now: Instant) -> usize {
        if self.breaks.quorum_lease {
            return 1;
        }
        match self.cfg.quorum {
            QuorumMode::Majority => self.cfg.quorum_size(),
            QuorumMode::Off => {
                if self.peer_absent(now) {
                    1
                } else {
                    2
                }
            }
        }
    }

    fn peer_absent(&self, now: Instant) -> bool {
        if self.stall_until.is_some_and(|t| now < t) {
            return false;
        }
        if self.peer_left_nonce.is_some() {
            return true;
        }
        let after = if self.breaks.quiescence {
            Duration::ZERO
        } else {
            self.cfg.absent_after()
        };
        let since = self
            .peer_heard
            .map_or(self.running_since, |h| h.max(self.running_since));
        now >= since + after
    }

    fn rank(&self, g: GroupId, name_hash: u64) -> u64 {
        combine(self.group_hash[usize::from(g)], name_hash)
    }

    fn is_alive(&self, members: &[MemberView], name: &str) -> bool {
        members
            .iter()
            .any(|m| m.id.name == name && m.state.is_active())
    }

    fn ctx(&self, g: GroupId, now: Instant) -> Ctx {
        let s = &self.slots[usize::from(g)];
        let me = self.node.name.as_str();
        let running = self.life == Life::Running;
        let own = self.membership.own_meta();
        let want = running && s.owner.as_deref() == Some(me) && self.claimer.is_some();
        let q = if self.breaks.quiescence {
            Duration::ZERO
        } else {
            self.cfg.timing.quiescence
        };
        let calm = s.hint || now >= s.calm_since + q;
        let release_now = if self.life == Life::Leaving {
            Some(ReleaseReason::Leave)
        } else if self.draining {
            Some(ReleaseReason::Drain)
        } else if !own.eligible && self.eligible {
            Some(ReleaseReason::Ineligible)
        } else {
            None
        };
        let lease = self
            .claimer
            .as_ref()
            .and_then(|c| c.lease(g, self.q_eff(now)));
        let refresh_period = self.refresh_period();
        let (bind_deadline, refresh_deadline) = match (lease, self.cfg.fence) {
            (None, _) => (None, None),
            (Some(l), FenceKind::Gate) => {
                let margin = self.cfg.gate_margin();
                let refresh = l
                    .as_nanos()
                    .checked_sub(margin.as_nanos() as u64)
                    .map(Instant::from_nanos);
                let bind = refresh
                    .and_then(|r| {
                        r.as_nanos()
                            .checked_sub(self.cfg.timing.gate_arm.as_nanos() as u64)
                    })
                    .map(Instant::from_nanos);
                (bind, refresh)
            }
            (Some(l), FenceKind::Address) => (Some(l), Some(l)),
        };
        // Right after a release hint, denies naming the old holder are stale: the
        // voters are freeing the group. Give the hint 3R before contending again.
        let fresh_hint = s.hint && now < s.hint_at + self.cfg.contention_window();
        let withdraw = match s.phase {
            Phase::Claiming { since } if !fresh_hint => self.contention(g, since, now),
            _ => false,
        };
        Ctx {
            want,
            calm,
            release_now,
            bind_deadline,
            refresh_deadline,
            withdraw,
            skip_probe: s.hint,
            refresh_period: if self.refresh_round {
                refresh_period / 2
            } else {
                refresh_period
            },
            address_period: self.cfg.timing.address_refresh,
            // A failed operation's retry waits for its timer: the queue counts as busy.
            inflight: s.inflight.is_some() || s.retry_at.is_some_and(|t| now < t),
            break_release_order: self.breaks.release_order,
        }
    }

    /// DESIGN §2.3 rule 8: withdraw an unbound claim that has no quorum within 3R, or
    /// that is denied in favour of a live, higher-ranked holder. Denies naming a
    /// holder that is down (or our own previous process) are waited out for up to P,
    /// since its promises lapse by then.
    fn contention(&self, g: GroupId, since: Instant, now: Instant) -> bool {
        let Some(c) = &self.claimer else { return false };
        let st = c.status(g, now);
        if st.grants >= self.q_eff(now) {
            return false;
        }
        let members = &self.view;
        let my_rank = self.rank(g, self.name_hash);
        let mut live_lower = false;
        for h in st.deny_holders.iter().filter(|h| **h != self.node.name) {
            if self.is_alive(members, h) {
                if self.rank(g, hash_str(h)) > my_rank {
                    return true;
                }
                live_lower = true;
            }
        }
        let window = self.cfg.contention_window();
        if now < since + window {
            return false;
        }
        if st.deny_holders.is_empty() {
            // Nobody refuses: either the voters are unreachable (or cannot reach us:
            // the one-way "hostage" case) — withdraw so our partial promises lapse —
            // or they are alive but still in their start-up wait — keep claiming.
            let heard = self
                .voter_heard
                .iter()
                .flatten()
                .filter(|&&t| t + window >= now)
                .count();
            return heard < self.q_eff(now);
        }
        if live_lower {
            return false;
        }
        now >= since + window + self.cfg.promise_hold()
    }

    fn set_phase(&mut self, g: GroupId, phase: Phase, now: Instant) {
        let s = &mut self.slots[usize::from(g)];
        if std::mem::discriminant(&s.phase) != std::mem::discriminant(&phase) {
            s.phase_since = now;
        }
        s.phase = phase;
    }

    /// Publishes the groups this node has bound (status displays only).
    fn sync_held_meta(&mut self) {
        let held: Vec<GroupId> = (0..self.slots.len())
            .filter(|&g| matches!(self.slots[g].phase, Phase::Held { .. }))
            .map(|g| g as GroupId)
            .collect();
        if held != self.membership.own_meta().held {
            self.membership.update_meta(|m| m.held = held);
        }
    }

    fn new_op(&mut self, g: GroupId, op: KernelOp) {
        self.next_op += 1;
        let id = self.next_op;
        self.ops.insert(id, op.clone());
        self.slots[usize::from(g)].inflight = Some(id);
        self.emit(Action::Kernel { id, op });
    }

    fn apply(&mut self, g: GroupId, fx: &mut Vec<Effect>, now: Instant) {
        for e in fx.drain(..) {
            let gi = usize::from(g);
            match e {
                Effect::AddClaim => {
                    if let Some(c) = &mut self.claimer {
                        c.add(g);
                    }
                }
                Effect::RemoveClaim => {
                    if let Some(c) = &mut self.claimer {
                        c.remove(g, now);
                    }
                }
                Effect::Probe => self.emit(Action::Probe { group: g }),
                Effect::Bind(deadline) => self.new_op(g, KernelOp::Bind { group: g, deadline }),
                Effect::Refresh(deadline, renew_address) => {
                    self.stats.refreshes += 1;
                    self.new_op(
                        g,
                        KernelOp::Refresh {
                            group: g,
                            deadline,
                            renew_address,
                        },
                    );
                }
                Effect::Unbind => {
                    if self.slots[gi].inflight.is_none() {
                        self.new_op(g, KernelOp::Unbind { group: g });
                    }
                }
                Effect::Hint => {
                    // Sent after the claim that drops the group (end of `drive`), so
                    // the voters hear the release before the new owner asks.
                    self.pending_hints.push(g);
                }
                Effect::Backoff => {
                    let s = &mut self.slots[gi];
                    s.backoff_exp = (s.backoff_exp + 1).min(16);
                    let r = self.cfg.timing.claim_period;
                    let max = (r * (1u32 << s.backoff_exp.min(6))).min(MAX_BACKOFF).max(r);
                    let span = (max - r).as_nanos() as u64;
                    let extra = if span == 0 {
                        0
                    } else {
                        self.rng.random_range(0..=span)
                    };
                    s.phase = Phase::Backoff {
                        until: now + r + Duration::from_nanos(extra),
                    };
                    s.hint = false;
                    self.stats.withdrawals += 1;
                    self.emit(Action::Event(Event::Withdrew { group: g }));
                }
                Effect::Announce => self.emit(Action::Announce { group: g }),
                Effect::Acquired(since) => {
                    self.slots[gi].backoff_exp = 0;
                    self.stats.acquisitions += 1;
                    let from = self.slots[gi].prev.clone();
                    let since_assigned = now - self.slots[gi].calm_since;
                    self.emit(Action::Event(Event::Acquired {
                        group: g,
                        took: now - since,
                        since_assigned,
                        from,
                    }));
                    self.sync_held_meta();
                }
                Effect::Released(reason) => {
                    bump(&mut self.stats.releases, reason.label());
                    self.emit(Action::Event(Event::Released { group: g, reason }));
                    self.sync_held_meta();
                }
                Effect::Fenced(reason) => {
                    bump(&mut self.stats.fences, reason.label());
                    self.emit(Action::Event(Event::Fenced { group: g, reason }));
                    self.sync_held_meta();
                }
                Effect::Conflict => {
                    self.stats.conflicts += 1;
                    self.emit(Action::Event(Event::Conflict { group: g }));
                }
            }
        }
    }

    fn on_claim(&mut self, from: SocketAddr, c: Claim, now: Instant) {
        // Two-node mode: any claim of the peer's name shows it present, whatever its
        // nonce: a restarted peer's first claims precede its metadata, and under a
        // one-way cut they are the only sign that keeps us from holding alone
        // (docs/safety.md §4.7; a stricter rule here broke S1 in the simulator).
        if self.peer.as_deref() == Some(c.name.as_str()) && self.peer_left_nonce != Some(c.nonce) {
            self.peer_heard = Some(now);
            self.peer_left_nonce = None;
            self.dirty_all = true;
        }
        if !self.cfg.may_hold(&c.name) {
            bump(&mut self.stats.claims_ignored, "not_allowed_to_hold");
            return;
        }
        if c.name == self.node.name {
            if self
                .claimer
                .as_ref()
                .is_some_and(|me| me.nonce() != c.nonce)
            {
                self.note_collision(&format!("a claim from {from}"), now);
            }
            bump(&mut self.stats.claims_ignored, "own_name");
            return;
        }
        if self.colliding_names().contains(&c.name.as_str()) {
            bump(&mut self.stats.claims_ignored, "name_collision");
            return;
        }
        if self.name_collision(now) {
            // Another process votes under our name: we vote for nobody.
            bump(&mut self.stats.claims_ignored, "name_collision");
            self.answer_empty(from, &c);
            return;
        }
        if self.voter.is_none() {
            bump(&mut self.stats.claims_ignored, "not_a_voter");
            return;
        }
        if !self.lease_identity_live(&c.name, c.nonce) {
            // Not a process any active member is: a replay of a dead process's
            // claims (or a new process whose metadata has not arrived yet). Promise
            // nothing; an empty answer keeps a genuine newcomer claiming.
            bump(&mut self.stats.claims_ignored, "stale_identity");
            self.answer_empty(from, &c);
            return;
        }
        let Some(v) = &mut self.voter else { return };
        match v.handle_claim(&c, now) {
            Ok(answer) => {
                // Denies are advice (they steer contention backoff); grants are what
                // counts. Should naming every holder not fit one datagram, name fewer.
                let mut body = Body::Answer(answer);
                loop {
                    let encoded = wire::encode(self.cluster_id, &body);
                    match (encoded, &mut body) {
                        (Err(WireError::Oversize), Body::Answer(a)) if !a.denied.is_empty() => {
                            let keep = a.denied.len() / 2;
                            a.denied.truncate(keep);
                            bump(&mut self.stats.drops, "denies_trimmed");
                        }
                        (r, _) => break self.send_encoded(from, r),
                    }
                }
            }
            Err(Ignored::StartupWait) => {
                // "Alive, but granting nothing yet".
                bump(&mut self.stats.claims_ignored, "startup_wait");
                self.answer_empty(from, &c);
            }
            Err(why) => bump(
                &mut self.stats.claims_ignored,
                match why {
                    Ignored::StartupWait => "startup_wait",
                    Ignored::StaleSeq => "stale_seq",
                    Ignored::UnknownGroup => "unknown_group",
                    Ignored::TooManyClaimers => "too_many_claimers",
                },
            ),
        }
    }

    fn on_answer(&mut self, a: Answer, now: Instant) {
        // Every index from the wire is checked before anything uses it (a voter's
        // answer is authenticated, not trusted to be well-formed).
        if let Err(why) = a.validate(self.slots.len(), self.cfg.voters.len()) {
            bump(&mut self.stats.drops, why);
            return;
        }
        let v = usize::from(a.voter);
        if self
            .cfg
            .voters
            .get(v)
            .is_some_and(|n| self.colliding_names().contains(&n.as_str()))
        {
            bump(&mut self.stats.drops, "name_collision");
            return;
        }
        let Some(c) = &mut self.claimer else {
            bump(&mut self.stats.drops, "answer_not_claiming");
            return;
        };
        if c.handle_answer(&a) {
            self.dirty.extend(a.granted.iter().copied());
            self.dirty.extend(a.denied.iter().map(|(g, _)| *g));
            if let Some(h) = self.voter_heard.get_mut(v) {
                *h = Some(now);
            }
            if let (Some(peer), Some(name)) = (&self.peer, self.cfg.voters.get(v))
                && peer == name
            {
                self.peer_heard = Some(now);
            }
        } else {
            bump(&mut self.stats.drops, "stale_answer");
        }
    }

    /// Answers `claim` with [`Answer::empty`] (if this node is a voter).
    fn answer_empty(&mut self, to: SocketAddr, claim: &Claim) {
        if let Some(v) = &self.voter {
            let answer = Answer::empty(v.index(), claim);
            self.send(to, &Body::Answer(answer));
        }
    }

    /// Whether `(name, nonce)` is the lease identity of a live process: an active
    /// member of that name gossips that nonce.
    fn lease_identity_live(&self, name: &str, nonce: u64) -> bool {
        self.view.iter().any(|m| {
            m.id.name == name
                && m.state.is_active()
                && m.meta
                    .as_ref()
                    .is_some_and(|x| x.name == name && x.lease_nonce == nonce)
        })
    }

    fn voter_addrs(&self) -> Vec<(usize, SocketAddr)> {
        let members = &self.view;
        let mut out = Vec::new();
        for (i, v) in self.cfg.voters.iter().enumerate() {
            if *v == self.node.name {
                continue;
            }
            // The freshest identity carrying that name.
            if let Some(m) = members
                .iter()
                .filter(|m| m.id.name == *v)
                .max_by_key(|m| (m.state.is_active(), m.id.epoch))
            {
                out.push((i, m.id.addr));
            } else if self.peer.as_deref() == Some(v.as_str()) {
                // Two-node mode, peer not in the view yet: claim at every seed, so a
                // peer that holds alone hears us even if our SWIM announce was lost.
                out.extend(self.membership.seeds().iter().map(|&a| (i, a)));
            }
        }
        out
    }

    fn send_claim(&mut self, now: Instant) {
        let Some(c) = &mut self.claimer else { return };
        let claim = c.next_claim(now);
        self.stats.claims_sent += 1;
        // Self-vote: the same path as everyone else's (rule 4).
        if let Some(v) = &mut self.voter {
            let vi = usize::from(v.index());
            if let Ok(ans) = v.handle_claim(&claim, now)
                && let Some(c) = &mut self.claimer
            {
                c.handle_answer(&ans);
            }
            self.voter_heard[vi] = Some(now);
        }
        let body = Body::Claim(claim);
        for (_, addr) in self.voter_addrs() {
            self.send(addr, &body);
        }
        self.next_claim_at = now + self.cfg.timing.claim_period;
    }

    fn recompute_assignment(&mut self, now: Instant, view_changed: bool) {
        self.stats.view_changes += 1;
        let members = std::mem::take(&mut self.view);
        let own = self.membership.own_meta().clone();
        let mut cands: Vec<Candidate> = Vec::new();
        // Two processes under one name hold nothing (see `colliding_names`).
        let colliding = colliding_names(&members);
        let mut consider = |meta: &NodeMeta, cfg: &ClusterConfig| {
            if meta.eligible
                && !meta.draining
                && !colliding.contains(&meta.name.as_str())
                && cfg.may_hold(&meta.name)
                && !cands.iter().any(|c| c.name == meta.name)
            {
                cands.push(Candidate {
                    name: meta.name.clone(),
                    weight: meta.weight,
                    prefers: meta.prefers.clone(),
                    holds: meta.held.clone(),
                });
            }
        };
        consider(&own, &self.cfg);
        let mut active: Vec<&MemberView> = members.iter().filter(|m| m.state.is_active()).collect();
        active.sort_by_key(|m| std::cmp::Reverse(m.id.epoch));
        for m in active {
            if let Some(meta) = &m.meta
                && meta.name == m.id.name
            {
                consider(meta, &self.cfg);
            }
        }
        let result = assign::assign(&self.group_hash, &cands);
        let sig = |name: &Option<String>| -> Option<(Liveness, u16, u64)> {
            let name = name.as_ref()?;
            members
                .iter()
                .filter(|m| m.id.name == *name)
                .max_by_key(|m| m.id.epoch)
                .map(|m| (m.state, m.incarnation, m.id.epoch))
        };
        let mut restarted = 0;
        for (g, r) in result.iter().enumerate() {
            let new_owner = r.map(|i| cands[i].name.clone());
            let s = &mut self.slots[g];
            if new_owner != s.owner {
                s.prev = s.owner.take();
                s.owner = new_owner;
                s.calm_since = now;
                s.hint = false;
                s.prev_sig = sig(&s.prev);
                restarted += 1;
            } else if !self.breaks.incarnation {
                let now_sig = sig(&s.prev);
                if now_sig != s.prev_sig {
                    s.prev_sig = now_sig;
                    s.calm_since = now;
                    restarted += 1;
                }
            }
        }
        self.stats.quiescence_waits += restarted;
        let active_members = members.iter().filter(|m| m.state.is_active()).count() + 1;
        self.view = members;
        if view_changed {
            self.emit(Action::Event(Event::ViewChanged {
                members: active_members,
            }));
            // Re-announce held groups so neighbours' caches follow a changed view.
            for g in 0..self.slots.len() {
                if let Phase::Held { .. } = self.slots[g].phase {
                    self.emit(Action::Announce {
                        group: g as GroupId,
                    });
                }
            }
        }
    }

    fn request_missing_meta(&mut self, now: Instant) {
        if now < self.next_meta_request {
            return;
        }
        self.next_meta_request = now + META_REQUEST_PERIOD;
        let missing: Vec<SocketAddr> = self
            .view
            .iter()
            .filter(|m| m.state.is_active() && m.meta.as_ref().is_none_or(|x| x.name != m.id.name))
            .map(|m| m.id.addr)
            .collect();
        for a in missing {
            self.send(a, &Body::MetaRequest);
        }
    }

    fn tick_groups(&mut self, now: Instant, only_claiming: bool) {
        // Refresh rounds: when one held group is half a period from its last refresh,
        // every such group is refreshed, so the shell writes them in one batch — and
        // a wake-up that happens anyway (a datagram, the claim round) carries it, so
        // the refresh rarely costs a wake-up of its own. Earlier is never less safe:
        // each refresh is checked against the lease as usual.
        self.refresh_round = !only_claiming && self.soft_refresh_at().is_some_and(|t| now >= t);
        for g in 0..self.slots.len() {
            if only_claiming && !matches!(self.slots[g].phase, Phase::Claiming { .. }) {
                continue;
            }
            self.tick_group(g as GroupId, now);
        }
        self.refresh_round = false;
    }

    /// Half a refresh period after the oldest held group's last refresh.
    fn soft_refresh_at(&self) -> Option<Instant> {
        let half = self.refresh_period() / 2;
        self.slots
            .iter()
            .filter_map(|s| match s.phase {
                Phase::Held { refreshed, .. } if s.inflight.is_none() => Some(refreshed + half),
                _ => None,
            })
            .min()
    }

    fn refresh_period(&self) -> Duration {
        match self.cfg.fence {
            FenceKind::Gate => self.cfg.timing.gate_refresh,
            FenceKind::Address => self.cfg.timing.address_refresh,
        }
    }

    fn tick_group(&mut self, group: GroupId, now: Instant) {
        let g = usize::from(group);
        let mut fx = std::mem::take(&mut self.fx);
        let ctx = self.ctx(group, now);
        let phase = ownership::tick(self.slots[g].phase, &ctx, now, &mut fx);
        self.set_phase(group, phase, now);
        self.apply(group, &mut fx, now);
        self.fx = fx;
    }

    fn next_tick_of(&self, s: &Slot, now: Instant) -> Option<Instant> {
        let q = if self.breaks.quiescence {
            Duration::ZERO
        } else {
            self.cfg.timing.quiescence
        };
        match s.phase {
            Phase::Free => None,
            Phase::Waiting { .. } => Some(s.calm_since + q),
            Phase::Claiming { since } => {
                let w = self.cfg.contention_window();
                Some(if now < since + w {
                    since + w
                } else {
                    now + self.cfg.timing.claim_period
                })
            }
            Phase::Probing { .. } | Phase::Binding { .. } => None,
            Phase::Held { .. } if s.inflight.is_some() => None,
            Phase::Held { refreshed, .. } => {
                let period = self.refresh_period();
                // Also wake when a moved group's calm period ends.
                let calm_end = (s.owner.as_deref() != Some(self.node.name.as_str()))
                    .then_some(s.calm_since + q);
                let r = refreshed + period;
                Some(calm_end.map_or(r, |c| c.min(r)))
            }
            Phase::Fencing { .. } | Phase::Releasing { .. } => s.inflight.is_none().then(|| {
                s.retry_at
                    .filter(|&t| t > now)
                    .unwrap_or(now + KERNEL_RETRY)
            }),
            Phase::Backoff { until } => Some(until),
        }
    }

    /// Re-evaluates everything after any input.
    fn drive(&mut self, now: Instant) {
        if !matches!(self.life, Life::Running | Life::Leaving) {
            return;
        }
        self.update_eligibility(now);
        let (view_changed, meta_changed) = self.membership.take_changed();
        if view_changed || meta_changed {
            self.view = self.membership.members();
            self.recompute_assignment(now, view_changed);
            self.dirty_all = true;
        }
        // Another process under our name, as a member at another address.
        let me = self.node.name.as_str();
        if let Some(other) = self
            .view
            .iter()
            .find(|m| m.state.is_active() && m.id.name == me)
            .map(|m| m.id.addr)
        {
            self.note_collision(&format!("a member at {other}"), now);
        } else if self.collision_until.is_some_and(|t| now >= t) {
            self.collision_until = None;
            self.dirty_all = true;
            self.refresh_meta();
            self.emit(Action::Event(Event::Warning(format!(
                "no other agent named {:?} seen for {} s: holding and voting again",
                self.node.name,
                COLLISION_HOLD.as_secs()
            ))));
        }
        // Groups change only with time (their own deadlines), the view, commands,
        // answers and kernel results; a SWIM ping that changes nothing costs nothing.
        let due = self.next_group_tick.is_some_and(|t| now >= t);
        let soft = self.next_soft_refresh.is_some_and(|t| now >= t);
        let mut ticked = false;
        if self.dirty_all || due || soft {
            self.tick_groups(now, false);
            ticked = true;
        } else if !self.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for &g in &dirty {
                self.tick_group(g, now);
            }
            dirty.clear();
            self.dirty = dirty;
            ticked = true;
        }
        self.dirty_all = false;
        self.dirty.clear();
        let flowing = self.claims_flowing();
        let urgent = self.claimer.as_ref().is_some_and(|c| c.urgent());
        if flowing && (urgent || now >= self.next_claim_at) {
            self.send_claim(now);
            // Self-votes may have completed a quorum.
            self.tick_groups(now, true);
            ticked = true;
        }
        for (to, data) in self.membership.take_sends() {
            self.send_swim(to, data);
        }
        self.send_hints();
        self.request_missing_meta(now);
        if now >= self.next_gc {
            self.next_gc = now + GC_PERIOD;
            if let Some(v) = &mut self.voter {
                v.gc(now);
            }
        }
        if self.life == Life::Leaving
            && self.slots.iter().all(|s| {
                matches!(
                    s.phase,
                    Phase::Free | Phase::Backoff { .. } | Phase::Waiting { .. }
                ) && s.inflight.is_none()
            })
        {
            self.finish_leave(now);
            return;
        }
        if ticked || due {
            self.next_group_tick = self
                .slots
                .iter()
                .filter_map(|s| self.next_tick_of(s, now))
                .min();
            self.next_soft_refresh = self.soft_refresh_at();
        }
    }

    fn send_hints(&mut self) {
        for g in std::mem::take(&mut self.pending_hints) {
            let Some(owner) = self.slots[usize::from(g)]
                .owner
                .clone()
                .filter(|o| *o != self.node.name)
            else {
                continue;
            };
            let addrs: Vec<SocketAddr> = self
                .view
                .iter()
                .filter(|m| m.id.name == owner && m.state.is_active())
                .map(|m| m.id.addr)
                .collect();
            for a in addrs {
                self.send(
                    a,
                    &Body::Released {
                        group: g,
                        from: self.node.name.clone(),
                    },
                );
            }
        }
    }

    fn finish_leave(&mut self, now: Instant) {
        if !self.leave_claim_sent {
            self.leave_claim_sent = true;
            self.send_claim(now);
        }
        self.send_hints();
        if let (Some(c), Some(_)) = (&self.claimer, &self.peer) {
            let body = Body::Leaving {
                name: self.node.name.clone(),
                nonce: c.nonce(),
            };
            for (_, addr) in self.voter_addrs() {
                self.send(addr, &body);
            }
        }
        self.membership.leave(now);
        for (to, data) in self.membership.take_sends() {
            self.send_swim(to, data);
        }
        self.life = Life::Left;
        self.emit(Action::Event(Event::Left));
    }
}

/// Draws a lease nonce from an RNG (helper for shells).
pub fn draw_nonce(rng: &mut impl Rng) -> u64 {
    rng.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::{Profile, Timing, Vip, VipGroup};

    fn one_node() -> (Engine, Instant) {
        let cluster = ClusterConfig::new(
            QuorumMode::Majority,
            FenceKind::Gate,
            vec!["a".into()],
            vec![],
            vec![VipGroup::new(vec![Vip::host(
                "10.0.0.100".parse().unwrap(),
            )])],
            Timing::profile(Profile::Default),
        );
        let cfg = EngineConfig {
            cluster,
            node: NodeConfig::new("a"),
            bind: "10.0.0.1:7946".parse().unwrap(),
            seeds: vec!["10.0.0.1:7946".parse().unwrap()],
            cluster_size_hint: 1,
            breaks: Breaks::default(),
        };
        let t0 = Instant::from_nanos(1_000_000_000);
        (
            Engine::new(
                cfg,
                EngineInit {
                    nonce: 7,
                    rng_seed: 1,
                    epoch: 1,
                },
                t0,
            ),
            t0,
        )
    }

    fn drive(e: &mut Engine, now: Instant, until: Instant) -> Vec<Action> {
        e.drive_alone(now, until)
    }

    #[test]
    fn flush_comes_first_and_nothing_is_sent_before_it_is_confirmed() {
        let (mut e, t0) = one_node();
        assert_eq!(
            e.poll_action(),
            Some(Action::Kernel {
                id: 1,
                op: KernelOp::Flush
            })
        );
        assert_eq!(e.poll_action(), None);
        e.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(
            e.poll_action(),
            None,
            "no action while the flush is unconfirmed"
        );
        assert_eq!(e.poll_timeout(), None);
    }

    /// Runs the engine's own timers until it emits a gate refresh; completes the
    /// refresh and returns when it was emitted.
    fn next_refresh(e: &mut Engine) -> Instant {
        for _ in 0..DRIVE_ALONE_STEPS {
            let t = e.poll_timeout().expect("a held group keeps a timer");
            e.handle_timeout(t);
            if refreshes_in(e, t) > 0 {
                return t;
            }
        }
        panic!("no refresh within {DRIVE_ALONE_STEPS} timer steps");
    }

    fn refreshes_in(e: &mut Engine, now: Instant) -> usize {
        let mut n = 0;
        while let Some(a) = e.poll_action() {
            if let Action::Kernel { id, op } = a {
                n += usize::from(matches!(op, KernelOp::Refresh { .. }));
                e.handle_kernel(id, KernelOutcome::Ok, now);
            }
        }
        n
    }

    #[test]
    fn a_wake_up_past_half_the_refresh_period_carries_the_refresh() {
        let (mut e, t0) = one_node();
        drive(&mut e, t0, t0 + Duration::from_secs(3));
        assert!(matches!(e.phase(0), Phase::Held { .. }), "{:?}", e.phase(0));
        let f = e.config().timing.gate_refresh;
        let r = next_refresh(&mut e);
        // Before half the period: a wake-up for another reason refreshes nothing.
        e.handle_timeout(r + f * 3 / 10);
        assert_eq!(refreshes_in(&mut e, r + f * 3 / 10), 0);
        // Past half of it, the same wake-up carries the refresh, although the
        // engine's own timer would only have fired at r + F.
        let w = r + f * 6 / 10;
        assert!(e.poll_timeout().is_some_and(|t| t > w));
        e.handle_timeout(w);
        assert_eq!(refreshes_in(&mut e, w), 1);
        // And the next one is counted from there.
        e.handle_timeout(w + f * 3 / 10);
        assert_eq!(refreshes_in(&mut e, w + f * 3 / 10), 0);
    }

    #[test]
    fn a_lone_voter_binds_after_its_start_up_wait_and_unbinds_on_a_clock_jump() {
        let (mut e, t0) = one_node();
        let seen = drive(&mut e, t0, t0 + Duration::from_secs(3));
        let bind_at = seen.iter().position(|a| {
            matches!(
                a,
                Action::Kernel {
                    op: KernelOp::Bind { .. },
                    ..
                }
            )
        });
        assert!(bind_at.is_some(), "never bound: {seen:?}");
        assert!(matches!(e.phase(0), Phase::Held { .. }), "{:?}", e.phase(0));
        // The bind's write deadline respects the start-up wait: the lease came from a
        // self-grant, given no earlier than W after start.
        if let Some(Action::Kernel {
            op: KernelOp::Bind { deadline, .. },
            ..
        }) = bind_at.map(|i| &seen[i])
        {
            assert!(*deadline > t0 + e.config().restart_wait());
        }
        let now = t0 + Duration::from_secs(4);
        e.handle_clock_jump(now);
        let mut unbound = false;
        while let Some(a) = e.poll_action() {
            if matches!(
                a,
                Action::Kernel {
                    op: KernelOp::Unbind { .. },
                    ..
                }
            ) {
                unbound = true;
            }
        }
        assert!(unbound, "a clock jump must unbind first");
        assert!(e.stats().fences.contains_key("clock_jump"));
    }

    #[test]
    fn malformed_and_foreign_datagrams_are_counted_not_fatal() {
        let (mut e, t0) = one_node();
        drive(&mut e, t0, t0 + Duration::from_millis(10));
        let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        e.handle_datagram(from, &[1, 2, 3], t0);
        e.handle_datagram(
            from,
            &wire::encode(e.cluster_id() ^ 1, &Body::MetaRequest).unwrap(),
            t0,
        );
        let mut bad = wire::encode(e.cluster_id(), &Body::MetaRequest).unwrap();
        bad.push(0xff);
        e.handle_datagram(from, &bad, t0);
        let d = &e.stats().drops;
        assert_eq!(
            (
                d.get("truncated"),
                d.get("cluster_mismatch"),
                d.get("malformed")
            ),
            (Some(&1), Some(&1), Some(&1))
        );
    }

    #[test]
    fn graceful_leave_releases_then_leaves() {
        let (mut e, t0) = one_node();
        drive(&mut e, t0, t0 + Duration::from_secs(3));
        assert!(matches!(e.phase(0), Phase::Held { .. }));
        let now = t0 + Duration::from_secs(3);
        e.leave(now);
        let seen = drive(&mut e, now, now + Duration::from_secs(1));
        let unbind = seen.iter().position(|a| {
            matches!(
                a,
                Action::Kernel {
                    op: KernelOp::Unbind { .. },
                    ..
                }
            )
        });
        let left = seen.iter().position(|a| *a == Action::Event(Event::Left));
        assert!(
            unbind.is_some() && left.is_some() && unbind < left,
            "{seen:?}"
        );
        assert!(e.is_finished());
    }

    /// Issue 10 case 4: an authenticated answer to a live claim naming a group out
    /// of range (or a group twice) is dropped and counted, never indexed.
    #[test]
    fn answers_naming_unknown_or_repeated_groups_are_dropped_not_fatal() {
        let (mut e, t0) = one_node();
        let now = t0 + Duration::from_secs(3);
        drive(&mut e, t0, now);
        assert!(matches!(e.phase(0), Phase::Held { .. }));
        let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        type Body2 = (Vec<GroupId>, Vec<(GroupId, String)>);
        let bad: Vec<Body2> = vec![
            (vec![5], vec![]),
            (vec![], vec![(4095, "b".into())]),
            (vec![0], vec![(0, "b".into())]),
            (vec![], vec![(0, "b".into()), (0, "c".into())]),
        ];
        for (granted, denied) in bad {
            // Every seq the claimer may have sent: the live one is among them.
            for seq in 1..200 {
                let a = Answer {
                    voter: 0,
                    nonce: 7,
                    seq,
                    granted: granted.clone(),
                    denied: denied.clone(),
                };
                let bytes = wire::encode(e.cluster_id(), &Body::Answer(a)).unwrap();
                e.handle_datagram(from, &bytes, now);
            }
        }
        let d = &e.stats().drops;
        assert!(d.get("unknown_group").is_some_and(|&n| n > 0), "{d:?}");
        assert!(d.get("duplicate_group").is_some_and(|&n| n > 0), "{d:?}");
        // An answer from a voter index beyond the voter list is dropped too.
        let a = Answer {
            voter: 3,
            nonce: 7,
            seq: 1,
            granted: vec![0],
            denied: vec![],
        };
        e.handle_datagram(
            from,
            &wire::encode(e.cluster_id(), &Body::Answer(a)).unwrap(),
            now,
        );
        assert_eq!(e.stats().drops.get("bad_voter_index"), Some(&1));
        // The engine goes on holding its group.
        drive(&mut e, now, now + Duration::from_secs(1));
        assert!(matches!(e.phase(0), Phase::Held { .. }));
    }

    /// Issue 10 case 3: a claim recorded from a process that is gone, replayed to a
    /// voter that restarted since (its replay window was in memory), is promised
    /// nothing: no active member gossips that lease identity.
    #[test]
    fn a_claim_from_a_lease_identity_nobody_gossips_is_promised_nothing() {
        let (mut e, t0) = one_node();
        let now = t0 + Duration::from_secs(3);
        drive(&mut e, t0, now);
        let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
        let replayed = Claim {
            name: "ghost".into(),
            nonce: 0xdead,
            seq: 41,
            groups: vec![0],
        };
        let bytes = wire::encode(e.cluster_id(), &Body::Claim(replayed)).unwrap();
        e.handle_datagram(from, &bytes, now);
        assert_eq!(e.stats().claims_ignored.get("stale_identity"), Some(&1));
        let mut answered = Vec::new();
        while let Some(a) = e.poll_action() {
            if let Action::Send { to, payload } = a
                && to == from
                && let Ok(Body::Answer(ans)) = wire::decode(e.cluster_id(), &payload)
            {
                answered.push(ans);
            }
        }
        assert_eq!(answered.len(), 1, "one empty answer");
        assert!(answered[0].granted.is_empty() && answered[0].denied.is_empty());
        // Its own group stays its own: the voter promised the ghost nothing.
        drive(&mut e, now, now + Duration::from_secs(1));
        assert!(matches!(e.phase(0), Phase::Held { .. }));
    }
}
