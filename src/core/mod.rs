//! The sans-IO core: everything that decides.
//!
//! Nothing in here reads a clock, opens a socket, spawns a task or draws from a
//! global RNG (`tests/core_purity.rs` fails the build if one appears). Time comes in
//! as `now`, randomness as a seed, and every effect goes out as an
//! [`engine::Action`].
//!
//! One module per mechanism of DESIGN §2; the [`engine`] dispatches over them (its
//! module docs map each rule to its module).

pub mod anti_entropy;
pub mod assign;
pub mod config;
pub mod engine;
pub mod hash;
pub mod heartbeat;
pub mod lease;
pub mod links;
pub mod membership;
pub mod neighbours;
pub mod ownership;
pub mod presence;
pub mod quiescence;
pub mod round;
pub mod table;
pub mod time;
pub mod view;
pub mod wire;
