//! The hash chain that makes an incident's event log tamper-evident: each event's hash is
//! SHA-256 of the previous hash and the event's canonical form, so changing, removing or
//! reordering any event breaks every link after it.
//!
//! Retention must later remove callers' numbers and notes without breaking the chain, so an
//! event's sensitive fields ([`REDACTABLE`]) enter its hash as salted digests
//! ([`Sealing::Digested`]): [`redact`] swaps each such value for its digest and the salt is
//! dropped, leaving a chain that still verifies but no longer holds (or can be brute-forced
//! back to) what was removed. Events written before this existed hash their details whole.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The "previous hash" of an incident's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The details keys that retention removes: callers' numbers (`caller`, a block's `pattern`)
/// and free text that may name or describe people.
pub const REDACTABLE: &[&str] = &["caller", "note", "text", "reason", "pattern", "description"];

/// The key of a removed value's stand-in: `{"redacted_sha256": "<digest>"}`.
pub const REDACTED_KEY: &str = "redacted_sha256";

/// How an event's sensitive fields enter its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing<'a> {
    /// Hashed whole (events written before redaction existed): they cannot be redacted.
    Whole,
    /// Each [`REDACTABLE`] value enters the hash as SHA-256(salt ‖ key ‖ 0 ‖ canonical value).
    /// The salt is `None` once the event was redacted: its digests are then stored instead.
    Digested(Option<&'a [u8]>),
}

impl Sealing<'_> {
    /// The scheme number stored with the event.
    pub fn scheme(&self) -> i16 {
        match self {
            Self::Whole => 1,
            Self::Digested(_) => 2,
        }
    }
}

/// One event as it is hashed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEvent<'a> {
    pub incident_id: Uuid,
    /// 1 for the first event of the incident.
    pub seq: i32,
    pub at: DateTime<Utc>,
    /// Who did it: a pseudonym or "system".
    pub actor: &'a str,
    pub kind: &'a str,
    pub details: &'a Value,
    pub sealing: Sealing<'a>,
}

impl ChainEvent<'_> {
    /// Canonical bytes: JSON with sorted keys, no spaces, time in UTC with microseconds (what
    /// Postgres keeps). Independent of serde_json's map ordering features.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = String::new();
        out.push_str("{\"actor\":");
        write_canonical(&Value::from(self.actor), &mut out);
        out.push_str(",\"at\":");
        let at = self.at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        write_canonical(&Value::from(at), &mut out);
        out.push_str(",\"details\":");
        match self.sealing {
            Sealing::Whole => write_canonical(self.details, &mut out),
            Sealing::Digested(salt) => write_canonical(&digested(self.details, salt), &mut out),
        }
        out.push_str(",\"incident_id\":");
        write_canonical(&Value::from(self.incident_id.to_string()), &mut out);
        out.push_str(",\"kind\":");
        write_canonical(&Value::from(self.kind), &mut out);
        out.push_str(",\"seq\":");
        out.push_str(&self.seq.to_string());
        out.push('}');
        out.into_bytes()
    }

    /// This event's link: SHA-256(previous hash ‖ canonical event).
    pub fn hash(&self, prev: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(prev);
        h.update(self.canonical());
        h.finalize().into()
    }
}

/// The details as a digested event hashes them: each redactable value replaced by its digest
/// (computed with the salt, or read from a redacted stand-in).
fn digested(details: &Value, salt: Option<&[u8]>) -> Value {
    let Value::Object(map) = details else {
        return details.clone();
    };
    let mut out = map.clone();
    for (key, value) in map {
        if !REDACTABLE.contains(&key.as_str()) {
            continue;
        }
        let digest = match redacted_digest(value) {
            Some(d) => d.to_owned(),
            // No salt and no stand-in: the content was tampered with; the hash will not match.
            None => field_digest(salt.unwrap_or_default(), key, value),
        };
        out.insert(key.clone(), Value::from(digest));
    }
    Value::Object(out)
}

/// The digest a redacted stand-in holds, if `value` is one.
fn redacted_digest(value: &Value) -> Option<&str> {
    match value {
        Value::Object(m) if m.len() == 1 => m.get(REDACTED_KEY)?.as_str(),
        _ => None,
    }
}

fn field_digest(salt: &[u8], key: &str, value: &Value) -> String {
    let mut text = String::new();
    write_canonical(value, &mut text);
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}

/// The details with every redactable value swapped for its digest. The event keeps its hash
/// once the salt is dropped too (`Sealing::Digested(None)`).
pub fn redact(details: &Value, salt: &[u8]) -> Value {
    let Value::Object(map) = details else {
        return details.clone();
    };
    let mut out = map.clone();
    for (key, value) in map {
        if REDACTABLE.contains(&key.as_str()) && redacted_digest(value).is_none() {
            let stand_in = serde_json::json!({ REDACTED_KEY: field_digest(salt, key, value) });
            out.insert(key.clone(), stand_in);
        }
    }
    Value::Object(out)
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Where a chain breaks: the first event whose stored links do not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i32,
    pub problem: &'static str,
}

