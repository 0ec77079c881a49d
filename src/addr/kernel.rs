//! Kernel operations: performed in the order the engine issued them, each write
//! bracketed by lease checks.
//!
//! DESIGN §2.3 rule 6: check the write deadline right before each kernel write and
//! right after its acknowledgement, and undo at once if it has passed. The gate
//! refresh is the atomic batch of [`super::gate`]; a bind arms, adds the addresses,
//! re-checks and goes live. Refreshes that arrive together are written as one batch
//! (one netlink round trip for all held groups); if that batch finds an expired
//! element, each group is retried alone so only the lapsed ones are reported.
//!
//! Day two: the kernel state can change under the agent. A firewall reload
//! (`nft flush ruleset`) deletes the gate's tables; the worker notices on the next
//! gate write that fails with ENOENT, checks whether the tables are gone, and
//! re-creates them (logged and counted once per event); held groups are then
//! re-armed and put live again by the bind path, under the same lease checks, so
//! nothing answers outside a lease. An interface that is deleted and re-created
//! comes back with a new index: the worker resolves the interface by name again
//! whenever the kernel answers ENODEV (and when the shell's link watch says it
//! changed); while it is missing, its addresses are gone with it, so an unbind of a
//! group on it is complete.
//!
//! Under the gate, the addresses' lifetime renewals are queued to the renewal
//! thread (`renew.rs`): an address write waits for the kernel's global RTNL lock,
//! and that wait must not hold up the next gate refresh.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use tracing::warn;

use crate::clock;
use crate::core::config::{ClusterConfig, FenceKind, GroupId, Vip};
use crate::core::engine::KernelOp;
use crate::core::links::Homes;
use crate::core::neighbours::Neighbour;
use crate::core::ownership::KernelOutcome;

use super::gate::{self, ElemOp, Gate, GateError, GateSet};
use super::renew::{Job, Renewer};
use super::rtnl::{Link, NlError, Rtnl};

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

/// What the kernel side has had to repair, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Times the gate's tables were found gone and re-created.
    pub gate_reinstalls: u64,
    /// Times the interface was found missing or with a new index.
    pub link_changes: u64,
}

/// One interface VIPs live on.
#[derive(Debug)]
struct LinkSlot {
    name: String,
    /// Its index; `None` while no interface of that name exists.
    index: Option<u32>,
}

/// A VIP and the slot of the interface it lives on.
type Homed = (Vip, usize);

struct Worker {
    rtnl: Rtnl,
    gate: Option<Gate>,
    /// Under the gate, the thread that renews address lifetimes (`renew.rs`).
    renewer: Option<Renewer>,
    links: Vec<LinkSlot>,
    homes: Homes,
    groups: Vec<Vec<Homed>>,
    pool: Vec<Homed>,
    e: Duration,
    a: Duration,
    stats: KernelStats,
}

fn err_text(e: &NlError) -> String {
    e.to_string()
}

/// The kernel answered "no such device": the interface index is stale.
fn is_enodev(e: &NlError) -> bool {
    e.errno() == Some(nix::errno::Errno::ENODEV as i32)
}

fn is_enoent(e: &GateError) -> bool {
    matches!(e, GateError::Io(io) if io.raw_os_error() == Some(nix::errno::Errno::ENOENT as i32))
}

impl Worker {
    /// The slot of interface `name` (added if new).
    fn slot_of(&mut self, name: &str) -> usize {
        if let Some(i) = self.links.iter().position(|l| l.name == name) {
            return i;
        }
        self.links.push(LinkSlot {
            name: name.to_string(),
            index: None,
        });
        self.links.len() - 1
    }

    /// `vips` with the slots of their interfaces (an address without one — not
    /// possible past start-up checks — is put on the first interface).
    fn homed(&mut self, vips: &[Vip]) -> Vec<Homed> {
        vips.iter()
            .map(|v| {
                let name = self.homes.iface(v.addr).map(str::to_string);
                let slot = name.map_or(0, |n| self.slot_of(&n));
                (*v, slot)
            })
            .collect()
    }

