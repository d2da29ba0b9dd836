//! The consistent-hash ring that places keys on shards.
//!
//! Pure code, no I/O and no async, so that the coordinator, the shards and
//! every client compute the same ring from the same membership.
//!
//! # Layout
//! - [`ShardId`] and [`Epoch`]: the identities the ring is built from.
//! - [`Ring`]: virtual nodes at xxh3 positions, owner and replica lookups,
//!   and batch routing.
//! - [`moved`]: the exact key ranges that change owner between two rings.
//! - [`alloc`]: balanced token allocation: where a joining shard's virtual
//!   nodes go so that every shard owns its weight's share.
//! - [`baselines`]: the phago-style ring and jump hash, for benchmarks.
//!
//! # Placement
//! Clusters place virtual nodes with [`alloc::allocate`] and build the ring
//! with [`Ring::from_tokens`]: each joining shard's tokens split the ranges
//! of the shards that own more than their share, so shares stay within a
//! hair of their weights and only the new shard gains keys.
//!
//! [`Ring::new`] is the hashed placement, kept for rings without allocated
//! tokens and as a baseline: shard `s` with weight `w` gets `round(vnodes * w)` virtual nodes (at least
//! one). Virtual node `i` of shard `s` sits at `xxh3_64(s as u32 LE ++ i as
//! u32 LE)`. A key at position `p` belongs to the first virtual node clockwise
//! at or after `p`, wrapping at `u64::MAX`. Positions depend only on the shard
//! id and the vnode index, so adding a shard only ever moves keys *to* it.
//!
//! # Lookup
//! Positions are kept in one sorted array with a parallel owner array. A
//! prefix index maps the top `b` bits of a position to the first vnode at or
//! after that prefix, where `2^b` is two to eight times the vnode count,
//! chosen so that no bucket holds more than 7 vnodes. A lookup is one index
//! load, then a branch-free binary search over a fixed window of 8 vnodes
//! (three compares): random keys cost no branch mispredictions. Rings with
//! fuller buckets (clustered tokens) fall back to a branch-free count over
//! up to 16, then to a binary search, which bounds the worst case at
//! O(log n). Lookups do not allocate.
#![forbid(unsafe_code)]

pub mod alloc;
pub mod baselines;

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Default number of virtual nodes for a shard of weight 1.0.
pub const DEFAULT_VNODES: u32 = 128;

/// The largest number of virtual nodes one shard may have; keeps a typo in a
/// weight from allocating gigabytes.
pub const MAX_VNODES_PER_SHARD: u32 = 1 << 16;

/// A shard's identity, assigned by the coordinator and kept in the shard's
/// meta column family.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}

/// The ring epoch: goes up on every membership change.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Errors building a ring.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RingError {
    /// A ring needs at least one member.
    #[error("the ring has no members")]
    Empty,
    /// Weights must be finite and positive.
    #[error("{shard} has invalid weight {weight}: weights must be finite and > 0")]
    BadWeight { shard: ShardId, weight: f64 },
    /// The same shard was listed twice.
    #[error("{0} is listed twice")]
    Duplicate(ShardId),
    /// The vnode count must be at least 1.
    #[error("vnodes must be between 1 and {MAX_VNODES_PER_SHARD}, got {0}")]
    BadVnodes(u32),
}

/// A ring member: a shard and its weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Member {
    pub id: ShardId,
    pub weight: f64,
}

impl Member {
    pub fn new(id: ShardId, weight: f64) -> Member {
        Member { id, weight }
    }
}

/// The position of a virtual node on the ring.
pub fn vnode_position(shard: ShardId, index: u32) -> u64 {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&shard.0.to_le_bytes());
    buf[4..].copy_from_slice(&index.to_le_bytes());
    xxh3_64(&buf)
}

