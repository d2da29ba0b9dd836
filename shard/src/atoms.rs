//! Atom semantics on top of a [`KvStore`]: keys, encodings, per-type counts,
//! upserts that keep values a write does not carry, incoming sets, deletes
//! and scans.
//!
//! # Keys
//! - `atoms`: `b'a' ++ handle` -> `StoredAtom`; `b't' ++ type id (u16 BE) ++
//!   handle` -> empty, the by-type index.
//! - `incoming`: `target ++ link` -> `StoredIncoming`, one key per member so
//!   that an incoming set never becomes one growing value.
//! - `meta`: `shard_id`, `cluster_id`, `count/<type id>`, `incoming_count`,
//!   `last_tick`, `prepared` (a tick's writes between prepare and commit),
//!   `type/<type id>` -> name for each registered (not built-in) type, and
//!   the STI column (see [`crate::column`]).
//!
//! # Type ids
//! Keys and records hold a type's u16 id: a built-in type's from the model
//! crate's table, a registered type's from the coordinator, kept in `meta`
//! before any atom of it is written (see [`AtomStore::add_types`]). A write
//! of a type with no id here is refused, so every stored id can be read
//! back.
//!
//! # Views
//! [`AtomStore::view`] is what a tick reads: a snapshot of the key-value
//! store with the STI column committed when it was taken. The column's
//! values live in side files, which snapshots do not cover, so the store
//! keeps the buffer a live view reads from as it is: it neither removes it
//! nor prepares into it until the view is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Weak};

use lockstep_model::atom::AtomRecord;
use lockstep_model::{AtomType, FlatAtom, Handle, IncomingRef, ShardId, StiColumn, TypeTable};
use lockstep_proto::convert::{decode_incoming, decode_stored, encode_incoming, encode_stored};
use lockstep_proto::pb;
use parking_lot::{Mutex, RwLock};

use crate::Error;
use crate::column::{self, ColumnWrite};
use crate::store::{Cf, KvRead, KvStore, WriteOp};

const ATOM_PREFIX: u8 = b'a';
const TYPE_PREFIX: u8 = b't';
const META_SHARD_ID: &[u8] = b"shard_id";
const META_CLUSTER_ID: &[u8] = b"cluster_id";
const META_COUNT_PREFIX: &[u8] = b"count/";
const META_INCOMING_COUNT: &[u8] = b"incoming_count";
const META_LAST_TICK: &[u8] = b"last_tick";
const META_PREPARED: &[u8] = b"prepared";
const META_TYPE_PREFIX: &[u8] = b"type/";

/// The family of a planned op in a batch an older release prepared
/// (0 atoms, 1 incoming, 2 meta).
fn cf_from_id(id: u32) -> Result<Cf, Error> {
    match id {
        0 => Ok(Cf::Atoms),
        1 => Ok(Cf::Incoming),
        2 => Ok(Cf::Meta),
        _ => Err(Error::Storage(format!("corrupt prepared op family {id}"))),
    }
}

fn load_counts<S: KvStore>(kv: &S) -> Result<Counts, Error> {
    let mut counts = Counts::default();
    for (k, v) in kv.scan(Cf::Meta, META_COUNT_PREFIX, None, usize::MAX)? {
        let id = u16::from_be_bytes(
            k[META_COUNT_PREFIX.len()..]
                .try_into()
                .map_err(|_| Error::Storage("corrupt count key".into()))?,
        );
        counts.by_type.insert(id, decode_u64(&v)?);
    }
    if let Some(v) = kv.get(Cf::Meta, META_INCOMING_COUNT)? {
        counts.incoming = decode_u64(&v)?;
    }
    Ok(counts)
}

fn type_meta_key(id: u16) -> Vec<u8> {
    let mut k = META_TYPE_PREFIX.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn load_types<S: KvStore>(kv: &S) -> Result<TypeTable, Error> {
    let mut types = TypeTable::new();
    for (k, v) in kv.scan(Cf::Meta, META_TYPE_PREFIX, None, usize::MAX)? {
        let id = u16::from_be_bytes(
            k[META_TYPE_PREFIX.len()..]
                .try_into()
                .map_err(|_| Error::Storage("corrupt type key".into()))?,
        );
        let name =
            std::str::from_utf8(&v).map_err(|_| Error::Storage("corrupt type name".into()))?;
        types
            .insert(id, name)
            .map_err(|e| Error::Storage(format!("stored type {id}: {e}")))?;
    }
    Ok(types)
}

/// The stored id of `ty`, or a refusal naming it.
fn id_in(types: &TypeTable, ty: &AtomType) -> Result<u16, Error> {
    types
        .id_of(ty)
        .ok_or_else(|| Error::UnregisteredType(ty.name.to_string()))
}

fn corrupt_prepared(e: lockstep_proto::ProtoError) -> Error {
    Error::Storage(format!("corrupt prepared batch: {e}"))
}

fn read_prepared<S: KvStore>(kv: &S) -> Result<Option<pb::PreparedBatch>, Error> {
    use prost::Message;
    match kv.get(Cf::Meta, META_PREPARED)? {
        None => Ok(None),
        Some(b) => pb::PreparedBatch::decode(b.as_slice())
            .map(Some)
            .map_err(|e| Error::Storage(format!("corrupt prepared batch: {e}"))),
    }
}

/// The key of an atom's record in the `atoms` column family.
pub fn atom_key(h: Handle) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(ATOM_PREFIX);
    k.extend_from_slice(&h.to_bytes());
    k
}

fn type_key(type_id: u16, h: Handle) -> Vec<u8> {
    let mut k = type_prefix(type_id);
    k.extend_from_slice(&h.to_bytes());
    k
}

fn type_prefix(type_id: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(19);
    k.push(TYPE_PREFIX);
    k.extend_from_slice(&type_id.to_be_bytes());
    k
}

fn incoming_key(target: Handle, link: Handle) -> Vec<u8> {
    let mut k = Vec::with_capacity(32);
    k.extend_from_slice(&target.to_bytes());
    k.extend_from_slice(&link.to_bytes());
    k
}

fn count_key(type_id: u16) -> Vec<u8> {
    let mut k = META_COUNT_PREFIX.to_vec();
    k.extend_from_slice(&type_id.to_be_bytes());
    k
}

fn decode_u64(v: &[u8]) -> Result<u64, Error> {
    let arr: [u8; 8] = v
        .try_into()
        .map_err(|_| Error::Storage(format!("corrupt counter of {} bytes", v.len())))?;
    Ok(u64::from_le_bytes(arr))
}

/// What a put did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOutcome {
    pub created: u64,
    pub updated: u64,
    pub incoming: u64,
}

/// Counters kept in memory and in the meta family, updated in the same
/// atomic write as the data they count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub by_type: BTreeMap<u16, u64>,
    pub incoming: u64,
}

impl Counts {
    pub fn atoms(&self) -> u64 {
        self.by_type.values().sum()
    }
}

/// The atom store of one shard.
pub struct AtomStore<S> {
    kv: S,
    /// Held across each read-modify-write so that concurrent writers cannot
    /// both count the same new atom; also the in-memory copy of the counters.
    counts: Mutex<Counts>,
    /// The committed STI column, if any. Changed only with `counts` held;
    /// readers take the `Arc` and re-check it after reading the chunks.
    column: RwLock<Option<Arc<StiColumn>>>,
    /// The targets of the incoming-set entries the prepared batch adds:
    /// atoms a committing tick links to, which a delete must not remove.
    /// Changed only with `counts` held.
    linked: Mutex<HashSet<Handle>>,
    /// The columns that live views read: their value buffers stay as they
    /// are until the last such view is dropped.
    held: Mutex<Vec<Weak<HeldColumn>>>,
    /// The ids of the types this store holds. Only ever grows; a view keeps
    /// the table of its moment, which names every id it can read.
    types: RwLock<Arc<TypeTable>>,
}

/// A committed STI column that a view reads from.
struct HeldColumn(Arc<StiColumn>);

