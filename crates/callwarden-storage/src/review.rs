//! The supervisors' side of the incident record: the queue and its filters, one incident with
//! its timeline, workflow changes (each an update of the row and events in its chain, in one
//! transaction), statements and evidence (events, so as immutable as the chain), statistics.

use crate::{
    StorageError,
    incidents::{BlockDraft, EventDraft, IncidentStore, append_in, lock_head},
};
use callwarden_domain::{
    chain::{self, ChainEvent, Sealing, StoredEvent},
    incident::{BlockChoice, Category, Severity},
    phone::E164,
    review::{self, IncidentStatus, Transition},
    rule::Rule,
};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

const INCIDENT_COLUMNS: &str = "id, call_id, switch_id, line, caller_e164, reporter, reporter_ref, \
     anonymous, unsealed_at, unsealed_by, category, severity, note, block_choice, source, \
     debrief_requested, escalated, needs_attention, status, created_at, deadline_at, \
     deadline_escalated_at, acknowledged_at, acknowledged_by, closed_at, closed_by, outcome, \
     authority, reference, block_rule_id, resolution_note, version, chain_hash, legal_hold, \
     redacted_at";

/// An incident as the record holds it now. The reporter is in clear here: sealing is for
/// what supervisors are shown.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    pub id: Uuid,
    pub call_id: String,
    pub switch_id: String,
    pub line: String,
    pub caller: Option<String>,
    pub reporter: String,
    /// Stands for the reporter while sealed; set for anonymous reports.
    pub reporter_ref: Option<String>,
    pub anonymous: bool,
    pub unsealed_at: Option<DateTime<Utc>>,
    pub unsealed_by: Option<String>,
    pub category: Category,
    pub severity: Severity,
    pub note: String,
    pub block: BlockChoice,
    pub source: String,
    pub debrief_requested: bool,
    pub escalated: bool,
    pub needs_attention: bool,
    pub status: IncidentStatus,
    pub created_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub deadline_escalated_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub outcome: Option<String>,
    pub authority: Option<String>,
    pub reference: Option<String>,
    pub block_rule_id: Option<Uuid>,
    pub resolution_note: Option<String>,
    /// Events in the chain.
    pub version: i32,
    /// The newest event's hash.
    pub chain_hash: Vec<u8>,
    /// Retention leaves the incident whole while this is set.
    pub legal_hold: bool,
    /// When retention removed the caller's number and the notes.
    pub redacted_at: Option<DateTime<Utc>>,
}

impl IncidentRecord {
    /// The reference shown instead of the reporter, while the report stays sealed.
    pub fn seal_reference(&self) -> Option<&str> {
        if self.anonymous && self.unsealed_at.is_none() {
            self.reporter_ref.as_deref()
        } else {
            None
        }
    }

    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        review::overdue(self.status, self.deadline, now)
    }

    fn severity_rank(&self) -> i16 {
        severity_rank(self.severity)
    }
}

