//! The gate (DESIGN §2.4): an nftables table owned by the agent that stops a VIP from
//! being answered unless it is in the `live` set, whose elements time out E after
//! their last write.
//!
//! Table names (for `nft list ruleset`):
//!
//! * `table arp wackamole` — chain `out` drops every ARP packet whose sender address
//!   is a pool VIP not in `live4`, or that leaves by another interface than the one
//!   the VIP lives on (`home4`, `ifname . ipv4_addr`); chain `in` the same for ARP
//!   asking for a pool VIP, so a multi-homed node answers ARP for a VIP only on its
//!   own interface (no "ARP flux"). IPv6 needs no such set: Linux answers a
//!   neighbour solicitation only on the interface that has the address.
//! * `table inet wackamole` — chain `in` drops traffic to pool VIPs not in
//!   `live4`/`live6`; chain `out` drops traffic from them. That covers neighbour
//!   advertisements: Linux sends an NA for a local address with that address as
//!   its source.
//! * Sets: `pool4`, `pool6` (the configured VIPs), `live4`, `live6` (timeout E),
//!   `armed4`, `armed6` (timeout A, consumed by a bind's go-live batch). The arp
//!   table has its own `pool4`/`live4`/`armed4`; every write goes to both tables in
//!   the same batch.
//!
//! The table is created once with the `nft` binary. Element writes go through one
//! netlink batch each, from Rust (no process per refresh): a refresh is
//! "delete element; add element timeout E", which fails as a whole — re-creating
//! nothing — when the element already expired. A bind's go-live is "delete armed
//! element; add live element", which fails if the arm expired.

use std::io::{self, Write as _};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// Table name in both families.
pub const TABLE: &str = "wackamole";

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_GETSET: u16 = 10;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NFPROTO_INET: u8 = 1;
const NFPROTO_ARP: u8 = 3;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_MULTI: u16 = 2;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_CREATE: u16 = 0x400;

/// Most elements in one netlink message (its element list is one attribute, whose
/// length is 16 bits: about 44 bytes per element).
const MAX_ELEMS_PER_MSG: usize = 512;

/// Which set of the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateSet {
    /// VIPs that may be answered (timeout E).
    Live,
    /// Bind permission (timeout A), consumed by go-live.
    Armed,
    /// The pool: VIPs the gate closes over (no timeout).
    Pool,
}

impl GateSet {
    fn name(self, v6: bool) -> &'static str {
        match (self, v6) {
            (GateSet::Live, false) => "live4",
            (GateSet::Live, true) => "live6",
            (GateSet::Armed, false) => "armed4",
            (GateSet::Armed, true) => "armed6",
            (GateSet::Pool, false) => "pool4",
            (GateSet::Pool, true) => "pool6",
        }
    }
}

/// One element operation inside a batch.
#[derive(Clone, Debug)]
pub enum ElemOp {
    /// Delete the element (fails the batch if absent).
    Del(GateSet, IpAddr),
    /// Add the element with a timeout.
    Add(GateSet, IpAddr, Duration),
    /// Add the element without a timeout (the pool sets); present already is fine.
    Insert(GateSet, IpAddr),
}

/// How a batch ended.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// An element to delete was not there (expired): nothing was changed.
    #[error("gate element expired")]
    Expired,
    /// The kernel refused for another reason, or the socket failed.
    #[error("gate: {0}")]
    Io(#[from] io::Error),
}

struct Nla(Vec<u8>);

impl Nla {
    fn new() -> Nla {
        Nla(Vec::with_capacity(128))
    }

