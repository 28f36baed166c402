//! What operators of the service rely on: gRPC health and reflection, the HTTP side, metrics,
//! clear start-up errors, and a graceful stop.

use callwarden_tests::*;
use tokio_stream::StreamExt;

#[tokio::test]
async fn reflection_lists_every_service_in_both_versions() {
    let app = spawn_app().await;
    let want = [
        "callwarden.v1.BlockList",
        "callwarden.v1.Screening",
        "grpc.health.v1.Health",
    ];
    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            replies.next().await.unwrap().unwrap().message_response
        else {
            panic!("not a service list")
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for name in want {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "callwarden.v1.Screening".into(),
            )),
        };
        let mut replies = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            replies.next().await.unwrap().unwrap().message_response
        else {
            panic!("no descriptor")
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
}

#[tokio::test]
async fn health_reports_each_service_serving() {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", "callwarden.v1.Screening", "callwarden.v1.BlockList"] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
}

#[tokio::test]
async fn http_side_serves_liveness_readiness_and_metrics() {
    let app = spawn_app().await;
    assert_eq!(http_get(app.http_addr, "/healthz").await.0, 200);
    let (status, body) = http_get(app.http_addr, "/readyz").await;
    assert_eq!((status, body.as_str()), (200, "postgres: ok\nredis: ok\n"));

    app.add(rule("+48601234567")).await;
    app.check("+48601234567", PL_LINE).await;
    app.check("+48601234568", PL_LINE).await;
    let _ = app.try_check("garbage", PL_LINE).await;
    // The gauges are recounted by the maintenance loop (at start-up, then every 15 s), which
    // may not have run its first round yet.
    eventually("the rules gauge is published", || async {
        http_get(app.http_addr, "/metrics")
            .await
            .1
            .contains("callwarden_rules{")
    })
    .await;
    let (status, metrics) = http_get(app.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "callwarden_checks_total{decision=\"DECISION_REJECT\",reason=\"blocked\"}",
        "callwarden_checks_total{decision=\"DECISION_ALLOW\",reason=\"no_rule\"}",
        "callwarden_check_duration_seconds_bucket{le=\"0.005\"}",
        "callwarden_rules{effect=\"block\"}",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    assert_eq!(http_get(app.http_addr, "/nope").await.0, 404);
}

#[tokio::test]
async fn readiness_holds_while_redis_is_down_because_checks_fall_back() {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(test_config(&redis.url())).await;
    redis.stop();
    let (status, body) = http_get(app.http_addr, "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (200, "postgres: ok\nredis: unavailable\n")
    );
}

#[tokio::test]
async fn unreachable_stores_at_start_up_name_the_url_and_the_variable() {
    let mut config = test_config("redis://127.0.0.1:1");
    let err = callwarden_server::startup::Application::build(config.clone())
        .await
        .err()
        .expect("no Redis, no start")
        .to_string();
    assert!(
        err.contains("redis://127.0.0.1:1") && err.contains("CALLWARDEN_REDIS_URL"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let leftover: Option<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname = $1")
            .bind(config.database_url.rsplit('/').next().unwrap())
            .fetch_optional(
                &sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres")
                    .await
                    .unwrap(),
            )
            .await
            .unwrap();
    assert_eq!(leftover, None, "a failed start-up created its database");

    config.redis_url = "redis://127.0.0.1:6379".into();
    config.database_url = "postgres://nobody:secret@127.0.0.1:1/callwarden".into();
    let err = callwarden_server::startup::Application::build(config)
        .await
        .err()
        .expect("no Postgres, no start")
        .to_string();
    assert!(
        err.contains("127.0.0.1:1") && err.contains("CALLWARDEN_DATABASE_URL"),
        "{err}"
    );
    assert!(!err.contains("secret"), "the password leaked: {err}");
}

#[tokio::test]
async fn a_missing_database_is_created_and_migrated() {
    let config = test_config("redis://127.0.0.1:6379");
    let app = spawn_app_with(config).await;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'rules'",
    )
    .fetch_one(&app.pg)
    .await
    .unwrap();
    assert_eq!(tables, 1);
}

#[tokio::test]
async fn stopping_finishes_cleanly() {
    let app = spawn_app().await;
    app.check("+48601234567", PL_LINE).await;
    let http = app.http_addr;
    let grpc = app.grpc_addr;
    app.stop().await.expect("a clean stop");
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "http still listening"
    );
    assert!(
        tokio::net::TcpStream::connect(grpc).await.is_err(),
        "grpc still listening"
    );
}
