//! The tick engine on a shard: executes the phases the coordinator starts,
//! exchanges messages with other shards, stages a tick's writes, and commits
//! them in two phases.
//!
//! - Phases of one job run one at a time ([`TickEngine::start_phase`] holds
//!   the state lock); messages from other shards arrive concurrently into the
//!   inbox and are read by the *next* phase.
//! - Every message and phase is fenced by (job, tick, attempt): anything
//!   from an aborted attempt is dropped.
//! - A phase answers only after every message it sent was acknowledged.
//! - A tick reads one [`AtomView`], taken when the tick's first phase
//!   starts on this shard and kept for every attempt of that tick, so a
//!   retried tick reads what the first attempt read. It is dropped when the
//!   tick commits.

mod attention;
mod ingest;
mod tfidf;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use lockstep_model::aggregate::Aggregates;
use lockstep_model::workload::{COMMIT, PREPARE, Workload};
use lockstep_model::{FlatAtom, Handle, IncomingRef};
use lockstep_proto::auth::Authed;
use lockstep_proto::pb::{self, shard_client::ShardClient};
use lockstep_proto::tls::Security;
use parking_lot::Mutex;
use tracing::debug;

use crate::Error;
use crate::atoms::{AtomRead, AtomStore, AtomView};
use crate::column::ColumnWrite;
use crate::routing::{Routing, RoutingView};
use crate::store::KvStore;

/// (job, tick, attempt): what every phase and message is fenced by.
type Fence = (u64, u64, u32);

/// Writes staged by a tick, applied at its commit.
#[derive(Default)]
pub struct Staged {
    pub atoms: Vec<FlatAtom>,
    pub incoming: Vec<IncomingRef>,
    pub column: Option<ColumnWrite>,
}

/// What every workload is on a shard: the state it keeps in memory for
/// its job, how it runs a phase, the aggregates it emits, and what it does
/// when a tick commits or aborts. Its phases are those of its model
/// definition ([`Workload::setup_phases`], [`Workload::tick_phases`]), the
/// same list the coordinator drives by.
pub trait ShardWorkload<S: KvStore>: Send {
    /// The names of the aggregates its phases emit (prepare's `created`
    /// and `updated` aside). Debug builds check every phase's output
    /// against it.
    fn emits(&self) -> &'static [&'static str];

    /// Runs one of its own phases (never prepare or commit).
    fn run(
        &mut self,
        phase: &str,
        input: &PhaseInput<'_, S>,
        staged: &mut Staged,
    ) -> Result<PhaseOutput, Error>;

    /// Whether its phases compute or read enough to be moved off the async
    /// workers (`block_in_place`), so that peers' Deliver calls still run.
    fn computes(&self) -> bool {
        true
    }

    /// The tick committed on this shard.
    fn committed(&mut self) {}

    /// The tick attempt in flight was aborted.
    fn aborted(&mut self) {}
}

/// The shard's side of `workload`, fresh for a job.
fn shard_workload<S: KvStore>(
    workload: &Workload,
    limits: &InputLimits,
) -> Box<dyn ShardWorkload<S>> {
    match workload {
        Workload::Ingest(p) => Box::new(ingest::State::new(p.clone(), limits.clone())),
        Workload::Attention(p) => Box::new(attention::State::new(p.clone())),
        Workload::Tfidf(p) => Box::new(tfidf::State::new(p.clone(), limits.clone())),
        Workload::Barrier => Box::new(Barrier),
    }
}

/// The `barrier` workload: empty phases.
struct Barrier;

impl<S: KvStore> ShardWorkload<S> for Barrier {
    fn emits(&self) -> &'static [&'static str] {
        &[]
    }

    fn run(
        &mut self,
        _: &str,
        _: &PhaseInput<'_, S>,
        _: &mut Staged,
    ) -> Result<PhaseOutput, Error> {
        Ok(PhaseOutput::default())
    }

    fn computes(&self) -> bool {
        false
    }
}

