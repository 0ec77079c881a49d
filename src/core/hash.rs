//! The pinned hash.
//!
//! Every node must compute the same assignment and the same `cluster_id` from the
//! same inputs, across builds, platforms and Rust versions. So the core never uses
//! `std::hash` (whose `DefaultHasher` may change between releases and whose
//! `RandomState` is seeded per process). This module is FNV-1a (64 bit) over a
//! length-prefixed encoding of the inputs, finished with the SplitMix64 mixer so
//! that nearby inputs give unrelated outputs. It is not cryptographic; it only has
//! to be stable and well spread. Golden vectors in the tests pin it: changing this
//! file changes who owns which VIP, and must be treated as a protocol change.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// SplitMix64's finaliser: a bijection on `u64` with full avalanche.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A streaming pinned hasher. Each `write_*` call is framed (a tag and a length), so
/// `("ab", "c")` and `("a", "bc")` hash differently.
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl StableHasher {
    /// A hasher in its initial state.
    pub const fn new() -> Self {
        StableHasher { state: FNV_OFFSET }
    }

    fn byte(&mut self, b: u8) {
        self.state ^= u64::from(b);
        self.state = self.state.wrapping_mul(FNV_PRIME);
    }

    fn raw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    /// Adds a byte string.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.byte(0x01);
        self.raw(&(bytes.len() as u64).to_le_bytes());
        self.raw(bytes);
        self
    }

    /// Adds a string.
    pub fn write_str(&mut self, s: &str) -> &mut Self {
        self.write_bytes(s.as_bytes())
    }

    /// Adds an integer.
    pub fn write_u64(&mut self, v: u64) -> &mut Self {
        self.byte(0x02);
        self.raw(&v.to_le_bytes());
        self
    }

    /// The mixed 64-bit digest.
    pub fn finish(&self) -> u64 {
        mix64(self.state)
    }
}

/// Hash of one string, e.g. a node name.
pub fn hash_str(s: &str) -> u64 {
    StableHasher::new().write_str(s).finish()
}

/// Combines two independent digests into a third, e.g. a group's and a node's into
/// the rendezvous score of that pair.
pub const fn combine(a: u64, b: u64) -> u64 {
    mix64(a ^ mix64(b).rotate_left(17))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vectors: if one of these changes, two builds would disagree on owners.
    #[test]
    fn golden_vectors() {
        assert_eq!(mix64(0), 0);
        assert_eq!(mix64(1), 0x5692_161d_100b_05e5);
        assert_eq!(hash_str(""), 0x2bd2_f3b4_ca8a_517b);
        assert_eq!(hash_str("node-a"), 0xb13a_7347_1a19_c848);
        assert_eq!(
            combine(hash_str("10.0.0.100"), hash_str("node-a")),
            0x2695_01fc_bb95_4a6c
        );
        assert_eq!(
            StableHasher::new().write_u64(7).write_str("x").finish(),
            0xf448_1106_9b5d_820b
        );
    }

    #[test]
    fn framing_separates_fields() {
        let a = StableHasher::new().write_str("ab").write_str("c").finish();
        let b = StableHasher::new().write_str("a").write_str("bc").finish();
        assert_ne!(a, b);
    }
}
