//! Throw-away clusters in Linux network namespaces, for `wackamole demo`, the
//! integration tests and the failover bench.
//!
//! A lab is a bridge in its own namespace, `n` node namespaces and a client
//! namespace, each connected to the bridge by a veth pair. Names carry a unique
//! prefix so several labs can coexist; everything is removed on drop (and
//! [`Lab::sweep`] removes leftovers of crashed runs). Needs root, `ip` (iproute2);
//! traffic never leaves the namespaces.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};

/// Runs a command, failing with its stderr if it exits non-zero.
pub fn sh(args: &[&str]) -> io::Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// The environment variable that makes every [`skip`] fatal (`.ci/run` sets it:
/// there, a missing tool is an install step that failed, not a reason to pass).
pub const REQUIRE_ALL: &str = "WM_REQUIRE_ALL";

/// Skips a test that needs something this machine lacks: a loud `SKIPPED` line
/// on the terminal (written past the test harness's output capture, so a plain
/// `cargo test` shows it), or — with `WM_REQUIRE_ALL=1` — a failure.
pub fn skip(what: &str, why: &str) {
    use std::io::Write as _;
    let line = format!("SKIPPED ({what}): {why}");
    if std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1") {
        panic!("{line} — and {REQUIRE_ALL}=1 makes every skip a failure");
    }
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether `program` is an executable file on `PATH`.
pub fn installed(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// What keeps a test that needs root and `tools` from running here, if anything.
pub fn missing(tools: &[&str]) -> Option<String> {
    if let Err(why) = available() {
        return Some(why);
    }
    let absent: Vec<&str> = tools.iter().copied().filter(|t| !installed(t)).collect();
    (!absent.is_empty()).then(|| {
        format!(
            "not installed: {} (.ci/run installs them with apt-get)",
            absent.join(", ")
        )
    })
}

/// Whether this process can build labs (root, iproute2 present).
pub fn available() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("not root: network-namespace labs need root".into());
    }
    match Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => Err("`ip` (iproute2) is not installed".into()),
    }
}

/// Moves the calling thread into network namespace `ns` (sockets opened afterwards,
/// and processes spawned from this thread, live there).
pub fn enter(ns: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// One namespace of a lab.
#[derive(Clone, Debug)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Interface inside it (connected to the bridge).
    pub ifname: String,
    /// Its own address.
    pub addr: Ipv4Addr,
    /// Bridge-side interface name (in the bridge namespace).
    pub port: String,
}

impl Host {
    /// Runs a command inside this namespace.
    pub fn run(&self, args: &[&str]) -> io::Result<Output> {
        let mut v = vec!["ip", "netns", "exec", &self.ns];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// A command prepared to run inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }

    /// Link up or down (from inside the node: the machine's NIC).
    pub fn link(&self, up: bool) -> io::Result<()> {
        self.run(&[
            "ip",
            "link",
            "set",
            &self.ifname,
            if up { "up" } else { "down" },
        ])
        .map(|_| ())
    }
}

/// A lab: bridge, nodes, client.
#[derive(Debug)]
pub struct Lab {
    /// Name prefix of every namespace.
    pub prefix: String,
    /// The bridge namespace.
    pub bridge_ns: String,
    /// The nodes.
    pub nodes: Vec<Host>,
    /// The client.
    pub client: Host,
    /// The subnet's first three octets (10.X.Y.0/24).
    pub subnet: [u8; 3],
}

impl Lab {
    /// Builds a lab with `n` nodes on subnet `10.{a}.{b}.0/24`. Nodes get .1…, the
    /// client .250. Prefix names must be short (namespace and interface limits).
    pub fn new(prefix: &str, n: usize, subnet: [u8; 2]) -> io::Result<Lab> {
        available().map_err(io::Error::other)?;
        let bridge_ns = format!("{prefix}-br");
        let mut lab = Lab {
            prefix: prefix.to_string(),
            bridge_ns: bridge_ns.clone(),
            nodes: Vec::new(),
            client: Host {
                ns: String::new(),
                ifname: String::new(),
                addr: Ipv4Addr::UNSPECIFIED,
                port: String::new(),
            },
            subnet: [10, subnet[0], subnet[1]],
        };
        Lab::sweep(prefix);
        sh(&["ip", "netns", "add", &bridge_ns])?;
        let br = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", bridge_ns.as_str()];
            v.extend_from_slice(args);
            sh(&v)
        };
        br(&["ip", "link", "add", "br0", "type", "bridge"])?;
        br(&["ip", "link", "set", "br0", "up"])?;
        br(&["ip", "link", "set", "lo", "up"])?;
        for i in 0..=n {
            let client = i == n;
            let ns = if client {
                format!("{prefix}-c")
            } else {
                format!("{prefix}-n{i}")
            };
            let port = if client {
                "pc".to_string()
            } else {
                format!("p{i}")
            };
            let host_octet = if client { 250 } else { i as u8 + 1 };
            let addr = Ipv4Addr::new(10, subnet[0], subnet[1], host_octet);
            sh(&["ip", "netns", "add", &ns])?;
            let h = Host {
                ns: ns.clone(),
                ifname: "eth0".into(),
                addr,
                port,
            };
            lab.wire(&h, host_octet)?;
            // Keep secondaries when a primary goes (F14), answer ARP only for own addresses.
            let _ = h.run(&["sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1"]);
            // A per-node TTL tells a pinging client which node answered.
            let _ = h.run(&[
                "sysctl",
                "-qw",
                &format!("net.ipv4.ip_default_ttl={}", Lab::ttl_of(i)),
            ]);
            if client {
                lab.client = h;
            } else {
                lab.nodes.push(h);
            }
        }
        Ok(lab)
    }

