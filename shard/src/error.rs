//! The shard crate's error enum and its one mapping to a gRPC `Status`.

use lockstep_model::{Epoch, Handle, ModelError, ShardId};
use lockstep_proto::ProtoError;
use lockstep_proto::wire_error::{WireKind, epoch_status, kind_status, peer_status};
use tonic::{Code, Status};

/// Everything that can go wrong in a shard.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    Invalid(#[from] ProtoError),
    #[error("batch of {len} items exceeds the maximum of {max}")]
    BatchTooLarge { len: usize, max: usize },
    #[error("stale epoch {sent}: the current ring epoch is {current}")]
    WrongEpoch { sent: Epoch, current: Epoch },
    #[error("epoch {sent} is ahead of this shard's epoch {current}; retry")]
    EpochAhead { sent: Epoch, current: Epoch },
    #[error("{me} does not own {key} at epoch {epoch}{}", owner.map(|o| format!(" (owner: {o})")).unwrap_or_default())]
    NotOwner {
        me: ShardId,
        key: Handle,
        epoch: Epoch,
        owner: Option<ShardId>,
    },
    #[error(
        "atom {0} has a non-empty incoming set; delete recursively to remove it with its links"
    )]
    HasIncoming(Handle),
    #[error(
        "atom {0} is linked by a tick being committed; retry the delete once the tick has committed"
    )]
    LinkedByTick(Handle),
    #[error("data folder {path} is in use by another shard process (RocksDB lock held)")]
    Locked { path: String },
    #[error(
        "data folder belongs to cluster {stored}, but the coordinator runs cluster {coordinator}"
    )]
    WrongCluster { stored: String, coordinator: String },
    #[error("{what} exceeds {limit} = {max}")]
    OverLimit {
        what: String,
        limit: &'static str,
        max: u64,
    },
    #[error("{0}")]
    Import(String),
    #[error("disk full: {0}")]
    DiskFull(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("coordinator {addr} unreachable: {reason}")]
    Coordinator { addr: String, reason: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("peer shard {addr} did not take messages: {reason}")]
    Peer { addr: String, reason: String },
    #[error(
        "{me} is fenced: no heartbeat acknowledged by the coordinator for {silent_ms} ms, so it may no longer hold ring epoch {epoch}; it serves again once the coordinator answers"
    )]
    Fenced {
        me: ShardId,
        epoch: Epoch,
        silent_ms: u64,
    },
    #[error("shard is not registered yet")]
    NotReady,
    /// A write named a type the cluster has not given an id yet: the data
    /// path registers types before it writes, so this is a retry.
    #[error("atom type {0} has no cluster id on this shard yet; retry")]
    UnregisteredType(String),
    /// The job's setup phases have not run in this process: it restarted
    /// since they did. The driver aborts the tick and reruns the setup, so
    /// this must not read as the request's final answer.
    #[error("the {workload} setup has not run on this shard since it started; the job reruns it")]
    SetupMissing { workload: &'static str },
    /// A replica message for a group this process holds no replica of.
    #[error("this process holds no replica of group {0}")]
    NoSuchGroup(u32),
    /// A replica that stopped (a disk error) or is shutting down.
    #[error("replica of group {group} is not running: {reason}")]
    ReplicaDown { group: u32, reason: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Metrics(#[from] lockstep_telemetry::Error),
}

/// An invalid domain value in a request is an invalid request.
impl From<ModelError> for Error {
    fn from(e: ModelError) -> Error {
        Error::Invalid(ProtoError::Model(e))
    }
}

impl Error {
    /// Whether a client may retry the same request (possibly after
    /// refreshing its topology).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::WrongEpoch { .. }
                | Error::EpochAhead { .. }
                | Error::NotOwner { .. }
                | Error::NotReady
                | Error::UnregisteredType(_)
                | Error::SetupMissing { .. }
                | Error::Fenced { .. }
                | Error::Coordinator { .. }
                | Error::Peer { .. }
                | Error::LinkedByTick(_)
                | Error::ReplicaDown { .. }
        )
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let msg = e.to_string();
        match e {
            Error::Invalid(_)
            | Error::BatchTooLarge { .. }
            | Error::OverLimit { .. }
            | Error::Import(_) => Status::invalid_argument(msg),
            Error::DiskFull(_) => kind_status(WireKind::DiskFull, Code::ResourceExhausted, msg),
            Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => kind_status(
                WireKind::DiskFull,
                Code::ResourceExhausted,
                format!("disk full: {e}"),
            ),
            Error::WrongEpoch { current, .. } => epoch_status(WireKind::WrongEpoch, current, msg),
            Error::EpochAhead { current, .. } => epoch_status(WireKind::EpochAhead, current, msg),
            Error::NotOwner { epoch, .. } => epoch_status(WireKind::NotOwner, epoch, msg),
            Error::HasIncoming(_) => Status::failed_precondition(msg),
            Error::NoSuchGroup(_) => Status::not_found(msg),
            Error::ReplicaDown { .. } => Status::unavailable(msg),
            Error::Peer { addr, .. } => peer_status(&addr, msg),
            Error::NotReady
            | Error::UnregisteredType(_)
            | Error::SetupMissing { .. }
            | Error::Fenced { .. }
            | Error::Coordinator { .. }
            | Error::LinkedByTick(_) => Status::unavailable(msg),
            Error::Locked { .. }
            | Error::WrongCluster { .. }
            | Error::Storage(_)
            | Error::Config(_)
            | Error::Metrics(_)
            | Error::Io(_) => Status::internal(msg),
        }
    }
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Error {
        let msg = e.into_string();
        // RocksDB reports ENOSPC as an IO error whose text carries the
        // system's message; it is the one storage error an operator can
        // fix by hand, so it gets a kind of its own.
        if msg.contains("No space left on device") {
            Error::DiskFull(msg)
        } else {
            Error::Storage(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_setup_is_not_a_final_answer() {
        // The driver fails a job at once on INVALID_ARGUMENT; a shard that
        // restarted mid-job must instead get the setup rerun.
        let st = Status::from(Error::SetupMissing {
            workload: "attention",
        });
        assert_eq!(st.code(), Code::Unavailable);
        assert!(
            Error::SetupMissing {
                workload: "attention"
            }
            .retryable()
        );
    }
}
