//! Answers that ride on claims (`docs/safety.md` §4.13).
//!
//! Every voter that holds VIPs is a claimer too, so between two such nodes a claim
//! and an answer cross in each direction every R. A voter's answer to a *renewal*
//! (a claim whose every group this voter already promised to the same lease id,
//! and that it grants whole) changes nothing the claimer is waiting for, so it may
//! wait for the voter's own next claim to that peer and travel in the same
//! datagram: one datagram per peer per round instead of two, and one wake-up fewer
//! at the claimer. Two rules keep the wait short and the rounds in step:
//!
//! * an answer waits at most L = [`ClusterConfig::answer_ride`] (the slack I4
//!   leaves, at most R); when a held answer's time is up, this node's next claim
//!   goes out then, early, and carries it (an answer goes alone only if no claim
//!   to its peer flows any more);
//! * a claim that arrives when this node's own last claim is at least R/2 old
//!   makes this node claim *now* (its answer rides at once): the first claimer of
//!   a round sets the phase for everyone, so rounds align and each node wakes
//!   once to receive, answer and claim.
//!
//! Anything else — a claim adding a group, a deny, an empty answer, a peer this
//! node does not claim to, two-node mode — is answered at once, so acquisitions
//! and contention are as fast as before. The promise itself is made when the claim
//! arrives, as always; holding the answer only delays what the claimer learns,
//! and a grant's worth is timed from the claim's send time, so safety (§4.2, §4.3)
//! does not depend on when or whether an answer arrives.
//!
//! [`ClusterConfig::answer_ride`]: crate::core::config::ClusterConfig::answer_ride

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::Answer;
use crate::core::time::Instant;

/// Held answers are bounded by the peers a node claims to; this caps a confused
/// address book.
const MAX_HELD: usize = 64;

/// What to do with an answer to a claim just handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ride {
    /// Send it on its own, now.
    Now,
    /// Hold it for this node's next claim (due within L).
    Wait,
    /// Claim now; the answer goes with that claim.
    ClaimNow,
}

/// Answers held for the next claim, per peer address.
#[derive(Clone, Debug)]
pub struct Riding {
    /// L (zero: never hold).
    bound: Duration,
    /// R.
    period: Duration,
    held: BTreeMap<SocketAddr, (Answer, Instant)>,
    last_claim: Option<Instant>,
    /// Broken mode (`--break ride`): nothing rides; held answers wait out L.
    late: bool,
}

impl Riding {
    /// Riding with bound `bound` (L) for claim period `period` (R).
    pub fn new(bound: Duration, period: Duration) -> Riding {
        Riding {
            bound,
            period,
            held: BTreeMap::new(),
            last_claim: None,
            late: false,
        }
    }

    /// The simulator's broken mode: held answers never ride on a claim; each goes
    /// out alone when L is up (with L = 2T, after its grants are worthless).
    pub fn broken(mut self) -> Riding {
        self.late = true;
        self
    }

    /// Decides for an answer to a claim handled at `now`: `renewal` (the claim
    /// added nothing, the answer grants it whole), `targeted` (this node's claims
    /// go to the claimer's address) and `next_claim` (when this node's next claim
    /// round is due, if claims flow; one due later than the held answer's L is
    /// brought forward to it).
    pub fn decide(
        &self,
        renewal: bool,
        targeted: bool,
        next_claim: Option<Instant>,
        now: Instant,
    ) -> Ride {
        if self.bound.is_zero() || !renewal || !targeted || self.held.len() >= MAX_HELD {
            return Ride::Now;
        }
        let Some(next) = next_claim else {
            return Ride::Now;
        };
        let half = self.period / 2;
        match self.last_claim {
            // This node's round is at least half over: claim now (alignment).
            None => Ride::ClaimNow,
            Some(t) if now >= t + half => Ride::ClaimNow,
            // The next claim comes within L; or, with L ≥ R/2, the engine brings
            // it forward to L (a round shortened by at most half).
            _ if next <= now + self.bound || self.bound >= half => Ride::Wait,
            // L is short of R/2 (`lean`): the claim is too far off.
            _ => Ride::Now,
        }
    }

