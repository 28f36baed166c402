//! Access control end to end: each role against each service, bad and missing credentials, and
//! callers who name someone other than themselves.

use callwarden_proto::v1::{
    AcknowledgeIncidentRequest, BlockChoice, CallEventKind, Category, CheckActiveCallRequest,
    CheckCallRequest, EndAndFlagRequest, GetOperatorStatusRequest, ListIncidentsRequest,
    ListRulesRequest, ReportCallEventRequest, Severity, UnsealReporterRequest,
    WatchCommandsRequest, block_list_client::BlockListClient, console_client::ConsoleClient,
    review_client::ReviewClient, screening_client::ScreeningClient,
};
use callwarden_server::auth::Role;
use callwarden_tests::*;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Who calls, as a connection presenting their credentials.
fn as_role(app: &TestApp, role: Option<Role>, subject: &str) -> Conn {
    match role {
        Some(Role::Switch) => credentials(&app.raw_channel, "x-api-key", Some(TEST_SWITCH_KEY)),
        Some(role) => with_token(&app.raw_channel, &token(role, subject)),
        None => credentials(&app.raw_channel, "authorization", None),
    }
}

/// One call to each service; the code it ended with (Ok as `Code::Ok`).
async fn codes(conn: &Conn) -> [(&'static str, Code); 6] {
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |()| Code::Ok);
    let screening = ScreeningClient::new(conn.clone())
        .check_call(CheckCallRequest {
            call_id: "acl-call".into(),
            caller: "+48601234567".into(),
            line: PL_LINE.into(),
            switch_id: String::new(),
            operator_id: String::new(),
        })
        .await
        .map(drop);
    let console = ConsoleClient::new(conn.clone())
        .get_operator_status(GetOperatorStatusRequest {
            operator_id: String::new(),
        })
        .await
        .map(drop);
    let review = ReviewClient::new(conn.clone())
        .list_incidents(ListIncidentsRequest::default())
        .await
        .map(drop);
    let unseal = ReviewClient::new(conn.clone())
        .unseal_reporter(UnsealReporterRequest {
            incident_id: uuid::Uuid::new_v4().to_string(),
            supervisor_id: String::new(),
            reason: "court order".into(),
        })
        .await
        .map(drop);
    let blocklist = BlockListClient::new(conn.clone())
        .list_rules(ListRulesRequest::default())
        .await
        .map(drop);
    let health = HealthClient::new(conn.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(drop);
    [
        ("Screening", code(screening)),
        ("Console", code(console)),
        ("Review", code(review)),
        ("Review.UnsealReporter", code(unseal)),
        ("BlockList", code(blocklist)),
        ("Health", code(health)),
    ]
}

#[tokio::test]
async fn each_role_reaches_its_services_and_nothing_else() {
    let app = spawn_app().await;
    use Code::{InvalidArgument as Bad, NotFound, Ok as Yes, PermissionDenied as No};
    // An admin (or a switch) checking a call without naming a switch is bad input, not a
    // denial; an unsealing of an unknown incident is NOT_FOUND: both got past access control.
    let table: [(Option<Role>, &str, [Code; 6]); 5] = [
        (
            Some(Role::Switch),
            SWITCH_WITH_KEY,
            [Yes, No, No, No, No, Yes],
        ),
        (Some(Role::Operator), "op-acl", [No, Yes, No, No, No, Yes]),
        (
            Some(Role::Supervisor),
            "sup-acl",
            [No, No, Yes, No, Yes, Yes],
        ),
        (
            Some(Role::Admin),
            "admin-acl",
            [Bad, Bad, Yes, NotFound, Yes, Yes],
        ),
        (
            None,
            "",
            [
                Code::Unauthenticated,
                Code::Unauthenticated,
                Code::Unauthenticated,
                Code::Unauthenticated,
                Code::Unauthenticated,
                Yes,
            ],
        ),
    ];
    for (role, subject, want) in table {
        let got = codes(&as_role(&app, role, subject)).await;
        for ((service, got), want) in got.iter().zip(want) {
            assert_eq!(*got, want, "{role:?} calling {service}");
        }
    }
    let (_, metrics) = http_get(app.http_addr, "/metrics").await;
    assert!(
        metrics.contains(
            "callwarden_auth_denied_total{reason=\"role_not_allowed\",role=\"operator\"}"
        ),
        "denials are counted by reason and role"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_tokens_and_keys_are_refused() {
    let app = spawn_app().await;
    let list = |conn: Conn| async move {
        ReviewClient::new(conn)
            .list_incidents(ListIncidentsRequest::default())
            .await
            .map(drop)
    };
    let ch = &app.raw_channel;
    let valid = token(Role::Supervisor, "sup-1");
    let mut tampered = valid.clone();
    // Change one character of the claims: the signature no longer matches.
    let dot = tampered.find('.').unwrap() + 5;
    let c = if &tampered[dot..=dot] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(dot..=dot, c);
    let other_secret = callwarden_server::auth::mint(
        "another-secret-0123456789abcdef0123456789",
        Role::Supervisor,
        "sup-1",
        "callwarden",
        chrono::Utc::now().timestamp(),
        3600,
    );
    let refused = [
        (
            "expired an hour ago",
            token_with(Role::Supervisor, "sup-1", "callwarden", 7200, 3600),
        ),
        (
            "for another audience",
            token_with(Role::Supervisor, "sup-1", "billing", 0, 3600),
        ),
        ("tampered", tampered),
        ("signed with another secret", other_secret),
        ("not a JWT", "hello".into()),
    ];
    for (what, t) in refused {
        let status = list(with_token(ch, &t)).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "a token {what}: {status:?}"
        );
    }
    let missing = list(credentials(ch, "authorization", None))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    let not_bearer = list(credentials(ch, "authorization", Some("Basic c3VwOnB3"))).await;
    assert_eq!(not_bearer.unwrap_err().code(), Code::Unauthenticated);
    let bad_key = list(credentials(ch, "x-api-key", Some("guessed"))).await;
    assert_eq!(bad_key.unwrap_err().code(), Code::Unauthenticated);
    // Clock skew within the bound (30 s) is tolerated; the valid token works.
    list(with_token(
        ch,
        &token_with(Role::Supervisor, "sup-1", "callwarden", 3610, 3600),
    ))
    .await
    .expect("expired 10 s ago, within the allowed skew");
    list(with_token(ch, &valid)).await.expect("a valid token");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_operator_acts_only_on_their_own_calls_and_as_themselves() {
    let app = spawn_app().await;
    let call = app.answered_call("+48601234567", "sw-acl", "op-b").await;
    let mut anna = ConsoleClient::new(with_token(&app.raw_channel, &token(Role::Operator, "op-a")));
    let report = |operator: &str, request_id: &str| EndAndFlagRequest {
        call_id: call.clone(),
        operator_id: operator.into(),
        category: Category::AbusiveLanguage.into(),
        severity: Severity::High.into(),
        note: "insults".into(),
        block: BlockChoice::None.into(),
        anonymous: false,
        request_id: request_id.into(),
        debrief: false,
    };
    // Naming another operator is refused outright.
    let denied = anna.end_and_flag(report("op-b", "r1")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("op-b"), "{denied:?}");
    // As herself, on a call someone else answered: not her call.
    let refused = anna.end_and_flag(report("", "r2")).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // Nothing was sent to the switch.
    assert_eq!(
        app.call_action(&call, "sw-acl").await.action(),
        callwarden_proto::v1::CallAction::Continue
    );
    // The operator who answered it ends it, without naming herself: the token does.
    let mut bea = ConsoleClient::new(with_token(&app.raw_channel, &token(Role::Operator, "op-b")));
    let done = bea
        .end_and_flag(report("", "r3"))
        .await
        .unwrap()
        .into_inner();
    assert!(done.terminate_sent);
    let reporter: String = sqlx::query_scalar("SELECT reporter FROM incidents WHERE id = $1::uuid")
        .bind(&done.incident_id)
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(reporter, "op-b");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_switch_acts_only_as_itself() {
    let app = spawn_app().await;
    let keyed = credentials(&app.raw_channel, "x-api-key", Some(TEST_SWITCH_KEY));
    let mut switch = ScreeningClient::new(keyed.clone());
    let check = |switch_id: &str, call_id: &str| CheckCallRequest {
        call_id: call_id.into(),
        caller: "+48601234567".into(),
        line: PL_LINE.into(),
        switch_id: switch_id.into(),
        operator_id: String::new(),
    };
    let denied = switch
        .check_call(check("sw-other", "c1"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    switch
        .check_call(check("", "c2"))
        .await
        .expect("its own calls");
    // The call is registered under the key's switch.
    let active = switch
        .check_active_call(CheckActiveCallRequest {
            call_id: "c2".into(),
            switch_id: SWITCH_WITH_KEY.into(),
        })
        .await;
    assert!(active.is_ok(), "{active:?}");
    let watch = switch
        .watch_commands(WatchCommandsRequest {
            switch_id: "sw-other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(watch.code(), Code::PermissionDenied);
    // Another switch's call cannot be reported by this one.
    app.screening
        .clone()
        .check_call(check("sw-other", "c3"))
        .await
        .unwrap();
    let report = switch
        .report_call_event(ReportCallEventRequest {
            call_id: "c3".into(),
            kind: CallEventKind::Answered.into(),
            operator_id: "op-x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(report.code(), Code::PermissionDenied);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn supervisors_act_as_themselves_and_only_admins_unseal() {
    let app = spawn_app().await;
    let call = app.answered_call("+48601234567", "sw-acl", "op-anon").await;
    let id = app
        .console
        .clone()
        .end_and_flag(EndAndFlagRequest {
            call_id: call,
            operator_id: "op-anon".into(),
            category: Category::ThreatOrViolence.into(),
            severity: Severity::Critical.into(),
            note: "threats".into(),
            block: BlockChoice::None.into(),
            anonymous: true,
            request_id: "acl-anon".into(),
            debrief: false,
        })
        .await
        .unwrap()
        .into_inner()
        .incident_id;
    let mut sup = ReviewClient::new(with_token(
        &app.raw_channel,
        &token(Role::Supervisor, "sup-1"),
    ));
    let ack = |supervisor: &str| AcknowledgeIncidentRequest {
        incident_id: id.clone(),
        supervisor_id: supervisor.into(),
    };
    let denied = sup.acknowledge_incident(ack("sup-2")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let taken = sup
        .acknowledge_incident(ack(""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(taken.acknowledged_by, "sup-1");
    let unseal = |client: &mut ReviewClient<Conn>| {
        let request = UnsealReporterRequest {
            incident_id: id.clone(),
            supervisor_id: String::new(),
            reason: "police request".into(),
        };
        let mut client = client.clone();
        async move { client.unseal_reporter(request).await }
    };
    let refused = unseal(&mut sup).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut admin = ReviewClient::new(with_token(&app.raw_channel, &token(Role::Admin, "adm-1")));
    let unsealed = unseal(&mut admin).await.unwrap().into_inner();
    assert_eq!(unsealed.reporter, "op-anon");
    let by: String = sqlx::query_scalar(
        "SELECT actor FROM incident_events WHERE incident_id = $1::uuid AND kind = 'reporter_unsealed'",
    )
    .bind(&id)
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(by, "adm-1");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_requests_are_refused_before_they_are_read() {
    let app = spawn_app().await;
    let call = app.answered_call("+48601234567", "sw-acl", "op-big").await;
    let report = |note: String| EndAndFlagRequest {
        call_id: call.clone(),
        operator_id: "op-big".into(),
        category: Category::Other.into(),
        severity: Severity::Low.into(),
        note,
        block: BlockChoice::None.into(),
        anonymous: false,
        request_id: "big".into(),
        debrief: false,
    };
    // Over the note's bound but within the message bound: the field is named.
    let long = app
        .console
        .clone()
        .end_and_flag(report("x".repeat(5000)))
        .await
        .unwrap_err();
    assert_invalid(&long, "note", "longer than 4000");
    // Over the message bound (64 KiB by default): refused by the transport.
    let huge = app
        .console
        .clone()
        .end_and_flag(report("x".repeat(100 * 1024)))
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
    // Neither ended the call.
    assert_eq!(
        app.call_action(&call, "sw-acl").await.action(),
        callwarden_proto::v1::CallAction::Continue
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_import_stream_is_bounded_and_a_longer_one_writes_nothing() {
    let mut config = test_config(&redis_default());
    config.max_import_rules = 3;
    let app = spawn_app_with(config).await;
    let rules = |n: u64| {
        (0..n)
            .map(|i| rule(&format!("+4860100000{i}")))
            .collect::<Vec<_>>()
    };
    let too_long = app
        .blocklist
        .clone()
        .import_rules(tokio_stream::iter(rules(4)))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::OutOfRange, "{too_long:?}");
    assert!(too_long.message().contains("message #4"), "{too_long:?}");
    let listed = app
        .blocklist
        .clone()
        .list_rules(ListRulesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.rules.is_empty(), "{listed:?}");
    let imported = app
        .blocklist
        .clone()
        .import_rules(tokio_stream::iter(rules(3)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.imported, 3);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_flooding_operator_is_limited_and_nobody_else_is() {
    let mut config = test_config(&redis_default());
    config.auth.operator_requests_per_second = 2;
    let app = spawn_app_with(config).await;
    let status = |who: &str| {
        let mut client =
            ConsoleClient::new(with_token(&app.raw_channel, &token(Role::Operator, who)));
        async move {
            client
                .get_operator_status(GetOperatorStatusRequest {
                    operator_id: String::new(),
                })
                .await
        }
    };
    let mut limited = 0;
    for _ in 0..20 {
        match status("op-flood").await {
            Ok(_) => {}
            Err(s) if s.code() == Code::ResourceExhausted => limited += 1,
            Err(s) => panic!("unexpected {s:?}"),
        }
    }
    // A burst of 4, refilled at 2 per second: most of 20 quick requests are refused.
    assert!(limited >= 10, "only {limited} of 20 limited");
    for _ in 0..3 {
        status("op-calm")
            .await
            .expect("another operator has a budget of their own");
    }
    app.review
        .clone()
        .list_incidents(ListIncidentsRequest::default())
        .await
        .expect("other roles are unaffected");
    let (_, metrics) = http_get(app.http_addr, "/metrics").await;
    assert!(metrics.contains("callwarden_rate_limited_total{role=\"operator\"}"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn one_caller_holds_a_bounded_number_of_streams() {
    let mut config = test_config(&redis_default());
    config.auth.max_streams_per_principal = 2;
    let app = spawn_app_with(config).await;
    let sup = ReviewClient::new(with_token(
        &app.raw_channel,
        &token(Role::Supervisor, "sup-s"),
    ));
    let watch = || {
        let mut client = sup.clone();
        async move {
            client
                .watch_incidents(callwarden_proto::v1::WatchIncidentsRequest::default())
                .await
        }
    };
    let first = watch().await.expect("first stream");
    let _second = watch().await.expect("second stream");
    let third = watch().await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted, "{third:?}");
    // Another supervisor is not affected.
    let mut other = ReviewClient::new(with_token(
        &app.raw_channel,
        &token(Role::Supervisor, "sup-t"),
    ));
    other
        .watch_incidents(callwarden_proto::v1::WatchIncidentsRequest::default())
        .await
        .expect("another caller's own budget");
    // Closing a stream frees its slot.
    drop(first);
    eventually("a closed stream frees its slot", || {
        let attempt = watch();
        async move { attempt.await.is_ok() }
    })
    .await;
    app.stop().await.unwrap();
}
