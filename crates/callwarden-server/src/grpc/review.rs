//! `callwarden.v1.Review`: the supervisors' queue, workflow, statements, evidence, hand-over
//! reports and statistics. Requests are parsed here; the workflow's rules live in the domain
//! (`review::transition`) and every change is one transaction in the store.

use super::convert;
use crate::{
    auth,
    clock::Clock,
    error::ApiError,
    feed::IncidentFeed,
    i18n::{Catalogues, Lang, Speaker},
};
use callwarden_domain::{
    line::LineDirectory,
    phone::E164,
    report::{
        ACTION_KINDS, IncidentReport, REPORT_FORMAT, ReportEvent, ReportEvidence, ReportIncident,
        ReportReview, ReportSeal, ReportStatement, WhatHappened,
    },
    review::{
        Deadlines, EvidenceUri, IncidentStatus, Outcome, Seal, Sha256Hex, StatementRole, Transition,
    },
    rule::{Effect, NewRule, OperatorId, Pattern, Rule, Scope},
};
use callwarden_proto::v1::{self as pb, review_server};
use callwarden_storage::{
    StorageError,
    audit::ReadFilter,
    incidents::{BlockDraft, EventDraft, IncidentStore},
    review::{
        Cursor, EventRecord, EvidenceRecord, IncidentFilter, IncidentRecord, Order, Plan,
        RowChange, StatementRecord, chain_verifies,
    },
};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

/// Bounds on free text: a statement is a page, a reason a few lines.
const MAX_STATEMENT_LEN: usize = 8000;
const MAX_REASON_LEN: usize = 2000;
const MAX_NAME_LEN: usize = 200;
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;
const MAX_READS_PAGE: u32 = 500;
/// The caller's other incidents shown with one incident.
const CALLER_HISTORY: i64 = 50;
/// Longest recording: a day.
const MAX_DURATION_SECONDS: u32 = 24 * 3600;
/// Longest block decided in review: ten years; longer is for good (0).
const MAX_BLOCK_TTL_SECONDS: u32 = 10 * 366 * 24 * 3600;
/// Buffer of a WatchIncidents stream.
const WATCH_BUFFER: usize = 256;

pub struct ReviewService {
    pub incidents: IncidentStore,
    pub lines: Arc<LineDirectory>,
    pub deadlines: Deadlines,
    pub clock: Arc<dyn Clock>,
    pub feed: IncidentFeed,
    pub shutdown: CancellationToken,
    /// Caps the change streams each supervisor holds.
    pub streams: auth::StreamSlots,
    /// The languages a Markdown report can be written in.
    pub catalogues: Arc<Catalogues>,
}

fn incident_id(value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value)
        .map_err(|_| ApiError::invalid("incident_id", format!("{value:?} is not an incident id")))
}

/// The fields of a supervisor's act that needs a reason (dismiss, reopen, unseal, legal hold):
/// the incident, who acts, why.
fn reasoned_act(
    incident: &str,
    supervisor: &str,
    reason: &str,
) -> Result<(Uuid, String, String), ApiError> {
    Ok((
        incident_id(incident)?,
        pseudonym("supervisor_id", supervisor)?,
        convert::required_text("reason", reason, MAX_REASON_LEN)?,
    ))
}

fn pseudonym(field: &str, value: &str) -> Result<String, ApiError> {
    OperatorId::parse(value)
        .map(|p| p.to_string())
        .map_err(|e| ApiError::invalid(field, e))
}

fn status(field: &str, value: i32) -> Result<IncidentStatus, ApiError> {
    match pb::IncidentStatus::try_from(value) {
        Ok(pb::IncidentStatus::Open) => Ok(IncidentStatus::Open),
        Ok(pb::IncidentStatus::Acknowledged) => Ok(IncidentStatus::Acknowledged),
        Ok(pb::IncidentStatus::Resolved) => Ok(IncidentStatus::Resolved),
        Ok(pb::IncidentStatus::Dismissed) => Ok(IncidentStatus::Dismissed),
        Ok(pb::IncidentStatus::Unspecified) => Err(ApiError::invalid(field, "must be set")),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("{value} is not an IncidentStatus"),
        )),
    }
}

fn status_to_wire(s: IncidentStatus) -> pb::IncidentStatus {
    match s {
        IncidentStatus::Open => pb::IncidentStatus::Open,
        IncidentStatus::Acknowledged => pb::IncidentStatus::Acknowledged,
        IncidentStatus::Resolved => pb::IncidentStatus::Resolved,
        IncidentStatus::Dismissed => pb::IncidentStatus::Dismissed,
    }
}

fn outcome_to_wire(name: &str) -> pb::Outcome {
    match name {
        "no_action" => pb::Outcome::NoAction,
        "warning_issued" => pb::Outcome::WarningIssued,
        "caller_blocked" => pb::Outcome::CallerBlocked,
        "referred_to_authorities" => pb::Outcome::ReferredToAuthorities,
        "mediated" => pb::Outcome::Mediated,
        _ => pb::Outcome::Unspecified,
    }
}

