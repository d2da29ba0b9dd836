//! Container tests: the `lockstep:dev` image as one coordinator and three
//! shards, each in its own container on private Docker networks, driven from
//! this process as a client would be.
//!
//! They are `#[ignore]`d in a plain `cargo test`: they need a Docker daemon
//! and the image. `deploy/test-containers.sh` builds the image and runs them
//! (`cargo test --test it -- --ignored containers::`), or prints one SKIPPED
//! line when no daemon answers. Every test removes its containers, networks
//! and volumes on drop, pass or fail, and each wait has a deadline.
//!
//! Each shard sits on two networks: `ctl`, shared with the coordinator, and
//! `data`, which the coordinator is not on. Cutting a shard off `ctl` is a
//! partition between it and the coordinator that leaves the shard reachable
//! from this process, so the test can try to write to it.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lockstep::Client;
use lockstep::input::generate::generate;
use lockstep::model::aggregate::Aggregates;
use lockstep::model::atom::flatten_batch;
use lockstep::model::{Atom, AtomType, Handle};
use lockstep::proto::pb::{self, shard_client::ShardClient};

use crate::ticks::{aggs, spec, stored_sti};
use crate::util::{TestCluster, follow, wait_for};

const IMAGE: &str = "lockstep:dev";
const GRAPH_ATOMS: usize = 3_000;
const GRAPH_SEED: u64 = 5;
const TICKS: u64 = 6;
/// Slows every phase but commit, so a job runs long enough to hit mid-phase.
const PHASE_DELAY: &str = "LOCKSTEP_FAULT_PHASE_DELAY_MS=300";
/// The coordinator's Down threshold in these tests.
const DOWN_AFTER_MS: u64 = 3_000;