struct JobState<S: KvStore> {
    job_id: u64,
    /// The definition: name and phases.
    workload: Workload,
    work: Box<dyn ShardWorkload<S>>,
    fence: Fence,
    staged: Staged,
    /// The job tick whose reads `view` serves, and the view.
    view: Option<(u64, Arc<AtomView<S::Snapshot>>)>,
}

/// What a phase hands back: its partial aggregates and the messages to send,
/// each keyed by the handle whose owner must receive it, or addressed to a
/// shard directly (a workload that packs many values into one message).
#[derive(Default)]
pub struct PhaseOutput {
    pub partial: Aggregates,
    pub outbox: Vec<(Handle, Vec<u8>)>,
    pub direct: Vec<(lockstep_model::ShardId, pb::ShardMessage)>,
}

/// The most message bytes one Deliver call carries, well under the
/// servers' 256 MiB decoding limit.
const DELIVER_BYTES: usize = 64 << 20;

/// Everything a workload phase may read.
pub struct PhaseInput<'a, S: KvStore> {
    /// The store as of the tick's start.
    pub view: &'a AtomView<S::Snapshot>,
    /// The routing at the phase's epoch, taken once rather than per key.
    pub routing: Arc<Routing>,
    pub me: lockstep_model::ShardId,
    pub tick: u64,
    pub globals: &'a Aggregates,
    pub inbox: Vec<pb::ShardMessage>,
}

impl<S: KvStore> PhaseInput<'_, S> {
    /// Whether this shard owns `h` at the current epoch.
    pub fn owns(&self, h: Handle) -> bool {
        self.routing
            .ring
            .as_ref()
            .is_some_and(|ring| ring.owner(h.ring_position()) == self.me)
    }
}

/// What a job may read, and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputLimits {
    /// The only folder jobs read host files from; `None`: no files.
    pub import_dir: Option<std::path::PathBuf>,
    /// The largest `ingest --generate` count.
    pub max_generate: u64,
    /// The most bytes one tick reads of a file (or of one document).
    pub max_read_bytes: u64,
    /// The deepest nesting of atoms in an input file.
    pub max_depth: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            import_dir: None,
            max_generate: crate::config::DEFAULT_MAX_GENERATE,
            max_read_bytes: crate::config::DEFAULT_MAX_TICK_READ_MB << 20,
            max_depth: crate::config::DEFAULT_MAX_INPUT_DEPTH,
        }
    }
}

/// Messages from other shards, held until the phase that reads them: at
/// most `max_bytes` in all, across every fence, so that neither a job's
/// exchange nor a stranger's Deliver calls can grow it without bound.
struct Inbox {
    messages: HashMap<(Fence, String), Vec<pb::ShardMessage>>,
    bytes: usize,
    max_bytes: usize,
}

fn message_bytes(ms: &[pb::ShardMessage]) -> usize {
    ms.iter().map(|m| m.key.len() + m.data.len()).sum()
}

impl Inbox {
    fn take(&mut self, key: &(Fence, String)) -> Vec<pb::ShardMessage> {
        let ms = self.messages.remove(key).unwrap_or_default();
        self.bytes -= message_bytes(&ms);
        ms
    }

    fn retain(&mut self, mut keep: impl FnMut(&Fence) -> bool) {
        let mut freed = 0;
        self.messages.retain(|(f, _), ms| {
            let k = keep(f);
            if !k {
                freed += message_bytes(ms);
            }
            k
        });
        self.bytes -= freed;
    }

    /// Adds messages, or refuses them whole when they would pass the limit.
    fn add(&mut self, fence: Fence, phase: &str, ms: Vec<pb::ShardMessage>) -> Result<(), Error> {
        let n = message_bytes(&ms);
        if self.bytes.saturating_add(n) > self.max_bytes {
            return Err(Error::OverLimit {
                what: format!("{n} bytes of tick messages on top of {} held", self.bytes),
                limit: "max_inbox_mb",
                max: (self.max_bytes >> 20) as u64,
            });
        }
        self.bytes += n;
        self.messages
            .entry((fence, phase.to_string()))
            .or_default()
            .extend(ms);
        Ok(())
    }
}

