//! Between the wire (`callwarden.v1`) and the domain: requests are parsed here once, with
//! INVALID_ARGUMENT naming the field and the value; domain values become wire messages here.

use crate::error::ApiError;
use callwarden_domain::{
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

/// A required identifier chosen by a client: printable ASCII without spaces, bounded.
pub fn identifier(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{value:?} is not an identifier (printable ASCII, no spaces, at most {MAX_ID_LEN})"
            ),
        ));
    }
    Ok(())
}

fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
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
            format!("{value:?} contains control characters"),
        ));
    }
    Ok(value.trim().to_owned())
}

/// Who acts, until access control takes it from the caller's token: empty means "api".
pub fn actor(field: &str, value: &str) -> Result<String, ApiError> {
    if value.is_empty() {
        return Ok("api".into());
    }
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
            format!("{:?}: a global scope takes no value", value.value),
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