    /// Connects host `h` to the bridge: a veth pair created in the bridge namespace,
    /// one end moved into `h`'s namespace as its interface, with its addresses.
    fn wire(&self, h: &Host, host_octet: u8) -> io::Result<()> {
        self.wire_on(h, "br0", self.addr6(host_octet))
    }

    fn wire_on(&self, h: &Host, bridge: &str, addr6: std::net::Ipv6Addr) -> io::Result<()> {
        self.bridge(&[
            "ip", "link", "add", &h.port, "type", "veth", "peer", "name", &h.ifname,
        ])?;
        self.bridge(&["ip", "link", "set", &h.ifname, "netns", &h.ns])?;
        self.bridge(&["ip", "link", "set", &h.port, "master", bridge])?;
        self.bridge(&["ip", "link", "set", &h.port, "up"])?;
        h.run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", h.addr),
            "dev",
            &h.ifname,
        ])?;
        h.run(&[
            "ip",
            "addr",
            "add",
            &format!("{addr6}/64"),
            "dev",
            &h.ifname,
            "nodad",
        ])?;
        h.run(&["ip", "link", "set", &h.ifname, "up"])?;
        h.run(&["ip", "link", "set", "lo", "up"])?;
        let _ = h.run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{}.arp_announce=2", h.ifname),
        ]);
        Ok(())
    }

    /// Adds a second network (a multi-homed setup): bridge `br1`, an `eth1` on every
    /// node with `10.{a}.{b}.{i+1}/24`, and a second client namespace (`prefix-d`,
    /// `eth0`, .250) on it.
    pub fn second_net(&self, subnet: [u8; 2]) -> io::Result<Net> {
        self.bridge(&["ip", "link", "add", "br1", "type", "bridge"])?;
        self.bridge(&["ip", "link", "set", "br1", "up"])?;
        let addr6 = |host: u8| {
            std::net::Ipv6Addr::new(
                0xfd00,
                u16::from(subnet[0]),
                u16::from(subnet[1]),
                0,
                0,
                0,
                0,
                u16::from(host),
            )
        };
        let mut net = Net {
            nodes: Vec::new(),
            client: Host {
                ns: format!("{}-d", self.prefix),
                ifname: "eth0".into(),
                addr: Ipv4Addr::new(10, subnet[0], subnet[1], 250),
                port: "qc".into(),
            },
            subnet: [10, subnet[0], subnet[1]],
        };
        for (i, n) in self.nodes.iter().enumerate() {
            let h = Host {
                ns: n.ns.clone(),
                ifname: "eth1".into(),
                addr: Ipv4Addr::new(10, subnet[0], subnet[1], i as u8 + 1),
                port: format!("q{i}"),
            };
            self.wire_on(&h, "br1", addr6(i as u8 + 1))?;
            net.nodes.push(h);
        }
        sh(&["ip", "netns", "add", &net.client.ns])?;
        self.wire_on(&net.client, "br1", addr6(250))?;
        Ok(net)
    }

    /// Deletes node `i`'s interface (both ends of its veth pair go), as
    /// `ip link del eth0` on a real host.
    pub fn unplug(&self, i: usize) -> io::Result<()> {
        let h = &self.nodes[i];
        h.run(&["ip", "link", "del", &h.ifname]).map(|_| ())
    }

    /// Re-creates node `i`'s interface after [`Lab::unplug`]: same name and
    /// addresses, a new interface index.
    pub fn replug(&self, i: usize) -> io::Result<()> {
        self.wire(&self.nodes[i], i as u8 + 1)
    }

    /// The IP TTL node `i` sends with (so a client can tell who answered).
    pub fn ttl_of(i: usize) -> u8 {
        100 + i as u8
    }

    /// The IPv6 address with host part `host` on the lab's ULA subnet.
    pub fn addr6(&self, host: u8) -> std::net::Ipv6Addr {
        std::net::Ipv6Addr::new(
            0xfd00,
            u16::from(self.subnet[1]),
            u16::from(self.subnet[2]),
            0,
            0,
            0,
            0,
            u16::from(host),
        )
    }

    /// An IPv4 address on the lab's subnet.
    pub fn addr4(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host)
    }

    /// Runs a command in the bridge namespace.
    pub fn bridge(&self, args: &[&str]) -> io::Result<Output> {
        let mut v = vec!["ip", "netns", "exec", self.bridge_ns.as_str()];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Installs (replacing) the bridge's fault rules: `rules` are nft statements
    /// inside a `forward` chain of `table bridge faults`.
    pub fn faults(&self, rules: &[String]) -> io::Result<()> {
        let _ = self.bridge(&["nft", "delete", "table", "bridge", "faults"]);
        if rules.is_empty() {
            return Ok(());
        }
        let text = format!(
            "table bridge faults {{\n  chain faults {{\n    type filter hook forward priority 0; policy accept;\n{}\n  }}\n}}\n",
            rules.join("\n")
        );
        let path =
            std::env::temp_dir().join(format!("{}-faults-{}.nft", self.prefix, std::process::id()));
        std::fs::write(&path, text)?;
        let r = self.bridge(&["nft", "-f", path.to_str().unwrap_or_default()]);
        let _ = std::fs::remove_file(&path);
        r.map(|_| ())
    }

    /// Removes every namespace whose name starts with `prefix-` (leftovers).
    pub fn sweep(prefix: &str) {
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if name.starts_with(&format!("{prefix}-")) {
                    let _ = Command::new("ip")
                        .args(["netns", "pids", name])
                        .output()
                        .map(|o| {
                            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                                let _ = Command::new("kill").args(["-9", pid]).status();
                            }
                        });
                    let _ = Command::new("ip").args(["netns", "del", name]).status();
                }
            }
        }
    }
}

