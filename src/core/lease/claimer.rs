//! The holder side of the lease (DESIGN §2.3 rules 2, 5, 7): claims, answers and
//! the lease they add up to.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::{Answer, Claim, MAX_SENT_CLAIMS, VoterSet};
use crate::core::config::GroupId;
use crate::core::table::TableDigest;
use crate::core::time::Instant;

/// Most distinct voter names a claimer tracks grants from (its own set's and those
/// of sets one reload step away).
pub const MAX_VOTER_SLOTS: usize = 4 * crate::core::config::MAX_VOTERS;
/// Most distinct voter sets one lease may rest on (more is refused: no lease).
const MAX_SETS_PER_LEASE: usize = 8;

/// Per-group claim state at the claimer.
#[derive(Clone, Debug)]
struct Wanted {
    /// a(g): the seq of the claim that (re-)added the group.
    added_seq: u64,
    /// Latest counting grant per voter slot: (seq, digest of the voter's set then).
    grants: Vec<Option<(u64, u64)>>,
    /// Latest deny per voter slot: (seq, holder name).
    denies: Vec<Option<(u64, String)>>,
}

fn slot_mut<T: Clone>(v: &mut Vec<Option<T>>, i: usize) -> &mut Option<T> {
    if v.len() <= i {
        v.resize(i + 1, None);
    }
    &mut v[i]
}

/// What the claimer knows about one group's claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimStatus {
    /// Voters whose latest answer (for a claim listing the group) granted it.
    pub grants: usize,
    /// Holders named by voters whose latest answer denied it.
    pub deny_holders: Vec<String>,
}

/// The holder side of the lease.
#[derive(Debug)]
pub struct Claimer {
    name: String,
    nonce: u64,
    seq: u64,
    /// Voter names by slot: every voter an answer came from.
    voters: Vec<String>,
    /// Per slot: whether that voter is in this node's own set.
    in_own: Vec<bool>,
    /// This node's own voter set (what q counts) and its digest.
    own: VoterSet,
    own_digest: u64,
    validity: Duration,
    sent: VecDeque<(u64, Instant)>,
    groups: BTreeMap<GroupId, Wanted>,
    /// Whether a claim should go out now rather than at the next period.
    urgent: bool,
    /// When the claimed set last shrank (claims keep flowing for a while after).
    last_shrink: Option<Instant>,
    /// The digest of the group table the claimed indices refer to.
    table: TableDigest,
}

impl Claimer {
    /// A claimer with a fresh `nonce` counting grants of the voters of `own`.
    /// `validity` is T(1 − 2ρ).
    pub fn new(name: &str, nonce: u64, own: &VoterSet, validity: Duration) -> Claimer {
        Claimer {
            name: name.to_string(),
            nonce,
            seq: 0,
            voters: Vec::new(),
            in_own: Vec::new(),
            own_digest: own.digest(),
            own: own.clone(),
            validity,
            sent: VecDeque::new(),
            groups: BTreeMap::new(),
            urgent: false,
            last_shrink: None,
            table: [0; 16],
        }
    }

    /// The group table the indices of the next claims refer to. Indices keep their
    /// meaning across tables for every group still claimed (tables change only by
    /// adding groups and retiring released ones), and a re-added index counts grants
    /// only from claims after it was added, so answers to earlier claims stay sound.
    pub fn set_table(&mut self, table: TableDigest) {
        if self.table != table {
            self.table = table;
            self.urgent = true;
        }
    }

    /// This node's voter set changed by a reload step. Grants already counted keep
    /// the set their voter named; the lease now needs a majority of `own` too.
    pub fn set_voters(&mut self, own: &VoterSet) {
        self.own_digest = own.digest();
        self.own = own.clone();
        self.in_own = self.voters.iter().map(|v| own.contains(v)).collect();
        self.urgent = true;
    }

    fn slot(&mut self, voter: &str) -> Option<usize> {
        if let Some(i) = self.voters.iter().position(|v| v == voter) {
            return Some(i);
        }
        if self.voters.len() >= MAX_VOTER_SLOTS {
            return None;
        }
        self.voters.push(voter.to_string());
        self.in_own.push(self.own.contains(voter));
        Some(self.voters.len() - 1)
    }

    /// This claimer's nonce.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Whether `g` is in the claimed set.
    pub fn wants(&self, g: GroupId) -> bool {
        self.groups.contains_key(&g)
    }

