//! A user's profile: typed attributes, event aggregates, current stage and stage history.
use super::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A typed attribute or context value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Num(f64),
    Str(String),
}

/// Counters the journey engine maintains from events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    pub event_counts: BTreeMap<String, u64>,
    pub monetary_total: f64,
    pub purchase_count: u64,
    pub first_seen: Option<Millis>,
    pub last_seen: Option<Millis>,
    pub last_purchase: Option<Millis>,
}

impl Aggregates {
    pub fn count(&self, event_type: &str) -> u64 {
        self.event_counts.get(event_type).copied().unwrap_or(0)
    }
}

/// One move between stages, appended to the user's stage history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub at: Millis,
    pub trigger_event_type: String,
    pub trigger_event_id: String,
}

/// Everything stored about one user. A user never seen has `stage == None` and is
/// treated as being in the journey's first stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    pub attributes: BTreeMap<String, AttrValue>,
    pub aggregates: Aggregates,
    pub stage: Option<String>,
    pub stage_since: Option<Millis>,
    pub transitions: Vec<Transition>,
}

impl UserState {
    /// True when nothing at all is stored for the user.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.stage.is_none() && self.aggregates.first_seen.is_none()
    }
}
