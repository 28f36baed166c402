//! `callwarden`: `serve` runs the service, `migrate` applies database migrations and exits.
//! Exit codes: 64 for a configuration error, 69 when a store is unreachable at start-up.

use callwarden_server::{
    config::Config,
    startup::{self, Application},
    telemetry,
};
use clap::{Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};

/// Each check allocates many small, short-lived buffers (HTTP/2 frames, protobuf, Redis replies,
/// number parsing); mimalloc serves them with less contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "callwarden", version, about = "Call-center moderation backend")]
struct Cli {
    /// TOML configuration file; CALLWARDEN_* variables override its keys.
    #[arg(long, global = true, env = "CALLWARDEN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Create the database if missing, apply migrations, and exit.
    Migrate,
    /// Walk every incident's hash-chained event log; name the first broken link (exit 1).
    Verify,
}

const EX_CONFIG: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("callwarden: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    telemetry::init_tracing(&config);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Migrate => startup::prepare_database(&config)
                .await
                .map(drop)
                .map_err(anyhow::Error::from),
            Command::Verify => verify(&config).await,
            Command::Serve => match Application::build(config).await {
                Ok(app) => app.run_until_stopped(shutdown_signal()).await,
                Err(e) => Err(e.into()),
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callwarden: {e}");
            if e.downcast_ref::<startup::StartupError>().is_some() {
                ExitCode::from(EX_UNAVAILABLE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn verify(config: &Config) -> anyhow::Result<()> {
    let pg = startup::prepare_database(config).await?;
    match callwarden_storage::incidents::verify(&pg).await? {
        Ok(report) => {
            println!(
                "ok: {} incidents, {} events, every link holds",
                report.incidents, report.events
            );
            Ok(())
        }
        Err(broken) => anyhow::bail!("broken chain: {broken}"),
    }
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.expect("a SIGINT handler");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
