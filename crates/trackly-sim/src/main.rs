//! `trackly-sim`: runs the Trackly API simulator for local development of trackly-bot.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;
use trackly_sim::{Seed, Simulator};

/// Simulator of the Trackly SMS API (account, usage, balance, lists and events) with scriptable
/// faults under /_control.
#[derive(Debug, Parser)]
#[command(name = "trackly-sim", version)]
struct Args {
    /// TOML seed file with the accounts and keys to serve; the built-in demo seed when omitted.
    #[arg(long, env = "TRACKLY_SIM_SEED", value_name = "PATH")]
    seed: Option<PathBuf>,

    /// Address and port to listen on.
    #[arg(
        long,
        env = "TRACKLY_SIM_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8081"
    )]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr, with colours only on a terminal, so a redirected log has no escape codes.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let seed = load_seed(args.seed.as_ref())?;
    if !args.listen.ip().is_loopback() {
        warn!(listen = %args.listen, "listening on a non-loopback address; the simulator has no access control");
    }

    let sim = Simulator::start(seed, args.listen).await?;
    info!(base_url = %sim.base_url(), "API base URL; control API under /_control; press Ctrl-C to stop");

    wait_for_stop_signal().await?;
    info!("stop signal received; shutting down");
    sim.shutdown().await;
    Ok(())
}

fn load_seed(path: Option<&PathBuf>) -> anyhow::Result<Seed> {
    let Some(path) = path else {
        info!("using the built-in demo seed (seed.example.toml)");
        return Ok(Seed::demo());
    };

    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the seed file {}", path.display()))?;
    let seed = Seed::from_toml_str(&text)
        .with_context(|| format!("invalid seed file {}", path.display()))?;
    info!(path = %path.display(), accounts = seed.accounts.len(), "seed loaded");
    Ok(seed)
}

/// Waits for Ctrl-C, or on Unix also SIGTERM, which container runtimes send to stop a process.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};

        let mut terminate =
            signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("failed to listen for Ctrl-C"),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("failed to listen for Ctrl-C")
    }
}
