//! Property tests of request decoding: whatever bytes a client sends, prost decodes them or
//! refuses them without panicking, and whatever field values a decoded request holds, the
//! parsing in `grpc::convert` accepts them or answers INVALID_ARGUMENT naming the field it was
//! given, with a message of bounded size.
//!
//! Inputs that once broke a property are kept as plain `#[test]`s at the end of this file.

use callwarden_domain::{
    line::{AnonymousPolicy, LineDirectory, LineId, LinePolicy},
    phone::Region,
    rule::{Effect, Pattern, Scope},
};
use callwarden_proto::v1 as pb;
use callwarden_server::{error::ApiError, grpc::convert};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use prost::Message;
use std::collections::HashMap;

/// An INVALID_ARGUMENT message echoes at most an excerpt of the value (escaping can still make
/// one character several), whatever the size of the field.
const MAX_ERROR_LEN: usize = 1024;
/// `google.protobuf.Timestamp`'s range: years 1 to 9999.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn pl() -> Region {
    "PL".parse().unwrap()
}

/// A default region (PL) and one line with its own region (GB), as configured lines are.
fn lines() -> LineDirectory {
    let policy = |region: &str| LinePolicy {
        region: region.parse().unwrap(),
        anonymous: AnonymousPolicy::Allow,
        on_failure: callwarden_domain::line::FailurePolicy::Open,
        notice_on_recent_incidents: false,
    };
    LineDirectory::new(
        policy("PL"),
        HashMap::from([(LineId::Name("uk-desk".into()), policy("GB"))]),
    )
}

/// Asserts `result` is Ok, or INVALID_ARGUMENT naming one of `fields` with a bounded message.
fn ok_or_invalid<T: std::fmt::Debug>(
    result: &Result<T, ApiError>,
    fields: &[&str],
) -> Result<(), TestCaseError> {
    match result {
        Ok(_) => {}
        Err(ApiError::InvalidArgument { field, message }) => {
            prop_assert!(
                fields.contains(&field.as_str()),
                "field {field:?}, want {fields:?}"
            );
            prop_assert!(
                message.len() <= MAX_ERROR_LEN,
                "{field}: {} bytes",
                message.len()
            );
            prop_assert!(!message.is_empty());
        }
        Err(other) => prop_assert!(false, "not INVALID_ARGUMENT: {other:?}"),
    }
    Ok(())
}

// --- Strategies ----------------------------------------------------------------------------

/// Field text of every kind: any unicode, control characters, phone numbers, patterns, names
/// and identifiers, and values around and far past every length limit.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[0-9+() ./*-]{0,24}",
        1 => "(tel:|sip:|<sip:)?\\+?[0-9 -]{0,16}(@[a-z.]{1,8})?>?",
        2 => "[a-zA-Z0-9._-]{0,70}",
        1 => "[!-~]{120,136}",
        1 => "[ \t\n]{0,3}[\\x00-\\x1f\\x7f\u{85}]?[a-z ]{0,8}[ \t\n]{0,3}",
        1 => "[a-z😀é\u{0301}]{0,8}:[0-9+]{0,12}",
        1 => ".{900,1100}",
        1 => "[a-z0-9]{20000,40000}\\*?",
    ]
}

/// Enum values: the defined ones and their neighbours most of the time, any i32 sometimes.
fn any_enum() -> impl Strategy<Value = i32> {
    prop_oneof![3 => -2..14i32, 1 => any::<i32>()]
}

fn any_scope() -> impl Strategy<Value = Option<pb::Scope>> {
    let value = prop_oneof![
        Just(String::new()),
        Just("uk-desk".to_owned()),
        Just("op-7".to_owned()),
        Just("+48 22 100 20 30".to_owned()),
        any_text(),
    ];
    proptest::option::of((any_enum(), value).prop_map(|(kind, value)| pb::Scope { kind, value }))
}

