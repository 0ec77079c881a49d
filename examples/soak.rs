//! Soak: churn against real agents in network namespaces for a long time, with S1
//! watched from the kernels (every 10 ms) and a client (ARP/NS every 20 ms) the
//! whole way.
//!
//! ```text
//! cargo run --release --example soak -- --minutes 30 [--nodes 5] [--vips 32] [--seed S]
//!     [--faults restart,agent-kill,freeze,isolate,partition,loss,machine-death,
//!               firewall-reload,interface-churn]
//! ```
//!
//! Faults, drawn from a seeded RNG one after another: graceful restart, agent
//! SIGKILL and restart, SIGSTOP/SIGCONT, isolating a node, a 2|3 partition, 20 %
//! loss on every port, machine death (link down + SIGKILL, back later), firewall
//! reloads (`nft flush ruleset` on a node, three times), interface churn (the node's
//! interface deleted, re-created 2 s later with a new index). Node n0 is
//! never restarted, so its RSS over the run is a clean growth signal. Prints
//! dual-answering samples (must be 0), VIP takeovers, recovery times, n0's RSS over
//! time and datagram drops; exits 1 if there was dual answering, a recovery failed,
//! or n0's RSS grew beyond noise. Needs root, iproute2 and nftables.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use wackamole::lab::cluster::{Cluster, Spec};
use wackamole::lab::watch::Watch;
use wackamole::lab::{self, percentile};
use wackamole::ops::client;

const FAULTS: [&str; 9] = [
    "restart",
    "agent-kill",
    "freeze",
    "isolate",
    "partition",
    "loss",
    "machine-death",
    "firewall-reload",
    "interface-churn",
];

fn rss_mb(pid: i32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// `wackamole_datagram_drops_total` by cause and datagrams in, from node `i`.
fn counters(c: &Cluster, i: usize) -> (BTreeMap<String, f64>, f64) {
    let ns = c.lab.nodes[i].ns.clone();
    std::thread::spawn(move || {
        let mut drops = BTreeMap::new();
        let mut inbound = 0.0;
        if lab::enter(&ns).is_err() {
            return (drops, inbound);
        }
        let Ok((200, text)) =
            client::request("127.0.0.1:9947".parse().unwrap(), "GET", "/metrics", None)
        else {
            return (drops, inbound);
        };
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let v: f64 = value.parse().unwrap_or(0.0);
            if let Some(rest) = name.strip_prefix("wackamole_datagram_drops_total{cause=\"") {
                let cause = rest.trim_end_matches("\"}").to_string();
                *drops.entry(cause).or_insert(0.0) += v;
            } else if name == "wackamole_datagrams_total{direction=\"in\"}" {
                inbound += v;
            }
        }
        (drops, inbound)
    })
    .join()
    .unwrap_or_default()
}

#[derive(Default)]
struct Totals {
    drops: BTreeMap<String, f64>,
    inbound: f64,
}

