//! Review: the supervisors' side of an incident, end to end over real gRPC: the workflow and
//! every refusal, the queue's filters, orders and stable paging, deadlines and their escalation
//! on a moved clock, live changes, sealed reporters, hand-over exports and statistics.

use callwarden_domain::chain::{ChainEvent, Sealing};
use callwarden_proto::v1::{
    AcknowledgeIncidentRequest, AddStatementRequest, AttachEvidenceRequest, BlockChoice,
    CallEventKind, Category, CheckCallRequest, Count, Decision, DismissIncidentRequest, Effect,
    EndAndFlagRequest, Evidence, ExportFormat, ExportIncidentRequest, ExportIncidentResponse,
    FlagCallRequest, GetIncidentRequest, GetStatsRequest, GetStatsResponse, Incident,
    IncidentChange, IncidentDetail, IncidentOrder, IncidentStatus, ListIncidentsRequest,
    ListIncidentsResponse, Outcome, ReopenIncidentRequest, ReportCallEventRequest,
    ResolveIncidentRequest, ScopeKind, Severity, Statement, StatementRole, UnsealReporterRequest,
    WatchIncidentsRequest, console_client::ConsoleClient, screening_client::ScreeningClient,
};
use callwarden_server::clock::ManualClock;
use callwarden_tests::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration as StdDuration,
};
use tokio_stream::StreamExt;
use tonic::{Code, Status, Streaming};
use uuid::Uuid;

const CALLER: &str = "+48601234567";
const SUP: &str = "sup-1";

// ---------------------------------------------------------------------------------------------
// Filing reports the way operators do.

/// A report as an operator files it; [`report`] gives the defaults.
#[derive(Debug, Clone)]
struct Report {
    caller: String,
    line: String,
    operator: String,
    category: Category,
    severity: Severity,
    note: String,
    block: BlockChoice,
    anonymous: bool,
    debrief: bool,
    /// EndAndFlag (the call is ended) rather than FlagCall.
    end_call: bool,
}

/// A plain report on the Polish line: FlagCall, no block, not anonymous.
fn report(caller: &str, operator: &str, category: Category, severity: Severity) -> Report {
    Report {
        caller: caller.into(),
        line: PL_LINE.into(),
        operator: operator.into(),
        category,
        severity,
        note: "shouted insults at me".into(),
        block: BlockChoice::None,
        anonymous: false,
        debrief: false,
        end_call: false,
    }
}

/// The clients operators' consoles and switches use, cheap to hand to a task.
#[derive(Clone)]
struct Operators {
    screening: ScreeningClient<Conn>,
    console: ConsoleClient<Conn>,
}

impl Operators {
    fn of(app: &TestApp) -> Self {
        Self {
            screening: app.screening.clone(),
            console: app.console.clone(),
        }
    }

