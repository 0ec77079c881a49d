//! The agent: a thin tokio shell around the engine.
//!
//! * [`setup`](self::prepare) checks everything that can fail before any kernel state
//!   is touched (flags, key, interface, capabilities, the host lock, the UDP port).
//! * The shell (`shell.rs`) owns the [`Engine`](crate::core::engine::Engine) and
//!   everything it talks to. One task waits on the UDP socket, the engine's timer (a
//!   timerfd), the ARP thread's probe results, HTTP commands, health reports, hook
//!   results, link notifications and the shutdown signal; feeds each to the engine
//!   with `now` read after it arrived; and carries out the engine's actions:
//!   * `Send` → sealed with the [`Envelope`](crate::net::envelope::Envelope) and sent
//!     on the one UDP socket;
//!   * `Kernel` → performed in order right there by netlink (addresses, gate), at
//!     most 16 rounds per wake-up, each result handed straight back;
//!   * `Probe`/`Announce` → the ARP thread (`arp.rs`);
//!   * `Event` → logs, the `/status` journal, metrics and hooks (`ops.rs`).
//! * SIGHUP and `POST /reload` re-read the configuration; `reload.rs` decides what
//!   changes (or refuses all of it), the shell applies it.
//!
//! Start-up: the engine's first action is the flush of stale VIPs and gate entries.
//! Shutdown: release every VIP, then leave the cluster, then remove the addresses
//! and the gate and exit — within about a second (0.8 s of grace for the release).

mod arp;
mod ops;
mod reload;
mod setup;
mod shell;
mod timer;

use std::future::Future;

pub use self::setup::{
    NotifyOptions, Prepared, Reloading, SetLogFilter, ShellOptions, StartError, prepare,
};
use self::shell::Shell;
use crate::addr::gate;
use crate::addr::rtnl::Rtnl;
use crate::core::config::{ClusterConfig, FenceKind, Vip};

/// Runs the agent until `shutdown` resolves (then releases everything and leaves).
pub async fn run(p: Prepared, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let mut shell = Shell::start(p)?;
    shell.serve(shutdown).await;
    shell.stop().await;
    Ok(())
}

/// Every VIP this process's pool has had (reloads add to it): what an emergency
/// flush removes besides the start-up pool.
static EVER_POOL: std::sync::Mutex<Vec<Vip>> = std::sync::Mutex::new(Vec::new());

/// Records VIPs of a (reloaded) pool for [`emergency_flush`].
pub(crate) fn note_pool(vips: impl IntoIterator<Item = Vip>) {
    let mut ever = EVER_POOL.lock().unwrap_or_else(|e| e.into_inner());
    for v in vips {
        if !ever.contains(&v) {
            ever.push(v);
        }
    }
}

/// Removes this agent's VIPs and gate after a panic or a fatal error.
pub fn emergency_flush(cfg: &ClusterConfig, homes: &crate::core::links::Homes) {
    let mut vips: Vec<Vip> = cfg.groups.iter().flat_map(|g| g.vips.clone()).collect();
    for v in EVER_POOL.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if !vips.contains(v) {
            vips.push(*v);
        }
    }
    // Every interface any of them may be on; an address is gone when no interface
    // still has it.
    let mut ifaces = homes.interfaces(&cfg.groups);
    ifaces.extend(homes.of.values().cloned());
    ifaces.extend(homes.default.clone());
    ifaces.sort();
    ifaces.dedup();
    let mut all_gone = false;
    if let Ok(mut r) = Rtnl::new() {
        all_gone = true;
        for ifname in &ifaces {
            let Ok(Some(link)) = r.link(ifname) else {
                continue;
            };
            let Ok(present) = r.addrs(link.index) else {
                all_gone = false;
                continue;
            };
            for v in vips
                .iter()
                .filter(|v| present.iter().any(|a| a.addr == v.addr))
            {
                all_gone &= r.addr_del(link.index, v).is_ok();
            }
        }
    }
    // The gate stays (closed) unless every address is known to be gone.
    if cfg.fence == FenceKind::Gate && all_gone {
        gate::uninstall();
    }
}
