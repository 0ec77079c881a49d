//! Weighted, bounded-load, sticky rendezvous assignment.
//!
//! `assign` says which node *should* answer each VIP group. Every node computes it
//! from its own view, with no messages; the same inputs give the same answer on every
//! build, because all arithmetic is on integers from the pinned hash
//! ([`super::hash`]). Safety never depends on it — the lease decides who *may* bind —
//! but liveness and calm do.
//!
//! The inputs are the eligible candidates with their weights, preferences and the
//! groups each one reports holding (gossiped in its metadata). The rule:
//! 1. A group one or more eligible candidates prefer goes to the preferring candidate
//!    with the best score (preferences count toward load but are not capped).
//! 2. **Quotas.** The V groups are shared out by largest remainder: candidate c gets
//!    `floor(V · w_c / Σw)` or one more, the extra ones going to the largest
//!    remainders and, among equal remainders, to the highest *seat* (a pinned hash
//!    of the name — a fixed order, so the same candidates keep the extra ones as
//!    members come and go). Its room for unpreferred groups is its quota minus its
//!    preferred load. With equal weights every load is `floor(V/N)` or `ceil(V/N)`.
//! 3. **Keep.** A group reported held by candidates stays with the best-scoring of
//!    them; each candidate keeps up to its room of what it holds (the groups it has
//!    held longest first, then its best-scoring ones) and lets go of the rest.
//! 4. **Place.** Every group not kept goes where group-proposing deferred acceptance
//!    puts it within the rooms left: each group ranks candidates by the weighted
//!    rendezvous score of the pair (highest random weight, `-ln(u)/w` compared exactly
//!    in fixed point), each candidate accepts its best-scoring groups up to its
//!    remaining room. The result is the group-optimal stable matching: unique, and
//!    independent of the order candidates or groups are given in.
//!
//! From scratch (nobody holds anything) this is plain bounded-load rendezvous
//! hashing. Fed its own output it returns it unchanged (a fixed point), and from a
//! fixed point one join or leave (equal weights, no preferences) moves exactly the
//! groups of the node that came or went: quotas only fall on a join and only rise on
//! a leave, and the fixed seat order means no remaining node's extra slot moves to
//! another, so no group moves for balance alone. Hence at most `ceil(V/N)` moves.
//! Without the holdings (the memoryless rule) capacity couples groups and a join or
//! leave moved 1.5 other groups on average, up to 12.

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
    /// Groups this candidate reports holding (any order; unknown indices ignored).
    pub holds: Vec<u16>,
    /// Of those, the most recently taken first (the rest were taken earlier): when it
    /// holds more than its room, it gives up the most recent first, so that a change
    /// (a rollout, a failback) moves the groups it touched rather than calm ones.
    pub fresh: Vec<u16>,
    /// Groups this candidate cannot hold now (an interface they need is down there):
    /// it is never assigned them and its holdings of them do not count.
    pub unable: Vec<u16>,
}

impl Candidate {
    /// A weight-1 candidate without preferences.
    pub fn new(name: impl Into<String>) -> Candidate {
        Candidate {
            name: name.into(),
            weight: 1,
            prefers: Vec::new(),
            holds: Vec::new(),
            fresh: Vec::new(),
            unable: Vec::new(),
        }
    }
}

/// Hash of a group's stable key (its first address), the group half of the score.
pub fn group_hash(key: &str) -> u64 {
    hash_str(key)
}

/// Salt of the seat order (which candidates get the extra groups of a quota).
const SEAT_SALT: u64 = 0x5ea7_5ea7_5ea7_5ea7;

/// How many best candidates each group keeps ready before falling back to a scan.
const TOP_K: usize = 8;

/// Fixed-point −log2(x / 2^64) with 24 fractional bits, for x ≥ 1, by repeated
/// squaring. Exact integer arithmetic so that every platform agrees. Slow; used to
/// build `LOG_TABLE` and as the reference in tests.
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
    assign_masked(groups, candidates, None)
}

/// Which candidates may serve which groups: `allowed(g, c)` with `g` a group index and
/// `c` an index into the caller's candidates. While a pool change rolls through, a
/// group is served only by the nodes that have it configured (DESIGN §4).
pub type Allowed<'a> = &'a dyn Fn(usize, usize) -> bool;

