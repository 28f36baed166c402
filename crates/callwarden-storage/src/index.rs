//! The serving index in Redis: one key per (scope, pattern) that has active rules, holding the
//! strongest BLOCK and the strongest ALLOW rule of that slot. A check asks for every key that
//! could match the call, plus the "ready" marker, in one MGET: one round trip, whatever the
//! number of prefixes and scopes.
//!
//! Redis may keep nothing on disk: a missing ready marker means the index is empty or partial
//! and must be rebuilt from Postgres (see [`crate::RuleBook::rebuild`]).
//!
//! No number is stored in clear: a slot's key is the keyed hash of its scope and pattern
//! ([`slot_key`]), and its value holds only rule ids, effects and expiries. The ready marker
//! holds the fingerprint of the secret the index was built with: a replica trusts the index only
//! when it is its own secret's, and a rebuild or a write by a replica with another secret
//! withdraws it, so replicas that disagree about the secret answer from Postgres instead of
//! missing rules they cannot see.

use crate::{RedisConn, privacy::Keyring};
use callwarden_domain::{
    phone::E164,
    rule::{Effect, Pattern, RuleId, RuleMatch, Scope},
};
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use std::{sync::Arc, time::Duration};
use uuid::Uuid;

/// Where this deployment's keys live; tests give each run its own prefix.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    pub key_prefix: String,
}

#[derive(Clone)]
pub struct RuleIndex {
    conn: RedisConn,
    prefix: Arc<str>,
    keyring: Keyring,
}

/// Withdraws the ready marker unless it is this secret's (KEYS[1] the marker, ARGV[1] the
/// fingerprint): sent before every index write, so a replica with another secret stops trusting
/// an index that no longer has every rule it would need.
const WITHDRAW_FOREIGN_MARKER: &str = r"
local m = redis.call('GET', KEYS[1])
if m and string.sub(m, 1, #ARGV[1] + 1) ~= ARGV[1] .. ' ' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// The Redis key of the index slot of (`scope`, `pattern`) under `prefix`:
/// `{prefix}:r:{scope}:{keyed hash of the pattern}`, the scope being `g` (global), or `l` (a
/// line) or `o` (an operator) and the keyed hash of the line or pseudonym.
pub fn slot_key(prefix: &str, keyring: &Keyring, scope: &Scope, pattern: &str) -> String {
    slot_key_of(
        prefix,
        &scope_part(keyring, scope),
        &pattern_part(keyring, pattern),
    )
}

fn scope_part(keyring: &Keyring, scope: &Scope) -> String {
    match scope {
        Scope::Global => "g".to_owned(),
        Scope::Line(line) => format!("l:{}", keyring.name("line", &[&line.to_string()])),
        Scope::Operator(op) => format!("o:{}", keyring.name("operator", &[op.as_str()])),
    }
}

fn pattern_part(keyring: &Keyring, pattern: &str) -> String {
    keyring.name("pattern", &[pattern])
}

fn slot_key_of(prefix: &str, scope_part: &str, pattern_part: &str) -> String {
    // Built by hand: a check builds a few dozen of these, and `format!` showed in its profile.
    let mut key = String::with_capacity(prefix.len() + scope_part.len() + pattern_part.len() + 4);
    key.push_str(prefix);
    key.push_str(":r:");
    key.push_str(scope_part);
    key.push(':');
    key.push_str(pattern_part);
    key
}

impl RuleIndex {
    pub fn new(conn: RedisConn, config: IndexConfig, keyring: Keyring) -> Self {
        Self {
            conn,
            prefix: config.key_prefix.into(),
            keyring,
        }
    }

    fn slot_key(&self, scope: &Scope, pattern: &str) -> String {
        slot_key(&self.prefix, &self.keyring, scope, pattern)
    }

    /// Holds `{fingerprint} {built at}` once the index is complete.
    fn ready_key(&self) -> String {
        format!("{}:meta:ready", self.prefix)
    }

    /// Whether a ready marker's value says the index was built with this replica's secret.
    fn is_ours(&self, marker: Option<&str>) -> bool {
        marker
            .and_then(|m| m.strip_prefix(self.keyring.fingerprint()))
            .is_some_and(|rest| rest.starts_with(' '))
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
        // One keyed hash per candidate and one per scope, not one per pair.
        let hashed: Vec<String> = candidates
            .iter()
            .map(|p| pattern_part(&self.keyring, p))
            .collect();
        let mut keys = Vec::with_capacity(1 + extra_keys.len() + candidates.len() * scopes.len());
        keys.push(self.ready_key());
        keys.extend_from_slice(extra_keys);
        for scope in scopes {
            let scope = scope_part(&self.keyring, scope);
            keys.extend(hashed.iter().map(|p| slot_key_of(&self.prefix, &scope, p)));
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
        if !self.is_ours(values[0].as_deref()) {
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
        pipe.cmd("EVAL")
            .arg(WITHDRAW_FOREIGN_MARKER)
            .arg(1)
            .arg(self.ready_key())
            .arg(self.keyring.fingerprint())
            .ignore();
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

    /// Whether the index is complete and built with this replica's secret.
    pub async fn is_ready(&self) -> Result<bool, redis::RedisError> {
        let marker: Option<String> = self.conn.clone().get(self.ready_key()).await?;
        let ours = self.is_ours(marker.as_deref());
        match marker {
            Some(m) if !ours && m.contains(' ') => tracing::warn!(
                fingerprint = self.keyring.fingerprint(),
                "the index was built with another privacy.redis_secret (do the replicas \
                 disagree?); rebuilding it with this one"
            ),
            Some(_) if !ours => {
                tracing::info!("the index predates keyed names; rebuilding it");
            }
            _ => {}
        }
        Ok(ours)
    }

    pub async fn mark_ready(&self, built_at: DateTime<Utc>) -> Result<(), redis::RedisError> {
        let value = format!("{} {}", self.keyring.fingerprint(), built_at.to_rfc3339());
        self.conn.clone().set(self.ready_key(), value).await
    }

    /// Withdraws the ready marker, whoever set it: checks answer from Postgres until the index
    /// is marked ready again.
    pub async fn unmark_ready(&self) -> Result<(), redis::RedisError> {
        self.conn.clone().del(self.ready_key()).await
    }

    /// Drops every slot key, so a rebuild does not leave removed rules behind (nor the slots of
    /// another secret, nor those written in clear before keyed names). It scans the whole
    /// keyspace, which is cheap in the usual case: Redis came back empty.
    pub async fn clear(&self) -> Result<(), redis::RedisError> {
        crate::unlink_matching(&self.conn, &format!("{}:r:*", self.prefix)).await?;
        Ok(())
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
