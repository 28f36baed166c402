//! Configuration: one typed struct, loaded once at start-up from defaults, then an optional TOML
//! file, then `CALLWARDEN_*` environment variables (each top-level key, upper-cased).

use callwarden_domain::{
    incident::{Category, Severity},
    line::{AnonymousPolicy, LineDirectory, LineId, LinePolicy},
    phone::Region,
    policy::Policy,
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
    /// Prefix of every Redis key, so several deployments (or test runs) can share one Redis.
    pub redis_key_prefix: String,
    /// Bound on connecting to and waiting for Redis; past it a check answers from Postgres.
    pub redis_timeout_ms: u64,
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
    /// Service lines with their own policy; others use the defaults above.
    pub lines: Vec<LineConfig>,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// The number dialled (any format, read in `default_region`) or a line name.
    pub number: String,
    pub region: Option<Region>,
    pub anonymous_policy: Option<AnonymousPolicy>,
    pub notice_on_recent_incidents: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: ([127, 0, 0, 1], 50051).into(),
            http_addr: ([127, 0, 0, 1], 8080).into(),
            database_url: "postgres://postgres@127.0.0.1:5432/callwarden".into(),
            database_max_connections: 16,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_key_prefix: "callwarden".into(),
            redis_timeout_ms: 500,
            default_region: "PL".parse().expect("a valid region"),
            anonymous_policy: AnonymousPolicy::AllowWithNotice,
            notice_on_recent_incidents: true,
            log_format: LogFormat::Plain,
            log_filter: "info".into(),
            shutdown_grace_ms: 10_000,
            index_check_interval_ms: 1_000,
            live_call_ttl_seconds: 4 * 3600,
            terminate_announcement: "conduct-terminated".into(),
            warning_announcement: "conduct-warning".into(),
            policy: PolicyConfig::default(),
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
            .merge(Env::prefixed("CALLWARDEN_").ignore(&["config"]).split("__"))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.line_directory()?;
        self.policy.policy()?;
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
        Ok(())
    }

    pub fn line_directory(&self) -> Result<LineDirectory, ConfigError> {
        let default = LinePolicy {
            region: self.default_region,
            anonymous: self.anonymous_policy,
            notice_on_recent_incidents: self.notice_on_recent_incidents,
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
            };
            if lines.insert(id.clone(), policy).is_some() {
                return Err(ConfigError::DuplicateLine(id.to_string()));
            }
        }
        Ok(LineDirectory::new(default, lines))
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
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
            jail.set_env("CALLWARDEN_POLICY__COOLDOWN_SECONDS", "90");
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
            Ok(())
        });
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
