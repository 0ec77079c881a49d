//! A cluster of real `wackamole run` processes in a [`Lab`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::addr::gate::{Gate, GateSet};
use crate::addr::rtnl::Rtnl;

use super::{Lab, enter};

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Namespace prefix (short, unique per concurrent lab).
    pub prefix: String,
    /// Nodes.
    pub nodes: usize,
    /// Subnet 10.a.b.0/24.
    pub subnet: [u8; 2],
    /// IPv4 VIPs (hosts .100 …).
    pub vips4: usize,
    /// IPv6 VIPs (fd00:a:b::100 …).
    pub vips6: usize,
    /// Extra flags for every agent.
    pub extra: Vec<String>,
    /// Gate fence (false: `--fence address`).
    pub gate: bool,
    /// Pass the VIPs as `--vip` (false: a config file names the pool).
    pub vip_flag: bool,
    /// Pass `--voters n0,…` naming every node (false: a config file names them).
    pub voters_flag: bool,
    /// Pass `--bind ADDR:7946` (false: the default, `0.0.0.0:7946`).
    pub bind_flag: bool,
    /// Every node joins through every node (false: n0 names no `--join`, the others
    /// join through n0 alone).
    pub join_all: bool,
}

impl Spec {
    /// Three nodes, four IPv4 VIPs, gate.
    pub fn new(prefix: &str, subnet: [u8; 2]) -> Spec {
        Spec {
            prefix: prefix.into(),
            nodes: 3,
            subnet,
            vips4: 4,
            vips6: 0,
            extra: vec![],
            gate: true,
            vip_flag: true,
            voters_flag: true,
            bind_flag: true,
            join_all: true,
        }
    }
}

