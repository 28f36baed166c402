//! `callwarden.v1.Screening`: what switches ask before and during every call.

use super::convert;
use crate::{
    auth::{self, Role},
    clock::Clock,
    error::ApiError,
    health::PostgresHealth,
    hub::{CommandHub, HubEvent},
    memo::Memo,
};
use callwarden_domain::{
    call::{Command, CommandKind, LiveCall},
    decision::{decide, decide_without_rules},
    line::{LineDirectory, LineId},
    phone::CallerId,
    rule::{OperatorId, Scope},
};
use callwarden_proto::v1::{self as pb, screening_server};
use callwarden_storage::{
    RuleBook,
    incidents::IncidentStore,
    live::{self, LiveState},
};
use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub struct ScreeningService {
    pub rules: RuleBook,
    pub live: LiveState,
    pub incidents: IncidentStore,
    pub hub: Arc<CommandHub>,
    pub lines: Arc<LineDirectory>,
    pub clock: Arc<dyn Clock>,
    /// How far back `recent_flags` counts.
    pub recent_window: chrono::Duration,
    /// Open streams end when this is cancelled, so shutdown is not held up by them.
    pub shutdown: CancellationToken,
    /// Caps the command streams each switch holds.
    pub streams: auth::StreamSlots,
    /// Lines as switches write them, each parsed once: a switch sends the same few service
    /// numbers with every check, and libphonenumber's validation of one cost a tenth of a check.
    pub lines_seen: Memo<String, LineId>,
    /// How long a check may take whatever the stores do (`check_budget_ms`).
    pub budget: Duration,
    /// Whether the call history can be written now.
    pub postgres: Arc<PostgresHealth>,
}

pub fn command_to_wire(c: &Command, redelivery: u32) -> pb::CallCommand {
    pb::CallCommand {
        command_id: c.id.clone(),
        call_id: c.call_id.clone(),
        kind: match c.kind {
            CommandKind::Terminate => pb::CommandKind::Terminate,
            CommandKind::PlayWarning => pb::CommandKind::PlayWarning,
        }
        .into(),
        announcement: c.announcement.clone(),
        issued_at: Some(convert::timestamp(c.issued_at)),
        redelivery,
    }
}

impl ScreeningService {
    /// The call history in Postgres serves reports after a call (ReportPastCall); the call
    /// itself lives in Redis. A switch reporting an answer or an end while Postgres is away is
    /// not refused or held up for it: the call goes on, and only that entry of the history is
    /// missing. `write` is not started while Postgres is known to be down.
    async fn keep_history(
        &self,
        write: impl Future<Output = Result<(), callwarden_storage::StorageError>>,
    ) {
        if self.postgres.is_up() {
            let Err(e) = write.await else { return };
            if e.is_postgres_unavailable() {
                self.postgres.failed();
            }
            tracing::warn!(error = %e, "could not keep the call in the operators' history");
        }
        metrics::counter!("callwarden_call_history_missed_total").increment(1);
    }

