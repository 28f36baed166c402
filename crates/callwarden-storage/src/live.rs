//! Live state in Redis: calls in progress, commands waiting for their switches, operators'
//! cooldowns and the recent incidents against each caller (read by CheckCall). Shared by every
//! replica; pub/sub carries new commands to whichever replica holds the switch's stream.
//!
//! Keys (under the deployment's prefix): `call:{call}` (hash, TTL), `cmd:{switch}` (pending
//! commands by id), `cmdn:{switch}` (deliveries by id), `cmddone:{switch}` (commands of ended
//! calls, still acknowledgeable), `cmds-pending` (a counter),
//! `cool:{operator}` (cooldown end, TTL), `flags:{keyed hash of the e164}` (recent incident
//! times, TTL), `meta:flags-ready:{fingerprint}`; channel `cmdch:{switch}`.
//!
//! No number is stored in clear (see [`crate::privacy`]): a call's line and caller are sealed
//! together (`parties`), bound to the call, and the recent incidents of a caller are found by
//! the keyed hash of the number.

use crate::RedisConn;
use crate::privacy::Keyring;
use callwarden_domain::call::{Command, CommandKind, LiveCall};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use redis::AsyncCommands;
use std::{collections::HashMap, sync::Arc};

#[derive(Clone)]
pub struct LiveState {
    conn: RedisConn,
    prefix: Arc<str>,
    /// How long a call stays live without being ended (switches that never report ENDED).
    call_ttl: Duration,
    keyring: Keyring,
}

/// Whether [`LiveState::issue`] sent a new command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    New(Command),
    /// The call was already terminated: the first TERMINATE stands.
    Existing(Command),
    /// No such live call.
    NoCall,
}

const ISSUE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
if ARGV[3] == '1' then
  local existing = redis.call('HGET', KEYS[1], 'terminate')
  if existing then return {2, existing} end
  redis.call('HSET', KEYS[1], 'terminate', ARGV[2])
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return {1, ARGV[2]}
";

/// Acknowledges a pending command, or one dropped because its call ended meanwhile (a switch
/// may report the end of the call it was told to terminate before it acknowledges).
const ACK: &str = r"
local c = redis.call('HGET', KEYS[1], ARGV[1])
if c then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('DECR', KEYS[3])
  return c
end
c = redis.call('HGET', KEYS[4], ARGV[1])
if c then redis.call('HDEL', KEYS[4], ARGV[1]) end
return c or false
";

/// Stops resending the pending commands of one call (it ended: nothing left to terminate or
/// warn); they stay acknowledgeable for a while.
const DISCARD_CALL: &str = r"
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local ok, cmd = pcall(cjson.decode, all[i + 1])
  if ok and cmd.call_id == ARGV[1] then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('HDEL', KEYS[2], all[i])
    redis.call('DECR', KEYS[3])
    redis.call('HSET', KEYS[4], all[i], all[i + 1])
    redis.call('PEXPIRE', KEYS[4], ARGV[2])
    n = n + 1
  end
end
return n
";

const RECORD_FLAG: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local kept = {}
local current = redis.call('GET', KEYS[1])
if current then
  for t in string.gmatch(current, '[^,]+') do
    if tonumber(t) > now - window then table.insert(kept, t) end
  end
end
table.insert(kept, ARGV[1])
while #kept > 100 do table.remove(kept, 1) end
redis.call('SET', KEYS[1], table.concat(kept, ','), 'PX', window)
return #kept
";

