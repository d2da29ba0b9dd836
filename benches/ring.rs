//! Ring lookup speed, against two baselines in the same groups:
//! - a phago-style ring: `BTreeMap<u64, u32>` with 150 vnodes per shard,
//!   positions and keys hashed with std's `DefaultHasher`, lookup by
//!   `range(h..).next()` with wrap-around;
//! - jump consistent hash (Lamping & Veach) over xxh3.
//!
//! "ours" is the ring clusters use: tokens allocated one join at a time
//! (`alloc::grow`); "ours-hashed" is the hashed-vnode placement.
//!
//! Keys are 16 random bytes. Lockstep keys are atom handles, which are
//! already xxh3-128 hashes, so "ours" routes on the handle's high 64 bits
//! directly; "ours+xxh3" also hashes the key first, for a like-for-like
//! comparison with the baselines that hash.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lockstep_hashing::baselines::{PhagoRing, jump};
use lockstep_hashing::{DEFAULT_VNODES, Member, Ring, ShardId, alloc};
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

fn members(shards: u32) -> Vec<Member> {
    (1..=shards).map(|i| Member::new(ShardId(i), 1.0)).collect()
}

/// The ring a cluster builds: tokens allocated one join at a time.
fn ring(shards: u32, vnodes: u32) -> Ring {
    alloc::grow(members(shards), vnodes).0
}

/// Hashed vnode positions, the placement before allocation.
fn hashed(shards: u32, vnodes: u32) -> Ring {
    Ring::new(&members(shards), vnodes).expect("valid ring")
}

fn vnode_choices() -> [u32; 3] {
    [DEFAULT_VNODES / 2, DEFAULT_VNODES, DEFAULT_VNODES * 2]
}

fn single(c: &mut Criterion) {
    let ks = keys(SINGLE_KEYS, 1);
    for n in SHARDS {
        let mut g = c.benchmark_group(format!("lookup/shards={n}"));
        g.throughput(Throughput::Elements(SINGLE_KEYS as u64));
        let phago = PhagoRing::new(0..n);
        g.bench_function("phago-btreemap-150", |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in &ks {
                    acc = acc.wrapping_add(phago.owner(black_box(k.as_slice())));
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
        let h = hashed(n, DEFAULT_VNODES);
        g.bench_function(format!("ours-hashed/vnodes={DEFAULT_VNODES}"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for k in &ks {
                    acc = acc.wrapping_add(h.owner(handle_pos(black_box(k))).0);
                }
                acc
            })
        });
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
        let phago = PhagoRing::new(0..n);
        g.bench_function("phago-btreemap-150", |b| {
            let mut out = Vec::with_capacity(BATCH_KEYS);
            b.iter(|| {
                out.clear();
                out.extend(ks.iter().map(|k| phago.owner(k.as_slice())));
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
        let h = hashed(n, DEFAULT_VNODES);
        g.bench_function(format!("ours-hashed/vnodes={DEFAULT_VNODES}"), |b| {
            let mut out = Vec::with_capacity(BATCH_KEYS);
            b.iter(|| {
                h.owners_into(black_box(&positions), &mut out);
                out.len()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, single, batch);
criterion_main!(benches);