    /// A call on the report's line, checked and answered by the report's operator, then
    /// reported; the incident's id.
    async fn file(&self, r: &Report) -> String {
        let call_id = Uuid::new_v4().to_string();
        self.screening
            .clone()
            .check_call(CheckCallRequest {
                call_id: call_id.clone(),
                caller: r.caller.clone(),
                line: r.line.clone(),
                switch_id: "sw-review".into(),
                operator_id: String::new(),
            })
            .await
            .unwrap_or_else(|s| panic!("check for {r:?}: {s}"));
        self.screening
            .clone()
            .report_call_event(ReportCallEventRequest {
                call_id: call_id.clone(),
                kind: CallEventKind::Answered.into(),
                operator_id: r.operator.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("answer for {r:?}: {s}"));
        let request_id = Uuid::new_v4().to_string();
        if r.end_call {
            self.console
                .clone()
                .end_and_flag(EndAndFlagRequest {
                    call_id,
                    operator_id: r.operator.clone(),
                    category: r.category.into(),
                    severity: r.severity.into(),
                    note: r.note.clone(),
                    block: r.block.into(),
                    anonymous: r.anonymous,
                    request_id,
                    debrief: r.debrief,
                })
                .await
                .unwrap_or_else(|s| panic!("EndAndFlag {r:?}: {s}"))
                .into_inner()
                .incident_id
        } else {
            self.console
                .clone()
                .flag_call(FlagCallRequest {
                    call_id,
                    operator_id: r.operator.clone(),
                    category: r.category.into(),
                    severity: r.severity.into(),
                    note: r.note.clone(),
                    block: r.block.into(),
                    anonymous: r.anonymous,
                    request_id,
                    debrief: r.debrief,
                })
                .await
                .unwrap_or_else(|s| panic!("FlagCall {r:?}: {s}"))
                .into_inner()
                .incident_id
        }
    }
}

async fn file(app: &TestApp, r: Report) -> String {
    Operators::of(app).file(&r).await
}

// ---------------------------------------------------------------------------------------------
// The Review service, one helper per RPC.

async fn try_get(app: &TestApp, id: &str) -> Result<IncidentDetail, Status> {
    app.review
        .clone()
        .get_incident(GetIncidentRequest {
            incident_id: id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn get(app: &TestApp, id: &str) -> IncidentDetail {
    try_get(app, id)
        .await
        .unwrap_or_else(|s| panic!("GetIncident {id}: {s}"))
}

fn incident_of(detail: &IncidentDetail) -> &Incident {
    detail
        .incident
        .as_ref()
        .expect("the detail has an incident")
}

async fn incident(app: &TestApp, id: &str) -> Incident {
    get(app, id)
        .await
        .incident
        .expect("the detail has an incident")
}

async fn acknowledge(app: &TestApp, id: &str, supervisor: &str) -> Result<Incident, Status> {
    app.review
        .clone()
        .acknowledge_incident(AcknowledgeIncidentRequest {
            incident_id: id.into(),
            supervisor_id: supervisor.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn resolve_with(app: &TestApp, request: ResolveIncidentRequest) -> Result<Incident, Status> {
    app.review
        .clone()
        .resolve_incident(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn resolve(app: &TestApp, id: &str, outcome: Outcome) -> Result<Incident, Status> {
    resolve_with(
        app,
        ResolveIncidentRequest {
            incident_id: id.into(),
            supervisor_id: SUP.into(),
            outcome: outcome.into(),
            ..Default::default()
        },
    )
    .await
}

async fn dismiss(app: &TestApp, id: &str, reason: &str) -> Result<Incident, Status> {
    app.review
        .clone()
        .dismiss_incident(DismissIncidentRequest {
            incident_id: id.into(),
            supervisor_id: SUP.into(),
            reason: reason.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn reopen(app: &TestApp, id: &str, reason: &str) -> Result<Incident, Status> {
    app.review
        .clone()
        .reopen_incident(ReopenIncidentRequest {
            incident_id: id.into(),
            supervisor_id: SUP.into(),
            reason: reason.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn add_statement(
    app: &TestApp,
    id: &str,
    author: &str,
    role: StatementRole,
    text: &str,
) -> Result<Statement, Status> {
    app.review
        .clone()
        .add_statement(AddStatementRequest {
            incident_id: id.into(),
            author: author.into(),
            role: role.into(),
            text: text.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn evidence(id: &str, uri: &str, sha256: &str) -> AttachEvidenceRequest {
    AttachEvidenceRequest {
        incident_id: id.into(),
        uri: uri.into(),
        sha256: sha256.into(),
        duration_seconds: 95,
        description: "the call's recording".into(),
        attached_by: SUP.into(),
        captured_at: None,
    }
}

async fn attach(app: &TestApp, request: AttachEvidenceRequest) -> Result<Evidence, Status> {
    app.review
        .clone()
        .attach_evidence(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn unseal(app: &TestApp, id: &str, reason: &str) -> Result<String, Status> {
    app.review
        .clone()
        .unseal_reporter(UnsealReporterRequest {
            incident_id: id.into(),
            supervisor_id: SUP.into(),
            reason: reason.into(),
        })
        .await
        .map(|r| r.into_inner().reporter)
}

async fn export(
    app: &TestApp,
    id: &str,
    format: ExportFormat,
) -> Result<ExportIncidentResponse, Status> {
    app.review
        .clone()
        .export_incident(ExportIncidentRequest {
            incident_id: id.into(),
            format: format.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn list(
    app: &TestApp,
    request: ListIncidentsRequest,
) -> Result<ListIncidentsResponse, Status> {
    app.review
        .clone()
        .list_incidents(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Every incident the request lists, following the pages.
async fn list_all(app: &TestApp, request: ListIncidentsRequest) -> Vec<Incident> {
    let mut all = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let page = list(
            app,
            ListIncidentsRequest {
                page_token: token,
                ..request.clone()
            },
        )
        .await
        .unwrap_or_else(|s| panic!("ListIncidents {request:?}: {s}"));
        all.extend(page.incidents);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
    panic!("ListIncidents {request:?} never reached its last page");
}

async fn list_ids(app: &TestApp, request: ListIncidentsRequest) -> Vec<String> {
    list_all(app, request)
        .await
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// Every state, for filters that should see closed incidents too.
fn every_status() -> Vec<i32> {
    [
        IncidentStatus::Open,
        IncidentStatus::Acknowledged,
        IncidentStatus::Resolved,
        IncidentStatus::Dismissed,
    ]
    .map(Into::into)
    .to_vec()
}

async fn stats(app: &TestApp, request: GetStatsRequest) -> GetStatsResponse {
    app.review
        .clone()
        .get_stats(request.clone())
        .await
        .unwrap_or_else(|s| panic!("GetStats {request:?}: {s}"))
        .into_inner()
}

async fn watch(app: &TestApp, severities: &[Severity]) -> Streaming<IncidentChange> {
    app.review
        .clone()
        .watch_incidents(WatchIncidentsRequest {
            severities: severities.iter().map(|s| (*s).into()).collect(),
        })
        .await
        .expect("WatchIncidents opens")
        .into_inner()
}

fn change_id(change: &IncidentChange) -> &str {
    change.incident.as_ref().map_or("", |i| i.id.as_str())
}

/// Reads the stream until a change matches (10 s at most); returns it and the changes passed
/// over on the way.
async fn next_change(
    stream: &mut Streaming<IncidentChange>,
    what: &str,
    matches: impl Fn(&IncidentChange) -> bool,
) -> (IncidentChange, Vec<IncidentChange>) {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    let mut passed = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within 10 s; saw {passed:#?}"))
            .unwrap_or_else(|| panic!("the stream ended before {what}"))
            .unwrap_or_else(|s| panic!("the stream failed before {what}: {s}"));
        if matches(&next) {
            return (next, passed);
        }
        passed.push(next);
    }
}

/// The change `kind` of incident `id`.
async fn change_of(
    stream: &mut Streaming<IncidentChange>,
    id: &str,
    kind: &str,
) -> (IncidentChange, Vec<IncidentChange>) {
    next_change(stream, &format!("{kind:?} of {id}"), |c| {
        change_id(c) == id && c.change == kind
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Time, hashes and assertions.

/// The service's clock as the test moves it: wall time plus what the test advanced.
struct ServiceClock {
    clock: ManualClock,
    offset: Duration,
}

impl ServiceClock {
    fn of(app: &TestApp) -> Self {
        Self {
            clock: app.clock.clone(),
            offset: Duration::zero(),
        }
    }

    fn advance(&mut self, by: Duration) {
        self.clock.advance(by);
        self.offset += by;
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

fn at(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("a timestamp is set");
    DateTime::from_timestamp(
        t.seconds,
        u32::try_from(t.nanos).expect("nanos are positive"),
    )
    .expect("a valid timestamp")
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap(),
    }
}

/// Within a few seconds: the service's "now" is the wall clock plus the test's offset.
fn assert_near(got: DateTime<Utc>, want: DateTime<Utc>, what: &str) {
    assert!(
        (got - want).num_milliseconds().abs() <= 3_000,
        "{what}: {got} is not near {want}"
    );
}

fn assert_seconds_near(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 3.0,
        "{what}: {got} s, want about {want} s"
    );
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(
        s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()),
        "{s:?} is not hex"
    );
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Recomputes the incident's chain from its timeline as shown (an unsealed view shows the
/// stored events): every link, the version and the chain hash.
fn assert_chain(detail: &IncidentDetail) {
    let incident = incident_of(detail);
    let id: Uuid = incident.id.parse().expect("the incident id is a UUID");
    let mut prev = vec![0u8; 32];
    for (i, e) in detail.events.iter().enumerate() {
        assert_eq!(e.seq as usize, i + 1, "events are numbered from 1: {e:?}");
        assert_eq!(
            unhex(&e.prev_hash),
            prev,
            "event #{} links to the one before",
            e.seq
        );
        let details: Value = serde_json::from_str(&e.details_json)
            .unwrap_or_else(|err| panic!("event #{} details are JSON: {err}", e.seq));
        let salt = (!e.salt.is_empty()).then(|| unhex(&e.salt));
        let hash = ChainEvent {
            incident_id: id,
            seq: i32::try_from(e.seq).unwrap(),
            at: at(&e.at),
            actor: &e.actor,
            kind: &e.kind,
            details: &details,
            sealing: match e.hash_scheme {
                1 => Sealing::Whole,
                _ => Sealing::Digested(salt.as_deref()),
            },
        }
        .hash(&prev);
        assert_eq!(
            unhex(&e.hash),
            hash.to_vec(),
            "event #{} ({}) hashes to what the timeline says",
            e.seq,
            e.kind
        );
        prev = hash.to_vec();
    }
    assert_eq!(
        incident.version as usize,
        detail.events.len(),
        "the version counts the events"
    );
    assert_eq!(
        unhex(&incident.chain_hash),
        prev,
        "the chain hash is the newest event's"
    );
    assert!(detail.chain_verified, "the chain verifies");
}

fn kinds(detail: &IncidentDetail) -> Vec<&str> {
    detail.events.iter().map(|e| e.kind.as_str()).collect()
}

fn count_of(detail: &IncidentDetail, kind: &str) -> usize {
    detail.events.iter().filter(|e| e.kind == kind).count()
}

/// Where `kind` first stands in the timeline.
fn position(detail: &IncidentDetail, kind: &str) -> usize {
    detail
        .events
        .iter()
        .position(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} event in {:?}", kinds(detail)))
}

fn find<'a>(incidents: &'a [Incident], id: &str) -> &'a Incident {
    incidents
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("{id} is not among {:?}", ids(incidents)))
}

fn ids(incidents: &[Incident]) -> Vec<&str> {
    incidents.iter().map(|i| i.id.as_str()).collect()
}

/// INVALID_ARGUMENT naming `field` (the message starts with it, as every bad-input answer does).
fn assert_names<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = result.expect_err(&format!("bad {field} is refused"));
    assert_invalid(&status, field, "");
}

// ---------------------------------------------------------------------------------------------
// The workflow.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Acknowledge,
    Resolve,
    Dismiss,
    Reopen,
}

const MOVES: [Move; 4] = [
    Move::Acknowledge,
    Move::Resolve,
    Move::Dismiss,
    Move::Reopen,
];

async fn attempt(app: &TestApp, id: &str, m: Move) -> Result<Incident, Status> {
    match m {
        Move::Acknowledge => acknowledge(app, id, SUP).await,
        Move::Resolve => resolve(app, id, Outcome::NoAction).await,
        Move::Dismiss => dismiss(app, id, "not serious after all").await,
        Move::Reopen => reopen(app, id, "new facts came to light").await,
    }
}

/// The documented workflow: what each state allows.
fn allowed(status: IncidentStatus) -> &'static [Move] {
    match status {
        IncidentStatus::Open => &[Move::Acknowledge],
        IncidentStatus::Acknowledged => &[Move::Resolve, Move::Dismiss],
        IncidentStatus::Resolved | IncidentStatus::Dismissed => &[Move::Reopen],
        IncidentStatus::Unspecified => &[],
    }
}

/// Every move the incident's state does not allow is FAILED_PRECONDITION naming the state, and
/// leaves the incident and its chain as they were.
async fn assert_other_moves_refused(app: &TestApp, id: &str, state: IncidentStatus, name: &str) {
    let before = incident(app, id).await;
    assert_eq!(before.status(), state, "{before:?}");
    for m in MOVES.into_iter().filter(|m| !allowed(state).contains(m)) {
        let err = attempt(app, id, m)
            .await
            .expect_err(&format!("{m:?} from {name} is refused"));
        assert_eq!(
            err.code(),
            Code::FailedPrecondition,
            "{m:?} from {name}: {err:?}"
        );
        assert!(
            err.message().contains(name),
            "{m:?} from {name}: the message names the state: {}",
            err.message()
        );
    }
    let after = incident(app, id).await;
    assert_eq!(after, before, "refused moves change nothing");
}

#[tokio::test]
async fn an_incident_goes_through_the_whole_review() {
    let app = spawn_app().await;
    let mut clock = ServiceClock::of(&app);
    // An earlier report against the same caller, by someone else.
    let earlier = file(
        &app,
        report(CALLER, "op-2", Category::Oversharing, Severity::Low),
    )
    .await;
    let id = file(
        &app,
        Report {
            note: "threatened to find out where I live".into(),
            ..report(CALLER, "op-1", Category::AbusiveLanguage, Severity::Medium)
        },
    )
    .await;

    // The queue shows it OPEN, with its deadline.
    let queue = list_all(&app, ListIncidentsRequest::default()).await;
    let listed = find(&queue, &id).clone();
    assert_eq!(listed.status(), IncidentStatus::Open);
    assert_eq!(
        (listed.category(), listed.severity()),
        (Category::AbusiveLanguage, Severity::Medium)
    );
    assert_eq!(
        (
            listed.line.as_str(),
            listed.caller_e164.as_str(),
            listed.reporter.as_str(),
            listed.source.as_str(),
            listed.switch_id.as_str(),
        ),
        (PL_LINE, CALLER, "op-1", "flag_call", "sw-review")
    );
    assert_eq!(listed.note, "threatened to find out where I live");
    assert!(!listed.reporter_sealed && !listed.overdue && !listed.escalated);
    assert_eq!(listed.outcome(), Outcome::Unspecified);
    let created = at(&listed.created_at);
    assert_near(created, clock.now(), "created_at");
    assert_eq!(
        at(&listed.deadline) - created,
        Duration::hours(8),
        "a medium incident is due in 8 hours"
    );
    assert!(listed.version >= 1, "{listed:?}");
    assert_eq!(queue.len(), 2, "both reports wait in the queue");

    // Reported, not blocked: the next operator only gets a notice.
    assert_ne!(
        app.check(CALLER, PL_LINE).await.decision(),
        Decision::Reject
    );

    clock.advance(Duration::minutes(5));
    let acked = acknowledge(&app, &id, SUP).await.unwrap();
    assert_eq!(acked.status(), IncidentStatus::Acknowledged);
    assert_eq!(acked.acknowledged_by, SUP);
    assert_near(at(&acked.acknowledged_at), clock.now(), "acknowledged_at");
    assert_eq!(acked.version, listed.version + 1, "one event more");

    let supervisor = add_statement(
        &app,
        &id,
        SUP,
        StatementRole::Supervisor,
        "Spoke to the operator; she is shaken but fine.",
    )
    .await
    .unwrap();
    let witness = add_statement(
        &app,
        &id,
        "op-3",
        StatementRole::Witness,
        "I sat next to her and heard the caller shouting.",
    )
    .await
    .unwrap();
    assert_eq!(
        (
            supervisor.incident_id.as_str(),
            supervisor.author.as_str(),
            supervisor.role(),
            supervisor.text.as_str()
        ),
        (
            id.as_str(),
            SUP,
            StatementRole::Supervisor,
            "Spoke to the operator; she is shaken but fine."
        )
    );
    assert_eq!(
        (witness.author.as_str(), witness.role()),
        ("op-3", StatementRole::Witness)
    );
    assert_near(at(&witness.at), clock.now(), "the statement's time");
    assert!(!supervisor.id.is_empty() && supervisor.id != witness.id);

    // Evidence: given in upper case, kept in lower case; a retry is safe; the same content
    // somewhere else is refused.
    let sha = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    let captured = DateTime::from_timestamp(created.timestamp() - 120, 0).unwrap();
    let request = AttachEvidenceRequest {
        captured_at: Some(timestamp(captured)),
        ..evidence(&id, "s3://recordings/2026/11/abc.wav", sha)
    };
    let attached = attach(&app, request.clone()).await.unwrap();
    assert_eq!(attached.sha256, sha.to_ascii_lowercase());
    assert_eq!(
        (
            attached.incident_id.as_str(),
            attached.uri.as_str(),
            attached.duration_seconds,
            attached.description.as_str(),
            attached.attached_by.as_str(),
        ),
        (
            id.as_str(),
            "s3://recordings/2026/11/abc.wav",
            95,
            "the call's recording",
            SUP
        )
    );
    assert_eq!(at(&attached.captured_at), captured);
    assert_near(at(&attached.attached_at), clock.now(), "attached_at");
    let version = incident(&app, &id).await.version;
    let again = attach(
        &app,
        AttachEvidenceRequest {
            sha256: sha.to_ascii_lowercase(),
            ..request.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        again.id, attached.id,
        "a retry returns the evidence attached"
    );
    let err = attach(
        &app,
        AttachEvidenceRequest {
            uri: "s3://recordings/2026/11/other.wav".into(),
            ..request.clone()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(
        incident(&app, &id).await.version,
        version,
        "neither the retry nor the refusal added an event"
    );

    // Resolved with a block for good: the caller is refused everywhere.
    clock.advance(Duration::minutes(10));
    let resolved = resolve_with(
        &app,
        ResolveIncidentRequest {
            incident_id: id.clone(),
            supervisor_id: SUP.into(),
            outcome: Outcome::CallerBlocked.into(),
            block_ttl_seconds: 0,
            note: "Blocked for good after review.".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(resolved.status(), IncidentStatus::Resolved);
    assert_eq!(resolved.outcome(), Outcome::CallerBlocked);
    assert_eq!(resolved.closed_by, SUP);
    assert_near(at(&resolved.closed_at), clock.now(), "closed_at");
    assert_eq!(resolved.resolution_note, "Blocked for good after review.");
    assert!(!resolved.overdue);
    assert!(!resolved.block_rule_id.is_empty(), "{resolved:?}");
    let check = app.check(CALLER, PL_LINE).await;
    assert_eq!(
        (
            check.decision(),
            check.reason.as_str(),
            check.rule_id.as_str()
        ),
        (Decision::Reject, "blocked", resolved.block_rule_id.as_str())
    );
    assert_eq!(
        app.check("601 234 567", OTHER_LINE).await.decision(),
        Decision::Reject,
        "a global block"
    );
    let rule = app.get_rule(&resolved.block_rule_id).await;
    assert_eq!(
        (
            rule.pattern.as_str(),
            rule.effect(),
            rule.scope.as_ref().map(|s| s.kind()),
        ),
        (CALLER, Effect::Block, Some(ScopeKind::Global))
    );
    assert!(
        rule.expires_at.is_none() && rule.removed_at.is_none(),
        "{rule:?}"
    );

    // The whole story in one place.
    let detail = get(&app, &id).await;
    let shown = incident_of(&detail);
    assert_eq!(
        (
            shown.status(),
            shown.outcome(),
            shown.block_rule_id.as_str()
        ),
        (
            IncidentStatus::Resolved,
            Outcome::CallerBlocked,
            resolved.block_rule_id.as_str()
        )
    );
    assert_eq!(shown.version, resolved.version);
    assert_eq!(shown.chain_hash, resolved.chain_hash);
    assert_eq!(detail.events[0].kind, "reported");
    assert_eq!(detail.events[0].actor, "op-1");
    for (kind, n) in [
        ("reported", 1),
        ("acknowledged", 1),
        ("statement_added", 2),
        ("evidence_attached", 1),
        ("caller_blocked", 1),
        ("resolved", 1),
    ] {
        assert_eq!(count_of(&detail, kind), n, "{kind} in {:?}", kinds(&detail));
    }
    let acknowledged = position(&detail, "acknowledged");
    let statement = position(&detail, "statement_added");
    let attached_at = position(&detail, "evidence_attached");
    assert!(
        acknowledged < statement
            && statement < attached_at
            && attached_at < position(&detail, "caller_blocked")
            && attached_at < position(&detail, "resolved"),
        "{:?}",
        kinds(&detail)
    );
    assert_eq!(detail.events[acknowledged].actor, SUP);
    assert_eq!(detail.events[position(&detail, "resolved")].actor, SUP);
    assert!(
        detail.events[position(&detail, "caller_blocked")]
            .details_json
            .contains(&resolved.block_rule_id),
        "the block's event names its rule"
    );
    assert_eq!(detail.statements.len(), 2);
    assert!(detail.statements.contains(&supervisor) && detail.statements.contains(&witness));
    assert_eq!(detail.evidence, std::slice::from_ref(&attached));
    assert!(
        detail
            .active_rules
            .iter()
            .any(|r| r.id == resolved.block_rule_id),
        "{:?}",
        detail.active_rules
    );
    assert_eq!(
        ids(&detail.caller_incidents),
        [earlier.as_str()],
        "the caller's other incidents"
    );
    assert_chain(&detail);

    // Reopened: OPEN again, due from now, the outcome cleared from the row but not the chain.
    clock.advance(Duration::hours(1));
    let reopened = reopen(&app, &id, "the caller's family disputes the recording")
        .await
        .unwrap();
    assert_eq!(reopened.status(), IncidentStatus::Open);
    assert_eq!(reopened.outcome(), Outcome::Unspecified);
    assert!(reopened.closed_at.is_none(), "{reopened:?}");
    assert_near(
        at(&reopened.deadline),
        clock.now() + Duration::hours(8),
        "the new deadline",
    );
    assert!(at(&reopened.deadline) > at(&listed.deadline) + Duration::minutes(70));
    assert_eq!(reopened.version, resolved.version + 1);
    let detail = get(&app, &id).await;
    assert_eq!(detail.events.last().unwrap().kind, "reopened");
    assert_eq!(detail.events.last().unwrap().actor, SUP);
    assert_eq!(
        count_of(&detail, "resolved"),
        1,
        "the chain keeps the outcome"
    );
    assert_chain(&detail);
    let queue = list_ids(&app, ListIncidentsRequest::default()).await;
    assert!(queue.contains(&id), "back in the queue");

    // Referred to the authorities: both the authority and the reference are needed.
    acknowledge(&app, &earlier, SUP).await.unwrap();
    let version = incident(&app, &earlier).await.version;
    let referral = ResolveIncidentRequest {
        incident_id: earlier.clone(),
        supervisor_id: SUP.into(),
        outcome: Outcome::ReferredToAuthorities.into(),
        authority: "Policja KSP".into(),
        reference: "RSD-2026/11/0042".into(),
        note: "the caller described a plan".into(),
        ..Default::default()
    };
    assert_names(
        resolve_with(
            &app,
            ResolveIncidentRequest {
                reference: String::new(),
                ..referral.clone()
            },
        )
        .await,
        "reference",
    );
    assert_names(
        resolve_with(
            &app,
            ResolveIncidentRequest {
                authority: String::new(),
                ..referral.clone()
            },
        )
        .await,
        "authority",
    );
    let still = incident(&app, &earlier).await;
    assert_eq!(
        (still.status(), still.version),
        (IncidentStatus::Acknowledged, version)
    );
    let referred = resolve_with(&app, referral).await.unwrap();
    assert_eq!(
        (
            referred.status(),
            referred.outcome(),
            referred.authority.as_str(),
            referred.reference.as_str(),
        ),
        (
            IncidentStatus::Resolved,
            Outcome::ReferredToAuthorities,
            "Policja KSP",
            "RSD-2026/11/0042"
        )
    );
    let shown = incident(&app, &earlier).await;
    assert_eq!(
        (shown.authority.as_str(), shown.reference.as_str()),
        ("Policja KSP", "RSD-2026/11/0042")
    );
    assert!(shown.block_rule_id.is_empty());
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn every_transition_the_state_does_not_allow_is_refused() {
    let app = spawn_app().await;
    let id = file(
        &app,
        report(CALLER, "op-1", Category::AbusiveLanguage, Severity::Low),
    )
    .await;
    assert_other_moves_refused(&app, &id, IncidentStatus::Open, "OPEN").await;

    acknowledge(&app, &id, SUP).await.unwrap();
    assert_other_moves_refused(&app, &id, IncidentStatus::Acknowledged, "ACKNOWLEDGED").await;
    // A dismissal needs a reason, a resolution an outcome.
    let before = incident(&app, &id).await;
    assert_names(dismiss(&app, &id, "").await, "reason");
    assert_names(dismiss(&app, &id, "  ").await, "reason");
    assert_names(resolve(&app, &id, Outcome::Unspecified).await, "outcome");
    assert_names(
        resolve_with(
            &app,
            ResolveIncidentRequest {
                incident_id: id.clone(),
                supervisor_id: SUP.into(),
                outcome: 99,
                ..Default::default()
            },
        )
        .await,
        "outcome",
    );
    assert_eq!(incident(&app, &id).await, before);

    resolve(&app, &id, Outcome::Mediated).await.unwrap();
    assert_other_moves_refused(&app, &id, IncidentStatus::Resolved, "RESOLVED").await;
    let before = incident(&app, &id).await;
    assert_names(reopen(&app, &id, "").await, "reason");
    assert_eq!(incident(&app, &id).await, before);
    // Statements and evidence are welcome in every state, closed ones too.
    add_statement(
        &app,
        &id,
        "op-2",
        StatementRole::Witness,
        "I remember it too.",
    )
    .await
    .unwrap();
    attach(
        &app,
        evidence(&id, "s3://recordings/late.wav", &"ab".repeat(32)),
    )
    .await
    .unwrap();
    let after = incident(&app, &id).await;
    assert_eq!(
        (after.status(), after.version),
        (IncidentStatus::Resolved, before.version + 2)
    );

    let reopened = reopen(&app, &id, "the operator remembered more")
        .await
        .unwrap();
    assert_eq!(reopened.status(), IncidentStatus::Open);
    assert_other_moves_refused(&app, &id, IncidentStatus::Open, "OPEN").await;
    acknowledge(&app, &id, "sup-2").await.unwrap();
    let dismissed = dismiss(&app, &id, "the caller apologised in writing")
        .await
        .unwrap();
    assert_eq!(
        (
            dismissed.status(),
            dismissed.resolution_note.as_str(),
            dismissed.closed_by.as_str(),
            dismissed.outcome(),
        ),
        (
            IncidentStatus::Dismissed,
            "the caller apologised in writing",
            SUP,
            Outcome::Unspecified
        )
    );
    assert_eq!(dismissed.acknowledged_by, "sup-2");
    assert_other_moves_refused(&app, &id, IncidentStatus::Dismissed, "DISMISSED").await;
    assert_eq!(
        reopen(&app, &id, "appealed").await.unwrap().status(),
        IncidentStatus::Open
    );
    let detail = get(&app, &id).await;
    assert_eq!(count_of(&detail, "reopened"), 2);
    assert_eq!(count_of(&detail, "acknowledged"), 2);
    assert_chain(&detail);

    // Blocking needs a number to block.
    let withheld = file(
        &app,
        Report {
            caller: "anonymous".into(),
            line: OTHER_LINE.into(),
            ..report("", "op-1", Category::AbusiveLanguage, Severity::Low)
        },
    )
    .await;
    acknowledge(&app, &withheld, SUP).await.unwrap();
    let before = incident(&app, &withheld).await;
    assert_eq!(before.caller_e164, "");
    let err = resolve(&app, &withheld, Outcome::CallerBlocked)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(incident(&app, &withheld).await, before);
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn unknown_and_malformed_ids_and_bad_fields_are_refused() {
    let app = spawn_app().await;
    // Every RPC about one incident, with otherwise valid arguments.
    async fn every_rpc(app: &TestApp, id: &str) -> Vec<(&'static str, Status)> {
        let sha = "cd".repeat(32);
        let results = vec![
            ("GetIncident", try_get(app, id).await.map(drop)),
            (
                "AcknowledgeIncident",
                acknowledge(app, id, SUP).await.map(drop),
            ),
            (
                "AddStatement",
                add_statement(app, id, SUP, StatementRole::Supervisor, "text")
                    .await
                    .map(drop),
            ),
            (
                "AttachEvidence",
                attach(app, evidence(id, "s3://r/a.wav", &sha))
                    .await
                    .map(drop),
            ),
            (
                "ResolveIncident",
                resolve(app, id, Outcome::NoAction).await.map(drop),
            ),
            (
                "DismissIncident",
                dismiss(app, id, "reason").await.map(drop),
            ),
            ("ReopenIncident", reopen(app, id, "reason").await.map(drop)),
            ("UnsealReporter", unseal(app, id, "reason").await.map(drop)),
            (
                "ExportIncident",
                export(app, id, ExportFormat::Markdown).await.map(drop),
            ),
        ];
        results
            .into_iter()
            .map(|(rpc, r)| (rpc, r.expect_err(&format!("{rpc} of {id:?} is refused"))))
            .collect()
    }
    let unknown = Uuid::now_v7().to_string();
    for (rpc, status) in every_rpc(&app, &unknown).await {
        assert_eq!(status.code(), Code::NotFound, "{rpc}: {status:?}");
    }
    for (rpc, status) in every_rpc(&app, "not-an-incident").await {
        assert_eq!(status.code(), Code::InvalidArgument, "{rpc}: {status:?}");
        assert_invalid(&status, "incident_id", "not-an-incident");
    }
    for (rpc, status) in every_rpc(&app, "").await {
        assert_invalid(&status, "incident_id", "");
        assert_eq!(status.code(), Code::InvalidArgument, "{rpc}");
    }

    // Fields: who acts must be a pseudonym; statements and evidence are checked.
    let id = file(
        &app,
        report(CALLER, "op-1", Category::AbusiveLanguage, Severity::Low),
    )
    .await;
    let before = incident(&app, &id).await;
    let err = acknowledge(&app, &id, "Jane Doe").await.unwrap_err();
    assert_invalid(&err, "supervisor_id", "Jane Doe");
    let err = acknowledge(&app, &id, &"x".repeat(65)).await.unwrap_err();
    assert_invalid(&err, "supervisor_id", "");
    assert_names(
        add_statement(&app, &id, "Jane Doe", StatementRole::Witness, "seen it").await,
        "author",
    );
    assert_names(
        add_statement(&app, &id, "op-2", StatementRole::Unspecified, "seen it").await,
        "role",
    );
    assert_names(
        add_statement(&app, &id, "op-2", StatementRole::Witness, "").await,
        "text",
    );
    let err = add_statement(&app, &id, "op-2", StatementRole::Witness, &"x".repeat(8001))
        .await
        .unwrap_err();
    assert_invalid(&err, "text", "8000");
    let sha = "ef".repeat(32);
    let err = attach(&app, evidence(&id, "recordings/a.wav", &sha))
        .await
        .unwrap_err();
    assert_invalid(&err, "uri", "recordings/a.wav");
    let err = attach(&app, evidence(&id, "s3://r/a.wav", "abc123"))
        .await
        .unwrap_err();
    assert_invalid(&err, "sha256", "abc123");
    let err = attach(&app, evidence(&id, "s3://r/a.wav", &"zz".repeat(32)))
        .await
        .unwrap_err();
    assert_invalid(&err, "sha256", "");
    let err = attach(
        &app,
        AttachEvidenceRequest {
            attached_by: "Jane Doe".into(),
            ..evidence(&id, "s3://r/a.wav", &sha)
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&err, "attached_by", "Jane Doe");
    assert_eq!(incident(&app, &id).await, before, "nothing was recorded");

    // A statement of exactly 8000 characters is fine.
    add_statement(&app, &id, "op-2", StatementRole::Witness, &"y".repeat(8000))
        .await
        .unwrap();
    app.stop().await.expect("a clean stop");
}

// ---------------------------------------------------------------------------------------------
// The queue.

fn urgent_key(i: &Incident) -> (std::cmp::Reverse<(bool, i32)>, DateTime<Utc>) {
    (
        std::cmp::Reverse((i.overdue, i.severity)),
        at(&i.created_at),
    )
}

/// Pages through `request` with page size 4 while `feed` keeps reporting; every page waits
/// until at least one more report landed since the page before. The ids seen, in order.
async fn page_through_while_reports_arrive(
    app: &TestApp,
    request: ListIncidentsRequest,
    feed: &Arc<AtomicUsize>,
    feed_done: &Arc<AtomicBool>,
) -> (Vec<Incident>, usize) {
    let mut seen = Vec::new();
    let mut token = String::new();
    let first = feed.load(Ordering::SeqCst);
    for _ in 0..200 {
        let page = list(
            app,
            ListIncidentsRequest {
                page_size: 4,
                page_token: token.clone(),
                ..request.clone()
            },
        )
        .await
        .unwrap_or_else(|s| panic!("ListIncidents page: {s}"));
        assert!(
            page.incidents.len() <= 4,
            "{} on a page",
            page.incidents.len()
        );
        seen.extend(page.incidents);
        if page.next_page_token.is_empty() {
            return (seen, feed.load(Ordering::SeqCst) - first);
        }
        token = page.next_page_token;
        let made = feed.load(Ordering::SeqCst);
        eventually("another report arrives between pages", || async {
            feed_done.load(Ordering::SeqCst) || feed.load(Ordering::SeqCst) > made
        })
        .await;
    }
    panic!("paging never ended");
}

/// Reports `n` incidents in the background, alternating critical (before the cursor) and low
/// (after it); counts them as they land.
fn feed(
    app: &TestApp,
    n: usize,
    tag: u32,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicBool>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let made = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let operators = Operators::of(app);
    let task = tokio::spawn({
        let (made, done) = (made.clone(), done.clone());
        async move {
            let mut ids = Vec::new();
            for i in 0..n {
                let severity = if i % 2 == 0 {
                    Severity::Critical
                } else {
                    Severity::Low
                };
                let caller = format!("+486020{tag}{i:04}");
                ids.push(
                    operators
                        .file(&report(&caller, "op-feed", Category::FraudOrSpam, severity))
                        .await,
                );
                made.fetch_add(1, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
            ids
        }
    });
    (made, done, task)
}

fn assert_each_once(seen: &[Incident], existing: &[String]) {
    let mut unique = HashSet::new();
    for i in seen {
        assert!(unique.insert(i.id.as_str()), "{} was listed twice", i.id);
    }
    for id in existing {
        assert_eq!(
            seen.iter().filter(|i| &i.id == id).count(),
            1,
            "{id}, which existed before the first page, is listed once"
        );
    }
}

#[tokio::test]
async fn paging_neither_repeats_nor_skips_while_reports_arrive() {
    let app = spawn_app().await;
    let severities = [
        Severity::Low,
        Severity::Critical,
        Severity::Medium,
        Severity::High,
        Severity::Medium,
    ];
    let mut existing: Vec<(String, Severity)> = Vec::new();
    for i in 0..25 {
        let severity = severities[i % severities.len()];
        let caller = format!("+48601{i:06}");
        let id = file(
            &app,
            report(&caller, &format!("op-{}", i % 4), Category::Other, severity),
        )
        .await;
        existing.push((id, severity));
    }
    // Most urgent first: critical before high before medium before low, then oldest first.
    let mut urgent = existing.clone();
    urgent.sort_by_key(|(_, s)| std::cmp::Reverse(*s));
    let urgent: Vec<String> = urgent.into_iter().map(|(id, _)| id).collect();
    let existing: Vec<String> = existing.into_iter().map(|(id, _)| id).collect();

    let (made, done, task) = feed(&app, 16, 1);
    let (seen, during) =
        page_through_while_reports_arrive(&app, ListIncidentsRequest::default(), &made, &done)
            .await;
    let arrived = task.await.unwrap();
    assert!(during >= 3, "only {during} reports arrived while paging");
    assert_each_once(&seen, &existing);
    let old_ones: Vec<&str> = seen
        .iter()
        .map(|i| i.id.as_str())
        .filter(|id| existing.iter().any(|e| e == id))
        .collect();
    assert_eq!(old_ones, urgent, "the urgent order");
    assert!(
        seen.is_sorted_by_key(urgent_key),
        "the pages together keep the urgent order: {:?}",
        seen.iter()
            .map(|i| (i.severity(), at(&i.created_at)))
            .collect::<Vec<_>>()
    );

    // Newest first, the same way.
    let before: Vec<String> = existing.iter().chain(&arrived).cloned().collect();
    let newest: Vec<String> = before.iter().rev().cloned().collect();
    let (made, done, task) = feed(&app, 16, 2);
    let request = ListIncidentsRequest {
        order: IncidentOrder::Newest.into(),
        ..Default::default()
    };
    let (seen, during) = page_through_while_reports_arrive(&app, request, &made, &done).await;
    task.await.unwrap();
    assert!(during >= 3, "only {during} reports arrived while paging");
    assert_each_once(&seen, &before);
    let old_ones: Vec<&str> = seen
        .iter()
        .map(|i| i.id.as_str())
        .filter(|id| before.iter().any(|e| e == id))
        .collect();
    assert_eq!(old_ones, newest, "newest first");
    assert!(
        seen.is_sorted_by_key(|i| std::cmp::Reverse(at(&i.created_at))),
        "the pages together keep the newest order"
    );

    // A token belongs to its filters and order.
    let first = list(
        &app,
        ListIncidentsRequest {
            page_size: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(first.incidents.len(), 4);
    let token = first.next_page_token;
    assert!(!token.is_empty());
    let same = list(
        &app,
        ListIncidentsRequest {
            page_size: 4,
            page_token: token.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        same.incidents
            .iter()
            .all(|i| !ids(&first.incidents).contains(&i.id.as_str())),
        "the second page goes on from the first"
    );
    for (what, other) in [
        (
            "another order",
            ListIncidentsRequest {
                order: IncidentOrder::Newest.into(),
                ..Default::default()
            },
        ),
        (
            "a severity filter",
            ListIncidentsRequest {
                severities: vec![Severity::Low.into()],
                ..Default::default()
            },
        ),
        (
            "a status filter",
            ListIncidentsRequest {
                statuses: vec![IncidentStatus::Open.into()],
                ..Default::default()
            },
        ),
        (
            "a caller filter",
            ListIncidentsRequest {
                caller: "+48601000001".into(),
                ..Default::default()
            },
        ),
        (
            "overdue only",
            ListIncidentsRequest {
                overdue_only: true,
                ..Default::default()
            },
        ),
    ] {
        let err = list(
            &app,
            ListIncidentsRequest {
                page_size: 4,
                page_token: token.clone(),
                ..other
            },
        )
        .await
        .expect_err(what);
        assert_invalid(&err, "page_token", "");
    }
    for garbage in ["garbage", "AAAA", "eyJ4IjoxfQ", &token[..token.len() / 2]] {
        let err = list(
            &app,
            ListIncidentsRequest {
                page_token: garbage.into(),
                ..Default::default()
            },
        )
        .await
        .expect_err(garbage);
        assert_invalid(&err, "page_token", "");
    }
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn each_filter_narrows_the_list() {
    let app = spawn_app().await;
    let mut clock = ServiceClock::of(&app);
    let (ca, cb, cc) = (CALLER, "+48601000002", "+48601000003");
    let a = file(
        &app,
        report(ca, "op-a", Category::AbusiveLanguage, Severity::Low),
    )
    .await;
    let b = file(
        &app,
        Report {
            line: OTHER_LINE.into(),
            ..report(cb, "op-b", Category::FraudOrSpam, Severity::Medium)
        },
    )
    .await;
    clock.advance(Duration::hours(1));
    let c = file(
        &app,
        Report {
            line: GB_LINE.into(),
            ..report(ca, "op-b", Category::Oversharing, Severity::Medium)
        },
    )
    .await;
    let d = file(
        &app,
        report(cc, "op-a", Category::SexualMisconduct, Severity::High),
    )
    .await;
    clock.advance(Duration::hours(1));
    let e = file(
        &app,
        report(cb, "op-c", Category::Other, Severity::Critical),
    )
    .await;
    let f = file(
        &app,
        Report {
            line: OTHER_LINE.into(),
            ..report(cc, "op-c", Category::AbusiveLanguage, Severity::Low)
        },
    )
    .await;
    acknowledge(&app, &b, SUP).await.unwrap();
    acknowledge(&app, &c, SUP).await.unwrap();
    resolve(&app, &c, Outcome::NoAction).await.unwrap();
    acknowledge(&app, &d, SUP).await.unwrap();
    dismiss(&app, &d, "a misunderstanding").await.unwrap();

    let all = every_status();
    let query = |request: ListIncidentsRequest| {
        let app = &app;
        async move {
            let listed = list_ids(app, request.clone()).await;
            let unique: BTreeSet<String> = listed.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                listed.len(),
                "{request:?} repeats: {listed:?}"
            );
            unique
        }
    };
    let want = |ids: &[&String]| -> BTreeSet<String> { ids.iter().map(|s| (*s).clone()).collect() };

    // No statuses: the queue, most urgent first. Newest first over everything.
    assert_eq!(
        list_ids(&app, ListIncidentsRequest::default()).await,
        [e.clone(), b.clone(), a.clone(), f.clone()],
        "the queue: OPEN and ACKNOWLEDGED, critical, medium, then the older low"
    );
    assert_eq!(
        list_ids(
            &app,
            ListIncidentsRequest {
                statuses: all.clone(),
                order: IncidentOrder::Newest.into(),
                ..Default::default()
            }
        )
        .await,
        [
            f.clone(),
            e.clone(),
            d.clone(),
            c.clone(),
            b.clone(),
            a.clone()
        ]
    );

    let cases: Vec<(&str, ListIncidentsRequest, BTreeSet<String>)> = vec![
        (
            "closed",
            ListIncidentsRequest {
                statuses: vec![
                    IncidentStatus::Resolved.into(),
                    IncidentStatus::Dismissed.into(),
                ],
                ..Default::default()
            },
            want(&[&c, &d]),
        ),
        (
            "acknowledged",
            ListIncidentsRequest {
                statuses: vec![IncidentStatus::Acknowledged.into()],
                ..Default::default()
            },
            want(&[&b]),
        ),
        (
            "open",
            ListIncidentsRequest {
                statuses: vec![IncidentStatus::Open.into()],
                ..Default::default()
            },
            want(&[&a, &e, &f]),
        ),
        (
            "low or critical in the queue",
            ListIncidentsRequest {
                severities: vec![Severity::Low.into(), Severity::Critical.into()],
                ..Default::default()
            },
            want(&[&a, &e, &f]),
        ),
        (
            "medium, any state",
            ListIncidentsRequest {
                statuses: all.clone(),
                severities: vec![Severity::Medium.into()],
                ..Default::default()
            },
            want(&[&b, &c]),
        ),
        (
            "abusive language, any state",
            ListIncidentsRequest {
                statuses: all.clone(),
                categories: vec![Category::AbusiveLanguage.into()],
                ..Default::default()
            },
            want(&[&a, &f]),
        ),
        (
            "oversharing or sexual misconduct, any state",
            ListIncidentsRequest {
                statuses: all.clone(),
                categories: vec![
                    Category::Oversharing.into(),
                    Category::SexualMisconduct.into(),
                ],
                ..Default::default()
            },
            want(&[&c, &d]),
        ),
        (
            "the Polish line, spaced",
            ListIncidentsRequest {
                statuses: all.clone(),
                line: "+48 22 100 20 30".into(),
                ..Default::default()
            },
            want(&[&a, &d, &e]),
        ),
        (
            "the Polish line, 00-prefixed",
            ListIncidentsRequest {
                statuses: all.clone(),
                line: "0048221002030".into(),
                ..Default::default()
            },
            want(&[&a, &d, &e]),
        ),
        (
            "a named line",
            ListIncidentsRequest {
                statuses: all.clone(),
                line: OTHER_LINE.into(),
                ..Default::default()
            },
            want(&[&b, &f]),
        ),
        (
            "the British line",
            ListIncidentsRequest {
                statuses: all.clone(),
                line: "+44 20 7946 0018".into(),
                ..Default::default()
            },
            want(&[&c]),
        ),
        (
            "a caller in national format",
            ListIncidentsRequest {
                statuses: all.clone(),
                caller: "601 234 567".into(),
                ..Default::default()
            },
            want(&[&a, &c]),
        ),
        (
            "a caller, 00-prefixed",
            ListIncidentsRequest {
                statuses: all.clone(),
                caller: "0048 601 000 002".into(),
                ..Default::default()
            },
            want(&[&b, &e]),
        ),
        (
            "an operator",
            ListIncidentsRequest {
                statuses: all.clone(),
                operator_id: "op-b".into(),
                ..Default::default()
            },
            want(&[&b, &c]),
        ),
        (
            "an operator with no reports",
            ListIncidentsRequest {
                statuses: all.clone(),
                operator_id: "op-z".into(),
                ..Default::default()
            },
            want(&[]),
        ),
        (
            "filters combine with AND",
            ListIncidentsRequest {
                statuses: all.clone(),
                caller: "601234567".into(),
                severities: vec![Severity::Medium.into()],
                ..Default::default()
            },
            want(&[&c]),
        ),
        (
            "a line in the queue",
            ListIncidentsRequest {
                line: OTHER_LINE.into(),
                ..Default::default()
            },
            want(&[&b, &f]),
        ),
    ];
    for (what, request, expected) in cases {
        assert_eq!(query(request).await, expected, "{what}");
    }

    // Created at or after / before, to the microsecond.
    let created = |id: &String| {
        let app = &app;
        let id = id.clone();
        async move { incident(app, &id).await.created_at.unwrap() }
    };
    let (c_at, e_at) = (created(&c).await, created(&e).await);
    let range = |after: Option<prost_types::Timestamp>, before: Option<prost_types::Timestamp>| {
        ListIncidentsRequest {
            statuses: every_status(),
            created_after: after,
            created_before: before,
            ..Default::default()
        }
    };
    assert_eq!(
        query(range(Some(c_at), None)).await,
        want(&[&c, &d, &e, &f])
    );
    assert_eq!(query(range(None, Some(c_at))).await, want(&[&a, &b]));
    assert_eq!(query(range(Some(c_at), Some(e_at))).await, want(&[&c, &d]));

    // Bad filters name themselves.
    assert_names(
        list(
            &app,
            ListIncidentsRequest {
                caller: "not a number".into(),
                ..Default::default()
            },
        )
        .await,
        "caller",
    );
    assert_names(
        list(
            &app,
            ListIncidentsRequest {
                line: "no spaces allowed".into(),
                ..Default::default()
            },
        )
        .await,
        "line",
    );
    assert_names(
        list(
            &app,
            ListIncidentsRequest {
                operator_id: "Jane Doe".into(),
                ..Default::default()
            },
        )
        .await,
        "operator_id",
    );

    // Overdue: nothing yet; then the critical one (15 minutes); then the acknowledged medium
    // one (8 hours) too. Closed incidents are never overdue.
    let overdue = |statuses: Vec<i32>| ListIncidentsRequest {
        statuses,
        overdue_only: true,
        ..Default::default()
    };
    assert_eq!(query(overdue(vec![])).await, want(&[]));
    clock.advance(Duration::hours(1));
    assert_eq!(
        list_ids(&app, overdue(vec![])).await,
        std::slice::from_ref(&e)
    );
    let queue = list_all(&app, ListIncidentsRequest::default()).await;
    for i in &queue {
        assert_eq!(i.overdue, i.id == e, "{i:?}");
    }
    clock.advance(Duration::hours(5) + Duration::minutes(1));
    assert_eq!(
        list_ids(&app, overdue(vec![])).await,
        [e.clone(), b.clone()],
        "overdue, most urgent first"
    );
    assert_eq!(query(overdue(all.clone())).await, want(&[&b, &e]));
    assert_eq!(
        query(overdue(vec![
            IncidentStatus::Resolved.into(),
            IncidentStatus::Dismissed.into()
        ]))
        .await,
        want(&[])
    );
    assert_eq!(
        query(overdue(vec![IncidentStatus::Acknowledged.into()])).await,
        want(&[&b])
    );
    app.stop().await.expect("a clean stop");
}

// ---------------------------------------------------------------------------------------------
// Deadlines, escalation and live changes.

#[tokio::test]
async fn missed_deadlines_make_incidents_overdue_and_escalate_open_critical_ones_once() {
    let app = spawn_app().await;
    let mut clock = ServiceClock::of(&app);
    let mut critical = watch(&app, &[Severity::Critical]).await;
    let x = file(
        &app,
        report(
            "+48601000011",
            "op-1",
            Category::AbusiveLanguage,
            Severity::Critical,
        ),
    )
    .await;
    let acked = file(
        &app,
        report(
            "+48601000012",
            "op-2",
            Category::AbusiveLanguage,
            Severity::Critical,
        ),
    )
    .await;
    let high = file(
        &app,
        report(
            "+48601000013",
            "op-3",
            Category::FraudOrSpam,
            Severity::High,
        ),
    )
    .await;
    let low = file(
        &app,
        report("+48601000014", "op-4", Category::Oversharing, Severity::Low),
    )
    .await;
    acknowledge(&app, &acked, SUP).await.unwrap();

    let fresh = incident(&app, &x).await;
    assert!(!fresh.overdue && !fresh.escalated, "{fresh:?}");
    assert_eq!(
        at(&fresh.deadline) - at(&fresh.created_at),
        Duration::minutes(15),
        "a critical incident is due in 15 minutes"
    );
    let high_incident = incident(&app, &high).await;
    assert_eq!(
        at(&high_incident.deadline) - at(&high_incident.created_at),
        Duration::hours(1)
    );
    assert!(
        list_ids(
            &app,
            ListIncidentsRequest {
                overdue_only: true,
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );

    // Sixteen minutes on: both critical incidents are overdue; the OPEN one is escalated.
    clock.advance(Duration::minutes(16));
    let (change, passed) = change_of(&mut critical, &x, "deadline_escalated").await;
    let notice = change.incident.unwrap();
    assert!(notice.escalated && notice.overdue, "{notice:?}");
    assert_eq!(notice.status(), IncidentStatus::Open);
    let queue = list_all(&app, ListIncidentsRequest::default()).await;
    assert!(find(&queue, &x).overdue && find(&queue, &x).escalated);
    assert!(find(&queue, &acked).overdue, "acknowledged but undecided");
    assert!(!find(&queue, &high).overdue && !find(&queue, &low).overdue);
    assert_eq!(
        list_ids(
            &app,
            ListIncidentsRequest {
                overdue_only: true,
                ..Default::default()
            }
        )
        .await,
        [x.clone(), acked.clone()]
    );
    let detail = get(&app, &x).await;
    assert!(incident_of(&detail).escalated);
    let escalations: Vec<_> = detail
        .events
        .iter()
        .filter(|e| e.kind == "deadline_escalated")
        .collect();
    assert_eq!(escalations.len(), 1, "{:?}", kinds(&detail));
    assert_eq!(escalations[0].actor, "system");
    assert_chain(&detail);

    // An hour after the reports the high one is overdue too, and sorts before a newer critical
    // one that is not.
    clock.advance(Duration::minutes(45));
    let y = file(
        &app,
        report(
            "+48601000015",
            "op-5",
            Category::AbusiveLanguage,
            Severity::Critical,
        ),
    )
    .await;
    assert_eq!(
        list_ids(&app, ListIncidentsRequest::default()).await,
        [
            x.clone(),
            acked.clone(),
            high.clone(),
            y.clone(),
            low.clone()
        ],
        "overdue first, then by severity, then oldest first"
    );

    // Once y is escalated too, the loop has looked at x again since: still one escalation.
    clock.advance(Duration::minutes(16));
    let (_, later) = change_of(&mut critical, &y, "deadline_escalated").await;
    let detail = get(&app, &x).await;
    assert_eq!(
        count_of(&detail, "deadline_escalated"),
        1,
        "{:?}",
        kinds(&detail)
    );
    // The acknowledged one is overdue but never escalated by the deadline.
    let detail = get(&app, &acked).await;
    assert!(incident_of(&detail).overdue && !incident_of(&detail).escalated);
    assert_eq!(count_of(&detail, "deadline_escalated"), 0);
    // The critical-only stream saw nothing of the others.
    for c in passed.iter().chain(&later) {
        assert!(
            ![high.as_str(), low.as_str()].contains(&change_id(c)),
            "a change of a non-critical incident on a critical-only stream: {c:?}"
        );
        assert_eq!(c.incident.as_ref().unwrap().severity(), Severity::Critical);
        assert!(
            !(change_id(c) == x && c.change == "deadline_escalated"),
            "x was escalated twice: {c:?}"
        );
    }

    // The gauge (refreshed by the maintenance loop; the recorder is shared by the tests in this
    // binary, so only its presence is checked).
    let mut found = false;
    for _ in 0..100 {
        let (status, body) = http_get(app.http_addr, "/metrics").await;
        assert_eq!(status, 200);
        if body.contains("callwarden_incidents_overdue{severity=\"critical\"}") {
            found = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    assert!(
        found,
        "callwarden_incidents_overdue{{severity=\"critical\"}} within 20 s"
    );
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn watchers_see_new_and_changed_incidents_from_any_replica() {
    let app = spawn_app().await;
    let mut everything = watch(&app, &[]).await;
    let mut high_only = watch(&app, &[Severity::High]).await;

    let m = file(
        &app,
        report(CALLER, "op-1", Category::AbusiveLanguage, Severity::Medium),
    )
    .await;
    let (reported, _) = change_of(&mut everything, &m, "reported").await;
    let reported = reported.incident.unwrap();
    assert_eq!(
        (
            reported.status(),
            reported.severity(),
            reported.caller_e164.as_str()
        ),
        (IncidentStatus::Open, Severity::Medium, CALLER)
    );
    assert_eq!(reported.version, incident(&app, &m).await.version);

    acknowledge(&app, &m, SUP).await.unwrap();
    let (acked, _) = change_of(&mut everything, &m, "acknowledged").await;
    let acked = acked.incident.unwrap();
    assert_eq!(acked.status(), IncidentStatus::Acknowledged);
    assert_eq!(acked.acknowledged_by, SUP);
    assert_eq!(
        acked.version,
        reported.version + 1,
        "versions order the changes"
    );
    add_statement(&app, &m, SUP, StatementRole::Supervisor, "noted")
        .await
        .unwrap();
    let (noted, _) = change_of(&mut everything, &m, "statement_added").await;
    assert_eq!(noted.incident.unwrap().version, acked.version + 1);

    // A filtered stream: the medium incident's changes never reach it.
    let h = file(
        &app,
        report(
            "+48601000002",
            "op-2",
            Category::FraudOrSpam,
            Severity::High,
        ),
    )
    .await;
    let (first, passed) = change_of(&mut high_only, &h, "reported").await;
    assert!(
        passed.is_empty(),
        "changes of other severities reached a high-only stream: {passed:?}"
    );
    assert_eq!(first.incident.unwrap().severity(), Severity::High);

    // A change made through another replica reaches streams held by this one.
    let replica = app.replica().await;
    acknowledge(&replica, &h, "sup-2").await.unwrap();
    let (next, passed) = change_of(&mut high_only, &h, "acknowledged").await;
    assert!(passed.is_empty(), "{passed:?}");
    assert_eq!(next.incident.unwrap().acknowledged_by, "sup-2");
    let (_, passed) = change_of(&mut everything, &h, "acknowledged").await;
    assert!(
        passed
            .iter()
            .any(|c| change_id(c) == h && c.change == "reported"),
        "the unfiltered stream saw the high incident reported: {passed:?}"
    );
    replica.stop().await.expect("the replica stops cleanly");
    app.stop().await.expect("a clean stop");
}

// ---------------------------------------------------------------------------------------------
// Anonymous reports.

fn assert_sealed_reference(reporter: &str) {
    let hex = reporter
        .strip_prefix("sealed-")
        .unwrap_or_else(|| panic!("{reporter:?} is not a sealed reference"));
    assert!(
        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{reporter:?}: sealed- and 16 hex digits"
    );
}

#[tokio::test]
async fn an_anonymous_reporter_stays_sealed_until_a_supervisor_unseals_them() {
    const PSEUDONYM: &str = "op-anna-7";
    let app = spawn_app().await;
    let mut changes = watch(&app, &[]).await;
    let id = file(
        &app,
        Report {
            anonymous: true,
            end_call: true,
            debrief: true,
            block: BlockChoice::FromMe,
            note: "asked for my home address".into(),
            ..report(
                CALLER,
                PSEUDONYM,
                Category::IdentityProbing,
                Severity::Medium,
            )
        },
    )
    .await;
    // The same operator again, anonymously: another reference.
    let second = file(
        &app,
        Report {
            anonymous: true,
            ..report(CALLER, PSEUDONYM, Category::Oversharing, Severity::Low)
        },
    )
    .await;
    // Someone who does not mind being named.
    let named = file(
        &app,
        report(CALLER, "op-bob", Category::AbusiveLanguage, Severity::Low),
    )
    .await;
    add_statement(
        &app,
        &id,
        SUP,
        StatementRole::Supervisor,
        "talked to the reporter",
    )
    .await
    .unwrap();

    // Get: sealed everywhere, the operator's own block included.
    let sealed = get(&app, &id).await;
    let shown = incident_of(&sealed);
    assert!(shown.reporter_sealed, "{shown:?}");
    assert_sealed_reference(&shown.reporter);
    let reference = shown.reporter.clone();
    assert!(
        !format!("{sealed:?}").contains(PSEUDONYM),
        "the pseudonym shows in GetIncident: {sealed:#?}"
    );
    assert_eq!(
        sealed.events[0].actor, reference,
        "the report's actor is sealed"
    );
    assert!(
        sealed
            .events
            .iter()
            .any(|e| e.kind == "caller_blocked" && e.details_json.contains(&reference)),
        "the operator's block names the reference: {:#?}",
        sealed.events
    );
    let own_block = sealed
        .active_rules
        .iter()
        .find(|r| {
            r.scope
                .as_ref()
                .is_some_and(|s| s.kind() == ScopeKind::Operator)
        })
        .unwrap_or_else(|| panic!("the operator's block applies: {:?}", sealed.active_rules));
    assert_eq!(own_block.scope.as_ref().unwrap().value, reference);
    assert_eq!(own_block.created_by, reference);
    assert!(sealed.chain_verified, "the stored chain still verifies");
    let other = incident(&app, &second).await;
    assert_sealed_reference(&other.reporter);
    assert_ne!(other.reporter, reference, "a reference per incident");
    // Another incident of the caller shows the anonymous ones sealed, and the anonymous
    // reporter's own block among the caller's rules does not give them away either.
    let sibling = get(&app, &named).await;
    let others: BTreeMap<&str, &str> = sibling
        .caller_incidents
        .iter()
        .map(|i| (i.id.as_str(), i.reporter.as_str()))
        .collect();
    assert_eq!(
        others,
        BTreeMap::from([
            (id.as_str(), reference.as_str()),
            (second.as_str(), other.reporter.as_str())
        ]),
        "the caller's other incidents, sealed"
    );
    assert!(
        !format!("{:?}", sibling.caller_incidents).contains(PSEUDONYM),
        "{:#?}",
        sibling.caller_incidents
    );
    // Checked at the end, so the rest of the story runs whatever it shows.
    let sibling_view = format!("{sibling:#?}");

    // List, filter, watch and export.
    let listed = list_all(
        &app,
        ListIncidentsRequest {
            statuses: every_status(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed.len(), 3);
    assert!(!format!("{listed:?}").contains(PSEUDONYM), "{listed:#?}");
    assert_eq!(find(&listed, &id).reporter, reference);
    assert!(
        list_ids(
            &app,
            ListIncidentsRequest {
                statuses: every_status(),
                operator_id: PSEUDONYM.into(),
                ..Default::default()
            }
        )
        .await
        .is_empty(),
        "the operator filter never matches a sealed report"
    );
    let (reported, _) = change_of(&mut changes, &id, "reported").await;
    assert!(!format!("{reported:?}").contains(PSEUDONYM), "{reported:?}");
    assert_eq!(reported.incident.unwrap().reporter, reference);
    for format in [ExportFormat::Json, ExportFormat::Markdown] {
        let document = export(&app, &id, format).await.unwrap();
        assert!(
            !document.content.contains(PSEUDONYM),
            "{format:?} export names the reporter:\n{}",
            document.content
        );
        assert!(
            document.content.contains(&reference),
            "{format:?} export shows the reference"
        );
    }

    // Unsealing needs a reason and an anonymous report.
    let version = incident(&app, &id).await.version;
    assert_names(unseal(&app, &id, "").await, "reason");
    let err = app
        .review
        .clone()
        .unseal_reporter(UnsealReporterRequest {
            incident_id: id.clone(),
            supervisor_id: "Jane Doe".into(),
            reason: "court order".into(),
        })
        .await
        .unwrap_err();
    assert_invalid(&err, "supervisor_id", "Jane Doe");
    assert_eq!(incident(&app, &id).await.version, version);
    let err = unseal(&app, &named, "curious").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let reason = "court order 2026/11/77 asks for the witness";
    assert_eq!(unseal(&app, &id, reason).await.unwrap(), PSEUDONYM);
    let (unsealed_change, _) = change_of(&mut changes, &id, "reporter_unsealed").await;
    assert!(unsealed_change.incident.unwrap().version > version);
    let unsealed = get(&app, &id).await;
    let shown = incident_of(&unsealed);
    assert_eq!(
        (shown.reporter.as_str(), shown.reporter_sealed),
        (PSEUDONYM, false)
    );
    assert_eq!(shown.version, version + 1);
    let last = unsealed.events.last().unwrap();
    assert_eq!(last.kind, "reporter_unsealed");
    assert_eq!(last.actor, SUP, "it names who unsealed");
    assert!(last.details_json.contains(reason), "and why: {last:?}");
    assert_eq!(unsealed.events[0].actor, PSEUDONYM);
    // The hashes shown while sealed were those of the stored events.
    for (before, after) in sealed.events.iter().zip(&unsealed.events) {
        assert_eq!(
            (before.seq, &before.hash, &before.prev_hash),
            (after.seq, &after.hash, &after.prev_hash)
        );
    }
    assert_chain(&unsealed);
    // Unsealing one report unseals only that one.
    let other = incident(&app, &second).await;
    assert!(other.reporter_sealed);
    assert_sealed_reference(&other.reporter);
    let in_list = list_ids(
        &app,
        ListIncidentsRequest {
            statuses: every_status(),
            operator_id: PSEUDONYM.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        in_list,
        std::slice::from_ref(&id),
        "now it is the operator's report"
    );
    // Before the unsealing, another incident of the caller showed the caller's rules, the
    // anonymous reporter's own block among them: it must not have named them.
    assert!(
        !sibling_view.contains(PSEUDONYM),
        "the caller's rules, seen from another incident before the unsealing, name the \
         anonymous reporter: {sibling_view}"
    );
    app.stop().await.expect("a clean stop");
}

// ---------------------------------------------------------------------------------------------
// Export.

#[tokio::test]
async fn an_export_carries_the_whole_record_sealed_by_its_chain_hash() {
    let app = spawn_app().await;
    let id = file(
        &app,
        Report {
            note: "threatened the operator's family".into(),
            end_call: true,
            ..report(CALLER, "op-1", Category::AbusiveLanguage, Severity::Medium)
        },
    )
    .await;
    acknowledge(&app, &id, SUP).await.unwrap();
    add_statement(
        &app,
        &id,
        "op-3",
        StatementRole::Witness,
        "I heard every word.",
    )
    .await
    .unwrap();
    let sha = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    attach(&app, evidence(&id, "s3://recordings/2026/11/xyz.wav", sha))
        .await
        .unwrap();
    resolve_with(
        &app,
        ResolveIncidentRequest {
            incident_id: id.clone(),
            supervisor_id: SUP.into(),
            outcome: Outcome::WarningIssued.into(),
            note: "written warning sent".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let detail = get(&app, &id).await;
    let shown = incident_of(&detail).clone();
    let chain_hash = shown.chain_hash.clone();
    assert_eq!(chain_hash, detail.events.last().unwrap().hash);

    // Markdown: the same key facts, for people.
    let markdown = export(&app, &id, ExportFormat::Markdown).await.unwrap();
    assert_eq!(markdown.content_type, "text/markdown; charset=utf-8");
    assert_eq!(markdown.chain_hash, chain_hash);
    assert!(
        markdown.filename.contains(&id) && markdown.filename.ends_with(".md"),
        "{}",
        markdown.filename
    );
    for fact in [
        CALLER,
        PL_LINE,
        chain_hash.as_str(),
        sha,
        "warning_issued",
        "abusive_language",
        "medium",
        "threatened the operator's family",
        "I heard every word.",
        "s3://recordings/2026/11/xyz.wav",
        "written warning sent",
        id.as_str(),
    ] {
        assert!(
            markdown.content.contains(fact),
            "{fact:?} missing from the Markdown:\n{}",
            markdown.content
        );
    }
    for e in &detail.events {
        assert!(
            markdown.content.contains(&e.hash),
            "event #{} ({})'s hash is in the Markdown",
            e.seq,
            e.kind
        );
    }

    // JSON, the default.
    let json = export(&app, &id, ExportFormat::Unspecified).await.unwrap();
    assert_eq!(json.content_type, "application/json");
    assert_eq!(json.chain_hash, chain_hash);
    assert!(
        json.filename.contains(&id) && json.filename.ends_with(".json"),
        "{}",
        json.filename
    );
    let document: Value = serde_json::from_str(&json.content).expect("the export is JSON");
    let mut explicit: Value =
        serde_json::from_str(&export(&app, &id, ExportFormat::Json).await.unwrap().content)
            .expect("the export is JSON");
    let mut same = document.clone();
    for d in [&mut explicit, &mut same] {
        d.as_object_mut().unwrap().remove("generated_at");
    }
    assert_eq!(explicit, same, "JSON is the default: the same document");
    assert_export_json(&document, &detail, Utc::now());

    // The export is read-only: the chain did not grow.
    assert_eq!(incident(&app, &id).await.version, shown.version);
    app.stop().await.expect("a clean stop");
}

/// A time in the export, as the instant it names.
fn json_time(v: &Value, what: &str) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a time string: {v}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{what}: {s:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// The JSON export, field by field, against what GetIncident shows.
fn assert_export_json(doc: &Value, detail: &IncidentDetail, made_at: DateTime<Utc>) {
    let shown = incident_of(detail);
    assert_eq!(doc["format"], "callwarden.incident-report/v1");
    assert_near(
        json_time(&doc["generated_at"], "generated_at"),
        made_at,
        "generated_at",
    );

    let incident = &doc["incident"];
    assert_eq!(incident["id"], shown.id.as_str());
    assert_eq!(incident["status"], "resolved");
    assert_eq!(
        json_time(&incident["reported_at"], "reported_at"),
        at(&shown.created_at)
    );
    assert_eq!(
        json_time(&incident["deadline"], "deadline"),
        at(&shown.deadline)
    );
    assert_eq!(incident["line"], PL_LINE);
    assert_eq!(incident["caller"], CALLER);
    assert_eq!(incident["call_id"], shown.call_id.as_str());
    assert_eq!(incident["switch_id"], "sw-review");
    assert_eq!(incident["reporter"], "op-1");
    assert_eq!(incident["reporter_sealed"], false);
    assert_eq!(incident["source"], "end_and_flag");

    let what = &doc["what_happened"];
    assert_eq!(what["category"], "abusive_language");
    assert_eq!(what["severity"], "medium");
    assert_eq!(what["note"], "threatened the operator's family");
    assert_eq!(what["block_requested"], "none");
    assert_eq!(what["debrief_requested"], false);

    // Every event of the chain, with its hash, as GetIncident shows it.
    let timeline = doc["timeline"].as_array().expect("a timeline");
    assert_eq!(timeline.len(), detail.events.len());
    for (e, shown_event) in timeline.iter().zip(&detail.events) {
        let what = format!("timeline event #{}", shown_event.seq);
        assert_eq!(e["seq"], shown_event.seq, "{what}");
        assert_eq!(json_time(&e["at"], &what), at(&shown_event.at), "{what}");
        assert_eq!(e["actor"], shown_event.actor.as_str(), "{what}");
        assert_eq!(e["kind"], shown_event.kind.as_str(), "{what}");
        assert_eq!(
            e["details"],
            serde_json::from_str::<Value>(&shown_event.details_json).unwrap(),
            "{what}"
        );
        assert_eq!(e["hash"], shown_event.hash.as_str(), "{what}");
    }
    // The actions taken: the call ended, the operator's break; no block, nothing escalated.
    let actions: Vec<(&str, &str)> = doc["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["hash"].as_str().unwrap()))
        .collect();
    let expected: Vec<(&str, &str)> = detail
        .events
        .iter()
        .filter(|e| ["terminate_sent", "operator_cooldown"].contains(&e.kind.as_str()))
        .map(|e| (e.kind.as_str(), e.hash.as_str()))
        .collect();
    assert_eq!(expected.len(), 2, "{:?}", kinds(detail));
    assert_eq!(actions, expected);

    let statement = &detail.statements[0];
    assert_eq!(
        doc["statements"],
        serde_json::json!([{
            "at": doc["statements"][0]["at"].clone(),
            "author": "op-3",
            "role": "witness",
            "text": "I heard every word.",
        }])
    );
    assert_eq!(
        json_time(&doc["statements"][0]["at"], "statement at"),
        at(&statement.at)
    );

    let evidence = &detail.evidence[0];
    let exported = doc["evidence"].as_array().expect("evidence");
    assert_eq!(exported.len(), 1);
    let e = &exported[0];
    assert_eq!(e["id"], evidence.id.as_str());
    assert_eq!(e["uri"], "s3://recordings/2026/11/xyz.wav");
    assert_eq!(
        e["sha256"],
        "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
    );
    assert_eq!(e["duration_seconds"], 95);
    assert_eq!(e["description"], "the call's recording");
    assert_eq!(e["attached_by"], SUP);
    assert_eq!(
        json_time(&e["attached_at"], "attached_at"),
        at(&evidence.attached_at)
    );
    assert_eq!(e["captured_at"], Value::Null);

    let review = &doc["review"];
    assert_eq!(
        json_time(&review["acknowledged_at"], "acknowledged_at"),
        at(&shown.acknowledged_at)
    );
    assert_eq!(review["acknowledged_by"], SUP);
    assert_eq!(
        json_time(&review["closed_at"], "closed_at"),
        at(&shown.closed_at)
    );
    assert_eq!(review["closed_by"], SUP);
    assert_eq!(review["outcome"], "warning_issued");
    assert_eq!(review["note"], "written warning sent");
    for absent in ["authority", "reference", "block_rule_id"] {
        assert_eq!(review[absent], Value::Null, "{absent}");
    }

    let seal = &doc["seal"];
    assert_eq!(seal["events"], detail.events.len());
    assert_eq!(seal["chain_hash"], shown.chain_hash.as_str());
    assert_eq!(
        seal["chain_hash"],
        detail.events.last().unwrap().hash.as_str()
    );
    assert_eq!(seal["chain_verified"], true);
}

// ---------------------------------------------------------------------------------------------
// Statistics.

fn counts(counts: &[Count]) -> BTreeMap<&str, u64> {
    counts
        .iter()
        .filter(|c| c.count > 0)
        .map(|c| (c.key.as_str(), c.count))
        .collect()
}

#[tokio::test]
async fn statistics_match_a_known_data_set() {
    let app = spawn_app().await;
    let mut clock = ServiceClock::of(&app);
    let (c1, c2, c3) = ("+48601000101", "+48601000102", "+48601000103");
    let i1 = file(
        &app,
        report(c1, "op-1", Category::AbusiveLanguage, Severity::Low),
    )
    .await;
    let i2 = file(
        &app,
        report(c1, "op-2", Category::AbusiveLanguage, Severity::Medium),
    )
    .await;
    let i3 = file(
        &app,
        report(c2, "op-1", Category::FraudOrSpam, Severity::Medium),
    )
    .await;
    file(
        &app,
        report(c1, "op-1", Category::Oversharing, Severity::Low),
    )
    .await;
    file(&app, report(c3, "op-2", Category::Other, Severity::High)).await;
    let first = incident(&app, &i1).await.created_at.unwrap();

    // Acknowledged after one and two minutes; decided after three.
    clock.advance(Duration::seconds(60));
    acknowledge(&app, &i1, SUP).await.unwrap();
    acknowledge(&app, &i2, SUP).await.unwrap();
    clock.advance(Duration::seconds(60));
    acknowledge(&app, &i3, SUP).await.unwrap();
    clock.advance(Duration::seconds(60));
    resolve(&app, &i1, Outcome::NoAction).await.unwrap();
    resolve(&app, &i3, Outcome::WarningIssued).await.unwrap();
    dismiss(&app, &i2, "a misunderstanding").await.unwrap();
    // A day later, one more: outside the range below.
    clock.advance(Duration::days(1));
    let i6 = file(
        &app,
        report(c2, "op-3", Category::AbusiveLanguage, Severity::Critical),
    )
    .await;
    let later = incident(&app, &i6).await.created_at.unwrap();

    let s = stats(
        &app,
        GetStatsRequest {
            from: Some(first),
            to: Some(later),
            top_callers: 0,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((s.from, s.to), (Some(first), Some(later)));
    assert_eq!(s.total, 5);
    assert_eq!(
        counts(&s.by_category),
        BTreeMap::from([
            ("abusive_language", 2),
            ("fraud_or_spam", 1),
            ("oversharing", 1),
            ("other", 1)
        ])
    );
    assert_eq!(
        counts(&s.by_severity),
        BTreeMap::from([("low", 2), ("medium", 2), ("high", 1)])
    );
    assert_eq!(
        counts(&s.by_status),
        BTreeMap::from([("open", 2), ("resolved", 2), ("dismissed", 1)])
    );
    assert_eq!(
        counts(&s.by_outcome),
        BTreeMap::from([("no_action", 1), ("warning_issued", 1)])
    );
    let ack = s.time_to_acknowledge.expect("time to acknowledge");
    assert_eq!(ack.count, 3, "{ack:?}");
    assert_seconds_near(ack.p50_seconds, 60.0, "time to acknowledge, p50");
    assert_seconds_near(ack.max_seconds, 120.0, "time to acknowledge, max");
    assert!(
        ack.p50_seconds <= ack.p90_seconds
            && ack.p90_seconds <= ack.p99_seconds
            && ack.p99_seconds <= ack.max_seconds,
        "{ack:?}"
    );
    let resolution = s.time_to_resolve.expect("time to resolve");
    assert_eq!(resolution.count, 2, "RESOLVED only: {resolution:?}");
    assert_seconds_near(resolution.p50_seconds, 180.0, "time to resolve, p50");
    assert_seconds_near(resolution.max_seconds, 180.0, "time to resolve, max");
    let top: Vec<(&str, u64, u64)> = s
        .top_callers
        .iter()
        .map(|c| (c.caller_e164.as_str(), c.incidents, c.reporters))
        .collect();
    assert_eq!(top.len(), 3, "{top:?}");
    assert_eq!(top[0], (c1, 3, 2), "the most reported caller first");
    let rest: BTreeSet<_> = top[1..].iter().copied().collect();
    assert_eq!(rest, BTreeSet::from([(c2, 1, 1), (c3, 1, 1)]));

    let one = stats(
        &app,
        GetStatsRequest {
            from: Some(first),
            to: Some(later),
            top_callers: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(one.top_callers.len(), 1);
    assert_eq!(one.top_callers[0].caller_e164, c1);

    // [from, to): the later incident counts from its own creation on.
    let just_it = stats(
        &app,
        GetStatsRequest {
            from: Some(later),
            to: Some(timestamp(at(&Some(later)) + Duration::seconds(1))),
            top_callers: 0,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(just_it.total, 1);
    assert_eq!(
        counts(&just_it.by_severity),
        BTreeMap::from([("critical", 1)])
    );
    assert_eq!(counts(&just_it.by_status), BTreeMap::from([("open", 1)]));
    assert_eq!(just_it.time_to_acknowledge.map_or(0, |d| d.count), 0);
    assert_eq!(just_it.top_callers.len(), 1);
    assert_eq!(
        (
            just_it.top_callers[0].caller_e164.as_str(),
            just_it.top_callers[0].incidents
        ),
        (c2, 1)
    );

    // Defaults: up to now, over 30 days.
    let recent = stats(&app, GetStatsRequest::default()).await;
    assert_eq!(recent.total, 6);
    let to = at(&recent.to);
    assert_near(to, clock.now(), "to defaults to now");
    assert_eq!(to - at(&recent.from), Duration::days(30));
    app.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn statistics_count_each_day_in_the_readers_time_zone() {
    let app = spawn_app().await;
    let mut clock = ServiceClock::of(&app);
    let i1 = file(
        &app,
        report(
            "+48601000201",
            "op-1",
            Category::AbusiveLanguage,
            Severity::Low,
        ),
    )
    .await;
    file(
        &app,
        report(
            "+48601000202",
            "op-2",
            Category::FraudOrSpam,
            Severity::High,
        ),
    )
    .await;
    let first = at(&incident(&app, &i1).await.created_at);
    clock.advance(Duration::seconds(90));
    acknowledge(&app, &i1, SUP).await.unwrap();
    clock.advance(Duration::days(2));
    let i3 = file(
        &app,
        report(
            "+48601000201",
            "op-3",
            Category::AbusiveLanguage,
            Severity::Critical,
        ),
    )
    .await;
    let later = at(&incident(&app, &i3).await.created_at);

    let zone: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let day = |t: DateTime<Utc>| t.with_timezone(&zone).format("%Y-%m-%d").to_string();
    let s = stats(
        &app,
        GetStatsRequest {
            from: Some(timestamp(first - Duration::hours(1))),
            to: Some(timestamp(later + Duration::hours(1))),
            time_zone: "Asia/Shanghai".into(),
            ..Default::default()
        },
    )
    .await;
    // Every day of the range, quiet ones included, in order.
    let days: Vec<&str> = s.by_day.iter().map(|d| d.day.as_str()).collect();
    assert_eq!(
        days.first().copied(),
        Some(day(first - Duration::hours(1)).as_str())
    );
    assert_eq!(
        days.last().copied(),
        Some(day(later + Duration::hours(1)).as_str())
    );
    assert!(days.windows(2).all(|w| w[0] < w[1]), "{days:?}");
    assert_eq!(s.by_day.iter().map(|d| d.total).sum::<u64>(), 3);
    let of = |t: DateTime<Utc>| s.by_day.iter().find(|d| d.day == day(t)).unwrap();
    let first_day = of(first);
    assert_eq!(first_day.total, 2);
    assert_eq!(
        counts(&first_day.by_category),
        BTreeMap::from([("abusive_language", 1), ("fraud_or_spam", 1)])
    );
    assert_seconds_near(first_day.acknowledge_p50_seconds, 90.0, "that day's median");
    let last_day = of(later);
    assert_eq!(
        counts(&last_day.by_severity),
        BTreeMap::from([("critical", 1)])
    );
    assert_eq!(
        last_day.acknowledge_p50_seconds, 0.0,
        "nothing acknowledged that day"
    );

    let bad = app
        .review
        .clone()
        .get_stats(GetStatsRequest {
            time_zone: "Mars/Olympus".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&bad, "time_zone", "Mars/Olympus");
}

#[tokio::test]
async fn the_queue_counts_every_status_under_its_filters() {
    let app = spawn_app().await;
    let a = file(
        &app,
        report("+48601000301", "op-1", Category::Other, Severity::High),
    )
    .await;
    file(
        &app,
        report("+48601000302", "op-1", Category::Other, Severity::High),
    )
    .await;
    let c = file(
        &app,
        report("+48601000303", "op-1", Category::Other, Severity::High),
    )
    .await;
    file(
        &app,
        report("+48601000304", "op-1", Category::Other, Severity::Low),
    )
    .await;
    acknowledge(&app, &a, SUP).await.unwrap();
    acknowledge(&app, &c, SUP).await.unwrap();
    resolve(&app, &c, Outcome::NoAction).await.unwrap();

    let page = list(
        &app,
        ListIncidentsRequest {
            statuses: vec![IncidentStatus::Open.into()],
            severities: vec![Severity::High.into()],
            with_status_counts: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        page.incidents.len(),
        1,
        "the page keeps its own status filter"
    );
    assert_eq!(
        counts(&page.status_counts),
        BTreeMap::from([("open", 1), ("acknowledged", 1), ("resolved", 1)]),
        "every status, under the severity filter"
    );
    let keys: Vec<&str> = page.status_counts.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        ["open", "acknowledged", "resolved", "dismissed"],
        "zeros included"
    );
    // Closed incidents count from `closed_since` on (24 hours ago by default).
    let later = list(
        &app,
        ListIncidentsRequest {
            severities: vec![Severity::High.into()],
            with_status_counts: true,
            closed_since: Some(timestamp(Utc::now() + Duration::hours(1))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        counts(&later.status_counts),
        BTreeMap::from([("open", 1), ("acknowledged", 1)])
    );
    let plain = list(&app, ListIncidentsRequest::default()).await.unwrap();
    assert!(plain.status_counts.is_empty(), "counted only when asked");
}

#[tokio::test]
async fn markdown_reports_speak_the_readers_language_and_time_zone() {
    let app = spawn_app().await;
    let id = file(
        &app,
        report(CALLER, "op-1", Category::AbusiveLanguage, Severity::Medium),
    )
    .await;
    let created = at(&incident(&app, &id).await.created_at);
    let localized = |locale: &str, zone: &str| {
        let review = app.review.clone();
        let (id, locale, zone) = (id.clone(), locale.to_owned(), zone.to_owned());
        async move {
            review
                .clone()
                .export_incident(ExportIncidentRequest {
                    incident_id: id,
                    format: ExportFormat::Markdown.into(),
                    locale,
                    time_zone: zone,
                })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let warsaw: chrono_tz::Tz = "Europe/Warsaw".parse().unwrap();
    let pl = localized("pl", "Europe/Warsaw").await.unwrap();
    for fact in [
        format!("# Raport o incydencie {id}"),
        "Obraźliwy język (abusive_language)".to_owned(),
        created
            .with_timezone(&warsaw)
            .format("%-d.%m.%Y, %H:%M")
            .to_string(),
        CALLER.to_owned(),
    ] {
        assert!(
            pl.content.contains(&fact),
            "{fact:?} missing from\n{}",
            pl.content
        );
    }
    let zh = localized("zh-CN", "Asia/Shanghai").await.unwrap();
    assert!(
        zh.content.contains(&format!("# 事件报告 {id}")),
        "{}",
        zh.content
    );
    assert!(
        zh.content.contains("辱骂性语言 (abusive_language)"),
        "{}",
        zh.content
    );
    assert_eq!(
        zh.chain_hash, pl.chain_hash,
        "the same record, whatever the language"
    );
    let en = localized("", "").await.unwrap();
    assert!(
        en.content.contains(&format!("# Incident report {id}")),
        "{}",
        en.content
    );

    let bad = localized("fr", "").await.unwrap_err();
    assert_invalid(&bad, "locale", "fr");
    let bad = localized("pl", "Europe/Atlantis").await.unwrap_err();
    assert_invalid(&bad, "time_zone", "Europe/Atlantis");
}
