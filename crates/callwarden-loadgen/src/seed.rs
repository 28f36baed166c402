//! `callwarden-loadgen seed-incidents`: writes a large, deterministic incident history straight
//! into Postgres with `COPY`, for benchmarking the Review queries.
//!
//! Incidents are spread evenly over the past `--days` (oldest first, UUIDv7 ids from their
//! creation time, like the service's). Most are RESOLVED or DISMISSED; the newest `--active`
//! that a real queue would still hold (every one not yet past its deadline, a fifth of the
//! overdue ones) are OPEN or ACKNOWLEDGED. Every incident carries a valid hash chain (a
//! `reported` event with the service's details, then what its status implies), so
//! `callwarden verify` passes; `--events-heavy` incidents get 50 events each (statements and
//! evidence). Everything is a function of `--seed`, the incident's index and the time of the run.

use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use callwarden_domain::chain::{ChainEvent, GENESIS, Sealing};
use callwarden_domain::incident::{BlockChoice, Category, Severity};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::migrate::MigrateDatabase;
use sqlx::{Connection, PgConnection, Postgres};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::Rng;

/// The workspace's migrations, embedded: a seeded database has the schema the service expects.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Events of an `--events-heavy` incident.
pub const HEAVY_EVENTS: usize = 50;

const MINUTE: i64 = 60_000_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

#[derive(clap::Args, Debug)]
pub struct SeedArgs {
    /// The database to fill; created if missing, migrations applied.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Incidents to write.
    #[arg(long, default_value_t = 1_000_000)]
    count: u64,
    /// Of them, OPEN or ACKNOWLEDGED (the newest that a queue would still hold).
    #[arg(long, default_value_t = 2000)]
    active: u64,
    /// Of them, incidents with 50 events each (statements and evidence).
    #[arg(long, default_value_t = 100)]
    events_heavy: u64,
    /// How far back the history goes, in days.
    #[arg(long, default_value_t = 730)]
    days: u32,
    /// Seed of everything but the time of the run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Incidents per COPY batch.
    #[arg(long, default_value_t = 10_000)]
    batch: u64,
    /// Threads generating batches (hashing, formatting).
    #[arg(long, default_value_t = 2)]
    threads: u64,
    /// Drop the database first if it exists (ends its sessions).
    #[arg(long)]
    recreate: bool,
    /// Keep the secondary indexes during the load (slower) instead of dropping them and
    /// building them again (same definitions, from `pg_get_indexdef`) afterwards.
    #[arg(long)]
    keep_indexes: bool,
    /// Check the events' foreign key row by row during the load (slower). Without it the events
    /// connection runs with `session_replication_role = replica`, which skips that check (and
    /// every other trigger) for its inserts: batches are sent only after their incidents
    /// committed, so the key holds anyway.
    #[arg(long)]
    check_foreign_keys: bool,
}

const LINES: [&str; 10] = [
    "+48221002030",
    "+48221002031",
    "+48221002032",
    "+48124003000",
    "+48585004000",
    "+48616005000",
    "+48717006000",
    "+48800100200",
    "kids-helpline",
    "seniors-line",
];
const SWITCHES: [&str; 4] = ["sw-waw-1", "sw-waw-2", "sw-krk-1", "sw-gdn-1"];
const OPERATORS: u64 = 400;
const SUPERVISORS: u64 = 25;
/// Callers reported again and again; the rest come from a pool of `CALLERS`.
const FREQUENT_CALLERS: u64 = 200;
const CALLERS: u64 = 300_000;

const NOTES: [&str; 12] = [
    "Caller shouted insults and would not stop when asked.",
    "Repeated sexual remarks after two warnings.",
    "Threatened to come to the office and hurt someone.",
    "Kept asking for my surname and where I live.",
    "Described content that sounds illegal; call ended.",
    "Voice and story suggest the caller is a child.",
    "Caller said they do not want to live anymore.",
    "Shared a lot of personal details of third persons.",
    "Automated sales pitch, same script as yesterday.",
    "Silent call, then heavy breathing, third time today.",
    "Long abusive rant about the service, then hung up.",
    "Asked for a colleague by name and became hostile.",
];
const DISMISS_REASONS: [&str; 4] = [
    "no violation after listening to the recording",
    "duplicate of an earlier report of the same call",
    "misunderstanding; the caller apologised",
    "reported by mistake",
];
const RESOLUTION_NOTES: [&str; 4] = [
    "talked it through with the operator",
    "caller contacted and warned",
    "confirmed from the recording",
    "handled as agreed in the team meeting",
];
const STATEMENTS: [&str; 4] = [
    "I sat next to the operator and heard the caller raise their voice several times.",
    "The recording confirms the operator's account; the caller was warned twice.",
    "I took over the follow-up call; the caller repeated the same remarks.",
    "Discussed with the operator in the debrief; no further action from their side.",
];

/// Weighted choice: `weights` sums to 100.
fn pick<T: Copy>(rng: &mut Rng, items: &[T], weights: &[u64]) -> T {
    debug_assert_eq!(items.len(), weights.len());
    let mut r = rng.below(100);
    for (item, w) in items.iter().zip(weights) {
        if r < *w {
            return *item;
        }
        r -= w;
    }
    items[items.len() - 1]
}

fn severity_weights(rng: &mut Rng) -> Severity {
    pick(
        rng,
        &[
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ],
        &[35, 35, 20, 10],
    )
}

