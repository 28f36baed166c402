//! `callwarden-loadgen review`: the latency of the supervisors' reads (`Review.ListIncidents`
//! and `Review.GetIncident`) over real gRPC, against a database filled by `seed-incidents`.
//! Filter values and incident ids are picked from the database; each scenario runs
//! `--requests` measured calls (after `--warmup` unmeasured ones) from `--concurrency` tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Conn;
use anyhow::{Context, Result, bail, ensure};
use callwarden_proto::v1::{
    GetIncidentRequest, IncidentOrder, IncidentStatus, ListIncidentsRequest, Severity,
    review_client::ReviewClient,
};
use hdrhistogram::Histogram;
use sqlx::{Connection, PgConnection};

use crate::seed::HEAVY_EVENTS;
use crate::{connect, micros, new_histogram, percentiles};

#[derive(clap::Args, Debug)]
pub struct ReviewArgs {
    /// Server address; the server must use the seeded database.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// The seeded database, to pick incident ids and filter values from.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Measured requests per scenario.
    #[arg(long, default_value_t = 2000)]
    requests: u64,
    /// Unmeasured requests per scenario before the measured ones.
    #[arg(long, default_value_t = 100)]
    warmup: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// HTTP/2 connections; tasks are spread over them round robin.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Only these scenarios (comma-separated names, see the output); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The p99 each scenario should stay under, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    target_ms: f64,
}

#[derive(Clone)]
enum Call {
    List(Box<ListIncidentsRequest>),
    /// GetIncident of these ids in turn, each expected to have this many events (if known).
    Get(Arc<Vec<String>>, Option<usize>),
}

struct Scenario {
    name: &'static str,
    what: String,
    call: Call,
}

/// What a scenario's answers looked like.
#[derive(Default)]
struct Outcome {
    ok: u64,
    errors: u64,
    /// Answers that were not what the data set implies (wrong event count, broken chain).
    wrong: u64,
    first_error: Option<String>,
    min_items: Option<usize>,
    max_items: usize,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.ok += o.ok;
        self.errors += o.errors;
        self.wrong += o.wrong;
        self.first_error = self.first_error.take().or(o.first_error);
        self.min_items = match (self.min_items, o.min_items) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_items = self.max_items.max(o.max_items);
    }

    fn items(&mut self, n: usize) {
        self.min_items = Some(self.min_items.map_or(n, |m| m.min(n)));
        self.max_items = self.max_items.max(n);
    }
}

/// One call; the number of items it returned (incidents listed, or events), or what went wrong.
async fn call_once(client: &mut ReviewClient<Conn>, call: &Call, k: u64) -> Result<usize, String> {
    match call {
        Call::List(request) => client
            .list_incidents(ListIncidentsRequest::clone(request))
            .await
            .map(|r| r.into_inner().incidents.len())
            .map_err(|s| s.to_string()),
        Call::Get(ids, expected) => {
            let id = &ids[(k % ids.len() as u64) as usize];
            let detail = client
                .get_incident(GetIncidentRequest {
                    incident_id: id.clone(),
                })
                .await
                .map_err(|s| format!("GetIncident {id}: {s}"))?
                .into_inner();
            let n = detail.events.len();
            if !detail.chain_verified {
                return Err(format!("GetIncident {id}: chain_verified is false"));
            }
            if expected.is_some_and(|e| e != n) {
                return Err(format!(
                    "GetIncident {id}: {n} events, expected {}",
                    expected.unwrap_or_default()
                ));
            }
            Ok(n)
        }
    }
}

async fn run_scenario(
    channels: &[Conn],
    scenario: &Scenario,
    args: &ReviewArgs,
) -> Result<(Outcome, Histogram<u64>)> {
    let next = Arc::new(AtomicU64::new(0));
    let total = args.warmup + args.requests;
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|t| {
            let mut client = ReviewClient::new(channels[t % channels.len()].clone())
                .max_decoding_message_size(64 * 1024 * 1024);
            let (call, next, warmup) = (scenario.call.clone(), next.clone(), args.warmup);
            tokio::spawn(async move {
                let mut hist = new_histogram();
                let mut outcome = Outcome::default();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total {
                        break;
                    }
                    let started = Instant::now();
                    let result = call_once(&mut client, &call, k).await;
                    let elapsed = started.elapsed();
                    if k < warmup {
                        continue;
                    }
                    match result {
                        Ok(n) => {
                            hist.saturating_record(micros(elapsed));
                            outcome.ok += 1;
                            outcome.items(n);
                        }
                        Err(e) => {
                            if e.contains("events, expected") || e.contains("chain_verified") {
                                outcome.wrong += 1;
                            } else {
                                outcome.errors += 1;
                            }
                            outcome.first_error.get_or_insert(e);
                        }
                    }
                }
                (outcome, hist)
            })
        })
        .collect();
    let mut outcome = Outcome::default();
    let mut hist = new_histogram();
    for task in tasks {
        let (o, h) = task.await?;
        outcome.merge(o);
        hist.add(h)?;
    }
    Ok((outcome, hist))
}

