//! `wackamole-simulations`: run seeded cluster simulations from the command line.
//!
//! ```text
//! cargo run --release -p wackamole-simulations -- --seeds 10000
//! cargo run --release -p wackamole-simulations -- --seed 42 --trace
//! ```
//! The last line is machine-readable (`summary: seeds=… violations=…`).

use std::process::ExitCode;

use clap::Parser;
use wackamole::core::config::{FenceKind, Profile, QuorumMode};
use wackamole_simulations::faults::FaultKind;
use wackamole_simulations::runner::{Sweep, percentile, set_break};

#[derive(Parser, Debug)]
#[command(
    about = "Deterministic cluster simulation of wackamole: many real cores and foca instances over a faulty model network and model kernels"
)]
struct Args {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// Replay one seed (prints its schedule and trace tail).
    #[arg(long)]
    seed: Option<u64>,
    /// First seed of the sweep.
    #[arg(long, default_value_t = 0)]
    seed_start: u64,
    /// Cluster sizes, A..B (inclusive).
    #[arg(long, default_value = "2..16", value_parser = parse_range)]
    nodes: (usize, usize),
    /// VIP group counts, A..B (inclusive).
    #[arg(long, default_value = "1..32", value_parser = parse_range)]
    vips: (usize, usize),
    /// Background datagram loss probability (0–1).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Fault classes, comma separated, or "none". Default: every class S1 must survive.
    #[arg(long)]
    faults: Option<String>,
    /// Faults per run, A..B.
    #[arg(long, default_value = "2..6", value_parser = parse_range)]
    fault_count: (usize, usize),
    /// majority, off, or mixed (one seed in five runs two nodes with quorum off).
    #[arg(long, default_value = "mixed")]
    quorum: String,
    /// gate or address.
    #[arg(long, default_value = "gate")]
    fence: String,
    /// default, fast or lean.
    #[arg(long, default_value = "default")]
    profile: String,
    /// Turn one safety mechanism off: quiescence, incarnation, quorum-lease,
    /// restart-wait, release-order, nonce, promise-per-group, voter-settle, voter-joint,
    /// ride, refresh, rearm, heartbeat, gate-atomic, fence (repeatable).
    #[arg(long = "break")]
    breaks: Vec<String>,
    /// Length of the fault phase, seconds.
    #[arg(long, default_value_t = 15.0)]
    fault_phase: f64,
    /// Time before the first fault, seconds (holder changes are counted after it).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Only odd voter counts (by default one seed in eight runs an even, warned-about voter set).
    #[arg(long)]
    odd_voters: bool,
    /// Fail-back delay override, seconds.
    #[arg(long)]
    failback: Option<f64>,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop at the first violating seed.
    #[arg(long)]
    stop_at_first: bool,
    /// Also scan every address after every event (slow).
    #[arg(long)]
    full_check: bool,
    /// Print the whole trace of a replayed seed.
    #[arg(long)]
    trace: bool,
    /// Print one line per seed.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s.split_once("..").unwrap_or((s, s));
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected A..B"))?;
    let b: usize = b
        .trim_start_matches('=')
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected A..B"))?;
    if a > b || a == 0 {
        return Err(format!("{s:?}: expected 1 ≤ A ≤ B"));
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let a = Args::parse();
    let mut sw = Sweep {
        seed_start: a.seed.unwrap_or(a.seed_start),
        seeds: if a.seed.is_some() { 1 } else { a.seeds },
        nodes: a.nodes,
        vips: a.vips,
        loss: a.loss,
        fault_count: a.fault_count,
        fault_phase_s: a.fault_phase,
        warmup_s: a.warmup,
        even_voters: !a.odd_voters,
        stop_at_first: a.stop_at_first,
        full_check: a.full_check,
        failback_s: a.failback,
        full_trace: a.trace,
        ..Sweep::default()
    };
    if let Some(t) = a.threads {
        sw.threads = t;
    }
    if let Some(f) = &a.faults {
        sw.faults = if f == "none" {
            vec![]
        } else {
            let mut v = Vec::new();
            for n in f.split(',') {
                match FaultKind::parse(n.trim()) {
                    Some(k) => v.push(k),
                    None => {
                        eprintln!("error: unknown fault class {n:?}");
                        return ExitCode::from(64);
                    }
                }
            }
            v
        };
    }
    sw.quorum = match a.quorum.as_str() {
        "mixed" => None,
        "majority" | "on" => Some(QuorumMode::Majority),
        "off" => Some(QuorumMode::Off),
        q => {
            eprintln!("error: --quorum {q:?}: expected majority, off or mixed");
            return ExitCode::from(64);
        }
    };
    sw.fence = match a.fence.as_str() {
        "gate" => FenceKind::Gate,
        "address" => FenceKind::Address,
        f => {
            eprintln!("error: --fence {f:?}: expected gate or address");
            return ExitCode::from(64);
        }
    };
    sw.profile = match Profile::parse(&a.profile) {
        Some(p) => p,
        None => {
            eprintln!(
                "error: --profile {:?}: expected default, fast or lean",
                a.profile
            );
            return ExitCode::from(64);
        }
    };
    for b in &a.breaks {
        if !set_break(&mut sw.breaks, &mut sw.kernel_breaks, b) {
            eprintln!("error: unknown --break {b:?}");
            return ExitCode::from(64);
        }
    }
    let replay = a.seed.is_some();
    let verbose = a.verbose || replay;
    let full_trace = a.trace;
    let summary = sw.run(|cfg, r| {
        if verbose {
            println!(
                "seed {} nodes={} voters={} vips={} quorum={:?} violations={} liveness={} l1_coverage={:.3} failover_ms={:?} handover_ms={:?} moves={} conflicts={} events={}",
                cfg.seed,
                cfg.nodes,
                cfg.voters,
                cfg.groups,
                cfg.quorum,
                r.violations.len(),
                r.liveness.len(),
                r.l1_min_coverage,
                r.failover_crash_ms.iter().map(|x| x.round()).collect::<Vec<_>>(),
                r.handover_ms.iter().map(|x| x.round()).collect::<Vec<_>>(),
                r.moves,
                r.conflicts,
                r.events
            );
        }
        if !r.violations.is_empty() || (replay && (full_trace || !r.liveness.is_empty())) {
            let v = r.violations.first();
            if let Some(v) = v {
                println!("VIOLATION seed {}: {} answered by {:?} at {:.3} s", cfg.seed, v.vip, v.nodes, v.at as f64 / 1e9);
            }
            println!("  replay: {}", sw.replay_command(cfg.seed));
            println!("  schedule: {:?}", r.schedule);
            for l in &r.liveness {
                println!("  liveness: {l}");
            }
            for l in r.trace.iter().rev().take(if full_trace { usize::MAX } else { 25 }).rev() {
                println!("    {l}");
            }
        } else if !r.liveness.is_empty() {
            println!("LIVENESS seed {}: {:?}", cfg.seed, r.liveness);
            println!("  replay: {}", sw.replay_command(cfg.seed));
        }
    });
    let f = summary.failovers();
    let h = summary.handovers();
    let other: Vec<f64> = summary
        .runs
        .iter()
        .flat_map(|(_, r)| r.failover_other_ms.iter().copied())
        .collect();
    let dg: Vec<f64> = summary
        .runs
        .iter()
        .map(|(_, r)| r.datagrams_per_node_s)
        .collect();
    let by: Vec<f64> = summary
        .runs
        .iter()
        .map(|(_, r)| r.bytes_per_node_s)
        .collect();
    println!(
        "failover after machine crash: n={} p50={:.0} p90={:.0} p99={:.0} max={:.0} ms; after agent crash/freeze: n={} p50={:.0} p99={:.0} ms",
        f.len(),
        percentile(&f, 50.0),
        percentile(&f, 90.0),
        percentile(&f, 99.0),
        percentile(&f, 100.0),
        other.len(),
        percentile(&other, 50.0),
        percentile(&other, 99.0)
    );
    println!(
        "handover gap: n={} p50={:.1} p99={:.1} ms",
        h.len(),
        percentile(&h, 50.0),
        percentile(&h, 99.0)
    );
    println!(
        "traffic per node: datagrams/s p50={:.0}, bytes/s p50={:.0}",
        percentile(&dg, 50.0),
        percentile(&by, 50.0)
    );
    let moves: u64 = summary.runs.iter().map(|(_, r)| r.moves).sum();
    let node_h: f64 = summary
        .runs
        .iter()
        .map(|(_, r)| r.node_seconds)
        .sum::<f64>()
        / 3600.0;
    println!(
        "holder changes after convergence: {moves} in {node_h:.2} node-hours = {:.1} per node-hour",
        moves as f64 / node_h.max(1e-9)
    );
    let bystander: u64 = summary.runs.iter().map(|(_, r)| r.bystander_moves).sum();
    println!("of those, between nodes no fault touched (moves for balance alone): {bystander}");
    let conflicts: u64 = summary.runs.iter().map(|(_, r)| r.conflicts).sum();
    println!("probe conflicts (canary for a too-small K): {conflicts}");
    let rearms: u64 = summary.runs.iter().map(|(_, r)| r.rearms).sum();
    println!("gate entries re-armed under the lease after a stall: {rearms}");
    println!("{}", summary.line());
    if summary.violating_seeds().is_empty() && summary.liveness_seeds().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
