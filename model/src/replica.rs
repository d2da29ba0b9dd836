//! What a shard's replica group agrees on: the commands of its Raft log.
//!
//! Every replica applies the same commands in the same order to its own
//! atom store, so a command carries the write as the client sent it (the
//! atoms and incoming-set entries), not the key-value operations it turns
//! into: planning a write reads the store (an existing atom keeps the
//! values a write does not carry), and each replica plans it against its own
//! copy, which at that log index is the same.

use crate::atom::{FlatAtom, IncomingRef};

/// A command of a replica group's log.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplicaCommand {
    /// Upserts atoms and adds incoming-set entries: a client write, applied
    /// as the shard's `AtomStore::put` applies it on a shard of one.
    Put {
        atoms: Vec<FlatAtom>,
        incoming: Vec<IncomingRef>,
    },
    /// Records the cluster's ids of registered types, before any atom of
    /// them is put: every replica must decode what the others store.
    AddTypes { types: Vec<(u16, String)> },
}

impl ReplicaCommand {
    /// How many atoms and entries the command writes: what a batch of
    /// proposals is bounded by.
    pub fn len(&self) -> usize {
        match self {
            ReplicaCommand::Put { atoms, incoming } => atoms.len() + incoming.len(),
            ReplicaCommand::AddTypes { types } => types.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
