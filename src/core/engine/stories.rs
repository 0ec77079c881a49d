//! Each rule as a short story over two or three real engines (see `harness`).

use std::time::Duration;

use super::harness::{Cluster, acquired, released};
use super::{Action, Event};
use crate::core::config::QuorumMode;
use crate::core::ownership::ReleaseReason;

const SETTLE: Duration = Duration::from_secs(4);

fn settled(names: &[&str], groups: usize, quorum: QuorumMode) -> Cluster {
    let mut c = Cluster::new(names, groups, quorum);
    c.run_for(SETTLE);
    assert!(c.all_served(), "not every group served after {SETTLE:?}");
    c
}

#[test]
fn three_nodes_spread_the_groups_and_a_dead_machines_groups_move_within_the_bound() {
    let mut c = settled(&["a", "b", "c"], 6, QuorumMode::Majority);
    for i in 0..3 {
        assert_eq!(
            c.nodes[i].bound.len(),
            2,
            "node {i}: {:?}",
            c.nodes[i].bound
        );
    }
    crash_group_0s_holder_and_fail_over(&mut c);
}

/// Crashes the holder of group 0 and checks that every group is served again
/// within the failover bound.
fn crash_group_0s_holder_and_fail_over(c: &mut Cluster) {
    let victim = c.holders(0)[0];
    let t0 = c.now;
    c.crash(victim);
    let bound = c.nodes[0].engine.config().failover_bound();
    let done = c
        .run_until_true(Duration::from_secs(5), Cluster::all_served)
        .expect("the dead node's groups moved");
    assert!(
        done - t0 <= bound,
        "failover took {:?}, bound {bound:?}",
        done - t0
    );
}

#[test]
fn a_drained_holder_releases_then_hints_and_the_new_owner_skips_q_and_the_probe() {
    let mut c = settled(&["a", "b", "c"], 3, QuorumMode::Majority);
    let old = c.holders(0)[0];
    let t0 = c.now;
    c.nodes[old].engine.set_draining(true, t0);
    let done = c
        .run_until_true(Duration::from_secs(3), |c| {
            c.holders(0).len() == 1 && c.holders(0)[0] != old
        })
        .expect("group 0 moved to another node");
    let new = c.holders(0)[0];
    let q = c.nodes[0].engine.config().timing.quiescence;
    // The release came first (verified gone), then the hint, so the new owner neither
    // waited Q nor probed.
    let released = c.first_event(old, t0, released(0, ReleaseReason::Drain));
    assert!(released.is_some_and(|r| r <= done));
    assert!(done - t0 < q, "took {:?} ≥ Q = {q:?}", done - t0);
    let probed = c.first_event(new, t0, |a| matches!(a, Action::Probe { group: 0 }));
    assert_eq!(probed, None, "a hinted group is bound without a probe");
}

#[test]
fn a_claim_denied_in_favour_of_a_live_holder_waits_for_its_release() {
    let mut c = settled(&["a", "b", "c"], 3, QuorumMode::Majority);
    let old = c.holders(0)[0];
    let new = (old + 1) % 3;
    let old_name = c.nodes[old].engine.name().to_string();
    let t0 = c.now;
    // The new node prefers group 0: it learns first that it is the owner, and claims
    // while the holder (learning by gossip) still holds.
    c.nodes[new].engine.set_prefers(vec![0], t0);
    c.run_until_true(Duration::from_secs(3), |c| c.holders(0) == vec![new])
        .expect("group 0 moved to the preferring node");
    let denied = c
        .answers
        .iter()
        .any(|(to, a)| *to == new && a.denied.iter().any(|(g, h)| *g == 0 && *h == old_name));
    assert!(
        denied,
        "the voters denied the claim in favour of the live holder"
    );
    // It was bound only after the holder released it (the harness checks there was
    // never a second holder); and the holder said why.
    let released = c.first_event(old, t0, released(0, ReleaseReason::Moved));
    let bound = c.first_event(new, t0, acquired(0));
    assert!(
        released.is_some() && released <= bound,
        "{released:?} {bound:?}"
    );
}

