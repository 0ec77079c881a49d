//! Hooks: `--on-acquire CMD`, `--on-release CMD`, `--on-conflict CMD`.
//!
//! Each runs with `sh -c` and these variables: `WACKAMOLE_EVENT` (`acquire`,
//! `release`, `conflict`), `WACKAMOLE_VIP` (the group's first address),
//! `WACKAMOLE_GROUP` (all its addresses, comma-separated), `WACKAMOLE_REASON`,
//! `WACKAMOLE_INTERFACE` and `WACKAMOLE_NODE`. Hooks run asynchronously — a slow hook
//! never delays the agent — and serialized per VIP group, in event order; each is
//! killed after the timeout — the whole process group ([`crate::ops::proc`]). Exit
//! codes are logged and counted.

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
}

impl HookKind {
    /// `acquire`, `release`, `conflict`.
    pub fn label(self) -> &'static str {
        match self {
            HookKind::Acquire => "acquire",
            HookKind::Release => "release",
            HookKind::Conflict => "conflict",
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
    /// Longest a hook may run.
    pub timeout: Duration,
    /// The interface, for the environment.
    pub interface: String,
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
        }
    }

    fn command(&self, kind: HookKind) -> Option<&String> {
        match kind {
            HookKind::Acquire => self.cfg.acquire.as_ref(),
            HookKind::Release => self.cfg.release.as_ref(),
            HookKind::Conflict => self.cfg.conflict.as_ref(),
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
    };
    let Some(cmd) = cmd else { return "skipped" };
    let vip = ev.vips.first().cloned().unwrap_or_default();
    let group = ev.vips.join(",");
    let env = [
        ("WACKAMOLE_EVENT", ev.kind.label()),
        ("WACKAMOLE_VIP", vip.as_str()),
        ("WACKAMOLE_GROUP", group.as_str()),
        ("WACKAMOLE_REASON", ev.reason.as_str()),
        ("WACKAMOLE_INTERFACE", cfg.interface.as_str()),
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
