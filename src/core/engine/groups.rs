//! The groups: each one's ownership phase (driven by the pure functions of
//! [`crate::core::ownership`]), its quiescence window, its kernel queue; the context each step is evaluated in, and the effects turned into actions.

use std::net::SocketAddr;
use std::time::Duration;

use rand::RngExt;

use super::kernel::OpQueue;
use super::outbox::bump;
use super::timers::Timer;
use super::{Action, Engine, Event, GroupStatus, KernelOp, Life, MAX_BACKOFF};
use crate::core::assign;
use crate::core::config::{GroupId, VipGroup};
use crate::core::hash::combine;
use crate::core::lease::contention::{Contest, hint_is_fresh};
use crate::core::ownership::{self, Ctx, Effect, FenceReason, Phase, ReleaseReason};
use crate::core::quiescence::Calm;
use crate::core::table;
use crate::core::time::Instant;
use crate::core::wire::Body;

/// One group on this node.
#[derive(Clone, Debug)]
pub(super) struct Slot {
    pub phase: Phase,
    /// When the phase last changed.
    pub phase_since: Instant,
    /// Assignment history and quiescence window.
    pub calm: Calm,
    /// The group's kernel queue.
    pub queue: OpQueue,
    /// Contention backoff exponent.
    pub backoff_exp: u32,
    /// A reload removed this group: release it, then retire the slot.
    pub retiring: bool,
    /// Found idle while retiring: emptied at the next drive, so that the shell has
    /// seen the release's event (with the group's addresses) first.
    pub retire_armed: bool,
}

impl Slot {
    pub fn new(now: Instant) -> Slot {
        Slot {
            phase: Phase::Free,
            phase_since: now,
            calm: Calm::new(now),
            queue: OpQueue::default(),
            backoff_exp: 0,
            retiring: false,
            retire_armed: false,
        }
    }

    /// Released with nothing in flight: a retiring slot can be emptied.
    pub fn idle(&self) -> bool {
        matches!(
            self.phase,
            Phase::Free | Phase::Backoff { .. } | Phase::Waiting { .. }
        ) && self.queue.inflight.is_none()
    }
}

/// Every group, and which must be re-evaluated at the next drive.
#[derive(Clone, Debug)]
pub(super) struct Groups {
    slots: Vec<Slot>,
    /// Every group must be re-evaluated at the next drive (view, command, life).
    pub dirty_all: bool,
    /// These groups must be re-evaluated (answers, hints, kernel results).
    pub dirty: Vec<GroupId>,
    /// Release hints to send once the claim dropping their groups is out.
    pub pending_hints: Vec<GroupId>,
    /// A refresh round is under way at this tick, refreshing the held groups
    /// refreshed at least this long ago (see [`Engine::carry_refresh`]).
    refresh_round: Option<Duration>,
    /// The refresh round under way also renews the address lifetime of every group
    /// it refreshes, because one group's renewal fell due: the renewals of all held
    /// groups share one round (one write, one wake-up of the renewal thread) instead
    /// of each following the phase of its own bind.
    renew_round: bool,
    /// The assignment must be recomputed at the next drive although neither the
    /// view nor any metadata changed (a member's group table arrived).
    pub reassign: bool,
    /// What retired slots last held (for the events the shell has yet to log).
    pub retired_names: std::collections::BTreeMap<GroupId, crate::core::config::VipGroup>,
}

