//! The CLI's error enum: one readable line per failure.

use std::path::PathBuf;

use lockstep_proto::ProtoError;

/// Everything a `lockstep` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] lockstep_client::Error),
    #[error("{addr} is not healthy: {reason}")]
    Unhealthy { addr: String, reason: String },
    #[error(transparent)]
    File(#[from] lockstep_model::input::FileError),
    #[error("invalid atom: {0}")]
    Model(#[from] lockstep_model::ModelError),
    #[error("{0}")]
    Invalid(#[from] ProtoError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("job {job_id}: {message}")]
    Job { job_id: u64, message: String },
    #[error(transparent)]
    Bench(#[from] lockstep_bench::Error),
    #[error("local cluster: {0}")]
    Cluster(String),
    #[error("shard: {0}")]
    Shard(#[from] lockstep_shard::Error),
    #[error("coordinator: {0}")]
    Coordinator(#[from] lockstep_coordinator::Error),
}

impl Error {
    /// Whether the command may succeed if run again.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Client(e) => e.retryable(),
            Error::Bench(e) => e.retryable(),
            Error::Shard(e) => e.retryable(),
            Error::Coordinator(e) => e.retryable(),
            _ => false,
        }
    }

    pub(crate) fn rpc(addr: &str, st: &tonic::Status) -> Error {
        Error::Client(lockstep_client::Error::rpc(addr, st))
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