/// Runs `docker ARGS`, bounded in time; returns stdout, or the error.
fn docker(args: &[&str]) -> Result<String, String> {
    let mut child = Command::new("docker")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("docker {args:?}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("docker {args:?} did not finish within 120s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// One test's containers, networks and volumes, removed on drop.
struct DockerCluster {
    prefix: String,
    /// The first three octets of the ctl and data subnets.
    ctl: String,
    data: String,
    shards: usize,
}

impl DockerCluster {
    /// Starts a coordinator and `shards` shards; `shard_env` is extra
    /// `KEY=VALUE` settings for the shards.
    async fn start(name: &str, shards: usize, shard_env: &[&str]) -> DockerCluster {
        let prefix = format!("lockstep-it-{}-{name}", std::process::id());
        let mut dc = DockerCluster {
            prefix,
            ctl: String::new(),
            data: String::new(),
            shards,
        };
        dc.ctl = dc.network("ctl");
        dc.data = dc.network("data");

        let coord = dc.container("coordinator");
        let ip = dc.coordinator_ip();
        must(&[
            "run",
            "-d",
            "--name",
            &coord,
            "--label",
            &dc.label(),
            "--network",
            &dc.net("ctl"),
            "--ip",
            &ip,
            "-v",
            &format!("{coord}:/data"),
            "-e",
            "LOCKSTEP_HEARTBEAT_INTERVAL_MS=100",
            "-e",
            "LOCKSTEP_SUSPECT_AFTER_MS=1000",
            "-e",
            &format!("LOCKSTEP_DOWN_AFTER_MS={DOWN_AFTER_MS}"),
            "-e",
            "LOCKSTEP_PHASE_DEADLINE_MS=5000",
            "-e",
            "LOCKSTEP_RECOVERY_WAIT_MS=90000",
            IMAGE,
            "coordinator",
        ]);
        for i in 1..=shards {
            dc.start_shard(i, shard_env);
        }
        dc.wait_healthy(shards).await;
        dc
    }

    fn label(&self) -> String {
        format!("lockstep-it={}", self.prefix)
    }

    fn net(&self, which: &str) -> String {
        format!("{}-{which}", self.prefix)
    }

    fn container(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    fn shard(&self, i: usize) -> String {
        self.container(&format!("shard-{i}"))
    }

    fn coordinator_ip(&self) -> String {
        format!("{}.2", self.ctl)
    }

    fn shard_ip(&self, i: usize) -> String {
        format!("{}.{}", self.ctl, 10 + i)
    }

    fn shard_data_ip(&self, i: usize) -> String {
        format!("{}.{}", self.data, 10 + i)
    }

    fn coordinator_addr(&self) -> String {
        format!("{}:7400", self.coordinator_ip())
    }

    /// Creates a network on a free 10.x.y.0/24 (static IPs need a subnet
    /// the test chose) and returns the subnet's first three octets.
    fn network(&self, which: &str) -> String {
        let name = self.net(which);
        let mut last = String::new();
        for k in 0..64u32 {
            let n = (std::process::id() * 7 + k * 13 + which.len() as u32 * 101) % 60_000;
            let base = format!("10.{}.{}", 100 + n / 250 % 150, n % 250);
            match docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &format!("{base}.0/24"),
                "--label",
                &self.label(),
                &name,
            ]) {
                Ok(_) => return base,
                Err(e) => last = e,
            }
        }
        panic!("no free subnet for {name}: {last}");
    }

    fn start_shard(&self, i: usize, env: &[&str]) {
        let name = self.shard(i);
        let coordinator = format!("LOCKSTEP_COORDINATOR={}", self.coordinator_addr());
        let volume = format!("{name}:/data");
        let label = self.label();
        let ctl = self.net("ctl");
        let ip = self.shard_ip(i);
        let mut args = vec![
            "create",
            "--name",
            &name,
            "--label",
            &label,
            "--network",
            &ctl,
            "--ip",
            &ip,
            "-v",
            &volume,
            "-e",
            &coordinator,
            "-e",
            "LOCKSTEP_HEARTBEAT_INTERVAL_MS=100",
        ];
        for e in env {
            args.push("-e");
            args.push(e);
        }
        args.extend([IMAGE, "shard"]);
        must(&args);
        // The second network before the first start; static addresses
        // survive `docker start` and reconnects.
        must(&[
            "network",
            "connect",
            "--ip",
            &self.shard_data_ip(i),
            &self.net("data"),
            &name,
        ]);
        must(&["start", &name]);
    }

    /// Waits until every shard is Up in the ring and every container
    /// reports healthy (the image's `lockstep health` check).
    async fn wait_healthy(&self, shards: usize) {
        let addr = self.coordinator_addr();
        wait_for(
            &format!("{shards} shards Up in the ring at {addr}"),
            Duration::from_secs(90),
            || async {
                let c = Client::connect(&addr).await.map_err(|e| e.to_string())?;
                let st = c.status().await.map_err(|e| e.to_string())?;
                let up = st
                    .shards
                    .iter()
                    .filter(|s| {
                        s.shard
                            .as_ref()
                            .is_some_and(|e| e.in_ring && e.liveness == pb::Liveness::Up as i32)
                    })
                    .count();
                if up == shards {
                    Ok(())
                } else {
                    Err(format!("{up} Up"))
                }
            },
        )
        .await;
        for name in std::iter::once(self.container("coordinator"))
            .chain((1..=shards).map(|i| self.shard(i)))
        {
            wait_for(
                &format!("{name} to be healthy"),
                Duration::from_secs(60),
                || async {
                    let h = docker(&["inspect", "-f", "{{.State.Health.Status}}", &name])?;
                    if h == "healthy" { Ok(()) } else { Err(h) }
                },
            )
            .await;
        }
    }

    async fn client(&self) -> Client {
        Client::connect(&self.coordinator_addr())
            .await
            .expect("client connects to the containerised coordinator")
    }

    /// The shard id of container `i`, by its advertised address.
    async fn shard_id(&self, client: &Client, i: usize) -> u32 {
        let want = format!("{}:7400", self.shard_ip(i));
        let st = client.status().await.unwrap();
        st.topology
            .unwrap()
            .shards
            .iter()
            .find(|s| s.address == want)
            .unwrap_or_else(|| panic!("no shard advertises {want}"))
            .id
    }

    async fn liveness(client: &Client, id: u32) -> Option<i32> {
        let st = client.status().await.ok()?;
        st.shards
            .iter()
            .filter_map(|s| s.shard.as_ref())
            .find(|s| s.id == id)
            .map(|s| s.liveness)
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        let mut names = vec![self.container("coordinator")];
        names.extend((1..=self.shards).map(|i| self.shard(i)));
        for n in &names {
            let _ = docker(&["rm", "-f", "-v", n]);
            let _ = docker(&["volume", "rm", "-f", n]);
        }
        for which in ["ctl", "data"] {
            let _ = docker(&["network", "rm", &self.net(which)]);
        }
    }
}

/// The same jobs on local processes: the stored STI after each job and the
/// last job's final aggregates.
async fn local_reference(jobs: &[pb::JobSpec]) -> (Vec<HashMap<Handle, f64>>, Aggregates) {
    let tc = TestCluster::start(3).await;
    let client = tc.client().await;
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    client.put(&atoms).await.unwrap();
    let mut stis = Vec::new();
    let mut last = Aggregates::default();
    for job in jobs {
        let events = follow(&client, job.clone(), |_| {}).await;
        let end = events.last().unwrap();
        assert_eq!(
            end.kind(),
            lockstep::proto::pb::JobEventKind::Finished,
            "{}",
            end.message
        );
        last = aggs(end);
        stis.push(stored_sti(&client, &atoms).await);
    }
    tc.cluster.shutdown().await;
    (stis, last)
}

fn assert_bit_identical(got: &HashMap<Handle, f64>, want: &HashMap<Handle, f64>, what: &str) {
    assert_eq!(got.len(), want.len());
    for (h, w) in want {
        assert_eq!(
            got[h].to_bits(),
            w.to_bits(),
            "{what}: vertex {h}: {} vs {w} on local processes",
            got[h]
        );
    }
}

fn attention() -> pb::JobSpec {
    spec("attention", TICKS, &[("top", "5")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the lockstep:dev image; run by deploy/test-containers.sh"]
async fn containers_load_and_run_equal_local_processes() {
    // The same phase delay as the kill test, so the two job times compare.
    let dc = DockerCluster::start("run", 3, &[PHASE_DELAY]).await;
    let client = dc.client().await;
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    client.put(&atoms).await.unwrap();
    let started = Instant::now();
    let events = follow(&client, attention(), |_| {}).await;
    let took = started.elapsed();
    let end = events.last().unwrap();
    assert_eq!(
        end.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        end.message
    );
    let got = stored_sti(&client, &atoms).await;

    let (want, want_aggs) = local_reference(&[attention()]).await;
    assert_bit_identical(&got, &want[0], "containers");
    assert_eq!(aggs(end).topk, want_aggs.topk);
    assert_eq!(aggs(end).fixed("total_sti"), want_aggs.fixed("total_sti"));
    println!(
        "FIGURE container attention job, {TICKS} ticks, 300 ms phase delay, no fault: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the lockstep:dev image; run by deploy/test-containers.sh"]
async fn containers_docker_kill_of_a_shard_mid_job_completes_with_the_same_result() {
    // A phase delay keeps the job running long enough to kill mid-phase.
    let dc = DockerCluster::start("kill", 3, &[PHASE_DELAY]).await;
    let client = dc.client().await;
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    client.put(&atoms).await.unwrap();
    let victim = dc.shard(2);
    let mut killed = false;
    let mut restarted = false;
    let started = Instant::now();
    let events = follow(&client, attention(), |ev| {
        if ev.kind() == lockstep::proto::pb::JobEventKind::Tick && ev.tick == 2 && !killed {
            must(&["kill", &victim]);
            killed = true;
        }
        if ev.kind() == lockstep::proto::pb::JobEventKind::Aborted && !restarted {
            must(&["start", &victim]);
            restarted = true;
        }
    })
    .await;
    let took = started.elapsed();
    let end = events.last().unwrap();
    assert_eq!(
        end.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        end.message
    );
    assert!(
        killed && restarted,
        "the kill aborted a tick and the shard was started again"
    );
    let ticks: Vec<u64> = events
        .iter()
        .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Tick)
        .map(|e| e.tick)
        .collect();
    assert_eq!(ticks, (1..=TICKS).collect::<Vec<_>>(), "every tick once");
    let got = stored_sti(&client, &atoms).await;
    let (want, want_aggs) = local_reference(&[attention()]).await;
    assert_bit_identical(&got, &want[0], "after docker kill");
    assert_eq!(aggs(end).topk, want_aggs.topk);
    println!(
        "FIGURE container attention job, {TICKS} ticks, 300 ms phase delay, docker kill + start of a shard: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the lockstep:dev image; run by deploy/test-containers.sh"]
async fn containers_partitioned_shard_is_marked_down_fenced_and_recovers() {
    let dc = DockerCluster::start("part", 3, &["LOCKSTEP_FAULT_PHASE_DELAY_MS=200"]).await;
    let client = dc.client().await;
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    client.put(&atoms).await.unwrap();
    let cut = 2;
    let id = dc.shard_id(&client, cut).await;
    let epoch = client.epoch();

    // A write the cut-off shard owns, sent straight to its data address.
    let concept = AtomType::by_name("ConceptNode").unwrap();
    let routing = client.routing();
    let ring = routing.ring.as_ref().unwrap();
    let probe = (0..)
        .map(|i| Atom::node(concept, format!("fence-probe-{i}")).unwrap())
        .find(|a| ring.owner(a.handle().ring_position()).0 == id)
        .unwrap();
    let flat = flatten_batch(std::slice::from_ref(&probe));
    let put = pb::PutAtomsRequest {
        epoch: epoch.0,
        atoms: flat.iter().map(|(a, _)| a.into()).collect(),
        incoming: vec![],
    };

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let job_client = dc.client().await;
    let job = tokio::spawn(async move {
        follow(&job_client, attention(), move |ev| {
            let _ = tx.send(ev.clone());
        })
        .await
    });
    // Cut it off once tick 1 is committed.
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("tick 1 within 120s")
            .expect("job events");
        assert_ne!(
            ev.kind(),
            lockstep::proto::pb::JobEventKind::Failed,
            "{}",
            ev.message
        );
        if ev.kind() == lockstep::proto::pb::JobEventKind::Tick {
            break;
        }
    }
    let cut_at = Instant::now();
    must(&["network", "disconnect", &dc.net("ctl"), &dc.shard(cut)]);

    wait_for(
        "the coordinator to mark the cut-off shard Down",
        Duration::from_millis(DOWN_AFTER_MS + 15_000),
        || async {
            match DockerCluster::liveness(&client, id).await {
                Some(l) if l == pb::Liveness::Down as i32 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let detected = cut_at.elapsed();
    println!(
        "FIGURE partition detected (Down) after {detected:?} (down_after_ms = {DOWN_AFTER_MS})"
    );
    assert!(
        detected < Duration::from_millis(DOWN_AFTER_MS + 2_000),
        "Down after {detected:?}, threshold {DOWN_AFTER_MS} ms"
    );

    // The cut-off shard refuses the write: it lost its lease on the epoch
    // before the coordinator declared it Down. Nothing was written.
    let mut raw = ShardClient::connect(format!("http://{}:7400", dc.shard_data_ip(cut)))
        .await
        .expect("the cut-off shard is reachable on the data network");
    let st = raw.put_atoms(put.clone()).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unavailable, "{}", st.message());
    assert!(st.message().contains("fenced"), "{}", st.message());
    let read = raw
        .get_atoms(pb::GetAtomsRequest {
            epoch: epoch.0,
            handles: vec![probe.handle().to_bytes().to_vec()],
        })
        .await
        .unwrap_err();
    assert!(read.message().contains("fenced"), "{}", read.message());

    // The job waits for the shard (up to the recovery wait): the tick in
    // flight is aborted, naming it, and the job has not failed.
    let mut seen = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        seen.push(ev);
    }
    assert!(
        seen.iter()
            .all(|e| e.kind() != lockstep::proto::pb::JobEventKind::Failed),
        "the job waits for the shard"
    );

    must(&[
        "network",
        "connect",
        "--ip",
        &dc.shard_ip(cut),
        &dc.net("ctl"),
        &dc.shard(cut),
    ]);
    let events = job.await.unwrap();
    let end = events.last().unwrap();
    assert_eq!(
        end.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        end.message
    );
    let aborted: Vec<_> = events
        .iter()
        .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Aborted)
        .collect();
    assert!(
        aborted
            .iter()
            .any(|e| e.message.contains(&format!("shard-{id}"))),
        "a tick was aborted naming shard-{id}: {aborted:?}"
    );
    dc.wait_healthy(3).await;

    // The job's result, and a new job after it, equal local processes.
    let got = stored_sti(&client, &atoms).await;
    let second = spec("attention", 2, &[("top", "5")]);
    let events = follow(&client, second.clone(), |_| {}).await;
    assert_eq!(
        events.last().unwrap().kind(),
        lockstep::proto::pb::JobEventKind::Finished
    );
    let got2 = stored_sti(&client, &atoms).await;
    let (want, _) = local_reference(&[attention(), second]).await;
    assert_bit_identical(&got, &want[0], "the job across the partition");
    assert_bit_identical(&got2, &want[1], "a new job after it");

    // The write the fenced shard refused was never applied; it is accepted
    // once the shard holds its lease again. (Last: a new vertex would change
    // the attention results compared above.)
    assert!(client.get(&[probe.handle()]).await.unwrap()[0].is_none());
    wait_for(
        "the healed shard to accept the write",
        Duration::from_secs(30),
        || {
            let (mut raw, put) = (raw.clone(), put.clone());
            async move {
                raw.put_atoms(put)
                    .await
                    .map(|_| ())
                    .map_err(|st| st.message().to_string())
            }
        },
    )
    .await;
    assert!(client.get(&[probe.handle()]).await.unwrap()[0].is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and the lockstep:dev image; run by deploy/test-containers.sh"]
async fn containers_rolling_restart_under_load_keeps_every_acknowledged_atom() {
    let dc = DockerCluster::start("roll", 3, &[]).await;
    let client = Arc::new(dc.client().await);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));

    // The loader: seeded batches, each retried until acknowledged, as the
    // README says a client should; bounded in count and time.
    let loader = {
        let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut done: Vec<Vec<Atom>> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(240);
            for seed in 0..2_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let batch = generate(300, 10_000 + seed);
                // The client retries each request itself (8 tries, up to
                // 1 s apart); a batch that still fails is sent again whole,
                // which is safe because writes are idempotent.
                loop {
                    match client.put(&batch).await {
                        Ok(_) => break,
                        Err(e) => {
                            assert!(
                                Instant::now() < deadline,
                                "batch {seed} still failing at the deadline: {e}"
                            );
                            tokio::time::sleep(Duration::from_millis(200)).await
                        }
                    }
                }
                done.push(batch);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            done
        })
    };

    let wait_acked = |n: usize| {
        let acked = acked.clone();
        async move {
            wait_for(
                &format!("{n} batches acknowledged"),
                Duration::from_secs(120),
                || {
                    let a = acked.load(Ordering::Relaxed);
                    async move { if a >= n { Ok(()) } else { Err(format!("{a}")) } }
                },
            )
            .await
        }
    };
    wait_acked(3).await;
    for i in 1..=3 {
        let before = acked.load(Ordering::Relaxed);
        must(&["restart", "-t", "20", &dc.shard(i)]);
        dc.wait_healthy(3).await;
        // The load went on through this restart.
        wait_acked(before + 3).await;
    }
    stop.store(true, Ordering::Relaxed);
    let batches = tokio::time::timeout(Duration::from_secs(120), loader)
        .await
        .expect("loader stops")
        .expect("loader finished without a lost batch");
    assert!(batches.len() >= 12, "{} batches", batches.len());

    let mut handles: Vec<Handle> = batches
        .iter()
        .flat_map(|b| flatten_batch(b).into_iter().map(|(a, _)| a.handle))
        .collect();
    handles.sort();
    handles.dedup();
    let got = client.get(&handles).await.unwrap();
    let missing = got.iter().filter(|r| r.is_none()).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} acknowledged atoms missing",
        handles.len()
    );
    println!(
        "FIGURE rolling restart: {} batches, {} distinct atoms acknowledged, all present",
        batches.len(),
        handles.len()
    );
}
