//! Configuration: one typed struct, loaded once at start-up from defaults, then an optional TOML
//! file, then `CALLWARDEN_*` environment variables (each top-level key, upper-cased).
//! `CALLWARDEN_CONFIG` (the file) and `CALLWARDEN_TOKEN` (the load generator's credentials) are
//! not keys.

use callwarden_domain::{
    incident::{Category, Severity},
    line::{AnonymousPolicy, FailurePolicy, LineDirectory, LineId, LinePolicy},
    phone::Region,
    policy::Policy,
    review::Deadlines,
};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, net::SocketAddr, path::Path, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: lines[{index}].number: {message}")]
    Line { index: usize, message: String },
    #[error("configuration: line {0} is configured twice")]
    DuplicateLine(String),
    #[error("configuration: {key}: {message}")]
    File { key: &'static str, message: String },
    #[error("configuration: {key} must be {what}")]
    Invalid {
        key: &'static str,
        what: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where switches and consoles reach the gRPC services.
    pub grpc_addr: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub http_addr: SocketAddr,
    /// Postgres, the system of record. The database is created if it is missing.
    pub database_url: String,
    pub database_max_connections: u32,
    /// Redis, the serving index.
    pub redis_url: String,
    /// Redis Sentinel, when Redis fails over by it: the primary is asked of the Sentinels and
    /// followed through failovers; `redis_url` then only gives the data nodes' password and
    /// database.
    pub redis_sentinel: SentinelConfig,
    /// Prefix of every Redis key, so several deployments (or test runs) can share one Redis.
    pub redis_key_prefix: String,
    /// Bound on connecting to and waiting for Redis (index writes, commands, streams). Checks
    /// have their own, shorter budget: `check_budget_ms`.
    pub redis_timeout_ms: u64,
    /// How long CheckCall may take, whatever Redis and Postgres do: past three quarters of it a
    /// check stops waiting for Redis and answers from the recent results in memory, then from
    /// Postgres, then by the line's `failure_policy`, and says it was degraded.
    pub check_budget_ms: u64,
    /// Checks' recent results each replica keeps in memory (forgotten whenever a rule changes
    /// anywhere), to answer from while Redis is slow or down.
    pub recent_results: usize,
    /// What lines without their own setting answer when the rules cannot be read in time:
    /// "open" (allow, degraded) or "closed" (reject, degraded).
    pub failure_policy: FailurePolicy,
    /// Bound on waiting for a Postgres connection. Review RPCs do not wait at all while
    /// Postgres is known to be down: they answer UNAVAILABLE at once.
    pub database_acquire_timeout_ms: u64,
    /// Reports that Postgres could not take (EndAndFlag, FlagCall) are kept here, fsync'd, until
    /// it can; one directory per replica, on a volume that outlives the process.
    pub spool: SpoolConfig,
    /// Region for national-format numbers on lines without their own, and for reading lines.
    pub default_region: Region,
    /// What lines without their own policy do with withheld caller ids.
    pub anonymous_policy: AnonymousPolicy,
    /// Whether lines without their own setting warn operators about callers with recent
    /// incidents (ALLOW_WITH_NOTICE).
    pub notice_on_recent_incidents: bool,
    pub log_format: LogFormat,
    /// A `tracing` filter (`RUST_LOG` syntax), e.g. "info,callwarden_storage=debug".
    pub log_filter: String,
    /// Largest request message accepted (each message of a client stream too).
    pub max_message_bytes: usize,
    /// Most rules one ImportRules stream may carry (it is one transaction).
    pub max_import_rules: u64,
    /// Longest a request handler may take (for a stream: until it is handed back); past it the
    /// call ends with DEADLINE_EXCEEDED. An import of a million rules takes about 13 s.
    pub rpc_timeout_ms: u64,
    /// How long SIGTERM waits for in-flight calls before exiting anyway.
    pub shutdown_grace_ms: u64,
    /// How often a replica checks that the Redis index exists (rebuilding it if Redis came back
    /// empty) and retries failed index writes.
    pub index_check_interval_ms: u64,
    /// How long a call stays live (for commands and reports) if its switch never reports its
    /// end.
    pub live_call_ttl_seconds: u64,
    /// Announcement id sent with TERMINATE (the switch plays it to the caller).
    pub terminate_announcement: String,
    /// Announcement id sent with PLAY_WARNING when the operator names none.
    pub warning_announcement: String,
    /// What follows from reports.
    pub policy: PolicyConfig,
    /// Supervisors' review: deadlines and their escalation.
    pub review: ReviewConfig,
    /// Who may call: tokens for people, API keys for switches.
    pub auth: AuthConfig,
    /// How callers' numbers are kept out of sight.
    pub privacy: PrivacyConfig,
    /// How long closed incidents keep callers' numbers and notes.
    pub retention: RetentionConfig,
    /// TLS on both listeners, and client certificates for switches.
    pub tls: TlsConfig,
    /// Service lines with their own policy; others use the defaults above.
    pub lines: Vec<LineConfig>,
}

/// Redis Sentinel (`[redis_sentinel]`).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SentinelConfig {
    /// The Sentinels, e.g. ["redis://10.0.0.5:26379", "redis://10.0.0.6:26379"]; empty: no
    /// Sentinel, `redis_url` is Redis itself.
    pub sentinels: Vec<String>,
    /// The name the Sentinels monitor the primary under.
    pub master_name: String,
}

