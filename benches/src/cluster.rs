//! End-to-end benchmarks against real processes, each beside a baseline
//! measured in the same run:
//! - `ingest`: atoms/s through client, gRPC, shards and RocksDB, against raw
//!   RocksDB WriteBatches of the same records in one process, and against
//!   one shard store (same key layout, no gRPC) in this process;
//! - `ticks`: the time of an empty phase barrier on N shard processes,
//!   against a raw concurrent tonic fan-out to the same processes;
//! - `attention`: time per attention tick on 1..N shards against a
//!   single-process in-memory implementation on the same graph (the COST
//!   comparison), with each shard's peak RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use lockstep_model::atom::{AtomRecord, FlatAtom, flatten_batch};
use lockstep_proto::convert::encode_stored;
use lockstep_proto::pb;
use serde::Serialize;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use lockstep_client::{Client, PutStats};

use crate::{Error, Launcher};

fn temp_dir(what: &str) -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix(&format!("lockstep-bench-{what}-"))
        .tempdir()
        .map_err(|e| Error::Cluster(format!("temp dir: {e}")))
}

/// Follows a job's events to its end, handing each to `on_event`; an
/// outcome other than finished is an error.
async fn finish(
    client: &Client,
    mut stream: tonic::Streaming<pb::JobEvent>,
    mut on_event: impl FnMut(&pb::JobEvent),
) -> Result<(), Error> {
    while let Some(ev) = stream
        .message()
        .await
        .map_err(|st| Error::rpc(client.coordinator(), &st))?
    {
        on_event(&ev);
        if let Some(outcome) = ev.kind().outcome() {
            if outcome == pb::JobOutcome::Finished {
                return Ok(());
            }
            return Err(Error::Job {
                job_id: ev.job_id,
                message: ev.message,
            });
        }
    }
    Err(Error::Cluster("the job stream ended early".into()))
}

/// Prints `rows` as pretty JSON, or with `table`.
pub fn print_rows<T: Serialize>(rows: &[T], json: bool, table: fn(&[T])) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(rows).expect("rows serialize")
        );
    } else {
        table(rows);
    }
}

/// `lockstep bench ingest`: one row.
#[derive(Clone, Debug, Serialize)]
pub struct IngestReport {
    pub shards: usize,
    /// Distinct atom records written (what the raw baseline writes too).
    pub records: u64,
    /// Incoming-set entries written besides (not counted in `records`).
    pub incoming: u64,
    pub key_bytes: f64,
    pub value_bytes: f64,
    pub lockstep_secs: f64,
    pub lockstep_records_per_s: f64,
    pub raw_secs: f64,
    pub raw_records_per_s: f64,
    /// lockstep / raw.
    pub ratio: f64,
    /// The same atoms through one shard's store in this process (RocksDB,
    /// the shard's key layout and read-before-write, no gRPC), on one
    /// thread: what the layout costs before any distribution.
    pub store_secs: f64,
    pub store_records_per_s: f64,
    /// store / raw: the cost of the key layout.
    pub store_ratio: f64,
    /// lockstep / store: what distribution adds or gains.
    pub distributed_ratio: f64,
}