/// Fault injection for tests, named and explicit: a delay at the start of
/// every phase but commit, so that a test can kill a shard mid-phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub phase_delay: Duration,
    /// A delay at the start of commit: widens the window between a tick's
    /// prepare and its commit, where client writes must still be kept.
    pub commit_delay: Duration,
}

/// The shard's tick engine.
pub struct TickEngine<S: KvStore> {
    store: Arc<AtomStore<S>>,
    routing: RoutingView,
    state: tokio::sync::Mutex<Option<JobState<S>>>,
    inbox: Mutex<Inbox>,
    peers: Mutex<HashMap<String, ShardClient<Authed>>>,
    faults: Faults,
    limits: InputLimits,
    /// How Deliver calls to peers are made: TLS and the cluster token.
    security: Security,
    /// Each phase's time on this shard, by workload and phase.
    phase_seconds: lockstep_telemetry::HistogramVec,
    /// Where a tick's new atom types get their ids before prepare; none in
    /// an engine with no coordinator (tests), whose ticks then write only
    /// types the store holds.
    types: Option<crate::membership::TypeRegistrar>,
}

impl<S: KvStore> TickEngine<S> {
    pub fn new(
        store: Arc<AtomStore<S>>,
        routing: RoutingView,
        faults: Faults,
        limits: InputLimits,
        max_inbox_bytes: usize,
        security: Security,
    ) -> Self {
        TickEngine {
            store,
            routing,
            state: tokio::sync::Mutex::new(None),
            inbox: Mutex::new(Inbox {
                messages: HashMap::new(),
                bytes: 0,
                max_bytes: max_inbox_bytes,
            }),
            peers: Mutex::new(HashMap::new()),
            faults,
            limits,
            security,
            phase_seconds: crate::metrics::phase_seconds(),
            types: None,
        }
    }

    /// The same engine, registering the new types a tick writes.
    pub fn with_types(mut self, types: crate::membership::TypeRegistrar) -> Self {
        self.types = Some(types);
        self
    }

    /// The same engine, recording phase times into `phase_seconds` (a
    /// served shard's, registered).
    pub fn with_phase_metrics(mut self, phase_seconds: lockstep_telemetry::HistogramVec) -> Self {
        self.phase_seconds = phase_seconds;
        self
    }

