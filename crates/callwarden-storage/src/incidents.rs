//! Incidents and their append-only, hash-chained event log in Postgres, plus the operators'
//! call history that reports after a call rely on.

use crate::{
    StorageError,
    review::{EVENT_COLUMNS, EventRecord},
    rules::RuleBook,
};
use callwarden_domain::{
    call::LiveCall,
    chain::{self, ChainEvent, GENESIS, Sealing, StoredEvent},
    incident::{BlockChoice, Category, Severity},
    rule::NewRule,
};
use chrono::{DateTime, SubsecRound, Utc};
use futures::TryStreamExt;
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

#[derive(Clone)]
pub struct IncidentStore {
    pub(crate) pg: PgPool,
    pub(crate) rules: RuleBook,
}

/// A report, as the console sent it and the service completed it.
#[derive(Debug, Clone)]
pub struct NewIncident {
    /// Chosen before the first attempt to record it, so a report recorded later from the spool
    /// keeps the id its operator was given.
    pub id: Uuid,
    pub request_id: String,
    pub call_id: String,
    pub switch_id: String,
    pub line: String,
    pub caller: Option<String>,
    pub reporter: String,
    pub anonymous: bool,
    pub category: Category,
    pub severity: Severity,
    pub note: String,
    pub block: BlockChoice,
    /// `end_and_flag`, `flag_call` or `report_past_call`.
    pub source: &'static str,
    pub debrief: bool,
    pub escalated: bool,
    pub needs_attention: bool,
    /// When a supervisor's decision is due.
    pub deadline: DateTime<Utc>,
}

/// An event to append; its place in the chain is computed on insert.
#[derive(Debug, Clone)]
pub struct EventDraft {
    pub actor: String,
    pub kind: &'static str,
    pub details: Value,
}

impl EventDraft {
    pub fn system(kind: &'static str, details: Value) -> Self {
        Self {
            actor: "system".into(),
            kind,
            details,
        }
    }
}

/// A block the report leads to, recorded with the incident.
#[derive(Debug, Clone)]
pub struct BlockDraft {
    pub rule: NewRule,
    /// Why, for the event: e.g. "operator_request", "severity".
    pub why: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    New {
        id: Uuid,
    },
    /// The request id was seen before: this is the incident it made.
    Existing {
        id: Uuid,
    },
}

/// One answered call from an operator's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredCall {
    pub call_id: String,
    pub switch_id: String,
    pub line: String,
    pub caller: Option<String>,
    pub operator: String,
    pub answered_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Where `callwarden verify` found the record broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("incident {incident_id}, event #{seq}: {problem}")]
pub struct ChainBreak {
    pub incident_id: Uuid,
    pub seq: i32,
    pub problem: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainReport {
    pub incidents: usize,
    pub events: usize,
}

impl IncidentStore {
    pub fn new(pg: PgPool, rules: RuleBook) -> Self {
        Self { pg, rules }
    }

    /// The incident an earlier request with this id made, and who reported it.
    pub async fn by_request(
        &self,
        request_id: &str,
    ) -> Result<Option<(Uuid, String)>, StorageError> {
        Ok(
            sqlx::query_as("SELECT id, reporter FROM incidents WHERE request_id = $1")
                .bind(request_id)
                .fetch_optional(&self.pg)
                .await?,
        )
    }

