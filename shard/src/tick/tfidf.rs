//! `tfidf`: global document frequency, Phago-style.
//!
//! Tick 1 loads the documents: each shard tokenizes the documents whose
//! `(ConceptNode "doc:<path>")` it owns, and sends each `WordNode` and
//! `ContainsLink(doc, word)` (with its `count` value) to its owner.
//! Later ticks score: `df` counts each word's ContainsLinks on the word's
//! shard; `tf` looks up each link's count; `score` computes, on the
//! document's shard,
//!
//! ```text
//! tf = count(d,t) / total(d)      idf = ln(N / df(t))      score = tf * idf
//! ```

use std::collections::{BTreeMap, HashMap};

use lockstep_model::aggregate::{TopEntry, TopK};
use lockstep_model::workload::{TfidfParams, list_docs, tokenize};
use lockstep_model::{AtomType, FlatAtom, Handle, IncomingRef};
use lockstep_proto::ProtoError;
use lockstep_proto::pb;
use prost::Message;

use super::{PhaseInput, PhaseOutput, Staged, all_incoming};
use crate::Error;
use crate::atoms::AtomRead;
use crate::store::KvStore;

pub struct State {
    params: TfidfParams,
    limits: super::InputLimits,
}

/// The first number of a FloatValue.
fn float_of(v: &lockstep_model::Value) -> Option<&f64> {
    match v {
        lockstep_model::Value::Float(xs) => xs.first(),
        _ => None,
    }
}

fn ty(name: &str) -> &'static AtomType {
    AtomType::by_name(name).expect("built-in type")
}

fn decode<M: Message + Default>(b: &[u8]) -> Result<M, Error> {
    M::decode(b).map_err(|e| ProtoError::Corrupt(e.to_string()).into())
}

impl State {
    pub fn new(params: TfidfParams, limits: super::InputLimits) -> State {
        State { params, limits }
    }

    fn tokenize<S: KvStore>(
        &self,
        input: &PhaseInput<'_, S>,
        staged: &mut Staged,
        out: &mut PhaseOutput,
    ) -> Result<(), Error> {
        // Only under the operator's import folder; symlinks inside it are
        // not followed (list_docs takes regular files only).
        let dir = crate::import::resolve(
            self.limits.import_dir.as_deref(),
            &self.params.docs,
            crate::import::Want::Folder,
        )?;
        let docs = list_docs(&dir).map_err(|e| {
            crate::Error::Import(format!("cannot list docs {:?}: {e}", self.params.docs))
        })?;
        for (rel, path) in docs {
            let mut doc = FlatAtom::new(ty("ConceptNode"), format!("doc:{rel}"), Vec::new())?;
            if !input.owns(doc.handle) {
                continue;
            }
            let bytes =
                crate::import::read_capped(&path, self.limits.max_read_bytes, "max_tick_read_mb")?;
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let tokens = tokenize(&bytes);
            for t in &tokens {
                *counts.entry(t.clone()).or_default() += 1;
            }
            doc.values.insert(
                "total".into(),
                lockstep_model::Value::Float(vec![tokens.len() as f64]),
            );
            out.partial.add_int("documents", 1);
            out.partial.add_int("tokens", tokens.len() as i64);
            out.partial.add_int("terms", counts.len() as i64);
            let mut per_owner: HashMap<Handle, pb::PutAtomsRequest> = HashMap::new();
            for (term, c) in counts {
                let word = FlatAtom::new(ty("WordNode"), term, Vec::new())?;
                let mut link = FlatAtom::new(
                    ty("ContainsLink"),
                    String::new(),
                    vec![doc.handle, word.handle],
                )?;
                link.values
                    .insert("count".into(), lockstep_model::Value::Float(vec![c as f64]));
                for r in link.incoming_refs() {
                    if r.target == doc.handle {
                        staged.incoming.push(r);
                    } else {
                        let m = per_owner.entry(word.handle).or_default();
                        m.incoming.push((&r).into());
                    }
                }
                per_owner
                    .entry(word.handle)
                    .or_default()
                    .atoms
                    .push((&word).into());
                per_owner
                    .entry(link.handle)
                    .or_default()
                    .atoms
                    .push((&link).into());
            }
            staged.atoms.push(doc);
            out.outbox
                .extend(per_owner.into_iter().map(|(k, m)| (k, m.encode_to_vec())));
        }
        Ok(())
    }
}

