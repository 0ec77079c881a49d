//! The quorum lease (DESIGN §2.3): who *may* answer for a group.
//!
//! Two halves live on every node:
//!
//! * [`Voter`] — the member side (rules 3, 4, 6). A voter keeps one promise per group:
//!   `(holder lease id, expiry)`. It handles `Claim{name, nonce, seq, groups}` with
//!   `now` read after the datagram arrived, ignores a `seq` it has already seen for
//!   that nonce, drops the claimer's promises on groups it no longer lists, and for
//!   each listed group either denies (naming the live holder) or promises the group
//!   until `now + P`. A fresh voter grants nothing — not even to itself — for W.
//!   A self-vote goes through exactly this path. Promises are kept per *address*:
//!   a claim's groups are resolved in the claimer's group table, and a group is
//!   granted only if none of its addresses is promised to someone else.
//!
//! * [`Claimer`] — the holder side (rules 2, 5, 7). A claimer has a lease identity
//!   (name, 64-bit nonce drawn at every start) and a strictly increasing `seq`. Every
//!   claim lists every group it holds or wants. It remembers each claim's send time
//!   `t_seq` (the `now` of the call that emitted it), accepts only answers carrying
//!   its current nonce, and counts a voter's grant of `g` only if its seq is at least
//!   `a(g)`, the seq of the claim that (re-)added `g`. Then
//!   `lease(g)` = the q-th largest `t_seq + T(1 − 2ρ)` over distinct voters.
//!
//! * [`contention`] — rule 8: when an unbound claim gives way.
//! * [`deadline`] — rule 6: the latest instant a bind or refresh may write, from the
//!   lease and the fence.
//!
//! Invariant (the safety argument, `docs/safety.md`): a voter's promise outlives, in
//! real time, every use the claimer can make of the grant plus the fence K, because
//! P = (T + K)(1 + 2ρ) is measured from the claim's receipt and the lease from the
//! claim's earlier send; two majorities of V share a voter, and a voter holds at most
//! one live promise per address.

use serde::{Deserialize, Serialize};

use super::config::GroupId;
use super::table::TableDigest;

/// Most claimers a voter remembers sequence numbers for.
pub const MAX_TRACKED_CLAIMERS: usize = 4096;
/// Most claim send times a claimer remembers.
pub const MAX_SENT_CLAIMS: usize = 4096;

/// A claim: "I hold or want exactly these groups".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// Claimer's node name.
    pub name: String,
    /// Claimer's lease nonce, drawn at every process start or core reset.
    pub nonce: u64,
    /// Strictly increasing within a nonce.
    pub seq: u64,
    /// Every group held or wanted, sorted: indices into the claimer's group table.
    #[serde(with = "super::wire::group_set")]
    pub groups: Vec<GroupId>,
    /// The digest of that table ([`super::table`]): a voter resolves `groups` in it.
    pub table: TableDigest,
}

/// A voter's per-group answer to one claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Index of the voter in its voter set (the one `set` names).
    pub voter: u16,
    /// The digest of the voter's set when it answered ([`sets`]): a claimer's lease
    /// needs a majority of it too.
    pub set: u64,
    /// Echo of the claim's nonce.
    pub nonce: u64,
    /// Echo of the claim's seq.
    pub seq: u64,
    /// Groups promised to the claimer until the voter's `now + P` (sorted).
    #[serde(with = "super::wire::group_set")]
    pub granted: Vec<GroupId>,
    /// Groups refused, with the name of the claimer holding the live promise.
    #[serde(with = "super::wire::denies")]
    pub denied: Vec<(GroupId, String)>,
}

impl Answer {
    /// An answer that grants and denies nothing: "alive, but promising nothing to
    /// this claim" (start-up wait, an unknown lease identity, a name collision). The
    /// claimer then keeps claiming instead of withdrawing as if it were unheard.
    pub fn empty(voter: u16, set: u64, claim: &Claim) -> Answer {
        Answer {
            voter,
            set,
            nonce: claim.nonce,
            seq: claim.seq,
            granted: vec![],
            denied: vec![],
        }
    }

    /// Checks every index that came from the wire, as claims are checked: the voter
    /// index is below `n_voters`, every group (granted or denied) below `n_groups`,
    /// and no group appears twice (granted and denied at once included). `Err` names
    /// the first problem; the answer must then be dropped whole.
    pub fn validate(&self, n_groups: usize, n_voters: usize) -> Result<(), &'static str> {
        if usize::from(self.voter) >= n_voters {
            return Err("bad_voter_index");
        }
        let mut seen = std::collections::BTreeSet::new();
        for g in self
            .granted
            .iter()
            .chain(self.denied.iter().map(|(g, _)| g))
        {
            if usize::from(*g) >= n_groups {
                return Err("unknown_group");
            }
            if !seen.insert(*g) {
                return Err("duplicate_group");
            }
        }
        Ok(())
    }
}

