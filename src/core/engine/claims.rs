//! The lease glue: claims out (to every voter, the self-vote first), claims in (as a
//! voter, after the identity checks), answers in (as a claimer).

use std::net::SocketAddr;

use super::outbox::bump;
use super::timers::Timer;
use super::{Engine, Life};
use crate::core::config::QuorumMode;
use crate::core::lease::riding::Ride;
use crate::core::lease::{Answer, ByIndex, Claim, Ignored};
use crate::core::table::{self, TableDigest};
use crate::core::time::Instant;
use crate::core::wire::{self, Body, WireError};

impl Engine {
    /// Whether claims go out (the claimer wants something, or lingers after a release
    /// so voters free the group at once; always in two-node mode).
    pub(super) fn claims_flowing(&self) -> bool {
        let Some(c) = &self.lease.claimer else {
            return false;
        };
        let next = self.timers.get(Timer::Claim);
        matches!(self.local.life, Life::Running | Life::Leaving)
            && (next.is_some_and(|t| c.active(t, self.rules.promise_hold))
                || self.cfg.quorum == QuorumMode::Off)
    }

    /// The grants that make a lease at `now`.
    pub(super) fn q_eff(&self, now: Instant) -> usize {
        self.rules
            .lease_quorum
            .unwrap_or_else(|| match self.cfg.quorum {
                QuorumMode::Majority => self.cfg.quorum_size(),
                QuorumMode::Off => self.presence.quorum(self.local.running_since, now),
            })
    }

    pub(super) fn on_claim(&mut self, from: SocketAddr, c: Claim, now: Instant) {
        if self.presence.on_claim(&c.name, c.nonce, now) {
            self.groups.dirty_all = true;
        }
        if !self.cfg.may_hold(&c.name) {
            bump(&mut self.out.stats.claims_ignored, "not_allowed_to_hold");
            return;
        }
        if c.name == self.node.name {
            if self
                .lease
                .claimer
                .as_ref()
                .is_some_and(|me| me.nonce() != c.nonce)
            {
                self.note_collision(&format!("a claim from {from}"), now);
            }
            bump(&mut self.out.stats.claims_ignored, "own_name");
            return;
        }
        if self.view.is_colliding(&c.name) {
            bump(&mut self.out.stats.claims_ignored, "name_collision");
            return;
        }
        if self.name_collision(now) {
            // Another process votes under our name: we vote for nobody.
            bump(&mut self.out.stats.claims_ignored, "name_collision");
            self.answer_empty(from, &c);
            return;
        }
        if self.lease.voter.is_none() {
            bump(&mut self.out.stats.claims_ignored, "not_a_voter");
            return;
        }
        if !self.view.lease_identity_live(&c.name, c.nonce) {
            // Not a process any active member is: a replay of a dead process's
            // claims (or a new process whose metadata has not arrived yet). Promise
            // nothing; an empty answer keeps a genuine newcomer claiming.
            bump(&mut self.out.stats.claims_ignored, "stale_identity");
            self.answer_empty(from, &c);
            return;
        }
        if self.rules.heartbeat {
            // The claim is the holder's heartbeat (§4.16).
            if self.heartbeats.claim(&c.name, !c.groups.is_empty(), now) {
                self.membership.vouch(&c.name);
            }
        }
        let Some(v) = &mut self.lease.voter else {
            return;
        };
        // The claim's indices mean groups of the claimer's table: this node's own, or
        // one fetched from the claimer; without it, promise nothing yet and ask.
        let by_index = self.rules.promise_per_group;
        let resolved = if c.table == self.lease.table {
            if by_index {
                v.handle_claim(&c, &ByIndex(&self.cfg.groups), now)
            } else {
                v.handle_claim(&c, &self.cfg.groups[..], now)
            }
        } else if let Some(t) = self.lease.tables.get(&c.table, now) {
            if by_index {
                v.handle_claim(&c, &ByIndex(t), now)
            } else {
                v.handle_claim(&c, t, now)
            }
        } else {
            bump(&mut self.out.stats.claims_ignored, "unknown_table");
            if self.lease.tables.should_request(&c.table, now) {
                self.out.send(from, &Body::TableRequest(c.table));
            }
            self.answer_empty(from, &c);
            return;
        };
        match resolved {
            Ok(answer) => {
                let renewal = self
                    .lease
                    .voter
                    .as_ref()
                    .is_some_and(|v| v.last_was_renewal());
                self.answer_or_ride(from, answer, renewal, now);
            }
            Err(Ignored::StartupWait) => {
                // "Alive, but granting nothing yet".
                bump(&mut self.out.stats.claims_ignored, "startup_wait");
                self.answer_empty(from, &c);
            }
            Err(why) => bump(
                &mut self.out.stats.claims_ignored,
                match why {
                    Ignored::StartupWait => "startup_wait",
                    Ignored::StaleSeq => "stale_seq",
                    Ignored::UnknownGroup => "unknown_group",
                    Ignored::TooManyClaimers => "too_many_claimers",
                },
            ),
        }
    }

