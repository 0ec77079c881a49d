//! Kernel-operation bookkeeping: ids, the one-at-a-time queue of each group
//! (DESIGN §2.3 rule 6), and the retry timer after a failure.
//!
//! A failure is retried on a timer, never inside the same drive: a kernel that keeps
//! refusing (a flushed ruleset, a vanished interface) must not keep the shell from
//! serving signals, HTTP and gossip.

use std::collections::BTreeMap;
use std::time::Duration;

use super::KernelOp;
use crate::core::time::Instant;

/// First retry delay after a failed kernel operation (start-up flush, unbind, bind);
/// it doubles with each further failure of the same group, up to
/// [`MAX_KERNEL_RETRY`].
pub const KERNEL_RETRY: Duration = Duration::from_millis(50);
/// Longest delay between retries of a failing kernel operation.
pub const MAX_KERNEL_RETRY: Duration = Duration::from_secs(1);

/// Delay before the next try after `failures` consecutive kernel failures.
pub fn retry_delay(failures: u32) -> Duration {
    (KERNEL_RETRY * (1u32 << failures.saturating_sub(1).min(5))).min(MAX_KERNEL_RETRY)
}

/// Operations handed to the shell and not yet reported.
#[derive(Clone, Debug, Default)]
pub(super) struct KernelOps {
    /// Each operation with when it was issued.
    pending: BTreeMap<u64, (KernelOp, Instant)>,
    last_id: u64,
}

impl KernelOps {
    /// Registers `op`, issued at `now`; returns its id.
    pub fn issue(&mut self, op: &KernelOp, now: Instant) -> u64 {
        self.last_id += 1;
        self.pending.insert(self.last_id, (op.clone(), now));
        self.last_id
    }

    /// The operation reported as `id` and when it was issued, if it is ours and
    /// pending.
    pub fn complete(&mut self, id: u64) -> Option<(KernelOp, Instant)> {
        self.pending.remove(&id)
    }
}

/// One group's kernel queue: the operation in flight, and the retry timer after a
/// failure.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct OpQueue {
    /// The operation in flight.
    pub inflight: Option<u64>,
    /// After a failed operation: no new one before then.
    pub retry_at: Option<Instant>,
    /// Consecutive failed operations.
    pub failures: u32,
}

impl OpQueue {
    /// Operation `id` finished. Returns whether it counts as a failure.
    pub fn done(&mut self, id: u64, failed: bool, now: Instant) {
        if self.inflight == Some(id) {
            self.inflight = None;
        }
        if failed {
            self.failures = self.failures.saturating_add(1);
            self.retry_at = Some(now + retry_delay(self.failures));
        } else {
            self.failures = 0;
            self.retry_at = None;
        }
    }

    /// Whether a new operation must wait: one is in flight, or a failed one's retry
    /// timer runs.
    pub fn busy(&self, now: Instant) -> bool {
        self.inflight.is_some() || self.retry_at.is_some_and(|t| now < t)
    }

    /// When a group waiting to finish a release or a fence should look again.
    pub fn next_try(&self, now: Instant) -> Option<Instant> {
        self.inflight.is_none().then(|| {
            self.retry_at
                .filter(|&t| t > now)
                .unwrap_or(now + KERNEL_RETRY)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn retries_double_from_50_ms_up_to_1_s() {
        let d: Vec<u64> = (1..=7).map(|f| retry_delay(f).as_millis() as u64).collect();
        assert_eq!(d, vec![50, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn a_failed_operation_keeps_the_queue_busy_until_its_retry_timer() {
        let mut ops = KernelOps::default();
        let mut q = OpQueue::default();
        let id = ops.issue(&KernelOp::Unbind { group: 0 }, at(0));
        q.inflight = Some(id);
        assert!(q.busy(at(0)) && q.next_try(at(0)).is_none());
        assert!(ops.complete(id).is_some() && ops.complete(id).is_none());
        q.done(id, true, at(10));
        assert!(q.busy(at(59)) && !q.busy(at(60)));
        assert_eq!(q.next_try(at(20)), Some(at(60)));
        assert_eq!(
            q.next_try(at(70)),
            Some(at(120)),
            "past it: retry a period on"
        );
        q.done(id, false, at(80));
        assert!(!q.busy(at(80)) && q.failures == 0);
    }
}
