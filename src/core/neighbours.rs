//! Shared neighbour caches (the original Wackamole's `arp-cache` notification).
//!
//! Some hosts ignore gratuitous ARP — routers, firewalls and appliances that only
//! believe an ARP reply to a request they sent, and Linux itself for an address it
//! has no entry for (unless `arp_accept`). When a VIP moves, such a host keeps
//! sending to the old holder's MAC until its entry goes stale (seconds to minutes).
//! A *unicast* ARP reply (IPv6: a unicast NA with the override flag) addressed to the
//! host itself does update it. So every node samples its kernel neighbour tables on
//! the interfaces VIPs use (reachable, stale and delay entries, bounded in count)
//! and shares them with the members; a node that binds a VIP sends a unicast reply to
//! every known neighbour of that VIP's interface, on top of the broadcast
//! announcements. The hosts that talked to the old holder are in the old holder's
//! table, which the new holder has from the last share.
//!
//! This module is the table: its own sample and each member's last share, each
//! aged out after `ttl`, merged (one MAC per address, the freshest). Pure; the
//! shell samples the kernel and sends the frames.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::Instant;

/// Most entries a node shares (one datagram: 64 IPv6 entries fit with room).
pub const MAX_SHARED: usize = 48;
/// Most members whose shares are kept.
pub const MAX_PEERS: usize = 256;

/// A neighbour: an address on a VIP interface's link and its MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Neighbour {
    /// Its address.
    pub ip: IpAddr,
    /// Its link-layer address.
    pub mac: [u8; 6],
}

/// This node's sample and the members' shares.
#[derive(Clone, Debug, Default)]
pub struct NeighbourTable {
    own: Vec<Neighbour>,
    own_at: Option<Instant>,
    peers: BTreeMap<SocketAddr, (Instant, Vec<Neighbour>)>,
}

/// The first [`MAX_SHARED`] entries, each address once, nothing unusable (a zero
/// or multicast MAC, an unspecified or multicast address).
pub fn bounded(entries: &[Neighbour]) -> Vec<Neighbour> {
    let mut out: Vec<Neighbour> = Vec::new();
    for n in entries {
        let usable = n.mac != [0; 6]
            && n.mac[0] & 1 == 0
            && !n.ip.is_unspecified()
            && !n.ip.is_multicast()
            && !n.ip.is_loopback();
        if usable && !out.iter().any(|o| o.ip == n.ip) {
            out.push(*n);
            if out.len() == MAX_SHARED {
                break;
            }
        }
    }
    out
}

impl NeighbourTable {
    /// This node's own sample (bounded); returns what to share.
    pub fn set_own(&mut self, entries: &[Neighbour], now: Instant) -> Vec<Neighbour> {
        self.own = bounded(entries);
        self.own_at = Some(now);
        self.own.clone()
    }

    /// A member's share (replaces its previous one). A new member past
    /// [`MAX_PEERS`] replaces the stalest share.
    pub fn note(&mut self, from: SocketAddr, entries: &[Neighbour], now: Instant) {
        if !self.peers.contains_key(&from)
            && self.peers.len() >= MAX_PEERS
            && let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(a, _)| *a)
        {
            self.peers.remove(&oldest);
        }
        self.peers.insert(from, (now, bounded(entries)));
    }

    /// Every neighbour known and not older than `ttl`: one MAC per address, the
    /// freshest share's (this node's own sample first on a tie).
    pub fn known(&self, now: Instant, ttl: Duration) -> Vec<Neighbour> {
        let fresh = |t: Instant| now.saturating_since(t) <= ttl;
        let mut by_ip: BTreeMap<IpAddr, (Instant, bool, [u8; 6])> = BTreeMap::new();
        let mut offer = |t: Instant, own: bool, n: &Neighbour| {
            let e = by_ip.entry(n.ip).or_insert((t, own, n.mac));
            if (t, own) > (e.0, e.1) {
                *e = (t, own, n.mac);
            }
        };
        if let Some(t) = self.own_at.filter(|t| fresh(*t)) {
            for n in &self.own {
                offer(t, true, n);
            }
        }
        for (t, list) in self.peers.values().filter(|(t, _)| fresh(*t)) {
            for n in list {
                offer(*t, false, n);
            }
        }
        by_ip
            .into_iter()
            .map(|(ip, (_, _, mac))| Neighbour { ip, mac })
            .collect()
    }

    /// Drops shares older than `ttl`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        self.peers
            .retain(|_, (t, _)| now.saturating_since(*t) <= ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(ip: &str, m: u8) -> Neighbour {
        Neighbour {
            ip: ip.parse().unwrap(),
            mac: [2, 0, 0, 0, 0, m],
        }
    }

    fn at(s: u64) -> Instant {
        Instant::from_nanos(s * 1_000_000_000)
    }

    fn peer(p: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], p))
    }

    #[test]
    fn shares_merge_freshest_first_and_age_out() {
        let mut t = NeighbourTable::default();
        let ttl = Duration::from_secs(30);
        t.set_own(&[n("10.0.0.9", 1)], at(10));
        t.note(peer(1), &[n("10.0.0.9", 2), n("10.0.0.7", 3)], at(12));
        t.note(peer(2), &[n("10.0.0.7", 4)], at(11));
        // 10.0.0.9: peer 1 is fresher than our own sample; 10.0.0.7: peer 1 too.
        assert_eq!(
            t.known(at(20), ttl),
            vec![n("10.0.0.7", 3), n("10.0.0.9", 2)]
        );
        // Our own sample again, later: it wins.
        t.set_own(&[n("10.0.0.9", 1)], at(25));
        assert_eq!(
            t.known(at(25), ttl),
            vec![n("10.0.0.7", 3), n("10.0.0.9", 1)]
        );
        // Past the ttl only our sample is left.
        assert_eq!(t.known(at(50), ttl), vec![n("10.0.0.9", 1)]);
        t.expire(at(50), ttl);
        assert!(t.peers.is_empty());
    }

    #[test]
    fn shares_are_bounded_and_unusable_entries_dropped() {
        let many: Vec<Neighbour> = (0..200u8).map(|i| n(&format!("10.0.1.{i}"), i)).collect();
        assert_eq!(bounded(&many).len(), MAX_SHARED);
        let bad = [
            Neighbour {
                ip: "10.0.0.1".parse().unwrap(),
                mac: [0; 6],
            },
            Neighbour {
                ip: "10.0.0.2".parse().unwrap(),
                mac: [1, 0, 0x5e, 0, 0, 1],
            },
            n("224.0.0.1", 5),
            n("0.0.0.0", 6),
            n("10.0.0.3", 7),
            n("10.0.0.3", 8),
        ];
        assert_eq!(bounded(&bad), vec![n("10.0.0.3", 7)]);
        let mut t = NeighbourTable::default();
        for p in 0..(MAX_PEERS as u16 + 5) {
            t.note(peer(p), &[n("10.0.0.5", 1)], at(u64::from(p)));
        }
        assert_eq!(t.peers.len(), MAX_PEERS);
        assert!(
            !t.peers.contains_key(&peer(0)),
            "the stalest share went first"
        );
    }

    #[test]
    fn a_share_fits_one_datagram() {
        let v6: Vec<Neighbour> = (0..MAX_SHARED as u16)
            .map(|i| Neighbour {
                ip: IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 1, 2, 3, 4, 5, 6, i)),
                mac: [0xfe; 6],
            })
            .collect();
        let bytes = postcard::to_allocvec(&v6).unwrap();
        assert!(
            bytes.len() + 100 <= crate::core::wire::MAX_DATAGRAM,
            "{}",
            bytes.len()
        );
    }
}
