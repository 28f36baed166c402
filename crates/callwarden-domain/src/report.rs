//! The incident report handed over to management, lawyers or the police: one model, rendered
//! as JSON (serde) or Markdown, so both formats always say the same thing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write;

/// Names the document's shape, so a reader can tell versions apart.
pub const REPORT_FORMAT: &str = "callwarden.incident-report/v1";

/// Event kinds that are actions taken (as opposed to review bookkeeping).
pub const ACTION_KINDS: &[&str] = &[
    "terminate_sent",
    "terminate_acknowledged",
    "operator_cooldown",
    "caller_blocked",
    "escalated",
    "deadline_escalated",
    "attention_requested",
    "debrief_requested",
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentReport {
    pub format: &'static str,
    pub generated_at: DateTime<Utc>,
    pub incident: ReportIncident,
    pub what_happened: WhatHappened,
    /// What was done about it, in order: terminate, blocks, escalations, cooldown.
    pub actions: Vec<ReportEvent>,
    /// Statements of supervisors and witnesses.
    pub statements: Vec<ReportStatement>,
    pub evidence: Vec<ReportEvidence>,
    pub review: ReportReview,
    /// Every event of the chain with its hash.
    pub timeline: Vec<ReportEvent>,
    pub seal: ReportSeal,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportIncident {
    pub id: String,
    pub status: String,
    pub reported_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub line: String,
    /// E.164; None when the caller withheld their number.
    pub caller: Option<String>,
    pub call_id: String,
    pub switch_id: String,
    /// The pseudonym, or the sealed reference.
    pub reporter: String,
    pub reporter_sealed: bool,
    /// end_and_flag, flag_call or report_past_call.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhatHappened {
    pub category: String,
    pub severity: String,
    /// The words reported, as the operator wrote them.
    pub note: String,
    pub block_requested: String,
    pub debrief_requested: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportEvent {
    pub seq: i32,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub details: Value,
    /// Hex SHA-256 link of this event.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportStatement {
    pub at: DateTime<Utc>,
    pub author: String,
    pub role: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportEvidence {
    pub id: String,
    pub uri: String,
    pub sha256: String,
    pub duration_seconds: u32,
    pub description: String,
    pub attached_by: String,
    pub attached_at: DateTime<Utc>,
    pub captured_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportReview {
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    /// no_action, warning_issued, caller_blocked, referred_to_authorities, mediated.
    pub outcome: Option<String>,
    pub authority: Option<String>,
    pub reference: Option<String>,
    pub block_rule_id: Option<String>,
    /// The resolution note, or why it was dismissed.
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportSeal {
    pub events: usize,
    /// Hex SHA-256 of the newest event: it seals everything before it.
    pub chain_hash: String,
    /// Whether every link of the chain verified when the report was made.
    pub chain_verified: bool,
}

impl IncidentReport {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }

    /// The report for people, in the language of `words`. Codes (category, outcome, event
    /// kinds) keep their code beside their name, so the document still matches the JSON.
    pub fn to_markdown(&self, words: &dyn Words) -> String {
        let i = &self.incident;
        let w = &self.what_happened;
        let r = &self.review;
        let say = |id: &str| words.say(id, &[]);
        let named = |kind: &str, code: &str| format!("{} ({code})", words.name(kind, code));
        let time = |t: DateTime<Utc>| words.time(t);
        let dash = || "—".to_owned();
        let mut md = String::new();
        let mut line = |s: String| {
            md.push_str(&s);
            md.push('\n');
        };
        line(format!(
            "# {}",
            words.say("report-title", &[("id", i.id.clone())])
        ));
        line(String::new());
        line(words.say(
            "report-generated",
            &[
                ("at", time(self.generated_at)),
                ("format", REPORT_FORMAT.to_owned()),
            ],
        ));
        line(String::new());
        line(format!("## {}", say("report-section-incident")));
        line(String::new());
        line(format!(
            "| {} | {} |",
            say("report-column-field"),
            say("report-column-value")
        ));
        line("| --- | --- |".into());
        for (k, v) in [
            ("report-status", named("status", &i.status)),
            ("report-reported-at", time(i.reported_at)),
            ("report-deadline", time(i.deadline)),
            ("report-line", i.line.clone()),
            (
                "report-caller",
                i.caller
                    .clone()
                    .unwrap_or_else(|| say("report-caller-withheld")),
            ),
            (
                "report-call",
                words.say(
                    "report-call-value",
                    &[("call", i.call_id.clone()), ("switch", i.switch_id.clone())],
                ),
            ),
            (
                "report-reporter",
                if i.reporter_sealed {
                    words.say(
                        "report-reporter-sealed",
                        &[("reporter", i.reporter.clone())],
                    )
                } else {
                    i.reporter.clone()
                },
            ),
            ("report-source", named("source", &i.source)),
        ] {
            line(format!("| {} | {} |", say(k), cell(&v)));
        }
        line(String::new());
        line(format!("## {}", say("report-section-what")));
        line(String::new());
        let yes_no = |b: bool| say(if b { "report-yes" } else { "report-no" });
        for (k, v) in [
            ("report-category", named("category", &w.category)),
            ("report-severity", named("severity", &w.severity)),
            ("report-block-requested", named("block", &w.block_requested)),
            ("report-debrief-requested", yes_no(w.debrief_requested)),
        ] {
            line(format!("- {}: {v}", say(k)));
        }
        line(String::new());
        line(say("report-words-reported"));
        line(String::new());
        line(quote(&w.note, &say("report-empty")));
        line(String::new());
        line(format!("## {}", say("report-section-actions")));
        line(String::new());
        if self.actions.is_empty() {
            line(say("report-none"));
        }
        for a in &self.actions {
            line(format!(
                "- {}",
                words.say(
                    "report-action",
                    &[
                        ("at", time(a.at)),
                        ("kind", named("event", &a.kind)),
                        ("actor", a.actor.clone()),
                        ("details", inline(&a.details)),
                    ],
                )
            ));
        }
        line(String::new());
        line(format!("## {}", say("report-section-statements")));
        line(String::new());
        if self.statements.is_empty() {
            line(say("report-none"));
        }
        for s in &self.statements {
            line(format!(
                "- {}",
                words.say(
                    "report-statement",
                    &[
                        ("at", time(s.at)),
                        ("author", s.author.clone()),
                        ("role", named("role", &s.role)),
                    ],
                )
            ));
            line(String::new());
            line(quote(&s.text, &say("report-empty")));
            line(String::new());
        }
        line(String::new());
        line(format!("## {}", say("report-section-evidence")));
        line(String::new());
        if self.evidence.is_empty() {
            line(say("report-none"));
        } else {
            let columns = [
                "report-column-id",
                "report-column-uri",
                "report-column-sha256",
                "report-column-duration",
                "report-column-description",
                "report-column-attached-by",
                "report-column-attached-at",
                "report-column-captured-at",
            ];
            line(table_header(&columns.map(say)));
            for e in &self.evidence {
                line(format!(
                    "| {} | {} | `{}` | {} | {} | {} | {} | {} |",
                    e.id,
                    cell(&e.uri),
                    e.sha256,
                    e.duration_seconds,
                    cell(&e.description),
                    e.attached_by,
                    time(e.attached_at),
                    e.captured_at.map(time).unwrap_or_default()
                ));
            }
        }
        line(String::new());
        line(format!("## {}", say("report-section-review")));
        line(String::new());
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(dash);
        line(format!(
            "- {}",
            words.say(
                "report-acknowledged",
                &[
                    ("at", r.acknowledged_at.map(time).unwrap_or_else(dash)),
                    ("who", opt(&r.acknowledged_by)),
                ],
            )
        ));
        line(format!(
            "- {}",
            words.say(
                "report-closed",
                &[
                    ("at", r.closed_at.map(time).unwrap_or_else(dash)),
                    ("who", opt(&r.closed_by)),
                ],
            )
        ));
        let outcome = r
            .outcome
            .as_deref()
            .map_or_else(dash, |o| named("outcome", o));
        line(format!(
            "- {}",
            words.say("report-outcome", &[("outcome", outcome)])
        ));
        if r.authority.is_some() || r.reference.is_some() {
            line(format!(
                "- {}",
                words.say(
                    "report-referred",
                    &[
                        ("authority", opt(&r.authority)),
                        ("reference", opt(&r.reference)),
                    ],
                )
            ));
        }
        if let Some(rule) = &r.block_rule_id {
            line(format!(
                "- {}",
                words.say("report-block-rule", &[("rule", rule.clone())])
            ));
        }
        if let Some(note) = &r.note {
            line(String::new());
            line(quote(note, &say("report-empty")));
        }
        line(String::new());
        line(format!("## {}", say("report-section-timeline")));
        line(String::new());
        let columns = [
            "report-column-seq",
            "report-column-at",
            "report-column-actor",
            "report-column-event",
            "report-column-details",
            "report-column-hash",
        ];
        line(table_header(&columns.map(say)));
        for e in &self.timeline {
            line(format!(
                "| {} | {} | {} | {} | {} | `{}` |",
                e.seq,
                time(e.at),
                cell(&e.actor),
                cell(&named("event", &e.kind)),
                cell(&inline(&e.details)),
                e.hash
            ));
        }
        line(String::new());
        line(format!("## {}", say("report-section-seal")));
        line(String::new());
        line(words.say(
            if self.seal.chain_verified {
                "report-seal-verified"
            } else {
                "report-seal-broken"
            },
            &[
                ("events", self.seal.events.to_string()),
                ("hash", self.seal.chain_hash.clone()),
            ],
        ));
        md
    }
}

/// The words of a report in one language. The catalogues live outside the domain (the server
/// keeps one per language); the report only says which message it needs.
pub trait Words {
    /// The message `id` (e.g. `report-title`) with its arguments filled in.
    fn say(&self, id: &str, args: &[(&str, String)]) -> String;
    /// The name of a code in a group: `status`, `category`, `severity`, `outcome`, `event`,
    /// `block`, `source`, `role`.
    fn name(&self, group: &str, code: &str) -> String;
    /// A time as readers of this language, in their time zone, write it.
    fn time(&self, t: DateTime<Utc>) -> String;
}

/// A table's header row and its separator.
fn table_header(columns: &[String]) -> String {
    format!(
        "| {} |\n|{}",
        columns.join(" | "),
        " --- |".repeat(columns.len())
    )
}

/// A value on one table line: pipes escaped, line breaks as spaces.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Free text as a block quote, line by line, so it cannot break the document's structure.
fn quote(s: &str, empty: &str) -> String {
    if s.is_empty() {
        return format!("> {empty}");
    }
    s.lines().fold(String::new(), |mut out, l| {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = write!(out, "> {l}");
        out
    })
}

/// Details as compact `key: value` pairs.
fn inline(v: &Value) -> String {
    match v {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn report() -> IncidentReport {
        let ev = |seq, kind: &str, details| ReportEvent {
            seq,
            at: at("2026-11-21T10:00:00Z"),
            actor: "system".into(),
            kind: kind.into(),
            details,
            hash: format!("{seq:064x}"),
        };
        IncidentReport {
            format: REPORT_FORMAT,
            generated_at: at("2026-11-21T12:00:00Z"),
            incident: ReportIncident {
                id: "0193".into(),
                status: "resolved".into(),
                reported_at: at("2026-11-21T10:00:00Z"),
                deadline: at("2026-11-21T10:15:00Z"),
                line: "+48221002030".into(),
                caller: Some("+48601234567".into()),
                call_id: "c1".into(),
                switch_id: "sw".into(),
                reporter: "sealed-0123456789abcdef".into(),
                reporter_sealed: true,
                source: "end_and_flag".into(),
            },
            what_happened: WhatHappened {
                category: "threat_or_violence".into(),
                severity: "critical".into(),
                note: "He said | he knows\nwhere I live".into(),
                block_requested: "from_me".into(),
                debrief_requested: true,
            },
            actions: vec![ev(2, "terminate_sent", json!({"command_id": "x"}))],
            statements: vec![],
            evidence: vec![ReportEvidence {
                id: "e1".into(),
                uri: "s3://rec/a.wav".into(),
                sha256: "ab".repeat(32),
                duration_seconds: 42,
                description: "call audio".into(),
                attached_by: "sup-1".into(),
                attached_at: at("2026-11-21T11:00:00Z"),
                captured_at: None,
            }],
            review: ReportReview {
                acknowledged_at: Some(at("2026-11-21T10:05:00Z")),
                acknowledged_by: Some("sup-1".into()),
                closed_at: Some(at("2026-11-21T11:30:00Z")),
                closed_by: Some("sup-1".into()),
                outcome: Some("referred_to_authorities".into()),
                authority: Some("Policja KMP".into()),
                reference: Some("RSD-123/26".into()),
                block_rule_id: None,
                note: None,
            },
            timeline: vec![
                ev(1, "reported", json!({"note": "..."})),
                ev(2, "terminate_sent", json!({})),
            ],
            seal: ReportSeal {
                events: 2,
                chain_hash: format!("{:064x}", 2),
                chain_verified: true,
            },
        }
    }

    #[test]
    fn both_formats_carry_the_same_facts() {
        let r = report();
        let json: Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["format"], REPORT_FORMAT);
        assert_eq!(json["incident"]["caller"], "+48601234567");
        assert_eq!(json["review"]["reference"], "RSD-123/26");
        assert_eq!(json["evidence"][0]["sha256"], "ab".repeat(32));
        assert_eq!(json["seal"]["chain_hash"], format!("{:064x}", 2));
        let md = r.to_markdown(&Ids);
        for fact in [
            "+48601234567",
            "RSD-123/26",
            &"ab".repeat(32),
            &format!("{:064x}", 2),
            "report-reporter-sealed(reporter=sealed-0123456789abcdef)",
            "category:threat_or_violence (threat_or_violence)",
        ] {
            assert!(md.contains(fact), "{fact} missing from\n{md}");
        }
        // Free text cannot break the table or the headings.
        assert!(md.contains("> He said | he knows\n> where I live"));
        assert!(md.contains("report-seal-verified(events=2"));
        assert!(!md.contains("report-seal-broken"));
    }

    /// Words that show which message and which name the report asked for.
    struct Ids;

    impl Words for Ids {
        fn say(&self, id: &str, args: &[(&str, String)]) -> String {
            if args.is_empty() {
                return id.to_owned();
            }
            let args: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{id}({})", args.join(", "))
        }
        fn name(&self, group: &str, code: &str) -> String {
            format!("{group}:{code}")
        }
        fn time(&self, t: DateTime<Utc>) -> String {
            t.to_rfc3339()
        }
    }
}
