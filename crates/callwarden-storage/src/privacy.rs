//! What keeps phone numbers out of Redis: every key derived from a number (or a line, or a
//! pattern) is a keyed hash of it, and every value that must be read back as a number is sealed
//! with an AEAD. Both are keyed by one secret (`privacy.redis_secret`), the same on every replica.
//!
//! From the secret, three independent keys are derived with HMAC-SHA256 over fixed labels: one
//! for names, one for sealing, one for the fingerprint that names the secret (the index's ready
//! marker holds it, so a replica started with another secret does not trust an index it cannot
//! read).
//!
//! - A name is `HMAC-SHA256(names key, family ‖ 0 ‖ fields joined by 0)`, truncated to 128 bits
//!   and written as 32 hex digits. The family (`pattern`, `line`, `operator`, `flags`) keeps one
//!   number's names in different roles unrelated to each other: a caller's recent-incident key
//!   does not tell which index slot holds a rule of the same number.
//! - A sealed value is `s1:` and the hex of a random 192-bit nonce, the XChaCha20-Poly1305
//!   ciphertext and its tag, with the value's context (which call, which field) as associated
//!   data, so a sealed value cannot be moved to another call or field. Random 192-bit nonces do
//!   not repeat in practice, whatever the number of values sealed under one secret.
//!
//! Rotating the secret is not supported: a new secret simply finds none of the old names (the
//! index is rebuilt from Postgres, recent incident counts restored) and cannot open values
//! sealed with the old one.

use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Generate, Payload},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::{fmt, sync::Arc};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of a name kept (128 bits: collisions are out of reach, keys stay short).
const NAME_BYTES: usize = 16;
/// Hex digits of the fingerprint shown in the ready marker and in logs.
const FINGERPRINT_HEX: usize = 12;
/// Marks a sealed value (version 1); neither E.164 numbers nor line names contain ':'.
const SEALED: &str = "s1:";
const NONCE_BYTES: usize = 24;

/// The keys derived from `privacy.redis_secret`. Cheap to clone; its `Debug` shows only the
/// fingerprint.
#[derive(Clone)]
pub struct Keyring(Arc<Keys>);

struct Keys {
    /// Keyed once; cloned for each name (the key schedule is not repeated).
    names: HmacSha256,
    seal: XChaCha20Poly1305,
    fingerprint: String,
}

/// A sealed value that cannot be opened: sealed with another secret, for another context, or
/// damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed value cannot be opened (sealed with another privacy.redis_secret, or damaged)")]
pub struct Unsealable;

fn derive(secret: &[u8], label: &str) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl Keyring {
    /// Derives the keys from the secret. Its strength is the configuration's concern
    /// (`privacy.redis_secret` must be at least 32 bytes).
    pub fn new(secret: &[u8]) -> Self {
        let names = derive(secret, "callwarden redis names v1");
        let seal = derive(secret, "callwarden redis seal v1");
        let fingerprint = hex::encode(derive(secret, "callwarden redis fingerprint v1"));
        Self(Arc::new(Keys {
            names: HmacSha256::new_from_slice(&names).expect("HMAC takes keys of any length"),
            seal: XChaCha20Poly1305::new(&seal.into()),
            fingerprint: fingerprint[..FINGERPRINT_HEX].to_owned(),
        }))
    }

    /// Names the secret without revealing it: equal for equal secrets, unrelated otherwise.
    pub fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }

    /// The keyed hash of `fields` in `family`, as 32 hex digits.
    pub fn name(&self, family: &str, fields: &[&str]) -> String {
        let mut mac = self.0.names.clone();
        mac.update(family.as_bytes());
        for field in fields {
            mac.update(&[0]);
            mac.update(field.as_bytes());
        }
        hex::encode(&mac.finalize().into_bytes()[..NAME_BYTES])
    }

    /// Seals `value` for `context` (e.g. which call and which field it is).
    pub fn seal(&self, context: &str, value: &str) -> String {
        let nonce = XNonce::generate();
        let sealed = self
            .0
            .seal
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("a short value always encrypts");
        let mut out = String::with_capacity(SEALED.len() + 2 * (NONCE_BYTES + sealed.len()));
        out.push_str(SEALED);
        out.push_str(&hex::encode(nonce));
        out.push_str(&hex::encode(sealed));
        out
    }

    /// Opens a value sealed by [`Keyring::seal`] for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, Unsealable> {
        let bytes = sealed
            .strip_prefix(SEALED)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() > NONCE_BYTES)
            .ok_or(Unsealable)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).map_err(|_| Unsealable)?;
        let plain = self
            .0
            .seal
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Unsealable)?;
        String::from_utf8(plain).map_err(|_| Unsealable)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"unit-test-secret-0123456789abcdef";

    #[test]
    fn names_are_keyed_stable_and_separated_by_family() {
        let k = Keyring::new(SECRET);
        let name = k.name("flags", &["+48601234567"]);
        assert_eq!(name.len(), 32);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(name, Keyring::new(SECRET).name("flags", &["+48601234567"]));
        assert_ne!(name, k.name("slot", &["+48601234567"]));
        assert_ne!(name, k.name("flags", &["+48601234568"]));
        // Fields are delimited: ("ab", "c") is not ("a", "bc").
        assert_ne!(k.name("slot", &["ab", "c"]), k.name("slot", &["a", "bc"]));
        let other = Keyring::new(b"another-secret-0123456789abcdefgh");
        assert_ne!(name, other.name("flags", &["+48601234567"]));
        assert_ne!(k.fingerprint(), other.fingerprint());
        assert_eq!(k.fingerprint().len(), FINGERPRINT_HEX);
    }

    #[test]
    fn sealed_values_open_only_with_the_same_secret_and_context() {
        let k = Keyring::new(SECRET);
        let sealed = k.seal("call\0c-1\0caller", "+48601234567");
        assert!(sealed.starts_with(SEALED), "{sealed}");
        assert!(!sealed.contains("48601234567"), "{sealed}");
        assert_eq!(
            k.open("call\0c-1\0caller", &sealed).as_deref(),
            Ok("+48601234567")
        );
        // A fresh nonce each time: equal numbers do not give equal values.
        assert_ne!(sealed, k.seal("call\0c-1\0caller", "+48601234567"));
        assert_eq!(k.open("call\0c-2\0caller", &sealed), Err(Unsealable));
        let other = Keyring::new(b"another-secret-0123456789abcdefgh");
        assert_eq!(other.open("call\0c-1\0caller", &sealed), Err(Unsealable));
        let mut tampered = sealed.clone();
        let last = if tampered.ends_with('0') { "1" } else { "0" };
        tampered.replace_range(tampered.len() - 1.., last);
        assert_eq!(k.open("call\0c-1\0caller", &tampered), Err(Unsealable));
        for bad in ["", "+48601234567", "s1:", "s1:zz", "s1:00"] {
            assert_eq!(k.open("call\0c-1\0caller", bad), Err(Unsealable), "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_the_fingerprint_only() {
        let k = Keyring::new(SECRET);
        let shown = format!("{k:?}");
        assert!(shown.contains(k.fingerprint()), "{shown}");
        assert!(!shown.contains("unit-test-secret"), "{shown}");
    }
}
