//! A pool change rolled through a running 3-node cluster, three ways in one run, as a
//! client sees it (an ARP request for every VIP every 10 ms): wackamole reloads,
//! wackamole rolling restarts, keepalived rewritten + SIGHUP.
//!
//! ```sh
//! sudo cargo run --release --example reload_bench [-- --runs N] [--only reload|restart|keepalived]
//! ```
//!
//! The change (issue 12): 6 VIPs, one group each, become: 3 untouched, 1 removed, 1
//! address moved into another VIP's group, 2 added. Applied node by node 3 s apart,
//! 2 s after the client starts; figures from the first change to 6 s after the last.
//! Needs root, iproute2 and nftables; installs keepalived (Debian) if missing.

use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use wackamole::lab::cluster::{Cluster, pool_toml};
use wackamole::lab::watch::{Report, Watch};
use wackamole::lab::{self, Lab};

const STEP: Duration = Duration::from_secs(3);
const KERNEL_PERIOD: Duration = Duration::from_millis(5);
const CLIENT_PERIOD: Duration = Duration::from_millis(10);

/// What one way of rolling the change did, client-side.
#[derive(Default, Debug)]
struct Row {
    untouched_unanswered_ms: f64,
    untouched_worst_ms: f64,
    untouched_changes: usize,
    dual_rounds: usize,
    added_ms: Vec<f64>,
    removed_ms: Option<f64>,
}

fn figures(r: &Report, v: &[IpAddr], first: f64, last: f64) -> Row {
    let ms = CLIENT_PERIOD.as_secs_f64() * 1000.0;
    let rounds: Vec<_> = r.rounds.iter().filter(|x| x.t >= first).collect();
    let mut row = Row::default();
    for a in &v[..3] {
        let mut unanswered = 0;
        let mut prev = None;
        for x in &rounds {
            match x.answers.get(a).filter(|m| !m.is_empty()) {
                None => unanswered += 1,
                Some(m) => {
                    if prev.as_ref().is_some_and(|p| p != m) {
                        row.untouched_changes += 1;
                    }
                    prev = Some(m.clone());
                }
            }
        }
        let u = unanswered as f64 * ms;
        row.untouched_unanswered_ms += u;
        row.untouched_worst_ms = row.untouched_worst_ms.max(u);
    }
    row.dual_rounds = rounds
        .iter()
        .filter(|x| x.answers.values().any(|m| m.len() > 1))
        .count();
    for a in [v[6], v[7]] {
        if let Some(t) = r.first_answer_after(a, first, None) {
            row.added_ms.push((t - first) * 1000.0);
        }
    }
    let after: Vec<_> = r.rounds.iter().filter(|x| x.t >= last).collect();
    let answered =
        |x: &&wackamole::lab::watch::Round| x.answers.get(&v[3]).is_some_and(|m| !m.is_empty());
    row.removed_ms = match after.iter().rposition(answered) {
        None => after.first().map(|x| (x.t - last) * 1000.0),
        Some(i) => after.get(i + 1).map(|x| (x.t - last) * 1000.0),
    };
    row
}

/// Waits until the six initial VIPs are each held by one node and stay put for 3 s.
fn calm(c: &Cluster, v: &[IpAddr]) {
    let six = |c: &Cluster| {
        let h = c.holders();
        v[..6].iter().map(|a| h[a].clone()).collect::<Vec<_>>()
    };
    let (mut last, mut since) = (six(c), std::time::Instant::now());
    let t = std::time::Instant::now();
    while since.elapsed() < Duration::from_secs(3) || last.iter().any(|h| h.len() != 1) {
        if t.elapsed() > Duration::from_secs(30) {
            eprintln!("never calm: {last:?}\n{}", c.logs());
            std::process::exit(70);
        }
        std::thread::sleep(Duration::from_millis(50));
        let h = six(c);
        if h != last {
            (last, since) = (h, std::time::Instant::now());
        }
    }
}

