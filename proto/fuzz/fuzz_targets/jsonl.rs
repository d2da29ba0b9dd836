//! The JSON Lines reader, as shards run it on `ingest --file` input and the
//! CLI on `load FILE`: any bytes give atoms or one error, never a panic, a
//! hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_model::input::{AtomReader, Format, ReadLimits};
use lockstep_model::atom::flatten_batch;

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits {
        max_depth: 200,
        max_bytes: 1 << 20,
        ..Default::default()
    };
    let mut r = AtomReader::new(data, Format::JsonLines, limits);
    let mut atoms = Vec::new();
    while let Ok(Some(a)) = r.next_atom() {
        atoms.push(a);
    }
    for (a, _) in flatten_batch(&atoms) {
        let _ = a.incoming_refs();
    }
});
