//! The model shell between an engine and its model kernel: each kernel operation in
//! steps (deadline check, write, ack, post-ack check) with the shell's delays, the
//! kernel's address-expiry worker, and the ARP/NS probe.

use std::net::IpAddr;

use rand::RngExt;
use wackamole::core::config::{FenceKind, GroupId};
use wackamole::core::engine::KernelOp;
use wackamole::core::ownership::KernelOutcome;
use wackamole::core::time::Instant;

use crate::kernel::{GateWrite, WORKER_FUZZ_MAX};
use crate::queue::{Ev, ShellStep};
use crate::trace::Tag;
use crate::world::{MS, WAKE_READ, World};

impl World {
    /// The addresses of slot `g` of node `node`'s group table.
    pub(crate) fn group_addrs(&self, node: usize, g: GroupId) -> Vec<IpAddr> {
        self.nodes[node]
            .table
            .get(usize::from(g))
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn local_now(&self, node: usize) -> Instant {
        self.nodes[node].clock.local(self.now)
    }

    pub(crate) fn shell_step(
        &mut self,
        node: usize,
        life: u64,
        id: u64,
        op: KernelOp,
        step: ShellStep,
    ) {
        self.log(Tag::Shell { node, op: id }, || {
            format!("shell n{node} op{id} {op:?} step {step:?}")
        });
        let gate = self.cluster.fence == FenceKind::Gate;
        let e_ns = self.cluster.timing.gate_timeout.as_nanos() as u64;
        let a_ns = self.cluster.timing.gate_arm.as_nanos() as u64;
        let local = self.local_now(node);
        let d2 = self.rng.random_range(0..=MS);
        let d3 = self.rng.random_range(100_000..=MS);
        let ack = |w: &mut World, outcome: KernelOutcome, post: Option<Instant>| {
            w.queue.push(
                w.now + d3,
                Ev::Shell {
                    node,
                    life,
                    id,
                    op: op.clone(),
                    step: ShellStep::Ack {
                        outcome,
                        post_deadline: post,
                    },
                },
            );
        };
        match step {
            ShellStep::Check => match &op {
                KernelOp::Flush => {
                    let addrs: Vec<IpAddr> = self.nodes[node].kernel.addrs().collect();
                    self.nodes[node].kernel.flush();
                    for a in addrs {
                        self.note_kernel_change(node, a);
                    }
                    ack(self, KernelOutcome::Ok, None);
                }
                KernelOp::Unbind { group } => {
                    for a in self.group_addrs(node, *group) {
                        self.nodes[node].kernel.del_gate(a);
                        self.nodes[node].kernel.del_addr(a);
                        self.note_kernel_change(node, a);
                    }
                    ack(self, KernelOutcome::Ok, None);
                }
                KernelOp::Bind { group, deadline } => {
                    if local > *deadline {
                        ack(self, KernelOutcome::Lapsed, None);
                        return;
                    }
                    for a in self.group_addrs(node, *group) {
                        if gate {
                            self.nodes[node].kernel.arm(a, local, a_ns);
                        }
                        let fuzz = self.rng.random_range(0..=WORKER_FUZZ_MAX);
                        self.nodes[node].kernel.replace_addr(a, local, fuzz);
                        self.note_kernel_change(node, a);
                    }
                    self.arm_worker(node);
                    if gate {
                        // The go-live write; a freeze may land between check and write.
                        self.queue.push(
                            self.now + d2,
                            Ev::Shell {
                                node,
                                life,
                                id,
                                op: op.clone(),
                                step: ShellStep::Write,
                            },
                        );
                    } else {
                        ack(self, KernelOutcome::Ok, Some(*deadline));
                    }
                }
                KernelOp::Refresh {
                    group, deadline, ..
                } => {
                    if local > *deadline {
                        ack(self, KernelOutcome::Lapsed, None);
                        return;
                    }
                    if gate {
                        self.queue.push(
                            self.now + d2,
                            Ev::Shell {
                                node,
                                life,
                                id,
                                op: op.clone(),
                                step: ShellStep::Write,
                            },
                        );
                    } else {
                        for a in self.group_addrs(node, *group) {
                            let fuzz = self.rng.random_range(0..=WORKER_FUZZ_MAX);
                            self.nodes[node].kernel.replace_addr(a, local, fuzz);
                            self.note_kernel_change(node, a);
                        }
                        self.arm_worker(node);
                        ack(self, KernelOutcome::Ok, Some(*deadline));
                    }
                }
            },
            ShellStep::Write => {
                let (group, deadline, renew, bind) = match &op {
                    KernelOp::Bind { group, deadline } => (*group, *deadline, false, true),
                    KernelOp::Refresh {
                        group,
                        deadline,
                        renew_address,
                    } => (*group, *deadline, *renew_address, false),
                    _ => return,
                };
                let mut ok = true;
                for a in self.group_addrs(node, group) {
                    let r = if bind {
                        self.nodes[node].kernel.go_live(a, local, e_ns)
                    } else {
                        self.nodes[node].kernel.refresh_live(a, local, e_ns)
                    };
                    if r == GateWrite::Expired {
                        ok = false;
                    }
                    if renew {
                        let fuzz = self.rng.random_range(0..=WORKER_FUZZ_MAX);
                        self.nodes[node].kernel.replace_addr(a, local, fuzz);
                    }
                    self.note_kernel_change(node, a);
                }
                self.arm_worker(node);
                if ok {
                    ack(self, KernelOutcome::Ok, Some(deadline));
                } else {
                    for a in self.group_addrs(node, group) {
                        self.nodes[node].kernel.del_gate(a);
                        self.note_kernel_change(node, a);
                    }
                    ack(self, KernelOutcome::Lapsed, None);
                }
            }
            ShellStep::Ack {
                outcome,
                post_deadline,
            } => {
                let mut results =
                    vec![(id, self.ack_outcome(node, id, &op, outcome, post_deadline))];
                // The agent performs a round of kernel operations at once and hands
                // their results back in one wake-up (`Engine::wakeup`): acks of this
                // node that come within `WAKE_READ` may join this one (each with
                // probability 1/2, as for datagrams).
                let limit = self.now + WAKE_READ;
                while self.rng.random_bool(0.5)
                    && let Some((at, ev)) = self.queue.pop_if(|at, ev| {
                    at <= limit
                        && matches!(ev, Ev::Shell { node: n, life: l, step: ShellStep::Ack { .. }, .. }
                            if *n == node && *l == life)
                }) {
                    self.now = at;
                    if let Ev::Shell {
                        id,
                        op,
                        step:
                            ShellStep::Ack {
                                outcome,
                                post_deadline,
                            },
                        ..
                    } = ev
                    {
                        self.log(Tag::Shell { node, op: id }, || {
                            format!("shell n{node} op{id} {op:?} step Ack (same wake-up)")
                        });
                        results.push((id, self.ack_outcome(node, id, &op, outcome, post_deadline)));
                    }
                }
                self.with_engine(node, |e, now| {
                    e.wakeup(|e| {
                        for (id, outcome) in results {
                            e.handle_kernel(id, outcome, now);
                        }
                    })
                });
            }
        }
    }

    /// What the agent hears of a write: `outcome`, unless it landed after its
    /// deadline, which the shell then undoes at once (`Lapsed`).
    fn ack_outcome(
        &mut self,
        node: usize,
        id: u64,
        op: &KernelOp,
        outcome: KernelOutcome,
        post_deadline: Option<Instant>,
    ) -> KernelOutcome {
        let gate = self.cluster.fence == FenceKind::Gate;
        let local = self.local_now(node);
        let mut outcome = outcome;
        if let (KernelOutcome::Ok, Some(d)) = (&outcome, post_deadline)
            && local > d
        {
            // The write landed after the deadline: undo at once.
            if let Some(g) = op.group() {
                for a in self.group_addrs(node, g) {
                    self.nodes[node].kernel.del_gate(a);
                    if !gate {
                        self.nodes[node].kernel.del_addr(a);
                    }
                    self.note_kernel_change(node, a);
                }
            }
            outcome = KernelOutcome::Lapsed;
        }
        self.log(Tag::KernelDone { node, op: id }, || {
            format!("kernel n{node} op{id} {op:?} -> {outcome:?}")
        });
        outcome
    }

    pub(crate) fn arm_worker(&mut self, node: usize) {
        let n = &self.nodes[node];
        if let Some(w) = n.kernel.worker_at {
            let at = n.clock.real_at(Instant::from_nanos(w), self.now);
            let boot = n.boot;
            self.queue.push(
                at,
                Ev::Worker {
                    node,
                    boot,
                    at_local: w,
                },
            );
        }
    }

    pub(crate) fn probe_conflict(&mut self, node: usize, group: GroupId) -> bool {
        let addrs = self.group_addrs(node, group);
        for m in 0..self.nodes.len() {
            if m == node
                || !self.nodes[m].machine_up
                || self.net.blocked.contains(&(m, node))
                || self.net.blocked.contains(&(node, m))
            {
                continue;
            }
            let local = self.local_now(m);
            if addrs
                .iter()
                .any(|&a| self.nodes[m].kernel.answers(a, local))
            {
                return self.rng.random::<f64>() >= self.net.loss;
            }
        }
        false
    }
}