/// The outcome and its details, checked together: details that do not belong to the outcome
/// are refused rather than silently dropped.
fn outcome(req: &pb::ResolveIncidentRequest) -> Result<Outcome, ApiError> {
    let refuse_unless = |ok: bool, field: &str, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(ApiError::invalid(field, format!("only for {what}")))
        }
    };
    let parsed = pb::Outcome::try_from(req.outcome)
        .map_err(|_| ApiError::invalid("outcome", format!("{} is not an Outcome", req.outcome)))?;
    let blocked = parsed == pb::Outcome::CallerBlocked;
    let referred = parsed == pb::Outcome::ReferredToAuthorities;
    refuse_unless(
        blocked || req.block_ttl_seconds == 0,
        "block_ttl_seconds",
        "OUTCOME_CALLER_BLOCKED",
    )?;
    refuse_unless(
        referred || req.authority.is_empty(),
        "authority",
        "OUTCOME_REFERRED_TO_AUTHORITIES",
    )?;
    refuse_unless(
        referred || req.reference.is_empty(),
        "reference",
        "OUTCOME_REFERRED_TO_AUTHORITIES",
    )?;
    Ok(match parsed {
        pb::Outcome::Unspecified => return Err(ApiError::invalid("outcome", "must be set")),
        pb::Outcome::NoAction => Outcome::NoAction,
        pb::Outcome::WarningIssued => Outcome::WarningIssued,
        pb::Outcome::Mediated => Outcome::Mediated,
        pb::Outcome::CallerBlocked => {
            if req.block_ttl_seconds > MAX_BLOCK_TTL_SECONDS {
                return Err(ApiError::invalid(
                    "block_ttl_seconds",
                    format!(
                        "{} is more than ten years; use 0 to block for good",
                        req.block_ttl_seconds
                    ),
                ));
            }
            Outcome::CallerBlocked {
                ttl: (req.block_ttl_seconds > 0)
                    .then(|| Duration::seconds(req.block_ttl_seconds.into())),
            }
        }
        pb::Outcome::ReferredToAuthorities => Outcome::Referred {
            authority: convert::required_text("authority", &req.authority, MAX_NAME_LEN)?,
            reference: convert::required_text("reference", &req.reference, MAX_NAME_LEN)?,
        },
    })
}

/// What a supervisor is shown of an incident: a sealed reference wherever an anonymous
/// reporter's pseudonym would be, until someone unsealed it.
struct View {
    /// (pseudonym, sealed reference) of the incident's own reporter while sealed.
    seals: Vec<(String, String)>,
    /// The caller's other sealed reporters, whose "block from me" rules would name them. Their
    /// rules show "sealed", not a reference, so nothing links them to a report.
    rule_seals: Vec<String>,
}

impl View {
    fn of(record: &IncidentRecord) -> Self {
        Self {
            seals: record
                .seal_reference()
                .map(|r| (record.reporter.clone(), r.to_owned()))
                .into_iter()
                .collect(),
            rule_seals: Vec::new(),
        }
    }

    fn sealed(&self) -> bool {
        !self.seals.is_empty()
    }

    fn with_rule_seals(mut self, reporters: Vec<String>) -> Self {
        self.rule_seals = reporters;
        self
    }

    fn text(&self, s: &str) -> String {
        self.seals
            .iter()
            .find(|(pseudonym, _)| pseudonym == s)
            .map_or_else(|| s.to_owned(), |(_, reference)| reference.clone())
    }

    fn json(&self, v: &serde_json::Value) -> serde_json::Value {
        self.seals
            .iter()
            .fold(v.clone(), |v, (pseudonym, reference)| {
                Seal {
                    pseudonym,
                    reference,
                }
                .json(&v)
            })
    }

    fn event(&self, e: &EventRecord) -> pb::IncidentEvent {
        pb::IncidentEvent {
            seq: e.seq as u32,
            at: Some(convert::timestamp(e.at)),
            actor: self.text(&e.actor),
            kind: e.kind.clone(),
            details_json: self.json(&e.details).to_string(),
            prev_hash: hex::encode(&e.prev_hash),
            hash: hex::encode(&e.hash),
            hash_scheme: e.scheme as u32,
            salt: e.salt.as_deref().map(hex::encode).unwrap_or_default(),
        }
    }

    fn rule(&self, r: &Rule) -> pb::Rule {
        let seal = |s: &str| {
            if self.rule_seals.iter().any(|p| p == s) && self.text(s) == s {
                "sealed".to_owned()
            } else {
                self.text(s)
            }
        };
        let mut wire = convert::rule_to_wire(r);
        if let Some(scope) = wire.scope.as_mut() {
            scope.value = seal(&scope.value);
        }
        wire.created_by = seal(&wire.created_by);
        wire.removed_by = seal(&wire.removed_by);
        wire
    }

    fn statement(&self, incident: Uuid, s: &StatementRecord) -> pb::Statement {
        pb::Statement {
            id: s.id.clone(),
            incident_id: incident.to_string(),
            author: self.text(&s.author),
            role: match s.role.parse() {
                Ok(StatementRole::Supervisor) => pb::StatementRole::Supervisor,
                Ok(StatementRole::Witness) => pb::StatementRole::Witness,
                Err(_) => pb::StatementRole::Unspecified,
            }
            .into(),
            text: s.text.clone(),
            at: Some(convert::timestamp(s.at)),
        }
    }

    fn evidence(&self, incident: Uuid, e: &EvidenceRecord) -> pb::Evidence {
        pb::Evidence {
            id: e.id.clone(),
            incident_id: incident.to_string(),
            uri: e.uri.clone(),
            sha256: e.sha256.clone(),
            duration_seconds: e.duration_seconds,
            description: e.description.clone(),
            attached_by: self.text(&e.attached_by),
            attached_at: Some(convert::timestamp(e.attached_at)),
            captured_at: e.captured_at.map(convert::timestamp),
        }
    }
}

