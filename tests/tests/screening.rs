//! CheckCall end to end: numbers in any format, every decision path, precedence, scopes and
//! expiry, through real gRPC against the real Redis index and Postgres record.

use callwarden_proto::v1::AddRuleRequest;
use callwarden_proto::v1::{Decision, ScopeKind};
use callwarden_tests::*;
use chrono::Duration;
use tonic::Code;

#[tokio::test]
async fn a_number_blocked_in_one_format_is_rejected_in_every_other() {
    let app = spawn_app().await;
    let rule = app.add(rule("+48 601 234 567")).await;
    assert_eq!(rule.pattern, "+48601234567");
    for caller in [
        "+48601234567",
        "0048601234567",
        "601-234-567",
        "601 234 567",
        "tel:+48-601-234-567",
        "sip:+48601234567@pbx.example.net;user=phone",
    ] {
        let r = app.check(caller, PL_LINE).await;
        assert_eq!(r.decision(), Decision::Reject, "{caller}");
        assert_eq!(r.reason, "blocked", "{caller}");
        assert_eq!(r.caller_e164, "+48601234567", "{caller}");
        assert_eq!(r.rule_id, rule.id, "{caller}");
        assert_eq!(r.rule_pattern, "+48601234567");
        assert_eq!(r.line, PL_LINE);
    }
    // A different number is let through.
    let r = app.check("+48 601 234 568", PL_LINE).await;
    assert_eq!(
        (r.decision(), r.reason.as_str()),
        (Decision::Allow, "no_rule")
    );
    assert_eq!(r.rule_id, "");
}

#[tokio::test]
async fn national_formats_follow_the_line_region() {
    let app = spawn_app().await;
    app.add(rule("+44 20 7946 0019")).await;
    // On the British line "020..." is London; on a Polish line the same digits are not a number.
    let r = app.check("020 7946 0019", GB_LINE).await;
    assert_eq!(
        (r.decision(), r.caller_e164.as_str()),
        (Decision::Reject, "+442079460019")
    );
    let err = app.try_check("020 7946 0019", PL_LINE).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // The line itself may be written any way.
    let r = app.check("+442079460019", "0044 20 7946 0018").await;
    assert_eq!((r.decision(), r.line.as_str()), (Decision::Reject, GB_LINE));
}

#[tokio::test]
async fn prefix_blocks_a_range_and_an_exact_allow_lets_a_partner_through() {
    let app = spawn_app().await;
    let range = app.add(rule("+4870012*")).await;
    let partner = app.add(allow("+48 700 123 456")).await;
    let r = app.check("+48700129999", PL_LINE).await;
    assert_eq!(
        (r.decision(), r.reason.as_str(), r.rule_id.as_str()),
        (Decision::Reject, "prefix_blocked", range.id.as_str())
    );
    assert_eq!(r.rule_pattern, "+4870012*");
    let r = app.check("+48700123456", PL_LINE).await;
    assert_eq!(
        (r.decision(), r.reason.as_str(), r.rule_id.as_str()),
        (Decision::Allow, "allowed_by_rule", partner.id.as_str())
    );
    let r = app.check("+48700130000", PL_LINE).await;
    assert_eq!(r.reason, "no_rule");
}

#[tokio::test]
async fn longer_prefix_beats_shorter() {
    let app = spawn_app().await;
    app.add(allow("+48700*")).await;
    let inner = app.add(rule("+4870012*")).await;
    let r = app.check("+48700123456", PL_LINE).await;
    assert_eq!(
        (r.reason.as_str(), r.rule_id.as_str()),
        ("prefix_blocked", inner.id.as_str())
    );
    let r = app.check("+48700999999", PL_LINE).await;
    assert_eq!(r.reason, "allowed_by_rule");
}

#[tokio::test]
async fn exact_beats_prefix_whatever_the_effect() {
    let app = spawn_app().await;
    app.add(allow("+4870012*")).await;
    let exact = app.add(rule("+48700123456")).await;
    let r = app.check("+48700123456", PL_LINE).await;
    assert_eq!(
        (r.reason.as_str(), r.rule_id.as_str()),
        ("blocked", exact.id.as_str())
    );
}

#[tokio::test]
async fn line_rules_apply_on_their_line_only_and_beat_global_rules() {
    let app = spawn_app().await;
    let line_block = app
        .add(on_line(rule("+48 601 234 567"), "22 100 20 30"))
        .await;
    let scope = line_block.scope.clone().unwrap();
    assert_eq!(
        (scope.kind(), scope.value.as_str()),
        (ScopeKind::Line, PL_LINE)
    );
    assert_eq!(
        app.check("+48601234567", PL_LINE).await.decision(),
        Decision::Reject
    );
    assert_eq!(
        app.check("+48601234567", OTHER_LINE).await.decision(),
        Decision::Allow
    );
    assert_eq!(
        app.check("+48601234567", GB_LINE).await.decision(),
        Decision::Allow
    );

    // A global allow of the same number loses to the narrower line block ...
    app.add(allow("+48601234567")).await;
    let r = app.check("+48601234567", PL_LINE).await;
    assert_eq!(
        (r.decision(), r.rule_id.as_str()),
        (Decision::Reject, line_block.id.as_str())
    );
    // ... and a line allow beats a global block of the same prefix.
    app.add(rule("+4850*")).await;
    app.add(on_line(allow("+4850*"), OTHER_LINE)).await;
    assert_eq!(
        app.check("+48501234567", OTHER_LINE).await.reason,
        "allowed_by_rule"
    );
    assert_eq!(
        app.check("+48501234567", PL_LINE).await.reason,
        "prefix_blocked"
    );
    let r = app.check("+48501234567", OTHER_LINE).await;
    assert_eq!(r.rule_scope.unwrap().kind(), ScopeKind::Line);
}