    /// Holds `answer` for `to` until at most `now + L` (a newer answer to the same
    /// peer replaces an older one: it answers a later claim).
    pub fn hold(&mut self, to: SocketAddr, answer: Answer, now: Instant) {
        let until = self.held.get(&to).map_or(now + self.bound, |h| h.1);
        self.held.insert(to, (answer, until));
    }

    /// A claim goes out now: the answer held for `to`, if any.
    pub fn take(&mut self, to: SocketAddr) -> Option<Answer> {
        if self.late {
            return None;
        }
        self.held.remove(&to).map(|h| h.0)
    }

    /// This node sent a claim round at `now`.
    pub fn claimed(&mut self, now: Instant) {
        self.last_claim = Some(now);
    }

    /// When this node last sent a claim round.
    pub fn last_claim(&self) -> Option<Instant> {
        self.last_claim
    }

    /// Held answers whose time is up at `now` (or all of them with `all`), removed.
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<(SocketAddr, Answer)> {
        let keys: Vec<SocketAddr> = self
            .held
            .iter()
            .filter(|(_, h)| all || h.1 <= now)
            .map(|(a, _)| *a)
            .collect();
        keys.into_iter()
            .filter_map(|a| self.held.remove(&a).map(|h| (a, h.0)))
            .collect()
    }

    /// The earliest time a held answer must go out alone.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| h.1).min()
    }

    /// Whether any answer is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(n: u64) -> Instant {
        Instant::from_nanos(n * 1_000_000)
    }

    fn ans(seq: u64) -> Answer {
        Answer {
            voter: 0,
            set: 0,
            nonce: 1,
            seq,
            granted: vec![],
            denied: vec![],
        }
    }

    fn peer(p: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], p))
    }

    #[test]
    fn only_renewals_to_targeted_peers_with_a_claim_coming_wait() {
        let mut r = Riding::new(ms(30), ms(30));
        r.claimed(at(100));
        let next = Some(at(130));
        assert_eq!(r.decide(true, true, next, at(105)), Ride::Wait);
        assert_eq!(r.decide(false, true, next, at(105)), Ride::Now);
        assert_eq!(r.decide(true, false, next, at(105)), Ride::Now);
        assert_eq!(r.decide(true, true, None, at(105)), Ride::Now);
        // Past half a period since this node's last claim: claim now instead.
        assert_eq!(r.decide(true, true, next, at(115)), Ride::ClaimNow);
        // A next claim beyond L still waits when L ≥ R/2: the claim is brought
        // forward to L; with a shorter L it does not wait.
        let mut half = Riding::new(ms(15), ms(30));
        half.claimed(at(100));
        assert_eq!(half.decide(true, true, next, at(105)), Ride::Wait);
        let mut tight = Riding::new(ms(10), ms(30));
        tight.claimed(at(100));
        assert_eq!(tight.decide(true, true, next, at(105)), Ride::Now);
        assert_eq!(tight.decide(true, true, Some(at(112)), at(105)), Ride::Wait);
        // L = 0 turns riding off.
        let off = Riding::new(Duration::ZERO, ms(30));
        assert_eq!(off.decide(true, true, next, at(200)), Ride::Now);
    }

    #[test]
    fn a_held_answer_goes_with_the_claim_or_alone_when_its_time_is_up() {
        let mut r = Riding::new(ms(30), ms(30));
        r.hold(peer(1), ans(1), at(0));
        r.hold(peer(2), ans(1), at(10));
        // A newer answer replaces the older one but keeps its deadline.
        r.hold(peer(1), ans(2), at(20));
        assert_eq!(r.deadline(), Some(at(30)));
        assert_eq!(r.take(peer(1)).map(|a| a.seq), Some(2));
        assert!(r.take(peer(1)).is_none());
        assert!(r.due(at(39), false).is_empty());
        let d = r.due(at(40), false);
        assert_eq!(d.len(), 1);
        assert!(r.is_empty());
        r.hold(peer(3), ans(5), at(50));
        assert_eq!(r.due(at(50), true).len(), 1);
    }
}
