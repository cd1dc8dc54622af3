//! The decision-log entry (the inputs, the versions, and what was decided) and replay: a
//! logged decision re-run under a policy, with what differs.
use super::{Candidate, Chosen, Decided, DecisionInputs, DecisionQuery, DropReason, decide};
use crate::domain::Millis;
use crate::domain::contact::ContactState;
use crate::domain::features::{FEATURE_NAMES, Features};
use crate::domain::policy::Policy;
use crate::domain::profile::{AttrValue, UserState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The decision-log entry: the inputs (to replay), the versions, and what was decided.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Unique, time-ordered (UUID v7).
    pub decision_id: String,
    /// The user decided for.
    pub user_id: String,
    /// When (also the `now` the decision used).
    pub at: Millis,
    /// The request's channel.
    pub channel: String,
    /// The request's placement (empty: any).
    pub placement: String,
    /// How many offers were asked for (after the default was applied).
    pub limit: usize,
    /// The request's context values.
    #[serde(default)]
    pub context: BTreeMap<String, AttrValue>,
    /// The user's stage.
    pub stage: String,
    /// Whether the user was lapsed.
    pub lapsed: bool,
    /// The segments the user was in.
    #[serde(default)]
    pub segments: Vec<String>,
    /// The content hash of the configuration in force.
    pub config_version: String,
    /// Model name -> version of the models that scored the decision.
    #[serde(default)]
    pub model_versions: BTreeMap<String, String>,
    /// The feature vector, by name.
    #[serde(default)]
    pub features: BTreeMap<String, f64>,
    /// User-level model scores.
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
    /// A fallback answer (store unavailable or too slow).
    pub degraded: bool,
    /// The exploration seed (replay re-uses it).
    pub seed: u64,
    /// The offers returned, in rank order.
    pub chosen: Vec<Chosen>,
    /// Every offer of the stage, kept or dropped with its reason.
    pub candidates: Vec<Candidate>,
    /// Why the user got nothing, when they got nothing.
    #[serde(default)]
    pub suppression: Option<DropReason>,
    /// The profile the decision read (stage history left out).
    #[serde(default)]
    pub state: UserState,
    /// The contacts and cooldown marks the decision read.
    #[serde(default)]
    pub contacts: ContactState,
    /// Experiment id -> variant, for the experiments this decision is in.
    #[serde(default)]
    pub assignments: BTreeMap<String, String>,
}

impl DecisionRecord {
    /// The feature vector keyed by feature name (as logged).
    pub fn features_by_name(x: &Features) -> BTreeMap<String, f64> {
        FEATURE_NAMES.iter().zip(x).map(|(n, v)| (n.to_string(), *v)).collect()
    }

    /// The built-in and the configured features keyed by name (as logged).
    pub fn all_features_by_name(
        x: &Features,
        defs: &[crate::domain::features::FeatureDef],
        extra: &[f64],
    ) -> BTreeMap<String, f64> {
        let mut out = Self::features_by_name(x);
        out.extend(defs.iter().zip(extra).map(|(d, v)| (d.name.clone(), *v)));
        out
    }

    /// Re-runs this decision from its logged inputs under `policy`.
    pub fn replay(&self, policy: &Policy) -> Decided {
        let query = DecisionQuery {
            user_id: self.user_id.clone(),
            channel: self.channel.clone(),
            placement: self.placement.clone(),
            context: self.context.clone(),
            limit: self.limit,
            explain: true,
        };
        // Thompson sampling's posteriors as this decision logged them.
        let posteriors = crate::domain::thompson::Posteriors::from_logged(
            &self.stage,
            self.candidates.iter().map(|c| (c.offer_id.as_str(), &c.scores)),
        );
        let input = DecisionInputs {
            query: &query,
            state: &self.state,
            contacts: &self.contacts,
            now: self.at,
            seed: self.seed,
            posteriors: Some(&posteriors),
        };
        decide(policy, &input)
    }

    /// What differs between this record and a replayed decision; empty when identical.
    pub fn differences(&self, replayed: &Decided) -> Vec<String> {
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
        let verdict = |c: &Candidate| c.dropped.as_ref().map_or_else(|| "kept".to_string(), |d| d.to_string());
        for c in &self.candidates {
            match replayed.candidates.iter().find(|r| r.offer_id == c.offer_id) {
                None => diffs.push(format!("candidate {}: no longer a candidate", c.offer_id)),
                // Reasons compare by their sentence: a record logged before reasons had codes
                // holds the sentence only.
                Some(r) if r.score != c.score || r.scores != c.scores || verdict(r) != verdict(c) => {
                    diffs.push(format!(
                        "candidate {}: logged score {} ({}), now {} ({})",
                        c.offer_id,
                        c.score,
                        verdict(c),
                        r.score,
                        verdict(r)
                    ))
                }
                Some(_) => {}
            }
        }
        for r in replayed.candidates.iter().filter(|r| !self.candidates.iter().any(|c| c.offer_id == r.offer_id)) {
            diffs.push(format!("candidate {}: new candidate", r.offer_id));
        }
        diffs
    }
}
