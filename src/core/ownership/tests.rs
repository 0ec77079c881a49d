//! The ownership machine's unit tests: each phase's transitions, and the orders
//! (release before the claim drops the group, one kernel operation at a time).

use super::*;

fn t(ms: u64) -> Instant {
    Instant::from_nanos(ms * 1_000_000)
}

fn ctx() -> Ctx {
    Ctx {
        want: true,
        calm: true,
        release_now: None,
        bind_deadline: None,
        refresh_deadline: None,
        rearm_deadline: None,
        withdraw: false,
        skip_probe: false,
        refresh_period: Duration::from_millis(20),
        address_period: Duration::from_millis(250),
        inflight: false,
        break_release_order: false,
    }
}

#[test]
fn happy_path_to_held() {
    let mut fx = vec![];
    let mut c = ctx();
    c.calm = false;
    let p = tick(Phase::Free, &c, t(0), &mut fx);
    assert_eq!(p, Phase::Waiting { since: t(0) });
    c.calm = true;
    let p = tick(p, &c, t(20), &mut fx);
    assert_eq!(p, Phase::Claiming { since: t(20) });
    assert_eq!(fx, vec![Effect::AddClaim]);
    fx.clear();
    c.bind_deadline = Some(t(200));
    let p = tick(p, &c, t(30), &mut fx);
    assert_eq!(fx, vec![Effect::Probe]);
    fx.clear();
    let p = probe_result(p, false, &c, t(60), &mut fx);
    assert_eq!(fx, vec![Effect::Bind(t(200))]);
    fx.clear();
    let p = kernel_done(
        p,
        OpKind::Bind,
        &KernelOutcome::Ok,
        &c,
        t(61),
        t(61),
        &mut fx,
    );
    assert_eq!(fx, vec![Effect::Acquired(t(20)), Effect::Announce]);
    assert!(matches!(p, Phase::Held { .. }));
}

fn held() -> Phase {
    Phase::Held {
        since: t(0),
        refreshed: t(0),
        address_renewed: t(0),
    }
}

#[test]
fn refresh_only_while_the_lease_allows() {
    let mut fx = vec![];
    let mut c = ctx();
    c.refresh_deadline = Some(t(100));
    let p = tick(held(), &c, t(25), &mut fx);
    assert_eq!(fx, vec![Effect::Refresh(t(100), false)]);
    fx.clear();
    let p = tick(p, &c, t(101), &mut fx);
    assert_eq!(
        p,
        Phase::Fencing {
            reason: FenceReason::LeaseLapsed
        }
    );
    assert_eq!(
        fx,
        vec![Effect::Unbind, Effect::Fenced(FenceReason::LeaseLapsed)]
    );
    // Fenced groups keep being claimed.
    fx.clear();
    let p = kernel_done(
        p,
        OpKind::Unbind,
        &KernelOutcome::Ok,
        &c,
        t(102),
        t(102),
        &mut fx,
    );
    assert_eq!(p, Phase::Claiming { since: t(102) });
    assert!(fx.is_empty());
}

#[test]
fn release_drops_the_claim_only_after_the_unbind() {
    let mut fx = vec![];
    let mut c = ctx();
    c.want = false;
    let p = tick(held(), &c, t(25), &mut fx);
    assert_eq!(
        p,
        Phase::Releasing {
            reason: ReleaseReason::Moved
        }
    );
    assert_eq!(fx, vec![Effect::Unbind]);
    fx.clear();
    c.inflight = true;
    let p = tick(p, &c, t(26), &mut fx);
    assert!(fx.is_empty(), "no second unbind while one is in flight");
    let p2 = kernel_done(
        p,
        OpKind::Unbind,
        &KernelOutcome::Failed("EBUSY".into()),
        &c,
        t(27),
        t(27),
        &mut fx,
    );
    assert_eq!(p2, p);
    assert!(fx.is_empty(), "a failed unbind keeps the claim");
    c.inflight = false;
    let p = kernel_done(
        p,
        OpKind::Unbind,
        &KernelOutcome::Ok,
        &c,
        t(28),
        t(28),
        &mut fx,
    );
    assert_eq!(p, Phase::Free);
    assert_eq!(
        fx,
        vec![
            Effect::RemoveClaim,
            Effect::Hint,
            Effect::Released(ReleaseReason::Moved)
        ]
    );
}