    /// Groups in the claimed set.
    pub fn wanted(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    /// Adds `g` to the claimed set; grants count from the next claim on.
    pub fn add(&mut self, g: GroupId) {
        if !self.groups.contains_key(&g) {
            self.groups.insert(
                g,
                Wanted {
                    added_seq: self.seq + 1,
                    grants: Vec::new(),
                    denies: Vec::new(),
                },
            );
            self.urgent = true;
        }
    }

    /// Removes `g`: every grant for it is discarded, and the next claim omits it,
    /// which releases the voters' promises.
    pub fn remove(&mut self, g: GroupId, now: Instant) {
        if self.groups.remove(&g).is_some() {
            self.urgent = true;
            self.last_shrink = Some(now);
        }
    }

    /// Asks for a claim at the next opportunity.
    pub fn mark_urgent(&mut self) {
        self.urgent = true;
    }

    /// Whether a claim should be sent now regardless of the period.
    pub fn urgent(&self) -> bool {
        self.urgent
    }

    /// Whether claims should keep flowing: something is claimed, or the set shrank
    /// less than `linger` ago (so every voter hears the release).
    pub fn active(&self, now: Instant, linger: Duration) -> bool {
        !self.groups.is_empty() || self.last_shrink.is_some_and(|t| now < t + linger)
    }

    /// Emits the next claim; `now` is recorded as its send time.
    pub fn next_claim(&mut self, now: Instant) -> Claim {
        self.seq += 1;
        self.urgent = false;
        self.sent.push_back((self.seq, now));
        while self.sent.len() > MAX_SENT_CLAIMS
            || self
                .sent
                .front()
                .is_some_and(|&(_, t)| t + self.validity <= now && self.sent.len() > 1)
        {
            self.sent.pop_front();
        }
        Claim {
            name: self.name.clone(),
            nonce: self.nonce,
            seq: self.seq,
            groups: self.groups.keys().copied().collect(),
            table: self.table,
        }
    }

    fn send_time(&self, seq: u64) -> Option<Instant> {
        // `sent` is sorted by seq.
        let i = self.sent.partition_point(|&(s, _)| s < seq);
        self.sent
            .get(i)
            .filter(|&&(s, _)| s == seq)
            .map(|&(_, t)| t)
    }

    /// Takes in an answer from the voter named `voter` (the engine resolved the
    /// answer's index in the set it names). Returns false (and changes nothing) if
    /// it does not carry the current nonce or answers an unknown claim.
    pub fn handle_answer(&mut self, a: &Answer, voter: &str) -> bool {
        if a.nonce != self.nonce || a.seq > self.seq || self.send_time(a.seq).is_none() {
            return false;
        }
        let Some(v) = self.slot(voter) else {
            return false;
        };
        for &g in &a.granted {
            if let Some(w) = self.groups.get_mut(&g)
                && a.seq >= w.added_seq
                && slot_mut(&mut w.grants, v).is_none_or(|(s, _)| s < a.seq)
            {
                *slot_mut(&mut w.grants, v) = Some((a.seq, a.set));
                if slot_mut(&mut w.denies, v)
                    .as_ref()
                    .is_some_and(|(s, _)| *s <= a.seq)
                {
                    w.denies[v] = None;
                }
            }
        }
        for (g, holder) in &a.denied {
            if let Some(w) = self.groups.get_mut(g)
                && a.seq >= w.added_seq
                && slot_mut(&mut w.denies, v)
                    .as_ref()
                    .is_none_or(|(s, _)| *s < a.seq)
            {
                w.denies[v] = Some((a.seq, holder.clone()));
            }
        }
        true
    }

    /// The lease on `g`: the q-th largest `t_seq + T(1 − 2ρ)` over distinct voters
    /// of this node's own set, and, for every other voter set a counting grant
    /// names, the majority-th largest over that set's voters; the earliest of
    /// these (`docs/safety.md` §4.12). `None` if any of them falls short, or a
    /// named set is not known (`sets` resolves a digest to its voters).
    pub fn lease<'s>(
        &self,
        g: GroupId,
        q: usize,
        sets: impl Fn(u64) -> Option<&'s VoterSet>,
    ) -> Option<Instant> {
        let w = self.groups.get(&g)?;
        if q == 0 {
            return None;
        }
        let counting = || {
            w.grants
                .iter()
                .enumerate()
                .filter_map(|(i, x)| x.map(|(s, d)| (i, s, d)))
                .filter_map(|(i, s, d)| self.send_time(s).map(|t| (i, t + self.validity, d)))
        };
        let mut lease = qth(
            counting()
                .filter(|&(i, _, _)| self.in_own.get(i).copied().unwrap_or(false))
                .map(|(_, end, _)| end),
            q,
        )?;
        let mut others = [0u64; MAX_SETS_PER_LEASE];
        let mut n = 0;
        for (_, _, d) in counting() {
            if d != self.own_digest && !others[..n].contains(&d) {
                if n == others.len() {
                    return None;
                }
                others[n] = d;
                n += 1;
            }
        }
        for &d in &others[..n] {
            let set = sets(d)?;
            let l = qth(
                counting()
                    .filter(|&(i, _, _)| set.contains(&self.voters[i]))
                    .map(|(_, end, _)| end),
                set.quorum(),
            )?;
            lease = lease.min(l);
        }
        Some(lease)
    }

