//! The shell's operations state: metrics, the journal behind `/status`, hooks; and
//! what the shell does with engine events, commands, health and link changes.

use std::sync::atomic::Ordering;

use tracing::{debug, info, warn};

use super::arp::Announced;
use crate::clock;
use crate::core::config::GroupId;
use crate::core::engine::{Engine, Event};
use crate::ops::health::Report as HealthReport;
use crate::ops::hooks::{HookEvent, HookKind, Hooks};
use crate::ops::http::Cmd;
use crate::ops::metrics::{Metrics, ShellCounters};
use crate::ops::status::{self, Journal};

/// The shell's operations state: metrics, the journal behind `/status`, hooks.
pub(super) struct OpsState {
    pub metrics: Metrics,
    pub shell: ShellCounters,
    pub journal: Journal,
    pub hooks: Hooks,
    pub announced: Announced,
    /// The `config` section of `/status`: the file and the last reload.
    pub config: serde_json::Value,
    /// What the current round of the loop acquired and released (`--on-round`).
    pub round: crate::ops::hooks::RoundEvent,
}

impl OpsState {
    fn vips(engine: &Engine, g: GroupId) -> Vec<String> {
        engine
            .group(g)
            .vips
            .iter()
            .map(|v| v.addr.to_string())
            .collect()
    }

    fn hook(&mut self, engine: &Engine, kind: HookKind, group: GroupId, reason: String) {
        let vips = Self::vips(engine, group);
        match kind {
            HookKind::Acquire => self.round.acquired.push(vips.join(",")),
            HookKind::Release => self.round.released.push(vips.join(",")),
            _ => {}
        }
        self.hooks.fire(HookEvent {
            kind,
            group,
            vips,
            reason,
        });
    }

    /// One acquisition: its kind (assigned, rebound, handover, failover) from the
    /// previous owner's state, in the log, the journal, the metrics and the hooks.
    fn acquired(
        &mut self,
        engine: &Engine,
        g: GroupId,
        took: std::time::Duration,
        since_assigned: std::time::Duration,
        from: Option<&str>,
    ) {
        let name = engine.group(g).to_string();
        let from_active = from.is_some_and(|f| {
            engine
                .membership()
                .members()
                .iter()
                .any(|m| m.id.name == f && m.state.is_active())
        });
        let kind = match from {
            None => "assigned",
            Some(f) if f == engine.name() => "rebound",
            Some(_) if from_active => "handover",
            Some(_) => "failover",
        };
        info!(
            vip = %name,
            from = from.unwrap_or("-"),
            to = engine.name(),
            reason = kind,
            took_ms = took.as_millis() as u64,
            since_assigned_ms = since_assigned.as_millis() as u64,
            "acquired"
        );
        if kind == "failover" || kind == "handover" {
            let secs = since_assigned.as_secs_f64();
            self.metrics.failover(kind, secs);
            self.journal.failover(name.clone(), kind, secs);
        }
        self.journal.event(
            "acquired",
            Some(name),
            format!(
                "{} → {} ({kind}, {} ms)",
                from.unwrap_or("-"),
                engine.name(),
                since_assigned.as_millis()
            ),
        );
        self.hook(engine, HookKind::Acquire, g, kind.to_string());
    }

    /// The end of a round of the agent's loop: one `--on-round` run if it acquired
    /// or released anything.
    pub fn end_round(&mut self, engine: &Engine) {
        if self.round.is_empty() {
            return;
        }
        let mut ev = std::mem::take(&mut self.round);
        ev.held = engine
            .bound_groups()
            .map(|g| Self::vips(engine, g).join(","))
            .collect();
        self.hooks.fire_round(ev);
    }

