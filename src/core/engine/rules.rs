//! The engine's effective rules, computed once at construction.

use std::time::Duration;

use super::Breaks;
use crate::core::assign;
use crate::core::config::{ClusterConfig, FenceKind};
use crate::core::hash::hash_str;
use crate::core::lease::deadline::FenceMargins;
use crate::core::round::Round;

/// The engine's effective rules: the configuration's derived quantities, computed
/// once, with the simulator's [`Breaks`] folded in at construction (no rule tests a
/// break at run time).
#[derive(Clone, Debug)]
pub(super) struct Rules {
    pub cluster_id: u64,
    pub name_hash: u64,
    /// Rendezvous hash of each group's key.
    pub group_hash: Vec<u64>,
    /// Q (zero under `--break quiescence`).
    pub quiescence: Duration,
    /// Whether Q restarts on the previous holder's incarnation (`--break incarnation`).
    pub incarnation_aware: bool,
    /// Q₂, the two-node absence (zero under `--break quiescence`).
    pub absent_after: Duration,
    /// W (zero under `--break restart-wait`).
    pub restart_wait: Duration,
    /// The grants that make a lease: 1 under `--break quorum-lease`, else `None`
    /// (then the majority of the node's current voter set, or in two-node mode
    /// [`Presence::quorum`](crate::core::presence::Presence::quorum), decides).
    pub lease_quorum: Option<usize>,
    /// `--break release-order`: drop a group from claims before its unbind is verified.
    pub release_before_verified: bool,
    /// Broken mode: promises keyed by group index, not by address.
    pub promise_per_group: bool,
    /// Broken mode: voter steps skip the settle rule.
    pub voter_settle_off: bool,
    /// Broken mode: leases ignore the sets grants name.
    pub voter_joint_off: bool,
    /// L, how long an answer to a renewal may wait for this node's next claim.
    pub answer_ride: Duration,
    /// Broken mode (`--break ride`): held answers wait 2T and never ride.
    pub ride_late: bool,
    /// Broken mode (`--break rearm`): a lapsed gate entry is re-armed without a
    /// lease check.
    pub rearm_unchecked: bool,
    /// Voters suspect holders whose claims stopped (§4.16; off with `--break heartbeat`).
    pub heartbeat: bool,

    /// W_c = 3R.
    pub contention_window: Duration,
    /// P.
    pub promise_hold: Duration,
    /// When claim rounds and fence refreshes happen (F: the gate's refresh period
    /// or the address refresh; `--break refresh` pushes it past E).
    pub round: Round,
    pub fence: FenceMargins,
}

impl Rules {
    pub fn new(cfg: &ClusterConfig, name: &str, breaks: Breaks) -> Rules {
        Rules {
            cluster_id: cfg.cluster_id(),
            name_hash: hash_str(name),
            group_hash: cfg
                .groups
                .iter()
                .map(|g| assign::group_hash(&g.key()))
                .collect(),
            quiescence: if breaks.quiescence {
                Duration::ZERO
            } else {
                cfg.timing.quiescence
            },
            absent_after: if breaks.quiescence {
                Duration::ZERO
            } else {
                cfg.absent_after()
            },
            incarnation_aware: !breaks.incarnation,
            restart_wait: if breaks.restart_wait {
                Duration::ZERO
            } else {
                cfg.restart_wait()
            },
            lease_quorum: breaks.quorum_lease.then_some(1),
            release_before_verified: breaks.release_order,
            promise_per_group: breaks.promise_per_group,
            voter_settle_off: breaks.voter_settle,
            voter_joint_off: breaks.voter_joint,
            answer_ride: if breaks.ride {
                cfg.timing.promise * 2
            } else {
                cfg.answer_ride()
            },
            ride_late: breaks.ride,
            rearm_unchecked: breaks.rearm,
            heartbeat: !breaks.heartbeat,

            contention_window: cfg.contention_window(),
            promise_hold: cfg.promise_hold(),
            round: match cfg.fence {
                FenceKind::Gate if breaks.refresh => Round::broken(
                    cfg.timing.gate_timeout + cfg.timing.gate_refresh / 2,
                    cfg.timing.claim_period,
                ),
                FenceKind::Gate => Round::new(cfg.timing.claim_period, cfg.timing.gate_refresh),
                FenceKind::Address => {
                    Round::new(cfg.timing.claim_period, cfg.timing.address_refresh)
                }
            },
            fence: FenceMargins {
                fence: cfg.fence,
                gate_margin: cfg.gate_margin(),
                gate_arm: cfg.timing.gate_arm,
            },
        }
    }
}