    /// The broken lease of `Breaks::voter_joint`: the q-th largest over this node's
    /// own set only, whatever sets the grants name. Never used by the agent.
    pub fn lease_own_set_only(&self, g: GroupId, q: usize) -> Option<Instant> {
        let w = self.groups.get(&g)?;
        qth(
            w.grants
                .iter()
                .enumerate()
                .filter(|(i, _)| self.in_own.get(*i).copied().unwrap_or(false))
                .filter_map(|(_, x)| x.and_then(|(s, _)| self.send_time(s)))
                .map(|t| t + self.validity),
            q,
        )
    }

    /// What the latest answers say about `g`, for contention decisions.
    pub fn status(&self, g: GroupId, now: Instant) -> ClaimStatus {
        let Some(w) = self.groups.get(&g) else {
            return ClaimStatus::default();
        };
        let grants = w
            .grants
            .iter()
            .flatten()
            .filter(|&&(s, _)| self.send_time(s).is_some_and(|t| t + self.validity > now))
            .count();
        let mut deny_holders: Vec<String> = w
            .denies
            .iter()
            .flatten()
            .filter(|(s, _)| self.send_time(*s).is_some_and(|t| t + self.validity > now))
            .map(|(_, h)| h.clone())
            .collect();
        deny_holders.sort();
        deny_holders.dedup();
        ClaimStatus {
            grants,
            deny_holders,
        }
    }
}

