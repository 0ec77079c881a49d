//! Membership: a wrapper around foca (SWIM) that owns its timers and its metadata.
//!
//! * **Identity** ([`NodeId`]): stable node name, gossip address and an `epoch`.
//!   foca keeps one member per address and lets the higher epoch win, and `renew()`
//!   bumps the epoch, so a node that was declared down (or restarted with a newer
//!   epoch) rejoins at once instead of being ignored for `remove_down_after`.
//! * **Metadata** ([`NodeMeta`]): eligibility, weight, draining, preferences and a
//!   configuration fingerprint, spread as foca custom broadcasts (re-broadcast with a
//!   new version on every change and whenever a member comes up, so newcomers learn
//!   it), and fetched directly (`MetaRequest`) when a member's is missing.
//! * **Timers**: foca's timers are plain data kept here in one deadline-ordered
//!   queue and handed back in order (`SendIndirectProbe` before `ProbeRandomMember`
//!   when they fall due together, as foca requires). They ride on the node's
//!   other wake-ups ([`TimerSlack`]): probes, gossip and announcements fire at
//!   any wake-up up to `early` before their deadline, the indirect-probe timeout
//!   up to `late` after it, suspicion timeouts exactly — so in steady state SWIM
//!   costs no wake-up of its own beyond the datagrams it receives.
//!
//! Everything is driven by `now` and a seeded RNG: two runs with the same inputs
//! produce the same packets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use foca::{
    AccumulatingRuntime, BroadcastHandler, Foca, Identity, Invalidates, OwnedNotification,
    PostcardCodec, Timer,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::config::Timing;
use super::time::Instant;
use super::wire::{HEADER_LEN, MAX_DATAGRAM, NodeMeta};

/// Largest metadata item accepted: room for a 63-byte name, two worst-case group
/// sets (preferences and holdings, each at most `MAX_GROUPS / 8` bytes), the recent
/// list and the digests, inside foca's packet budget.
pub const MAX_META_BYTES: usize = 1320;
/// How often a node with no members re-announces itself to its seeds.
pub const IDLE_ANNOUNCE_PERIOD: Duration = Duration::from_millis(500);
/// How often a node with members announces itself to the seeds that are not among
/// them. SWIM heals a partition by announcing to members it saw go *down*; two
/// groups that never knew each other (a rolling restart during a partition: each
/// restarted node only found the nodes reachable then) would otherwise stay two
/// clusters for good, each without a quorum (simulator, seed 55501221).
pub const SEED_ANNOUNCE_PERIOD: Duration = Duration::from_secs(2);

/// A SWIM identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// Gossip address (unique per member).
    pub addr: SocketAddr,
    /// Stable node name.
    pub name: String,
    /// Bumped on every renewal; the higher epoch wins an address conflict.
    pub epoch: u64,
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeId {
            addr: self.addr,
            name: self.name.clone(),
            epoch: self.epoch + 1,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.epoch, &self.name) > (adversary.epoch, &adversary.name)
    }
}

/// Liveness of a member as SWIM sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Liveness {
    /// Answering probes.
    Alive,
    /// Missed a probe; may still refute.
    Suspect,
    /// Declared down.
    Down,
}

impl Liveness {
    /// Alive or Suspect: still a member.
    pub fn is_active(self) -> bool {
        !matches!(self, Liveness::Down)
    }
}

/// One member as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// Its identity.
    pub id: NodeId,
    /// Its SWIM incarnation.
    pub incarnation: u16,
    /// Its liveness.
    pub state: Liveness,
    /// Its metadata, if known.
    pub meta: Option<NodeMeta>,
}

#[derive(Default, Debug)]
struct MetaTable {
    by_name: BTreeMap<String, NodeMeta>,
    changed: bool,
}

/// Key of a metadata broadcast: newer versions of one node's metadata invalidate
/// older ones still queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaKey {
    name: String,
    generation: u64,
    version: u64,
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name
            && (self.generation, self.version) > (other.generation, other.version)
    }
}

/// A metadata item that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed node metadata")]
pub struct MetaError;

#[derive(Debug)]
struct MetaHandler {
    table: Arc<Mutex<MetaTable>>,
}

fn lock(t: &Mutex<MetaTable>) -> MutexGuard<'_, MetaTable> {
    // The table holds plain data; a poisoned lock still holds a consistent map.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

impl MetaTable {
    fn offer(&mut self, meta: NodeMeta) -> bool {
        match self.by_name.get(&meta.name) {
            Some(old) if !meta.newer_than(old) => false,
            _ => {
                self.by_name.insert(meta.name.clone(), meta);
                self.changed = true;
                true
            }
        }
    }
}

