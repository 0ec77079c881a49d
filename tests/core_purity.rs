//! `src/core` decides; it must not do IO or read clocks or global randomness.
//! This test fails the build if one of the banned names appears in its code
//! (comments are skipped), so the simulator's determinism cannot be broken by an
//! innocent-looking `Instant::now()`.

use std::fs;
use std::path::Path;

const BANNED: &[(&str, &str)] = &[
    ("tokio", "no async runtime in the core"),
    ("Instant::now", "time comes in as `now`"),
    ("SystemTime", "no wall clock in the core"),
    ("std::time::Instant", "use core::time::Instant (plain data)"),
    ("thread_rng", "randomness is injected"),
    ("rand::rng(", "randomness is injected"),
    ("make_rng", "randomness is injected"),
    ("OsRng", "randomness is injected"),
    ("RandomState", "iteration order must be deterministic"),
    (
        "HashMap",
        "iteration order must be deterministic (use BTreeMap)",
    ),
    (
        "HashSet",
        "iteration order must be deterministic (use BTreeSet)",
    ),
    ("UdpSocket", "no sockets in the core"),
    ("TcpStream", "no sockets in the core"),
    ("std::thread", "no threads in the core"),
    ("std::fs", "no files in the core"),
    ("std::process", "no processes in the core"),
    ("unsafe", "the core is safe Rust"),
];

fn scan(dir: &Path, found: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("src/core is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            scan(&path, found);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("source is UTF-8");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (word, why) in BANNED {
                if code.contains(word) {
                    found.push(format!(
                        "{}:{}: `{word}` ({why}): {}",
                        path.display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
}

#[test]
fn core_has_no_io_clock_or_global_randomness() {
    let mut found = Vec::new();
    scan(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core"),
        &mut found,
    );
    assert!(
        found.is_empty(),
        "banned in src/core:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_catches_a_banned_name() {
    // The checker itself must be able to fail.
    let dir = std::env::temp_dir().join(format!("wm-purity-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("bad.rs"),
        "fn f() { let t = std::time::Instant::now(); }\n// Instant::now in a comment is fine\n",
    )
    .unwrap();
    let mut found = Vec::new();
    scan(&dir, &mut found);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.len(), 2, "{found:?}"); // `Instant::now` and `std::time::Instant`, one line
}
