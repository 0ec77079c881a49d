//! The decode path behind the envelope: a peer that holds the key can still send
//! anything. Arbitrary plaintexts, and real datagrams of a second engine with the
//! input spliced in, go to `Engine::handle_datagram`; the engine then runs its
//! timers and answers its kernel operations. Nothing may panic, and the engine must
//! keep producing sane actions.
//!
//! A third mode reaches what an authenticated peer can send only to a live claimer:
//! an answer carrying the engine's current lease nonce and the seq of a claim it
//! really sent, with voter index, granted and denied groups taken from the input
//! (issue 10: an out-of-range group there panicked the engine).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wackamole::core::config::{
    ClusterConfig, FenceKind, NodeConfig, Profile, QuorumMode, Timing, Vip, VipGroup,
};
use wackamole::core::engine::{Action, Breaks, Engine, EngineConfig, EngineInit};
use wackamole::core::lease::Answer;
use wackamole::core::time::Instant;
use wackamole::core::wire::{self, Body};

fn engine(name: &str, port: u16) -> Engine {
    let cluster = ClusterConfig::new(
        QuorumMode::Majority,
        FenceKind::Gate,
        vec!["a".into(), "b".into(), "c".into()],
        vec![],
        (0..4)
            .map(|i| {
                VipGroup::new(vec![Vip::host(
                    format!("10.0.0.{}", 100 + i).parse().unwrap(),
                )])
            })
            .collect(),
        Timing::profile(Profile::Default),
    );
    let cfg = EngineConfig {
        cluster,
        node: NodeConfig::new(name),
        bind: format!("10.0.0.1:{port}").parse().unwrap(),
        seeds: vec![
            "10.0.0.1:7001".parse().unwrap(),
            "10.0.0.1:7002".parse().unwrap(),
        ],
        cluster_size_hint: 3,
        breaks: Breaks::default(),
        keyring: 0,
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
    if mode >= 224 {
        live_answer(rest);
        return;
    }
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

/// An answer to one of the engine's own live claims, its body from `input`.
fn live_answer(input: &[u8]) {
    // "a" claims only towards voters it knows: run it with "b" until it does.
    let mut a = engine("a", 7001);
    let mut b = engine("b", 7002);
    let mut now = Instant::from_nanos(1_000_000_000);
    let mut sent = Vec::new();
    for _ in 0..40 {
        let next = Instant::from_nanos(now.as_nanos() + 50_000_000);
        let from_a = drive(&mut a, now, next);
        let from_b = drive(&mut b, now, next);
        for d in &from_b {
            a.handle_datagram("10.0.0.1:7002".parse().unwrap(), d, next);
        }
        for d in &from_a {
            b.handle_datagram("10.0.0.1:7001".parse().unwrap(), d, next);
        }
        sent.extend(from_a);
        now = next;
    }
    let cid = a.cluster_id();
    let seqs: Vec<(u64, u64)> = sent
        .iter()
        .filter_map(|d| match wire::decode(cid, d) {
            Ok(Body::Claim(c)) => Some((c.nonce, c.seq)),
            _ => None,
        })
        .collect();
    let Some(&(nonce, last)) = seqs.last() else {
        return;
    };
    let mut it = input.iter().copied();
    let mut next = || it.next().unwrap_or(0);
    let voter = u16::from(next() % 5);
    let seq = last.saturating_sub(u64::from(next() % 4));
    let n_granted = usize::from(next() % 8);
    let granted: Vec<u16> = (0..n_granted)
        .map(|_| u16::from_le_bytes([next(), next() % 17]))
        .collect();
    let n_denied = usize::from(next() % 8);
    let denied: Vec<(u16, String)> = (0..n_denied)
        .map(|_| {
            let g = u16::from_le_bytes([next(), next() % 17]);
            let name = ["a", "b", "c", "zz"][usize::from(next() % 4)].to_string();
            (g, name)
        })
        .collect();
    let mut granted = granted;
    granted.sort_unstable();
    // Mostly the engine's own voter set (so the answer is resolved and counted),
    // sometimes a digest nobody gossips.
    let set = if next() % 4 == 0 {
        u64::from(next())
    } else {
        a.config().voters_digest()
    };
    let answer = Answer {
        voter,
        set,
        nonce,
        seq,
        granted,
        denied,
    };
    if let Ok(bytes) = wire::encode(cid, &Body::Answer(answer)) {
        a.handle_datagram("10.0.0.1:7002".parse().unwrap(), &bytes, now);
        drive(&mut a, now, Instant::from_nanos(4_000_000_000));
    }
}
