//! `ingest`: batched loading as ticks. Every shard derives the same batch
//! for tick t (the t-th slice of a seeded generation or of a file) and stages
//! the atoms and incoming-set entries it owns, so a tick's batch becomes
//! visible on all shards at its commit, or not at all.
//!
//! The input is a stream read as the ticks go: a shard holds one tick's
//! slice, never the whole input. A file comes only from the operator's
//! import folder, and each tick may read at most `max_tick_read_mb` of it;
//! a generation is capped at `max_generate` atoms. A retried tick (its
//! cursor is past the slice) reopens the stream and skips to the slice.

use std::io::BufReader;

use lockstep_model::Atom;
use lockstep_model::atom::flatten_batch;
use lockstep_model::input::generate::Generator;
use lockstep_model::input::{AtomReader, Format, ReadError, ReadLimits};
use lockstep_model::workload::IngestParams;

use super::{InputLimits, PhaseInput, PhaseOutput, Staged};
use crate::Error;
use crate::import::{self, Want};
use crate::store::KvStore;

enum Input {
    Generated(Box<Generator>),
    File(Box<AtomReader<BufReader<std::fs::File>>>),
}

/// The input stream and how far it has been read.
struct Cursor {
    input: Input,
    /// The index of the next top-level atom the stream yields.
    next: usize,
    /// The atom at `next`, read ahead to tell whether the input goes on.
    peeked: Option<Atom>,
}

pub struct State {
    params: IngestParams,
    limits: InputLimits,
    cursor: Option<Cursor>,
}

impl State {
    pub fn new(params: IngestParams, limits: InputLimits) -> State {
        State {
            params,
            limits,
            cursor: None,
        }
    }

    fn open(&self) -> Result<Cursor, Error> {
        let input = match (&self.params.generate, &self.params.file) {
            (Some(n), _) => {
                if *n as u64 > self.limits.max_generate {
                    return Err(Error::OverLimit {
                        what: format!("ingest --generate {n}"),
                        limit: "max_generate",
                        max: self.limits.max_generate,
                    });
                }
                Input::Generated(Box::new(Generator::new(*n, self.params.seed)))
            }
            (None, Some(f)) => {
                let path = import::resolve(self.limits.import_dir.as_deref(), f, Want::File)?;
                let mut input = BufReader::new(std::fs::File::open(&path)?);
                let format = Format::detect(&path, &mut input)?;
                Input::File(Box::new(AtomReader::new(
                    input,
                    format,
                    ReadLimits {
                        max_depth: self.limits.max_depth,
                        max_bytes: self.limits.max_read_bytes,
                        ..Default::default()
                    },
                )))
            }
            (None, None) => {
                return Err(lockstep_proto::ProtoError::BadParam("no input".into()).into());
            }
        };
        Ok(Cursor {
            input,
            next: 0,
            peeked: None,
        })
    }

    /// The next top-level atom of the stream.
    fn pull(&mut self, tick: u64) -> Result<Option<Atom>, Error> {
        let limits = &self.limits;
        let file = &self.params.file;
        let Some(c) = self.cursor.as_mut() else {
            return Ok(None);
        };
        if let Some(a) = c.peeked.take() {
            c.next += 1;
            return Ok(Some(a));
        }
        let a = match &mut c.input {
            Input::Generated(g) => g.next(),
            Input::File(r) => r.next_atom().map_err(|e| match e {
                ReadError::TooLarge { .. } => Error::OverLimit {
                    what: format!(
                        "tick {tick}'s slice of {}",
                        file.as_deref().unwrap_or_default()
                    ),
                    limit: "max_tick_read_mb",
                    max: limits.max_read_bytes >> 20,
                },
                ReadError::Io(e) => Error::Io(e),
                ReadError::Parse(p) => Error::Import(format!(
                    "{}:{}:{}: {}",
                    file.as_deref().unwrap_or_default(),
                    p.line,
                    p.col,
                    p.message
                )),
            })?,
        };
        if a.is_some() {
            c.next += 1;
        }
        Ok(a)
    }

    /// Gives the stream a fresh byte budget of one tick's read.
    fn allow_one_tick(&mut self) {
        let max = self.limits.max_read_bytes;
        if let Some(Cursor {
            input: Input::File(r),
            ..
        }) = self.cursor.as_mut()
        {
            r.allow(max);
        }
    }

