//! The agent's clock: CLOCK_BOOTTIME, which keeps counting across a suspend, so a
//! lease measured on it never looks longer than it was. A jump between BOOTTIME and
//! MONOTONIC means the machine was suspended (or the VM paused): the engine unbinds
//! everything first.

use std::time::Duration;

use nix::time::{ClockId, clock_gettime};

use crate::core::time::Instant;

fn read(id: ClockId) -> u64 {
    // CLOCK_BOOTTIME and CLOCK_MONOTONIC exist on every Linux the agent supports;
    // a failure here is unrecoverable and would make every lease meaningless.
    let ts = clock_gettime(id).expect("clock_gettime(BOOTTIME/MONOTONIC) failed");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

/// Now, on CLOCK_BOOTTIME.
pub fn now() -> Instant {
    Instant::from_nanos(read(ClockId::CLOCK_BOOTTIME))
}

/// Detects suspends: the difference BOOTTIME − MONOTONIC only grows while the
/// machine sleeps.
#[derive(Debug)]
pub struct SuspendDetector {
    offset: u64,
}

/// A suspend shorter than this is not reported (clock read jitter).
pub const SUSPEND_THRESHOLD: Duration = Duration::from_millis(20);

impl Default for SuspendDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl SuspendDetector {
    /// Starts watching.
    pub fn new() -> SuspendDetector {
        SuspendDetector {
            offset: read(ClockId::CLOCK_BOOTTIME).saturating_sub(read(ClockId::CLOCK_MONOTONIC)),
        }
    }

    /// The length of a suspend since the last call, if one happened.
    pub fn check(&mut self) -> Option<Duration> {
        let off = read(ClockId::CLOCK_BOOTTIME).saturating_sub(read(ClockId::CLOCK_MONOTONIC));
        let jump = off.saturating_sub(self.offset);
        self.offset = off;
        (jump > SUSPEND_THRESHOLD.as_nanos() as u64).then(|| Duration::from_nanos(jump))
    }
}
