//! Property-based tests of the boundary (issue 12, "a fuzzed boundary"): request conversion,
//! config parsing and CEL compilation never panic, and every rejection names what is wrong.
//! Each property is checked against an oracle written here, independently of the code under
//! test, so a conversion that accepted what it must refuse would fail too.
use proptest::prelude::*;
use std::collections::HashMap;
use touchpoint::config::Config;
use touchpoint::domain::decision::DecisionQuery;
use touchpoint::domain::limits::FieldError;
use touchpoint::domain::rules::{Expect, Rule};
use touchpoint::grpc::{convert, pb};

/// Characters that must never reach an id: controls, line/paragraph separators, bidi controls,
/// zero-width and other invisible formatting characters.
const NASTY: [char; 20] = [
    '\0',
    '\u{7}',
    '\n',
    '\u{85}',
    '\u{2028}',
    '\u{2029}',
    '\u{202E}',
    '\u{2066}',
    '\u{2069}',
    '\u{200B}',
    '\u{200D}',
    '\u{FEFF}',
    '\u{AD}',
    '\u{1F}',
    '\u{061C}',
    '\u{180E}',
    '\u{2062}',
    '\u{E0041}',
    '\u{110BD}',
    '\u{FFFA}',
];

/// Strings a caller might send: empty, plausible ids, arbitrary Unicode, ids with one nasty
/// character inside, blanks and over-long ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        2 => "[a-z0-9_.:-]{1,24}",
        2 => any::<String>(),
        3 => ("[a-z]{0,6}", prop::sample::select(NASTY.to_vec()), "[a-z]{0,6}").prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        1 => " {1,3}",
        1 => (100usize..1200).prop_map(|n| "x".repeat(n)),
    ]
}

/// Usually `valid`, sometimes anything [`text`] makes: most cases then break one field at a
/// time, so each check is reached often.
fn mostly(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(valid.to_string()), 1 => text()]
}

fn value() -> impl Strategy<Value = pb::Value> {
    use pb::value::Kind;
    prop_oneof![
        Just(None),
        text().prop_map(|s| Some(Kind::StringValue(s))),
        any::<f64>().prop_map(|n| Some(Kind::NumberValue(n))),
        prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e308])
            .prop_map(|n| Some(Kind::NumberValue(n))),
        any::<bool>().prop_map(|b| Some(Kind::BoolValue(b))),
    ]
    .prop_map(|kind| pb::Value { kind })
}

fn value_map(max: usize) -> impl Strategy<Value = HashMap<String, pb::Value>> {
    prop::collection::hash_map(text(), value(), 0..max)
}

fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    prop_oneof![
        3 => Just(None),
        1 => (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| Some(prost_types::Timestamp { seconds, nanos })),
        1 => (1_600_000_000i64..1_900_000_000, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Some(prost_types::Timestamp { seconds, nanos })),
    ]
}

/// The oracle for ids: what `check_id` must refuse, restated.
fn id_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.trim().is_empty() && !s.chars().any(|c| NASTY.contains(&c) || c.is_control())
}

