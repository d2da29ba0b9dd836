//! The command line: flags as typed (clap), then what they mean (typed
//! configs: TOML file, then environment, then flags).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use lockstep_coordinator::CoordinatorConfig;
use lockstep_shard::ShardConfig;
use serde::Serialize;

use crate::Error;
use crate::config::{self, ConfigFile, Resolved};

/// The coordinator address used when nothing else names one.
pub const DEFAULT_COORDINATOR: &str = "127.0.0.1:7400";

#[derive(Parser, Debug)]
#[command(
    name = "lockstep",
    version,
    about = "A tick-synchronized sharded atom store"
)]
pub struct Cli {
    /// Coordinator address, for a command that talks to one (the same as
    /// that command's own --coordinator, which wins).
    #[arg(long)]
    pub coordinator: Option<String>,
    /// A file holding the cluster token, for clusters that require one
    /// (`LOCKSTEP_TOKEN` gives the token itself and wins).
    #[arg(long, global = true, env = "LOCKSTEP_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// This process's TLS certificate (PEM). With --tls-key and --tls-ca,
    /// every connection is TLS with client certificates (mTLS): servers
    /// require them, clients present this one. Client commands default to
    /// what `lockstep up --secure` recorded.
    #[arg(long, global = true, env = "LOCKSTEP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, global = true, env = "LOCKSTEP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The cluster CA certificate (PEM) every peer's certificate is
    /// checked against.
    #[arg(long, global = true, env = "LOCKSTEP_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The coordinator a client command talks to.
#[derive(Args, Clone, Debug, Default)]
pub struct Target {
    /// Coordinator address (env LOCKSTEP_COORDINATOR). Default: the one
    /// `lockstep up` last recorded, else 127.0.0.1:7400.
    #[arg(long)]
    pub coordinator: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the coordinator.
    Coordinator(CoordinatorArgs),
    /// Run a shard.
    Shard(ShardArgs),
    /// Start a coordinator and N shards on this machine, until Ctrl-C.
    Up(UpArgs),
    /// Load atoms from a file (.scm or JSON Lines) or generate them.
    Load(LoadArgs),
    /// Show one atom with its values and incoming set.
    Get(GetArgs),
    /// Delete an atom.
    Delete(DeleteArgs),
    /// List atoms of one type (with --subtypes, of its descendants too), in handle order.
    Scan(ScanArgs),
    /// Write every atom, with its values, as Atomese that `load` reads back.
    Dump(DumpArgs),
    /// Set one named value of an atom, creating the atom if it is missing.
    SetValue(SetValueArgs),
    /// Show the cluster's shards, their state and counts.
    Status(StatusArgs),
    /// Run a tick workload (ingest, attention, tfidf, barrier) across the shards.
    Run(RunArgs),
    /// List running and finished jobs.
    Jobs(JobsArgs),
    /// Cancel a running job, from any terminal: it stops at its next phase
    /// boundary and the store stays at its last committed tick.
    Cancel(CancelArgs),
    /// Remove a shard from the registry: a Joining one, or any shard of a
    /// cluster that holds no data yet (a ring member of a loaded cluster is
    /// refused until data moves exist).
    Remove(RemoveArgs),
    /// Make a cluster's TLS material: a CA, certificates for the
    /// coordinator, each shard and clients, and a cluster token.
    Certs(CertsArgs),
    /// Check that a coordinator or shard answers its gRPC health service as
    /// serving; exit 0 if it does, 1 if not (container health checks).
    Health(HealthArgs),
    /// Start 3 local shards, load ~100k atoms, run attention for 20 ticks.
    Demo(DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print a shell completion script: `lockstep completions bash >
    /// /etc/bash_completion.d/lockstep`.
    Completions(CompletionsArgs),
    /// Print the man page (roff): `lockstep man | man -l -`.
    Man,
    /// The servers' configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective configuration of a coordinator or a shard (both
    /// without a role) and where each value came from: `default`, the
    /// file, a `LOCKSTEP_*` variable or a flag. Takes the same flags as the
    /// server it shows.
    Show(ConfigShowArgs),
}

#[derive(Args, Debug)]
pub struct ConfigShowArgs {
    /// The server to show, with its flags: `config show shard --weight 2`.
    #[command(subcommand)]
    pub role: Option<ConfigRole>,
    /// TOML configuration file (a role's own --config wins).
    #[arg(long, env = "LOCKSTEP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print JSON: `{"coordinator": {"config": {...}, "sources": {...}}, "shard": ...}`.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ConfigRole {
    /// The coordinator's configuration.
    Coordinator(CoordinatorArgs),
    /// A shard's configuration.
    Shard(ShardArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Balance and key movement of the ring against phago-style and jump hash.
    Ring(BenchRingArgs),
    /// Atoms/s through the full path against raw RocksDB WriteBatches.
    Ingest(BenchIngestArgs),
    /// Phase barrier time against a raw tonic fan-out to the same processes.
    Ticks(BenchTicksArgs),
    /// Attention tick time on 1..N shards against a single-process baseline
    /// on the same graph, with peak RSS per shard.
    Attention(BenchAttentionArgs),
}

#[derive(Args, Debug)]
pub struct BenchAttentionArgs {
    /// Cluster sizes (shard processes) to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub shards: Vec<usize>,
    /// Node atoms in the seeded graph; links are 4 per node.
    #[arg(long, default_value_t = 1_000_000)]
    pub nodes: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Attention ticks per run (the first includes setup and is reported
    /// apart, so the median is of the other 20 by default).
    #[arg(long, default_value_t = 21)]
    pub ticks: u64,
    /// Pin every thread of shard i to core i, from 1 (the coordinator and
    /// the loading client keep the other cores):
    /// for scaling runs on machines with more cores than shards.
    #[arg(long)]
    pub pin_cores: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchIngestArgs {
    /// Cluster sizes (shard processes) to measure.
    #[arg(long, value_delimiter = ',', default_value = "2")]
    pub shards: Vec<usize>,
    /// Atoms to generate (seeded), as `lockstep load --generate`.
    #[arg(long, default_value_t = 200_000)]
    pub atoms: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Atoms per client batch.
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchTicksArgs {
    /// Cluster sizes (shard processes) to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub shards: Vec<usize>,
    /// Ticks of the barrier workload (8 empty phases each).
    #[arg(long, default_value_t = 50)]
    pub ticks: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchRingArgs {
    /// Keys to place.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: usize,
    /// Virtual nodes per shard for Lockstep's ring.
    #[arg(long, default_value_t = lockstep_hashing::DEFAULT_VNODES)]
    pub vnodes: u32,
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    pub shards: Vec<u32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// ingest, attention, tfidf or barrier.
    pub workload: String,
    /// Number of ticks.
    #[arg(long, default_value_t = 10)]
    pub ticks: u64,
    /// attention: damping d.
    #[arg(long)]
    pub damping: Option<f64>,
    /// attention: comma-separated link types that are edges (default: all).
    #[arg(long)]
    pub link_types: Option<String>,
    /// attention, tfidf: size of the top-k lists.
    #[arg(long)]
    pub top: Option<usize>,
    /// ingest: generate this many atoms.
    #[arg(long)]
    pub generate: Option<usize>,
    /// ingest: read atoms from this file (a path every shard can read).
    #[arg(long)]
    pub file: Option<String>,
    /// ingest: seed for --generate.
    #[arg(long)]
    pub seed: Option<u64>,
    /// ingest: top-level atoms per tick.
    #[arg(long)]
    pub batch: Option<usize>,
    /// tfidf: folder of documents (a path every shard can read).
    #[arg(long)]
    pub docs: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// The job's parameters, as the coordinator takes them.
    pub fn params(&self) -> std::collections::HashMap<String, String> {
        let mut p = std::collections::HashMap::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                p.insert(k.to_string(), v);
            }
        };
        put("damping", self.damping.map(|v| v.to_string()));
        put("link-types", self.link_types.clone());
        put("top", self.top.map(|v| v.to_string()));
        put("generate", self.generate.map(|v| v.to_string()));
        put("file", self.file.clone());
        put("seed", self.seed.map(|v| v.to_string()));
        put("batch", self.batch.map(|v| v.to_string()));
        put("docs", self.docs.clone());
        p
    }
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    pub target: Target,
    /// The server's address, host:port [default: the coordinator's].
    pub address: Option<String>,
    /// Give up after this long.
    #[arg(long, default_value_t = 2_000)]
    pub timeout_ms: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo cluster's data; kept afterwards.
    #[arg(long, default_value = "lockstep-demo")]
    pub data_dir: PathBuf,
    /// Atoms to generate.
    #[arg(long, default_value_t = 100_000)]
    pub atoms: usize,
    /// Attention ticks.
    #[arg(long, default_value_t = 20)]
    pub ticks: u64,
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Default, Serialize)]
pub struct CoordinatorArgs {
    /// Address to listen on [default: 127.0.0.1:7400].
    #[arg(long)]
    pub listen: Option<String>,
    /// Serve Prometheus /metrics here over plain HTTP (host:port; port 0
    /// picks one) [default: none].
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// TOML configuration file; environment and flags override it.
    #[arg(long, env = "LOCKSTEP_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where the registry is kept [default: lockstep-data/coordinator].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Virtual nodes per unit of shard weight [default: 128].
    #[arg(long)]
    pub vnodes: Option<u32>,
    /// Heartbeat interval shards are told to use [default: 500].
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Silence before a shard is Suspect [default: 2000].
    #[arg(long)]
    pub suspect_after_ms: Option<u64>,
    /// Silence before a shard is Down [default: 5000].
    #[arg(long)]
    pub down_after_ms: Option<u64>,
    /// Largest batch clients are told to send [default: 10000].
    #[arg(long)]
    pub max_batch: Option<u32>,
    /// Every tick phase must finish on every shard within this [default: 60000].
    #[arg(long)]
    pub phase_deadline_ms: Option<u64>,
    /// How long a job waits for a missing shard before failing [default: 60000].
    #[arg(long)]
    pub recovery_wait_ms: Option<u64>,
    /// Attempts one tick gets before its job fails [default: 10].
    #[arg(long)]
    pub max_tick_attempts: Option<u32>,
    /// How long a registering shard's health service has to answer at its
    /// address [default: 2000].
    #[arg(long)]
    pub probe_timeout_ms: Option<u64>,
    /// How long `status` waits for each shard's current counts before it
    /// shows the shard's last heartbeat instead [default: 1000].
    #[arg(long)]
    pub status_timeout_ms: Option<u64>,
}

#[derive(Args, Debug, Default, Serialize)]
pub struct ShardArgs {
    /// Address to listen on [default: 127.0.0.1:0].
    #[arg(long)]
    pub listen: Option<String>,
    /// Address others reach this shard at [default: the bound address].
    #[arg(long)]
    pub advertise: Option<String>,
    /// The coordinator's address [default: 127.0.0.1:7400].
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Serve Prometheus /metrics here over plain HTTP (host:port; port 0
    /// picks one) [default: none].
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// TOML configuration file; environment and flags override it.
    #[arg(long, env = "LOCKSTEP_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where RocksDB keeps the data [default: lockstep-data/shard].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Ring weight [default: 1.0].
    #[arg(long)]
    pub weight: Option<f64>,
    /// Heartbeat interval [default: 500].
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Largest request accepted, in items [default: 10000].
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// fsync the WAL on every write [default: false].
    #[arg(long)]
    pub sync_writes: Option<bool>,
    /// RocksDB block cache in MiB [default: 64].
    #[arg(long)]
    pub block_cache_mb: Option<u64>,
    /// HTTP/2 receive window per stream, in MiB; the connection's is twice
    /// this [default: 16].
    #[arg(long)]
    pub http2_window_mb: Option<u32>,
    /// Largest HTTP/2 frame accepted, in KiB [default: 1024].
    #[arg(long)]
    pub http2_frame_kb: Option<u32>,
    /// The only folder jobs may read files from on this host (`ingest
    /// --file`, `tfidf --docs`) [default: none, so both are refused].
    #[arg(long)]
    pub import_dir: Option<PathBuf>,
    /// Largest `ingest --generate` count accepted [default: 20000000].
    #[arg(long)]
    pub max_generate: Option<u64>,
    /// Most MiB of an input file one tick (or one document) may read
    /// [default: 256].
    #[arg(long)]
    pub max_tick_read_mb: Option<u64>,
    /// Deepest nesting of atoms an input file may have [default: 1000].
    #[arg(long)]
    pub max_input_depth: Option<usize>,
    /// Most MiB of tick messages held for the next phase [default: 1024].
    #[arg(long)]
    pub max_inbox_mb: Option<u64>,
    /// Largest page a scan may ask for [default: 10000].
    #[arg(long)]
    pub max_scan_page: Option<usize>,
    /// Fault injection: delay every tick phase but commit by this much.
    #[arg(long, hide = true)]
    pub fault_phase_delay_ms: Option<u64>,
    /// Fault injection: delay every commit phase by this much.
    #[arg(long, hide = true)]
    pub fault_commit_delay_ms: Option<u64>,
}

#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    #[command(flatten)]
    pub target: Target,
    /// The job's id, as `lockstep jobs` shows it.
    pub job_id: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub target: Target,
    /// The shard's id: `3` or `shard-3`.
    pub id: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl RemoveArgs {
    pub fn shard_id(&self) -> Result<lockstep_model::ShardId, Error> {
        let digits = self.id.strip_prefix("shard-").unwrap_or(&self.id);
        digits
            .parse()
            .map(lockstep_model::ShardId)
            .map_err(|_| Error::Config(format!("{:?} is not a shard id (3 or shard-3)", self.id)))
    }
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Number of shard processes.
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
    /// Folder for every process's data and logs.
    #[arg(long, default_value = "lockstep-data")]
    pub data_dir: PathBuf,
    /// Coordinator port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 7400)]
    pub port: u16,
    /// Seconds to wait for every shard to be Up.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout: u64,
    /// TLS with client certificates on every connection, and a cluster
    /// token: made under DATA_DIR/tls on first use (kept afterwards), and
    /// recorded in $LOCKSTEP_HOME for this user's client commands.
    #[arg(long)]
    pub secure: bool,
    /// A TOML file with [coordinator] and [shard] sections, handed to every
    /// process; the addresses and data folders `up` assigns override it.
    #[arg(long, env = "LOCKSTEP_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// The folder to write into (made 0700; files already there are kept).
    #[arg(long, default_value = "lockstep-tls")]
    pub out: PathBuf,
    /// Shard certificates to make: shard-0 … shard-(N-1).
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
    /// More certificate names to make (for example one per client host).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    pub target: Target,
    /// An Atomese or JSON Lines file, `-` for standard input. The format is
    /// the extension's (.scm, .jsonl), or else the content's.
    #[arg(required_unless_present = "generate", conflicts_with = "generate")]
    pub file: Option<PathBuf>,
    /// Refuse top-level forms that are not atoms (`define`, `use-modules`,
    /// ...) instead of skipping them.
    #[arg(long)]
    pub strict: bool,
    /// Refuse atom types the AtomSpace does not define, instead of
    /// registering them as new types.
    #[arg(long)]
    pub strict_types: bool,
    /// Generate a seeded synthetic AtomSpace of N atoms instead.
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,
    /// Seed for --generate.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Atoms per client batch.
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub target: Target,
    /// The atom's handle (32 hex digits).
    #[arg(required_unless_present_any = ["node", "atom"], conflicts_with_all = ["node", "atom"])]
    pub handle: Option<String>,
    /// Look a node up by type and name instead.
    #[arg(long, num_args = 2, value_names = ["TYPE", "NAME"], conflicts_with = "atom")]
    pub node: Option<Vec<String>>,
    /// Look an atom up by its Atomese, a link as well as a node:
    /// `--atom '(Inheritance (Concept "a") (Concept "b"))'`.
    #[arg(long, value_name = "ATOMESE")]
    pub atom: Option<String>,
    /// Show only the incoming links of this type.
    #[arg(long, value_name = "TYPE")]
    pub incoming_type: Option<String>,
    /// Print only the value under this key: a PredicateNode's name, or any
    /// key atom's Atomese.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub target: Target,
    /// The atom's handle.
    pub handle: String,
    /// Also delete every link that contains it, transitively.
    #[arg(long)]
    pub recursive: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    #[command(flatten)]
    pub target: Target,
    /// Atom type, e.g. ConceptNode.
    pub r#type: String,
    /// Every type that descends from TYPE too: `scan Link --subtypes` is
    /// every link, the cluster's registered types included.
    #[arg(long)]
    pub subtypes: bool,
    /// Start just after this handle: the last one a previous page printed.
    #[arg(long, value_name = "HANDLE")]
    pub after: Option<String>,
    /// At most this many atoms, the first ones in handle order across
    /// every shard.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SetValueArgs {
    #[command(flatten)]
    pub target: Target,
    /// The atom, as Atomese: `(Concept "a")`.
    pub atom: String,
    /// The key: a PredicateNode's name, or any key atom's Atomese.
    pub key: String,
    /// The value, as Atomese: `(FloatValue 1 2 3)`, `(StringValue "x")`,
    /// `(LinkValue ...)`.
    pub value: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only atoms of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub r#type: Option<String>,
    /// With --type, every type that descends from it too.
    #[arg(long, requires = "type")]
    pub subtypes: bool,
    /// Write the dump to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print the summary as JSON (the dump itself is Atomese).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl CoordinatorArgs {
    /// Defaults, then the file, then `LOCKSTEP_*`, then these flags.
    pub fn resolve(&self) -> Result<Resolved<CoordinatorConfig>, Error> {
        let file = self.config.as_deref().map(ConfigFile::read).transpose()?;
        config::resolve(file.as_ref(), self)
    }

    pub fn config(&self) -> Result<CoordinatorConfig, Error> {
        Ok(self.resolve()?.config)
    }
}

impl ShardArgs {
    /// Defaults, then the file, then `LOCKSTEP_*`, then these flags; a
    /// `--coordinator` given before `shard` (`lockstep --coordinator ADDR
    /// shard`) counts as this command's own.
    pub fn resolve(&self, coordinator: Option<&str>) -> Result<Resolved<ShardConfig>, Error> {
        let file = self.config.as_deref().map(ConfigFile::read).transpose()?;
        let mut flags = serde_json::to_value(self).map_err(|e| Error::Config(e.to_string()))?;
        if let (None, Some(addr), serde_json::Value::Object(map)) =
            (&self.coordinator, coordinator, &mut flags)
        {
            map.insert("coordinator".into(), addr.into());
        }
        config::resolve(file.as_ref(), &flags)
    }