    /// Tick `tick`'s slice of the input, and whether the input goes on
    /// past it.
    fn slice(&mut self, tick: u64) -> Result<(Vec<Atom>, bool), Error> {
        let b = self.params.batch;
        let start = (tick.saturating_sub(1) as usize).saturating_mul(b);
        if self.cursor.as_ref().is_none_or(|c| c.next > start) {
            self.cursor = Some(self.open()?);
        }
        // Skip to the slice, each skipped tick's worth under one tick's
        // budget, as when it was read the first time.
        let mut skipped = 0;
        while self.cursor.as_ref().is_some_and(|c| c.next < start) {
            if skipped % b == 0 {
                self.allow_one_tick();
            }
            if self.pull(tick)?.is_none() {
                return Ok((Vec::new(), false));
            }
            skipped += 1;
        }
        self.allow_one_tick();
        let mut slice = Vec::with_capacity(b.min(1 << 16));
        while slice.len() < b {
            match self.pull(tick)? {
                Some(a) => slice.push(a),
                None => return Ok((slice, false)),
            }
        }
        // One atom ahead, under the next tick's budget, tells whether the
        // input goes on; it is handed out first next time.
        self.allow_one_tick();
        let ahead = self.pull(tick)?;
        let more = ahead.is_some();
        if let (Some(a), Some(c)) = (ahead, self.cursor.as_mut()) {
            c.next -= 1;
            c.peeked = Some(a);
        }
        Ok((slice, more))
    }
}

impl<S: KvStore> super::ShardWorkload<S> for State {
    fn emits(&self) -> &'static [&'static str] {
        &["atoms", "incoming", "atoms_by_type", "more_input"]
    }

    fn run(
        &mut self,
        phase: &str,
        input: &PhaseInput<'_, S>,
        staged: &mut Staged,
    ) -> Result<PhaseOutput, Error> {
        if phase != "stage" {
            return Err(lockstep_proto::ProtoError::BadParam(format!(
                "ingest has no phase {phase:?}"
            ))
            .into());
        }
        let (slice, more) = self.slice(input.tick)?;
        let mut out = PhaseOutput::default();
        if more {
            // Every shard reads the same stream, so max is exact.
            out.partial.max("more_input", 1.0);
        }
        for (a, _) in flatten_batch(&slice) {
            for r in a.incoming_refs() {
                if input.owns(r.target) {
                    staged.incoming.push(r);
                    out.partial.add_int("incoming", 1);
                }
            }
            if input.owns(a.handle) {
                out.partial.count("atoms_by_type", a.ty.name, 1);
                out.partial.add_int("atoms", 1);
                staged.atoms.push(a);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_model::input::generate::generate;

    fn state(
        generate: Option<usize>,
        file: Option<String>,
        batch: usize,
        limits: InputLimits,
    ) -> State {
        State::new(
            IngestParams {
                generate,
                file,
                seed: 9,
                batch,
            },
            limits,
        )
    }

    #[test]
    fn slices_follow_the_ticks_in_any_order_and_say_when_input_remains() {
        let all = generate(1_000, 9);
        let mut s = state(Some(1_000), None, 300, InputLimits::default());
        let (t1, more) = s.slice(1).unwrap();
        assert_eq!((t1.as_slice(), more), (&all[..300], true));
        let (t2, _) = s.slice(2).unwrap();
        assert_eq!(t2, all[300..600]);
        // A retried tick re-reads its own slice.
        assert_eq!(s.slice(2).unwrap().0, all[300..600]);
        assert_eq!(s.slice(1).unwrap().0, all[..300]);
        let (t4, more) = s.slice(4).unwrap();
        assert_eq!((t4.as_slice(), more), (&all[900..], false));
        assert_eq!(s.slice(5).unwrap(), (Vec::new(), false));
        // Exactly at the end: nothing remains.
        let mut s = state(Some(1_000), None, 500, InputLimits::default());
        assert!(s.slice(1).unwrap().1);
        assert!(!s.slice(2).unwrap().1);
    }

    #[test]
    fn a_generation_over_the_limit_is_refused() {
        let limits = InputLimits {
            max_generate: 999,
            ..InputLimits::default()
        };
        let e = state(Some(1_000), None, 10, limits).slice(1).unwrap_err();
        assert!(e.to_string().contains("max_generate = 999"), "{e}");
    }

    #[test]
    fn a_file_is_read_from_the_import_folder_a_tick_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..100).map(|i| format!("(Concept \"c{i}\")\n")).collect();
        std::fs::write(dir.path().join("in.scm"), &text).unwrap();
        let limits = InputLimits {
            import_dir: Some(dir.path().to_path_buf()),
            max_read_bytes: 400,
            ..InputLimits::default()
        };
        let mut s = state(None, Some("in.scm".into()), 20, limits.clone());
        let (t1, more) = s.slice(1).unwrap();
        assert_eq!((t1.len(), t1[19].name.as_str(), more), (20, "c19", true));
        let (t3, _) = s.slice(3).unwrap();
        assert_eq!(t3[0].name, "c40");
        // A tick whose slice is more bytes than the budget is refused.
        let mut s = state(None, Some("in.scm".into()), 40, limits.clone());
        let e = s.slice(1).unwrap_err().to_string();
        assert!(e.contains("max_tick_read_mb"), "{e}");
        // Outside the folder, or with none configured: refused.
        let mut s = state(None, Some("/etc/passwd".into()), 20, limits);
        assert!(matches!(s.slice(1), Err(Error::Import(_))));
        let mut s = state(None, Some("in.scm".into()), 20, InputLimits::default());
        assert!(s.slice(1).unwrap_err().to_string().contains("--import-dir"));
    }
}