impl Totals {
    fn add(&mut self, (drops, inbound): (BTreeMap<String, f64>, f64)) {
        for (k, v) in drops {
            *self.drops.entry(k).or_insert(0.0) += v;
        }
        self.inbound += inbound;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "soak [--minutes M] [--nodes N] [--vips V] [--seed S] [--faults LIST]\n\
             Needs root. Churn against N agents and V VIPs in network namespaces; S1 watched throughout."
        );
        return;
    }
    let minutes: f64 = get("--minutes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30.0);
    let nodes: usize = get("--nodes").and_then(|v| v.parse().ok()).unwrap_or(5);
    let vips: usize = get("--vips").and_then(|v| v.parse().ok()).unwrap_or(32);
    let seed: u64 = get("--seed").and_then(|v| v.parse().ok()).unwrap_or(1);
    let faults: Vec<&str> = match get("--faults") {
        Some(list) => {
            let chosen: Vec<&str> = FAULTS
                .iter()
                .copied()
                .filter(|f| list.split(',').any(|x| x == *f))
                .collect();
            if chosen.is_empty() {
                eprintln!("soak: --faults: none of {list:?} is one of {FAULTS:?}");
                std::process::exit(64);
            }
            chosen
        }
        None => FAULTS.to_vec(),
    };
    if let Err(why) = lab::available() {
        eprintln!("soak: {why}");
        std::process::exit(77);
    }
    if !(3..=9).contains(&nodes) || !(1..=100).contains(&vips) {
        eprintln!("soak: --nodes must be 3..9 and --vips 1..100");
        std::process::exit(64);
    }
    let bin = lab::agent_binary();
    lab::Lab::sweep("wsk");
    let mut spec = Spec::new("wsk", [85, 1]);
    spec.nodes = nodes;
    spec.vips4 = vips;
    let mut c = Cluster::new(&bin, spec).expect("lab");
    let all: Vec<usize> = (0..nodes).collect();
    c.start_all().expect("start");
    c.wait_converged(&all, Duration::from_secs(30))
        .expect("initial convergence");
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(minutes * 60.0);
    let mut kernel_samples = 0u64;
    let mut client_rounds = 0usize;
    let mut duals: Vec<String> = Vec::new();
    let mut recover: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut moves = 0usize;
    let mut failures: Vec<String> = Vec::new();
    let mut rss: Vec<(f64, f64)> = Vec::new();
    let mut totals = Totals::default();
    let ports: Vec<String> = c.lab.nodes.iter().map(|h| h.port.clone()).collect();
    let quoted = |v: &[String]| {
        v.iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut episode = 0usize;
    eprintln!("soak: {nodes} nodes, {vips} VIPs, {minutes} min, seed {seed}");
    while Instant::now() < deadline {
        episode += 1;
        let fault = faults[rng.random_range(0..faults.len())];
        // n0 is never restarted or killed (its RSS is the growth signal).
        let k = if matches!(fault, "restart" | "agent-kill" | "machine-death") {
            rng.random_range(1..nodes)
        } else {
            rng.random_range(0..nodes)
        };
        let w = Watch::start(
            &c.lab,
            &c.vips,
            true,
            Duration::from_millis(10),
            Duration::from_millis(20),
        );
        match fault {
            "restart" => {
                totals.add(counters(&c, k));
                let _ = c.signal(k, Signal::SIGTERM);
                let _ = c.wait_exit(k, Duration::from_secs(5));
                c.kill(k);
                std::thread::sleep(Duration::from_millis(500));
                c.start(k).expect("restart");
            }
            "agent-kill" => {
                totals.add(counters(&c, k));
                c.kill(k);
                std::thread::sleep(Duration::from_secs(1));
                c.start(k).expect("restart");
            }
            "freeze" => {
                let _ = c.signal(k, Signal::SIGSTOP);
                std::thread::sleep(Duration::from_secs(3));
                let _ = c.signal(k, Signal::SIGCONT);
            }
            "isolate" => {
                let _ = c.lab.nodes[k].link(false);
                std::thread::sleep(Duration::from_secs(5));
                let _ = c.lab.nodes[k].link(true);
            }
            "partition" => {
                // k and one neighbour against the rest.
                let a: Vec<String> = vec![ports[k].clone(), ports[(k + 1) % nodes].clone()];
                let b: Vec<String> = ports.iter().filter(|p| !a.contains(p)).cloned().collect();
                let _ = c.lab.faults(&[
                    format!(
                        "iifname {{ {} }} oifname {{ {} }} drop",
                        quoted(&a),
                        quoted(&b)
                    ),
                    format!(
                        "iifname {{ {} }} oifname {{ {} }} drop",
                        quoted(&b),
                        quoted(&a)
                    ),
                ]);
                std::thread::sleep(Duration::from_secs(6));
                let _ = c.lab.faults(&[]);
            }
            "loss" => {
                let _ = c.lab.faults(&[format!(
                    "oifname {{ {} }} numgen random mod 100 < 20 drop",
                    quoted(&ports)
                )]);
                std::thread::sleep(Duration::from_secs(8));
                let _ = c.lab.faults(&[]);
            }
            "machine-death" => {
                totals.add(counters(&c, k));
                let _ = c.lab.nodes[k].link(false);
                c.kill(k);
                std::thread::sleep(Duration::from_secs(3));
                let _ = c.lab.nodes[k].link(true);
                c.start(k).expect("restart");
            }
            "firewall-reload" => {
                // What `systemctl restart nftables` does on Debian, three times.
                for _ in 0..3 {
                    let _ = c.lab.nodes[k].run(&["nft", "flush", "ruleset"]);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            "interface-churn" => {
                let _ = c.lab.unplug(k);
                std::thread::sleep(Duration::from_secs(2));
                c.lab.replug(k).expect("re-create the interface");
            }
            _ => unreachable!(),
        }
        let healed = Instant::now();
        match c.wait_converged(&all, Duration::from_secs(30)) {
            Some(d) => recover.entry(fault).or_default().push(d.as_secs_f64()),
            None => failures.push(format!(
                "episode {episode} ({fault} n{k}): no convergence 30 s after healing: {:?}",
                c.holders()
            )),
        }
        // A short calm stretch inside the watch: late duals would show here.
        std::thread::sleep(Duration::from_secs(1));
        let r = w.finish();
        kernel_samples += r.samples.iter().sum::<u64>();
        client_rounds += r.rounds.len();
        for d in r.kernel_duals().iter().chain(r.client_duals().iter()) {
            duals.push(format!("episode {episode} ({fault} n{k}): {d:?}"));
        }
        // Every answering interval beyond a VIP's first is a takeover (a failover,
        // a handover or a fail-back).
        for v in &c.vips {
            let n: usize = r.nodes.iter().map(|iv| iv.get(v).map_or(0, Vec::len)).sum();
            moves += n.saturating_sub(1);
        }
        let t = start.elapsed().as_secs_f64();
        if let Some(pid) = c.pid(0) {
            rss.push((t / 60.0, rss_mb(pid)));
        }
        eprintln!(
            "[{:>6.1} s] {fault:<13} n{k}: recovered in {:.2} s",
            t,
            healed.elapsed().as_secs_f64()
        );
    }
    for i in 0..nodes {
        totals.add(counters(&c, i));
    }
    drop(c);

    println!("\n## Soak: {nodes} nodes, {vips} VIPs, {minutes} min, seed {seed}\n");
    println!("| fault | episodes | back to one holder per VIP, balanced: p50 | max |");
    println!("|---|---|---|---|");
    for (f, v) in &recover {
        println!(
            "| {f} | {} | {:.2} s | {:.2} s |",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 100.0)
        );
    }
    println!(
        "\nepisodes {episode}; VIP takeovers {moves}; dual-answering samples {} (in {kernel_samples} kernel samples and {client_rounds} client rounds); recoveries failed {}",
        duals.len(),
        failures.len()
    );
    let drops: f64 = totals.drops.values().sum();
    println!(
        "datagrams received {:.0}; dropped {:.0} ({})",
        totals.inbound,
        drops,
        totals
            .drops
            .iter()
            .filter(|(_, v)| **v > 0.0)
            .map(|(k, v)| format!("{k} {v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // n0's RSS: the first sample after a minute (or the first) against the last third.
    let base = rss
        .iter()
        .find(|(m, _)| *m >= 1.0)
        .or(rss.first())
        .map(|x| x.1)
        .unwrap_or(0.0);
    let tail: Vec<f64> = rss.iter().skip(rss.len() * 2 / 3).map(|x| x.1).collect();
    let end = tail.iter().cloned().fold(0.0, f64::max);
    let step = (rss.len() / 10).max(1);
    println!(
        "n0 RSS over time (min → MB): {}",
        rss.iter()
            .step_by(step)
            .chain(rss.last())
            .map(|(m, r)| format!("{m:.1}→{r:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let grew = end > base * 1.25 + 1.0;
    println!(
        "n0 RSS: {base:.1} MB after warm-up, at most {end:.1} MB in the last third: {}",
        if grew { "GROWTH" } else { "flat" }
    );
    for d in duals.iter().take(20) {
        println!("DUAL {d}");
    }
    for f in &failures {
        println!("FAIL {f}");
    }
    let ok = duals.is_empty() && failures.is_empty() && !grew;
    println!(
        "summary: soak ok={ok} episodes={episode} duals={} failed_recoveries={} rss_growth={grew}",
        duals.len(),
        failures.len()
    );
    std::process::exit(if ok { 0 } else { 1 });
}