/// The atom store as it was when [`AtomStore::view`] was called: every
/// read a tick makes. Later writes, a client's or a tick's, do not change
/// what it reads.
pub struct AtomView<R> {
    kv: R,
    column: Option<Arc<HeldColumn>>,
    types: Arc<TypeTable>,
}

/// Records of `handles` as stored, without any column's STI.
fn read_records<K: KvRead>(
    kv: &K,
    types: &TypeTable,
    handles: &[Handle],
) -> Result<Vec<Option<AtomRecord>>, Error> {
    let keys: Vec<Vec<u8>> = handles.iter().map(|h| atom_key(*h)).collect();
    kv.multi_get(Cf::Atoms, &keys)?
        .into_iter()
        .zip(handles)
        .map(|(v, h)| {
            v.map(|b| decode_stored(*h, &b, types).map_err(Error::from))
                .transpose()
        })
        .collect()
}

/// The STI that column `col` gives to each present record of `handles`:
/// (index, value) pairs.
fn column_stis<K: KvRead>(
    kv: &K,
    col: &StiColumn,
    handles: &[Handle],
    recs: &[Option<AtomRecord>],
) -> Result<Vec<(usize, f64)>, Error> {
    let mut by_chunk: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, h) in handles.iter().enumerate() {
        if recs[i].is_some()
            && let Some(c) = col.chunk_of(*h)
        {
            by_chunk.entry(c).or_default().push(i);
        }
    }
    let mut found = Vec::new();
    for (c, idx) in by_chunk {
        let (hs, xs) = column::read_chunk(kv, col, c)?;
        for i in idx {
            if let Ok(p) = hs.binary_search(&handles[i]) {
                found.push((i, xs[p]));
            }
        }
    }
    Ok(found)
}

fn apply_stis(recs: &mut [Option<AtomRecord>], found: Vec<(usize, f64)>) {
    for (i, x) in found {
        if let Some(r) = recs[i].as_mut() {
            r.av.sti = x;
        }
    }
}