impl<S: KvStore> super::ShardWorkload<S> for State {
    fn emits(&self) -> &'static [&'static str] {
        &["documents", "tokens", "terms", "df", "top_df", "top"]
    }

    fn run(
        &mut self,
        phase: &str,
        input: &PhaseInput<'_, S>,
        staged: &mut Staged,
    ) -> Result<PhaseOutput, Error> {
        let mut out = PhaseOutput::default();
        match phase {
            "tokenize" => self.tokenize(input, staged, &mut out)?,
            "stage" => {
                for m in &input.inbox {
                    let req: pb::PutAtomsRequest = decode(&m.data)?;
                    for a in req.atoms {
                        staged.atoms.push(FlatAtom::try_from(a)?);
                    }
                    for r in req.incoming {
                        staged.incoming.push(IncomingRef::try_from(r)?);
                    }
                }
            }
            "df" => {
                let contains = ty("ContainsLink");
                let mut top = Vec::new();
                let mut after = None;
                loop {
                    let (words, more) = input.view.scan_type(ty("WordNode"), after, 10_000)?;
                    after = words.last().map(|r| r.handle);
                    for w in words {
                        let links: Vec<IncomingRef> = all_incoming(input.view, w.handle)?
                            .into_iter()
                            .filter(|r| {
                                r.link_type.name == contains.name
                                    && r.outgoing.len() == 2
                                    && r.outgoing[1] == w.handle
                            })
                            .collect();
                        if links.is_empty() {
                            continue;
                        }
                        let df = links.len() as u64;
                        out.partial.count("df", &w.name, df);
                        top.push(TopEntry {
                            score: df as f64,
                            key: w.name.clone(),
                            label: w.name.clone(),
                        });
                        for l in links {
                            let stat = pb::TermStat {
                                term: w.name.clone(),
                                df,
                                count: 0.0,
                            };
                            out.outbox.push((l.link, stat.encode_to_vec()));
                        }
                    }
                    if !more {
                        break;
                    }
                }
                out.partial
                    .set_top("top_df", TopK::from_candidates(self.params.top, top));
                let mut docs = 0;
                let mut after = None;
                loop {
                    let (page, more) = input.view.scan_type(ty("ConceptNode"), after, 10_000)?;
                    after = page.last().map(|r| r.handle);
                    docs += page.iter().filter(|r| r.name.starts_with("doc:")).count();
                    if !more {
                        break;
                    }
                }
                out.partial.add_int("documents", docs as i64);
            }
            "tf" => {
                let mut keys = Vec::with_capacity(input.inbox.len());
                let mut stats = Vec::with_capacity(input.inbox.len());
                for m in &input.inbox {
                    keys.push(Handle::from_slice(&m.key)?);
                    stats.push(decode::<pb::TermStat>(&m.data)?);
                }
                for ((link, rec), mut stat) in keys.iter().zip(input.view.get(&keys)?).zip(stats) {
                    let Some(rec) = rec else {
                        return Err(
                            ProtoError::Corrupt(format!("ContainsLink {link} missing")).into()
                        );
                    };
                    stat.count = rec
                        .values
                        .get("count")
                        .and_then(float_of)
                        .copied()
                        .unwrap_or(0.0);
                    // The df phase sent only binary ContainsLinks, but the
                    // key came over the network: check, never index.
                    let Some(&doc) = rec.outgoing.first() else {
                        return Err(ProtoError::Corrupt(format!(
                            "ContainsLink {link} has no document"
                        ))
                        .into());
                    };
                    out.outbox.push((doc, stat.encode_to_vec()));
                }
            }
            "score" => {
                let n = input.globals.int("documents") as f64;
                let mut by_doc: BTreeMap<Handle, Vec<pb::TermStat>> = BTreeMap::new();
                for m in &input.inbox {
                    by_doc
                        .entry(Handle::from_slice(&m.key)?)
                        .or_default()
                        .push(decode(&m.data)?);
                }
                let docs: Vec<Handle> = by_doc.keys().copied().collect();
                let recs = input.view.get(&docs)?;
                let mut cands = Vec::new();
                for ((_, stats), rec) in by_doc.into_iter().zip(recs) {
                    let Some(doc) = rec else { continue };
                    let total = doc
                        .values
                        .get("total")
                        .and_then(float_of)
                        .copied()
                        .unwrap_or(0.0);
                    if total <= 0.0 {
                        continue;
                    }
                    for s in stats {
                        let score = (s.count / total) * (n / s.df as f64).ln();
                        cands.push(TopEntry {
                            score,
                            key: format!("{}\u{0}{}", doc.name, s.term),
                            label: format!("{}\t{}", doc.name, s.term),
                        });
                    }
                }
                out.partial
                    .set_top("top", TopK::from_candidates(self.params.top, cands));
            }
            other => {
                return Err(ProtoError::BadParam(format!("tfidf has no phase {other:?}")).into());
            }
        }
        Ok(out)
    }
}
