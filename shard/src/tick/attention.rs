//! `attention`: importance spreading in the exact PageRank form.
//!
//! Vertices are all nodes; every link with two outgoing atoms that are both
//! nodes, of an allowed type, is an edge `outgoing[0] -> outgoing[1]` of
//! weight 1 (parallel links add). Each tick:
//!
//! ```text
//! x'(v) = (1-d)/V + d * ( sum over u->v of x(u)*w(u,v)/W(u)  +  D/V )
//! ```
//!
//! with D the mass of vertices without out-edges. Contributions and D are
//! summed in 2^-64 fixed point, so the sum is exact and the result is
//! bit-identical for any number of shards and any message order.
//!
//! # Layout
//! Setup gives every local vertex a dense index (its rank in handle order)
//! and builds the out-edges as CSR arrays over *slots*. A slot is a local
//! vertex, or a vertex of another shard; each other shard gets one
//! contiguous range of slots.
//! - `edges`: each shard walks its vertices' incoming sets and tells the
//!   owner of `u` about every edge `u -> v` it finds at `v`, as (u handle,
//!   v index) records packed into large messages.
//! - `degrees`: the owner of `u` builds the CSR. The slot range for shard T
//!   holds the distinct v indices T reported, most-reported first, which T
//!   works out the same way from what it sent, so no slot map has to travel
//!   back. Local slot i is local vertex i, so `apply` reads the sums in
//!   order.
//! - `spread`: one branch-free pass over the flat edge list adds each
//!   vertex's share x(u)/W(u), in fixed point, into its slots, as u64 adds
//!   with the rare carries kept aside (see `Sums`). The edges go one block
//!   of slots at a time, so the random adds stay in a cache-sized range
//!   however many slots there are (a shard has a slot for nearly every
//!   remote vertex, so their number does not shrink with more shards).
//!   Each other shard is then sent its range of slots as packed u64 low
//!   words plus the rare high parts, and those slots are zeroed.
//! - `apply`: the arrays that arrived are added into the local sums, the new
//!   STI is computed, and it is staged as the shard's STI column (see
//!   [`crate::column`]), so the tick commits one large value rather than
//!   one record per vertex. The same pass zeroes each slot it reads and
//!   computes the next tick's shares, which take effect if the tick
//!   commits; `spread` computes them itself only after setup or an abort.

use std::collections::BTreeMap;
use std::sync::Arc;

use lockstep_model::aggregate::{TopEntry, TopK, from_fixed, to_fixed};
use lockstep_model::workload::AttentionParams;
use lockstep_model::{Handle, ShardId, StiColumn};
use lockstep_proto::ProtoError;
use lockstep_proto::pb::ShardMessage;

use super::{PhaseInput, PhaseOutput, Staged, all_incoming, local_node_handles};
use crate::Error;
use crate::atoms::AtomRead;
use crate::column::ColumnWrite;
use crate::store::KvStore;

/// Bytes of one `edges` record: the source handle and the target's index.
const EDGE_RECORD: usize = 20;
/// Bytes of one slot's low word in a contribution message.
const LOW: usize = 8;
/// Bytes of one high part in a contribution message: index, then `i128`.
const WIDE: usize = 20;
/// The most payload bytes in one message.
const MESSAGE_BYTES: usize = 8 << 20;

/// How many edges ahead `spread` prefetches its target slot and share.
const PREFETCH_AHEAD: usize = 16;
/// `spread` walks the edges one block of 2^BLOCK_BITS slots (512 KiB of
/// sums) at a time, so its random adds stay within a range that fits in
/// a core's L2; within a block the edges go by source, so the shares are
/// read in ascending order.
const BLOCK_BITS: u32 = 16;
/// Slots per block.
const BLOCK: usize = 1 << BLOCK_BITS;

/// A hint to load the cache line at `p`.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults or reads into the
    // program, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The slots this shard sends to another shard every tick.
struct Remote {
    shard: ShardId,
    start: usize,
    len: usize,
}

/// One fixed-point sum per slot, kept as its low 64 bits plus, on the side,
/// the rare high parts: carries out of the low word and contributions that
/// are negative or at least 1.0. A contribution of a tick's spread is
/// `x(u)/W(u)` with `x` in [0, 1) in every real run, so the adds are plain
/// u64 adds into an array half the size of an `i128` one, and the side
/// list stays empty; the sums are still exact whatever the values.
#[derive(Default)]
struct Sums {
    lo: Vec<u64>,
    /// (slot, high part) events; after [`Sums::settle`], one per slot with
    /// a non-zero high part, sorted by slot.
    hi: Vec<(u32, i128)>,
}

