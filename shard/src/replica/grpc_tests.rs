//! Replica groups over real gRPC servers on 127.0.0.1 (port 0), one
//! `ReplicaHost` per simulated process, and the bad input a replica
//! message can carry. Waits are openraft's metrics waits with deadlines.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use lockstep_proto::pb;
use lockstep_proto::pb::replication_client::ReplicationClient;
use lockstep_proto::pb::replication_server::ReplicationServer;
use lockstep_proto::tls::Security;
use openraft::BasicNode;
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;

use super::ReplicaRaft;
use super::host::ReplicaHost;
use super::log::LogStore;
use super::machine::{Machine, StoreCell};
use super::net::GrpcNetwork;
use super::tests::{WAIT, config, put_atoms, rows_of};
use crate::store::rocks::{RocksOptions, RocksStore};

const GROUP: u32 = 7;

/// One simulated process: a host serving its replica of the group.
struct Proc {
    raft: ReplicaRaft,
    store: StoreCell<Arc<RocksStore>>,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
}

async fn serve(
    host: Arc<ReplicaHost>,
    addr: SocketAddr,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ReplicationServer::new(host.service()))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (tx, served)
}

async fn start(id: u64, dir: &std::path::Path, addr: SocketAddr) -> Proc {
    let kv = Arc::new(RocksStore::open(dir, &RocksOptions::default()).unwrap());
    let log = LogStore::open(kv.clone()).unwrap();
    let sm = Machine::open(kv).unwrap();
    let store = sm.store();
    let net = GrpcNetwork::new(GROUP, Security::none());
    let raft = ReplicaRaft::new(id, config(25), net, log, sm)
        .await
        .unwrap();
    let host = ReplicaHost::new(super::host::DEFAULT_MAX_SNAPSHOT_BYTES);
    host.add(GROUP, raft.clone());
    let (stop, served) = serve(host, addr).await;
    Proc {
        raft,
        store,
        stop: Some(stop),
        served,
    }
}

impl Proc {
    /// What a kill leaves: no server, no replica; the folder stays.
    async fn kill(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.served.await;
        self.raft.shutdown().await.unwrap();
    }
}

fn free_addr() -> SocketAddr {
    // Bound and released: the replica's address is in the group's
    // membership, so a restarted process must come back on it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn leader_among(procs: &BTreeMap<u64, Proc>, why: &str) -> u64 {
    let ids: Vec<u64> = procs.keys().copied().collect();
    let m = procs[&ids[0]]
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.current_leader.is_some_and(|l| ids.contains(&l)),
            format!("a leader among {ids:?}: {why}"),
        )
        .await
        .unwrap();
    m.current_leader.unwrap()
}

async fn applied(p: &Proc, index: u64, who: u64) {
    p.raft
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), format!("process {who} applies {index}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_over_grpc_replicates_loses_its_leader_and_takes_it_back() {
    let dirs: BTreeMap<u64, tempfile::TempDir> = (1..=3)
        .map(|id| (id, tempfile::tempdir().unwrap()))
        .collect();
    let addrs: BTreeMap<u64, SocketAddr> = (1..=3).map(|id| (id, free_addr())).collect();
    let mut procs = BTreeMap::new();
    for id in 1..=3 {
        procs.insert(id, start(id, dirs[&id].path(), addrs[&id]).await);
    }
    let members: BTreeMap<u64, BasicNode> = addrs
        .iter()
        .map(|(id, a)| (*id, BasicNode::new(a.to_string())))
        .collect();
    procs[&1].raft.initialize(members).await.unwrap();

    let leader = leader_among(&procs, "after initialize").await;
    let index = put_atoms(&procs[&leader].raft, 0, 200).await;
    for (id, p) in &procs {
        applied(p, index, *id).await;
    }

    // The leader's process dies; the other two elect and serve, and past
    // the snapshot policy (25 entries) the log is compacted.
    procs.remove(&leader).unwrap().kill().await;
    let next = leader_among(&procs, "with the leader's process gone").await;
    let mut index = 0;
    for i in 0..40 {
        index = put_atoms(&procs[&next].raft, 1_000 + i * 5, 5).await;
    }
    for (id, p) in &procs {
        applied(p, index, *id).await;
    }

    // Back on its address, the old leader follows and catches up (from a
    // snapshot, if the log it needs is gone), holding the same rows.
    procs.insert(
        leader,
        start(leader, dirs[&leader].path(), addrs[&leader]).await,
    );
    applied(&procs[&leader], index, leader).await;
    assert!(
        procs[&leader].raft.metrics().borrow().snapshot.is_some(),
        "the returning replica caught up without the snapshot it needed"
    );
    let want = rows_of(&procs[&next].store);
    for (id, p) in &procs {
        assert_eq!(rows_of(&p.store), want, "process {id}");
    }
    assert_eq!(procs[&leader].store.get().counts().atoms(), 201 + 40 * 6);
    for (_, p) in procs {
        p.kill().await;
    }
}

