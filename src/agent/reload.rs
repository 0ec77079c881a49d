//! Reload: SIGHUP, `wackamole reload` and `POST /reload` re-read the command line's
//! config file (and the key and token files it names), validate all of it as a start
//! would, and apply only the difference — or nothing at all.
//!
//! [`plan`] is pure: old settings and options against the newly loaded ones. It
//! refuses the whole reload, naming every offending setting, when something changed
//! that cannot change under a running agent ("needs a restart": node name, bind
//! address, interface, quorum mode, fence, timing, the listener, the log format,
//! authentication switched on or off). Otherwise it lists what to apply; the shell
//! applies it ([`super::shell`]), and nothing it applies can fail half-way: every
//! input was validated by [`crate::cli::load::validate`] first, and a voter step by
//! the engine's step rule ([`crate::core::lease::sets`]) before anything is applied.

use crate::cli::Settings;
use crate::cli::load::Loaded;

use super::setup::ShellOptions;

/// What a reload changes, each part applied by the shell.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Weight, eligibility or preferences: the engine's own metadata.
    pub node: bool,
    /// Health checks or their policy: the checker is restarted.
    pub checks: bool,
    /// Hook commands or timeout.
    pub hooks: bool,
    /// GARP count, spacing or notify targets: the ARP thread.
    pub arp: bool,
    /// The periodic re-announcement.
    pub garp_refresh: bool,
    /// The admin token.
    pub token: bool,
    /// The keyring.
    pub keys: bool,
    /// The log filter.
    pub log: bool,
    /// The join list (used when the agent next has to find the cluster).
    pub join: bool,
    /// The VIP pool: groups added, removed or changed.
    pub pool: bool,
    /// The voter set (one voter added or removed, witnesses with it): checked by the
    /// engine's step rule first.
    pub voters: bool,
    /// One line per change, for the log, `/status` and the reply.
    pub changes: Vec<String>,
}