/// A page of `target`'s incoming set, after link `after`.
fn incoming_page<K: KvRead>(
    kv: &K,
    types: &TypeTable,
    target: Handle,
    after: Option<Handle>,
    limit: usize,
) -> Result<(Vec<IncomingRef>, bool), Error> {
    let prefix = target.to_bytes();
    let after_key = after.map(|a| incoming_key(target, a));
    let mut rows = kv.scan(Cf::Incoming, &prefix, after_key.as_deref(), limit + 1)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let refs = rows
        .into_iter()
        .map(|(k, v)| {
            let link = Handle::from_slice(&k[16..])?;
            Ok(decode_incoming(target, link, &v, types)?)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok((refs, more))
}

/// A page of the handles of atoms of type `ty`, in order, after `after`.
fn type_page<K: KvRead>(
    kv: &K,
    types: &TypeTable,
    ty: &'static AtomType,
    after: Option<Handle>,
    limit: usize,
) -> Result<(Vec<Handle>, bool), Error> {
    // A type with no id here has no atoms here.
    let Some(id) = types.id_of(ty) else {
        return Ok((Vec::new(), false));
    };
    let prefix = type_prefix(id);
    let after_key = after.map(|a| type_key(id, a));
    let mut rows = kv.scan(Cf::Atoms, &prefix, after_key.as_deref(), limit + 1)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let handles = rows
        .iter()
        .map(|(k, _)| Handle::from_slice(&k[prefix.len()..]))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((handles, more))
}

/// Reads of atoms, the same whether of the live store or of a view: only
/// how a record gets its STI differs ([`AtomRead::get`]).
pub trait AtomRead {
    type Kv: KvRead;

    /// The key-value reads underneath.
    fn reader(&self) -> &Self::Kv;

    /// The type ids the reads decode with.
    fn types(&self) -> Arc<TypeTable>;

    /// Reads atoms by handle; one entry per handle, in order.
    fn get(&self, handles: &[Handle]) -> Result<Vec<Option<AtomRecord>>, Error>;

    /// A page of `target`'s incoming set, after link `after`.
    fn incoming(
        &self,
        target: Handle,
        after: Option<Handle>,
        limit: usize,
    ) -> Result<(Vec<IncomingRef>, bool), Error> {
        incoming_page(self.reader(), &self.types(), target, after, limit)
    }

    /// A page of atoms of type `ty`, in handle order, after `after`.
    fn scan_type(
        &self,
        ty: &'static AtomType,
        after: Option<Handle>,
        limit: usize,
    ) -> Result<(Vec<AtomRecord>, bool), Error> {
        let (handles, more) = self.scan_type_handles(ty, after, limit)?;
        let recs = self.get(&handles)?.into_iter().flatten().collect();
        Ok((recs, more))
    }

    /// A page of the handles of atoms of type `ty`, in order, after `after`:
    /// the by-type index alone, with no record read.
    fn scan_type_handles(
        &self,
        ty: &'static AtomType,
        after: Option<Handle>,
        limit: usize,
    ) -> Result<(Vec<Handle>, bool), Error> {
        type_page(self.reader(), &self.types(), ty, after, limit)
    }
}

impl<R: KvRead> AtomView<R> {
    fn column(&self) -> Option<&StiColumn> {
        self.column.as_ref().map(|c| &*c.0)
    }

    /// The side file of the committed STI buffer and its bytes, if a column
    /// was committed when the view was taken: with the families' rows, the
    /// whole state a replica's snapshot carries.
    pub fn column_file(&self) -> Result<Option<(&'static str, Vec<u8>)>, Error> {
        let Some(col) = self.column() else {
            return Ok(None);
        };
        let name = column::values_file(col.buffer);
        let len = usize::try_from(col.len)
            .ok()
            .and_then(|n| n.checked_mul(8))
            .ok_or_else(|| Error::Storage(format!("STI column of {} values", col.len)))?;
        let bytes = self
            .kv
            .read_file(name, 0, len)?
            .ok_or_else(|| Error::Storage(format!("STI buffer {name} is missing")))?;
        Ok(Some((name, bytes)))
    }

    /// Every value of column `id`, in handle order, if `id` was the
    /// committed column when the view was taken.
    pub fn column_values(&self, id: u64) -> Result<Option<Vec<f64>>, Error> {
        match self.column().filter(|c| c.id == id) {
            Some(col) => column::read_values(&self.kv, col).map(Some),
            None => Ok(None),
        }
    }
}

impl<R: KvRead> AtomRead for AtomView<R> {
    type Kv = R;

    fn reader(&self) -> &R {
        &self.kv
    }

    fn types(&self) -> Arc<TypeTable> {
        self.types.clone()
    }

    /// The records as they were, with the STI of the column committed then.
    fn get(&self, handles: &[Handle]) -> Result<Vec<Option<AtomRecord>>, Error> {
        let mut recs = read_records(&self.kv, &self.types, handles)?;
        if let Some(col) = self.column() {
            let found = column_stis(&self.kv, col, handles, &recs)?;
            apply_stis(&mut recs, found);
        }
        Ok(recs)
    }
}

fn load_column<S: KvStore>(kv: &S) -> Result<Option<Arc<StiColumn>>, Error> {
    use prost::Message;
    let Some(b) = kv.get(Cf::Meta, column::POINTER)? else {
        return Ok(None);
    };
    let c = pb::StiColumn::decode(b.as_slice())
        .map_err(|e| Error::Storage(format!("corrupt STI column pointer: {e}")))?;
    Ok(Some(Arc::new(StiColumn::try_from(c)?)))
}

impl<S: KvStore> AtomStore<S> {
    /// Wraps a store, loading its counters.
    pub fn open(kv: S) -> Result<AtomStore<S>, Error> {
        let counts = load_counts(&kv)?;
        let types = load_types(&kv)?;
        let column = load_column(&kv)?;
        if let Some(col) = &column {
            column::upgrade(&kv, col)?;
        }
        let prepared = read_prepared(&kv)?;
        let mut linked = HashSet::new();
        if let Some(b) = prepared {
            if let Some(p) = b.column {
                column::upgrade(&kv, &StiColumn::try_from(p)?)?;
            }
            for r in b.incoming {
                linked.insert(IncomingRef::try_from(r).map_err(corrupt_prepared)?.target);
            }
        }
        Ok(AtomStore {
            kv,
            counts: Mutex::new(counts),
            column: RwLock::new(column),
            linked: Mutex::new(linked),
            held: Mutex::new(Vec::new()),
            types: RwLock::new(Arc::new(types)),
        })
    }

    /// The types of `atoms` and of `incoming`'s links that have no id in
    /// this store yet, each once: what must be registered before they can
    /// be written.
    pub fn unregistered(
        &self,
        atoms: &[FlatAtom],
        incoming: &[IncomingRef],
    ) -> Vec<&'static AtomType> {
        let types = self.types.read().clone();
        let mut out: Vec<&'static AtomType> = Vec::new();
        for ty in atoms
            .iter()
            .map(|a| a.ty)
            .chain(incoming.iter().map(|r| r.link_type))
        {
            if types.id_of(ty).is_none() && !out.iter().any(|t| std::ptr::eq(*t, ty)) {
                out.push(ty);
            }
        }
        out
    }

    /// Records the cluster's ids for registered types, durably, before any
    /// atom of them is written. An id or name that disagrees with one
    /// already stored is refused and nothing changes: the coordinator gives
    /// each name one id for the cluster's life.
    pub fn add_types(&self, entries: &[(u16, String)]) -> Result<(), Error> {
        let _writers = self.counts.lock();
        let mut next = (**self.types.read()).clone();
        let mut ops = Vec::new();
        for (id, name) in entries {
            let ty = AtomType::intern(name)?;
            if next.id_of(ty) == Some(*id) {
                continue;
            }
            next.insert(*id, name).map_err(|e| {
                Error::Storage(format!(
                    "the coordinator's type ids disagree with this store's: {e}"
                ))
            })?;
            ops.push(WriteOp::Put(
                Cf::Meta,
                type_meta_key(*id),
                name.as_bytes().to_vec(),
            ));
        }
        if !ops.is_empty() {
            self.kv.write(ops)?;
            *self.types.write() = Arc::new(next);
        }
        Ok(())
    }

    /// The store as it is now, for a tick to read: later writes do not
    /// change what the view reads.
    pub fn view(&self) -> AtomView<S::Snapshot> {
        // Under the writers' lock, so that the snapshot and the column
        // pointer are of the same moment.
        let _writers = self.counts.lock();
        let kv = self.kv.snapshot();
        let column = self.column().map(|c| Arc::new(HeldColumn(c)));
        if let Some(c) = &column {
            let mut held = self.held.lock();
            held.retain(|w| w.strong_count() > 0);
            held.push(Arc::downgrade(c));
        }
        AtomView {
            kv,
            column,
            types: self.types.read().clone(),
        }
    }

    /// Which of the two value buffers live views read from.
    fn held_buffers(&self) -> [bool; 2] {
        let mut out = [false; 2];
        for c in self.held.lock().iter().filter_map(Weak::upgrade) {
            out[usize::from(c.0.buffer != 0)] = true;
        }
        out
    }

    /// The committed STI column, if one is current.
    pub fn column(&self) -> Option<Arc<StiColumn>> {
        self.column.read().clone()
    }

    /// Whether `col` is still the committed column: a reader that read its
    /// chunks and then sees it still current read committed values, because
    /// a prepare only writes the buffer the current pointer does not name.
    fn still_current(&self, col: &Arc<StiColumn>) -> bool {
        self.column
            .read()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, col))
    }

    /// Every committed value of column `id`, in handle order, if `id` is the
    /// current column: a resumed job's fast path.
    pub fn column_values(&self, id: u64) -> Result<Option<Vec<f64>>, Error> {
        loop {
            let Some(col) = self.column().filter(|c| c.id == id) else {
                return Ok(None);
            };
            let out = column::read_values(&self.kv, &col)?;
            if self.still_current(&col) {
                return Ok(Some(out));
            }
        }
    }

    /// Overlays the committed column's STI on the records read for `handles`.
    fn overlay(&self, handles: &[Handle], recs: &mut [Option<AtomRecord>]) -> Result<(), Error> {
        loop {
            let Some(col) = self.column() else {
                return Ok(());
            };
            let found = column_stis(&self.kv, &col, handles, recs)?;
            if self.still_current(&col) {
                apply_stis(recs, found);
                return Ok(());
            }
        }
    }

    /// Writes the committed column's values into the atoms' records and
    /// removes the column. The caller holds the `counts` lock, as every
    /// writer does. Chunk by chunk: until the pointer goes (last), a crash
    /// leaves the column in force and the records it already reached carry
    /// the same values, so folding again is harmless.
    fn fold(&self, _writer: &Counts) -> Result<(), Error> {
        let Some(col) = self.column() else {
            return Ok(());
        };
        let types = self.types.read().clone();
        for c in 0..col.firsts.len() {
            let (hs, xs) = column::read_chunk(&self.kv, &col, c)?;
            let keys: Vec<Vec<u8>> = hs.iter().map(|h| atom_key(*h)).collect();
            let mut ops = Vec::new();
            for ((h, x), (key, old)) in hs
                .iter()
                .zip(xs)
                .zip(keys.iter().zip(self.kv.multi_get(Cf::Atoms, &keys)?))
            {
                let Some(bytes) = old else { continue };
                let mut rec = decode_stored(*h, &bytes, &types)?;
                if rec.av.sti.to_bits() != x.to_bits() {
                    rec.av.sti = x;
                    let id = id_in(&types, rec.ty)?;
                    ops.push(WriteOp::Put(
                        Cf::Atoms,
                        key.clone(),
                        encode_stored(&rec, id),
                    ));
                }
            }
            if !ops.is_empty() {
                self.kv.write(ops)?;
            }
        }
        // A prepared batch may still name this column (a write arrived
        // between a tick's prepare and commit): its keys stay for that
        // commit.
        let named = self
            .read_prepared()?
            .and_then(|b| b.column)
            .is_some_and(|p| p.id == col.id);
        let mut ops = vec![WriteOp::Delete(Cf::Meta, column::POINTER.to_vec())];
        if !named {
            column::delete_ops(col.id, col.len, &mut ops);
        }
        self.kv.write(ops)?;
        *self.column.write() = None;
        // A view taken before still reads its buffer; the next column's
        // prepare rewrites whatever is left.
        if !named && self.held_buffers() == [false; 2] {
            column::remove_values(&self.kv)?;
        }
        Ok(())
    }

    /// The underlying key-value store.
    pub fn kv(&self) -> &S {
        &self.kv
    }

    /// A copy of the counters.
    pub fn counts(&self) -> Counts {
        self.counts.lock().clone()
    }

    /// The stored identity, if this folder has been registered before.
    pub fn identity(&self) -> Result<Option<(ShardId, String)>, Error> {
        let id = self.kv.get(Cf::Meta, META_SHARD_ID)?;
        let cluster = self.kv.get(Cf::Meta, META_CLUSTER_ID)?;
        match (id, cluster) {
            (Some(id), Some(cluster)) => {
                let id: [u8; 4] = id
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Storage("corrupt shard id".into()))?;
                let cluster = String::from_utf8(cluster)
                    .map_err(|_| Error::Storage("corrupt cluster id".into()))?;
                Ok(Some((ShardId(u32::from_le_bytes(id)), cluster)))
            }
            _ => Ok(None),
        }
    }

    /// Records the identity the coordinator gave this folder.
    pub fn set_identity(&self, id: ShardId, cluster: &str) -> Result<(), Error> {
        self.kv.write(vec![
            WriteOp::Put(
                Cf::Meta,
                META_SHARD_ID.to_vec(),
                id.0.to_le_bytes().to_vec(),
            ),
            WriteOp::Put(
                Cf::Meta,
                META_CLUSTER_ID.to_vec(),
                cluster.as_bytes().to_vec(),
            ),
        ])?;
        self.kv.flush()
    }

    /// Upserts atoms and adds incoming-set entries in one atomic write. An
    /// existing atom keeps every value the write does not carry.
    pub fn put(&self, atoms: &[FlatAtom], incoming: &[IncomingRef]) -> Result<PutOutcome, Error> {
        self.put_with(atoms, incoming, Vec::new())
    }

    /// [`AtomStore::put`], with `extra` ops in the same atomic write: a
    /// replica's applied log id moves with the data it applied.
    pub fn put_with(
        &self,
        atoms: &[FlatAtom],
        incoming: &[IncomingRef],
        extra: Vec<WriteOp>,
    ) -> Result<PutOutcome, Error> {
        let mut counts = self.counts.lock();
        if !atoms.is_empty() {
            self.fold(&counts)?;
        }
        let (mut ops, next, out) = self.plan(&counts, atoms, incoming)?;
        ops.extend(extra);
        if !ops.is_empty() {
            self.kv.write(ops)?;
        }
        *counts = next;
        Ok(out)
    }

    /// The ops that apply `atoms` and `incoming` to the current state, with
    /// the counters they lead to.
    fn plan(
        &self,
        counts: &Counts,
        atoms: &[FlatAtom],
        incoming: &[IncomingRef],
    ) -> Result<(Vec<WriteOp>, Counts, PutOutcome), Error> {
        let types = self.types.read().clone();
        // Every type needs its id before anything is planned.
        for ty in atoms
            .iter()
            .map(|a| a.ty)
            .chain(incoming.iter().map(|r| r.link_type))
        {
            id_in(&types, ty)?;
        }
        let keys: Vec<Vec<u8>> = atoms.iter().map(|a| atom_key(a.handle)).collect();
        let existing = self.kv.multi_get(Cf::Atoms, &keys)?;

        // The batch may name one atom twice: merge in order, in memory.
        let mut pending: HashMap<Handle, (AtomRecord, bool, bool)> = HashMap::new();
        let mut order: Vec<Handle> = Vec::new();
        for (a, old) in atoms.iter().zip(existing) {
            match pending.get_mut(&a.handle) {
                Some((rec, _, changed)) => *changed |= rec.merge(a),
                None => {
                    let entry = match old {
                        Some(bytes) => {
                            let mut rec = decode_stored(a.handle, &bytes, &types)?;
                            let changed = rec.merge(a);
                            (rec, false, changed)
                        }
                        None => (AtomRecord::from_write(a), true, true),
                    };
                    pending.insert(a.handle, entry);
                    order.push(a.handle);
                }
            }
        }

        let mut next = counts.clone();
        let mut ops = Vec::new();
        let mut out = PutOutcome::default();
        for h in &order {
            let (rec, is_new, changed) = &pending[h];
            let id = id_in(&types, rec.ty)?;
            if *is_new {
                ops.push(WriteOp::Put(Cf::Atoms, type_key(id, *h), Vec::new()));
                *next.by_type.entry(id).or_default() += 1;
                out.created += 1;
            } else if *changed {
                out.updated += 1;
            }
            if *changed {
                ops.push(WriteOp::Put(
                    Cf::Atoms,
                    atom_key(*h),
                    encode_stored(rec, id),
                ));
            }
        }

        let ikeys: Vec<Vec<u8>> = incoming
            .iter()
            .map(|r| incoming_key(r.target, r.link))
            .collect();
        let iexisting = self.kv.multi_get(Cf::Incoming, &ikeys)?;
        let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        for ((r, key), old) in incoming.iter().zip(&ikeys).zip(iexisting) {
            if old.is_none() && seen.insert(key) {
                let id = id_in(&types, r.link_type)?;
                ops.push(WriteOp::Put(
                    Cf::Incoming,
                    key.clone(),
                    encode_incoming(r, id),
                ));
                next.incoming += 1;
                out.incoming += 1;
            }
        }
        self.push_count_ops(counts, &next, &mut ops);
        Ok((ops, next, out))
    }

    /// The last tick committed on this shard (0 before any).
    pub fn last_tick(&self) -> Result<u64, Error> {
        match self.kv.get(Cf::Meta, META_LAST_TICK)? {
            Some(v) => decode_u64(&v),
            None => Ok(0),
        }
    }

    /// The tick of the prepared batch, if one is waiting.
    pub fn prepared_tick(&self) -> Result<Option<u64>, Error> {
        Ok(self.read_prepared()?.map(|p| p.tick))
    }

    fn read_prepared(&self) -> Result<Option<pb::PreparedBatch>, Error> {
        read_prepared(&self.kv)
    }

    /// Phase one of a tick's commit: stores the tick's writes, durably but
    /// invisibly, as the prepared batch for `tick`. They are stored as
    /// operations (the atoms to upsert and the incoming-set entries to add),
    /// and [`AtomStore::commit`] plans them against the store as it is
    /// then, so that a client write acknowledged in between is kept and
    /// counted. The outcome returned is planned against the store as it is
    /// now. A staged STI column is written in place, into the spare buffer
    /// (see [`crate::column`]).
    pub fn prepare(
        &self,
        tick: u64,
        atoms: &[FlatAtom],
        incoming: &[IncomingRef],
        column: Option<&ColumnWrite>,
    ) -> Result<PutOutcome, Error> {
        use prost::Message;
        let counts = self.counts.lock();
        let other_column = column.is_some_and(|w| self.column().is_some_and(|c| c.id != w.id));
        if other_column {
            self.fold(&counts)?;
        }
        let (_, _, out) = self.plan(&counts, atoms, incoming)?;
        let mut writes = Vec::new();
        let pointer = column.map(|w| {
            let current = self.column().filter(|c| c.id == w.id);
            let held = self.held_buffers();
            let buffer = match &current {
                Some(c) => 1 - c.buffer,
                None => u8::from(held[0]),
            };
            if current.is_none() {
                w.handle_ops(&mut writes);
            }
            if held[usize::from(buffer)] {
                // Views live within one tick and every prepare follows its
                // tick's view: this would be a bug, and overwriting would
                // change what a reader reads.
                return Err(Error::Storage(format!(
                    "STI buffer {buffer} is still read by a view"
                )));
            }
            w.write_values(&self.kv, buffer)
                .map(|()| pb::StiColumn::from(&w.pointer(buffer)))
        });
        let pointer = pointer.transpose()?;
        let batch = pb::PreparedBatch {
            tick,
            column: pointer,
            ops: Vec::new(),
            atoms: atoms.iter().map(Into::into).collect(),
            incoming: incoming.iter().map(Into::into).collect(),
        };
        writes.push(WriteOp::Put(
            Cf::Meta,
            META_PREPARED.to_vec(),
            batch.encode_to_vec(),
        ));
        self.kv.write(writes)?;
        *self.linked.lock() = incoming.iter().map(|r| r.target).collect();
        Ok(out)
    }

    /// Phase two: plans the prepared batch of `tick` against the current
    /// state and applies it in one write that also records `tick` as the
    /// last committed, all under the writers' lock. Idempotent: a tick
    /// already committed is a no-op.
    pub fn commit(&self, tick: u64) -> Result<(), Error> {
        use prost::Message;
        let mut counts = self.counts.lock();
        if self.last_tick()? >= tick {
            return Ok(());
        }
        let batch = self
            .read_prepared()?
            .filter(|b| b.tick == tick)
            .ok_or_else(|| Error::Storage(format!("no prepared batch for tick {tick}")))?;
        let atoms = batch
            .atoms
            .into_iter()
            .map(FlatAtom::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt_prepared)?;
        let incoming = batch
            .incoming
            .into_iter()
            .map(IncomingRef::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt_prepared)?;
        let pointer = batch.column.map(StiColumn::try_from).transpose()?;
        // Records are about to be rewritten: the committed column's values
        // go into them first, as for any put. So does a column that the
        // new pointer replaces.
        if !atoms.is_empty()
            || pointer
                .as_ref()
                .is_some_and(|p| self.column().is_some_and(|c| c.id != p.id))
        {
            self.fold(&counts)?;
        }
        let (mut ops, mut next, _) = self.plan(&counts, &atoms, &incoming)?;
        // A batch prepared by an older release holds planned writes and
        // absolute counters: they are applied as they are, and the
        // counters read back.
        let legacy = !batch.ops.is_empty();
        for op in batch.ops {
            let cf = cf_from_id(op.cf)?;
            ops.push(if op.delete {
                WriteOp::Delete(cf, op.key)
            } else {
                WriteOp::Put(cf, op.key, op.value)
            });
        }
        ops.push(WriteOp::Put(
            Cf::Meta,
            META_LAST_TICK.to_vec(),
            tick.to_le_bytes().to_vec(),
        ));
        if let Some(p) = &pointer {
            ops.push(WriteOp::Put(
                Cf::Meta,
                column::POINTER.to_vec(),
                pb::StiColumn::from(p).encode_to_vec(),
            ));
        }
        ops.push(WriteOp::Delete(Cf::Meta, META_PREPARED.to_vec()));
        self.kv.write(ops)?;
        if legacy {
            next = load_counts(&self.kv)?;
        }
        *counts = next;
        self.linked.lock().clear();
        if let Some(p) = pointer {
            *self.column.write() = Some(Arc::new(p));
        }
        Ok(())
    }

    /// Drops a prepared batch that was never committed, with the column
    /// keys it wrote unless they belong to the current column.
    pub fn discard_prepared(&self) -> Result<(), Error> {
        let _guard = self.counts.lock();
        let mut ops = vec![WriteOp::Delete(Cf::Meta, META_PREPARED.to_vec())];
        let current = self.column();
        let orphan = self
            .read_prepared()?
            .and_then(|b| b.column)
            .filter(|p| current.as_ref().is_none_or(|c| c.id != p.id));
        if let Some(p) = &orphan {
            column::delete_ops(p.id, p.len, &mut ops);
        }
        self.kv.write(ops)?;
        self.linked.lock().clear();
        // The value buffers go with the last column that names them, and
        // that no view still reads.
        if orphan.is_some() && current.is_none() && self.held_buffers() == [false; 2] {
            column::remove_values(&self.kv)?;
        }
        Ok(())
    }

    /// Brings a prepared batch in line with the coordinator's decision: a
    /// batch for a tick at or before `committed` is applied, a later one is
    /// dropped.
    pub fn resolve_prepared(&self, committed: u64) -> Result<(), Error> {
        match self.prepared_tick()? {
            Some(t) if t <= committed => self.commit(t),
            Some(_) => self.discard_prepared(),
            None => Ok(()),
        }
    }

    fn push_count_ops(&self, old: &Counts, new: &Counts, ops: &mut Vec<WriteOp>) {
        for (id, n) in &new.by_type {
            if old.by_type.get(id) != Some(n) {
                ops.push(WriteOp::Put(
                    Cf::Meta,
                    count_key(*id),
                    n.to_le_bytes().to_vec(),
                ));
            }
        }
        if old.incoming != new.incoming {
            ops.push(WriteOp::Put(
                Cf::Meta,
                META_INCOMING_COUNT.to_vec(),
                new.incoming.to_le_bytes().to_vec(),
            ));
        }
    }

    /// Whether `h` has any incoming-set entry.
    pub fn has_incoming(&self, h: Handle) -> Result<bool, Error> {
        Ok(!self
            .kv
            .scan(Cf::Incoming, &h.to_bytes(), None, 1)?
            .is_empty())
    }

    /// Deletes atoms that have no incoming set, atomically: if any has one,
    /// nothing is deleted. Returns the records deleted (absent handles are
    /// skipped).
    pub fn delete(&self, handles: &[Handle]) -> Result<Vec<AtomRecord>, Error> {
        let mut counts = self.counts.lock();
        // A deleted atom must not keep a column value a later re-creation
        // would inherit.
        self.fold(&counts)?;
        {
            // A link the prepared batch adds is not in the incoming family
            // yet, but it will be at the commit: deleting its target now
            // would leave that link pointing at nothing.
            let linked = self.linked.lock();
            for &h in handles {
                if self.has_incoming(h)? {
                    return Err(Error::HasIncoming(h));
                }
                if linked.contains(&h) {
                    return Err(Error::LinkedByTick(h));
                }
            }
        }
        let types = self.types.read().clone();
        let mut next = counts.clone();
        let mut ops = Vec::new();
        let mut deleted = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (h, rec) in handles.iter().zip(self.get(handles)?) {
            let Some(rec) = rec else { continue };
            if !seen.insert(*h) {
                continue;
            }
            ops.push(WriteOp::Delete(Cf::Atoms, atom_key(*h)));
            let id = id_in(&types, rec.ty)?;
            ops.push(WriteOp::Delete(Cf::Atoms, type_key(id, *h)));
            let c = next.by_type.entry(id).or_default();
            *c = c.saturating_sub(1);
            deleted.push(rec);
        }
        self.push_count_ops(&counts, &next, &mut ops);
        if !ops.is_empty() {
            self.kv.write(ops)?;
        }
        *counts = next;
        Ok(deleted)
    }

    /// Removes incoming-set entries; returns how many existed.
    pub fn remove_incoming(&self, refs: &[IncomingRef]) -> Result<u64, Error> {
        let mut counts = self.counts.lock();
        let keys: Vec<Vec<u8>> = refs
            .iter()
            .map(|r| incoming_key(r.target, r.link))
            .collect();
        let existing = self.kv.multi_get(Cf::Incoming, &keys)?;
        let mut next = counts.clone();
        let mut ops = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (k, old) in keys.into_iter().zip(existing) {
            if old.is_some() && seen.insert(k.clone()) {
                ops.push(WriteOp::Delete(Cf::Incoming, k));
                next.incoming = next.incoming.saturating_sub(1);
            }
        }
        let removed = counts.incoming - next.incoming;
        self.push_count_ops(&counts, &next, &mut ops);
        if !ops.is_empty() {
            self.kv.write(ops)?;
        }
        *counts = next;
        Ok(removed)
    }
}

