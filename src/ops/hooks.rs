//! Hooks: `--on-acquire CMD`, `--on-release CMD`, `--on-conflict CMD`, and
//! `--on-round CMD`.
//!
//! Each runs with `sh -c` and these variables: `WACKAMOLE_EVENT` (`acquire`,
//! `release`, `conflict`), `WACKAMOLE_VIP` (the group's first address),
//! `WACKAMOLE_GROUP` (all its addresses, comma-separated), `WACKAMOLE_REASON`,
//! `WACKAMOLE_INTERFACE` (the group's interfaces) and `WACKAMOLE_NODE`. Hooks run asynchronously — a slow hook
//! never delays the agent — and serialized per VIP group, in event order; each is
//! killed after the timeout — the whole process group ([`crate::ops::proc`]). Exit
//! codes are logged and counted.
//!
//! `--on-round` (the original Wackamole's `RunDynamic … post up|post down`) runs
//! once after a round of the agent's loop in which this node acquired or released
//! anything, with all of them: `WACKAMOLE_EVENT=round`, `WACKAMOLE_ACQUIRED` and
//! `WACKAMOLE_RELEASED` (groups separated by spaces, a group's addresses by commas),
//! `WACKAMOLE_HELD` (every group held after the round), `WACKAMOLE_INTERFACE`,
//! `WACKAMOLE_NODE` — one `nginx -s reload` instead of one per VIP. Round runs are
//! serialized on their own queue; rounds that end while one runs are merged into
//! the next run (a group acquired and then released in between is listed in both,
//! in that order's lists; `WACKAMOLE_HELD` is the latest).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::core::config::GroupId;
use crate::ops::proc::{self, Exit};

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookKind {
    /// After a group is bound.
    Acquire,
    /// After a group is released or fenced.
    Release,
    /// After a probe found the group answered elsewhere.
    Conflict,
    /// After a round in which groups were acquired or released.
    Round,
}

impl HookKind {
    /// `acquire`, `release`, `conflict`.
    pub fn label(self) -> &'static str {
        match self {
            HookKind::Acquire => "acquire",
            HookKind::Release => "release",
            HookKind::Conflict => "conflict",
            HookKind::Round => "round",
        }
    }
}

/// One hook run to do.
#[derive(Clone, Debug)]
pub struct HookEvent {
    /// Which.
    pub kind: HookKind,
    /// The group.
    pub group: GroupId,
    /// Its addresses.
    pub vips: Vec<String>,
    /// Why (release reason, fence cause, …).
    pub reason: String,
}

/// The configured hooks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookConfig {
    /// `--on-acquire`.
    pub acquire: Option<String>,
    /// `--on-release`.
    pub release: Option<String>,
    /// `--on-conflict`.
    pub conflict: Option<String>,
    /// `--on-round`.
    pub round: Option<String>,
    /// Longest a hook may run.
    pub timeout: Duration,
    /// The interfaces VIPs live on, comma-separated: `WACKAMOLE_INTERFACE` where a
    /// group's own cannot be told.
    pub interface: String,
    /// Which interface each VIP lives on: `WACKAMOLE_INTERFACE` of a group's hook
    /// names its own interfaces.
    pub homes: crate::core::links::Homes,
    /// This node's name, for the environment.
    pub node: String,
}

/// Dispatches hook runs to one sequential queue per group.
#[derive(Debug)]
pub struct Hooks {
    /// Shared with every queued run, so that a reload's new commands apply to the
    /// runs queued after it without breaking a group's order.
    cfg: Arc<HookConfig>,
    queues: BTreeMap<GroupId, mpsc::UnboundedSender<(Arc<HookConfig>, HookEvent)>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    results: mpsc::UnboundedSender<(&'static str, &'static str)>,
    /// The `--on-round` queue (started on first use).
    rounds: Option<mpsc::UnboundedSender<(Arc<HookConfig>, RoundEvent)>>,
}

/// One round's changes, for `--on-round` (addresses joined by commas per group).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundEvent {
    /// Groups acquired in the round.
    pub acquired: Vec<String>,
    /// Groups released (or fenced) in the round.
    pub released: Vec<String>,
    /// Every group held after the round.
    pub held: Vec<String>,
}

