//! Lockstep's wire format: the generated gRPC code, every proto<->domain
//! conversion, and what travels with a call (the token, TLS, typed errors
//! inside a `Status`). The domain types themselves live in
//! `lockstep-model`.
//!
//! # Layout
//! - [`pb`]: the generated tonic/prost code. This is the only place it is
//!   included.
//! - [`convert`]: every proto<->domain conversion, one file per type.
//! - [`auth`]: the cluster token, added to calls and checked by servers.
//! - [`channel`]: the one channel builder every gRPC client uses.
//! - [`tls`]: certificates, and the endpoints and servers that use them.
//! - [`wire_error`]: how typed errors (wrong epoch, not owner) travel inside a
//!   gRPC `Status`, shared by servers and clients.
#![forbid(unsafe_code)]

pub mod auth;
pub mod channel;
pub mod convert;
pub mod tls;
pub mod wire_error;

mod error;

pub use error::ProtoError;

/// Generated protobuf and gRPC code.
#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod pb {
    tonic::include_proto!("lockstep.v1");
}