    fn peer(&self, addr: &str) -> Result<ShardClient<Authed>, Error> {
        let mut peers = self.peers.lock();
        if let Some(c) = peers.get(addr) {
            return Ok(c.clone());
        }
        let ch = self
            .security
            .channel(addr, &lockstep_proto::channel::ChannelOptions::PEER)
            .map_err(|e| Error::Config(format!("bad peer address {addr:?}: {e}")))?;
        let c = self.security.shard_client(ch);
        peers.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Runs one phase and reports its partial aggregates.
    pub async fn start_phase(&self, req: pb::StartPhaseRequest) -> Result<pb::PhaseDone, Error> {
        let started = Instant::now();
        let phase_name = req.phase().named()?;
        let job = req.job.ok_or(lockstep_proto::ProtoError::Missing("job"))?;
        let spec = job
            .spec
            .ok_or(lockstep_proto::ProtoError::Missing("job.spec"))?;
        let fence: Fence = (job.job_id, req.tick, req.attempt);
        // Every shard runs the phase with the coordinator's ring: a shard
        // that has not seen that epoch yet waits for it (or fails the phase).
        let routing = self.routing.at(lockstep_model::Epoch(req.epoch)).await?;
        let mut guard = self.state.lock().await;

        // First, on the first phase of a job, tick or attempt, honour the
        // coordinator's commit decision for any batch this shard prepared
        // before (in an earlier tick, or before it crashed). Within one
        // attempt nothing is left to settle: prepare is followed by commit.
        if guard
            .as_ref()
            .is_none_or(|s| s.job_id != job.job_id || s.fence != fence)
        {
            let store = self.store.clone();
            let committed = req.committed_tick;
            blocking(move || store.resolve_prepared(committed)).await?;
        }

        if guard.as_ref().is_none_or(|s| s.job_id != job.job_id) {
            let workload = Workload::try_from(&spec)?;
            let work = shard_workload::<S>(&workload, &self.limits);
            self.inbox.lock().retain(|f| f.0 == job.job_id);
            *guard = Some(JobState {
                job_id: job.job_id,
                workload,
                work,
                fence,
                staged: Staged::default(),
                view: None,
            });
        }
        let Some(st) = guard.as_mut() else {
            return Err(Error::NotReady);
        };
        if st.fence != fence {
            // A new tick or a new attempt: whatever was staged belongs to an
            // attempt that is over.
            st.fence = fence;
            st.staged = Staged::default();
            self.inbox
                .lock()
                .retain(|f| f.0 != fence.0 || (f.1, f.2) >= (fence.1, fence.2));
        }
        if phase_name != COMMIT && !self.faults.phase_delay.is_zero() {
            tokio::time::sleep(self.faults.phase_delay).await;
        }
        if phase_name == COMMIT && !self.faults.commit_delay.is_zero() {
            tokio::time::sleep(self.faults.commit_delay).await;
        }

        let globals: Aggregates = req.globals.unwrap_or_default().into();
        let phases: Vec<&str> = st
            .workload
            .setup_phases()
            .iter()
            .chain(st.workload.tick_phases(req.tick))
            .copied()
            .collect();
        let prev = phases
            .iter()
            .position(|p| *p == phase_name)
            .and_then(|i| i.checked_sub(1))
            .map(|i| phases[i].to_string());
        let inbox = prev
            .map(|p| self.inbox.lock().take(&(fence, p)))
            .unwrap_or_default();

        let output = match phase_name {
            PREPARE => {
                // A view of an earlier tick would keep its column buffer,
                // the one this prepare may write.
                if st.view.as_ref().is_some_and(|(t, _)| *t != req.tick) {
                    st.view = None;
                }
                let staged = std::mem::take(&mut st.staged);
                if let Some(types) = &self.types {
                    types
                        .ensure(&self.store, &staged.atoms, &staged.incoming)
                        .await?;
                }
                let store = self.store.clone();
                let tick = req.cluster_tick;
                let out = blocking(move || {
                    store.prepare(
                        tick,
                        &staged.atoms,
                        &staged.incoming,
                        staged.column.as_ref(),
                    )
                })
                .await?;
                let mut partial = Aggregates::default();
                partial.add_int("created", out.created as i64);
                partial.add_int("updated", out.updated as i64);
                PhaseOutput {
                    partial,
                    ..PhaseOutput::default()
                }
            }
            COMMIT => {
                let store = self.store.clone();
                let tick = req.cluster_tick;
                blocking(move || store.commit(tick)).await?;
                st.view = None;
                st.work.committed();
                PhaseOutput::default()
            }
            phase => {
                let view = match &st.view {
                    Some((t, v)) if *t == req.tick => v.clone(),
                    _ => {
                        // Dropped first, so the store no longer holds what
                        // the last tick's view read.
                        st.view = None;
                        let v = Arc::new(tokio::task::block_in_place(|| self.store.view()));
                        st.view = Some((req.tick, v.clone()));
                        v
                    }
                };
                let input: PhaseInput<'_, S> = PhaseInput {
                    view: &view,
                    routing: routing.clone(),
                    me: self.routing.me(),
                    tick: req.tick,
                    globals: &globals,
                    inbox,
                };
                // Phases read RocksDB and compute; keep them off the async
                // workers' hot path so Deliver calls from peers still run.
                let staged = &mut st.staged;
                let work = &mut st.work;
                let out = if work.computes() {
                    tokio::task::block_in_place(|| work.run(phase, &input, staged))?
                } else {
                    work.run(phase, &input, staged)?
                };
                debug_assert!(
                    out.partial.names().all(|n| work.emits().contains(&n)),
                    "{} emitted an aggregate it does not declare: {:?}",
                    st.workload.name(),
                    out.partial.names().collect::<Vec<_>>()
                );
                out
            }
        };
        let sent = (output.outbox.len() + output.direct.len()) as u64;
        self.send(&routing, fence, phase_name, output.outbox, output.direct)
            .await?;
        // Only the workload's own phase names become labels.
        let phase = phases
            .iter()
            .find(|p| **p == phase_name)
            .copied()
            .unwrap_or("other");
        self.phase_seconds
            .with_label_values(&[st.workload.name(), phase])
            .observe(started.elapsed().as_secs_f64());
        Ok(pb::PhaseDone {
            partial: Some((&output.partial).into()),
            messages_sent: sent,
            duration_us: started.elapsed().as_micros() as u64,
        })
    }