impl Groups {
    pub fn new(n: usize, now: Instant) -> Groups {
        Groups {
            slots: vec![Slot::new(now); n],
            dirty_all: true,
            dirty: Vec::new(),
            pending_hints: Vec::new(),
            refresh_round: None,
            renew_round: false,
            reassign: false,
            retired_names: std::collections::BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn slot(&self, g: GroupId) -> &Slot {
        &self.slots[usize::from(g)]
    }

    pub fn slot_mut(&mut self, g: GroupId) -> &mut Slot {
        &mut self.slots[usize::from(g)]
    }

    pub fn get_mut(&mut self, g: GroupId) -> Option<&mut Slot> {
        self.slots.get_mut(usize::from(g))
    }

    fn ids(&self) -> impl Iterator<Item = GroupId> + use<> {
        (0..self.slots.len()).map(|g| g as GroupId)
    }

    /// Groups bound or being bound/unbound.
    pub fn bound(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase.maybe_bound())
            .map(|(g, _)| g as GroupId)
    }

    /// Groups held (bound and live).
    pub fn held(&self) -> Vec<GroupId> {
        self.ids()
            .filter(|&g| matches!(self.slot(g).phase, Phase::Held { .. }))
            .collect()
    }

    /// Whether every group is released with nothing in flight (a leave can finish).
    pub fn all_released(&self) -> bool {
        self.slots.iter().all(Slot::idle)
    }

    /// A slot for a group a reload added: a retired one that is idle, or a new one.
    pub fn take_slot(&mut self, retired: impl Fn(GroupId) -> bool, now: Instant) -> GroupId {
        let free = self
            .ids()
            .find(|&g| retired(g) && !self.slot(g).retiring && self.slot(g).idle());
        match free {
            Some(g) => {
                self.slots[usize::from(g)] = Slot::new(now);
                self.retired_names.remove(&g);
                g
            }
            None => {
                self.slots.push(Slot::new(now));
                (self.slots.len() - 1) as GroupId
            }
        }
    }

    /// Slots marked retiring.
    pub fn retiring(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.ids().filter(|&g| self.slot(g).retiring)
    }

    pub fn status(&self) -> Vec<GroupStatus> {
        self.slots
            .iter()
            .enumerate()
            .map(|(g, s)| GroupStatus {
                group: g as GroupId,
                owner: s.calm.owner.clone(),
                phase: s.phase.label(),
                calm_since: s.calm.since,
                phase_since: s.phase_since,
            })
            .collect()
    }
}

impl Engine {
    /// One step of group `g`'s ownership machine: `f` maps the phase to the next one
    /// in the current context, and its effects are carried out.
    pub(super) fn step(
        &mut self,
        g: GroupId,
        now: Instant,
        f: impl FnOnce(Phase, &Ctx, &mut Vec<Effect>) -> Phase,
    ) {
        let ctx = self.ctx(g, now);
        let mut fx = Vec::new();
        let phase = f(self.groups.slot(g).phase, &ctx, &mut fx);
        self.set_phase(g, phase, now);
        self.apply(g, fx, now);
    }

    fn ctx(&self, g: GroupId, now: Instant) -> Ctx {
        let s = self.groups.slot(g);
        let me = self.node.name.as_str();
        let running = self.local.life == Life::Running;
        let own = self.membership.own_meta();
        let want = running && !s.retiring && s.calm.owned_by(me) && self.lease.claimer.is_some();
        let release_now = if self.local.life == Life::Leaving {
            Some(ReleaseReason::Leave)
        } else if s.retiring {
            Some(ReleaseReason::Removed)
        } else if self.local.draining {
            Some(ReleaseReason::Drain)
        } else if !own.eligible && self.local.eligible {
            Some(ReleaseReason::Ineligible)
        } else if self.local.unable.binary_search(&g).is_ok() {
            Some(ReleaseReason::LinkDown)
        } else {
            None
        };
        let lease = self.lease.claimer.as_ref().and_then(|c| {
            if self.rules.voter_joint_off {
                c.lease_own_set_only(g, self.q_eff(now))
            } else {
                c.lease(g, self.q_eff(now), |d| self.lease.sets.get(d))
            }
        });
        let deadlines = self.rules.fence.deadlines(lease);
        let window = self.rules.contention_window;
        let withdraw = match s.phase {
            Phase::Claiming { since }
                if !hint_is_fresh(s.calm.hint, s.calm.hint_at, window, now) =>
            {
                self.contention(g, since, now)
            }
            _ => false,
        };
        let round = &self.rules.round;
        Ctx {
            want,
            calm: s.calm.calm(self.rules.quiescence, now),
            release_now,
            bind_deadline: deadlines.bind,
            refresh_deadline: deadlines.refresh,
            rearm_deadline: if self.rules.rearm_unchecked {
                Some(now + Duration::from_secs(3600))
            } else {
                deadlines.bind
            },
            withdraw,
            skip_probe: s.calm.hint,
            refresh_period: self.groups.refresh_round.unwrap_or(round.refresh_period()),
            address_period: if self.groups.renew_round {
                Duration::ZERO
            } else {
                self.cfg.timing.address_refresh
            },
            // A failed operation's retry waits for its timer: the queue counts as busy.
            inflight: s.queue.busy(now),
            break_release_order: self.rules.release_before_verified,
        }
    }