impl RoundEvent {
    /// Whether the round changed anything.
    pub fn is_empty(&self) -> bool {
        self.acquired.is_empty() && self.released.is_empty()
    }

    /// `later` after `self`: one run for both.
    fn merge(&mut self, later: RoundEvent) {
        for g in later.acquired {
            if !self.acquired.contains(&g) {
                self.acquired.push(g);
            }
        }
        for g in later.released {
            if !self.released.contains(&g) {
                self.released.push(g);
            }
        }
        self.held = later.held;
    }
}

impl Hooks {
    /// Hooks reporting (hook, result) to `results`.
    pub fn new(
        cfg: HookConfig,
        results: mpsc::UnboundedSender<(&'static str, &'static str)>,
    ) -> Hooks {
        Hooks {
            cfg: Arc::new(cfg),
            queues: BTreeMap::new(),
            tasks: Vec::new(),
            results,
            rounds: None,
        }
    }

    /// Queues an `--on-round` run for a round that changed something (no-op if the
    /// hook is not configured). Rounds that end while a run is under way are
    /// merged into the next run. Must be called inside the tokio runtime.
    pub fn fire_round(&mut self, ev: RoundEvent) {
        if self.cfg.round.is_none() || ev.is_empty() {
            return;
        }
        let tasks = &mut self.tasks;
        let results = self.results.clone();
        let tx = self.rounds.get_or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(Arc<HookConfig>, RoundEvent)>();
            tasks.push(tokio::spawn(async move {
                while let Some((mut cfg, mut ev)) = rx.recv().await {
                    while let Ok((c, later)) = rx.try_recv() {
                        cfg = c;
                        ev.merge(later);
                    }
                    let r = run_round(&cfg, &ev).await;
                    let _ = results.send((HookKind::Round.label(), r));
                }
            }));
            tx
        });
        let _ = tx.send((Arc::clone(&self.cfg), ev));
    }

    fn command(&self, kind: HookKind) -> Option<&String> {
        match kind {
            HookKind::Acquire => self.cfg.acquire.as_ref(),
            HookKind::Release => self.cfg.release.as_ref(),
            HookKind::Conflict => self.cfg.conflict.as_ref(),
            HookKind::Round => self.cfg.round.as_ref(),
        }
    }

    /// Queues a hook run (no-op if that hook is not configured). Must be called
    /// inside the tokio runtime.
    pub fn fire(&mut self, ev: HookEvent) {
        if self.command(ev.kind).is_none() {
            return;
        }
        let group = ev.group;
        let tasks = &mut self.tasks;
        let tx = self.queues.entry(group).or_insert_with(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<(Arc<HookConfig>, HookEvent)>();
            let results = self.results.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((cfg, ev)) = rx.recv().await {
                    let r = run(&cfg, &ev).await;
                    let _ = results.send((ev.kind.label(), r));
                }
            }));
            tx
        });
        let _ = tx.send((Arc::clone(&self.cfg), ev));
    }

    /// A reload's hook commands and timeout: for every run queued from now on (runs
    /// already queued keep the configuration they were queued with).
    pub fn set_config(&mut self, cfg: HookConfig) {
        self.cfg = Arc::new(cfg);
    }

    /// The configuration in use.
    pub fn config(&self) -> &HookConfig {
        &self.cfg
    }
}

impl Hooks {
    /// Lets queued hooks finish (at shutdown), for at most `bound`.
    pub async fn finish(mut self, bound: Duration) {
        self.queues.clear();
        self.rounds = None;
        let all = futures::future::join_all(std::mem::take(&mut self.tasks));
        if tokio::time::timeout(bound, all).await.is_err() {
            warn!(
                bound_ms = bound.as_millis() as u64,
                "hooks still running at exit were stopped"
            );
        }
    }
}