/// An incident as supervisors see it (sealed where it must be), with `overdue` judged at `now`.
pub fn incident_to_wire(r: &IncidentRecord, now: DateTime<Utc>) -> pb::Incident {
    let view = View::of(r);
    let ts = |t: Option<DateTime<Utc>>| t.map(convert::timestamp);
    pb::Incident {
        id: r.id.to_string(),
        status: status_to_wire(r.status).into(),
        category: convert::category_to_wire(r.category).into(),
        severity: convert::severity_to_wire(r.severity).into(),
        line: r.line.clone(),
        caller_e164: r.caller.clone().unwrap_or_default(),
        reporter: view.text(&r.reporter),
        reporter_sealed: view.sealed(),
        note: r.note.clone(),
        source: r.source.clone(),
        call_id: r.call_id.clone(),
        switch_id: r.switch_id.clone(),
        block: convert::block_choice_to_wire(r.block).into(),
        debrief_requested: r.debrief_requested,
        escalated: r.escalated,
        needs_attention: r.needs_attention,
        created_at: Some(convert::timestamp(r.created_at)),
        deadline: Some(convert::timestamp(r.deadline)),
        overdue: r.overdue(now),
        acknowledged_at: ts(r.acknowledged_at),
        acknowledged_by: r.acknowledged_by.clone().unwrap_or_default(),
        closed_at: ts(r.closed_at),
        closed_by: r.closed_by.clone().unwrap_or_default(),
        outcome: r
            .outcome
            .as_deref()
            .map_or(pb::Outcome::Unspecified, outcome_to_wire)
            .into(),
        authority: r.authority.clone().unwrap_or_default(),
        reference: r.reference.clone().unwrap_or_default(),
        block_rule_id: r.block_rule_id.map(|id| id.to_string()).unwrap_or_default(),
        resolution_note: r.resolution_note.clone().unwrap_or_default(),
        version: r.version as u32,
        chain_hash: hex::encode(&r.chain_hash),
        legal_hold: r.legal_hold,
        redacted_at: ts(r.redacted_at),
    }
}

/// What a page token carries: where the last page ended, the time overdue was judged at, and
/// a fingerprint of the filters and order it belongs to.
#[derive(Serialize, Deserialize)]
struct PageToken {
    /// Filters and order, hashed.
    f: String,
    /// `as_of`, microseconds since the epoch.
    t: i64,
    o: bool,
    r: i16,
    c: i64,
    i: Uuid,
}

impl PageToken {
    fn encode(fingerprint: &str, as_of: DateTime<Utc>, c: Cursor) -> String {
        let token = PageToken {
            f: fingerprint.to_owned(),
            t: as_of.timestamp_micros(),
            o: c.overdue,
            r: c.severity_rank,
            c: c.created_at.timestamp_micros(),
            i: c.id,
        };
        hex::encode(serde_json::to_vec(&token).expect("a token serialises"))
    }

    fn decode(fingerprint: &str, s: &str) -> Result<(DateTime<Utc>, Cursor), ApiError> {
        let bad = || ApiError::invalid("page_token", format!("{s:?} is not a page token"));
        let bytes = hex::decode(s).map_err(|_| bad())?;
        let token: PageToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if token.f != fingerprint {
            return Err(ApiError::invalid(
                "page_token",
                "belongs to other filters or another order; start again without a token",
            ));
        }
        let time = |us| DateTime::from_timestamp_micros(us).ok_or_else(bad);
        Ok((
            time(token.t)?,
            Cursor {
                overdue: token.o,
                severity_rank: token.r,
                created_at: time(token.c)?,
                id: token.i,
            },
        ))
    }
}

impl ReviewService {
    fn filter(&self, req: &pb::ListIncidentsRequest) -> Result<IncidentFilter, ApiError> {
        let region = self.lines.default_policy().region;
        Ok(IncidentFilter {
            statuses: req
                .statuses
                .iter()
                .map(|v| status("statuses", *v))
                .collect::<Result<_, _>>()?,
            severities: req
                .severities
                .iter()
                .map(|v| convert::severity("severities", *v))
                .collect::<Result<_, _>>()?,
            categories: req
                .categories
                .iter()
                .map(|v| convert::category("categories", *v))
                .collect::<Result<_, _>>()?,
            line: (!req.line.is_empty())
                .then(|| convert::line(&req.line, region).map(|l| l.to_string()))
                .transpose()?,
            caller: (!req.caller.is_empty())
                .then(|| {
                    E164::parse(&req.caller, region).map_err(|e| ApiError::invalid("caller", e))
                })
                .transpose()?,
            reporter: (!req.operator_id.is_empty())
                .then(|| pseudonym("operator_id", &req.operator_id))
                .transpose()?,
            created_after: convert::time("created_after", req.created_after.as_ref())?,
            created_before: convert::time("created_before", req.created_before.as_ref())?,
            overdue_only: req.overdue_only,
        })
    }

    /// Logs that `who` is shown these incidents, before they are: an answer that could not be
    /// logged is not given.
    async fn audit(
        &self,
        who: Option<&auth::Principal>,
        rpc: &str,
        ids: &[Uuid],
    ) -> Result<(), ApiError> {
        let who = who.ok_or_else(|| ApiError::PermissionDenied("no credentials".into()))?;
        self.incidents
            .record_reads(&who.subject, who.role.as_str(), rpc, ids, self.clock.now())
            .await?;
        Ok(())
    }

