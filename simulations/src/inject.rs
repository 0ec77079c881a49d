//! Fault injection: what each scheduled fault does to the world (machines, agents,
//! links, clocks, configurations), and the fault ends it schedules.

use rand::RngExt;
use std::net::IpAddr;

use wackamole::core::config::{ClusterConfig, FenceKind, GroupId, Vip, VipGroup};

use crate::clock::Tau;
use crate::faults::{Fault, FaultKind};
use crate::kernel::Kernel;
use crate::queue::Ev;
use crate::trace::Tag;
use crate::world::{Agent, MS, World};

impl World {
    pub(crate) fn apply_fault(&mut self, f: Fault) {
        let i = f.node;
        if f.kind != FaultKind::Join || f.at > 0 {
            let d = f.describe(&self.nodes[i].name);
            self.log(
                Tag::Fault {
                    node: f.node,
                    kind: f.kind as u64,
                },
                || format!("FAULT {d}"),
            );
        }
        match f.kind {
            FaultKind::Join => {
                if self.nodes[i].agent == Agent::Off && self.nodes[i].machine_up {
                    self.start_agent(i);
                }
            }
            FaultKind::Crash => {
                for g in self.holdings(i) {
                    self.pending_failover.push((g, i, self.now, true));
                }
                let n = &mut self.nodes[i];
                n.machine_up = false;
                n.kernel = Kernel::new(
                    self.cluster.fence == FenceKind::Gate,
                    self.cfg.kernel_breaks,
                );
                n.boot += 1;
                self.stop_agent(i, Agent::Off);
                for a in self.vips.iter().map(|v| v.0).collect::<Vec<_>>() {
                    self.check.touched.push(a);
                }
                if f.dur > 0 {
                    self.fault_after(f.dur, FaultKind::Boot, i);
                }
            }
            FaultKind::Boot => {
                let n = &mut self.nodes[i];
                if !n.machine_up {
                    n.machine_up = true;
                    self.start_agent(i);
                }
            }
            FaultKind::AgentCrash => {
                if self.nodes[i].agent == Agent::Running || self.nodes[i].agent == Agent::Frozen {
                    for g in self.holdings(i) {
                        self.pending_failover.push((g, i, self.now, false));
                    }
                    self.stop_agent(i, Agent::Crashed);
                    let d = f.dur.max(50 * MS);
                    self.fault_after(d, FaultKind::Restart, i);
                }
            }
            FaultKind::Restart => {
                if self.nodes[i].agent == Agent::Crashed || self.nodes[i].agent == Agent::Off {
                    self.start_agent(i);
                }
            }
            FaultKind::Freeze => {
                if self.nodes[i].agent == Agent::Running {
                    for g in self.holdings(i) {
                        self.pending_failover.push((g, i, self.now, false));
                    }
                    self.nodes[i].agent = Agent::Frozen;
                    self.fault_after(f.dur, FaultKind::Resume, i);
                }
            }
            FaultKind::Resume => {
                if self.nodes[i].agent == Agent::Frozen {
                    self.nodes[i].agent = Agent::Running;
                    let evs = std::mem::take(&mut self.nodes[i].frozen_events);
                    for (k, ev) in evs.into_iter().enumerate() {
                        self.queue.push(self.now + k as u64 * 1000, ev);
                    }
                    // The timer fires at once: the executor was stalled.
                    let tgen = self.nodes[i].timer_gen;
                    let life = self.nodes[i].life;
                    self.queue.push(
                        self.now,
                        Ev::Timer {
                            node: i,
                            life,
                            tgen,
                        },
                    );
                }
            }
            FaultKind::Leave => {
                if self.nodes[i].agent == Agent::Running {
                    for g in self.holdings(i) {
                        self.pending_handover.push((g, i, self.now));
                    }
                    self.with_engine(i, |e, now| e.leave(now));
                    if f.dur > 0 {
                        self.fault_after(f.dur, FaultKind::Restart, i);
                    }
                }
            }
            FaultKind::Drain => {
                if self.nodes[i].agent == Agent::Running {
                    for g in self.holdings(i) {
                        self.pending_handover.push((g, i, self.now));
                    }
                    self.nodes[i].draining = true;
                    self.with_engine(i, |e, now| e.set_draining(true, now));
                    self.fault_after(f.dur, FaultKind::Undrain, i);
                }
            }
            FaultKind::Undrain => {
                self.nodes[i].draining = false;
                self.with_engine(i, |e, now| e.set_draining(false, now));
            }
            FaultKind::Health => {
                self.nodes[i].healthy = false;
                self.with_engine(i, |e, now| e.set_healthy(false, now));
                self.fault_after(f.dur, FaultKind::Healthy, i);
            }
            FaultKind::Healthy => {
                self.nodes[i].healthy = true;
                self.with_engine(i, |e, now| e.set_healthy(true, now));
            }
            FaultKind::Link | FaultKind::LinkUp => {
                // The machine's link state was set when the fault fired (world.rs);
                // the agent learns the current state.
                let mask = self.nodes[i].link_down;
                let mut set = None;
                self.with_engine(i, |e, now| {
                    let unable = crate::world::unable_of(e, mask);
                    set = Some(unable.clone());
                    e.set_unable(unable, now)
                });
                self.log(
                    Tag::Fault {
                        node: i,
                        kind: f.kind as u64,
                    },
                    || format!("n{i} unable {set:?}"),
                );
            }
            FaultKind::Prefer => {
                let g = f.other.unwrap_or(0) % self.cluster.groups.len();
                self.with_engine(i, |e, now| e.set_prefers(vec![g as GroupId], now));
            }
            FaultKind::Partition
            | FaultKind::Isolate
            | FaultKind::NonTransitive
            | FaultKind::Asymmetric => {
                let cuts = self.schedule.cuts_for(&f, self.nodes.len());
                for c in &cuts {
                    self.net.blocked.insert(*c);
                }
                let end = self.schedule.push_heal(cuts);
                self.queue.push(self.now + f.dur, Ev::Fault(end));
            }
            FaultKind::VoterChange => self.start_voter_change(f.dur),
            FaultKind::Reconfigure => {
                // The file now holds configuration `other` (or a later one); the
                // running agent is reloaded one voter step at a time, and a refused
                // step (the previous one not settled yet) is retried, as an operator
                // or a configuration-management run would.
                let target = f.other.unwrap_or(0);
                if self.nodes[i].config < target {
                    if !self.operator_reaches(i) || !self.may_write_voters(i, target) {
                        // A node the network cuts off from the operator it cannot
                        // reach (its run fails there; it goes on with the others
                        // and comes back later). And it rolls the next step only
                        // once the last one runs on every node it reaches
                        // (`wackamole reload` said so).
                        let e = self.schedule.push_end(FaultKind::Reconfigure, i);
                        self.schedule.faults[e].other = Some(target);
                        let wait = self.rng.random_range(200 * MS..800 * MS);
                        self.queue.push(self.now + wait, Ev::Fault(e));
                        return;
                    }
                    self.nodes[i].config = target;
                }
                if self.nodes[i].agent != Agent::Running || !self.nodes[i].machine_up {
                    return;
                }
                let at = self.nodes[i].voters_at;
                let file = self.nodes[i].config;
                if at >= file {
                    return;
                }
                // The file's set (a node that fell behind catches up straight to
                // it once it is settled), else the next step towards it.
                let mut outcome = Err(String::new());
                let mut to = file;
                for target in [file, at + 1] {
                    let next = self.configs[target].voter_set();
                    self.with_engine(i, |e, now| outcome = e.set_voters(next, now));
                    to = target;
                    if outcome.is_ok() || target == at + 1 {
                        break;
                    }
                }
                let next = self.configs[to].voter_set();
                let line = match &outcome {
                    Ok(()) => {
                        self.nodes[i].voters_at = to;
                        format!("n{i} reloads voters {:?}", next.voters)
                    }
                    Err(why) => format!("n{i} voter step refused: {why}"),
                };
                self.log(
                    Tag::Fault {
                        node: i,
                        kind: FaultKind::Reconfigure as u64,
                    },
                    || line,
                );
                if self.nodes[i].voters_at < self.nodes[i].config {
                    let e = self.schedule.push_end(FaultKind::Reconfigure, i);
                    self.schedule.faults[e].other = Some(self.nodes[i].config);
                    let wait = if outcome.is_ok() {
                        MS
                    } else {
                        self.rng.random_range(200 * MS..800 * MS)
                    };
                    self.queue.push(self.now + wait, Ev::Fault(e));
                }
            }
            FaultKind::Reload => {
                self.start_reload(f.dur);
                if f.other == Some(1) {
                    self.start_voter_change(f.dur);
                }
            }
            FaultKind::ReloadApply => {
                let pool = f.other.unwrap_or(0);
                self.nodes[i].pool = pool;
                if self.nodes[i].agent == Agent::Running {
                    let groups = self.pools[pool].clone();
                    self.log(
                        Tag::Fault {
                            node: i,
                            kind: FaultKind::ReloadApply as u64,
                        },
                        || format!("n{i} reloads pool {pool}"),
                    );
                    // The shell follows the new table and reads the links for it.
                    let mask = self.nodes[i].link_down;
                    self.with_engine(i, |e, now| {
                        e.set_pool(groups, now);
                        let unable = crate::world::unable_of(e, mask);
                        e.set_unable(unable, now);
                    });
                }
            }
            FaultKind::Delay => {
                self.net.slow_to.insert(i, (100 * MS, 500 * MS));
                self.fault_after(f.dur, FaultKind::EndDelay, i);
            }
            FaultKind::EndDelay => {
                self.net.slow_to.remove(&i);
            }
            FaultKind::RestartStorm => {
                self.net.slow_to.insert(i, (400 * MS, 1500 * MS));
                let mut t = 0;
                for _ in 0..3 {
                    t += self.rng.random_range(200 * MS..900 * MS);
                    let idx = self.schedule.push_end(FaultKind::AgentCrash, i);
                    self.schedule.faults[idx].dur = self.rng.random_range(50 * MS..800 * MS);
                    self.queue.push(self.now + t, Ev::Fault(idx));
                }
                self.fault_after(f.dur.max(t + 500 * MS), FaultKind::EndDelay, i);
            }
            FaultKind::SplitRestart => {
                let cuts = self.schedule.cuts_for(&f, self.nodes.len());
                for c in &cuts {
                    self.net.blocked.insert(*c);
                }
                let end = self.schedule.push_heal(cuts);
                self.queue.push(self.now + f.dur, Ev::Fault(end));
                // The third node: the first that is neither side of the cut.
                let j = f.other.unwrap_or(0);
                if let Some(v) = (0..self.nodes.len()).find(|&v| v != i && v != j) {
                    let at = self.rng.random_range(400 * MS..1500 * MS);
                    let idx = self.schedule.push_end(FaultKind::AgentCrash, v);
                    self.schedule.faults[idx].dur = self.rng.random_range(5 * MS..60 * MS);
                    self.queue.push(self.now + at, Ev::Fault(idx));
                }
            }
            FaultKind::Flap => {
                // Toggle one node's links every 100–500 ms for the duration.
                let cuts = self.schedule.cuts_for(
                    &Fault {
                        kind: FaultKind::Isolate,
                        ..f.clone()
                    },
                    self.nodes.len(),
                );
                let mut t = self.now;
                let end = self.now + f.dur;
                let mut on = true;
                while t < end {
                    let idx = if on {
                        self.schedule.push_cut(cuts.clone())
                    } else {
                        self.schedule.push_heal(cuts.clone())
                    };
                    self.queue.push(t, Ev::Fault(idx));
                    on = !on;
                    t += self.rng.random_range(100 * MS..500 * MS);
                }
                let idx = self.schedule.push_heal(cuts);
                self.queue.push(end, Ev::Fault(idx));
            }
            FaultKind::Cut => {
                for c in self.schedule.cuts[f.other.unwrap_or(0)].clone() {
                    self.net.blocked.insert(c);
                }
            }
            FaultKind::Heal => {
                for c in self.schedule.cuts[f.other.unwrap_or(0)].clone() {
                    self.net.blocked.remove(&c);
                }
            }
            FaultKind::OneWayLoss => {
                let j = f.other.unwrap_or(0) % self.nodes.len();
                self.net.link_loss.insert((i, j), 0.5);
                let idx = self.schedule.push_end(FaultKind::EndLinkLoss, i);
                self.schedule.faults[idx].other = Some(j);
                self.queue.push(self.now + f.dur, Ev::Fault(idx));
            }
            FaultKind::EndLinkLoss => {
                let j = f.other.unwrap_or(0) % self.nodes.len();
                self.net.link_loss.remove(&(i, j));
            }
            FaultKind::LossBurst => {
                self.net.loss = self.net.loss.max(0.3);
                let idx = self.schedule.push_end(FaultKind::EndLossBurst, i);
                self.queue.push(self.now + f.dur, Ev::Fault(idx));
            }
            FaultKind::EndLossBurst => self.net.loss = self.cfg.loss,
            FaultKind::ClockBeyondRho => {
                let rate = self.nodes[i].clock.rate();
                self.nodes[i].clock.set_rate(self.now, rate * 0.5);
                let idx = self.schedule.push_end(FaultKind::EndClock, i);
                self.queue.push(self.now + f.dur, Ev::Fault(idx));
            }
            FaultKind::EndClock => {
                let rate = self.nodes[i].clock.rate();
                self.nodes[i].clock.set_rate(self.now, rate / 0.5);
            }
        }
    }

