//! The coordinator's typed configuration, its defaults and its validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Error;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
pub const DEFAULT_HEARTBEAT_MS: u64 = 500;
pub const DEFAULT_SUSPECT_AFTER_MS: u64 = 2_000;
pub const DEFAULT_DOWN_AFTER_MS: u64 = 5_000;
pub const DEFAULT_MAX_BATCH: u32 = 10_000;
pub const DEFAULT_PHASE_DEADLINE_MS: u64 = 60_000;
pub const DEFAULT_RECOVERY_WAIT_MS: u64 = 60_000;
pub const DEFAULT_MAX_TICK_ATTEMPTS: u32 = 10;
pub const DEFAULT_PROBE_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_STATUS_TIMEOUT_MS: u64 = 1_000;
/// The whole registered id space (ids 0x8000..=0xFFFF).
pub const DEFAULT_MAX_TYPES: u32 = lockstep_model::types::MAX_NEW_TYPES as u32;

/// How the coordinator runs. Every field has a documented default (see the
/// README's configuration reference).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// The address to listen on.
    pub listen: String,
    /// Where to serve Prometheus `/metrics` over plain HTTP (`host:port`,
    /// port 0 for any); none by default. It carries counts and timings,
    /// never data, and takes no token.
    pub metrics_listen: Option<String>,
    /// Where the registry is persisted.
    pub data_dir: PathBuf,
    /// Virtual nodes per unit of shard weight.
    pub vnodes: u32,
    /// The heartbeat interval shards are told to use.
    pub heartbeat_interval_ms: u64,
    /// A shard silent this long is Suspect.
    pub suspect_after_ms: u64,
    /// A shard silent this long is Down.
    pub down_after_ms: u64,
    /// The batch size clients are told to stay under.
    pub max_batch: u32,
    /// Every tick phase must finish on every shard within this.
    pub phase_deadline_ms: u64,
    /// How long a job waits for a missing shard before it fails.
    pub recovery_wait_ms: u64,
    /// How many attempts one tick gets before its job fails: a failure
    /// that repeats (a shard that keeps answering with the same error, a
    /// phase that never fits the deadline) must end the job, not spin.
    pub max_tick_attempts: u32,
    /// How long a registering shard's health service has to answer at the
    /// address it registers before the registration is refused.
    pub probe_timeout_ms: u64,
    /// How long `status` waits for each shard's current counts before it
    /// reports that shard's last heartbeat instead (marked not fresh).
    pub status_timeout_ms: u64,
    /// The most atom types the cluster registers beyond the built-in ones
    /// (each is a name users or modules define, such as `ReferenceLink`);
    /// at most 32768, the registered id space.
    pub max_types: u32,
    /// A file holding the cluster token: every call but the health check
    /// must carry it, and the coordinator's calls to shards do.
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
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            listen: DEFAULT_LISTEN.into(),
            metrics_listen: None,
            data_dir: PathBuf::from("lockstep-data/coordinator"),
            vnodes: lockstep_hashing::DEFAULT_VNODES,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_MS,
            suspect_after_ms: DEFAULT_SUSPECT_AFTER_MS,
            down_after_ms: DEFAULT_DOWN_AFTER_MS,
            max_batch: DEFAULT_MAX_BATCH,
            phase_deadline_ms: DEFAULT_PHASE_DEADLINE_MS,
            recovery_wait_ms: DEFAULT_RECOVERY_WAIT_MS,
            max_tick_attempts: DEFAULT_MAX_TICK_ATTEMPTS,
            probe_timeout_ms: DEFAULT_PROBE_TIMEOUT_MS,
            status_timeout_ms: DEFAULT_STATUS_TIMEOUT_MS,
            max_types: DEFAULT_MAX_TYPES,
            token_file: None,
            token: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

impl CoordinatorConfig {
    /// Checks the values and returns the config unchanged if they hold.
    pub fn validate(self) -> Result<CoordinatorConfig, Error> {
        lockstep_telemetry::check_listen(self.metrics_listen.as_deref()).map_err(Error::Config)?;
        if self.vnodes == 0 || self.vnodes > lockstep_hashing::MAX_VNODES_PER_SHARD {
            return Err(Error::Config(format!(
                "vnodes must be in 1..={}, got {}",
                lockstep_hashing::MAX_VNODES_PER_SHARD,
                self.vnodes
            )));
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(Error::Config("heartbeat_interval_ms must be > 0".into()));
        }
        if self.suspect_after_ms <= self.heartbeat_interval_ms {
            return Err(Error::Config(format!(
                "suspect_after_ms ({}) must exceed heartbeat_interval_ms ({})",
                self.suspect_after_ms, self.heartbeat_interval_ms
            )));
        }
        if self.down_after_ms <= self.suspect_after_ms {
            return Err(Error::Config(format!(
                "down_after_ms ({}) must exceed suspect_after_ms ({})",
                self.down_after_ms, self.suspect_after_ms
            )));
        }
        if self.max_batch == 0 {
            return Err(Error::Config("max_batch must be > 0".into()));
        }
        if self.phase_deadline_ms == 0 {
            return Err(Error::Config("phase_deadline_ms must be > 0".into()));
        }
        if self.probe_timeout_ms == 0 {
            return Err(Error::Config("probe_timeout_ms must be > 0".into()));
        }
        if self.status_timeout_ms == 0 {
            return Err(Error::Config("status_timeout_ms must be > 0".into()));
        }
        if self.max_types > DEFAULT_MAX_TYPES {
            return Err(Error::Config(format!(
                "max_types must be at most {DEFAULT_MAX_TYPES}, got {}",
                self.max_types
            )));
        }
        if self.max_tick_attempts == 0 {
            return Err(Error::Config("max_tick_attempts must be > 0".into()));
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

    pub fn job_settings(&self) -> crate::jobs::JobSettings {
        crate::jobs::JobSettings {
            phase_deadline: Duration::from_millis(self.phase_deadline_ms),
            recovery_wait: Duration::from_millis(self.recovery_wait_ms),
            max_tick_attempts: self.max_tick_attempts,
        }
    }

    pub fn thresholds(&self) -> crate::registry::Thresholds {
        crate::registry::Thresholds {
            suspect_after: Duration::from_millis(self.suspect_after_ms),
            down_after: Duration::from_millis(self.down_after_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_inverted_thresholds_do_not() {
        assert!(CoordinatorConfig::default().validate().is_ok());
        let bad = CoordinatorConfig {
            down_after_ms: 1_000,
            ..CoordinatorConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
