//! The engine's surface: what goes in ([`EngineConfig`], [`EngineInit`]) and what
//! comes out ([`Action`], [`KernelOp`], [`Event`], [`Stats`], [`Status`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::config::{ClusterConfig, GroupId, NodeConfig};
use crate::core::membership::MemberView;
use crate::core::ownership::{FenceReason, ReleaseReason};
use crate::core::time::Instant;
use crate::core::wire::NodeMeta;

/// Safety mechanisms the simulator can switch off to show its checker catches the
/// result. Never set in the agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breaks {
    /// Q = 0, and the two-node mode counts a silent peer absent at once.
    pub quiescence: bool,
    /// Q ignores the previous holder's state and incarnation.
    pub incarnation: bool,
    /// One grant (anyone's) is a lease.
    pub quorum_lease: bool,
    /// W = 0: a restarted voter grants at once.
    pub restart_wait: bool,
    /// Drop a group from claims before its unbind is verified.
    pub release_order: bool,
    /// A fixed nonce per name: a restarted claimer reuses its old lease identity.
    pub nonce: bool,
    /// Voters promise per group index of the claimer's table instead of per address:
    /// an address that sits in different groups (or slots) on different nodes can
    /// then be promised twice.
    pub promise_per_group: bool,
    /// A reload's voter step is applied at once: no wait for the last step to
    /// settle, no look at the other members' sets (one voter per step still).
    pub voter_settle: bool,
    /// A lease counts a majority of the claimer's own voter set only, whatever set
    /// its grants name.
    pub voter_joint: bool,
    /// Held answers never ride on a claim and wait 2T before going out alone: the
    /// claimer learns of its renewals after they are worthless.
    pub ride: bool,
    /// The gate's refresh comes only after its element expired (F past E) and no
    /// claim round carries it: I6 broken.
    pub refresh: bool,
    /// A held group whose refresh found its gate entry expired is re-armed whatever
    /// its lease says (§4.15's check gone).
    pub rearm: bool,
    /// Voters never suspect a holder whose claims stopped (§4.16): a holder's death
    /// is left to SWIM's slow probes.
    pub heartbeat: bool,
}

/// Everything the engine needs to start.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The cluster-wide configuration (validated).
    pub cluster: ClusterConfig,
    /// This node.
    pub node: NodeConfig,
    /// Gossip address of this node.
    pub bind: SocketAddr,
    /// Addresses to announce to (may include our own; it is skipped).
    pub seeds: Vec<SocketAddr>,
    /// Expected cluster size, for foca's dissemination count.
    pub cluster_size_hint: usize,
    /// Disabled mechanisms (simulator only).
    pub breaks: Breaks,
    /// Digest of the shell's keyring (its key ids; 0 without one), gossiped so that
    /// a rotation left half-done shows.
    pub keyring: u64,
}

/// Per-process randomness and identity, supplied by the shell.
#[derive(Clone, Copy, Debug)]
pub struct EngineInit {
    /// Lease nonce: 64 random bits, fresh at every start.
    pub nonce: u64,
    /// Seed for the engine's RNG (foca, backoff).
    pub rng_seed: u64,
    /// SWIM epoch: must grow across restarts (e.g. wall-clock milliseconds).
    pub epoch: u64,
}

/// A kernel operation for the shell. The shell performs one group's operations in
/// order and reports each with [`Engine::handle_kernel`](super::Engine::handle_kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOp {
    /// Remove every pool VIP and gate entry, then verify they are gone.
    Flush,
    /// Bind the group: with the gate, arm then go live; add the addresses with
    /// `valid_lft 1`. Check `now ≤ deadline` right before each write and right after
    /// its ack; if it has passed, undo and report `Lapsed`.
    Bind {
        /// The group.
        group: GroupId,
        /// Latest instant a write may happen.
        deadline: Instant,
    },
    /// Refresh: the gate's atomic delete+add (reports `Lapsed` if the entry had
    /// expired), and the address lifetime if `renew_address`. Same deadline checks.
    Refresh {
        /// The group.
        group: GroupId,
        /// Latest instant a write may happen.
        deadline: Instant,
        /// Also renew the addresses' `valid_lft`.
        renew_address: bool,
    },
    /// Remove the gate entries and addresses, then verify they are gone.
    Unbind {
        /// The group.
        group: GroupId,
    },
}

impl KernelOp {
    /// The group concerned, if any.
    pub fn group(&self) -> Option<GroupId> {
        match self {
            KernelOp::Flush => None,
            KernelOp::Bind { group, .. }
            | KernelOp::Refresh { group, .. }
            | KernelOp::Unbind { group } => Some(*group),
        }
    }
}

