//! Deterministic cluster simulator for wackamole.
//!
//! Many real engines (real foca inside) run over a model network and model kernels,
//! with faults drawn from one seed, and a checker that looks at the kernels after
//! every event. See [`world`] for the parts, [`checker`] for the checker's contract and `docs/safety.md` for
//! what is covered.
#![forbid(unsafe_code)]

pub mod checker;
pub mod clock;
pub mod faults;
pub mod inject;
pub mod kernel;
pub mod liveness;
pub mod network;
pub mod queue;
pub mod report;
pub mod runner;
pub mod shell;
pub mod trace;
pub mod world;
