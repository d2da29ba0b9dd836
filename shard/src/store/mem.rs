//! An in-memory [`KvStore`] for tests of logic; not durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use super::{Cf, KvRead, KvStore, Rows, Values, WriteOp, check_file_name, short_file};
use crate::Error;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;
type Files = Arc<RwLock<HashMap<String, Vec<u8>>>>;

/// Four ordered maps behind one lock, so a write is atomic to readers,
/// and the side files by name. The maps are shared with snapshots and
/// copied on the first write after one is taken.
#[derive(Default)]
pub struct MemStore {
    maps: RwLock<Arc<[Map; 4]>>,
    files: Files,
}

/// The maps of a [`MemStore`] as they were, and its live side files.
pub struct MemSnapshot {
    maps: Arc<[Map; 4]>,
    files: Files,
}

fn idx(cf: Cf) -> usize {
    match cf {
        Cf::Atoms => 0,
        Cf::Incoming => 1,
        Cf::Meta => 2,
        Cf::Raft => 3,
    }
}

fn multi_get(maps: &[Map; 4], cf: Cf, keys: &[Vec<u8>]) -> Values {
    keys.iter().map(|k| maps[idx(cf)].get(k).cloned()).collect()
}

fn scan(maps: &[Map; 4], cf: Cf, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Rows {
    use std::ops::Bound;
    let lower = match after {
        Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
        _ => Bound::Included(prefix.to_vec()),
    };
    maps[idx(cf)]
        .range((lower, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(prefix))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn read_file(files: &Files, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error> {
    check_file_name(name)?;
    let files = files.read();
    let Some(f) = files.get(name) else {
        return Ok(None);
    };
    usize::try_from(offset)
        .ok()
        .and_then(|o| f.get(o..o.checked_add(len)?))
        .map(|b| Some(b.to_vec()))
        .ok_or_else(|| short_file(name, offset, len, f.len() as u64))
}

impl KvRead for MemStore {
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Values, Error> {
        Ok(multi_get(&self.maps.read(), cf, keys))
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, Error> {
        Ok(scan(&self.maps.read(), cf, prefix, after, limit))
    }

    fn read_file(&self, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error> {
        read_file(&self.files, name, offset, len)
    }
}

impl KvRead for MemSnapshot {
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Values, Error> {
        Ok(multi_get(&self.maps, cf, keys))
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, Error> {
        Ok(scan(&self.maps, cf, prefix, after, limit))
    }

    fn read_file(&self, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error> {
        read_file(&self.files, name, offset, len)
    }
}

impl KvStore for MemStore {
    type Snapshot = MemSnapshot;

    fn snapshot(&self) -> MemSnapshot {
        MemSnapshot {
            maps: self.maps.read().clone(),
            files: self.files.clone(),
        }
    }

    fn write(&self, ops: Vec<WriteOp>) -> Result<(), Error> {
        let mut guard = self.maps.write();
        let maps = Arc::make_mut(&mut guard);
        for op in ops {
            match op {
                WriteOp::Put(cf, k, v) => {
                    maps[idx(cf)].insert(k, v);
                }
                WriteOp::Delete(cf, k) => {
                    maps[idx(cf)].remove(&k);
                }
            }
        }
        Ok(())
    }

    fn write_sync(&self, ops: Vec<WriteOp>) -> Result<(), Error> {
        self.write(ops)
    }

    fn live_bytes(&self) -> u64 {
        let maps = self.maps.read();
        maps.iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    fn flush(&self) -> Result<(), Error> {
        Ok(())
    }

    fn put_file(&self, name: &str, bytes: &[u8]) -> Result<(), Error> {
        check_file_name(name)?;
        self.files.write().insert(name.to_string(), bytes.to_vec());
        Ok(())
    }

    fn remove_file(&self, name: &str) -> Result<(), Error> {
        check_file_name(name)?;
        self.files.write().remove(name);
        Ok(())
    }
}