impl BroadcastHandler<NodeId> for MetaHandler {
    type Key = MetaKey;
    type Error = MetaError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeId>,
    ) -> Result<Option<MetaKey>, MetaError> {
        if data.len() > MAX_META_BYTES {
            return Err(MetaError);
        }
        let meta: NodeMeta = postcard::from_bytes(data).map_err(|_| MetaError)?;
        let key = MetaKey {
            name: meta.name.clone(),
            generation: meta.generation,
            version: meta.version,
        };
        Ok(lock(&self.table).offer(meta).then_some(key))
    }
}

/// Counters kept by the membership layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// foca packets that failed to decode or apply.
    pub swim_errors: u64,
    /// Identity renewals after being declared down.
    pub rejoins: u64,
    /// Membership changes (up, down, rename).
    pub view_changes: u64,
    /// Times this node found itself declared down without an automatic renewal.
    pub defuncts: u64,
    /// Suspicions this node raised because a holder's claims stopped
    /// (`heartbeat.rs`).
    pub heartbeat_suspicions: u64,
    /// Of those, the ones this node's own suspicion timer turned into a down.
    pub heartbeat_downs: u64,
}

type Swim = Foca<NodeId, PostcardCodec, StdRng, MetaHandler>;

/// The foca wrapper.
pub struct Membership {
    foca: Swim,
    rt: AccumulatingRuntime<NodeId>,
    timers: BTreeMap<(Instant, u8, u64), Timer<NodeId>>,
    timer_seq: u64,
    table: Arc<Mutex<MetaTable>>,
    own: NodeMeta,
    seeds: Vec<SocketAddr>,
    out: Vec<(SocketAddr, Vec<u8>)>,
    view_changed: bool,
    own_changed: bool,
    next_idle_announce: Instant,
    next_seed_announce: Instant,
    slack: TimerSlack,
    /// Suspicions raised from missed claims: (deadline, member, incarnation). foca
    /// times out only the suspicions its own probes raise; these it only spreads.
    suspicions: Vec<(Instant, NodeId, u16)>,
    timing: Timing,
    /// Counters.
    pub stats: MembershipStats,
}

/// How far foca's timers may move to share a wake-up with something else (the
/// node's claim round, a received datagram). Zero by default: every timer exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerSlack {
    /// Probes, periodic gossip and announcements, and removals of down members may
    /// fire this much before their deadline: earlier is harmless (a probe period
    /// shortened by at most this, never lengthened; detection only gets faster).
    pub early: Duration,
    /// The direct probe's timeout (indirect probes go out) may fire this much
    /// after its deadline, so that it lands on the next round instead of a wake-up
    /// of its own; the indirect probes then have that much less time before the
    /// probe period ends.
    pub late: Duration,
}

/// When a timer may fire relative to its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Give {
    Early,
    Late,
    Exact,
}

fn give(t: &Timer<NodeId>) -> Give {
    match t {
        Timer::SendIndirectProbe { .. } => Give::Late,
        // Early suspicion would cut a member's time to refute.
        Timer::ChangeSuspectToDown { .. } => Give::Exact,
        _ => Give::Early,
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("id", self.foca.identity())
            .finish_non_exhaustive()
    }
}

/// foca's configuration for a timing profile and an expected cluster size.
pub fn foca_config(t: &Timing, cluster_size_hint: usize) -> foca::Config {
    let mut c = foca::Config::simple();
    c.probe_period = t.probe_period;
    c.probe_rtt = t.probe_rtt;
    c.suspect_to_down_after = t.suspect_to_down;
    c.num_indirect_probes = NonZeroUsize::new(3).expect("3 > 0");
    let lan = ((cluster_size_hint as f64 + 1.0).log10() * 4.0).floor() as u8;
    c.max_transmissions = NonZeroU8::new(lan.max(6)).expect("≥ 6");
    c.remove_down_after = Some(Duration::from_secs(60));
    c.max_packet_size = NonZeroUsize::new(MAX_DATAGRAM - HEADER_LEN - 8).expect("positive");
    c.notify_down_members = true;
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(1).expect("1 > 0"),
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(2),
        num_members: NonZeroUsize::new(2).expect("2 > 0"),
    });
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: t.gossip_period,
        num_members: NonZeroUsize::new(3).expect("3 > 0"),
    });
    c
}

fn timer_rank(t: &Timer<NodeId>) -> u8 {
    match t {
        Timer::SendIndirectProbe { .. } => 0,
        Timer::ProbeRandomMember(_) => 1,
        _ => 2,
    }
}

