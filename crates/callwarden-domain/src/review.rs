//! The supervisors' review of an incident: its states and the transitions between them,
//! outcomes, deadlines, statements and evidence, and how an anonymous reporter stays sealed.

use crate::{incident::Severity, phone::excerpt};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentStatus {
    Open,
    Acknowledged,
    Resolved,
    Dismissed,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 4] = [
        Self::Open,
        Self::Acknowledged,
        Self::Resolved,
        Self::Dismissed,
    ];
    /// The review queue.
    pub const ACTIVE: [IncidentStatus; 2] = [Self::Open, Self::Acknowledged];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
            Self::Dismissed => "dismissed",
        }
    }

    /// Still waiting for a decision.
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Open | Self::Acknowledged)
    }
}

impl FromStr for IncidentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown incident status {s:?}"))
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a review decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NoAction,
    WarningIssued,
    /// Blocked globally, for this long or (None) for good.
    CallerBlocked {
        ttl: Option<Duration>,
    },
    /// Referred to the authorities, under their reference number.
    Referred {
        authority: String,
        reference: String,
    },
    Mediated,
}

impl Outcome {
    pub const NAMES: [&'static str; 5] = [
        "no_action",
        "warning_issued",
        "caller_blocked",
        "referred_to_authorities",
        "mediated",
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoAction => "no_action",
            Self::WarningIssued => "warning_issued",
            Self::CallerBlocked { .. } => "caller_blocked",
            Self::Referred { .. } => "referred_to_authorities",
            Self::Mediated => "mediated",
        }
    }
}

/// A change a supervisor asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Acknowledge,
    Resolve,
    Dismiss,
    Reopen,
}

impl Transition {
    /// The event kind that records it.
    pub fn event_kind(&self) -> &'static str {
        match self {
            Self::Acknowledge => "acknowledged",
            Self::Resolve => "resolved",
            Self::Dismiss => "dismissed",
            Self::Reopen => "reopened",
        }
    }

    fn needs(&self) -> &'static str {
        match self {
            Self::Acknowledge => "only an OPEN incident can be acknowledged",
            Self::Resolve => "only an ACKNOWLEDGED incident can be resolved",
            Self::Dismiss => "only an ACKNOWLEDGED incident can be dismissed",
            Self::Reopen => "only a RESOLVED or DISMISSED incident can be reopened",
        }
    }
}

/// A transition the incident's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the incident is {}; {}", .from.as_str().to_uppercase(), .transition.needs())]
pub struct InvalidTransition {
    pub from: IncidentStatus,
    pub transition: Transition,
}

/// OPEN → ACKNOWLEDGED → RESOLVED | DISMISSED; RESOLVED | DISMISSED → OPEN.
pub fn transition(
    from: IncidentStatus,
    transition: Transition,
) -> Result<IncidentStatus, InvalidTransition> {
    use IncidentStatus as S;
    match (from, transition) {
        (S::Open, Transition::Acknowledge) => Ok(S::Acknowledged),
        (S::Acknowledged, Transition::Resolve) => Ok(S::Resolved),
        (S::Acknowledged, Transition::Dismiss) => Ok(S::Dismissed),
        (S::Resolved | S::Dismissed, Transition::Reopen) => Ok(S::Open),
        _ => Err(InvalidTransition { from, transition }),
    }
}

/// When a decision is due, by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub critical: Duration,
    pub high: Duration,
    pub medium: Duration,
    pub low: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            critical: Duration::minutes(15),
            high: Duration::hours(1),
            medium: Duration::hours(8),
            low: Duration::hours(72),
        }
    }
}

impl Deadlines {
    pub fn for_severity(&self, severity: Severity) -> Duration {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
        }
    }

    pub fn due(&self, severity: Severity, from: DateTime<Utc>) -> DateTime<Utc> {
        from + self.for_severity(severity)
    }
}

/// Past its deadline and still waiting for a decision.
pub fn overdue(status: IncidentStatus, deadline: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    status.is_active() && deadline < now
}

/// Who a statement is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementRole {
    Supervisor,
    /// Another operator who witnessed the call or its aftermath.
    Witness,
}

impl StatementRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Supervisor => "supervisor",
            Self::Witness => "witness",
        }
    }
}

impl FromStr for StatementRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "supervisor" => Ok(Self::Supervisor),
            "witness" => Ok(Self::Witness),
            _ => Err(format!("unknown statement role {s:?}")),
        }
    }
}