    /// A member asks for a group table by digest: this node's own, or one it holds,
    /// in parts. At most once per digest and asker per period, and only for the few
    /// tables this node holds (only members holding the key can ask at all).
    pub(super) fn on_table_request(&mut self, from: SocketAddr, d: TableDigest, now: Instant) {
        if !self.anti_entropy.may_answer_table(from, d, now) {
            self.out.drop("table_request_rate");
            return;
        }
        let groups = if d == self.lease.table {
            Some(self.cfg.groups.clone())
        } else {
            self.lease.tables.get(&d, now).map(<[_]>::to_vec)
        };
        match groups.as_deref().and_then(table::split) {
            Some(parts) => {
                for p in parts {
                    self.out.send(from, &Body::Table(p));
                }
            }
            None => self.out.drop("table_unknown"),
        }
    }

    /// One part of a group table.
    pub(super) fn on_table_part(&mut self, part: table::TablePart, now: Instant) {
        match self.lease.tables.offer(part, now) {
            // A member's holdings and groups may read differently now.
            Ok(Some(_)) => self.groups.reassign = true,
            Ok(None) => {}
            Err(table::BadPart::Malformed) => self.out.drop("table_malformed"),
            Err(table::BadPart::DigestMismatch) => self.out.drop("table_digest_mismatch"),
        }
    }

    /// An answer goes out now, or waits to ride on this node's next claim to the
    /// same peer, or makes that claim go out now (§4.13, `lease/riding.rs`).
    fn answer_or_ride(&mut self, to: SocketAddr, answer: Answer, renewal: bool, now: Instant) {
        let targeted = renewal && self.claims_flowing() && self.voter_addrs().contains(&to);
        let next = self.timers.get(Timer::Claim);
        match self.lease.riding.decide(renewal, targeted, next, now) {
            Ride::Now => self.send_answer(to, answer),
            Ride::Wait => self.lease.riding.hold(to, answer, now),
            Ride::ClaimNow => {
                self.lease.riding.hold(to, answer, now);
                if let Some(c) = &mut self.lease.claimer {
                    c.mark_urgent();
                }
            }
        }
    }

    /// Held answers whose wait is over go out alone; all of them once claims stop.
    pub(super) fn flush_rides(&mut self, now: Instant) {
        if self.lease.riding.is_empty() {
            return;
        }
        let all = !self.claims_flowing();
        for (to, a) in self.lease.riding.due(now, all) {
            self.out.stats.answers_alone += 1;
            self.send_answer(to, a);
        }
    }

    /// Denies are advice (they steer contention backoff); grants are what counts.
    /// Should naming every holder not fit one datagram, name fewer.
    fn send_answer(&mut self, to: SocketAddr, answer: Answer) {
        let mut body = Body::Answer(answer);
        loop {
            let encoded = wire::encode(self.rules.cluster_id, &body);
            match (encoded, &mut body) {
                (Err(WireError::Oversize), Body::Answer(a)) if !a.denied.is_empty() => {
                    let keep = a.denied.len() / 2;
                    a.denied.truncate(keep);
                    self.out.drop("denies_trimmed");
                }
                (r, _) => break self.out.send_encoded(to, r),
            }
        }
    }

