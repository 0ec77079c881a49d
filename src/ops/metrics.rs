//! Prometheus metrics. Names follow Prometheus conventions (`_total` for counters,
//! `_seconds` for durations). The agent syncs them from the engine's counters and
//! view after each batch of work, on a private recorder (no global state), and
//! renders them for `/metrics`.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `wackamole_members{state}` | gauge | members by SWIM state (this node included as alive) |
//! | `wackamole_incarnation_bumps_total` | counter | members' incarnation increases seen |
//! | `wackamole_suspicions_total` / `wackamole_refutations_total` | counter | alive→suspect, suspect→alive seen |
//! | `wackamole_rejoins_total` | counter | this node renewed its identity after being declared down |
//! | `wackamole_heartbeat_suspicions_total{outcome}` | counter | holders this node suspected because their claims stopped (docs/safety.md §4.16): `raised`, and `down` when the suspicion ran out unrefuted |
//! | `wackamole_view_changes_total` | counter | assignment recomputations |
//! | `wackamole_vips_held` | gauge | addresses this node answers for |
//! | `wackamole_vip_owner{vip,node}` | gauge | 1 for the designated owner of each VIP in this node's view |
//! | `wackamole_acquisitions_total` | counter | groups bound |
//! | `wackamole_releases_total{reason}` | counter | groups released on purpose |
//! | `wackamole_quiescence_waits_total` | counter | quiescence windows (re)started |
//! | `wackamole_fence_events_total{cause}` | counter | groups unbound because the lease or the kernel said so |
//! | `wackamole_lease_refreshes_total` / `wackamole_lease_refresh_failures_total` | counter | gate/address refreshes |
//! | `wackamole_claims_total` | counter | claims sent |
//! | `wackamole_answers_total{way}` | counter | answers to renewals held for this node's next claim: `rode` on it, or went `alone` when none came within L |
//! | `wackamole_probe_conflicts_total` | counter | ARP/NS probes that found another holder |
//! | `wackamole_announcements_total{kind}` | counter | frames sent: gratuitous ARP (`garp`), unsolicited NA (`na`), directed replies to `--notify` targets (`notify`), unicast replies / NAs to known neighbours (`neighbour`) |
//! | `wackamole_datagrams_total{direction}` / `wackamole_bytes_total{direction}` | counter | traffic |
//! | `wackamole_datagram_drops_total{cause}` | counter | dropped datagrams (auth, replay, malformed, …) |
//! | `wackamole_failover_seconds{kind}` | histogram | from this node's view naming it a group's owner to answering it; `kind` is `failover` (previous owner gone) or `handover` (previous owner released it) |
//! | `wackamole_quorum_voters_heard` | gauge | voters that answered within a lease period |
//! | `wackamole_ready` / `wackamole_healthy` / `wackamole_draining` | gauge | state of this node |
//! | `wackamole_health_checks_total{check,result}` | counter | health-check runs |
//! | `wackamole_hook_runs_total{hook,result}` | counter | hook runs (`ok`, `failed`, `timeout`) |
//! | `wackamole_kernel_failures_total` | counter | kernel operations that failed (each retried on a timer) |
//! | `wackamole_gate_rearms_total` | counter | held VIP groups whose gate entry expired during a stall and were re-armed under their lease (docs/safety.md §4.15) |
//! | `wackamole_gate_reinstalls_total` | counter | times the gate's tables were found gone (a firewall reload) and re-created |
//! | `wackamole_link_changes_total` | counter | times the interface was found gone or with a new index |
//! | `wackamole_link_up` | gauge | 1 while the interface exists and is up |
//! | `wackamole_name_collision` | gauge | 1 while another agent runs with this node's name (this one then holds, claims and votes nothing) |
//! | `wackamole_name_collisions_total` | counter | times another agent with this node's name was found |

use std::collections::BTreeMap;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
    with_local_recorder,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::core::engine::Engine;
use crate::core::membership::Liveness;
use crate::core::ownership::Phase;
use crate::core::time::Instant;

/// Buckets of the failover histogram, seconds.
pub const FAILOVER_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];

