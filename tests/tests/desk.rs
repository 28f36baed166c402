//! The supervisors' review desk in a real headless chromium: signing in, the live queue, working
//! an incident to a block that CheckCall then enforces, the refusals (a role without access, a
//! form without its CSRF token), and the desk in Polish and Chinese. Every page is kept as a
//! screenshot in `target/screenshots/desk/`.

use callwarden_proto::v1::{CallEventKind, Category, Decision, IncidentStatus, Severity};
use callwarden_server::auth::Role;
use callwarden_tests::{
    browser::{Browser, Key},
    *,
};
use serde_json::json;

/// Files a report the way an operator's console does: the call is checked, answered, then
/// ended and reported. Returns the incident id.
async fn reported(app: &TestApp, caller: &str, operator: &str, anonymous: bool) -> String {
    let call = app.answered_call(caller, "sw-desk", operator).await;
    let answer = app
        .end_and_flag(callwarden_proto::v1::EndAndFlagRequest {
            // Below what the report policy blocks on by itself: the block is the desk's.
            category: Category::AbusiveLanguage.into(),
            severity: Severity::Medium.into(),
            note: "called me names".into(),
            anonymous,
            ..end_and_flag_request(&call, operator)
        })
        .await
        .unwrap();
    app.call_event(&call, CallEventKind::Ended, operator)
        .await
        .unwrap();
    answer.incident_id
}

fn url(app: &TestApp, path: &str) -> String {
    format!("http://{}{path}", app.http_addr)
}

/// Signs in with a token through the sign-in form.
async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.goto(&url(app, "/desk/sign-in")).await;
    browser.fill("#token", token).await;
    browser.click("#sign-in button[type=submit]").await;
}

