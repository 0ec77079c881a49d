//! Cluster configuration, timing profiles, and the inequalities that make them safe.
//!
//! Two kinds of settings live here. [`ClusterConfig`] holds what is shared: the voter
//! set, the quorum mode, the fence and the timing must be identical on every node —
//! their digest, [`ClusterConfig::cluster_id`], travels in every datagram, and a node
//! with a different one is not talked to (DESIGN §2.3 rule 1) — and the VIP group
//! table, which may differ between nodes while a change rolls through (DESIGN §4). [`NodeConfig`]
//! is per node: name, weight, preferences.
//!
//! [`ClusterConfig::validate`] checks the inequalities of `docs/safety.md` (I1–I12)
//! and names the broken one. Nothing starts with a configuration it rejects.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod validate;

use super::hash::StableHasher;
use super::time::{duration_nanos, scale_down, scale_up};

/// Longest node name, in bytes (fits a netlink address label with a suffix).
pub const MAX_NAME_BYTES: usize = 63;
/// Most voters a quorum-mode cluster may name (lease traffic is O(|V|) per node per R).
pub const MAX_VOTERS: usize = 64;
/// Most VIP groups in one cluster.
pub const MAX_GROUPS: usize = 4096;
/// Most addresses in one VIP group.
pub const MAX_GROUP_ADDRS: usize = 16;
/// The fence of the address-lifetime model: a `valid_lft 1` address can live up to
/// 2.0 s after its last refresh when another address change re-arms the kernel's
/// expiry worker (measured; `notes/safety-review.md` F1), plus margin.
pub const ADDRESS_FENCE_K: Duration = Duration::from_millis(2250);
/// Slack added to the gate's element timeout E to form K: kernel timer granularity
/// (jiffies at HZ=250) and the write latency after the last lease check.
pub const GATE_FENCE_SLACK: Duration = Duration::from_millis(10);
/// Longest address-lifetime refresh period: the kernel may expire a `valid_lft 1`
/// address 0.98 s after its last refresh.
pub const MAX_ADDRESS_REFRESH: Duration = Duration::from_millis(500);
/// Largest clock-rate bound accepted; beyond it leases become meaningless.
pub const MAX_RHO: f64 = 0.01;

/// Index of a VIP group in the cluster's canonical group table.
pub type GroupId = u16;

/// How ownership is made exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
pub enum QuorumMode {
    /// A node may answer for a group only under a lease granted by a majority of the
    /// voter set. Safe under any partition.
    Majority,
    /// Exactly two nodes, no witness. Each holds under a lease granted by both, or by
    /// itself alone once the other has been silent for Q. A symmetric partition can
    /// give two holders until it heals (documented, inherent to two nodes).
    Off,
}

/// What stops a frozen or cut-off agent's kernel from answering after its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
pub enum FenceKind {
    /// The nftables gate: `live` set entries time out E after their last atomic
    /// refresh; K = E + 10 ms.
    Gate,
    /// Kernel address lifetimes only (`valid_lft 1`); K = 2.25 s.
    Address,
}

/// Named timing presets (DESIGN §2 "Inequalities and LAN defaults").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// R = F = L 50 ms, T 330 ms, E 100 ms, SWIM 1000/30/200 ms: failover bound 576 ms.
    Default,
    /// R = F = L 30 ms, T 205 ms, E 60 ms, SWIM 1000/20/160 ms: failover bound 361 ms.
    Fast,
    /// R 150 ms, T 750 ms, E 240 ms, F 120 ms, SWIM 2000/90/450 ms: about a third of
    /// the default's wake-ups and datagrams for about twice its failover time.
    Lean,
}

impl Profile {
    /// Parses `default`, `fast` or `lean`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "default" | "lan" => Some(Profile::Default),
            "fast" => Some(Profile::Fast),
            "lean" => Some(Profile::Lean),
            _ => None,
        }
    }
}