/// The report spool (`[spool]`; `CALLWARDEN_SPOOL__<KEY>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// The directory (created if missing). Each replica needs its own, kept across restarts.
    pub dir: std::path::PathBuf,
    /// How long a report waits for Postgres before it is spooled instead.
    pub write_timeout_ms: u64,
    /// How often spooled reports are offered to Postgres again.
    pub drain_interval_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: "var/spool".into(),
            write_timeout_ms: 2_000,
            drain_interval_ms: 1_000,
        }
    }
}

impl SpoolConfig {
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms.max(1))
    }

    pub fn drain_interval(&self) -> Duration {
        Duration::from_millis(self.drain_interval_ms.max(10))
    }
}

/// The report policy (`[policy]` in the file; `CALLWARDEN_POLICY__<KEY>` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The operator's break after EndAndFlag.
    pub cooldown_seconds: u64,
    /// How long "block this caller from me" lasts; 0 for good.
    pub operator_block_ttl_seconds: u64,
    /// How long an automatic global block lasts.
    pub global_block_ttl_seconds: u64,
    /// Reports of this severity or higher block the caller globally for a while.
    pub global_block_severity: String,
    /// Reports from this many different operators within `repeat_window_days` block globally.
    pub repeat_reporters: usize,
    pub repeat_window_days: u32,
    /// How far back CheckCall's `recent_flags` counts incidents.
    pub recent_window_days: u32,
    /// Categories escalated to supervisors at once.
    pub escalate_categories: Vec<String>,
    /// Categories that never block the caller.
    pub never_block_categories: Vec<String>,
    /// Categories marked for a supervisor's attention.
    pub attention_categories: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = Policy::default();
        let names = |cs: &[Category]| cs.iter().map(|c| c.as_str().to_owned()).collect();
        Self {
            cooldown_seconds: p.cooldown.num_seconds() as u64,
            operator_block_ttl_seconds: 0,
            global_block_ttl_seconds: p.global_block_ttl.num_seconds() as u64,
            global_block_severity: p.global_block_severity.as_str().into(),
            repeat_reporters: p.repeat_reporters,
            repeat_window_days: p.repeat_window.num_days() as u32,
            recent_window_days: p.recent_window.num_days() as u32,
            escalate_categories: names(&p.escalate),
            never_block_categories: names(&p.never_block),
            attention_categories: names(&p.attention),
        }
    }
}

