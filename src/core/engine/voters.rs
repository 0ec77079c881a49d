//! Voter sets that change by reload (DESIGN §4; `docs/safety.md` §4.12): the step
//! rule's inputs (which set each member runs, and since when), the sets answers
//! name, and applying a step to this node's voter and claimer.

use std::net::SocketAddr;

use super::Engine;
use crate::core::config::QuorumMode;
use crate::core::lease::sets::{self, Seen};
use crate::core::lease::{Voter, VoterSet};
use crate::core::time::Instant;
use crate::core::wire::Body;

impl Engine {
    /// After a view change: records since when each member has gossiped its voter
    /// set, and asks for sets this node does not know yet.
    pub(super) fn note_voter_sets(&mut self, now: Instant) {
        let mut unknown = Vec::new();
        for m in self.view.active() {
            let Some(meta) = &m.meta else { continue };
            let d = meta.config.voters;
            let e = self
                .lease
                .seen_sets
                .entry(m.id.name.clone())
                .or_insert((d, now, None));
            if e.0 != d {
                *e = (d, now, Some((e.0, e.1)));
            }
            if d != 0 && d != self.cfg.voters_digest() && self.lease.sets.get(d).is_none() {
                unknown.push((m.id.addr, d));
            }
        }
        let members = self.membership.members();
        let names: std::collections::BTreeSet<&str> =
            members.iter().map(|m| m.id.name.as_str()).collect();
        self.lease
            .seen_sets
            .retain(|n, _| names.contains(n.as_str()));
        for (addr, d) in unknown {
            self.lease.sets.touch(d, now);
            if self.lease.sets.should_request(d, now) {
                self.out.send(addr, &Body::VoterSetRequest(d));
            }
        }
    }

    /// The voters claims go to: this node's own and those of every set a live
    /// member runs.
    pub(super) fn claim_targets(&self) -> Vec<&String> {
        let mut out: Vec<&String> = self.cfg.voters.iter().collect();
        for (d, _, _) in self.lease.seen_sets.values() {
            if let Some(s) = self.lease.sets.get(*d) {
                out.extend(&s.voters);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// A member asks for a voter set by digest: this node's own or one it holds.
    pub(super) fn on_voter_set_request(&mut self, from: SocketAddr, d: u64, now: Instant) {
        let mut key = [0x56; 16];
        key[..8].copy_from_slice(&d.to_le_bytes());
        if !self.anti_entropy.may_answer_table(from, key, now) {
            self.out.drop("table_request_rate");
            return;
        }
        let set = if d == self.cfg.voters_digest() {
            Some(self.cfg.voter_set())
        } else {
            self.lease.sets.get(d).cloned()
        };
        match set {
            Some(s) => self.out.send(from, &Body::VoterSet(s)),
            None => self.out.drop("voter_set_unknown"),
        }
    }

    /// Whether this node may move to voter set `new` now (the step rule,
    /// [`sets::may_step`]); `Err` says why not.
    pub fn check_voters(&self, new: &VoterSet, now: Instant) -> Result<(), String> {
        let cur = self.cfg.voter_set();
        if cur == *new {
            return Ok(());
        }
        if self.cfg.quorum == QuorumMode::Off {
            return Err(format!(
                "voters: {:?} → {:?}: in two-node mode the two nodes are the voters; changing them needs a restart",
                cur.voters, new.voters
            ));
        }
        if self.rules.voter_settle_off {
            return sets::step(&cur, new, &self.node.name);
        }
        let own = self.cfg.voters_digest();
        let new_digest = new.digest();
        let members: Vec<Seen<'_>> = self
            .view
            .active()
            .filter(|m| m.id.name != self.node.name)
            .map(|m| {
                let (digest, since, prev) = self
                    .lease
                    .seen_sets
                    .get(&m.id.name)
                    .copied()
                    .unwrap_or((0, now, None));
                let set = if digest == own {
                    Some(&cur)
                } else if digest == new_digest {
                    Some(new)
                } else {
                    self.lease.sets.get(digest)
                };
                Seen {
                    name: &m.id.name,
                    set,
                    digest,
                    since,
                    prev,
                }
            })
            .collect();
        let me = Seen {
            name: &self.node.name,
            set: Some(&cur),
            digest: own,
            since: self.lease.voters_since,
            prev: self.lease.voters_prev,
        };
        sets::may_step(&me, &cur, new, &members, now, self.rules.promise_hold)
    }

    /// Moves this node to voter set `new` (after [`Engine::check_voters`] passed):
    /// a node that joins the voters starts a fresh voter that grants nothing for
    /// W; one that leaves them stops voting; the claimer's own quorum follows.
    pub fn set_voters(&mut self, new: VoterSet, now: Instant) -> Result<(), String> {
        self.check_voters(&new, now)?;
        let old = self.cfg.voter_set();
        if old == new {
            return Ok(());
        }
        let old_digest = old.digest();
        self.lease.sets.insert(old, now);
        self.cfg.voters = new.voters.clone();
        self.cfg.witnesses = new.witnesses.clone();
        self.lease.voters_prev = Some((old_digest, self.lease.voters_since));
        self.lease.voters_since = now;
        let digest = new.digest();
        match (self.cfg.voter_index(&self.node.name), &mut self.lease.voter) {
            (Some(i), Some(v)) => v.set_seat(i as u16, digest),
            (Some(i), None) => {
                let mut v = Voter::new(
                    i as u16,
                    &self.node.name,
                    self.rules.promise_hold,
                    self.rules.restart_wait,
                    false,
                    now,
                );
                v.set_seat(i as u16, digest);
                self.lease.voter = Some(v);
            }
            (None, _) => self.lease.voter = None,
        }
        if let Some(c) = &mut self.lease.claimer {
            c.set_voters(&new);
        }
        debug_assert_ne!(old_digest, digest);
        self.membership.update_meta(|m| m.config.voters = digest);
        // Tell every member now: the set (so answers naming it resolve at once) and
        // the metadata (so the step rule elsewhere sees this node's move).
        let meta = Body::Meta(self.membership.own_meta().clone());
        let body = Body::VoterSet(new);
        let to: Vec<_> = self.view.active().map(|m| m.id.addr).collect();
        for a in to {
            self.out.send(a, &body);
            self.out.send(a, &meta);
        }
        self.groups.reassign = true;
        self.drive(now);
        Ok(())
    }
}