#[test]
fn moved_groups_wait_for_calm_but_drain_does_not() {
    let mut fx = vec![];
    let mut c = ctx();
    c.want = false;
    c.calm = false;
    c.refresh_deadline = Some(t(100));
    assert!(matches!(
        tick(held(), &c, t(5), &mut fx),
        Phase::Held { .. }
    ));
    c.release_now = Some(ReleaseReason::Drain);
    assert_eq!(
        tick(held(), &c, t(5), &mut fx),
        Phase::Releasing {
            reason: ReleaseReason::Drain
        }
    );
}

#[test]
fn contention_withdraws_and_backs_off() {
    let mut fx = vec![];
    let mut c = ctx();
    c.withdraw = true;
    let p = tick(Phase::Claiming { since: t(0) }, &c, t(150), &mut fx);
    assert_eq!(p, Phase::Backoff { until: t(150) });
    assert_eq!(fx, vec![Effect::RemoveClaim, Effect::Backoff]);
    fx.clear();
    let p = tick(Phase::Backoff { until: t(300) }, &ctx(), t(299), &mut fx);
    assert_eq!(p, Phase::Backoff { until: t(300) });
    let p = tick(p, &ctx(), t(300), &mut fx);
    assert_eq!(p, Phase::Claiming { since: t(300) });
}

#[test]
fn probe_conflict_backs_off() {
    let mut fx = vec![];
    let p = probe_result(Phase::Probing { since: t(0) }, true, &ctx(), t(40), &mut fx);
    assert!(matches!(p, Phase::Backoff { .. }));
    assert_eq!(
        fx,
        vec![Effect::Conflict, Effect::RemoveClaim, Effect::Backoff]
    );
}

#[test]
fn a_refresh_completing_during_a_release_does_not_finish_it() {
    // Regression: simulator seed 7 (--quorum majority) found a release reported
    // done when a refresh issued before it completed; the group stayed bound.
    let mut fx = vec![];
    let p = Phase::Releasing {
        reason: ReleaseReason::Leave,
    };
    let p = kernel_done(
        p,
        OpKind::Refresh {
            renewed_address: false,
        },
        &KernelOutcome::Ok,
        &ctx(),
        t(30),
        t(30),
        &mut fx,
    );
    assert_eq!(
        p,
        Phase::Releasing {
            reason: ReleaseReason::Leave
        }
    );
    assert_eq!(fx, vec![Effect::Unbind]);
}

#[test]
fn the_next_refresh_is_counted_from_when_the_last_was_issued() {
    // Regression: a refresh whose gate batch committed at once but whose address
    // write then waited ~50 ms for the RTNL lock (a namespace torn down elsewhere)
    // was counted from its completion; the next one came 90 ms after the commit,
    // past E = 80 ms, and the entry lapsed (tests/reload.rs on CI).
    let mut fx = vec![];
    let mut c = ctx();
    c.refresh_deadline = Some(t(1_000));
    let renewing = OpKind::Refresh {
        renewed_address: true,
    };
    let p = kernel_done(
        held(),
        renewing,
        &KernelOutcome::Ok,
        &c,
        t(20),
        t(45),
        &mut fx,
    );
    assert_eq!(
        p,
        Phase::Held {
            since: t(0),
            refreshed: t(20),
            address_renewed: t(20)
        }
    );
    // F = 20 ms after the issue, not after the completion.
    tick(p, &c, t(46), &mut fx);
    assert_eq!(fx, vec![Effect::Refresh(t(1_000), false)]);
    // The same for a bind: the entry's timeout was set after it was issued.
    fx.clear();
    let binding = Phase::Binding { since: t(0) };
    let p2 = kernel_done(
        binding,
        OpKind::Bind,
        &KernelOutcome::Ok,
        &c,
        t(5),
        t(60),
        &mut fx,
    );
    assert!(matches!(p2, Phase::Held { refreshed, .. } if refreshed == t(5)));
}

#[test]
fn only_a_renewing_refresh_counts_as_an_address_renewal() {
    // Regression: simulator seed 135 (--profile fast) saw addresses expire while
    // refreshed, because a plain refresh completing late counted as a renewal.
    let mut fx = vec![];
    let p = kernel_done(
        held(),
        OpKind::Refresh {
            renewed_address: false,
        },
        &KernelOutcome::Ok,
        &ctx(),
        t(300),
        t(300),
        &mut fx,
    );
    assert_eq!(
        p,
        Phase::Held {
            since: t(0),
            refreshed: t(300),
            address_renewed: t(0)
        }
    );
    let p = kernel_done(
        p,
        OpKind::Refresh {
            renewed_address: true,
        },
        &KernelOutcome::Ok,
        &ctx(),
        t(320),
        t(320),
        &mut fx,
    );
    assert_eq!(
        p,
        Phase::Held {
            since: t(0),
            refreshed: t(320),
            address_renewed: t(320)
        }
    );
}

