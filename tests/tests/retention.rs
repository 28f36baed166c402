//! Privacy over time, end to end: retention removes callers' numbers and notes from incidents
//! closed longer than the configured period (on a moved clock), leaves held and open ones
//! whole, and the chain still verifies (and still catches tampering); every read of an
//! incident is in the audit log, which only admins read and nobody can rewrite.

use callwarden_proto::v1::{
    AcknowledgeIncidentRequest, AddStatementRequest, Category, DismissIncidentRequest,
    ExportIncidentRequest, FlagCallRequest, GetIncidentRequest, Incident, IncidentDetail,
    IncidentRead, ListIncidentReadsRequest, ListIncidentsRequest, Outcome, ReopenIncidentRequest,
    ResolveIncidentRequest, SetLegalHoldRequest, StatementRole, WatchIncidentsRequest,
    review_client::ReviewClient,
};
use callwarden_server::auth::Role;
use callwarden_tests::*;
use tonic::Code;
use uuid::Uuid;

const CALLER: &str = "+48601234567";
/// The caller's number as people write it in notes.
const CALLER_WRITTEN: [&str; 3] = ["601234567", "601 234 567", "601-234-567"];
const NOTE: &str = "told me the street I live on";
const SUP: &str = "sup-ret";

async fn file(app: &TestApp, caller: &str, operator: &str, note: &str) -> String {
    let call_id = app.answered_call(caller, "sw-ret", operator).await;
    app.console
        .clone()
        .flag_call(FlagCallRequest {
            category: Category::AbusiveLanguage.into(),
            note: note.into(),
            ..flag_request(&call_id, operator)
        })
        .await
        .unwrap()
        .into_inner()
        .incident_id
}

fn supervisor(app: &TestApp, who: &str) -> ReviewClient<Conn> {
    ReviewClient::new(with_token(&app.raw_channel, &token(Role::Supervisor, who)))
}

