//! Jobs: one workload run over all shards, tick by tick, phase by phase.
//!
//! For each phase the driver sends StartPhase to every ring shard at once,
//! waits for every PhaseDone (each within the phase deadline), and merges
//! the partial aggregates; the merge so far in the tick is the globals of the
//! next phase. A tick's last two phases are prepare and commit: between them
//! the driver persists "tick T committed", which is the commit point.
//!
//! A shard that fails a phase before the commit point aborts the tick: every
//! shard drops what the attempt staged, the driver waits (up to the recovery
//! wait) for the missing shard to answer again, reruns the workload's setup
//! and retries the tick with the next attempt number, up to the configured
//! number of attempts per tick. After the commit point
//! the tick is not retried; the commit is re-sent until every shard has it.
//!
//! A recovery wait ends when the registry publishes a change (a shard
//! re-registers, at a new address or back from Down) after which every ring
//! shard answers its health check. A shard can also come back without any
//! registry change (restarted within the suspect window at the same
//! address, or a link that healed), so the wait re-probes on a slow backoff
//! as well.
//!
//! The driver reaches shards only through [`net::ShardNet`], so `tests`
//! drives it against a scripted network under tokio's paused clock.

pub mod net;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use lockstep_model::aggregate::Aggregates;
use lockstep_model::workload::{COMMIT, Workload};
use lockstep_model::{Liveness, ShardId};
use lockstep_proto::pb;
use lockstep_proto::wire_error::peer_error;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
// Tokio's clock, so that the unit tests can pause it.
use tokio::time::Instant;
use tonic::Status;
use tracing::{info, warn};

use crate::Error;
use crate::handle::Registry;
use crate::metrics::DriverMetrics;
use net::{CallError, ShardNet};

/// The first and the longest pause between the re-probes of a recovery
/// wait that no registry change has ended.
const REPROBE_FIRST: Duration = Duration::from_millis(250);
const REPROBE_MAX: Duration = Duration::from_secs(2);
/// How long an abort may take on one shard; an abort that does not arrive
/// is harmless, since the next attempt's prepare replaces what it staged.
const ABORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How jobs are driven.
#[derive(Clone, Copy, Debug)]
pub struct JobSettings {
    /// Every phase must finish on every shard within this.
    pub phase_deadline: Duration,
    /// How long a job waits for a missing shard before it fails.
    pub recovery_wait: Duration,
    /// Attempts one tick gets before the job fails.
    pub max_tick_attempts: u32,
}

struct Running {
    id: u64,
    cancel: watch::Sender<bool>,
}

struct Inner {
    next_id: u64,
    running: Option<Running>,
    history: Vec<pb::JobSummary>,
}

/// The job manager: a small clonable handle.
#[derive(Clone)]
pub struct Jobs {
    registry: Registry,
    settings: JobSettings,
    /// How calls reach shards.
    net: Arc<dyn ShardNet>,
    metrics: DriverMetrics,
    inner: Arc<Mutex<Inner>>,
}

pub type EventStream = mpsc::Receiver<Result<pb::JobEvent, Status>>;

impl Jobs {
    /// Jobs that reach shards through `net`.
    pub fn with_net(registry: Registry, settings: JobSettings, net: Arc<dyn ShardNet>) -> Jobs {
        Jobs {
            registry,
            settings,
            net,
            metrics: DriverMetrics::default(),
            inner: Arc::new(Mutex::new(Inner {
                next_id: 1,
                running: None,
                history: Vec::new(),
            })),
        }
    }

    /// The same jobs, recording into `metrics` (those of a served
    /// coordinator).
    pub fn with_metrics(mut self, metrics: DriverMetrics) -> Jobs {
        self.metrics = metrics;
        self
    }