impl LiveState {
    pub fn new(conn: RedisConn, prefix: &str, call_ttl: Duration, keyring: Keyring) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            call_ttl,
            keyring,
        }
    }

    fn call_key(&self, call_id: &str) -> String {
        format!("{}:call:{call_id}", self.prefix)
    }
    fn pending_key(&self, switch_id: &str) -> String {
        format!("{}:cmd:{switch_id}", self.prefix)
    }
    fn deliveries_key(&self, switch_id: &str) -> String {
        format!("{}:cmdn:{switch_id}", self.prefix)
    }
    fn settled_key(&self, switch_id: &str) -> String {
        format!("{}:cmddone:{switch_id}", self.prefix)
    }
    fn pending_count_key(&self) -> String {
        format!("{}:cmds-pending", self.prefix)
    }
    fn channel(&self, switch_id: &str) -> String {
        format!("{}:cmdch:{switch_id}", self.prefix)
    }
    pub fn cooldown_key(&self, operator: &str) -> String {
        format!("{}:cool:{operator}", self.prefix)
    }
    /// The key of `caller`'s recent incidents (E.164): named by the keyed hash of the number.
    pub fn flags_key(&self, caller: &str) -> String {
        format!(
            "{}:flags:{}",
            self.prefix,
            self.keyring.name("flags", &[caller])
        )
    }

    /// Adds the registration of a newly checked call to a pipeline (CheckCall sends it with
    /// its lookup, in the same round trip).
    pub fn register(&self, pipe: &mut redis::Pipeline, call: &LiveCall) {
        let key = self.call_key(&call.call_id);
        pipe.cmd("HSET")
            .arg(&key)
            .arg("switch")
            .arg(&call.switch_id)
            .arg("parties")
            .arg(self.keyring.seal(
                &parties_context(&call.call_id),
                &format!("{}\n{}", call.line, call.caller.as_deref().unwrap_or("")),
            ))
            .arg("checked_at")
            .arg(call.checked_at.timestamp_millis())
            .ignore()
            .pexpire(&key, self.call_ttl.num_milliseconds())
            .ignore();
    }

    pub async fn call(&self, call_id: &str) -> Result<Option<LiveCall>, redis::RedisError> {
        let fields: HashMap<String, String> =
            self.conn.clone().hgetall(self.call_key(call_id)).await?;
        self.parse_call(call_id, fields)
    }

    /// Records who answered. `None` if the call is not live.
    pub async fn answered(
        &self,
        call_id: &str,
        operator: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<LiveCall>, redis::RedisError> {
        let key = self.call_key(call_id);
        let fields: HashMap<String, String> = redis::Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return {} end \
             redis.call('HSET', KEYS[1], 'operator', ARGV[1], 'answered_at', ARGV[2]) \
             return redis.call('HGETALL', KEYS[1])",
        )
        .key(&key)
        .arg(operator)
        .arg(at.timestamp_millis())
        .invoke_async(&mut self.conn.clone())
        .await?;
        self.parse_call(call_id, fields)
    }

    /// Records the end of a call and drops its pending commands. `None` if it is not live.
    pub async fn ended(
        &self,
        call_id: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<LiveCall>, redis::RedisError> {
        let key = self.call_key(call_id);
        let fields: HashMap<String, String> = redis::Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return {} end \
             redis.call('HSET', KEYS[1], 'ended_at', ARGV[1]) \
             return redis.call('HGETALL', KEYS[1])",
        )
        .key(&key)
        .arg(at.timestamp_millis())
        .invoke_async(&mut self.conn.clone())
        .await?;
        let Some(call) = self.parse_call(call_id, fields)? else {
            return Ok(None);
        };
        redis::Script::new(DISCARD_CALL)
            .key(self.pending_key(&call.switch_id))
            .key(self.deliveries_key(&call.switch_id))
            .key(self.pending_count_key())
            .key(self.settled_key(&call.switch_id))
            .arg(call_id)
            .arg(self.call_ttl.num_milliseconds())
            .invoke_async::<i64>(&mut self.conn.clone())
            .await?;
        Ok(Some(call))
    }

    /// Queues a command for the call's switch and publishes it to the replica holding the
    /// switch's stream, atomically. A TERMINATE is issued once per call.
    pub async fn issue(
        &self,
        call: &LiveCall,
        command: Command,
    ) -> Result<Issued, redis::RedisError> {
        let once = command.kind == CommandKind::Terminate;
        let (code, payload): (i64, String) = redis::Script::new(ISSUE)
            .key(self.call_key(&call.call_id))
            .key(self.pending_key(&call.switch_id))
            .key(self.pending_count_key())
            .arg(&command.id)
            .arg(encode_command(&command))
            .arg(if once { "1" } else { "0" })
            .arg(self.channel(&call.switch_id))
            .arg(self.call_ttl.num_milliseconds())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match code {
            1 => Issued::New(command),
            2 => decode_command(&payload).map_or(Issued::NoCall, Issued::Existing),
            _ => Issued::NoCall,
        })
    }

    /// Commands not yet acknowledged by `switch_id`, oldest first, with how often each was sent.
    pub async fn pending(&self, switch_id: &str) -> Result<Vec<Command>, redis::RedisError> {
        let all: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.pending_key(switch_id))
            .await?;
        let mut commands: Vec<Command> = all.values().filter_map(|v| decode_command(v)).collect();
        commands.sort_by(|a, b| (a.issued_at, &a.id).cmp(&(b.issued_at, &b.id)));
        Ok(commands)
    }

    /// Counts a delivery; returns how many times the command was sent before this one.
    pub async fn delivered(
        &self,
        switch_id: &str,
        command_id: &str,
    ) -> Result<u32, redis::RedisError> {
        let key = self.deliveries_key(switch_id);
        let mut pipe = redis::pipe();
        pipe.hincr(&key, command_id, 1)
            .pexpire(&key, self.call_ttl.num_milliseconds())
            .ignore();
        let (n,): (u32,) = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(n.saturating_sub(1))
    }

    /// The switch carried out a command. Returns it, or `None` if it was neither pending nor
    /// dropped with its ended call.
    pub async fn ack(
        &self,
        switch_id: &str,
        command_id: &str,
    ) -> Result<Option<Command>, redis::RedisError> {
        let payload: Option<String> = redis::Script::new(ACK)
            .key(self.pending_key(switch_id))
            .key(self.deliveries_key(switch_id))
            .key(self.pending_count_key())
            .key(self.settled_key(switch_id))
            .arg(command_id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(payload.as_deref().and_then(decode_command))
    }

    /// Commands pending across all switches.
    pub async fn pending_count(&self) -> Result<i64, redis::RedisError> {
        let n: Option<i64> = self.conn.clone().get(self.pending_count_key()).await?;
        Ok(n.unwrap_or(0).max(0))
    }

    /// Starts an operator's cooldown; returns its end as stored (to the millisecond), which is
    /// what every later read reports.
    pub async fn set_cooldown(
        &self,
        operator: &str,
        until: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, redis::RedisError> {
        let millis = until.timestamp_millis();
        redis::cmd("SET")
            .arg(self.cooldown_key(operator))
            .arg(millis)
            .arg("PXAT")
            .arg(millis)
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(DateTime::from_timestamp_millis(millis).unwrap_or(until))
    }

    /// The operator's cooldown end, if they are cooling down at `now`.
    pub async fn cooldown(
        &self,
        operator: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, redis::RedisError> {
        let v: Option<String> = self.conn.clone().get(self.cooldown_key(operator)).await?;
        Ok(cooldown_until(v.as_deref(), now))
    }

    /// Per secret: the keys of another secret's replicas are no use to this one.
    fn flags_ready_key(&self) -> String {
        format!(
            "{}:meta:flags-ready:{}",
            self.prefix,
            self.keyring.fingerprint()
        )
    }

    /// Whether the recent-incident keys of this secret exist in this Redis (they are lost with
    /// it).
    pub async fn flags_ready(&self) -> Result<bool, redis::RedisError> {
        self.conn.clone().exists(self.flags_ready_key()).await
    }

    /// Drops recent-incident keys named by the number in clear (`flags:+{digits}`), as versions
    /// before keyed names wrote them; returns how many. Run before the counts are restored.
    pub async fn drop_clear_flags(&self) -> Result<usize, redis::RedisError> {
        crate::unlink_matching(&self.conn, &format!("{}:flags:+*", self.prefix)).await
    }

    pub async fn mark_flags_ready(&self) -> Result<(), redis::RedisError> {
        self.conn.clone().set(self.flags_ready_key(), "1").await
    }

    /// Remembers an incident against `caller` for `recent_flags`; returns how many are recent.
    pub async fn record_flag(
        &self,
        caller: &str,
        at: DateTime<Utc>,
        window: Duration,
    ) -> Result<u32, redis::RedisError> {
        redis::Script::new(RECORD_FLAG)
            .key(self.flags_key(caller))
            .arg(at.timestamp_millis())
            .arg(window.num_milliseconds())
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Writes a caller's recent incident times as a whole (index rebuilds).
    pub async fn write_flags(
        &self,
        flags: &[(String, Vec<DateTime<Utc>>)],
        window: Duration,
    ) -> Result<(), redis::RedisError> {
        if flags.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (caller, times) in flags {
            let Some(latest) = times.iter().max() else {
                continue;
            };
            let value: Vec<String> = times
                .iter()
                .map(|t| t.timestamp_millis().to_string())
                .collect();
            pipe.cmd("SET")
                .arg(self.flags_key(caller))
                .arg(value.join(","))
                .arg("PXAT")
                .arg((*latest + window).timestamp_millis())
                .ignore();
        }
        pipe.query_async(&mut self.conn.clone()).await
    }

    /// New commands for switches as any replica issues them, until the subscription is lost
    /// (then subscribe again, and resend pending lists: what was published meanwhile is missed).
    pub async fn subscribe_commands(
        &self,
    ) -> Result<impl futures::Stream<Item = Command> + Send + Unpin + 'static, redis::RedisError>
    {
        let pattern = format!("{}:cmdch:*", self.prefix);
        // On the node in use now: after a failover, the next subscription is on the new primary.
        let mut pubsub = self.conn.client().get_async_pubsub().await?;
        pubsub.psubscribe(pattern).await?;
        Ok(pubsub.into_on_message().filter_map(|msg| {
            let payload: Option<String> = msg.get_payload().ok();
            futures::future::ready(payload.as_deref().and_then(decode_command))
        }))
    }
}

/// Reads a `cool:{operator}` value (read by CheckCall in its MGET): the end of a cooldown that
/// is still running at `now`.
pub fn cooldown_until(value: Option<&str>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    value.and_then(parse_millis).filter(|until| *until > now)
}

/// Reads a `flags:{e164}` value (read by CheckCall in its MGET): incidents since `since`.
pub fn recent_flags(value: Option<&str>, since: DateTime<Utc>) -> u32 {
    value.map_or(0, |v| {
        v.split(',')
            .filter_map(parse_millis)
            .filter(|t| *t > since)
            .count() as u32
    })
}

fn parse_millis(s: &str) -> Option<DateTime<Utc>> {
    s.parse().ok().and_then(DateTime::from_timestamp_millis)
}

/// What a call's sealed `parties` are bound to: sealed for one call, they open for no other.
fn parties_context(call_id: &str) -> String {
    format!("call\0{call_id}\0parties")
}

impl LiveState {
    /// A call's hash as stored (`None` if it is not there or incomplete). Its line and caller
    /// are sealed together in `parties` (`{line}\n{caller}`, the caller empty when withheld);
    /// hashes written in clear by versions before sealing (`line`, `caller`) are read as they
    /// are, and expire with their calls. Parties that cannot be opened (sealed with another
    /// secret) are an error: the call's caller and line are unknown, and nothing may be
    /// recorded about it.
    fn parse_call(
        &self,
        call_id: &str,
        mut f: HashMap<String, String>,
    ) -> Result<Option<LiveCall>, redis::RedisError> {
        if let Some(sealed) = f.remove("parties") {
            let parties = self
                .keyring
                .open(&parties_context(call_id), &sealed)
                .map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "live call unreadable",
                        format!("call {call_id:?}: {e}"),
                    ))
                })?;
            let (line, caller) = parties.split_once('\n').unwrap_or((&parties, ""));
            f.insert("line".into(), line.into());
            f.insert("caller".into(), caller.into());
        }
        let get = |k: &str| f.get(k).filter(|v| !v.is_empty());
        let call = (|| {
            Some(LiveCall {
                call_id: call_id.to_owned(),
                switch_id: get("switch")?.clone(),
                line: get("line")?.clone(),
                caller: get("caller").cloned(),
                checked_at: get("checked_at").and_then(|v| parse_millis(v))?,
                operator: get("operator").cloned(),
                answered_at: get("answered_at").and_then(|v| parse_millis(v)),
                ended_at: get("ended_at").and_then(|v| parse_millis(v)),
                terminate: get("terminate").and_then(|v| decode_command(v)),
            })
        })();
        Ok(call)
    }
}

pub(crate) fn encode_command(c: &Command) -> String {
    serde_json::json!({
        "id": c.id,
        "call_id": c.call_id,
        "switch_id": c.switch_id,
        "kind": c.kind.as_str(),
        "announcement": c.announcement,
        "issued_at": c.issued_at.timestamp_millis(),
    })
    .to_string()
}

pub(crate) fn decode_command(s: &str) -> Option<Command> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(Command {
        id: v["id"].as_str()?.to_owned(),
        call_id: v["call_id"].as_str()?.to_owned(),
        switch_id: v["switch_id"].as_str()?.to_owned(),
        kind: v["kind"].as_str()?.parse().ok()?,
        announcement: v["announcement"].as_str()?.to_owned(),
        issued_at: DateTime::from_timestamp_millis(v["issued_at"].as_i64()?)?,
    })
}
