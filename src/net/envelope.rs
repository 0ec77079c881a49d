//! The datagram envelope: authenticated encryption, a keyring, a replay window.
//!
//! ```text
//! 0      1           5                          29                        n
//! | ver  | key id BE | nonce: salt(16) ctr(8 BE) | XChaCha20-Poly1305(core datagram) + tag(16) |
//! ```
//!
//! The key is HKDF-SHA256 of a secret from `--key-file`; the key id is the first four
//! bytes of SHA-256 of the key, so a receiver picks the right key from its ring (the
//! first key sends, all keys receive: rotate by adding the new key second, then
//! first, then removing the old one). The header is authenticated as associated
//! data. The salt is random per process and the counter strictly increases, so
//! nonces never repeat under one key; a receiver keeps, per salt, a 1024-wide window
//! of counters and drops replays. Every failure is a counted drop, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Header bytes (version, key id, nonce).
pub const HEADER: usize = 1 + 4 + 24;
/// Authentication tag bytes.
pub const TAG: usize = 16;
/// Total overhead per datagram.
pub const OVERHEAD: usize = HEADER + TAG;
/// Width of the replay window, in counters.
pub const REPLAY_WINDOW: u64 = 1024;
/// Most senders tracked by the replay window.
pub const MAX_SENDERS: usize = 4096;
/// Shortest accepted secret, in bytes.
pub const MIN_SECRET: usize = 16;
/// Most keys in a ring.
pub const MAX_KEYS: usize = 8;

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Drop {
    /// Too short to hold the header and tag.
    #[error("truncated")]
    Truncated,
    /// Unknown envelope version.
    #[error("unknown version")]
    Version,
    /// No key in the ring has this id.
    #[error("unknown key")]
    UnknownKey,
    /// The tag did not verify: forged, corrupted, or another key.
    #[error("authentication failed")]
    Auth,
    /// Seen before, or too old for the window.
    #[error("replayed")]
    Replay,
}

impl Drop {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Drop::Truncated => "truncated",
            Drop::Version => "version",
            Drop::UnknownKey => "unknown_key",
            Drop::Auth => "auth",
            Drop::Replay => "replay",
        }
    }
}

/// Problems with the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Cannot read it.
    #[error("cannot read key file {path}: {err}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        err: std::io::Error,
    },
    /// Empty, a weak secret (under 128 bits, see [`super::secret`]), or a file
    /// others may write.
    #[error(
        "key file {path}: {why}; put one secret of 128 or more random bits per line (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    Bad {
        /// The path.
        path: String,
        /// What is wrong.
        why: String,
    },
}

struct Key {
    id: u32,
    aead: XChaCha20Poly1305,
}

/// Derives the datagram key from a secret.
fn derive(secret: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(b"wackamole-v1"), secret);
    let mut okm = [0u8; 32];
    hk.expand(b"datagram key", &mut okm)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    okm
}