impl Sums {
    /// Sums for `n` slots, rounded up to whole blocks of [`BLOCK`] so that
    /// `add_shares` can take each block as an array.
    fn with_len(n: usize) -> Sums {
        Sums {
            lo: vec![0; n.next_multiple_of(BLOCK)],
            hi: Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.lo.fill(0);
        self.hi.clear();
    }

    /// Adds a contribution in [0, 2^64).
    #[inline(always)]
    fn add_small(&mut self, slot: usize, c: u64) {
        let (sum, carry) = self.lo[slot].overflowing_add(c);
        self.lo[slot] = sum;
        if carry {
            self.hi.push((slot as u32, 1));
        }
    }

    /// Adds `share[src[e]]` into slot `slots[e]` for every edge `e`, whose
    /// edges are sorted by slot block (see [`block_edges`]): the hot loop
    /// of `spread`, one block at a time.
    fn add_shares(&mut self, slots: &[u32], src: &[u32], share: &[u64]) {
        assert_eq!(slots.len(), src.len(), "one source per edge");
        let mut carries: Vec<u32> = Vec::new();
        let mut e = 0;
        while e < slots.len() {
            let b = slots[e] >> BLOCK_BITS;
            let len = slots[e..].partition_point(|&s| s >> BLOCK_BITS == b);
            let at = b as usize * BLOCK;
            let block: &mut [u64; BLOCK] = (&mut self.lo[at..at + BLOCK])
                .try_into()
                .expect("sums are whole blocks");
            add_block(
                block,
                &slots[e..e + len],
                &src[e..e + len],
                share,
                &mut carries,
            );
            e += len;
        }
        self.hi.extend(carries.into_iter().map(|slot| (slot, 1)));
    }

    /// Adds each `(u, c)` of `wide` into every slot that an edge from `u`
    /// goes to. Rare (stored STI from outside a job), so it costs one more
    /// pass over the edges rather than a per-source index kept for it.
    fn add_wide(&mut self, slots: &[u32], src: &[u32], wide: &[(usize, i128)], sources: usize) {
        if wide.is_empty() {
            return;
        }
        let mut of = vec![0i128; sources];
        for &(u, c) in wide {
            of[u] = c;
        }
        for (&slot, &u) in slots.iter().zip(src) {
            let c = of[u as usize];
            if c != 0 {
                self.add(slot as usize, c);
            }
        }
    }

    /// Adds any contribution.
    #[inline]
    fn add(&mut self, slot: usize, c: i128) {
        // c = high * 2^64 + low, with low in [0, 2^64).
        self.add_small(slot, c as u64);
        let high = c >> 64;
        if high != 0 {
            self.hi.push((slot as u32, high));
        }
    }

    /// Merges the high-part events per slot; call after a run of adds and
    /// before reading.
    fn settle(&mut self) {
        if self.hi.is_empty() {
            return;
        }
        self.hi.sort_unstable_by_key(|e| e.0);
        let mut merged: Vec<(u32, i128)> = Vec::with_capacity(self.hi.len());
        for &(slot, h) in &self.hi {
            match merged.last_mut() {
                // Wrapping: sane inputs never come near 2^127, and a
                // corrupt message must not panic a debug build.
                Some(last) if last.0 == slot => last.1 = last.1.wrapping_add(h),
                _ => merged.push((slot, h)),
            }
        }
        merged.retain(|e| e.1 != 0);
        self.hi = merged;
    }

    /// The settled sums of `slots` as a message: their count (u32 LE), each
    /// one's low word (u64 LE), then (index in `slots` u32 LE, high part
    /// i128 LE) for each with a high part, which in a real run is none.
    /// Half the bytes of packed `i128`s.
    fn encode(&self, slots: std::ops::Range<usize>) -> Vec<u8> {
        let from = self.hi.partition_point(|e| (e.0 as usize) < slots.start);
        let to = self.hi.partition_point(|e| (e.0 as usize) < slots.end);
        let mut data = Vec::with_capacity(4 + slots.len() * LOW + (to - from) * WIDE);
        data.extend_from_slice(&(slots.len() as u32).to_le_bytes());
        for x in &self.lo[slots.clone()] {
            data.extend_from_slice(&x.to_le_bytes());
        }
        for &(slot, high) in &self.hi[from..to] {
            data.extend_from_slice(&((slot as usize - slots.start) as u32).to_le_bytes());
            data.extend_from_slice(&high.to_le_bytes());
        }
        data
    }

    /// The settled sums of slots `0..n` in order, each zeroed as it is
    /// read. The high parts are sorted by slot, so one cursor walks them
    /// beside the low words.
    fn take_in_order(&mut self, n: usize) -> impl Iterator<Item = i128> + '_ {
        let mut hi = self.hi.iter().peekable();
        self.lo[..n].iter_mut().enumerate().map(move |(i, lo)| {
            let low = i128::from(std::mem::take(lo));
            match hi.next_if(|e| e.0 as usize == i) {
                None => low,
                Some(&(_, high)) => (high << 64).wrapping_add(low),
            }
        })
    }

    /// The settled sum of `slot`.
    #[cfg(test)]
    fn get(&self, slot: usize) -> i128 {
        let lo = i128::from(self.lo[slot]);
        if self.hi.is_empty() {
            return lo;
        }
        match self.hi.binary_search_by_key(&(slot as u32), |e| e.0) {
            Ok(i) => (self.hi[i].1 << 64).wrapping_add(lo),
            Err(_) => lo,
        }
    }
}