#[test]
fn lapsed_refresh_fences() {
    let mut fx = vec![];
    let p = kernel_done(
        held(),
        OpKind::Refresh {
            renewed_address: false,
        },
        &KernelOutcome::Lapsed,
        &ctx(),
        t(40),
        t(40),
        &mut fx,
    );
    assert_eq!(
        p,
        Phase::Fencing {
            reason: FenceReason::KernelLapsed
        }
    );
    assert_eq!(fx[0], Effect::Unbind);
}

#[test]
fn a_lapsed_refresh_under_a_bindable_lease_rearms_in_place() {
    let mut fx = vec![];
    let mut c = ctx();
    c.rearm_deadline = Some(t(300));
    let refresh = OpKind::Refresh {
        renewed_address: false,
    };
    let p = kernel_done(
        held(),
        refresh,
        &KernelOutcome::Lapsed,
        &c,
        t(120),
        t(120),
        &mut fx,
    );
    // No unbind, no fence, no new claim: the group stays held and is bound again.
    assert_eq!(p, held());
    assert_eq!(fx, vec![Effect::Rearm(t(300))]);
    fx.clear();
    // While the re-arm is in flight nothing else is issued.
    c.inflight = true;
    c.refresh_deadline = Some(t(320));
    assert_eq!(tick(p, &c, t(121), &mut fx), held());
    assert!(fx.is_empty());
    c.inflight = false;
    let p = kernel_done(
        p,
        OpKind::Bind,
        &KernelOutcome::Ok,
        &c,
        t(123),
        t(123),
        &mut fx,
    );
    assert_eq!(fx, vec![Effect::Rearmed(t(0)), Effect::Announce]);
    assert_eq!(
        p,
        Phase::Held {
            since: t(0),
            refreshed: t(123),
            address_renewed: t(123)
        }
    );
}

#[test]
fn a_lapsed_refresh_fences_when_no_rearm_is_allowed() {
    let refresh = OpKind::Refresh {
        renewed_address: false,
    };
    let fenced = Phase::Fencing {
        reason: FenceReason::KernelLapsed,
    };
    let mut no_lease = ctx();
    no_lease.rearm_deadline = None;
    let mut passed = ctx();
    passed.rearm_deadline = Some(t(100));
    let mut moved = ctx();
    moved.rearm_deadline = Some(t(300));
    moved.want = false;
    let mut draining = ctx();
    draining.rearm_deadline = Some(t(300));
    draining.release_now = Some(ReleaseReason::Drain);
    for c in [no_lease, passed, moved, draining] {
        let mut fx = vec![];
        let p = kernel_done(
            held(),
            refresh,
            &KernelOutcome::Lapsed,
            &c,
            t(120),
            t(120),
            &mut fx,
        );
        assert_eq!(p, fenced);
        assert_eq!(
            fx,
            vec![Effect::Unbind, Effect::Fenced(FenceReason::KernelLapsed)]
        );
    }
}

#[test]
fn a_failed_rearm_fences() {
    let mut c = ctx();
    c.rearm_deadline = Some(t(300));
    for (outcome, reason) in [
        (KernelOutcome::Lapsed, FenceReason::KernelLapsed),
        (KernelOutcome::Failed("x".into()), FenceReason::KernelError),
    ] {
        let mut fx = vec![];
        let p = kernel_done(held(), OpKind::Bind, &outcome, &c, t(120), t(120), &mut fx);
        assert_eq!(p, Phase::Fencing { reason });
        assert_eq!(fx, vec![Effect::Unbind, Effect::Fenced(reason)]);
    }
}

#[test]
fn a_rearm_finishing_during_a_release_goes_on_to_the_unbind() {
    let mut fx = vec![];
    let mut c = ctx();
    c.rearm_deadline = Some(t(300));
    c.release_now = Some(ReleaseReason::Drain);
    c.inflight = true;
    // The release starts while the re-arm is in flight ...
    let p = tick(held(), &c, t(121), &mut fx);
    assert!(matches!(p, Phase::Releasing { .. }), "{p:?}");
    fx.clear();
    // ... and the re-arm's completion leads to the unbind, not back to held.
    c.inflight = false;
    let p = kernel_done(
        p,
        OpKind::Bind,
        &KernelOutcome::Ok,
        &c,
        t(123),
        t(123),
        &mut fx,
    );
    assert!(matches!(p, Phase::Releasing { .. }), "{p:?}");
    assert!(fx.contains(&Effect::Unbind), "{fx:?}");
}