/// The ring position of an arbitrary byte key. Atom handles are already
/// uniform 128-bit hashes and use their high 64 bits directly instead.
pub fn key_position(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// How many virtual nodes a shard of this weight gets.
pub fn vnodes_for(vnodes: u32, weight: f64) -> u32 {
    ((vnodes as f64 * weight).round() as u32).clamp(1, MAX_VNODES_PER_SHARD)
}

/// Rings whose fullest index bucket holds more vnodes than this are binary
/// searched instead of scanned.
const SCAN_MAX: usize = 16;

/// The fixed window of the fast lookup path, for buckets of fewer vnodes.
const WINDOW: usize = 8;

/// A consistent-hash ring with virtual nodes.
#[derive(Clone, Debug)]
pub struct Ring {
    members: Vec<Member>,
    vnodes: u32,
    /// Sorted vnode positions.
    points: Vec<u64>,
    /// `owners[i]` owns the range ending at `points[i]`.
    owners: Vec<ShardId>,
    /// `index[k]` is the first `i` with `points[i] >= k << shift`; it has one
    /// extra entry equal to `points.len()`.
    index: Vec<u32>,
    shift: u32,
    /// `points` followed by `scan` copies of `u64::MAX`, so that a lookup can
    /// compare a fixed number of vnodes from its bucket start without
    /// bounds checks or data-dependent branches.
    padded: Box<[u64]>,
    /// Vnodes in the fullest bucket: the fixed scan length.
    scan: usize,
}

impl Ring {
    /// Builds the ring for these members, `vnodes` virtual nodes per unit of
    /// weight.
    pub fn new(members: &[Member], vnodes: u32) -> Result<Ring, RingError> {
        let sorted = Ring::check_members(members, vnodes)?;
        let mut vn: Vec<(u64, ShardId)> = Vec::new();
        for m in &sorted {
            for i in 0..vnodes_for(vnodes, m.weight) {
                vn.push((vnode_position(m.id, i), m.id));
            }
        }
        Ok(Ring::build(sorted, vnodes, vn))
    }

    /// Builds the ring from explicit tokens (vnode positions) per member, as
    /// [`alloc::allocate`] hands them out. A member with no tokens listed
    /// gets hashed positions, as in [`Ring::new`]; a token listed twice goes
    /// to the lower shard id.
    pub fn from_tokens(
        members: &[Member],
        tokens: &[(ShardId, Vec<u64>)],
        vnodes: u32,
    ) -> Result<Ring, RingError> {
        let sorted = Ring::check_members(members, vnodes)?;
        let mut vn: Vec<(u64, ShardId)> = Vec::new();
        for m in &sorted {
            match tokens.iter().find(|(id, _)| *id == m.id) {
                Some((_, t)) if !t.is_empty() => vn.extend(t.iter().map(|&p| (p, m.id))),
                _ => {
                    for i in 0..vnodes_for(vnodes, m.weight) {
                        vn.push((vnode_position(m.id, i), m.id));
                    }
                }
            }
        }
        Ok(Ring::build(sorted, vnodes, vn))
    }

    /// The members sorted by id, after checking ids, weights and `vnodes`.
    fn check_members(members: &[Member], vnodes: u32) -> Result<Vec<Member>, RingError> {
        if members.is_empty() {
            return Err(RingError::Empty);
        }
        if vnodes == 0 || vnodes > MAX_VNODES_PER_SHARD {
            return Err(RingError::BadVnodes(vnodes));
        }
        let mut sorted: Vec<Member> = members.to_vec();
        sorted.sort_by_key(|m| m.id);
        for pair in sorted.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(RingError::Duplicate(pair[0].id));
            }
        }
        for m in &sorted {
            if !m.weight.is_finite() || m.weight <= 0.0 {
                return Err(RingError::BadWeight {
                    shard: m.id,
                    weight: m.weight,
                });
            }
        }
        Ok(sorted)
    }

    fn build(sorted: Vec<Member>, vnodes: u32, mut vn: Vec<(u64, ShardId)>) -> Ring {
        // Ties on position (astronomically rare) go to the lower shard id, so
        // every process breaks them the same way.
        vn.sort_unstable();
        vn.dedup_by_key(|(p, _)| *p);
        let points: Vec<u64> = vn.iter().map(|(p, _)| *p).collect();
        let owners: Vec<ShardId> = vn.iter().map(|(_, s)| *s).collect();

        // About two buckets per vnode keeps the fullest bucket small; rings
        // with clustered tokens get up to eight, until it holds at most 8.
        let base = points.len().next_power_of_two().trailing_zeros();
        let mut built = None;
        for extra in 1..=3 {
            let bits = (base + extra).clamp(1, 24);
            let (index, scan) = Ring::index(&points, bits);
            let done = scan < WINDOW || extra == 3 || bits == 24;
            built = Some((index, scan, 64 - bits));
            if done {
                break;
            }
        }
        let (index, scan, shift) = built.expect("at least one try");
        let mut padded = points.clone();
        padded.resize(points.len() + scan.clamp(WINDOW, SCAN_MAX), u64::MAX);
        Ring {
            members: sorted,
            vnodes,
            points,
            owners,
            index,
            shift,
            padded: padded.into_boxed_slice(),
            scan,
        }
    }

    /// The prefix index with `2^bits` buckets over sorted `points`, and the
    /// number of points in its fullest bucket.
    fn index(points: &[u64], bits: u32) -> (Vec<u32>, usize) {
        let shift = 64 - bits;
        let buckets = 1usize << bits;
        let mut index = Vec::with_capacity(buckets + 1);
        let mut i = 0usize;
        for k in 0..buckets {
            let start = (k as u64) << shift;
            while i < points.len() && points[i] < start {
                i += 1;
            }
            index.push(i as u32);
        }
        index.push(points.len() as u32);
        let scan = index
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0);
        (index, scan)
    }

    /// Every vnode as (position, owner), sorted by position.
    pub fn tokens(&self) -> impl Iterator<Item = (u64, ShardId)> + '_ {
        self.points.iter().copied().zip(self.owners.iter().copied())
    }

    /// The members, sorted by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Virtual nodes per unit of weight.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Number of virtual nodes on the ring.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// A built ring is never empty; present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: ShardId) -> bool {
        self.members.binary_search_by_key(&id, |m| m.id).is_ok()
    }

    /// Index of the first vnode at or after `pos`, wrapping to 0.
    #[inline]
    fn slot(&self, pos: u64) -> usize {
        let k = (pos >> self.shift) as usize;
        let lo = self.index[k] as usize;
        let i = if self.scan < WINDOW {
            // At most 7 of the bucket's vnodes lie below `pos`: a
            // branch-free binary search over a fixed window of 8 (vnodes
            // past the bucket, and the padding, are > `pos`).
            let w: &[u64; WINDOW] = self.padded[lo..lo + WINDOW]
                .try_into()
                .expect("padded by WINDOW");
            let mut j = usize::from(w[3] < pos) * 4;
            j += usize::from(w[j + 1] < pos) * 2;
            j += usize::from(w[j] < pos);
            lo + j
        } else if self.scan <= SCAN_MAX {
            // Count the bucket's vnodes below `pos`. Vnodes past the bucket
            // (and the padding) are >= the next bucket's start > `pos`, so
            // they never count: a fixed-length, branch-free count instead of
            // a scan whose length a random key makes unpredictable.
            self.padded[lo..lo + self.scan]
                .iter()
                .fold(lo, |i, &p| i + usize::from(p < pos))
        } else {
            let hi = self.index[k + 1] as usize;
            lo + self.points[lo..hi].partition_point(|&p| p < pos)
        };
        if i == self.points.len() { 0 } else { i }
    }

    /// The shard owning ring position `pos`.
    #[inline]
    pub fn owner(&self, pos: u64) -> ShardId {
        self.owners[self.slot(pos)]
    }

    /// The owner of each position, written to `out` (cleared first).
    pub fn owners_into(&self, positions: &[u64], out: &mut Vec<ShardId>) {
        out.clear();
        out.reserve(positions.len());
        out.extend(positions.iter().map(|&p| self.owner(p)));
    }

    /// Groups positions by owner: for each shard with keys, the indices into
    /// `positions`, in input order. Shards come out sorted by id.
    pub fn group_by_owner(&self, positions: &[u64]) -> Vec<(ShardId, Vec<usize>)> {
        let mut groups: Vec<(ShardId, Vec<usize>)> = self
            .members
            .iter()
            .map(|m| {
                (
                    m.id,
                    Vec::with_capacity(positions.len() / self.members.len() + 1),
                )
            })
            .collect();
        for (i, &p) in positions.iter().enumerate() {
            let owner = self.owner(p);
            // Members are sorted, so this is a binary search over a small array.
            let g = self
                .members
                .binary_search_by_key(&owner, |m| m.id)
                .expect("owner is a member");
            groups[g].1.push(i);
        }
        groups.retain(|(_, v)| !v.is_empty());
        groups
    }

    /// The first `r` distinct shards clockwise from `pos`, owner first.
    pub fn replicas(&self, pos: u64, r: usize) -> Vec<ShardId> {
        let want = r.min(self.members.len());
        let mut out = Vec::with_capacity(want);
        let start = self.slot(pos);
        let n = self.points.len();
        for step in 0..n {
            if out.len() == want {
                break;
            }
            let s = self.owners[(start + step) % n];
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }

    /// The fraction of the key space each member owns, by shard id.
    pub fn ownership(&self) -> Vec<(ShardId, f64)> {
        let mut share: Vec<(ShardId, u128)> = self.members.iter().map(|m| (m.id, 0)).collect();
        let n = self.points.len();
        for i in 0..n {
            let prev = if i == 0 {
                self.points[n - 1]
            } else {
                self.points[i - 1]
            };
            let len = self.points[i].wrapping_sub(prev) as u128;
            // A single-vnode ring owns everything.
            let len = if n == 1 { 1u128 << 64 } else { len };
            let g = self
                .members
                .binary_search_by_key(&self.owners[i], |m| m.id)
                .expect("owner is a member");
            share[g].1 += len;
        }
        let total = (1u128 << 64) as f64;
        share
            .into_iter()
            .map(|(s, l)| (s, l as f64 / total))
            .collect()
    }
}

