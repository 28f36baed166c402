//! Reports as operators make them (EndAndFlag, FlagCall, ReportPastCall): the policy's
//! consequences, the incident written in one transaction, and, when Postgres cannot take it in
//! time, the report kept in the local spool and recorded by the drainer once it can, exactly
//! once (the request id is unique in the record).

use crate::{error::ApiError, grpc::convert, health::PostgresHealth};
use callwarden_domain::{
    call::LiveCall,
    incident::{BlockChoice, Category, Severity},
    phone::E164,
    policy::{Action, Policy, ReportFacts},
    review::Deadlines,
    rule::{Effect, NewRule, OperatorId, Pattern, Scope},
};
use callwarden_storage::{
    StorageError,
    incidents::{BlockDraft, EventDraft, IncidentStore, NewIncident, Recorded},
    live::LiveState,
    spool::Spool,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

/// Bound on the operator's note: a report, not a transcript.
const MAX_NOTE_LEN: usize = 4000;

/// A report as the console sent it, parsed.
#[derive(Clone)]
pub(crate) struct Report {
    pub call_id: String,
    pub operator: OperatorId,
    pub category: Category,
    pub severity: Severity,
    pub note: String,
    pub block: BlockChoice,
    pub anonymous: bool,
    pub request_id: String,
    pub debrief: bool,
}

/// The fields every report RPC shares, as they arrive; kept so in the spool, and parsed again
/// when drained, by the same rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SentReport {
    pub call_id: String,
    pub operator_id: String,
    pub category: i32,
    pub severity: i32,
    pub note: String,
    pub block: i32,
    pub anonymous: bool,
    pub request_id: String,
    pub debrief: bool,
}

/// The report fields of any of the three report requests (they share names and types).
macro_rules! sent_report {
    ($req:expr) => {{
        let req = $req;
        $crate::reports::SentReport {
            call_id: req.call_id,
            operator_id: req.operator_id,
            category: req.category,
            severity: req.severity,
            note: req.note,
            block: req.block,
            anonymous: req.anonymous,
            request_id: req.request_id,
            debrief: req.debrief,
        }
    }};
}
pub(crate) use sent_report;

pub(crate) fn operator(value: &str) -> Result<OperatorId, ApiError> {
    OperatorId::parse(value).map_err(|e| ApiError::invalid("operator_id", e))
}

impl SentReport {
    pub fn parse(&self) -> Result<Report, ApiError> {
        convert::identifier("call_id", &self.call_id)?;
        convert::identifier("request_id", &self.request_id)?;
        if self.note.chars().count() > MAX_NOTE_LEN {
            return Err(ApiError::invalid(
                "note",
                format!("is longer than {MAX_NOTE_LEN} characters"),
            ));
        }
        if self
            .note
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ApiError::invalid("note", "contains control characters"));
        }
        Ok(Report {
            call_id: self.call_id.clone(),
            operator: operator(&self.operator_id)?,
            category: convert::category("category", self.category)?,
            severity: convert::severity("severity", self.severity)?,
            note: self.note.trim().to_owned(),
            block: convert::block_choice("block", self.block)?,
            anonymous: self.anonymous,
            request_id: self.request_id.clone(),
            debrief: self.debrief,
        })
    }
}

/// The call a report is about, wherever it was found (live in Redis, or in the history).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CallFacts {
    pub call_id: String,
    pub switch_id: String,
    pub line: String,
    pub caller: Option<String>,
}

impl From<&LiveCall> for CallFacts {
    fn from(c: &LiveCall) -> Self {
        Self {
            call_id: c.call_id.clone(),
            switch_id: c.switch_id.clone(),
            line: c.line.clone(),
            caller: c.caller.clone(),
        }
    }
}

/// What was done for the operator before the report was written (EndAndFlag): the first
/// events of its chain.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Done {
    pub terminate: Option<TerminateSent>,
    pub cooldown_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TerminateSent {
    pub command_id: String,
    pub announcement: String,
    pub issued_at: DateTime<Utc>,
}

impl Done {
    fn events(&self) -> Vec<EventDraft> {
        let mut events = Vec::new();
        if let Some(t) = &self.terminate {
            events.push(EventDraft::system(
                "terminate_sent",
                json!({
                    "command_id": t.command_id,
                    "announcement": t.announcement,
                    "issued_at": t.issued_at.to_rfc3339(),
                }),
            ));
        }
        if let Some(until) = self.cooldown_until {
            events.push(EventDraft::system(
                "operator_cooldown",
                json!({ "until": until.to_rfc3339() }),
            ));
        }
        events
    }
}

/// A report in the spool: everything needed to record it as it would have been.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spooled {
    incident_id: Uuid,
    source: String,
    reported_at: DateTime<Utc>,
    report: SentReport,
    call: CallFacts,
    done: Done,
}

/// How a report ended up.
pub(crate) struct Outcome {
    pub id: Uuid,
    /// What the policy did; empty for a replay or a spooled report.
    pub actions: Vec<Action>,
    pub spooled: bool,
}

/// What one pass of the drainer did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub recorded: usize,
    pub left: usize,
}