    /// A pool change by reload (`FaultKind::Reload`): from the initial pool, one
    /// group removed, two merged and an address added; rolled through the nodes in a
    /// random order at a random spacing (zero included), then rolled back the same
    /// way, all within `dur`.
    fn start_reload(&mut self, dur: Tau) {
        let p0 = self.pools[0].clone();
        let n = p0.len();
        if n < 3 {
            return;
        }
        let mut pick: Vec<usize> = (0..n).collect();
        for k in 0..3 {
            let j = self.rng.random_range(k..n);
            pick.swap(k, j);
        }
        let (a, b, c) = (pick[0], pick[1], pick[2]);
        let k = self.pools.len() as u8;
        let mut p1: Vec<VipGroup> = p0
            .iter()
            .enumerate()
            .filter(|(i, _)| ![a, b, c].contains(i))
            .map(|(_, g)| g.clone())
            .collect();
        let mut merged = p0[b].vips.clone();
        merged.extend(p0[c].vips.iter().copied());
        p1.push(VipGroup::new(merged));
        p1.push(VipGroup::new(vec![Vip::host(IpAddr::from([10, 2, 0, k]))]));
        p1.sort();
        self.pools.push(p1);
        let idx = self.pools.len() - 1;
        let nodes = self.nodes.len();
        let step = self
            .rng
            .random_range(0..=dur / (2 * nodes as u64 + 2))
            .min(1500 * MS);
        let mut at = self.now;
        for pool in [idx, 0] {
            at = self.roll_out(FaultKind::ReloadApply, pool, at, step);
            at += self.rng.random_range(0..=dur / 4);
        }
    }

