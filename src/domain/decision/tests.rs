//! Unit tests of the decision: drop reasons, contact limits, ties, replay.
use super::*;
use crate::config::Config;
use crate::domain::MS_PER_DAY;
use crate::domain::contact::Contact;

const DAY: Millis = MS_PER_DAY;
const NOW: Millis = 1_000 * DAY;

fn policy(extra: &str) -> std::sync::Arc<Policy> {
    let src = format!(
        r#"
{extra}
[[segments]]
id = "adults"
kind = "demographic"
rule = "has(profile.age) && profile.age >= 18.0"

[[segments]]
id = "buyers"
kind = "behavioural"
rule = "profile.purchase_count >= 1.0"

[[offers]]
id = "a"
stages = ["awareness"]
channels = ["web", "email"]
content_ref = "cms://a"
priority = 50
cap = {{ max = 2, days = 7 }}

[[offers]]
id = "b"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://b"
priority = 40
cooldown_after_dismiss_days = 3

[[offers]]
id = "c"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://c"
priority = 30
eligibility = "profile.country == 'FR'"

[[offers]]
id = "d"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://d"
priority = 20
eligibility = "scores.churn > 0.5"

[[offers]]
id = "e"
stages = ["awareness"]
channels = ["app"]
content_ref = "cms://e"
priority = 90

[[contact_policy]]
channel = "email"
limits = [{{ max = 1, days = 3 }}]
"#
    );
    Config::from_toml(&src, "test.toml", std::iter::empty()).unwrap().policy
}

fn query(channel: &str, limit: usize) -> DecisionQuery {
    DecisionQuery {
        user_id: "u".into(),
        channel: channel.into(),
        placement: String::new(),
        context: Default::default(),
        limit,
        explain: true,
    }
}

fn user(country: &str, age: f64) -> UserState {
    let mut s = UserState::default();
    s.attributes.insert("country".into(), AttrValue::Str(country.into()));
    s.attributes.insert("age".into(), AttrValue::Num(age));
    s
}

fn run(p: &Policy, q: &DecisionQuery, s: &UserState, c: &ContactState, seed: u64) -> Decided {
    decide(p, &DecisionInputs { query: q, state: s, contacts: c, now: NOW, seed, posteriors: None })
}

fn reasons(o: &Decided) -> Vec<(String, String)> {
    o.candidates
        .iter()
        .map(|c| (c.offer_id.clone(), c.dropped.as_ref().map_or_else(|| "kept".to_string(), |d| d.to_string())))
        .collect()
}

fn check(o: &Decided, expected: &[(&str, &str)]) {
    let got = reasons(o);
    for (id, want) in expected {
        let (_, reason) = got.iter().find(|(i, _)| i == id).unwrap_or_else(|| panic!("{id} missing in {got:?}"));
        assert!(reason.contains(want), "{id}: {reason:?} should contain {want:?}");
    }
}

#[test]
fn every_candidate_is_kept_or_dropped_with_its_reason() {
    let p = policy("");
    let contacts = ContactState {
        contacts: vec![
            Contact { at: NOW - DAY, decision_id: "d1".into(), channel: "web".into(), offer_id: "a".into() },
            Contact { at: NOW - 2 * DAY, decision_id: "d2".into(), channel: "web".into(), offer_id: "a".into() },
        ],
        dismissed: [("b".to_string(), NOW - DAY)].into(),
        accepted: Default::default(),
    };
    let o = run(&p, &query("web", 5), &user("DE", 40.0), &contacts, 1);
    check(
        &o,
        &[
            ("a", "capped: shown 2 time(s) in 7 day(s)"),
            ("b", "cooling down for 3 day(s) after a dismiss"),
            ("c", "eligibility rule is false"),
            ("d", "eligibility rule could not be evaluated: no value for \"churn\""),
            ("e", "wrong channel"),
        ],
    );
    assert!(o.chosen.is_empty());
    assert_eq!(o.suppression, Some(DropReason::NoEligibleOffer));
    assert_eq!(o.segments, vec!["adults"]);

    // Without the history, a, b and c (for a French user) are eligible, ranked by priority.
    let o = run(&p, &query("web", 2), &user("FR", 12.0), &ContactState::default(), 1);
    let chosen: Vec<&str> = o.chosen.iter().map(|c| c.offer_id.as_str()).collect();
    assert_eq!(chosen, ["a", "b"]);
    check(&o, &[("c", "ranked below the limit")]);
    assert!(o.segments.is_empty());
}

