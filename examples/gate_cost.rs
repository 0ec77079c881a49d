//! What one gate refresh costs, by the number of elements it rewrites.
//!
//! An idle round's refresh deletes and re-adds the `live` element of every held VIP
//! (IPv4 VIPs in both the `inet` and the `arp` table) in one nftables transaction
//! (docs/safety.md §4.4, §4.14). This times that transaction for k = 1, 2, 5, 16
//! and 64 VIPs in a network namespace of its own, as wall time and as the calling
//! thread's CPU time (user + kernel, which includes the commit but not the kworker it
//! wakes), so docs/cost.md can say what part of a round is per element and what part
//! per transaction.
//!
//! ```sh
//! sudo cargo run --release --example gate_cost -- [--iters 2000]
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use wackamole::addr::gate::{self, ElemOp, Gate, GateSet};

const NS: &str = "wgc-bench";

fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .expect("thread CPU clock");
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = args
        .iter()
        .position(|a| a == "--iters")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    if let Err(why) = wackamole::lab::available() {
        eprintln!("gate_cost: {why}");
        std::process::exit(2);
    }
    let _ = Command::new("ip")
        .args(["netns", "del", NS])
        .stderr(std::process::Stdio::null())
        .status();
    let ok = Command::new("ip")
        .args(["netns", "add", NS])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("gate_cost: cannot create namespace {NS}");
        std::process::exit(2);
    }
    let result = std::panic::catch_unwind(|| run(iters));
    let _ = Command::new("ip").args(["netns", "del", NS]).status();
    if result.is_err() {
        std::process::exit(1);
    }
}

fn run(iters: usize) {
    wackamole::lab::enter(NS).expect("enter the namespace");
    let vips: Vec<IpAddr> = (1..=64u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 77, 0, i)))
        .collect();
    let homes: Vec<(IpAddr, &str)> = vips.iter().map(|&a| (a, "lo")).collect();
    let e = Duration::from_millis(1000);
    gate::install(&homes, e, Duration::from_millis(20)).expect("install the gate");
    let mut g = Gate::open().expect("open the netfilter socket");
    let pool: Vec<ElemOp> = vips
        .iter()
        .map(|&a| ElemOp::Insert(GateSet::Pool, a))
        .collect();
    g.batch(&pool).expect("fill the pool");
    println!(
        "| VIPs refreshed | wall µs (median) | thread CPU µs (median) | CPU µs per VIP beyond the first |"
    );
    println!("|---|---|---|---|");
    let mut base = None;
    for k in [1usize, 2, 5, 16, 64] {
        let set = &vips[..k];
        let add: Vec<ElemOp> = set
            .iter()
            .map(|&a| ElemOp::Add(GateSet::Live, a, e))
            .collect();
        g.batch(&add).expect("first add");
        let refresh: Vec<ElemOp> = set
            .iter()
            .map(|&a| ElemOp::Del(GateSet::Live, a))
            .chain(set.iter().map(|&a| ElemOp::Add(GateSet::Live, a, e)))
            .collect();
        let (mut wall, mut cpu) = (Vec::with_capacity(iters), Vec::with_capacity(iters));
        for _ in 0..iters {
            let (w0, c0) = (Instant::now(), thread_cpu());
            g.batch(&refresh).expect("refresh");
            cpu.push((thread_cpu() - c0).as_secs_f64() * 1e6);
            wall.push(w0.elapsed().as_secs_f64() * 1e6);
            // A round's pace, so the set's garbage collection runs as it would.
            std::thread::sleep(Duration::from_micros(500));
        }
        let del: Vec<ElemOp> = set.iter().map(|&a| ElemOp::Del(GateSet::Live, a)).collect();
        g.batch(&del).expect("clean up");
        let (w, c) = (median(wall), median(cpu));
        let per = match base {
            None => {
                base = Some(c);
                "—".to_string()
            }
            Some(b) => format!("{:.2}", (c - b) / (k - 1) as f64),
        };
        println!("| {k} | {w:.1} | {c:.1} | {per} |");
    }
    gate::uninstall();
}
