//! Outcomes: what a user did with an offer of a logged decision (the user's reaction; the
//! result of deciding is `decision::Decided`).
use super::Millis;
use serde::{Deserialize, Serialize};

/// An outcome reported for an offer of a logged decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// The decision the offer was part of.
    pub decision_id: String,
    /// The user the decision was for.
    pub user_id: String,
    /// The offer the user reacted to.
    pub offer_id: String,
    /// What the user did.
    pub outcome: OutcomeKind,
    /// Money attached to a conversion (0 otherwise).
    pub value: f64,
    /// When it happened.
    pub at: Millis,
}

/// The kinds of reaction to an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The offer was shown.
    Impression,
    /// The user clicked it (a visit for experiment results).
    Click,
    /// The user dismissed it (starts the offer's dismiss cooldown).
    Dismiss,
    /// The user accepted it (starts the offer's accept cooldown).
    Accept,
    /// The user bought through it, with a value.
    Conversion,
}

impl OutcomeKind {
    /// The stable lower-case name (logs, metrics, exports).
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Impression => "impression",
            OutcomeKind::Click => "click",
            OutcomeKind::Dismiss => "dismiss",
            OutcomeKind::Accept => "accept",
            OutcomeKind::Conversion => "conversion",
        }
    }
}