    /// Logs an engine event (one line per ownership change), records it for
    /// `/status` and the metrics, and fires hooks.
    pub fn on_event(&mut self, engine: &Engine, e: &Event) {
        let name = |g: &GroupId| engine.group(*g).to_string();
        match e {
            Event::Acquired {
                group,
                took,
                since_assigned,
                from,
            } => self.acquired(engine, *group, *took, *since_assigned, from.as_deref()),
            Event::Released { group: g, reason } => {
                let to = engine.owner(*g).unwrap_or("-").to_string();
                info!(vip = %name(g), from = engine.name(), to = %to, reason = reason.label(), "released");
                self.journal.event(
                    "released",
                    Some(name(g)),
                    format!("{} → {to} ({})", engine.name(), reason.label()),
                );
                self.hook(engine, HookKind::Release, *g, reason.label().to_string());
            }
            Event::Fenced { group: g, reason } => {
                warn!(vip = %name(g), from = engine.name(), reason = reason.label(), "fenced: stopped answering");
                self.journal.event(
                    "fenced",
                    Some(name(g)),
                    format!("{} stopped answering ({})", engine.name(), reason.label()),
                );
                self.hook(
                    engine,
                    HookKind::Release,
                    *g,
                    format!("fenced:{}", reason.label()),
                );
            }
            Event::Rearmed {
                group: g,
                unrefreshed,
            } => {
                let ms = unrefreshed.as_millis();
                warn!(vip = %name(g), unrefreshed_ms = ms as u64, "gate entry lapsed (the agent was held up longer than E − F): re-armed under the lease");
                self.journal.event(
                    "rearmed",
                    Some(name(g)),
                    format!(
                        "{} re-armed its gate entry after {ms} ms without a refresh",
                        engine.name()
                    ),
                );
            }
            Event::Conflict { group: g } => {
                warn!(vip = %name(g), "probe conflict: someone else answers; not binding");
                self.journal.event(
                    "conflict",
                    Some(name(g)),
                    "a probe found another holder; not binding".into(),
                );
                self.hook(engine, HookKind::Conflict, *g, "probe".into());
            }
            Event::Withdrew { group: g } => {
                debug!(vip = %name(g), "claim withdrawn (contention)")
            }
            Event::Started { .. } => {
                info!(
                    node = engine.name(),
                    "started; stale VIPs and gate entries removed"
                );
                self.journal
                    .event("started", None, format!("{} started", engine.name()));
            }
            Event::ViewChanged { members } => {
                info!(members, "membership changed");
                self.journal
                    .event("view", None, format!("{members} members active"));
            }
            Event::Left => {
                info!(node = engine.name(), "left the cluster");
                self.journal
                    .event("left", None, format!("{} left", engine.name()));
            }
            Event::Warning(w) => {
                warn!("{w}");
                self.journal.event("warning", None, w.to_string());
            }
        }
    }

    pub fn sync(&mut self, engine: &Engine, now: crate::core::time::Instant) {
        self.shell.garp = self.announced[0].load(Ordering::Relaxed);
        self.shell.na = self.announced[1].load(Ordering::Relaxed);
        self.shell.notified = self.announced[2].load(Ordering::Relaxed);
        self.shell.told_neighbours = self.announced[3].load(Ordering::Relaxed);
        let ready = status::ready(engine, self.healthy(), now);
        self.metrics.sync(engine, &self.shell, ready, now);
    }

    pub fn command(&mut self, engine: &mut Engine, cmd: Cmd) {
        let now = clock::now();
        match cmd {
            Cmd::Status(tx) => {
                let mut doc = status::document(engine, &self.journal, self.healthy(), now);
                doc["config"] = self.config.clone();
                let ready = status::ready(engine, self.healthy(), now);
                let _ = tx.send((doc.to_string(), ready));
            }
            Cmd::Sync(tx) => {
                self.sync(engine, now);
                let _ = tx.send(());
            }
            Cmd::Drain(on, tx) => {
                if on != engine.status(now).meta.draining {
                    if on {
                        info!(node = engine.name(), "draining: moving VIPs away");
                    } else {
                        info!(node = engine.name(), "undrained: may take VIPs again");
                    }
                    self.journal.event(
                        if on { "drain" } else { "undrain" },
                        None,
                        format!(
                            "{} {}",
                            engine.name(),
                            if on { "drained" } else { "undrained" }
                        ),
                    );
                }
                engine.set_draining(on, now);
                let held: Vec<String> = engine
                    .bound_groups()
                    .map(|g| engine.group(g).to_string())
                    .collect();
                let _ = tx.send(
                    serde_json::json!({ "node": engine.name(), "draining": on, "held": held })
                        .to_string(),
                );
            }
            Cmd::Reload(tx) => Self::refuse_reload(tx),
        }
    }