impl PolicyConfig {
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let categories = |key: &'static str, names: &[String]| {
            names
                .iter()
                .map(|n| {
                    n.parse::<Category>().map_err(|_| ConfigError::Invalid {
                        key,
                        what: "a list of categories (see README)",
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let seconds = |s: u64| chrono::Duration::seconds(s.min(i64::MAX as u64 / 1000) as i64);
        Ok(Policy {
            cooldown: seconds(self.cooldown_seconds),
            operator_block_ttl: (self.operator_block_ttl_seconds > 0)
                .then(|| seconds(self.operator_block_ttl_seconds)),
            global_block_ttl: seconds(self.global_block_ttl_seconds),
            global_block_severity: self.global_block_severity.parse::<Severity>().map_err(
                |_| ConfigError::Invalid {
                    key: "policy.global_block_severity",
                    what: "one of low, medium, high, critical",
                },
            )?,
            repeat_reporters: self.repeat_reporters.max(1),
            repeat_window: chrono::Duration::days(self.repeat_window_days.into()),
            recent_window: chrono::Duration::days(self.recent_window_days.into()),
            escalate: categories("policy.escalate_categories", &self.escalate_categories)?,
            never_block: categories(
                "policy.never_block_categories",
                &self.never_block_categories,
            )?,
            attention: categories("policy.attention_categories", &self.attention_categories)?,
        })
    }
}

/// Review deadlines (`[review]` in the file; `CALLWARDEN_REVIEW__<KEY>` in the environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    /// How long after the report a decision on a critical incident is due.
    pub deadline_critical_seconds: u64,
    pub deadline_high_seconds: u64,
    pub deadline_medium_seconds: u64,
    pub deadline_low_seconds: u64,
    /// How often a replica looks for unacknowledged critical incidents past their deadline.
    pub escalation_check_interval_ms: u64,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        let d = Deadlines::default();
        let secs = |s: Severity| d.for_severity(s).num_seconds() as u64;
        Self {
            deadline_critical_seconds: secs(Severity::Critical),
            deadline_high_seconds: secs(Severity::High),
            deadline_medium_seconds: secs(Severity::Medium),
            deadline_low_seconds: secs(Severity::Low),
            escalation_check_interval_ms: 5_000,
        }
    }
}

impl ReviewConfig {
    pub fn deadlines(&self) -> Result<Deadlines, ConfigError> {
        let d = |key: &'static str, s: u64| {
            if s == 0 || s > 366 * 24 * 3600 {
                return Err(ConfigError::Invalid {
                    key,
                    what: "between 1 second and a year",
                });
            }
            Ok(chrono::Duration::seconds(s as i64))
        };
        Ok(Deadlines {
            critical: d(
                "review.deadline_critical_seconds",
                self.deadline_critical_seconds,
            )?,
            high: d("review.deadline_high_seconds", self.deadline_high_seconds)?,
            medium: d(
                "review.deadline_medium_seconds",
                self.deadline_medium_seconds,
            )?,
            low: d("review.deadline_low_seconds", self.deadline_low_seconds)?,
        })
    }

    pub fn escalation_check_interval(&self) -> Duration {
        Duration::from_millis(self.escalation_check_interval_ms.max(10))
    }
}

/// Authentication (`[auth]`; `CALLWARDEN_AUTH__<KEY>`). People present a bearer JWT whose
/// claims carry `sub` (their pseudonym), `role` (operator, supervisor, admin), `aud` and `exp`;
/// switches present an API key (`x-api-key`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shared secret for HS256 tokens (at least 32 bytes).
    pub hs256_secret: Option<String>,
    /// PEM file of RS256 or ES256 public keys, for tokens signed by an identity provider.
    pub public_keys_file: Option<std::path::PathBuf>,
    /// The `aud` every token must carry.
    pub audience: String,
    /// The `iss` every token must carry, if set.
    pub issuer: Option<String>,
    /// Tolerance for clocks that disagree, on `exp` and `nbf`.
    pub max_clock_skew_seconds: u64,
    /// Switches and the SHA-256 (hex) of their API keys; the keys themselves are never stored.
    pub switch_keys: Vec<SwitchKey>,
    /// Requests per second each switch, operator, supervisor may make (bursts of twice that;
    /// per replica); 0 is unlimited. Admins are not limited.
    pub switch_requests_per_second: u32,
    pub operator_requests_per_second: u32,
    pub supervisor_requests_per_second: u32,
    /// Server streams (WatchCommands, WatchIncidents) one caller may hold open per replica.
    pub max_streams_per_principal: usize,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("hs256_secret", &self.hs256_secret.as_ref().map(|_| "***"))
            .field("public_keys_file", &self.public_keys_file)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("max_clock_skew_seconds", &self.max_clock_skew_seconds)
            .field("switch_keys", &self.switch_keys.len())
            .field(
                "switch_requests_per_second",
                &self.switch_requests_per_second,
            )
            .field(
                "operator_requests_per_second",
                &self.operator_requests_per_second,
            )
            .field(
                "supervisor_requests_per_second",
                &self.supervisor_requests_per_second,
            )
            .field("max_streams_per_principal", &self.max_streams_per_principal)
            .finish()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            public_keys_file: None,
            audience: "callwarden".into(),
            issuer: None,
            max_clock_skew_seconds: 30,
            switch_keys: Vec::new(),
            switch_requests_per_second: 20_000,
            operator_requests_per_second: 10,
            supervisor_requests_per_second: 100,
            max_streams_per_principal: 16,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchKey {
    pub switch_id: String,
    /// `sha256sum` of the key, 64 hex digits.
    pub key_sha256: String,
}

