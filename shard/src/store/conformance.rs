//! The behaviour every [`KvStore`] must have, as one suite run against each
//! implementation.

use super::{Cf, KvStore, WriteOp};

/// Runs every check, each on a fresh store from `make`.
pub fn run_all<S: KvStore>(mut make: impl FnMut() -> S) {
    writes_are_visible_and_families_are_separate(&make());
    deletes_remove_keys(&make());
    scans_respect_prefix_cursor_and_limit(&make());
    multi_get_keeps_order(&make());
    a_batch_applies_each_keys_ops_in_order(&make());
    side_files_are_replaced_read_by_range_and_removed(&make());
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

#[cfg(test)]
mod tests {
    #[test]
    fn mem_store_passes_the_conformance_suite() {
        super::run_all(super::super::mem::MemStore::default);
    }
}
