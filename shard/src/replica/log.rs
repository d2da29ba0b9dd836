//! openraft's log storage over the shard's key-value store.
//!
//! Entries live in the `raft` family under `l` ++ index; the vote, the
//! committed id and the last purged id under `m/`. An append or a vote
//! returns (and an append calls openraft back) only once it is synced to
//! disk, whatever the store's own durability setting: Raft's safety rests
//! on both surviving a crash. The last entry's id is kept in memory, since
//! the store scans forward only; it is found once when the store opens.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use lockstep_proto::convert::raft::{
    decode_entry, encode_entry, log_id_from_pb, log_id_to_pb, vote_from_pb, vote_to_pb,
};
use lockstep_proto::pb;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, Vote};
use parking_lot::Mutex;
use prost::Message;

use super::{Replica, read_err, write_err};
use crate::Error;
use crate::store::{Cf, KvRead, KvStore, WriteOp};

const LOG_PREFIX: &[u8] = b"l";
const VOTE: &[u8] = b"m/vote";
const COMMITTED: &[u8] = b"m/committed";
const PURGED: &[u8] = b"m/purged";

/// Entries read per scan.
const PAGE: usize = 1_024;

fn entry_key(index: u64) -> Vec<u8> {
    let mut k = LOG_PREFIX.to_vec();
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn index_of(key: &[u8]) -> Result<u64, Error> {
    key.get(LOG_PREFIX.len()..)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Storage(format!("corrupt raft log key {key:?}")))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("corrupt raft {what}: {e}"))
}

pub(crate) fn get_pb<M: Message + Default, R: KvRead>(
    kv: &R,
    key: &[u8],
) -> Result<Option<M>, Error> {
    kv.get(Cf::Raft, key)?
        .map(|b| M::decode(b.as_slice()).map_err(|e| corrupt("record", e)))
        .transpose()
}

/// The log of one replica.
pub struct LogStore<S> {
    kv: S,
    /// The id of the last entry present, if any.
    last: Arc<Mutex<Option<LogId<u64>>>>,
}

impl<S: Clone> Clone for LogStore<S> {
    fn clone(&self) -> Self {
        LogStore {
            kv: self.kv.clone(),
            last: self.last.clone(),
        }
    }
}

impl<S: KvStore + Clone> LogStore<S> {
    /// The log kept in `kv`, finding its last entry.
    pub fn open(kv: S) -> Result<LogStore<S>, Error> {
        let store = LogStore {
            kv,
            last: Arc::new(Mutex::new(None)),
        };
        let mut last_bytes = None;
        store.walk(0, None, |_, v| {
            last_bytes = Some(v);
            Ok(())
        })?;
        if let Some(v) = last_bytes {
            let e: Entry<Replica> = decode_entry(&v).map_err(|e| corrupt("entry", e))?;
            *store.last.lock() = Some(e.log_id);
        }
        Ok(store)
    }

    fn purged(&self) -> Result<Option<LogId<u64>>, Error> {
        Ok(get_pb::<pb::RaftLogId, _>(&self.kv, PURGED)?.map(|l| log_id_from_pb(&l)))
    }