    fn put(&mut self, ty: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(payload);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    fn put_str(&mut self, ty: u16, s: &str) {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.put(ty, &b);
    }

    fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Nla)) {
        let start = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        f(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

fn nlmsg(buf: &mut Vec<u8>, ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) {
    let len = 16 + 4 + attrs.len();
    buf.extend_from_slice(&(len as u32).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend_from_slice(&res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// The nftables side of the gate, on a blocking netfilter socket.
pub struct Gate {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

/// `"eth1" . 192.0.2.5`: an element of `home4`.
fn home_elem(addr: IpAddr, ifname: &str) -> String {
    format!("\"{}\" . {addr}", ifname.replace(['"', '\\'], ""))
}

/// The ruleset that creates the gate for these VIPs, each with the interface it
/// lives on (applied with `nft -f -`).
pub fn ruleset(vips: &[(IpAddr, &str)], e: Duration, a: Duration) -> String {
    let v4: Vec<String> = vips
        .iter()
        .filter(|v| v.0.is_ipv4())
        .map(|v| v.0.to_string())
        .collect();
    let v6: Vec<String> = vips
        .iter()
        .filter(|v| v.0.is_ipv6())
        .map(|v| v.0.to_string())
        .collect();
    let home4: Vec<String> = vips
        .iter()
        .filter(|v| v.0.is_ipv4())
        .map(|&(a, i)| home_elem(a, i))
        .collect();
    let elems = |v: &Vec<String>| {
        if v.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }};", v.join(", "))
        }
    };
    let (e, a) = (e.as_millis(), a.as_millis());
    format!(
        "table arp {TABLE} {{\n\
         \x20 set pool4 {{ type ipv4_addr;{p4} }}\n\
         \x20 set home4 {{ type ifname . ipv4_addr;{h4} }}\n\
         \x20 set live4 {{ type ipv4_addr; flags timeout; timeout {e}ms; }}\n\
         \x20 set armed4 {{ type ipv4_addr; flags timeout; timeout {a}ms; }}\n\
         \x20 chain out {{ type filter hook output priority 0; policy accept;\n\
         \x20   arp saddr ip @pool4 arp saddr ip != @live4 counter drop\n\
         \x20   arp saddr ip @pool4 meta oifname . arp saddr ip != @home4 counter drop\n\
         \x20 }}\n\
         \x20 chain in {{ type filter hook input priority 0; policy accept;\n\
         \x20   arp daddr ip @pool4 arp daddr ip != @live4 counter drop\n\
         \x20   arp daddr ip @pool4 meta iifname . arp daddr ip != @home4 counter drop\n\
         \x20 }}\n\
         }}\n\
         table inet {TABLE} {{\n\
         \x20 set pool4 {{ type ipv4_addr;{p4} }}\n\
         \x20 set live4 {{ type ipv4_addr; flags timeout; timeout {e}ms; }}\n\
         \x20 set armed4 {{ type ipv4_addr; flags timeout; timeout {a}ms; }}\n\
         \x20 set pool6 {{ type ipv6_addr;{p6} }}\n\
         \x20 set live6 {{ type ipv6_addr; flags timeout; timeout {e}ms; }}\n\
         \x20 set armed6 {{ type ipv6_addr; flags timeout; timeout {a}ms; }}\n\
         \x20 chain in {{ type filter hook input priority 0; policy accept;\n\
         \x20   ip daddr @pool4 ip daddr != @live4 counter drop\n\
         \x20   ip6 daddr @pool6 ip6 daddr != @live6 counter drop\n\
         \x20 }}\n\
         \x20 chain out {{ type filter hook output priority 0; policy accept;\n\
         \x20   ip saddr @pool4 ip saddr != @live4 counter drop\n\
         \x20   ip6 saddr @pool6 ip6 saddr != @live6 counter drop\n\
         \x20 }}\n\
         }}\n",
        p4 = elems(&v4),
        p6 = elems(&v6),
        h4 = elems(&home4),
    )
}

/// Tells the gate which interface new IPv4 VIPs live on (`home4`; a reload that
/// adds VIPs, before they join the pool sets). One `nft` run; rare.
pub fn add_homes(vips: &[(IpAddr, &str)]) -> io::Result<()> {
    let home4: Vec<String> = vips
        .iter()
        .filter(|v| v.0.is_ipv4())
        .map(|&(a, i)| home_elem(a, i))
        .collect();
    if home4.is_empty() {
        return Ok(());
    }
    nft_stdin(&format!(
        "add element arp {TABLE} home4 {{ {} }}\n",
        home4.join(", ")
    ))
}

fn nft_stdin(text: &str) -> io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run `nft` ({e}); install nftables or use --fence address"),
            )
        })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft -f: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Creates (or re-creates) the gate tables with the `nft` binary: one-time setup.
pub fn install(vips: &[(IpAddr, &str)], e: Duration, a: Duration) -> io::Result<()> {
    // Replace a previous incarnation's tables (an earlier crash) in the same
    // transaction that creates ours: `add` makes the delete safe when they are
    // absent, and there is no instant without a gate. Deleting first and creating
    // after, as two steps, left a window in which a killed predecessor's addresses
    // (alive until their lifetime runs out) were answered next to their new holder.
    let text = format!(
        "add table arp {TABLE}\ndelete table arp {TABLE}\nadd table inet {TABLE}\ndelete table inet {TABLE}\n{}",
        ruleset(vips, e, a)
    );
    nft_stdin(&text)
}

