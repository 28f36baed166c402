//! The audit log of incident reads: who read which incident, when, through which RPC. The
//! services write it before an answer leaves, so nothing is shown that was not logged; the
//! table refuses updates and deletes like the chain does.

use crate::{StorageError, incidents::IncidentStore};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use uuid::Uuid;

/// One logged read.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IncidentRead {
    /// Orders the log; page tokens carry it.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The reader's pseudonym (the token's subject).
    pub reader: String,
    pub reader_role: String,
    pub incident_id: Uuid,
    pub rpc: String,
}

/// Which reads [`IncidentStore::reads`] returns; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct ReadFilter {
    pub incident_id: Option<Uuid>,
    pub reader: Option<String>,
}

impl IncidentStore {
    /// Logs that `reader` was shown `incidents` through `rpc`.
    pub async fn record_reads(
        &self,
        reader: &str,
        reader_role: &str,
        rpc: &str,
        incidents: &[Uuid],
        at: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        if incidents.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO incident_reads (at, reader, reader_role, incident_id, rpc) \
             SELECT $1, $2, $3, id, $4 FROM unnest($5::uuid[]) AS id",
        )
        .bind(at)
        .bind(reader)
        .bind(reader_role)
        .bind(rpc)
        .bind(incidents)
        .execute(&self.pg)
        .await?;
        metrics::counter!("callwarden_incident_reads_total", "rpc" => rpc.to_owned())
            .increment(incidents.len() as u64);
        Ok(())
    }

    /// The log newest first: up to `limit` reads older than the read `before` (a page token).
    pub async fn reads(
        &self,
        filter: &ReadFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<IncidentRead>, StorageError> {
        let mut q = QueryBuilder::new(
            "SELECT id, at, reader, reader_role, incident_id, rpc FROM incident_reads WHERE true",
        );
        if let Some(id) = filter.incident_id {
            q.push(" AND incident_id = ").push_bind(id);
        }
        if let Some(reader) = &filter.reader {
            q.push(" AND reader = ").push_bind(reader.clone());
        }
        if let Some(before) = before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
        Ok(q.build_query_as().fetch_all(&self.pg).await?)
    }
}
