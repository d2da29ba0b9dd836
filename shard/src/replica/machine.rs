//! openraft's state machine: an atom store that every replica of a group
//! brings to the same state by applying the log's commands in order.
//!
//! # What is atomic
//! A put's data and the applied id move together in one key-value write,
//! so after a crash the store is exactly the state after its applied entry
//! and openraft re-applies from the next one. Registering types is
//! idempotent, so it is applied first and its id written after.
//!
//! # Snapshots
//! A snapshot is every row of the data families (atoms, incoming, meta)
//! and the committed STI buffer, read from one key-value snapshot and one
//! held view (so a tick cannot overwrite that buffer meanwhile), encoded as
//! a `ReplicaSnapshot` message with an xxh3 trailer. The current one is kept
//! as a side file. Installing one checks it whole before changing
//! anything: a garbage or mismatched snapshot is an error and the store is
//! as it was. The install itself is a sequence of writes, so it first
//! records `m/installing` naming the (already stored) snapshot file;
//! opening a store that holds the marker finishes that install.
//!
//! Snapshots are built and held in memory whole, which bounds the data a
//! replica can snapshot by its memory; streaming them is left for later
//! (see issue 21's note).

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lockstep_model::ReplicaCommand;
use lockstep_proto::convert::raft::{
    log_id_from_pb, log_id_to_pb, snapshot_meta_from_pb, snapshot_meta_to_pb,
    stored_membership_from_pb, stored_membership_to_pb,
};
use lockstep_proto::pb;
use openraft::storage::RaftStateMachine;
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError, StoredMembership,
};
use parking_lot::RwLock;
use prost::Message;

use super::log::get_pb;
use super::{Applied, Replica, read_err, write_err};
use crate::Error;
use crate::atoms::{AtomRead, AtomStore};
use crate::column;
use crate::store::{Cf, KvRead, KvStore, WriteOp};

const APPLIED: &[u8] = b"m/applied";
const MEMBERSHIP: &[u8] = b"m/membership";
const SNAPSHOT: &[u8] = b"m/snapshot";
const INSTALLING: &[u8] = b"m/installing";

/// The data families a snapshot carries, by their number in it.
const FAMILIES: [Cf; 3] = [Cf::Atoms, Cf::Incoming, Cf::Meta];

/// Rows read or written per step of a snapshot's build or install.
const PAGE: usize = 4_096;

/// The group's atom store as it is now: a snapshot install replaces it
/// (the counters and the type table are reloaded from the new data), so
/// readers ask for the current one.
pub struct StoreCell<S>(Arc<RwLock<Arc<AtomStore<S>>>>);

impl<S> Clone for StoreCell<S> {
    fn clone(&self) -> Self {
        StoreCell(self.0.clone())
    }
}

impl<S> StoreCell<S> {
    pub fn get(&self) -> Arc<AtomStore<S>> {
        self.0.read().clone()
    }
}

/// The state machine of one replica.
pub struct Machine<S> {
    kv: S,
    store: StoreCell<S>,
    /// Makes snapshot ids unique within a process.
    seq: Arc<AtomicU64>,
}

/// Where this process's snapshot ids and file names start counting: the
/// time, so that they do not repeat across restarts.
fn start_seq() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Errors of the disk rather than of the command: they stop the replica,
/// since applying past them would diverge from the group.
fn is_fatal(e: &Error) -> bool {
    matches!(e, Error::Storage(_) | Error::Io(_) | Error::DiskFull(_))
}

fn applied_op(id: &LogId<u64>) -> WriteOp {
    WriteOp::Put(Cf::Raft, APPLIED.to_vec(), log_id_to_pb(id).encode_to_vec())
}

fn membership_op(m: &StoredMembership<u64, openraft::BasicNode>) -> WriteOp {
    WriteOp::Put(
        Cf::Raft,
        MEMBERSHIP.to_vec(),
        stored_membership_to_pb(m).encode_to_vec(),
    )
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("corrupt snapshot: {e}"))
}

