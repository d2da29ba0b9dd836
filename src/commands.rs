//! What each CLI command does, printing for a person (or JSON).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::progress::Progress;
use futures::StreamExt;
use lockstep_model::{Atom, AtomType, Handle, Liveness};
use lockstep_proto::pb;
use lockstep_proto::tls::TlsFiles;
use serde_json::json;
use tokio::net::TcpListener;

use crate::Error;
use crate::cli::{
    Cli, Command, DeleteArgs, DemoArgs, DumpArgs, GetArgs, LoadArgs, RunArgs, ScanArgs,
    SetValueArgs, StatusArgs, UpArgs, recorded_coordinator_file, resolve_coordinator,
};
use crate::client::{BulkLoad, Client, PutStats};
use crate::cluster::{LISTENING, LocalCluster, LocalSpec};
use lockstep_model::input;

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn bind(addr: &str, role: &str) -> Result<TcpListener, Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("no local address: {e}")))?;
    // The readiness line `lockstep up` and the tests wait for.
    println!("lockstep {role} {LISTENING}{bound}");
    Ok(listener)
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    // The command's own --coordinator, else one given before the command.
    let flag = cli
        .command
        .target()
        .and_then(|t| t.coordinator.clone())
        .or_else(|| cli.coordinator.clone());
    let flag = flag.as_deref();
    let explicit = Auth {
        value: std::env::var("LOCKSTEP_TOKEN")
            .ok()
            .filter(|v| !v.is_empty()),
        file: cli.token_file.clone(),
        tls: TlsFiles::from_parts(
            cli.tls_cert.clone(),
            cli.tls_key.clone(),
            cli.tls_ca.clone(),
        )
        .map_err(|e| Error::Config(e.to_string()))?,
    };
    // Client commands aimed at the cluster `up --secure` recorded use what
    // it recorded, unless told otherwise.
    let auth = explicit.or_recorded(flag);
    match cli.command {
        Command::Coordinator(args) => {
            let mut config = args.config()?;
            let auth = explicit;
            config.token = auth.value.clone();
            if auth.file.is_some() {
                config.token_file = auth.file.clone();
            }
            auth.apply_tls(
                &mut config.tls_cert,
                &mut config.tls_key,
                &mut config.tls_ca,
            );
            let listener = bind(&config.listen, "coordinator").await?;
            Ok(lockstep_coordinator::run(listener, config, shutdown_signal()).await?)
        }
        Command::Shard(args) => {
            let mut config = args.config(flag)?;
            let auth = explicit;
            config.token = auth.value.clone();
            if auth.file.is_some() {
                config.token_file = auth.file.clone();
            }
            auth.apply_tls(
                &mut config.tls_cert,
                &mut config.tls_key,
                &mut config.tls_ca,
            );
            let listener = bind(&config.listen, "shard").await?;
            Ok(lockstep_shard::run(listener, config, shutdown_signal()).await?)
        }
        Command::Up(args) => up(args, &explicit).await,
        Command::Certs(args) => certs(args),
        Command::Load(args) => load(&connect(flag, &auth).await?, args).await,
        Command::Get(args) => get(&connect(flag, &auth).await?, args).await,
        Command::Delete(args) => delete(&connect(flag, &auth).await?, args).await,
        Command::Scan(args) => scan(&connect(flag, &auth).await?, args).await,
        Command::Dump(args) => dump(&connect(flag, &auth).await?, args).await,
        Command::SetValue(args) => set_value(&connect(flag, &auth).await?, args).await,
        Command::Status(args) => status(&connect(flag, &auth).await?, args).await,
        Command::Run(args) => run_command(&connect(flag, &auth).await?, args).await,
        Command::Jobs(args) => jobs(&connect(flag, &auth).await?, args.json).await,
        Command::Cancel(args) => {
            let committed_tick = connect(flag, &auth).await?.cancel_job(args.job_id).await?;
            if args.json {
                print_json(&Cancelled {
                    job_id: args.job_id,
                    committed_tick,
                });
            } else {
                println!(
                    "cancelling job {}: it stops at its next phase boundary; the store is at committed tick {committed_tick}",
                    args.job_id
                );
            }
            Ok(())
        }
        Command::Remove(args) => {
            let id = args.shard_id()?;
            let epoch = connect(flag, &auth).await?.remove_shard(id).await?;
            if args.json {
                println!("{}", json!({"removed": id.0, "epoch": epoch.0}));
            } else {
                println!("removed {id}; ring epoch {epoch}");
            }
            Ok(())
        }
        Command::Health(args) => {
            let addr = match args.address {
                Some(a) => a,
                None => resolve_coordinator(flag),
            };
            health(
                &addr,
                Duration::from_millis(args.timeout_ms),
                &auth.tls()?,
                args.json,
            )
            .await
        }
        Command::Demo(args) => demo(args, &explicit).await,
        Command::Config(crate::cli::ConfigCommand::Show(args)) => config_show(args, flag),
        Command::Completions(args) => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "lockstep", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Error::io("stdout", e))?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| Error::io("stdout", e))
        }
        Command::Bench(crate::cli::BenchCommand::Ring(args)) => {
            let shards: Vec<u32> = args.shards.iter().copied().filter(|&n| n >= 2).collect();
            let rows = lockstep_bench::ring::ring_balance(args.keys, &shards, args.vnodes);
            lockstep_bench::cluster::print_rows(
                &rows,
                args.json,
                lockstep_bench::ring::print_balance,
            );
            Ok(())
        }
        Command::Bench(crate::cli::BenchCommand::Ingest(args)) => {
            let launcher = crate::cluster::Launcher::this_binary()?;
            let mut rows = Vec::new();
            for &n in &args.shards {
                rows.push(
                    lockstep_bench::cluster::ingest(
                        &launcher,
                        n,
                        args.atoms,
                        args.seed,
                        args.batch,
                        args.concurrency,
                    )
                    .await?,
                );
            }
            lockstep_bench::cluster::print_rows(
                &rows,
                args.json,
                lockstep_bench::cluster::print_ingest,
            );
            Ok(())
        }
        Command::Bench(crate::cli::BenchCommand::Attention(args)) => {
            let launcher = crate::cluster::Launcher::this_binary()?;
            // generate() makes one node per five atoms, the rest binary links.
            let atoms = input::generate::generate(args.nodes * 5, args.seed);
            let baseline = lockstep_bench::cluster::Baseline::new(
                &atoms,
                lockstep_model::workload::DEFAULT_DAMPING,
            );
            let mut rows = Vec::new();
            for &n in &args.shards {
                let row = lockstep_bench::cluster::attention(
                    &launcher,
                    n,
                    &atoms,
                    args.ticks,
                    &baseline,
                    args.pin_cores,
                )
                .await?;
                // A run over several sizes takes minutes: say each one as
                // it ends, so a run cut short still reports what it measured.
                eprintln!(
                    "{n} shard(s): median tick {:.1} ms ({:.2}× the baseline's {:.1} ms), load {:.1} s",
                    row.median_tick_ms, row.ratio, row.oracle_tick_ms, row.load_secs
                );
                rows.push(row);
            }
            lockstep_bench::cluster::print_rows(
                &rows,
                args.json,
                lockstep_bench::cluster::print_attention,
            );
            Ok(())
        }
        Command::Bench(crate::cli::BenchCommand::Ticks(args)) => {
            let launcher = crate::cluster::Launcher::this_binary()?;
            let mut rows = Vec::new();
            for &n in &args.shards {
                rows.push(lockstep_bench::cluster::ticks(&launcher, n, args.ticks).await?);
            }
            lockstep_bench::cluster::print_rows(
                &rows,
                args.json,
                lockstep_bench::cluster::print_ticks,
            );
            Ok(())
        }
    }
}

