//! Candidate checks: why an offer of the user's stage is dropped, as a `DropReason` with a
//! stable machine code (API, explanations, metrics) and a sentence for people.
//!
//! The checks run in a fixed order and the first that fails names the reason: holdout,
//! channel, consent for the channel, placement, validity window, the variant's offer set, the channel's contact
//! limit, cooldowns, the offer's cap, then eligibility (a rule) and the priority formula.
use super::overrides::Plan;
use super::scope::score_value;
use crate::domain::arbitration::{Priority, default_priority};
use crate::domain::contact::ContactState;
use crate::domain::offer::Offer;
use crate::domain::policy::{OfferRules, Policy};
use crate::domain::rules;
use crate::domain::{MS_PER_DAY, Millis};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Why a candidate was dropped, or why a user gets nothing at all (`suppression`).
///
/// Serialised with its code in the field `code`; `code()` gives the same string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum DropReason {
    /// The user is in the global holdout.
    GlobalHoldout,
    /// The user is in a holdout variant of an experiment.
    HoldoutVariant {
        /// The experiment.
        experiment: String,
        /// The holdout variant.
        variant: String,
    },
    /// The offer is not for the request's channel.
    WrongChannel,
    /// The offer is not for the request's placement.
    WrongPlacement,
    /// The offer is outside its validity window.
    OutsideWindow,
    /// A variant restricts the offer set, and this offer is not in it.
    NotInOfferSet {
        /// The experiment.
        experiment: String,
        /// The variant with the offer set.
        variant: String,
    },
    /// The user withdrew consent for the channel (unsubscribed): nothing is offered on it.
    ConsentWithdrawn {
        /// The channel.
        channel: String,
    },
    /// The channel's contact limit is reached.
    ContactLimit {
        /// The channel.
        channel: String,
        /// Contacts allowed per window.
        max: u32,
        /// The window.
        window_ms: Millis,
    },
    /// The user dismissed the offer recently.
    CooldownAfterDismiss {
        /// The cooldown.
        window_ms: Millis,
    },
    /// The user accepted the offer recently.
    CooldownAfterAccept {
        /// The cooldown.
        window_ms: Millis,
    },
    /// The offer was shown to the user as often as its cap allows.
    Capped {
        /// Showings allowed per window.
        max: u32,
        /// The window.
        window_ms: Millis,
    },
    /// The offer's eligibility rule is false for the user.
    Ineligible,
    /// The offer's eligibility rule could not be evaluated (e.g. a missing score).
    EligibilityError {
        /// The interpreter's message.
        error: String,
    },
    /// The priority formula could not be evaluated for the offer.
    PriorityError {
        /// The interpreter's message.
        error: String,
    },
    /// Eligible, but ranked below the request's limit.
    BelowLimit,
    /// Suppression only: no offer of the stage survived the checks.
    NoEligibleOffer,
    /// Suppression only: a degraded answer found no fallback offer for the channel.
    NoFallbackOffer,
    /// A reason read from a record logged before reasons had codes: its sentence only
    /// (decoded from a plain string, so older decision logs stay readable and replayable).
    #[serde(untagged)]
    Legacy(String),
}

impl DropReason {
    /// Every code, in declaration order (for tests and documentation).
    pub const CODES: [&'static str; 18] = [
        "global_holdout",
        "holdout_variant",
        "wrong_channel",
        "wrong_placement",
        "outside_window",
        "not_in_offer_set",
        "contact_limit",
        "cooldown_after_dismiss",
        "cooldown_after_accept",
        "capped",
        "ineligible",
        "eligibility_error",
        "priority_error",
        "below_limit",
        "no_eligible_offer",
        "no_fallback_offer",
        "legacy",
        "consent_withdrawn",
    ];

    /// The stable machine code (snake case), the same as the serialised `code` tag.
    pub fn code(&self) -> &'static str {
        let i = match self {
            DropReason::GlobalHoldout => 0,
            DropReason::HoldoutVariant { .. } => 1,
            DropReason::WrongChannel => 2,
            DropReason::WrongPlacement => 3,
            DropReason::OutsideWindow => 4,
            DropReason::NotInOfferSet { .. } => 5,
            DropReason::ContactLimit { .. } => 6,
            DropReason::CooldownAfterDismiss { .. } => 7,
            DropReason::CooldownAfterAccept { .. } => 8,
            DropReason::Capped { .. } => 9,
            DropReason::Ineligible => 10,
            DropReason::EligibilityError { .. } => 11,
            DropReason::PriorityError { .. } => 12,
            DropReason::BelowLimit => 13,
            DropReason::NoEligibleOffer => 14,
            DropReason::NoFallbackOffer => 15,
            DropReason::Legacy(_) => 16,
            DropReason::ConsentWithdrawn { .. } => 17,
        };
        Self::CODES[i]
    }
}

