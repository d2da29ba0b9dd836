//! The attention workload's formula in one thread over in-memory arrays:
//! the one definition that the test oracle checks the cluster against and
//! that the benchmark's single-process baseline times.
//!
//! PageRank with dangling mass: each tick, every vertex gets
//! `(1 - d) / V + d * (dangling / V + Σ x[u] / out[u])` over its in-edges,
//! where the vertices are the nodes, the edges the binary links between
//! two nodes, and `dangling` the mass of vertices without out-edges.

use std::collections::HashMap;

use crate::atom::flatten_batch;
use crate::{Atom, Handle};

/// A graph indexed for the attention formula.
pub struct AttentionGraph {
    /// The vertices, in the order the atoms first name them.
    pub vertices: Vec<Handle>,
    /// (source, target) indexes, sorted by source.
    edges: Vec<(u32, u32)>,
    out_deg: Vec<u32>,
    /// 1 / out-degree, 0 for a dangling vertex.
    inv: Vec<f64>,
    damping: f64,
}

impl AttentionGraph {
    /// Indexes the nodes of `atoms` and the binary links between them.
    pub fn new(atoms: &[Atom], damping: f64) -> AttentionGraph {
        let flat = flatten_batch(atoms);
        let mut index: HashMap<Handle, u32> = HashMap::new();
        let mut vertices = Vec::new();
        for (a, _) in &flat {
            if a.ty.is_node() && !index.contains_key(&a.handle) {
                index.insert(a.handle, vertices.len() as u32);
                vertices.push(a.handle);
            }
        }
        let mut edges: Vec<(u32, u32)> = flat
            .iter()
            .filter(|(a, _)| !a.ty.is_node() && a.outgoing.len() == 2)
            .filter_map(|(a, _)| Some((*index.get(&a.outgoing[0])?, *index.get(&a.outgoing[1])?)))
            .collect();
        edges.sort_unstable();
        let mut out_deg = vec![0u32; vertices.len()];
        for (u, _) in &edges {
            out_deg[*u as usize] += 1;
        }
        let inv = out_deg
            .iter()
            .map(|&d| if d == 0 { 0.0 } else { 1.0 / d as f64 })
            .collect();
        AttentionGraph {
            vertices,
            edges,
            out_deg,
            inv,
            damping,
        }
    }

    pub fn edges(&self) -> usize {
        self.edges.len()
    }

    /// The uniform start: 1 / V everywhere.
    pub fn start(&self) -> Vec<f64> {
        vec![1.0 / self.vertices.len() as f64; self.vertices.len()]
    }

    /// One tick: `x` becomes the next STI vector; `scratch` is reused
    /// between ticks.
    pub fn tick(&self, x: &mut [f64], scratch: &mut Vec<f64>) {
        let n = self.vertices.len();
        let nf = n as f64;
        let d = self.damping;
        let dangling: f64 = (0..n).filter(|&i| self.out_deg[i] == 0).map(|i| x[i]).sum();
        scratch.clear();
        scratch.resize(n, 0.0);
        for &(u, t) in &self.edges {
            scratch[t as usize] += x[u as usize] * self.inv[u as usize];
        }
        let base = (1.0 - d) / nf + d * dangling / nf;
        for (xi, si) in x.iter_mut().zip(scratch.iter()) {
            *xi = base + d * si;
        }
    }

    /// STI per vertex after `ticks` ticks from the uniform start.
    pub fn run(&self, ticks: u64) -> HashMap<Handle, f64> {
        let mut x = self.start();
        let mut scratch = Vec::new();
        for _ in 0..ticks {
            self.tick(&mut x, &mut scratch);
        }
        self.vertices.iter().copied().zip(x).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AtomType;

    #[test]
    fn mass_is_kept_and_a_sink_gathers_it() {
        let c = AtomType::by_name("ConceptNode").unwrap();
        let inh = AtomType::by_name("InheritanceLink").unwrap();
        let node = |n: &str| Atom::node(c, n).unwrap();
        // a → c, b → c: c is dangling and ends up with the most.
        let atoms = vec![
            Atom::link(inh, vec![node("a"), node("c")]).unwrap(),
            Atom::link(inh, vec![node("b"), node("c")]).unwrap(),
        ];
        let g = AttentionGraph::new(&atoms, 0.85);
        assert_eq!((g.vertices.len(), g.edges()), (3, 2));
        let x = g.run(20);
        let total: f64 = x.values().sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        let of = |n: &str| x[&crate::atom::node_handle(c, n)];
        assert!(of("c") > of("a") && (of("a") - of("b")).abs() < 1e-15);
    }
}
