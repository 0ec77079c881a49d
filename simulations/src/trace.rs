//! The run's trace: every event is folded into a digest (so a replay can prove it
//! took the same path), and its text is kept only when a failing seed is re-run.

use wackamole::core::membership::NodeId;
use wackamole::core::wire::{Body, decode};

/// How many trace lines a violation report keeps.
pub const TRACE_TAIL: usize = 80;

/// What a trace line is about. The digest covers (time, [`Tag::key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A datagram delivered to a node.
    Deliver {
        /// Receiver.
        node: usize,
    },
    /// A probe's result.
    Probe {
        /// Prober.
        node: usize,
        /// Someone answered.
        conflict: bool,
    },
    /// The kernel's expiry worker removed addresses.
    Expired {
        /// Node.
        node: usize,
    },
    /// A graceful leave completed and the agent exited.
    Left {
        /// Node.
        node: usize,
    },
    /// An engine event.
    Event {
        /// Node.
        node: usize,
    },
    /// A kernel operation's result reached the engine.
    KernelDone {
        /// Node.
        node: usize,
        /// Operation id.
        op: u64,
    },
    /// A dual ownership.
    Violation,
    /// A node's status, dumped on a liveness failure.
    Status {
        /// Node.
        node: usize,
    },
    /// An agent started.
    Started {
        /// Node.
        node: usize,
    },
    /// A fault was applied.
    Fault {
        /// Node.
        node: usize,
        /// The fault's kind, as its discriminant.
        kind: u64,
    },
    /// A model-shell step.
    Shell {
        /// Node.
        node: usize,
        /// Operation id.
        op: u64,
    },
}

impl Tag {
    /// The key folded into the digest: the kind in bits 32–39, the node in the low
    /// bits, a detail in bits 16–31 and an operation id from bit 40.
    pub fn key(self) -> u64 {
        let (kind, node, detail, op) = match self {
            Tag::Deliver { node } => (1, node, 0, 0),
            Tag::Probe { node, conflict } => (2, node, u64::from(conflict), 0),
            Tag::Expired { node } => (3, node, 0, 0),
            Tag::Left { node } => (4, node, 0, 0),
            Tag::Event { node } => (5, node, 0, 0),
            Tag::KernelDone { node, op } => (6, node, 0, op),
            Tag::Violation => (7, 0, 0, 0),
            Tag::Status { node } => (8, node, 0, 0),
            Tag::Started { node } => (9, node, 0, 0),
            Tag::Fault { node, kind } => (10, node, kind, 0),
            Tag::Shell { node, op } => (11, node, 0, op),
        };
        kind << 32 | node as u64 | detail << 16 | op << 40
    }
}

/// A short description of a datagram, for traces.
pub fn describe_datagram(cluster_id: u64, payload: &[u8]) -> String {
    use foca::Codec;
    match decode(cluster_id, payload) {
        Ok(Body::Swim(d, _)) => {
            let mut codec = foca::PostcardCodec;
            match <foca::PostcardCodec as Codec<NodeId>>::decode_header(&mut codec, &d[..]) {
                Ok(h) => format!(
                    "swim {:?} {}@{}->{}@{}",
                    h.message, h.src.name, h.src.epoch, h.dst.name, h.dst.epoch
                ),
                Err(_) => "swim ?".into(),
            }
        }
        Ok(Body::Claim(c)) => format!("claim {} seq{} {:?}", c.name, c.seq, c.groups),
        Ok(Body::ClaimWith(c, a)) => format!(
            "claim {} seq{} {:?} + answer v{} seq{} +{:?}",
            c.name, c.seq, c.groups, a.voter, a.seq, a.granted
        ),
        Ok(Body::Answer(a)) => format!(
            "answer v{} seq{} +{:?} -{:?}",
            a.voter, a.seq, a.granted, a.denied
        ),
        Ok(b) => format!("{b:?}"),
        Err(e) => format!("undecodable {e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_fields_apart() {
        assert_eq!(Tag::Deliver { node: 3 }.key(), 1 << 32 | 3);
        assert_eq!(
            Tag::Probe {
                node: 2,
                conflict: true
            }
            .key(),
            2 << 32 | 2 | 1 << 16
        );
        assert_eq!(Tag::Shell { node: 1, op: 9 }.key(), 11 << 32 | 1 | 9 << 40);
        assert_ne!(
            Tag::KernelDone { node: 1, op: 9 }.key(),
            Tag::Shell { node: 1, op: 9 }.key()
        );
    }
}
