//! The journey engine: stages, event-triggered forward-only transitions, aggregates, lapse.
//!
//! Out-of-order events: aggregates are order-free (counts and sums add up, first/last seen
//! are min/max), so a late event updates them exactly as an in-order one would. Stages only
//! move forward: a late event whose target stage is at or behind the current one moves
//! nothing. A late event that does move the stage forward gets a transition time clamped to
//! no earlier than the previous transition, so the stage history stays in time order.
use super::event::Event;
use super::limits::MAX_EVENT_TYPES_PER_USER;
use super::profile::{Transition, UserState};
use super::{MS_PER_DAY, Millis};
use std::collections::HashMap;

/// A transition rule: an event of `event_type` moves the user to `to`, optionally only
/// from the `min_count`-th such event on (e.g. the third purchase moves to advocacy).
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The event type that fires the rule.
    pub event_type: String,
    /// The target stage, as an index into the journey's stages.
    pub to: usize,
    /// The rule fires from the user's `min_count`-th event of this type on (1: the first).
    pub min_count: u64,
}

/// Which of the journey's event types feed the role-named features (`log_page_views`,
/// `log_product_views`, `log_add_to_cart`, `log_checkouts`, `log_reviews_referrals`,
/// `cart_abandoned`), so a journey whose events are called `view_item` or `begin_checkout`
/// gets the same features as the default one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeatureEvents {
    /// Events that move a user to the first stage (default `page_view`).
    pub page_views: Vec<String>,
    /// Events that move a user to the second stage (default `product_view`).
    pub product_views: Vec<String>,
    /// The first event type listed as moving a user to the third stage (default `add_to_cart`).
    pub carts: Vec<String>,
    /// The other event types that move a user to the third stage (default `checkout_started`).
    pub checkouts: Vec<String>,
    /// Events that move a user to the last stage, when there are at least four stages
    /// (default `review_posted`, `referral`).
    pub advocacy: Vec<String>,
}

impl FeatureEvents {
    /// The roles read off the transitions, by the rank of the stage they lead to; purchase
    /// events and triggers that need several events (`min_count > 1`) are left out (purchases
    /// have features of their own). For the default journey this gives exactly the default
    /// event names.
    pub fn from_triggers(n_stages: usize, triggers: &[Trigger], purchase_event: &str) -> Self {
        let mut roles = FeatureEvents::default();
        for t in triggers.iter().filter(|t| t.min_count <= 1 && t.event_type != purchase_event) {
            let role = match t.to {
                0 => &mut roles.page_views,
                1 => &mut roles.product_views,
                2 if roles.carts.is_empty() || roles.carts.contains(&t.event_type) => &mut roles.carts,
                2 => &mut roles.checkouts,
                r if r + 1 == n_stages && n_stages >= 4 => &mut roles.advocacy,
                _ => continue,
            };
            if !role.contains(&t.event_type) {
                role.push(t.event_type.clone());
            }
        }
        roles
    }
}

/// A journey: ordered stages, the transitions between them, lapse and purchase settings.
#[derive(Debug, Clone, PartialEq)]
pub struct JourneyDef {
    stages: Vec<String>,
    triggers: HashMap<String, Vec<Trigger>>,
    /// Inactivity after which a user counts as lapsed (0 disables).
    pub lapse_after_ms: Millis,
    /// The event type that counts as a purchase (monetary value, purchase count).
    pub purchase_event: String,
    /// The event types behind the role-named features.
    pub feature_events: FeatureEvents,
    /// The event type that withdraws consent for the channel in its `channel` property.
    pub unsubscribe_event: String,
    /// The event type that grants consent (again) for the channel in its `channel` property.
    pub subscribe_event: String,
    /// The event types the configured features count in windows or by recency, and for how
    /// many days (set from `[[features]]`; empty: nothing extra kept).
    pub tracked: Tracked,
}

/// What the profile keeps per event type for configured features.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracked {
    /// Event types with day buckets and a latest time.
    pub types: std::collections::BTreeSet<String>,
    /// Day buckets kept (the longest configured window).
    pub days: i64,
}

/// The event property naming the channel of a consent event.
pub const CONSENT_CHANNEL_PROPERTY: &str = "channel";

impl JourneyDef {
    /// `triggers` name stages by index into `stages` (the config layer resolves names).
    /// The feature roles are read off the transitions (`FeatureEvents::from_triggers`).
    pub fn new(stages: Vec<String>, triggers: Vec<Trigger>, lapse_after_days: f64, purchase_event: String) -> Self {
        let feature_events = FeatureEvents::from_triggers(stages.len(), &triggers, &purchase_event);
        let mut by_type: HashMap<String, Vec<Trigger>> = HashMap::new();
        for t in triggers {
            by_type.entry(t.event_type.clone()).or_default().push(t);
        }
        Self {
            stages,
            triggers: by_type,
            lapse_after_ms: (lapse_after_days * MS_PER_DAY as f64) as Millis,
            purchase_event,
            feature_events,
            unsubscribe_event: "unsubscribe".into(),
            subscribe_event: "subscribe".into(),
            tracked: Tracked::default(),
        }
    }