async fn status_of(app: &TestApp, id: &str) -> IncidentStatus {
    app.review
        .clone()
        .get_incident(callwarden_proto::v1::GetIncidentRequest {
            incident_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap()
        .status()
}

/// Runs `script` in the page (its last argument is the callback WebDriver waits for).
async fn in_page(browser: &Browser, script: &str) -> serde_json::Value {
    browser
        .client
        .execute_async(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

#[tokio::test]
async fn a_supervisor_signs_in_sees_a_report_arrive_and_resolves_it_with_a_block() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let caller = "+48601777001";

    // Every page needs a session: the queue sends a stranger to sign in.
    browser.goto(&url(&app, "/desk/queue")).await;
    browser.wait_for("#sign-in").await;
    assert!(browser.current_url().await.ends_with("/desk/sign-in"));
    browser.screenshot("sign-in").await;
    sign_in(&browser, &app, &token(Role::Supervisor, "sup-ala")).await;
    browser.wait_for("#queue-empty").await;
    assert!(browser.text_of("#who").await.contains("sup-ala"));
    browser.screenshot("queue-empty").await;

    // A report filed now appears without reloading: a value kept in the page survives.
    in_page(&browser, "window.cwKept = 7; arguments[0](1);").await;
    // The page holds its live stream before the report is filed.
    browser.wait_for("[data-live][data-connected='1']").await;
    let id = reported(&app, caller, "op-kasia", false).await;
    let row = format!("tr[data-incident='{id}']");
    browser.wait_for(&row).await;
    assert_eq!(
        in_page(&browser, "arguments[0](window.cwKept);").await,
        json!(7),
        "the queue was not reloaded"
    );
    let text = browser.text_of(&row).await;
    assert!(
        text.contains(caller) && text.contains("Abusive language"),
        "{text}"
    );
    assert!(browser.text_of("#counters").await.contains("1 Open"));
    browser.screenshot("queue-live").await;

    // The incident: its facts, its chain, and the acknowledgement.
    browser.click(&format!("{row} a")).await;
    browser.wait_for("#acknowledge").await;
    assert!(browser.text_of("#chain").await.contains("Verifies"));
    assert_eq!(browser.text_of("#reporter").await, "op-kasia");
    assert!(
        browser
            .text_of("#timeline")
            .await
            .contains("Call ended (terminate sent)")
    );
    browser.screenshot("incident-open").await;
    // By keyboard alone: the first Tab reaches the skip link, more reach the acknowledge
    // button, Enter presses it.
    let focused = |css: &str| {
        format!("arguments[0](document.activeElement === document.querySelector({css:?}));")
    };
    browser.press(Key::Tab).await;
    assert_eq!(in_page(&browser, &focused("a.skip")).await, json!(true));
    let mut reached = false;
    for _ in 0..40 {
        browser.press(Key::Tab).await;
        if in_page(&browser, &focused("#acknowledge button")).await == json!(true) {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the acknowledge button");
    browser.press(Key::Enter).await;
    browser.wait_for("#done").await;
    assert_eq!(status_of(&app, &id).await, IncidentStatus::Acknowledged);

    // Not rejected before the decision (a notice of the recent report, at most).
    assert_ne!(
        app.check(caller, OTHER_LINE).await.decision(),
        Decision::Reject
    );
    browser
        .find("#outcome-select")
        .await
        .select_by_value("caller_blocked")
        .await
        .unwrap();
    browser
        .find("#block-ttl")
        .await
        .select_by_value("0")
        .await
        .unwrap();
    browser
        .fill("#resolve-note", "blocked for good after threats")
        .await;
    browser.click("#resolve button").await;
    browser.wait_for_text("#done", "resolved").await;
    assert_eq!(status_of(&app, &id).await, IncidentStatus::Resolved);
    assert_eq!(browser.text_of("#outcome").await, "Caller blocked");
    browser.screenshot("incident-resolved").await;

    // The switch now hears "reject" for this caller, on any line.
    let checked = app.check("0048 601 777 001", OTHER_LINE).await;
    assert_eq!(checked.decision(), Decision::Reject, "{checked:?}");
    assert_eq!(checked.reason, "blocked");

    // The block list explains it, from a number written the national way.
    browser
        .goto(&url(
            &app,
            "/desk/blocklist?number=601+777+001&line=%2B48221002030",
        ))
        .await;
    let result = browser.wait_for("#lookup-result").await;
    assert_eq!(
        result.attr("data-decision").await.unwrap().as_deref(),
        Some("reject")
    );
    assert!(
        browser
            .text_of("#lookup-result")
            .await
            .contains("+48601777001")
    );
    browser.screenshot("blocklist").await;

    // The report, exported in the reader's language.
    let report = in_page(
        &browser,
        &format!(
            "fetch('/desk/incidents/{id}/export?format=markdown').then(r => r.text()).then(arguments[0]);"
        ),
    )
    .await;
    let report = report.as_str().unwrap();
    assert!(
        report.starts_with(&format!("# Incident report {id}")),
        "{report}"
    );

    browser.goto(&url(&app, "/desk/dashboard")).await;
    browser.wait_for("#chart-category svg").await;
    let period = browser.text_of("#period").await;
    assert!(period.contains("one incident"), "{period}");
    browser.screenshot("dashboard").await;
    browser.goto(&url(&app, "/desk/settings")).await;
    browser.wait_for("#settings").await;
    browser.screenshot("settings").await;
    browser.close().await;
}

#[tokio::test]
async fn the_desk_refuses_other_roles_and_forms_without_their_token() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    let id = reported(&app, "+48601777002", "op-basia", true).await;

    // An operator's token is genuine, but the desk is for supervisors.
    sign_in(&browser, &app, &token(Role::Operator, "op-basia")).await;
    browser
        .wait_for_text("#error-message", "needs a supervisor")
        .await;
    browser.screenshot("refused-role").await;
    browser.goto(&url(&app, "/desk/queue")).await;
    browser.wait_for("#sign-in").await;

    // A wrong token gets the form back with the reason.
    sign_in(&browser, &app, "not-a-token").await;
    browser.wait_for("#sign-in-error").await;

    sign_in(&browser, &app, &token(Role::Supervisor, "sup-ola")).await;
    browser.wait_for("#counters").await;
    browser
        .goto(&url(&app, &format!("/desk/incidents/{id}")))
        .await;
    browser.wait_for("#acknowledge").await;
    // An anonymous report: the supervisor sees that it is sealed, never who sent it.
    assert!(browser.text_of("#reporter").await.contains("Sealed"));
    let page = browser.client.source().await.unwrap();
    assert!(
        !page.contains("op-basia"),
        "the sealed reporter's pseudonym is on the page"
    );

    // The same form, posted without its token and with someone else's: refused, nothing done.
    let post = |csrf: &str| {
        format!(
            "fetch('/desk/incidents/{id}/acknowledge', {{method: 'POST', \
               headers: {{'Content-Type': 'application/x-www-form-urlencoded'}}, body: '{csrf}'}}) \
             .then(r => arguments[0](r.status));"
        )
    };
    assert_eq!(in_page(&browser, &post("")).await, json!(403));
    assert_eq!(
        in_page(&browser, &post(&format!("csrf={}", "ab".repeat(32)))).await,
        json!(403)
    );
    assert_eq!(status_of(&app, &id).await, IncidentStatus::Open);
    // What a person sees when that happens.
    in_page(
        &browser,
        "document.querySelector('#acknowledge input[name=csrf]').remove(); arguments[0](1);",
    )
    .await;
    browser.click("#acknowledge button").await;
    browser
        .wait_for_text("#error-message", "did not come from the desk")
        .await;
    browser.screenshot("csrf-refused").await;
    assert_eq!(status_of(&app, &id).await, IncidentStatus::Open);

    // With its token, the same form works.
    browser
        .goto(&url(&app, &format!("/desk/incidents/{id}")))
        .await;
    browser.click("#acknowledge button").await;
    browser.wait_for("#done").await;
    assert_eq!(status_of(&app, &id).await, IncidentStatus::Acknowledged);

    // Signing out ends the session; an expired token does not start one.
    browser.click("header form button").await;
    browser.wait_for("#sign-in").await;
    browser.goto(&url(&app, "/desk/queue")).await;
    browser.wait_for("#sign-in").await;
    sign_in(
        &browser,
        &app,
        &token_with(Role::Supervisor, "sup-ola", "callwarden", 7200, 3600),
    )
    .await;
    browser.wait_for("#sign-in-error").await;
    browser.close().await;
}

#[tokio::test]
async fn the_queue_speaks_polish_and_chinese() {
    let app = spawn_app().await;
    let id = reported(&app, "+48601777003", "op-zosia", false).await;
    for (lang, title, category, name) in [
        ("pl", "Kolejka przeglądu", "Obraźliwy język", "queue-pl"),
        ("zh-CN", "审核队列", "辱骂性语言", "queue-zh-CN"),
    ] {
        let browser = Browser::start_with_language(lang).await;
        sign_in(&browser, &app, &token(Role::Supervisor, "sup-ewa")).await;
        let row = format!("tr[data-incident='{id}']");
        browser.wait_for(&row).await;
        assert_eq!(browser.text_of("h1").await, title);
        assert!(browser.text_of(&row).await.contains(category));
        let html_lang = browser.find("html").await.attr("lang").await.unwrap();
        assert_eq!(html_lang.as_deref(), Some(lang));
        browser.screenshot(name).await;
        // A tablet held upright: the page fits its width (the tables scroll inside it).
        browser.client.set_window_size(820, 1180).await.unwrap();
        let fits = in_page(
            &browser,
            "arguments[0](document.documentElement.scrollWidth <= window.innerWidth);",
        )
        .await;
        assert_eq!(fits, json!(true), "the {lang} queue is wider than a tablet");
        browser.screenshot(&format!("{name}-tablet")).await;
        browser.close().await;
    }

    // A saved setting wins over the browser's language: a Polish browser, a Chinese desk.
    let browser = Browser::start_with_language("pl").await;
    sign_in(&browser, &app, &token(Role::Supervisor, "sup-ewa")).await;
    browser.wait_for("#counters").await;
    browser.goto(&url(&app, "/desk/settings")).await;
    browser
        .find("#locale")
        .await
        .select_by_value("zh-CN")
        .await
        .unwrap();
    browser
        .find("#time-zone")
        .await
        .select_by_value("Asia/Shanghai")
        .await
        .unwrap();
    browser.click("#settings button").await;
    browser.wait_for("#done").await;
    browser.goto(&url(&app, "/desk/queue")).await;
    browser.wait_for("#counters").await;
    assert_eq!(browser.text_of("h1").await, "审核队列");
    assert!(browser.text_of("footer").await.contains("Asia/Shanghai"));
    browser.close().await;
}
