//! keepalived (from Debian) in a lab, the reference the benches measure beside:
//! one VRRP instance per node for one VIP (VRRPv2, `advert_int 1`, priorities 150,
//! 140, …), started in each node's namespace in its own process group.

use std::net::IpAddr;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Stdio};

use nix::sys::signal::Signal;

use super::Lab;

/// Writes node `i`'s keepalived configuration for `vip` into `dir`.
pub fn keepalived_conf(i: usize, lab: &Lab, vip: IpAddr, dir: &std::path::Path) -> PathBuf {
    let prio = 150 - 10 * i as u32;
    let text = format!(
        "global_defs {{\n  router_id n{i}\n  enable_script_security\n}}\nvrrp_instance VI_1 {{\n  state {}\n  interface {}\n  virtual_router_id 51\n  priority {prio}\n  advert_int 1\n  virtual_ipaddress {{\n    {vip}/32 dev {}\n  }}\n}}\n",
        if i == 0 { "MASTER" } else { "BACKUP" },
        lab.nodes[i].ifname,
        lab.nodes[i].ifname
    );
    let p = dir.join(format!("keepalived-n{i}.conf"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Writes node `i`'s configuration with one VRRP instance per VIP (virtual router
/// ids 1, 2, …), masters spread over the nodes like wackamole's groups (instance k's
/// priority is highest on node k mod n), advertising every `advert_int` seconds;
/// `v3` selects VRRPv3 (needed for sub-second intervals).
pub fn keepalived_conf_many(
    i: usize,
    lab: &Lab,
    vips: &[IpAddr],
    advert_int: f64,
    v3: bool,
    dir: &std::path::Path,
) -> PathBuf {
    use std::fmt::Write as _;
    let n = lab.nodes.len();
    let ifname = &lab.nodes[i].ifname;
    let mut text = format!(
        "global_defs {{\n  router_id n{i}\n  enable_script_security\n  vrrp_version {}\n}}\n",
        if v3 { 3 } else { 2 }
    );
    for (k, vip) in vips.iter().enumerate() {
        let rank = (i + n - k % n) % n;
        let prio = 150 - 10 * rank as u32;
        let _ = write!(
            text,
            "vrrp_instance VI_{k} {{\n  state {}\n  interface {ifname}\n  virtual_router_id {}\n  priority {prio}\n  advert_int {advert_int}\n  virtual_ipaddress {{\n    {vip}/32 dev {ifname}\n  }}\n}}\n",
            if rank == 0 { "MASTER" } else { "BACKUP" },
            k + 1,
        );
    }
    let p = dir.join(format!("keepalived-many-n{i}.conf"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Starts keepalived on node `i` (VRRP only, in the foreground, its own process
/// group).
pub fn start_keepalived(
    lab: &Lab,
    i: usize,
    conf: &std::path::Path,
    dir: &std::path::Path,
) -> Child {
    lab.nodes[i]
        .command("keepalived")
        .args([
            "--dont-fork",
            "--log-console",
            "--vrrp",
            "-f",
            conf.to_str().unwrap(),
        ])
        .args([
            "-p",
            dir.join(format!("k{i}.pid")).to_str().unwrap(),
            "-r",
            dir.join(format!("v{i}.pid")).to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: keepalived runs its VRRP instance in a child
        // process, and a fault must hit the parent and the child alike (killing
        // only the parent lets the child wind down gracefully, which is a leave).
        .process_group(0)
        .spawn()
        .expect("keepalived")
}

/// Sends `sig` to keepalived's whole process group (parent and VRRP child).
pub fn signal_group(leader: i32, sig: Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(leader), sig);
}

/// Which nodes have `vip` on their interface (keepalived has no gate).
pub fn holders_k(lab: &Lab, vip: IpAddr) -> Vec<usize> {
    (0..lab.nodes.len())
        .filter(|&i| {
            !super::cluster::answering(&lab.nodes[i].ns, &lab.nodes[i].ifname, &[vip], false)
                .is_empty()
        })
        .collect()
}