pub struct State {
    params: AttentionParams,
    /// The local vertices in handle order; a vertex's index is its rank.
    nodes: Arc<Vec<Handle>>,
    /// The STI column id of `nodes`.
    column: u64,
    vertices: u64,
    /// Per shard, the target indices this shard reported to it in `edges`;
    /// after `degrees`, the local slots of those targets in the order that
    /// shard's contributions arrive in.
    reported: BTreeMap<ShardId, Vec<u32>>,
    /// Out-edges of weight 1, sorted by slot block (see [`BLOCK_BITS`]),
    /// then source, then slot: edge `e` goes from `src[e]` into
    /// `slots[e]`. `spread` walks the flat edge list, a loop without a
    /// branch per vertex.
    src: Vec<u32>,
    slots: Vec<u32>,
    /// Per vertex, this tick's contribution per single link, x(u)/W(u) in
    /// fixed point (0 where it does not fit in u64; see `spread`).
    share: Vec<u64>,
    /// Whether `share` and `dangling` are already those of `x`: `apply`
    /// computes the next tick's shares while it has each new value in a
    /// register, and they become current with the commit.
    share_ready: bool,
    /// The mass of the vertices without out-edges, in fixed point, when
    /// `share_ready`.
    dangling: i128,
    /// The staged tick's shares and dangling mass, from `apply`.
    next_share: Vec<u64>,
    next_dangling: i128,
    /// Shares that do not fit in u64, as (vertex, share), for `x` and for
    /// the staged tick.
    wide: Vec<(usize, i128)>,
    next_wide: Vec<(usize, i128)>,
    /// Whether every slot sum is zero: `apply` zeroes each local slot as it
    /// reads it and `spread` each remote slot once it is sent, so the next
    /// `spread` need not clear 8 MB first.
    acc_clean: bool,
    /// Edges of parallel links, (source, slot, count), sorted: rare, so
    /// kept out of the hot loop.
    multi: Vec<(u32, u32, u32)>,
    /// W(u): the number of links out of `u`.
    wsum: Vec<u32>,
    remotes: Vec<Remote>,
    /// One fixed-point sum per slot: the local vertices, then the remotes.
    acc: Sums,
    x: Arc<Vec<f64>>,
    next: Option<Arc<Vec<f64>>>,
    /// A buffer for the next tick's values, when one came back.
    spare: Vec<f64>,
    ready: bool,
}

fn corrupt(what: impl Into<String>) -> Error {
    ProtoError::Corrupt(what.into()).into()
}

/// A message from shard `from` whose payload starts at index `start`.
fn message(from: ShardId, start: usize, data: Vec<u8>) -> ShardMessage {
    let mut key = Vec::with_capacity(8);
    key.extend_from_slice(&from.0.to_be_bytes());
    key.extend_from_slice(&(start as u32).to_be_bytes());
    ShardMessage { key, data }
}

fn parse_key(key: &[u8]) -> Result<(ShardId, usize), Error> {
    let key: [u8; 8] = key
        .try_into()
        .map_err(|_| corrupt(format!("attention message key of {} bytes", key.len())))?;
    let from = u32::from_be_bytes(key[..4].try_into().expect("4 bytes"));
    let start = u32::from_be_bytes(key[4..].try_into().expect("4 bytes"));
    Ok((ShardId(from), start as usize))
}

/// The distinct values of `vs`, most frequent first, ties by value. Both
/// ends of a slot range derive it from the same records.
fn hot_first(mut vs: Vec<u32>) -> Vec<u32> {
    vs.sort_unstable();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for v in vs {
        match runs.last_mut() {
            Some((n, last)) if *last == v => *n += 1,
            _ => runs.push((1, v)),
        }
    }
    runs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    runs.into_iter().map(|(_, v)| v).collect()
}

/// Reorders edges given by source into [`BLOCK_BITS`] slot blocks, each
/// keeping the source order.
fn block_edges(slots: &mut [u32], src: &mut [u32]) {
    let mut blocked: Vec<(u32, u32)> = slots.iter().copied().zip(src.iter().copied()).collect();
    // Stable, so each block keeps the edges in source order.
    blocked.sort_by_key(|&(slot, _)| slot >> BLOCK_BITS);
    for (e, (slot, u)) in blocked.into_iter().enumerate() {
        slots[e] = slot;
        src[e] = u;
    }
}

