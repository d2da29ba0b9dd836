//! The tick engine against real processes: workloads on 1, 2 and 3 shards
//! equal the single-process oracle, results are bit-identical across shard
//! counts, and jobs survive kill -9 of a shard.

use std::collections::HashMap;
use std::time::Duration;

use lockstep::Client;
use lockstep::input::generate::generate;
use lockstep::model::aggregate::Aggregates;
use lockstep::model::atom::flatten_batch;
use lockstep::model::{Atom, Handle};
use lockstep::proto::pb;

use crate::oracle;
use crate::util::{TestCluster, follow, lockstep, text, wait_for_total};

pub(crate) const GRAPH_ATOMS: usize = 3_000;
pub(crate) const GRAPH_SEED: u64 = 5;
pub(crate) const ATTENTION_TICKS: u64 = 6;

pub(crate) fn spec(workload: &str, ticks: u64, params: &[(&str, &str)]) -> pb::JobSpec {
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    lockstep::proto::convert::spec_of(workload, ticks, &params).expect("a valid job spec")
}

/// Follows a job's events to the end; returns them all.
async fn run_to_end(client: &Client, spec: pb::JobSpec) -> Vec<pb::JobEvent> {
    follow(client, spec, |_| {}).await
}

pub(crate) fn aggs(ev: &pb::JobEvent) -> Aggregates {
    ev.aggregates.clone().unwrap_or_default().into()
}

/// Every node's STI as stored, by handle.
pub(crate) async fn stored_sti(client: &Client, atoms: &[Atom]) -> HashMap<Handle, f64> {
    let nodes: Vec<Handle> = flatten_batch(atoms)
        .into_iter()
        .filter(|(a, _)| a.ty.is_node())
        .map(|(a, _)| a.handle)
        .collect();
    let got = client.get(&nodes).await.unwrap();
    nodes
        .iter()
        .zip(got)
        .map(|(h, r)| (*h, r.expect("node stored").av.sti))
        .collect()
}

pub(crate) fn check_against_oracle(got: &HashMap<Handle, f64>, want: &HashMap<Handle, f64>) {
    assert_eq!(got.len(), want.len());
    for (h, w) in want {
        assert!(
            oracle::close(got[h], *w, 1e-12),
            "vertex {h}: {} vs oracle {w}",
            got[h]
        );
    }
}

