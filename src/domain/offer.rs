//! The offer catalogue: what can be shown, at which stages, on which channels.
use super::Millis;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: String,
    pub name: String,
    pub stages: Vec<String>,
    pub channels: Vec<String>,
    /// Placements the offer may fill; empty means any.
    pub placements: Vec<String>,
    pub content_ref: String,
    /// Static priority: the ranking before models and arbitration rules exist.
    pub priority: f64,
    pub value: f64,
    pub cost: f64,
    pub weight: f64,
    pub valid_from: Option<Millis>,
    pub valid_until: Option<Millis>,
}

impl Offer {
    pub fn in_window(&self, now: Millis) -> bool {
        self.valid_from.is_none_or(|t| now >= t) && self.valid_until.is_none_or(|t| now < t)
    }
}

/// Offers indexed by stage, so a decision looks at its stage's offers only.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    offers: Vec<Offer>,
    by_stage: HashMap<String, Vec<usize>>,
}

impl Catalogue {
    pub fn new(offers: Vec<Offer>) -> Self {
        let mut by_stage: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, o) in offers.iter().enumerate() {
            for s in &o.stages {
                by_stage.entry(s.clone()).or_default().push(i);
            }
        }
        Self { offers, by_stage }
    }

    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    pub fn get(&self, id: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.id == id)
    }

    /// Every offer of a stage, in catalogue order.
    pub fn for_stage(&self, stage: &str) -> impl Iterator<Item = &Offer> {
        self.by_stage.get(stage).into_iter().flatten().map(|&i| &self.offers[i])
    }
}
