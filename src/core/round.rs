//! The round: one wake-up claims and refreshes (docs/safety.md §4.14).
//!
//! A holder has two periodic duties: its claim round (the lease, every R or sooner)
//! and the fence refresh (the gate's `live` elements expire E after their last write,
//! so each held group is rewritten every F, E ≥ 2F). Run on separate timers they cost
//! two wake-ups where one would do, and the refresh's own wake-ups were a quarter of
//! an idle agent's. So:
//!
//! 1. **A claim round carries the refresh** of every held group refreshed at least
//!    θ = max(F/2, F − R) ago: the refresh would otherwise fall due before the next
//!    round (F − R), but never twice in half a period (F/2, as when rounds align).
//! 2. **A refresh that falls due brings the claim round forward** when this node's
//!    last claim is at least R/2 old (claims may always go early; a round is then
//!    shortened by at most half). With F ≤ R the rounds settle at F.
//! 3. **Nothing else carries a refresh**: a SWIM datagram or another node's claim
//!    that needs no claim of ours leaves the refresh to the round.
//!
//! Only liveness rests on this (I6: a refresh is at most F after the last, so one
//! late period of up to F is survived); every refresh is still checked against the
//! lease (§4.4), however it is scheduled. `--break refresh` pushes the refresh past E
//! and stops rounds carrying it: every refresh then finds its element expired, and the
//! simulator reports liveness failures, never a violation.

use std::time::Duration;

use crate::core::time::Instant;

/// The schedule of claim rounds and refreshes for claim period R and refresh
/// period F.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    claim: Duration,
    refresh: Duration,
    carry: bool,
}

impl Round {
    /// Claim period `claim` (R), refresh period `refresh` (F).
    pub fn new(claim: Duration, refresh: Duration) -> Round {
        Round {
            claim,
            refresh,
            carry: true,
        }
    }

    /// The simulator's broken mode: the refresh period is `late` (past E) and no
    /// round carries a refresh.
    pub fn broken(late: Duration, claim: Duration) -> Round {
        Round {
            claim,
            refresh: late,
            carry: false,
        }
    }

    /// F: a held group is refreshed at the latest this long after its last refresh.
    pub fn refresh_period(&self) -> Duration {
        self.refresh
    }

    /// R′ as the rounds run when claims flow: min(R, F). SWIM's timers may move
    /// this far to share a round's wake-up (`membership::TimerSlack`).
    pub fn period(&self) -> Duration {
        self.claim.min(self.refresh)
    }

    /// θ = max(F/2, F − R): a claim round refreshes the groups refreshed this long ago.
    pub fn carry_after(&self) -> Duration {
        (self.refresh / 2).max(self.refresh.saturating_sub(self.claim))
    }

    /// Whether a claim round at `now` carries the refresh, given the oldest held
    /// group's last refresh.
    pub fn carries(&self, oldest_refresh: Option<Instant>, now: Instant) -> bool {
        self.carry && oldest_refresh.is_some_and(|r| now >= r + self.carry_after())
    }

    /// Whether a wake-up at `now` must send the claim round because a refresh fell
    /// due (rule 2): the oldest held group's refresh is F old and this node's last
    /// claim is at least R/2 old (or there was none).
    pub fn brings_claim(
        &self,
        oldest_refresh: Option<Instant>,
        last_claim: Option<Instant>,
        now: Instant,
    ) -> bool {
        self.carry
            && oldest_refresh.is_some_and(|r| now >= r + self.refresh)
            && last_claim.is_none_or(|c| now >= c + self.claim / 2)
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

    #[test]
    fn theta_is_half_a_period_or_what_the_next_round_would_leave() {
        // Gate profiles: F ≤ R, every round carries (θ = F/2 keeps aligned
        // rounds from refreshing twice).
        assert_eq!(Round::new(ms(50), ms(40)).carry_after(), ms(20));
        assert_eq!(Round::new(ms(30), ms(25)).carry_after(), ms(12) + ms(1) / 2);
        // The address fence: F = 250 ms against R = 50 ms, the last round before
        // the refresh falls due carries it.
        assert_eq!(Round::new(ms(50), ms(250)).carry_after(), ms(200));
    }

    #[test]
    fn a_round_carries_the_refresh_only_past_theta() {
        let r = Round::new(ms(50), ms(40));
        assert!(!r.carries(None, at(100)));
        assert!(!r.carries(Some(at(100)), at(119)));
        assert!(r.carries(Some(at(100)), at(120)));
        assert!(!Round::broken(ms(100), ms(50)).carries(Some(at(0)), at(1000)));
    }

    #[test]
    fn a_due_refresh_brings_a_half_old_round_forward() {
        let r = Round::new(ms(50), ms(40));
        // Not due yet.
        assert!(!r.brings_claim(Some(at(100)), Some(at(100)), at(139)));
        // Due, and the last claim is at least R/2 old.
        assert!(r.brings_claim(Some(at(100)), Some(at(100)), at(140)));
        assert!(r.brings_claim(Some(at(100)), None, at(140)));
        // Due, but a claim went out 10 ms ago (an aligned round): the refresh goes
        // alone rather than a second round.
        assert!(!r.brings_claim(Some(at(100)), Some(at(130)), at(140)));
        // Nothing held, nothing due.
        assert!(!r.brings_claim(None, None, at(1000)));
        assert!(!Round::broken(ms(100), ms(50)).brings_claim(Some(at(0)), None, at(1000)));
    }
}
