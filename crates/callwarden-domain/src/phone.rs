//! Phone numbers: parsed to E.164 at the edge, once. Inside the service only [`E164`] travels.

use std::{fmt, str::FromStr};

/// Longest caller id we look at; anything longer is not a phone number, and bounding it keeps a
/// hostile switch or client from making us parse megabytes.
const MAX_INPUT_LEN: usize = 128;

/// Caller ids that switches send when the caller withheld their number (compared without case,
/// after URI decoration is stripped).
const WITHHELD_MARKERS: &[&str] = &[
    "",
    "anonymous",
    "anonymous.invalid",
    "private",
    "private number",
    "privatenumber",
    "unknown",
    "restricted",
    "withheld",
    "withheld number",
    "unavailable",
    "not available",
    "blocked",
    "no caller id",
    "nocallerid",
    "cid withheld",
    "p",
    "o",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("{value:?} is not a phone number")]
    NotANumber { value: String },
    #[error("{value:?} is not a valid number in the numbering plan")]
    InvalidNumber { value: String },
    #[error("value is longer than {MAX_INPUT_LEN} characters")]
    TooLong,
    #[error("{value:?} is not an ISO 3166 region code (e.g. \"PL\")")]
    BadRegion { value: String },
}

/// A region (ISO 3166-1 alpha-2) whose national formats a line's callers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(phonenumber::country::Id);

impl TryFrom<String> for Region {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Region> for String {
    fn from(r: Region) -> Self {
        r.to_string()
    }
}

impl FromStr for Region {
    type Err = PhoneError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        phonenumber::country::Id::from_str(&upper)
            .map(Region)
            .map_err(|_| PhoneError::BadRegion {
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// A valid phone number in E.164 form: `+` and 2 to 15 digits, e.g. `+48601234567`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses a number as a switch or a person wrote it: E.164, national format (in `region`),
    /// `00`-prefixed international, `tel:` URIs, with any separators.
    pub fn parse(raw: &str, region: Region) -> Result<Self, PhoneError> {
        if raw.len() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        let text = strip_uri(raw);
        match parse_valid(text, region) {
            Ok(n) => Ok(n),
            // Most of the world dials `00` for abroad; a region whose international prefix is
            // different (US: 011) would otherwise reject `0048...` from a roaming switch.
            Err(e) => match digits_after_00(text) {
                Some(rest) => parse_valid(&format!("+{rest}"), region).map_err(|_| e),
                None => Err(e),
            },
        }
        .map_err(|e| match e {
            PhoneError::NotANumber { .. } => PhoneError::NotANumber {
                value: raw.to_owned(),
            },
            PhoneError::InvalidNumber { .. } => PhoneError::InvalidNumber {
                value: raw.to_owned(),
            },
            other => other,
        })
    }

    /// Rebuilds a number that this service wrote itself (from Postgres or Redis). Checks only
    /// the shape, not the numbering plan, because it was checked when it came in.
    pub fn from_canonical(s: &str) -> Option<Self> {
        let digits = s.strip_prefix('+')?;
        (2..=15).contains(&digits.len()).then_some(())?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits after the `+`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is calling, as far as the switch could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerId {
    Number(E164),
    /// The caller withheld their number; each line has a policy for that.
    Withheld,
}

impl CallerId {
    pub fn parse(raw: &str, region: Region) -> Result<Self, PhoneError> {
        if raw.len() > MAX_INPUT_LEN {
            return Err(PhoneError::TooLong);
        }
        if is_withheld(raw) {
            return Ok(Self::Withheld);
        }
        E164::parse(raw, region).map(Self::Number)
    }

    pub fn number(&self) -> Option<&E164> {
        match self {
            Self::Number(n) => Some(n),
            Self::Withheld => None,
        }
    }
}

fn is_withheld(raw: &str) -> bool {
    let text = strip_uri(raw).trim();
    // `sip:anonymous@anonymous.invalid` (RFC 3323) arrives here as "anonymous".
    WITHHELD_MARKERS
        .iter()
        .any(|m| text.eq_ignore_ascii_case(m))
}

/// Drops URI decoration around a number: `sip:`, `sips:`, `tel:`, `@host`, `;params`, `<>`.
fn strip_uri(raw: &str) -> &str {
    let mut s = raw.trim().trim_start_matches('<').trim_end_matches('>');
    for scheme in ["sips:", "sip:", "tel:"] {
        // `get`, not indexing: the scheme's length may fall inside a multi-byte character.
        if s.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        {
            s = &s[scheme.len()..];
            break;
        }
    }
    if let Some(at) = s.find('@') {
        s = &s[..at];
    }
    if let Some(semi) = s.find(';') {
        s = &s[..semi];
    }
    s.trim()
}

/// What people write between the digits of a number (and of a rule's prefix).
pub(crate) fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '.' | '(' | ')' | '/')
}

/// Longest excerpt of a rejected value that an error echoes, in characters: enough to recognise
/// it, and a multi-megabyte field does not become a multi-megabyte error.
const MAX_ECHO_CHARS: usize = 64;

/// The value as an error echoes it: whole if short, else its start and `…`.
pub(crate) fn excerpt(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}…", &value[..end]),
    }
}

fn digits_after_00(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|&c| !is_separator(c)).collect();
    let rest = compact.strip_prefix("00")?;
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())).then(|| rest.to_owned())
}

