//! The RocksDB [`KvStore`].
//!
//! # Durability
//! Every write goes through the write-ahead log. With `sync_writes = false`
//! (the default) a write is handed to the operating system before it is
//! acknowledged, so it survives the crash of any process, `kill -9` included,
//! but not the loss of the machine's power. With `sync_writes = true` the WAL
//! is fsynced before the acknowledgement and the write survives power loss
//! too.
//!
//! Side files live in `side/` inside the database folder (RocksDB leaves
//! folders it did not make alone). A side file is written in place with
//! `pwrite`, and with `sync_writes = true` it is `fdatasync`ed before the
//! call returns, so the write that later names it is never durable before
//! it is. Without `sync_writes` it is in the operating system's hands when
//! the call returns, like a write to the log: it survives any process
//! crash, not a power loss.
//!
//! # Snapshots
//! A [`RocksSnapshot`] is a RocksDB snapshot together with the `Arc` of the
//! database it belongs to, so it can be held across calls and threads for
//! as long as a tick runs; the database cannot close under it.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType,
    Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
};

use super::{Cf, KvRead, KvStore, Rows, Values, WriteOp, check_file_name, short_file};
use crate::Error;

/// Options for opening a store.
#[derive(Clone, Debug)]
pub struct RocksOptions {
    pub sync_writes: bool,
    pub block_cache_bytes: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            sync_writes: false,
            block_cache_bytes: 64 << 20,
        }
    }
}

/// A RocksDB database with the `atoms`, `incoming` and `meta` families.
pub struct RocksStore {
    db: Arc<DB>,
    sync_writes: bool,
    path: PathBuf,
    side: Arc<PathBuf>,
}

type Snap<'a> = rocksdb::SnapshotWithThreadMode<'a, DB>;

self_cell::self_cell!(
    /// The database and a snapshot of it that borrows it.
    struct SnapCell {
        owner: Arc<DB>,
        #[covariant]
        dependent: Snap,
    }
);

/// A [`RocksStore`] as it was when [`KvStore::snapshot`] was called, with
/// its live side files.
pub struct RocksSnapshot {
    cell: SnapCell,
    side: Arc<PathBuf>,
}

fn cf_options(cf: Cf, cache: &Cache) -> Options {
    let mut o = Options::default();
    // `meta` is counters and the STI column's f64s and handles, which do
    // not compress: LZ4 there only cost every flush its CPU.
    o.set_compression_type(match cf {
        Cf::Meta => DBCompressionType::None,
        // Log entries are read back soon and deleted after a snapshot.
        Cf::Raft => DBCompressionType::None,
        Cf::Atoms | Cf::Incoming => DBCompressionType::Lz4,
    });
    if matches!(cf, Cf::Atoms | Cf::Incoming) {
        // Every put reads its keys first, and while loading most of them
        // are new: a whole-key bloom filter on the memtable answers those
        // misses without walking the skiplist.
        o.set_memtable_whole_key_filtering(true);
        o.set_memtable_prefix_bloom_ratio(0.05);
    }
    let mut b = BlockBasedOptions::default();
    b.set_block_cache(cache);
    b.set_bloom_filter(10.0, false);
    b.set_cache_index_and_filter_blocks(true);
    // The full filter of a file with a million keys is over 1 MiB, more
    // than one shard of the LRU cache can keep (RocksDB splits 64 MiB into
    // 64 shards of 1 MiB): it was evicted as soon as a read let go of it,
    // so the next read loaded and checksummed it again. Partitioned,
    // filters and indexes are cached in 4 KiB pieces, and only their small
    // top levels are pinned.
    b.set_partition_filters(true);
    b.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    b.set_pin_top_level_index_and_filter(true);
    o.set_block_based_table_factory(&b);
    o
}

impl RocksStore {
    fn write_opts(&self, mut ops: Vec<WriteOp>, sync: bool) -> Result<(), Error> {
        // In key order, each memtable insert starts its skiplist search
        // where the previous one ended instead of at the top. The sort is
        // stable, so ops on one key keep their order and the batch means
        // the same.
        ops.sort_by(|a, b| a.cf_key().cmp(&b.cf_key()));
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                WriteOp::Put(cf, k, v) => batch.put_cf(self.cf(cf), k, v),
                WriteOp::Delete(cf, k) => batch.delete_cf(self.cf(cf), k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }
    /// Opens (creating if needed) the database in `path`. A second process on
    /// the same folder gets [`Error::Locked`].
    pub fn open(path: &Path, opts: &RocksOptions) -> Result<RocksStore, Error> {
        std::fs::create_dir_all(path)?;
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_compression_type(DBCompressionType::Lz4);
        db_opts.increase_parallelism(2);
        let cfs = Cf::ALL
            .iter()
            .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(*cf, &cache)));
        let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(|e| {
            let msg = e.into_string();
            if msg.contains("lock") || msg.contains("LOCK") {
                Error::Locked {
                    path: path.display().to_string(),
                }
            } else {
                Error::Storage(msg)
            }
        })?;
        let side = path.join("side");
        std::fs::create_dir_all(&side)?;
        Ok(RocksStore {
            db: Arc::new(db),
            sync_writes: opts.sync_writes,
            path: path.to_path_buf(),
            side: Arc::new(side),
        })
    }

    /// Bytes in side files.
    fn side_bytes(&self) -> u64 {
        std::fs::read_dir(self.side.as_path())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// The folder the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        handle(&self.db, cf)
    }
}

fn handle(db: &DB, cf: Cf) -> &rocksdb::ColumnFamily {
    db.cf_handle(cf.name())
        .expect("column families are created at open")
}

