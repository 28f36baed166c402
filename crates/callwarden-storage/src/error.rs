//! The storage layer's one error type; the server maps it to gRPC statuses in one place.

use callwarden_domain::rule::RuleId;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("rule {0} not found")]
    RuleNotFound(RuleId),
    #[error("rule {0} was already removed")]
    RuleAlreadyRemoved(RuleId),
    /// A stored row that this version cannot read: a bug or a hand edit, never user input.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A bug: a task that failed or a value used after it was consumed.
    #[error("internal: {0}")]
    Internal(String),
}
