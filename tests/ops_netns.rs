//! Operations end to end, with real agents in network namespaces: `/metrics` and
//! `/status` against the kernels' address tables, `wackamole status`, `drain` and
//! `undrain` (handover gap and S1 watched from the kernels and a client), a health
//! check falling and rising with its counts respected, hooks once per event in
//! order — and the dashboard in headless Chromium following a failover.
//!
//! Needs root, iproute2, nftables and (for the dashboard) Debian's `chromium`;
//! `.ci/run` installs them. Without root every test prints a loud SKIPPED line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use wackamole::lab::cluster::{Cluster, Spec};
use wackamole::lab::wait_for;
use wackamole::lab::watch::{Report, Watch};
use wackamole::lab::{self, enter};
use wackamole::ops::client;
use wackamole::ops::metrics::NAMES;

/// The tests of this file run one at a time: Chromium and the timing checks do not
/// share two cores well.
static SERIAL: Mutex<()> = Mutex::new(());

const OPS: &str = "127.0.0.1:9947";

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wackamole"))
}

fn setup(prefix: &str, subnet: [u8; 2], tweak: impl FnOnce(&mut Spec)) -> Option<Cluster> {
    Cluster::for_test(&bin(), prefix, subnet, tweak)
}

fn converge(c: &Cluster, among: &[usize]) {
    if c.wait_converged(among, Duration::from_secs(20)).is_none() {
        panic!("no convergence: {:?}\n{}", c.holders(), c.logs());
    }
}

/// An HTTP request to node `i`'s listener, made from inside its namespace.
fn http(c: &Cluster, i: usize, method: &str, path: &str) -> (u16, String) {
    let (ns, method, path) = (
        c.lab.nodes[i].ns.clone(),
        method.to_string(),
        path.to_string(),
    );
    std::thread::spawn(move || {
        enter(&ns).expect("setns");
        client::request(OPS.parse().unwrap(), &method, &path, None).expect("agent answers")
    })
    .join()
    .expect("http thread")
}

