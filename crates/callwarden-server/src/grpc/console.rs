//! `callwarden.v1.Console`: what operators press. The order in EndAndFlag is the point of the
//! product: the TERMINATE goes out first, then the incident is written.

use super::convert;
use crate::{auth, clock::Clock, error::ApiError};
use callwarden_domain::{
    call::{CallAccess, Command, CommandKind, LiveCall},
    incident::{BlockChoice, Category, Severity},
    phone::E164,
    policy::{Action, Policy, ReportFacts},
    review::Deadlines,
    rule::{Effect, NewRule, OperatorId, Pattern, Scope},
};
use callwarden_proto::v1::{self as pb, console_server};
use callwarden_storage::{
    incidents::{BlockDraft, EventDraft, IncidentStore, NewIncident, Recorded},
    live::{Issued, LiveState},
};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::{sync::Arc, time::Instant};
use tonic::{Request, Response, Status};
use uuid::Uuid;

/// Bound on the operator's note: a report, not a transcript.
const MAX_NOTE_LEN: usize = 4000;

pub struct ConsoleService {
    pub live: LiveState,
    pub incidents: IncidentStore,
    pub policy: Policy,
    /// When supervisors' decisions on new incidents are due.
    pub deadlines: Deadlines,
    pub clock: Arc<dyn Clock>,
    pub terminate_announcement: String,
    pub warning_announcement: String,
}

/// A report as the console sent it, parsed.
struct Report {
    call_id: String,
    operator: OperatorId,
    category: Category,
    severity: Severity,
    note: String,
    block: BlockChoice,
    anonymous: bool,
    request_id: String,
    debrief: bool,
}

/// The report fields of any of the three report requests (they share names and types).
macro_rules! raw_report {
    ($req:expr) => {
        RawReport {
            call_id: &$req.call_id,
            operator_id: &$req.operator_id,
            category: $req.category,
            severity: $req.severity,
            note: &$req.note,
            block: $req.block,
            anonymous: $req.anonymous,
            request_id: &$req.request_id,
            debrief: $req.debrief,
        }
    };
}

/// The fields every report RPC shares, as they arrive.
struct RawReport<'a> {
    call_id: &'a str,
    operator_id: &'a str,
    category: i32,
    severity: i32,
    note: &'a str,
    block: i32,
    anonymous: bool,
    request_id: &'a str,
    debrief: bool,
}

fn operator(value: &str) -> Result<OperatorId, ApiError> {
    OperatorId::parse(value).map_err(|e| ApiError::invalid("operator_id", e))
}

impl RawReport<'_> {
    fn parse(&self) -> Result<Report, ApiError> {
        convert::identifier("call_id", self.call_id)?;
        convert::identifier("request_id", self.request_id)?;
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
            call_id: self.call_id.to_owned(),
            operator: operator(self.operator_id)?,
            category: convert::category("category", self.category)?,
            severity: convert::severity("severity", self.severity)?,
            note: self.note.trim().to_owned(),
            block: convert::block_choice("block", self.block)?,
            anonymous: self.anonymous,
            request_id: self.request_id.to_owned(),
            debrief: self.debrief,
        })
    }
}

/// The call a report is about, wherever it was found (live in Redis, or in the history).
struct CallFacts {
    call_id: String,
    switch_id: String,
    line: String,
    caller: Option<String>,
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

impl From<CallAccess> for ApiError {
    fn from(e: CallAccess) -> Self {
        ApiError::FailedPrecondition(e.to_string())
    }
}

impl ConsoleService {
    /// The live call, if `operator` answered it and it is still on.
    async fn operators_live_call(
        &self,
        call_id: &str,
        operator: &OperatorId,
    ) -> Result<LiveCall, ApiError> {
        let call = self
            .live
            .call(call_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("call {call_id:?} is not live")))?;
        call.check_operator(operator.as_str())?;
        Ok(call)
    }