fn severity_rank(s: Severity) -> i16 {
    match s {
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

#[derive(sqlx::FromRow)]
struct IncidentRow {
    id: Uuid,
    call_id: String,
    switch_id: String,
    line: String,
    caller_e164: Option<String>,
    reporter: String,
    reporter_ref: Option<String>,
    anonymous: bool,
    unsealed_at: Option<DateTime<Utc>>,
    unsealed_by: Option<String>,
    category: String,
    severity: String,
    note: String,
    block_choice: String,
    source: String,
    debrief_requested: bool,
    escalated: bool,
    needs_attention: bool,
    status: String,
    created_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    deadline_escalated_at: Option<DateTime<Utc>>,
    acknowledged_at: Option<DateTime<Utc>>,
    acknowledged_by: Option<String>,
    closed_at: Option<DateTime<Utc>>,
    closed_by: Option<String>,
    outcome: Option<String>,
    authority: Option<String>,
    reference: Option<String>,
    block_rule_id: Option<Uuid>,
    resolution_note: Option<String>,
    version: i32,
    chain_hash: Option<Vec<u8>>,
    legal_hold: bool,
    redacted_at: Option<DateTime<Utc>>,
}

impl TryFrom<IncidentRow> for IncidentRecord {
    type Error = StorageError;
    fn try_from(r: IncidentRow) -> Result<Self, StorageError> {
        Ok(Self {
            id: r.id,
            call_id: r.call_id,
            switch_id: r.switch_id,
            line: r.line,
            caller: r.caller_e164,
            reporter: r.reporter,
            reporter_ref: r.reporter_ref,
            anonymous: r.anonymous,
            unsealed_at: r.unsealed_at,
            unsealed_by: r.unsealed_by,
            category: r.category.parse().map_err(StorageError::Corrupt)?,
            severity: r.severity.parse().map_err(StorageError::Corrupt)?,
            note: r.note,
            block: r.block_choice.parse().map_err(StorageError::Corrupt)?,
            source: r.source,
            debrief_requested: r.debrief_requested,
            escalated: r.escalated,
            needs_attention: r.needs_attention,
            status: r.status.parse().map_err(StorageError::Corrupt)?,
            created_at: r.created_at,
            deadline: r.deadline_at,
            deadline_escalated_at: r.deadline_escalated_at,
            acknowledged_at: r.acknowledged_at,
            acknowledged_by: r.acknowledged_by,
            closed_at: r.closed_at,
            closed_by: r.closed_by,
            outcome: r.outcome,
            authority: r.authority,
            reference: r.reference,
            block_rule_id: r.block_rule_id,
            resolution_note: r.resolution_note,
            version: r.version,
            chain_hash: r.chain_hash.unwrap_or_else(|| chain::GENESIS.to_vec()),
            legal_hold: r.legal_hold,
            redacted_at: r.redacted_at,
        })
    }
}

/// One event of an incident's chain, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRecord {
    pub seq: i32,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub details: Value,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// How the details enter the hash: 1 whole, 2 with sensitive fields as salted digests.
    pub scheme: i16,
    /// The digests' salt; dropped (with the content) by retention.
    pub salt: Option<Vec<u8>>,
}

/// The columns of [`EventRecord`], in a statement over `incident_events`.
pub(crate) const EVENT_COLUMNS: &str =
    "seq, at, actor, kind, details, prev_hash, hash, scheme, salt";

impl EventRecord {
    /// The event as its link hashes it.
    pub fn chain_event(&self, incident_id: Uuid) -> ChainEvent<'_> {
        ChainEvent {
            incident_id,
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            kind: &self.kind,
            details: &self.details,
            sealing: match self.scheme {
                1 => Sealing::Whole,
                _ => Sealing::Digested(self.salt.as_deref()),
            },
        }
    }
}

/// Whether an incident's events form an unbroken chain.
pub fn chain_verifies(incident_id: Uuid, events: &[EventRecord]) -> bool {
    chain::verify(events.iter().map(|e| StoredEvent {
        event: e.chain_event(incident_id),
        prev_hash: &e.prev_hash,
        hash: &e.hash,
    }))
    .is_ok()
}

/// Which incidents [`IncidentStore::list`] returns; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Empty: the review queue (OPEN and ACKNOWLEDGED).
    pub statuses: Vec<IncidentStatus>,
    pub severities: Vec<Severity>,
    pub categories: Vec<Category>,
    /// The line as recorded (E.164 or name).
    pub line: Option<String>,
    pub caller: Option<E164>,
    /// The reporter's pseudonym; sealed reports never match.
    pub reporter: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub overdue_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Overdue first, then severity (critical first), then oldest first.
    Urgent,
    Newest,
}

/// Where a page ended: the sort key of its last incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub overdue: bool,
    pub severity_rank: i16,
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn after(record: &IncidentRecord, as_of: DateTime<Utc>) -> Self {
        Self {
            overdue: record.overdue(as_of),
            severity_rank: record.severity_rank(),
            created_at: record.created_at,
            id: record.id,
        }
    }
}

/// A change to the row that goes with a workflow event.
#[derive(Debug, Clone)]
pub enum RowChange {
    /// Statements, evidence: only events.
    None,
    Acknowledged {
        by: String,
    },
    Resolved {
        by: String,
        outcome: &'static str,
        authority: Option<String>,
        reference: Option<String>,
        note: Option<String>,
    },
    Dismissed {
        by: String,
        reason: String,
    },
    Reopened {
        deadline: DateTime<Utc>,
    },
    Unsealed {
        by: String,
    },
    Escalated,
    /// Placed on (or released from) legal hold: retention leaves it whole while held.
    LegalHold {
        hold: bool,
    },
}

/// What a change does, decided from the incident as it is (locked) now.
#[derive(Debug, Clone)]
pub struct Plan {
    pub transition: Option<Transition>,
    pub row: RowChange,
    pub events: Vec<EventDraft>,
    /// A block the change makes: recorded in the same transaction, then indexed.
    pub block: Option<BlockDraft>,
}

