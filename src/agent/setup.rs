//! Start-up: everything that can fail is checked before any kernel state is touched
//! (flags, interface, the VIPs' fit on it, privileges, the host lock, the UDP and
//! HTTP ports), and each failure maps to an exit code.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use crate::addr::arp;
use crate::addr::rtnl::Rtnl;
use crate::cli::{OpsOptions, Settings};
use crate::core::config::FenceKind;

/// How start-up failed; each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag names something that does not exist (exit 64).
    #[error("{0}")]
    Usage(String),
    /// Missing privilege (exit 77).
    #[error("{0}")]
    Permission(String),
    /// A needed facility is missing or busy (exit 69).
    #[error("{0}")]
    Unavailable(String),
}

impl StartError {
    /// The process exit code (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Usage(_) => 64,
            StartError::Permission(_) => 77,
            StartError::Unavailable(_) => 69,
        }
    }
}

/// Options of the shell that the core does not see.
#[derive(Clone, Debug)]
pub struct ShellOptions {
    /// Gratuitous ARP / NA packets per announcement.
    pub garp_count: u32,
    /// Spacing of those packets.
    pub garp_interval: Duration,
    /// Re-announce held VIPs this often (zero: never).
    pub garp_refresh: Duration,
    /// Directed notifications after each announcement.
    pub notify: NotifyOptions,
    /// Secrets for the envelope (empty with `--insecure`).
    pub secrets: Vec<Vec<u8>>,
    /// Metrics, status API, health checks and hooks.
    pub ops: OpsOptions,
    /// The log filter (`--log`).
    pub log: String,
    /// The log format (`--log-format`).
    pub log_format: String,
}

/// Who is told directly, besides the broadcast announcements, when this node binds
/// a VIP (`--notify`, `--notify-rate`, `--notify-neighbours`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyOptions {
    /// Addresses that get an ARP reply for every IPv4 VIP (of the named interface
    /// only, when one is given).
    pub targets: Vec<(Option<String>, std::net::Ipv4Addr)>,
    /// Most directed frames per second per interface (0: no limit).
    pub rate: u32,
    /// Share neighbour caches and send unicast replies to every known neighbour.
    pub neighbours: bool,
    /// How often the neighbour caches are sampled and shared.
    pub interval: Duration,
}

pub(super) fn map_io(what: &str, e: io::Error) -> StartError {
    match e.kind() {
        io::ErrorKind::PermissionDenied => StartError::Permission(format!(
            "{what}: permission denied; run as root or grant CAP_NET_ADMIN and CAP_NET_RAW"
        )),
        io::ErrorKind::AddrInUse => StartError::Unavailable(format!("{what}: address in use")),
        _ if e.raw_os_error() == Some(nix::errno::Errno::EPERM as i32) => {
            StartError::Permission(format!(
                "{what}: operation not permitted; run as root or grant CAP_NET_ADMIN and CAP_NET_RAW"
            ))
        }
        _ => StartError::Unavailable(format!("{what}: {e}")),
    }
}

/// Changes the log filter of the running process (a reload's `--log`).
pub type SetLogFilter = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// What a reload needs: the command line to read again and the log filter's handle.
pub struct Reloading {
    /// The arguments (and so the config file) the agent was started with.
    pub source: crate::cli::load::Source,
    /// Sets the log filter, when the logger supports it.
    pub set_log: Option<SetLogFilter>,
}

/// Everything acquired at start-up, before the engine runs.
pub struct Prepared {
    pub(super) reloading: Option<Reloading>,
    pub(super) settings: Settings,
    pub(super) opts: ShellOptions,
    pub(super) socket: std::net::UdpSocket,
    /// The address peers reach the socket at (this node's gossip identity).
    pub(super) advertise: SocketAddr,
    /// Where that address came from, for the log.
    pub(super) advertise_source: String,
    pub(super) lock: UnixListener,
    pub(super) http: Option<std::net::TcpListener>,
    /// The interfaces the VIPs live on, with their indices at start (the default
    /// interface first when there is one).
    pub(super) links: Vec<(String, Option<u32>)>,
}

impl Prepared {
    /// Lets SIGHUP, `wackamole reload` and `POST /reload` re-read `source`.
    pub fn with_reload(mut self, reloading: Reloading) -> Prepared {
        self.reloading = Some(reloading);
        self
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

/// Whether `x` and `y` are in the same `/p` subnet (same family).
pub(super) fn same_subnet(x: IpAddr, y: IpAddr, p: u8) -> bool {
    match (x, y) {
        (IpAddr::V4(x), IpAddr::V4(y)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(p.min(32))).unwrap_or(0);
            u32::from(x) & mask == u32::from(y) & mask
        }
        (IpAddr::V6(x), IpAddr::V6(y)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(p.min(128)))
                .unwrap_or(0);
            u128::from(x) & mask == u128::from(y) & mask
        }
        _ => false,
    }
}

