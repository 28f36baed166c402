//! Logs (tracing, plain or JSON) and the Prometheus metrics recorder.

use crate::config::{Config, LogFormat};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log_filter`.
pub fn init_tracing(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let registry = tracing_subscriber::registry().with(filter);
    match config.log_format {
        LogFormat::Plain => registry.with(fmt::layer()).init(),
        LogFormat::Json => registry.with(fmt::layer().json()).init(),
    }
}

/// Latency buckets (seconds) for the check and button histograms: each is meant to take about
/// a millisecond, and a switch (or an operator) is failed after tens.
const CHECK_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5,
];

/// The process-wide Prometheus recorder; installed on first use (several applications in one
/// test process share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("callwarden_check_duration_seconds".into()),
                    CHECK_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("callwarden_button_to_command_seconds".into()),
                        CHECK_BUCKETS,
                    )
                })
                .expect("buckets are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("no other metrics recorder");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "callwarden_checks_total",
        "CheckCall answers by decision and reason"
    );
    describe_histogram!(
        "callwarden_check_duration_seconds",
        Unit::Seconds,
        "CheckCall latency inside the service"
    );
    describe_counter!(
        "callwarden_redis_errors_total",
        "Redis operations that failed, by operation (lookup, write, maintain)"
    );
    describe_counter!(
        "callwarden_index_fallbacks_total",
        "Checks answered from Postgres because the Redis index was unavailable or not built"
    );
    describe_counter!(
        "callwarden_index_rebuilds_total",
        "Rebuilds of the Redis index from Postgres"
    );
    describe_gauge!("callwarden_rules", "Active rules by effect");
    describe_histogram!(
        "callwarden_button_to_command_seconds",
        Unit::Seconds,
        "EndAndFlag received until its TERMINATE is queued and published to the switch"
    );
    describe_counter!(
        "callwarden_incidents_total",
        "Incidents recorded, by category and severity"
    );
    describe_gauge!(
        "callwarden_commands_pending",
        "Commands issued to switches and not acknowledged yet (all replicas)"
    );
    describe_counter!(
        "callwarden_commands_redelivered_total",
        "Commands sent again to a switch that had not acknowledged them"
    );
    describe_counter!(
        "callwarden_commands_acked_total",
        "Commands acknowledged by switches, by kind"
    );
    describe_gauge!(
        "callwarden_command_streams_open",
        "Switch command streams open on this replica"
    );
}
