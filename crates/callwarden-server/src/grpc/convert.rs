//! Between the wire (`callwarden.v1`) and the domain: requests are parsed here once, with
//! INVALID_ARGUMENT naming the field and the value; domain values become wire messages here.

use crate::error::ApiError;
use callwarden_domain::{
    decision::Decision,
    incident::{BlockChoice, Category, Severity},
    line::{LineDirectory, LineId},
    phone::Region,
    rule::{Effect, NewRule, OperatorId, Pattern, Rule, Scope},
};
use callwarden_proto::v1 as pb;
use chrono::{DateTime, Utc};

/// Bound on free-text fields (reasons): a record, not a document store.
const MAX_TEXT_LEN: usize = 1024;
/// Bound on identifiers that switches choose (call ids, switch ids) and actor names.
const MAX_ID_LEN: usize = 128;
/// Longest temporary block: ten years. Longer is a permanent rule (ttl 0).
const MAX_TTL_SECONDS: u32 = 10 * 366 * 24 * 3600;
/// The range of `google.protobuf.Timestamp`: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;
/// Longest excerpt of a rejected value that an error echoes, in characters.
const MAX_ECHO_CHARS: usize = 64;

/// A rejected value as its error shows it, quoted: whole if short, else its start and `…` (as
/// the domain's errors do), so a multi-megabyte field is not a multi-megabyte status message.
fn shown(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        None => format!("{value:?}"),
        Some((end, _)) => {
            let start = &value[..end];
            format!("{:?}", start.to_owned() + "…")
        }
    }
}

/// A required identifier chosen by a client: printable ASCII without spaces, bounded.
pub fn identifier(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{} is not an identifier (printable ASCII, no spaces, at most {MAX_ID_LEN})",
                shown(value)
            ),
        ));
    }
    Ok(())
}

pub fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::invalid(
            field,
            format!("{} contains control characters", shown(value)),
        ));
    }
    Ok(value.trim().to_owned())
}

/// Who acts, as bound to the caller's credentials (`auth::acting_as`).
pub fn actor(field: &str, value: &str) -> Result<String, ApiError> {
    identifier(field, value)?;
    Ok(value.to_owned())
}

pub fn line(value: &str, default_region: Region) -> Result<LineId, ApiError> {
    LineId::parse(value, default_region).map_err(|e| ApiError::invalid("line", e))
}

pub fn effect(field: &str, value: i32) -> Result<Effect, ApiError> {
    match pb::Effect::try_from(value) {
        Ok(pb::Effect::Unspecified | pb::Effect::Block) => Ok(Effect::Block),
        Ok(pb::Effect::Allow) => Ok(Effect::Allow),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("{value} is not an Effect"),
        )),
    }
}

pub fn scope(
    field: &str,
    value: Option<&pb::Scope>,
    default_region: Region,
) -> Result<Scope, ApiError> {
    let Some(value) = value else {
        return Ok(Scope::Global);
    };
    let kind_field = format!("{field}.kind");
    let value_field = format!("{field}.value");
    match pb::ScopeKind::try_from(value.kind) {
        Ok(pb::ScopeKind::Unspecified | pb::ScopeKind::Global) if value.value.is_empty() => {
            Ok(Scope::Global)
        }
        Ok(pb::ScopeKind::Unspecified | pb::ScopeKind::Global) => Err(ApiError::invalid(
            value_field,
            format!("{}: a global scope takes no value", shown(&value.value)),
        )),
        Ok(pb::ScopeKind::Line) => LineId::parse(&value.value, default_region)
            .map(Scope::Line)
            .map_err(|e| ApiError::invalid(value_field, e)),
        Ok(pb::ScopeKind::Operator) => OperatorId::parse(&value.value)
            .map(Scope::Operator)
            .map_err(|e| ApiError::invalid(value_field, e)),
        Err(_) => Err(ApiError::invalid(
            kind_field,
            format!("{} is not a ScopeKind", value.kind),
        )),
    }
}

/// Parses a rule request. An exact pattern in national format is read in the region of the
/// line it is scoped to (if configured), else in the default region.
pub fn new_rule(req: &pb::AddRuleRequest, lines: &LineDirectory) -> Result<NewRule, ApiError> {
    let default_region = lines.default_policy().region;
    let scope = scope("scope", req.scope.as_ref(), default_region)?;
    let region = match &scope {
        Scope::Line(line) => lines.policy(line).region,
        _ => default_region,
    };
    let pattern =
        Pattern::parse(&req.pattern, region).map_err(|e| ApiError::invalid("pattern", e))?;
    if req.ttl_seconds > MAX_TTL_SECONDS {
        return Err(ApiError::invalid(
            "ttl_seconds",
            format!(
                "{} is more than ten years; use 0 for a permanent rule",
                req.ttl_seconds
            ),
        ));
    }
    Ok(NewRule {
        pattern,
        effect: effect("effect", req.effect)?,
        scope,
        ttl: (req.ttl_seconds > 0).then(|| chrono::Duration::seconds(req.ttl_seconds.into())),
        reason: text("reason", &req.reason, MAX_TEXT_LEN)?,
        created_by: actor("created_by", &req.created_by)?,
    })
}