impl Membership {
    /// A membership layer for `id`, not yet announced.
    pub fn new(
        id: NodeId,
        timing: &Timing,
        cluster_size_hint: usize,
        rng_seed: u64,
        own: NodeMeta,
        seeds: Vec<SocketAddr>,
        now: Instant,
    ) -> Membership {
        let table = Arc::new(Mutex::new(MetaTable::default()));
        let handler = MetaHandler {
            table: table.clone(),
        };
        let rng = StdRng::seed_from_u64(rng_seed);
        let foca = Foca::with_custom_broadcast(
            id,
            foca_config(timing, cluster_size_hint),
            rng,
            PostcardCodec,
            handler,
        );
        let seeds = seeds
            .into_iter()
            .filter(|s| *s != foca.identity().addr)
            .collect();
        Membership {
            foca,
            rt: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            table,
            own,
            seeds,
            out: Vec::new(),
            view_changed: true,
            own_changed: false,
            next_idle_announce: now,
            next_seed_announce: now + SEED_ANNOUNCE_PERIOD,
            stats: MembershipStats::default(),
            slack: TimerSlack::default(),
            suspicions: Vec::new(),
            timing: timing.clone(),
        }
    }

    /// This node's current identity.
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// The seed addresses (this node's own address excluded).
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// This node's metadata.
    pub fn own_meta(&self) -> &NodeMeta {
        &self.own
    }

    fn absorb(&mut self, now: Instant) {
        let mut gossip_now = false;
        loop {
            let mut progressed = false;
            while let Some((dst, data)) = self.rt.to_send() {
                self.out.push((dst.addr, data.to_vec()));
                progressed = true;
            }
            while let Some((after, timer)) = self.rt.to_schedule() {
                // foca's probe period is the longest; with more members it is
                // shorter, so that each is probed once per cycle (`probe_period_for`).
                let after = match timer {
                    Timer::ProbeRandomMember(_) => {
                        after.min(self.timing.probe_period_for(self.foca.num_members()))
                    }
                    _ => after,
                };
                self.timer_seq += 1;
                self.timers
                    .insert((now + after, timer_rank(&timer), self.timer_seq), timer);
                progressed = true;
            }
            while let Some(n) = self.rt.to_notify() {
                progressed = true;
                match n {
                    OwnedNotification::MemberUp(_) => {
                        self.view_changed = true;
                        self.stats.view_changes += 1;
                        // A newcomer needs everyone's metadata.
                        self.rebroadcast_meta();
                    }
                    OwnedNotification::MemberDown(_) => {
                        self.view_changed = true;
                        self.stats.view_changes += 1;
                        // Spread the news now rather than at the next gossip period:
                        // the new owners cannot start claiming before they hear it.
                        gossip_now = true;
                    }
                    OwnedNotification::Rename(_, _) => {
                        self.view_changed = true;
                        self.stats.view_changes += 1;
                    }
                    OwnedNotification::Rejoin(_) => {
                        self.stats.rejoins += 1;
                        self.view_changed = true;
                    }
                    OwnedNotification::Defunct => {
                        self.stats.defuncts += 1;
                        // Declared down without an automatic renewal (renew() always
                        // wins, so this follows a deliberate leave): stay down.
                        // Leases are never touched here (DESIGN §2.3 rule 9).
                    }
                    OwnedNotification::Active | OwnedNotification::Idle => self.view_changed = true,
                }
            }
            if gossip_now {
                gossip_now = false;
                if self.foca.gossip(&mut self.rt).is_err() {
                    self.stats.swim_errors += 1;
                }
                continue;
            }
            if !progressed {
                break;
            }
        }
    }

    fn rebroadcast_meta(&mut self) {
        self.own.version += 1;
        if let Ok(bytes) = postcard::to_allocvec(&self.own) {
            // Errors mean "too large"; metadata is bounded well below the limit.
            let _ = self.foca.add_broadcast(&bytes);
        }
    }

    /// Announces this node to its seeds (at start, and again while alone).
    pub fn start(&mut self, now: Instant) {
        self.rebroadcast_meta();
        self.announce_to_seeds(now);
    }

    fn announce_to_seeds(&mut self, now: Instant) {
        self.announce_to(self.seeds.clone(), now);
    }

    /// Seeds that are not active members (our own address is never a seed here).
    fn missing_seeds(&self) -> Vec<SocketAddr> {
        self.seeds
            .iter()
            .copied()
            .filter(|s| !self.foca.iter_members().any(|m| m.id().addr == *s))
            .collect()
    }

    fn announce_to(&mut self, seeds: Vec<SocketAddr>, now: Instant) {
        for s in seeds {
            let placeholder = NodeId {
                addr: s,
                name: String::new(),
                epoch: 0,
            };
            if self.foca.announce(placeholder, &mut self.rt).is_err() {
                self.stats.swim_errors += 1;
            }
        }
        self.next_idle_announce = now + IDLE_ANNOUNCE_PERIOD;
        self.absorb(now);
    }

