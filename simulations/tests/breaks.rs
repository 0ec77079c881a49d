//! The checker can fail: with each safety mechanism switched off, a bounded search
//! over seeds finds a dual ownership. (And a clock running beyond ρ is caught too.)
//! `docs/safety.md` lists the one mechanism no break exposes and why.

use wackamole::core::config::QuorumMode;
use wackamole_simulations::faults::FaultKind;
use wackamole_simulations::runner::{Sweep, percentile, set_break};

fn finds_violation(name: Option<&str>, mut sweep: Sweep) {
    if let Some(name) = name {
        assert!(set_break(&mut sweep.breaks, &mut sweep.kernel_breaks, name));
    }
    sweep.stop_at_first = true;
    let s = sweep.run(|_, _| {});
    let found = s.violating_seeds();
    let label = name.unwrap_or("clock beyond rho");
    assert!(
        !found.is_empty(),
        "--break {label}: no violation in {} seeds",
        s.runs.len()
    );
    let seed = found[0];
    eprintln!(
        "--break {label}: violation on seed {seed} after {} seeds; replay: {}",
        s.runs.len(),
        sweep.replay_command(seed)
    );
    // The same seed replays to the same violation.
    let again = wackamole_simulations::world::run(sweep.config(seed));
    assert!(!again.violations.is_empty(), "seed {seed} did not replay");
}

fn faults(list: &[FaultKind]) -> Vec<FaultKind> {
    list.to_vec()
}

#[test]
fn quorum_lease() {
    finds_violation(
        Some("quorum-lease"),
        Sweep {
            seeds: 200,
            quorum: Some(QuorumMode::Majority),
            faults: faults(&[FaultKind::Partition]),
            ..Sweep::default()
        },
    );
}

#[test]
fn release_order() {
    finds_violation(
        Some("release-order"),
        Sweep {
            seeds: 200,
            quorum: Some(QuorumMode::Majority),
            faults: faults(&[FaultKind::Leave, FaultKind::Drain]),
            ..Sweep::default()
        },
    );
}

#[test]
fn gate_atomic() {
    finds_violation(
        Some("gate-atomic"),
        Sweep {
            seeds: 600,
            quorum: Some(QuorumMode::Majority),
            faults: faults(&[FaultKind::Freeze]),
            ..Sweep::default()
        },
    );
}

#[test]
fn fence() {
    finds_violation(
        Some("fence"),
        Sweep {
            seeds: 300,
            quorum: Some(QuorumMode::Majority),
            ..Sweep::default()
        },
    );
}

#[test]
fn restart_wait() {
    finds_violation(
        Some("restart-wait"),
        Sweep {
            seeds: 600,
            quorum: Some(QuorumMode::Majority),
            nodes: (3, 3),
            faults: faults(&[FaultKind::SplitRestart]),
            // Several restarts per run: since answers ride on claims (safety.md
            // §4.13) the claim rounds are aligned and the race a lone restart must
            // win is narrower (one to three per run: first violation ~900 seeds in).
            fault_count: (3, 6),
            ..Sweep::default()
        },
    );
}

#[test]
fn nonce() {
    finds_violation(
        Some("nonce"),
        Sweep {
            seeds: 1500,
            quorum: Some(QuorumMode::Majority),
            nodes: (3, 7),
            failback_s: Some(0.0),
            faults: faults(&[FaultKind::RestartStorm]),
            ..Sweep::default()
        },
    );
}

#[test]
fn quiescence_in_two_node_mode() {
    finds_violation(
        Some("quiescence"),
        Sweep {
            seeds: 300,
            quorum: Some(QuorumMode::Off),
            ..Sweep::default()
        },
    );
}

#[test]
fn clock_beyond_rho_is_caught() {
    finds_violation(
        None,
        Sweep {
            seeds: 600,
            quorum: Some(QuorumMode::Majority),
            nodes: (3, 5),
            faults: faults(&[FaultKind::ClockBeyondRho, FaultKind::Isolate]),
            fault_count: (3, 6),
            ..Sweep::default()
        },
    );
}

#[test]
fn promise_per_group() {
    // Pools that differ while a reload rolls through: the same address sits in
    // different groups (and slots) on different nodes; promises per group index let
    // two nodes hold it.
    finds_violation(
        Some("promise-per-group"),
        Sweep {
            seeds: 400,
            quorum: Some(QuorumMode::Majority),
            faults: faults(&[FaultKind::Reload]),
            ..Sweep::default()
        },
    );
}