    /// The live call the report is about, or, when it cannot be acted on, the incident an
    /// earlier request with the same id made (a double click may arrive after the first click
    /// ended the call). Another operator's request id is refused.
    async fn call_or_replay(&self, report: &Report) -> Result<Result<LiveCall, Uuid>, ApiError> {
        let refused = match self
            .operators_live_call(&report.call_id, &report.operator)
            .await
        {
            Ok(call) => return Ok(Ok(call)),
            Err(e) => e,
        };
        match self.incidents.by_request(&report.request_id).await? {
            Some((id, reporter)) if reporter == report.operator.as_str() => Ok(Err(id)),
            Some(_) => Err(ApiError::FailedPrecondition(format!(
                "request_id {:?} was used for another report",
                report.request_id
            ))),
            None => Err(refused),
        }
    }

    /// Records the incident, the blocks and escalations the policy calls for, in one
    /// transaction. Returns the incident and what the policy did (nothing on a replay).
    async fn record(
        &self,
        report: &Report,
        call: CallFacts,
        source: &'static str,
        first_events: Vec<EventDraft>,
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
        before.extend(first_events);
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

    fn command(
        &self,
        call: &LiveCall,
        kind: CommandKind,
        announcement: String,
        now: DateTime<Utc>,
    ) -> Command {
        Command {
            id: Uuid::now_v7().to_string(),
            call_id: call.call_id.clone(),
            switch_id: call.switch_id.clone(),
            kind,
            announcement,
            issued_at: now,
        }
    }

    async fn end_and_flag(
        &self,
        req: pb::EndAndFlagRequest,
    ) -> Result<pb::EndAndFlagResponse, ApiError> {
        let started = Instant::now();
        let report = raw_report!(req).parse()?;
        let now = self.clock.now();
        let call = match self.call_or_replay(&report).await? {
            Ok(call) => call,
            Err(id) => {
                return Ok(pb::EndAndFlagResponse {
                    incident_id: id.to_string(),
                    terminate_sent: true,
                    cooldown_until: None,
                    actions: Vec::new(),
                });
            }
        };
        // Operator safety first: the call ends before anything is written.
        let terminate = self.command(
            &call,
            CommandKind::Terminate,
            self.terminate_announcement.clone(),
            now,
        );
        let terminate = match self.live.issue(&call, terminate).await? {
            Issued::New(c) | Issued::Existing(c) => c,
            Issued::NoCall => {
                return Err(ApiError::NotFound(format!(
                    "call {:?} is not live",
                    call.call_id
                )));
            }
        };
        metrics::histogram!("callwarden_button_to_command_seconds").record(started.elapsed());
        let cooldown_until = self
            .live
            .set_cooldown(report.operator.as_str(), now + self.policy.cooldown)
            .await?;
        let sent = EventDraft::system(
            "terminate_sent",
            json!({
                "command_id": terminate.id,
                "announcement": terminate.announcement,
                "issued_at": terminate.issued_at.to_rfc3339(),
            }),
        );
        let cooldown = EventDraft::system(
            "operator_cooldown",
            json!({ "until": cooldown_until.to_rfc3339() }),
        );
        let (id, actions) = self
            .record(
                &report,
                CallFacts::from(&call),
                "end_and_flag",
                vec![sent, cooldown],
                now,
            )
            .await?;
        Ok(pb::EndAndFlagResponse {
            incident_id: id.to_string(),
            terminate_sent: true,
            cooldown_until: Some(convert::timestamp(cooldown_until)),
            actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
        })
    }

    async fn flag_call(&self, req: pb::FlagCallRequest) -> Result<pb::FlagCallResponse, ApiError> {
        let report = raw_report!(req).parse()?;
        let now = self.clock.now();
        let call = match self.call_or_replay(&report).await? {
            Ok(call) => call,
            Err(id) => {
                return Ok(pb::FlagCallResponse {
                    incident_id: id.to_string(),
                    actions: Vec::new(),
                });
            }
        };
        let (id, actions) = self
            .record(
                &report,
                CallFacts::from(&call),
                "flag_call",
                Vec::new(),
                now,
            )
            .await?;
        Ok(pb::FlagCallResponse {
            incident_id: id.to_string(),
            actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
        })
    }

    async fn report_past_call(
        &self,
        req: pb::ReportPastCallRequest,
    ) -> Result<pb::ReportPastCallResponse, ApiError> {
        let report = raw_report!(req).parse()?;
        let now = self.clock.now();
        let call = self
            .incidents
            .answered_call(&report.call_id, report.operator.as_str())
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "call {:?} is not in your call history",
                    report.call_id
                ))
            })?;
        let facts = CallFacts {
            call_id: call.call_id,
            switch_id: call.switch_id,
            line: call.line,
            caller: call.caller,
        };
        let (id, actions) = self
            .record(&report, facts, "report_past_call", Vec::new(), now)
            .await?;
        Ok(pb::ReportPastCallResponse {
            incident_id: id.to_string(),
            actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
        })
    }
}

