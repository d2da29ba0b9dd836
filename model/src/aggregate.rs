//! Mergeable aggregates: what shards report per phase and the coordinator
//! merges into globals. Every merge is order-independent, so the merged value
//! does not depend on how many shards there are or in which order they
//! answered.
//!
//! Sums that feed back into arithmetic are fixed-point: an `i128` counting
//! 2^-64, so addition is exact and associative. Converting a value in
//! [0, 2^63) to fixed point loses at most 2^-65 absolute.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// 2^64 as f64: one unit of [`to_fixed`].
pub const FIXED_ONE: f64 = 18_446_744_073_709_551_616.0;

/// `x` in fixed point (round to nearest, halves away from zero).
///
/// This sits on the attention workload's per-edge path, where `round()` (a
/// libm call without SSE4.1) and the f64 -> i128 conversion (a runtime
/// routine) dominated. Values in [0, 2^63) units, which is every
/// contribution below 0.5, take native u64 arithmetic instead; the result is
/// bit-identical to the general form (a unit test compares them).
#[inline]
pub fn to_fixed(x: f64) -> i128 {
    let y = x * FIXED_ONE;
    if (0.5..4_503_599_627_370_496.0).contains(&y) {
        // Below 2^52 units the ulp of y is at most 0.5, so y + 0.5 is
        // exact, or (once it reaches the next binade) rounds to a value in
        // the same integer: truncating it is y rounded half up, in one add
        // and one conversion. The attention workload's per-vertex values
        // are all here.
        return i128::from((y + 0.5) as i64);
    }
    if (0.0..9_223_372_036_854_775_808.0).contains(&y) {
        // Truncation is exact here, and so is `y - t`: t is y's integer
        // part, and below 2^53 their difference is representable; at and
        // above 2^53, y is an integer and the difference is 0.
        // Below 2^63 the signed conversions give the same values as the
        // unsigned ones, in one instruction each instead of a sequence.
        let t = y as i64;
        let frac = y - t as f64;
        return i128::from(t as u64 + u64::from(frac >= 0.5));
    }
    y.round() as i128
}

/// The f64 nearest a fixed-point value.
#[inline]
pub fn from_fixed(v: i128) -> f64 {
    // Both conversions round the same integer correctly, so a value that
    // fits in u64 (below 1.0) skips the i128 runtime routine.
    match u64::try_from(v) {
        Ok(small) => from_fixed_u64(small),
        Err(_) => from_fixed_wide(v),
    }
}

/// [`from_fixed`] of a value that fits in u64.
#[inline]
pub fn from_fixed_u64(v: u64) -> f64 {
    // Below 2^63 (every value under 0.5) the signed conversion is the same
    // correctly rounded value, in one instruction.
    let f = match i64::try_from(v) {
        Ok(signed) => signed as f64,
        Err(_) => v as f64,
    };
    f / FIXED_ONE
}

/// Kept out of line: inlined, the compiler computed it on every call and
/// then picked the u64 result.
#[cold]
#[inline(never)]
fn from_fixed_wide(v: i128) -> f64 {
    v as f64 / FIXED_ONE
}

/// One top-k entry.
#[derive(Clone, Debug, PartialEq)]
pub struct TopEntry {
    pub score: f64,
    /// The tie-breaker: equal scores are ordered by key ascending.
    pub key: String,
    /// What to print for the entry.
    pub label: String,
}

/// The k highest-scoring entries.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TopK {
    pub k: usize,
    pub entries: Vec<TopEntry>,
}

fn rank(a: &TopEntry, b: &TopEntry) -> Ordering {
    b.score.total_cmp(&a.score).then_with(|| a.key.cmp(&b.key))
}

impl TopK {
    /// The top `k` of `candidates`.
    pub fn from_candidates(k: usize, mut candidates: Vec<TopEntry>) -> TopK {
        if candidates.len() > k && k > 0 {
            candidates.select_nth_unstable_by(k - 1, rank);
            candidates.truncate(k);
        }
        candidates.sort_by(rank);
        candidates.truncate(k);
        TopK {
            k,
            entries: candidates,
        }
    }

