//! `callwarden.v1.BlockList`: adding, importing, removing and reading rules.

use super::convert;
use crate::{auth, clock::Clock, error::ApiError};
use callwarden_domain::{
    decision::decide,
    line::LineDirectory,
    phone::CallerId,
    rule::{OperatorId, Rule, RuleId, RuleMatch, Scope},
};
use callwarden_proto::v1::{self as pb, block_list_server};
use callwarden_storage::{RuleBook, RuleFilter};
use std::sync::Arc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

pub struct BlockListService {
    pub rules: RuleBook,
    pub lines: Arc<LineDirectory>,
    pub clock: Arc<dyn Clock>,
    /// Bounds an import stream: it is one transaction.
    pub max_import: u64,
}

fn rule_id(field: &str, value: &str) -> Result<RuleId, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::invalid(field, format!("{value:?} is not a rule id")))
}

/// A filter on canonical patterns: "+" and up to 15 digits.
fn pattern_prefix(value: &str) -> Result<String, ApiError> {
    let digits = value.strip_prefix('+').unwrap_or("x");
    if digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid(
            "pattern_prefix",
            format!("{value:?} is not the start of an international number, e.g. \"+48\""),
        ))
    }
}

impl BlockListService {
    async fn import(
        &self,
        who: Option<auth::Principal>,
        mut stream: Streaming<pb::AddRuleRequest>,
    ) -> Result<u64, Status> {
        let mut import = self
            .rules
            .begin_import(self.clock.now())
            .await
            .map_err(ApiError::from)?;
        let mut n = 0u64;
        // An error returns early and drops `import`, which rolls the whole import back.
        while let Some(message) = stream.next().await {
            n += 1;
            if n > self.max_import {
                return Err(Status::out_of_range(format!(
                    "message #{n}: an import holds at most {} rules (max_import_rules); split it",
                    self.max_import
                )));
            }
            let mut message = message?;
            message.created_by = auth::acting_as(
                who.as_ref(),
                auth::Role::Supervisor,
                "created_by",
                &message.created_by,
            )
            .map_err(|e| e.in_message(n))?;
            let rule = convert::new_rule(&message, &self.lines).map_err(|e| e.in_message(n))?;
            import.add(rule).await.map_err(ApiError::from)?;
        }
        let imported = import.commit().await.map_err(ApiError::from)?;
        tracing::info!(imported, "rules imported");
        Ok(imported)
    }

    /// The decision CheckCall would reach for `number` on `line`, from the record: the same
    /// parsing, scopes and precedence (`decide`), without Redis and without registering a call.
    /// Recent incidents are not counted, so a notice for them never shows here.
    async fn explain(
        &self,
        req: pb::ExplainNumberRequest,
    ) -> Result<pb::ExplainNumberResponse, ApiError> {
        let region = self.lines.default_policy().region;
        let line = (!req.line.trim().is_empty())
            .then(|| convert::line(&req.line, region))
            .transpose()?;
        let policy = line
            .as_ref()
            .map_or(self.lines.default_policy(), |l| self.lines.policy(l));
        let caller = CallerId::parse(&req.number, policy.region)
            .map_err(|e| ApiError::invalid("number", e))?;
        let Some(number) = caller.number() else {
            return Err(ApiError::invalid(
                "number",
                format!("{:?} is a withheld caller id, not a number", req.number),
            ));
        };
        let operator = (!req.operator_id.is_empty())
            .then(|| {
                OperatorId::parse(&req.operator_id).map_err(|e| ApiError::invalid("operator_id", e))
            })
            .transpose()?;
        let now = self.clock.now();
        let scopes = match &line {
            Some(line) => Scope::candidates(line, operator.as_ref()),
            None => std::iter::once(Scope::Global)
                .chain(operator.map(Scope::Operator))
                .collect(),
        };
        let mut rules = self.rules.active_for(number, now).await?;
        rules.sort_by_key(|r| std::cmp::Reverse(r.as_match().precedence()));
        let in_scope: Vec<RuleMatch> = rules
            .iter()
            .filter(|r| scopes.contains(&r.scope))
            .map(Rule::as_match)
            .collect();
        let verdict = decide(policy, &caller, &in_scope, 0, now);
        let deciding = verdict
            .rule
            .as_ref()
            .and_then(|m| rules.iter().find(|r| r.id == m.id));
        Ok(pb::ExplainNumberResponse {
            caller_e164: number.to_string(),
            decision: convert::decision_to_wire(verdict.decision).into(),
            reason: verdict.reason.as_str().into(),
            deciding_rule: deciding.map(convert::rule_to_wire),
            rules: rules
                .iter()
                .map(|r| pb::ApplicableRule {
                    rule: Some(convert::rule_to_wire(r)),
                    in_scope: scopes.contains(&r.scope),
                })
                .collect(),
        })
    }

