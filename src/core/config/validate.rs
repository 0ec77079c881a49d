//! [`ClusterConfig::validate`]: the inequalities of `docs/safety.md` (I1–I12), each
//! checked and, when broken, named with the numbers that break it.

use std::collections::BTreeSet;

use super::*;

impl ClusterConfig {
    /// Checks the configuration. Returns warnings (e.g. an even voter count) when it
    /// is usable, or the first broken rule.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        let t = &self.timing;
        for v in self.voters.iter().chain(&self.witnesses) {
            validate_name(v)?;
        }
        // Voters (I8).
        match self.quorum {
            QuorumMode::Majority => {
                if self.voters.is_empty() {
                    return Err(ConfigError::Voters(
                        "quorum mode needs an explicit voter set: name the voters with --voters A,B,C (the same list on every node)"
                            .into(),
                    ));
                }
                if self.voters.len() > MAX_VOTERS {
                    return Err(ConfigError::Voters(format!(
                        "{} voters is more than the limit of {MAX_VOTERS}; name a few voters and let the other nodes hold VIPs without voting",
                        self.voters.len()
                    )));
                }
                if self.voters.len().is_multiple_of(2) {
                    warnings.push(format!(
                        "an even number of voters ({}) leaves no side with a quorum in an even split: add a witness or drop a voter (I8)",
                        self.voters.len()
                    ));
                }
                if self.voters.len() == 1 {
                    warnings
                        .push("a single voter is a single point of failure for every VIP".into());
                }
            }
            QuorumMode::Off => {
                if self.voters.len() != 2 {
                    return Err(ConfigError::Voters(format!(
                        "--quorum off is for exactly two nodes, named with --voters A,B; got {}",
                        self.voters.len()
                    )));
                }
                if !self.witnesses.is_empty() {
                    return Err(ConfigError::Voters(
                        "--quorum off takes no witness: with a witness, use the default --quorum majority".into(),
                    ));
                }
            }
        }
        let set_bytes = self.voter_set().encoded_len();
        if set_bytes > crate::core::lease::sets::MAX_SET_BYTES {
            return Err(ConfigError::Voters(format!(
                "the voter names take {set_bytes} bytes; at most {} fit the one datagram a voter set travels in: use shorter names or fewer voters",
                crate::core::lease::sets::MAX_SET_BYTES
            )));
        }
        for w in &self.witnesses {
            if self.voter_index(w).is_none() {
                return Err(ConfigError::Voters(format!(
                    "witness {w:?} is not in the voter set; a witness is a voter that holds nothing"
                )));
            }
        }
        // Groups.
        if self.groups.is_empty() {
            return Err(ConfigError::Groups(
                "no VIP configured: give at least one --vip".into(),
            ));
        }
        if self.groups.len() > MAX_GROUPS {
            return Err(ConfigError::Groups(format!(
                "{} groups is more than the limit of {MAX_GROUPS}",
                self.groups.len()
            )));
        }
        let mut seen = BTreeSet::new();
        for g in &self.groups {
            if g.vips.is_empty() || g.vips.len() > MAX_GROUP_ADDRS {
                return Err(ConfigError::Groups(format!(
                    "a group must have 1 to {MAX_GROUP_ADDRS} addresses"
                )));
            }
            for v in &g.vips {
                if !seen.insert(v.addr) {
                    return Err(ConfigError::Groups(format!("{} appears twice", v.addr)));
                }
                let max = if v.addr.is_ipv4() { 32 } else { 128 };
                if v.prefix_len > max || v.prefix_len == 0 {
                    return Err(ConfigError::Groups(format!(
                        "{v}: prefix length must be 1 to {max}"
                    )));
                }
                if let Some(what) = subnet_edge(v.addr, v.prefix_len) {
                    return Err(ConfigError::Groups(format!(
                        "{v}: that is the {what} address of its own prefix; use a host address (or /{max})"
                    )));
                }
                if v.addr.is_unspecified()
                    || v.addr.is_loopback()
                    || v.addr.is_multicast()
                    || matches!(v.addr, IpAddr::V4(a) if a.is_broadcast() || a.is_link_local())
                    || matches!(v.addr, IpAddr::V6(a) if a.is_unicast_link_local())
                {
                    return Err(ConfigError::Groups(format!(
                        "{}: not a usable unicast address for a VIP",
                        v.addr
                    )));
                }
            }
        }
        // Clock bound (I7).
        if !(t.rho > 0.0 && t.rho <= MAX_RHO) {
            return Err(ConfigError::Inequality {
                id: "I7",
                detail: format!(
                    "ρ = {} must be in (0, {MAX_RHO}]; use ntpd/timesyncd or chrony with maxslewrate ≤ 500",
                    t.rho
                ),
            });
        }
        if t.claim_period < Duration::from_millis(5) {
            return Err(ConfigError::Inequality {
                id: "I4",
                detail: format!("R = {} is below the 5 ms floor", ms(t.claim_period)),
            });
        }
        // Renewal survives two lost rounds (I4).
        let need = self.renewal_need();
        if self.lease_validity() < need {
            return Err(ConfigError::Inequality {
                id: "I4",
                detail: format!(
                    "T(1-2ρ) = {} must be ≥ 3R + RTT{} = {}: raise T or lower R",
                    ms(self.lease_validity()),
                    if self.fence == FenceKind::Gate {
                        " + E(1+ρ) + A"
                    } else {
                        ""
                    },
                    ms(need)
                ),
            });
        }
        // Address lifetime refresh (I5).
        if t.address_refresh > MAX_ADDRESS_REFRESH || t.address_refresh.is_zero() {
            return Err(ConfigError::Inequality {
                id: "I5",
                detail: format!(
                    "address refresh {} must be in (0, 500 ms]: the kernel may expire a valid_lft 1 address 0.98 s after its refresh",
                    ms(t.address_refresh)
                ),
            });
        }
        // Gate (I6).
        if self.fence == FenceKind::Gate {
            if t.gate_refresh.is_zero() || t.gate_timeout < t.gate_refresh * 2 {
                return Err(ConfigError::Inequality {
                    id: "I6",
                    detail: format!(
                        "E = {} must be ≥ 2F = {}",
                        ms(t.gate_timeout),
                        ms(t.gate_refresh * 2)
                    ),
                });
            }
            if t.gate_arm < Duration::from_millis(2) || t.gate_arm > t.gate_timeout {
                return Err(ConfigError::Inequality {
                    id: "I6",
                    detail: format!(
                        "the arm timeout A = {} must be in [2 ms, E]",
                        ms(t.gate_arm)
                    ),
                });
            }
        }
        // SWIM (I10).
        if t.probe_rtt.is_zero() || t.probe_period < t.probe_rtt * 3 {
            return Err(ConfigError::Inequality {
                id: "I10",
                detail: format!(
                    "probe period {} must be ≥ 3 × probe RTT = {}",
                    ms(t.probe_period),
                    ms(t.probe_rtt * 3)
                ),
            });
        }
        if t.gossip_period.is_zero() || t.suspect_to_down < t.gossip_period {
            return Err(ConfigError::Inequality {
                id: "I10",
                detail: format!(
                    "suspicion time {} must be ≥ the gossip period {} (a suspected member hears of it in time to refute)",
                    ms(t.suspect_to_down),
                    ms(t.gossip_period)
                ),
            });
        }
        Ok(warnings)
    }
}