    /// Starts a job; its events arrive on the returned stream.
    pub fn submit(&self, spec: pb::JobSpec) -> Result<(u64, EventStream), Error> {
        let workload = Workload::try_from(&spec).map_err(|e| Error::Invalid(e.to_string()))?;
        if spec.ticks == 0 {
            return Err(Error::Invalid("ticks must be at least 1".into()));
        }
        let mut inner = self.inner.lock();
        if let Some(r) = &inner.running {
            return Err(Error::Busy(r.id));
        }
        // A job that writes makes the cluster hold data before its first
        // prepare, so a shard that registers during the job is Joining and
        // the ring stays as the job found it.
        if !matches!(workload, Workload::Barrier) {
            self.registry.declare_data()?;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let (cancel, cancel_rx) = watch::channel(false);
        inner.running = Some(Running { id, cancel });
        inner.history.push(pb::JobSummary {
            job_id: id,
            spec: Some(spec.clone()),
            outcome: pb::JobOutcome::Running.into(),
            ..Default::default()
        });
        let (tx, rx) = mpsc::channel(1024);
        let driver = Driver {
            jobs: self.clone(),
            id,
            spec,
            workload,
            tx,
            cancel: cancel_rx,
            started: Instant::now(),
            ticks_done: 0,
        };
        tokio::spawn(driver.run());
        Ok((id, rx))
    }

    /// Asks job `id` to stop at the next phase boundary.
    pub fn cancel(&self, id: u64) -> Result<u64, Error> {
        let inner = self.inner.lock();
        match &inner.running {
            Some(r) if r.id == id => {
                let _ = r.cancel.send(true);
                Ok(self.registry.committed_tick())
            }
            _ if inner.history.iter().any(|j| j.job_id == id) => {
                Err(Error::Invalid(format!("job {id} is not running")))
            }
            _ => Err(Error::UnknownJob(id)),
        }
    }

    /// The id of the running job, if one is.
    pub fn running(&self) -> Option<u64> {
        self.inner.lock().running.as_ref().map(|r| r.id)
    }

    pub fn list(&self) -> Vec<pb::JobSummary> {
        self.inner.lock().history.clone()
    }

    /// Records a committed tick of job `id`, so that `lockstep jobs` shows
    /// a running job's progress.
    fn progress(&self, id: u64, ticks_done: u64) {
        let committed = self.registry.committed_tick();
        let mut inner = self.inner.lock();
        if let Some(j) = inner.history.iter_mut().find(|j| j.job_id == id) {
            j.ticks_done = ticks_done;
            j.committed_tick = committed;
        }
    }

    fn finish(
        &self,
        id: u64,
        outcome: pb::JobOutcome,
        ticks_done: u64,
        message: String,
        took: Duration,
    ) {
        let committed = self.registry.committed_tick();
        let mut inner = self.inner.lock();
        if let Some(j) = inner.history.iter_mut().find(|j| j.job_id == id) {
            j.outcome = outcome.into();
            j.ticks_done = ticks_done;
            j.committed_tick = committed;
            j.message = message;
            j.duration_ms = took.as_millis() as u64;
        }
        if inner.running.as_ref().is_some_and(|r| r.id == id) {
            inner.running = None;
        }
    }
}

/// A phase that did not complete on some shard.
struct PhaseFailure {
    shard: ShardId,
    reason: String,
    /// The shard answered, and its answer will not change on a retry (an
    /// invalid parameter, a missing or unparseable input file, an address
    /// that cannot be dialled): the job fails at once instead of waiting
    /// for the shard and retrying the tick.
    fatal: bool,
}

impl PhaseFailure {
    fn missing(shard: ShardId, reason: String) -> PhaseFailure {
        PhaseFailure {
            shard,
            reason,
            fatal: false,
        }
    }
}

/// Whether a shard's answer to a phase is its final word: the request
/// itself is wrong, so retrying it gives the same answer.
fn deterministic(st: &Status) -> bool {
    matches!(st.code(), tonic::Code::InvalidArgument)
}

enum Stop {
    Failed(String),
    Cancelled,
}

struct Driver {
    jobs: Jobs,
    id: u64,
    spec: pb::JobSpec,
    workload: Workload,
    tx: mpsc::Sender<Result<pb::JobEvent, Status>>,
    cancel: watch::Receiver<bool>,
    started: Instant,
    ticks_done: u64,
}

impl Driver {
    async fn emit(&self, mut ev: pb::JobEvent) {
        ev.job_id = self.id;
        ev.ticks = self.spec.ticks;
        ev.committed_tick = self.jobs.registry.committed_tick();
        // A client that went away does not stop the job.
        let _ = self.tx.send(Ok(ev)).await;
    }

