//! The holder side of the lease (DESIGN §2.3 rules 2, 5, 7): claims, answers and
//! the lease they add up to.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::{Answer, Claim, MAX_SENT_CLAIMS};
use crate::core::config::GroupId;
use crate::core::table::TableDigest;
use crate::core::time::Instant;

/// Per-group claim state at the claimer.
#[derive(Clone, Debug)]
struct Wanted {
    /// a(g): the seq of the claim that (re-)added the group.
    added_seq: u64,
    /// Latest counting grant per voter (seq).
    grants: Vec<Option<u64>>,
    /// Latest deny per voter: (seq, holder name).
    denies: Vec<Option<(u64, String)>>,
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
    n_voters: usize,
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
    /// A claimer with a fresh `nonce`. `validity` is T(1 − 2ρ).
    pub fn new(name: &str, nonce: u64, n_voters: usize, validity: Duration) -> Claimer {
        Claimer {
            name: name.to_string(),
            nonce,
            seq: 0,
            n_voters,
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
                    grants: vec![None; self.n_voters],
                    denies: vec![None; self.n_voters],
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

    /// Takes in an answer. Returns false (and changes nothing) if it does not carry
    /// the current nonce, names an unknown voter, or answers an unknown claim.
    pub fn handle_answer(&mut self, a: &Answer) -> bool {
        let v = usize::from(a.voter);
        if a.nonce != self.nonce
            || v >= self.n_voters
            || a.seq > self.seq
            || self.send_time(a.seq).is_none()
        {
            return false;
        }
        for &g in &a.granted {
            if let Some(w) = self.groups.get_mut(&g)
                && a.seq >= w.added_seq
                && w.grants[v].is_none_or(|s| s < a.seq)
            {
                w.grants[v] = Some(a.seq);
                if w.denies[v].as_ref().is_some_and(|(s, _)| *s <= a.seq) {
                    w.denies[v] = None;
                }
            }
        }
        for (g, holder) in &a.denied {
            if let Some(w) = self.groups.get_mut(g)
                && a.seq >= w.added_seq
                && w.denies[v].as_ref().is_none_or(|(s, _)| *s < a.seq)
            {
                w.denies[v] = Some((a.seq, holder.clone()));
            }
        }
        true
    }

    /// The lease on `g` with quorum `q`: the q-th largest `t_seq + T(1 − 2ρ)` over
    /// distinct voters' counting grants. `None` if fewer than `q` voters granted.
    pub fn lease(&self, g: GroupId, q: usize) -> Option<Instant> {
        let w = self.groups.get(&g)?;
        if q == 0 {
            return None;
        }
        // At most MAX_VOTERS grants: select on the stack, no allocation (this runs
        // for every group on every tick).
        let mut ends = [Instant::ZERO; crate::core::config::MAX_VOTERS];
        let mut n = 0;
        for t in w.grants.iter().flatten().filter_map(|&s| self.send_time(s)) {
            if n < ends.len() {
                ends[n] = t + self.validity;
                n += 1;
            }
        }
        if n < q {
            return None;
        }
        let ends = &mut ends[..n];
        let (_, qth, _) = ends.select_nth_unstable_by(q - 1, |a, b| b.cmp(a));
        Some(*qth)
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
            .filter(|&&s| self.send_time(s).is_some_and(|t| t + self.validity > now))
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn lease_is_qth_largest_send_time_plus_validity() {
        let mut c = Claimer::new("a", 7, 3, MS * 300);
        c.add(0);
        let c1 = c.next_claim(t(100));
        let c2 = c.next_claim(t(150));
        let ans = |voter, seq| Answer {
            voter,
            nonce: 7,
            seq,
            granted: vec![0],
            denied: vec![],
        };
        assert!(c.handle_answer(&ans(0, c2.seq)));
        assert_eq!(c.lease(0, 2), None);
        assert!(c.handle_answer(&ans(1, c1.seq)));
        assert_eq!(c.lease(0, 2), Some(t(400)));
        assert_eq!(c.lease(0, 1), Some(t(450)));
        assert!(c.handle_answer(&ans(2, c2.seq)));
        assert_eq!(c.lease(0, 2), Some(t(450)));
    }

    #[test]
    fn answers_for_another_nonce_or_unknown_claim_are_dropped() {
        let mut c = Claimer::new("a", 7, 3, MS * 300);
        c.add(0);
        let k = c.next_claim(t(100));
        assert!(!c.handle_answer(&Answer {
            voter: 0,
            nonce: 8,
            seq: k.seq,
            granted: vec![0],
            denied: vec![]
        }));
        assert!(!c.handle_answer(&Answer {
            voter: 0,
            nonce: 7,
            seq: k.seq + 1,
            granted: vec![0],
            denied: vec![]
        }));
        assert!(!c.handle_answer(&Answer {
            voter: 5,
            nonce: 7,
            seq: k.seq,
            granted: vec![0],
            denied: vec![]
        }));
        assert_eq!(c.lease(0, 1), None);
    }

    #[test]
    fn grants_from_before_a_readd_do_not_count() {
        // F9: a delayed grant across a release must not count after the group is re-added.
        let mut c = Claimer::new("a", 7, 3, MS * 300);
        c.add(0);
        let old = c.next_claim(t(100));
        c.remove(0, t(110));
        c.next_claim(t(110));
        c.add(0);
        let new = c.next_claim(t(120));
        let ans = |voter, seq| Answer {
            voter,
            nonce: 7,
            seq,
            granted: vec![0],
            denied: vec![],
        };
        c.handle_answer(&ans(0, old.seq));
        c.handle_answer(&ans(1, new.seq));
        assert_eq!(c.lease(0, 2), None, "the pre-release grant was counted");
        c.handle_answer(&ans(2, new.seq));
        assert_eq!(c.lease(0, 2), Some(t(420)));
    }

    #[test]
    fn status_reports_denies() {
        let mut c = Claimer::new("a", 7, 3, MS * 300);
        c.add(0);
        let k = c.next_claim(t(100));
        c.handle_answer(&Answer {
            voter: 1,
            nonce: 7,
            seq: k.seq,
            granted: vec![],
            denied: vec![(0, "b".into())],
        });
        c.handle_answer(&Answer {
            voter: 0,
            nonce: 7,
            seq: k.seq,
            granted: vec![0],
            denied: vec![],
        });
        assert_eq!(
            c.status(0, t(150)),
            ClaimStatus {
                grants: 1,
                deny_holders: vec!["b".into()]
            }
        );
        assert_eq!(c.status(0, t(401)), ClaimStatus::default());
    }
}
