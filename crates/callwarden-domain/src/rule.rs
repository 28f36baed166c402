//! Rules: which callers are blocked (or explicitly allowed), where, and until when.

use crate::{
    line::LineId,
    phone::{E164, PhoneError, Region, excerpt, is_separator},
};
use chrono::{DateTime, Utc};
use std::{fmt, str::FromStr};
use uuid::Uuid;

/// Longest prefix worth writing: E.164 numbers have at most 15 digits.
const MAX_DIGITS: usize = 15;
const MAX_PSEUDONYM_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must not be empty")]
    Empty,
    #[error(
        "{value:?} is not a prefix: write it internationally, e.g. \"+4870012*\" (1 to {MAX_DIGITS} digits, not starting with 0)"
    )]
    BadPrefix { value: String },
    #[error(transparent)]
    Number(#[from] PhoneError),
}

/// What a rule matches: one number, or every number that starts with some digits (a range).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    Exact(E164),
    /// The digits after `+` that matching numbers start with.
    Prefix(String),
}

impl Pattern {
    /// `+4870012*` (or `0048 700 12*`) is a prefix; anything else must be one phone number,
    /// read like a caller id (national formats in `region`).
    pub fn parse(raw: &str, region: Region) -> Result<Self, PatternError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(PatternError::Empty);
        }
        let Some(head) = trimmed.strip_suffix('*') else {
            return Ok(Self::Exact(E164::parse(trimmed, region)?));
        };
        let bad = || PatternError::BadPrefix {
            value: excerpt(raw),
        };
        // The separators a number may be written with (a prefix is the start of one).
        let compact: String = head.chars().filter(|&c| !is_separator(c)).collect();
        let digits = compact
            .strip_prefix('+')
            .or_else(|| compact.strip_prefix("00"))
            .ok_or_else(bad)?;
        let well_formed = (1..=MAX_DIGITS).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if well_formed {
            Ok(Self::Prefix(digits.to_owned()))
        } else {
            Err(bad())
        }
    }

    /// Rebuilds a pattern from its canonical form (as written by [`fmt::Display`]).
    pub fn from_canonical(s: &str) -> Option<Self> {
        match s.strip_suffix('*') {
            Some(head) => {
                let digits = head.strip_prefix('+')?;
                let ok = (1..=MAX_DIGITS).contains(&digits.len())
                    && digits.bytes().all(|b| b.is_ascii_digit());
                ok.then(|| Self::Prefix(digits.to_owned()))
            }
            None => E164::from_canonical(s).map(Self::Exact),
        }
    }

    /// How specific the pattern is: an exact number beats any prefix, a longer prefix a shorter.
    pub fn specificity(&self) -> usize {
        match self {
            Self::Exact(_) => MAX_DIGITS + 1,
            Self::Prefix(digits) => digits.len(),
        }
    }

    pub fn matches(&self, number: &E164) -> bool {
        match self {
            Self::Exact(n) => n == number,
            Self::Prefix(digits) => number.digits().starts_with(digits.as_str()),
        }
    }

    /// Canonical forms of every pattern that can match `number`: the number itself and each of
    /// its prefixes. Looking these up is all a check needs, however many rules exist.
    pub fn candidates(number: &E164) -> impl Iterator<Item = String> + '_ {
        let digits = number.digits();
        std::iter::once(number.to_string())
            .chain((1..=digits.len()).map(move |len| format!("+{}*", &digits[..len])))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(n) => n.fmt(f),
            Self::Prefix(digits) => write!(f, "+{digits}*"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Effect {
    Block,
    /// Overrides blocks of equal or lower specificity: a known partner on a blocked range.
    Allow,
}

impl Effect {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Allow => "allow",
        }
    }
}

impl FromStr for Effect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "block" => Ok(Self::Block),
            "allow" => Ok(Self::Allow),
            other => Err(format!("unknown effect {other:?}")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PseudonymError {
    #[error("must not be empty")]
    Empty,
    #[error(
        "{value:?} is not a pseudonym (letters, digits, '.', '_', '-'; at most {MAX_PSEUDONYM_LEN})"
    )]
    Invalid { value: String },
}

/// An operator's pseudonym. Never a real name: operators are exposed to stalkers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OperatorId(String);