/// Adds `share[src[e]]` into `block` at the low [`BLOCK_BITS`] bits of
/// `slots[e]`, the edges of one slot block, pushing the slots whose low
/// word carried. The block is a fixed-size array indexed under a mask, so
/// the random adds need no bounds check, and both reads of an edge a few
/// edges ahead are prefetched so that their misses overlap.
#[inline]
fn add_block(
    block: &mut [u64; BLOCK],
    slots: &[u32],
    src: &[u32],
    share: &[u64],
    carries: &mut Vec<u32>,
) {
    let src = &src[..slots.len()];
    let ahead = PREFETCH_AHEAD.min(slots.len());
    let base = block.as_ptr();
    let mut add = |slot: u32, u: u32| {
        let (sum, carry) = block[slot as usize & (BLOCK - 1)].overflowing_add(share[u as usize]);
        block[slot as usize & (BLOCK - 1)] = sum;
        if carry {
            carries.push(slot);
        }
    };
    let (near, tail) = slots.split_at(slots.len() - ahead);
    for (((&slot, &u), &next), &from) in
        near.iter().zip(src).zip(&slots[ahead..]).zip(&src[ahead..])
    {
        prefetch(base.wrapping_add(next as usize & (BLOCK - 1)));
        prefetch(share.as_ptr().wrapping_add(from as usize));
        add(slot, u);
    }
    for (&slot, &u) in tail.iter().zip(&src[near.len()..]) {
        add(slot, u);
    }
}

/// Splits a contribution message (see [`Sums::encode`]) into its low
/// words and its high parts, checking the sizes.
fn decode_sums(data: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let bad = || corrupt(format!("contribution message of {} bytes", data.len()));
    let count: [u8; 4] = data.get(..4).ok_or_else(bad)?.try_into().expect("4 bytes");
    let low_end = (u32::from_le_bytes(count) as usize)
        .checked_mul(LOW)
        .and_then(|b| b.checked_add(4))
        .filter(|&e| e <= data.len())
        .ok_or_else(bad)?;
    let wide = &data[low_end..];
    if !wide.len().is_multiple_of(WIDE) {
        return Err(bad());
    }
    Ok((&data[4..low_end], wide))
}

fn edge_record(r: &[u8]) -> Result<(Handle, u32), Error> {
    let u = Handle::from_slice(&r[..16])?;
    Ok((u, u32::from_le_bytes(r[16..].try_into().expect("4 bytes"))))
}

/// Vertex `u`'s contribution per single out-link, x/W in fixed point, for
/// the flat loop of `spread`. x * 1 / W is x / W exactly, so every single
/// link of `u` adds the same value: it is converted once per vertex, not
/// once per edge. A vertex without out-links adds x to the dangling mass
/// instead; a share that does not fit in u64 (x negative, or at least W,
/// which stored STI from outside a job can be) goes to `wide`, and 0 to the
/// flat loop.
#[inline(always)]
fn share_of(u: usize, x: f64, w: u32, dangling: &mut i128, wide: &mut Vec<(usize, i128)>) -> u64 {
    if w == 0 {
        *dangling = dangling.wrapping_add(to_fixed(x));
        0
    } else {
        let c = to_fixed(x / f64::from(w));
        u64::try_from(c).unwrap_or_else(|_| {
            wide.push((u, c));
            0
        })
    }
}

impl State {
    pub fn new(params: AttentionParams) -> State {
        State {
            params,
            nodes: Arc::default(),
            column: 0,
            vertices: 0,
            reported: BTreeMap::new(),
            src: Vec::new(),
            slots: Vec::new(),
            share: Vec::new(),
            share_ready: false,
            dangling: 0,
            next_share: Vec::new(),
            next_dangling: 0,
            wide: Vec::new(),
            next_wide: Vec::new(),
            acc_clean: false,
            multi: Vec::new(),
            wsum: Vec::new(),
            remotes: Vec::new(),
            acc: Sums::default(),
            x: Arc::default(),
            next: None,
            spare: Vec::new(),
            ready: false,
        }
    }

    /// The tick committed: its values become the current ones.
    pub fn committed(&mut self) {
        if let Some(n) = self.next.take() {
            let old = std::mem::replace(&mut self.x, n);
            // The next tick's values go into the old buffer: a fresh 8 MB
            // allocation a tick is a few thousand page faults.
            if let Ok(v) = Arc::try_unwrap(old) {
                self.spare = v;
            }
            std::mem::swap(&mut self.share, &mut self.next_share);
            std::mem::swap(&mut self.wide, &mut self.next_wide);
            self.dangling = self.next_dangling;
            self.share_ready = true;
        }
    }

    pub fn aborted(&mut self) {
        self.next = None;
    }