/// The scenarios, with filter values and ids taken from the seeded database.
async fn scenarios(
    db: &mut PgConnection,
    client: &mut ReviewClient<Conn>,
) -> Result<Vec<Scenario>> {
    let heavy: Vec<String> =
        sqlx::query_scalar("SELECT id::text FROM incidents WHERE version = $1 ORDER BY id")
            .bind(HEAVY_EVENTS as i32)
            .fetch_all(&mut *db)
            .await?;
    ensure!(
        !heavy.is_empty(),
        "no incident with {HEAVY_EVENTS} events: seed the database with seed-incidents first"
    );
    let sample: Vec<String> =
        sqlx::query_scalar("SELECT id::text FROM incidents ORDER BY random() LIMIT 1000")
            .fetch_all(&mut *db)
            .await?;
    let top_caller: String = sqlx::query_scalar(
        "SELECT caller_e164 FROM incidents WHERE caller_e164 IS NOT NULL \
         GROUP BY caller_e164 ORDER BY count(*) DESC, caller_e164 LIMIT 1",
    )
    .fetch_one(&mut *db)
    .await?;
    let caller_incidents: i64 =
        sqlx::query_scalar("SELECT count(*) FROM incidents WHERE caller_e164 = $1")
            .bind(&top_caller)
            .fetch_one(&mut *db)
            .await?;
    let queue_line: Option<String> = sqlx::query_scalar(
        "SELECT line FROM incidents WHERE status IN ('open', 'acknowledged') \
         GROUP BY line ORDER BY count(*) DESC, line LIMIT 1",
    )
    .fetch_optional(&mut *db)
    .await?;
    let top_operator: String = sqlx::query_scalar(
        "SELECT reporter FROM incidents WHERE NOT anonymous \
         GROUP BY reporter ORDER BY count(*) DESC, reporter LIMIT 1",
    )
    .fetch_one(&mut *db)
    .await?;

    let all = || IncidentStatus::Open as i32..=IncidentStatus::Dismissed as i32;
    let newest = IncidentOrder::Newest as i32;
    // The second page of the queue: a token from the first.
    let first = client
        .list_incidents(ListIncidentsRequest::default())
        .await
        .map_err(|s| {
            if s.code() == tonic::Code::Unimplemented {
                anyhow::anyhow!("the server does not implement Review yet: {s}")
            } else {
                anyhow::anyhow!("ListIncidents: {s}")
            }
        })?
        .into_inner();
    let month_ago = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    let mut list = vec![
        Scenario {
            name: "queue",
            what: "ListIncidents {} (the queue, urgent order, first page of 50)".into(),
            call: Call::List(Box::default()),
        },
        Scenario {
            name: "queue-counts",
            what: "ListIncidents with_status_counts (the review desk's queue page)".into(),
            call: Call::List(Box::new(ListIncidentsRequest {
                with_status_counts: true,
                ..Default::default()
            })),
        },
        Scenario {
            name: "queue-newest",
            what: "ListIncidents order NEWEST (the queue, first page)".into(),
            call: Call::List(Box::new(ListIncidentsRequest {
                order: newest,
                ..Default::default()
            })),
        },
    ];
    if !first.next_page_token.is_empty() {
        list.push(Scenario {
            name: "queue-page2",
            what: "ListIncidents {} second page (page token)".into(),
            call: Call::List(Box::new(ListIncidentsRequest {
                page_token: first.next_page_token,
                ..Default::default()
            })),
        });
    }
    list.extend([
        Scenario {
            name: "all-newest",
            what: "ListIncidents every status, NEWEST first".into(),
            call: Call::List(Box::new(ListIncidentsRequest {
                statuses: all().collect(),
                order: newest,
                ..Default::default()
            })),
        },
        Scenario {
            name: "caller",
            what: format!(
                "ListIncidents caller {top_caller} ({caller_incidents} incidents), every status, NEWEST"
            ),
            call: Call::List(Box::new(ListIncidentsRequest {
                statuses: all().collect(),
                caller: top_caller.clone(),
                order: newest,
                ..Default::default()
            })),
        },
        Scenario {
            name: "caller-urgent",
            what: format!("ListIncidents caller {top_caller}, every status, urgent order"),
            call: Call::List(Box::new(ListIncidentsRequest {
                statuses: all().collect(),
                caller: top_caller,
                ..Default::default()
            })),
        },
        Scenario {
            name: "operator",
            what: format!("ListIncidents operator {top_operator}, every status, NEWEST"),
            call: Call::List(Box::new(ListIncidentsRequest {
                statuses: all().collect(),
                operator_id: top_operator,
                order: newest,
                ..Default::default()
            })),
        },
        Scenario {
            name: "closed-critical-30d",
            what: "ListIncidents RESOLVED+DISMISSED, CRITICAL, last 30 days, urgent order".into(),
            call: Call::List(Box::new(ListIncidentsRequest {
                statuses: vec![
                    IncidentStatus::Resolved as i32,
                    IncidentStatus::Dismissed as i32,
                ],
                severities: vec![Severity::Critical as i32],
                created_after: Some(month_ago.into()),
                ..Default::default()
            })),
        },
    ]);
    if let Some(line) = queue_line {
        list.push(Scenario {
            name: "line-queue",
            what: format!("ListIncidents line {line} (the queue, urgent order)"),
            call: Call::List(Box::new(ListIncidentsRequest {
                line,
                ..Default::default()
            })),
        });
    }
    list.extend([
        Scenario {
            name: "get-heavy",
            what: format!(
                "GetIncident of {} incidents with {HEAVY_EVENTS} events (frequent callers)",
                heavy.len()
            ),
            call: Call::Get(Arc::new(heavy), Some(HEAVY_EVENTS)),
        },
        Scenario {
            name: "get-any",
            what: format!("GetIncident of {} random incidents", sample.len()),
            call: Call::Get(Arc::new(sample), None),
        },
    ]);
    Ok(list)
}

