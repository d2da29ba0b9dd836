//! The replica storage against openraft's storage suite, and groups of
//! three run in-process over a fake network that can cut nodes off.
//!
//! Every wait is openraft's metrics wait with a deadline and a message
//! naming what it waited for; nothing sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use lockstep_model::{AtomType, FlatAtom, ReplicaCommand};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{BasicNode, Config, RaftNetwork, RaftNetworkFactory, StorageError};
use parking_lot::Mutex;

use super::log::LogStore;
use super::machine::Machine;
use super::{Applied, Replica, ReplicaRaft};
use crate::atoms::AtomRead;
use crate::store::mem::MemStore;
use crate::store::rocks::{RocksOptions, RocksStore};
use crate::store::{Cf, KvRead};

/// Long enough for an election on a loaded 2-core CI machine; every wait
/// fails with its message well before a test's own limit.
pub(super) const WAIT: Duration = Duration::from_secs(20);

struct MemBuilder;

impl StoreBuilder<Replica, LogStore<Arc<MemStore>>, Machine<Arc<MemStore>>> for MemBuilder {
    async fn build(
        &self,
    ) -> Result<((), LogStore<Arc<MemStore>>, Machine<Arc<MemStore>>), StorageError<u64>> {
        let kv = Arc::new(MemStore::default());
        let log = LogStore::open(kv.clone()).map_err(|e| super::read_err(&e))?;
        let sm = Machine::open(kv).map_err(|e| super::read_err(&e))?;
        Ok(((), log, sm))
    }
}

struct RocksBuilder;

impl StoreBuilder<Replica, LogStore<Arc<RocksStore>>, Machine<Arc<RocksStore>>, tempfile::TempDir>
    for RocksBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<Arc<RocksStore>>,
            Machine<Arc<RocksStore>>,
        ),
        StorageError<u64>,
    > {
        let dir = tempfile::tempdir().map_err(|e| super::write_err(&e.into()))?;
        let kv = Arc::new(
            RocksStore::open(dir.path(), &RocksOptions::default())
                .map_err(|e| super::write_err(&e))?,
        );
        let log = LogStore::open(kv.clone()).map_err(|e| super::read_err(&e))?;
        let sm = Machine::open(kv).map_err(|e| super::read_err(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn the_memory_store_passes_openrafts_storage_suite() {
    Suite::test_all(MemBuilder).unwrap();
}

#[test]
fn rocksdb_passes_openrafts_storage_suite() {
    Suite::test_all(RocksBuilder).unwrap();
}

// ---- A fake network: direct calls, with nodes that can be cut off ----

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<u64, ReplicaRaft>>>,
    cut: Arc<Mutex<BTreeSet<u64>>>,
}

impl Router {
    fn reach(&self, from: u64, to: u64) -> Result<ReplicaRaft, Unreachable> {
        let cut = self.cut.lock();
        let gone = || std::io::Error::other(format!("node {from} cannot reach {to}"));
        if cut.contains(&from) || cut.contains(&to) {
            return Err(Unreachable::new(&gone()));
        }
        self.nodes
            .lock()
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::new(&gone()))
    }
}

struct NodeNet {
    id: u64,
    router: Router,
}

struct Conn {
    from: u64,
    to: u64,
    router: Router,
}

impl RaftNetworkFactory<Replica> for NodeNet {
    type Network = Conn;
    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Conn {
        Conn {
            from: self.id,
            to: target,
            router: self.router.clone(),
        }
    }
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl RaftNetwork<Replica> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Replica>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>> {
        let to = self.router.reach(self.from, self.to)?;
        to.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Replica>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let to = self.router.reach(self.from, self.to)?;
        to.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, _option: RPCOption) -> Rpc<VoteResponse<u64>> {
        let to = self.router.reach(self.from, self.to)?;
        to.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }
}

/// A replica: its Raft handle, its folder and its store.
struct Node {
    raft: ReplicaRaft,
    store: super::machine::StoreCell<Arc<RocksStore>>,
}

struct Group {
    router: Router,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    nodes: BTreeMap<u64, Node>,
    config: Arc<Config>,
}

pub(super) fn config(snapshot_after: u64) -> Arc<Config> {
    Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_after),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

impl Group {
    async fn new(n: u64, config: Arc<Config>) -> Group {
        let mut g = Group {
            router: Router::default(),
            dirs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            config,
        };
        for id in 1..=n {
            g.dirs.insert(id, tempfile::tempdir().unwrap());
            g.start(id).await;
        }
        let members: BTreeMap<u64, BasicNode> = (1..=n)
            .map(|id| (id, BasicNode::new(format!("node-{id}"))))
            .collect();
        g.nodes[&1].raft.initialize(members).await.unwrap();
        g
    }

    /// Starts (or restarts) replica `id` on its folder.
    async fn start(&mut self, id: u64) {
        let kv =
            Arc::new(RocksStore::open(self.dirs[&id].path(), &RocksOptions::default()).unwrap());
        let log = LogStore::open(kv.clone()).unwrap();
        let sm = Machine::open(kv).unwrap();
        let store = sm.store();
        let net = NodeNet {
            id,
            router: self.router.clone(),
        };
        let raft = ReplicaRaft::new(id, self.config.clone(), net, log, sm)
            .await
            .unwrap();
        self.router.nodes.lock().insert(id, raft.clone());
        self.nodes.insert(id, Node { raft, store });
    }

    /// Stops replica `id` as a crash would leave it: its store is closed,
    /// and what it synced is what it has.
    async fn stop(&mut self, id: u64) {
        self.router.nodes.lock().remove(&id);
        if let Some(n) = self.nodes.remove(&id) {
            n.raft.shutdown().await.unwrap();
        }
    }

    async fn leader(&self, among: &[u64], why: &str) -> u64 {
        let probe = &self.nodes[&among[0]].raft;
        let m = probe
            .wait(Some(WAIT))
            .metrics(
                |m| m.current_leader.is_some_and(|l| among.contains(&l)),
                format!("a leader among {among:?}: {why}"),
            )
            .await
            .unwrap();
        m.current_leader.unwrap()
    }

    async fn put(&self, leader: u64, first: usize, n: usize) -> u64 {
        put_atoms(&self.nodes[&leader].raft, first, n).await
    }

    async fn applied(&self, ids: &[u64], index: u64) {
        for id in ids {
            self.nodes[id]
                .raft
                .wait(Some(WAIT))
                .applied_index_at_least(Some(index), format!("node {id} applies {index}"))
                .await
                .unwrap();
        }
    }

    /// Every row of the data families of replica `id`.
    fn rows(&self, id: u64) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
        rows_of(&self.nodes[&id].store)
    }
}

