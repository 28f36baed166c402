//! `callwarden-loadgen`: imports a large, deterministic block list through `BlockList.ImportRules`,
//! then drives `Screening.CheckCall` from many concurrent tasks over real gRPC and reports
//! throughput, latency percentiles and whether the reject ratio matches the callers it sent.
//!
//! `callwarden-loadgen button` measures button-to-command latency instead: many switches hold
//! `Screening.WatchCommands` streams while calls are checked, answered and ended with
//! `Console.EndAndFlag`; it times each press until its TERMINATE reaches the switch, under
//! background `CheckCall` load.
//!
//! `callwarden-loadgen seed-incidents` fills a database with a large incident history (with valid
//! hash chains) by COPY, and `callwarden-loadgen review` measures `Review.ListIncidents` and
//! `Review.GetIncident` latency against it.

mod review;
mod seed;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use callwarden_proto::v1::{
    AckCommandRequest, AddRuleRequest, BlockChoice, CallCommand, CallEventKind, Category,
    CheckCallRequest, CommandKind, Decision, Effect, EndAndFlagRequest, ReportCallEventRequest,
    Scope, ScopeKind, Severity, WatchCommandsRequest, block_list_client::BlockListClient,
    console_client::ConsoleClient, screening_client::ScreeningClient,
};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::watch;
use tonic::Streaming;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Many small, short-lived allocations (protobuf, JSON, formatting); as in the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exact rules take 7-digit suffixes from a permutation of 0..10^7, so at most this many rules.
const MAX_RULES: u64 = 10_000_000;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Load-tests Callwarden over gRPC: CheckCall throughput (the default), button-to-command latency, or the review reads on a seeded database",
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
    /// Fill a database with a large, deterministic incident history (COPY), for `review`.
    SeedIncidents(seed::SeedArgs),
    /// Measure Review.ListIncidents and Review.GetIncident latency on a seeded database.
    Review(review::ReviewArgs),
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
    mut client: ScreeningClient<Conn>,
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

/// A connection that presents `CALLWARDEN_TOKEN` (an admin's token: the load generator acts as
/// switches, operators and supervisors at once).
pub type Conn = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Bearer(tonic::metadata::AsciiMetadataValue);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

async fn connect(addr: &str) -> Result<Conn> {
    let token = std::env::var("CALLWARDEN_TOKEN").map_err(|_| {
        anyhow!(
            "set CALLWARDEN_TOKEN to an admin token, e.g. \
             CALLWARDEN_TOKEN=$(callwarden --config deploy/callwarden.dev.toml token --role admin --subject loadgen)"
        )
    })?;
    let bearer = format!("Bearer {}", token.trim())
        .parse()
        .context("CALLWARDEN_TOKEN is not a valid header value")?;
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .with_context(|| format!("invalid --addr {addr:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.map_err(|e| {
        let e = anyhow::Error::from(e);
        anyhow!("cannot connect to {addr}: {}", e.root_cause())
    })?;
    Ok(InterceptedService::new(channel, Bearer(bearer)))
}

async fn import(channel: Conn, set: RuleSet, line: String) -> Result<()> {
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
    let run = run_id()?;
    let measure_from = Instant::now() + Duration::from_secs(args.warmup);
    let window = (
        measure_from,
        measure_from + Duration::from_secs(args.duration),
    );
    let args = Arc::new(args);
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

#[derive(clap::Args, Debug)]
struct ButtonArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Switch streams (Screening.WatchCommands), one per simulated switch.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// HTTP/2 connections carrying the switch streams; raised so that none carries more than
    /// --streams-per-connection.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// At most this many switch streams share one HTTP/2 connection (servers commonly allow
    /// 100 to 250 concurrent streams per connection).
    #[arg(long, default_value_t = 200)]
    streams_per_connection: usize,
    /// HTTP/2 connections for the unary calls (CheckCall, ReportCallEvent, EndAndFlag,
    /// AckCommand), separate from the streams'.
    #[arg(long, default_value_t = 4)]
    rpc_connections: usize,
    /// Button presses (EndAndFlag on a freshly answered call).
    #[arg(long, default_value_t = 2000)]
    presses: u64,
    /// Presses in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Background CheckCall requests in flight during the presses (0 = none).
    #[arg(long, default_value_t = 32)]
    background: usize,
    /// Seconds of background load before the first press, not measured.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Seconds to wait, after the last press, for TERMINATEs still missing.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Service line of every call.
    #[arg(long, default_value = "+48221002030")]
    line: String,
}

