//! The incident report handed over to management, lawyers or the police: one model, rendered
//! as JSON (serde) or Markdown, so both formats always say the same thing.

use chrono::{DateTime, SecondsFormat, Utc};
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

    pub fn to_markdown(&self) -> String {
        let i = &self.incident;
        let w = &self.what_happened;
        let r = &self.review;
        let mut md = String::new();
        let mut line = |s: String| {
            md.push_str(&s);
            md.push('\n');
        };
        line(format!("# Incident report {}", i.id));
        line(String::new());
        line(format!(
            "Generated {} ({REPORT_FORMAT}).",
            time(self.generated_at)
        ));
        line(String::new());
        line("## Incident".into());
        line(String::new());
        line("| Field | Value |".into());
        line("| --- | --- |".into());
        for (k, v) in [
            ("Status", i.status.clone()),
            ("Reported at", time(i.reported_at)),
            ("Decision due", time(i.deadline)),
            ("Line", i.line.clone()),
            (
                "Caller",
                i.caller.clone().unwrap_or_else(|| "withheld".into()),
            ),
            ("Call", format!("{} (switch {})", i.call_id, i.switch_id)),
            (
                "Reporter",
                if i.reporter_sealed {
                    format!("{} (sealed)", i.reporter)
                } else {
                    i.reporter.clone()
                },
            ),
            ("Source", i.source.clone()),
        ] {
            line(format!("| {k} | {} |", cell(&v)));
        }
        line(String::new());
        line("## What happened".into());
        line(String::new());
        line(format!("- Category: {}", w.category));
        line(format!("- Severity: {}", w.severity));
        line(format!("- Block requested: {}", w.block_requested));
        line(format!(
            "- Debrief requested: {}",
            if w.debrief_requested { "yes" } else { "no" }
        ));
        line(String::new());
        line("The words reported:".into());
        line(String::new());
        line(quote(&w.note));
        line(String::new());
        line("## Actions taken".into());
        line(String::new());
        if self.actions.is_empty() {
            line("None.".into());
        }
        for a in &self.actions {
            line(format!(
                "- {} {} by {}: {}",
                time(a.at),
                a.kind,
                a.actor,
                inline(&a.details)
            ));
        }
        line(String::new());
        line("## Statements".into());
        line(String::new());
        if self.statements.is_empty() {
            line("None.".into());
        }
        for s in &self.statements {
            line(format!("- {} — {} ({}):", time(s.at), s.author, s.role));
            line(String::new());
            line(quote(&s.text));
            line(String::new());
        }
        line(String::new());
        line("## Evidence".into());
        line(String::new());
        if self.evidence.is_empty() {
            line("None.".into());
        } else {
            line("| Id | URI | SHA-256 | Duration (s) | Description | Attached by | Attached at | Captured at |".into());
            line("| --- | --- | --- | --- | --- | --- | --- | --- |".into());
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
        line("## Review and outcome".into());
        line(String::new());
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
        line(format!(
            "- Acknowledged: {} by {}",
            r.acknowledged_at.map(time).unwrap_or_else(|| "—".into()),
            opt(&r.acknowledged_by)
        ));
        line(format!(
            "- Closed: {} by {}",
            r.closed_at.map(time).unwrap_or_else(|| "—".into()),
            opt(&r.closed_by)
        ));
        line(format!("- Outcome: {}", opt(&r.outcome)));
        if r.authority.is_some() || r.reference.is_some() {
            line(format!(
                "- Referred to: {}, reference {}",
                opt(&r.authority),
                opt(&r.reference)
            ));
        }
        if let Some(rule) = &r.block_rule_id {
            line(format!("- Block rule: {rule}"));
        }
        if let Some(note) = &r.note {
            line(String::new());
            line(quote(note));
        }
        line(String::new());
        line("## Timeline".into());
        line(String::new());
        line("| # | At | Actor | Event | Details | Hash |".into());
        line("| --- | --- | --- | --- | --- | --- |".into());
        for e in &self.timeline {
            line(format!(
                "| {} | {} | {} | {} | {} | `{}` |",
                e.seq,
                time(e.at),
                cell(&e.actor),
                e.kind,
                cell(&inline(&e.details)),
                e.hash
            ));
        }
        line(String::new());
        line("## Seal".into());
        line(String::new());
        line(format!(
            "{} events; chain hash `{}`; chain {}.",
            self.seal.events,
            self.seal.chain_hash,
            if self.seal.chain_verified {
                "verified"
            } else {
                "DOES NOT VERIFY"
            }
        ));
        md
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A value on one table line: pipes escaped, line breaks as spaces.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Free text as a block quote, line by line, so it cannot break the document's structure.
fn quote(s: &str) -> String {
    if s.is_empty() {
        return "> (empty)".into();
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
        let md = r.to_markdown();
        for fact in [
            "+48601234567",
            "RSD-123/26",
            &"ab".repeat(32),
            &format!("{:064x}", 2),
            "sealed-0123456789abcdef (sealed)",
            "threat_or_violence",
        ] {
            assert!(md.contains(fact), "{fact} missing from\n{md}");
        }
        // Free text cannot break the table or the headings.
        assert!(md.contains("> He said | he knows\n> where I live"));
        assert!(md.contains("chain verified."));
    }
}
