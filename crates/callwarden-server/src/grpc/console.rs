//! `callwarden.v1.Console`: what operators press. The order in EndAndFlag is the point of the
//! product: the TERMINATE goes out first, then the incident is written.

use super::convert;
use crate::{
    auth,
    clock::Clock,
    error::ApiError,
    reports::{CallFacts, Done, Outcome, Report, Reports, TerminateSent, operator, sent_report},
};
use callwarden_domain::{
    call::{CallAccess, Command, CommandKind, LiveCall},
    policy::Action,
    rule::OperatorId,
};
use callwarden_proto::v1::{self as pb, console_server};
use callwarden_storage::live::Issued;
use chrono::{DateTime, Utc};
use std::{sync::Arc, time::Instant};
use tonic::{Request, Response, Status};
use uuid::Uuid;

pub struct ConsoleService {
    /// Where reports are recorded, or spooled while Postgres is away.
    pub reports: Arc<Reports>,
    pub clock: Arc<dyn Clock>,
    pub terminate_announcement: String,
    pub warning_announcement: String,
}

impl From<CallAccess> for ApiError {
    fn from(e: CallAccess) -> Self {
        ApiError::FailedPrecondition(e.to_string())
    }
}

impl ConsoleService {
    /// The live call, if `operator` answered it and it is still on.
    async fn operators_live_call(
        &self,
        call_id: &str,
        operator: &OperatorId,
    ) -> Result<LiveCall, ApiError> {
        let call = self
            .reports
            .live
            .call(call_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("call {call_id:?} is not live")))?;
        call.check_operator(operator.as_str())?;
        Ok(call)
    }

    /// The live call the report is about, or, when it cannot be acted on, the incident an
    /// earlier request with the same id made (a double click may arrive after the first click
    /// ended the call). Another operator's request id is refused.
    async fn call_or_replay(&self, report: &Report) -> Result<Result<LiveCall, Uuid>, ApiError> {
        let refused = match self
            .operators_live_call(&report.call_id, &report.operator)
            .await
        {
            Ok(call) => return Ok(Ok(call)),
            Err(e) => e,
        };
        if let Some((id, reporter)) = self.reports.spooled(&report.request_id).await {
            return if reporter == report.operator.as_str() {
                Ok(Err(id))
            } else {
                Err(ApiError::FailedPrecondition(format!(
                    "request_id {:?} was used for another report",
                    report.request_id
                )))
            };
        }
        match self
            .reports
            .incidents
            .by_request(&report.request_id)
            .await?
        {
            Some((id, reporter)) if reporter == report.operator.as_str() => Ok(Err(id)),
            Some(_) => Err(ApiError::FailedPrecondition(format!(
                "request_id {:?} was used for another report",
                report.request_id
            ))),
            None => Err(refused),
        }
    }

    fn command(
        &self,
        call: &LiveCall,
        kind: CommandKind,
        announcement: String,
        now: DateTime<Utc>,
    ) -> Command {
        Command {
            id: Uuid::now_v7().to_string(),
            call_id: call.call_id.clone(),
            switch_id: call.switch_id.clone(),
            kind,
            announcement,
            issued_at: now,
        }
    }

    async fn end_and_flag(
        &self,
        req: pb::EndAndFlagRequest,
    ) -> Result<pb::EndAndFlagResponse, ApiError> {
        let started = Instant::now();
        let sent = sent_report!(req);
        let report = sent.parse()?;
        let now = self.clock.now();
        let call = match self.call_or_replay(&report).await? {
            Ok(call) => call,
            Err(id) => {
                return Ok(pb::EndAndFlagResponse {
                    incident_id: id.to_string(),
                    terminate_sent: true,
                    ..Default::default()
                });
            }
        };
        // Operator safety first: the call ends before anything is written.
        let terminate = self.command(
            &call,
            CommandKind::Terminate,
            self.terminate_announcement.clone(),
            now,
        );
        let terminate = match self.reports.live.issue(&call, terminate).await? {
            Issued::New(c) | Issued::Existing(c) => c,
            Issued::NoCall => {
                return Err(ApiError::NotFound(format!(
                    "call {:?} is not live",
                    call.call_id
                )));
            }
        };
        metrics::histogram!("callwarden_button_to_command_seconds").record(started.elapsed());
        let cooldown_until = self
            .reports
            .live
            .set_cooldown(report.operator.as_str(), now + self.reports.policy.cooldown)
            .await?;
        let done = Done {
            terminate: Some(TerminateSent {
                command_id: terminate.id,
                announcement: terminate.announcement,
                issued_at: terminate.issued_at,
            }),
            cooldown_until: Some(cooldown_until),
        };
        let outcome = self
            .reports
            .record_or_spool(
                sent,
                &report,
                CallFacts::from(&call),
                "end_and_flag",
                done,
                now,
            )
            .await?;
        Ok(pb::EndAndFlagResponse {
            incident_id: outcome.id.to_string(),
            terminate_sent: true,
            cooldown_until: Some(convert::timestamp(cooldown_until)),
            actions: action_names(&outcome),
            spooled: outcome.spooled,
        })
    }

    async fn flag_call(&self, req: pb::FlagCallRequest) -> Result<pb::FlagCallResponse, ApiError> {
        let sent = sent_report!(req);
        let report = sent.parse()?;
        let now = self.clock.now();
        let call = match self.call_or_replay(&report).await? {
            Ok(call) => call,
            Err(id) => {
                return Ok(pb::FlagCallResponse {
                    incident_id: id.to_string(),
                    ..Default::default()
                });
            }
        };
        let outcome = self
            .reports
            .record_or_spool(
                sent,
                &report,
                CallFacts::from(&call),
                "flag_call",
                Done::default(),
                now,
            )
            .await?;
        Ok(pb::FlagCallResponse {
            incident_id: outcome.id.to_string(),
            actions: action_names(&outcome),
            spooled: outcome.spooled,
        })
    }

    /// Needs Postgres: the call is found in the operator's history there.
    async fn report_past_call(
        &self,
        req: pb::ReportPastCallRequest,
    ) -> Result<pb::ReportPastCallResponse, ApiError> {
        let report = sent_report!(req).parse()?;
        let now = self.clock.now();
        let call = self
            .reports
            .incidents
            .answered_call(&report.call_id, report.operator.as_str())
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "call {:?} is not in your call history",
                    report.call_id
                ))
            })?;
        let facts = CallFacts {
            call_id: call.call_id,
            switch_id: call.switch_id,
            line: call.line,
            caller: call.caller,
        };
        let (id, actions) = self
            .reports
            .record(
                Uuid::now_v7(),
                &report,
                &facts,
                "report_past_call",
                &Done::default(),
                now,
            )
            .await?;
        Ok(pb::ReportPastCallResponse {
            incident_id: id.to_string(),
            actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
        })
    }
}

