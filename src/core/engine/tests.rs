//! Single-engine unit tests (multi-engine stories are in `harness`).

use super::*;
use crate::core::config::{FenceKind, Profile, Timing, Vip, VipGroup};
use crate::core::lease::{Answer, Claim};

fn one_node() -> (Engine, Instant) {
    one_node_with(1)
}

/// A lone voter with `groups` one-address groups.
fn one_node_with(groups: u8) -> (Engine, Instant) {
    let cluster = ClusterConfig::new(
        QuorumMode::Majority,
        FenceKind::Gate,
        vec!["a".into()],
        vec![],
        (0..groups)
            .map(|i| {
                VipGroup::new(vec![Vip::host(
                    std::net::Ipv4Addr::new(10, 0, 0, 100 + i).into(),
                )])
            })
            .collect(),
        Timing::profile(Profile::Default),
    );
    let cfg = EngineConfig {
        cluster,
        node: NodeConfig::new("a"),
        bind: "10.0.0.1:7946".parse().unwrap(),
        seeds: vec!["10.0.0.1:7946".parse().unwrap()],
        cluster_size_hint: 1,
        breaks: Breaks::default(),
        keyring: 0,
    };
    let t0 = Instant::from_nanos(1_000_000_000);
    (
        Engine::new(
            cfg,
            EngineInit {
                nonce: 7,
                rng_seed: 1,
                epoch: 1,
            },
            t0,
        ),
        t0,
    )
}

fn drive(e: &mut Engine, now: Instant, until: Instant) -> Vec<Action> {
    e.drive_alone(now, until)
}

#[test]
fn flush_comes_first_and_nothing_is_sent_before_it_is_confirmed() {
    let (mut e, t0) = one_node();
    assert_eq!(
        e.poll_action(),
        Some(Action::Kernel {
            id: 1,
            op: KernelOp::Flush
        })
    );
    assert_eq!(e.poll_action(), None);
    e.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(
        e.poll_action(),
        None,
        "no action while the flush is unconfirmed"
    );
    assert_eq!(e.poll_timeout(), None);
}

/// Runs the engine's own timers until it emits a gate refresh; completes the
/// refresh and returns when it was emitted.
fn next_refresh(e: &mut Engine) -> Instant {
    for _ in 0..DRIVE_ALONE_STEPS {
        let t = e.poll_timeout().expect("a held group keeps a timer");
        e.handle_timeout(t);
        if refreshes_in(e, t) > 0 {
            return t;
        }
    }
    panic!("no refresh within {DRIVE_ALONE_STEPS} timer steps");
}

fn refreshes_in(e: &mut Engine, now: Instant) -> usize {
    let mut n = 0;
    while let Some(a) = e.poll_action() {
        if let Action::Kernel { id, op } = a {
            n += usize::from(matches!(op, KernelOp::Refresh { .. }));
            e.handle_kernel(id, KernelOutcome::Ok, now);
        }
    }
    n
}

#[test]
fn the_claim_round_carries_the_refresh_and_nothing_else_does() {
    let (mut e, t0) = one_node();
    drive(&mut e, t0, t0 + Duration::from_secs(3));
    assert!(matches!(e.phase(0), Phase::Held { .. }), "{:?}", e.phase(0));
    let f = e.config().timing.gate_refresh;
    let r = next_refresh(&mut e);
    let claims = e.stats().claims_sent;
    // A wake-up for another reason, past half the period, refreshes nothing and
    // claims nothing: the refresh waits for the round (§4.14 rule 3).
    let w = r + f * 6 / 10;
    e.handle_timeout(w);
    assert_eq!(refreshes_in(&mut e, w), 0);
    assert_eq!(e.stats().claims_sent, claims);
    // The engine's next deadline is the refresh at F, and it brings the claim
    // round with it (rule 2): one wake-up, both duties.
    let next = e.poll_timeout().expect("a timer");
    assert!(next <= r + f, "{next:?} past {:?}", r + f);
    let due = r + f;
    e.handle_timeout(due);
    assert_eq!(refreshes_in(&mut e, due), 1);
    assert_eq!(e.stats().claims_sent, claims + 1);
    // The claim period R is longer than F, yet the next round comes at the next
    // refresh, F later, again with it.
    let again = due + f;
    assert!(e.poll_timeout().is_some_and(|t| t <= again));
    e.handle_timeout(again);
    assert_eq!(refreshes_in(&mut e, again), 1);
    assert_eq!(e.stats().claims_sent, claims + 2);
}

