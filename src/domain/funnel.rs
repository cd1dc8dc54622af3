//! Funnel and offer counters, maintained at write time (issue 13): what each event, decision
//! and outcome adds, as named counter increments the stores apply atomically with the write
//! that causes them. Reports (`analytics.rs`) read the counters; nothing scans users or logs.
//!
//! Counters are per UTC day (`day_of`), except how many users are in each stage now. The
//! counter names (fields of a day's hash in Redis, see `store/redis/keys.rs`):
//!
//! | field | counts |
//! |---|---|
//! | `e\|stage\|channel` | users entering the stage (a new user enters the first stage) |
//! | `a\|from\|to\|channel` | users advancing from a stage to a later one, counted on the day they *entered* the stage they leave (cohorts: the advance rate of a range is the share of the users entering in it who moved on, never above 1) |
//! | `l\|stage\|channel` | lapses: a user in the stage came back after the lapse window |
//! | `t\|stage\|bucket` | time in the stage, counted when the user leaves it (`TIME_BUCKETS_MS`) |
//! | `o\|offer\|stage\|channel\|metric` | offer performance: `decision` (the offer was chosen), the outcome kinds, `revenue` |
//! | `g\|segment\|offer\|stage\|metric` | the same per segment the user was in at the decision (over every channel) |
//! | `f\|segment\|e\|stage\|`, `f\|segment\|a\|from\|to\|`, `f\|segment\|l\|stage\|`, `f\|segment\|t\|stage\|bucket` | the funnel per segment the user is in after the events (`by_segment`; over every channel) |
//! | `s\|stage` | (not per day) users in the stage now |
//!
//! `segment` counts are per segment the user was in at the decision (a decision counts once in
//! each), over every channel to stay cheap.
//! `channel` is the channel of the event that caused the count (empty when it had none), or of
//! the decision. Stage, channel and offer names cannot contain `|` (config checks names).
use super::event::Event;
use super::journey::JourneyDef as Journey;
use super::outcome::OutcomeKind;
use super::profile::{Transition, UserState};
use super::{MS_PER_DAY, Millis};
use crate::domain::decision::DecisionRecord;

/// One counter increment: `by` added to `field` of `day` (None: the in-stage-now counters).
#[derive(Debug, Clone, PartialEq)]
pub struct Count {
    /// UTC day number (`day_of`), or None for the not-per-day counters (`s|stage`).
    pub day: Option<i64>,
    /// The counter's name (table above).
    pub field: String,
    /// The increment (revenue may be fractional; every other count is a whole number).
    pub by: f64,
}

impl Count {
    fn day(at: Millis, field: String) -> Self {
        Self { day: Some(day_of(at)), field, by: 1.0 }
    }
}

/// The UTC day number of a time (days since 1970-01-01).
pub fn day_of(at: Millis) -> i64 {
    at.div_euclid(MS_PER_DAY)
}

/// When a day's counters are forgotten: `retention_days` after the day ends (ms).
pub fn counter_expiry(day: i64, retention_days: u32) -> Millis {
    (day + 1 + i64::from(retention_days)) * MS_PER_DAY
}

/// Upper bounds of the time-in-stage histogram's buckets (the last bucket is open-ended):
/// 1 min, 10 min, 1 h, 3 h, 6 h, 12 h, 1, 2, 4, 7, 14, 30, 60, 90 days.
pub const TIME_BUCKETS_MS: [Millis; 14] = [
    60_000,
    600_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    MS_PER_DAY,
    2 * MS_PER_DAY,
    4 * MS_PER_DAY,
    7 * MS_PER_DAY,
    14 * MS_PER_DAY,
    30 * MS_PER_DAY,
    60 * MS_PER_DAY,
    90 * MS_PER_DAY,
];

/// The bucket a time in stage falls in (0..=TIME_BUCKETS_MS.len()).
pub fn time_bucket(ms: Millis) -> usize {
    TIME_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(TIME_BUCKETS_MS.len())
}

