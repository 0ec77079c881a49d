//! What this node's membership view says about names: who is alive, which process
//! carries a name, who may be given groups, and which names two processes carry at
//! once (DESIGN §2.3 rule 1: one agent per name; docs/safety.md §4.10).
//!
//! A [`View`] is a snapshot of [`Membership::members`](super::membership::Membership::members),
//! refreshed whenever the membership reports a change; every question here is
//! answered from it alone.

use std::net::SocketAddr;

use super::assign::Candidate;
use super::config::ClusterConfig;
use super::membership::MemberView;
use super::quiescence::HolderSig;
use super::table::TableDigest;
use super::wire::NodeMeta;

/// The members this node sees (itself excluded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View(Vec<MemberView>);

impl View {
    /// A view of `members`.
    pub fn new(members: Vec<MemberView>) -> View {
        View(members)
    }

    /// Every member.
    pub fn members(&self) -> &[MemberView] {
        &self.0
    }

    /// Active (alive or suspect) members.
    pub fn active(&self) -> impl Iterator<Item = &MemberView> {
        self.0.iter().filter(|m| m.state.is_active())
    }

    /// The member at `addr`, if any.
    pub fn at(&self, addr: SocketAddr) -> Option<&MemberView> {
        self.0.iter().find(|m| m.id.addr == addr)
    }

    /// Whether an active member carries `name`.
    pub fn is_alive(&self, name: &str) -> bool {
        self.active().any(|m| m.id.name == name)
    }

    /// Addresses of the active members carrying `name`.
    pub fn active_addrs_of(&self, name: &str) -> Vec<SocketAddr> {
        self.active()
            .filter(|m| m.id.name == name)
            .map(|m| m.id.addr)
            .collect()
    }

    /// The address of the freshest identity carrying `name` (active first, then the
    /// newest epoch).
    pub fn freshest_addr(&self, name: &str) -> Option<SocketAddr> {
        self.0
            .iter()
            .filter(|m| m.id.name == name)
            .max_by_key(|m| (m.state.is_active(), m.id.epoch))
            .map(|m| m.id.addr)
    }

    /// What the quiescence window watches of `name`: state, incarnation and epoch of
    /// its newest identity.
    pub fn holder_sig(&self, name: &str) -> Option<HolderSig> {
        self.0
            .iter()
            .filter(|m| m.id.name == name)
            .max_by_key(|m| m.id.epoch)
            .map(|m| (m.state, m.incarnation, m.id.epoch))
    }

    /// Whether `(name, nonce)` is the lease identity of a live process: an active
    /// member of that name gossips that nonce.
    pub fn lease_identity_live(&self, name: &str, nonce: u64) -> bool {
        self.active().any(|m| {
            m.id.name == name
                && m.meta
                    .as_ref()
                    .is_some_and(|x| x.name == name && x.lease_nonce == nonce)
        })
    }

    /// Whether an active member has made itself eligible.
    pub fn someone_eligible(&self) -> bool {
        self.active()
            .any(|m| m.meta.as_ref().is_some_and(|x| x.eligible))
    }

