//! The shard's typed configuration, its defaults and its validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Default heartbeat interval.
pub const DEFAULT_HEARTBEAT_MS: u64 = 500;
/// Default RocksDB block cache.
pub const DEFAULT_BLOCK_CACHE_MB: u64 = 64;
/// Default number of items (atoms plus incoming entries) one request may carry.
pub const DEFAULT_MAX_BATCH: usize = 10_000;
/// Default time to keep retrying the first registration.
pub const DEFAULT_REGISTER_TIMEOUT_MS: u64 = 30_000;
/// Default HTTP/2 receive window per stream of the shard's server, in MiB.
/// Large, because one Deliver call carries megabytes of slot sums: with
/// hyper's 1 MiB, each call waits for several window updates, and each of
/// those waits for the receiving shard's network task to get a core while
/// its phase computes (BENCHMARKS.md §5, session 11).
pub const DEFAULT_HTTP2_WINDOW_MB: u32 = 16;
/// Default largest HTTP/2 frame the shard's server accepts, in KiB.
pub const DEFAULT_HTTP2_FRAME_KB: u32 = 1024;
/// Default largest `ingest --generate` count a shard accepts.
pub const DEFAULT_MAX_GENERATE: u64 = 20_000_000;
/// Default most bytes of an input file one tick may read, in MiB.
pub const DEFAULT_MAX_TICK_READ_MB: u64 = 256;
/// Default deepest nesting of atoms the readers accept.
pub const DEFAULT_MAX_INPUT_DEPTH: usize = lockstep_model::input::DEFAULT_MAX_DEPTH;
/// Default most bytes of undelivered tick messages a shard holds, in MiB.
pub const DEFAULT_MAX_INBOX_MB: u64 = 1024;
/// Default largest page a scan or incoming-set read may ask for.
pub const DEFAULT_MAX_SCAN_PAGE: usize = 10_000;

/// How a shard runs. Every field has a documented default (see the README's
/// configuration reference).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShardConfig {
    /// The coordinator's address, `host:port`.
    pub coordinator: String,
    /// The address to listen on.
    pub listen: String,
    /// The address other processes reach this shard at; defaults to the
    /// bound listen address.
    pub advertise: Option<String>,
    /// Where to serve Prometheus `/metrics` over plain HTTP (`host:port`,
    /// port 0 for any); none by default. It carries counts and timings,
    /// never data, and takes no token.
    pub metrics_listen: Option<String>,
    /// Where RocksDB keeps this shard's data.
    pub data_dir: PathBuf,
    /// Ring weight: scales the shard's virtual nodes.
    pub weight: f64,
    /// How often to heartbeat the coordinator.
    pub heartbeat_interval_ms: u64,
    /// The largest request accepted, in atoms plus incoming entries.
    pub max_batch: usize,
    /// fsync the WAL on every write. Off: an acknowledged write survives the
    /// crash of any process (kill -9). On: it also survives power loss.
    pub sync_writes: bool,
    /// RocksDB block cache size.
    pub block_cache_mb: u64,
    /// How long to keep retrying the first registration.
    pub register_timeout_ms: u64,
    /// HTTP/2 receive window per stream of the shard's server, in MiB; the
    /// connection's window is twice this.
    pub http2_window_mb: u32,
    /// Largest HTTP/2 frame the shard's server accepts, in KiB.
    pub http2_frame_kb: u32,
    /// A file holding the cluster token: every call this shard takes must
    /// carry it, and every call it makes does.
    pub token_file: Option<PathBuf>,
    /// The cluster token itself, from `LOCKSTEP_TOKEN`; never read from
    /// the TOML file.
    #[serde(skip)]
    pub token: Option<String>,
    /// This process's TLS certificate (PEM). With `tls_key` and `tls_ca`,
    /// every connection is TLS: the server presents it and requires a
    /// client certificate signed by `tls_ca`, and calls out present it.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// The cluster CA certificate (PEM) that every peer's certificate must
    /// be signed by.
    pub tls_ca: Option<PathBuf>,
    /// The only folder from which jobs may read files on this host
    /// (`ingest --file`, `tfidf --docs`). Unset (the default): they are
    /// refused.
    pub import_dir: Option<PathBuf>,
    /// The largest `ingest --generate` count accepted.
    pub max_generate: u64,
    /// The most bytes of an input file one ingest tick (or one tf-idf
    /// document) may read, in MiB.
    pub max_tick_read_mb: u64,
    /// The deepest nesting of atoms an input file may have.
    pub max_input_depth: usize,
    /// The most bytes of tick messages from other shards held for the next
    /// phase, in MiB; a Deliver past it is refused.
    pub max_inbox_mb: u64,
    /// The largest page a scan or incoming-set read may ask for.
    pub max_scan_page: usize,
    /// Fault injection for tests: sleep this long at the start of every
    /// tick phase but commit. 0 (the default) disables it.
    pub fault_phase_delay_ms: u64,
    /// Fault injection for tests: sleep this long at the start of every
    /// commit phase, widening the window between prepare and commit. 0
    /// (the default) disables it.
    pub fault_commit_delay_ms: u64,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            coordinator: "127.0.0.1:7400".into(),
            listen: "127.0.0.1:0".into(),
            advertise: None,
            metrics_listen: None,
            data_dir: PathBuf::from("lockstep-data/shard"),
            weight: 1.0,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_MS,
            max_batch: DEFAULT_MAX_BATCH,
            sync_writes: false,
            block_cache_mb: DEFAULT_BLOCK_CACHE_MB,
            register_timeout_ms: DEFAULT_REGISTER_TIMEOUT_MS,
            http2_window_mb: DEFAULT_HTTP2_WINDOW_MB,
            http2_frame_kb: DEFAULT_HTTP2_FRAME_KB,
            token_file: None,
            token: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            import_dir: None,
            max_generate: DEFAULT_MAX_GENERATE,
            max_tick_read_mb: DEFAULT_MAX_TICK_READ_MB,
            max_input_depth: DEFAULT_MAX_INPUT_DEPTH,
            max_inbox_mb: DEFAULT_MAX_INBOX_MB,
            max_scan_page: DEFAULT_MAX_SCAN_PAGE,
            fault_phase_delay_ms: 0,
            fault_commit_delay_ms: 0,
        }
    }
}

