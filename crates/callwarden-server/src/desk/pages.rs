//! The desk's pages and forms: each reads or acts through the Review and BlockList services as
//! the signed-in user, then renders the answer (or the service's refusal) in their language.

use super::{Desk, DeskError, Session, chart};
use crate::grpc::convert;
use crate::i18n::{Arg, Lang, Speaker};
use axum::{
    extract::{Path, Query, State},
    http::header,
    response::{
        IntoResponse, Redirect, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use callwarden_proto::v1::{self as pb, block_list_server::BlockList, review_server::Review};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

const REVIEW: &str = "/callwarden.v1.Review/";
const BLOCKLIST: &str = "/callwarden.v1.BlockList/";

fn review_rpc(method: &str) -> String {
    format!("{REVIEW}{method}")
}

fn blocklist_rpc(method: &str) -> String {
    format!("{BLOCKLIST}{method}")
}

/// Renders `result`, or the page that says why it failed.
fn respond(
    desk: &Desk,
    session: &Session,
    section: &'static str,
    result: Result<Response, DeskError>,
) -> Response {
    result
        .unwrap_or_else(|e| desk.failure(&session.speaker, Some(&session.frame(desk, section)), &e))
}

/// A time from the service's answer (always valid: the service wrote it).
fn time(t: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    convert::time("", t).ok().flatten()
}

/// A form posted to the desk: parsed, and refused unless it carries this session's CSRF token.
fn form<T: for<'de> Deserialize<'de>>(
    desk: &Desk,
    session: &Session,
    body: &[u8],
) -> Result<T, DeskError> {
    #[derive(Deserialize)]
    struct Csrf {
        #[serde(default)]
        csrf: String,
    }
    let csrf: Csrf = serde_urlencoded::from_bytes(body).map_err(|_| DeskError::Csrf)?;
    session.check_csrf(desk, &csrf.csrf)?;
    serde_urlencoded::from_bytes(body)
        .map_err(|e| DeskError::Status(tonic::Status::invalid_argument(format!("form: {e}"))))
}

/// The wire enum's value name in snake case without its prefix: `CATEGORY_ABUSIVE_LANGUAGE`
/// -> `abusive_language`, as the README's codes and the catalogue's names are written.
fn code(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

/// One incident as a row or a header shows it.
#[derive(Serialize)]
struct IncidentView {
    id: String,
    short_id: String,
    status: String,
    category: String,
    severity: String,
    line: String,
    caller: Option<String>,
    /// The reporter's pseudonym; None while sealed (an anonymous report nobody unsealed).
    reporter: Option<String>,
    reported: String,
    deadline: String,
    /// "3 h 5 min left" or "Overdue by 10 min"; empty once closed.
    deadline_note: String,
    overdue: bool,
    note: String,
    source: String,
    outcome: Option<String>,
    authority: String,
    reference: String,
    block_rule_id: String,
    resolution_note: String,
    acknowledged: Option<String>,
    closed: Option<String>,
    legal_hold: bool,
    redacted: bool,
    chain_hash: String,
}

fn incident_view(s: &Speaker, i: &pb::Incident, now: DateTime<Utc>) -> IncidentView {
    let status = code(i.status().as_str_name(), "INCIDENT_STATUS_");
    let deadline = time(i.deadline.as_ref());
    let active = matches!(status.as_str(), "open" | "acknowledged");
    let deadline_note = match deadline {
        Some(d) if active && i.overdue => s.t_with(
            "deadline-overdue",
            &[("time", Arg::Text(s.duration((now - d).num_seconds())))],
        ),
        Some(d) if active => s.t_with(
            "deadline-left",
            &[("time", Arg::Text(s.duration((d - now).num_seconds())))],
        ),
        _ => s.t("deadline-closed"),
    };
    let by = |at: Option<&prost_types::Timestamp>, who: &str| {
        time(at).map(|t| {
            s.t_with(
                "actor-by",
                &[
                    ("at", Arg::Text(s.datetime(t))),
                    ("who", Arg::Text(who.to_owned())),
                ],
            )
        })
    };
    let outcome = pb::Outcome::try_from(i.outcome)
        .ok()
        .filter(|o| *o != pb::Outcome::Unspecified)
        .map(|o| code(o.as_str_name(), "OUTCOME_"));
    IncidentView {
        id: i.id.clone(),
        short_id: i.id.chars().take(8).collect(),
        status,
        category: convert::category("category", i.category)
            .map_or("other", |c| c.as_str())
            .to_owned(),
        severity: convert::severity("severity", i.severity)
            .map_or("low", |s| s.as_str())
            .to_owned(),
        line: i.line.clone(),
        caller: (!i.caller_e164.is_empty()).then(|| i.caller_e164.clone()),
        reporter: (!i.reporter_sealed).then(|| i.reporter.clone()),
        reported: time(i.created_at.as_ref())
            .map(|t| s.datetime(t))
            .unwrap_or_default(),
        deadline: deadline.map(|t| s.datetime(t)).unwrap_or_default(),
        deadline_note,
        overdue: active && i.overdue,
        note: i.note.clone(),
        source: i.source.clone(),
        outcome,
        authority: i.authority.clone(),
        reference: i.reference.clone(),
        block_rule_id: i.block_rule_id.clone(),
        resolution_note: i.resolution_note.clone(),
        acknowledged: by(i.acknowledged_at.as_ref(), &i.acknowledged_by),
        closed: by(i.closed_at.as_ref(), &i.closed_by),
        legal_hold: i.legal_hold,
        redacted: i.redacted_at.is_some(),
        chain_hash: i.chain_hash.clone(),
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct QueueQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    line: String,
    #[serde(default)]
    overdue: Option<String>,
    #[serde(default)]
    page: String,
    /// Only the table, for the live refresh.
    #[serde(default)]
    partial: Option<String>,
}

fn wire_value<E>(
    field: &str,
    value: &str,
    prefix: &str,
    parse: fn(&str) -> Option<E>,
) -> Result<Option<E>, DeskError> {
    if value.is_empty() {
        return Ok(None);
    }
    parse(&format!("{prefix}{}", value.to_ascii_uppercase()))
        .map(Some)
        .ok_or_else(|| {
            DeskError::Status(tonic::Status::invalid_argument(format!(
                "{field}: {value:?} is not one of the choices"
            )))
        })
}

pub async fn queue(
    State(desk): State<Arc<Desk>>,
    session: Session,
    Query(q): Query<QueueQuery>,
) -> Response {
    let result = queue_page(&desk, &session, &q).await;
    respond(&desk, &session, "queue", result)
}

async fn queue_page(desk: &Desk, session: &Session, q: &QueueQuery) -> Result<Response, DeskError> {
    let s = &session.speaker;
    let status = wire_value(
        "status",
        &q.status,
        "INCIDENT_STATUS_",
        pb::IncidentStatus::from_str_name,
    )?;
    let severity = wire_value(
        "severity",
        &q.severity,
        "SEVERITY_",
        pb::Severity::from_str_name,
    )?;
    let category = wire_value(
        "category",
        &q.category,
        "CATEGORY_",
        pb::Category::from_str_name,
    )?;
    let request = pb::ListIncidentsRequest {
        statuses: status.map(|v| vec![v as i32]).unwrap_or_default(),
        severities: severity.map(|v| vec![v as i32]).unwrap_or_default(),
        categories: category.map(|v| vec![v as i32]).unwrap_or_default(),
        line: q.line.trim().to_owned(),
        overdue_only: q.overdue.is_some(),
        order: pb::IncidentOrder::Urgent as i32,
        page_size: 50,
        page_token: q.page.clone(),
        with_status_counts: true,
        ..Default::default()
    };
    let answer = desk
        .review
        .list_incidents(session.request(desk, &review_rpc("ListIncidents"), request)?)
        .await?
        .into_inner();
    let now = desk.clock.now();
    let rows: Vec<IncidentView> = answer
        .incidents
        .iter()
        .map(|i| incident_view(s, i, now))
        .collect();
    let next = (!answer.next_page_token.is_empty()).then(|| {
        let next = QueueQuery {
            page: answer.next_page_token.clone(),
            partial: None,
            ..q.clone()
        };
        serde_urlencoded::to_string(&next).unwrap_or_default()
    });
    let counters: Vec<_> = answer
        .status_counts
        .iter()
        .map(|c| json!({ "status": c.key, "count": c.count }))
        .collect();
    let ctx = json!({ "rows": rows, "counters": counters, "next": next, "q": q, "statuses": ["open", "acknowledged", "resolved", "dismissed"], "severities": ["critical", "high", "medium", "low"], "categories": category_codes() });
    let frame = session.frame(desk, "queue");
    if q.partial.is_some() {
        return Ok(desk.render("queue_table.html", s, Some(&frame), ctx));
    }
    Ok(desk.render("queue.html", s, Some(&frame), ctx))
}

fn category_codes() -> Vec<String> {
    callwarden_domain::incident::Category::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect()
}

/// New and changed incidents as server-sent events, from the same stream as WatchIncidents;
/// the page then fetches its table again with its own filters.
pub async fn queue_events(State(desk): State<Arc<Desk>>, session: Session) -> Response {
    let request = match session.request(
        &desk,
        &review_rpc("WatchIncidents"),
        pb::WatchIncidentsRequest::default(),
    ) {
        Ok(r) => r,
        Err(e) => return respond(&desk, &session, "queue", Err(e)),
    };
    let stream = match desk.review.watch_incidents(request).await {
        Ok(s) => s.into_inner(),
        Err(e) => return respond(&desk, &session, "queue", Err(e.into())),
    };
    let events = stream
        .take_while(|change| std::future::ready(change.is_ok()))
        .filter_map(|change| async move {
            let change = change.ok()?;
            let incident = change.incident?;
            let data = serde_json::json!({
                "id": incident.id,
                "change": change.change,
                "version": incident.version,
            });
            Some(Ok::<_, std::convert::Infallible>(
                Event::default().event("change").data(data.to_string()),
            ))
        });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct IncidentQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn incident(
    State(desk): State<Arc<Desk>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<IncidentQuery>,
) -> Response {
    let result = incident_page(&desk, &session, &id, &q).await;
    respond(&desk, &session, "queue", result)
}

/// How long a block lasts, as the forms offer it: seconds (0 for good) and the message that
/// names the choice.
const BLOCK_PERIODS: [(&str, &str); 5] = [
    ("0", "block-for-good"),
    ("86400", "block-for-day"),
    ("604800", "block-for-week"),
    ("2592000", "block-for-month"),
    ("31536000", "block-for-year"),
];

async fn incident_page(
    desk: &Desk,
    session: &Session,
    id: &str,
    q: &IncidentQuery,
) -> Result<Response, DeskError> {
    let s = &session.speaker;
    let detail = desk
        .review
        .get_incident(session.request(
            desk,
            &review_rpc("GetIncident"),
            pb::GetIncidentRequest {
                incident_id: id.to_owned(),
            },
        )?)
        .await?
        .into_inner();
    let now = desk.clock.now();
    let Some(incident) = detail.incident.as_ref() else {
        return Err(tonic::Status::not_found("incident").into());
    };
    let view = incident_view(s, incident, now);
    let events: Vec<_> = detail
        .events
        .iter()
        .map(|e| {
            json!({ "seq": e.seq, "at": time(e.at.as_ref()).map(|t| s.datetime(t)).unwrap_or_default(), "actor": e.actor, "kind": e.kind, "details": details_text(&e.details_json), "hash": e.hash })
        })
        .collect();
    let history: Vec<IncidentView> = detail
        .caller_incidents
        .iter()
        .map(|i| incident_view(s, i, now))
        .collect();
    let rules: Vec<_> = detail
        .active_rules
        .iter()
        .map(|r| rule_view(s, r))
        .collect();
    let statements: Vec<_> = detail
        .statements
        .iter()
        .map(|st| {
            json!({ "at": time(st.at.as_ref()).map(|t| s.datetime(t)).unwrap_or_default(), "author": st.author, "role": code(pb::StatementRole::try_from(st.role).map_or("", |r| r.as_str_name()), "STATEMENT_ROLE_"), "text": st.text })
        })
        .collect();
    let evidence: Vec<_> = detail
        .evidence
        .iter()
        .map(|e| {
            json!({ "uri": e.uri, "sha256": e.sha256, "duration": e.duration_seconds, "description": e.description, "attached": s.t_with("actor-by", &[
                    ("at", Arg::Text(time(e.attached_at.as_ref()).map(|t| s.datetime(t)).unwrap_or_default())),
                    ("who", Arg::Text(e.attached_by.clone())),
                ]) })
        })
        .collect();
    let done = q
        .done
        .as_deref()
        .filter(|d| super::DONE_NOTICES.contains(d))
        .map(|d| s.t_with("done", &[("what", Arg::Text(s.t(&format!("what-{d}"))))]));
    let ctx = json!({ "i": view, "events": events, "history": history, "rules": rules, "statements": statements, "evidence": evidence, "chain_verified": detail.chain_verified, "done": done, "outcomes": ["no_action", "warning_issued", "caller_blocked", "referred_to_authorities", "mediated"], "block_periods": BLOCK_PERIODS });
    Ok(desk.render("incident.html", s, Some(&session.frame(desk, "queue")), ctx))
}

/// An event's details as short `key: value` lines (the JSON is in the export).
fn details_text(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => json.to_owned(),
    }
}

#[derive(Deserialize)]
pub struct ActForm {
    #[serde(default)]
    text: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    uri: String,
    #[serde(default)]
    sha256: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    block_ttl: String,
    #[serde(default)]
    authority: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    reason: String,
}

fn number(field: &str, value: &str) -> Result<u32, DeskError> {
    if value.trim().is_empty() {
        return Ok(0);
    }
    value.trim().parse().map_err(|_| {
        DeskError::Status(tonic::Status::invalid_argument(format!(
            "{field}: {value:?} is not a whole number"
        )))
    })
}

pub async fn incident_act(
    State(desk): State<Arc<Desk>>,
    session: Session,
    Path((id, act)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let result = act_on(&desk, &session, &id, &act, &body).await;
    respond(&desk, &session, "queue", result)
}

async fn act_on(
    desk: &Desk,
    session: &Session,
    id: &str,
    act: &str,
    body: &[u8],
) -> Result<Response, DeskError> {
    let f: ActForm = form(desk, session, body)?;
    let incident_id = id.to_owned();
    let r = &desk.review;
    // The acting supervisor is always the signed-in user: the services take them from the
    // request when the field is empty.
    let done = match act {
        "acknowledge" => {
            r.acknowledge_incident(session.request(
                desk,
                &review_rpc("AcknowledgeIncident"),
                pb::AcknowledgeIncidentRequest {
                    incident_id,
                    supervisor_id: String::new(),
                },
            )?)
            .await?;
            "acknowledged"
        }
        "statement" => {
            let role = match f.role.as_str() {
                "witness" => pb::StatementRole::Witness,
                _ => pb::StatementRole::Supervisor,
            };
            r.add_statement(session.request(
                desk,
                &review_rpc("AddStatement"),
                pb::AddStatementRequest {
                    incident_id,
                    author: String::new(),
                    role: role as i32,
                    text: f.text,
                },
            )?)
            .await?;
            "statement"
        }
        "evidence" => {
            r.attach_evidence(session.request(
                desk,
                &review_rpc("AttachEvidence"),
                pb::AttachEvidenceRequest {
                    incident_id,
                    uri: f.uri.trim().to_owned(),
                    sha256: f.sha256.trim().to_ascii_lowercase(),
                    duration_seconds: number("duration_seconds", &f.duration)?,
                    description: f.description,
                    attached_by: String::new(),
                    captured_at: None,
                },
            )?)
            .await?;
            "evidence"
        }
        "resolve" => {
            let outcome = wire_value(
                "outcome",
                &f.outcome,
                "OUTCOME_",
                pb::Outcome::from_str_name,
            )?
            .unwrap_or(pb::Outcome::Unspecified);
            r.resolve_incident(session.request(
                desk,
                &review_rpc("ResolveIncident"),
                pb::ResolveIncidentRequest {
                    incident_id,
                    supervisor_id: String::new(),
                    outcome: outcome as i32,
                    block_ttl_seconds: number("block_ttl_seconds", &f.block_ttl)?,
                    authority: f.authority.trim().to_owned(),
                    reference: f.reference.trim().to_owned(),
                    note: f.note,
                },
            )?)
            .await?;
            "resolved"
        }
        "dismiss" => {
            r.dismiss_incident(session.request(
                desk,
                &review_rpc("DismissIncident"),
                pb::DismissIncidentRequest {
                    incident_id,
                    supervisor_id: String::new(),
                    reason: f.reason,
                },
            )?)
            .await?;
            "dismissed"
        }
        "reopen" => {
            r.reopen_incident(session.request(
                desk,
                &review_rpc("ReopenIncident"),
                pb::ReopenIncidentRequest {
                    incident_id,
                    supervisor_id: String::new(),
                    reason: f.reason,
                },
            )?)
            .await?;
            "reopened"
        }
        other => {
            return Err(
                tonic::Status::not_found(format!("no act {other:?} on an incident")).into(),
            );
        }
    };
    // The service has just acted on it, so `id` is an incident id: nothing to escape.
    Ok(Redirect::to(&format!("/desk/incidents/{id}?done={done}")).into_response())
}

#[derive(Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: String,
}

/// The hand-over report as a download, in the reader's language and time zone.
pub async fn export(
    State(desk): State<Arc<Desk>>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let result = async {
        let format = if q.format == "json" {
            pb::ExportFormat::Json
        } else {
            pb::ExportFormat::Markdown
        };
        let report = desk
            .review
            .export_incident(session.request(
                &desk,
                &review_rpc("ExportIncident"),
                pb::ExportIncidentRequest {
                    incident_id: id,
                    format: format as i32,
                    locale: session.speaker.lang.tag().to_owned(),
                    time_zone: session.speaker.zone.name().to_owned(),
                },
            )?)
            .await?
            .into_inner();
        Ok((
            [
                (header::CONTENT_TYPE, report.content_type),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}\"", report.filename),
                ),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            report.content,
        )
            .into_response())
    }
    .await;
    respond(&desk, &session, "queue", result)
}

fn rule_view(s: &Speaker, r: &pb::Rule) -> serde_json::Value {
    let scope = r.scope.clone().unwrap_or_default();
    let scope_kind = code(
        pb::ScopeKind::try_from(scope.kind).map_or("SCOPE_KIND_GLOBAL", |k| k.as_str_name()),
        "SCOPE_KIND_",
    );
    let scope_kind = if scope_kind == "unspecified" {
        "global".to_owned()
    } else {
        scope_kind
    };
    let effect = convert::effect("effect", r.effect).map_or("block", |e| e.as_str());
    json!({ "id": r.id, "pattern": r.pattern, "effect": effect, "scope": s.t_with(&format!("scope-{scope_kind}"), &[("value", Arg::Text(scope.value.clone()))]), "reason": r.reason, "created": s.t_with("actor-by", &[
            ("at", Arg::Text(time(r.created_at.as_ref()).map(|t| s.datetime(t)).unwrap_or_default())),
            ("who", Arg::Text(r.created_by.clone())),
        ]), "expires": time(r.expires_at.as_ref()).map(|t| s.datetime(t)) })
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct BlockListQuery {
    #[serde(default)]
    number: String,
    #[serde(default)]
    line: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    page: String,
    #[serde(default)]
    done: Option<String>,
}

pub async fn blocklist(
    State(desk): State<Arc<Desk>>,
    session: Session,
    Query(q): Query<BlockListQuery>,
) -> Response {
    let result = blocklist_page(&desk, &session, &q).await;
    respond(&desk, &session, "blocklist", result)
}

async fn blocklist_page(
    desk: &Desk,
    session: &Session,
    q: &BlockListQuery,
) -> Result<Response, DeskError> {
    let s = &session.speaker;
    let lookup = if q.number.trim().is_empty() {
        None
    } else {
        let answer = desk
            .blocklist
            .explain_number(session.request(
                desk,
                &blocklist_rpc("ExplainNumber"),
                pb::ExplainNumberRequest {
                    number: q.number.clone(),
                    line: q.line.clone(),
                    operator_id: q.operator.trim().to_owned(),
                },
            )?)
            .await?
            .into_inner();
        let decision = code(
            pb::Decision::try_from(answer.decision).map_or("", |d| d.as_str_name()),
            "DECISION_",
        );
        let deciding = answer.deciding_rule.as_ref().map(|r| r.id.clone());
        Some(
            json!({ "number": answer.caller_e164, "decision": decision, "reason": answer.reason, "deciding": answer.deciding_rule.as_ref().map(|r| rule_view(s, r)), "rules": answer.rules.iter().filter_map(|a| a.rule.as_ref().map(|r| json!({ "rule": rule_view(s, r), "in_scope": a.in_scope, "decides": deciding.as_deref() == Some(r.id.as_str()) }))).collect::<Vec<_>>() }),
        )
    };
    let page = desk
        .blocklist
        .list_rules(session.request(
            desk,
            &blocklist_rpc("ListRules"),
            pb::ListRulesRequest {
                page_size: 100,
                page_token: q.page.clone(),
                pattern_prefix: q.prefix.trim().to_owned(),
                ..Default::default()
            },
        )?)
        .await?
        .into_inner();
    let next = (!page.next_page_token.is_empty()).then(|| {
        serde_urlencoded::to_string([
            ("prefix", q.prefix.as_str()),
            ("page", page.next_page_token.as_str()),
        ])
        .unwrap_or_default()
    });
    let done = q
        .done
        .as_deref()
        .filter(|d| super::DONE_NOTICES.contains(d))
        .map(|d| s.t_with("done", &[("what", Arg::Text(s.t(&format!("what-{d}"))))]));
    let ctx = json!({ "q": q, "lookup": lookup, "rules": page.rules.iter().map(|r| rule_view(s, r)).collect::<Vec<_>>(), "next": next, "done": done, "durations": BLOCK_PERIODS });
    Ok(desk.render(
        "blocklist.html",
        s,
        Some(&session.frame(desk, "blocklist")),
        ctx,
    ))
}

#[derive(Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    effect: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    scope_value: String,
    #[serde(default)]
    ttl: String,
    #[serde(default)]
    reason: String,
}

pub async fn add_rule(
    State(desk): State<Arc<Desk>>,
    session: Session,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let f: RuleForm = form(&desk, &session, &body)?;
        let effect = if f.effect == "allow" {
            pb::Effect::Allow
        } else {
            pb::Effect::Block
        };
        let kind = match f.scope.as_str() {
            "line" => pb::ScopeKind::Line,
            "operator" => pb::ScopeKind::Operator,
            _ => pb::ScopeKind::Global,
        };
        desk.blocklist
            .add_rule(session.request(
                &desk,
                &blocklist_rpc("AddRule"),
                pb::AddRuleRequest {
                    pattern: f.pattern.trim().to_owned(),
                    effect: effect as i32,
                    scope: Some(pb::Scope {
                        kind: kind as i32,
                        value: f.scope_value.trim().to_owned(),
                    }),
                    ttl_seconds: number("ttl_seconds", &f.ttl)?,
                    reason: f.reason,
                    created_by: String::new(),
                },
            )?)
            .await?;
        Ok(Redirect::to("/desk/blocklist?done=rule-added").into_response())
    }
    .await;
    respond(&desk, &session, "blocklist", result)
}

pub async fn remove_rule(
    State(desk): State<Arc<Desk>>,
    session: Session,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let _: super::session::CsrfOnly = form(&desk, &session, &body)?;
        desk.blocklist
            .remove_rule(session.request(
                &desk,
                &blocklist_rpc("RemoveRule"),
                pb::RemoveRuleRequest {
                    id,
                    removed_by: String::new(),
                },
            )?)
            .await?;
        Ok(Redirect::to("/desk/blocklist?done=rule-removed").into_response())
    }
    .await;
    respond(&desk, &session, "blocklist", result)
}

