//! An in-memory [`KvStore`] for tests of logic; not durable.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;

use super::{Cf, KvStore, Rows, Values, WriteOp, check_file_name, short_file};
use crate::Error;

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Three ordered maps behind one lock, so a write is atomic to readers,
/// and the side files by name.
#[derive(Default)]
pub struct MemStore {
    maps: RwLock<[Map; 3]>,
    files: RwLock<HashMap<String, Vec<u8>>>,
}

fn idx(cf: Cf) -> usize {
    match cf {
        Cf::Atoms => 0,
        Cf::Incoming => 1,
        Cf::Meta => 2,
    }
}

impl KvStore for MemStore {
    fn multi_get(&self, cf: Cf, keys: &[Vec<u8>]) -> Result<Values, Error> {
        let maps = self.maps.read();
        Ok(keys.iter().map(|k| maps[idx(cf)].get(k).cloned()).collect())
    }

    fn write(&self, ops: Vec<WriteOp>) -> Result<(), Error> {
        let mut maps = self.maps.write();
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

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Rows, Error> {
        use std::ops::Bound;
        let maps = self.maps.read();
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        Ok(maps[idx(cf)]
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
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

    fn read_file(&self, name: &str, offset: u64, len: usize) -> Result<Option<Vec<u8>>, Error> {
        check_file_name(name)?;
        let files = self.files.read();
        let Some(f) = files.get(name) else {
            return Ok(None);
        };
        usize::try_from(offset)
            .ok()
            .and_then(|o| f.get(o..o.checked_add(len)?))
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| short_file(name, offset, len, f.len() as u64))
    }

    fn remove_file(&self, name: &str) -> Result<(), Error> {
        check_file_name(name)?;
        self.files.write().remove(name);
        Ok(())
    }
}