    fn allowed(&self, ty: &lockstep_model::AtomType) -> bool {
        self.params
            .link_types
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| std::ptr::eq(*t, ty) || t.name == ty.name))
    }

    fn edges<S: KvStore>(
        &mut self,
        input: &PhaseInput<'_, S>,
        out: &mut PhaseOutput,
    ) -> Result<(), Error> {
        self.ready = false;
        let ring = input.routing.ring.as_ref().ok_or(Error::NotReady)?;
        let nodes = local_node_handles(input.view)?;
        self.column = StiColumn::id_of(&nodes);
        self.reported.clear();
        // Per owner of `u`, messages of at most MESSAGE_BYTES of records.
        let per_message = MESSAGE_BYTES / EDGE_RECORD * EDGE_RECORD;
        let mut records: BTreeMap<ShardId, Vec<Vec<u8>>> = BTreeMap::new();
        for (j, &v) in nodes.iter().enumerate() {
            for r in all_incoming(input.view, v)? {
                if r.outgoing.len() != 2 || r.outgoing[1] != v || !self.allowed(r.link_type) {
                    continue;
                }
                let u = r.outgoing[0];
                let owner = ring.owner(u.ring_position());
                let bufs = records.entry(owner).or_default();
                if bufs.last().is_none_or(|b| b.len() >= per_message) {
                    bufs.push(Vec::with_capacity(per_message.min(1 << 16)));
                }
                let buf = bufs.last_mut().expect("pushed above");
                buf.extend_from_slice(&u.to_bytes());
                buf.extend_from_slice(&(j as u32).to_le_bytes());
                if owner != input.me {
                    self.reported.entry(owner).or_default().push(j as u32);
                }
            }
        }
        for (shard, bufs) in records {
            for b in bufs {
                out.direct.push((shard, message(input.me, 0, b)));
            }
        }
        out.partial.add_int("vertices", nodes.len() as i64);
        self.nodes = Arc::new(nodes);
        Ok(())
    }

    fn degrees<S: KvStore>(
        &mut self,
        input: &PhaseInput<'_, S>,
        out: &mut PhaseOutput,
    ) -> Result<(), Error> {
        self.vertices = input.globals.int("vertices").max(0) as u64;
        let n = self.nodes.len();
        let mut by_sender: BTreeMap<ShardId, Vec<&[u8]>> = BTreeMap::new();
        for m in &input.inbox {
            let (from, _) = parse_key(&m.key)?;
            if !m.data.len().is_multiple_of(EDGE_RECORD) {
                return Err(corrupt(format!("edge message of {} bytes", m.data.len())));
            }
            by_sender.entry(from).or_default().push(&m.data);
        }
        // (source index, slot), one per edge whose source is a local vertex:
        // a link's other end may be a link, which is no vertex. Local edges
        // are (source index, target index) until the local slots are known.
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        let mut local: Vec<(u32, u32)> = Vec::new();
        self.remotes.clear();
        let mut next_slot = n;
        for (from, data) in by_sender {
            let records = || data.iter().flat_map(|d| d.chunks_exact(EDGE_RECORD));
            if from == input.me {
                for r in records() {
                    let (u, v) = edge_record(r)?;
                    if v as usize >= n {
                        return Err(corrupt(format!("edge to vertex {v} of {n}")));
                    }
                    if let Ok(i) = self.nodes.binary_search(&u) {
                        local.push((i as u32, v));
                    }
                }
                continue;
            }
            let order = hot_first(
                records()
                    .map(|r| edge_record(r).map(|(_, v)| v))
                    .collect::<Result<Vec<u32>, Error>>()?,
            );
            let mut rank: Vec<(u32, u32)> = order
                .iter()
                .enumerate()
                .map(|(k, &v)| (v, k as u32))
                .collect();
            rank.sort_unstable();
            for r in records() {
                let (u, v) = edge_record(r)?;
                if let Ok(i) = self.nodes.binary_search(&u) {
                    let k = rank[rank
                        .binary_search_by_key(&v, |e| e.0)
                        .expect("ranked above")]
                    .1;
                    pairs.push((i as u32, (next_slot + k as usize) as u32));
                }
            }
            self.remotes.push(Remote {
                shard: from,
                start: next_slot,
                len: order.len(),
            });
            next_slot += order.len();
        }
        // Local slot v is local vertex v, so `apply` reads the sums in
        // order; the blocks of `spread` keep its random adds in cache
        // whatever the order of the slots.
        pairs.extend(local);
        pairs.sort_unstable();

        self.slots = Vec::with_capacity(pairs.len());
        self.src = Vec::with_capacity(pairs.len());
        self.multi.clear();
        self.wsum = vec![0; n];
        let mut i = 0;
        for u in 0..n {
            while i < pairs.len() && pairs[i].0 as usize == u {
                let first = i;
                while i < pairs.len() && pairs[i] == pairs[first] {
                    i += 1;
                }
                let count = (i - first) as u32;
                if count == 1 {
                    self.src.push(u as u32);
                    self.slots.push(pairs[first].1);
                } else {
                    self.multi.push((u as u32, pairs[first].1, count));
                }
                self.wsum[u] += count;
            }
        }
        drop(pairs);
        block_edges(&mut self.slots, &mut self.src);
        self.share = vec![0; n];
        self.next_share = vec![0; n];
        self.share_ready = false;
        self.acc = Sums::with_len(next_slot);
        self.acc_clean = true;
        for targets in self.reported.values_mut() {
            *targets = hot_first(std::mem::take(targets));
        }
        out.partial.add_int(
            "edges",
            self.wsum.iter().map(|&w| u64::from(w)).sum::<u64>() as i64,
        );

        self.x = Arc::new(if input.tick <= 1 {
            vec![1.0 / self.vertices.max(1) as f64; n]
        } else if let Some(xs) = input.view.column_values(self.column)? {
            // Resuming on the same vertex set: its committed column.
            xs
        } else {
            input
                .view
                .get(&self.nodes)?
                .iter()
                .map(|r| r.as_ref().map_or(0.0, |r| r.av.sti))
                .collect()
        });
        self.next = None;
        self.ready = true;
        Ok(())
    }

    fn spread(&mut self, me: ShardId, out: &mut PhaseOutput) {
        if !self.acc_clean {
            self.acc.reset();
        }
        self.acc_clean = false;
        if !self.share_ready {
            // After setup (which a retry after an abort reruns): no `apply`
            // has computed the shares of this x yet.
            let (share, wide, dangling) = (&mut self.share, &mut self.wide, &mut self.dangling);
            wide.clear();
            *dangling = 0;
            for (u, (&xu, &w)) in self.x.iter().zip(&self.wsum).enumerate() {
                share[u] = share_of(u, xu, w, dangling, wide);
            }
            self.share_ready = true;
        }
        self.acc.add_shares(&self.slots, &self.src, &self.share);
        self.acc
            .add_wide(&self.slots, &self.src, &self.wide, self.share.len());
        for &(u, slot, k) in &self.multi {
            let u = u as usize;
            let c = to_fixed(self.x[u] * f64::from(k) / f64::from(self.wsum[u]));
            self.acc.add(slot as usize, c);
        }
        self.acc.settle();
        out.partial.add_fixed("dangling", self.dangling);
        let per_message = MESSAGE_BYTES / LOW;
        for r in &self.remotes {
            for (p, start) in (r.start..r.start + r.len).step_by(per_message).enumerate() {
                let end = (start + per_message).min(r.start + r.len);
                out.direct.push((
                    r.shard,
                    message(me, p * per_message, self.acc.encode(start..end)),
                ));
            }
            self.acc.lo[r.start..r.start + r.len].fill(0);
        }
    }

    fn apply<S: KvStore>(
        &mut self,
        input: &PhaseInput<'_, S>,
        staged: &mut Staged,
        out: &mut PhaseOutput,
    ) -> Result<(), Error> {
        let n = self.nodes.len();
        for m in &input.inbox {
            let (from, start) = parse_key(&m.key)?;
            let (low, wide) = decode_sums(&m.data)?;
            let targets = self
                .reported
                .get(&from)
                .and_then(|t| t.get(start..start.checked_add(low.len() / LOW)?))
                .ok_or_else(|| {
                    corrupt(format!(
                        "contributions from {from} at {start} match no edges sent there"
                    ))
                })?;
            for (&slot, c) in targets.iter().zip(low.chunks_exact(LOW)) {
                self.acc.add_small(
                    slot as usize,
                    u64::from_le_bytes(c.try_into().expect("8 bytes")),
                );
            }
            for w in wide.chunks_exact(WIDE) {
                let i = u32::from_le_bytes(w[..4].try_into().expect("4 bytes")) as usize;
                let high = i128::from_le_bytes(w[4..].try_into().expect("16 bytes"));
                let slot = *targets.get(i).ok_or_else(|| {
                    corrupt(format!(
                        "contribution high part for index {i} of {}",
                        targets.len()
                    ))
                })?;
                self.acc.add(slot as usize, high << 64);
            }
        }
        self.acc.settle();
        let d = self.params.damping;
        let nv = self.vertices.max(1) as f64;
        let dangling = input.globals.fixed("dangling");
        let mut next = std::mem::take(&mut self.spare);
        next.clear();
        next.reserve(n);
        let mut total = 0i128;
        let mut l1 = 0i128;
        // The next tick's shares, computed here while each new value is at
        // hand; they replace `share` only if this tick commits.
        let mut next_dangling = 0i128;
        self.next_wide.clear();
        self.next_share.resize(n, 0);
        // Local slot i is vertex i. Each slot is cleared for the next
        // spread as it is read, while its line is in cache.
        for (i, ((sum, &old), &w)) in self
            .acc
            .take_in_order(n)
            .zip(self.x.iter())
            .zip(&self.wsum)
            .enumerate()
        {
            let s = from_fixed(sum);
            let x = (1.0 - d) / nv + d * (s + dangling / nv);
            total = total.wrapping_add(to_fixed(x));
            l1 = l1.wrapping_add(to_fixed((x - old).abs()));
            self.next_share[i] = share_of(i, x, w, &mut next_dangling, &mut self.next_wide);
            next.push(x);
        }
        self.next_dangling = next_dangling;
        self.acc.hi.clear();
        self.acc_clean = true;
        out.partial.add_fixed("total_sti", total);
        out.partial.add_fixed("l1_change", l1);
        out.partial.set_top("top", self.top(&next, input)?);
        let next = Arc::new(next);
        staged.column = Some(ColumnWrite::new(
            self.column,
            self.nodes.clone(),
            next.clone(),
        ));
        self.next = Some(next);
        Ok(())
    }

    fn require_ready(&self) -> Result<(), Error> {
        if self.ready {
            Ok(())
        } else {
            Err(Error::SetupMissing {
                workload: "attention",
            })
        }
    }

    /// The top k by STI, ties by handle, in one pass; labels are read for
    /// the k only.
    fn top<S: KvStore>(&self, x: &[f64], input: &PhaseInput<'_, S>) -> Result<TopK, Error> {
        let k = self.params.top;
        let before = |a: usize, b: usize| {
            x[b].total_cmp(&x[a])
                .then_with(|| self.nodes[a].cmp(&self.nodes[b]))
                .is_lt()
        };
        let mut best: Vec<usize> = Vec::with_capacity(k + 1);
        if k > 0 {
            for i in 0..x.len() {
                // Most values lose to the current k-th outright: `<` implies
                // "after" in the total order, and NaN or -0.0 against 0.0
                // fall through to the full comparison.
                if best.len() == k && x[i] < x[best[k - 1]] {
                    continue;
                }
                if best.len() < k || before(i, best[best.len() - 1]) {
                    let at = best.partition_point(|&b| before(b, i));
                    best.insert(at, i);
                    best.truncate(k);
                }
            }
        }
        let handles: Vec<Handle> = best.iter().map(|&i| self.nodes[i]).collect();
        let records = input.view.get(&handles)?;
        Ok(TopK::from_candidates(
            k,
            best.iter()
                .zip(records)
                .map(|(&i, r)| TopEntry {
                    score: x[i],
                    key: self.nodes[i].to_string(),
                    label: r.map_or_else(String::new, |r| format!("({} {:?})", r.ty.name, r.name)),
                })
                .collect(),
        ))
    }
}