/// The permanent addresses of interface `ifname` (what a VIP must not be, and the
/// subnets and families it must fit).
pub(super) fn own_addrs(ifname: &str) -> Result<Vec<(IpAddr, u8)>, String> {
    let mut rtnl = Rtnl::new().map_err(|e| format!("netlink: {e}"))?;
    let link = rtnl
        .link(ifname)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no interface named {ifname:?}"))?;
    Ok(rtnl
        .addrs(link.index)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|a| a.valid_lft == u32::MAX)
        .map(|a| (a.addr, a.prefix_len))
        .collect())
}

/// Whether `vip` fits the interface whose permanent addresses are `own`.
pub(super) fn check_vip_on_link(
    vip: IpAddr,
    ifname: &str,
    own: &[(IpAddr, u8)],
) -> Result<(), String> {
    if own.iter().any(|(a, _)| *a == vip) {
        return Err(format!(
            "--vip: {vip} is a permanent address of {ifname}; a VIP must not be a node address"
        ));
    }
    for (a, p) in own {
        if a.is_ipv4() != vip.is_ipv4() {
            continue;
        }
        if same_subnet(vip, *a, *p)
            && let Some(what) = crate::core::config::subnet_edge(vip, *p)
        {
            return Err(format!(
                "--vip: {vip} is the {what} address of {ifname}'s subnet {a}/{p}; pick a host address"
            ));
        }
    }
    let family = |v4: bool| own.iter().any(|(a, _)| a.is_ipv4() == v4);
    if !family(vip.is_ipv4()) {
        return Err(if vip.is_ipv4() {
            format!(
                "--vip: {vip} is IPv4 but {ifname} has no IPv4 address; give {ifname} one or use an IPv6 VIP"
            )
        } else {
            format!(
                "--vip: {vip} is IPv6 but {ifname} has no IPv6 address (is IPv6 disabled on it?); enable IPv6 on {ifname} or use an IPv4 VIP"
            )
        });
    }
    Ok(())
}