    /// A voter replaced by reload (`FaultKind::VoterChange`): the first node that
    /// is not a voter joins the voters, rolled through the nodes in a random order
    /// at a random spacing (zero included); then a random one of the original voters
    /// leaves, rolled the same way; both within about `dur`. Each node steps when
    /// its turn comes and retries while the step rule refuses.
    fn start_voter_change(&mut self, dur: Tau) {
        let cur = self.configs.last().expect("initial config").clone();
        let Some(add) = self
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .find(|n| cur.voter_index(n).is_none())
        else {
            return;
        };
        let mut v1 = cur.voters.clone();
        v1.push(add);
        let mut v2 = v1.clone();
        // A witness stays one: a node that stops being a witness needs a restart
        // (it starts or stops holding VIPs), which a reload refuses.
        let holders: Vec<&String> = cur.voters.iter().filter(|v| !cur.is_witness(v)).collect();
        let gone = holders[self.rng.random_range(0..holders.len())].clone();
        v2.retain(|v| *v != gone);
        let witnesses = cur.witnesses.clone();
        let nodes = self.nodes.len();
        let mut at = self.now;
        for (voters, witnesses) in [(v1, cur.witnesses.clone()), (v2, witnesses)] {
            let next = ClusterConfig::new(
                cur.quorum,
                cur.fence,
                voters,
                witnesses,
                cur.groups.clone(),
                cur.timing.clone(),
            );
            self.configs.push(next);
            let idx = self.configs.len() - 1;
            let step = self
                .rng
                .random_range(0..=dur / (2 * nodes as u64 + 2))
                .min(1200 * MS);
            at = self.roll_out(FaultKind::Reconfigure, idx, at, step);
            at += self.rng.random_range(0..=dur / 4);
        }
    }

