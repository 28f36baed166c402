//! `callwarden`: `serve` runs the service, `migrate` applies database migrations and exits,
//! `verify` checks the incident chains, `token` mints a development token.
//! Exit codes: 64 for a configuration error, 69 when a store is unreachable at start-up.

use callwarden_domain::rule::OperatorId;
use callwarden_server::{
    auth::{self, Role},
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
    /// Print a development token signed with `auth.hs256_secret` (operators, supervisors,
    /// admins; switches use API keys).
    Token {
        /// operator, supervisor or admin.
        #[arg(long)]
        role: String,
        /// The pseudonym the token speaks for.
        #[arg(long)]
        subject: String,
        /// How long it is valid.
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: u32,
    },
}

const EX_USAGE: u8 = 64;
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
    if let Some(Command::Token {
        role,
        subject,
        ttl_seconds,
    }) = &cli.command
    {
        return token(&config, role, subject, *ttl_seconds);
    }
    telemetry::init_tracing(&config);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Migrate => startup::prepare_database(&config)
                .await
                .map(drop)
                .map_err(anyhow::Error::from),
            Command::Verify => verify(&config).await,
            Command::Token { .. } => unreachable!("handled before the runtime starts"),
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
            match e.downcast_ref::<startup::StartupError>() {
                // Found only once files are read (TLS certificates, public keys).
                Some(startup::StartupError::Config(_)) => ExitCode::from(EX_CONFIG),
                Some(_) => ExitCode::from(EX_UNAVAILABLE),
                None => ExitCode::FAILURE,
            }
        }
    }
}

fn token(config: &Config, role: &str, subject: &str, ttl_seconds: u32) -> ExitCode {
    let role = match role.parse::<Role>() {
        Ok(Role::Switch) => {
            eprintln!(
                "callwarden: switches use API keys (auth.switch_keys) or client certificates, not tokens"
            );
            return ExitCode::from(EX_USAGE);
        }
        Ok(role) => role,
        Err(e) => {
            eprintln!("callwarden: --role: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Err(e) = OperatorId::parse(subject) {
        eprintln!("callwarden: --subject: {e}");
        return ExitCode::from(EX_USAGE);
    }
    let Some(secret) = &config.auth.hs256_secret else {
        eprintln!(
            "callwarden: auth.hs256_secret is not set; tokens come from your identity provider"
        );
        return ExitCode::from(EX_CONFIG);
    };
    let now = chrono::Utc::now().timestamp();
    println!(
        "{}",
        auth::mint(
            secret,
            role,
            subject,
            &config.auth.audience,
            now,
            ttl_seconds.into()
        )
    );
    ExitCode::SUCCESS
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
