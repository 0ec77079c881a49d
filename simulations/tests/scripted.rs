//! Scripted scenarios: exact fault schedules stated in the test, each run over a few
//! network seeds. The first three are the liveness failures found at seeds 55501221,
//! 55501787 and 55501978 (issue 10), written out so that they stay covered whatever
//! the seed-driven schedule generator draws in the future.

use wackamole::core::config::QuorumMode;
use wackamole_simulations::faults::{FaultKind, Schedule};
use wackamole_simulations::world::{SimConfig, run};

/// Network seeds each scenario runs with.
const SEEDS: std::ops::Range<u64> = 0..6;

fn scenario(nodes: usize, voters: usize, groups: usize, script: Schedule) -> Vec<SimConfig> {
    SEEDS
        .map(|seed| {
            let mut c = SimConfig::new(seed);
            c.nodes = nodes;
            c.voters = voters;
            c.groups = groups;
            c.quorum = QuorumMode::Majority;
            c.script = Some(script.clone());
            c
        })
        .collect()
}

fn assert_safe_and_live(label: &str, runs: Vec<SimConfig>) {
    let mut failures = Vec::new();
    for cfg in runs {
        let seed = cfg.seed;
        let r = run(cfg);
        if !r.violations.is_empty() || !r.liveness.is_empty() {
            failures.push(format!(
                "network seed {seed}: violations {:?} liveness ({} findings) {:?}\n    {}",
                r.violations,
                r.liveness.len(),
                r.liveness.iter().take(3).collect::<Vec<_>>(),
                r.trace
                    .iter()
                    .rev()
                    .take(20)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
}

/// Seed 55501221: a partition {n0, n3} | {n1, n2} while n0's machine is down and a
/// voter change rolls through (every node restarts). Each side re-formed alone and,
/// with SWIM announcing to seeds only while alone, the two never learned of each
/// other: no quorum on either side, for good. Missing seeds are now re-announced.
#[test]
fn a_rolling_restart_during_a_partition_merges_after_the_heal() {
    let s = Schedule::scripted()
        .with(3.123, FaultKind::Crash, 0, 3.43)
        .with_partition(4.242, &[0, 3], 4, 4.98, false)
        .with(5.319, FaultKind::VoterChange, 3, 0.0)
        .with(9.105, FaultKind::LossBurst, 2, 1.35)
        .with_fault(12.0, FaultKind::Prefer, 1, Some(2), 0.0);
    assert_safe_and_live("55501221", scenario(4, 3, 28, s));
}

/// Seed 55501787: two graceful leaves for good, a late join, a health flap and a
/// freeze of the late joiner: the same cause as above (the joiner's announce went
/// to seeds that had left).
#[test]
fn a_late_joiner_whose_seeds_left_still_joins() {
    let s = Schedule::scripted()
        .with(5.402, FaultKind::Leave, 0, 0.0)
        .with(5.560, FaultKind::Health, 5, 1.48)
        .with(8.311, FaultKind::Leave, 1, 0.0)
        .with_late_join(9.003, 2)
        .with(14.887, FaultKind::Freeze, 2, 2.6);
    assert_safe_and_live("55501787", scenario(7, 5, 11, s));
}

/// Seed 55501978: a voter change reaches a node while it is frozen, and the node is
/// crashed (restart storm) before it resumes: it must come back on the new
/// configuration, not the old one.
#[test]
fn a_reconfiguration_deferred_on_a_frozen_node_survives_its_crash() {
    let s = Schedule::scripted()
        .with(5.070, FaultKind::Freeze, 1, 9.23)
        .with(7.711, FaultKind::VoterChange, 0, 0.0)
        .with(11.944, FaultKind::RestartStorm, 1, 2.58)
        .with(12.916, FaultKind::Health, 0, 2.79)
        .with(14.551, FaultKind::Isolate, 1, 1.74)
        .with(15.727, FaultKind::Delay, 3, 2.27);
    assert_safe_and_live("55501978", scenario(4, 3, 12, s));
}

/// A scripted two-node story: the holder's machine dies for good; the survivor takes
/// everything once the peer has been silent for Q₂, and nothing is answered twice.
#[test]
fn two_nodes_one_machine_dies() {
    let runs = SEEDS
        .map(|seed| {
            let mut c = SimConfig::new(seed);
            c.nodes = 2;
            c.voters = 2;
            c.groups = 6;
            c.quorum = QuorumMode::Off;
            c.script = Some(Schedule::scripted().with(4.0, FaultKind::Crash, 0, 0.0));
            c
        })
        .collect();
    assert_safe_and_live("two-node crash", runs);
}
