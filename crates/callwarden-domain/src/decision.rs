//! The screening decision: given a line's policy, the caller and the rules that may apply, may
//! the call reach an operator, and why.

use crate::{
    line::{AnonymousPolicy, FailurePolicy, LinePolicy},
    phone::CallerId,
    rule::{Effect, Pattern, RuleMatch},
};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Connect, and tell the operator something first (withheld number, recent incidents).
    AllowWithNotice,
    Reject,
}

/// Why a decision was reached; its [`Reason::as_str`] is the documented wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NoRule,
    Blocked,
    PrefixBlocked,
    AllowedByRule,
    AnonymousAllowed,
    AnonymousNotice,
    AnonymousRejected,
    RecentIncidents,
    /// The rules could not be read in time; the line fails open.
    FailOpen,
    /// The rules could not be read in time; the line fails closed.
    FailClosed,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Self::NoRule,
        Self::Blocked,
        Self::PrefixBlocked,
        Self::AllowedByRule,
        Self::AnonymousAllowed,
        Self::AnonymousNotice,
        Self::AnonymousRejected,
        Self::RecentIncidents,
        Self::FailOpen,
        Self::FailClosed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoRule => "no_rule",
            Self::Blocked => "blocked",
            Self::PrefixBlocked => "prefix_blocked",
            Self::AllowedByRule => "allowed_by_rule",
            Self::AnonymousAllowed => "anonymous_allowed",
            Self::AnonymousNotice => "anonymous_notice",
            Self::AnonymousRejected => "anonymous_rejected",
            Self::RecentIncidents => "recent_incidents",
            Self::FailOpen => "fail_open",
            Self::FailClosed => "fail_closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Decision,
    pub reason: Reason,
    /// The rule that decided, if one did.
    pub rule: Option<RuleMatch>,
}

/// Decides a call whose rules could not be read in time: the line's failure policy. A withheld
/// caller needs no rules, so its line's anonymous policy still decides.
pub fn decide_without_rules(policy: &LinePolicy, caller: &CallerId) -> Verdict {
    if let CallerId::Withheld = caller {
        return decide(policy, caller, &[], 0, DateTime::<Utc>::MIN_UTC);
    }
    let (decision, reason) = match policy.on_failure {
        FailurePolicy::Open => (Decision::Allow, Reason::FailOpen),
        FailurePolicy::Closed => (Decision::Reject, Reason::FailClosed),
    };
    Verdict {
        decision,
        reason,
        rule: None,
    }
}

/// The most specific active rule among `matches` (see [`RuleMatch::precedence`]).
pub fn deciding_rule(matches: &[RuleMatch], now: DateTime<Utc>) -> Option<&RuleMatch> {
    matches
        .iter()
        .filter(|m| m.expires_at.is_none_or(|t| t > now))
        .max_by_key(|m| m.precedence())
}