/// How this process authenticates: the cluster token (`LOCKSTEP_TOKEN`,
/// else the file) and its TLS files.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    pub value: Option<String>,
    pub file: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
}

/// What `lockstep up --secure` records beside the coordinator address, so
/// that the same user's client commands reach that cluster with its client
/// certificate and token. It names files in the cluster's data folder,
/// which only that user can read.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RecordedSecurity {
    coordinator: String,
    token_file: PathBuf,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    tls_ca: PathBuf,
}

fn recorded_security_file() -> Option<PathBuf> {
    recorded_coordinator_file().map(|f| f.with_file_name("security.toml"))
}

impl Auth {
    pub fn token(&self) -> Result<lockstep_proto::auth::Token, Error> {
        lockstep_proto::auth::Token::from_value_or_file(self.value.as_deref(), self.file.as_deref())
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// The loaded TLS material, if any.
    pub fn tls(&self) -> Result<Option<lockstep_proto::tls::Tls>, Error> {
        self.tls
            .as_ref()
            .map(TlsFiles::load)
            .transpose()
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// Overrides a server's configured TLS files with the flags'.
    fn apply_tls(
        &self,
        cert: &mut Option<PathBuf>,
        key: &mut Option<PathBuf>,
        ca: &mut Option<PathBuf>,
    ) {
        if let Some(t) = &self.tls {
            *cert = Some(t.cert.clone());
            *key = Some(t.key.clone());
            *ca = Some(t.ca.clone());
        }
    }

    /// This, or, where neither a token nor TLS was given and the command
    /// goes to the coordinator `lockstep up --secure` recorded, what it
    /// recorded.
    fn or_recorded(&self, flag: Option<&str>) -> Auth {
        if self.value.is_some() || self.file.is_some() || self.tls.is_some() {
            return self.clone();
        }
        let recorded = recorded_security_file()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| toml::from_str::<RecordedSecurity>(&t).ok());
        match recorded {
            Some(r) if r.coordinator == resolve_coordinator(flag) => Auth {
                value: None,
                file: Some(r.token_file),
                tls: Some(TlsFiles {
                    cert: r.tls_cert,
                    key: r.tls_key,
                    ca: r.tls_ca,
                }),
            },
            _ => self.clone(),
        }
    }
}

async fn connect(flag: Option<&str>, auth: &Auth) -> Result<Client, Error> {
    Client::connect_with(
        &resolve_coordinator(flag),
        crate::client::ClientOptions {
            token: auth.token()?,
            tls: auth.tls()?,
            ..Default::default()
        },
    )
    .await
    .map_err(Error::from)
}

/// Holds `DIR/up.lock` for as long as it lives, so a second `lockstep up`
/// on the same folder is refused instead of starting a second coordinator
/// on the same registry.
struct FolderLock {
    _file: std::fs::File,
}

impl FolderLock {
    fn take(dir: &Path) -> Result<FolderLock, Error> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join("up.lock");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock(2) on a descriptor this function owns.
        let locked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(Error::Cluster(format!(
                "{} is in use by another `lockstep up` (pid {})",
                dir.display(),
                pid.trim()
            )));
        }
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "{}", std::process::id());
        Ok(FolderLock { _file: f })
    }
}

/// The flags that hand a token file on to child processes (a token from
/// `LOCKSTEP_TOKEN` reaches them through the environment).
fn token_flags(auth: &Auth) -> Vec<String> {
    match &auth.file {
        Some(f) => vec!["--token-file".into(), f.display().to_string()],
        None => Vec::new(),
    }
}

/// `lockstep config show`: each value of the effective configuration
/// and its source, for one role or both.
fn config_show(args: crate::cli::ConfigShowArgs, coordinator: Option<&str>) -> Result<(), Error> {
    use crate::cli::{ConfigRole, CoordinatorArgs, ShardArgs};
    use crate::config::Resolved;
    fn rows<T: serde::Serialize>(r: &Resolved<T>) -> Result<Vec<[String; 3]>, Error> {
        let values = serde_json::to_value(&r.config).map_err(|e| Error::Config(e.to_string()))?;
        Ok(r.sources
            .iter()
            .map(|(key, source)| {
                let value = match values.get(key) {
                    None | Some(serde_json::Value::Null) => "(unset)".to_string(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                };
                [key.clone(), value, source.clone()]
            })
            .collect())
    }
    let inherit = |own: &mut Option<PathBuf>| {
        if own.is_none() {
            own.clone_from(&args.config);
        }
    };
    let (coordinator_args, shard_args) = match args.role {
        Some(ConfigRole::Coordinator(mut a)) => {
            inherit(&mut a.config);
            (Some(a), None)
        }
        Some(ConfigRole::Shard(mut a)) => {
            inherit(&mut a.config);
            (None, Some(a))
        }
        None => {
            if let Some(p) = &args.config
                && !crate::config::ConfigFile::read(p)?.sectioned
            {
                return Err(Error::Config(format!(
                    "{} has no [coordinator] or [shard] section, so it configures one process: \
                     name it (`config show coordinator` or `config show shard`)",
                    p.display()
                )));
            }
            let c = CoordinatorArgs {
                config: args.config.clone(),
                ..CoordinatorArgs::default()
            };
            let s = ShardArgs {
                config: args.config.clone(),
                ..ShardArgs::default()
            };
            (Some(c), Some(s))
        }
    };
    let coordinator_cfg = coordinator_args.map(|a| a.resolve()).transpose()?;
    let shard_cfg = shard_args.map(|a| a.resolve(coordinator)).transpose()?;
    if args.json {
        let mut out = serde_json::Map::new();
        if let Some(c) = &coordinator_cfg {
            out.insert("coordinator".into(), json!(c));
        }
        if let Some(s) = &shard_cfg {
            out.insert("shard".into(), json!(s));
        }
        print_json(&out);
        return Ok(());
    }
    let mut sections = Vec::new();
    if let Some(c) = &coordinator_cfg {
        sections.push(("coordinator", rows(c)?));
    }
    if let Some(s) = &shard_cfg {
        sections.push(("shard", rows(s)?));
    }
    for (i, (name, rows)) in sections.into_iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("[{name}]");
        let mut table = comfy_table::Table::new();
        table
            .load_preset(comfy_table::presets::NOTHING)
            .set_header(["KEY", "VALUE", "SOURCE"]);
        for row in rows {
            table.add_row(row);
        }
        println!("{table}");
    }
    Ok(())
}

