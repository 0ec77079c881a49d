//! Voter sets that change by reload, one voter per step (DESIGN §4, issue 12;
//! `docs/safety.md` §4.12).
//!
//! The voter set is not in the cluster id: nodes running different voter sets keep
//! talking while a change rolls through. Three rules keep two nodes from answering
//! for one address at once:
//!
//! * **Every answer names the voter's set** (its [`VoterSet::digest`]; the voter by
//!   its index in that set). A claimer resolves the digest here ([`VoterSets`]), and
//!   its lease on a group needs a majority of its own set *and* of every set its
//!   counting grants name (`Claimer::lease`). So a lease always rests on a majority
//!   of a set some voter actually ran when it granted.
//! * **A step is one voter** ([`step`]): the old and new sets differ by one name,
//!   so a majority of each intersects a majority of the other.
//! * **A step waits for the previous one to settle** ([`may_step`]): a node on set C
//!   moves to N only when a majority of C's voters have been seen running C (or N)
//!   for at least P, and every live member runs a set within one step of N. Then
//!   every grant naming the set before C has lapsed, so two leases always rest on
//!   majorities of sets at most one step apart, which intersect. A node that fell
//!   behind (partitioned or down during a rollout) may instead move straight to a
//!   set a majority of whose voters have run it for P: that creates nothing new.
//!
//! A node that becomes a voter by a step starts a fresh voter that grants nothing for
//! W (it may have given promises in an earlier term and forgotten them); one that
//! leaves the set stops granting at once (it promises nothing to anyone).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::hash::StableHasher;
use crate::core::time::Instant;

/// Most voter sets a node holds besides its own.
pub const MAX_SETS: usize = 16;
/// Encoded size limit of one voter set: it travels in one datagram.
pub const MAX_SET_BYTES: usize = 1100;
/// A voter set is asked for at most once per this period.
pub const SET_REQUEST_PERIOD: Duration = Duration::from_millis(200);

/// A voter set: the voters and, among them, the witnesses (both sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterSet {
    /// V, sorted.
    pub voters: Vec<String>,
    /// Voters that never hold a VIP, sorted.
    pub witnesses: Vec<String>,
}

impl VoterSet {
    /// A set with canonical ordering applied.
    pub fn new(mut voters: Vec<String>, mut witnesses: Vec<String>) -> VoterSet {
        voters.sort();
        voters.dedup();
        witnesses.sort();
        witnesses.dedup();
        VoterSet { voters, witnesses }
    }

    /// The digest every answer carries and every node gossips (`ConfigDigests::voters`).
    pub fn digest(&self) -> u64 {
        let mut h = StableHasher::new();
        h.write_str("wackamole-voters-v1");
        for list in [&self.voters, &self.witnesses] {
            h.write_u64(list.len() as u64);
            for v in list {
                h.write_str(v);
            }
        }
        h.finish()
    }

    /// q = ⌊|V|/2⌋ + 1.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// Whether `name` is a voter of this set.
    pub fn contains(&self, name: &str) -> bool {
        self.voters
            .binary_search_by(|v| v.as_str().cmp(name))
            .is_ok()
    }

    /// Whether `name` is a witness of this set.
    pub fn is_witness(&self, name: &str) -> bool {
        self.witnesses
            .binary_search_by(|v| v.as_str().cmp(name))
            .is_ok()
    }

    /// The encoded size (what a [`VoterSet`] datagram body takes).
    pub fn encoded_len(&self) -> usize {
        postcard::to_allocvec(self).map_or(usize::MAX, |v| v.len())
    }
}

/// The voters in exactly one of `a` and `b`.
fn changed<'a>(a: &'a VoterSet, b: &'a VoterSet) -> Vec<&'a str> {
    let x: BTreeSet<&str> = a.voters.iter().map(String::as_str).collect();
    let y: BTreeSet<&str> = b.voters.iter().map(String::as_str).collect();
    x.symmetric_difference(&y).copied().collect()
}

/// Whether two sets are at most one voter apart (every majority of one then meets
/// every majority of the other).
pub fn within_one_step(a: &VoterSet, b: &VoterSet) -> bool {
    changed(a, b).len() <= 1
}

