//! One replica of the service as a process of its own, for the failure suite, which kills it
//! (SIGKILL) as a crash would. The test hands it its whole configuration as JSON in
//! `CALLWARDEN_REPLICA_CONFIG`; it prints `listening <grpc address> <http address>` once it
//! listens, and
//! stops gracefully on SIGTERM, as `callwarden serve` does.

use callwarden_server::{config::Config, startup::Application, telemetry};
use std::io::Write;

#[tokio::main]
async fn main() {
    let json = std::env::var("CALLWARDEN_REPLICA_CONFIG").expect("CALLWARDEN_REPLICA_CONFIG");
    let config: Config = serde_json::from_str(&json).expect("a configuration");
    config.validate().expect("a valid configuration");
    telemetry::init_tracing(&config);
    let app = Application::build(config)
        .await
        .expect("the replica starts");
    println!("listening {} {}", app.grpc_addr(), app.http_addr());
    std::io::stdout().flush().expect("stdout");
    let terminated = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler")
            .recv()
            .await;
    };
    app.run_until_stopped(terminated)
        .await
        .expect("the replica stops cleanly");
}
