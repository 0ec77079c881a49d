//! wackamole: peer-to-peer virtual IP failover.
//!
//! Every VIP is answered by exactly one live machine; when a machine dies its VIPs
//! move in about half a second; VIPs are spread evenly; and no VIP is ever answered
//! by two machines at once — no leader, no external store.
//!
//! # Layout
//!
//! * [`core`] — the sans-IO core: everything that decides, one module per mechanism
//!   of DESIGN §2 (assignment, quiescence, the lease with its contention rule and
//!   write deadlines, two-node presence, the view's name rules, SWIM membership and
//!   metadata anti-entropy, the per-group ownership machine), and the
//!   [`core::engine::Engine`] that dispatches over them. Time and randomness come in
//!   as arguments; effects go out as actions. `docs/safety.md` is its argument.
//! * [`agent`] — the tokio shell around the engine: start-up checks, the loop that
//!   feeds it inputs and performs its actions, the ARP thread, reloads.
//! * [`addr`] — the kernel side: addresses over rtnetlink, the nftables gate, ARP/NA.
//! * [`net`] — the datagram envelope (AEAD, keyring, replay window) and secret files.
//! * [`ops`] — metrics, `/status` and the dashboard, the HTTP listener, health checks,
//!   hooks, the CLI client.
//! * [`cli`] — flags (each also an environment variable and a key of the TOML config
//!   file) validated into one configuration before anything else happens, and again
//!   on every reload.
//! * [`clock`] — CLOCK_BOOTTIME readings and suspend detection.
//! * [`demo`] and [`lab`] — network-namespace clusters for the demo, the tests and the
//!   benches.
//! * `simulations/` (crate `wackamole-simulations`) — the deterministic cluster
//!   simulator that runs many engines over a faulty model network and model kernels.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod agent;
pub mod cli;
pub mod clock;
pub mod core;
pub mod demo;
pub mod lab;
pub mod net;
pub mod ops;
