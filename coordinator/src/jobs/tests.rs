//! The job driver against a scripted network under tokio's paused clock:
//! deadlines, aborts and retries, the commit point, blame, the attempt
//! limit, cancel, and the recovery wait. Virtual time makes a 10 s deadline
//! cost nothing, and lets the tests say exactly when each call was made.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lockstep_model::aggregate::Aggregates;
use lockstep_model::{ShardId, workload::COMMIT};
use lockstep_proto::pb;
use lockstep_proto::wire_error::peer_status;
use parking_lot::Mutex;
use tokio::time::Instant;
use tonic::Status;

use super::net::{CallError, ShardNet};
use super::{EventStream, JobSettings, Jobs};
use crate::handle::Registry;
use crate::registry::{Registration, Settings, Thresholds};

/// What a scripted shard does with a phase.
#[derive(Clone)]
enum Act {
    Fail(Status),
    Undialable,
    /// Never answers: only the driver's deadline ends the call.
    Hang,
    /// Answers after this long.
    Delay(Duration),
}

#[derive(Clone)]
struct Rule {
    addr: String,
    phase: Option<&'static str>,
    tick: Option<u64>,
    attempt: Option<u32>,
    /// Applies this many more times; `None` is forever.
    times: Option<u32>,
    act: Act,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Phase(String),
    Abort,
}

#[derive(Clone, Debug)]
struct Call {
    at: Instant,
    addr: String,
    kind: Kind,
    tick: u64,
    attempt: u32,
}

#[derive(Default)]
struct FakeState {
    rules: Vec<Rule>,
    calls: Vec<Call>,
    /// Addresses nobody answers at: calls fail as Unavailable and health
    /// checks as not serving.
    dead: HashSet<String>,
    probes: HashMap<String, u32>,
}

/// A scripted network: every shard answers every phase with `n = 1`
/// unless a rule says otherwise.
#[derive(Default)]
struct Fake {
    st: Mutex<FakeState>,
}

impl Fake {
    fn rule(
        &self,
        addr: &str,
        phase: Option<&'static str>,
        tick: u64,
        attempt: Option<u32>,
        times: Option<u32>,
        act: Act,
    ) {
        self.st.lock().rules.push(Rule {
            addr: addr.into(),
            phase,
            tick: Some(tick),
            attempt,
            times,
            act,
        });
    }

    fn kill(&self, addr: &str) {
        self.st.lock().dead.insert(addr.into());
    }

    fn calls(&self) -> Vec<Call> {
        self.st.lock().calls.clone()
    }

    fn phases(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c.kind, Kind::Phase(_)))
            .collect()
    }

    fn probes(&self, addr: &str) -> u32 {
        self.st.lock().probes.get(addr).copied().unwrap_or(0)
    }

    fn act(&self, addr: &str, req: &pb::StartPhaseRequest) -> Option<Act> {
        let mut st = self.st.lock();
        st.calls.push(Call {
            at: Instant::now(),
            addr: addr.into(),
            kind: Kind::Phase(req.phase().name().to_string()),
            tick: req.tick,
            attempt: req.attempt,
        });
        if st.dead.contains(addr) {
            return Some(Act::Fail(Status::unavailable("connection refused")));
        }
        let rule = st.rules.iter_mut().find(|r| {
            r.addr == addr
                && r.phase.is_none_or(|p| p == req.phase().name())
                && r.tick.is_none_or(|t| t == req.tick)
                && r.attempt.is_none_or(|a| a == req.attempt)
                && r.times != Some(0)
        })?;
        if let Some(n) = &mut rule.times {
            *n -= 1;
        }
        Some(rule.act.clone())
    }
}

