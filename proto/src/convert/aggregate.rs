//! Aggregates and top-k lists.

use crate::pb;
use lockstep_model::aggregate::{Aggregates, TopEntry, TopK};

impl From<&Aggregates> for pb::Aggregates {
    fn from(a: &Aggregates) -> Self {
        pb::Aggregates {
            fixed_sums: a
                .fixed_sums
                .iter()
                .map(|(k, v)| (k.clone(), v.to_be_bytes().to_vec()))
                .collect(),
            int_sums: a.int_sums.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            mins: a.mins.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            maxs: a.maxs.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            counts: a
                .counts
                .iter()
                .map(|(k, m)| {
                    (
                        k.clone(),
                        pb::CountMap {
                            counts: m.iter().map(|(t, n)| (t.clone(), *n)).collect(),
                        },
                    )
                })
                .collect(),
            topk: a
                .topk
                .iter()
                .map(|(k, t)| {
                    (
                        k.clone(),
                        pb::TopK {
                            k: t.k as u32,
                            entries: t
                                .entries
                                .iter()
                                .map(|e| pb::TopEntry {
                                    score: e.score,
                                    key: e.key.clone(),
                                    label: e.label.clone(),
                                })
                                .collect(),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl From<pb::Aggregates> for Aggregates {
    fn from(a: pb::Aggregates) -> Self {
        Aggregates {
            // A malformed fixed sum (not 16 bytes) reads as zero rather than
            // failing the whole report.
            fixed_sums: a
                .fixed_sums
                .into_iter()
                .map(|(k, v)| {
                    let arr: [u8; 16] = v.as_slice().try_into().unwrap_or([0; 16]);
                    (k, i128::from_be_bytes(arr))
                })
                .collect(),
            int_sums: a.int_sums.into_iter().collect(),
            mins: a.mins.into_iter().collect(),
            maxs: a.maxs.into_iter().collect(),
            counts: a
                .counts
                .into_iter()
                .map(|(k, m)| (k, m.counts.into_iter().collect()))
                .collect(),
            topk: a
                .topk
                .into_iter()
                .map(|(k, t)| {
                    (
                        k,
                        TopK::from_candidates(
                            t.k as usize,
                            t.entries
                                .into_iter()
                                .map(|e| TopEntry {
                                    score: e.score,
                                    key: e.key,
                                    label: e.label,
                                })
                                .collect(),
                        ),
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_model::aggregate::to_fixed;

    #[test]
    fn aggregates_round_trip() {
        let mut a = Aggregates::default();
        a.add_fixed("s", to_fixed(0.75));
        a.add_fixed("neg", -5);
        a.count("df", "cat", 3);
        a.set_top(
            "top",
            TopK::from_candidates(
                1,
                vec![TopEntry {
                    score: 1.0,
                    key: "a".into(),
                    label: "A".into(),
                }],
            ),
        );
        assert_eq!(Aggregates::from(pb::Aggregates::from(&a)), a);
    }
}