#[test]
fn two_nodes_take_a_silent_peers_groups_only_after_it_was_absent_for_q2() {
    let mut c = settled(&["a", "b"], 2, QuorumMode::Off);
    let victim = c.holders(0)[0];
    let survivor = 1 - victim;
    c.crash(victim);
    let done = c
        .run_until_true(Duration::from_secs(5), |c| c.holders(0) == vec![survivor])
        .expect("the survivor took group 0");
    let last = c.last_delivery[survivor][victim].expect("heard the peer once");
    let q2 = c.nodes[survivor].engine.config().absent_after();
    assert!(
        done >= last + q2,
        "bound {:?} after the peer's last datagram, Q₂ = {q2:?}",
        done - last
    );
}

#[test]
fn a_one_way_cut_from_the_holder_to_the_voters_fences_it_before_anyone_binds() {
    let mut c = settled(&["a", "b", "c"], 3, QuorumMode::Majority);
    let old = c.holders(0)[0];
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    // Its claims no longer reach anyone, but it hears everything: its lease lapses,
    // it unbinds, and only then may another node bind (checked after every event).
    for &o in &others {
        c.cut(old, o);
    }
    let t0 = c.now;
    c.run_until_true(Duration::from_secs(6), |c| {
        c.holders(0).len() == 1 && c.holders(0)[0] != old
    })
    .expect("group 0 moved away from the unheard holder");
    let fenced = c.first_event(old, t0, |a| {
        matches!(a, Action::Event(Event::Fenced { group: 0, .. }))
    });
    assert!(fenced.is_some(), "the holder fenced itself");
}

#[test]
fn a_reload_that_makes_a_holder_ineligible_moves_its_groups_and_weight_is_gossiped() {
    let mut c = settled(&["a", "b", "c"], 6, QuorumMode::Majority);
    let t0 = c.now;
    let held: Vec<u16> = c.nodes[1].bound.iter().copied().collect();
    assert!(!held.is_empty());
    c.nodes[1].engine.set_node(3, false, vec![], t0);
    c.run_until_true(Duration::from_secs(3), |c| {
        c.all_served() && c.nodes[1].bound.is_empty()
    })
    .expect("b's groups moved to a and c");
    for g in held {
        assert!(
            c.first_event(1, t0, released(g, ReleaseReason::Ineligible))
                .is_some(),
            "group {g} released as ineligible"
        );
    }
    let seen = c.nodes[0]
        .engine
        .status(c.now)
        .members
        .iter()
        .find(|m| m.id.name == "b")
        .and_then(|m| m.meta.as_ref().map(|x| (x.weight, x.eligible)));
    assert_eq!(
        seen,
        Some((3, false)),
        "a sees b's new weight and eligibility"
    );
    // Eligible again: it takes a share back.
    let t1 = c.now;
    c.nodes[1].engine.set_node(1, true, vec![], t1);
    c.run_until_true(Duration::from_secs(5), |c| {
        c.all_served() && c.nodes[1].bound.len() == 2
    })
    .expect("b holds its share again");
}

