//! The harness's error type.

/// What can end a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] lockstep_client::Error),
    #[error(transparent)]
    Proto(#[from] lockstep_proto::ProtoError),
    /// The in-process shard-store baseline.
    #[error(transparent)]
    Store(#[from] lockstep_shard::Error),
    #[error("job {job_id}: {message}")]
    Job { job_id: u64, message: String },
    /// Starting, reaching or measuring the cluster.
    #[error("benchmark cluster: {0}")]
    Cluster(String),
    #[error("invalid benchmark configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn rpc(addr: &str, st: &tonic::Status) -> Error {
        Error::Client(lockstep_client::Error::rpc(addr, st))
    }

    /// Whether running the same benchmark again may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Client(e) => e.retryable(),
            _ => false,
        }
    }
}
