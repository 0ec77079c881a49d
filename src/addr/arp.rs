//! ARP and neighbour discovery: the probe before a bind, the announcements after.
//!
//! * **Probe** (RFC 5227-style, shortened for sub-second failover, as the safety
//!   review suggests): two ARP probes (sender address 0.0.0.0) 10 ms apart, or for
//!   IPv6 two DAD-style neighbour solicitations from `::`, then listen until the
//!   wait ends. Any ARP packet or neighbour advertisement claiming the VIP from
//!   another MAC is a conflict: someone still answers, do not bind. A silent probe
//!   proves nothing (packets get lost); it is not part of the safety argument.
//! * **Announce**: gratuitous ARP in both forms (request, and reply with
//!   THA = SHA, which bypasses the neighbour `locktime`), or an unsolicited
//!   neighbour advertisement (override flag, target link-layer option, hop limit
//!   255); a burst of `count` packets `interval` apart. Directed replies go to the
//!   `--notify` list too.
//!
//! pnet's calls block, so all of this runs on one dedicated thread.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use pnet::datalink::{
    self, Channel, Config, DataLinkReceiver, DataLinkSender, MacAddr, NetworkInterface,
};
use pnet::packet::Packet;
use pnet::packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet::packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet::packet::icmpv6::ndp::{
    MutableNeighborAdvertPacket, MutableNeighborSolicitPacket, NdpOption, NdpOptionTypes,
    NeighborAdvertFlags, NeighborAdvertPacket,
};
use pnet::packet::icmpv6::{Icmpv6Code, Icmpv6Packet, Icmpv6Types, checksum};
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv6::{Ipv6Packet, MutableIpv6Packet};

