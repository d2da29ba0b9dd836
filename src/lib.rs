//! The `lockstep` command line: its commands, and the local-cluster
//! supervisor behind `lockstep up` and the tests.
//!
//! # Layout
//! - [`client`]: the `lockstep-client` crate, re-exported.
//! - [`cluster`]: a local cluster of child processes (`lockstep up`, tests).
//! - [`certs`]: a cluster's TLS material and token (`lockstep certs`,
//!   `lockstep up --secure`).
//! - [`cli`]: the flags and arguments of every command.
//! - [`config`]: the servers' layered configuration (file, environment,
//!   flags) and where each value came from (`lockstep config show`).
//! - [`commands`]: what each command does.
//!
//! The benchmark harness behind `lockstep bench` is the `lockstep-bench`
//! crate (`benches/`); [`cluster::Launcher`] starts its clusters.
//! The servers live in the `lockstep-coordinator` and `lockstep-shard`
//! crates, the client library in `lockstep-client`, the ring in
//! `lockstep-hashing`, the domain model in `lockstep-model` and the wire
//! format in `lockstep-proto`.

pub mod certs;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod human;
pub mod progress;

mod error;

pub use error::Error;
pub use lockstep_client as client;
pub use lockstep_client::{BulkLoad, Client, ClientOptions, PutStats};
pub use lockstep_model as model;
pub use lockstep_model::input;
pub use lockstep_proto as proto;
