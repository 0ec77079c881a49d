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
//!   A self-vote goes through exactly this path.
//!
//! * [`Claimer`] — the holder side (rules 2, 5, 7). A claimer has a lease identity
//!   (name, 64-bit nonce drawn at every start) and a strictly increasing `seq`. Every
//!   claim lists every group it holds or wants. It remembers each claim's send time
//!   `t_seq` (the `now` of the call that emitted it), accepts only answers carrying
//!   its current nonce, and counts a voter's grant of `g` only if its seq is at least
//!   `a(g)`, the seq of the claim that (re-)added `g`. Then
//!   `lease(g)` = the q-th largest `t_seq + T(1 − 2ρ)` over distinct voters.
//!
//! Invariant (the safety argument, `docs/safety.md`): a voter's promise outlives, in
//! real time, every use the claimer can make of the grant plus the fence K, because
//! P = (T + K)(1 + 2ρ) is measured from the claim's receipt and the lease from the
//! claim's earlier send; two majorities of V share a voter, and a voter holds at most
//! one live promise per group.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::GroupId;
use super::time::Instant;

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
    /// Every group held or wanted, sorted.
    #[serde(with = "super::wire::group_set")]
    pub groups: Vec<GroupId>,
}

/// A voter's per-group answer to one claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Index of the voter in the cluster's voter list.
    pub voter: u16,
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
    pub fn empty(voter: u16, claim: &Claim) -> Answer {
        Answer {
            voter,
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
        let mut ends = [Instant::ZERO; super::config::MAX_VOTERS];
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
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn voter(i: u16, name: &str) -> Voter {
        Voter::new(i, name, 4, MS * 400, MS * 400, false, t(0))
    }

    #[test]
    fn answers_are_checked_like_claims() {
        let a = |voter, granted: Vec<GroupId>, denied: Vec<(GroupId, String)>| Answer {
            voter,
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
        };
        let e = Answer::empty(2, &claim);
        assert_eq!((e.voter, e.nonce, e.seq), (2, 7, 9));
        assert!(e.granted.is_empty() && e.denied.is_empty());
    }

    fn claim(name: &str, nonce: u64, seq: u64, groups: &[GroupId]) -> Claim {
        Claim {
            name: name.into(),
            nonce,
            seq,
            groups: groups.to_vec(),
        }
    }

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

    #[test]
    fn majority_intersection_prevents_two_holders() {
        // Three voters; a and b race for group 0 with interleaved claims. However the
        // answers interleave, at most one of them reaches a quorum of 2.
        for order in 0..8u32 {
            let mut voters: Vec<Voter> = (0..3).map(|i| voter(i, &format!("v{i}"))).collect();
            let mut a = Claimer::new("a", 1, 3, MS * 300);
            let mut b = Claimer::new("b", 2, 3, MS * 300);
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
                    let ans = v.handle_claim(c, t(501)).unwrap();
                    if c.name == "a" {
                        a.handle_answer(&ans)
                    } else {
                        b.handle_answer(&ans)
                    };
                }
            }
            assert!(
                !(a.lease(0, 2).is_some() && b.lease(0, 2).is_some()),
                "order {order}"
            );
            assert!(a.lease(0, 2).is_some() || b.lease(0, 2).is_some());
        }
    }
}
