//! The engine: membership, assignment, lease and ownership glued into one
//! deterministic state machine. It decides nothing itself: each rule of DESIGN §2 lives
//! in its own module, and the engine dispatches inputs to them and collects their
//! effects.
//!
//! | rule | module |
//! |---|---|
//! | §2.1 rendezvous assignment | [`assign`](crate::core::assign), candidates in [`view`](crate::core::view) |
//! | §2.2 quiescence window | [`quiescence`](crate::core::quiescence) |
//! | §2.3 rules 3–7 lease | [`lease`](crate::core::lease) ([`Voter`], [`Claimer`]) |
//! | §2.3 rule 6 write deadlines | [`lease::deadline`](crate::core::lease::deadline) |
//! | §2.3 rule 8 contention | [`lease::contention`](crate::core::lease::contention) |
//! | §2.3 rule 1 one process per name | [`view`](crate::core::view) |
//! | two-node presence (quorum off) | [`presence`](crate::core::presence) |
//! | per-group ownership phases | [`ownership`](crate::core::ownership) |
//! | SWIM membership, metadata anti-entropy | [`membership`](crate::core::membership), [`anti_entropy`](crate::core::anti_entropy) |
//!
//! Inside the engine: [`groups`](self) turns the ownership module's effects into
//! actions, `claims` is the lease glue (claims out, answers in, votes), `life` is
//! start-up, eligibility, name collisions and leave, `kernel` the per-group kernel
//! queues, `timers` the deadline table and `outbox` the action queue and counters.
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
//! [`Engine::set_prefers`], [`Engine::handle_clock_jump`]. Getters: [`Engine::status`],
//! [`Engine::stats`].
//!
//! The engine never sends a datagram before the start-up flush is confirmed (rule 3),
//! emits at most one kernel operation per group at a time (rule 6), and computes each
//! claim's send time from the `now` of the call that emits it (rule 5).

mod claims;
mod groups;
#[cfg(test)]
mod harness;
mod kernel;
mod life;
mod outbox;
mod pool;
mod rules;
#[cfg(test)]
mod stories;
mod timers;
mod types;
mod voters;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use self::groups::Groups;
use self::kernel::KernelOps;
pub use self::kernel::MAX_KERNEL_RETRY;
use self::outbox::Outbox;
use self::rules::Rules;
use self::timers::{Timer, Timers};
pub use self::types::{
    Action, Breaks, EngineConfig, EngineInit, Event, GroupStatus, KernelOp, Life, Stats, Status,
};
use super::anti_entropy::AntiEntropy;
pub use super::anti_entropy::META_REQUEST_PERIOD;
use super::config::{ClusterConfig, GroupId, NodeConfig, QuorumMode, VipGroup};
use super::hash::{StableHasher, hash_str};
use super::heartbeat::Heartbeats;
use super::lease::riding::Riding;
use super::lease::{Claimer, Voter, VoterSets};
use super::membership::{Membership, NodeId, TimerSlack};
use super::neighbours::{Neighbour, NeighbourTable};
use super::ownership::{KernelOutcome, OpKind, Phase};
use super::presence::Presence;
use super::table::{TableDigest, Tables};
use super::time::{Hush, Instant};
use super::view::View;
use super::wire::{self, Body, ConfigDigests, NodeMeta, WireError};

/// Longest contention backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often expired promises are swept.
const GC_PERIOD: Duration = Duration::from_secs(1);
/// A name collision (another process with this node's name) is assumed to last this
/// long after its last sign.
pub const COLLISION_HOLD: Duration = Duration::from_secs(5);
/// Datagrams of another cluster id or wire version are said in the log at most this
/// often (they are counted in the drops every time).
pub const STRANGER_WARN_PERIOD: Duration = Duration::from_secs(60);
/// Most rounds of [`Engine::drive_alone`].
pub const DRIVE_ALONE_STEPS: usize = 100_000;
/// How long a shared neighbour sample counts ([`Engine::neighbours`]).
pub const NEIGHBOUR_TTL: Duration = Duration::from_secs(120);
/// Most actions queued before the shell drains them (a bound, not a target).
pub const MAX_QUEUED_ACTIONS: usize = 65_536;

