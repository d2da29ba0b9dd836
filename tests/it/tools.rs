//! The operator tools against real processes: `lockstep health`, the
//! `barrier` workload, and the `lockstep bench` commands (small sizes; the
//! figures themselves live in BENCHMARKS.md).

use crate::ticks::spec;
use crate::util::{TestCluster, follow, lockstep, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_serving_for_live_servers_and_fails_in_one_line_otherwise() {
    let tc = TestCluster::start(1).await;
    let client = tc.client().await;
    let shard = client.routing().topology.shards[0].address.clone();
    for addr in [tc.addr(), shard] {
        let out = lockstep(&["health", &addr]).await;
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), format!("{addr}: serving"));
    }
    tc.cluster.shutdown().await;

    // A port nothing listens on any more.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let out = lockstep(&["health", &addr, "--timeout-ms", "1000"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&addr) && err.contains("not healthy"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_barrier_workload_runs_eight_empty_phases_a_tick_and_commits() {
    let tc = TestCluster::start(2).await;
    let client = tc.client().await;
    let events = follow(&client, spec("barrier", 3, &[]), |_| {}).await;
    let end = events.last().unwrap();
    assert_eq!(
        end.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        end.message
    );
    for tick in 1..=3 {
        let empty = events
            .iter()
            .filter(|e| {
                e.kind() == lockstep::proto::pb::JobEventKind::Phase
                    && e.tick == tick
                    && e.phase().name().starts_with("empty-")
            })
            .count();
        assert_eq!(empty, 8, "tick {tick}");
    }
    assert_eq!(client.status().await.unwrap().committed_tick, 3);
    tc.cluster.shutdown().await;
}

fn json(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_commands_run_end_to_end_and_report_against_their_baselines() {
    let rows = json(
        &lockstep(&[
            "bench", "ingest", "--shards", "2", "--atoms", "2000", "--json",
        ])
        .await,
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["shards"], 2);
    // 2,000 generated atoms are 400 nodes and 1,600 links.
    assert_eq!(rows[0]["records"], 2000);
    assert!(rows[0]["raw_records_per_s"].as_f64().unwrap() > 0.0);
    assert!(rows[0]["ratio"].as_f64().unwrap() > 0.0);
    let r = &rows[0];
    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    assert!(f("store_records_per_s") > 0.0, "{r}");
    assert!(
        (f("distributed_ratio") - f("store_secs") / f("lockstep_secs")).abs() < 1e-9,
        "{r}"
    );
    assert!(
        (f("store_ratio") - f("raw_secs") / f("store_secs")).abs() < 1e-9,
        "{r}"
    );

    let rows = json(
        &lockstep(&[
            "bench", "ticks", "--shards", "1,2", "--ticks", "2", "--json",
        ])
        .await,
    );
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["phases"], 16, "{r}");
        assert!(r["barrier_median_us"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["fanout_median_us"].as_f64().unwrap() > 0.0, "{r}");
    }

    // With a second core, pin the shard to it (every thread of it), as
    // benches/scaling.sh does.
    let mut args = vec![
        "bench",
        "attention",
        "--shards",
        "1",
        "--nodes",
        "300",
        "--ticks",
        "3",
        "--json",
    ];
    if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        args.push("--pin-cores");
    }
    let rows = json(&lockstep(&args).await);
    assert_eq!(rows[0]["vertices"], 300);
    assert!(rows[0]["edges"].as_u64().unwrap() > 0);
    assert!(rows[0]["median_tick_ms"].as_f64().unwrap() > 0.0);
    // The baseline ran on both sides of the job, and the ratio is against
    // the median of both runs, which lies between their medians.
    let f = |k: &str| {
        rows[0][k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {}", rows[0]))
    };
    let (before, after, base) = (
        f("oracle_before_ms"),
        f("oracle_after_ms"),
        f("oracle_tick_ms"),
    );
    assert!(before > 0.0 && after > 0.0, "{}", rows[0]);
    assert!(
        before.min(after) - 1e-9 <= base && base <= before.max(after) + 1e-9,
        "{}",
        rows[0]
    );
    assert!((f("ratio") - f("median_tick_ms") / base).abs() < 1e-9);
    assert!(rows[0]["peak_rss_bytes"][0].as_u64().unwrap() > 0);
    assert_eq!(rows[0]["atoms_per_shard"][0], 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_json_reports_each_ticks_phase_times() {
    let tc = TestCluster::start(2).await;
    let client = tc.client().await;
    client
        .put(&lockstep::input::generate::generate(500, 3))
        .await
        .unwrap();
    let addr = tc.addr();
    let out = lockstep(&[
        "--coordinator",
        &addr,
        "run",
        "attention",
        "--ticks",
        "2",
        "--json",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ticks = v["ticks"].as_array().unwrap();
    assert_eq!(ticks.len(), 2, "{v}");
    for t in ticks {
        for phase in ["spread", "apply", "prepare"] {
            assert!(
                t["phases"][phase].as_f64().is_some_and(|ms| ms >= 0.0),
                "tick {} has no {phase} time: {t}",
                t["tick"]
            );
        }
    }
    // Tick 1 also ran the setup phases.
    assert!(ticks[0]["phases"]["edges"].is_f64(), "{}", ticks[0]);
}
