//! The client library's error enum: one readable line per failure, and
//! whether trying again may help.

use lockstep_model::{ModelError, ShardId};
use lockstep_proto::ProtoError;

/// Everything a call through [`crate::Client`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("coordinator {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr}: {message}")]
    Rpc {
        addr: String,
        code: tonic::Code,
        message: String,
    },
    #[error("the cluster has no shards in its ring yet")]
    NoShards,
    #[error(
        "{shard} at {addr} is Down{}{}",
        silent_ms.map(|ms| format!(" (no heartbeat for {:.1} s)", ms as f64 / 1000.0)).unwrap_or_default(),
        if *attempts > 0 { format!("; gave up after {attempts} attempts") } else { String::new() }
    )]
    ShardDown {
        shard: ShardId,
        addr: String,
        silent_ms: Option<u64>,
        attempts: u32,
    },
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: u32, last: String },
    #[error("invalid atom: {0}")]
    Model(#[from] ModelError),
    #[error("invalid message: {0}")]
    Invalid(#[from] ProtoError),
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A stored link names an atom the cluster does not hold.
    #[error("link {link} contains {missing}, which the cluster does not hold")]
    Dangling {
        link: lockstep_model::Handle,
        missing: lockstep_model::Handle,
    },
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

    /// The error a gRPC status from `addr` stands for.
    pub fn rpc(addr: &str, st: &tonic::Status) -> Error {
        Error::Rpc {
            addr: addr.to_string(),
            code: st.code(),
            message: st.message().to_string(),
        }
    }
}
