//! One decision, as pure computation: stage, features, scores, segments, candidates with the
//! reason each was kept or dropped, arbitration with exact selection probabilities, and the
//! record that is logged (enough to replay the decision later).
use super::contact::{ContactGuard, ContactState};
use super::experiment::{Assignment, GLOBAL_HOLDOUT, Overrides};
use super::features::{FEATURE_NAMES, Features, features};
use super::model::BoundModel;
use super::policy::{Exploration, Policy, Priority};
use super::profile::{AttrValue, UserState};
use super::rules::{self, map};
use super::{MS_PER_DAY, Millis};
use cel::Value;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A validated `Decide` request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionQuery {
    pub user_id: String,
    pub channel: String,
    pub placement: String,
    pub context: BTreeMap<String, AttrValue>,
    /// 0 means the configured default.
    pub limit: usize,
    pub explain: bool,
}

/// A candidate offer of the user's stage, with its score, kept or dropped (and why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub offer_id: String,
    pub score: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
}

/// An offer chosen for the answer, with the probability the policy had of choosing it at its
/// rank given the offers chosen before it (1 without exploration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub offer_id: String,
    pub score: f64,
    pub selection_probability: f64,
}

/// What a decision reads.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInputs<'a> {
    pub query: &'a DecisionQuery,
    pub state: &'a UserState,
    pub contacts: &'a ContactState,
    pub now: Millis,
    /// Seeds exploration; logged so the decision can be replayed.
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecisionOutcome {
    pub stage: String,
    pub lapsed: bool,
    pub segments: Vec<String>,
    pub features: Features,
    /// User-level model scores (`churn`, `purchase`).
    pub scores: BTreeMap<String, f64>,
    /// Every offer of the stage, kept ones first in rank order.
    pub candidates: Vec<Candidate>,
    pub chosen: Vec<Chosen>,
    /// Why the user gets nothing, when they get nothing.
    pub suppression: Option<String>,
    /// The experiments (and global holdout) this decision is in.
    pub assignments: Vec<Assignment>,
    /// The models that scored this decision (variants may swap them).
    pub model_versions: BTreeMap<String, String>,
}

fn days(ms: Millis) -> String {
    let d = ms as f64 / MS_PER_DAY as f64;
    if d.fract() == 0.0 { format!("{d:.0}") } else { format!("{d:.2}") }
}

/// An attribute or context value as a CEL value.
fn attr_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::Num(n) => Value::Float(*n),
        AttrValue::Str(s) => rules::string(s),
    }
}

/// The `profile` variable: attributes plus aggregates.
fn profile_value(state: &UserState, now: Millis) -> Value {
    let a = &state.aggregates;
    let since = |t: Option<Millis>| t.map(|t| Value::Float((now - t).max(0) as f64 / MS_PER_DAY as f64));
    let attrs = state.attributes.iter().map(|(k, v)| (k.clone(), attr_value(v)));
    let events = map(a.event_counts.iter().map(|(k, v)| (k.clone(), Value::Float(*v as f64))));
    let aggregates = [
        ("purchase_count", Some(Value::Float(a.purchase_count as f64))),
        ("monetary_total", Some(Value::Float(a.monetary_total))),
        ("events", Some(events)),
        ("cart_abandoned", Some(Value::Bool(a.count("add_to_cart") > a.purchase_count))),
        ("days_since_last_seen", since(a.last_seen)),
        ("days_since_first_seen", since(a.first_seen)),
        ("days_since_last_purchase", since(a.last_purchase)),
    ];
    map(attrs.chain(aggregates.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?)))))
}

fn context_value(context: &BTreeMap<String, AttrValue>) -> Value {
    map(context.iter().map(|(k, v)| (k.clone(), attr_value(v))))
}

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

/// Every experiment's assignment for a user (in config order, then the global holdout), in
/// the scope of a decision (targeting rules read it).
pub fn assign_all(
    policy: &Policy,
    user: &str,
    channel: Option<&str>,
    ctx: &cel::Context,
    now: Millis,
) -> Vec<Assignment> {
    let mut out: Vec<Assignment> =
        policy.experiments.iter().map(|e| e.assign(user, channel, now, |rule| rule.eval_bool(ctx))).collect();
    if let Some(h) = &policy.holdout {
        out.push(h.assign(user));
    }
    out
}