    /// DESIGN §2.3 rule 8 for group `g`'s unbound claim that started at `since`.
    fn contention(&self, g: GroupId, since: Instant, now: Instant) -> bool {
        let Some(c) = &self.lease.claimer else {
            return false;
        };
        let window = self.rules.contention_window;
        let status = c.status(g, now);
        let contest = Contest {
            status: &status,
            quorum: self.q_eff(now),
            me: (&self.node.name, self.rank(g, self.rules.name_hash)),
            since,
            voters_heard: self.voters_heard(|t| t + window >= now),
            window,
            promise_hold: self.rules.promise_hold,
        };
        contest.withdraw(
            |h| {
                self.view
                    .is_alive(h)
                    .then(|| self.rank(g, crate::core::hash::hash_str(h)))
            },
            now,
        )
    }

    fn rank(&self, g: GroupId, name_hash: u64) -> u64 {
        combine(self.rules.group_hash[usize::from(g)], name_hash)
    }

    fn set_phase(&mut self, g: GroupId, phase: Phase, now: Instant) {
        let s = self.groups.slot_mut(g);
        if std::mem::discriminant(&s.phase) != std::mem::discriminant(&phase) {
            s.phase_since = now;
        }
        s.phase = phase;
    }

    /// Publishes the groups this node has bound, and the most recently bound of
    /// them first (the assignment keeps groups with their holders, and gives up the
    /// most recent first).
    pub(super) fn sync_held_meta(&mut self) {
        use crate::core::wire::MAX_RECENT;
        let held = self.groups.held();
        let mut by_age: Vec<(Instant, GroupId)> = held
            .iter()
            .filter_map(|&g| match self.groups.slot(g).phase {
                Phase::Held { since, .. } => Some((since, g)),
                _ => None,
            })
            .collect();
        by_age.sort_unstable_by(|a, b| b.cmp(a));
        by_age.truncate(MAX_RECENT);
        let recent: Vec<GroupId> = by_age.into_iter().map(|(_, g)| g).collect();
        let own = self.membership.own_meta();
        if held != own.held || recent != own.recent {
            self.membership.update_meta(|m| {
                m.held = held;
                m.recent = recent;
            });
        }
    }

    fn new_op(&mut self, g: GroupId, op: KernelOp, now: Instant) {
        let id = self.kernel.issue(&op, now);
        self.groups.slot_mut(g).queue.inflight = Some(id);
        self.out.emit(Action::Kernel { id, op });
    }

    /// Carries out the ownership machine's effects for group `g`, in order.
    fn apply(&mut self, g: GroupId, fx: Vec<Effect>, now: Instant) {
        for e in fx {
            match e {
                Effect::AddClaim => {
                    if let Some(c) = &mut self.lease.claimer {
                        c.add(g);
                    }
                }
                Effect::RemoveClaim => {
                    if let Some(c) = &mut self.lease.claimer {
                        c.remove(g, now);
                    }
                }
                Effect::Probe => self.out.emit(Action::Probe { group: g }),
                Effect::Bind(deadline) | Effect::Rearm(deadline) => {
                    self.new_op(g, KernelOp::Bind { group: g, deadline }, now)
                }
                Effect::Rearmed(refreshed) => {
                    self.out.stats.rearms += 1;
                    self.out.event(Event::Rearmed {
                        group: g,
                        unrefreshed: now - refreshed,
                    });
                }
                Effect::Refresh(deadline, renew_address) => {
                    self.out.stats.refreshes += 1;
                    self.new_op(
                        g,
                        KernelOp::Refresh {
                            group: g,
                            deadline,
                            renew_address,
                        },
                        now,
                    );
                }
                Effect::Unbind => {
                    if self.groups.slot(g).queue.inflight.is_none() {
                        self.new_op(g, KernelOp::Unbind { group: g }, now);
                    }
                }
                Effect::Hint => {
                    // Sent after the claim that drops the group (end of `drive`), so
                    // the voters hear the release before the new owner asks.
                    self.groups.pending_hints.push(g);
                }
                Effect::Backoff => self.back_off(g, now),
                Effect::Announce => self.out.emit(Action::Announce { group: g }),
                Effect::Acquired(since) => {
                    let s = self.groups.slot_mut(g);
                    s.backoff_exp = 0;
                    let from = s.calm.prev.clone();
                    let since_assigned = now - s.calm.since;
                    self.out.stats.acquisitions += 1;
                    self.out.event(Event::Acquired {
                        group: g,
                        took: now - since,
                        since_assigned,
                        from,
                    });
                    self.sync_held_meta();
                }
                Effect::Released(reason) => {
                    bump(&mut self.out.stats.releases, reason.label());
                    self.out.event(Event::Released { group: g, reason });
                    self.sync_held_meta();
                }
                Effect::Fenced(reason) => {
                    bump(&mut self.out.stats.fences, reason.label());
                    self.out.event(Event::Fenced { group: g, reason });
                    self.sync_held_meta();
                }
                Effect::Conflict => {
                    self.out.stats.conflicts += 1;
                    self.out.event(Event::Conflict { group: g });
                }
            }
        }
    }

