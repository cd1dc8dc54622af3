//! The feature vector of a user: the one definition shared by the server (scoring) and the
//! trainer (fitting), so there is no training/serving skew.
//!
//! Features come from the profile's aggregates and stage only (what the server holds), as of
//! `now`. Counts and amounts are log-transformed (`ln(1 + x)`), which suits linear models.
//! A user never seen gets the values of "no activity": zero counts, and recency and
//! days-since-purchase of `NEVER_DAYS`.
use super::journey::JourneyDef;
use super::profile::UserState;
use super::{MS_PER_DAY, Millis};

/// Days used for "never happened" recencies.
pub const NEVER_DAYS: f64 = 365.0;

pub const FEATURE_NAMES: [&str; 15] = [
    "log_recency_days",
    "log_tenure_days",
    "log_events",
    "log_page_views",
    "log_product_views",
    "log_add_to_cart",
    "log_checkouts",
    "log_purchases",
    "log_monetary",
    "log_days_since_purchase",
    "has_purchased",
    "cart_abandoned",
    "log_reviews_referrals",
    "stage_rank",
    "lapsed",
];

pub const N_FEATURES: usize = FEATURE_NAMES.len();

pub type Features = [f64; N_FEATURES];

fn days(from: Option<Millis>, now: Millis) -> Option<f64> {
    from.map(|t| ((now - t).max(0) as f64) / MS_PER_DAY as f64)
}

fn ln1p(x: f64) -> f64 {
    x.max(0.0).ln_1p()
}

/// The feature vector of `state` as of `now`.
pub fn features(state: &UserState, journey: &JourneyDef, now: Millis) -> Features {
    let a = &state.aggregates;
    let count = |t: &str| a.count(t) as f64;
    let total: u64 = a.event_counts.values().sum();
    let stages = journey.stages().len().max(2) as f64 - 1.0;
    let rank = journey.rank(journey.stage_of(state)).unwrap_or(0) as f64;
    [
        ln1p(days(a.last_seen, now).unwrap_or(NEVER_DAYS)),
        ln1p(days(a.first_seen, now).unwrap_or(0.0)),
        ln1p(total as f64),
        ln1p(count("page_view")),
        ln1p(count("product_view")),
        ln1p(count("add_to_cart")),
        ln1p(count("checkout_started")),
        ln1p(a.purchase_count as f64),
        ln1p(a.monetary_total),
        ln1p(days(a.last_purchase, now).unwrap_or(NEVER_DAYS)),
        f64::from(u8::from(a.purchase_count > 0)),
        f64::from(u8::from(count("add_to_cart") > a.purchase_count as f64)),
        ln1p(count("review_posted") + count("referral")),
        rank / stages,
        f64::from(u8::from(journey.is_lapsed(state, now))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Event;

    fn ev(id: &str, kind: &str, day: i64, value: f64) -> Event {
        Event {
            event_id: id.into(),
            user_id: "u".into(),
            event_type: kind.into(),
            timestamp: day * MS_PER_DAY,
            channel: String::new(),
            offer_id: String::new(),
            value,
            properties: Default::default(),
        }
    }

    #[test]
    fn a_stranger_has_no_activity() {
        let j = JourneyDef::default_journey();
        let f = features(&UserState::default(), &j, 100 * MS_PER_DAY);
        assert_eq!(f[0], NEVER_DAYS.ln_1p());
        assert!(f[1..9].iter().all(|x| *x == 0.0));
        assert_eq!((f[10], f[13], f[14]), (0.0, 0.0, 0.0));
    }

    #[test]
    fn values_follow_the_history() {
        let j = JourneyDef::default_journey();
        let mut s = UserState::default();
        let evs = [
            ev("1", "page_view", 10, 0.0),
            ev("2", "add_to_cart", 11, 0.0),
            ev("3", "purchase", 12, 99.0),
            ev("4", "add_to_cart", 20, 0.0),
        ];
        j.apply_events(&mut s, &evs.iter().collect::<Vec<_>>());
        let f = features(&s, &j, 30 * MS_PER_DAY);
        let by_name = |n: &str| f[FEATURE_NAMES.iter().position(|x| *x == n).unwrap()];
        assert_eq!(by_name("log_recency_days"), 10f64.ln_1p());
        assert_eq!(by_name("log_tenure_days"), 20f64.ln_1p());
        assert_eq!(by_name("log_events"), 4f64.ln_1p());
        assert_eq!(by_name("log_monetary"), 99f64.ln_1p());
        assert_eq!(by_name("log_days_since_purchase"), 18f64.ln_1p());
        assert_eq!((by_name("has_purchased"), by_name("cart_abandoned")), (1.0, 1.0));
        assert_eq!(by_name("stage_rank"), 0.75, "retention is stage 3 of 0..4");
        assert_eq!(by_name("lapsed"), 0.0);
    }
}
