//! One decision, as pure computation: stage, features, scores, segments, candidates with the
//! reason each was kept or dropped, arbitration with exact selection probabilities, and the
//! record that is logged (enough to replay the decision later).
use super::contact::{ContactGuard, ContactState};
use super::features::{FEATURE_NAMES, Features, features};
use super::policy::{Exploration, Policy, Priority};
use super::profile::{AttrValue, UserState};
use super::rules::{self, map};
use super::{MS_PER_DAY, Millis};
use cel::Value;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
}

fn days(ms: Millis) -> String {
    let d = ms as f64 / MS_PER_DAY as f64;
    if d.fract() == 0.0 { format!("{d:.0}") } else { format!("{d:.2}") }
}

/// The `profile` variable: attributes plus aggregates.
fn profile_value(state: &UserState, now: Millis) -> Value {
    let a = &state.aggregates;
    let since = |t: Option<Millis>| t.map(|t| Value::Float((now - t).max(0) as f64 / MS_PER_DAY as f64));
    let attrs = state.attributes.iter().map(|(k, v)| {
        let v = match v {
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Num(n) => Value::Float(*n),
            AttrValue::Str(s) => rules::string(s),
        };
        (k.clone(), v)
    });
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
    map(context.iter().map(|(k, v)| {
        let v = match v {
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Num(n) => Value::Float(*n),
            AttrValue::Str(s) => rules::string(s),
        };
        (k.clone(), v)
    }))
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

pub fn decide(policy: &Policy, input: &DecisionInputs) -> DecisionOutcome {
    let q = input.query;
    let now = input.now;
    let journey = &policy.journey;
    let stage = journey.stage_of(input.state).to_string();
    let lapsed = journey.is_lapsed(input.state, now);
    let x = features(input.state, journey, now);
    let m = &policy.models;
    let mut scores = BTreeMap::new();
    if let Some(model) = &m.churn {
        scores.insert("churn".to_string(), model.score(&x));
    }
    if let Some(model) = &m.purchase {
        scores.insert("purchase".to_string(), model.score(&x));
    }
    let score_map = |extra: Option<f64>| {
        map(scores
            .iter()
            .map(|(k, v)| (k.clone(), Value::Float(*v)))
            .chain(extra.map(|r| ("response".to_string(), Value::Float(r)))))
    };
    let vars = vec![
        ("profile", profile_value(input.state, now)),
        ("context", context_value(&q.context)),
        ("scores", score_map(None)),
        ("stage", rules::string(&stage)),
        ("lapsed", Value::Bool(lapsed)),
        ("now", Value::Timestamp(chrono::DateTime::from_timestamp_millis(now).unwrap_or_default().fixed_offset())),
    ];

    let channel_limit = policy.contact_limits.get(&q.channel).and_then(|limits| {
        limits.iter().find(|l| input.contacts.channel_contacts(&q.channel, now - l.window_ms) >= l.max as usize).map(
            |l| format!("contact limit: at most {} {} contact(s) per {} day(s)", l.max, q.channel, days(l.window_ms)),
        )
    });

    rules::with_scope(vars, |ctx| {
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
                cand.dropped = if !offer.channels.contains(&q.channel) {
                    Some("wrong channel".to_string())
                } else if !q.placement.is_empty()
                    && !offer.placements.is_empty()
                    && !offer.placements.contains(&q.placement)
                {
                    Some("wrong placement".into())
                } else if !offer.in_window(now) {
                    Some("outside its validity window".into())
                } else if let Some(reason) = &channel_limit {
                    Some(reason.clone())
                } else if cooling(&input.contacts.dismissed, rules.cooldown_after_dismiss_ms) {
                    Some(format!("cooling down for {} day(s) after a dismiss", days(rules.cooldown_after_dismiss_ms)))
                } else if cooling(&input.contacts.accepted, rules.cooldown_after_accept_ms) {
                    Some(format!("cooling down for {} day(s) after an accept", days(rules.cooldown_after_accept_ms)))
                } else if let Some(cap) =
                    rules.cap.filter(|c| input.contacts.offer_contacts(&offer.id, since(c.window_ms)) >= c.max as usize)
                {
                    Some(format!("capped: shown {} time(s) in {} day(s)", cap.max, days(cap.window_ms)))
                } else {
                    None
                };
                if cand.dropped.is_some() {
                    return cand;
                }
                let needs_scope = rules.eligibility.is_some() || matches!(policy.priority, Priority::Rule(_));
                let outcome = if needs_scope {
                    let mut scope = ctx.new_inner_scope();
                    scope.add_variable_from_value("offer", rules.value.clone());
                    if response.is_some() {
                        scope.add_variable_from_value("scores", score_map(response));
                    }
                    let eligible = match &rules.eligibility {
                        None => Ok(()),
                        Some(rule) => match rule.eval_bool(&scope) {
                            Ok(true) => Ok(()),
                            Ok(false) => Err("eligibility rule is false".to_string()),
                            Err(e) => Err(format!("eligibility rule could not be evaluated: {e}")),
                        },
                    };
                    eligible.and_then(|()| match &policy.priority {
                        Priority::Rule(rule) => {
                            rule.eval_number(&scope).map_err(|e| format!("priority could not be evaluated: {e}"))
                        }
                        Priority::Default => Ok(default_priority(offer, response, scores.get("purchase").copied())),
                    })
                } else {
                    Ok(default_priority(offer, response, scores.get("purchase").copied()))
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
        let picks = arbitrate(kept, q.limit, policy.exploration, input.seed);
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
        let suppression =
            chosen.is_empty().then(|| channel_limit.clone().unwrap_or_else(|| "no eligible offer".into()));
        DecisionOutcome {
            stage: stage.clone(),
            lapsed,
            segments,
            features: x,
            scores: scores.clone(),
            candidates,
            chosen,
            suppression,
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
    let offer_caps = outcome
        .chosen
        .iter()
        .filter_map(|c| {
            let i = policy.catalogue.index_of(&c.offer_id)?;
            policy.offer_rules[i].cap.map(|cap| (c.offer_id.clone(), cap.max, now - cap.window_ms))
        })
        .collect();
    ContactGuard {
        channel: query.channel.clone(),
        channel_limits,
        offer_caps,
        offers: outcome.chosen.iter().map(|c| c.offer_id.clone()).collect(),
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
