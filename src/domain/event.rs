//! Journey events as the engine sees them, after validation.
use super::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One journey event. `event_id` is the idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Caller-chosen id; an id already stored for the user (within the de-duplication window)
    /// marks a duplicate, which is skipped.
    pub event_id: String,
    /// The user the event belongs to.
    pub user_id: String,
    /// What happened (e.g. `page_view`, `purchase`); the journey's triggers match on it.
    pub event_type: String,
    /// Event time in ms since the epoch.
    pub timestamp: Millis,
    /// The channel it happened on (empty: none given); must be a configured channel.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// The offer it concerns, if any (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub offer_id: String,
    /// Monetary value (a purchase's amount); 0 when not given.
    #[serde(default)]
    pub value: f64,
    /// Free-form string properties, stored with the event and exported, not read by the engine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}