async fn up(args: UpArgs, auth: &Auth) -> Result<(), Error> {
    let _lock = FolderLock::take(&args.data_dir)?;
    let config_args = match &args.config {
        None => Vec::new(),
        Some(p) => {
            let file = crate::config::ConfigFile::read(p)?;
            if !file.sectioned {
                return Err(Error::Config(format!(
                    "{}: `up` hands one file to the coordinator and the shards, so it needs \
                     [coordinator] and [shard] sections (a flat file configures one process)",
                    p.display()
                )));
            }
            // Each process would refuse a bad value only after `up` had
            // started the others: check both sections first.
            let none = json!({});
            crate::config::resolve::<lockstep_coordinator::CoordinatorConfig>(Some(&file), &none)?;
            crate::config::resolve::<lockstep_shard::ShardConfig>(Some(&file), &none)?;
            vec!["--config".to_string(), absolute(p).display().to_string()]
        }
    };
    let certs = if args.secure {
        let c = crate::certs::CertDir::new(args.data_dir.join("tls"));
        c.ensure(&crate::certs::cluster_names(args.shards))?;
        Some(c)
    } else {
        None
    };
    // With --secure the children get the token file through their
    // certificate flags, and this process reads the same file.
    let (token, token_args) = match &certs {
        Some(c) => (
            Auth {
                file: Some(c.token()),
                ..Auth::default()
            }
            .token()?,
            Vec::new(),
        ),
        None => (auth.token()?, token_flags(auth)),
    };
    let exe = std::env::current_exe().map_err(|e| Error::Cluster(e.to_string()))?;
    // Every process serves /metrics on a loopback port of its own.
    let metrics_args = vec!["--metrics-listen".to_string(), "127.0.0.1:0".to_string()];
    let mut cluster = LocalCluster::start(LocalSpec {
        exe,
        shards: args.shards,
        data_dir: args.data_dir.clone(),
        port: args.port,
        ready_timeout: Duration::from_secs(args.ready_timeout),
        shard_args: [
            config_args.clone(),
            token_args.clone(),
            metrics_args.clone(),
        ]
        .concat(),
        coordinator_args: [config_args, token_args, metrics_args].concat(),
        token: token.clone(),
        certs: certs.clone(),
    })
    .await?;
    let addr = cluster.coordinator_addr().to_string();
    record(&addr, cluster.data_dir());
    record_security(&addr, certs.as_ref());
    // Each process under the id it registered with, which `status` and
    // every error message use too.
    let names: Vec<String> = cluster
        .shard_ids()
        .await?
        .iter()
        .enumerate()
        .map(|(i, id)| id.map_or_else(|| format!("shard process {i}"), |id| id.to_string()))
        .collect();
    let pid = |p: Option<u32>| p.map_or_else(|| "-".to_string(), |p| p.to_string());
    let st = cluster.connect().await?.status().await?;
    let or_dash = |a: &str| {
        if a.is_empty() {
            "-".to_string()
        } else {
            a.to_string()
        }
    };
    let shard_metrics = |address: &str| {
        st.shards
            .iter()
            .find(|s| s.shard.as_ref().is_some_and(|e| e.address == address))
            .and_then(|s| s.metrics.as_ref())
            .map_or_else(|| "-".to_string(), |m| or_dash(&m.metrics_address))
    };
    let mut rows = vec![[
        "coordinator".to_string(),
        addr.clone(),
        pid(cluster.coordinator_pid()),
        or_dash(&st.metrics_address),
        cluster.coordinator_log().display().to_string(),
    ]];
    for (i, name) in names.iter().enumerate() {
        rows.push([
            name.clone(),
            cluster.shard_addr(i).to_string(),
            pid(cluster.shard_pids()[i]),
            shard_metrics(cluster.shard_addr(i)),
            cluster.shard_log(i).display().to_string(),
        ]);
    }
    let width = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(11) + 2;
    let addr_width = rows.iter().map(|r| r[1].len()).max().unwrap_or(0) + 2;
    let metrics_width = rows.iter().map(|r| r[3].len()).max().unwrap_or(0) + 1;
    // `NAME ADDRESS pid PID metrics ADDRESS log PATH`, one process a line,
    // so scripts can split it on whitespace.
    for [name, address, pid, metrics, log] in &rows {
        println!(
            "{name:<width$}{address:<addr_width$}pid {pid:<8} metrics {metrics:<metrics_width$}log {log}"
        );
    }
    println!(
        "data{:w$}{}",
        "",
        cluster.data_dir().display(),
        w = width - 4
    );
    println!("ready: {} shards up; Ctrl-C to stop", args.shards);
    supervise(&mut cluster, names).await;
    println!("stopping…");
    cluster.shutdown().await;
    println!("stopped");
    Ok(())
}