    /// How many of the user's events have one of `types`.
    pub fn count_of(&self, state: &UserState, types: &[String]) -> u64 {
        types.iter().map(|t| state.aggregates.count(t)).sum()
    }

    /// More carts than purchases: something was left in a cart.
    pub fn cart_abandoned(&self, state: &UserState) -> bool {
        self.count_of(state, &self.feature_events.carts) > state.aggregates.purchase_count
    }

    /// The default five-stage journey: awareness, consideration, conversion, retention, advocacy.
    pub fn default_journey() -> Self {
        let stages: Vec<String> =
            ["awareness", "consideration", "conversion", "retention", "advocacy"].map(String::from).into();
        let t = |e: &str, to| Trigger { event_type: e.into(), to, min_count: 1 };
        let triggers = vec![
            t("page_view", 0),
            t("product_view", 1),
            t("add_to_cart", 2),
            t("checkout_started", 2),
            t("purchase", 3),
            t("review_posted", 4),
            t("referral", 4),
        ];
        Self::new(stages, triggers, 30.0, "purchase".into())
    }

    /// Stage names, in journey order.
    pub fn stages(&self) -> &[String] {
        &self.stages
    }

    /// The stage a new user starts in.
    pub fn first_stage(&self) -> &str {
        &self.stages[0]
    }

    /// A stage's position in the journey (0 first), or None for an unknown name.
    pub fn rank(&self, stage: &str) -> Option<usize> {
        self.stages.iter().position(|s| s == stage)
    }

    /// The stage a stored user is in (the first stage for a user never seen).
    pub fn stage_of<'a>(&'a self, state: &'a UserState) -> &'a str {
        state.stage.as_deref().filter(|s| self.rank(s).is_some()).unwrap_or(self.first_stage())
    }

    /// Inactive for longer than the lapse window. A user never seen is not lapsed.
    pub fn is_lapsed(&self, state: &UserState, now: Millis) -> bool {
        match state.aggregates.last_seen {
            Some(last) => self.lapse_after_ms > 0 && now - last > self.lapse_after_ms,
            None => false,
        }
    }

