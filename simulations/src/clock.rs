//! A node's local monotonic clock, drifting against simulated real time.
//!
//! `local(τ) = base_local + (τ − base_real) · rate`. The rate is drawn within
//! [1 − ρ, 1 + ρ] (ρ being the configured bound) and can be changed mid-run, e.g. for
//! an episode beyond ρ that the checker must catch. The model kernel's timers run on
//! the same clock, as jiffies follow the slewed CLOCK_MONOTONIC.

use wackamole::core::time::Instant;

/// Real (simulated) time in nanoseconds.
pub type Tau = u64;

/// A drifting clock.
#[derive(Clone, Debug)]
pub struct Clock {
    base_real: Tau,
    base_local: u64,
    rate: f64,
}

impl Clock {
    /// A clock reading `offset` at real time 0, running at `rate`.
    pub fn new(offset: u64, rate: f64) -> Clock {
        Clock {
            base_real: 0,
            base_local: offset,
            rate,
        }
    }

    /// The local reading at real time `tau`.
    pub fn local(&self, tau: Tau) -> Instant {
        let dt = tau.saturating_sub(self.base_real) as f64 * self.rate;
        Instant::from_nanos(self.base_local + dt as u64)
    }

    /// The first real time at which the clock reads at least `t` (never before `now`).
    pub fn real_at(&self, t: Instant, now: Tau) -> Tau {
        let dl = t.as_nanos().saturating_sub(self.base_local) as f64;
        let r = self.base_real + (dl / self.rate).ceil() as u64;
        // Rounding must never make a deadline fire early.
        let mut r = r.max(now);
        while self.local(r) < t {
            r += 1;
        }
        r
    }

    /// Changes the rate from real time `tau` on.
    pub fn set_rate(&mut self, tau: Tau, rate: f64) {
        let l = self.local(tau);
        self.base_real = tau;
        self.base_local = l.as_nanos();
        self.rate = rate;
    }

    /// Current rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_is_exact_enough() {
        let mut c = Clock::new(5_000, 1.000_9);
        for t in [0u64, 1, 999_999_937, 12_345_678_901] {
            let l = c.local(t);
            let r = c.real_at(l, 0);
            assert!(c.local(r) >= l && r <= t, "t={t} r={r}");
        }
        c.set_rate(1_000_000_000, 0.999);
        let l = c.local(2_000_000_000);
        assert!(c.local(c.real_at(l, 0)) >= l);
    }
}