impl<S: KvStore> AtomRead for AtomStore<S> {
    type Kv = S;

    fn reader(&self) -> &S {
        &self.kv
    }

    fn types(&self) -> Arc<TypeTable> {
        self.types.read().clone()
    }

    /// The records with the committed column's STI.
    fn get(&self, handles: &[Handle]) -> Result<Vec<Option<AtomRecord>>, Error> {
        let mut recs = read_records(&self.kv, &self.types(), handles)?;
        self.overlay(handles, &mut recs)?;
        Ok(recs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use lockstep_model::TruthValue;

    fn concept(name: &str) -> FlatAtom {
        FlatAtom::new(
            AtomType::by_name("ConceptNode").unwrap(),
            name.into(),
            vec![],
        )
        .unwrap()
    }

    fn inheritance(a: Handle, b: Handle) -> FlatAtom {
        FlatAtom::new(
            AtomType::by_name("InheritanceLink").unwrap(),
            String::new(),
            vec![a, b],
        )
        .unwrap()
    }

    fn refs_for(link: &FlatAtom) -> Vec<IncomingRef> {
        link.outgoing
            .iter()
            .map(|t| IncomingRef::new(*t, link.ty, link.outgoing.clone()).unwrap())
            .collect()
    }

    #[test]
    fn upsert_keeps_values_the_write_does_not_carry() {
        let s = AtomStore::open(MemStore::default()).unwrap();
        let mut a = concept("a");
        a.tv = Some(TruthValue::new(0.5, 0.5).unwrap());
        assert_eq!(s.put(&[a.clone()], &[]).unwrap().created, 1);
        // Same atom again, as a link's target: no TV, so the TV stays.
        let out = s.put(&[concept("a")], &[]).unwrap();
        assert_eq!((out.created, out.updated), (0, 0));
        let got = s.get(&[a.handle]).unwrap()[0].clone().unwrap();
        assert_eq!(got.tv, a.tv.unwrap());
        assert_eq!(s.counts().atoms(), 1);
    }

    #[test]
    fn registered_types_are_kept_by_id_and_unregistered_ones_refused() {
        let kv = std::sync::Arc::new(MemStore::default());
        let s = AtomStore::open(kv.clone()).unwrap();
        let word = AtomType::intern("StoreTestWordNode").unwrap();
        let refl = AtomType::intern("StoreTestReferenceLink").unwrap();
        let w = FlatAtom::new(word, "w".into(), vec![]).unwrap();
        let c = concept("c");
        let l = FlatAtom::new(refl, String::new(), vec![w.handle, c.handle]).unwrap();
        let batch = [w.clone(), c.clone(), l.clone()];
        let refs = refs_for(&l);
        assert_eq!(s.unregistered(&batch, &refs), vec![word, refl]);
        // Nothing is written for a batch with a type that has no id.
        assert!(matches!(
            s.put(&batch, &refs),
            Err(Error::UnregisteredType(n)) if n == "StoreTestWordNode"
        ));
        assert_eq!(s.counts().atoms(), 0);
        let first = lockstep_model::types::FIRST_REGISTERED_ID;
        let ids = vec![
            (first, "StoreTestWordNode".to_string()),
            (first + 7, "StoreTestReferenceLink".to_string()),
        ];
        s.add_types(&ids).unwrap();
        s.add_types(&ids).unwrap();
        assert!(s.unregistered(&batch, &refs).is_empty());
        assert_eq!(s.put(&batch, &refs).unwrap().created, 3);
        assert_eq!(s.counts().by_type.get(&(first + 7)), Some(&1));
        // A different id for a stored name is refused.
        assert!(
            s.add_types(&[(first + 1, "StoreTestWordNode".into())])
                .is_err()
        );
        // Reopened, the ids, the records, the index and the incoming sets
        // read back.
        let back = AtomStore::open(kv).unwrap();
        assert_eq!(back.types().id_of(refl), Some(first + 7));
        let got = back.get(&[l.handle]).unwrap()[0].clone().unwrap();
        assert_eq!((got.ty, got.outgoing), (refl, l.outgoing.clone()));
        assert_eq!(
            back.scan_type_handles(word, None, 10).unwrap().0,
            vec![w.handle]
        );
        let (inc, _) = back.incoming(c.handle, None, 10).unwrap();
        assert_eq!(inc[0].link_type, refl);
        assert_eq!(scanned(&back), back.counts());
        assert_eq!(back.delete(&[l.handle]).unwrap().len(), 1);
    }

    #[test]
    fn counts_follow_puts_and_deletes_and_survive_reopen() {
        let kv = std::sync::Arc::new(MemStore::default());
        let s = AtomStore::open(kv.clone()).unwrap();
        let (a, b) = (concept("a"), concept("b"));
        let l = inheritance(a.handle, b.handle);
        s.put(&[a.clone(), b.clone(), l.clone(), a.clone()], &refs_for(&l))
            .unwrap();
        assert_eq!(s.counts().atoms(), 3);
        assert_eq!(s.counts().incoming, 2);

        // a has an incoming set: refused, and nothing changes.
        assert!(matches!(
            s.delete(&[l.handle, a.handle]),
            Err(Error::HasIncoming(_))
        ));
        assert_eq!(s.counts().atoms(), 3);

        assert_eq!(s.delete(&[l.handle]).unwrap().len(), 1);
        assert_eq!(s.remove_incoming(&refs_for(&l)).unwrap(), 2);
        assert_eq!(s.delete(&[a.handle]).unwrap().len(), 1);
        assert_eq!(s.counts().atoms(), 1);
        assert_eq!(s.counts().incoming, 0);

        let reopened = AtomStore::open(kv).unwrap();
        assert_eq!(reopened.counts(), s.counts());
    }

    #[test]
    fn a_tick_is_invisible_until_commit_and_commit_is_idempotent() {
        let s = AtomStore::open(MemStore::default()).unwrap();
        let a = concept("a");
        s.put(std::slice::from_ref(&a), &[]).unwrap();
        s.prepare(1, &[concept("b")], &[], None).unwrap();
        assert_eq!(s.get(&[concept("b").handle]).unwrap()[0], None);
        assert_eq!(s.last_tick().unwrap(), 0);
        assert_eq!(s.prepared_tick().unwrap(), Some(1));
        s.commit(1).unwrap();
        s.commit(1).unwrap();
        assert_eq!(s.last_tick().unwrap(), 1);
        assert!(s.get(&[concept("b").handle]).unwrap()[0].is_some());
        assert_eq!(s.counts().atoms(), 2);

        // A prepared tick past the decision is dropped, not applied.
        s.prepare(2, &[concept("c")], &[], None).unwrap();
        s.resolve_prepared(1).unwrap();
        assert_eq!(s.prepared_tick().unwrap(), None);
        assert_eq!(s.last_tick().unwrap(), 1);
        assert_eq!(s.get(&[concept("c").handle]).unwrap()[0], None);
        // One at or before it is applied.
        s.prepare(2, &[concept("c")], &[], None).unwrap();
        s.resolve_prepared(2).unwrap();
        assert_eq!(s.last_tick().unwrap(), 2);
        assert_eq!(s.counts().atoms(), 3);
    }

    /// The counters as a scan of the store finds them.
    fn scanned<S: KvStore>(s: &AtomStore<S>) -> Counts {
        let mut c = Counts::default();
        let types = s.types();
        let registered = types.registered();
        for ty in AtomType::builtins().chain(registered.iter().map(|(_, t)| *t)) {
            let n = s
                .scan_type_handles(ty, None, usize::MAX - 1)
                .unwrap()
                .0
                .len() as u64;
            if n > 0 {
                c.by_type.insert(types.id_of(ty).unwrap(), n);
            }
        }
        c.incoming = s
            .kv()
            .scan(Cf::Incoming, &[], None, usize::MAX)
            .unwrap()
            .len() as u64;
        c
    }

    #[test]
    fn client_writes_between_prepare_and_commit_are_kept_and_counted() {
        let kv = Arc::new(MemStore::default());
        let s = AtomStore::open(kv.clone()).unwrap();
        let (a, b) = (concept("a"), concept("b"));
        s.put(std::slice::from_ref(&a), &[]).unwrap();
        // The tick upserts a (no values), creates b and a link a -> b.
        let l = inheritance(a.handle, b.handle);
        s.prepare(1, &[a.clone(), b.clone(), l.clone()], &refs_for(&l), None)
            .unwrap();

        // Between prepare and commit a client writes a's attention value,
        // creates b itself (which the tick also creates) and an atom of
        // its own, and deletes an unlinked one.
        let mut a_av = concept("a");
        a_av.av = Some(lockstep_model::AttentionValue::new(7.0, 1.0).unwrap());
        let mut b_tv = concept("b");
        b_tv.tv = Some(TruthValue::new(0.25, 0.5).unwrap());
        let c = concept("c");
        s.put(&[a_av, b_tv, c.clone()], &[]).unwrap();
        s.delete(&[c.handle]).unwrap();

        s.commit(1).unwrap();
        let got = s.get(&[a.handle, b.handle, c.handle]).unwrap();
        assert_eq!(
            got[0].as_ref().unwrap().av.sti,
            7.0,
            "a's AV was overwritten"
        );
        assert_eq!(
            got[1].as_ref().unwrap().tv.strength(),
            0.25,
            "b's TV was overwritten"
        );
        assert!(got[2].is_none());
        assert_eq!(s.counts().atoms(), 3);
        assert_eq!(s.counts(), scanned(&s));
        // The counters on disk agree too.
        assert_eq!(AtomStore::open(kv).unwrap().counts(), scanned(&s));
    }

    #[test]
    fn a_target_a_prepared_tick_links_to_cannot_be_deleted() {
        let kv = Arc::new(MemStore::default());
        let s = AtomStore::open(kv.clone()).unwrap();
        let (a, b) = (concept("a"), concept("b"));
        s.put(&[a.clone(), b.clone()], &[]).unwrap();
        // This shard holds a and b; the link itself lives elsewhere, so
        // only its incoming-set entries are prepared here.
        let l = inheritance(a.handle, b.handle);
        s.prepare(1, &[], &refs_for(&l), None).unwrap();
        assert!(matches!(
            s.delete(&[b.handle]),
            Err(Error::LinkedByTick(h)) if h == b.handle
        ));
        // Still refused after a restart with the batch prepared.
        let s = AtomStore::open(kv.clone()).unwrap();
        assert!(matches!(s.delete(&[a.handle]), Err(Error::LinkedByTick(_))));
        s.commit(1).unwrap();
        assert!(matches!(s.delete(&[a.handle]), Err(Error::HasIncoming(_))));
        assert_eq!(s.counts(), scanned(&s));

        // A dropped batch no longer protects anything.
        let c = concept("c");
        s.put(std::slice::from_ref(&c), &[]).unwrap();
        let l2 = inheritance(c.handle, a.handle);
        s.prepare(2, &[], &refs_for(&l2)[..1], None).unwrap();
        assert!(matches!(s.delete(&[c.handle]), Err(Error::LinkedByTick(_))));
        s.discard_prepared().unwrap();
        assert_eq!(s.delete(&[c.handle]).unwrap().len(), 1);
        assert_eq!(s.counts(), scanned(&s));
    }

    /// `n` ConceptNodes put into `s`: the atoms, their sorted handles and
    /// the id of a column over them.
    fn vertices<S: KvStore>(s: &AtomStore<S>, n: usize) -> (Vec<FlatAtom>, Arc<Vec<Handle>>, u64) {
        let atoms: Vec<FlatAtom> = (0..n).map(|i| concept(&format!("v{i}"))).collect();
        s.put(&atoms, &[]).unwrap();
        let mut hs: Vec<Handle> = atoms.iter().map(|a| a.handle).collect();
        hs.sort();
        let hs = Arc::new(hs);
        let id = StiColumn::id_of(&hs);
        (atoms, hs, id)
    }

    fn sti<S: KvStore>(s: &AtomStore<S>, h: Handle) -> f64 {
        s.get(&[h]).unwrap()[0].as_ref().unwrap().av.sti
    }

    #[test]
    fn an_sti_column_commits_in_place_and_is_what_reads_see() {
        let kv = Arc::new(MemStore::default());
        let s = AtomStore::open(kv.clone()).unwrap();
        // Two and a half chunks of vertices, and one atom outside the column.
        let n = StiColumn::CHUNK * 2 + StiColumn::CHUNK / 2;
        let atoms: Vec<FlatAtom> = (0..n).map(|i| concept(&format!("v{i}"))).collect();
        let outside = concept("outside");
        s.put(&atoms, &[]).unwrap();
        s.put(std::slice::from_ref(&outside), &[]).unwrap();
        let mut hs: Vec<Handle> = atoms.iter().map(|a| a.handle).collect();
        hs.sort();
        let hs = Arc::new(hs);
        let id = StiColumn::id_of(&hs);
        let write = |t: f64| {
            let xs = (0..n).map(|i| t + i as f64 * 1e-6).collect();
            ColumnWrite::new(id, hs.clone(), Arc::new(xs))
        };

        // Prepared is durable but invisible; committed is visible.
        s.prepare(1, &[], &[], Some(&write(1.0))).unwrap();
        assert_eq!(sti(&s, hs[5]), 0.0);
        s.commit(1).unwrap();
        assert_eq!(sti(&s, hs[5]), 1.0 + 5e-6);
        assert_eq!(s.last_tick().unwrap(), 1);

        // An aborted tick leaves the committed values; the retry commits.
        s.prepare(2, &[], &[], Some(&write(2.0))).unwrap();
        s.discard_prepared().unwrap();
        assert_eq!(sti(&s, hs[n - 1]), 1.0 + (n - 1) as f64 * 1e-6);
        s.prepare(2, &[], &[], Some(&write(3.0))).unwrap();
        s.commit(2).unwrap();

        // A prepare that died while writing the spare buffer tore only
        // that buffer: the committed one is untouched.
        let spare = 1 - s.column().unwrap().buffer;
        kv.put_file(column::values_file(spare), &[0xff; 24])
            .unwrap();

        // A reopened store reads the column; scans and the fast path agree.
        let s = AtomStore::open(kv.clone()).unwrap();
        assert_eq!(sti(&s, hs[n - 1]), 3.0 + (n - 1) as f64 * 1e-6);
        assert_eq!(sti(&s, outside.handle), 0.0);
        assert_eq!(s.column_values(id).unwrap().unwrap(), *write(3.0).values);
        assert_eq!(s.column_values(id ^ 1).unwrap(), None);
        let ty = AtomType::by_name("ConceptNode").unwrap();
        let (page, _) = s.scan_type(ty, None, 3 * StiColumn::CHUNK).unwrap();
        for r in page.iter().filter(|r| r.handle != outside.handle) {
            let i = hs.binary_search(&r.handle).unwrap();
            assert_eq!(r.av.sti, 3.0 + i as f64 * 1e-6);
        }

        // A write between prepare and commit folds the column into the
        // records, and the commit still finds its chunks.
        s.prepare(3, &[], &[], Some(&write(4.0))).unwrap();
        s.put(&[concept("late")], &[]).unwrap();
        assert!(s.column().is_none());
        assert_eq!(sti(&s, hs[7]), 3.0 + 7e-6);
        s.commit(3).unwrap();
        assert_eq!(sti(&s, hs[7]), 4.0 + 7e-6);

        // Any other write folds it and removes every key it had.
        s.put(&[concept("later")], &[]).unwrap();
        assert!(s.column().is_none());
        assert_eq!(sti(&s, hs[7]), 4.0 + 7e-6);
        assert_eq!(sti(&s, hs[n - 1]), 4.0 + (n - 1) as f64 * 1e-6);
        assert!(
            kv.scan(Cf::Meta, b"col/", None, usize::MAX)
                .unwrap()
                .is_empty()
        );
        for b in [0, 1] {
            assert_eq!(kv.read_file(column::values_file(b), 0, 0).unwrap(), None);
        }
        assert!(AtomStore::open(kv).unwrap().column().is_none());
    }

    #[test]
    fn a_column_stored_before_side_files_is_moved_into_them_at_open() {
        let kv = Arc::new(MemStore::default());
        let s = AtomStore::open(kv.clone()).unwrap();
        let n = StiColumn::CHUNK + 3;
        let (_, hs, id) = vertices(&s, n);
        let xs: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        let w = ColumnWrite::new(id, hs.clone(), Arc::new(xs.clone()));
        s.prepare(1, &[], &[], Some(&w)).unwrap();
        s.commit(1).unwrap();
        drop(s);
        // Rewrite it the old way: values in meta keys per buffer and chunk,
        // no side files.
        let buffer = load_column(&kv).unwrap().unwrap().buffer;
        let key = |b: u8, c: u32| {
            let mut k = b"col/".to_vec();
            k.extend_from_slice(&id.to_be_bytes());
            k.extend_from_slice(&[b'x', b]);
            k.extend_from_slice(&c.to_be_bytes());
            k
        };
        let mut ops = Vec::new();
        for (c, chunk) in xs.chunks(StiColumn::CHUNK).enumerate() {
            let v: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
            ops.push(WriteOp::Put(Cf::Meta, key(buffer, c as u32), v.clone()));
            ops.push(WriteOp::Put(Cf::Meta, key(1 - buffer, c as u32), v));
        }
        kv.write(ops).unwrap();
        kv.remove_file(column::values_file(0)).unwrap();
        kv.remove_file(column::values_file(1)).unwrap();

        let s = AtomStore::open(kv.clone()).unwrap();
        assert_eq!(s.column_values(id).unwrap().unwrap(), xs);
        assert_eq!(sti(&s, hs[n - 1]), (n - 1) as f64 * 0.5);
        let mut old = b"col/".to_vec();
        old.extend_from_slice(&id.to_be_bytes());
        old.push(b'x');
        assert!(
            kv.scan(Cf::Meta, &old, None, usize::MAX)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_column_of_another_vertex_set_folds_the_old_one_first() {
        let kv = Arc::new(MemStore::default());
        let s = AtomStore::open(kv.clone()).unwrap();
        let atoms: Vec<FlatAtom> = (0..10).map(|i| concept(&format!("v{i}"))).collect();
        s.put(&atoms, &[]).unwrap();
        let mut all: Vec<Handle> = atoms.iter().map(|a| a.handle).collect();
        all.sort();
        let first = Arc::new(all.clone());
        let second = Arc::new(all[..5].to_vec());
        let w1 = ColumnWrite::new(StiColumn::id_of(&first), first, Arc::new(vec![0.5; 10]));
        s.prepare(1, &[], &[], Some(&w1)).unwrap();
        s.commit(1).unwrap();
        let w2 = ColumnWrite::new(StiColumn::id_of(&second), second, Arc::new(vec![0.25; 5]));
        s.prepare(2, &[], &[], Some(&w2)).unwrap();
        // The old column's values are in the records now; the new one is
        // not visible until its commit.
        assert_eq!(sti(&s, all[9]), 0.5);
        assert_eq!(sti(&s, all[0]), 0.5);
        s.commit(2).unwrap();
        assert_eq!(sti(&s, all[0]), 0.25);
        assert_eq!(sti(&s, all[9]), 0.5);
        // Only the new column's keys are left: 1 chunk of handles; its
        // values are the committed buffer's.
        assert_eq!(
            kv.scan(Cf::Meta, b"col/", None, usize::MAX).unwrap().len(),
            1
        );
        let col = s.column().unwrap();
        assert_eq!(
            kv.read_file(column::values_file(col.buffer), 0, 5 * 8)
                .unwrap()
                .unwrap(),
            [0.25f64; 5]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>()
        );
    }

    #[test]
    fn incoming_and_scans_page() {
        let s = AtomStore::open(MemStore::default()).unwrap();
        let hub = concept("hub");
        let mut atoms = vec![hub.clone()];
        let mut refs = Vec::new();
        for i in 0..25 {
            let leaf = concept(&format!("leaf{i}"));
            let l = inheritance(leaf.handle, hub.handle);
            refs.extend(refs_for(&l));
            atoms.push(leaf);
            atoms.push(l);
        }
        s.put(&atoms, &refs).unwrap();
        let mut after = None;
        let mut total = 0;
        loop {
            let (page, more) = s.incoming(hub.handle, after, 10).unwrap();
            total += page.len();
            after = page.last().map(|r| r.link);
            if !more {
                break;
            }
        }
        assert_eq!(total, 25);
        let c = AtomType::by_name("ConceptNode").unwrap();
        let (page, more) = s.scan_type(c, None, 100).unwrap();
        assert_eq!((page.len(), more), (26, false));
        let (page, more) = s.scan_type(c, None, 5).unwrap();
        assert_eq!((page.len(), more), (5, true));
        let (rest, _) = s.scan_type(c, Some(page[4].handle), 100).unwrap();
        assert_eq!(rest.len(), 21);
    }

    #[test]
    fn a_view_reads_the_store_as_it_was_taken() {
        let s = AtomStore::open(MemStore::default()).unwrap();
        let (a, b, c) = (concept("a"), concept("b"), concept("c"));
        let l = inheritance(a.handle, b.handle);
        let mut tv_a = a.clone();
        tv_a.tv = Some(TruthValue::new(0.5, 0.5).unwrap());
        s.put(&[tv_a, b.clone(), l.clone()], &refs_for(&l)).unwrap();
        let view = s.view();

        // A client changes a value, adds an atom and a link, and deletes one.
        let mut changed = a.clone();
        changed.tv = Some(TruthValue::new(0.9, 0.9).unwrap());
        let l2 = inheritance(c.handle, b.handle);
        s.put(&[changed, c.clone(), l2.clone()], &refs_for(&l2))
            .unwrap();
        s.remove_incoming(&refs_for(&l)).unwrap();
        s.delete(&[l.handle]).unwrap();

        let got = view.get(&[a.handle, c.handle, l.handle]).unwrap();
        assert_eq!(got[0].as_ref().unwrap().tv.strength(), 0.5);
        assert!(got[1].is_none(), "an atom written after the view");
        assert!(got[2].is_some(), "an atom deleted after the view");
        let (inc, _) = view.incoming(b.handle, None, 10).unwrap();
        assert_eq!(inc.len(), 1);
        assert_eq!(inc[0].link, l.handle);
        let ty = AtomType::by_name("ConceptNode").unwrap();
        assert_eq!(view.scan_type_handles(ty, None, 10).unwrap().0.len(), 2);

        // The live store has moved on, and a new view sees it.
        assert_eq!(
            s.get(&[a.handle]).unwrap()[0]
                .as_ref()
                .unwrap()
                .tv
                .strength(),
            0.9
        );
        let now = s.view();
        assert_eq!(now.scan_type_handles(ty, None, 10).unwrap().0.len(), 3);
        assert_eq!(
            now.incoming(b.handle, None, 10).unwrap().0[0].link,
            l2.handle
        );
    }

    #[test]
    fn a_view_keeps_its_sti_column_through_folds_and_prepares() {
        let kv = Arc::new(MemStore::default());
        let s = AtomStore::open(kv.clone()).unwrap();
        let n = StiColumn::CHUNK + 7;
        let (atoms, hs, id) = vertices(&s, n);
        let write = |t: f64| {
            let xs = (0..n).map(|i| t + i as f64).collect();
            ColumnWrite::new(id, hs.clone(), Arc::new(xs))
        };
        s.prepare(1, &[], &[], Some(&write(100.0))).unwrap();
        s.commit(1).unwrap();
        let view = s.view();
        let seen = |v: &AtomView<_>| {
            let r = v.get(&[hs[3], hs[n - 1]]).unwrap();
            (r[0].as_ref().unwrap().av.sti, r[1].as_ref().unwrap().av.sti)
        };
        let before = (103.0, 100.0 + (n - 1) as f64);
        assert_eq!(seen(&view), before);

        // A client write folds the column into the records and removes it:
        // the view still reads the column's values.
        let mut hot = atoms[0].clone();
        hot.av = Some(lockstep_model::atom::AttentionValue {
            sti: -1.0,
            lti: 0.0,
            vlti: 0.0,
        });
        s.put(&[hot], &[]).unwrap();
        assert!(s.column().is_none());
        assert_eq!(seen(&view), before);
        assert_eq!(
            view.column_values(id).unwrap().unwrap(),
            *write(100.0).values
        );

        // The next tick's prepare (no column is current now) writes the
        // buffer the view does not read; an aborted attempt and its retry
        // leave the view as it was.
        s.prepare(2, &[], &[], Some(&write(200.0))).unwrap();
        assert_eq!(seen(&view), before);
        s.discard_prepared().unwrap();
        assert_eq!(seen(&view), before);
        s.prepare(2, &[], &[], Some(&write(300.0))).unwrap();
        s.commit(2).unwrap();
        assert_eq!(seen(&view), before);
        assert_eq!(sti(&s, hs[3]), 303.0);
        drop(view);

        // With the view gone, ticks go on in both buffers.
        for t in 3..6 {
            s.prepare(t, &[], &[], Some(&write(t as f64 * 100.0)))
                .unwrap();
            s.commit(t).unwrap();
            assert_eq!(sti(&s, hs[3]), t as f64 * 100.0 + 3.0);
            assert_eq!(
                seen(&s.view()),
                (t as f64 * 100.0 + 3.0, t as f64 * 100.0 + (n - 1) as f64)
            );
        }
    }
}
