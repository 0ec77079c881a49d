//! Addresses through rtnetlink, on a blocking socket owned by the kernel worker.
//!
//! VIPs are added as /32 or /128 with `valid_lft = preferred_lft = 1` (the address
//! fence, or the gate's backstop), IPv6 with `nodad` after our own probe. Every call
//! waits for the kernel's acknowledgement, so operations land in the order they are
//! issued.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, CacheInfo,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::core::config::Vip;
use crate::core::neighbours::Neighbour;

/// A netlink request the kernel refused (or a socket error).
#[derive(Debug, thiserror::Error)]
#[error("{op}: {err}")]
pub struct NlError {
    /// What was attempted.
    pub op: String,
    /// The kernel's answer.
    pub err: io::Error,
}

impl NlError {
    /// The errno, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        self.err.raw_os_error()
    }
}

fn nl_err(op: impl Into<String>, err: io::Error) -> NlError {
    NlError { op: op.into(), err }
}

/// A network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Hardware address (all zero if none).
    pub mac: [u8; 6],
    /// Administratively up.
    pub up: bool,
    /// Operationally up (`IFF_RUNNING`: up and the carrier is there).
    pub running: bool,
}

/// An address on an interface, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrInfo {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// IPv6 DAD failed on it.
    pub dad_failed: bool,
    /// IPv6 DAD still running.
    pub tentative: bool,
    /// Remaining valid lifetime, seconds (`u32::MAX` = forever).
    pub valid_lft: u32,
}

/// A blocking rtnetlink socket.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnl").finish_non_exhaustive()
    }
}

impl Rtnl {
    /// Opens the socket (in the calling thread's network namespace).
    pub fn new() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: vec![0; 1 << 16],
        })
    }

    /// Sends one request and collects the replies until the ACK or DONE.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        m.finalize();
        let mut out = vec![0u8; m.buffer_len()];
        m.serialize(&mut out);
        self.sock.send(&out, 0).map_err(|e| nl_err(op, e))?;
        let mut replies = Vec::new();
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| nl_err(op, e))?;
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| {
                        nl_err(
                            op,
                            io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        )
                    })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => {
                                Err(nl_err(op, io::Error::from_raw_os_error(-code.get())))
                            }
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if flags & NLM_F_DUMP != NLM_F_DUMP && flags & NLM_F_ACK == 0 {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every link.
    pub fn links(&mut self) -> Result<Vec<Link>, NlError> {
        let replies = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "list interfaces",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NlError> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    fn addr_message(index: u32, vip: &Vip) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = if vip.addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.prefix_len = vip.prefix_len;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(vip.addr));
        m.attributes.push(AddressAttribute::Address(vip.addr));
        m
    }

    /// Adds (or, with `replace`, re-adds: REPLACE creates a missing address) a VIP
    /// with `valid_lft = preferred_lft = lifetime_s`.
    pub fn addr_set(
        &mut self,
        index: u32,
        vip: &Vip,
        lifetime_s: u32,
        replace: bool,
        label: Option<&str>,
    ) -> Result<(), NlError> {
        self.addr_set_many(index, std::slice::from_ref(vip), lifetime_s, replace, label)
            .pop()
            .unwrap_or(Ok(()))
    }

    /// [`Rtnl::addr_set`] for several VIPs in one `sendmsg`: the kernel applies the
    /// messages in order and acknowledges each, so this is the same as one call per
    /// VIP at one system call (plus the reads of the acknowledgements) instead of
    /// two per VIP. One result per VIP, in order.
    pub fn addr_set_many(
        &mut self,
        index: u32,
        vips: &[Vip],
        lifetime_s: u32,
        replace: bool,
        label: Option<&str>,
    ) -> Vec<Result<(), NlError>> {
        if vips.is_empty() {
            return Vec::new();
        }
        let flags = NLM_F_REQUEST
            | NLM_F_ACK
            | NLM_F_CREATE
            | if replace { NLM_F_REPLACE } else { NLM_F_EXCL };
        let first = self.seq.wrapping_add(1);
        let mut out = Vec::with_capacity(vips.len() * 96);
        for vip in vips {
            let mut m = Self::addr_message(index, vip);
            let mut ci = CacheInfo::default();
            ci.ifa_valid = lifetime_s;
            ci.ifa_preferred = lifetime_s;
            m.attributes.push(AddressAttribute::CacheInfo(ci));
            if vip.addr.is_ipv6() {
                m.header.flags = AddressHeaderFlags::Nodad;
                m.attributes.push(AddressAttribute::Flags(
                    AddressFlags::Nodad | AddressFlags::Noprefixroute,
                ));
            } else if let Some(l) = label {
                m.attributes.push(AddressAttribute::Label(l.to_string()));
            }
            self.seq = self.seq.wrapping_add(1);
            let mut header = NetlinkHeader::default();
            header.flags = flags;
            header.sequence_number = self.seq;
            let mut msg = NetlinkMessage::new(
                header,
                NetlinkPayload::from(RouteNetlinkMessage::NewAddress(m)),
            );
            msg.finalize();
            let at = out.len();
            out.resize(at + msg.buffer_len(), 0);
            msg.serialize(&mut out[at..]);
        }
        let op = |i: usize| format!("add {}", vips[i]);
        let mut results: Vec<Option<Result<(), NlError>>> = (0..vips.len()).map(|_| None).collect();
        if let Err(e) = self.sock.send(&out, 0) {
            let kind = e.kind();
            return (0..vips.len())
                .map(|i| Err(nl_err(op(i), io::Error::new(kind, e.to_string()))))
                .collect();
        }
        let mut pending = vips.len();
        // Each message is acknowledged; bounded so a kernel that never answers
        // cannot hold the worker.
        for _ in 0..vips.len() + 64 {
            if pending == 0 {
                break;
            }
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n,
                Err(e) => {
                    let kind = e.kind();
                    for (i, r) in results.iter_mut().enumerate() {
                        r.get_or_insert_with(|| {
                            Err(nl_err(op(i), io::Error::new(kind, e.to_string())))
                        });
                    }
                    break;
                }
            };
            let mut off = 0;
            while off < n {
                let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                else {
                    break;
                };
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                let i = msg.header.sequence_number.wrapping_sub(first) as usize;
                if let (NetlinkPayload::Error(e), Some(slot)) = (msg.payload, results.get_mut(i))
                    && slot.is_none()
                {
                    *slot = Some(match e.code {
                        None => Ok(()),
                        Some(code) => Err(nl_err(op(i), io::Error::from_raw_os_error(-code.get()))),
                    });
                    pending -= 1;
                }
            }
        }
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| Err(nl_err(op(i), io::Error::other("no acknowledgement"))))
            })
            .collect()
    }

    /// Deletes a VIP. `Ok(false)` if it was not there.
    pub fn addr_del(&mut self, index: u32, vip: &Vip) -> Result<bool, NlError> {
        let m = Self::addr_message(index, vip);
        match self.request(
            RouteNetlinkMessage::DelAddress(m),
            NLM_F_ACK,
            &format!("delete {vip}"),
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc_eaddrnotavail()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Addresses on interface `index`.
    pub fn addrs(&mut self, index: u32) -> Result<Vec<AddrInfo>, NlError> {
        let replies = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            "list addresses",
        )?;
        let mut out = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.index != index {
                continue;
            }
            let mut addr = None;
            let mut flags = AddressFlags::empty();
            let mut valid = u32::MAX;
            for at in &a.attributes {
                match at {
                    AddressAttribute::Local(ip) => addr = Some(*ip),
                    AddressAttribute::Address(ip) if addr.is_none() => addr = Some(*ip),
                    AddressAttribute::Flags(f) => flags = *f,
                    AddressAttribute::CacheInfo(c) => valid = c.ifa_valid,
                    _ => {}
                }
            }
            if let Some(addr) = addr {
                out.push(AddrInfo {
                    addr,
                    prefix_len: a.header.prefix_len,
                    dad_failed: flags.contains(AddressFlags::Dadfailed),
                    tentative: flags.contains(AddressFlags::Tentative),
                    valid_lft: valid,
                });
            }
        }
        Ok(out)
    }
}

