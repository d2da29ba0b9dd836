//! The STI column: a workload's committed per-vertex STI, stored as one
//! array of values beside a chunked, sorted handle list.
//!
//! The attention workload updates the STI of every vertex on every tick. As
//! one record per vertex that is a read-modify-write of a million records a
//! tick; as a column it is one 8-byte value per vertex, written in one go.
//!
//! # Where it lives
//! - meta `sti_col` -> the committed [`StiColumn`] pointer (absent: no
//!   column);
//! - meta `col/` ++ id (u64 BE) ++ `h` ++ chunk (u32 BE) -> the chunk's
//!   handles, 16 bytes each, ascending; written once per vertex set;
//! - side files `sti.0` and `sti.1` (see [`KvStore::put_file`]): the two
//!   value buffers, f64 little-endian in handle order. Kept out of RocksDB
//!   because they are rewritten whole every tick: through the write-ahead
//!   log that was 8 MB of log record, memtable and flush per million
//!   vertices a tick, for values that one `pwrite` stores.
//!
//! # Two buffers
//! A tick's prepare writes its values in place, into the buffer the committed
//! pointer does not name, so they are durable but invisible. Its commit is
//! one small RocksDB write that points `sti_col` at that buffer and records
//! the tick. An abort leaves the pointer alone; the next prepare overwrites
//! the spare buffer. A crash in the middle of a buffer's write therefore
//! tears only a buffer nothing names.
//!
//! # Precedence
//! While a column is committed its values are the STI of the atoms it
//! covers: reads overlay them on the atoms' records. Every other write
//! (a put, a delete, a tick that writes atoms) first folds the column into
//! the records and removes it, so no write ever races an overlay.

use std::sync::Arc;

use lockstep_model::{Handle, StiColumn};

use crate::Error;
use crate::store::{Cf, KvRead, KvStore, WriteOp};

/// The key of the committed column pointer.
pub const POINTER: &[u8] = b"sti_col";

/// A column a tick stages: the sorted vertex set and its new values.
#[derive(Clone, Debug)]
pub struct ColumnWrite {
    pub id: u64,
    pub handles: Arc<Vec<Handle>>,
    pub values: Arc<Vec<f64>>,
}

impl ColumnWrite {
    /// Stages `values` for the sorted vertex set `handles` (whose column id
    /// is `id`, from [`StiColumn::id_of`]).
    pub fn new(id: u64, handles: Arc<Vec<Handle>>, values: Arc<Vec<f64>>) -> ColumnWrite {
        debug_assert_eq!(handles.len(), values.len());
        ColumnWrite {
            id,
            handles,
            values,
        }
    }

    /// The pointer that makes these values current once committed.
    pub fn pointer(&self, buffer: u8) -> StiColumn {
        StiColumn {
            id: self.id,
            buffer,
            len: self.handles.len() as u64,
            firsts: self
                .handles
                .chunks(StiColumn::CHUNK)
                .map(|c| c[0])
                .collect(),
        }
    }

    /// The puts of the handle chunks.
    pub fn handle_ops(&self, ops: &mut Vec<WriteOp>) {
        for (c, hs) in self.handles.chunks(StiColumn::CHUNK).enumerate() {
            let mut v = Vec::with_capacity(hs.len() * 16);
            for h in hs {
                v.extend_from_slice(&h.to_bytes());
            }
            ops.push(WriteOp::Put(Cf::Meta, handles_key(self.id, c), v));
        }
    }

    /// Writes the values into side file `buffer`.
    pub fn write_values<S: KvStore>(&self, kv: &S, buffer: u8) -> Result<(), Error> {
        kv.put_file(values_file(buffer), &f64s_to_le_bytes(&self.values))
    }
}