/// A duration in days, whole when it is whole.
fn days(ms: Millis) -> String {
    let d = ms as f64 / MS_PER_DAY as f64;
    if d.fract() == 0.0 { format!("{d:.0}") } else { format!("{d:.2}") }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::GlobalHoldout => write!(f, "global holdout"),
            DropReason::HoldoutVariant { experiment, variant } => {
                write!(f, "holdout: experiment {experiment} variant {variant}")
            }
            DropReason::WrongChannel => write!(f, "wrong channel"),
            DropReason::WrongPlacement => write!(f, "wrong placement"),
            DropReason::OutsideWindow => write!(f, "outside its validity window"),
            DropReason::NotInOfferSet { experiment, variant } => {
                write!(f, "not in the offer set of experiment {experiment} variant {variant}")
            }
            DropReason::ConsentWithdrawn { channel } => write!(f, "consent withdrawn for {channel}"),
            DropReason::ContactLimit { channel, max, window_ms } => {
                write!(f, "contact limit: at most {max} {channel} contact(s) per {} day(s)", days(*window_ms))
            }
            DropReason::CooldownAfterDismiss { window_ms } => {
                write!(f, "cooling down for {} day(s) after a dismiss", days(*window_ms))
            }
            DropReason::CooldownAfterAccept { window_ms } => {
                write!(f, "cooling down for {} day(s) after an accept", days(*window_ms))
            }
            DropReason::Capped { max, window_ms } => {
                write!(f, "capped: shown {max} time(s) in {} day(s)", days(*window_ms))
            }
            DropReason::Ineligible => write!(f, "eligibility rule is false"),
            DropReason::EligibilityError { error } => write!(f, "eligibility rule could not be evaluated: {error}"),
            DropReason::PriorityError { error } => write!(f, "priority could not be evaluated: {error}"),
            DropReason::BelowLimit => write!(f, "ranked below the limit"),
            DropReason::NoEligibleOffer => write!(f, "no eligible offer"),
            DropReason::NoFallbackOffer => write!(f, "degraded: no fallback offer for this channel"),
            DropReason::Legacy(text) => write!(f, "{text}"),
        }
    }
}

/// The first of the channel's contact limits the user has reached, if any.
pub(super) fn channel_limit(
    policy: &Policy,
    channel: &str,
    contacts: &ContactState,
    now: Millis,
) -> Option<DropReason> {
    let limits = policy.contact_limits.get(channel)?;
    limits
        .iter()
        .find(|l| contacts.channel_contacts(channel, now - l.window_ms) >= l.max as usize)
        .map(|l| DropReason::ContactLimit { channel: channel.to_string(), max: l.max, window_ms: l.window_ms })
}

/// What the checks of one decision read.
pub(super) struct CheckInputs<'a> {
    pub channel: &'a str,
    pub placement: &'a str,
    pub now: Millis,
    pub contacts: &'a ContactState,
    pub plan: &'a Plan<'a>,
    /// The channel's contact limit, when reached (the same for every candidate).
    pub channel_limit: Option<&'a DropReason>,
    /// Consent withdrawn for the channel, when it is (the same for every candidate).
    pub consent: Option<&'a DropReason>,
}

/// `ConsentWithdrawn` when the user opted out of `channel`.
pub(super) fn consent(state: &crate::domain::profile::UserState, channel: &str) -> Option<DropReason> {
    state.consent_withdrawn.contains_key(channel).then(|| DropReason::ConsentWithdrawn { channel: channel.to_string() })
}

/// The checks that need no rule evaluation, in order; the first failure is the reason.
pub(super) fn static_checks(c: &CheckInputs, offer: &Offer, rules: &OfferRules) -> Option<DropReason> {
    let now = c.now;
    let cooling =
        |marks: &BTreeMap<String, Millis>, ms: Millis| ms > 0 && marks.get(&offer.id).is_some_and(|t| now < t + ms);
    let placement_ok =
        c.placement.is_empty() || offer.placements.is_empty() || offer.placements.iter().any(|p| p == c.placement);
    c.plan
        .held_out
        .clone()
        .or_else(|| (!offer.channels.iter().any(|ch| ch == c.channel)).then_some(DropReason::WrongChannel))
        .or_else(|| c.consent.cloned())
        .or_else(|| (!placement_ok).then_some(DropReason::WrongPlacement))
        .or_else(|| (!offer.in_window(now)).then_some(DropReason::OutsideWindow))
        .or_else(|| c.plan.offer_sets.iter().find(|(set, _)| !set.contains(&offer.id)).map(|(_, why)| why.clone()))
        .or_else(|| c.channel_limit.cloned())
        .or_else(|| {
            let ms = rules.cooldown_after_dismiss_ms;
            cooling(&c.contacts.dismissed, ms).then_some(DropReason::CooldownAfterDismiss { window_ms: ms })
        })
        .or_else(|| {
            let ms = rules.cooldown_after_accept_ms;
            cooling(&c.contacts.accepted, ms).then_some(DropReason::CooldownAfterAccept { window_ms: ms })
        })
        .or_else(|| {
            let cap = rules.cap?;
            (c.contacts.offer_contacts(&offer.id, now - cap.window_ms) >= cap.max as usize)
                .then_some(DropReason::Capped { max: cap.max, window_ms: cap.window_ms })
        })
}

