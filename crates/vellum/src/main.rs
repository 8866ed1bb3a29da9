//! The `vellum` command: serve, drive a running issuer's management API, or a benchmark
//! against a running server.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use vellum::app::App;
use vellum::bench::{self, Bench};
use vellum::cli::{self, Management, Remote};
use vellum::config::Config;

#[derive(Parser)]
#[command(name = "vellum", version, about = "OID4VCI 1.0 credential issuer")]
struct Cli {
    #[command(flatten)]
    remote: Remote,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the issuer (embedded SQLite and the demo profile unless configured otherwise).
    Serve {
        /// A TOML file layered over the built-in defaults (also: VELLUM_CONFIG).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load a running issuer and print throughput and latency.
    #[command(subcommand)]
    Bench(Bench),
    #[command(flatten)]
    Management(Management),
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("VELLUM_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // The PostgreSQL driver logs each statement's parameters at debug level, webhook bearer
        // tokens among them: never, whatever VELLUM_LOG asks for.
        .add_directive(
            "tokio_postgres::query=info"
                .parse()
                .expect("a valid directive"),
        );
    tracing_subscriber::fmt().with_env_filter(filter).init();
    // TLS (webhooks, bench against https) on ring; App::build installs it too, for tests.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parsed = Cli::parse();
    let result = match parsed.command {
        Command::Serve { config } => serve(config).await,
        Command::Bench(options) => bench::run(options).await,
        Command::Management(command) => return cli::run(parsed.remote, command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line with the whole cause chain: the message names the offending key.
            eprintln!("vellum: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let app = App::build(config).await.context("cannot start")?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    app.run_until_stopped(shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
