//! Two-node mode's peer presence (DESIGN "Quorum off", docs/safety.md §4.7).
//!
//! The two nodes are the voters and q is 2, except that a node counts its peer
//! *absent* — and its own grant a lease (q = 1) — when it has heard nothing at all from
//! the peer (claims, answers, SWIM) for Q₂ = P + RTT, or the peer announced a graceful
//! exit. A node that was itself frozen or stalled (a gap in its own inputs longer than
//! the contention window) restarts the absence clock and, for Q₂, trusts no sign of
//! absence: the peer's datagrams may be waiting in its socket.
//!
//! In majority mode this struct exists but is never asked (`peer` is `None`).

use std::time::Duration;

use super::time::Instant;

/// What this node knows of its two-node peer.
#[derive(Clone, Debug)]
pub struct Presence {
    /// The peer's name (two-node mode only).
    peer: Option<String>,
    /// When we last heard the peer's lease or SWIM traffic.
    heard: Option<Instant>,
    /// The lease nonce the peer announced leaving with.
    left_nonce: Option<u64>,
    /// Last time any input reached this node.
    last_input: Instant,
    /// After a stall of our own, no sign of the peer's absence is trusted until then.
    stall_until: Option<Instant>,
    /// A gap in our own inputs longer than this is a stall (W_c = 3R).
    stall_gap: Duration,
    /// Q₂ = P + RTT: how long the absence clock is distrusted after a stall.
    distrust: Duration,
    /// Q₂ for the absence rule itself (zero under the simulator's `--break quiescence`).
    absent_after: Duration,
}

impl Presence {
    /// Presence tracking for `peer` (two-node mode) or for nobody.
    pub fn new(
        peer: Option<String>,
        stall_gap: Duration,
        q2: Duration,
        absent_after: Duration,
        now: Instant,
    ) -> Presence {
        Presence {
            peer,
            heard: None,
            left_nonce: None,
            last_input: now,
            stall_until: None,
            stall_gap,
            distrust: q2,
            absent_after,
        }
    }

    /// The peer's name, in two-node mode.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// Whether `name` is the two-node peer.
    pub fn is_peer(&self, name: &str) -> bool {
        self.peer.as_deref() == Some(name)
    }

    /// Any input at `now`. Returns true when it ends a stall of our own (a gap longer
    /// than the contention window while running): the absence clock restarts and
    /// every group must be re-evaluated.
    pub fn note_input(&mut self, running: bool, now: Instant) -> bool {
        let stalled = self.peer.is_some() && now > self.last_input + self.stall_gap && running;
        if stalled {
            self.heard = Some(now);
            // Nor does a leave notice read from that backlog: a newer process of the
            // peer may have started and, not hearing us, taken the groups alone. For
            // Q₂ we trust no sign of absence; a live peer is heard within that time.
            self.stall_until = Some(now + self.distrust);
        }
        self.last_input = self.last_input.max(now);
        stalled
    }

    /// Traffic from the peer (SWIM from its address, an answer from its voter index).
    pub fn heard(&mut self, now: Instant) {
        self.heard = Some(now);
    }

    /// A claim carrying `name` and `nonce`. Any claim of the peer's name shows it
    /// present, whatever its nonce — unless it is the nonce it left with: a restarted
    /// peer's first claims precede its metadata, and under a one-way cut they are the
    /// only sign that keeps us from holding alone (docs/safety.md §4.7, §4.9). Returns
    /// whether it counted.
    pub fn on_claim(&mut self, name: &str, nonce: u64, now: Instant) -> bool {
        if self.is_peer(name) && self.left_nonce != Some(nonce) {
            self.heard = Some(now);
            self.left_nonce = None;
            return true;
        }
        false
    }

    /// The peer announced a graceful exit of its process `nonce`. Returns whether it
    /// was the peer.
    pub fn on_leaving(&mut self, name: &str, nonce: u64) -> bool {
        if self.is_peer(name) {
            self.left_nonce = Some(nonce);
            return true;
        }
        false
    }

    /// Whether the peer counts as absent at `now`; `running_since` bounds the silence
    /// from below (a node that just started has not been listening).
    pub fn absent(&self, running_since: Instant, now: Instant) -> bool {
        if self.stall_until.is_some_and(|t| now < t) {
            return false;
        }
        if self.left_nonce.is_some() {
            return true;
        }
        let since = self.heard.map_or(running_since, |h| h.max(running_since));
        now >= since + self.absent_after
    }

    /// The grants that make a lease in two-node mode: 1 with the peer absent, else 2.
    pub fn quorum(&self, running_since: Instant, now: Instant) -> usize {
        if self.absent(running_since, now) {
            1
        } else {
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn two_node() -> Presence {
        Presence::new(Some("b".into()), MS * 150, MS * 400, MS * 400, at(0))
    }

    #[test]
    fn a_silent_peer_is_absent_after_q2_and_any_sign_resets_it() {
        let mut p = two_node();
        assert_eq!(p.quorum(at(0), at(399)), 2);
        assert_eq!(p.quorum(at(0), at(400)), 1);
        p.heard(at(300));
        assert!(!p.absent(at(0), at(699)) && p.absent(at(0), at(700)));
        // A claim from any process of the peer counts.
        assert!(p.on_claim("b", 77, at(650)));
        assert!(!p.absent(at(0), at(1049)));
        assert!(!p.on_claim("c", 1, at(660)), "not the peer");
    }

    #[test]
    fn a_leave_notice_makes_it_absent_until_a_claim_of_another_process() {
        let mut p = two_node();
        p.heard(at(10));
        assert!(p.on_leaving("b", 5));
        assert!(p.absent(at(0), at(11)));
        assert!(
            !p.on_claim("b", 5, at(20)),
            "the leaving process's own claims"
        );
        assert!(p.absent(at(0), at(21)));
        assert!(p.on_claim("b", 6, at(30)), "a new process of the peer");
        assert!(!p.absent(at(0), at(31)));
    }

    #[test]
    fn after_a_stall_of_our_own_no_sign_of_absence_is_trusted_for_q2() {
        let mut p = two_node();
        assert!(!p.note_input(true, at(100)));
        p.on_leaving("b", 5);
        // 200 ms without any input: we were frozen; the backlog proves nothing.
        assert!(p.note_input(true, at(300)));
        assert!(!p.absent(at(0), at(699)), "leave notice distrusted");
        assert!(p.absent(at(0), at(700)));
        // Not running (flushing): no stall is noted.
        let mut q = two_node();
        assert!(!q.note_input(false, at(1000)));
    }

    #[test]
    fn the_start_bounds_the_silence_and_majority_mode_tracks_nobody() {
        let p = two_node();
        assert!(!p.absent(at(500), at(899)) && p.absent(at(500), at(900)));
        let mut m = Presence::new(None, MS * 150, MS * 400, MS * 400, at(0));
        assert!(!m.note_input(true, at(10_000)));
        assert!(!m.on_claim("b", 1, at(1)) && !m.on_leaving("b", 1));
        assert!(m.peer().is_none());
    }
}
