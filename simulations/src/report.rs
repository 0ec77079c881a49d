//! What a run produced: violations, liveness failures, failover and handover times,
//! moves and traffic, computed from the checker's intervals when the run ends.

use std::net::IpAddr;

use wackamole::core::config::GroupId;

use crate::clock::Tau;
use crate::world::{SEC, World, ms_f};

/// A dual ownership found by the checker.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Real time.
    pub at: Tau,
    /// The address answered twice.
    pub vip: IpAddr,
    /// The nodes answering it.
    pub nodes: Vec<String>,
}

/// What a run produced.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// Seed.
    pub seed: u64,
    /// S1 violations (empty when safe).
    pub violations: Vec<Violation>,
    /// L1/B1 failures after faults stopped.
    pub liveness: Vec<String>,
    /// Failover times after a holder's machine crashed, ms.
    pub failover_crash_ms: Vec<f64>,
    /// Failover times after agent crashes and freezes, ms.
    pub failover_other_ms: Vec<f64>,
    /// Handover gaps on graceful leave and drain, ms.
    pub handover_ms: Vec<f64>,
    /// Total time groups had no holder after first convergence, ms.
    pub unowned_ms: f64,
    /// Holder changes after first convergence.
    pub moves: u64,
    /// Of those, changes between two nodes no fault named (neither the old nor the
    /// new holder crashed, left, joined, …): moves for balance alone.
    pub bystander_moves: u64,
    /// Simulated node-seconds (for rates per node-hour).
    pub node_seconds: f64,
    /// Datagrams sent per node per second.
    pub datagrams_per_node_s: f64,
    /// Bytes sent per node per second.
    pub bytes_per_node_s: f64,
    /// Digest of the whole event sequence.
    pub trace_hash: u64,
    /// Last trace lines (or all with `full_trace`).
    pub trace: Vec<String>,
    /// Events processed.
    pub events: u64,
    /// Simulated seconds.
    pub sim_s: f64,
    /// The fault schedule, in words.
    pub schedule: Vec<String>,
    /// Probe conflicts seen by the engines (the canary for a too-small K).
    pub conflicts: u64,
    /// Held groups re-armed in place after their gate entry lapsed (§4.15).
    pub rearms: u64,
    /// Lowest fraction, over groups, of L1 samples in which the group was held by
    /// exactly one eligible node.
    pub l1_min_coverage: f64,
}

impl World {
    pub(crate) fn finish(mut self, n_events: u64) -> RunResult {
        for g in 0..self.cluster.groups.len() {
            self.update_intervals(g as GroupId);
            for m in 0..self.nodes.len() {
                if let Some((s, u)) = self.check.open[g][m].take() {
                    self.check.history[g].push((m, s, u.min(self.now)));
                }
            }
            self.check.history[g].sort_by_key(|&(m, s, _)| (s, m));
        }
        let conv = self.live.converged_at.unwrap_or(self.now);
        // Failovers: from the fault to the first interval of another node.
        for &(g, from, at, crash) in &self.pending_failover {
            let next = self.check.history[usize::from(g)]
                .iter()
                .filter(|&&(m, s, _)| m != from && s >= at)
                .map(|&(_, s, _)| s)
                .min();
            if let Some(s) = next {
                let v = ms_f(s - at);
                if crash {
                    self.result.failover_crash_ms.push(v);
                } else {
                    self.result.failover_other_ms.push(v);
                }
            }
        }
        for &(g, from, at) in &self.pending_handover {
            let h = &self.check.history[usize::from(g)];
            // The end of the old holder's interval that was open at the drain or leave,
            // then the next holder's start.
            if let Some(&(_, _, end)) = h.iter().find(|&&(m, s, e)| m == from && s <= at && at < e)
                && let Some(s) = h
                    .iter()
                    .filter(|&&(m, s, _)| m != from && s + 1 >= end.saturating_sub(1))
                    .map(|&(_, s, _)| s)
                    .min()
            {
                self.result.handover_ms.push(ms_f(s.saturating_sub(end)));
            }
        }
        // Unowned time and moves after first convergence.
        let mut unowned = 0u64;
        let mut moves = 0u64;
        let mut bystander = 0u64;
        let warmup = (self.cfg.warmup_s * SEC as f64) as u64;
        // Nodes some fault named (the boot-time joins of everyone excepted).
        let touched: std::collections::BTreeSet<usize> = self
            .schedule
            .faults
            .iter()
            .filter(|f| f.at >= warmup)
            .map(|f| f.node)
            .collect();
        for h in &self.check.history {
            let mut covered_until = conv;
            let mut last: Option<usize> = None;
            for &(m, s, e) in h {
                if e <= conv {
                    last = Some(m);
                    continue;
                }
                if s > covered_until {
                    unowned += s - covered_until;
                }
                covered_until = covered_until.max(e);
                // Moves are counted after the warm-up (start-up rebalancing done).
                if let Some(l) = last.filter(|&l| l != m && s >= warmup) {
                    moves += 1;
                    if !touched.contains(&l) && !touched.contains(&m) {
                        bystander += 1;
                    }
                }
                last = Some(m);
            }
            if covered_until < self.now {
                unowned += self.now - covered_until;
            }
        }
        self.result.unowned_ms = ms_f(unowned);
        self.result.moves = moves;
        self.result.bystander_moves = bystander;
        let secs = self.now as f64 / SEC as f64;
        let running = self
            .nodes
            .iter()
            .filter(|n| n.engine.is_some())
            .count()
            .max(1);
        self.result.node_seconds = (secs - self.cfg.warmup_s).max(0.0) * running as f64;
        // Traffic is measured in the steady state after the fault phase (start-up
        // joins and fault recovery excluded), per running node.
        let steady_s = (self.now.saturating_sub(self.quiet_at)) as f64 / SEC as f64;
        let node_s = (steady_s * running as f64).max(1e-9);
        self.result.datagrams_per_node_s = self.net.steady.0 as f64 / node_s;
        self.result.bytes_per_node_s = self.net.steady.1 as f64 / node_s;
        self.result.violations = self.check.violations;
        self.result.events = n_events;
        self.result.sim_s = secs;
        self.hasher.write_u64(n_events);
        self.result.trace_hash = self.hasher.finish();
        self.result.trace = self.trace.into_iter().collect();
        self.result
    }
}
