//! Local time as plain data.
//!
//! The core never reads a clock. Every input carries `now`, an [`Instant`] on the
//! node's own monotonic clock (CLOCK_BOOTTIME in the real agent, a drifting model
//! clock in the simulator). Instants from different nodes are never compared: the
//! quorum lease only ever compares readings of one clock, and bounds the rate
//! difference between clocks by ρ (see `docs/safety.md`).

use core::fmt;
use core::ops::{Add, Sub};
use std::time::Duration;

/// A reading of a node's local monotonic clock, in nanoseconds since an arbitrary
/// per-process origin.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Instant = Instant(0);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self - d`, or `None` before the origin.
    pub fn checked_sub(self, d: Duration) -> Option<Instant> {
        self.0.checked_sub(duration_nanos(d)).map(Instant)
    }

    /// `self - d`, clamped at the origin.
    pub fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(duration_nanos(d)))
    }
}

/// Something said at most once per period (a log line about inputs that keep coming):
/// [`Hush::hit`] counts an occurrence and, when it is time to say it again, answers
/// how many came since it was last said (this one included).
#[derive(Clone, Debug)]
pub struct Hush {
    period: Duration,
    count: u64,
    last: Option<Instant>,
}

impl Hush {
    /// Says the first occurrence, then at most one per `period`.
    pub const fn new(period: Duration) -> Hush {
        Hush {
            period,
            count: 0,
            last: None,
        }
    }

    /// One more occurrence at `now`: `Some(n)` if it is to be said, with the `n`
    /// occurrences since the last time.
    pub fn hit(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_since(t) < self.period)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Scales `d` by `factor`, rounding up to the next nanosecond so that a scaled
/// safety margin is never shortened by rounding.
pub fn scale_up(d: Duration, factor: f64) -> Duration {
    Duration::from_nanos((duration_nanos(d) as f64 * factor).ceil() as u64)
}

/// Scales `d` by `factor`, rounding down: used where a shorter value is the safe side.
pub fn scale_down(d: Duration, factor: f64) -> Duration {
    Duration::from_nanos((duration_nanos(d) as f64 * factor).floor() as u64)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.0 / 1_000_000_000,
            (self.0 % 1_000_000_000) / 1000
        )
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hush_says_the_first_then_once_a_period_with_the_count() {
        let mut h = super::Hush::new(Duration::from_secs(60));
        let t = |s: u64| Instant::from_nanos(s * 1_000_000_000);
        assert_eq!(h.hit(t(1)), Some(1));
        assert_eq!(h.hit(t(2)), None);
        assert_eq!(h.hit(t(60)), None);
        assert_eq!(h.hit(t(61)), Some(3));
        assert_eq!(h.hit(t(200)), Some(1));
    }

    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_nanos(5);
        assert_eq!(t.saturating_sub(Duration::from_nanos(10)), Instant::ZERO);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!((t + Duration::from_nanos(3)).as_nanos(), 8);
        assert_eq!(
            Instant::from_nanos(u64::MAX) + Duration::from_secs(1),
            Instant::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn scaling_rounds_toward_safety() {
        let d = Duration::from_nanos(3);
        assert_eq!(scale_up(d, 1.1), Duration::from_nanos(4));
        assert_eq!(scale_down(d, 0.9), Duration::from_nanos(2));
    }
}