/// The pool part of a config file: `vip = [...]` and, when `groups` is not empty,
/// `vip-group = [[...], ...]`.
pub fn pool_toml(vips: &[IpAddr], groups: &[&[IpAddr]]) -> String {
    let list = |xs: &[IpAddr]| {
        xs.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!("vip = [{}]\n", list(vips));
    if !groups.is_empty() {
        let gs: Vec<String> = groups.iter().map(|g| format!("[{}]", list(g))).collect();
        s.push_str(&format!("vip-group = [{}]\n", gs.join(", ")));
    }
    s
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The namespaces.
    pub lab: Lab,
    /// The VIPs.
    pub vips: Vec<IpAddr>,
    /// Working directory (key, logs).
    pub dir: PathBuf,
    bin: PathBuf,
    spec: Spec,
    children: Vec<Option<Child>>,
}

/// Which VIPs node `ns` answers for right now (address present and, with the gate,
/// live; an address with no gate table at all answers). Runs on a helper thread
/// inside the namespace.
pub fn answering(ns: &str, ifname: &str, vips: &[IpAddr], gate: bool) -> BTreeSet<IpAddr> {
    let (ns, ifname, vips) = (ns.to_string(), ifname.to_string(), vips.to_vec());
    std::thread::spawn(move || {
        let mut out = BTreeSet::new();
        if enter(&ns).is_err() {
            return out;
        }
        let Ok(mut r) = Rtnl::new() else { return out };
        let Ok(Some(link)) = r.link(&ifname) else {
            return out;
        };
        let present: BTreeSet<IpAddr> = r
            .addrs(link.index)
            .map(|v| {
                v.into_iter()
                    .map(|a| a.addr)
                    .filter(|a| vips.contains(a))
                    .collect()
            })
            .unwrap_or_default();
        if !gate {
            return present;
        }
        let mut live = BTreeSet::new();
        let Ok(mut g) = Gate::open() else {
            return present;
        };
        for v6 in [false, true] {
            match g.list(GateSet::Live, v6) {
                Ok(l) => live.extend(l.into_iter().map(|(a, _)| a)),
                // No gate table: nothing filters, every present address answers.
                Err(_) => return present,
            }
        }
        out = present.intersection(&live).copied().collect();
        out
    })
    .join()
    .unwrap_or_default()
}

impl Cluster {
    /// For an integration test: the cluster of `Spec::new(prefix, subnet)` after
    /// `tweak`, or `None` after a loud `SKIPPED` line when this machine cannot run
    /// network-namespace tests (not root, no `ip`) or has no `nft`.
    pub fn for_test(
        bin: &Path,
        prefix: &str,
        subnet: [u8; 2],
        tweak: impl FnOnce(&mut Spec),
    ) -> Option<Cluster> {
        if let Err(why) = super::available() {
            super::skip("network-namespace test", &why);
            return None;
        }
        if Command::new("nft")
            .arg("--version")
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            super::skip(
                "network-namespace test",
                "nftables is not installed (apt-get install nftables)",
            );
            return None;
        }
        let mut spec = Spec::new(prefix, subnet);
        tweak(&mut spec);
        Some(Cluster::new(bin, spec).expect("lab"))
    }

    /// Builds the lab and writes a key; starts no agent.
    pub fn new(bin: &Path, spec: Spec) -> io::Result<Cluster> {
        let lab = Lab::new(&spec.prefix, spec.nodes, spec.subnet)?;
        let mut vips: Vec<IpAddr> = (0..spec.vips4)
            .map(|i| IpAddr::V4(lab.addr4(100 + i as u8)))
            .collect();
        vips.extend((0..spec.vips6).map(|i| IpAddr::V6(lab.addr6(100 + i as u8))));
        let dir =
            std::env::temp_dir().join(format!("wackamole-{}-{}", spec.prefix, std::process::id()));
        fs::create_dir_all(&dir)?;
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        fs::write(dir.join("key"), format!("{hex}\n"))?;
        let n = spec.nodes;
        Ok(Cluster {
            lab,
            vips,
            dir,
            bin: bin.to_path_buf(),
            spec,
            children: (0..n).map(|_| None).collect(),
        })
    }

    /// The flags node `i` runs with.
    pub fn args(&self, i: usize) -> Vec<String> {
        let join: Vec<String> = self
            .lab
            .nodes
            .iter()
            .take(if self.spec.join_all { usize::MAX } else { 1 })
            .map(|h| format!("{}:7946", h.addr))
            .collect();
        let voters: Vec<String> = (0..self.spec.nodes).map(|k| format!("n{k}")).collect();
        let vips: Vec<String> = self.vips.iter().map(|v| v.to_string()).collect();
        let mut a = vec![
            "run".to_string(),
            "--node-name".into(),
            format!("n{i}"),
            "--interface".into(),
            self.lab.nodes[i].ifname.clone(),
            "--key-file".into(),
            self.dir.join("key").display().to_string(),
        ];
        if self.spec.bind_flag {
            a.extend(["--bind".into(), format!("{}:7946", self.lab.nodes[i].addr)]);
        }
        if self.spec.join_all || i > 0 {
            a.extend(["--join".into(), join.join(",")]);
        }
        if self.spec.voters_flag {
            a.extend(["--voters".into(), voters.join(",")]);
        }
        if self.spec.vip_flag {
            a.extend(["--vip".into(), vips.join(",")]);
        }
        if !self.spec.gate {
            a.extend(["--fence".into(), "address".into()]);
        }
        a.extend(self.spec.extra.iter().cloned());
        a
    }

    /// Starts node `i`'s agent (logs to `dir/n{i}.log`), with extra flags.
    pub fn start_with(&mut self, i: usize, extra: &[&str]) -> io::Result<()> {
        self.start_wrapped(i, &[], extra)
    }

    /// Starts node `i`'s agent with `flag value` in place of the value its base flags
    /// give that flag (a one-value flag given twice is a usage error: the agent would
    /// not start at all).
    pub fn start_replacing(&mut self, i: usize, flag: &str, value: &str) -> io::Result<()> {
        let mut args = self.args(i);
        match args.iter().position(|a| a == flag) {
            Some(k) if k + 1 < args.len() => args[k + 1] = value.to_string(),
            _ => args.extend([flag.to_string(), value.to_string()]),
        }
        self.spawn(i, &[], args)
    }

    /// Starts node `i`'s agent under a wrapper command (e.g. `faketime -f -1d`).
    pub fn start_wrapped(&mut self, i: usize, wrapper: &[&str], extra: &[&str]) -> io::Result<()> {
        let mut args = self.args(i);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(i, wrapper, args)
    }

    fn spawn(&mut self, i: usize, wrapper: &[&str], args: Vec<String>) -> io::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{i}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.lab.nodes[i].ns])
            .args(wrapper)
            .arg(&self.bin)
            .args(&args)
            // `WACKAMOLE_LAB_LOG=debug` (or any filter) to see more in a test's logs.
            .env(
                "WACKAMOLE_LOG",
                std::env::var("WACKAMOLE_LAB_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children[i] = Some(child);
        Ok(())
    }

    /// Starts node `i`'s agent.
    pub fn start(&mut self, i: usize) -> io::Result<()> {
        self.start_with(i, &[])
    }

    /// Starts every agent.
    pub fn start_all(&mut self) -> io::Result<()> {
        for i in 0..self.spec.nodes {
            self.start(i)?;
        }
        Ok(())
    }

    /// The agent's pid (the `ip netns exec` process execs the agent, same pid).
    pub fn pid(&self, i: usize) -> Option<i32> {
        self.children[i].as_ref().map(|c| c.id() as i32)
    }

    /// Sends a signal to node `i`'s agent.
    pub fn signal(&self, i: usize, sig: nix::sys::signal::Signal) -> io::Result<()> {
        let pid = self.pid(i).ok_or_else(|| io::Error::other("not running"))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).map_err(io::Error::from)
    }

    /// Waits up to `limit` for node `i` to exit; returns its status and how long it took.
    pub fn wait_exit(
        &mut self,
        i: usize,
        limit: Duration,
    ) -> io::Result<Option<(ExitStatus, Duration)>> {
        let t = Instant::now();
        let Some(c) = self.children[i].as_mut() else {
            return Ok(None);
        };
        while t.elapsed() < limit {
            if let Some(st) = c.try_wait()? {
                self.children[i] = None;
                return Ok(Some((st, t.elapsed())));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(None)
    }

    /// `wackamole ARGS` (the cluster's binary) inside node `i`'s namespace: (exit
    /// code, stdout, stderr).
    pub fn cli(&self, i: usize, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.lab.nodes[i].ns])
            .arg(&self.bin)
            .args(args)
            .output()
            .expect("run the CLI");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// SIGKILLs node `i`'s agent.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Who answers each VIP now (kernel view).
    pub fn holders(&self) -> BTreeMap<IpAddr, Vec<usize>> {
        let mut out: BTreeMap<IpAddr, Vec<usize>> =
            self.vips.iter().map(|v| (*v, vec![])).collect();
        for (i, h) in self.lab.nodes.iter().enumerate() {
            for v in answering(&h.ns, &h.ifname, &self.vips, self.spec.gate) {
                out.entry(v).or_default().push(i);
            }
        }
        out
    }

    /// Waits until every VIP is answered by exactly one node in `among`, and no
    /// node holds more than ceil(V/|among|); returns how long it took.
    pub fn wait_converged(&self, among: &[usize], limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        let cap = self.vips.len().div_ceil(among.len().max(1));
        while t.elapsed() < limit {
            let h = self.holders();
            let one = h.values().all(|w| w.len() == 1 && among.contains(&w[0]));
            let balanced = among
                .iter()
                .all(|n| h.values().filter(|w| w.contains(n)).count() <= cap);
            if one && balanced {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Node `i`'s whole log.
    pub fn full_log(&self, i: usize) -> String {
        fs::read_to_string(self.dir.join(format!("n{i}.log"))).unwrap_or_default()
    }

    /// The last 40 lines of node `i`'s log.
    pub fn log(&self, i: usize) -> String {
        let s = fs::read_to_string(self.dir.join(format!("n{i}.log"))).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Every node's log tail, headed by its name (for failure messages).
    pub fn logs(&self) -> String {
        (0..self.lab.nodes.len())
            .map(|i| format!("--- n{i}:\n{}", self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Node `i`'s MAC (of its lab interface).
    pub fn mac(&self, i: usize) -> Option<[u8; 6]> {
        self.lab.mac(i)
    }
}

impl Lab {
    /// Node `i`'s MAC (of its lab interface).
    pub fn mac(&self, i: usize) -> Option<[u8; 6]> {
        let h = &self.nodes[i];
        let (ns, ifname) = (h.ns.clone(), h.ifname.clone());
        std::thread::spawn(move || {
            enter(&ns).ok()?;
            Rtnl::new().ok()?.link(&ifname).ok()?.map(|l| l.mac)
        })
        .join()
        .ok()
        .flatten()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