    async fn run(mut self) {
        info!(
            job = self.id,
            workload = self.workload.name(),
            ticks = self.spec.ticks,
            "job started"
        );
        self.emit(pb::JobEvent {
            kind: pb::JobEventKind::Started.into(),
            ..Default::default()
        })
        .await;
        let (kind, message, aggs) = match self.drive().await {
            Ok(aggs) => (
                pb::JobOutcome::Finished,
                self.input_left_message(&aggs),
                Some(aggs),
            ),
            Err(Stop::Cancelled) => (
                pb::JobOutcome::Cancelled,
                format!(
                    "cancelled; the store stays at committed tick {}",
                    self.jobs.registry.committed_tick()
                ),
                None,
            ),
            Err(Stop::Failed(m)) => (pb::JobOutcome::Failed, m, None),
        };
        info!(job = self.id, outcome = kind.name(), %message, "job ended");
        self.jobs.finish(
            self.id,
            kind,
            self.ticks_done,
            message.clone(),
            self.started.elapsed(),
        );
        let last = match kind {
            pb::JobOutcome::Finished => pb::JobEventKind::Finished,
            pb::JobOutcome::Cancelled => pb::JobEventKind::Cancelled,
            _ => pb::JobEventKind::Failed,
        };
        self.emit(pb::JobEvent {
            kind: last.into(),
            message,
            aggregates: aggs.as_ref().map(Into::into),
            tick: self.ticks_done,
            duration_us: self.started.elapsed().as_micros() as u64,
            ..Default::default()
        })
        .await;
    }

    /// What a finished `ingest` says when its ticks did not reach the end
    /// of its input (every shard reports `more_input` from its own read
    /// of the same stream).
    fn input_left_message(&self, last: &Aggregates) -> String {
        match &self.workload {
            Workload::Ingest(p) if last.maxs.get("more_input").is_some_and(|v| *v > 0.0) => {
                format!(
                    "the input goes on past {} ticks of {} atoms: only the first {} top-level atoms were loaded; run it with more --ticks to load the rest",
                    self.spec.ticks,
                    p.batch,
                    self.spec.ticks.saturating_mul(p.batch as u64)
                )
            }
            _ => String::new(),
        }
    }

    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    async fn drive(&mut self) -> Result<Aggregates, Stop> {
        let mut need_setup = true;
        let mut last = Aggregates::default();
        for tick in 1..=self.spec.ticks {
            let mut attempt = 0u32;
            loop {
                if self.cancelled() {
                    return Err(Stop::Cancelled);
                }
                let tick_started = Instant::now();
                let cluster_tick = self.jobs.registry.committed_tick() + 1;
                match self
                    .run_tick(tick, attempt, cluster_tick, &mut need_setup)
                    .await
                {
                    Ok(aggs) => {
                        self.ticks_done = tick;
                        self.jobs.progress(self.id, tick);
                        self.emit(pb::JobEvent {
                            kind: pb::JobEventKind::Tick.into(),
                            tick,
                            attempt,
                            duration_us: tick_started.elapsed().as_micros() as u64,
                            aggregates: Some((&aggs).into()),
                            ..Default::default()
                        })
                        .await;
                        last = aggs;
                        break;
                    }
                    Err(Err(stop)) => return Err(stop),
                    Err(Ok(f)) if f.fatal => {
                        warn!(job = self.id, shard = %f.shard, reason = %f.reason, "job failed");
                        self.abort_all(tick, attempt).await;
                        return Err(Stop::Failed(format!(
                            "tick {tick}: {} refused {}; the store stays at committed tick {}",
                            f.shard,
                            f.reason,
                            self.jobs.registry.committed_tick()
                        )));
                    }
                    Err(Ok(f)) => {
                        let message = format!(
                            "tick {tick} attempt {attempt} aborted: {} missing ({})",
                            f.shard, f.reason
                        );
                        warn!(job = self.id, "{message}");
                        self.abort_all(tick, attempt).await;
                        self.jobs
                            .metrics
                            .tick_aborts
                            .with_label_values(&[self.workload.name()])
                            .inc();
                        self.emit(pb::JobEvent {
                            kind: pb::JobEventKind::Aborted.into(),
                            tick,
                            attempt,
                            message,
                            ..Default::default()
                        })
                        .await;
                        if attempt + 1 >= self.jobs.settings.max_tick_attempts {
                            return Err(Stop::Failed(format!(
                                "tick {tick} failed {} attempts in a row, the last: {} missing ({}); the store stays at committed tick {}",
                                attempt + 1,
                                f.shard,
                                f.reason,
                                self.jobs.registry.committed_tick()
                            )));
                        }
                        self.wait_recovery(f.shard).await?;
                        need_setup = true;
                        attempt += 1;
                    }
                }
            }
        }
        Ok(last)
    }

