//! Single-process reference implementations of the workloads, in plain
//! Rust with no cluster, to check the cluster's results against.

use std::collections::{BTreeMap, HashMap};

use lockstep::model::atom::flatten_batch;
use lockstep::model::workload::{list_docs, tokenize};
use lockstep::model::{Atom, Handle};

/// STI per vertex after `ticks` ticks of attention over `atoms`, with
/// naive f64 summation.
pub fn attention(atoms: &[Atom], damping: f64, ticks: u64) -> HashMap<Handle, f64> {
    let flat = flatten_batch(atoms);
    let nodes: Vec<Handle> = flat
        .iter()
        .filter(|(a, _)| a.ty.is_node())
        .map(|(a, _)| a.handle)
        .collect();
    let is_node: std::collections::HashSet<Handle> = nodes.iter().copied().collect();
    let mut edges: Vec<(Handle, Handle)> = Vec::new();
    for (a, _) in &flat {
        if !a.ty.is_node()
            && a.outgoing.len() == 2
            && is_node.contains(&a.outgoing[0])
            && is_node.contains(&a.outgoing[1])
        {
            edges.push((a.outgoing[0], a.outgoing[1]));
        }
    }
    let mut w_out: HashMap<Handle, f64> = HashMap::new();
    for (u, _) in &edges {
        *w_out.entry(*u).or_default() += 1.0;
    }
    let v = nodes.len() as f64;
    let mut x: HashMap<Handle, f64> = nodes.iter().map(|h| (*h, 1.0 / v)).collect();
    for _ in 0..ticks {
        let dangling: f64 = nodes
            .iter()
            .filter(|h| !w_out.contains_key(h))
            .map(|h| x[h])
            .sum();
        let mut s: HashMap<Handle, f64> = HashMap::new();
        for (u, t) in &edges {
            *s.entry(*t).or_default() += x[u] / w_out[u];
        }
        x = nodes
            .iter()
            .map(|h| {
                let sum = s.get(h).copied().unwrap_or(0.0);
                (*h, (1.0 - damping) / v + damping * (sum + dangling / v))
            })
            .collect();
    }
    x
}

/// Per tick of `ingest`: atoms per type staged that tick.
pub fn ingest(atoms: &[Atom], batch: usize, ticks: u64) -> Vec<BTreeMap<String, u64>> {
    (0..ticks as usize)
        .map(|t| {
            let start = (t * batch).min(atoms.len());
            let end = ((t + 1) * batch).min(atoms.len());
            let mut by_type = BTreeMap::new();
            for (a, _) in flatten_batch(&atoms[start..end]) {
                *by_type.entry(a.ty.name.to_string()).or_default() += 1;
            }
            by_type
        })
        .collect()
}

/// (doc, term, score) rows, best first.
pub type Scores = Vec<(String, String, f64)>;

/// tf-idf over a folder: (top-k (doc, term, score), df per term).
pub fn tfidf(dir: &std::path::Path, k: usize) -> (Scores, BTreeMap<String, u64>) {
    let docs = list_docs(dir).unwrap();
    let n = docs.len() as f64;
    let mut counts: Vec<(String, BTreeMap<String, u64>, usize)> = Vec::new();
    let mut df: BTreeMap<String, u64> = BTreeMap::new();
    for (rel, path) in docs {
        let tokens = tokenize(&std::fs::read(path).unwrap());
        let mut c: BTreeMap<String, u64> = BTreeMap::new();
        for t in &tokens {
            *c.entry(t.clone()).or_default() += 1;
        }
        for t in c.keys() {
            *df.entry(t.clone()).or_default() += 1;
        }
        counts.push((format!("doc:{rel}"), c, tokens.len()));
    }
    let mut scores = Vec::new();
    for (doc, c, total) in &counts {
        for (t, cnt) in c {
            let tf = *cnt as f64 / *total as f64;
            let idf = (n / df[t] as f64).ln();
            scores.push((doc.clone(), t.clone(), tf * idf));
        }
    }
    scores.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
    });
    scores.truncate(k);
    (scores, df)
}

/// |a - b| <= tol * max(|a|, |b|).
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs())
}