    /// Resolves interface `slot` by name again; updates its index. `None` when no
    /// interface of that name exists (or the kernel could not be asked).
    fn relink(&mut self, slot: usize) -> Option<Link> {
        let l = self.links.get_mut(slot)?;
        match self.rtnl.link(&l.name) {
            Ok(link) => {
                let index = link.as_ref().map(|l| l.index);
                if index != l.index {
                    self.stats.link_changes += 1;
                    match index {
                        Some(i) => {
                            warn!(interface = %l.name, index = i, "interface (re)appeared")
                        }
                        None => {
                            warn!(interface = %l.name, "interface is gone; its VIPs went with it")
                        }
                    }
                    l.index = index;
                }
                link
            }
            Err(e) => {
                warn!(interface = %l.name, error = %e, "cannot look up the interface");
                None
            }
        }
    }

    /// The index of interface `slot`, looked up if not known.
    fn index(&mut self, slot: usize) -> Option<u32> {
        self.links
            .get(slot)
            .and_then(|l| l.index)
            .or_else(|| self.relink(slot).map(|l| l.index))
    }

    /// Every pool VIP with the name of its interface (what the gate closes over).
    fn pool_homes(&self) -> Vec<(IpAddr, &str)> {
        self.pool
            .iter()
            .map(|&(v, l)| (v.addr, self.links[l].name.as_str()))
            .collect()
    }

    /// The gate write failed with ENOENT: either an element expired (the normal
    /// dead-man case) or the tables are gone (a firewall reload). In the second case
    /// re-create them — empty — and return true.
    fn gate_lost(&mut self) -> bool {
        let Some(gate) = &mut self.gate else {
            return false;
        };
        match gate.present() {
            Ok(true) => false,
            Ok(false) => {
                self.stats.gate_reinstalls += 1;
                warn!("the nftables gate tables are gone (a firewall reload?): re-creating them");
                if let Err(e) = gate::install(&self.pool_homes(), self.e, self.a) {
                    warn!(error = %e, "cannot re-create the nftables gate; retrying");
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot check the nftables gate");
                false
            }
        }
    }

    fn label(&self, slot: usize) -> String {
        // IFNAMSIZ-1 = 15 bytes: "<ifname>:wm", truncated.
        let mut l = format!("{}:wm", self.links[slot].name);
        l.truncate(15);
        l
    }

    fn set_addrs(&mut self, g: GroupId) -> Result<(), String> {
        self.set_addrs_of(&[g]).pop().unwrap_or(Ok(()))
    }

    /// Adds (replaces) the addresses of groups `gs`, one netlink write per
    /// interface; one result per group.
    fn set_addrs_of(&mut self, gs: &[GroupId]) -> Vec<Result<(), String>> {
        let vips: Vec<Homed> = gs
            .iter()
            .flat_map(|&g| self.groups[usize::from(g)].iter().copied())
            .collect();
        let mut res: Vec<Result<(), String>> = vec![Ok(()); vips.len()];
        let slots: std::collections::BTreeSet<usize> = vips.iter().map(|v| v.1).collect();
        for slot in slots {
            let at: Vec<usize> = (0..vips.len()).filter(|&i| vips[i].1 == slot).collect();
            let these: Vec<Vip> = at.iter().map(|&i| vips[i].0).collect();
            let label = self.label(slot);
            let missing = format!("interface {} is missing", self.links[slot].name);
            let Some(index) = self.index(slot) else {
                for &i in &at {
                    res[i] = Err(missing.clone());
                }
                continue;
            };
            let mut all = self
                .rtnl
                .addr_set_many(index, &these, LIFETIME_S, true, Some(&label));
            if all.iter().any(|r| r.as_ref().is_err_and(is_enodev)) {
                let before = self.links[slot].index;
                match self.relink(slot) {
                    Some(l) if Some(l.index) != before => {
                        all = self.rtnl.addr_set_many(
                            l.index,
                            &these,
                            LIFETIME_S,
                            true,
                            Some(&label),
                        );
                    }
                    Some(_) => {}
                    None => {
                        for &i in &at {
                            res[i] = Err(missing.clone());
                        }
                        continue;
                    }
                }
            }
            for (&i, r) in at.iter().zip(all) {
                res[i] = r.map_err(|e| err_text(&e));
            }
        }
        let mut results = res.into_iter();
        gs.iter()
            .map(|&g| {
                let mut r = Ok(());
                for res in results.by_ref().take(self.groups[usize::from(g)].len()) {
                    if let (Ok(()), Err(e)) = (&r, res) {
                        r = Err(e);
                    }
                }
                r
            })
            .collect()
    }

    /// Group `g`'s address renewal for the renewal thread; `None` when it must be
    /// written on the loop (no gate, an interface not resolved, or the thread's last
    /// renewal of it failed).
    fn renewal_jobs(&mut self, g: GroupId) -> Option<Vec<Job>> {
        let r = self.renewer.as_ref()?;
        if let Some(e) = r.take_failed(g) {
            warn!(group = g, error = %e, "address renewal failed; writing it on the loop");
            return None;
        }
        let mut jobs: Vec<Job> = Vec::new();
        for (v, slot) in self.groups[usize::from(g)].clone() {
            let index = self.links.get(slot).and_then(|l| l.index)?;
            match jobs.iter_mut().find(|j| j.index == index) {
                Some(j) => j.vips.push(v),
                None => jobs.push(Job {
                    index,
                    vips: vec![v],
                    label: self.label(slot),
                    lifetime_s: LIFETIME_S,
                }),
            }
        }
        Some(jobs)
    }

    fn del_addrs(&mut self, g: GroupId) -> Result<(), String> {
        // No renewal may re-create what is deleted here (waits for one in progress).
        if let Some(r) = &self.renewer {
            r.forbid(g);
        }
        for (v, slot) in self.groups[usize::from(g)].clone() {
            let Some(index) = self.index(slot) else {
                // No such interface: its addresses went with it.
                continue;
            };
            match self.rtnl.addr_del(index, &v) {
                Ok(_) => {}
                Err(e) if is_enodev(&e) => {
                    if let Some(l) = self.relink(slot) {
                        self.rtnl.addr_del(l.index, &v).map_err(|e| err_text(&e))?;
                    }
                }
                Err(e) => return Err(err_text(&e)),
            }
        }
        Ok(())
    }

    /// Group `g`'s addresses.
    fn addrs_of(&self, g: GroupId) -> impl Iterator<Item = IpAddr> + '_ {
        self.groups[usize::from(g)].iter().map(|v| v.0.addr)
    }

