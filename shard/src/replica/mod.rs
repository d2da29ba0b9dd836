//! A shard's data as a replica group on openraft (issue 21, first step).
//!
//! A ring member (a shard id) becomes a Raft group of R replicas, each in
//! its own key-value store. This module is that group's storage side:
//! - [`log::LogStore`]: openraft's log storage (entries, vote, committed and
//!   purged ids) in the store's `raft` column family, every append and vote
//!   synced to disk before openraft hears it is durable;
//! - [`machine::Machine`]: the state machine, an [`AtomStore`] to which
//!   every replica applies the log's [`ReplicaCommand`]s in order, with the
//!   last applied id written in the same atomic write as the data; and its
//!   snapshots, which carry the data families and the STI column.
//!
//! - [`net::GrpcNetwork`] and [`host::ReplicaHost`]: the group's messages
//!   over gRPC (the `Replication` service), with the cluster's TLS and
//!   token, every message naming its group.
//!
//! Both storage halves pass openraft's storage suite on the in-memory store
//! and on RocksDB. In the tests a group of three runs in-process over a
//! fake network (election, replication, failover, catch-up from the log and
//! from a snapshot, restart) and over real gRPC servers on 127.0.0.1.
//! Placing groups on shard processes, routing writes to a group's leader
//! and running ticks through its log come next (issue 21's note).
//!
//! # Keys of the `raft` family
//! - `l` ++ index (u64 BE) -> an entry ([`lockstep_proto::convert::encode_entry`]);
//! - `m/vote`, `m/committed`, `m/purged`: the log store's;
//! - `m/applied`, `m/membership`, `m/snapshot`, `m/installing`: the state
//!   machine's.
//!
//! [`AtomStore`]: crate::atoms::AtomStore

pub mod host;
pub mod log;
pub mod machine;
pub mod net;

#[cfg(test)]
mod grpc_tests;
#[cfg(test)]
mod tests;

use std::io::Cursor;

use lockstep_model::ReplicaCommand;
use openraft::{AnyError, BasicNode, StorageError, StorageIOError};

use crate::atoms::PutOutcome;

openraft::declare_raft_types!(
    /// The types of a shard's replica group.
    pub Replica:
        D = ReplicaCommand,
        R = Applied,
        NodeId = u64,
        Node = BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A running replica of a group.
pub type ReplicaRaft = openraft::Raft<Replica>;

/// What applying one log entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A put, with what it created and updated.
    Put(PutOutcome),
    /// An entry that writes no data (a leader's blank entry, a membership).
    Nothing,
    /// A command every replica refuses alike (say, an atom of a type the
    /// group has no id for): the log moves on and the proposer gets the
    /// reason. Disk errors are not refusals: they stop the replica.
    Refused(String),
}

/// A storage error as openraft takes it: fatal to the replica, which stops
/// rather than diverge from its group.
pub(crate) fn read_err(e: &crate::Error) -> StorageError<u64> {
    StorageIOError::read(AnyError::new(e)).into()
}

pub(crate) fn write_err(e: &crate::Error) -> StorageError<u64> {
    StorageIOError::write(AnyError::new(e)).into()
}
