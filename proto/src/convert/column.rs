//! The STI column pointer.

use crate::ProtoError;
use crate::pb;
use lockstep_model::atom::{Handle, StiColumn};

impl From<&StiColumn> for pb::StiColumn {
    fn from(c: &StiColumn) -> Self {
        let mut firsts = Vec::with_capacity(c.firsts.len() * 16);
        for h in &c.firsts {
            firsts.extend_from_slice(&h.to_bytes());
        }
        pb::StiColumn {
            id: c.id,
            buffer: u32::from(c.buffer),
            len: c.len,
            firsts,
        }
    }
}

impl TryFrom<pb::StiColumn> for StiColumn {
    type Error = ProtoError;

    fn try_from(c: pb::StiColumn) -> Result<Self, ProtoError> {
        if c.buffer > 1 || !c.firsts.len().is_multiple_of(16) {
            return Err(ProtoError::Corrupt(format!(
                "STI column with buffer {} and {} bytes of chunk heads",
                c.buffer,
                c.firsts.len()
            )));
        }
        let firsts = c
            .firsts
            .chunks_exact(16)
            .map(Handle::from_slice)
            .collect::<Result<Vec<_>, _>>()?;
        let chunks = (c.len as usize).div_ceil(StiColumn::CHUNK);
        if firsts.len() != chunks || !firsts.is_sorted() {
            return Err(ProtoError::Corrupt(format!(
                "STI column of {} vertices with {} chunk heads",
                c.len,
                firsts.len()
            )));
        }
        Ok(StiColumn {
            id: c.id,
            buffer: c.buffer as u8,
            len: c.len,
            firsts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_corrupt_pointers() {
        let firsts: Vec<Handle> = (0..3u128).map(|i| Handle(i << 100)).collect();
        let c = StiColumn {
            id: 42,
            buffer: 1,
            len: 2 * StiColumn::CHUNK as u64 + 7,
            firsts,
        };
        let back = StiColumn::try_from(pb::StiColumn::from(&c)).unwrap();
        assert_eq!(back, c);

        let mut bad = pb::StiColumn::from(&c);
        bad.buffer = 2;
        assert!(StiColumn::try_from(bad).is_err());
        let mut bad = pb::StiColumn::from(&c);
        bad.len = 1;
        assert!(StiColumn::try_from(bad).is_err());
        let mut bad = pb::StiColumn::from(&c);
        bad.firsts.pop();
        assert!(StiColumn::try_from(bad).is_err());
    }
}
