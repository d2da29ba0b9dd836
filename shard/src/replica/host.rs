//! A replica group's Raft messages over gRPC, the receiving side: the
//! `Replication` service of a process, for every group it holds a replica
//! of.
//!
//! Bad input never reaches a replica's storage as something to trust:
//! - a message for a group this process does not hold is `NOT_FOUND`
//!   ([`Error::NoSuchGroup`]);
//! - one that does not decode is `INVALID_ARGUMENT`;
//! - a stale term is openraft's to refuse (the reply carries the higher
//!   vote, and nothing is written);
//! - a snapshot is collected whole, at most `max_snapshot_bytes`, and
//!   checked (checksum, families, files, the entries it claims) before
//!   openraft installs it; a garbage one is `INVALID_ARGUMENT` and changes
//!   nothing, where handing it to openraft would stop the replica.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use lockstep_proto::ProtoError;
use lockstep_proto::convert::raft::{
    append_request_from_pb, append_response_to_pb, snapshot_meta_from_pb, vote_from_pb,
    vote_request_from_pb, vote_response_to_pb, vote_to_pb,
};
use lockstep_proto::pb;
use lockstep_proto::pb::replication_server::Replication;
use openraft::Snapshot;
use parking_lot::RwLock;
use tonic::{Request, Response, Status, Streaming};

use super::{Replica, ReplicaRaft, machine};
use crate::Error;

/// The default bound on a snapshot one replica takes from another: a
/// snapshot is held in memory whole (see [`machine`]).
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// At most this much is set aside before a snapshot's chunks arrive.
const PREALLOCATE: usize = 64 << 20;

/// The groups a process holds replicas of.
pub struct ReplicaHost {
    groups: RwLock<HashMap<u32, ReplicaRaft>>,
    max_snapshot_bytes: u64,
}

impl ReplicaHost {
    pub fn new(max_snapshot_bytes: u64) -> Arc<ReplicaHost> {
        Arc::new(ReplicaHost {
            groups: RwLock::default(),
            max_snapshot_bytes,
        })
    }

    /// Serves `raft` as this process's replica of `group`.
    pub fn add(&self, group: u32, raft: ReplicaRaft) {
        self.groups.write().insert(group, raft);
    }

    /// Stops serving `group`; its messages are `NOT_FOUND` from now on.
    pub fn remove(&self, group: u32) -> Option<ReplicaRaft> {
        self.groups.write().remove(&group)
    }

    fn group(&self, group: u32) -> Result<ReplicaRaft, Error> {
        self.groups
            .read()
            .get(&group)
            .cloned()
            .ok_or(Error::NoSuchGroup(group))
    }

    /// The service over this host.
    pub fn service(self: &Arc<Self>) -> ReplicationService {
        ReplicationService { host: self.clone() }
    }
}

/// The `Replication` gRPC service.
pub struct ReplicationService {
    host: Arc<ReplicaHost>,
}

fn down(group: u32, e: impl std::fmt::Display) -> Error {
    Error::ReplicaDown {
        group,
        reason: e.to_string(),
    }
}

impl ReplicationService {
    async fn snapshot(
        &self,
        mut stream: Streaming<pb::RaftSnapshotChunk>,
    ) -> Result<pb::RaftSnapshotReply, Error> {
        let first = stream
            .message()
            .await
            .map_err(|st| Error::Invalid(ProtoError::BadParam(st.message().to_string())))?
            .ok_or(ProtoError::Missing("snapshot chunk"))?;
        let raft = self.host.group(first.group)?;
        let vote = vote_from_pb(first.vote.as_ref().ok_or(ProtoError::Missing("vote"))?);
        let meta_pb = first.meta.as_ref().ok_or(ProtoError::Missing("meta"))?;
        let meta = snapshot_meta_from_pb(meta_pb)?;
        let max = self.host.max_snapshot_bytes;
        if meta_pb.size > max {
            return Err(Error::OverLimit {
                what: format!("a snapshot of {} bytes", meta_pb.size),
                limit: "max_snapshot_bytes",
                max,
            });
        }
        // Never more than the sender announced, whatever it streams.
        let size = meta_pb.size as usize;
        // Grown as chunks arrive: an announced size is not yet data.
        let mut bytes = Vec::with_capacity(size.min(PREALLOCATE));
        let mut chunk = first.data;
        loop {
            if bytes.len() + chunk.len() > size {
                return Err(Error::Invalid(ProtoError::BadParam(format!(
                    "snapshot stream longer than its announced {size} bytes"
                ))));
            }
            bytes.extend_from_slice(&chunk);
            match stream
                .message()
                .await
                .map_err(|st| Error::Invalid(ProtoError::BadParam(st.message().to_string())))?
            {
                Some(c) => chunk = c.data,
                None => break,
            }
        }
        if bytes.len() != size {
            return Err(Error::Invalid(ProtoError::BadParam(format!(
                "snapshot stream of {} bytes, announced {size}",
                bytes.len()
            ))));
        }
        machine::check(&meta, &bytes)?;
        let resp = raft
            .install_full_snapshot(
                vote,
                Snapshot::<Replica> {
                    meta,
                    snapshot: Box::new(Cursor::new(bytes)),
                },
            )
            .await
            .map_err(|e| down(first.group, e))?;
        Ok(pb::RaftSnapshotReply {
            vote: Some(vote_to_pb(&resp.vote)),
        })
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftAppendRequest>,
    ) -> Result<Response<pb::RaftAppendResponse>, Status> {
        let (group, rpc) = append_request_from_pb(req.into_inner()).map_err(Error::from)?;
        let raft = self.host.group(group)?;
        let resp = raft.append_entries(rpc).await.map_err(|e| down(group, e))?;
        Ok(Response::new(append_response_to_pb(&resp)))
    }

    async fn vote(
        &self,
        req: Request<pb::RaftVoteRequest>,
    ) -> Result<Response<pb::RaftVoteResponse>, Status> {
        let (group, rpc) = vote_request_from_pb(&req.into_inner()).map_err(Error::from)?;
        let raft = self.host.group(group)?;
        let resp = raft.vote(rpc).await.map_err(|e| down(group, e))?;
        Ok(Response::new(vote_response_to_pb(&resp)))
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<pb::RaftSnapshotChunk>>,
    ) -> Result<Response<pb::RaftSnapshotReply>, Status> {
        Ok(Response::new(self.snapshot(req.into_inner()).await?))
    }
}
