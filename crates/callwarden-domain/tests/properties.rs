//! Property tests of what Callwarden parses at its edge: caller ids and phone numbers, rule
//! patterns, lines, operator pseudonyms and evidence fields. Every parser must take any string
//! without panicking, give a canonical value that reads back as itself, and keep the error it
//! returns small, whatever it was sent.
//!
//! Inputs that once broke a property are kept as plain `#[test]`s at the end of this file.

use callwarden_domain::{
    line::{LineError, LineId},
    phone::{CallerId, E164, PhoneError, Region},
    review::{EvidenceUri, Sha256Hex},
    rule::{OperatorId, Pattern, PatternError, PseudonymError, Scope},
};
use proptest::prelude::*;
use proptest::sample::select;
use std::sync::LazyLock;

/// An error message echoes at most a short excerpt of what was sent, so a multi-megabyte field
/// never becomes a multi-megabyte gRPC status (escaping can still make one character several).
const MAX_ERROR_LEN: usize = 1024;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Every region phonenumber knows (not the "001" non-geographic entities).
static REGIONS: LazyLock<Vec<Region>> = LazyLock::new(|| {
    phonenumber::metadata::DATABASE
        .iter()
        .filter_map(|m| m.id().parse::<Region>().ok())
        .collect()
});

/// Regions whose international prefix is `00`, or `011` (North America, where a `00`-prefixed
/// number cannot be national and is read as international). Elsewhere `00` may begin a national
/// number or a carrier code (Indonesia, Brazil), and the line's region decides.
static ZERO_ZERO_REGIONS: LazyLock<Vec<Region>> = LazyLock::new(|| {
    phonenumber::metadata::DATABASE
        .iter()
        .filter(|m| {
            m.international_prefix()
                .is_some_and(|idd| matches!(idd.as_str(), "00" | "011"))
        })
        .filter_map(|m| m.id().parse::<Region>().ok())
        .collect()
});

/// Valid numbers to start from: each region's example numbers, in E.164.
static EXAMPLES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for m in phonenumber::metadata::DATABASE.iter() {
        let d = m.descriptors();
        let examples = [
            d.fixed_line(),
            d.mobile(),
            d.toll_free(),
            d.premium_rate(),
            d.shared_cost(),
            d.personal_number(),
            d.voip(),
            d.pager(),
            d.uan(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|d| d.example());
        for example in examples {
            let e164 = format!("+{}{example}", m.country_code());
            if E164::from_canonical(&e164).is_some() {
                out.push(e164);
            }
        }
    }
    out.sort();
    out.dedup();
    out
});

fn region() -> impl Strategy<Value = Region> {
    select(REGIONS.clone())
}

fn pl() -> Region {
    "PL".parse().unwrap()
}

/// Strings of every kind: any unicode, control characters, and the alphabet of phone numbers,
/// patterns and URIs (where the interesting edge cases are), short and long.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f]{0,8}[0-9+ ]{0,20}[\\x00-\\x1f\\x7f]{0,4}",
        "[0-9+() ./*-]{0,40}",
        "(sips?:|tel:|<sip:|SIP:|TEL:|Tel:|)[0-9+() ./*-]{0,24}(@[a-z.]{0,10})?(;[a-z=]{0,10})?>?",
        // Multi-byte characters where a URI scheme or a prefix is looked for.
        "[a-zA-Z:é€😀\u{0301}]{0,8}[0-9+ ]{0,16}",
        "[0-9a-zA-Z._\\-]{0,80}",
        "[0-9a-fA-F]{60,68}",
        "[a-z]{1,6}:[!-~]{0,40}",
        // Around and far past every length limit.
        "[0-9 ]{120,140}",
        ".{60,300}",
        "[0-9]{1000,5000}\\*?",
    ]
}

