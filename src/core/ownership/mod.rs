//! The per-group ownership state machine.
//!
//! ```text
//!  Free ──want──▶ Waiting ──calm for Q──▶ Claiming ──lease──▶ Probing ──clear──▶ Binding ──ok──▶ Held
//!   ▲               │                       │  ▲                 │                              │ │
//!   └────!want──────┘        contention ◀───┘  └──── Backoff ◀───┘ conflict      fence lapsed ◀─┘ │
//!   ▲                                                                      (unbind, keep claiming)│
//!   └──────────── Releasing (unbind → verified gone → drop from claims → hint) ◀── moved / drain ──┘
//! ```
//!
//! Every transition is a pure function of (state, input, context, now): the engine
//! computes the [`Ctx`] (does the assignment name us, has it been calm for Q, what
//! write deadline does the lease allow, does contention say withdraw) and carries out
//! the returned [`Effect`]s. One kernel operation per group is in flight at a time,
//! which is the "one serialized queue per VIP" of DESIGN §2.3 rule 6.
//!
//! Release order (rule 7): stop refreshing → wait for the in-flight operation →
//! unbind → verified gone → only then drop the group from claims. A lapsed lease or a
//! refresh that found the gate entry expired unbinds but *keeps* claiming — except
//! that a held group whose refresh found its entry expired while the lease still
//! allows a bind is bound again in place (a re-arm, docs/safety.md §4.15).

use std::time::Duration;

use super::time::Instant;

/// Why a group was released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReleaseReason {
    /// The assignment names another node.
    Moved,
    /// This node is being drained.
    Drain,
    /// This node is leaving.
    Leave,
    /// This node is not eligible (health check, operator).
    Ineligible,
    /// A reload removed the group from this node's pool.
    Removed,
    /// An interface one of the group's addresses lives on is missing or down here.
    LinkDown,
}

impl ReleaseReason {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            ReleaseReason::Moved => "moved",
            ReleaseReason::Drain => "drain",
            ReleaseReason::Leave => "leave",
            ReleaseReason::Ineligible => "ineligible",
            ReleaseReason::Removed => "removed",
            ReleaseReason::LinkDown => "link_down",
        }
    }
}

/// Why a bound group was fenced (unbound while still wanted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FenceReason {
    /// The lease no longer allows a refresh.
    LeaseLapsed,
    /// The kernel reported the gate entry (or the address) gone.
    KernelLapsed,
    /// A kernel operation failed.
    KernelError,
    /// The clock jumped (suspend): everything is unbound first.
    ClockJump,
}

impl FenceReason {
    /// Label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            FenceReason::LeaseLapsed => "lease_lapsed",
            FenceReason::KernelLapsed => "kernel_lapsed",
            FenceReason::KernelError => "kernel_error",
            FenceReason::ClockJump => "clock_jump",
        }
    }
}

/// Where a group stands on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not ours.
    Free,
    /// Ours, waiting for the assignment to be calm for Q.
    Waiting {
        /// When we started waiting.
        since: Instant,
    },
    /// In the claimed set, waiting for a quorum.
    Claiming {
        /// When the group was (re-)added to the claims.
        since: Instant,
    },
    /// Lease held; the ARP/NS probe is out.
    Probing {
        /// When the claim started.
        since: Instant,
    },
    /// Lease held; the bind is in the kernel.
    Binding {
        /// When the claim started.
        since: Instant,
    },
    /// Bound and refreshed.
    Held {
        /// When the bind completed.
        since: Instant,
        /// Last successful refresh (or bind).
        refreshed: Instant,
        /// Last renewal of the address lifetime.
        address_renewed: Instant,
    },
    /// Being unbound because the lease lapsed; still claimed.
    Fencing {
        /// Why.
        reason: FenceReason,
    },
    /// Being unbound for good; dropped from claims once verified gone.
    Releasing {
        /// Why.
        reason: ReleaseReason,
    },
    /// Withdrawn after contention; retries at `until`.
    Backoff {
        /// When to retry.
        until: Instant,
    },
}

