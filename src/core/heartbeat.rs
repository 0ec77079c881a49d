//! Claims as the heartbeat between holders and voters (docs/safety.md §4.16).
//!
//! Every holder sends a claim to every voter each round, so a voter already hears
//! each holder several times per SWIM probe period. This module turns that into
//! failure detection: a voter that has heard a holder's claims and then misses
//! them for the heartbeat window (three claim periods and an RTT) suspects the
//! holder through SWIM; the holder refutes if it is alive (foca's incarnation
//! rule), and is declared down after the suspicion time if not. SWIM's own probes
//! can then be slow (they only watch members that claim nothing), which is most of
//! an idle cluster's datagrams gone.
//!
//! Only liveness rests on this: a wrong suspicion is refuted, a missed one leaves
//! detection to SWIM's probes; leases never look at membership (DESIGN §2.3 rule 9).
//!
//! Which claims count: those that list groups (a claimer that lingers with an empty
//! claim after a release is about to go quiet on purpose, and stops being watched).
//! A holder that stays silent after a suspicion it refuted (claims lost one way, a
//! voter set it left by reload) is suspected again after a window twice as long,
//! and not again after [`MAX_RETRIES`] refuted suspicions until a claim arrives.

use std::collections::BTreeMap;
use std::time::Duration;

use super::time::Instant;

/// Refuted suspicions of one silent holder before this voter stops suspecting it
/// (until its next claim).
pub const MAX_RETRIES: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watch {
    /// When the silence being timed started: the last claim, or the last suspicion.
    since: Instant,
    /// How long a silence must last before the next suspicion.
    window: Duration,
    /// Suspicions since the last claim.
    suspicions: u32,
}

/// The holders this voter hears claims from, and when it last heard each.
#[derive(Clone, Debug)]
pub struct Heartbeats {
    window: Duration,
    watched: BTreeMap<String, Watch>,
}

impl Heartbeats {
    /// Holders are suspected after `window` without a claim.
    pub fn new(window: Duration) -> Heartbeats {
        Heartbeats {
            window,
            watched: BTreeMap::new(),
        }
    }

    /// A claim from `name` arrived at `now`; `holding` is whether it lists groups.
    /// Returns whether this voter had suspected `name` since its last claim: the
    /// claim proves it alive, so the suspicion is not to be turned into a down.
    pub fn claim(&mut self, name: &str, holding: bool, now: Instant) -> bool {
        let fresh = Watch {
            since: now,
            window: self.window,
            suspicions: 0,
        };
        let before = match (self.watched.get_mut(name), holding) {
            (Some(w), true) => Some(std::mem::replace(w, fresh)),
            (Some(_), false) => self.watched.remove(name),
            (None, true) => {
                self.watched.insert(name.to_string(), fresh);
                None
            }
            (None, false) => None,
        };
        before.is_some_and(|w| w.suspicions > 0)
    }

    /// Stops watching every name `keep` rejects (members gone from the view).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.watched.retain(|n, _| keep(n));
    }

    /// The holders whose silence has lasted their window at `now`: each is to be
    /// suspected once, and its next window (if it stays silent) is twice as long.
    pub fn overdue(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for (name, w) in self.watched.iter_mut() {
            if w.suspicions < MAX_RETRIES && now >= w.since + w.window {
                out.push(name.clone());
                w.suspicions += 1;
                w.since = now;
                w.window *= 2;
            }
        }
        out
    }

    /// The next instant [`Heartbeats::overdue`] may return something.
    pub fn deadline(&self) -> Option<Instant> {
        self.watched
            .values()
            .filter(|w| w.suspicions < MAX_RETRIES)
            .map(|w| w.since + w.window)
            .min()
    }

    /// Whether no holder is watched.
    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    const W: Duration = Duration::from_millis(95);

    #[test]
    fn a_holder_whose_claims_keep_coming_is_never_suspected() {
        let mut h = Heartbeats::new(W);
        for i in 0..100 {
            h.claim("a", true, t(i * 30));
            assert!(h.overdue(t(i * 30 + 29)).is_empty());
        }
        assert_eq!(h.deadline(), Some(t(99 * 30 + 95)));
    }

    #[test]
    fn a_silent_holder_is_suspected_once_per_window_with_backoff() {
        let mut h = Heartbeats::new(W);
        h.claim("a", true, t(0));
        assert!(h.overdue(t(94)).is_empty());
        assert_eq!(h.overdue(t(95)), vec!["a".to_string()]);
        // Not again within the doubled window.
        assert!(h.overdue(t(95 + 189)).is_empty());
        assert_eq!(h.overdue(t(95 + 190)), vec!["a".to_string()]);
        assert_eq!(h.deadline(), Some(t(285 + 380)));
        assert_eq!(h.overdue(t(665)), vec!["a".to_string()]);
        // MAX_RETRIES reached: left to SWIM's probes until a claim comes.
        assert_eq!(h.deadline(), None);
        assert!(h.overdue(t(100_000)).is_empty());
        h.claim("a", true, t(100_000));
        assert_eq!(h.deadline(), Some(t(100_095)));
    }

    #[test]
    fn an_empty_claim_ends_the_watch() {
        let mut h = Heartbeats::new(W);
        h.claim("a", true, t(0));
        h.claim("b", true, t(0));
        h.claim("a", false, t(10));
        assert_eq!(h.overdue(t(200)), vec!["b".to_string()]);
        h.retain(|n| n != "b");
        assert!(h.is_empty());
        assert_eq!(h.deadline(), None);
    }

    #[test]
    fn a_claim_after_a_suspicion_resets_the_window() {
        let mut h = Heartbeats::new(W);
        assert!(!h.claim("a", true, t(0)));
        assert_eq!(h.overdue(t(100)).len(), 1);
        assert!(h.claim("a", true, t(150)), "the claim answers a suspicion");
        assert!(!h.claim("a", true, t(160)));
        assert!(h.overdue(t(254)).is_empty());
        assert_eq!(h.overdue(t(255)).len(), 1);
    }
}
