//! Which interface each VIP lives on, and which groups a node can hold given the
//! state of its links.
//!
//! A group's addresses may live on different interfaces (`--vip-group
//! eth0:10.0.0.5,eth1:192.0.2.5`: the public and the private address of a
//! multi-homed router move together). An address without an interface lives on the
//! node's `--interface`. The mapping is the node's own (another node may name its
//! interfaces differently); the group table that nodes share holds addresses only.
//!
//! A group is eligible on a node only while every interface it needs exists and is
//! up there (keepalived's `track_interface`): a node whose `eth1` goes down hands
//! over the groups that use `eth1`, and nothing else ([`Homes::unable`] →
//! [`crate::core::engine::Engine::set_unable`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::config::{GroupId, VipGroup};

/// Where this node's VIPs live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Homes {
    /// The interface of every address not named in `of` (`--interface`).
    pub default: Option<String>,
    /// Addresses given with an interface (`IF:ADDR`).
    pub of: BTreeMap<IpAddr, String>,
}

impl Homes {
    /// The interface `addr` lives on (`None`: no interface named and no default).
    pub fn iface(&self, addr: IpAddr) -> Option<&str> {
        self.of
            .get(&addr)
            .or(self.default.as_ref())
            .map(String::as_str)
    }

    /// Every interface the groups use, sorted, each once.
    pub fn interfaces(&self, groups: &[VipGroup]) -> Vec<String> {
        let set: BTreeSet<&str> = groups
            .iter()
            .flat_map(|g| g.vips.iter())
            .filter_map(|v| self.iface(v.addr))
            .collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// Addresses of the groups that have no interface (neither named nor a default).
    pub fn homeless(&self, groups: &[VipGroup]) -> Vec<IpAddr> {
        groups
            .iter()
            .flat_map(|g| g.vips.iter())
            .map(|v| v.addr)
            .filter(|&a| self.iface(a).is_none())
            .collect()
    }

    /// The groups (slots of `groups`) this node cannot hold: one of their addresses
    /// lives on an interface that is not up (`up` says which are).
    pub fn unable(&self, groups: &[VipGroup], up: impl Fn(&str) -> bool) -> Vec<GroupId> {
        groups
            .iter()
            .enumerate()
            .filter(|(_, g)| {
                g.vips
                    .iter()
                    .any(|v| self.iface(v.addr).is_none_or(|i| !up(i)))
            })
            .map(|(i, _)| i as GroupId)
            .collect()
    }
}

/// Splits `IF:ADDR[/PREFIX]` into the interface and the rest; plain `ADDR[/PREFIX]`
/// gives `None`. An IPv6 address is itself full of colons, so the part before the
/// first colon is an interface only when it cannot begin an address: it has a
/// character that is not a hex digit (`eth0`, `br-lan`, `bond0.12`). An interface
/// named only with hex digits (`abc`) is written `abc:[2001:db8::1]`; brackets are
/// accepted around any address.
pub fn split_iface(s: &str) -> Result<(Option<&str>, &str), String> {
    let s = s.trim();
    fn unbracket<'a>(s: &str, r: &'a str) -> Result<&'a str, String> {
        match r.strip_prefix('[') {
            None => Ok(r),
            Some(rest) => match rest.split_once(']') {
                Some((a, "")) => Ok(a),
                Some(_) => Err(format!(
                    "{s:?}: write a prefix inside the brackets, as [ADDR/PREFIX]"
                )),
                None => Err(format!("{s:?}: unbalanced brackets")),
            },
        }
    }
    let Some((head, rest)) = s.split_once(':') else {
        return Ok((None, s));
    };
    if s.starts_with('[') {
        return Ok((None, unbracket(s, s)?));
    }
    let is_iface = !head.is_empty() && !head.chars().all(|c| c.is_ascii_hexdigit());
    let bracketed = rest.starts_with('[');
    if !is_iface && !bracketed {
        return Ok((None, s));
    }
    validate_ifname(head).map_err(|e| format!("{s:?}: {e}"))?;
    let rest = unbracket(s, rest)?;
    if rest.is_empty() {
        return Err(format!("{s:?}: no address after the interface"));
    }
    Ok((Some(head), rest))
}

/// An interface name as Linux takes it: 1–15 bytes, no `/`, `:`, whitespace.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "interface name {name:?} must be 1 to 15 characters"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not an interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("interface name {name:?} may not contain {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Vip;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn group(addrs: &[&str]) -> VipGroup {
        VipGroup::new(addrs.iter().map(|s| Vip::host(a(s))).collect())
    }

    #[test]
    fn interface_prefixes_are_told_from_ipv6_addresses() {
        assert_eq!(split_iface("10.0.0.1"), Ok((None, "10.0.0.1")));
        assert_eq!(
            split_iface("eth1:10.0.0.1/24"),
            Ok((Some("eth1"), "10.0.0.1/24"))
        );
        assert_eq!(split_iface("2001:db8::1"), Ok((None, "2001:db8::1")));
        assert_eq!(split_iface("fe80::1/64"), Ok((None, "fe80::1/64")));
        assert_eq!(
            split_iface("eth1:2001:db8::1"),
            Ok((Some("eth1"), "2001:db8::1"))
        );
        assert_eq!(
            split_iface("br-lan:fd00::5/64"),
            Ok((Some("br-lan"), "fd00::5/64"))
        );
        assert_eq!(
            split_iface("abc:[2001:db8::1/64]"),
            Ok((Some("abc"), "2001:db8::1/64"))
        );
        assert_eq!(split_iface("[2001:db8::1]"), Ok((None, "2001:db8::1")));
        // `abc:…` without brackets is an address (all hex), whatever it parses to.
        assert_eq!(split_iface("abc:db8::1"), Ok((None, "abc:db8::1")));
        assert!(split_iface("eth1:").is_err());
        assert!(split_iface("eth1:[10.0.0.1").is_err());
        assert!(split_iface("a-very-long-interface-name:10.0.0.1").is_err());
        assert!(split_iface("eth 1:10.0.0.1").is_err());
    }

    #[test]
    fn a_group_needs_every_interface_it_uses() {
        let h = Homes {
            default: Some("eth0".into()),
            of: [(a("192.0.2.2"), "eth1".to_string())].into(),
        };
        let groups = [
            group(&["10.0.0.2", "192.0.2.2"]),
            group(&["10.0.0.3"]),
            group(&["192.0.2.2"]),
        ];
        assert_eq!(h.interfaces(&groups), ["eth0", "eth1"]);
        assert_eq!(h.unable(&groups, |_| true), Vec::<GroupId>::new());
        assert_eq!(h.unable(&groups, |i| i != "eth1"), [0, 2]);
        assert_eq!(h.unable(&groups, |i| i != "eth0"), [0, 1]);
        assert_eq!(h.iface(a("10.0.0.3")), Some("eth0"));
        let no_default = Homes { default: None, ..h };
        assert_eq!(no_default.homeless(&groups), [a("10.0.0.2"), a("10.0.0.3")]);
        assert_eq!(no_default.unable(&groups, |_| true), [0, 1]);
    }
}
