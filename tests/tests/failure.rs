//! The failure suite: Redis hung or lost, Postgres stopped, a replica killed, each on servers
//! the test starts itself on free ports. What must hold: every check is answered within its
//! budget and by the policy, no acknowledged report is lost or recorded twice, and everything
//! recovers on its own.

use callwarden_domain::line::FailurePolicy;
use callwarden_proto::v1::{
    CallEventKind, CheckCallRequest, CheckCallResponse, CommandKind, Decision, EndAndFlagResponse,
    ListIncidentsRequest, ReportCallEventRequest, console_client::ConsoleClient,
    screening_client::ScreeningClient,
};
use callwarden_server::{auth::Role, config::Config};
use callwarden_tests::*;
use std::{
    collections::{HashMap, HashSet},
    io::BufRead,
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio_stream::StreamExt;
use tonic::{Code, transport::Channel};
use uuid::Uuid;

const BLOCKED: &str = "+48601000001";
const CLEAN: &str = "+48601000002";

/// The test's configuration on its own Postgres.
fn on_postgres(mut config: Config, pg: &PostgresServer) -> Config {
    let database = config.database_url.rsplit('/').next().unwrap().to_owned();
    config.database_url = format!("{}/{database}", pg.url());
    config
}

/// Budgets that tell the two apart: a check that waited on Redis would take `redis_timeout_ms`
/// (10 s); one that kept its budget takes at most `check_budget_ms` (1 s) and some scheduling.
fn with_budget(mut config: Config) -> Config {
    config.check_budget_ms = 1_000;
    config.redis_timeout_ms = 10_000;
    config
}

/// Half the Redis timeout: an answer slower than this waited on Redis instead of its budget.
const WAITED_ON_REDIS: Duration = Duration::from_secs(5);

/// The Polish line fails closed; the others (the British line among them) open.
fn pl_fails_closed(mut config: Config) -> Config {
    config.lines[0].failure_policy = Some(FailurePolicy::Closed);
    config
}

async fn timed_check(app: &TestApp, caller: &str, line: &str) -> CheckCallResponse {
    let started = Instant::now();
    let answer = app.check(caller, line).await;
    assert!(
        started.elapsed() < WAITED_ON_REDIS,
        "{caller} on {line}: {:?} is past the budget",
        started.elapsed()
    );
    answer
}

async fn metrics(app: &TestApp) -> String {
    http_get(app.http_addr, "/metrics").await.1
}

#[tokio::test]
async fn a_hung_redis_costs_a_check_its_budget_and_the_answer_still_follows_the_rules() {
    let redis = RedisServer::start().await;
    let app = spawn_app_with(with_budget(test_config(&redis.url()))).await;
    app.add(rule(BLOCKED)).await;
    eventually("the index answers", || async {
        let r = app.check(BLOCKED, GB_LINE).await;
        r.reason == "blocked" && !r.degraded
    })
    .await;

    redis.pause();
    // Remembered from the last check: the recent results answer.
    let r = timed_check(&app, BLOCKED, GB_LINE).await;
    assert_eq!((r.reason.as_str(), r.degraded), ("blocked", true));
    // Never checked before: Postgres answers, in what is left of the budget.
    let r = timed_check(&app, CLEAN, GB_LINE).await;
    assert_eq!((r.reason.as_str(), r.degraded), ("no_rule", true));
    let r = timed_check(&app, "+48601000003", PL_LINE).await;
    assert_eq!(r.decision(), Decision::Allow);
    assert!(r.degraded);

    redis.resume();
    eventually("checks are whole again once Redis answers", || async {
        !app.check(BLOCKED, GB_LINE).await.degraded
    })
    .await;
    let text = metrics(&app).await;
    for source in ["recent", "postgres"] {
        assert!(
            text.contains(&format!(
                "callwarden_checks_degraded_total{{source=\"{source}\"}}"
            )),
            "{source}: {text}"
        );
    }
}

#[tokio::test]
async fn with_both_stores_down_each_line_follows_its_failure_policy() {
    let mut redis = RedisServer::start().await;
    let mut pg = PostgresServer::start().await;
    let config = pl_fails_closed(with_budget(on_postgres(test_config(&redis.url()), &pg)));
    let app = spawn_app_with(config).await;
    app.add(rule(BLOCKED)).await;
    eventually("the index answers", || async {
        app.check(BLOCKED, GB_LINE).await.reason == "blocked"
    })
    .await;

    redis.stop();
    pg.stop();
    let r = timed_check(&app, CLEAN, PL_LINE).await;
    assert_eq!(
        (r.decision(), r.reason.as_str(), r.degraded),
        (Decision::Reject, "fail_closed", true)
    );
    let r = timed_check(&app, CLEAN, GB_LINE).await;
    assert_eq!(
        (r.decision(), r.reason.as_str(), r.degraded),
        (Decision::Allow, "fail_open", true)
    );
    // What was checked before Postgres went away is still known: no rule could change since.
    let r = timed_check(&app, BLOCKED, GB_LINE).await;
    assert_eq!(
        (r.decision(), r.reason.as_str(), r.degraded),
        (Decision::Reject, "blocked", true)
    );
    // A withheld number needs no rules: the line's anonymous policy decides, as always.
    let r = timed_check(&app, "anonymous", PL_LINE).await;
    assert_eq!(r.reason, "anonymous_rejected");
    let r = timed_check(&app, "anonymous", GB_LINE).await;
    assert_eq!(r.reason, "anonymous_allowed");
    assert!(
        metrics(&app)
            .await
            .contains("callwarden_checks_degraded_total{source=\"policy\"}")
    );

    pg.restart().await;
    redis.restart().await;
    eventually("checks are whole again", || async {
        let r = app.check(CLEAN, PL_LINE).await;
        r.reason == "no_rule" && !r.degraded
    })
    .await;
}

#[tokio::test]
async fn a_rule_added_on_another_replica_is_heard_of_while_redis_is_away() {
    let redis = RedisServer::start().await;
    let mut config = with_budget(test_config(&redis.url()));
    // The other replica's index write gives up quickly; the rule is on record regardless.
    config.redis_timeout_ms = 300;
    let a = spawn_app_with(config).await;
    let b = a.replica().await;
    assert_eq!(a.check(CLEAN, GB_LINE).await.reason, "no_rule");

    redis.pause();
    let r = timed_check(&a, CLEAN, GB_LINE).await;
    assert_eq!((r.reason.as_str(), r.degraded), ("no_rule", true));
    b.add(rule(CLEAN)).await;
    // `a` remembered "no rule"; the change announced through Postgres makes it forget.
    eventually("the other replica's block is seen", || async {
        a.check(CLEAN, GB_LINE).await.reason == "blocked"
    })
    .await;
    redis.resume();
}

/// Waits until the replica has noticed that Postgres is away: review answers UNAVAILABLE, at
/// once and saying why.
async fn until_postgres_is_known_down(app: &TestApp) {
    eventually("review answers UNAVAILABLE", || async {
        let started = Instant::now();
        match app
            .review
            .clone()
            .list_incidents(ListIncidentsRequest::default())
            .await
        {
            // At first a request may still try, and fail; then the probe has noticed.
            Err(s) if s.code() == Code::Unavailable && s.message().contains("Postgres") => {
                // The pool would wait its whole acquire timeout (10 s here) to find out.
                assert!(started.elapsed() < Duration::from_secs(5));
                true
            }
            _ => false,
        }
    })
    .await;
}

/// Every incident's id by the request that made it; `None` while Postgres cannot be read.
async fn incidents_by_request(pg_url: &str) -> Option<HashMap<String, Vec<String>>> {
    let pool = sqlx::PgPool::connect(pg_url).await.ok()?;
    let rows: Result<Vec<(String, String)>, _> =
        sqlx::query_as("SELECT request_id, id::text FROM incidents ORDER BY created_at")
            .fetch_all(&pool)
            .await;
    pool.close().await;
    let mut by_request: HashMap<String, Vec<String>> = HashMap::new();
    for (request, id) in rows.ok()? {
        by_request.entry(request).or_default().push(id);
    }
    Some(by_request)
}

fn spool_entries(config: &Config) -> usize {
    std::fs::read_dir(&config.spool.dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn reports_taken_while_postgres_is_down_are_recorded_once_when_it_returns() {
    let mut pg = PostgresServer::start().await;
    let mut config = on_postgres(test_config(&redis_default()), &pg);
    config.database_acquire_timeout_ms = 10_000;
    config.spool.write_timeout_ms = 1_000;
    let app = spawn_app_with(config.clone()).await;
    let mut stream = app.watch("sw-1").await;
    let call = app.answered_call(CLEAN, "sw-1", "op-1").await;
    let other = app.answered_call(BLOCKED, "sw-1", "op-2").await;

    pg.stop();
    until_postgres_is_known_down(&app).await;
    let request = end_and_flag_request(&call, "op-1");
    let first = app.end_and_flag(request.clone()).await.unwrap();
    assert!(first.terminate_sent && first.spooled, "{first:?}");
    assert!(first.cooldown_until.is_some());
    let command = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (command.call_id.as_str(), command.kind()),
        (call.as_str(), CommandKind::Terminate)
    );
    // The console retries (it never saw the answer): the same report, the same incident.
    let again = app.end_and_flag(request.clone()).await.unwrap();
    assert_eq!(again.incident_id, first.incident_id);
    let flagged = app
        .console
        .clone()
        .flag_call(flag_request(&other, "op-2"))
        .await
        .unwrap()
        .into_inner();
    assert!(flagged.spooled);
    // The switch reports the end; the call history misses it, the switch is not refused.
    app.call_event(&call, CallEventKind::Ended, "op-1")
        .await
        .unwrap();
    assert_eq!(spool_entries(&config), 2);

    pg.restart().await;
    eventually("the spooled reports are recorded", || async {
        incidents_by_request(&config.database_url)
            .await
            .is_some_and(|r| r.len() == 2)
    })
    .await;
    let recorded = incidents_by_request(&config.database_url)
        .await
        .expect("the record reads");
    assert_eq!(
        recorded[&request.request_id],
        std::slice::from_ref(&first.incident_id)
    );
    assert_eq!(
        recorded.values().map(Vec::len).sum::<usize>(),
        2,
        "{recorded:?}"
    );
    assert!(
        recorded
            .values()
            .flatten()
            .any(|id| *id == flagged.incident_id)
    );
    eventually("the spool is empty", || async {
        spool_entries(&config) == 0
    })
    .await;
    // The incident is what it would have been: the terminate first in its chain, which holds.
    let pool = sqlx::PgPool::connect(&config.database_url).await.unwrap();
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM incident_events WHERE incident_id = $1::uuid ORDER BY seq",
    )
    .bind(&first.incident_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        kinds[..3],
        ["reported", "terminate_sent", "operator_cooldown"]
    );
    assert!(
        callwarden_storage::incidents::verify(&pool)
            .await
            .unwrap()
            .is_ok()
    );
    // And a retry now finds it recorded.
    let replay = app.end_and_flag(request).await.unwrap();
    assert_eq!(
        (replay.incident_id.as_str(), replay.spooled),
        (first.incident_id.as_str(), false)
    );
}

/// A call from `caller` answered by `operator`; then Postgres stops, and the operator presses
/// the button: the report is spooled.
async fn report_while_postgres_is_down(
    app: &TestApp,
    pg: &mut PostgresServer,
    caller: &str,
    operator: &str,
) -> EndAndFlagResponse {
    let call = app.answered_call(caller, "sw-1", operator).await;
    pg.stop();
    until_postgres_is_known_down(app).await;
    let reply = app
        .end_and_flag(end_and_flag_request(&call, operator))
        .await
        .unwrap();
    assert!(reply.spooled, "{reply:?}");
    reply
}

#[tokio::test]
async fn the_spool_outlives_a_stop_and_is_flushed_on_the_way_out() {
    let mut pg = PostgresServer::start().await;
    let mut config = on_postgres(test_config(&redis_default()), &pg);
    config.spool.write_timeout_ms = 1_000;
    // Only start-up and shutdown drain the spool in this test.
    config.spool.drain_interval_ms = 3_600_000;
    let app = spawn_app_with(config.clone()).await;
    let kept = report_while_postgres_is_down(&app, &mut pg, CLEAN, "op-1").await;
    // Stopped while Postgres is away: the report stays on disk.
    let mut app = app;
    app.keep_spool();
    app.stop().await.unwrap();
    assert_eq!(spool_entries(&config), 1);

    pg.restart().await;
    // The next start records it (the drainer's first pass).
    let app = spawn_app_with(config.clone()).await;
    eventually("the report kept across the restart is recorded", || async {
        incidents_by_request(&config.database_url)
            .await
            .unwrap_or_default()
            .values()
            .flatten()
            .any(|id| *id == kept.incident_id)
    })
    .await;
    // Removed from the spool once recorded (just after the commit the probe above may see).
    eventually("the spool is empty", || async {
        spool_entries(&config) == 0
    })
    .await;

    // Spooled, then Postgres returns and the replica is stopped before its drainer runs:
    // the shutdown flushes the spool.
    let flushed = report_while_postgres_is_down(&app, &mut pg, BLOCKED, "op-2").await;
    pg.restart().await;
    app.stop().await.unwrap();
    assert_eq!(spool_entries(&config), 0);
    let recorded = incidents_by_request(&config.database_url)
        .await
        .expect("the record reads");
    assert!(
        recorded
            .values()
            .flatten()
            .any(|id| *id == flushed.incident_id)
    );
    assert_eq!(recorded.len(), 2);
}

/// One replica as a process of its own, so that it can be killed.
struct Replica {
    child: Child,
    screening: ScreeningClient<Conn>,
    console: ConsoleClient<Conn>,
}

impl Replica {
    async fn start(config: &Config) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_callwarden-replica"))
            .env(
                "CALLWARDEN_REPLICA_CONFIG",
                serde_json::to_string(config).unwrap(),
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the replica starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the address line, then keeps draining, so logging never blocks the replica.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addrs) = line.strip_prefix("listening ") {
                    let _ = tx.send(addrs.to_owned());
                }
            }
        });
        let addrs = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("the replica listens");
        let grpc: SocketAddr = addrs.split(' ').next().unwrap().parse().unwrap();
        let channel = Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let conn = with_token(&channel, &token(Role::Admin, TEST_ADMIN));
        Self {
            child,
            screening: ScreeningClient::new(conn.clone()),
            console: ConsoleClient::new(conn),
        }
    }

    /// SIGKILL: no drain, no flush, as a crash or an OOM kill.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