impl<S: KvStore> super::ShardWorkload<S> for State {
    fn emits(&self) -> &'static [&'static str] {
        &[
            "vertices",
            "edges",
            "dangling",
            "total_sti",
            "l1_change",
            "top",
        ]
    }

    fn run(
        &mut self,
        phase: &str,
        input: &PhaseInput<'_, S>,
        staged: &mut Staged,
    ) -> Result<PhaseOutput, Error> {
        let mut out = PhaseOutput::default();
        match phase {
            "edges" => self.edges(input, &mut out)?,
            "degrees" => self.degrees(input, &mut out)?,
            "spread" => {
                self.require_ready()?;
                self.spread(input.me, &mut out);
            }
            "apply" => {
                self.require_ready()?;
                self.apply(input, staged, &mut out)?;
            }
            other => {
                return Err(
                    ProtoError::BadParam(format!("attention has no phase {other:?}")).into(),
                );
            }
        }
        Ok(out)
    }

    fn committed(&mut self) {
        State::committed(self);
    }

    fn aborted(&mut self) {
        State::aborted(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_for_any_contributions() {
        // splitmix64: enough randomness, and no dependency for one test.
        let mut state = 9u64;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let slots = 7;
        let mut sums = Sums::with_len(slots);
        let mut want = vec![0i128; slots];
        for round in 0..3 {
            sums.reset();
            want.fill(0);
            for _ in 0..20_000 {
                let slot = (next() % slots as u64) as usize;
                // Mostly small ones, enough of them to carry out of the low
                // word, plus negatives and values past 2^64.
                let c: i128 = match next() % 10 {
                    0 => -i128::from(next()),
                    1 => i128::from(next()) << (next() % 40),
                    2 => i128::from(u64::MAX),
                    _ => i128::from(next()),
                };
                if round == 0 && c >= 0 && c <= i128::from(u64::MAX) {
                    sums.add_small(slot, c as u64);
                } else {
                    sums.add(slot, c);
                }
                want[slot] += c;
            }
            sums.settle();
            for (slot, w) in want.iter().enumerate() {
                assert_eq!(sums.get(slot), *w, "round {round}, slot {slot}");
            }
        }
        sums.reset();
        assert!((0..slots).all(|s| sums.get(s) == 0));
    }

    #[test]
    fn sums_taken_in_order_are_the_settled_sums_and_leave_zeros() {
        let mut sums = Sums::with_len(8);
        sums.add_small(0, 7);
        sums.add_small(2, u64::MAX);
        sums.add_small(2, 5);
        sums.add(3, (5i128 << 64) + 9);
        sums.add(4, -11);
        sums.add(6, 3i128 << 64);
        sums.settle();
        let want: Vec<i128> = (0..6).map(|s| sums.get(s)).collect();
        assert_eq!(
            want,
            vec![7, 0, (1i128 << 64) + 4, (5i128 << 64) + 9, -11, 0]
        );
        let got: Vec<i128> = sums.take_in_order(6).collect();
        assert_eq!(got, want);
        assert!(
            sums.lo[..6].iter().all(|&l| l == 0),
            "read slots are zeroed"
        );
        assert_eq!(sums.get(6), 3i128 << 64, "slots past n are left alone");
    }

    #[test]
    fn blocked_edges_give_the_same_sums_as_edges_by_source() {
        let mut state = 5u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Sources, and slots spanning several blocks, in source order as
        // `degrees` builds them: a partial last block, block 2 empty,
        // block 3 with fewer edges than the prefetch distance, and a few
        // hot slots that collect enough full-range shares to carry.
        let (sources, slots) = (500usize, (5usize << BLOCK_BITS) + 123);
        let mut pairs: Vec<(u32, u32)> = (0..20_000)
            .map(|i| {
                let slot = match i % 10 {
                    0 => (next() % 7) as u32,
                    _ => (next() % slots as u64) as u32,
                };
                ((next() % sources as u64) as u32, slot)
            })
            .filter(|&(_, d)| d >> BLOCK_BITS != 2 && d >> BLOCK_BITS != 3)
            .chain((0..5).map(|k| (k * 7, (3 << BLOCK_BITS) + k * 1000)))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let mut dst: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let mut share: Vec<u64> = (0..sources).map(|_| next()).collect();
        // Two sources whose shares do not fit in u64: `share` holds 0 for
        // them, as `share_of` leaves it.
        let wide = vec![(3usize, -7i128), (11usize, (5i128 << 64) + 9)];
        for &(u, _) in &wide {
            share[u] = 0;
        }

        block_edges(&mut dst, &mut src);
        let blocks: Vec<(u32, u32)> = dst
            .iter()
            .map(|&d| d >> BLOCK_BITS)
            .zip(src.iter().copied())
            .collect();
        assert!(blocks.is_sorted(), "by block, then by source");
        let mut moved: Vec<(u32, u32)> = src.iter().copied().zip(dst.iter().copied()).collect();
        moved.sort_unstable();
        assert_eq!(moved, pairs, "the same edges");

        let mut sums = Sums::with_len(slots);
        sums.add_shares(&dst, &src, &share);
        sums.add_wide(&dst, &src, &wide, sources);
        sums.settle();
        let mut want = vec![0i128; slots];
        for &(u, d) in &pairs {
            let c = wide
                .iter()
                .find(|w| w.0 == u as usize)
                .map_or(i128::from(share[u as usize]), |w| w.1);
            want[d as usize] += c;
        }
        for (slot, w) in want.iter().enumerate() {
            assert_eq!(sums.get(slot), *w, "slot {slot}");
        }
        assert!(
            want[..7].iter().all(|&w| w >> 64 > 1),
            "the hot slots carried more than once"
        );
    }

    #[test]
    fn contribution_messages_round_trip_and_bad_ones_are_typed_errors() {
        let mut sums = Sums::with_len(6);
        sums.add_small(1, 5);
        sums.add(2, -7);
        sums.add(4, (3 << 64) + 9);
        sums.settle();
        let data = sums.encode(1..5);
        let (low, wide) = decode_sums(&data).unwrap();
        assert_eq!((low.len() / LOW, wide.len() / WIDE), (4, 2));
        // Rebuilt on the other end, every sum is the same.
        let mut other = Sums::with_len(4);
        for (i, c) in low.chunks_exact(LOW).enumerate() {
            other.add_small(i, u64::from_le_bytes(c.try_into().unwrap()));
        }
        for w in wide.chunks_exact(WIDE) {
            let i = u32::from_le_bytes(w[..4].try_into().unwrap()) as usize;
            other.add(i, i128::from_le_bytes(w[4..].try_into().unwrap()) << 64);
        }
        other.settle();
        for i in 0..4 {
            assert_eq!(other.get(i), sums.get(i + 1), "slot {}", i + 1);
        }
        // Absurd high parts from a corrupt peer wrap; they never panic.
        other.add(0, i128::MAX);
        other.add(0, i128::MIN);
        other.add(0, i128::MAX);
        other.settle();
        let _ = other.get(0);
        for bad in [&data[..3], &data[..data.len() - 1], &[9, 0, 0, 0, 1][..]] {
            assert!(matches!(
                decode_sums(bad),
                Err(Error::Invalid(ProtoError::Corrupt(_)))
            ));
        }
    }

    #[test]
    fn hot_first_orders_by_count_then_value() {
        assert_eq!(hot_first(vec![5, 3, 5, 9, 3, 5, 1]), vec![5, 3, 1, 9]);
        assert_eq!(hot_first(vec![]), Vec::<u32>::new());
    }

    #[test]
    fn message_keys_round_trip_and_bad_ones_are_typed_errors() {
        let m = message(ShardId(7), 123_456, vec![1, 2]);
        assert_eq!(parse_key(&m.key).unwrap(), (ShardId(7), 123_456));
        assert!(matches!(
            parse_key(&[0; 5]),
            Err(Error::Invalid(ProtoError::Corrupt(_)))
        ));
    }
}
