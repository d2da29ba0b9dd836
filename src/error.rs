//! The client library's error enum: one readable line per failure.

use std::path::PathBuf;

use lockstep_proto::ProtoError;

/// Everything the client library and CLI commands can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("coordinator {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr}: {message} ({code:?})")]
    Rpc {
        addr: String,
        code: tonic::Code,
        message: String,
    },
    #[error("{addr} is not healthy: {reason}")]
    Unhealthy { addr: String, reason: String },
    #[error("the cluster has no shards in its ring yet")]
    NoShards,
    #[error(
        "{shard} at {addr} is Down{}{}",
        silent_ms.map(|ms| format!(" (no heartbeat for {:.1} s)", ms as f64 / 1000.0)).unwrap_or_default(),
        if *attempts > 0 { format!("; gave up after {attempts} attempts") } else { String::new() }
    )]
    ShardDown {
        shard: lockstep_proto::ShardId,
        addr: String,
        silent_ms: Option<u64>,
        attempts: u32,
    },
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: u32, last: String },
    #[error(transparent)]
    File(#[from] lockstep_proto::input::FileError),
    #[error("invalid atom: {0}")]
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
    #[error("local cluster: {0}")]
    Cluster(String),
    #[error("shard: {0}")]
    Shard(#[from] lockstep_shard::Error),
    #[error("coordinator: {0}")]
    Coordinator(#[from] lockstep_coordinator::Error),
}

impl Error {
    /// Whether the operation may succeed if tried again.
    pub fn retryable(&self) -> bool {
        match self {
            // Cancelled is what a request that ran past the client's
            // request timeout ends with.
            Error::Rpc { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
            ),
            Error::Unreachable { .. } | Error::NoShards | Error::ShardDown { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn rpc(addr: &str, st: &tonic::Status) -> Error {
        Error::Rpc {
            addr: addr.to_string(),
            code: st.code(),
            message: st.message().to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
