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
    Generator::new(atoms, seed).collect()
}

/// The atoms of [`generate`], one at a time, so that a shard can take its
/// tick's slice without holding the whole set. Memory grows only with the
/// links produced so far (the set that keeps them distinct).
pub struct Generator {
    rng: ChaCha8Rng,
    atoms: usize,
    nodes: usize,
    links: usize,
    produced: usize,
    concept: &'static AtomType,
    link_types: Vec<&'static AtomType>,
    seen: HashSet<(usize, usize, usize)>,
    attempts: usize,
}

impl Generator {
    pub fn new(atoms: usize, seed: u64) -> Generator {
        let nodes = (atoms / 5).max(2).min(atoms);
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            atoms,
            nodes,
            links: atoms - nodes,
            produced: 0,
            concept: AtomType::by_name("ConceptNode").expect("built-in type"),
            link_types: LINK_TYPES
                .iter()
                .map(|t| AtomType::by_name(t).expect("built-in type"))
                .collect(),
            seen: HashSet::new(),
            attempts: 0,
        }
    }

    fn node(&self, i: usize) -> Atom {
        Atom::node(self.concept, format!("n{i}")).expect("non-empty name")
    }
}

impl Iterator for Generator {
    type Item = Atom;

    fn next(&mut self) -> Option<Atom> {
        if self.produced >= self.atoms {
            return None;
        }
        if self.produced < self.nodes {
            let i = self.produced;
            self.produced += 1;
            let tv = TruthValue::new(self.rng.random::<f64>(), self.rng.random::<f64>())
                .expect("in range");
            return Some(self.node(i).with_tv(tv));
        }
        // Distinct (type, a, b) triples; with few nodes the space may run
        // out, which the attempt bound turns into a shorter output instead
        // of a hang.
        while self.attempts < self.links.saturating_mul(50) + 100 {
            self.attempts += 1;
            let a = (self.nodes as f64 * self.rng.random::<f64>().powf(SKEW)) as usize;
            let b = (self.nodes as f64 * self.rng.random::<f64>().powf(SKEW)) as usize;
            let t = self.rng.random_range(0..self.link_types.len());
            // An unordered link's two orders are one atom.
            let (a, b) = if self.link_types[t].unordered && b < a {
                (b, a)
            } else {
                (a, b)
            };
            if a == b || !self.seen.insert((t, a, b)) {
                continue;
            }
            let tv = TruthValue::new(self.rng.random::<f64>(), self.rng.random::<f64>())
                .expect("in range");
            self.produced += 1;
            return Some(
                Atom::link(self.link_types[t], vec![self.node(a), self.node(b)])
                    .expect("binary link")
                    .with_tv(tv),
            );
        }
        None
    }
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
