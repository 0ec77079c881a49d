//! Live configuration (issue 12): agents started with `--config FILE` in network
//! namespaces, changed by rewriting files and reloading (SIGHUP, `wackamole reload`),
//! watched from the kernels (every 5 ms) and from a client (ARP every 10 ms).
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them); without them every
//! test prints a loud SKIPPED line and passes. Test traffic stays inside the
//! namespaces each test creates and their loopbacks.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use wackamole::lab::cluster::{Cluster, pool_toml};
use wackamole::lab::enter;
use wackamole::lab::watch::{Report, Watch};

const KERNEL_PERIOD: Duration = Duration::from_millis(5);
const CLIENT_PERIOD: Duration = Duration::from_millis(10);
const OPS: &str = "127.0.0.1:9947";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wackamole"))
}

/// `wackamole ARGS` inside node `i`'s namespace: (exit code, stdout, stderr).
fn cli(c: &Cluster, i: usize, args: &[&str]) -> (i32, String, String) {
    c.cli(i, args)
}

fn http_get(c: &Cluster, i: usize, path: &str) -> String {
    let ns = c.lab.nodes[i].ns.clone();
    let req = format!("GET {path} HTTP/1.0\r\nHost: {OPS}\r\n\r\n");
    std::thread::spawn(move || {
        enter(&ns).expect("setns");
        let mut s = TcpStream::connect(OPS).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(req.as_bytes()).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    })
    .join()
    .expect("http thread")
}

fn status(c: &Cluster, i: usize) -> serde_json::Value {
    serde_json::from_str(&http_get(c, i, "/status")).expect("status JSON")
}