fn multi_get(db: &DB, ro: &ReadOptions, cf: Cf, keys: &[Vec<u8>]) -> Result<Values, Error> {
    let h = handle(db, cf);
    db.multi_get_cf_opt(keys.iter().map(|k| (h, k.as_slice())), ro)
        .into_iter()
        .map(|r| r.map_err(Error::from))
        .collect()
}

fn scan(
    db: &DB,
    mut ro: ReadOptions,
    cf: Cf,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Rows, Error> {
    let start: Vec<u8> = match after {
        Some(a) if a >= prefix => a.to_vec(),
        _ => prefix.to_vec(),
    };
    ro.set_prefix_same_as_start(false);
    let iter = db.iterator_cf_opt(
        handle(db, cf),
        ro,
        IteratorMode::From(&start, Direction::Forward),
    );
    let mut out = Vec::new();
    for item in iter {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        if after.is_some_and(|a| &*k <= a) {
            continue;
        }
        out.push((k.to_vec(), v.to_vec()));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

fn read_side(side: &Path, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error> {
    check_file_name(name)?;
    let f = match std::fs::File::open(side.join(name)) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut buf = vec![0; len];
    match f.read_exact_at(&mut buf, offset) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(short_file(name, offset, len, f.metadata()?.len()))
        }
        Err(e) => Err(e.into()),
    }
}

impl RocksSnapshot {
    fn read_options(&self) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(self.cell.borrow_dependent());
        ro
    }
}

impl KvRead for RocksSnapshot {
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Values, Error> {
        multi_get(self.cell.borrow_owner(), &self.read_options(), cf, keys)
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, Error> {
        let ro = self.read_options();
        scan(self.cell.borrow_owner(), ro, cf, prefix, after, limit)
    }

    fn read_file(&self, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error> {
        read_side(&self.side, name, offset, len)
    }
}

impl KvRead for RocksStore {
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Values, Error> {
        multi_get(&self.db, &ReadOptions::default(), cf, keys)
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, Error> {
        scan(&self.db, ReadOptions::default(), cf, prefix, after, limit)
    }

    fn read_file(&self, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error> {
        read_side(&self.side, name, offset, len)
    }
}

impl KvStore for RocksStore {
    type Snapshot = RocksSnapshot;

    fn snapshot(&self) -> RocksSnapshot {
        RocksSnapshot {
            cell: SnapCell::new(self.db.clone(), |db| db.snapshot()),
            side: self.side.clone(),
        }
    }

    fn write(&self, ops: Vec<WriteOp>) -> Result<(), Error> {
        self.write_opts(ops, self.sync_writes)
    }

    fn write_sync(&self, ops: Vec<WriteOp>) -> Result<(), Error> {
        self.write_opts(ops, true)
    }

    fn live_bytes(&self) -> u64 {
        Cf::ALL
            .iter()
            .map(|&cf| {
                let h = self.cf(cf);
                let live = self
                    .db
                    .property_int_value_cf(h, "rocksdb.estimate-live-data-size")
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                let mem = self
                    .db
                    .property_int_value_cf(h, "rocksdb.cur-size-all-mem-tables")
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                live + mem
            })
            .sum::<u64>()
            + self.side_bytes()
    }

    fn flush(&self) -> Result<(), Error> {
        self.db.flush_wal(true)?;
        for cf in Cf::ALL {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }

    fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        check_file_name(name)?;
        // In place, not truncated first: rewriting a file of the same size
        // (a column every tick) reuses its cached pages.
        let path = self.side.join(name);
        let created = !path.exists();
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        f.write_all_at(bytes, 0)?;
        if f.metadata()?.len() != bytes.len() as u64 {
            f.set_len(bytes.len() as u64)?;
        }
        if self.sync_writes {
            f.sync_data()?;
            if created {
                // A new file's name is in the folder, which has to reach
                // the disk too.
                std::fs::File::open(self.side.as_path())?.sync_all()?;
            }
        }
        Ok(())
    }

    fn remove_file(&self, name: &str) -> Result<(), Error> {
        check_file_name(name)?;
        match std::fs::remove_file(self.side.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocks_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        super::super::conformance::run_all(|| {
            n += 1;
            RocksStore::open(&dir.path().join(n.to_string()), &RocksOptions::default()).unwrap()
        });
    }

    #[test]
    fn a_second_open_of_the_same_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        let second = RocksStore::open(dir.path(), &RocksOptions::default());
        assert!(
            matches!(second, Err(Error::Locked { .. })),
            "{:?}",
            second.err()
        );
    }

    #[test]
    fn writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
            s.write(vec![WriteOp::Put(Cf::Meta, b"k".to_vec(), b"v".to_vec())])
                .unwrap();
        }
        let s = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        assert_eq!(s.get(Cf::Meta, b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn side_files_survive_reopen_and_stay_in_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RocksOptions {
            sync_writes: true,
            ..RocksOptions::default()
        };
        {
            let s = RocksStore::open(dir.path(), &opts).unwrap();
            s.put_file("col.1", b"0123456789").unwrap();
        }
        assert!(dir.path().join("side").join("col.1").is_file());
        let s = RocksStore::open(dir.path(), &opts).unwrap();
        assert_eq!(s.read_file("col.1", 2, 3).unwrap(), Some(b"234".to_vec()));
        for bad in ["../escape", "side/x", "", ".."] {
            assert!(
                matches!(s.put_file(bad, b"x"), Err(Error::Storage(_))),
                "{bad:?} accepted"
            );
        }
        assert!(!dir.path().join("escape").exists());
    }
}