impl Phase {
    /// A short name for status output.
    pub fn label(&self) -> &'static str {
        match self {
            Phase::Free => "free",
            Phase::Waiting { .. } => "waiting",
            Phase::Claiming { .. } => "claiming",
            Phase::Probing { .. } => "probing",
            Phase::Binding { .. } => "binding",
            Phase::Held { .. } => "held",
            Phase::Fencing { .. } => "fencing",
            Phase::Releasing { .. } => "releasing",
            Phase::Backoff { .. } => "backoff",
        }
    }

    /// Whether the group may be on the interface (bound, or being bound/unbound).
    pub fn maybe_bound(&self) -> bool {
        matches!(
            self,
            Phase::Binding { .. }
                | Phase::Held { .. }
                | Phase::Fencing { .. }
                | Phase::Releasing { .. }
        )
    }
}

/// The engine's view of one group at `now`.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// The assignment names this node, and this node may hold groups now.
    pub want: bool,
    /// The group's assignment has been calm for Q (or a release hint arrived).
    pub calm: bool,
    /// Release at once, without waiting for calm: draining, leaving, ineligible.
    pub release_now: Option<ReleaseReason>,
    /// Latest instant a bind may be written, if the lease allows one.
    pub bind_deadline: Option<Instant>,
    /// Latest instant a refresh may be written, if the lease allows one.
    pub refresh_deadline: Option<Instant>,
    /// Contention rules say: withdraw the claim.
    pub withdraw: bool,
    /// The previous holder said it released the group and verified it gone: bind
    /// without the probe (a negative probe proves nothing anyway; the lease is the
    /// gate).
    pub skip_probe: bool,
    /// Latest instant a re-arm may be written after a refresh found the gate entry
    /// expired: the bind deadline (`--break rearm`: no limit at all).
    pub rearm_deadline: Option<Instant>,
    /// Refresh period (F with the gate, the address period otherwise).
    pub refresh_period: Duration,
    /// Address lifetime renewal period.
    pub address_period: Duration,
    /// A kernel operation for this group is in flight.
    pub inflight: bool,
    /// Drop the group from claims before the unbind is verified (`--break release-order`).
    pub break_release_order: bool,
}

/// What the engine must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Add the group to the claimed set.
    AddClaim,
    /// Drop the group from the claimed set (releases the voters' promises).
    RemoveClaim,
    /// Send the ARP/NS probe.
    Probe,
    /// Bind with this write deadline.
    Bind(Instant),
    /// Refresh with this write deadline; renew the address lifetime too if set.
    Refresh(Instant, bool),
    /// Bind a held group again in place, with this write deadline: its refresh
    /// found the gate entry expired while the lease still allows a bind (§4.15).
    Rearm(Instant),
    /// The re-arm is done; the group's last refresh before the lapse was at the
    /// instant given.
    Rearmed(Instant),
    /// Unbind and verify.
    Unbind,
    /// Tell the new owner the group is free.
    Hint,
    /// Start a contention backoff (the engine draws its length).
    Backoff,
    /// Announce (gratuitous ARP / unsolicited NA).
    Announce,
    /// The group is now answered by this node; the claim started at the instant given.
    Acquired(Instant),
    /// The group is released.
    Released(ReleaseReason),
    /// The group was fenced.
    Fenced(FenceReason),
    /// The probe found another holder.
    Conflict,
}

/// Result of a kernel operation, as the shell reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelOutcome {
    /// Done (for an unbind: verified gone).
    Ok,
    /// Not done: the write deadline had passed, or the gate entry had expired (the
    /// atomic refresh found nothing to refresh). The group is not answered.
    Lapsed,
    /// The kernel refused; the group's state on the interface is unknown.
    Failed(String),
}

