//! The built-in workloads: their names, phases, typed parameters, and the
//! tf-idf tokenizer. Shared by the coordinator (which drives the phases) and
//! the shards (which execute them).
//!
//! Every tick ends with the two commit phases [`PREPARE`] and [`COMMIT`]:
//! shards make the tick's staged writes durable, the coordinator records its
//! decision, then shards apply them in one RocksDB write.

use std::collections::HashMap;

use crate::{AtomType, ModelError};

/// Shards persist the tick's staged writes, not yet visible.
pub const PREPARE: &str = "prepare";
/// Shards apply the prepared writes and record the tick as committed.
pub const COMMIT: &str = "commit";

/// Default damping for `attention`.
pub const DEFAULT_DAMPING: f64 = 0.85;
/// Default top-k size.
pub const DEFAULT_TOP: usize = 10;
/// Default atoms per `ingest` tick.
pub const DEFAULT_INGEST_BATCH: usize = 10_000;

/// A workload with its parameters, parsed and validated.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    Ingest(IngestParams),
    Attention(AttentionParams),
    Tfidf(TfidfParams),
    /// Eight empty phases per tick, then prepare and commit: measures the
    /// cost of a phase barrier (`lockstep bench ticks`).
    Barrier,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IngestParams {
    /// Generate this many atoms with `seed` …
    pub generate: Option<usize>,
    /// … or read them from this file (a path every shard can read).
    pub file: Option<String>,
    pub seed: u64,
    /// Top-level atoms per tick.
    pub batch: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AttentionParams {
    pub damping: f64,
    /// Only links of these types are edges; `None` means every link type.
    pub link_types: Option<Vec<&'static AtomType>>,
    pub top: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TfidfParams {
    /// A folder every shard can read; each regular file is one document.
    pub docs: String,
    pub top: usize,
}

fn bad(msg: impl Into<String>) -> ModelError {
    ModelError::BadParam(msg.into())
}

fn num<T: std::str::FromStr>(
    params: &HashMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, ModelError> {
    match params.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("{key} = {v:?} is not a valid number"))),
    }
}