    /// Sends messages to their owners (or the shards they are addressed
    /// to), batched per shard in calls of at most [`DELIVER_BYTES`], and
    /// waits for every acknowledgement. Messages for this shard skip the
    /// network.
    async fn send(
        &self,
        routing: &Routing,
        fence: Fence,
        phase: &str,
        outbox: Vec<(Handle, Vec<u8>)>,
        direct: Vec<(lockstep_model::ShardId, pb::ShardMessage)>,
    ) -> Result<(), Error> {
        if outbox.is_empty() && direct.is_empty() {
            return Ok(());
        }
        let mut by_shard: HashMap<lockstep_model::ShardId, Vec<pb::ShardMessage>> = HashMap::new();
        if !outbox.is_empty() {
            let ring = routing.ring.as_ref().ok_or(Error::NotReady)?;
            for (key, data) in outbox {
                by_shard
                    .entry(ring.owner(key.ring_position()))
                    .or_default()
                    .push(pb::ShardMessage {
                        key: key.to_bytes().to_vec(),
                        data,
                    });
            }
        }
        for (shard, m) in direct {
            by_shard.entry(shard).or_default().push(m);
        }
        let mut calls = Vec::new();
        for (shard, messages) in by_shard {
            if shard == self.routing.me() {
                self.accept(fence, phase, messages)?;
                continue;
            }
            let addr = routing
                .topology
                .shard(shard)
                .map(|s| s.address.clone())
                .ok_or(Error::NotReady)?;
            let peer = self.peer(&addr)?;
            for messages in split_by_bytes(messages, DELIVER_BYTES) {
                let req = pb::DeliverRequest {
                    job_id: fence.0,
                    tick: fence.1,
                    attempt: fence.2,
                    phase: pb::Phase::of(phase).unwrap_or_default().into(),
                    messages,
                };
                let mut peer = peer.clone();
                let addr = addr.clone();
                calls.push(async move {
                    peer.deliver(req).await.map_err(|st| Error::Peer {
                        addr,
                        reason: st.message().to_string(),
                    })
                });
            }
        }
        for r in join_all(calls).await {
            r?;
        }
        Ok(())
    }

    fn accept(
        &self,
        fence: Fence,
        phase: &str,
        messages: Vec<pb::ShardMessage>,
    ) -> Result<(), Error> {
        self.inbox.lock().add(fence, phase, messages)
    }

    /// Takes messages from another shard, unless they belong to an attempt
    /// this shard already knows is over.
    pub async fn deliver(&self, req: pb::DeliverRequest) -> Result<(), Error> {
        let fence: Fence = (req.job_id, req.tick, req.attempt);
        if let Ok(guard) = self.state.try_lock()
            && let Some(st) = guard.as_ref()
            && st.job_id == fence.0
            && (fence.1, fence.2) < (st.fence.1, st.fence.2)
        {
            debug!(?fence, current = ?st.fence, "dropping messages from an old attempt");
            return Ok(());
        }
        let phase = req.phase().named()?;
        self.accept(fence, phase, req.messages)
    }

