//! Contact history: what a user was shown (for per-offer caps and per-channel contact
//! limits) and what they dismissed or accepted (for cooldowns).
use super::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// One offer shown on a channel by a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// When the offer was shown (ms since the epoch).
    pub at: Millis,
    /// The decision that showed it; one decision is one contact on its channel.
    pub decision_id: String,
    /// The channel it was shown on.
    pub channel: String,
    /// The offer shown.
    pub offer_id: String,
}

/// A user's contact history: recent showings plus the last dismiss and accept per offer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContactState {
    /// Contacts inside the longest configured window, oldest first.
    pub contacts: Vec<Contact>,
    /// offer id -> last dismiss time
    pub dismissed: BTreeMap<String, Millis>,
    /// offer id -> last accept time
    pub accepted: BTreeMap<String, Millis>,
}

/// At most `max` contacts per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// Most contacts allowed inside the window.
    pub max: u32,
    /// Length of the sliding window, in milliseconds.
    pub window_ms: Millis,
}

impl ContactState {
    /// Decisions that contacted the user on `channel` since `since` (a decision showing two
    /// offers in one e-mail is one contact).
    pub fn channel_contacts(&self, channel: &str, since: Millis) -> usize {
        self.contacts
            .iter()
            .filter(|c| c.at >= since && c.channel == channel)
            .map(|c| c.decision_id.as_str())
            .collect::<HashSet<_>>()
            .len()
    }

    /// Times `offer` was shown since `since`, on any channel.
    pub fn offer_contacts(&self, offer: &str, since: Millis) -> usize {
        self.contacts.iter().filter(|c| c.at >= since && c.offer_id == offer).count()
    }
}

/// What a decision's write must re-check atomically before it records its contacts, so
/// concurrent decisions for one user cannot together exceed a cap or a contact limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactGuard {
    /// The channel the decision contacts the user on.
    pub channel: String,
    /// (max, since) per channel limit.
    pub channel_limits: Vec<(u32, Millis)>,
    /// (offer, max, since) per capped chosen offer.
    pub offer_caps: Vec<(String, u32, Millis)>,
    /// The chosen offers, recorded as contacts when the guard holds.
    pub offers: Vec<String>,
    /// Contacts older than this are no longer needed by any window.
    pub keep_since: Millis,
}

impl ContactGuard {
    /// Would recording one more contact break a limit? The reference for every store.
    pub fn holds(&self, state: &ContactState) -> bool {
        self.channel_limits.iter().all(|(max, since)| state.channel_contacts(&self.channel, *since) < *max as usize)
            && self.offer_caps.iter().all(|(offer, max, since)| state.offer_contacts(offer, *since) < *max as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(at: Millis, d: &str, ch: &str, o: &str) -> Contact {
        Contact { at, decision_id: d.into(), channel: ch.into(), offer_id: o.into() }
    }

    #[test]
    fn counts_decisions_per_channel_and_offers_per_offer() {
        let s = ContactState {
            contacts: vec![
                c(10, "d1", "email", "a"),
                c(10, "d1", "email", "b"),
                c(20, "d2", "web", "a"),
                c(30, "d3", "email", "a"),
            ],
            ..Default::default()
        };
        assert_eq!(s.channel_contacts("email", 0), 2);
        assert_eq!(s.channel_contacts("email", 11), 1);
        assert_eq!(s.offer_contacts("a", 0), 3);
        assert_eq!(s.offer_contacts("a", 25), 1);
        let guard = |limits: Vec<(u32, Millis)>, caps: Vec<(String, u32, Millis)>| ContactGuard {
            channel: "email".into(),
            channel_limits: limits,
            offer_caps: caps,
            offers: vec!["a".into()],
            keep_since: 0,
        };
        assert!(guard(vec![(3, 0)], vec![]).holds(&s));
        assert!(!guard(vec![(2, 0)], vec![]).holds(&s));
        assert!(guard(vec![(2, 11)], vec![("a".into(), 2, 25)]).holds(&s));
        assert!(!guard(vec![], vec![("a".into(), 3, 0)]).holds(&s));
    }
}