    pub(super) fn on_answer(&mut self, from: SocketAddr, a: Answer, now: Instant) {
        // The answer names its voter by index in the voter's own set (which a reload
        // step may have moved ahead of this node's or left behind it).
        let own = self.cfg.voters_digest();
        let voters = if a.set == own {
            &self.cfg.voters
        } else if let Some(s) = self.lease.sets.get(a.set) {
            &s.voters
        } else {
            if self.lease.sets.should_request(a.set, now) {
                self.out.send(from, &Body::VoterSetRequest(a.set));
            }
            self.out.drop("unknown_voter_set");
            return;
        };
        // Every index from the wire is checked before anything uses it (a voter's
        // answer is authenticated, not trusted to be well-formed).
        if let Err(why) = a.validate(self.groups.len(), voters.len()) {
            self.out.drop(why);
            return;
        }
        let voter_name = voters[usize::from(a.voter)].clone();
        if self.view.is_colliding(&voter_name) {
            self.out.drop("name_collision");
            return;
        }
        let Some(c) = &mut self.lease.claimer else {
            self.out.drop("answer_not_claiming");
            return;
        };
        if !c.handle_answer(&a, &voter_name) {
            self.out.drop("stale_answer");
            return;
        }
        self.lease.sets.touch(a.set, now);
        self.groups.dirty.extend(a.granted.iter().copied());
        self.groups.dirty.extend(a.denied.iter().map(|(g, _)| *g));
        if self.presence.is_peer(&voter_name) {
            self.presence.heard(now);
        }
        self.lease.heard.insert(voter_name, now);
    }

    /// Voters of this node's own set whose last answer passes `fresh`.
    pub(super) fn voters_heard(&self, fresh: impl Fn(Instant) -> bool) -> usize {
        self.lease
            .heard
            .iter()
            .filter(|&(n, &t)| self.cfg.voter_index(n).is_some() && fresh(t))
            .count()
    }

    /// `claim` with `answer` riding on it; should both not fit one datagram, each
    /// goes alone.
    fn send_claim_with(&mut self, to: SocketAddr, claim: &Claim, answer: Answer) {
        let with = Body::ClaimWith(claim.clone(), answer);
        match wire::encode(self.rules.cluster_id, &with) {
            Err(WireError::Oversize) => {
                if let Body::ClaimWith(c, a) = with {
                    self.out.send(to, &Body::Claim(c));
                    self.send_answer(to, a);
                }
            }
            r => {
                self.out.stats.answers_rode += 1;
                self.out.send_encoded(to, r);
            }
        }
    }

    /// Answers `claim` with [`Answer::empty`] (if this node is a voter).
    pub(super) fn answer_empty(&mut self, to: SocketAddr, claim: &Claim) {
        if let Some(v) = &self.lease.voter {
            let answer = Answer::empty(v.index(), v.set(), claim);
            self.out.send(to, &Body::Answer(answer));
        }
    }

    /// Where each other voter is: the freshest identity carrying its name. The voters
    /// are this node's own and those of every set a live member runs (a reload step
    /// rolling through: a lease needs a majority of each set its grants name). In
    /// two-node mode, with the peer not in the view yet, every seed: so a peer that
    /// holds alone hears us even if our SWIM announce was lost.
    pub(super) fn voter_addrs(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for v in self.claim_targets() {
            if *v == self.node.name {
                continue;
            }
            if let Some(a) = self.view.freshest_addr(v) {
                out.push(a);
            } else if self.presence.is_peer(v) {
                out.extend(self.membership.seeds().iter().copied());
            }
        }
        out
    }

    /// One claim round: the self-vote through the voter's own path (rule 4), then the
    /// claim to every other voter.
    pub(super) fn send_claim(&mut self, now: Instant) {
        let Some(c) = &mut self.lease.claimer else {
            return;
        };
        let claim = c.next_claim(now);
        self.out.stats.claims_sent += 1;
        if let Some(v) = &mut self.lease.voter {
            let ans = if self.rules.promise_per_group {
                v.handle_claim(&claim, &ByIndex(&self.cfg.groups), now)
            } else {
                v.handle_claim(&claim, &self.cfg.groups[..], now)
            };
            if let Ok(ans) = ans
                && let Some(c) = &mut self.lease.claimer
            {
                c.handle_answer(&ans, &self.node.name);
            }
            self.lease.heard.insert(self.node.name.clone(), now);
        }
        let mut body = None;
        for addr in self.voter_addrs() {
            match self.lease.riding.take(addr) {
                Some(a) => self.send_claim_with(addr, &claim, a),
                None => self
                    .out
                    .send(addr, body.get_or_insert_with(|| Body::Claim(claim.clone()))),
            }
        }
        self.lease.riding.claimed(now);
        self.timers
            .set(Timer::Claim, now + self.cfg.timing.claim_period);
    }
}
