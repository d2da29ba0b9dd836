//! An in-process cluster: the coordinator and the shards run as tasks of
//! this test's multi-thread runtime, each through its real
//! `run(listener, config, shutdown)` on 127.0.0.1 with RocksDB in a
//! temporary folder. Starting one takes milliseconds rather than process
//! spawns, so fault tests that need a clean stop and restart run here; the
//! process tests keep kill -9.

use std::time::Duration;

use lockstep::Client;
use lockstep::input::generate::generate;
use lockstep_coordinator::CoordinatorConfig;
use lockstep_shard::ShardConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::ticks::{
    ATTENTION_TICKS, GRAPH_ATOMS, GRAPH_SEED, check_against_oracle, spec, stored_sti,
};

struct Server<E> {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug> Server<E> {
    /// Shuts the server down as SIGTERM would: in-flight calls finish,
    /// then it stops answering.
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let res = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the server stops within 30 s");
        res.expect("server task").expect("server ran cleanly");
    }
}

fn shutdown() -> (
    oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = oneshot::channel();
    (tx, async move {
        let _ = rx.await;
    })
}

pub struct InProc {
    pub dir: tempfile::TempDir,
    pub addr: String,
    coordinator: Option<Server<lockstep_coordinator::Error>>,
    shards: Vec<Option<Server<lockstep_shard::Error>>>,
    shard_config: ShardConfig,
}

impl InProc {
    /// A coordinator and `n` shards, each shard with `shard` as its
    /// configuration but its own data folder; returns once all are Up.
    pub async fn start(n: usize, shard: ShardConfig) -> InProc {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let config = CoordinatorConfig {
            data_dir: dir.path().join("coordinator"),
            heartbeat_interval_ms: 100,
            suspect_after_ms: 1_000,
            down_after_ms: 3_000,
            ..CoordinatorConfig::default()
        };
        let (stop, signal) = shutdown();
        let task = tokio::spawn(lockstep_coordinator::run(listener, config, signal));
        let mut c = InProc {
            dir,
            addr: addr.clone(),
            coordinator: Some(Server {
                stop: Some(stop),
                task,
            }),
            shards: Vec::new(),
            shard_config: ShardConfig {
                coordinator: addr,
                heartbeat_interval_ms: 100,
                ..shard
            },
        };
        for i in 0..n {
            let s = c.spawn_shard(i).await;
            c.shards.push(Some(s));
        }
        c.wait_up(n).await;
        c
    }

    async fn spawn_shard(&self, i: usize) -> Server<lockstep_shard::Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let config = ShardConfig {
            data_dir: self.dir.path().join(format!("shard-{i}")),
            ..self.shard_config.clone()
        };
        let (stop, signal) = shutdown();
        let task = tokio::spawn(lockstep_shard::run(listener, config, signal));
        Server {
            stop: Some(stop),
            task,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.addr).await.expect("client connects")
    }

    async fn wait_up(&self, n: usize) {
        let client = self.client().await;
        crate::util::wait_for("every shard Up", Duration::from_secs(30), || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            let up = st
                .shards
                .iter()
                .filter(|s| {
                    s.shard
                        .as_ref()
                        .is_some_and(|e| e.liveness == lockstep::proto::pb::Liveness::Up as i32)
                })
                .count();
            if up >= n {
                Ok(())
            } else {
                Err(format!("{up} of {n} Up"))
            }
        })
        .await;
    }

    /// Stops shard `i` cleanly.
    pub async fn stop_shard(&mut self, i: usize) {
        self.shards[i].take().expect("shard running").stop().await;
    }

    /// Starts shard `i` again on its data folder, at a new port.
    pub async fn restart_shard(&mut self, i: usize) {
        let s = self.spawn_shard(i).await;
        self.shards[i] = Some(s);
    }

    pub async fn shutdown(mut self) {
        for s in self.shards.iter_mut().filter_map(Option::take) {
            s.stop().await;
        }
        if let Some(c) = self.coordinator.take() {
            c.stop().await;
        }
    }
}

/// A shard stopped mid-job and started again on its data folder (a rolling
/// restart): the tick it missed is aborted and retried, the recovery wait
/// ends when the shard re-registers, and the result equals the oracle's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attention_survives_a_shard_restart_mid_job_in_process() {
    let mut c = InProc::start(
        3,
        ShardConfig {
            fault_phase_delay_ms: 50,
            ..ShardConfig::default()
        },
    )
    .await;
    let client = c.client().await;
    let atoms = generate(GRAPH_ATOMS, GRAPH_SEED);
    client.put(&atoms).await.expect("load");
    let mut stream = client
        .submit_job(spec("attention", ATTENTION_TICKS, &[]))
        .await
        .expect("submit");
    let mut events = Vec::new();
    let mut restarted = false;
    while let Some(ev) = stream.message().await.expect("event stream") {
        let kind = ev.kind();
        if kind == lockstep::proto::pb::JobEventKind::Tick && ev.tick == 2 && !restarted {
            c.stop_shard(1).await;
            c.restart_shard(1).await;
            restarted = true;
        }
        events.push(ev);
        if kind.outcome().is_some() {
            break;
        }
    }
    let last = events.last().expect("events");
    assert_eq!(
        last.kind(),
        lockstep::proto::pb::JobEventKind::Finished,
        "{}",
        last.message
    );
    assert!(restarted);
    // The restart cost at most a retried tick, never the job.
    assert!(
        events
            .iter()
            .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Aborted)
            .count()
            <= 2
    );
    let ticks: Vec<u64> = events
        .iter()
        .filter(|e| e.kind() == lockstep::proto::pb::JobEventKind::Tick)
        .map(|e| e.tick)
        .collect();
    assert_eq!(ticks, (1..=ATTENTION_TICKS).collect::<Vec<_>>());
    let want = crate::oracle::attention(&atoms, 0.85, ATTENTION_TICKS);
    let got = stored_sti(&client, &atoms).await;
    check_against_oracle(&got, &want);
    c.shutdown().await;
}
