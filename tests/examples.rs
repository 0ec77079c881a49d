//! The deployment examples (`examples/compose.yaml`, `examples/kubernetes/
//! daemonset.yaml`, `examples/systemd/wackamole.service`) and the `Dockerfile` parse,
//! and every `WACKAMOLE_*` variable and `--flag` they name exists in the real
//! binary's `--help`; the checker is shown catching a bogus name first.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every flag and env var the binary documents, over all subcommands.
fn documented() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut flags, mut envs) = (BTreeSet::new(), BTreeSet::new());
    for sub in [
        "run",
        "check-config",
        "status",
        "drain",
        "undrain",
        "reload",
        "health",
        "demo",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_wackamole"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        flags.extend(words(&text, "--"));
        envs.extend(words(&text, "WACKAMOLE_"));
    }
    // Variables the agent reads or sets outside clap: the log filter and the hooks'
    // environment — as quoted literals in the source.
    for f in ["src/main.rs", "src/ops/hooks.rs"] {
        let src = read(f);
        envs.extend(
            words(&src, "WACKAMOLE_")
                .into_iter()
                .filter(|w| src.contains(&format!("\"{w}\""))),
        );
    }
    (flags, envs)
}

/// Identifiers starting with `prefix` (`--` flags: `[a-z0-9-]`; env vars:
/// `[A-Z0-9_]`).
fn words(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(k) = rest.find(prefix) {
        let tail = &rest[k + prefix.len()..];
        let n = tail
            .find(|c: char| {
                if prefix == "--" {
                    !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                } else {
                    !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                }
            })
            .unwrap_or(tail.len());
        // A flag starts with a letter ("--" alone or "---" is not one).
        if n > 0 && tail.as_bytes()[0].is_ascii_alphanumeric() {
            out.push(format!("{prefix}{}", &tail[..n]));
        }
        rest = &tail[n..];
    }
    out
}

/// The names in `text` that the binary does not document. Flags are only looked
/// for on lines that invoke `wackamole` (other tools' flags are not ours).
fn unknown(text: &str, flags: &BTreeSet<String>, envs: &BTreeSet<String>) -> Vec<String> {
    let mut bad: Vec<String> = words(text, "WACKAMOLE_")
        .into_iter()
        .filter(|e| !envs.contains(e))
        .collect();
    let mut in_cmd = false;
    for line in text.lines() {
        // A `wackamole …` command, and its continuation lines.
        let starts = line.contains("wackamole run")
            || line.contains("wackamole check-config")
            || line.contains("\"wackamole\"");
        if starts || in_cmd {
            bad.extend(
                words(line, "--")
                    .into_iter()
                    .filter(|f| !flags.contains(f) && f != "--help"),
            );
        }
        in_cmd = (starts || in_cmd) && line.trim_end().ends_with('\\');
    }
    bad.sort();
    bad.dedup();
    bad
}

#[test]
fn the_checker_catches_a_bogus_name() {
    let (flags, envs) = documented();
    assert!(envs.contains("WACKAMOLE_NODE_NAME") && flags.contains("--node-name"));
    assert!(envs.len() >= 30, "{envs:?}");
    let text = "environment:\n  WACKAMOLE_NODE_NAME: a\n  WACKAMOLE_VIPS: 10.0.0.1\n\
                cmd: wackamole run --node-name a --vips 10.0.0.1";
    assert_eq!(
        unknown(text, &flags, &envs),
        vec!["--vips".to_string(), "WACKAMOLE_VIPS".to_string()]
    );
}

#[test]
fn examples_name_only_real_flags_and_variables() {
    let (flags, envs) = documented();
    for f in [
        "examples/compose.yaml",
        "examples/kubernetes/daemonset.yaml",
        "examples/systemd/wackamole.service",
        "examples/kubernetes/configmap.yaml",
        "examples/wackamole.toml",
        "Dockerfile",
        "README.md",
    ] {
        let bad = unknown(&read(f), &flags, &envs);
        assert!(bad.is_empty(), "{f} names what the binary lacks: {bad:?}");
    }
}

fn one_yaml(rel: &str) -> Yaml {
    let docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one document");
    docs.into_iter().next().unwrap()
}