#[test]
fn address_renewals_of_all_held_groups_share_one_round() {
    // Groups bound at different times renew their address lifetimes in the same
    // rounds once one of them falls due: one write and one wake-up of the renewal
    // thread per period, not one per group's phase.
    let (mut e, t0) = one_node_with(1);
    let mut now = t0;
    let mut added = false;
    let mut held_both = None;
    let mut renewals: Vec<(Instant, GroupId)> = Vec::new();
    for _ in 0..5_000 {
        while let Some(a) = e.poll_action() {
            match a {
                Action::Probe { group } => e.handle_probe(group, false, now),
                Action::Kernel { id, op } => {
                    if let KernelOp::Refresh {
                        group,
                        renew_address: true,
                        ..
                    } = op
                    {
                        renewals.push((now, group));
                    }
                    e.handle_kernel(id, KernelOutcome::Ok, now);
                }
                _ => {}
            }
        }
        // A second group joins the pool (a reload) well after the first was bound,
        // half a renewal period out of its phase.
        if !added && now >= t0 + Duration::from_millis(2_250) {
            added = true;
            let two = (0..2)
                .map(|i| {
                    VipGroup::new(vec![Vip::host(
                        std::net::Ipv4Addr::new(10, 0, 0, 100 + i).into(),
                    )])
                })
                .collect();
            e.set_pool(two, now);
            continue;
        }
        if held_both.is_none()
            && e.groups.len() == 2
            && (0..2).all(|g| matches!(e.phase(g), Phase::Held { .. }))
        {
            held_both = Some(now);
        }
        let Some(t) = e.poll_timeout() else { break };
        if t > t0 + Duration::from_secs(7) {
            break;
        }
        now = now.max(t);
        e.handle_timeout(now);
    }
    let held = held_both.expect("both groups held");
    let period = e.config().timing.address_refresh;
    // From one period after both were held: every renewal round renews both.
    let late: Vec<&(Instant, GroupId)> = renewals
        .iter()
        .filter(|(t, _)| *t > held + period)
        .collect();
    assert!(late.len() >= 16, "{renewals:?}");
    let mut rounds: Vec<Instant> = late.iter().map(|(t, _)| *t).collect();
    rounds.dedup();
    assert_eq!(late.len(), 2 * rounds.len(), "{late:?}");
    // And rounds are a period apart, give or take one claim round.
    for w in rounds.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= period && gap <= period + Duration::from_millis(60),
            "{rounds:?}"
        );
    }
}

#[test]
fn refresh_all_refreshes_every_held_group_at_once() {
    let (mut e, t0) = one_node();
    drive(&mut e, t0, t0 + Duration::from_secs(3));
    let r = next_refresh(&mut e);
    // Just after a refresh, a round would carry nothing; `refresh_all` (the shell,
    // before a reload) refreshes anyway, so the whole E is left for what follows.
    let w = r + Duration::from_millis(1);
    e.refresh_all(w);
    assert_eq!(refreshes_in(&mut e, w), 1);
    // The next refresh is counted from there.
    let f = e.config().timing.gate_refresh;
    assert!(e.poll_timeout().is_some_and(|t| t > r + f / 2));
}

