//! Balanced token allocation: where a joining shard's virtual nodes go.
//!
//! Random vnode positions leave shares uneven (max/mean about 1.26 at 64
//! shards with 128 vnodes), and with a barrier every tick the busiest shard
//! sets the pace of the cluster. Instead, a joining shard's tokens are
//! *chosen*: each one splits a range of the shard that currently owns the
//! most beyond its weighted share, taking exactly the amount that brings it
//! back towards that share. So:
//! - the new shard ends with its share of the ring (to the position), and
//!   every other shard loses only its excess, largest excess first; it gets
//!   `vnodes × weight` tokens, plus one for each shard whose excess was
//!   smaller than a token's quota;
//! - a new token only ever cuts a range in two and takes the lower part, so
//!   only the new shard gains keys, and [`crate::moved`] stays exact;
//! - the result depends only on the current ring and the new member, so the
//!   coordinator computes it once and ships the tokens in the topology.
//!
//! The first shard's tokens are evenly spaced, offset by its id's hash.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::{Member, Ring, ShardId, vnode_position, vnodes_for};

const RING: u128 = 1u128 << 64;

/// The tokens for `new` joining `ring` (`None` for an empty ring), with
/// `vnodes` virtual nodes per unit of weight. `new` must not be a member.
pub fn allocate(ring: Option<&Ring>, new: Member, vnodes: u32) -> Vec<u64> {
    let count = vnodes_for(vnodes, new.weight) as u128;
    let Some(ring) = ring else {
        let offset = vnode_position(new.id, 0) as u128;
        return (0..count)
            .map(|i| ((offset + i * RING / count) % RING) as u64)
            .collect();
    };
    debug_assert!(!ring.contains(new.id), "{} is already a member", new.id);

    // Every range (start, end] as (length, end), grouped by owner.
    let members = ring.members();
    let mut ranges: Vec<BinaryHeap<(u128, Reverse<u64>)>> = vec![BinaryHeap::new(); members.len()];
    let mut owned = vec![0u128; members.len()];
    let tokens: Vec<(u64, ShardId)> = ring.tokens().collect();
    for (i, &(end, owner)) in tokens.iter().enumerate() {
        let prev = if i == 0 {
            tokens[tokens.len() - 1].0
        } else {
            tokens[i - 1].0
        };
        let len = if tokens.len() == 1 {
            RING
        } else {
            end.wrapping_sub(prev) as u128
        };
        let g = member_index(members, owner);
        ranges[g].push((len, Reverse(end)));
        owned[g] += len;
    }

    // What each shard owns beyond its share once `new` has joined.
    let total_weight: f64 = members.iter().map(|m| m.weight).sum::<f64>() + new.weight;
    let share = |w: f64| ((w / total_weight) * RING as f64) as u128;
    let mut excess: BinaryHeap<(u128, Reverse<u32>, usize)> = members
        .iter()
        .enumerate()
        .filter_map(|(g, m)| {
            let e = owned[g].saturating_sub(share(m.weight));
            (e > 0).then_some((e, Reverse(m.id.0), g))
        })
        .collect();
    let mut want = share(new.weight).min(excess.iter().map(|e| e.0).sum());
    // Spread the take over all tokens rather than emptying one range.
    let quota = want.div_ceil(count).max(1);

    // `count` tokens when every take is a full quota; a shard whose excess
    // is smaller than the quota costs one more token, so the new shard still
    // gets its whole share. The cap only guards against pathological rings.
    let cap = 2 * count + members.len() as u128;
    let mut out = Vec::with_capacity(count as usize);
    while want > 0 && (out.len() as u128) < cap {
        let Some((e, id, g)) = excess.pop() else {
            break;
        };
        let Some((len, Reverse(end))) = ranges[g].pop() else {
            continue;
        };
        // Keep at least one position with the old owner, so the new token
        // never lands on an existing one.
        let take = e.min(quota).min(want).min(len - 1);
        if take == 0 {
            continue;
        }
        let start = end.wrapping_sub(len as u64);
        out.push(start.wrapping_add(take as u64));
        ranges[g].push((len - take, Reverse(end)));
        want -= take;
        if e > take {
            excess.push((e - take, id, g));
        }
    }
    out.sort_unstable();
    out
}