/// Advances a group on a periodic or context change. Returns the new phase.
pub fn tick(phase: Phase, ctx: &Ctx, now: Instant, fx: &mut Vec<Effect>) -> Phase {
    match phase {
        Phase::Free => {
            if ctx.want && ctx.release_now.is_none() {
                return tick(Phase::Waiting { since: now }, ctx, now, fx);
            }
            phase
        }
        Phase::Waiting { .. } => {
            if !ctx.want || ctx.release_now.is_some() {
                Phase::Free
            } else if ctx.calm {
                fx.push(Effect::AddClaim);
                Phase::Claiming { since: now }
            } else {
                phase
            }
        }
        Phase::Claiming { since } => {
            if !ctx.want || ctx.release_now.is_some() {
                fx.push(Effect::RemoveClaim);
                Phase::Free
            } else if let Some(d) = ctx.bind_deadline.filter(|d| now <= *d) {
                if ctx.skip_probe {
                    fx.push(Effect::Bind(d));
                    Phase::Binding { since }
                } else {
                    fx.push(Effect::Probe);
                    Phase::Probing { since }
                }
            } else if ctx.withdraw {
                fx.push(Effect::RemoveClaim);
                fx.push(Effect::Backoff);
                // The engine replaces the placeholder deadline with its draw.
                Phase::Backoff { until: now }
            } else {
                phase
            }
        }
        Phase::Probing { .. } => {
            if !ctx.want || ctx.release_now.is_some() {
                fx.push(Effect::RemoveClaim);
                Phase::Free
            } else {
                phase
            }
        }
        Phase::Binding { .. } => phase,
        Phase::Held {
            since,
            refreshed,
            address_renewed,
        } => {
            let release = ctx
                .release_now
                .or((!ctx.want && ctx.calm).then_some(ReleaseReason::Moved));
            if let Some(reason) = release {
                return start_release(reason, ctx, fx);
            }
            if ctx.inflight {
                return phase;
            }
            match ctx.refresh_deadline {
                Some(d) if now <= d => {
                    if now >= refreshed + ctx.refresh_period {
                        let renew = now >= address_renewed + ctx.address_period;
                        fx.push(Effect::Refresh(d, renew));
                    }
                    Phase::Held {
                        since,
                        refreshed,
                        address_renewed,
                    }
                }
                _ => {
                    fx.push(Effect::Unbind);
                    fx.push(Effect::Fenced(FenceReason::LeaseLapsed));
                    Phase::Fencing {
                        reason: FenceReason::LeaseLapsed,
                    }
                }
            }
        }
        Phase::Fencing { .. } => {
            if !ctx.inflight {
                fx.push(Effect::Unbind);
            }
            phase
        }
        Phase::Releasing { .. } => {
            if !ctx.inflight {
                fx.push(Effect::Unbind);
            }
            phase
        }
        Phase::Backoff { until } => {
            if !ctx.want || ctx.release_now.is_some() {
                Phase::Free
            } else if now >= until {
                fx.push(Effect::AddClaim);
                Phase::Claiming { since: now }
            } else {
                phase
            }
        }
    }
}

fn start_release(reason: ReleaseReason, ctx: &Ctx, fx: &mut Vec<Effect>) -> Phase {
    if ctx.break_release_order {
        // Deliberately wrong order, for the simulator's checker test.
        fx.push(Effect::RemoveClaim);
        fx.push(Effect::Hint);
    }
    if !ctx.inflight {
        fx.push(Effect::Unbind);
    }
    Phase::Releasing { reason }
}

/// Takes in the probe's answer.
pub fn probe_result(
    phase: Phase,
    conflict: bool,
    ctx: &Ctx,
    now: Instant,
    fx: &mut Vec<Effect>,
) -> Phase {
    let Phase::Probing { since } = phase else {
        return phase;
    };
    if conflict {
        fx.push(Effect::Conflict);
        fx.push(Effect::RemoveClaim);
        fx.push(Effect::Backoff);
        return Phase::Backoff { until: now };
    }
    match ctx.bind_deadline {
        Some(d) if now <= d && ctx.want && ctx.release_now.is_none() => {
            fx.push(Effect::Bind(d));
            Phase::Binding { since }
        }
        _ => tick(Phase::Claiming { since }, ctx, now, fx),
    }
}

/// Which kind of kernel operation completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A bind.
    Bind,
    /// A refresh; whether it renewed the address lifetime too.
    Refresh {
        /// The refresh renewed the addresses' `valid_lft`.
        renewed_address: bool,
    },
    /// An unbind (Ok means verified gone).
    Unbind,
}

