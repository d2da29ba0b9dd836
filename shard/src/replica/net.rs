//! A replica group's Raft messages over gRPC, the sending side: openraft's
//! network for one group, dialling the other replicas with the cluster's
//! TLS and token ([`Security`]). A snapshot goes as one client stream of
//! chunks, which the receiver checks whole before openraft installs it
//! (see [`super::host`]).

use std::collections::HashMap;
use std::future::Future;
use std::io::Cursor;
use std::sync::Arc;

use lockstep_proto::auth::Authed;
use lockstep_proto::channel::ChannelOptions;
use lockstep_proto::convert::raft::{
    append_request_to_pb, append_response_from_pb, snapshot_meta_to_pb, vote_from_pb,
    vote_request_to_pb, vote_response_from_pb, vote_to_pb,
};
use lockstep_proto::pb;
use lockstep_proto::pb::replication_client::ReplicationClient;
use lockstep_proto::tls::Security;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetwork, RaftNetworkFactory, Snapshot, Vote};
use parking_lot::Mutex;
use tonic::Code;

use super::Replica;

/// Bytes of snapshot per streamed message.
const CHUNK: usize = 1 << 20;

/// The network of one group on one process: a client per peer address,
/// shared by the group's replication streams.
#[derive(Clone)]
pub struct GrpcNetwork {
    group: u32,
    security: Security,
    clients: Arc<Mutex<HashMap<String, ReplicationClient<Authed>>>>,
}

impl GrpcNetwork {
    pub fn new(group: u32, security: Security) -> GrpcNetwork {
        GrpcNetwork {
            group,
            security,
            clients: Arc::default(),
        }
    }

    fn client(&self, addr: &str) -> Result<ReplicationClient<Authed>, Unreachable> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let ch = self
            .security
            .channel(addr, &ChannelOptions::PEER)
            .map_err(|e| Unreachable::new(&e))?;
        let c = self.security.replication_client(ch);
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }
}

/// The connection to one peer replica.
pub struct Conn {
    group: u32,
    client: Result<ReplicationClient<Authed>, Unreachable>,
}

impl RaftNetworkFactory<Replica> for GrpcNetwork {
    type Network = Conn;

    async fn new_client(&mut self, _target: u64, node: &BasicNode) -> Conn {
        Conn {
            group: self.group,
            client: self.client(&node.addr),
        }
    }
}

/// A peer that is down, cut off or does not hold the group is unreachable
/// (openraft backs off); anything else is a network error (it retries).
fn transport<E: std::error::Error>(st: tonic::Status) -> RPCError<u64, BasicNode, E> {
    match st.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::NotFound => {
            RPCError::Unreachable(Unreachable::new(&st))
        }
        _ => RPCError::Network(NetworkError::new(&st)),
    }
}

fn bad_reply<E: std::error::Error>(e: lockstep_proto::ProtoError) -> RPCError<u64, BasicNode, E> {
    RPCError::Network(NetworkError::new(&e))
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl Conn {
    /// The peer's client, or why there is none (an address that does not
    /// parse): unreachable, which `?` turns into openraft's error.
    fn client(&self) -> Result<ReplicationClient<Authed>, Unreachable> {
        self.client.clone().map_err(|e| Unreachable::new(&e))
    }
}

impl RaftNetwork<Replica> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Replica>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>> {
        let reply = self
            .client()?
            .append_entries(append_request_to_pb(self.group, &rpc))
            .await
            .map_err(transport)?;
        append_response_from_pb(&reply.into_inner()).map_err(bad_reply)
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, _option: RPCOption) -> Rpc<VoteResponse<u64>> {
        let reply = self
            .client()?
            .vote(vote_request_to_pb(self.group, &rpc))
            .await
            .map_err(transport)?;
        vote_response_from_pb(&reply.into_inner()).map_err(bad_reply)
    }

    /// Unused: snapshots go whole through [`Conn::full_snapshot`].
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<Replica>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let e = std::io::Error::other("snapshots are sent whole, not in chunked requests");
        Err(RPCError::Network(NetworkError::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<Replica>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<Replica, Fatal<u64>>> {
        let unreachable = |e: Unreachable| StreamingError::Unreachable(e);
        let mut client = self.client.clone().map_err(unreachable)?;
        let bytes = Cursor::into_inner(*snapshot.snapshot);
        let meta = snapshot_meta_to_pb(&snapshot.meta, String::new(), bytes.len() as u64);
        let group = self.group;
        let mut chunks: Vec<pb::RaftSnapshotChunk> = bytes
            .chunks(CHUNK)
            .map(|c| pb::RaftSnapshotChunk {
                data: c.to_vec(),
                ..Default::default()
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(pb::RaftSnapshotChunk::default());
        }
        chunks[0].group = group;
        chunks[0].vote = Some(vote_to_pb(&vote));
        chunks[0].meta = Some(meta);
        let send = client.install_snapshot(futures::stream::iter(chunks));
        let reply = tokio::select! {
            r = send => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let reply = reply.map_err(|st| match transport::<Fatal<u64>>(st) {
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            RPCError::Network(n) => StreamingError::Network(n),
            other => StreamingError::Network(NetworkError::new(&other)),
        })?;
        let Some(vote) = reply.into_inner().vote else {
            let e = lockstep_proto::ProtoError::Missing("vote");
            return Err(StreamingError::Network(NetworkError::new(&e)));
        };
        Ok(SnapshotResponse::new(vote_from_pb(&vote)))
    }
}
