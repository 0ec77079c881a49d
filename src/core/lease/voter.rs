//! The member side of the lease (DESIGN §2.3 rules 3, 4, 6): one promise per group.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Answer, Claim, LeaseId, MAX_TRACKED_CLAIMERS};
use crate::core::config::GroupId;
use crate::core::time::Instant;

#[derive(Clone, Debug)]
struct Promise {
    holder: LeaseId,
    until: Instant,
}

#[derive(Clone, Copy, Debug)]
struct SeqRecord {
    seq: u64,
    keep_until: Instant,
}

/// Why a voter did not answer a claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Still inside the start-up wait W.
    StartupWait,
    /// seq not above the last one seen for this nonce (duplicate, replay, reorder).
    StaleSeq,
    /// The claim lists a group that does not exist.
    UnknownGroup,
    /// The claimer table is full of live entries.
    TooManyClaimers,
}

/// The member side of the lease.
#[derive(Debug)]
pub struct Voter {
    index: u16,
    n_groups: usize,
    hold: Duration,
    wait_until: Instant,
    grant_others_during_wait: bool,
    self_name: String,
    promises: BTreeMap<GroupId, Promise>,
    seqs: BTreeMap<LeaseId, SeqRecord>,
}

impl Voter {
    /// A voter that started at `now`. It grants nothing until `now + wait` (W), except,
    /// when `grant_others_during_wait` (two-node mode), to the other node.
    pub fn new(
        index: u16,
        self_name: &str,
        n_groups: usize,
        hold: Duration,
        wait: Duration,
        grant_others_during_wait: bool,
        now: Instant,
    ) -> Voter {
        Voter {
            index,
            n_groups,
            hold,
            wait_until: now + wait,
            grant_others_during_wait,
            self_name: self_name.to_string(),
            promises: BTreeMap::new(),
            seqs: BTreeMap::new(),
        }
    }

    /// This voter's index in the voter list.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// When the start-up wait ends.
    pub fn wait_until(&self) -> Instant {
        self.wait_until
    }

    /// Number of live promises at `now`.
    pub fn live_promises(&self, now: Instant) -> usize {
        self.promises.values().filter(|p| p.until > now).count()
    }

    /// The live promise on `g`, if any.
    pub fn promise(&self, g: GroupId, now: Instant) -> Option<(&LeaseId, Instant)> {
        self.promises
            .get(&g)
            .filter(|p| p.until > now)
            .map(|p| (&p.holder, p.until))
    }

    /// Handles a claim received at `now` (read after the datagram arrived).
    pub fn handle_claim(&mut self, claim: &Claim, now: Instant) -> Result<Answer, Ignored> {
        let is_self = claim.name == self.self_name;
        if now < self.wait_until && (is_self || !self.grant_others_during_wait) {
            return Err(Ignored::StartupWait);
        }
        if claim
            .groups
            .iter()
            .any(|&g| usize::from(g) >= self.n_groups)
        {
            return Err(Ignored::UnknownGroup);
        }
        let id = LeaseId {
            name: claim.name.clone(),
            nonce: claim.nonce,
        };
        if let Some(rec) = self.seqs.get(&id) {
            if claim.seq <= rec.seq {
                return Err(Ignored::StaleSeq);
            }
        } else if self.seqs.len() >= MAX_TRACKED_CLAIMERS {
            self.seqs.retain(|_, r| r.keep_until > now);
            if self.seqs.len() >= MAX_TRACKED_CLAIMERS {
                return Err(Ignored::TooManyClaimers);
            }
        }
        // Remember the seq for P after the last promise it can have produced expires.
        self.seqs.insert(
            id.clone(),
            SeqRecord {
                seq: claim.seq,
                keep_until: now + self.hold * 2,
            },
        );
        // Drop this claimer's promises on groups it no longer lists.
        self.promises
            .retain(|g, p| !(p.holder == id && claim.groups.binary_search(g).is_err()));
        let mut granted = Vec::new();
        let mut denied = Vec::new();
        for &g in &claim.groups {
            match self.promises.get(&g) {
                Some(p) if p.until > now && p.holder != id => {
                    denied.push((g, p.holder.name.clone()))
                }
                _ => {
                    self.promises.insert(
                        g,
                        Promise {
                            holder: id.clone(),
                            until: now + self.hold,
                        },
                    );
                    granted.push(g);
                }
            }
        }
        Ok(Answer {
            voter: self.index,
            nonce: claim.nonce,
            seq: claim.seq,
            granted,
            denied,
        })
    }