    /// Schedules `kind` (with operand `other`) on every node in a random order from
    /// `at`, `step` apart; returns the time after the last.
    fn roll_out(&mut self, kind: FaultKind, other: usize, mut at: Tau, step: Tau) -> Tau {
        let nodes = self.nodes.len();
        let mut order: Vec<usize> = (0..nodes).collect();
        for k in 0..nodes {
            let j = self.rng.random_range(k..nodes);
            order.swap(k, j);
        }
        for &node in &order {
            let e = self.schedule.push_end(kind, node);
            self.schedule.faults[e].other = Some(other);
            self.queue.push(at, Ev::Fault(e));
            at += step;
        }
        at
    }

    /// Whether the operator (working from the machine of the voter being added, the
    /// last node to become one) reaches node `k` over the network.
    pub(crate) fn operator_reaches(&self, k: usize) -> bool {
        let Some(op) = self.configs.last().and_then(|c| {
            self.nodes.iter().position(|n| {
                c.voter_index(&n.name).is_some() && self.configs[0].voter_index(&n.name).is_none()
            })
        }) else {
            return true;
        };
        k == op || (!self.net.blocked.contains(&(op, k)) && !self.net.blocked.contains(&(k, op)))
    }

    /// Whether the operator may write voter configuration `target` into node
    /// `node`'s file. It rolls a step once the last one runs on every running (or
    /// frozen) agent it reaches — a node the network cuts off from it it cannot tell
    /// from a slow one, so it goes ahead without it (the step rule must then keep the
    /// cut-off node safe). A stopped node gets the file only when no running node at
    /// all is two steps behind it (the fault model of `docs/safety.md`: no node
    /// starts two steps from a set in use). A running node the rollout went past
    /// while it was cut off gets the file the others already have, as a
    /// configuration-management run writes the desired state (its agent then catches
    /// up, or steps towards it; seed 63427301979: held back at its old step, it could
    /// take none, and the others never formed a lease).
    pub(crate) fn may_write_voters(&self, node: usize, target: usize) -> bool {
        let running = |n: &crate::world::Node| {
            n.machine_up && matches!(n.agent, Agent::Running | Agent::Frozen)
        };
        let stopped = !running(&self.nodes[node]);
        if !stopped
            && self.nodes.iter().enumerate().any(|(k, n)| {
                k != node && running(n) && n.config >= target && n.voters_at >= target
            })
        {
            return true;
        }
        self.nodes.iter().enumerate().all(|(k, n)| {
            !running(n) || (!stopped && !self.operator_reaches(k)) || n.voters_at + 1 >= target
        })
    }

    pub(crate) fn fault_after(&mut self, d: Tau, kind: FaultKind, node: usize) {
        let idx = self.schedule.push_end(kind, node);
        self.queue.push(self.now + d, Ev::Fault(idx));
    }
}
