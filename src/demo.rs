//! `wackamole demo`: a throw-away cluster on this machine.
//!
//! As root: a bridge, three node namespaces and a client namespace (unique names,
//! removed on exit and on Ctrl-C), three agents holding four VIPs. It shows who owns
//! what, kills the machine holding the first VIP (link down + SIGKILL), prints the
//! failover time as the client sees it (ARP answers every 10 ms), and restores the
//! machine. Nothing leaves the namespaces.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli::DemoFlags;
use crate::lab::cluster::{Cluster, Spec};
use crate::lab::watch::Watch;
use crate::lab::{self, Lab};

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn table(c: &Cluster, macs: &[Option<[u8; 6]>]) {
    let h: BTreeMap<IpAddr, Vec<usize>> = c.holders();
    println!("    {:<18} {:<8} MAC", "VIP", "holder");
    for (vip, who) in h {
        let (name, mac) = match who.as_slice() {
            [n] => (format!("n{n}"), macs[*n].map(mac_str).unwrap_or_default()),
            [] => ("-".into(), String::new()),
            many => (format!("{many:?}"), "DUAL".into()),
        };
        println!("    {:<18} {:<8} {}", vip.to_string(), name, mac);
    }
}

fn interrupted(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

/// Runs the demo.
pub fn main(d: DemoFlags) -> ExitCode {
    if let Err(why) = lab::available() {
        eprintln!("wackamole demo: {why} (try: sudo wackamole demo)");
        return ExitCode::from(77);
    }
    // Without nftables the demo still runs, on the address-lifetime fence: slower
    // failover (about 2.6 s), said out loud, instead of refusing a newcomer.
    let gate = lab::installed("nft");
    if !gate {
        println!(
            "wackamole demo: NOTE nftables is not installed, so this demo runs with \
             --fence address: failover takes about 2.6 s instead of 0.5 s. Install it \
             with `apt-get install nftables` and run the demo again to see the gate."
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
            });
            s.store(true, Ordering::SeqCst);
        }
    });
    let bin = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("wackamole demo: cannot find my own binary: {e}");
            return ExitCode::from(70);
        }
    };
    let id = std::process::id() % 200;
    let mut spec = Spec::new(&format!("wmd{id}"), [200, id as u8 + 1]);
    spec.vips4 = 4;
    spec.extra = vec!["--profile".into(), d.profile.clone()];
    spec.gate = gate;
    println!(
        "wackamole demo: building a bridge, 3 node namespaces and a client namespace ({}-*) …",
        spec.prefix
    );
    let mut c = match Cluster::new(&bin, spec) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wackamole demo: {e}");
            Lab::sweep(&format!("wmd{id}"));
            return ExitCode::from(69);
        }
    };
    let macs: Vec<Option<[u8; 6]>> = (0..3).map(|i| c.mac(i)).collect();
    println!(
        "starting 3 agents (voters n0,n1,n2; VIPs {}) …",
        c.vips
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Err(e) = c.start_all() {
        eprintln!("wackamole demo: cannot start agents: {e}");
        return ExitCode::from(70);
    }
    let Some(t) = c.wait_converged(&[0, 1, 2], Duration::from_secs(20)) else {
        eprintln!(
            "wackamole demo: the cluster did not converge; agent log of n0:\n{}",
            c.log(0)
        );
        return ExitCode::from(70);
    };
    println!(
        "\nconverged in {} ms; who answers each VIP (checked in each node's kernel):",
        t.as_millis()
    );
    table(&c, &macs);
    if interrupted(&stop) {
        return ExitCode::SUCCESS;
    }
    let vip = c.vips[0];
    let victim = c.holders()[&vip].first().copied().unwrap_or(0);
    println!(
        "\nthe client asks for every VIP every 10 ms; now killing n{victim}, which holds {vip} (link down + SIGKILL) …"
    );
    let w = Watch::start(
        &c.lab,
        &c.vips,
        true,
        Duration::from_millis(5),
        Duration::from_millis(10),
    );
    std::thread::sleep(Duration::from_millis(500));
    let t0 = w.now();
    let _ = c.lab.nodes[victim].link(false);
    c.kill(victim);
    let rest: Vec<usize> = (0..3).filter(|&n| n != victim).collect();
    let _ = c.wait_converged(&rest, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let r = w.finish();
    match r.first_answer_after(vip, t0, macs[victim]) {
        Some(t1) => println!(
            "failover as the client saw it: {:.0} ms (first ARP answer for {vip} from the new holder)",
            (t1 - t0) * 1000.0
        ),
        None => println!("the client saw no new holder for {vip}"),
    }
    let duals = r.kernel_duals().len() + r.client_duals().len();
    println!(
        "dual answering observed: {duals} (kernel samples every 5 ms, client rounds every 10 ms)"
    );
    table(&c, &macs);
    if interrupted(&stop) {
        return ExitCode::SUCCESS;
    }
    println!(
        "\nrestoring n{victim} (link up, agent restarted; it takes its share back after the 2 s fail-back delay) …"
    );
    let _ = c.lab.nodes[victim].link(true);
    let _ = c.start(victim);
    std::thread::sleep(Duration::from_secs(3));
    let _ = c.wait_converged(&[0, 1, 2], Duration::from_secs(15));
    table(&c, &macs);
    if d.keep {
        println!("\n--keep: running until Ctrl-C (table every 2 s) …");
        let start = Instant::now();
        while !interrupted(&stop) && start.elapsed() < Duration::from_secs(24 * 3600) {
            std::thread::sleep(Duration::from_secs(2));
            println!();
            table(&c, &macs);
        }
    }
    println!("\ncleaning up namespaces …");
    drop(c);
    ExitCode::SUCCESS
}
