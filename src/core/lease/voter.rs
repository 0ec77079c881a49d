//! The member side of the lease (DESIGN §2.3 rules 3, 4, 6; DESIGN §4): one promise
//! per **address**.
//!
//! A claim names groups by their index in the claimer's group table; the caller
//! resolves the table (a [`GroupTable`]) and the voter promises every address of a
//! granted group. So whatever group an address sits in on the claimer's side (moved
//! between groups by a reload, groups split or merged, a table on another node that
//! differs from this one), two lease ids never hold live promises on one address at
//! once (`docs/safety.md` §4.11).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use super::{Answer, Claim, LeaseId, MAX_TRACKED_CLAIMERS};
use crate::core::config::{GroupId, VipGroup};
use crate::core::time::Instant;

/// The claimer's group table, as the voter sees it: a group's addresses by index.
pub trait GroupTable {
    /// The addresses of group `g`, or `None` if the table has no such group.
    fn addrs(&self, g: GroupId) -> Option<Vec<IpAddr>>;
}

/// A table whose groups are promised by index instead of by address: the broken
/// mode (`Breaks::promise_per_group`) that shows the simulator's checker catching
/// promises per group index of one node's table. Never used by the agent.
#[derive(Debug)]
pub struct ByIndex<'a>(pub &'a [VipGroup]);

impl GroupTable for ByIndex<'_> {
    fn addrs(&self, g: GroupId) -> Option<Vec<IpAddr>> {
        self.0.addrs(g)?;
        Some(vec![IpAddr::from([0, 0, 0, 0, 0, 0, 0, g])])
    }
}

impl GroupTable for [VipGroup] {
    fn addrs(&self, g: GroupId) -> Option<Vec<IpAddr>> {
        self.get(usize::from(g))
            .filter(|x| !x.vips.is_empty())
            .map(|x| x.vips.iter().map(|v| v.addr).collect())
    }
}

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
    /// The claim lists a group its table does not have (or two groups that share an
    /// address).
    UnknownGroup,
    /// The claimer table is full of live entries.
    TooManyClaimers,
}

/// The member side of the lease.
#[derive(Debug)]
pub struct Voter {
    index: u16,
    /// The digest of the voter set this voter runs (answers name it).
    set: u64,
    hold: Duration,
    wait_until: Instant,
    grant_others_during_wait: bool,
    self_name: String,
    promises: BTreeMap<IpAddr, Promise>,
    seqs: BTreeMap<LeaseId, SeqRecord>,
    /// Whether the last answered claim was a renewal: every address it lists was
    /// already promised to the same lease id, and it was granted whole.
    renewal: bool,
}

impl Voter {
    /// A voter that started at `now`. It grants nothing until `now + wait` (W), except,
    /// when `grant_others_during_wait` (two-node mode), to the other node.
    pub fn new(
        index: u16,
        self_name: &str,
        hold: Duration,
        wait: Duration,
        grant_others_during_wait: bool,
        now: Instant,
    ) -> Voter {
        Voter {
            index,
            set: 0,
            hold,
            wait_until: now + wait,
            grant_others_during_wait,
            self_name: self_name.to_string(),
            promises: BTreeMap::new(),
            seqs: BTreeMap::new(),
            renewal: false,
        }
    }

    /// This voter's index in the voter list.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The digest of the voter set this voter runs.
    pub fn set(&self) -> u64 {
        self.set
    }

    /// Where this voter sits: its index in the set with digest `set` (a reload step
    /// moves both; promises are kept).
    pub fn set_seat(&mut self, index: u16, set: u64) {
        self.index = index;
        self.set = set;
    }

    /// When the start-up wait ends.
    pub fn wait_until(&self) -> Instant {
        self.wait_until
    }

    /// Number of live promises at `now`.
    pub fn live_promises(&self, now: Instant) -> usize {
        self.promises.values().filter(|p| p.until > now).count()
    }

    /// The live promise on address `a`, if any.
    pub fn promise(&self, a: IpAddr, now: Instant) -> Option<(&LeaseId, Instant)> {
        self.promises
            .get(&a)
            .filter(|p| p.until > now)
            .map(|p| (&p.holder, p.until))
    }