/// A run id unique enough that repeated runs' calls and switches do not collide.
fn run_id() -> Result<String> {
    Ok(format!(
        "{:x}",
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis()
    ))
}

/// HTTP/2 connections needed for `streams` streams: at least `connections`, and enough that
/// none carries more than `per_connection`.
fn stream_connections(streams: usize, connections: usize, per_connection: usize) -> usize {
    connections
        .max(streams.div_ceil(per_connection.max(1)))
        .max(1)
}

/// A random (version 4) UUID in its text form, from two random words.
fn uuid_like(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

/// "p50 1.20 p90 2.00 p99 4.00 max 9.00" in milliseconds, from a histogram of microseconds.
fn percentiles(hist: &Histogram<u64>) -> String {
    let ms = |v: u64| v as f64 / 1000.0;
    format!(
        "p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        ms(hist.value_at_quantile(0.5)),
        ms(hist.value_at_quantile(0.9)),
        ms(hist.value_at_quantile(0.99)),
        ms(hist.max())
    )
}

/// What the switch streams saw.
#[derive(Default, Clone)]
struct Progress {
    /// TERMINATEs of pressed calls (each counted once).
    received: u64,
    /// Commands for calls not awaited (a repeat, or not a TERMINATE).
    unexpected: u64,
    acked: u64,
    ack_errors: u64,
    /// Streams that ended or failed during the run.
    stream_errors: u64,
}

/// Shared by the presses and the switch streams.
struct Button {
    /// When each pressed call's EndAndFlag was sent; removed when its TERMINATE arrives.
    sent: Mutex<HashMap<String, Instant>>,
    /// Button-to-command latency, microseconds.
    latency: Mutex<Histogram<u64>>,
    progress: watch::Sender<Progress>,
    first_error: Mutex<Option<String>>,
}

impl Button {
    fn error(&self, what: impl FnOnce() -> String) {
        self.first_error
            .lock()
            .expect("error lock")
            .get_or_insert_with(what);
    }
}

/// Reads one switch's stream: measures each awaited TERMINATE, then acknowledges it off the
/// measured path.
async fn switch_stream(
    mut stream: Streaming<CallCommand>,
    switch_id: String,
    acker: ScreeningClient<Conn>,
    shared: Arc<Button>,
) {
    loop {
        let command = match stream.message().await {
            Ok(Some(command)) => command,
            Ok(None) => {
                shared.progress.send_modify(|p| p.stream_errors += 1);
                shared.error(|| format!("stream of {switch_id} ended"));
                return;
            }
            Err(status) => {
                shared.progress.send_modify(|p| p.stream_errors += 1);
                shared.error(|| format!("stream of {switch_id}: {status}"));
                return;
            }
        };
        let arrived = Instant::now();
        let awaited = command.kind() == CommandKind::Terminate;
        let sent = awaited
            .then(|| {
                shared
                    .sent
                    .lock()
                    .expect("sent lock")
                    .remove(&command.call_id)
            })
            .flatten();
        if let Some(sent) = sent {
            shared
                .latency
                .lock()
                .expect("latency lock")
                .saturating_record(micros(arrived - sent));
        }
        shared.progress.send_modify(|p| {
            if sent.is_some() {
                p.received += 1;
            } else {
                p.unexpected += 1;
            }
        });
        let (mut acker, shared) = (acker.clone(), shared.clone());
        let request = AckCommandRequest {
            switch_id: switch_id.clone(),
            command_id: command.command_id,
        };
        tokio::spawn(async move {
            let result = acker.ack_command(request).await;
            shared.progress.send_modify(|p| match &result {
                Ok(_) => p.acked += 1,
                Err(_) => p.ack_errors += 1,
            });
            if let Err(status) = result {
                shared.error(|| format!("AckCommand: {status}"));
            }
        });
    }
}

struct Presses {
    args: Arc<ButtonArgs>,
    run: String,
    switches: Vec<String>,
    next: AtomicU64,
    shared: Arc<Button>,
}

/// One press: a call is checked, answered, and ended with EndAndFlag. Returns the EndAndFlag
/// reply time.
async fn press(
    ctx: &Presses,
    (screening, console): (&mut ScreeningClient<Conn>, &mut ConsoleClient<Conn>),
    k: u64,
    rng: &mut Rng,
) -> Result<Duration, String> {
    let call_id = format!("lg-{}-call-{k}", ctx.run);
    let operator_id = format!("lg-op-{}-{k}", ctx.run);
    let switch_id = ctx.switches[(k % ctx.switches.len() as u64) as usize].clone();
    screening
        .check_call(CheckCallRequest {
            call_id: call_id.clone(),
            caller: format!("+48{}", 690_000_000 + rng.below(MAX_RULES)),
            line: ctx.args.line.clone(),
            switch_id,
            operator_id: String::new(),
        })
        .await
        .map_err(|s| format!("CheckCall: {s}"))?;
    screening
        .report_call_event(ReportCallEventRequest {
            call_id: call_id.clone(),
            kind: CallEventKind::Answered as i32,
            operator_id: operator_id.clone(),
        })
        .await
        .map_err(|s| format!("ReportCallEvent: {s}"))?;
    let request = EndAndFlagRequest {
        call_id: call_id.clone(),
        operator_id,
        category: Category::AbusiveLanguage as i32,
        severity: Severity::Low as i32,
        note: "loadgen".into(),
        block: BlockChoice::None as i32,
        anonymous: false,
        request_id: uuid_like(rng.next(), rng.next()),
        debrief: false,
    };
    let started = Instant::now();
    ctx.shared
        .sent
        .lock()
        .expect("sent lock")
        .insert(call_id.clone(), started);
    let result = console.end_and_flag(request).await;
    let elapsed = started.elapsed();
    let error = match result {
        Ok(reply) if reply.get_ref().terminate_sent => return Ok(elapsed),
        Ok(_) => "EndAndFlag: terminate_sent is false".to_owned(),
        Err(status) => format!("EndAndFlag: {status}"),
    };
    ctx.shared.sent.lock().expect("sent lock").remove(&call_id);
    Err(error)
}

#[derive(Default)]
struct PressStats {
    ok: u64,
    errors: u64,
}

async fn presser(
    ctx: Arc<Presses>,
    channel: Conn,
    worker: usize,
    seed: u64,
) -> (PressStats, Histogram<u64>) {
    let mut clients = (
        ScreeningClient::new(channel.clone()),
        ConsoleClient::new(channel),
    );
    let mut rng = Rng(seed ^ (worker as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut hist = new_histogram();
    let mut stats = PressStats::default();
    loop {
        let k = ctx.next.fetch_add(1, Ordering::Relaxed);
        if k >= ctx.args.presses {
            break;
        }
        match press(&ctx, (&mut clients.0, &mut clients.1), k, &mut rng).await {
            Ok(reply) => {
                stats.ok += 1;
                hist.saturating_record(micros(reply));
            }
            Err(error) => {
                stats.errors += 1;
                ctx.shared.error(|| error);
            }
        }
    }
    (stats, hist)
}

/// Background CheckCall load until `stop`; counts the checks started after `measure_from`
/// and answered before `stop`.
async fn background(
    mut client: ScreeningClient<Conn>,
    line: String,
    (run, task, seed): (String, usize, u64),
    measure_from: Instant,
    stop: Arc<AtomicBool>,
) -> (Stats, Histogram<u64>) {
    let mut hist = new_histogram();
    let mut stats = Stats::default();
    let mut rng = Rng(seed ^ (task as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let request = CheckCallRequest {
            call_id: format!("lg-{run}-bg-{task}-{seq}"),
            caller: format_caller(690_000_000 + rng.below(MAX_RULES), rng.next()),
            line: line.clone(),
            switch_id: format!("lg-bg-{run}"),
            operator_id: String::new(),
        };
        let started = Instant::now();
        let result = client.check_call(request).await;
        if started < measure_from || stop.load(Ordering::Relaxed) {
            continue;
        }
        match result {
            Ok(_) => {
                stats.checks += 1;
                hist.saturating_record(micros(started.elapsed()));
            }
            Err(status) => {
                stats.errors += 1;
                stats.first_error.get_or_insert_with(|| status.to_string());
            }
        }
    }
    (stats, hist)
}

async fn run_button(args: ButtonArgs) -> Result<bool> {
    ensure!(args.streams > 0, "--streams must be positive");
    ensure!(
        args.concurrency > 0 && args.connections > 0 && args.rpc_connections > 0,
        "--concurrency, --connections and --rpc-connections must be positive"
    );
    ensure!(
        args.streams_per_connection > 0,
        "--streams-per-connection must be positive"
    );
    let run = run_id()?;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let stream_conns =
        stream_connections(args.streams, args.connections, args.streams_per_connection);
    let mut stream_channels = Vec::with_capacity(stream_conns);
    for _ in 0..stream_conns {
        stream_channels.push(connect(&args.addr).await?);
    }
    let mut rpc_channels = Vec::with_capacity(args.rpc_connections);
    for _ in 0..args.rpc_connections {
        rpc_channels.push(connect(&args.addr).await?);
    }
    println!(
        "button: {} streams over {} connections, {} presses at {} in flight, background CheckCall {} in flight",
        args.streams, stream_conns, args.presses, args.concurrency, args.background
    );

    // 1. The switches' streams, each open (registered on the server) before any press.
    let (progress, mut progress_rx) = watch::channel(Progress::default());
    let shared = Arc::new(Button {
        sent: Mutex::new(HashMap::new()),
        latency: Mutex::new(new_histogram()),
        progress,
        first_error: Mutex::new(None),
    });
    let switches: Vec<String> = (0..args.streams)
        .map(|i| format!("lg-sw-{run}-{i}"))
        .collect();
    let mut readers = Vec::with_capacity(args.streams);
    for (i, switch_id) in switches.iter().enumerate() {
        let mut client = ScreeningClient::new(stream_channels[i % stream_conns].clone());
        let stream = client
            .watch_commands(WatchCommandsRequest {
                switch_id: switch_id.clone(),
            })
            .await
            .with_context(|| format!("WatchCommands for {switch_id} failed"))?
            .into_inner();
        let acker = ScreeningClient::new(rpc_channels[i % rpc_channels.len()].clone());
        readers.push(tokio::spawn(switch_stream(
            stream,
            switch_id.clone(),
            acker,
            shared.clone(),
        )));
    }

    // 2. Background load, measured from the first press.
    let stop = Arc::new(AtomicBool::new(false));
    let measure_from = Instant::now() + Duration::from_secs(args.warmup);
    let loaders: Vec<_> = (0..args.background)
        .map(|task| {
            let client = ScreeningClient::new(rpc_channels[task % rpc_channels.len()].clone());
            tokio::spawn(background(
                client,
                args.line.clone(),
                (run.clone(), task, seed),
                measure_from,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep_until(measure_from.into()).await;

    // 3. The presses.
    let args = Arc::new(args);
    let ctx = Arc::new(Presses {
        args: args.clone(),
        run: run.clone(),
        switches,
        next: AtomicU64::new(0),
        shared: shared.clone(),
    });
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|worker| {
            let channel = rpc_channels[(args.background + worker) % rpc_channels.len()].clone();
            tokio::spawn(presser(ctx.clone(), channel, worker, seed))
        })
        .collect();
    let mut pressed = PressStats::default();
    let mut replies = new_histogram();
    for worker in workers {
        let (stats, hist) = worker.await?;
        pressed.ok += stats.ok;
        pressed.errors += stats.errors;
        replies.add(hist)?;
    }
    let pressing = started.elapsed();

    // 4. Every TERMINATE, or the timeout.
    let expected = pressed.ok;
    let all_in = tokio::time::timeout(
        Duration::from_secs(args.timeout),
        progress_rx.wait_for(|p| p.received >= expected),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let measured = measure_from.elapsed();
    stop.store(true, Ordering::Relaxed);
    if !all_in {
        shared.error(|| format!("timed out after {} s waiting for TERMINATEs", args.timeout));
    }
    let mut bg = Stats::default();
    let mut bg_hist = new_histogram();
    for loader in loaders {
        let (stats, hist) = loader.await?;
        bg.checks += stats.checks;
        bg.errors += stats.errors;
        bg.first_error = bg.first_error.or(stats.first_error);
        bg_hist.add(hist)?;
    }
    // The acks of what arrived.
    let acks = tokio::time::timeout(
        Duration::from_secs(10),
        progress_rx.wait_for(|p| p.acked + p.ack_errors >= p.received + p.unexpected),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !acks {
        shared.error(|| "timed out waiting for AckCommand replies".to_owned());
    }
    for reader in &readers {
        reader.abort();
    }
    let progress = shared.progress.borrow().clone();
    let latency = shared.latency.lock().expect("latency lock").clone();

    // 5. The report.
    println!(
        "presses: {} in {:.1} s ({:.0}/s), errors {}; acks {}, errors {}",
        pressed.ok,
        pressing.as_secs_f64(),
        pressed.ok as f64 / pressing.as_secs_f64(),
        pressed.errors,
        progress.acked,
        progress.ack_errors
    );
    println!(
        "button-to-command ms: {} ({} of {} received)",
        percentiles(&latency),
        progress.received,
        args.presses
    );
    println!("EndAndFlag reply ms: {}", percentiles(&replies));
    println!(
        "background checks: {} ({:.0}/s), errors {}",
        bg.checks,
        bg.checks as f64 / measured.as_secs_f64(),
        bg.errors
    );
    if bg.checks > 0 {
        println!("background CheckCall ms: {}", percentiles(&bg_hist));
    }
    let missing = args.presses - progress.received;
    let errors = pressed.errors
        + progress.ack_errors
        + progress.stream_errors
        + bg.errors
        + u64::from(!acks);
    if progress.unexpected > 0 {
        println!("unexpected commands: {}", progress.unexpected);
    }
    if let Some(error) = shared.first_error.lock().expect("error lock").take() {
        println!("first error: {error}");
    }
    if let Some(error) = &bg.first_error {
        println!("first background error: {error}");
    }
    if missing > 0 || errors > 0 {
        println!("FAILED: {missing} TERMINATEs missing, {errors} errors");
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
        Some(Mode::SeedIncidents(args)) => seed::run(args).await,
        Some(Mode::Review(args)) => review::run(args).await,
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
    fn stream_connections_respect_the_per_connection_limit() {
        assert_eq!(stream_connections(1000, 4, 200), 5);
        assert_eq!(stream_connections(1000, 8, 200), 8);
        assert_eq!(stream_connections(800, 4, 200), 4);
        assert_eq!(stream_connections(801, 4, 200), 5);
        assert_eq!(stream_connections(10, 1, 200), 1);
        assert_eq!(stream_connections(0, 0, 0), 1);
    }

    #[test]
    fn uuid_like_is_a_version_4_uuid() {
        for (a, b) in [(0, 0), (u64::MAX, u64::MAX), (0x0123_4567_89ab_cdef, 42)] {
            let id = uuid_like(a, b);
            assert_eq!(id.len(), 36, "{id}");
            let groups: Vec<_> = id.split('-').map(str::len).collect();
            assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()),
                "{id}"
            );
            assert_eq!(&id[14..15], "4", "{id}");
            assert!("89ab".contains(&id[19..20]), "{id}");
        }
        assert_eq!(
            uuid_like(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
            "01234567-89ab-4def-bedc-ba9876543210"
        );
        assert_ne!(uuid_like(1, 2), uuid_like(1, 3));
    }

    #[test]
    fn percentiles_in_milliseconds() {
        let mut hist = new_histogram();
        for us in 1..=1000 {
            hist.record(us * 2).unwrap();
        }
        assert_eq!(percentiles(&hist), "p50 1.00 p90 1.80 p99 1.98 max 2.00");
        assert_eq!(micros(Duration::from_millis(3)), 3000);
    }

    #[test]
    fn cli_keeps_checks_as_the_default_mode() {
        let cli = Cli::try_parse_from([
            "callwarden-loadgen",
            "--rules",
            "1000000",
            "--concurrency",
            "64",
            "--duration",
            "30",
        ])
        .unwrap();
        assert!(cli.mode.is_none());
        assert_eq!(
            (
                cli.checks.rules,
                cli.checks.concurrency,
                cli.checks.duration
            ),
            (1_000_000, 64, 30)
        );
        let cli = Cli::try_parse_from(["callwarden-loadgen", "checks", "--rules", "0"]).unwrap();
        assert!(matches!(
            cli.mode,
            Some(Mode::Checks(Args { rules: 0, .. }))
        ));
        let cli = Cli::try_parse_from([
            "callwarden-loadgen",
            "button",
            "--streams",
            "10",
            "--addr",
            "http://127.0.0.1:1",
        ])
        .unwrap();
        let Some(Mode::Button(button)) = cli.mode else {
            panic!("not button mode");
        };
        assert_eq!(
            (
                button.streams,
                button.presses,
                button.concurrency,
                button.background
            ),
            (10, 2000, 8, 32)
        );
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