type Replicas = Arc<Mutex<Vec<Option<(ScreeningClient<Conn>, ConsoleClient<Conn>)>>>>;

/// What the load saw.
#[derive(Default)]
struct Tally {
    checks: AtomicU64,
    degraded: AtomicU64,
    by_policy: AtomicU64,
    /// Sent to a replica that was killed, and answered by the other.
    rerouted: AtomicU64,
    slowest_ms: AtomicU64,
    /// (request id, incident id) of every report the console was told is saved.
    acknowledged: Mutex<Vec<(String, String)>>,
    spooled: AtomicU64,
    /// Answers that broke the policy, described.
    wrong: Mutex<Vec<String>>,
}

fn pick(replicas: &Replicas, n: u64) -> Vec<(ScreeningClient<Conn>, ConsoleClient<Conn>)> {
    let alive: Vec<_> = replicas.lock().unwrap().iter().flatten().cloned().collect();
    let k = alive.len().max(1);
    let first = n as usize % k;
    alive[first..]
        .iter()
        .chain(&alive[..first])
        .cloned()
        .collect()
}

/// What a check may answer for `caller` on `line` by the rules and the line's failure policy.
fn allowed_reasons(caller: &str, line: &str) -> [&'static str; 2] {
    let failure = if line == PL_LINE {
        "fail_closed"
    } else {
        "fail_open"
    };
    if caller == BLOCKED {
        ["blocked", failure]
    } else {
        ["no_rule", failure]
    }
}