    async fn list(
        &self,
        who: Option<&auth::Principal>,
        req: pb::ListIncidentsRequest,
    ) -> Result<pb::ListIncidentsResponse, ApiError> {
        let filter = self.filter(&req)?;
        let order = match pb::IncidentOrder::try_from(req.order) {
            Ok(pb::IncidentOrder::Urgent) => Order::Urgent,
            Ok(pb::IncidentOrder::Newest) => Order::Newest,
            Err(_) => {
                return Err(ApiError::invalid(
                    "order",
                    format!("{} is not an IncidentOrder", req.order),
                ));
            }
        };
        let limit = convert::page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE)? as usize;
        let fingerprint = hex::encode(&Sha256::digest(format!("{filter:?}{order:?}"))[..8]);
        let (as_of, after) = if req.page_token.is_empty() {
            (self.clock.now(), None)
        } else {
            let (as_of, cursor) = PageToken::decode(&fingerprint, &req.page_token)?;
            (as_of, Some(cursor))
        };
        let mut records = self
            .incidents
            .list(&filter, order, as_of, after, limit)
            .await?;
        let next_page_token = if records.len() > limit {
            records.truncate(limit);
            let last = records.last().expect("a full page");
            PageToken::encode(&fingerprint, as_of, Cursor::after(last, as_of))
        } else {
            String::new()
        };
        let status_counts = if req.with_status_counts {
            let closed_since = convert::time("closed_since", req.closed_since.as_ref())?
                .unwrap_or(as_of - Duration::hours(24));
            self.incidents
                .count_by_status(&filter, as_of, closed_since)
                .await?
                .into_iter()
                .map(|(key, count)| pb::Count { key, count })
                .collect()
        } else {
            Vec::new()
        };
        let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
        self.audit(who, "ListIncidents", &ids).await?;
        Ok(pb::ListIncidentsResponse {
            incidents: records.iter().map(|r| incident_to_wire(r, as_of)).collect(),
            next_page_token,
            status_counts,
        })
    }

    async fn detail(
        &self,
        who: Option<&auth::Principal>,
        id: Uuid,
    ) -> Result<pb::IncidentDetail, ApiError> {
        let now = self.clock.now();
        let record = self.incidents.incident(id).await?;
        let events = self.incidents.events(id).await?;
        let caller = record.caller.as_deref().and_then(E164::from_canonical);
        let (others, rules, seals) = match &caller {
            Some(c) => (
                self.incidents
                    .caller_incidents(c.as_str(), id, CALLER_HISTORY)
                    .await?,
                self.incidents.rules_for(c, now).await?,
                self.incidents.sealed_reporters(c.as_str()).await?,
            ),
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        let view = View::of(&record).with_rule_seals(seals);
        let shown: Vec<Uuid> = std::iter::once(id)
            .chain(others.iter().map(|r| r.id))
            .collect();
        self.audit(who, "GetIncident", &shown).await?;
        Ok(pb::IncidentDetail {
            incident: Some(incident_to_wire(&record, now)),
            chain_verified: chain_verifies(id, &events),
            statements: events
                .iter()
                .filter_map(StatementRecord::from_event)
                .map(|s| view.statement(id, &s))
                .collect(),
            evidence: events
                .iter()
                .filter_map(EvidenceRecord::from_event)
                .map(|e| view.evidence(id, &e))
                .collect(),
            events: events.iter().map(|e| view.event(e)).collect(),
            caller_incidents: others.iter().map(|r| incident_to_wire(r, now)).collect(),
            active_rules: rules.iter().map(|r| view.rule(r)).collect(),
        })
    }

    /// Applies a workflow change and answers with the incident as it is afterwards.
    async fn change<F>(&self, id: Uuid, plan: F) -> Result<pb::Incident, ApiError>
    where
        F: FnOnce(&IncidentRecord) -> Result<Plan, StorageError>,
    {
        let now = self.clock.now();
        let record = self.incidents.change(id, now, plan).await?;
        Ok(incident_to_wire(&record, now))
    }

    async fn resolve(&self, req: pb::ResolveIncidentRequest) -> Result<pb::Incident, ApiError> {
        let id = incident_id(&req.incident_id)?;
        let by = pseudonym("supervisor_id", &req.supervisor_id)?;
        let outcome = outcome(&req)?;
        let note = convert::text("note", &req.note, MAX_REASON_LEN)?;
        let now = self.clock.now();
        let record = self
            .incidents
            .change(id, now, |current| {
                let block = match &outcome {
                    Outcome::CallerBlocked { ttl } => {
                        let caller = current
                            .caller
                            .as_deref()
                            .and_then(E164::from_canonical)
                            .ok_or_else(|| {
                                StorageError::Refused(format!(
                                    "incident {id}: the caller withheld their number; there is \
                                     no number to block"
                                ))
                            })?;
                        Some(BlockDraft {
                            rule: NewRule {
                                pattern: Pattern::Exact(caller),
                                effect: Effect::Block,
                                scope: Scope::Global,
                                ttl: *ttl,
                                reason: format!("review of incident {id} ({})", current.category),
                                created_by: by.clone(),
                            },
                            why: vec!["review"],
                        })
                    }
                    _ => None,
                };
                let (authority, reference) = match &outcome {
                    Outcome::Referred {
                        authority,
                        reference,
                    } => (Some(authority.clone()), Some(reference.clone())),
                    _ => (None, None),
                };
                Ok(Plan {
                    transition: Some(Transition::Resolve),
                    events: vec![EventDraft {
                        actor: by.clone(),
                        kind: "resolved",
                        details: json!({
                            "outcome": outcome.as_str(),
                            "authority": authority,
                            "reference": reference,
                            "block_ttl_seconds": req.block_ttl_seconds,
                            "note": note,
                        }),
                    }],
                    row: RowChange::Resolved {
                        by: by.clone(),
                        outcome: outcome.as_str(),
                        authority,
                        reference,
                        note: (!note.is_empty()).then(|| note.clone()),
                    },
                    block,
                })
            })
            .await?;
        metrics::counter!("callwarden_incident_outcomes_total", "outcome" => outcome.as_str())
            .increment(1);
        metrics::histogram!(
            "callwarden_incident_time_to_resolve_seconds",
            "severity" => record.severity.as_str()
        )
        .record((now - record.created_at).num_milliseconds().max(0) as f64 / 1000.0);
        tracing::info!(incident_id = %id, outcome = outcome.as_str(), by, "incident resolved");
        Ok(incident_to_wire(&record, now))
    }

    async fn attach(&self, req: pb::AttachEvidenceRequest) -> Result<pb::Evidence, ApiError> {
        let id = incident_id(&req.incident_id)?;
        let uri = EvidenceUri::parse(&req.uri).map_err(|e| ApiError::invalid("uri", e))?;
        let sha = Sha256Hex::parse(&req.sha256).map_err(|e| ApiError::invalid("sha256", e))?;
        if req.duration_seconds > MAX_DURATION_SECONDS {
            return Err(ApiError::invalid(
                "duration_seconds",
                format!("{} is more than a day", req.duration_seconds),
            ));
        }
        let description = convert::text("description", &req.description, MAX_REASON_LEN)?;
        let by = pseudonym("attached_by", &req.attached_by)?;
        let captured_at = convert::time("captured_at", req.captured_at.as_ref())?;
        let record = self.incidents.incident(id).await?;
        let view = View::of(&record);
        // A retry of the same attachment gets the same answer; the same content under another
        // URI is a mistake to point out, not a second piece of evidence.
        let existing = |e: EvidenceRecord| {
            if e.uri == uri.as_str() {
                Ok(view.evidence(id, &e))
            } else {
                Err(ApiError::Storage(StorageError::AlreadyExists(format!(
                    "evidence with sha256 {} is already attached to incident {id} as {} ({})",
                    e.sha256, e.id, e.uri
                ))))
            }
        };
        if let Some(e) = self.incidents.evidence_by_hash(id, sha.as_str()).await? {
            return existing(e);
        }
        let evidence_id = Uuid::now_v7().to_string();
        let details = EvidenceRecord::details(
            &evidence_id,
            uri.as_str(),
            sha.as_str(),
            req.duration_seconds,
            &description,
            captured_at,
        );
        let added = self
            .incidents
            .change(id, self.clock.now(), |_| {
                Ok(Plan {
                    transition: None,
                    row: RowChange::None,
                    events: vec![EventDraft {
                        actor: by.clone(),
                        kind: "evidence_attached",
                        details,
                    }],
                    block: None,
                })
            })
            .await;
        match added {
            Ok(_) => {}
            // Two attachments of the same content raced: the unique index let one through.
            Err(StorageError::Postgres(sqlx::Error::Database(e))) if e.is_unique_violation() => {}
            Err(e) => return Err(e.into()),
        }
        let e = self
            .incidents
            .evidence_by_hash(id, sha.as_str())
            .await?
            .ok_or_else(|| StorageError::Internal("attached evidence vanished".into()))?;
        existing(e)
    }

    async fn export(
        &self,
        who: Option<&auth::Principal>,
        req: pb::ExportIncidentRequest,
    ) -> Result<pb::ExportIncidentResponse, ApiError> {
        let id = incident_id(&req.incident_id)?;
        let format = pb::ExportFormat::try_from(req.format).map_err(|_| {
            ApiError::invalid("format", format!("{} is not an ExportFormat", req.format))
        })?;
        let lang = match req.locale.as_str() {
            "" => Lang::En,
            tag => tag
                .parse::<Lang>()
                .map_err(|e| ApiError::invalid("locale", e))?,
        };
        let zone = time_zone_or_utc("time_zone", &req.time_zone)?;
        let words = Speaker::new(self.catalogues.clone(), lang, zone);
        let now = self.clock.now();
        let record = self.incidents.incident(id).await?;
        let events = self.incidents.events(id).await?;
        let report = report(&record, &events, now);
        self.audit(who, "ExportIncident", &[id]).await?;
        let (content_type, content, ext) = match format {
            pb::ExportFormat::Unspecified | pb::ExportFormat::Json => {
                ("application/json", report.to_json(), "json")
            }
            pb::ExportFormat::Markdown => (
                "text/markdown; charset=utf-8",
                report.to_markdown(&words),
                "md",
            ),
        };
        Ok(pb::ExportIncidentResponse {
            content_type: content_type.into(),
            content,
            chain_hash: report.seal.chain_hash,
            filename: format!("incident-{id}.{ext}"),
        })
    }

    async fn stats(&self, req: pb::GetStatsRequest) -> Result<pb::GetStatsResponse, ApiError> {
        let to = convert::time("to", req.to.as_ref())?.unwrap_or_else(|| self.clock.now());
        let from = convert::time("from", req.from.as_ref())?.unwrap_or(to - Duration::days(30));
        if from >= to {
            return Err(ApiError::invalid("from", "must be before `to`"));
        }
        let top = match req.top_callers {
            0 => 10,
            n if n <= 100 => n,
            n => {
                return Err(ApiError::invalid(
                    "top_callers",
                    format!("{n} is more than 100"),
                ));
            }
        };
        let zone = time_zone_or_utc("time_zone", &req.time_zone)?;
        let (s, daily) = futures::try_join!(
            self.incidents.stats(from, to, top.into()),
            self.incidents.daily_stats(from, to, zone.name()),
        )?;
        let counts = |v: Vec<(String, u64)>| {
            v.into_iter()
                .map(|(key, count)| pb::Count { key, count })
                .collect()
        };
        let percentiles = |p: callwarden_storage::review::Percentiles| pb::DurationPercentiles {
            count: p.count,
            p50_seconds: p.p50,
            p90_seconds: p.p90,
            p99_seconds: p.p99,
            max_seconds: p.max,
        };
        Ok(pb::GetStatsResponse {
            from: Some(convert::timestamp(from)),
            to: Some(convert::timestamp(to)),
            total: s.total,
            by_category: counts(s.by_category),
            by_severity: counts(s.by_severity),
            by_outcome: counts(s.by_outcome),
            by_status: counts(s.by_status),
            time_to_acknowledge: Some(percentiles(s.time_to_acknowledge)),
            time_to_resolve: Some(percentiles(s.time_to_resolve)),
            top_callers: s
                .top_callers
                .into_iter()
                .map(|(caller_e164, incidents, reporters)| pb::CallerCount {
                    caller_e164,
                    incidents,
                    reporters,
                })
                .collect(),
            by_day: calendar(from, to, zone, daily),
        })
    }
}