fn strs(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .map(|v| v.iter().filter_map(Yaml::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn compose_sidecar_has_host_network_and_two_capabilities() {
    let c = one_yaml("examples/compose.yaml");
    let s = &c["services"]["wackamole"];
    assert_eq!(s["network_mode"].as_str(), Some("host"));
    assert_eq!(strs(&s["cap_add"]), ["NET_ADMIN", "NET_RAW"]);
    assert_eq!(strs(&s["cap_drop"]), ["ALL"]);
    let env = s["environment"].as_hash().expect("environment map");
    for need in [
        "WACKAMOLE_NODE_NAME",
        "WACKAMOLE_INTERFACE",
        "WACKAMOLE_JOIN",
        "WACKAMOLE_VOTERS",
        "WACKAMOLE_VIP",
        "WACKAMOLE_KEY_FILE",
    ] {
        assert!(
            env.contains_key(&Yaml::String(need.into())),
            "compose: {need} missing"
        );
    }
    assert!(
        !c["services"]["web"].is_badvalue(),
        "the service it fronts is there"
    );
}

#[test]
fn daemonset_is_deployable_as_written() {
    let d = one_yaml("examples/kubernetes/daemonset.yaml");
    assert_eq!(d["kind"].as_str(), Some("DaemonSet"));
    assert_eq!(d["apiVersion"].as_str(), Some("apps/v1"));
    let labels = &d["spec"]["selector"]["matchLabels"];
    assert_eq!(labels, &d["spec"]["template"]["metadata"]["labels"]);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(strs(&sc["capabilities"]["add"]), ["NET_ADMIN", "NET_RAW"]);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    // The key comes from a Secret mounted where WACKAMOLE_KEY_FILE points.
    let env: Vec<(&str, &Yaml)> = c["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e))
        .collect();
    let get = |n: &str| env.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    let key = get("WACKAMOLE_KEY_FILE").unwrap()["value"]
        .as_str()
        .unwrap();
    let mount = c["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| key.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("key file under a mount");
    let vol = pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("volume");
    assert!(vol["secret"]["secretName"].as_str().is_some());
    // The node name comes from the downward API; the readiness probe, the metrics
    // port and the scrape annotations agree with the metrics address.
    assert_eq!(
        get("WACKAMOLE_NODE_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("spec.nodeName")
    );
    let metrics = get("WACKAMOLE_METRICS_ADDR").unwrap()["value"]
        .as_str()
        .unwrap();
    let port = metrics.rsplit(':').next().unwrap();
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["port"].as_i64(),
        port.parse().ok()
    );
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(ann["prometheus.io/port"].as_str(), Some(port));
}

#[test]
fn systemd_unit_bounds_capabilities_and_restarts() {
    let text = read("examples/systemd/wackamole.service");
    let kv = |k: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(String::from)
            .collect()
    };
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(text.lines().any(|l| l == section), "{section}");
    }
    assert_eq!(
        kv("ExecStart"),
        ["/usr/local/bin/wackamole run --config /etc/wackamole/wackamole.toml"]
    );
    assert_eq!(kv("ExecReload"), ["/usr/local/bin/wackamole reload"]);
    assert_eq!(kv("CapabilityBoundingSet"), ["CAP_NET_ADMIN CAP_NET_RAW"]);
    assert_eq!(kv("AmbientCapabilities"), ["CAP_NET_ADMIN CAP_NET_RAW"]);
    assert_eq!(kv("Restart"), ["always"]);
    assert_eq!(kv("RestartPreventExitStatus"), ["64 77"]);
    // The unit's own lines are `Key=Value` (or comments, sections, blanks).
    for l in text.lines() {
        let t = l.trim();
        assert!(
            t.is_empty() || t.starts_with('#') || t.starts_with('[') || t.contains('='),
            "not a unit line: {l}"
        );
    }
}

#[test]
fn dockerfile_runtime_stage_is_small_and_unprivileged() {
    let text = read("Dockerfile");
    let stages: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .filter_map(|l| l.split(" AS ").nth(1))
        .collect();
    assert_eq!(stages, ["source", "prebuilt", "binary", "runtime"]);
    let runtime = &text[text.find("AS runtime").unwrap()..];
    assert!(runtime.contains("USER 65532:65532"));
    assert!(runtime.contains("ENTRYPOINT [\"wackamole\", \"run\"]"));
    assert!(runtime.contains("HEALTHCHECK"));
    assert!(text.contains("ARG BINARY_FROM="));
    // Only the binary crosses into the runtime stage.
    let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(
        copies,
        ["COPY --from=binary /out/wackamole /usr/local/bin/wackamole"]
    );
}

/// `check-config --config FILE ARGS` with a fresh key file: (exit code, output).
fn check_config(file: &Path, args: &[&str]) -> (i32, String) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wackamole-examples-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    let secret: String = (0..32)
        .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
        .collect();
    std::fs::write(&key, secret).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wackamole"))
        .arg("check-config")
        .arg("--config")
        .arg(file)
        .arg("--key-file")
        .arg(&key)
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_example_config_documents_every_key_and_validates() {
    let text = read("examples/wackamole.toml");
    for key in wackamole::cli::file::known_keys().keys() {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{key} = "))
                    || l.starts_with(&format!("# {key} = "))),
            "examples/wackamole.toml does not document `{key}`"
        );
    }
    let (code, out) = check_config(&root().join("examples/wackamole.toml"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("web1") && out.contains("192.168.1.101"),
        "{out}"
    );
    // Every commented-out key, uncommented, still validates: the documented values
    // are real ones (the token file aside: it does not exist here).
    let all: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(kv)
                if kv.contains(" = ")
                    && !kv.starts_with("insecure")
                    && !kv.starts_with("admin-token-file") =>
            {
                kv
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = std::env::temp_dir().join(format!("wackamole-example-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("all.toml");
    std::fs::write(&f, all).unwrap();
    let (code, out) = check_config(&f, &[]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "uncommented example: {out}");
}

#[test]
fn the_configmap_holds_a_valid_file() {
    let d = one_yaml("examples/kubernetes/configmap.yaml");
    assert_eq!(d["kind"].as_str(), Some("ConfigMap"));
    let body = d["data"]["wackamole.toml"]
        .as_str()
        .expect("wackamole.toml");
    let dir = std::env::temp_dir().join(format!("wackamole-cm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("wackamole.toml");
    std::fs::write(&f, body).unwrap();
    // What the DaemonSet gives per pod through the downward API.
    let (code, out) = check_config(&f, &["--node-name", "node-1"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{out}");
    let ds = read("examples/kubernetes/daemonset.yaml");
    assert!(ds.contains("name: wackamole-config") && ds.contains("WACKAMOLE_CONFIG"));
}
