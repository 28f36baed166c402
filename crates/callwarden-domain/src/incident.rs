//! Incidents: the fixed taxonomy operators report with, and what a report asks for.

use std::{fmt, str::FromStr};

/// One fixed taxonomy, so every incident is documented the same way. `README.md` says when to
/// use each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    AbusiveLanguage,
    SexualMisconduct,
    ThreatOrViolence,
    IdentityProbing,
    IllegalContent,
    MinorSuspected,
    SelfHarmRisk,
    Oversharing,
    FraudOrSpam,
    Other,
}

impl Category {
    pub const ALL: [Category; 10] = [
        Self::AbusiveLanguage,
        Self::SexualMisconduct,
        Self::ThreatOrViolence,
        Self::IdentityProbing,
        Self::IllegalContent,
        Self::MinorSuspected,
        Self::SelfHarmRisk,
        Self::Oversharing,
        Self::FraudOrSpam,
        Self::Other,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AbusiveLanguage => "abusive_language",
            Self::SexualMisconduct => "sexual_misconduct",
            Self::ThreatOrViolence => "threat_or_violence",
            Self::IdentityProbing => "identity_probing",
            Self::IllegalContent => "illegal_content",
            Self::MinorSuspected => "minor_suspected",
            Self::SelfHarmRisk => "self_harm_risk",
            Self::Oversharing => "oversharing",
            Self::FraudOrSpam => "fraud_or_spam",
            Self::Other => "other",
        }
    }
}

impl FromStr for Category {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown category {s:?}"))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown severity {s:?}"))
    }
}

/// What the operator asks for besides the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockChoice {
    None,
    /// Keep this caller from reaching me: an operator-scoped block.
    FromMe,
    /// Ask for a global block.
    GlobalRequest,
}

impl BlockChoice {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::FromMe => "from_me",
            Self::GlobalRequest => "global_request",
        }
    }
}

impl FromStr for BlockChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::None, Self::FromMe, Self::GlobalRequest]
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown block choice {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(c));
        }
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        }
        assert!("rude".parse::<Category>().is_err());
        assert!(Severity::High > Severity::Medium);
    }
}