async fn get(app: &TestApp, id: &str) -> IncidentDetail {
    app.review
        .clone()
        .get_incident(GetIncidentRequest {
            incident_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn incident(d: &IncidentDetail) -> &Incident {
    d.incident.as_ref().unwrap()
}

async fn acknowledge(app: &TestApp, id: &str) {
    app.review
        .clone()
        .acknowledge_incident(AcknowledgeIncidentRequest {
            incident_id: id.into(),
            supervisor_id: SUP.into(),
        })
        .await
        .unwrap();
}

async fn resolve(app: &TestApp, id: &str, note: &str) {
    acknowledge(app, id).await;
    app.review
        .clone()
        .resolve_incident(ResolveIncidentRequest {
            incident_id: id.into(),
            supervisor_id: SUP.into(),
            outcome: Outcome::WarningIssued.into(),
            note: note.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn hold(id: &str, hold: bool, reason: &str) -> SetLegalHoldRequest {
    SetLegalHoldRequest {
        incident_id: id.into(),
        hold,
        reason: reason.into(),
        supervisor_id: String::new(),
    }
}

/// Everything a supervisor is shown of an incident, as one text to search.
fn shown(d: &IncidentDetail) -> String {
    format!("{d:?}")
}

fn assert_whole(d: &IncidentDetail, note: &str) {
    let i = incident(d);
    assert_eq!(i.caller_e164, CALLER, "{i:?}");
    assert_eq!(i.note, note);
    assert!(i.redacted_at.is_none());
    assert!(shown(d).contains(note));
    assert!(d.chain_verified);
}

fn assert_redacted(d: &IncidentDetail, secrets: &[&str]) {
    let i = incident(d);
    assert!(i.redacted_at.is_some(), "{i:?}");
    assert_eq!(
        (
            i.caller_e164.as_str(),
            i.note.as_str(),
            i.resolution_note.as_str()
        ),
        ("", "", "")
    );
    let text = shown(d);
    for secret in secrets.iter().chain(&CALLER_WRITTEN).chain(&[CALLER]) {
        assert!(!text.contains(secret), "{secret:?} is still shown: {text}");
    }
    // Only the retention event itself (written after the removal) keeps a salt.
    let last = d.events.last().unwrap();
    assert_eq!(last.kind, "redacted");
    for e in &d.events[..d.events.len() - 1] {
        assert!(e.salt.is_empty(), "event #{} keeps its salt", e.seq);
        assert_eq!(e.hash_scheme, 2);
    }
    assert!(
        d.events
            .iter()
            .any(|e| e.details_json.contains("redacted_sha256")),
        "the removed values leave their digests"
    );
    assert!(d.statements.iter().all(|s| s.text.is_empty()));
    assert!(d.chain_verified, "the chain still verifies");
}

async fn caller_of_call(app: &TestApp, call_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT caller_e164 FROM answered_calls WHERE call_id = $1")
        .bind(call_id)
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

fn retention_config() -> callwarden_server::config::Config {
    let mut config = test_config(&redis_default());
    config.retention.closed_incident_days = 30;
    config.retention.check_interval_seconds = 1;
    config
}

#[tokio::test]
async fn retention_removes_numbers_and_notes_and_the_chain_still_verifies() {
    let app = spawn_app_with(retention_config()).await;
    let resolved = file(&app, CALLER, "op-1", NOTE).await;
    let statement = "he called again from 601 234 567 an hour later";
    app.review
        .clone()
        .add_statement(AddStatementRequest {
            incident_id: resolved.clone(),
            author: SUP.into(),
            role: StatementRole::Supervisor.into(),
            text: statement.into(),
        })
        .await
        .unwrap();
    let resolution = "warned the caller on 601-234-567";
    resolve(&app, &resolved, resolution).await;
    let dismissed = file(&app, CALLER, "op-2", "asked for my real name").await;
    acknowledge(&app, &dismissed).await;
    app.review
        .clone()
        .dismiss_incident(DismissIncidentRequest {
            incident_id: dismissed.clone(),
            supervisor_id: SUP.into(),
            reason: "the same call as another report".into(),
        })
        .await
        .unwrap();
    // Closed, but a supervisor put it on legal hold: the police asked for it.
    let held = file(&app, CALLER, "op-3", "threatened to wait outside").await;
    resolve(&app, &held, "referred").await;
    let on_hold = supervisor(&app, SUP)
        .set_legal_hold(hold(&held, true, "police request 17/2026"))
        .await
        .unwrap()
        .into_inner();
    assert!(on_hold.legal_hold);
    // Still under review, however old.
    let open = file(&app, CALLER, "op-4", "breathing, then silence").await;
    let calls: Vec<String> = [&resolved, &dismissed, &held]
        .iter()
        .map(|id| async { incident(&get(&app, id).await).call_id.clone() })
        .collect::<futures::future::JoinAll<_>>()
        .await;

    // Nothing is due yet.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_whole(&get(&app, &resolved).await, NOTE);

    app.clock.advance(chrono::Duration::days(31));
    eventually("the closed incidents are redacted", || async {
        incident(&get(&app, &resolved).await).redacted_at.is_some()
            && incident(&get(&app, &dismissed).await).redacted_at.is_some()
    })
    .await;
    assert_redacted(&get(&app, &resolved).await, &[NOTE, statement, resolution]);
    assert_redacted(
        &get(&app, &dismissed).await,
        &["asked for my real name", "the same call as another report"],
    );
    assert_whole(&get(&app, &held).await, "threatened to wait outside");
    assert!(incident(&get(&app, &held).await).legal_hold);
    assert_whole(&get(&app, &open).await, "breathing, then silence");
    // The call history behind the redacted incidents loses the caller; the held one keeps it.
    assert_eq!(caller_of_call(&app, &calls[0]).await, None);
    assert_eq!(caller_of_call(&app, &calls[1]).await, None);
    assert_eq!(
        caller_of_call(&app, &calls[2]).await.as_deref(),
        Some(CALLER)
    );
    // Every chain in the database verifies, the redacted ones included.
    let report = callwarden_storage::incidents::verify(&app.pg)
        .await
        .unwrap()
        .expect("every chain verifies");
    assert_eq!(report.incidents, 4);

    // A redacted incident cannot come back to the queue.
    let refused = app
        .review
        .clone()
        .reopen_incident(ReopenIncidentRequest {
            incident_id: resolved.clone(),
            supervisor_id: SUP.into(),
            reason: "new evidence".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // Nor take new content that would outlive the retention period.
    let refused = app
        .review
        .clone()
        .add_statement(AddStatementRequest {
            incident_id: resolved.clone(),
            author: SUP.into(),
            role: StatementRole::Supervisor.into(),
            text: "he called again from 601 234 567".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("redacted"), "{refused:?}");

    // Only an admin releases a hold; then retention takes the incident too.
    let refused = supervisor(&app, SUP)
        .set_legal_hold(hold(&held, false, "case closed"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let released = app
        .review
        .clone()
        .set_legal_hold(hold(&held, false, "case closed"))
        .await
        .unwrap()
        .into_inner();
    assert!(!released.legal_hold);
    eventually("the released incident is redacted", || async {
        incident(&get(&app, &held).await).redacted_at.is_some()
    })
    .await;
    let detail = get(&app, &held).await;
    assert_redacted(&detail, &["threatened to wait outside"]);
    let kinds: Vec<&str> = detail.events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"legal_hold_placed") && kinds.contains(&"legal_hold_released"));
    assert_eq!(caller_of_call(&app, &calls[2]).await, None);
    assert_whole(&get(&app, &open).await, "breathing, then silence");
}

#[tokio::test]
async fn a_redacted_chain_still_catches_tampering() {
    let app = spawn_app_with(retention_config()).await;
    let id = file(&app, CALLER, "op-1", NOTE).await;
    resolve(&app, &id, "warned").await;
    app.clock.advance(chrono::Duration::days(31));
    eventually("the incident is redacted", || async {
        incident(&get(&app, &id).await).redacted_at.is_some()
    })
    .await;
    let id: Uuid = id.parse().unwrap();

    // Outside retention the log refuses any change; retention itself may not touch the links.
    let refused = sqlx::query("UPDATE incident_events SET actor = 'x' WHERE incident_id = $1")
        .bind(id)
        .execute(&app.pg)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    let mut tx = app.pg.begin().await.unwrap();
    sqlx::query("SELECT set_config('callwarden.redacting', 'on', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let refused = sqlx::query("UPDATE incident_events SET hash = prev_hash WHERE incident_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("append-only"), "{refused}");
    drop(tx);

    // A forged digest in place of the removed note is found at its event.
    let mut tx = app.pg.begin().await.unwrap();
    sqlx::query("SELECT set_config('callwarden.redacting', 'on', true)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let forged = serde_json::json!({ "redacted_sha256": "00".repeat(32) });
    sqlx::query(
        "UPDATE incident_events SET details = jsonb_set(details, '{note}', $2) \
         WHERE incident_id = $1 AND kind = 'reported'",
    )
    .bind(id)
    .bind(forged)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let broken = callwarden_storage::incidents::verify(&app.pg)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((broken.incident_id, broken.seq), (id, 1), "{broken:?}");
    assert!(!get(&app, &id.to_string()).await.chain_verified);
}

async fn reads(app: &TestApp, request: ListIncidentReadsRequest) -> Vec<IncidentRead> {
    let mut all = Vec::new();
    let mut request = request;
    loop {
        let page = app
            .review
            .clone()
            .list_incident_reads(request.clone())
            .await
            .unwrap()
            .into_inner();
        all.extend(page.reads);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

fn of_incident(id: &str) -> ListIncidentReadsRequest {
    ListIncidentReadsRequest {
        incident_id: id.into(),
        page_size: 2,
        ..Default::default()
    }
}

fn rpcs(reads: &[IncidentRead]) -> Vec<(&str, &str, &str)> {
    let mut v: Vec<_> = reads
        .iter()
        .map(|r| (r.reader.as_str(), r.reader_role.as_str(), r.rpc.as_str()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_read_of_an_incident_is_in_the_audit_log() {
    let app = spawn_app().await;
    let first = file(&app, CALLER, "op-1", NOTE).await;
    let second = file(&app, CALLER, "op-2", "called back to laugh").await;
    let other_caller = file(&app, "+48601999888", "op-3", "spam").await;
    let reader = "sup-reader";
    let mut sup = supervisor(&app, reader);
    let mut watch = sup
        .watch_incidents(WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Nothing was read yet.
    assert!(reads(&app, of_incident(&first)).await.is_empty());

    // GetIncident shows the incident and, as the caller's history, the other one.
    sup.get_incident(GetIncidentRequest {
        incident_id: first.clone(),
    })
    .await
    .unwrap();
    sup.export_incident(ExportIncidentRequest {
        incident_id: first.clone(),
        format: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let listed = sup
        .list_incidents(ListIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.incidents.len(), 3);
    // A change the watch delivers is a read too.
    let watched = file(&app, "+48601555444", "op-4", "insults").await;
    let change = tokio::time::timeout(std::time::Duration::from_secs(10), watch.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(change.incident.unwrap().id, watched);
    eventually("the watched read is logged", || async {
        !reads(&app, of_incident(&watched)).await.is_empty()
    })
    .await;

    let sup_role = "supervisor";
    assert_eq!(
        rpcs(&reads(&app, of_incident(&first)).await),
        vec![
            (reader, sup_role, "ExportIncident"),
            (reader, sup_role, "GetIncident"),
            (reader, sup_role, "ListIncidents"),
        ]
    );
    assert_eq!(
        rpcs(&reads(&app, of_incident(&second)).await),
        vec![
            (reader, sup_role, "GetIncident"),
            (reader, sup_role, "ListIncidents")
        ]
    );
    assert_eq!(
        rpcs(&reads(&app, of_incident(&other_caller)).await),
        vec![(reader, sup_role, "ListIncidents")]
    );
    assert_eq!(
        rpcs(&reads(&app, of_incident(&watched)).await),
        vec![(reader, sup_role, "WatchIncidents")]
    );
    // By reader, newest first, paged.
    let by_reader = reads(
        &app,
        ListIncidentReadsRequest {
            reader: reader.into(),
            page_size: 3,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_reader.len(), 3 + 2 + 1 + 1);
    let at = |r: &IncidentRead| r.at.as_ref().map(|t| (t.seconds, t.nanos));
    assert!(by_reader.windows(2).all(|w| at(&w[0]) >= at(&w[1])));
    assert_eq!(by_reader.last().unwrap().rpc, "GetIncident");
    // The admin's reads (the GetIncident calls of this test's helpers) are logged as theirs.
    get(&app, &first).await;
    let admin_reads = reads(
        &app,
        ListIncidentReadsRequest {
            reader: TEST_ADMIN.into(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        admin_reads
            .iter()
            .any(|r| r.incident_id == first && r.reader_role == "admin")
    );

    // Only admins read the log; nobody rewrites it.
    let refused = sup
        .list_incident_reads(ListIncidentReadsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    for sql in [
        "DELETE FROM incident_reads",
        "UPDATE incident_reads SET reader = 'x'",
    ] {
        let err = sqlx::query(sql).execute(&app.pg).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let bad = app
        .review
        .clone()
        .list_incident_reads(ListIncidentReadsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&bad, "page_token", "not-a-token");
}

#[tokio::test]
async fn the_audit_log_keeps_reads_for_its_period_but_those_of_held_incidents() {
    let mut config = retention_config();
    config.retention.audit_log_days = 60;
    let app = spawn_app_with(config).await;
    let held = file(&app, CALLER, "op-1", NOTE).await;
    let other = file(&app, "+48601999888", "op-2", "spam").await;
    let mut sup = supervisor(&app, "sup-reader");
    for id in [&held, &other] {
        sup.get_incident(GetIncidentRequest {
            incident_id: id.to_string(),
        })
        .await
        .unwrap();
    }
    sup.set_legal_hold(hold(&held, true, "court order 4/2026"))
        .await
        .unwrap();
    assert_eq!(reads(&app, of_incident(&other)).await.len(), 1);

    // Past the incidents' period nothing changes for reads; past the log's own, they go.
    app.clock.advance(chrono::Duration::days(61));
    eventually("reads older than the log's period are removed", || async {
        reads(&app, of_incident(&other)).await.is_empty()
    })
    .await;
    let kept = reads(&app, of_incident(&held)).await;
    assert_eq!(
        rpcs(&kept),
        vec![("sup-reader", "supervisor", "GetIncident")]
    );
    // Removal is retention's alone: outside it the log still refuses deletes.
    let err = sqlx::query("DELETE FROM incident_reads")
        .execute(&app.pg)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}
