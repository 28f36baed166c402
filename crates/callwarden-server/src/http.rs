//! The HTTP side: liveness, readiness (for load balancers and Kubernetes) and Prometheus metrics.

use crate::health::PostgresHealth;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use callwarden_storage::RedisConn;
use metrics_exporter_prometheus::PrometheusHandle;
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// How long readiness waits for Redis to answer PING.
const REDIS_PING_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct HttpState {
    /// Postgres as the probe last found it: readiness must answer quickly whatever it does.
    pub postgres: Arc<PostgresHealth>,
    pub redis: RedisConn,
    pub metrics: PrometheusHandle,
    /// Cancelled when shutdown starts, so readiness fails and load balancers stop sending.
    pub shutdown: CancellationToken,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready while the process can answer checks: not shutting down, and at least one store answers
/// (checks read Redis and fall back to Postgres). Failing readiness for a Redis outage alone
/// would take every replica out of the load balancer at once, fallback and all.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_owned(),
        );
    }
    let postgres = state.postgres.is_up();
    let mut conn = state.redis.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    let redis = matches!(
        tokio::time::timeout(REDIS_PING_TIMEOUT, ping).await,
        Ok(Ok(_))
    );
    let status = if postgres || redis {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok| if ok { "ok" } else { "unavailable" };
    (
        status,
        format!("postgres: {}\nredis: {}\n", word(postgres), word(redis)),
    )
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
