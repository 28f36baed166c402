//! The serving index in Redis: one key per (scope, pattern) that has active rules, holding the
//! strongest BLOCK and the strongest ALLOW rule of that slot. A check asks for every key that
//! could match the call, plus the "ready" marker, in one MGET: one round trip, whatever the
//! number of prefixes and scopes.
//!
//! Redis may keep nothing on disk: a missing ready marker means the index is empty or partial
//! and must be rebuilt from Postgres (see [`crate::RuleBook::rebuild`]).

use callwarden_domain::{
    phone::E164,
    rule::{Effect, Pattern, RuleId, RuleMatch, Scope},
};
use chrono::{DateTime, Utc};
use redis::{AsyncCommands, aio::ConnectionManager};
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

/// Where this deployment's keys live; tests give each run its own prefix.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    pub key_prefix: String,
}

#[derive(Clone)]
pub struct RuleIndex {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl RuleIndex {
    pub fn new(conn: ConnectionManager, config: IndexConfig) -> Self {
        Self {
            conn,
            prefix: config.key_prefix.into(),
        }
    }

    fn slot_key(&self, scope: &Scope, pattern: &str) -> String {
        let kind = match scope {
            Scope::Global => 'g',
            Scope::Line(_) => 'l',
            Scope::Operator(_) => 'o',
        };
        format!("{}:r:{kind}:{}:{pattern}", self.prefix, scope.value())
    }

    fn ready_key(&self) -> String {
        format!("{}:meta:ready", self.prefix)
    }

    fn lock_key(&self) -> String {
        format!("{}:meta:rebuild-lock", self.prefix)
    }

    /// One round trip for a check: the rules stored for every slot that could match `number`
    /// in `scopes` (`None` if the index is not ready), the values of `extra_keys`, and whatever
    /// `also` adds to the pipeline (replies ignored).
    pub async fn lookup(
        &self,
        number: Option<&E164>,
        scopes: &[Scope],
        extra_keys: &[String],
        also: impl FnOnce(&mut redis::Pipeline),
    ) -> Result<(Option<Vec<RuleMatch>>, Vec<Option<String>>), redis::RedisError> {
        let candidates: Vec<String> = number
            .map(|n| Pattern::candidates(n).collect())
            .unwrap_or_default();
        let mut keys = Vec::with_capacity(1 + extra_keys.len() + candidates.len() * scopes.len());
        keys.push(self.ready_key());
        keys.extend_from_slice(extra_keys);
        for scope in scopes {
            keys.extend(candidates.iter().map(|p| self.slot_key(scope, p)));
        }
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(&keys);
        also(&mut pipe);
        let (mut values,): (Vec<Option<String>>,) =
            pipe.query_async(&mut self.conn.clone()).await?;
        let slot_values = values.split_off(1 + extra_keys.len());
        let extras = values.split_off(1);
        if number.is_none() {
            return Ok((Some(Vec::new()), extras));
        }
        if values[0].is_none() {
            return Ok((None, extras));
        }
        let mut found = Vec::new();
        let slots = scopes
            .iter()
            .flat_map(|s| candidates.iter().map(move |p| (s, p)));
        for ((scope, pattern), value) in slots.zip(&slot_values) {
            let Some(value) = value else { continue };
            let pattern = Pattern::from_canonical(pattern).expect("candidates are canonical");
            decode(value, &pattern, scope, &mut found).map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::Parse, "corrupt index entry", e))
            })?;
        }
        Ok((Some(found), extras))
    }

    /// Writes each slot's active rules (an empty list deletes the slot), in one pipeline.
    pub async fn write(
        &self,
        slots: &[((Scope, Pattern), Vec<RuleMatch>)],
    ) -> Result<(), redis::RedisError> {
        if slots.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for ((scope, pattern), rules) in slots {
            let key = self.slot_key(scope, &pattern.to_string());
            match encode(rules) {
                None => pipe.del(key).ignore(),
                Some((value, None)) => pipe.set(key, value).ignore(),
                Some((value, Some(expires))) => pipe
                    .cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PXAT")
                    .arg(expires.timestamp_millis())
                    .ignore(),
            };
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }

    pub async fn is_ready(&self) -> Result<bool, redis::RedisError> {
        self.conn.clone().exists(self.ready_key()).await
    }

    pub async fn mark_ready(&self, built_at: DateTime<Utc>) -> Result<(), redis::RedisError> {
        self.conn
            .clone()
            .set(self.ready_key(), built_at.to_rfc3339())
            .await
    }

    /// Drops every slot key, so a rebuild does not leave removed rules behind. It scans the
    /// whole keyspace, which is cheap in the usual case: Redis came back empty.
    pub async fn clear(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:r:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                conn.unlink::<_, ()>(keys).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Takes the rebuild lock that keeps replicas from rebuilding at the same time.
    pub async fn try_lock_rebuild(
        &self,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, redis::RedisError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.lock_key())
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(set.is_some())
    }

    /// Extends the rebuild lock if it is still ours; false if it is not.
    pub async fn extend_rebuild(
        &self,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, redis::RedisError> {
        redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
        )
        .key(self.lock_key())
        .arg(token)
        .arg(ttl.as_millis() as u64)
        .invoke_async::<i64>(&mut self.conn.clone())
        .await
        .map(|extended| extended == 1)
    }

    pub async fn unlock_rebuild(&self, token: &str) -> Result<(), redis::RedisError> {
        // Delete only our own lock: an expired one may have passed to another replica.
        redis::Script::new(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        )
        .key(self.lock_key())
        .arg(token)
        .invoke_async::<i64>(&mut self.conn.clone())
        .await
        .map(drop)
    }
}