/// A statement, read back from its event.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementRecord {
    pub id: String,
    pub author: String,
    pub role: String,
    pub text: String,
    pub at: DateTime<Utc>,
}

/// Evidence, read back from its event.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceRecord {
    pub id: String,
    pub uri: String,
    pub sha256: String,
    pub duration_seconds: u32,
    pub description: String,
    pub attached_by: String,
    pub attached_at: DateTime<Utc>,
    pub captured_at: Option<DateTime<Utc>>,
}

impl EvidenceRecord {
    pub fn from_event(e: &EventRecord) -> Option<Self> {
        let d = &e.details;
        let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            id: s("evidence_id")?,
            uri: s("uri")?,
            sha256: s("sha256")?,
            duration_seconds: d
                .get("duration_seconds")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u32,
            description: s("description").unwrap_or_default(),
            attached_by: e.actor.clone(),
            attached_at: e.at,
            captured_at: s("captured_at").and_then(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }),
        })
    }

    /// The event details that record it.
    pub fn details(
        id: &str,
        uri: &str,
        sha256: &str,
        duration_seconds: u32,
        description: &str,
        captured_at: Option<DateTime<Utc>>,
    ) -> Value {
        json!({
            "evidence_id": id,
            "uri": uri,
            "sha256": sha256,
            "duration_seconds": duration_seconds,
            "description": description,
            "captured_at": captured_at.map(|t| t.to_rfc3339()),
        })
    }
}

impl StatementRecord {
    pub fn from_event(e: &EventRecord) -> Option<Self> {
        let s = |k: &str| e.details.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            id: s("statement_id")?,
            role: s("role")?,
            // Empty once retention removed it.
            text: s("text").unwrap_or_default(),
            author: e.actor.clone(),
            at: e.at,
        })
    }
}

/// p50/p90/p99/max of a duration, in seconds, over `count` incidents.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    pub total: u64,
    pub by_category: Vec<(String, u64)>,
    pub by_severity: Vec<(String, u64)>,
    pub by_outcome: Vec<(String, u64)>,
    pub by_status: Vec<(String, u64)>,
    pub time_to_acknowledge: Percentiles,
    pub time_to_resolve: Percentiles,
    /// (caller, incidents, different reporters), most incidents first.
    pub top_callers: Vec<(String, u64, u64)>,
}

/// Incidents per day (`YYYY-MM-DD` in the asked time zone), for charts over time. Days without
/// incidents are absent; the caller fills the calendar.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DailyStats {
    /// (day, category, count).
    pub by_category: Vec<(String, String, u64)>,
    /// (day, severity, count).
    pub by_severity: Vec<(String, String, u64)>,
    /// (day, median seconds from creation to acknowledgement).
    pub acknowledge_p50: Vec<(String, f64)>,
}