/// A valid number: a region's example with its last digits changed, kept if still valid.
fn valid_number() -> impl Strategy<Value = E164> {
    (
        select(EXAMPLES.clone()),
        prop::collection::vec(0u8..10, 0..=4),
    )
        .prop_filter_map("not a valid number", |(example, tail)| {
            let mut digits: Vec<u8> = example.bytes().collect();
            let n = digits.len();
            // Keep the country code and the first digits: they select the numbering plan.
            for (i, d) in tail.iter().enumerate() {
                if n > 6 + i {
                    digits[n - 1 - i] = b'0' + d;
                }
            }
            E164::parse(std::str::from_utf8(&digits).unwrap(), pl()).ok()
        })
}

/// The number as phonenumber reads it, and its region if it has one (not for the
/// non-geographic codes such as +800).
fn home(n: &E164) -> (phonenumber::PhoneNumber, Option<Region>) {
    let parsed = phonenumber::parse(None, n.as_str()).expect("a valid number");
    let region = parsed
        .country()
        .id()
        .and_then(|id| id.as_ref().parse::<Region>().ok());
    (parsed, region)
}

/// `digits` with a separator (or none) before each digit, as `picks` choose.
fn spread(digits: &str, picks: &[u8]) -> String {
    const SEPARATORS: [&str; 6] = ["", "", " ", "-", ".", "/"];
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 {
            out.push_str(SEPARATORS[usize::from(picks[i % picks.len()]) % SEPARATORS.len()]);
        }
        out.push(d);
    }
    out
}