/// The variables of a user's rule scope.
fn scope_vars(
    policy: &Policy,
    state: &UserState,
    context: &BTreeMap<String, AttrValue>,
    scores: Value,
    now: Millis,
) -> Vec<(&'static str, Value)> {
    let journey = &policy.journey;
    vec![
        ("profile", profile_value(state, now)),
        ("context", context_value(context)),
        ("scores", scores),
        ("stage", rules::string(journey.stage_of(state))),
        ("lapsed", Value::Bool(journey.is_lapsed(state, now))),
        ("now", Value::Timestamp(chrono::DateTime::from_timestamp_millis(now).unwrap_or_default().fixed_offset())),
    ]
}

fn scores_of(
    churn: Option<&Arc<BoundModel>>,
    purchase: Option<&Arc<BoundModel>>,
    x: &Features,
) -> BTreeMap<String, f64> {
    let mut scores = BTreeMap::new();
    if let Some(m) = churn {
        scores.insert("churn".to_string(), m.score(x));
    }
    if let Some(m) = purchase {
        scores.insert("purchase".to_string(), m.score(x));
    }
    scores
}

fn score_value(scores: &BTreeMap<String, f64>, response: Option<f64>) -> Value {
    map(scores
        .iter()
        .map(|(k, v)| (k.clone(), Value::Float(*v)))
        .chain(response.map(|r| ("response".to_string(), Value::Float(r)))))
}

/// The user's assignments in every experiment, with reasons (for `GetAssignment`).
pub fn assignments(policy: &Policy, user: &str, state: &UserState, now: Millis) -> Vec<Assignment> {
    let x = features(state, &policy.journey, now);
    let scores = scores_of(policy.models.churn.as_ref(), policy.models.purchase.as_ref(), &x);
    let vars = scope_vars(policy, state, &BTreeMap::new(), score_value(&scores, None), now);
    rules::with_scope(vars, |ctx| assign_all(policy, user, None, ctx, now))
}