/// The default decision deadline of a severity (see docs/review.md), in microseconds.
fn deadline_after(severity: Severity) -> i64 {
    match severity {
        Severity::Critical => 15 * MINUTE,
        Severity::High => HOUR,
        Severity::Medium => 8 * HOUR,
        Severity::Low => 72 * HOUR,
    }
}

/// A log-uniform duration between `lo` and `hi` microseconds.
fn log_uniform(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    let (lo, hi) = (lo as f64, hi as f64);
    (lo * (hi / lo).powf(rng.unit())) as i64
}

fn time(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).expect("a time in range")
}

/// As the service writes times into event details (`DateTime::to_rfc3339`).
fn rfc3339(us: i64) -> String {
    time(us).to_rfc3339()
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00`, as Postgres reads a timestamptz; much faster than
/// chrono's formatting, which matters at millions of timestamps.
fn push_timestamp(out: &mut Vec<u8>, us: i64) {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let digits = |out: &mut Vec<u8>, n: i64, width: usize| {
        let mut buf = [b'0'; 6];
        let mut n = n;
        for k in (0..width).rev() {
            buf[k] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    };
    digits(out, year, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b' ');
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, sod / 60 % 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, micros, 6);
    out.extend_from_slice(b"+00");
}

/// A UUIDv7 for a time, its random bits from `rng`, as the service's `Uuid::now_v7()` would be.
fn uuid_v7(at_us: i64, rng: &mut Rng) -> Uuid {
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&rng.next().to_le_bytes());
    bytes[8..].copy_from_slice(&rng.next().to_le_bytes()[..2]);
    uuid::Builder::from_unix_timestamp_millis((at_us / 1000) as u64, &bytes).into_uuid()
}

fn caller_number(k: u64) -> String {
    // Distinct Polish mobiles (+48 60x xxx xxx): k → (k * a + b) mod 10^7 is a bijection.
    format!("+4860{:07}", (k * 7_919_993 + 1_234_567) % 10_000_000)
}

/// One event, before its links are computed.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub at: i64,
    pub actor: String,
    pub kind: &'static str,
    pub details: Value,
}

/// A global block rule written by a CALLER_BLOCKED outcome.
#[derive(Debug, Clone)]
pub(crate) struct BlockRule {
    pub id: Uuid,
    pub pattern: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub reason: String,
}

/// One generated incident: its row and its chain.
#[derive(Debug, Clone)]
pub(crate) struct Incident {
    pub id: Uuid,
    pub request_id: String,
    pub call_id: String,
    pub switch_id: &'static str,
    pub line: &'static str,
    pub caller: Option<String>,
    pub reporter: String,
    pub anonymous: bool,
    pub category: Category,
    pub severity: Severity,
    pub note: &'static str,
    pub block: BlockChoice,
    pub source: &'static str,
    pub debrief: bool,
    pub escalated: bool,
    pub needs_attention: bool,
    pub status: &'static str,
    pub created_at: i64,
    pub reporter_ref: Option<String>,
    pub deadline_at: i64,
    pub deadline_escalated_at: Option<i64>,
    pub acknowledged: Option<(i64, String)>,
    pub closed: Option<(i64, String)>,
    pub outcome: Option<&'static str>,
    pub authority: Option<&'static str>,
    pub reference: Option<String>,
    pub rule: Option<BlockRule>,
    pub resolution_note: Option<String>,
    pub events: Vec<Event>,
    /// (prev_hash, hash) of each event.
    pub links: Vec<([u8; 32], [u8; 32])>,
}

impl Incident {
    fn chain_hash(&self) -> [u8; 32] {
        self.links.last().map_or(GENESIS, |l| l.1)
    }
}

/// Everything about the data set that is not per incident.
pub(crate) struct Plan {
    seed: u64,
    count: u64,
    /// Microseconds since the epoch.
    now: i64,
    start: i64,
    span: i64,
    active: Vec<bool>,
    /// Indices of the 50-event incidents, ascending.
    heavy: Vec<u64>,
}

/// What an incident's index alone decides, cheaply: enough to choose the active ones.
struct Basics {
    rng: Rng,
    created_at: i64,
    severity: Severity,
    /// Whether an overdue incident is still in the queue.
    keep_overdue: bool,
}

impl Plan {
    pub(crate) fn new(
        seed: u64,
        count: u64,
        active: u64,
        heavy: u64,
        days: u32,
        now: DateTime<Utc>,
    ) -> Self {
        let now = now.timestamp_micros();
        let span = i64::from(days.max(1)) * DAY;
        let mut plan = Self {
            seed,
            count,
            now,
            // The newest incident is at least a minute old.
            start: now - MINUTE - span,
            span,
            active: vec![false; count as usize],
            heavy: Vec::new(),
        };
        // Walking back from the newest: what is not overdue yet is still in the queue, and a
        // fifth of what is; the rest was decided.
        let want = active.min(count);
        let mut got = 0;
        for i in (0..count).rev() {
            if got == want {
                break;
            }
            let b = plan.basics(i);
            let overdue = b.created_at + deadline_after(b.severity) < now;
            if !overdue || b.keep_overdue {
                plan.active[i as usize] = true;
                got += 1;
            }
        }
        for i in (0..count).rev() {
            if got == want {
                break;
            }
            if !plan.active[i as usize] {
                plan.active[i as usize] = true;
                got += 1;
            }
        }
        let heavy = heavy.min(count);
        plan.heavy = (0..heavy)
            .map(|k| (2 * k + 1) * count / (2 * heavy))
            .collect();
        plan
    }

    fn basics(&self, i: u64) -> Basics {
        let mut rng = Rng(self.seed ^ (i + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        rng.next();
        let slot = (self.span as i128 / self.count as i128).max(1) as u64;
        let base = (i as i128 * self.span as i128 / self.count as i128) as i64;
        let created_at = self.start + base + rng.below(slot) as i64;
        let severity = severity_weights(&mut rng);
        let keep_overdue = rng.unit() < 0.2;
        Basics {
            rng,
            created_at,
            severity,
            keep_overdue,
        }
    }

    pub(crate) fn is_heavy(&self, i: u64) -> bool {
        self.heavy.binary_search(&i).is_ok()
    }

    /// Incident `i` (0 is the oldest), complete with its chain.
    pub(crate) fn incident(&self, i: u64) -> Incident {
        let Basics {
            mut rng,
            created_at,
            severity,
            ..
        } = self.basics(i);
        let heavy = self.is_heavy(i);
        let active = self.active[i as usize];
        let id = uuid_v7(created_at, &mut rng);
        let category = pick(
            &mut rng,
            &Category::ALL,
            &[30, 8, 8, 6, 3, 3, 5, 10, 17, 10],
        );
        let caller = {
            let r = rng.unit();
            if heavy {
                Some(caller_number(rng.below(FREQUENT_CALLERS / 4)))
            } else if r < 0.04 {
                None
            } else if r < 0.15 {
                // Skewed: the first of the frequent callers are reported most.
                let k =
                    rng.below(FREQUENT_CALLERS) * rng.below(FREQUENT_CALLERS) / FREQUENT_CALLERS;
                Some(caller_number(k))
            } else {
                Some(caller_number(FREQUENT_CALLERS + rng.below(CALLERS)))
            }
        };
        let reporter = format!("op-{:04}", rng.below(OPERATORS));
        let anonymous = rng.unit() < 0.08;
        let reporter_ref = anonymous.then(|| format!("sealed-{:016x}", rng.next()));
        let line = LINES[rng.below(LINES.len() as u64) as usize];
        let switch_id = SWITCHES[rng.below(SWITCHES.len() as u64) as usize];
        let note = NOTES[rng.below(NOTES.len() as u64) as usize];
        let block = pick(
            &mut rng,
            &[
                BlockChoice::None,
                BlockChoice::FromMe,
                BlockChoice::GlobalRequest,
            ],
            &[70, 20, 10],
        );
        let source = pick(
            &mut rng,
            &["end_and_flag", "flag_call", "report_past_call"],
            &[50, 30, 20],
        );
        let debrief = rng.unit() < 0.1;
        let category_escalates = matches!(
            category,
            Category::ThreatOrViolence
                | Category::IdentityProbing
                | Category::IllegalContent
                | Category::MinorSuspected
        );
        let needs_attention = category == Category::SelfHarmRisk;
        let deadline_at = created_at + deadline_after(severity);
        let call_id = format!("call-{}", crate::uuid_like(rng.next(), rng.next()));
        let supervisor = format!("sup-{:02}", rng.below(SUPERVISORS));
        let age = self.now - created_at;

        let mut events = vec![Event {
            at: created_at,
            actor: reporter.clone(),
            kind: "reported",
            details: json!({
                "call_id": call_id,
                "switch_id": switch_id,
                "line": line,
                "caller": caller,
                "category": category.as_str(),
                "severity": severity.as_str(),
                "note": note,
                "block": block.as_str(),
                "anonymous": anonymous,
                "source": source,
            }),
        }];
        if category_escalates {
            events.push(Event {
                at: created_at,
                actor: "system".into(),
                kind: "escalated",
                details: json!({ "why": "category", "category": category.as_str() }),
            });
        }

        // What happened since: acknowledgement and decision times.
        let ack_delay = match severity {
            Severity::Critical => log_uniform(&mut rng, MINUTE, 30 * MINUTE),
            Severity::High => log_uniform(&mut rng, 3 * MINUTE, 2 * HOUR),
            Severity::Medium => log_uniform(&mut rng, 10 * MINUTE, 12 * HOUR),
            Severity::Low => log_uniform(&mut rng, HOUR, 96 * HOUR),
        };
        let decide_delay = log_uniform(&mut rng, 2 * MINUTE, 48 * HOUR);
        let (acknowledged_at, closed_at, status) = if active {
            if rng.unit() < 0.35 {
                (
                    Some(created_at + ack_delay.min(age * 9 / 10)),
                    None,
                    "acknowledged",
                )
            } else {
                (None, None, "open")
            }
        } else {
            let ack = created_at + ack_delay.min(age / 3);
            let closed = ack + decide_delay.min(age / 3);
            let status = if rng.unit() < 0.6 {
                "resolved"
            } else {
                "dismissed"
            };
            (Some(ack), Some(closed), status)
        };
        // A critical incident left OPEN past its deadline was escalated once, by the service.
        let escalated_at = Some(deadline_at + 1_000_000).filter(|at| {
            severity == Severity::Critical && *at < acknowledged_at.unwrap_or(self.now)
        });
        if let Some(at) = escalated_at {
            events.push(Event {
                at,
                actor: "system".into(),
                kind: "deadline_escalated",
                details: json!({
                    "deadline": rfc3339(deadline_at),
                    "severity": severity.as_str(),
                    "overdue_seconds": (at - deadline_at) / 1_000_000,
                }),
            });
        }
        if let Some(at) = acknowledged_at {
            events.push(Event {
                at,
                actor: supervisor.clone(),
                kind: "acknowledged",
                details: json!({ "overdue": deadline_at < at }),
            });
        }

        let mut outcome = None;
        let mut authority = None;
        let mut reference = None;
        let mut rule = None;
        let mut resolution_note = None;
        let mut closing = Vec::new();
        if let Some(closed_at) = closed_at {
            if status == "resolved" {
                let can_block = caller.is_some() && category != Category::SelfHarmRisk;
                let chosen = pick(
                    &mut rng,
                    &[
                        "no_action",
                        "warning_issued",
                        "caller_blocked",
                        "referred_to_authorities",
                        "mediated",
                    ],
                    &[25, 35, 15, 5, 20],
                );
                let chosen = if chosen == "caller_blocked" && !can_block {
                    "warning_issued"
                } else {
                    chosen
                };
                let note = RESOLUTION_NOTES[rng.below(RESOLUTION_NOTES.len() as u64) as usize];
                let mut details = json!({
                    "outcome": chosen,
                    "authority": null,
                    "reference": null,
                    "block_ttl_seconds": 0,
                    "note": note,
                });
                match chosen {
                    "referred_to_authorities" => {
                        let r = format!(
                            "RSD-{}-{:06}",
                            time(closed_at).format("%Y"),
                            rng.below(1_000_000)
                        );
                        details["authority"] = json!("Policja");
                        details["reference"] = json!(r);
                        authority = Some("Policja");
                        reference = Some(r);
                    }
                    "caller_blocked" => {
                        let ttl = if rng.unit() < 0.2 { 0 } else { 7 * 86_400 };
                        let r = BlockRule {
                            id: uuid_v7(closed_at, &mut rng),
                            pattern: caller.clone().expect("a known caller"),
                            created_by: supervisor.clone(),
                            created_at: closed_at,
                            expires_at: (ttl > 0).then_some(closed_at + ttl * 1_000_000),
                            reason: format!("review of incident {id} ({})", category.as_str()),
                        };
                        details["block_ttl_seconds"] = json!(ttl);
                        rule = Some(r);
                    }
                    _ => {}
                }
                closing.push(Event {
                    at: closed_at,
                    actor: supervisor.clone(),
                    kind: "resolved",
                    details,
                });
                if let Some(r) = &rule {
                    closing.push(Event {
                        at: closed_at,
                        actor: "system".into(),
                        kind: "caller_blocked",
                        details: json!({
                            "rule_id": r.id.to_string(),
                            "pattern": r.pattern,
                            "scope": "global",
                            "scope_value": "",
                            "expires_at": r.expires_at.map(rfc3339),
                            "why": ["review"],
                        }),
                    });
                }
                outcome = Some(chosen);
                resolution_note = Some(note.to_owned());
            } else {
                let reason = DISMISS_REASONS[rng.below(DISMISS_REASONS.len() as u64) as usize];
                closing.push(Event {
                    at: closed_at,
                    actor: supervisor.clone(),
                    kind: "dismissed",
                    details: json!({ "reason": reason }),
                });
                resolution_note = Some(reason.to_owned());
            }
        }

        if heavy {
            // Statements (every fifth event evidence) between the last event so far and the
            // decision (or now).
            let fill = HEAVY_EVENTS - events.len() - closing.len();
            let from = events.last().map_or(created_at, |e| e.at);
            let until = closed_at.unwrap_or(self.now).max(from);
            for k in 0..fill {
                let at = from + (until - from) * (k as i64 + 1) / (fill as i64 + 1);
                if k % 5 == 4 {
                    let sha = {
                        let words = [rng.next(), rng.next(), rng.next(), rng.next()];
                        words
                            .iter()
                            .map(|w| format!("{w:016x}"))
                            .collect::<String>()
                    };
                    let evidence_id = uuid_v7(at, &mut rng).to_string();
                    events.push(Event {
                        at,
                        actor: supervisor.clone(),
                        kind: "evidence_attached",
                        details: json!({
                            "evidence_id": evidence_id,
                            "uri": format!("s3://recordings/{}/{evidence_id}.wav", time(at).format("%Y/%m")),
                            "sha256": sha,
                            "duration_seconds": 60 + rng.below(1200),
                            "description": "call recording",
                            "captured_at": rfc3339(created_at),
                        }),
                    });
                } else {
                    let witness = rng.unit() < 0.5;
                    let author = if witness {
                        format!("op-{:04}", rng.below(OPERATORS))
                    } else {
                        supervisor.clone()
                    };
                    let text = STATEMENTS[rng.below(STATEMENTS.len() as u64) as usize];
                    events.push(Event {
                        at,
                        actor: author.clone(),
                        kind: "statement_added",
                        details: json!({
                            "statement_id": uuid_v7(at, &mut rng).to_string(),
                            "role": if witness { "witness" } else { "supervisor" },
                            "text": text,
                        }),
                    });
                }
            }
        }
        events.extend(closing);

        let mut links = Vec::with_capacity(events.len());
        let mut prev = GENESIS;
        for (k, e) in events.iter().enumerate() {
            let hash = ChainEvent {
                incident_id: id,
                seq: k as i32 + 1,
                at: time(e.at),
                actor: &e.actor,
                kind: e.kind,
                details: &e.details,
                // Synthetic history, like events written before retention existed.
                sealing: Sealing::Whole,
            }
            .hash(&prev);
            links.push((prev, hash));
            prev = hash;
        }

        Incident {
            id,
            request_id: format!("seed-{id}"),
            call_id,
            switch_id,
            line,
            caller,
            reporter: reporter.clone(),
            anonymous,
            category,
            severity,
            note,
            block,
            source,
            debrief,
            escalated: category_escalates || escalated_at.is_some(),
            needs_attention,
            status,
            created_at,
            reporter_ref,
            deadline_at,
            deadline_escalated_at: escalated_at,
            acknowledged: acknowledged_at.map(|at| (at, supervisor.clone())),
            closed: closed_at.map(|at| (at, supervisor.clone())),
            outcome,
            authority,
            reference,
            rule,
            resolution_note,
            events,
            links,
        }
    }
}

/// Text-format COPY rows.
#[derive(Default)]
struct Rows(Vec<u8>);

impl Rows {
    fn text(&mut self, s: &str) -> &mut Self {
        let bytes = s.as_bytes();
        if bytes
            .iter()
            .any(|b| matches!(b, b'\\' | b'\n' | b'\r' | b'\t'))
        {
            for &b in bytes {
                match b {
                    b'\\' => self.0.extend_from_slice(b"\\\\"),
                    b'\n' => self.0.extend_from_slice(b"\\n"),
                    b'\r' => self.0.extend_from_slice(b"\\r"),
                    b'\t' => self.0.extend_from_slice(b"\\t"),
                    _ => self.0.push(b),
                }
            }
        } else {
            self.0.extend_from_slice(bytes);
        }
        self.0.push(b'\t');
        self
    }
    fn opt(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.text(s),
            None => {
                self.0.extend_from_slice(b"\\N\t");
                self
            }
        }
    }
    fn time(&mut self, us: i64) -> &mut Self {
        push_timestamp(&mut self.0, us);
        self.0.push(b'\t');
        self
    }
    fn opt_time(&mut self, us: Option<i64>) -> &mut Self {
        match us {
            Some(us) => self.time(us),
            None => self.opt(None),
        }
    }
    fn bool(&mut self, b: bool) -> &mut Self {
        self.text(if b { "t" } else { "f" })
    }
    fn bytea(&mut self, bytes: &[u8]) -> &mut Self {
        // `\x…` in bytea's hex input; the backslash doubled for COPY.
        self.0.extend_from_slice(b"\\\\x");
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for &b in bytes {
            self.0.push(DIGITS[usize::from(b >> 4)]);
            self.0.push(DIGITS[usize::from(b & 0xf)]);
        }
        self.0.push(b'\t');
        self
    }
    fn end(&mut self) {
        if self.0.last() == Some(&b'\t') {
            self.0.pop();
        }
        self.0.push(b'\n');
    }
}

const INCIDENT_COLUMNS: &str = "id, request_id, call_id, switch_id, line, caller_e164, reporter, \
    anonymous, category, severity, note, block_choice, source, debrief_requested, escalated, \
    needs_attention, status, created_at, reporter_ref, deadline_at, deadline_escalated_at, \
    acknowledged_at, acknowledged_by, closed_at, closed_by, outcome, authority, reference, \
    block_rule_id, resolution_note, version, chain_hash";
const EVENT_COLUMNS: &str = "incident_id, seq, at, actor, kind, details, prev_hash, hash";
const RULE_COLUMNS: &str = "id, pattern, effect, scope_kind, scope_value, reason, created_by, \
    created_at, expires_at, changed_at";

/// One batch of incidents as COPY input for each table.
#[derive(Default)]
struct Batch {
    incidents: Rows,
    events: Rows,
    rules: Rows,
    counts: Counts,
}

#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    incidents: u64,
    events: u64,
    rules: u64,
    open: u64,
    acknowledged: u64,
    overdue: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.incidents += o.incidents;
        self.events += o.events;
        self.rules += o.rules;
        self.open += o.open;
        self.acknowledged += o.acknowledged;
        self.overdue += o.overdue;
    }
}

impl Batch {
    fn add(&mut self, inc: &Incident, now: i64) {
        let id = inc.id.to_string();
        let r = &mut self.incidents;
        r.text(&id)
            .text(&inc.request_id)
            .text(&inc.call_id)
            .text(inc.switch_id)
            .text(inc.line)
            .opt(inc.caller.as_deref())
            .text(&inc.reporter)
            .bool(inc.anonymous)
            .text(inc.category.as_str())
            .text(inc.severity.as_str())
            .text(inc.note)
            .text(inc.block.as_str())
            .text(inc.source)
            .bool(inc.debrief)
            .bool(inc.escalated)
            .bool(inc.needs_attention)
            .text(inc.status)
            .time(inc.created_at)
            .opt(inc.reporter_ref.as_deref())
            .time(inc.deadline_at)
            .opt_time(inc.deadline_escalated_at)
            .opt_time(inc.acknowledged.as_ref().map(|a| a.0))
            .opt(inc.acknowledged.as_ref().map(|a| a.1.as_str()))
            .opt_time(inc.closed.as_ref().map(|c| c.0))
            .opt(inc.closed.as_ref().map(|c| c.1.as_str()))
            .opt(inc.outcome)
            .opt(inc.authority)
            .opt(inc.reference.as_deref())
            .opt(inc.rule.as_ref().map(|r| r.id.to_string()).as_deref())
            .opt(inc.resolution_note.as_deref())
            .text(&inc.events.len().to_string())
            .bytea(&inc.chain_hash());
        r.end();
        for (k, (e, (prev, hash))) in inc.events.iter().zip(&inc.links).enumerate() {
            let details = e.details.to_string();
            self.events
                .text(&id)
                .text(&(k + 1).to_string())
                .time(e.at)
                .text(&e.actor)
                .text(e.kind)
                .text(&details)
                .bytea(prev)
                .bytea(hash)
                .end();
        }
        if let Some(rule) = &inc.rule {
            self.rules
                .text(&rule.id.to_string())
                .text(&rule.pattern)
                .text("block")
                .text("global")
                .text("")
                .text(&rule.reason)
                .text(&rule.created_by)
                .time(rule.created_at)
                .opt_time(rule.expires_at)
                .time(rule.created_at)
                .end();
            self.counts.rules += 1;
        }
        self.counts.incidents += 1;
        self.counts.events += inc.events.len() as u64;
        match inc.status {
            "open" => self.counts.open += 1,
            "acknowledged" => self.counts.acknowledged += 1,
            _ => {}
        }
        if inc.closed.is_none() && inc.deadline_at < now {
            self.counts.overdue += 1;
        }
    }
}

async fn copy(conn: &mut PgConnection, table: &str, columns: &str, rows: &Rows) -> Result<u64> {
    if rows.0.is_empty() {
        return Ok(0);
    }
    let mut copy = conn
        .copy_in_raw(&format!("COPY {table} ({columns}) FROM STDIN"))
        .await
        .with_context(|| format!("COPY {table}"))?;
    if let Err(e) = copy.send(rows.0.as_slice()).await {
        let _ = copy.abort(e.to_string()).await;
        return Err(e).with_context(|| format!("COPY {table}"));
    }
    copy.finish().await.with_context(|| format!("COPY {table}"))
}

/// Creates the database if needed (dropping it first with `recreate`) and applies migrations.
async fn prepare(url: &str, recreate: bool) -> Result<PgConnection> {
    if recreate && Postgres::database_exists(url).await? {
        Postgres::force_drop_database(url)
            .await
            .context("dropping the database")?;
    }
    if !Postgres::database_exists(url).await? {
        Postgres::create_database(url)
            .await
            .context("creating the database")?;
    }
    let mut conn = PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    MIGRATOR
        .run(&mut conn)
        .await
        .context("applying migrations")?;
    Ok(conn)
}

async fn connect_for_load(url: &str, replica: bool) -> Result<PgConnection> {
    let mut conn = PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    // Each batch commits on its own; losing the last ones in a crash is fine for a seed.
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    if replica {
        sqlx::query("SET session_replication_role = replica")
            .execute(&mut conn)
            .await
            .context(
                "SET session_replication_role needs a superuser; or pass --check-foreign-keys",
            )?;
    }
    Ok(conn)
}

/// The indexes of the seeded tables that back no constraint, as (name, definition).
async fn secondary_indexes(conn: &mut PgConnection) -> Result<Vec<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT i.relname::text, pg_get_indexdef(i.oid) FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
         WHERE t.relname IN ('incidents', 'incident_events', 'rules') \
           AND t.relnamespace = 'public'::regnamespace \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) \
         ORDER BY i.relname",
    )
    .fetch_all(conn)
    .await?)
}

/// Builds the indexes again on two connections at once.
async fn rebuild_indexes(
    a: &mut PgConnection,
    b: &mut PgConnection,
    indexes: &[(String, String)],
) -> Result<()> {
    async fn build(conn: &mut PgConnection, defs: Vec<&str>) -> Result<()> {
        sqlx::query("SET maintenance_work_mem = '256MB'")
            .execute(&mut *conn)
            .await?;
        for def in defs {
            sqlx::query(sqlx::AssertSqlSafe(def.to_owned()))
                .execute(&mut *conn)
                .await
                .with_context(|| def.to_owned())?;
        }
        Ok(())
    }
    let defs = |parity: usize| -> Vec<&str> {
        indexes
            .iter()
            .enumerate()
            .filter(|(k, _)| k % 2 == parity)
            .map(|(_, (_, def))| def.as_str())
            .collect()
    };
    tokio::try_join!(build(a, defs(0)), build(b, defs(1)))?;
    Ok(())
}

pub async fn run(args: SeedArgs) -> Result<bool> {
    ensure!(args.count > 0, "--count must be positive");
    ensure!(
        args.batch > 0 && args.threads > 0,
        "--batch and --threads must be positive"
    );
    ensure!(
        args.count <= 100_000_000,
        "--count must be at most 100000000"
    );
    let started = Instant::now();
    let mut conn = prepare(&args.database_url, args.recreate).await?;
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM incidents")
        .fetch_one(&mut conn)
        .await?;
    if existing > 0 {
        bail!(
            "the database already holds {existing} incidents; seed an empty one (or pass --recreate)"
        );
    }
    let deferred = if args.keep_indexes {
        Vec::new()
    } else {
        let indexes = secondary_indexes(&mut conn).await?;
        for (name, _) in &indexes {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP INDEX \"{name}\"")))
                .execute(&mut conn)
                .await?;
        }
        indexes
    };
    conn.close().await?;

    let now = Utc::now();
    let plan = std::sync::Arc::new(Plan::new(
        args.seed,
        args.count,
        args.active,
        args.events_heavy,
        args.days,
        now,
    ));
    println!(
        "seed: {} incidents over {} days ({} active, {} with {HEAVY_EVENTS} events), {} threads, batches of {}",
        args.count,
        args.days,
        args.active.min(args.count),
        plan.heavy.len(),
        args.threads,
        args.batch
    );

    // Generators → incidents COPY (commits each batch) → events COPY: a batch's events are sent
    // only after its incidents committed, so the foreign key holds without disabling it.
    let batches = args.count.div_ceil(args.batch);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(args.threads as usize * 2);
    let mut generators = Vec::new();
    for t in 0..args.threads {
        let (plan, tx, size) = (plan.clone(), batch_tx.clone(), args.batch);
        generators.push(std::thread::spawn(move || {
            let mut b = t;
            while b < batches {
                let mut batch = Batch::default();
                for i in b * size..((b + 1) * size).min(plan.count) {
                    batch.add(&plan.incident(i), plan.now);
                }
                if tx.blocking_send(batch).is_err() {
                    return;
                }
                b += args.threads;
            }
        }));
    }
    drop(batch_tx);

    let mut incidents_conn = connect_for_load(&args.database_url, false).await?;
    let mut events_conn = connect_for_load(&args.database_url, !args.check_foreign_keys).await?;
    let (events_tx, mut events_rx) = mpsc::channel::<Rows>(2);
    let events_task = tokio::spawn(async move {
        let (mut n, mut busy) = (0, std::time::Duration::ZERO);
        while let Some(rows) = events_rx.recv().await {
            let t = Instant::now();
            n += copy(&mut events_conn, "incident_events", EVENT_COLUMNS, &rows).await?;
            busy += t.elapsed();
        }
        anyhow::Ok((n, busy, events_conn))
    });
    let mut counts = Counts::default();
    let mut incidents_busy = std::time::Duration::ZERO;
    let mut done = 0u64;
    let mut next_report = args.count / 10;
    while let Some(batch) = batch_rx.recv().await {
        let t = Instant::now();
        copy(
            &mut incidents_conn,
            "incidents",
            INCIDENT_COLUMNS,
            &batch.incidents,
        )
        .await?;
        copy(&mut incidents_conn, "rules", RULE_COLUMNS, &batch.rules).await?;
        incidents_busy += t.elapsed();
        counts.add(&batch.counts);
        done += batch.counts.incidents;
        if events_tx.send(batch.events).await.is_err() {
            break;
        }
        if done >= next_report && done < args.count {
            println!(
                "  {done} incidents written ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            next_report += args.count / 10;
        }
    }
    drop(events_tx);
    let (events_written, events_busy, mut events_conn) = events_task.await??;
    for g in generators {
        g.join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))?;
    }
    ensure!(
        counts.incidents == args.count && events_written == counts.events,
        "wrote {} of {} incidents and {events_written} of {} events",
        counts.incidents,
        args.count,
        counts.events
    );
    let loaded = started.elapsed();
    rebuild_indexes(&mut incidents_conn, &mut events_conn, &deferred).await?;
    let indexed = started.elapsed();
    events_conn.close().await?;

    sqlx::query("ANALYZE incidents, incident_events, rules")
        .execute(&mut incidents_conn)
        .await?;
    let heavy: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM incidents WHERE version = $1 ORDER BY created_at DESC LIMIT 5",
    )
    .bind(HEAVY_EVENTS as i32)
    .fetch_all(&mut incidents_conn)
    .await?;
    incidents_conn.close().await?;
    let total = started.elapsed();
    println!(
        "seeded: {} incidents, {} events, {} block rules in {:.1} s ({:.0} incidents/s; load {:.1} s, {} indexes built {:.1} s, ANALYZE {:.1} s)",
        counts.incidents,
        counts.events,
        counts.rules,
        total.as_secs_f64(),
        counts.incidents as f64 / total.as_secs_f64(),
        loaded.as_secs_f64(),
        deferred.len(),
        (indexed - loaded).as_secs_f64(),
        (total - indexed).as_secs_f64()
    );
    println!(
        "  COPY busy: incidents and rules {:.1} s, events {:.1} s (in parallel)",
        incidents_busy.as_secs_f64(),
        events_busy.as_secs_f64()
    );
    println!(
        "queue: {} open, {} acknowledged, {} of them overdue at {}",
        counts.open,
        counts.acknowledged,
        counts.overdue,
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let heavy: Vec<String> = heavy.iter().map(Uuid::to_string).collect();
    println!(
        "{HEAVY_EVENTS}-event incidents (SELECT id FROM incidents WHERE version = {HEAVY_EVENTS}), e.g. {}",
        heavy.join(" ")
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwarden_domain::chain::{StoredEvent, verify};

    fn plan(count: u64, active: u64, heavy: u64) -> Plan {
        let now = DateTime::parse_from_rfc3339("2026-11-21T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Plan::new(7, count, active, heavy, 730, now)
    }

    fn verifies(inc: &Incident) -> usize {
        let times: Vec<_> = inc.events.iter().map(|e| time(e.at)).collect();
        verify(
            inc.events
                .iter()
                .zip(&inc.links)
                .zip(&times)
                .enumerate()
                .map(|(k, ((e, (prev, hash)), at))| StoredEvent {
                    event: ChainEvent {
                        incident_id: inc.id,
                        seq: k as i32 + 1,
                        at: *at,
                        actor: &e.actor,
                        kind: e.kind,
                        details: &e.details,
                        sealing: Sealing::Whole,
                    },
                    prev_hash: prev,
                    hash,
                }),
        )
        .unwrap_or_else(|b| panic!("incident {}: {b:?}", inc.id))
    }

    #[test]
    fn every_chain_verifies_and_heavy_incidents_have_fifty_events() {
        let p = plan(3000, 300, 20);
        let mut heavy = 0;
        for i in 0..p.count {
            let inc = p.incident(i);
            let n = verifies(&inc);
            assert_eq!(n, inc.events.len());
            assert_eq!(inc.events[0].kind, "reported");
            assert!(
                inc.events.windows(2).all(|w| w[0].at <= w[1].at),
                "{i}: events out of time order"
            );
            if p.is_heavy(i) {
                assert_eq!(n, HEAVY_EVENTS, "{i}");
                heavy += 1;
            } else {
                assert!((1..=6).contains(&n), "{i}: {n} events");
            }
        }
        assert_eq!(heavy, 20);
    }

    #[test]
    fn the_queue_has_the_active_count_and_rows_are_consistent() {
        let p = plan(5000, 400, 10);
        let mut batch = Batch::default();
        let mut last_created = i64::MIN;
        for i in 0..p.count {
            let inc = p.incident(i);
            assert!(inc.created_at >= last_created && inc.created_at < p.now);
            last_created = inc.created_at;
            assert_eq!(
                inc.deadline_at - inc.created_at,
                deadline_after(inc.severity)
            );
            assert_eq!(inc.anonymous, inc.reporter_ref.is_some());
            match inc.status {
                "open" => assert!(inc.acknowledged.is_none() && inc.closed.is_none()),
                "acknowledged" => assert!(inc.acknowledged.is_some() && inc.closed.is_none()),
                "resolved" => assert!(inc.outcome.is_some() && inc.closed.is_some()),
                "dismissed" => assert!(inc.outcome.is_none() && inc.closed.is_some()),
                s => panic!("status {s}"),
            }
            assert_eq!(inc.rule.is_some(), inc.outcome == Some("caller_blocked"));
            if let Some(r) = &inc.rule {
                assert_eq!(Some(&r.pattern), inc.caller.as_ref());
            }
            batch.add(&inc, p.now);
        }
        let c = batch.counts;
        assert_eq!(c.open + c.acknowledged, 400);
        assert!(c.overdue > 0 && c.overdue < 400, "{c:?}");
        assert_eq!(
            batch.incidents.0.iter().filter(|&&b| b == b'\n').count(),
            5000
        );
        assert_eq!(
            batch.events.0.iter().filter(|&&b| b == b'\n').count() as u64,
            c.events
        );
        // Same seed, same data.
        assert_eq!(p.incident(1234).id, plan(5000, 400, 10).incident(1234).id);
    }

    #[test]
    fn timestamps_format_like_chrono() {
        let mut us = -86_400_000_000i64 * 365 * 3;
        while us < 4_102_444_800_000_000 {
            let mut out = Vec::new();
            push_timestamp(&mut out, us);
            let want = time(us).format("%Y-%m-%d %H:%M:%S%.6f+00").to_string();
            assert_eq!(String::from_utf8(out).unwrap(), want);
            us += 7_777_777_777_777 / 1000 + 1;
        }
    }

    #[test]
    fn cli_parses_the_seed_and_review_modes() {
        use crate::{Cli, Mode};
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "callwarden-loadgen",
            "seed-incidents",
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/cw_bench_review",
            "--count",
            "2000",
        ])
        .unwrap();
        let Some(Mode::SeedIncidents(seed)) = cli.mode else {
            panic!("not seed-incidents");
        };
        assert_eq!(
            (seed.count, seed.active, seed.events_heavy, seed.recreate),
            (2000, 2000, 100, false)
        );
        let cli = Cli::try_parse_from([
            "callwarden-loadgen",
            "review",
            "--database-url",
            "postgres://x/y",
            "--concurrency",
            "8",
            "--only",
            "queue,get-heavy",
        ])
        .unwrap();
        assert!(matches!(cli.mode, Some(Mode::Review(_))));
    }

    #[test]
    fn copy_text_escapes_what_copy_would_read_as_syntax() {
        let mut rows = Rows::default();
        rows.text("a\\b\tc\nd")
            .opt(None)
            .bytea(&[0xab, 0x01])
            .bool(true);
        rows.end();
        assert_eq!(
            String::from_utf8(rows.0).unwrap(),
            "a\\\\b\\tc\\nd\t\\N\t\\\\xab01\tt\n"
        );
    }
}