impl Rtnl {
    /// The neighbour-cache entries of interface `index` that name a live host:
    /// reachable, stale or delay, with a MAC (IPv4 ARP and IPv6 ND).
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<Neighbour>, NlError> {
        use netlink_packet_route::neighbour::{
            NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
        };
        let replies = self.request(
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
            NLM_F_DUMP,
            "list neighbours",
        )?;
        let mut out = Vec::new();
        for m in replies {
            let RouteNetlinkMessage::NewNeighbour(n) = m else {
                continue;
            };
            if n.header.ifindex != index
                || !matches!(
                    n.header.state,
                    NeighbourState::Reachable | NeighbourState::Stale | NeighbourState::Delay
                )
            {
                continue;
            }
            let mut ip = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                        ip = Some(IpAddr::V4(*v))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                        ip = Some(IpAddr::V6(*v))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        let mut m = [0u8; 6];
                        m.copy_from_slice(l);
                        mac = Some(m);
                    }
                    _ => {}
                }
            }
            if let (Some(ip), Some(mac)) = (ip, mac) {
                out.push(Neighbour { ip, mac });
            }
        }
        Ok(out)
    }
}

fn libc_eaddrnotavail() -> i32 {
    nix::errno::Errno::EADDRNOTAVAIL as i32
}

fn link_of(l: &LinkMessage) -> Link {
    let mut name = String::new();
    let mut mac = [0u8; 6];
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(m) if m.len() == 6 => mac.copy_from_slice(m),
            _ => {}
        }
    }
    Link {
        index: l.header.index,
        name,
        mac,
        up: l.header.flags.contains(LinkFlags::Up),
        running: l.header.flags.contains(LinkFlags::Running),
    }
}

/// rtnetlink's multicast group for link changes (`RTNLGRP_LINK`).
const RTNLGRP_LINK: u32 = 1;

/// A non-blocking socket subscribed to link notifications (`RTM_NEWLINK`,
/// `RTM_DELLINK`): the shell waits on it and, when it becomes readable, resolves its
/// interface by name again. Links change rarely, so this costs no wake-ups at idle.
pub struct LinkWatch {
    sock: Socket,
    buf: Vec<u8>,
}

impl std::fmt::Debug for LinkWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkWatch").finish_non_exhaustive()
    }
}

impl LinkWatch {
    /// Subscribes (in the calling thread's network namespace).
    pub fn open() -> io::Result<LinkWatch> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.add_membership(RTNLGRP_LINK)?;
        sock.set_non_blocking(true)?;
        Ok(LinkWatch {
            sock,
            buf: vec![0; 1 << 16],
        })
    }

    /// Reads every queued notification; whether there was any (an overrun counts:
    /// some were lost, so the caller must look again).
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        for _ in 0..1024 {
            match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // ENOBUFS: notifications were dropped; look again anyway.
                    any = true;
                }
            }
        }
        any
    }
}

impl std::os::fd::AsRawFd for LinkWatch {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }
}