#[test]
fn voter_joint() {
    // A voter replaced by reload during partitions: leases that count only the
    // claimer's own voter set let a node behind the rollout count grants given under
    // the new set (docs/safety.md §4.12, rule 1). Rare: it needs a reload to land
    // inside a partition at the right moment (the first violating seed from 5,000
    // was the 931st with one pass per wake-up; the search stops there).
    finds_violation(
        Some("voter-joint"),
        Sweep {
            seeds: 2500,
            seed_start: 5000,
            quorum: Some(QuorumMode::Majority),
            faults: faults(&[
                FaultKind::VoterChange,
                FaultKind::Partition,
                FaultKind::Isolate,
                FaultKind::Asymmetric,
            ]),
            ..Sweep::default()
        },
    );
}

/// Runs `brk` over 12 seeds from 7,340,000 (majority mode) and checks that the
/// checker sees liveness failures in at least half of them and never a violation:
/// the mechanism it switches off is a liveness mechanism, not a safety one.
fn liveness_only(brk: &str) {
    let mut sweep = Sweep {
        seeds: 12,
        seed_start: 7_340_000,
        quorum: Some(QuorumMode::Majority),
        ..Sweep::default()
    };
    assert!(set_break(&mut sweep.breaks, &mut sweep.kernel_breaks, brk));
    let s = sweep.run(|_, _| {});
    assert!(
        s.violating_seeds().is_empty(),
        "--break {brk} is not a safety rule"
    );
    let lost = s.liveness_seeds();
    assert!(
        lost.len() * 2 >= s.runs.len(),
        "--break {brk}: only {} of {} seeds lost liveness",
        lost.len(),
        s.runs.len()
    );
    eprintln!(
        "--break {brk}: {} of {} seeds lost liveness, 0 violations",
        lost.len(),
        s.runs.len()
    );
}

/// Answers riding on claims (docs/safety.md §4.13) are a liveness mechanism, not a
/// safety one: held past their bound, renewals learn their grants too late and
/// leases lapse. The checker sees that as liveness failures, never as a violation.
#[test]
fn ride_late_is_a_liveness_failure_not_a_violation() {
    liveness_only("ride");
}

/// The refresh schedule (docs/safety.md §4.14: claim rounds carry the gate refresh, a
/// due refresh brings the round forward, E ≥ 2F) is a liveness mechanism: with the
/// refresh pushed past E, every refresh finds its element expired and held groups go
/// dark and re-bind. The checker sees liveness failures, never a violation.
#[test]
fn refresh_late_is_a_liveness_failure_not_a_violation() {
    liveness_only("refresh");
}

/// A held group whose refresh found its gate entry expired is re-armed in place only
/// while its lease still allows a bind (docs/safety.md §4.15). Re-armed whatever the
/// lease says, a node that was frozen past its lease binds again over the node that
/// took the group meanwhile.
#[test]
fn rearm() {
    finds_violation(
        Some("rearm"),
        Sweep {
            seeds: 300,
            quorum: Some(QuorumMode::Majority),
            faults: faults(&[FaultKind::Freeze]),
            ..Sweep::default()
        },
    );
}

/// Claims as the heartbeat (docs/safety.md §4.16) carry the failover bound now that
/// SWIM probes once a second in a three-node cluster: with voters no longer
/// suspecting a holder whose claims stopped, a dead holder's groups wait for SWIM's
/// probes. Liveness, not safety: the same crashes, slower failovers, no violation.
#[test]
fn heartbeat_off_leaves_crash_failover_to_swims_slow_probes() {
    let sweep = |brk: bool| {
        let mut s = Sweep {
            seeds: 40,
            seed_start: 5_550_000,
            nodes: (3, 3),
            quorum: Some(QuorumMode::Majority),
            faults: faults(&[FaultKind::Crash]),
            fault_count: (1, 1),
            even_voters: false,
            ..Sweep::default()
        };
        if brk {
            assert!(set_break(&mut s.breaks, &mut s.kernel_breaks, "heartbeat"));
        }
        let r = s.run(|_, _| {});
        assert!(
            r.violating_seeds().is_empty(),
            "heartbeat is not a safety rule"
        );
        let f = r.failovers();
        assert!(f.len() >= 30, "only {} failovers", f.len());
        (percentile(&f, 50.0), percentile(&f, 99.0))
    };
    let (p50, p99) = sweep(false);
    let (broken_p50, broken_p99) = sweep(true);
    eprintln!(
        "crash failover p50/p99: {p50:.0}/{p99:.0} ms; --break heartbeat: {broken_p50:.0}/{broken_p99:.0} ms"
    );
    assert!(p99 < 600.0, "failover p99 {p99:.0} ms with the heartbeat");
    assert!(
        broken_p50 > 1000.0 && broken_p50 > p99,
        "--break heartbeat: p50 {broken_p50:.0} ms is not SWIM's"
    );
}