fn any_timestamp() -> impl Strategy<Value = prost_types::Timestamp> {
    let seconds = prop_oneof![
        any::<i64>(),
        MIN_SECONDS - 2..MIN_SECONDS + 2,
        MAX_SECONDS - 2..MAX_SECONDS + 2,
        -100_000_000_000i64..400_000_000_000,
        Just(DateTime::<Utc>::MIN_UTC.timestamp()),
        Just(DateTime::<Utc>::MAX_UTC.timestamp()),
    ];
    let nanos = prop_oneof![
        any::<i32>(),
        0..1_000_000_000i32,
        999_999_990..1_000_000_010i32,
        1_000_000_000..2_000_000_000i32,
        -10..10i32,
    ];
    (seconds, nanos).prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos })
}

fn any_ttl() -> impl Strategy<Value = u32> {
    const TEN_YEARS: u32 = 10 * 366 * 24 * 3600;
    prop_oneof![any::<u32>(), 0..10u32, TEN_YEARS - 2..TEN_YEARS + 2]
}

fn add_rule_request() -> impl Strategy<Value = pb::AddRuleRequest> {
    (
        prop_oneof![
            any_text(),
            "\\+[1-9][0-9]{0,16}\\*",
            "(\\+48|0048) ?[0-9 ]{9,12}",
            "[0-9 ]{9,11}",
        ],
        any_enum(),
        any_scope(),
        any_ttl(),
        any_text(),
        prop_oneof![Just(String::new()), any_text()],
    )
        .prop_map(
            |(pattern, effect, scope, ttl_seconds, reason, created_by)| pb::AddRuleRequest {
                pattern,
                effect,
                scope,
                ttl_seconds,
                reason,
                created_by,
            },
        )
}