proptest! {
    #![proptest_config(config())]

    // --- Phone numbers -----------------------------------------------------------------------

    #[test]
    fn phone_parsing_never_panics_and_is_canonical(raw in any_text(), region in region()) {
        let parsed = E164::parse(&raw, region);
        let caller = CallerId::parse(&raw, region);
        if raw.len() > 128 {
            prop_assert_eq!(&parsed, &Err(PhoneError::TooLong));
            prop_assert_eq!(&caller, &Err(PhoneError::TooLong));
        }
        match &parsed {
            Ok(n) => {
                let s = n.as_str();
                prop_assert!(s.starts_with('+'), "{s}");
                prop_assert!((3..=16).contains(&s.len()), "{s}");
                prop_assert!(n.digits().bytes().all(|b| b.is_ascii_digit()), "{s}");
                prop_assert!(!n.digits().starts_with('0'), "{s}");
                prop_assert_eq!(E164::from_canonical(s), Some(n.clone()));
                // Idempotent, and international form reads the same in every region.
                prop_assert_eq!(E164::parse(s, region), Ok(n.clone()));
                prop_assert_eq!(E164::parse(s, pl()), Ok(n.clone()));
                // A number is never mistaken for a withheld caller id, nor the reverse.
                prop_assert_eq!(caller.clone(), Ok(CallerId::Number(n.clone())));
            }
            Err(e) => {
                prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{}", e.to_string().len());
                prop_assert!(matches!(caller, Ok(CallerId::Withheld) | Err(_)), "{caller:?}");
            }
        }
    }

    #[test]
    fn every_way_of_writing_a_number_reads_as_it(
        n in valid_number(),
        line_region in region(),
        dials_00 in select(ZERO_ZERO_REGIONS.clone()),
        picks in prop::collection::vec(any::<u8>(), 1..16),
        pad in "[ \t]{0,2}",
    ) {
        let (parsed, home) = home(&n);
        let digits = n.digits();
        let international = parsed.format().mode(phonenumber::Mode::International).to_string();
        let rfc3966 = parsed.format().mode(phonenumber::Mode::Rfc3966).to_string();
        // Separators anywhere in the number, within one group of parentheses.
        let mut grouped = spread(digits, &picks);
        let cut = grouped.find(|c: char| c.is_ascii_digit() && c != '0').map_or(0, |i| i + 1);
        let close = (cut + 3).min(grouped.len());
        if close > cut {
            grouped.insert(close, ')');
            grouped.insert_str(cut, " (");
        }
        let anywhere = [
            n.to_string(),
            international.clone(),
            rfc3966,
            format!("+{}", spread(digits, &picks)),
            format!("+{grouped}"),
            format!("tel:+{}", spread(digits, &picks)),
            format!("TEL:{international}"),
            format!("sip:{n}@pbx.example.net;user=phone"),
            format!("<sip:{n}@10.0.0.1>"),
            format!("{pad}{n}{pad}"),
        ];
        for raw in &anywhere {
            for region in [Some(line_region), home].into_iter().flatten() {
                prop_assert_eq!(
                    E164::parse(raw, region), Ok(n.clone()), "{:?} in {}", raw, region
                );
            }
        }
        // "00" for "+": most of the world dials it for abroad, and a roaming switch may send it.
        let zero_zero = format!("00{}", spread(digits, &picks));
        prop_assert_eq!(
            E164::parse(&zero_zero, dials_00), Ok(n.clone()), "{:?} in {}", zero_zero, dials_00
        );
        // National format in the number's own region. (One whose national number begins with
        // its country code is ambiguous written without the trunk prefix, as phonenumber writes
        // some, e.g. Rwanda's "250 123 456": it is read as international, as libphonenumber does.)
        let code = parsed.code().value().to_string();
        let ambiguous = digits[code.len()..].starts_with(&code);
        if let Some(home) = home.filter(|_| !ambiguous) {
            let national = parsed.format().mode(phonenumber::Mode::National).to_string();
            prop_assert_eq!(
                CallerId::parse(&national, home),
                Ok(CallerId::Number(n.clone())),
                "{:?} in {}", national, home
            );
        }
    }

    // --- Rule patterns -----------------------------------------------------------------------

    #[test]
    fn pattern_parsing_never_panics_and_round_trips(raw in any_text(), region in region()) {
        let parsed = Pattern::parse(&raw, region);
        match &parsed {
            Ok(p) => {
                let wants_prefix = raw.trim().ends_with('*');
                prop_assert_eq!(matches!(p, Pattern::Prefix(_)), wants_prefix, "{:?}", p);
                if let Pattern::Prefix(digits) = p {
                    prop_assert!((1..=15).contains(&digits.len()), "{digits}");
                    prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{digits}");
                    prop_assert!(!digits.starts_with('0'), "{digits}");
                }
                let canonical = p.to_string();
                prop_assert_eq!(Pattern::from_canonical(&canonical), Some(p.clone()));
                prop_assert_eq!(Pattern::parse(&canonical, region), Ok(p.clone()));
                prop_assert_eq!(Pattern::parse(&canonical, pl()), Ok(p.clone()));
                if let Pattern::Exact(n) = p {
                    prop_assert_eq!(E164::parse(raw.trim(), region), Ok(n.clone()));
                }
            }
            Err(e) => {
                prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{}", e.to_string().len());
                if raw.trim().is_empty() {
                    prop_assert_eq!(e, &PatternError::Empty);
                }
            }
        }
    }

    #[test]
    fn a_prefix_reads_the_same_however_it_is_written(
        digits in "[1-9][0-9]{0,14}",
        picks in prop::collection::vec(any::<u8>(), 1..16),
        zero_zero in any::<bool>(),
        pad in "[ \t]{0,2}",
        region in region(),
    ) {
        let lead = if zero_zero { "00" } else { "+" };
        let raw = format!("{pad}{lead}{}*{pad}", spread(&digits, &picks));
        prop_assert_eq!(Pattern::parse(&raw, region), Ok(Pattern::Prefix(digits.clone())), "{:?}", raw);
        prop_assert_eq!(Pattern::Prefix(digits.clone()).to_string(), format!("+{digits}*"));
    }

    #[test]
    fn a_prefix_matches_exactly_the_numbers_that_start_with_it(
        prefix in "[1-9][0-9]{0,14}",
        other in "[1-9][0-9]{1,14}",
        extend in any::<bool>(),
    ) {
        // Half of the numbers start with the prefix.
        let mut number = if extend { format!("{prefix}{other}") } else { other };
        number.truncate(15);
        let n = E164::from_canonical(&format!("+{number}")).unwrap();
        let pattern = Pattern::Prefix(prefix.clone());
        let candidates: Vec<String> = Pattern::candidates(&n).collect();
        let starts = number.starts_with(prefix.as_str());
        prop_assert_eq!(pattern.matches(&n), starts);
        prop_assert_eq!(candidates.contains(&pattern.to_string()), starts);
        // The number itself and each of its prefixes, once each, and each matches the number.
        prop_assert_eq!(candidates.len(), number.len() + 1);
        prop_assert_eq!(&candidates[0], n.as_str());
        let mut unique = candidates.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), candidates.len());
        for c in &candidates {
            let p = Pattern::from_canonical(c).unwrap();
            prop_assert!(p.matches(&n), "{c}");
            prop_assert_eq!(&p.to_string(), c);
        }
    }

    #[test]
    fn an_exact_pattern_matches_only_its_number(a in valid_number(), b in valid_number()) {
        let pattern = Pattern::parse(a.as_str(), pl()).unwrap();
        prop_assert_eq!(&pattern, &Pattern::Exact(a.clone()));
        prop_assert!(pattern.matches(&a));
        prop_assert_eq!(pattern.matches(&b), a == b);
        let in_candidates = Pattern::candidates(&b).any(|c| c == pattern.to_string());
        prop_assert_eq!(in_candidates, a == b);
    }

    // --- Lines, operators, evidence ----------------------------------------------------------

    #[test]
    fn line_parsing_never_panics_and_round_trips(raw in any_text(), region in region()) {
        let trimmed = raw.trim();
        let name_shaped = !trimmed.is_empty()
            && trimmed.len() <= 64
            && trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        match LineId::parse(&raw, region) {
            Ok(line) => {
                match &line {
                    LineId::Number(n) => {
                        prop_assert_eq!(E164::parse(trimmed, region), Ok(n.clone()));
                    }
                    LineId::Name(name) => {
                        prop_assert!(name_shaped, "{raw:?}");
                        prop_assert_eq!(name.as_str(), trimmed);
                    }
                }
                let canonical = line.to_string();
                prop_assert_eq!(&LineId::from_canonical(&canonical), &line);
                prop_assert_eq!(LineId::parse(&canonical, region), Ok(line.clone()));
                let scope = Scope::Line(line);
                prop_assert_eq!(Scope::from_parts(scope.kind(), &scope.value()), Some(scope));
            }
            Err(LineError::Empty) => prop_assert!(trimmed.is_empty()),
            Err(e @ LineError::Invalid { .. }) => {
                prop_assert!(!name_shaped, "{raw:?}");
                prop_assert!(E164::parse(trimmed, region).is_err());
                prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{}", e.to_string().len());
            }
        }
    }

    #[test]
    fn operator_pseudonyms_are_exactly_the_bounded_safe_names(raw in any_text()) {
        let safe = !raw.is_empty()
            && raw.len() <= 64
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        match OperatorId::parse(&raw) {
            Ok(op) => {
                prop_assert!(safe, "{raw:?}");
                prop_assert_eq!(op.as_str(), raw.as_str());
                prop_assert_eq!(OperatorId::parse(&op.to_string()), Ok(op.clone()));
                let scope = Scope::Operator(op);
                prop_assert_eq!(Scope::from_parts(scope.kind(), &scope.value()), Some(scope));
            }
            Err(e) => {
                prop_assert!(!safe, "{raw:?}");
                prop_assert_eq!(raw.is_empty(), e == PseudonymError::Empty);
                prop_assert!(e.to_string().len() <= MAX_ERROR_LEN, "{}", e.to_string().len());
            }
        }
    }

    #[test]
    fn sha256_is_64_hex_digits_in_lower_case(raw in any_text()) {
        let hex = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit());
        match Sha256Hex::parse(&raw) {
            Ok(sha) => {
                prop_assert!(hex, "{raw:?}");
                prop_assert_eq!(sha.as_str(), raw.to_ascii_lowercase());
                prop_assert_eq!(Sha256Hex::parse(sha.as_str()), Ok(sha.clone()));
                prop_assert_eq!(Sha256Hex::parse(&raw.to_ascii_uppercase()), Ok(sha));
            }
            Err(e) => {
                prop_assert!(!hex, "{raw:?}");
                prop_assert!(e.len() <= MAX_ERROR_LEN, "{}", e.len());
            }
        }
    }

    #[test]
    fn evidence_uris_are_bounded_printable_and_absolute(raw in any_text()) {
        match EvidenceUri::parse(&raw) {
            Ok(uri) => {
                prop_assert_eq!(uri.as_str(), raw.as_str());
                prop_assert!(raw.len() <= 2048);
                prop_assert!(raw.bytes().all(|b| b.is_ascii_graphic()), "{raw:?}");
                let (scheme, rest) = raw.split_once(':').unwrap();
                prop_assert!(scheme.starts_with(|c: char| c.is_ascii_alphabetic()), "{raw:?}");
                prop_assert!(!rest.is_empty());
                prop_assert_eq!(EvidenceUri::parse(uri.as_str()), Ok(uri));
            }
            Err(e) => prop_assert!(e.len() <= MAX_ERROR_LEN, "{}", e.len()),
        }
    }

    #[test]
    fn evidence_uris_that_should_be_taken_are(
        scheme in "[a-zA-Z][a-zA-Z0-9+.-]{0,10}",
        rest in "[!-~]{1,200}",
    ) {
        let raw = format!("{scheme}:{rest}");
        prop_assert!(EvidenceUri::parse(&raw).is_ok(), "{raw:?}");
        let spaced = format!("{raw} ");
        let unicode = format!("{raw}é");
        prop_assert!(EvidenceUri::parse(&spaced).is_err());
        prop_assert!(EvidenceUri::parse(&unicode).is_err());
    }
}

