//! Service lines (the number a caller dialled) and their policies.

use crate::phone::{E164, Region, excerpt};
use serde::Deserialize;
use std::{collections::HashMap, fmt};

const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("must not be empty")]
    Empty,
    #[error(
        "{value:?} is neither a phone number nor a line name (letters, digits, '.', '_', '-'; at most {MAX_NAME_LEN})"
    )]
    Invalid { value: String },
}

/// A service line: the number dialled in E.164, or a name for lines a switch identifies
/// otherwise (short codes, trunk names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LineId {
    Number(E164),
    Name(String),
}

impl LineId {
    /// Numbers are read in the service's default region: a line is known before its own region.
    pub fn parse(raw: &str, default_region: Region) -> Result<Self, LineError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(LineError::Empty);
        }
        if let Ok(number) = E164::parse(trimmed, default_region) {
            return Ok(Self::Number(number));
        }
        let is_name = trimmed.len() <= MAX_NAME_LEN
            && trimmed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if is_name {
            Ok(Self::Name(trimmed.to_owned()))
        } else {
            Err(LineError::Invalid {
                value: excerpt(raw),
            })
        }
    }

    /// Rebuilds a line this service stored itself (its `Display` form).
    pub fn from_canonical(s: &str) -> Self {
        E164::from_canonical(s).map_or_else(|| Self::Name(s.to_owned()), Self::Number)
    }
}

impl fmt::Display for LineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => n.fmt(f),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// What a line does with callers who withhold their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousPolicy {
    Allow,
    /// Connect, but warn the operator that the caller cannot be identified.
    AllowWithNotice,
    Reject,
}

/// What a line does with a call when the rules that apply cannot be read in time (Redis and
/// Postgres slow or down, and no recent result for the caller in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Connect: a blocked caller may get through, but no honest caller is turned away.
    Open,
    /// Refuse: for lines where a blocked caller reaching an operator is the greater harm.
    Closed,
}

/// How one line treats its callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinePolicy {
    /// Region for national-format caller ids on this line.
    pub region: Region,
    pub anonymous: AnonymousPolicy,
    /// Whether a caller with recent incidents is let through with a notice to the operator.
    pub notice_on_recent_incidents: bool,
    /// What a check answers when the rules cannot be read within its budget.
    pub on_failure: FailurePolicy,
}

/// Every configured line, plus the policy for lines nobody configured.
#[derive(Debug, Clone)]
pub struct LineDirectory {
    default: LinePolicy,
    lines: HashMap<LineId, LinePolicy>,
}

impl LineDirectory {
    pub fn new(default: LinePolicy, lines: HashMap<LineId, LinePolicy>) -> Self {
        Self { default, lines }
    }

    /// The line's own policy, or the defaults for an unknown line.
    pub fn policy(&self, line: &LineId) -> &LinePolicy {
        self.lines.get(line).unwrap_or(&self.default)
    }

    pub fn default_policy(&self) -> &LinePolicy {
        &self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pl() -> Region {
        "PL".parse().unwrap()
    }

    #[test]
    fn numbers_and_names() {
        assert_eq!(
            LineId::parse("22 100 20 30", pl()).unwrap().to_string(),
            "+48221002030"
        );
        assert_eq!(
            LineId::parse("+48 22 100 20 30", pl()),
            LineId::parse("0048221002030", pl())
        );
        assert_eq!(
            LineId::parse("chat-night", pl()).unwrap(),
            LineId::Name("chat-night".into())
        );
        assert_eq!(LineId::parse(" ", pl()), Err(LineError::Empty));
        assert!(matches!(
            LineId::parse("a line;", pl()),
            Err(LineError::Invalid { .. })
        ));
        assert!(LineId::parse(&"x".repeat(65), pl()).is_err());
    }

    #[test]
    fn canonical_round_trip() {
        for line in [
            LineId::parse("+48221002030", pl()).unwrap(),
            LineId::Name("desk".into()),
        ] {
            assert_eq!(LineId::from_canonical(&line.to_string()), line);
        }
    }

    #[test]
    fn unknown_lines_get_the_defaults() {
        let default = LinePolicy {
            region: pl(),
            anonymous: AnonymousPolicy::Allow,
            notice_on_recent_incidents: false,
            on_failure: FailurePolicy::Open,
        };
        let strict = LinePolicy {
            region: "GB".parse().unwrap(),
            anonymous: AnonymousPolicy::Reject,
            notice_on_recent_incidents: true,
            on_failure: FailurePolicy::Closed,
        };
        let known = LineId::Name("strict".into());
        let dir = LineDirectory::new(
            default.clone(),
            HashMap::from([(known.clone(), strict.clone())]),
        );
        assert_eq!(dir.policy(&known), &strict);
        assert_eq!(dir.policy(&LineId::Name("other".into())), &default);
    }
}
