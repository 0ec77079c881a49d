//! Kernel operations: performed in the order the engine issued them, each write
//! bracketed by lease checks.
//!
//! DESIGN §2.3 rule 6: check the write deadline right before each kernel write and
//! right after its acknowledgement, and undo at once if it has passed. The gate
//! refresh is the atomic batch of [`super::gate`]; a bind arms, adds the addresses,
//! re-checks and goes live. Refreshes that arrive together are written as one batch
//! (one netlink round trip for all held groups); if that batch finds an expired
//! element, each group is retried alone so only the lapsed ones are reported.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use crate::clock;
use crate::core::config::{ClusterConfig, FenceKind, GroupId, Vip};
use crate::core::engine::KernelOp;
use crate::core::ownership::KernelOutcome;

use super::gate::{ElemOp, Gate, GateError, GateSet};
use super::rtnl::{NlError, Rtnl};

/// Address lifetime used for every VIP (`valid_lft` = `preferred_lft`).
pub const LIFETIME_S: u32 = 1;

/// A completed operation.
#[derive(Debug)]
pub struct Done {
    /// The engine's operation id.
    pub id: u64,
    /// The result.
    pub outcome: KernelOutcome,
}

struct Worker {
    rtnl: Rtnl,
    gate: Option<Gate>,
    index: u32,
    ifname: String,
    groups: Vec<Vec<Vip>>,
    pool: Vec<Vip>,
    e: Duration,
    a: Duration,
}

fn err_text(e: &NlError) -> String {
    e.to_string()
}

impl Worker {
    fn label(&self) -> String {
        // IFNAMSIZ-1 = 15 bytes: "<ifname>:wm", truncated.
        let mut l = format!("{}:wm", self.ifname);
        l.truncate(15);
        l
    }

    fn set_addrs(&mut self, g: GroupId) -> Result<(), String> {
        self.set_addrs_of(&[g]).pop().unwrap_or(Ok(()))
    }

    /// Adds or renews the addresses of several groups in one netlink write; one
    /// result per group (its first failure).
    fn set_addrs_of(&mut self, gs: &[GroupId]) -> Vec<Result<(), String>> {
        let label = self.label();
        let vips: Vec<Vip> = gs
            .iter()
            .flat_map(|&g| self.groups[usize::from(g)].iter().copied())
            .collect();
        let mut results = self
            .rtnl
            .addr_set_many(self.index, &vips, LIFETIME_S, true, Some(&label))
            .into_iter();
        gs.iter()
            .map(|&g| {
                let mut r = Ok(());
                for res in results.by_ref().take(self.groups[usize::from(g)].len()) {
                    if let (Ok(()), Err(e)) = (&r, res) {
                        r = Err(err_text(&e));
                    }
                }
                r
            })
            .collect()
    }

    fn del_addrs(&mut self, g: GroupId) -> Result<(), String> {
        for v in self.groups[usize::from(g)].clone() {
            self.rtnl
                .addr_del(self.index, &v)
                .map_err(|e| err_text(&e))?;
        }
        Ok(())
    }

