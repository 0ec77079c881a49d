//! The datagram format of the core (inside the authenticated envelope of `net/`).
//!
//! Layout: `version: u8 | cluster_id: u64 LE | body (postcard)`. The cluster id is
//! checked before the body is decoded, so a node with a different mode, fence or
//! timing is refused at the first byte that matters (DESIGN §2.3 rule 1). Decoding never panics: every malformed input is a [`WireError`] that the
//! engine counts and drops.

use serde::{Deserialize, Serialize};

use super::config::{GroupId, MAX_GROUPS};
use super::lease::{Answer, Claim};
use super::table::{TableDigest, TablePart};

/// Protocol version carried in every datagram.
pub const VERSION: u8 = 1;
/// Header bytes before the body.
pub const HEADER_LEN: usize = 9;
/// Largest datagram the core emits or accepts (an Ethernet MTU budget, leaving room
/// for the IP/UDP headers and the encryption envelope).
pub const MAX_DATAGRAM: usize = 1400;

/// Most groups a node lists in [`NodeMeta::recent`] (keeps the metadata within one
/// datagram).
pub const MAX_RECENT: usize = 40;

/// Most payload bytes of [`NodeMeta::unable`] (keeps the metadata within one
/// datagram): any set of groups below 384, or up to ~45 groups anywhere. A node
/// whose unable groups do not fit is not eligible at all instead.
pub const MAX_UNABLE_BYTES: usize = 48;

/// Gossiped per-node metadata (foca custom broadcast and direct replies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Node name.
    pub name: String,
    /// Process generation (the start epoch); orders metadata across restarts.
    pub generation: u64,
    /// Increases with every change within a generation.
    pub version: u64,
    /// Whether the node may be assigned groups (health, fail-back, operator).
    pub eligible: bool,
    /// Whether the node is being drained by an operator.
    pub draining: bool,
    /// Assignment weight.
    pub weight: u16,
    /// Digest of the node's whole configuration, for mismatch warnings.
    pub fingerprint: u64,
    /// Groups this node prefers (sorted, as sent).
    #[serde(with = "group_set")]
    pub prefers: Vec<GroupId>,
    /// Groups this node has bound (sorted): the assignment keeps groups with their
    /// holders ([`super::assign`]), and status displays show them.
    #[serde(with = "group_set")]
    pub held: Vec<GroupId>,
    /// Of `held`, the most recently bound first (at most [`MAX_RECENT`]; the others
    /// were bound earlier): the assignment gives up the most recent first.
    pub recent: Vec<GroupId>,
    /// The lease nonce of this process (DESIGN §2.3 rule 2). Voters grant only
    /// claims whose (name, nonce) an active member gossips: a recorded claim of a
    /// process that is gone cannot be replayed into a promise.
    pub lease_nonce: u64,
    /// Digests of the node's pool, voter set and keyring: drift made visible (a node
    /// left on an old configuration after a rollout).
    pub config: ConfigDigests,
    /// The digest of the group table `prefers`, `held` and `unable` index into.
    pub table: TableDigest,
    /// Groups this node cannot hold now: an interface one of their addresses lives
    /// on is missing or down here (sorted). The assignment gives them to others.
    #[serde(with = "group_set")]
    pub unable: Vec<GroupId>,
}

/// Digests of the parts of a node's configuration that a rollout changes
/// (DESIGN §4 "Drift is visible"). Zero means unknown (or no keyring).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConfigDigests {
    /// The VIP pool: every group's addresses and prefixes.
    pub pool: u64,
    /// The voter set and the witnesses.
    pub voters: u64,
    /// The keyring: the key ids, sending key first.
    pub keys: u64,
}

impl ConfigDigests {
    /// The parts that differ between `self` and `other`, by name.
    pub fn differences(&self, other: &ConfigDigests) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.pool != other.pool {
            out.push("pool");
        }
        if self.voters != other.voters {
            out.push("voters");
        }
        if self.keys != other.keys {
            out.push("keys");
        }
        out
    }
}