/// [`assign`], with each group restricted to the candidates `allowed` names (`None`:
/// every candidate may serve every group). Preferences and holdings outside the
/// mask are ignored; the quotas stay those of all groups over all candidates. A group
/// that finds no room among its allowed candidates goes to the best-scoring of them
/// anyway (a node that alone has a group configured serves it), and a group no
/// candidate may serve stays unassigned.
pub fn assign_masked(
    groups: &[u64],
    candidates: &[Candidate],
    allowed: Option<Allowed<'_>>,
) -> Vec<Option<usize>> {
    let v = groups.len();
    let mut out = vec![None; v];
    // The caller's mask and each candidate's own `unable` list.
    let masked = |g: usize, ci: usize| {
        allowed.is_some_and(|f| !f(g, ci)) || candidates[ci].unable.contains(&(g as u16))
    };
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
            if g >= v || masked(g, ci) {
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

    // 2. Quotas by largest remainder; the extra ones to the highest seats among
    //    equal remainders. Σ quota = V, so the rooms always fit the other groups.
    let total_w: u64 = weight.iter().map(|&w| u64::from(w)).sum();
    let share = |c: usize| v as u64 * u64::from(weight[c]);
    let mut quota: Vec<usize> = (0..n).map(|c| (share(c) / total_w) as usize).collect();
    let leftover = v - quota.iter().sum::<usize>();
    let seat: Vec<u64> = order
        .iter()
        .map(|&i| mix64(hash_str(&candidates[i].name) ^ SEAT_SALT))
        .collect();
    let mut by_rest: Vec<usize> = (0..n).collect();
    by_rest
        .sort_by(|&a, &b| (share(b) % total_w, seat[b], a).cmp(&(share(a) % total_w, seat[a], b)));
    for &c in &by_rest[..leftover] {
        quota[c] += 1;
    }
    let mut room: Vec<usize> = (0..n).map(|c| quota[c].saturating_sub(load[c])).collect();
    debug_assert!(room.iter().sum::<usize>() >= free_groups.len());

    // 3. Keep what is held: each group with its best-scoring holder, each holder up
    //    to its room (its best-scoring groups first).
    let mut holder: Vec<Option<usize>> = vec![None; v];
    for (c, &ci) in order.iter().enumerate() {
        for &g in &candidates[ci].holds {
            let g = usize::from(g);
            if g >= v || preferred[g].is_some() || masked(g, ci) {
                continue;
            }
            holder[g] = match holder[g] {
                Some(o) if !better((key(g, c), c), (key(g, o), o)) => Some(o),
                _ => Some(c),
            };
        }
    }
    let mut kept: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &g in &free_groups {
        if let Some(c) = holder[g] {
            kept[c].push(g);
        }
    }
    for (c, gs) in kept.iter_mut().enumerate() {
        if gs.len() > room[c] {
            // Keep the longest-held first (unlisted ones were taken before every
            // listed one), then the best-scoring.
            let recent = &candidates[order[c]].fresh;
            let age = |g: usize| {
                recent
                    .iter()
                    .position(|&x| usize::from(x) == g)
                    .unwrap_or(usize::MAX)
            };
            gs.sort_unstable_by(|&a, &b| {
                age(b)
                    .cmp(&age(a))
                    .then(pair(b, c).cmp(&pair(a, c)))
                    .then(a.cmp(&b))
            });
            gs.truncate(room[c]);
        }
        for &g in gs.iter() {
            result[g] = Some(c);
        }
        room[c] -= gs.len();
    }
    free_groups.retain(|&g| result[g].is_none());

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
            if masked(g, order[c]) {
                continue;
            }
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
            for (c, &ci) in order.iter().enumerate() {
                if masked(g, ci) {
                    continue;
                }
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
    // 5. Overflow (masks only): a group whose allowed candidates had no room goes to
    //    the best-scoring of them.
    if allowed.is_some() || candidates.iter().any(|c| !c.unable.is_empty()) {
        for &g in &free_groups {
            if result[g].is_none() {
                result[g] = (0..n)
                    .filter(|&c| !masked(g, order[c]))
                    .map(|c| (key(g, c), c))
                    .reduce(|a, b| if better(b, a) { b } else { a })
                    .map(|(_, c)| c);
            }
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
        "node-2", "node-1", "node-2", "node-2", "node-1", "node-0", "node-1", "node-0",
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

    /// The candidates in a deterministic shuffle of `seed`.
    fn shuffle(c: &[Candidate], seed: u64) -> Vec<Candidate> {
        let mut out = c.to_vec();
        let mut s = seed;
        for i in (1..out.len()).rev() {
            s = crate::core::hash::mix64(s.wrapping_add(i as u64));
            out.swap(i, (s % (i as u64 + 1)) as usize);
        }
        out
    }

    fn node_set() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::btree_set("[a-z]{1,6}", 1..16).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn order_independent(nodes in node_set(), v in 0usize..80, seed in any::<u64>()) {
            let c: Vec<Candidate> = nodes.iter().map(Candidate::new).collect();
            let shuffled = shuffle(&c, seed);
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
                .map(|(i, &w)| Candidate { weight: w, ..Candidate::new(format!("n{i}")) }).collect();
            let a = assign(&groups(v), &c);
            let total: u64 = ws.iter().map(|&w| u64::from(w)).sum();
            for (i, l) in loads(&a, c.len()).into_iter().enumerate() {
                let cap = (v as u64 * u64::from(ws[i])).div_ceil(total) as usize;
                prop_assert!(l <= cap);
            }
        }

    }

    /// Candidates reporting what `a` gave them, as their gossiped holdings would.
    fn holding(c: &[Candidate], a: &[Option<usize>]) -> Vec<Candidate> {
        let mut out = c.to_vec();
        for x in out.iter_mut() {
            x.holds.clear();
        }
        for (g, o) in a.iter().enumerate() {
            if let Some(i) = o {
                out[*i].holds.push(g as u16);
            }
        }
        out
    }

    /// Arbitrary (possibly stale, overlapping or out-of-range) holdings.
    fn with_noise(c: &[Candidate], seed: u64, v: usize) -> Vec<Candidate> {
        let mut out = c.to_vec();
        let mut s = seed;
        for x in out.iter_mut() {
            s = crate::core::hash::mix64(s.wrapping_add(1));
            let k = (s % (v as u64 + 3)) as usize;
            x.holds = (0..k)
                .map(|j| (crate::core::hash::mix64(s ^ j as u64) % (v as u64 + 2)) as u16)
                .collect();
        }
        out
    }

    #[test]
    fn holdings_are_kept_and_quotas_are_tight() {
        // Whatever the holders, a fixed point keeps them; from scratch the loads are
        // floor or ceil of V/N.
        let c = cands(5);
        let g = groups(23);
        let a = assign(&g, &c);
        let l = loads(&a, 5);
        assert!(l.iter().all(|&x| x == 4 || x == 5), "{l:?}");
        // Hand every group to node 0 as if it had held them all: it keeps its best
        // quota's worth and the rest move, each to someone with room.
        let mut hog = c.clone();
        hog[0].holds = (0..23).collect();
        let b = assign(&g, &hog);
        assert_eq!(loads(&b, 5)[0], l[0].max(4));
        assert!(loads(&b, 5).iter().all(|&x| x == 4 || x == 5));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn holder_aware_order_independent(nodes in node_set(), v in 0usize..80, seed in any::<u64>()) {
            let c = with_noise(&nodes.iter().map(Candidate::new).collect::<Vec<_>>(), seed, v);
            let shuffled = shuffle(&c, seed);
            let g = groups(v);
            prop_assert_eq!(names(&assign(&g, &c), &c), names(&assign(&g, &shuffled), &shuffled));
        }

        #[test]
        fn holder_aware_bounded_tight_and_a_fixed_point(
            nodes in node_set(), v in 0usize..200, seed in any::<u64>(),
        ) {
            // Any holdings, even nonsense: complete, loads floor/ceil of V/N, and the
            // result fed back as holdings comes back unchanged.
            let c = with_noise(&nodes.iter().map(Candidate::new).collect::<Vec<_>>(), seed, v);
            let a = assign(&groups(v), &c);
            prop_assert!(a.iter().all(|o| o.is_some()));
            let (lo, hi) = (v / c.len(), v.div_ceil(c.len()));
            for l in loads(&a, c.len()) {
                prop_assert!(lo <= l && l <= hi, "load {} outside {}..={}", l, lo, hi);
            }
            let again = assign(&groups(v), &holding(&c, &a));
            prop_assert_eq!(again, a);
        }

        #[test]
        fn weighted_holder_aware_bounded(
            ws in proptest::collection::vec(1u16..10, 1..10), v in 0usize..150, seed in any::<u64>(),
        ) {
            let c: Vec<Candidate> = ws.iter().enumerate()
                .map(|(i, &w)| Candidate { weight: w, ..Candidate::new(format!("n{i}")) }).collect();
            let c = with_noise(&c, seed, v);
            let a = assign(&groups(v), &c);
            prop_assert!(a.iter().all(|o| o.is_some()));
            let total: u64 = ws.iter().map(|&w| u64::from(w)).sum();
            for (i, l) in loads(&a, c.len()).into_iter().enumerate() {
                let cap = (v as u64 * u64::from(ws[i])).div_ceil(total) as usize;
                prop_assert!(l <= cap);
            }
            prop_assert_eq!(assign(&groups(v), &holding(&c, &a)), a);
        }

        /// Minimal movement: from a settled cluster, one join or leave moves exactly
        /// the groups of the node that came or went — never more than ceil(V/N)
        /// (N the larger of the two sizes), so within the ceil(V/N) + 1 —
        /// over a random walk of joins and leaves.
        #[test]
        fn one_join_or_leave_moves_only_that_nodes_groups(
            start in 1usize..12, v in 1usize..120, steps in proptest::collection::vec(any::<u64>(), 1..12),
        ) {
            let g = groups(v);
            let mut next_name = start;
            let mut c: Vec<Candidate> = (0..start).map(|i| Candidate::new(format!("m{i}"))).collect();
            let mut a = assign(&g, &c);
            for step in steps {
                let before: Vec<Option<String>> = names(&a, &c);
                let joining = c.len() == 1 || step % 2 == 0;
                let who = if joining {
                    next_name += 1;
                    c.push(Candidate::new(format!("m{next_name}")));
                    c.last().expect("pushed").name.clone()
                } else {
                    let i = (step / 2) as usize % c.len();
                    c.remove(i).name
                };
                let held = {
                    let names_now: Vec<&str> = c.iter().map(|x| x.name.as_str()).collect();
                    let mut h = c.clone();
                    for (gi, o) in before.iter().enumerate() {
                        if let Some(pos) = o.as_deref().and_then(|n| names_now.iter().position(|m| *m == n)) {
                            h[pos].holds.push(gi as u16);
                        }
                    }
                    h
                };
                a = assign(&g, &held);
                for x in c.iter_mut() { x.holds.clear(); }
                let after = names(&a, &c);
                let moved = before.iter().zip(&after).filter(|(b, x)| b != x).count();
                let must = if joining {
                    after.iter().filter(|x| x.as_deref() == Some(who.as_str())).count()
                } else {
                    before.iter().filter(|b| b.as_deref() == Some(who.as_str())).count()
                };
                prop_assert_eq!(moved, must, "{} {}", if joining { "join" } else { "leave" }, who);
                let n_max = c.len() + usize::from(!joining);
                prop_assert!(moved <= v.div_ceil(n_max), "moved {} > ceil({}/{})", moved, v, n_max);
                // Settled: the new layout is a fixed point.
                prop_assert_eq!(assign(&g, &holding(&c, &a)), a.clone());
            }
        }
    }

    /// Movement of the memoryless rule (nobody reports holdings) beside the sticky
    /// one, for the README: what a join or leave moves besides the groups that must.
    #[test]
    fn movement_is_reported() {
        let trials = 2000;
        for join in [false, true] {
            let mut extra = [0usize; 2];
            let mut worst = [0usize; 2];
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
                let who = c[changed].name.as_str();
                // A leave goes c -> rest; a join goes rest -> c.
                let (from, to) = if join { (&rest, &c) } else { (&c, &rest) };
                let before = names(&assign(&g, from), from);
                for (k, sticky) in [false, true].into_iter().enumerate() {
                    let a = if sticky {
                        let mut h = to.clone();
                        for x in h.iter_mut() {
                            x.holds = before
                                .iter()
                                .enumerate()
                                .filter(|(_, o)| o.as_deref() == Some(x.name.as_str()))
                                .map(|(gi, _)| gi as u16)
                                .collect();
                        }
                        assign(&g, &h)
                    } else {
                        assign(&g, to)
                    };
                    let after = names(&a, to);
                    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
                    let must = if join { &after } else { &before }
                        .iter()
                        .filter(|x| x.as_deref() == Some(who))
                        .count();
                    extra[k] += moved - must;
                    worst[k] = worst[k].max(moved - must);
                }
            }
            let what = if join { "join" } else { "leave" };
            eprintln!(
                "{what}: extra moves per event, memoryless mean {:.2} max {}; sticky mean {:.2} max {}",
                extra[0] as f64 / trials as f64,
                worst[0],
                extra[1] as f64 / trials as f64,
                worst[1]
            );
            assert_eq!(extra[1], 0, "{what}: the sticky rule moved extra groups");
        }
    }

    /// A mask from a seed: candidate `c` may serve group `g` unless the pair's hash
    /// falls in the bottom `holes` eighths.
    fn mask(seed: u64, holes: u64) -> impl Fn(usize, &str) -> bool {
        move |g, name| mix64(seed ^ hash_str(name) ^ (g as u64).wrapping_mul(0x9e37)) % 8 >= holes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn an_all_true_mask_changes_nothing(nodes in node_set(), v in 0usize..80, seed in any::<u64>()) {
            let c = with_noise(&nodes.iter().map(Candidate::new).collect::<Vec<_>>(), seed, v);
            let g = groups(v);
            prop_assert_eq!(assign(&g, &c), assign_masked(&g, &c, Some(&|_, _| true)));
        }

        #[test]
        fn masked_groups_go_only_to_allowed_candidates_and_none_is_lost(
            nodes in node_set(), v in 0usize..80, seed in any::<u64>(), holes in 0u64..8,
        ) {
            let c = with_noise(&nodes.iter().map(Candidate::new).collect::<Vec<_>>(), seed, v);
            let ok = mask(seed, holes);
            let allowed = |g: usize, ci: usize| ok(g, &c[ci].name);
            let g = groups(v);
            let a = assign_masked(&g, &c, Some(&allowed));
            for (gi, o) in a.iter().enumerate() {
                let any = (0..c.len()).any(|ci| allowed(gi, ci));
                match o {
                    Some(ci) => prop_assert!(allowed(gi, *ci), "group {} to a node without it", gi),
                    None => prop_assert!(!any, "group {} unassigned though servable", gi),
                }
            }
            // Independent of the order candidates come in.
            let shuffled = shuffle(&c, seed);
            let allowed2 = |g: usize, ci: usize| ok(g, &shuffled[ci].name);
            prop_assert_eq!(
                names(&a, &c),
                names(&assign_masked(&g, &shuffled, Some(&allowed2)), &shuffled)
            );
        }
    }

    #[test]
    fn a_group_only_one_node_has_goes_to_it_and_the_rest_stay_put() {
        // Three nodes hold six groups two each; one node adds two groups the others
        // do not have yet: both go to it, and nobody else's group moves.
        let c: Vec<Candidate> = (0..3).map(|i| Candidate::new(format!("n{i}"))).collect();
        let g6 = groups(6);
        let before = assign(&g6, &c);
        let mut held = c.clone();
        for (gi, o) in before.iter().enumerate() {
            held[o.unwrap()].holds.push(gi as u16);
        }
        let g8 = groups(8);
        let allowed = |g: usize, ci: usize| g < 6 || ci == 0;
        let after = assign_masked(&g8, &held, Some(&allowed));
        assert_eq!(&after[..6], &before[..], "the six held groups stay");
        assert_eq!(&after[6..], &[Some(0), Some(0)]);
    }

    #[test]
    fn a_candidate_never_gets_a_group_it_is_unable_to_hold_and_keeps_the_rest() {
        // n1 loses the interface of two of the groups it holds: those two move, every
        // other group stays where it was, and a group nobody can hold stays free.
        let c: Vec<Candidate> = (0..3).map(|i| Candidate::new(format!("n{i}"))).collect();
        let g9 = groups(9);
        let before = assign(&g9, &c);
        let mut held = holding(&c, &before);
        let of_n1: Vec<u16> = (0..9u16)
            .filter(|&g| before[usize::from(g)] == Some(1))
            .collect();
        assert!(of_n1.len() >= 2);
        held[1].unable = of_n1[..2].to_vec();
        let after = assign(&g9, &held);
        for g in 0..9 {
            if of_n1[..2].contains(&(g as u16)) {
                assert!(after[g].is_some() && after[g] != Some(1), "group {g} moved");
            } else {
                assert_eq!(after[g], before[g], "group {g} stayed");
            }
        }
        for c in held.iter_mut() {
            c.unable = (0..9).collect();
        }
        assert!(assign(&g9, &held).iter().all(Option::is_none));
    }
}
