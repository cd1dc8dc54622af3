//! The offer catalogue: what can be shown, at which stages, on which channels.
use super::Millis;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One offer of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Unique id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Journey stages whose users may get the offer.
    pub stages: Vec<String>,
    /// Channels it may be shown on.
    pub channels: Vec<String>,
    /// Placements the offer may fill; empty means any.
    pub placements: Vec<String>,
    /// Reference to the content, returned with the decision.
    pub content_ref: String,
    /// Static priority: the ranking before models and arbitration rules exist.
    pub priority: f64,
    /// Value of an acceptance (used by the default priority with a model).
    pub value: f64,
    /// Cost of a showing (readable by rules as `offer.cost`).
    pub cost: f64,
    /// Business weight multiplying the priority (not negative).
    pub weight: f64,
    /// From when it may be shown (ms since the epoch, inclusive); None: always.
    pub valid_from: Option<Millis>,
    /// Until when it may be shown (ms since the epoch, exclusive); None: always.
    pub valid_until: Option<Millis>,
}

impl Offer {
    /// Whether `now` is inside `[valid_from, valid_until)`.
    pub fn in_window(&self, now: Millis) -> bool {
        self.valid_from.is_none_or(|t| now >= t) && self.valid_until.is_none_or(|t| now < t)
    }
}

/// Offers indexed by stage, so a decision looks at its stage's offers only.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    offers: Vec<Offer>,
    by_stage: HashMap<String, Vec<usize>>,
    by_id: HashMap<String, usize>,
}

impl Catalogue {
    /// Indexes `offers` by stage and by id (ids are unique; the config checks that).
    pub fn new(offers: Vec<Offer>) -> Self {
        let mut by_stage: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, o) in offers.iter().enumerate() {
            for s in &o.stages {
                by_stage.entry(s.clone()).or_default().push(i);
            }
        }
        let by_id = offers.iter().enumerate().map(|(i, o)| (o.id.clone(), i)).collect();
        Self { offers, by_stage, by_id }
    }

    /// Every offer, in catalogue order.
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// The offer with this id.
    pub fn get(&self, id: &str) -> Option<&Offer> {
        self.index_of(id).map(|i| &self.offers[i])
    }

    /// The position of the offer with this id in `offers()`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Positions of a stage's offers, in catalogue order.
    pub fn stage_indices(&self, stage: &str) -> &[usize] {
        self.by_stage.get(stage).map_or(&[], Vec::as_slice)
    }

    /// Every offer of a stage, in catalogue order.
    pub fn for_stage(&self, stage: &str) -> impl Iterator<Item = &Offer> {
        self.stage_indices(stage).iter().map(|&i| &self.offers[i])
    }
}