#[tokio::test]
async fn allow_beats_block_at_equal_specificity() {
    let app = spawn_app().await;
    app.add(rule("+4860*")).await;
    let allowed = app.add(allow("+4860*")).await;
    app.add(rule("+4860*")).await;
    let r = app.check("+48601234567", PL_LINE).await;
    assert_eq!(
        (r.decision(), r.rule_id.as_str()),
        (Decision::Allow, allowed.id.as_str())
    );
}

#[tokio::test]
async fn operator_rules_do_not_apply_to_calls_not_routed_to_that_operator() {
    let app = spawn_app().await;
    let personal = app.add(for_operator(rule("+48601234567"), "op-7")).await;
    assert_eq!(personal.scope.unwrap().value, "op-7");
    assert_eq!(app.check("+48601234567", PL_LINE).await.reason, "no_rule");
}

#[tokio::test]
async fn withheld_callers_follow_each_line_policy() {
    let app = spawn_app().await;
    app.add(rule("+4*")).await;
    for caller in [
        "",
        "anonymous",
        "Private",
        "unknown",
        "restricted",
        "sip:anonymous@anonymous.invalid",
    ] {
        let r = app.check(caller, PL_LINE).await;
        assert_eq!(
            (r.decision(), r.reason.as_str()),
            (Decision::Reject, "anonymous_rejected"),
            "{caller:?}"
        );
        assert_eq!(r.caller_e164, "");
        let r = app.check(caller, GB_LINE).await;
        assert_eq!(
            (r.decision(), r.reason.as_str()),
            (Decision::Allow, "anonymous_allowed"),
            "{caller:?}"
        );
        // Unknown lines use the configured default: allow with a notice.
        let r = app.check(caller, OTHER_LINE).await;
        assert_eq!(
            (r.decision(), r.reason.as_str()),
            (Decision::AllowWithNotice, "anonymous_notice"),
            "{caller:?}"
        );
    }
}

#[tokio::test]
async fn a_temporary_block_expires_in_the_record_and_in_redis() {
    let app = spawn_app().await;
    let temporary = app
        .add(AddRuleRequest {
            ttl_seconds: 600,
            ..rule("+48601234567")
        })
        .await;
    let expires = temporary.expires_at.unwrap();
    let created = temporary.created_at.unwrap();
    assert_eq!(expires.seconds - created.seconds, 600);
    assert_eq!(app.check("+48601234567", PL_LINE).await.reason, "blocked");

    // Redis drops the index entry on its own when the block ends.
    let pttl = app.slot_pttl("+48601234567").await;
    assert!((590_000..=600_000).contains(&pttl), "pttl {pttl}");

    // Past the expiry the rule no longer matches, even while Redis still holds it.
    app.clock.advance(Duration::seconds(601));
    let r = app.check("+48601234567", PL_LINE).await;
    assert_eq!(
        (r.decision(), r.reason.as_str()),
        (Decision::Allow, "no_rule")
    );
}

#[tokio::test]
async fn a_permanent_block_outlives_a_temporary_one_on_the_same_number() {
    let app = spawn_app().await;
    app.add(AddRuleRequest {
        ttl_seconds: 60,
        ..rule("+48601234567")
    })
    .await;
    let permanent = app.add(rule("+48601234567")).await;
    app.clock.advance(Duration::seconds(120));
    let r = app.check("+48601234567", PL_LINE).await;
    assert_eq!(
        (r.reason.as_str(), r.rule_id.as_str()),
        ("blocked", permanent.id.as_str())
    );
}

#[tokio::test]
async fn a_removed_rule_stops_matching_and_the_next_strongest_takes_over() {
    let app = spawn_app().await;
    let range = app.add(rule("+4860*")).await;
    let exact = app.add(rule("+48601234567")).await;
    app.remove(&exact.id, "sup-2").await.unwrap();
    let r = app.check("+48601234567", PL_LINE).await;
    assert_eq!(
        (r.reason.as_str(), r.rule_id.as_str()),
        ("prefix_blocked", range.id.as_str())
    );
    app.remove(&range.id, "").await.unwrap();
    assert_eq!(app.check("+48601234567", PL_LINE).await.reason, "no_rule");
    assert!(
        !app.index_keys().await.iter().any(|k| k.contains(":r:")),
        "no rule keys remain"
    );
}

#[tokio::test]
async fn normalisation_table_over_grpc() {
    let app = spawn_app().await;
    let table = [
        ("+48 601 234 567", PL_LINE, "+48601234567"),
        ("0048601234567", PL_LINE, "+48601234567"),
        ("601-234-567", PL_LINE, "+48601234567"),
        ("tel:+48-601-234-567", PL_LINE, "+48601234567"),
        ("07911 123456", GB_LINE, "+447911123456"),
        ("+44 7911 123456", PL_LINE, "+447911123456"),
        ("00 44 7911 123456", OTHER_LINE, "+447911123456"),
        ("+86 138 0013 8000", PL_LINE, "+8613800138000"),
        ("+1 (202) 555-0123", GB_LINE, "+12025550123"),
        ("+49 30 12345678", PL_LINE, "+493012345678"),
        ("+33 1 42 68 53 00", PL_LINE, "+33142685300"),
        ("22 100 20 30", OTHER_LINE, "+48221002030"),
    ];
    for (caller, line, want) in table {
        assert_eq!(
            app.check(caller, line).await.caller_e164,
            want,
            "{caller} on {line}"
        );
    }
}
