//! The coordinator's error enum and its one mapping to a gRPC `Status`.

use lockstep_model::ShardId;
use tonic::Status;

/// Everything that can go wrong in the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shard belongs to cluster {sent}, but this coordinator runs cluster {ours}")]
    WrongCluster { sent: String, ours: String },
    #[error("{0} is not registered with this coordinator")]
    UnknownShard(ShardId),
    #[error(
        "{0} owns part of the ring and the cluster holds data; it cannot be removed until data moves exist"
    )]
    OwnsData(ShardId),
    #[error("shard at {address} cannot be reached: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("busy: job {0} is running")]
    Busy(u64),
    #[error("no job {0}")]
    UnknownJob(u64),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot persist the registry at {path}: {reason}")]
    Persist { path: String, reason: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Metrics(#[from] lockstep_telemetry::Error),
    #[error("server failed: {0}")]
    Serve(String),
}

impl Error {
    /// Whether the caller may retry the same request.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::Persist { .. } | Error::Io(_) | Error::Unreachable { .. }
        )
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let msg = e.to_string();
        match e {
            Error::WrongCluster { .. } | Error::OwnsData(_) => Status::failed_precondition(msg),
            Error::Unreachable { .. } => Status::unavailable(msg),
            Error::UnknownShard(_) | Error::UnknownJob(_) => Status::not_found(msg),
            Error::Busy(_) => Status::resource_exhausted(msg),
            Error::Invalid(_) => Status::invalid_argument(msg),
            Error::Persist { .. } | Error::Io(_) => Status::unavailable(msg),
            Error::Config(_) | Error::Serve(_) | Error::Metrics(_) => Status::internal(msg),
        }
    }
}
