//! The composition root: [`Application::build`] connects the stores, applies migrations, binds
//! the listeners and wires the services; [`Application::run_until_stopped`] serves until the
//! shutdown future resolves, then drains within the configured grace.

use crate::{
    auth::{AuthLayer, Authenticator, StreamSlots},
    clock::{Clock, SystemClock},
    config::{Config, ConfigError, RetentionConfig},
    desk::{self, Desk},
    feed::IncidentFeed,
    grpc::{
        blocklist::BlockListService, console::ConsoleService, review::ReviewService,
        screening::ScreeningService,
    },
    health::{PostgresHealth, periodically},
    http::{self, HttpState},
    hub::CommandHub,
    i18n::Catalogues,
    memo::Memo,
    reports::Reports,
    telemetry,
    tls::{Tls, TlsListener},
};
use callwarden_domain::{incident::Severity, review::IncidentStatus};
use callwarden_domain::{line::LineDirectory, policy::Policy, review::Deadlines, rule::Effect};
use callwarden_proto::v1::{
    self as pb, block_list_server::BlockListServer, console_server::ConsoleServer,
    review_server::ReviewServer, screening_server::ScreeningServer,
};
use callwarden_storage::{
    IndexConfig, Keyring, RedisConn, RuleBook, RuleIndex, StorageError,
    incidents::{EventDraft, IncidentStore},
    live::LiveState,
    postgres,
    preferences::PreferenceStore,
    review::{Plan, RowChange},
};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use std::{
    future::{Future, IntoFuture},
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{service::interceptor::InterceptedService, transport::server::TcpIncoming};

/// Replies are bounded by what the service builds (pages of at most 1000 rules or 200
/// incidents); this only guards against a bug producing an unbounded one.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// How often the `callwarden_rules` and `callwarden_commands_pending` gauges are recounted.
const GAUGE_INTERVAL: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot reach Postgres at {url}: {message} (set CALLWARDEN_DATABASE_URL)")]
    Postgres { url: String, message: String },
    #[error("cannot apply migrations to {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("cannot reach Redis at {url}: {source} (set CALLWARDEN_REDIS_URL)")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
    #[error("cannot open the report spool {dir}: {source} (set CALLWARDEN_SPOOL__DIR)")]
    Spool {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source} (set {variable})")]
    Bind {
        addr: SocketAddr,
        variable: &'static str,
        source: std::io::Error,
    },
}

/// Shows a connection URL without its password.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => match credentials.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Connects to Postgres (creating the database if needed) and applies the migrations: what
/// `callwarden migrate` does alone, and `serve` does first.
pub async fn prepare_database(config: &Config) -> Result<PgPool, StartupError> {
    let url = redact(&config.database_url);
    let pg_config = postgres::PgConfig {
        url: &config.database_url,
        max_connections: config.database_max_connections,
        acquire_timeout: config.database_acquire_timeout(),
    };
    let pool = tokio::time::timeout(Duration::from_secs(15), postgres::connect(&pg_config))
        .await
        .map_err(|_| StartupError::Postgres {
            url: url.clone(),
            message: "timed out".into(),
        })?
        .map_err(|e| StartupError::Postgres {
            url: url.clone(),
            message: e.to_string(),
        })?;
    postgres::migrate(&pool)
        .await
        .map_err(|source| StartupError::Migrate { url, source })?;
    Ok(pool)
}