/// Checks that `to` is one step from `from`: one voter added or removed (or none),
/// and the witnesses unchanged but for that voter. `me`'s own witness status may
/// not change (it decides whether this process holds VIPs at all).
pub fn step(from: &VoterSet, to: &VoterSet, me: &str) -> Result<(), String> {
    let moved = changed(from, to);
    if moved.len() > 1 {
        return Err(format!(
            "voters: {:?} → {:?} changes {} voters ({}); a reload may add or remove one voter at a time, so roll it in steps",
            from.voters,
            to.voters,
            moved.len(),
            moved.join(", ")
        ));
    }
    if to.voters.is_empty() {
        return Err("voters: the new set is empty".into());
    }
    let wa: BTreeSet<&str> = from.witnesses.iter().map(String::as_str).collect();
    let wb: BTreeSet<&str> = to.witnesses.iter().map(String::as_str).collect();
    if let Some(w) = wa.symmetric_difference(&wb).find(|w| !moved.contains(w)) {
        return Err(format!(
            "witnesses: {w:?} changes witness status without joining or leaving the voters; that needs a restart"
        ));
    }
    if from.is_witness(me) != to.is_witness(me) {
        return Err(format!(
            "witnesses: this node ({me}) would become or stop being a witness; that needs a restart"
        ));
    }
    Ok(())
}

/// What this node knows of one live member's voter set.
#[derive(Clone, Debug)]
pub struct Seen<'a> {
    /// The member's name.
    pub name: &'a str,
    /// The set it gossips, if this node has resolved its digest.
    pub set: Option<&'a VoterSet>,
    /// Its gossiped digest.
    pub digest: u64,
    /// Since when (this node's clock) it has gossiped that digest.
    pub since: Instant,
    /// The digest it gossiped before, and since when (it ran that one from then
    /// until `since`).
    pub prev: Option<(u64, Instant)>,
}

impl Seen<'_> {
    /// Whether it has run one of `ok` without a break since `now - settle` or
    /// earlier, as far as this node has seen.
    fn settled(&self, ok: &[u64], now: Instant, settle: Duration) -> bool {
        ok.contains(&self.digest)
            && (now >= self.since + settle
                || self
                    .prev
                    .is_some_and(|(d, t)| ok.contains(&d) && now >= t + settle))
    }
}

/// The step rule (`docs/safety.md` §4.12): may this node (`me`: its name, `cur`
/// and its history) move to `new` at `now`? `members` are the other live members;
/// `settle` is P. `Err` says why not, in words an operator can act on.
pub fn may_step(
    me: &Seen<'_>,
    cur: &VoterSet,
    new: &VoterSet,
    members: &[Seen<'_>],
    now: Instant,
    settle: Duration,
) -> Result<(), String> {
    // Catching up: another member has run the new set for P, and with this node
    // (if it is one of them) a majority of the new set's voters runs it. The move
    // creates no position that was not reached already, which is all §4.12's
    // argument needs of it; counting this node lets a voter that missed a step join
    // a set only it and the others who moved on make a majority of (seed
    // 63427301979: voters {n00, n01} → {n00, n01, n02} → {n00, n02} rolled past n00,
    // which could then neither step nor catch up, and no lease formed anywhere).
    let nd = [new.digest()];
    let others_run_it = members.iter().any(|m| m.settled(&nd, now, settle));
    let running_new = new
        .voters
        .iter()
        .filter(|v| {
            v.as_str() == me.name
                || members
                    .iter()
                    .any(|m| m.name == v.as_str() && m.settled(&nd, now, settle))
        })
        .count();
    if others_run_it
        && running_new >= new.quorum()
        && cur.is_witness(me.name) == new.is_witness(me.name)
    {
        return Ok(());
    }
    step(cur, new, me.name)?;
    if cur.voters == new.voters {
        return Ok(());
    }
    for m in members {
        match m.set {
            None => {
                return Err(format!(
                    "voters: {}'s voter set is not known here yet; retry in a second",
                    m.name
                ));
            }
            Some(s) if !within_one_step(s, new) => {
                return Err(format!(
                    "voters: {} runs voters {:?}, more than one step from the new set {:?}; reload it first",
                    m.name, s.voters, new.voters
                ));
            }
            Some(_) => {}
        }
    }
    let ok = [cur.digest(), new.digest()];
    let mut have = Vec::new();
    for v in &cur.voters {
        let yes = std::iter::once(me)
            .chain(members)
            .any(|m| m.name == v && m.settled(&ok, now, settle));
        if yes {
            have.push(v.as_str());
        }
    }
    if have.len() < cur.quorum() {
        return Err(format!(
            "voters: only {} of the current voters {:?} ({}) have run this set (or the new one) for {:.0} ms; a step needs {} of them, so the previous step has settled: retry shortly",
            have.len(),
            cur.voters,
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            },
            settle.as_secs_f64() * 1e3,
            cur.quorum()
        ));
    }
    Ok(())
}

/// Voter sets this node knows, by digest: the ones members gossip and answers name.
#[derive(Clone, Debug, Default)]
pub struct VoterSets {
    known: BTreeMap<u64, (VoterSet, Instant)>,
    asked: BTreeMap<u64, Instant>,
}

impl VoterSets {
    /// The set with digest `d`.
    pub fn get(&self, d: u64) -> Option<&VoterSet> {
        self.known.get(&d).map(|(s, _)| s)
    }