async fn check_load(replicas: Replicas, tally: Arc<Tally>, stop: Arc<AtomicBool>, worker: u64) {
    let mut n = worker;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let caller = if n.is_multiple_of(3) { BLOCKED } else { CLEAN };
        let line = if n.is_multiple_of(2) {
            PL_LINE
        } else {
            GB_LINE
        };
        let mut answered = None;
        for (i, (screening, _)) in pick(&replicas, n).into_iter().enumerate() {
            let started = Instant::now();
            let reply = screening
                .clone()
                .check_call(CheckCallRequest {
                    call_id: format!("load-{worker}-{n}"),
                    caller: caller.into(),
                    line: line.into(),
                    switch_id: "sw-load".into(),
                    operator_id: String::new(),
                })
                .await;
            match reply {
                Ok(r) => {
                    if i > 0 {
                        tally.rerouted.fetch_add(1, Ordering::Relaxed);
                    }
                    answered = Some((r.into_inner(), started.elapsed()));
                    break;
                }
                // The replica is gone (killed): the load balancer sends the call elsewhere.
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable | Code::Unknown | Code::Cancelled
                    ) =>
                {
                    continue;
                }
                Err(s) => {
                    tally.wrong.lock().unwrap().push(format!("{caller}: {s}"));
                    break;
                }
            }
        }
        let Some((r, took)) = answered else {
            continue;
        };
        tally.checks.fetch_add(1, Ordering::Relaxed);
        tally
            .slowest_ms
            .fetch_max(took.as_millis() as u64, Ordering::Relaxed);
        if r.degraded {
            tally.degraded.fetch_add(1, Ordering::Relaxed);
        }
        if r.reason.starts_with("fail_") {
            tally.by_policy.fetch_add(1, Ordering::Relaxed);
        }
        if !allowed_reasons(caller, line).contains(&r.reason.as_str()) || took >= WAITED_ON_REDIS {
            tally
                .wrong
                .lock()
                .unwrap()
                .push(format!("{caller} on {line}: {} in {took:?}", r.reason));
        }
    }
}