    fn merge(&mut self, other: TopK) {
        let k = self.k.max(other.k);
        let mut all = std::mem::take(&mut self.entries);
        all.extend(other.entries);
        // The same key from two reports (a retried phase) counts once.
        all.sort_by(rank);
        all.dedup_by(|a, b| a.key == b.key);
        *self = TopK::from_candidates(k, all);
    }
}

/// Named aggregates of each kind.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Aggregates {
    pub fixed_sums: BTreeMap<String, i128>,
    pub int_sums: BTreeMap<String, i64>,
    pub mins: BTreeMap<String, f64>,
    pub maxs: BTreeMap<String, f64>,
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    pub topk: BTreeMap<String, TopK>,
}

impl Aggregates {
    // Sums wrap rather than overflow: wrapping addition is still
    // commutative and associative, and a shard's absurd partial must not
    // panic the coordinator.
    pub fn add_fixed(&mut self, name: &str, v: i128) {
        let e = self.fixed_sums.entry(name.to_string()).or_default();
        *e = e.wrapping_add(v);
    }

    /// Every aggregate's name, of every kind.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.fixed_sums
            .keys()
            .chain(self.int_sums.keys())
            .chain(self.mins.keys())
            .chain(self.maxs.keys())
            .chain(self.counts.keys())
            .chain(self.topk.keys())
            .map(String::as_str)
    }

    pub fn add_int(&mut self, name: &str, v: i64) {
        let e = self.int_sums.entry(name.to_string()).or_default();
        *e = e.wrapping_add(v);
    }

    pub fn min(&mut self, name: &str, v: f64) {
        let e = self.mins.entry(name.to_string()).or_insert(v);
        *e = e.min(v);
    }

    pub fn max(&mut self, name: &str, v: f64) {
        let e = self.maxs.entry(name.to_string()).or_insert(v);
        *e = e.max(v);
    }

    pub fn count(&mut self, name: &str, key: &str, n: u64) {
        *self
            .counts
            .entry(name.to_string())
            .or_default()
            .entry(key.to_string())
            .or_default() += n;
    }

    pub fn set_top(&mut self, name: &str, top: TopK) {
        match self.topk.get_mut(name) {
            Some(t) => t.merge(top),
            None => {
                self.topk.insert(name.to_string(), top);
            }
        }
    }

    /// A fixed-point sum as f64 (0 when absent).
    pub fn fixed(&self, name: &str) -> f64 {
        from_fixed(self.fixed_sums.get(name).copied().unwrap_or(0))
    }

    /// An integer sum (0 when absent).
    pub fn int(&self, name: &str) -> i64 {
        self.int_sums.get(name).copied().unwrap_or(0)
    }

    /// Merges `other` in. Commutative and associative.
    pub fn merge(&mut self, other: Aggregates) {
        for (k, v) in other.fixed_sums {
            self.add_fixed(&k, v);
        }
        for (k, v) in other.int_sums {
            self.add_int(&k, v);
        }
        for (k, v) in other.mins {
            self.min(&k, v);
        }
        for (k, v) in other.maxs {
            self.max(&k, v);
        }
        for (name, map) in other.counts {
            let mine = self.counts.entry(name).or_default();
            for (k, n) in map {
                let e = mine.entry(k).or_default();
                *e = e.wrapping_add(n);
            }
        }
        for (k, t) in other.topk {
            self.set_top(&k, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_fixed_point_matches_the_general_form() {
        let general = |x: f64| (x * FIXED_ONE).round() as i128;
        let mut edge = vec![
            0.0,
            -0.0,
            0.5,
            0.49999999999999994,
            1.0,
            1.5,
            -0.25,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            5e-324,
            2f64.powi(-12),
            2f64.powi(-11) - 2f64.powi(-64),
        ];
        // Values just around half-unit boundaries and binade edges.
        for e in [-64, -63, -62, -40, -13, -12, -11, -1] {
            let b = 2f64.powi(e);
            edge.extend([b, b * (1.0 + f64::EPSILON), b * (1.0 - f64::EPSILON / 2.0)]);
            edge.push((0.5 + 7.0) * 2f64.powi(-64) + b);
        }
        // Exact halves of a unit, and the values on either side of them.
        for m in [1u64, 3, 5, (1 << 52) + 1, (1 << 53) - 1] {
            for e in [-65, -66, -70, -100, -117] {
                let h = m as f64 * 2f64.powi(e);
                edge.extend([h, h.next_up(), h.next_down()]);
            }
        }
        // Around the end of the one-add path: 2^52 units.
        for m in [1u64 << 52, (1 << 52) - 1, (1 << 53) - 1] {
            let b = m as f64 * 2f64.powi(-64);
            edge.extend([b, b.next_up(), b.next_down(), b * 1.5, b * 0.75]);
        }
        edge.extend([
            -0.0,
            0.5f64.next_down(),
            0.5f64.next_up(),
            f64::NEG_INFINITY,
        ]);
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Uniform in [0, 1), and log-uniform down to 2^-80.
            edge.push((s >> 11) as f64 / (1u64 << 53) as f64);
            edge.push(f64::from_bits(((1023 - (s % 80)) << 52) | (s >> 12)));
        }
        for x in edge {
            assert_eq!(to_fixed(x), general(x), "x = {x:e}");
        }
    }

    #[test]
    fn fast_from_fixed_matches_the_general_form() {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut vals: Vec<i128> = vec![
            0,
            1,
            -1,
            (1 << 63) - 1,
            1 << 63,
            (1 << 63) + 1,
            u64::MAX as i128,
            u64::MAX as i128 + 1,
            i128::MIN,
        ];
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            vals.push((s >> (s % 64)) as i128);
            vals.push(-((s >> 3) as i128) << (s % 40));
        }
        for v in vals {
            assert_eq!(
                from_fixed(v).to_bits(),
                (v as f64 / FIXED_ONE).to_bits(),
                "v = {v}"
            );
        }
    }

    fn part(i: u32) -> Aggregates {
        let mut a = Aggregates::default();
        a.add_fixed("x", to_fixed(0.1 * i as f64));
        a.add_int("n", i as i64);
        a.min("lo", i as f64);
        a.max("hi", i as f64);
        a.count("df", &format!("t{}", i % 3), 1);
        a.set_top(
            "top",
            TopK::from_candidates(
                2,
                vec![
                    TopEntry {
                        score: (i % 2) as f64,
                        key: format!("k{i}"),
                        label: String::new(),
                    },
                    TopEntry {
                        score: 5.0,
                        key: format!("z{i}"),
                        label: String::new(),
                    },
                ],
            ),
        );
        a
    }

    #[test]
    fn absurd_partials_wrap_instead_of_panicking() {
        let mut a = Aggregates::default();
        a.add_fixed("x", i128::MAX);
        a.add_int("n", i64::MAX);
        let mut b = a.clone();
        b.merge(a);
        assert_eq!(b.fixed_sums["x"], i128::MAX.wrapping_add(i128::MAX));
        assert_eq!(b.int("n"), i64::MAX.wrapping_add(i64::MAX));
    }

    #[test]
    fn merge_is_order_independent() {
        let mut fwd = Aggregates::default();
        for i in 0..7 {
            fwd.merge(part(i));
        }
        let mut rev = Aggregates::default();
        for i in (0..7).rev() {
            rev.merge(part(i));
        }
        assert_eq!(fwd, rev);
        assert_eq!(fwd.int("n"), 21);
        assert_eq!(fwd.mins["lo"], 0.0);
        assert_eq!(fwd.counts["df"]["t0"], 3);
        let keys: Vec<&str> = fwd.topk["top"]
            .entries
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, vec!["z0", "z1"], "ties broken by key");
    }

    #[test]
    fn fixed_point_round_trips_closely() {
        for x in [0.0, 1e-9, 0.123456789, 1.0, 12345.678] {
            assert!((from_fixed(to_fixed(x)) - x).abs() <= 1e-18 * x.max(1.0));
        }
    }
}
