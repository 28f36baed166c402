//! `callwarden-loadgen`: imports a large, deterministic block list through `BlockList.ImportRules`,
//! then drives `Screening.CheckCall` from many concurrent tasks over real gRPC and reports
//! throughput, latency percentiles and whether the reject ratio matches the callers it sent.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use callwarden_proto::v1::{
    AddRuleRequest, CheckCallRequest, Decision, Effect, Scope, ScopeKind,
    block_list_client::BlockListClient, screening_client::ScreeningClient,
};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

/// Exact rules take 7-digit suffixes from a permutation of 0..10^7, so at most this many rules.
const MAX_RULES: u64 = 10_000_000;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Load-tests Callwarden over gRPC: CheckCall throughput (the default) or button-to-command latency",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// With no mode given: the options of `checks`.
    #[command(flatten)]
    checks: Args,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Import a block list and load-test CheckCall (the default when no mode is given).
    Checks(Args),
    /// Measure button-to-command latency: from sending Console.EndAndFlag to the TERMINATE
    /// arriving on the switch's WatchCommands stream, under background CheckCall load.
    Button(ButtonArgs),
}

#[derive(clap::Args, Debug)]
struct Args {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Rules to import before the load phase (0 = skip the import).
    #[arg(long, default_value_t = 1_000_000)]
    rules: u64,
    /// Concurrent in-flight CheckCall requests.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured load duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Service line sent with every check (and the scope of the imported prefix rules).
    #[arg(long, default_value = "+48221002030")]
    line: String,
    /// Fraction of checks whose caller is an imported exact BLOCK rule.
    #[arg(long, default_value_t = 0.2)]
    blocked_ratio: f64,
    /// HTTP/2 connections; concurrent tasks are spread over them round robin.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seed for the rule set and the callers.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The server already holds the rule set of an earlier run with the same --rules and
    /// --seed: do not import it again, only drive the load.
    #[arg(long)]
    skip_import: bool,
}

/// SplitMix64: tiny, fast and good enough for picking callers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The deterministic rule set: index `i` is a prefix rule if `i % 100 == 98`, an exact ALLOW rule
/// if `i % 100 == 99`, otherwise an exact global BLOCK rule on `+4860` + 7 digits.
#[derive(Clone, Copy)]
struct RuleSet {
    rules: u64,
    /// `(i * a + b) mod 10^7` with `a` coprime to 10 is a bijection on 0..10^7.
    a: u64,
    b: u64,
}

impl RuleSet {
    fn new(rules: u64, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let mut a = rng.below(MAX_RULES);
        if a.is_multiple_of(2) {
            a += 1;
        }
        if a.is_multiple_of(5) {
            a += 2;
        }
        Self {
            rules,
            a,
            b: rng.below(MAX_RULES),
        }
    }

    /// National significant number (9 digits) of exact rule `i`.
    fn exact(&self, i: u64) -> u64 {
        600_000_000 + (i * self.a + self.b) % MAX_RULES
    }

    fn blocks(&self) -> u64 {
        self.rules / 100 * 98 + (self.rules % 100).min(98)
    }

    /// The `j`-th exact BLOCK rule's number, `j < blocks()`.
    fn blocked(&self, j: u64) -> u64 {
        self.exact(j / 98 * 100 + j % 98)
    }

    fn rule(&self, i: u64, line: &str) -> AddRuleRequest {
        let (pattern, effect, scope) = match i % 100 {
            // Distinct, fixed-width line-scoped prefixes: +4872 and 3 to 5 digits.
            98 => {
                let width = (self.rules.saturating_sub(1) / 100)
                    .to_string()
                    .len()
                    .max(3);
                let pattern = format!("+4872{:0width$}*", i / 100);
                let scope = Scope {
                    kind: ScopeKind::Line as i32,
                    value: line.to_owned(),
                };
                (pattern, Effect::Block, Some(scope))
            }
            99 => (format!("+48{}", self.exact(i)), Effect::Allow, None),
            _ => (format!("+48{}", self.exact(i)), Effect::Block, None),
        };
        AddRuleRequest {
            pattern,
            effect: effect as i32,
            scope,
            reason: "loadgen".into(),
            ..Default::default()
        }
    }
}

/// Writes a 9-digit Polish national number the way a switch might send it.
fn format_caller(national: u64, style: u64) -> String {
    let d = national.to_string();
    let (a, b, c) = (&d[0..3], &d[3..6], &d[6..9]);
    match style % 4 {
        0 => format!("+48{d}"),
        1 => format!("{a} {b} {c}"),
        2 => format!("0048{d}"),
        _ => format!("tel:+48-{a}-{b}-{c}"),
    }
}

