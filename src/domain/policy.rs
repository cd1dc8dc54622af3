//! The compiled decision policy: everything a decision needs from configuration and models,
//! built once at load (rules compiled, offer values precomputed) and shared read-only.
use super::Millis;
use super::arbitration::{Exploration, Priority};
use super::contact::Limit;
use super::journey::JourneyDef;
use super::model::BoundModel;
use super::offer::Catalogue;
use super::rules::Rule;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A named user segment: the users for whom its rule holds (reported with decisions).
#[derive(Debug, Clone)]
pub struct Segment {
    /// Segment id.
    pub id: String,
    /// demographic, behavioural, psychographic, geographic, or anything else (reporting only).
    pub kind: String,
    /// CEL boolean rule over the profile and context (never `offer`).
    pub rule: Rule,
}

/// Per-offer rules and limits, parallel to the catalogue's offers.
#[derive(Debug, Clone)]
pub struct OfferRules {
    /// CEL rule: the offer is a candidate only when it holds (None: always).
    pub eligibility: Option<Rule>,
    /// At most `max` showings per window to a user, on any channel.
    pub cap: Option<Limit>,
    /// After the user dismisses the offer, it is not shown for this long (ms; 0: no cooldown).
    pub cooldown_after_dismiss_ms: Millis,
    /// After the user accepts the offer, it is not shown for this long (ms; 0: no cooldown).
    pub cooldown_after_accept_ms: Millis,
    /// The offer as the CEL `offer` variable, prepared once.
    pub value: super::rules::Prepared,
}

/// The loaded models; a slot without a model is None (its score is absent to rules).
#[derive(Debug, Clone, Default)]
pub struct Models {
    /// The churn model.
    pub churn: Option<Arc<BoundModel>>,
    /// The purchase model.
    pub purchase: Option<Arc<BoundModel>>,
    /// offer id -> response model
    pub response: BTreeMap<String, Arc<BoundModel>>,
}

impl Models {
    /// The model slot a registry name refers to (`churn`, `purchase`, `response:<offer>`).
    pub fn get(&self, name: &str) -> Option<&Arc<BoundModel>> {
        match name {
            "churn" => self.churn.as_ref(),
            "purchase" => self.purchase.as_ref(),
            other => other.strip_prefix("response:").and_then(|o| self.response.get(o)),
        }
    }

    /// Fills the slot a registry name refers to; a name that is no slot is ignored.
    pub fn set(&mut self, name: &str, model: Arc<BoundModel>) {
        match name {
            "churn" => self.churn = Some(model),
            "purchase" => self.purchase = Some(model),
            other => {
                if let Some(o) = other.strip_prefix("response:") {
                    self.response.insert(o.to_string(), model);
                }
            }
        }
    }

    /// Model name -> version, for responses, logs and status.
    pub fn versions(&self) -> BTreeMap<String, String> {
        let named = [("churn", &self.churn), ("purchase", &self.purchase)];
        named
            .into_iter()
            .filter_map(|(n, m)| m.as_ref().map(|m| (n.to_string(), m.version().to_string())))
            .chain(self.response.iter().map(|(o, m)| (format!("response:{o}"), m.version().to_string())))
            .collect()
    }
}

/// A degraded answer's offers for a channel (and optionally a stage).
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// The channel it answers for.
    pub channel: String,
    /// The stage it is for; None: users whose stage is unknown.
    pub stage: Option<String>,
    /// Offer ids, in order.
    pub offers: Vec<String>,
}