    /// One attempt at one tick. `Err(Ok(_))` is a failure before the commit
    /// point (abort and retry); `Err(Err(_))` ends the job.
    async fn run_tick(
        &mut self,
        tick: u64,
        attempt: u32,
        cluster_tick: u64,
        need_setup: &mut bool,
    ) -> Result<Aggregates, Result<PhaseFailure, Stop>> {
        if *need_setup {
            let mut globals = Aggregates::default();
            for phase in self.workload.setup_phases() {
                let partial = self
                    .run_phase(phase, tick, attempt, cluster_tick, &globals)
                    .await
                    .map_err(Ok)?;
                globals.merge(partial);
            }
            *need_setup = false;
        }
        let mut globals = Aggregates::default();
        for phase in self.workload.tick_phases(tick) {
            if *phase == COMMIT {
                // The commit point: once this is on disk the tick is
                // committed, whatever happens to the shards next.
                self.jobs
                    .registry
                    .decide_commit(cluster_tick)
                    .map_err(|e| Err(Stop::Failed(format!("cannot record the commit: {e}"))))?;
                self.commit_everywhere(tick, attempt, cluster_tick).await?;
                self.jobs
                    .metrics
                    .ticks_committed
                    .with_label_values(&[self.workload.name()])
                    .inc();
                return Ok(globals);
            }
            if self.cancelled() {
                // Before the commit point: drop what the attempt staged
                // now, rather than at the next job's first prepare. (A
                // cancel after the commit point never aborts.)
                self.abort_all(tick, attempt).await;
                return Err(Err(Stop::Cancelled));
            }
            let partial = self
                .run_phase(phase, tick, attempt, cluster_tick, &globals)
                .await
                .map_err(Ok)?;
            globals.merge(partial);
        }
        Ok(globals)
    }

    /// Sends commit until every ring shard has applied it.
    async fn commit_everywhere(
        &mut self,
        tick: u64,
        attempt: u32,
        cluster_tick: u64,
    ) -> Result<(), Result<PhaseFailure, Stop>> {
        loop {
            match self
                .run_phase(COMMIT, tick, attempt, cluster_tick, &Aggregates::default())
                .await
            {
                Ok(_) => return Ok(()),
                Err(f) => {
                    warn!(job = self.id, shard = %f.shard, "commit not yet applied everywhere; waiting for the shard");
                    self.wait_recovery(f.shard).await.map_err(Err)?;
                }
            }
        }
    }

    /// Whether every ring shard is not Down and answers as serving.
    async fn all_serving(&self) -> bool {
        let shards = self.ring_shards();
        if shards.iter().any(|s| s.liveness == Liveness::Down) {
            return false;
        }
        let probes = shards.iter().map(|s| self.jobs.net.serving(&s.address));
        join_all(probes).await.into_iter().all(|ok| ok)
    }

    fn ring_shards(&self) -> Vec<lockstep_model::ShardEntry> {
        self.jobs
            .registry
            .topology()
            .shards
            .into_iter()
            .filter(|s| s.in_ring)
            .collect()
    }

