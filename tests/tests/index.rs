//! The Redis index: one round trip per check, rebuilt from Postgres when Redis loses it, and
//! correct answers (from Postgres) while it is gone.

use callwarden_proto::v1::AddRuleRequest;
use callwarden_proto::v1::Decision;
use callwarden_tests::*;

async fn ready(app: &TestApp) -> bool {
    app.index_keys()
        .await
        .iter()
        .any(|k| k.ends_with(":meta:ready"))
}

/// Counts, per Redis command, the calls since the last CONFIG RESETSTAT, and the socket reads
/// Redis processed (one per round trip for small requests).
async fn redis_stats(conn: &mut redis::aio::MultiplexedConnection) -> (Vec<(String, u64)>, u64) {
    let text: String = redis::cmd("INFO")
        .arg("everything")
        .query_async(conn)
        .await
        .unwrap();
    let commands = text
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .map(|l| {
            let (name, rest) = l.split_once(':').unwrap();
            let calls = rest
                .strip_prefix("calls=")
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            (name.to_owned(), calls.parse().unwrap())
        })
        .collect();
    let reads = text
        .lines()
        .find_map(|l| l.strip_prefix("total_reads_processed:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (commands, reads)
}

#[tokio::test]
async fn a_check_is_one_redis_round_trip_whatever_the_prefixes_and_scopes() {
    let redis = RedisServer::start().await;
    let mut config = test_config(&redis.url());
    // Keep the maintenance loop quiet while Redis is watched (it runs once at start-up).
    config.index_check_interval_ms = 3_600_000;
    let app = spawn_app_with(config).await;
    app.add(rule("+48*")).await;
    app.add(rule("+4860*")).await;
    app.add(on_line(allow("+486012*"), PL_LINE)).await;
    app.add(rule("+48601234567")).await;
    app.add(for_operator(rule("+48601234567"), "op-1")).await;
    eventually("the index is ready", || ready(&app)).await;
    let mut conn = app.redis.clone();
    // Let the start-up maintenance pass finish before counting.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let checks = [
        ("+48601234567", ""),
        ("+48601299999", "op-1"),
        ("+48700000000", ""),
        ("anonymous", "op-2"),
    ];
    for (caller, operator) in checks {
        let request = callwarden_proto::v1::CheckCallRequest {
            call_id: uuid::Uuid::new_v4().to_string(),
            caller: caller.into(),
            line: PL_LINE.into(),
            switch_id: "sw-1".into(),
            operator_id: operator.into(),
        };
        app.screening.clone().check_call(request).await.unwrap();
    }
    let (commands, reads) = redis_stats(&mut conn).await;
    // Each check: one MGET (rules, recent incidents, cooldown) and the call's registration
    // (HSET, PEXPIRE), sent together; nothing else.
    let expected = [("hset", 4), ("mget", 4), ("pexpire", 4)];
    let mut seen: Vec<(String, u64)> = commands
        .into_iter()
        .filter(|(name, _)| !["config|resetstat", "info"].contains(&name.as_str()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        expected.map(|(n, c)| (n.to_owned(), c)).to_vec(),
        "commands per check"
    );
    // Four round trips, plus the one that asked for these figures.
    assert_eq!(reads, 4 + 1, "socket reads");
}

#[tokio::test]
async fn the_index_is_rebuilt_after_it_is_flushed_and_checks_stay_right_meanwhile() {
    let app = spawn_app().await;
    let blocked = app.add(rule("+48601234567")).await;
    app.add(rule("+4870012*")).await;
    app.add(allow("+48700123456")).await;
    let removed = app.add(rule("+48609999999")).await;
    app.remove(&removed.id, "").await.unwrap();
    eventually("the index is ready", || ready(&app)).await;

    // Lose every key of this deployment, as a Redis restart without persistence would.
    let keys = app.index_keys().await;
    assert!(keys.len() >= 4, "{keys:?}");
    redis::cmd("DEL")
        .arg(&keys)
        .query_async::<()>(&mut app.redis.clone())
        .await
        .unwrap();

    // Right answers straight away (from Postgres while the index is missing) ...
    let r = app.check("+48601234567", PL_LINE).await;
    assert_eq!(
        (r.decision(), r.rule_id.as_str()),
        (Decision::Reject, blocked.id.as_str())
    );
    assert_eq!(
        app.check("+48700129999", PL_LINE).await.reason,
        "prefix_blocked"
    );
    assert_eq!(
        app.check("+48700123456", PL_LINE).await.reason,
        "allowed_by_rule"
    );
    assert_eq!(app.check("+48609999999", PL_LINE).await.reason, "no_rule");

    // ... and the index comes back with exactly the active rules.
    eventually("the index is rebuilt", || ready(&app)).await;
    let slots = |keys: Vec<String>| -> Vec<String> {
        keys.into_iter().filter(|k| k.contains(":r:")).collect()
    };
    let mut rebuilt = slots(app.index_keys().await);
    rebuilt.sort();
    let mut expected = slots(keys);
    assert_eq!(expected.len(), 3, "{expected:?}");
    expected.sort();
    assert_eq!(rebuilt, expected);
    let r = app.check("+48601234567", OTHER_LINE).await;
    assert_eq!(
        (r.decision(), r.reason.as_str()),
        (Decision::Reject, "blocked")
    );
}

#[tokio::test]
async fn a_redis_restart_that_loses_everything_heals_on_its_own() {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(test_config(&redis.url())).await;
    let rules: Vec<_> = (0..2000)
        .map(|i| rule(&format!("+48601{:06}", i)))
        .collect();
    app.blocklist
        .clone()
        .import_rules(tokio_stream::iter(rules))
        .await
        .unwrap();
    eventually("the index is ready", || ready(&app)).await;

    redis.restart().await;
    // The service reconnects by itself; the first answers may come from Postgres.
    eventually("checks answer again", || async {
        matches!(app.try_check("+48601001999", PL_LINE).await, Ok(r) if r.reason == "blocked")
    })
    .await;
    let mut fresh = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let prefix = app.config.redis_key_prefix.clone();
    eventually("the index is rebuilt in the new Redis", || {
        let mut conn = fresh.clone();
        let prefix = prefix.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}:*"))
                .query_async(&mut conn)
                .await
                .unwrap();
            keys.iter().any(|k| k.ends_with(":meta:ready"))
                && keys.iter().filter(|k| k.contains(":r:")).count() == 2000
        }
    })
    .await;
    assert_eq!(app.check("+48601000000", PL_LINE).await.reason, "blocked");
    assert_eq!(app.check("+48601002000", PL_LINE).await.reason, "no_rule");
    let _: () = redis::cmd("PING").query_async(&mut fresh).await.unwrap();
}

