//! `attention`: importance spreading in the exact PageRank form.
//!
//! Vertices are all nodes; every link with two outgoing atoms that are both
//! nodes, of an allowed type, is an edge `outgoing[0] -> outgoing[1]` of
//! weight 1 (parallel links add). Each tick:
//!
//! ```text
//! x'(v) = (1-d)/V + d * ( sum over u->v of x(u)*w(u,v)/W(u)  +  D/V )
//! ```
//!
//! with D the mass of vertices without out-edges. Contributions and D are
//! summed in 2^-64 fixed point, so the sum is exact and the result is
//! bit-identical for any number of shards and any message order.
//!
//! Setup (`edges`, `degrees`): each shard walks its nodes' incoming sets and
//! tells the owner of `u` about each edge `u -> v` it finds at `v`; the
//! owner of `u` keeps its out-edges in memory. Ticks: `spread` sends the
//! combined contribution per destination vertex; `apply` sums what arrived
//! and stages the new STI.

use std::collections::HashMap;

use lockstep_proto::aggregate::{TopEntry, TopK, from_fixed, to_fixed};
use lockstep_proto::workload::AttentionParams;
use lockstep_proto::{Handle, ProtoError};

use super::{PhaseInput, PhaseOutput, Staged, all_incoming, local_nodes};
use crate::Error;
use crate::store::KvStore;

pub struct State {
    params: AttentionParams,
    nodes: Vec<Handle>,
    labels: Vec<String>,
    index: HashMap<Handle, usize>,
    out: Vec<Vec<(Handle, u64)>>,
    wsum: Vec<u64>,
    vertices: u64,
    x: Vec<f64>,
    next: Option<Vec<f64>>,
    ready: bool,
}

fn decode_i128(b: &[u8]) -> Result<i128, Error> {
    let arr: [u8; 16] = b
        .try_into()
        .map_err(|_| ProtoError::Corrupt(format!("contribution of {} bytes", b.len())))?;
    Ok(i128::from_be_bytes(arr))
}

impl State {
    pub fn new(params: AttentionParams) -> State {
        State {
            params,
            nodes: Vec::new(),
            labels: Vec::new(),
            index: HashMap::new(),
            out: Vec::new(),
            wsum: Vec::new(),
            vertices: 0,
            x: Vec::new(),
            next: None,
            ready: false,
        }
    }

    /// The tick committed: its values become the current ones.
    pub fn committed(&mut self) {
        if let Some(n) = self.next.take() {
            self.x = n;
        }
    }

    pub fn aborted(&mut self) {
        self.next = None;
    }

