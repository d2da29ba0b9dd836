//! A seeded synthetic AtomSpace: ConceptNodes, then binary links between
//! them whose endpoints follow a power law, so that a few nodes are hubs.
//! The same (count, seed) gives the same atoms in every release.

use std::collections::HashSet;

use crate::{Atom, AtomType, TruthValue};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The link types generated links are drawn from.
const LINK_TYPES: [&str; 3] = ["InheritanceLink", "SimilarityLink", "MemberLink"];

/// How skewed endpoint choice is: rank = floor(nodes * u^SKEW).
const SKEW: f64 = 2.5;

/// `atoms` distinct atoms: one node per five atoms (at least two), the rest
/// binary links. Nodes come first.
pub fn generate(atoms: usize, seed: u64) -> Vec<Atom> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes = (atoms / 5).max(2).min(atoms);
    let links = atoms - nodes;
    let concept = AtomType::by_name("ConceptNode").expect("built-in type");
    let link_types: Vec<&'static AtomType> = LINK_TYPES
        .iter()
        .map(|t| AtomType::by_name(t).expect("built-in type"))
        .collect();
    let mut out = Vec::with_capacity(atoms);
    let node = |i: usize| Atom::node(concept, format!("n{i}")).expect("non-empty name");
    for i in 0..nodes {
        let tv = TruthValue::new(rng.random::<f64>(), rng.random::<f64>()).expect("in range");
        out.push(node(i).with_tv(tv));
    }
    // Distinct (type, a, b) triples; with few nodes the space may run out,
    // which the attempt bound turns into a shorter output instead of a hang.
    let mut seen = HashSet::with_capacity(links);
    let mut attempts = 0usize;
    while out.len() < atoms && attempts < links.saturating_mul(50) + 100 {
        attempts += 1;
        let a = (nodes as f64 * rng.random::<f64>().powf(SKEW)) as usize;
        let b = (nodes as f64 * rng.random::<f64>().powf(SKEW)) as usize;
        let t = rng.random_range(0..link_types.len());
        if a == b || !seen.insert((t, a, b)) {
            continue;
        }
        let tv = TruthValue::new(rng.random::<f64>(), rng.random::<f64>()).expect("in range");
        let link = Atom::link(link_types[t], vec![node(a), node(b)])
            .expect("binary link")
            .with_tv(tv);
        out.push(link);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_distinct_and_skewed() {
        let a = generate(5_000, 7);
        assert_eq!(a, generate(5_000, 7));
        assert_ne!(a, generate(5_000, 8));
        assert_eq!(a.len(), 5_000);
        let handles: HashSet<_> = a.iter().map(Atom::handle).collect();
        assert_eq!(handles.len(), 5_000);
        // n0 is a hub: it appears in far more links than a middle node.
        let uses = |name: &str| {
            a.iter()
                .filter(|x| x.outgoing.iter().any(|o| o.name == name))
                .count()
        };
        assert!(
            uses("n0") > 10 * uses("n500").max(1),
            "{} vs {}",
            uses("n0"),
            uses("n500")
        );
    }
}