/// wackamole: every node's file rewritten, then `reload` (true) or a restart (false).
fn bench_wackamole(prefix: &str, subnet: u8, reload: bool) -> Row {
    let bin = lab::agent_binary();
    let mut c = Cluster::for_test(&bin, prefix, [10, subnet], |s| {
        s.vips4 = 8;
        s.vip_flag = false;
    })
    .expect("lab");
    let v = c.vips.clone();
    let before = pool_toml(&v[..6], &[]);
    let after = pool_toml(&[v[0], v[1], v[2], v[6], v[7]], &[&[v[4], v[5]]]);
    let file = |c: &Cluster, i: usize| c.dir.join(format!("n{i}.toml"));
    for i in 0..3 {
        std::fs::write(file(&c, i), &before).expect("write");
        let f = file(&c, i).display().to_string();
        c.start_with(i, &["--config", &f]).expect("start");
    }
    calm(&c, &v);
    let w = Watch::start(&c.lab, &v, true, KERNEL_PERIOD, CLIENT_PERIOD);
    std::thread::sleep(Duration::from_secs(2));
    let mut at = Vec::new();
    for i in 0..3 {
        std::fs::write(file(&c, i), &after).expect("write");
        at.push(w.now());
        if reload {
            let out = c.lab.nodes[i]
                .command(bin.to_str().expect("path"))
                .arg("reload")
                .output()
                .expect("reload");
            if !out.status.success() {
                eprintln!("n{i}: {}", String::from_utf8_lossy(&out.stderr));
            }
        } else {
            let _ = c.signal(i, Signal::SIGTERM);
            let _ = c.wait_exit(i, Duration::from_secs(2));
            let f = file(&c, i).display().to_string();
            c.start_with(i, &["--config", &f]).expect("restart");
        }
        std::thread::sleep(STEP);
    }
    std::thread::sleep(Duration::from_secs(3));
    let r = w.finish();
    let row = figures(&r, &v, at[0], at[2]);
    if row.untouched_unanswered_ms > 0.0 || row.untouched_changes > 0 {
        // Say what the agents saw.
        for line in c.logs().lines().filter(|l| {
            ["fenced", "released", "acquired", "lapsed", "reload"]
                .iter()
                .any(|k| l.contains(k))
        }) {
            eprintln!("  {line}");
        }
    }
    row
}

fn keepalived_conf(i: usize, lab: &Lab, groups: &[(String, Vec<IpAddr>)]) -> String {
    let prio = 150 - 10 * i as u32;
    let ifname = &lab.nodes[i].ifname;
    let mut text = format!("global_defs {{\n  router_id n{i}\n  enable_script_security\n}}\n");
    for (k, (name, vips)) in groups.iter().enumerate() {
        let addrs: String = vips
            .iter()
            .map(|a| format!("    {a}/32 dev {ifname}\n"))
            .collect();
        text.push_str(&format!(
            "vrrp_instance {name} {{\n  state BACKUP\n  interface {ifname}\n  virtual_router_id {}\n  priority {prio}\n  advert_int 1\n  virtual_ipaddress {{\n{addrs}  }}\n}}\n",
            60 + k
        ));
    }
    text
}

fn start_keepalived(lab: &Lab, i: usize, conf: &Path, dir: &Path) -> Child {
    lab.nodes[i]
        .command("keepalived")
        .args(["--dont-fork", "--log-console", "--vrrp", "-f"])
        .arg(conf)
        .arg("-p")
        .arg(dir.join(format!("k{i}.pid")))
        .arg("-r")
        .arg(dir.join(format!("v{i}.pid")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("keepalived")
}

/// keepalived 2.2 (Debian), one VRRP instance per VIP group, priorities 150/140/130
/// (its own process group: the VRRP child follows the parent):
/// each node's configuration rewritten, then SIGHUP to its parent, 3 s apart.
fn bench_keepalived(prefix: &str, subnet: u8) -> Row {
    let lab = Lab::new(prefix, 3, [10, subnet]).expect("lab");
    let v: Vec<IpAddr> = (0..8).map(|k| IpAddr::V4(lab.addr4(100 + k))).collect();
    let dir: PathBuf = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let name = |a: &IpAddr| format!("VI_{}", a.to_string().replace('.', "_"));
    let before: Vec<(String, Vec<IpAddr>)> = v[..6].iter().map(|a| (name(a), vec![*a])).collect();
    // Instance names follow the groups: the untouched keep theirs (and their
    // virtual_router_id), the merged group is v5's instance with v4 added.
    let mut after: Vec<(String, Vec<IpAddr>)> = vec![
        (name(&v[0]), vec![v[0]]),
        (name(&v[1]), vec![v[1]]),
        (name(&v[2]), vec![v[2]]),
        (name(&v[5]), vec![v[4], v[5]]),
        (name(&v[6]), vec![v[6]]),
        (name(&v[7]), vec![v[7]]),
    ];
    // Keep each instance's router id where it was.
    let rid = |n: &str, list: &[(String, Vec<IpAddr>)]| list.iter().position(|(x, _)| x == n);
    after.sort_by_key(|(n, _)| rid(n, &before).unwrap_or(usize::MAX));
    let confs: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("n{i}.conf"))).collect();
    for (i, conf) in confs.iter().enumerate() {
        std::fs::write(conf, keepalived_conf(i, &lab, &before)).expect("write");
    }
    let mut kids: Vec<Child> = (0..3)
        .map(|i| start_keepalived(&lab, i, &confs[i], &dir))
        .collect();
    std::thread::sleep(Duration::from_secs(6));
    let w = Watch::start(&lab, &v, false, KERNEL_PERIOD, CLIENT_PERIOD);
    std::thread::sleep(Duration::from_secs(2));
    let mut at = Vec::new();
    for i in 0..3 {
        // The instance that had v4 alone is gone; the others keep their ids.
        std::fs::write(&confs[i], keepalived_conf(i, &lab, &after)).expect("write");
        at.push(w.now());
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(kids[i].id() as i32),
            Signal::SIGHUP,
        );
        std::thread::sleep(STEP);
    }
    std::thread::sleep(Duration::from_secs(3));
    let r = w.finish();
    for k in &mut kids {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(k.id() as i32), Signal::SIGKILL);
        let _ = k.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    figures(&r, &v, at[0], at[2])
}

