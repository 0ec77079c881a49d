//! Operations: metrics, the status API and dashboard, health checks, hooks.

pub mod client;
pub mod health;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod proc;
pub mod status;
