//! Day two on a real host: what a firewall manager, an operator or a stray browser
//! does to a running agent (issue 10). Real agents in network namespaces, watched from
//! the kernels (every 5 ms) and from a client (ARP every 10 ms). After each event:
//! every VIP is answered by exactly one node again within 3 s, the agent is healthy
//! and stops on SIGTERM within 1 s, and no VIP was ever answered twice.
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them); without them every
//! test prints a loud SKIPPED line and passes. Test traffic stays inside the
//! namespaces each test creates and their loopbacks.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use wackamole::lab::cluster::{Cluster, Spec};
use wackamole::lab::watch::{Report, Watch};
use wackamole::lab::{self, enter};

const KERNEL_PERIOD: Duration = Duration::from_millis(5);
const CLIENT_PERIOD: Duration = Duration::from_millis(10);
/// Every VIP answered by exactly one node again within this after an event.
const RECOVERY: Duration = Duration::from_secs(3);
/// SIGTERM to exit.
const STOP: Duration = Duration::from_secs(1);
const OPS: &str = "127.0.0.1:9947";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wackamole"))
}

fn setup(prefix: &str, subnet: [u8; 2], tweak: impl FnOnce(&mut Spec)) -> Option<Cluster> {
    let mut c = Cluster::for_test(&bin(), prefix, subnet, tweak)?;
    let started = Instant::now();
    c.start_all().expect("start");
    converge(&c, &[0, 1, 2]);
    // A node started a few ms after the others may find them eligible when it
    // settles and wait out the fail-back delay (2 s) before it takes its share, a
    // balance move the cases below must not mistake for theirs: start from the
    // cluster as it is once every node is eligible.
    std::thread::sleep(Duration::from_millis(2600).saturating_sub(started.elapsed()));
    converge(&c, &[0, 1, 2]);
    Some(c)
}