/// The values as little-endian bytes, borrowed where that is the memory
/// layout already.
fn f64s_to_le_bytes(xs: &[f64]) -> std::borrow::Cow<'_, [u8]> {
    #[cfg(target_endian = "little")]
    {
        // An f64 is 8 plain bytes: bytemuck checks that at compile time.
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(xs))
    }
    #[cfg(not(target_endian = "little"))]
    {
        std::borrow::Cow::Owned(xs.iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

/// The side file of value buffer `buffer`.
pub fn values_file(buffer: u8) -> &'static str {
    if buffer == 0 { "sti.0" } else { "sti.1" }
}

/// Reads chunk `chunk` of `col`: its handles and committed values.
pub fn read_chunk<S: KvRead>(
    kv: &S,
    col: &StiColumn,
    chunk: usize,
) -> Result<(Vec<Handle>, Vec<f64>), Error> {
    let first = chunk * StiColumn::CHUNK;
    let n = (col.len as usize)
        .saturating_sub(first)
        .min(StiColumn::CHUNK);
    let h = kv.get(Cf::Meta, &handles_key(col.id, chunk))?;
    let x = kv.read_file(values_file(col.buffer), (first * 8) as u64, n * 8)?;
    decode_chunk(h, x)
}

/// Every committed value of `col`, in handle order: one read.
pub fn read_values<S: KvRead>(kv: &S, col: &StiColumn) -> Result<Vec<f64>, Error> {
    let n = col.len as usize;
    let b = kv
        .read_file(values_file(col.buffer), 0, n * 8)?
        .ok_or_else(|| Error::Storage("STI column values missing".into()))?;
    Ok(b.chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

/// Removes both value buffers: after the column's pointer is gone.
pub fn remove_values<S: KvStore>(kv: &S) -> Result<(), Error> {
    kv.remove_file(values_file(0))?;
    kv.remove_file(values_file(1))
}

fn prefix(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(b"col/");
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The key of chunk `chunk`'s handles.
pub fn handles_key(id: u64, chunk: usize) -> Vec<u8> {
    let mut k = prefix(id);
    k.push(b'h');
    k.extend_from_slice(&(chunk as u32).to_be_bytes());
    k
}

/// Moves the values of `col` out of the meta keys where stores written
/// before side files kept them (`col/` ++ id ++ `x` ++ buffer ++ chunk),
/// into the side file of `col`'s buffer, and removes those keys once moved.
/// A no-op when the side file is there already. Run at open, before any
/// read.
pub fn upgrade<S: KvStore>(kv: &S, col: &StiColumn) -> Result<(), Error> {
    let n = col.len as usize * 8;
    // Its last value there means the file is whole: no need to read 8 MB.
    let last = (n as u64).saturating_sub(8);
    if n > 0
        && kv
            .read_file(values_file(col.buffer), last, 8)
            .is_ok_and(|f| f.is_some())
    {
        return Ok(());
    }
    let mut old = prefix(col.id);
    old.push(b'x');
    let rows = kv.scan(Cf::Meta, &old, None, usize::MAX)?;
    if rows.is_empty() {
        return Ok(());
    }
    let mut mine = prefix(col.id);
    mine.extend_from_slice(&[b'x', col.buffer]);
    let values: Vec<u8> = rows
        .iter()
        .filter(|(k, _)| k.starts_with(&mine))
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    if values.len() != n {
        // Not a whole column: leave the keys for a person to look at; reads
        // of the column give a typed error.
        return Ok(());
    }
    kv.put_file(values_file(col.buffer), &values)?;
    kv.write(
        rows.into_iter()
            .map(|(k, _)| WriteOp::Delete(Cf::Meta, k))
            .collect(),
    )
}

/// The deletes of the handle keys of column `id` with `len` vertices.
pub fn delete_ops(id: u64, len: u64, ops: &mut Vec<WriteOp>) {
    for c in 0..(len as usize).div_ceil(StiColumn::CHUNK) {
        ops.push(WriteOp::Delete(Cf::Meta, handles_key(id, c)));
    }
}

/// Decodes a chunk's handles and values, checking they agree.
pub fn decode_chunk(
    handles: Option<Vec<u8>>,
    values: Option<Vec<u8>>,
) -> Result<(Vec<Handle>, Vec<f64>), Error> {
    let (Some(h), Some(x)) = (handles, values) else {
        return Err(Error::Storage("STI column chunk missing".into()));
    };
    if !h.len().is_multiple_of(16) || !x.len().is_multiple_of(8) || h.len() / 16 != x.len() / 8 {
        return Err(Error::Storage(format!(
            "STI column chunk of {} handle bytes and {} value bytes",
            h.len(),
            x.len()
        )));
    }
    let hs = h
        .chunks_exact(16)
        .map(Handle::from_slice)
        .collect::<Result<Vec<_>, _>>()?;
    let xs = x
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    Ok((hs, xs))
}
