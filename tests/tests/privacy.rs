//! Redis never holds a phone number in clear: after the real flows (rules of exact numbers and
//! prefixes in every scope, checks, answered calls, EndAndFlag with a block, FlagCall, recent
//! incident counts, an index rebuild), every key of the deployment and every value under it is
//! read, and none contains any number of the test, in any format.

use callwarden_proto::v1::{
    BlockChoice, CallEventKind, Category, CheckCallRequest, CheckCallResponse, CommandKind,
    Decision, EndAndFlagRequest, FlagCallRequest, Severity,
};
use callwarden_tests::*;
use std::time::Duration;
use tokio_stream::StreamExt;
use uuid::Uuid;

/// Global rules.
const G_EXACT: &str = "+48601234567";
const G_PREFIX: &str = "+4870012345*";
const G_PREFIX_CALLER: &str = "+48700123456";
const G_ALLOW: &str = "+48700123459";
/// Rules of one line (an exact number on the Polish line, a range on the British one).
const L_EXACT: &str = "+48501234567";
const L_PREFIX: &str = "+44791112345*";
const L_PREFIX_CALLER: &str = "+447911123456";
/// Rules of one operator.
const O_OPERATOR: &str = "op-7";
const O_EXACT: &str = "+48512345678";
const O_PREFIX: &str = "+4851299999*";
const O_PREFIX_CALLER: &str = "+48512999991";
/// Callers that get reported: the first blocked by its operator (EndAndFlag), the second
/// globally (FlagCall).
const REPORTED_END: &str = "+48609111222";
const REPORTED_FLAG: &str = "+48609333444";
const SWITCH: &str = "sw-privacy";

/// Every number of the test, with the length of its country code.
const NUMBERS: &[(&str, usize)] = &[
    (G_EXACT, 2),
    (G_PREFIX, 2),
    (G_PREFIX_CALLER, 2),
    (G_ALLOW, 2),
    (L_EXACT, 2),
    (L_PREFIX, 2),
    (L_PREFIX_CALLER, 2),
    (O_EXACT, 2),
    (O_PREFIX, 2),
    (O_PREFIX_CALLER, 2),
    (REPORTED_END, 2),
    (REPORTED_FLAG, 2),
    (PL_LINE, 2),
    (GB_LINE, 2),
];

/// What must not appear: each number's (or prefix's) international digits and its national
/// digits. The E.164 form (`+` and the digits), the `00` form and national forms with a trunk
/// `0` all contain one of them.
fn needles() -> Vec<String> {
    let mut needles = Vec::new();
    for (number, cc) in NUMBERS {
        let digits = number.trim_start_matches('+').trim_end_matches('*');
        assert!(
            digits.len() >= 10,
            "{number}: long enough not to match by chance"
        );
        needles.push(digits.to_owned());
        needles.push(digits[*cc..].to_owned());
    }
    needles
}

/// Each text as stored and without the separators numbers are written with ("601 234 567",
/// "601-234-567", "(22) 100.20.30").
fn haystacks(text: &str) -> [String; 2] {
    let joined = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '/'))
        .collect();
    [text.to_owned(), joined]
}

fn strings(value: redis::Value, out: &mut Vec<String>) {
    use redis::Value as V;
    match value {
        V::Nil | V::Okay => {}
        V::BulkString(bytes) => out.push(String::from_utf8_lossy(&bytes).into_owned()),
        V::SimpleString(s) => out.push(s),
        V::Int(n) => out.push(n.to_string()),
        V::Double(d) => out.push(d.to_string()),
        V::Array(items) | V::Set(items) => items.into_iter().for_each(|v| strings(v, out)),
        V::Map(pairs) => {
            for (k, v) in pairs {
                strings(k, out);
                strings(v, out);
            }
        }
        V::VerbatimString { text, .. } => out.push(text),
        other => out.push(format!("{other:?}")),
    }
}