// --- Regressions: inputs the properties above found, fixed, and kept -------------------------

fn region_of(code: &str) -> Region {
    code.parse().unwrap()
}

/// Found by `phone_parsing_never_panics_and_is_canonical` (and the pattern property): a
/// multi-byte character where the URI scheme is looked for (byte 4 of ":😀") made slicing panic,
/// so any caller id, line or pattern like it brought down the request.
#[test]
fn a_multi_byte_character_where_a_uri_scheme_would_end_is_no_panic() {
    for raw in [
        ":😀",
        "é€",
        "<😀😀",
        "ti😀:+48601234567",
        "sip😀",
        "tél:+48601234567",
    ] {
        assert!(E164::parse(raw, pl()).is_err(), "{raw:?}");
        assert!(CallerId::parse(raw, pl()).is_err(), "{raw:?}");
        assert!(Pattern::parse(raw, pl()).is_err(), "{raw:?}");
        assert!(LineId::parse(raw, pl()).is_err(), "{raw:?}");
    }
}

/// Found by `every_way_of_writing_a_number_reads_as_it`: phonenumber strips the *line's* national
/// prefix from numbers dialled abroad. "+24101441234" (Gabon) was invalid on a line in Vietnam;
/// Italian landlines ("+39 0...") were invalid on lines in Germany, the UK, France, China...;
/// worse, "+39 0331 234567" (a landline) was read as "+39 331 234567", someone's mobile.
#[test]
fn a_number_dialled_abroad_is_read_in_its_own_countrys_plan() {
    for (raw, region, want) in [
        ("+24101441234", "VN", "+24101441234"),
        ("+39 06 1234 5678", "DE", "+390612345678"),
        ("+39 02 1234 5678", "GB", "+390212345678"),
        ("+390331234567", "DE", "+390331234567"),
        ("+390331234567", "FR", "+390331234567"),
        ("0039 0331 234567", "DE", "+390331234567"),
        ("011 39 0331 234567", "US", "+390331234567"),
        ("tel:+39-0331-234567", "CN", "+390331234567"),
    ] {
        let n = E164::parse(raw, region_of(region));
        assert_eq!(
            n.as_ref().map(E164::as_str),
            Ok(want),
            "{raw:?} in {region}"
        );
        let p = Pattern::parse(raw, region_of(region));
        assert_eq!(
            p.map(|p| p.to_string()),
            Ok(want.to_owned()),
            "{raw:?} in {region}"
        );
    }
}

