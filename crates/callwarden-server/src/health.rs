//! Whether Postgres answers, as this replica last saw it: requests that need the record (review,
//! the block list) answer UNAVAILABLE at once while it is away instead of each waiting out a
//! connection timeout, and reports go straight to the spool.

use sqlx::PgPool;
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// How long the probe waits for `SELECT 1`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct PostgresHealth {
    up: AtomicBool,
}

impl Default for PostgresHealth {
    fn default() -> Self {
        // Start-up has just reached it and applied the migrations.
        Self {
            up: AtomicBool::new(true),
        }
    }
}

impl PostgresHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A request found Postgres unreachable: others need not wait to find out. The probe says
    /// when it is back.
    pub fn failed(&self) {
        self.set(false);
    }

    fn set(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            metrics::gauge!("callwarden_postgres_up").set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!("Postgres answers again");
            } else {
                tracing::error!(
                    "Postgres is unavailable: review answers UNAVAILABLE, reports are spooled"
                );
            }
        }
    }

    /// Probes Postgres every `every` until shutdown.
    pub async fn watch(&self, pg: PgPool, every: Duration, shutdown: CancellationToken) {
        metrics::gauge!("callwarden_postgres_up").set(if self.is_up() { 1.0 } else { 0.0 });
        periodically(every, &shutdown, || async {
            let probe = tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&pg));
            self.set(matches!(probe.await, Ok(Ok(_))));
        })
        .await;
    }
}

/// Runs `pass` every `period`, the first at once, until `shutdown`; a pass that overruns its
/// period delays the next rather than bunching them.
pub async fn periodically<F, Fut>(period: Duration, shutdown: &CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        pass().await;
    }
}

/// What a request that needs the record hears while Postgres is away: `what` names the part
/// of the service (the gRPC services and the desk say it the same way).
pub fn postgres_unavailable(what: &str) -> tonic::Status {
    tonic::Status::unavailable(format!(
        "Postgres, the record, is unavailable: {what} cannot answer until it is back; retry shortly"
    ))
}