impl ShardNet for Fake {
    fn start_phase(
        &self,
        addr: &str,
        req: pb::StartPhaseRequest,
    ) -> BoxFuture<'static, Result<pb::PhaseDone, CallError>> {
        let act = self.act(addr, &req);
        Box::pin(async move {
            match act {
                Some(Act::Fail(st)) => return Err(CallError::Status(st)),
                Some(Act::Undialable) => return Err(CallError::Undialable("bad address".into())),
                Some(Act::Hang) => futures::future::pending::<()>().await,
                Some(Act::Delay(d)) => tokio::time::sleep(d).await,
                None => {}
            }
            let mut partial = Aggregates::default();
            partial.add_int("n", 1);
            Ok(pb::PhaseDone {
                partial: Some((&partial).into()),
                ..Default::default()
            })
        })
    }

    fn abort_tick(
        &self,
        addr: &str,
        req: pb::AbortTickRequest,
    ) -> BoxFuture<'static, Result<(), CallError>> {
        self.st.lock().calls.push(Call {
            at: Instant::now(),
            addr: addr.into(),
            kind: Kind::Abort,
            tick: req.tick,
            attempt: req.attempt,
        });
        Box::pin(async { Ok(()) })
    }

    fn serving(&self, addr: &str) -> BoxFuture<'static, bool> {
        let mut st = self.st.lock();
        *st.probes.entry(addr.into()).or_default() += 1;
        let ok = !st.dead.contains(addr);
        Box::pin(async move { ok })
    }
}

const A: &str = "127.0.0.1:1001";
const B: &str = "127.0.0.1:1002";
const C: &str = "127.0.0.1:1003";

struct Harness {
    _dir: tempfile::TempDir,
    registry: Registry,
    fake: Arc<Fake>,
    jobs: Jobs,
    ids: Vec<ShardId>,
}

fn settings() -> JobSettings {
    JobSettings {
        phase_deadline: Duration::from_secs(10),
        recovery_wait: Duration::from_secs(30),
        max_tick_attempts: 3,
    }
}

fn harness(settings: JobSettings) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::open(
        dir.path(),
        Settings {
            vnodes: 8,
            max_batch: 100,
            max_types: 16,
            heartbeat_interval_ms: 500,
            // Liveness is never refreshed here: only the tests change it.
            thresholds: Thresholds {
                suspect_after: Duration::from_secs(3600),
                down_after: Duration::from_secs(7200),
            },
        },
    )
    .expect("registry");
    let ids = [A, B, C]
        .iter()
        .map(|addr| {
            registry
                .register(Registration {
                    shard_id: None,
                    cluster_id: String::new(),
                    address: addr.to_string(),
                    weight: 1.0,
                    atoms: 0,
                })
                .expect("register")
                .0
        })
        .collect();
    let fake = Arc::new(Fake::default());
    let jobs = Jobs::with_net(registry.clone(), settings, fake.clone());
    Harness {
        _dir: dir,
        registry,
        fake,
        jobs,
        ids,
    }
}

fn barrier(ticks: u64) -> pb::JobSpec {
    lockstep_proto::convert::job_spec(&lockstep_model::workload::Workload::Barrier, ticks)
}

/// Every event of a job, in order, with the virtual time it arrived.
async fn events(mut rx: EventStream) -> Vec<(Instant, pb::JobEvent)> {
    let mut out = Vec::new();
    while let Some(ev) = rx.recv().await {
        out.push((Instant::now(), ev.expect("event")));
    }
    out
}

fn kinds(evs: &[(Instant, pb::JobEvent)]) -> Vec<String> {
    evs.iter()
        .map(|(_, e)| e.kind().name().to_string())
        .collect()
}

fn last(evs: &[(Instant, pb::JobEvent)]) -> &pb::JobEvent {
    &evs.last().expect("at least one event").1
}

#[tokio::test(start_paused = true)]
async fn a_clean_job_runs_every_phase_on_every_shard_and_merges() {
    let h = harness(settings());
    let (_, rx) = h.jobs.submit(barrier(2)).expect("submit");
    let evs = events(rx).await;
    assert_eq!(last(&evs).kind(), pb::JobEventKind::Finished);
    assert_eq!(h.registry.committed_tick(), 2);
    // Ten phases a tick, three shards, two ticks.
    assert_eq!(h.fake.phases().len(), 10 * 3 * 2);
    let phase = evs
        .iter()
        .find(|(_, e)| e.kind() == pb::JobEventKind::Phase)
        .map(|(_, e)| e.clone())
        .expect("a phase event");
    let merged: Aggregates = phase.aggregates.expect("aggregates").into();
    assert_eq!(merged.int("n"), 3, "one partial per shard, merged");
}

