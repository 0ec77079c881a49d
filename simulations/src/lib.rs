//! Deterministic cluster simulator for wackamole.
//!
//! Many real engines (real foca inside) run over a model network and model kernels,
//! with faults drawn from one seed, and a checker that looks at the kernels after
//! every event. See [`world`] for the checker's contract and `docs/safety.md` for
//! what is covered.
#![forbid(unsafe_code)]

pub mod clock;
pub mod faults;
pub mod kernel;
pub mod runner;
pub mod world;
