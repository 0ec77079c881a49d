//! The `/status` document: this node, the members, every VIP group with its
//! designated owner and actual holder, the quorum, configuration drift, recent events
//! and failovers.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::core::config::QuorumMode;
use crate::core::engine::{Engine, Life, Status};
use crate::core::membership::Liveness;
use crate::core::time::Instant;
use crate::core::wire::ConfigDigests;

/// Most events kept for `/status`.
pub const MAX_EVENTS: usize = 100;
/// Most failover times kept for `/status`.
pub const MAX_FAILOVERS: usize = 60;

/// Wall-clock seconds since the epoch (for display only; never for leases).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn digests_json(d: &ConfigDigests) -> Value {
    json!({
        "pool": format!("{:016x}", d.pool),
        "voters": format!("{:016x}", d.voters),
        "keys": format!("{:016x}", d.keys),
    })
}

/// Configuration drift among the live members (this node included): how many
/// distinct pools, and which members differ from this node in what.
fn drift_json(st: &Status) -> Value {
    let (pools, differ) = drift(st);
    json!({ "pool_digests": pools, "members": differ.iter().map(|(n, d)| json!({ "name": n, "differs": d })).collect::<Vec<_>>() })
}

/// (distinct pool digests among live members with known metadata, this node
/// included; the live members whose configuration differs from this node's, with
/// what differs).
pub fn drift(st: &Status) -> (usize, Vec<(String, Vec<&'static str>)>) {
    let mut pools = std::collections::BTreeSet::from([st.meta.config.pool]);
    let mut differ = Vec::new();
    for m in st.members.iter().filter(|m| m.state.is_active()) {
        if let Some(x) = &m.meta {
            pools.insert(x.config.pool);
            let d = x.config.differences(&st.meta.config);
            if !d.is_empty() {
                differ.push((m.id.name.clone(), d));
            }
        }
    }
    (pools.len(), differ)
}

/// Recent events and failovers, kept by the shell.
#[derive(Debug, Default)]
pub struct Journal {
    events: VecDeque<Value>,
    failovers: VecDeque<Value>,
}

impl Journal {
    /// Records an event.
    pub fn event(&mut self, kind: &str, vip: Option<String>, detail: String) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events
            .push_back(json!({ "t": unix_now(), "kind": kind, "vip": vip, "detail": detail }));
    }

    /// Records a failover (`kind` failover or handover) time.
    pub fn failover(&mut self, vip: String, kind: &str, seconds: f64) {
        if self.failovers.len() >= MAX_FAILOVERS {
            self.failovers.pop_front();
        }
        self.failovers
            .push_back(json!({ "t": unix_now(), "vip": vip, "kind": kind, "seconds": seconds }));
    }
}

fn state_str(s: Liveness) -> &'static str {
    match s {
        Liveness::Alive => "alive",
        Liveness::Suspect => "suspect",
        Liveness::Down => "down",
    }
}

/// Whether this node is ready: running, healthy, not draining, alone with its name
/// (no other agent runs under it), and able to reach a quorum of voters.
pub fn ready(engine: &Engine, healthy: bool, now: Instant) -> bool {
    let st = engine.status(now);
    let q = match engine.config().quorum {
        QuorumMode::Majority => engine.config().quorum_size(),
        QuorumMode::Off => 1,
    };
    st.life == Life::Running
        && healthy
        && !st.meta.draining
        && !engine.name_collision(now)
        && st.voters_heard >= q
}

/// Builds the document.
pub fn document(engine: &Engine, journal: &Journal, healthy: bool, now: Instant) -> Value {
    let st = engine.status(now);
    let cfg = engine.config();
    let vip_list = |groups: &[u16]| -> Vec<String> {
        groups
            .iter()
            .filter_map(|g| cfg.groups.get(usize::from(*g)))
            .map(|g| g.to_string())
            .collect()
    };
    let mut members = vec![json!({
        "name": st.name,
        "self": true,
        "state": "alive",
        "incarnation": Value::Null,
        "eligible": st.meta.eligible,
        "draining": st.meta.draining,
        "weight": st.meta.weight,
        "held": vip_list(&st.meta.held),
        "config": digests_json(&st.meta.config),
        "config_differs": Vec::<&str>::new(),
    })];
    for m in &st.members {
        members.push(json!({
            "name": m.id.name,
            "self": false,
            "addr": m.id.addr.to_string(),
            "epoch": m.id.epoch,
            "state": state_str(m.state),
            "incarnation": m.incarnation,
            "eligible": m.meta.as_ref().map(|x| x.eligible),
            "draining": m.meta.as_ref().map(|x| x.draining),
            "weight": m.meta.as_ref().map(|x| x.weight),
            // A member that is down answers nothing any more (its lease fences it).
            "held": m.meta.as_ref().filter(|_| m.state.is_active()).map(|x| engine.held_groups(x).iter().map(|g| g.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
            "config": m.meta.as_ref().map(|x| digests_json(&x.config)),
            "config_differs": m.meta.as_ref().map(|x| x.config.differences(&st.meta.config)),
        }));
    }
    members.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let groups: Vec<Value> = st
        .groups
        .iter()
        // A slot a reload retired holds no group.
        .filter(|g| !cfg.groups[usize::from(g.group)].vips.is_empty())
        .map(|g| {
            let mut holders: Vec<&str> = Vec::new();
            if st.meta.held.contains(&g.group) {
                holders.push(&st.name);
            }
            for m in &st.members {
                let mine = &cfg.groups[usize::from(g.group)];
                if m.state.is_active() && m.meta.as_ref().is_some_and(|x| engine.held_groups(x).contains(&mine)) {
                    holders.push(&m.id.name);
                }
            }
            json!({
                "vips": cfg.groups[usize::from(g.group)].vips.iter().map(|v| v.addr.to_string()).collect::<Vec<_>>(),
                "owner": g.owner,
                "holders": holders,
                "phase": g.phase,
                "phase_for_s": now.saturating_since(g.phase_since).as_secs_f64(),
            })
        })
        .collect();
    json!({
        "node": {
            "name": st.name,
            "life": format!("{:?}", st.life).to_lowercase(),
            "eligible": st.meta.eligible,
            "draining": st.meta.draining,
            "healthy": healthy,
            "name_collision": engine.name_collision(now),
            "ready": ready(engine, healthy, now),
            "cluster_id": format!("{:016x}", cfg.cluster_id()),
        },
        "quorum": {
            "mode": match cfg.quorum { QuorumMode::Majority => "majority", QuorumMode::Off => "off" },
            "voters": cfg.voters,
            "witnesses": cfg.witnesses,
            "q": cfg.quorum_size(),
            "voters_heard": st.voters_heard,
        },
        "members": members,
        "drift": drift_json(&st),
        "groups": groups,
        "events": journal.events.iter().rev().cloned().collect::<Vec<_>>(),
        "failovers": journal.failovers.iter().cloned().collect::<Vec<_>>(),
        "time": unix_now(),
    })
}
