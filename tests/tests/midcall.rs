//! Mid-call: the operator's buttons, commands to switches over real gRPC streams, incidents and
//! their hash-chained events in Postgres, and the report policy.

use callwarden_proto::v1::{
    AckCommandRequest, BlockChoice, CallAction, CallEventKind, Category, CheckCallRequest,
    CommandKind, Decision, EndAndFlagRequest, FlagCallRequest, GetOperatorStatusRequest,
    ReportPastCallRequest, Severity, WarnCallerRequest,
};
use callwarden_tests::*;
use chrono::Duration;
use std::time::Duration as StdDuration;
use tokio_stream::StreamExt;
use tonic::Code;
use uuid::Uuid;

const CALLER: &str = "+48601234567";

async fn next_command(
    stream: &mut tonic::Streaming<callwarden_proto::v1::CallCommand>,
) -> callwarden_proto::v1::CallCommand {
    tokio::time::timeout(StdDuration::from_secs(10), stream.next())
        .await
        .expect("a command within 10 s")
        .expect("the stream is open")
        .expect("a command, not an error")
}

/// WarnCaller on `call` as `operator`, with the default announcement unless one is given.
async fn warn(
    app: &TestApp,
    call: &str,
    operator: &str,
    announcement: &str,
) -> Result<String, tonic::Status> {
    app.console
        .clone()
        .warn_caller(WarnCallerRequest {
            call_id: call.into(),
            operator_id: operator.into(),
            announcement: announcement.into(),
        })
        .await
        .map(|r| r.into_inner().command_id)
}

async fn incident_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM incidents")
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

async fn event_kinds(app: &TestApp, incident_id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM incident_events WHERE incident_id = $1::uuid ORDER BY seq")
        .bind(incident_id)
        .fetch_all(&app.pg)
        .await
        .unwrap()
}

