//! The model kernel: an address table with `valid_lft` semantics and the nftables
//! gate, both on the node's local clock.
//!
//! Address lifetimes follow the measured Linux behaviour (`notes/safety-review.md`
//! F1): an address refreshed at `r` is due at `r + 0.98 s`, but only the periodic
//! expiry worker removes it. The worker runs at once on every address add or
//! replace in the namespace, and afterwards re-arms at the earliest due time rounded
//! up by up to 0.27 s — never sooner than 1 s after its last run. So an unrelated
//! address change just before `r + 0.98` defers the removal to about `r + 2 s`.
//! REPLACE creates a missing address.
//!
//! The gate: a `live` set whose elements expire E after their last write, and an
//! `armed` set consumed by the bind's go-live batch. The atomic refresh fails, and
//! re-creates nothing, when the element has already expired.

use std::collections::BTreeMap;
use std::net::IpAddr;

use wackamole::core::time::Instant;

const NS: u64 = 1_000_000_000;
/// `age >= valid_lft` with the kernel's `+ HZ/50` rounding: due 0.98 s after refresh.
pub const DUE_AFTER: u64 = 980_000_000;
/// The worker never runs again sooner than this after a run (ADDRCONF_TIMER_FUZZ_MAX).
pub const WORKER_MIN_GAP: u64 = NS;
/// Largest rounding the worker adds to the earliest due time (round_jiffies_up,
/// accepted within ADDRCONF_TIMER_FUZZ).
pub const WORKER_FUZZ_MAX: u64 = 270_000_000;

/// Model-level breaks of the fence (for the checker tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelBreaks {
    /// Gate refresh and go-live re-create expired/missing elements.
    pub gate_atomic: bool,
    /// No fence at all: addresses and gate elements never expire.
    pub fence: bool,
}

#[derive(Clone, Copy, Debug)]
struct Addr {
    due: u64,
}

/// One node's kernel state. All times are local-clock nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Kernel {
    addrs: BTreeMap<IpAddr, Addr>,
    live: BTreeMap<IpAddr, u64>,
    armed: BTreeMap<IpAddr, u64>,
    /// Local time of the next worker run, if armed.
    pub worker_at: Option<u64>,
    last_worker_run: Option<u64>,
    breaks: KernelBreaks,
    gate: bool,
}

/// Result of a gate write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateWrite {
    /// Written.
    Ok,
    /// The element the batch needed had expired; nothing was written.
    Expired,
}

impl Kernel {
    /// A fresh kernel (machine boot). `gate` says whether answering needs a live entry.
    pub fn new(gate: bool, breaks: KernelBreaks) -> Kernel {
        Kernel {
            gate,
            breaks,
            ..Kernel::default()
        }
    }

    /// Whether this kernel answers for `addr` at local time `now`.
    pub fn answers(&self, addr: IpAddr, now: Instant) -> bool {
        if !self.addrs.contains_key(&addr) {
            return false;
        }
        if !self.gate {
            return true;
        }
        self.live
            .get(&addr)
            .is_some_and(|&e| self.breaks.fence || e > now.as_nanos())
    }

    /// When (local) the gate entry for `addr` stops letting traffic through.
    pub fn live_until(&self, addr: IpAddr) -> Option<u64> {
        if self.breaks.fence {
            return self.live.get(&addr).map(|_| u64::MAX);
        }
        self.live.get(&addr).copied()
    }

    /// Whether the address is configured.
    pub fn has_addr(&self, addr: IpAddr) -> bool {
        self.addrs.contains_key(&addr)
    }

    /// Adds or replaces an address with `valid_lft 1` (REPLACE creates). Runs the
    /// worker, as an address change does.
    pub fn replace_addr(&mut self, addr: IpAddr, now: Instant, fuzz: u64) {
        let due = if self.breaks.fence {
            u64::MAX
        } else {
            now.as_nanos() + DUE_AFTER
        };
        self.addrs.insert(addr, Addr { due });
        self.run_worker(now.as_nanos(), fuzz);
    }

    /// Deletes an address (no worker run).
    pub fn del_addr(&mut self, addr: IpAddr) {
        self.addrs.remove(&addr);
    }

