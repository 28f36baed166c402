//! BlockList end to end: adding, importing, removing, reading and paging rules, and what bad
//! input gets back (a clear status, and nothing written).

use callwarden_proto::v1::{
    AddRuleRequest, Decision, Effect, ExplainNumberRequest, ExplainNumberResponse, GetRuleRequest,
    ListRulesRequest, RemoveRuleRequest, Scope, ScopeKind,
};
use callwarden_tests::*;
use tonic::Code;

async fn rule_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rules")
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_rule_is_recorded_with_who_why_and_when() {
    let app = spawn_app().await;
    let added = app
        .add(AddRuleRequest {
            reason: "threats".into(),
            created_by: "sup-1".into(),
            ..rule("0048 700 12*")
        })
        .await;
    assert_eq!(added.pattern, "+4870012*");
    assert_eq!(added.effect(), Effect::Block);
    assert_eq!(added.scope.as_ref().unwrap().kind(), ScopeKind::Global);
    assert_eq!(
        (added.reason.as_str(), added.created_by.as_str()),
        ("threats", "sup-1")
    );
    assert!(added.expires_at.is_none() && added.removed_at.is_none());

    assert_eq!(app.get_rule(&added.id).await, added);

    let removed = app.remove(&added.id, "sup-2").await.unwrap();
    assert_eq!(removed.removed_by, "sup-2");
    assert!(removed.removed_at.is_some());
    // Removed rules stay on record.
    assert_eq!(app.get_rule(&added.id).await, removed);
    let again = app.remove(&added.id, "sup-2").await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
}

#[tokio::test]
async fn bulk_import_is_visible_to_checks_at_once() {
    let app = spawn_app().await;
    let rules: Vec<AddRuleRequest> = (0..3000)
        .map(|i| rule(&format!("+48 601 {:06}", i)))
        .chain([allow("+48601000007"), on_line(rule("+4872*"), PL_LINE)])
        .collect();
    let imported = app
        .blocklist
        .clone()
        .import_rules(tokio_stream::iter(rules))
        .await
        .unwrap()
        .into_inner()
        .imported;
    assert_eq!(imported, 3002);
    assert_eq!(rule_count(&app).await, 3002);
    assert_eq!(app.check("601 000 000", PL_LINE).await.reason, "blocked");
    assert_eq!(app.check("+48601002999", PL_LINE).await.reason, "blocked");
    // The allow and the exact block of the same number: the allow wins.
    assert_eq!(
        app.check("+48601000007", PL_LINE).await.reason,
        "allowed_by_rule"
    );
    assert_eq!(app.check("+48601003000", PL_LINE).await.reason, "no_rule");
    assert_eq!(
        app.check("+48721234567", PL_LINE).await.reason,
        "prefix_blocked"
    );
    assert_eq!(
        app.check("+48721234567", OTHER_LINE).await.reason,
        "no_rule"
    );
}

#[tokio::test]
async fn an_import_with_one_bad_row_writes_nothing_and_names_the_row() {
    let app = spawn_app().await;
    let rules: Vec<AddRuleRequest> = (0..12_000)
        .map(|i| rule(&format!("+48601{:06}", i)))
        .enumerate()
        .map(|(i, r)| {
            if i == 11_000 {
                rule("+48 not a number")
            } else {
                r
            }
        })
        .collect();
    let err = app
        .blocklist
        .clone()
        .import_rules(tokio_stream::iter(rules))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("message #11001: pattern"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("+48 not a number"),
        "{}",
        err.message()
    );
    // Two full batches had reached Postgres inside the transaction; none of it stays.
    assert_eq!(rule_count(&app).await, 0);
    assert_eq!(
        app.check("+48601000000", PL_LINE).await.decision(),
        Decision::Allow
    );
}