/// A snapshot's bytes: the message and its checksum.
fn seal(snap: &pb::ReplicaSnapshot) -> Vec<u8> {
    let mut bytes = snap.encode_to_vec();
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

/// Checks a snapshot's checksum and decodes it; every row names a data
/// family and every file an STI buffer.
fn open_sealed(bytes: &[u8]) -> Result<pb::ReplicaSnapshot, Error> {
    let Some(body_len) = bytes.len().checked_sub(8) else {
        return Err(Error::Invalid(lockstep_proto::ProtoError::BadParam(
            "snapshot shorter than its checksum".into(),
        )));
    };
    let (body, sum) = bytes.split_at(body_len);
    let sum = u64::from_le_bytes(sum.try_into().unwrap_or_default());
    if xxhash_rust::xxh3::xxh3_64(body) != sum {
        return Err(Error::Invalid(lockstep_proto::ProtoError::BadParam(
            "snapshot checksum mismatch".into(),
        )));
    }
    let snap = pb::ReplicaSnapshot::decode(body).map_err(|e| {
        Error::Invalid(lockstep_proto::ProtoError::BadParam(format!(
            "undecodable snapshot: {e}"
        )))
    })?;
    if let Some(r) = snap.rows.iter().find(|r| family(r.family).is_none()) {
        return Err(Error::Invalid(lockstep_proto::ProtoError::BadParam(
            format!("snapshot row of unknown family {}", r.family),
        )));
    }
    let buffers = [column::values_file(0), column::values_file(1)];
    if let Some(f) = snap
        .files
        .iter()
        .find(|f| !buffers.contains(&f.name.as_str()))
    {
        return Err(Error::Invalid(lockstep_proto::ProtoError::BadParam(
            format!("snapshot carries file {:?}, not an STI buffer", f.name),
        )));
    }
    Ok(snap)
}

/// Checks a snapshot's bytes whole against the description it came with:
/// its checksum, its families and files, and that it holds the entries
/// `meta` says. What passes can be installed; what fails changes nothing.
pub fn check(
    meta: &SnapshotMeta<u64, openraft::BasicNode>,
    bytes: &[u8],
) -> Result<pb::ReplicaSnapshot, Error> {
    let snap = open_sealed(bytes)?;
    let holds = snap.last_log_id.as_ref().map(log_id_from_pb);
    if holds != meta.last_log_id {
        return Err(Error::Invalid(lockstep_proto::ProtoError::BadParam(
            format!(
                "snapshot holds entries up to {holds:?}, but was sent as up to {:?}",
                meta.last_log_id
            ),
        )));
    }
    Ok(snap)
}

fn family(n: u32) -> Option<Cf> {
    FAMILIES.get(n as usize).copied()
}

impl<S: KvStore + Clone> Machine<S> {
    /// The state machine over `kv`, finishing a snapshot install that a
    /// crash interrupted.
    pub fn open(kv: S) -> Result<Machine<S>, Error> {
        if let Some(m) = get_pb::<pb::RaftSnapshotMeta, _>(&kv, INSTALLING)? {
            let bytes = kv
                .read_file(&m.file, 0, m.size as usize)?
                .ok_or_else(|| corrupt(format!("snapshot file {} is missing", m.file)))?;
            let snap = open_sealed(&bytes)?;
            install(&kv, &snap, &m)?;
        }
        let store = Arc::new(AtomStore::open(kv.clone())?);
        Ok(Machine {
            kv,
            store: StoreCell(Arc::new(RwLock::new(store))),
            seq: Arc::new(AtomicU64::new(start_seq())),
        })
    }

    /// The group's data, for reads.
    pub fn store(&self) -> StoreCell<S> {
        self.store.clone()
    }

    fn apply_one(&self, e: Entry<Replica>) -> Result<Applied, Error> {
        let store = self.store.get();
        let id = e.log_id;
        match e.payload {
            EntryPayload::Blank => {
                self.kv.write(vec![applied_op(&id)])?;
                Ok(Applied::Nothing)
            }
            EntryPayload::Membership(m) => {
                let m = StoredMembership::new(Some(id), m);
                self.kv.write(vec![applied_op(&id), membership_op(&m)])?;
                Ok(Applied::Nothing)
            }
            EntryPayload::Normal(ReplicaCommand::Put { atoms, incoming }) => {
                match store.put_with(&atoms, &incoming, vec![applied_op(&id)]) {
                    Ok(out) => Ok(Applied::Put(out)),
                    Err(e) if is_fatal(&e) => Err(e),
                    Err(e) => {
                        self.kv.write(vec![applied_op(&id)])?;
                        Ok(Applied::Refused(e.to_string()))
                    }
                }
            }
            EntryPayload::Normal(ReplicaCommand::AddTypes { types }) => {
                let out = match store.add_types(&types) {
                    Ok(()) => Applied::Nothing,
                    Err(e) if is_fatal(&e) => return Err(e),
                    Err(e) => Applied::Refused(e.to_string()),
                };
                self.kv.write(vec![applied_op(&id)])?;
                Ok(out)
            }
        }
    }

    fn current(&self) -> Result<Option<(pb::RaftSnapshotMeta, Vec<u8>)>, Error> {
        let Some(m) = get_pb::<pb::RaftSnapshotMeta, _>(&self.kv, SNAPSHOT)? else {
            return Ok(None);
        };
        let bytes = self
            .kv
            .read_file(&m.file, 0, m.size as usize)?
            .ok_or_else(|| corrupt(format!("snapshot file {} is missing", m.file)))?;
        Ok(Some((m, bytes)))
    }
}

/// Keeps `bytes` as the snapshot `meta` describes, under a file of its own;
/// returns the record naming it.
fn keep<S: KvStore>(
    kv: &S,
    meta: &SnapshotMeta<u64, openraft::BasicNode>,
    bytes: &[u8],
    seq: &AtomicU64,
) -> Result<pb::RaftSnapshotMeta, Error> {
    // The id is the sender's and may come again; the file name is ours, of
    // safe characters, and never the current snapshot's, which is replaced
    // only once the new one is whole.
    let file = format!(
        "raft-snapshot-{:016x}-{}",
        xxhash_rust::xxh3::xxh3_64(meta.snapshot_id.as_bytes()),
        seq.fetch_add(1, Ordering::Relaxed)
    );
    kv.put_file(&file, bytes)?;
    Ok(snapshot_meta_to_pb(meta, file, bytes.len() as u64))
}

/// Makes `m` the current snapshot, removing the file of the one before.
fn make_current<S: KvStore>(kv: &S, m: &pb::RaftSnapshotMeta) -> Result<(), Error> {
    let old = get_pb::<pb::RaftSnapshotMeta, _>(kv, SNAPSHOT)?;
    kv.write_sync(vec![WriteOp::Put(
        Cf::Raft,
        SNAPSHOT.to_vec(),
        m.encode_to_vec(),
    )])?;
    if let Some(old) = old.filter(|o| o.file != m.file) {
        kv.remove_file(&old.file)?;
    }
    Ok(())
}

/// Replaces the data with the snapshot's, then records its applied id and
/// membership and drops the install marker. Run again after a crash, it
/// ends the same.
fn install<S: KvStore>(
    kv: &S,
    snap: &pb::ReplicaSnapshot,
    m: &pb::RaftSnapshotMeta,
) -> Result<(), Error> {
    for cf in FAMILIES {
        // Forward from the last key deleted, so no scan walks the
        // tombstones of the pages before it.
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = kv.scan(cf, b"", after.as_deref(), PAGE)?;
            let Some((last, _)) = rows.last() else { break };
            after = Some(last.clone());
            kv.write(
                rows.into_iter()
                    .map(|(k, _)| WriteOp::Delete(cf, k))
                    .collect(),
            )?;
        }
    }
    for name in [column::values_file(0), column::values_file(1)] {
        kv.remove_file(name)?;
    }
    for chunk in snap.rows.chunks(PAGE) {
        let ops = chunk
            .iter()
            .filter_map(|r| {
                family(r.family).map(|cf| WriteOp::Put(cf, r.key.clone(), r.value.clone()))
            })
            .collect();
        kv.write(ops)?;
    }
    for f in &snap.files {
        kv.put_file(&f.name, &f.data)?;
    }
    let mut ops = vec![WriteOp::Delete(Cf::Raft, INSTALLING.to_vec())];
    match &snap.last_log_id {
        Some(l) => ops.push(WriteOp::Put(Cf::Raft, APPLIED.to_vec(), l.encode_to_vec())),
        None => ops.push(WriteOp::Delete(Cf::Raft, APPLIED.to_vec())),
    }
    if let Some(sm) = &snap.membership {
        ops.push(WriteOp::Put(
            Cf::Raft,
            MEMBERSHIP.to_vec(),
            sm.encode_to_vec(),
        ));
    }
    kv.write_sync(ops)?;
    make_current(kv, m)
}