/// The hand-over document of one incident, sealed like every other view.
/// A time zone named in a request; empty is UTC.
fn time_zone_or_utc(field: &str, name: &str) -> Result<chrono_tz::Tz, ApiError> {
    if name.is_empty() {
        return Ok(chrono_tz::UTC);
    }
    crate::i18n::time_zone(name).map_err(|e| ApiError::invalid(field, e))
}

/// Every day of [from, to) in `zone`, with that day's figures (zeros for a quiet day).
fn calendar(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    zone: chrono_tz::Tz,
    daily: callwarden_storage::review::DailyStats,
) -> Vec<pb::DayCount> {
    let (first, last) = (
        from.with_timezone(&zone).date_naive(),
        (to - Duration::nanoseconds(1))
            .with_timezone(&zone)
            .date_naive(),
    );
    first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| {
            let day = d.format("%Y-%m-%d").to_string();
            let counts = |rows: &[(String, String, u64)]| -> Vec<pb::Count> {
                rows.iter()
                    .filter(|(dd, _, _)| *dd == day)
                    .map(|(_, key, count)| pb::Count {
                        key: key.clone(),
                        count: *count,
                    })
                    .collect()
            };
            let by_category = counts(&daily.by_category);
            pb::DayCount {
                total: by_category.iter().map(|c| c.count).sum(),
                by_severity: counts(&daily.by_severity),
                by_category,
                acknowledge_p50_seconds: daily
                    .acknowledge_p50
                    .iter()
                    .find(|(dd, _)| *dd == day)
                    .map_or(0.0, |(_, p)| *p),
                day,
            }
        })
        .collect()
}

