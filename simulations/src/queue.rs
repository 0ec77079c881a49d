//! The event queue: events ordered by (real time, insertion number), so a run is a
//! pure function of its configuration.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;

use wackamole::core::config::GroupId;
use wackamole::core::engine::KernelOp;
use wackamole::core::ownership::KernelOutcome;
use wackamole::core::time::Instant;

use crate::clock::Tau;

/// A step of the model shell performing one kernel operation.
#[derive(Clone, Debug)]
pub enum ShellStep {
    /// Check the deadline, then write (or arm and write, with the gate).
    Check,
    /// The gate's go-live or refresh write (a freeze may land before it).
    Write,
    /// The write's acknowledgement reaches the agent.
    Ack {
        /// What the kernel said.
        outcome: KernelOutcome,
        /// Check the deadline again after the ack (a write that landed late is undone).
        post_deadline: Option<Instant>,
    },
}

/// Something that happens at an instant.
#[derive(Clone, Debug)]
pub enum Ev {
    Timer {
        node: usize,
        life: u64,
        tgen: u64,
    },
    Deliver {
        to: usize,
        from: SocketAddr,
        payload: Vec<u8>,
    },
    Shell {
        node: usize,
        life: u64,
        id: u64,
        op: KernelOp,
        step: ShellStep,
    },
    Probe {
        node: usize,
        life: u64,
        group: GroupId,
    },
    Worker {
        node: usize,
        boot: u64,
        at_local: u64,
    },
    Fault(usize),
    Check,
}

/// Pending events.
#[derive(Default)]
pub struct EventQueue {
    seq: u64,
    heap: BinaryHeap<Reverse<(Tau, u64)>>,
    events: BTreeMap<u64, Ev>,
}

impl EventQueue {
    /// Schedules `ev` at real time `at` (after everything already scheduled then).
    pub fn push(&mut self, at: Tau, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// The next event and its time, if `take` wants it.
    pub fn pop_if(&mut self, take: impl FnOnce(Tau, &Ev) -> bool) -> Option<(Tau, Ev)> {
        let Reverse((at, seq)) = *self.heap.peek()?;
        if !take(at, self.events.get(&seq)?) {
            return None;
        }
        self.pop()
    }

    /// The next event and its time.
    pub fn pop(&mut self) -> Option<(Tau, Ev)> {
        let Reverse((at, seq)) = self.heap.pop()?;
        let ev = self.events.remove(&seq)?;
        Some((at, ev))
    }
}
