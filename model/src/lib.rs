//! Lockstep's domain model, with no I/O beyond reading input files and no
//! wire format: what the servers store and compute, and what the client
//! library reads and sends.
//!
//! # Layout
//! - [`atom`]: [`Handle`], the atom type registry, [`Atom`], truth and
//!   attention values, the flat form an atom takes on its owner shard,
//!   [`Tick`], the cluster's [`Topology`] and the [`Routing`] built from it.
//! - [`types`]: the AtomSpace's type hierarchy, new types, and the ids a
//!   store keeps for them.
//! - [`aggregate`]: mergeable aggregates with fixed-point sums.
//! - [`workload`]: the built-in workloads' names, phases and parameters,
//!   shared by coordinator and shards, and the tf-idf tokenizer.
//! - [`input`]: Atomese and JSON Lines readers and the seeded generator.
//! - [`output`]: writing atoms as Atomese, as the AtomSpace writes it.
//! - [`value`]: named values (FloatValue, StringValue, LinkValue) and
//!   their key atoms.
//! - [`replica`]: the commands a shard's replica group agrees on.
//! - [`reference`]: the attention formula in one thread, shared by the test
//!   oracle and the benchmark baseline.
//!
//! The ids `ShardId` and `Epoch` come from the ring crate and are
//! re-exported.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod atom;
pub mod input;
pub mod output;
pub mod reference;
pub mod replica;
pub mod types;
pub mod value;
pub mod workload;

mod error;

pub use atom::{
    Atom, AtomKind, AtomRecord, AtomType, AttentionValue, FlatAtom, Handle, IncomingRef, Liveness,
    Routing, ShardEntry, StiColumn, Tick, Topology, TruthValue, TvKind, Value,
};
pub use error::ModelError;
pub use lockstep_hashing::{Epoch, ShardId};
pub use replica::ReplicaCommand;
pub use types::TypeTable;