/// A raw link-layer endpoint on one interface.
pub struct Link {
    mac: MacAddr,
    tx: Box<dyn DataLinkSender>,
    rx: Box<dyn DataLinkReceiver>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

fn multicast_mac(a: Ipv6Addr) -> MacAddr {
    let o = a.octets();
    MacAddr::new(0x33, 0x33, o[12], o[13], o[14], o[15])
}

impl Link {
    /// Opens interface `name` (needs CAP_NET_RAW). Promiscuous mode stays off.
    pub fn open(name: &str) -> io::Result<Link> {
        let iface: NetworkInterface = datalink::interfaces()
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no interface {name:?}"))
            })?;
        let mac = iface
            .mac
            .ok_or_else(|| io::Error::other(format!("{name} has no MAC address")))?;
        let cfg = Config {
            promiscuous: false,
            read_timeout: Some(Duration::from_millis(5)),
            ..Config::default()
        };
        match datalink::channel(&iface, cfg)? {
            Channel::Ethernet(tx, rx) => Ok(Link { mac, tx, rx }),
            _ => Err(io::Error::other("unsupported channel type")),
        }
    }

    /// This interface's MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac.octets()
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        match self.tx.send_to(frame, None) {
            Some(r) => r,
            None => Err(io::Error::other("frame too large for the send buffer")),
        }
    }

    fn arp(
        &mut self,
        op: pnet::packet::arp::ArpOperation,
        eth_dst: MacAddr,
        sha: MacAddr,
        spa: Ipv4Addr,
        tha: MacAddr,
        tpa: Ipv4Addr,
    ) -> io::Result<()> {
        let mut buf = [0u8; 42];
        {
            let mut eth = MutableEthernetPacket::new(&mut buf).expect("42 ≥ 14");
            eth.set_destination(eth_dst);
            eth.set_source(self.mac);
            eth.set_ethertype(EtherTypes::Arp);
        }
        {
            let mut arp = MutableArpPacket::new(&mut buf[14..]).expect("28 bytes");
            arp.set_hardware_type(ArpHardwareTypes::Ethernet);
            arp.set_protocol_type(EtherTypes::Ipv4);
            arp.set_hw_addr_len(6);
            arp.set_proto_addr_len(4);
            arp.set_operation(op);
            arp.set_sender_hw_addr(sha);
            arp.set_sender_proto_addr(spa);
            arp.set_target_hw_addr(tha);
            arp.set_target_proto_addr(tpa);
        }
        self.send(&buf)
    }

    fn icmp6(
        &mut self,
        eth_dst: MacAddr,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        body: &[u8],
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 14 + 40 + body.len()];
        {
            let mut eth = MutableEthernetPacket::new(&mut buf).expect("large enough");
            eth.set_destination(eth_dst);
            eth.set_source(self.mac);
            eth.set_ethertype(EtherTypes::Ipv6);
        }
        {
            let mut ip = MutableIpv6Packet::new(&mut buf[14..]).expect("large enough");
            ip.set_version(6);
            ip.set_payload_length(body.len() as u16);
            ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
            ip.set_hop_limit(255);
            ip.set_source(src);
            ip.set_destination(dst);
        }
        buf[54..].copy_from_slice(body);
        let cs = checksum(&Icmpv6Packet::new(&buf[54..]).expect("icmpv6"), &src, &dst);
        buf[56..58].copy_from_slice(&cs.to_be_bytes());
        self.send(&buf)
    }

    /// A neighbour advertisement for `target` at our MAC, with the override flag.
    fn na_body(&self, target: Ipv6Addr) -> Vec<u8> {
        let mut body = vec![0u8; 32];
        {
            let mut na = MutableNeighborAdvertPacket::new(&mut body).expect("32 bytes");
            na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
            na.set_icmpv6_code(Icmpv6Code(0));
            na.set_flags(NeighborAdvertFlags::Override);
            na.set_target_addr(target);
            na.set_options(&[NdpOption {
                option_type: NdpOptionTypes::TargetLLAddr,
                length: 1,
                data: self.mac.octets().to_vec(),
            }]);
        }
        body
    }

    /// Gratuitous ARP (request and reply) or an unsolicited NA, once.
    pub fn announce_once(&mut self, vip: IpAddr) -> io::Result<()> {
        match vip {
            IpAddr::V4(v) => {
                let me = self.mac;
                self.arp(
                    ArpOperations::Request,
                    MacAddr::broadcast(),
                    me,
                    v,
                    MacAddr::zero(),
                    v,
                )?;
                self.arp(ArpOperations::Reply, MacAddr::broadcast(), me, v, me, v)
            }
            IpAddr::V6(v) => {
                let body = self.na_body(v);
                let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                self.icmp6(MacAddr::new(0x33, 0x33, 0, 0, 0, 1), v, all, &body)
            }
        }
    }

    /// A unicast reply to a known neighbour (`ip` at `mac`) that `vip` is at our
    /// MAC: an ARP reply addressed to it (IPv4), or a neighbour advertisement with
    /// the override flag (IPv6). A host that ignores gratuitous ARP believes this:
    /// it is a reply, to its own address, on its own MAC.
    pub fn tell(&mut self, vip: IpAddr, ip: IpAddr, mac: [u8; 6]) -> io::Result<()> {
        let to = MacAddr::from(mac);
        match (vip, ip) {
            (IpAddr::V4(v), IpAddr::V4(t)) => {
                let me = self.mac;
                self.arp(ArpOperations::Reply, to, me, v, to, t)
            }
            (IpAddr::V6(v), IpAddr::V6(t)) => {
                let body = self.na_body(v);
                self.icmp6(to, v, t, &body)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a VIP and a neighbour of different families",
            )),
        }
    }

    /// A directed ARP reply telling `target` (an address on the LAN whose MAC we do
    /// not know, so it goes to broadcast) that `vip` is at our MAC.
    pub fn notify(&mut self, vip: Ipv4Addr, target: Ipv4Addr) -> io::Result<()> {
        let me = self.mac;
        self.arp(
            ArpOperations::Reply,
            MacAddr::broadcast(),
            me,
            vip,
            MacAddr::broadcast(),
            target,
        )
    }

    fn send_probe(&mut self, vip: IpAddr) -> io::Result<()> {
        match vip {
            IpAddr::V4(v) => {
                let me = self.mac;
                self.arp(
                    ArpOperations::Request,
                    MacAddr::broadcast(),
                    me,
                    Ipv4Addr::UNSPECIFIED,
                    MacAddr::zero(),
                    v,
                )
            }
            IpAddr::V6(v) => {
                let mut body = vec![0u8; 24];
                {
                    let mut ns = MutableNeighborSolicitPacket::new(&mut body).expect("24 bytes");
                    ns.set_icmpv6_type(Icmpv6Types::NeighborSolicit);
                    ns.set_icmpv6_code(Icmpv6Code(0));
                    ns.set_target_addr(v);
                }
                let dst = solicited_node(v);
                self.icmp6(multicast_mac(dst), Ipv6Addr::UNSPECIFIED, dst, &body)
            }
        }
    }

    /// Whether `frame` claims one of `vips` from a MAC other than `me`; returns its index.
    fn claims(me: MacAddr, frame: &[u8], vips: &[IpAddr]) -> Option<usize> {
        let eth = EthernetPacket::new(frame)?;
        if eth.get_source() == me {
            return None;
        }
        match eth.get_ethertype() {
            EtherTypes::Arp => {
                let arp = ArpPacket::new(eth.payload())?;
                let spa = IpAddr::V4(arp.get_sender_proto_addr());
                if arp.get_sender_hw_addr() == me {
                    return None;
                }
                vips.iter().position(|v| *v == spa)
            }
            EtherTypes::Ipv6 => {
                let ip = Ipv6Packet::new(eth.payload())?;
                if ip.get_next_header() != IpNextHeaderProtocols::Icmpv6 {
                    return None;
                }
                let na = NeighborAdvertPacket::new(ip.payload())?;
                if na.get_icmpv6_type() != Icmpv6Types::NeighborAdvert {
                    return None;
                }
                let t = IpAddr::V6(na.get_target_addr());
                vips.iter().position(|v| *v == t)
            }
            _ => None,
        }
    }

    /// Probes all `vips` at once: two probes each, 10 ms apart, then listens until
    /// `wait` has passed. Returns, per VIP, whether another MAC claimed it.
    pub fn probe(&mut self, vips: &[IpAddr], wait: Duration) -> io::Result<Vec<bool>> {
        Ok(probe_links(&mut [(self, vips)], wait)?
            .pop()
            .unwrap_or_default())
    }

    /// Reads one frame (waiting at most the read timeout) and marks the VIP it
    /// claims, if any.
    fn listen_once(&mut self, vips: &[IpAddr], conflict: &mut [bool]) -> io::Result<()> {
        let me = self.mac;
        match self.rx.next() {
            Ok(frame) => {
                if let Some(i) = Self::claims(me, frame, vips) {
                    conflict[i] = true;
                }
                Ok(())
            }
            Err(e)
                if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Asks who has `target` (a normal ARP request from `sender`), as a client does.
    pub fn who_has(&mut self, sender: Ipv4Addr, target: Ipv4Addr) -> io::Result<()> {
        let me = self.mac;
        self.arp(
            ArpOperations::Request,
            MacAddr::broadcast(),
            me,
            sender,
            MacAddr::zero(),
            target,
        )
    }

    /// A neighbour solicitation for `target` from `src`, with our link-layer address.
    pub fn solicit(&mut self, src: Ipv6Addr, target: Ipv6Addr) -> io::Result<()> {
        let mut body = vec![0u8; 32];
        {
            let mut ns = MutableNeighborSolicitPacket::new(&mut body).expect("32 bytes");
            ns.set_icmpv6_type(Icmpv6Types::NeighborSolicit);
            ns.set_icmpv6_code(Icmpv6Code(0));
            ns.set_target_addr(target);
            ns.set_options(&[NdpOption {
                option_type: NdpOptionTypes::SourceLLAddr,
                length: 1,
                data: self.mac.octets().to_vec(),
            }]);
        }
        let dst = solicited_node(target);
        self.icmp6(multicast_mac(dst), src, dst, &body)
    }

    /// Collects (address, MAC) of the ARP replies and neighbour advertisements that
    /// answer our requests (a unicast reply to our MAC; an NA with the solicited
    /// flag), received until `until`. Announcements — gratuitous ARP, unsolicited
    /// NA — are not answers: a new holder's announcement and the old holder's reply
    /// to an earlier request can share one window without anyone answering twice.
    pub fn answers(&mut self, until: Instant) -> io::Result<Vec<(IpAddr, [u8; 6])>> {
        let mut out = Vec::new();
        let me = self.mac;
        while Instant::now() < until {
            match self.rx.next() {
                Ok(frame) => {
                    let Some(eth) = EthernetPacket::new(frame) else {
                        continue;
                    };
                    if eth.get_source() == me {
                        continue;
                    }
                    let src = eth.get_source().octets();
                    match eth.get_ethertype() {
                        EtherTypes::Arp => {
                            if let Some(arp) = ArpPacket::new(eth.payload())
                                && arp.get_operation() == ArpOperations::Reply
                                && arp.get_target_hw_addr() == me
                                && arp.get_target_proto_addr() != arp.get_sender_proto_addr()
                            {
                                out.push((
                                    IpAddr::V4(arp.get_sender_proto_addr()),
                                    arp.get_sender_hw_addr().octets(),
                                ));
                            }
                        }
                        EtherTypes::Ipv6 => {
                            let Some(ip) = Ipv6Packet::new(eth.payload()) else {
                                continue;
                            };
                            if ip.get_next_header() != IpNextHeaderProtocols::Icmpv6 {
                                continue;
                            }
                            if let Some(na) = NeighborAdvertPacket::new(ip.payload())
                                && na.get_icmpv6_type() == Icmpv6Types::NeighborAdvert
                                && na.get_flags() & NeighborAdvertFlags::Solicited != 0
                            {
                                out.push((IpAddr::V6(na.get_target_addr()), src));
                            }
                        }
                        _ => {}
                    }
                }
                Err(e)
                    if e.kind() == io::ErrorKind::TimedOut
                        || e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Discards frames queued on the receive side (it sees every frame of the
    /// interface; between probes nobody reads it).
    pub fn drain(&mut self) {
        let until = Instant::now() + Duration::from_millis(2);
        while Instant::now() < until {
            if self.rx.next().is_err() {
                break;
            }
        }
    }
}

/// Probes on several interfaces in one window: each link its own addresses, two
/// probes each 10 ms apart, then every link is listened to until `wait` has passed.
/// Returns, per link and VIP, whether another MAC claimed it.
pub fn probe_links(
    set: &mut [(&mut Link, &[IpAddr])],
    wait: Duration,
) -> io::Result<Vec<Vec<bool>>> {
    let mut conflict: Vec<Vec<bool>> = set.iter().map(|(_, v)| vec![false; v.len()]).collect();
    let start = Instant::now();
    let second = start + Duration::from_millis(10);
    let mut sent_second = false;
    for (l, vips) in set.iter_mut() {
        for v in vips.iter() {
            l.send_probe(*v)?;
        }
    }
    loop {
        let now = Instant::now();
        if !sent_second && now >= second {
            for (l, vips) in set.iter_mut() {
                for v in vips.iter() {
                    l.send_probe(*v)?;
                }
            }
            sent_second = true;
        }
        if now >= start + wait {
            break;
        }
        for ((l, vips), c) in set.iter_mut().zip(conflict.iter_mut()) {
            l.listen_once(vips, c)?;
        }
    }
    Ok(conflict)
}