impl IncidentStore {
    pub async fn incident(&self, id: Uuid) -> Result<IncidentRecord, StorageError> {
        let row: Option<IncidentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pg)
        .await?;
        row.ok_or(StorageError::IncidentNotFound(id))?.try_into()
    }

    pub async fn events(&self, id: Uuid) -> Result<Vec<EventRecord>, StorageError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM incident_events WHERE incident_id = $1 ORDER BY seq"
        )))
        .bind(id)
        .fetch_all(&self.pg)
        .await?)
    }

    /// The caller's other incidents, newest first.
    pub async fn caller_incidents(
        &self,
        caller: &str,
        except: Uuid,
        limit: i64,
    ) -> Result<Vec<IncidentRecord>, StorageError> {
        let rows: Vec<IncidentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE caller_e164 = $1 AND id <> $2 \
             ORDER BY created_at DESC LIMIT $3"
        )))
        .bind(caller)
        .bind(except)
        .bind(limit)
        .fetch_all(&self.pg)
        .await?;
        rows.into_iter().map(IncidentRecord::try_from).collect()
    }

    /// The pseudonyms of every reporter of `caller` whose report is still sealed.
    pub async fn sealed_reporters(&self, caller: &str) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT reporter FROM incidents \
             WHERE caller_e164 = $1 AND anonymous AND unsealed_at IS NULL",
        )
        .bind(caller)
        .fetch_all(&self.pg)
        .await?)
    }

    /// The rules that apply to `caller` now, in any scope.
    pub async fn rules_for(
        &self,
        caller: &E164,
        now: DateTime<Utc>,
    ) -> Result<Vec<Rule>, StorageError> {
        self.rules.active_for(caller, now).await
    }

    /// One page (`limit` + 1 rows, so the caller knows whether more follow) after `after`.
    pub async fn list(
        &self,
        filter: &IncidentFilter,
        order: Order,
        as_of: DateTime<Utc>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Vec<IncidentRecord>, StorageError> {
        let fetch = limit + 1;
        let mut out = Vec::with_capacity(fetch);
        match order {
            Order::Newest => {
                let mut q = self.filtered(filter, as_of);
                if let Some(c) = after {
                    q.push(" AND (created_at, id) < (")
                        .push_bind(c.created_at)
                        .push(", ")
                        .push_bind(c.id)
                        .push(")");
                }
                q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
                    .push_bind(fetch as i64);
                out = self.fetch(q).await?;
            }
            Order::Urgent => {
                // Two index-ordered segments instead of one sort on a time-dependent key.
                for overdue in [true, false] {
                    if out.len() >= fetch || (!overdue && filter.overdue_only) {
                        break;
                    }
                    if after.is_some_and(|c| overdue && !c.overdue) {
                        continue;
                    }
                    let mut q = self.filtered(filter, as_of);
                    // Within the queue's own statuses the status test is implied; repeating it
                    // misleads the planner's estimates.
                    let active = if all_active(filter) {
                        ""
                    } else {
                        "status IN ('open', 'acknowledged') AND "
                    };
                    if overdue {
                        q.push(format!(" AND ({active}deadline_at < "))
                    } else {
                        q.push(format!(" AND NOT ({active}deadline_at < "))
                    }
                    .push_bind(as_of)
                    .push(")");
                    if let Some(c) = after.filter(|c| c.overdue == overdue) {
                        q.push(" AND (severity_rank < ")
                            .push_bind(c.severity_rank)
                            .push(" OR (severity_rank = ")
                            .push_bind(c.severity_rank)
                            .push(" AND (created_at, id) > (")
                            .push_bind(c.created_at)
                            .push(", ")
                            .push_bind(c.id)
                            .push(")))");
                    }
                    q.push(" ORDER BY severity_rank DESC, created_at, id LIMIT ")
                        .push_bind((fetch - out.len()) as i64);
                    out.extend(self.fetch(q).await?);
                }
            }
        }
        Ok(out)
    }

    /// How many incidents match `filter` in each status, whatever statuses it asks for: a
    /// queue's counters. Open and acknowledged ones are all counted (the queue's partial
    /// indexes hold them); resolved and dismissed ones only if closed at or after
    /// `closed_since`, since counting all of history would read every incident ever recorded.
    /// Every status is present, zeros included.
    pub async fn count_by_status(
        &self,
        filter: &IncidentFilter,
        as_of: DateTime<Utc>,
        closed_since: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, StorageError> {
        let mut rows: Vec<(String, i64)> = Vec::new();
        for statuses in [
            IncidentStatus::ACTIVE.to_vec(),
            vec![IncidentStatus::Resolved, IncidentStatus::Dismissed],
        ] {
            let closed = !statuses[0].is_active();
            let part = IncidentFilter {
                statuses,
                ..filter.clone()
            };
            let mut q = self.selected("status, count(*)", &part, as_of);
            if closed {
                q.push(" AND closed_at >= ").push_bind(closed_since);
            }
            q.push(" GROUP BY status");
            rows.extend(
                q.build_query_as::<(String, i64)>()
                    .fetch_all(&self.pg)
                    .await?,
            );
        }
        Ok(IncidentStatus::ALL
            .iter()
            .map(|s| {
                let n = rows
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |r| r.1);
                (s.as_str().to_owned(), n as u64)
            })
            .collect())
    }

    fn filtered(&self, f: &IncidentFilter, as_of: DateTime<Utc>) -> QueryBuilder<Postgres> {
        self.selected(INCIDENT_COLUMNS, f, as_of)
    }

    /// `SELECT <columns> FROM incidents WHERE <the filter>`.
    fn selected(
        &self,
        columns: &str,
        f: &IncidentFilter,
        as_of: DateTime<Utc>,
    ) -> QueryBuilder<Postgres> {
        let mut q = QueryBuilder::new(format!("SELECT {columns} FROM incidents WHERE "));
        // Literals, not parameters: the planner then matches the partial queue indexes.
        let statuses: &[IncidentStatus] = if f.statuses.is_empty() {
            &IncidentStatus::ACTIVE
        } else {
            &f.statuses
        };
        q.push(format!(
            "status IN ({})",
            quoted(statuses.iter().map(|s| s.as_str()))
        ));
        if !f.severities.is_empty() {
            // On the rank, so the planner sees it is what the urgent order sorts on.
            let ranks: Vec<String> = f
                .severities
                .iter()
                .map(|s| severity_rank(*s).to_string())
                .collect();
            q.push(format!(" AND severity_rank IN ({})", ranks.join(", ")));
        }
        if !f.categories.is_empty() {
            q.push(format!(
                " AND category IN ({})",
                quoted(f.categories.iter().map(|c| c.as_str()))
            ));
        }
        if let Some(line) = &f.line {
            q.push(" AND line = ").push_bind(line.clone());
        }
        if let Some(caller) = &f.caller {
            q.push(" AND caller_e164 = ")
                .push_bind(caller.as_str().to_owned());
        }
        if let Some(reporter) = &f.reporter {
            q.push(" AND reporter = ")
                .push_bind(reporter.clone())
                .push(" AND (NOT anonymous OR unsealed_at IS NOT NULL)");
        }
        if let Some(t) = f.created_after {
            q.push(" AND created_at >= ").push_bind(t);
        }
        if let Some(t) = f.created_before {
            q.push(" AND created_at < ").push_bind(t);
        }
        if f.overdue_only {
            if !all_active(f) {
                q.push(" AND status IN ('open', 'acknowledged')");
            }
            q.push(" AND deadline_at < ").push_bind(as_of);
        }
        q
    }

    async fn fetch(
        &self,
        mut q: QueryBuilder<Postgres>,
    ) -> Result<Vec<IncidentRecord>, StorageError> {
        let rows: Vec<IncidentRow> = q.build_query_as().fetch_all(&self.pg).await?;
        rows.into_iter().map(IncidentRecord::try_from).collect()
    }

    /// Applies a change: locks the incident, lets `plan` decide from its current state, checks
    /// the transition, records the block (if any), updates the row and appends the events, in
    /// one transaction; then indexes the block. Returns the incident as it is afterwards.
    pub async fn change<F>(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        plan: F,
    ) -> Result<IncidentRecord, StorageError>
    where
        F: FnOnce(&IncidentRecord) -> Result<Plan, StorageError>,
    {
        let at = at.trunc_subsecs(6);
        let mut tx = self.pg.begin().await?;
        let Some((seq, prev)) = lock_head(&mut tx, id).await? else {
            return Err(StorageError::IncidentNotFound(id));
        };
        let row: IncidentRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let current = IncidentRecord::try_from(row)?;
        let Plan {
            transition,
            row,
            mut events,
            block,
        } = plan(&current)?;
        if current.redacted_at.is_some() && !matches!(row, RowChange::Unsealed { .. }) {
            // Anything added now (a statement, a reason) would outlive the retention period.
            return Err(StorageError::Refused(format!(
                "incident {id} was redacted by retention; it takes no further changes"
            )));
        }
        let status = match transition {
            Some(t) => review::transition(current.status, t)
                .map_err(|source| StorageError::Transition { id, source })?,
            None => current.status,
        };
        let mut rule = None;
        if let Some(block) = block {
            let r = self.rules.insert_in(&mut tx, block.rule, at).await?;
            events.push(EventDraft::system(
                "caller_blocked",
                json!({
                    "rule_id": r.id.to_string(),
                    "pattern": r.pattern.to_string(),
                    "scope": r.scope.kind(),
                    "scope_value": r.scope.value(),
                    "expires_at": r.expires_at.map(|t| t.to_rfc3339()),
                    "why": block.why,
                }),
            ));
            rule = Some(r);
        }
        let rule_id = rule.as_ref().map(|r| r.id.0);
        // Every statement binds $1 id, $2 new status, $3 time; then its own values.
        let base = |sql: &'static str| sqlx::query(sql).bind(id).bind(status.as_str()).bind(at);
        let q = match row {
            RowChange::None => None,
            RowChange::Acknowledged { by } => Some(
                base(
                    "UPDATE incidents SET status = $2, acknowledged_at = $3, acknowledged_by = $4 \
                     WHERE id = $1",
                )
                .bind(by),
            ),
            RowChange::Resolved {
                by,
                outcome,
                authority,
                reference,
                note,
            } => Some(
                base(
                    "UPDATE incidents SET status = $2, closed_at = $3, closed_by = $4, \
                     outcome = $5, authority = $6, reference = $7, resolution_note = $8, \
                     block_rule_id = $9 WHERE id = $1",
                )
                .bind(by)
                .bind(outcome)
                .bind(authority)
                .bind(reference)
                .bind(note)
                .bind(rule_id),
            ),
            RowChange::Dismissed { by, reason } => Some(
                base(
                    "UPDATE incidents SET status = $2, closed_at = $3, closed_by = $4, \
                     resolution_note = $5, outcome = NULL WHERE id = $1",
                )
                .bind(by)
                .bind(reason),
            ),
            RowChange::Reopened { deadline } => Some(
                base(
                    "UPDATE incidents SET status = $2, deadline_at = $4, \
                     deadline_escalated_at = NULL, acknowledged_at = NULL, \
                     acknowledged_by = NULL, closed_at = NULL, closed_by = NULL, outcome = NULL, \
                     authority = NULL, reference = NULL, block_rule_id = NULL, \
                     resolution_note = NULL WHERE id = $1",
                )
                .bind(deadline.trunc_subsecs(6)),
            ),
            RowChange::Unsealed { by } => Some(
                base(
                    "UPDATE incidents SET status = $2, unsealed_at = COALESCE(unsealed_at, $3), \
                     unsealed_by = COALESCE(unsealed_by, $4) WHERE id = $1",
                )
                .bind(by),
            ),
            RowChange::LegalHold { hold } => Some(
                base("UPDATE incidents SET status = $2, legal_hold = $4 WHERE id = $1").bind(hold),
            ),
            RowChange::Escalated => Some(base(
                "UPDATE incidents SET status = $2, escalated = true, deadline_escalated_at = $3 \
                 WHERE id = $1",
            )),
        };
        if let Some(q) = q {
            q.execute(&mut *tx).await?;
        }
        append_in(&mut tx, id, at, prev, seq, events).await?;
        tx.commit().await?;
        if let Some(rule) = &rule {
            self.rules.index_rule(rule).await;
        }
        self.incident(id).await
    }

    /// The evidence attached to an incident with this content hash, if any.
    pub async fn evidence_by_hash(
        &self,
        id: Uuid,
        sha256: &str,
    ) -> Result<Option<EvidenceRecord>, StorageError> {
        let event: Option<EventRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM incident_events \
             WHERE incident_id = $1 AND kind = 'evidence_attached' AND details->>'sha256' = $2"
        )))
        .bind(id)
        .bind(sha256)
        .fetch_optional(&self.pg)
        .await?;
        Ok(event.as_ref().and_then(EvidenceRecord::from_event))
    }

    /// OPEN critical incidents past their deadline and not escalated yet, oldest first; each
    /// replica takes different ones.
    pub async fn due_for_escalation(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM incidents WHERE status = 'open' AND severity = 'critical' \
               AND deadline_at < $1 AND deadline_escalated_at IS NULL \
             ORDER BY deadline_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pg)
        .await?)
    }

    /// Overdue incidents by severity, for the gauge.
    pub async fn count_overdue(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, i64)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT severity, count(*) FROM incidents \
             WHERE status IN ('open', 'acknowledged') AND deadline_at < $1 GROUP BY severity",
        )
        .bind(now)
        .fetch_all(&self.pg)
        .await?)
    }

    /// Incidents waiting for a decision, by status, for the gauge.
    pub async fn count_active(&self) -> Result<Vec<(String, i64)>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT status, count(*) FROM incidents \
             WHERE status IN ('open', 'acknowledged') GROUP BY status",
        )
        .fetch_all(&self.pg)
        .await?)
    }

    /// Figures over incidents created in `[from, to)`.
    pub async fn stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        top: i64,
    ) -> Result<Stats, StorageError> {
        let counts = |column: &'static str, extra: &'static str| {
            sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(format!(
                "SELECT {column}, count(*) FROM incidents \
                 WHERE created_at >= $1 AND created_at < $2 {extra} \
                 GROUP BY 1 ORDER BY 2 DESC, 1"
            )))
            .bind(from)
            .bind(to)
            .fetch_all(&self.pg)
        };
        let unsigned = |v: Vec<(String, i64)>| {
            v.into_iter()
                .map(|(k, n)| (k, n as u64))
                .collect::<Vec<_>>()
        };
        let by_category = unsigned(counts("category", "").await?);
        let by_severity = unsigned(counts("severity", "").await?);
        let by_status = unsigned(counts("status", "").await?);
        let by_outcome = unsigned(counts("outcome", "AND status = 'resolved'").await?);
        let percentiles = |end: &'static str, extra: &'static str| {
            sqlx::query_as::<_, (i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>)>(
                sqlx::AssertSqlSafe(format!(
                    "SELECT count(*), \
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY d), \
                       percentile_cont(0.9) WITHIN GROUP (ORDER BY d), \
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d) \
                     FROM (SELECT extract(epoch FROM {end} - created_at)::float8 AS d \
                           FROM incidents WHERE created_at >= $1 AND created_at < $2 \
                             AND {end} IS NOT NULL {extra}) t"
                )),
            )
            .bind(from)
            .bind(to)
            .fetch_one(&self.pg)
        };
        let to_percentiles = |(count, p50, p90, p99, max): (
            i64,
            Option<f64>,
            Option<f64>,
            Option<f64>,
            Option<f64>,
        )| {
            Percentiles {
                count: count as u64,
                p50: p50.unwrap_or(0.0),
                p90: p90.unwrap_or(0.0),
                p99: p99.unwrap_or(0.0),
                max: max.unwrap_or(0.0),
            }
        };
        let time_to_acknowledge = to_percentiles(percentiles("acknowledged_at", "").await?);
        let time_to_resolve =
            to_percentiles(percentiles("closed_at", "AND status = 'resolved'").await?);
        let top_callers: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT caller_e164, count(*), count(DISTINCT reporter) FROM incidents \
             WHERE created_at >= $1 AND created_at < $2 AND caller_e164 IS NOT NULL \
             GROUP BY caller_e164 ORDER BY 2 DESC, 1 LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(top)
        .fetch_all(&self.pg)
        .await?;
        Ok(Stats {
            total: by_status.iter().map(|(_, n)| n).sum::<u64>(),
            by_category,
            by_severity,
            by_outcome,
            by_status,
            time_to_acknowledge,
            time_to_resolve,
            top_callers: top_callers
                .into_iter()
                .map(|(c, n, r)| (c, n as u64, r as u64))
                .collect(),
        })
    }
}