/// A call checked, answered and reported (EndAndFlag) every few milliseconds, each by a
/// different caller, through whichever replica is alive.
async fn report_load(replicas: Replicas, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
        let Some((screening, console)) = pick(&replicas, n).into_iter().next() else {
            continue;
        };
        let call_id = format!("reported-{n}-{}", Uuid::new_v4().simple());
        let caller = format!("+4860200{:04}", n % 10_000);
        let checked = screening
            .clone()
            .check_call(CheckCallRequest {
                call_id: call_id.clone(),
                caller,
                line: GB_LINE.into(),
                switch_id: "sw-load".into(),
                operator_id: String::new(),
            })
            .await;
        if checked.is_err() {
            continue;
        }
        let operator = format!("op-{}", n % 50);
        let answered = screening
            .clone()
            .report_call_event(ReportCallEventRequest {
                call_id: call_id.clone(),
                kind: CallEventKind::Answered.into(),
                operator_id: operator.clone(),
            })
            .await;
        // Not registered (a check answered while Redis was away): nothing to report.
        if answered.is_err() {
            continue;
        }
        let request = end_and_flag_request(&call_id, &operator);
        if let Ok(reply) = console.clone().end_and_flag(request.clone()).await {
            let reply = reply.into_inner();
            if reply.spooled {
                tally.spooled.fetch_add(1, Ordering::Relaxed);
            }
            tally
                .acknowledged
                .lock()
                .unwrap()
                .push((request.request_id, reply.incident_id));
        }
    }
}