#[derive(Deserialize)]
pub struct DashboardQuery {
    #[serde(default)]
    days: Option<u32>,
}

pub async fn dashboard(
    State(desk): State<Arc<Desk>>,
    session: Session,
    Query(q): Query<DashboardQuery>,
) -> Response {
    let result = async {
        let s = &session.speaker;
        let days = q.days.unwrap_or(30).clamp(1, 366);
        let to = desk.clock.now();
        let from = to - chrono::Duration::days(days.into());
        let stats = desk
            .review
            .get_stats(session.request(
                &desk,
                &review_rpc("GetStats"),
                pb::GetStatsRequest {
                    from: Some(convert::timestamp(from)),
                    to: Some(convert::timestamp(to)),
                    top_callers: 10,
                    time_zone: s.zone.name().to_owned(),
                },
            )?)
            .await?
            .into_inner();
        let ctx = chart::dashboard(s, &stats, days);
        Ok(desk.render(
            "dashboard.html",
            s,
            Some(&session.frame(&desk, "dashboard")),
            ctx,
        ))
    }
    .await;
    respond(&desk, &session, "dashboard", result)
}

#[derive(Deserialize)]
pub struct SettingsQuery {
    #[serde(default)]
    done: Option<String>,
}

pub async fn settings(
    State(desk): State<Arc<Desk>>,
    session: Session,
    Query(q): Query<SettingsQuery>,
) -> Response {
    let s = &session.speaker;
    let done = q
        .done
        .is_some()
        .then(|| s.t_with("done", &[("what", Arg::Text(s.t("what-settings")))]));
    let languages: Vec<_> = Lang::ALL
        .iter()
        .map(|l| json!({ "tag": l.tag(), "name": l.own_name() }))
        .collect();
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    let ctx = json!({ "languages": languages, "zones": zones, "chosen_locale": session.preferences.locale, "chosen_zone": session.preferences.time_zone, "browser_zone": session.browser_zone.clone().unwrap_or_else(|| "UTC".into()), "done": done });
    desk.render(
        "settings.html",
        s,
        Some(&session.frame(&desk, "settings")),
        ctx,
    )
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    locale: String,
    #[serde(default)]
    time_zone: String,
}

pub async fn save_settings(
    State(desk): State<Arc<Desk>>,
    session: Session,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let f: SettingsForm = form(&desk, &session, &body)?;
        let invalid = |e: String| DeskError::Status(tonic::Status::invalid_argument(e));
        let locale = match f.locale.as_str() {
            "" => None,
            l => Some(l.parse::<Lang>().map_err(invalid)?.tag().to_owned()),
        };
        let time_zone = match f.time_zone.as_str() {
            "" => None,
            z => Some(
                crate::i18n::time_zone(z)
                    .map_err(|e| invalid(format!("time_zone: {e}")))?
                    .name()
                    .to_owned(),
            ),
        };
        if !desk.postgres.is_up() {
            return Err(crate::health::postgres_unavailable("the review desk").into());
        }
        desk.preferences
            .set(
                &session.principal.subject,
                &callwarden_storage::preferences::Preferences { locale, time_zone },
            )
            .await
            .map_err(crate::error::ApiError::from)?;
        Ok(Redirect::to("/desk/settings?done=1").into_response())
    }
    .await;
    respond(&desk, &session, "settings", result)
}