pub struct Reports {
    pub live: LiveState,
    pub incidents: IncidentStore,
    pub policy: Policy,
    /// When supervisors' decisions on new incidents are due.
    pub deadlines: Deadlines,
    pub spool: Spool,
    pub postgres: Arc<PostgresHealth>,
    /// How long a report waits for Postgres before it is spooled.
    pub write_timeout: Duration,
}

impl Reports {
    /// Records the incident, the blocks and escalations the policy calls for, in one
    /// transaction. Returns the incident and what the policy did (nothing on a replay).
    pub(crate) async fn record(
        &self,
        id: Uuid,
        report: &Report,
        call: &CallFacts,
        source: &'static str,
        done: &Done,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, Vec<Action>), ApiError> {
        let caller = call.caller.as_deref().and_then(E164::from_canonical);
        let distinct_reporters = match &caller {
            Some(caller) => {
                let mut reporters = self
                    .incidents
                    .reporters_since(caller.as_str(), now - self.policy.repeat_window)
                    .await?;
                reporters.push(report.operator.to_string());
                reporters.sort();
                reporters.dedup();
                reporters.len()
            }
            None => 1,
        };
        let actions = self.policy.consequences(&ReportFacts {
            category: report.category,
            severity: report.severity,
            block: report.block,
            caller_known: caller.is_some(),
            distinct_reporters,
        });
        let incident = NewIncident {
            id,
            request_id: report.request_id.clone(),
            call_id: call.call_id.clone(),
            switch_id: call.switch_id.clone(),
            line: call.line.clone(),
            caller: call.caller.clone(),
            reporter: report.operator.to_string(),
            anonymous: report.anonymous,
            category: report.category,
            severity: report.severity,
            note: report.note.clone(),
            block: report.block,
            source,
            debrief: report.debrief,
            escalated: actions.contains(&Action::Escalate),
            needs_attention: actions.contains(&Action::Attention),
            deadline: self.deadlines.due(report.severity, now),
        };
        let mut before = vec![EventDraft {
            actor: report.operator.to_string(),
            kind: "reported",
            details: json!({
                "call_id": call.call_id,
                "switch_id": call.switch_id,
                "line": call.line,
                "caller": call.caller,
                "category": report.category.as_str(),
                "severity": report.severity.as_str(),
                "note": report.note,
                "block": report.block.as_str(),
                "anonymous": report.anonymous,
                "source": source,
            }),
        }];
        before.extend(done.events());
        let mut blocks = Vec::new();
        let mut after = Vec::new();
        for action in &actions {
            match (action, &caller) {
                (Action::OperatorBlock, Some(caller)) => blocks.push(BlockDraft {
                    rule: NewRule {
                        pattern: Pattern::Exact(caller.clone()),
                        effect: Effect::Block,
                        scope: Scope::Operator(report.operator.clone()),
                        ttl: self.policy.operator_block_ttl,
                        reason: format!(
                            "operator's own block after a report ({})",
                            report.category
                        ),
                        created_by: report.operator.to_string(),
                    },
                    why: vec!["operator_request"],
                }),
                (Action::GlobalBlock(why), Some(caller)) => blocks.push(BlockDraft {
                    rule: NewRule {
                        pattern: Pattern::Exact(caller.clone()),
                        effect: Effect::Block,
                        scope: Scope::Global,
                        ttl: Some(self.policy.global_block_ttl),
                        reason: format!(
                            "automatic temporary block after a report ({})",
                            report.category
                        ),
                        created_by: "system".into(),
                    },
                    why: why.iter().map(|w| w.as_str()).collect(),
                }),
                (Action::Escalate, _) => after.push(EventDraft::system(
                    "escalated",
                    json!({ "why": "category", "category": report.category.as_str() }),
                )),
                (Action::Attention, _) => after.push(EventDraft::system(
                    "attention_requested",
                    json!({ "why": "the caller may need help, not a block" }),
                )),
                _ => {}
            }
        }
        if report.debrief {
            after.push(EventDraft {
                actor: report.operator.to_string(),
                kind: "debrief_requested",
                details: json!({}),
            });
        }
        match self
            .incidents
            .record(&incident, now, before, blocks, after)
            .await?
        {
            Recorded::Existing { id } => Ok((id, Vec::new())),
            Recorded::New { id } => {
                metrics::counter!(
                    "callwarden_incidents_total",
                    "category" => report.category.as_str(),
                    "severity" => report.severity.as_str()
                )
                .increment(1);
                if let Some(caller) = &caller
                    && let Err(e) = self
                        .live
                        .record_flag(caller.as_str(), now, self.policy.recent_window)
                        .await
                {
                    // The record has it; the next rebuild of the flags restores it.
                    tracing::warn!(error = %e, "could not count the incident for recent_flags");
                }
                tracing::info!(incident_id = %id, category = report.category.as_str(), severity = report.severity.as_str(), source, "incident recorded");
                Ok((id, actions))
            }
        }
    }

    /// The incident id and reporter of a report waiting in the spool under `request_id`.
    pub(crate) async fn spooled(&self, request_id: &str) -> Option<(Uuid, String)> {
        let entry: Spooled = self.spool.get(request_id).await.ok()??;
        Some((entry.incident_id, entry.report.operator_id))
    }