    /// The expiry worker's run at local time `now`. Returns the removed addresses.
    pub fn run_worker(&mut self, now: u64, fuzz: u64) -> Vec<IpAddr> {
        let gone: Vec<IpAddr> = self
            .addrs
            .iter()
            .filter(|(_, a)| a.due <= now)
            .map(|(k, _)| *k)
            .collect();
        for a in &gone {
            self.addrs.remove(a);
        }
        self.last_worker_run = Some(now);
        self.worker_at = self
            .addrs
            .values()
            .map(|a| a.due)
            .filter(|&d| d != u64::MAX)
            .min()
            .map(|d| (d.saturating_add(fuzz)).max(now + WORKER_MIN_GAP));
        gone
    }

    /// Writes an `armed` element with timeout `a` (unconditional).
    pub fn arm(&mut self, addr: IpAddr, now: Instant, a: u64) {
        self.armed.insert(addr, now.as_nanos() + a);
    }

    /// The go-live batch: delete the armed element, add the live one with timeout E.
    /// Fails as a whole if the armed element has expired.
    pub fn go_live(&mut self, addr: IpAddr, now: Instant, e: u64) -> GateWrite {
        let n = now.as_nanos();
        let armed = self
            .armed
            .remove(&addr)
            .is_some_and(|x| self.breaks.fence || x > n);
        if !armed && !self.breaks.gate_atomic {
            return GateWrite::Expired;
        }
        self.live.insert(addr, n + e);
        GateWrite::Ok
    }

    /// The refresh batch: delete the live element, add it with timeout E. Fails as a
    /// whole (re-creating nothing) if it has expired.
    pub fn refresh_live(&mut self, addr: IpAddr, now: Instant, e: u64) -> GateWrite {
        let n = now.as_nanos();
        let present = self
            .live
            .get(&addr)
            .is_some_and(|&x| self.breaks.fence || x > n);
        if !present && !self.breaks.gate_atomic {
            self.live.remove(&addr);
            return GateWrite::Expired;
        }
        self.live.insert(addr, n + e);
        GateWrite::Ok
    }

    /// Removes the gate elements of `addr`.
    pub fn del_gate(&mut self, addr: IpAddr) {
        self.live.remove(&addr);
        self.armed.remove(&addr);
    }

    /// Addresses configured.
    pub fn addrs(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addrs.keys().copied()
    }

    /// Removes everything (the agent's start-up flush).
    pub fn flush(&mut self) {
        self.addrs.clear();
        self.live.clear();
        self.armed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn address_expiry_is_deferred_by_a_poke() {
        let mut k = Kernel::new(false, KernelBreaks::default());
        let v = ip("10.0.0.1");
        k.replace_addr(v, at(0), 100_000_000);
        assert_eq!(k.worker_at, Some(1_080_000_000));
        // An unrelated change at 0.95 s runs the worker (nothing due) and re-arms ≥ 1 s later.
        k.replace_addr(ip("10.0.0.2"), at(950), 0);
        assert!(k.has_addr(v));
        assert_eq!(k.worker_at, Some(1_950_000_000));
        k.run_worker(1_950_000_000, 0);
        assert!(!k.has_addr(v));
    }

    #[test]
    fn gate_refresh_is_atomic() {
        let mut k = Kernel::new(true, KernelBreaks::default());
        let v = ip("10.0.0.1");
        k.replace_addr(v, at(0), 0);
        k.arm(v, at(0), 20_000_000);
        assert_eq!(
            k.go_live(v, at(30), 80_000_000),
            GateWrite::Expired,
            "armed element expired"
        );
        k.arm(v, at(40), 20_000_000);
        assert_eq!(k.go_live(v, at(41), 80_000_000), GateWrite::Ok);
        assert!(k.answers(v, at(120)));
        assert!(!k.answers(v, at(121)));
        assert_eq!(k.refresh_live(v, at(125), 80_000_000), GateWrite::Expired);
        assert!(
            !k.answers(v, at(126)),
            "an expired element is not re-created"
        );
        let mut b = Kernel::new(
            true,
            KernelBreaks {
                gate_atomic: true,
                fence: false,
            },
        );
        b.replace_addr(v, at(0), 0);
        assert_eq!(b.refresh_live(v, at(125), 80_000_000), GateWrite::Ok);
        assert!(b.answers(v, at(126)));
    }
}