/// Proposes a put of `n` new ConceptNodes and a link between two of them
/// through `leader`; returns its log index once applied there.
pub(super) async fn put_atoms(leader: &ReplicaRaft, first: usize, n: usize) -> u64 {
    let c = AtomType::by_name("ConceptNode").unwrap();
    let l = AtomType::by_name("ListLink").unwrap();
    let mut atoms: Vec<FlatAtom> = (first..first + n)
        .map(|i| FlatAtom::new(c, format!("a{i}"), vec![]).unwrap())
        .collect();
    let link = FlatAtom::new(l, String::new(), vec![atoms[0].handle, atoms[n - 1].handle]).unwrap();
    let incoming = link.incoming_refs();
    atoms.push(link);
    let resp = leader
        .client_write(ReplicaCommand::Put { atoms, incoming })
        .await
        .unwrap();
    match resp.data {
        Applied::Put(o) => assert_eq!(o.created, n as u64 + 1),
        other => panic!("a put applied as {other:?}"),
    }
    resp.log_id.index
}

/// Every row of the data families of a replica's store.
pub(super) fn rows_of<S: crate::store::KvStore>(
    store: &super::machine::StoreCell<S>,
) -> Vec<(Cf, Vec<u8>, Vec<u8>)> {
    let store = store.get();
    let view = store.view();
    let kv = view.reader();
    let mut out = Vec::new();
    for cf in [Cf::Atoms, Cf::Incoming, Cf::Meta] {
        for (k, v) in kv.scan(cf, b"", None, usize::MAX).unwrap() {
            out.push((cf, k, v));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_three_replicates_fails_over_and_catches_up_from_the_log() {
    let mut g = Group::new(3, config(10_000)).await;
    let leader = g.leader(&[1, 2, 3], "after initialize").await;
    let index = g.put(leader, 0, 100).await;
    g.applied(&[1, 2, 3], index).await;
    for id in [1, 2, 3] {
        assert_eq!(g.nodes[&id].store.get().counts().atoms(), 101, "node {id}");
    }

    // The leader is cut off: the other two elect one of themselves and
    // go on; the cut-off one cannot commit anything alone.
    g.router.cut.lock().insert(leader);
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|&i| i != leader).collect();
    let next = g.leader(&rest, "with the old leader cut off").await;
    assert_ne!(next, leader);
    let index = g.put(next, 100, 50).await;
    g.applied(&rest, index).await;
    let stale = g.nodes[&leader].raft.metrics().borrow().last_applied;
    assert!(
        stale.is_none_or(|l| l.index < index),
        "a cut-off node applied {stale:?}"
    );

    // Healed, it follows, catches up from the log and holds the same rows.
    g.router.cut.lock().clear();
    g.applied(&[leader], index).await;
    let want = g.rows(next);
    for id in [1, 2, 3] {
        assert_eq!(g.rows(id), want, "node {id} differs from the leader");
    }

    // Restarted from its folder, a replica has what it had and rejoins.
    g.stop(rest[0]).await;
    let index = g
        .put(
            g.leader(&[leader, rest[1]], "with one replica down").await,
            150,
            10,
        )
        .await;
    g.start(rest[0]).await;
    g.applied(&[rest[0]], index).await;
    assert_eq!(g.rows(rest[0]), g.rows(leader));
    for n in g.nodes.values() {
        n.raft.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_a_compacted_log_catches_up_from_a_snapshot() {
    let mut g = Group::new(3, config(20)).await;
    let leader = g.leader(&[1, 2, 3], "after initialize").await;
    let behind = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    g.stop(behind).await;
    let mut index = 0;
    for i in 0..40 {
        index = g.put(leader, i * 10, 10).await;
    }
    // The leader snapshots and purges past what `behind` holds.
    let raft = &g.nodes[&leader].raft;
    raft.trigger().snapshot().await.unwrap();
    raft.wait(Some(WAIT))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= index),
            "a snapshot of every put",
        )
        .await
        .unwrap();
    raft.wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= index),
            "the log purged up to the snapshot",
        )
        .await
        .unwrap();
    g.start(behind).await;
    g.applied(&[behind], index).await;
    let snap = g.nodes[&behind].raft.metrics().borrow().snapshot;
    assert!(snap.is_some(), "caught up without a snapshot");
    assert_eq!(g.rows(behind), g.rows(leader));
    assert_eq!(g.nodes[&behind].store.get().counts().atoms(), 40 * 11);

    // The installed state is what a restart opens.
    g.stop(behind).await;
    g.start(behind).await;
    g.applied(&[behind], index).await;
    assert_eq!(g.rows(behind), g.rows(leader));
    for n in g.nodes.values() {
        n.raft.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_garbage_or_mismatched_snapshot_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Arc::new(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
    let mut sm = Machine::open(kv.clone()).unwrap();
    let c = AtomType::by_name("ConceptNode").unwrap();
    let a = FlatAtom::new(c, "kept".into(), vec![]).unwrap();
    sm.store().get().put(std::slice::from_ref(&a), &[]).unwrap();
    let before: Vec<_> = kv.scan(Cf::Atoms, b"", None, usize::MAX).unwrap();

    // A real snapshot of this store, to corrupt.
    let mut builder = sm.get_snapshot_builder().await;
    let snap = openraft::RaftSnapshotBuilder::build_snapshot(&mut builder)
        .await
        .unwrap();
    let good = snap.snapshot.into_inner();
    let meta = snap.meta;
    let mut flipped = good.clone();
    flipped[0] ^= 1;
    let mut wrong_meta = meta.clone();
    wrong_meta.last_log_id = Some(openraft::LogId::new(
        openraft::CommittedLeaderId::new(9, 9),
        99,
    ));
    for (meta, bytes) in [
        (&meta, b"garbage".to_vec()),
        (&meta, Vec::new()),
        (&meta, flipped),
        (&meta, good[..good.len() / 2].to_vec()),
        (&wrong_meta, good.clone()),
    ] {
        let err = sm
            .install_snapshot(meta, Box::new(std::io::Cursor::new(bytes)))
            .await;
        assert!(err.is_err());
        assert_eq!(kv.scan(Cf::Atoms, b"", None, usize::MAX).unwrap(), before);
        assert!(sm.store().get().get(&[a.handle]).unwrap()[0].is_some());
    }
    // The good one installs.
    sm.install_snapshot(&meta, Box::new(std::io::Cursor::new(good)))
        .await
        .unwrap();
    assert_eq!(kv.scan(Cf::Atoms, b"", None, usize::MAX).unwrap(), before);
}