#[tokio::test]
async fn while_redis_is_down_checks_answer_from_postgres_and_writes_catch_up() {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(test_config(&redis.url())).await;
    app.add(rule("+48601234567")).await;
    eventually("the index is ready", || ready(&app)).await;

    redis.stop();
    let r = app.check("+48601234567", PL_LINE).await;
    assert_eq!(r.reason, "blocked");
    // A rule added now is on record at once, and checks see it through Postgres.
    app.add(rule("+48601234568")).await;
    assert_eq!(app.check("+48601234568", PL_LINE).await.reason, "blocked");

    redis.restart().await;
    eventually("the new rule reaches the rebuilt index", || async {
        let mut conn = match redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
        {
            Ok(c) => c,
            Err(_) => return false,
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", app.config.redis_key_prefix))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        keys.iter().any(|k| k.ends_with(":meta:ready"))
            && keys.contains(&app.slot_key("+48601234568"))
    })
    .await;
}

#[tokio::test]
async fn concurrent_writers_of_one_slot_leave_the_index_with_every_rule() {
    let app = spawn_app().await;
    // Ten temporary blocks of one number at once: the slot must end with the longest-lived.
    let adds = (1..=10u32).map(|i| {
        let app = &app;
        async move {
            app.add(AddRuleRequest {
                ttl_seconds: i * 1000,
                ..rule("+48601234567")
            })
            .await
        }
    });
    futures::future::join_all(adds).await;
    let pttl = app.slot_pttl("+48601234567").await;
    assert!(
        pttl > 9_000_000,
        "the index kept a shorter block: pttl {pttl}"
    );
}

#[tokio::test]
async fn rules_added_while_an_import_is_indexed_are_not_lost() {
    let app = spawn_app().await;
    let imported: Vec<AddRuleRequest> = (0..6000).map(|i| rule(&format!("+48601{i:06}"))).collect();
    let import = {
        let mut client = app.blocklist.clone();
        async move {
            client
                .import_rules(tokio_stream::iter(imported))
                .await
                .unwrap()
        }
    };
    // Partners on the same numbers, added one by one while the import runs and is indexed.
    let partners = async {
        for i in (0..6000).step_by(300) {
            app.add(allow(&format!("+48601{i:06}"))).await;
        }
    };
    tokio::join!(import, partners);
    for i in (0..6000).step_by(300) {
        let r = app.check(&format!("+48601{i:06}"), PL_LINE).await;
        assert_eq!(r.reason, "allowed_by_rule", "+48601{i:06}");
    }
    assert_eq!(app.check("+48601000001", PL_LINE).await.reason, "blocked");
}

#[tokio::test]
async fn only_the_holder_of_the_rebuild_lock_rebuilds() {
    let app = spawn_app().await;
    app.add(rule("+48601234567")).await;
    eventually("the index is ready", || ready(&app)).await;
    let prefix = app.config.redis_key_prefix.clone();
    let mut conn = app.redis.clone();

    // Another replica holds the lock and is (say) rebuilding.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:meta:rebuild-lock"))
        .arg("another-replica")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:meta:ready"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for _ in 0..10 {
        assert_eq!(app.check("+48601234567", PL_LINE).await.reason, "blocked");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert!(
        !ready(&app).await,
        "rebuilt although another replica held the lock"
    );

    // The other replica went away: its lock is released (or expires), and this one rebuilds.
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:meta:rebuild-lock"))
        .query_async(&mut conn)
        .await
        .unwrap();
    eventually("the index is rebuilt", || ready(&app)).await;
    assert_eq!(app.check("+48601234567", PL_LINE).await.reason, "blocked");
}