    /// Applies events (in any order) to `state`: aggregates, stage, stage history.
    /// Returns the transitions it appended.
    pub fn apply_events(&self, state: &mut UserState, events: &[&Event]) -> Vec<Transition> {
        let mut sorted: Vec<&Event> = events.to_vec();
        sorted.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.event_id.cmp(&b.event_id)));
        sorted.into_iter().filter_map(|e| self.apply(state, e)).collect()
    }

    /// Whether `event_type` is one of the consent events (its `channel` property is required).
    pub fn is_consent_event(&self, event_type: &str) -> bool {
        event_type == self.unsubscribe_event || event_type == self.subscribe_event
    }

    fn apply(&self, state: &mut UserState, event: &Event) -> Option<Transition> {
        if self.is_consent_event(&event.event_type)
            && let Some(channel) = event.properties.get(CONSENT_CHANNEL_PROPERTY)
        {
            state.set_consent(channel, event.event_type == self.subscribe_event, event.timestamp);
        }
        let agg = &mut state.aggregates;
        let counted =
            if agg.event_counts.contains_key(&event.event_type) || agg.event_counts.len() < MAX_EVENT_TYPES_PER_USER {
                event.event_type.clone()
            } else {
                "other".to_string()
            };
        *agg.event_counts.entry(counted).or_insert(0) += 1;
        agg.first_seen = Some(agg.first_seen.map_or(event.timestamp, |t| t.min(event.timestamp)));
        agg.last_seen = Some(agg.last_seen.map_or(event.timestamp, |t| t.max(event.timestamp)));
        if self.tracked.types.contains(&event.event_type) {
            let last = agg.last_by_type.entry(event.event_type.clone()).or_insert(event.timestamp);
            *last = (*last).max(event.timestamp);
            if self.tracked.days > 0 {
                let days = agg.daily.entry(event.event_type.clone()).or_default();
                let bucket = days.entry(event.timestamp.div_euclid(MS_PER_DAY)).or_insert((0, 0.0));
                bucket.0 += 1;
                bucket.1 += event.value;
                // Only the last `tracked.days` days (of the latest event) are kept.
                let newest = days.keys().next_back().copied().unwrap_or_default();
                days.retain(|d, _| *d > newest - self.tracked.days);
            }
        }
        if event.event_type == self.purchase_event {
            agg.purchase_count += 1;
            agg.monetary_total += event.value;
            agg.last_purchase = Some(agg.last_purchase.map_or(event.timestamp, |t| t.max(event.timestamp)));
        }
        let count = agg.count(&event.event_type);
        let target =
            self.triggers.get(&event.event_type)?.iter().filter(|t| count >= t.min_count).map(|t| t.to).max()?;

        let current = self.rank(self.stage_of(state)).unwrap_or(0);
        if state.stage.is_some() && target <= current {
            return None;
        }
        let from = if state.stage.is_some() { self.stages[current].clone() } else { String::new() };
        let at = state.stage_since.map_or(event.timestamp, |since| since.max(event.timestamp));
        let transition = Transition {
            from,
            to: self.stages[target].clone(),
            at,
            trigger_event_type: event.event_type.clone(),
            trigger_event_id: event.event_id.clone(),
        };
        state.stage = Some(transition.to.clone());
        state.stage_since = Some(at);
        state.transitions.push(transition.clone());
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, kind: &str, ts: Millis, value: f64) -> Event {
        Event {
            event_id: id.into(),
            user_id: "u".into(),
            event_type: kind.into(),
            timestamp: ts,
            channel: String::new(),
            offer_id: String::new(),
            value,
            properties: Default::default(),
        }
    }

    fn check(events: &[Event], expected_stage: &str, expected_path: &[&str]) {
        let j = JourneyDef::default_journey();
        let mut s = UserState::default();
        let refs: Vec<&Event> = events.iter().collect();
        j.apply_events(&mut s, &refs);
        assert_eq!(j.stage_of(&s), expected_stage);
        let path: Vec<&str> = s.transitions.iter().map(|t| t.to.as_str()).collect();
        assert_eq!(path, expected_path);
        assert!(s.transitions.windows(2).all(|w| w[0].at <= w[1].at), "history in time order");
    }

    #[test]
    fn walks_all_five_stages() {
        check(
            &[
                ev("1", "page_view", 1, 0.0),
                ev("2", "product_view", 2, 0.0),
                ev("3", "add_to_cart", 3, 0.0),
                ev("4", "purchase", 4, 30.0),
                ev("5", "review_posted", 5, 0.0),
            ],
            "advocacy",
            &["awareness", "consideration", "conversion", "retention", "advocacy"],
        );
    }

    #[test]
    fn forward_only_and_unknown_types() {
        check(&[ev("1", "purchase", 1, 1.0), ev("2", "page_view", 2, 0.0)], "retention", &["retention"]);
        check(&[ev("1", "newsletter_open", 1, 0.0)], "awareness", &[]);
        // A batch delivered out of order is applied in time order.
        check(
            &[ev("2", "product_view", 20, 0.0), ev("1", "page_view", 10, 0.0)],
            "consideration",
            &["awareness", "consideration"],
        );
    }

    #[test]
    fn late_event_is_clamped_and_aggregates_are_order_free() {
        let j = JourneyDef::default_journey();
        let mut s = UserState::default();
        let a = ev("a", "product_view", 100, 0.0);
        let b = ev("b", "purchase", 50, 20.0);
        j.apply_events(&mut s, &[&a]);
        j.apply_events(&mut s, &[&b]);
        assert_eq!(j.stage_of(&s), "retention");
        assert_eq!(s.transitions.last().unwrap().at, 100, "clamped to the previous transition");
        assert_eq!(s.aggregates.first_seen, Some(50));
        assert_eq!(s.aggregates.last_seen, Some(100));
        assert_eq!(s.aggregates.last_purchase, Some(50));
        assert_eq!(s.aggregates.monetary_total, 20.0);
    }

    #[test]
    fn nth_event_trigger() {
        let stages = vec!["a".to_string(), "b".into(), "c".into()];
        let triggers = vec![
            Trigger { event_type: "purchase".into(), to: 1, min_count: 1 },
            Trigger { event_type: "purchase".into(), to: 2, min_count: 3 },
        ];
        let j = JourneyDef::new(stages, triggers, 30.0, "purchase".into());
        let mut s = UserState::default();
        let evs: Vec<Event> = (0..3).map(|i| ev(&i.to_string(), "purchase", i, 1.0)).collect();
        j.apply_events(&mut s, &[&evs[0], &evs[1]]);
        assert_eq!(j.stage_of(&s), "b");
        j.apply_events(&mut s, &[&evs[2]]);
        assert_eq!(j.stage_of(&s), "c");
        assert_eq!(s.aggregates.purchase_count, 3);
    }

    #[test]
    fn lapse() {
        let j = JourneyDef::default_journey();
        let mut s = UserState::default();
        assert!(!j.is_lapsed(&s, 0));
        j.apply_events(&mut s, &[&ev("1", "page_view", 0, 0.0)]);
        assert!(!j.is_lapsed(&s, 30 * MS_PER_DAY));
        assert!(j.is_lapsed(&s, 30 * MS_PER_DAY + 1));
    }
}
