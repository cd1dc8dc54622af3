//! Journey events as the engine sees them, after validation.
use super::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One journey event. `event_id` is the idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub user_id: String,
    pub event_type: String,
    /// Event time in ms since the epoch.
    pub timestamp: Millis,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub offer_id: String,
    #[serde(default)]
    pub value: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}