pub fn category(field: &str, value: i32) -> Result<Category, ApiError> {
    use pb::Category as C;
    Ok(match C::try_from(value) {
        Ok(C::AbusiveLanguage) => Category::AbusiveLanguage,
        Ok(C::SexualMisconduct) => Category::SexualMisconduct,
        Ok(C::ThreatOrViolence) => Category::ThreatOrViolence,
        Ok(C::IdentityProbing) => Category::IdentityProbing,
        Ok(C::IllegalContent) => Category::IllegalContent,
        Ok(C::MinorSuspected) => Category::MinorSuspected,
        Ok(C::SelfHarmRisk) => Category::SelfHarmRisk,
        Ok(C::Oversharing) => Category::Oversharing,
        Ok(C::FraudOrSpam) => Category::FraudOrSpam,
        Ok(C::Other) => Category::Other,
        Ok(C::Unspecified) => return Err(ApiError::invalid(field, "must be set")),
        Err(_) => {
            return Err(ApiError::invalid(
                field,
                format!("{value} is not a Category"),
            ));
        }
    })
}

pub fn severity(field: &str, value: i32) -> Result<Severity, ApiError> {
    use pb::Severity as S;
    Ok(match S::try_from(value) {
        Ok(S::Low) => Severity::Low,
        Ok(S::Medium) => Severity::Medium,
        Ok(S::High) => Severity::High,
        Ok(S::Critical) => Severity::Critical,
        Ok(S::Unspecified) => return Err(ApiError::invalid(field, "must be set")),
        Err(_) => {
            return Err(ApiError::invalid(
                field,
                format!("{value} is not a Severity"),
            ));
        }
    })
}

pub fn block_choice(field: &str, value: i32) -> Result<BlockChoice, ApiError> {
    use pb::BlockChoice as B;
    Ok(match B::try_from(value) {
        Ok(B::Unspecified | B::None) => BlockChoice::None,
        Ok(B::FromMe) => BlockChoice::FromMe,
        Ok(B::GlobalRequest) => BlockChoice::GlobalRequest,
        Err(_) => {
            return Err(ApiError::invalid(
                field,
                format!("{value} is not a BlockChoice"),
            ));
        }
    })
}

pub fn category_to_wire(c: Category) -> pb::Category {
    use pb::Category as C;
    match c {
        Category::AbusiveLanguage => C::AbusiveLanguage,
        Category::SexualMisconduct => C::SexualMisconduct,
        Category::ThreatOrViolence => C::ThreatOrViolence,
        Category::IdentityProbing => C::IdentityProbing,
        Category::IllegalContent => C::IllegalContent,
        Category::MinorSuspected => C::MinorSuspected,
        Category::SelfHarmRisk => C::SelfHarmRisk,
        Category::Oversharing => C::Oversharing,
        Category::FraudOrSpam => C::FraudOrSpam,
        Category::Other => C::Other,
    }
}

pub fn severity_to_wire(s: Severity) -> pb::Severity {
    match s {
        Severity::Low => pb::Severity::Low,
        Severity::Medium => pb::Severity::Medium,
        Severity::High => pb::Severity::High,
        Severity::Critical => pb::Severity::Critical,
    }
}

pub fn block_choice_to_wire(b: BlockChoice) -> pb::BlockChoice {
    match b {
        BlockChoice::None => pb::BlockChoice::None,
        BlockChoice::FromMe => pb::BlockChoice::FromMe,
        BlockChoice::GlobalRequest => pb::BlockChoice::GlobalRequest,
    }
}

/// An optional wire time, within the range a `google.protobuf.Timestamp` may hold (which
/// Postgres can store, and from which a day or a year can be subtracted without overflow).
pub fn time(
    field: &str,
    t: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    t.map(|t| {
        let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000);
        nanos
            .filter(|_| (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&t.seconds))
            .and_then(|n| DateTime::from_timestamp(t.seconds, n))
            .ok_or_else(|| {
                ApiError::invalid(
                    field,
                    format!(
                        "{}s {}ns is not a valid time (years 1 to 9999, nanos 0 to 999999999)",
                        t.seconds, t.nanos
                    ),
                )
            })
    })
    .transpose()
}

/// A request's `page_size`: 0 means `default`; more than `max` is refused.
pub fn page_size(requested: u32, default: u32, max: u32) -> Result<u32, ApiError> {
    match requested {
        0 => Ok(default),
        n if n <= max => Ok(n),
        n => Err(ApiError::invalid(
            "page_size",
            format!("{n} is more than {max}"),
        )),
    }
}

/// Required free text: trimmed, not empty, bounded, without control characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let t = text(field, value, max)?;
    if t.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    Ok(t)
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn scope_to_wire(scope: &Scope) -> pb::Scope {
    let kind = match scope {
        Scope::Global => pb::ScopeKind::Global,
        Scope::Line(_) => pb::ScopeKind::Line,
        Scope::Operator(_) => pb::ScopeKind::Operator,
    };
    pb::Scope {
        kind: kind.into(),
        value: scope.value(),
    }
}

pub fn effect_to_wire(effect: Effect) -> pb::Effect {
    match effect {
        Effect::Block => pb::Effect::Block,
        Effect::Allow => pb::Effect::Allow,
    }
}

pub fn rule_to_wire(rule: &Rule) -> pb::Rule {
    pb::Rule {
        id: rule.id.to_string(),
        pattern: rule.pattern.to_string(),
        effect: effect_to_wire(rule.effect).into(),
        scope: Some(scope_to_wire(&rule.scope)),
        reason: rule.reason.clone(),
        created_by: rule.created_by.clone(),
        created_at: Some(timestamp(rule.created_at)),
        expires_at: rule.expires_at.map(timestamp),
        removed_at: rule.removed_at.map(timestamp),
        removed_by: rule.removed_by.clone().unwrap_or_default(),
    }
}

pub fn decision_to_wire(decision: Decision) -> pb::Decision {
    match decision {
        Decision::Allow => pb::Decision::Allow,
        Decision::AllowWithNotice => pb::Decision::AllowWithNotice,
        Decision::Reject => pb::Decision::Reject,
    }
}