    fn allowed(&self, ty: &lockstep_proto::AtomType) -> bool {
        self.params
            .link_types
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|t| t.id == ty.id))
    }

    pub fn run<S: KvStore>(
        &mut self,
        phase: &str,
        input: &PhaseInput<'_, S>,
        staged: &mut Staged,
    ) -> Result<PhaseOutput, Error> {
        let mut out = PhaseOutput::default();
        match phase {
            "edges" => {
                self.ready = false;
                let nodes = local_nodes(input.store)?;
                self.nodes = nodes.iter().map(|r| r.handle).collect();
                self.labels = nodes
                    .iter()
                    .map(|r| format!("({} {:?})", r.ty.name, r.name))
                    .collect();
                self.index = self
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, h)| (*h, i))
                    .collect();
                for &v in &self.nodes {
                    for r in all_incoming(input.store, v)? {
                        if r.outgoing.len() == 2 && r.outgoing[1] == v && self.allowed(r.link_type)
                        {
                            out.outbox.push((r.outgoing[0], v.to_bytes().to_vec()));
                        }
                    }
                }
                out.partial.add_int("vertices", self.nodes.len() as i64);
            }
            "degrees" => {
                self.vertices = input.globals.int("vertices").max(0) as u64;
                let mut edges: Vec<Vec<Handle>> = vec![Vec::new(); self.nodes.len()];
                for m in &input.inbox {
                    let u = Handle::from_slice(&m.key)?;
                    let v = Handle::from_slice(&m.data)?;
                    // Only edges whose source is a node: a link's other end
                    // may be a link, which is no vertex.
                    if let Some(&i) = self.index.get(&u) {
                        edges[i].push(v);
                    }
                }
                self.out = edges
                    .into_iter()
                    .map(|mut vs| {
                        vs.sort_unstable();
                        let mut w: Vec<(Handle, u64)> = Vec::new();
                        for v in vs {
                            match w.last_mut() {
                                Some((last, n)) if *last == v => *n += 1,
                                _ => w.push((v, 1)),
                            }
                        }
                        w
                    })
                    .collect();
                self.wsum = self
                    .out
                    .iter()
                    .map(|o| o.iter().map(|e| e.1).sum())
                    .collect();
                out.partial
                    .add_int("edges", self.wsum.iter().sum::<u64>() as i64);
                self.x = if input.tick <= 1 {
                    vec![1.0 / self.vertices.max(1) as f64; self.nodes.len()]
                } else {
                    // Resuming: start from the last committed tick.
                    input
                        .store
                        .get(&self.nodes)?
                        .iter()
                        .map(|r| r.as_ref().map_or(0.0, |r| r.av.sti))
                        .collect()
                };
                self.next = None;
                self.ready = true;
            }
            "spread" => {
                self.require_ready()?;
                let mut dangling: i128 = 0;
                let mut contrib: HashMap<Handle, i128> = HashMap::new();
                for (i, edges) in self.out.iter().enumerate() {
                    let w = self.wsum[i];
                    if w == 0 {
                        dangling += to_fixed(self.x[i]);
                        continue;
                    }
                    for &(v, n) in edges {
                        // Combined per destination before sending.
                        *contrib.entry(v).or_default() += to_fixed(self.x[i] * n as f64 / w as f64);
                    }
                }
                out.partial.add_fixed("dangling", dangling);
                out.outbox = contrib
                    .into_iter()
                    .map(|(v, c)| (v, c.to_be_bytes().to_vec()))
                    .collect();
            }
            "apply" => {
                self.require_ready()?;
                let mut sums = vec![0i128; self.nodes.len()];
                for m in &input.inbox {
                    let v = Handle::from_slice(&m.key)?;
                    if let Some(&i) = self.index.get(&v) {
                        sums[i] += decode_i128(&m.data)?;
                    }
                }
                let d = self.params.damping;
                let n = self.vertices.max(1) as f64;
                let dangling = input.globals.fixed("dangling");
                let next: Vec<f64> = sums
                    .iter()
                    .map(|&s| (1.0 - d) / n + d * (from_fixed(s) + dangling / n))
                    .collect();
                let mut total = 0i128;
                let mut l1 = 0i128;
                for (i, &x) in next.iter().enumerate() {
                    total += to_fixed(x);
                    l1 += to_fixed((x - self.x[i]).abs());
                    staged.sti.push((self.nodes[i], x));
                }
                out.partial.add_fixed("total_sti", total);
                out.partial.add_fixed("l1_change", l1);
                out.partial.set_top("top", self.top(&next));
                self.next = Some(next);
            }
            other => {
                return Err(
                    ProtoError::BadParam(format!("attention has no phase {other:?}")).into(),
                );
            }
        }
        Ok(out)
    }

    fn require_ready(&self) -> Result<(), Error> {
        if self.ready {
            Ok(())
        } else {
            Err(ProtoError::BadParam("attention setup has not run on this shard".into()).into())
        }
    }

    /// The top k by STI, ties by handle; labels built for the k only.
    fn top(&self, x: &[f64]) -> TopK {
        let k = self.params.top;
        let mut idx: Vec<usize> = (0..x.len()).collect();
        let rank = |a: &usize, b: &usize| {
            x[*b]
                .total_cmp(&x[*a])
                .then_with(|| self.nodes[*a].cmp(&self.nodes[*b]))
        };
        if idx.len() > k && k > 0 {
            idx.select_nth_unstable_by(k - 1, rank);
            idx.truncate(k);
        }
        TopK::from_candidates(
            k,
            idx.into_iter()
                .map(|i| TopEntry {
                    score: x[i],
                    key: self.nodes[i].to_string(),
                    label: self.labels[i].clone(),
                })
                .collect(),
        )
    }
}
