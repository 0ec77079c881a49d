//! The datagram format of the core (inside the authenticated envelope of `net/`).
//!
//! Layout: `version: u8 | cluster_id: u64 LE | body (postcard)`. The cluster id is
//! checked before the body is decoded, so a node with a different voter set, mode,
//! group table or timing is refused at the first byte that matters (DESIGN §2.3
//! rule 1). Decoding never panics: every malformed input is a [`WireError`] that the
//! engine counts and drops.

use serde::{Deserialize, Serialize};

use super::config::GroupId;
use super::lease::{Answer, Claim};

/// Protocol version carried in every datagram.
pub const VERSION: u8 = 1;
/// Header bytes before the body.
pub const HEADER_LEN: usize = 9;
/// Largest datagram the core emits or accepts (an Ethernet MTU budget, leaving room
/// for the IP/UDP headers and the encryption envelope).
pub const MAX_DATAGRAM: usize = 1400;

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
    /// Groups this node prefers.
    pub prefers: Vec<GroupId>,
    /// Groups this node has bound (for status displays; not used to decide).
    pub held: Vec<GroupId>,
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
        /// The group.
        group: GroupId,
        /// Who released it.
        from: String,
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
    #[error("cluster id mismatch (different voters, mode, VIP groups or timing)")]
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

/// Decodes a datagram for the cluster `cluster_id`.
pub fn decode(cluster_id: u64, bytes: &[u8]) -> Result<Body, WireError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(WireError::Oversize);
    }
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Truncated);
    }
    if bytes[0] != VERSION {
        return Err(WireError::Version);
    }
    let id = u64::from_le_bytes(
        bytes[1..HEADER_LEN]
            .try_into()
            .map_err(|_| WireError::Truncated)?,
    );
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
            }),
            Body::Answer(Answer {
                voter: 1,
                nonce: 9,
                seq: 3,
                granted: vec![0],
                denied: vec![(5, "b".into())],
            }),
            Body::Released {
                group: 2,
                from: "a".into(),
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