/// Records (or, for a plaintext cluster, forgets) the security a secure
/// cluster's clients need; like the address, failing to record is not an
/// error.
fn record_security(addr: &str, certs: Option<&crate::certs::CertDir>) {
    let Some(f) = recorded_security_file() else {
        return;
    };
    let Some(c) = certs else {
        let _ = std::fs::remove_file(f);
        return;
    };
    let client = c.files(crate::certs::CLIENT);
    let r = RecordedSecurity {
        coordinator: addr.to_string(),
        token_file: absolute(&c.token()),
        tls_cert: absolute(&client.cert),
        tls_key: absolute(&client.key),
        tls_ca: absolute(&client.ca),
    };
    if let Ok(text) = toml::to_string(&r) {
        let _ = std::fs::write(f, text);
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `lockstep certs`: writes a cluster's TLS material.
fn certs(args: crate::cli::CertsArgs) -> Result<(), Error> {
    let dir = crate::certs::CertDir::new(&args.out);
    let mut names = crate::certs::cluster_names(args.shards);
    names.extend(args.names.iter().cloned());
    let made = dir.ensure(&names)?;
    if args.json {
        println!(
            "{}",
            json!({
                "dir": absolute(&args.out),
                "made": made,
                "ca": absolute(&dir.ca()),
                "token_file": absolute(&dir.token()),
                "names": names,
            })
        );
    } else {
        println!("TLS material in {}", absolute(&args.out).display());
        if made.is_empty() {
            println!("nothing new: every file was there");
        } else {
            println!("made: {}", made.join(", "));
        }
        println!(
            "give each process --tls-cert DIR/NAME.crt --tls-key DIR/NAME.key --tls-ca DIR/ca.crt --token-file DIR/token"
        );
    }
    Ok(())
}

/// Records the coordinator address for later commands; failure to record
/// only costs the default, so it is not an error.
fn record(addr: &str, data_dir: &Path) {
    let _ = std::fs::write(data_dir.join("coordinator.addr"), addr);
    if let Some(f) = recorded_coordinator_file() {
        if let Some(dir) = f.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(f, addr);
    }
}

/// What a load did (`lockstep load --json`).
#[derive(serde::Serialize)]
pub struct Loaded {
    /// Top-level atoms in the input.
    pub atoms: usize,
    /// Top-level forms skipped because they are not atoms, by head.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// The types in the input that the AtomSpace does not define: each is
    /// registered cluster-wide as a new type.
    pub new_types: Vec<String>,
    /// Records that did not exist before.
    pub created: u64,
    /// Records written, the targets of links included.
    pub records: u64,
    pub incoming: u64,
    pub seconds: f64,
    pub atoms_per_s: f64,
}

/// Loads atoms and prints a summary line (or JSON).
pub async fn load(client: &Client, args: LoadArgs) -> Result<(), Error> {
    let json = args.json;
    let l = load_atoms(client, args).await?;
    if json {
        print_json(&l);
    } else {
        println!(
            "loaded {} atoms ({} new, {} records written incl. targets, {} incoming entries) in {:.2}s: {} atoms/s",
            l.atoms,
            l.created,
            l.records,
            l.incoming,
            l.seconds,
            crate::human::count(l.atoms_per_s)
        );
        if let Some(s) = input::skipped_summary(&l.skipped) {
            println!("{s}");
        }
        if !l.new_types.is_empty() {
            println!(
                "new types ({}): {}",
                l.new_types.len(),
                l.new_types.join(", ")
            );
        }
    }
    Ok(())
}

/// The types of `atoms` and everything they contain that are not built in,
/// sorted.
fn new_types(atoms: &[Atom]) -> Vec<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack: Vec<&Atom> = atoms.iter().collect();
    while let Some(a) = stack.pop() {
        if a.ty.builtin.is_none() {
            out.insert(a.ty.name.to_string());
        }
        stack.extend(a.outgoing.iter());
    }
    out.into_iter().collect()
}

/// Loads atoms in batches, several in flight, with progress.
pub async fn load_atoms(client: &Client, args: LoadArgs) -> Result<Loaded, Error> {
    let limits = input::ReadLimits {
        strict: args.strict,
        strict_types: args.strict_types,
        ..Default::default()
    };
    let read = match (&args.file, args.generate) {
        (_, Some(n)) => input::Loaded {
            atoms: input::generate::generate(n, args.seed),
            ..Default::default()
        },
        (Some(f), None) => input::read_file_with(f, limits)?,
        (None, None) => unreachable!("clap requires a file or --generate"),
    };
    let (atoms, skipped) = (read.atoms, read.skipped);
    let new_types = new_types(&atoms);
    let started = Instant::now();
    let total = atoms.len();
    let progress = Progress::new(total as u64, "loading");
    let mut stats = PutStats::default();
    let mut acked = 0usize;
    let batch = args.batch.max(1);
    let bulk = &BulkLoad::default();
    let mut stream = futures::stream::iter(atoms.chunks(batch))
        .map(|chunk| async move { client.put_bulk(bulk, chunk).await.map(|s| (chunk.len(), s)) })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(res) = stream.next().await {
        match res {
            Ok((n, s)) => {
                acked += n;
                stats += s;
                progress.inc(n as u64);
            }
            Err(e) => {
                progress.abandon();
                return Err(Error::Cluster(format!(
                    "load stopped after {acked} of {total} atoms were acknowledged: {e}"
                )));
            }
        }
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    Ok(Loaded {
        atoms: total,
        skipped,
        new_types,
        created: stats.created,
        records: stats.atoms,
        incoming: stats.incoming,
        seconds: secs,
        atoms_per_s: total as f64 / secs.max(1e-9),
    })
}

/// A truth value as JSON: its kind, its numbers, and the mean and
/// confidence every kind has.
fn tv_json(tv: &lockstep_model::TruthValue) -> serde_json::Value {
    json!({
        "kind": tv.kind.short(),
        "values": tv.values(),
        "strength": tv.strength(),
        "confidence": tv.confidence(),
    })
}

async fn get(client: &Client, args: GetArgs) -> Result<(), Error> {
    let handle = match (&args.handle, &args.node, &args.atom) {
        (Some(h), _, _) => h.parse::<Handle>()?,
        (None, Some(v), _) => {
            let ty = AtomType::intern(&v[0])?;
            lockstep_model::FlatAtom::new(ty, v[1].clone(), Vec::new())?.handle
        }
        (None, None, Some(text)) => one_atom("--atom", text)?.handle(),
        (None, None, None) => unreachable!("clap requires a handle, --node or --atom"),
    };
    let incoming_type = args
        .incoming_type
        .as_deref()
        .map(AtomType::intern)
        .transpose()?;
    let rec = client
        .get(&[handle])
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| Error::Cluster(format!("atom {handle} not found")))?;
    if let Some(key) = &args.key {
        let key = lockstep_model::value::normalize_key(key)?;
        let value = rec.values.get(&key);
        if args.json {
            print_json(&json!({"handle": handle.to_string(), "key": key, "value": value}));
        } else {
            match value {
                Some(v) => println!("{}", lockstep_model::output::value_form(v)),
                None => {
                    return Err(Error::Cluster(format!(
                        "atom {handle} has no value under {}",
                        lockstep_model::value::key_atomese(&key)
                    )));
                }
            }
        }
        return Ok(());
    }
    let mut incoming = client.incoming(handle).await?;
    if let Some(t) = incoming_type {
        incoming.retain(|r| std::ptr::eq(r.link_type, t));
    }
    // One batched read per level of the outgoing atoms, written by the
    // same writer as `dump`, on one line.
    let text = client
        .nested(std::slice::from_ref(&rec), true)
        .await?
        .pop()
        .map(|a| lockstep_model::output::inline_form(&a))
        .unwrap_or_default();
    if args.json {
        let v = json!({
            "handle": handle.to_string(),
            "type": rec.ty.name,
            "name": rec.name,
            "outgoing": rec.outgoing.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            "atomese": text,
            "tv": tv_json(&rec.tv),
            "av": {"sti": rec.av.sti, "lti": rec.av.lti, "vlti": rec.av.vlti},
            "values": rec.values,
            "incoming": incoming.iter().map(|r| json!({
                "link": r.link.to_string(), "type": r.link_type.name,
            })).collect::<Vec<_>>(),
        });
        println!("{v:#}");
        return Ok(());
    }
    println!("handle    {handle}");
    println!("atom      {text}");
    println!("tv        {}", lockstep_model::output::tv_form(&rec.tv));
    println!("av        {}", lockstep_model::output::av_form(&rec.av));
    for (k, v) in &rec.values {
        println!(
            "value     {} {}",
            lockstep_model::value::key_atomese(k),
            lockstep_model::output::value_form(v)
        );
    }
    println!("incoming  {} link(s)", incoming.len());
    for r in incoming.iter().take(20) {
        println!("  {}  {}", r.link, r.link_type.name);
    }
    if incoming.len() > 20 {
        println!("  … {} more", incoming.len() - 20);
    }
    Ok(())
}

async fn delete(client: &Client, args: DeleteArgs) -> Result<(), Error> {
    let h: Handle = args.handle.parse()?;
    let n = client.delete(h, args.recursive).await?;
    if args.json {
        print_json(&serde_json::json!({"handle": h.to_string(), "deleted": n}));
    } else {
        println!("deleted {n} atom(s)");
    }
    Ok(())
}

async fn scan(client: &Client, args: ScanArgs) -> Result<(), Error> {
    let ty = AtomType::intern(&args.r#type)?;
    let types = if args.subtypes {
        ty.descendants(&client.refresh().await?.topology.registered_types())
    } else {
        vec![ty]
    };
    let after = args
        .after
        .as_deref()
        .map(str::parse::<Handle>)
        .transpose()?;
    let mut scan = client.scan(&types, after)?;
    let mut recs = Vec::new();
    while recs.len() < args.limit {
        match scan.next().await? {
            Some(r) => recs.push(r),
            None => break,
        }
    }
    // One batched read per level of every listed link's outgoing atoms.
    let nested = client.nested(&recs, true).await?;
    let mut atoms = Vec::new();
    for (rec, atom) in recs.iter().zip(&nested) {
        let atomese = lockstep_model::output::inline_form(atom);
        if args.json {
            atoms.push(serde_json::json!({
                "handle": rec.handle.to_string(),
                "type": rec.ty.name,
                "name": rec.ty.is_node().then_some(&rec.name),
                "outgoing": rec.outgoing.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "tv": [rec.tv.strength(), rec.tv.confidence()],
                "truth_value": tv_json(&rec.tv),
                "av": [rec.av.sti, rec.av.lti, rec.av.vlti],
                "atomese": atomese,
            }));
        } else {
            println!("{}  {atomese}", rec.handle);
        }
    }
    if args.json {
        print_json(&serde_json::json!({ "atoms": atoms }));
    }
    Ok(())
}

/// An input on the command line that is not what it must be.
fn bad_input(msg: String) -> Error {
    Error::Invalid(lockstep_proto::ProtoError::BadParam(msg))
}

/// Parses the one atom of `text` (`what` names it in errors).
fn one_atom(what: &str, text: &str) -> Result<Atom, Error> {
    let limits = input::ReadLimits {
        strict: true,
        ..Default::default()
    };
    let atoms = input::scm::parse_with(text, limits)
        .map_err(|e| bad_input(format!("{what} {}:{}: {}", e.line, e.col, e.message)))?;
    match <[Atom; 1]>::try_from(atoms) {
        Ok([a]) => Ok(a),
        Err(v) => Err(bad_input(format!("{what} takes one atom, got {}", v.len()))),
    }
}

async fn set_value(client: &Client, args: SetValueArgs) -> Result<(), Error> {
    let key = lockstep_model::value::normalize_key(&args.key)?;
    // The reader takes the value in the form a dump writes it.
    let form = format!(
        "(cog-set-value! {} {} {})",
        args.atom,
        lockstep_model::value::key_atomese(&key),
        args.value
    );
    let mut atom = one_atom("the value", &form)?;
    let value = atom
        .values
        .remove(&key)
        .ok_or_else(|| bad_input(format!("no value in {:?}", args.value)))?;
    client.set_value(&atom, &key, value.clone()).await?;
    let handle = atom.handle();
    if args.json {
        print_json(&json!({"handle": handle.to_string(), "key": key, "value": value}));
    } else {
        println!(
            "{handle}  {} {}",
            lockstep_model::value::key_atomese(&key),
            lockstep_model::output::value_form(&value)
        );
    }
    Ok(())
}

/// What `dump` wrote.
#[derive(Debug, serde::Serialize)]
pub struct Dumped {
    pub atoms: u64,
    pub types: usize,
    pub output: Option<String>,
    pub seconds: f64,
}

/// The records a dump reads and writes per batch: its memory bound, with
/// one page per shard of the type being read.
const DUMP_BATCH: usize = 512;

/// Writes the atoms of every type (or of `--type`), type by type in name
/// order and each in handle order, so that the same atoms give the same
/// dump whatever the shard count. Each atom is written once with its
/// values; a link's outgoing atoms are written inside it without theirs.
pub async fn dump(client: &Client, args: DumpArgs) -> Result<(), Error> {
    use std::io::Write;
    let started = Instant::now();
    let routing = client.refresh().await?;
    let registered = routing.topology.registered_types();
    let mut types: Vec<&'static AtomType> = match &args.r#type {
        Some(t) => {
            let ty = AtomType::intern(t)?;
            if args.subtypes {
                ty.descendants(&registered)
            } else {
                vec![ty]
            }
        }
        None => AtomType::builtins().chain(registered).collect(),
    };
    types.sort_by_key(|t| t.name);
    types.dedup_by_key(|t| t.name);
    let status = client.status().await?;
    // A type no shard holds is not scanned, when every shard's counts are
    // current (read for this status, not a heartbeat's).
    if status.shards.iter().all(|s| s.fresh) {
        let held: std::collections::BTreeSet<&str> = status
            .shards
            .iter()
            .filter_map(|s| s.metrics.as_ref())
            .flat_map(|m| m.type_counts.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(t, _)| t.as_str())
            .collect();
        types.retain(|t| held.contains(t.name));
    }
    let total: u64 = status
        .shards
        .iter()
        .filter_map(|s| s.metrics.as_ref())
        .flat_map(|m| m.type_counts.iter())
        .filter(|(name, _)| types.iter().any(|t| t.name == name.as_str()))
        .map(|(_, n)| *n)
        .sum();
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::fs::File::create(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(out);
    let progress = Progress::new(total, "dumping");
    let mut written = 0u64;
    let io = |source: std::io::Error| Error::Io {
        path: args
            .output
            .clone()
            .unwrap_or_else(|| PathBuf::from("<stdout>")),
        source,
    };
    for &ty in &types {
        let mut scan = client.scan(&[ty], None)?;
        loop {
            let mut batch = Vec::with_capacity(DUMP_BATCH);
            while batch.len() < DUMP_BATCH {
                match scan.next().await? {
                    Some(r) => batch.push(r),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let mut text = String::new();
            for atom in client.nested(&batch, false).await? {
                lockstep_model::output::write_atom(&mut text, &atom);
                text.push('\n');
                for (k, v) in &atom.values {
                    text.push_str(&lockstep_model::output::set_value_form(&atom, k, v));
                    text.push('\n');
                }
            }
            out.write_all(text.as_bytes()).map_err(io)?;
            written += batch.len() as u64;
            progress.inc(batch.len() as u64);
        }
    }
    out.flush().map_err(io)?;
    progress.finish_and_clear();
    let summary = Dumped {
        atoms: written,
        types: types.len(),
        output: args.output.as_ref().map(|p| p.display().to_string()),
        seconds: started.elapsed().as_secs_f64(),
    };
    // On standard output the dump is the output; the summary goes to
    // stderr so that `dump > file` stays pure Atomese.
    let line = format!(
        "dumped {} atoms of {} types{} in {:.2}s",
        summary.atoms,
        summary.types,
        summary
            .output
            .as_ref()
            .map(|p| format!(" to {p}"))
            .unwrap_or_default(),
        summary.seconds
    );
    match (args.json, args.output.is_some()) {
        (true, true) => print_json(&summary),
        (true, false) => eprintln!("{}", serde_json::to_string(&summary).unwrap_or_default()),
        (false, true) => println!("{line}"),
        (false, false) => eprintln!("{line}"),
    }
    Ok(())
}

fn state_name(e: &pb::ShardEntry) -> String {
    let live: Liveness = pb::Liveness::try_from(e.liveness)
        .unwrap_or(pb::Liveness::Unspecified)
        .into();
    if e.in_ring {
        live.to_string()
    } else {
        format!("Joining/{live}")
    }
}

async fn status(client: &Client, args: StatusArgs) -> Result<(), Error> {
    let st = client.status().await?;
    let topo = st.topology.clone().unwrap_or_default();
    if args.json {
        let v = json!({
            "cluster_id": topo.cluster_id,
            "epoch": topo.epoch,
            "total_atoms": st.total_atoms,
            "total_live_bytes": st.total_live_bytes,
            "balance": st.balance,
            "has_data": st.has_data,
            "committed_tick": st.committed_tick,
            "metrics_address": (!st.metrics_address.is_empty()).then_some(&st.metrics_address),
            "shards": st.shards.iter().map(|s| {
                let e = s.shard.clone().unwrap_or_default();
                let m = s.metrics.clone().unwrap_or_default();
                json!({
                    "id": e.id, "address": e.address, "state": state_name(&e),
                    "in_ring": e.in_ring, "weight": e.weight,
                    "atoms": m.atoms, "incoming": m.incoming, "live_bytes": m.live_bytes,
                    "rss_bytes": m.rss_bytes, "type_counts": m.type_counts, "last_tick": m.last_tick,
                    "ms_since_heartbeat": (s.ms_since_heartbeat != u64::MAX).then_some(s.ms_since_heartbeat),
                    "fresh": s.fresh,
                    "metrics_address": (!m.metrics_address.is_empty()).then_some(&m.metrics_address),
                })
            }).collect::<Vec<_>>(),
        });
        println!("{v:#}");
        return Ok(());
    }
    println!(
        "cluster {}  epoch {}  shards {}  atoms {}  live {}  balance {:.3}  committed tick {}",
        topo.cluster_id,
        topo.epoch,
        st.shards.len(),
        st.total_atoms,
        crate::human::bytes(st.total_live_bytes),
        st.balance,
        st.committed_tick
    );
    println!(
        "{:<6} {:<14} {:<22} {:>10} {:>10} {:>11} {:>11} {:>9}",
        "ID", "STATE", "ADDRESS", "ATOMS", "INCOMING", "LIVE", "RSS", "LAST HB"
    );
    for s in &st.shards {
        let e = s.shard.clone().unwrap_or_default();
        let m = s.metrics.clone().unwrap_or_default();
        let hb = if s.ms_since_heartbeat == u64::MAX {
            "never".to_string()
        } else {
            format!("{}ms", s.ms_since_heartbeat)
        };
        // A shard that did not answer shows its last heartbeat's counts,
        // marked.
        let atoms = if s.fresh {
            m.atoms.to_string()
        } else {
            format!("{}*", m.atoms)
        };
        println!(
            "{:<6} {:<14} {:<22} {:>10} {:>10} {:>11} {:>11} {:>9}",
            e.id,
            state_name(&e),
            e.address,
            atoms,
            m.incoming,
            crate::human::bytes(m.live_bytes),
            crate::human::bytes(m.rss_bytes),
            hb
        );
    }
    if st.shards.iter().any(|s| !s.fresh) {
        println!("* counts from the shard's last heartbeat: it did not answer in time");
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM, restarting any shard that exits meanwhile,
/// with a backoff that doubles up to 10 s per shard.
/// Restart state of one supervised process.
struct Restarts {
    name: String,
    backoff: Duration,
    due: Option<Instant>,
    started: Instant,
}

impl Restarts {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(10);
    /// A process that ran this long before exiting starts over at the
    /// first backoff; one that exits sooner waits twice as long as before.
    const STABLE: Duration = Duration::from_secs(10);

    fn new(name: String) -> Restarts {
        Restarts {
            name,
            backoff: Restarts::FIRST,
            due: None,
            started: Instant::now(),
        }
    }

    fn exited(&mut self, status: std::process::ExitStatus) {
        if self.started.elapsed() >= Restarts::STABLE {
            self.backoff = Restarts::FIRST;
        }
        println!(
            "{} exited ({status}); restarting in {:?}",
            self.name, self.backoff
        );
        self.due = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(Restarts::MAX);
    }

    fn is_due(&mut self) -> bool {
        if self.due.is_some_and(|t| Instant::now() >= t) {
            self.due = None;
            return true;
        }
        false
    }

    fn restarted(&mut self, res: Result<Option<u32>, Error>) {
        match res {
            Ok(pid) => {
                match pid {
                    Some(pid) => println!("{} restarted (pid {pid})", self.name),
                    None => println!("{} restarted", self.name),
                }
                self.started = Instant::now();
            }
            Err(e) => {
                println!(
                    "{} restart failed: {e}; retrying in {:?}",
                    self.name, self.backoff
                );
                self.due = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(Restarts::MAX);
            }
        }
    }
}

/// Restarts whatever exits, the coordinator on its own address, each with
/// a backoff that grows while the process keeps failing, until Ctrl-C.
async fn supervise(cluster: &mut LocalCluster, names: Vec<String>) {
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut shards: Vec<Restarts> = names.into_iter().map(Restarts::new).collect();
    let mut coordinator = Restarts::new("coordinator".into());
    loop {
        tokio::select! {
            _ = &mut signal => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if coordinator.due.is_none()
            && let Some(status) = cluster.coordinator_exited()
        {
            coordinator.exited(status);
        }
        if coordinator.is_due() {
            let res = cluster.restart_coordinator().await;
            coordinator.restarted(res.map(|()| cluster.coordinator_pid()));
        }
        for (i, status) in cluster.exited() {
            if shards[i].due.is_none() {
                shards[i].exited(status);
            }
        }
        for (i, r) in shards.iter_mut().enumerate() {
            if r.is_due() {
                let res = cluster.restart_shard(i).await;
                r.restarted(res.map(|()| cluster.shard_pids()[i]));
            }
        }
    }
}

/// What a finished job reported.
pub struct JobOutcome {
    pub job_id: u64,
    pub ticks: Vec<pb::JobEvent>,
    /// Every phase barrier, in order, for per-phase timings.
    pub phases: Vec<pb::JobEvent>,
    pub last: pb::JobEvent,
}

/// Submits a job and follows it to the end, with a progress bar. Ctrl-C
/// cancels it. A failed or cancelled job is an error carrying its message.
pub async fn follow_job(
    client: &Client,
    spec: pb::JobSpec,
    progress: bool,
) -> Result<JobOutcome, Error> {
    let total = spec.ticks;
    let mut stream = client.submit_job(spec).await?;
    let bar = if progress {
        Progress::new(total, "ticks")
    } else {
        Progress::hidden()
    };
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut ticks = Vec::new();
    let mut phases = Vec::new();
    let mut job_id = 0;
    let mut cancelling = false;
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            _ = &mut signal, if !cancelling && job_id != 0 => {
                cancelling = true;
                bar.println("cancelling…");
                let _ = client.cancel_job(job_id).await;
                continue;
            }
        };
        let ev = match msg {
            Ok(Some(ev)) => ev,
            Ok(None) if job_id == 0 => {
                return Err(Error::Cluster("the job's event stream ended early".into()));
            }
            Err(st) if job_id == 0 => return Err(Error::rpc(client.coordinator(), &st)),
            // The stream broke mid-job (the coordinator crashed, or the
            // connection did): find out how the job ended.
            Ok(None) | Err(_) => {
                bar.println(format!(
                    "job {job_id}: lost the coordinator's event stream; reconnecting to {}…",
                    client.coordinator()
                ));
                return reattach(client, job_id, ticks, phases, &bar).await;
            }
        };
        job_id = ev.job_id;
        match ev.kind() {
            pb::JobEventKind::Phase => {
                bar.set_message(format!("tick {} {}", ev.tick, ev.phase().name()));
                phases.push(ev);
            }
            pb::JobEventKind::Tick => {
                bar.inc(1);
                ticks.push(ev);
            }
            pb::JobEventKind::Aborted => bar.println(format!("job {}: {}", ev.job_id, ev.message)),
            pb::JobEventKind::Finished => {
                bar.finish_and_clear();
                return Ok(JobOutcome {
                    job_id,
                    ticks,
                    phases,
                    last: ev,
                });
            }
            pb::JobEventKind::Failed | pb::JobEventKind::Cancelled => {
                bar.abandon();
                return Err(Error::Job {
                    job_id,
                    message: ev.message,
                });
            }
            _ => {}
        }
    }
}

/// How long a client whose job stream broke waits for the coordinator.
const REATTACH_WAIT: Duration = Duration::from_secs(60);

/// Asks the coordinator, once it answers again, how job `job_id` ended. A
/// restarted coordinator has forgotten its jobs: then the job is gone, and
/// the store stays at the committed tick it reports.
async fn reattach(
    client: &Client,
    job_id: u64,
    ticks: Vec<pb::JobEvent>,
    phases: Vec<pb::JobEvent>,
    bar: &Progress,
) -> Result<JobOutcome, Error> {
    let mut deadline = Instant::now() + REATTACH_WAIT;
    let mut last_error = String::new();
    loop {
        match client.jobs().await {
            Ok(jobs) => {
                let committed = client.status().await.map(|s| s.committed_tick).ok();
                let committed = committed.map_or("unknown".to_string(), |t| t.to_string());
                match jobs.into_iter().find(|j| j.job_id == job_id) {
                    None => {
                        bar.abandon();
                        return Err(Error::Job {
                            job_id,
                            message: format!(
                                "the coordinator restarted and the job is gone with it; the store stays at committed tick {committed}"
                            ),
                        });
                    }
                    // Still running on a coordinator that kept it: wait
                    // for as long as it keeps answering.
                    Some(j) if j.outcome() == pb::JobOutcome::Running => {
                        deadline = Instant::now() + REATTACH_WAIT;
                    }
                    Some(j) if j.outcome() == pb::JobOutcome::Finished => {
                        bar.finish_and_clear();
                        let last = pb::JobEvent {
                            job_id,
                            kind: pb::JobEventKind::Finished.into(),
                            tick: j.ticks_done,
                            committed_tick: j.committed_tick,
                            message: "finished while the event stream was lost: its results were not received".into(),
                            ..Default::default()
                        };
                        return Ok(JobOutcome {
                            job_id,
                            ticks,
                            phases,
                            last,
                        });
                    }
                    Some(j) => {
                        bar.abandon();
                        return Err(Error::Job {
                            job_id,
                            message: format!(
                                "{}: {}; the store stays at committed tick {}",
                                j.outcome().name(),
                                j.message,
                                j.committed_tick
                            ),
                        });
                    }
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        if Instant::now() >= deadline {
            bar.abandon();
            return Err(Error::Job {
                job_id,
                message: format!(
                    "the coordinator did not answer within {REATTACH_WAIT:?} ({last_error}); the job's outcome is unknown"
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn aggregates_json(a: &lockstep_model::aggregate::Aggregates) -> serde_json::Value {
    json!({
        "sums": a.fixed_sums.keys().map(|k| (k.clone(), json!(a.fixed(k)))).chain(
            a.int_sums.iter().map(|(k, v)| (k.clone(), json!(v)))).collect::<serde_json::Map<_, _>>(),
        "counts": a.counts,
        "topk": a.topk.iter().map(|(k, t)| (k.clone(), json!(t.entries.iter().map(|e| json!({
            "score": e.score, "key": e.key, "label": e.label,
        })).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
    })
}

/// Prints per-tick timings and the final top-k lists.
/// A finished job as `run --json` prints it.
pub fn outcome_json(o: &JobOutcome) -> serde_json::Value {
    use lockstep_model::aggregate::Aggregates;
    let last: Aggregates = o.last.aggregates.clone().unwrap_or_default().into();
    json!({
            "job": o.job_id,
            "committed_tick": o.last.committed_tick,
            "ticks": o.ticks.iter().map(|t| {
                let a: Aggregates = t.aggregates.clone().unwrap_or_default().into();
                // The phases of the attempt that committed.
                let phases: serde_json::Map<_, _> = o.phases.iter()
                    .filter(|p| p.tick == t.tick && p.attempt == t.attempt)
                    .map(|p| (p.phase().name().to_string(), json!(p.duration_us as f64 / 1000.0)))
                    .collect();
                json!({"tick": t.tick, "attempt": t.attempt, "ms": t.duration_us as f64 / 1000.0,
                       "phases": phases, "aggregates": aggregates_json(&a)})
            }).collect::<Vec<_>>(),
            "result": aggregates_json(&last),
            "message": o.last.message,
    })
}

pub fn print_outcome(o: &JobOutcome, json_out: bool) {
    use lockstep_model::aggregate::Aggregates;
    let last: Aggregates = o.last.aggregates.clone().unwrap_or_default().into();
    if json_out {
        println!("{:#}", outcome_json(o));
        return;
    }
    println!(
        "job {}: {} ticks, committed tick {}",
        o.job_id,
        o.ticks.len(),
        o.last.committed_tick
    );
    println!("{:>6} {:>10}  aggregates", "TICK", "MS");
    for t in &o.ticks {
        let a: Aggregates = t.aggregates.clone().unwrap_or_default().into();
        let mut parts: Vec<String> = a
            .fixed_sums
            .keys()
            .map(|k| format!("{k}={:.12}", a.fixed(k)))
            .collect();
        parts.extend(a.int_sums.iter().map(|(k, v)| format!("{k}={v}")));
        println!(
            "{:>6} {:>10.1}  {}",
            t.tick,
            t.duration_us as f64 / 1000.0,
            parts.join(" ")
        );
    }
    if !o.last.message.is_empty() {
        println!("note: {}", o.last.message);
    }
    for (name, top) in &last.topk {
        println!();
        println!("{name}:");
        for (i, e) in top.entries.iter().enumerate() {
            println!("{:>4}. {:<14.9} {}", i + 1, e.score, e.label);
        }
    }
}

async fn run_command(client: &Client, args: RunArgs) -> Result<(), Error> {
    let spec = lockstep_proto::convert::spec_of(&args.workload, args.ticks, &args.params())?;
    let outcome = follow_job(client, spec, !args.json).await?;
    print_outcome(&outcome, args.json);
    Ok(())
}

/// `lockstep cancel --json`.
#[derive(serde::Serialize)]
struct Cancelled {
    job_id: u64,
    /// The cluster's committed tick when the cancel was taken.
    committed_tick: u64,
}

/// One row of `lockstep jobs --json`.
#[derive(serde::Serialize)]
struct JobRow {
    job_id: u64,
    workload: String,
    params: std::collections::BTreeMap<String, String>,
    /// running | finished | failed | cancelled
    outcome: String,
    /// Ticks the job asked for, and ticks it has committed so far.
    ticks: u64,
    ticks_done: u64,
    /// The cluster's committed tick at the job's last committed tick.
    committed_tick: u64,
    /// Zero while the job runs.
    duration_ms: u64,
    message: String,
}

impl From<pb::JobSummary> for JobRow {
    fn from(j: pb::JobSummary) -> JobRow {
        let outcome = j.outcome().name().to_string();
        let spec = j.spec.unwrap_or_default();
        let (workload, params) = lockstep_proto::convert::named_params(&spec)
            .map(|(name, p)| (name.to_string(), p.into_iter().collect()))
            .unwrap_or_else(|_| ("unknown".to_string(), Default::default()));
        JobRow {
            job_id: j.job_id,
            workload,
            params,
            outcome,
            ticks: spec.ticks,
            ticks_done: j.ticks_done,
            committed_tick: j.committed_tick,
            duration_ms: j.duration_ms,
            message: j.message,
        }
    }
}

/// Prints `value` as one line of JSON.
fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        // Only a map with non-string keys fails, and none is printed.
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

async fn jobs(client: &Client, json: bool) -> Result<(), Error> {
    let rows: Vec<JobRow> = client.jobs().await?.into_iter().map(JobRow::from).collect();
    if json {
        #[derive(serde::Serialize)]
        struct Jobs {
            jobs: Vec<JobRow>,
        }
        print_json(&Jobs { jobs: rows });
        return Ok(());
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header([
            "JOB",
            "WORKLOAD",
            "OUTCOME",
            "TICKS",
            "COMMITTED",
            "MS",
            "MESSAGE",
        ]);
    for r in rows {
        let ms = if r.outcome == "running" {
            "-".to_string()
        } else {
            r.duration_ms.to_string()
        };
        table.add_row([
            r.job_id.to_string(),
            r.workload,
            r.outcome,
            format!("{}/{}", r.ticks_done, r.ticks),
            r.committed_tick.to_string(),
            ms,
            r.message,
        ]);
    }
    for col in [0, 3, 4, 5] {
        if let Some(c) = table.column_mut(col) {
            c.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    println!("{table}");
    Ok(())
}

async fn demo(args: DemoArgs, auth: &Auth) -> Result<(), Error> {
    let exe = std::env::current_exe().map_err(|e| Error::Cluster(e.to_string()))?;
    if !args.json {
        println!(
            "starting {} shards in {}",
            args.shards,
            args.data_dir.display()
        );
    }
    let cluster = LocalCluster::start(LocalSpec {
        exe,
        shards: args.shards,
        data_dir: args.data_dir.clone(),
        port: 0,
        ready_timeout: Duration::from_secs(120),
        shard_args: token_flags(auth),
        coordinator_args: token_flags(auth),
        token: auth.token()?,
        certs: None,
    })
    .await?;
    let result = demo_body(&cluster, &args).await;
    cluster.shutdown().await;
    result?;
    if !args.json {
        println!();
        println!("data kept in {}", args.data_dir.display());
    }
    Ok(())
}

async fn demo_body(cluster: &LocalCluster, args: &DemoArgs) -> Result<(), Error> {
    let client = cluster.connect().await?;
    let loaded = load_atoms(
        &client,
        LoadArgs {
            target: crate::cli::Target::default(),
            file: None,
            generate: Some(args.atoms),
            seed: 42,
            batch: 2_000,
            concurrency: 4,
            json: false,
            strict: false,
            strict_types: false,
        },
    )
    .await?;
    if !args.json {
        println!(
            "loaded {} atoms in {:.2}s: {} atoms/s",
            loaded.atoms,
            loaded.seconds,
            crate::human::count(loaded.atoms_per_s)
        );
        println!("running attention for {} ticks", args.ticks);
    }
    let spec = lockstep_proto::convert::spec_of(
        "attention",
        args.ticks,
        &[("top".to_string(), "10".to_string())]
            .into_iter()
            .collect(),
    )?;
    let outcome = follow_job(&client, spec, true).await?;
    let ms: Vec<f64> = outcome
        .ticks
        .iter()
        .map(|t| t.duration_us as f64 / 1000.0)
        .collect();
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied();
    if args.json {
        print_json(&json!({
            "data_dir": args.data_dir.display().to_string(),
            "shards": args.shards,
            "load": loaded,
            "job": outcome_json(&outcome),
            "median_tick_ms": median,
        }));
        return Ok(());
    }
    print_outcome(&outcome, false);
    if let Some(median) = median {
        println!();
        println!("median tick {median:.1} ms over {} ticks", ms.len());
    }
    Ok(())
}

/// One gRPC health check of the server at `addr` (service ""), with a
/// deadline: Ok when it answers SERVING.
pub async fn health(
    addr: &str,
    timeout: Duration,
    tls: &Option<lockstep_proto::tls::Tls>,
    json: bool,
) -> Result<(), Error> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let unhealthy = |reason: String| Error::Unhealthy {
        addr: addr.to_string(),
        reason,
    };
    let security = lockstep_proto::tls::Security {
        token: lockstep_proto::auth::Token::none(),
        tls: tls.clone(),
    };
    let channel = security
        .channel(
            addr,
            &lockstep_proto::channel::ChannelOptions::client(timeout).with_request_timeout(timeout),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
    let req = HealthCheckRequest {
        service: String::new(),
    };
    let resp = tokio::time::timeout(timeout, HealthClient::new(channel).check(req))
        .await
        .map_err(|_| unhealthy(format!("no answer within {timeout:?}")))?
        .map_err(|st| {
            let reason = crate::client::causes(&st);
            let hint = crate::client::tls_hint(&reason, tls.is_some());
            unhealthy(format!("{reason}{hint}"))
        })?;
    let status = resp.into_inner().status;
    if status == ServingStatus::Serving as i32 {
        if json {
            print_json(&serde_json::json!({"address": addr, "serving": true}));
        } else {
            println!("{addr}: serving");
        }
        Ok(())
    } else {
        Err(unhealthy(format!(
            "status {}",
            ServingStatus::try_from(status)
                .map(|s| s.as_str_name())
                .unwrap_or("unknown")
        )))
    }
}
