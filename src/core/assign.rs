//! Weighted, bounded-load rendezvous assignment.
//!
//! `assign` says which node *should* answer each VIP group. Every node computes it
//! from its own view, with no messages; the same inputs give the same answer on every
//! build, because all arithmetic is on integers from the pinned hash
//! ([`super::hash`]). Safety never depends on it — the lease decides who *may* bind —
//! but liveness and calm do.
//!
//! The rule:
//! 1. A group one or more eligible candidates prefer goes to the preferring candidate
//!    with the best score (preferences count toward load but are not capped).
//! 2. Every other group goes where group-proposing deferred acceptance puts it: each
//!    group ranks candidates by the weighted rendezvous score of the pair (highest
//!    random weight, `-ln(u)/w` compared exactly in fixed point), each candidate keeps
//!    its best-scoring groups up to its cap `ceil(V · w / Σw)`. The result is the
//!    group-optimal stable matching: unique, and independent of the order candidates
//!    or groups are given in.
//!
//! With equal weights no candidate holds more than `ceil(V / N)` groups (B1,
//! preferences aside). Capacity couples groups, so a join or leave can move a few
//! groups besides the ones that must move; the README reports how many.

use super::hash::{hash_str, mix64};

/// One node that may be assigned groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Node name (unique among candidates).
    pub name: String,
    /// Relative weight, 1–1000.
    pub weight: u16,
    /// Groups this candidate prefers.
    pub prefers: Vec<u16>,
}

impl Candidate {
    /// A weight-1 candidate without preferences.
    pub fn new(name: impl Into<String>) -> Candidate {
        Candidate {
            name: name.into(),
            weight: 1,
            prefers: Vec::new(),
        }
    }
}

/// Hash of a group's stable key (its first address), the group half of the score.
pub fn group_hash(key: &str) -> u64 {
    hash_str(key)
}

/// How many best candidates each group keeps ready before falling back to a scan.
const TOP_K: usize = 8;

/// Fixed-point −log2(x / 2^64) with 24 fractional bits, for x ≥ 1, by repeated
/// squaring. Exact integer arithmetic so that every platform agrees. Slow; used to
/// build [`LOG_TABLE`] and as the reference in tests.
fn neg_log2_fixed_slow(x: u64) -> u64 {
    let x = x.max(1);
    let lz = u64::from(x.leading_zeros());
    // y = m / 2^63 in [1, 2), kept as a Q1.63 number.
    let mut y: u128 = u128::from(x << lz);
    let mut frac: u64 = 0;
    for _ in 0..24 {
        y = (y * y) >> 63;
        frac <<= 1;
        if y >= (1u128 << 64) {
            y >>= 1;
            frac |= 1;
        }
    }
    ((lz + 1) << 24) - frac
}

const LOG_BITS: u32 = 11;

/// log2(1 + i/2048) in Q8.24 for i in 0..=2048, from the exact routine.
fn log_table() -> &'static [u64] {
    static TABLE: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=(1u64 << LOG_BITS))
            .map(|i| {
                // m = (1 + i/2048) · 2^63; −log2(m/2^64) = 1 − log2(1 + i/2048).
                let m = (1u128 << 63) + (u128::from(i) << (63 - LOG_BITS));
                if m >= 1u128 << 64 {
                    1 << 24
                } else {
                    (1 << 24) - neg_log2_fixed_slow(m as u64)
                }
            })
            .collect()
    })
}

/// Fast −log2(x / 2^64) in Q8.24: table lookup with linear interpolation; integer
/// only, so every platform agrees (error below 2^-24).
fn neg_log2_fixed(x: u64) -> u64 {
    let x = x.max(1);
    let lz = u64::from(x.leading_zeros());
    let m = x << lz; // top bit set
    let idx = ((m >> (63 - LOG_BITS)) & ((1 << LOG_BITS) - 1)) as usize;
    let rest = (m << (LOG_BITS + 1)) >> 32; // next 32 bits, as a fraction of 2^32
    let t = log_table();
    let (a, b) = (t[idx], t[idx + 1]);
    let log2_y = a + (((b - a) * rest) >> 32); // log2(m / 2^63) in Q8.24
    ((lz + 1) << 24) - log2_y
}

