//! Multi-homed groups in network namespaces: three nodes on two bridges (`eth0`,
//! `eth1`), a group with one address on each (`eth0:A`, `eth1:B`), single-address
//! groups on `eth0`, and a client on each bridge sending ARP for every VIP every
//! 10 ms while the kernels are sampled every 5 ms on both interfaces.
//!
//! Checked: both addresses of the group always have the same holder and move
//! together on machine death (client-seen on both sides); `eth1` down on the
//! holder moves that group and no group that lives on `eth0` only; the gate lets a
//! VIP's ARP through only on its own interface (the `eth0` client never gets an
//! answer for `B`); 0 dual-answering samples on either side throughout.
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use wackamole::lab::cluster::Cluster;
use wackamole::lab::wait_for;
use wackamole::lab::watch::{Report, Watch};

const KERNEL_PERIOD: Duration = Duration::from_millis(5);
const CLIENT_PERIOD: Duration = Duration::from_millis(10);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wackamole"))
}

/// Who holds each VIP right now (address present on its interface and live in the
/// gate), as node indices.
fn holders(c: &Cluster, net: &wackamole::lab::Net, vips: &[IpAddr]) -> Vec<Vec<usize>> {
    vips.iter()
        .map(|v| {
            (0..c.lab.nodes.len())
                .filter(|&i| {
                    let h = if net.subnet[..] == octets3(*v) {
                        &net.nodes[i]
                    } else {
                        &c.lab.nodes[i]
                    };
                    wackamole::lab::cluster::answering(&h.ns, &h.ifname, &[*v], true).contains(v)
                })
                .collect()
        })
        .collect()
}

fn octets3(v: IpAddr) -> [u8; 3] {
    match v {
        IpAddr::V4(a) => {
            let o = a.octets();
            [o[0], o[1], o[2]]
        }
        IpAddr::V6(_) => [0; 3],
    }
}

/// The MAC that last answered `vip` before `t` (the holder the client knew).
fn last_mac(r: &Report, vip: IpAddr, t: f64) -> Option<[u8; 6]> {
    r.rounds
        .iter()
        .filter(|x| x.t < t)
        .filter_map(|x| x.answers.get(&vip).and_then(|m| m.iter().next().copied()))
        .next_back()
}

fn no_duals(r: &Report, what: &str, c: &Cluster) {
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
    for (i, n) in r.samples.iter().enumerate() {
        assert!(*n > 50, "{what}: only {n} kernel samples on n{i}");
    }
}