    /// The shell answers reloads itself; this is only reached without a shell.
    fn refuse_reload(tx: tokio::sync::oneshot::Sender<(bool, String)>) {
        let _ = tx.send((
            false,
            r#"{"result":"refused","reason":"no reload here"}"#.into(),
        ));
    }

    /// Records a reload's result (log, journal, metrics, `/status`) and returns
    /// whether it was accepted, with the JSON answer for `POST /reload`.
    pub fn reloaded(
        &mut self,
        engine: &Engine,
        via: &str,
        file: Option<std::path::PathBuf>,
        result: Result<Vec<String>, String>,
    ) -> (bool, String) {
        let at = crate::ops::status::unix_now();
        let file = file.map(|p| p.display().to_string());
        let (i, answer) = match &result {
            Ok(changes) if changes.is_empty() => {
                info!(via, "reload: nothing changed");
                (
                    1,
                    serde_json::json!({ "result": "unchanged", "changes": changes }),
                )
            }
            Ok(changes) => {
                info!(via, changes = %changes.join("; "), "reload applied");
                self.journal
                    .event("reload", None, format!("applied: {}", changes.join("; ")));
                (
                    0,
                    serde_json::json!({ "result": "applied", "changes": changes }),
                )
            }
            Err(why) => {
                warn!(via, reason = %why, "reload refused");
                self.journal
                    .event("reload", None, format!("refused: {why}"));
                (2, serde_json::json!({ "result": "refused", "reason": why }))
            }
        };
        self.shell.reloads[i] += 1;
        let mut answer = answer;
        answer["node"] = engine.name().into();
        self.config = serde_json::json!({
            "file": file,
            "reloads": {
                "applied": self.shell.reloads[0],
                "unchanged": self.shell.reloads[1],
                "refused": self.shell.reloads[2],
            },
            "last_reload": {
                "at": at,
                "via": via,
                "result": answer["result"],
                "changes": answer.get("changes"),
                "reason": answer.get("reason"),
            },
        });
        (result.is_ok(), answer.to_string())
    }

    pub fn health(&mut self, engine: &mut Engine, r: HealthReport) {
        match r {
            HealthReport::Run(check, result) => {
                *self
                    .shell
                    .checks
                    .entry((check.clone(), result))
                    .or_default() += 1;
                if result != "ok" {
                    debug!(check, result, "health check failed");
                }
            }
            HealthReport::Healthy(h) => {
                self.shell.healthy = h;
                if h {
                    info!(node = engine.name(), "healthy again: eligible for VIPs");
                } else {
                    warn!(node = engine.name(), "unhealthy: moving VIPs away");
                }
                self.journal.event(
                    "health",
                    None,
                    format!(
                        "{} {}",
                        engine.name(),
                        if h { "healthy" } else { "unhealthy" }
                    ),
                );
                engine.set_healthy(h, clock::now());
            }
        }
    }

    /// An interface came, went, or changed state. The shell tells the engine which
    /// groups it cannot hold meanwhile (those with an address on it); here it is
    /// logged and journaled.
    pub fn link(&mut self, engine: &Engine, ifname: &str, up: bool, what: &str) {
        if up {
            info!(
                node = engine.name(),
                interface = ifname,
                "interface {what}: its VIPs may be held here again"
            );
        } else {
            warn!(
                node = engine.name(),
                interface = ifname,
                "interface {what}: moving the VIPs that live on it away"
            );
        }
        self.journal.event(
            "link",
            None,
            format!("{}: interface {ifname} {what}", engine.name()),
        );
    }

    /// Health as `/readyz`, `/status` and the metrics report it: the checks and
    /// the interface.
    pub fn healthy(&self) -> bool {
        self.shell.healthy && self.shell.link_up
    }
}