    /// Handles a claim received at `now` (read after the datagram arrived), its group
    /// indices resolved in the claimer's `table`.
    pub fn handle_claim(
        &mut self,
        claim: &Claim,
        table: &(impl GroupTable + ?Sized),
        now: Instant,
    ) -> Result<Answer, Ignored> {
        let is_self = claim.name == self.self_name;
        if now < self.wait_until && (is_self || !self.grant_others_during_wait) {
            return Err(Ignored::StartupWait);
        }
        // Every listed group, resolved; a claim that names an unknown group, or two
        // groups sharing an address, is refused whole.
        let mut groups: Vec<(GroupId, Vec<IpAddr>)> = Vec::with_capacity(claim.groups.len());
        let mut listed: BTreeSet<IpAddr> = BTreeSet::new();
        for &g in &claim.groups {
            let addrs = table.addrs(g).ok_or(Ignored::UnknownGroup)?;
            for a in &addrs {
                if !listed.insert(*a) {
                    return Err(Ignored::UnknownGroup);
                }
            }
            groups.push((g, addrs));
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
        // Drop this claimer's promises on addresses it no longer lists.
        self.promises
            .retain(|a, p| p.holder != id || listed.contains(a));
        let mut granted = Vec::new();
        let mut denied = Vec::new();
        self.renewal = groups.iter().all(|(_, addrs)| {
            addrs.iter().all(|a| {
                self.promises
                    .get(a)
                    .is_some_and(|p| p.until > now && p.holder == id)
            })
        });
        for (g, addrs) in groups {
            let holder = addrs.iter().find_map(|a| {
                self.promises
                    .get(a)
                    .filter(|p| p.until > now && p.holder != id)
                    .map(|p| p.holder.name.clone())
            });
            match holder {
                Some(h) => denied.push((g, h)),
                None => {
                    for a in addrs {
                        self.promises.insert(
                            a,
                            Promise {
                                holder: id.clone(),
                                until: now + self.hold,
                            },
                        );
                    }
                    granted.push(g);
                }
            }
        }
        self.renewal &= denied.is_empty();
        Ok(Answer {
            voter: self.index,
            set: self.set,
            nonce: claim.nonce,
            seq: claim.seq,
            granted,
            denied,
        })
    }

    /// Whether the claim last answered by [`Voter::handle_claim`] was a renewal:
    /// it added nothing to what this voter had promised to that lease id, and it
    /// was granted whole (its answer may ride on this node's next claim, §4.13).
    pub fn last_was_renewal(&self) -> bool {
        self.renewal
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
        let tb = table();
        assert_eq!(
            v.handle_claim(&claim("a", 1, 1, &[0]), &tb[..], t(399)),
            Err(Ignored::StartupWait)
        );
        assert_eq!(
            v.handle_claim(&claim("b", 1, 1, &[0]), &tb[..], t(399)),
            Err(Ignored::StartupWait)
        );
        assert!(
            v.handle_claim(&claim("b", 1, 2, &[0]), &tb[..], t(400))
                .is_ok()
        );
    }

    #[test]
    fn only_a_claim_that_adds_nothing_and_is_granted_whole_is_a_renewal() {
        let mut v = voter(0, "a");
        let tb = table();
        v.handle_claim(&claim("b", 1, 1, &[0]), &tb[..], t(400))
            .unwrap();
        assert!(!v.last_was_renewal(), "the first grant is news");
        v.handle_claim(&claim("b", 1, 2, &[0]), &tb[..], t(410))
            .unwrap();
        assert!(v.last_was_renewal());
        v.handle_claim(&claim("b", 1, 3, &[0, 1]), &tb[..], t(420))
            .unwrap();
        assert!(!v.last_was_renewal(), "a group added");
        // Dropping a group is still a renewal of the rest.
        v.handle_claim(&claim("b", 1, 4, &[1]), &tb[..], t(430))
            .unwrap();
        assert!(v.last_was_renewal());
        // Another lease id on a promised address: denied, never a renewal.
        v.handle_claim(&claim("c", 1, 1, &[1]), &tb[..], t(440))
            .unwrap();
        assert!(!v.last_was_renewal());
        // A new process of the same name (new nonce) starts over.
        v.handle_claim(&claim("b", 2, 1, &[1]), &tb[..], t(450))
            .unwrap();
        assert!(!v.last_was_renewal());
        // After its promise lapsed, the same claim is news again.
        v.handle_claim(&claim("b", 1, 5, &[1]), &tb[..], t(2000))
            .unwrap();
        assert!(!v.last_was_renewal());
    }

    #[test]
    fn two_node_voter_grants_the_peer_during_w() {
        let mut v = Voter::new(0, "a", MS * 400, MS * 400, true, t(0));
        let tb = table();
        assert_eq!(
            v.handle_claim(&claim("a", 1, 1, &[0]), &tb[..], t(10)),
            Err(Ignored::StartupWait)
        );
        assert_eq!(
            v.handle_claim(&claim("b", 1, 1, &[0]), &tb[..], t(10))
                .unwrap()
                .granted,
            vec![0]
        );
    }

    #[test]
    fn one_promise_per_address_whatever_group_names_it() {
        // a's table: {.0}, {.1}; b's table (after a reload moved .1 into a group with
        // .2): {.0}, {.1, .2}. b's group 1 overlaps a's group 1 in one address.
        let ta = [g(&[0]), g(&[1])];
        let tb = [g(&[0]), g(&[1, 2])];
        let mut v = voter(0, "x");
        let a = v
            .handle_claim(&claim("a", 1, 1, &[1]), &ta[..], t(500))
            .unwrap();
        assert_eq!(a.granted, vec![1]);
        let b = v
            .handle_claim(&claim("b", 2, 1, &[1]), &tb[..], t(510))
            .unwrap();
        assert_eq!(
            b.denied,
            vec![(1, "a".to_string())],
            "the shared address is a's"
        );
        // Denied whole: b holds no promise on .2 either.
        assert!(v.promise(addr(2), t(511)).is_none());
        // a releases by omission: b gets both addresses.
        v.handle_claim(&claim("a", 1, 2, &[]), &ta[..], t(520))
            .unwrap();
        let b = v
            .handle_claim(&claim("b", 2, 2, &[1]), &tb[..], t(530))
            .unwrap();
        assert_eq!(b.granted, vec![1]);
        assert!(
            v.promise(addr(1), t(531))
                .is_some_and(|(h, _)| h.name == "b")
        );
        assert!(
            v.promise(addr(2), t(531))
                .is_some_and(|(h, _)| h.name == "b")
        );
        // Now a (still on its old table) wants {.1} back: denied, b holds it.
        let a = v
            .handle_claim(&claim("a", 1, 3, &[1]), &ta[..], t(540))
            .unwrap();
        assert_eq!(a.denied, vec![(1, "b".to_string())]);
        // A claim naming two groups that share an address is refused whole.
        let bad = [g(&[1]), g(&[1, 3])];
        assert_eq!(
            v.handle_claim(&claim("c", 3, 1, &[0, 1]), &bad[..], t(550)),
            Err(Ignored::UnknownGroup)
        );
    }

    #[test]
    fn one_promise_per_group_and_release_by_omission() {
        let mut v = voter(0, "x");
        let tb = table();
        let a = v
            .handle_claim(&claim("a", 1, 1, &[0, 1]), &tb[..], t(500))
            .unwrap();
        assert_eq!(a.granted, vec![0, 1]);
        let b = v
            .handle_claim(&claim("b", 9, 1, &[1, 2]), &tb[..], t(510))
            .unwrap();
        assert_eq!(b.granted, vec![2]);
        assert_eq!(b.denied, vec![(1, "a".to_string())]);
        // a drops group 1 by omitting it: b gets it at once.
        v.handle_claim(&claim("a", 1, 2, &[0]), &tb[..], t(520))
            .unwrap();
        let b = v
            .handle_claim(&claim("b", 9, 2, &[1, 2]), &tb[..], t(530))
            .unwrap();
        assert_eq!(b.granted, vec![1, 2]);
    }

    #[test]
    fn promises_expire_after_p() {
        let mut v = voter(0, "x");
        let tb = table();
        v.handle_claim(&claim("a", 1, 1, &[0]), &tb[..], t(500))
            .unwrap();
        let b = v
            .handle_claim(&claim("b", 2, 1, &[0]), &tb[..], t(899))
            .unwrap();
        assert!(b.granted.is_empty());
        let b = v
            .handle_claim(&claim("b", 2, 2, &[0]), &tb[..], t(900))
            .unwrap();
        assert_eq!(b.granted, vec![0]);
    }

    #[test]
    fn stale_and_duplicate_seqs_are_ignored() {
        let mut v = voter(0, "x");
        let tb = table();
        v.handle_claim(&claim("a", 1, 5, &[0]), &tb[..], t(500))
            .unwrap();
        assert_eq!(
            v.handle_claim(&claim("a", 1, 5, &[0]), &tb[..], t(501)),
            Err(Ignored::StaleSeq)
        );
        assert_eq!(
            v.handle_claim(&claim("a", 1, 4, &[]), &tb[..], t(502)),
            Err(Ignored::StaleSeq)
        );
        // The reordered old claim did not release the promise.
        assert!(v.promise(addr(0), t(503)).is_some());
        // A new nonce (restart) starts its own sequence, but the old promise still binds.
        let r = v
            .handle_claim(&claim("a", 2, 1, &[0]), &tb[..], t(504))
            .unwrap();
        assert_eq!(r.denied, vec![(0, "a".to_string())]);
    }

    #[test]
    fn unknown_groups_are_refused_whole() {
        let mut v = voter(0, "x");
        let tb = table();
        assert_eq!(
            v.handle_claim(&claim("a", 1, 1, &[0, 9]), &tb[..], t(500)),
            Err(Ignored::UnknownGroup)
        );
    }
}
