//! Loading, reading back and status across real shard processes.

use std::time::Duration;

use lockstep::input::generate::generate;
use lockstep::model::{Atom, AtomType, FlatAtom, Handle};

use crate::util::{TestCluster, lockstep, text, wait_for, wait_for_total};

/// Every distinct flat atom in `atoms`, by handle.
pub fn expected(atoms: &[Atom]) -> std::collections::HashMap<Handle, FlatAtom> {
    let mut flat = Vec::new();
    for a in atoms {
        a.flatten_into(&mut flat);
    }
    let mut out = std::collections::HashMap::new();
    for (f, _) in flat {
        let e = out.entry(f.handle).or_insert_with(|| f.clone());
        if f.tv.is_some() {
            e.tv = f.tv;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_load_100k_generated_atoms_and_read_every_one_back() {
    let tc = TestCluster::start(3).await;
    let out = lockstep(&[
        "--coordinator",
        &tc.addr(),
        "load",
        "--generate",
        "100000",
        "--seed",
        "1",
    ])
    .await;
    assert!(out.status.success(), "load failed: {}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.contains("loaded 100000 atoms") && summary.contains("atoms/s"),
        "{summary}"
    );

    let client = tc.client().await;
    let want = expected(&generate(100_000, 1));
    assert_eq!(want.len(), 100_000);
    let handles: Vec<Handle> = want.keys().copied().collect();
    let got = client.get(&handles).await.unwrap();
    for (h, rec) in handles.iter().zip(&got) {
        let rec = rec.as_ref().unwrap_or_else(|| panic!("atom {h} missing"));
        let w = &want[h];
        assert_eq!(rec.ty, w.ty);
        assert_eq!(rec.tv, w.tv.unwrap_or_default(), "tv of {h}");
        assert_eq!(rec.outgoing, w.outgoing);
    }

    // The per-shard counts in status add up, and every shard holds a share.
    let st = wait_for_total(&client, 100_000).await;
    assert_eq!(st.shards.len(), 3);
    for s in &st.shards {
        let m = s.metrics.as_ref().unwrap();
        assert!(m.atoms > 10_000, "shard holds only {} atoms", m.atoms);
        let by_type: u64 = m.type_counts.values().sum();
        assert_eq!(by_type, m.atoms);
    }
    assert!(
        st.balance >= 1.0 && st.balance < 1.5,
        "balance {}",
        st.balance
    );

    // `status` prints the same numbers as a table and as JSON.
    let out = lockstep(&["--coordinator", &tc.addr(), "status", "--json"]).await;
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total_atoms"], 100_000);
    let sum: u64 = v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["atoms"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 100_000);
    let out = lockstep(&["--coordinator", &tc.addr(), "status"]).await;
    assert!(
        text(&out.stdout).contains("atoms 100000"),
        "{}",
        text(&out.stdout)
    );

    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_sets_span_shards_and_delete_respects_them() {
    let tc = TestCluster::start(3).await;
    let client = tc.client().await;
    let concept = AtomType::by_name("ConceptNode").unwrap();
    let inh = AtomType::by_name("InheritanceLink").unwrap();
    let hub = Atom::node(concept, "hub").unwrap();
    let links: Vec<Atom> = (0..30)
        .map(|i| {
            Atom::link(
                inh,
                vec![
                    Atom::node(concept, format!("leaf{i}")).unwrap(),
                    hub.clone(),
                ],
            )
            .unwrap()
        })
        .collect();
    client.put(&links).await.unwrap();

    // The hub's incoming set holds all 30 links, wherever they live.
    let inc = client.incoming(hub.handle()).await.unwrap();
    assert_eq!(inc.len(), 30);
    let routing = client.routing();
    let ring = routing.ring.as_ref().unwrap();
    let owners: std::collections::HashSet<_> = links
        .iter()
        .map(|l| ring.owner(l.handle().ring_position()))
        .collect();
    assert!(owners.len() > 1, "links should spread over shards");

    // A plain delete of the hub is refused, with a clear message.
    let err = client.delete(hub.handle(), false).await.unwrap_err();
    assert!(err.to_string().contains("non-empty incoming set"), "{err}");
    assert!(client.get(&[hub.handle()]).await.unwrap()[0].is_some());

    // Deleting one link removes it from the hub's incoming set.
    assert_eq!(client.delete(links[0].handle(), false).await.unwrap(), 1);
    assert_eq!(client.incoming(hub.handle()).await.unwrap().len(), 29);

    // A recursive delete takes the hub and the 29 links that remain.
    assert_eq!(client.delete(hub.handle(), true).await.unwrap(), 30);
    let gone: Vec<Handle> = links
        .iter()
        .map(Atom::handle)
        .chain([hub.handle()])
        .collect();
    assert!(client.get(&gone).await.unwrap().iter().all(Option::is_none));
    // The leaves stay, with empty incoming sets.
    let leaf = links[5].outgoing[0].handle();
    assert!(client.get(&[leaf]).await.unwrap()[0].is_some());
    assert!(client.incoming(leaf).await.unwrap().is_empty());

    // `get` prints the atom, its values and its incoming set.
    let out = lockstep(&[
        "--coordinator",
        &tc.addr(),
        "get",
        "--node",
        "ConceptNode",
        "leaf5",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("(ConceptNode \"leaf5\")") && shown.contains("incoming  0 link(s)"),
        "{shown}"
    );

    // Status counts follow the deletes: 30 leaves remain.
    wait_for("status after deletes", Duration::from_secs(30), || async {
        let st = client.status().await.map_err(|e| e.to_string())?;
        if st.total_atoms == 30 {
            Ok(())
        } else {
            Err(format!("{} atoms", st.total_atoms))
        }
    })
    .await;
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atomese_and_json_lines_files_load() {
    let tc = TestCluster::start(2).await;
    let scm = tc.dir.path().join("kb.scm");
    std::fs::write(
        &scm,
        "; animals\n(Inheritance (stv 0.9 0.8) (Concept \"cat\") (Concept \"animal\"))\n(ConceptNode \"dog\" (stv 0.5 0.5))\n",
    )
    .unwrap();
    let out = lockstep(&["--coordinator", &tc.addr(), "load", scm.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("loaded 2 atoms (4 new"),
        "{}",
        text(&out.stdout)
    );

    let jsonl = tc.dir.path().join("kb.jsonl");
    std::fs::write(
        &jsonl,
        "{\"type\":\"MemberLink\",\"outgoing\":[{\"type\":\"Concept\",\"name\":\"dog\"},{\"type\":\"Concept\",\"name\":\"pets\"}],\"tv\":[0.7,0.6]}\n",
    )
    .unwrap();
    let out = lockstep(&["--coordinator", &tc.addr(), "load", jsonl.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    let client = tc.client().await;
    let concept = AtomType::by_name("ConceptNode").unwrap();
    let dog = Atom::node(concept, "dog").unwrap().handle();
    let rec = client.get(&[dog]).await.unwrap()[0].clone().unwrap();
    // Loading the MemberLink named dog without a TV: dog keeps (0.5, 0.5).
    assert_eq!((rec.tv.strength(), rec.tv.confidence()), (0.5, 0.5));
    assert_eq!(client.incoming(dog).await.unwrap().len(), 1);
    wait_for_total(&client, 6).await;
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_skips_acknowledged_targets_and_stores_the_same_graph() {
    let tc = TestCluster::start(2).await;
    let client = tc.client().await;
    // Nodes first (with truth values), then links that name them bare.
    let atoms = generate(2_000, 11);
    let bulk = lockstep::BulkLoad::default();
    let mut sent = 0;
    for chunk in atoms.chunks(100) {
        sent += client.put_bulk(&bulk, chunk).await.unwrap().atoms;
    }
    // Every atom once: no link batch sent its targets again.
    assert_eq!(sent, atoms.len() as u64);

    let handles: Vec<Handle> = atoms.iter().map(Atom::handle).collect();
    let stored = client.get(&handles).await.unwrap();
    for (a, r) in atoms.iter().zip(&stored) {
        let r = r
            .as_ref()
            .unwrap_or_else(|| panic!("{} missing", a.handle()));
        if let Some(tv) = a.tv {
            assert_eq!(r.tv, tv, "{} lost its truth value", a.handle());
        }
    }
    // Each link is in the incoming set of each of its targets.
    let hub = atoms[0].handle();
    let want = atoms
        .iter()
        .filter(|a| a.outgoing.iter().any(|o| o.handle() == hub))
        .count();
    assert!(want > 10, "n0 should be a hub, in {want} links");
    assert_eq!(client.incoming(hub).await.unwrap().len(), want);
}

/// `status` reads each shard's counts when it is asked, not at the last
/// heartbeat: with heartbeats 30 s apart, what `load` acknowledged is in
/// the very next `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_right_after_load_counts_what_was_loaded() {
    let slow = |hb: &str| -> Vec<String> {
        ["--heartbeat-interval-ms", hb]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut coordinator = slow("30000");
    coordinator.extend(
        ["--suspect-after-ms", "120000", "--down-after-ms", "240000"]
            .iter()
            .map(|s| s.to_string()),
    );
    let tc = TestCluster::start_full(2, slow("30000"), coordinator).await;
    let scm = tc.dir.path().join("kb.scm");
    std::fs::write(
        &scm,
        "(Inheritance (Concept \"cat\") (Concept \"animal\"))\n(Member (Concept \"dog\") (Concept \"pets\"))\n(Concept \"fish\")\n",
    )
    .unwrap();
    let out = lockstep(&["--coordinator", &tc.addr(), "load", scm.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = lockstep(&["--coordinator", &tc.addr(), "status", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(st["total_atoms"], 7, "{st:#}");
    let shards = st["shards"].as_array().expect("shards");
    assert!(shards.iter().all(|s| s["fresh"] == true), "{st:#}");
    let sum: u64 = shards.iter().map(|s| s["atoms"].as_u64().unwrap()).sum();
    assert_eq!(sum, 7);
    tc.cluster.shutdown().await;
}
