//! Metadata anti-entropy, beside [`membership`](super::membership): every datagram's
//! SWIM part carries the sender's metadata version `(generation, version)`; a receiver
//! whose copy is older (or missing) asks the sender for it, and one that knows a newer
//! generation for that name than the sender itself tells the sender it is superseded
//! (a restart with the wall clock behind: the sender renews its identity above it).
//! Active members whose metadata never arrived are asked periodically.
//!
//! Each address is asked at most once per [`META_REQUEST_PERIOD`] (and told it is
//! superseded at most once per period), so a flood of datagrams costs a bounded number
//! of answers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::time::Instant;
use super::view::View;

/// How often a missing member's metadata is requested.
pub const META_REQUEST_PERIOD: Duration = Duration::from_millis(500);
/// Most addresses remembered (the table is cleared beyond it).
pub const MAX_ASKED: usize = 4096;

/// When each address was last asked for its metadata (and, under the address with
/// port 0, last told it is superseded).
#[derive(Clone, Debug, Default)]
pub struct AntiEntropy {
    asked: BTreeMap<SocketAddr, Instant>,
    /// When each (address, table) was last sent.
    tables_sent: BTreeMap<(SocketAddr, [u8; 16]), Instant>,
}

impl AntiEntropy {
    /// Whether to answer `from`'s request for table `d` now: once per
    /// [`TABLE_REQUEST_PERIOD`](super::table::TABLE_REQUEST_PERIOD) per address and
    /// table (a node answers only for the few tables it holds).
    pub fn may_answer_table(&mut self, from: SocketAddr, d: [u8; 16], now: Instant) -> bool {
        let period = super::table::TABLE_REQUEST_PERIOD;
        if self
            .tables_sent
            .get(&(from, d))
            .is_some_and(|&t| now < t + period)
        {
            return false;
        }
        if self.tables_sent.len() > MAX_ASKED {
            self.tables_sent.clear();
        }
        self.tables_sent.insert((from, d), now);
        true
    }

    fn recently(&self, key: SocketAddr, now: Instant) -> bool {
        self.asked
            .get(&key)
            .is_some_and(|&t| now < t + META_REQUEST_PERIOD)
    }

    /// A datagram from `from` carried metadata `version`: whether to ask it for its
    /// metadata now (our copy is older or missing, and we have not just asked).
    pub fn should_request(
        &mut self,
        view: &View,
        from: SocketAddr,
        version: (u64, u64),
        now: Instant,
    ) -> bool {
        let Some(m) = view.at(from) else {
            return false;
        };
        let stale = m
            .meta
            .as_ref()
            .is_none_or(|x| (x.generation, x.version) < version);
        if !stale || self.recently(from, now) {
            return false;
        }
        if self.asked.len() > MAX_ASKED {
            self.asked.clear();
        }
        self.asked.insert(from, now);
        true
    }

    /// A datagram from `from` carried `generation`, below the metadata we hold for its
    /// name: the generation to tell it it is superseded by (once per period).
    pub fn superseded(
        &mut self,
        view: &View,
        from: SocketAddr,
        generation: u64,
        now: Instant,
    ) -> Option<u64> {
        let known = view
            .at(from)
            .and_then(|m| m.meta.as_ref().filter(|x| x.name == m.id.name))
            .map(|x| x.generation)?;
        if generation >= known {
            return None;
        }
        let key = SocketAddr::new(from.ip(), 0);
        if self.recently(key, now) {
            return None;
        }
        self.asked.insert(key, now);
        Some(known)
    }
}

/// Active members whose metadata has not arrived (or is another name's).
pub fn missing_meta(view: &View) -> Vec<SocketAddr> {
    view.active()
        .filter(|m| m.meta.as_ref().is_none_or(|x| x.name != m.id.name))
        .map(|m| m.id.addr)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::membership::{Liveness, MemberView, NodeId};
    use crate::core::wire::NodeMeta;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 2], port))
    }

    fn view(meta: Option<(u64, u64)>) -> View {
        View::new(vec![MemberView {
            id: NodeId {
                addr: addr(7946),
                name: "b".into(),
                epoch: 1,
            },
            incarnation: 0,
            state: Liveness::Alive,
            meta: meta.map(|(generation, version)| NodeMeta {
                name: "b".into(),
                generation,
                version,
                eligible: true,
                draining: false,
                weight: 1,
                fingerprint: 0,
                prefers: vec![],
                held: vec![],
                recent: vec![],
                lease_nonce: 1,
                config: Default::default(),
                table: [0; 16],
                unable: Vec::new(),
            }),
        }])
    }

    #[test]
    fn a_newer_version_is_requested_once_per_period() {
        let mut ae = AntiEntropy::default();
        let v = view(Some((5, 2)));
        assert!(!ae.should_request(&v, addr(7946), (5, 2), at(0)), "same");
        assert!(ae.should_request(&v, addr(7946), (5, 3), at(0)));
        assert!(!ae.should_request(&v, addr(7946), (5, 3), at(499)));
        assert!(ae.should_request(&v, addr(7946), (5, 3), at(500)));
        assert!(
            !ae.should_request(&v, addr(9), (9, 9), at(600)),
            "not a member"
        );
    }

    #[test]
    fn a_sender_behind_our_copy_is_told_it_is_superseded_once_per_period() {
        let mut ae = AntiEntropy::default();
        let v = view(Some((100, 0)));
        assert_eq!(ae.superseded(&v, addr(7946), 100, at(0)), None);
        assert_eq!(ae.superseded(&v, addr(7946), 40, at(0)), Some(100));
        assert_eq!(ae.superseded(&v, addr(7946), 40, at(100)), None);
        // The request table and the superseded table do not share entries.
        assert!(ae.should_request(&v, addr(7946), (100, 1), at(100)));
    }

    #[test]
    fn members_without_metadata_are_missing() {
        assert_eq!(missing_meta(&view(None)), vec![addr(7946)]);
        assert!(missing_meta(&view(Some((1, 0)))).is_empty());
    }
}