/// Every time constant of the protocol. Local-clock durations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// R: a claim is sent to every voter this often.
    pub claim_period: Duration,
    /// T: how long a grant is worth to the claimer, from the claim's send time.
    pub promise: Duration,
    /// E: gate `live` element timeout.
    pub gate_timeout: Duration,
    /// F: gate refresh period (E ≥ 2F); claim rounds carry it (§4.14).
    pub gate_refresh: Duration,
    /// A: timeout of the `armed` element that a go-live batch consumes at bind.
    pub gate_arm: Duration,
    /// How often the address's own lifetime (`valid_lft 1`) is renewed.
    pub address_refresh: Duration,
    /// ρ: bound on the rate difference of any clock from real time.
    pub rho: f64,
    /// Largest round-trip time assumed on the LAN.
    pub rtt_max: Duration,
    /// SWIM probe period. Long: between holders and voters the claims are the
    /// heartbeat (a voter suspects a holder whose claims stop, `heartbeat.rs`), so
    /// SWIM's probes only watch members that claim nothing.
    pub probe_period: Duration,
    /// SWIM's periodic gossip (while updates are pending): how fast a suspicion, a
    /// refutation or a down spreads.
    pub gossip_period: Duration,
    /// SWIM direct-probe timeout before indirect probes.
    pub probe_rtt: Duration,
    /// SWIM suspicion time before a member is declared down.
    pub suspect_to_down: Duration,
    /// Q: how long a group's assignment must be calm before its owner claims it.
    pub quiescence: Duration,
    /// A returning node waits this long before it makes itself eligible.
    pub failback_delay: Duration,
    /// Expected duration of the ARP/NS probe before a bind (for the failover bound).
    pub probe_wait: Duration,
}

impl Timing {
    /// The timing of a named profile.
    pub fn profile(p: Profile) -> Timing {
        let ms = Duration::from_millis;
        match p {
            Profile::Default => Timing {
                claim_period: ms(50),
                promise: ms(330),
                gate_timeout: ms(100),
                gate_refresh: ms(50),
                gate_arm: ms(20),
                address_refresh: ms(250),
                rho: 1e-3,
                rtt_max: ms(5),
                probe_period: ms(1000),
                gossip_period: ms(100),
                probe_rtt: ms(30),
                suspect_to_down: ms(200),
                quiescence: ms(20),
                failback_delay: ms(2000),
                probe_wait: ms(30),
            },
            Profile::Fast => Timing {
                claim_period: ms(30),
                promise: ms(205),
                gate_timeout: ms(60),
                gate_refresh: ms(30),
                gate_arm: ms(15),
                address_refresh: ms(250),
                rho: 1e-3,
                rtt_max: ms(5),
                probe_period: ms(1000),
                gossip_period: ms(70),
                probe_rtt: ms(20),
                suspect_to_down: ms(160),
                quiescence: ms(0),
                failback_delay: ms(2000),
                probe_wait: ms(20),
            },
            Profile::Lean => Timing {
                claim_period: ms(150),
                promise: ms(750),
                gate_timeout: ms(240),
                gate_refresh: ms(120),
                gate_arm: ms(40),
                address_refresh: ms(500),
                rho: 1e-3,
                rtt_max: ms(5),
                probe_period: ms(2000),
                gossip_period: ms(300),
                probe_rtt: ms(90),
                suspect_to_down: ms(450),
                quiescence: ms(40),
                failback_delay: ms(2000),
                probe_wait: ms(30),
            },
        }
    }

    /// How long a voter waits for a holder's next claim before it suspects the
    /// holder: three claim periods (two claims lost in a row are not a death) and
    /// an RTT (docs/safety.md §4.16).
    pub fn heartbeat_window(&self) -> Duration {
        self.claim_period * 3 + self.rtt_max
    }

    /// Worst-case detection D of a holder's death: its last claim arrives up to an
    /// RTT after it left, the voters suspect it a heartbeat window later, and down
    /// follows the suspicion time.
    pub fn detection(&self) -> Duration {
        self.rtt_max + self.heartbeat_window() + self.suspect_to_down
    }