#[tokio::test(start_paused = true)]
async fn the_driver_measures_each_phase_and_its_barrier_wait() {
    let h = harness(settings());
    let metrics = crate::metrics::DriverMetrics::default();
    let jobs = h.jobs.clone().with_metrics(metrics.clone());
    // In tick 1, B answers empty-2 after 3 s and C after 5 s; A at once.
    h.fake.rule(
        B,
        Some("empty-2"),
        1,
        None,
        None,
        Act::Delay(Duration::from_secs(3)),
    );
    h.fake.rule(
        C,
        Some("empty-2"),
        1,
        None,
        None,
        Act::Delay(Duration::from_secs(5)),
    );
    // Attempt 0 of tick 2 loses C: one abort, then a retry that commits.
    h.fake.rule(
        C,
        Some("empty-4"),
        2,
        Some(0),
        Some(1),
        Act::Fail(Status::unavailable("gone")),
    );
    let (_, rx) = jobs.submit(barrier(2)).expect("submit");
    let evs = events(rx).await;
    assert_eq!(
        last(&evs).kind(),
        pb::JobEventKind::Finished,
        "{:?}",
        kinds(&evs)
    );
    let h2 = |phase: &str| {
        let took = metrics.phase_seconds.with_label_values(&["barrier", phase]);
        let wait = metrics
            .barrier_wait_seconds
            .with_label_values(&["barrier", phase]);
        (
            took.get_sample_count(),
            took.get_sample_sum(),
            wait.get_sample_sum(),
        )
    };
    // Once per tick, plus the retried attempt of tick 2.
    let (n, took, wait) = h2("empty-2");
    assert_eq!(n, 3);
    assert!((took - 5.0).abs() < 1e-3, "{took}");
    assert!(
        (wait - 5.0).abs() < 1e-3,
        "the slowest shard answered 5 s after the first: {wait}"
    );
    // A failed phase is not a measured one.
    assert_eq!(h2("empty-4").0, 2);
    assert_eq!(h2("commit").0, 2);
    let committed = metrics
        .ticks_committed
        .with_label_values(&["barrier"])
        .get();
    let aborted = metrics.tick_aborts.with_label_values(&["barrier"]).get();
    assert_eq!((committed, aborted), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_missed_deadline_aborts_and_retries() {
    let h = harness(settings());
    h.fake.rule(B, Some("empty-3"), 1, Some(0), None, Act::Hang);
    let started = Instant::now();
    let (_, rx) = h.jobs.submit(barrier(2)).expect("submit");
    let evs = events(rx).await;
    assert_eq!(
        last(&evs).kind(),
        pb::JobEventKind::Finished,
        "{:?}",
        kinds(&evs)
    );
    let aborted: Vec<_> = evs
        .iter()
        .filter(|(_, e)| e.kind() == pb::JobEventKind::Aborted)
        .collect();
    assert_eq!(aborted.len(), 1);
    let (at, ev) = aborted[0];
    assert_eq!((ev.tick, ev.attempt), (1, 0));
    assert!(ev.message.contains(&h.ids[1].to_string()), "{}", ev.message);
    assert!(
        ev.message.contains("no answer within 10s"),
        "{}",
        ev.message
    );
    // The abort came when the deadline passed, not before and not long after.
    let waited = *at - started;
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    // Every shard was told to drop attempt 0 of tick 1.
    let aborts: HashSet<String> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.kind == Kind::Abort && c.tick == 1 && c.attempt == 0)
        .map(|c| c.addr)
        .collect();
    assert_eq!(aborts, [A, B, C].iter().map(|s| s.to_string()).collect());
    // Tick 1 ran again as attempt 1, from its first phase, and committed.
    let retry: Vec<_> = h
        .fake
        .phases()
        .into_iter()
        .filter(|c| c.tick == 1 && c.attempt == 1)
        .collect();
    assert_eq!(retry.len(), 10 * 3);
    assert_eq!(retry[0].kind, Kind::Phase("empty-1".into()));
    assert_eq!(h.registry.committed_tick(), 2);
    assert_eq!(last(&evs).tick, 2);
}

#[tokio::test(start_paused = true)]
async fn a_failure_before_the_commit_point_never_commits_the_attempt() {
    let h = harness(settings());
    h.fake.rule(
        C,
        Some("prepare"),
        1,
        Some(0),
        Some(1),
        Act::Fail(Status::unavailable("disk stalled")),
    );
    let (_, rx) = h.jobs.submit(barrier(1)).expect("submit");
    let evs = events(rx).await;
    assert_eq!(
        last(&evs).kind(),
        pb::JobEventKind::Finished,
        "{:?}",
        kinds(&evs)
    );
    let commits: Vec<_> = h
        .fake
        .phases()
        .into_iter()
        .filter(|c| c.kind == Kind::Phase(COMMIT.into()))
        .collect();
    assert!(
        commits.iter().all(|c| c.attempt == 1),
        "attempt 0 failed before its commit point, so no commit for it: {commits:?}"
    );
    assert_eq!(commits.len(), 3);
    assert_eq!(h.registry.committed_tick(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_commit_point_resends_the_commit_and_never_retries() {
    let h = harness(settings());
    // B loses two commits, then takes one.
    h.fake.rule(
        B,
        Some(COMMIT),
        1,
        Some(0),
        Some(2),
        Act::Fail(Status::unavailable("restarting")),
    );
    let (_, rx) = h.jobs.submit(barrier(2)).expect("submit");
    let evs = events(rx).await;
    assert_eq!(
        last(&evs).kind(),
        pb::JobEventKind::Finished,
        "{:?}",
        kinds(&evs)
    );
    assert!(
        !kinds(&evs).contains(&"aborted".to_string()),
        "a decided tick is never aborted"
    );
    let calls = h.fake.calls();
    assert!(calls.iter().all(|c| c.kind != Kind::Abort));
    assert!(
        calls.iter().all(|c| c.attempt == 0),
        "a decided tick is never retried"
    );
    let commits_to_b = calls
        .iter()
        .filter(|c| c.addr == B && c.tick == 1 && c.kind == Kind::Phase(COMMIT.into()))
        .count();
    assert_eq!(commits_to_b, 3);
    assert_eq!(h.registry.committed_tick(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_shard_that_blames_a_peer_gets_the_peer_blamed() {
    let h = harness(settings());
    // A could not deliver its messages to C; C is the shard at fault.
    h.fake.rule(
        A,
        Some("empty-1"),
        1,
        Some(0),
        Some(1),
        Act::Fail(peer_status(C, "delivery refused".into())),
    );
    let (_, rx) = h.jobs.submit(barrier(1)).expect("submit");
    let evs = events(rx).await;
    let aborted = evs
        .iter()
        .find(|(_, e)| e.kind() == pb::JobEventKind::Aborted)
        .map(|(_, e)| e)
        .expect("aborted");
    assert!(
        aborted.message.contains(&format!("{} missing", h.ids[2])),
        "{}",
        aborted.message
    );
    assert_eq!(last(&evs).kind(), pb::JobEventKind::Finished);
}

#[tokio::test(start_paused = true)]
async fn a_shard_failing_on_its_own_is_blamed_before_one_blaming_a_peer() {
    let h = harness(settings());
    h.fake.rule(
        A,
        Some("empty-1"),
        1,
        Some(0),
        Some(1),
        Act::Fail(peer_status(C, "refused".into())),
    );
    h.fake.rule(
        B,
        Some("empty-1"),
        1,
        Some(0),
        Some(1),
        Act::Fail(Status::internal("panicked")),
    );
    let (_, rx) = h.jobs.submit(barrier(1)).expect("submit");
    let evs = events(rx).await;
    let aborted = evs
        .iter()
        .find(|(_, e)| e.kind() == pb::JobEventKind::Aborted)
        .map(|(_, e)| e)
        .expect("aborted");
    assert!(
        aborted.message.contains(&format!("{} missing", h.ids[1])),
        "{}",
        aborted.message
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_cannot_change_fails_the_job_at_once() {
    let h = harness(settings());
    h.fake.rule(
        B,
        Some("empty-2"),
        1,
        None,
        None,
        Act::Fail(Status::invalid_argument("no such file")),
    );
    h.fake.rule(
        C,
        Some("empty-2"),
        1,
        None,
        None,
        Act::Fail(Status::unavailable("slow")),
    );
    let (_, rx) = h.jobs.submit(barrier(3)).expect("submit");
    let evs = events(rx).await;
    let end = last(&evs);
    assert_eq!(end.kind(), pb::JobEventKind::Failed);
    assert!(
        end.message.contains(&format!("{} refused", h.ids[1])),
        "{}",
        end.message
    );
    assert!(h.fake.phases().iter().all(|c| c.attempt == 0), "no retry");
    assert_eq!(h.registry.committed_tick(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_undialable_address_fails_the_job_naming_the_remedy() {
    let h = harness(settings());
    h.fake
        .rule(A, Some("empty-1"), 1, None, None, Act::Undialable);
    let (_, rx) = h.jobs.submit(barrier(1)).expect("submit");
    let evs = events(rx).await;
    let end = last(&evs);
    assert_eq!(end.kind(), pb::JobEventKind::Failed);
    assert!(
        end.message
            .contains(&format!("lockstep remove {}", h.ids[0].0)),
        "{}",
        end.message
    );
}

#[tokio::test(start_paused = true)]
async fn max_tick_attempts_ends_the_job() {
    let h = harness(JobSettings {
        max_tick_attempts: 4,
        ..settings()
    });
    h.fake.rule(
        B,
        Some("empty-5"),
        2,
        None,
        None,
        Act::Fail(Status::unavailable("flaky")),
    );
    let (_, rx) = h.jobs.submit(barrier(5)).expect("submit");
    let evs = events(rx).await;
    let end = last(&evs);
    assert_eq!(end.kind(), pb::JobEventKind::Failed);
    assert!(
        end.message.contains("tick 2 failed 4 attempts in a row"),
        "{}",
        end.message
    );
    assert!(end.message.contains("committed tick 1"), "{}", end.message);
    let aborted: Vec<u32> = evs
        .iter()
        .filter(|(_, e)| e.kind() == pb::JobEventKind::Aborted)
        .map(|(_, e)| e.attempt)
        .collect();
    assert_eq!(aborted, vec![0, 1, 2, 3]);
    assert!(h.fake.phases().iter().all(|c| c.tick <= 2 && c.attempt < 4));
    assert_eq!(h.registry.committed_tick(), 1);
    let summary = &h.jobs.list()[0];
    assert_eq!(
        (summary.outcome().name(), summary.ticks_done),
        ("failed", 1)
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_the_job_at_the_next_phase_boundary() {
    let h = harness(settings());
    // Every phase of A takes a second, so the job is mid-tick when cancelled.
    for tick in 1..=100 {
        h.fake.rule(
            A,
            None,
            tick,
            None,
            None,
            Act::Delay(Duration::from_secs(1)),
        );
    }
    let (id, rx) = h.jobs.submit(barrier(100)).expect("submit");
    let collector = tokio::spawn(events(rx));
    tokio::time::sleep(Duration::from_millis(25_500)).await;
    // Two ticks committed (10 s each); tick 3 is halfway.
    let running = &h.jobs.list()[0];
    assert_eq!(
        (running.outcome().name(), running.ticks_done),
        ("running", 2),
        "progress is live"
    );
    assert_eq!(h.jobs.cancel(id).expect("cancel"), 2);
    let cancelled_at = Instant::now();
    let evs = collector.await.expect("collector");
    let end = last(&evs);
    assert_eq!(end.kind(), pb::JobEventKind::Cancelled);
    assert!(end.message.contains("committed tick 2"), "{}", end.message);
    assert_eq!(h.registry.committed_tick(), 2);
    // The phase in flight finished; none started after it.
    let after: Vec<_> = h
        .fake
        .phases()
        .into_iter()
        .filter(|c| c.at > cancelled_at)
        .collect();
    assert!(after.is_empty(), "{after:?}");
    // What tick 3 staged is dropped on every shard at once.
    let aborts: HashSet<String> = h
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.kind == Kind::Abort && c.tick == 3 && c.attempt == 0)
        .map(|c| c.addr)
        .collect();
    assert_eq!(aborts.len(), 3);
    assert!(h.jobs.running().is_none());
    assert!(
        h.jobs.cancel(id).is_err(),
        "a finished job cannot be cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_a_recovery_wait() {
    let h = harness(settings());
    h.fake.kill(B);
    let (id, rx) = h.jobs.submit(barrier(1)).expect("submit");
    let collector = tokio::spawn(events(rx));
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.jobs.cancel(id).expect("cancel");
    let cancelled_at = Instant::now();
    let evs = collector.await.expect("collector");
    let (at, end) = evs.last().expect("events");
    assert_eq!(end.kind(), pb::JobEventKind::Cancelled);
    assert!(
        *at - cancelled_at < Duration::from_millis(1),
        "{:?}",
        *at - cancelled_at
    );
}

#[tokio::test(start_paused = true)]
async fn a_recovery_wait_ends_on_a_registry_change() {
    let h = harness(settings());
    h.fake.kill(B);
    let (_, rx) = h.jobs.submit(barrier(1)).expect("submit");
    let collector = tokio::spawn(events(rx));
    // B's process is restarted on a new port 2.6 s later and re-registers.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let probes_before = h.fake.probes(B);
    let changed_at = Instant::now();
    h.registry
        .register(Registration {
            shard_id: Some(h.ids[1]),
            cluster_id: h.registry.topology().cluster_id,
            address: "127.0.0.1:2002".into(),
            weight: 1.0,
            atoms: 0,
        })
        .expect("re-register");
    let evs = collector.await.expect("collector");
    assert_eq!(
        last(&evs).kind(),
        pb::JobEventKind::Finished,
        "{:?}",
        kinds(&evs)
    );
    let retry = h
        .fake
        .phases()
        .into_iter()
        .find(|c| c.attempt == 1)
        .expect("a retry");
    // The retry starts at the change, not at the next re-probe (a poll
    // every 100 ms, as before, or the backoff's 3.75 s mark).
    assert_eq!(retry.at, changed_at);
    assert_eq!(retry.addr.as_str(), A);
    assert!(
        h.fake
            .phases()
            .iter()
            .any(|c| c.addr == "127.0.0.1:2002" && c.attempt == 1)
    );
    // Between its failure and the change the wait probed B on a backoff,
    // a handful of times rather than every 100 ms.
    assert!((1..=5).contains(&probes_before), "{probes_before}");
}

#[tokio::test(start_paused = true)]
async fn a_recovery_wait_ends_when_the_shard_answers_without_a_registry_change() {
    let h = harness(settings());
    h.fake.rule(
        B,
        Some("empty-1"),
        1,
        Some(0),
        Some(1),
        Act::Fail(Status::unavailable("reset")),
    );
    h.fake.kill(B);
    let (_, rx) = h.jobs.submit(barrier(1)).expect("submit");
    let collector = tokio::spawn(events(rx));
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Back at the same address, within the suspect window: no change.
    h.fake.st.lock().dead.clear();
    let evs = collector.await.expect("collector");
    assert_eq!(
        last(&evs).kind(),
        pb::JobEventKind::Finished,
        "{:?}",
        kinds(&evs)
    );
}

#[tokio::test(start_paused = true)]
async fn a_shard_that_does_not_come_back_fails_the_job_after_the_recovery_wait() {
    let h = harness(settings());
    h.fake.kill(C);
    let started = Instant::now();
    let (_, rx) = h.jobs.submit(barrier(1)).expect("submit");
    let evs = events(rx).await;
    let (at, end) = evs.last().expect("events");
    assert_eq!(end.kind(), pb::JobEventKind::Failed);
    assert!(
        end.message
            .contains(&format!("{} did not come back within 30s", h.ids[2])),
        "{}",
        end.message
    );
    let waited = *at - started;
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shard_that_lost_its_setup_gets_the_setup_again_before_the_retry() {
    let h = harness(settings());
    // B restarted between ticks and answers tick 2's first phase without
    // the attention setup (the shard's SetupMissing, UNAVAILABLE).
    h.fake.rule(
        B,
        Some("spread"),
        2,
        Some(0),
        Some(1),
        Act::Fail(Status::unavailable(
            "the attention setup has not run on this shard",
        )),
    );
    let spec = lockstep_proto::convert::spec_of("attention", 3, &HashMap::new()).unwrap();
    let (_, rx) = h.jobs.submit(spec).expect("submit");
    let evs = events(rx).await;
    assert_eq!(
        last(&evs).kind(),
        pb::JobEventKind::Finished,
        "{:?}",
        kinds(&evs)
    );
    let on_b: Vec<(String, u64, u32)> = h
        .fake
        .phases()
        .into_iter()
        .filter(|c| c.addr == B && c.tick == 2)
        .map(|c| match c.kind {
            Kind::Phase(p) => (p, c.tick, c.attempt),
            Kind::Abort => unreachable!("phases only"),
        })
        .collect();
    let names: Vec<&str> = on_b.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "spread", "edges", "degrees", "spread", "apply", "prepare", COMMIT
        ],
        "{on_b:?}"
    );
    assert_eq!(h.registry.committed_tick(), 3);
}