/// The sum of a counter's series on node `i` whose line contains `filter`.
fn counter(c: &Cluster, i: usize, name: &str, filter: &str) -> f64 {
    http_get(c, i, "/metrics")
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Node `i`'s config file.
fn file(c: &Cluster, i: usize) -> PathBuf {
    c.dir.join(format!("n{i}.toml"))
}

fn start(c: &mut Cluster, body: &str) {
    let all: Vec<usize> = (0..c.lab.nodes.len()).collect();
    for &i in &all {
        std::fs::write(file(c, i), body).expect("write config");
        let f = file(c, i).display().to_string();
        c.start_with(i, &["--config", &f]).expect("start");
    }
    c.wait_converged(&all, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no convergence: {:?}\n{}", c.holders(), c.logs()));
    // Converged is not calm yet: a node that joined last takes its share after the
    // fail-back delay. Wait until the holders stay put for 3 s.
    let (mut last, mut since) = (c.holders(), std::time::Instant::now());
    let t = std::time::Instant::now();
    while since.elapsed() < Duration::from_secs(3) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "never calm\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
        let h = c.holders();
        if h != last {
            (last, since) = (h, std::time::Instant::now());
        }
    }
}

/// A gap this long between two of the client's own rounds means the machine itself
/// stalled (a descheduled VM: the client, the harness and every agent at once),
/// longer than the E − F a gate refresh may be late (default profile).
const MACHINE_STALL: f64 = 0.040;
/// After such a stall the agents' gate entries may have lapsed; each is re-armed
/// under its lease at the agent's first wake-up (docs/safety.md §4.15). Unanswered
/// rounds this soon after a stall are the stall's, not the reload's.
const AFTER_STALL: f64 = 0.100;

/// Client-seen interruptions: (rounds in which some VIP got no answer, changes of
/// the answering MAC of a VIP between answered rounds, unanswered VIP-rounds right
/// after a stall of the whole machine).
fn interruptions(r: &Report, vips: &[IpAddr]) -> (usize, usize, usize) {
    let mut unanswered = 0;
    let mut after_stall = 0;
    let mut last: BTreeMap<IpAddr, _> = BTreeMap::new();
    let mut changes = 0;
    let mut stall_end = f64::NEG_INFINITY;
    let mut prev = f64::NEG_INFINITY;
    for round in &r.rounds {
        if round.t - prev > MACHINE_STALL && prev.is_finite() {
            eprintln!(
                "the client itself stalled {:.0} ms at {:.3} s",
                (round.t - prev) * 1e3,
                prev
            );
            stall_end = round.t;
        }
        prev = round.t;
        for v in vips {
            match round.answers.get(v).filter(|m| !m.is_empty()) {
                None if round.t - stall_end <= AFTER_STALL => after_stall += 1,
                None => unanswered += 1,
                Some(m) => {
                    if last.get(v).is_some_and(|x| x != m) {
                        changes += 1;
                    }
                    last.insert(*v, m.clone());
                }
            }
        }
    }
    (unanswered, changes, after_stall)
}

fn assert_calm(c: &Cluster, r: &Report, what: &str) {
    let (k, cl) = (r.kernel_duals(), r.client_duals());
    assert!(
        k.is_empty() && cl.is_empty(),
        "{what}: dual answering: kernel {k:?} client {cl:?}\n{}",
        c.logs()
    );
    let (unanswered, changes, after_stall) = interruptions(r, &c.vips);
    if after_stall > 0 {
        eprintln!("{what}: {after_stall} VIP-rounds unanswered right after a stall of the machine");
    }
    assert!(r.rounds.len() > 100, "{what}: {} rounds", r.rounds.len());
    assert_eq!(
        (unanswered, changes),
        (0, 0),
        "{what}: client saw interruptions (unanswered VIP-rounds, holder changes)\n{}",
        c.logs()
    );
    eprintln!(
        "{what}: {} client rounds, 0 unanswered, 0 holder changes, 0 dual",
        r.rounds.len()
    );
}

/// Key rotation by three rolling reloads (add the new key, make it first, drop the
/// old), by SIGHUP, while a client watches: no interruption, no datagram dropped for
/// its key, no VIP answered twice.
#[test]
fn key_rotation_by_rolling_reloads() {
    let Some(mut c) = Cluster::for_test(&bin(), "wmrk", [10, 71], |_| {}) else {
        return;
    };
    start(&mut c, "weight = 1\n");
    let key = c.dir.join("key");
    let old = std::fs::read_to_string(&key).expect("key");
    let old = old.trim();
    let new: String = (0..32).map(|i| format!("{:02x}", 0xa0 + i)).collect();
    let w = Watch::start(&c.lab, &c.vips, true, KERNEL_PERIOD, CLIENT_PERIOD);
    std::thread::sleep(Duration::from_millis(500));
    // One key file shared by the three agents here: each step is written once and
    // reloaded node by node, 300 ms apart, as a rollout would.
    for (k, step) in [
        format!("{old}\n{new}\n"),
        format!("{new}\n{old}\n"),
        format!("{new}\n"),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&key, step).expect("key");
        for i in 0..3 {
            c.signal(i, Signal::SIGHUP).expect("SIGHUP");
            std::thread::sleep(Duration::from_millis(300));
            if k == 0 && i == 0 {
                // Half-way through the rollout the drift shows: n1 sees that n0's
                // keyring differs from its own.
                let seen = || {
                    let st = status(&c, 1);
                    st["drift"]["members"].as_array().is_some_and(|m| {
                        m.len() == 1 && m[0]["name"] == "n0" && m[0]["differs"][0] == "keys"
                    })
                };
                let t = std::time::Instant::now();
                while !seen() && t.elapsed() < Duration::from_secs(3) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                assert!(seen(), "n1 shows n0's keyring drift: {}", status(&c, 1));
                assert_eq!(counter(&c, 1, "wackamole_config_drift_members", ""), 1.0);
                let (_, out, _) = cli(&c, 1, &["status"]);
                assert!(out.contains("differs: keys"), "{out}");
            }
        }
    }
    // Rolled through: no drift left.
    let t = std::time::Instant::now();
    while counter(&c, 1, "wackamole_config_drift_members", "") != 0.0
        && t.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(counter(&c, 1, "wackamole_config_drift_members", ""), 0.0);
    assert_eq!(counter(&c, 1, "wackamole_config_pool_digests", ""), 1.0);
    std::thread::sleep(Duration::from_secs(1));
    let r = w.finish();
    assert_calm(&c, &r, "key rotation");
    for i in 0..3 {
        let drops = counter(&c, i, "wackamole_datagram_drops_total", "");
        assert_eq!(drops, 0.0, "n{i} dropped datagrams\n{}", c.log(i));
        let applied = counter(&c, i, "wackamole_config_reloads_total", "applied");
        assert_eq!(applied, 3.0, "n{i}: three reloads applied\n{}", c.log(i));
        let s = status(&c, i);
        assert_eq!(s["config"]["last_reload"]["result"], "applied", "{s}");
    }
}

