//! One decision, as pure computation: a short orchestrator over one module per phase.
//!
//! 1. `overrides` — the user's experiments and the variants' overrides, merged into a plan;
//! 2. the user's stage, features, model scores and segments (`scope` builds the rule scope);
//! 3. `checks` — every offer of the stage kept or dropped with a `DropReason`, then scored;
//! 4. arbitration (`domain::arbitration`) — ranking and picking with exact probabilities;
//! 5. `guard` — what the write must re-check atomically; `record` — the log entry and replay.
use crate::domain::Millis;
use crate::domain::arbitration::{Exploration, ThompsonArms, arbitrate};
use crate::domain::contact::ContactState;
use crate::domain::experiment::Assignment;
use crate::domain::features::{Features, configured, features};
use crate::domain::policy::Policy;
use crate::domain::profile::{AttrValue, UserState};
use crate::domain::rules;
use crate::domain::thompson::{self, Posterior, Posteriors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod checks;
mod guard;
mod overrides;
mod record;
mod scope;
#[cfg(test)]
mod tests;

pub use checks::DropReason;
pub use guard::guard;
pub use overrides::{Plan, assign_all, held_out_by_hash, plan};
pub use record::DecisionRecord;
pub use scope::RESERVED_PROFILE_NAMES;

/// A validated `Decide` request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionQuery {
    /// The user decided for.
    pub user_id: String,
    /// A configured channel.
    pub channel: String,
    /// Where the offer will be shown (empty: any).
    pub placement: String,
    /// Request-time values the rules read as `context`.
    pub context: BTreeMap<String, AttrValue>,
    /// How many offers; 0 means the configured default.
    pub limit: usize,
    /// Answer with the reason for every candidate.
    pub explain: bool,
}

/// A candidate offer of the user's stage, with its score, kept or dropped (and why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The offer.
    pub offer_id: String,
    /// Its priority (0 when dropped before scoring).
    pub score: f64,
    /// Offer-level model scores (`response`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scores: BTreeMap<String, f64>,
    /// Why it was dropped; `None` when kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<DropReason>,
}

/// An offer chosen for the answer, with the probability the policy had of choosing it at its
/// rank given the offers chosen before it (1 without exploration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    /// The offer.
    pub offer_id: String,
    /// Its priority.
    pub score: f64,
    /// The probability of this pick at its rank.
    pub selection_probability: f64,
}

/// What a decision reads.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInputs<'a> {
    /// The request.
    pub query: &'a DecisionQuery,
    /// The user's stored state.
    pub state: &'a UserState,
    /// The user's recent contacts and cooldown marks.
    pub contacts: &'a ContactState,
    /// The decision's time.
    pub now: Millis,
    /// Seeds exploration; logged so the decision can be replayed.
    pub seed: u64,
    /// Thompson sampling's posteriors (the server's latest snapshot); without them every
    /// offer has the prior Beta(1, 1).
    pub posteriors: Option<&'a Posteriors>,
}

/// What the pure decision decided (the user's reaction to it is an `outcome`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// The user's stage.
    pub stage: String,
    /// Whether the user is lapsed.
    pub lapsed: bool,
    /// The segments the user is in.
    pub segments: Vec<String>,
    /// The feature vector the models read.
    pub features: Features,
    /// The configured features' values (`policy.features` order).
    pub extra_features: Vec<f64>,
    /// User-level model scores (`churn`, `purchase`).
    pub scores: BTreeMap<String, f64>,
    /// Every offer of the stage, kept ones first in rank order.
    pub candidates: Vec<Candidate>,
    /// The offers returned, in rank order.
    pub chosen: Vec<Chosen>,
    /// Why the user gets nothing, when they get nothing.
    pub suppression: Option<DropReason>,
    /// The experiments (and global holdout) this decision is in.
    pub assignments: Vec<Assignment>,
    /// The models that scored this decision (variants may swap them).
    pub model_versions: BTreeMap<String, String>,
    /// The exploration policy that picked (the user's variant's, or the configured one).
    pub exploration: Exploration,
}

