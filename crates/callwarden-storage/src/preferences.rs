//! The review desk's per-user settings (language, time zone), keyed by the pseudonym in the
//! user's token. Stored as given: the desk parses them before it writes and after it reads.

use crate::StorageError;
use sqlx::PgPool;

/// What a user chose; `None` means "as the browser asks".
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Preferences {
    pub locale: Option<String>,
    pub time_zone: Option<String>,
}

#[derive(Clone)]
pub struct PreferenceStore {
    pg: PgPool,
}

impl PreferenceStore {
    pub fn new(pg: PgPool) -> Self {
        Self { pg }
    }

    /// The user's settings; the defaults when they never chose.
    pub async fn get(&self, subject: &str) -> Result<Preferences, StorageError> {
        let row: Option<Preferences> =
            sqlx::query_as("SELECT locale, time_zone FROM desk_preferences WHERE subject = $1")
                .bind(subject)
                .fetch_optional(&self.pg)
                .await?;
        Ok(row.unwrap_or_default())
    }

    pub async fn set(&self, subject: &str, p: &Preferences) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO desk_preferences (subject, locale, time_zone) VALUES ($1, $2, $3) \
             ON CONFLICT (subject) DO UPDATE \
               SET locale = EXCLUDED.locale, time_zone = EXCLUDED.time_zone, updated_at = now()",
        )
        .bind(subject)
        .bind(&p.locale)
        .bind(&p.time_zone)
        .execute(&self.pg)
        .await?;
        Ok(())
    }
}
