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
///
/// Event counts are by role, not by hard-coded event names: the journey's configured
/// transitions say which event types are page views, product views, carts, checkouts and
/// advocacy (`journey::FeatureEvents`).
pub const NEVER_DAYS: f64 = 365.0;

/// The feature names, in vector order (model artifacts name their features with these).
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

/// The length of the feature vector.
pub const N_FEATURES: usize = FEATURE_NAMES.len();

/// A user's feature vector.
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
    let roles = &journey.feature_events;
    let count = |types: &[String]| journey.count_of(state, types) as f64;
    let total: u64 = a.event_counts.values().sum();
    let stages = journey.stages().len().max(2) as f64 - 1.0;
    let rank = journey.rank(journey.stage_of(state)).unwrap_or(0) as f64;
    [
        ln1p(days(a.last_seen, now).unwrap_or(NEVER_DAYS)),
        ln1p(days(a.first_seen, now).unwrap_or(0.0)),
        ln1p(total as f64),
        ln1p(count(&roles.page_views)),
        ln1p(count(&roles.product_views)),
        ln1p(count(&roles.carts)),
        ln1p(count(&roles.checkouts)),
        ln1p(a.purchase_count as f64),
        ln1p(a.monetary_total),
        ln1p(days(a.last_purchase, now).unwrap_or(NEVER_DAYS)),
        f64::from(u8::from(a.purchase_count > 0)),
        f64::from(u8::from(journey.cart_abandoned(state))),
        ln1p(count(&roles.advocacy)),
        rank / stages,
        f64::from(u8::from(journey.is_lapsed(state, now))),
    ]
}

/// A feature declared in the config (`[[features]]`), computed after the built-in ones.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDef {
    /// Its name (artifacts name it; distinct from the built-in names).
    pub name: String,
    /// What it measures.
    pub kind: FeatureKind,
    /// `ln(1 + x)` of the value (for counts and amounts in linear models).
    pub log1p: bool,
}

/// What a configured feature measures.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureKind {
    /// Events of these types: in the last `window_days` days, or ever (no window).
    Count {
        /// Event types.
        events: Vec<String>,
        /// Days back from now (the day of `now` included); None: ever.
        window_days: Option<i64>,
    },
    /// Days since the latest event of these types (`NEVER_DAYS` when none).
    Recency {
        /// Event types.
        events: Vec<String>,
    },
    /// Summed `value` of events of these types in the last `window_days` days.
    Monetary {
        /// Event types.
        events: Vec<String>,
        /// Days back from now (the day of `now` included).
        window_days: i64,
    },
    /// A numeric profile attribute (a boolean is 0/1), `default` when missing or not a number.
    Attribute {
        /// Attribute name.
        attribute: String,
        /// Value when missing.
        default: f64,
    },
    /// 1 when a profile attribute equals `value` (a list attribute: contains it), else 0.
    OneHot {
        /// Attribute name.
        attribute: String,
        /// The value compared with.
        value: String,
    },
    /// A numeric request context value, `default` when missing (the trainer has no request
    /// context: it uses `default`).
    Context {
        /// Context key.
        key: String,
        /// Value when missing.
        default: f64,
    },
    /// 1 when the user is in this stage, else 0.
    Stage {
        /// Stage name.
        stage: String,
    },
}

/// The configured features' values (in config order) for `state` as of `now`, with the
/// request's `context` (empty in the trainer). The one function the server and the trainer
/// share for configured features.
pub fn configured(
    defs: &[FeatureDef],
    state: &UserState,
    context: &std::collections::BTreeMap<String, super::profile::AttrValue>,
    journey: &JourneyDef,
    now: Millis,
) -> Vec<f64> {
    use super::profile::AttrValue;
    let a = &state.aggregates;
    let today = now.div_euclid(MS_PER_DAY);
    let windowed = |events: &[String], window: i64, pick: fn(&(u64, f64)) -> f64| -> f64 {
        events
            .iter()
            .filter_map(|t| a.daily.get(t))
            .flat_map(|days| days.range(today - window + 1..=today).map(|(_, b)| pick(b)))
            .sum()
    };
    let num = |v: Option<&AttrValue>, default: f64| match v {
        Some(AttrValue::Num(x)) if x.is_finite() => *x,
        Some(AttrValue::Bool(b)) => f64::from(u8::from(*b)),
        Some(AttrValue::Str(s)) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()).unwrap_or(default),
        _ => default,
    };
    defs.iter()
        .map(|d| {
            let v = match &d.kind {
                FeatureKind::Count { events, window_days: Some(w) } => windowed(events, *w, |b| b.0 as f64),
                FeatureKind::Count { events, window_days: None } => journey.count_of(state, events) as f64,
                FeatureKind::Recency { events } => {
                    let last = events.iter().filter_map(|t| a.last_by_type.get(t)).max().copied();
                    days(last, now).unwrap_or(NEVER_DAYS)
                }
                FeatureKind::Monetary { events, window_days } => windowed(events, *window_days, |b| b.1),
                FeatureKind::Attribute { attribute, default } => num(state.attributes.get(attribute), *default),
                FeatureKind::OneHot { attribute, value } => {
                    f64::from(u8::from(match state.attributes.get(attribute) {
                        Some(AttrValue::Str(s)) => s == value || s.split(',').any(|p| p.trim() == value),
                        Some(AttrValue::Num(x)) => value.parse::<f64>().is_ok_and(|v| v == *x),
                        Some(AttrValue::Bool(b)) => value == if *b { "true" } else { "false" },
                        None => false,
                    }))
                }
                FeatureKind::Context { key, default } => num(context.get(key), *default),
                FeatureKind::Stage { stage } => f64::from(u8::from(journey.stage_of(state) == stage)),
            };
            if d.log1p { ln1p(v) } else { v }
        })
        .collect()
}

