//! The `lockstep` binary: parse flags, set up logging, run the command, and
//! print any failure as one line.

use clap::Parser;
use tracing_subscriber::EnvFilter;

// Under glibc's malloc, over half of a bulk load's client CPU went to
// consolidating free lists (BENCHMARKS.md §3); mimalloc keeps small frees
// cheap.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = lockstep::cli::Cli::parse();
    let server = matches!(
        cli.command,
        lockstep::cli::Command::Coordinator(_)
            | lockstep::cli::Command::Shard(_)
            | lockstep::cli::Command::Up(_)
    );
    if !server {
        // A client command piped into `head` should end quietly, as other
        // Unix tools do, rather than panic on a closed stdout. Servers keep
        // Rust's default of ignoring SIGPIPE.
        // SAFETY: called before any thread starts; SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let default = if server { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, not in container or CI logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = real_main(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: lockstep::cli::Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(lockstep::commands::run(cli))?;
    Ok(())
}
