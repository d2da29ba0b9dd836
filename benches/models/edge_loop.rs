//! A standalone model of `spread`'s edge loop (shard/src/tick/attention.rs):
//! the adds of one shard's share of a 1M-vertex / 4M-edge graph into its
//! slots, with the edges by source (block_bits=0) and in slot blocks of
//! 2^bits, with and without prefetching the shares too. It has no
//! dependencies and is not built by cargo, so it runs on a machine without a
//! toolchain as a carried binary:
//!
//!     rustc -O -C target-cpu=x86-64-v2 benches/models/edge_loop.rs -o /tmp/edge_loop
//!     /tmp/edge_loop 2    # N shards: 1M/N sources, 4M/N edges
//!
//! Targets are skewed (the square of a uniform draw); slots are the local
//! vertices plus the distinct remote targets expected for random edges.
use std::time::Instant;
#[inline(always)]
fn pf<T>(p: *const T) {
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
}
struct R(u64);
impl R {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
fn run(slots: &[u32], src: &[u32], share: &[u64], lo: &mut [u64], both: bool) -> u64 {
    let mut carries = 0u64;
    for (e, (&s, &u)) in slots.iter().zip(src).enumerate() {
        if let (Some(&a), Some(&f)) = (slots.get(e + 16), src.get(e + 16)) {
            pf(lo.as_ptr().wrapping_add(a as usize));
            if both {
                pf(share.as_ptr().wrapping_add(f as usize));
            }
        }
        let (sum, c) = lo[s as usize].overflowing_add(share[u as usize]);
        lo[s as usize] = sum;
        carries += c as u64;
    }
    carries
}
fn main() {
    let nshards: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let v = 1_000_000usize;
    let e = 4_000_000 / nshards;
    let n = v / nshards;
    let remote = if nshards == 1 {
        0
    } else {
        ((v - n) as f64 * (1.0 - (-(e as f64) / v as f64).exp())) as usize
    };
    let s_total = n + remote;
    let mut r = R(88172645463325252);
    // skewed targets: square of uniform to concentrate (rough power law)
    let mut pairs: Vec<(u32, u32)> = (0..e)
        .map(|_| {
            let u = (r.next() % n as u64) as u32;
            let f = (r.next() % 1_000_000) as f64 / 1e6;
            let t = ((f * f) * s_total as f64) as u32;
            (u, t.min(s_total as u32 - 1))
        })
        .collect();
    pairs.sort_unstable();
    let share: Vec<u64> = (0..n).map(|i| 1_000_000_000 + i as u64).collect();
    let mut lo = vec![0u64; s_total];
    for bits in [0u32, 14, 15, 16, 17, 18] {
        let mut p = pairs.clone();
        if bits > 0 {
            p.sort_by_key(|&(_, s)| s >> bits);
        }
        let slots: Vec<u32> = p.iter().map(|x| x.1).collect();
        let src: Vec<u32> = p.iter().map(|x| x.0).collect();
        for both in [false, true] {
            let mut ts = vec![];
            for _ in 0..7 {
                lo.fill(0);
                let t = Instant::now();
                std::hint::black_box(run(&slots, &src, &share, &mut lo, both));
                ts.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "N={nshards} slots={s_total} edges={e} block_bits={bits} pf_share={both}: median {:.2} ms",
                ts[3]
            );
        }
    }
}