pub fn decide(policy: &Policy, input: &DecisionInputs) -> DecisionOutcome {
    let q = input.query;
    let now = input.now;
    let journey = &policy.journey;
    let stage = journey.stage_of(input.state).to_string();
    let lapsed = journey.is_lapsed(input.state, now);
    let x = features(input.state, journey, now);
    let default_scores = scores_of(policy.models.churn.as_ref(), policy.models.purchase.as_ref(), &x);
    let vars = scope_vars(policy, input.state, &q.context, score_value(&default_scores, None), now);

    let channel_limit = policy.contact_limits.get(&q.channel).and_then(|limits| {
        limits.iter().find(|l| input.contacts.channel_contacts(&q.channel, now - l.window_ms) >= l.max as usize).map(
            |l| format!("contact limit: at most {} {} contact(s) per {} day(s)", l.max, q.channel, days(l.window_ms)),
        )
    });

    rules::with_scope(vars, |base| {
        // Experiments first: their variants may change models, priority, offers, exploration.
        let assignments: Vec<Assignment> = assign_all(policy, &q.user_id, Some(&q.channel), base, now)
            .into_iter()
            .filter(|a| a.variant.is_some())
            .collect();
        let mut ov = Overrides::default();
        let mut held_out: Option<String> = None;
        let mut offer_sets: Vec<(&BTreeSet<String>, String)> = Vec::new();
        for a in &assignments {
            let variant = a.variant.as_deref().unwrap_or_default();
            if a.experiment_id == GLOBAL_HOLDOUT {
                if variant == "holdout" {
                    held_out = Some("global holdout".to_string());
                }
                continue;
            }
            let Some(v) = policy
                .experiments
                .iter()
                .find(|e| e.id == a.experiment_id)
                .and_then(|e| e.variants.iter().find(|v| v.name == variant))
            else {
                continue;
            };
            let o = &v.overrides;
            if o.holdout {
                held_out = Some(format!("holdout: experiment {} variant {variant}", a.experiment_id));
            }
            ov.priority = o.priority.clone().or(ov.priority);
            ov.churn = o.churn.clone().or(ov.churn);
            ov.purchase = o.purchase.clone().or(ov.purchase);
            ov.exploration = o.exploration.or(ov.exploration);
            if let Some(set) = &o.offers {
                offer_sets
                    .push((set, format!("not in the offer set of experiment {} variant {variant}", a.experiment_id)));
            }
        }
        let churn = ov.churn.as_ref().or(policy.models.churn.as_ref());
        let purchase = ov.purchase.as_ref().or(policy.models.purchase.as_ref());
        let models_changed = ov.churn.is_some() || ov.purchase.is_some();
        let scores = if models_changed { scores_of(churn, purchase, &x) } else { default_scores.clone() };
        let mut model_versions = policy.models.versions();
        for (name, m) in [("churn", churn), ("purchase", purchase)] {
            if let Some(m) = m {
                model_versions.insert(name.to_string(), m.version().to_string());
            }
        }
        let mut child;
        let ctx: &cel::Context = if models_changed {
            child = base.new_inner_scope();
            child.add_variable_from_value("scores", score_value(&scores, None));
            &child
        } else {
            base
        };
        let priority = ov.priority.clone().map(Priority::Rule).unwrap_or_else(|| policy.priority.clone());
        let exploration = ov.exploration.unwrap_or(policy.exploration);
        let m = &policy.models;

        let segments: Vec<String> =
            policy.segments.iter().filter(|s| s.rule.eval_bool(ctx) == Ok(true)).map(|s| s.id.clone()).collect();

        let mut candidates: Vec<Candidate> = journey_offers(policy, &stage)
            .map(|i| {
                let offer = &policy.catalogue.offers()[i];
                let rules = &policy.offer_rules[i];
                let response = m.response.get(&offer.id).map(|model| model.score(&x));
                let mut cand =
                    Candidate { offer_id: offer.id.clone(), score: 0.0, scores: BTreeMap::new(), dropped: None };
                if let Some(r) = response {
                    cand.scores.insert("response".into(), r);
                }
                let since = |ms: Millis| now - ms;
                let cooling = |marks: &BTreeMap<String, Millis>, ms: Millis| {
                    ms > 0 && marks.get(&offer.id).is_some_and(|t| now < t + ms)
                };
                cand.dropped = if let Some(h) = &held_out {
                    Some(h.clone())
                } else if !offer.channels.contains(&q.channel) {
                    Some("wrong channel".to_string())
                } else if !q.placement.is_empty()
                    && !offer.placements.is_empty()
                    && !offer.placements.contains(&q.placement)
                {
                    Some("wrong placement".into())
                } else if !offer.in_window(now) {
                    Some("outside its validity window".into())
                } else if let Some((_, why)) = offer_sets.iter().find(|(set, _)| !set.contains(&offer.id)) {
                    Some(why.clone())
                } else if let Some(reason) = &channel_limit {
                    Some(reason.clone())
                } else if cooling(&input.contacts.dismissed, rules.cooldown_after_dismiss_ms) {
                    Some(format!("cooling down for {} day(s) after a dismiss", days(rules.cooldown_after_dismiss_ms)))
                } else if cooling(&input.contacts.accepted, rules.cooldown_after_accept_ms) {
                    Some(format!("cooling down for {} day(s) after an accept", days(rules.cooldown_after_accept_ms)))
                } else {
                    rules
                        .cap
                        .filter(|c| input.contacts.offer_contacts(&offer.id, since(c.window_ms)) >= c.max as usize)
                        .map(|cap| format!("capped: shown {} time(s) in {} day(s)", cap.max, days(cap.window_ms)))
                };
                if cand.dropped.is_some() {
                    return cand;
                }
                let needs_scope = rules.eligibility.is_some() || matches!(priority, Priority::Rule(_));
                let purchase_score = scores.get("purchase").copied();
                let outcome = if needs_scope {
                    rules::with_offer(ctx, &rules.value, response.map(|r| score_value(&scores, Some(r))), |scope| {
                        let eligible = match &rules.eligibility {
                            None => Ok(()),
                            Some(rule) => match rule.eval_bool(scope) {
                                Ok(true) => Ok(()),
                                Ok(false) => Err("eligibility rule is false".to_string()),
                                Err(e) => Err(format!("eligibility rule could not be evaluated: {e}")),
                            },
                        };
                        eligible.and_then(|()| match &priority {
                            Priority::Rule(rule) => {
                                rule.eval_number(scope).map_err(|e| format!("priority could not be evaluated: {e}"))
                            }
                            Priority::Default => Ok(default_priority(offer, response, purchase_score)),
                        })
                    })
                } else {
                    Ok(default_priority(offer, response, purchase_score))
                };
                match outcome {
                    Ok(score) => cand.score = score,
                    Err(reason) => cand.dropped = Some(reason),
                }
                cand
            })
            .collect();

        // Kept candidates first, best first; ties break on offer id.
        candidates.sort_by(|a, b| {
            a.dropped
                .is_some()
                .cmp(&b.dropped.is_some())
                .then(b.score.total_cmp(&a.score))
                .then_with(|| a.offer_id.cmp(&b.offer_id))
        });
        let kept = candidates.iter().take_while(|c| c.dropped.is_none()).count();
        let picks = arbitrate(kept, q.limit, exploration, input.seed);
        let chosen: Vec<Chosen> = picks
            .iter()
            .map(|&(i, p)| Chosen {
                offer_id: candidates[i].offer_id.clone(),
                score: candidates[i].score,
                selection_probability: p,
            })
            .collect();
        let picked: Vec<usize> = picks.iter().map(|(i, _)| *i).collect();
        for (i, c) in candidates.iter_mut().enumerate().take(kept) {
            if !picked.contains(&i) {
                c.dropped = Some("ranked below the limit".into());
            }
        }
        let suppression = chosen
            .is_empty()
            .then(|| held_out.clone().or_else(|| channel_limit.clone()).unwrap_or_else(|| "no eligible offer".into()));
        DecisionOutcome {
            stage: stage.clone(),
            lapsed,
            segments,
            features: x,
            scores,
            candidates,
            chosen,
            suppression,
            assignments,
            model_versions,
        }
    })
}

