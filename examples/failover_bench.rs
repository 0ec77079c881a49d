//! Failover bench: real agents in network namespaces, failover as the *client* sees
//! it (first answered ping after the fault), side by side with keepalived.
//!
//! ```text
//! cargo run --release --example failover_bench -- --rounds 30 [--vs keepalived]
//!     [--classes machine-death,agent-kill,sigstop,leave] [--profiles default,fast]
//! ```
//!
//! Needs root, iproute2, nftables, iputils-ping (and keepalived with `--vs`); the
//! setup step installs missing Debian packages. Prints a table, then the idle cost
//! of an agent (RSS, CPU) with 3 nodes and 16 VIPs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use wackamole::lab::cluster::{Cluster, Spec};
use wackamole::lab::watch::{Report, Watch};
use wackamole::lab::{self, Lab, percentile};

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn setup(keepalived: bool) {
    let mut need = Vec::new();
    for (bin, pkg) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("ping", "iputils-ping"),
    ] {
        if Command::new("which")
            .arg(bin)
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            need.push(pkg);
        }
    }
    if keepalived
        && Command::new("which")
            .arg("keepalived")
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
    {
        need.push("keepalived");
    }
    if !need.is_empty() {
        eprintln!("installing {need:?} …");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let st = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&need)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            eprintln!("could not install {need:?}");
            std::process::exit(69);
        }
    }
}

/// A ping from the client namespace every 10 ms: (time, TTL) of every reply. Each
/// lab node sends with its own TTL, so the TTL names the node that answered.
struct Pinger {
    child: Child,
    replies: std::sync::Arc<std::sync::Mutex<Vec<(f64, u8)>>>,
}

