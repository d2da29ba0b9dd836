//! Every conversion between generated protobuf types and domain types, as
//! `From`/`TryFrom` impls and a few free functions. Decoding validates: a
//! value that converts is a value the domain accepts.

mod aggregate;
mod atom;
mod column;
mod job;
#[cfg(feature = "raft")]
pub mod raft;
mod topology;

pub use atom::{
    decode_incoming, decode_stored, encode_incoming, encode_stored, handles_from_pb, type_from_pb,
};
pub use job::{job_spec, named_params, spec_of};