    /// Drops whatever the attempt staged, prepared or received.
    pub async fn abort(&self, req: pb::AbortTickRequest) -> Result<(), Error> {
        let mut guard = self.state.lock().await;
        // Only an abort of the job this shard is running touches its state:
        // a stray or late abort must never drop a batch the coordinator may
        // already have decided to commit. A batch prepared before a restart
        // (no job state) is settled by the committed tick the next phase
        // carries, not here.
        let Some(st) = guard.as_mut().filter(|st| st.job_id == req.job_id) else {
            return Ok(());
        };
        self.inbox
            .lock()
            .retain(|f| !(f.0 == req.job_id && f.1 == req.tick && f.2 <= req.attempt));
        if (st.fence.1, st.fence.2) > (req.tick, req.attempt) {
            // Already on a later tick or attempt: the abort is late, and
            // what is staged now belongs to an attempt that is still live.
            return Ok(());
        }
        st.staged = Staged::default();
        st.work.aborted();
        let store = self.store.clone();
        // The coordinator aborts an attempt only before its commit decision,
        // so a batch this attempt prepared is not committed anywhere.
        blocking(move || {
            let last = store.last_tick()?;
            match store.prepared_tick()? {
                Some(t) if t > last => store.discard_prepared(),
                _ => Ok(()),
            }
        })
        .await
    }
}

/// Groups messages, in order, into runs of at most `limit` bytes (a single
/// larger message gets a run of its own).
fn split_by_bytes(messages: Vec<pb::ShardMessage>, limit: usize) -> Vec<Vec<pb::ShardMessage>> {
    let mut runs: Vec<Vec<pb::ShardMessage>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let size = m.key.len() + m.data.len();
        match runs.last_mut() {
            Some(run) if bytes + size <= limit => run.push(m),
            _ => {
                bytes = 0;
                runs.push(vec![m]);
            }
        }
        bytes += size;
    }
    runs
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Storage(format!("blocking task failed: {e}")))?
}