/// Decides a call. `matches` are the rules whose pattern and scope fit the call (expired ones
/// are ignored here, so a stale index entry cannot block anyone); `recent_flags` counts recent
/// incidents against the caller.
pub fn decide(
    policy: &LinePolicy,
    caller: &CallerId,
    matches: &[RuleMatch],
    recent_flags: u32,
    now: DateTime<Utc>,
) -> Verdict {
    let CallerId::Number(_) = caller else {
        let (decision, reason) = match policy.anonymous {
            AnonymousPolicy::Allow => (Decision::Allow, Reason::AnonymousAllowed),
            AnonymousPolicy::AllowWithNotice => {
                (Decision::AllowWithNotice, Reason::AnonymousNotice)
            }
            AnonymousPolicy::Reject => (Decision::Reject, Reason::AnonymousRejected),
        };
        return Verdict {
            decision,
            reason,
            rule: None,
        };
    };
    let rule = deciding_rule(matches, now).cloned();
    let (decision, reason) = match &rule {
        Some(r) if r.effect == Effect::Block => match r.pattern {
            Pattern::Exact(_) => (Decision::Reject, Reason::Blocked),
            Pattern::Prefix(_) => (Decision::Reject, Reason::PrefixBlocked),
        },
        _ if recent_flags > 0 && policy.notice_on_recent_incidents => {
            (Decision::AllowWithNotice, Reason::RecentIncidents)
        }
        Some(_) => (Decision::Allow, Reason::AllowedByRule),
        None => (Decision::Allow, Reason::NoRule),
    };
    Verdict {
        decision,
        reason,
        rule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        line::LineId,
        phone::E164,
        rule::{OperatorId, RuleId, Scope},
    };
    use chrono::Duration;
    use uuid::Uuid;

    const CALLER: &str = "+48700123456";

    fn policy(anonymous: AnonymousPolicy, notice: bool) -> LinePolicy {
        LinePolicy {
            region: "PL".parse().unwrap(),
            anonymous,
            notice_on_recent_incidents: notice,
            on_failure: FailurePolicy::Open,
        }
    }

    #[test]
    fn without_rules_the_line_fails_open_or_closed_but_withheld_callers_keep_their_policy() {
        let caller = CallerId::Number(E164::from_canonical(CALLER).unwrap());
        let open = policy(AnonymousPolicy::Reject, true);
        let closed = LinePolicy {
            on_failure: FailurePolicy::Closed,
            ..policy(AnonymousPolicy::Allow, true)
        };
        let v = decide_without_rules(&open, &caller);
        assert_eq!((v.decision, v.reason), (Decision::Allow, Reason::FailOpen));
        let v = decide_without_rules(&closed, &caller);
        assert_eq!(
            (v.decision, v.reason),
            (Decision::Reject, Reason::FailClosed)
        );
        assert_eq!(v.rule, None);
        let v = decide_without_rules(&open, &CallerId::Withheld);
        assert_eq!(
            (v.decision, v.reason),
            (Decision::Reject, Reason::AnonymousRejected)
        );
        let v = decide_without_rules(&closed, &CallerId::Withheld);
        assert_eq!(
            (v.decision, v.reason),
            (Decision::Allow, Reason::AnonymousAllowed)
        );
    }

    fn rule(n: u128, pattern: &str, scope: Scope, effect: Effect) -> RuleMatch {
        RuleMatch {
            id: RuleId(Uuid::from_u128(n)),
            pattern: Pattern::from_canonical(pattern).unwrap(),
            scope,
            effect,
            expires_at: None,
        }
    }

    fn line() -> Scope {
        Scope::Line(LineId::Name("desk".into()))
    }

    fn op() -> Scope {
        Scope::Operator(OperatorId::parse("op-1").unwrap())
    }

    fn check(matches: &[RuleMatch]) -> Verdict {
        let caller = CallerId::Number(E164::from_canonical(CALLER).unwrap());
        decide(
            &policy(AnonymousPolicy::Allow, false),
            &caller,
            matches,
            0,
            Utc::now(),
        )
    }

    fn winner(matches: &[RuleMatch]) -> (u128, Reason) {
        let v = check(matches);
        (v.rule.unwrap().id.0.as_u128(), v.reason)
    }

    #[test]
    fn no_rule_allows() {
        let v = check(&[]);
        assert_eq!(
            (v.decision, v.reason, v.rule),
            (Decision::Allow, Reason::NoRule, None)
        );
    }

    #[test]
    fn exact_and_prefix_blocks_reject_with_their_reason() {
        let v = check(&[rule(1, CALLER, Scope::Global, Effect::Block)]);
        assert_eq!((v.decision, v.reason), (Decision::Reject, Reason::Blocked));
        let v = check(&[rule(1, "+4870012*", Scope::Global, Effect::Block)]);
        assert_eq!(
            (v.decision, v.reason),
            (Decision::Reject, Reason::PrefixBlocked)
        );
    }

    #[test]
    fn exact_beats_prefix() {
        let m = [
            rule(1, "+4870012*", Scope::Global, Effect::Allow),
            rule(2, CALLER, Scope::Global, Effect::Block),
        ];
        assert_eq!(winner(&m), (2, Reason::Blocked));
        let m = [
            rule(1, "+4870012*", Scope::Global, Effect::Block),
            rule(2, CALLER, Scope::Global, Effect::Allow),
        ];
        assert_eq!(winner(&m), (2, Reason::AllowedByRule));
    }

    #[test]
    fn longer_prefix_beats_shorter_even_from_a_wider_scope() {
        let m = [
            rule(1, "+48*", op(), Effect::Block),
            rule(2, "+48700*", Scope::Global, Effect::Allow),
        ];
        assert_eq!(winner(&m), (2, Reason::AllowedByRule));
        let m = [
            rule(1, "+48700*", Scope::Global, Effect::Allow),
            rule(2, "+4870012*", Scope::Global, Effect::Block),
        ];
        assert_eq!(winner(&m), (2, Reason::PrefixBlocked));
    }

    #[test]
    fn narrower_scope_beats_global_at_equal_pattern() {
        let m = [
            rule(1, CALLER, Scope::Global, Effect::Allow),
            rule(2, CALLER, line(), Effect::Block),
        ];
        assert_eq!(winner(&m), (2, Reason::Blocked));
        let m = [
            rule(1, CALLER, line(), Effect::Allow),
            rule(2, CALLER, op(), Effect::Block),
        ];
        assert_eq!(winner(&m), (2, Reason::Blocked));
        let m = [
            rule(1, "+48*", Scope::Global, Effect::Block),
            rule(2, "+48*", line(), Effect::Allow),
        ];
        assert_eq!(winner(&m), (2, Reason::AllowedByRule));
    }

    #[test]
    fn allow_beats_block_at_equal_specificity() {
        for scope in [Scope::Global, line(), op()] {
            let m = [
                rule(1, "+4870012*", scope.clone(), Effect::Block),
                rule(2, "+4870012*", scope.clone(), Effect::Allow),
                rule(3, "+4870012*", scope, Effect::Block),
            ];
            assert_eq!(winner(&m), (2, Reason::AllowedByRule));
        }
    }

    #[test]
    fn expired_rules_do_not_count() {
        let mut block = rule(1, CALLER, Scope::Global, Effect::Block);
        block.expires_at = Some(Utc::now() - Duration::seconds(1));
        assert_eq!(check(&[block.clone()]).reason, Reason::NoRule);
        block.expires_at = Some(Utc::now() + Duration::seconds(60));
        assert_eq!(check(&[block]).reason, Reason::Blocked);
    }

    #[test]
    fn withheld_callers_follow_the_line_policy_whatever_the_rules() {
        let blocks = [rule(1, "+4*", Scope::Global, Effect::Block)];
        for (p, decision, reason) in [
            (
                AnonymousPolicy::Allow,
                Decision::Allow,
                Reason::AnonymousAllowed,
            ),
            (
                AnonymousPolicy::AllowWithNotice,
                Decision::AllowWithNotice,
                Reason::AnonymousNotice,
            ),
            (
                AnonymousPolicy::Reject,
                Decision::Reject,
                Reason::AnonymousRejected,
            ),
        ] {
            let v = decide(
                &policy(p, false),
                &CallerId::Withheld,
                &blocks,
                0,
                Utc::now(),
            );
            assert_eq!((v.decision, v.reason, v.rule), (decision, reason, None));
        }
    }

    #[test]
    fn recent_incidents_give_a_notice_only_where_the_line_wants_it() {
        let caller = CallerId::Number(E164::from_canonical(CALLER).unwrap());
        let now = Utc::now();
        let quiet = decide(&policy(AnonymousPolicy::Allow, false), &caller, &[], 2, now);
        assert_eq!(quiet.reason, Reason::NoRule);
        let noisy = decide(&policy(AnonymousPolicy::Allow, true), &caller, &[], 2, now);
        assert_eq!(
            (noisy.decision, noisy.reason),
            (Decision::AllowWithNotice, Reason::RecentIncidents)
        );
        let clean = decide(&policy(AnonymousPolicy::Allow, true), &caller, &[], 0, now);
        assert_eq!(clean.reason, Reason::NoRule);
        let blocked = [rule(1, CALLER, Scope::Global, Effect::Block)];
        let v = decide(
            &policy(AnonymousPolicy::Allow, true),
            &caller,
            &blocked,
            2,
            now,
        );
        assert_eq!(v.reason, Reason::Blocked);
    }
}