/// The q-th largest of `ends` (at most [`MAX_VOTER_SLOTS`] of them: selected on the
/// stack, no allocation — this runs for every group on every tick).
fn qth(ends: impl Iterator<Item = Instant>, q: usize) -> Option<Instant> {
    let mut buf = [Instant::ZERO; MAX_VOTER_SLOTS];
    let mut n = 0;
    for e in ends {
        if n < buf.len() {
            buf[n] = e;
            n += 1;
        }
    }
    if q == 0 || n < q {
        return None;
    }
    let ends = &mut buf[..n];
    let (_, qth, _) = ends.select_nth_unstable_by(q - 1, |a, b| b.cmp(a));
    Some(*qth)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn lease_is_qth_largest_send_time_plus_validity() {
        let mut c = Claimer::new("a", 7, &vset(3), MS * 300);
        c.add(0);
        let c1 = c.next_claim(t(100));
        let c2 = c.next_claim(t(150));
        let ans = |voter, seq| Answer {
            voter,
            set: vset(3).digest(),
            nonce: 7,
            seq,
            granted: vec![0],
            denied: vec![],
        };
        assert!(c.handle_answer(&ans(0, c2.seq), "v0"));
        assert_eq!(c.lease(0, 2, no_sets), None);
        assert!(c.handle_answer(&ans(1, c1.seq), "v1"));
        assert_eq!(c.lease(0, 2, no_sets), Some(t(400)));
        assert_eq!(c.lease(0, 1, no_sets), Some(t(450)));
        assert!(c.handle_answer(&ans(2, c2.seq), "v2"));
        assert_eq!(c.lease(0, 2, no_sets), Some(t(450)));
    }

    #[test]
    fn answers_for_another_nonce_or_unknown_claim_are_dropped() {
        let mut c = Claimer::new("a", 7, &vset(3), MS * 300);
        c.add(0);
        let k = c.next_claim(t(100));
        let set = vset(3).digest();
        assert!(!c.handle_answer(
            &Answer {
                voter: 0,
                set,
                nonce: 8,
                seq: k.seq,
                granted: vec![0],
                denied: vec![]
            },
            "v0"
        ));
        assert!(!c.handle_answer(
            &Answer {
                voter: 0,
                set,
                nonce: 7,
                seq: k.seq + 1,
                granted: vec![0],
                denied: vec![]
            },
            "v0"
        ));
        assert_eq!(c.lease(0, 1, no_sets), None);
    }

    #[test]
    fn grants_from_before_a_readd_do_not_count() {
        // F9: a delayed grant across a release must not count after the group is re-added.
        let mut c = Claimer::new("a", 7, &vset(3), MS * 300);
        c.add(0);
        let old = c.next_claim(t(100));
        c.remove(0, t(110));
        c.next_claim(t(110));
        c.add(0);
        let new = c.next_claim(t(120));
        let ans = |voter, seq| Answer {
            voter,
            set: vset(3).digest(),
            nonce: 7,
            seq,
            granted: vec![0],
            denied: vec![],
        };
        c.handle_answer(&ans(0, old.seq), "v0");
        c.handle_answer(&ans(1, new.seq), "v1");
        assert_eq!(
            c.lease(0, 2, no_sets),
            None,
            "the pre-release grant was counted"
        );
        c.handle_answer(&ans(2, new.seq), "v2");
        assert_eq!(c.lease(0, 2, no_sets), Some(t(420)));
    }

    #[test]
    fn status_reports_denies() {
        let mut c = Claimer::new("a", 7, &vset(3), MS * 300);
        c.add(0);
        let k = c.next_claim(t(100));
        let set = vset(3).digest();
        c.handle_answer(
            &Answer {
                voter: 1,
                set,
                nonce: 7,
                seq: k.seq,
                granted: vec![],
                denied: vec![(0, "b".into())],
            },
            "v1",
        );
        c.handle_answer(
            &Answer {
                voter: 0,
                set,
                nonce: 7,
                seq: k.seq,
                granted: vec![0],
                denied: vec![],
            },
            "v0",
        );
        assert_eq!(
            c.status(0, t(150)),
            ClaimStatus {
                grants: 1,
                deny_holders: vec!["b".into()]
            }
        );
        assert_eq!(c.status(0, t(401)), ClaimStatus::default());
    }

    #[test]
    fn a_grant_naming_another_set_needs_a_majority_of_it_too() {
        // Own set {v0,v1,v2}; v3 joined by a reload step and v0 moved to {v0..v3}.
        let own = vset(3);
        let next = vset(4);
        let mut c = Claimer::new("a", 7, &own, MS * 300);
        c.add(0);
        let k = c.next_claim(t(100));
        let ans = |voter, set: &VoterSet| Answer {
            voter,
            set: set.digest(),
            nonce: 7,
            seq: k.seq,
            granted: vec![0],
            denied: vec![],
        };
        let known = |d: u64| (d == next.digest()).then_some(&next);
        c.handle_answer(&ans(0, &next), "v0");
        c.handle_answer(&ans(1, &own), "v1");
        // Two of three of its own set, but only two of four of {v0..v3}.
        assert_eq!(c.lease(0, 2, known), None);
        c.handle_answer(&ans(3, &next), "v3");
        assert_eq!(c.lease(0, 2, known), Some(t(400)));
        // A set it cannot resolve counts as falling short.
        assert_eq!(c.lease(0, 2, no_sets), None);
        // v3 is not in its own set: it never makes the own-set quorum.
        let mut d = Claimer::new("b", 8, &own, MS * 300);
        d.add(0);
        let k = d.next_claim(t(100));
        let a3 = Answer {
            voter: 3,
            set: own.digest(),
            nonce: 8,
            seq: k.seq,
            granted: vec![0],
            denied: vec![],
        };
        d.handle_answer(&a3, "v3");
        d.handle_answer(
            &Answer {
                voter: 0,
                ..a3.clone()
            },
            "v0",
        );
        assert_eq!(d.lease(0, 2, no_sets), None);
        // After this node's own step to {v0..v3}, v3 counts.
        d.set_voters(&next);
        let e = d.next_claim(t(150));
        for (i, n) in [(0, "v0"), (1, "v1"), (3, "v3")] {
            d.handle_answer(
                &Answer {
                    voter: i,
                    seq: e.seq,
                    set: next.digest(),
                    ..a3.clone()
                },
                n,
            );
        }
        assert_eq!(d.lease(0, 3, no_sets), Some(t(450)));
    }
}