fn status(c: &Cluster, i: usize) -> Value {
    let (code, body) = http(c, i, "GET", "/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// `wackamole ARGS` inside node `i`'s namespace: (exit code, stdout, stderr).
fn cli(c: &Cluster, i: usize, args: &[&str]) -> (i32, String, String) {
    c.cli(i, args)
}

/// One sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                for kv in body.split("\",").filter(|s| !s.is_empty()) {
                    let (k, v) = kv.split_once("=\"").expect("label");
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (n.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

fn scrape(c: &Cluster, i: usize) -> Vec<Sample> {
    let (code, body) = http(c, i, "GET", "/metrics");
    assert_eq!(code, 200, "{body}");
    parse_metrics(&body)
}

/// Every metric the agent documents is exported, and agrees with the kernels.
fn check_metrics_and_status(c: &Cluster) {
    let holders = c.holders();
    for (vip, h) in &holders {
        assert_eq!(h.len(), 1, "{vip}: {h:?}");
    }
    for i in 0..3 {
        let m = scrape(c, i);
        for name in NAMES {
            assert!(
                m.iter().any(|s| s.name == *name
                    || s.name == format!("{name}_bucket")
                    || s.name == format!("{name}_count")),
                "n{i}: {name} missing from /metrics"
            );
        }
        let mine = holders.values().filter(|h| h[0] == i).count();
        assert_eq!(
            metric(&m, "wackamole_vips_held", &[]),
            Some(mine as f64),
            "n{i}: vips_held vs kernel {holders:?}"
        );
        assert_eq!(
            metric(&m, "wackamole_members", &[("state", "alive")]),
            Some(3.0)
        );
        assert_eq!(
            metric(&m, "wackamole_members", &[("state", "down")]),
            Some(0.0)
        );
        for (vip, h) in &holders {
            let owners: Vec<&str> = m
                .iter()
                .filter(|s| {
                    s.name == "wackamole_vip_owner"
                        && s.labels.get("vip") == Some(&vip.to_string())
                        && s.value == 1.0
                })
                .map(|s| s.labels["node"].as_str())
                .collect();
            assert_eq!(owners, vec![format!("n{}", h[0])], "n{i}: owner of {vip}");
        }
        assert!(metric(&m, "wackamole_datagrams_total", &[("direction", "in")]).unwrap() > 0.0);
        assert!(metric(&m, "wackamole_bytes_total", &[("direction", "out")]).unwrap() > 0.0);
        assert_eq!(metric(&m, "wackamole_ready", &[]), Some(1.0), "n{i} ready");
        assert_eq!(
            metric(&m, "wackamole_quorum_voters_heard", &[]),
            Some(3.0),
            "n{i} hears every voter"
        );
        let acquisitions = metric(&m, "wackamole_acquisitions_total", &[]).unwrap();
        assert!(
            acquisitions >= mine as f64,
            "n{i}: {acquisitions} acquisitions"
        );
        if mine > 0 {
            assert!(
                sum(&m, "wackamole_announcements_total", &[("kind", "garp")]) > 0.0,
                "n{i} holds VIPs, so it sent gratuitous ARP"
            );
        }
        // /status agrees with the kernels.
        let s = status(c, i);
        assert_eq!(s["node"]["name"], format!("n{i}"));
        assert_eq!(s["node"]["ready"], true);
        let members = s["members"].as_array().unwrap();
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|m| m["state"] == "alive"), "{members:?}");
        for g in s["groups"].as_array().unwrap() {
            let vip: IpAddr = g["vips"][0].as_str().unwrap().parse().unwrap();
            let want = format!("n{}", holders[&vip][0]);
            assert_eq!(g["owner"], want.as_str(), "n{i}: {g}");
            assert_eq!(g["holders"], json!([want]), "n{i}: {g}");
        }
        let (code, _) = http(c, i, "GET", "/healthz");
        assert_eq!(code, 200);
        let (code, _) = http(c, i, "GET", "/readyz");
        assert_eq!(code, 200);
    }
}

fn handover_gaps(r: &Report, from: usize, vips: &[IpAddr], t0: f64) -> Vec<f64> {
    let mut gaps = Vec::new();
    for vip in vips {
        let old_end = r.nodes[from]
            .get(vip)
            .and_then(|v| v.last().map(|iv| iv.1))
            .expect("the drained node was seen holding it");
        let next = (0..r.nodes.len())
            .filter(|&n| n != from)
            .filter_map(|n| {
                r.nodes[n]
                    .get(vip)
                    .and_then(|v| v.iter().find(|iv| iv.0 >= t0).map(|iv| iv.0))
            })
            .fold(f64::MAX, f64::min);
        assert!(next < f64::MAX, "{vip} was not taken over");
        gaps.push((next - old_end) * 1000.0);
    }
    gaps
}

fn assert_no_duals(r: &Report, what: &str) {
    let k = r.kernel_duals();
    let cl = r.client_duals();
    assert!(k.is_empty(), "{what}: kernel duals {k:?}");
    assert!(cl.is_empty(), "{what}: client duals {cl:?}");
    assert!(r.samples.iter().all(|&n| n > 50), "{what}: too few samples");
}

/// (unix time, ok) per health-check run, from the check's own log.
fn check_runs(path: &Path) -> Vec<(f64, bool)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (t, r) = l.split_once(' ')?;
            Some((t.parse().ok()?, r == "ok"))
        })
        .collect()
}

/// The time of node `i`'s latest journal event of `kind` whose detail ends with `tail`.
fn event_time(s: &Value, kind: &str, tail: &str) -> Option<f64> {
    s["events"]
        .as_array()?
        .iter()
        .find(|e| e["kind"] == kind && e["detail"].as_str().is_some_and(|d| d.ends_with(tail)))
        .and_then(|e| e["t"].as_f64())
}

