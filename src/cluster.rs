//! A local cluster of child processes on loopback: what `lockstep up` runs
//! and what the integration tests start. Readiness is a line on the child's
//! stdout plus the coordinator's status, never a fixed sleep.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::Error;
use crate::client::Client;

/// The line a server prints on stdout once its socket is bound, followed by
/// the address.
pub const LISTENING: &str = "listening on ";

/// What to start.
#[derive(Clone, Debug)]
pub struct LocalSpec {
    /// The `lockstep` binary.
    pub exe: PathBuf,
    pub shards: usize,
    pub data_dir: PathBuf,
    /// Coordinator port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub ready_timeout: Duration,
    /// Extra flags for every shard.
    pub shard_args: Vec<String>,
    /// Extra flags for the coordinator.
    pub coordinator_args: Vec<String>,
    /// The cluster token the children require (they are given it through
    /// their flags or environment); this process's own calls carry it.
    pub token: lockstep_proto::auth::Token,
    /// TLS material for every process (`up --secure`): each child gets its
    /// own certificate and the token file, and this process's calls use
    /// the client certificate. `None`: plaintext.
    pub certs: Option<crate::certs::CertDir>,
}

/// A running local cluster. Children are killed if this is dropped without
/// [`LocalCluster::shutdown`].
pub struct LocalCluster {
    spec: LocalSpec,
    coordinator: Child,
    coordinator_addr: String,
    shards: Vec<Child>,
    /// Where each shard process listens, as its listening line said.
    shard_addrs: Vec<String>,
}