    async fn check(&self, req: pb::CheckCallRequest) -> Result<pb::CheckCallResponse, ApiError> {
        convert::identifier("call_id", &req.call_id)?;
        convert::identifier("switch_id", &req.switch_id)?;
        let region = self.lines.default_policy().region;
        let line = self
            .lines_seen
            .get_or_try_insert(req.line.as_str(), || convert::line(&req.line, region))?;
        let policy = self.lines.policy(&line);
        let caller = CallerId::parse(&req.caller, policy.region)
            .map_err(|e| ApiError::invalid("caller", e))?;
        let operator = (!req.operator_id.is_empty())
            .then(|| {
                OperatorId::parse(&req.operator_id).map_err(|e| ApiError::invalid("operator_id", e))
            })
            .transpose()?;
        let now = self.clock.now();
        let number = caller.number();
        // Read in the same round trip as the rules: recent incidents against the caller, and
        // the planned operator's cooldown.
        let flags_key = number.map(|n| self.live.flags_key(n.as_str()));
        let cooldown_key = operator
            .as_ref()
            .map(|op| self.live.cooldown_key(op.as_str()));
        let extra_keys: Vec<String> = flags_key.iter().chain(&cooldown_key).cloned().collect();
        let call = LiveCall {
            call_id: req.call_id.clone(),
            switch_id: req.switch_id.clone(),
            line: line.to_string(),
            caller: number.map(ToString::to_string),
            checked_at: now,
            operator: None,
            answered_at: None,
            ended_at: None,
            terminate: None,
        };
        let screened = self
            .rules
            .screen(
                number,
                &Scope::candidates(&line, operator.as_ref()),
                &extra_keys,
                |pipe| self.live.register(pipe, &call),
                now,
                self.budget,
            )
            .await;
        let degraded = !screened.redis_ok || screened.rules.is_none();
        if degraded {
            metrics::counter!("callwarden_checks_degraded_total", "source" => screened.source.as_str())
                .increment(1);
        }
        let mut extras = screened.extras.iter();
        let recent_flags = flags_key.and(extras.next()).map_or(0, |v| {
            live::recent_flags(v.as_deref(), now - self.recent_window)
        });
        let cooldown_until = cooldown_key
            .and(extras.next())
            .and_then(|v| live::cooldown_until(v.as_deref(), now));
        let verdict = match &screened.rules {
            Some(rules) => decide(policy, &caller, rules, recent_flags, now),
            None => decide_without_rules(policy, &caller),
        };
        tracing::debug!(
            call_id = %req.call_id,
            switch_id = %req.switch_id,
            line = %line,
            source = screened.source.as_str(),
            decision = ?verdict.decision,
            reason = verdict.reason.as_str(),
            "call checked"
        );
        let decision = convert::decision_to_wire(verdict.decision);
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
            caller_e164: number.map(ToString::to_string).unwrap_or_default(),
            rule_id: rule.map(|r| r.id.to_string()).unwrap_or_default(),
            recent_flags,
            rule_pattern: rule.map(|r| r.pattern.to_string()).unwrap_or_default(),
            rule_scope: rule.map(|r| convert::scope_to_wire(&r.scope)),
            line: line.to_string(),
            operator_cooling_down: cooldown_until.is_some(),
            operator_cooldown_until: cooldown_until.map(convert::timestamp),
            degraded,
        })
    }

    async fn call_event(&self, req: pb::ReportCallEventRequest) -> Result<(), ApiError> {
        convert::identifier("call_id", &req.call_id)?;
        let now = self.clock.now();
        let not_live = || {
            ApiError::NotFound(format!(
                "call {:?} is not live (never checked, or expired)",
                req.call_id
            ))
        };
        match pb::CallEventKind::try_from(req.kind) {
            Ok(pb::CallEventKind::Answered) => {
                let operator = OperatorId::parse(&req.operator_id)
                    .map_err(|e| ApiError::invalid("operator_id", e))?;
                let call = self
                    .live
                    .answered(&req.call_id, operator.as_str(), now)
                    .await
                    .map_err(ApiError::from)?
                    .ok_or_else(not_live)?;
                self.keep_history(self.incidents.record_answered(&call))
                    .await;
            }
            Ok(pb::CallEventKind::Ended) => {
                self.live
                    .ended(&req.call_id, now)
                    .await
                    .map_err(ApiError::from)?
                    .ok_or_else(not_live)?;
                self.keep_history(self.incidents.record_ended(&req.call_id, now))
                    .await;
            }
            _ => {
                return Err(ApiError::invalid(
                    "kind",
                    format!("{} is not ANSWERED or ENDED", req.kind),
                ));
            }
        }
        Ok(())
    }
}

/// Sends `command` on a switch stream, counting the delivery. False once the switch is gone.
async fn deliver(
    live: &LiveState,
    out: &mpsc::Sender<Result<pb::CallCommand, Status>>,
    command: &Command,
) -> bool {
    let redelivery = match live.delivered(&command.switch_id, &command.id).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not count a command delivery");
            0
        }
    };
    if redelivery > 0 {
        metrics::counter!("callwarden_commands_redelivered_total").increment(1);
    }
    out.send(Ok(command_to_wire(command, redelivery)))
        .await
        .is_ok()
}

/// Sends every pending command of the switch not yet sent on this stream.
async fn send_pending(
    live: &LiveState,
    switch_id: &str,
    seen: &mut HashSet<String>,
    out: &mpsc::Sender<Result<pb::CallCommand, Status>>,
) -> bool {
    match live.pending(switch_id).await {
        Ok(pending) => {
            for command in pending {
                if seen.insert(command.id.clone()) && !deliver(live, out, &command).await {
                    return false;
                }
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, switch_id, "could not read pending commands");
            let _ = out
                .send(Err(Status::unavailable(
                    "pending commands unavailable; reconnect",
                )))
                .await;
            false
        }
    }
}

#[tonic::async_trait]
impl screening_server::Screening for ScreeningService {
    async fn check_call(
        &self,
        request: Request<pb::CheckCallRequest>,
    ) -> Result<Response<pb::CheckCallResponse>, Status> {
        let started = Instant::now();
        let who = auth::principal(&request);
        let mut req = request.into_inner();
        req.switch_id = auth::acting_as(who.as_ref(), Role::Switch, "switch_id", &req.switch_id)?;
        let result = self.check(req).await;
        metrics::histogram!("callwarden_check_duration_seconds").record(started.elapsed());
        Ok(Response::new(result?))
    }