/// A key range that changes owner: positions in `(start, end]`, wrapping when
/// `start >= end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MovedRange {
    pub start: u64,
    pub end: u64,
    pub from: ShardId,
    pub to: ShardId,
}

impl MovedRange {
    /// Whether `pos` lies in this range.
    pub fn contains(&self, pos: u64) -> bool {
        if self.start < self.end {
            pos > self.start && pos <= self.end
        } else {
            pos > self.start || pos <= self.end
        }
    }

    /// The number of positions in the range.
    pub fn len(&self) -> u128 {
        if self.start < self.end {
            (self.end - self.start) as u128
        } else {
            (1u128 << 64) - (self.start - self.end) as u128
        }
    }

    /// Ranges are never empty; present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The exact ranges whose owner differs between `old` and `new`, in ring
/// order, with adjacent ranges of the same (from, to) merged.
pub fn moved(old: &Ring, new: &Ring) -> Vec<MovedRange> {
    let mut bounds: Vec<u64> = old.points.iter().chain(&new.points).copied().collect();
    bounds.sort_unstable();
    bounds.dedup();
    let n = bounds.len();
    let mut out: Vec<MovedRange> = Vec::new();
    for i in 0..n {
        let end = bounds[i];
        let start = if i == 0 { bounds[n - 1] } else { bounds[i - 1] };
        // No boundary of either ring lies inside (start, end), so each ring
        // has one owner for the whole segment: the owner of `end`.
        let (from, to) = (old.owner(end), new.owner(end));
        if from == to {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end == start && last.from == from && last.to == to => {
                last.end = end;
            }
            _ => out.push(MovedRange {
                start,
                end,
                from,
                to,
            }),
        }
    }
    // The segment ending at bounds[0] wraps; merge it with the last one if
    // they are contiguous and alike.
    if out.len() > 1 {
        let first = out[0];
        let last = *out.last().expect("len > 1");
        if last.end == first.start && last.from == first.from && last.to == first.to {
            out[0].start = last.start;
            out.pop();
        }
    }
    out
}

/// The fraction of the key space covered by `ranges`.
pub fn moved_fraction(ranges: &[MovedRange]) -> f64 {
    let total: u128 = ranges.iter().map(MovedRange::len).sum();
    total as f64 / (1u128 << 64) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[u32]) -> Vec<Member> {
        ids.iter().map(|&i| Member::new(ShardId(i), 1.0)).collect()
    }

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The owner by a plain scan over every vnode, to check the index against.
    fn owner_by_scan(ring: &Ring, pos: u64) -> ShardId {
        for (i, &p) in ring.points.iter().enumerate() {
            if p >= pos {
                return ring.owners[i];
            }
        }
        ring.owners[0]
    }