/// Every feature name a model may use: the built-in ones, then the configured ones.
pub fn all_names(defs: &[FeatureDef]) -> Vec<String> {
    FEATURE_NAMES.iter().map(|n| n.to_string()).chain(defs.iter().map(|d| d.name.clone())).collect()
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

    /// A journey with other event names gets the same features from its own events.
    #[test]
    fn features_follow_the_configured_event_names() {
        use crate::domain::journey::Trigger;
        let stages: Vec<String> =
            ["awareness", "consideration", "conversion", "retention", "advocacy"].map(String::from).into();
        let t = |e: &str, to| Trigger { event_type: e.into(), to, min_count: 1 };
        let triggers = vec![
            t("session_start", 0),
            t("view_item", 1),
            t("add_item", 2),
            t("begin_checkout", 2),
            t("order", 3),
            t("write_review", 4),
        ];
        let j = JourneyDef::new(stages, triggers, 30.0, "order".into());
        let mut s = UserState::default();
        let evs = [
            ev("1", "session_start", 10, 0.0),
            ev("2", "view_item", 11, 0.0),
            ev("3", "view_item", 11, 0.0),
            ev("4", "add_item", 12, 0.0),
            ev("5", "begin_checkout", 12, 0.0),
            ev("6", "write_review", 13, 0.0),
        ];
        j.apply_events(&mut s, &evs.iter().collect::<Vec<_>>());
        let f = features(&s, &j, 30 * MS_PER_DAY);
        let by_name = |n: &str| f[FEATURE_NAMES.iter().position(|x| *x == n).unwrap()];
        assert_eq!(by_name("log_page_views"), 1f64.ln_1p());
        assert_eq!(by_name("log_product_views"), 2f64.ln_1p());
        assert_eq!(by_name("log_add_to_cart"), 1f64.ln_1p());
        assert_eq!(by_name("log_checkouts"), 1f64.ln_1p());
        assert_eq!(by_name("log_reviews_referrals"), 1f64.ln_1p());
        assert_eq!(by_name("cart_abandoned"), 1.0);
        // The default journey's roles are exactly the default event names.
        let d = JourneyDef::default_journey().feature_events;
        assert_eq!(
            (d.page_views, d.product_views, d.carts, d.checkouts, d.advocacy),
            (
                vec!["page_view".to_string()],
                vec!["product_view".to_string()],
                vec!["add_to_cart".to_string()],
                vec!["checkout_started".to_string()],
                vec!["review_posted".to_string(), "referral".to_string()]
            )
        );
    }

    /// Each kind of configured feature, with day buckets kept only for the longest window.
    #[test]
    fn configured_features_of_every_kind() {
        use crate::domain::profile::AttrValue;
        let mut j = JourneyDef::default_journey();
        j.tracked.types = ["page_view".to_string(), "purchase".to_string()].into();
        j.tracked.days = 7;
        let ev = |id: &str, kind: &str, day: f64, value: f64| Event {
            event_id: id.into(),
            user_id: "u".into(),
            event_type: kind.into(),
            timestamp: (day * MS_PER_DAY as f64) as Millis,
            channel: String::new(),
            offer_id: String::new(),
            value,
            properties: Default::default(),
        };
        let evs = [
            ev("a", "page_view", 1.2, 0.0),
            ev("b", "page_view", 5.5, 0.0),
            ev("c", "page_view", 9.1, 0.0),
            ev("d", "purchase", 9.0, 30.0),
        ];
        let mut s = UserState::default();
        j.apply_events(&mut s, &evs.iter().collect::<Vec<_>>());
        assert_eq!(s.aggregates.daily["page_view"].keys().copied().collect::<Vec<_>>(), vec![5, 9], "day 1 pruned");
        s.attributes.insert("age".into(), AttrValue::Num(33.0));
        s.attributes.insert("interests".into(), AttrValue::Str("books, music".into()));
        let def = |name: &str, kind: FeatureKind| FeatureDef { name: name.into(), kind, log1p: false };
        let events = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let defs = [
            def("views_7d", FeatureKind::Count { events: events(&["page_view"]), window_days: Some(7) }),
            def("views_1d", FeatureKind::Count { events: events(&["page_view"]), window_days: Some(1) }),
            def("views_ever", FeatureKind::Count { events: events(&["page_view"]), window_days: None }),
            def("since_purchase", FeatureKind::Recency { events: events(&["purchase"]) }),
            def("since_referral", FeatureKind::Recency { events: events(&["referral"]) }),
            def("spend_7d", FeatureKind::Monetary { events: events(&["purchase"]), window_days: 7 }),
            def("age", FeatureKind::Attribute { attribute: "age".into(), default: 1.0 }),
            def("income", FeatureKind::Attribute { attribute: "income".into(), default: 1.0 }),
            def("music", FeatureKind::OneHot { attribute: "interests".into(), value: "music".into() }),
            def("basket", FeatureKind::Context { key: "basket".into(), default: 0.0 }),
            def("retained", FeatureKind::Stage { stage: "retention".into() }),
        ];
        let context = [("basket".to_string(), AttrValue::Num(80.0))].into();
        let now = (9.5 * MS_PER_DAY as f64) as Millis;
        let v = configured(&defs, &s, &context, &j, now);
        assert_eq!(v, vec![2.0, 1.0, 3.0, 0.5, NEVER_DAYS, 30.0, 33.0, 1.0, 1.0, 80.0, 1.0]);
        let logged = FeatureDef { log1p: true, ..defs[0].clone() };
        assert_eq!(configured(&[logged], &s, &context, &j, now), vec![2.0f64.ln_1p()]);
        assert_eq!(all_names(&defs[..1]).last().map(String::as_str), Some("views_7d"));
    }
}