#[derive(Default)]
struct Stats {
    checks: u64,
    rejected: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn worker(
    mut client: ScreeningClient<Channel>,
    set: RuleSet,
    args: &Args,
    task: usize,
    run: String,
    (measure_from, end): (Instant, Instant),
) -> (Stats, Histogram<u64>) {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let mut stats = Stats::default();
    let mut rng = Rng(args.seed ^ (task as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut seq = 0u64;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let national = if set.blocks() > 0 && rng.unit() < args.blocked_ratio {
            set.blocked(rng.below(set.blocks()))
        } else {
            690_000_000 + rng.below(MAX_RULES)
        };
        seq += 1;
        let request = CheckCallRequest {
            call_id: format!("lg-{run}-{task}-{seq}"),
            caller: format_caller(national, rng.next()),
            line: args.line.clone(),
            switch_id: "loadgen".into(),
            operator_id: String::new(),
        };
        let result = client.check_call(request).await;
        if started < measure_from {
            continue;
        }
        match result {
            Ok(response) => {
                hist.saturating_record(started.elapsed().as_micros() as u64);
                stats.checks += 1;
                if response.get_ref().decision() == Decision::Reject {
                    stats.rejected += 1;
                }
            }
            Err(status) => {
                stats.errors += 1;
                stats.first_error.get_or_insert_with(|| status.to_string());
            }
        }
    }
    (stats, hist)
}

async fn connect(addr: &str) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .with_context(|| format!("invalid --addr {addr:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    endpoint.connect().await.map_err(|e| {
        let e = anyhow::Error::from(e);
        anyhow!("cannot connect to {addr}: {}", e.root_cause())
    })
}

async fn import(channel: Channel, set: RuleSet, line: String) -> Result<()> {
    let started = Instant::now();
    let rules = futures::stream::iter(0..set.rules).map(move |i| set.rule(i, &line));
    let imported = BlockListClient::new(channel)
        .import_rules(rules)
        .await
        .context("ImportRules failed")?
        .into_inner()
        .imported;
    let secs = started.elapsed().as_secs_f64();
    let rate = set.rules as f64 / secs;
    println!("import: {imported} rules in {secs:.1} s ({rate:.0} rules/s)");
    ensure!(
        imported == set.rules,
        "server imported {imported} of {} rules",
        set.rules
    );
    Ok(())
}

async fn run_checks(args: Args) -> Result<bool> {
    ensure!(
        args.rules <= MAX_RULES,
        "--rules must be at most {MAX_RULES}"
    );
    ensure!(
        (0.0..=1.0).contains(&args.blocked_ratio),
        "--blocked-ratio must be in 0..=1"
    );
    ensure!(
        args.concurrency > 0 && args.connections > 0,
        "--concurrency and --connections must be positive"
    );
    ensure!(args.duration > 0, "--duration must be positive");

    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(connect(&args.addr).await?);
    }
    let set = RuleSet::new(args.rules, args.seed);
    if args.rules > 0 && !args.skip_import {
        import(channels[0].clone(), set, args.line.clone()).await?;
    }

    println!(
        "load: concurrency {} over {} connections, {} s after {} s warm-up",
        args.concurrency, args.connections, args.duration, args.warmup
    );
    let run = format!(
        "{:x}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    );
    let measure_from = Instant::now() + Duration::from_secs(args.warmup);
    let window = (
        measure_from,
        measure_from + Duration::from_secs(args.duration),
    );
    let args = std::sync::Arc::new(args);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|task| {
            let client = ScreeningClient::new(channels[task % channels.len()].clone());
            let (args, run) = (args.clone(), run.clone());
            tokio::spawn(async move { worker(client, set, &args, task, run, window).await })
        })
        .collect();

    let mut total = Stats::default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for task in tasks {
        let (stats, h) = task.await?;
        hist.add(h)?;
        total.checks += stats.checks;
        total.rejected += stats.rejected;
        total.errors += stats.errors;
        total.first_error = total.first_error.or(stats.first_error);
    }

    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let ratio = total.rejected as f64 / total.checks.max(1) as f64;
    let expected = if args.rules > 0 {
        args.blocked_ratio
    } else {
        0.0
    };
    println!(
        "checks: {} ({:.0}/s), errors {}, rejected {:.1}% (expected {:.1}%)",
        total.checks,
        total.checks as f64 / args.duration as f64,
        total.errors,
        ratio * 100.0,
        expected * 100.0
    );
    println!(
        "latency ms: p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1000.0
    );
    if let Some(error) = &total.first_error {
        println!("first error: {error}");
    }
    if total.checks == 0 {
        bail!("no check succeeded");
    }
    if args.rules > 0 && (ratio - expected).abs() > 0.05 {
        println!(
            "WARNING: rejected {:.1}% but expected {:.1}%: the server decides wrongly",
            ratio * 100.0,
            expected * 100.0
        );
        return Ok(false);
    }
    Ok(true)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.mode {
        None => run_checks(cli.checks).await,
        Some(Mode::Checks(args)) => run_checks(args).await,
        Some(Mode::Button(args)) => run_button(args).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn exact_rules_are_distinct_valid_polish_mobiles() {
        for seed in [0, 42, u64::MAX] {
            let set = RuleSet::new(5_000, seed);
            let mut seen = HashSet::new();
            for i in 0..set.rules {
                let rule = set.rule(i, "+48221002030");
                assert!(
                    seen.insert(rule.pattern.clone()),
                    "duplicate {}",
                    rule.pattern
                );
                let p = &rule.pattern;
                if i % 100 == 98 {
                    assert!(
                        p.starts_with("+4872") && p.ends_with('*') && p.len() == 9,
                        "{p}"
                    );
                    assert_eq!(rule.scope.unwrap().kind, ScopeKind::Line as i32);
                } else {
                    assert!(p.starts_with("+4860") && p.len() == 12, "{p}");
                    assert!(p[1..].bytes().all(|b| b.is_ascii_digit()), "{p}");
                }
            }
            assert_eq!(set.blocks(), 4_900);
            for j in 0..set.blocks() {
                let rule = set.rule(j / 98 * 100 + j % 98, "");
                assert_eq!(rule.pattern, format!("+48{}", set.blocked(j)));
                assert_eq!(rule.effect, Effect::Block as i32);
            }
        }
    }

    #[test]
    fn caller_formats() {
        let n = 601_234_567;
        let got: Vec<_> = (0..4).map(|s| format_caller(n, s)).collect();
        assert_eq!(
            got,
            [
                "+48601234567",
                "601 234 567",
                "0048601234567",
                "tel:+48-601-234-567"
            ]
        );
    }
}