    #[test]
    fn positions_and_owners_are_pinned() {
        // Changing the hash, the vnode encoding or the tie rule breaks this
        // test, and every deployed ring with it.
        assert_eq!(vnode_position(ShardId(1), 0), 0x2fbc_5935_64db_792e);
        assert_eq!(vnode_position(ShardId(2), 7), 0x2951_0135_a887_bc9c);
        assert_eq!(key_position(b"ConceptNode"), 0x16f6_daff_90c9_6dcf);
        let ring = Ring::new(&members(&[1, 2, 3]), DEFAULT_VNODES).unwrap();
        let owners: Vec<u32> = [0u64, 1 << 62, 1 << 63, u64::MAX, 0x1234_5678_9abc_def0]
            .iter()
            .map(|&p| ring.owner(p).0)
            .collect();
        assert_eq!(owners, vec![2, 1, 2, 2, 3]);
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(Ring::new(&[], 128).unwrap_err(), RingError::Empty);
        assert_eq!(
            Ring::new(&members(&[1]), 0).unwrap_err(),
            RingError::BadVnodes(0)
        );
        assert_eq!(
            Ring::new(&members(&[1, 1]), 8).unwrap_err(),
            RingError::Duplicate(ShardId(1))
        );
        let bad = [Member::new(ShardId(1), f64::NAN)];
        assert!(matches!(
            Ring::new(&bad, 8).unwrap_err(),
            RingError::BadWeight { .. }
        ));
    }