/// Every metric name the agent exports (the Grafana test checks against this).
pub const NAMES: &[&str] = &[
    "wackamole_members",
    "wackamole_incarnation_bumps_total",
    "wackamole_suspicions_total",
    "wackamole_refutations_total",
    "wackamole_rejoins_total",
    "wackamole_heartbeat_suspicions_total",
    "wackamole_view_changes_total",
    "wackamole_vips_held",
    "wackamole_vip_owner",
    "wackamole_acquisitions_total",
    "wackamole_releases_total",
    "wackamole_quiescence_waits_total",
    "wackamole_fence_events_total",
    "wackamole_lease_refreshes_total",
    "wackamole_lease_refresh_failures_total",
    "wackamole_claims_total",
    "wackamole_answers_total",
    "wackamole_probe_conflicts_total",
    "wackamole_announcements_total",
    "wackamole_datagrams_total",
    "wackamole_bytes_total",
    "wackamole_datagram_drops_total",
    "wackamole_failover_seconds",
    "wackamole_quorum_voters_heard",
    "wackamole_ready",
    "wackamole_healthy",
    "wackamole_draining",
    "wackamole_health_checks_total",
    "wackamole_hook_runs_total",
    "wackamole_kernel_failures_total",
    "wackamole_gate_reinstalls_total",
    "wackamole_gate_rearms_total",
    "wackamole_link_changes_total",
    "wackamole_link_up",
    "wackamole_name_collision",
    "wackamole_name_collisions_total",
    "wackamole_config_reloads_total",
    "wackamole_config_pool_digests",
    "wackamole_config_drift_members",
];

