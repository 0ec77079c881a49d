//! The engine's deadlines, one table keyed by what each is for.

use crate::core::time::Instant;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Retry the start-up flush after it failed (the only timer while flushing).
    FlushRetry,
    /// The earliest per-group deadline (quiescence end, contention, refresh, backoff,
    /// kernel retry): the groups are ticked then.
    Groups,
    /// The next claim round (while claims flow).
    Claim,
    /// Ask members whose metadata is missing (anti-entropy).
    MetaRequest,
    /// Sweep expired promises.
    Gc,
    /// A name collision is taken to be over (5 s after its last sign).
    CollisionEnd,
    /// Fail-back: the node makes itself eligible (while it is not).
    Eligible,
}

impl Timer {
    const COUNT: usize = 7;

    fn slot(self) -> usize {
        self as usize
    }

    const ALL: [Timer; Timer::COUNT] = [
        Timer::FlushRetry,
        Timer::Groups,
        Timer::Claim,
        Timer::MetaRequest,
        Timer::Gc,
        Timer::CollisionEnd,
        Timer::Eligible,
    ];
}

/// Deadlines by [`Timer`]; an unset one is `None`.
#[derive(Clone, Debug, Default)]
pub(super) struct Timers([Option<Instant>; Timer::COUNT]);

impl Timers {
    /// The deadline of `t`.
    pub fn get(&self, t: Timer) -> Option<Instant> {
        self.0[t.slot()]
    }

    /// Sets (or, with `None`, clears) the deadline of `t`.
    pub fn set(&mut self, t: Timer, at: impl Into<Option<Instant>>) {
        self.0[t.slot()] = at.into();
    }

    /// Whether `t` is set and has been reached at `now`.
    pub fn due(&self, t: Timer, now: Instant) -> bool {
        self.get(t).is_some_and(|x| now >= x)
    }

    /// The earliest deadline among the timers `wakes` selects.
    pub fn earliest(&self, wakes: impl Fn(Timer) -> bool) -> Option<Instant> {
        Timer::ALL
            .iter()
            .filter(|&&t| wakes(t))
            .filter_map(|&t| self.get(t))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_selected_deadline_wins_and_unset_ones_never_do() {
        let mut t = Timers::default();
        assert_eq!(t.earliest(|_| true), None);
        t.set(Timer::Gc, Instant::from_nanos(50));
        t.set(Timer::Claim, Instant::from_nanos(20));
        t.set(Timer::Groups, Instant::from_nanos(5));
        assert_eq!(
            t.earliest(|k| k != Timer::Groups),
            Some(Instant::from_nanos(20))
        );
        assert_eq!(
            t.earliest(|k| !matches!(k, Timer::Groups | Timer::Claim)),
            Some(Instant::from_nanos(50))
        );
        assert!(t.due(Timer::Gc, Instant::from_nanos(50)));
        assert!(!t.due(Timer::Gc, Instant::from_nanos(49)));
        t.set(Timer::Gc, None);
        assert!(!t.due(Timer::Gc, Instant::from_nanos(1000)));
    }
}
