//! The ARP/NDP thread: probes before binding (all waiting probes share one listening
//! window) and announcement bursts after binding, each frame checked against the
//! group's lease deadline first (raw frames bypass the gate).

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::NotifyOptions;
use super::ShellOptions;
use crate::addr::arp;
use crate::clock;
use crate::core::config::GroupId;
use crate::core::links::Homes;
use crate::core::neighbours::Neighbour;

pub(super) enum ArpJob {
    Probe {
        group: GroupId,
        addrs: Vec<IpAddr>,
    },
    Announce {
        group: GroupId,
        addrs: Vec<IpAddr>,
    },
    /// An interface changed (deleted, re-created): open the raw sockets again.
    Reopen,
    /// A reload added VIPs, possibly on interfaces not used before.
    Homes(Homes),
    /// A reload changed the announcement settings (`--garp-count`,
    /// `--garp-interval`, `--notify…`).
    Configure {
        count: u32,
        interval: Duration,
        notify: NotifyOptions,
    },
    /// The known neighbours of each interface (`--notify-neighbours`).
    Neighbours(BTreeMap<String, Vec<Neighbour>>),
}

/// Groups that may be announced, with the lease-derived deadline of their latest
/// kernel write. Raw ARP/NA frames bypass the gate, so the ARP thread checks this
/// map — under its lock — before every frame: a queued burst stops the moment the
/// group is released or its lease lapses (e.g. after a freeze).
pub(super) type Announceable = std::sync::Arc<
    std::sync::Mutex<std::collections::BTreeMap<GroupId, crate::core::time::Instant>>,
>;

/// Frames sent by the ARP thread: gratuitous ARP (0), unsolicited NA (1), directed
/// replies to `--notify` targets (2), unicast replies / NAs to known neighbours (3).
pub(super) type Announced = Arc<[AtomicU64; 4]>;

pub(super) struct ProbeDone {
    pub group: GroupId,
    pub conflict: bool,
}

/// Starts the ARP thread for the interfaces the VIPs live on (`homes`); returns
/// where to send it jobs.
pub(super) fn spawn_arp(
    homes: &Homes,
    ifnames: &[String],
    probe_wait: Duration,
    opts: &ShellOptions,
    results: mpsc::UnboundedSender<ProbeDone>,
    allowed: Announceable,
    sent: Announced,
) -> io::Result<std_mpsc::Sender<ArpJob>> {
    let mut links = BTreeMap::new();
    for name in ifnames {
        // An interface that is not there (yet) gets its socket when it appears.
        let link = match arp::Link::open(name) {
            Ok(l) => Some(l),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        links.insert(name.clone(), link);
    }
    let mut t = ArpThread {
        links,
        homes: homes.clone(),
        probe_wait,
        count: opts.garp_count.max(1),
        interval: opts.garp_interval,
        notify: opts.notify.clone(),
        neighbours: BTreeMap::new(),
        results,
        allowed,
        sent,
    };
    let (tx, rx) = std_mpsc::channel::<ArpJob>();
    std::thread::Builder::new()
        .name("wm-arp".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while let Ok(j) = rx.try_recv() {
                    jobs.push(j);
                }
                t.batch(jobs);
            }
        })?;
    Ok(tx)
}

/// The ARP thread's state.
struct ArpThread {
    /// One raw socket per interface VIPs live on (`None` while it cannot be opened:
    /// the interface is gone).
    links: BTreeMap<String, Option<arp::Link>>,
    homes: Homes,
    probe_wait: Duration,
    /// Frames per announcement burst, and their spacing.
    count: u32,
    interval: Duration,
    /// Directed notifications after each announcement.
    notify: NotifyOptions,
    /// Known neighbours per interface (sent unicast replies when enabled).
    neighbours: BTreeMap<String, Vec<Neighbour>>,
    results: mpsc::UnboundedSender<ProbeDone>,
    allowed: Announceable,
    sent: Announced,
}

impl ArpThread {
    /// (Re)opens the raw socket of every interface that has none, or of all of them.
    fn reopen(&mut self, all: bool) {
        for (name, link) in self.links.iter_mut() {
            if all || link.is_none() {
                *link = arp::Link::open(name)
                    .inspect_err(
                        |e| debug!(interface = %name, error = %e, "raw socket not reopened"),
                    )
                    .ok();
            }
        }
    }

    /// The raw socket for `addr`'s interface, if open.
    fn link_of(&mut self, addr: IpAddr) -> Option<&mut arp::Link> {
        let name = self.homes.iface(addr)?;
        self.links.get_mut(name)?.as_mut()
    }

    /// Every job waiting: announcements in order, then all probes in one window.
    fn batch(&mut self, jobs: Vec<ArpJob>) {
        let mut probes: Vec<(GroupId, Vec<IpAddr>)> = Vec::new();
        if self.links.values().any(Option::is_none) {
            self.reopen(false);
        }
        for j in jobs {
            match j {
                ArpJob::Reopen => self.reopen(true),
                ArpJob::Homes(h) => {
                    for name in h.of.values().chain(h.default.iter()) {
                        self.links.entry(name.clone()).or_insert(None);
                    }
                    self.homes = h;
                    self.reopen(false);
                }
                ArpJob::Configure {
                    count,
                    interval,
                    notify,
                } => {
                    self.count = count.max(1);
                    self.interval = interval;
                    self.notify = notify;
                }
                ArpJob::Neighbours(n) => self.neighbours = n,
                ArpJob::Probe { group, addrs } => probes.push((group, addrs)),
                ArpJob::Announce { group, addrs } => self.announce(group, &addrs),
            }
        }
        if !probes.is_empty() {
            self.probe(probes);
        }
    }

