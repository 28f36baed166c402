//! Callwarden's storage. Postgres is the system of record; Redis holds the serving index that
//! CheckCall reads in one round trip. [`RuleBook`] is the only way rules are written, so the
//! record and the index cannot drift apart through a second code path.

pub mod audit;
mod connection;
mod error;
pub mod incidents;
mod index;
pub mod live;
pub mod postgres;
pub mod preferences;
pub mod privacy;
mod recent;
pub mod retention;
pub mod review;
mod rules;
pub mod spool;

pub use connection::{RedisConn, RedisTarget};
pub use error::StorageError;
pub use index::{IndexConfig, RuleIndex, slot_key};
pub use privacy::Keyring;
pub use rules::{Import, RULES_CHANNEL, RuleBook, RuleFilter, RulePage, Screened, Source};

/// Unlinks every key matching `pattern`, a SCAN page at a time (never a blocking KEYS);
/// returns how many.
pub(crate) async fn unlink_matching(
    conn: &RedisConn,
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