/// Spawns `exe args`, with stderr to `log`, and waits for its listening line.
pub async fn spawn_server(
    exe: &Path,
    args: &[String],
    log: &Path,
    timeout: Duration,
) -> Result<(Child, String), Error> {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(log, e))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(exe, e))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(timeout, lines.next_line()).await;
    let addr = match first {
        Ok(Ok(Some(line))) => match line.split_once(LISTENING) {
            Some((_, addr)) => addr.trim().to_string(),
            None => return Err(Error::Cluster(format!("unexpected first line {line:?}"))),
        },
        Ok(_) => {
            let status = child.wait().await.ok();
            return Err(Error::Cluster(format!(
                "{} {} exited before listening ({status:?}); log: {}",
                exe.display(),
                args.join(" "),
                tail(log)
            )));
        }
        Err(_) => {
            return Err(Error::Cluster(format!(
                "no listening line within {timeout:?} from {}; log: {}",
                args.join(" "),
                tail(log)
            )));
        }
    };
    // Keep draining stdout into the log so the child never blocks on a full
    // pipe.
    let log = log.to_path_buf();
    tokio::spawn(async move {
        let Ok(mut f) = tokio::fs::OpenOptions::new().append(true).open(&log).await else {
            return;
        };
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = f.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    Ok((child, addr))
}

/// The last lines of a log file, for error messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Sends SIGTERM, waits up to `grace`, then kills.
pub async fn stop_child(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still own.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Spawns the coordinator on `listen` (port 0 picks one).
async fn spawn_coordinator(spec: &LocalSpec, listen: &str) -> Result<(Child, String), Error> {
    let mut args = vec![
        "coordinator".to_string(),
        "--listen".into(),
        listen.to_string(),
        "--data-dir".into(),
        spec.data_dir.join("coordinator").display().to_string(),
    ];
    args.extend(spec.coordinator_args.iter().cloned());
    if let Some(c) = &spec.certs {
        args.extend(c.flags(crate::certs::COORDINATOR));
    }
    spawn_server(
        &spec.exe,
        &args,
        &spec.data_dir.join("logs").join("coordinator.log"),
        spec.ready_timeout,
    )
    .await
}

impl LocalCluster {
    /// Starts a coordinator and the shards, and waits until every shard is
    /// registered and Up.
    pub async fn start(spec: LocalSpec) -> Result<LocalCluster, Error> {
        let logs = spec.data_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
        let (coordinator, coordinator_addr) =
            spawn_coordinator(&spec, &format!("127.0.0.1:{}", spec.port)).await?;
        let mut cluster = LocalCluster {
            spec,
            coordinator,
            coordinator_addr,
            shards: Vec::new(),
            shard_addrs: Vec::new(),
        };
        for i in 0..cluster.spec.shards {
            let (child, addr) = cluster.spawn_shard(i).await?;
            cluster.shards.push(child);
            cluster.shard_addrs.push(addr);
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    /// The data folder of shard `i`.
    pub fn shard_dir(&self, i: usize) -> PathBuf {
        self.spec.data_dir.join(format!("shard-{i}"))
    }

    /// The log of shard process `i`.
    pub fn shard_log(&self, i: usize) -> PathBuf {
        self.spec
            .data_dir
            .join("logs")
            .join(format!("shard-{i}.log"))
    }

    /// The coordinator's log.
    pub fn coordinator_log(&self) -> PathBuf {
        self.spec.data_dir.join("logs").join("coordinator.log")
    }

    /// The address shard process `i` listens on.
    pub fn shard_addr(&self, i: usize) -> &str {
        &self.shard_addrs[i]
    }

    /// The registered id of each shard process, in process order, as the
    /// coordinator knows it (matched by address); `None` for a process
    /// the coordinator does not list. Ids are stored in each shard's data
    /// folder, so a restarted process keeps its id.
    pub async fn shard_ids(&self) -> Result<Vec<Option<lockstep_model::ShardId>>, Error> {
        let st = self.connect().await?.status().await?;
        Ok(self
            .shard_addrs
            .iter()
            .map(|addr| {
                st.shards
                    .iter()
                    .filter_map(|s| s.shard.as_ref())
                    .find(|e| &e.address == addr)
                    .map(|e| lockstep_model::ShardId(e.id))
            })
            .collect())
    }

    async fn spawn_shard(&self, i: usize) -> Result<(Child, String), Error> {
        let mut args = vec![
            "--coordinator".to_string(),
            self.coordinator_addr.clone(),
            "shard".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            self.shard_dir(i).display().to_string(),
        ];
        args.extend(self.spec.shard_args.iter().cloned());
        if let Some(c) = &self.spec.certs {
            args.extend(c.flags(&format!("shard-{i}")));
        }
        spawn_server(
            &self.spec.exe,
            &args,
            &self.shard_log(i),
            self.spec.ready_timeout,
        )
        .await
    }

    /// Polls the coordinator until `spec.shards` shards are Up, or fails at
    /// the deadline naming what it saw.
    pub async fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + self.spec.ready_timeout;
        let mut last = String::from("no status yet");
        loop {
            for (i, c) in self.shards.iter_mut().enumerate() {
                if let Ok(Some(status)) = c.try_wait() {
                    return Err(Error::Cluster(format!(
                        "shard-{i} exited ({status}); log: {}",
                        tail(
                            &self
                                .spec
                                .data_dir
                                .join("logs")
                                .join(format!("shard-{i}.log"))
                        )
                    )));
                }
            }
            if let Ok(client) = self.connect().await
                && let Ok(st) = client.status().await
            {
                let up = st
                    .shards
                    .iter()
                    .filter(|s| {
                        s.shard
                            .as_ref()
                            .is_some_and(|e| e.liveness == lockstep_proto::pb::Liveness::Up as i32)
                    })
                    .count();
                if up >= self.spec.shards {
                    return Ok(());
                }
                last = format!("{up} of {} shards Up", self.spec.shards);
            }
            if Instant::now() >= deadline {
                return Err(Error::Cluster(format!(
                    "cluster not ready after {:?}: {last}",
                    self.spec.ready_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills shard `i` with SIGKILL, as a crash would, and reaps it.
    pub async fn kill_shard(&mut self, i: usize) -> Result<(), Error> {
        let c = &mut self.shards[i];
        c.start_kill()
            .map_err(|e| Error::Cluster(format!("kill shard-{i}: {e}")))?;
        c.wait()
            .await
            .map_err(|e| Error::Cluster(format!("reap shard-{i}: {e}")))?;
        Ok(())
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Shards that have exited since the last call, with their status.
    pub fn exited(&mut self) -> Vec<(usize, std::process::ExitStatus)> {
        let mut out = Vec::new();
        for (i, c) in self.shards.iter_mut().enumerate() {
            if c.id().is_some()
                && let Ok(Some(status)) = c.try_wait()
            {
                out.push((i, status));
            }
        }
        out
    }

    /// The coordinator's exit status, once it has exited.
    pub fn coordinator_exited(&mut self) -> Option<std::process::ExitStatus> {
        // A child already reaped has no id, and was reported then.
        self.coordinator.id()?;
        self.coordinator.try_wait().ok().flatten()
    }

    /// Kills the coordinator with SIGKILL, as a crash would, and reaps it.
    pub async fn kill_coordinator(&mut self) -> Result<(), Error> {
        self.coordinator
            .start_kill()
            .map_err(|e| Error::Cluster(format!("kill coordinator: {e}")))?;
        self.coordinator
            .wait()
            .await
            .map_err(|e| Error::Cluster(format!("reap coordinator: {e}")))?;
        Ok(())
    }

    /// Starts the coordinator again on the address it had, so the shards
    /// and clients that know that address find it again.
    pub async fn restart_coordinator(&mut self) -> Result<(), Error> {
        let (child, addr) = spawn_coordinator(&self.spec, &self.coordinator_addr).await?;
        if addr != self.coordinator_addr {
            return Err(Error::Cluster(format!(
                "the coordinator came back on {addr}, not {}",
                self.coordinator_addr
            )));
        }
        self.coordinator = child;
        Ok(())
    }

    /// Process id of the coordinator.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.id()
    }

    /// Starts shard `i` again on its data folder (after a kill or exit).
    pub async fn restart_shard(&mut self, i: usize) -> Result<(), Error> {
        let (child, addr) = self.spawn_shard(i).await?;
        self.shards[i] = child;
        self.shard_addrs[i] = addr;
        Ok(())
    }

    /// A client of this cluster, carrying its token (and the client
    /// certificate, with TLS).
    pub async fn connect(&self) -> Result<Client, Error> {
        let tls = match &self.spec.certs {
            Some(c) => Some(
                c.files(crate::certs::CLIENT)
                    .load()
                    .map_err(|e| Error::Config(e.to_string()))?,
            ),
            None => None,
        };
        Client::connect_with(
            &self.coordinator_addr,
            crate::client::ClientOptions {
                token: self.spec.token.clone(),
                tls,
                ..Default::default()
            },
        )
        .await
        .map_err(Error::from)
    }

    pub fn coordinator_addr(&self) -> &str {
        &self.coordinator_addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// Process ids of the shards, in order.
    pub fn shard_pids(&self) -> Vec<Option<u32>> {
        self.shards.iter().map(Child::id).collect()
    }

    /// Stops every shard, then the coordinator: SIGTERM, then a kill after
    /// ten seconds.
    pub async fn shutdown(mut self) {
        let grace = Duration::from_secs(10);
        for c in &mut self.shards {
            stop_child(c, grace).await;
        }
        stop_child(&mut self.coordinator, grace).await;
    }
}

/// Starts benchmark clusters: local clusters of this binary, plaintext,
/// on loopback ports of their own.
pub struct Launcher {
    exe: PathBuf,
}

impl Launcher {
    pub fn this_binary() -> Result<Launcher, Error> {
        Ok(Launcher {
            exe: std::env::current_exe().map_err(|e| Error::Cluster(e.to_string()))?,
        })
    }
}

impl lockstep_bench::Launcher for Launcher {
    fn start<'a>(
        &'a self,
        shards: usize,
        dir: &'a Path,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Box<dyn lockstep_bench::Running>, lockstep_bench::Error>,
    > {
        Box::pin(async move {
            let cluster = LocalCluster::start(LocalSpec {
                exe: self.exe.clone(),
                shards,
                data_dir: dir.to_path_buf(),
                port: 0,
                ready_timeout: Duration::from_secs(120),
                shard_args: Vec::new(),
                coordinator_args: Vec::new(),
                token: Default::default(),
                certs: None,
            })
            .await
            .map_err(|e| lockstep_bench::Error::Cluster(e.to_string()))?;
            Ok(Box::new(cluster) as Box<dyn lockstep_bench::Running>)
        })
    }
}

impl lockstep_bench::Running for LocalCluster {
    fn coordinator_addr(&self) -> &str {
        LocalCluster::coordinator_addr(self)
    }

    fn shard_pids(&self) -> Vec<Option<u32>> {
        LocalCluster::shard_pids(self)
    }

    fn shutdown(self: Box<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(LocalCluster::shutdown(*self))
    }
}
