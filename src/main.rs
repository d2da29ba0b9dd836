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
    // Every command that prints takes `--json`; its failure, a usage error
    // included, is then one JSON object on stdout.
    let json = std::env::args_os().skip(1).any(|a| a == "--json");
    let cli = match lockstep::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if json && e.use_stderr() => {
            let detail = e.to_string();
            let message = detail
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            println!(
                "{}",
                serde_json::json!({"error": {"message": message, "detail": detail.trim(), "retryable": false}})
            );
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
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
        // Our errors' messages already name their causes, so only the
        // outermost is printed: `{:#}` would repeat each cause.
        let retryable = e
            .downcast_ref::<lockstep::Error>()
            .is_some_and(lockstep::Error::retryable);
        if json {
            println!(
                "{}",
                serde_json::json!({"error": {"message": e.to_string(), "retryable": retryable}})
            );
        } else {
            eprintln!("error: {e}");
        }
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