#[test]
fn a_lone_voter_binds_after_its_start_up_wait_and_unbinds_on_a_clock_jump() {
    let (mut e, t0) = one_node();
    let seen = drive(&mut e, t0, t0 + Duration::from_secs(3));
    let bind_at = seen.iter().position(|a| {
        matches!(
            a,
            Action::Kernel {
                op: KernelOp::Bind { .. },
                ..
            }
        )
    });
    assert!(bind_at.is_some(), "never bound: {seen:?}");
    assert!(matches!(e.phase(0), Phase::Held { .. }), "{:?}", e.phase(0));
    // The bind's write deadline respects the start-up wait: the lease came from a
    // self-grant, given no earlier than W after start.
    if let Some(Action::Kernel {
        op: KernelOp::Bind { deadline, .. },
        ..
    }) = bind_at.map(|i| &seen[i])
    {
        assert!(*deadline > t0 + e.config().restart_wait());
    }
    let now = t0 + Duration::from_secs(4);
    e.handle_clock_jump(now);
    let mut unbound = false;
    while let Some(a) = e.poll_action() {
        if matches!(
            a,
            Action::Kernel {
                op: KernelOp::Unbind { .. },
                ..
            }
        ) {
            unbound = true;
        }
    }
    assert!(unbound, "a clock jump must unbind first");
    assert!(e.stats().fences.contains_key("clock_jump"));
}

#[test]
fn malformed_and_foreign_datagrams_are_counted_not_fatal() {
    let (mut e, t0) = one_node();
    drive(&mut e, t0, t0 + Duration::from_millis(10));
    let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
    e.handle_datagram(from, &[1, 2, 3], t0);
    e.handle_datagram(
        from,
        &wire::encode(e.cluster_id() ^ 1, &Body::MetaRequest).unwrap(),
        t0,
    );
    let mut bad = wire::encode(e.cluster_id(), &Body::MetaRequest).unwrap();
    bad.push(0xff);
    e.handle_datagram(from, &bad, t0);
    let d = &e.stats().drops;
    assert_eq!(
        (
            d.get("truncated"),
            d.get("cluster_mismatch"),
            d.get("malformed")
        ),
        (Some(&1), Some(&1), Some(&1))
    );
}

/// Another cluster's datagrams are counted every time and said in the log once a
/// minute at most, with how many came meanwhile.
#[test]
fn foreign_cluster_datagrams_are_said_once_a_minute() {
    let (mut e, t0) = one_node();
    drive(&mut e, t0, t0 + Duration::from_millis(10));
    let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
    let foreign = wire::encode(e.cluster_id() ^ 1, &Body::MetaRequest).unwrap();
    let warnings = |e: &mut Engine| {
        let mut w = Vec::new();
        while let Some(a) = e.poll_action() {
            if let Action::Event(Event::Warning(m)) = a {
                w.push(m);
            }
        }
        w
    };
    e.handle_datagram(from, &foreign, t0);
    let w = warnings(&mut e);
    assert!(
        w.len() == 1 && w[0].contains("10.0.0.9:7946") && w[0].contains("check-config"),
        "{w:?}"
    );
    for k in 1..=5 {
        e.handle_datagram(from, &foreign, t0 + Duration::from_secs(k));
    }
    assert!(warnings(&mut e).is_empty());
    e.handle_datagram(from, &foreign, t0 + STRANGER_WARN_PERIOD);
    let w = warnings(&mut e);
    assert!(w.len() == 1 && w[0].contains("(6 such datagrams"), "{w:?}");
    assert_eq!(e.stats().drops.get("cluster_mismatch"), Some(&7));
}

#[test]
fn graceful_leave_releases_then_leaves() {
    let (mut e, t0) = one_node();
    drive(&mut e, t0, t0 + Duration::from_secs(3));
    assert!(matches!(e.phase(0), Phase::Held { .. }));
    let now = t0 + Duration::from_secs(3);
    e.leave(now);
    let seen = drive(&mut e, now, now + Duration::from_secs(1));
    let unbind = seen.iter().position(|a| {
        matches!(
            a,
            Action::Kernel {
                op: KernelOp::Unbind { .. },
                ..
            }
        )
    });
    let left = seen.iter().position(|a| *a == Action::Event(Event::Left));
    assert!(
        unbind.is_some() && left.is_some() && unbind < left,
        "{seen:?}"
    );
    assert!(e.is_finished());
}

