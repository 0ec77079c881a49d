//! This process's life: the start-up flush and wait (DESIGN §2.3 rule 3), fail-back
//! eligibility, the metadata it gossips, name collisions (rule 1), a clock behind
//! (superseded identity), stalls of its own, and the graceful leave.

use super::timers::Timer;
use super::{Action, COLLISION_HOLD, Engine, Event, KernelOp, Life};
use crate::core::config::QuorumMode;
use crate::core::lease::Voter;
use crate::core::ownership::KernelOutcome;
use crate::core::time::Instant;
use crate::core::wire::{self, Body};
use std::net::SocketAddr;

impl Engine {
    /// Any input at `now` (see [`Presence::note_input`](crate::core::presence::Presence::note_input)).
    pub(super) fn note_input(&mut self, now: Instant) {
        if self
            .presence
            .note_input(self.local.life == Life::Running, now)
        {
            self.groups.dirty_all = true;
        }
    }

    pub(super) fn issue_flush(&mut self, now: Instant) {
        let op = KernelOp::Flush;
        let id = self.kernel.issue(&op, now);
        self.out.emit(Action::Kernel { id, op });
    }

    /// The start-up flush finished: start running, or retry it on a timer.
    pub(super) fn flush_done(&mut self, outcome: KernelOutcome, now: Instant) {
        if outcome == KernelOutcome::Ok {
            self.start_running(now);
        } else {
            self.out
                .warn(format!("start-up flush failed: {outcome:?}; retrying"));
            self.timers
                .set(Timer::FlushRetry, now + super::kernel::KERNEL_RETRY);
        }
    }

    fn start_running(&mut self, now: Instant) {
        self.local.life = Life::Running;
        self.groups.dirty_all = true;
        self.local.running_since = now;
        self.timers
            .set(Timer::Eligible, now + self.cfg.timing.failback_delay);
        let wait = self.rules.restart_wait;
        if let Some(i) = self.cfg.voter_index(&self.node.name) {
            let mut v = Voter::new(
                i as u16,
                &self.node.name,
                self.rules.promise_hold,
                wait,
                self.cfg.quorum == QuorumMode::Off,
                now,
            );
            v.set_seat(i as u16, self.cfg.voters_digest());
            self.lease.voter = Some(v);
        }
        self.lease.voters_since = now;
        self.out.event(Event::Started {
            voting_from: now + wait,
        });
        self.membership.start(now);
        self.drive(now);
    }

    /// Fail-back: a node makes itself eligible after it has been up for the fail-back
    /// delay, or as soon as it has settled and sees no eligible member (cold start).
    pub(super) fn update_eligibility(&mut self, now: Instant) {
        if self.local.eligible || self.local.life != Life::Running {
            return;
        }
        let settle = self.cfg.timing.gossip_period * 3;
        if self.timers.due(Timer::Eligible, now)
            || (now >= self.local.running_since + settle && !self.view.someone_eligible())
        {
            self.local.eligible = true;
            self.refresh_meta();
        }
    }

    /// Publishes eligibility and draining; on a change, tells every member at once
    /// rather than by gossip: a handover is only as fast as the new owner learns it
    /// is the owner.
    pub(super) fn refresh_meta(&mut self) {
        let l = &self.local;
        let eligible = l.eligible
            && l.healthy
            && self.timers.get(Timer::CollisionEnd).is_none()
            && self.node.eligible
            && !l.draining
            && l.life == Life::Running
            && self.cfg.may_hold(&self.node.name)
            && (l.unable.is_empty()
                || (l.unable.len() < self.cfg.groups.len()
                    && wire::group_set::payload_len(&l.unable) <= wire::MAX_UNABLE_BYTES));
        let draining = l.draining || l.life == Life::Leaving;
        // A node ineligible altogether has nothing to say per group.
        let unable = if eligible {
            l.unable.clone()
        } else {
            Vec::new()
        };
        let before = self.membership.own_meta();
        let changed =
            (before.eligible, before.draining, &before.unable) != (eligible, draining, &unable);
        self.membership.update_meta(|m| {
            m.eligible = eligible;
            m.draining = draining;
            m.unable = unable;
        });
        if changed {
            let meta = Body::Meta(self.membership.own_meta().clone());
            let to: Vec<_> = self.view.active().map(|m| m.id.addr).collect();
            for a in to {
                self.out.send(a, &meta);
            }
        }
    }

