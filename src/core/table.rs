//! Group tables: what a claim's group indices mean when nodes' pools differ
//! (DESIGN §4).
//!
//! A node's *table* is its list of VIP groups; a group's index in it is the
//! [`GroupId`](super::config::GroupId) its claims, answers and metadata use, which keeps
//! claims compact on the wire (a bitmap or gap list of small integers). Every claim
//! carries its table's [`TableDigest`]; a voter resolves the claim's indices in the table
//! with that digest and promises per address
//! ([`Voter`](super::lease::Voter)). A node that does not hold a table asks the sender
//! for it ([`Tables::should_request`]) and meanwhile answers the claim with an empty
//! answer (alive, promising nothing), which only withholds promises.
//!
//! A table travels in [`TablePart`]s that each fit a datagram; the receiver assembles
//! them and keeps the table only if its SHA-256 digest is the one asked for, so a
//! table is never resolved from anything but the exact groups its digest names. Tables
//! are content-addressed: nodes with the same pool share one table and never fetch.
//!
//! Limits: [`MAX_TABLES`] tables held (least recently used dropped first),
//! [`MAX_PARTS`] parts per table, one request per digest per
//! [`TABLE_REQUEST_PERIOD`], and partial assemblies dropped after
//! [`ASSEMBLY_TIMEOUT`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::assign::Candidate;
use super::config::{MAX_GROUP_ADDRS, MAX_GROUPS, VipGroup};
use super::time::Instant;

/// The first 16 bytes of SHA-256 over a table's canonical encoding.
pub type TableDigest = [u8; 16];