    /// Rule 8's backoff: a random wait in [R, min(R·2^k, 2 s)].
    fn back_off(&mut self, g: GroupId, now: Instant) {
        let r = self.cfg.timing.claim_period;
        let s = self.groups.slot_mut(g);
        s.backoff_exp = (s.backoff_exp + 1).min(16);
        let max = (r * (1u32 << s.backoff_exp.min(6))).min(MAX_BACKOFF).max(r);
        let span = (max - r).as_nanos() as u64;
        let extra = if span == 0 {
            0
        } else {
            self.rng.random_range(0..=span)
        };
        let s = self.groups.slot_mut(g);
        s.phase = Phase::Backoff {
            until: now + r + Duration::from_nanos(extra),
        };
        s.calm.hint = false;
        self.out.stats.withdrawals += 1;
        self.out.event(Event::Withdrew { group: g });
    }

    /// Ticks every group (or, with `only_claiming`, the claiming ones). A held
    /// group refreshes here only once its refresh is due (F); earlier refreshes ride
    /// on the claim round ([`Engine::carry_refresh`]).
    pub(super) fn tick_groups(&mut self, now: Instant, only_claiming: bool) {
        for g in self.groups.ids() {
            if only_claiming && !matches!(self.groups.slot(g).phase, Phase::Claiming { .. }) {
                continue;
            }
            self.tick_group(g, now);
        }
    }

    /// A claim round carries the refresh (§4.14): every held group refreshed at
    /// least θ ago is refreshed now.
    pub(super) fn carry_refresh(&mut self, now: Instant) {
        self.refresh_held(self.rules.round.carry_after(), now);
    }

    /// Refreshes every held group refreshed at least `age` ago (and with nothing in
    /// flight), each checked against its lease as always.
    pub(super) fn refresh_held(&mut self, age: Duration, now: Instant) {
        self.groups.refresh_round = Some(age);
        // Inside a drive the round's renewal was decided before its first tick.
        let outer = !self.groups.renew_round;
        if outer {
            self.note_renewal_due(self.held_oldest().1, now);
        }
        for g in self.groups.ids() {
            if matches!(self.groups.slot(g).phase, Phase::Held { .. }) {
                self.tick_group(g, now);
            }
        }
        self.groups.refresh_round = None;
        if outer {
            self.end_renewal_round();
        }
    }

    /// Starts a renewal round if a held group's address renewal is due (`oldest`:
    /// the oldest last renewal, from [`Engine::held_oldest`]): then every refresh
    /// issued until [`Engine::end_renewal_round`] renews too (see `renew_round`).
    pub(super) fn note_renewal_due(&mut self, oldest: Option<Instant>, now: Instant) {
        let period = self.cfg.timing.address_refresh;
        self.groups.renew_round = oldest.is_some_and(|t| now >= t + period);
    }

    pub(super) fn end_renewal_round(&mut self) {
        self.groups.renew_round = false;
    }

    fn tick_group(&mut self, g: GroupId, now: Instant) {
        self.step(g, now, |phase, ctx, fx| {
            ownership::tick(phase, ctx, now, fx)
        });
    }