#[test]
fn a_group_across_two_interfaces_moves_together_and_follows_its_links() {
    let Some(mut c) = Cluster::for_test(&bin(), "wmh1", [78, 1], |s| {
        s.vips4 = 0;
        s.vip_flag = false;
    }) else {
        return;
    };
    let net = c.lab.second_net([78, 2]).expect("second network");
    let a: IpAddr = c.lab.addr4(100).into();
    let b: IpAddr = net.addr4(100).into();
    let singles: Vec<IpAddr> = (101..105).map(|h| c.lab.addr4(h).into()).collect();
    let list = singles
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let group = format!("eth0:{a},eth1:{b}");
    let hooks = c.dir.join("acquired.log");
    let hook = format!(
        "echo \"$WACKAMOLE_GROUP $WACKAMOLE_INTERFACE\" >> {}",
        hooks.display()
    );
    for i in 0..3 {
        c.start_with(
            i,
            &["--vip-group", &group, "--vip", &list, "--on-acquire", &hook],
        )
        .unwrap();
    }
    let mut vips0 = vec![a];
    vips0.extend(&singles);
    let mut all = vips0.clone();
    all.push(b);
    let settled = |c: &Cluster| {
        let h = holders(c, &net, &all);
        (h.iter().all(|x| x.len() == 1) && h[0] == h[all.len() - 1]).then_some(h)
    };
    let h = wait_for(Duration::from_secs(15), || settled(&c)).unwrap_or_else(|| {
        panic!(
            "no convergence: {:?}\n{}",
            holders(&c, &net, &all),
            c.logs()
        )
    });
    let old = h[0][0];
    // The gate knows where each address lives.
    let home = c.lab.nodes[old]
        .run(&["nft", "list", "set", "arp", "wackamole", "home4"])
        .expect("nft");
    let home = String::from_utf8_lossy(&home.stdout).to_string();
    assert!(
        home.contains(&format!("\"eth1\" . {b}")) && home.contains(&format!("\"eth0\" . {a}")),
        "{home}"
    );
    // The eth0 client also asks for B: it must never be answered there.
    let mut asked0 = vips0.clone();
    asked0.push(b);
    let w0 = Watch::start(&c.lab, &asked0, true, KERNEL_PERIOD, CLIENT_PERIOD);
    let w1 = Watch::start_on(
        &net.nodes,
        (&net.client, "fd00:78:2::250".parse().unwrap()),
        &[b],
        true,
        KERNEL_PERIOD,
        CLIENT_PERIOD,
    );
    std::thread::sleep(Duration::from_millis(500));

    // 1. eth1 down on the holder of the group: that group moves, nothing on eth0
    //    only does.
    let before = holders(&c, &net, &all);
    c.lab.nodes[old]
        .run(&["ip", "link", "set", "eth1", "down"])
        .expect("eth1 down");
    let moved = wait_for(Duration::from_secs(5), || {
        let h = holders(&c, &net, &all);
        (h[0].len() == 1 && h[0][0] != old && h[0] == h[all.len() - 1]).then_some(h)
    })
    .unwrap_or_else(|| {
        panic!(
            "the group did not move: {:?}\n{}",
            holders(&c, &net, &all),
            c.logs()
        )
    });
    for (i, v) in all.iter().enumerate().skip(1).take(singles.len()) {
        assert_eq!(
            moved[i], before[i],
            "{v} (eth0 only) moved when eth1 went down: {before:?} → {moved:?}"
        );
    }
    eprintln!(
        "eth1 down on n{old}: the group moved to n{}, the eth0-only groups stayed",
        moved[0][0]
    );
    c.lab.nodes[old]
        .run(&["ip", "link", "set", "eth1", "up"])
        .expect("eth1 up");
    std::thread::sleep(Duration::from_secs(2));

    // 2. Machine death of the group's holder: both addresses move together.
    let holder = holders(&c, &net, &all)[0][0];
    let t0 = w0.now();
    c.lab.nodes[holder].link(false).unwrap();
    net.nodes[holder].link(false).unwrap();
    c.kill(holder);
    let after = wait_for(Duration::from_secs(5), || {
        let h = holders(&c, &net, &all);
        (h.iter().all(|x| x.len() == 1 && x[0] != holder) && h[0] == h[all.len() - 1]).then_some(h)
    })
    .unwrap_or_else(|| panic!("no failover: {:?}\n{}", holders(&c, &net, &all), c.logs()));
    std::thread::sleep(Duration::from_millis(800));
    let (r0, r1) = (w0.finish(), w1.finish());
    no_duals(&r0, "eth0 side", &c);
    no_duals(&r1, "eth1 side", &c);
    let new = after[0][0];
    let seen_a = r0
        .first_answer_after(a, t0, last_mac(&r0, a, t0))
        .expect("the eth0 client saw A's new holder");
    let seen_b = r1
        .first_answer_after(b, t0, last_mac(&r1, b, t0))
        .expect("the eth1 client saw B's new holder");
    // The kernels' view shortly before the watches stopped (their last sample may
    // precede the clients' last round).
    let end = |r: &Report| r.rounds.last().map_or(0.0, |x| x.t) - 0.2;
    assert_eq!(
        r0.holder_at(a, end(&r0)),
        Some(new),
        "A's holder at the end"
    );
    eprintln!(
        "machine death of n{holder}: A and B both on n{new}; client-seen {:.0} ms (eth0 side), {:.0} ms (eth1 side)",
        (seen_a - t0) * 1000.0,
        (seen_b - t0) * 1000.0
    );
    assert_eq!(
        r1.holder_at(b, end(&r1)),
        Some(new),
        "B's holder at the end"
    );
    // B was never answered on the eth0 side: the gate keeps ARP for it on eth1.
    let leaked: Vec<f64> = r0
        .rounds
        .iter()
        .filter(|r| r.answers.get(&b).is_some_and(|m| !m.is_empty()))
        .map(|r| r.t)
        .collect();
    assert!(leaked.is_empty(), "B answered on eth0 at {leaked:?}");
    // A hook of the group names both of its interfaces; one of a single VIP its own.
    let log = std::fs::read_to_string(&hooks).unwrap_or_default();
    assert!(
        log.lines().any(|l| l == format!("{a},{b} eth0,eth1")),
        "acquire hooks: {log}"
    );
    assert!(
        log.lines().any(|l| l == format!("{} eth0", singles[0])),
        "acquire hooks: {log}"
    );
}
