//! The engine's timer: a timerfd on the engine's own clock (CLOCK_BOOTTIME), armed
//! to the nanosecond at an absolute deadline. tokio's millisecond wheel wakes up to
//! 1 ms early and then sleeps again: two wake-ups per timer.

use std::io;
use std::time::Duration;

/// A one-shot timer on the engine's clock (CLOCK_BOOTTIME), armed at an absolute
/// deadline in nanoseconds.
pub(super) struct EngineTimer(nix::sys::timerfd::TimerFd);

impl EngineTimer {
    pub fn new() -> io::Result<EngineTimer> {
        use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
        TimerFd::new(
            ClockId::CLOCK_BOOTTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map(EngineTimer)
        .map_err(io::Error::from)
    }

    /// Fires at `deadline` (at once if it has passed).
    pub fn arm(&self, deadline: u64) -> io::Result<()> {
        use nix::sys::time::TimeSpec;
        use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
        // A zero time would disarm the timer; BOOTTIME is never zero after boot.
        let at = TimeSpec::from_duration(Duration::from_nanos(deadline.max(1)));
        self.0
            .set(
                Expiration::OneShot(at),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )
            .map_err(io::Error::from)
    }

    /// Consumes an expiry; whether one was pending. Only "nothing pending"
    /// (EAGAIN) says no: after any other failure the caller re-arms, which resets
    /// the timer whatever its state, rather than wait for an edge that may not come.
    pub fn clear(&self) -> bool {
        !matches!(
            nix::unistd::read(&self.0, &mut [0u8; 8]),
            Err(nix::errno::Errno::EAGAIN)
        )
    }
}

impl std::os::fd::AsRawFd for EngineTimer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}
