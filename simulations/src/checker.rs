//! The S1 checker. S1 is checked on the kernels, not on what the nodes believe:
//! after every event that wrote to a kernel, every address it wrote is looked up in
//! every kernel (address present, and with the gate a live entry). A second answering
//! kernel is a violation. Checking at writes is complete: answering only *starts* or
//! is *extended* by a write; expiry and removal only end it. `full_check` also scans
//! every address after every event, to show the two agree.
//!
//! It also keeps, per group and node, the intervals in which the node answered (from
//! the group's first address): the failover, handover and move figures of the report.

use std::net::IpAddr;

use wackamole::core::config::{FenceKind, GroupId};
use wackamole::core::time::Instant;

use crate::clock::Tau;
use crate::report::Violation;
use crate::trace::Tag;
use crate::world::World;

/// The checker's state.
#[derive(Default)]
pub struct Checker {
    /// Violations found.
    pub violations: Vec<Violation>,
    /// Addresses written since the last check.
    pub touched: Vec<IpAddr>,
    /// Per group and node: the answering interval open now, (start, live until).
    pub open: Vec<Vec<Option<(Tau, Tau)>>>,
    /// Per group: closed answering intervals (node, start, end).
    pub history: Vec<Vec<(usize, Tau, Tau)>>,
}

impl World {
    pub(crate) fn note_kernel_change(&mut self, _node: usize, addr: IpAddr) {
        self.check.touched.push(addr);
    }

    pub(crate) fn answering(&self, addr: IpAddr) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&m| {
                self.nodes[m].machine_up && self.nodes[m].kernel.answers(addr, self.local_now(m))
            })
            .collect()
    }

    pub(crate) fn check_touched(&mut self) {
        let mut touched = std::mem::take(&mut self.check.touched);
        touched.sort();
        touched.dedup();
        for a in touched {
            self.check_addr(a);
        }
    }

    pub(crate) fn check_all(&mut self) {
        let vips: Vec<IpAddr> = self.vips.iter().map(|v| v.0).collect();
        for a in vips {
            self.check_addr(a);
        }
    }

    pub(crate) fn check_addr(&mut self, a: IpAddr) {
        let who = self.answering(a);
        if who.len() > 1 {
            let nodes: Vec<String> = who.iter().map(|&m| self.nodes[m].name.clone()).collect();
            self.log(Tag::Violation, || {
                format!("VIOLATION {a} answered by {nodes:?}")
            });
            self.check.violations.push(Violation {
                at: self.now,
                vip: a,
                nodes,
            });
        }
        if let Some(&(_, g)) = self.vips.iter().find(|v| v.0 == a) {
            self.update_intervals(g);
        }
    }

    /// Keeps per (group, node) answering intervals, using the group's first address.
    pub(crate) fn update_intervals(&mut self, g: GroupId) {
        let gi = usize::from(g);
        let first = self.cluster.groups[gi].vips[0].addr;
        for m in 0..self.nodes.len() {
            let local = self.local_now(m);
            let answering = self.nodes[m].machine_up && self.nodes[m].kernel.answers(first, local);
            let until = if !answering {
                0
            } else if self.cluster.fence == FenceKind::Gate {
                match self.nodes[m].kernel.live_until(first) {
                    Some(u64::MAX) | None => u64::MAX,
                    Some(l) => self.nodes[m]
                        .clock
                        .real_at(Instant::from_nanos(l), self.now),
                }
            } else {
                u64::MAX
            };
            let cur = self.check.open[gi][m];
            match (cur, answering) {
                (None, true) => self.check.open[gi][m] = Some((self.now, until)),
                (Some((s, u)), true) => {
                    if u < self.now {
                        self.check.history[gi].push((m, s, u));
                        self.check.open[gi][m] = Some((self.now, until));
                    } else {
                        self.check.open[gi][m] = Some((s, until));
                    }
                }
                (Some((s, u)), false) => {
                    self.check.history[gi].push((m, s, u.min(self.now)));
                    self.check.open[gi][m] = None;
                }
                (None, false) => {}
            }
        }
    }

    pub(crate) fn holder_at(&self, g: usize, t: Tau) -> Option<usize> {
        for (m, o) in self.check.open[g].iter().enumerate() {
            if let Some((s, u)) = o
                && *s <= t
                && t < *u
            {
                return Some(m);
            }
        }
        self.check.history[g]
            .iter()
            .find(|(_, s, e)| *s <= t && t < *e)
            .map(|(m, _, _)| *m)
    }
}