fn parse_valid(text: &str, region: Region) -> Result<E164, PhoneError> {
    let not_a_number = || PhoneError::NotANumber {
        value: text.to_owned(),
    };
    // The parser accepts letters as vanity digits and ignores trailing junk; a caller id has
    // neither, so anything but digits, separators and one leading '+' is garbage.
    let plausible = text.bytes().any(|b| b.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || c == '+' || is_separator(c))
        && text.bytes().skip(1).all(|b| b != b'+');
    if !plausible {
        return Err(not_a_number());
    }
    // Separators carry no meaning, but phonenumber reads them: it takes `+48601-234-567` for a
    // tel: URI whose country code is 48601. So it is given the digits (and the `+`) alone.
    let compact: String = text.chars().filter(|&c| !is_separator(c)).collect();
    let number = parse_in(region, &compact).ok_or_else(not_a_number)?;
    if number.extension().is_some() || !phonenumber::is_valid(&number) {
        return Err(PhoneError::InvalidNumber {
            value: text.to_owned(),
        });
    }
    let formatted = number.format().mode(phonenumber::Mode::E164).to_string();
    E164::from_canonical(&formatted).ok_or_else(not_a_number)
}

/// Parses digits (after an optional `+`), reading a national number in `region`'s plan and an
/// international one in its own country's plan.
///
/// phonenumber, given a region, strips *that region's* national prefix from every number, even
/// one dialled abroad: `+39 06 1234 5678` (Rome) in Germany lost its `0` and was invalid, and
/// `+39 0331 234567` (a landline) became `+39 331 234567` (someone's mobile). So a number with
/// a `+` is parsed without a region, and one dialled with the region's international prefix is
/// parsed again from the digits after that prefix, as `+` and those digits.
fn parse_in(region: Region, text: &str) -> Option<phonenumber::PhoneNumber> {
    if text.starts_with('+') {
        return phonenumber::parse(None, text).ok();
    }
    let number = phonenumber::parse(Some(region.0), text).ok()?;
    if number.code().source() != phonenumber::country::Source::Idd {
        return Some(number);
    }
    let idd = phonenumber::metadata::DATABASE
        .by_id(region.0.as_ref())?
        .international_prefix()?
        .find(text)
        .filter(|m| m.start() == 0)?;
    phonenumber::parse(None, format!("+{}", &text[idd.end()..])).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pl() -> Region {
        "PL".parse().unwrap()
    }

    fn parse(raw: &str, region: &str) -> Result<CallerId, PhoneError> {
        CallerId::parse(raw, region.parse().unwrap())
    }

    fn e164(raw: &str, region: &str) -> String {
        match parse(raw, region) {
            Ok(CallerId::Number(n)) => n.to_string(),
            other => panic!("{raw:?} in {region}: expected a number, got {other:?}"),
        }
    }

    #[test]
    fn one_polish_caller_in_every_format() {
        for raw in [
            "+48 601 234 567",
            "+48601234567",
            "0048601234567",
            "00 48 601 234 567",
            "601-234-567",
            "601 234 567",
            "(601) 234 567",
            "tel:+48-601-234-567",
            "TEL:+48-601-234-567",
            "sip:+48601234567@pbx.example.net;user=phone",
            "<sip:+48601234567@10.0.0.1>",
            "  +48.601.234.567  ",
        ] {
            assert_eq!(e164(raw, "PL"), "+48601234567", "input {raw:?}");
        }
    }

    #[test]
    fn normalisation_table_across_countries() {
        let table = [
            // (raw, line region, E.164)
            ("+1 (202) 555-0123", "US", "+12025550123"),
            ("(202) 555-0123", "US", "+12025550123"),
            ("011 48 601 234 567", "US", "+48601234567"),
            ("0048601234567", "US", "+48601234567"),
            ("020 7946 0018", "GB", "+442079460018"),
            ("+44 20 7946 0018", "PL", "+442079460018"),
            ("07911 123456", "GB", "+447911123456"),
            ("138 0013 8000", "CN", "+8613800138000"),
            ("+86 10 6552 9988", "CN", "+861065529988"),
            ("010 6552 9988", "CN", "+861065529988"),
            ("030 12345678", "DE", "+493012345678"),
            ("+33 1 42 68 53 00", "FR", "+33142685300"),
            ("01 42 68 53 00", "FR", "+33142685300"),
            ("02 9374 4000", "AU", "+61293744000"),
            ("0011 48 601 234 567", "AU", "+48601234567"),
            ("+91 98765 43210", "IN", "+919876543210"),
            ("22 100 20 30", "PL", "+48221002030"),
        ];
        for (raw, region, want) in table {
            assert_eq!(e164(raw, region), want, "input {raw:?} in {region}");
        }
    }

    #[test]
    fn withheld_caller_ids_are_not_errors() {
        for raw in [
            "",
            "   ",
            "anonymous",
            "Anonymous",
            "PRIVATE",
            "unknown",
            "restricted",
            "Withheld",
            "unavailable",
            "sip:anonymous@anonymous.invalid",
            "<sip:Anonymous@anonymous.invalid>",
        ] {
            assert_eq!(parse(raw, "PL"), Ok(CallerId::Withheld), "input {raw:?}");
        }
    }

    #[test]
    fn garbage_is_rejected_with_the_value() {
        for raw in [
            "hello",
            "+48 601 234 567 ext. 12",
            "+48 601 234 567 call me",
            "12",
            "+48 123",
            "++48601234567",
            "+0 601 234 567",
            "601234567601234567601234567",
            "0800-FLOWERS",
            "'; DROP TABLE rules; --",
            "sip:alice@example.com",
        ] {
            let err = parse(raw, "PL").expect_err(raw);
            assert!(
                err.to_string().contains(&format!("{raw:?}")),
                "{raw:?}: {err}"
            );
        }
        assert_eq!(parse(&"1".repeat(200), "PL"), Err(PhoneError::TooLong));
    }

    #[test]
    fn regions_parse_in_any_case_and_reject_nonsense() {
        assert_eq!(pl(), "pl".parse().unwrap());
        assert_eq!(pl().to_string(), "PL");
        assert!("XX".parse::<Region>().is_err());
        assert!("Poland".parse::<Region>().is_err());
    }

    #[test]
    fn canonical_round_trip_checks_shape_only() {
        assert_eq!(
            E164::from_canonical("+48601234567").unwrap().digits(),
            "48601234567"
        );
        assert!(E164::from_canonical("48601234567").is_none());
        assert!(E164::from_canonical("+4860123456a").is_none());
        assert!(E164::from_canonical("+1234567890123456").is_none());
    }
}