impl ShardConfig {
    /// Checks the values and returns the config unchanged if they hold.
    pub fn validate(self) -> Result<ShardConfig, Error> {
        lockstep_telemetry::check_listen(self.metrics_listen.as_deref()).map_err(Error::Config)?;
        if !self.weight.is_finite() || self.weight <= 0.0 || self.weight > 64.0 {
            return Err(Error::Config(format!(
                "weight must be in (0, 64], got {}",
                self.weight
            )));
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(Error::Config("heartbeat_interval_ms must be > 0".into()));
        }
        if self.max_batch == 0 {
            return Err(Error::Config("max_batch must be > 0".into()));
        }
        // HTTP/2's limits: a window below 2^31 bytes (so the connection's,
        // twice the stream's, is too), a frame from 16 KiB to 16 MiB - 1.
        if !(1..=1023).contains(&self.http2_window_mb) {
            return Err(Error::Config(format!(
                "http2_window_mb must be in [1, 1023], got {}",
                self.http2_window_mb
            )));
        }
        if !(16..=16383).contains(&self.http2_frame_kb) {
            return Err(Error::Config(format!(
                "http2_frame_kb must be in [16, 16383], got {}",
                self.http2_frame_kb
            )));
        }
        if self.coordinator.is_empty() {
            return Err(Error::Config("coordinator address is empty".into()));
        }
        for (name, v) in [
            ("max_generate", self.max_generate),
            ("max_tick_read_mb", self.max_tick_read_mb),
            ("max_input_depth", self.max_input_depth as u64),
            ("max_inbox_mb", self.max_inbox_mb),
            ("max_scan_page", self.max_scan_page as u64),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{name} must be > 0")));
            }
        }
        if let Some(dir) = &self.import_dir
            && !dir.is_dir()
        {
            return Err(Error::Config(format!(
                "import_dir {} is not a folder",
                dir.display()
            )));
        }
        Ok(self)
    }

    /// The cluster token (`token` if set, else the contents of
    /// `token_file`, else none) and TLS, when configured.
    pub fn security(&self) -> Result<lockstep_proto::tls::Security, Error> {
        lockstep_proto::tls::Security::from_settings(
            self.token.as_deref(),
            self.token_file.as_deref(),
            [&self.tls_cert, &self.tls_key, &self.tls_ca],
        )
        .map_err(|e| Error::Config(e.to_string()))
    }

    /// The limits jobs read their inputs under.
    pub fn input_limits(&self) -> crate::tick::InputLimits {
        crate::tick::InputLimits {
            import_dir: self.import_dir.clone(),
            max_generate: self.max_generate,
            max_read_bytes: self.max_tick_read_mb.saturating_mul(1 << 20),
            max_depth: self.max_input_depth,
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_do_not() {
        assert!(ShardConfig::default().validate().is_ok());
        let bad = ShardConfig {
            weight: 0.0,
            ..ShardConfig::default()
        };
        assert!(bad.validate().is_err());
        for (window, frame) in [(0, 1024), (1024, 1024), (16, 15), (16, 16384)] {
            let bad = ShardConfig {
                http2_window_mb: window,
                http2_frame_kb: frame,
                ..ShardConfig::default()
            };
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains("http2_"), "{window} MiB, {frame} KiB: {err}");
        }
        let edges = ShardConfig {
            http2_window_mb: 1023,
            http2_frame_kb: 16383,
            ..ShardConfig::default()
        };
        assert!(edges.validate().is_ok());
    }
}