/// Privacy (`[privacy]`; `CALLWARDEN_PRIVACY__<KEY>`).
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Keys Redis keys and sealed values: numbers never reach Redis in clear (at least 32
    /// bytes; every replica the same).
    pub redis_secret: Option<String>,
}

impl std::fmt::Debug for PrivacyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyConfig")
            .field("redis_secret", &self.redis_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl PrivacyConfig {
    /// The secret that keys Redis: required, and long enough that its hashes of phone numbers
    /// cannot be reversed by trying every number.
    pub fn secret(&self) -> Result<&str, ConfigError> {
        self.redis_secret
            .as_deref()
            .filter(|s| s.len() >= 32)
            .ok_or(ConfigError::Invalid {
                key: "privacy.redis_secret",
                what: "set, at least 32 bytes",
            })
    }
}

/// TLS (`[tls]`; `CALLWARDEN_TLS__<KEY>`) on the gRPC and HTTP listeners. Required unless
/// `plaintext = true` says, explicitly, that this is local development.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain the listeners present.
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key_file: Option<std::path::PathBuf>,
    /// PEM CA certificates that sign switches' client certificates (mutual TLS on gRPC). A
    /// switch that presents one is the switch its subject common name (CN) names; people
    /// connect without one and present their token.
    pub client_ca_file: Option<std::path::PathBuf>,
    /// Serve without TLS. For local development only; never with the settings above.
    pub plaintext: bool,
}

impl TlsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let files = self.cert_file.is_some() || self.key_file.is_some();
        if self.plaintext && (files || self.client_ca_file.is_some()) {
            return Err(ConfigError::Invalid {
                key: "tls.plaintext",
                what: "false when tls.cert_file, tls.key_file or tls.client_ca_file is set",
            });
        }
        if !self.plaintext && (self.cert_file.is_none() || self.key_file.is_none()) {
            return Err(ConfigError::Invalid {
                key: "tls.cert_file",
                what: "set, with tls.key_file (or tls.plaintext = true, for local development only)",
            });
        }
        Ok(())
    }
}

/// Retention (`[retention]`; `CALLWARDEN_RETENTION__<KEY>`): incidents resolved or dismissed
/// longer ago than `closed_incident_days`, and not on legal hold, lose the caller's number and
/// every note; so do answered calls that old, once their incidents have.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// How long a closed incident keeps the caller's number and the notes.
    pub closed_incident_days: u32,
    /// How long the audit log keeps a read (but reads of incidents on legal hold).
    pub audit_log_days: u32,
    /// How often a replica looks for incidents due (replicas take different ones).
    pub check_interval_seconds: u64,
    /// Incidents redacted per transaction.
    pub batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            closed_incident_days: 365,
            audit_log_days: 730,
            check_interval_seconds: 3600,
            batch_size: 200,
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=36_600).contains(&self.closed_incident_days) {
            return Err(ConfigError::Invalid {
                key: "retention.closed_incident_days",
                what: "between 1 and 36600",
            });
        }
        if !(1..=36_600).contains(&self.audit_log_days) {
            return Err(ConfigError::Invalid {
                key: "retention.audit_log_days",
                what: "between 1 and 36600",
            });
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(ConfigError::Invalid {
                key: "retention.batch_size",
                what: "between 1 and 10000",
            });
        }
        Ok(())
    }

    pub fn period(&self) -> chrono::Duration {
        chrono::Duration::days(self.closed_incident_days.into())
    }

    pub fn audit_log_period(&self) -> chrono::Duration {
        chrono::Duration::days(self.audit_log_days.into())
    }

    pub fn check_interval(&self) -> Duration {
        Duration::from_secs(self.check_interval_seconds.max(1))
    }
}

