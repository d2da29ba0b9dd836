//! End-to-end and placement benchmarks behind `lockstep bench`.
//!
//! `ring`: how evenly each placement spreads keys and how many keys move
//! when one shard is added or removed, for Lockstep's allocated tokens (what
//! clusters use) and hashed vnodes against the phago-style ring and jump
//! hash, over the same keys in the same run.

use lockstep_hashing::baselines::{PhagoRing, jump};
use lockstep_hashing::{Member, Ring, ShardId, alloc, moved, moved_fraction};
use serde::Serialize;

/// One placement at one cluster size.
#[derive(Clone, Debug, Serialize)]
pub struct BalanceRow {
    pub placement: String,
    pub shards: u32,
    /// Largest shard's key count over the mean.
    pub max_mean: f64,
    /// Smallest shard's key count over the mean.
    pub min_mean: f64,
    /// Fraction of keys that change owner when shard N+1 joins.
    pub moved_add: f64,
    /// Fraction of keys that change owner when the last shard leaves.
    pub moved_remove: f64,
    /// 1/(N+1): the least a join can move.
    pub ideal_add: f64,
    /// 1/N: the least a removal can move.
    pub ideal_remove: f64,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn spread(counts: &[u64]) -> (f64, f64) {
    let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    let max = *counts.iter().max().unwrap_or(&0) as f64;
    let min = *counts.iter().min().unwrap_or(&0) as f64;
    (max / mean, min / mean)
}

fn ring_of(n: u32, vnodes: u32) -> Ring {
    let members: Vec<Member> = (1..=n).map(|i| Member::new(ShardId(i), 1.0)).collect();
    Ring::new(&members, vnodes).expect("valid ring")
}

/// Measures every placement at every size over `keys` random keys.
pub fn ring_balance(keys: usize, sizes: &[u32], vnodes: u32) -> Vec<BalanceRow> {
    let mut s = 0x5EED;
    let positions: Vec<u64> = (0..keys).map(|_| splitmix(&mut s)).collect();
    let bytes: Vec<[u8; 16]> = positions
        .iter()
        .map(|p| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&p.to_le_bytes());
            b[8..].copy_from_slice(&p.rotate_left(17).to_le_bytes());
            b
        })
        .collect();
    let mut rows = Vec::new();
    for &n in sizes {
        let (ideal_add, ideal_remove) = (1.0 / (n + 1) as f64, 1.0 / n as f64);

        // Allocated tokens, grown one join at a time as a cluster does.
        let members =
            |k: u32| -> Vec<Member> { (1..=k).map(|i| Member::new(ShardId(i), 1.0)).collect() };
        let (ring, tokens) = alloc::grow(members(n), vnodes);
        let mut counts = vec![0u64; n as usize + 1];
        for &p in &positions {
            counts[ring.owner(p).0 as usize] += 1;
        }
        let (max_mean, min_mean) = spread(&counts[1..]);
        let mut grown = tokens.clone();
        grown.push((
            ShardId(n + 1),
            alloc::allocate(Some(&ring), Member::new(ShardId(n + 1), 1.0), vnodes),
        ));
        let added = Ring::from_tokens(&members(n + 1), &grown, vnodes).expect("valid ring");
        let removed = Ring::from_tokens(&members(n - 1), &tokens[..n as usize - 1], vnodes)
            .expect("valid ring");
        rows.push(BalanceRow {
            placement: format!("lockstep allocated ({vnodes} vnodes)"),
            shards: n,
            max_mean,
            min_mean,
            moved_add: moved_fraction(&moved(&ring, &added)),
            moved_remove: moved_fraction(&moved(&ring, &removed)),
            ideal_add,
            ideal_remove,
        });

        let ring = ring_of(n, vnodes);
        let mut counts = vec![0u64; n as usize + 1];
        for &p in &positions {
            counts[ring.owner(p).0 as usize] += 1;
        }
        let (max_mean, min_mean) = spread(&counts[1..]);
        rows.push(BalanceRow {
            placement: format!("lockstep hashed ({vnodes} vnodes)"),
            shards: n,
            max_mean,
            min_mean,
            moved_add: moved_fraction(&moved(&ring, &ring_of(n + 1, vnodes))),
            moved_remove: moved_fraction(&moved(&ring, &ring_of(n - 1, vnodes))),
            ideal_add,
            ideal_remove,
        });

        let phago = PhagoRing::new(0..n);
        let owners: Vec<u32> = bytes.iter().map(|k| phago.owner(k)).collect();
        let mut counts = vec![0u64; n as usize];
        for &o in &owners {
            counts[o as usize] += 1;
        }
        let (max_mean, min_mean) = spread(&counts);
        let frac = |other: &PhagoRing| {
            bytes
                .iter()
                .zip(&owners)
                .filter(|(k, o)| other.owner(k.as_slice()) != **o)
                .count() as f64
                / keys as f64
        };
        rows.push(BalanceRow {
            placement: "phago (150 vnodes, DefaultHasher)".into(),
            shards: n,
            max_mean,
            min_mean,
            moved_add: frac(&PhagoRing::new(0..n + 1)),
            moved_remove: frac(&PhagoRing::new(0..n - 1)),
            ideal_add,
            ideal_remove,
        });

        let owners: Vec<u32> = positions.iter().map(|&p| jump(p, n)).collect();
        let mut counts = vec![0u64; n as usize];
        for &o in &owners {
            counts[o as usize] += 1;
        }
        let (max_mean, min_mean) = spread(&counts);
        let frac = |m: u32| {
            positions
                .iter()
                .zip(&owners)
                .filter(|(p, o)| jump(**p, m) != **o)
                .count() as f64
                / keys as f64
        };
        rows.push(BalanceRow {
            placement: "jump hash".into(),
            shards: n,
            max_mean,
            min_mean,
            moved_add: frac(n + 1),
            moved_remove: frac(n - 1),
            ideal_add,
            ideal_remove,
        });
    }
    rows
}

/// Prints the rows as a table.
pub fn print_balance(rows: &[BalanceRow]) {
    println!(
        "{:<36} {:>6} {:>9} {:>9} {:>10} {:>10} {:>11} {:>11}",
        "PLACEMENT", "SHARDS", "MAX/MEAN", "MIN/MEAN", "MOVED+1", "IDEAL+1", "MOVED-1", "IDEAL-1"
    );
    for r in rows {
        println!(
            "{:<36} {:>6} {:>9.3} {:>9.3} {:>10.4} {:>10.4} {:>11.4} {:>11.4}",
            r.placement,
            r.shards,
            r.max_mean,
            r.min_mean,
            r.moved_add,
            r.ideal_add,
            r.moved_remove,
            r.ideal_remove
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sane() {
        let rows = ring_balance(20_000, &[4], 64);
        assert_eq!(rows.len(), 4);
        for r in &rows {
            assert!(r.max_mean >= 1.0 && r.min_mean <= 1.0, "{r:?}");
            assert!(r.moved_add > 0.0 && r.moved_add < 0.6, "{r:?}");
        }
        // Allocated tokens move exactly the new shard's share; jump hash is
        // the near-perfect baseline.
        assert!(
            (rows[0].moved_add - rows[0].ideal_add).abs() < 1e-6,
            "{:?}",
            rows[0]
        );
        assert!(rows[3].max_mean < 1.1);
    }
}