#[tokio::test]
async fn listing_pages_through_every_rule_once_with_filters() {
    let app = spawn_app().await;
    for i in 0..25 {
        app.add(rule(&format!("+4860100{:04}", i))).await;
    }
    for i in 0..5 {
        app.add(on_line(allow(&format!("+4850100{:04}", i)), PL_LINE))
            .await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .blocklist
            .clone()
            .list_rules(ListRulesRequest {
                page_size: 7,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.rules.len() <= 7);
        seen.extend(page.rules.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 30);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 30);

    let list = |req: ListRulesRequest| {
        let mut client = app.blocklist.clone();
        async move { client.list_rules(req).await.unwrap().into_inner().rules }
    };
    let allows = list(ListRulesRequest {
        effect: Effect::Allow.into(),
        ..Default::default()
    })
    .await;
    assert_eq!(allows.len(), 5);
    let on_pl = list(ListRulesRequest {
        scope: Some(Scope {
            kind: ScopeKind::Line.into(),
            value: "22 100 20 30".into(),
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(on_pl.len(), 5);
    let prefixed = list(ListRulesRequest {
        pattern_prefix: "+4860100000".into(),
        ..Default::default()
    })
    .await;
    assert_eq!(prefixed.len(), 10);

    // Removed rules are hidden unless asked for.
    app.remove(&allows[0].id, "").await.unwrap();
    let active = list(ListRulesRequest {
        effect: Effect::Allow.into(),
        ..Default::default()
    })
    .await;
    assert_eq!(active.len(), 4);
    let all = list(ListRulesRequest {
        effect: Effect::Allow.into(),
        include_inactive: true,
        ..Default::default()
    })
    .await;
    assert_eq!(all.len(), 5);
}

/// Each bad request: the field the message must name, and the value it must quote.
#[tokio::test]
async fn bad_rule_requests_name_the_field_and_write_nothing() {
    let app = spawn_app().await;
    let scoped = |kind: ScopeKind, value: &str| {
        Some(Scope {
            kind: kind.into(),
            value: value.into(),
        })
    };
    let cases: Vec<(AddRuleRequest, &str, &str)> = vec![
        (rule(""), "pattern", "empty"),
        (rule("garbage"), "pattern", "garbage"),
        (rule("4870012*"), "pattern", "4870012*"),
        (rule("+48x*"), "pattern", "+48x*"),
        (rule("+48 123"), "pattern", "+48 123"),
        (
            AddRuleRequest {
                effect: 7,
                ..rule("+48601234567")
            },
            "effect",
            "7",
        ),
        (
            AddRuleRequest {
                scope: Some(Scope {
                    kind: 9,
                    value: String::new(),
                }),
                ..rule("+48601234567")
            },
            "scope.kind",
            "9",
        ),
        (
            AddRuleRequest {
                scope: scoped(ScopeKind::Global, "x"),
                ..rule("+48601234567")
            },
            "scope.value",
            "x",
        ),
        (
            AddRuleRequest {
                scope: scoped(ScopeKind::Line, ""),
                ..rule("+48601234567")
            },
            "scope.value",
            "empty",
        ),
        (
            AddRuleRequest {
                scope: scoped(ScopeKind::Line, "no such; line"),
                ..rule("+48601234567")
            },
            "scope.value",
            "no such; line",
        ),
        (
            AddRuleRequest {
                scope: scoped(ScopeKind::Operator, "Jane Doe"),
                ..rule("+48601234567")
            },
            "scope.value",
            "Jane Doe",
        ),
        (
            AddRuleRequest {
                ttl_seconds: u32::MAX,
                ..rule("+48601234567")
            },
            "ttl_seconds",
            "4294967295",
        ),
        (
            AddRuleRequest {
                reason: "x".repeat(1025),
                ..rule("+48601234567")
            },
            "reason",
            "1024",
        ),
        (
            AddRuleRequest {
                reason: "bell\u{7}".into(),
                ..rule("+48601234567")
            },
            "reason",
            "bell",
        ),
        (
            AddRuleRequest {
                created_by: "two words".into(),
                ..rule("+48601234567")
            },
            "created_by",
            "two words",
        ),
    ];
    for (request, field, value) in cases {
        let err = app
            .blocklist
            .clone()
            .add_rule(request.clone())
            .await
            .unwrap_err();
        assert_invalid(&err, field, value);
    }
    assert_eq!(rule_count(&app).await, 0);
}

#[tokio::test]
async fn bad_ids_tokens_and_unknown_rules() {
    let app = spawn_app().await;
    let mut client = app.blocklist.clone();
    let err = client
        .get_rule(GetRuleRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("id: \"nope\""), "{}", err.message());
    let unknown = uuid::Uuid::now_v7().to_string();
    let err = client
        .get_rule(GetRuleRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&unknown));
    let err = client
        .remove_rule(RemoveRuleRequest {
            id: unknown,
            removed_by: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .list_rules(ListRulesRequest {
            page_size: 1001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.code() == Code::InvalidArgument && err.message().starts_with("page_size"),
        "{err:?}"
    );
    let err = client
        .list_rules(ListRulesRequest {
            page_token: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.code() == Code::InvalidArgument && err.message().starts_with("page_token"),
        "{err:?}"
    );
    let err = client
        .list_rules(ListRulesRequest {
            pattern_prefix: "48%".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        err.code() == Code::InvalidArgument && err.message().starts_with("pattern_prefix: \"48%\""),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_check_requests_name_the_field_and_the_value() {
    let app = spawn_app().await;
    let ok = callwarden_proto::v1::CheckCallRequest {
        call_id: "c-1".into(),
        caller: "+48601234567".into(),
        line: PL_LINE.into(),
        switch_id: "sw-1".into(),
        operator_id: String::new(),
    };
    use callwarden_proto::v1::CheckCallRequest as R;
    let cases: Vec<(R, &str, &str)> = vec![
        (
            R {
                caller: "hello".into(),
                ..ok.clone()
            },
            "caller",
            "hello",
        ),
        (
            R {
                caller: "+48 601 234 567 ext. 12".into(),
                ..ok.clone()
            },
            "caller",
            "ext. 12",
        ),
        (
            R {
                caller: "12".into(),
                ..ok.clone()
            },
            "caller",
            "\"12\"",
        ),
        (
            R {
                caller: "9".repeat(300),
                ..ok.clone()
            },
            "caller",
            "longer than",
        ),
        (
            R {
                line: String::new(),
                ..ok.clone()
            },
            "line",
            "empty",
        ),
        (
            R {
                line: "line with spaces!".into(),
                ..ok.clone()
            },
            "line",
            "line with spaces!",
        ),
        (
            R {
                call_id: String::new(),
                ..ok.clone()
            },
            "call_id",
            "empty",
        ),
        (
            R {
                call_id: "a b".into(),
                ..ok.clone()
            },
            "call_id",
            "a b",
        ),
        (
            R {
                switch_id: String::new(),
                ..ok.clone()
            },
            "switch_id",
            "empty",
        ),
        (
            R {
                switch_id: "x".repeat(129),
                ..ok.clone()
            },
            "switch_id",
            "xxx",
        ),
    ];
    for (request, field, value) in cases {
        let err = app
            .screening
            .clone()
            .check_call(request.clone())
            .await
            .unwrap_err();
        assert_invalid(&err, field, value);
    }
    assert!(app.screening.clone().check_call(ok).await.is_ok());
}

#[tokio::test]
async fn reasons_keep_tabs_newlines_and_backslashes() {
    let app = spawn_app().await;
    let reason = "called 3 times\n\tthreatened C:\\Users\\op \\N \\\\";
    let added = app
        .add(AddRuleRequest {
            reason: reason.into(),
            ..rule("+48601234567")
        })
        .await;
    let got = app
        .blocklist
        .clone()
        .get_rule(GetRuleRequest { id: added.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.reason, reason);
}

async fn explain(
    app: &TestApp,
    number: &str,
    line: &str,
) -> Result<ExplainNumberResponse, tonic::Status> {
    app.blocklist
        .clone()
        .explain_number(ExplainNumberRequest {
            number: number.into(),
            line: line.into(),
            operator_id: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn explaining_a_number_names_the_rule_that_decides_as_checks_do() {
    let app = spawn_app().await;
    let range = app
        .add(AddRuleRequest {
            reason: "spam range".into(),
            ..rule("+4860123*")
        })
        .await;
    let partner = app
        .add(on_line(
            AddRuleRequest {
                reason: "partner".into(),
                ..allow("+48601234567")
            },
            PL_LINE,
        ))
        .await;
    // Another number on the range, and a rule that matches nothing here.
    app.add(rule("+48700999888")).await;

    // On the partner's line the exact allow outranks the range; elsewhere the range decides.
    for (line, decision, reason, deciding) in [
        (PL_LINE, Decision::Allow, "allowed_by_rule", &partner),
        (OTHER_LINE, Decision::Reject, "prefix_blocked", &range),
    ] {
        let answer = explain(&app, "0048 601 234 567", line).await.unwrap();
        assert_eq!(answer.caller_e164, "+48601234567");
        assert_eq!(answer.decision(), decision, "{line}");
        assert_eq!(answer.reason, reason, "{line}");
        assert_eq!(
            answer.deciding_rule.as_ref().map(|r| &r.id),
            Some(&deciding.id),
            "{line}"
        );
        // Both matching rules are shown, most specific first, with whether they take part.
        let shown: Vec<(&str, bool)> = answer
            .rules
            .iter()
            .map(|a| (a.rule.as_ref().unwrap().id.as_str(), a.in_scope))
            .collect();
        assert_eq!(
            shown,
            vec![
                (partner.id.as_str(), line == PL_LINE),
                (range.id.as_str(), true)
            ],
            "{line}"
        );
        // What CheckCall answers for the same call.
        let checked = app.check("0048 601 234 567", line).await;
        assert_eq!(
            (checked.decision(), checked.reason.as_str()),
            (decision, reason),
            "{line}"
        );
    }

    let clean = explain(&app, "+44 20 7946 0000", "").await.unwrap();
    assert_eq!(
        (clean.decision(), clean.reason.as_str()),
        (Decision::Allow, "no_rule")
    );
    assert!(clean.rules.is_empty() && clean.deciding_rule.is_none());

    let bad = explain(&app, "not a number", PL_LINE).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().starts_with("number:"), "{bad:?}");
    let withheld = explain(&app, "anonymous", PL_LINE).await.unwrap_err();
    assert_eq!(withheld.code(), Code::InvalidArgument, "{withheld:?}");
}