/// Counters the shell keeps (the engine keeps the rest).
#[derive(Clone, Debug, Default)]
pub struct ShellCounters {
    /// Envelope drops by cause.
    pub drops: BTreeMap<&'static str, u64>,
    /// Gratuitous ARP frames sent.
    pub garp: u64,
    /// Unsolicited NA frames sent.
    pub na: u64,
    /// Directed ARP replies sent to `--notify` targets.
    pub notified: u64,
    /// Unicast ARP replies / NAs sent to known neighbours (`--notify-neighbours`).
    pub told_neighbours: u64,
    /// Neighbours known on the VIP interfaces at the last share.
    pub neighbours_known: u64,
    /// Health checks: (check, result) → runs.
    pub checks: BTreeMap<(String, &'static str), u64>,
    /// Hooks: (hook, result) → runs.
    pub hooks: BTreeMap<(&'static str, &'static str), u64>,
    /// Health as the checks see it.
    pub healthy: bool,
    /// The interface exists and is up.
    pub link_up: bool,
    /// Times the gate's tables were found gone (a firewall reload) and re-created.
    pub gate_reinstalls: u64,
    /// Times the interface was found gone or with a new index.
    pub link_changes: u64,
    /// Datagrams received but dropped before the engine (envelope).
    pub datagrams_in: u64,
    /// Bytes received before the envelope.
    pub bytes_in: u64,
    /// Configuration reloads by result: applied, unchanged, refused.
    pub reloads: [u64; 3],
}

/// The labels of [`ShellCounters::reloads`], in order.
pub const RELOAD_RESULTS: [&str; 3] = ["applied", "unchanged", "refused"];

/// What the metrics remember between syncs to count transitions in the view.
#[derive(Debug, Default)]
struct Seen {
    members: BTreeMap<String, (Liveness, u16)>,
    suspicions: u64,
    refutations: u64,
    bumps: u64,
    owners: BTreeMap<String, String>,
}

/// The metrics of one agent.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    seen: Seen,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A private recorder with the failover histogram's buckets.
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("wackamole_failover_seconds".into()),
                FAILOVER_BUCKETS,
            )
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        let m = Metrics {
            recorder,
            handle,
            seen: Seen::default(),
        };
        m.describe();
        m
    }

    fn describe(&self) {
        with_local_recorder(&self.recorder, || {
            describe_gauge!(
                "wackamole_members",
                "Cluster members by SWIM state, as this node sees them"
            );
            describe_counter!(
                "wackamole_incarnation_bumps_total",
                "Increases of members' SWIM incarnations seen"
            );
            describe_counter!(
                "wackamole_suspicions_total",
                "Members seen going from alive to suspect"
            );
            describe_counter!(
                "wackamole_refutations_total",
                "Members seen going from suspect back to alive"
            );
            describe_counter!(
                "wackamole_rejoins_total",
                "Identity renewals of this node after being declared down"
            );
            describe_counter!(
                "wackamole_heartbeat_suspicions_total",
                "Holders suspected because their claims stopped (raised), and declared down when unrefuted (down)"
            );
            describe_counter!("wackamole_view_changes_total", "Assignment recomputations");
            describe_gauge!("wackamole_vips_held", "Addresses this node answers for");
            describe_gauge!(
                "wackamole_vip_owner",
                "1 for the designated owner of each VIP in this node's view"
            );
            describe_counter!(
                "wackamole_acquisitions_total",
                "VIP groups bound by this node"
            );
            describe_counter!(
                "wackamole_releases_total",
                "VIP groups released on purpose, by reason"
            );
            describe_counter!(
                "wackamole_quiescence_waits_total",
                "Quiescence windows started or restarted"
            );
            describe_counter!(
                "wackamole_fence_events_total",
                "VIP groups unbound because the lease or the kernel said so, by cause"
            );
            describe_counter!(
                "wackamole_lease_refreshes_total",
                "Gate or address refreshes issued"
            );
            describe_counter!(
                "wackamole_lease_refresh_failures_total",
                "Refreshes that lapsed or failed"
            );
            describe_counter!("wackamole_claims_total", "Lease claims sent");
            describe_counter!(
                "wackamole_answers_total",
                "Answers to renewals held for the next claim: rode on it, or went alone"
            );
            describe_counter!(
                "wackamole_probe_conflicts_total",
                "ARP/NS probes that found the VIP answered elsewhere"
            );
            describe_counter!(
                "wackamole_announcements_total",
                "Gratuitous ARP and unsolicited NA frames sent"
            );
            describe_counter!("wackamole_datagrams_total", "Datagrams by direction");
            describe_counter!(
                "wackamole_bytes_total",
                Unit::Bytes,
                "Datagram bytes by direction"
            );
            describe_counter!(
                "wackamole_datagram_drops_total",
                "Datagrams dropped, by cause"
            );
            describe_histogram!(
                "wackamole_failover_seconds",
                Unit::Seconds,
                "From this node's view naming it a group's owner to answering the group"
            );
            describe_gauge!(
                "wackamole_quorum_voters_heard",
                "Voters that answered within a lease period"
            );
            describe_gauge!(
                "wackamole_ready",
                "1 when joined, started and not fenced by its own health"
            );
            describe_gauge!("wackamole_healthy", "1 when the health checks pass");
            describe_gauge!("wackamole_draining", "1 while drained by an operator");
            describe_counter!(
                "wackamole_health_checks_total",
                "Health-check runs by check and result"
            );
            describe_counter!("wackamole_hook_runs_total", "Hook runs by hook and result");
            describe_gauge!(
                "wackamole_config_pool_digests",
                "Distinct VIP pools among the live members (this node included): 1 when every node runs the same pool"
            );
            describe_gauge!(
                "wackamole_config_drift_members",
                "Live members whose pool, voters or keyring differ from this node's"
            );
            describe_counter!(
                "wackamole_config_reloads_total",
                "Configuration reloads (SIGHUP, wackamole reload, POST /reload) by result"
            );
            describe_counter!(
                "wackamole_kernel_failures_total",
                "Kernel operations that failed (each retried on a timer)"
            );
            describe_counter!(
                "wackamole_gate_rearms_total",
                "Held VIP groups whose gate entry expired during a stall and were re-armed under their lease"
            );
            describe_counter!(
                "wackamole_gate_reinstalls_total",
                "Times the gate's nftables tables were found gone and re-created"
            );
            describe_counter!(
                "wackamole_link_changes_total",
                "Times the interface was found gone or with a new index"
            );
            describe_gauge!(
                "wackamole_link_up",
                "1 while the VIP interface exists and is up"
            );
            describe_gauge!(
                "wackamole_name_collision",
                "1 while another agent runs with this node's name"
            );
            describe_counter!(
                "wackamole_name_collisions_total",
                "Times another agent with this node's name was found"
            );
        });
    }

    /// Records one failover time; `kind` is `failover` (the previous owner is gone)
    /// or `handover` (it released the group).
    pub fn failover(&self, kind: &'static str, seconds: f64) {
        with_local_recorder(&self.recorder, || {
            histogram!("wackamole_failover_seconds", "kind" => kind).record(seconds)
        });
    }

    /// Brings every metric up to date.
    pub fn sync(&mut self, engine: &Engine, shell: &ShellCounters, ready: bool, now: Instant) {
        let st = engine.stats();
        let ms = engine.membership_stats();
        let status = engine.status(now);
        let cfg = engine.config();
        // Transitions in the view.
        for m in &status.members {
            let prev = self
                .seen
                .members
                .insert(m.id.name.clone(), (m.state, m.incarnation));
            if let Some((state, inc)) = prev {
                if state == Liveness::Alive && m.state == Liveness::Suspect {
                    self.seen.suspicions += 1;
                }
                if state == Liveness::Suspect && m.state == Liveness::Alive {
                    self.seen.refutations += 1;
                }
                if m.incarnation > inc {
                    self.seen.bumps += u64::from(m.incarnation - inc);
                }
            }
        }
        let recorder = &self.recorder;
        let seen = &mut self.seen;
        with_local_recorder(recorder, || {
            let mut by_state: BTreeMap<&str, f64> =
                [("alive", 1.0), ("suspect", 0.0), ("down", 0.0)]
                    .into_iter()
                    .collect();
            for m in &status.members {
                let k = match m.state {
                    Liveness::Alive => "alive",
                    Liveness::Suspect => "suspect",
                    Liveness::Down => "down",
                };
                *by_state.entry(k).or_default() += 1.0;
            }
            for (k, v) in by_state {
                gauge!("wackamole_members", "state" => k).set(v);
            }
            counter!("wackamole_incarnation_bumps_total").absolute(seen.bumps);
            counter!("wackamole_suspicions_total").absolute(seen.suspicions);
            counter!("wackamole_refutations_total").absolute(seen.refutations);
            counter!("wackamole_rejoins_total").absolute(ms.rejoins);
            counter!("wackamole_heartbeat_suspicions_total", "outcome" => "raised")
                .absolute(ms.heartbeat_suspicions);
            counter!("wackamole_heartbeat_suspicions_total", "outcome" => "down")
                .absolute(ms.heartbeat_downs);
            counter!("wackamole_view_changes_total").absolute(st.view_changes);
            let held: usize = engine
                .bound_groups()
                .filter(|g| matches!(engine.phase(*g), Phase::Held { .. }))
                .map(|g| cfg.groups[usize::from(g)].vips.len())
                .sum();
            gauge!("wackamole_vips_held").set(held as f64);
            for (gi, g) in cfg.groups.iter().enumerate() {
                let owner = engine.owner(gi as u16).unwrap_or("").to_string();
                for v in &g.vips {
                    let vip = v.addr.to_string();
                    match seen.owners.get(&vip) {
                        Some(old) if *old == owner => continue,
                        Some(old) => gauge!("wackamole_vip_owner", "vip" => vip.clone(), "node" => old.clone()).set(0.0),
                        None => {}
                    }
                    if !owner.is_empty() {
                        gauge!("wackamole_vip_owner", "vip" => vip.clone(), "node" => owner.clone()).set(1.0);
                    }
                    seen.owners.insert(vip, owner.clone());
                }
            }
            // VIPs a reload removed from this node's pool: no owner here any more.
            let current: std::collections::BTreeSet<String> = cfg
                .groups
                .iter()
                .flat_map(|g| g.vips.iter().map(|v| v.addr.to_string()))
                .collect();
            seen.owners.retain(|vip, owner| {
                if current.contains(vip) {
                    return true;
                }
                if !owner.is_empty() {
                    gauge!("wackamole_vip_owner", "vip" => vip.clone(), "node" => owner.clone())
                        .set(0.0);
                }
                false
            });
            counter!("wackamole_acquisitions_total").absolute(st.acquisitions);
            for r in ["moved", "drain", "leave", "ineligible", "removed"] {
                counter!("wackamole_releases_total", "reason" => r)
                    .absolute(st.releases.get(r).copied().unwrap_or(0));
            }
            counter!("wackamole_quiescence_waits_total").absolute(st.quiescence_waits);
            for c in [
                "lease_lapsed",
                "kernel_lapsed",
                "kernel_error",
                "clock_jump",
            ] {
                counter!("wackamole_fence_events_total", "cause" => c)
                    .absolute(st.fences.get(c).copied().unwrap_or(0));
            }
            counter!("wackamole_lease_refreshes_total").absolute(st.refreshes);
            counter!("wackamole_lease_refresh_failures_total").absolute(st.refresh_failures);
            counter!("wackamole_claims_total").absolute(st.claims_sent);
            counter!("wackamole_answers_total", "way" => "rode").absolute(st.answers_rode);
            counter!("wackamole_answers_total", "way" => "alone").absolute(st.answers_alone);
            counter!("wackamole_probe_conflicts_total").absolute(st.conflicts);
            counter!("wackamole_announcements_total", "kind" => "garp").absolute(shell.garp);
            counter!("wackamole_announcements_total", "kind" => "na").absolute(shell.na);
            counter!("wackamole_announcements_total", "kind" => "notify").absolute(shell.notified);
            counter!("wackamole_announcements_total", "kind" => "neighbour")
                .absolute(shell.told_neighbours);
            counter!("wackamole_datagrams_total", "direction" => "in").absolute(shell.datagrams_in);
            counter!("wackamole_datagrams_total", "direction" => "out").absolute(st.datagrams_out);
            counter!("wackamole_bytes_total", "direction" => "in").absolute(shell.bytes_in);
            counter!("wackamole_bytes_total", "direction" => "out").absolute(st.bytes_out);
            let mut drops: BTreeMap<&str, u64> = shell.drops.clone();
            for (k, v) in &st.drops {
                *drops.entry(k).or_default() += v;
            }
            for cause in [
                "auth",
                "replay",
                "malformed",
                "oversize",
                "truncated",
                "unknown_key",
                "version",
                "cluster_mismatch",
            ] {
                drops.entry(cause).or_default();
            }
            for (k, v) in drops {
                counter!("wackamole_datagram_drops_total", "cause" => k).absolute(v);
            }
            gauge!("wackamole_quorum_voters_heard").set(status.voters_heard as f64);
            gauge!("wackamole_ready").set(if ready { 1.0 } else { 0.0 });
            gauge!("wackamole_healthy").set(if shell.healthy { 1.0 } else { 0.0 });
            gauge!("wackamole_draining").set(if status.meta.draining { 1.0 } else { 0.0 });
            counter!("wackamole_kernel_failures_total").absolute(st.kernel_failures);
            counter!("wackamole_gate_reinstalls_total").absolute(shell.gate_reinstalls);
            counter!("wackamole_gate_rearms_total").absolute(st.rearms);
            counter!("wackamole_link_changes_total").absolute(shell.link_changes);
            gauge!("wackamole_link_up").set(if shell.link_up { 1.0 } else { 0.0 });
            let (pools, differ) = crate::ops::status::drift(&status);
            gauge!("wackamole_config_pool_digests").set(pools as f64);
            gauge!("wackamole_config_drift_members").set(differ.len() as f64);
            gauge!("wackamole_name_collision").set(if engine.name_collision(now) {
                1.0
            } else {
                0.0
            });
            counter!("wackamole_name_collisions_total").absolute(st.name_collisions);
            for ((check, result), v) in &shell.checks {
                counter!("wackamole_health_checks_total", "check" => check.clone(), "result" => *result).absolute(*v);
            }
            for ((hook, result), v) in &shell.hooks {
                counter!("wackamole_hook_runs_total", "hook" => *hook, "result" => *result)
                    .absolute(*v);
            }
            for (result, v) in RELOAD_RESULTS.iter().zip(shell.reloads) {
                counter!("wackamole_config_reloads_total", "result" => *result).absolute(v);
            }
            // Series that exist before their first event.
            let _ = histogram!("wackamole_failover_seconds", "kind" => "failover");
            let _ = histogram!("wackamole_failover_seconds", "kind" => "handover");
            if shell.checks.is_empty() {
                counter!("wackamole_health_checks_total", "check" => "none", "result" => "ok")
                    .absolute(0);
            }
            if shell.hooks.is_empty() {
                counter!("wackamole_hook_runs_total", "hook" => "none", "result" => "ok")
                    .absolute(0);
            }
        });
    }

    /// A handle that renders the exposition (for the HTTP listener).
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram buffers; call every few seconds.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}