async fn client(addr: SocketAddr) -> ReplicationClient<Channel> {
    let ch = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ReplicationClient::new(ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replica_messages_get_typed_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let p = start(1, dir.path(), addr).await;
    p.raft
        .initialize(BTreeMap::from([(1, BasicNode::new(addr.to_string()))]))
        .await
        .unwrap();
    p.raft
        .wait(Some(WAIT))
        .current_leader(1, "a group of one elects itself")
        .await
        .unwrap();
    put_atoms(&p.raft, 0, 10).await;
    let before = rows_of(&p.store);
    let log_before = p.raft.metrics().borrow().last_log_index;
    let term = p.raft.metrics().borrow().current_term;
    let mut c = client(addr).await;

    // A group this process does not hold.
    let st = c
        .vote(pb::RaftVoteRequest {
            group: 99,
            vote: Some(pb::RaftVote::default()),
            last_log_id: None,
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::NotFound, "{st:?}");
    assert!(st.message().contains("group 99"), "{st:?}");

    // A message that does not decode: an entry without its payload.
    let st = c
        .append_entries(pb::RaftAppendRequest {
            group: GROUP,
            vote: Some(pb::RaftVote {
                term: term + 5,
                node_id: 2,
                committed: true,
            }),
            entries: vec![pb::RaftEntry {
                log_id: Some(pb::RaftLogId {
                    term: term + 5,
                    node_id: 2,
                    index: 1_000,
                }),
                payload: None,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");

    // A stale term: refused with the current vote, nothing appended.
    let reply = c
        .append_entries(pb::RaftAppendRequest {
            group: GROUP,
            vote: Some(pb::RaftVote {
                term: 0,
                node_id: 2,
                committed: true,
            }),
            prev_log_id: None,
            entries: vec![pb::RaftEntry {
                log_id: Some(pb::RaftLogId {
                    term: 0,
                    node_id: 2,
                    index: 1,
                }),
                payload: Some(pb::raft_entry::Payload::Blank(pb::RaftBlank {})),
            }],
            leader_commit: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.result, 3, "a stale leader must see the higher vote");
    assert!(reply.vote.is_some_and(|v| v.term >= term));

    // Snapshots: garbage, over the limit, longer than announced.
    let meta = |size: u64| pb::RaftSnapshotMeta {
        last_log_id: Some(pb::RaftLogId {
            term: term + 5,
            node_id: 2,
            index: 5_000,
        }),
        membership: None,
        snapshot_id: "x".into(),
        file: String::new(),
        size,
    };
    let chunk = |size: u64, data: &[u8]| pb::RaftSnapshotChunk {
        group: GROUP,
        vote: Some(pb::RaftVote {
            term: term + 5,
            node_id: 2,
            committed: true,
        }),
        meta: Some(meta(size)),
        data: data.to_vec(),
    };
    for (chunks, why) in [
        (vec![chunk(7, b"garbage")], "garbage"),
        (vec![chunk(1 << 40, b"")], "over max_snapshot_bytes"),
        (
            vec![
                chunk(4, b"abcd"),
                pb::RaftSnapshotChunk {
                    data: b"more".to_vec(),
                    ..Default::default()
                },
            ],
            "longer than announced",
        ),
        (vec![chunk(10, b"short")], "shorter than announced"),
    ] {
        let st = c
            .install_snapshot(futures::stream::iter(chunks))
            .await
            .unwrap_err();
        assert_eq!(st.code(), Code::InvalidArgument, "{why}: {st:?}");
    }

    // Nothing changed, and the replica still serves.
    assert_eq!(rows_of(&p.store), before);
    assert_eq!(p.raft.metrics().borrow().last_log_index, log_before);
    put_atoms(&p.raft, 100, 3).await;
    p.kill().await;
}