pub struct Application {
    config: Config,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    pg: PgPool,
    redis: RedisConn,
    rules: RuleBook,
    live: LiveState,
    incidents: IncidentStore,
    policy: Policy,
    deadlines: Deadlines,
    /// Reports recorded, or spooled while Postgres is away, and the spool's drainer.
    reports: Arc<Reports>,
    postgres_health: Arc<PostgresHealth>,
    auth: Arc<Authenticator>,
    /// None when the configuration asks for plaintext (local development).
    tls: Option<Tls>,
    lines: Arc<LineDirectory>,
    clock: Arc<dyn Clock>,
    metrics: PrometheusHandle,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let lines = Arc::new(config.line_directory()?);
        let tls = config.tls.load()?;
        // Built once: every Redis key derived from a number is keyed by it, on every replica alike.
        let keyring = Keyring::new(config.privacy.secret()?.as_bytes());
        // Redis first: a start-up that fails on it then leaves no database behind.
        let redis = RedisConn::connect(&config.redis_target(), config.redis_timeout())
            .await
            .map_err(|source| StartupError::Redis {
                url: redact(&config.redis_url),
                source,
            })?;
        let pg = prepare_database(&config).await?;
        let index = RuleIndex::new(
            redis.clone(),
            IndexConfig {
                key_prefix: config.redis_key_prefix.clone(),
            },
            keyring.clone(),
        );
        let rules = RuleBook::new(pg.clone(), index, config.recent_results);
        let live = LiveState::new(
            redis.clone(),
            &config.redis_key_prefix,
            config.live_call_ttl(),
            keyring,
        );
        let incidents = IncidentStore::new(pg.clone(), rules.clone());
        let policy = config.policy.policy()?;
        let deadlines = config.review.deadlines()?;
        let auth = Arc::new(config.auth.authenticator()?);
        let spool =
            callwarden_storage::spool::Spool::open(&config.spool.dir).map_err(|source| {
                StartupError::Spool {
                    dir: config.spool.dir.clone(),
                    source,
                }
            })?;
        let postgres_health = Arc::new(PostgresHealth::default());
        let reports = Arc::new(Reports {
            live: live.clone(),
            incidents: incidents.clone(),
            policy: policy.clone(),
            deadlines,
            spool,
            postgres: postgres_health.clone(),
            write_timeout: config.spool.write_timeout(),
        });
        let bind = |addr: SocketAddr, variable| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartupError::Bind {
                    addr,
                    variable,
                    source,
                })
        };
        let grpc_listener = bind(config.grpc_addr, "CALLWARDEN_GRPC_ADDR").await?;
        let http_listener = bind(config.http_addr, "CALLWARDEN_HTTP_ADDR").await?;
        Ok(Self {
            config,
            grpc_listener,
            http_listener,
            pg,
            redis,
            rules,
            live,
            incidents,
            policy,
            deadlines,
            reports,
            postgres_health,
            auth,
            tls,
            lines,
            clock,
            metrics: telemetry::metrics_handle(),
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener.local_addr().expect("bound listener")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight calls finish and
    /// returns; after the configured grace it returns anyway.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let token = CancellationToken::new();
        // When shutdown was asked for: the grace period counts from there.
        let stop_requested = Arc::new(std::sync::OnceLock::new());
        tokio::spawn({
            let (token, stop_requested) = (token.clone(), stop_requested.clone());
            async move {
                shutdown.await;
                tracing::info!("shutting down: draining in-flight calls");
                let _ = stop_requested.set(tokio::time::Instant::now());
                token.cancel();
            }
        });
        tracing::info!(
            grpc = %self.grpc_addr(),
            http = %self.http_addr(),
            tls = self.tls.is_some(),
            "callwarden serving"
        );
        if self.tls.is_none() {
            tracing::warn!(
                "serving without TLS (tls.plaintext = true): for local development only"
            );
        }

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<ScreeningServer<ScreeningService>>()
            .await;
        health
            .set_serving::<BlockListServer<BlockListService>>()
            .await;
        health.set_serving::<ConsoleServer<ConsoleService>>().await;
        health.set_serving::<ReviewServer<ReviewService>>().await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let hub = Arc::new(CommandHub::default());
        let feed = tokio::spawn(hub.clone().run(self.live.clone(), token.clone()));
        let changes = IncidentFeed::default();
        let changes_task = tokio::spawn(changes.clone().run(self.pg.clone(), token.clone()));
        let max_message = self.config.max_message_bytes;
        let streams = StreamSlots::new(self.config.auth.max_streams_per_principal);
        macro_rules! limit {
            ($server:expr) => {
                $server
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(MAX_REPLY_BYTES)
            };
        }
        // One instance of each service answers gRPC and the review desk alike.
        let catalogues = Catalogues::load();
        let review = Arc::new(ReviewService {
            incidents: self.incidents.clone(),
            lines: self.lines.clone(),
            deadlines: self.deadlines,
            clock: self.clock.clone(),
            feed: changes,
            shutdown: token.clone(),
            streams: streams.clone(),
            catalogues: catalogues.clone(),
        });
        let blocklist = Arc::new(BlockListService {
            rules: self.rules.clone(),
            lines: self.lines.clone(),
            clock: self.clock.clone(),
            max_import: self.config.max_import_rules.max(1),
        });
        let desk = Arc::new(Desk::new(
            review.clone(),
            blocklist.clone(),
            self.auth.clone(),
            self.postgres_health.clone(),
            PreferenceStore::new(self.pg.clone()),
            catalogues,
            self.clock.clone(),
            self.config.privacy.secret()?,
            self.tls.is_some(),
        ));
        let mut grpc = tonic::transport::Server::builder();
        if let Some(tls) = &self.tls {
            grpc = grpc.tls_config(tls.grpc.clone())?;
        }
        let grpc = grpc
            // Bounds a handler (for streams: until the stream is handed back), so a stuck
            // store cannot hold a request forever; clients' own grpc-timeout is honoured too.
            .timeout(self.config.rpc_timeout())
            .layer(AuthLayer::new(self.auth.clone()))
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(limit!(ScreeningServer::new(ScreeningService {
                rules: self.rules.clone(),
                live: self.live.clone(),
                incidents: self.incidents.clone(),
                hub: hub.clone(),
                lines: self.lines.clone(),
                clock: self.clock.clone(),
                recent_window: self.policy.recent_window,
                shutdown: token.clone(),
                streams: streams.clone(),
                lines_seen: Memo::new(LINES_REMEMBERED),
                budget: self.config.check_budget(),
                postgres: self.postgres_health.clone(),
            })))
            .add_service(limit!(ConsoleServer::new(ConsoleService {
                reports: self.reports.clone(),
                clock: self.clock.clone(),
                terminate_announcement: self.config.terminate_announcement.clone(),
                warning_announcement: self.config.warning_announcement.clone(),
            })))
            .add_service(InterceptedService::new(
                limit!(ReviewServer::from_arc(review.clone())),
                needs_postgres(self.postgres_health.clone(), "supervisors' review"),
            ))
            .add_service(InterceptedService::new(
                limit!(BlockListServer::from_arc(blocklist.clone())),
                needs_postgres(self.postgres_health.clone(), "the block list"),
            ))
            .serve_with_incoming_shutdown(
                // Without NODELAY small replies wait on delayed ACKs: a 40 ms p99.
                TcpIncoming::from(self.grpc_listener).with_nodelay(Some(true)),
                token.clone().cancelled_owned(),
            );
        let router = http::router(HttpState {
            postgres: self.postgres_health.clone(),
            redis: self.redis.clone(),
            metrics: self.metrics,
            shutdown: token.clone(),
        })
        .merge(desk::router(desk));
        let http: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
            match &self.tls {
                Some(tls) => Box::pin(
                    axum::serve(
                        TlsListener::new(self.http_listener, tls.http.clone())?,
                        router,
                    )
                    .with_graceful_shutdown(token.clone().cancelled_owned())
                    .into_future(),
                ),
                None => Box::pin(
                    axum::serve(self.http_listener, router)
                        .with_graceful_shutdown(token.clone().cancelled_owned())
                        .into_future(),
                ),
            };
        let maintenance = tokio::spawn(maintain(
            Maintained {
                rules: self.rules.clone(),
                live: self.live.clone(),
                incidents: self.incidents.clone(),
                recent_window: self.policy.recent_window,
            },
            self.clock.clone(),
            self.config.index_check_interval(),
            token.clone(),
        ));
        let probe = tokio::spawn({
            let (health, pg, token) =
                (self.postgres_health.clone(), self.pg.clone(), token.clone());
            async move { health.watch(pg, POSTGRES_PROBE_INTERVAL, token).await }
        });
        let drainer = tokio::spawn(drain_spool(
            self.reports.clone(),
            self.config.spool.drain_interval(),
            token.clone(),
        ));
        let rule_changes = tokio::spawn({
            let rules = self.rules.clone();
            let token = token.clone();
            async move { rules.follow_changes(token.cancelled()).await }
        });
        let escalation = tokio::spawn(escalate_overdue(
            self.incidents.clone(),
            self.clock.clone(),
            self.config.review.escalation_check_interval(),
            token.clone(),
        ));
        let retention = tokio::spawn(retain(
            self.incidents.clone(),
            self.clock.clone(),
            self.config.retention.clone(),
            token.clone(),
        ));

        let grace = self.config.shutdown_grace();
        let serve = async {
            let (grpc, http) = tokio::join!(grpc, http);
            grpc?;
            http?;
            anyhow::Ok(())
        };
        // The grace runs from the shutdown request (or, after a failure, from now).
        let give_up_at = || {
            stop_requested
                .get()
                .copied()
                .unwrap_or_else(tokio::time::Instant::now)
                + grace
        };
        tokio::select! {
            result = serve => result?,
            () = async { token.cancelled().await; tokio::time::sleep_until(give_up_at()).await } => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "calls still in flight after the grace period; exiting");
            }
        }
        token.cancel();
        drainer.await?;
        // Reports taken while in-flight calls finished are recorded now if Postgres can take
        // them, within what is left of the grace; any left stay spooled for the next start.
        match tokio::time::timeout_at(give_up_at(), self.reports.drain()).await {
            Ok(Ok(pass)) if pass.left > 0 => tracing::warn!(
                left = pass.left,
                dir = %self.reports.spool.dir().display(),
                "reports stay spooled until the next start"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not read the report spool"),
            Err(_) => {
                tracing::warn!("the spool could not be flushed within the grace period; it is kept")
            }
        }
        probe.await?;
        maintenance.await?;
        rule_changes.await?;
        escalation.await?;
        retention.await?;
        feed.await?;
        changes_task.await?;
        self.pg.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// What the maintenance loop keeps in shape.
struct Maintained {
    rules: RuleBook,
    live: LiveState,
    incidents: IncidentStore,
    recent_window: chrono::Duration,
}

impl Maintained {
    /// Restores `recent_flags` from the record when Redis lost them.
    async fn flags(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), callwarden_storage::StorageError> {
        if self.live.flags_ready().await? {
            return Ok(());
        }
        let dropped = self.live.drop_clear_flags().await?;
        if dropped > 0 {
            tracing::info!(
                keys = dropped,
                "dropped recent incident keys named in clear"
            );
        }
        let recent = self
            .incidents
            .recent_by_caller(now - self.recent_window)
            .await?;
        self.live.write_flags(&recent, self.recent_window).await?;
        self.live.mark_flags_ready().await?;
        tracing::info!(
            callers = recent.len(),
            "recent incident counts restored from Postgres"
        );
        Ok(())
    }

    async fn gauges(&self, now: chrono::DateTime<chrono::Utc>) {
        match self.rules.count_active(now).await {
            Ok(counts) => {
                for effect in [Effect::Block, Effect::Allow] {
                    let n = counts
                        .iter()
                        .find(|(e, _)| *e == effect)
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!("callwarden_rules", "effect" => effect.as_str()).set(n as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not count rules"),
        }
        match self.incidents.count_overdue(now).await {
            Ok(counts) => {
                for severity in Severity::ALL {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == severity.as_str())
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!("callwarden_incidents_overdue", "severity" => severity.as_str())
                        .set(n as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not count overdue incidents"),
        }
        match self.incidents.count_active().await {
            Ok(counts) => {
                for status in IncidentStatus::ACTIVE {
                    let n = counts
                        .iter()
                        .find(|(s, _)| s == status.as_str())
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!("callwarden_incidents_active", "status" => status.as_str())
                        .set(n as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not count incidents under review"),
        }
        match self.live.pending_count().await {
            Ok(n) => metrics::gauge!("callwarden_commands_pending").set(n as f64),
            Err(e) => tracing::warn!(error = %e, "could not count pending commands"),
        }
    }
}

/// Keeps the Redis index and the recent-incident counts present (rebuilding them when Redis
/// came back empty) and the gauges current, until shutdown.
async fn maintain(
    state: Maintained,
    clock: Arc<dyn Clock>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut index_tick = tokio::time::interval(every);
    let mut gauge_tick = tokio::time::interval(GAUGE_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = index_tick.tick() => {
                let now = clock.now();
                if let Err(e) = state.rules.maintain(now).await {
                    metrics::counter!("callwarden_redis_errors_total", "op" => "maintain").increment(1);
                    tracing::warn!(error = %e, "index maintenance failed; retrying");
                }
                if let Err(e) = state.flags(now).await {
                    tracing::warn!(error = %e, "could not restore recent incident counts; retrying");
                }
            }
            _ = gauge_tick.tick() => state.gauges(clock.now()).await,
        }
    }
}

/// Escalates each OPEN critical incident past its deadline, once (the store re-checks under the
/// incident's lock, so replicas racing for the same incident escalate it once), until shutdown.
async fn escalate_overdue(
    incidents: IncidentStore,
    clock: Arc<dyn Clock>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = clock.now();
        let due = match incidents.due_for_escalation(now, 100).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for overdue critical incidents");
                continue;
            }
        };
        for id in due {
            let escalated = incidents
                .change(id, now, |current| {
                    let due = current.status == IncidentStatus::Open
                        && current.severity == Severity::Critical
                        && current.deadline < now
                        && current.deadline_escalated_at.is_none();
                    if !due {
                        return Err(StorageError::Refused("no longer due".into()));
                    }
                    Ok(Plan {
                        transition: None,
                        row: RowChange::Escalated,
                        events: vec![EventDraft::system(
                            "deadline_escalated",
                            serde_json::json!({
                                "deadline": current.deadline.to_rfc3339(),
                                "severity": current.severity.as_str(),
                                "overdue_seconds": (now - current.deadline).num_seconds(),
                            }),
                        )],
                        block: None,
                    })
                })
                .await;
            match escalated {
                Ok(_) => {
                    metrics::counter!("callwarden_incident_escalations_total").increment(1);
                    tracing::warn!(incident_id = %id, "unacknowledged critical incident past its deadline escalated");
                }
                Err(StorageError::Refused(_)) => {}
                Err(e) => tracing::warn!(error = %e, incident_id = %id, "could not escalate"),
            }
        }
    }
}

/// Offers spooled reports to Postgres every `every` while any wait, until shutdown (the last
/// flush is the shutdown's own).
async fn drain_spool(reports: Arc<Reports>, every: Duration, shutdown: CancellationToken) {
    periodically(every, &shutdown, || async {
        if !reports.postgres.is_up() || reports.spool.is_empty().unwrap_or(false) {
            return;
        }
        match reports.drain().await {
            Ok(pass) if pass.recorded > 0 => tracing::info!(
                recorded = pass.recorded,
                left = pass.left,
                "spooled reports recorded"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "could not read the report spool"),
        }
    })
    .await;
}

/// Answers UNAVAILABLE at once, naming `what`, while Postgres is known to be away: everything
/// `what` does reads or writes the record, and waiting out a connection timeout helps nobody.
fn needs_postgres(
    health: Arc<PostgresHealth>,
    what: &'static str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |request| {
        if health.is_up() {
            Ok(request)
        } else {
            Err(crate::health::postgres_unavailable(what))
        }
    }
}

/// How often each replica checks that Postgres answers.
const POSTGRES_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Distinct lines (as switches write them) each replica keeps parsed.
const LINES_REMEMBERED: usize = 4096;

/// Between two retention batches.
const RETENTION_PAUSE: Duration = Duration::from_millis(200);

/// Removes callers' numbers and notes from incidents closed longer than the retention period
/// (unless on legal hold), a batch per transaction, until none are due; then waits for the
/// next check. Until shutdown.
async fn retain(
    incidents: IncidentStore,
    clock: Arc<dyn Clock>,
    config: RetentionConfig,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.check_interval());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            let now = clock.now();
            let pass = incidents
                .apply_retention(
                    now - config.period(),
                    now - config.audit_log_period(),
                    now,
                    config.batch_size.into(),
                )
                .await;
            match pass {
                Ok(p) if p.incidents == 0 && p.calls == 0 && p.reads == 0 => break,
                Ok(p) => tracing::info!(
                    incidents = p.incidents,
                    events = p.events,
                    events_kept_whole = p.kept_whole,
                    calls = p.calls,
                    reads = p.reads,
                    "retention removed callers' numbers and notes, and old audit rows"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention pass failed; retrying at the next check");
                    break;
                }
            }
            // A backlog (a first start on years of history) is worked off in batches with room
            // between them, so it does not crowd out the requests being served.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETENTION_PAUSE) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_a_log_line() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/cw"),
            "postgres://app:***@db:5432/cw"
        );
        assert_eq!(
            redact("redis://:s3cret@cache:6379"),
            "redis://:***@cache:6379"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/cw"),
            "postgres://postgres@127.0.0.1/cw"
        );
    }
}