/// The request with `operator_id` bound to the caller: their own pseudonym (an admin may name
/// anyone).
macro_rules! operator_bound {
    ($request:expr) => {
        auth::bound($request, auth::Role::Operator, "operator_id", |r| {
            &mut r.operator_id
        })
    };
}

#[tonic::async_trait]
impl console_server::Console for ConsoleService {
    async fn end_and_flag(
        &self,
        request: Request<pb::EndAndFlagRequest>,
    ) -> Result<Response<pb::EndAndFlagResponse>, Status> {
        Ok(Response::new(
            ConsoleService::end_and_flag(self, operator_bound!(request)?).await?,
        ))
    }

    async fn flag_call(
        &self,
        request: Request<pb::FlagCallRequest>,
    ) -> Result<Response<pb::FlagCallResponse>, Status> {
        Ok(Response::new(
            ConsoleService::flag_call(self, operator_bound!(request)?).await?,
        ))
    }

    async fn warn_caller(
        &self,
        request: Request<pb::WarnCallerRequest>,
    ) -> Result<Response<pb::WarnCallerResponse>, Status> {
        let req = operator_bound!(request)?;
        convert::identifier("call_id", &req.call_id)?;
        let op = operator(&req.operator_id)?;
        if !req.announcement.is_empty() {
            convert::identifier("announcement", &req.announcement)?;
        }
        let call = self.operators_live_call(&req.call_id, &op).await?;
        let announcement = if req.announcement.is_empty() {
            self.warning_announcement.clone()
        } else {
            req.announcement
        };
        let command = self.command(
            &call,
            CommandKind::PlayWarning,
            announcement,
            self.clock.now(),
        );
        match self
            .live
            .issue(&call, command)
            .await
            .map_err(ApiError::from)?
        {
            Issued::New(c) | Issued::Existing(c) => {
                Ok(Response::new(pb::WarnCallerResponse { command_id: c.id }))
            }
            Issued::NoCall => {
                Err(ApiError::NotFound(format!("call {:?} is not live", call.call_id)).into())
            }
        }
    }

    async fn report_past_call(
        &self,
        request: Request<pb::ReportPastCallRequest>,
    ) -> Result<Response<pb::ReportPastCallResponse>, Status> {
        Ok(Response::new(
            ConsoleService::report_past_call(self, operator_bound!(request)?).await?,
        ))
    }

    async fn get_operator_status(
        &self,
        request: Request<pb::GetOperatorStatusRequest>,
    ) -> Result<Response<pb::GetOperatorStatusResponse>, Status> {
        let op = operator(&operator_bound!(request)?.operator_id)?;
        let until = self
            .live
            .cooldown(op.as_str(), self.clock.now())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetOperatorStatusResponse {
            cooling_down: until.is_some(),
            cooldown_until: until.map(convert::timestamp),
        }))
    }
}