/// A rejection names a field of the request (its first path segment is one of `fields`) and
/// the gRPC status a caller sees is INVALID_ARGUMENT starting with that field.
fn names_a_field(e: &FieldError, fields: &[&str]) -> Result<(), TestCaseError> {
    let head = e.field.split(['[', '.']).next().unwrap_or_default();
    prop_assert!(fields.contains(&head), "{:?} names no field of {fields:?}", e.field);
    prop_assert!(!e.message.is_empty());
    let status = tonic::Status::from(touchpoint::engine::Error::from(e.clone()));
    prop_assert_eq!(status.code(), tonic::Code::InvalidArgument);
    prop_assert!(status.message().starts_with(&e.field), "{:?} should start with {:?}", status.message(), e.field);
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decide_requests_convert_or_name_the_field(
        user_id in mostly("u1"), channel in mostly("web"), placement in mostly(""),
        context in prop_oneof![3 => value_map(3), 1 => value_map(70)],
        limit in prop_oneof![0u32..60, any::<u32>()], explain in any::<bool>(),
    ) {
        let req = pb::DecideRequest { user_id: user_id.clone(), channel, placement, context, limit, explain };
        match DecisionQuery::try_from(req) {
            Ok(q) => {
                prop_assert!(id_ok(&q.user_id, 128), "accepted user_id {:?}", q.user_id);
                prop_assert_eq!(&q.user_id, &user_id);
                prop_assert!(q.limit <= 50);
                prop_assert!(q.context.len() <= 64);
            }
            Err(e) => names_a_field(&e, &["user_id", "channel", "placement", "context", "limit"])?,
        }
    }

    #[test]
    fn decide_batches_convert_or_name_the_field(
        user_ids in prop::collection::vec(mostly("u1"), 0..8), channel in mostly("web"), context in value_map(4),
        limit in 0u32..60,
    ) {
        let req = pb::DecideBatchRequest { user_ids: user_ids.clone(), channel, placement: String::new(), context, limit };
        match convert::decide_batch(req) {
            Ok((_, users)) => {
                prop_assert_eq!(&users, &user_ids);
                prop_assert!(!users.is_empty());
                prop_assert!(users.iter().all(|u| id_ok(u, 128)), "accepted {users:?}");
            }
            Err(e) => names_a_field(&e, &["user_ids", "channel", "placement", "context", "limit"])?,
        }
    }

    #[test]
    fn events_convert_or_name_the_field(
        events in prop::collection::vec(
            (mostly("e1"), mostly("u1"), mostly("page_view"), timestamp(), mostly(""), mostly(""),
             prop_oneof![3 => Just(0.0), 1 => any::<f64>()], prop::collection::hash_map(mostly("k"), text(), 0..3)),
            0..3,
        ),
    ) {
        let events: Vec<pb::Event> = events
            .into_iter()
            .map(|(event_id, user_id, event_type, timestamp, channel, offer_id, value, properties)| pb::Event {
                event_id, user_id, event_type, timestamp, channel, offer_id, value, properties,
            })
            .collect();
        let sent = events.clone();
        match convert::events(pb::RecordEventsRequest { events }) {
            Ok(got) => {
                prop_assert_eq!(got.len(), sent.len());
                for e in &sent {
                    prop_assert!(id_ok(&e.user_id, 128) && id_ok(&e.event_id, 128), "accepted {e:?}");
                    prop_assert!(e.value.is_finite() && e.value >= 0.0, "accepted value {}", e.value);
                }
            }
            Err(e) => {
                names_a_field(&e, &["events"])?;
                // A rejection inside the list names the element's index.
                if e.field != "events" {
                    let i: usize = e.field["events[".len()..].split(']').next().unwrap().parse().unwrap();
                    prop_assert!(i < sent.len());
                }
            }
        }
    }

    #[test]
    fn outcomes_convert_or_name_the_field(
        decision_id in mostly("d1"), user_id in mostly("u1"), offer_id in mostly("o1"), outcome in -2i32..8,
        value in prop_oneof![any::<f64>(), 0.0f64..1000.0], timestamp in timestamp(),
    ) {
        let req = pb::RecordOutcomeRequest {
            decision_id: decision_id.clone(), user_id: user_id.clone(), offer_id, outcome, value, timestamp,
        };
        match convert::outcome(req) {
            Ok(_) => {
                prop_assert!(id_ok(&user_id, 128) && id_ok(&decision_id, 128), "accepted {user_id:?} {decision_id:?}");
                prop_assert!((1..=5).contains(&outcome));
                prop_assert!(value.is_finite() && value >= 0.0);
            }
            Err(e) => names_a_field(&e, &["decision_id", "user_id", "offer_id", "outcome", "value", "timestamp"])?,
        }
    }

    #[test]
    fn profile_writes_convert_or_name_the_field(
        user_id in mostly("u1"), attributes in value_map(6), remove in prop::collection::vec(mostly("a"), 0..3),
    ) {
        let req = pb::PutProfileRequest { user_id: user_id.clone(), attributes, remove_attributes: remove };
        match convert::put_profile(req) {
            Ok(_) => prop_assert!(id_ok(&user_id, 128)),
            Err(e) => names_a_field(&e, &["user_id", "attributes", "remove_attributes"])?,
        }
    }

    #[test]
    fn grpc_timeouts_never_panic(digits in "[0-9]{0,24}", unit in "[HMSmunx]?") {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("grpc-timeout", format!("{digits}{unit}").parse().unwrap());
        let t = convert::grpc_timeout(&md);
        // The spec allows 1-8 digits and these six units; anything else is no deadline.
        let valid = (1..=8).contains(&digits.len()) && "HMSmun".contains(unit.as_str()) && !unit.is_empty();
        prop_assert_eq!(t.is_some(), valid);
    }
}

/// Whether `source` names the variable `var` at the top level (not as a field: `x.offer`).
fn reads(source: &str, var: &str) -> bool {
    source.match_indices(&format!("{var}.")).any(|(i, _)| {
        let before = source[..i].chars().next_back();
        !before.is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric())
    })
}