/// The address peers reach this node's socket (bound at `bound`) at, and where it
/// came from: `--advertise`; else `--bind`'s IP when it names one; else the source
/// address the kernel routes from toward the first `--join` address of the socket's
/// family (the node's address on the cluster's network, also when the list names
/// this node itself; a loopback one only if no other route is found); else the
/// first permanent address of the VIPs' interface `link` (not link-local). Never a
/// pool VIP. The port is `--advertise`'s or the socket's.
///
/// A socket bound to an unspecified address used to take that address as its
/// identity, so that every peer sent to `0.0.0.0:7946` — itself: with the default
/// `--bind` no cluster ever formed.
pub(super) fn advertise_addr(
    settings: &Settings,
    bound: SocketAddr,
    link: Option<&(String, Option<u32>)>,
) -> Result<(SocketAddr, String), StartError> {
    let v4 = bound.is_ipv4();
    let port = |p: Option<u16>| p.unwrap_or(bound.port());
    if let Some(a) = settings.advertise {
        return Ok((SocketAddr::new(a.ip, port(a.port)), "--advertise".into()));
    }
    if !bound.ip().is_unspecified() {
        return Ok((bound, "--bind".into()));
    }
    let unspecified: IpAddr = if v4 {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    // A loopback route (a --join of 127.0.0.1) serves only agents on one host: any
    // other --join's route comes first.
    let mut loopback = None;
    for j in settings.join.iter().filter(|j| j.is_ipv4() == v4) {
        let routed = std::net::UdpSocket::bind(SocketAddr::new(unspecified, 0))
            .and_then(|s| s.connect(j).and_then(|()| s.local_addr()));
        match routed {
            // A stale VIP of an earlier run (not yet flushed) is never this node's
            // address, whatever the kernel's source selection says.
            Ok(a) if !a.ip().is_unspecified() && settings.cluster.group_of(a.ip()).is_none() => {
                let found = (
                    SocketAddr::new(a.ip(), bound.port()),
                    format!("the route to --join {j}"),
                );
                if !a.ip().is_loopback() {
                    return Ok(found);
                }
                loopback.get_or_insert(found);
            }
            _ => continue,
        }
    }
    if let Some(found) = loopback {
        return Ok(found);
    }
    if let Some((ifname, Some(index))) = link {
        let mut rtnl = Rtnl::new().map_err(|e| map_io("netlink", e))?;
        let own = rtnl
            .addrs(*index)
            .map_err(|e| StartError::Unavailable(e.to_string()))?;
        if let Some(a) = own.iter().find(|a| {
            a.valid_lft == u32::MAX
                && a.addr.is_ipv4() == v4
                && settings.cluster.group_of(a.addr).is_none()
                && !matches!(a.addr, IpAddr::V6(x) if x.is_unicast_link_local())
        }) {
            return Ok((
                SocketAddr::new(a.addr, bound.port()),
                format!("the first address of {ifname}"),
            ));
        }
    }
    Err(StartError::Unavailable(format!(
        "--bind {}: cannot tell which address peers reach this node at (no route to a --join address, no {} address on the VIPs' interface); give --bind IP:PORT or --advertise IP",
        settings.bind,
        if v4 { "IPv4" } else { "IPv6" }
    )))
}

/// Checks everything that can fail before any kernel state is touched: the
/// interface, the address family of each VIP, privileges, the host lock (one agent
/// per node name per network namespace), and the UDP port.
pub fn prepare(settings: Settings, opts: ShellOptions) -> Result<Prepared, StartError> {
    let homes = &settings.homes;
    let homeless = homes.homeless(&settings.cluster.groups);
    if homes.default.is_none() && (!homeless.is_empty() || settings.cluster.groups.is_empty()) {
        return Err(StartError::Usage(match homeless.first() {
            Some(a) => format!(
                "--interface: required to run ({a} has no interface: give --interface, the default, or write it IF:{a})"
            ),
            None => "--interface: required to run (the interface the VIPs live on)".into(),
        }));
    }
    let mut names = homes.interfaces(&settings.cluster.groups);
    if let Some(d) = &homes.default {
        names.retain(|n| n != d);
        names.insert(0, d.clone());
    }
    let mut rtnl = Rtnl::new().map_err(|e| map_io("netlink", e))?;
    let mut links = Vec::new();
    let mut privileged = false;
    for ifname in &names {
        let flag = if Some(ifname) == homes.default.as_ref() {
            "--interface"
        } else {
            "--vip"
        };
        let Some(link) = rtnl
            .link(ifname)
            .map_err(|e| StartError::Unavailable(e.to_string()))?
        else {
            if !settings.dynamic_interfaces {
                return Err(StartError::Usage(format!(
                    "{flag}: no interface named {ifname:?} in this network namespace (--dynamic-interfaces waits for it)"
                )));
            }
            // Not there yet: a VLAN, bond or container link made after the agent
            // starts. Its VIPs wait for it, as they do for one deleted under a
            // running agent: this node is unable to hold them until it appears.
            tracing::warn!(
                "{flag}: no interface named {ifname:?} in this network namespace (yet): this node holds none of its VIPs until it appears; check the name if it is not expected to"
            );
            links.push((ifname.clone(), None));
            continue;
        };
        // A VIP must not be one of its interface's own addresses, nor the network
        // or broadcast address of one of its subnets, and the interface must speak
        // the VIP's family.
        let own: Vec<(IpAddr, u8)> = rtnl
            .addrs(link.index)
            .map_err(|e| StartError::Unavailable(e.to_string()))?
            .into_iter()
            .filter(|a| a.valid_lft == u32::MAX)
            .map(|a| (a.addr, a.prefix_len))
            .collect();
        for g in &settings.cluster.groups {
            for v in &g.vips {
                if homes.iface(v.addr) == Some(ifname.as_str()) {
                    check_vip_on_link(v.addr, ifname, &own).map_err(StartError::Usage)?;
                }
            }
        }
        // Privileges: raw sockets (ARP) need CAP_NET_RAW; address changes
        // CAP_NET_ADMIN.
        arp::Link::open(ifname).map_err(|e| map_io(&format!("raw socket on {ifname}"), e))?;
        privileged = true;
        links.push((ifname.clone(), Some(link.index)));
    }
    if !privileged && !links.is_empty() {
        // No VIP interface to try a raw socket on: an unbound one needs the same
        // capability (it closes when the returned fd drops).
        nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Packet,
            nix::sys::socket::SockType::Raw,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| map_io("raw socket", io::Error::from(e)))?;
    }
    if settings.cluster.fence == FenceKind::Gate {
        match std::process::Command::new("nft").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            _ => return Err(StartError::Unavailable("`nft` (nftables) is not installed: install it, or run with --fence address (slower failover)".into())),
        }
    }
    let lock_name = format!(
        "wackamole-{:016x}-{}",
        settings.cluster.cluster_id(),
        settings.node.name
    );
    let lock = std::os::unix::net::SocketAddr::from_abstract_name(lock_name.as_bytes())
        .and_then(|a| UnixListener::bind_addr(&a))
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                StartError::Unavailable(format!(
                    "another agent named {} already runs here (host lock @{lock_name})",
                    settings.node.name
                ))
            } else {
                map_io("host lock", e)
            }
        })?;
    let socket = std::net::UdpSocket::bind(settings.bind)
        .map_err(|e| map_io(&format!("--bind {}", settings.bind), e))?;
    let bound = socket
        .local_addr()
        .map_err(|e| map_io(&format!("--bind {}", settings.bind), e))?;
    let (advertise, source) = advertise_addr(&settings, bound, links.first())?;
    socket
        .set_nonblocking(true)
        .map_err(|e| map_io("socket", e))?;
    let http = match opts.ops.listen {
        Some(a) => {
            let l = std::net::TcpListener::bind(a)
                .map_err(|e| map_io(&format!("--metrics-addr {a}"), e))?;
            l.set_nonblocking(true).map_err(|e| map_io("listener", e))?;
            Some(l)
        }
        None => None,
    };
    Ok(Prepared {
        reloading: None,
        settings,
        opts,
        socket,
        advertise,
        advertise_source: source,
        lock,
        http,
        links,
    })
}