/// This process's own state: life stage and what makes it eligible.
#[derive(Clone, Debug)]
struct Local {
    life: Life,
    running_since: Instant,
    /// Fail-back done: this process has made itself eligible.
    eligible: bool,
    healthy: bool,
    draining: bool,
    leave_claim_sent: bool,
    /// Groups this node cannot hold now (an interface they need is down here;
    /// sorted slots of the current table).
    unable: Vec<GroupId>,
}

/// Both halves of the lease on this node, and when each voter last answered.
#[derive(Debug)]
struct LeaseSide {
    voter: Option<Voter>,
    claimer: Option<Claimer>,
    /// Voter name → last time an answer came from it.
    heard: BTreeMap<String, Instant>,
    /// Voter sets other nodes run, by digest (answers name them).
    sets: VoterSets,
    /// When this node started running its current voter set, and the set before
    /// with its own start.
    voters_since: Instant,
    voters_prev: Option<(u64, Instant)>,
    /// Each member's gossiped voter-set digest, since when it has been seen, and
    /// the digest seen before it with its start.
    seen_sets: BTreeMap<String, SeenSet>,
    /// The digest of this node's group table (`cfg.groups`).
    table: TableDigest,
    /// Other nodes' group tables, by digest: what their claims' indices mean.
    tables: Tables,
    /// Answers to renewals held to ride on this node's next claim (§4.13).
    riding: Riding,
}

/// A member's voter set as gossiped: (digest, since, previous digest and since).
type SeenSet = (u64, Instant, Option<(u64, Instant)>);

