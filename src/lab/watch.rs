//! Watching a lab: who answers each VIP, sampled from the kernels and from a client.
//!
//! * **Kernel samplers** — one thread per node, inside its namespace, every
//!   `period`: the node's addresses (rtnetlink) and, with the gate, its `live`
//!   elements. A node answers a VIP when the address is there and (gate) live.
//!   Each sampler keeps intervals [first seen, last seen] of answering; two nodes'
//!   intervals for one VIP that overlap prove dual answering (sampling only ever
//!   shortens intervals, so an overlap is never a sampling artefact).
//! * **Client** — one thread in the client namespace asks every VIP every `period`
//!   (ARP request, or neighbour solicitation) and records which MACs answer: two
//!   MACs answering one round is dual answering as the network sees it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::addr::arp::Link as RawLink;
use crate::addr::gate::{Gate, GateSet};
use crate::addr::rtnl::Rtnl;

use super::{Lab, enter};

/// Answering intervals of one node, per VIP, in seconds since the watch started.
pub type Intervals = BTreeMap<IpAddr, Vec<(f64, f64)>>;

/// One client round.
#[derive(Clone, Debug)]
pub struct Round {
    /// Seconds since the watch started.
    pub t: f64,
    /// VIP → MACs that answered.
    pub answers: BTreeMap<IpAddr, BTreeSet<[u8; 6]>>,
}

/// What a watch saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Per node.
    pub nodes: Vec<Intervals>,
    /// Client rounds.
    pub rounds: Vec<Round>,
    /// Kernel samples taken, per node.
    pub samples: Vec<u64>,
}

/// Dual answering found in a report.
#[derive(Clone, Debug, PartialEq)]
pub struct Dual {
    /// The VIP.
    pub vip: IpAddr,
    /// When (seconds since start).
    pub t: f64,
    /// Who: node indices (kernel view) or MAC strings (client view).
    pub who: String,
}

fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Report {
    /// Overlapping answering intervals of two nodes for one VIP.
    pub fn kernel_duals(&self) -> Vec<Dual> {
        let mut out = Vec::new();
        for (a, ia) in self.nodes.iter().enumerate() {
            for (b, ib) in self.nodes.iter().enumerate().skip(a + 1) {
                for (vip, xs) in ia {
                    let Some(ys) = ib.get(vip) else { continue };
                    for &(s1, e1) in xs {
                        for &(s2, e2) in ys {
                            if s1 <= e2 && s2 <= e1 {
                                out.push(Dual {
                                    vip: *vip,
                                    t: s1.max(s2),
                                    who: format!("n{a} and n{b}"),
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Client rounds in which two MACs answered one VIP.
    pub fn client_duals(&self) -> Vec<Dual> {
        self.rounds
            .iter()
            .flat_map(|r| {
                r.answers
                    .iter()
                    .filter(|(_, m)| m.len() > 1)
                    .map(move |(v, m)| Dual {
                        vip: *v,
                        t: r.t,
                        who: m.iter().map(mac_str).collect::<Vec<_>>().join(" and "),
                    })
            })
            .collect()
    }

    /// Which node answered `vip` at time `t` (kernel view), if exactly one.
    pub fn holder_at(&self, vip: IpAddr, t: f64) -> Option<usize> {
        let who: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| {
                self.nodes[n]
                    .get(&vip)
                    .is_some_and(|iv| iv.iter().any(|&(s, e)| s <= t && t <= e))
            })
            .collect();
        (who.len() == 1).then(|| who[0])
    }

    /// The first client round at or after `t` in which `vip` got an answer from a
    /// MAC other than `old`; returns its time.
    pub fn first_answer_after(&self, vip: IpAddr, t: f64, old: Option<[u8; 6]>) -> Option<f64> {
        self.rounds
            .iter()
            .filter(|r| r.t >= t)
            .find(|r| {
                r.answers
                    .get(&vip)
                    .is_some_and(|m| m.iter().any(|x| Some(*x) != old))
            })
            .map(|r| r.t)
    }
}

/// A running watch.
#[derive(Debug)]
pub struct Watch {
    stop: Arc<AtomicBool>,
    nodes: Vec<JoinHandle<(Intervals, u64)>>,
    client: Option<JoinHandle<Vec<Round>>>,
    /// When it started.
    pub start: Instant,
}

impl Watch {
    /// Starts sampling every `period` (kernel) and every `client_period` (client;
    /// zero: no client).
    pub fn start(
        lab: &Lab,
        vips: &[IpAddr],
        gate: bool,
        period: Duration,
        client_period: Duration,
    ) -> Watch {
        Watch::start_on(
            &lab.nodes,
            (&lab.client, lab.addr6(250)),
            vips,
            gate,
            period,
            client_period,
        )
    }

    /// [`Watch::start`] on any hosts: the nodes' interfaces `nodes_on` (one per
    /// node, in node order) and a client with its IPv6 source address.
    pub fn start_on(
        nodes_on: &[crate::lab::Host],
        client: (&crate::lab::Host, std::net::Ipv6Addr),
        vips: &[IpAddr],
        gate: bool,
        period: Duration,
        client_period: Duration,
    ) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let mut nodes = Vec::new();
        for h in nodes_on {
            let (ns, ifname, vips, stop) =
                (h.ns.clone(), h.ifname.clone(), vips.to_vec(), stop.clone());
            nodes.push(std::thread::spawn(move || {
                sample_node(&ns, &ifname, &vips, gate, period, start, &stop)
            }));
        }
        let client = (!client_period.is_zero()).then(|| {
            let (ns, ifname, vips, stop) = (
                client.0.ns.clone(),
                client.0.ifname.clone(),
                vips.to_vec(),
                stop.clone(),
            );
            let (src4, src6) = (client.0.addr, client.1);
            std::thread::spawn(move || {
                sample_client(&ns, &ifname, &vips, src4, src6, client_period, start, &stop)
            })
        });
        Watch {
            stop,
            nodes,
            client,
            start,
        }
    }

    /// Seconds since the watch started.
    pub fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Stops and collects.
    pub fn finish(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let mut r = Report::default();
        for h in self.nodes {
            let (iv, n) = h.join().unwrap_or_default();
            r.nodes.push(iv);
            r.samples.push(n);
        }
        if let Some(c) = self.client {
            r.rounds = c.join().unwrap_or_default();
        }
        r
    }
}

fn sample_node(
    ns: &str,
    ifname: &str,
    vips: &[IpAddr],
    gate: bool,
    period: Duration,
    start: Instant,
    stop: &AtomicBool,
) -> (Intervals, u64) {
    let mut out: Intervals = BTreeMap::new();
    if enter(ns).is_err() {
        return (out, 0);
    }
    let Ok(mut rtnl) = Rtnl::new() else {
        return (out, 0);
    };
    let mut g = if gate { Gate::open().ok() } else { None };
    let index = match rtnl.link(ifname) {
        Ok(Some(l)) => l.index,
        _ => return (out, 0),
    };
    let mut open: BTreeMap<IpAddr, (f64, f64)> = BTreeMap::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let t0 = start.elapsed().as_secs_f64();
        let present: BTreeSet<IpAddr> = rtnl
            .addrs(index)
            .map(|v| {
                v.into_iter()
                    .map(|a| a.addr)
                    .filter(|a| vips.contains(a))
                    .collect()
            })
            .unwrap_or_default();
        let answering: BTreeSet<IpAddr> = match &mut g {
            Some(g) => {
                // A missing table (agent not started, stopped, or replacing it)
                // filters nothing: every present address answers.
                let mut live = BTreeSet::new();
                let mut table = true;
                for v6 in [false, true] {
                    match g.list(GateSet::Live, v6) {
                        Ok(l) => live.extend(l.into_iter().map(|(a, _)| a)),
                        Err(_) => table = false,
                    }
                }
                if table {
                    present.intersection(&live).copied().collect()
                } else {
                    present
                }
            }
            None => present,
        };
        let t1 = start.elapsed().as_secs_f64();
        // The state holds at least from t1 of this sample; close intervals at the
        // start of the sample that no longer saw them.
        for v in vips {
            match (open.get_mut(v), answering.contains(v)) {
                (Some(iv), true) => iv.1 = t0,
                (None, true) => {
                    // Seen somewhere in [t0, t1]: kept as the inverted pair (t1, t0),
                    // which overlaps another interval only if that one covers all of
                    // [t0, t1].
                    open.insert(*v, (t1, t0));
                }
                (Some(_), false) => {
                    let iv = open.remove(v).expect("present");
                    out.entry(*v).or_default().push(iv);
                }
                (None, false) => {}
            }
        }
        n += 1;
        let spent = start.elapsed().as_secs_f64() - t0;
        if spent < period.as_secs_f64() {
            std::thread::sleep(period - Duration::from_secs_f64(spent));
        }
    }
    for (v, iv) in open {
        out.entry(v).or_default().push(iv);
    }
    (out, n)
}

#[allow(clippy::too_many_arguments)]
fn sample_client(
    ns: &str,
    ifname: &str,
    vips: &[IpAddr],
    src4: std::net::Ipv4Addr,
    src6: Ipv6Addr,
    period: Duration,
    start: Instant,
    stop: &AtomicBool,
) -> Vec<Round> {
    let mut rounds = Vec::new();
    if enter(ns).is_err() {
        return rounds;
    }
    let Ok(mut link) = RawLink::open(ifname) else {
        return rounds;
    };
    while !stop.load(Ordering::SeqCst) {
        let t = start.elapsed().as_secs_f64();
        for v in vips {
            let _ = match v {
                IpAddr::V4(a) => link.who_has(src4, *a),
                IpAddr::V6(a) => link.solicit(src6, *a),
            };
        }
        let until = Instant::now() + period.mul_f64(0.9);
        let mut answers: BTreeMap<IpAddr, BTreeSet<[u8; 6]>> = BTreeMap::new();
        if let Ok(a) = link.answers(until) {
            for (ip, mac) in a {
                if vips.contains(&ip) {
                    answers.entry(ip).or_default().insert(mac);
                }
            }
        }
        rounds.push(Round { t, answers });
        let spent = start.elapsed().as_secs_f64() - t;
        if spent < period.as_secs_f64() {
            std::thread::sleep(period - Duration::from_secs_f64(spent));
        }
    }
    rounds
}

/// (seconds since start, the MAC the client's cache named), at each change.
type CacheSeen = Arc<std::sync::Mutex<Vec<(f64, Option<[u8; 6]>)>>>;

/// A client that sends to a VIP through its kernel's own neighbour cache (a UDP
/// datagram to port 9 every `period`) and records which MAC that cache names for
/// the VIP over time: what its traffic really reaches. (The ARP-probing client of
/// [`Watch`] uses raw frames and does not touch the cache.)
#[derive(Debug)]
pub struct NeighWatch {
    stop: Arc<AtomicBool>,
    seen: CacheSeen,
    handle: JoinHandle<()>,
}

impl NeighWatch {
    /// Starts in namespace `ns` on `ifname`, times relative to `start`.
    pub fn start(
        ns: &str,
        ifname: &str,
        vip: IpAddr,
        period: Duration,
        start: Instant,
    ) -> NeighWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: CacheSeen = Arc::default();
        let (ns, ifname, flag, out) = (
            ns.to_string(),
            ifname.to_string(),
            stop.clone(),
            seen.clone(),
        );
        let handle = std::thread::spawn(move || {
            if enter(&ns).is_err() {
                return;
            }
            let Ok(mut rtnl) = Rtnl::new() else {
                return;
            };
            let Ok(Some(link)) = rtnl.link(&ifname) else {
                return;
            };
            let bind: std::net::SocketAddr = if vip.is_ipv4() {
                "0.0.0.0:0".parse().expect("addr")
            } else {
                "[::]:0".parse().expect("addr")
            };
            let Ok(sock) = std::net::UdpSocket::bind(bind) else {
                return;
            };
            let mut last: Option<Option<[u8; 6]>> = None;
            while !flag.load(Ordering::SeqCst) {
                let _ = sock.send_to(b"wackamole-lab", (vip, 9));
                let mac = rtnl
                    .neighbours(link.index)
                    .ok()
                    .and_then(|v| v.into_iter().find(|n| n.ip == vip).map(|n| n.mac));
                if last != Some(mac) {
                    if let Ok(mut o) = out.lock() {
                        o.push((start.elapsed().as_secs_f64(), mac));
                    }
                    last = Some(mac);
                }
                std::thread::sleep(period);
            }
        });
        NeighWatch { stop, seen, handle }
    }

    /// The MAC the cache names now (as last sampled).
    pub fn current(&self) -> Option<[u8; 6]> {
        self.seen
            .lock()
            .ok()
            .and_then(|v| v.last().and_then(|x| x.1))
    }

    /// Stops; the changes seen: (seconds since start, MAC the cache named).
    pub fn finish(self) -> Vec<(f64, Option<[u8; 6]>)> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.handle.join();
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}