    async fn report_call_event(
        &self,
        request: Request<pb::ReportCallEventRequest>,
    ) -> Result<Response<pb::ReportCallEventResponse>, Status> {
        let who = auth::principal(&request);
        let req = request.into_inner();
        // A switch reports only its own calls.
        if let Some(p) = who.as_ref().filter(|p| p.role == Role::Switch) {
            convert::identifier("call_id", &req.call_id)?;
            let call = self.live.call(&req.call_id).await.map_err(ApiError::from)?;
            if let Some(call) = call {
                auth::acting_as(Some(p), Role::Switch, "call_id", &call.switch_id)?;
            }
        }
        self.call_event(req).await?;
        Ok(Response::new(pb::ReportCallEventResponse {}))
    }

    type WatchCommandsStream = ReceiverStream<Result<pb::CallCommand, Status>>;

    async fn watch_commands(
        &self,
        request: Request<pb::WatchCommandsRequest>,
    ) -> Result<Response<Self::WatchCommandsStream>, Status> {
        let who = auth::principal(&request);
        let switch_id = auth::acting_as(
            who.as_ref(),
            Role::Switch,
            "switch_id",
            &request.into_inner().switch_id,
        )?;
        let slot = self.streams.take(who.as_ref())?;
        convert::identifier("switch_id", &switch_id)?;
        // Join the hub before reading the pending list, so nothing issued in between is missed
        // (a command seen both ways is sent once).
        let (registration, mut events) = self.hub.register(&switch_id);
        let (out, rx) = mpsc::channel(64);
        let live = self.live.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _registration = registration;
            let _slot = slot;
            let mut seen = HashSet::new();
            if !send_pending(&live, &switch_id, &mut seen, &out).await {
                return;
            }
            loop {
                tokio::select! {
                    () = out.closed() => return,
                    () = shutdown.cancelled() => {
                        let _ = out.send(Err(Status::unavailable("server shutting down; reconnect"))).await;
                        return;
                    }
                    event = events.recv() => match event {
                        Some(HubEvent::Command(command)) => {
                            if seen.insert(command.id.clone()) && !deliver(&live, &out, &command).await {
                                return;
                            }
                        }
                        Some(HubEvent::Resync) => {
                            if !send_pending(&live, &switch_id, &mut seen, &out).await {
                                return;
                            }
                        }
                        None => return,
                    },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn ack_command(
        &self,
        request: Request<pb::AckCommandRequest>,
    ) -> Result<Response<pb::AckCommandResponse>, Status> {
        let who = auth::principal(&request);
        let mut req = request.into_inner();
        req.switch_id = auth::acting_as(who.as_ref(), Role::Switch, "switch_id", &req.switch_id)?;
        convert::identifier("switch_id", &req.switch_id)?;
        convert::identifier("command_id", &req.command_id)?;
        let command = self
            .live
            .ack(&req.switch_id, &req.command_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "command {:?} is not pending for switch {:?}",
                    req.command_id, req.switch_id
                ))
            })?;
        metrics::counter!("callwarden_commands_acked_total", "kind" => command.kind.as_str())
            .increment(1);
        if command.kind == CommandKind::Terminate {
            self.incidents
                .terminate_acknowledged(&command, self.clock.now())
                .await
                .map_err(ApiError::from)?;
        }
        Ok(Response::new(pb::AckCommandResponse {}))
    }

    async fn check_active_call(
        &self,
        request: Request<pb::CheckActiveCallRequest>,
    ) -> Result<Response<pb::CheckActiveCallResponse>, Status> {
        let who = auth::principal(&request);
        let mut req = request.into_inner();
        req.switch_id = auth::acting_as(who.as_ref(), Role::Switch, "switch_id", &req.switch_id)?;
        convert::identifier("call_id", &req.call_id)?;
        convert::identifier("switch_id", &req.switch_id)?;
        let call = self
            .live
            .call(&req.call_id)
            .await
            .map_err(ApiError::from)?
            .filter(|c| c.switch_id == req.switch_id)
            .ok_or_else(|| {
                ApiError::NotFound(format!("call {:?} is not live on this switch", req.call_id))
            })?;
        let (action, announcement) = match &call.terminate {
            Some(t) => (pb::CallAction::Terminate, t.announcement.clone()),
            None => (pb::CallAction::Continue, String::new()),
        };
        Ok(Response::new(pb::CheckActiveCallResponse {
            action: action.into(),
            announcement,
        }))
    }
}