    async fn run_phase(
        &mut self,
        phase: &str,
        tick: u64,
        attempt: u32,
        cluster_tick: u64,
        globals: &Aggregates,
    ) -> Result<Aggregates, PhaseFailure> {
        let started = Instant::now();
        // One topology read per phase: the shards and the epoch agree.
        let topology = self.jobs.registry.topology();
        let epoch = topology.epoch.0;
        let shards: Vec<lockstep_model::ShardEntry> =
            topology.shards.into_iter().filter(|s| s.in_ring).collect();
        if let Some(s) = shards.iter().find(|s| s.liveness == Liveness::Down) {
            return Err(PhaseFailure::missing(s.id, "it is Down".into()));
        }
        let req = pb::StartPhaseRequest {
            job: Some(pb::JobContext {
                job_id: self.id,
                spec: Some(self.spec.clone()),
            }),
            tick,
            attempt,
            phase: pb::Phase::of(phase).unwrap_or_default().into(),
            globals: Some(globals.into()),
            cluster_tick,
            committed_tick: self.jobs.registry.committed_tick(),
            epoch,
        };
        let deadline = self.jobs.settings.phase_deadline;
        let calls: Vec<_> = shards
            .iter()
            .map(|s| {
                let call = self.jobs.net.start_phase(&s.address, req.clone());
                let id = s.id;
                async move {
                    let r = tokio::time::timeout(deadline, call).await;
                    (id, r, Instant::now())
                }
            })
            .collect();
        let mut merged = Aggregates::default();
        // A shard that failed on its own is named before one that failed
        // because a peer did not take its messages; that peer is then named.
        let mut direct = None;
        let mut via_peer = None;
        // When the first and the last shard answered: the barrier's wait.
        let mut answered: Option<(Instant, Instant)> = None;
        for (id, r, at) in join_all(calls).await {
            answered = Some(answered.map_or((at, at), |(lo, hi)| (lo.min(at), hi.max(at))));
            match r {
                Ok(Ok(done)) => merged.merge(done.partial.unwrap_or_default().into()),
                Ok(Err(CallError::Undialable(e))) => {
                    let f = PhaseFailure {
                        shard: id,
                        reason: format!(
                            "{phase}: {e}; `lockstep remove {}` takes it out of the registry",
                            id.0
                        ),
                        fatal: true,
                    };
                    if direct.as_ref().is_none_or(|d: &PhaseFailure| !d.fatal) {
                        direct = Some(f);
                    }
                }
                Ok(Err(CallError::Status(st))) => match peer_error(&st) {
                    Some(addr) => {
                        let blamed = shards.iter().find(|s| s.address == addr).map(|s| s.id);
                        via_peer.get_or_insert(PhaseFailure::missing(
                            blamed.unwrap_or(id),
                            format!("{phase}: {id}: {}", st.message()),
                        ));
                    }
                    None if deterministic(&st) => {
                        // A shard's own final answer outranks any other
                        // failure of the phase: retrying cannot help.
                        let f = PhaseFailure {
                            shard: id,
                            reason: format!("the {phase} phase: {}", st.message()),
                            fatal: true,
                        };
                        if direct.as_ref().is_none_or(|d: &PhaseFailure| !d.fatal) {
                            direct = Some(f);
                        }
                    }
                    None => {
                        direct.get_or_insert(PhaseFailure::missing(
                            id,
                            format!("{phase}: {}", st.message()),
                        ));
                    }
                },
                Err(_) => {
                    direct.get_or_insert(PhaseFailure::missing(
                        id,
                        format!("{phase}: no answer within {deadline:?}"),
                    ));
                }
            }
        }
        if let Some(f) = direct.or(via_peer) {
            return Err(f);
        }
        let spread = answered.map_or(Duration::ZERO, |(lo, hi)| hi - lo);
        self.jobs
            .metrics
            .phase(self.workload.name(), phase, started.elapsed(), spread);
        if phase != COMMIT {
            self.emit(pb::JobEvent {
                kind: pb::JobEventKind::Phase.into(),
                tick,
                attempt,
                phase: pb::Phase::of(phase).unwrap_or_default().into(),
                duration_us: started.elapsed().as_micros() as u64,
                aggregates: Some((&merged).into()),
                ..Default::default()
            })
            .await;
        }
        Ok(merged)
    }

    /// Tells every reachable shard to drop the attempt.
    async fn abort_all(&mut self, tick: u64, attempt: u32) {
        let req = pb::AbortTickRequest {
            job_id: self.id,
            tick,
            attempt,
        };
        let calls: Vec<_> = self
            .ring_shards()
            .iter()
            .map(|s| {
                let call = self.jobs.net.abort_tick(&s.address, req);
                async move {
                    let _ = tokio::time::timeout(ABORT_TIMEOUT, call).await;
                }
            })
            .collect();
        join_all(calls).await;
    }

    /// Waits until every ring shard answers again, or fails the job naming
    /// the shard after the recovery wait. Each registry change is looked at
    /// as it is published; between changes the shards are re-probed on a
    /// backoff (see the module docs).
    async fn wait_recovery(&mut self, missing: ShardId) -> Result<(), Stop> {
        let deadline = Instant::now() + self.jobs.settings.recovery_wait;
        let mut topology = self.jobs.registry.subscribe();
        let mut cancel = self.cancel.clone();
        let mut pause = REPROBE_FIRST;
        loop {
            if self.cancelled() {
                return Err(Stop::Cancelled);
            }
            // Whatever is published from here on wakes the wait below.
            topology.mark_unchanged();
            if self.all_serving().await {
                return Ok(());
            }
            tokio::select! {
                changed = topology.changed() => {
                    if changed.is_err() {
                        return Err(Stop::Failed("the registry closed".into()));
                    }
                    pause = REPROBE_FIRST;
                }
                // The sender lives until the job ends, so an error here
                // means the job is being torn down.
                r = cancel.changed() => if r.is_err() { return Err(Stop::Cancelled) },
                _ = tokio::time::sleep(pause) => pause = (pause * 2).min(REPROBE_MAX),
                _ = tokio::time::sleep_until(deadline) => {
                    // One last look: the shard may be back by now.
                    if self.all_serving().await {
                        return Ok(());
                    }
                    return Err(Stop::Failed(format!(
                        "{missing} did not come back within {:?}; the store stays at committed tick {}",
                        self.jobs.settings.recovery_wait,
                        self.jobs.registry.committed_tick()
                    )));
                }
            }
        }
    }
}
