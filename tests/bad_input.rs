//! The bad-input table: every malformed flag, environment variable, key file,
//! interface, VIP, busy port and missing capability gives one clear line naming
//! the problem and the documented exit code (64 usage, 69 unavailable, 77
//! privilege) — and, where a kernel is involved, leaves nothing behind: no address,
//! no nftables table, no bound port.
//!
//! Flag rows need nothing; kernel rows need root (they print SKIPPED without it).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use wackamole::lab::{self, Lab};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wackamole")
}

/// A key file for rows that need a valid one.
fn key() -> PathBuf {
    let p = std::env::temp_dir().join(format!("wackamole-bad-input-{}.key", std::process::id()));
    if !p.exists() {
        std::fs::write(&p, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\n").unwrap();
        set_mode(&p, 0o600);
    }
    p
}

/// The flags of a valid `run` on interface `ifname`, bound to `bind`.
fn base(ifname: &str, bind: &str) -> Vec<String> {
    [
        "--node-name",
        "a",
        "--voters",
        "a,b,c",
        "--interface",
        ifname,
        "--bind",
        bind,
        "--metrics-addr",
        "127.0.0.1:19947",
        "--key-file",
        key().to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Replaces (or adds) `flag value` in `args`.
fn with(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    if let Some(i) = args.iter().position(|a| a == flag) {
        args[i + 1] = value.to_string();
    } else {
        args.extend([flag.to_string(), value.to_string()]);
    }
    args
}

/// Runs `cmd` to completion, killing it after 15 s (a row that unexpectedly
/// starts an agent must not hang the suite).
fn bounded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > std::time::Duration::from_secs(15) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Asserts exit `code` and a single clear message that contains `want`.
fn expect(out: &Output, code: i32, want: &str, row: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{row}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let first = lines.first().copied().unwrap_or("");
    assert!(
        first.starts_with("wackamole: ") || first.starts_with("error: "),
        "{row}: the message must come first: {err}"
    );
    assert!(
        first.contains(want),
        "{row}: expected {want:?} in {first:?}"
    );
    // clap adds its usage and help pointer to a parse error; ours is one line.
    let limit = if first.starts_with("error: ") { 3 } else { 1 };
    assert!(lines.len() <= limit, "{row}: not one clear message:\n{err}");
    assert!(!err.contains("panicked"), "{row}: {err}");
}

/// Runs `wackamole run ARGS` (no namespace: every row here fails before any kernel
/// call) and `wackamole check-config ARGS`, both must fail the same way.
fn flag_row(row: &str, args: &[String], env: &[(&str, &str)], code: i32, want: &str) {
    for sub in ["run", "check-config"] {
        if sub == "check-config" && code != 64 {
            continue;
        }
        let mut cmd = Command::new(bin());
        cmd.arg(sub).args(args).envs(env.iter().copied());
        let out = bounded(cmd);
        expect(&out, code, want, &format!("{row} ({sub})"));
    }
}

macro_rules! flag_rows {
    ($($name:ident: |$a:ident| $args:expr, env $env:expr, $code:expr, $want:expr;)*) => {$(
        #[test]
        fn $name() {
            let $a = base("lo", "127.0.0.1:17946");
            flag_row(stringify!($name), &$args, &$env, $code, $want);
        }
    )*};
}

flag_rows! {
    unknown_flag: |a| with(a, "--bogus", "1"), env [], 64, "unexpected argument '--bogus'";
    node_name_with_space: |a| with(a, "--node-name", "a b"), env [], 64, "--node-name";
    node_name_too_long: |a| with(a, "--node-name", &"x".repeat(64)), env [], 64, "--node-name";
    weight_zero: |a| with(a, "--weight", "0"), env [], 64, "--weight";
    weight_not_a_number: |a| with(a, "--weight", "heavy"), env [], 64, "--weight";
    profile_unknown: |a| with(a, "--profile", "turbo"), env [], 64, "--profile";
    quorum_unknown: |a| with(a, "--quorum", "some"), env [], 64, "--quorum";
    fence_unknown: |a| with(a, "--fence", "wall"), env [], 64, "--fence";
    rho_too_large: |a| with(with(a, "--vip", "10.9.9.9"), "--rho", "0.5"), env [], 64, "I7";
    failback_not_a_duration: |a| with(a, "--failback-delay", "soon"), env [], 64, "--failback-delay";
    vip_not_an_address: |a| with(a, "--vip", "10.9.9.300"), env [], 64, "--vip";
    vip_twice: |a| with(a, "--vip", "10.9.9.9,10.9.9.9"), env [], 64, "appears twice";
    vip_in_two_groups: |a| with(with(a, "--vip", "10.9.9.9"), "--vip-group", "10.9.9.9,10.9.9.8"), env [], 64, "appears twice";
    vip_network_of_its_prefix: |a| with(a, "--vip", "10.9.9.0/24"), env [], 64, "network address";
    vip_broadcast_of_its_prefix: |a| with(a, "--vip", "10.9.9.255/24"), env [], 64, "broadcast address";
    vip_multicast: |a| with(a, "--vip", "224.0.0.18"), env [], 64, "--vip";
    vip_link_local_v6: |a| with(a, "--vip", "fe80::10"), env [], 64, "not a usable unicast";
    vip_prefix_too_long: |a| with(a, "--vip", "10.9.9.9/33"), env [], 64, "--vip";
    prefer_unknown_vip: |a| with(with(a, "--vip", "10.9.9.9"), "--prefer", "10.9.9.8=a"), env [], 64, "--prefer";
    voters_missing_with_majority: |a| {
        let mut a = with(a, "--vip", "10.9.9.9");
        let i = a.iter().position(|x| x == "--voters").unwrap();
        a.drain(i..i + 2);
        a
    }, env [], 64, "--voters";
    witness_not_a_voter: |a| with(with(a, "--vip", "10.9.9.9"), "--witness", "z"), env [], 64, "witness \"z\" is not in the voter set";
    advertise_unspecified: |a| with(with(a, "--vip", "10.9.9.9"), "--advertise", "0.0.0.0"), env [], 64, "--advertise";
    advertise_port_zero: |a| with(with(a, "--vip", "10.9.9.9"), "--advertise", "10.9.9.1:0"), env [], 64, "port 0";
    advertise_other_family: |a| with(with(a, "--vip", "10.9.9.9"), "--advertise", "2001:db8::1"), env [], 64, "different families";
    join_port_zero: |a| with(with(a, "--vip", "10.9.9.9"), "--join", "10.9.9.1:0"), env [], 64, "--join";
    voter_named_twice: |a| {
        let mut a = with(a, "--vip", "10.9.9.9");
        let i = a.iter().position(|x| x == "--voters").unwrap();
        a[i + 1] = "a,b,a".into();
        a
    }, env [], 64, "\"a\" is named twice";
    garp_count_flood: |a| with(with(a, "--vip", "10.9.9.9"), "--garp-count", "1000"), env [], 64, "--garp-count";
    garp_refresh_too_short: |a| with(with(a, "--vip", "10.9.9.9"), "--garp-refresh", "1ms"), env [], 64, "--garp-refresh";
    check_tcp_port_zero: |a| with(with(a, "--vip", "10.9.9.9"), "--check-tcp", "127.0.0.1:0"), env [], 64, "--check-tcp";
    garp_count_not_a_number: |a| with(with(a, "--vip", "10.9.9.9"), "--garp-count", "many"), env [], 64, "--garp-count";
    notify_bad_cidr: |a| with(with(a, "--vip", "10.9.9.9"), "--notify", "10.0.0.0/40"), env [], 64, "--notify";
    notify_on_an_interface_without_vips: |a| with(with(a, "--vip", "10.9.9.9"), "--notify", "eth9:10.9.9.1"), env [], 64, "no VIP lives on eth9";
    neighbour_interval_too_short: |a| with(with(a, "--vip", "10.9.9.9"), "--neighbour-interval", "200ms"), env [], 64, "--neighbour-interval";
    notify_neighbours_not_a_bool: |a| with(with(a, "--vip", "10.9.9.9"), "--notify-neighbours", "often"), env [], 64, "--notify-neighbours";
    vip_interface_with_space: |a| with(a, "--vip", "eth 1:10.9.9.9"), env [], 64, "may not contain";
    vip_interface_without_address: |a| with(a, "--vip", "eth1:"), env [], 64, "no address after the interface";
    vip_on_two_interfaces: |a| with(with(a, "--vip", "eth1:10.9.9.9"), "--vip-group", "eth2:10.9.9.9,10.9.9.8"), env [], 64, "two interfaces";
    vip_group_interface_name_too_long: |a| with(a, "--vip-group", "a-very-long-interface:10.9.9.9,10.9.9.8"), env [], 64, "1 to 15 characters";
    metrics_addr_bad: |a| with(with(a, "--vip", "10.9.9.9"), "--metrics-addr", "nowhere"), env [], 64, "--metrics-addr";
    log_format_unknown: |a| with(with(a, "--vip", "10.9.9.9"), "--log-format", "yaml"), env [], 64, "--log-format";
    check_rise_zero: |a| with(with(a, "--vip", "10.9.9.9"), "--check-rise", "0"), env [], 64, "--check-rise";
    check_http_not_http: |a| with(with(a, "--vip", "10.9.9.9"), "--check-http", "ftp://10.0.0.1/"), env [], 64, "--check-http";
    check_timeout_over_interval: |a| with(with(with(a, "--vip", "10.9.9.9"), "--check-tcp", "127.0.0.1:1"), "--check-timeout", "5s"), env [], 64, "--check-timeout";
    admin_token_missing: |a| with(with(a, "--vip", "10.9.9.9"), "--admin-token-file", "/nonexistent/token"), env [], 64, "--admin-token-file";
    env_weight_not_a_number: |a| with(a, "--vip", "10.9.9.9"), env [("WACKAMOLE_WEIGHT", "heavy")], 64, "--weight";
    env_bool_unknown: |a| with(a, "--vip", "10.9.9.9"), env [("WACKAMOLE_ELIGIBLE", "perhaps")], 64, "--eligible";
    env_vip_bad: |a| a, env [("WACKAMOLE_VIP", "10.9.9.9,bogus")], 64, "--vip";
    key_file_missing: |a| with(with(a, "--vip", "10.9.9.9"), "--key-file", "/nonexistent/key"), env [], 64, "cannot read key file";
    key_file_is_a_directory: |a| with(with(a, "--vip", "10.9.9.9"), "--key-file", "/"), env [], 64, "--key-file";
    key_file_empty: |a| with(with(a, "--vip", "10.9.9.9"), "--key-file", write_temp("empty", "").to_str().unwrap()), env [], 64, "holds no secret";
    key_file_short: |a| with(with(a, "--vip", "10.9.9.9"), "--key-file", write_temp("short", "abc\n").to_str().unwrap()), env [], 64, "3 bytes long";
    key_file_16_characters: |a| with(with(a, "--vip", "10.9.9.9"), "--key-file", write_temp("k16", "abcdefghijklmnop\n").to_str().unwrap()), env [], 64, "96 bits as base64; at least 128 are needed";
    key_file_short_passphrase: |a| with(with(a, "--vip", "10.9.9.9"), "--key-file", write_temp("kpass", "my secret phrase!\n").to_str().unwrap()), env [], 64, "17-character passphrase";
    key_file_world_writable: |a| {
        let k = write_temp("k666", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\n");
        set_mode(&k, 0o666);
        with(with(a, "--vip", "10.9.9.9"), "--key-file", k.to_str().unwrap())
    }, env [], 64, "lets group or others write it";
    admin_token_weak: |a| with(with(a, "--vip", "10.9.9.9"), "--admin-token-file", write_temp("tok64", "0123456789abcdef\n").to_str().unwrap()), env [], 64, "64 bits as hex";
    config_file_missing: |a| with(a, "--config", "/nonexistent/wackamole.toml"), env [], 64, "/nonexistent/wackamole.toml: No such file";
    config_file_syntax: |a| with(a, "--config", write_temp("syn.toml", "vip = [\"10.9.9.9\"\nweight = 2\n").to_str().unwrap()), env [], 64, "syn.toml:";
    config_file_unknown_key: |a| with(a, "--config", write_temp("unk.toml", "vip = [\"10.9.9.9\"]\nvips = 1\n").to_str().unwrap()), env [], 64, "unk.toml:2: unknown key `vips` (did you mean `vip`?)";
    config_file_list_for_one_value: |a| with(a, "--config", write_temp("lst.toml", "vip = \"10.9.9.9\"\nprofile = [\"fast\"]\n").to_str().unwrap()), env [], 64, "lst.toml:2: `profile`: takes one value";
    config_file_bad_value: |a| with(a, "--config", write_temp("val.toml", "vip = [\"10.9.9.9\"]\ngarp-count = \"many\"\n").to_str().unwrap()), env [], 64, "val.toml:2: `garp-count`";
    config_file_invalid_vip: |a| with(a, "--config", write_temp("vip.toml", "weight = 1\nvip = [\"10.9.9.300\"]\n").to_str().unwrap()), env [], 64, "vip.toml:2: --vip: \"10.9.9.300\" is not an IP address";
    config_file_is_a_directory: |a| with(a, "--config", "/"), env [], 64, "--config";
    env_config_missing: |a| with(a, "--vip", "10.9.9.9"), env [("WACKAMOLE_CONFIG", "/nonexistent/w.toml")], 64, "/nonexistent/w.toml";
    no_key_without_insecure: |a| {
        let mut a = with(a, "--vip", "10.9.9.9");
        let i = a.iter().position(|x| x == "--key-file").unwrap();
        a.drain(i..i + 2);
        a
    }, env [], 64, "--key-file";
}

fn write_temp(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("wackamole-bad-input-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn missing_interface_flag_fails_run_only() {
    let mut a = with(base("lo", "127.0.0.1:17946"), "--vip", "10.9.9.9");
    let i = a.iter().position(|x| x == "--interface").unwrap();
    a.drain(i..i + 2);
    let mut cmd = Command::new(bin());
    cmd.arg("run").args(&a);
    let out = bounded(cmd);
    expect(&out, 64, "--interface", "run without --interface");
    // check-config validates a configuration that may be meant for another host.
    let ok = Command::new(bin())
        .arg("check-config")
        .args(&a)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn check_config_accepts_every_run_flag() {
    let a = base("lo", "127.0.0.1:17946");
    let out = Command::new(bin())
        .arg("check-config")
        .args(&a)
        .args(["--vip", "10.9.9.9", "--garp-count", "3", "--check-tcp"])
        .args(["127.0.0.1:80", "--check-rise", "2", "--on-acquire", "true"])
        .args(["--log-format", "json", "--notify", "10.9.9.0/30"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("failover bound"), "{text}");
}

// ---- rows that reach the kernel (root) ----

/// A one-node lab; `None` (with a loud line) without root.
fn lab(prefix: &str, third: u8) -> Option<Lab> {
    if let Some(why) = lab::missing(&["ip", "nft", "setpriv"]) {
        lab::skip("kernel rows of the bad-input table", &why);
        return None;
    }
    Some(Lab::new(prefix, 1, [84, third]).expect("lab"))
}

/// Runs the agent in the lab's node namespace, optionally as another user, and
/// checks that it left nothing behind.
fn kernel_row(l: &Lab, args: &[String], user: Option<u32>, code: i32, want: &str, row: &str) {
    let h = &l.nodes[0];
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &h.ns]);
    if let Some(uid) = user {
        cmd.args([
            "setpriv",
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
        ]);
    }
    cmd.arg(bin()).arg("run").args(args);
    let before = snapshot(l);
    let out = bounded(cmd);
    expect(&out, code, want, row);
    nothing_left(l, &before, row);
}

/// What a failed start may not change: the node's addresses, its nftables tables
/// and its sockets.
fn snapshot(l: &Lab) -> [String; 3] {
    let h = &l.nodes[0];
    let run = |args: &[&str]| {
        let out = h.run(args).unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    [
        run(&["ip", "-br", "addr", "show", "dev", &h.ifname]),
        run(&["nft", "list", "tables"]),
        run(&["ss", "-H", "-uatn"]),
    ]
}

fn nothing_left(l: &Lab, before: &[String; 3], row: &str) {
    let after = snapshot(l);
    assert_eq!(&after, before, "{row}: left something behind");
    assert!(!after[1].contains("wackamole"), "{row}: nft tables left");
}

fn node_args(l: &Lab, vip: &str) -> Vec<String> {
    let h = &l.nodes[0];
    with(base(&h.ifname, &format!("{}:7946", h.addr)), "--vip", vip)
}

#[test]
fn kernel_rows() {
    let Some(l) = lab("wbd1", 1) else {
        return;
    };
    let h = l.nodes[0].clone();
    let vip = l.addr4(100).to_string();
    let row = |args: Vec<String>, code: i32, want: &str, name: &str| {
        kernel_row(&l, &args, None, code, want, name)
    };
    row(
        with(node_args(&l, &vip), "--interface", "nope0"),
        64,
        "no interface named \"nope0\"",
        "interface missing",
    );
    row(
        node_args(&l, &h.addr.to_string()),
        64,
        "is a permanent address",
        "VIP is the node's address",
    );
    row(
        node_args(&l, &format!("nope1:{vip}")),
        64,
        "--vip: no interface named \"nope1\"",
        "a VIP's own interface missing",
    );
    row(
        node_args(&l, &l.addr4(0).to_string()),
        64,
        "network address of",
        "VIP is the subnet's network address",
    );
    row(
        node_args(&l, &l.addr4(255).to_string()),
        64,
        "broadcast address of",
        "VIP is the subnet's broadcast address",
    );
    row(
        with(node_args(&l, &vip), "--bind", "10.254.254.254:7946"),
        69,
        "--bind 10.254.254.254:7946",
        "bind address not on this host",
    );
    // IPv6 VIP on an interface with IPv6 disabled.
    let v6 = format!("net.ipv6.conf.{}.disable_ipv6", h.ifname);
    h.run(&["sysctl", "-qw", &format!("{v6}=1")]).unwrap();
    row(
        node_args(&l, "fd00::84:1:100"),
        64,
        "has no IPv6 address",
        "IPv6 VIP, IPv6 disabled",
    );
    h.run(&["sysctl", "-qw", &format!("{v6}=0")]).unwrap();
    // Busy ports: the gossip port, then the metrics port.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let ns = h.ns.clone();
    let addr = h.addr;
    let holder = std::thread::spawn(move || {
        lab::enter(&ns).unwrap();
        let _u = UdpSocket::bind((addr, 7946)).unwrap();
        let _t = std::net::TcpListener::bind("127.0.0.1:19947").unwrap();
        let _ = rx.recv();
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = snapshot(&l);
    let busy = |args: Vec<String>, want: &str, name: &str| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &h.ns, bin(), "run"]).args(&args);
        let out = bounded(cmd);
        expect(&out, 69, want, name);
    };
    busy(node_args(&l, &vip), "address in use", "gossip port in use");
    busy(
        with(node_args(&l, &vip), "--bind", &format!("{}:7947", h.addr)),
        "--metrics-addr 127.0.0.1:19947: address in use",
        "metrics port in use",
    );
    // Only the test's own two sockets are there.
    nothing_left(&l, &before, "busy ports");
    drop(tx);
    holder.join().unwrap();
    // An IPv4 VIP on an interface without an IPv4 address.
    let cidr = format!("{}/24", h.addr);
    h.run(&["ip", "addr", "del", &cidr, "dev", &h.ifname])
        .unwrap();
    row(
        with(node_args(&l, &vip), "--bind", "127.0.0.1:7946"),
        64,
        "has no IPv4 address",
        "IPv4 VIP, no IPv4 on the interface",
    );
    h.run(&["ip", "addr", "add", &cidr, "dev", &h.ifname])
        .unwrap();
}

#[test]
fn missing_capabilities_exit_77_and_touch_nothing() {
    let Some(l) = lab("wbd2", 2) else {
        return;
    };

    // The key must be readable by the unprivileged user: its own, mode 600.
    let k = write_temp(
        "nobody.key",
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\n",
    );
    std::os::unix::fs::chown(&k, Some(65534), Some(65534)).unwrap();
    set_mode(&k, 0o600);
    let vip = l.addr4(100).to_string();
    let args = with(node_args(&l, &vip), "--key-file", k.to_str().unwrap());
    kernel_row(
        &l,
        &args,
        Some(65534),
        77,
        "permission denied; run as root or grant CAP_NET_ADMIN and CAP_NET_RAW",
        "no capabilities",
    );
    // An unreadable key file is a usage error before any privilege matters.
    set_mode(&k, 0o000);
    kernel_row(
        &l,
        &args,
        Some(65534),
        64,
        "--key-file",
        "unreadable key file",
    );
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}
