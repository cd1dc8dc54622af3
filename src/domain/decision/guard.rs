//! The atomic re-check a decision's write performs: the caps and contact limits that the
//! chosen offers count against, so concurrent decisions cannot exceed them.
use super::{Decided, DecisionQuery};
use crate::domain::Millis;
use crate::domain::contact::ContactGuard;
use crate::domain::policy::Policy;

/// The guard for a decision's write (empty when nothing shown counts against a limit).
pub fn guard(policy: &Policy, query: &DecisionQuery, decided: &Decided, now: Millis) -> ContactGuard {
    if decided.chosen.is_empty() || policy.longest_window() == 0 {
        // Nothing shown, or nothing configured that counts showings: nothing to check or keep.
        return ContactGuard::default();
    }
    let channel_limits =
        policy.contact_limits.get(&query.channel).into_iter().flatten().map(|l| (l.max, now - l.window_ms)).collect();
    let offer_caps: Vec<(String, u32, Millis)> = decided
        .chosen
        .iter()
        .filter_map(|c| {
            let i = policy.catalogue.index_of(&c.offer_id)?;
            policy.offer_rules[i].cap.map(|cap| (c.offer_id.clone(), cap.max, now - cap.window_ms))
        })
        .collect();
    // Only showings that a limit counts are worth recording: every chosen offer when the
    // channel has a contact limit, else only the capped ones.
    let channel_limited = policy.contact_limits.contains_key(&query.channel);
    let offers: Vec<String> = decided
        .chosen
        .iter()
        .filter(|c| channel_limited || offer_caps.iter().any(|(o, _, _)| *o == c.offer_id))
        .map(|c| c.offer_id.clone())
        .collect();
    if offers.is_empty() {
        return ContactGuard::default();
    }
    ContactGuard {
        channel: query.channel.clone(),
        channel_limits,
        offer_caps,
        offers,
        keep_since: now - policy.longest_window(),
    }
}