/// Builds snapshots of a replica's data.
pub struct Builder<S> {
    kv: S,
    store: StoreCell<S>,
    seq: Arc<AtomicU64>,
}

impl<S: KvStore + Clone> Builder<S> {
    fn build(&self) -> Result<(SnapshotMeta<u64, openraft::BasicNode>, Vec<u8>), Error> {
        let store = self.store.get();
        // One point in time for every row and the applied id; the view
        // holds the committed STI buffer until the file is read.
        let view = store.view();
        let kv = view.reader();
        let applied = get_pb::<pb::RaftLogId, _>(kv, APPLIED)?;
        let membership = get_pb::<pb::RaftStoredMembership, _>(kv, MEMBERSHIP)?;
        let mut rows = Vec::new();
        for (n, cf) in FAMILIES.into_iter().enumerate() {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page = kv.scan(cf, b"", after.as_deref(), PAGE)?;
                let full = page.len() == PAGE;
                after = page.last().map(|(k, _)| k.clone());
                rows.extend(page.into_iter().map(|(key, value)| pb::ReplicaSnapshotRow {
                    family: n as u32,
                    key,
                    value,
                }));
                if !full {
                    break;
                }
            }
        }
        let files = view
            .column_file()?
            .map(|(name, data)| pb::ReplicaSnapshotFile {
                name: name.to_string(),
                data,
            });
        drop(view);
        let snap = pb::ReplicaSnapshot {
            last_log_id: applied,
            membership: membership.clone(),
            rows,
            files: files.into_iter().collect(),
        };
        let last_log_id = applied.as_ref().map(log_id_from_pb);
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: match &membership {
                Some(m) => stored_membership_from_pb(m).map_err(corrupt)?,
                None => StoredMembership::default(),
            },
            snapshot_id: format!(
                "{}-{}-{}",
                last_log_id.map(|l| l.leader_id.term).unwrap_or(0),
                last_log_id.map(|l| l.index).unwrap_or(0),
                self.seq.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let bytes = seal(&snap);
        let record = keep(&self.kv, &meta, &bytes, &self.seq)?;
        make_current(&self.kv, &record)?;
        Ok((meta, bytes))
    }
}

