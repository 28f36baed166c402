//! Retention: once an incident has been closed (resolved or dismissed) for the configured
//! period, and is not on legal hold, the caller's number and every note are removed from it,
//! and callers' numbers from the call history behind it. The chain stays verifiable: each
//! redacted event keeps the salted digests its hash was computed over (see
//! `callwarden_domain::chain`), and the redaction itself is appended as an event. The audit log
//! of reads has its own, longer period.

use crate::{
    StorageError,
    incidents::{EventDraft, IncidentStore, append_in, lock_head},
    review::{EVENT_COLUMNS, EventRecord},
};
use callwarden_domain::chain;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::json;
use uuid::Uuid;

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPass {
    /// Incidents whose caller and notes were removed.
    pub incidents: u64,
    /// Events whose sensitive fields were swapped for their digests.
    pub events: u64,
    /// Events written before redaction existed, hashed whole: kept as they are, or the chain
    /// would break.
    pub kept_whole: u64,
    /// Answered calls whose caller was removed.
    pub calls: u64,
    /// Audit log rows older than their period removed.
    pub reads: u64,
}

impl IncidentStore {
    /// Redacts up to `batch` incidents closed before `cutoff` (oldest first), up to `batch`
    /// answered calls from before it whose incidents (if any) are all redacted, and removes up
    /// to `batch` audit log rows from before `reads_cutoff` (but those of incidents on legal
    /// hold), in one transaction. Replicas running it at once take different rows.
    pub async fn apply_retention(
        &self,
        cutoff: DateTime<Utc>,
        reads_cutoff: DateTime<Utc>,
        now: DateTime<Utc>,
        batch: i64,
    ) -> Result<RetentionPass, StorageError> {
        let now = now.trunc_subsecs(6);
        let mut pass = RetentionPass::default();
        let mut tx = self.pg.begin().await?;
        // The only way the chain's trigger lets an event change: see the migration.
        sqlx::query("SELECT set_config('callwarden.redacting', 'on', true)")
            .execute(&mut *tx)
            .await?;
        let due: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE redacted_at IS NULL AND NOT legal_hold \
               AND status IN ('resolved', 'dismissed') AND closed_at < $1 \
             ORDER BY closed_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(cutoff)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        for id in due {
            let Some((seq, prev)) = lock_head(&mut tx, id).await? else {
                continue;
            };
            let events: Vec<EventRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {EVENT_COLUMNS} FROM incident_events WHERE incident_id = $1 ORDER BY seq"
            )))
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            // Events from before redaction existed are hashed whole; those without a salt are
            // redacted already.
            let whole = events.iter().filter(|e| e.scheme == 1).count() as u64;
            let (seqs, details): (Vec<i32>, Vec<serde_json::Value>) = events
                .iter()
                .filter(|e| e.scheme != 1)
                .filter_map(|e| Some((e.seq, chain::redact(&e.details, e.salt.as_deref()?))))
                .unzip();
            let redacted = seqs.len() as u64;
            sqlx::query(
                "UPDATE incident_events e SET details = r.details, salt = NULL \
                 FROM unnest($2::int[], $3::jsonb[]) AS r(seq, details) \
                 WHERE e.incident_id = $1 AND e.seq = r.seq",
            )
            .bind(id)
            .bind(&seqs)
            .bind(&details)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE incidents SET caller_e164 = NULL, note = '', resolution_note = NULL, \
                 redacted_at = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let event = EventDraft::system(
                "redacted",
                json!({
                    "fields": chain::REDACTABLE,
                    "events_redacted": redacted,
                    "events_kept_whole": whole,
                    "closed_before": cutoff.to_rfc3339(),
                }),
            );
            append_in(&mut tx, id, now, prev, seq, vec![event]).await?;
            pass.incidents += 1;
            pass.events += redacted;
            pass.kept_whole += whole;
        }
        pass.calls = sqlx::query(
            "UPDATE answered_calls SET caller_e164 = NULL WHERE call_id IN ( \
               SELECT a.call_id FROM answered_calls a \
               WHERE a.caller_e164 IS NOT NULL AND a.answered_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM incidents i \
                                 WHERE i.call_id = a.call_id AND i.redacted_at IS NULL) \
               ORDER BY a.answered_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        pass.reads = sqlx::query(
            "DELETE FROM incident_reads WHERE id IN ( \
               SELECT r.id FROM incident_reads r WHERE r.at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM incidents i \
                                 WHERE i.id = r.incident_id AND i.legal_hold) \
               ORDER BY r.at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(reads_cutoff)
        .bind(batch)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        for (what, n) in [
            ("incidents", pass.incidents),
            ("events", pass.events),
            ("calls", pass.calls),
            ("reads", pass.reads),
        ] {
            metrics::counter!("callwarden_retention_redacted_total", "what" => what).increment(n);
        }
        metrics::counter!("callwarden_retention_kept_whole_events_total")
            .increment(pass.kept_whole);
        Ok(pass)
    }
}