    /// A datagram of another cluster id or wire version: dropped (and counted) by the
    /// caller, and said in the log at most once per [`STRANGER_WARN_PERIOD`] — a node
    /// whose shared settings differ from its peers' otherwise just sits alone, not
    /// ready, with nothing in its log to say why.
    pub(super) fn note_stranger(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let Some(n) = self.strangers.hit(now) else {
            return;
        };
        let Some((version, id)) = wire::header(bytes) else {
            return;
        };
        let more = if n > 1 {
            format!(" ({n} such datagrams since the last warning)")
        } else {
            String::new()
        };
        self.out.warn(if version != wire::VERSION {
            format!(
                "dropping datagrams from {from}: wire version {version}, this agent speaks {}{more}; run releases that speak the same wire version on every node",
                wire::VERSION
            )
        } else {
            format!(
                "dropping datagrams from {from}: they belong to cluster {id:016x}, this node to {:016x}{more}; the nodes' shared settings differ (--profile or its timing, --quorum, --fence, --rho; with --quorum off also --voters): compare the `cluster id` line of `wackamole check-config` on both",
                self.rules.cluster_id
            )
        });
    }

    /// A sign that another process runs under this node's name: hold nothing, claim
    /// nothing and vote for nobody until [`COLLISION_HOLD`] after the last sign.
    pub(super) fn note_collision(&mut self, why: &str, now: Instant) {
        if !self.name_collision(now) {
            self.out.stats.name_collisions += 1;
            self.out.warn(format!(
                "another agent runs with the node name {:?} ({why}): this one holds nothing, claims nothing and votes for nobody until it is gone; give every node its own name",
                self.node.name
            ));
            self.groups.dirty_all = true;
            self.timers.set(Timer::CollisionEnd, now + COLLISION_HOLD);
            self.refresh_meta();
        }
        self.timers.set(Timer::CollisionEnd, now + COLLISION_HOLD);
    }

    /// Another process under our name as a member at another address; or the end of
    /// a collision.
    pub(super) fn check_collision(&mut self, now: Instant) {
        let me = self.node.name.as_str();
        let other = self
            .view
            .active()
            .find(|m| m.id.name == me)
            .map(|m| m.id.addr);
        if let Some(other) = other {
            self.note_collision(&format!("a member at {other}"), now);
        } else if self.timers.due(Timer::CollisionEnd, now) {
            self.timers.set(Timer::CollisionEnd, None);
            self.groups.dirty_all = true;
            self.refresh_meta();
            self.out.warn(format!(
                "no other agent named {:?} seen for {} s: holding and voting again",
                self.node.name,
                COLLISION_HOLD.as_secs()
            ));
        }
    }

    /// A peer holds metadata of ours with a newer generation: our wall clock was
    /// behind at start. Renew the SWIM identity above it.
    pub(super) fn on_superseded(&mut self, generation: u64, now: Instant) {
        if generation > self.membership.own_meta().generation {
            let epoch = self.membership.supersede(generation, now);
            self.out.warn(format!(
                "a predecessor of {} had a newer generation ({generation}): is the wall clock behind? Identity renewed at {epoch}",
                self.node.name
            ));
            self.groups.dirty_all = true;
        }
    }

    /// Graceful leave: release every group, then leave the cluster.
    pub fn leave(&mut self, now: Instant) {
        match self.local.life {
            Life::Flushing => {
                self.local.life = Life::Left;
                self.out.event(Event::Left);
            }
            Life::Running => {
                self.local.life = Life::Leaving;
                self.groups.dirty_all = true;
                self.refresh_meta();
                self.drive(now);
            }
            Life::Leaving | Life::Left => {}
        }
    }

    /// Every group is released: the last claim (without them), the hints, the leave
    /// notice (two-node mode) and SWIM's leave.
    pub(super) fn finish_leave(&mut self, now: Instant) {
        if !self.local.leave_claim_sent {
            self.local.leave_claim_sent = true;
            self.send_claim(now);
        }
        self.send_hints();
        if let (Some(c), Some(_)) = (&self.lease.claimer, self.presence.peer()) {
            let body = Body::Leaving {
                name: self.node.name.clone(),
                nonce: c.nonce(),
            };
            for addr in self.voter_addrs() {
                self.out.send(addr, &body);
            }
        }
        self.membership.leave(now);
        for (to, data) in self.membership.take_sends() {
            self.send_swim(to, data);
        }
        self.local.life = Life::Left;
        self.out.event(Event::Left);
    }
}
