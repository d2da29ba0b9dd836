//! The coordinator's Prometheus metrics: what the job driver measures
//! (phase durations, barrier wait, ticks committed and aborted) and gauges
//! mirroring the registry (epoch, committed tick, shards by state, each
//! shard's heartbeat age and last reported counts), set at each scrape.

use std::time::{Duration, Instant};

use lockstep_model::Liveness;
use lockstep_telemetry::HistogramVec;
use lockstep_telemetry::{IntCounterVec, Telemetry};

use crate::Error;
use crate::handle::Registry;

/// What the job driver records. `Default` gives metrics registered
/// nowhere, for drivers that are not served (the unit tests read them
/// directly).
#[derive(Clone)]
pub struct DriverMetrics {
    /// First StartPhase sent to last PhaseDone received, by workload and
    /// phase.
    pub phase_seconds: HistogramVec,
    /// The barrier's cost: first PhaseDone to last PhaseDone of a phase,
    /// the time the fastest shard waited for the slowest.
    pub barrier_wait_seconds: HistogramVec,
    pub ticks_committed: IntCounterVec,
    /// Tick attempts given up before the commit point.
    pub tick_aborts: IntCounterVec,
}

const PHASE: (&str, &str) = (
    "lockstep_tick_phase_seconds",
    "Time from a tick phase's start on every ring shard to its last PhaseDone.",
);
const BARRIER: (&str, &str) = (
    "lockstep_barrier_wait_seconds",
    "Time from a phase's first PhaseDone to its last: how long the fastest shard waited.",
);
const COMMITTED: (&str, &str) = (
    "lockstep_ticks_committed_total",
    "Ticks that passed the commit point.",
);
const ABORTED: (&str, &str) = (
    "lockstep_tick_aborts_total",
    "Tick attempts aborted before the commit point.",
);

impl Default for DriverMetrics {
    fn default() -> Self {
        let seconds = |(name, help): (&str, &str)| {
            lockstep_telemetry::seconds_vec(name, help, &["workload", "phase"])
        };
        let count = |(name, help): (&str, &str)| {
            IntCounterVec::new(lockstep_telemetry::Opts::new(name, help), &["workload"])
        };
        // The definitions are constants: they cannot be invalid.
        DriverMetrics {
            phase_seconds: seconds(PHASE).expect("valid histogram"),
            barrier_wait_seconds: seconds(BARRIER).expect("valid histogram"),
            ticks_committed: count(COMMITTED).expect("valid counter"),
            tick_aborts: count(ABORTED).expect("valid counter"),
        }
    }
}

impl DriverMetrics {
    /// The driver's metrics, registered with `t`.
    pub fn registered(t: &Telemetry) -> Result<DriverMetrics, Error> {
        let m = DriverMetrics::default();
        Ok(DriverMetrics {
            phase_seconds: t.register(m.phase_seconds)?,
            barrier_wait_seconds: t.register(m.barrier_wait_seconds)?,
            ticks_committed: t.register(m.ticks_committed)?,
            tick_aborts: t.register(m.tick_aborts)?,
        })
    }

    /// Records one finished phase: its duration, and the spread of its
    /// shards' answers.
    pub fn phase(&self, workload: &str, phase: &str, took: Duration, spread: Duration) {
        self.phase_seconds
            .with_label_values(&[workload, phase])
            .observe(took.as_secs_f64());
        self.barrier_wait_seconds
            .with_label_values(&[workload, phase])
            .observe(spread.as_secs_f64());
    }
}

/// Registers the gauges that mirror `registry` and sets them at each
/// scrape.
pub fn mirror_registry(t: &Telemetry, registry: Registry) -> Result<(), Error> {
    let epoch = t.gauge("lockstep_epoch", "The ring epoch.")?;
    let committed = t.gauge(
        "lockstep_committed_tick",
        "The last cluster tick decided committed.",
    )?;
    let by_state = t.gauge_vec("lockstep_shards", "Registered shards by state.", &["state"])?;
    let age = t.float_gauge_vec(
        "lockstep_shard_heartbeat_age_seconds",
        "Time since each shard's last heartbeat; absent before the first one.",
        &["shard"],
    )?;
    let atoms = t.gauge_vec(
        "lockstep_shard_atoms",
        "Atoms on each shard, as of its last heartbeat.",
        &["shard"],
    )?;
    let incoming = t.gauge_vec(
        "lockstep_shard_incoming_entries",
        "Incoming-set entries on each shard, as of its last heartbeat.",
        &["shard"],
    )?;
    let live = t.gauge_vec(
        "lockstep_shard_live_bytes",
        "Live bytes on each shard, as of its last heartbeat.",
        &["shard"],
    )?;
    t.on_scrape(move || {
        let view = registry.status();
        let now = Instant::now();
        epoch.set(view.topology.epoch.0 as i64);
        committed.set(view.committed_tick as i64);
        // A shard removed since the last scrape must disappear.
        for g in [&by_state, &atoms, &incoming, &live] {
            g.reset();
        }
        age.reset();
        for state in ["joining", "up", "suspect", "down"] {
            by_state.with_label_values(&[state]).set(0);
        }
        for r in &view.shards {
            let state = match (r.in_ring, r.liveness) {
                (false, Liveness::Up) => "joining",
                (_, Liveness::Up) => "up",
                (_, Liveness::Suspect) => "suspect",
                (_, Liveness::Down) => "down",
            };
            by_state.with_label_values(&[state]).inc();
            let id = r.id.0.to_string();
            if let Some(seen) = r.last_seen {
                age.with_label_values(&[&id])
                    .set(now.saturating_duration_since(seen).as_secs_f64());
            }
            atoms.with_label_values(&[&id]).set(r.metrics.atoms as i64);
            incoming
                .with_label_values(&[&id])
                .set(r.metrics.incoming as i64);
            live.with_label_values(&[&id])
                .set(r.metrics.live_bytes as i64);
        }
    });
    Ok(())
}