#[test]
fn metrics_status_cli_drain_health_and_hooks() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = setup("wo01", [82, 1], |s| s.vips4 = 6) else {
        return;
    };
    let dir = c.dir.clone();
    let flag = dir.join("n2-healthy");
    let checklog = dir.join("n2-checks.log");
    std::fs::write(&flag, "").unwrap();
    let check = format!(
        "if test -e {f}; then echo \"$(date +%s.%N) ok\" >> {l}; else echo \"$(date +%s.%N) fail\" >> {l}; exit 1; fi",
        f = flag.display(),
        l = checklog.display()
    );
    for i in 0..3 {
        let hook = format!(
            "echo \"$WACKAMOLE_EVENT $WACKAMOLE_VIP $WACKAMOLE_REASON $WACKAMOLE_INTERFACE $WACKAMOLE_NODE\" >> {}",
            dir.join(format!("hooks-n{i}.log")).display()
        );
        let round = format!(
            "echo \"$WACKAMOLE_EVENT|$WACKAMOLE_ACQUIRED|$WACKAMOLE_RELEASED|$WACKAMOLE_HELD|$WACKAMOLE_NODE\" >> {}",
            dir.join(format!("rounds-n{i}.log")).display()
        );
        let mut extra: Vec<&str> = vec![
            "--on-acquire",
            &hook,
            "--on-release",
            &hook,
            "--on-conflict",
            &hook,
            "--on-round",
            &round,
        ];
        if i == 2 {
            extra.extend([
                "--check-exec",
                &check,
                "--check-interval",
                "200ms",
                "--check-timeout",
                "150ms",
                "--check-rise",
                "3",
                "--check-fall",
                "2",
            ]);
        }
        c.start_with(i, &extra).unwrap();
    }
    converge(&c, &[0, 1, 2]);
    // Let the held-groups metadata and the last announcements settle.
    std::thread::sleep(Duration::from_millis(1500));

    // 1. /metrics and /status against the kernels.
    check_metrics_and_status(&c);

    // 2. `wackamole status`, table and JSON.
    let holders = c.holders();
    let (code, out, err) = cli(&c, 0, &["status"]);
    assert_eq!(code, 0, "{err}");
    eprintln!("wackamole status:\n{out}");
    assert!(out.contains("n0 *"), "{out}");
    for n in ["n1", "n2"] {
        assert!(out.lines().any(|l| l.starts_with(n)), "{out}");
    }
    for (vip, h) in &holders {
        let line = out
            .lines()
            .find(|l| l.starts_with(&vip.to_string()))
            .unwrap_or_else(|| panic!("{vip} not in\n{out}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], format!("n{}", h[0]), "owner: {line}");
        assert_eq!(cols[2], format!("n{}", h[0]), "holders: {line}");
    }
    let (code, out, _) = cli(&c, 1, &["status", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("status --json");
    assert_eq!(v["node"]["name"], "n1");
    // Nobody listening: exit 69 and a clear line.
    let (code, _, err) = cli(&c, 0, &["status", "--addr", "127.0.0.1:9"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("cannot reach the agent"), "{err}");

    // 3. drain / undrain, twice on n0 and n1: the handover gap and S1.
    let mut gaps = Vec::new();
    for d in [0usize, 1, 0, 1] {
        let held: Vec<IpAddr> = c
            .holders()
            .into_iter()
            .filter(|(_, h)| h == &vec![d])
            .map(|(v, _)| v)
            .collect();
        assert!(!held.is_empty(), "n{d} holds nothing: {:?}", c.holders());
        let w = Watch::start(
            &c.lab,
            &c.vips,
            true,
            Duration::from_millis(2),
            Duration::from_millis(10),
        );
        std::thread::sleep(Duration::from_millis(300));
        let t0 = w.now();
        let (code, out, err) = cli(&c, d, &["drain"]);
        assert_eq!(code, 0, "drain: {out} {err}\n{}", c.logs());
        assert!(out.contains("drained"), "{out}");
        let rest: Vec<usize> = (0..3).filter(|&n| n != d).collect();
        converge(&c, &rest);
        std::thread::sleep(Duration::from_millis(300));
        let r = w.finish();
        assert_no_duals(&r, &format!("drain n{d}"));
        gaps.extend(handover_gaps(&r, d, &held, t0));
        let s = status(&c, d);
        assert_eq!(s["node"]["draining"], true);
        assert_eq!(
            http(&c, d, "GET", "/readyz").0,
            503,
            "a drained node is not ready"
        );
        let m = scrape(&c, d);
        assert!(
            metric(&m, "wackamole_releases_total", &[("reason", "drain")]).unwrap()
                >= held.len() as f64
        );
        assert_eq!(metric(&m, "wackamole_draining", &[]), Some(1.0));
        let (code, out, err) = cli(&c, d, &["undrain"]);
        assert_eq!(code, 0, "undrain: {out} {err}");
        converge(&c, &[0, 1, 2]);
    }
    gaps.sort_by(f64::total_cmp);
    let p50 = gaps[gaps.len() / 2];
    eprintln!("drain handover gaps (kernel view, ms): {gaps:.1?}; p50 {p50:.1}");
    assert!(
        p50 <= 50.0,
        "drain handover p50 {p50:.1} ms > 50 ms: {gaps:?}"
    );

    // 4. Health: n2's check fails → unhealthy after `fall` failures, VIPs move
    //    away, not ready; passes again → healthy after `rise` successes.
    converge(&c, &[0, 1, 2]);
    let t_remove = client_unix_now();
    std::fs::remove_file(&flag).unwrap();
    let t_unhealthy = wait_for(Duration::from_secs(5), || {
        let s = status(&c, 2);
        (s["node"]["healthy"] == false)
            .then(|| event_time(&s, "health", "unhealthy"))
            .flatten()
    })
    .unwrap_or_else(|| panic!("n2 never turned unhealthy\n{}", c.log(2)));
    converge(&c, &[0, 1]);
    assert_eq!(http(&c, 2, "GET", "/readyz").0, 503);
    let s = status(&c, 0);
    let n2 = s["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "n2")
        .unwrap()
        .clone();
    assert_eq!(n2["eligible"], false, "n2 gossips itself ineligible: {n2}");
    let t_restore = client_unix_now();
    std::fs::write(&flag, "").unwrap();
    let t_healthy = wait_for(Duration::from_secs(5), || {
        let s = status(&c, 2);
        (s["node"]["healthy"] == true)
            .then(|| event_time(&s, "health", "healthy"))
            .flatten()
    })
    .unwrap_or_else(|| panic!("n2 never turned healthy again\n{}", c.log(2)));
    let runs = check_runs(&checklog);
    let fails = runs
        .iter()
        .filter(|(t, ok)| !ok && *t > t_remove && *t < t_unhealthy)
        .count();
    let oks = runs
        .iter()
        .filter(|(t, ok)| *ok && *t > t_restore && *t < t_healthy)
        .count();
    eprintln!(
        "health: unhealthy {:.0} ms after the check started failing ({fails} failures), healthy {:.0} ms after it passed again ({oks} successes)",
        (t_unhealthy - t_remove) * 1000.0,
        (t_healthy - t_restore) * 1000.0
    );
    assert_eq!(fails, 2, "fall = 2: {runs:?}");
    assert_eq!(oks, 3, "rise = 3: {runs:?}");
    converge(&c, &[0, 1, 2]);
    let m = scrape(&c, 2);
    assert!(sum(&m, "wackamole_health_checks_total", &[("result", "failed")]) >= 2.0);
    assert!(sum(&m, "wackamole_health_checks_total", &[("result", "ok")]) >= 3.0);
    assert_eq!(metric(&m, "wackamole_healthy", &[]), Some(1.0));

    // 5. Hooks: once per ownership event, per VIP in event order, with the
    //    environment filled in.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        let s = status(&c, i);
        let mut want: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for e in s["events"].as_array().unwrap().iter().rev() {
            let kind = match e["kind"].as_str().unwrap() {
                "acquired" => "acquire",
                "released" | "fenced" => "release",
                "conflict" => "conflict",
                _ => continue,
            };
            want.entry(e["vip"].as_str().unwrap().to_string())
                .or_default()
                .push(kind);
        }
        let text = std::fs::read_to_string(dir.join(format!("hooks-n{i}.log"))).unwrap_or_default();
        let mut got: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 5, "{line:?}");
            assert_eq!(f[3], "eth0", "{line:?}");
            assert_eq!(f[4], format!("n{i}"), "{line:?}");
            got.entry(f[1].to_string()).or_default().push(f[0]);
        }
        assert_eq!(got, want, "n{i}: hooks vs events");
        // --on-round: one run per round that changed something, every acquired
        // and released group in one of them, fewer runs than events, and the last
        // one's holdings are what the node holds now.
        let rounds =
            std::fs::read_to_string(dir.join(format!("rounds-n{i}.log"))).unwrap_or_default();
        let mut in_rounds: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut last_held: Vec<String> = Vec::new();
        for line in rounds.lines() {
            let f: Vec<&str> = line.split('|').collect();
            assert_eq!(f.len(), 5, "{line:?}");
            assert_eq!(
                (f[0], f[4]),
                ("round", format!("n{i}").as_str()),
                "{line:?}"
            );
            assert!(
                !f[1].is_empty() || !f[2].is_empty(),
                "an empty round: {line:?}"
            );
            for (k, list) in [("acquire", f[1]), ("release", f[2])] {
                for g in list.split_whitespace() {
                    let first = g.split(',').next().unwrap_or_default().to_string();
                    in_rounds.entry(first).or_default().push(k);
                }
            }
            last_held = f[3].split_whitespace().map(str::to_string).collect();
        }
        let events: usize = want
            .values()
            .map(|v| v.iter().filter(|k| **k != "conflict").count())
            .sum();
        let runs = rounds.lines().count();
        assert!(
            (events == 0) == (runs == 0) && runs <= events,
            "n{i}: {runs} round runs for {events} events\n{rounds}\n{}",
            std::fs::read_to_string(dir.join(format!("n{i}.log")))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("hook"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        for (vip, kinds) in &want {
            for k in kinds.iter().filter(|k| **k != "conflict") {
                assert!(
                    in_rounds.get(vip).is_some_and(|x| x.contains(k)),
                    "n{i}: {k} of {vip} in no round\n{rounds}"
                );
            }
        }
        let mut held_now: Vec<String> = c
            .holders()
            .into_iter()
            .filter(|(_, h)| h == &vec![i])
            .map(|(v, _)| v.to_string())
            .collect();
        held_now.sort();
        last_held.sort();
        if runs > 0 {
            assert_eq!(
                last_held, held_now,
                "n{i}: the last round's WACKAMOLE_HELD\n{rounds}"
            );
        }
        eprintln!("n{i}: {runs} round runs for {events} acquire/release events");
        let m = scrape(&c, i);
        let acquires = text.lines().filter(|l| l.starts_with("acquire ")).count();
        assert_eq!(
            metric(
                &m,
                "wackamole_hook_runs_total",
                &[("hook", "acquire"), ("result", "ok")]
            )
            .unwrap_or(0.0),
            acquires as f64
        );
        // One log line per ownership change, with old → new holder and the time.
        let log = std::fs::read_to_string(dir.join(format!("n{i}.log"))).unwrap();
        if acquires > 0 {
            assert!(
                log.lines().any(|l| l.contains("acquired")
                    && l.contains("from=")
                    && l.contains("to=")
                    && l.contains("took_ms=")),
                "n{i} log lacks ownership lines"
            );
        }
    }
}

fn client_unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A Chrome DevTools Protocol session over `--remote-debugging-pipe` (fd 3 in,
/// fd 4 out; NUL-terminated JSON), wired by the shell so no unsafe code is needed.
struct Browser {
    child: Child,
    input: std::process::ChildStdin,
    msgs: mpsc::Receiver<Value>,
    next: u64,
}

impl Browser {
    fn find() -> Option<&'static str> {
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
    }

    fn launch(ns: &str, exe: &str, profile: &Path, log: &Path) -> Browser {
        let script = format!(
            "exec {exe} --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
             --no-default-browser-check --disable-background-networking --disable-component-update \
             --disable-extensions --disable-sync --metrics-recording-only --mute-audio \
             --hide-scrollbars --window-size=1400,900 --user-data-dir={} \
             --remote-debugging-pipe about:blank 3<&0 4>&1 0</dev/null 1>&2",
            profile.display()
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start chromium");
        let input = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (tx, msgs) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match out.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice(&buf)
                            && tx.send(v).is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            input,
            msgs,
            next: 1,
        }
    }

    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.input.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .msgs
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const READ_PAGE: &str = r#"JSON.stringify({
  updated: document.body.dataset.updated || null,
  members: [...document.querySelectorAll('#members tbody tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent]),
  vips: [...document.querySelectorAll('#vips tbody tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent])
})"#;

fn read_page(b: &mut Browser, session: &str) -> Value {
    let r = b.call(
        Some(session),
        "Runtime.evaluate",
        json!({ "expression": READ_PAGE, "returnByValue": true }),
    );
    serde_json::from_str(r["result"]["value"].as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

fn page_holder(page: &Value, vip: IpAddr) -> Option<String> {
    page["vips"]
        .as_array()?
        .iter()
        .find(|r| r[0] == vip.to_string().as_str())
        .and_then(|r| r[1].as_str().map(str::to_string))
}

#[test]
fn dashboard_in_headless_chromium_follows_a_failover() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(exe) = Browser::find() else {
        lab::skip(
            "dashboard test",
            "chromium is not installed (.ci/run installs Debian's `chromium`)",
        );
        return;
    };
    let Some(mut c) = setup("wo02", [82, 2], |s| s.vips4 = 4) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    std::thread::sleep(Duration::from_millis(1000));
    let profile = c.dir.join("chromium-profile");
    let mut b = Browser::launch(
        &c.lab.nodes[0].ns,
        exe,
        &profile,
        &c.dir.join("chromium.log"),
    );
    let url = format!("http://{OPS}/");
    let target = b.call(None, "Target.createTarget", json!({ "url": url }));
    let target_id = target["targetId"].as_str().expect("targetId").to_string();
    let att = b.call(
        None,
        "Target.attachToTarget",
        json!({ "targetId": target_id, "flatten": true }),
    );
    let session = att["sessionId"].as_str().expect("sessionId").to_string();
    // The page shows the three members and every VIP's holder as the kernels say.
    let holders = c.holders();
    let page = wait_for(Duration::from_secs(10), || {
        let p = read_page(&mut b, &session);
        let ok = p["members"].as_array().is_some_and(|m| m.len() == 3)
            && holders
                .iter()
                .all(|(v, h)| page_holder(&p, *v) == Some(format!("n{}", h[0])));
        ok.then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "dashboard never matched the kernels {holders:?}: {}",
            read_page(&mut b, &session)
        )
    });
    let names: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["n0 (this node)", "n1", "n2"], "{page}");
    // Failover: kill the holder of a VIP that n0 (the page's node) does not hold.
    let (vip, victim) = holders
        .iter()
        .find(|(_, h)| h[0] != 0)
        .map(|(v, h)| (*v, h[0]))
        .expect("n1 or n2 holds something");
    let before = read_page(&mut b, &session)["updated"].clone();
    c.signal(victim, Signal::SIGKILL).unwrap();
    let t_kill = Instant::now();
    let mut t_kernel = None;
    let mut t_page = None;
    let mut new_holder = None;
    while t_kill.elapsed() < Duration::from_secs(15) && t_page.is_none() {
        if t_kernel.is_none() {
            let h = c.holders();
            if let [n] = h[&vip].as_slice()
                && *n != victim
            {
                t_kernel = Some(t_kill.elapsed());
                new_holder = Some(format!("n{n}"));
            }
        }
        if let Some(want) = &new_holder
            && page_holder(&read_page(&mut b, &session), vip).as_ref() == Some(want)
        {
            t_page = Some(t_kill.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (tk, tp) = (
        t_kernel.expect("the VIP failed over in the kernels"),
        t_page.unwrap_or_else(|| {
            panic!(
                "the page never showed {new_holder:?} for {vip}\n{}",
                c.logs()
            )
        }),
    );
    let after = read_page(&mut b, &session);
    assert_ne!(
        after["updated"], before,
        "the page refreshed itself (no reload)"
    );
    eprintln!(
        "dashboard: {vip} failed over to {} in the kernels after {tk:?}; the page showed it after {tp:?} ({:?} later)",
        new_holder.as_deref().unwrap_or("?"),
        tp.saturating_sub(tk)
    );
    assert!(
        tp.saturating_sub(tk) <= Duration::from_secs(2),
        "page lagged {tk:?} → {tp:?}"
    );
    // Screenshot artifact.
    std::thread::sleep(Duration::from_millis(1200));
    let shot = b.call(
        Some(&session),
        "Page.captureScreenshot",
        json!({ "format": "png" }),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!(
        "dashboard screenshot: {} ({} bytes)",
        out.display(),
        png.len()
    );
}

#[test]
fn control_endpoints_need_loopback_or_the_token() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut c) = setup("wo03", [82, 3], |s| {
        s.nodes = 1;
        s.vips4 = 1;
    }) else {
        return;
    };
    // 128 bits: a token file's secret must be at least that (src/net/secret.rs).
    let token = "0123456789abcdef0123456789abcdef";
    let tf = c.dir.join("token");
    std::fs::write(&tf, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&tf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let listen: SocketAddr = format!("{}:9947", c.lab.nodes[0].addr).parse().unwrap();
    c.start_with(
        0,
        &[
            "--metrics-addr",
            &listen.to_string(),
            "--admin-token-file",
            tf.to_str().unwrap(),
        ],
    )
    .unwrap();
    converge(&c, &[0]);
    let from_client = |path: &str, token: Option<&str>| {
        let (ns, path, token) = (
            c.lab.client.ns.clone(),
            path.to_string(),
            token.map(String::from),
        );
        std::thread::spawn(move || {
            enter(&ns).unwrap();
            client::request(listen, "POST", &path, token.as_deref()).expect("reachable")
        })
        .join()
        .unwrap()
    };
    assert_eq!(from_client("/drain", None).0, 403);
    assert_eq!(
        from_client("/drain", Some("wrong-token-wrong-token")).0,
        403
    );
    let (code, body) = from_client("/drain", Some(token));
    assert_eq!(code, 200, "{body}");
    assert_eq!(from_client("/undrain", Some(token)).0, 200);
    // Reading is open; unknown paths and methods answer properly.
    let get = |path: &str, method: &str| {
        let (ns, path, method) = (
            c.lab.client.ns.clone(),
            path.to_string(),
            method.to_string(),
        );
        std::thread::spawn(move || {
            enter(&ns).unwrap();
            client::request(listen, &method, &path, None).expect("reachable")
        })
        .join()
        .unwrap()
    };
    assert_eq!(get("/metrics", "GET").0, 200);
    assert_eq!(get("/nope", "GET").0, 404);
    assert_eq!(get("/status", "DELETE").0, 405);
    let (code, page) = get("/", "GET");
    assert_eq!(code, 200);
    assert!(
        page.contains("<title>wackamole</title>")
            && !page.contains("http://")
            && !page.contains("https://"),
        "self-contained page"
    );
}