/// Every key under the test's prefix, with every string its value holds (members, fields,
/// scores, entries), whatever its type.
async fn dump(app: &TestApp) -> Vec<(String, String, Vec<String>)> {
    let mut conn = app.redis.clone();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", app.config.redis_key_prefix))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let mut dumped = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut read = match kind.as_str() {
            "string" => redis::cmd("GET"),
            "hash" => redis::cmd("HGETALL"),
            "set" => redis::cmd("SMEMBERS"),
            "list" => {
                let mut c = redis::cmd("LRANGE");
                c.arg(&key).arg(0).arg(-1);
                c
            }
            "zset" => {
                let mut c = redis::cmd("ZRANGE");
                c.arg(&key).arg(0).arg(-1).arg("WITHSCORES");
                c
            }
            "stream" => {
                let mut c = redis::cmd("XRANGE");
                c.arg(&key).arg("-").arg("+");
                c
            }
            "none" => continue, // expired since the scan
            other => panic!("{key}: a {other} this test cannot read"),
        };
        if ["string", "hash", "set"].contains(&kind.as_str()) {
            read.arg(&key);
        }
        let value: redis::Value = read.query_async(&mut conn).await.unwrap();
        let mut texts = Vec::new();
        strings(value, &mut texts);
        dumped.push((key, kind, texts));
    }
    dumped
}

/// Asserts that no key and no value holds a number of the test; returns the dump.
async fn assert_no_number_in_clear(app: &TestApp) -> Vec<(String, String, Vec<String>)> {
    let dumped = dump(app).await;
    let needles = needles();
    for (key, kind, texts) in &dumped {
        for text in std::iter::once(key).chain(texts) {
            for hay in haystacks(text) {
                for needle in &needles {
                    assert!(
                        !hay.contains(needle.as_str()),
                        "{needle} in clear in Redis: {kind} {key:?} holds {text:?}"
                    );
                }
            }
        }
    }
    dumped
}

fn keys_with<'a>(dumped: &'a [(String, String, Vec<String>)], part: &str) -> Vec<&'a String> {
    dumped
        .iter()
        .map(|(k, _, _)| k)
        .filter(|k| k.contains(part))
        .collect()
}