#[test]
fn a_holder_unable_to_hold_one_group_hands_over_that_group_only() {
    // An interface one group needs goes down on its holder: that group moves (released
    // as link_down), every other group stays put, and it comes back to nobody in
    // particular once the link is up again (no move for balance alone).
    let mut c = settled(&["a", "b", "c"], 6, QuorumMode::Majority);
    let t0 = c.now;
    let before: Vec<Vec<u16>> = c
        .nodes
        .iter()
        .map(|n| n.bound.iter().copied().collect())
        .collect();
    let lost = before[1][0];
    c.nodes[1].engine.set_unable(vec![lost], t0);
    c.run_until_true(Duration::from_secs(3), |c| {
        c.all_served() && !c.nodes[1].bound.contains(&lost)
    })
    .expect("the group moved away from b");
    assert!(
        c.first_event(1, t0, released(lost, ReleaseReason::LinkDown))
            .is_some()
    );
    for (i, was) in before.iter().enumerate() {
        for g in was.iter().filter(|&&g| g != lost) {
            assert!(c.nodes[i].bound.contains(g), "group {g} stayed on node {i}");
        }
    }
    let seen = c.nodes[0]
        .engine
        .status(c.now)
        .members
        .iter()
        .find(|m| m.id.name == "b")
        .and_then(|m| m.meta.as_ref().map(|x| (x.eligible, x.unable.clone())));
    assert_eq!(seen, Some((true, vec![lost])), "a sees what b cannot hold");
    // Every group unable: b is not eligible at all and holds nothing.
    let t1 = c.now;
    c.nodes[1].engine.set_unable((0..6).collect(), t1);
    c.run_until_true(Duration::from_secs(3), |c| {
        c.all_served() && c.nodes[1].bound.is_empty()
    })
    .expect("b holds nothing");
    c.nodes[1].engine.set_unable(vec![], c.now);
    c.run_until_true(Duration::from_secs(5), |c| {
        c.all_served() && !c.nodes[1].bound.is_empty()
    })
    .expect("b takes a share again");
}

fn g(hosts: &[u8]) -> crate::core::config::VipGroup {
    use crate::core::config::{Vip, VipGroup};
    VipGroup::new(
        hosts
            .iter()
            .map(|&h| Vip::host(std::net::IpAddr::from([10, 0, 9, h])))
            .collect(),
    )
}

fn addr(h: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([10, 0, 9, h])
}

#[test]
fn groups_only_one_node_has_are_served_by_it_and_tables_are_fetched() {
    // a has two groups more than b and c (a pool change half-way through a rollout).
    let six: Vec<_> = (100..106).map(|h| g(&[h])).collect();
    let mut eight = six.clone();
    eight.extend([g(&[200]), g(&[201])]);
    let mut c = super::harness::Cluster::with_pools(
        &["a", "b", "c"],
        vec![eight, six.clone(), six],
        QuorumMode::Majority,
    );
    let served = |c: &super::harness::Cluster| {
        (100..106)
            .chain([200, 201])
            .all(|h| c.addr_holders(addr(h)).len() == 1)
    };
    c.run_until_true(Duration::from_secs(6), served)
        .expect("every address served once");
    assert_eq!(c.addr_holders(addr(200)), vec![0]);
    assert_eq!(c.addr_holders(addr(201)), vec![0]);
    // b and c fetched a's table (to resolve its claims and its holdings).
    let d = c.nodes[0].engine.lease.table;
    for i in 1..3 {
        assert!(
            c.nodes[i].engine.lease.tables.has(&d),
            "node {i} holds a's table"
        );
        assert_ne!(c.nodes[i].engine.lease.table, d);
    }
    // Calm: nothing moves once served.
    let before: Vec<_> = (100..106).map(|h| c.addr_holders(addr(h))).collect();
    c.run_for(Duration::from_secs(3));
    let after: Vec<_> = (100..106).map(|h| c.addr_holders(addr(h))).collect();
    assert_eq!(before, after);
}

#[test]
fn an_address_in_different_groups_on_different_nodes_is_never_bound_twice() {
    // b has .100 and .101 as one group; a and c have them apart (an address moved
    // between groups, half-way through a rollout). The harness checks S1 per address
    // after every event; here every address also ends up served.
    let apart = vec![g(&[100]), g(&[101]), g(&[102])];
    let together = vec![g(&[100, 101]), g(&[102])];
    let mut c = super::harness::Cluster::with_pools(
        &["a", "b", "c"],
        vec![apart.clone(), together, apart],
        QuorumMode::Majority,
    );
    c.run_until_true(Duration::from_secs(8), |c| {
        (100..103).all(|h| c.addr_holders(addr(h)).len() == 1)
    })
    .expect("every address served once");
    c.run_for(Duration::from_secs(3));
}