    /// One announcement burst; each frame only while the group's lease allows, on
    /// the interface each address lives on. After the first round of the burst,
    /// the directed notifications: `--notify` targets, and with
    /// `--notify-neighbours` a unicast reply to every known neighbour of the
    /// address's interface (paced by `--notify-rate`).
    fn announce(&mut self, group: GroupId, addrs: &[IpAddr]) {
        for k in 0..self.count {
            for a in addrs {
                let allowed = Arc::clone(&self.allowed);
                let Some(link) = self.link_of(*a) else {
                    continue;
                };
                let guard = allowed.lock().unwrap_or_else(|e| e.into_inner());
                if guard.get(&group).is_none_or(|d| clock::now() > *d) {
                    return;
                }
                let r = link.announce_once(*a);
                drop(guard);
                match r {
                    Ok(()) => {
                        self.sent[usize::from(a.is_ipv6())].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => warn!(vip = %a, error = %e, "announce failed"),
                }
            }
            if k == 0 && !self.directed(group, addrs) {
                return;
            }
            if k + 1 < self.count {
                std::thread::sleep(self.interval);
            }
        }
    }

    /// The directed notifications of one bind (see [`ArpThread::announce`]); false
    /// once the group's lease no longer allows a frame.
    fn directed(&mut self, group: GroupId, addrs: &[IpAddr]) -> bool {
        let pace = (self.notify.rate > 0).then(|| Duration::from_secs(1) / self.notify.rate);
        for a in addrs {
            let Some(ifname) = self.homes.iface(*a).map(str::to_string) else {
                continue;
            };
            let mut to: Vec<(IpAddr, Option<[u8; 6]>, usize)> = Vec::new();
            if a.is_ipv4() {
                for (i, t) in &self.notify.targets {
                    if i.as_deref().is_none_or(|i| i == ifname) {
                        to.push((IpAddr::V4(*t), None, 2));
                    }
                }
            }
            if self.notify.neighbours {
                for n in self.neighbours.get(&ifname).into_iter().flatten() {
                    if n.ip.is_ipv4() == a.is_ipv4() && n.ip != *a {
                        to.push((n.ip, Some(n.mac), 3));
                    }
                }
            }
            for (ip, mac, kind) in to {
                let allowed = Arc::clone(&self.allowed);
                let Some(link) = self.link_of(*a) else {
                    break;
                };
                let guard = allowed.lock().unwrap_or_else(|e| e.into_inner());
                if guard.get(&group).is_none_or(|d| clock::now() > *d) {
                    return false;
                }
                let r = match (mac, a, ip) {
                    (Some(mac), _, _) => link.tell(*a, ip, mac),
                    (None, IpAddr::V4(v), IpAddr::V4(t)) => link.notify(*v, t),
                    _ => Ok(()),
                };
                drop(guard);
                match r {
                    Ok(()) => {
                        self.sent[kind].fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => debug!(vip = %a, to = %ip, error = %e, "notification failed"),
                }
                if let Some(p) = pace {
                    std::thread::sleep(p);
                }
            }
        }
        true
    }

    /// All waiting probes share one listening window, over every interface.
    fn probe(&mut self, probes: Vec<(GroupId, Vec<IpAddr>)>) {
        let all: Vec<IpAddr> = probes.iter().flat_map(|(_, a)| a.iter().copied()).collect();
        // Per interface: its open socket and the addresses it probes.
        let mut by_link: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for a in &all {
            if let Some(name) = self.homes.iface(*a)
                && matches!(self.links.get(name), Some(Some(_)))
            {
                by_link.entry(name.to_string()).or_default().push(*a);
            }
        }
        let mut conflicts: BTreeMap<IpAddr, bool> = BTreeMap::new();
        {
            let mut set: Vec<(&mut arp::Link, &[IpAddr])> = Vec::new();
            for (name, link) in self.links.iter_mut() {
                if let (Some(l), Some(v)) = (link.as_mut(), by_link.get(name)) {
                    l.drain();
                    set.push((l, v.as_slice()));
                }
            }
            // An address whose interface has no socket is silent, as a failed probe
            // (its bind then fails on the missing interface; the lease is what keeps
            // a bind safe, never the probe).
            match arp::probe_links(&mut set, self.probe_wait) {
                Ok(c) => {
                    for ((_, v), c) in set.iter().zip(c) {
                        for (a, x) in v.iter().zip(c) {
                            conflicts.insert(*a, x);
                        }
                    }
                }
                Err(e) => warn!(error = %e, "probe failed; treating as silent"),
            }
        }
        for (group, addrs) in probes {
            let conflict = addrs.iter().any(|a| conflicts.get(a) == Some(&true));
            let _ = self.results.send(ProbeDone { group, conflict });
        }
    }
}