impl OperatorId {
    pub fn parse(raw: &str) -> Result<Self, PseudonymError> {
        if raw.is_empty() {
            return Err(PseudonymError::Empty);
        }
        let ok = raw.len() <= MAX_PSEUDONYM_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(PseudonymError::Invalid {
                value: excerpt(raw),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a rule applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Global,
    Line(LineId),
    /// One operator's personal rule.
    Operator(OperatorId),
}

impl Scope {
    /// Narrower scopes win over wider ones at equal pattern specificity.
    pub fn narrowness(&self) -> u8 {
        match self {
            Self::Global => 0,
            Self::Line(_) => 1,
            Self::Operator(_) => 2,
        }
    }

    /// The scopes whose rules apply to a call on `line`, routed to `operator` if known.
    pub fn candidates(line: &LineId, operator: Option<&OperatorId>) -> Vec<Scope> {
        let mut scopes = vec![Self::Global, Self::Line(line.clone())];
        scopes.extend(operator.cloned().map(Self::Operator));
        scopes
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Line(_) => "line",
            Self::Operator(_) => "operator",
        }
    }

    /// The line or pseudonym; empty for global.
    pub fn value(&self) -> String {
        match self {
            Self::Global => String::new(),
            Self::Line(line) => line.to_string(),
            Self::Operator(op) => op.to_string(),
        }
    }

    /// Rebuilds a scope from [`Scope::kind`] and [`Scope::value`] as stored.
    pub fn from_parts(kind: &str, value: &str) -> Option<Self> {
        match kind {
            "global" => Some(Self::Global),
            "line" => Some(Self::Line(LineId::from_canonical(value))),
            "operator" => OperatorId::parse(value).ok().map(Self::Operator),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub Uuid);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RuleId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A rule to be created: everything but what the record adds (id, creation time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub pattern: Pattern,
    pub effect: Effect,
    pub scope: Scope,
    /// `None` for a permanent rule.
    pub ttl: Option<chrono::Duration>,
    pub reason: String,
    pub created_by: String,
}

/// A rule as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: RuleId,
    pub pattern: Pattern,
    pub effect: Effect,
    pub scope: Scope,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Removed rules stay on record for the audit trail; they no longer match.
    pub removed_at: Option<DateTime<Utc>>,
    pub removed_by: Option<String>,
}

/// What a check needs to know of a rule that may apply: the serving index holds exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub id: RuleId,
    pub pattern: Pattern,
    pub scope: Scope,
    pub effect: Effect,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Rule {
    /// What a check needs of this rule.
    pub fn as_match(&self) -> RuleMatch {
        RuleMatch {
            id: self.id,
            pattern: self.pattern.clone(),
            scope: self.scope.clone(),
            effect: self.effect,
            expires_at: self.expires_at,
        }
    }
}

impl RuleMatch {
    /// The precedence order, highest wins: pattern specificity, then scope narrowness, then
    /// ALLOW over BLOCK. The rule id only makes ties deterministic.
    pub fn precedence(&self) -> (usize, u8, Effect, std::cmp::Reverse<RuleId>) {
        (
            self.pattern.specificity(),
            self.scope.narrowness(),
            self.effect,
            std::cmp::Reverse(self.id),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pl() -> Region {
        "PL".parse().unwrap()
    }

    fn number(s: &str) -> E164 {
        E164::from_canonical(s).unwrap()
    }

    #[test]
    fn patterns_parse_to_one_canonical_form() {
        for (raw, want) in [
            ("+4870012*", "+4870012*"),
            ("0048 700 12*", "+4870012*"),
            ("+48-700-12*", "+4870012*"),
            ("+1*", "+1*"),
            ("+48 601 234 567", "+48601234567"),
            ("601 234 567", "+48601234567"),
            ("tel:+48-601-234-567", "+48601234567"),
        ] {
            let p = Pattern::parse(raw, pl()).unwrap();
            assert_eq!(p.to_string(), want, "{raw:?}");
            assert_eq!(Pattern::from_canonical(want), Some(p));
        }
    }

    #[test]
    fn bad_patterns_say_why() {
        assert_eq!(Pattern::parse("  ", pl()), Err(PatternError::Empty));
        for raw in [
            "*",
            "+*",
            "4870012*",
            "+0*",
            "+48a*",
            "+1234567890123456*",
            "+48**",
        ] {
            assert!(
                matches!(
                    Pattern::parse(raw, pl()),
                    Err(PatternError::BadPrefix { .. })
                ),
                "{raw:?}"
            );
        }
        assert!(matches!(
            Pattern::parse("hello", pl()),
            Err(PatternError::Number(_))
        ));
    }

    #[test]
    fn candidates_are_the_number_and_all_its_prefixes() {
        let n = number("+48601");
        let all: Vec<_> = Pattern::candidates(&n).collect();
        assert_eq!(all, ["+48601", "+4*", "+48*", "+486*", "+4860*", "+48601*"]);
        for c in &all {
            assert!(Pattern::from_canonical(c).unwrap().matches(&n), "{c}");
        }
        assert!(!Pattern::Prefix("49".into()).matches(&n));
    }

    #[test]
    fn scopes_round_trip_and_rank() {
        let line = Scope::Line(LineId::Name("desk".into()));
        let op = Scope::Operator(OperatorId::parse("op-7").unwrap());
        for s in [Scope::Global, line.clone(), op.clone()] {
            assert_eq!(Scope::from_parts(s.kind(), &s.value()), Some(s));
        }
        assert!(Scope::Global.narrowness() < line.narrowness());
        assert!(line.narrowness() < op.narrowness());
        assert!(Scope::from_parts("planet", "").is_none());
    }

    #[test]
    fn pseudonyms_are_bounded() {
        assert!(OperatorId::parse("op_7.night-shift").is_ok());
        assert_eq!(OperatorId::parse(""), Err(PseudonymError::Empty));
        assert!(OperatorId::parse("Jane Doe").is_err());
        assert!(OperatorId::parse(&"a".repeat(65)).is_err());
    }
}
