//! Acknowledged writes survive kill -9 of a shard.

use std::time::Duration;

use lockstep::input::generate::generate;
use lockstep::model::Handle;

use crate::cluster::expected;
use crate::util::{TestCluster, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_a_shard_restart_it_and_read_back_every_acknowledged_atom() {
    let mut tc = TestCluster::start(2).await;
    let client = tc.client().await;
    let atoms = generate(20_000, 9);
    for chunk in atoms.chunks(2_000) {
        client.put(chunk).await.expect("batch acknowledged");
    }
    let before = client.routing().topology.clone();

    // The crash: no flush, no shutdown hook.
    tc.cluster.kill_shard(0).await.unwrap();
    wait_for(
        "the coordinator to see shard 1 go silent",
        Duration::from_secs(30),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            let down = st.shards.iter().any(|s| {
                s.shard
                    .as_ref()
                    .is_some_and(|e| e.liveness != lockstep::proto::pb::Liveness::Up as i32)
            });
            if down { Ok(()) } else { Err("all Up".into()) }
        },
    )
    .await;

    tc.cluster.restart_shard(0).await.unwrap();
    tc.cluster.wait_ready().await.unwrap();

    // Same identity, same place on the ring: the epoch did not move.
    let after = client.refresh().await.unwrap();
    assert_eq!(after.topology.epoch, before.epoch);
    let ids = |t: &lockstep::model::Topology| t.shards.iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(&after.topology), ids(&before));

    let want = expected(&atoms);
    let handles: Vec<Handle> = want.keys().copied().collect();
    let got = client.get(&handles).await.unwrap();
    let missing = got.iter().filter(|r| r.is_none()).count();
    assert_eq!(missing, 0, "{missing} acknowledged atoms lost");
    for (h, rec) in handles.iter().zip(got) {
        assert_eq!(rec.unwrap().tv, want[h].tv.unwrap_or_default());
    }
    tc.cluster.shutdown().await;
}