    /// Records the report, or, if Postgres cannot take it within the write timeout (or is
    /// known to be away), keeps it durably in the spool. Either way the operator may be told it
    /// is saved; an error means neither worked.
    ///
    /// An attempt past the timeout is not cut off: it goes on in the background (a commit
    /// already sent must still write its blocks through to the index), and whichever of it and
    /// the drainer comes second finds the incident recorded.
    pub(crate) async fn record_or_spool(
        self: &Arc<Self>,
        sent: SentReport,
        report: &Report,
        call: CallFacts,
        source: &'static str,
        done: Done,
        now: DateTime<Utc>,
    ) -> Result<Outcome, ApiError> {
        // A retry of a spooled report keeps the id its operator was given.
        let already = self.spooled(&report.request_id).await;
        let id = already.as_ref().map_or_else(Uuid::now_v7, |(id, _)| *id);
        if self.postgres.is_up() {
            let attempt = tokio::spawn({
                let (this, report, call, done) =
                    (self.clone(), report.clone(), call.clone(), done.clone());
                async move { this.record(id, &report, &call, source, &done, now).await }
            });
            match tokio::time::timeout(self.write_timeout, attempt).await {
                Ok(Ok(Ok((id, actions)))) => {
                    return Ok(Outcome {
                        id,
                        actions,
                        spooled: false,
                    });
                }
                Ok(Ok(Err(ApiError::Storage(e)))) if e.is_postgres_unavailable() => {
                    self.postgres.failed();
                    tracing::warn!(error = %e, "Postgres cannot take the report; spooling it");
                }
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Err(e)) => {
                    return Err(ApiError::Storage(StorageError::Internal(format!(
                        "report writer: {e}"
                    ))));
                }
                Err(_) => tracing::warn!(
                    timeout_ms = self.write_timeout.as_millis() as u64,
                    "Postgres did not take the report in time; spooling it too"
                ),
            }
        }
        if already.is_some() {
            // Kept as first taken: reported when the operator first pressed.
            return Ok(Outcome {
                id,
                actions: Vec::new(),
                spooled: true,
            });
        }
        let entry = Spooled {
            incident_id: id,
            source: source.to_owned(),
            reported_at: now,
            report: sent,
            call,
            done,
        };
        if let Err(e) = self.spool.put(&report.request_id, &entry).await {
            tracing::error!(error = %e, dir = %self.spool.dir().display(), "cannot spool a report");
            return Err(ApiError::Unavailable(
                "the report could not be saved (the record and the spool are both unavailable); \
                 retry with the same request_id"
                    .into(),
            ));
        }
        metrics::counter!("callwarden_reports_spooled_total", "source" => source).increment(1);
        if let Ok(waiting) = self.spool.len() {
            metrics::gauge!("callwarden_reports_spooled").set(waiting as f64);
        }
        tracing::info!(incident_id = %id, source, "report spooled until Postgres is back");
        Ok(Outcome {
            id,
            actions: Vec::new(),
            spooled: true,
        })
    }

    /// Offers every spooled report to Postgres, oldest first, removing each once recorded (or
    /// found recorded: a retry or another drainer got there first). Stops at the first sign
    /// that Postgres is away.
    pub async fn drain(&self) -> std::io::Result<Drained> {
        let entries = self.spool.entries::<Spooled>().await?;
        let mut pass = Drained {
            recorded: 0,
            left: entries.len(),
        };
        for (path, entry) in entries {
            let recorded = match entry {
                Ok(entry) => self.record_spooled(&entry).await,
                Err(e) => Err(ApiError::Storage(StorageError::Internal(format!(
                    "unreadable entry: {e}"
                )))),
            };
            match recorded {
                Ok(()) => {
                    self.spool.remove(&path).await?;
                    pass.recorded += 1;
                    pass.left -= 1;
                    metrics::counter!("callwarden_reports_drained_total").increment(1);
                }
                Err(ApiError::Storage(e)) if e.is_postgres_unavailable() => {
                    self.postgres.failed();
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, entry = %path.display(), "a spooled report cannot be recorded; set aside");
                    metrics::counter!("callwarden_reports_rejected_total").increment(1);
                    self.spool.reject(&path).await?;
                    pass.left -= 1;
                }
            }
        }
        metrics::gauge!("callwarden_reports_spooled").set(pass.left as f64);
        Ok(pass)
    }

    async fn record_spooled(&self, entry: &Spooled) -> Result<(), ApiError> {
        let source = match entry.source.as_str() {
            "end_and_flag" => "end_and_flag",
            "flag_call" => "flag_call",
            other => {
                return Err(ApiError::Storage(StorageError::Internal(format!(
                    "unknown source {other:?}"
                ))));
            }
        };
        let report = entry.report.parse()?;
        self.record(
            entry.incident_id,
            &report,
            &entry.call,
            source,
            &entry.done,
            entry.reported_at,
        )
        .await?;
        tracing::info!(incident_id = %entry.incident_id, "spooled report recorded");
        Ok(())
    }
}
