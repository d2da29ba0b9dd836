//! Fixtures: start a local cluster of real processes, wait on conditions
//! with deadlines, run the CLI.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lockstep::cluster::{LocalCluster, LocalSpec};
use lockstep::{Client, proto::pb};
use tempfile::TempDir;

/// The `lockstep` binary cargo built for these tests.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lockstep"))
}

/// Liveness thresholds short enough for tests, long enough for a loaded
/// 2-core machine.
pub fn coordinator_args() -> Vec<String> {
    [
        "--heartbeat-interval-ms",
        "100",
        "--suspect-after-ms",
        "1000",
        "--down-after-ms",
        "3000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

pub fn shard_args() -> Vec<String> {
    vec!["--heartbeat-interval-ms".into(), "100".into()]
}

/// A local cluster in a temporary folder, removed on drop.
pub struct TestCluster {
    pub cluster: LocalCluster,
    pub dir: TempDir,
}

impl TestCluster {
    pub async fn start(shards: usize) -> TestCluster {
        TestCluster::start_with(shards, Vec::new()).await
    }

    pub async fn start_with(shards: usize, extra_shard_args: Vec<String>) -> TestCluster {
        TestCluster::start_full(shards, extra_shard_args, Vec::new()).await
    }

    /// A cluster whose every process requires the token in `token_file`.
    pub async fn start_with_token(shards: usize, token_file: &std::path::Path) -> TestCluster {
        let flag = vec!["--token-file".to_string(), token_file.display().to_string()];
        let secret = std::fs::read_to_string(token_file).expect("token file");
        let token = lockstep::proto::auth::Token::new(&secret).expect("valid token");
        TestCluster::start_spec(shards, flag.clone(), flag, token, false).await
    }

    pub async fn start_full(
        shards: usize,
        extra_shard_args: Vec<String>,
        extra_coordinator_args: Vec<String>,
    ) -> TestCluster {
        TestCluster::start_spec(
            shards,
            extra_shard_args,
            extra_coordinator_args,
            Default::default(),
            false,
        )
        .await
    }

    /// A cluster with TLS on every connection and a token, made as
    /// `lockstep up --secure` makes them, under `DIR/tls`.
    pub async fn start_secure(shards: usize) -> TestCluster {
        TestCluster::start_spec(shards, Vec::new(), Vec::new(), Default::default(), true).await
    }

    async fn start_spec(
        shards: usize,
        extra_shard_args: Vec<String>,
        extra_coordinator_args: Vec<String>,
        mut token: lockstep::proto::auth::Token,
        secure: bool,
    ) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = secure.then(|| {
            let c = lockstep::certs::CertDir::new(dir.path().join("tls"));
            c.ensure(&lockstep::certs::cluster_names(shards))
                .expect("TLS material");
            let secret = std::fs::read_to_string(c.token()).expect("token file");
            token = lockstep::proto::auth::Token::new(&secret).expect("token");
            c
        });
        // Extra flags replace the defaults they name (clap refuses a flag
        // given twice).
        // The defaults are `--flag value` pairs.
        let merge = |base: Vec<String>, extra: Vec<String>| {
            let mut out: Vec<String> = base
                .chunks(2)
                .filter(|pair| !extra.iter().any(|e| e.starts_with("--") && *e == pair[0]))
                .flatten()
                .cloned()
                .collect();
            out.extend(extra);
            out
        };
        let shard_args = merge(shard_args(), extra_shard_args);
        let coord_args = merge(coordinator_args(), extra_coordinator_args);
        let cluster = LocalCluster::start(LocalSpec {
            exe: exe(),
            shards,
            data_dir: dir.path().to_path_buf(),
            port: 0,
            ready_timeout: Duration::from_secs(60),
            shard_args,
            coordinator_args: coord_args,
            token,
            certs,
        })
        .await
        .expect("local cluster starts");
        TestCluster { cluster, dir }
    }

    /// The command line and log of an extra shard process `name`, with
    /// its own data folder, for this cluster's coordinator.
    pub fn extra_shard(&self, name: &str) -> (Vec<String>, PathBuf) {
        let mut args = vec![
            "--coordinator".to_string(),
            self.addr(),
            "shard".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            self.dir.path().join(name).display().to_string(),
        ];
        args.extend(shard_args());
        (
            args,
            self.dir.path().join("logs").join(format!("{name}.log")),
        )
    }

    /// Starts an extra shard process `name` and waits for it to listen.
    pub async fn start_extra_shard(&self, name: &str) -> tokio::process::Child {
        let (args, log) = self.extra_shard(name);
        lockstep::cluster::spawn_server(&exe(), &args, &log, Duration::from_secs(60))
            .await
            .expect("extra shard starts")
            .0
    }

    pub fn addr(&self) -> String {
        self.cluster.coordinator_addr().to_string()
    }

    pub async fn client(&self) -> Client {
        self.cluster.connect().await.expect("client connects")
    }
}

/// Polls `check` until it returns `Some`, or panics at the deadline saying
/// what it waited for and what it saw last.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match check().await {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the shards' heartbeats report `total` atoms in all.
pub async fn wait_for_total(client: &Client, total: u64) -> pb::ClusterStatusResponse {
    wait_for(
        &format!("status to report {total} atoms"),
        Duration::from_secs(30),
        || async {
            let st = client.status().await.map_err(|e| e.to_string())?;
            let sum: u64 = st
                .shards
                .iter()
                .map(|s| s.metrics.as_ref().map_or(0, |m| m.atoms))
                .sum();
            if sum == total && st.total_atoms == total {
                Ok(st)
            } else {
                Err(format!("sum {sum}, total {}", st.total_atoms))
            }
        },
    )
    .await
}

/// Follows a job's events to the end, calling `on_event` on each.
pub async fn follow(
    client: &Client,
    spec: pb::JobSpec,
    mut on_event: impl FnMut(&pb::JobEvent),
) -> Vec<pb::JobEvent> {
    let mut stream = client.submit_job(spec).await.expect("job accepted");
    let mut events = Vec::new();
    let run = async {
        while let Some(ev) = stream.message().await.expect("event stream") {
            on_event(&ev);
            let done = ev.kind().outcome().is_some();
            events.push(ev);
            if done {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("job ends within 300s");
    events
}

/// Runs the CLI to completion, bounded in time.
pub async fn lockstep(args: &[&str]) -> std::process::Output {
    lockstep_env(args, &[]).await
}

/// Runs the CLI with extra environment variables.
pub async fn lockstep_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let home = tempfile::tempdir().expect("temp dir");
    let fut = tokio::process::Command::new(exe())
        .args(args)
        .env("LOCKSTEP_HOME", home.path())
        .env_remove("LOCKSTEP_COORDINATOR")
        .env_remove("LOCKSTEP_TOKEN")
        .env_remove("LOCKSTEP_TOKEN_FILE")
        .env_remove("LOCKSTEP_TLS_CERT")
        .env_remove("LOCKSTEP_TLS_KEY")
        .env_remove("LOCKSTEP_TLS_CA")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .unwrap_or_else(|_| panic!("lockstep {args:?} did not finish within 120s"))
        .expect("lockstep runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `lockstep up` child process and the lines it prints.
pub struct UpProcess {
    pub child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl UpProcess {
    /// Starts `lockstep up ARGS` with `$LOCKSTEP_HOME` at `home`.
    pub fn spawn(args: &[&str], home: &std::path::Path) -> UpProcess {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(exe())
            .arg("up")
            .args(args)
            .env("LOCKSTEP_HOME", home)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("`lockstep up` starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
        UpProcess {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The next line containing `want`, within 90 s.
    pub async fn line(&mut self, want: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(l)) => {
                    self.seen.push(l.clone());
                    if l.contains(want) {
                        return l;
                    }
                }
                _ => panic!("`up` never printed {want:?}; it printed {:?}", self.seen),
            }
        }
    }

    /// The coordinator address `up` prints, then its ready line.
    pub async fn ready(&mut self) -> String {
        let addr = self.line("coordinator  ").await;
        let addr = addr
            .split_whitespace()
            .nth(1)
            .expect("an address")
            .to_string();
        self.line("ready:").await;
        addr
    }

    /// SIGTERM, and a clean exit within 60 s.
    pub async fn stop(mut self) {
        // SAFETY: kill(2) on the child this helper started.
        unsafe {
            libc::kill(self.child.id().expect("running") as i32, libc::SIGTERM);
        }
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("`up` stops within 60 s")
            .expect("wait");
        assert!(status.success(), "`up` exited with {status}");
    }
}
