//! Callwarden's storage. Postgres is the system of record; Redis holds the serving index that
//! CheckCall reads in one round trip. [`RuleBook`] is the only way rules are written, so the
//! record and the index cannot drift apart through a second code path.

pub mod audit;
mod error;
pub mod incidents;
mod index;
pub mod live;
pub mod postgres;
pub mod privacy;
pub mod retention;
pub mod review;
mod rules;

pub use error::StorageError;
pub use index::{IndexConfig, RuleIndex, slot_key};
pub use privacy::Keyring;
pub use rules::{Import, RuleBook, RuleFilter, RulePage, Screened};

/// Connects to Redis with bounded connection and response times, reconnecting on its own. The
/// client is kept for what needs a connection of its own (pub/sub).
pub async fn connect_redis(
    url: &str,
    timeout: std::time::Duration,
) -> Result<(redis::Client, redis::aio::ConnectionManager), redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(std::time::Duration::from_secs(2));
    let manager = redis::aio::ConnectionManager::new_with_config(client.clone(), config).await?;
    Ok((client, manager))
}