#[test]
fn contact_limit_suppresses_the_channel() {
    let p = policy("");
    let contacts = ContactState {
        contacts: vec![Contact {
            at: NOW - DAY,
            decision_id: "d1".into(),
            channel: "email".into(),
            offer_id: "a".into(),
        }],
        ..Default::default()
    };
    let o = run(&p, &query("email", 1), &user("FR", 30.0), &contacts, 1);
    assert!(o.chosen.is_empty());
    assert_eq!(
        o.suppression.as_ref().map(|s| s.to_string()).as_deref(),
        Some("contact limit: at most 1 email contact(s) per 3 day(s)")
    );
    assert_eq!(o.suppression.as_ref().map(DropReason::code), Some("contact_limit"));
    let later = ContactState {
        contacts: vec![Contact { at: NOW - 4 * DAY, ..contacts.contacts[0].clone() }],
        ..Default::default()
    };
    assert_eq!(run(&p, &query("email", 1), &user("FR", 30.0), &later, 1).chosen.len(), 1);
    // The guard carries the limit and the cap so the write re-checks them atomically.
    let o = run(&p, &query("email", 1), &user("FR", 30.0), &later, 1);
    let g = guard(&p, &query("email", 1), &o, NOW);
    assert_eq!(g.channel_limits, vec![(1, NOW - 3 * DAY)]);
    assert_eq!(g.offer_caps, vec![("a".to_string(), 2, NOW - 7 * DAY)]);
    assert_eq!(g.offers, vec!["a"]);
    // On web (no contact limit) only the capped offer is recorded, not the uncapped one.
    let o = run(&p, &query("web", 2), &user("FR", 30.0), &ContactState::default(), 1);
    let chosen: Vec<&str> = o.chosen.iter().map(|c| c.offer_id.as_str()).collect();
    assert_eq!(chosen, ["a", "b"]);
    assert_eq!(guard(&p, &query("web", 2), &o, NOW).offers, vec!["a"]);
}