impl AuthConfig {
    /// The token checker this configuration describes; reads the public keys file.
    pub fn authenticator(&self) -> Result<crate::auth::Authenticator, ConfigError> {
        let mut public = Vec::new();
        if let Some(path) = &self.public_keys_file {
            let pem = std::fs::read_to_string(path).map_err(|_| ConfigError::Invalid {
                key: "auth.public_keys_file",
                what: "a readable PEM file",
            })?;
            public = crate::auth::public_keys(&pem).ok_or(ConfigError::Invalid {
                key: "auth.public_keys_file",
                what: "PEM public keys (RSA for RS256, EC P-256 for ES256)",
            })?;
        }
        let switch_keys = self
            .switch_keys
            .iter()
            .map(|k| (k.key_sha256.to_ascii_lowercase(), k.switch_id.clone()))
            .collect();
        use crate::auth::Role;
        Ok(crate::auth::Authenticator::new(
            self.hs256_secret.as_deref(),
            public,
            &self.audience,
            self.issuer.as_deref(),
            self.max_clock_skew_seconds.min(300),
            switch_keys,
        )
        .with_rate(Role::Switch, self.switch_requests_per_second)
        .with_rate(Role::Operator, self.operator_requests_per_second)
        .with_rate(Role::Supervisor, self.supervisor_requests_per_second))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hs256_secret.is_none() && self.public_keys_file.is_none() {
            return Err(ConfigError::Invalid {
                key: "auth.hs256_secret",
                what: "set (or auth.public_keys_file): without either nobody can sign in",
            });
        }
        if self.hs256_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::Invalid {
                key: "auth.hs256_secret",
                what: "at least 32 bytes",
            });
        }
        if self.audience.is_empty() {
            return Err(ConfigError::Invalid {
                key: "auth.audience",
                what: "non-empty",
            });
        }
        for k in &self.switch_keys {
            let hex_ok =
                k.key_sha256.len() == 64 && k.key_sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex_ok || k.switch_id.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "auth.switch_keys",
                    what: "entries of switch_id and key_sha256 (64 hex digits)",
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// The number dialled (any format, read in `default_region`) or a line name.
    pub number: String,
    pub region: Option<Region>,
    pub anonymous_policy: Option<AnonymousPolicy>,
    pub notice_on_recent_incidents: Option<bool>,
    pub failure_policy: Option<FailurePolicy>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 50051).into(),
            http_addr: ([127, 0, 0, 1], 8080).into(),
            database_url: "postgres://postgres@127.0.0.1:5432/callwarden".into(),
            database_max_connections: 16,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_sentinel: SentinelConfig::default(),
            redis_key_prefix: "callwarden".into(),
            redis_timeout_ms: 500,
            check_budget_ms: 20,
            recent_results: 100_000,
            failure_policy: FailurePolicy::Open,
            database_acquire_timeout_ms: 3_000,
            spool: SpoolConfig::default(),
            default_region: "PL".parse().expect("a valid region"),
            anonymous_policy: AnonymousPolicy::AllowWithNotice,
            notice_on_recent_incidents: true,
            log_format: LogFormat::Plain,
            log_filter: "info".into(),
            shutdown_grace_ms: 10_000,
            max_message_bytes: 64 * 1024,
            max_import_rules: 2_000_000,
            rpc_timeout_ms: 60_000,
            index_check_interval_ms: 1_000,
            live_call_ttl_seconds: 4 * 3600,
            terminate_announcement: "conduct-terminated".into(),
            warning_announcement: "conduct-warning".into(),
            policy: PolicyConfig::default(),
            review: ReviewConfig::default(),
            auth: AuthConfig::default(),
            privacy: PrivacyConfig::default(),
            retention: RetentionConfig::default(),
            tls: TlsConfig::default(),
            lines: Vec::new(),
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then `CALLWARDEN_*` variables; validated as a whole.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: Config = figment
            .merge(
                Env::prefixed("CALLWARDEN_")
                    .ignore(&["config", "token"])
                    .split("__"),
            )
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.line_directory()?;
        self.policy.policy()?;
        self.review.deadlines()?;
        self.auth.validate()?;
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                key: "redis_key_prefix",
                what: "non-empty, without spaces",
            });
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "database_max_connections",
                what: "at least 1",
            });
        }
        if !(1..=10_000).contains(&self.check_budget_ms) {
            return Err(ConfigError::Invalid {
                key: "check_budget_ms",
                what: "between 1 and 10000",
            });
        }
        if !self.redis_sentinel.sentinels.is_empty() && self.redis_sentinel.master_name.is_empty() {
            return Err(ConfigError::Invalid {
                key: "redis_sentinel.master_name",
                what: "set when redis_sentinel.sentinels is",
            });
        }
        if self.spool.dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                key: "spool.dir",
                what: "a directory",
            });
        }
        self.privacy.secret()?;
        self.retention.validate()?;
        self.tls.validate()?;
        Ok(())
    }

    pub fn line_directory(&self) -> Result<LineDirectory, ConfigError> {
        let default = LinePolicy {
            region: self.default_region,
            anonymous: self.anonymous_policy,
            notice_on_recent_incidents: self.notice_on_recent_incidents,
            on_failure: self.failure_policy,
        };
        let mut lines = HashMap::new();
        for (index, line) in self.lines.iter().enumerate() {
            let id = LineId::parse(&line.number, self.default_region).map_err(|e| {
                ConfigError::Line {
                    index,
                    message: e.to_string(),
                }
            })?;
            let policy = LinePolicy {
                region: line.region.unwrap_or(default.region),
                anonymous: line.anonymous_policy.unwrap_or(default.anonymous),
                notice_on_recent_incidents: line
                    .notice_on_recent_incidents
                    .unwrap_or(default.notice_on_recent_incidents),
                on_failure: line.failure_policy.unwrap_or(default.on_failure),
            };
            if lines.insert(id.clone(), policy).is_some() {
                return Err(ConfigError::DuplicateLine(id.to_string()));
            }
        }
        Ok(LineDirectory::new(default, lines))
    }

    /// Where Redis is: `redis_url`, or the primary the Sentinels name.
    pub fn redis_target(&self) -> callwarden_storage::RedisTarget {
        if self.redis_sentinel.sentinels.is_empty() {
            callwarden_storage::RedisTarget::Url(self.redis_url.clone())
        } else {
            callwarden_storage::RedisTarget::Sentinel {
                sentinels: self.redis_sentinel.sentinels.clone(),
                master_name: self.redis_sentinel.master_name.clone(),
                node: self.redis_url.clone(),
            }
        }
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    pub fn check_budget(&self) -> Duration {
        Duration::from_millis(self.check_budget_ms)
    }

    pub fn database_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.database_acquire_timeout_ms.max(10))
    }

    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms.max(100))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn live_call_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.live_call_ttl_seconds.clamp(60, 7 * 24 * 3600) as i64)
    }

    pub fn index_check_interval(&self) -> Duration {
        Duration::from_millis(self.index_check_interval_ms.max(10))
    }
}