/// `e|stage|channel`
pub fn entered(stage: &str, channel: &str) -> String {
    format!("e|{stage}|{channel}")
}
/// `a|from|to|channel`
pub fn advanced(from: &str, to: &str, channel: &str) -> String {
    format!("a|{from}|{to}|{channel}")
}
/// `l|stage|channel`
pub fn lapsed(stage: &str, channel: &str) -> String {
    format!("l|{stage}|{channel}")
}
/// `t|stage|bucket`
pub fn time_in_stage(stage: &str, bucket: usize) -> String {
    format!("t|{stage}|{bucket}")
}
/// `s|stage` (not per day)
pub fn in_stage(stage: &str) -> String {
    format!("s|{stage}")
}
/// `o|offer|stage|channel|metric`; outcome.lua builds the same names for outcomes.
pub fn offer(offer: &str, stage: &str, channel: &str, metric: &str) -> String {
    format!("o|{offer}|{stage}|{channel}|{metric}")
}

/// The parts of an [`offer`] counter name: (offer, stage, channel, metric).
pub fn parse_offer(field: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = field.strip_prefix("o|")?.split('|');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(offer), Some(stage), Some(channel), Some(metric), None) => Some((offer, stage, channel, metric)),
        _ => None,
    }
}

/// `g|segment|offer|stage|metric`; outcome.lua builds the same names for outcomes.
pub fn segment_offer(segment: &str, offer: &str, stage: &str, metric: &str) -> String {
    format!("g|{segment}|{offer}|{stage}|{metric}")
}

/// The offer metric of a decision that chose the offer.
pub const DECISION: &str = "decision";
/// The offer metric summing conversion values.
pub const REVENUE: &str = "revenue";

/// Applies events to a user's state like `Journey::apply_events` (same order, same
/// transitions) and returns, besides the transitions, the funnel counts they cause:
/// - a user's first event enters the first stage;
/// - each transition enters its stage and, from a stage the user was in, is an advance and
///   ends a time in stage (`t`); the in-stage-now counters move with it;
/// - an event more than the lapse window after the user's previous one is a lapse of the
///   stage the user was in (counted when the user returns: a user who never returns is not
///   seen at write time).
pub fn apply_events(journey: &Journey, state: &mut UserState, events: &[&Event]) -> (Vec<Transition>, Vec<Count>) {
    let mut sorted: Vec<&Event> = events.to_vec();
    sorted.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.event_id.cmp(&b.event_id)));
    let first = journey.first_stage().to_string();
    let mut transitions = Vec::new();
    let mut counts = Vec::new();
    for e in sorted {
        let before_stage = journey.stage_of(state).to_string();
        // The in-stage counter the user is in: the stored stage as stored (even one since
        // removed from the config), `s|` when none.
        let counted_in = state.stage.clone().unwrap_or_default();
        // When the user entered the stage they are in: a user who never moved has been in the
        // first stage since their first event.
        let since = state.stage_since.or(state.aggregates.first_seen);
        let last_seen = state.aggregates.last_seen;
        let is_new = last_seen.is_none();
        let moved = journey.apply_events(state, &[e]);
        if is_new {
            counts.push(Count::day(e.timestamp, entered(&first, &e.channel)));
            // In the first stage without a stored stage: `s|` (what an erasure takes back
            // when the profile has no stage but has been seen).
            counts.push(Count { day: None, field: in_stage(""), by: 1.0 });
        } else if let Some(last) = last_seen
            && journey.lapse_after_ms > 0
            && e.timestamp - last > journey.lapse_after_ms
        {
            counts.push(Count::day(e.timestamp, lapsed(&before_stage, &e.channel)));
        }
        for t in moved {
            // A new user's first transition leaves the first stage they were just counted in.
            let from = if t.from.is_empty() { first.clone() } else { t.from.clone() };
            if from != t.to {
                counts.push(Count::day(t.at, entered(&t.to, &e.channel)));
                // Counted on the day the user entered the stage they leave (a cohort count):
                // "of the users who entered consideration in these days, how many moved on".
                let entry = since.unwrap_or(t.at);
                counts.push(Count::day(entry, advanced(&from, &t.to, &e.channel)));
                let stayed = t.at - entry;
                counts.push(Count::day(t.at, time_in_stage(&from, time_bucket(stayed.max(0)))));
            }
            if counted_in != t.to {
                counts.push(Count { day: None, field: in_stage(&counted_in), by: -1.0 });
                counts.push(Count { day: None, field: in_stage(&t.to), by: 1.0 });
            }
            transitions.push(t);
        }
    }
    (transitions, counts)
}

