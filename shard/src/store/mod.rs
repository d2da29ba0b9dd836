//! The key-value storage a shard keeps its atoms in, behind a trait that does
//! not mention RocksDB.
//!
//! - [`KvRead`]: point reads, prefix scans and side-file reads, of the live
//!   store or of a snapshot of it.
//! - [`KvStore`]: four column families, atomic multi-key writes, snapshots,
//!   and side files for bulk values that bypass the write-ahead log.
//! - [`rocks::RocksStore`]: the real one.
//! - [`mem::MemStore`]: an in-memory stand-in for tests of logic.
//! - [`conformance`]: the suite both must pass.

pub mod conformance;
pub mod mem;
pub mod rocks;

use crate::Error;

/// A column family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// Atom records and the by-type index.
    Atoms,
    /// One key per incoming-set member: target handle ++ link handle.
    Incoming,
    /// Identity, counters, epoch and last committed tick.
    Meta,
    /// A replica's Raft log, vote and applied state (see
    /// [`crate::replica`]).
    Raft,
}

impl Cf {
    pub const ALL: [Cf; 4] = [Cf::Atoms, Cf::Incoming, Cf::Meta, Cf::Raft];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Atoms => "atoms",
            Cf::Incoming => "incoming",
            Cf::Meta => "meta",
            Cf::Raft => "raft",
        }
    }
}

/// Key-value pairs from a scan, in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// One optional value per key asked for.
pub type Values = Vec<Option<Vec<u8>>>;

/// One mutation in an atomic write.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
}

impl WriteOp {
    /// The family and key the op writes.
    pub fn cf_key(&self) -> (Cf, &[u8]) {
        match self {
            WriteOp::Put(cf, k, _) | WriteOp::Delete(cf, k) => (*cf, k),
        }
    }
}

/// Reads of ordered key-value storage: of the live store, or of a
/// [`KvStore::snapshot`].
pub trait KvRead: Send + Sync + 'static {
    /// Reads many keys of one family; one entry per key, in order.
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Values, Error>;

    /// Up to `limit` entries whose key starts with `prefix` and is greater
    /// than `after` (when given), in key order.
    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, Error>;

    /// `len` bytes of side file `name` from `offset`; `None` if the file
    /// does not exist. A file too short for the range is an error. Side
    /// files are never part of a snapshot: a snapshot reads them as they
    /// are now, and keeping the ones it needs unchanged is the caller's
    /// part (see `AtomStore::view`).
    fn read_file(&self, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error>;

    /// Reads one key.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .multi_get(cf, &[key.to_vec()])?
            .pop()
            .expect("one result per key"))
    }
}

/// Ordered key-value storage with column families.
pub trait KvStore: KvRead {
    /// A read-only view of the store as it was when it was taken.
    type Snapshot: KvRead;

    /// The store as it is now, unchanged by later writes, for as long as
    /// the snapshot is held.
    fn snapshot(&self) -> Self::Snapshot;

    /// Applies all ops atomically: after a crash, either all or none are
    /// visible. Returns once the write is durable as configured.
    fn write(&self, ops: Vec<WriteOp>) -> Result<(), Error>;

    /// Like [`KvStore::write`], but returns only once the write is synced
    /// to disk, whatever the store's durability setting: for what Raft
    /// must never lose (its log and its vote).
    fn write_sync(&self, ops: Vec<WriteOp>) -> Result<(), Error>;

    /// Approximate bytes of live data.
    fn live_bytes(&self) -> u64;

    /// Makes everything written so far durable on disk.
    fn flush(&self) -> Result<(), Error>;

    /// Replaces the contents of side file `name` with `bytes`. A side file
    /// holds a bulk value outside the write-ahead log, so writing it costs
    /// one copy rather than a log record and a memtable insert. It is not
    /// part of any atomic write: callers make it current afterwards with a
    /// small [`KvStore::write`] that names it, and never overwrite the one a
    /// committed key names. Durable as configured, like a write. `name` is
    /// a plain file name (letters, digits, `.`, `-`, `_`).
    fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), Error>;

    /// Removes side file `name`, if it exists.
    fn remove_file(&self, name: &str) -> Result<(), Error>;
}

impl<S: KvRead> KvRead for std::sync::Arc<S> {
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Values, Error> {
        (**self).multi_get(cf, keys)
    }
    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, Error> {
        (**self).scan(cf, prefix, after, limit)
    }
    fn read_file(&self, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error> {
        (**self).read_file(name, offset, len)
    }
}

impl<S: KvStore> KvStore for std::sync::Arc<S> {
    type Snapshot = S::Snapshot;
    fn snapshot(&self) -> Self::Snapshot {
        (**self).snapshot()
    }
    fn write(&self, ops: Vec<WriteOp>) -> Result<(), Error> {
        (**self).write(ops)
    }
    fn write_sync(&self, ops: Vec<WriteOp>) -> Result<(), Error> {
        (**self).write_sync(ops)
    }
    fn live_bytes(&self) -> u64 {
        (**self).live_bytes()
    }
    fn flush(&self) -> Result<(), Error> {
        (**self).flush()
    }
    fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        (**self).put_file(name, bytes)
    }
    fn remove_file(&self, name: &str) -> Result<(), Error> {
        (**self).remove_file(name)
    }
}

/// Checks a side file's name: a plain file name, so it can never reach
/// outside the store's folder.
pub fn check_file_name(name: &str) -> Result<(), Error> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if plain {
        Ok(())
    } else {
        Err(Error::Storage(format!("invalid side file name {name:?}")))
    }
}

/// The error for a side file shorter than the range read from it.
pub fn short_file(name: &str, offset: u64, len: usize, size: u64) -> Error {
    Error::Storage(format!(
        "side file {name} holds {size} bytes; asked for {len} at {offset}"
    ))
}
