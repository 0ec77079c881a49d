//! The liveness and balance checks, L1 and B1: after the faults stop and the cluster
//! had time to settle ([`settle_bound`]), every group must be answered by exactly one
//! eligible node, and loads must respect ceil(V/N), in nearly every sample of a
//! two-second window.

use wackamole::core::config::{ClusterConfig, GroupId};

use crate::clock::Tau;
use crate::faults::FaultKind;
use crate::trace::Tag;
use crate::world::{Agent, SEC, World, ms_f};

/// Length of the window after the settle bound over which L1 and B1 are sampled.
pub const L1_WINDOW: Tau = 2 * SEC;
/// Fraction of samples in which each group must be held by exactly one eligible
/// node (and B1 must hold), without background loss. With background loss p the
/// bar is min(0.95, 1 − p): a lease needs a quorum of answers every few rounds,
/// so heavy loss makes brief re-binds normal; a stuck group still fails.
pub const L1_MIN_COVERAGE: f64 = 0.95;

fn l1_bar(loss: f64) -> f64 {
    L1_MIN_COVERAGE.min(1.0 - loss)
}
/// The L1/B1 sampling state.
#[derive(Default)]
pub struct LivenessState {
    /// Per group: samples in which exactly one eligible node answered it whole.
    pub good: Vec<u64>,
    /// Samples taken.
    pub samples: u64,
    /// Samples in which B1 held.
    pub b1_good: u64,
    /// The verdict was given.
    pub done: bool,
    /// When every group first had a holder.
    pub converged_at: Option<Tau>,
}

impl World {
    pub(crate) fn periodic_check(&mut self) {
        for g in 0..self.cluster.groups.len() {
            self.update_intervals(g as GroupId);
        }
        if self.live.converged_at.is_none()
            && (0..self.cluster.groups.len()).all(|g| self.holder_at(g, self.now).is_some())
        {
            self.live.converged_at = Some(self.now);
        }
        let settle = settle_bound(&self.cluster);
        let from = self.quiet_at + settle;
        if self.now >= from && self.now <= from + L1_WINDOW {
            self.liveness_sample();
        }
        if self.now > from + L1_WINDOW && !self.live.done {
            self.live.done = true;
            self.liveness_verdict();
        }
    }