impl IncidentStore {
    /// Incidents created in [from, to) per day in `time_zone` (an IANA name the caller
    /// checked), by category and by severity, with each day's median time to acknowledge.
    pub async fn daily_stats(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        time_zone: &str,
    ) -> Result<DailyStats, StorageError> {
        const DAY: &str = "to_char(created_at AT TIME ZONE $3, 'YYYY-MM-DD')";
        let counts = |column: &'static str| {
            sqlx::query_as::<_, (String, String, i64)>(sqlx::AssertSqlSafe(format!(
                "SELECT {DAY}, {column}, count(*) FROM incidents \
                 WHERE created_at >= $1 AND created_at < $2 GROUP BY 1, 2 ORDER BY 1, 2"
            )))
            .bind(from)
            .bind(to)
            .bind(time_zone)
            .fetch_all(&self.pg)
        };
        let unsigned = |v: Vec<(String, String, i64)>| {
            v.into_iter()
                .map(|(d, k, n)| (d, k, n as u64))
                .collect::<Vec<_>>()
        };
        let by_category = unsigned(counts("category").await?);
        let by_severity = unsigned(counts("severity").await?);
        let acknowledge_p50: Vec<(String, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DAY}, percentile_cont(0.5) WITHIN GROUP \
               (ORDER BY extract(epoch FROM acknowledged_at - created_at)::float8) \
             FROM incidents WHERE created_at >= $1 AND created_at < $2 \
               AND acknowledged_at IS NOT NULL GROUP BY 1 ORDER BY 1"
        )))
        .bind(from)
        .bind(to)
        .bind(time_zone)
        .fetch_all(&self.pg)
        .await?;
        Ok(DailyStats {
            by_category,
            by_severity,
            acknowledge_p50,
        })
    }
}

/// The filter asks only for statuses of the review queue (the default).
fn all_active(f: &IncidentFilter) -> bool {
    f.statuses.iter().all(IncidentStatus::is_active)
}

/// `'a', 'b'` from fixed names (never user input).
fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}
