//! `ingest`: batched loading as ticks. Every shard derives the same batch
//! for tick t (the t-th slice of a seeded generation or of a file) and stages
//! the atoms and incoming-set entries it owns, so a tick's batch becomes
//! visible on all shards at its commit, or not at all.

use std::sync::Arc;

use lockstep_proto::input;
use lockstep_proto::model::flatten_batch;
use lockstep_proto::workload::IngestParams;
use lockstep_proto::{Atom, ProtoError};

use super::{PhaseInput, PhaseOutput, Staged};
use crate::Error;
use crate::store::KvStore;

pub struct State {
    params: IngestParams,
    atoms: Option<Arc<Vec<Atom>>>,
}

impl State {
    pub fn new(params: IngestParams) -> State {
        State {
            params,
            atoms: None,
        }
    }

    fn atoms(&mut self) -> Result<Arc<Vec<Atom>>, Error> {
        if self.atoms.is_none() {
            let atoms = match (&self.params.generate, &self.params.file) {
                (Some(n), _) => input::generate::generate(*n, self.params.seed),
                (None, Some(f)) => input::read_file(std::path::Path::new(f))
                    .map_err(|e| ProtoError::BadParam(e.to_string()))?,
                (None, None) => return Err(ProtoError::BadParam("no input".into()).into()),
            };
            self.atoms = Some(Arc::new(atoms));
        }
        Ok(self.atoms.clone().expect("set above"))
    }

    pub fn run<S: KvStore>(
        &mut self,
        phase: &str,
        input: &PhaseInput<'_, S>,
        staged: &mut Staged,
    ) -> Result<PhaseOutput, Error> {
        if phase != "stage" {
            return Err(ProtoError::BadParam(format!("ingest has no phase {phase:?}")).into());
        }
        let atoms = self.atoms()?;
        let b = self.params.batch;
        let start = ((input.tick.saturating_sub(1)) as usize).saturating_mul(b);
        let slice = &atoms[start.min(atoms.len())..(start + b).min(atoms.len())];
        let mut out = PhaseOutput::default();
        for (a, _) in flatten_batch(slice) {
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
