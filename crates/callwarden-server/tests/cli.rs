//! The `callwarden` binary as an operator runs it: exit codes, one-line start-up errors,
//! `migrate`, and SIGTERM.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_callwarden");

fn callwarden(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("CALLWARDEN_CONFIG")
        .env("CALLWARDEN_LOG_FILTER", "warn")
        // The two required secrets, and plaintext (loopback only); a test that wants one of them
        // missing removes it.
        .env("CALLWARDEN_TLS__PLAINTEXT", "true")
        // A spool of the test's own, not one in the crate's folder.
        .env(
            "CALLWARDEN_SPOOL__DIR",
            std::env::temp_dir().join(format!("cw-cli-spool-{}", std::process::id())),
        )
        .env(
            "CALLWARDEN_AUTH__HS256_SECRET",
            "cli-test-hs256-secret-0123456789abcdef",
        )
        .env(
            "CALLWARDEN_PRIVACY__REDIS_SECRET",
            "cli-test-redis-secret-0123456789abcdef",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_configuration_error_exits_64_naming_the_key() {
    let out = callwarden(&["serve"], &[("CALLWARDEN_DEFAULT_REGION", "Atlantis")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("default_region"), "{stderr}");

    let out = callwarden(&["serve", "--config", "/nonexistent/callwarden.toml"], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn without_its_secrets_the_service_does_not_start_and_says_which() {
    let out = callwarden(&["serve"], &[])
        .env_remove("CALLWARDEN_AUTH__HS256_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.hs256_secret"), "{err}");
    let out = callwarden(&["serve"], &[])
        .env_remove("CALLWARDEN_PRIVACY__REDIS_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("privacy.redis_secret"), "{err}");
}

#[test]
fn without_tls_or_an_explicit_plaintext_the_service_does_not_start() {
    let out = callwarden(&["serve"], &[])
        .env_remove("CALLWARDEN_TLS__PLAINTEXT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls.cert_file"), "{err}");
    let out = callwarden(
        &["serve"],
        &[("CALLWARDEN_TLS__CERT_FILE", "/nonexistent/cert.pem")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tls.plaintext"), "{err}");
}

#[test]
fn token_mints_a_token_the_service_accepts_and_refuses_switches() {
    let out = callwarden(
        &["token", "--role", "supervisor", "--subject", "sup-1"],
        &[],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let auth = callwarden_server::config::AuthConfig {
        hs256_secret: Some("cli-test-hs256-secret-0123456789abcdef".into()),
        ..Default::default()
    }
    .authenticator()
    .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    let who = auth.authenticate(&headers, None).unwrap();
    assert_eq!(who.subject, "sup-1");
    assert_eq!(who.role, callwarden_server::auth::Role::Supervisor);
    let out = callwarden(&["token", "--role", "switch", "--subject", "sw-1"], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn an_unreachable_redis_exits_69_with_one_clear_line() {
    let out = callwarden(
        &["serve"],
        &[
            ("CALLWARDEN_REDIS_URL", "redis://127.0.0.1:1"),
            ("CALLWARDEN_GRPC_ADDR", "127.0.0.1:0"),
            ("CALLWARDEN_HTTP_ADDR", "127.0.0.1:0"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("callwarden:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("redis://127.0.0.1:1") && lines[0].contains("CALLWARDEN_REDIS_URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn migrate_creates_the_database_verify_reads_it_and_sigterm_stops_serve() {
    let db = format!("cw_cli_{}", uuid::Uuid::new_v4().simple());
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let prefix = format!("cwcli:{db}");
    let env = [
        ("CALLWARDEN_DATABASE_URL", url.as_str()),
        ("CALLWARDEN_REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let out = callwarden(&["migrate"], &env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = callwarden(&["verify"], &env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: 0 incidents, 0 events"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let http = free_port();
    let http_addr = format!("127.0.0.1:{http}");
    let grpc_addr = format!("127.0.0.1:{}", free_port());
    let mut serve_env = env.to_vec();
    serve_env.push(("CALLWARDEN_HTTP_ADDR", &http_addr));
    serve_env.push(("CALLWARDEN_GRPC_ADDR", &grpc_addr));
    let mut child = callwarden(&["serve"], &serve_env).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&http_addr).is_err() {
        assert!(Instant::now() < deadline, "serve never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit {exit:?}");

    let _ = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-q",
            "-c",
            &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"),
        ])
        .output();
    let _ = Command::new("redis-cli")
        .args([
            "--no-raw",
            "EVAL",
            "for _,k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
            "0",
            &format!("{prefix}:*"),
        ])
        .output();
}
