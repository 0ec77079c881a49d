//! Full recompute of the assignment: 1,000 nodes × 10,000 VIP groups (goal ≤ 50 ms),
//! plus smaller shapes and the weighted path — from scratch (nobody holds anything,
//! the cold start) and settled (every candidate reports holding what it was given,
//! the recompute after an unrelated view change).
//!
//! `cargo bench --bench assign`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use wackamole::core::assign::{Candidate, assign, group_hash};

fn groups(v: usize) -> Vec<u64> {
    (0..v)
        .map(|i| group_hash(&format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)))
        .collect()
}

fn nodes(n: usize, weighted: bool) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            name: format!("node-{i:04}"),
            weight: if weighted { 1 + (i % 4) as u16 } else { 1 },
            prefers: vec![],
            holds: vec![],
            fresh: vec![],
            unable: vec![],
        })
        .collect()
}

/// The candidates reporting the groups `a` gave them.
fn holding(ns: &[Candidate], a: &[Option<usize>]) -> Vec<Candidate> {
    let mut out = ns.to_vec();
    for (g, o) in a.iter().enumerate() {
        if let Some(i) = o {
            out[*i].holds.push(g as u16);
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("assign");
    g.sample_size(20);
    for &(n, v) in &[(3usize, 16usize), (16, 256), (100, 1000), (1000, 10_000)] {
        let gs = groups(v);
        let ns = nodes(n, false);
        g.bench_with_input(
            BenchmarkId::new("equal", format!("{n}x{v}")),
            &(),
            |b, _| b.iter(|| assign(black_box(&gs), black_box(&ns))),
        );
        let settled = holding(&ns, &assign(&gs, &ns));
        g.bench_with_input(
            BenchmarkId::new("settled", format!("{n}x{v}")),
            &(),
            |b, _| b.iter(|| assign(black_box(&gs), black_box(&settled))),
        );
    }
    let gs = groups(10_000);
    let ns = nodes(1000, true);
    g.bench_with_input(BenchmarkId::new("weighted", "1000x10000"), &(), |b, _| {
        b.iter(|| assign(black_box(&gs), black_box(&ns)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