impl NodeMeta {
    /// True if `self` supersedes `other` (same node, newer).
    pub fn newer_than(&self, other: &NodeMeta) -> bool {
        self.name == other.name
            && (self.generation, self.version) > (other.generation, other.version)
    }
}

/// What a datagram carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A foca (SWIM) packet, with the sender's metadata version (generation,
    /// version) so that a receiver holding an older copy asks for the new one: the
    /// anti-entropy that repairs a lost metadata broadcast.
    Swim(Vec<u8>, (u64, u64)),
    /// A lease claim.
    Claim(Claim),
    /// A voter's answer to a claim.
    Answer(Answer),
    /// "I released this group; you are its owner in my view" — lets the next owner
    /// skip Q and its backoff. A hint only: the lease still decides.
    Released {
        /// The group, an index into the sender's table.
        group: GroupId,
        /// Who released it.
        from: String,
        /// The digest of the sender's group table.
        table: TableDigest,
    },
    /// Two-node mode: "this process holds nothing and grants nothing any more".
    Leaving {
        /// Node name.
        name: String,
        /// The leaving process's lease nonce.
        nonce: u64,
    },
    /// Asks a member for its metadata (sent when a member's metadata is missing).
    MetaRequest,
    /// A member's metadata, sent directly.
    Meta(NodeMeta),
    /// "Send me the group table with this digest" (a claim or metadata named it).
    TableRequest(TableDigest),
    /// One part of a group table.
    Table(TablePart),
    /// "A process of your name with this newer generation is known here": a node
    /// restarted with its wall clock behind has a lower generation than its
    /// predecessor, so peers would keep the predecessor's identity and metadata;
    /// told this, it renews its identity above the generation given.
    Superseded {
        /// The generation known for the sender's name.
        generation: u64,
    },
    /// "Send me the voter set with this digest" (an answer or metadata named it).
    VoterSetRequest(u64),
    /// A voter set (stored under the digest the receiver computes).
    VoterSet(crate::core::lease::VoterSet),
    /// The sender's sampled neighbour caches (at most
    /// [`crate::core::neighbours::MAX_SHARED`] entries are kept).
    Neighbours(Vec<crate::core::neighbours::Neighbour>),
    /// A lease claim with the sender's answer to the receiver's last claim riding
    /// on it (`docs/safety.md` §4.13): the answer is handled first.
    ClaimWith(Claim, Answer),
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum WireError {
    /// Shorter than the header.
    #[error("truncated datagram")]
    Truncated,
    /// Longer than [`MAX_DATAGRAM`].
    #[error("oversized datagram")]
    Oversize,
    /// Unknown protocol version.
    #[error("unsupported protocol version")]
    Version,
    /// Another cluster, or this cluster with a different configuration.
    #[error("cluster id mismatch (different voters, mode, fence or timing)")]
    ClusterMismatch,
    /// The body does not decode.
    #[error("malformed body")]
    Malformed,
}

impl WireError {
    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            WireError::Truncated => "truncated",
            WireError::Oversize => "oversize",
            WireError::Version => "version",
            WireError::ClusterMismatch => "cluster_mismatch",
            WireError::Malformed => "malformed",
        }
    }
}

/// Encodes a datagram. Fails only if the result would exceed [`MAX_DATAGRAM`].
pub fn encode(cluster_id: u64, body: &Body) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    out.extend_from_slice(&cluster_id.to_le_bytes());
    let out = postcard::to_extend(body, out).map_err(|_| WireError::Malformed)?;
    if out.len() > MAX_DATAGRAM {
        return Err(WireError::Oversize);
    }
    Ok(out)
}

/// The version byte and cluster id of a datagram, if it is long enough to carry them
/// ([`decode`] checks them; the engine names them when it refuses a datagram).
pub fn header(bytes: &[u8]) -> Option<(u8, u64)> {
    let id = bytes.get(1..HEADER_LEN)?.try_into().ok()?;
    Some((bytes[0], u64::from_le_bytes(id)))
}