/// The funnel counts of `counts` again for each of `segments` (`f|segment|` + the count's
/// name without its channel): entries, advances, lapses and times in stage; not the in-stage
/// counters (membership changes with the profile, without an event to count it).
pub fn by_segment(counts: &[Count], segments: &[String]) -> Vec<Count> {
    let mut out = Vec::new();
    for c in counts {
        let Some(day) = c.day else { continue };
        let generic = match c.field.split('|').collect::<Vec<_>>().as_slice() {
            ["e", stage, _] => format!("e|{stage}|"),
            ["a", from, to, _] => format!("a|{from}|{to}|"),
            ["l", stage, _] => format!("l|{stage}|"),
            ["t", stage, bucket] => format!("t|{stage}|{bucket}"),
            _ => continue,
        };
        for s in segments {
            out.push(Count { day: Some(day), field: format!("f|{s}|{generic}"), by: c.by });
        }
    }
    out
}

/// What a logged decision counts: one `decision` per offer chosen, in the decision's stage
/// and channel, and in the stage for each of the user's segments.
pub fn decision_counts(rec: &DecisionRecord) -> Vec<Count> {
    let mut out = Vec::new();
    for c in &rec.chosen {
        out.push(Count::day(rec.at, offer(&c.offer_id, &rec.stage, &rec.channel, DECISION)));
        for s in &rec.segments {
            out.push(Count::day(rec.at, segment_offer(s, &c.offer_id, &rec.stage, DECISION)));
        }
    }
    out
}

/// Where a decision's outcomes are counted: its stage, channel and segments.
#[derive(Debug, Clone, Copy)]
pub struct DecisionScope<'a> {
    /// The decision's stage.
    pub stage: &'a str,
    /// Its channel.
    pub channel: &'a str,
    /// The segments the user was in.
    pub segments: &'a [String],
}