/// Bad files on reload: each refused with its reason by `wackamole reload` (exit 78)
/// and in `/status`, nothing changed, the agent keeps serving; then a good change
/// (weight) is applied, and a second identical reload changes nothing.
#[test]
fn bad_files_change_nothing_and_good_ones_apply() {
    let Some(mut c) = Cluster::for_test(&bin(), "wmrb", [10, 72], |s| s.voters_flag = false) else {
        return;
    };
    const V: &str = "voters = [\"n0\", \"n1\", \"n2\"]\n";
    let good = format!("{V}weight = 1\ncheck-interval = \"2s\"\n");
    start(&mut c, &good);
    let w = Watch::start(&c.lab, &c.vips, true, KERNEL_PERIOD, CLIENT_PERIOD);
    let cases: &[(&str, &str)] = &[
        ("weight = \n", "n0.toml:2"),
        (
            "wieght = 2\n",
            "unknown key `wieght` (did you mean `weight`?)",
        ),
        (
            "weight = 2\nvip-group = [[\"10.71.0.300\", \"10.71.0.2\"]]\n",
            "n0.toml:3: --vip-group: \"10.71.0.300\" is not an IP address",
        ),
        (
            "weight = 2\nprofile = \"fast\"\n",
            "needs a restart: timing",
        ),
        (
            "weight = 2\nfence = \"address\"\n",
            "needs a restart: fence",
        ),
        (
            // Two voters changed at once: a replacement is two steps.
            "#voters = [\"n0\", \"n1\", \"n3\"]\nweight = 2\n",
            "a reload may add or remove one voter at a time",
        ),
    ];
    for (body, reason) in cases {
        let body = match body.strip_prefix('#') {
            Some(own_voters) => own_voters.to_string(),
            None => format!("{V}{body}"),
        };
        std::fs::write(file(&c, 0), &body).expect("write");
        let (code, out, err) = cli(&c, 0, &["reload"]);
        assert_eq!(code, 78, "{body:?}: exit {code}: {out}{err}");
        assert!(err.contains(reason), "{body:?}: {err}");
        let s = status(&c, 0);
        assert_eq!(s["config"]["last_reload"]["result"], "refused", "{s}");
        assert!(
            s["config"]["last_reload"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(reason)),
            "{s}"
        );
        eprintln!("refused as expected: {}", err.trim());
    }
    // SIGHUP with a bad file: refused, logged, the agent lives on.
    c.signal(0, Signal::SIGHUP).expect("SIGHUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cli(&c, 0, &["health"]).0, 0, "{}", c.log(0));
    assert!(c.log(0).contains("reload refused"), "{}", c.log(0));
    std::thread::sleep(Duration::from_millis(1500));
    let r = w.finish();
    assert_calm(&c, &r, "refused reloads");
    assert_eq!(
        counter(&c, 0, "wackamole_config_reloads_total", "refused"),
        7.0
    );
    // A good change applies; the same file again changes nothing.
    std::fs::write(
        file(&c, 0),
        format!("{V}weight = 2\ncheck-interval = \"2s\"\n"),
    )
    .expect("write");
    let (code, out, err) = cli(&c, 0, &["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied: weight 1 → 2"), "{out}");
    let (code, out, _) = cli(&c, 0, &["reload"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing changed"), "{out}");
    // Gossip carries it to the others.
    let weight_seen = || {
        let st = status(&c, 1);
        st["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == "n0"))
            .map(|m| m["weight"] == 2)
            .unwrap_or(false)
    };
    let t = std::time::Instant::now();
    while !weight_seen() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(weight_seen(), "n1 sees n0's new weight\n{}", c.logs());
    eprintln!("n1 saw n0's new weight after {:?}", t.elapsed());
}

/// The first client round at or after `t` from which `vip` is never answered again.
fn silent_from(r: &Report, vip: IpAddr, t: f64) -> Option<f64> {
    let rounds: Vec<_> = r.rounds.iter().filter(|x| x.t >= t).collect();
    let answered =
        |x: &&wackamole::lab::watch::Round| x.answers.get(&vip).is_some_and(|m| !m.is_empty());
    match rounds.iter().rposition(answered) {
        None => rounds.first().map(|x| x.t),
        Some(i) => rounds.get(i + 1).map(|x| x.t),
    }
}

/// The bench's change by rolling reloads, node by node 3 s apart, watched by a client
/// (ARP every 10 ms): add 2 VIPs, remove 1, move 1 address into another group.
/// Untouched VIPs: no holder change, no unanswered round, no dual answering; the
/// added VIPs answered within 1 s of the first reload; the removed one silent within
/// 1 s of the last.
#[test]
fn rolling_pool_change_by_reload() {
    let Some(mut c) = Cluster::for_test(&bin(), "wmrp", [10, 73], |s| {
        s.vips4 = 8;
        s.vip_flag = false;
    }) else {
        return;
    };
    let v = c.vips.clone(); // .100 … .107
    let before = pool_toml(&v[..6], &[]);
    let after = pool_toml(&[v[0], v[1], v[2], v[6], v[7]], &[&[v[4], v[5]]]);
    for i in 0..3 {
        std::fs::write(file(&c, i), &before).expect("write config");
        let f = file(&c, i).display().to_string();
        c.start_with(i, &["--config", &f]).expect("start");
    }
    // Calm: the six served, the holders put for 3 s.
    let six = |c: &Cluster| {
        let h = c.holders();
        v[..6].iter().map(|a| h[a].clone()).collect::<Vec<_>>()
    };
    let (mut last, mut since) = (six(&c), std::time::Instant::now());
    let t = std::time::Instant::now();
    while since.elapsed() < Duration::from_secs(3) || last.iter().any(|h| h.len() != 1) {
        assert!(
            t.elapsed() < Duration::from_secs(25),
            "never calm: {last:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
        let h = six(&c);
        if h != last {
            (last, since) = (h, std::time::Instant::now());
        }
    }
    let w = Watch::start(&c.lab, &v, true, KERNEL_PERIOD, CLIENT_PERIOD);
    std::thread::sleep(Duration::from_millis(500));
    let mut at = Vec::new();
    for i in 0..3 {
        std::fs::write(file(&c, i), &after).expect("write config");
        at.push(w.now());
        let (code, out, err) = cli(&c, i, &["reload"]);
        assert_eq!(code, 0, "n{i}: {out}{err}\n{}", c.log(i));
        assert!(
            out.contains("VIP pool: 3 group(s) added, 3 removed"),
            "{out}"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    std::thread::sleep(Duration::from_secs(2));
    let r = w.finish();
    let (k, cl) = (r.kernel_duals(), r.client_duals());
    assert!(
        k.is_empty() && cl.is_empty(),
        "dual answering: {k:?} {cl:?}\n{}",
        c.logs()
    );
    let untouched = &v[..3];
    let (unanswered, changes, after_stall) = interruptions(&r, untouched);
    if after_stall > 0 {
        eprintln!("{after_stall} VIP-rounds unanswered right after a stall of the machine");
    }
    assert_eq!(
        (unanswered, changes),
        (0, 0),
        "untouched VIPs interrupted\n{}",
        c.logs()
    );
    for a in [v[6], v[7]] {
        let t = r
            .first_answer_after(a, at[0], None)
            .expect("added VIP answered");
        eprintln!(
            "{a} answered {:.0} ms after the first reload",
            (t - at[0]) * 1000.0
        );
        assert!(
            t - at[0] <= 1.0,
            "{a} answered {:.2} s after the first reload",
            t - at[0]
        );
    }
    let t = silent_from(&r, v[3], at[2]).expect("removed VIP silent");
    eprintln!(
        "{} silent {:.0} ms after the last reload",
        v[3],
        (t - at[2]) * 1000.0
    );
    assert!(
        t - at[2] <= 1.0,
        "removed VIP still answered {:.2} s after the last reload",
        t - at[2]
    );
    // The moved address and its new group-mate end up answered by one node.
    let h = c.holders();
    assert_eq!(h[&v[4]].len(), 1, "{h:?}");
    assert_eq!(
        h[&v[4]], h[&v[5]],
        "the merged group lives on one node: {h:?}"
    );
    eprintln!(
        "untouched: {} client rounds, 0 unanswered, 0 holder changes, 0 dual",
        r.rounds.len()
    );
}

/// The voters of every node's file, as TOML.
fn voters_toml(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("voters = [{}]\n", q.join(", "))
}

/// Replacing a voter by rolling reloads, one voter per step: n3 joins the voters
/// (node by node, 3 s apart), then n0 leaves them the same way, while a client
/// watches. No interruption, no holder change, no dual answering; then n0 dies and
/// the new voter set alone carries the cluster.
#[test]
fn voter_replaced_by_rolling_reloads() {
    let Some(mut c) = Cluster::for_test(&bin(), "wmrv", [10, 74], |s| {
        s.nodes = 4;
        s.voters_flag = false;
    }) else {
        return;
    };
    start(&mut c, &voters_toml(&["n0", "n1", "n2"]));
    let w = Watch::start(&c.lab, &c.vips, true, KERNEL_PERIOD, CLIENT_PERIOD);
    std::thread::sleep(Duration::from_millis(500));
    let steps: [&[&str]; 2] = [&["n0", "n1", "n2", "n3"], &["n1", "n2", "n3"]];
    for (k, voters) in steps.iter().enumerate() {
        for i in 0..4 {
            std::fs::write(file(&c, i), voters_toml(voters)).expect("write");
            let (code, out, err) = cli(&c, i, &["reload"]);
            assert_eq!(code, 0, "step {k}, n{i}: {out}{err}\n{}", c.logs());
            assert!(out.contains("applied: voters"), "{out}");
            eprintln!("step {k}, n{i}: {}", out.trim());
            std::thread::sleep(Duration::from_secs(3));
        }
    }
    let r = w.finish();
    assert_calm(&c, &r, "voter replaced by rolling reloads");
    for i in 0..4 {
        let s = status(&c, i);
        assert_eq!(
            s["quorum"]["voters"],
            serde_json::json!(["n1", "n2", "n3"]),
            "n{i}: {s}"
        );
        assert_eq!(s["quorum"]["q"], 2, "{s}");
        assert_eq!(counter(&c, i, "wackamole_config_drift_members", ""), 0.0);
    }
    // The old voter dies: the new set alone keeps every VIP answered.
    let w = Watch::start(&c.lab, &c.vips, true, KERNEL_PERIOD, CLIENT_PERIOD);
    c.kill(0);
    let took = c
        .wait_converged(&[1, 2, 3], Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no convergence without n0: {:?}\n{}", c.holders(), c.logs()));
    std::thread::sleep(Duration::from_millis(500));
    let r = w.finish();
    let (k, cl) = (r.kernel_duals(), r.client_duals());
    assert!(k.is_empty() && cl.is_empty(), "dual: {k:?} {cl:?}");
    eprintln!("n0 killed: every VIP held by n1..n3 after {took:?}, 0 dual");
}