/// Most tables held besides a node's own (the least recently used goes first; the
/// tables of the current members are used at every assignment).
pub const MAX_TABLES: usize = 64;
/// Most parts one table may be sent in.
pub const MAX_PARTS: u16 = 512;
/// Encoded groups per part, in bytes (a part fits a datagram with its header).
pub const PART_BUDGET: usize = 1100;
/// A table is asked for at most once per this period.
pub const TABLE_REQUEST_PERIOD: Duration = Duration::from_millis(200);
/// Parts of a table that do not complete within this are forgotten.
pub const ASSEMBLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The digest of a table: its groups in order, each its addresses and prefixes.
pub fn digest(groups: &[VipGroup]) -> TableDigest {
    let mut h = Sha256::new();
    h.update(b"wackamole-table-v1");
    h.update((groups.len() as u32).to_be_bytes());
    for g in groups {
        h.update((g.vips.len() as u32).to_be_bytes());
        for v in &g.vips {
            match v.addr {
                IpAddr::V4(a) => {
                    h.update([4]);
                    h.update(a.octets());
                }
                IpAddr::V6(a) => {
                    h.update([6]);
                    h.update(a.octets());
                }
            }
            h.update([v.prefix_len]);
        }
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// One datagram's share of a table: groups `first..first + groups.len()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePart {
    /// The whole table's digest.
    pub digest: TableDigest,
    /// This part's number, from 0.
    pub part: u16,
    /// How many parts the table has.
    pub parts: u16,
    /// Index of this part's first group.
    pub first: u16,
    /// The groups.
    pub groups: Vec<VipGroup>,
}

fn encoded_len(g: &VipGroup) -> usize {
    postcard::to_allocvec(g).map_or(usize::MAX, |v| v.len())
}

/// Splits a table into parts of at most [`PART_BUDGET`] encoded bytes of groups
/// (deterministic: the same table gives the same parts everywhere). `None` if it
/// would need more than [`MAX_PARTS`].
pub fn split(groups: &[VipGroup]) -> Option<Vec<TablePart>> {
    let d = digest(groups);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let (mut start, mut bytes) = (0usize, 0usize);
    for (i, g) in groups.iter().enumerate() {
        let n = encoded_len(g);
        if i > start && bytes + n > PART_BUDGET {
            spans.push((start, i));
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    spans.push((start, groups.len()));
    let parts = u16::try_from(spans.len())
        .ok()
        .filter(|&p| p <= MAX_PARTS)?;
    Some(
        spans
            .into_iter()
            .enumerate()
            .map(|(k, (a, b))| TablePart {
                digest: d,
                part: k as u16,
                parts,
                first: a as u16,
                groups: groups[a..b].to_vec(),
            })
            .collect(),
    )
}

#[derive(Clone, Debug)]
struct Assembly {
    parts: u16,
    got: BTreeMap<u16, TablePart>,
    started: Instant,
}

/// Tables this node holds (its own aside), tables being assembled, and when each
/// digest was last asked for.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    known: BTreeMap<TableDigest, (Vec<VipGroup>, Instant)>,
    assembling: BTreeMap<TableDigest, Assembly>,
    asked: BTreeMap<TableDigest, Instant>,
}

/// Why a part was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPart {
    /// Numbers out of range, a group with too many addresses, too many groups.
    Malformed,
    /// The assembled groups do not hash to the digest asked for.
    DigestMismatch,
}

impl Tables {
    /// The table with digest `d`, if held (and marks it used at `now`).
    pub fn get(&mut self, d: &TableDigest, now: Instant) -> Option<&[VipGroup]> {
        let e = self.known.get_mut(d)?;
        e.1 = now;
        Some(&e.0)
    }

    /// Marks table `d` used at `now` (it is some member's current table).
    pub fn touch(&mut self, d: &TableDigest, now: Instant) {
        if let Some(e) = self.known.get_mut(d) {
            e.1 = now;
        }
    }

    /// The table with digest `d`, if held (without marking it used).
    pub fn peek(&self, d: &TableDigest) -> Option<&[VipGroup]> {
        self.known.get(d).map(|e| &e.0[..])
    }

    /// Whether a table with digest `d` is held.
    pub fn has(&self, d: &TableDigest) -> bool {
        self.known.contains_key(d)
    }

    /// Keeps `groups` (e.g. this node's previous table); returns its digest.
    pub fn insert(&mut self, groups: Vec<VipGroup>, now: Instant) -> TableDigest {
        let d = digest(&groups);
        self.known.insert(d, (groups, now));
        self.assembling.remove(&d);
        if self.known.len() > MAX_TABLES
            && let Some(oldest) = self
                .known
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            self.known.remove(&oldest);
        }
        d
    }

    /// Whether to ask for table `d` now: not held, and not asked for within
    /// [`TABLE_REQUEST_PERIOD`]. Records the request.
    pub fn should_request(&mut self, d: &TableDigest, now: Instant) -> bool {
        if self.has(d)
            || self
                .asked
                .get(d)
                .is_some_and(|&t| now < t + TABLE_REQUEST_PERIOD)
        {
            return false;
        }
        if self.asked.len() >= 4 * MAX_TABLES {
            self.asked.retain(|_, t| now < *t + TABLE_REQUEST_PERIOD);
        }
        self.asked.insert(*d, now);
        true
    }

    /// Takes in one part. `Ok(Some(d))` when table `d` is now complete and verified,
    /// `Ok(None)` while parts are missing (or the table is already held).
    pub fn offer(&mut self, p: TablePart, now: Instant) -> Result<Option<TableDigest>, BadPart> {
        let well_formed = p.parts >= 1
            && p.parts <= MAX_PARTS
            && p.part < p.parts
            && usize::from(p.first) + p.groups.len() <= MAX_GROUPS
            && p.groups.iter().all(|g| g.vips.len() <= MAX_GROUP_ADDRS);
        if !well_formed {
            return Err(BadPart::Malformed);
        }
        if self.has(&p.digest) {
            return Ok(None);
        }
        self.assembling
            .retain(|_, a| now < a.started + ASSEMBLY_TIMEOUT);
        if !self.assembling.contains_key(&p.digest) && self.assembling.len() >= MAX_TABLES {
            return Ok(None);
        }
        let d = p.digest;
        let a = self.assembling.entry(d).or_insert_with(|| Assembly {
            parts: p.parts,
            got: BTreeMap::new(),
            started: now,
        });
        if a.parts != p.parts {
            self.assembling.remove(&d);
            return Err(BadPart::Malformed);
        }
        a.got.insert(p.part, p);
        if a.got.len() < usize::from(a.parts) {
            return Ok(None);
        }
        let a = self.assembling.remove(&d).unwrap_or_else(|| unreachable!());
        let mut groups = Vec::new();
        for part in a.got.into_values() {
            if usize::from(part.first) != groups.len() {
                return Err(BadPart::Malformed);
            }
            groups.extend(part.groups);
        }
        if digest(&groups) != d {
            return Err(BadPart::DigestMismatch);
        }
        self.insert(groups, now);
        Ok(Some(d))
    }
}

