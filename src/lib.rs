//! wackamole: peer-to-peer virtual IP failover.
#![forbid(unsafe_code)]

pub mod core;