    pub fn config(&self, coordinator: Option<&str>) -> Result<ShardConfig, Error> {
        Ok(self.resolve(coordinator)?.config)
    }
}

/// Where `lockstep up` records the coordinator address for later commands.
pub fn recorded_coordinator_file() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("LOCKSTEP_HOME") {
        return Some(PathBuf::from(home).join("coordinator"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".lockstep").join("coordinator"))
}

impl Command {
    /// The command's own `--coordinator`, for the commands that have one.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Command::Load(a) => Some(&a.target),
            Command::Get(a) => Some(&a.target),
            Command::Delete(a) => Some(&a.target),
            Command::Scan(a) => Some(&a.target),
            Command::Dump(a) => Some(&a.target),
            Command::SetValue(a) => Some(&a.target),
            Command::Status(a) => Some(&a.target),
            Command::Run(a) => Some(&a.target),
            Command::Jobs(a) => Some(&a.target),
            Command::Cancel(a) => Some(&a.target),
            Command::Remove(a) => Some(&a.target),
            Command::Health(a) => Some(&a.target),
            _ => None,
        }
    }
}

/// The coordinator a client command talks to: the flag, else
/// `LOCKSTEP_COORDINATOR`, else the address `lockstep up` recorded, else
/// the default.
pub fn resolve_coordinator(flag: Option<&str>) -> String {
    if let Some(a) = flag {
        return a.to_string();
    }
    if let Ok(a) = std::env::var("LOCKSTEP_COORDINATOR")
        && !a.trim().is_empty()
    {
        return a.trim().to_string();
    }
    recorded_coordinator_file()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_COORDINATOR.to_string())
}

#[cfg(test)]
// figment::Jail's closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn only_commands_that_talk_to_a_coordinator_take_coordinator() {
        let cli = Cli::command();
        let takes = |name: &str| {
            cli.find_subcommand(name)
                .unwrap_or_else(|| panic!("no command {name}"))
                .get_arguments()
                .any(|a| a.get_id() == "coordinator")
        };
        for name in [
            "shard", "load", "get", "delete", "scan", "status", "run", "jobs", "cancel", "remove",
            "health",
        ] {
            assert!(takes(name), "{name} lacks --coordinator");
        }
        for name in [
            "coordinator",
            "up",
            "certs",
            "demo",
            "bench",
            "completions",
            "man",
            "config",
        ] {
            assert!(!takes(name), "{name} takes --coordinator but never uses it");
        }
        // Before the command, as scripts and `up` pass it, or after.
        for args in [
            &["lockstep", "--coordinator", "h:1", "status"][..],
            &["lockstep", "status", "--coordinator", "h:1"][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            let own = cli.command.target().and_then(|t| t.coordinator.clone());
            assert_eq!(own.or(cli.coordinator).as_deref(), Some("h:1"), "{args:?}");
        }
        assert!(Cli::try_parse_from(["lockstep", "certs", "--coordinator", "h:1"]).is_err());
    }

    #[test]
    fn file_then_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "vnodes = 64\ndown_after_ms = 9000\n")?;
            let cli = Cli::try_parse_from([
                "lockstep",
                "coordinator",
                "--config",
                "c.toml",
                "--vnodes",
                "32",
            ])
            .unwrap();
            let Command::Coordinator(args) = cli.command else {
                panic!("parsed the wrong command")
            };
            let c = args.config().unwrap();
            assert_eq!((c.vnodes, c.down_after_ms), (32, 9000));
            Ok(())
        });
    }
}