impl Decided {
    /// The policy's probability of showing each kept candidate first (rank order; the
    /// candidates below the limit included): what off-policy evaluation needs of a
    /// candidate policy, for every offer, not just the one it happened to draw.
    pub fn first_pick_distribution(&self) -> Vec<(String, f64)> {
        let kept: Vec<&Candidate> =
            self.candidates.iter().filter(|c| matches!(c.dropped, None | Some(DropReason::BelowLimit))).collect();
        let scores: Vec<f64> = kept.iter().map(|c| c.score).collect();
        let params = logged_posteriors(kept.iter().copied());
        let memo = Posteriors::default();
        let arms = ThompsonArms { params: &params, posteriors: &memo };
        let p = crate::domain::arbitration::pick_probabilities(&scores, Some(arms), self.exploration);
        kept.iter().zip(p).map(|(c, p)| (c.offer_id.clone(), p)).collect()
    }
}

/// The user's assignments in every experiment, with reasons (for `GetAssignment`); with a
/// channel, experiments limited to other channels say so.
pub fn assignments(
    policy: &Policy,
    user: &str,
    channel: Option<&str>,
    state: &UserState,
    now: Millis,
) -> Vec<Assignment> {
    let x = features(state, &policy.journey, now);
    let extra = configured(&policy.features, state, &BTreeMap::new(), &policy.journey, now);
    let scores = scope::scores_of(policy.models.churn.as_ref(), policy.models.purchase.as_ref(), &x, &extra);
    let vars = scope::scope_vars(policy, state, &BTreeMap::new(), scope::score_value(&scores, None), now);
    rules::with_scope(vars, |ctx| assign_all(policy, user, channel, ctx, now))
}

/// The segments a user is in outside a decision (no request context, the default models'
/// scores): what the funnel's per-segment counters use when events move the user.
pub fn segments_of(policy: &Policy, state: &UserState, now: Millis) -> Vec<String> {
    if policy.segments.is_empty() {
        return Vec::new();
    }
    let x = features(state, &policy.journey, now);
    let extra = configured(&policy.features, state, &BTreeMap::new(), &policy.journey, now);
    let scores = scope::scores_of(policy.models.churn.as_ref(), policy.models.purchase.as_ref(), &x, &extra);
    let vars = scope::scope_vars(policy, state, &BTreeMap::new(), scope::score_value(&scores, None), now);
    rules::with_scope(vars, |ctx| {
        policy.segments.iter().filter(|s| s.rule.eval_bool(ctx) == Ok(true)).map(|s| s.id.clone()).collect()
    })
}

