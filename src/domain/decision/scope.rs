//! The variables a decision's rules see: `profile`, `context`, `scores`, `stage`, `lapsed`,
//! `now` (and `offer`, lent per candidate by `rules::with_offer`).
use crate::domain::features::Features;
use crate::domain::model::BoundModel;
use crate::domain::policy::Policy;
use crate::domain::profile::{AttrValue, UserState};
use crate::domain::rules::{self, map};
use crate::domain::{MS_PER_DAY, Millis};
use cel::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Aggregate names a profile attribute may not take (they would shadow each other in rules).
pub const RESERVED_PROFILE_NAMES: [&str; 7] = [
    "purchase_count",
    "monetary_total",
    "events",
    "cart_abandoned",
    "days_since_last_seen",
    "days_since_first_seen",
    "days_since_last_purchase",
];

/// An attribute or context value as a CEL value.
fn attr_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Num(n) => Value::Float(*n),
        AttrValue::Str(s) => rules::string(s),
    }
}

/// The `profile` variable: attributes plus aggregates.
fn profile_value(policy: &Policy, state: &UserState, now: Millis) -> Value {
    let a = &state.aggregates;
    let since = |t: Option<Millis>| t.map(|t| Value::Float((now - t).max(0) as f64 / MS_PER_DAY as f64));
    let attrs = state.attributes.iter().map(|(k, v)| (k.clone(), attr_value(v)));
    let events = map(a.event_counts.iter().map(|(k, v)| (k.clone(), Value::Float(*v as f64))));
    let aggregates = [
        ("purchase_count", Some(Value::Float(a.purchase_count as f64))),
        ("monetary_total", Some(Value::Float(a.monetary_total))),
        ("events", Some(events)),
        ("cart_abandoned", Some(Value::Bool(policy.journey.cart_abandoned(state)))),
        ("days_since_last_seen", since(a.last_seen)),
        ("days_since_first_seen", since(a.first_seen)),
        ("days_since_last_purchase", since(a.last_purchase)),
    ];
    map(attrs.chain(aggregates.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?)))))
}

fn context_value(context: &BTreeMap<String, AttrValue>) -> Value {
    map(context.iter().map(|(k, v)| (k.clone(), attr_value(v))))
}

/// The variables of a user's rule scope.
pub(super) fn scope_vars(
    policy: &Policy,
    state: &UserState,
    context: &BTreeMap<String, AttrValue>,
    scores: Value,
    now: Millis,
) -> Vec<(&'static str, Value)> {
    let journey = &policy.journey;
    vec![
        ("profile", profile_value(policy, state, now)),
        ("context", context_value(context)),
        ("scores", scores),
        ("stage", rules::string(journey.stage_of(state))),
        ("lapsed", Value::Bool(journey.is_lapsed(state, now))),
        ("now", Value::Timestamp(chrono::DateTime::from_timestamp_millis(now).unwrap_or_default().fixed_offset())),
    ]
}

/// User-level model scores (`churn`, `purchase`) of the models in use.
pub(super) fn scores_of(
    churn: Option<&Arc<BoundModel>>,
    purchase: Option<&Arc<BoundModel>>,
    x: &Features,
    extra: &[f64],
) -> BTreeMap<String, f64> {
    let mut scores = BTreeMap::new();
    if let Some(m) = churn {
        scores.insert("churn".to_string(), m.score_with(x, extra));
    }
    if let Some(m) = purchase {
        scores.insert("purchase".to_string(), m.score_with(x, extra));
    }
    scores
}

/// The `scores` variable: user-level scores plus the offer's response score, if any.
pub(super) fn score_value(scores: &BTreeMap<String, f64>, response: Option<f64>) -> Value {
    map(scores
        .iter()
        .map(|(k, v)| (k.clone(), Value::Float(*v)))
        .chain(response.map(|r| ("response".to_string(), Value::Float(r)))))
}