/// Pools whose indices disagree: b has one more group, sorting first, so every other
/// group sits one index later on b than on a and c.
fn shifted_pools() -> Vec<Vec<crate::core::config::VipGroup>> {
    let base: Vec<_> = (100..106).map(|h| g(&[h])).collect();
    let mut shifted = vec![g(&[99])];
    shifted.extend(base.iter().cloned());
    vec![base.clone(), shifted, base]
}

/// a and b stop hearing each other directly (both still hear c), with indices that
/// differ between their tables.
fn split_views_with_shifted_pools() {
    let mut c = super::harness::Cluster::with_pools(
        &["a", "b", "c"],
        shifted_pools(),
        QuorumMode::Majority,
    );
    c.run_until_true(Duration::from_secs(8), |c| {
        (99..106).all(|h| c.addr_holders(addr(h)).len() == 1)
    })
    .expect("every address served once");
    c.cut(0, 1);
    c.cut(1, 0);
    c.run_for(Duration::from_secs(6));
}

#[test]
fn pools_with_shifted_indices_stay_single_holder_when_views_split() {
    split_views_with_shifted_pools();
}

/// The bench's change, rolled node by node 3 s apart: add two VIPs, remove one, move
/// one address into another group. Untouched addresses never change holder; the
/// added ones are served soon after the first reload; the removed one is unserved
/// soon after the last.
#[test]
fn a_rolling_pool_change_leaves_untouched_groups_alone() {
    // Before: .100 … .105, one group each. After: .100 .101 .102 as they were, .103
    // removed, .104 moved into .105's group, .106 and .107 added.
    let before: Vec<_> = (100..106).map(|h| g(&[h])).collect();
    let after = vec![
        g(&[100]),
        g(&[101]),
        g(&[102]),
        g(&[104, 105]),
        g(&[106]),
        g(&[107]),
    ];
    let mut c = super::harness::Cluster::with_pools(
        &["a", "b", "c"],
        vec![before.clone(), before.clone(), before],
        QuorumMode::Majority,
    );
    c.run_until_true(Duration::from_secs(6), |c| {
        (100..106).all(|h| c.addr_holders(addr(h)).len() == 1)
    })
    .expect("served");
    c.run_for(Duration::from_secs(3));
    let untouched = [100u8, 101, 102];
    let holders = |c: &super::harness::Cluster| -> Vec<Vec<usize>> {
        untouched.iter().map(|&h| c.addr_holders(addr(h))).collect()
    };
    let steady = holders(&c);
    assert!(steady.iter().all(|h| h.len() == 1));
    let moved = |c: &super::harness::Cluster| holders(c) != steady;
    let first = c.now;
    for i in 0..3 {
        let now = c.now;
        c.nodes[i].engine.set_pool(after.clone(), now);
        if i == 0 {
            let served = c.run_until_true(Duration::from_secs(1), |c| {
                moved(c)
                    || [106, 107]
                        .iter()
                        .all(|&h| c.addr_holders(addr(h)) == vec![0])
            });
            assert!(!moved(&c), "an untouched address changed holder");
            assert!(
                served.is_some(),
                "added VIPs served by a within 1 s of its reload"
            );
            eprintln!(
                "added VIPs served {:?} after the first reload",
                c.now - first
            );
        }
        let until = now + Duration::from_secs(3);
        let bad = c.run_until_true(until - c.now, moved);
        assert!(
            bad.is_none(),
            "an untouched address changed holder after node {i}'s reload"
        );
    }
    // .103 is gone everywhere; every address of the new pool is served once.
    let gone = c.run_until_true(Duration::from_secs(1), |c| {
        c.addr_holders(addr(103)).is_empty()
    });
    assert!(
        gone.is_some(),
        "the removed VIP unanswered within 1 s of the last reload"
    );
    c.run_until_true(Duration::from_secs(5), |c| {
        [100, 101, 102, 104, 105, 106, 107]
            .iter()
            .all(|&h| c.addr_holders(addr(h)).len() == 1)
    })
    .expect("the new pool served once per address");
    assert!(
        !moved(&c),
        "untouched addresses kept their holders throughout"
    );
    // Every node now runs the same table contents (slots may differ).
    let pools: Vec<u64> = (0..3)
        .map(|i| c.nodes[i].engine.config().pool_digest())
        .collect();
    assert!(pools.windows(2).all(|w| w[0] == w[1]), "{pools:?}");
}