/// Decides for one user: see the module documentation for the phases.
pub fn decide(policy: &Policy, input: &DecisionInputs) -> Decided {
    let (q, now, journey) = (input.query, input.now, &policy.journey);
    let x = features(input.state, journey, now);
    let extra = configured(&policy.features, input.state, &q.context, journey, now);
    let default_scores = scope::scores_of(policy.models.churn.as_ref(), policy.models.purchase.as_ref(), &x, &extra);
    let vars = scope::scope_vars(policy, input.state, &q.context, scope::score_value(&default_scores, None), now);
    let stage = journey.stage_of(input.state).to_string();
    rules::with_scope(vars, |base| {
        // Experiments first: their variants may change models, priority, offers, exploration.
        let assignments = assign_all(policy, &q.user_id, Some(&q.channel), base, now);
        let plan = plan(policy, assignments.into_iter().filter(|a| a.variant.is_some()).collect());
        let (churn, purchase) = plan.models(policy);
        let scores =
            if plan.models_changed() { scope::scores_of(churn, purchase, &x, &extra) } else { default_scores.clone() };
        let mut model_versions = policy.models.versions();
        for (name, m) in [("churn", churn), ("purchase", purchase)] {
            if let Some(m) = m {
                model_versions.insert(name.to_string(), m.version().to_string());
            }
        }
        let mut child;
        let ctx: &cel::Context = if plan.models_changed() {
            child = base.new_inner_scope();
            child.add_variable_from_value("scores", scope::score_value(&scores, None));
            &child
        } else {
            base
        };
        let segments: Vec<String> =
            policy.segments.iter().filter(|s| s.rule.eval_bool(ctx) == Ok(true)).map(|s| s.id.clone()).collect();

        let channel_limit = checks::channel_limit(policy, &q.channel, input.contacts, now);
        let consent = checks::consent(input.state, &q.channel);
        let inputs = checks::CheckInputs {
            channel: &q.channel,
            placement: &q.placement,
            now,
            contacts: input.contacts,
            plan: &plan,
            channel_limit: channel_limit.as_ref(),
            consent: consent.as_ref(),
        };
        let priority = plan.priority(policy);
        let mut candidates: Vec<Candidate> = policy
            .catalogue
            .stage_indices(&stage)
            .iter()
            .map(|&i| {
                let (offer, rules) = (&policy.catalogue.offers()[i], &policy.offer_rules[i]);
                let response = policy.models.response.get(&offer.id).map(|model| model.score_with(&x, &extra));
                let scored = match checks::static_checks(&inputs, offer, rules) {
                    Some(reason) => Err(reason),
                    None => checks::score(ctx, offer, rules, &priority, &scores, response),
                };
                Candidate {
                    offer_id: offer.id.clone(),
                    score: *scored.as_ref().unwrap_or(&0.0),
                    scores: response.map(|r| ("response".to_string(), r)).into_iter().collect(),
                    dropped: scored.err(),
                }
            })
            .collect();
        let exploration = plan.exploration(policy);
        let prior;
        let posteriors = match input.posteriors {
            Some(p) => p,
            None => {
                prior = Posteriors::prior_only((1.0, 1.0));
                &prior
            }
        };
        if let Exploration::Thompson { .. } = exploration {
            for c in candidates.iter_mut().filter(|c| c.dropped.is_none()) {
                let (alpha, beta) = posteriors.get(&stage, &c.offer_id);
                c.scores.insert(thompson::ALPHA.to_string(), alpha);
                c.scores.insert(thompson::BETA.to_string(), beta);
            }
        }
        let chosen = rank_and_pick(&mut candidates, q.limit, exploration, posteriors, input.seed);
        let suppression = chosen
            .is_empty()
            .then(|| plan.held_out.clone().or_else(|| consent.clone()).or_else(|| channel_limit.clone()))
            .map(|s| s.unwrap_or(DropReason::NoEligibleOffer));
        Decided {
            stage: stage.clone(),
            lapsed: journey.is_lapsed(input.state, now),
            segments,
            features: x,
            extra_features: extra,
            scores,
            candidates,
            chosen,
            suppression,
            assignments: plan.assignments,
            model_versions,
            exploration,
        }
    })
}

/// The Thompson posteriors the candidates carry in their scores (Beta(1, 1) where absent).
fn logged_posteriors<'a>(candidates: impl Iterator<Item = &'a Candidate>) -> Vec<Posterior> {
    let get = |c: &Candidate, name: &str| c.scores.get(name).copied().unwrap_or(1.0);
    candidates.map(|c| (get(c, thompson::ALPHA), get(c, thompson::BETA))).collect()
}

/// Sorts kept candidates first, best first (ties break on offer id), picks up to `limit`
/// of them by the exploration policy, and marks the kept ones not picked as below the limit.
fn rank_and_pick(
    candidates: &mut [Candidate],
    limit: usize,
    exploration: Exploration,
    posteriors: &Posteriors,
    seed: u64,
) -> Vec<Chosen> {
    candidates.sort_by(|a, b| {
        a.dropped
            .is_some()
            .cmp(&b.dropped.is_some())
            .then(b.score.total_cmp(&a.score))
            .then_with(|| a.offer_id.cmp(&b.offer_id))
    });
    let kept = candidates.iter().take_while(|c| c.dropped.is_none()).count();
    let scores: Vec<f64> = candidates[..kept].iter().map(|c| c.score).collect();
    let params: Vec<Posterior> = match exploration {
        Exploration::Thompson { .. } => logged_posteriors(candidates[..kept].iter()),
        _ => Vec::new(),
    };
    let arms = ThompsonArms { params: &params, posteriors };
    let picks = arbitrate(&scores, Some(arms), limit, exploration, seed);
    for (i, c) in candidates.iter_mut().enumerate().take(kept) {
        if !picks.iter().any(|(p, _)| *p == i) {
            c.dropped = Some(DropReason::BelowLimit);
        }
    }
    picks
        .iter()
        .map(|&(i, p)| Chosen {
            offer_id: candidates[i].offer_id.clone(),
            score: candidates[i].score,
            selection_probability: p,
        })
        .collect()
}