/// One field of a protobuf message on the wire, well-formed or not.
#[derive(Debug, Clone)]
enum Field {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Bytes(u32, Vec<u8>),
    Fixed32(u32, u32),
    /// A field number with an invalid or group wire type, and what follows.
    Odd(u32, u8, Vec<u8>),
}

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn encode(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    let key = |n: u32, wire: u8, out: &mut Vec<u8>| {
        put_varint((u64::from(n) << 3) | u64::from(wire), out)
    };
    for f in fields {
        match f {
            Field::Varint(n, v) => {
                key(*n, 0, &mut out);
                put_varint(*v, &mut out);
            }
            Field::Fixed64(n, v) => {
                key(*n, 1, &mut out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Bytes(n, b) => {
                key(*n, 2, &mut out);
                put_varint(b.len() as u64, &mut out);
                out.extend_from_slice(b);
            }
            Field::Fixed32(n, v) => {
                key(*n, 5, &mut out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Odd(n, wire, rest) => {
                key(*n, wire & 7, &mut out);
                out.extend_from_slice(rest);
            }
        }
    }
    out
}

/// Protobuf-shaped bytes: fields with the numbers our messages use (and others), of every wire
/// type, whose length-delimited payloads are text, raw bytes or nested messages; sometimes cut
/// short or with a byte changed.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![8 => 1..=13u32, 1 => 0..=20u32, 1 => any::<u32>()];
    let leaf = prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        "[0-9+ ]{0,16}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..24),
    ];
    let payload = leaf.prop_recursive(3, 48, 6, move |inner| {
        let number = prop_oneof![8 => 1..=13u32, 1 => any::<u32>()];
        prop::collection::vec(field(number, inner), 0..6).prop_map(|f| encode(&f))
    });
    let message = prop::collection::vec(field(number, payload), 0..12).prop_map(|f| encode(&f));
    (message, any::<u16>(), any::<u8>(), 0u8..4).prop_map(|(mut bytes, at, byte, damage)| {
        if !bytes.is_empty() {
            let at = usize::from(at) % bytes.len();
            match damage {
                0 => bytes.truncate(at),
                1 => bytes[at] = byte,
                _ => {}
            }
        }
        bytes
    })
}

fn field(
    number: impl Strategy<Value = u32> + Clone,
    payload: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = Field> {
    let varint = prop_oneof![
        any::<u64>(),
        0..16u64,
        Just(u64::MAX),
        Just(u64::from(u32::MAX))
    ];
    prop_oneof![
        3 => (number.clone(), varint).prop_map(|(n, v)| Field::Varint(n, v)),
        1 => (number.clone(), any::<u64>()).prop_map(|(n, v)| Field::Fixed64(n, v)),
        4 => (number.clone(), payload).prop_map(|(n, b)| Field::Bytes(n, b)),
        1 => (number.clone(), any::<u32>()).prop_map(|(n, v)| Field::Fixed32(n, v)),
        1 => (number, 3u8..8, prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(n, w, b)| Field::Odd(n, w, b)),
    ]
}

/// Decodes `bytes` as each request message; a message that decodes re-encodes to itself.
macro_rules! decode_all {
    ($bytes:expr, $($message:ty),+ $(,)?) => {{
        $(
            if let Ok(m) = <$message>::decode($bytes) {
                let again = <$message>::decode(m.encode_to_vec().as_slice());
                prop_assert_eq!(again.as_ref(), Ok(&m), "{}", stringify!($message));
            }
        )+
    }};
}

fn decode_every_request(bytes: &[u8]) -> Result<(), TestCaseError> {
    decode_all!(
        bytes,
        pb::CheckCallRequest,
        pb::ReportCallEventRequest,
        pb::WatchCommandsRequest,
        pb::AckCommandRequest,
        pb::CheckActiveCallRequest,
        pb::AddRuleRequest,
        pb::RemoveRuleRequest,
        pb::GetRuleRequest,
        pb::ListRulesRequest,
        pb::EndAndFlagRequest,
        pb::FlagCallRequest,
        pb::WarnCallerRequest,
        pb::ReportPastCallRequest,
        pb::GetOperatorStatusRequest,
        pb::ListIncidentsRequest,
        pb::GetIncidentRequest,
        pb::WatchIncidentsRequest,
        pb::AcknowledgeIncidentRequest,
        pb::AddStatementRequest,
        pb::AttachEvidenceRequest,
        pb::ResolveIncidentRequest,
        pb::DismissIncidentRequest,
        pb::ReopenIncidentRequest,
        pb::UnsealReporterRequest,
        pb::ExportIncidentRequest,
        pb::GetStatsRequest,
        pb::SetLegalHoldRequest,
        pb::ListIncidentReadsRequest,
    );
    Ok(())
}

/// The fields `new_rule` may name.
const RULE_FIELDS: [&str; 7] = [
    "pattern",
    "effect",
    "scope.kind",
    "scope.value",
    "ttl_seconds",
    "reason",
    "created_by",
];

fn check_new_rule(req: &pb::AddRuleRequest) -> Result<(), TestCaseError> {
    let lines = lines();
    let result = convert::new_rule(req, &lines);
    ok_or_invalid(&result, &RULE_FIELDS)?;
    if let Ok(rule) = result {
        // The pattern reads back from its canonical form; the rest is what was asked.
        let canonical = rule.pattern.to_string();
        prop_assert_eq!(
            Pattern::from_canonical(&canonical),
            Some(rule.pattern.clone())
        );
        prop_assert_eq!(rule.reason.as_str(), req.reason.trim());
        prop_assert!(rule.reason.chars().count() <= 1024);
        prop_assert_eq!(
            rule.ttl.map(|d| d.num_seconds()),
            (req.ttl_seconds > 0).then_some(i64::from(req.ttl_seconds))
        );
        prop_assert!(req.ttl_seconds <= 10 * 366 * 24 * 3600);
        let want = if req.effect == pb::Effect::Allow as i32 {
            Effect::Allow
        } else {
            Effect::Block
        };
        prop_assert_eq!(rule.effect, want);
        let scope_again = convert::scope("scope", Some(&convert::scope_to_wire(&rule.scope)), pl());
        prop_assert_eq!(scope_again.ok(), Some(rule.scope.clone()));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    // --- Bytes on the wire -------------------------------------------------------------------

    #[test]
    fn arbitrary_bytes_decode_or_fail_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_every_request(&bytes)?;
    }

    #[test]
    fn protobuf_shaped_bytes_decode_or_fail_without_panic(bytes in wire_bytes()) {
        decode_every_request(&bytes)?;
        // And what decodes is parsed without panic.
        if let Ok(req) = pb::AddRuleRequest::decode(bytes.as_slice()) {
            check_new_rule(&req)?;
        }
        if let Ok(req) = pb::ListIncidentsRequest::decode(bytes.as_slice()) {
            ok_or_invalid(&convert::time("created_after", req.created_after.as_ref()), &["created_after"])?;
            ok_or_invalid(&convert::time("created_before", req.created_before.as_ref()), &["created_before"])?;
            ok_or_invalid(&convert::line(&req.line, pl()), &["line"])?;
        }
        if let Ok(req) = pb::CheckCallRequest::decode(bytes.as_slice()) {
            ok_or_invalid(&convert::identifier("call_id", &req.call_id), &["call_id"])?;
            ok_or_invalid(&convert::identifier("switch_id", &req.switch_id), &["switch_id"])?;
            ok_or_invalid(&convert::line(&req.line, pl()), &["line"])?;
        }
        if let Ok(req) = pb::EndAndFlagRequest::decode(bytes.as_slice()) {
            ok_or_invalid(&convert::category("category", req.category), &["category"])?;
            ok_or_invalid(&convert::severity("severity", req.severity), &["severity"])?;
            ok_or_invalid(&convert::block_choice("block", req.block), &["block"])?;
            ok_or_invalid(&convert::text("note", &req.note, 4000), &["note"])?;
        }
        if let Ok(req) = pb::ResolveIncidentRequest::decode(bytes.as_slice()) {
            ok_or_invalid(&convert::required_text("authority", &req.authority, 200), &["authority"])?;
        }
    }

    #[test]
    fn encoded_requests_decode_to_themselves(req in add_rule_request(), t in any_timestamp()) {
        let bytes = req.encode_to_vec();
        prop_assert_eq!(pb::AddRuleRequest::decode(bytes.as_slice()), Ok(req));
        let stats = pb::GetStatsRequest { from: Some(t), to: Some(t), top_callers: 3, time_zone: "Europe/Warsaw".into() };
        let bytes = stats.encode_to_vec();
        prop_assert_eq!(pb::GetStatsRequest::decode(bytes.as_slice()), Ok(stats.clone()));
    }

    // --- Field values --------------------------------------------------------------------------

    #[test]
    fn a_rule_request_is_a_rule_or_names_the_bad_field(req in add_rule_request()) {
        check_new_rule(&req)?;
    }

    #[test]
    fn scopes_parse_or_name_kind_or_value(scope in any_scope(), field in "[a-z_.]{1,12}") {
        let result = convert::scope(&field, scope.as_ref(), pl());
        let kind = format!("{field}.kind");
        let value = format!("{field}.value");
        ok_or_invalid(&result, &[&kind, &value])?;
        match (&result, &scope) {
            (Ok(Scope::Global), Some(s)) => {
                prop_assert!(s.value.is_empty());
                prop_assert!(matches!(s.kind, 0 | 1));
            }
            (Ok(Scope::Line(_)), Some(s)) => prop_assert_eq!(s.kind, 2),
            (Ok(Scope::Operator(op)), Some(s)) => {
                prop_assert_eq!(s.kind, 3);
                prop_assert_eq!(op.as_str(), s.value.as_str());
            }
            (Ok(other), None) => prop_assert_eq!(other, &Scope::Global),
            (Err(ApiError::InvalidArgument { field: f, .. }), Some(s)) => {
                prop_assert_eq!(f == &kind, !(0..=3).contains(&s.kind));
            }
            (Err(_), None) => prop_assert!(false, "no scope is global"),
            (Err(_), Some(_)) => {}
        }
    }

    #[test]
    fn enums_take_their_values_and_name_the_field_otherwise(value in any_enum()) {
        let effect = convert::effect("effect", value);
        ok_or_invalid(&effect, &["effect"])?;
        prop_assert_eq!(effect.is_ok(), (0..=2).contains(&value));
        let category = convert::category("category", value);
        ok_or_invalid(&category, &["category"])?;
        prop_assert_eq!(category.is_ok(), (1..=10).contains(&value));
        if let Ok(c) = category {
            prop_assert_eq!(convert::category_to_wire(c) as i32, value);
        }
        let severity = convert::severity("severity", value);
        ok_or_invalid(&severity, &["severity"])?;
        prop_assert_eq!(severity.is_ok(), (1..=4).contains(&value));
        if let Ok(s) = severity {
            prop_assert_eq!(convert::severity_to_wire(s) as i32, value);
        }
        let block = convert::block_choice("block", value);
        ok_or_invalid(&block, &["block"])?;
        prop_assert_eq!(block.is_ok(), (0..=3).contains(&value));
        if let Ok(b) = block {
            prop_assert_eq!(convert::block_choice_to_wire(b) as i32, value.max(1));
        }
    }

    #[test]
    fn identifiers_are_bounded_printable_ascii(value in any_text(), field in "[a-z_]{1,12}") {
        let result = convert::identifier(&field, &value);
        ok_or_invalid(&result, &[&field])?;
        let want = !value.is_empty()
            && value.len() <= 128
            && value.bytes().all(|b| b.is_ascii_graphic());
        prop_assert_eq!(result.is_ok(), want, "{:?}", value);
    }

    #[test]
    fn text_is_trimmed_bounded_and_free_of_control_characters(
        value in any_text(),
        max in prop_oneof![Just(0usize), 1..16usize, Just(200usize), Just(1024usize), Just(8000usize)],
        field in "[a-z_]{1,12}",
    ) {
        let result = convert::text(&field, &value, max);
        ok_or_invalid(&result, &[&field])?;
        let clean = value.chars().all(|c| !c.is_control() || c == '\n' || c == '\t');
        prop_assert_eq!(result.is_ok(), value.chars().count() <= max && clean);
        if let Ok(t) = &result {
            prop_assert_eq!(t.as_str(), value.trim());
        }
        let required = convert::required_text(&field, &value, max);
        ok_or_invalid(&required, &[&field])?;
        prop_assert_eq!(required.is_ok(), result.is_ok() && !value.trim().is_empty());
    }

    #[test]
    fn lines_parse_or_name_the_line(value in any_text()) {
        let result = convert::line(&value, pl());
        ok_or_invalid(&result, &["line"])?;
        if let Ok(line) = result {
            prop_assert_eq!(LineId::from_canonical(&line.to_string()), line);
        }
    }

    #[test]
    fn times_are_the_protobuf_range_and_round_trip(
        t in proptest::option::of(any_timestamp()),
        field in "[a-z_]{1,14}",
    ) {
        let result = convert::time(&field, t.as_ref());
        ok_or_invalid(&result, &[&field])?;
        match (&result, &t) {
            (Ok(None), None) => {}
            (Ok(Some(at)), Some(t)) => {
                prop_assert!((MIN_SECONDS..=MAX_SECONDS).contains(&t.seconds));
                prop_assert!((0..1_000_000_000).contains(&t.nanos));
                prop_assert_eq!(&convert::timestamp(*at), t);
                // What the services compute from a time cannot overflow (GetStats: `to` - 30
                // days; deadlines and ttls: + years).
                prop_assert!(at.checked_sub_signed(Duration::days(366)).is_some());
                prop_assert!(at.checked_add_signed(Duration::days(11 * 366)).is_some());
            }
            (Err(_), Some(t)) => {
                let in_range = (MIN_SECONDS..=MAX_SECONDS).contains(&t.seconds)
                    && (0..1_000_000_000).contains(&t.nanos);
                prop_assert!(!in_range, "{t:?}");
            }
            (result, t) => prop_assert!(false, "{t:?} gave {result:?}"),
        }
    }
}

// --- Regressions: inputs the properties above found, fixed, and kept -------------------------

fn invalid_field<T: std::fmt::Debug>(result: Result<T, ApiError>) -> (String, String) {
    match result {
        Err(ApiError::InvalidArgument { field, message }) => (field, message),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

/// Found by `times_are_the_protobuf_range_and_round_trip`: any time chrono could hold was taken,
/// from year -262143 to +262142. GetStats computes `to - 30 days` from such a `to`, which
/// overflows and panics; evidence keeps `captured_at` as RFC 3339 text, which has no form for
/// years past 9999 or before 0 (it could not be read back and was lost); and Postgres's
/// timestamps end at 4713 BC, so a filter that far back was a storage error (UNAVAILABLE).
#[test]
fn times_outside_years_1_to_9999_are_invalid_arguments() {
    let min = DateTime::<Utc>::MIN_UTC;
    assert!(min.checked_sub_signed(Duration::days(30)).is_none());
    for seconds in [
        min.timestamp(),
        DateTime::<Utc>::MAX_UTC.timestamp(),
        MIN_SECONDS - 1,
        MAX_SECONDS + 1,
        i64::MIN,
        i64::MAX,
    ] {
        let t = prost_types::Timestamp { seconds, nanos: 0 };
        let (field, message) = invalid_field(convert::time("to", Some(&t)));
        assert_eq!(field, "to");
        assert!(message.contains(&seconds.to_string()), "{message}");
    }
    for seconds in [MIN_SECONDS, 0, MAX_SECONDS] {
        let t = prost_types::Timestamp {
            seconds,
            nanos: 999_999_999,
        };
        let at = convert::time("to", Some(&t)).unwrap().unwrap();
        assert_eq!(convert::timestamp(at), t);
    }
}

/// Found by `times_are_the_protobuf_range_and_round_trip`: nanos of 1e9..2e9 at a second ending
/// in :59 were taken as a leap second, a time no protobuf Timestamp can hold (nanos must be
/// 0..=999,999,999), which went back out on the wire as given.
#[test]
fn nanos_outside_a_second_are_invalid_arguments() {
    for (seconds, nanos) in [
        (59, 1_000_000_000),
        (59, 1_999_999_999),
        (0, -1),
        (0, i32::MIN),
    ] {
        let t = prost_types::Timestamp { seconds, nanos };
        let (field, _) = invalid_field(convert::time("captured_at", Some(&t)));
        assert_eq!(field, "captured_at");
    }
}

/// Found by `identifiers_are_bounded_printable_ascii` and the scope property: the message
/// echoed the whole value, so a 20,000-character call id (or a global scope's value, or a line)
/// made a 20 KB INVALID_ARGUMENT; a 4 MB one, a 4 MB `grpc-message` header, which many gRPC
/// clients refuse (their default metadata limit is 8 to 16 KiB). They echo 64 characters now.
#[test]
fn an_invalid_argument_echoes_only_the_start_of_a_long_value() {
    let long = "x".repeat(4 << 20);
    let results = [
        convert::identifier("call_id", &long).map(|_| ()),
        convert::scope(
            "scope",
            Some(&pb::Scope {
                kind: 1,
                value: long.clone(),
            }),
            pl(),
        )
        .map(|_| ()),
        convert::line(&long, pl()).map(|_| ()),
        convert::text("note", &format!("\u{7}{long}"), usize::MAX).map(|_| ()),
        convert::new_rule(
            &pb::AddRuleRequest {
                pattern: format!("{long}*"),
                ..Default::default()
            },
            &lines(),
        )
        .map(|_| ()),
    ];
    for result in results {
        let (field, message) = invalid_field(result);
        assert!(
            message.len() <= MAX_ERROR_LEN,
            "{field}: {} bytes",
            message.len()
        );
        assert!(message.contains("xxxxxxxx"), "{field}: {message}");
    }
    // A short value is still echoed whole.
    let (_, message) = invalid_field(convert::identifier("call_id", "call 7"));
    assert!(
        message.starts_with("\"call 7\" is not an identifier"),
        "{message}"
    );
}
