//! Command-line flags (each also an environment variable `WACKAMOLE_<FLAG>`) and
//! their validation into one configuration, before any socket or netlink call.
//!
//! Raw flags ([`Flags`]) are turned into a checked [`Settings`] by
//! [`Settings::from_flags`]; every error names the flag and the fix, and maps to exit
//! code 64 (`EX_USAGE`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

pub mod file;
pub mod import;
pub mod load;

use crate::core::config::{
    ClusterConfig, FenceKind, GroupId, NodeConfig, Profile, QuorumMode, Timing, Vip, VipGroup,
    validate_name,
};
use crate::core::links::Homes;

/// Exit code for bad usage (sysexits.h `EX_USAGE`).
pub const EX_USAGE: u8 = 64;

/// wackamole: keeps a pool of virtual IP addresses on exactly one live machine each.
#[derive(Parser, Debug)]
#[command(name = "wackamole", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent: hold this node's share of the VIPs.
    Run(Box<RunFlags>),
    /// Validate the flags, print the derived timing and the safety inequalities, exit.
    CheckConfig(Box<RunFlags>),
    /// Print the cluster table from a running agent's /status.
    Status(ClientFlags),
    /// Move this node's VIPs away gracefully (the agent keeps running).
    Drain(ClientFlags),
    /// Let this node take VIPs again.
    Undrain(ClientFlags),
    /// Make the local agent re-read its config file (as SIGHUP does) and wait for the
    /// verdict: exit 0 when applied, 78 with the reason when refused (nothing changed).
    Reload(ClientFlags),
    /// Exit 0 if the local agent answers /healthz (or /readyz with --ready), 1 if
    /// not: for container HEALTHCHECKs and probes without curl.
    Health(HealthFlags),
    /// Print a config file for this agent made from an original Wackamole
    /// `wackamole.conf` (exit 65 with the line on a syntax error).
    Import(ImportFlags),
    /// As root: a throw-away three-node cluster in network namespaces, with a live
    /// ownership table and a failover you can watch.
    Demo(DemoFlags),
}

