//! Networking of the agent: the datagram envelope and the rules for secret files.

pub mod envelope;
pub mod secret;