    /// Different operators who reported `caller` since `since`.
    pub async fn reporters_since(
        &self,
        caller: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT reporter FROM incidents WHERE caller_e164 = $1 AND created_at >= $2",
        )
        .bind(caller)
        .bind(since)
        .fetch_all(&self.pg)
        .await?)
    }

    /// Recent incident times of every caller, for rebuilding `recent_flags` in Redis.
    pub async fn recent_by_caller(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Vec<DateTime<Utc>>)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT caller_e164, array_agg(created_at ORDER BY created_at) FROM incidents \
             WHERE caller_e164 IS NOT NULL AND created_at >= $1 GROUP BY caller_e164",
        )
        .bind(since)
        .fetch_all(&self.pg)
        .await?)
    }

    /// Records an incident, its first events and the blocks it leads to, in one transaction;
    /// the blocks reach the Redis index after the commit. A request id seen before records
    /// nothing and returns the earlier incident.
    pub async fn record(
        &self,
        incident: &NewIncident,
        at: DateTime<Utc>,
        before: Vec<EventDraft>,
        blocks: Vec<BlockDraft>,
        after: Vec<EventDraft>,
    ) -> Result<Recorded, StorageError> {
        let at = at.trunc_subsecs(6);
        let id = incident.id;
        let mut tx = self.pg.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO incidents (id, request_id, call_id, switch_id, line, caller_e164, reporter, \
                 anonymous, category, severity, note, block_choice, source, debrief_requested, \
                 escalated, needs_attention, created_at, deadline_at, reporter_ref) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                 $18, $19) \
             ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(id)
        .bind(&incident.request_id)
        .bind(&incident.call_id)
        .bind(&incident.switch_id)
        .bind(&incident.line)
        .bind(&incident.caller)
        .bind(&incident.reporter)
        .bind(incident.anonymous)
        .bind(incident.category.as_str())
        .bind(incident.severity.as_str())
        .bind(&incident.note)
        .bind(incident.block.as_str())
        .bind(incident.source)
        .bind(incident.debrief)
        .bind(incident.escalated)
        .bind(incident.needs_attention)
        .bind(at)
        .bind(incident.deadline.trunc_subsecs(6))
        .bind(incident.anonymous.then(sealed_reference))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            drop(tx);
            let (id, _) = self
                .by_request(&incident.request_id)
                .await?
                .ok_or_else(|| StorageError::Internal("request id vanished".into()))?;
            return Ok(Recorded::Existing { id });
        }
        let mut events = before;
        let mut rules = Vec::new();
        for block in blocks {
            let rule = self.rules.insert_in(&mut tx, block.rule, at).await?;
            events.push(EventDraft::system(
                "caller_blocked",
                json!({
                    "rule_id": rule.id.to_string(),
                    "pattern": rule.pattern.to_string(),
                    "scope": rule.scope.kind(),
                    "scope_value": rule.scope.value(),
                    "expires_at": rule.expires_at.map(|t| t.to_rfc3339()),
                    "why": block.why,
                }),
            ));
            rules.push(rule);
        }
        events.extend(after);
        append_in(&mut tx, id, at, GENESIS.to_vec(), 0, events).await?;
        tx.commit().await?;
        for rule in &rules {
            self.rules.index_rule(rule).await;
        }
        Ok(Recorded::New { id })
    }

    /// Appends events to an incident's chain; concurrent appenders take turns.
    pub async fn append(
        &self,
        incident_id: Uuid,
        at: DateTime<Utc>,
        events: Vec<EventDraft>,
    ) -> Result<(), StorageError> {
        let mut tx = self.pg.begin().await?;
        let (seq, prev) = lock_head(&mut tx, incident_id)
            .await?
            .ok_or(StorageError::IncidentNotFound(incident_id))?;
        append_in(&mut tx, incident_id, at.trunc_subsecs(6), prev, seq, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The switch carried out the TERMINATE of a reported call: a link in each such incident.
    pub async fn terminate_acknowledged(
        &self,
        command: &callwarden_domain::call::Command,
        at: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE call_id = $1 AND source = 'end_and_flag'",
        )
        .bind(&command.call_id)
        .fetch_all(&self.pg)
        .await?;
        for id in ids {
            let event = EventDraft {
                actor: format!("switch:{}", command.switch_id),
                kind: "terminate_acknowledged",
                details: json!({ "command_id": command.id }),
            };
            self.append(id, at, vec![event]).await?;
        }
        Ok(())
    }

    /// Keeps an answered call in the operator's history.
    pub async fn record_answered(&self, call: &LiveCall) -> Result<(), StorageError> {
        let (Some(operator), Some(answered_at)) = (&call.operator, call.answered_at) else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO answered_calls (call_id, switch_id, line, caller_e164, operator_id, answered_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (call_id) DO UPDATE SET operator_id = $5, answered_at = $6",
        )
        .bind(&call.call_id)
        .bind(&call.switch_id)
        .bind(&call.line)
        .bind(&call.caller)
        .bind(operator)
        .bind(answered_at)
        .execute(&self.pg)
        .await?;
        Ok(())
    }

    pub async fn record_ended(&self, call_id: &str, at: DateTime<Utc>) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE answered_calls SET ended_at = $2 WHERE call_id = $1 AND ended_at IS NULL",
        )
        .bind(call_id)
        .bind(at)
        .execute(&self.pg)
        .await?;
        Ok(())
    }

    /// A call in `operator`'s history; another operator's call is not found.
    pub async fn answered_call(
        &self,
        call_id: &str,
        operator: &str,
    ) -> Result<Option<AnsweredCall>, StorageError> {
        type Row = (
            String,
            String,
            String,
            Option<String>,
            String,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT call_id, switch_id, line, caller_e164, operator_id, answered_at, ended_at \
             FROM answered_calls WHERE call_id = $1 AND operator_id = $2",
        )
        .bind(call_id)
        .bind(operator)
        .fetch_optional(&self.pg)
        .await?;
        Ok(row.map(|r| AnsweredCall {
            call_id: r.0,
            switch_id: r.1,
            line: r.2,
            caller: r.3,
            operator: r.4,
            answered_at: r.5,
            ended_at: r.6,
        }))
    }
}