#[test]
fn a_voter_leaves_and_rejoins_by_reload_steps_and_every_group_stays_served() {
    use crate::core::lease::VoterSet;
    let set = |v: &[&str]| VoterSet::new(v.iter().map(|s| s.to_string()).collect(), vec![]);
    let mut c = settled(&["a", "b", "c"], 6, QuorumMode::Majority);
    // Rolled node by node: a leaves the voters, then joins them again.
    for (k, voters) in [&["b", "c"][..], &["a", "b", "c"][..]]
        .into_iter()
        .enumerate()
    {
        for i in 0..3 {
            let now = c.now;
            c.nodes[i]
                .engine
                .set_voters(set(voters), now)
                .unwrap_or_else(|e| panic!("step {k}, node {i}: {e}"));
            if (k, i) == (0, 0) {
                // The next step waits until this one has settled (and the others
                // have taken it): refused at once, with the reason.
                let e = c.nodes[0]
                    .engine
                    .check_voters(&set(&["c"]), now)
                    .unwrap_err();
                assert!(e.starts_with("voters: "), "{e}");
                assert!(c.nodes[0].engine.lease.voter.is_none(), "a stopped voting");
            }
            if (k, i) == (1, 0) {
                // a votes again, with a fresh voter that grants nothing for W.
                let w = c.nodes[0].engine.config().restart_wait();
                let v = c.nodes[0].engine.lease.voter.as_ref().expect("a votes");
                assert_eq!(v.wait_until(), now + w);
            }
            c.run_for(Duration::from_secs(1));
            assert!(c.all_served(), "after step {k} on node {i}");
        }
    }
    // Two voters at once are refused whatever the view.
    let now = c.now;
    let e = c.nodes[1]
        .engine
        .set_voters(set(&["b", "c", "d", "e"]), now)
        .unwrap_err();
    assert!(e.contains("one voter at a time"), "{e}");
}

#[test]
fn in_steady_state_every_answer_rides_on_a_claim_and_no_lease_lapses() {
    // docs/safety.md §4.13: three voters that all hold groups exchange one datagram
    // each way per round; no answer goes alone, and no lease lapses for it.
    let mut c = settled(&["a", "b", "c"], 6, QuorumMode::Majority);
    let rode: Vec<u64> = (0..3)
        .map(|i| c.nodes[i].engine.stats().answers_rode)
        .collect();
    let alone = c.answers.len();
    let bound: Vec<_> = (0..3).map(|i| c.nodes[i].bound.clone()).collect();
    let t0 = c.now;
    let window = Duration::from_secs(2);
    c.run_for(window);
    let cfg = c.nodes[0].engine.config();
    // A round is at most R long (L brings it forward): two peers, one riding
    // answer each per round.
    let rounds = window.as_secs_f64() / cfg.timing.claim_period.as_secs_f64();
    for (i, n) in c.nodes.iter().enumerate() {
        let got = n.engine.stats().answers_rode - rode[i];
        assert!(
            got as f64 >= 2.0 * rounds * 0.9,
            "node {i}: {got} answers rode in {rounds} rounds"
        );
        assert_eq!(n.bound, bound[i], "node {i}'s groups changed");
        let lapses = n
            .events
            .iter()
            .filter(|(t, a)| {
                *t >= t0
                    && matches!(
                        a,
                        Action::Event(Event::Fenced { .. } | Event::Released { .. })
                    )
            })
            .count();
        assert_eq!(lapses, 0, "node {i} fenced or released in steady state");
    }
    assert_eq!(
        c.answers.len() - alone,
        0,
        "answers went alone in steady state"
    );
}

