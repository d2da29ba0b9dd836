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
        // Unix tools do, rather than panic on a closed stdout. SIGPIPE
        // itself stays ignored (Rust's default): with it at SIG_DFL, a
        // server closing a socket during a vectored write (`writev` sends
        // without MSG_NOSIGNAL) killed the client silently, exit 141 and
        // no message, as a plaintext client at a TLS cluster found.
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
                std::process::exit(141);
            }
            default_hook(info);
        }));
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