async fn check_as(
    app: &TestApp,
    caller: &str,
    operator: &str,
) -> callwarden_proto::v1::CheckCallResponse {
    app.screening
        .clone()
        .check_call(CheckCallRequest {
            call_id: Uuid::new_v4().to_string(),
            caller: caller.into(),
            line: PL_LINE.into(),
            switch_id: "sw-1".into(),
            operator_id: operator.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn end_and_flag_terminates_on_the_switch_stream_and_records_the_incident() {
    let app = spawn_app().await;
    let mut stream = app.watch("sw-1").await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;

    let reply = app
        .end_and_flag(end_and_flag_request(&call, "op-1"))
        .await
        .unwrap();
    assert!(reply.terminate_sent);
    assert!(reply.cooldown_until.is_some());
    let command = next_command(&mut stream).await;
    assert_eq!(
        (command.call_id.as_str(), command.kind()),
        (call.as_str(), CommandKind::Terminate)
    );
    assert_eq!(
        (command.announcement.as_str(), command.redelivery),
        ("conduct-terminated", 0)
    );

    let (category, severity, caller, reporter): (String, String, Option<String>, String) =
        sqlx::query_as(
            "SELECT category, severity, caller_e164, reporter FROM incidents WHERE id = $1::uuid",
        )
        .bind(&reply.incident_id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(
        (category.as_str(), severity.as_str()),
        ("abusive_language", "medium")
    );
    assert_eq!(
        (caller.as_deref(), reporter.as_str()),
        (Some(CALLER), "op-1")
    );
    assert_eq!(
        event_kinds(&app, &reply.incident_id).await,
        ["reported", "terminate_sent", "operator_cooldown"]
    );

    // Switches that poll see the same.
    let active = app.call_action(&call, "sw-1").await;
    assert_eq!(
        (active.action(), active.announcement.as_str()),
        (CallAction::Terminate, "conduct-terminated")
    );

    // The switch acknowledges; the incident records it; a second ack finds nothing pending.
    let ack = AckCommandRequest {
        switch_id: "sw-1".into(),
        command_id: command.command_id.clone(),
    };
    app.screening
        .clone()
        .ack_command(ack.clone())
        .await
        .unwrap();
    assert_eq!(
        event_kinds(&app, &reply.incident_id).await,
        [
            "reported",
            "terminate_sent",
            "operator_cooldown",
            "terminate_acknowledged"
        ]
    );
    assert_eq!(
        app.screening
            .clone()
            .ack_command(ack)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn a_switch_may_report_the_end_before_it_acknowledges_the_terminate() {
    let app = spawn_app().await;
    let mut stream = app.watch("sw-1").await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    let reply = app
        .end_and_flag(end_and_flag_request(&call, "op-1"))
        .await
        .unwrap();
    let command = next_command(&mut stream).await;
    app.call_event(&call, CallEventKind::Ended, "")
        .await
        .unwrap();
    app.screening
        .clone()
        .ack_command(AckCommandRequest {
            switch_id: "sw-1".into(),
            command_id: command.command_id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        event_kinds(&app, &reply.incident_id).await.last().unwrap(),
        "terminate_acknowledged"
    );
    // The ended call's command is not sent again.
    drop(stream);
    let mut again = app.watch("sw-1").await;
    let other = app.answered_call("+48601234568", "sw-1", "op-2").await;
    let warning = warn(&app, &other, "op-2", "").await.unwrap();
    assert_eq!(next_command(&mut again).await.command_id, warning);
}

#[tokio::test]
async fn the_terminate_goes_out_before_the_incident_is_written() {
    let app = spawn_app().await;
    let mut stream = app.watch("sw-1").await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;

    // Hold the incidents table: writing the report has to wait.
    let mut blocker = app.pg.begin().await.unwrap();
    sqlx::query("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let pressed = tokio::spawn({
        let console = app.console.clone();
        let request = end_and_flag_request(&call, "op-1");
        async move { console.clone().end_and_flag(request).await }
    });
    let command = next_command(&mut stream).await;
    assert_eq!(
        (command.call_id.as_str(), command.kind()),
        (call.as_str(), CommandKind::Terminate)
    );
    assert!(
        !pressed.is_finished(),
        "the report was written before the call was ended"
    );
    blocker.rollback().await.unwrap();
    let reply = pressed.await.unwrap().unwrap().into_inner();
    assert_eq!(incident_count(&app).await, 1);
    assert!(!reply.incident_id.is_empty());
}

#[tokio::test]
async fn unacknowledged_commands_are_sent_again_after_a_reconnect() {
    let app = spawn_app().await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    let other = app.answered_call("+48601234568", "sw-1", "op-2").await;
    let mut first = app.watch("sw-1").await;
    app.end_and_flag(end_and_flag_request(&call, "op-1"))
        .await
        .unwrap();
    let sent = next_command(&mut first).await;
    drop(first);

    let mut second = app.watch("sw-1").await;
    let again = next_command(&mut second).await;
    assert_eq!(
        (again.command_id.as_str(), again.redelivery),
        (sent.command_id.as_str(), 1)
    );
    app.screening
        .clone()
        .ack_command(AckCommandRequest {
            switch_id: "sw-1".into(),
            command_id: again.command_id.clone(),
        })
        .await
        .unwrap();
    drop(second);

    // Acknowledged: a new stream gets only what is new.
    let mut third = app.watch("sw-1").await;
    let warning = warn(&app, &other, "op-2", "").await.unwrap();
    let next = next_command(&mut third).await;
    assert_eq!(
        (next.command_id.as_str(), next.kind()),
        (warning.as_str(), CommandKind::PlayWarning)
    );
    assert_eq!(next.announcement, "conduct-warning");
    // A warning does not end the call.
    let active = app.call_action(&other, "sw-1").await;
    assert_eq!(active.action(), CallAction::Continue);
}

#[tokio::test]
async fn a_command_sent_through_one_replica_reaches_a_stream_held_by_another() {
    let app = spawn_app().await;
    let replica = app.replica().await;
    let mut stream = replica.watch("sw-9").await;
    let call = app.answered_call(CALLER, "sw-9", "op-1").await;
    app.end_and_flag(end_and_flag_request(&call, "op-1"))
        .await
        .unwrap();
    let command = next_command(&mut stream).await;
    assert_eq!(
        (command.call_id.as_str(), command.kind()),
        (call.as_str(), CommandKind::Terminate)
    );
    // And the other way round, for a warning.
    let mut here = app.watch("sw-8").await;
    let call = replica.answered_call(CALLER, "sw-8", "op-2").await;
    warn(&replica, &call, "op-2", "custom").await.unwrap();
    let command = next_command(&mut here).await;
    assert_eq!(
        (command.call_id.as_str(), command.announcement.as_str()),
        (call.as_str(), "custom")
    );
}

#[tokio::test]
async fn a_double_click_makes_one_incident_and_one_terminate() {
    let app = spawn_app().await;
    let mut stream = app.watch("sw-1").await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    let request = end_and_flag_request(&call, "op-1");
    let (a, b) = tokio::join!(
        app.end_and_flag(request.clone()),
        app.end_and_flag(request.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.incident_id, b.incident_id);
    assert_eq!(incident_count(&app).await, 1);
    let first = next_command(&mut stream).await;

    // A retry after the switch already ended the call still answers with the same incident.
    app.call_event(&call, CallEventKind::Ended, "")
        .await
        .unwrap();
    let c = app.end_and_flag(request).await.unwrap();
    assert_eq!(c.incident_id, a.incident_id);
    assert_eq!(incident_count(&app).await, 1);
    // Only one TERMINATE was ever queued: a new stream finds nothing for this ended call.
    let mut again = app.watch("sw-1").await;
    let other = app.answered_call("+48601234568", "sw-1", "op-2").await;
    let warning = warn(&app, &other, "op-2", "").await.unwrap();
    assert_eq!(next_command(&mut again).await.command_id, warning);
    assert_ne!(first.command_id, warning);
}

#[tokio::test]
async fn an_operator_can_act_only_on_calls_they_answered() {
    let app = spawn_app().await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    let err = app
        .end_and_flag(end_and_flag_request(&call, "op-2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("another operator"),
        "{}",
        err.message()
    );
    let err = app
        .end_and_flag(end_and_flag_request("no-such-call", "op-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = warn(&app, &call, "op-2", "").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Checked but not answered yet.
    let unanswered = Uuid::new_v4().to_string();
    app.screening
        .clone()
        .check_call(CheckCallRequest {
            call_id: unanswered.clone(),
            caller: CALLER.into(),
            line: PL_LINE.into(),
            switch_id: "sw-1".into(),
            operator_id: String::new(),
        })
        .await
        .unwrap();
    let err = app
        .end_and_flag(end_and_flag_request(&unanswered, "op-1"))
        .await
        .unwrap_err();
    assert!(
        err.code() == Code::FailedPrecondition && err.message().contains("not been answered"),
        "{err:?}"
    );

    // Nothing was written, nothing was sent.
    assert_eq!(incident_count(&app).await, 0);
    let pending: Option<String> = redis::cmd("GET")
        .arg(format!("{}:cmds-pending", app.config.redis_key_prefix))
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    assert!(pending.as_deref().is_none_or(|n| n == "0"), "{pending:?}");
}

#[tokio::test]
async fn bad_reports_name_the_field() {
    let app = spawn_app().await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    let cases: Vec<(EndAndFlagRequest, &str)> = vec![
        (
            EndAndFlagRequest {
                category: 0,
                ..end_and_flag_request(&call, "op-1")
            },
            "category: must be set",
        ),
        (
            EndAndFlagRequest {
                category: 99,
                ..end_and_flag_request(&call, "op-1")
            },
            "category: 99 is not a Category",
        ),
        (
            EndAndFlagRequest {
                severity: 0,
                ..end_and_flag_request(&call, "op-1")
            },
            "severity: must be set",
        ),
        (
            EndAndFlagRequest {
                block: 7,
                ..end_and_flag_request(&call, "op-1")
            },
            "block: 7",
        ),
        (
            EndAndFlagRequest {
                request_id: String::new(),
                ..end_and_flag_request(&call, "op-1")
            },
            "request_id: must not be empty",
        ),
        (
            EndAndFlagRequest {
                operator_id: "Jane Doe".into(),
                ..end_and_flag_request(&call, "op-1")
            },
            "operator_id: \"Jane Doe\"",
        ),
        (
            EndAndFlagRequest {
                note: "x".repeat(4001),
                ..end_and_flag_request(&call, "op-1")
            },
            "note: is longer than 4000",
        ),
        (
            EndAndFlagRequest {
                call_id: String::new(),
                ..end_and_flag_request(&call, "op-1")
            },
            "call_id: must not be empty",
        ),
    ];
    for (request, message) in cases {
        let err = app.end_and_flag(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().starts_with(message),
            "{message}: {}",
            err.message()
        );
    }
    assert_eq!(incident_count(&app).await, 0);
    let err = app
        .screening
        .clone()
        .report_call_event(callwarden_proto::v1::ReportCallEventRequest {
            call_id: call.clone(),
            kind: 0,
            operator_id: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        err.code() == Code::InvalidArgument && err.message().starts_with("kind"),
        "{err:?}"
    );
    let err = app
        .call_event("never-checked", CallEventKind::Answered, "op-1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn block_from_me_keeps_the_caller_from_that_operator_only() {
    let app = spawn_app().await;
    let call = app.answered_call("601 234 567", "sw-1", "op-1").await;
    let reply = app
        .end_and_flag(EndAndFlagRequest {
            block: BlockChoice::FromMe.into(),
            ..end_and_flag_request(&call, "op-1")
        })
        .await
        .unwrap();
    assert_eq!(reply.actions, ["operator_block"]);
    let r = check_as(&app, CALLER, "op-1").await;
    assert_eq!(
        (r.decision(), r.reason.as_str()),
        (Decision::Reject, "blocked")
    );
    let r = check_as(&app, CALLER, "op-2").await;
    assert_eq!(
        r.decision(),
        Decision::AllowWithNotice,
        "another operator is warned, not spared the call"
    );
    assert_eq!(
        event_kinds(&app, &reply.incident_id).await,
        [
            "reported",
            "terminate_sent",
            "operator_cooldown",
            "caller_blocked"
        ]
    );
}

#[tokio::test]
async fn global_blocks_come_from_a_request_a_high_severity_or_repeated_reports() {
    let app = spawn_app().await;
    let a = "+48601000001";
    let call = app.answered_call(a, "sw-1", "op-1").await;
    let reply = app
        .end_and_flag(EndAndFlagRequest {
            block: BlockChoice::GlobalRequest.into(),
            ..end_and_flag_request(&call, "op-1")
        })
        .await
        .unwrap();
    assert_eq!(reply.actions, ["global_block"]);
    let r = check_as(&app, a, "").await;
    assert_eq!(
        (r.decision(), r.reason.as_str()),
        (Decision::Reject, "blocked")
    );
    // Temporary: supervisors review it; the default lasts a week.
    app.clock.advance(Duration::days(8));
    assert_eq!(
        check_as(&app, a, "").await.decision(),
        Decision::AllowWithNotice
    );

    let b = "+48601000002";
    let call = app.answered_call(b, "sw-1", "op-1").await;
    let flag = FlagCallRequest {
        severity: Severity::High.into(),
        ..flag_request(&call, "op-1")
    };
    let reply = app
        .console
        .clone()
        .flag_call(flag)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.actions, ["global_block"]);
    assert_eq!(check_as(&app, b, "").await.decision(), Decision::Reject);

    // Three different operators within the window; two are not enough.
    let c = "+48601000003";
    for (i, operator) in ["op-1", "op-2", "op-1", "op-3"].into_iter().enumerate() {
        let call = app.answered_call(c, "sw-1", operator).await;
        let reply = app
            .end_and_flag(EndAndFlagRequest {
                severity: Severity::Low.into(),
                ..end_and_flag_request(&call, operator)
            })
            .await
            .unwrap();
        let blocked = i == 3;
        assert_eq!(
            reply.actions.contains(&"global_block".to_owned()),
            blocked,
            "report {i}: {:?}",
            reply.actions
        );
    }
    assert_eq!(check_as(&app, c, "").await.decision(), Decision::Reject);
}

#[tokio::test]
async fn grave_categories_escalate_and_self_harm_never_blocks() {
    let app = spawn_app().await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    let reply = app
        .end_and_flag(EndAndFlagRequest {
            category: Category::IdentityProbing.into(),
            ..end_and_flag_request(&call, "op-1")
        })
        .await
        .unwrap();
    assert_eq!(reply.actions, ["escalated"]);
    assert_eq!(
        event_kinds(&app, &reply.incident_id).await.last().unwrap(),
        "escalated"
    );
    let escalated: bool = sqlx::query_scalar("SELECT escalated FROM incidents WHERE id = $1::uuid")
        .bind(&reply.incident_id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert!(escalated);

    let caller = "+48601999000";
    let call = app.answered_call(caller, "sw-1", "op-2").await;
    let reply = app
        .end_and_flag(EndAndFlagRequest {
            category: Category::SelfHarmRisk.into(),
            severity: Severity::Critical.into(),
            block: BlockChoice::GlobalRequest.into(),
            debrief: true,
            ..end_and_flag_request(&call, "op-2")
        })
        .await
        .unwrap();
    assert_eq!(reply.actions, ["attention"]);
    let kinds = event_kinds(&app, &reply.incident_id).await;
    assert!(
        kinds.contains(&"attention_requested".to_owned())
            && kinds.contains(&"debrief_requested".to_owned()),
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"caller_blocked".to_owned()));
    assert_ne!(
        check_as(&app, caller, "op-2").await.decision(),
        Decision::Reject
    );
}

#[tokio::test]
async fn recent_incidents_warn_the_next_operator_and_fade() {
    let app = spawn_app().await;
    assert_eq!(check_as(&app, CALLER, "").await.recent_flags, 0);
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    app.end_and_flag(end_and_flag_request(&call, "op-1"))
        .await
        .unwrap();
    let r = check_as(&app, CALLER, "").await;
    assert_eq!(
        (r.recent_flags, r.decision(), r.reason.as_str()),
        (1, Decision::AllowWithNotice, "recent_incidents")
    );
    app.clock.advance(Duration::days(31));
    let r = check_as(&app, CALLER, "").await;
    assert_eq!((r.recent_flags, r.reason.as_str()), (0, "no_rule"));
}

#[tokio::test]
async fn the_operator_cools_down_after_ending_a_call() {
    let app = spawn_app().await;
    let status = |op: &str| {
        let mut console = app.console.clone();
        let op = op.to_owned();
        async move {
            console
                .get_operator_status(GetOperatorStatusRequest { operator_id: op })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert!(!status("op-1").await.cooling_down);
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    let reply = app
        .end_and_flag(end_and_flag_request(&call, "op-1"))
        .await
        .unwrap();
    let s = status("op-1").await;
    assert!(s.cooling_down);
    assert_eq!(s.cooldown_until, reply.cooldown_until);
    let until = reply.cooldown_until.unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        (until.seconds - now - 600).abs() <= 5,
        "a ten-minute break by default"
    );
    let r = check_as(&app, "+48700000001", "op-1").await;
    assert!(r.operator_cooling_down);
    assert_eq!(r.operator_cooldown_until, reply.cooldown_until);
    assert!(
        !check_as(&app, "+48700000001", "op-2")
            .await
            .operator_cooling_down
    );
    app.clock.advance(Duration::minutes(11));
    assert!(!status("op-1").await.cooling_down);
    assert!(
        !check_as(&app, "+48700000001", "op-1")
            .await
            .operator_cooling_down
    );
}

#[tokio::test]
async fn a_past_call_is_reported_from_the_operators_history_only() {
    let app = spawn_app().await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    app.call_event(&call, CallEventKind::Ended, "")
        .await
        .unwrap();
    let past = |operator: &str| ReportPastCallRequest {
        call_id: call.clone(),
        operator_id: operator.into(),
        category: Category::Oversharing.into(),
        severity: Severity::Low.into(),
        note: "told me where she lives".into(),
        block: BlockChoice::FromMe.into(),
        anonymous: true,
        request_id: Uuid::new_v4().to_string(),
        debrief: false,
    };
    let err = app
        .console
        .clone()
        .report_past_call(past("op-2"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Ending it again, or flagging it as if it were live, is refused.
    let flag = FlagCallRequest {
        category: Category::Other.into(),
        block: 0,
        ..flag_request(&call, "op-1")
    };
    let err = app.console.clone().flag_call(flag).await.unwrap_err();
    assert!(
        err.code() == Code::FailedPrecondition && err.message().contains("ReportPastCall"),
        "{err:?}"
    );

    let reply = app
        .console
        .clone()
        .report_past_call(past("op-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.actions, ["operator_block"]);
    let (source, anonymous): (String, bool) =
        sqlx::query_as("SELECT source, anonymous FROM incidents WHERE id = $1::uuid")
            .bind(&reply.incident_id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!((source.as_str(), anonymous), ("report_past_call", true));
    assert_eq!(
        check_as(&app, CALLER, "op-1").await.decision(),
        Decision::Reject
    );
}

#[tokio::test]
async fn the_event_log_is_append_only_and_its_chain_finds_a_changed_row() {
    let app = spawn_app().await;
    for op in ["op-1", "op-2"] {
        let call = app.answered_call(CALLER, "sw-1", op).await;
        app.end_and_flag(EndAndFlagRequest {
            block: BlockChoice::FromMe.into(),
            ..end_and_flag_request(&call, op)
        })
        .await
        .unwrap();
    }
    let report = callwarden_storage::incidents::verify(&app.pg)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.incidents, report.events), (2, 8));

    for statement in [
        "UPDATE incident_events SET details = '{}' WHERE seq = 1",
        "DELETE FROM incident_events WHERE seq = 4",
        "TRUNCATE incident_events CASCADE",
    ] {
        let err = sqlx::query(statement).execute(&app.pg).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }

    // Someone with the power to bypass triggers edits a note by hand: the chain says where.
    let (victim,): (Uuid,) =
        sqlx::query_as("SELECT incident_id FROM incident_events ORDER BY incident_id LIMIT 1")
            .fetch_one(&app.pg)
            .await
            .unwrap();
    let mut conn = app.pg.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("UPDATE incident_events SET details = jsonb_set(details, '{command_id}', '\"forged\"') WHERE incident_id = $1 AND seq = 2")
        .bind(victim)
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("SET session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let broken = callwarden_storage::incidents::verify(&app.pg)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((broken.incident_id, broken.seq), (victim, 2));
    assert!(
        broken
            .to_string()
            .contains(&format!("incident {victim}, event #2")),
        "{broken}"
    );
}

#[tokio::test]
async fn open_streams_do_not_hold_up_shutdown() {
    let app = spawn_app().await;
    let mut stream = app.watch("sw-1").await;
    let stopped = tokio::time::timeout(StdDuration::from_secs(5), app.stop()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
    let end = tokio::time::timeout(StdDuration::from_secs(5), stream.next())
        .await
        .unwrap();
    match end {
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable),
        None => {}
        Some(Ok(c)) => panic!("unexpected command {c:?}"),
    }
}

#[tokio::test]
async fn recent_incident_counts_come_back_after_redis_loses_them() {
    let app = spawn_app().await;
    let call = app.answered_call(CALLER, "sw-1", "op-1").await;
    app.end_and_flag(end_and_flag_request(&call, "op-1"))
        .await
        .unwrap();
    assert_eq!(check_as(&app, CALLER, "").await.recent_flags, 1);
    app.lose_redis_keys().await;
    eventually("recent_flags restored from Postgres", || async {
        check_as(&app, CALLER, "").await.recent_flags == 1
    })
    .await;
}
