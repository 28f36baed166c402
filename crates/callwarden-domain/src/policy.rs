//! What follows from a report: blocks, escalation, a supervisor's attention. The rules are
//! configuration; deciding is pure, so every rule is tested without servers.

use crate::incident::{BlockChoice, Category, Severity};
use chrono::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The operator's break after ending a call with a report.
    pub cooldown: Duration,
    /// How long "block this caller from me" lasts; `None` for good.
    pub operator_block_ttl: Option<Duration>,
    /// How long an automatic global block lasts (supervisors review it meanwhile).
    pub global_block_ttl: Duration,
    /// A report of this severity or higher blocks the caller globally for a while.
    pub global_block_severity: Severity,
    /// Reports from this many different operators within `repeat_window` block globally.
    pub repeat_reporters: usize,
    pub repeat_window: Duration,
    /// How far back `recent_flags` counts incidents against a caller.
    pub recent_window: Duration,
    /// Categories escalated to supervisors at once.
    pub escalate: Vec<Category>,
    /// Categories that never block the caller (they need help, not a block).
    pub never_block: Vec<Category>,
    /// Categories marked for a supervisor's attention.
    pub attention: Vec<Category>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            cooldown: Duration::minutes(10),
            operator_block_ttl: None,
            global_block_ttl: Duration::days(7),
            global_block_severity: Severity::High,
            repeat_reporters: 3,
            repeat_window: Duration::days(30),
            recent_window: Duration::days(30),
            escalate: vec![
                Category::ThreatOrViolence,
                Category::IdentityProbing,
                Category::IllegalContent,
                Category::MinorSuspected,
            ],
            never_block: vec![Category::SelfHarmRisk],
            attention: vec![Category::SelfHarmRisk],
        }
    }
}

/// What is known when a report comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFacts {
    pub category: Category,
    pub severity: Severity,
    pub block: BlockChoice,
    /// False for a withheld caller id: there is no number to block.
    pub caller_known: bool,
    /// Different operators who reported this caller within the repeat window, this one included.
    pub distinct_reporters: usize,
}

/// Why a caller is blocked globally: each reason that applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalBlockReason {
    Requested,
    Severity,
    RepeatedReports,
}

impl GlobalBlockReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Severity => "severity",
            Self::RepeatedReports => "repeated_reports",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// An operator-scoped block of the caller, for the reporting operator.
    OperatorBlock,
    /// A temporary global block of the caller.
    GlobalBlock(Vec<GlobalBlockReason>),
    /// Escalated to supervisors at once.
    Escalate,
    /// Marked for a supervisor's attention (the caller may need help).
    Attention,
}

impl Action {
    /// The name the API reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::OperatorBlock => "operator_block",
            Self::GlobalBlock(_) => "global_block",
            Self::Escalate => "escalated",
            Self::Attention => "attention",
        }
    }
}

impl Policy {
    pub fn consequences(&self, facts: &ReportFacts) -> Vec<Action> {
        let mut actions = Vec::new();
        let may_block = facts.caller_known && !self.never_block.contains(&facts.category);
        if may_block && facts.block == BlockChoice::FromMe {
            actions.push(Action::OperatorBlock);
        }
        let mut why = Vec::new();
        if facts.block == BlockChoice::GlobalRequest {
            why.push(GlobalBlockReason::Requested);
        }
        if facts.severity >= self.global_block_severity {
            why.push(GlobalBlockReason::Severity);
        }
        if facts.distinct_reporters >= self.repeat_reporters {
            why.push(GlobalBlockReason::RepeatedReports);
        }
        if may_block && !why.is_empty() {
            actions.push(Action::GlobalBlock(why));
        }
        if self.escalate.contains(&facts.category) {
            actions.push(Action::Escalate);
        }
        if self.attention.contains(&facts.category) {
            actions.push(Action::Attention);
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(category: Category, severity: Severity, block: BlockChoice) -> ReportFacts {
        ReportFacts {
            category,
            severity,
            block,
            caller_known: true,
            distinct_reporters: 1,
        }
    }

    fn names(actions: &[Action]) -> Vec<&'static str> {
        actions.iter().map(Action::as_str).collect()
    }

    #[test]
    fn a_plain_report_does_nothing_more() {
        let p = Policy::default();
        let f = facts(Category::AbusiveLanguage, Severity::Low, BlockChoice::None);
        assert!(p.consequences(&f).is_empty());
    }

    #[test]
    fn block_from_me_is_an_operator_block() {
        let p = Policy::default();
        let f = facts(Category::Oversharing, Severity::Medium, BlockChoice::FromMe);
        assert_eq!(names(&p.consequences(&f)), ["operator_block"]);
    }

    #[test]
    fn global_blocks_come_from_a_request_severity_or_repeated_reports() {
        let p = Policy::default();
        let f = facts(Category::Other, Severity::Low, BlockChoice::GlobalRequest);
        assert_eq!(
            p.consequences(&f),
            [Action::GlobalBlock(vec![GlobalBlockReason::Requested])]
        );
        let f = facts(Category::Other, Severity::High, BlockChoice::None);
        assert_eq!(
            p.consequences(&f),
            [Action::GlobalBlock(vec![GlobalBlockReason::Severity])]
        );
        let f = ReportFacts {
            distinct_reporters: 3,
            ..facts(Category::Other, Severity::Low, BlockChoice::None)
        };
        assert_eq!(
            p.consequences(&f),
            [Action::GlobalBlock(vec![
                GlobalBlockReason::RepeatedReports
            ])]
        );
        let f = ReportFacts {
            distinct_reporters: 2,
            ..f
        };
        assert!(p.consequences(&f).is_empty());
        let f = facts(
            Category::FraudOrSpam,
            Severity::Critical,
            BlockChoice::FromMe,
        );
        assert_eq!(
            names(&p.consequences(&f)),
            ["operator_block", "global_block"]
        );
    }

    #[test]
    fn grave_categories_escalate_at_once() {
        let p = Policy::default();
        for c in [
            Category::ThreatOrViolence,
            Category::IdentityProbing,
            Category::IllegalContent,
            Category::MinorSuspected,
        ] {
            assert_eq!(
                names(&p.consequences(&facts(c, Severity::Low, BlockChoice::None))),
                ["escalated"]
            );
        }
    }

    #[test]
    fn self_harm_never_blocks_and_asks_for_attention() {
        let p = Policy::default();
        let f = ReportFacts {
            distinct_reporters: 10,
            ..facts(
                Category::SelfHarmRisk,
                Severity::Critical,
                BlockChoice::GlobalRequest,
            )
        };
        assert_eq!(names(&p.consequences(&f)), ["attention"]);
        let f = facts(Category::SelfHarmRisk, Severity::Low, BlockChoice::FromMe);
        assert_eq!(names(&p.consequences(&f)), ["attention"]);
    }

    #[test]
    fn a_withheld_caller_cannot_be_blocked_but_is_still_escalated() {
        let p = Policy::default();
        let f = ReportFacts {
            caller_known: false,
            ..facts(
                Category::ThreatOrViolence,
                Severity::Critical,
                BlockChoice::FromMe,
            )
        };
        assert_eq!(names(&p.consequences(&f)), ["escalated"]);
    }
}
