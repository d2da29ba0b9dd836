//! The shard's Prometheus metrics: each tick phase's time on this shard,
//! and gauges mirroring the store and the shard's standing (atoms,
//! incoming entries, live bytes, epoch, last committed tick, heartbeat
//! age, resident memory), set at each scrape.

use std::sync::Arc;

use lockstep_telemetry::{HistogramVec, Telemetry};

use crate::Error;
use crate::atoms::AtomStore;
use crate::routing::RoutingView;
use crate::store::KvStore;

const PHASE: (&str, &str) = (
    "lockstep_shard_phase_seconds",
    "Time this shard took to run a tick phase, from StartPhase to PhaseDone.",
);

/// The phase histogram, registered nowhere (an engine that is not served).
pub fn phase_seconds() -> HistogramVec {
    // A constant definition: it cannot be invalid.
    lockstep_telemetry::seconds_vec(PHASE.0, PHASE.1, &["workload", "phase"])
        .expect("valid histogram")
}

/// The phase histogram, registered with `t`.
pub fn registered_phase_seconds(t: &Telemetry) -> Result<HistogramVec, Error> {
    Ok(t.register(phase_seconds())?)
}

/// Registers the gauges that mirror `store` and `view`, set at each scrape.
pub fn mirror<S: KvStore>(
    t: &Telemetry,
    store: Arc<AtomStore<S>>,
    view: RoutingView,
) -> Result<(), Error> {
    let atoms = t.gauge("lockstep_atoms", "Atoms stored on this shard.")?;
    let incoming = t.gauge(
        "lockstep_incoming_entries",
        "Incoming-set entries stored on this shard.",
    )?;
    let live = t.gauge(
        "lockstep_live_bytes",
        "Live bytes in this shard's store, as RocksDB estimates them.",
    )?;
    let epoch = t.gauge("lockstep_epoch", "The ring epoch this shard routes by.")?;
    let last_tick = t.gauge(
        "lockstep_last_tick",
        "The last cluster tick committed on this shard.",
    )?;
    let age = t.float_gauge(
        "lockstep_heartbeat_age_seconds",
        "Time since this shard's last heartbeat the coordinator acknowledged was sent.",
    )?;
    let rss = t.gauge(
        "process_resident_memory_bytes",
        "Resident memory of this process.",
    )?;
    t.on_scrape(move || {
        let counts = store.counts();
        atoms.set(counts.atoms() as i64);
        incoming.set(counts.incoming as i64);
        live.set(store.kv().live_bytes() as i64);
        epoch.set(view.current().epoch().0 as i64);
        last_tick.set(store.last_tick().unwrap_or(0) as i64);
        age.set(view.lease().since_renewed().as_secs_f64());
        rss.set(crate::membership::rss_bytes() as i64);
    });
    Ok(())
}