fn journey_offers<'a>(policy: &'a Policy, stage: &str) -> impl Iterator<Item = usize> + 'a {
    policy.catalogue.stage_indices(stage).iter().copied()
}

fn default_priority(offer: &super::offer::Offer, response: Option<f64>, purchase: Option<f64>) -> f64 {
    match response.or(purchase) {
        Some(p) => p * offer.value * offer.weight,
        None => offer.priority * offer.weight,
    }
}

/// Picks up to `limit` of `n` candidates ranked best first. Returns (index, probability of
/// that pick given the earlier picks). Deterministic for a seed.
pub fn arbitrate(n: usize, limit: usize, exploration: Exploration, seed: u64) -> Vec<(usize, f64)> {
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut picks = Vec::new();
    while picks.len() < limit && !remaining.is_empty() {
        let r = remaining.len();
        let (at, p) = match exploration {
            Exploration::EpsilonGreedy { epsilon } if epsilon > 0.0 => {
                let at = if rng.r#gen::<f64>() < epsilon { rng.gen_range(0..r) } else { 0 };
                let p = epsilon / r as f64 + if at == 0 { 1.0 - epsilon } else { 0.0 };
                (at, p)
            }
            _ => (0, 1.0),
        };
        picks.push((remaining.remove(at), p));
    }
    picks
}