/// The handles of every node on this shard, in order.
pub fn local_node_handles(store: &impl AtomRead) -> Result<Vec<Handle>, Error> {
    let mut out = Vec::new();
    let types = store.types();
    let registered = types.registered();
    for ty in lockstep_model::AtomType::builtins()
        .chain(registered.iter().map(|(_, t)| *t))
        .filter(|t| t.is_node())
    {
        let mut after = None;
        loop {
            let (page, more) = store.scan_type_handles(ty, after, 10_000)?;
            after = page.last().copied();
            out.extend(page);
            if !more {
                break;
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The whole incoming set of `h` on this shard.
pub fn all_incoming(store: &impl AtomRead, h: Handle) -> Result<Vec<IncomingRef>, Error> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = store.incoming(h, after, 10_000)?;
        after = page.last().map(|r| r.link);
        out.extend(page);
        if !more {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mem::MemStore;
    use lockstep_model::{AtomType, Epoch, ShardId, Topology};
    use tokio::sync::watch;

    fn engine() -> (TickEngine<MemStore>, Arc<AtomStore<MemStore>>) {
        engine_with(vec![])
    }

    /// An engine on `kv` whose ring is this one shard.
    fn sole_engine<S: KvStore>(kv: S) -> (TickEngine<S>, Arc<AtomStore<S>>) {
        engine_on(
            kv,
            vec![lockstep_model::atom::ShardEntry {
                id: ShardId(1),
                address: "127.0.0.1:1".into(),
                weight: 1.0,
                in_ring: true,
                liveness: lockstep_model::atom::Liveness::Up,
                tokens: vec![],
            }],
        )
    }

    fn engine_with(
        shards: Vec<lockstep_model::atom::ShardEntry>,
    ) -> (TickEngine<MemStore>, Arc<AtomStore<MemStore>>) {
        engine_on(MemStore::default(), shards)
    }

    fn engine_on<S: KvStore>(
        kv: S,
        shards: Vec<lockstep_model::atom::ShardEntry>,
    ) -> (TickEngine<S>, Arc<AtomStore<S>>) {
        let store = Arc::new(AtomStore::open(kv).unwrap());
        let topology = Topology {
            epoch: Epoch(1),
            vnodes: 16,
            shards,
            cluster_id: "c".into(),
            max_batch: 100,
            types: Vec::new(),
        };
        let (_tx, rx) = watch::channel(Arc::new(Routing::new(topology).unwrap()));
        let view = RoutingView::new(ShardId(1), rx, crate::routing::Lease::unbounded());
        (
            TickEngine::new(
                store.clone(),
                view,
                Faults::default(),
                InputLimits::default(),
                1 << 10,
                Security::none(),
            ),
            store,
        )
    }

    fn set_job(engine: &TickEngine<MemStore>, job_id: u64, fence: Fence) {
        let workload = Workload::parse("barrier", &HashMap::new()).unwrap();
        let work: Box<dyn ShardWorkload<MemStore>> = Box::new(Barrier);
        *engine.state.try_lock().unwrap() = Some(JobState {
            job_id,
            workload,
            work,
            fence,
            staged: Staged::default(),
            view: None,
        });
    }

    fn prepare_tick_one(store: &AtomStore<MemStore>) {
        let a = FlatAtom::new(
            AtomType::by_name("ConceptNode").unwrap(),
            "a".into(),
            vec![],
        )
        .unwrap();
        store.prepare(1, &[a], &[], None).unwrap();
        assert_eq!(store.prepared_tick().unwrap(), Some(1));
    }

    fn abort(job_id: u64, tick: u64, attempt: u32) -> pb::AbortTickRequest {
        pb::AbortTickRequest {
            job_id,
            tick,
            attempt,
        }
    }

    #[test]
    fn deliver_calls_are_split_at_the_byte_limit_in_order() {
        let m = |n: usize, tag: u8| pb::ShardMessage {
            key: vec![tag],
            data: vec![0; n - 1],
        };
        let runs = split_by_bytes(vec![m(4, 1), m(4, 2), m(3, 3), m(20, 4), m(1, 5)], 10);
        let tags: Vec<Vec<u8>> = runs
            .iter()
            .map(|r| r.iter().map(|m| m.key[0]).collect())
            .collect();
        assert_eq!(tags, vec![vec![1, 2], vec![3], vec![4], vec![5]]);
        assert!(split_by_bytes(Vec::new(), 10).is_empty());
    }

    #[tokio::test]
    async fn the_inbox_is_bounded_and_frees_what_it_drops() {
        let (engine, _) = engine();
        let deliver = |job: u64, n: usize| pb::DeliverRequest {
            job_id: job,
            tick: 1,
            attempt: 0,
            phase: pb::Phase::Spread.into(),
            messages: vec![pb::ShardMessage {
                key: vec![],
                data: vec![0; n],
            }],
        };
        engine.deliver(deliver(1, 600)).await.unwrap();
        let e = engine.deliver(deliver(2, 600)).await.unwrap_err();
        assert!(e.to_string().contains("max_inbox_mb"), "{e}");
        assert!(matches!(
            tonic::Status::from(e).code(),
            tonic::Code::InvalidArgument
        ));
        // An abort of job 1's attempt frees its bytes for the next one.
        set_job(&engine, 1, (1, 1, 0));
        engine.abort(abort(1, 1, 0)).await.unwrap();
        engine.deliver(deliver(2, 1000)).await.unwrap();
        assert_eq!(engine.inbox.lock().bytes, 1000);
    }

    #[tokio::test]
    async fn a_stray_or_late_abort_keeps_a_prepared_batch() {
        let (engine, store) = engine();
        prepare_tick_one(&store);

        // No job running (as after a restart): nothing is dropped.
        engine.abort(abort(0, 0, 0)).await.unwrap();
        assert_eq!(store.prepared_tick().unwrap(), Some(1));

        // Another job's abort, and a late abort of an earlier attempt.
        set_job(&engine, 7, (7, 3, 2));
        engine.abort(abort(8, 3, 2)).await.unwrap();
        engine.abort(abort(7, 3, 1)).await.unwrap();
        engine.abort(abort(7, 2, 5)).await.unwrap();
        assert_eq!(store.prepared_tick().unwrap(), Some(1));

        // The abort of the attempt the shard is on drops it.
        engine.abort(abort(7, 3, 2)).await.unwrap();
        assert_eq!(store.prepared_tick().unwrap(), None);
        assert_eq!(store.last_tick().unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_tick_reads_what_its_first_attempt_read() {
        retried_tick_reads_its_snapshot(MemStore::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let rocks = crate::store::rocks::RocksStore::open(
            dir.path(),
            &crate::store::rocks::RocksOptions::default(),
        )
        .unwrap();
        retried_tick_reads_its_snapshot(rocks).await;
    }

    async fn retried_tick_reads_its_snapshot<S: KvStore>(kv: S) {
        let (engine, store) = sole_engine(kv);
        let ty = |n: &str| AtomType::by_name(n).unwrap();
        let word = FlatAtom::new(ty("WordNode"), "x".into(), vec![]).unwrap();
        let doc = |name: &str| {
            let mut d = FlatAtom::new(ty("ConceptNode"), format!("doc:{name}"), vec![]).unwrap();
            d.values
                .insert("total".into(), lockstep_model::Value::Float(vec![2.0]));
            d
        };
        let contains = |d: &FlatAtom| {
            let mut l = FlatAtom::new(
                ty("ContainsLink"),
                String::new(),
                vec![d.handle, word.handle],
            )
            .unwrap();
            l.values
                .insert("count".into(), lockstep_model::Value::Float(vec![2.0]));
            l
        };
        let refs = |l: &FlatAtom| -> Vec<IncomingRef> {
            l.outgoing
                .iter()
                .map(|t| IncomingRef::new(*t, l.ty, l.outgoing.clone()).unwrap())
                .collect()
        };
        let load = |d: FlatAtom| {
            let l = contains(&d);
            store.put(&[d, word.clone(), l.clone()], &refs(&l)).unwrap();
        };
        load(doc("a"));

        let run = |tick: u64, attempt: u32, phase: &str| pb::StartPhaseRequest {
            job: Some(pb::JobContext {
                job_id: 1,
                spec: Some(
                    lockstep_proto::convert::spec_of(
                        "tfidf",
                        5,
                        &[("docs".to_string(), ".".to_string())].into(),
                    )
                    .unwrap(),
                ),
            }),
            tick,
            attempt,
            phase: pb::Phase::of(phase).expect("a workload phase").into(),
            globals: None,
            cluster_tick: tick,
            committed_tick: tick - 1,
            epoch: 1,
        };
        // Documents seen and ContainsLinks of "x" found by a df phase.
        let df = |done: pb::PhaseDone| {
            let agg = Aggregates::from(done.partial.unwrap());
            (agg.int("documents"), done.messages_sent)
        };

        assert_eq!(
            df(engine.start_phase(run(2, 0, "df")).await.unwrap()),
            (1, 1)
        );
        // A client adds a document while the tick runs, and the attempt is
        // aborted: the retry reads the tick's snapshot, not the new state.
        load(doc("b"));
        engine.abort(abort(1, 2, 0)).await.unwrap();
        assert_eq!(
            df(engine.start_phase(run(2, 1, "df")).await.unwrap()),
            (1, 1)
        );
        for phase in ["tf", "score", PREPARE, COMMIT] {
            engine.start_phase(run(2, 1, phase)).await.unwrap();
        }
        assert_eq!(store.last_tick().unwrap(), 2);
        // The next tick reads the store as it is at its start.
        assert_eq!(
            df(engine.start_phase(run(3, 0, "df")).await.unwrap()),
            (2, 2)
        );
    }
}