#[test]
fn ties_break_on_offer_id_and_decisions_are_deterministic() {
    let p = policy("[decisions]\npriority = \"1.0\"");
    let o = run(&p, &query("web", 5), &user("FR", 30.0), &ContactState::default(), 9);
    let order: Vec<&str> = o.chosen.iter().map(|c| c.offer_id.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"]);
    assert_eq!(o, run(&p, &query("web", 5), &user("FR", 30.0), &ContactState::default(), 9));
}

#[test]
fn replay_reproduces_and_reports_differences() {
    let p = policy("[decisions.exploration]\npolicy = \"epsilon_greedy\"\nepsilon = 0.5");
    let q = query("web", 2);
    let state = user("FR", 30.0);
    let contacts = ContactState::default();
    let o = run(&p, &q, &state, &contacts, 42);
    let record = DecisionRecord {
        decision_id: "d".into(),
        user_id: "u".into(),
        at: NOW,
        channel: q.channel.clone(),
        placement: String::new(),
        limit: q.limit,
        context: Default::default(),
        stage: o.stage.clone(),
        lapsed: o.lapsed,
        segments: o.segments.clone(),
        config_version: "v".into(),
        model_versions: Default::default(),
        features: DecisionRecord::features_by_name(&o.features),
        scores: o.scores.clone(),
        degraded: false,
        seed: 42,
        chosen: o.chosen.clone(),
        candidates: o.candidates.clone(),
        suppression: o.suppression.clone(),
        state,
        contacts,
        assignments: Default::default(),
    };
    let json = serde_json::to_string(&record).unwrap();
    let back: DecisionRecord = serde_json::from_str(&json).unwrap();
    assert!(back.differences(&back.replay(&p)).is_empty(), "{:?}", back.differences(&back.replay(&p)));
    let changed = policy("[decisions]\npriority = \"offer.priority * -1.0\"");
    let diffs = back.differences(&back.replay(&changed));
    assert!(diffs.iter().any(|d| d.starts_with("chosen:")), "{diffs:?}");
}

/// A journey whose events are `view_item` / `begin_checkout` gets non-zero features from
/// them (the feature roles follow the configured transitions, not hard-coded names).
#[test]
fn features_use_the_configured_event_names() {
    let src = r#"
[journey]
stages = ["awareness", "consideration", "conversion", "retention", "advocacy"]
purchase_event = "order_completed"
[[journey.transitions]]
event_type = "view_item"
to = "consideration"
[[journey.transitions]]
event_type = "begin_checkout"
to = "conversion"
[[journey.transitions]]
event_type = "order_completed"
to = "retention"
"#;
    let p = Config::from_toml(src, "custom.toml", std::iter::empty()).unwrap().policy;
    let ev = |id: &str, kind: &str| crate::domain::event::Event {
        event_id: id.into(),
        user_id: "u".into(),
        event_type: kind.into(),
        timestamp: NOW - DAY,
        channel: String::new(),
        offer_id: String::new(),
        value: 0.0,
        properties: Default::default(),
    };
    let events = [ev("1", "view_item"), ev("2", "view_item"), ev("3", "begin_checkout")];
    let mut state = UserState::default();
    p.journey.apply_events(&mut state, &events.iter().collect::<Vec<_>>());
    let o = run(&p, &query("web", 1), &state, &ContactState::default(), 1);
    let by_name = DecisionRecord::features_by_name(&o.features);
    assert_eq!(by_name["log_product_views"], 2f64.ln_1p());
    assert_eq!(by_name["log_add_to_cart"], 1f64.ln_1p(), "the first conversion trigger is the cart");
    assert_eq!(by_name["cart_abandoned"], 1.0);
    assert_eq!(o.stage, "conversion");
}

/// Consent withdrawn for a channel drops every offer of that channel with its own reason (after
/// the channel check, so offers of other channels keep `wrong channel`) and is the suppression;
/// other channels are unaffected.
#[test]
fn withdrawn_consent_suppresses_only_its_channel() {
    let p = policy("");
    let mut s = user("FR", 40.0);
    s.set_consent("email", false, NOW - DAY);
    let o = run(&p, &query("email", 5), &s, &ContactState::default(), 1);
    assert!(o.chosen.is_empty());
    check(&o, &[("a", "consent withdrawn for email"), ("b", "wrong channel")]);
    assert_eq!(o.suppression.as_ref().map(DropReason::code), Some("consent_withdrawn"));
    let web = run(&p, &query("web", 5), &s, &ContactState::default(), 1);
    assert!(!web.chosen.is_empty() && web.suppression.is_none());
    // A grant older than the withdrawal does not lift it; a newer one does.
    s.set_consent("email", true, NOW - 2 * DAY);
    assert!(s.consent_withdrawn.contains_key("email"));
    s.set_consent("email", true, NOW);
    assert!(run(&p, &query("email", 5), &s, &ContactState::default(), 1).suppression.is_none());
}

#[test]
fn softmax_decisions_log_their_probabilities_and_replay_from_the_seed() {
    let p = policy("[decisions.exploration]\npolicy = \"softmax\"\ntemperature = 2.0");
    let (q, state) = (query("web", 2), user("FR", 30.0));
    let contacts = ContactState::default();
    let mut firsts = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let o = run(&p, &q, &state, &contacts, seed);
        assert_eq!(o, run(&p, &q, &state, &contacts, seed), "the same seed, the same picks");
        // Eligible: chosen, or only below the limit.
        let eligible =
            o.candidates.iter().filter(|c| c.dropped.is_none() || c.dropped == Some(DropReason::BelowLimit)).count();
        if eligible > 1 {
            let first = &o.chosen[0];
            assert!(first.selection_probability < 1.0 && first.selection_probability > 0.0, "{first:?}");
        }
        firsts.insert(o.chosen.first().map(|c| c.offer_id.clone()));
    }
    assert!(firsts.len() > 1, "softmax explores: more than one offer comes first over 200 seeds");
}
