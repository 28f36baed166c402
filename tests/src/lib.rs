//! Test support for the end-to-end suite: [`spawn_app`] runs the real service on port 0 against
//! the real Postgres (a fresh database per test) and Redis (a fresh key prefix per test), and
//! [`RedisServer`] starts a private Redis for tests that must stop or restart it.
//! [`browser::Browser`] drives a headless chromium for the review desk's tests.

pub mod browser;

use callwarden_proto::v1::{
    AddRuleRequest, BlockChoice, CallCommand, CallEventKind, Category, CheckActiveCallRequest,
    CheckActiveCallResponse, CheckCallRequest, CheckCallResponse, Effect, EndAndFlagRequest,
    EndAndFlagResponse, FlagCallRequest, GetRuleRequest, RemoveRuleRequest, ReportCallEventRequest,
    Rule, Scope, ScopeKind, Severity, WatchCommandsRequest, block_list_client::BlockListClient,
    console_client::ConsoleClient, review_client::ReviewClient, screening_client::ScreeningClient,
};
use callwarden_server::{
    clock::ManualClock,
    config::{Config, LineConfig},
    startup::Application,
};
use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};
use tokio::sync::oneshot;
use tonic::{
    metadata::{AsciiMetadataValue, MetadataKey},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// The HS256 secret of the test configuration: tests mint their own tokens with it.
pub const TEST_JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";
/// A switch API key the test configuration knows, for switch `SWITCH_WITH_KEY`.
pub const TEST_SWITCH_KEY: &str = "test-switch-key-sw-keyed";
pub const SWITCH_WITH_KEY: &str = "sw-keyed";
/// Who the default clients of a [`TestApp`] are: an admin, who may act for anyone named.
pub const TEST_ADMIN: &str = "test-admin";

/// Adds one credential header to every request of a client.
#[derive(Clone)]
pub struct Credentials {
    header: MetadataKey<tonic::metadata::Ascii>,
    value: Option<AsciiMetadataValue>,
}

impl Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.value {
            request
                .metadata_mut()
                .insert(self.header.clone(), value.clone());
        }
        Ok(request)
    }
}

/// A connection that presents credentials: what every client of the tests uses.
pub type Conn = InterceptedService<Channel, Credentials>;

/// A bearer token for `role` and `subject`, signed with the test secret, valid for an hour.
pub fn token(role: callwarden_server::auth::Role, subject: &str) -> String {
    token_with(role, subject, "callwarden", 0, 3600)
}

/// A token issued `age_seconds` ago, valid for `ttl_seconds`, for `audience`.
pub fn token_with(
    role: callwarden_server::auth::Role,
    subject: &str,
    audience: &str,
    age_seconds: i64,
    ttl_seconds: i64,
) -> String {
    let now = chrono::Utc::now().timestamp() - age_seconds;
    callwarden_server::auth::mint(TEST_JWT_SECRET, role, subject, audience, now, ttl_seconds)
}

/// `channel` presenting `authorization: Bearer <token>`.
pub fn with_token(channel: &Channel, token: &str) -> Conn {
    credentials(channel, "authorization", Some(&format!("Bearer {token}")))
}

/// `channel` presenting one header (or none).
pub fn credentials(channel: &Channel, header: &'static str, value: Option<&str>) -> Conn {
    InterceptedService::new(
        channel.clone(),
        Credentials {
            header: MetadataKey::from_static(header),
            value: value.map(|v| v.parse().expect("an ASCII header value")),
        },
    )
}

/// The Polish line of the test configuration: rejects withheld numbers.
pub const PL_LINE: &str = "+48221002030";
/// A British line: allows withheld numbers, national formats read as GB.
pub const GB_LINE: &str = "+442079460018";
/// Any other line uses the defaults: region PL, withheld numbers allowed with a notice.
pub const OTHER_LINE: &str = "chat-night";