/// Flags of `run`: the cluster flags plus the shell's own.
#[derive(Args, Debug, Clone)]
pub struct RunFlags {
    /// A TOML file with one key per flag (`node-name = "a"`, `vip = ["10.0.0.100"]`);
    /// flags and `WACKAMOLE_*` variables override it. SIGHUP re-reads it.
    #[arg(long, env = "WACKAMOLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// The cluster and node flags.
    #[command(flatten)]
    pub flags: Flags,
    /// Gratuitous ARP / unsolicited NA packets per announcement.
    #[arg(long, env = "WACKAMOLE_GARP_COUNT", default_value_t = 5)]
    pub garp_count: u32,
    /// Spacing of those packets.
    #[arg(long, env = "WACKAMOLE_GARP_INTERVAL", default_value = "10ms", value_parser = parse_duration)]
    pub garp_interval: Duration,
    /// Re-announce held VIPs this often (0 = only on changes).
    #[arg(long, env = "WACKAMOLE_GARP_REFRESH", default_value = "0s", value_parser = parse_duration)]
    pub garp_refresh: Duration,
    /// Also send directed ARP replies to these addresses: ADDR or CIDR (/22–/32, IPv4,
    /// comma-separated), each optionally IF:ADDR, then only for the VIPs on interface IF.
    #[arg(long, env = "WACKAMOLE_NOTIFY", value_delimiter = ',')]
    pub notify: Vec<String>,
    /// Most directed notifications (--notify targets, neighbours) per second per interface
    /// (0 = no limit; a limit paces the announcing thread).
    #[arg(long, env = "WACKAMOLE_NOTIFY_RATE", default_value_t = 0)]
    pub notify_rate: u32,
    /// Share the neighbour caches (ARP, ND) of the VIP interfaces between nodes and, on
    /// every bind, send a unicast ARP reply / NA to each known neighbour: reaches hosts that
    /// ignore gratuitous ARP.
    #[arg(long, env = "WACKAMOLE_NOTIFY_NEIGHBOURS", default_value = "false", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, value_parser = parse_bool)]
    pub notify_neighbours: bool,
    /// How often the neighbour caches are sampled and shared (--notify-neighbours).
    #[arg(long, env = "WACKAMOLE_NEIGHBOUR_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub neighbour_interval: Duration,
    /// Log filter: a level (`info`, `debug`) or per-module directives
    /// (`info,wackamole::agent=debug`). Changed by a reload.
    #[arg(long, env = "WACKAMOLE_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `text` or `json`.
    #[arg(long, env = "WACKAMOLE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Address of the metrics, status and dashboard HTTP listener (`off` to disable).
    #[arg(long, env = "WACKAMOLE_METRICS_ADDR", default_value = "127.0.0.1:9947")]
    pub metrics_addr: String,
    /// File holding a bearer token that lets other hosts use /drain and /undrain.
    #[arg(long, env = "WACKAMOLE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Health check: a command run with `sh -c`; exit 0 is healthy (repeatable).
    #[arg(long, env = "WACKAMOLE_CHECK_EXEC")]
    pub check_exec: Vec<String>,
    /// Health check: an HTTP GET of http://IP:PORT/PATH; 2xx/3xx is healthy (repeatable).
    #[arg(long, env = "WACKAMOLE_CHECK_HTTP", value_delimiter = ',')]
    pub check_http: Vec<String>,
    /// Health check: a TCP connect to IP:PORT (repeatable).
    #[arg(long, env = "WACKAMOLE_CHECK_TCP", value_delimiter = ',')]
    pub check_tcp: Vec<SocketAddr>,
    /// Time between health-check runs.
    #[arg(long, env = "WACKAMOLE_CHECK_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub check_interval: Duration,
    /// Longest a health check may take (a timeout is a failure).
    #[arg(long, env = "WACKAMOLE_CHECK_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub check_timeout: Duration,
    /// Consecutive successes before an unhealthy node is healthy again.
    #[arg(long, env = "WACKAMOLE_CHECK_RISE", default_value_t = 2)]
    pub check_rise: u32,
    /// Consecutive failures before a healthy node is unhealthy.
    #[arg(long, env = "WACKAMOLE_CHECK_FALL", default_value_t = 3)]
    pub check_fall: u32,
    /// Hook run after this node binds a VIP group.
    #[arg(long, env = "WACKAMOLE_ON_ACQUIRE")]
    pub on_acquire: Option<String>,
    /// Hook run after this node stops answering a VIP group.
    #[arg(long, env = "WACKAMOLE_ON_RELEASE")]
    pub on_release: Option<String>,
    /// Hook run when a probe finds a VIP answered by another machine.
    #[arg(long, env = "WACKAMOLE_ON_CONFLICT")]
    pub on_conflict: Option<String>,
    /// Hook run once after a round in which this node acquired or released VIP groups,
    /// with all of them (WACKAMOLE_ACQUIRED, WACKAMOLE_RELEASED, WACKAMOLE_HELD).
    #[arg(long, env = "WACKAMOLE_ON_ROUND")]
    pub on_round: Option<String>,
    /// Longest a hook may run before it is killed.
    #[arg(long, env = "WACKAMOLE_HOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub hook_timeout: Duration,
}

/// Flags of `status`, `drain`, `undrain` and `reload`.
#[derive(Args, Debug, Clone)]
pub struct ClientFlags {
    /// The agent's metrics/status listener.
    #[arg(long, env = "WACKAMOLE_METRICS_ADDR", default_value = "127.0.0.1:9947")]
    pub addr: SocketAddr,
    /// Bearer token file, for an agent on another host.
    #[arg(long, env = "WACKAMOLE_ADMIN_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Print the raw JSON (status).
    #[arg(long)]
    pub json: bool,
    /// drain: wait this long for this node to hold nothing (0: don't wait).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub wait: Duration,
}

/// Flags of `import`.
#[derive(Args, Debug, Clone)]
pub struct ImportFlags {
    /// The original `wackamole.conf`.
    pub path: PathBuf,
    /// This node's name in the output (each node runs the file with its own).
    #[arg(long, default_value = "node1")]
    pub node_name: String,
    /// The key file the output names (without it: `insecure = true` and how to make one).
    #[arg(long)]
    pub key_file: Option<PathBuf>,
}

/// Flags of `health`.
#[derive(Args, Debug, Clone)]
pub struct HealthFlags {
    /// The agent's metrics/status listener.
    #[arg(long, env = "WACKAMOLE_METRICS_ADDR", default_value = "127.0.0.1:9947")]
    pub addr: SocketAddr,
    /// Ask /readyz (joined and not fenced) instead of /healthz (loop alive).
    #[arg(long)]
    pub ready: bool,
}

/// Flags of `demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoFlags {
    /// Keep the cluster running after the failover until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Timing profile for the demo cluster.
    #[arg(long, default_value = "default")]
    pub profile: String,
}

