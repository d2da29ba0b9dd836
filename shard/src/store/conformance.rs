//! The behaviour every [`KvStore`] must have, as one suite run against each
//! implementation.

use super::{Cf, KvRead, KvStore, WriteOp};

/// Runs every check, each on a fresh store from `make`.
pub fn run_all<S: KvStore>(mut make: impl FnMut() -> S) {
    writes_are_visible_and_families_are_separate(&make());
    deletes_remove_keys(&make());
    scans_respect_prefix_cursor_and_limit(&make());
    scans_of_store_shaped_keys_match_a_sorted_map(&make());
    multi_get_keeps_order(&make());
    a_batch_applies_each_keys_ops_in_order(&make());
    side_files_are_replaced_read_by_range_and_removed(&make());
    a_snapshot_keeps_what_it_saw(&make());
    a_synced_write_is_a_write(&make());
}

fn put(cf: Cf, k: &[u8], v: &[u8]) -> WriteOp {
    WriteOp::Put(cf, k.to_vec(), v.to_vec())
}

fn writes_are_visible_and_families_are_separate<S: KvStore>(s: &S) {
    s.write(vec![put(Cf::Atoms, b"k", b"a"), put(Cf::Meta, b"k", b"m")])
        .unwrap();
    assert_eq!(s.get(Cf::Atoms, b"k").unwrap(), Some(b"a".to_vec()));
    assert_eq!(s.get(Cf::Meta, b"k").unwrap(), Some(b"m".to_vec()));
    assert_eq!(s.get(Cf::Incoming, b"k").unwrap(), None);
}

fn deletes_remove_keys<S: KvStore>(s: &S) {
    s.write(vec![put(Cf::Atoms, b"x", b"1")]).unwrap();
    // A put and a delete of the same key in one batch: the last op wins.
    s.write(vec![
        WriteOp::Delete(Cf::Atoms, b"x".to_vec()),
        put(Cf::Atoms, b"y", b"2"),
        WriteOp::Delete(Cf::Atoms, b"y".to_vec()),
    ])
    .unwrap();
    assert_eq!(s.get(Cf::Atoms, b"x").unwrap(), None);
    assert_eq!(s.get(Cf::Atoms, b"y").unwrap(), None);
}

fn a_batch_applies_each_keys_ops_in_order<S: KvStore>(s: &S) {
    // Keys out of order and repeated, across families: a store may reorder
    // a batch by key, but never the ops of one key.
    s.write(vec![
        put(Cf::Meta, b"z", b"1"),
        put(Cf::Atoms, b"z", b"1"),
        put(Cf::Atoms, b"a", b"1"),
        put(Cf::Atoms, b"z", b"2"),
        WriteOp::Delete(Cf::Atoms, b"a".to_vec()),
        put(Cf::Atoms, b"m", b"1"),
        put(Cf::Atoms, b"a", b"3"),
        WriteOp::Delete(Cf::Meta, b"z".to_vec()),
    ])
    .unwrap();
    assert_eq!(s.get(Cf::Atoms, b"z").unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.get(Cf::Atoms, b"a").unwrap(), Some(b"3".to_vec()));
    assert_eq!(s.get(Cf::Atoms, b"m").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get(Cf::Meta, b"z").unwrap(), None);
}

fn scans_respect_prefix_cursor_and_limit<S: KvStore>(s: &S) {
    let ops = [b"a1", b"b1", b"b2", b"b3", b"c1"]
        .iter()
        .map(|k| put(Cf::Incoming, *k, b""))
        .collect();
    s.write(ops).unwrap();
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(s.scan(Cf::Incoming, b"b", None, 10).unwrap()),
        vec![b"b1".to_vec(), b"b2".to_vec(), b"b3".to_vec()]
    );
    assert_eq!(
        keys(s.scan(Cf::Incoming, b"b", Some(b"b1"), 1).unwrap()),
        vec![b"b2".to_vec()]
    );
    assert!(
        s.scan(Cf::Incoming, b"b", Some(b"b3"), 10)
            .unwrap()
            .is_empty()
    );
    assert!(s.scan(Cf::Incoming, b"z", None, 10).unwrap().is_empty());
    assert!(s.scan(Cf::Atoms, b"b", None, 10).unwrap().is_empty());
}