/// The atomic re-check a decision's write performs (caps and contact limits).
pub fn guard(policy: &Policy, query: &DecisionQuery, outcome: &DecisionOutcome, now: Millis) -> ContactGuard {
    if outcome.chosen.is_empty() || policy.longest_window() == 0 {
        // Nothing shown, or nothing configured that counts showings: nothing to check or keep.
        return ContactGuard::default();
    }
    let channel_limits =
        policy.contact_limits.get(&query.channel).into_iter().flatten().map(|l| (l.max, now - l.window_ms)).collect();
    let offer_caps: Vec<(String, u32, Millis)> = outcome
        .chosen
        .iter()
        .filter_map(|c| {
            let i = policy.catalogue.index_of(&c.offer_id)?;
            policy.offer_rules[i].cap.map(|cap| (c.offer_id.clone(), cap.max, now - cap.window_ms))
        })
        .collect();
    // Only showings that a limit counts are worth recording: every chosen offer when the
    // channel has a contact limit, else only the capped ones.
    let channel_limited = policy.contact_limits.contains_key(&query.channel);
    let offers: Vec<String> = outcome
        .chosen
        .iter()
        .filter(|c| channel_limited || offer_caps.iter().any(|(o, _, _)| *o == c.offer_id))
        .map(|c| c.offer_id.clone())
        .collect();
    if offers.is_empty() {
        return ContactGuard::default();
    }
    ContactGuard {
        channel: query.channel.clone(),
        channel_limits,
        offer_caps,
        offers,
        keep_since: now - policy.longest_window(),
    }
}

/// The decision-log entry: the inputs (to replay), the versions, and what was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub user_id: String,
    pub at: Millis,
    pub channel: String,
    pub placement: String,
    pub limit: usize,
    #[serde(default)]
    pub context: BTreeMap<String, AttrValue>,
    pub stage: String,
    pub lapsed: bool,
    #[serde(default)]
    pub segments: Vec<String>,
    pub config_version: String,
    #[serde(default)]
    pub model_versions: BTreeMap<String, String>,
    #[serde(default)]
    pub features: BTreeMap<String, f64>,
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
    pub degraded: bool,
    pub seed: u64,
    pub chosen: Vec<Chosen>,
    pub candidates: Vec<Candidate>,
    #[serde(default)]
    pub suppression: Option<String>,
    /// The profile the decision read (stage history left out).
    #[serde(default)]
    pub state: UserState,
    #[serde(default)]
    pub contacts: ContactState,
    /// Experiment id -> variant, for the experiments this decision is in.
    #[serde(default)]
    pub assignments: BTreeMap<String, String>,
}

impl DecisionRecord {
    pub fn features_by_name(x: &Features) -> BTreeMap<String, f64> {
        FEATURE_NAMES.iter().zip(x).map(|(n, v)| (n.to_string(), *v)).collect()
    }

    /// Re-runs this decision from its logged inputs under `policy`.
    pub fn replay(&self, policy: &Policy) -> DecisionOutcome {
        let query = DecisionQuery {
            user_id: self.user_id.clone(),
            channel: self.channel.clone(),
            placement: self.placement.clone(),
            context: self.context.clone(),
            limit: self.limit,
            explain: true,
        };
        let input = DecisionInputs {
            query: &query,
            state: &self.state,
            contacts: &self.contacts,
            now: self.at,
            seed: self.seed,
        };
        decide(policy, &input)
    }

    /// What differs between this record and a replayed outcome; empty when identical.
    pub fn differences(&self, replayed: &DecisionOutcome) -> Vec<String> {
        let mut diffs = Vec::new();
        let mut field = |name: &str, a: String, b: String| {
            if a != b {
                diffs.push(format!("{name}: logged {a}, now {b}"));
            }
        };
        field("stage", self.stage.clone(), replayed.stage.clone());
        field("segments", format!("{:?}", self.segments), format!("{:?}", replayed.segments));
        field("scores", format!("{:?}", self.scores), format!("{:?}", replayed.scores));
        let ids = |c: &[Chosen]| {
            format!("{:?}", c.iter().map(|c| (&c.offer_id, c.score, c.selection_probability)).collect::<Vec<_>>())
        };
        field("chosen", ids(&self.chosen), ids(&replayed.chosen));
        for c in &self.candidates {
            match replayed.candidates.iter().find(|r| r.offer_id == c.offer_id) {
                None => diffs.push(format!("candidate {}: no longer a candidate", c.offer_id)),
                Some(r) if r != c => diffs.push(format!(
                    "candidate {}: logged score {} ({}), now {} ({})",
                    c.offer_id,
                    c.score,
                    c.dropped.as_deref().unwrap_or("kept"),
                    r.score,
                    r.dropped.as_deref().unwrap_or("kept")
                )),
                Some(_) => {}
            }
        }
        for r in replayed.candidates.iter().filter(|r| !self.candidates.iter().any(|c| c.offer_id == r.offer_id)) {
            diffs.push(format!("candidate {}: new candidate", r.offer_id));
        }
        diffs
    }
}