/// Removes the gate tables (clean shutdown, once every VIP address is gone: the
/// tables are what keeps a leftover address from answering).
pub fn uninstall() {
    let _ = Command::new("nft")
        .args(["delete", "table", "arp", TABLE])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", TABLE])
        .stderr(Stdio::null())
        .status();
}

impl Gate {
    /// Opens the netfilter socket (in the calling thread's namespace).
    pub fn open() -> io::Result<Gate> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Gate {
            sock,
            seq: 0,
            buf: vec![0; 1 << 16],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn elem_attrs(set: &str, elems: &[(IpAddr, Option<Duration>)]) -> Vec<u8> {
        let mut n = Nla::new();
        n.put_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        n.put_str(NFTA_SET_ELEM_LIST_SET, set);
        n.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |n| {
            for (ip, timeout) in elems {
                n.nest(NFTA_LIST_ELEM, |n| {
                    n.nest(NFTA_SET_ELEM_KEY, |n| {
                        n.put(NFTA_DATA_VALUE, &ip_bytes(*ip))
                    });
                    if let Some(t) = timeout {
                        n.put(NFTA_SET_ELEM_TIMEOUT, &(t.as_millis() as u64).to_be_bytes());
                    }
                });
            }
        });
        n.0
    }

    /// Applies element operations as one atomic batch, in order. IPv4 elements are
    /// written to both the arp and the inet table. `Err(Expired)` when an element to
    /// delete was absent (the whole batch then changed nothing).
    pub fn batch(&mut self, ops: &[ElemOp]) -> Result<(), GateError> {
        // A run of consecutive operations of one kind on one set is one message per
        // table and address family (a message's elements are applied in order and
        // the batch is atomic either way): a refresh of k VIPs, written as k deletes
        // then k adds, is four messages rather than 4k.
        let key = |op: &ElemOp| match op {
            ElemOp::Del(s, _) => (NFT_MSG_DELSETELEM, *s, None),
            ElemOp::Add(s, _, t) => (NFT_MSG_NEWSETELEM, *s, Some(*t)),
            ElemOp::Insert(s, _) => (NFT_MSG_NEWSETELEM, *s, None),
        };
        let ip_of = |op: &ElemOp| match op {
            ElemOp::Del(_, ip) | ElemOp::Add(_, ip, _) | ElemOp::Insert(_, ip) => *ip,
        };
        let mut msgs: Vec<(u16, u16, u8, Vec<u8>)> = Vec::new();
        let mut rest = ops;
        while let Some(first_op) = rest.first() {
            let k = key(first_op);
            let len = rest
                .iter()
                .take(MAX_ELEMS_PER_MSG)
                .take_while(|op| key(op) == k)
                .count();
            let (run, tail) = rest.split_at(len);
            rest = tail;
            let (ty, set, timeout) = k;
            let extra = if ty == NFT_MSG_NEWSETELEM {
                NLM_F_CREATE
            } else {
                0
            };
            for (fam, v6) in [
                (NFPROTO_INET, false),
                (NFPROTO_ARP, false),
                (NFPROTO_INET, true),
            ] {
                let elems: Vec<(IpAddr, Option<Duration>)> = run
                    .iter()
                    .map(ip_of)
                    .filter(|ip| ip.is_ipv6() == v6)
                    .map(|ip| (ip, timeout))
                    .collect();
                if !elems.is_empty() {
                    msgs.push((
                        (NFNL_SUBSYS_NFTABLES << 8) | ty,
                        extra,
                        fam,
                        Self::elem_attrs(set.name(v6), &elems),
                    ));
                }
            }
        }
        if msgs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(64 + 96 * msgs.len());
        let begin = self.next_seq();
        nlmsg(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        let first = self.seq.wrapping_add(1);
        let n = msgs.len();
        for (k, (ty, extra, fam, attrs)) in msgs.into_iter().enumerate() {
            let seq = self.next_seq();
            // Errors are always reported; only the last message asks for an ACK, so a
            // successful batch costs one reply, not one per message.
            let ack = if k + 1 == n { NLM_F_ACK } else { 0 };
            nlmsg(
                &mut buf,
                ty,
                NLM_F_REQUEST | ack | extra,
                seq,
                fam,
                0,
                &attrs,
            );
        }
        let last = self.seq;
        let end = self.next_seq();
        nlmsg(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        self.sock.send(&buf, 0)?;
        // The kernel handles a batch inside sendmsg: its answer is queued by now. Read
        // until an error for one of this batch's messages, or the final ACK; skip
        // anything left over from an earlier batch.
        let in_batch = |seq: u32| seq.wrapping_sub(first) <= last.wrapping_sub(first);
        for _ in 0..1024 {
            let got = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off + 16 <= got {
                let len = u32::from_ne_bytes(self.buf[off..off + 4].try_into().expect("4 bytes"))
                    as usize;
                let ty =
                    u16::from_ne_bytes(self.buf[off + 4..off + 6].try_into().expect("2 bytes"));
                let seq =
                    u32::from_ne_bytes(self.buf[off + 8..off + 12].try_into().expect("4 bytes"));
                if len < 16 || off + len > got {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 20 && in_batch(seq) {
                    let code = i32::from_ne_bytes(
                        self.buf[off + 16..off + 20].try_into().expect("4 bytes"),
                    );
                    if code < 0 {
                        return if -code == nix::errno::Errno::ENOENT as i32 {
                            Err(GateError::Expired)
                        } else {
                            Err(GateError::Io(io::Error::from_raw_os_error(-code)))
                        };
                    }
                    if seq == last {
                        return Ok(());
                    }
                }
                off += (len + 3) & !3;
            }
        }
        Err(GateError::Io(io::Error::other("no answer to a gate batch")))
    }

    /// Removes every element of a set (both families for IPv4 sets).
    pub fn flush(&mut self, set: GateSet) -> Result<(), GateError> {
        for (fam, v6) in [
            (NFPROTO_INET, false),
            (NFPROTO_INET, true),
            (NFPROTO_ARP, false),
        ] {
            let mut buf = Vec::new();
            let begin = self.next_seq();
            nlmsg(
                &mut buf,
                NFNL_MSG_BATCH_BEGIN,
                NLM_F_REQUEST,
                begin,
                0,
                NFNL_SUBSYS_NFTABLES,
                &[],
            );
            let mut n = Nla::new();
            n.put_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
            n.put_str(NFTA_SET_ELEM_LIST_SET, set.name(v6));
            let seq = self.next_seq();
            nlmsg(
                &mut buf,
                (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM,
                NLM_F_REQUEST | NLM_F_ACK,
                seq,
                fam,
                0,
                &n.0,
            );
            let end = self.next_seq();
            nlmsg(
                &mut buf,
                NFNL_MSG_BATCH_END,
                NLM_F_REQUEST,
                end,
                0,
                NFNL_SUBSYS_NFTABLES,
                &[],
            );
            self.sock.send(&buf, 0)?;
            loop {
                let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
                if n < 20 {
                    continue;
                }
                let got = u32::from_ne_bytes(self.buf[8..12].try_into().expect("4"));
                if got != seq
                    || u16::from_ne_bytes(self.buf[4..6].try_into().expect("2")) != NLMSG_ERROR
                {
                    continue; // a leftover of an earlier batch
                }
                let code = i32::from_ne_bytes(self.buf[16..20].try_into().expect("4"));
                if code != 0 {
                    return Err(GateError::Io(io::Error::from_raw_os_error(-code)));
                }
                break;
            }
        }
        Ok(())
    }

    /// Whether one nftables object exists: `Ok(false)` on ENOENT.
    fn exists(&mut self, ty: u16, family: u8, attrs: &[u8]) -> io::Result<bool> {
        let seq = self.next_seq();
        let mut buf = Vec::new();
        nlmsg(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            family,
            0,
            attrs,
        );
        self.sock.send(&buf, 0)?;
        for _ in 0..64 {
            let got = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off + 16 <= got {
                let len =
                    u32::from_ne_bytes(self.buf[off..off + 4].try_into().expect("4")) as usize;
                let mty = u16::from_ne_bytes(self.buf[off + 4..off + 6].try_into().expect("2"));
                let mseq = u32::from_ne_bytes(self.buf[off + 8..off + 12].try_into().expect("4"));
                if len < 16 || off + len > got {
                    break;
                }
                if mty == NLMSG_ERROR && len >= 20 && mseq == seq {
                    let code =
                        i32::from_ne_bytes(self.buf[off + 16..off + 20].try_into().expect("4"));
                    return match -code {
                        0 => Ok(true),
                        c if c == nix::errno::Errno::ENOENT as i32 => Ok(false),
                        c => Err(io::Error::from_raw_os_error(c)),
                    };
                }
                off += (len + 3) & !3;
            }
        }
        Err(io::Error::other("no answer to an nftables query"))
    }

    /// Whether both gate tables and every set the agent writes exist. A firewall
    /// reload (`nft flush ruleset`, the first line of Debian's
    /// `/etc/nftables.conf`) deletes them without notice; the kernel side then
    /// re-creates them ([`install`]).
    pub fn present(&mut self) -> io::Result<bool> {
        let sets: [(u8, &[&str]); 2] = [
            (NFPROTO_ARP, &["pool4", "live4", "armed4"]),
            (
                NFPROTO_INET,
                &["pool4", "live4", "armed4", "pool6", "live6", "armed6"],
            ),
        ];
        for (fam, names) in sets {
            let mut t = Nla::new();
            t.put_str(NFTA_TABLE_NAME, TABLE);
            if !self.exists(NFT_MSG_GETTABLE, fam, &t.0)? {
                return Ok(false);
            }
            for set in names {
                let mut n = Nla::new();
                n.put_str(NFTA_SET_TABLE, TABLE);
                n.put_str(NFTA_SET_NAME, set);
                if !self.exists(NFT_MSG_GETSET, fam, &n.0)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The elements of a set with their remaining time, from the inet table.
    pub fn list(
        &mut self,
        set: GateSet,
        v6: bool,
    ) -> Result<Vec<(IpAddr, Option<Duration>)>, GateError> {
        let mut n = Nla::new();
        n.put_str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        n.put_str(NFTA_SET_ELEM_LIST_SET, set.name(v6));
        let seq = self.next_seq();
        let mut buf = Vec::new();
        nlmsg(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            NFPROTO_INET,
            0,
            &n.0,
        );
        self.sock.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            let len = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off + 16 <= len {
                let mlen =
                    u32::from_ne_bytes(self.buf[off..off + 4].try_into().expect("4")) as usize;
                let ty = u16::from_ne_bytes(self.buf[off + 4..off + 6].try_into().expect("2"));
                let flags = u16::from_ne_bytes(self.buf[off + 6..off + 8].try_into().expect("2"));
                if mlen < 16 || off + mlen > len {
                    return Ok(out);
                }
                let mseq = u32::from_ne_bytes(self.buf[off + 8..off + 12].try_into().expect("4"));
                if mseq != seq {
                    // A leftover of an earlier batch.
                    off += (mlen + 3) & !3;
                    continue;
                }
                if ty == NLMSG_DONE {
                    return Ok(out);
                }
                if ty == NLMSG_ERROR {
                    let code =
                        i32::from_ne_bytes(self.buf[off + 16..off + 20].try_into().expect("4"));
                    return if code == 0 {
                        Ok(out)
                    } else {
                        Err(GateError::Io(io::Error::from_raw_os_error(-code)))
                    };
                }
                parse_elements(&self.buf[off + 20..off + mlen], &mut out);
                off += (mlen + 3) & !3;
                if flags & NLM_F_MULTI == 0 {
                    return Ok(out);
                }
            }
        }
    }
}

/// Walks the attributes of one NEWSETELEM message.
fn parse_elements(b: &[u8], out: &mut Vec<(IpAddr, Option<Duration>)>) {
    fn attrs(mut b: &[u8], mut f: impl FnMut(u16, &[u8])) {
        while b.len() >= 4 {
            let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
            let ty = u16::from_ne_bytes([b[2], b[3]]) & !NLA_F_NESTED;
            if len < 4 || len > b.len() {
                return;
            }
            f(ty, &b[4..len]);
            let step = (len + 3) & !3;
            b = &b[step.min(b.len())..];
        }
    }
    attrs(b, |ty, v| {
        if ty != NFTA_SET_ELEM_LIST_ELEMENTS {
            return;
        }
        attrs(v, |ty, elem| {
            if ty != NFTA_LIST_ELEM {
                return;
            }
            let mut key = None;
            let mut exp = None;
            attrs(elem, |ty, v| match ty {
                NFTA_SET_ELEM_KEY => attrs(v, |ty, d| {
                    if ty == NFTA_DATA_VALUE {
                        key = match d.len() {
                            4 => Some(IpAddr::from(<[u8; 4]>::try_from(d).expect("4"))),
                            16 => Some(IpAddr::from(<[u8; 16]>::try_from(d).expect("16"))),
                            _ => None,
                        };
                    }
                }),
                NFTA_SET_ELEM_EXPIRATION if v.len() == 8 => {
                    exp = Some(Duration::from_millis(u64::from_be_bytes(
                        v.try_into().expect("8"),
                    )));
                }
                _ => {}
            });
            if let Some(k) = key {
                out.push((k, exp));
            }
        });
    });
}