fn action_names(outcome: &Outcome) -> Vec<String> {
    outcome
        .actions
        .iter()
        .map(Action::as_str)
        .map(str::to_owned)
        .collect()
}

/// The request with `operator_id` bound to the caller: their own pseudonym (an admin may name
/// anyone).
macro_rules! operator_bound {
    ($request:expr) => {
        auth::bound($request, auth::Role::Operator, "operator_id", |r| {
            &mut r.operator_id
        })
    };
}

#[tonic::async_trait]
impl console_server::Console for ConsoleService {
    async fn end_and_flag(
        &self,
        request: Request<pb::EndAndFlagRequest>,
    ) -> Result<Response<pb::EndAndFlagResponse>, Status> {
        Ok(Response::new(
            ConsoleService::end_and_flag(self, operator_bound!(request)?).await?,
        ))
    }

    async fn flag_call(
        &self,
        request: Request<pb::FlagCallRequest>,
    ) -> Result<Response<pb::FlagCallResponse>, Status> {
        Ok(Response::new(
            ConsoleService::flag_call(self, operator_bound!(request)?).await?,
        ))
    }

    async fn warn_caller(
        &self,
        request: Request<pb::WarnCallerRequest>,
    ) -> Result<Response<pb::WarnCallerResponse>, Status> {
        let req = operator_bound!(request)?;
        convert::identifier("call_id", &req.call_id)?;
        let op = operator(&req.operator_id)?;
        if !req.announcement.is_empty() {
            convert::identifier("announcement", &req.announcement)?;
        }
        let call = self.operators_live_call(&req.call_id, &op).await?;
        let announcement = if req.announcement.is_empty() {
            self.warning_announcement.clone()
        } else {
            req.announcement
        };
        let command = self.command(
            &call,
            CommandKind::PlayWarning,
            announcement,
            self.clock.now(),
        );
        match self
            .reports
            .live
            .issue(&call, command)
            .await
            .map_err(ApiError::from)?
        {
            Issued::New(c) | Issued::Existing(c) => {
                Ok(Response::new(pb::WarnCallerResponse { command_id: c.id }))
            }
            Issued::NoCall => {
                Err(ApiError::NotFound(format!("call {:?} is not live", call.call_id)).into())
            }
        }
    }

    async fn report_past_call(
        &self,
        request: Request<pb::ReportPastCallRequest>,
    ) -> Result<Response<pb::ReportPastCallResponse>, Status> {
        Ok(Response::new(
            ConsoleService::report_past_call(self, operator_bound!(request)?).await?,
        ))
    }

    async fn get_operator_status(
        &self,
        request: Request<pb::GetOperatorStatusRequest>,
    ) -> Result<Response<pb::GetOperatorStatusResponse>, Status> {
        let op = operator(&operator_bound!(request)?.operator_id)?;
        let until = self
            .reports
            .live
            .cooldown(op.as_str(), self.clock.now())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::GetOperatorStatusResponse {
            cooling_down: until.is_some(),
            cooldown_until: until.map(convert::timestamp),
        }))
    }
}