/// Expands `--notify` entries (`[IF:]ADDR` or `[IF:]CIDR` up to /22, IPv4) into
/// addresses, each with the interface it is limited to.
pub fn parse_notify(
    list: &[String],
) -> Result<Vec<(Option<String>, std::net::Ipv4Addr)>, UsageError> {
    let mut out = Vec::new();
    for full in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (iface, item) =
            crate::core::links::split_iface(full).map_err(|e| usage("notify", e))?;
        let iface = iface.map(str::to_string);
        let mut one = Vec::new();
        if let Some((a, p)) = item.split_once('/') {
            let base: std::net::Ipv4Addr = a
                .parse()
                .map_err(|_| usage("notify", format!("{item:?} is not an IPv4 address or CIDR")))?;
            let p: u32 = p
                .parse()
                .map_err(|_| usage("notify", format!("{item:?}: bad prefix")))?;
            if !(22..=32).contains(&p) {
                return Err(usage(
                    "notify",
                    format!("{item:?}: use a prefix from /22 to /32"),
                ));
            }
            let n = 1u32 << (32 - p);
            let start = u32::from(base) & !(n - 1);
            for k in 0..n {
                let ip = std::net::Ipv4Addr::from(start + k);
                if n > 2 && (k == 0 || k == n - 1) {
                    continue; // network and broadcast
                }
                one.push(ip);
            }
        } else {
            one.push(item.parse().map_err(|_| {
                usage("notify", format!("{item:?} is not an IPv4 address or CIDR"))
            })?);
        }
        out.extend(one.into_iter().map(|ip| (iface.clone(), ip)));
    }
    Ok(out)
}

/// The operations options of `run`, validated.
#[derive(Clone, Debug)]
pub struct OpsOptions {
    /// Where the metrics/status/dashboard listener binds (`None`: off).
    pub listen: Option<SocketAddr>,
    /// Bearer token for control endpoints from other hosts.
    pub token: Option<String>,
    /// Health checks.
    pub checks: Vec<crate::ops::health::Check>,
    /// Their timing and hysteresis.
    pub policy: crate::ops::health::Policy,
    /// Hook commands and timeout.
    pub hooks: crate::ops::hooks::HookConfig,
}

/// Reads a bearer token file: one word of at least 128 bits (see
/// [`crate::net::secret`]), in a file group and others may not write.
pub fn read_token(path: &std::path::Path, flag: &'static str) -> Result<String, UsageError> {
    let raw = std::fs::read_to_string(path)
        .map_err(|e| usage(flag, format!("{}: {e}", path.display())))?;
    let token = raw.trim().to_string();
    if token.len() < 16 || token.contains(char::is_whitespace) {
        return Err(usage(
            flag,
            format!(
                "{}: the token must be one word of at least 16 characters",
                path.display()
            ),
        ));
    }
    crate::net::secret::check_strength(token.as_bytes())
        .map_err(|why| usage(flag, format!("{}: {why}", path.display())))?;
    crate::net::secret::check_mode(path).map_err(|why| usage(flag, why))?;
    Ok(token)
}

/// Validates the operations flags of `run`.
pub fn ops_options(r: &RunFlags) -> Result<OpsOptions, UsageError> {
    use crate::ops::health::{Check, Policy};
    let listen = match r.metrics_addr.trim() {
        "off" | "" => None,
        a => Some(
            a.parse::<SocketAddr>()
                .map_err(|_| usage("metrics-addr", format!("{a:?} is not IP:PORT (or `off`)")))?,
        ),
    };
    let token = match &r.admin_token_file {
        Some(p) => Some(read_token(p, "admin-token-file")?),
        None => None,
    };
    let mut checks = Vec::new();
    for c in r.check_exec.iter().filter(|c| !c.trim().is_empty()) {
        checks.push(Check::Exec(c.clone()));
    }
    for u in r.check_http.iter().filter(|c| !c.trim().is_empty()) {
        checks.push(Check::parse_http(u.trim()).map_err(|e| usage("check-http", e))?);
    }
    for a in &r.check_tcp {
        if a.port() == 0 || a.ip().is_unspecified() || a.ip().is_multicast() {
            return Err(usage(
                "check-tcp",
                format!("{a}: not an address a server listens on (give IP:PORT)"),
            ));
        }
        checks.push(Check::Tcp(*a));
    }
    if r.check_interval.is_zero() {
        return Err(usage("check-interval", "must be more than zero"));
    }
    if r.check_timeout.is_zero() || r.check_timeout > r.check_interval {
        return Err(usage(
            "check-timeout",
            format!(
                "must be more than zero and at most --check-interval ({:?})",
                r.check_interval
            ),
        ));
    }
    if r.check_rise == 0 {
        return Err(usage("check-rise", "must be at least 1"));
    }
    if r.check_fall == 0 {
        return Err(usage("check-fall", "must be at least 1"));
    }
    if r.hook_timeout.is_zero() {
        return Err(usage("hook-timeout", "must be more than zero"));
    }
    let hook = |s: &Option<String>| s.clone().filter(|c| !c.trim().is_empty());
    Ok(OpsOptions {
        listen,
        token,
        checks,
        policy: Policy {
            interval: r.check_interval,
            timeout: r.check_timeout,
            rise: r.check_rise,
            fall: r.check_fall,
        },
        hooks: crate::ops::hooks::HookConfig {
            acquire: hook(&r.on_acquire),
            release: hook(&r.on_release),
            conflict: hook(&r.on_conflict),
            round: hook(&r.on_round),
            timeout: r.hook_timeout,
            interface: r.flags.interface.clone().unwrap_or_default(),
            homes: Default::default(),
            node: r.flags.node_name.clone(),
        },
    })
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{s:?} is not a boolean (use 1/0, true/false, yes/no)"
        )),
    }
}