    /// Names carried by two or more active members at once (two processes with one
    /// name): their claims and votes do not count, and they are given no group.
    pub fn colliding_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.active().map(|m| m.id.name.as_str()).collect();
        names.sort_unstable();
        let mut out: Vec<&str> = names
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        out.dedup();
        out
    }

    /// Whether `name` is carried by two active members at once.
    pub fn is_colliding(&self, name: &str) -> bool {
        self.colliding_names().contains(&name)
    }

    /// The candidates for rendezvous assignment (DESIGN §2.1): this node (`own`)
    /// first, then active members, newest identity first, each name once; only
    /// eligible, non-draining nodes allowed to hold and not colliding.
    /// Each comes with the digest of the group table its `prefers` and `holds` index.
    pub fn candidates(&self, own: &NodeMeta, cfg: &ClusterConfig) -> Vec<(Candidate, TableDigest)> {
        let colliding = self.colliding_names();
        let mut cands: Vec<(Candidate, TableDigest)> = Vec::new();
        let mut consider = |meta: &NodeMeta| {
            if meta.eligible
                && !meta.draining
                && !colliding.contains(&meta.name.as_str())
                && cfg.may_hold(&meta.name)
                && !cands.iter().any(|(c, _)| c.name == meta.name)
            {
                cands.push((
                    Candidate {
                        name: meta.name.clone(),
                        weight: meta.weight,
                        prefers: meta.prefers.clone(),
                        holds: meta.held.clone(),
                        fresh: meta.recent.clone(),
                        unable: meta.unable.clone(),
                    },
                    meta.table,
                ));
            }
        };
        consider(own);
        let mut active: Vec<&MemberView> = self.active().collect();
        active.sort_by_key(|m| std::cmp::Reverse(m.id.epoch));
        for m in active {
            if let Some(meta) = &m.meta
                && meta.name == m.id.name
            {
                consider(meta);
            }
        }
        cands
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::membership::{Liveness, NodeId};

    fn meta(name: &str, eligible: bool, nonce: u64) -> NodeMeta {
        NodeMeta {
            name: name.into(),
            generation: 1,
            version: 0,
            eligible,
            draining: false,
            weight: 1,
            fingerprint: 0,
            prefers: vec![],
            held: vec![],
            recent: vec![],
            lease_nonce: nonce,
            config: Default::default(),
            table: [0; 16],
            unable: Vec::new(),
        }
    }

    fn member(
        name: &str,
        port: u16,
        epoch: u64,
        state: Liveness,
        m: Option<NodeMeta>,
    ) -> MemberView {
        MemberView {
            id: NodeId {
                addr: SocketAddr::from(([10, 0, 0, 1], port)),
                name: name.into(),
                epoch,
            },
            incarnation: 0,
            state,
            meta: m,
        }
    }

    #[test]
    fn two_active_processes_under_one_name_collide_a_dead_one_does_not() {
        let v = View::new(vec![
            member("b", 1, 1, Liveness::Alive, None),
            member("b", 2, 2, Liveness::Suspect, None),
            member("c", 3, 1, Liveness::Alive, None),
            member("c", 4, 2, Liveness::Down, None),
        ]);
        assert_eq!(v.colliding_names(), vec!["b"]);
        assert!(v.is_colliding("b") && !v.is_colliding("c"));
        // The freshest identity of "c" is its live one, though older.
        assert_eq!(
            v.freshest_addr("c"),
            Some(SocketAddr::from(([10, 0, 0, 1], 3)))
        );
        assert_eq!(v.holder_sig("c"), Some((Liveness::Down, 0, 2)));
    }

    #[test]
    fn a_lease_identity_is_live_only_if_an_active_member_gossips_it() {
        let v = View::new(vec![
            member("b", 1, 2, Liveness::Alive, Some(meta("b", true, 7))),
            member("c", 2, 1, Liveness::Down, Some(meta("c", true, 9))),
        ]);
        assert!(v.lease_identity_live("b", 7));
        assert!(!v.lease_identity_live("b", 6), "a previous process");
        assert!(!v.lease_identity_live("c", 9), "down");
    }

    #[test]
    fn candidates_are_us_then_eligible_members_newest_first_each_name_once() {
        let cfg = ClusterConfig::new(
            crate::core::config::QuorumMode::Majority,
            crate::core::config::FenceKind::Gate,
            vec!["a".into(), "b".into(), "c".into()],
            vec![],
            vec![],
            crate::core::config::Timing::profile(crate::core::config::Profile::Default),
        );
        let v = View::new(vec![
            member("b", 1, 1, Liveness::Alive, Some(meta("b", true, 1))),
            member("c", 2, 5, Liveness::Alive, Some(meta("c", true, 2))),
            member("d", 3, 6, Liveness::Alive, Some(meta("d", false, 3))),
            member("e", 4, 7, Liveness::Alive, Some(meta("x", true, 4))),
        ]);
        let names: Vec<String> = v
            .candidates(&meta("a", true, 0), &cfg)
            .into_iter()
            .map(|(c, _)| c.name)
            .collect();
        // d is not eligible; e gossips metadata of another name.
        assert_eq!(names, vec!["a", "c", "b"]);
    }
}