/// A SHA-256 digest as evidence carries it: 64 hex digits, kept in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(format!("{:?} is not a SHA-256 (64 hex digits)", excerpt(s)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where evidence is kept: an absolute URI ("scheme:rest"), without spaces, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceUri(String);

impl EvidenceUri {
    const MAX_LEN: usize = 2048;

    pub fn parse(s: &str) -> Result<Self, String> {
        let scheme_ok = s.split_once(':').is_some_and(|(scheme, rest)| {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if !scheme_ok || s.len() > Self::MAX_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{:?} is not an absolute URI (scheme:..., printable ASCII, at most {} characters)",
                excerpt(s),
                Self::MAX_LEN
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keeps an anonymous reporter sealed: every string equal to their pseudonym becomes the
/// incident's sealed reference. Applied to whatever a supervisor is shown of the incident.
#[derive(Debug, Clone)]
pub struct Seal<'a> {
    pub pseudonym: &'a str,
    pub reference: &'a str,
}

impl Seal<'_> {
    pub fn text<'s>(&'s self, s: &'s str) -> &'s str {
        if s == self.pseudonym {
            self.reference
        } else {
            s
        }
    }

    /// The same JSON with every string value equal to the pseudonym sealed.
    pub fn json(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.text(s).to_owned()),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), self.json(v))).collect())
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        use IncidentStatus as S;
        use Transition as T;
        let allowed = [
            (S::Open, T::Acknowledge, S::Acknowledged),
            (S::Acknowledged, T::Resolve, S::Resolved),
            (S::Acknowledged, T::Dismiss, S::Dismissed),
            (S::Resolved, T::Reopen, S::Open),
            (S::Dismissed, T::Reopen, S::Open),
        ];
        for from in S::ALL {
            for t in [T::Acknowledge, T::Resolve, T::Dismiss, T::Reopen] {
                let expected = allowed
                    .iter()
                    .find(|(f, tt, _)| *f == from && *tt == t)
                    .map(|(_, _, to)| *to);
                match (transition(from, t), expected) {
                    (Ok(to), Some(e)) => assert_eq!(to, e),
                    (Err(err), None) => {
                        let msg = err.to_string();
                        assert!(msg.contains(&from.as_str().to_uppercase()), "{msg}");
                    }
                    (got, want) => panic!("{from:?} {t:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn deadlines_follow_severity_and_overdue_needs_an_active_incident() {
        let d = Deadlines::default();
        let t0 = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(d.due(Severity::Critical, t0), t0 + Duration::minutes(15));
        assert_eq!(d.due(Severity::Low, t0), t0 + Duration::hours(72));
        let late = t0 + Duration::minutes(16);
        let deadline = d.due(Severity::Critical, t0);
        assert!(overdue(IncidentStatus::Open, deadline, late));
        assert!(overdue(IncidentStatus::Acknowledged, deadline, late));
        assert!(!overdue(IncidentStatus::Resolved, deadline, late));
        assert!(!overdue(IncidentStatus::Open, deadline, t0));
    }

    #[test]
    fn evidence_fields_parse() {
        let h = "AB".repeat(32);
        assert_eq!(Sha256Hex::parse(&h).unwrap().as_str(), "ab".repeat(32));
        assert!(Sha256Hex::parse("abc").is_err());
        assert!(Sha256Hex::parse(&"zz".repeat(32)).is_err());
        assert!(EvidenceUri::parse("s3://recordings/a.wav").is_ok());
        assert!(EvidenceUri::parse("urn:uuid:1234").is_ok());
        assert!(EvidenceUri::parse("recordings/a.wav").is_err());
        assert!(EvidenceUri::parse("s3://a b").is_err());
        assert!(EvidenceUri::parse("1x:abc").is_err());
    }

    #[test]
    fn a_seal_replaces_the_pseudonym_wherever_it_stands_alone() {
        let seal = Seal {
            pseudonym: "op-anna",
            reference: "sealed-0123456789abcdef",
        };
        assert_eq!(seal.text("op-anna"), "sealed-0123456789abcdef");
        assert_eq!(seal.text("op-bob"), "op-bob");
        let sealed = seal.json(&json!({
            "created_by": "op-anna",
            "scope_value": ["op-anna", "x"],
            "note": "op-anna was upset",
            "n": 3
        }));
        assert_eq!(
            sealed,
            json!({
                "created_by": "sealed-0123456789abcdef",
                "scope_value": ["sealed-0123456789abcdef", "x"],
                "note": "op-anna was upset",
                "n": 3
            })
        );
    }
}
