//! The benchmark harness behind `lockstep bench`: every figure beside a
//! baseline measured in the same run.
//!
//! # Layout
//! - [`ring`]: placement (`bench ring`): balance and keys moved, for
//!   Lockstep's ring against the phago-style ring and jump hash.
//! - [`cluster`]: end-to-end (`bench ingest|ticks|attention`) against real
//!   processes, with the raw-RocksDB, raw-fan-out and single-process
//!   baselines, and CPU pinning.
//!
//! It starts clusters through [`Launcher`], which the `lockstep` binary
//! implements with its local-cluster supervisor, so the harness needs
//! neither the binary nor the supervisor.

pub mod cluster;
pub mod ring;

mod error;

use std::path::Path;

use futures::future::BoxFuture;

pub use error::Error;

/// Starts clusters of real processes for a benchmark.
pub trait Launcher: Sync {
    /// A fresh cluster of `shards` shard processes with its data under
    /// `dir`, every shard Up.
    fn start<'a>(
        &'a self,
        shards: usize,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<Box<dyn Running>, Error>>;
}

/// A cluster a [`Launcher`] started.
pub trait Running: Send {
    fn coordinator_addr(&self) -> &str;
    /// Each shard process's pid, in process order.
    fn shard_pids(&self) -> Vec<Option<u32>>;
    /// Stops every process.
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()>;
}