    #[test]
    fn index_agrees_with_scan() {
        let mut s = 7u64;
        for n in [1u32, 2, 5, 64] {
            let ids: Vec<u32> = (1..=n).collect();
            let ring = Ring::new(&members(&ids), 16).unwrap();
            for _ in 0..20_000 {
                let p = splitmix(&mut s);
                assert_eq!(ring.owner(p), owner_by_scan(&ring, p));
            }
            for &p in &ring.points {
                for q in [p.wrapping_sub(1), p, p.wrapping_add(1)] {
                    assert_eq!(ring.owner(q), owner_by_scan(&ring, q));
                }
            }
        }
    }

    #[test]
    fn clustered_tokens_take_the_slower_paths_and_agree_with_scan() {
        // 10 or 40 tokens packed into one bucket, plus a spread-out second
        // shard: the linear-count path, then the binary-search path.
        for (packed_len, path) in [(10u64, "count"), (40, "binary")] {
            clustered(packed_len, path);
        }
    }

    fn clustered(packed_len: u64, path: &str) {
        let packed: Vec<u64> = (0..packed_len).map(|i| (1u64 << 40) + i * 3).collect();
        let spread: Vec<u64> = (1..=8u64).map(|i| i << 60).collect();
        let tokens = vec![(ShardId(1), packed.clone()), (ShardId(2), spread)];
        let ring = Ring::from_tokens(&members(&[1, 2]), &tokens, 16).unwrap();
        match path {
            "count" => assert!(
                (WINDOW..=SCAN_MAX).contains(&ring.scan),
                "scan {}",
                ring.scan
            ),
            _ => assert!(ring.scan > SCAN_MAX, "scan {}", ring.scan),
        }
        let mut s = 11u64;
        let probes = (0..20_000).map(|_| splitmix(&mut s)).chain(
            packed
                .iter()
                .flat_map(|&p| [p.wrapping_sub(1), p, p.wrapping_add(1)]),
        );
        for p in probes {
            assert_eq!(ring.owner(p), owner_by_scan(&ring, p), "position {p}");
        }
    }