/// Walks every incident's chain; the first broken link is the error.
pub async fn verify(pg: &PgPool) -> Result<Result<ChainReport, ChainBreak>, StorageError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        incident_id: Uuid,
        #[sqlx(flatten)]
        event: EventRecord,
    }
    let mut rows = sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(format!(
        "SELECT incident_id, {EVENT_COLUMNS} FROM incident_events ORDER BY incident_id, seq"
    )))
    .fetch(pg);
    let mut report = ChainReport::default();
    let mut current: Vec<Row> = Vec::new();
    let check = |rows: &[Row], report: &mut ChainReport| -> Result<(), ChainBreak> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let n = chain::verify(rows.iter().map(|r| StoredEvent {
            event: r.event.chain_event(r.incident_id),
            prev_hash: &r.event.prev_hash,
            hash: &r.event.hash,
        }))
        .map_err(|b| ChainBreak {
            incident_id: first.incident_id,
            seq: b.seq,
            problem: b.problem,
        })?;
        report.incidents += 1;
        report.events += n;
        Ok(())
    };
    while let Some(row) = rows.try_next().await? {
        if current
            .first()
            .is_some_and(|r| r.incident_id != row.incident_id)
        {
            if let Err(b) = check(&current, &mut report) {
                return Ok(Err(b));
            }
            current.clear();
        }
        current.push(row);
    }
    if let Err(b) = check(&current, &mut report) {
        return Ok(Err(b));
    }
    Ok(Ok(report))
}

/// A random reference that stands for an anonymous reporter: it links to nobody.
fn sealed_reference() -> String {
    format!("sealed-{}", &Uuid::new_v4().simple().to_string()[..16])
}

/// Locks an incident for appending; its chain head (events so far, newest hash).
pub(crate) async fn lock_head(
    tx: &mut Transaction<'static, Postgres>,
    incident_id: Uuid,
) -> Result<Option<(i32, Vec<u8>)>, sqlx::Error> {
    let head: Option<(i32, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT version, chain_hash FROM incidents WHERE id = $1 FOR UPDATE")
            .bind(incident_id)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(head.map(|(seq, hash)| (seq, hash.unwrap_or_else(|| GENESIS.to_vec()))))
}

/// Where every change to an incident is announced (Postgres NOTIFY, delivered on commit):
/// "<incident id> <event kind>".
pub const CHANGES_CHANNEL: &str = "callwarden_incidents";

/// Appends events after the chain head `(seq, prev)` (held locked by the caller), moves the
/// head on the incident row and announces the change as the first event's kind.
pub(crate) async fn append_in(
    tx: &mut Transaction<'static, Postgres>,
    incident_id: Uuid,
    at: DateTime<Utc>,
    mut prev: Vec<u8>,
    mut seq: i32,
    events: Vec<EventDraft>,
) -> Result<(), sqlx::Error> {
    let Some(change) = events.first().map(|e| e.kind) else {
        return Ok(());
    };
    for e in events {
        seq += 1;
        // Each event its own salt, so equal notes or numbers give unrelated digests.
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt)
            .map_err(|e| sqlx::Error::Protocol(format!("no randomness: {e}")))?;
        let hash = ChainEvent {
            incident_id,
            seq,
            at,
            actor: &e.actor,
            kind: e.kind,
            details: &e.details,
            sealing: Sealing::Digested(Some(&salt)),
        }
        .hash(&prev);
        sqlx::query(
            "INSERT INTO incident_events \
             (incident_id, seq, at, actor, kind, details, prev_hash, hash, scheme, salt) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 2, $9)",
        )
        .bind(incident_id)
        .bind(seq)
        .bind(at)
        .bind(&e.actor)
        .bind(e.kind)
        .bind(&e.details)
        .bind(&prev)
        .bind(hash.as_slice())
        .bind(salt.as_slice())
        .execute(&mut **tx)
        .await?;
        prev = hash.to_vec();
    }
    sqlx::query("UPDATE incidents SET version = $2, chain_hash = $3 WHERE id = $1")
        .bind(incident_id)
        .bind(seq)
        .bind(&prev)
        .execute(&mut **tx)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(format!("{incident_id} {change}"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
