//! `wackamole import`: the original Wackamole's sample configuration and the
//! examples of its `wackamole.conf(5)` (in `tests/import/`, written from its
//! grammar) become config files that `check-config` accepts; malformed input exits
//! 65 naming the line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wackamole"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin())
        .args(args)
        .env_remove("WACKAMOLE_CONFIG")
        .output()
        .expect("run wackamole");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    v.sort();
    assert!(v.len() >= 2);
    v
}

#[test]
fn the_original_samples_become_files_check_config_accepts() {
    let dir = std::env::temp_dir().join(format!("wm-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for path in samples() {
        for with_key in [false, true] {
            let p = path.to_str().unwrap();
            let mut args = vec!["import", p, "--node-name", "web1"];
            if with_key {
                args.extend(["--key-file", key.to_str().unwrap()]);
            }
            let (code, out, err) = run(&args);
            assert_eq!(code, 0, "{p}: {err}");
            let file = dir.join("out.toml");
            std::fs::write(&file, &out).unwrap();
            let (code, desc, err) = run(&["check-config", "--config", file.to_str().unwrap()]);
            assert_eq!(code, 0, "{p}: check-config refused:\n{err}\n{out}");
            assert!(desc.contains("VIP groups"), "{desc}");
            eprintln!(
                "{p} → check-config ok: {}",
                desc.lines()
                    .find(|l| l.starts_with("VIP groups"))
                    .unwrap_or("")
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_input_exits_65_with_the_line() {
    let dir = std::env::temp_dir().join(format!("wm-import-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "Spread = 4803\nVirtualInterfaces {\n  eth0:10.0.0.1/32\n",
            "line 3",
        ),
        ("Spread = 4803\nFrobnicate = yes\n", "line 2"),
        ("VirtualInterfaces { eth0:10.0.0.256/32 }\n", "line 1"),
        ("\n\nbalance {\n AcquisitionsPerRound = many\n}\n", "line 4"),
    ];
    for (text, line) in cases {
        let f = dir.join("bad.conf");
        std::fs::write(&f, text).unwrap();
        let (code, out, err) = run(&["import", f.to_str().unwrap()]);
        assert_eq!(code, 65, "{text:?}: {out} {err}");
        assert!(err.contains(line), "{text:?}: {err}");
        assert!(out.is_empty(), "nothing printed on an error: {out}");
    }
    let (code, _, err) = run(&["import", "/nonexistent/wackamole.conf"]);
    assert_eq!(code, 64, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