fn report(record: &IncidentRecord, events: &[EventRecord], now: DateTime<Utc>) -> IncidentReport {
    let view = View::of(record);
    let event = |e: &EventRecord| ReportEvent {
        seq: e.seq,
        at: e.at,
        actor: view.text(&e.actor),
        kind: e.kind.clone(),
        details: view.json(&e.details),
        hash: hex::encode(&e.hash),
    };
    IncidentReport {
        format: REPORT_FORMAT,
        generated_at: now,
        incident: ReportIncident {
            id: record.id.to_string(),
            status: record.status.as_str().into(),
            reported_at: record.created_at,
            deadline: record.deadline,
            line: record.line.clone(),
            caller: record.caller.clone(),
            call_id: record.call_id.clone(),
            switch_id: record.switch_id.clone(),
            reporter: view.text(&record.reporter),
            reporter_sealed: view.sealed(),
            source: record.source.clone(),
        },
        what_happened: WhatHappened {
            category: record.category.as_str().into(),
            severity: record.severity.as_str().into(),
            note: record.note.clone(),
            block_requested: record.block.as_str().into(),
            debrief_requested: record.debrief_requested,
        },
        actions: events
            .iter()
            .filter(|e| ACTION_KINDS.contains(&e.kind.as_str()))
            .map(event)
            .collect(),
        statements: events
            .iter()
            .filter_map(StatementRecord::from_event)
            .map(|s| ReportStatement {
                at: s.at,
                author: view.text(&s.author),
                role: s.role,
                text: s.text,
            })
            .collect(),
        evidence: events
            .iter()
            .filter_map(EvidenceRecord::from_event)
            .map(|e| ReportEvidence {
                attached_by: view.text(&e.attached_by),
                id: e.id,
                uri: e.uri,
                sha256: e.sha256,
                duration_seconds: e.duration_seconds,
                description: e.description,
                attached_at: e.attached_at,
                captured_at: e.captured_at,
            })
            .collect(),
        review: ReportReview {
            acknowledged_at: record.acknowledged_at,
            acknowledged_by: record.acknowledged_by.clone(),
            closed_at: record.closed_at,
            closed_by: record.closed_by.clone(),
            outcome: record.outcome.clone(),
            authority: record.authority.clone(),
            reference: record.reference.clone(),
            block_rule_id: record.block_rule_id.map(|id| id.to_string()),
            note: record.resolution_note.clone(),
        },
        timeline: events.iter().map(event).collect(),
        seal: ReportSeal {
            events: events.len(),
            chain_hash: hex::encode(&record.chain_hash),
            chain_verified: chain_verifies(record.id, events),
        },
    }
}