/// Time until `probe` holds, polling (at most `bound`).
async fn recovery<F, Fut>(what: &str, bound: Duration, mut probe: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < bound {
        if probe().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not recovered within {bound:?}");
}

async fn whole_answer(replicas: &Replicas) -> bool {
    let clients = pick(replicas, 0);
    for (screening, _) in clients {
        let r = screening
            .clone()
            .check_call(CheckCallRequest {
                call_id: Uuid::new_v4().to_string(),
                caller: BLOCKED.into(),
                line: GB_LINE.into(),
                switch_id: "sw-probe".into(),
                operator_id: String::new(),
            })
            .await;
        match r {
            Ok(r) if !r.get_ref().degraded && r.get_ref().reason == "blocked" => {}
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn under_steady_load_no_report_is_lost_and_every_check_is_answered_by_the_policy() {
    let mut redis = RedisServer::start().await;
    let mut pg = PostgresServer::start().await;
    let mut config = pl_fails_closed(on_postgres(test_config(&redis.url()), &pg));
    config.check_budget_ms = 200;
    config.redis_timeout_ms = 10_000;
    config.spool.write_timeout_ms = 1_000;
    config.log_filter = "warn".into();
    let base = spawn_app_with(config.clone()).await;
    base.add(rule(BLOCKED)).await;
    // Each replica its own spool, as each machine its own disk.
    let mut second_config = config.clone();
    second_config.spool.dir = config.spool.dir.with_extension("second");
    let one = Replica::start(&config).await;
    let mut two = Replica::start(&second_config).await;
    let replicas: Replicas = Arc::new(Mutex::new(vec![
        Some((one.screening.clone(), one.console.clone())),
        Some((two.screening.clone(), two.console.clone())),
    ]));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        load.push(tokio::spawn(check_load(
            replicas.clone(),
            tally.clone(),
            stop.clone(),
            worker * 1_000_000,
        )));
    }
    load.push(tokio::spawn(report_load(
        replicas.clone(),
        tally.clone(),
        stop.clone(),
    )));
    let steady = Duration::from_secs(2);
    tokio::time::sleep(steady).await;

    // Redis hangs, then answers again.
    redis.pause();
    tokio::time::sleep(steady).await;
    redis.resume();
    let after_hang = recovery("Redis hung", Duration::from_secs(20), || {
        whole_answer(&replicas)
    })
    .await;

    // Redis dies and comes back empty: the index is rebuilt from Postgres.
    redis.stop();
    tokio::time::sleep(steady).await;
    redis.restart().await;
    let after_loss = recovery("Redis lost", Duration::from_secs(30), || {
        whole_answer(&replicas)
    })
    .await;

    // Postgres stops; the second replica is killed while it holds spooled reports.
    pg.stop();
    tokio::time::sleep(steady * 2).await;
    replicas.lock().unwrap()[1] = None;
    two.kill();
    tokio::time::sleep(steady).await;
    pg.restart().await;
    let drained = recovery(
        "the live replica's spool drained",
        Duration::from_secs(30),
        || async { spool_entries(&config) == 0 },
    )
    .await;
    // The killed replica is replaced (same disk, same spool), as an orchestrator would.
    let restarted = Instant::now();
    let two = Replica::start(&second_config).await;
    replicas.lock().unwrap()[1] = Some((two.screening.clone(), two.console.clone()));
    let replaced = recovery(
        "the replaced replica's spool drained",
        Duration::from_secs(60),
        || async { spool_entries(&second_config) == 0 },
    )
    .await
    .max(restarted.elapsed());
    tokio::time::sleep(steady).await;

    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let acknowledged = tally.acknowledged.lock().unwrap().clone();
    let expected: HashMap<&str, &str> = acknowledged
        .iter()
        .map(|(r, i)| (r.as_str(), i.as_str()))
        .collect();
    recovery(
        "every acknowledged report recorded",
        Duration::from_secs(30),
        || async {
            let recorded = incidents_by_request(&config.database_url)
                .await
                .unwrap_or_default();
            expected
                .iter()
                .all(|(r, i)| recorded.get(*r).is_some_and(|ids| *ids == [i.to_string()]))
        },
    )
    .await;
    let recorded = incidents_by_request(&config.database_url)
        .await
        .expect("the record reads");
    let duplicates: Vec<_> = recorded.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(duplicates.is_empty(), "recorded twice: {duplicates:?}");
    let lost: Vec<_> = expected
        .iter()
        .filter(|(r, _)| !recorded.contains_key(**r))
        .collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    // Each entry is removed just after its commit, which the probe above may see first.
    eventually("both spools are empty", || async {
        spool_entries(&config) + spool_entries(&second_config) == 0
    })
    .await;
    let wrong = tally.wrong.lock().unwrap().clone();
    assert!(wrong.is_empty(), "answers against the policy: {wrong:?}");
    let spooled = tally.spooled.load(Ordering::Relaxed);
    assert!(spooled > 0, "no report was taken while Postgres was down");
    let checks = tally.checks.load(Ordering::Relaxed);
    let degraded = tally.degraded.load(Ordering::Relaxed);
    assert!(degraded > 0 && degraded < checks);
    let distinct: HashSet<&str> = expected.values().copied().collect();
    assert_eq!(distinct.len(), expected.len(), "one incident per report");
    println!(
        "failure suite: {checks} checks answered ({degraded} degraded, {} by the failure policy, \
         {} rerouted from the killed replica), slowest {} ms (budget {} ms); {} reports \
         acknowledged ({spooled} spooled), 0 lost, 0 duplicated; whole answers again {} ms after \
         Redis hung, {} ms after Redis came back empty; spool drained {} ms after Postgres \
         returned, the killed replica's {} ms after its replacement started",
        tally.by_policy.load(Ordering::Relaxed),
        tally.rerouted.load(Ordering::Relaxed),
        tally.slowest_ms.load(Ordering::Relaxed),
        config.check_budget_ms,
        expected.len(),
        after_hang.as_millis(),
        after_loss.as_millis(),
        drained.as_millis(),
        replaced.as_millis(),
    );
    drop((one, two, base));
    let _ = std::fs::remove_dir_all(&second_config.spool.dir);
}

/// A Redis process of this test's own (a data node or a Sentinel), killed when dropped.
struct RedisProcess {
    port: u16,
    child: Child,
    /// Its working directory: a replica's full sync writes an RDB file there.
    dir: std::path::PathBuf,
}

impl RedisProcess {
    async fn start(args: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cw-redis-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(args)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let process = Self { port, child, dir };
        eventually("the Redis process answers", || async {
            process.cli(&["PING"]).await.as_deref() == Some("PONG")
        })
        .await;
        process
    }

    async fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn with_sentinel_the_service_follows_a_failover_to_the_new_primary() {
    let primary = RedisProcess::start(&["--save", "", "--appendonly", "no"]).await;
    let replica = RedisProcess::start(&[
        "--save",
        "",
        "--appendonly",
        "no",
        "--replicaof",
        "127.0.0.1",
        &primary.port.to_string(),
    ])
    .await;
    // A Sentinel rewrites its configuration file: it gets one of its own.
    let dir = std::env::temp_dir().join(format!("cw-sentinel-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "sentinel monitor cw 127.0.0.1 {} 1\nsentinel down-after-milliseconds cw 1000\n\
             sentinel failover-timeout cw 5000\n",
            primary.port
        ),
    )
    .unwrap();
    let sentinel = RedisProcess::start(&[conf.to_str().unwrap(), "--sentinel"]).await;

    let mut config = test_config(&format!("redis://127.0.0.1:{}", primary.port));
    config.redis_sentinel.sentinels = vec![format!("redis://127.0.0.1:{}", sentinel.port)];
    config.redis_sentinel.master_name = "cw".into();
    let app = spawn_app_with(config).await;
    app.add(rule(BLOCKED)).await;
    eventually("the index answers", || async {
        let r = app.check(BLOCKED, GB_LINE).await;
        r.reason == "blocked" && !r.degraded
    })
    .await;
    eventually("the replica has the index", || async {
        replica.cli(&["DBSIZE"]).await.is_some_and(|n| n != "0")
    })
    .await;

    // The replica becomes the primary; the old primary is made its replica and refuses writes.
    assert_eq!(
        sentinel
            .cli(&["SENTINEL", "FAILOVER", "cw"])
            .await
            .as_deref(),
        Some("OK")
    );
    eventually("the old primary is a replica", || async {
        primary
            .cli(&["ROLE"])
            .await
            .is_some_and(|r| r.starts_with("slave"))
    })
    .await;
    // A check (its registration is a write) finds out, and the connection moves.
    eventually("checks are whole again, on the new primary", || async {
        let r = app.check(CLEAN, GB_LINE).await;
        r.reason == "no_rule" && !r.degraded
    })
    .await;
    // A rule added now reaches the new primary's index.
    app.add(rule(CLEAN)).await;
    assert_eq!(app.check(CLEAN, GB_LINE).await.reason, "blocked");
    let slot = app.slot_key(CLEAN);
    eventually("the new rule is on the new primary", || async {
        replica.cli(&["EXISTS", &slot]).await.as_deref() == Some("1")
    })
    .await;
    assert!(
        metrics(&app)
            .await
            .contains("callwarden_redis_primary_changes_total")
    );
    let _ = std::fs::remove_dir_all(dir);
}