fn member_index(members: &[Member], id: ShardId) -> usize {
    members
        .binary_search_by_key(&id, |m| m.id)
        .expect("owner is a member")
}

/// Allocates shards `ids` one after another into an empty ring, as a
/// cluster whose shards register in that order would. For benchmarks and
/// tests.
pub fn grow(
    ids: impl IntoIterator<Item = Member>,
    vnodes: u32,
) -> (Ring, Vec<(ShardId, Vec<u64>)>) {
    let mut members: Vec<Member> = Vec::new();
    let mut tokens: Vec<(ShardId, Vec<u64>)> = Vec::new();
    let mut ring: Option<Ring> = None;
    for m in ids {
        let t = allocate(ring.as_ref(), m, vnodes);
        members.push(m);
        tokens.push((m.id, t));
        ring = Some(Ring::from_tokens(&members, &tokens, vnodes).expect("allocated ring is valid"));
    }
    (ring.expect("at least one member"), tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{moved, moved_fraction};

    fn m(id: u32) -> Member {
        Member::new(ShardId(id), 1.0)
    }

    fn max_over_mean(ring: &Ring) -> f64 {
        let shares = ring.ownership();
        let mean = 1.0 / shares.len() as f64;
        shares.iter().map(|(_, s)| *s).fold(0.0, f64::max) / mean
    }

    #[test]
    fn grown_rings_are_balanced_by_range_length() {
        for n in [2u32, 3, 16, 64, 100] {
            let (ring, tokens) = grow((1..=n).map(m), 128);
            let b = max_over_mean(&ring);
            assert!(b < 1.001, "n={n}: max/mean {b}");
            for (id, t) in &tokens {
                assert!(
                    !t.is_empty() && t.len() <= 2 * 128 + n as usize,
                    "{id}: {} tokens",
                    t.len()
                );
            }
        }
    }

    #[test]
    fn weights_set_shares() {
        let (ring, _) = grow(
            [
                Member::new(ShardId(1), 1.0),
                Member::new(ShardId(2), 2.0),
                Member::new(ShardId(3), 1.0),
            ],
            64,
        );
        let shares = ring.ownership();
        for (id, s) in shares {
            let want = if id == ShardId(2) { 0.5 } else { 0.25 };
            assert!((s - want).abs() < 1e-6, "{id}: {s} vs {want}");
        }
    }

    #[test]
    fn a_join_moves_keys_only_to_the_new_shard_and_about_its_share() {
        let (old, mut tokens) = grow((1..=64).map(m), 128);
        let t = allocate(Some(&old), m(65), 128);
        tokens.push((ShardId(65), t));
        let members: Vec<Member> = (1..=65).map(m).collect();
        let new = Ring::from_tokens(&members, &tokens, 128).unwrap();
        let ranges = moved(&old, &new);
        assert!(ranges.iter().all(|r| r.to == ShardId(65)));
        let f = moved_fraction(&ranges);
        assert!((f - 1.0 / 65.0).abs() < 1e-6, "moved {f}");
        // Sampled keys agree with the ranges exactly.
        let mut x = 7u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (a, b) = (old.owner(x), new.owner(x));
            let in_moved = ranges.iter().any(|r| r.contains(x));
            assert_eq!(a != b, in_moved, "position {x}");
            if a != b {
                assert_eq!(b, ShardId(65));
            }
        }
    }

    #[test]
    fn allocation_is_deterministic() {
        let (a, ta) = grow((1..=20).map(m), 32);
        let (b, tb) = grow((1..=20).map(m), 32);
        assert_eq!(ta, tb);
        assert_eq!(
            a.tokens().collect::<Vec<_>>(),
            b.tokens().collect::<Vec<_>>()
        );
    }
}
