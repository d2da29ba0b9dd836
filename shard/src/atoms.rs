//! Atom semantics on top of a [`KvStore`]: keys, encodings, per-type counts,
//! upserts that keep values a write does not carry, incoming sets, deletes
//! and scans.
//!
//! # Keys
//! - `atoms`: `b'a' ++ handle` -> `StoredAtom`; `b't' ++ type id (u16 BE) ++
//!   handle` -> empty, the by-type index.
//! - `incoming`: `target ++ link` -> `StoredIncoming`, one key per member so
//!   that an incoming set never becomes one growing value.
//! - `meta`: `shard_id`, `cluster_id`, `count/<type id>`, `incoming_count`.

use std::collections::{BTreeMap, HashMap};

use lockstep_proto::convert::{decode_incoming, decode_stored, encode_incoming, encode_stored};
use lockstep_proto::model::AtomRecord;
use lockstep_proto::{AtomType, FlatAtom, Handle, IncomingRef, ShardId};
use parking_lot::Mutex;

use crate::Error;
use crate::store::{Cf, KvStore, WriteOp};

const ATOM_PREFIX: u8 = b'a';
const TYPE_PREFIX: u8 = b't';
const META_SHARD_ID: &[u8] = b"shard_id";
const META_CLUSTER_ID: &[u8] = b"cluster_id";
const META_COUNT_PREFIX: &[u8] = b"count/";
const META_INCOMING_COUNT: &[u8] = b"incoming_count";

fn atom_key(h: Handle) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(ATOM_PREFIX);
    k.extend_from_slice(&h.to_bytes());
    k
}

fn type_key(ty: &AtomType, h: Handle) -> Vec<u8> {
    let mut k = type_prefix(ty);
    k.extend_from_slice(&h.to_bytes());
    k
}

fn type_prefix(ty: &AtomType) -> Vec<u8> {
    let mut k = Vec::with_capacity(19);
    k.push(TYPE_PREFIX);
    k.extend_from_slice(&ty.id.to_be_bytes());
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
}

impl<S: KvStore> AtomStore<S> {
    /// Wraps a store, loading its counters.
    pub fn open(kv: S) -> Result<AtomStore<S>, Error> {
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
        Ok(AtomStore {
            kv,
            counts: Mutex::new(counts),
        })
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
        let mut counts = self.counts.lock();
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
                            let mut rec = decode_stored(a.handle, &bytes)?;
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
            if *is_new {
                ops.push(WriteOp::Put(Cf::Atoms, type_key(rec.ty, *h), Vec::new()));
                *next.by_type.entry(rec.ty.id).or_default() += 1;
                out.created += 1;
            } else if *changed {
                out.updated += 1;
            }
            if *changed {
                ops.push(WriteOp::Put(Cf::Atoms, atom_key(*h), encode_stored(rec)));
            }
        }

        let ikeys: Vec<Vec<u8>> = incoming
            .iter()
            .map(|r| incoming_key(r.target, r.link))
            .collect();
        let iexisting = self.kv.multi_get(Cf::Incoming, &ikeys)?;
        let mut seen = std::collections::HashSet::new();
        for ((r, key), old) in incoming.iter().zip(ikeys).zip(iexisting) {
            if old.is_none() && seen.insert(key.clone()) {
                ops.push(WriteOp::Put(Cf::Incoming, key, encode_incoming(r)));
                next.incoming += 1;
                out.incoming += 1;
            }
        }
        self.push_count_ops(&counts, &next, &mut ops);
        if !ops.is_empty() {
            self.kv.write(ops)?;
        }
        *counts = next;
        Ok(out)
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

    /// Reads atoms by handle; one entry per handle, in order.
    pub fn get(&self, handles: &[Handle]) -> Result<Vec<Option<AtomRecord>>, Error> {
        let keys: Vec<Vec<u8>> = handles.iter().map(|h| atom_key(*h)).collect();
        self.kv
            .multi_get(Cf::Atoms, &keys)?
            .into_iter()
            .zip(handles)
            .map(|(v, h)| {
                v.map(|b| decode_stored(*h, &b).map_err(Error::from))
                    .transpose()
            })
            .collect()
    }

    /// Whether `h` has any incoming-set entry.
    pub fn has_incoming(&self, h: Handle) -> Result<bool, Error> {
        Ok(!self
            .kv
            .scan(Cf::Incoming, &h.to_bytes(), None, 1)?
            .is_empty())
    }

    /// A page of `target`'s incoming set, after link `after`.
    pub fn incoming(
        &self,
        target: Handle,
        after: Option<Handle>,
        limit: usize,
    ) -> Result<(Vec<IncomingRef>, bool), Error> {
        let prefix = target.to_bytes();
        let after_key = after.map(|a| incoming_key(target, a));
        let mut rows = self
            .kv
            .scan(Cf::Incoming, &prefix, after_key.as_deref(), limit + 1)?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let refs = rows
            .into_iter()
            .map(|(k, v)| {
                let link = Handle::from_slice(&k[16..])?;
                Ok(decode_incoming(target, link, &v)?)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok((refs, more))
    }

    /// Deletes atoms that have no incoming set, atomically: if any has one,
    /// nothing is deleted. Returns the records deleted (absent handles are
    /// skipped).
    pub fn delete(&self, handles: &[Handle]) -> Result<Vec<AtomRecord>, Error> {
        let mut counts = self.counts.lock();
        for &h in handles {
            if self.has_incoming(h)? {
                return Err(Error::HasIncoming(h));
            }
        }
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
            ops.push(WriteOp::Delete(Cf::Atoms, type_key(rec.ty, *h)));
            let c = next.by_type.entry(rec.ty.id).or_default();
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

    /// A page of atoms of type `ty`, in handle order, after `after`.
    pub fn scan_type(
        &self,
        ty: &'static AtomType,
        after: Option<Handle>,
        limit: usize,
    ) -> Result<(Vec<AtomRecord>, bool), Error> {
        let prefix = type_prefix(ty);
        let after_key = after.map(|a| type_key(ty, a));
        let mut rows = self
            .kv
            .scan(Cf::Atoms, &prefix, after_key.as_deref(), limit + 1)?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let handles = rows
            .iter()
            .map(|(k, _)| Handle::from_slice(&k[prefix.len()..]))
            .collect::<Result<Vec<_>, _>>()?;
        let recs = self.get(&handles)?.into_iter().flatten().collect();
        Ok((recs, more))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use lockstep_proto::TruthValue;

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
}