/// The slot's value and its expiry (None = keep). A slot keeps the longest-lived rule of each
/// effect: a shorter-lived duplicate changes nothing a check could see.
fn encode(rules: &[RuleMatch]) -> Option<(String, Option<DateTime<Utc>>)> {
    let strongest = |effect: Effect| {
        rules
            .iter()
            .filter(|r| r.effect == effect)
            .max_by_key(|r| (r.expires_at.is_none(), r.expires_at))
    };
    let kept: Vec<&RuleMatch> = [strongest(Effect::Block), strongest(Effect::Allow)]
        .into_iter()
        .flatten()
        .collect();
    if kept.is_empty() {
        return None;
    }
    let value = kept
        .iter()
        .map(|r| {
            let effect = if r.effect == Effect::Allow { 'a' } else { 'b' };
            let expires = r.expires_at.map_or(0, |t| t.timestamp_millis());
            format!("{effect},{},{expires}", r.id.0.simple())
        })
        .collect::<Vec<_>>()
        .join(";");
    let expires = kept
        .iter()
        .map(|r| r.expires_at)
        .try_fold(None::<DateTime<Utc>>, |latest, t| {
            t.map(|t| Some(latest.map_or(t, |l| l.max(t))))
        })
        .flatten();
    Some((value, expires))
}

fn decode(
    value: &str,
    pattern: &Pattern,
    scope: &Scope,
    out: &mut Vec<RuleMatch>,
) -> Result<(), String> {
    for entry in value.split(';') {
        let mut parts = entry.split(',');
        let (Some(effect), Some(id), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad entry {entry:?}"));
        };
        let effect = match effect {
            "a" => Effect::Allow,
            "b" => Effect::Block,
            other => return Err(format!("bad effect {other:?}")),
        };
        let id = Uuid::try_parse(id).map_err(|e| format!("bad rule id {id:?}: {e}"))?;
        let expires: i64 = expires
            .parse()
            .map_err(|e| format!("bad expiry {expires:?}: {e}"))?;
        out.push(RuleMatch {
            id: RuleId(id),
            pattern: pattern.clone(),
            scope: scope.clone(),
            effect,
            expires_at: (expires != 0)
                .then(|| DateTime::from_timestamp_millis(expires))
                .flatten(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(n: u128, effect: Effect, expires_at: Option<i64>) -> RuleMatch {
        RuleMatch {
            id: RuleId(Uuid::from_u128(n)),
            pattern: Pattern::Prefix("4870012".into()),
            scope: Scope::Global,
            effect,
            expires_at: expires_at.map(|s| DateTime::from_timestamp(s, 0).unwrap()),
        }
    }

    #[test]
    fn keeps_the_longest_lived_rule_of_each_effect() {
        let rules = [
            rule(1, Effect::Block, Some(100)),
            rule(2, Effect::Block, Some(300)),
            rule(3, Effect::Allow, Some(200)),
        ];
        let (value, expires) = encode(&rules).unwrap();
        let mut back = Vec::new();
        decode(&value, &rules[0].pattern, &Scope::Global, &mut back).unwrap();
        assert_eq!(back, [rules[1].clone(), rules[2].clone()]);
        assert_eq!(expires.unwrap().timestamp(), 300);
    }

    #[test]
    fn a_permanent_rule_keeps_the_slot_forever() {
        let rules = [
            rule(1, Effect::Block, Some(100)),
            rule(2, Effect::Block, None),
        ];
        let (value, expires) = encode(&rules).unwrap();
        assert_eq!(expires, None);
        let mut back = Vec::new();
        decode(&value, &rules[0].pattern, &Scope::Global, &mut back).unwrap();
        assert_eq!(back, [rules[1].clone()]);
        assert_eq!(encode(&[]), None);
    }

    #[test]
    fn corrupt_values_are_errors() {
        let p = Pattern::Prefix("48".into());
        for bad in [
            "",
            "x,1,0",
            "b,nope,0",
            "b,00000000000000000000000000000001",
            "b,00000000000000000000000000000001,z",
        ] {
            assert!(
                decode(bad, &p, &Scope::Global, &mut Vec::new()).is_err(),
                "{bad:?}"
            );
        }
    }
}