impl Pinger {
    fn start(lab: &Lab, vip: IpAddr) -> Pinger {
        let mut child = lab
            .client
            .command("ping")
            .args(["-n", "-D", "-i", "0.01", "-W", "0.2", &vip.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping");
        let out = child.stdout.take().expect("stdout");
        let replies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = replies.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let ts = line
                    .strip_prefix('[')
                    .and_then(|l| l.split(']').next())
                    .and_then(|t| t.parse::<f64>().ok());
                let ttl = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("ttl="))
                    .and_then(|t| t.parse::<u8>().ok());
                if let (Some(ts), Some(ttl)) = (ts, ttl) {
                    r.lock().unwrap().push((ts, ttl));
                }
            }
        });
        Pinger { child, replies }
    }

    /// Seconds from `t` to the first reply after `t` from a node other than `old`.
    fn first_after(&self, t: f64, old: usize, limit: Duration) -> Option<f64> {
        let old_ttl = Lab::ttl_of(old);
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some((x, _)) = self
                .replies
                .lock()
                .unwrap()
                .iter()
                .find(|&&(x, ttl)| x > t && ttl != old_ttl)
            {
                return Some(*x - t);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Row {
    failover: Vec<f64>,
    unowned: Vec<f64>,
    dual: usize,
    lost: usize,
}

/// What watches one fault round, the same for every system: the client pings the
/// VIP and the S1 watch samples every kernel (5 ms) and the client's ARP view
/// (10 ms), from 0.4 s before the fault until 0.3 s after the failover.
struct Observer {
    pinger: Pinger,
    watch: Watch,
    t0: f64,
    w0: f64,
}

impl Observer {
    /// Starts watching; returns once the fault may be injected.
    fn start(lab: &Lab, vips: &[IpAddr], gate: bool) -> Observer {
        let pinger = Pinger::start(lab, vips[0]);
        let watch = Watch::start(
            lab,
            vips,
            gate,
            Duration::from_millis(5),
            Duration::from_millis(10),
        );
        std::thread::sleep(Duration::from_millis(400));
        Observer {
            pinger,
            t0: now_unix(),
            w0: watch.now(),
            watch,
        }
    }

    /// After the fault hit node `old`: the failover is the first reply from another
    /// node (waited for up to `limit`). Adds it and the dual-answering samples to
    /// `row`; returns the watch's report and the watch time of the fault.
    fn finish(self, old: usize, limit: Duration, row: &mut Row) -> (Report, f64) {
        let f = self.pinger.first_after(self.t0, old, limit);
        std::thread::sleep(Duration::from_millis(300));
        let rep = self.watch.finish();
        row.dual += rep.kernel_duals().len() + rep.client_duals().len();
        match f {
            Some(x) => row.failover.push(x),
            None => row.lost += 1,
        }
        (rep, self.w0)
    }
}

fn bench_wackamole(
    bin: &std::path::Path,
    profile: &str,
    class: &str,
    rounds: usize,
    idx: u8,
) -> Row {
    let mut spec = Spec::new(&format!("wb{idx}"), [88, idx]);
    spec.vips4 = 1;
    spec.extra = vec!["--profile".into(), profile.into()];
    let mut c = Cluster::new(bin, spec).expect("lab");
    c.start_all().unwrap();
    let all = [0usize, 1, 2];
    c.wait_converged(&all, Duration::from_secs(20))
        .expect("converge");
    let vip = c.vips[0];
    let mut row = Row::default();
    let mut r = 0;
    let mut attempts = 0;
    while r < rounds && attempts < rounds * 3 {
        attempts += 1;
        // Start each round from a calm cluster with one holder.
        let _ = c.wait_converged(&all, Duration::from_secs(20));
        let holders = c.holders()[&vip].clone();
        let [old] = holders.as_slice() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let old = *old;
        r += 1;
        let obs = Observer::start(&c.lab, &c.vips, true);
        match class {
            "machine-death" => {
                c.lab.nodes[old].link(false).unwrap();
                c.kill(old);
            }
            "agent-kill" => c.kill(old),
            "sigstop" => c.signal(old, Signal::SIGSTOP).unwrap(),
            "leave" => c.signal(old, Signal::SIGTERM).unwrap(),
            _ => unreachable!(),
        }
        let (rep, w0) = obs.finish(old, Duration::from_secs(10), &mut row);
        // Unowned time: old holder's last answering → the next holder's first.
        let old_end = rep.nodes[old].get(&vip).and_then(|v| {
            v.iter()
                .map(|iv| iv.1)
                .filter(|e| *e >= w0 - 0.05)
                .fold(None, |a: Option<f64>, e| Some(a.map_or(e, |a| a.min(e))))
        });
        let next = (0..3)
            .filter(|&n| n != old)
            .filter_map(|n| {
                rep.nodes[n]
                    .get(&vip)
                    .and_then(|v| v.iter().map(|iv| iv.0).find(|s| *s >= w0))
            })
            .fold(f64::MAX, f64::min);
        if let Some(e) = old_end.filter(|_| next < f64::MAX) {
            row.unowned.push((next - e).max(0.0));
        }
        // Restore.
        match class {
            "machine-death" => {
                c.lab.nodes[old].link(true).unwrap();
                c.start(old).unwrap();
            }
            "agent-kill" => c.start(old).unwrap(),
            "sigstop" => c.signal(old, Signal::SIGCONT).unwrap(),
            "leave" => {
                let _ = c.wait_exit(old, Duration::from_secs(3));
                c.start(old).unwrap();
            }
            _ => {}
        }
        if c.wait_converged(&all, Duration::from_secs(20)).is_none() {
            eprintln!("round {}: no convergence after restore", r - 1);
        }
        // Let the fail-back settle so the next fault hits a calm cluster.
        std::thread::sleep(Duration::from_millis(2500));
        eprint!(".");
    }
    eprintln!();
    row
}

use wackamole::lab::keepalived::{holders_k, keepalived_conf, signal_group, start_keepalived};

fn bench_keepalived(class: &str, rounds: usize, idx: u8) -> Row {
    let lab = Lab::new(&format!("kb{idx}"), 3, [89, idx]).expect("lab");
    let vip: IpAddr = IpAddr::V4(lab.addr4(100));
    let dir = std::env::temp_dir().join(format!("kb{idx}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let confs: Vec<PathBuf> = (0..3)
        .map(|i| keepalived_conf(i, &lab, vip, &dir))
        .collect();
    let mut kids: Vec<Option<Child>> = (0..3)
        .map(|i| Some(start_keepalived(&lab, i, &confs[i], &dir)))
        .collect();
    let settle = |lab: &Lab| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if holders_k(lab, vip).len() == 1 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    settle(&lab);
    std::thread::sleep(Duration::from_secs(4));
    let mut row = Row::default();
    let mut r = 0;
    let mut attempts = 0;
    while r < rounds && attempts < rounds * 3 {
        attempts += 1;
        settle(&lab);
        let h = holders_k(&lab, vip);
        let [old] = h.as_slice() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let old = *old;
        r += 1;
        let obs = Observer::start(&lab, &[vip], false);
        let pid = kids[old].as_ref().map(|c| c.id() as i32).unwrap_or(0);
        match class {
            "machine-death" => {
                lab.nodes[old].link(false).unwrap();
                signal_group(pid, Signal::SIGKILL);
                if let Some(mut k) = kids[old].take() {
                    let _ = k.wait();
                }
            }
            "agent-kill" => {
                signal_group(pid, Signal::SIGKILL);
                if let Some(mut k) = kids[old].take() {
                    let _ = k.wait();
                }
            }
            "sigstop" => signal_group(pid, Signal::SIGSTOP),
            "leave" => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
            }
            _ => {}
        }
        obs.finish(old, Duration::from_secs(15), &mut row);
        match class {
            "machine-death" => {
                lab.nodes[old].link(true).unwrap();
                kids[old] = Some(start_keepalived(&lab, old, &confs[old], &dir));
            }
            "agent-kill" => {
                // A killed keepalived leaves its VIP on the interface; the operator
                // removes it before restarting.
                let cidr = format!("{vip}/32");
                let _ = lab.nodes[old].run(&[
                    "ip",
                    "addr",
                    "del",
                    &cidr,
                    "dev",
                    &lab.nodes[old].ifname,
                ]);
                kids[old] = Some(start_keepalived(&lab, old, &confs[old], &dir));
            }
            "sigstop" => signal_group(pid, Signal::SIGCONT),
            "leave" => {
                if let Some(mut k) = kids[old].take() {
                    let _ = k.wait();
                }
                kids[old] = Some(start_keepalived(&lab, old, &confs[old], &dir));
            }
            _ => {}
        }
        settle(&lab);
        std::thread::sleep(Duration::from_secs(4));
        eprint!(".");
    }
    eprintln!();
    for k in kids.iter_mut().flatten() {
        signal_group(k.id() as i32, Signal::SIGKILL);
        let _ = k.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    row
}

/// The idle cost of the busiest of three nodes.
#[derive(Clone, Copy, Debug, Default)]
struct Idle {
    /// Resident set, MB (largest of the three nodes, all of a node's processes).
    rss: f64,
    /// CPU, % of a core (from the scheduler's run time, nanoseconds).
    cpu: f64,
    /// CPU of all three nodes together, % of a core.
    total: f64,
    /// Times per second the busiest node's threads went to sleep and were woken.
    wakeups: f64,
    /// UDP datagrams per second the busiest node sent and received (its
    /// namespace's `/proc/net/snmp`; keepalived's VRRP is not UDP, so 0 there).
    udp_out: f64,
    udp_in: f64,
}

/// A namespace's UDP counters (InDatagrams, OutDatagrams), read through `pid`.
fn udp_counters(pid: i32) -> Option<(f64, f64)> {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let field = |f: &str| -> Option<f64> {
        let i = names.split_whitespace().position(|n| n == f)?;
        values.split_whitespace().nth(i)?.parse().ok()
    };
    Some((field("InDatagrams")?, field("OutDatagrams")?))
}

/// Every process in network namespace `ns` (`ip netns pids`).
fn ns_pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One sample of a node: (run time in s, voluntary context switches, RSS in MB),
/// summed over every thread of every process in its namespace.
fn sample_ns(ns: &str) -> (f64, f64, f64, (f64, f64)) {
    // CPU time to the nanosecond: the scheduler's run time of every thread
    // (`/proc/PID/task/*/schedstat`), not the 10 ms ticks of `stat`, which at 1 %
    // of a core over 30 s carry ±15 % of sampling noise (and whose user/system
    // split, sampled on ticks, is meaningless at this rate). Voluntary switches
    // count the wake-ups.
    let (mut run, mut switches, mut rss) = (0.0, 0.0, 0.0);
    let pids = ns_pids(ns);
    let udp = pids
        .first()
        .and_then(|&p| udp_counters(p))
        .unwrap_or((0.0, 0.0));
    for pid in pids {
        rss += std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0;
        let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in d.flatten() {
            if let Some(ns) = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            {
                run += ns / 1e9;
            }
            switches += std::fs::read_to_string(t.path().join("status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    (run, switches, rss, udp)
}

/// The busiest of the namespaces `nss` over `window` seconds.
fn measure(nss: &[String], window: f64) -> Idle {
    let sample = || -> Vec<_> { nss.iter().map(|n| sample_ns(n)).collect() };
    let before = sample();
    std::thread::sleep(Duration::from_secs_f64(window));
    let after = sample();
    let mut worst = Idle::default();
    for (b, a) in before.iter().zip(&after) {
        let cpu = (a.0 - b.0) / window * 100.0;
        worst.total += cpu;
        worst.rss = worst.rss.max(a.2);
        if cpu > worst.cpu {
            worst.cpu = cpu;
            worst.wakeups = (a.1 - b.1) / window;
            worst.udp_in = (a.3.0 - b.3.0) / window;
            worst.udp_out = (a.3.1 - b.3.1) / window;
        }
    }
    worst
}

/// Idle cost with 3 nodes and 16 VIPs, agents run with the `extra` flags.
fn idle_cost(bin: &std::path::Path, window: f64, extra: &[String]) -> Idle {
    let mut spec = Spec::new("wbi", [88, 200]);
    spec.vips4 = 16;
    spec.gate = !extra
        .windows(2)
        .any(|w| w[0] == "--fence" && w[1] == "address");
    spec.extra = extra
        .iter()
        .filter(|f| spec.gate || !f.starts_with("--fence") && *f != "address")
        .cloned()
        .collect();
    let mut c = Cluster::new(bin, spec).expect("lab");
    c.start_all().unwrap();
    c.wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .expect("converge");
    std::thread::sleep(Duration::from_secs(8));
    let nss: Vec<String> = c.lab.nodes.iter().map(|n| n.ns.clone()).collect();
    measure(&nss, window)
}

/// keepalived's idle cost on the same lab: 3 nodes, one VRRP instance per VIP (16),
/// masters spread over the nodes, every `advert_int` seconds (VRRPv3 when `v3`).
fn idle_keepalived(window: f64, advert_int: f64, v3: bool) -> Idle {
    use wackamole::lab::keepalived::keepalived_conf_many;
    let lab = Lab::new("kbi", 3, [89, 200]).expect("lab");
    let vips: Vec<IpAddr> = (0..16u8).map(|k| IpAddr::V4(lab.addr4(100 + k))).collect();
    let dir = std::env::temp_dir().join(format!("kbi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut kids: Vec<Child> = (0..3)
        .map(|i| {
            let conf = keepalived_conf_many(i, &lab, &vips, advert_int, v3, &dir);
            start_keepalived(&lab, i, &conf, &dir)
        })
        .collect();
    // Settled: every VIP on exactly one node.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20)
        && !vips.iter().all(|v| holders_k(&lab, *v).len() == 1)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(8));
    let nss: Vec<String> = lab.nodes.iter().map(|n| n.ns.clone()).collect();
    let got = measure(&nss, window);
    for k in kids.iter_mut() {
        signal_group(k.id() as i32, Signal::SIGKILL);
        let _ = k.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    got
}

/// Runs every configuration `runs` times, interleaved (A B A B …, so slow drifts of a
/// noisy machine hit all alike), and prints each one's medians. A configuration
/// `keepalived advert_int=S [v3]` runs keepalived instead of the agent.
fn idle_table(bin: &std::path::Path, window: f64, runs: usize, configs: &[String]) {
    let mut got: Vec<Vec<Idle>> = vec![Vec::new(); configs.len()];
    for _ in 0..runs {
        for (i, flags) in configs.iter().enumerate() {
            if let Some(rest) = flags.strip_prefix("keepalived") {
                let advert = rest
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("advert_int="))
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(1.0);
                let v3 = rest.split_whitespace().any(|w| w == "v3");
                got[i].push(idle_keepalived(window, advert, v3));
                continue;
            }
            // `bin=PATH` in a configuration runs that agent binary (A/B of two builds).
            let mut agent = bin.to_path_buf();
            let mut extra = Vec::new();
            for w in flags.split_whitespace() {
                match w.strip_prefix("bin=") {
                    Some(p) => agent = PathBuf::from(p),
                    None => extra.push(w.to_string()),
                }
            }
            got[i].push(idle_cost(&agent, window, &extra));
        }
    }
    println!(
        "\nidle, 3 nodes, 16 VIPs, busiest node (every process in its namespace), median of {runs} × {window:.0} s (runs interleaved):"
    );
    println!(
        "| configuration | busiest node, CPU % of a core | min–max | all 3 nodes | wake-ups/s | µs per wake-up | UDP datagrams/s out / in | RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let med =
        |v: &[Idle], f: fn(&Idle) -> f64| percentile(&v.iter().map(f).collect::<Vec<_>>(), 50.0);
    for (flags, v) in configs.iter().zip(&got) {
        let cpus: Vec<f64> = v.iter().map(|x| x.cpu).collect();
        let (cpu, wk) = (med(v, |x| x.cpu), med(v, |x| x.wakeups));
        println!(
            "| {} | {:.2} | {:.2}–{:.2} | {:.2} | {:.0} | {:.0} | {:.0} / {:.0} | {:.1} |",
            if flags.is_empty() {
                "wackamole (defaults)"
            } else {
                flags
            },
            cpu,
            cpus.iter().cloned().fold(f64::INFINITY, f64::min),
            cpus.iter().cloned().fold(0.0, f64::max),
            med(v, |x| x.total),
            wk,
            if wk > 0.0 {
                cpu / 100.0 / wk * 1e6
            } else {
                0.0
            },
            med(v, |x| x.udp_out),
            med(v, |x| x.udp_in),
            med(v, |x| x.rss),
        );
    }
    // Ratios to every keepalived configuration in the run.
    for (kf, kv) in configs.iter().zip(&got) {
        if !kf.starts_with("keepalived") {
            continue;
        }
        let k = med(kv, |x| x.cpu);
        for (flags, v) in configs.iter().zip(&got) {
            if flags.starts_with("keepalived") || k <= 0.0 {
                continue;
            }
            println!(
                "{} / {kf}: busiest node CPU ratio {:.2}",
                if flags.is_empty() {
                    "wackamole (defaults)"
                } else {
                    flags
                },
                med(v, |x| x.cpu) / k
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "failover_bench [--rounds N] [--vs keepalived] [--classes LIST|none] [--profiles LIST] [--idle-secs S] [--idle-runs N] [--idle-flags 'FLAGS;FLAGS…']\n\
             Needs root. Rounds of each fault class on 3 agents in network namespaces, then the idle cost\n\
             (of agents run with the extra FLAGS, e.g. '--profile lean' or '--fence address'; several\n\
             configurations separated by ';' run interleaved N times each; 'bin=PATH' picks the agent;\n\
             'keepalived advert_int=S [v3]' runs keepalived; --vs keepalived adds its default and 0.1 v3).\n\
             classes: machine-death,agent-kill,sigstop,leave   profiles: default,fast"
        );
        return;
    }
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rounds: usize = get("--rounds").and_then(|r| r.parse().ok()).unwrap_or(30);
    let vs = get("--vs");
    let classes: Vec<String> = get("--classes")
        .unwrap_or("machine-death,agent-kill,sigstop,leave".into())
        .split(',')
        .filter(|c| !c.is_empty() && *c != "none")
        .map(String::from)
        .collect();
    let profiles: Vec<String> = get("--profiles")
        .unwrap_or("default,fast".into())
        .split(',')
        .filter(|p| !p.is_empty() && *p != "none")
        .map(String::from)
        .collect();
    if let Err(why) = lab::available() {
        eprintln!("failover_bench: {why}");
        std::process::exit(77);
    }
    setup(vs.as_deref() == Some("keepalived"));
    let bin = lab::agent_binary();
    let mut results: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut idx = 1u8;
    for class in &classes {
        for p in &profiles {
            eprintln!("wackamole {p}, {class}, {rounds} rounds");
            results.insert(
                (class.clone(), format!("wackamole {p}")),
                bench_wackamole(&bin, p, class, rounds, idx),
            );
            idx += 1;
        }
        if vs.as_deref() == Some("keepalived") {
            eprintln!("keepalived (advert_int 1), {class}, {rounds} rounds");
            results.insert(
                (class.clone(), "keepalived".into()),
                bench_keepalived(class, rounds, idx),
            );
            idx += 1;
        }
    }
    println!(
        "\n| fault | system | rounds | client-seen failover p50 | p90 | max | unowned p50 | dual-answering samples | no recovery |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for ((class, sys), r) in &results {
        println!(
            "| {class} | {sys} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {} | {} | {} |",
            r.failover.len() + r.lost,
            percentile(&r.failover, 50.0) * 1000.0,
            percentile(&r.failover, 90.0) * 1000.0,
            percentile(&r.failover, 100.0) * 1000.0,
            if r.unowned.is_empty() {
                "—".into()
            } else {
                format!("{:.0} ms", percentile(&r.unowned, 50.0) * 1000.0)
            },
            r.dual,
            r.lost
        );
    }
    for class in &classes {
        if let (Some(w), Some(k)) = (
            results.get(&(class.clone(), "wackamole default".into())),
            results.get(&(class.clone(), "keepalived".into())),
        ) {
            let (a, b) = (percentile(&w.failover, 50.0), percentile(&k.failover, 50.0));
            println!(
                "{class}: keepalived p50 / wackamole default p50 = {:.1}×",
                b / a
            );
        }
    }
    let window: f64 = get("--idle-secs")
        .and_then(|r| r.parse().ok())
        .unwrap_or(30.0);
    if window <= 0.0 {
        return;
    }
    let runs: usize = get("--idle-runs")
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    // Configurations to compare, separated by `;` (an empty one is the defaults).
    let mut configs: Vec<String> = get("--idle-flags")
        .unwrap_or_default()
        .split(';')
        .map(|f| f.trim().to_string())
        .collect();
    // Beside keepalived: its default and the tuned VRRPv3 interval, in the same run.
    if vs.as_deref() == Some("keepalived") {
        configs.push("keepalived advert_int=1".into());
        configs.push("keepalived advert_int=0.1 v3".into());
    }
    idle_table(&bin, window, runs, &configs);
}