/// What a linked outcome counts (outcome.lua does the same in Redis): its kind and, for a
/// conversion with a value, the revenue, in the stage and channel of its decision and in the
/// stage for each of its segments.
pub fn outcome_counts(
    offer_id: &str,
    scope: DecisionScope<'_>,
    kind: OutcomeKind,
    value: f64,
    at: Millis,
) -> Vec<Count> {
    let mut fields = vec![offer(offer_id, scope.stage, scope.channel, "")];
    fields.extend(scope.segments.iter().map(|s| segment_offer(s, offer_id, scope.stage, "")));
    let mut out = Vec::new();
    for f in &fields {
        out.push(Count::day(at, format!("{f}{}", kind.as_str())));
        if kind == OutcomeKind::Conversion && value != 0.0 {
            out.push(Count { day: Some(day_of(at)), field: format!("{f}{REVENUE}"), by: value });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::journey::Trigger;

    fn ev(id: &str, kind: &str, ts: Millis, channel: &str) -> Event {
        Event {
            event_id: id.into(),
            user_id: "u".into(),
            event_type: kind.into(),
            timestamp: ts,
            channel: channel.into(),
            offer_id: String::new(),
            value: 0.0,
            properties: Default::default(),
        }
    }

    fn journey() -> Journey {
        let stages = ["awareness", "consideration", "conversion"].map(String::from).to_vec();
        let triggers = vec![
            Trigger { event_type: "view".into(), min_count: 2, to: 1 },
            Trigger { event_type: "purchase".into(), min_count: 1, to: 2 },
        ];
        Journey::new(stages, triggers, 30.0, "purchase".into())
    }

    fn fields(counts: &[Count]) -> Vec<(Option<i64>, &str, f64)> {
        counts.iter().map(|c| (c.day, c.field.as_str(), c.by)).collect()
    }

    #[test]
    fn a_new_user_enters_the_first_stage_then_advances() {
        let j = journey();
        let mut s = UserState::default();
        let a = ev("1", "view", 1_000, "web");
        let b = ev("2", "view", 61_000, "app");
        let (t, c) = apply_events(&j, &mut s, &[&b, &a]);
        assert_eq!(t.len(), 1);
        assert_eq!(
            fields(&c),
            [
                (Some(0), "e|awareness|web", 1.0),
                (None, "s|", 1.0),
                (Some(0), "e|consideration|app", 1.0),
                (Some(0), "a|awareness|consideration|app", 1.0),
                (Some(0), "t|awareness|0", 1.0),
                (None, "s|", -1.0),
                (None, "s|consideration", 1.0),
            ]
        );
        // The same transitions as the journey engine alone.
        let mut alone = UserState::default();
        assert_eq!(j.apply_events(&mut alone, &[&a, &b]), t);
        assert_eq!(alone, s);
    }

    #[test]
    fn skipping_stages_and_lapses() {
        let j = journey();
        let mut s = UserState::default();
        apply_events(&j, &mut s, &[&ev("1", "view", 0, "")]);
        // 31 days later: a lapse of awareness, then a purchase skips consideration.
        let later = 31 * MS_PER_DAY;
        let (_, c) = apply_events(&j, &mut s, &[&ev("2", "purchase", later, "email")]);
        assert_eq!(
            fields(&c),
            [
                (Some(31), "l|awareness|email", 1.0),
                (Some(31), "e|conversion|email", 1.0),
                (Some(0), "a|awareness|conversion|email", 1.0),
                (Some(31), "t|awareness|12", 1.0),
                (None, "s|", -1.0),
                (None, "s|conversion", 1.0),
            ]
        );
        assert_eq!(time_bucket(0), 0);
        assert_eq!(time_bucket(60_001), 1);
        assert_eq!(time_bucket(1_000 * MS_PER_DAY), TIME_BUCKETS_MS.len());
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn segment_counts_drop_the_channel_and_skip_the_in_stage_counters() {
        let j = journey();
        let mut s = UserState::default();
        let (_, c) = apply_events(&j, &mut s, &[&ev("1", "view", 0, "web"), &ev("2", "view", 90_000, "app")]);
        let by = by_segment(&c, &["vip".to_string()]);
        assert_eq!(
            fields(&by),
            [
                (Some(0), "f|vip|e|awareness|", 1.0),
                (Some(0), "f|vip|e|consideration|", 1.0),
                (Some(0), "f|vip|a|awareness|consideration|", 1.0),
                (Some(0), "f|vip|t|awareness|1", 1.0),
            ]
        );
        assert!(by_segment(&c, &[]).is_empty());
    }

    #[test]
    fn outcomes_count_revenue_only_for_valued_conversions() {
        let segments = ["vip".to_string()];
        let scope = DecisionScope { stage: "retention", channel: "app", segments: &segments };
        let c = outcome_counts("o1", scope, OutcomeKind::Conversion, 12.5, MS_PER_DAY);
        assert_eq!(
            fields(&c),
            [
                (Some(1), "o|o1|retention|app|conversion", 1.0),
                (Some(1), "o|o1|retention|app|revenue", 12.5),
                (Some(1), "g|vip|o1|retention|conversion", 1.0),
                (Some(1), "g|vip|o1|retention|revenue", 12.5)
            ]
        );
        let none = DecisionScope { stage: "s", channel: "c", segments: &[] };
        assert_eq!(outcome_counts("o1", none, OutcomeKind::Click, 3.0, 0).len(), 1);
    }
}