/// Takes in the completion of the group's in-flight kernel operation, `issued` at
/// that time. A bind or refresh that succeeded set the gate entry's timeout (and
/// the addresses' lifetime) at some moment between `issued` and `now`, so `issued`
/// is what the next refresh is counted from: an operation that completes late (the
/// address write waiting for the RTNL lock after the gate batch, other operations
/// of the same round) never pushes the next refresh past E (docs/safety.md §4.14).
pub fn kernel_done(
    phase: Phase,
    op: OpKind,
    outcome: &KernelOutcome,
    ctx: &Ctx,
    issued: Instant,
    now: Instant,
    fx: &mut Vec<Effect>,
) -> Phase {
    // Only an unbind can finish a fence or a release; anything else that completes
    // meanwhile (a refresh issued before the release) just frees the queue, and the
    // next tick issues the unbind.
    if matches!(phase, Phase::Fencing { .. } | Phase::Releasing { .. }) && op != OpKind::Unbind {
        return tick(
            phase,
            &Ctx {
                inflight: false,
                ..*ctx
            },
            now,
            fx,
        );
    }
    if matches!(phase, Phase::Binding { .. }) && op != OpKind::Bind
        || matches!(phase, Phase::Held { .. }) && op == OpKind::Unbind
    {
        return phase;
    }
    match (phase, outcome) {
        (Phase::Binding { since }, KernelOutcome::Ok) => {
            fx.push(Effect::Acquired(since));
            fx.push(Effect::Announce);
            Phase::Held {
                since: now,
                refreshed: issued,
                address_renewed: issued,
            }
        }
        (Phase::Binding { .. }, KernelOutcome::Lapsed) => {
            // The shell found the deadline passed (or undid the write after the ack).
            fx.push(Effect::Unbind);
            Phase::Fencing {
                reason: FenceReason::KernelLapsed,
            }
        }
        (Phase::Binding { .. }, KernelOutcome::Failed(_)) => {
            fx.push(Effect::Unbind);
            Phase::Fencing {
                reason: FenceReason::KernelError,
            }
        }
        // A re-arm (§4.15) is done: the group answers again.
        (
            Phase::Held {
                since, refreshed, ..
            },
            KernelOutcome::Ok,
        ) if op == OpKind::Bind => {
            fx.push(Effect::Rearmed(refreshed));
            fx.push(Effect::Announce);
            Phase::Held {
                since,
                refreshed: issued,
                address_renewed: issued,
            }
        }
        (
            Phase::Held {
                since,
                address_renewed,
                ..
            },
            KernelOutcome::Ok,
        ) => {
            let renewed = if op
                == (OpKind::Refresh {
                    renewed_address: true,
                }) {
                issued
            } else {
                address_renewed
            };
            Phase::Held {
                since,
                refreshed: issued,
                address_renewed: renewed,
            }
        }
        (Phase::Held { .. }, KernelOutcome::Lapsed) => {
            // The refresh found the entry expired (a stall longer than E − F): the
            // group is dark. Bound again in place if the lease still allows a bind.
            if op != OpKind::Bind
                && ctx.want
                && ctx.release_now.is_none()
                && let Some(d) = ctx.rearm_deadline.filter(|d| now <= *d)
            {
                fx.push(Effect::Rearm(d));
                return phase;
            }
            fx.push(Effect::Unbind);
            fx.push(Effect::Fenced(FenceReason::KernelLapsed));
            Phase::Fencing {
                reason: FenceReason::KernelLapsed,
            }
        }
        (Phase::Held { .. }, KernelOutcome::Failed(_)) => {
            fx.push(Effect::Unbind);
            fx.push(Effect::Fenced(FenceReason::KernelError));
            Phase::Fencing {
                reason: FenceReason::KernelError,
            }
        }
        (Phase::Fencing { .. }, KernelOutcome::Ok) => {
            if ctx.want && ctx.release_now.is_none() {
                Phase::Claiming { since: now }
            } else {
                fx.push(Effect::RemoveClaim);
                Phase::Free
            }
        }
        (Phase::Releasing { reason }, KernelOutcome::Ok) => {
            if !ctx.break_release_order {
                fx.push(Effect::RemoveClaim);
                fx.push(Effect::Hint);
            }
            fx.push(Effect::Released(reason));
            Phase::Free
        }
        // An unbind that failed is retried by the next tick; the claim stays, so the
        // voters' promises keep anyone else out meanwhile.
        (p @ (Phase::Fencing { .. } | Phase::Releasing { .. }), _) => p,
        (p, _) => p,
    }
}

#[cfg(test)]
mod tests;