pub async fn run(args: ReviewArgs) -> Result<bool> {
    ensure!(
        args.concurrency > 0 && args.connections > 0 && args.requests > 0,
        "--requests, --concurrency and --connections must be positive"
    );
    let mut db = PgConnection::connect(&args.database_url)
        .await
        .with_context(|| format!("cannot connect to {}", args.database_url))?;
    let (incidents, queue): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status IN ('open', 'acknowledged')) FROM incidents",
    )
    .fetch_one(&mut db)
    .await?;
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(connect(&args.addr).await?);
    }
    let mut client = ReviewClient::new(channels[0].clone());
    let mut list = scenarios(&mut db, &mut client).await?;
    db.close().await?;
    if !args.only.is_empty() {
        let unknown: Vec<_> = args
            .only
            .iter()
            .filter(|n| !list.iter().any(|s| s.name == n.as_str()))
            .collect();
        if !unknown.is_empty() {
            let names: Vec<_> = list.iter().map(|s| s.name).collect();
            bail!("unknown scenario {unknown:?}; known: {}", names.join(", "));
        }
        list.retain(|s| args.only.iter().any(|n| n == s.name));
    }
    println!(
        "review: {incidents} incidents ({queue} in the queue); {} measured requests per scenario after {} warm-up, concurrency {} over {} connections",
        args.requests, args.warmup, args.concurrency, args.connections
    );

    let mut all_ok = true;
    for scenario in &list {
        let started = Instant::now();
        let (outcome, hist) = run_scenario(&channels, scenario, &args).await?;
        let secs = started.elapsed().as_secs_f64();
        let p99 = hist.value_at_quantile(0.99) as f64 / 1000.0;
        let verdict = if outcome.ok == 0 {
            "FAILED"
        } else if p99 < args.target_ms {
            "ok"
        } else {
            "OVER"
        };
        let items = match (outcome.min_items, outcome.max_items) {
            (Some(a), b) if a == b => format!("{a}"),
            (Some(a), b) => format!("{a}..{b}"),
            (None, _) => "-".into(),
        };
        let unit = match scenario.call {
            Call::List(_) => "incidents",
            Call::Get(..) => "events",
        };
        println!("{:<20} {}", scenario.name, scenario.what);
        println!(
            "{:<20} {} ok ({:.0}/s), {} errors, {} wrong, {items} {unit} per answer; ms: {} [p99 < {} ms: {verdict}]",
            "",
            outcome.ok,
            (outcome.ok + args.warmup) as f64 / secs,
            outcome.errors,
            outcome.wrong,
            percentiles(&hist),
            args.target_ms
        );
        if let Some(e) = &outcome.first_error {
            println!("{:<20} first error: {e}", "");
        }
        all_ok &= outcome.errors == 0 && outcome.wrong == 0 && verdict == "ok";
    }
    Ok(all_ok)
}