    /// Renews this node's identity with an epoch above `above` (and its metadata's
    /// generation with it): a predecessor of the same name is known with a newer
    /// generation than ours (our wall clock was behind when we started). Returns the
    /// new epoch.
    pub fn supersede(&mut self, above: u64, now: Instant) -> u64 {
        let epoch = above.max(self.foca.identity().epoch).saturating_add(1);
        let id = NodeId {
            epoch,
            ..self.foca.identity().clone()
        };
        if self.foca.change_identity(id, &mut self.rt).is_err() {
            self.stats.swim_errors += 1;
        }
        self.stats.rejoins += 1;
        self.own.generation = epoch;
        self.own.version = 0;
        self.own_changed = true;
        self.rebroadcast_meta();
        self.absorb(now);
        epoch
    }

    /// Feeds a foca packet received at `now`.
    pub fn handle_data(&mut self, data: &[u8], now: Instant) -> Result<(), foca::Error> {
        let r = self.foca.handle_data(data, &mut self.rt);
        if r.is_err() {
            self.stats.swim_errors += 1;
        }
        self.reconnect();
        self.absorb(now);
        r
    }

    /// foca 2.0 leaves itself disconnected (no probe timers) when it renews its
    /// identity on a `TurnUndead` message, until some later packet carries
    /// membership updates; if every node ends up that way, nothing is ever sent
    /// again (found by the simulator, seed 182). An empty `apply_many` re-runs its
    /// connection check, which restarts the timers when members are active.
    fn reconnect(&mut self) {
        if self
            .foca
            .apply_many(std::iter::empty(), false, &mut self.rt)
            .is_err()
        {
            self.stats.swim_errors += 1;
        }
    }

    /// Suspects the active member called `name` (its claims stopped: `heartbeat.rs`)
    /// as a failed probe would: the suspicion is gossiped at once, the member
    /// refutes it if alive, and if it is still suspect at the same incarnation after
    /// the suspicion time, this node declares it down. A member already suspect, or
    /// unknown, is left alone. Returns whether a suspicion was raised.
    pub fn suspect(&mut self, name: &str, now: Instant) -> bool {
        let Some(m) = self
            .foca
            .iter_members()
            .filter(|m| m.id().name == name)
            .max_by_key(|m| m.id().epoch)
            .cloned()
        else {
            return false;
        };
        if m.state() != foca::State::Alive {
            return false;
        }
        let update = foca::Member::new(m.id().clone(), m.incarnation(), foca::State::Suspect);
        if self
            .foca
            .apply_many(std::iter::once(update), true, &mut self.rt)
            .is_err()
        {
            self.stats.swim_errors += 1;
            return false;
        }
        self.stats.heartbeat_suspicions += 1;
        self.suspicions.push((
            now + self.timing.suspect_to_down,
            m.id().clone(),
            m.incarnation(),
        ));
        // Spread it now: the member has the suspicion time to hear and refute it.
        if self.foca.gossip(&mut self.rt).is_err() {
            self.stats.swim_errors += 1;
        }
        self.absorb(now);
        true
    }

    /// A claim from `name` arrived: it is alive, so this node's pending suspicions
    /// of it will not turn into a down (the member still refutes them in SWIM).
    pub fn vouch(&mut self, name: &str) {
        self.suspicions.retain(|s| s.1.name != name);
    }

