//! DESIGN §2.3 rule 8: contention. A claimer that is not bound and has no quorum
//! within 3R, or that is denied in favour of a live, higher-ranked holder, withdraws
//! the group and retries after a random backoff in [R, 2 s]. A bound holder never
//! withdraws because of denies (the caller only asks for unbound claims).
//!
//! Denies naming a holder that is down (or our own previous process) are waited out
//! for up to P, since its promises lapse by then. Right after a release hint, denies
//! naming the old holder are stale (the voters are freeing the group): the hint is
//! given 3R before contending again ([`hint_is_fresh`]).

use std::time::Duration;

use super::ClaimStatus;
use crate::core::time::Instant;

/// One unbound claim, as rule 8 sees it.
#[derive(Clone, Copy, Debug)]
pub struct Contest<'a> {
    /// What the answers so far say about the group.
    pub status: &'a ClaimStatus,
    /// Grants that make a lease now (q, or the two-node mode's 1 or 2).
    pub quorum: usize,
    /// This claimer's name and its rendezvous rank for the group.
    pub me: (&'a str, u64),
    /// When the claim started.
    pub since: Instant,
    /// Voters that answered anything within the last contention window.
    pub voters_heard: usize,
    /// The contention window W_c = 3R.
    pub window: Duration,
    /// P: how long a voter's promise to a dead holder can outlive it.
    pub promise_hold: Duration,
}

impl Contest<'_> {
    /// Whether to withdraw the claim at `now`. `live_rank(name)` is the rendezvous
    /// rank of a holder that is an active member, `None` for one that is not.
    pub fn withdraw(&self, live_rank: impl Fn(&str) -> Option<u64>, now: Instant) -> bool {
        if self.status.grants >= self.quorum {
            return false;
        }
        let (me, my_rank) = self.me;
        let mut live_lower = false;
        for h in self.status.deny_holders.iter().filter(|h| *h != me) {
            if let Some(rank) = live_rank(h) {
                if rank > my_rank {
                    return true;
                }
                live_lower = true;
            }
        }
        if now < self.since + self.window {
            return false;
        }
        if self.status.deny_holders.is_empty() {
            // Nobody refuses: either the voters are unreachable (or cannot reach us:
            // the one-way "hostage" case) — withdraw so our partial promises lapse —
            // or they are alive but still in their start-up wait — keep claiming.
            return self.voters_heard < self.quorum;
        }
        if live_lower {
            return false;
        }
        now >= self.since + self.window + self.promise_hold
    }
}

/// Whether a release hint that arrived at `hint_at` still excuses denies at `now`.
pub fn hint_is_fresh(hint: bool, hint_at: Instant, window: Duration, now: Instant) -> bool {
    hint && now < hint_at + window
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn contest<'a>(status: &'a ClaimStatus, heard: usize) -> Contest<'a> {
        Contest {
            status,
            quorum: 2,
            me: ("b", 50),
            since: at(1000),
            voters_heard: heard,
            window: MS * 150,
            promise_hold: MS * 400,
        }
    }

    fn denied_by(holders: &[&str], grants: usize) -> ClaimStatus {
        ClaimStatus {
            grants,
            deny_holders: holders.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// Ranks: "a" above us, "c" below; "gone" is not an active member.
    fn ranks(name: &str) -> Option<u64> {
        match name {
            "a" => Some(90),
            "c" => Some(10),
            "b" => Some(50),
            _ => None,
        }
    }

    #[test]
    fn a_deny_for_a_live_higher_ranked_holder_withdraws_at_once() {
        let st = denied_by(&["a"], 1);
        assert!(contest(&st, 3).withdraw(ranks, at(1001)));
    }

    #[test]
    fn a_quorum_never_withdraws() {
        let st = denied_by(&["a"], 2);
        assert!(!contest(&st, 3).withdraw(ranks, at(5000)));
    }

    #[test]
    fn a_lower_ranked_live_holder_is_contended_but_not_given_way_to() {
        let st = denied_by(&["c"], 1);
        let c = contest(&st, 3);
        assert!(!c.withdraw(ranks, at(1001)));
        assert!(!c.withdraw(ranks, at(9000)), "P elapsed: still ours to win");
    }

    #[test]
    fn denies_for_a_dead_holder_are_waited_out_for_p_after_the_window() {
        let st = denied_by(&["gone"], 1);
        let c = contest(&st, 3);
        assert!(!c.withdraw(ranks, at(1000 + 150 + 399)));
        assert!(c.withdraw(ranks, at(1000 + 150 + 400)));
        // Our own name in a deny (our previous process) counts like a dead holder.
        let st = denied_by(&["b"], 1);
        assert!(contest(&st, 3).withdraw(ranks, at(1000 + 550)));
    }

    #[test]
    fn silence_withdraws_after_the_window_only_if_the_voters_went_quiet() {
        let st = denied_by(&[], 1);
        assert!(!contest(&st, 1).withdraw(ranks, at(1149)), "inside 3R");
        assert!(
            contest(&st, 1).withdraw(ranks, at(1150)),
            "hostage: withdraw"
        );
        assert!(
            !contest(&st, 3).withdraw(ranks, at(1150)),
            "voters alive, in their start-up wait: keep claiming"
        );
    }

    #[test]
    fn a_release_hint_is_fresh_for_one_window() {
        assert!(hint_is_fresh(true, at(100), MS * 150, at(249)));
        assert!(!hint_is_fresh(true, at(100), MS * 150, at(250)));
        assert!(!hint_is_fresh(false, at(100), MS * 150, at(120)));
    }
}
