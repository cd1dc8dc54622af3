//! Labelled examples from a journey log: features as of a cutoff (the server's features
//! module, over events up to the cutoff only) and labels from the horizon after it.
//!
//! Population: users with at least one event at or before the cutoff.
//! - `churn`: no event at all in (cutoff, cutoff + horizon].
//! - `purchase`: at least one purchase event in (cutoff, cutoff + horizon].
use ndarray::Array2;
use std::collections::HashMap;
use touchpoint::domain::Millis;
use touchpoint::domain::event::Event;
use touchpoint::domain::features::{FeatureDef, N_FEATURES, configured, features};
use touchpoint::domain::journey::JourneyDef;
use touchpoint::domain::profile::UserState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Churn,
    Purchase,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Churn => "churn",
            Target::Purchase => "purchase",
        }
    }
}

pub struct Examples {
    pub users: Vec<String>,
    pub x: Array2<f64>,
    pub y: Vec<bool>,
}

/// Folds a user's events up to `cutoff` through the journey engine: the state the server
/// would hold at that moment.
pub fn state_at(journey: &JourneyDef, events: &[&Event], cutoff: Millis) -> UserState {
    let mut state = UserState::default();
    let before: Vec<&Event> = events.iter().copied().filter(|e| e.timestamp <= cutoff).collect();
    journey.apply_events(&mut state, &before);
    state
}

/// One row per user active before `cutoff`: the built-in features, then the configured ones
/// (`defs`, computed by the server's own `features::configured`, with no request context),
/// as of `cutoff`; the label from the events in the horizon after it.
pub fn build(
    events: &[Event],
    journey: &JourneyDef,
    defs: &[FeatureDef],
    target: Target,
    cutoff: Millis,
    horizon_ms: Millis,
) -> Examples {
    let mut by_user: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        by_user.entry(e.user_id.as_str()).or_default().push(e);
    }
    let mut users: Vec<&str> =
        by_user.iter().filter(|(_, evs)| evs.iter().any(|e| e.timestamp <= cutoff)).map(|(u, _)| *u).collect();
    users.sort_unstable();
    let mut x = Array2::<f64>::zeros((users.len(), N_FEATURES + defs.len()));
    let no_context = std::collections::BTreeMap::new();
    let mut y = Vec::with_capacity(users.len());
    for (row, user) in users.iter().enumerate() {
        let evs = &by_user[user];
        let state = state_at(journey, evs, cutoff);
        let mut values = features(&state, journey, cutoff).to_vec();
        values.extend(configured(defs, &state, &no_context, journey, cutoff));
        x.row_mut(row).assign(&ndarray::ArrayView1::from(&values));
        let after = evs.iter().filter(|e| e.timestamp > cutoff && e.timestamp <= cutoff + horizon_ms);
        y.push(match target {
            Target::Churn => after.count() == 0,
            Target::Purchase => after.filter(|e| e.event_type == journey.purchase_event).count() > 0,
        });
    }
    Examples { users: users.into_iter().map(String::from).collect(), x, y }
}

#[cfg(test)]
mod tests {
    use super::*;
    use touchpoint::domain::MS_PER_DAY;

    fn ev(user: &str, id: &str, kind: &str, day: i64) -> Event {
        Event {
            event_id: id.into(),
            user_id: user.into(),
            event_type: kind.into(),
            timestamp: day * MS_PER_DAY,
            channel: String::new(),
            offer_id: String::new(),
            value: 10.0,
            properties: Default::default(),
        }
    }

    fn base() -> Vec<Event> {
        vec![
            ev("a", "a1", "page_view", 1),
            ev("a", "a2", "purchase", 5),
            ev("a", "a3", "purchase", 12), // after the cutoff: a purchased, did not churn
            ev("b", "b1", "page_view", 2),
            ev("b", "b2", "page_view", 11), // active, no purchase
            ev("c", "c1", "page_view", 3),  // churned
            ev("d", "d1", "page_view", 15), // first seen after the cutoff: not in the population
        ]
    }

    fn check(target: Target, expected: &[(&str, bool)]) {
        let j = JourneyDef::default_journey();
        let ex = build(&base(), &j, &[], target, 10 * MS_PER_DAY, 10 * MS_PER_DAY);
        let got: Vec<(&str, bool)> = ex.users.iter().map(String::as_str).zip(ex.y.iter().copied()).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn labels() {
        check(Target::Churn, &[("a", false), ("b", false), ("c", true)]);
        check(Target::Purchase, &[("a", true), ("b", false), ("c", false)]);
    }

    /// No event after the cutoff changes any feature: appending arbitrary future events to
    /// the log leaves the feature matrix identical.
    #[test]
    fn no_event_after_the_cutoff_changes_a_feature() {
        let j = JourneyDef::default_journey();
        let cutoff = 10 * MS_PER_DAY;
        let before = build(&base(), &j, &[], Target::Purchase, cutoff, 10 * MS_PER_DAY);
        let mut more = base();
        for (i, kind) in ["purchase", "review_posted", "add_to_cart", "referral"].iter().enumerate() {
            for user in ["a", "b", "c"] {
                more.push(ev(user, &format!("late-{user}-{i}"), kind, 10 + i as i64 + 1));
            }
        }
        let after = build(&more, &j, &[], Target::Purchase, cutoff, 10 * MS_PER_DAY);
        assert_eq!(before.users, after.users);
        assert_eq!(before.x, after.x);
        assert_ne!(before.y, after.y, "labels do see the future; that is their job");
    }
}
