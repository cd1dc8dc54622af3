//! Counterfactual evaluation of a Touchpoint policy (a config, or the current config with a
//! candidate model) on Touchpoint's own decision log (issue 10, point 6).
//!
//! Each logged decision is replayed under the candidate from its logged inputs (the user's
//! state, contacts, context and seed, as `touchpoint replay` does), which gives the
//! candidate's probability of showing each offer first ([`Decided::first_pick_distribution`]:
//! exact for greedy, epsilon-greedy and softmax; the Monte Carlo win probabilities for
//! Thompson sampling, from the posteriors the decision logged, else the prior). With the logged
//! first offer, its logged selection probability and its reward (the outcome within the
//! window), the rows go to the estimators of `ope`: IPS, SNIPS and doubly robust.
//!
//! The direct-method model of DR is the mean reward of each (stage, offer) in the log,
//! shrunk towards the log's overall mean with the weight of one decision; the candidate's
//! `dm_estimate` is Σₐ π(a|x) q̂(stage, a).
//!
//! Only the first slot is evaluated: a decision that showed several offers counts by its first.
use crate::decisions::Log;
use crate::ope::{Evaluation, Logged, evaluate};
use std::collections::HashMap;
use touchpoint::domain::Millis;
use touchpoint::domain::decision::DecisionRecord;
use touchpoint::domain::policy::Policy;

/// What counts as the reward of a decision's first offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reward {
    /// 1 when the offer was clicked within the window.
    Click,
    /// 1 when accepted.
    Accept,
    /// 1 when converted.
    Conversion,
    /// The conversions' summed value.
    Value,
}

impl Reward {
    /// The outcome flag a yes/no reward reads (its position in `decisions::OUTCOMES`); None
    /// for `Value`.
    pub fn outcome(self) -> Option<usize> {
        use touchpoint::domain::outcome::OutcomeKind;
        let kind = match self {
            Reward::Click => OutcomeKind::Click,
            Reward::Accept => OutcomeKind::Accept,
            Reward::Conversion => OutcomeKind::Conversion,
            Reward::Value => return None,
        };
        crate::decisions::OUTCOMES.iter().position(|k| *k == kind)
    }
}

/// A logged decision with the reward of its first offer.
#[derive(Debug, Clone)]
pub struct LoggedDecision {
    pub record: DecisionRecord,
    pub reward: f64,
}

/// The log's decisions that showed an offer, each with its first offer's reward within
/// `window_ms`.
pub fn logged_decisions(log: &Log, window_ms: Millis, reward: Reward) -> Vec<LoggedDecision> {
    log.decisions
        .iter()
        .filter(|d| !d.chosen.is_empty() && !d.degraded)
        .map(|d| {
            let (flags, value) = log.outcomes_of(d, &d.chosen[0].offer_id, window_ms);
            let reward = match reward.outcome() {
                Some(k) => f64::from(u8::from(flags[k])),
                None => value,
            };
            LoggedDecision { record: d.clone(), reward }
        })
        .collect()
}

/// The direct-method model: shrunk mean reward per (stage, offer).
struct DirectMethod {
    means: HashMap<(String, String), f64>,
    overall: f64,
}

impl DirectMethod {
    fn fit(logged: &[LoggedDecision]) -> Self {
        let mut sums: HashMap<(String, String), (f64, f64)> = HashMap::new();
        for l in logged {
            let s = sums.entry((l.record.stage.clone(), l.record.chosen[0].offer_id.clone())).or_default();
            s.0 += l.reward;
            s.1 += 1.0;
        }
        let overall = logged.iter().map(|l| l.reward).sum::<f64>() / logged.len().max(1) as f64;
        let means = sums.into_iter().map(|(k, (sum, n))| (k, (sum + overall) / (n + 1.0))).collect();
        Self { means, overall }
    }

    fn q(&self, stage: &str, offer: &str) -> f64 {
        self.means.get(&(stage.to_string(), offer.to_string())).copied().unwrap_or(self.overall)
    }
}

/// The candidate's estimated value on the logged decisions.
pub fn evaluate_policy(logged: &[LoggedDecision], candidate: &Policy) -> Result<Evaluation, String> {
    let dm = DirectMethod::fit(logged);
    let rows: Vec<Logged> = logged
        .iter()
        .map(|l| {
            let first = &l.record.chosen[0];
            let dist = l.record.replay(candidate).first_pick_distribution();
            let target = dist.iter().find(|(o, _)| *o == first.offer_id).map_or(0.0, |(_, p)| *p);
            let dm_estimate: f64 = dist.iter().map(|(o, p)| p * dm.q(&l.record.stage, o)).sum();
            Logged {
                reward: l.reward,
                propensity: first.selection_probability,
                target,
                dm: Some((dm_estimate, dm.q(&l.record.stage, &first.offer_id))),
            }
        })
        .collect();
    evaluate(&rows)
}

/// The release gate's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Gate {
    /// The candidate's SNIPS estimate.
    pub candidate: crate::ope::Estimate,
    /// The current policy's SNIPS estimate on the same log.
    pub current: crate::ope::Estimate,
    /// The margin allowed below the current estimate.
    pub margin: f64,
    /// Whether the candidate's lower 95% bound is at least the current estimate − margin.
    pub pass: bool,
}

/// The gate: the candidate passes when the lower bound of its SNIPS CI is at least the
/// current policy's SNIPS estimate minus `margin`.
pub fn gate(candidate: &Evaluation, current: &Evaluation, margin: f64) -> Gate {
    Gate {
        candidate: candidate.snips,
        current: current.snips,
        margin,
        pass: candidate.snips.ci.0 >= current.snips.value - margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_method_shrinks_towards_the_overall_mean() {
        let mk = |offer: &str, reward: f64| LoggedDecision {
            record: DecisionRecord {
                stage: "s".into(),
                chosen: vec![touchpoint::domain::decision::Chosen {
                    offer_id: offer.into(),
                    score: 0.0,
                    selection_probability: 0.5,
                }],
                ..Default::default()
            },
            reward,
        };
        let logged = [mk("a", 1.0), mk("a", 1.0), mk("a", 0.0), mk("b", 0.0)];
        let dm = DirectMethod::fit(&logged);
        assert_eq!(dm.overall, 0.5);
        assert!((dm.q("s", "a") - (2.0 + 0.5) / 4.0).abs() < 1e-12);
        assert!((dm.q("s", "b") - 0.5 / 2.0).abs() < 1e-12);
        assert_eq!(dm.q("s", "c"), 0.5);
    }
}
