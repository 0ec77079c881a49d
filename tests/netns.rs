//! Real agents in Linux network namespaces, watched from the kernels (every 5 ms)
//! and from a client (ARP / NS every 10 ms): S1 must hold through every scenario.
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them). Without root every
//! test prints a loud SKIPPED line and passes. Test traffic stays inside the
//! namespaces each test creates.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use wackamole::lab::cluster::{Cluster, Spec};
use wackamole::lab::wait_for;
use wackamole::lab::watch::{Report, Watch};
use wackamole::lab::{self, sh};

const KERNEL_PERIOD: Duration = Duration::from_millis(5);
const CLIENT_PERIOD: Duration = Duration::from_millis(10);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wackamole"))
}

fn setup(prefix: &str, subnet: [u8; 2], tweak: impl FnOnce(&mut Spec)) -> Option<Cluster> {
    Cluster::for_test(&bin(), prefix, subnet, tweak)
}

fn watch(c: &Cluster) -> Watch {
    Watch::start(&c.lab, &c.vips, true, KERNEL_PERIOD, CLIENT_PERIOD)
}

/// S1 from both views, with enough samples to mean something.
fn assert_s1(c: &Cluster, r: &Report, what: &str) {
    let k = r.kernel_duals();
    let cl = r.client_duals();
    let macs: Vec<String> = (0..c.lab.nodes.len())
        .map(|i| format!("n{i}={}", c.mac(i).map(mac_str).unwrap_or_default()))
        .collect();
    if !cl.is_empty() {
        let t = cl[0].t;
        for (i, n) in r.nodes.iter().enumerate() {
            eprintln!(
                "n{i} intervals for {}: {:?}",
                cl[0].vip,
                n.get(&cl[0].vip).map(|v| v
                    .iter()
                    .filter(|iv| (iv.0 - t).abs() < 2.0 || (iv.1 - t).abs() < 2.0)
                    .collect::<Vec<_>>())
            );
        }
    }
    assert!(
        k.is_empty() && cl.is_empty(),
        "{what}: dual answering: kernel {k:?} client {cl:?} (MACs {macs:?})\n{}",
        c.logs()
    );
    for (i, n) in r.samples.iter().enumerate() {
        assert!(*n > 50, "{what}: only {n} kernel samples on n{i}");
    }
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

fn converge(c: &Cluster, among: &[usize]) -> Duration {
    c.wait_converged(among, Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no convergence: {:?}\n{}", c.holders(), c.logs()))
}

fn holder_of(c: &Cluster, vip: IpAddr) -> usize {
    let h = c.holders();
    assert_eq!(h[&vip].len(), 1, "{h:?}");
    h[&vip][0]
}

fn client_neigh(c: &Cluster, vip: IpAddr) -> Option<String> {
    let out = c
        .lab
        .client
        .run(&["ip", "neigh", "show", &vip.to_string(), "dev", "eth0"])
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = s.split_whitespace();
    while let Some(w) = it.next() {
        if w == "lladdr" {
            return it.next().map(str::to_string);
        }
    }
    None
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Gives the client a STALE neighbour entry for `vip` pointing at `mac`, the way a
/// client that talked to the old holder has one.
fn seed_neigh(c: &Cluster, vip: IpAddr, mac: [u8; 6]) {
    c.lab
        .client
        .run(&[
            "ip",
            "neigh",
            "replace",
            &vip.to_string(),
            "lladdr",
            &mac_str(mac),
            "dev",
            "eth0",
            "nud",
            "stale",
        ])
        .expect("ip neigh");
}

#[test]
fn start_converge_balanced() {
    let Some(mut c) = setup("wm01", [81, 1], |_| {}) else {
        return;
    };
    let w = watch(&c);
    c.start_all().unwrap();
    let t = converge(&c, &[0, 1, 2]);
    std::thread::sleep(Duration::from_secs(2));
    let r = w.finish();
    assert_s1(&c, &r, "start");
    eprintln!("converged in {t:?}: {:?}", c.holders());
}

/// With the default `--bind 0.0.0.0:7946` each agent tells its peers the address it
/// routes from toward its first `--join` (n1, n2: n0's address) or, with no
/// `--join`, its interface's first address (n0). Before, every agent's identity was
/// `0.0.0.0:7946` itself, and no cluster ever formed.
#[test]
fn the_default_bind_advertises_a_reachable_address() {
    let Some(mut c) = setup("wm14", [81, 14], |s| {
        s.bind_flag = false;
        s.join_all = false;
    }) else {
        return;
    };
    let w = watch(&c);
    c.start_all().unwrap();
    let t = converge(&c, &[0, 1, 2]);
    let r = w.finish();
    assert_s1(&c, &r, "default bind");
    for (i, from) in [
        (0, "the first address of eth0".to_string()),
        (
            1,
            format!("the route to --join {}:7946", c.lab.nodes[0].addr),
        ),
        (
            2,
            format!("the route to --join {}:7946", c.lab.nodes[0].addr),
        ),
    ] {
        let want = format!(
            "advertise={}:7946 advertised_from=\"{from}\"",
            c.lab.nodes[i].addr
        );
        assert!(
            c.full_log(i).contains(&want),
            "n{i}: no {want:?} in\n{}",
            c.log(i)
        );
    }
    eprintln!("converged in {t:?}: {:?}", c.holders());
}

#[test]
fn machine_death_link_down_and_sigkill() {
    let Some(mut c) = setup("wm02", [81, 2], |_| {}) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let vip = c.vips[0];
    let old = holder_of(&c, vip);
    seed_neigh(&c, vip, c.mac(old).unwrap());
    let w = watch(&c);
    std::thread::sleep(Duration::from_millis(500));
    let t0 = w.now();
    c.lab.nodes[old].link(false).unwrap();
    c.kill(old);
    let rest: Vec<usize> = (0..3).filter(|&n| n != old).collect();
    let new = wait_for(Duration::from_secs(3), || {
        c.holders()[&vip].first().copied().filter(|n| *n != old)
    })
    .expect("failover");
    let new_mac = mac_str(c.mac(new).unwrap());
    // The client's neighbour entry follows the gratuitous ARP.
    let followed = wait_for(Duration::from_secs(2), || {
        (client_neigh(&c, vip).as_deref() == Some(new_mac.as_str())).then_some(())
    });
    converge(&c, &rest);
    std::thread::sleep(Duration::from_millis(500));
    let r = w.finish();
    assert_s1(&c, &r, "machine death");
    let seen = r
        .first_answer_after(vip, t0, c.mac(old))
        .expect("client saw the new holder");
    eprintln!(
        "machine death: client-seen failover {:.0} ms",
        (seen - t0) * 1000.0
    );
    assert!(seen - t0 < 1.5, "failover took {:.3}s", seen - t0);
    assert!(
        followed.is_some(),
        "client neighbour entry did not follow: {:?} vs {new_mac}",
        client_neigh(&c, vip)
    );
}

#[test]
fn agent_sigkill_gate_closes_before_takeover() {
    let Some(mut c) = setup("wm03", [81, 3], |_| {}) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let vip = c.vips[1];
    let old = holder_of(&c, vip);
    let w = watch(&c);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = w.now();
    c.kill(old);
    let new = wait_for(Duration::from_secs(3), || {
        c.holders()[&vip].first().copied().filter(|n| *n != old)
    })
    .expect("takeover");
    std::thread::sleep(Duration::from_millis(300));
    let r = w.finish();
    assert_s1(&c, &r, "agent SIGKILL");
    // The old kernel stopped answering (gate closed) before the new one started.
    let old_end = r.nodes[old]
        .get(&vip)
        .and_then(|v| v.last().map(|iv| iv.1))
        .expect("old holder seen");
    let new_start = r.nodes[new]
        .get(&vip)
        .and_then(|v| v.first().map(|iv| iv.0))
        .expect("new holder seen");
    eprintln!(
        "agent SIGKILL: gate closed {:.0} ms after the kill; new holder from {:.0} ms",
        (old_end - t0) * 1000.0,
        (new_start - t0) * 1000.0
    );
    assert!(old_end < new_start);
    assert!(
        old_end - t0 < 0.2,
        "the gate stays open {:.3}s after the kill",
        old_end - t0
    );
}

#[test]
fn sigstop_ten_seconds_then_sigcont() {
    let Some(mut c) = setup("wm04", [81, 4], |_| {}) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let vip = c.vips[2];
    let frozen = holder_of(&c, vip);
    let w = watch(&c);
    std::thread::sleep(Duration::from_millis(300));
    c.signal(frozen, Signal::SIGSTOP).unwrap();
    let rest: Vec<usize> = (0..3).filter(|&n| n != frozen).collect();
    converge(&c, &rest);
    std::thread::sleep(Duration::from_secs(9));
    c.signal(frozen, Signal::SIGCONT).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    converge(&c, &[0, 1, 2]);
    let r = w.finish();
    assert_s1(&c, &r, "SIGSTOP 10 s");
}

#[test]
fn isolate_one_node_for_ten_seconds() {
    let Some(mut c) = setup("wm05", [81, 5], |_| {}) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let w = watch(&c);
    c.lab.nodes[0].link(false).unwrap();
    converge(&c, &[1, 2]);
    std::thread::sleep(Duration::from_secs(9));
    c.lab.nodes[0].link(true).unwrap();
    converge(&c, &[0, 1, 2]);
    let r = w.finish();
    assert_s1(&c, &r, "isolation");
}

#[test]
fn partition_two_one_with_quorum() {
    let Some(mut c) = setup("wm06", [81, 6], |_| {}) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let w = watch(&c);
    // n2 cut from n0 and n1 (and from the client, so its view is the minority's).
    c.lab
        .faults(&["iifname \"p2\" drop".into(), "oifname \"p2\" drop".into()])
        .unwrap();
    converge(&c, &[0, 1]);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        c.holders().values().all(|w| !w.contains(&2)),
        "the minority must hold nothing: {:?}",
        c.holders()
    );
    c.lab.faults(&[]).unwrap();
    converge(&c, &[0, 1, 2]);
    let r = w.finish();
    assert_s1(&c, &r, "2|1 partition");
}

#[test]
fn non_transitive_partition() {
    let Some(mut c) = setup("wm07", [81, 7], |_| {}) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let w = watch(&c);
    // n0 and n1 cannot talk; both still reach n2 and the client.
    c.lab
        .faults(&[
            "iifname \"p0\" oifname \"p1\" drop".into(),
            "iifname \"p1\" oifname \"p0\" drop".into(),
        ])
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    // Every VIP still answered by exactly one node.
    let h = c.holders();
    assert!(h.values().all(|w| w.len() <= 1), "{h:?}");
    c.lab.faults(&[]).unwrap();
    converge(&c, &[0, 1, 2]);
    let r = w.finish();
    assert_s1(&c, &r, "non-transitive partition");
}

#[test]
fn one_way_loss() {
    let Some(mut c) = setup("wm08", [81, 8], |_| {}) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let w = watch(&c);
    // n0 is deaf: nothing reaches it; what it sends still arrives.
    c.lab.faults(&["oifname \"p0\" drop".into()]).unwrap();
    std::thread::sleep(Duration::from_secs(8));
    c.lab.faults(&[]).unwrap();
    converge(&c, &[0, 1, 2]);
    let r = w.finish();
    assert_s1(&c, &r, "one-way loss");
}

#[test]
fn graceful_leave_and_join() {
    let Some(mut c) = setup("wm09", [81, 9], |s| s.nodes = 3) else {
        return;
    };
    c.start(0).unwrap();
    c.start(1).unwrap();
    converge(&c, &[0, 1]);
    let w = watch(&c);
    // Join: n2 arrives, takes its share after the fail-back delay.
    c.start(2).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    converge(&c, &[0, 1, 2]);
    // Leave: SIGTERM releases every VIP, then leaves, within a second.
    let vip = c.vips[3];
    let leaver = holder_of(&c, vip);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = w.now();
    c.signal(leaver, Signal::SIGTERM).unwrap();
    let (status, took) = c
        .wait_exit(leaver, Duration::from_secs(3))
        .unwrap()
        .expect("exited");
    assert!(
        status.success(),
        "exit status {status:?}\n{}",
        c.log(leaver)
    );
    assert!(took < Duration::from_millis(1000), "SIGTERM took {took:?}");
    let rest: Vec<usize> = (0..3).filter(|&n| n != leaver).collect();
    converge(&c, &rest);
    std::thread::sleep(Duration::from_millis(300));
    let r = w.finish();
    assert_s1(&c, &r, "join and graceful leave");
    let old_end = r.nodes[leaver]
        .get(&vip)
        .and_then(|v| v.last().map(|iv| iv.1))
        .expect("seen");
    let next = rest
        .iter()
        .filter_map(|&n| {
            r.nodes[n]
                .get(&vip)
                .and_then(|v| v.iter().find(|iv| iv.0 >= t0).map(|iv| iv.0))
        })
        .fold(f64::MAX, f64::min);
    eprintln!(
        "graceful leave: exit in {took:?}; handover gap {:.1} ms (kernel view)",
        (next - old_end) * 1000.0
    );
}

#[test]
fn twenty_percent_loss() {
    let Some(mut c) = setup("wm10", [81, 10], |_| {}) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let w = watch(&c);
    c.lab
        .faults(&[
            "oifname { \"p0\", \"p1\", \"p2\" } numgen random mod 100 < 20 counter drop".into(),
        ])
        .unwrap();
    std::thread::sleep(Duration::from_secs(15));
    c.lab.faults(&[]).unwrap();
    converge(&c, &[0, 1, 2]);
    let r = w.finish();
    assert_s1(&c, &r, "20% loss");
}

#[test]
fn ipv6_vip_follows_with_unsolicited_na() {
    let Some(mut c) = setup("wm11", [81, 11], |s| {
        s.vips4 = 1;
        s.vips6 = 1;
    }) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let vip = c.vips[1];
    assert!(vip.is_ipv6());
    let old = holder_of(&c, vip);
    seed_neigh(&c, vip, c.mac(old).unwrap());
    let w = watch(&c);
    c.lab.nodes[old].link(false).unwrap();
    c.kill(old);
    let new = wait_for(Duration::from_secs(3), || {
        c.holders()[&vip].first().copied().filter(|n| *n != old)
    })
    .expect("failover");
    let new_mac = mac_str(c.mac(new).unwrap());
    let followed = wait_for(Duration::from_secs(2), || {
        (client_neigh(&c, vip).as_deref() == Some(new_mac.as_str())).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let r = w.finish();
    assert_s1(&c, &r, "IPv6 VIP");
    assert!(
        followed.is_some(),
        "client neighbour entry did not follow the NA: {:?} vs {new_mac}",
        client_neigh(&c, vip)
    );
}

#[test]
fn wrong_key_does_not_join() {
    let Some(mut c) = setup("wm12", [81, 12], |_| {}) else {
        return;
    };
    c.start(0).unwrap();
    c.start(1).unwrap();
    let bad = c.dir.join("bad-key");
    std::fs::write(&bad, "another secret, not the cluster's one\n").unwrap();
    // (Before `start_replacing`, a second --key-file was a usage error and n2 never
    // ran: the test passed without an intruder.)
    c.start_replacing(2, "--key-file", bad.to_str().unwrap())
        .unwrap();
    converge(&c, &[0, 1]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        c.wait_exit(2, Duration::from_millis(50)).unwrap().is_none(),
        "n2 did not run:\n{}",
        c.log(2)
    );
    // Each side says in its log why it will not hear the other.
    for i in [0, 2] {
        assert!(
            c.full_log(i)
                .contains("sealed with a key this node does not have"),
            "n{i} does not say why:\n{}",
            c.log(i)
        );
    }
    let h = c.holders();
    assert!(
        h.values().all(|w| !w.contains(&2)),
        "the node with the wrong key holds {h:?}"
    );
    assert!(
        c.log(0).contains("members=2") || !c.log(0).contains("members=3"),
        "n0 saw the intruder:\n{}",
        c.log(0)
    );
    assert!(!c.log(0).contains("members=3"));
}

#[test]
fn demo_runs_and_cleans_up() {
    if let Some(why) = lab::missing(&["ip"]) {
        lab::skip("demo", &why);
        return;
    }
    let out = std::process::Command::new(bin())
        .arg("demo")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("failover as the client saw it"), "{text}");
    assert!(text.contains("dual answering observed: 0"), "{text}");
    // The demo names its namespaces "(wmdNN-*)"; none may survive it.
    let prefix = text
        .split('(')
        .nth(1)
        .and_then(|t| t.split('*').next())
        .expect("prefix in output")
        .to_string();
    let left = sh(&["ip", "netns", "list"])
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    assert!(
        !left.lines().any(|l| l.starts_with(&prefix)),
        "namespaces {prefix}* left behind: {left}"
    );
}

#[test]
fn address_fence_without_nftables_state() {
    let Some(mut c) = setup("wm13", [81, 13], |s| s.gate = false) else {
        return;
    };
    c.start_all().unwrap();
    converge(&c, &[0, 1, 2]);
    let vip = c.vips[0];
    let old = holder_of(&c, vip);
    let w = Watch::start(&c.lab, &c.vips, false, KERNEL_PERIOD, CLIENT_PERIOD);
    std::thread::sleep(Duration::from_millis(300));
    // An agent SIGKILL: its addresses expire on their own (valid_lft 1, K = 2.25 s)
    // before anyone else binds them.
    c.kill(old);
    let new = wait_for(Duration::from_secs(8), || {
        c.holders()[&vip].first().copied().filter(|n| *n != old)
    })
    .expect("takeover");
    std::thread::sleep(Duration::from_millis(300));
    let r = w.finish();
    assert_s1(&c, &r, "address fence");
    let old_end = r.nodes[old]
        .get(&vip)
        .and_then(|v| v.last().map(|iv| iv.1))
        .expect("old holder seen");
    let new_start = r.nodes[new]
        .get(&vip)
        .and_then(|v| v.first().map(|iv| iv.0))
        .expect("new holder seen");
    eprintln!(
        "address fence: old address expired at {:.0} ms, new holder from {:.0} ms",
        old_end * 1000.0,
        new_start * 1000.0
    );
    // No nftables table was created.
    let out = c.lab.nodes[new].run(&["nft", "list", "tables"]).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("wackamole"));
}
