//! Baselines the ring is measured against, in the same benchmark runs.
//! Not used for routing.
//!
//! - [`PhagoRing`]: how phago-distributed routes: a `BTreeMap<u64, u32>`
//!   with 150 vnodes per shard, positions and keys hashed with std's
//!   `DefaultHasher`, lookup by `range(h..).next()` with wrap-around.
//! - [`jump`]: jump consistent hash (Lamping & Veach, 2014).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Vnodes per shard in the phago-style ring.
pub const PHAGO_VNODES: u32 = 150;

/// The phago-distributed ring, written from its description.
pub struct PhagoRing {
    map: BTreeMap<u64, u32>,
}

impl PhagoRing {
    /// Shards `ids`, each with [`PHAGO_VNODES`] vnodes.
    pub fn new(ids: impl IntoIterator<Item = u32>) -> PhagoRing {
        let mut map = BTreeMap::new();
        for s in ids {
            for v in 0..PHAGO_VNODES {
                let mut h = DefaultHasher::new();
                format!("shard-{s}-vnode-{v}").hash(&mut h);
                map.insert(h.finish(), s);
            }
        }
        PhagoRing { map }
    }

    /// The owner of a key.
    pub fn owner(&self, key: &[u8]) -> u32 {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let p = h.finish();
        match self.map.range(p..).next() {
            Some((_, s)) => *s,
            None => *self.map.values().next().expect("non-empty ring"),
        }
    }
}

/// Jump consistent hash: the bucket in `0..buckets` for `key`.
pub fn jump(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_moves_only_to_the_new_bucket() {
        for k in 0..10_000u64 {
            let key = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let (a, b) = (jump(key, 10), jump(key, 11));
            assert!(a == b || b == 10);
        }
    }

    #[test]
    fn phago_ring_routes_to_members() {
        let r = PhagoRing::new(0..4);
        assert!((0..1000u32).all(|i| r.owner(&i.to_le_bytes()) < 4));
    }
}