/// Parses `250ms`, `2s`, `1.5s`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 250ms, 2s)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s:?} must be a non-negative duration"));
    }
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    // Nothing here sensibly exceeds a day, and a bound keeps every later sum and
    // product of durations far from overflow.
    if secs > MAX_DURATION_SECS {
        return Err(format!("{s:?} is too long (at most 24h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The longest duration any flag accepts.
const MAX_DURATION_SECS: f64 = 86_400.0;

/// The flags of `run` and `check-config`.
#[derive(Args, Debug, Clone)]
pub struct Flags {
    /// This node's name: unique in the cluster, 1–63 of [A-Za-z0-9._-].
    #[arg(long, env = "WACKAMOLE_NODE_NAME")]
    pub node_name: String,
    /// Network interface the VIPs live on (those not given as IF:ADDR).
    #[arg(long, env = "WACKAMOLE_INTERFACE")]
    pub interface: Option<String>,
    /// Gossip and lease address (UDP). With an unspecified IP (the default) the agent
    /// listens on every address and tells peers the one it routes to the first --join
    /// address from (else --interface's first address); --advertise overrides that.
    #[arg(long, env = "WACKAMOLE_BIND", default_value = "0.0.0.0:7946")]
    pub bind: SocketAddr,
    /// Start even when an interface the VIPs live on does not exist yet (a VLAN, bond or
    /// container link made later): its VIPs wait for it, as for one deleted under a
    /// running agent (keepalived's `dynamic_interfaces`). Without it that is a usage error.
    #[arg(long, env = "WACKAMOLE_DYNAMIC_INTERFACES", default_value = "false", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, value_parser = parse_bool)]
    pub dynamic_interfaces: bool,
    /// The address peers reach this node's gossip and lease socket at: IP or IP:PORT
    /// (default: --bind's IP if it names one, else found at start; the port of --bind).
    #[arg(long, env = "WACKAMOLE_ADVERTISE", value_parser = parse_advertise)]
    pub advertise: Option<Advertise>,
    /// Addresses of cluster members to join through (the same list on every node is fine).
    #[arg(long, env = "WACKAMOLE_JOIN", value_delimiter = ',')]
    pub join: Vec<SocketAddr>,
    /// A VIP: ADDR, ADDR/PREFIX or IF:ADDR[/PREFIX] (repeatable or comma-separated); each is
    /// its own group. IF (default --interface) is the interface it lives on.
    #[arg(long, env = "WACKAMOLE_VIP", value_delimiter = ',')]
    pub vip: Vec<String>,
    /// Addresses that always move together, each ADDR or IF:ADDR (with /PREFIX): ADDR,ADDR,… (repeatable;
    /// separate groups with ';' in the env var). They may live on different interfaces.
    #[arg(long, env = "WACKAMOLE_VIP_GROUP", value_delimiter = ';')]
    pub vip_group: Vec<String>,
    /// Preferred holder of a VIP while that node is eligible: ADDR=NODE (repeatable or comma-separated).
    #[arg(long, env = "WACKAMOLE_PREFER", value_delimiter = ',')]
    pub prefer: Vec<String>,
    /// This node's share of VIP groups relative to others (1–1000).
    #[arg(long, env = "WACKAMOLE_WEIGHT", default_value_t = 1)]
    pub weight: u16,
    /// The voter set V: node names, identical on every node.
    #[arg(long, env = "WACKAMOLE_VOTERS", value_delimiter = ',')]
    pub voters: Vec<String>,
    /// Voters that never hold a VIP.
    #[arg(long, env = "WACKAMOLE_WITNESS", value_delimiter = ',')]
    pub witness: Vec<String>,
    /// `majority` (the quorum lease; safe under any partition) or `off` (exactly two nodes).
    #[arg(long, env = "WACKAMOLE_QUORUM", default_value = "majority")]
    pub quorum: String,
    /// `gate` (nftables gate, K ≈ E + 10 ms) or `address` (address lifetimes only, K = 2.25 s).
    #[arg(long, env = "WACKAMOLE_FENCE", default_value = "gate")]
    pub fence: String,
    /// Timing profile: `default` (failover ≈ 0.5 s), `fast` (≈ 0.35 s, more churn on a lossy LAN)
    /// or `lean` (≈ 1 s, a quarter of the default's idle wake-ups and traffic).
    #[arg(long, env = "WACKAMOLE_PROFILE", default_value = "default")]
    pub profile: String,
    /// A returning node waits this long before taking VIPs back.
    #[arg(long, env = "WACKAMOLE_FAILBACK_DELAY", value_parser = parse_duration)]
    pub failback_delay: Option<Duration>,
    /// Clock-rate bound ρ.
    #[arg(long, env = "WACKAMOLE_RHO")]
    pub rho: Option<f64>,
    /// Whether this node may hold VIPs at all.
    #[arg(long, env = "WACKAMOLE_ELIGIBLE", default_value = "true", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, value_parser = parse_bool)]
    pub eligible: bool,
    /// File with the cluster secret (the datagram key is derived from it).
    #[arg(long, env = "WACKAMOLE_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Run without authentication (test labs only).
    #[arg(long, env = "WACKAMOLE_INSECURE", default_value = "false", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, value_parser = parse_bool)]
    pub insecure: bool,
}

/// A flag that failed validation.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {message}")]
pub struct UsageError {
    /// The flag, without dashes.
    pub flag: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn usage(flag: &'static str, message: impl Into<String>) -> UsageError {
    UsageError {
        flag,
        message: message.into(),
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shared by every node.
    pub cluster: ClusterConfig,
    /// This node.
    pub node: NodeConfig,
    /// Gossip bind address.
    pub bind: SocketAddr,
    /// `--advertise`, if given.
    pub advertise: Option<Advertise>,
    /// `--dynamic-interfaces`: a missing VIP interface at start is waited for.
    pub dynamic_interfaces: bool,
    /// Seeds.
    pub join: Vec<SocketAddr>,
    /// The default interface of the VIPs (`--interface`).
    pub interface: Option<String>,
    /// Which interface each VIP lives on.
    pub homes: Homes,
    /// Warnings to print.
    pub warnings: Vec<String>,
}

/// `[IF:]ADDR[/PREFIX]`: a VIP and the interface it lives on, if named.
fn parse_vip(s: &str) -> Result<(Vip, Option<String>), String> {
    let (iface, s) = crate::core::links::split_iface(s)?;
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address (use ADDR, ADDR/PREFIX or IF:ADDR)"))?;
    let mut v = Vip::host(addr);
    if let Some(p) = prefix {
        v.prefix_len = p.parse().map_err(|_| format!("{s:?}: bad prefix length"))?;
    }
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return Err(format!(
            "{s:?} cannot be a VIP (unspecified, multicast or loopback)"
        ));
    }
    Ok((v, iface.map(str::to_string)))
}

/// `--advertise`: the address peers reach this node at, and the port if it is not
/// `--bind`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertise {
    /// The address.
    pub ip: IpAddr,
    /// The port (`None`: the port the socket is bound to).
    pub port: Option<u16>,
}

impl std::fmt::Display for Advertise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}", SocketAddr::new(self.ip, p)),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// `IP` or `IP:PORT` (`[IPv6]:PORT`), a unicast address a peer can send to.
fn parse_advertise(s: &str) -> Result<Advertise, String> {
    let s = s.trim();
    let a = if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("{s:?}: port 0 is not a port peers can send to"));
        }
        Advertise {
            ip: sa.ip(),
            port: Some(sa.port()),
        }
    } else if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Advertise { ip, port: None }
    } else {
        return Err(format!("{s:?} is not IP or IP:PORT"));
    };
    if a.ip.is_unspecified() || a.ip.is_multicast() {
        return Err(format!(
            "{s:?}: peers cannot send to an unspecified or multicast address"
        ));
    }
    if let IpAddr::V4(v4) = a.ip
        && v4.is_broadcast()
    {
        return Err(format!("{s:?}: peers cannot send to a broadcast address"));
    }
    Ok(a)
}