impl<S: KvStore + Clone> RaftSnapshotBuilder<Replica> for Builder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Replica>, StorageError<u64>> {
        let (meta, bytes) = self.build().map_err(|e| read_err(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl<S: KvStore + Clone> RaftStateMachine<Replica> for Machine<S> {
    type SnapshotBuilder = Builder<S>;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<u64>>,
            StoredMembership<u64, openraft::BasicNode>,
        ),
        StorageError<u64>,
    > {
        let applied = get_pb::<pb::RaftLogId, _>(&self.kv, APPLIED)
            .map_err(|e| read_err(&e))?
            .map(|l| log_id_from_pb(&l));
        let membership = match get_pb::<pb::RaftStoredMembership, _>(&self.kv, MEMBERSHIP)
            .map_err(|e| read_err(&e))?
        {
            Some(m) => stored_membership_from_pb(&m).map_err(|e| read_err(&corrupt(e)))?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Replica>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for e in entries {
            let id = e.log_id;
            out.push(self.apply_one(e).map_err(|e| {
                StorageError::from(openraft::StorageIOError::apply(
                    id,
                    openraft::AnyError::new(&e),
                ))
            })?);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            kv: self.kv.clone(),
            store: self.store.clone(),
            seq: self.seq.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        self.install_bytes(meta, snapshot.into_inner())
            .map_err(|e| write_err(&e))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Replica>>, StorageError<u64>> {
        let Some((m, bytes)) = self.current().map_err(|e| read_err(&e))? else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta: snapshot_meta_from_pb(&m).map_err(|e| read_err(&corrupt(e)))?,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

impl<S: KvStore + Clone> Machine<S> {
    /// Installs a snapshot received from the leader. It is checked whole
    /// first (checksum, families, files, and that it is the snapshot
    /// `meta` names): a bad one changes nothing.
    pub fn install_bytes(
        &self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        bytes: Vec<u8>,
    ) -> Result<(), Error> {
        let snap = check(meta, &bytes)?;
        let record = keep(&self.kv, meta, &bytes, &self.seq)?;
        // From here on a crash finishes the install on the next open.
        self.kv.write_sync(vec![WriteOp::Put(
            Cf::Raft,
            INSTALLING.to_vec(),
            record.encode_to_vec(),
        )])?;
        // Writers hold the store's lock while the data is replaced, and
        // readers after it see the new store.
        let mut cell = self.store.0.write();
        install(&self.kv, &snap, &record)?;
        *cell = Arc::new(AtomStore::open(self.kv.clone())?);
        Ok(())
    }
}
