//! Config loading end to end: entries and lines of problems, all problems at once, overrides.
use super::*;
use crate::domain::journey::JourneyDef;

const BASE: &str = r#"
[redis]
key_prefix = "t"

[[offers]]
id = "a"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://a"

[[offers]]
id = "b"
stages = ["nowhere"]
channels = ["web"]
content_ref = "cms://b"
"#;

fn check(src: &str, vars: &[(&str, &str)], expected: Result<(), (&str, Option<usize>)>) {
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    match (Config::from_toml(src, "t.toml", vars), expected) {
        (Ok(_), Ok(())) => {}
        (Err(e), Err((entry, line))) => {
            assert_eq!(e.problems.len(), 1, "{e:#?}");
            let p = &e.problems[0];
            assert!(p.entry.starts_with(entry), "{e} should name {entry}");
            assert_eq!(p.line, line, "{e}");
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

#[test]
fn names_the_entry_and_line() {
    check(BASE, &[], Err(("offers[1].stages", Some(13))));
    check(&BASE.replace("nowhere", "awareness"), &[], Ok(()));
    check(&BASE.replace("\"nowhere\"", "awareness"), &[], Err(("toml", Some(13))));
    check(&BASE.replace("id = \"b\"", "id = \"a\""), &[], Err(("offers[1].id", Some(12))));
    check("[server]\nlisten = \"nope\"\n", &[], Err(("server.listen", Some(2))));
    let nested = "[[experiments]]\nid = \"a\"\n[[experiments.variants]]\nname = \"x\"\n[[experiments.variants]]\nname = \"y\"\npriority = \"1 +\"\n";
    check(nested, &[], Err(("experiments[0].variants[1].priority", Some(7))));
    // Unknown keys are problems with their line, as every other.
    check("[server]\nlisn = 1\n", &[], Err(("server.lisn", Some(2))));
    let capped = BASE.replace("nowhere", "awareness").replace("cms://a\"", "cms://a\"\ncap = { max = 0, days = 1 }");
    check(&capped, &[], Err(("offers[0].cap", Some(10))));
    // Consent event types: names, and distinct.
    let ok = BASE.replace("nowhere", "awareness");
    check(&format!("[journey]\nunsubscribe_event = \"bye\"\n{ok}"), &[], Ok(()));
    check(
        &format!("[journey]\nsubscribe_event = \"unsubscribe\"\n{ok}"),
        &[],
        Err(("journey.subscribe_event", Some(2))),
    );
    check(&format!("[journey]\nunsubscribe_event = \"\"\n{ok}"), &[], Err(("journey.unsubscribe_event", Some(2))));
}

#[test]
fn reports_every_problem_at_once_in_line_order() {
    let src = r#"[server]
listen = "127.0.0.1:1"
colour = "red"

[decisions]
default_limit = 0

[[segments]]
id = "s"
rule = "profile.age >"

[[offers]]
id = "a"
stages = ["awareness"]
channels = ["fax"]
content_ref = "cms://a"
cap = { max = 1, days = 1, dayz = 3 }
"#;
    let e = Config::from_toml(src, "bad.toml", std::iter::empty()).unwrap_err();
    let got: Vec<(Option<usize>, &str)> = e.problems.iter().map(|p| (p.line, p.entry.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some(3), "server.colour"),
            (Some(6), "decisions.default_limit"),
            (Some(10), "segments[0].rule"),
            (Some(15), "offers[0].channels"),
            (Some(17), "offers[0].cap.dayz"),
        ],
        "{e}"
    );
    let shown = e.to_string();
    assert_eq!(e.problems.len(), 5, "{e:#?}");
    assert!(shown.lines().next().unwrap().starts_with("bad.toml:3: server.colour: unknown key"), "{shown}");
}

#[test]
fn a_type_error_does_not_hide_the_rest() {
    let src = "[redis]\ncommand_timeout_ms = \"soon\"\n\n[[offers]]\nid = \"a\"\nstages = [\"x\"]\nchannels = [\"web\"]\ncontent_ref = \"c\"\n";
    let e = Config::from_toml(src, "t.toml", std::iter::empty()).unwrap_err();
    let got: Vec<(Option<usize>, &str)> = e.problems.iter().map(|p| (p.line, p.entry.as_str())).collect();
    assert_eq!(got, [(Some(2), "redis.command_timeout_ms"), (Some(6), "offers[0].stages")], "{e}");
}

#[test]
fn env_overrides_scalars() {
    let vars = [("TOUCHPOINT_REDIS_KEY_PREFIX".to_string(), "env".to_string()), ("OTHER".into(), "x".into())];
    let c = Config::from_toml("", "t", vars).unwrap();
    assert_eq!(c.file.redis.key_prefix, "env");
    let c2 = Config::from_toml("", "t", std::iter::empty()).unwrap();
    assert_ne!(c.version, c2.version, "overrides change the version");
    check("", &[("TOUCHPOINT_SERVER_SHUTDOWN_GRACE_MS", "soon")], Err(("TOUCHPOINT_SERVER_SHUTDOWN_GRACE_MS", None)));
    check("", &[("TOUCHPOINT_REDIS_URL", "ftp://x")], Err(("redis.url", None)));
    // A bad overridden value names the variable, not a line of the file.
    let e =
        Config::from_toml("[redis]\nurl = \"memory://\"\n", "t", [("TOUCHPOINT_REDIS_URL".into(), "ftp://x".into())])
            .unwrap_err();
    assert!(e.to_string().contains("(set by TOUCHPOINT_REDIS_URL)"), "{e}");
    assert_eq!(e.problems[0].line, None);
}

#[test]
fn env_overrides_nested_and_optional_settings() {
    let vars = [
        ("TOUCHPOINT_DECISIONS_EXPLORATION_POLICY", "epsilon_greedy"),
        ("TOUCHPOINT_DECISIONS_EXPLORATION_EPSILON", "0.25"),
        ("TOUCHPOINT_DECISIONS_DEADLINE_MS", "80"),
        ("TOUCHPOINT_MODELS_POLL_SECONDS", "2.5"),
        ("TOUCHPOINT_HOLDOUT_SHARE", "0.05"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let c = Config::from_toml("", "t", vars).unwrap();
    assert_eq!(c.file.decisions.exploration.epsilon, 0.25);
    assert_eq!(c.file.decisions.deadline_ms, 80);
    assert_eq!(c.file.models.poll_seconds, 2.5);
    assert_eq!(c.policy.holdout.as_ref().map(|h| h.share), Some(0.05));
    assert!(
        matches!(c.policy.exploration, crate::domain::arbitration::Exploration::EpsilonGreedy { epsilon } if epsilon == 0.25)
    );
}

#[test]
fn accepts_rediss_urls() {
    check("[redis]\nurl = \"rediss://127.0.0.1:6380/0\"\n", &[], Ok(()));
    check("[redis]\nurl = \"https://127.0.0.1\"\n", &[], Err(("redis.url", Some(2))));
}

#[test]
fn default_journey_matches_design() {
    let c = Config::defaults();
    assert_eq!(c.policy.journey, JourneyDef::default_journey());
}

/// The error a source is refused with, and its problems as (entry, line).
fn refused(src: &str) -> (super::ConfigError, Vec<(String, Option<usize>)>) {
    let e = Config::from_toml(src, "t.toml", std::iter::empty()).unwrap_err();
    let got = e.problems.iter().map(|p| (p.entry.clone(), p.line)).collect();
    (e, got)
}

/// An array element that cannot be read shifts nothing: later problems still name their own
/// element and line, and references to the unread element are not reported as unknown.
#[test]
fn an_unreadable_element_does_not_shift_later_problems() {
    let src = r#"
[[offers]]
id = "broken"
stages = ["awareness"]
channels = "web"
content_ref = "cms://broken"

[[offers]]
id = "fine"
stages = ["awareness"]
channels = ["fax"]
content_ref = "cms://fine"

[[fallbacks]]
channel = "web"
offers = ["broken"]
"#;
    let (e, got) = refused(src);
    assert_eq!(got, [("offers[0].channels".to_string(), Some(5)), ("offers[1].channels".to_string(), Some(11))], "{e}");
}

/// A bad scalar in a section is reported alone: the section's other settings still apply
/// (here the custom channel), so offers using them get no false "unknown channel".
#[test]
fn a_bad_scalar_does_not_reset_its_section() {
    let src = r#"
[decisions]
channels = ["kiosk"]
default_limit = "three"

[[offers]]
id = "a"
stages = ["awareness"]
channels = ["kiosk"]
content_ref = "cms://a"
"#;
    let (e, got) = refused(src);
    assert_eq!(got, [("decisions.default_limit".to_string(), Some(4))], "{e}");
}

/// `[journey.feature_events]` overrides the roles read off the transitions, role by role.
#[test]
fn feature_events_can_be_named_explicitly() {
    let src = r#"
[journey.feature_events]
carts = ["checkout_started"]
checkouts = ["add_to_cart"]
"#;
    let c = Config::from_toml(src, "t.toml", std::iter::empty()).unwrap();
    let roles = &c.policy.journey.feature_events;
    assert_eq!(
        (roles.carts.as_slice(), roles.checkouts.as_slice()),
        (&["checkout_started".to_string()][..], &["add_to_cart".to_string()][..])
    );
    assert_eq!(roles.product_views, ["product_view"], "roles not named keep the derived events");
}

#[test]
fn server_limits_problems_name_the_entry_and_line() {
    let ok = BASE.replace("nowhere", "awareness");
    check(&format!("{ok}\n[server.limits]\ninteractive = 8\n"), &[], Ok(()));
    check(&format!("{ok}\n[server.limits]\ninteractive = 0\n"), &[], Err(("server.limits.interactive", Some(18))));
    check(&format!("{ok}\n[server.limits]\nbatch = \"many\"\n"), &[], Err(("server.limits.batch", Some(18))));
    check(&format!("{ok}\n[server.limits]\nshed = 1\n"), &[], Err(("server.limits.shed", Some(18))));
    check(&ok, &[("TOUCHPOINT_SERVER_LIMITS_ADMIN", "0")], Err(("server.limits.admin", None)));
}

#[test]
fn a_consent_channel_can_have_no_fallback_and_must_be_declared() {
    let src = r#"
[journey]
consent_channels = ["email", "pigeon"]

[[offers]]
id = "mail"
stages = ["awareness"]
channels = ["email"]
content_ref = "cms://mail"

[[fallbacks]]
channel = "email"
offers = ["mail"]
"#;
    let (e, got) = refused(src);
    assert_eq!(
        got,
        [("journey.consent_channels".to_string(), Some(3)), ("fallbacks[0].channel".to_string(), Some(12))],
        "{e}"
    );
    assert!(e.to_string().contains("\"pigeon\""), "{e}");
    assert!(e.to_string().contains("needs consent"), "{e}");
    // Without the fallback the same config loads, and "email" is a consent channel.
    let ok = src.replace("[[fallbacks]]\nchannel = \"email\"\noffers = [\"mail\"]\n", "").replace(", \"pigeon\"", "");
    let c = Config::from_toml(&ok, "t.toml", std::iter::empty()).unwrap();
    assert_eq!(c.file.journey.consent_channels, ["email"]);
}

#[test]
fn kpis_name_their_stage_metric_and_window() {
    let src = r#"
[[kpis]]
stage = "consideration"
metric = "advance_rate"
target = 0.25

[[kpis]]
stage = "nowhere"
metric = "speed"
target = 1.0
window_days = 0

[[kpis]]
stage = "retention"
metric = "lapses"
target = 10
channel = "email"
"#;
    let (e, got) = refused(src);
    assert_eq!(
        got,
        [
            ("kpis[1].stage".to_string(), Some(8)),
            ("kpis[1].metric".to_string(), Some(9)),
            ("kpis[1].window_days".to_string(), Some(11)),
        ],
        "{e}"
    );
    assert!(e.to_string().contains("advance_rate"), "the known metrics are listed: {e}");
    let ok = src
        .replace("stage = \"nowhere\"\nmetric = \"speed\"", "stage = \"awareness\"\nmetric = \"entered\"")
        .replace("window_days = 0", "window_days = 3");
    let c = Config::from_toml(&ok, "t.toml", std::iter::empty()).unwrap();
    let kpis = &c.policy.kpis;
    assert_eq!(
        kpis.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
        ["consideration:advance_rate", "awareness:entered", "retention:lapses"]
    );
    assert_eq!((kpis[0].window_days, kpis[0].at_most), (7, false));
    assert!(kpis[2].at_most, "fewer lapses is better");
    assert_eq!(kpis[2].channel.as_deref(), Some("email"));
}

#[test]
fn the_http_api_is_on_only_with_plaintext_grpc_unless_asked() {
    let c = Config::from_toml("", "t.toml", std::iter::empty()).unwrap();
    assert!(c.file.server.http_api_enabled(), "plaintext gRPC: the console and JSON API are served");
    let mut s = c.file.server.clone();
    s.tls = Some(Default::default());
    assert!(!s.http_api_enabled(), "gRPC over TLS: not on the plaintext HTTP port by default");
    s.http_api = Some(true);
    assert!(s.http_api_enabled());
    let off =
        Config::from_toml("", "t.toml", [("TOUCHPOINT_SERVER_HTTP_API".to_string(), "false".to_string())]).unwrap();
    assert!(!off.file.server.http_api_enabled());
}

#[test]
fn softmax_exploration_needs_a_positive_temperature() {
    let ok = "[decisions.exploration]\npolicy = \"softmax\"\ntemperature = 0.05\n";
    let c = Config::from_toml(ok, "t.toml", std::iter::empty()).unwrap();
    assert_eq!(c.policy.exploration, crate::domain::arbitration::Exploration::Softmax { temperature: 0.05 });
    let (e, got) = refused(&ok.replace("0.05", "0"));
    assert_eq!(got, [("decisions.exploration.temperature".to_string(), Some(3))], "{e}");
}

#[test]
fn thompson_sampling_settings_are_checked_by_name_and_line() {
    let ok = "[decisions.exploration]\npolicy = \"thompson\"\nreward = \"conversion\"\nsamples = 500\n";
    let c = Config::from_toml(ok, "t.toml", std::iter::empty()).unwrap();
    assert_eq!(c.policy.exploration, crate::domain::arbitration::Exploration::Thompson { samples: 500 });
    assert!(c.policy.uses_thompson());
    let (e, got) = refused(&ok.replace("\"conversion\"", "\"purchase\""));
    assert_eq!(got, [("decisions.exploration.reward".to_string(), Some(3))], "{e}");
    assert!(e.to_string().contains("click, accept, conversion"), "{e}");
    let (e, got) = refused(&ok.replace("500", "5"));
    assert_eq!(got, [("decisions.exploration.samples".to_string(), Some(4))], "{e}");
    let (e, got) = refused(&format!("{ok}prior_beta = -1\n"));
    assert_eq!(got, [("decisions.exploration.prior_beta".to_string(), Some(5))], "{e}");
    assert!(!Config::from_toml("", "t.toml", std::iter::empty()).unwrap().policy.uses_thompson());
}

#[test]
fn configured_features_are_checked_by_entry_and_line() {
    let ok = "[[features]]\nname = \"views_7d\"\nkind = \"count\"\nevents = [\"page_view\"]\nwindow_days = 7\n";
    let c = Config::from_toml(ok, "t.toml", std::iter::empty()).unwrap();
    assert_eq!(c.policy.features.len(), 1);
    assert!(c.policy.journey.tracked.types.contains("page_view") && c.policy.journey.tracked.days == 7);
    let (e, got) = refused(&ok.replace("\"count\"", "\"median\""));
    assert_eq!(got, [("features[0].kind".to_string(), Some(3))], "{e}");
    let (e, got) = refused(&ok.replace("views_7d", "log_events"));
    assert_eq!(got, [("features[0].name".to_string(), Some(2))], "{e}");
    let (e, got) = refused(&ok.replace("window_days = 7", "window_days = 0"));
    assert_eq!(got, [("features[0].window_days".to_string(), Some(5))], "{e}");
    let (e, got) = refused("[[features]]\nname = \"s\"\nkind = \"stage\"\nstage = \"nowhere\"\n");
    assert_eq!(got, [("features[0].stage".to_string(), Some(4))], "{e}");
    let (e, got) = refused("[[features]]\nname = \"m\"\nkind = \"monetary\"\nevents = [\"purchase\"]\n");
    assert_eq!(got, [("features[0].window_days".to_string(), Some(1))], "{e}");
}

/// Issue 9: a decision logs the attributes its policy reads, not the whole profile.
#[test]
fn the_policy_knows_the_attributes_it_reads() {
    let example = include_str!("../../examples/touchpoint.toml");
    let c = Config::from_toml(example, "touchpoint.toml", std::iter::empty()).unwrap();
    let read = c.policy.attributes_read.clone().expect("the example's rules name their fields");
    for name in ["age", "income_band", "interests", "country", "purchase_count"] {
        assert!(read.contains(name), "{name} in {read:?}");
    }
    assert!(!read.contains("notes"));
    let mut attrs: std::collections::BTreeMap<String, crate::domain::profile::AttrValue> =
        [("country", "DE"), ("notes", "x")]
            .map(|(k, v)| (k.to_string(), crate::domain::profile::AttrValue::Str(v.into())))
            .into();
    c.policy.keep_attributes_read(&mut attrs);
    assert_eq!(attrs.keys().collect::<Vec<_>>(), ["country"]);
    // A configured feature's attribute counts; a rule reading `profile` whole means any.
    let feature = "\n[[features]]\nname = \"notes_len\"\nkind = \"attribute\"\nattribute = \"notes\"\n";
    let c = Config::from_toml(&format!("{example}{feature}"), "t.toml", std::iter::empty()).unwrap();
    assert!(c.policy.attributes_read.as_ref().unwrap().contains("notes"));
    let whole = example.replacen("rule = \"profile.purchase_count >= 2.0\"", "rule = \"'vip' in profile\"", 1);
    assert_ne!(whole, example);
    let c = Config::from_toml(&whole, "t.toml", std::iter::empty()).unwrap();
    assert_eq!(c.policy.attributes_read, None);
}
