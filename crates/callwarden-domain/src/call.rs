//! Live calls and the commands sent to the switches that carry them.

use chrono::{DateTime, Utc};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// End the call now.
    Terminate,
    /// Play a conduct warning to the caller; the call goes on.
    PlayWarning,
}

impl CommandKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Terminate => "terminate",
            Self::PlayWarning => "play_warning",
        }
    }
}

impl FromStr for CommandKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "terminate" => Ok(Self::Terminate),
            "play_warning" => Ok(Self::PlayWarning),
            other => Err(format!("unknown command kind {other:?}")),
        }
    }
}

/// A command for one call, held for its switch until the switch acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub id: String,
    pub call_id: String,
    pub switch_id: String,
    pub kind: CommandKind,
    /// What the switch plays to the caller.
    pub announcement: String,
    pub issued_at: DateTime<Utc>,
}

/// A call as Callwarden knows it while it is live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCall {
    pub call_id: String,
    pub switch_id: String,
    /// The line as a string (E.164 or a line name).
    pub line: String,
    /// E.164, or `None` for a withheld caller id.
    pub caller: Option<String>,
    pub checked_at: DateTime<Utc>,
    /// The pseudonym of the operator who answered, once answered.
    pub operator: Option<String>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The TERMINATE issued for this call, if any (a call is terminated once).
    pub terminate: Option<Command>,
}

/// Why an operator may not act on a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallAccess {
    #[error("call {0:?} has not been answered")]
    NotAnswered(String),
    #[error("call {0:?} was answered by another operator")]
    OtherOperator(String),
    #[error("call {0:?} has already ended; report it with ReportPastCall")]
    Ended(String),
}

impl LiveCall {
    /// An operator acts only on a live call they answered.
    pub fn check_operator(&self, operator: &str) -> Result<(), CallAccess> {
        match &self.operator {
            None => Err(CallAccess::NotAnswered(self.call_id.clone())),
            Some(op) if op != operator => Err(CallAccess::OtherOperator(self.call_id.clone())),
            Some(_) if self.ended_at.is_some() => Err(CallAccess::Ended(self.call_id.clone())),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(operator: Option<&str>, ended: bool) -> LiveCall {
        LiveCall {
            call_id: "c-1".into(),
            switch_id: "sw".into(),
            line: "+48221002030".into(),
            caller: Some("+48601234567".into()),
            checked_at: Utc::now(),
            operator: operator.map(Into::into),
            answered_at: operator.map(|_| Utc::now()),
            ended_at: ended.then(Utc::now),
            terminate: None,
        }
    }

    #[test]
    fn only_the_answering_operator_acts_on_a_live_call() {
        assert_eq!(call(Some("op-1"), false).check_operator("op-1"), Ok(()));
        assert_eq!(
            call(Some("op-1"), false).check_operator("op-2"),
            Err(CallAccess::OtherOperator("c-1".into()))
        );
        assert_eq!(
            call(None, false).check_operator("op-1"),
            Err(CallAccess::NotAnswered("c-1".into()))
        );
        assert_eq!(
            call(Some("op-1"), true).check_operator("op-1"),
            Err(CallAccess::Ended("c-1".into()))
        );
        // Another operator learns nothing about whether the call ended.
        assert_eq!(
            call(Some("op-1"), true).check_operator("op-2"),
            Err(CallAccess::OtherOperator("c-1".into()))
        );
    }
}