/// Something worth logging or counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// This node now answers for the group; `took` is from claim start to bound.
    Acquired {
        /// Group.
        group: GroupId,
        /// Claim start → bound.
        took: Duration,
        /// From this node's view naming it the owner to bound (the failover time
        /// this node can see).
        since_assigned: Duration,
        /// The previous designated owner in this node's view.
        from: Option<String>,
    },
    /// This node stopped answering for the group, on purpose.
    Released {
        /// Group.
        group: GroupId,
        /// Why.
        reason: ReleaseReason,
    },
    /// This node stopped answering because its lease or the kernel said so.
    Fenced {
        /// Group.
        group: GroupId,
        /// Why.
        reason: FenceReason,
    },
    /// A held group's gate entry had expired (a stall longer than E − F) and it was
    /// bound again in place under its lease (docs/safety.md §4.15).
    Rearmed {
        /// Group.
        group: GroupId,
        /// How long it had gone without a successful refresh.
        unrefreshed: Duration,
    },
    /// The probe found the group answered by someone else.
    Conflict {
        /// Group.
        group: GroupId,
    },
    /// A claim was withdrawn after contention.
    Withdrew {
        /// Group.
        group: GroupId,
    },
    /// The start-up flush and wait are over; voting starts at `voting_from`.
    Started {
        /// End of the start-up wait W.
        voting_from: Instant,
    },
    /// The membership view changed.
    ViewChanged {
        /// Active members, this node included.
        members: usize,
    },
    /// All groups released and the cluster left.
    Left,
    /// Something the operator should know.
    Warning(String),
}

/// An effect for the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a datagram (core format; the shell wraps it in its envelope).
    Send {
        /// Destination.
        to: SocketAddr,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Perform a kernel operation and report it with its id.
    Kernel {
        /// Id to report back.
        id: u64,
        /// The operation.
        op: KernelOp,
    },
    /// Probe (ARP / NS) the group's addresses and report with `handle_probe`.
    Probe {
        /// Group.
        group: GroupId,
    },
    /// Announce the group's addresses (gratuitous ARP / unsolicited NA burst).
    Announce {
        /// Group.
        group: GroupId,
    },
    /// Log or count.
    Event(Event),
}

/// Counters. Names are stable; the metrics layer exports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handed to the engine.
    pub datagrams_in: u64,
    /// Datagrams emitted.
    pub datagrams_out: u64,
    /// Bytes handed in.
    pub bytes_in: u64,
    /// Bytes emitted.
    pub bytes_out: u64,
    /// Dropped datagrams by cause.
    pub drops: BTreeMap<&'static str, u64>,
    /// Claims sent (one per round, to all voters).
    pub claims_sent: u64,
    /// Answers that rode on a claim (§4.13).
    pub answers_rode: u64,
    /// Held answers that went out alone (no claim came within L).
    pub answers_alone: u64,
    /// Claims ignored as a voter, by cause.
    pub claims_ignored: BTreeMap<&'static str, u64>,
    /// Groups acquired.
    pub acquisitions: u64,
    /// Releases by reason.
    pub releases: BTreeMap<&'static str, u64>,
    /// Fences by reason.
    pub fences: BTreeMap<&'static str, u64>,
    /// Held groups re-armed in place after their gate entry expired (§4.15).
    pub rearms: u64,
    /// Probe conflicts.
    pub conflicts: u64,
    /// Contention withdrawals.
    pub withdrawals: u64,
    /// Quiescence windows started (restarts of Q).
    pub quiescence_waits: u64,
    /// Refreshes issued.
    pub refreshes: u64,
    /// Refreshes that failed or lapsed.
    pub refresh_failures: u64,
    /// Kernel operations the shell reported failed (each retried on a timer).
    pub kernel_failures: u64,
    /// Times another process with this node's name was found running.
    pub name_collisions: u64,
    /// Assignment recomputations.
    pub view_changes: u64,
}

/// Where the engine is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Waiting for the start-up flush to be confirmed.
    Flushing,
    /// Running.
    Running,
    /// Releasing everything before leaving.
    Leaving,
    /// Left the cluster.
    Left,
}

/// One group as [`Engine::status`](super::Engine::status) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    /// Group id.
    pub group: GroupId,
    /// Designated owner in this node's view.
    pub owner: Option<String>,
    /// This node's phase for it.
    pub phase: &'static str,
    /// Since when the current assignment has been calm.
    pub calm_since: Instant,
    /// Since when the group has been in its phase.
    pub phase_since: Instant,
}

/// A snapshot for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Node name.
    pub name: String,
    /// Life stage.
    pub life: Life,
    /// Our own metadata.
    pub meta: NodeMeta,
    /// Members (not this node).
    pub members: Vec<MemberView>,
    /// Per group.
    pub groups: Vec<GroupStatus>,
    /// Whether the quorum is currently reachable in the two-node mode's sense, or
    /// how many voters answered recently in majority mode.
    pub voters_heard: usize,
}
