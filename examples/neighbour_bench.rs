//! A client that ignores gratuitous ARP, after the machine death of the VIP's holder,
//! three ways in one run: wackamole with `--notify-neighbours`, wackamole with
//! broadcast announcements only, and keepalived's default (VRRP, `advert_int 1`).
//!
//! ```sh
//! sudo cargo run --release --example neighbour_bench [-- --rounds N] [--limit SECS]
//! ```
//!
//! The client (its own namespace, default kernel settings) drops every broadcast ARP
//! frame it receives (`meta pkttype broadcast drop` in an nftables `arp` table) and
//! sends a datagram to the VIP every 10 ms through its kernel, whose neighbour cache
//! is sampled every 5 ms. After 3.5 s the holder's link goes down and its agent is
//! killed. Measured: from the new holder's bind (kernel samples every 5 ms) to the
//! client's cache naming the new holder's MAC — when its traffic reaches it. Needs
//! root, iproute2, nftables and keepalived.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use wackamole::lab::cluster::Cluster;
use wackamole::lab::keepalived::{holders_k, keepalived_conf, signal_group, start_keepalived};
use wackamole::lab::watch::{NeighWatch, Report, Watch};
use wackamole::lab::{self, Lab};

const DEAF: &str = "add table arp deaf; add chain arp deaf in { type filter hook input priority 0; policy accept; }; add rule arp deaf in meta pkttype broadcast counter drop";

#[derive(Clone, Copy, Debug, PartialEq)]
enum System {
    Notify,
    Broadcast,
    Keepalived,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::Notify => "wackamole --notify-neighbours",
            System::Broadcast => "wackamole (broadcast only)",
            System::Keepalived => "keepalived default (advert_int 1)",
        }
    }
}

/// The watches of one round and what they need at the end.
struct Seen {
    report: Report,
    cache: Vec<(f64, Option<[u8; 6]>)>,
    t0: f64,
}

fn follow_after_bind(s: &Seen, new: usize, vip: IpAddr, new_mac: Option<[u8; 6]>) -> Option<f64> {
    let bind = s.report.nodes[new]
        .get(&vip)
        .and_then(|iv| iv.iter().map(|x| x.0).find(|&t| t >= s.t0))?;
    let follow = s
        .cache
        .iter()
        .find(|(t, m)| *t >= s.t0 && *m == new_mac)
        .map(|x| x.0)?;
    Some(((follow - bind) * 1000.0).max(0.0))
}