/// Expressions assembled from the pieces rules are made of, valid or not.
fn cel_source() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("profile.purchase_count".to_string()),
        Just("profile.attributes.country".to_string()),
        Just("scores.churn".to_string()),
        Just("offer.value".to_string()),
        Just("context.cart_value".to_string()),
        Just("stage".to_string()),
        Just("now".to_string()),
        Just("lapsed".to_string()),
        Just("nobody.knows".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| format!("{n:?}")),
        "\"[a-z]{0,5}\"",
        Just("[1, 2, 3]".to_string()),
        Just("{'a': 1}".to_string()),
        Just("size(profile.events)".to_string()),
        Just("duration('1h')".to_string()),
        Just("timestamp('2024-01-01T00:00:00Z')".to_string()),
        any::<String>(),
    ];
    let op = prop::sample::select(vec![
        " + ", " - ", " * ", " / ", " % ", " && ", " || ", " == ", " != ", " < ", " >= ", " in ", ".", "[", "(", ")",
        "]", "!", " ? ", " : ", ",",
    ]);
    (atom.clone(), prop::collection::vec((op, atom), 0..5)).prop_map(|(first, rest)| {
        rest.into_iter().fold(first, |mut acc, (op, a)| {
            acc.push_str(op);
            acc.push_str(&a);
            acc
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn cel_rules_compile_or_explain(source in cel_source(), allow_offer in any::<bool>(), number in any::<bool>()) {
        let expect = if number { Expect::Number } else { Expect::Bool };
        match Rule::compile(&source, expect, allow_offer) {
            Ok(rule) => {
                // Compiled rules read only the variables rules may read.
                prop_assert!(!reads(&source, "nobody"), "{source:?} compiled with an unknown variable");
                prop_assert!(allow_offer || !reads(&source, "offer"), "{source:?} read offer in a segment rule");
                prop_assert_eq!(rule.source.as_str(), source.as_str());
            }
            Err(message) => prop_assert!(!message.trim().is_empty()),
        }
    }
}

/// A config text mutated by one edit: a value replaced by one of another type, a line
/// dropped, duplicated or truncated, an unknown key added.
fn mutated_config() -> impl Strategy<Value = (String, String)> {
    let base = std::fs::read_to_string(crate::harness::example_path()).unwrap();
    let lines: Vec<String> = base.lines().map(str::to_string).collect();
    let n = lines.len();
    let replacement = prop_oneof![
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("\"\"".to_string()),
        Just("\"x\"".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("[1, \"a\"]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"$(rm -rf /)\"".to_string()),
        Just("\"a\\u2028b\"".to_string()),
        "\"[ -~]{0,12}\"",
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    (0..n, 0..5usize, replacement, 0..40usize).prop_map(move |(at, kind, new, cut)| {
        let mut out = lines.clone();
        let edit = match kind {
            0 => match out[at].clone().split_once(" = ") {
                Some((k, _)) if !out[at].trim_start().starts_with('#') => {
                    out[at] = format!("{k} = {new}");
                    format!("line {}: {k} = {new}", at + 1)
                }
                _ => "none".into(),
            },
            1 => format!("dropped line {}: {}", at + 1, out.remove(at)),
            2 => {
                out.insert(at, out[at].clone());
                format!("duplicated line {}", at + 1)
            }
            3 => {
                let l = &mut out[at];
                let keep = l.char_indices().nth(cut).map_or(l.len(), |(i, _)| i);
                l.truncate(keep);
                format!("truncated line {} to {keep} bytes", at + 1)
            }
            _ => {
                out.insert(at, format!("fuzz_key = {new}"));
                format!("inserted at line {}", at + 1)
            }
        };
        (out.join("\n"), edit)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn config_edits_load_or_name_the_entry_and_line((text, edit) in mutated_config()) {
        // Written beside the example's model files, so that their relative paths resolve.
        let dir = tempfile::tempdir().unwrap();
        let examples = crate::harness::example_path().parent().unwrap().to_path_buf();
        std::os::unix::fs::symlink(examples.join("models"), dir.path().join("models")).unwrap();
        let path = dir.path().join("touchpoint.toml");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = Config::load(&path, std::iter::empty()) {
            prop_assert!(!e.problems.is_empty(), "{edit}");
            for p in &e.problems {
                prop_assert!(!p.entry.is_empty() && !p.message.is_empty(), "{edit}: {p:?}");
                // Everything here comes from the file, so every problem has its line.
                prop_assert!(p.line.is_some_and(|l| l >= 1 && l <= text.lines().count() + 1), "{edit}: {p:?}");
            }
            let shown = e.to_string();
            prop_assert!(shown.contains(&e.problems[0].entry), "{edit}: {shown}");
        }
    }
}