#[test]
fn a_reload_that_replaces_an_unable_group_gossips_the_shorter_list() {
    // b cannot hold slot 0 (its link is down); a reload replaces the group in that
    // slot. The slot is no longer known to be unable, and b's metadata must say so at
    // once: the shell's next `set_unable` for the new table may find the list
    // unchanged and gossip nothing (simulator seed 63427302401: the others went on
    // seeing b unable and never gave it its share).
    let six: Vec<_> = (100..106).map(|h| g(&[h])).collect();
    let mut c = super::harness::Cluster::with_pools(
        &["a", "b", "c"],
        vec![six.clone(), six.clone(), six.clone()],
        QuorumMode::Majority,
    );
    c.run_until_true(Duration::from_secs(6), |c| {
        (100..106).all(|h| c.addr_holders(addr(h)).len() == 1)
    })
    .expect("served");
    let now = c.now;
    c.nodes[1].engine.set_unable(vec![0], now);
    let meta_unable =
        |c: &super::harness::Cluster| c.nodes[1].engine.membership.own_meta().unable.clone();
    assert_eq!(meta_unable(&c), vec![0]);
    // The group in slot 0 is removed (its slot retires once idle), then another
    // group is added and takes the slot.
    let five: Vec<_> = six[1..].to_vec();
    for i in 0..3 {
        let now = c.now;
        c.nodes[i].engine.set_pool(five.clone(), now);
    }
    c.run_for(Duration::from_secs(2));
    let mut other = five;
    other.push(g(&[150]));
    let now = c.now;
    c.nodes[1].engine.set_pool(other, now);
    let slot = c.nodes[1]
        .engine
        .config()
        .groups
        .iter()
        .position(|x| *x == g(&[150]))
        .expect("added") as u16;
    assert_eq!(slot, 0, "the new group took the retired slot");
    assert!(c.nodes[1].engine.unable().is_empty());
    assert!(
        meta_unable(&c).is_empty(),
        "b still gossips slot 0 as unable"
    );
    // The shell then reads the links for the new table: nothing down.
    let now = c.now;
    c.nodes[1].engine.set_unable(vec![], now);
    assert!(meta_unable(&c).is_empty());
}

#[test]
fn one_pass_per_wake_up_serves_as_one_pass_per_datagram_and_sends_no_more() {
    // The agent hands the datagrams that woke it to the engine in one batch, which
    // re-evaluates once after the claims and answers (`Engine::wakeup`, §4.14). A
    // batched cluster must converge and fail over as the unbatched one does (the
    // harness checks that no address is bound twice after every event), without
    // more datagrams.
    let run = |wakeups: bool| {
        let mut c = Cluster::new(&["a", "b", "c"], 6, QuorumMode::Majority);
        c.wakeups = wakeups;
        c.run_for(SETTLE);
        assert!(c.all_served(), "wakeups {wakeups}: not served");
        let sent = c.sent;
        c.run_for(Duration::from_secs(2));
        let idle = c.sent - sent;
        assert_eq!(c.batches > 0, wakeups, "batches: {}", c.batches);
        crash_group_0s_holder_and_fail_over(&mut c);
        eprintln!(
            "wakeups {wakeups}: {idle} datagrams in 2 s, {} batches",
            c.batches
        );
        idle
    };
    let (alone, batched) = (run(false), run(true));
    assert!(batched <= alone, "batched {batched} > one by one {alone}");
}
