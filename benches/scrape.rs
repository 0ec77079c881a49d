//! Scrape cost: `/metrics` for a node of a three-node cluster with 256 VIPs (goal
//! ≤ 5 ms per scrape). Three real engines exchange datagrams in memory until every
//! group is held; then one scrape is measured the way the agent does it: bring the
//! metrics up to date from the engine, then render the text exposition. `/status`
//! is measured alongside.
//!
//! `cargo bench --bench scrape`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use wackamole::core::config::{
    ClusterConfig, FenceKind, NodeConfig, Profile, QuorumMode, Timing, Vip, VipGroup,
};
use wackamole::core::engine::{Action, Engine, EngineConfig, EngineInit};
use wackamole::core::ownership::{KernelOutcome, Phase};
use wackamole::core::time::Instant;
use wackamole::ops::metrics::{Metrics, ShellCounters};
use wackamole::ops::status::{Journal, document};

const VIPS: usize = 256;

/// Three engines, 256 single-address groups, driven until every group is held.
fn cluster() -> (Vec<Engine>, Instant) {
    let names = ["n0", "n1", "n2"];
    let addr = |i: usize| -> SocketAddr { format!("10.0.0.{}:7946", i + 1).parse().unwrap() };
    let groups: Vec<VipGroup> = (0..VIPS)
        .map(|i| {
            VipGroup::new(vec![Vip::host(
                format!("10.1.{}.{}", i / 250, i % 250 + 1).parse().unwrap(),
            )])
        })
        .collect();
    let cluster = ClusterConfig::new(
        QuorumMode::Majority,
        FenceKind::Gate,
        names.iter().map(|s| s.to_string()).collect(),
        vec![],
        groups,
        Timing::profile(Profile::Default),
    );
    let t0 = Instant::from_nanos(1_000_000_000);
    let mut engines: Vec<Engine> = (0..3)
        .map(|i| {
            Engine::new(
                EngineConfig {
                    cluster: cluster.clone(),
                    node: NodeConfig::new(names[i]),
                    bind: addr(i),
                    seeds: (0..3).map(addr).collect(),
                    cluster_size_hint: 3,
                    breaks: Default::default(),
                    keyring: 0,
                },
                EngineInit {
                    nonce: 11 + i as u64,
                    rng_seed: 7 + i as u64,
                    epoch: 1,
                },
                t0,
            )
        })
        .collect();
    let index: BTreeMap<SocketAddr, usize> = (0..3).map(|i| (addr(i), i)).collect();
    let mut now = t0;
    let held = |es: &[Engine]| {
        es.iter()
            .map(|e| {
                e.bound_groups()
                    .filter(|g| matches!(e.phase(*g), Phase::Held { .. }))
                    .count()
            })
            .sum::<usize>()
    };
    for _ in 0..1_000_000 {
        let mut progressed = false;
        for i in 0..3 {
            while let Some(a) = engines[i].poll_action() {
                progressed = true;
                match a {
                    Action::Kernel { id, .. } => {
                        engines[i].handle_kernel(id, KernelOutcome::Ok, now)
                    }
                    Action::Probe { group } => engines[i].handle_probe(group, false, now),
                    Action::Send { to, payload } => {
                        if let Some(&j) = index.get(&to) {
                            engines[j].handle_datagram(addr(i), &payload, now);
                        }
                    }
                    _ => {}
                }
            }
        }
        if progressed {
            continue;
        }
        if held(&engines) == VIPS && now > t0 + Duration::from_secs(10) {
            return (engines, now);
        }
        let next = engines
            .iter()
            .filter_map(|e| e.poll_timeout())
            .min()
            .expect("a timer");
        now = now.max(next);
        for e in &mut engines {
            if e.poll_timeout().is_some_and(|t| t <= now) {
                e.handle_timeout(now);
            }
        }
    }
    panic!(
        "the cluster did not converge: {} of {VIPS} held",
        held(&engines)
    );
}

fn bench(c: &mut Criterion) {
    let (engines, now) = cluster();
    let e = &engines[0];
    let mut metrics = Metrics::new();
    let shell = ShellCounters {
        healthy: true,
        ..Default::default()
    };
    metrics.sync(e, &shell, true, now);
    let text = metrics.render();
    eprintln!(
        "exposition: {} bytes, {} samples; node n0 holds {} of {VIPS} groups",
        text.len(),
        text.lines().filter(|l| !l.starts_with('#')).count(),
        e.bound_groups().count()
    );
    let mut g = c.benchmark_group("scrape");
    g.bench_function("metrics_256_vips", |b| {
        b.iter(|| {
            metrics.sync(black_box(e), &shell, true, now);
            black_box(metrics.render())
        })
    });
    let journal = Journal::default();
    g.bench_function("status_256_vips", |b| {
        b.iter(|| black_box(document(black_box(e), &journal, true, now).to_string()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
