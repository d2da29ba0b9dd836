//! Ring epochs: a stale client refreshes; a late shard joins as Joining.

use std::time::Duration;

use lockstep::model::{Atom, AtomType};
use lockstep::proto::pb::{self, shard_client::ShardClient};
use lockstep::proto::wire_error::{WireKind, epoch_error};

use crate::util::{TestCluster, wait_for};

fn concepts(prefix: &str, n: usize) -> Vec<Atom> {
    let c = AtomType::by_name("ConceptNode").unwrap();
    (0..n)
        .map(|i| Atom::node(c, format!("{prefix}{i}")).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_client_refreshes_after_a_shard_joins_an_empty_cluster() {
    let tc = TestCluster::start(1).await;
    let client = tc.client().await;
    let stale = client.epoch();

    let mut extra = tc.start_extra_shard("late").await;
    // Wait until the coordinator bumped the epoch *and* both shards report
    // it in their heartbeats: a shard learns the new ring from its topology
    // stream a moment after the coordinator.
    wait_for(
        "the second shard to join the ring and both shards to see it",
        Duration::from_secs(30),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            let t = st.topology.clone().unwrap();
            let seen: Vec<u64> = st
                .shards
                .iter()
                .map(|s| s.metrics.as_ref().map_or(0, |m| m.epoch))
                .collect();
            if t.epoch > stale.0
                && t.shards.iter().filter(|s| s.in_ring).count() == 2
                && seen.iter().all(|e| *e == t.epoch)
            {
                Ok(())
            } else {
                Err(format!(
                    "epoch {} with {} shards; shards see {seen:?}",
                    t.epoch,
                    t.shards.len()
                ))
            }
        },
    )
    .await;

    // A raw request at the stale epoch is refused with the current epoch.
    let old = client.routing();
    let addr = &old.topology.shards[0].address;
    let mut raw = ShardClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let st = raw
        .get_atoms(pb::GetAtomsRequest {
            epoch: stale.0,
            handles: vec![concepts("x", 1)[0].handle().to_bytes().to_vec()],
        })
        .await
        .unwrap_err();
    let (kind, current) = epoch_error(&st).expect("typed epoch error");
    assert_eq!(kind, WireKind::WrongEpoch);
    assert!(current > stale, "{current} vs {stale}");
    assert!(st.message().contains("stale epoch"), "{}", st.message());

    // The client still routes with the stale ring; the write succeeds after
    // one refresh, and both shards get keys.
    assert_eq!(client.epoch(), stale);
    let atoms = concepts("a", 200);
    let stats = client.put(&atoms).await.unwrap();
    assert_eq!(stats.created, 200);
    assert!(client.epoch() > stale);
    let handles: Vec<_> = atoms.iter().map(Atom::handle).collect();
    assert!(
        client
            .get(&handles)
            .await
            .unwrap()
            .iter()
            .all(Option::is_some)
    );
    let routing = client.routing();
    let ring = routing.ring.as_ref().unwrap();
    let owners: std::collections::HashSet<_> = handles
        .iter()
        .map(|h| ring.owner(h.ring_position()))
        .collect();
    assert_eq!(owners.len(), 2);

    crate::util::wait_for_total(&client, 200).await;
    lockstep::cluster::stop_child(&mut extra, Duration::from_secs(10)).await;
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_registers_after_data_is_stored_stays_joining() {
    let tc = TestCluster::start(1).await;
    let client = tc.client().await;
    client.put(&concepts("d", 50)).await.unwrap();
    wait_for(
        "the coordinator to record that data exists",
        Duration::from_secs(30),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            if st.has_data {
                Ok(())
            } else {
                Err("has_data false".into())
            }
        },
    )
    .await;
    let epoch = client.refresh().await.unwrap().topology.epoch;

    let mut extra = tc.start_extra_shard("joiner").await;
    let st = wait_for(
        "the late shard to register",
        Duration::from_secs(30),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            if st.shards.len() == 2 {
                Ok(st)
            } else {
                Err(format!("{} shards", st.shards.len()))
            }
        },
    )
    .await;
    let joiner = st
        .shards
        .iter()
        .map(|s| s.shard.clone().unwrap())
        .find(|s| !s.in_ring)
        .expect("one shard is out of the ring");
    assert_eq!(
        st.topology.unwrap().epoch,
        epoch.0,
        "a joining shard does not move the ring"
    );

    let out = crate::util::lockstep(&["--coordinator", &tc.addr(), "status"]).await;
    let table = crate::util::text(&out.stdout);
    assert!(table.contains("Joining"), "{table}");

    // It owns nothing: a write sent straight to it is refused as not-owner.
    let mut raw = ShardClient::connect(format!("http://{}", joiner.address))
        .await
        .unwrap();
    let w = pb::AtomWrite {
        r#type: "ConceptNode".into(),
        name: "z".into(),
        ..Default::default()
    };
    let st = raw
        .put_atoms(pb::PutAtomsRequest {
            epoch: epoch.0,
            atoms: vec![w],
            incoming: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(
        epoch_error(&st).map(|(k, _)| k),
        Some(WireKind::NotOwner),
        "{st:?}"
    );

    lockstep::cluster::stop_child(&mut extra, Duration::from_secs(10)).await;
    tc.cluster.shutdown().await;
}
