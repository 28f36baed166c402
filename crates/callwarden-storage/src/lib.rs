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
mod recent;
pub mod retention;
pub mod review;
mod rules;
pub mod spool;

pub use error::StorageError;
pub use index::{IndexConfig, RuleIndex, slot_key};
pub use privacy::Keyring;
pub use rules::{Import, RULES_CHANNEL, RuleBook, RuleFilter, RulePage, Screened, Source};

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

/// Unlinks every key matching `pattern`, a SCAN page at a time (never a blocking KEYS);
/// returns how many.
pub(crate) async fn unlink_matching(
    conn: &redis::aio::ConnectionManager,
    pattern: &str,
) -> Result<usize, redis::RedisError> {
    use redis::AsyncCommands;
    let mut conn = conn.clone();
    let (mut cursor, mut unlinked) = (0u64, 0usize);
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            unlinked += keys.len();
            conn.unlink::<_, ()>(keys).await?;
        }
        if next == 0 {
            return Ok(unlinked);
        }
        cursor = next;
    }
}