    #[test]
    fn batch_matches_single() {
        let ring = Ring::new(&members(&[3, 9, 4]), 64).unwrap();
        let mut s = 1u64;
        let keys: Vec<u64> = (0..10_000).map(|_| splitmix(&mut s)).collect();
        let mut out = Vec::new();
        ring.owners_into(&keys, &mut out);
        for (k, o) in keys.iter().zip(&out) {
            assert_eq!(ring.owner(*k), *o);
        }
        let groups = ring.group_by_owner(&keys);
        let total: usize = groups.iter().map(|(_, v)| v.len()).sum();
        assert_eq!(total, keys.len());
        for (shard, idx) in groups {
            for i in idx {
                assert_eq!(ring.owner(keys[i]), shard);
            }
        }
    }

    #[test]
    fn replicas_are_distinct_and_start_with_owner() {
        let ring = Ring::new(&members(&[1, 2, 3, 4]), 32).unwrap();
        let mut s = 3u64;
        for _ in 0..1000 {
            let p = splitmix(&mut s);
            let r = ring.replicas(p, 3);
            assert_eq!(r.len(), 3);
            assert_eq!(r[0], ring.owner(p));
            assert!(r[0] != r[1] && r[1] != r[2] && r[0] != r[2]);
        }
        assert_eq!(ring.replicas(0, 10).len(), 4);
    }

    #[test]
    fn weight_scales_share() {
        let ms = [Member::new(ShardId(1), 1.0), Member::new(ShardId(2), 3.0)];
        let ring = Ring::new(&ms, 256).unwrap();
        let share = ring.ownership();
        assert!((share[1].1 - 0.75).abs() < 0.06, "{share:?}");
        let total: f64 = share.iter().map(|(_, f)| f).sum();
        assert!((total - 1.0).abs() < 1e-9);
    }

    #[test]
    fn adding_a_shard_only_moves_keys_to_it_and_moved_is_exact() {
        let old = Ring::new(&members(&[1, 2, 3]), 64).unwrap();
        let new = Ring::new(&members(&[1, 2, 3, 4]), 64).unwrap();
        let ranges = moved(&old, &new);
        assert!(!ranges.is_empty());
        assert!(ranges.iter().all(|r| r.to == ShardId(4)));
        let mut s = 11u64;
        for _ in 0..50_000 {
            let p = splitmix(&mut s);
            let changed = old.owner(p) != new.owner(p);
            let listed = ranges.iter().find(|r| r.contains(p));
            assert_eq!(changed, listed.is_some(), "pos {p:#x}");
            if let Some(r) = listed {
                assert_eq!((r.from, r.to), (old.owner(p), new.owner(p)));
            }
        }
        let frac = moved_fraction(&ranges);
        let share4 = new
            .ownership()
            .iter()
            .find(|(s, _)| *s == ShardId(4))
            .unwrap()
            .1;
        assert!((frac - share4).abs() < 1e-12, "{frac} vs {share4}");
    }

    #[test]
    fn removing_a_shard_only_moves_its_keys() {
        let old = Ring::new(&members(&[1, 2, 3, 4]), 64).unwrap();
        let new = Ring::new(&members(&[1, 2, 4]), 64).unwrap();
        let ranges = moved(&old, &new);
        assert!(ranges.iter().all(|r| r.from == ShardId(3)));
        assert!(moved(&old, &old).is_empty());
    }
}
