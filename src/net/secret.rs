//! Rules for files holding secrets (`--key-file`, `--admin-token-file`,
//! `--token-file`): who may write them, and how strong each secret is.
//!
//! * A file that group or others may **write** is refused: anyone with that access
//!   can join the cluster (or drive it). One they may **read** is accepted with a
//!   warning (container secret mounts are often 0644).
//! * A secret must carry at least [`MIN_BITS`] (128) bits, judged by its form:
//!   hexadecimal — 4 bits per digit, so ≥ 32 digits; base64 (standard or URL-safe,
//!   padded or not) — 6 bits per character, so ≥ 22 characters; a binary file —
//!   8 bits per byte, so ≥ 16 bytes; any other text is a passphrase and needs
//!   ≥ 32 characters. `head -c 32 /dev/urandom | base64` (44 characters, 256 bits)
//!   or `openssl rand -hex 32` are the recommended ways to make one. The secret's
//!   bytes are used as they are (through HKDF); the form only decides the bar.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Least strength of a secret, in bits.
pub const MIN_BITS: u32 = 128;
/// Least length of a passphrase (text that is neither hex nor base64), characters.
pub const MIN_PASSPHRASE: usize = 32;

/// The form of a secret and the bits it is credited with.
pub fn strength(secret: &[u8]) -> (&'static str, u32) {
    let Ok(text) = std::str::from_utf8(secret) else {
        return ("binary", 8 * secret.len() as u32);
    };
    let n = text.len() as u32;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return ("hex", 4 * n);
    }
    let body = text.trim_end_matches('=');
    let b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    if !body.is_empty() && body.bytes().all(b64) && text.len() - body.len() <= 2 {
        return ("base64", 6 * body.len() as u32);
    }
    // A passphrase: credited in full only from MIN_PASSPHRASE characters on.
    let bits = if text.chars().count() >= MIN_PASSPHRASE {
        MIN_BITS
    } else {
        0
    };
    ("passphrase", bits)
}

/// Checks one secret; `Err` says why it is too weak.
pub fn check_strength(secret: &[u8]) -> Result<(), String> {
    let (form, bits) = strength(secret);
    if bits >= MIN_BITS {
        return Ok(());
    }
    Err(match form {
        "passphrase" => format!(
            "a secret is a {}-character passphrase; use at least {MIN_PASSPHRASE} characters, or {MIN_BITS} random bits as 32+ hex digits or 22+ base64 characters",
            String::from_utf8_lossy(secret).chars().count()
        ),
        _ => format!(
            "a secret has {bits} bits as {form}; at least {MIN_BITS} are needed (e.g. `head -c 32 /dev/urandom | base64`)"
        ),
    })
}

/// Checks who may access the file: `Err` if group or others may write it,
/// `Ok(Some(warning))` if they may read it.
pub fn check_mode(path: &Path) -> Result<Option<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{}: mode {mode:03o} lets group or others write it; `chmod 600` it (or 640/644)",
            path.display()
        ));
    }
    Ok((mode & 0o044 != 0).then(|| {
        format!(
            "{}: mode {mode:03o} lets group or others read a secret; consider `chmod 600`",
            path.display()
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_by_form() {
        // 16 characters is 64 bits as hex, 96 as base64, a short passphrase as text.
        assert!(check_strength(b"0123456789abcdef").is_err());
        assert!(check_strength(b"abcdefghijklmnop").is_err());
        assert!(check_strength(b"hello world, hi!").is_err());
        assert!(check_strength(&[b'a'; 31]).is_err());
        // Enough: 32 hex digits, 22+ base64 characters, 32-byte base64, 16 binary bytes.
        assert!(check_strength(b"0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_strength(b"AbCdEfGhIjKlMnOpQrStUv").is_ok());
        assert!(check_strength(b"3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert!(check_strength(&[0xff; 16]).is_ok());
        assert!(check_strength(&[0xff; 15]).is_err());
        assert!(check_strength(b"correct horse battery staple, twice!").is_ok());
        assert_eq!(strength(b"00ff").0, "hex");
        assert_eq!(strength(b"a+b/c==").0, "base64");
        assert_eq!(strength(b"with spaces").0, "passphrase");
    }

    #[test]
    fn writable_files_are_refused_readable_ones_warned() {
        let dir = std::env::temp_dir().join(format!("wm-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("k");
        std::fs::write(&f, "x").unwrap();
        let set = |m| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m)).unwrap();
        set(0o600);
        assert_eq!(check_mode(&f), Ok(None));
        set(0o644);
        assert!(check_mode(&f).unwrap().is_some());
        set(0o666);
        assert!(check_mode(&f).is_err());
        set(0o620);
        assert!(check_mode(&f).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