/// The deterministic core of one node.
pub struct Engine {
    cfg: ClusterConfig,
    node: NodeConfig,
    rules: Rules,
    rng: StdRng,
    local: Local,
    membership: Membership,
    /// The membership view, refreshed whenever it changes.
    view: View,
    lease: LeaseSide,
    groups: Groups,
    kernel: KernelOps,
    timers: Timers,
    /// Shared neighbour caches (`--notify-neighbours`).
    neighbours: NeighbourTable,
    presence: Presence,
    /// The holders whose claims this voter hears, watched for silence (§4.16).
    heartbeats: Heartbeats,
    anti_entropy: AntiEntropy,
    out: Outbox,
    /// Inside [`Engine::wakeup`]; the latest `now` of a round datagram whose
    /// re-evaluation waits for the wake-up's end.
    in_wakeup: bool,
    deferred: Option<Instant>,
    /// Datagrams of another cluster id or wire version, said in the log at most once
    /// per [`STRANGER_WARN_PERIOD`] (`Engine::note_stranger`).
    strangers: Hush,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("name", &self.node.name)
            .field("life", &self.local.life)
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
            keyring,
        } = config;
        let rules = Rules::new(&cluster, &node.name, breaks);
        let fingerprint = {
            let mut h = StableHasher::new();
            h.write_u64(rules.cluster_id);
            h.write_u64(cluster.timing.quiescence.as_nanos() as u64);
            h.write_u64(cluster.timing.failback_delay.as_nanos() as u64);
            h.write_u64(cluster.timing.probe_period.as_nanos() as u64);
            h.write_u64(cluster.timing.gossip_period.as_nanos() as u64);
            h.write_u64(cluster.timing.suspect_to_down.as_nanos() as u64);
            h.finish()
        };
        let nonce = if breaks.nonce {
            hash_str(&node.name)
        } else {
            init.nonce
        };
        let table = super::table::digest(&cluster.groups);
        let meta = NodeMeta {
            name: node.name.clone(),
            generation: init.epoch,
            version: 0,
            eligible: false,
            draining: false,
            weight: node.weight,
            fingerprint,
            prefers: if cluster.is_witness(&node.name) {
                Vec::new()
            } else {
                node.prefers.clone()
            },
            held: Vec::new(),
            recent: Vec::new(),
            lease_nonce: nonce,
            config: ConfigDigests {
                pool: cluster.pool_digest(),
                voters: cluster.voters_digest(),
                keys: keyring,
            },
            table,
            unable: Vec::new(),
        };
        let id = NodeId {
            addr: bind,
            name: node.name.clone(),
            epoch: init.epoch,
        };
        let mut membership = Membership::new(
            id,
            &cluster.timing,
            cluster_size_hint,
            init.rng_seed ^ 0x5157_494d,
            meta,
            seeds,
            now,
        );
        // SWIM's timers share the round's wake-ups (§4.14): up to a round early, or
        // the direct probe's timeout up to half a round late.
        membership.set_slack(TimerSlack {
            early: rules.round.period(),
            late: rules.round.period() / 2,
        });
        let claimer = cluster.may_hold(&node.name).then(|| {
            let mut c = Claimer::new(
                &node.name,
                nonce,
                &cluster.voter_set(),
                cluster.lease_validity(),
            );
            c.set_table(table);
            c
        });
        let peer = (cluster.quorum == QuorumMode::Off)
            .then(|| cluster.voters.iter().find(|v| **v != node.name).cloned())
            .flatten();
        let presence = Presence::new(
            peer,
            rules.contention_window,
            cluster.absent_after(),
            rules.absent_after,
            now,
        );
        let mut timers = Timers::default();
        timers.set(Timer::Claim, now);
        timers.set(Timer::MetaRequest, now);
        timers.set(Timer::Gc, now + GC_PERIOD);
        let mut e = Engine {
            rng: StdRng::seed_from_u64(init.rng_seed),
            neighbours: NeighbourTable::default(),
            local: Local {
                life: Life::Flushing,
                running_since: now,
                eligible: false,
                healthy: true,
                draining: false,
                leave_claim_sent: false,
                unable: Vec::new(),
            },
            membership,
            view: View::default(),
            lease: LeaseSide {
                voter: None,
                claimer,
                heard: BTreeMap::new(),
                sets: VoterSets::default(),
                voters_since: now,
                voters_prev: None,
                seen_sets: BTreeMap::new(),
                table,
                tables: Tables::default(),
                riding: {
                    let r = Riding::new(rules.answer_ride, cluster.timing.claim_period);
                    if rules.ride_late { r.broken() } else { r }
                },
            },
            groups: Groups::new(cluster.groups.len(), now),
            kernel: KernelOps::default(),
            timers,
            presence,
            heartbeats: Heartbeats::new(cluster.timing.heartbeat_window()),
            anti_entropy: AntiEntropy::default(),
            out: Outbox::new(rules.cluster_id),
            in_wakeup: false,
            strangers: Hush::new(STRANGER_WARN_PERIOD),
            deferred: None,
            rules,
            cfg: cluster,
            node,
        };
        e.issue_flush(now);
        e
    }

    // ---- getters -------------------------------------------------------------------

    /// The cluster id carried in every datagram.
    pub fn cluster_id(&self) -> u64 {
        self.rules.cluster_id
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.out.stats
    }

    /// Life stage.
    pub fn life(&self) -> Life {
        self.local.life
    }

    /// Whether the engine has released everything and left.
    pub fn is_finished(&self) -> bool {
        self.local.life == Life::Left
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
        self.groups.bound()
    }

    /// The phase of a group.
    pub fn phase(&self, g: GroupId) -> Phase {
        self.groups.slot(g).phase
    }

    /// The designated owner of a group in this node's view.
    pub fn owner(&self, g: GroupId) -> Option<&str> {
        self.groups.slot(g).calm.owner.as_deref()
    }

    /// A snapshot for status output.
    pub fn status(&self, now: Instant) -> Status {
        let recent = self.cfg.lease_validity();
        Status {
            name: self.node.name.clone(),
            life: self.local.life,
            meta: self.membership.own_meta().clone(),
            members: self.view.members().to_vec(),
            groups: self.groups.status(),
            voters_heard: self.voters_heard(|t| t + recent > now),
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

    /// Whether another process with this node's name is taken to be running.
    pub fn name_collision(&self, now: Instant) -> bool {
        self.timers
            .get(Timer::CollisionEnd)
            .is_some_and(|t| now < t)
    }

    // ---- outputs -------------------------------------------------------------------

    /// Whether effects are waiting to be polled.
    pub fn has_actions(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next effect to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.local.life {
            Life::Left => None,
            Life::Flushing => self.timers.get(Timer::FlushRetry),
            Life::Running | Life::Leaving => {
                let flowing = self.claims_flowing();
                let eligible = self.local.eligible;
                let ours = self.timers.earliest(|t| match t {
                    Timer::FlushRetry => false,
                    Timer::Claim => flowing,
                    Timer::Eligible => !eligible,
                    _ => true,
                });
                let ours = [self.lease.riding.deadline(), self.heartbeats.deadline()]
                    .into_iter()
                    .flatten()
                    .fold(ours, |a, b| Some(a.map_or(b, |a| a.min(b))));
                match (self.membership.poll_timeout(), ours) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Refreshes every held group now, before work that may keep the shell from
    /// its loop for a while (a reload reads files and talks netlink): the whole E is
    /// then left for it instead of E − F (§4.14). Each refresh is checked against
    /// its lease as always; a group with an operation in flight is left alone.
    pub fn refresh_all(&mut self, now: Instant) {
        if !matches!(self.local.life, Life::Running | Life::Leaving) {
            return;
        }
        self.note_input(now);
        self.refresh_held(Duration::ZERO, now);
        self.schedule_groups(now);
    }

    // ---- inputs --------------------------------------------------------------------

    /// A datagram (core format) from `from`, with `now` read after it arrived.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        self.note_input(now);
        self.out.stats.datagrams_in += 1;
        self.out.stats.bytes_in += bytes.len() as u64;
        if matches!(self.local.life, Life::Flushing | Life::Left) {
            self.out.drop("not_running");
            return;
        }
        let body = match wire::decode(self.rules.cluster_id, bytes) {
            Ok(b) => b,
            Err(e) => {
                self.out.drop(e.label());
                if matches!(e, WireError::ClusterMismatch | WireError::Version) {
                    self.note_stranger(from, bytes, now);
                }
                return;
            }
        };
        match body {
            Body::Swim(data, version) => self.on_swim(from, &data, version, now),
            // The round's own traffic: inside a wake-up, re-evaluated once at its
            // end (§4.14, "One pass per wake-up").
            Body::Claim(c) => {
                self.on_claim(from, c, now);
                return self.drive_or_defer(now);
            }
            Body::ClaimWith(c, a) => {
                self.on_answer(from, a, now);
                self.on_claim(from, c, now);
                return self.drive_or_defer(now);
            }
            Body::Answer(a) => {
                self.on_answer(from, a, now);
                return self.drive_or_defer(now);
            }
            Body::Released {
                group,
                from: who,
                table,
            } => match self.own_slot(group, &table, now) {
                Some(g) => self.on_release_hint(g, &who, now),
                None => self.out.drop("hint_unknown_group"),
            },
            Body::Leaving { name, nonce } => {
                if self.presence.on_leaving(&name, nonce) {
                    self.groups.dirty_all = true;
                }
            }
            Body::MetaRequest => {
                let meta = self.membership.own_meta().clone();
                self.out.send(from, &Body::Meta(meta));
            }
            Body::Meta(m) => {
                self.membership.offer_meta(m);
            }
            Body::Superseded { generation } => self.on_superseded(generation, now),
            Body::TableRequest(d) => self.on_table_request(from, d, now),
            Body::Table(part) => self.on_table_part(part, now),
            Body::VoterSetRequest(d) => self.on_voter_set_request(from, d, now),
            Body::VoterSet(set) => {
                self.lease.sets.insert(set, now);
            }
            Body::Neighbours(list) => {
                if self.view.active().any(|m| m.id.addr == from) {
                    self.neighbours.note(from, &list, now);
                } else {
                    self.out.drop("neighbours_from_stranger");
                }
                // Nothing else changes: no drive needed.
                return;
            }
        }
        self.drive(now);
    }

    /// Hands over the inputs of one wake-up of the shell (`f` calls the `handle_*`
    /// methods, each input with its own `now`, in the order they arrived). Claims,
    /// answers and kernel results take effect at once, but the engine re-evaluates
    /// its state after the last of them instead of after each (§4.14, "One pass per
    /// wake-up"):
    /// the same as if they had all arrived at the last one's `now`. Any other input
    /// is re-evaluated as it comes, which covers those before it.
    pub fn wakeup<R>(&mut self, f: impl FnOnce(&mut Engine) -> R) -> R {
        let outer = std::mem::replace(&mut self.in_wakeup, true);
        let r = f(self);
        self.in_wakeup = outer;
        if !outer && let Some(t) = self.deferred.take() {
            self.drive(t);
        }
        r
    }

    /// After a claim, an answer or a kernel result: re-evaluates now, or at the end
    /// of the wake-up.
    fn drive_or_defer(&mut self, now: Instant) {
        if self.in_wakeup {
            self.deferred = Some(self.deferred.map_or(now, |t| t.max(now)));
        } else {
            self.drive(now);
        }
    }

    /// Timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_input(now);
        match self.local.life {
            Life::Flushing => {
                if self.timers.due(Timer::FlushRetry, now) {
                    self.timers.set(Timer::FlushRetry, None);
                    self.issue_flush(now);
                }
            }
            Life::Left => {}
            Life::Running | Life::Leaving => {
                self.membership.handle_timeout(now);
                self.drive(now);
            }
        }
    }

    /// Completion of kernel operation `id`.
    pub fn handle_kernel(&mut self, id: u64, outcome: KernelOutcome, now: Instant) {
        self.note_input(now);
        let Some((op, issued)) = self.kernel.complete(id) else {
            return;
        };
        let (group, kind) = match op {
            KernelOp::Flush => return self.flush_done(outcome, now),
            KernelOp::Bind { group, .. } => (group, OpKind::Bind),
            KernelOp::Refresh {
                group,
                renew_address,
                ..
            } => (
                group,
                OpKind::Refresh {
                    renewed_address: renew_address,
                },
            ),
            KernelOp::Unbind { group } => (group, OpKind::Unbind),
        };
        let failed = matches!(outcome, KernelOutcome::Failed(_));
        self.groups.slot_mut(group).queue.done(id, failed, now);
        if failed {
            self.out.stats.kernel_failures += 1;
        }
        if matches!(kind, OpKind::Refresh { .. }) && outcome != KernelOutcome::Ok {
            self.out.stats.refresh_failures += 1;
        }
        self.step(group, now, |phase, ctx, fx| {
            super::ownership::kernel_done(phase, kind, &outcome, ctx, issued, now, fx)
        });
        self.groups.dirty.push(group);
        // A round of kernel operations completes together in the agent: inside a
        // wake-up, one re-evaluation after the last.
        self.drive_or_defer(now);
    }

    /// The probe for `group` finished; `conflict` if someone answered.
    pub fn handle_probe(&mut self, group: GroupId, conflict: bool, now: Instant) {
        self.note_input(now);
        if usize::from(group) >= self.groups.len() {
            return;
        }
        self.step(group, now, |phase, ctx, fx| {
            super::ownership::probe_result(phase, conflict, ctx, now, fx)
        });
        self.groups.dirty.push(group);
        self.drive(now);
    }

    /// Health changed (checks with rise/fall applied by the shell).
    pub fn set_healthy(&mut self, healthy: bool, now: Instant) {
        self.local.healthy = healthy;
        self.groups.dirty_all = true;
        self.refresh_meta();
        self.drive(now);
    }

    /// The groups this node cannot hold now, because an interface one of their
    /// addresses lives on is missing or down here (the shell watches the links;
    /// [`crate::core::links`] decides). They are gossiped, the assignment gives
    /// them to others, and this node releases any of them it holds at once. A node
    /// that can hold none of its groups is not eligible.
    pub fn set_unable(&mut self, unable: Vec<GroupId>, now: Instant) {
        let unable = self.slots(unable);
        if unable == self.local.unable {
            return;
        }
        self.local.unable = unable;
        self.groups.dirty_all = true;
        self.refresh_meta();
        self.drive(now);
    }

    /// Slots of this node's table, sorted, each once (others dropped).
    fn slots(&self, mut gs: Vec<GroupId>) -> Vec<GroupId> {
        let n = self.cfg.groups.len();
        gs.retain(|&g| usize::from(g) < n);
        gs.sort_unstable();
        gs.dedup();
        gs
    }

    /// The groups [`Engine::set_unable`] last set.
    pub fn unable(&self) -> &[GroupId] {
        &self.local.unable
    }

    /// This node's sampled neighbour caches ([`crate::core::neighbours`]): kept,
    /// and shared with every active member (one datagram each).
    pub fn share_neighbours(&mut self, sample: &[Neighbour], now: Instant) {
        let share = self.neighbours.set_own(sample, now);
        let body = Body::Neighbours(share);
        let to: Vec<_> = self.view.active().map(|m| m.id.addr).collect();
        for a in to {
            self.out.send(a, &body);
        }
        self.neighbours.expire(now, NEIGHBOUR_TTL);
    }

    /// Every neighbour known (this node's sample and the members' shares, at most
    /// [`NEIGHBOUR_TTL`] old).
    pub fn neighbours(&self, now: Instant) -> Vec<Neighbour> {
        self.neighbours.known(now, NEIGHBOUR_TTL)
    }

    /// Operator drain on/off.
    pub fn set_draining(&mut self, draining: bool, now: Instant) {
        self.local.draining = draining;
        self.groups.dirty_all = true;
        self.refresh_meta();
        self.drive(now);
    }

    /// Changes the groups this node prefers (gossiped to everyone).
    pub fn set_prefers(&mut self, prefers: Vec<GroupId>, now: Instant) {
        let prefers = self.slots(prefers);
        if !self.cfg.is_witness(&self.node.name) {
            self.node.prefers = prefers.clone();
            self.groups.dirty_all = true;
            self.membership.update_meta(|m| m.prefers = prefers);
        }
        self.drive(now);
    }

    /// The groups a member's metadata says it holds, resolved in that member's group
    /// table (taken to be this node's while it is not known yet).
    pub fn held_groups<'a>(&'a self, meta: &'a NodeMeta) -> Vec<&'a VipGroup> {
        let t: &[VipGroup] = if meta.table == self.lease.table {
            &self.cfg.groups
        } else {
            self.lease
                .tables
                .peek(&meta.table)
                .unwrap_or(&self.cfg.groups)
        };
        meta.held
            .iter()
            .filter_map(|&g| t.get(usize::from(g)))
            .filter(|g| !g.vips.is_empty())
            .collect()
    }

    /// A reload replaced the shell's keyring: its digest is gossiped (drift shows
    /// while a rotation is half-way).
    pub fn set_keyring(&mut self, keyring: u64) {
        self.membership.update_meta(|m| m.config.keys = keyring);
    }

    /// A reload changed this node's own settings: its weight, whether the operator
    /// lets it hold VIPs, and its preferences. Each is gossiped; the assignment is
    /// recomputed. A node made ineligible releases by the usual path.
    pub fn set_node(&mut self, weight: u16, eligible: bool, prefers: Vec<GroupId>, now: Instant) {
        let weight = weight.clamp(1, 1000);
        if self.node.weight != weight {
            self.node.weight = weight;
            self.membership.update_meta(|m| m.weight = weight);
            self.groups.dirty_all = true;
        }
        if self.node.eligible != eligible {
            self.node.eligible = eligible;
            self.groups.dirty_all = true;
            self.refresh_meta();
        }
        // Drives.
        self.set_prefers(prefers, now);
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

    // ---- dispatch ------------------------------------------------------------------

    /// SWIM data, with the sender's metadata version.
    fn on_swim(&mut self, from: SocketAddr, data: &[u8], version: (u64, u64), now: Instant) {
        if self.membership.handle_data(data, now).is_err() {
            self.out.drop("swim");
        }
        if self
            .anti_entropy
            .should_request(&self.view, from, version, now)
        {
            self.out.send(from, &Body::MetaRequest);
        }
        if let Some(generation) = self
            .anti_entropy
            .superseded(&self.view, from, version.0, now)
        {
            self.out.send(from, &Body::Superseded { generation });
        }
        // Two-node mode: any traffic from the peer means it is present, so a node that
        // held alone must now get its grants (or fence).
        if let Some(peer) = self.presence.peer()
            && self
                .membership
                .members()
                .iter()
                .any(|m| m.id.addr == from && m.id.name == peer)
        {
            self.presence.heard(now);
        }
    }

    /// Re-evaluates everything after any input.
    fn drive(&mut self, now: Instant) {
        // Covers every input deferred before it (`wakeup`).
        let now = self.deferred.take().map_or(now, |t| t.max(now));
        if !matches!(self.local.life, Life::Running | Life::Leaving) {
            return;
        }
        // SWIM's timers that may go early ride on this wake-up (`TimerSlack`).
        self.membership.handle_timeout(now);
        // Holders whose claims stopped are suspected through SWIM (§4.16).
        for name in self.heartbeats.overdue(now) {
            self.membership.suspect(&name, now);
        }
        self.update_eligibility(now);
        let (view_changed, meta_changed) = self.membership.take_changed();
        if view_changed || meta_changed || std::mem::take(&mut self.groups.reassign) {
            self.view = View::new(self.membership.members());
            let view = &self.view;
            self.heartbeats
                .retain(|name| view.active().any(|m| m.id.name == name));
            self.note_voter_sets(now);
            self.recompute_assignment(now, view_changed);
            self.groups.dirty_all = true;
        }
        self.check_collision(now);
        // Groups change only with time (their own deadlines), the view, commands,
        // answers and kernel results; a SWIM ping that changes nothing costs nothing.
        let due = self.timers.due(Timer::Groups, now);
        // A refresh that fell due brings the claim round forward, and the round
        // carries the refreshes (§4.14, `round.rs`): one wake-up for both. (Asked
        // before the tick, which starts the due refreshes.)
        let (oldest_refresh, oldest_renewal) = self.held_oldest();
        let refresh_due =
            self.rules
                .round
                .brings_claim(oldest_refresh, self.lease.riding.last_claim(), now);
        self.note_renewal_due(oldest_renewal, now);
        let mut ticked = self.tick_dirty(now, due);
        if self.retire_idle(now) {
            // Removed groups went from the claims: tell the voters now.
            ticked = true;
        }
        // A held answer whose wait is up brings the next claim forward: it rides on
        // that (§4.13), so a claim period longer than L still carries every answer.
        let ride_due = self.lease.riding.deadline().is_some_and(|d| now >= d);
        if self.claims_flowing()
            && (self.lease.claimer.as_ref().is_some_and(|c| c.urgent())
                || self.timers.due(Timer::Claim, now)
                || ride_due
                || refresh_due)
        {
            self.send_claim(now);
            // Self-votes may have completed a quorum.
            self.tick_groups(now, true);
            if self.rules.round.carries(self.oldest_refresh(), now) {
                self.carry_refresh(now);
            }
            ticked = true;
        }
        self.end_renewal_round();
        self.flush_rides(now);
        for (to, data) in self.membership.take_sends() {
            self.send_swim(to, data);
        }
        self.send_hints();
        self.request_missing_meta(now);
        if self.timers.due(Timer::Gc, now) {
            self.timers.set(Timer::Gc, now + GC_PERIOD);
            if let Some(v) = &mut self.lease.voter {
                v.gc(now);
            }
        }
        if self.local.life == Life::Leaving && self.groups.all_released() {
            self.finish_leave(now);
            return;
        }
        if ticked || due {
            self.schedule_groups(now);
        }
    }

    fn send_swim(&mut self, to: SocketAddr, data: Vec<u8>) {
        let m = self.membership.own_meta();
        let v = (m.generation, m.version);
        self.out.send(to, &Body::Swim(data, v));
    }

    /// Anti-entropy: ask active members whose metadata is missing, once per period.
    fn request_missing_meta(&mut self, now: Instant) {
        if !self.timers.due(Timer::MetaRequest, now) {
            return;
        }
        self.timers
            .set(Timer::MetaRequest, now + META_REQUEST_PERIOD);
        for a in super::anti_entropy::missing_meta(&self.view) {
            self.out.send(a, &Body::MetaRequest);
        }
    }
}

/// Draws a lease nonce from an RNG (helper for shells).
pub fn draw_nonce(rng: &mut impl Rng) -> u64 {
    rng.next_u64()
}

#[cfg(test)]
mod tests;
