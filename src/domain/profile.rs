//! A user's profile: typed attributes, event aggregates, current stage and stage history.
use super::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A typed attribute or context value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// A boolean.
    Bool(bool),
    /// A number (every number is a double).
    Num(f64),
    /// A string.
    Str(String),
}

/// Counters the journey engine maintains from events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    /// Events seen per event type (types past `MAX_EVENT_TYPES_PER_USER` count as `other`).
    pub event_counts: BTreeMap<String, u64>,
    /// Sum of the values of purchase events.
    pub monetary_total: f64,
    /// Number of purchase events.
    pub purchase_count: u64,
    /// Earliest event time (ms since the epoch); None before any event.
    pub first_seen: Option<Millis>,
    /// Latest event time (ms since the epoch); None before any event.
    pub last_seen: Option<Millis>,
    /// Latest purchase time (ms since the epoch); None before any purchase.
    pub last_purchase: Option<Millis>,
    /// Per event type the configured features count in windows (`JourneyDef::tracked`):
    /// UTC day number -> (events, summed value), the last `tracked.days` days only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub daily: BTreeMap<String, BTreeMap<i64, (u64, f64)>>,
    /// Per tracked event type, its latest time (recency features).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_by_type: BTreeMap<String, Millis>,
}

/// One event type's day buckets as text: `day:count:value` joined by `,` (the profile hash
/// field `d:<type>` and the decision record keep them so).
pub fn encode_daily(days: &BTreeMap<i64, (u64, f64)>) -> String {
    days.iter().map(|(d, (n, v))| format!("{d}:{n}:{v}")).collect::<Vec<_>>().join(",")
}

/// The inverse of [`encode_daily`]; None when it does not parse.
pub fn decode_daily(s: &str) -> Option<BTreeMap<i64, (u64, f64)>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut it = p.split(':');
            Some((it.next()?.parse().ok()?, (it.next()?.parse().ok()?, it.next()?.parse().ok()?)))
        })
        .collect()
}

impl Aggregates {
    /// Events seen of `event_type` (0 if none).
    pub fn count(&self, event_type: &str) -> u64 {
        self.event_counts.get(event_type).copied().unwrap_or(0)
    }
}

/// One move between stages, appended to the user's stage history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// The stage left (empty for the user's first transition).
    pub from: String,
    /// The stage entered.
    pub to: String,
    /// When (ms since the epoch; never earlier than the previous transition).
    pub at: Millis,
    /// Type of the event that caused it.
    pub trigger_event_type: String,
    /// Id of the event that caused it.
    pub trigger_event_id: String,
}

/// Everything stored about one user. A user never seen has `stage == None` and is
/// treated as being in the journey's first stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// The user's typed attributes, by name.
    pub attributes: BTreeMap<String, AttrValue>,
    /// Counters kept from the user's events.
    pub aggregates: Aggregates,
    /// The current stage; None for a user no event has moved yet.
    pub stage: Option<String>,
    /// When the current stage was entered (ms since the epoch).
    pub stage_since: Option<Millis>,
    /// Stage history, oldest first.
    pub transitions: Vec<Transition>,
    /// Channels the user withdrew consent for (opted out of), with when: no offer is made
    /// on them (`DropReason::ConsentWithdrawn`). Absent: consent not withdrawn.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub consent_withdrawn: BTreeMap<String, Millis>,
}

impl UserState {
    /// Records a consent change for `channel` at `at`: a withdrawal keeps the latest time; a
    /// grant lifts a withdrawal made at or before `at` (an older grant arriving late does not
    /// lift a newer withdrawal).
    pub fn set_consent(&mut self, channel: &str, granted: bool, at: Millis) {
        match (granted, self.consent_withdrawn.get(channel).copied()) {
            (false, Some(t)) => {
                self.consent_withdrawn.insert(channel.to_string(), t.max(at));
            }
            (false, None) => {
                self.consent_withdrawn.insert(channel.to_string(), at);
            }
            (true, Some(t)) if t <= at => {
                self.consent_withdrawn.remove(channel);
            }
            (true, _) => {}
        }
    }
}

impl UserState {
    /// True when nothing at all is stored for the user.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty() && self.stage.is_none() && self.aggregates.first_seen.is_none()
    }
}