/// Everything a decision reads from the configuration, compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Stages, triggers, lapse and purchase settings.
    pub journey: JourneyDef,
    /// The offers.
    pub catalogue: Catalogue,
    /// Per-offer rules and limits, parallel to `catalogue.offers()`.
    pub offer_rules: Vec<OfferRules>,
    /// Segments, in config order.
    pub segments: Vec<Segment>,
    /// How candidates are ranked (variants may override it).
    pub priority: Priority,
    /// How often a random candidate replaces the best (variants may override it).
    pub exploration: Exploration,
    /// channel -> limits
    pub contact_limits: HashMap<String, Vec<Limit>>,
    /// The churn, purchase and response models.
    pub models: Models,
    /// The offers of a degraded answer, per channel (and stage).
    pub fallbacks: Vec<Fallback>,
    /// Channels a request or event may name.
    pub channels: Vec<String>,
    /// Offers returned when a request's `limit` is 0 (1..=`MAX_LIMIT`).
    pub default_limit: u32,
    /// Experiments, in config order (later ones win overlapping overrides).
    pub experiments: Vec<super::experiment::Experiment>,
    /// The global holdout; None when disabled.
    pub holdout: Option<super::experiment::GlobalHoldout>,
    /// Event types that count as a visit for experiment results.
    pub visit_events: Vec<String>,
    /// `[[kpis]]`: targets for stage metrics.
    pub kpis: Vec<super::analytics::Kpi>,
    /// `[[features]]`: computed after the built-in features (`features::configured`).
    pub features: Vec<super::features::FeatureDef>,
    /// The profile attributes the policy reads (`Policy::read_attributes`; None: any may be
    /// read). A decision logs only these, so its log entry is bounded by the config, not by
    /// the profile.
    pub attributes_read: Option<std::collections::BTreeSet<String>>,
}

impl Policy {
    /// The profile attributes the rules (segments, eligibility, priorities, experiment
    /// targeting and variant priorities) and the configured features read; None when a rule
    /// uses `profile` whole (`Rule::profile_fields`).
    pub fn read_attributes(&self) -> Option<std::collections::BTreeSet<String>> {
        use super::features::FeatureKind;
        let mut rules: Vec<&Rule> = self.segments.iter().map(|s| &s.rule).collect();
        rules.extend(self.offer_rules.iter().filter_map(|o| o.eligibility.as_ref()));
        if let super::arbitration::Priority::Rule(r) = &self.priority {
            rules.push(r);
        }
        for e in &self.experiments {
            rules.extend(&e.targeting);
            rules.extend(e.variants.iter().filter_map(|v| v.overrides.priority.as_ref()));
        }
        let mut out = std::collections::BTreeSet::new();
        for r in rules {
            out.extend(r.profile_fields()?);
        }
        for f in &self.features {
            if let FeatureKind::Attribute { attribute, .. } | FeatureKind::OneHot { attribute, .. } = &f.kind {
                out.insert(attribute.clone());
            }
        }
        Some(out)
    }

    /// Drops the attributes the policy does not read (`attributes_read`).
    pub fn keep_attributes_read(&self, attributes: &mut std::collections::BTreeMap<String, super::profile::AttrValue>) {
        if let Some(read) = &self.attributes_read {
            attributes.retain(|k, _| read.contains(k));
        }
    }

    /// Whether the exploration policy, or any experiment variant's, is Thompson sampling.
    pub fn uses_thompson(&self) -> bool {
        let thompson = |e: &Exploration| matches!(e, Exploration::Thompson { .. });
        thompson(&self.exploration)
            || self
                .experiments
                .iter()
                .flat_map(|x| &x.variants)
                .any(|v| v.overrides.exploration.as_ref().is_some_and(thompson))
    }

    /// Every experiment id with its attribution window (the global holdout included).
    pub fn attribution_windows(&self) -> Vec<(String, Millis)> {
        let mut w: Vec<(String, Millis)> = self.experiments.iter().map(|e| (e.id.clone(), e.attribution_ms)).collect();
        if let Some(h) = &self.holdout {
            w.push((super::experiment::GLOBAL_HOLDOUT.to_string(), h.attribution_ms));
        }
        w
    }

    /// The longest window any cap or contact limit looks back over.
    pub fn longest_window(&self) -> Millis {
        let caps = self.offer_rules.iter().filter_map(|r| r.cap.map(|c| c.window_ms));
        let limits = self.contact_limits.values().flatten().map(|l| l.window_ms);
        caps.chain(limits).max().unwrap_or(0)
    }

    /// The fallback for a channel when the user's stage is unknown: the entry without a stage,
    /// else the first stage's.
    pub fn fallback(&self, channel: &str) -> Option<&Fallback> {
        let of_channel = || self.fallbacks.iter().filter(move |f| f.channel == channel);
        of_channel()
            .find(|f| f.stage.is_none())
            .or_else(|| of_channel().find(|f| f.stage.as_deref() == Some(self.journey.first_stage())))
    }
}