fn setup() {
    let mut need = Vec::new();
    for (bin, pkg) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("keepalived", "keepalived"),
    ] {
        if !lab::installed(bin) {
            need.push(pkg);
        }
    }
    if !need.is_empty() {
        eprintln!("installing {need:?} …");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let ok = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&need)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("could not install {need:?}");
            std::process::exit(69);
        }
    }
}

fn fmt_ms(v: &[f64]) -> String {
    if v.is_empty() {
        return "never".into();
    }
    let lo = v.iter().cloned().fold(f64::MAX, f64::min);
    let hi = v.iter().cloned().fold(0.0, f64::max);
    format!("{:.0}–{:.0} ms", lo, hi)
}

fn main() {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // `--only reload|restart|keepalived`: one row.
    let only: Option<String> = std::env::args().skip_while(|a| a != "--only").nth(1);
    let want = |k: &str| only.as_deref().is_none_or(|o| o == k);
    if let Err(why) = lab::available() {
        eprintln!("reload_bench needs root and iproute2: {why}");
        std::process::exit(77);
    }
    setup();
    let mut rows: Vec<(&str, Vec<Row>)> = vec![
        ("wackamole, `wackamole reload` node by node", vec![]),
        ("wackamole, rolling restart", vec![]),
        ("keepalived 2.2, rewritten + SIGHUP", vec![]),
    ];
    for run in 0..runs {
        let s = 90 + (run % 20) as u8 * 3;
        if want("reload") {
            eprintln!("run {}: wackamole reload", run + 1);
            rows[0].1.push(bench_wackamole("rbr", s, true));
        }
        if want("restart") {
            eprintln!("run {}: wackamole rolling restart", run + 1);
            rows[1].1.push(bench_wackamole("rbs", s + 1, false));
        }
        if want("keepalived") {
            eprintln!("run {}: keepalived SIGHUP", run + 1);
            rows[2].1.push(bench_keepalived("rbk", s + 2));
        }
    }
    println!(
        "| same change, 3 nodes, node by node 3 s apart ({runs} run(s)) | untouched VIPs: unanswered sum / worst VIP | untouched: holder changes | dual-answering rounds | added VIPs answered after the first change | removed VIP silent after the last change |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, rs) in rows.iter().filter(|(_, rs)| !rs.is_empty()) {
        let sum: Vec<f64> = rs.iter().map(|r| r.untouched_unanswered_ms).collect();
        let worst: Vec<f64> = rs.iter().map(|r| r.untouched_worst_ms).collect();
        let changes: usize = rs.iter().map(|r| r.untouched_changes).sum();
        let duals: usize = rs.iter().map(|r| r.dual_rounds).sum();
        let added: Vec<f64> = rs.iter().flat_map(|r| r.added_ms.clone()).collect();
        let removed: Vec<f64> = rs.iter().filter_map(|r| r.removed_ms).collect();
        println!(
            "| {name} | {} / {} | {changes} | {duals} | {} | {} |",
            fmt_ms(&sum),
            fmt_ms(&worst),
            fmt_ms(&added),
            fmt_ms(&removed)
        );
    }
}
