//! Connecting to Postgres, creating the database if it is missing, and applying migrations.

use sqlx::{
    PgPool,
    migrate::{MigrateDatabase, MigrateError},
    postgres::{PgConnectOptions, PgPoolOptions},
};
use std::{str::FromStr, time::Duration};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

pub struct PgConfig<'a> {
    pub url: &'a str,
    pub max_connections: u32,
    /// Bound on waiting for a connection from the pool (and on opening one).
    pub acquire_timeout: Duration,
}

/// Connects, creating the database first if it does not exist yet.
pub async fn connect(config: &PgConfig<'_>) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(config.url)?;
    if !sqlx::Postgres::database_exists(config.url).await? {
        // Two replicas starting at once may both try; the loser's "already exists" is fine.
        if let Err(e) = sqlx::Postgres::create_database(config.url).await
            && !sqlx::Postgres::database_exists(config.url).await?
        {
            return Err(e);
        }
    }
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_with(options)
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}
