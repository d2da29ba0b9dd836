//! The STI column: a workload's committed per-vertex STI, stored as chunked
//! arrays in the meta family.
//!
//! The attention workload updates the STI of every vertex on every tick. As
//! one record per vertex that is a read-modify-write of a million records a
//! tick; as a column it is a few hundred large values (8 bytes a vertex).
//!
//! # Keys (meta family)
//! - `sti_col` -> the committed [`StiColumn`] pointer (absent: no column);
//! - `col/` ++ id (u64 BE) ++ `h` ++ chunk (u32 BE) -> the chunk's handles,
//!   16 bytes each, ascending;
//! - `col/` ++ id ++ `x` ++ buffer (u8) ++ chunk (u32 BE) -> the chunk's
//!   values, f64 little-endian.
//!
//! # Two buffers
//! A tick's prepare writes its values in place, into the buffer the committed
//! pointer does not name, so they are durable but invisible. Its commit is
//! one small write that points `sti_col` at that buffer and records the
//! tick. An abort leaves the pointer alone; the next prepare overwrites the
//! spare buffer.
//!
//! # Precedence
//! While a column is committed its values are the STI of the atoms it
//! covers: reads overlay them on the atoms' records. Every other write
//! (a put, a delete, a tick that writes atoms) first folds the column into
//! the records and removes it, so no write ever races an overlay.

use std::sync::Arc;

use lockstep_proto::{Handle, StiColumn};

use crate::Error;
use crate::store::{Cf, WriteOp};

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

    /// The puts of the value chunks into `buffer`.
    pub fn value_ops(&self, buffer: u8, ops: &mut Vec<WriteOp>) {
        for (c, xs) in self.values.chunks(StiColumn::CHUNK).enumerate() {
            let mut v = Vec::with_capacity(xs.len() * 8);
            for x in xs {
                v.extend_from_slice(&x.to_le_bytes());
            }
            ops.push(WriteOp::Put(Cf::Meta, values_key(self.id, buffer, c), v));
        }
    }
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

/// The key of chunk `chunk`'s values in `buffer`.
pub fn values_key(id: u64, buffer: u8, chunk: usize) -> Vec<u8> {
    let mut k = prefix(id);
    k.push(b'x');
    k.push(buffer);
    k.extend_from_slice(&(chunk as u32).to_be_bytes());
    k
}

/// The deletes of every key of column `id` with `len` vertices.
pub fn delete_ops(id: u64, len: u64, ops: &mut Vec<WriteOp>) {
    for c in 0..(len as usize).div_ceil(StiColumn::CHUNK) {
        ops.push(WriteOp::Delete(Cf::Meta, handles_key(id, c)));
        ops.push(WriteOp::Delete(Cf::Meta, values_key(id, 0, c)));
        ops.push(WriteOp::Delete(Cf::Meta, values_key(id, 1, c)));
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
