//! The agent's kernel side: addresses (rtnetlink), the nftables gate, ARP/NA.

pub mod arp;
pub mod gate;
pub mod kernel;
pub mod renew;
pub mod rtnl;