/// Issue 10 case 4: an authenticated answer to a live claim naming a group out
/// of range (or a group twice) is dropped and counted, never indexed.
#[test]
fn answers_naming_unknown_or_repeated_groups_are_dropped_not_fatal() {
    let (mut e, t0) = one_node();
    let now = t0 + Duration::from_secs(3);
    drive(&mut e, t0, now);
    assert!(matches!(e.phase(0), Phase::Held { .. }));
    let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
    type Body2 = (Vec<GroupId>, Vec<(GroupId, String)>);
    let bad: Vec<Body2> = vec![
        (vec![5], vec![]),
        (vec![], vec![(4095, "b".into())]),
        (vec![0], vec![(0, "b".into())]),
        (vec![], vec![(0, "b".into()), (0, "c".into())]),
    ];
    for (granted, denied) in bad {
        // Every seq the claimer may have sent: the live one is among them.
        for seq in 1..200 {
            let a = Answer {
                voter: 0,
                set: e.config().voters_digest(),
                nonce: 7,
                seq,
                granted: granted.clone(),
                denied: denied.clone(),
            };
            let bytes = wire::encode(e.cluster_id(), &Body::Answer(a)).unwrap();
            e.handle_datagram(from, &bytes, now);
        }
    }
    let d = &e.stats().drops;
    assert!(d.get("unknown_group").is_some_and(|&n| n > 0), "{d:?}");
    assert!(d.get("duplicate_group").is_some_and(|&n| n > 0), "{d:?}");
    // An answer from a voter index beyond the voter list is dropped too.
    let a = Answer {
        voter: 3,
        set: e.config().voters_digest(),
        nonce: 7,
        seq: 1,
        granted: vec![0],
        denied: vec![],
    };
    e.handle_datagram(
        from,
        &wire::encode(e.cluster_id(), &Body::Answer(a.clone())).unwrap(),
        now,
    );
    assert_eq!(e.stats().drops.get("bad_voter_index"), Some(&1));
    // One naming a voter set nobody gossips is dropped, and the set asked for.
    let a = Answer { set: 42, ..a };
    e.handle_datagram(
        from,
        &wire::encode(e.cluster_id(), &Body::Answer(a)).unwrap(),
        now,
    );
    assert_eq!(e.stats().drops.get("unknown_voter_set"), Some(&1));
    // The engine goes on holding its group.
    drive(&mut e, now, now + Duration::from_secs(1));
    assert!(matches!(e.phase(0), Phase::Held { .. }));
}

/// Issue 10 case 3: a claim recorded from a process that is gone, replayed to a
/// voter that restarted since (its replay window was in memory), is promised
/// nothing: no active member gossips that lease identity.
#[test]
fn a_claim_from_a_lease_identity_nobody_gossips_is_promised_nothing() {
    let (mut e, t0) = one_node();
    let now = t0 + Duration::from_secs(3);
    drive(&mut e, t0, now);
    let from: SocketAddr = "10.0.0.9:7946".parse().unwrap();
    let replayed = Claim {
        name: "ghost".into(),
        nonce: 0xdead,
        seq: 41,
        groups: vec![0],
        table: [0; 16],
    };
    let bytes = wire::encode(e.cluster_id(), &Body::Claim(replayed)).unwrap();
    e.handle_datagram(from, &bytes, now);
    assert_eq!(e.stats().claims_ignored.get("stale_identity"), Some(&1));
    let mut answered = Vec::new();
    while let Some(a) = e.poll_action() {
        if let Action::Send { to, payload } = a
            && to == from
            && let Ok(Body::Answer(ans)) = wire::decode(e.cluster_id(), &payload)
        {
            answered.push(ans);
        }
    }
    assert_eq!(answered.len(), 1, "one empty answer");
    assert!(answered[0].granted.is_empty() && answered[0].denied.is_empty());
    // Its own group stays its own: the voter promised the ghost nothing.
    drive(&mut e, now, now + Duration::from_secs(1));
    assert!(matches!(e.phase(0), Phase::Held { .. }));
}
