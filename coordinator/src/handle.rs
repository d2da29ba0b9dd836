//! [`Registry`]: a small clonable handle over the registry state that
//! persists every change before answering and publishes topology changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lockstep_model::{ShardId, Topology};
use lockstep_proto::pb;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::Error;
use crate::registry::{Effects, Registration, RegistryState, Settings, ShardRecord, Snapshot};

const REGISTRY_FILE: &str = "registry.json";

/// The registry shared by the service and the liveness task.
#[derive(Clone)]
pub struct Registry {
    state: Arc<Mutex<RegistryState>>,
    topology: watch::Sender<Topology>,
    path: Arc<PathBuf>,
}

/// A consistent copy of what `status` reports.
pub struct StatusView {
    pub topology: Topology,
    pub shards: Vec<ShardRecord>,
    pub has_data: bool,
    pub committed_tick: u64,
}

fn persist_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Persist {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Writes the snapshot atomically: a temporary file, fsync, rename, fsync of
/// the folder.
fn write_snapshot(path: &Path, snap: &Snapshot) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(snap).map_err(|e| persist_err(path, e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| persist_err(&tmp, e))?;
    f.write_all(&body).map_err(|e| persist_err(&tmp, e))?;
    f.sync_all().map_err(|e| persist_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| persist_err(path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| persist_err(dir, e))?;
    }
    Ok(())
}

fn new_cluster_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{nanos}:{}", std::process::id());
    format!("{:016x}", random_hash(seed.as_bytes()))
}

/// A cluster id needs to be unique, not stable, so std's hasher is fine here.
fn random_hash(b: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(b);
    h.finish()
}

impl Registry {
    /// Loads the registry from `data_dir`, or starts a new cluster there.
    pub fn open(data_dir: &Path, settings: Settings) -> Result<Registry, Error> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(REGISTRY_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let snap: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| persist_err(&path, e))?;
                RegistryState::from_snapshot(snap, settings)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = RegistryState::new(new_cluster_id(), settings);
                write_snapshot(&path, &s.snapshot())?;
                s
            }
            Err(e) => return Err(persist_err(&path, e)),
        };
        let (topology, _) = watch::channel(state.topology());
        Ok(Registry {
            state: Arc::new(Mutex::new(state)),
            topology,
            path: Arc::new(path),
        })
    }

    /// Applies `f` to a copy of the state, persists it as `f` asks, and
    /// only then makes it the state and publishes it: a change that could
    /// not be written is not in force (a type id handed out and then lost
    /// at a restart would be given again to another name). The lock is
    /// held across the (small, rare) file write so that the persisted
    /// order matches the order of changes.
    fn apply<T>(
        &self,
        f: impl FnOnce(&mut RegistryState) -> Result<(T, Effects), Error>,
    ) -> Result<T, Error> {
        let mut st = self.state.lock();
        let mut next = st.clone();
        let (out, fx) = f(&mut next)?;
        if fx.persist {
            write_snapshot(&self.path, &next.snapshot())?;
        }
        *st = next;
        if fx.publish {
            self.topology.send_replace(st.topology());
        }
        Ok(out)
    }

    /// Gives new atom types their cluster-wide ids, durably (see
    /// [`RegistryState::register_types`]).
    pub fn register_types(&self, names: &[String]) -> Result<Vec<(u16, String)>, Error> {
        self.apply(|st| st.register_types(names))
    }

    pub fn register(&self, r: Registration) -> Result<(ShardId, Topology), Error> {
        self.apply(|st| {
            let (id, fx) = st.register(r, Instant::now())?;
            Ok(((id, st.topology()), fx))
        })
    }

    /// Records, durably, that the cluster holds data; returns the epoch.
    pub fn declare_data(&self) -> Result<lockstep_model::Epoch, Error> {
        self.apply(|st| Ok(st.declare_data()))
    }

    /// Removes a shard (see [`RegistryState::remove`]).
    pub fn remove(&self, id: ShardId) -> Result<lockstep_model::Epoch, Error> {
        self.apply(|st| {
            let fx = st.remove(id)?;
            Ok((st.epoch(), fx))
        })
    }

    pub fn heartbeat(&self, id: ShardId, metrics: pb::ShardMetrics) -> Result<(), Error> {
        self.apply(|st| Ok(((), st.heartbeat(id, metrics, Instant::now())?)))
    }

    pub fn refresh_liveness(&self) -> Result<(), Error> {
        self.apply(|st| Ok(((), st.refresh_liveness(Instant::now()))))
    }

    /// The last cluster tick decided committed.
    pub fn committed_tick(&self) -> u64 {
        self.state.lock().committed_tick()
    }

    /// Persists the commit decision for `tick` before returning.
    pub fn decide_commit(&self, tick: u64) -> Result<(), Error> {
        self.apply(|st| Ok(((), st.decide_commit(tick))))
    }

    pub fn topology(&self) -> Topology {
        self.topology.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Topology> {
        self.topology.subscribe()
    }

    pub fn status(&self) -> StatusView {
        let st = self.state.lock();
        StatusView {
            topology: st.topology(),
            shards: st.shards().cloned().collect(),
            has_data: st.has_data(),
            committed_tick: st.committed_tick(),
        }
    }

    pub fn settings(&self) -> Settings {
        self.state.lock().settings()
    }

    /// Writes the current state; used at shutdown.
    pub fn persist(&self) -> Result<(), Error> {
        let st = self.state.lock();
        write_snapshot(&self.path, &st.snapshot())
    }
}
