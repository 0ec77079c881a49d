//! wackamole: peer-to-peer virtual IP failover.
//!
//! Every VIP is answered by exactly one live machine; when a machine dies its VIPs
//! move in about half a second; VIPs are spread evenly; and no VIP is ever answered
//! by two machines at once — no leader, no external store.
//!
//! # Layout
//!
//! * [`core`] — the sans-IO core: everything that decides. Membership (foca/SWIM),
//!   rendezvous assignment, the quorum lease, the per-group ownership state machine,
//!   and the [`core::engine::Engine`] that glues them. Time and randomness come in as
//!   arguments; effects go out as actions. `docs/safety.md` is its argument.
//! * [`cli`] — flags (each also an environment variable) validated into one
//!   configuration before anything else happens.
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