fn key_id(key: &[u8; 32]) -> u32 {
    let d = Sha256::digest(key);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

#[derive(Clone, Copy, Debug)]
struct Window {
    max: u64,
    bits: [u64; (REPLAY_WINDOW / 64) as usize],
    seen: u64,
}

impl Window {
    fn new() -> Window {
        Window {
            max: 0,
            bits: [0; (REPLAY_WINDOW / 64) as usize],
            seen: 0,
        }
    }

    fn bit(&mut self, c: u64) -> (&mut u64, u64) {
        let i = (c % REPLAY_WINDOW) as usize;
        (&mut self.bits[i / 64], 1u64 << (i % 64))
    }

    /// Whether `c` is new; does not record it.
    fn fresh(&mut self, c: u64) -> bool {
        if c > self.max {
            return true;
        }
        if self.max - c >= REPLAY_WINDOW {
            return false;
        }
        let (w, m) = self.bit(c);
        *w & m == 0
    }

    fn record(&mut self, c: u64) {
        if c > self.max {
            // Clear the slots the window slides over.
            let steps = (c - self.max).min(REPLAY_WINDOW);
            for k in 1..=steps {
                let (w, m) = self.bit(self.max + k);
                *w &= !m;
            }
            self.max = c;
        }
        let (w, m) = self.bit(c);
        *w |= m;
    }
}

/// The keyring and the replay state.
pub struct Envelope {
    keys: Vec<Key>,
    salt: [u8; 16],
    counter: u64,
    windows: BTreeMap<[u8; 16], Window>,
    tick: u64,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// A keyring from secrets (the first one sends). `salt` must be random per process.
    pub fn new(secrets: &[Vec<u8>], salt: [u8; 16]) -> Envelope {
        let keys = secrets
            .iter()
            .take(MAX_KEYS)
            .map(|s| {
                let k = derive(s);
                Key {
                    id: key_id(&k),
                    aead: XChaCha20Poly1305::new(&k.into()),
                }
            })
            .collect();
        Envelope {
            keys,
            salt,
            counter: 0,
            windows: BTreeMap::new(),
            tick: 0,
        }
    }

    /// Replaces the keyring (a reload): the first secret sends from now on, every one
    /// of them opens. The counter, the salt and the replay windows stay, so nothing
    /// already accepted can be replayed across the change.
    pub fn set_secrets(&mut self, secrets: &[Vec<u8>]) {
        let fresh = Envelope::new(secrets, self.salt);
        self.keys = fresh.keys;
    }

    /// The ids of the keys in the ring, the sending one first.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// Reads secrets from a key file: one per non-empty line (lines starting with
    /// `#` are comments); a file that is not text is one secret.
    pub fn load_secrets(path: &Path) -> Result<Vec<Vec<u8>>, KeyError> {
        let p = path.display().to_string();
        let raw = std::fs::read(path).map_err(|err| KeyError::Read {
            path: p.clone(),
            err,
        })?;
        let secrets: Vec<Vec<u8>> = match std::str::from_utf8(&raw) {
            Ok(text) => text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| l.as_bytes().to_vec())
                .collect(),
            Err(_) => vec![raw.clone()],
        };
        if secrets.is_empty() {
            return Err(KeyError::Bad {
                path: p,
                why: "it holds no secret".into(),
            });
        }
        if let Some(s) = secrets.iter().find(|s| s.len() < MIN_SECRET) {
            return Err(KeyError::Bad {
                path: p,
                why: format!("a secret is {} bytes long", s.len()),
            });
        }
        for s in &secrets {
            super::secret::check_strength(s).map_err(|why| KeyError::Bad {
                path: p.clone(),
                why,
            })?;
        }
        super::secret::check_mode(path).map_err(|why| KeyError::Bad {
            path: p.clone(),
            why,
        })?;
        if secrets.len() > MAX_KEYS {
            return Err(KeyError::Bad {
                path: p,
                why: format!("{} secrets is more than {MAX_KEYS}", secrets.len()),
            });
        }
        Ok(secrets)
    }

    /// Seals a core datagram.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.counter += 1;
        let key = &self.keys[0];
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&key.id.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.counter.to_be_bytes());
        let nonce = XNonce::clone_from_slice(&out[5..HEADER]);
        let ct = key
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &out[..HEADER],
                },
            )
            .expect("encryption of a bounded buffer cannot fail");
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a datagram: checks version, key, tag and the replay window.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Vec<u8>, Drop> {
        if datagram.len() < OVERHEAD {
            return Err(Drop::Truncated);
        }
        if datagram[0] != ENVELOPE_VERSION {
            return Err(Drop::Version);
        }
        let id = u32::from_be_bytes([datagram[1], datagram[2], datagram[3], datagram[4]]);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(Drop::UnknownKey)?;
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&datagram[5..21]);
        let mut ctr = [0u8; 8];
        ctr.copy_from_slice(&datagram[21..HEADER]);
        let counter = u64::from_be_bytes(ctr);
        if let Some(w) = self.windows.get_mut(&salt)
            && !w.fresh(counter)
        {
            return Err(Drop::Replay);
        }
        let nonce = XNonce::clone_from_slice(&datagram[5..HEADER]);
        let plain = key
            .aead
            .decrypt(
                &nonce,
                Payload {
                    msg: &datagram[HEADER..],
                    aad: &datagram[..HEADER],
                },
            )
            .map_err(|_| Drop::Auth)?;
        // Record only authenticated counters, so forgeries cannot poison the window.
        self.tick += 1;
        if !self.windows.contains_key(&salt) && self.windows.len() >= MAX_SENDERS {
            // Forget the sender heard from longest ago.
            if let Some(old) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.seen)
                .map(|(k, _)| *k)
            {
                self.windows.remove(&old);
            }
        }
        let tick = self.tick;
        let w = self.windows.entry(salt).or_insert_with(Window::new);
        w.seen = tick;
        w.record(counter);
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Envelope, Envelope) {
        let secrets = vec![b"correct horse battery staple".to_vec()];
        (
            Envelope::new(&secrets, [1; 16]),
            Envelope::new(&secrets, [2; 16]),
        )
    }

    #[test]
    fn round_trip_and_replay() {
        let (mut a, mut b) = pair();
        let d1 = a.seal(b"hello");
        let d2 = a.seal(b"world");
        assert_eq!(b.open(&d2).unwrap(), b"world");
        assert_eq!(
            b.open(&d1).unwrap(),
            b"hello",
            "reordering within the window is fine"
        );
        assert_eq!(b.open(&d1), Err(Drop::Replay));
        assert_eq!(b.open(&d2), Err(Drop::Replay));
    }

    #[test]
    fn forged_truncated_and_foreign_are_dropped() {
        let (mut a, mut b) = pair();
        let mut d = a.seal(b"hello");
        let last = d.len() - 1;
        d[last] ^= 1;
        assert_eq!(b.open(&d), Err(Drop::Auth));
        d[last] ^= 1;
        d[25] ^= 1; // the counter is authenticated too
        assert_eq!(b.open(&d), Err(Drop::Auth));
        assert_eq!(b.open(&d[..10]), Err(Drop::Truncated));
        let mut other = Envelope::new(&[b"another secret of enough length".to_vec()], [3; 16]);
        assert_eq!(b.open(&other.seal(b"x")), Err(Drop::UnknownKey));
        let mut v = a.seal(b"x");
        v[0] = 9;
        assert_eq!(b.open(&v), Err(Drop::Version));
    }

    #[test]
    fn a_forgery_does_not_poison_the_window() {
        let (mut a, mut b) = pair();
        let good = a.seal(b"x");
        let mut forged = good.clone();
        forged[21..29].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(b.open(&forged), Err(Drop::Auth));
        assert!(b.open(&good).is_ok());
    }

    #[test]
    fn old_counters_fall_out_of_the_window() {
        let (mut a, mut b) = pair();
        let first = a.seal(b"0");
        for _ in 0..REPLAY_WINDOW + 5 {
            let d = a.seal(b"n");
            b.open(&d).unwrap();
        }
        assert_eq!(b.open(&first), Err(Drop::Replay));
    }

    #[test]
    fn key_rotation() {
        let old = b"old secret, sixteen+ bytes".to_vec();
        let new = b"new secret, sixteen+ bytes".to_vec();
        let mut sender = Envelope::new(&[new.clone(), old.clone()], [4; 16]);
        let mut receiver = Envelope::new(&[old.clone(), new.clone()], [5; 16]);
        assert!(receiver.open(&sender.seal(b"x")).is_ok());
        let mut stale = Envelope::new(&[old], [6; 16]);
        assert!(receiver.open(&stale.seal(b"y")).is_ok());
        assert_eq!(stale.open(&sender.seal(b"z")), Err(Drop::UnknownKey));
    }

    #[test]
    fn key_files() {
        let dir = std::env::temp_dir().join(format!("wm-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k");
        std::fs::write(&f, "# comment\nabcdefghijklmnopqrstuvwxyz\n\n").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        assert_eq!(Envelope::load_secrets(&f).unwrap().len(), 1);
        std::fs::write(&f, "").unwrap();
        assert!(Envelope::load_secrets(&f).is_err());
        std::fs::write(&f, "short\n").unwrap();
        assert!(Envelope::load_secrets(&f).is_err());
        assert!(Envelope::load_secrets(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