    fn filter(&self, req: &pb::ListRulesRequest) -> Result<RuleFilter, ApiError> {
        let default_region = self.lines.default_policy().region;
        Ok(RuleFilter {
            scope: req
                .scope
                .as_ref()
                .map(|s| convert::scope("scope", Some(s), default_region))
                .transpose()?,
            effect: (req.effect != pb::Effect::Unspecified as i32)
                .then(|| convert::effect("effect", req.effect))
                .transpose()?,
            pattern_prefix: (!req.pattern_prefix.is_empty())
                .then(|| pattern_prefix(&req.pattern_prefix))
                .transpose()?,
            include_inactive: req.include_inactive,
        })
    }
}

#[tonic::async_trait]
impl block_list_server::BlockList for BlockListService {
    async fn add_rule(
        &self,
        request: Request<pb::AddRuleRequest>,
    ) -> Result<Response<pb::Rule>, Status> {
        let who = auth::principal(&request);
        let mut req = request.into_inner();
        req.created_by = auth::acting_as(
            who.as_ref(),
            auth::Role::Supervisor,
            "created_by",
            &req.created_by,
        )?;
        let rule = convert::new_rule(&req, &self.lines)?;
        let rule = self
            .rules
            .add(rule, self.clock.now())
            .await
            .map_err(ApiError::from)?;
        tracing::info!(rule_id = %rule.id, scope = rule.scope.kind(), effect = rule.effect.as_str(), "rule added");
        Ok(Response::new(convert::rule_to_wire(&rule)))
    }

    async fn import_rules(
        &self,
        request: Request<Streaming<pb::AddRuleRequest>>,
    ) -> Result<Response<pb::ImportRulesResponse>, Status> {
        let who = auth::principal(&request);
        let imported = self.import(who, request.into_inner()).await?;
        Ok(Response::new(pb::ImportRulesResponse { imported }))
    }

    async fn remove_rule(
        &self,
        request: Request<pb::RemoveRuleRequest>,
    ) -> Result<Response<pb::Rule>, Status> {
        let who = auth::principal(&request);
        let req = request.into_inner();
        let id = rule_id("id", &req.id)?;
        let removed_by = auth::acting_as(
            who.as_ref(),
            auth::Role::Supervisor,
            "removed_by",
            &req.removed_by,
        )?;
        let removed_by = convert::actor("removed_by", &removed_by)?;
        let rule = self
            .rules
            .remove(id, &removed_by, self.clock.now())
            .await
            .map_err(ApiError::from)?;
        tracing::info!(rule_id = %rule.id, "rule removed");
        Ok(Response::new(convert::rule_to_wire(&rule)))
    }

    async fn get_rule(
        &self,
        request: Request<pb::GetRuleRequest>,
    ) -> Result<Response<pb::Rule>, Status> {
        let id = rule_id("id", &request.get_ref().id)?;
        let rule = self.rules.get(id).await.map_err(ApiError::from)?;
        Ok(Response::new(convert::rule_to_wire(&rule)))
    }

    async fn list_rules(
        &self,
        request: Request<pb::ListRulesRequest>,
    ) -> Result<Response<pb::ListRulesResponse>, Status> {
        let req = request.into_inner();
        let page_size = convert::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let after = (!req.page_token.is_empty())
            .then(|| rule_id("page_token", &req.page_token))
            .transpose()?;
        let filter = self.filter(&req)?;
        let page = self
            .rules
            .list(&filter, page_size as usize, after, self.clock.now())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListRulesResponse {
            rules: page.rules.iter().map(convert::rule_to_wire).collect(),
            next_page_token: page.next_after.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn explain_number(
        &self,
        request: Request<pb::ExplainNumberRequest>,
    ) -> Result<Response<pb::ExplainNumberResponse>, Status> {
        Ok(Response::new(self.explain(request.into_inner()).await?))
    }
}