async fn check(app: &TestApp, caller: &str, line: &str, operator: &str) -> CheckCallResponse {
    app.screening
        .clone()
        .check_call(CheckCallRequest {
            call_id: Uuid::new_v4().to_string(),
            caller: caller.into(),
            line: line.into(),
            switch_id: SWITCH.into(),
            operator_id: operator.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("check {caller} on {line}: {s}"))
        .into_inner()
}

async fn reason(app: &TestApp, caller: &str, line: &str, operator: &str) -> String {
    check(app, caller, line, operator).await.reason
}

#[tokio::test]
async fn redis_holds_no_phone_number_in_clear() {
    let app = spawn_app().await;

    // Rules of exact numbers and of prefixes, in every scope.
    app.add(rule(G_EXACT)).await;
    app.add(rule(G_PREFIX)).await;
    app.add(allow(G_ALLOW)).await;
    app.add(on_line(rule(L_EXACT), PL_LINE)).await;
    app.add(on_line(rule(L_PREFIX), GB_LINE)).await;
    app.add(for_operator(rule(O_EXACT), O_OPERATOR)).await;
    app.add(for_operator(rule(O_PREFIX), O_OPERATOR)).await;

    // Checks, in national and international formats: each rule decides where it should.
    let table = [
        ("+48 601 234 567", PL_LINE, "", "blocked"),
        ("0048601234567", GB_LINE, "", "blocked"),
        (G_PREFIX_CALLER, PL_LINE, "", "prefix_blocked"),
        ("700-123-459", PL_LINE, "", "allowed_by_rule"),
        ("501 234 567", PL_LINE, "", "blocked"),
        (L_EXACT, GB_LINE, "", "no_rule"),
        ("07911 123456", GB_LINE, "", "prefix_blocked"),
        (L_PREFIX_CALLER, PL_LINE, "", "no_rule"),
        (O_EXACT, PL_LINE, O_OPERATOR, "blocked"),
        (O_EXACT, PL_LINE, "op-8", "no_rule"),
        (O_PREFIX_CALLER, GB_LINE, O_OPERATOR, "prefix_blocked"),
        ("anonymous", GB_LINE, "", "anonymous_allowed"),
    ];
    for (caller, line, operator, expected) in table {
        assert_eq!(
            reason(&app, caller, line, operator).await,
            expected,
            "{caller} on {line} for {operator:?}"
        );
    }

    // An answered call ended and reported, with a block from its operator; the switch gets the
    // TERMINATE and reports the end before acknowledging it (so the command stays on record).
    let mut stream = app.watch(SWITCH).await;
    let call = app.answered_call(REPORTED_END, SWITCH, "op-1").await;
    let reply = app
        .console
        .clone()
        .end_and_flag(EndAndFlagRequest {
            call_id: call.clone(),
            operator_id: "op-1".into(),
            category: Category::AbusiveLanguage.into(),
            severity: Severity::Medium.into(),
            note: "insults".into(),
            block: BlockChoice::FromMe.into(),
            anonymous: false,
            request_id: Uuid::new_v4().to_string(),
            debrief: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reply.terminate_sent);
    assert!(
        reply.actions.contains(&"operator_block".to_owned()),
        "{reply:?}"
    );
    let command = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a command within 10 s")
        .expect("the stream is open")
        .expect("a command");
    assert_eq!(
        (command.call_id.as_str(), command.kind()),
        (call.as_str(), CommandKind::Terminate)
    );
    app.call_event(&call, CallEventKind::Ended, "op-1")
        .await
        .unwrap();

    // A call still live, reported without ending it, with a request for a global block.
    let live_call = app.answered_call(REPORTED_FLAG, SWITCH, "op-2").await;
    let reply = app
        .console
        .clone()
        .flag_call(FlagCallRequest {
            block: BlockChoice::GlobalRequest.into(),
            ..flag_request(&live_call, "op-2")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.actions.contains(&"global_block".to_owned()),
        "{reply:?}"
    );

    // The blocks hold, and the next operator hears of the recent incidents.
    let r = check(&app, REPORTED_END, PL_LINE, "op-1").await;
    assert_eq!(
        (r.decision(), r.reason.as_str()),
        (Decision::Reject, "blocked")
    );
    let r = check(&app, REPORTED_END, PL_LINE, "").await;
    assert_eq!(
        (r.decision(), r.recent_flags),
        (Decision::AllowWithNotice, 1)
    );
    let r = check(&app, "609 333 444", PL_LINE, "").await;
    assert_eq!(
        (r.decision(), r.reason.as_str(), r.recent_flags),
        (Decision::Reject, "blocked", 1)
    );

    // Nothing in clear, and the test looked where the numbers would be.
    let dumped = assert_no_number_in_clear(&app).await;
    // Seven rules and the two blocks from reports, each in its own slot.
    assert_eq!(keys_with(&dumped, ":r:").len(), 9, "{dumped:#?}");
    for pattern in [G_EXACT, G_PREFIX, G_ALLOW, REPORTED_FLAG] {
        assert!(
            dumped.iter().any(|(k, _, _)| *k == app.slot_key(pattern)),
            "{pattern}: no keyed slot"
        );
    }
    assert_eq!(keys_with(&dumped, ":flags:").len(), 2, "{dumped:#?}");
    let calls: Vec<_> = dumped
        .iter()
        .filter(|(k, kind, _)| k.contains(":call:") && kind == "hash")
        .collect();
    assert!(calls.len() >= table.len() + 2, "{calls:#?}");
    for (key, _, fields) in &calls {
        let names: Vec<&str> = fields.iter().step_by(2).map(String::as_str).collect();
        assert!(
            !names.contains(&"line") && !names.contains(&"caller"),
            "{key}: {names:?}"
        );
        let parties = fields.chunks(2).find(|kv| kv[0] == "parties");
        assert!(
            parties.is_some_and(|kv| kv[1].starts_with("s1:")),
            "{key}: the line and caller are not sealed: {fields:?}"
        );
    }
    assert_eq!(
        keys_with(&dumped, ":cmddone:").len(),
        1,
        "the TERMINATE is kept for its acknowledgement: {dumped:#?}"
    );

    // Redis loses everything: the index is rebuilt and the recent incidents restored from
    // Postgres, still without a number in clear.
    app.lose_redis_keys().await;
    eventually("the index and the recent incidents are back", || async {
        let r = check(&app, REPORTED_END, PL_LINE, "").await;
        let keys = app.index_keys().await;
        r.recent_flags == 1
            && keys.iter().any(|k| k.ends_with(":meta:ready"))
            && keys.iter().filter(|k| k.contains(":r:")).count() == 9
    })
    .await;
    assert_eq!(reason(&app, "601234567", PL_LINE, "").await, "blocked");
    assert_eq!(reason(&app, REPORTED_END, PL_LINE, "op-1").await, "blocked");
    let dumped = assert_no_number_in_clear(&app).await;
    assert_eq!(keys_with(&dumped, ":flags:").len(), 2, "{dumped:#?}");
}

#[test]
fn the_search_finds_numbers_in_any_format() {
    let needles = needles();
    let found = |text: &str| {
        haystacks(text)
            .iter()
            .any(|hay| needles.iter().any(|n| hay.contains(n.as_str())))
    };
    for text in [
        "cw:flags:+48609111222",
        "cw:r:g::+4870012345*",
        "0048 609 111 222",
        "609-111-222",
        "(0) 7911 123456",
        "{\"caller\":\"48609333444\"}",
        "line=+44 20 7946 0018",
    ] {
        assert!(found(text), "{text}");
    }
    for text in [
        "cw:flags:5d0c4a3e9b1f2a7c6e8d0b4f1a2c3e5d",
        "s1:0123456789abcdef",
        "1763700000000",
    ] {
        assert!(!found(text), "{text}");
    }
}

async fn ready_marker(app: &TestApp) -> Option<String> {
    redis::cmd("GET")
        .arg(format!("{}:meta:ready", app.config.redis_key_prefix))
        .query_async(&mut app.redis.clone())
        .await
        .unwrap()
}

fn fingerprint(app: &TestApp) -> String {
    let secret = app.config.privacy.secret().unwrap();
    callwarden_storage::Keyring::new(secret.as_bytes())
        .fingerprint()
        .to_owned()
}

#[tokio::test]
async fn a_new_secret_rebuilds_the_index_and_replicas_that_disagree_answer_right() {
    // The first deployment, quiet once started (no maintenance pass to rebuild on its own).
    let mut config = test_config("redis://127.0.0.1:6379");
    config.index_check_interval_ms = 3_600_000;
    let old = spawn_app_with(config.clone()).await;
    old.add(rule(G_EXACT)).await;
    old.add(rule(G_PREFIX)).await;
    let call = old.answered_call(REPORTED_END, SWITCH, "op-1").await;
    old.console
        .clone()
        .flag_call(flag_request(&call, "op-1"))
        .await
        .unwrap();
    assert_eq!(check(&old, REPORTED_END, PL_LINE, "").await.recent_flags, 1);
    // A call answered before the change of secret.
    let straddling = old.answered_call(REPORTED_FLAG, SWITCH, "op-2").await;
    let old_fingerprint = fingerprint(&old);
    // The first build runs behind start-up (checks answer from Postgres meanwhile): wait for it.
    eventually("the index is built with the first secret", || async {
        ready_marker(&old)
            .await
            .is_some_and(|m| m.starts_with(&old_fingerprint))
    })
    .await;
    let old_slot = old.slot_key(G_EXACT);

    // The same deployment started with another secret: it finds none of the old names, so it
    // rebuilds the index and restores the recent incidents from Postgres.
    config.index_check_interval_ms = 50;
    config.privacy.redis_secret = Some("another-redis-secret-0123456789abcdef".into());
    let new = spawn_app_with(config).await;
    let new_fingerprint = fingerprint(&new);
    assert_ne!(new_fingerprint, old_fingerprint);
    assert_ne!(new.slot_key(G_EXACT), old_slot);
    eventually("the index is rebuilt with the new secret", || async {
        let keys = new.index_keys().await;
        ready_marker(&new)
            .await
            .is_some_and(|m| m.starts_with(&new_fingerprint))
            && keys.contains(&new.slot_key(G_EXACT))
            && !keys.contains(&old_slot)
    })
    .await;
    let r = check(&new, "601 234 567", PL_LINE, "").await;
    assert_eq!(
        (r.decision(), r.reason.as_str()),
        (Decision::Reject, "blocked")
    );
    assert_eq!(
        reason(&new, G_PREFIX_CALLER, PL_LINE, "").await,
        "prefix_blocked"
    );
    eventually("recent incidents restored for the new secret", || async {
        check(&new, REPORTED_END, PL_LINE, "").await.recent_flags == 1
    })
    .await;
    assert_no_number_in_clear(&new).await;

    // The call answered before the change was sealed with the old secret: the new one cannot
    // read it, so a report on it is refused rather than recorded without its caller.
    let flag = flag_request(&straddling, "op-2");
    let refused = new
        .console
        .clone()
        .flag_call(flag.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    old.console.clone().flag_call(flag).await.unwrap();

    // A replica still on the old secret writes a rule the new index lacks: its write withdraws
    // the new secret's marker, so the new replica answers from Postgres (and rebuilds).
    let marker = ready_marker(&new).await;
    assert!(marker.is_some_and(|m| m.starts_with(&new_fingerprint)));
    old.add(rule(O_EXACT)).await;
    assert_eq!(reason(&new, O_EXACT, PL_LINE, "").await, "blocked");
    // The old replica never trusts an index of the new secret: it answers from Postgres too.
    assert_eq!(reason(&old, O_EXACT, PL_LINE, "").await, "blocked");
    new.add(rule(L_EXACT)).await;
    assert_eq!(reason(&old, L_EXACT, PL_LINE, "").await, "blocked");
    assert_eq!(reason(&new, L_EXACT, PL_LINE, "").await, "blocked");
    // Both keep answering right while they take the index from each other.
    for _ in 0..20 {
        for app in [&old, &new] {
            assert_eq!(reason(app, G_EXACT, GB_LINE, "").await, "blocked");
            assert_eq!(reason(app, O_EXACT, GB_LINE, "").await, "blocked");
            assert_eq!(reason(app, G_ALLOW, GB_LINE, "").await, "prefix_blocked");
        }
    }
}

#[tokio::test]
async fn a_live_call_kept_in_clear_by_an_older_version_can_still_be_reported() {
    let app = spawn_app().await;
    let call_id = Uuid::new_v4().to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let _: () = redis::cmd("HSET")
        .arg(format!("{}:call:{call_id}", app.config.redis_key_prefix))
        .arg("switch")
        .arg(SWITCH)
        .arg("line")
        .arg(PL_LINE)
        .arg("caller")
        .arg(REPORTED_END)
        .arg("checked_at")
        .arg(now)
        .arg("operator")
        .arg("op-1")
        .arg("answered_at")
        .arg(now)
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    let reply = app
        .console
        .clone()
        .flag_call(FlagCallRequest {
            block: BlockChoice::FromMe.into(),
            ..flag_request(&call_id, "op-1")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply.actions.contains(&"operator_block".to_owned()),
        "{reply:?}"
    );
    let (line, caller): (String, Option<String>) =
        sqlx::query_as("SELECT line, caller_e164 FROM incidents WHERE call_id = $1")
            .bind(&call_id)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(
        (line.as_str(), caller.as_deref()),
        (PL_LINE, Some(REPORTED_END))
    );
    assert_eq!(reason(&app, REPORTED_END, PL_LINE, "op-1").await, "blocked");
}

#[tokio::test]
async fn keys_named_in_clear_by_an_older_version_are_dropped() {
    let app = spawn_app().await;
    app.add(rule(G_EXACT)).await;
    eventually("the index is ready", || async {
        ready_marker(&app).await.is_some()
    })
    .await;
    // What the version before keyed names left: its marker, slots and recent incidents.
    let prefix = &app.config.redis_key_prefix;
    let mut conn = app.redis.clone();
    let _: () = redis::cmd("MSET")
        .arg(format!("{prefix}:meta:ready"))
        .arg("2026-11-21T10:00:00+00:00")
        .arg(format!("{prefix}:r:g::{L_EXACT}"))
        .arg("b,0193f0c4a1b27c3d8e9f001122334455,0")
        .arg(format!("{prefix}:flags:{REPORTED_END}"))
        .arg(chrono::Utc::now().timestamp_millis())
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:meta:flags-ready:{}", fingerprint(&app)))
        .query_async(&mut conn)
        .await
        .unwrap();
    // Checks never read slots named in clear; the old marker is not this secret's, so the
    // index is rebuilt (dropping every old slot) and the recent incidents restored (dropping
    // the keys named by numbers).
    assert_eq!(reason(&app, L_EXACT, PL_LINE, "").await, "no_rule");
    eventually("the keys in clear are gone", || async {
        let keys = app.index_keys().await;
        ready_marker(&app)
            .await
            .is_some_and(|m| m.starts_with(&fingerprint(&app)))
            && keys.contains(&app.slot_key(G_EXACT))
            && !keys.iter().any(|k| k.contains('+'))
    })
    .await;
    assert_eq!(reason(&app, G_EXACT, PL_LINE, "").await, "blocked");
    assert_no_number_in_clear(&app).await;
}