/// Decodes a datagram for the cluster `cluster_id`.
pub fn decode(cluster_id: u64, bytes: &[u8]) -> Result<Body, WireError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(WireError::Oversize);
    }
    let (version, id) = header(bytes).ok_or(WireError::Truncated)?;
    if version != VERSION {
        return Err(WireError::Version);
    }
    if id != cluster_id {
        return Err(WireError::ClusterMismatch);
    }
    let (body, rest) = postcard::take_from_bytes::<Body>(&bytes[HEADER_LEN..])
        .map_err(|_| WireError::Malformed)?;
    if !rest.is_empty() {
        return Err(WireError::Malformed);
    }
    Ok(body)
}

/// Compact encoding of a set of group ids, for every group list on the wire: the
/// sorted ids as varint gaps, or a bitmap when that is smaller. Either way a set
/// of up to [`MAX_GROUPS`] groups costs at most `MAX_GROUPS / 8` bytes plus a few, so
/// a claim, an answer or a node's metadata fits one datagram however many groups a
/// node holds. Decoding yields the ids sorted and distinct and refuses ids beyond
/// [`MAX_GROUPS`].
pub(crate) mod group_set {
    use super::{GroupId, MAX_GROUPS};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    enum Enc {
        /// First id, then the gaps to each next one (each ≥ 1).
        Gaps(Vec<u16>),
        /// Bit i of byte i / 8 (least significant first) set for id i.
        Bits(Vec<u8>),
    }

    fn varint_len(x: u16) -> usize {
        match x {
            0..=127 => 1,
            128..=16_383 => 2,
            _ => 3,
        }
    }

    fn plan(ids: &[GroupId]) -> (Vec<u16>, Vec<u16>, usize, usize) {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let gaps: Vec<u16> = sorted
            .iter()
            .scan(None, |prev: &mut Option<u16>, &g| {
                let d = prev.map_or(g, |p| g - p);
                *prev = Some(g);
                Some(d)
            })
            .collect();
        let gaps_len: usize = gaps.iter().map(|&d| varint_len(d)).sum();
        let bits_len = sorted.last().map_or(0, |&m| usize::from(m) / 8 + 1);
        (sorted, gaps, gaps_len, bits_len)
    }

    /// The payload bytes of `ids` as serialized (without the tag and length, 1–3
    /// bytes more).
    pub fn payload_len(ids: &[GroupId]) -> usize {
        let (_, _, gaps_len, bits_len) = plan(ids);
        gaps_len.min(bits_len)
    }

    /// Serializes `ids` (any order, duplicates allowed) as a set.
    pub fn serialize<S: Serializer>(ids: &[GroupId], s: S) -> Result<S::Ok, S::Error> {
        let (sorted, gaps, gaps_len, bits_len) = plan(ids);
        if bits_len < gaps_len {
            let mut bits = vec![0u8; bits_len];
            for &g in &sorted {
                bits[usize::from(g) / 8] |= 1 << (g % 8);
            }
            Enc::Bits(bits).serialize(s)
        } else {
            Enc::Gaps(gaps).serialize(s)
        }
    }

    /// Deserializes a set; malformed (oversized, overflowing or repeated) sets fail.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<GroupId>, D::Error> {
        use serde::de::Error;
        let bad = || D::Error::custom("malformed group set");
        match Enc::deserialize(d)? {
            Enc::Gaps(gaps) => {
                if gaps.len() > MAX_GROUPS {
                    return Err(bad());
                }
                let mut out = Vec::with_capacity(gaps.len());
                let mut at: usize = 0;
                for (i, &d) in gaps.iter().enumerate() {
                    if i > 0 && d == 0 {
                        return Err(bad());
                    }
                    at += usize::from(d);
                    if at >= MAX_GROUPS {
                        return Err(bad());
                    }
                    out.push(at as GroupId);
                }
                Ok(out)
            }
            Enc::Bits(bits) => {
                if bits.len() > MAX_GROUPS / 8 {
                    return Err(bad());
                }
                Ok((0..bits.len() * 8)
                    .filter(|&i| bits[i / 8] & (1 << (i % 8)) != 0)
                    .map(|i| i as GroupId)
                    .collect())
            }
        }
    }
}

