//! Ring lookup speed, against two baselines in the same groups:
//! - a phago-style ring: `BTreeMap<u64, u32>` with 150 vnodes per shard,
//!   positions and keys hashed with std's `DefaultHasher`, lookup by
//!   `range(h..).next()` with wrap-around;
//! - jump consistent hash (Lamping & Veach) over xxh3.
//!
//! Keys are 16 random bytes. Lockstep keys are atom handles, which are
//! already xxh3-128 hashes, so "ours" routes on the handle's high 64 bits
//! directly; "ours+xxh3" also hashes the key first, for a like-for-like
//! comparison with the baselines that hash.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lockstep_hashing::{DEFAULT_VNODES, Member, Ring, ShardId};
use xxhash_rust::xxh3::xxh3_64;

const SHARDS: [u32; 4] = [4, 16, 64, 256];
const SINGLE_KEYS: usize = 4_096;
const BATCH_KEYS: usize = 1 << 20;

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn keys(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&splitmix(&mut s).to_le_bytes());
            k[8..].copy_from_slice(&splitmix(&mut s).to_le_bytes());
            k
        })
        .collect()
}

fn handle_pos(k: &[u8; 16]) -> u64 {
    u64::from_be_bytes(k[..8].try_into().expect("8 bytes"))
}

/// The phago-distributed ring, written from its description.
struct PhagoRing {
    map: BTreeMap<u64, u32>,
}

impl PhagoRing {
    fn new(shards: u32) -> PhagoRing {
        let mut map = BTreeMap::new();
        for s in 0..shards {
            for v in 0..150u32 {
                let mut h = DefaultHasher::new();
                format!("shard-{s}-vnode-{v}").hash(&mut h);
                map.insert(h.finish(), s);
            }
        }
        PhagoRing { map }
    }

    fn owner(&self, key: &[u8; 16]) -> u32 {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let p = h.finish();
        match self.map.range(p..).next() {
            Some((_, s)) => *s,
            None => *self.map.values().next().expect("non-empty"),
        }
    }
}

/// Jump consistent hash, Lamping & Veach 2014.
fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

fn ring(shards: u32, vnodes: u32) -> Ring {
    let members: Vec<Member> = (1..=shards).map(|i| Member::new(ShardId(i), 1.0)).collect();
    Ring::new(&members, vnodes).expect("valid ring")
}

fn vnode_choices() -> [u32; 3] {
    [DEFAULT_VNODES / 2, DEFAULT_VNODES, DEFAULT_VNODES * 2]
}

fn single(c: &mut Criterion) {
    let ks = keys(SINGLE_KEYS, 1);
    for n in SHARDS {
        let mut g = c.benchmark_group(format!("lookup/shards={n}"));
        g.throughput(Throughput::Elements(SINGLE_KEYS as u64));
        let phago = PhagoRing::new(n);
        g.bench_function("phago-btreemap-150", |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in &ks {
                    acc = acc.wrapping_add(phago.owner(black_box(k)));
                }
                acc
            })
        });
        g.bench_function("jump-xxh3", |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in &ks {
                    acc = acc.wrapping_add(jump(xxh3_64(black_box(k)), n));
                }
                acc
            })
        });
        for v in vnode_choices() {
            let r = ring(n, v);
            g.bench_with_input(
                BenchmarkId::new("ours", format!("vnodes={v}")),
                &r,
                |b, r| {
                    b.iter(|| {
                        let mut acc = 0u32;
                        for k in &ks {
                            acc = acc.wrapping_add(r.owner(handle_pos(black_box(k))).0);
                        }
                        acc
                    })
                },
            );
        }
        let r = ring(n, DEFAULT_VNODES);
        g.bench_function(format!("ours+xxh3/vnodes={DEFAULT_VNODES}"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in &ks {
                    acc = acc.wrapping_add(r.owner(xxh3_64(black_box(k))).0);
                }
                acc
            })
        });
        g.finish();
    }
}

fn batch(c: &mut Criterion) {
    let ks = keys(BATCH_KEYS, 2);
    let positions: Vec<u64> = ks.iter().map(handle_pos).collect();
    for n in SHARDS {
        let mut g = c.benchmark_group(format!("batch-1M/shards={n}"));
        g.throughput(Throughput::Elements(BATCH_KEYS as u64));
        g.sample_size(10);
        let phago = PhagoRing::new(n);
        g.bench_function("phago-btreemap-150", |b| {
            let mut out = Vec::with_capacity(BATCH_KEYS);
            b.iter(|| {
                out.clear();
                out.extend(ks.iter().map(|k| phago.owner(k)));
                out.len()
            })
        });
        g.bench_function("jump-xxh3", |b| {
            let mut out = Vec::with_capacity(BATCH_KEYS);
            b.iter(|| {
                out.clear();
                out.extend(ks.iter().map(|k| jump(xxh3_64(k), n)));
                out.len()
            })
        });
        let r = ring(n, DEFAULT_VNODES);
        g.bench_function(format!("ours/vnodes={DEFAULT_VNODES}"), |b| {
            let mut out = Vec::with_capacity(BATCH_KEYS);
            b.iter(|| {
                r.owners_into(black_box(&positions), &mut out);
                out.len()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, single, batch);
criterion_main!(benches);