async fn run(cfg: &HookConfig, ev: &HookEvent) -> &'static str {
    let cmd = match ev.kind {
        HookKind::Acquire => cfg.acquire.as_ref(),
        HookKind::Release => cfg.release.as_ref(),
        HookKind::Conflict => cfg.conflict.as_ref(),
        HookKind::Round => cfg.round.as_ref(),
    };
    let Some(cmd) = cmd else { return "skipped" };
    let vip = ev.vips.first().cloned().unwrap_or_default();
    let group = ev.vips.join(",");
    let interface = group_interfaces(cfg, &ev.vips);
    let env = [
        ("WACKAMOLE_EVENT", ev.kind.label()),
        ("WACKAMOLE_VIP", vip.as_str()),
        ("WACKAMOLE_GROUP", group.as_str()),
        ("WACKAMOLE_REASON", ev.reason.as_str()),
        ("WACKAMOLE_INTERFACE", interface.as_str()),
        ("WACKAMOLE_NODE", cfg.node.as_str()),
    ];
    match proc::run(cmd, &env, cfg.timeout).await {
        Exit::Ok => {
            info!(hook = ev.kind.label(), vip = ?ev.vips, "hook ran");
            "ok"
        }
        Exit::Failed(code) => {
            warn!(hook = ev.kind.label(), vip = ?ev.vips, code = ?code, "hook failed");
            "failed"
        }
        Exit::NotStarted => {
            warn!(hook = ev.kind.label(), "hook could not start");
            "failed"
        }
        Exit::TimedOut => {
            warn!(hook = ev.kind.label(), vip = ?ev.vips, timeout_ms = cfg.timeout.as_millis() as u64, "hook timed out; its process group was killed");
            "timeout"
        }
    }
}

/// The interfaces of a group's addresses, in address order, each once
/// (`cfg.interface` when none is known).
fn group_interfaces(cfg: &HookConfig, vips: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for v in vips {
        if let Some(i) = v.parse().ok().and_then(|a| cfg.homes.iface(a))
            && !out.contains(&i)
        {
            out.push(i);
        }
    }
    if out.is_empty() {
        cfg.interface.clone()
    } else {
        out.join(",")
    }
}

async fn run_round(cfg: &HookConfig, ev: &RoundEvent) -> &'static str {
    let Some(cmd) = cfg.round.as_ref() else {
        return "skipped";
    };
    let (acquired, released, held) = (
        ev.acquired.join(" "),
        ev.released.join(" "),
        ev.held.join(" "),
    );
    let env = [
        ("WACKAMOLE_EVENT", "round"),
        ("WACKAMOLE_ACQUIRED", acquired.as_str()),
        ("WACKAMOLE_RELEASED", released.as_str()),
        ("WACKAMOLE_HELD", held.as_str()),
        ("WACKAMOLE_INTERFACE", cfg.interface.as_str()),
        ("WACKAMOLE_NODE", cfg.node.as_str()),
    ];
    match proc::run(cmd, &env, cfg.timeout).await {
        Exit::Ok => {
            info!(hook = "round", acquired = %acquired, released = %released, "hook ran");
            "ok"
        }
        Exit::Failed(code) => {
            warn!(hook = "round", code = ?code, "hook failed");
            "failed"
        }
        Exit::NotStarted => {
            warn!(hook = "round", "hook could not start");
            "failed"
        }
        Exit::TimedOut => {
            warn!(
                hook = "round",
                timeout_ms = cfg.timeout.as_millis() as u64,
                "hook timed out; its process group was killed"
            );
            "timeout"
        }
    }
}

#[cfg(test)]
mod round_tests {
    use super::*;

    #[test]
    fn rounds_merge_in_order_and_keep_the_latest_holdings() {
        let g = |s: &str| s.to_string();
        let mut a = RoundEvent {
            acquired: vec![g("10.0.0.1"), g("10.0.0.2,10.0.0.3")],
            released: vec![],
            held: vec![g("10.0.0.1"), g("10.0.0.2,10.0.0.3")],
        };
        a.merge(RoundEvent {
            acquired: vec![g("10.0.0.4")],
            released: vec![g("10.0.0.1")],
            held: vec![g("10.0.0.2,10.0.0.3"), g("10.0.0.4")],
        });
        assert_eq!(a.acquired, ["10.0.0.1", "10.0.0.2,10.0.0.3", "10.0.0.4"]);
        assert_eq!(a.released, ["10.0.0.1"]);
        assert_eq!(a.held, ["10.0.0.2,10.0.0.3", "10.0.0.4"]);
        assert!(!a.is_empty() && RoundEvent::default().is_empty());
    }
}
