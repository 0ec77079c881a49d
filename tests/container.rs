//! The image, built here from the top-level `Dockerfile` with buildah, runs as a
//! sidecar in a network namespace, joins a cluster of two plain agents, holds its
//! share of the VIPs as its non-root user with only NET_ADMIN and NET_RAW, answers
//! its HEALTHCHECK command, and on SIGTERM hands its VIPs over.
//!
//! There is no Docker engine and no registry here, so the test makes the runtime
//! stage's base (`debian:bookworm-slim`) itself with `debootstrap` (Debian's
//! package, from the same mirror apt uses) unless the store has it already, builds
//! the runtime stage with `--build-arg BINARY_FROM=prebuilt` (the binary this test
//! run built), and runs it with `buildah run --isolation chroot` inside the node's
//! namespace: `podman run` cannot start containers on this machine (crun cannot set
//! rlimits here; the README says so). Needs root, buildah, debootstrap, nftables;
//! `.ci/run` installs them.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use wackamole::lab::cluster::{Cluster, Spec};
use wackamole::lab::{self};

const BASE: &str = "docker.io/library/debian:bookworm-slim";
const IMAGE: &str = "localhost/wackamole:test";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn buildah(args: &[&str]) -> Output {
    Command::new("buildah")
        .args(["--storage-driver", "vfs"])
        .args(args)
        .output()
        .expect("run buildah")
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes `debian:bookworm-slim` in buildah's store from a debootstrap rootfs, once.
fn ensure_base() {
    if buildah(&["inspect", "--type", "image", BASE])
        .status
        .success()
    {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wackamole-rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("run debootstrap");
    ok("debootstrap bookworm", &out);
    eprintln!("debootstrap: {:.0} s", t.elapsed().as_secs_f64());
    let ctr = ok("buildah from scratch", &buildah(&["from", "scratch"]));
    let mnt = ok("buildah mount", &buildah(&["mount", &ctr]));
    let copy = Command::new("sh")
        .args([
            "-c",
            &format!(
                "tar -C '{}' --exclude=./proc/* --exclude=./sys/* --exclude=./dev/* -cf - . | tar -C '{mnt}' -xf -",
                dir.display()
            ),
        ])
        .output()
        .unwrap();
    ok("copy the rootfs", &copy);
    ok("buildah umount", &buildah(&["umount", &ctr]));
    ok(
        "buildah config",
        &buildah(&["config", "--cmd", "/bin/bash", &ctr]),
    );
    ok("buildah commit", &buildah(&["commit", "--rm", &ctr, BASE]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Builds the runtime stage from a context holding only the Dockerfile and the
/// binary this test run built.
fn build_image() {
    let ctx = std::env::temp_dir().join(format!("wackamole-ctx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(ctx.join("target/release")).unwrap();
    std::fs::copy(root().join("Dockerfile"), ctx.join("Dockerfile")).unwrap();
    std::fs::copy(root().join(".dockerignore"), ctx.join(".dockerignore")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_wackamole"),
        ctx.join("target/release/wackamole"),
    )
    .unwrap();
    let t = Instant::now();
    let out = buildah(&[
        "bud",
        "--isolation",
        "chroot",
        "--pull=never",
        // HEALTHCHECK is part of the Docker image format only.
        "--format",
        "docker",
        "--build-arg",
        "BINARY_FROM=prebuilt",
        "--target",
        "runtime",
        "-t",
        IMAGE,
        ctx.to_str().unwrap(),
    ]);
    ok("buildah bud (runtime stage)", &out);
    eprintln!("image built in {:.0} s", t.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&ctx);
}

/// `--flag value` pairs of the agent's arguments as WACKAMOLE_* variables.
fn as_env(args: &[String]) -> Vec<String> {
    assert_eq!(args[0], "run");
    args[1..]
        .chunks(2)
        .map(|kv| {
            let name = kv[0].trim_start_matches("--").replace('-', "_");
            format!("WACKAMOLE_{}={}", name.to_uppercase(), kv[1])
        })
        .collect()
}

struct Sidecar {
    ctr: String,
    child: Option<Child>,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = buildah(&["rm", &self.ctr]);
    }
}

/// vfs keeps a full copy of every layer: removes the unnamed stage images builds
/// leave (and the working containers buildah keeps on them).
fn prune() {
    let dangling = buildah(&["images", "-q", "--filter", "dangling=true"]);
    let dangling = String::from_utf8_lossy(&dangling.stdout).to_string();
    let ctrs = buildah(&["containers", "--format", "{{.ContainerID}} {{.ImageID}}"]);
    for line in String::from_utf8_lossy(&ctrs.stdout).lines() {
        if let Some((ctr, img)) = line.split_once(' ')
            && dangling
                .lines()
                .map(str::trim)
                .any(|d| !d.is_empty() && img.trim().starts_with(d))
        {
            let _ = buildah(&["rm", ctr]);
        }
    }
    let _ = buildah(&["rmi", "--prune"]);
}

fn image_config(field: &str) -> String {
    ok(
        "buildah inspect",
        &buildah(&[
            "inspect",
            "--type",
            "image",
            "--format",
            &format!("{{{{{field}}}}}"),
            IMAGE,
        ]),
    )
}

/// The pid of the agent started inside the container: a `wackamole` process
/// whose command line carries no flags (it is configured by its environment).
fn container_agent() -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        if comm.trim() == "wackamole" && args.len() == 2 && args[1] == b"run" {
            return Some(pid);
        }
    }
    None
}

#[test]
fn image_builds_and_runs_as_a_sidecar() {
    if let Some(why) = lab::missing(&["ip", "buildah", "debootstrap", "nft"]) {
        lab::skip("container test", &why);
        return;
    }
    ensure_base();
    prune();
    build_image();
    prune();
    // The image as the Dockerfile says: non-root, wackamole run, a health check.
    assert_eq!(image_config(".OCIv1.Config.User"), "65532:65532");
    assert_eq!(image_config(".OCIv1.Config.Entrypoint"), "[wackamole run]");
    let hc = image_config(".Docker.Config.Healthcheck.Test");
    assert!(hc.contains("wackamole health"), "healthcheck: {hc}");

    let mut spec = Spec::new("wc01", [83, 1]);
    spec.vips4 = 6;
    let mut c = Cluster::new(Path::new(env!("CARGO_BIN_EXE_wackamole")), spec).expect("lab");
    c.start(0).unwrap();
    c.start(1).unwrap();

    // n2 is the container, configured only by environment variables.
    let ctr = ok("buildah from", &buildah(&["from", "--pull=never", IMAGE]));
    let mut side = Sidecar {
        ctr: ctr.clone(),
        child: None,
    };
    let dir = c.dir.display().to_string();
    let log = std::fs::File::create(c.dir.join("n2.log")).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &c.lab.nodes[2].ns, "buildah"])
        .args(["--storage-driver", "vfs", "run", "--isolation", "chroot"])
        .args(["--cap-add", "CAP_NET_ADMIN", "--cap-add", "CAP_NET_RAW"])
        .args(["-v", &format!("{dir}:{dir}:ro")]);
    for e in as_env(&c.args(2)) {
        cmd.args(["-e", &e]);
    }
    cmd.args([
        "-e",
        "WACKAMOLE_LOG=info",
        "-e",
        "WACKAMOLE_LOG_FORMAT=text",
    ]);
    cmd.args([&ctr, "--", "wackamole", "run"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    side.child = Some(cmd.spawn().expect("buildah run"));

    let conv = c.wait_converged(&[0, 1, 2], Duration::from_secs(30));
    let holders = c.holders();
    assert!(
        conv.is_some(),
        "not converged with the container: {holders:?}\n{}",
        c.log(2)
    );
    let mine: Vec<IpAddr> = holders
        .iter()
        .filter(|(_, w)| w.as_slice() == [2])
        .map(|(v, _)| *v)
        .collect();
    assert!(!mine.is_empty(), "the container holds no VIP: {holders:?}");
    eprintln!("container node converged in {conv:?}, holds {mine:?}");
    // It runs as the image's user, not root, with exactly NET_ADMIN and NET_RAW.
    let pid = container_agent().expect("the container's agent process");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1).map(String::from))
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65532", "agent {pid}:\n{status}");
    let cap_eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    assert_eq!(cap_eff, (1 << 12) | (1 << 13), "CapEff {cap_eff:#x}");
    let pid = pid.to_string();
    // Without the two capabilities the binary does not start at all (the kernel
    // will not exec a file whose capabilities the container cannot grant).
    let denied = buildah(&[
        "run",
        "--isolation",
        "chroot",
        &ctr,
        "--",
        "wackamole",
        "--version",
    ]);
    assert!(!denied.status.success(), "ran without NET_ADMIN/NET_RAW");
    let granted = buildah(&[
        "run",
        "--isolation",
        "chroot",
        "--cap-add",
        "CAP_NET_ADMIN",
        "--cap-add",
        "CAP_NET_RAW",
        &ctr,
        "--",
        "wackamole",
        "--version",
    ]);
    assert!(ok("wackamole --version", &granted).starts_with("wackamole "));
    // The HEALTHCHECK command, from the node's namespace (the listener is loopback).
    let health = c.lab.nodes[2]
        .run(&[env!("CARGO_BIN_EXE_wackamole"), "health"])
        .unwrap();
    assert!(health.status.success(), "health: {:?}", health);

    // SIGTERM (what `docker stop` sends): the VIPs are handed to n0 and n1.
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let t = Instant::now();
    let moved = c.wait_converged(&[0, 1], Duration::from_secs(10));
    assert!(
        moved.is_some(),
        "VIPs not handed over: {:?}\n{}",
        c.holders(),
        c.log(2)
    );
    eprintln!(
        "handed over {:.2} s after SIGTERM",
        t.elapsed().as_secs_f64()
    );
    if let Some(mut ch) = side.child.take() {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Some(st)) = ch.try_wait() {
                assert!(st.success(), "container exit: {st}\n{}", c.log(2));
                break;
            }
            assert!(Instant::now() < deadline, "container did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