    /// How often SWIM probes with `others` active members besides this node: the
    /// period shrinks with the membership so that every member is still probed
    /// once per cycle of 2 × probe_period (foca probes in shuffled round-robin
    /// order), but never below the gossip period (the probe period before claims
    /// became the heartbeat).
    pub fn probe_period_for(&self, others: usize) -> Duration {
        let others = u32::try_from(others.max(1)).unwrap_or(u32::MAX);
        (self.probe_period * 2 / others).clamp(self.gossip_period, self.probe_period)
    }

    /// SWIM's worst-case detection of a dead member that claims nothing (a backup, a
    /// witness), or of one that died while this node was away (frozen, cut off) and
    /// missed the news: a member probed first in one shuffled cycle and last in the
    /// next waits two cycles, then probe RTT and the suspicion time. Clusters larger
    /// than 2 × probe_period / gossip_period + 1 members (21 in `default`) have
    /// longer cycles: N × gossip_period.
    pub fn swim_detection(&self) -> Duration {
        self.probe_period * 4 + self.probe_rtt + self.suspect_to_down
    }
}

/// One VIP: an address and the prefix length it is added with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length (32 or 128 unless configured otherwise).
    pub prefix_len: u8,
}

impl Vip {
    /// A host-prefix VIP (/32 or /128).
    pub fn host(addr: IpAddr) -> Vip {
        let prefix_len = if addr.is_ipv4() { 32 } else { 128 };
        Vip { addr, prefix_len }
    }
}

impl fmt::Display for Vip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Addresses that always move together: the unit of assignment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VipGroup {
    /// Sorted, non-empty.
    pub vips: Vec<Vip>,
}

impl VipGroup {
    /// A group from its addresses (sorted here).
    pub fn new(mut vips: Vec<Vip>) -> VipGroup {
        vips.sort();
        vips.dedup();
        VipGroup { vips }
    }

    /// A stable key: the group's first address.
    pub fn key(&self) -> String {
        self.vips
            .first()
            .map(|v| v.addr.to_string())
            .unwrap_or_default()
    }
}

impl fmt::Display for VipGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.vips.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", v.addr)?;
        }
        Ok(())
    }
}

/// The configuration every node of a cluster shares.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// Majority lease or the two-node mode.
    pub quorum: QuorumMode,
    /// Gate or address lifetimes.
    pub fence: FenceKind,
    /// V: the explicit voter set, sorted (in quorum-off mode: the two nodes).
    pub voters: Vec<String>,
    /// Voters that never hold a VIP.
    pub witnesses: Vec<String>,
    /// The canonical group table (sorted); a [`GroupId`] indexes it.
    pub groups: Vec<VipGroup>,
    /// Time constants.
    pub timing: Timing,
}

/// What is wrong with a configuration. Each variant says what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// One of the safety inequalities of `docs/safety.md` does not hold.
    #[error("inequality {id} is broken: {detail}")]
    Inequality {
        /// I1…I12 as numbered in `docs/safety.md`.
        id: &'static str,
        /// The values involved and the fix.
        detail: String,
    },
    /// The voter set is unusable.
    #[error("voters: {0}")]
    Voters(String),
    /// The group table is unusable.
    #[error("VIP groups: {0}")]
    Groups(String),
    /// A node name is unusable.
    #[error("node name {name:?}: {why}")]
    Name {
        /// The offending name.
        name: String,
        /// Why.
        why: &'static str,
    },
}

