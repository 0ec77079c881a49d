//! Networking of the agent: the datagram envelope.

pub mod envelope;