/// The assignment's input when tables differ (DESIGN §4 "a group is served by the
/// nodes that have it configured"): the union of the candidates' groups, each
/// candidate's preferences and holdings translated into it, and which candidate may
/// serve which group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Union {
    /// Every non-retired group of every candidate's table, sorted.
    pub groups: Vec<VipGroup>,
    /// `serves[c]`: the union indices candidate `c` has configured.
    pub serves: Vec<BTreeSet<usize>>,
    /// This node's slot → union index (`None` for a retired slot).
    pub own: Vec<Option<usize>>,
}

/// Builds the [`Union`] of `own` (this node's table) and each candidate's table
/// (`None`: not known yet, taken to be the same as `own`), and rewrites each
/// candidate's `prefers` and `holds` into union indices. `None` when every table is
/// `own` and `own` has no retired (empty) slot: nothing to translate, the assignment
/// runs on `own` unmasked, as before.
pub fn union(
    own: &[VipGroup],
    tables: &[Option<&[VipGroup]>],
    cands: &mut [Candidate],
) -> Option<Union> {
    if tables.iter().all(Option::is_none) && own.iter().all(|g| !g.vips.is_empty()) {
        return None;
    }
    let table_of = |c: usize| tables.get(c).copied().flatten().unwrap_or(own);
    let mut all: BTreeSet<&VipGroup> = own.iter().filter(|g| !g.vips.is_empty()).collect();
    for c in 0..cands.len() {
        all.extend(table_of(c).iter().filter(|g| !g.vips.is_empty()));
    }
    let groups: Vec<VipGroup> = all.into_iter().cloned().collect();
    let index: BTreeMap<&VipGroup, usize> =
        groups.iter().enumerate().map(|(i, g)| (g, i)).collect();
    let map = |t: &[VipGroup], slots: &[u16]| -> Vec<u16> {
        slots
            .iter()
            .filter_map(|&s| t.get(usize::from(s)))
            .filter_map(|g| index.get(g))
            .map(|&i| i as u16)
            .collect()
    };
    let mut serves = Vec::with_capacity(cands.len());
    for (c, cand) in cands.iter_mut().enumerate() {
        let t = table_of(c);
        cand.prefers = map(t, &cand.prefers);
        cand.holds = map(t, &cand.holds);
        cand.fresh = map(t, &cand.fresh);
        cand.unable = map(t, &cand.unable);
        serves.push(t.iter().filter_map(|g| index.get(g).copied()).collect());
    }
    let own = own.iter().map(|g| index.get(g).copied()).collect();
    Some(Union {
        groups,
        serves,
        own,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Vip;

    fn table(n: usize) -> Vec<VipGroup> {
        (0..n)
            .map(|i| {
                VipGroup::new(vec![
                    Vip::host(IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8])),
                    Vip::host(IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, i as u16])),
                ])
            })
            .collect()
    }

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn digests_are_content_addressed_and_order_sensitive() {
        let a = table(3);
        let mut b = a.clone();
        assert_eq!(digest(&a), digest(&b));
        b.swap(0, 1);
        assert_ne!(digest(&a), digest(&b), "indices are part of the meaning");
        let mut c = a.clone();
        c[2].vips[0].prefix_len = 24;
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn a_large_table_travels_in_parts_that_fit_and_reassemble_in_any_order() {
        let big = table(MAX_GROUPS);
        let parts = split(&big).expect("fits in MAX_PARTS");
        assert!(parts.len() > 1);
        for p in &parts {
            let body = crate::core::wire::Body::Table(p.clone());
            let bytes = crate::core::wire::encode(1, &body).expect("a part fits a datagram");
            assert!(bytes.len() <= crate::core::wire::MAX_DATAGRAM);
        }
        let mut tables = Tables::default();
        let d = digest(&big);
        let mut done = None;
        for p in parts.into_iter().rev() {
            assert_eq!(done, None);
            done = tables.offer(p, t(1)).unwrap();
        }
        assert_eq!(done, Some(d));
        assert_eq!(tables.get(&d, t(2)), Some(&big[..]));
    }

    #[test]
    fn a_forged_or_mixed_table_is_refused() {
        let a = table(4);
        let mut parts = split(&a).unwrap();
        parts[0].groups[0] = table(5)[4].clone();
        let mut tables = Tables::default();
        assert_eq!(
            tables.offer(parts[0].clone(), t(1)),
            Err(BadPart::DigestMismatch)
        );
        assert!(!tables.has(&digest(&a)));
        let mut bad = split(&a).unwrap()[0].clone();
        bad.part = bad.parts;
        assert_eq!(tables.offer(bad, t(1)), Err(BadPart::Malformed));
    }

    #[test]
    fn the_union_translates_holdings_and_says_who_serves_what() {
        let a = table(3); // groups 0, 1, 2
        let mut b = table(4); // 0, 1, 2, 3 (one added)
        b.swap(0, 3); // and in another order
        let mut cands = vec![
            Candidate::new("a"),
            Candidate::new("b"),
            Candidate::new("c"),
        ];
        cands[1].holds = vec![0, 1]; // b holds its slot 0 (= group 3) and slot 1
        cands[2].holds = vec![2];
        assert_eq!(union(&a, &[None, None, None], &mut cands.clone()), None);
        let u = union(&a, &[None, Some(&b[..]), None], &mut cands).unwrap();
        assert_eq!(u.groups.len(), 4);
        let ix = |g: &VipGroup| u.groups.iter().position(|x| x == g).unwrap();
        assert_eq!(cands[1].holds, vec![ix(&b[0]) as u16, ix(&b[1]) as u16]);
        assert_eq!(
            cands[2].holds,
            vec![ix(&a[2]) as u16],
            "unknown table: taken as ours"
        );
        let g3 = ix(&table(4)[3]);
        assert!(
            u.serves[1].contains(&g3) && !u.serves[0].contains(&g3) && !u.serves[2].contains(&g3)
        );
        assert_eq!(
            u.own,
            vec![Some(ix(&a[0])), Some(ix(&a[1])), Some(ix(&a[2]))]
        );
    }

    #[test]
    fn requests_are_rate_limited_and_tables_bounded() {
        let mut tables = Tables::default();
        let d = digest(&table(1));
        assert!(tables.should_request(&d, t(0)));
        assert!(!tables.should_request(&d, t(100)));
        assert!(tables.should_request(&d, t(200)));
        for n in 1..=MAX_TABLES + 3 {
            tables.insert(table(n), t(n as u64));
        }
        assert_eq!(tables.known.len(), MAX_TABLES);
        assert!(
            !tables.has(&digest(&table(1))),
            "the least recently used went"
        );
        assert!(!tables.should_request(&digest(&table(MAX_TABLES)), t(999)));
    }
}