async fn attention_on(shards: usize) -> (HashMap<Handle, f64>, Vec<pb::JobEvent>) {
    let tc = TestCluster::start(shards).await;
    let client = tc.client().await;
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    client.put(&atoms).await.unwrap();
    let events = run_to_end(&client, spec("attention", ATTENTION_TICKS, &[("top", "5")])).await;
    let last = events.last().unwrap();
    assert_eq!(
        last.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        last.message
    );
    let sti = stored_sti(&client, &atoms).await;
    // A write after the job folds each shard's committed STI column into
    // the atoms' records: what readers see does not change.
    let concept = lockstep::model::AtomType::by_name("ConceptNode").unwrap();
    let late: Vec<Atom> = (0..8)
        .map(|i| Atom::node(concept, format!("after-the-job-{i}")).unwrap())
        .collect();
    client.put(&late).await.unwrap();
    assert_eq!(stored_sti(&client, &atoms).await, sti);
    tc.cluster.shutdown().await;
    (sti, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attention_matches_the_oracle_and_is_bit_identical_on_1_2_and_3_shards() {
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    let want = oracle::attention(&atoms, 0.85, ATTENTION_TICKS);
    let mut results = Vec::new();
    for shards in [1, 2, 3] {
        let (sti, events) = attention_on(shards).await;
        check_against_oracle(&sti, &want);
        let ticks: Vec<&pb::JobEvent> = events
            .iter()
            .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Tick)
            .collect();
        assert_eq!(ticks.len() as u64, ATTENTION_TICKS);
        for t in &ticks {
            let a = aggs(t);
            assert!(
                (a.fixed("total_sti") - 1.0).abs() < 1e-9,
                "total STI {}",
                a.fixed("total_sti")
            );
        }
        // The job's top-k is the oracle's top-k.
        let top = &aggs(events.last().unwrap()).topk["top"].entries;
        let mut best: Vec<(Handle, f64)> = want.iter().map(|(h, x)| (*h, *x)).collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let keys: Vec<String> = top.iter().map(|e| e.key.clone()).collect();
        let want_keys: Vec<String> = best.iter().take(5).map(|(h, _)| h.to_string()).collect();
        assert_eq!(keys, want_keys);
        results.push(sti);
    }
    for h in want.keys() {
        let bits: Vec<u64> = results.iter().map(|r| r[h].to_bits()).collect();
        assert!(
            bits.windows(2).all(|w| w[0] == w[1]),
            "vertex {h} differs across shard counts"
        );
    }
}

/// The shard's HTTP/2 settings at both ends of their accepted ranges carry
/// a job's exchange between shards (h2 asserts on a frame size outside
/// HTTP/2's limits when a connection opens, so a bound the validation got
/// wrong would panic the first Deliver). Out of range, the shard refuses
/// to start, with one line naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attention_runs_at_the_edges_of_the_http2_settings_and_bad_ones_are_refused() {
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    let want = oracle::attention(&atoms, 0.85, 2);
    for (window, frame) in [("1", "16"), ("1023", "16383")] {
        let args = vec![
            "--http2-window-mb".to_string(),
            window.to_string(),
            "--http2-frame-kb".to_string(),
            frame.to_string(),
        ];
        let tc = TestCluster::start_with(2, args).await;
        let client = tc.client().await;
        client.put(&atoms).await.unwrap();
        let events = run_to_end(&client, spec("attention", 2, &[])).await;
        let last = events.last().unwrap();
        assert_eq!(
            last.kind(),
            lockstep::proto::pb::JobEventKind::Finished,
            "{window} MiB: {}",
            last.message
        );
        check_against_oracle(&stored_sti(&client, &atoms).await, &want);
        tc.cluster.shutdown().await;
    }
    for (flag, value) in [("--http2-window-mb", "1024"), ("--http2-frame-kb", "8")] {
        let out = lockstep(&["shard", "--coordinator", "127.0.0.1:1", flag, value]).await;
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let err = text(&out.stderr);
        let name = flag.trim_start_matches("--").replace('-', "_");
        assert!(err.contains(&name), "{flag} {value}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_ticks_match_the_oracle_on_1_2_and_3_shards() {
    let (n, batch, ticks) = (2_000usize, 450usize, 5u64);
    let atoms = generate(n, 3);
    let want = oracle::ingest(&atoms, batch, ticks);
    let distinct = flatten_batch(&atoms).len() as u64;
    for shards in [1, 2, 3] {
        let tc = TestCluster::start(shards).await;
        let client = tc.client().await;
        let events = run_to_end(
            &client,
            spec(
                "ingest",
                ticks,
                &[("generate", "2000"), ("seed", "3"), ("batch", "450")],
            ),
        )
        .await;
        assert_eq!(
            events.last().unwrap().kind(),
            lockstep::proto::pb::JobEventKind::Finished
        );
        let per_tick: Vec<_> = events
            .iter()
            .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Tick)
            .map(|e| {
                aggs(e)
                    .counts
                    .get("atoms_by_type")
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(per_tick, want, "{shards} shards");
        let handles: Vec<Handle> = flatten_batch(&atoms)
            .iter()
            .map(|(a, _)| a.handle)
            .collect();
        assert!(
            client
                .get(&handles)
                .await
                .unwrap()
                .iter()
                .all(Option::is_some)
        );
        let st = wait_for_total(&client, distinct).await;
        assert_eq!(st.committed_tick, ticks);
        let out = lockstep(&["--coordinator", &tc.addr(), "status"]).await;
        let shown = text(&out.stdout);
        assert!(
            shown.contains(&format!("committed tick {ticks}")),
            "{shown}"
        );
        tc.cluster.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tfidf_matches_the_oracle_on_1_2_and_3_shards() {
    let docs = tempfile::tempdir().unwrap();
    let texts = [
        ("a.txt", "The cat sat on the mat. The cat was happy."),
        ("b.txt", "A dog ate the cat's food; the dog is a good dog."),
        (
            "sub/c.txt",
            "Dogs and cats, cats and dogs: 42 of them, x 7.",
        ),
        ("d.md", "Mat, mat, MAT! A mat for the dog and the cat."),
        ("e.txt", "Nothing in common here except zebra zebra quagga."),
    ];
    for (p, t) in texts {
        let path = docs.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
    let (want_top, want_df) = oracle::tfidf(docs.path(), 8);
    // The documents are the import folder itself; `.` names it.
    let import = vec![
        "--import-dir".to_string(),
        docs.path().display().to_string(),
    ];
    for shards in [1, 2, 3] {
        let tc = TestCluster::start_with(shards, import.clone()).await;
        let client = tc.client().await;
        let events = run_to_end(&client, spec("tfidf", 2, &[("docs", "."), ("top", "8")])).await;
        let last = events.last().unwrap();
        assert_eq!(
            last.kind(),
            lockstep::proto::pb::JobEventKind::Finished,
            "{}",
            last.message
        );
        let a = aggs(last);
        let got: Vec<(String, String, f64)> = a.topk["top"]
            .entries
            .iter()
            .map(|e| {
                let (d, t) = e.key.split_once('\u{0}').unwrap();
                (d.to_string(), t.to_string(), e.score)
            })
            .collect();
        assert_eq!(got.len(), want_top.len());
        for (g, w) in got.iter().zip(&want_top) {
            assert_eq!((&g.0, &g.1), (&w.0, &w.1), "{shards} shards");
            assert!(oracle::close(g.2, w.2, 1e-12), "{g:?} vs {w:?}");
        }
        let df: std::collections::BTreeMap<String, u64> = a
            .counts
            .get("df")
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_eq!(df, want_df, "{shards} shards");
        tc.cluster.shutdown().await;
    }
}

/// Starts a job, kills shard 1 when tick 2 is done (mid-phase of tick 3,
/// thanks to the phase delay), restarts it, and returns the events.
async fn kill_mid_job(
    tc: &mut TestCluster,
    client: &Client,
    spec: pb::JobSpec,
) -> Vec<pb::JobEvent> {
    let mut stream = client.submit_job(spec).await.unwrap();
    let mut events = Vec::new();
    let mut killed = false;
    let follow = async {
        while let Some(ev) = stream.message().await.unwrap() {
            if ev.kind() == lockstep::proto::pb::JobEventKind::Tick && ev.tick == 2 && !killed {
                tc.cluster.kill_shard(1).await.unwrap();
                killed = true;
            }
            if ev.kind() == lockstep::proto::pb::JobEventKind::Aborted {
                tc.cluster.restart_shard(1).await.unwrap();
            }
            let done = ev.kind().outcome().is_some();
            events.push(ev);
            if done {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), follow)
        .await
        .expect("job ends within 300s");
    events
}

fn delay() -> Vec<String> {
    vec!["--fault-phase-delay-ms".into(), "300".into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attention_survives_kill_9_of_a_shard_and_equals_the_oracle() {
    let mut tc = TestCluster::start_with(3, delay()).await;
    let client = tc.client().await;
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    client.put(&atoms).await.unwrap();
    let events = kill_mid_job(&mut tc, &client, spec("attention", ATTENTION_TICKS, &[])).await;
    let aborted: Vec<_> = events
        .iter()
        .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Aborted)
        .collect();
    assert!(!aborted.is_empty(), "the kill aborted a tick");
    assert!(
        aborted[0].message.contains("shard-") && aborted[0].message.contains("missing"),
        "{}",
        aborted[0].message
    );
    let last = events.last().unwrap();
    assert_eq!(
        last.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        last.message
    );
    let ticks: Vec<u64> = events
        .iter()
        .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Tick)
        .map(|e| e.tick)
        .collect();
    assert_eq!(ticks, (1..=ATTENTION_TICKS).collect::<Vec<_>>());
    let want = oracle::attention(&atoms, 0.85, ATTENTION_TICKS);
    let got = stored_sti(&client, &atoms).await;
    check_against_oracle(&got, &want);
    tc.cluster.shutdown().await;

    // Exactly: bit for bit the result of the same job with no fault.
    let (clean, _) = attention_on(3).await;
    for (h, x) in &clean {
        assert_eq!(
            got[h].to_bits(),
            x.to_bits(),
            "vertex {h} differs from the fault-free run"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_survives_kill_9_of_a_shard_and_equals_the_oracle() {
    let mut tc = TestCluster::start_with(3, delay()).await;
    let client = tc.client().await;
    let (n, batch, ticks) = (1_500usize, 300usize, 5u64);
    let events = kill_mid_job(
        &mut tc,
        &client,
        spec(
            "ingest",
            ticks,
            &[("generate", "1500"), ("seed", "4"), ("batch", "300")],
        ),
    )
    .await;
    assert!(
        events
            .iter()
            .any(|e| e.kind() == lockstep::proto::pb::JobEventKind::Aborted)
    );
    assert_eq!(
        events.last().unwrap().kind(),
        lockstep::proto::pb::JobEventKind::Finished
    );
    let atoms = generate(n, 4);
    let want = oracle::ingest(&atoms, batch, ticks);
    let per_tick: Vec<_> = events
        .iter()
        .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Tick)
        .map(|e| {
            aggs(e)
                .counts
                .get("atoms_by_type")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(per_tick, want);
    let distinct = flatten_batch(&atoms).len() as u64;
    wait_for_total(&client, distinct).await;
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_never_returns_fails_the_job_at_the_last_committed_tick() {
    let mut tc =
        TestCluster::start_full(2, delay(), vec!["--recovery-wait-ms".into(), "1500".into()]).await;
    let client = tc.client().await;
    client.put(&generate(500, 1)).await.unwrap();
    let mut stream = client.submit_job(spec("attention", 10, &[])).await.unwrap();

    // One job at a time.
    let busy = client
        .submit_job(spec("attention", 1, &[]))
        .await
        .unwrap_err();
    assert!(
        busy.to_string().contains("busy: job 1 is running"),
        "{busy}"
    );

    let mut last = None;
    let mut killed = None;
    while let Some(ev) = stream.message().await.unwrap() {
        if ev.kind() == lockstep::proto::pb::JobEventKind::Tick && ev.tick == 2 {
            tc.cluster.kill_shard(0).await.unwrap();
            // Shards take ids in registration order, which need not be
            // process order: read the id the killed process stored.
            let store = lockstep_shard::store::rocks::RocksStore::open(
                &tc.cluster.shard_dir(0),
                &Default::default(),
            )
            .unwrap();
            let (id, _) = lockstep_shard::atoms::AtomStore::open(store)
                .unwrap()
                .identity()
                .unwrap()
                .expect("the killed shard had registered");
            killed = Some(id.to_string());
        }
        if ev.kind().outcome().is_some() {
            last = Some(ev);
            break;
        }
    }
    let last = last.unwrap();
    assert_eq!(last.kind(), lockstep::proto::pb::JobEventKind::Failed);
    assert!(
        last.message.contains("did not come back")
            && last.message.contains(&killed.expect("a shard was killed")),
        "{}",
        last.message
    );
    assert_eq!(last.committed_tick, 2, "{}", last.message);
    assert!(
        last.message.contains("committed tick 2"),
        "{}",
        last.message
    );

    let out = lockstep(&["--coordinator", &tc.addr(), "jobs"]).await;
    let table = text(&out.stdout);
    assert!(table.contains("failed"), "{table}");
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_leaves_the_store_at_its_last_committed_tick() {
    let tc = TestCluster::start_with(2, delay()).await;
    let client = tc.client().await;
    client.put(&generate(500, 2)).await.unwrap();
    let mut stream = client.submit_job(spec("attention", 50, &[])).await.unwrap();
    let mut last = None;
    while let Some(ev) = stream.message().await.unwrap() {
        if ev.kind() == lockstep::proto::pb::JobEventKind::Tick && ev.tick == 1 {
            assert_eq!(client.cancel_job(ev.job_id).await.unwrap(), 1);
        }
        if ev.kind().outcome().is_some() {
            last = Some(ev);
            break;
        }
    }
    let last = last.unwrap();
    assert_eq!(last.kind(), lockstep::proto::pb::JobEventKind::Cancelled);
    let committed = last.committed_tick;
    assert!((1..50).contains(&committed));
    assert!(
        last.message
            .contains(&format!("committed tick {committed}")),
        "{}",
        last.message
    );
    // Every shard sits at that tick, and a new job can start.
    let st = client.status().await.unwrap();
    assert_eq!(st.committed_tick, committed);
    crate::util::wait_for(
        "shards to report the committed tick",
        Duration::from_secs(30),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            let ticks: Vec<u64> = st
                .shards
                .iter()
                .map(|s| s.metrics.as_ref().map_or(0, |m| m.last_tick))
                .collect();
            if ticks.iter().all(|t| *t == committed) {
                Ok(())
            } else {
                Err(format!("{ticks:?}"))
            }
        },
    )
    .await;
    let events = run_to_end(&client, spec("attention", 1, &[])).await;
    assert_eq!(
        events.last().unwrap().kind(),
        lockstep::proto::pb::JobEventKind::Finished
    );
    tc.cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_that_keeps_failing_fails_the_job_after_its_attempts() {
    // Every phase takes 1.5 s on the shard and the deadline is 0.3 s, so
    // every attempt misses it while the shard stays up and healthy: without
    // a cap the job would retry the tick forever.
    let tc = TestCluster::start_full(
        1,
        vec!["--fault-phase-delay-ms".into(), "1500".into()],
        vec![
            "--phase-deadline-ms".into(),
            "300".into(),
            "--max-tick-attempts".into(),
            "2".into(),
        ],
    )
    .await;
    let client = tc.client().await;
    client.put(&generate(200, 3)).await.unwrap();
    let events = run_to_end(&client, spec("attention", 3, &[])).await;
    let aborted = events
        .iter()
        .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Aborted)
        .count();
    assert_eq!(aborted, 2, "one abort per attempt");
    let last = events.last().unwrap();
    assert_eq!(
        last.kind(),
        lockstep::proto::pb::JobEventKind::Failed,
        "{}",
        last.message
    );
    assert!(
        last.message.contains("tick 1 failed 2 attempts in a row")
            && last.message.contains("no answer within")
            && last.message.contains("committed tick 0"),
        "{}",
        last.message
    );
    assert_eq!(last.committed_tick, 0);
    tc.cluster.shutdown().await;
}

/// `lockstep jobs` shows a running job's progress as it goes, and
/// `lockstep cancel` stops it from another process than the one that
/// submitted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_shows_a_running_job_live_and_cancel_works_from_any_terminal() {
    let tc = TestCluster::start_with(2, delay()).await;
    let client = tc.client().await;
    client.put(&generate(500, 2)).await.unwrap();
    let mut stream = client
        .submit_job(spec("attention", 200, &[]))
        .await
        .unwrap();
    let mut job_id = None;
    while let Some(ev) = stream.message().await.unwrap() {
        if ev.kind() == lockstep::proto::pb::JobEventKind::Tick && ev.tick == 2 {
            job_id = Some(ev.job_id);
            break;
        }
    }
    let job_id = job_id.expect("tick 2 of the job");
    let out = lockstep(&["--coordinator", &tc.addr(), "jobs", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("jobs --json");
    let job = &listed["jobs"][0];
    assert_eq!(job["job_id"], job_id);
    assert_eq!(job["outcome"], "running");
    assert_eq!(job["ticks"], 200);
    let done = job["ticks_done"].as_u64().expect("ticks_done");
    assert!((2..200).contains(&done), "{job}");
    assert!(job["committed_tick"].as_u64().expect("committed_tick") >= 2);

    let id = job_id.to_string();
    let out = lockstep(&["--coordinator", &tc.addr(), "cancel", &id, "--json"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cancelled: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cancel --json");
    assert_eq!(cancelled["job_id"], job_id);
    let mut last = None;
    while let Some(ev) = stream.message().await.unwrap() {
        if ev.kind().outcome().is_some() {
            last = Some(ev);
            break;
        }
    }
    let last = last.expect("the job's last event");
    assert_eq!(
        last.kind(),
        lockstep::proto::pb::JobEventKind::Cancelled,
        "{}",
        last.message
    );
    assert!(last.committed_tick < 200);

    // A finished job cannot be cancelled, and says so in one line.
    let out = lockstep(&["--coordinator", &tc.addr(), "cancel", &id]).await;
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("job {id} is not running")), "{err}");
    let out = lockstep(&["--coordinator", &tc.addr(), "jobs"]).await;
    assert!(
        text(&out.stdout).contains("cancelled"),
        "{}",
        text(&out.stdout)
    );
    tc.cluster.shutdown().await;
}