    /// Declares down every member whose heartbeat suspicion ran out unrefuted.
    fn expire_suspicions(&mut self, now: Instant) {
        if !self.suspicions.iter().any(|s| s.0 <= now) {
            return;
        }
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.suspicions)
            .into_iter()
            .partition(|s| s.0 <= now);
        self.suspicions = rest;
        for (_, id, inc) in due {
            let still = self.foca.iter_members().any(|m| {
                m.id() == &id && m.state() == foca::State::Suspect && m.incarnation() == inc
            });
            if !still {
                continue;
            }
            let down = foca::Member::new(id, inc, foca::State::Down);
            if self
                .foca
                .apply_many(std::iter::once(down), true, &mut self.rt)
                .is_err()
            {
                self.stats.swim_errors += 1;
            } else {
                self.stats.heartbeat_downs += 1;
            }
            self.absorb(now);
        }
    }

    /// Sets how far timers may move to share wake-ups ([`TimerSlack`]).
    pub fn set_slack(&mut self, slack: TimerSlack) {
        self.slack = slack;
    }

    /// The slack as it applies now: the configured one, shrunk so that a probe
    /// cycle keeps a probe RTT for its indirect probes. A probe that fires `early`
    /// and a direct-probe timeout that fires `late` leave the indirect probes
    /// p − probe RTT − early − late before the next probe; with more members p
    /// shrinks to the gossip period (`Timing::probe_period_for`), and a round's
    /// slack (R′ early, R′/2 late) then left them nothing — in the `default`
    /// profile, 100 − 30 − 75 ms — so every missed ack became a suspicion to refute
    /// (docs/safety.md §4.14).
    fn slack_now(&self) -> TimerSlack {
        let p = self.timing.probe_period_for(self.foca.num_members());
        let budget = p.saturating_sub(self.timing.probe_rtt * 2);
        let asked = self.slack.early + self.slack.late;
        if asked <= budget || asked.is_zero() {
            return self.slack;
        }
        let scale = budget.as_secs_f64() / asked.as_secs_f64();
        TimerSlack {
            early: self.slack.early.mul_f64(scale),
            late: self.slack.late.mul_f64(scale),
        }
    }

    /// The next timer that may fire at `now`: in deadline order, the first one due,
    /// or within `early` of its deadline if it may fire early — a probe only once no
    /// indirect-probe timeout is still pending before it (foca handles a probe
    /// cycle's timeout before the next probe).
    fn next_fireable(&self, now: Instant) -> Option<(Instant, u8, u64)> {
        let mut indirect_pending = false;
        let early = self.slack_now().early;
        for (k, t) in self.timers.range(..) {
            if k.0 <= now {
                return Some(*k);
            }
            if k.0 > now + early {
                return None;
            }
            match give(t) {
                Give::Early if !(indirect_pending && matches!(t, Timer::ProbeRandomMember(_))) => {
                    return Some(*k);
                }
                Give::Late => indirect_pending = true,
                _ => {}
            }
        }
        None
    }

    /// Fires every foca timer that may fire at `now` (due, or early within the
    /// slack), in order.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_suspicions(now);
        while let Some(key) = self.next_fireable(now) {
            let Some(timer) = self.timers.remove(&key) else {
                break;
            };
            if self.foca.handle_timer(timer, &mut self.rt).is_err() {
                self.stats.swim_errors += 1;
            }
            self.reconnect();
            self.absorb(now);
        }
        if self.foca.num_members() == 0 && now >= self.next_idle_announce && !self.seeds.is_empty()
        {
            self.announce_to_seeds(now);
        } else if self.foca.num_members() > 0 && now >= self.next_seed_announce {
            self.next_seed_announce = now + SEED_ANNOUNCE_PERIOD;
            let missing = self.missing_seeds();
            if !missing.is_empty() {
                self.announce_to(missing, now);
            }
        }
    }

    /// The next instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let late = self.slack_now().late;
        let t = self
            .timers
            .iter()
            .map(|(k, t)| match give(t) {
                Give::Late => k.0 + late,
                Give::Early | Give::Exact => k.0,
            })
            .min();
        let t = match (t, self.suspicions.iter().map(|s| s.0).min()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let idle = if self.foca.num_members() == 0 {
            (!self.seeds.is_empty()).then_some(self.next_idle_announce)
        } else {
            let missing = self
                .seeds
                .iter()
                .any(|s| !self.foca.iter_members().any(|m| m.id().addr == *s));
            missing.then_some(self.next_seed_announce)
        };
        match (t, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Packets foca wants sent: (destination gossip address, foca bytes).
    pub fn take_sends(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.out)
    }

    /// Changes this node's metadata and gossips the new version.
    pub fn update_meta(&mut self, f: impl FnOnce(&mut NodeMeta)) {
        let before = self.own.clone();
        f(&mut self.own);
        if self.own != before {
            self.rebroadcast_meta();
            self.own_changed = true;
        }
    }

    /// Takes in metadata received directly.
    pub fn offer_meta(&mut self, meta: NodeMeta) -> bool {
        if meta.name == self.own.name {
            return false;
        }
        let mut t = lock(&self.table);
        let fresh = t.offer(meta);
        drop(t);
        fresh
    }

    /// What changed since the last call: (membership, metadata).
    pub fn take_changed(&mut self) -> (bool, bool) {
        let meta_changed =
            std::mem::take(&mut lock(&self.table).changed) || std::mem::take(&mut self.own_changed);
        (std::mem::take(&mut self.view_changed), meta_changed)
    }

    /// Every member this node knows (not itself), down ones included.
    pub fn members(&self) -> Vec<MemberView> {
        let t = lock(&self.table);
        self.foca
            .iter_membership_state()
            .map(|m| MemberView {
                id: m.id().clone(),
                incarnation: m.incarnation(),
                state: match m.state() {
                    foca::State::Alive => Liveness::Alive,
                    foca::State::Suspect => Liveness::Suspect,
                    foca::State::Down => Liveness::Down,
                },
                meta: t.by_name.get(&m.id().name).cloned(),
            })
            .collect()
    }

    /// Number of active members (not counting this node).
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }

    /// Gossips this node's departure; foca stays usable but idle.
    pub fn leave(&mut self, now: Instant) {
        if self.foca.leave_cluster(&mut self.rt).is_err() {
            self.stats.swim_errors += 1;
        }
        self.absorb(now);
    }

    /// Notification helper for tests: the number of pending timers.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::{Profile, Timing};

    fn meta(name: &str) -> NodeMeta {
        NodeMeta {
            name: name.into(),
            generation: 1,
            version: 0,
            eligible: true,
            draining: false,
            weight: 1,
            fingerprint: 0,
            prefers: vec![],
            held: vec![],
            recent: vec![],
            lease_nonce: 0,
            config: Default::default(),
            table: [0; 16],
            unable: Vec::new(),
        }
    }

    #[test]
    fn timers_move_only_the_way_their_kind_allows() {
        let ms = Duration::from_millis;
        let at = |n: u64| Instant::ZERO + ms(n);
        let mut m = node(1, vec![]);
        m.timers.clear();
        let other = NodeId {
            addr: "10.0.0.2:7946".parse().unwrap(),
            name: "n2".into(),
            epoch: 1,
        };
        let key = |t: u64, timer: &Timer<NodeId>, seq: u64| (at(t), timer_rank(timer), seq);
        let probe = Timer::ProbeRandomMember(0);
        let indirect = Timer::SendIndirectProbe {
            probed_id: other.clone(),
            token: 0,
        };
        let down = Timer::ChangeSuspectToDown {
            member_id: other,
            incarnation: 0,
            token: 0,
        };
        // Exact by default: nothing fires before its deadline.
        m.timers.insert(key(100, &probe, 1), probe.clone());
        assert_eq!(m.next_fireable(at(90)), None);
        assert_eq!(m.poll_timeout(), Some(at(100)));
        // With slack, a probe fires at a wake-up up to `early` before it.
        m.set_slack(TimerSlack {
            early: ms(40),
            late: ms(20),
        });
        assert_eq!(m.next_fireable(at(59)), None);
        assert_eq!(m.next_fireable(at(60)), Some(key(100, &probe, 1)));
        // A suspicion timeout never fires early.
        m.timers.clear();
        m.timers.insert(key(100, &down, 2), down.clone());
        assert_eq!(m.next_fireable(at(99)), None);
        assert_eq!(m.poll_timeout(), Some(at(100)));
        // The direct probe's timeout fires when due at a wake-up, or `late`
        // after its deadline at the latest; a probe behind it waits for it.
        m.timers.clear();
        m.timers.insert(key(100, &indirect, 3), indirect.clone());
        m.timers.insert(key(120, &probe, 4), probe.clone());
        assert_eq!(m.poll_timeout(), Some(at(120)));
        assert_eq!(m.next_fireable(at(90)), None, "no probe before its timeout");
        assert_eq!(m.next_fireable(at(100)), Some(key(100, &indirect, 3)));
        m.timers.remove(&key(100, &indirect, 3));
        assert_eq!(m.next_fireable(at(100)), Some(key(120, &probe, 4)));
        m.timers.clear();
        m.timers.insert(key(100, &indirect, 5), indirect);
        assert_eq!(m.poll_timeout(), Some(at(120)));
    }

    #[test]
    fn a_short_probe_period_shrinks_the_slack_to_leave_indirect_probes_a_probe_rtt() {
        let ms = Duration::from_millis;
        let mut m = node(1, vec![]);
        m.set_slack(TimerSlack {
            early: ms(50),
            late: ms(25),
        });
        // A small cluster's probe period (1 s) has room for a whole round's slack.
        assert_eq!(m.slack_now(), m.slack);
        // At the gossip-period floor of a large cluster (100 ms, probe RTT 30 ms)
        // early + late may take only 100 − 2 × 30 = 40 ms, in the same proportion.
        m.timing.probe_period = ms(100);
        m.timing.gossip_period = ms(100);
        m.timing.probe_rtt = ms(30);
        let s = m.slack_now();
        let near = |d: Duration, want: f64| (d.as_secs_f64() * 1e3 - want).abs() < 0.01;
        assert!(near(s.early, 26.667) && near(s.late, 13.333), "{s:?}");
        // A probe fired early and a timeout fired late still leave one probe RTT.
        assert!(ms(100) - ms(30) - s.early - s.late >= ms(30) - Duration::from_nanos(1));
    }

    fn node(i: u16, seeds: Vec<SocketAddr>) -> Membership {
        let addr: SocketAddr = format!("10.0.0.{i}:7946").parse().unwrap();
        let id = NodeId {
            addr,
            name: format!("n{i}"),
            epoch: 1,
        };
        Membership::new(
            id,
            &Timing::profile(Profile::Default),
            3,
            u64::from(i),
            meta(&format!("n{i}")),
            seeds,
            Instant::ZERO,
        )
    }

    /// Runs a tiny lossless network from `from` until `until`, delivering packets
    /// after 1 ms.
    fn run(nodes: &mut [Membership], from: Instant, until: Instant) {
        let all = vec![true; nodes.len()];
        run_masked(nodes, &all, from, until, |_, _| false);
    }

    /// `run` with only the nodes `up` says running (the others neither send, nor
    /// receive, nor time anything out), stopping early once `stop` holds.
    fn run_masked(
        nodes: &mut [Membership],
        up: &[bool],
        from: Instant,
        until: Instant,
        stop: impl Fn(&[Membership], Instant) -> bool,
    ) -> Instant {
        let mut now = from;
        let mut inflight: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new();
        let step = Duration::from_millis(1);
        while now < until && !stop(nodes, now) {
            for (i, n) in nodes.iter_mut().enumerate() {
                if up[i] {
                    n.handle_timeout(now);
                }
            }
            let due: Vec<_> = inflight.iter().filter(|p| p.0 <= now).cloned().collect();
            inflight.retain(|p| p.0 > now);
            for (_, to, data) in due {
                if let Some(i) = nodes.iter().position(|n| n.identity().addr == to)
                    && up[i]
                {
                    let _ = nodes[i].handle_data(&data, now);
                }
            }
            for (i, n) in nodes.iter_mut().enumerate() {
                let sends = n.take_sends();
                if up[i] {
                    for (to, data) in sends {
                        inflight.push((now + step, to, data));
                    }
                }
            }
            now = now + step;
        }
        now
    }

    #[test]
    fn a_member_that_missed_a_death_finds_it_within_swims_detection() {
        // Eight members; n8 is away (frozen) while n7 dies and the others declare it
        // down from its missed claims. Back, n8 still sees n7 alive — nobody gossips
        // old news — until its own probes reach n7: with the probe period shrunk to
        // a 2 s cycle over seven members, within `swim_detection`.
        let seed: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        let mut nodes: Vec<Membership> = (1..=8).map(|i| node(i, vec![seed])).collect();
        for n in nodes.iter_mut() {
            n.start(Instant::ZERO);
        }
        // (Off the 1 s grid the members started on.)
        let t1 = Instant::from_nanos(3_500_000_000);
        run(&mut nodes, Instant::ZERO, t1);
        let timing = Timing::profile(Profile::Default);
        assert_eq!(nodes[0].active_members(), 7);
        // Every member's next probe is at most a seventh of the 2 s cycle away.
        let every = timing.probe_period_for(7);
        assert!(every < timing.probe_period);
        for n in &nodes {
            let next = n
                .timers
                .iter()
                .find(|(_, t)| matches!(t, Timer::ProbeRandomMember(_)))
                .map(|(k, _)| k.0)
                .expect("a probe pending");
            assert!(
                next <= t1 + every,
                "{:?}: next probe at {next:?}",
                n.identity()
            );
        }
        let mut up = vec![true; 8];
        up[6] = false; // n7 dies
        up[7] = false; // n8 is frozen
        assert!(nodes[0].suspect("n7", t1));
        let t2 = t1 + Duration::from_secs(1);
        run_masked(&mut nodes, &up, t1, t2, |_, _| false);
        for n in &nodes[..6] {
            assert_eq!(state_of(n, "n7").map(|s| s.0), Some(Liveness::Down));
        }
        assert_eq!(
            state_of(&nodes[7], "n7").map(|s| s.0),
            Some(Liveness::Alive)
        );
        up[7] = true;
        let bound = timing.swim_detection();
        let seen = run_masked(&mut nodes, &up, t2, t2 + bound * 2, |ns, _| {
            state_of(&ns[7], "n7").is_some_and(|s| s.0 == Liveness::Down)
        });
        assert!(
            seen.saturating_since(t2) <= bound,
            "n8 saw n7 down {:?} after it came back (bound {bound:?})",
            seen.saturating_since(t2)
        );
    }

    /// Three members seeded by the first, started at time zero.
    fn three_started() -> Vec<Membership> {
        let seed: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        let mut nodes: Vec<Membership> = (1..=3).map(|i| node(i, vec![seed])).collect();
        for n in nodes.iter_mut() {
            n.start(Instant::ZERO);
        }
        nodes
    }

    #[test]
    fn three_nodes_join_and_share_metadata() {
        let mut nodes = three_started();
        run(
            &mut nodes,
            Instant::ZERO,
            Instant::from_nanos(2_000_000_000),
        );
        for n in &nodes {
            let ms = n.members();
            assert_eq!(
                ms.iter().filter(|m| m.state == Liveness::Alive).count(),
                2,
                "{:?}",
                n.identity()
            );
            assert!(
                ms.iter().all(|m| m.meta.is_some()),
                "metadata missing at {:?}: {ms:?}",
                n.identity()
            );
        }
    }

    #[test]
    fn worst_case_metadata_spreads_by_broadcast() {
        // The largest metadata (two bitmaps of every other group) still rides foca's
        // packets: peers learn it from the broadcast alone.
        let mut nodes = three_started();
        let t1 = Instant::from_nanos(1_000_000_000);
        run(&mut nodes, Instant::ZERO, t1);
        let max = crate::core::config::MAX_GROUPS as u16;
        nodes[0].update_meta(|m| {
            m.prefers = (0..max).step_by(2).collect();
            m.held = (1..max).step_by(2).collect();
            m.recent = (0..crate::core::wire::MAX_RECENT as u16)
                .map(|i| 4095 - 2 * i)
                .collect();
        });
        let want = nodes[0].own_meta().clone();
        assert!(postcard::to_allocvec(&want).unwrap().len() > 1000);
        run(&mut nodes, t1, Instant::from_nanos(3_000_000_000));
        for n in &nodes[1..] {
            let got = n
                .members()
                .into_iter()
                .find(|m| m.id.name == "n1")
                .and_then(|m| m.meta);
            assert_eq!(got.as_ref(), Some(&want), "at {:?}", n.identity());
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn state_of(n: &Membership, name: &str) -> Option<(Liveness, u16)> {
        n.members()
            .into_iter()
            .find(|m| m.id.name == name)
            .map(|m| (m.state, m.incarnation))
    }

    /// Runs the network with `dead` receiving and sending nothing.
    fn run_without(nodes: &mut Vec<Membership>, dead: usize, from: Instant, until: Instant) {
        let gone = nodes.remove(dead);
        run(nodes, from, until);
        nodes.insert(dead, gone);
    }

    #[test]
    fn a_heartbeat_suspicion_of_a_dead_member_ends_in_down_after_the_suspicion_time() {
        let mut nodes = three_started();
        let t1 = Instant::from_nanos(2_000_000_000);
        run(&mut nodes, Instant::ZERO, t1);
        // n3 dies (its claims stop); n1 suspects it at t1.
        assert!(nodes[0].suspect("n3", t1));
        assert!(!nodes[0].suspect("n3", t1), "already suspect");
        assert!(!nodes[0].suspect("nobody", t1));
        assert_eq!(state_of(&nodes[0], "n3"), Some((Liveness::Suspect, 0)));
        let s2d = Timing::profile(Profile::Default).suspect_to_down;
        assert_eq!(nodes[0].poll_timeout().map(|t| t <= t1 + s2d), Some(true));
        run_without(&mut nodes, 2, t1, t1 + (s2d - ms(1)));
        assert_eq!(state_of(&nodes[0], "n3"), Some((Liveness::Suspect, 0)));
        // n2 heard of the suspicion by gossip.
        assert_eq!(
            state_of(&nodes[1], "n3").map(|s| s.0),
            Some(Liveness::Suspect)
        );
        run_without(&mut nodes, 2, t1 + (s2d - ms(1)), t1 + s2d + ms(20));
        // Down at n1 by its own timer, and at n2 by gossip, long before SWIM's
        // probe (1 s) would have found it.
        assert_eq!(state_of(&nodes[0], "n3").map(|s| s.0), Some(Liveness::Down));
        assert_eq!(state_of(&nodes[1], "n3").map(|s| s.0), Some(Liveness::Down));
        assert_eq!(nodes[0].stats.heartbeat_downs, 1);
    }

    #[test]
    fn a_live_member_refutes_a_heartbeat_suspicion() {
        let mut nodes = three_started();
        let t1 = Instant::from_nanos(2_000_000_000);
        run(&mut nodes, Instant::ZERO, t1);
        assert!(nodes[0].suspect("n3", t1));
        let s2d = Timing::profile(Profile::Default).suspect_to_down;
        run(&mut nodes, t1, t1 + s2d * 2);
        for n in &nodes[..2] {
            assert_eq!(
                state_of(n, "n3"),
                Some((Liveness::Alive, 1)),
                "at {:?}",
                n.identity()
            );
        }
        assert_eq!(nodes[0].stats.heartbeat_downs, 0);
        // A claim vouches for a suspect: the pending down is dropped even if the
        // refutation is slow to arrive.
        let t2 = t1 + s2d * 2;
        assert!(nodes[0].suspect("n3", t2));
        nodes[0].vouch("n3");
        run_without(&mut nodes, 2, t2, t2 + s2d * 2);
        assert_eq!(
            state_of(&nodes[0], "n3").map(|s| s.0),
            Some(Liveness::Suspect)
        );
        assert_eq!(nodes[0].stats.heartbeat_downs, 0);
    }

    #[test]
    fn renewal_wins_address_conflicts() {
        let a = NodeId {
            addr: "10.0.0.1:1".parse().unwrap(),
            name: "a".into(),
            epoch: 5,
        };
        let b = a.renew().unwrap();
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
    }
}