    /// Calls `f` with the key and bytes of each stored entry with
    /// index in `[from, end)` (to the last when `end` is `None`), in order,
    /// reading a page at a time.
    fn walk(
        &self,
        from: u64,
        end: Option<u64>,
        mut f: impl FnMut(Vec<u8>, Vec<u8>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut after = from.checked_sub(1).map(entry_key);
        loop {
            let rows = self.kv.scan(Cf::Raft, LOG_PREFIX, after.as_deref(), PAGE)?;
            let full = rows.len() == PAGE;
            after = rows.last().map(|(k, _)| k.clone());
            for (k, v) in rows {
                if end.is_some_and(|end| index_of(&k).is_ok_and(|i| i >= end)) {
                    return Ok(());
                }
                f(k, v)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Entries with index in `[start, end)`, as stored.
    fn entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry<Replica>>, Error> {
        let mut out = Vec::new();
        self.walk(start, end, |_, v| {
            out.push(decode_entry(&v).map_err(|e| corrupt("entry", e))?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Keys of entries with index `>= from`, up to `to` inclusive when
    /// given.
    fn keys_between(&self, from: u64, to: Option<u64>) -> Result<Vec<Vec<u8>>, Error> {
        let mut keys = Vec::new();
        self.walk(from, to.map(|t| t.saturating_add(1)), |k, _| {
            keys.push(k);
            Ok(())
        })?;
        Ok(keys)
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e.saturating_add(1)),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl<S: KvStore + Clone> RaftLogReader<Replica> for LogStore<S> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<Replica>>, StorageError<u64>> {
        let (start, end) = bounds(&range);
        self.entries(start, end).map_err(|e| read_err(&e))
    }
}

impl<S: KvStore + Clone> RaftLogStorage<Replica> for LogStore<S> {
    type LogReader = LogStore<S>;

    async fn get_log_state(&mut self) -> Result<LogState<Replica>, StorageError<u64>> {
        let purged = self.purged().map_err(|e| read_err(&e))?;
        let last = (*self.last.lock()).or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.kv
            .write_sync(vec![WriteOp::Put(
                Cf::Raft,
                VOTE.to_vec(),
                vote_to_pb(vote).encode_to_vec(),
            )])
            .map_err(|e| write_err(&e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(get_pb::<pb::RaftVote, _>(&self.kv, VOTE)
            .map_err(|e| read_err(&e))?
            .map(|v| vote_from_pb(&v)))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        let op = match committed {
            Some(c) => WriteOp::Put(
                Cf::Raft,
                COMMITTED.to_vec(),
                log_id_to_pb(&c).encode_to_vec(),
            ),
            None => WriteOp::Delete(Cf::Raft, COMMITTED.to_vec()),
        };
        // Not synced: a committed id lost in a crash is learnt again from
        // the leader; it only saves re-applying entries after a restart.
        self.kv.write(vec![op]).map_err(|e| write_err(&e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(get_pb::<pb::RaftLogId, _>(&self.kv, COMMITTED)
            .map_err(|e| read_err(&e))?
            .map(|l| log_id_from_pb(&l)))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Replica>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Replica>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut ops = Vec::new();
        let mut last = None;
        for e in entries {
            ops.push(WriteOp::Put(
                Cf::Raft,
                entry_key(e.log_id.index),
                encode_entry(&e),
            ));
            last = Some(e.log_id);
        }
        if ops.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // One synced write for the whole batch openraft hands over: the
        // group commit of many proposals.
        match self.kv.write_sync(ops) {
            Ok(()) => {
                *self.last.lock() = last;
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = write_err(&e);
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let keys = self
            .keys_between(log_id.index, None)
            .map_err(|e| read_err(&e))?;
        let ops = keys
            .into_iter()
            .map(|k| WriteOp::Delete(Cf::Raft, k))
            .collect();
        self.kv.write_sync(ops).map_err(|e| write_err(&e))?;
        let before = match log_id.index.checked_sub(1) {
            Some(i) => self
                .entries(i, Some(i + 1))
                .map_err(|e| read_err(&e))?
                .pop()
                .map(|e| e.log_id),
            None => None,
        };
        *self.last.lock() = before;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let keys = self
            .keys_between(0, Some(log_id.index))
            .map_err(|e| read_err(&e))?;
        let mut ops: Vec<WriteOp> = keys
            .into_iter()
            .map(|k| WriteOp::Delete(Cf::Raft, k))
            .collect();
        ops.push(WriteOp::Put(
            Cf::Raft,
            PURGED.to_vec(),
            log_id_to_pb(&log_id).encode_to_vec(),
        ));
        self.kv.write_sync(ops).map_err(|e| write_err(&e))?;
        let mut last = self.last.lock();
        if last.is_none_or(|l| l.index <= log_id.index) {
            *last = None;
        }
        Ok(())
    }
}