/// Found by `every_way_of_writing_a_number_reads_as_it`: phonenumber read the digits before the
/// first '-' after a '+' as the country code, so "+3-7-0-9-0-0-1-2-3-4-5" and "+48601-234-567"
/// were not numbers at all.
#[test]
fn dashes_anywhere_in_an_international_number_are_separators() {
    for (raw, want) in [
        ("+3-7-0-9-0-0-1-2-3-4-5", "+37090012345"),
        ("+48601-234-567", "+48601234567"),
        ("+4-8601234567", "+48601234567"),
        ("tel:+4860-123-4567", "+48601234567"),
    ] {
        let n = E164::parse(raw, pl());
        assert_eq!(n.as_ref().map(E164::as_str), Ok(want), "{raw:?}");
    }
}

/// Found by `a_prefix_reads_the_same_however_it_is_written`: a number may be written with '/',
/// a prefix could not ("+1/0*" was not a prefix).
#[test]
fn a_prefix_takes_the_separators_a_number_takes() {
    assert_eq!(
        Pattern::parse("+1/0*", pl()),
        Ok(Pattern::Prefix("10".into()))
    );
    assert_eq!(
        Pattern::parse("0048 / 700-12*", pl()),
        Ok(Pattern::Prefix("4870012".into()))
    );
}

