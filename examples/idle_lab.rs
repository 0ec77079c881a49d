//! An idle cluster to profile: 3 agents, 16 VIPs, in network namespaces, for a
//! while (the idle part of `failover_bench` measures the same lab; this one leaves
//! it running so that `perf`, `strace` or `valgrind` can look at an agent).
//!
//! ```text
//! cargo run --release --example idle_lab -- [--secs 60] [--lab N] [-- AGENT FLAGS…]
//! ```
//!
//! Prints `node namespace pid` for every agent once the cluster has converged, then
//! waits `--secs` and tears the lab down. Needs root, iproute2 and nftables.

use std::time::Duration;

use wackamole::lab::{self, cluster::Cluster, cluster::Spec};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let (own, extra) = args.split_at(split);
    let secs: u64 = own
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| own.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // `--lab N` (0–9): a second lab beside the first (its own namespaces and
    // subnet), to compare two builds at the same time on a noisy machine.
    let lab: u8 = own
        .iter()
        .position(|a| a == "--lab")
        .and_then(|i| own.get(i + 1))
        .and_then(|s| s.parse().ok())
        .filter(|n| *n < 10)
        .unwrap_or(0);
    if let Err(why) = lab::available() {
        eprintln!("idle_lab: {why}");
        std::process::exit(77);
    }
    let name = if lab == 0 {
        "wil".to_string()
    } else {
        format!("wil{lab}")
    };
    let mut spec = Spec::new(&name, [88, 201 + lab]);
    spec.vips4 = 16;
    spec.extra = extra.iter().skip(1).cloned().collect();
    let mut c = Cluster::new(&lab::agent_binary(), spec).expect("lab");
    c.start_all().expect("start");
    if c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .is_none()
    {
        eprintln!("idle_lab: no convergence in 20 s");
        std::process::exit(1);
    }
    for (i, n) in c.lab.nodes.iter().enumerate() {
        println!("n{i} {} {}", n.ns, c.pid(i).unwrap_or(0));
    }
    std::thread::sleep(Duration::from_secs(secs));
}