impl Plan {
    /// Whether anything changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Compares the running configuration with a newly loaded one.
pub(super) fn plan(s: &Settings, o: &ShellOptions, new: &Loaded) -> Result<Plan, String> {
    let (ns, no) = (&new.settings, &new.opts);
    let (c, nc) = (&s.cluster, &ns.cluster);
    let mut restart: Vec<String> = Vec::new();
    let mut fixed = |what: &str, changed: bool, from: String, to: String| {
        if changed {
            restart.push(format!("{what} ({from} → {to})"));
        }
    };
    fixed(
        "node-name",
        s.node.name != ns.node.name,
        s.node.name.clone(),
        ns.node.name.clone(),
    );
    fixed(
        "bind",
        s.bind != ns.bind,
        s.bind.to_string(),
        ns.bind.to_string(),
    );
    fixed(
        "advertise",
        s.advertise != ns.advertise,
        s.advertise.map_or("none".into(), |a| a.to_string()),
        ns.advertise.map_or("none".into(), |a| a.to_string()),
    );
    fixed(
        "dynamic-interfaces",
        s.dynamic_interfaces != ns.dynamic_interfaces,
        s.dynamic_interfaces.to_string(),
        ns.dynamic_interfaces.to_string(),
    );
    fixed(
        "interface",
        s.interface != ns.interface,
        format!("{:?}", s.interface),
        format!("{:?}", ns.interface),
    );
    // An address that stays in the pool stays on its interface: moving it is a
    // removal in one reload and an addition in the next.
    for v in c.groups.iter().flat_map(|g| g.vips.iter()) {
        let stays = nc
            .groups
            .iter()
            .any(|g| g.vips.iter().any(|w| w.addr == v.addr));
        let (from, to) = (s.homes.iface(v.addr), ns.homes.iface(v.addr));
        fixed(
            &format!(
                "interface of {} (or remove it in one reload and add it in the next)",
                v.addr
            ),
            stays && from != to,
            from.unwrap_or("none").to_string(),
            to.unwrap_or("none").to_string(),
        );
    }
    fixed(
        "quorum",
        c.quorum != nc.quorum,
        format!("{:?}", c.quorum),
        format!("{:?}", nc.quorum),
    );
    fixed(
        "fence",
        c.fence != nc.fence,
        format!("{:?}", c.fence),
        format!("{:?}", nc.fence),
    );
    fixed(
        "timing (profile, failback-delay, rho)",
        c.timing != nc.timing,
        "running".into(),
        "different".into(),
    );
    fixed(
        "metrics-addr",
        o.ops.listen != no.ops.listen,
        format!("{:?}", o.ops.listen),
        format!("{:?}", no.ops.listen),
    );
    fixed(
        "log-format",
        o.log_format != no.log_format,
        o.log_format.clone(),
        no.log_format.clone(),
    );
    fixed(
        "key-file / insecure",
        o.secrets.is_empty() != no.secrets.is_empty(),
        if o.secrets.is_empty() {
            "insecure"
        } else {
            "keyed"
        }
        .into(),
        if no.secrets.is_empty() {
            "insecure"
        } else {
            "keyed"
        }
        .into(),
    );
    if !restart.is_empty() {
        return Err(format!("needs a restart: {}", restart.join("; ")));
    }
    let mut p = Plan::default();
    let mut note = |flag: &mut bool, changed: bool, line: String| {
        if changed {
            *flag = true;
            p.changes.push(line);
        }
    };
    let mut voters = false;
    note(
        &mut voters,
        (&c.voters, &c.witnesses) != (&nc.voters, &nc.witnesses),
        if c.witnesses == nc.witnesses {
            format!("voters {:?} → {:?}", c.voters, nc.voters)
        } else {
            format!(
                "voters {:?} → {:?}, witnesses {:?} → {:?}",
                c.voters, nc.voters, c.witnesses, nc.witnesses
            )
        },
    );
    if voters {
        // One voter per step (the rest of the step rule needs the running view: the
        // shell asks the engine before applying anything).
        crate::core::lease::sets::step(&c.voter_set(), &nc.voter_set(), &ns.node.name)?;
    }
    let (n, nn) = (&s.node, &ns.node);
    let mut node = false;
    note(
        &mut node,
        n.weight != nn.weight,
        format!("weight {} → {}", n.weight, nn.weight),
    );
    note(
        &mut node,
        n.eligible != nn.eligible,
        format!("eligible {} → {}", n.eligible, nn.eligible),
    );
    note(
        &mut node,
        n.prefers != nn.prefers,
        format!("prefer: {} → {} groups", n.prefers.len(), nn.prefers.len()),
    );
    let mut checks = false;
    note(
        &mut checks,
        o.ops.checks != no.ops.checks || o.ops.policy != no.ops.policy,
        format!(
            "health checks: {} → {}",
            o.ops.checks.len(),
            no.ops.checks.len()
        ),
    );
    let mut hooks = false;
    note(&mut hooks, o.ops.hooks != no.ops.hooks, "hooks".into());
    let mut arp = false;
    note(
        &mut arp,
        (o.garp_count, o.garp_interval, &o.notify) != (no.garp_count, no.garp_interval, &no.notify),
        "announcements (garp-count, garp-interval, notify, notify-rate, notify-neighbours, neighbour-interval)".into(),
    );
    let mut garp_refresh = false;
    note(
        &mut garp_refresh,
        o.garp_refresh != no.garp_refresh,
        format!("garp-refresh {:?} → {:?}", o.garp_refresh, no.garp_refresh),
    );
    let mut token = false;
    note(
        &mut token,
        o.ops.token != no.ops.token,
        "admin token".into(),
    );
    let mut keys = false;
    note(
        &mut keys,
        o.secrets != no.secrets,
        format!("keyring: {} → {} keys", o.secrets.len(), no.secrets.len()),
    );
    let mut log = false;
    note(
        &mut log,
        o.log != no.log,
        format!("log filter {:?} → {:?}", o.log, no.log),
    );
    let mut join = false;
    note(&mut join, s.join != ns.join, "join list".into());
    let added = nc.groups.iter().filter(|g| !c.groups.contains(g)).count();
    let removed = c.groups.iter().filter(|g| !nc.groups.contains(g)).count();
    let mut pool = false;
    note(
        &mut pool,
        added + removed > 0,
        format!("VIP pool: {added} group(s) added, {removed} removed"),
    );
    p.node = node;
    p.checks = checks;
    p.hooks = hooks;
    p.arp = arp;
    p.garp_refresh = garp_refresh;
    p.token = token;
    p.keys = keys;
    p.log = log;
    p.join = join;
    p.pool = pool;
    p.voters = voters;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::load::Source;

    fn load(args: &[&str]) -> Loaded {
        let mut argv = vec![
            "wackamole",
            "check-config",
            "--node-name",
            "a",
            "--voters",
            "a,b,c",
            "--vip",
            "10.0.0.100,10.0.0.101",
            "--insecure",
        ];
        argv.extend_from_slice(args);
        Source::new(argv.into_iter().map(Into::into).collect())
            .load_run()
            .unwrap()
    }

    fn diff(old: &[&str], new: &[&str]) -> Result<Plan, String> {
        let o = load(old);
        plan(&o.settings, &o.opts, &load(new))
    }

    #[test]
    fn the_same_configuration_changes_nothing() {
        assert!(diff(&[], &[]).unwrap().is_empty());
    }

    #[test]
    fn live_settings_are_applied_each_on_its_own() {
        let p = diff(&[], &["--weight", "3"]).unwrap();
        assert!(
            p.node && !p.checks && p.changes == ["weight 1 → 3"],
            "{p:?}"
        );
        let p = diff(&[], &["--check-tcp", "127.0.0.1:80"]).unwrap();
        assert!(p.checks && !p.node, "{p:?}");
        let p = diff(&[], &["--on-acquire", "true"]).unwrap();
        assert!(p.hooks, "{p:?}");
        let p = diff(&[], &["--garp-count", "2", "--log", "debug"]).unwrap();
        assert!(p.arp && p.log && p.changes.len() == 2, "{p:?}");
        let p = diff(&[], &["--prefer", "10.0.0.100=a"]).unwrap();
        assert!(p.node, "{p:?}");
        // Another node's preference is not this node's change.
        assert!(diff(&[], &["--prefer", "10.0.0.100=b"]).unwrap().is_empty());
    }

    #[test]
    fn a_pool_change_is_applied_live() {
        let p = diff(&[], &["--vip", "10.0.0.102"]).unwrap();
        assert!(p.pool, "{p:?}");
        assert_eq!(p.changes, ["VIP pool: 1 group(s) added, 0 removed"]);
    }

    #[test]
    fn voters_change_one_per_step() {
        // (--voters adds to the base list a,b,c.)
        let p = diff(&[], &["--voters", "d"]).unwrap();
        assert!(p.voters && p.changes == [r#"voters ["a", "b", "c"] → ["a", "b", "c", "d"]"#]);
        let p = diff(&["--voters", "d"], &[]).unwrap();
        assert!(p.voters, "{p:?}");
        let e = diff(&[], &["--voters", "d,e"]).unwrap_err();
        assert!(e.contains("one voter at a time"), "{e}");
        let e = diff(&["--voters", "d"], &["--voters", "e"]).unwrap_err();
        assert!(e.contains("changes 2 voters (d, e)"), "{e}");
        let e = diff(&[], &["--witness", "c"]).unwrap_err();
        assert!(e.contains("witness"), "{e}");
    }

    #[test]
    fn restart_only_settings_refuse_the_whole_reload_and_name_each() {
        let e = diff(&[], &["--fence", "address", "--weight", "2"]).unwrap_err();
        assert!(e.contains("needs a restart: fence"), "{e}");
        let e = diff(&[], &["--profile", "fast", "--bind", "0.0.0.0:7000"]).unwrap_err();
        assert!(e.contains("bind") && e.contains("timing"), "{e}");
        let e = diff(&[], &["--advertise", "10.0.0.9"]).unwrap_err();
        assert!(
            e.contains("needs a restart: advertise (none → 10.0.0.9)"),
            "{e}"
        );
        let e = diff(&[], &["--interface", "eth9"]).unwrap_err();
        assert!(e.contains("interface"), "{e}");
        let e = diff(&[], &["--log-format", "json"]).unwrap_err();
        assert!(e.contains("log-format"), "{e}");
    }
}