/// A stored event: what was hashed plus the links that were stored with it.
pub struct StoredEvent<'a> {
    pub event: ChainEvent<'a>,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

/// Walks one incident's events in order and names the first broken link, if any.
pub fn verify<'a>(events: impl IntoIterator<Item = StoredEvent<'a>>) -> Result<usize, BrokenLink> {
    let mut prev: Vec<u8> = GENESIS.to_vec();
    let mut n = 0;
    for (i, stored) in events.into_iter().enumerate() {
        let seq = stored.event.seq;
        if seq != i as i32 + 1 {
            return Err(BrokenLink {
                seq,
                problem: "sequence gap (an event is missing)",
            });
        }
        if stored.prev_hash != prev.as_slice() {
            return Err(BrokenLink {
                seq,
                problem: "previous hash does not match the event before",
            });
        }
        if stored.event.hash(&prev) != stored.hash {
            return Err(BrokenLink {
                seq,
                problem: "hash does not match the event's content",
            });
        }
        prev = stored.hash.to_vec();
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: i32, details: &Value) -> ChainEvent<'_> {
        ChainEvent {
            incident_id: Uuid::from_u128(7),
            seq,
            at: DateTime::from_timestamp(1_795_000_000, 123_456_000).unwrap(),
            actor: "op-1",
            kind: "reported",
            details,
            sealing: Sealing::Whole,
        }
    }

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": "é\"q"}});
        let text = String::from_utf8(event(1, &a).canonical()).unwrap();
        assert_eq!(
            text,
            r#"{"actor":"op-1","at":"2026-11-18T11:06:40.123456Z","details":{"a":{"x":"é\"q","y":[1,{"c":3,"d":2}]},"b":1},"incident_id":"00000000-0000-0000-0000-000000000007","kind":"reported","seq":1}"#
        );
    }

    #[test]
    fn a_chain_verifies_and_any_change_is_found_at_its_link() {
        let details: Vec<Value> = (0..4).map(|i| json!({ "n": i })).collect();
        let mut links = Vec::new();
        let mut prev = GENESIS.to_vec();
        for (i, d) in details.iter().enumerate() {
            let h = event(i as i32 + 1, d).hash(&prev);
            links.push((prev.clone(), h.to_vec()));
            prev = h.to_vec();
        }
        let stored =
            |details: &'_ [Value], links: &'_ [(Vec<u8>, Vec<u8>)]| -> Result<usize, BrokenLink> {
                verify(
                    details
                        .iter()
                        .zip(links)
                        .enumerate()
                        .map(|(i, (d, (p, h)))| StoredEvent {
                            event: event(i as i32 + 1, d),
                            prev_hash: p,
                            hash: h,
                        }),
                )
            };
        assert_eq!(stored(&details, &links), Ok(4));

        let mut altered = details.clone();
        altered[2] = json!({ "n": 99 });
        assert_eq!(stored(&altered, &links).unwrap_err().seq, 3);

        let mut relinked = links.clone();
        relinked[1].1[0] ^= 1;
        assert_eq!(stored(&details, &relinked).unwrap_err().seq, 2);
    }

    #[test]
    fn a_redacted_event_keeps_its_hash_and_loses_its_content() {
        let details = json!({
            "caller": "+48601234567",
            "note": "he said where I live",
            "category": "threat_or_violence",
            "pattern": "+4860",
        });
        let salt = [7u8; 16];
        let sealed = |details, salt| ChainEvent {
            sealing: Sealing::Digested(salt),
            ..event(1, details)
        };
        let before = sealed(&details, Some(&salt[..])).hash(&GENESIS);
        let redacted = redact(&details, &salt);
        let text = redacted.to_string();
        assert!(
            !text.contains("601234567") && !text.contains("where I live"),
            "{text}"
        );
        assert!(!text.contains("+4860"), "{text}");
        assert_eq!(redacted["category"], "threat_or_violence");
        assert_eq!(sealed(&redacted, None).hash(&GENESIS), before);
        // Redacting twice changes nothing.
        assert_eq!(redact(&redacted, &[0; 16]), redacted);

        // The salt is part of the digest: without it a number cannot be found by trying them all.
        let other_salt = sealed(&details, Some(&[8u8; 16][..])).hash(&GENESIS);
        assert_ne!(other_salt, before);
        // Content changed while still present, or a forged stand-in, breaks the link.
        let mut altered = details.clone();
        altered["note"] = json!("nothing happened");
        assert_ne!(sealed(&altered, Some(&salt[..])).hash(&GENESIS), before);
        let mut forged = redacted.clone();
        forged["note"] = json!({ REDACTED_KEY: "00".repeat(32) });
        assert_ne!(sealed(&forged, None).hash(&GENESIS), before);
        // Whole-hashed events are unchanged by the new scheme.
        assert_ne!(event(1, &details).hash(&GENESIS), before);
    }
}
