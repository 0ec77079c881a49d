//! The simulator's acceptance runs: thousands of seeded schedules over cluster sizes
//! 2–16, every fault class, majority and two-node modes, both fences and both
//! profiles — zero S1 violations, zero liveness failures.
//!
//! Seeds are split into disjoint ranges per test so that together they cover more
//! than 2,000 distinct schedules. A failure prints the command that replays it.

use wackamole::core::config::{FenceKind, Profile, QuorumMode};
use wackamole_simulations::faults::FaultKind;
use wackamole_simulations::runner::{Summary, Sweep};

fn check(sweep: &Sweep, label: &str) -> Summary {
    let s = sweep.run(|_, _| {});
    let mut failures = Vec::new();
    for (c, r) in &s.runs {
        if let Some(v) = r.violations.first() {
            failures.push(format!(
                "seed {}: S1 violation: {} answered by {:?} at {:.3}s\n  replay: {}\n  schedule: {:?}\n  trace:\n    {}",
                c.seed,
                v.vip,
                v.nodes,
                v.at as f64 / 1e9,
                sweep.replay_command(c.seed),
                r.schedule,
                r.trace.iter().rev().take(30).rev().cloned().collect::<Vec<_>>().join("\n    ")
            ));
        }
        if !r.liveness.is_empty() {
            failures.push(format!(
                "seed {}: liveness: {:?}\n  replay: {}\n  schedule: {:?}",
                c.seed,
                r.liveness,
                sweep.replay_command(c.seed),
                r.schedule
            ));
        }
    }
    eprintln!("{label}: {}", s.line());
    assert!(
        failures.is_empty(),
        "{label}: {} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
    s
}

#[test]
fn majority_and_two_node_every_fault_class() {
    // One seed in five is a two-node cluster with quorum off.
    let sweep = Sweep {
        seed_start: 0,
        seeds: 1400,
        ..Sweep::default()
    };
    let s = check(&sweep, "gate/default mixed");
    let modes: Vec<QuorumMode> = s.runs.iter().map(|(c, _)| c.quorum).collect();
    assert!(modes.contains(&QuorumMode::Off) && modes.contains(&QuorumMode::Majority));
    let sizes: Vec<usize> = s.runs.iter().map(|(c, _)| c.nodes).collect();
    assert!(sizes.contains(&2) && sizes.contains(&16));
}

#[test]
fn address_fence() {
    let sweep = Sweep {
        seed_start: 100_000,
        seeds: 300,
        fence: FenceKind::Address,
        ..Sweep::default()
    };
    check(&sweep, "address fence");
}

#[test]
fn fast_profile() {
    let sweep = Sweep {
        seed_start: 200_000,
        seeds: 300,
        profile: Profile::Fast,
        ..Sweep::default()
    };
    check(&sweep, "fast profile");
}

#[test]
fn twenty_percent_loss_still_converges() {
    let sweep = Sweep {
        seed_start: 300_000,
        seeds: 120,
        loss: 0.20,
        quorum: Some(QuorumMode::Majority),
        nodes: (3, 9),
        even_voters: false,
        ..Sweep::default()
    };
    check(&sweep, "20% loss");
}

#[test]
fn restarts_with_delays_and_no_failback() {
    // Answers from an earlier life of a restarted agent must never count.
    let sweep = Sweep {
        seed_start: 400_000,
        seeds: 150,
        failback_s: Some(0.0),
        faults: vec![
            FaultKind::RestartStorm,
            FaultKind::Delay,
            FaultKind::SplitRestart,
            FaultKind::AgentCrash,
        ],
        nodes: (2, 6),
        ..Sweep::default()
    };
    check(&sweep, "restart storms");
}

#[test]
fn joins_and_leaves_move_only_their_own_groups() {
    // The sticky assignment end to end, with real gossip lag: after one join, leave
    // or drain, every holder change involves the node that came or went. (The
    // memoryless assignment moved 693 of 2,144 groups between bystanders over the
    // README's 400 seeds.)
    let sweep = Sweep {
        seed_start: 500_000,
        seeds: 120,
        faults: vec![FaultKind::Join, FaultKind::Leave, FaultKind::Drain],
        fault_count: (1, 1),
        quorum: Some(QuorumMode::Majority),
        nodes: (3, 16),
        even_voters: false,
        ..Sweep::default()
    };
    let s = check(&sweep, "joins and leaves");
    let moves: u64 = s.runs.iter().map(|(_, r)| r.moves).sum();
    let bystander: u64 = s.runs.iter().map(|(_, r)| r.bystander_moves).sum();
    assert!(moves > 100, "too few moves to say anything: {moves}");
    assert_eq!(
        bystander, 0,
        "{bystander} of {moves} moves between bystanders"
    );
}