/// Checks a node name: 1–63 bytes of `[A-Za-z0-9._-]`.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    let why = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("is longer than 63 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        Some("may contain only letters, digits, '.', '-' and '_'")
    } else {
        None
    };
    match why {
        Some(why) => Err(ConfigError::Name {
            name: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// `Some("network")` or `Some("broadcast")` when `addr` is that address of the
/// subnet `addr/prefix` (IPv4 below /31; IPv6: the subnet-router anycast address,
/// below /127).
pub fn subnet_edge(addr: IpAddr, prefix: u8) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) if prefix < 31 => {
            let host = u32::MAX >> prefix;
            let x = u32::from(a);
            if x & host == 0 {
                Some("network")
            } else if x & host == host {
                Some("broadcast")
            } else {
                None
            }
        }
        IpAddr::V6(a) if prefix < 127 => {
            let host = u128::MAX >> prefix;
            (u128::from(a) & host == 0).then_some("network")
        }
        _ => None,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

impl ClusterConfig {
    /// A configuration with canonical ordering applied (voters, witnesses and groups
    /// sorted), so that nodes listing them in different orders agree.
    pub fn new(
        quorum: QuorumMode,
        fence: FenceKind,
        mut voters: Vec<String>,
        mut witnesses: Vec<String>,
        groups: Vec<VipGroup>,
        timing: Timing,
    ) -> ClusterConfig {
        voters.sort();
        voters.dedup();
        witnesses.sort();
        witnesses.dedup();
        let mut groups: Vec<VipGroup> = groups.into_iter().map(|g| VipGroup::new(g.vips)).collect();
        groups.sort();
        ClusterConfig {
            quorum,
            fence,
            voters,
            witnesses,
            groups,
            timing,
        }
    }

    /// K: the longest real time the fence keeps a VIP answered after the lease ends.
    pub fn fence_k(&self) -> Duration {
        match self.fence {
            FenceKind::Gate => self.timing.gate_timeout + GATE_FENCE_SLACK,
            FenceKind::Address => ADDRESS_FENCE_K,
        }
    }

    /// P = (T + K)(1 + 2ρ): how long a voter keeps a promise (I1).
    pub fn promise_hold(&self) -> Duration {
        scale_up(
            self.timing.promise + self.fence_k(),
            1.0 + 2.0 * self.timing.rho,
        )
    }

    /// W = P: how long a (re)started voter grants nothing (I2).
    pub fn restart_wait(&self) -> Duration {
        self.promise_hold()
    }

    /// T(1 − 2ρ): a grant's worth to the claimer, from the claim's send time (I3).
    pub fn lease_validity(&self) -> Duration {
        scale_down(self.timing.promise, 1.0 - 2.0 * self.timing.rho)
    }

    /// What a renewal needs of a grant's worth with no answer delayed (the right
    /// side of I4): 3R + RTT, plus E(1 + ρ) + A with the gate.
    pub fn renewal_need(&self) -> Duration {
        let t = &self.timing;
        let mut need = self.contention_window() + t.rtt_max;
        if self.fence == FenceKind::Gate {
            need += self.gate_margin() + t.gate_arm;
        }
        need
    }

    /// L: how long a voter may hold its answer to a renewal so that it rides on its
    /// own next claim to the claimer (`docs/safety.md` §4.13): the slack I4 leaves,
    /// at most R; zero in two-node mode (whose absence rule times answers).
    pub fn answer_ride(&self) -> Duration {
        if self.quorum == QuorumMode::Off {
            return Duration::ZERO;
        }
        self.lease_validity()
            .saturating_sub(self.renewal_need())
            .min(self.timing.claim_period)
    }

    /// The margin a gate refresh keeps before the lease ends: E(1 + ρ).
    pub fn gate_margin(&self) -> Duration {
        scale_up(self.timing.gate_timeout, 1.0 + self.timing.rho)
    }

    /// q = ⌊|V|/2⌋ + 1.
    pub fn quorum_size(&self) -> usize {
        match self.quorum {
            QuorumMode::Majority => self.voters.len() / 2 + 1,
            QuorumMode::Off => 2,
        }
    }

    /// Q used by the two-node mode before counting a silent peer as absent:
    /// (T + K)(1 + 2ρ) + RTT (I11; T plays the role of T_fence).
    pub fn absent_after(&self) -> Duration {
        self.promise_hold() + self.timing.rtt_max
    }

    /// Contention window W_c = 3R (I12).
    pub fn contention_window(&self) -> Duration {
        self.timing.claim_period * 3
    }

    /// The derived bound on failover after a holder's machine dies, with no loss:
    /// max(D + Q, P) + 2R + RTT + probe. `docs/safety.md` explains each term.
    pub fn failover_bound(&self) -> Duration {
        let t = &self.timing;
        let dq = t.detection() + t.quiescence;
        let base = if dq > self.promise_hold() {
            dq
        } else {
            self.promise_hold()
        };
        base + t.claim_period * 2 + t.rtt_max + t.probe_wait
    }

    /// Index of a voter by name.
    pub fn voter_index(&self, name: &str) -> Option<usize> {
        self.voters.binary_search_by(|v| v.as_str().cmp(name)).ok()
    }

    /// Whether `name` is a witness (votes, never holds).
    pub fn is_witness(&self, name: &str) -> bool {
        self.witnesses
            .binary_search_by(|v| v.as_str().cmp(name))
            .is_ok()
    }

    /// Whether `name` may hold VIPs at all: not a witness, and in two-node mode one
    /// of the two named nodes.
    pub fn may_hold(&self, name: &str) -> bool {
        if self.is_witness(name) {
            return false;
        }
        match self.quorum {
            QuorumMode::Majority => true,
            QuorumMode::Off => self.voter_index(name).is_some(),
        }
    }

    /// The group containing `addr`, if any.
    pub fn group_of(&self, addr: IpAddr) -> Option<GroupId> {
        self.groups
            .iter()
            .position(|g| g.vips.iter().any(|v| v.addr == addr))
            .map(|i| i as GroupId)
    }

    /// Digest of the VIP pool (every group's addresses and prefix lengths, in the
    /// canonical order, whatever slots a running node keeps them in).
    pub fn pool_digest(&self) -> u64 {
        let mut groups: Vec<&VipGroup> =
            self.groups.iter().filter(|g| !g.vips.is_empty()).collect();
        groups.sort();
        let mut h = StableHasher::new();
        h.write_str("wackamole-pool-v1");
        h.write_u64(groups.len() as u64);
        for g in groups {
            h.write_u64(g.vips.len() as u64);
            for v in &g.vips {
                h.write_str(&v.addr.to_string());
                h.write_u64(u64::from(v.prefix_len));
            }
        }
        h.finish()
    }

    /// Digest of the voter set and the witnesses.
    pub fn voters_digest(&self) -> u64 {
        self.voter_set().digest()
    }

    /// The voter set and the witnesses, as answers name them.
    pub fn voter_set(&self) -> crate::core::lease::VoterSet {
        crate::core::lease::VoterSet::new(self.voters.clone(), self.witnesses.clone())
    }

    /// The digest carried by every datagram: mode, fence and every timing constant
    /// the safety argument uses. Two nodes that disagree on any of them refuse each
    /// other. Neither the VIP pool nor (in majority mode) the voter set is in it
    /// (DESIGN §4): nodes whose pools differ keep talking, each claim naming its
    /// groups in its own table ([`super::table`]) and voters promising per address;
    /// nodes whose voter sets differ by a reload step keep talking, each answer
    /// naming its voter's set ([`crate::core::lease::sets`]). In two-node mode the
    /// two names stay in it.
    pub fn cluster_id(&self) -> u64 {
        let mut h = StableHasher::new();
        h.write_str("wackamole-cluster-v5");
        h.write_u64(match self.quorum {
            QuorumMode::Majority => 1,
            QuorumMode::Off => 2,
        });
        h.write_u64(match self.fence {
            FenceKind::Gate => 1,
            FenceKind::Address => 2,
        });
        if self.quorum == QuorumMode::Off {
            h.write_u64(self.voters.len() as u64);
            for v in &self.voters {
                h.write_str(v);
            }
        }
        let t = &self.timing;
        for d in [
            t.claim_period,
            t.promise,
            t.gate_timeout,
            t.gate_refresh,
            t.gate_arm,
            t.address_refresh,
            t.rtt_max,
        ] {
            h.write_u64(duration_nanos(d));
        }
        h.write_u64((t.rho * 1e9) as u64);
        h.finish()
    }
}

/// Settings of one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// Stable name; the identity in assignment and the lease.
    pub name: String,
    /// Relative share of groups (1–1000).
    pub weight: u16,
    /// Groups this node prefers to hold while it is eligible (gossiped).
    pub prefers: Vec<GroupId>,
    /// Whether the operator lets this node hold VIPs at all.
    pub eligible: bool,
}

impl NodeConfig {
    /// A node with weight 1 and no preferences.
    pub fn new(name: impl Into<String>) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            weight: 1,
            prefers: Vec::new(),
            eligible: true,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn subnet_edges() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(subnet_edge(a("10.0.0.0"), 24), Some("network"));
        assert_eq!(subnet_edge(a("10.0.0.255"), 24), Some("broadcast"));
        assert_eq!(subnet_edge(a("10.0.0.64"), 26), Some("network"));
        assert_eq!(subnet_edge(a("10.0.0.5"), 24), None);
        assert_eq!(subnet_edge(a("10.0.0.0"), 32), None);
        assert_eq!(subnet_edge(a("10.0.0.1"), 31), None);
        assert_eq!(subnet_edge(a("fd00::"), 64), Some("network"));
        assert_eq!(subnet_edge(a("fd00::1"), 64), None);
        assert_eq!(subnet_edge(a("fd00::"), 128), None);
    }

    use super::*;

    fn cfg(fence: FenceKind, p: Profile) -> ClusterConfig {
        ClusterConfig::new(
            QuorumMode::Majority,
            fence,
            vec!["c".into(), "a".into(), "b".into()],
            vec![],
            vec![VipGroup::new(vec![Vip::host("10.0.0.1".parse().unwrap())])],
            Timing::profile(p),
        )
    }

    #[test]
    fn profiles_pass_validation() {
        for f in [FenceKind::Gate, FenceKind::Address] {
            for p in [Profile::Default, Profile::Fast, Profile::Lean] {
                assert_eq!(cfg(f, p).validate(), Ok(vec![]), "{f:?} {p:?}");
            }
        }
    }

    #[test]
    fn derived_values_match_design() {
        let c = cfg(FenceKind::Gate, Profile::Default);
        assert_eq!(c.fence_k(), Duration::from_millis(110));
        // P = (330 + 110) ms × 1.002
        assert_eq!(c.promise_hold(), Duration::from_nanos(440_880_000));
        assert_eq!(c.lease_validity(), Duration::from_nanos(329_340_000));
        // The bound of docs/safety.md §6: 440.88 + 2 × 50 + 5 + 30 ms.
        assert_eq!(c.failover_bound(), Duration::from_nanos(575_880_000));
        let f = cfg(FenceKind::Gate, Profile::Fast);
        // (205 + 70) × 1.002 + 2 × 30 + 5 + 20 ms.
        assert_eq!(f.failover_bound(), Duration::from_nanos(360_550_000));
        assert_eq!(c.quorum_size(), 2);
        let a = cfg(FenceKind::Address, Profile::Default);
        assert_eq!(a.fence_k(), ADDRESS_FENCE_K);
    }

    #[test]
    fn answers_ride_within_the_slack_i4_leaves() {
        // L = min(R, T(1 − 2ρ) − (3R + RTT + E(1 + ρ) + A)), as docs/safety.md §3.
        let near = |d: Duration, ms: f64| (d.as_secs_f64() * 1e3 - ms).abs() < 0.1;
        assert!(near(
            cfg(FenceKind::Gate, Profile::Default).answer_ride(),
            50.0
        ));
        assert!(near(
            cfg(FenceKind::Gate, Profile::Fast).answer_ride(),
            30.0
        ));
        assert!(near(
            cfg(FenceKind::Gate, Profile::Lean).answer_ride(),
            13.3
        ));
        assert!(near(
            cfg(FenceKind::Address, Profile::Default).answer_ride(),
            50.0
        ));
        let mut two = cfg(FenceKind::Gate, Profile::Default);
        two.quorum = QuorumMode::Off;
        assert_eq!(two.answer_ride(), Duration::ZERO);
    }

    #[test]
    fn swim_probes_every_member_once_per_cycle_within_its_bounds() {
        let t = Timing::profile(Profile::Default);
        let ms = Duration::from_millis;
        // Small clusters: the long period (claims are the heartbeat, §4.16).
        assert_eq!(t.probe_period_for(0), ms(1000));
        assert_eq!(t.probe_period_for(2), ms(1000));
        // A cycle of 2 s over the members...
        assert_eq!(t.probe_period_for(4), ms(500));
        assert_eq!(t.probe_period_for(15), ms(2000) / 15);
        // ...but never below the gossip period.
        assert_eq!(t.probe_period_for(200), t.gossip_period);
        let lean = Timing::profile(Profile::Lean);
        assert_eq!(lean.probe_period_for(2), ms(2000));
        assert_eq!(lean.probe_period_for(100), lean.gossip_period);
    }

    #[test]
    fn broken_inequalities_are_named() {
        let mut c = cfg(FenceKind::Gate, Profile::Default);
        c.timing.promise = Duration::from_millis(100);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Inequality { id: "I4", .. })
        ));
        let mut c = cfg(FenceKind::Gate, Profile::Default);
        c.timing.gate_refresh = Duration::from_millis(51);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Inequality { id: "I6", .. })
        ));
        let mut c = cfg(FenceKind::Gate, Profile::Default);
        c.timing.address_refresh = Duration::from_millis(900);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Inequality { id: "I5", .. })
        ));
        let mut c = cfg(FenceKind::Gate, Profile::Default);
        c.timing.probe_rtt = Duration::from_millis(400);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Inequality { id: "I10", .. })
        ));
        let mut c = cfg(FenceKind::Gate, Profile::Default);
        c.timing.suspect_to_down = Duration::from_millis(50);
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Inequality { id: "I10", .. })
        ));
        let mut c = cfg(FenceKind::Gate, Profile::Default);
        c.timing.rho = 0.2;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Inequality { id: "I7", .. })
        ));
    }

    #[test]
    fn voter_rules() {
        let mut c = cfg(FenceKind::Gate, Profile::Default);
        c.voters.push("d".into());
        let w = c.validate().unwrap();
        assert!(w[0].contains("even"), "{w:?}");
        c.voters.clear();
        assert!(matches!(c.validate(), Err(ConfigError::Voters(_))));
        let mut off = cfg(FenceKind::Gate, Profile::Default);
        off.quorum = QuorumMode::Off;
        assert!(matches!(off.validate(), Err(ConfigError::Voters(_))));
        off.voters.pop();
        assert_eq!(off.validate(), Ok(vec![]));
        let mut wit = cfg(FenceKind::Gate, Profile::Default);
        wit.witnesses = vec!["z".into()];
        assert!(matches!(wit.validate(), Err(ConfigError::Voters(_))));
    }

    #[test]
    fn cluster_id_is_order_independent_and_sensitive() {
        let a = cfg(FenceKind::Gate, Profile::Default);
        let mut voters = a.voters.clone();
        voters.reverse();
        let b = ClusterConfig::new(
            a.quorum,
            a.fence,
            voters,
            vec![],
            a.groups.clone(),
            a.timing.clone(),
        );
        assert_eq!(a.cluster_id(), b.cluster_id());
        let mut c = a.clone();
        c.timing.promise += Duration::from_millis(1);
        assert_ne!(a.cluster_id(), c.cluster_id());
        let d = cfg(FenceKind::Address, Profile::Default);
        assert_ne!(a.cluster_id(), d.cluster_id());
        // Majority mode: a voter step by reload keeps nodes talking.
        let mut e = a.clone();
        e.voters.push("d".into());
        assert_eq!(a.cluster_id(), e.cluster_id());
        // Two-node mode: the pair stays in it.
        let mut off = a.clone();
        off.quorum = QuorumMode::Off;
        off.voters.pop();
        let mut off2 = off.clone();
        off2.voters[1] = "z".into();
        assert_ne!(off.cluster_id(), off2.cluster_id());
    }

    #[test]
    fn a_voter_set_must_fit_one_datagram() {
        let mut c = cfg(FenceKind::Gate, Profile::Default);
        c.voters = (0..63)
            .map(|i| format!("{i:02}{}", "v".repeat(40)))
            .collect();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("bytes"), "{e}");
        c.voters = (0..63).map(|i| format!("node-{i:02}")).collect();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn names() {
        assert!(validate_name("node-1.a_b").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"x".repeat(64)).is_err());
    }
}