/// Where the shared test servers are; CI and a fresh machine have them on their standard ports.
pub fn postgres_base() -> String {
    std::env::var("CALLWARDEN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_default() -> String {
    std::env::var("CALLWARDEN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

type TaskResult = Result<(), String>;

pub struct TestApp {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub screening: ScreeningClient<Conn>,
    pub blocklist: BlockListClient<Conn>,
    pub console: ConsoleClient<Conn>,
    pub review: ReviewClient<Conn>,
    /// The connection of the default clients: an admin's token.
    pub channel: Conn,
    /// The same connection without credentials, for clients of other roles.
    pub raw_channel: Channel,
    pub clock: ManualClock,
    pub config: Config,
    /// A direct connection to the test's Redis, for looking at the index.
    pub redis: redis::aio::MultiplexedConnection,
    /// A direct connection to the test's database, for looking at the record.
    pub pg: sqlx::PgPool,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<TaskResult>>,
    /// The database to drop afterwards; empty for a replica.
    database: String,
    owns_keys: bool,
    /// Leave the report spool behind when dropped (for a test that starts the app again).
    keeps_spool: bool,
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// The configuration every test starts from: ports 0, its own database and key prefix.
pub fn test_config(redis_url: &str) -> Config {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Config {
        grpc_addr: ([127, 0, 0, 1], 0).into(),
        http_addr: ([127, 0, 0, 1], 0).into(),
        database_url: format!("{}/cw_test_{id}", postgres_base()),
        database_max_connections: 4,
        redis_url: redis_url.to_owned(),
        redis_key_prefix: format!("cwtest:{id}"),
        index_check_interval_ms: 50,
        // Tests assert what is answered, not how fast: a debug build sharing two cores with the
        // rest of the suite must not fall back to the failure policy by accident. The failure
        // suite sets its own.
        check_budget_ms: 2_000,
        // Likewise for Redis replies elsewhere (commands, cooldowns): chromium starting for the
        // desk's browser tests can keep both cores busy for seconds.
        redis_timeout_ms: 5_000,
        spool: callwarden_server::config::SpoolConfig {
            dir: std::env::temp_dir().join(format!("cw-spool-{id}")),
            write_timeout_ms: 10_000,
            drain_interval_ms: 100,
        },
        auth: callwarden_server::config::AuthConfig {
            hs256_secret: Some(TEST_JWT_SECRET.into()),
            switch_keys: vec![callwarden_server::config::SwitchKey {
                switch_id: SWITCH_WITH_KEY.into(),
                key_sha256: sha256_hex(TEST_SWITCH_KEY),
            }],
            ..Default::default()
        },
        review: callwarden_server::config::ReviewConfig {
            escalation_check_interval_ms: 50,
            ..Default::default()
        },
        privacy: callwarden_server::config::PrivacyConfig {
            redis_secret: Some("test-redis-secret-0123456789abcdef0123".into()),
        },
        // Tests talk plaintext on loopback, but for tests/tls.rs.
        tls: callwarden_server::config::TlsConfig {
            plaintext: true,
            ..Default::default()
        },
        lines: vec![
            LineConfig {
                number: "+48 22 100 20 30".into(),
                region: None,
                anonymous_policy: Some(callwarden_domain::line::AnonymousPolicy::Reject),
                notice_on_recent_incidents: None,
                failure_policy: None,
            },
            LineConfig {
                number: "+44 20 7946 0018".into(),
                region: Some("GB".parse().unwrap()),
                anonymous_policy: Some(callwarden_domain::line::AnonymousPolicy::Allow),
                notice_on_recent_incidents: None,
                failure_policy: None,
            },
        ],
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config(&redis_default())).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let clock = ManualClock::default();
    let app = Application::build_with_clock(config.clone(), Arc::new(clock.clone()))
        .await
        .expect("the application starts");
    let grpc_addr = app.grpc_addr();
    let http_addr = app.http_addr();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .await
        .map_err(|e| e.to_string())
    });
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects");
    let raw_channel = channel;
    let channel = with_token(
        &raw_channel,
        &token(callwarden_server::auth::Role::Admin, TEST_ADMIN),
    );
    let redis = redis::Client::open(config.redis_url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");
    let pg = sqlx::PgPool::connect(&config.database_url)
        .await
        .expect("postgres connects");
    let database = config.database_url.rsplit('/').next().unwrap().to_owned();
    TestApp {
        grpc_addr,
        http_addr,
        screening: ScreeningClient::new(channel.clone()),
        blocklist: BlockListClient::new(channel.clone()),
        console: ConsoleClient::new(channel.clone()),
        review: ReviewClient::new(channel.clone()),
        channel,
        raw_channel,
        clock,
        config,
        redis,
        pg,
        shutdown: Some(tx),
        server: Some(server),
        database,
        owns_keys: true,
        keeps_spool: false,
    }
}

impl TestApp {
    pub async fn check(&self, caller: &str, line: &str) -> CheckCallResponse {
        self.try_check(caller, line)
            .await
            .unwrap_or_else(|s| panic!("check {caller:?} on {line:?}: {s}"))
    }

    pub async fn try_check(
        &self,
        caller: &str,
        line: &str,
    ) -> Result<CheckCallResponse, tonic::Status> {
        self.screening
            .clone()
            .check_call(CheckCallRequest {
                call_id: uuid::Uuid::new_v4().to_string(),
                caller: caller.into(),
                line: line.into(),
                switch_id: "switch-test".into(),
                operator_id: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// A call from `caller` on the Polish line through `switch`, checked and answered by
    /// `operator`; returns its id.
    pub async fn answered_call(&self, caller: &str, switch: &str, operator: &str) -> String {
        let call_id = uuid::Uuid::new_v4().to_string();
        self.screening
            .clone()
            .check_call(CheckCallRequest {
                call_id: call_id.clone(),
                caller: caller.into(),
                line: PL_LINE.into(),
                switch_id: switch.into(),
                operator_id: String::new(),
            })
            .await
            .unwrap();
        self.call_event(&call_id, CallEventKind::Answered, operator)
            .await
            .unwrap();
        call_id
    }

    /// The operator's button.
    pub async fn end_and_flag(
        &self,
        request: EndAndFlagRequest,
    ) -> Result<EndAndFlagResponse, tonic::Status> {
        self.console
            .clone()
            .end_and_flag(request)
            .await
            .map(tonic::Response::into_inner)
    }

    /// What the switch would be told to do with a call now (CheckActiveCall).
    pub async fn call_action(&self, call_id: &str, switch: &str) -> CheckActiveCallResponse {
        self.screening
            .clone()
            .check_active_call(CheckActiveCallRequest {
                call_id: call_id.into(),
                switch_id: switch.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("CheckActiveCall {call_id}: {s}"))
            .into_inner()
    }

    pub async fn call_event(
        &self,
        call_id: &str,
        kind: CallEventKind,
        operator: &str,
    ) -> Result<(), tonic::Status> {
        self.screening
            .clone()
            .report_call_event(ReportCallEventRequest {
                call_id: call_id.into(),
                kind: kind.into(),
                operator_id: operator.into(),
            })
            .await
            .map(drop)
    }

    /// Opens a switch's command stream.
    pub async fn watch(&self, switch: &str) -> tonic::Streaming<CallCommand> {
        self.screening
            .clone()
            .watch_commands(WatchCommandsRequest {
                switch_id: switch.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Another replica of this deployment: same database, same Redis keys, its own ports.
    pub async fn replica(&self) -> TestApp {
        let mut replica = spawn_app_with(self.config.clone()).await;
        // The first replica owns the database and keys and cleans them up.
        replica.database.clear();
        replica.owns_keys = false;
        replica
    }

    pub async fn add(&self, request: AddRuleRequest) -> Rule {
        self.blocklist
            .clone()
            .add_rule(request.clone())
            .await
            .unwrap_or_else(|s| panic!("add {request:?}: {s}"))
            .into_inner()
    }

    pub async fn get_rule(&self, id: &str) -> Rule {
        self.blocklist
            .clone()
            .get_rule(GetRuleRequest { id: id.into() })
            .await
            .unwrap_or_else(|s| panic!("get {id}: {s}"))
            .into_inner()
    }

    pub async fn remove(&self, id: &str, removed_by: &str) -> Result<Rule, tonic::Status> {
        self.blocklist
            .clone()
            .remove_rule(RemoveRuleRequest {
                id: id.into(),
                removed_by: removed_by.into(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The Redis key of the global index slot of `pattern` (canonical): a keyed hash.
    pub fn slot_key(&self, pattern: &str) -> String {
        let secret = self
            .config
            .privacy
            .secret()
            .expect("the test config has a secret");
        callwarden_storage::slot_key(
            &self.config.redis_key_prefix,
            &callwarden_storage::Keyring::new(secret.as_bytes()),
            &callwarden_domain::rule::Scope::Global,
            pattern,
        )
    }

    /// Milliseconds until Redis drops the global index slot of `pattern`.
    pub async fn slot_pttl(&self, pattern: &str) -> i64 {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(self.slot_key(pattern))
            .query_async(&mut self.redis.clone())
            .await
            .unwrap();
        assert_ne!(pttl, -2, "no index slot for {pattern}");
        pttl
    }

    /// Every Redis key of this test's index.
    pub async fn index_keys(&self) -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("{}:*", self.config.redis_key_prefix))
            .query_async(&mut self.redis.clone())
            .await
            .unwrap()
    }

    /// Deletes every key of this deployment, as a Redis restart without persistence would;
    /// returns how many there were.
    pub async fn lose_redis_keys(&self) -> usize {
        let keys = self.index_keys().await;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut self.redis.clone())
                .await
                .unwrap();
        }
        keys.len()
    }

    /// Keeps the report spool on disk after this app is gone, for the next app on this
    /// configuration (which removes it in turn).
    pub fn keep_spool(&mut self) {
        self.keeps_spool = true;
    }

    /// Stops the service gracefully and reports how it ended.
    pub async fn stop(mut self) -> Result<(), String> {
        let _ = self.shutdown.take().unwrap().send(());
        self.server.take().unwrap().await.expect("server task")
    }
}

/// A rule request; fields not given take the defaults of a plain global block.
/// A FlagCall of `call_id` by `operator`: fraud or spam, low, no note, no block, a fresh
/// request id. Tests change what they are about with `..flag_request(..)`.
pub fn flag_request(call_id: &str, operator: &str) -> FlagCallRequest {
    FlagCallRequest {
        call_id: call_id.into(),
        operator_id: operator.into(),
        category: Category::FraudOrSpam.into(),
        severity: Severity::Low.into(),
        note: String::new(),
        block: BlockChoice::None.into(),
        anonymous: false,
        request_id: uuid::Uuid::new_v4().to_string(),
        debrief: false,
    }
}

/// An EndAndFlag of `call_id` by `operator`: abusive language, medium, a short note, no block,
/// a fresh request id.
pub fn end_and_flag_request(call_id: &str, operator: &str) -> EndAndFlagRequest {
    EndAndFlagRequest {
        call_id: call_id.into(),
        operator_id: operator.into(),
        category: Category::AbusiveLanguage.into(),
        severity: Severity::Medium.into(),
        note: "shouted insults".into(),
        block: BlockChoice::None.into(),
        anonymous: false,
        request_id: uuid::Uuid::new_v4().to_string(),
        debrief: false,
    }
}

pub fn rule(pattern: &str) -> AddRuleRequest {
    AddRuleRequest {
        pattern: pattern.into(),
        reason: "test".into(),
        created_by: "sup-1".into(),
        ..Default::default()
    }
}

pub fn allow(pattern: &str) -> AddRuleRequest {
    AddRuleRequest {
        effect: Effect::Allow.into(),
        ..rule(pattern)
    }
}

pub fn on_line(mut r: AddRuleRequest, line: &str) -> AddRuleRequest {
    r.scope = Some(Scope {
        kind: ScopeKind::Line.into(),
        value: line.into(),
    });
    r
}

pub fn for_operator(mut r: AddRuleRequest, operator: &str) -> AddRuleRequest {
    r.scope = Some(Scope {
        kind: ScopeKind::Operator.into(),
        value: operator.into(),
    });
    r
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Clean up in a thread of its own: Drop cannot await, and this runs on panics too. The
        // test's runtime is blocked meanwhile, so nothing here may wait on its connections:
        // FORCE ends them.
        if !self.owns_keys {
            return;
        }
        if !self.keeps_spool {
            let _ = std::fs::remove_dir_all(&self.config.spool.dir);
        }
        let database = std::mem::take(&mut self.database);
        let prefix = self.config.redis_key_prefix.clone();
        let redis_url = self.config.redis_url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(admin) =
                    sqlx::PgPool::connect(&format!("{}/postgres", postgres_base())).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                }
                if let Ok(client) = redis::Client::open(redis_url)
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}:*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
            });
        })
        .join();
    }
}

/// A Redis server of the test's own, on a free port, keeping nothing on disk: for tests that
/// stop, restart or count its commands.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = free_port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..200 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server on port {} did not come up", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing is answered, as with a
    /// server stuck on a slow disk or a long command.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server is running").id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of the test's own: a fresh cluster (initdb) in a temporary directory, on a
/// free port, for tests that stop and restart the record. When the tests run as root, the
/// server runs as the `postgres` user, as PostgreSQL requires.
pub struct PostgresServer {
    pub port: u16,
    dir: std::path::PathBuf,
    bin: std::path::PathBuf,
    running: bool,
}

impl PostgresServer {
    pub async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cw-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = postgres_bin();
        let mut server = Self {
            port,
            dir,
            bin,
            running: false,
        };
        server.chown();
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        server.restart().await;
        server
    }

    /// The server's base URL (append "/database").
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// PostgreSQL refuses to run as root: then its tools run as the `postgres` user.
    fn as_root() -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    fn chown(&self) {
        if Self::as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&self.dir)
                .status()
                .expect("chown runs");
            assert!(status.success());
        }
    }

    /// One of PostgreSQL's tools, as the user it must run as.
    fn tool(&self, tool: &str) -> Command {
        let tool = self.bin.join(tool);
        let mut command = if Self::as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&tool);
            c
        } else {
            Command::new(&tool)
        };
        command.stdin(Stdio::null());
        command
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .tool(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again) on the same port, with everything it had, and waits until it
    /// accepts connections.
    pub async fn restart(&mut self) {
        if self.running {
            self.stop();
        }
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops the server at once, as a crash would (immediate shutdown: no checkpoint, clients
    /// cut off).
    pub fn stop(&mut self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        self.running = false;
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running {
            // Not `stop`: a failing assertion in a drop would abort the test run.
            let _ = self
                .tool("pg_ctl")
                .args(["-D", &self.data(), "-m", "immediate", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PostgreSQL's server binaries: `CALLWARDEN_TEST_PG_BIN`, or Debian's newest under
/// /usr/lib/postgresql.
fn postgres_bin() -> std::path::PathBuf {
    if let Ok(bin) = std::env::var("CALLWARDEN_TEST_PG_BIN") {
        return bin.into();
    }
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL server binaries under /usr/lib/postgresql (or set CALLWARDEN_TEST_PG_BIN)",
        )
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server installed").1
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` until it returns true (up to 10 s): for effects that happen in the background.
pub async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if probe().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A plain HTTP/1.1 GET against the service's HTTP side: status code and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("http connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Asserts the answer to bad input: INVALID_ARGUMENT, a message that starts with the field's
/// name and quotes (or mentions) the value.
pub fn assert_invalid(status: &tonic::Status, field: &str, value: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert!(
        message.starts_with(&format!("{field}: ")),
        "{field}: {message}"
    );
    assert!(message.contains(value), "{value}: {message}");
}