/// Loads `atoms` generated atoms into a fresh local cluster of `shards`, and
/// writes the same records (same keys, same encoded values) into one raw
/// RocksDB in 1,000-record WriteBatches with the WAL on, and puts the same
/// atoms through one shard store in this process.
pub async fn ingest(
    launcher: &dyn Launcher,
    shards: usize,
    atoms: usize,
    seed: u64,
    batch: usize,
    concurrency: usize,
) -> Result<IngestReport, Error> {
    let generated = lockstep_model::input::generate::generate(atoms, seed);
    let flat = flatten_batch(&generated);
    let records: Vec<(Vec<u8>, Vec<u8>)> = flat
        .iter()
        .map(|(a, _)| {
            (
                lockstep_shard::atoms::atom_key(a.handle),
                encode_stored(
                    &AtomRecord::from_write(a),
                    a.ty.builtin.expect("generated atoms are of built-in types"),
                ),
            )
        })
        .collect();
    // Every chunk re-sends its links' targets, so count distinct records,
    // as the baselines write them.
    let written = flat.len() as u64;
    let n = records.len() as f64;
    let key_bytes = records.iter().map(|(k, _)| k.len()).sum::<usize>() as f64 / n;
    let value_bytes = records.iter().map(|(_, v)| v.len()).sum::<usize>() as f64 / n;

    // Baseline: raw RocksDB, the shard's own options, WAL on, no fsync (the
    // shard's default durability).
    let raw_dir = temp_dir("raw")?;
    let raw_secs = tokio::task::spawn_blocking({
        let path = raw_dir.path().to_path_buf();
        move || raw_rocksdb(&path, &records)
    })
    .await
    .map_err(|e| Error::Cluster(e.to_string()))??;

    let store_dir = temp_dir("store")?;
    let store_secs = tokio::task::spawn_blocking({
        let path = store_dir.path().to_path_buf();
        let atoms: Vec<FlatAtom> = flat.into_iter().map(|(a, _)| a).collect();
        move || one_store(&path, &atoms)
    })
    .await
    .map_err(|e| Error::Cluster(e.to_string()))??;
    drop(store_dir);

    let dir = temp_dir("ingest")?;
    let local = launcher.start(shards, dir.path()).await?;
    let client = Client::connect(local.coordinator_addr()).await?;
    let started = Instant::now();
    let stats = load(&client, &generated, batch, concurrency).await?;
    let lockstep_secs = started.elapsed().as_secs_f64();
    local.shutdown().await;

    Ok(IngestReport {
        shards,
        records: written,
        incoming: stats.incoming,
        key_bytes,
        value_bytes,
        lockstep_secs,
        lockstep_records_per_s: written as f64 / lockstep_secs,
        raw_secs,
        raw_records_per_s: written as f64 / raw_secs,
        ratio: raw_secs / lockstep_secs,
        store_secs,
        store_records_per_s: written as f64 / store_secs,
        store_ratio: raw_secs / store_secs,
        distributed_ratio: store_secs / lockstep_secs,
    })
}

/// Loads `atoms` as `lockstep load` does: `batch` atoms per request round,
/// `concurrency` rounds in flight.
async fn load(
    client: &Client,
    atoms: &[lockstep_model::Atom],
    batch: usize,
    concurrency: usize,
) -> Result<PutStats, Error> {
    let mut stats = PutStats::default();
    let bulk = &lockstep_client::BulkLoad::default();
    let mut stream = futures::stream::iter(atoms.chunks(batch.max(1)))
        .map(|chunk| client.put_bulk(bulk, chunk))
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = stream.next().await {
        stats += r?;
    }
    Ok(stats)
}