    /// Ticks what needs it after an input: everything if the view or a command changed
    /// something or a group deadline (`due`) passed, else only the
    /// groups an answer, hint or kernel result touched. Returns whether anything ticked.
    pub(super) fn tick_dirty(&mut self, now: Instant, due: bool) -> bool {
        let mut ticked = false;
        if self.groups.dirty_all || due {
            self.tick_groups(now, false);
            ticked = true;
        } else if !self.groups.dirty.is_empty() {
            let mut dirty = std::mem::take(&mut self.groups.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for &g in &dirty {
                self.tick_group(g, now);
            }
            dirty.clear();
            self.groups.dirty = dirty;
            ticked = true;
        }
        self.groups.dirty_all = false;
        self.groups.dirty.clear();
        ticked
    }

    /// The oldest last refresh among held groups with nothing in flight.
    pub(super) fn oldest_refresh(&self) -> Option<Instant> {
        self.held_oldest().0
    }

    /// The oldest last refresh and the oldest last address renewal among held
    /// groups with nothing in flight (one pass over the groups).
    pub(super) fn held_oldest(&self) -> (Option<Instant>, Option<Instant>) {
        let mut oldest: (Option<Instant>, Option<Instant>) = (None, None);
        for s in &self.groups.slots {
            if let Phase::Held {
                refreshed,
                address_renewed,
                ..
            } = s.phase
                && s.queue.inflight.is_none()
            {
                oldest.0 = Some(oldest.0.map_or(refreshed, |t| t.min(refreshed)));
                oldest.1 = Some(oldest.1.map_or(address_renewed, |t| t.min(address_renewed)));
            }
        }
        oldest
    }

    /// Sets the group timers from every group's next deadline.
    pub(super) fn schedule_groups(&mut self, now: Instant) {
        let next = self
            .groups
            .slots
            .iter()
            .filter_map(|s| self.next_tick_of(s, now))
            .min();
        self.timers.set(Timer::Groups, next);
    }

    fn next_tick_of(&self, s: &Slot, now: Instant) -> Option<Instant> {
        let q = self.rules.quiescence;
        match s.phase {
            Phase::Free => None,
            Phase::Waiting { .. } => Some(s.calm.ends(q)),
            Phase::Claiming { since } => {
                let w = self.rules.contention_window;
                Some(if now < since + w {
                    since + w
                } else {
                    now + self.cfg.timing.claim_period
                })
            }
            Phase::Probing { .. } | Phase::Binding { .. } => None,
            Phase::Held { .. } if s.queue.inflight.is_some() => None,
            Phase::Held { refreshed, .. } => {
                let r = refreshed + self.rules.round.refresh_period();
                // Also wake when a moved group's calm period ends.
                if s.calm.owned_by(&self.node.name) {
                    Some(r)
                } else {
                    Some(s.calm.ends(q).min(r))
                }
            }
            Phase::Fencing { .. } | Phase::Releasing { .. } => s.queue.next_try(now),
            Phase::Backoff { until } => Some(until),
        }
    }

    /// The view or metadata changed: recompute every group's designated owner and
    /// restart the quiescence windows it affects.
    pub(super) fn recompute_assignment(&mut self, now: Instant, view_changed: bool) {
        self.out.stats.view_changes += 1;
        let owners = self.assignment(now);
        let mut restarted = 0;
        for (g, owner) in owners.into_iter().enumerate() {
            let view = &self.view;
            if self.groups.slots[g].calm.assign(
                owner,
                |n| view.holder_sig(n),
                self.rules.incarnation_aware,
                now,
            ) {
                restarted += 1;
            }
        }
        self.out.stats.quiescence_waits += restarted;
        if view_changed {
            let members = self.view.active().count() + 1;
            self.out.event(Event::ViewChanged { members });
            // Re-announce held groups so neighbours' caches follow a changed view.
            for g in self.groups.held() {
                self.out.emit(Action::Announce { group: g });
            }
        }
    }

    /// The designated owner of each of this node's groups (slots). When every
    /// candidate runs this node's table, the assignment runs on it as it is; when
    /// tables differ, on their union, each group restricted to the candidates that
    /// have it configured (DESIGN §4). A candidate whose table is not known yet is
    /// taken to run this node's, and its table is asked for.
    fn assignment(&mut self, now: Instant) -> Vec<Option<String>> {
        let own = self.membership.own_meta().clone();
        let (mut cands, digests): (Vec<_>, Vec<_>) =
            self.view.candidates(&own, &self.cfg).into_iter().unzip();
        // The members' tables are in use: keep them ahead of old ones in the cache.
        for d in &digests {
            self.lease.tables.touch(d, now);
        }
        let mut unknown = Vec::new();
        let tables: Vec<Option<&[VipGroup]>> = digests
            .iter()
            .zip(&cands)
            .map(|(d, c)| {
                if *d == self.lease.table {
                    return None;
                }
                let t = self.lease.tables.peek(d);
                if t.is_none() {
                    unknown.push((c.name.clone(), *d));
                }
                t
            })
            .collect();
        let owners = match table::union(&self.cfg.groups, &tables, &mut cands) {
            None => assign::assign(&self.rules.group_hash, &cands)
                .into_iter()
                .map(|r| r.map(|i| cands[i].name.clone()))
                .collect(),
            Some(u) => {
                let hashes: Vec<u64> = u
                    .groups
                    .iter()
                    .map(|g| assign::group_hash(&g.key()))
                    .collect();
                let allowed = |g: usize, c: usize| u.serves[c].contains(&g);
                let r = assign::assign_masked(&hashes, &cands, Some(&allowed));
                u.own
                    .iter()
                    .enumerate()
                    .map(|(g, ix)| {
                        ix.filter(|_| !self.groups.slot(g as GroupId).retiring)
                            .and_then(|i| r[i])
                            .map(|c| cands[c].name.clone())
                    })
                    .collect()
            }
        };
        for (name, d) in unknown {
            if self.lease.tables.should_request(&d, now) {
                for a in self.view.active_addrs_of(&name) {
                    self.out.send(a, &Body::TableRequest(d));
                }
            }
        }
        owners
    }

    /// This node's slot for group `g` of the table with digest `d` (the same group:
    /// the same addresses), if this node has it and knows that table.
    pub(super) fn own_slot(
        &mut self,
        g: GroupId,
        d: &table::TableDigest,
        now: Instant,
    ) -> Option<GroupId> {
        if *d == self.lease.table {
            return (usize::from(g) < self.cfg.groups.len()).then_some(g);
        }
        let group = self.lease.tables.get(d, now)?.get(usize::from(g))?.clone();
        self.cfg
            .groups
            .iter()
            .position(|x| *x == group && !x.vips.is_empty())
            .map(|i| i as GroupId)
    }

    /// A release hint from the previous holder of `group`.
    pub(super) fn on_release_hint(&mut self, group: GroupId, who: &str, now: Instant) {
        let me = self.node.name.as_str();
        let Some(s) = self.groups.get_mut(group) else {
            self.out.drop("unknown_group");
            return;
        };
        if !s.calm.owned_by(me) || who == me {
            return;
        }
        s.calm.release_hint(now);
        match s.phase {
            Phase::Backoff { .. } => s.phase = Phase::Backoff { until: now },
            Phase::Claiming { .. } => {
                // The voters have just freed it: ask again now.
                if let Some(c) = &mut self.lease.claimer {
                    c.mark_urgent();
                }
            }
            _ => {}
        }
        self.groups.dirty.push(group);
    }

    /// Sends the pending release hints to each group's new designated owner.
    pub(super) fn send_hints(&mut self) {
        for g in std::mem::take(&mut self.groups.pending_hints) {
            let Some(owner) = self
                .groups
                .slot(g)
                .calm
                .owner
                .clone()
                .filter(|o| *o != self.node.name)
            else {
                continue;
            };
            let addrs: Vec<SocketAddr> = self.view.active_addrs_of(&owner);
            for a in addrs {
                self.out.send(
                    a,
                    &Body::Released {
                        group: g,
                        from: self.node.name.clone(),
                        table: self.lease.table,
                    },
                );
            }
        }
    }

    /// The clock jumped (a suspend was detected): unbind everything first.
    pub fn handle_clock_jump(&mut self, now: Instant) {
        for g in self.groups.ids() {
            if let Phase::Held { .. } | Phase::Binding { .. } = self.groups.slot(g).phase {
                let reason = FenceReason::ClockJump;
                self.set_phase(g, Phase::Fencing { reason }, now);
                let mut fx = vec![Effect::Fenced(reason)];
                if self.groups.slot(g).queue.inflight.is_none() {
                    fx.push(Effect::Unbind);
                }
                self.apply(g, fx, now);
            }
        }
        self.groups.dirty_all = true;
        self.drive(now);
    }
}