fn converge(c: &Cluster, among: &[usize]) -> Duration {
    c.wait_converged(among, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no convergence: {:?}\n{}", c.holders(), c.logs()))
}

fn watch(c: &Cluster) -> Watch {
    Watch::start(&c.lab, &c.vips, true, KERNEL_PERIOD, CLIENT_PERIOD)
}

fn holder_of(c: &Cluster, vip: IpAddr) -> usize {
    let h = c.holders();
    assert_eq!(h[&vip].len(), 1, "{h:?}");
    h[&vip][0]
}

fn assert_no_duals(c: &Cluster, r: &Report, what: &str) {
    let (k, cl) = (r.kernel_duals(), r.client_duals());
    assert!(
        k.is_empty() && cl.is_empty(),
        "{what}: dual answering: kernel {k:?} client {cl:?}\n{}",
        c.logs()
    );
    assert!(
        r.rounds.len() > 50,
        "{what}: only {} client rounds",
        r.rounds.len()
    );
    eprintln!(
        "{what}: no dual answering in {} kernel samples and {} client rounds",
        r.samples.iter().sum::<u64>(),
        r.rounds.len()
    );
}

/// Every VIP answered by exactly one of `among` within [`RECOVERY`]; how long it took.
fn recovered(c: &Cluster, among: &[usize], what: &str) -> Duration {
    let t = Instant::now();
    while t.elapsed() < RECOVERY {
        let h = c.holders();
        if h.values().all(|w| w.len() == 1 && among.contains(&w[0])) {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "{what}: not recovered within {RECOVERY:?}: {:?}\n{}",
        c.holders(),
        c.logs()
    );
}

/// `wackamole ARGS` inside node `i`'s namespace: (exit code, stdout, stderr).
fn cli(c: &Cluster, i: usize, args: &[&str]) -> (i32, String, String) {
    c.cli(i, args)
}

/// The agent answers `/healthz` (through `wackamole health`, as a container's
/// HEALTHCHECK would), and SIGTERM stops it within [`STOP`].
fn healthy_then_stops(c: &mut Cluster, i: usize, what: &str) {
    let (code, out, err) = cli(c, i, &["health"]);
    assert_eq!(
        code,
        0,
        "{what}: n{i} not healthy: {out}{err}\n{}",
        c.log(i)
    );
    c.signal(i, Signal::SIGTERM).expect("signal");
    let exit = c.wait_exit(i, STOP).expect("wait");
    assert!(
        exit.is_some(),
        "{what}: n{i} did not stop within {STOP:?} of SIGTERM\n{}",
        c.log(i)
    );
    eprintln!("{what}: n{i} stopped {:?} after SIGTERM", exit.map(|e| e.1));
}

/// A raw HTTP exchange with node `i`'s listener from inside its namespace.
fn raw_http(c: &Cluster, i: usize, request: String) -> String {
    let ns = c.lab.nodes[i].ns.clone();
    std::thread::spawn(move || {
        enter(&ns).expect("setns");
        let mut s = TcpStream::connect(OPS).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(request.as_bytes()).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    })
    .join()
    .expect("http thread")
}

fn nft_in(c: &Cluster, i: usize, args: &[&str]) -> bool {
    c.lab.nodes[i]
        .command("nft")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Case 1: `nft flush ruleset` on the holder (a firewall reload: Debian's
/// /etc/nftables.conf starts with it). The agent re-creates its gate, keeps its
/// VIPs, keeps serving, and stops on SIGTERM.
#[test]
fn firewall_reload_on_the_holder() {
    let Some(mut c) = setup("wd01", [83, 1], |_| {}) else {
        return;
    };
    let w = watch(&c);
    std::thread::sleep(Duration::from_millis(300));
    let h = holder_of(&c, c.vips[0]);
    let before = c.holders();
    // Five reloads, 300 ms apart (a config-management run may reload repeatedly).
    for _ in 0..5 {
        assert!(nft_in(&c, h, &["flush", "ruleset"]), "nft flush ruleset");
        std::thread::sleep(Duration::from_millis(300));
    }
    let took = recovered(&c, &[0, 1, 2], "firewall reload");
    let back = Instant::now();
    while !(nft_in(&c, h, &["list", "table", "inet", "wackamole"])
        && nft_in(&c, h, &["list", "table", "arp", "wackamole"]))
    {
        assert!(
            back.elapsed() < RECOVERY,
            "the gate was not re-created\n{}",
            c.log(h)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The holder kept its VIPs: the gate came back under it.
    assert_eq!(c.holders(), before, "a reload moved VIPs\n{}", c.logs());
    std::thread::sleep(Duration::from_millis(500));
    let r = w.finish();
    assert_no_duals(&c, &r, "firewall reload");
    let log = c.log(h);
    let reinstalls = log.matches("gate tables are gone").count();
    assert!(
        (1..=5).contains(&reinstalls),
        "re-creation must be logged once per reload, got {reinstalls}\n{log}"
    );
    eprintln!("firewall reload: all VIPs answered once {took:?} after the last flush");
    healthy_then_stops(&mut c, h, "firewall reload");
}

/// Case 1b: the holder is held up longer than E − F (SIGSTOP for 110 ms: a VM
/// descheduled, a host under memory pressure) but far less than its lease. Its gate
/// entries expire meanwhile; on waking, each refresh finds its entry gone and the
/// group is re-armed in place under the lease (docs/safety.md §4.15): no fence, no
/// new claim, no move, never two holders.
#[test]
fn a_stall_past_the_gate_timeout_rearms_in_place() {
    let Some(c) = setup("wd10", [83, 10], |_| {}) else {
        return;
    };
    let w = watch(&c);
    std::thread::sleep(Duration::from_millis(300));
    let h = holder_of(&c, c.vips[0]);
    let before = c.holders();
    let held = before.values().filter(|w| w[0] == h).count();
    c.signal(h, Signal::SIGSTOP).expect("SIGSTOP");
    std::thread::sleep(Duration::from_millis(110));
    c.signal(h, Signal::SIGCONT).expect("SIGCONT");
    eprintln!(
        "SIGCONT at {}",
        std::process::Command::new("date")
            .arg("+%H:%M:%S.%6N")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    );
    let took = recovered(&c, &[0, 1, 2], "stall");
    std::thread::sleep(Duration::from_millis(500));
    let r = w.finish();
    assert_no_duals(&c, &r, "stall");
    assert_eq!(c.holders(), before, "a stall moved VIPs\n{}", c.logs());
    let log = c.full_log(h);
    for l in log.lines().filter(|l| l.contains("re-armed")) {
        eprintln!("{l}");
    }
    let rearmed = log.matches("re-armed under the lease").count();
    assert_eq!(
        rearmed, held,
        "each of the {held} held groups re-armed once\n{log}"
    );
    assert!(!log.contains("fenced"), "no fence\n{log}");
    let gap = r
        .rounds
        .iter()
        .filter(|round| {
            c.vips
                .iter()
                .any(|v| round.answers.get(v).is_none_or(|m| m.is_empty()))
        })
        .count();
    eprintln!(
        "stall of 110 ms: {held} groups re-armed, all answered {took:?} after SIGCONT, {gap} client rounds with a VIP unanswered"
    );
}

/// Case 2: the holder's interface is deleted, then re-created (new index). Its VIPs
/// move away at once; the agent stays healthy and, once the interface is back,
/// takes VIPs again (it follows the name, not the old index).
#[test]
fn interface_deleted_and_recreated() {
    let Some(mut c) = setup("wd02", [83, 2], |_| {}) else {
        return;
    };
    let w = watch(&c);
    std::thread::sleep(Duration::from_millis(300));
    let h = holder_of(&c, c.vips[0]);
    let others: Vec<usize> = (0..3).filter(|&i| i != h).collect();
    c.lab.unplug(h).expect("ip link del");
    let took = recovered(&c, &others, "interface deleted");
    eprintln!("interface deleted: VIPs answered by the others after {took:?}");
    let (code, out, err) = cli(&c, h, &["health"]);
    assert_eq!(
        code, 0,
        "agent without its interface must stay healthy: {out}{err}"
    );
    std::thread::sleep(Duration::from_millis(500));
    c.lab.replug(h).expect("re-create the interface");
    // It rejoins (SWIM's announce to down members), waits out the fail-back delay
    // and takes its share again: within the L1 bound of docs/safety.md §6 (7.5 s).
    let t = Instant::now();
    while !c.holders().values().any(|w| w == &vec![h]) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the agent never held a VIP again on the re-created interface: {:?}\n{}",
            c.holders(),
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    converge(&c, &[0, 1, 2]);
    eprintln!(
        "interface re-created: n{h} holds VIPs again after {:?}",
        t.elapsed()
    );
    let r = w.finish();
    assert_no_duals(&c, &r, "interface churn");
    healthy_then_stops(&mut c, h, "interface churn");
}

/// `--dynamic-interfaces` (keepalived's `dynamic_interfaces`): every agent starts
/// although one VIP lives on an interface that exists nowhere yet, the cluster holds
/// the other VIPs meanwhile, and the VIP is bound once the interface appears on one
/// node — there and nowhere else. Without the flag a missing interface is a usage
/// error (`tests/bad_input.rs::kernel_rows`).
#[test]
fn a_vip_interface_that_appears_after_start() {
    let late = "10.183.11.200";
    let Some(c) = setup("wd11", [83, 11], |s| {
        s.extra = vec![
            "--dynamic-interfaces".into(),
            "--vip".into(),
            format!("eth1:{late}"),
        ];
    }) else {
        return;
    };
    let has_late = |i: usize| {
        let out = Command::new("ip")
            .args(["-n", &c.lab.nodes[i].ns, "-4", "-o", "addr", "show"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(late)
    };
    for i in 0..3 {
        assert!(
            c.full_log(i).contains("no interface named \"eth1\""),
            "n{i} does not say it waits for eth1:\n{}",
            c.log(i)
        );
        assert!(!has_late(i), "n{i} holds {late} without its interface");
    }
    let ns = c.lab.nodes[1].ns.clone();
    for cmd in [
        vec![
            "ip", "-n", &ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
        ],
        vec![
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            "10.183.11.1/24",
            "dev",
            "eth1",
        ],
        vec!["ip", "-n", &ns, "link", "set", "eth1p", "up"],
        vec!["ip", "-n", &ns, "link", "set", "eth1", "up"],
    ] {
        lab::sh(&cmd).expect("make eth1");
    }
    let t = Instant::now();
    while !has_late(1) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{late} was never bound on the new interface:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("eth1 appeared: {late} bound after {:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !has_late(0) && !has_late(2),
        "{late} on a node without eth1"
    );
    converge(&c, &[0, 1, 2]);
}

/// A client that opens a connection and sends its request headers one byte at a
/// time, 300 ms apart, from inside namespace `ns`; returns when the server closed
/// the connection (or after `limit`), with how long it stayed open.
fn slow_client(
    ns: String,
    to: String,
    limit: Duration,
) -> std::thread::JoinHandle<Option<Duration>> {
    std::thread::spawn(move || {
        enter(&ns).ok()?;
        let mut s = TcpStream::connect(&to).ok()?;
        let t = Instant::now();
        let head =
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
        for b in head.iter().cycle() {
            if t.elapsed() > limit || s.write_all(&[*b]).is_err() {
                break;
            }
            let mut buf = [0u8; 256];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        Some(t.elapsed())
    })
}

/// Case 5: 64 slow clients from another host on the metrics port (reachable there,
/// as with the DaemonSet's node address) cannot make `wackamole health` fail: one
/// address gets at most a few slots, this host keeps a reserve, and the server cuts
/// a client whose headers do not arrive within its header timeout.
#[test]
fn slow_http_clients_do_not_starve_the_health_check() {
    let Some(mut c) = setup("wd05", [83, 5], |s| {
        s.extra = vec!["--metrics-addr".into(), "0.0.0.0:9947".into()];
    }) else {
        return;
    };
    let h = 0;
    let node = &c.lab.nodes[h];
    let remote = format!("{}:9947", node.addr);
    let limit = Duration::from_secs(8);
    let mut slow = Vec::new();
    for _ in 0..64 {
        slow.push(slow_client(c.lab.client.ns.clone(), remote.clone(), limit));
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let mut checks = 0;
    while t.elapsed() < Duration::from_secs(4) {
        let (code, out, err) = cli(&c, h, &["health"]);
        assert_eq!(code, 0, "health failed under slow clients: {out}{err}");
        checks += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let held: Vec<Duration> = slow
        .into_iter()
        .filter_map(|j| j.join().ok().flatten())
        .collect();
    let longest = held.iter().max().copied().unwrap_or_default();
    assert!(
        longest < Duration::from_secs(4),
        "a slow client kept its connection for {longest:?}"
    );
    eprintln!(
        "slow clients: {checks} health checks passed; {} slow connections, the longest lasted {longest:?}",
        held.len()
    );
    healthy_then_stops(&mut c, h, "slow clients");
}

/// Case 6: a browser on the node (or a page reaching it through a tunnel or a
/// DNS-rebinding name) cannot drain it; `wackamole drain` still can.
#[test]
fn cross_site_drain_is_refused() {
    let Some(mut c) = setup("wd06", [83, 6], |_| {}) else {
        return;
    };
    let draining = |c: &Cluster| {
        let (code, out, err) = cli(c, 0, &["status", "--json"]);
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
        v["node"]["draining"].as_bool().or(v["draining"].as_bool())
    };
    assert_eq!(draining(&c), Some(false));
    let forged = [
        // A page on another site: a "simple" POST needs no preflight.
        "POST /drain HTTP/1.1\r\nHost: 127.0.0.1:9947\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "POST /drain HTTP/1.1\r\nHost: 127.0.0.1:9947\r\nSec-Fetch-Site: cross-site\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        // DNS rebinding: same origin to the browser, but named, not addressed.
        "POST /drain HTTP/1.1\r\nHost: evil.example:9947\r\nOrigin: http://evil.example:9947\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        "POST /drain HTTP/1.1\r\nHost: evil.example:9947\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ];
    for req in forged {
        let answer = raw_http(&c, 0, req.to_string());
        assert!(
            answer.starts_with("HTTP/1.1 403"),
            "forged drain not refused: {req:?} → {answer}"
        );
    }
    assert_eq!(
        draining(&c),
        Some(false),
        "a forged request drained the node"
    );
    let (code, out, err) = cli(&c, 0, &["drain"]);
    assert_eq!(code, 0, "the CLI's drain must still work: {out}{err}");
    assert_eq!(draining(&c), Some(true));
    let (code, out, err) = cli(&c, 0, &["undrain"]);
    assert_eq!(code, 0, "{out}{err}");
    healthy_then_stops(&mut c, 0, "cross-site drain");
}

/// Case 8: a hook that outlives `--hook-timeout` is killed with its whole process
/// group (`sleep 31 | cat` left `sleep` running when only `sh` was killed).
#[test]
fn hook_timeout_kills_the_whole_pipeline() {
    let marker = format!("31.{}", std::process::id());
    let hook = format!("sleep {marker} | cat");
    let Some(mut c) = setup("wd08", [83, 8], |s| {
        s.extra = vec![
            "--on-acquire".into(),
            hook.clone(),
            "--hook-timeout".into(),
            "1s".into(),
        ];
    }) else {
        return;
    };
    let running = || {
        Command::new("pgrep")
            .args(["-f", &format!("^sleep {marker}$")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    // The acquire hooks ran (one per VIP).
    let t = Instant::now();
    while !running() && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // One hook per group at a time, at most two groups per node here: all timed out
    // and killed within 2 × the timeout, plus margin.
    let t = Instant::now();
    while running() {
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "`sleep` of a timed-out hook still runs\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.logs().contains("hook timed out"), "{}", c.logs());
    eprintln!(
        "hook timeout: no process of a timed-out hook left after {:?}",
        t.elapsed()
    );
    healthy_then_stops(&mut c, 0, "hook timeout");
}

fn status_of(c: &Cluster, i: usize) -> serde_json::Value {
    let (code, out, err) = cli(c, i, &["status", "--json"]);
    assert_eq!(code, 0, "n{i} status: {out}{err}");
    serde_json::from_str(&out).expect("status JSON")
}

fn ready(c: &Cluster, i: usize) -> bool {
    cli(c, i, &["health", "--ready"]).0 == 0
}

/// Case 9: a second agent with an existing node name, on another host. Both say so
/// loudly (log, metric, `/readyz` false), neither holds a VIP while both run, and
/// once the intruder is gone the original takes its share again.
#[test]
fn two_agents_with_one_name_are_refused() {
    let Some(mut c) = setup("wd09", [83, 9], |_| {}) else {
        return;
    };
    let w = watch(&c);
    std::thread::sleep(Duration::from_millis(300));
    // The intruder: n1's flags on the client's host (its own address and interface).
    let client = c.lab.client.clone();
    let mut args = c.args(1);
    let at = args.iter().position(|a| a == "--bind").unwrap() + 1;
    args[at] = format!("{}:7946", client.addr);
    let log = c.dir.join("intruder.log");
    let mut intruder = Command::new("ip")
        .args(["netns", "exec", &client.ns])
        .arg(bin())
        .args(&args)
        .env("WACKAMOLE_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .expect("start the intruder");
    let intruder_ready = || {
        Command::new("ip")
            .args(["netns", "exec", &client.ns])
            .arg(bin())
            .args(["health", "--ready"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let t = Instant::now();
    loop {
        let both = c.log(1).contains("another agent runs with the node name")
            && std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("another agent runs with the node name");
        if both && !ready(&c, 1) && !intruder_ready() {
            break;
        }
        assert!(
            t.elapsed() < RECOVERY,
            "the collision was not detected on both within {RECOVERY:?}\n{}\n--- intruder:\n{}",
            c.logs(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("name collision: detected on both after {:?}", t.elapsed());
    let st = status_of(&c, 1);
    assert_eq!(st["node"]["name_collision"].as_bool(), Some(true), "{st}");
    // The other two serve every VIP; neither process named n1 holds one.
    let took = recovered(&c, &[0, 2], "name collision");
    eprintln!("name collision: n0 and n2 answer every VIP after {took:?}");
    let vips: Vec<String> = c.vips.iter().map(|v| v.to_string()).collect();
    let held_by_intruder = client
        .run(&["ip", "-o", "addr", "show"])
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert!(
        !vips
            .iter()
            .any(|v| held_by_intruder.contains(&format!(" {v}/"))),
        "the intruder bound a VIP: {held_by_intruder}"
    );
    // The intruder goes; n1 is ready and holds VIPs again.
    let _ = intruder.kill();
    let _ = intruder.wait();
    let t = Instant::now();
    while !(ready(&c, 1) && c.holders().values().any(|w| w == &vec![1])) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "n1 never recovered after the intruder left\n{}",
            c.log(1)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "name collision: n1 ready and holding again {:?} after the intruder left",
        t.elapsed()
    );
    let r = w.finish();
    assert_no_duals(&c, &r, "name collision");
    healthy_then_stops(&mut c, 1, "name collision");
}

/// Case 7: a node restarted with its wall clock a day behind (after a drain) must
/// rejoin at once, with its new state: peers must not keep its predecessor's
/// identity and "draining" metadata because those carry a later timestamp.
#[test]
fn restart_with_the_wall_clock_a_day_behind() {
    if !wackamole::lab::installed("faketime") {
        wackamole::lab::skip(
            "clock test",
            "faketime is not installed (.ci/run installs it with apt-get)",
        );
        return;
    }
    let Some(mut c) = setup("wd07", [83, 7], |_| {}) else {
        return;
    };
    let (code, out, err) = cli(&c, 1, &["drain"]);
    assert_eq!(code, 0, "{out}{err}");
    c.signal(1, Signal::SIGTERM).unwrap();
    assert!(c.wait_exit(1, STOP).unwrap().is_some(), "n1 did not stop");
    std::thread::sleep(Duration::from_millis(500));
    c.start_wrapped(
        1,
        &[
            "env",
            "FAKETIME_DONT_FAKE_MONOTONIC=1",
            "faketime",
            "-f",
            "-1d",
        ],
        &[],
    )
    .expect("restart n1 a day in the past");
    let t = Instant::now();
    loop {
        let st = status_of(&c, 0);
        let n1 = st["members"]
            .as_array()
            .and_then(|m| m.iter().find(|x| x["name"] == "n1").cloned())
            .unwrap_or_default();
        let seen_fresh = n1["state"] == "alive" && n1["draining"] == false;
        if seen_fresh && c.holders().values().any(|w| w == &vec![1]) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(12),
            "n1 (clock a day behind) not back: n0 sees {n1}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "clock a day behind: n1 alive, not draining and holding after {:?}",
        t.elapsed()
    );
    healthy_then_stops(&mut c, 1, "clock behind");
}