/// Records where `v` lives; an address named twice must name one interface.
fn home(homes: &mut Homes, v: &Vip, iface: Option<String>) -> Result<(), String> {
    let Some(i) = iface else { return Ok(()) };
    match homes.of.insert(v.addr, i.clone()) {
        Some(old) if old != i => Err(format!(
            "{} is given on two interfaces ({old} and {i})",
            v.addr
        )),
        _ => Ok(()),
    }
}

impl Settings {
    /// Validates raw flags into settings.
    pub fn from_flags(f: &Flags) -> Result<Settings, UsageError> {
        validate_name(&f.node_name).map_err(|e| usage("node-name", e.to_string()))?;
        if let Some(a) = f.advertise
            && a.ip.is_ipv4() != f.bind.is_ipv4()
        {
            return Err(usage(
                "advertise",
                format!(
                    "{a} and --bind {} are of different families; peers must reach the socket at an address of its own family",
                    f.bind
                ),
            ));
        }
        for (flag, list) in [("voters", &f.voters), ("witness", &f.witness)] {
            let mut seen = std::collections::BTreeSet::new();
            if let Some(twice) = list
                .iter()
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .find(|v| !seen.insert(*v))
            {
                return Err(usage(
                    flag,
                    format!("{twice:?} is named twice; every voter is one node, named once"),
                ));
            }
        }
        if let Some(j) = f
            .join
            .iter()
            .find(|j| j.port() == 0 || j.ip().is_unspecified())
        {
            return Err(usage(
                "join",
                format!("{j}: not an address a peer listens on (give IP:PORT)"),
            ));
        }
        if f.weight == 0 || f.weight > 1000 {
            return Err(usage(
                "weight",
                format!("{} is out of range; use 1 to 1000", f.weight),
            ));
        }
        let quorum = match f.quorum.as_str() {
            "majority" => QuorumMode::Majority,
            "off" => QuorumMode::Off,
            q => return Err(usage("quorum", format!("{q:?}: use `majority` or `off`"))),
        };
        let fence = match f.fence.as_str() {
            "gate" => FenceKind::Gate,
            "address" => FenceKind::Address,
            x => return Err(usage("fence", format!("{x:?}: use `gate` or `address`"))),
        };
        let profile = Profile::parse(&f.profile).ok_or_else(|| {
            usage(
                "profile",
                format!("{:?}: use `default`, `fast` or `lean`", f.profile),
            )
        })?;
        let mut groups = Vec::new();
        let mut homes = Homes {
            default: f.interface.clone(),
            of: Default::default(),
        };
        if let Some(i) = &f.interface {
            crate::core::links::validate_ifname(i).map_err(|e| usage("interface", e))?;
        }
        for v in f.vip.iter().filter(|v| !v.trim().is_empty()) {
            let (vip, iface) = parse_vip(v).map_err(|e| usage("vip", e))?;
            home(&mut homes, &vip, iface).map_err(|e| usage("vip", e))?;
            groups.push(VipGroup::new(vec![vip]));
        }
        for g in f.vip_group.iter().filter(|v| !v.trim().is_empty()) {
            let mut vips = Vec::new();
            for x in g.split(',') {
                let (vip, iface) = parse_vip(x).map_err(|e| usage("vip-group", e))?;
                home(&mut homes, &vip, iface).map_err(|e| usage("vip-group", e))?;
                vips.push(vip);
            }
            if vips.len() < 2 {
                return Err(usage(
                    "vip-group",
                    format!("{g:?}: a group needs two or more addresses; use --vip for one"),
                ));
            }
            groups.push(VipGroup::new(vips));
        }
        let mut timing = Timing::profile(profile);
        if let Some(d) = f.failback_delay {
            timing.failback_delay = d;
        }
        if let Some(r) = f.rho {
            timing.rho = r;
        }
        let cluster = ClusterConfig::new(
            quorum,
            fence,
            f.voters.clone(),
            f.witness.clone(),
            groups,
            timing,
        );
        let warnings = cluster.validate().map_err(|e| {
            let flag = match &e {
                crate::core::config::ConfigError::Voters(_) => "voters",
                crate::core::config::ConfigError::Groups(_) => "vip",
                crate::core::config::ConfigError::Name { .. } => "voters",
                crate::core::config::ConfigError::Inequality { .. } => "profile",
            };
            usage(flag, e.to_string())
        })?;
        if quorum == QuorumMode::Majority
            && cluster.voter_index(&f.node_name).is_none()
            && cluster.voters.len() < 3
        {
            // Fine (non-voters may hold VIPs), but worth saying for tiny clusters.
        }
        let mut prefers: Vec<GroupId> = Vec::new();
        for p in f.prefer.iter().filter(|v| !v.trim().is_empty()) {
            let (addr, node) = p
                .split_once('=')
                .ok_or_else(|| usage("prefer", format!("{p:?}: use ADDR=NODE")))?;
            let addr: IpAddr = addr
                .trim()
                .parse()
                .map_err(|_| usage("prefer", format!("{p:?}: {addr:?} is not an IP address")))?;
            let g = cluster.group_of(addr).ok_or_else(|| {
                usage(
                    "prefer",
                    format!("{addr} is not one of the VIPs (--vip / --vip-group)"),
                )
            })?;
            validate_name(node.trim()).map_err(|e| usage("prefer", e.to_string()))?;
            if node.trim() == f.node_name {
                prefers.push(g);
            }
        }
        if !f.insecure && f.key_file.is_none() {
            return Err(usage(
                "key-file",
                "no key: give --key-file PATH (32+ random bytes) or --insecure for a lab",
            ));
        }
        let node = NodeConfig {
            name: f.node_name.clone(),
            weight: f.weight,
            prefers,
            eligible: f.eligible,
        };
        let mut warnings = warnings;
        if cluster.is_witness(&node.name) {
            warnings.push(format!(
                "{} is a witness: it votes and holds no VIP",
                node.name
            ));
        }
        if quorum == QuorumMode::Off {
            warnings.push(
                "--quorum off: if the two nodes cannot hear each other at all, both hold the VIPs until the partition heals plus Q (docs/safety.md §2)"
                    .into(),
            );
        }
        Ok(Settings {
            cluster,
            node,
            bind: f.bind,
            advertise: f.advertise,
            dynamic_interfaces: f.dynamic_interfaces,
            join: f.join.clone(),
            interface: f.interface.clone(),
            homes,
            warnings,
        })
    }