fn raw_rocksdb(path: &Path, records: &[(Vec<u8>, Vec<u8>)]) -> Result<f64, Error> {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.increase_parallelism(2);
    let db = rocksdb::DB::open(&opts, path).map_err(|e| Error::Cluster(e.into_string()))?;
    let mut wo = rocksdb::WriteOptions::default();
    wo.disable_wal(false);
    let started = Instant::now();
    for chunk in records.chunks(1_000) {
        let mut b = rocksdb::WriteBatch::default();
        for (k, v) in chunk {
            b.put(k, v);
        }
        db.write_opt(b, &wo)
            .map_err(|e| Error::Cluster(e.into_string()))?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Puts `atoms` (distinct) into one shard store with the shard's options,
/// 1,000 atoms and their incoming entries per write, as a shard applies a
/// batch; returns the seconds taken.
fn one_store(path: &Path, atoms: &[FlatAtom]) -> Result<f64, Error> {
    use lockstep_shard::atoms::AtomStore;
    use lockstep_shard::store::rocks::{RocksOptions, RocksStore};
    let kv = RocksStore::open(path, &RocksOptions::default())?;
    let store = AtomStore::open(kv)?;
    let started = Instant::now();
    for chunk in atoms.chunks(1_000) {
        let incoming: Vec<_> = chunk.iter().flat_map(FlatAtom::incoming_refs).collect();
        store.put(chunk, &incoming)?;
    }
    let secs = started.elapsed().as_secs_f64();
    // A baseline that wrote less than the cluster would flatter it.
    let stored = store.counts().atoms();
    if stored != atoms.len() as u64 {
        return Err(Error::Cluster(format!(
            "the one-store baseline holds {stored} atoms, not {}",
            atoms.len()
        )));
    }
    Ok(secs)
}

/// Prints ingest rows as a table.
pub fn print_ingest(rows: &[IngestReport]) {
    println!(
        "{:>6} {:>9} {:>9} {:>7} {:>8} {:>14} {:>14} {:>8} {:>14} {:>11} {:>11}",
        "SHARDS",
        "RECORDS",
        "INCOMING",
        "KEY B",
        "VALUE B",
        "LOCKSTEP rec/s",
        "RAW rec/s",
        "RATIO",
        "1 STORE rec/s",
        "STORE/RAW",
        "LS/STORE"
    );
    for r in rows {
        println!(
            "{:>6} {:>9} {:>9} {:>7.1} {:>8.1} {:>14.0} {:>14.0} {:>8.3} {:>14.0} {:>11.3} {:>11.3}",
            r.shards,
            r.records,
            r.incoming,
            r.key_bytes,
            r.value_bytes,
            r.lockstep_records_per_s,
            r.raw_records_per_s,
            r.ratio,
            r.store_records_per_s,
            r.store_ratio,
            r.distributed_ratio
        );
    }
}

/// `lockstep bench ticks`: one row.
#[derive(Clone, Debug, Serialize)]
pub struct TicksReport {
    pub shards: usize,
    /// Empty phases measured.
    pub phases: usize,
    pub barrier_median_us: f64,
    pub barrier_p99_us: f64,
    pub fanout_median_us: f64,
    pub fanout_p99_us: f64,
    /// Barrier median / fan-out median.
    pub ratio: f64,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Runs the `barrier` workload (8 empty phases per tick) for `ticks` on a
/// fresh local cluster of `shards`, and times the same number of raw
/// fan-outs (one concurrent gRPC health check to every shard process, then
/// join) from this process.
pub async fn ticks(
    launcher: &dyn Launcher,
    shards: usize,
    ticks: u64,
) -> Result<TicksReport, Error> {
    let dir = temp_dir("ticks")?;
    let local = launcher.start(shards, dir.path()).await?;
    let client = Client::connect(local.coordinator_addr()).await?;

    let stream = client
        .submit_job(lockstep_proto::convert::job_spec(
            &lockstep_model::workload::Workload::Barrier,
            ticks,
        ))
        .await?;
    let mut barrier = Vec::new();
    finish(&client, stream, |ev| {
        if ev.kind() == pb::JobEventKind::Phase && ev.phase().name().starts_with("empty-") {
            barrier.push(ev.duration_us as f64);
        }
    })
    .await?;

    // The baseline: the same number of fan-outs to the same processes.
    let mut health: Vec<HealthClient<tonic::transport::Channel>> = Vec::new();
    for s in client.routing().topology.shards.iter() {
        let ch = tonic::transport::Channel::from_shared(format!("http://{}", s.address))
            .map_err(|e| Error::Config(e.to_string()))?
            .connect()
            .await
            .map_err(|e| Error::Cluster(format!("{}: {e}", s.address)))?;
        health.push(HealthClient::new(ch));
    }
    let mut fanout = Vec::with_capacity(barrier.len());
    for i in 0..barrier.len() + 50 {
        let started = Instant::now();
        let calls = health.iter().map(|h| {
            let mut h = h.clone();
            async move {
                h.check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
            }
        });
        for r in join_all(calls).await {
            r.map_err(|st| Error::Cluster(format!("health check: {}", st.message())))?;
        }
        // The first 50 warm the connections up, as the job's setup does.
        if i >= 50 {
            fanout.push(started.elapsed().as_micros() as f64);
        }
    }
    local.shutdown().await;

    barrier.sort_by(f64::total_cmp);
    fanout.sort_by(f64::total_cmp);
    let (bm, fm) = (quantile(&barrier, 0.5), quantile(&fanout, 0.5));
    Ok(TicksReport {
        shards,
        phases: barrier.len(),
        barrier_median_us: bm,
        barrier_p99_us: quantile(&barrier, 0.99),
        fanout_median_us: fm,
        fanout_p99_us: quantile(&fanout, 0.99),
        ratio: bm / fm,
    })
}

/// Prints tick rows as a table.
pub fn print_ticks(rows: &[TicksReport]) {
    println!(
        "{:>6} {:>7} {:>16} {:>13} {:>15} {:>12} {:>7}",
        "SHARDS",
        "PHASES",
        "BARRIER med µs",
        "BARRIER p99",
        "FAN-OUT med µs",
        "FAN-OUT p99",
        "RATIO"
    );
    for r in rows {
        println!(
            "{:>6} {:>7} {:>16.0} {:>13.0} {:>15.0} {:>12.0} {:>7.2}",
            r.shards,
            r.phases,
            r.barrier_median_us,
            r.barrier_p99_us,
            r.fanout_median_us,
            r.fanout_p99_us,
            r.ratio
        );
    }
}

/// `lockstep bench attention`: one row.
#[derive(Clone, Debug, Serialize)]
pub struct AttentionReport {
    pub shards: usize,
    pub vertices: usize,
    pub edges: usize,
    pub ticks: u64,
    pub load_secs: f64,
    /// Seconds waited after the load for the shards to go idle (RocksDB's
    /// background compactions of the loaded data) before the job started.
    pub settle_secs: f64,
    /// Tick 1, which includes the setup phases (out-edges, degrees).
    pub first_tick_ms: f64,
    /// Median of ticks 2..=T.
    pub median_tick_ms: f64,
    /// Median tick of the in-memory single-process baseline on the same
    /// graph, over its runs just before and just after this row's job.
    pub oracle_tick_ms: f64,
    /// The baseline's median in each of those two runs, to show how far
    /// the machine drifted during the job.
    pub oracle_before_ms: f64,
    pub oracle_after_ms: f64,
    /// median_tick_ms / oracle_tick_ms.
    pub ratio: f64,
    /// Each shard's peak RSS (VmHWM) at the end of the job.
    pub peak_rss_bytes: Vec<u64>,
    pub atoms_per_shard: Vec<u64>,
    pub block_cache_mb: u64,
    /// max over shards of (peak RSS − block cache) / atoms stored; 0 when
    /// RSS stays under the block cache's size.
    pub rss_bytes_per_atom: f64,
    /// max over shards of peak RSS / atoms stored, block cache included.
    pub total_rss_bytes_per_atom: f64,
    /// Median per phase over ticks 2..=T, in ms (commit is the tick's
    /// remainder).
    pub phase_median_ms: std::collections::BTreeMap<String, f64>,
}

/// The single-process baseline: the workload's own formula
/// ([`lockstep_model::reference`]), over in-memory arrays with edges sorted
/// by source, in one thread. Built once per graph; its ticks are timed
/// right before and right after each cluster's job, so that a row's ratio
/// compares two measurements taken under the same machine conditions
/// rather than minutes apart on a shared machine.
pub struct Baseline {
    pub vertices: usize,
    graph: lockstep_model::reference::AttentionGraph,
}

impl Baseline {
    pub fn new(atoms: &[lockstep_model::Atom], damping: f64) -> Baseline {
        let graph = lockstep_model::reference::AttentionGraph::new(atoms, damping);
        Baseline {
            vertices: graph.vertices.len(),
            graph,
        }
    }

    pub fn edges(&self) -> usize {
        self.graph.edges()
    }

    /// Runs `ticks` ticks (at least one) from the uniform start and
    /// returns each one's time.
    pub fn run(&self, ticks: u64) -> Vec<Duration> {
        let mut x = self.graph.start();
        let mut scratch = Vec::new();
        (0..ticks.max(1))
            .map(|_| {
                let started = Instant::now();
                self.graph.tick(&mut x, &mut scratch);
                std::hint::black_box(&x);
                started.elapsed()
            })
            .collect()
    }
}

/// The median of some durations, in ms.
fn median_ms(times: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    quantile(&ms, 0.5)
}

/// Peak RSS of process `pid` (VmHWM), in bytes; 0 where unavailable.
fn peak_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Each shard's atom count once the heartbeats add up to `total`.
async fn stored_per_shard(client: &Client, total: u64) -> Result<Vec<u64>, Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.status().await?;
        let per: Vec<u64> = status
            .shards
            .iter()
            .map(|s| s.metrics.as_ref().map_or(0, |m| m.atoms))
            .collect();
        if per.iter().sum::<u64>() == total {
            return Ok(per);
        }
        if Instant::now() >= deadline {
            return Err(Error::Cluster(format!(
                "shards report {per:?} atoms, not the {total} loaded, after 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU seconds (user + system) process `pid` has used; `None` where
/// /proc is unavailable.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / hz.max(1) as f64)
}

/// Waits until every shard process is idle (under 5% of a core over a
/// second), so ticks are timed without the load's background compactions
/// running beside them; gives up after `limit` and says so. Returns the
/// seconds waited.
async fn wait_until_idle(pids: &[u32], limit: Duration) -> f64 {
    let started = Instant::now();
    let window = Duration::from_secs(1);
    loop {
        let before: Vec<Option<f64>> = pids.iter().map(|&p| cpu_secs(p)).collect();
        tokio::time::sleep(window).await;
        let busy = pids
            .iter()
            .zip(&before)
            .any(|(&p, b)| match (b, cpu_secs(p)) {
                (Some(b), Some(a)) => a - b > 0.05 * window.as_secs_f64(),
                _ => false,
            });
        if !busy {
            return started.elapsed().as_secs_f64();
        }
        if started.elapsed() >= limit {
            eprintln!(
                "shards still busy after {} s of waiting for compactions; timing ticks anyway",
                limit.as_secs()
            );
            return started.elapsed().as_secs_f64();
        }
    }
}

/// Pins every thread of process `pid` to one CPU (Linux); used to give
/// shards disjoint cores. `sched_setaffinity` on a pid moves only that one
/// thread, and a shard has started its tokio workers and RocksDB's
/// background threads before it is pinned, so each thread in
/// `/proc/PID/task` is pinned; threads started later inherit the mask.
fn pin(pid: u32, cpu: usize) -> Result<(), Error> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|e| Error::Cluster(format!("cannot list the threads of pid {pid}: {e}")))?;
    let mut pinned = 0;
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // SAFETY: a zeroed cpu_set_t is a valid empty set, CPU_SET writes
        // within it, and sched_setaffinity only reads it.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc == 0 {
            pinned += 1;
        } else {
            let err = std::io::Error::last_os_error();
            // A thread that ended since the listing is not an error.
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(Error::Cluster(format!(
                    "cannot pin thread {tid} of pid {pid} to cpu {cpu}: {err}"
                )));
            }
        }
    }
    if pinned == 0 {
        return Err(Error::Cluster(format!("pid {pid} has no thread to pin")));
    }
    Ok(())
}

/// The CPUs thread `tid` may run on (Linux), from its affinity mask.
#[cfg(test)]
fn allowed_cpus(tid: i32) -> Vec<usize> {
    // SAFETY: as in `pin`; sched_getaffinity writes within the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Loads the seeded graph into a fresh cluster of `shards` and runs
/// `attention` for `ticks`; `pin_cores` gives every shard process a core of
/// its own, every thread of it (shard i on core i, counting from 1; the
/// coordinator and this process are left on the other cores).
pub async fn attention(
    launcher: &dyn Launcher,
    shards: usize,
    atoms: &[lockstep_model::Atom],
    ticks: u64,
    baseline: &Baseline,
    pin_cores: bool,
) -> Result<AttentionReport, Error> {
    let dir = temp_dir("attention")?;
    let local = launcher.start(shards, dir.path()).await?;
    if pin_cores {
        // Only the shards: the coordinator and this process (the loading
        // client) stay free to use the cores no shard holds.
        for (i, pid) in local.shard_pids().iter().enumerate() {
            if let Some(pid) = pid {
                pin(*pid, i + 1)?;
            }
        }
    }
    let client = Client::connect(local.coordinator_addr()).await?;
    let started = Instant::now();
    load(&client, atoms, 2_000, 4).await?;
    let load_secs = started.elapsed().as_secs_f64();
    // Atoms per shard come from heartbeats, which trail the load: wait (with
    // a deadline) until they account for every atom loaded.
    let stored = flatten_batch(atoms).len() as u64;
    let atoms_per_shard = stored_per_shard(&client, stored).await?;
    let pids: Vec<u32> = local.shard_pids().iter().flatten().copied().collect();
    let settle_secs = wait_until_idle(&pids, Duration::from_secs(300)).await;
    let before = baseline.run(ticks);

    let stream = client
        .submit_job(lockstep_proto::convert::spec_of(
            "attention",
            ticks,
            &Default::default(),
        )?)
        .await?;
    let mut tick_ms = Vec::new();
    let mut phases: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    finish(&client, stream, |ev| match ev.kind() {
        pb::JobEventKind::Tick => tick_ms.push(ev.duration_us as f64 / 1e3),
        pb::JobEventKind::Phase if ev.tick > 1 => phases
            .entry(ev.phase().name().to_string())
            .or_default()
            .push(ev.duration_us as f64 / 1e3),
        _ => {}
    })
    .await?;
    // The shards are idle again, as they were for `before`.
    let after = baseline.run(ticks);
    let peak_rss_bytes: Vec<u64> = local
        .shard_pids()
        .iter()
        .map(|p| p.map(peak_rss).unwrap_or(0))
        .collect();
    local.shutdown().await;

    let first_tick_ms = tick_ms.first().copied().unwrap_or(f64::NAN);
    let mut rest: Vec<f64> = tick_ms.iter().skip(1).copied().collect();
    rest.sort_by(f64::total_cmp);
    let median_tick_ms = quantile(&rest, 0.5);
    let oracle_tick_ms = median_ms(&[before.as_slice(), after.as_slice()].concat());
    let cache = lockstep_shard::config::DEFAULT_BLOCK_CACHE_MB;
    let rss_bytes_per_atom = peak_rss_bytes
        .iter()
        .zip(&atoms_per_shard)
        .map(|(rss, n)| rss.saturating_sub(cache << 20) as f64 / (*n).max(1) as f64)
        .fold(0.0, f64::max);
    let total_rss_bytes_per_atom = peak_rss_bytes
        .iter()
        .zip(&atoms_per_shard)
        .map(|(rss, n)| *rss as f64 / (*n).max(1) as f64)
        .fold(0.0, f64::max);
    let phase_median_ms = phases
        .into_iter()
        .map(|(p, mut v)| {
            v.sort_by(f64::total_cmp);
            (p, quantile(&v, 0.5))
        })
        .collect();
    Ok(AttentionReport {
        shards,
        vertices: baseline.vertices,
        edges: baseline.edges(),
        ticks,
        load_secs,
        settle_secs,
        first_tick_ms,
        median_tick_ms,
        oracle_tick_ms,
        oracle_before_ms: median_ms(&before),
        oracle_after_ms: median_ms(&after),
        ratio: median_tick_ms / oracle_tick_ms,
        peak_rss_bytes,
        atoms_per_shard,
        block_cache_mb: cache,
        rss_bytes_per_atom,
        total_rss_bytes_per_atom,
        phase_median_ms,
    })
}

/// Prints attention rows as a table.
pub fn print_attention(rows: &[AttentionReport]) {
    if let Some(r) = rows.first() {
        println!(
            "graph: {} vertices, {} edges; baseline: one thread, in memory, timed just before and just after each size's job",
            r.vertices, r.edges
        );
    }
    println!(
        "{:>6} {:>9} {:>9} {:>13} {:>14} {:>22} {:>7} {:>9} {:>22} {:>10} {:>14}",
        "SHARDS",
        "LOAD s",
        "SETTLE s",
        "TICK 1 ms",
        "TICK med ms",
        "BASE ms (before/after)",
        "× BASE",
        "SPEEDUP",
        "PEAK RSS/SHARD MiB",
        "B/ATOM",
        "B/ATOM -CACHE"
    );
    let one = rows.first().map(|r| r.median_tick_ms).unwrap_or(f64::NAN);
    for r in rows {
        let rss: Vec<String> = r
            .peak_rss_bytes
            .iter()
            .map(|b| format!("{:.0}", *b as f64 / (1 << 20) as f64))
            .collect();
        let base = format!(
            "{:.1} ({:.1}/{:.1})",
            r.oracle_tick_ms, r.oracle_before_ms, r.oracle_after_ms
        );
        println!(
            "{:>6} {:>9.1} {:>9.1} {:>13.0} {:>14.1} {:>22} {:>7.2} {:>9.2} {:>22} {:>10.0} {:>14.0}",
            r.shards,
            r.load_secs,
            r.settle_secs,
            r.first_tick_ms,
            r.median_tick_ms,
            base,
            r.ratio,
            one / r.median_tick_ms,
            rss.join(","),
            r.total_rss_bytes_per_atom,
            r.rss_bytes_per_atom
        );
    }
    for r in rows {
        let phases: Vec<String> = r
            .phase_median_ms
            .iter()
            .map(|(p, ms)| format!("{p} {ms:.1}"))
            .collect();
        println!(
            "  {} shard(s), median ms per phase: {}",
            r.shards,
            phases.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Not a test on its own: the multi-threaded child process of the
    /// pinning test, which starts it with LOCKSTEP_PIN_HOST set. It holds
    /// four threads until its stdin closes.
    #[test]
    #[ignore]
    fn pin_host() {
        if std::env::var_os("LOCKSTEP_PIN_HOST").is_none() {
            return;
        }
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| std::io::stdin().read_line(&mut String::new())))
            .collect();
        println!("ready");
        for t in threads {
            let _ = t.join();
        }
    }

    #[test]
    fn pin_moves_every_thread_of_a_process_not_only_its_first() {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "cluster::tests::pin_host"])
            .args(["--nocapture", "--test-threads", "1"])
            .env("LOCKSTEP_PIN_HOST", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the test binary starts again");
        let pid = child.id();
        // Wait for the helper's threads: it prints "ready" once they run.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "helper ended early");
        }
        let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .map(|t| t.unwrap().file_name().to_str().unwrap().parse().unwrap())
            .collect();
        assert!(tids.len() >= 5, "the helper has {} threads", tids.len());
        let cpu = *allowed_cpus(pid as i32).last().unwrap();
        pin(pid, cpu).unwrap();
        for tid in tids {
            assert_eq!(allowed_cpus(tid), vec![cpu], "thread {tid} of {pid}");
        }
        assert!(pin(u32::MAX, cpu).is_err(), "no such process");
        drop(child.stdin.take());
        child.wait().unwrap();
    }

    #[test]
    fn cpu_time_of_this_process_is_read_and_grows() {
        let me = std::process::id();
        let before = cpu_secs(me).expect("/proc/self/stat is readable");
        // Burn a little CPU, bounded, so the clock-tick counters move.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut x = 0u64;
        while cpu_secs(me).unwrap() <= before && Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        assert!(cpu_secs(me).unwrap() > before, "no CPU time counted in 2 s");
        assert_eq!(cpu_secs(u32::MAX), None);
    }
}