    /// Removes a group's gate elements one by one (absent ones are fine).
    fn del_gate(&mut self, g: GroupId) -> Result<(), String> {
        let addrs: Vec<IpAddr> = self.groups[usize::from(g)].iter().map(|v| v.addr).collect();
        if let Some(gate) = &mut self.gate {
            for a in addrs {
                for set in [GateSet::Live, GateSet::Armed] {
                    match gate.batch(&[ElemOp::Del(set, a)]) {
                        Ok(()) | Err(GateError::Expired) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
        }
        Ok(())
    }

    fn verify_gone(&mut self, addrs: &[IpAddr]) -> Result<(), String> {
        let present: Vec<IpAddr> = self
            .rtnl
            .addrs(self.index)
            .map_err(|e| err_text(&e))?
            .into_iter()
            .map(|a| a.addr)
            .filter(|a| addrs.contains(a))
            .collect();
        if !present.is_empty() {
            return Err(format!("still present after delete: {present:?}"));
        }
        if let Some(gate) = &mut self.gate {
            for v6 in [false, true] {
                let live = gate.list(GateSet::Live, v6).map_err(|e| e.to_string())?;
                if live.iter().any(|(a, _)| addrs.contains(a)) {
                    return Err("gate element still present after delete".into());
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> KernelOutcome {
        let pool = self.pool.clone();
        for v in &pool {
            if let Err(e) = self.rtnl.addr_del(self.index, v) {
                return KernelOutcome::Failed(err_text(&e));
            }
        }
        if let Some(gate) = &mut self.gate {
            for set in [GateSet::Live, GateSet::Armed] {
                if let Err(e) = gate.flush(set) {
                    return KernelOutcome::Failed(e.to_string());
                }
            }
        }
        let addrs: Vec<IpAddr> = pool.iter().map(|v| v.addr).collect();
        match self.verify_gone(&addrs) {
            Ok(()) => KernelOutcome::Ok,
            Err(e) => KernelOutcome::Failed(e),
        }
    }

    fn unbind(&mut self, g: GroupId) -> KernelOutcome {
        if let Err(e) = self.del_gate(g) {
            return KernelOutcome::Failed(e);
        }
        if let Err(e) = self.del_addrs(g) {
            return KernelOutcome::Failed(e);
        }
        let addrs: Vec<IpAddr> = self.groups[usize::from(g)].iter().map(|v| v.addr).collect();
        match self.verify_gone(&addrs) {
            Ok(()) => KernelOutcome::Ok,
            Err(e) => KernelOutcome::Failed(e),
        }
    }

    /// Undo after a late write: the deadline passed between the check and the ack.
    fn undo(&mut self, g: GroupId) {
        let _ = self.del_gate(g);
        let _ = self.del_addrs(g);
    }

    fn bind(&mut self, g: GroupId, deadline: crate::core::time::Instant) -> KernelOutcome {
        let addrs: Vec<IpAddr> = self.groups[usize::from(g)].iter().map(|v| v.addr).collect();
        if clock::now() > deadline {
            return KernelOutcome::Lapsed;
        }
        let a_timeout = self.a;
        if let Some(gate) = &mut self.gate {
            let arm: Vec<ElemOp> = addrs
                .iter()
                .map(|a| ElemOp::Add(GateSet::Armed, *a, a_timeout))
                .collect();
            if let Err(e) = gate.batch(&arm) {
                return KernelOutcome::Failed(e.to_string());
            }
        }
        if let Err(e) = self.set_addrs(g) {
            self.undo(g);
            return KernelOutcome::Failed(e);
        }
        if let Some(gate) = &mut self.gate {
            // Second check, right before the go-live write (margin A in the deadline).
            if clock::now() > deadline {
                self.undo(g);
                return KernelOutcome::Lapsed;
            }
            let mut live = Vec::new();
            for a in &addrs {
                live.push(ElemOp::Del(GateSet::Armed, *a));
                live.push(ElemOp::Add(GateSet::Live, *a, self.e));
            }
            match gate.batch(&live) {
                Ok(()) => {}
                Err(GateError::Expired) => {
                    self.undo(g);
                    return KernelOutcome::Lapsed;
                }
                Err(e) => {
                    self.undo(g);
                    return KernelOutcome::Failed(e.to_string());
                }
            }
        }
        if clock::now() > deadline {
            self.undo(g);
            return KernelOutcome::Lapsed;
        }
        KernelOutcome::Ok
    }

    /// Refreshes several groups; returns one outcome per group.
    fn refresh(
        &mut self,
        items: &[(GroupId, crate::core::time::Instant, bool)],
    ) -> Vec<KernelOutcome> {
        let now = clock::now();
        let mut out: Vec<Option<KernelOutcome>> = items
            .iter()
            .map(|&(_, d, _)| (now > d).then_some(KernelOutcome::Lapsed))
            .collect();
        let live: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
        let (groups, e) = (&self.groups, self.e);
        // Every delete, then every add: one run each, so the batch is a few messages.
        let ops_for = |idx: &[usize]| -> Vec<ElemOp> {
            let addrs = || {
                idx.iter()
                    .flat_map(|&i| groups[usize::from(items[i].0)].iter().map(|v| v.addr))
            };
            addrs()
                .map(|a| ElemOp::Del(GateSet::Live, a))
                .chain(addrs().map(|a| ElemOp::Add(GateSet::Live, a, e)))
                .collect()
        };
        if let Some(gate) = self.gate.as_mut().filter(|_| !live.is_empty()) {
            match gate.batch(&ops_for(&live)) {
                Ok(()) => {}
                Err(GateError::Expired) if live.len() > 1 => {
                    // Find the lapsed groups: each alone.
                    for &i in &live {
                        match gate.batch(&ops_for(&[i])) {
                            Ok(()) => {}
                            Err(GateError::Expired) => out[i] = Some(KernelOutcome::Lapsed),
                            Err(e) => out[i] = Some(KernelOutcome::Failed(e.to_string())),
                        }
                    }
                }
                Err(GateError::Expired) => out[live[0]] = Some(KernelOutcome::Lapsed),
                Err(e) => {
                    for &i in &live {
                        out[i] = Some(KernelOutcome::Failed(e.to_string()));
                    }
                }
            }
        }
        // The addresses themselves: renewed with the gate now and then, or every
        // refresh with the address fence (REPLACE re-creates: only under the lease),
        // all in one netlink write.
        let renew: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| out[i].is_none() && (items[i].2 || self.gate.is_none()))
            .collect();
        let gs: Vec<GroupId> = renew.iter().map(|&i| items[i].0).collect();
        for (&i, r) in renew.iter().zip(self.set_addrs_of(&gs)) {
            if let Err(e) = r {
                out[i] = Some(KernelOutcome::Failed(e));
            }
        }
        let after = clock::now();
        for (i, &(g, d, _)) in items.iter().enumerate() {
            if out[i].is_none() && after > d {
                self.undo(g);
                out[i] = Some(KernelOutcome::Lapsed);
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or(KernelOutcome::Ok))
            .collect()
    }

    /// Performs operations in order; consecutive refreshes are written as one batch.
    fn perform(&mut self, ops: Vec<(u64, KernelOp)>) -> Vec<Done> {
        let mut queue: VecDeque<(u64, KernelOp)> = ops.into();
        let mut out = Vec::with_capacity(queue.len());
        while let Some((id, op)) = queue.pop_front() {
            match op {
                KernelOp::Flush => out.push(Done {
                    id,
                    outcome: self.flush(),
                }),
                KernelOp::Bind { group, deadline } => out.push(Done {
                    id,
                    outcome: self.bind(group, deadline),
                }),
                KernelOp::Unbind { group } => out.push(Done {
                    id,
                    outcome: self.unbind(group),
                }),
                KernelOp::Refresh {
                    group,
                    deadline,
                    renew_address,
                } => {
                    let mut items = vec![(group, deadline, renew_address)];
                    let mut ids = vec![id];
                    while let Some((_, KernelOp::Refresh { .. })) = queue.front() {
                        if let Some((
                            id2,
                            KernelOp::Refresh {
                                group,
                                deadline,
                                renew_address,
                            },
                        )) = queue.pop_front()
                        {
                            items.push((group, deadline, renew_address));
                            ids.push(id2);
                        }
                    }
                    for (id, outcome) in ids.into_iter().zip(self.refresh(&items)) {
                        out.push(Done { id, outcome });
                    }
                }
            }
        }
        out
    }
}

/// The kernel side of one agent: addresses and gate on one interface. Calls block
/// for the netlink round trips (tens to hundreds of microseconds) and run on the
/// agent's own thread, so operations are serialized by construction.
pub struct KernelIo(Worker);

impl std::fmt::Debug for KernelIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelIo")
            .field("ifname", &self.0.ifname)
            .finish_non_exhaustive()
    }
}

impl KernelIo {
    /// Opens the netlink sockets for interface `ifname` (index `index`).
    pub fn open(cfg: &ClusterConfig, ifname: &str, index: u32) -> std::io::Result<KernelIo> {
        let rtnl = Rtnl::new()?;
        let gate = match cfg.fence {
            FenceKind::Gate => Some(Gate::open()?),
            FenceKind::Address => None,
        };
        let groups: Vec<Vec<Vip>> = cfg.groups.iter().map(|g| g.vips.clone()).collect();
        let pool: Vec<Vip> = groups.iter().flatten().copied().collect();
        Ok(KernelIo(Worker {
            rtnl,
            gate,
            index,
            ifname: ifname.to_string(),
            groups,
            pool,
            e: cfg.timing.gate_timeout,
            a: cfg.timing.gate_arm,
        }))
    }

    /// Performs the engine's operations, in order.
    pub fn perform(&mut self, ops: Vec<(u64, KernelOp)>) -> Vec<Done> {
        self.0.perform(ops)
    }

    /// Removes every pool VIP and gate element (shutdown, fatal errors).
    pub fn flush(&mut self) -> KernelOutcome {
        self.0.flush()
    }
}