    /// The derived values, one per line, for `check-config`.
    pub fn describe(&self) -> String {
        let c = &self.cluster;
        let t = &c.timing;
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        let mut out = String::new();
        let mut line = |k: &str, v: String| {
            out.push_str(&format!("{k:<34} {v}\n"));
        };
        line("node", self.node.name.clone());
        line("cluster id", format!("{:016x}", c.cluster_id()));
        line(
            "quorum",
            format!(
                "{:?}, voters {:?}, q = {}",
                c.quorum,
                c.voters,
                c.quorum_size()
            ),
        );
        line("witnesses", format!("{:?}", c.witnesses));
        line("fence", format!("{:?}, K = {}", c.fence, ms(c.fence_k())));
        line(
            "gossip socket, advertised as",
            format!(
                "{}, {}",
                self.bind,
                match (self.advertise, self.bind.ip().is_unspecified()) {
                    (Some(a), _) =>
                        SocketAddr::new(a.ip, a.port.unwrap_or(self.bind.port())).to_string(),
                    (None, false) => self.bind.to_string(),
                    (None, true) => {
                        "found at start: the address routed toward the first --join, else --interface's first"
                            .into()
                    }
                }
            ),
        );
        line(
            "VIP groups",
            c.groups
                .iter()
                .map(|g| {
                    g.vips
                        .iter()
                        .map(|v| match self.homes.iface(v.addr) {
                            Some(i) => format!("{i}:{}", v.addr),
                            None => v.addr.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect::<Vec<_>>()
                .join(" | "),
        );
        line("claim period R", ms(t.claim_period));
        line("answer ride L", ms(c.answer_ride()));
        line(
            "promise T, lease T(1-2ρ)",
            format!("{}, {}", ms(t.promise), ms(c.lease_validity())),
        );
        if c.fence == FenceKind::Gate {
            line(
                "gate E / F / A",
                format!(
                    "{} / {} / {}",
                    ms(t.gate_timeout),
                    ms(t.gate_refresh),
                    ms(t.gate_arm)
                ),
            );
        }
        line("promise hold P = start-up wait W", ms(c.promise_hold()));
        line(
            "SWIM probe/rtt/suspect/gossip",
            format!(
                "{} / {} / {} / {}",
                ms(t.probe_period),
                ms(t.probe_rtt),
                ms(t.suspect_to_down),
                ms(t.gossip_period)
            ),
        );
        line("heartbeat window (claims missed)", ms(t.heartbeat_window()));
        line("quiescence Q", ms(t.quiescence));
        line("fail-back delay", ms(t.failback_delay));
        line("failover bound (machine death)", ms(c.failover_bound()));
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Flags, clap::Error> {
        let mut v = vec!["wackamole", "check-config"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v)?;
        match cli.command {
            Command::CheckConfig(f) => Ok(f.flags),
            _ => unreachable!("parsed check-config"),
        }
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        // Found by the config fuzz target: this used to panic in from_secs_f64.
        assert!(parse_duration(&"3".repeat(60)).is_err());
        assert!(parse_duration("1e300ms").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn advertise_is_an_address_peers_can_send_to() {
        let a = |s: &str| parse_advertise(s);
        assert_eq!(
            a("192.0.2.7"),
            Ok(Advertise {
                ip: "192.0.2.7".parse().unwrap(),
                port: None
            })
        );
        assert_eq!(a("192.0.2.7:8000").unwrap().port, Some(8000));
        assert_eq!(a("[2001:db8::7]:8000").unwrap().port, Some(8000));
        assert_eq!(a("2001:db8::7").unwrap().port, None);
        assert_eq!(a("[2001:db8::7]").unwrap().port, None);
        for bad in [
            "0.0.0.0",
            "::",
            "224.0.0.18",
            "255.255.255.255",
            "192.0.2.7:0",
            "host",
            "",
        ] {
            assert!(a(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn notify_lists() {
        assert_eq!(parse_notify(&["10.0.0.1".into()]).unwrap().len(), 1);
        assert_eq!(parse_notify(&["10.0.0.0/30".into()]).unwrap().len(), 2);
        assert!(parse_notify(&["10.0.0.0/8".into()]).is_err());
        assert!(parse_notify(&["x".into()]).is_err());
    }

    const BASE: &[&str] = &[
        "--node-name",
        "a",
        "--voters",
        "a,b,c",
        "--vip",
        "10.0.0.100",
        "--insecure",
        "1",
    ];

    #[test]
    fn a_good_configuration_validates() {
        let f = flags(BASE).unwrap();
        let s = Settings::from_flags(&f).unwrap();
        assert_eq!(s.cluster.voters, vec!["a", "b", "c"]);
        assert!(s.describe().contains("failover bound"));
    }

    #[test]
    fn errors_name_the_flag() {
        let cases: &[(&[&str], &str)] = &[
            (&["--node-name", "a b", "--insecure", "yes"], "--node-name"),
            (
                &[
                    "--node-name",
                    "a",
                    "--voters",
                    "a",
                    "--vip",
                    "nope",
                    "--insecure",
                    "yes",
                ],
                "--vip",
            ),
            (
                &[
                    "--node-name",
                    "a",
                    "--voters",
                    "a",
                    "--vip",
                    "10.0.0.1",
                    "--quorum",
                    "maybe",
                    "--insecure",
                    "yes",
                ],
                "--quorum",
            ),
            (
                &["--node-name", "a", "--vip", "10.0.0.1", "--insecure", "yes"],
                "--voters",
            ),
            (
                &["--node-name", "a", "--voters", "a,b,c", "--vip", "10.0.0.1"],
                "--key-file",
            ),
            (
                &[
                    "--node-name",
                    "a",
                    "--voters",
                    "a",
                    "--vip",
                    "10.0.0.1",
                    "--prefer",
                    "10.0.0.2=a",
                    "--insecure",
                    "yes",
                ],
                "--prefer",
            ),
            (
                &[
                    "--node-name",
                    "a",
                    "--voters",
                    "a",
                    "--vip-group",
                    "10.0.0.1",
                    "--insecure",
                    "yes",
                ],
                "--vip-group",
            ),
            (
                &[
                    "--node-name",
                    "a",
                    "--voters",
                    "a,b",
                    "--quorum",
                    "off",
                    "--witness",
                    "b",
                    "--vip",
                    "10.0.0.1",
                    "--insecure",
                    "yes",
                ],
                "--voters",
            ),
        ];
        for (args, flag) in cases {
            let e = Settings::from_flags(&flags(args).unwrap()).unwrap_err();
            assert!(e.to_string().starts_with(flag), "{args:?}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5h").is_err());
    }

    #[test]
    fn even_voters_warn_and_prefer_is_this_nodes_part() {
        let f = flags(&[
            "--node-name",
            "a",
            "--voters",
            "a,b",
            "--vip",
            "10.0.0.1,10.0.0.2",
            "--prefer",
            "10.0.0.2=a,10.0.0.1=b",
            "--insecure",
            "1",
        ])
        .unwrap();
        let s = Settings::from_flags(&f).unwrap();
        assert!(s.warnings.iter().any(|w| w.contains("even")));
        assert_eq!(
            s.node.prefers,
            vec![s.cluster.group_of("10.0.0.2".parse().unwrap()).unwrap()]
        );
    }
}