    /// Forgets expired promises and sequence records.
    pub fn gc(&mut self, now: Instant) {
        self.promises.retain(|_, p| p.until > now);
        self.seqs.retain(|_, r| r.keep_until > now);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn voter_waits_w_even_for_itself() {
        let mut v = voter(0, "a");
        assert_eq!(
            v.handle_claim(&claim("a", 1, 1, &[0]), t(399)),
            Err(Ignored::StartupWait)
        );
        assert_eq!(
            v.handle_claim(&claim("b", 1, 1, &[0]), t(399)),
            Err(Ignored::StartupWait)
        );
        assert!(v.handle_claim(&claim("b", 1, 2, &[0]), t(400)).is_ok());
    }

    #[test]
    fn two_node_voter_grants_the_peer_during_w() {
        let mut v = Voter::new(0, "a", 2, MS * 400, MS * 400, true, t(0));
        assert_eq!(
            v.handle_claim(&claim("a", 1, 1, &[0]), t(10)),
            Err(Ignored::StartupWait)
        );
        assert_eq!(
            v.handle_claim(&claim("b", 1, 1, &[0]), t(10))
                .unwrap()
                .granted,
            vec![0]
        );
    }

    #[test]
    fn one_promise_per_group_and_release_by_omission() {
        let mut v = voter(0, "x");
        let a = v.handle_claim(&claim("a", 1, 1, &[0, 1]), t(500)).unwrap();
        assert_eq!(a.granted, vec![0, 1]);
        let b = v.handle_claim(&claim("b", 9, 1, &[1, 2]), t(510)).unwrap();
        assert_eq!(b.granted, vec![2]);
        assert_eq!(b.denied, vec![(1, "a".to_string())]);
        // a drops group 1 by omitting it: b gets it at once.
        v.handle_claim(&claim("a", 1, 2, &[0]), t(520)).unwrap();
        let b = v.handle_claim(&claim("b", 9, 2, &[1, 2]), t(530)).unwrap();
        assert_eq!(b.granted, vec![1, 2]);
    }

    #[test]
    fn promises_expire_after_p() {
        let mut v = voter(0, "x");
        v.handle_claim(&claim("a", 1, 1, &[0]), t(500)).unwrap();
        let b = v.handle_claim(&claim("b", 2, 1, &[0]), t(899)).unwrap();
        assert!(b.granted.is_empty());
        let b = v.handle_claim(&claim("b", 2, 2, &[0]), t(900)).unwrap();
        assert_eq!(b.granted, vec![0]);
    }

    #[test]
    fn stale_and_duplicate_seqs_are_ignored() {
        let mut v = voter(0, "x");
        v.handle_claim(&claim("a", 1, 5, &[0]), t(500)).unwrap();
        assert_eq!(
            v.handle_claim(&claim("a", 1, 5, &[0]), t(501)),
            Err(Ignored::StaleSeq)
        );
        assert_eq!(
            v.handle_claim(&claim("a", 1, 4, &[]), t(502)),
            Err(Ignored::StaleSeq)
        );
        // The reordered old claim did not release the promise.
        assert!(v.promise(0, t(503)).is_some());
        // A new nonce (restart) starts its own sequence, but the old promise still binds.
        let r = v.handle_claim(&claim("a", 2, 1, &[0]), t(504)).unwrap();
        assert_eq!(r.denied, vec![(0, "a".to_string())]);
    }

    #[test]
    fn unknown_groups_are_refused_whole() {
        let mut v = voter(0, "x");
        assert_eq!(
            v.handle_claim(&claim("a", 1, 1, &[0, 9]), t(500)),
            Err(Ignored::UnknownGroup)
        );
    }
}