/// Assigns each of `groups.len()` groups (given by [`group_hash`]) to a candidate, or
/// to `None` if there is none. Returns indices into `candidates`.
pub fn assign(groups: &[u64], candidates: &[Candidate]) -> Vec<Option<usize>> {
    let v = groups.len();
    let mut out = vec![None; v];
    // Canonical order of candidates: by name. Output maps back to caller indices.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[a].name.cmp(&candidates[b].name));
    order.dedup_by(|a, b| candidates[*a].name == candidates[*b].name);
    let n = order.len();
    if n == 0 || v == 0 {
        return out;
    }
    // The node half of `combine`, precomputed: pair(g, c) = mix64(g ^ node_mix[c]).
    let node_mix: Vec<u64> = order
        .iter()
        .map(|&i| mix64(hash_str(&candidates[i].name)).rotate_left(17))
        .collect();
    let weight: Vec<u16> = order
        .iter()
        .map(|&i| candidates[i].weight.clamp(1, 1000))
        .collect();
    let weighted = weight.iter().any(|&w| w != weight[0]);
    let pair = |g: usize, c: usize| mix64(groups[g] ^ node_mix[c]);
    // A group's preference for a candidate: higher is better. Equal weights: the
    // pair hash. Weighted: −(−log2 u / w) in fixed point, ties broken by the hash.
    let key = |g: usize, c: usize| -> (u64, u64) {
        let x = pair(g, c);
        if weighted {
            (
                u64::MAX - (neg_log2_fixed(x) << 20) / u64::from(weight[c]),
                x,
            )
        } else {
            (x, 0)
        }
    };
    // (key, candidate) with candidate index as the last tie-break (lower wins).
    let better =
        |a: ((u64, u64), usize), b: ((u64, u64), usize)| a.0 > b.0 || (a.0 == b.0 && a.1 < b.1);

    // 1. Preferences.
    let mut load = vec![0usize; n];
    let mut preferred: Vec<Option<usize>> = vec![None; v];
    for (c, &ci) in order.iter().enumerate() {
        for &g in &candidates[ci].prefers {
            let g = usize::from(g);
            if g >= v {
                continue;
            }
            preferred[g] = match preferred[g] {
                Some(o) if !better((key(g, c), c), (key(g, o), o)) => Some(o),
                _ => Some(c),
            };
        }
    }
    let mut free_groups = Vec::with_capacity(v);
    let mut result: Vec<Option<usize>> = vec![None; v];
    for g in 0..v {
        match preferred[g] {
            Some(c) => {
                result[g] = Some(c);
                load[c] += 1;
            }
            None => free_groups.push(g),
        }
    }

    // 2. Capacities: ceil(V · w / Σw) minus preferred load; raised evenly if
    //    preferences leave too little room.
    let total_w: u64 = weight.iter().map(|&w| u64::from(w)).sum();
    let mut cap: Vec<usize> = weight
        .iter()
        .map(|&w| (v as u64 * u64::from(w)).div_ceil(total_w) as usize)
        .collect();
    loop {
        let room: usize = (0..n).map(|c| cap[c].saturating_sub(load[c])).sum();
        if room >= free_groups.len() {
            break;
        }
        for c in cap.iter_mut() {
            *c += 1;
        }
    }
    let room: Vec<usize> = (0..n).map(|c| cap[c].saturating_sub(load[c])).collect();

    // 3. Deferred acceptance. Each group keeps its TOP_K best candidates; when they
    //    are exhausted it rescans for the best candidate below the last one tried.
    let k = TOP_K.min(n);
    type Entry = ((u64, u64), usize);
    const NONE: Entry = ((0, 0), usize::MAX);
    let mut top: Vec<[Entry; TOP_K]> = vec![[NONE; TOP_K]; v];
    for &g in &free_groups {
        let t = &mut top[g];
        let mut len = 0;
        // Equal weights (the common case): the key is the pair hash itself, so a
        // single comparison against the current k-th best skips most candidates.
        let gh = groups[g];
        let mut threshold = 0u64;
        for (c, &nm) in node_mix.iter().enumerate() {
            if !weighted {
                let x = mix64(gh ^ nm);
                if len == k && x <= threshold {
                    continue;
                }
            }
            let e = (key(g, c), c);
            if len == k && !better(e, t[k - 1]) {
                continue;
            }
            let mut pos = len.min(k - 1);
            if len < k {
                len += 1;
            }
            while pos > 0 && better(e, t[pos - 1]) {
                t[pos] = t[pos - 1];
                pos -= 1;
            }
            t[pos] = e;
            if len == k {
                threshold = t[k - 1].0.0;
            }
        }
    }
    let mut next = vec![0usize; v]; // how many candidates each group has tried
    let mut last_tried: Vec<Entry> = vec![NONE; v];
    // Accepted groups per candidate; a candidate prefers groups by raw pair hash.
    let mut accepted: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut stack: Vec<usize> = free_groups.iter().rev().copied().collect();
    while let Some(g) = stack.pop() {
        if next[g] == k {
            // The ready candidates are used up: refill with the next k best strictly
            // below the last one tried (one scan per k proposals).
            let lt = last_tried[g];
            let t = &mut top[g];
            *t = [NONE; TOP_K];
            let mut len = 0;
            for c in 0..n {
                let e = (key(g, c), c);
                if better(e, lt) || e == lt {
                    continue;
                }
                if len == k && !better(e, t[k - 1]) {
                    continue;
                }
                let mut pos = len.min(k - 1);
                if len < k {
                    len += 1;
                }
                while pos > 0 && better(e, t[pos - 1]) {
                    t[pos] = t[pos - 1];
                    pos -= 1;
                }
                t[pos] = e;
            }
            next[g] = 0;
        }
        let e = top[g][next[g]];
        let c = e.1;
        if c == usize::MAX {
            // Unreachable while total room ≥ groups; kept unassigned rather than panic.
            continue;
        }
        next[g] += 1;
        last_tried[g] = e;
        if room[c] == 0 {
            stack.push(g);
            continue;
        }
        accepted[c].push(g);
        if accepted[c].len() > room[c] {
            // Reject the group this candidate likes least (lowest raw pair hash).
            let (wi, _) = accepted[c]
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| pair(**a, c).cmp(&pair(**b, c)).then(b.cmp(a)))
                .expect("non-empty");
            let worst = accepted[c].swap_remove(wi);
            stack.push(worst);
        }
    }
    for (c, gs) in accepted.iter().enumerate() {
        for &g in gs {
            result[g] = Some(c);
        }
    }
    for g in 0..v {
        out[g] = result[g].map(|c| order[c]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn groups(v: usize) -> Vec<u64> {
        (0..v)
            .map(|i| group_hash(&format!("10.0.{}.{}", i / 250, i % 250)))
            .collect()
    }

    fn names(assign: &[Option<usize>], cands: &[Candidate]) -> Vec<Option<String>> {
        assign
            .iter()
            .map(|o| o.map(|i| cands[i].name.clone()))
            .collect()
    }

    fn cands(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate::new(format!("node-{i}")))
            .collect()
    }

    #[test]
    fn golden_assignment() {
        // Pins the whole pipeline (hash, score, matching): two builds must agree.
        let c = cands(3);
        let a = names(&assign(&groups(8), &c), &c);
        let got: Vec<&str> = a.iter().map(|o| o.as_deref().unwrap()).collect();
        assert_eq!(got, GOLDEN);
    }
    const GOLDEN: [&str; 8] = [
        "node-0", "node-1", "node-2", "node-2", "node-1", "node-0", "node-1", "node-0",
    ];

    #[test]
    fn golden_weighted_assignment() {
        let mut c = cands(3);
        c[1].weight = 3;
        let a = names(&assign(&groups(10), &c), &c);
        let got: Vec<&str> = a.iter().map(|o| o.as_deref().unwrap()).collect();
        assert_eq!(got, GOLDEN_WEIGHTED);
    }
    const GOLDEN_WEIGHTED: [&str; 10] = [
        "node-2", "node-1", "node-1", "node-1", "node-1", "node-0", "node-1", "node-0", "node-1",
        "node-2",
    ];

    #[test]
    fn neg_log2_is_accurate() {
        for (x, want) in [
            (1u64 << 63, 1.0f64),
            (1u64 << 62, 2.0),
            (u64::MAX, 0.0),
            (3u64 << 62, 0.415_037_5),
        ] {
            let got = neg_log2_fixed(x) as f64 / (1u64 << 24) as f64;
            assert!((got - want).abs() < 1e-5, "x={x} got={got} want={want}");
        }
        // The fast path agrees with the exact one to a few units of 2^-24.
        let mut x = 1u64;
        for _ in 0..10_000 {
            x = crate::core::hash::mix64(x.wrapping_add(0x9e37_79b9_7f4a_7c15));
            let (a, b) = (neg_log2_fixed(x), neg_log2_fixed_slow(x));
            assert!(a.abs_diff(b) <= 4, "x={x} fast={a} exact={b}");
        }
    }

    #[test]
    fn pair_is_the_pinned_combine() {
        let g = group_hash("10.0.0.1");
        let n = hash_str("node-a");
        assert_eq!(
            mix64(g ^ mix64(n).rotate_left(17)),
            crate::core::hash::combine(g, n)
        );
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(assign(&groups(3), &[]), vec![None, None, None]);
        assert!(assign(&[], &cands(3)).is_empty());
    }

    #[test]
    fn preferences_win_while_eligible() {
        let mut c = cands(4);
        c[2].prefers = vec![0, 1, 2, 3, 4];
        let a = assign(&groups(8), &c);
        assert!(a[..5].iter().all(|o| *o == Some(2)));
        // The rest still spread over the others and respect their caps.
        for i in [0, 1, 3] {
            assert!(a.iter().filter(|o| **o == Some(i)).count() <= 2);
        }
    }

    #[test]
    fn weights_shift_load() {
        let mut c = cands(2);
        c[0].weight = 3;
        let a = assign(&groups(40), &c);
        let heavy = a.iter().filter(|o| **o == Some(0)).count();
        assert_eq!(heavy, 30, "cap is ceil(40*3/4)");
    }

    fn loads(a: &[Option<usize>], n: usize) -> Vec<usize> {
        let mut l = vec![0; n];
        for c in a.iter().flatten() {
            l[*c] += 1;
        }
        l
    }

    fn node_set() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z]{1,6}", 1..16).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn order_independent(nodes in node_set(), v in 0usize..80, seed in any::<u64>()) {
            let c: Vec<Candidate> = nodes.iter().map(Candidate::new).collect();
            let mut shuffled = c.clone();
            // Deterministic shuffle from the seed.
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = crate::core::hash::mix64(s.wrapping_add(i as u64));
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let g = groups(v);
            prop_assert_eq!(names(&assign(&g, &c), &c), names(&assign(&g, &shuffled), &shuffled));
        }

        #[test]
        fn bounded_load_and_complete(nodes in node_set(), v in 0usize..200) {
            let c: Vec<Candidate> = nodes.iter().map(Candidate::new).collect();
            let a = assign(&groups(v), &c);
            prop_assert!(a.iter().all(|o| o.is_some()));
            let cap = v.div_ceil(c.len());
            for l in loads(&a, c.len()) {
                prop_assert!(l <= cap, "load {} > cap {}", l, cap);
            }
        }

        #[test]
        fn weighted_bounded(ws in proptest::collection::vec(1u16..10, 1..10), v in 0usize..150) {
            let c: Vec<Candidate> = ws.iter().enumerate()
                .map(|(i, &w)| Candidate { name: format!("n{i}"), weight: w, prefers: vec![] }).collect();
            let a = assign(&groups(v), &c);
            let total: u64 = ws.iter().map(|&w| u64::from(w)).sum();
            for (i, l) in loads(&a, c.len()).into_iter().enumerate() {
                let cap = (v as u64 * u64::from(ws[i])).div_ceil(total) as usize;
                prop_assert!(l <= cap);
            }
        }

    }

    /// Movement under one join or leave: what must move, and what moves besides.
    /// Bounded loads couple groups (a leave raises every cap, a join lowers it), so a
    /// memoryless assignment moves a few groups besides those of the node that came
    /// or went. This measures it (the README reports it) and guards against a
    /// regression.
    #[test]
    fn movement_is_reported() {
        let trials = 2000;
        for join in [false, true] {
            let mut extra_hist: BTreeMap<usize, usize> = BTreeMap::new();
            let mut within_bound = 0;
            let mut extra_total = 0;
            for t in 0..trials {
                let n = 2 + t % 15;
                let v = 1 + (t * 7) % 64;
                let c: Vec<Candidate> = (0..n)
                    .map(|i| Candidate::new(format!("t{t}-n{i}")))
                    .collect();
                let g = groups(v);
                let changed = t % n;
                let rest: Vec<Candidate> = c
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != changed)
                    .map(|(_, x)| x.clone())
                    .collect();
                let full = names(&assign(&g, &c), &c);
                let less = names(&assign(&g, &rest), &rest);
                // A leave goes full -> less; a join goes less -> full.
                let (before, after) = if join { (&less, &full) } else { (&full, &less) };
                let moved = before.iter().zip(after).filter(|(b, a)| b != a).count();
                let who = c[changed].name.as_str();
                let must = if join {
                    after.iter().filter(|a| a.as_deref() == Some(who)).count()
                } else {
                    before.iter().filter(|b| b.as_deref() == Some(who)).count()
                };
                *extra_hist.entry(moved - must).or_default() += 1;
                extra_total += moved - must;
                if moved <= v.div_ceil(n) + 1 {
                    within_bound += 1;
                }
            }
            let what = if join { "join" } else { "leave" };
            eprintln!(
                "{what}: extra moves histogram {extra_hist:?}; mean extra {:.2}; within ceil(V/N)+1: {within_bound}/{trials}",
                extra_total as f64 / trials as f64
            );
            assert!(
                within_bound * 100 >= trials * 55,
                "{what}: {within_bound}/{trials}"
            );
        }
    }
}