/// Keys shaped like the shard's (16-byte targets then 16-byte links; `a`
/// and `t`+type keys), half flushed to disk and half in memory, scanned by
/// prefixes as long as a handle, shorter, and empty: a store that buckets
/// keys by prefix must still return exactly the sorted range.
fn scans_of_store_shaped_keys_match_a_sorted_map<S: KvStore>(s: &S) {
    use std::collections::BTreeMap;
    let mut want: BTreeMap<(Cf, Vec<u8>), Vec<u8>> = BTreeMap::new();
    let handle = |i: u32| -> [u8; 16] {
        let x = u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        x.to_be_bytes()
    };
    for round in 0..2u32 {
        let mut ops = Vec::new();
        for t in 0..24u32 {
            for l in 0..4u32 {
                let mut k = handle(t).to_vec();
                k.extend_from_slice(&handle(1_000 + 4 * t + l + 100 * round));
                ops.push(put(Cf::Incoming, &k, &[t as u8, l as u8]));
            }
            let mut a = vec![b'a'];
            a.extend_from_slice(&handle(t + 50 * round));
            ops.push(put(Cf::Atoms, &a, b"rec"));
            let mut ty = vec![b't', 0, (t % 3) as u8];
            ty.extend_from_slice(&handle(t + 50 * round));
            ops.push(put(Cf::Atoms, &ty, b""));
        }
        for op in &ops {
            if let WriteOp::Put(cf, k, v) = op {
                want.insert((*cf, k.clone()), v.clone());
            }
        }
        s.write(ops).unwrap();
        if round == 0 {
            s.flush().unwrap();
        }
    }
    let expect = |cf: Cf, prefix: &[u8], after: Option<&[u8]>| -> Vec<(Vec<u8>, Vec<u8>)> {
        want.iter()
            .filter(|((c, k), _)| *c == cf && k.starts_with(prefix))
            .filter(|((_, k), _)| after.is_none_or(|a| k.as_slice() > a))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut prefixes: Vec<(Cf, Vec<u8>)> = vec![
        (Cf::Incoming, Vec::new()),
        (Cf::Atoms, Vec::new()),
        (Cf::Atoms, b"t".to_vec()),
        (Cf::Atoms, b"a".to_vec()),
    ];
    for t in 0..24u32 {
        prefixes.push((Cf::Incoming, handle(t).to_vec()));
        prefixes.push((Cf::Incoming, handle(t)[..1].to_vec()));
        prefixes.push((Cf::Incoming, handle(t)[..15].to_vec()));
    }
    for ty in 0..4u8 {
        prefixes.push((Cf::Atoms, vec![b't', 0, ty]));
    }
    for (cf, prefix) in &prefixes {
        let all = expect(*cf, prefix, None);
        assert_eq!(
            s.scan(*cf, prefix, None, usize::MAX).unwrap(),
            all,
            "{cf:?} {prefix:x?}"
        );
        if let Some((mid, _)) = all.get(all.len() / 2) {
            assert_eq!(
                s.scan(*cf, prefix, Some(mid), 3).unwrap(),
                expect(*cf, prefix, Some(mid))
                    .into_iter()
                    .take(3)
                    .collect::<Vec<_>>(),
                "{cf:?} {prefix:x?} after {mid:x?}"
            );
        }
    }
    assert_eq!(expect(Cf::Incoming, &[], None).len(), 24 * 4 * 2);
}

fn side_files_are_replaced_read_by_range_and_removed<S: KvStore>(s: &S) {
    assert_eq!(s.read_file("f.0", 0, 1).unwrap(), None);
    s.put_file("f.0", b"abcdefgh").unwrap();
    s.put_file("f.1", b"other").unwrap();
    assert_eq!(
        s.read_file("f.0", 0, 8).unwrap(),
        Some(b"abcdefgh".to_vec())
    );
    assert_eq!(s.read_file("f.0", 3, 2).unwrap(), Some(b"de".to_vec()));
    assert_eq!(s.read_file("f.0", 8, 0).unwrap(), Some(Vec::new()));
    // A shorter rewrite leaves nothing of the old contents behind it.
    s.put_file("f.0", b"xyz").unwrap();
    assert_eq!(s.read_file("f.0", 0, 3).unwrap(), Some(b"xyz".to_vec()));
    assert!(s.read_file("f.0", 0, 4).is_err(), "read past the end");
    assert!(
        s.read_file("f.0", u64::MAX, 1).is_err(),
        "offset past the end"
    );
    s.put_file("f.0", b"0123456789").unwrap();
    assert_eq!(s.read_file("f.0", 6, 4).unwrap(), Some(b"6789".to_vec()));
    assert_eq!(s.read_file("f.1", 0, 5).unwrap(), Some(b"other".to_vec()));
    s.remove_file("f.0").unwrap();
    s.remove_file("f.0").unwrap();
    assert_eq!(s.read_file("f.0", 0, 1).unwrap(), None);
    assert!(s.put_file("../f", b"x").is_err(), "a path is not a name");
}

fn multi_get_keeps_order<S: KvStore>(s: &S) {
    s.write(vec![
        put(Cf::Atoms, b"1", b"one"),
        put(Cf::Atoms, b"3", b"three"),
    ])
    .unwrap();
    let got = s
        .multi_get(Cf::Atoms, &[b"3".to_vec(), b"2".to_vec(), b"1".to_vec()])
        .unwrap();
    assert_eq!(
        got,
        vec![Some(b"three".to_vec()), None, Some(b"one".to_vec())]
    );
}

fn a_snapshot_keeps_what_it_saw<S: KvStore>(s: &S) {
    s.write(vec![
        put(Cf::Atoms, b"p/1", b"a"),
        put(Cf::Atoms, b"p/2", b"b"),
        put(Cf::Meta, b"m", b"1"),
    ])
    .unwrap();
    let snap = s.snapshot();
    s.write(vec![
        put(Cf::Atoms, b"p/1", b"changed"),
        WriteOp::Delete(Cf::Atoms, b"p/2".to_vec()),
        put(Cf::Atoms, b"p/3", b"new"),
        WriteOp::Delete(Cf::Meta, b"m".to_vec()),
    ])
    .unwrap();
    let keys = [b"p/1".to_vec(), b"p/2".to_vec(), b"p/3".to_vec()];
    assert_eq!(
        snap.multi_get(Cf::Atoms, &keys).unwrap(),
        vec![Some(b"a".to_vec()), Some(b"b".to_vec()), None]
    );
    assert_eq!(snap.get(Cf::Meta, b"m").unwrap(), Some(b"1".to_vec()));
    let rows = snap.scan(Cf::Atoms, b"p/", None, 10).unwrap();
    assert_eq!(
        rows,
        vec![
            (b"p/1".to_vec(), b"a".to_vec()),
            (b"p/2".to_vec(), b"b".to_vec())
        ]
    );
    assert_eq!(
        snap.scan(Cf::Atoms, b"p/", Some(b"p/1"), 10).unwrap().len(),
        1
    );
    // The live store moved on.
    assert_eq!(
        s.multi_get(Cf::Atoms, &keys).unwrap(),
        vec![Some(b"changed".to_vec()), None, Some(b"new".to_vec())]
    );
    // A snapshot taken now sees the new state, and dropping the old one
    // changes nothing.
    drop(snap);
    let now = s.snapshot();
    assert_eq!(now.scan(Cf::Atoms, b"p/", None, 10).unwrap().len(), 2);
    // Side files are read live.
    s.put_file("f", b"xyz").unwrap();
    assert_eq!(now.read_file("f", 1, 2).unwrap(), Some(b"yz".to_vec()));
}

fn a_synced_write_is_a_write<S: KvStore>(s: &S) {
    s.write_sync(vec![
        put(Cf::Raft, b"k", b"r"),
        put(Cf::Atoms, b"k", b"a"),
        WriteOp::Delete(Cf::Raft, b"gone".to_vec()),
    ])
    .unwrap();
    assert_eq!(s.get(Cf::Raft, b"k").unwrap(), Some(b"r".to_vec()));
    assert_eq!(s.get(Cf::Atoms, b"k").unwrap(), Some(b"a".to_vec()));
    assert_eq!(s.get(Cf::Meta, b"k").unwrap(), None);
    s.write_sync(vec![WriteOp::Delete(Cf::Raft, b"k".to_vec())])
        .unwrap();
    assert_eq!(s.get(Cf::Raft, b"k").unwrap(), None);
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_store_passes_the_conformance_suite() {
        super::run_all(super::super::mem::MemStore::default);
    }
}