/// Waits until the client's cache names `new` (then 200 ms more), or `limit`.
fn wait_follow(nw: &NeighWatch, new: Option<[u8; 6]>, limit: Duration) {
    let t = Instant::now();
    while t.elapsed() < limit {
        if new.is_some() && nw.current() == new {
            std::thread::sleep(Duration::from_millis(200));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn watches(lab: &Lab, vip: IpAddr, gate: bool) -> (Watch, NeighWatch) {
    let w = Watch::start_on(
        &lab.nodes,
        (&lab.client, lab.addr6(250)),
        &[vip],
        gate,
        Duration::from_millis(5),
        Duration::ZERO,
    );
    let nw = NeighWatch::start(
        &lab.client.ns,
        "eth0",
        vip,
        Duration::from_millis(5),
        w.start,
    );
    (w, nw)
}

fn round_wackamole(notify: bool, idx: u8, limit: Duration) -> Option<f64> {
    let bin = lab::agent_binary();
    let mut c = Cluster::new(&bin, {
        let mut s = wackamole::lab::cluster::Spec::new(&format!("nb{idx}"), [88, idx]);
        s.vips4 = 1;
        s
    })
    .expect("lab");
    let vip = c.vips[0];
    c.lab.client.run(&["nft", DEAF]).expect("client rule");
    let extra: Vec<&str> = if notify {
        vec!["--notify-neighbours", "--neighbour-interval", "1s"]
    } else {
        vec![]
    };
    for i in 0..3 {
        c.start_with(i, &extra).expect("start");
    }
    c.wait_converged(&[0, 1, 2], Duration::from_secs(15))?;
    let (w, nw) = watches(&c.lab, vip, true);
    std::thread::sleep(Duration::from_millis(3500));
    let old = *c.holders().get(&vip)?.first()?;
    let t0 = w.now();
    c.lab.nodes[old].link(false).ok()?;
    c.kill(old);
    let start = Instant::now();
    let mut new = None;
    while start.elapsed() < limit {
        if let Some(n) = c.holders().get(&vip).and_then(|h| h.first().copied())
            && n != old
        {
            new = Some(n);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let new = new?;
    let new_mac = c.mac(new);
    wait_follow(&nw, new_mac, limit.saturating_sub(start.elapsed()));
    let seen = Seen {
        report: w.finish(),
        cache: nw.finish(),
        t0,
    };
    follow_after_bind(&seen, new, vip, new_mac)
}

fn round_keepalived(idx: u8, limit: Duration) -> Option<f64> {
    let lab = Lab::new(&format!("nk{idx}"), 3, [87, idx]).expect("lab");
    let vip: IpAddr = IpAddr::V4(lab.addr4(100));
    let dir = std::env::temp_dir().join(format!("nk{idx}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    lab.client.run(&["nft", DEAF]).expect("client rule");
    let confs: Vec<PathBuf> = (0..3)
        .map(|i| keepalived_conf(i, &lab, vip, &dir))
        .collect();
    let mut kids: Vec<_> = (0..3)
        .map(|i| start_keepalived(&lab, i, &confs[i], &dir))
        .collect();
    let t = Instant::now();
    while holders_k(&lab, vip).len() != 1 && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (w, nw) = watches(&lab, vip, false);
    std::thread::sleep(Duration::from_millis(3500));
    let old = *holders_k(&lab, vip).first()?;
    let t0 = w.now();
    lab.nodes[old].link(false).ok()?;
    signal_group(kids[old].id() as i32, Signal::SIGKILL);
    let _ = kids[old].wait();
    let start = Instant::now();
    let mut new = None;
    while start.elapsed() < limit {
        if let Some(n) = holders_k(&lab, vip).into_iter().find(|&n| n != old) {
            new = Some(n);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let new = new?;
    let new_mac = lab.mac(new);
    wait_follow(&nw, new_mac, limit.saturating_sub(start.elapsed()));
    let seen = Seen {
        report: w.finish(),
        cache: nw.finish(),
        t0,
    };
    for k in kids.iter_mut() {
        signal_group(k.id() as i32, Signal::SIGKILL);
        let _ = k.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    follow_after_bind(&seen, new, vip, new_mac)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let rounds = arg("--rounds").unwrap_or(3) as usize;
    let limit = Duration::from_secs(arg("--limit").unwrap_or(60));
    if let Err(why) = lab::available() {
        eprintln!("neighbour_bench: {why}");
        std::process::exit(69);
    }
    let keepalived = lab::installed("keepalived");
    if !keepalived {
        eprintln!("neighbour_bench: keepalived is not installed; its row is left out");
    }
    let systems: Vec<System> = [System::Notify, System::Broadcast, System::Keepalived]
        .into_iter()
        .filter(|s| *s != System::Keepalived || keepalived)
        .collect();
    let mut results: Vec<(System, Vec<Option<f64>>)> =
        systems.iter().map(|s| (*s, vec![])).collect();
    // Interleaved: round r of every system before round r + 1 of any.
    for r in 0..rounds {
        for (k, (sys, out)) in results.iter_mut().enumerate() {
            let idx = (r * 3 + k) as u8 + 1;
            let x = match sys {
                System::Notify => round_wackamole(true, idx, limit),
                System::Broadcast => round_wackamole(false, idx, limit),
                System::Keepalived => round_keepalived(idx, limit),
            };
            eprintln!(
                "round {r}: {}: {}",
                sys.label(),
                x.map_or(
                    format!("did not follow within {} s", limit.as_secs()),
                    |v| format!("{v:.0} ms after the bind")
                )
            );
            out.push(x);
        }
    }
    println!(
        "\nA client ignoring gratuitous ARP after machine death: from the new holder's bind to the client's traffic reaching it ({rounds} rounds, limit {} s)\n",
        limit.as_secs()
    );
    println!("| system | followed | median | max |");
    println!("|---|---|---|---|");
    for (sys, out) in &results {
        let mut v: Vec<f64> = out.iter().flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        let med = if v.is_empty() {
            "-".into()
        } else {
            format!("{:.0} ms", v[v.len() / 2])
        };
        let max = v.last().map_or("-".into(), |m| format!("{m:.0} ms"));
        println!(
            "| {} | {} of {} | {med} | {max} |",
            sys.label(),
            v.len(),
            out.len()
        );
    }
}