#[tonic::async_trait]
impl review_server::Review for ReviewService {
    async fn list_incidents(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        let who = auth::principal(&request);
        Ok(Response::new(
            self.list(who.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn get_incident(
        &self,
        request: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::IncidentDetail>, Status> {
        let id = incident_id(&request.get_ref().incident_id)?;
        let who = auth::principal(&request);
        Ok(Response::new(self.detail(who.as_ref(), id).await?))
    }

    type WatchIncidentsStream = ReceiverStream<Result<pb::IncidentChange, Status>>;

    async fn watch_incidents(
        &self,
        request: Request<pb::WatchIncidentsRequest>,
    ) -> Result<Response<Self::WatchIncidentsStream>, Status> {
        let severities = request
            .get_ref()
            .severities
            .iter()
            .map(|v| convert::severity("severities", *v))
            .collect::<Result<Vec<_>, _>>()?;
        let who = auth::principal(&request)
            .ok_or_else(|| ApiError::PermissionDenied("no credentials".into()))?;
        let slot = self.streams.take(Some(&who))?;
        let mut changes = self.feed.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        let incidents = self.incidents.clone();
        let clock = self.clock.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                let change = tokio::select! {
                    () = shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("server shutting down; reconnect"))).await;
                        return;
                    }
                    () = tx.closed() => return,
                    change = changes.recv() => change,
                };
                let (id, kind) = match change {
                    Ok(change) => change,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        // A watcher that cannot keep up re-lists rather than miss changes.
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "{n} changes were missed; list again and watch anew"
                            ))))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        let _ = tx
                            .send(Err(Status::unavailable("change feed stopped; reconnect")))
                            .await;
                        return;
                    }
                };
                let record = match incidents.incident(id).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, incident_id = %id, "could not load a changed incident");
                        continue;
                    }
                };
                if !severities.is_empty() && !severities.contains(&record.severity) {
                    continue;
                }
                let logged = incidents
                    .record_reads(
                        &who.subject,
                        who.role.as_str(),
                        "WatchIncidents",
                        &[id],
                        clock.now(),
                    )
                    .await;
                if let Err(e) = logged {
                    tracing::warn!(error = %e, "could not log a read; ending the watch");
                    let _ = tx
                        .send(Err(Status::unavailable(
                            "could not log the read; reconnect",
                        )))
                        .await;
                    return;
                }
                let change = pb::IncidentChange {
                    incident: Some(incident_to_wire(&record, clock.now())),
                    change: kind,
                };
                if tx.send(Ok(change)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn acknowledge_incident(
        &self,
        request: Request<pb::AcknowledgeIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let req = auth::bound(request, auth::Role::Supervisor, "supervisor_id", |r| {
            &mut r.supervisor_id
        })?;
        let id = incident_id(&req.incident_id)?;
        let by = pseudonym("supervisor_id", &req.supervisor_id)?;
        let now = self.clock.now();
        let record = self
            .incidents
            .change(id, now, |current| {
                Ok(Plan {
                    transition: Some(Transition::Acknowledge),
                    row: RowChange::Acknowledged { by: by.clone() },
                    events: vec![EventDraft {
                        actor: by.clone(),
                        kind: "acknowledged",
                        details: json!({ "overdue": current.overdue(now) }),
                    }],
                    block: None,
                })
            })
            .await
            .map_err(ApiError::from)?;
        metrics::histogram!(
            "callwarden_incident_time_to_acknowledge_seconds",
            "severity" => record.severity.as_str()
        )
        .record((now - record.created_at).num_milliseconds().max(0) as f64 / 1000.0);
        Ok(Response::new(incident_to_wire(&record, now)))
    }

    async fn add_statement(
        &self,
        request: Request<pb::AddStatementRequest>,
    ) -> Result<Response<pb::Statement>, Status> {
        let who = auth::principal(&request);
        let mut req = request.into_inner();
        // A supervisor's statement is their own; a witness's is entered by a supervisor in the
        // witness's name, and the event says who entered it.
        let recorded_by = auth::acting_as(who.as_ref(), auth::Role::Supervisor, "recorded_by", "")?;
        if req.role != pb::StatementRole::Witness as i32 {
            req.author =
                auth::acting_as(who.as_ref(), auth::Role::Supervisor, "author", &req.author)?;
        }
        let id = incident_id(&req.incident_id)?;
        let author = pseudonym("author", &req.author)?;
        let role = match pb::StatementRole::try_from(req.role) {
            Ok(pb::StatementRole::Supervisor) => StatementRole::Supervisor,
            Ok(pb::StatementRole::Witness) => StatementRole::Witness,
            Ok(pb::StatementRole::Unspecified) => {
                return Err(ApiError::invalid("role", "must be set").into());
            }
            Err(_) => {
                return Err(ApiError::invalid(
                    "role",
                    format!("{} is not a StatementRole", req.role),
                )
                .into());
            }
        };
        let text = convert::required_text("text", &req.text, MAX_STATEMENT_LEN)?;
        let statement_id = Uuid::now_v7().to_string();
        let now = self.clock.now();
        let record = self
            .incidents
            .change(id, now, |_| {
                Ok(Plan {
                    transition: None,
                    row: RowChange::None,
                    events: vec![EventDraft {
                        actor: author.clone(),
                        kind: "statement_added",
                        details: json!({
                            "statement_id": statement_id,
                            "role": role.as_str(),
                            "text": text,
                            "recorded_by": recorded_by,
                        }),
                    }],
                    block: None,
                })
            })
            .await
            .map_err(ApiError::from)?;
        // The statement as its event now holds it (the store keeps microseconds).
        let statement = StatementRecord {
            id: statement_id,
            author,
            role: role.as_str().to_owned(),
            text,
            at: now.trunc_subsecs(6),
        };
        Ok(Response::new(View::of(&record).statement(id, &statement)))
    }

    async fn attach_evidence(
        &self,
        request: Request<pb::AttachEvidenceRequest>,
    ) -> Result<Response<pb::Evidence>, Status> {
        let req = auth::bound(request, auth::Role::Supervisor, "attached_by", |r| {
            &mut r.attached_by
        })?;
        Ok(Response::new(self.attach(req).await?))
    }

    async fn resolve_incident(
        &self,
        request: Request<pb::ResolveIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let req = auth::bound(request, auth::Role::Supervisor, "supervisor_id", |r| {
            &mut r.supervisor_id
        })?;
        Ok(Response::new(self.resolve(req).await?))
    }

    async fn dismiss_incident(
        &self,
        request: Request<pb::DismissIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let req = auth::bound(request, auth::Role::Supervisor, "supervisor_id", |r| {
            &mut r.supervisor_id
        })?;
        let (id, by, reason) = reasoned_act(&req.incident_id, &req.supervisor_id, &req.reason)?;
        let incident = self
            .change(id, |_| {
                Ok(Plan {
                    transition: Some(Transition::Dismiss),
                    row: RowChange::Dismissed {
                        by: by.clone(),
                        reason: reason.clone(),
                    },
                    events: vec![EventDraft {
                        actor: by.clone(),
                        kind: "dismissed",
                        details: json!({ "reason": reason }),
                    }],
                    block: None,
                })
            })
            .await?;
        metrics::counter!("callwarden_incident_outcomes_total", "outcome" => "dismissed")
            .increment(1);
        Ok(Response::new(incident))
    }

    async fn reopen_incident(
        &self,
        request: Request<pb::ReopenIncidentRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let req = auth::bound(request, auth::Role::Supervisor, "supervisor_id", |r| {
            &mut r.supervisor_id
        })?;
        let (id, by, reason) = reasoned_act(&req.incident_id, &req.supervisor_id, &req.reason)?;
        let now = self.clock.now();
        let deadlines = self.deadlines;
        let incident = self
            .change(id, |current| {
                let deadline = deadlines.due(current.severity, now);
                Ok(Plan {
                    transition: Some(Transition::Reopen),
                    row: RowChange::Reopened { deadline },
                    events: vec![EventDraft {
                        actor: by.clone(),
                        kind: "reopened",
                        details: json!({
                            "reason": reason,
                            "previous": current.status.as_str(),
                            "previous_outcome": current.outcome,
                            "deadline": deadline.to_rfc3339(),
                        }),
                    }],
                    block: None,
                })
            })
            .await?;
        Ok(Response::new(incident))
    }

    async fn unseal_reporter(
        &self,
        request: Request<pb::UnsealReporterRequest>,
    ) -> Result<Response<pb::UnsealReporterResponse>, Status> {
        let req = auth::bound(request, auth::Role::Supervisor, "supervisor_id", |r| {
            &mut r.supervisor_id
        })?;
        let (id, by, reason) = reasoned_act(&req.incident_id, &req.supervisor_id, &req.reason)?;
        let record = self
            .incidents
            .change(id, self.clock.now(), |current| {
                if !current.anonymous {
                    return Err(StorageError::Refused(format!(
                        "incident {id} was not reported anonymously; there is nothing to unseal"
                    )));
                }
                Ok(Plan {
                    transition: None,
                    row: RowChange::Unsealed { by: by.clone() },
                    events: vec![EventDraft {
                        actor: by.clone(),
                        kind: "reporter_unsealed",
                        details: json!({
                            "reason": reason,
                            "reporter_ref": current.reporter_ref,
                        }),
                    }],
                    block: None,
                })
            })
            .await
            .map_err(ApiError::from)?;
        metrics::counter!("callwarden_reporters_unsealed_total").increment(1);
        // The audit trail is the chain; this line tells whoever watches the logs, without the
        // pseudonym itself.
        tracing::warn!(incident_id = %id, by, "anonymous reporter unsealed");
        Ok(Response::new(pb::UnsealReporterResponse {
            reporter: record.reporter,
        }))
    }

    async fn export_incident(
        &self,
        request: Request<pb::ExportIncidentRequest>,
    ) -> Result<Response<pb::ExportIncidentResponse>, Status> {
        let who = auth::principal(&request);
        Ok(Response::new(
            self.export(who.as_ref(), request.into_inner()).await?,
        ))
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Ok(Response::new(self.stats(request.into_inner()).await?))
    }

    async fn set_legal_hold(
        &self,
        request: Request<pb::SetLegalHoldRequest>,
    ) -> Result<Response<pb::Incident>, Status> {
        let admin = auth::principal(&request).is_some_and(|p| p.role == auth::Role::Admin);
        let req = auth::bound(request, auth::Role::Supervisor, "supervisor_id", |r| {
            &mut r.supervisor_id
        })?;
        let (id, by, reason) = reasoned_act(&req.incident_id, &req.supervisor_id, &req.reason)?;
        if !req.hold && !admin {
            // Releasing a hold lets retention remove what a court or the police asked to keep.
            return Err(ApiError::PermissionDenied(
                "hold: only an admin may release a legal hold".into(),
            )
            .into());
        }
        let incident = self
            .change(id, |current| {
                if current.legal_hold == req.hold {
                    // Already so: nothing to record, the answer is the incident as it is.
                    return Ok(Plan {
                        transition: None,
                        row: RowChange::None,
                        events: Vec::new(),
                        block: None,
                    });
                }
                Ok(Plan {
                    transition: None,
                    row: RowChange::LegalHold { hold: req.hold },
                    events: vec![EventDraft {
                        actor: by.clone(),
                        kind: if req.hold {
                            "legal_hold_placed"
                        } else {
                            "legal_hold_released"
                        },
                        details: json!({ "reason": reason }),
                    }],
                    block: None,
                })
            })
            .await?;
        tracing::info!(incident_id = %id, by, hold = req.hold, "legal hold changed");
        Ok(Response::new(incident))
    }

    async fn list_incident_reads(
        &self,
        request: Request<pb::ListIncidentReadsRequest>,
    ) -> Result<Response<pb::ListIncidentReadsResponse>, Status> {
        let req = request.into_inner();
        let filter = ReadFilter {
            incident_id: (!req.incident_id.is_empty())
                .then(|| incident_id(&req.incident_id))
                .transpose()?,
            reader: (!req.reader.is_empty())
                .then(|| pseudonym("reader", &req.reader))
                .transpose()?,
        };
        let limit = convert::page_size(req.page_size, DEFAULT_PAGE, MAX_READS_PAGE)? as usize;
        let before = match req.page_token.as_str() {
            "" => None,
            t => Some(t.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::invalid("page_token", format!("{t:?} is not a page token"))
            })?),
        };
        let mut reads = self
            .incidents
            .reads(&filter, before, limit as i64 + 1)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = if reads.len() > limit {
            reads.truncate(limit);
            reads.last().map(|r| r.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListIncidentReadsResponse {
            reads: reads
                .into_iter()
                .map(|r| pb::IncidentRead {
                    at: Some(convert::timestamp(r.at)),
                    reader: r.reader,
                    reader_role: r.reader_role,
                    incident_id: r.incident_id.to_string(),
                    rpc: r.rpc,
                })
                .collect(),
            next_page_token,
        }))
    }
}