/// Who a promise was given to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaseId {
    /// Node name.
    pub name: String,
    /// That process's nonce.
    pub nonce: u64,
}

mod claimer;
pub mod contention;
pub mod deadline;
pub mod riding;
pub mod sets;
mod voter;

pub use claimer::{ClaimStatus, Claimer};
pub use sets::{VoterSet, VoterSets};
pub use voter::{ByIndex, GroupTable, Ignored, Voter};

#[cfg(test)]
pub(super) mod fixtures {
    use std::time::Duration;

    use super::*;
    use crate::core::config::{Vip, VipGroup};
    use crate::core::time::Instant;

    pub const MS: Duration = Duration::from_millis(1);

    pub fn t(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    /// Voter `i` of [`vset`]`(3)`.
    pub fn voter(i: u16, name: &str) -> Voter {
        let mut v = Voter::new(i, name, MS * 400, MS * 400, false, t(0));
        v.set_seat(i, vset(3).digest());
        v
    }

    /// 10.0.0.`i`.
    pub fn addr(i: u8) -> std::net::IpAddr {
        std::net::IpAddr::from([10, 0, 0, i])
    }

    /// A group of 10.0.0.`i` for each `i`.
    pub fn g(hosts: &[u8]) -> VipGroup {
        VipGroup::new(hosts.iter().map(|&i| Vip::host(addr(i))).collect())
    }

    /// Four one-address groups, 10.0.0.0 … 10.0.0.3.
    pub fn table() -> Vec<VipGroup> {
        (0..4).map(|i| g(&[i])).collect()
    }

    /// The voter set v0 … v(n-1).
    pub fn vset(n: usize) -> VoterSet {
        VoterSet::new((0..n).map(|i| format!("v{i}")).collect(), vec![])
    }

    /// A resolver that knows no set but the claimer's own.
    pub fn no_sets(_: u64) -> Option<&'static VoterSet> {
        None
    }

    pub fn claim(name: &str, nonce: u64, seq: u64, groups: &[GroupId]) -> Claim {
        Claim {
            name: name.into(),
            nonce,
            seq,
            groups: groups.to_vec(),
            table: [0; 16],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn answers_are_checked_like_claims() {
        let a = |voter, granted: Vec<GroupId>, denied: Vec<(GroupId, String)>| Answer {
            voter,
            set: 0,
            nonce: 1,
            seq: 1,
            granted,
            denied,
        };
        assert_eq!(
            a(0, vec![0, 3], vec![(1, "b".into())]).validate(4, 3),
            Ok(())
        );
        assert_eq!(a(3, vec![], vec![]).validate(4, 3), Err("bad_voter_index"));
        assert_eq!(a(0, vec![4], vec![]).validate(4, 3), Err("unknown_group"));
        assert_eq!(
            a(0, vec![], vec![(9, "b".into())]).validate(4, 3),
            Err("unknown_group")
        );
        assert_eq!(
            a(0, vec![1], vec![(1, "b".into())]).validate(4, 3),
            Err("duplicate_group")
        );
        assert_eq!(
            a(0, vec![], vec![(2, "b".into()), (2, "c".into())]).validate(4, 3),
            Err("duplicate_group")
        );
        let claim = Claim {
            name: "a".into(),
            nonce: 7,
            seq: 9,
            groups: vec![1],
            table: [0; 16],
        };
        let e = Answer::empty(2, 0, &claim);
        assert_eq!((e.voter, e.nonce, e.seq), (2, 7, 9));
        assert!(e.granted.is_empty() && e.denied.is_empty());
    }

    #[test]
    fn majority_intersection_prevents_two_holders() {
        // Three voters; a and b race for group 0 with interleaved claims. However the
        // answers interleave, at most one of them reaches a quorum of 2.
        for order in 0..8u32 {
            let mut voters: Vec<Voter> = (0..3).map(|i| voter(i, &format!("v{i}"))).collect();
            let mut a = Claimer::new("a", 1, &vset(3), MS * 300);
            let mut b = Claimer::new("b", 2, &vset(3), MS * 300);
            a.add(0);
            b.add(0);
            let ca = a.next_claim(t(500));
            let cb = b.next_claim(t(500));
            for (i, v) in voters.iter_mut().enumerate() {
                let (first, second) = if order & (1 << i) != 0 {
                    (&ca, &cb)
                } else {
                    (&cb, &ca)
                };
                for c in [first, second] {
                    let ans = v.handle_claim(c, &table()[..], t(501)).unwrap();
                    let name = format!("v{i}");
                    if c.name == "a" {
                        a.handle_answer(&ans, &name)
                    } else {
                        b.handle_answer(&ans, &name)
                    };
                }
            }
            assert!(
                !(a.lease(0, 2, no_sets).is_some() && b.lease(0, 2, no_sets).is_some()),
                "order {order}"
            );
            assert!(a.lease(0, 2, no_sets).is_some() || b.lease(0, 2, no_sets).is_some());
        }
    }
}