#[cfg(test)]
// figment's Jail fixes the closure's error type; it is not ours to shrink.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "callwarden.toml",
                r#"
                grpc_addr = "0.0.0.0:6000"
                default_region = "GB"
                [[lines]]
                number = "020 7946 0018"
                anonymous_policy = "reject"
                [[lines]]
                number = "chat-pl"
                region = "PL"
                "#,
            )?;
            jail.set_env("CALLWARDEN_GRPC_ADDR", "127.0.0.1:7000");
            jail.set_env("CALLWARDEN_REDIS_URL", "redis://10.0.0.9:6379");
            jail.set_env("CALLWARDEN_CONFIG", "ignored.toml");
            // The load generator's credentials, often exported in the same shell.
            jail.set_env("CALLWARDEN_TOKEN", "eyJ...");
            jail.set_env("CALLWARDEN_POLICY__COOLDOWN_SECONDS", "90");
            jail.set_env(
                "CALLWARDEN_AUTH__HS256_SECRET",
                "an-hs256-secret-of-at-least-32-bytes",
            );
            jail.set_env(
                "CALLWARDEN_PRIVACY__REDIS_SECRET",
                "a-redis-secret-of-at-least-32-bytes!",
            );
            jail.set_env("CALLWARDEN_TLS__PLAINTEXT", "true");
            let config = Config::load(Some(Path::new("callwarden.toml"))).unwrap();
            assert_eq!(config.grpc_addr.port(), 7000);
            assert_eq!(config.redis_url, "redis://10.0.0.9:6379");
            assert_eq!(config.default_region.to_string(), "GB");
            assert_eq!(config.http_addr, Config::default().http_addr);
            let dir = config.line_directory().unwrap();
            let london = LineId::parse("+442079460018", config.default_region).unwrap();
            assert_eq!(dir.policy(&london).anonymous, AnonymousPolicy::Reject);
            let chat = LineId::Name("chat-pl".into());
            assert_eq!(dir.policy(&chat).region.to_string(), "PL");
            assert_eq!(config.policy.policy().unwrap().cooldown.num_seconds(), 90);
            assert!(config.auth.hs256_secret.is_some());
            Ok(())
        });
    }

    #[test]
    fn the_shipped_configuration_files_load() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let example = std::fs::read_to_string(deploy.join("callwarden.example.toml")).unwrap();
        let dev = std::fs::read_to_string(deploy.join("callwarden.dev.toml")).unwrap();
        figment::Jail::expect_with(|jail| {
            jail.create_file("dev.toml", &dev)?;
            let config = Config::load(Some(Path::new("dev.toml"))).unwrap();
            assert!(config.tls.plaintext);
            // The example keeps its secrets and certificates out of the file.
            jail.create_file("example.toml", &example)?;
            let err = Config::load(Some(Path::new("example.toml"))).unwrap_err();
            assert!(err.to_string().contains("auth.hs256_secret"), "{err}");
            jail.set_env("CALLWARDEN_AUTH__HS256_SECRET", "x".repeat(32));
            jail.set_env("CALLWARDEN_PRIVACY__REDIS_SECRET", "y".repeat(32));
            jail.set_env("CALLWARDEN_TLS__CERT_FILE", "/etc/callwarden/tls/tls.crt");
            jail.set_env("CALLWARDEN_TLS__KEY_FILE", "/etc/callwarden/tls/tls.key");
            let config = Config::load(Some(Path::new("example.toml"))).unwrap();
            assert_eq!(config.retention.closed_incident_days, 365);
            assert_eq!(config.max_import_rules, Config::default().max_import_rules);
            Ok(())
        });
    }

    #[test]
    fn the_redis_secret_is_required_and_at_least_32_bytes() {
        let privacy = |s: Option<&str>| PrivacyConfig {
            redis_secret: s.map(Into::into),
        };
        for bad in [None, Some(""), Some("0123456789abcdef0123456789abcde")] {
            let err = privacy(bad).secret().unwrap_err().to_string();
            assert!(err.contains("privacy.redis_secret"), "{err}");
        }
        let good = "0123456789abcdef0123456789abcdef";
        assert_eq!(privacy(Some(good)).secret().unwrap(), good);
        assert!(!format!("{:?}", privacy(Some(good))).contains(good));
    }

    #[test]
    fn bad_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CALLWARDEN_DEFAULT_REGION", "Narnia");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("default_region"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[[lines]]\nnumber = \"not a line!\"\n")?;
            let err = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("lines[0].number"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "grcp_addr = \"0.0.0.0:1\"\n")?;
            let err = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("grcp_addr"), "{err}");
            Ok(())
        });
    }
}
