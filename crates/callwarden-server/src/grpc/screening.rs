//! `callwarden.v1.Screening`: what switches ask before every call.

use super::convert;
use crate::{clock::Clock, error::ApiError};
use callwarden_domain::{
    decision::{Decision, decide},
    line::LineDirectory,
    phone::CallerId,
    rule::Scope,
};
use callwarden_proto::v1::{self as pb, screening_server};
use callwarden_storage::RuleBook;
use std::{sync::Arc, time::Instant};
use tonic::{Request, Response, Status};

pub struct ScreeningService {
    pub rules: RuleBook,
    pub lines: Arc<LineDirectory>,
    pub clock: Arc<dyn Clock>,
}

impl ScreeningService {
    async fn check(&self, req: pb::CheckCallRequest) -> Result<pb::CheckCallResponse, ApiError> {
        convert::identifier("call_id", &req.call_id)?;
        convert::identifier("switch_id", &req.switch_id)?;
        let line = convert::line(&req.line, self.lines.default_policy().region)?;
        let policy = self.lines.policy(&line);
        let caller = CallerId::parse(&req.caller, policy.region)
            .map_err(|e| ApiError::invalid("caller", e))?;
        let now = self.clock.now();
        let matches = match caller.number() {
            Some(number) => {
                self.rules
                    .matches(number, &Scope::candidates(&line, None), now)
                    .await?
            }
            None => Vec::new(),
        };
        let verdict = decide(policy, &caller, &matches, 0, now);
        tracing::debug!(
            call_id = %req.call_id,
            switch_id = %req.switch_id,
            line = %line,
            decision = ?verdict.decision,
            reason = verdict.reason.as_str(),
            "call checked"
        );
        let decision = match verdict.decision {
            Decision::Allow => pb::Decision::Allow,
            Decision::AllowWithNotice => pb::Decision::AllowWithNotice,
            Decision::Reject => pb::Decision::Reject,
        };
        metrics::counter!(
            "callwarden_checks_total",
            "decision" => decision.as_str_name(),
            "reason" => verdict.reason.as_str()
        )
        .increment(1);
        let rule = verdict.rule.as_ref();
        Ok(pb::CheckCallResponse {
            decision: decision.into(),
            reason: verdict.reason.as_str().to_owned(),
            caller_e164: caller.number().map(ToString::to_string).unwrap_or_default(),
            rule_id: rule.map(|r| r.id.to_string()).unwrap_or_default(),
            recent_flags: 0,
            rule_pattern: rule.map(|r| r.pattern.to_string()).unwrap_or_default(),
            rule_scope: rule.map(|r| convert::scope_to_wire(&r.scope)),
            line: line.to_string(),
        })
    }
}

#[tonic::async_trait]
impl screening_server::Screening for ScreeningService {
    async fn check_call(
        &self,
        request: Request<pb::CheckCallRequest>,
    ) -> Result<Response<pb::CheckCallResponse>, Status> {
        let started = Instant::now();
        let result = self.check(request.into_inner()).await;
        metrics::histogram!("callwarden_check_duration_seconds").record(started.elapsed());
        Ok(Response::new(result?))
    }
}