/// An outcome reported for an offer of a logged decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub decision_id: String,
    pub user_id: String,
    pub offer_id: String,
    pub outcome: OutcomeKind,
    pub value: f64,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Impression,
    Click,
    Dismiss,
    Accept,
    Conversion,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Impression => "impression",
            OutcomeKind::Click => "click",
            OutcomeKind::Dismiss => "dismiss",
            OutcomeKind::Accept => "accept",
            OutcomeKind::Conversion => "conversion",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
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

    fn run(p: &Policy, q: &DecisionQuery, s: &UserState, c: &ContactState, seed: u64) -> DecisionOutcome {
        decide(p, &DecisionInputs { query: q, state: s, contacts: c, now: NOW, seed })
    }

    fn reasons(o: &DecisionOutcome) -> Vec<(String, String)> {
        o.candidates.iter().map(|c| (c.offer_id.clone(), c.dropped.clone().unwrap_or_else(|| "kept".into()))).collect()
    }

    fn check(o: &DecisionOutcome, expected: &[(&str, &str)]) {
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
        assert_eq!(o.suppression.as_deref(), Some("no eligible offer"));
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
        assert_eq!(o.suppression.as_deref(), Some("contact limit: at most 1 email contact(s) per 3 day(s)"));
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

    /// With epsilon-greedy exploration, each returned probability is the true probability of
    /// that pick: over many seeded decisions, frequencies match the logged probabilities.
    #[test]
    fn exploration_probabilities_match_observed_frequencies() {
        let eps = 0.3;
        let n_offers = 5;
        let trials = 40_000u64;
        let mut first = [0u64; 5];
        let mut logged_first = [0.0f64; 5];
        let mut second_given_best_first = [0u64; 5];
        let mut best_first = 0u64;
        for seed in 0..trials {
            let picks = arbitrate(n_offers, 2, Exploration::EpsilonGreedy { epsilon: eps }, seed);
            let (f, pf) = picks[0];
            first[f] += 1;
            logged_first[f] += pf;
            if f == 0 {
                best_first += 1;
                second_given_best_first[picks[1].0] += 1;
            }
        }
        let within = |count: u64, n: u64, p: f64| {
            let freq = count as f64 / n as f64;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            (freq - p).abs() < 4.5 * sd
        };
        let truth_first: Vec<f64> = (0..5).map(|i| eps / 5.0 + if i == 0 { 1.0 - eps } else { 0.0 }).collect();
        assert!((truth_first.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..5 {
            assert!(within(first[i], trials, truth_first[i]), "rank 1, offer {i}: {} vs {}", first[i], truth_first[i]);
            // The logged probability of each pick is exactly the truth for that offer.
            assert!((logged_first[i] / first[i] as f64 - truth_first[i]).abs() < 1e-12);
        }
        // Rank 2 given the best was first: the next best with 1-eps+eps/4, the others eps/4.
        for (i, &count) in second_given_best_first.iter().enumerate().skip(1) {
            let p = eps / 4.0 + if i == 1 { 1.0 - eps } else { 0.0 };
            assert!(within(count, best_first, p), "rank 2, offer {i}: {count}/{best_first} vs {p}");
        }
        assert_eq!(arbitrate(5, 2, Exploration::None, 3), vec![(0, 1.0), (1, 1.0)]);
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
}
