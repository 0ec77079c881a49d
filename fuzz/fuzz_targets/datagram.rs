//! The decode path behind the envelope: a peer that holds the key can still send
//! anything. Arbitrary plaintexts, and real datagrams of a second engine with the
//! input spliced in, go to `Engine::handle_datagram`; the engine then runs its
//! timers and answers its kernel operations. Nothing may panic, and the engine must
//! keep producing sane actions.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wackamole::core::config::{
    ClusterConfig, FenceKind, NodeConfig, Profile, QuorumMode, Timing, Vip, VipGroup,
};
use wackamole::core::engine::{Action, Breaks, Engine, EngineConfig, EngineInit};
use wackamole::core::time::Instant;

fn engine(name: &str, port: u16) -> Engine {
    let cluster = ClusterConfig::new(
        QuorumMode::Majority,
        FenceKind::Gate,
        vec!["a".into(), "b".into(), "c".into()],
        vec![],
        (0..4)
            .map(|i| VipGroup::new(vec![Vip::host(format!("10.0.0.{}", 100 + i).parse().unwrap())]))
            .collect(),
        Timing::profile(Profile::Default),
    );
    let cfg = EngineConfig {
        cluster,
        node: NodeConfig::new(name),
        bind: format!("10.0.0.1:{port}").parse().unwrap(),
        seeds: vec!["10.0.0.1:7001".parse().unwrap(), "10.0.0.1:7002".parse().unwrap()],
        cluster_size_hint: 3,
        breaks: Breaks::default(),
    };
    Engine::new(
        cfg,
        EngineInit {
            nonce: u64::from(port),
            rng_seed: u64::from(port),
            epoch: 1,
        },
        Instant::from_nanos(1_000_000_000),
    )
}

/// Runs `e` until `until` (kernel operations and probes answered at once); returns
/// the datagrams it sent.
fn drive(e: &mut Engine, now: Instant, until: Instant) -> Vec<Vec<u8>> {
    e.drive_alone(now, until)
        .into_iter()
        .filter_map(|a| match a {
            Action::Send { payload, .. } => Some(payload),
            _ => None,
        })
        .collect()
}

/// Real datagrams of node "b" talking to "a": joins, pings, claims, metadata.
fn genuine() -> &'static [Vec<u8>] {
    static G: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    G.get_or_init(|| {
        let mut a = engine("a", 7001);
        let mut b = engine("b", 7002);
        let t0 = Instant::from_nanos(1_000_000_000);
        let mut out = Vec::new();
        let mut now = t0;
        for _ in 0..40 {
            let next = Instant::from_nanos(now.as_nanos() + 50_000_000);
            let from_b = drive(&mut b, now, next);
            let from_a = drive(&mut a, now, next);
            for d in &from_b {
                a.handle_datagram("10.0.0.1:7002".parse().unwrap(), d, next);
            }
            for d in &from_a {
                b.handle_datagram("10.0.0.1:7001".parse().unwrap(), d, next);
            }
            out.extend(from_b);
            now = next;
        }
        out.sort();
        out.dedup();
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let g = genuine();
    let payload = if mode < 64 || g.is_empty() {
        rest.to_vec()
    } else {
        // Splice: a genuine datagram with the input written over part of it.
        let mut d = g[usize::from(mode) % g.len()].clone();
        if let Some((&at, tail)) = rest.split_first() {
            let at = usize::from(at) % (d.len() + 1);
            d.truncate(at);
            d.extend_from_slice(tail);
        }
        d
    };
    let mut a = engine("a", 7001);
    let t0 = Instant::from_nanos(1_000_000_000);
    drive(&mut a, t0, Instant::from_nanos(1_200_000_000));
    let now = Instant::from_nanos(1_200_000_000);
    a.handle_datagram("10.0.0.1:7002".parse().unwrap(), &payload, now);
    a.handle_datagram("10.0.0.1:7003".parse().unwrap(), &payload, now);
    drive(&mut a, now, Instant::from_nanos(2_000_000_000));
});
