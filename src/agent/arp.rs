//! The ARP/NDP thread: probes before binding (all waiting probes share one listening
//! window) and announcement bursts after binding, each frame checked against the
//! group's lease deadline first (raw frames bypass the gate).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::ShellOptions;
use crate::addr::arp;
use crate::clock;
use crate::core::config::GroupId;

pub(super) enum ArpJob {
    Probe {
        group: GroupId,
        addrs: Vec<IpAddr>,
    },
    Announce {
        group: GroupId,
        addrs: Vec<IpAddr>,
    },
    /// The interface changed (deleted, re-created): open the raw socket again.
    Reopen,
    /// A reload changed the announcement settings (`--garp-count`,
    /// `--garp-interval`, `--notify`).
    Configure {
        count: u32,
        interval: Duration,
        notify: Vec<std::net::Ipv4Addr>,
    },
}

/// Groups that may be announced, with the lease-derived deadline of their latest
/// kernel write. Raw ARP/NA frames bypass the gate, so the ARP thread checks this
/// map — under its lock — before every frame: a queued burst stops the moment the
/// group is released or its lease lapses (e.g. after a freeze).
pub(super) type Announceable = std::sync::Arc<
    std::sync::Mutex<std::collections::BTreeMap<GroupId, crate::core::time::Instant>>,
>;

/// Gratuitous ARP (0) and unsolicited NA (1) frames sent by the ARP thread.
pub(super) type Announced = Arc<[AtomicU64; 2]>;

pub(super) struct ProbeDone {
    pub group: GroupId,
    pub conflict: bool,
}

/// Starts the ARP thread on `ifname`; returns where to send it jobs.
pub(super) fn spawn_arp(
    ifname: &str,
    probe_wait: Duration,
    opts: &ShellOptions,
    results: mpsc::UnboundedSender<ProbeDone>,
    allowed: Announceable,
    sent: Announced,
) -> io::Result<std_mpsc::Sender<ArpJob>> {
    let mut t = ArpThread {
        link: Some(arp::Link::open(ifname)?),
        ifname: ifname.to_string(),
        probe_wait,
        count: opts.garp_count.max(1),
        interval: opts.garp_interval,
        notify: opts.notify.clone(),
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
    link: Option<arp::Link>,
    ifname: String,
    probe_wait: Duration,
    /// Frames per announcement burst, and their spacing.
    count: u32,
    interval: Duration,
    /// Addresses that get directed ARP replies after each announcement.
    notify: Vec<std::net::Ipv4Addr>,
    results: mpsc::UnboundedSender<ProbeDone>,
    allowed: Announceable,
    sent: Announced,
}

impl ArpThread {
    /// Every job waiting: announcements in order, then all probes in one window.
    fn batch(&mut self, jobs: Vec<ArpJob>) {
        let mut probes: Vec<(GroupId, Vec<IpAddr>)> = Vec::new();
        for j in jobs {
            if matches!(j, ArpJob::Reopen) || self.link.is_none() {
                // A raw socket is bound to an interface index, which a deleted and
                // re-created interface does not keep.
                self.link = arp::Link::open(&self.ifname)
                    .inspect_err(
                        |e| debug!(interface = %self.ifname, error = %e, "raw socket not reopened"),
                    )
                    .ok();
            }
            if self.link.is_none() {
                if let ArpJob::Probe { group, .. } = j {
                    // No interface, nobody to hear: silent, as a failed probe (the bind
                    // then fails on the missing interface; the lease is what keeps a
                    // bind safe, never the probe).
                    let _ = self.results.send(ProbeDone {
                        group,
                        conflict: false,
                    });
                }
                continue;
            }
            match j {
                ArpJob::Reopen => {}
                ArpJob::Configure {
                    count,
                    interval,
                    notify,
                } => {
                    self.count = count.max(1);
                    self.interval = interval;
                    self.notify = notify;
                }
                ArpJob::Probe { group, addrs } => probes.push((group, addrs)),
                ArpJob::Announce { group, addrs } => self.announce(group, &addrs),
            }
        }
        if !probes.is_empty() {
            self.probe(probes);
        }
    }

    /// One announcement burst; each frame only while the group's lease allows.
    fn announce(&mut self, group: GroupId, addrs: &[IpAddr]) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        for k in 0..self.count {
            for a in addrs {
                let guard = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
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
                if let IpAddr::V4(v) = a
                    && k == 0
                {
                    for t in &self.notify {
                        let _ = link.notify(*v, *t);
                    }
                }
            }
            if k + 1 < self.count {
                std::thread::sleep(self.interval);
            }
        }
    }

    /// All waiting probes share one listening window.
    fn probe(&mut self, probes: Vec<(GroupId, Vec<IpAddr>)>) {
        let Some(l) = self.link.as_mut() else {
            return;
        };
        let all: Vec<IpAddr> = probes.iter().flat_map(|(_, a)| a.iter().copied()).collect();
        l.drain();
        let conflicts = l.probe(&all, self.probe_wait).unwrap_or_else(|e| {
            warn!(error = %e, "probe failed; treating as silent");
            vec![false; all.len()]
        });
        let mut i = 0;
        for (group, addrs) in probes {
            let conflict = conflicts[i..i + addrs.len()].iter().any(|c| *c);
            i += addrs.len();
            let _ = self.results.send(ProbeDone { group, conflict });
        }
    }
}