    /// Which of `addrs` are in `set` now (a read-only dump: a batch that fails on a
    /// missing element costs an abort, an RCU grace period, ~13 ms each).
    fn present_in(&mut self, set: GateSet, addrs: &[IpAddr]) -> Result<Vec<IpAddr>, GateError> {
        let Some(gate) = &mut self.gate else {
            return Ok(Vec::new());
        };
        let mut have: Vec<IpAddr> = Vec::new();
        for v6 in [false, true] {
            if addrs.iter().any(|a| a.is_ipv6() == v6) {
                have.extend(gate.list(set, v6)?.into_iter().map(|(a, _)| a));
            }
        }
        Ok(addrs.iter().copied().filter(|a| have.contains(a)).collect())
    }

    /// Deletes group `g`'s gate elements: the ones present, in one batch (deleting a
    /// missing element would fail the batch and cost an abort).
    fn del_gate(&mut self, g: GroupId) -> Result<(), String> {
        let addrs: Vec<IpAddr> = self.addrs_of(g).collect();
        if self.gate.is_none() {
            return Ok(());
        }
        // Twice at most: one may expire between the dump and the batch. If the sets
        // cannot be listed, one element at a time (a missing one is no error).
        for _ in 0..2 {
            let (Ok(live), Ok(armed)) = (
                self.present_in(GateSet::Live, &addrs),
                self.present_in(GateSet::Armed, &addrs),
            ) else {
                break;
            };
            let ops: Vec<ElemOp> = live
                .into_iter()
                .map(|a| ElemOp::Del(GateSet::Live, a))
                .chain(armed.into_iter().map(|a| ElemOp::Del(GateSet::Armed, a)))
                .collect();
            let Some(gate) = &mut self.gate else {
                return Ok(());
            };
            match gate.batch(&ops) {
                Ok(()) => return Ok(()),
                Err(GateError::Expired) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
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

    fn verify_gone(&mut self, vips: &[Homed]) -> Result<(), String> {
        let addrs: Vec<IpAddr> = vips.iter().map(|v| v.0.addr).collect();
        let slots: std::collections::BTreeSet<usize> = vips.iter().map(|v| v.1).collect();
        for slot in slots {
            let Some(index) = self.index(slot) else {
                continue;
            };
            let present: Vec<IpAddr> = self
                .rtnl
                .addrs(index)
                .map_err(|e| err_text(&e))?
                .into_iter()
                .map(|a| a.addr)
                .filter(|a| addrs.contains(a))
                .collect();
            if !present.is_empty() {
                return Err(format!("still present after delete: {present:?}"));
            }
        }
        if let Some(gate) = &mut self.gate {
            for v6 in [false, true] {
                let live = match gate.list(GateSet::Live, v6) {
                    Ok(l) => l,
                    // No table, no set: no element either (a firewall reload).
                    Err(e) if is_enoent(&e) => Vec::new(),
                    Err(e) => return Err(e.to_string()),
                };
                if live.iter().any(|(a, _)| addrs.contains(a)) {
                    return Err("gate element still present after delete".into());
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> KernelOutcome {
        if let Some(r) = &self.renewer {
            r.forbid_all();
        }
        for g in 0..self.groups.len() {
            if let Err(e) = self.del_addrs(g as GroupId) {
                return KernelOutcome::Failed(e);
            }
        }
        let pool = self.pool.clone();
        for set in [GateSet::Live, GateSet::Armed] {
            let Some(gate) = &mut self.gate else { break };
            match gate.flush(set) {
                Ok(()) => {}
                // The tables are gone: fresh ones are empty.
                Err(e) if is_enoent(&e) => {
                    if self.gate_lost() {
                        break;
                    }
                    return KernelOutcome::Failed(e.to_string());
                }
                Err(e) => return KernelOutcome::Failed(e.to_string()),
            }
        }
        match self.verify_gone(&pool) {
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
        let vips = self.groups[usize::from(g)].clone();
        match self.verify_gone(&vips) {
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
        let addrs: Vec<IpAddr> = self.addrs_of(g).collect();
        if clock::now() > deadline {
            return KernelOutcome::Lapsed;
        }
        let a_timeout = self.a;
        if let Some(gate) = &mut self.gate {
            let arm: Vec<ElemOp> = addrs
                .iter()
                .map(|a| ElemOp::Add(GateSet::Armed, *a, a_timeout))
                .collect();
            match gate.batch(&arm) {
                Ok(()) => {}
                // An add finds no element to miss: ENOENT means the set is gone.
                Err(GateError::Expired) => {
                    if !self.gate_lost() {
                        return KernelOutcome::Failed("gate set missing".into());
                    }
                    if clock::now() > deadline {
                        return KernelOutcome::Lapsed;
                    }
                    if let Some(gate) = &mut self.gate
                        && let Err(e) = gate.batch(&arm)
                    {
                        return KernelOutcome::Failed(e.to_string());
                    }
                }
                Err(e) => return KernelOutcome::Failed(e.to_string()),
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
        if let Some(r) = &self.renewer {
            r.allow(g);
        }
        KernelOutcome::Ok
    }

    /// The gate batch refreshing the groups `idx` of `items`: every delete, then every
    /// add (one run each, so the batch is a few messages).
    fn refresh_ops(
        &self,
        items: &[(GroupId, crate::core::time::Instant, bool)],
        idx: &[usize],
    ) -> Vec<ElemOp> {
        let addrs = || idx.iter().flat_map(|&i| self.addrs_of(items[i].0));
        addrs()
            .map(|a| ElemOp::Del(GateSet::Live, a))
            .chain(addrs().map(|a| ElemOp::Add(GateSet::Live, a, self.e)))
            .collect()
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
        let first = if self.gate.is_some() && !live.is_empty() {
            let ops = self.refresh_ops(items, &live);
            self.gate.as_mut().map(|gate| gate.batch(&ops))
        } else {
            None
        };
        if matches!(first, Some(Err(GateError::Expired))) && self.gate_lost() {
            // The tables were gone and are back, empty: every held group goes live
            // again the way a bind does (arm, add, re-check, go-live), against its
            // deadline less the arming margin, exactly as a fresh bind would be.
            let a = self.a;
            for &i in &live {
                let (g, d, _) = items[i];
                let bind_deadline = crate::core::time::Instant::from_nanos(
                    d.as_nanos().saturating_sub(a.as_nanos() as u64),
                );
                out[i] = match self.bind(g, bind_deadline) {
                    KernelOutcome::Ok => None,
                    other => Some(other),
                };
            }
            return out
                .into_iter()
                .map(|o| o.unwrap_or(KernelOutcome::Ok))
                .collect();
        }
        match first {
            None | Some(Ok(())) => {}
            Some(Err(GateError::Expired)) if live.len() > 1 => {
                // Find the lapsed groups from a dump of the live sets (read-only),
                // and refresh the others in one batch; a failed batch costs an
                // abort (an RCU grace period), so each group alone is the fallback.
                let addrs: Vec<IpAddr> = live
                    .iter()
                    .flat_map(|&i| self.addrs_of(items[i].0))
                    .collect();
                if let Ok(have) = self.present_in(GateSet::Live, &addrs) {
                    let (whole, lapsed): (Vec<usize>, Vec<usize>) = live
                        .iter()
                        .partition(|&&i| self.addrs_of(items[i].0).all(|a| have.contains(&a)));
                    let ops = self.refresh_ops(items, &whole);
                    let ok = whole.is_empty()
                        || self
                            .gate
                            .as_mut()
                            .is_some_and(|gate| gate.batch(&ops).is_ok());
                    if ok {
                        for i in lapsed {
                            out[i] = Some(KernelOutcome::Lapsed);
                        }
                        return self.finish_refresh(items, &whole, out);
                    }
                }
                for &i in &live {
                    let ops = self.refresh_ops(items, &[i]);
                    let Some(gate) = self.gate.as_mut() else {
                        break;
                    };
                    match gate.batch(&ops) {
                        Ok(()) => {}
                        Err(GateError::Expired) => out[i] = Some(KernelOutcome::Lapsed),
                        Err(e) => out[i] = Some(KernelOutcome::Failed(e.to_string())),
                    }
                }
            }
            Some(Err(GateError::Expired)) => out[live[0]] = Some(KernelOutcome::Lapsed),
            Some(Err(e)) => {
                for &i in &live {
                    out[i] = Some(KernelOutcome::Failed(e.to_string()));
                }
            }
        }
        self.finish_refresh(items, &live, out)
    }

    /// The end of a refresh: the addresses of the groups refreshed, then the check
    /// after the ack.
    fn finish_refresh(
        &mut self,
        items: &[(GroupId, crate::core::time::Instant, bool)],
        live: &[usize],
        mut out: Vec<Option<KernelOutcome>>,
    ) -> Vec<KernelOutcome> {
        // The addresses themselves: renewed with the gate now and then, queued to
        // the renewal thread (`renew.rs`: an address write may wait for RTNL); or
        // every refresh with the address fence, here (REPLACE re-creates: only under
        // the lease), all in one netlink write. A renewal the thread could not write
        // is written here, where a missing interface is looked up again.
        let mut renew: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&i| out[i].is_none() && (items[i].2 || self.gate.is_none()))
            .collect();
        let mut queued = Vec::new();
        renew.retain(|&i| match self.renewal_jobs(items[i].0) {
            Some(jobs) => {
                queued.push((items[i].0, jobs));
                false
            }
            None => true,
        });
        if let Some(r) = &self.renewer {
            r.renew_many(queued);
        }
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
/// for the netlink round trips (tens to hundreds of microseconds; an address write
/// more while another process holds RTNL) and run on the agent's own thread, so
/// operations are serialized by construction. Only the gate-mode address renewals
/// go to a thread of their own (`renew.rs`).
pub struct KernelIo(Worker);

impl std::fmt::Debug for KernelIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelIo")
            .field("links", &self.0.links)
            .finish_non_exhaustive()
    }
}

impl KernelIo {
    /// Opens the netlink sockets; `links` are the interfaces the VIPs live on
    /// (name, index), `homes` which VIP lives on which.
    pub fn open(
        cfg: &ClusterConfig,
        homes: &Homes,
        links: &[(String, Option<u32>)],
    ) -> std::io::Result<KernelIo> {
        let rtnl = Rtnl::new()?;
        let (gate, renewer) = match cfg.fence {
            FenceKind::Gate => (Some(Gate::open()?), Some(Renewer::start()?)),
            FenceKind::Address => (None, None),
        };
        let mut w = Worker {
            rtnl,
            gate,
            renewer,
            links: links
                .iter()
                .map(|(name, index)| LinkSlot {
                    name: name.clone(),
                    index: *index,
                })
                .collect(),
            homes: homes.clone(),
            groups: Vec::new(),
            pool: Vec::new(),
            e: cfg.timing.gate_timeout,
            a: cfg.timing.gate_arm,
            stats: KernelStats::default(),
        };
        w.groups = cfg.groups.iter().map(|g| w.homed(&g.vips)).collect();
        w.pool = w.groups.iter().flatten().copied().collect();
        Ok(KernelIo(w))
    }

    /// Performs the engine's operations, in order.
    pub fn perform(&mut self, ops: Vec<(u64, KernelOp)>) -> Vec<Done> {
        self.0.perform(ops)
    }

    /// Removes every pool VIP and gate element (shutdown, fatal errors).
    pub fn flush(&mut self) -> KernelOutcome {
        self.0.flush()
    }

    /// Resolves every interface by name again (after a link event): each one's
    /// current state, `None` if it is gone. Later operations use the new indices.
    pub fn relink(&mut self) -> Vec<(String, Option<Link>)> {
        (0..self.0.links.len())
            .map(|i| (self.0.links[i].name.clone(), self.0.relink(i)))
            .collect()
    }

    /// The engine's group table changed (a reload): operations name slots of the new
    /// table; `homes` says where the new addresses live. The pool (what a flush
    /// removes and a re-created gate closes over) keeps every address this process
    /// has had, so that nothing it may have bound is left out.
    pub fn set_groups(&mut self, groups: &[crate::core::config::VipGroup], homes: &Homes) {
        let w = &mut self.0;
        for (a, i) in &homes.of {
            w.homes.of.entry(*a).or_insert_with(|| i.clone());
        }
        w.groups = groups.iter().map(|g| w.homed(&g.vips)).collect();
        for v in w.groups.clone().into_iter().flatten() {
            if !w.pool.iter().any(|p| p.0 == v.0) {
                w.pool.push(v);
            }
        }
    }

    /// Adds VIPs a reload brought into the pool to the gate's `pool` sets (one
    /// netlink batch, both tables): from then on they are gated — dropped unless
    /// live — before the engine may bind them. Without the gate there is nothing to do.
    pub fn extend_gate_pool(&mut self, vips: &[IpAddr]) -> Result<(), String> {
        if self.0.gate.is_none() {
            return Ok(());
        }
        let homes: Vec<(IpAddr, &str)> = vips
            .iter()
            .filter_map(|&a| self.0.homes.iface(a).map(|i| (a, i)))
            .collect();
        gate::add_homes(&homes).map_err(|e| e.to_string())?;
        let Some(gate) = &mut self.0.gate else {
            return Ok(());
        };
        let ops: Vec<ElemOp> = vips
            .iter()
            .map(|&a| ElemOp::Insert(GateSet::Pool, a))
            .collect();
        gate.batch(&ops).map_err(|e| e.to_string())
    }

    /// The neighbour-cache entries (reachable, stale, delay) of each interface VIPs
    /// live on, and each interface's own permanent prefixes (what its neighbours'
    /// addresses fall in). An interface that cannot be read is left out.
    #[allow(clippy::type_complexity)]
    pub fn neighbours(&mut self) -> Vec<(String, Vec<Neighbour>, Vec<(IpAddr, u8)>)> {
        let w = &mut self.0;
        let mut out = Vec::new();
        for slot in 0..w.links.len() {
            let Some(index) = w.index(slot) else {
                continue;
            };
            let Ok(neigh) = w.rtnl.neighbours(index) else {
                continue;
            };
            let Ok(addrs) = w.rtnl.addrs(index) else {
                continue;
            };
            let prefixes = addrs
                .into_iter()
                .filter(|a| a.valid_lft == u32::MAX)
                .map(|a| (a.addr, a.prefix_len))
                .collect();
            out.push((w.links[slot].name.clone(), neigh, prefixes));
        }
        out
    }

    /// What had to be repaired so far.
    pub fn stats(&self) -> KernelStats {
        self.0.stats
    }
}