/// A second network of a lab ([`Lab::second_net`]): the nodes' `eth1` and a client.
#[derive(Debug)]
pub struct Net {
    /// Each node's host on this network (same namespaces as the lab's nodes).
    pub nodes: Vec<Host>,
    /// The client on this network.
    pub client: Host,
    /// 10.a.b.
    pub subnet: [u8; 3],
}

impl Net {
    /// An IPv4 address on this network.
    pub fn addr4(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], host)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        Lab::sweep(&self.prefix);
    }
}

pub mod cluster;
pub mod keepalived;
pub mod watch;

/// The agent binary next to the running example (`target/release/wackamole`),
/// built first if needed (examples are not built with the binary), or the one
/// `WACKAMOLE_AGENT_BIN` names (to measure two builds side by side).
pub fn agent_binary() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("WACKAMOLE_AGENT_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "--release", "--bin", "wackamole"])
        .status();
    assert!(
        st.map(|s| s.success()).unwrap_or(false),
        "cannot build the agent"
    );
    dir.join("wackamole")
}

/// Polls `f` every 20 ms until it gives a value or `limit` passes (every wait in the
/// labs is bounded).
pub fn wait_for<T>(limit: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if let Some(x) = f() {
            return Some(x);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

/// The `p`-th percentile (nearest rank) of `v`; NaN when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[(((p / 100.0) * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}