/// The denies of an [`Answer`] on the wire: grouped by the holder they name, each
/// holder's groups as one [`group_set`].
pub(crate) mod denies {
    use super::GroupId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    struct ByHolder(String, #[serde(with = "super::group_set")] Vec<GroupId>);

    /// Serializes `(group, holder)` pairs grouped by holder.
    pub fn serialize<S: Serializer>(d: &[(GroupId, String)], s: S) -> Result<S::Ok, S::Error> {
        let mut by: BTreeMap<&str, Vec<GroupId>> = BTreeMap::new();
        for (g, h) in d {
            by.entry(h.as_str()).or_default().push(*g);
        }
        let v: Vec<ByHolder> = by
            .into_iter()
            .map(|(h, gs)| ByHolder(h.to_string(), gs))
            .collect();
        v.serialize(s)
    }

    /// Deserializes into `(group, holder)` pairs, sorted by holder then group.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(GroupId, String)>, D::Error> {
        let v: Vec<ByHolder> = Vec::deserialize(d)?;
        Ok(v.into_iter()
            .flat_map(|ByHolder(h, gs)| gs.into_iter().map(move |g| (g, h.clone())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let bodies = vec![
            Body::Swim(vec![1, 2, 3], (1, 2)),
            Body::Claim(Claim {
                name: "a".into(),
                nonce: 9,
                seq: 3,
                groups: vec![0, 5],
                table: [7; 16],
            }),
            Body::Answer(Answer {
                voter: 1,
                set: 5,
                nonce: 9,
                seq: 3,
                granted: vec![0],
                denied: vec![(5, "b".into())],
            }),
            Body::Released {
                group: 2,
                from: "a".into(),
                table: [3; 16],
            },
            Body::Leaving {
                name: "a".into(),
                nonce: 1,
            },
            Body::MetaRequest,
        ];
        for b in bodies {
            let bytes = encode(42, &b).unwrap();
            assert_eq!(decode(42, &bytes), Ok(b));
        }
    }

    #[test]
    fn header_checks() {
        let bytes = encode(42, &Body::MetaRequest).unwrap();
        assert_eq!(decode(43, &bytes), Err(WireError::ClusterMismatch));
        assert_eq!(decode(42, &bytes[..4]), Err(WireError::Truncated));
        let mut v = bytes.clone();
        v[0] = 9;
        assert_eq!(decode(42, &v), Err(WireError::Version));
        let mut v = bytes.clone();
        v.push(0);
        assert_eq!(decode(42, &v), Err(WireError::Malformed));
        assert_eq!(
            decode(42, &vec![1; MAX_DATAGRAM + 1]),
            Err(WireError::Oversize)
        );
        assert_eq!(
            encode(42, &Body::Swim(vec![0; MAX_DATAGRAM], (0, 0))),
            Err(WireError::Oversize)
        );
    }

    fn worst_meta() -> NodeMeta {
        // Alternate groups: the densest sets for gaps, the longest bitmaps.
        NodeMeta {
            name: "n".repeat(63),
            generation: u64::MAX,
            version: u64::MAX,
            eligible: true,
            draining: true,
            weight: 1000,
            fingerprint: u64::MAX,
            prefers: (0..MAX_GROUPS as u16).step_by(2).collect(),
            held: (1..MAX_GROUPS as u16).step_by(2).collect(),
            // The most a node lists, with the largest indices.
            recent: (0..MAX_RECENT as u16).map(|i| 4095 - 2 * i).collect(),
            lease_nonce: u64::MAX,
            config: ConfigDigests {
                pool: u64::MAX,
                voters: u64::MAX,
                keys: u64::MAX,
            },
            table: [0xff; 16],
            // The most `unable` a node publishes: a full budget of gaps.
            unable: (0..MAX_UNABLE_BYTES as u16 - 1)
                .rev()
                .map(|i| 4095 - 2 * i)
                .collect(),
        }
    }

    #[test]
    fn any_group_lists_fit_one_datagram() {
        // Regression: group lists were plain varint vectors, so a node holding a
        // few hundred groups produced metadata the receivers refused and claims the
        // sender could not send (2 nodes × 2,000 VIPs never converged).
        let meta = worst_meta();
        assert_eq!(group_set::payload_len(&meta.unable), MAX_UNABLE_BYTES);
        let bytes = postcard::to_allocvec(&meta).unwrap();
        assert!(
            bytes.len() <= crate::core::membership::MAX_META_BYTES,
            "{}",
            bytes.len()
        );
        let all: Vec<GroupId> = (0..MAX_GROUPS as u16).collect();
        let bodies = [
            Body::Meta(meta),
            Body::Claim(Claim {
                name: "n".repeat(63),
                nonce: u64::MAX,
                seq: u64::MAX,
                groups: all.clone(),
                table: [0xff; 16],
            }),
            Body::Answer(Answer {
                voter: 63,
                set: u64::MAX,
                nonce: u64::MAX,
                seq: u64::MAX,
                granted: all.iter().copied().step_by(2).collect(),
                denied: all
                    .iter()
                    .skip(1)
                    .step_by(2)
                    .map(|&g| (g, "h".repeat(63)))
                    .collect(),
            }),
        ];
        for b in bodies {
            let bytes = encode(42, &b).unwrap();
            assert_eq!(decode(42, &bytes), Ok(b));
        }
    }

    #[test]
    fn malformed_group_sets_are_refused() {
        #[derive(Serialize)]
        enum Enc {
            Gaps(Vec<u16>),
            Bits(Vec<u8>),
        }
        #[derive(Debug, Deserialize)]
        struct S(#[serde(with = "group_set")] Vec<GroupId>);
        let dec = |e: &Enc| postcard::from_bytes::<S>(&postcard::to_allocvec(e).unwrap());
        assert_eq!(dec(&Enc::Gaps(vec![3, 1, 4])).unwrap().0, vec![3, 4, 8]);
        assert_eq!(
            dec(&Enc::Bits(vec![0b101, 0x80])).unwrap().0,
            vec![0, 2, 15]
        );
        assert!(dec(&Enc::Gaps(vec![3, 0])).is_err(), "repeated id");
        assert!(dec(&Enc::Gaps(vec![4095, 1])).is_err(), "beyond MAX_GROUPS");
        assert!(
            dec(&Enc::Bits(vec![0; MAX_GROUPS / 8 + 1])).is_err(),
            "long bitmap"
        );
    }

    proptest! {
        #[test]
        fn group_sets_round_trip_sorted_and_small(ids in proptest::collection::vec(0u16..MAX_GROUPS as u16, 0..3000)) {
            #[derive(Serialize, Deserialize)]
            struct S(#[serde(with = "group_set")] Vec<GroupId>);
            let bytes = postcard::to_allocvec(&S(ids.clone())).unwrap();
            prop_assert!(bytes.len() <= MAX_GROUPS / 8 + 4, "{} bytes", bytes.len());
            let mut want = ids;
            want.sort_unstable();
            want.dedup();
            prop_assert_eq!(postcard::from_bytes::<S>(&bytes).unwrap().0, want);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut b = bytes.clone();
            if b.len() >= HEADER_LEN { b[0] = VERSION; b[1..9].copy_from_slice(&42u64.to_le_bytes()); }
            let _ = decode(42, &b);
            let _ = decode(42, &bytes);
        }
    }
}
