//! The storage layer's one error type; the server maps it to gRPC statuses in one place.

use callwarden_domain::{review::InvalidTransition, rule::RuleId};
use uuid::Uuid;

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
    #[error("incident {0} not found")]
    IncidentNotFound(Uuid),
    /// The incident's state does not allow the change; the message names the state.
    #[error("incident {id}: {source}")]
    Transition { id: Uuid, source: InvalidTransition },
    /// The incident cannot take this change for another reason (the message says which).
    #[error("{0}")]
    Refused(String),
    /// The same thing was attached before, differently.
    #[error("{0}")]
    AlreadyExists(String),
    /// A stored row that this version cannot read: a bug or a hand edit, never user input.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A bug: a task that failed or a value used after it was consumed.
    #[error("internal: {0}")]
    Internal(String),
}

impl StorageError {
    /// Whether Postgres could not be reached or is going away (as opposed to refusing the
    /// request): a report that fails so may be spooled and tried again later.
    pub fn is_postgres_unavailable(&self) -> bool {
        let Self::Postgres(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            // Connection exceptions, the server shutting down or refusing connections.
            sqlx::Error::Database(d) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_postgres_counts_as_unavailable() {
        for away in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            assert!(StorageError::Postgres(away).is_postgres_unavailable());
        }
        // Refusals are answers: spooling them would retry them forever.
        assert!(!StorageError::Postgres(sqlx::Error::RowNotFound).is_postgres_unavailable());
        assert!(!StorageError::Refused("no".into()).is_postgres_unavailable());
        assert!(
            !StorageError::Redis(redis::RedisError::from((redis::ErrorKind::Io, "gone")))
                .is_postgres_unavailable()
        );
    }
}
