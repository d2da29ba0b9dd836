//! Single-process reference implementations of the workloads, in plain
//! Rust with no cluster, to check the cluster's results against.

use std::collections::{BTreeMap, HashMap};

use lockstep::model::atom::flatten_batch;
use lockstep::model::workload::{list_docs, tokenize};
use lockstep::model::{Atom, Handle};

/// STI per vertex after `ticks` ticks of attention over `atoms`: the
/// formula's one definition, shared with the benchmark baseline.
pub fn attention(atoms: &[Atom], damping: f64, ticks: u64) -> HashMap<Handle, f64> {
    lockstep::model::reference::AttentionGraph::new(atoms, damping).run(ticks)
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