/// Found by the line, pseudonym, SHA-256 and evidence URI properties: errors echoed the whole
/// rejected value, so a 2,000-digit field (shrunk from longer) gave a 2 KB message, and a
/// multi-megabyte one a multi-megabyte INVALID_ARGUMENT. They echo its start now.
#[test]
fn errors_echo_only_the_start_of_a_long_value() {
    let long = "1983756675".repeat(500);
    let messages = [
        LineId::parse(&long, pl()).unwrap_err().to_string(),
        LineId::parse(&format!("{long} x"), pl())
            .unwrap_err()
            .to_string(),
        OperatorId::parse(&long).unwrap_err().to_string(),
        Sha256Hex::parse(&long).unwrap_err(),
        EvidenceUri::parse(&format!("s3:{long}")).unwrap_err(),
        Pattern::parse(&format!("+{long}*"), pl())
            .unwrap_err()
            .to_string(),
        Pattern::parse(&format!("{long}*"), pl())
            .unwrap_err()
            .to_string(),
    ];
    for message in messages {
        assert!(message.len() <= MAX_ERROR_LEN, "{} bytes", message.len());
        assert!(message.contains("1983756675"), "{message}");
        assert!(message.contains('…'), "{message}");
    }
    // Short values are still echoed whole.
    assert_eq!(
        OperatorId::parse("Jane Doe").unwrap_err().to_string(),
        "\"Jane Doe\" is not a pseudonym (letters, digits, '.', '_', '-'; at most 64)"
    );
    // Multi-byte characters are cut whole.
    let emoji = "😀".repeat(100);
    let message = LineId::parse(&emoji, pl()).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("\"{}…\"", "😀".repeat(64))),
        "{message}"
    );
}