impl Workload {
    /// Parses a workload name and its parameters. Unknown parameters are
    /// errors, so a typo never silently runs the default.
    pub fn parse(name: &str, params: &HashMap<String, String>) -> Result<Workload, ModelError> {
        let allowed: &[&str] = match name {
            "ingest" => &["generate", "file", "seed", "batch"],
            "attention" => &["damping", "link-types", "top"],
            "tfidf" => &["docs", "top"],
            "barrier" => &[],
            other => {
                return Err(bad(format!(
                    "unknown workload {other:?}; the workloads are ingest, attention, tfidf, barrier"
                )));
            }
        };
        if let Some(k) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(format!("{name} has no parameter {k:?}")));
        }
        match name {
            "barrier" => Ok(Workload::Barrier),
            "ingest" => {
                let generate = params
                    .get("generate")
                    .map(|v| v.parse::<usize>())
                    .transpose()
                    .map_err(|_| bad("generate must be a count"))?;
                let file = params.get("file").cloned();
                if generate.is_some() == file.is_some() {
                    return Err(bad("ingest needs exactly one of generate or file"));
                }
                let batch = num(params, "batch", DEFAULT_INGEST_BATCH)?;
                if batch == 0 {
                    return Err(bad("batch must be > 0"));
                }
                Ok(Workload::Ingest(IngestParams {
                    generate,
                    file,
                    seed: num(params, "seed", 42)?,
                    batch,
                }))
            }
            "attention" => {
                let damping: f64 = num(params, "damping", DEFAULT_DAMPING)?;
                if !(0.0..=1.0).contains(&damping) {
                    return Err(bad(format!("damping must be in [0, 1], got {damping}")));
                }
                let link_types = match params.get("link-types") {
                    None => None,
                    Some(list) => Some(
                        list.split(',')
                            .map(|t| AtomType::intern(t.trim()))
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                };
                if let Some(t) = link_types.iter().flatten().find(|t| t.is_node()) {
                    return Err(bad(format!("{} is not a link type", t.name)));
                }
                Ok(Workload::Attention(AttentionParams {
                    damping,
                    link_types,
                    top: num(params, "top", DEFAULT_TOP)?,
                }))
            }
            _ => Ok(Workload::Tfidf(TfidfParams {
                docs: params
                    .get("docs")
                    .cloned()
                    .ok_or_else(|| bad("tfidf needs docs"))?,
                top: num(params, "top", DEFAULT_TOP)?,
            })),
        }
    }

    /// The name [`Workload::parse`] takes.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Ingest(_) => "ingest",
            Workload::Attention(_) => "attention",
            Workload::Tfidf(_) => "tfidf",
            Workload::Barrier => "barrier",
        }
    }

    /// Phases run once per job before its first tick and again after a
    /// shard came back; they hold in-memory state and write nothing.
    pub fn setup_phases(&self) -> &'static [&'static str] {
        match self {
            Workload::Attention(_) => &["edges", "degrees"],
            Workload::Ingest(_) | Workload::Tfidf(_) | Workload::Barrier => &[],
        }
    }

    /// The phases of job tick `tick` (1-based), ending in prepare, commit.
    pub fn tick_phases(&self, tick: u64) -> &'static [&'static str] {
        match self {
            Workload::Ingest(_) => &["stage", PREPARE, COMMIT],
            Workload::Attention(_) => &["spread", "apply", PREPARE, COMMIT],
            Workload::Tfidf(_) if tick == 1 => &["tokenize", "stage", PREPARE, COMMIT],
            Workload::Tfidf(_) => &["df", "tf", "score", PREPARE, COMMIT],
            Workload::Barrier => &BARRIER_PHASES,
        }
    }
}

/// The `barrier` workload's tick: empty phases, then the commit phases.
pub const BARRIER_PHASES: [&str; 10] = [
    "empty-1", "empty-2", "empty-3", "empty-4", "empty-5", "empty-6", "empty-7", "empty-8",
    PREPARE, COMMIT,
];

/// Splits a document into tf-idf terms: ASCII letters lowercased, a token is
/// a maximal run of `[a-z0-9]`, every other byte separates, and tokens
/// shorter than 2 bytes are dropped.
pub fn tokenize(doc: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for &b in doc {
        let c = b.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            cur.push(c as char);
        } else {
            if cur.len() >= 2 {
                out.push(std::mem::take(&mut cur));
            }
            cur.clear();
        }
    }
    if cur.len() >= 2 {
        out.push(cur);
    }
    out
}

/// The documents under `dir`: every regular file, recursively, as (path
/// relative to `dir` with '/' separators, absolute path), sorted by the
/// relative path.
pub fn list_docs(dir: &std::path::Path) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let path = entry.path();
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_follows_the_spec() {
        assert_eq!(
            tokenize(b"The cat's 2 CATS, x9 a b-52\xffzz"),
            vec!["the", "cat", "cats", "x9", "52", "zz"]
        );
    }

    #[test]
    fn params_are_checked() {
        let p = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert!(Workload::parse("attention", &p(&[("damping", "0.5")])).is_ok());
        assert!(Workload::parse("attention", &p(&[("damping", "2")])).is_err());
        assert!(Workload::parse("attention", &p(&[("dampnig", "0.5")])).is_err());
        assert!(Workload::parse("attention", &p(&[("link-types", "ConceptNode")])).is_err());
        assert!(Workload::parse("ingest", &p(&[])).is_err());
        assert!(Workload::parse("nope", &p(&[])).is_err());
        let w = Workload::parse("ingest", &p(&[("generate", "100"), ("batch", "10")])).unwrap();
        assert_eq!(w.tick_phases(1), &["stage", PREPARE, COMMIT]);
    }
}