    /// Marks `d` as in use (kept ahead of others when the cache is full).
    pub fn touch(&mut self, d: u64, now: Instant) {
        if let Some((_, t)) = self.known.get_mut(&d) {
            *t = now;
        }
    }

    /// Stores a set received from a member (its digest is computed here, so a set is
    /// only ever found under its own digest). Returns the digest.
    pub fn insert(&mut self, set: VoterSet, now: Instant) -> u64 {
        let d = set.digest();
        self.asked.remove(&d);
        self.known.insert(d, (set, now));
        while self.known.len() > MAX_SETS {
            let oldest = self
                .known
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(d, _)| *d)
                .expect("non-empty");
            self.known.remove(&oldest);
        }
        d
    }

    /// Whether to ask for `d` now (at most once per [`SET_REQUEST_PERIOD`]).
    pub fn should_request(&mut self, d: u64, now: Instant) -> bool {
        if self.known.contains_key(&d) {
            return false;
        }
        self.asked.retain(|_, t| now < *t + SET_REQUEST_PERIOD * 10);
        match self.asked.get(&d) {
            Some(t) if now < *t + SET_REQUEST_PERIOD => false,
            _ => {
                if self.asked.len() < MAX_SETS {
                    self.asked.insert(d, now);
                    true
                } else {
                    false
                }
            }
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

    fn set(v: &[&str]) -> VoterSet {
        VoterSet::new(v.iter().map(|s| s.to_string()).collect(), vec![])
    }

    /// A member seen running `s` since `since`, with no earlier set known.
    fn seen(name: &'static str, s: &'static VoterSet, since: Instant) -> Seen<'static> {
        Seen {
            name,
            set: Some(s),
            digest: s.digest(),
            since,
            prev: None,
        }
    }

    /// Whether some majority of `a` and some majority of `b` are disjoint.
    fn disjoint_majorities(a: &VoterSet, b: &VoterSet) -> bool {
        let only_a = a.voters.iter().filter(|v| !b.contains(v)).count();
        let only_b = b.voters.iter().filter(|v| !a.contains(v)).count();
        let both = a.voters.len() - only_a;
        a.quorum().saturating_sub(only_a) + b.quorum().saturating_sub(only_b) <= both
    }

    #[test]
    fn one_step_sets_share_every_pair_of_majorities_two_steps_may_not() {
        let names = ["a", "b", "c", "d", "e", "f", "g"];
        for n in 1..=6 {
            let base = set(&names[..n]);
            let add = set(&names[..n + 1]);
            assert!(!disjoint_majorities(&base, &add), "n={n} add");
            if n >= 2 {
                let rm = set(&names[1..n]);
                assert!(!disjoint_majorities(&base, &rm), "n={n} remove");
                assert!(step(&base, &rm, "z").is_ok());
            }
            assert!(step(&base, &add, "z").is_ok());
        }
        // A replacement is two steps: {a,b,c} and {b,c,d} have {a,b} and {c,d}.
        let (x, y) = (set(&["a", "b", "c"]), set(&["b", "c", "d"]));
        assert!(disjoint_majorities(&x, &y));
        let e = step(&x, &y, "z").unwrap_err();
        assert!(e.contains("one voter at a time"), "{e}");
        // An add and a remove apart (4 → 5 and 4 → 3) can be disjoint too.
        let (p, q) = (set(&["a", "b", "c", "d", "e"]), set(&["b", "c", "d"]));
        assert!(disjoint_majorities(&p, &q));
    }

    #[test]
    fn witnesses_move_only_with_their_voter() {
        let a = VoterSet::new(vec!["a".into(), "b".into(), "c".into()], vec![]);
        let w = VoterSet::new(
            vec!["a".into(), "b".into(), "c".into(), "w".into()],
            vec!["w".into()],
        );
        assert!(step(&a, &w, "a").is_ok());
        assert!(step(&w, &a, "a").is_ok());
        let c_witness = VoterSet::new(a.voters.clone(), vec!["c".into()]);
        assert!(step(&a, &c_witness, "a").is_err());
        assert!(step(&a, &w, "w").is_err(), "own witness status");
    }

    #[test]
    fn a_step_waits_for_a_settled_majority_of_the_current_set() {
        let cur = set(&["a", "b", "c"]);
        let new = set(&["a", "b", "c", "d"]);
        let p = MS * 400;
        let cur_s: &'static VoterSet = Box::leak(Box::new(cur.clone()));
        let new_s: &'static VoterSet = Box::leak(Box::new(new.clone()));
        let me = |since| seen("a", cur_s, since);
        // b settled on the current set, c on the new one: with a, three of three.
        let m = [seen("b", cur_s, t(0)), seen("c", new_s, t(100))];
        assert!(may_step(&me(t(0)), &cur, &new, &m, t(500), p).is_ok());
        // c moved 300 ms ago from a set two steps away, b is unseen: a alone is
        // no majority.
        let far: &'static VoterSet = Box::leak(Box::new(set(&["a", "b"])));
        let c_moved = Seen {
            prev: Some((far.digest(), t(0))),
            ..seen("c", new_s, t(200))
        };
        let e = may_step(
            &me(t(0)),
            &cur,
            &new,
            std::slice::from_ref(&c_moved),
            t(500),
            p,
        )
        .unwrap_err();
        assert!(e.contains("only 1 of"), "{e}");
        // Had c moved from the current set, it ran the current or the new one
        // throughout: it counts.
        let c_stepped = Seen {
            prev: Some((cur.digest(), t(0))),
            ..c_moved
        };
        assert!(may_step(&me(t(0)), &cur, &new, &[c_stepped], t(500), p).is_ok());
        // This node itself moved too recently.
        let m = [seen("b", cur_s, t(0))];
        assert!(may_step(&me(t(300)), &cur, &new, &m, t(500), p).is_err());
        assert!(may_step(&me(t(0)), &cur, &new, &m, t(500), p).is_ok());
        // A live member two steps from the new set blocks the step.
        let m = [seen("b", cur_s, t(0)), seen("x", far, t(0))];
        let e = may_step(&me(t(0)), &cur, &new, &m, t(500), p).unwrap_err();
        assert!(e.contains("x runs voters"), "{e}");
        // An unresolved member set blocks it too.
        let m = [
            seen("b", cur_s, t(0)),
            Seen {
                name: "y",
                set: None,
                digest: 9,
                since: t(0),
                prev: None,
            },
        ];
        assert!(may_step(&me(t(0)), &cur, &new, &m, t(500), p).is_err());
        // A set with the same voters is always a step.
        assert!(may_step(&me(t(499)), &cur, &cur, &[], t(500), p).is_ok());
        // Catching up: two steps behind, to a set a majority of its voters has
        // run for P.
        let two: &'static VoterSet = Box::leak(Box::new(set(&["b", "c", "d"])));
        let m = [
            seen("b", two, t(0)),
            seen("c", two, t(0)),
            seen("d", two, t(200)),
        ];
        assert!(may_step(&me(t(0)), &cur, two, &m, t(500), p).is_ok());
        let m = [
            seen("b", two, t(0)),
            seen("c", two, t(200)),
            seen("d", two, t(200)),
        ];
        let e = may_step(&me(t(0)), &cur, two, &m, t(500), p).unwrap_err();
        assert!(e.contains("one voter at a time"), "{e}");
    }

    #[test]
    fn a_voter_left_behind_catches_up_to_a_set_it_completes_the_majority_of() {
        // {a, b} → {a, b, c} → {a, c} rolled past a: b and c run {a, c}. a can
        // neither step ({a, b, c}: b runs a third set) nor, counting only the
        // others, catch up ({a, c} needs a and c). Counting itself, it catches up.
        let p = MS * 400;
        let cur = set(&["a", "b"]);
        let last: &'static VoterSet = Box::leak(Box::new(set(&["a", "c"])));
        let mid = set(&["a", "b", "c"]);
        let cur_s: &'static VoterSet = Box::leak(Box::new(cur.clone()));
        let me = seen("a", cur_s, t(0));
        let m = [seen("b", last, t(0)), seen("c", last, t(0))];
        assert!(may_step(&me, &cur, &mid, &m, t(500), p).is_err());
        assert!(may_step(&me, &cur, last, &m, t(500), p).is_ok());
        // Not before the others have run it for P.
        let m = [seen("b", last, t(0)), seen("c", last, t(200))];
        assert!(may_step(&me, &cur, last, &m, t(500), p).is_err());
        // Never to a set nobody else runs: that would be a new position, which only
        // a step (one voter, the last one settled) may create.
        let fresh: &'static VoterSet = Box::leak(Box::new(set(&["a", "d"])));
        let m = [seen("b", cur_s, t(0))];
        assert!(may_step(&me, &cur, fresh, &m, t(500), p).is_err());
    }

    #[test]
    fn the_cache_keeps_sets_under_their_own_digest_and_asks_rarely() {
        let mut s = VoterSets::default();
        let x = set(&["a", "b", "c"]);
        assert!(s.should_request(x.digest(), t(0)));
        assert!(!s.should_request(x.digest(), t(100)));
        assert!(s.should_request(x.digest(), t(250)));
        let d = s.insert(x.clone(), t(300));
        assert_eq!(d, x.digest());
        assert_eq!(s.get(d), Some(&x));
        assert!(!s.should_request(d, t(1000)));
        for i in 0..(MAX_SETS + 4) {
            s.insert(set(&[&format!("n{i}")]), t(400 + i as u64));
        }
        assert!(s.get(d).is_none(), "least recently used goes first");
        assert!(s.known.len() <= MAX_SETS);
    }
}
