//! Lockstep's wire format and atom model.
//!
//! # Layout
//! - [`pb`]: the generated tonic/prost code. This is the only place it is
//!   included.
//! - [`model`]: the domain types: [`Handle`], atom types, [`Atom`], truth and
//!   attention values, [`Tick`].
//! - [`convert`]: every proto<->domain conversion, one file per type.
//! - [`aggregate`]: mergeable aggregates with fixed-point sums.
//! - [`auth`]: the cluster token, added to calls and checked by servers.
//! - [`workload`]: the built-in workloads' names, phases and parameters,
//!   shared by coordinator and shards.
//! - [`input`]: Atomese and JSON Lines parsers and the seeded generator.
//! - [`wire_error`]: how typed errors (wrong epoch, not owner) travel inside a
//!   gRPC `Status`, shared by servers and clients.
//!
//! The ids `ShardId` and `Epoch` come from the ring crate and are re-exported.

pub mod aggregate;
pub mod auth;
pub mod convert;
pub mod input;
pub mod model;
pub mod tls;
pub mod wire_error;
pub mod workload;

mod error;

pub use error::ProtoError;
pub use lockstep_hashing::{Epoch, ShardId};
pub use model::{
    Atom, AtomKind, AtomRecord, AtomType, AttentionValue, FlatAtom, Handle, IncomingRef, Liveness,
    ShardEntry, StiColumn, Tick, Topology, TruthValue,
};

/// Generated protobuf and gRPC code.
#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("lockstep.v1");
}