    pub(crate) fn eligible_nodes(&self) -> Vec<usize> {
        let failback = self.cluster.timing.failback_delay.as_nanos() as u64;
        (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.machine_up
                    && n.agent == Agent::Running
                    && n.healthy
                    && !n.draining
                    && self.cluster.may_hold(&n.name)
                    && self.now >= n.started_at + failback
            })
            .collect()
    }

    /// One L1/B1 sample: which groups are answered by exactly one eligible node, and
    /// whether loads respect ceil(V/N).
    pub(crate) fn liveness_sample(&mut self) {
        let eligible = self.eligible_nodes();
        let mut load = vec![0usize; self.nodes.len()];
        let groups = self.cluster.groups.len();
        if self.live.good.len() != groups {
            self.live.good = vec![0; groups];
        }
        self.live.samples += 1;
        for g in 0..groups {
            let first = self.cluster.groups[g].vips[0].addr;
            // The group must be kept whole: every address on the same node.
            if let [m] = self.answering(first).as_slice()
                && eligible.contains(m)
                && self.cluster.groups[g]
                    .vips
                    .iter()
                    .all(|v| self.answering(v.addr) == [*m])
            {
                load[*m] += 1;
                self.live.good[g] += 1;
            }
        }
        let prefs_in_play = self
            .schedule
            .faults
            .iter()
            .any(|f| f.kind == FaultKind::Prefer);
        let cap = groups.div_ceil(eligible.len().max(1));
        if prefs_in_play || !self.cluster.witnesses.is_empty() || load.iter().all(|&l| l <= cap) {
            self.live.b1_good += 1;
        }
    }

    /// L1 and B1 over the window: each group answered by exactly one eligible node in
    /// at least `L1_MIN_COVERAGE` of the samples (brief re-binds under heavy loss are
    /// not failures; a group stuck unowned or doubly owned is), and B1 likewise.
    pub(crate) fn liveness_verdict(&mut self) {
        let need = (self.live.samples as f64 * l1_bar(self.cfg.loss)).ceil() as u64;
        let min = self.live.good.iter().copied().min().unwrap_or(0);
        self.result.l1_min_coverage = min as f64 / self.live.samples.max(1) as f64;
        let bad: Vec<usize> = (0..self.live.good.len())
            .filter(|&g| self.live.good[g] < need)
            .collect();
        if self.live.b1_good < need || !bad.is_empty() || self.live.samples == 0 {
            self.liveness_check();
        }
    }

    pub(crate) fn liveness_check(&mut self) {
        let eligible = self.eligible_nodes();
        let mut load = vec![0usize; self.nodes.len()];
        let mut failures = Vec::new();
        let need = (self.live.samples as f64 * l1_bar(self.cfg.loss)).ceil() as u64;
        for g in 0..self.live.good.len() {
            if self.live.good[g] < need {
                failures.push(format!(
                    "g{g} owned by one eligible node in {}/{} samples",
                    self.live.good[g], self.live.samples
                ));
            }
        }
        if self.live.b1_good < need {
            failures.push(format!(
                "B1 held in {}/{} samples",
                self.live.b1_good, self.live.samples
            ));
        }
        let prefs_in_play = self
            .schedule
            .faults
            .iter()
            .any(|f| f.kind == FaultKind::Prefer);
        for g in 0..self.cluster.groups.len() {
            let first = self.cluster.groups[g].vips[0].addr;
            let who = self.answering(first);
            match who.as_slice() {
                [m] if eligible.contains(m) => load[*m] += 1,
                [m] => failures.push(format!("g{g} held by ineligible {}", self.nodes[*m].name)),
                [] => failures.push(format!("g{g} unowned")),
                _ => failures.push(format!("g{g} held by {who:?}")),
            }
        }
        if !eligible.is_empty() && !prefs_in_play && self.cluster.witnesses.is_empty() {
            let cap = self.cluster.groups.len().div_ceil(eligible.len());
            for (m, l) in load.iter().enumerate() {
                if *l > cap {
                    failures.push(format!(
                        "B1: {} holds {l} > ceil(V/N) = {cap}",
                        self.nodes[m].name
                    ));
                }
            }
        }
        if !failures.is_empty() {
            for i in 0..self.nodes.len() {
                let local = self.local_now(i);
                let line = match &self.nodes[i].engine {
                    Some(e) => {
                        let st = e.status(local);
                        let members: Vec<String> = st
                            .members
                            .iter()
                            .map(|m| {
                                format!(
                                    "{}@{}:{:?}/{}",
                                    m.id.name,
                                    m.id.epoch,
                                    m.state,
                                    m.meta.as_ref().map_or("nometa".to_string(), |x| format!(
                                        "e{}d{}g{}v{} t{:02x}{:02x} held{:?} unable{:?}",
                                        x.eligible as u8,
                                        x.draining as u8,
                                        x.generation,
                                        x.version,
                                        x.table[0],
                                        x.table[1],
                                        x.held,
                                        x.unable
                                    ))
                                )
                            })
                            .collect();
                        let owners: Vec<String> = st
                            .groups
                            .iter()
                            .map(|g| format!("{}:{}", g.owner.as_deref().unwrap_or("-"), g.phase))
                            .collect();
                        format!(
                            "STATUS n{i} now={local:?} next={:?} id={:?} timers={} life={:?} meta=e{} t{:02x}{:02x} held{:?} unable{:?} swim={:?} members={members:?} groups={owners:?}",
                            e.membership().poll_timeout(),
                            e.membership().identity().epoch,
                            e.membership().pending_timers(),
                            st.life,
                            st.meta.eligible as u8,
                            st.meta.table[0],
                            st.meta.table[1],
                            st.meta.held,
                            st.meta.unable,
                            e.membership_stats()
                        )
                    }
                    None => format!(
                        "STATUS n{i} agent={:?} machine_up={}",
                        self.nodes[i].agent, self.nodes[i].machine_up
                    ),
                };
                self.log(Tag::Status { node: i }, || line);
            }
        }
        for f in failures {
            let at = ms_f(self.now - self.quiet_at);
            self.result.liveness.push(format!("{f} at quiet+{at:.0}ms"));
        }
    }
}

/// After faults stop, how long until L1 must hold: fail-back, SWIM healing
/// (announce-to-down every 2 s), the failover bound, SWIM's detection of a member
/// that claims nothing or that died while a node was away (a dead member a view still
/// names as the next owner: docs/safety.md §4.16), the longest backoff, margin.
pub fn settle_bound(c: &ClusterConfig) -> Tau {
    let f = c.failover_bound().as_nanos() as u64;
    let failback = c.timing.failback_delay.as_nanos() as u64;
    let swim = c.timing.swim_detection().as_nanos() as u64;
    failback + 2 * SEC + f + swim + 2 * SEC + SEC
}
