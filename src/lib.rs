//! Lockstep's client library and command line.
//!
//! # Layout
//! - [`client`]: [`Client`], which caches the topology and routes batches
//!   straight to the owning shards.
//! - [`cluster`]: a local cluster of child processes (`lockstep up`, tests).
//! - [`bench`]: `lockstep bench ring`, placement measurements.
//! - [`bench_cluster`]: `lockstep bench ingest|ticks`, end-to-end
//!   measurements against real processes.
//! - [`certs`]: a cluster's TLS material and token (`lockstep certs`,
//!   `lockstep up --secure`).
//! - [`cli`]: flags and the layered configuration they produce.
//! - [`commands`]: what each command does.
//!
//! The servers live in the `lockstep-coordinator` and `lockstep-shard`
//! crates, the ring in `lockstep-hashing`, the wire format and atom model in
//! `lockstep-proto`.

pub mod bench;
pub mod bench_cluster;
pub mod certs;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;

mod error;

pub use client::{BulkLoad, Client, ClientOptions, PutStats};
pub use error::Error;
pub use lockstep_proto as proto;
pub use lockstep_proto::input;