/// The eligibility rule, then the priority: the candidate's score, or why it is dropped.
/// The interpreter runs only when a rule needs it; the default priority is native.
pub(super) fn score(
    ctx: &cel::Context,
    offer: &Offer,
    rules: &OfferRules,
    priority: &Priority,
    scores: &BTreeMap<String, f64>,
    response: Option<f64>,
) -> Result<f64, DropReason> {
    let purchase = scores.get("purchase").copied();
    let needs_scope = rules.eligibility.is_some() || matches!(priority, Priority::Rule(_));
    if !needs_scope {
        return Ok(default_priority(offer, response, purchase));
    }
    rules::with_offer(ctx, &rules.value, response.map(|r| score_value(scores, Some(r))), |scope| {
        if let Some(rule) = &rules.eligibility {
            match rule.eval_bool(scope) {
                Ok(true) => {}
                Ok(false) => return Err(DropReason::Ineligible),
                Err(e) => return Err(DropReason::EligibilityError { error: e.to_string() }),
            }
        }
        match priority {
            Priority::Rule(rule) => {
                rule.eval_number(scope).map_err(|e| DropReason::PriorityError { error: e.to_string() })
            }
            Priority::Default => Ok(default_priority(offer, response, purchase)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `code()` and the serialised tag agree for every reason, and codes are unique.
    #[test]
    fn codes_match_the_serialised_tag() {
        let s = || "x".to_string();
        let all = [
            DropReason::GlobalHoldout,
            DropReason::HoldoutVariant { experiment: s(), variant: s() },
            DropReason::WrongChannel,
            DropReason::WrongPlacement,
            DropReason::OutsideWindow,
            DropReason::NotInOfferSet { experiment: s(), variant: s() },
            DropReason::ContactLimit { channel: s(), max: 1, window_ms: MS_PER_DAY },
            DropReason::CooldownAfterDismiss { window_ms: MS_PER_DAY },
            DropReason::CooldownAfterAccept { window_ms: MS_PER_DAY },
            DropReason::Capped { max: 2, window_ms: MS_PER_DAY / 2 },
            DropReason::Ineligible,
            DropReason::EligibilityError { error: s() },
            DropReason::PriorityError { error: s() },
            DropReason::BelowLimit,
            DropReason::NoEligibleOffer,
            DropReason::NoFallbackOffer,
            DropReason::ConsentWithdrawn { channel: s() },
        ];
        assert_eq!(all.len() + 1, DropReason::CODES.len(), "every code but legacy");
        for r in &all {
            let json = serde_json::to_value(r).unwrap();
            assert_eq!(json["code"], r.code(), "{r:?}");
            assert_eq!(&serde_json::from_value::<DropReason>(json).unwrap(), r);
        }
        let unique: std::collections::BTreeSet<_> = DropReason::CODES.iter().collect();
        assert_eq!(unique.len(), DropReason::CODES.len());
        assert_eq!(all[9].to_string(), "capped: shown 2 time(s) in 0.50 day(s)");
    }

    /// Records logged before reasons had codes held plain sentences: they still decode.
    #[test]
    fn plain_string_reasons_of_older_records_decode() {
        let old: DropReason = serde_json::from_str("\"wrong channel\"").unwrap();
        assert_eq!(old, DropReason::Legacy("wrong channel".into()));
        assert_eq!((old.code(), old.to_string().as_str()), ("legacy", "wrong channel"));
        let candidate: super::super::Candidate =
            serde_json::from_str(r#"{"offer_id":"a","score":0.0,"dropped":"capped: shown 2 time(s) in 7 day(s)"}"#)
                .unwrap();
        assert_eq!(candidate.dropped.unwrap().to_string(), "capped: shown 2 time(s) in 7 day(s)");
    }
}
