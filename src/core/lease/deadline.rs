//! DESIGN §2.3 rule 6 and §2.4: the latest instant a kernel write for a group may
//! happen, from its lease and the fence (docs/safety.md I5, I6).
//!
//! With the gate, a refresh must leave the live entry's timeout E(1 + ρ) before the
//! lease ends, and a bind must also leave time to arm the gate first; with the
//! address-only fence the lease itself is the deadline (the address lifetime is the
//! fence). The shell checks `now ≤ deadline` right before each write and right after
//! its ack.

use std::time::Duration;

use crate::core::config::FenceKind;
use crate::core::time::Instant;

/// The write deadlines of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteDeadlines {
    /// Latest instant a bind may write (`None`: no lease, or too short to bind).
    pub bind: Option<Instant>,
    /// Latest instant a refresh may write.
    pub refresh: Option<Instant>,
}

/// The fence's part of the deadlines: E(1 + ρ) and the arm time with the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FenceMargins {
    /// Which fence.
    pub fence: FenceKind,
    /// E(1 + ρ): what a gate refresh keeps before the lease ends.
    pub gate_margin: Duration,
    /// Time to arm the gate before a bind goes live.
    pub gate_arm: Duration,
}

impl FenceMargins {
    /// The deadlines for a group whose lease ends at `lease` (or that has none).
    pub fn deadlines(&self, lease: Option<Instant>) -> WriteDeadlines {
        let Some(l) = lease else {
            return WriteDeadlines::default();
        };
        match self.fence {
            FenceKind::Gate => {
                let refresh = l.checked_sub(self.gate_margin);
                WriteDeadlines {
                    bind: refresh.and_then(|r| r.checked_sub(self.gate_arm)),
                    refresh,
                }
            }
            FenceKind::Address => WriteDeadlines {
                bind: Some(l),
                refresh: Some(l),
            },
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

    fn margins(fence: FenceKind) -> FenceMargins {
        FenceMargins {
            fence,
            gate_margin: MS * 81,
            gate_arm: MS * 5,
        }
    }

    #[test]
    fn the_gate_refreshes_e_before_the_lease_and_binds_an_arm_earlier() {
        let m = margins(FenceKind::Gate);
        let d = m.deadlines(Some(at(1000)));
        assert_eq!(d.refresh, Some(at(919)));
        assert_eq!(d.bind, Some(at(914)));
        assert_eq!(m.deadlines(None), WriteDeadlines::default());
    }

    #[test]
    fn a_lease_shorter_than_the_margins_allows_no_write() {
        let m = margins(FenceKind::Gate);
        let d = m.deadlines(Some(at(83)));
        assert_eq!((d.refresh, d.bind), (Some(at(2)), None));
        assert_eq!(m.deadlines(Some(at(80))), WriteDeadlines::default());
    }

    #[test]
    fn the_address_fence_writes_until_the_lease_ends() {
        let m = margins(FenceKind::Address);
        let d = m.deadlines(Some(at(700)));
        assert_eq!((d.bind, d.refresh), (Some(at(700)), Some(at(700))));
    }
}
