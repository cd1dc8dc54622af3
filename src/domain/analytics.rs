//! Journey analytics from the write-time counters of `funnel.rs`: the funnel per stage, offer
//! performance, and KPIs against targets. Pure: the store hands over the counters of a range
//! of days (`Tallies`), these functions sum and divide.
use super::funnel::{DECISION, REVENUE, TIME_BUCKETS_MS};
use super::{MS_PER_DAY, Millis};
use std::collections::BTreeMap;

/// Counters as the store keeps them: per UTC day, plus the in-stage-now counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tallies {
    /// day number -> counter name -> value
    pub days: BTreeMap<i64, BTreeMap<String, f64>>,
    /// `s|stage` -> users in the stage now
    pub current: BTreeMap<String, f64>,
}

impl Tallies {
    /// Adds one counter (the stores' reads merge shards with this).
    pub fn add(&mut self, day: Option<i64>, field: &str, by: f64) {
        let map = match day {
            Some(d) => self.days.entry(d).or_default(),
            None => &mut self.current,
        };
        *map.entry(field.to_string()).or_insert(0.0) += by;
    }

    /// The per-day counters of `from..=to` summed.
    pub fn sum(&self, from: i64, to: i64) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (_, fields) in self.days.range(from..=to) {
            for (f, v) in fields {
                *out.entry(f.clone()).or_insert(0.0) += v;
            }
        }
        out
    }
}

/// An inclusive range of UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days {
    /// First day.
    pub from: i64,
    /// Last day.
    pub to: i64,
}

impl Days {
    /// The `n` days ending with the day of `now`.
    pub fn last(n: u32, now: Millis) -> Self {
        let to = super::funnel::day_of(now);
        Self { from: to - i64::from(n.max(1)) + 1, to }
    }
    /// The same number of days just before.
    pub fn previous(self) -> Self {
        let n = self.to - self.from + 1;
        Self { from: self.from - n, to: self.from - 1 }
    }
}

/// One stage of the funnel over a range of days.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StageRow {
    /// The stage.
    pub stage: String,
    /// Users entering the stage.
    pub entered: f64,
    /// Of the users who entered the stage in the range, those who have left it for a later
    /// stage since, per stage reached (a cohort count: see `funnel.rs`).
    pub advanced_to: BTreeMap<String, f64>,
    /// The same, for any later stage.
    pub advanced: f64,
    /// advanced / entered: the stage-to-next conversion rate of the range's entrants (None
    /// when nobody entered).
    pub advance_rate: Option<f64>,
    /// Lapses of users in the stage.
    pub lapses: f64,
    /// Users in the stage now (not per day, not per channel).
    pub current: f64,
    /// Times in stage counted (users who left the stage in the range).
    pub exits: f64,
    /// Median and 90th percentile time in stage, hours, from the histogram (not per channel).
    pub median_hours: Option<f64>,
    /// 90th percentile time in stage, hours.
    pub p90_hours: Option<f64>,
}

/// Users in a stage now: its counter, plus `s|` (users never moved) for the first stage;
/// never below 0 (users stored before the counters existed were never counted in).
fn in_stage_now(stages: &[String], current: &BTreeMap<String, f64>, stage: &str) -> f64 {
    let get = |s: &str| current.get(&super::funnel::in_stage(s)).copied().unwrap_or(0.0);
    let first = if stages.first().is_some_and(|f| f == stage) { get("") } else { 0.0 };
    (get(stage) + first).max(0.0)
}

/// The fields of a counter name (`a|b|c` -> [a, b, c]).
fn parts(field: &str) -> Vec<&str> {
    field.split('|').collect()
}

fn channel_ok(channel: &str, filter: Option<&str>) -> bool {
    filter.is_none_or(|f| f == channel)
}

/// The funnel: one row per stage, in journey order, from counters summed over a range; of one
/// channel, or of one segment (whose counters are over every channel; "in stage now" stays the
/// whole population's).
pub fn funnel(
    stages: &[String],
    summed: &BTreeMap<String, f64>,
    current: &BTreeMap<String, f64>,
    channel: Option<&str>,
    segment: Option<&str>,
) -> Vec<StageRow> {
    let mut rows: Vec<StageRow> = stages
        .iter()
        .map(|s| StageRow {
            stage: s.clone(),
            entered: 0.0,
            advanced_to: BTreeMap::new(),
            advanced: 0.0,
            advance_rate: None,
            lapses: 0.0,
            current: in_stage_now(stages, current, s),
            exits: 0.0,
            median_hours: None,
            p90_hours: None,
        })
        .collect();
    let index: BTreeMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut histograms = vec![vec![0.0; TIME_BUCKETS_MS.len() + 1]; stages.len()];
    // One segment's funnel: its `f|segment|` counters, read as the funnel's own.
    let prefix = segment.map(|s| format!("f|{s}|"));
    for (field, &v) in summed {
        let field = match &prefix {
            Some(p) => match field.strip_prefix(p.as_str()) {
                Some(f) => f,
                None => continue,
            },
            None => field.as_str(),
        };
        match parts(field).as_slice() {
            ["e", stage, ch] if channel_ok(ch, channel) => {
                if let Some(&i) = index.get(stage) {
                    rows[i].entered += v;
                }
            }
            ["a", from, to, ch] if channel_ok(ch, channel) => {
                if let Some(&i) = index.get(from) {
                    *rows[i].advanced_to.entry(to.to_string()).or_insert(0.0) += v;
                    rows[i].advanced += v;
                }
            }
            ["l", stage, ch] if channel_ok(ch, channel) => {
                if let Some(&i) = index.get(stage) {
                    rows[i].lapses += v;
                }
            }
            ["t", stage, bucket] => {
                if let (Some(&i), Ok(b)) = (index.get(stage), bucket.parse::<usize>())
                    && b < histograms[i].len()
                {
                    histograms[i][b] += v;
                }
            }
            _ => {}
        }
    }
    for (row, h) in rows.iter_mut().zip(&histograms) {
        row.advance_rate = (row.entered > 0.0).then(|| row.advanced / row.entered);
        row.exits = h.iter().sum();
        row.median_hours = quantile_hours(h, 0.5);
        row.p90_hours = quantile_hours(h, 0.9);
    }
    rows
}

/// The `q` quantile of a time-in-stage histogram, in hours, interpolated linearly within its
/// bucket (the open last bucket answers its lower bound). None when the histogram is empty.
pub fn quantile_hours(h: &[f64], q: f64) -> Option<f64> {
    let total: f64 = h.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = 0.0;
    for (i, &n) in h.iter().enumerate() {
        if n > 0.0 && below + n >= rank {
            let lo = if i == 0 { 0 } else { TIME_BUCKETS_MS[i - 1] };
            let ms = match TIME_BUCKETS_MS.get(i) {
                Some(&hi) => lo as f64 + (hi - lo) as f64 * ((rank - below) / n).clamp(0.0, 1.0),
                None => lo as f64,
            };
            return Some(ms / 3_600_000.0);
        }
        below += n;
    }
    None
}

/// One offer in one stage and channel over a range of days.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OfferRow {
    /// The offer.
    pub offer: String,
    /// The stage of the decisions.
    pub stage: String,
    /// The channel of the decisions.
    pub channel: String,
    /// Decisions that chose the offer.
    pub decisions: f64,
    /// Impressions recorded.
    pub impressions: f64,
    /// Clicks recorded.
    pub clicks: f64,
    /// Accepts recorded.
    pub accepts: f64,
    /// Dismissals recorded.
    pub dismissals: f64,
    /// Conversions recorded.
    pub conversions: f64,
    /// Sum of the conversions' values.
    pub revenue: f64,
}

impl OfferRow {
    /// Clicks per impression (None without impressions).
    pub fn ctr(&self) -> Option<f64> {
        (self.impressions > 0.0).then(|| self.clicks / self.impressions)
    }
    /// Conversions per decision that chose the offer (None without decisions).
    pub fn conversion_rate(&self) -> Option<f64> {
        (self.decisions > 0.0).then(|| self.conversions / self.decisions)
    }
    fn add(&mut self, metric: &str, v: f64) {
        match metric {
            DECISION => self.decisions += v,
            "impression" => self.impressions += v,
            "click" => self.clicks += v,
            "accept" => self.accepts += v,
            "dismiss" => self.dismissals += v,
            "conversion" => self.conversions += v,
            REVENUE => self.revenue += v,
            _ => {}
        }
    }
    fn merge(&mut self, o: &OfferRow) {
        self.decisions += o.decisions;
        self.impressions += o.impressions;
        self.clicks += o.clicks;
        self.accepts += o.accepts;
        self.dismissals += o.dismissals;
        self.conversions += o.conversions;
        self.revenue += o.revenue;
    }
}

/// Which offer rows to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfferFilter<'a> {
    /// Only decisions of users in this segment; rows are then per offer × stage over every
    /// channel (`channel` is empty in them: segment counts are not kept per channel).
    pub segment: Option<&'a str>,
    /// Only this offer.
    pub offer: Option<&'a str>,
    /// Only this stage.
    pub stage: Option<&'a str>,
    /// Only this channel.
    pub channel: Option<&'a str>,
}

/// Offer performance: one row per offer × stage × channel seen in the range, sorted.
pub fn offers(summed: &BTreeMap<String, f64>, filter: OfferFilter<'_>) -> Vec<OfferRow> {
    let mut rows: BTreeMap<(String, String, String), OfferRow> = BTreeMap::new();
    for (field, &v) in summed {
        let (offer, stage, ch, metric) = match (parts(field).as_slice(), filter.segment) {
            (["o", offer, stage, ch, metric], None) => (*offer, *stage, *ch, *metric),
            (["g", segment, offer, stage, metric], Some(s)) if *segment == s => (*offer, *stage, "", *metric),
            _ => continue,
        };
        if filter.offer.is_none_or(|f| f == offer)
            && filter.stage.is_none_or(|f| f == stage)
            && (filter.segment.is_some() || channel_ok(ch, filter.channel))
        {
            rows.entry((offer.to_string(), stage.to_string(), ch.to_string()))
                .or_insert_with(|| OfferRow {
                    offer: offer.to_string(),
                    stage: stage.to_string(),
                    channel: ch.to_string(),
                    ..OfferRow::default()
                })
                .add(metric, v);
        }
    }
    rows.into_values().collect()
}

/// A KPI's metric (`[[kpis]] metric = "..."`; names in `Metric::ALL`).
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Entered,
    Advanced,
    AdvanceRate,
    InStage,
    Lapses,
    MedianHoursInStage,
    P90HoursInStage,
    Decisions,
    Impressions,
    Clicks,
    Accepts,
    Dismissals,
    Conversions,
    Revenue,
    Ctr,
    ConversionRate,
}

impl Metric {
    /// Every metric with its config name.
    pub const ALL: [(Metric, &'static str); 16] = [
        (Metric::Entered, "entered"),
        (Metric::Advanced, "advanced"),
        (Metric::AdvanceRate, "advance_rate"),
        (Metric::InStage, "in_stage"),
        (Metric::Lapses, "lapses"),
        (Metric::MedianHoursInStage, "median_hours_in_stage"),
        (Metric::P90HoursInStage, "p90_hours_in_stage"),
        (Metric::Decisions, "decisions"),
        (Metric::Impressions, "impressions"),
        (Metric::Clicks, "clicks"),
        (Metric::Accepts, "accepts"),
        (Metric::Dismissals, "dismissals"),
        (Metric::Conversions, "conversions"),
        (Metric::Revenue, "revenue"),
        (Metric::Ctr, "ctr"),
        (Metric::ConversionRate, "conversion_rate"),
    ];

    /// The metric a config name names.
    pub fn parse(name: &str) -> Option<Metric> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(m, _)| *m)
    }
    /// Its config name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(m, _)| *m == self).map(|(_, n)| *n).unwrap_or("?")
    }
    /// Whether it is about offers (decisions and outcomes) rather than the funnel.
    pub fn is_offer_metric(self) -> bool {
        matches!(
            self,
            Metric::Decisions
                | Metric::Impressions
                | Metric::Clicks
                | Metric::Accepts
                | Metric::Dismissals
                | Metric::Conversions
                | Metric::Revenue
                | Metric::Ctr
                | Metric::ConversionRate
        )
    }
    /// Whether less is better (lapses, time in stage, dismissals): the default direction.
    pub fn lower_is_better(self) -> bool {
        matches!(self, Metric::Lapses | Metric::MedianHoursInStage | Metric::P90HoursInStage | Metric::Dismissals)
    }
}

/// A KPI: a stage's metric against a target over a rolling window of days.
#[derive(Debug, Clone, PartialEq)]
pub struct Kpi {
    /// A name for reports and gauges (`stage:metric` unless the config names it).
    pub name: String,
    /// The stage it is about.
    pub stage: String,
    /// What it measures.
    pub metric: Metric,
    /// The value to meet.
    pub target: f64,
    /// The rolling window, days ending today.
    pub window_days: u32,
    /// True: met when the value is at most the target; false: at least.
    pub at_most: bool,
    /// Only this channel's counts (where counts are kept per channel).
    pub channel: Option<String>,
    /// Offer metrics: only this offer (None: every offer in the stage).
    pub offer: Option<String>,
}

/// Met, missed, or nothing to judge by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The value meets the target.
    Met,
    /// It does not.
    Missed,
    /// No value in the window.
    NoData,
}

/// Where the value moved against the window before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// Higher than the window before (by more than 1%).
    Up,
    /// Lower.
    Down,
    /// Within 1%.
    Flat,
    /// A window without a value.
    NoData,
}

/// A KPI's value now and in the window before, and what that means.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiStatus {
    /// The KPI.
    pub kpi: Kpi,
    /// Its value over the window (None: no data).
    pub value: Option<f64>,
    /// Its value over the window before.
    pub previous: Option<f64>,
    /// Met or missed.
    pub status: Status,
    /// Against the window before.
    pub trend: Trend,
}

/// The value of a KPI's metric over counters summed for its window (None: no data).
pub fn kpi_value(
    kpi: &Kpi,
    stages: &[String],
    summed: &BTreeMap<String, f64>,
    current: &BTreeMap<String, f64>,
) -> Option<f64> {
    let channel = kpi.channel.as_deref();
    let offer_of = || {
        let mut total = OfferRow::default();
        let filter = OfferFilter { offer: kpi.offer.as_deref(), stage: Some(&kpi.stage), channel, segment: None };
        let rows = offers(summed, filter);
        rows.iter().for_each(|r| total.merge(r));
        (!rows.is_empty()).then_some(total)
    };
    let stage = || funnel(stages, summed, current, channel, None).into_iter().find(|r| r.stage == kpi.stage);
    let any = |r: &StageRow| r.entered > 0.0 || r.advanced > 0.0 || r.lapses > 0.0 || r.exits > 0.0;
    match kpi.metric {
        Metric::Entered => stage().filter(any).map(|r| r.entered),
        Metric::Advanced => stage().filter(any).map(|r| r.advanced),
        Metric::AdvanceRate => stage().and_then(|r| r.advance_rate),
        Metric::InStage => stage().map(|r| r.current),
        Metric::Lapses => stage().filter(any).map(|r| r.lapses),
        Metric::MedianHoursInStage => stage().and_then(|r| r.median_hours),
        Metric::P90HoursInStage => stage().and_then(|r| r.p90_hours),
        Metric::Decisions => offer_of().map(|r| r.decisions),
        Metric::Impressions => offer_of().map(|r| r.impressions),
        Metric::Clicks => offer_of().map(|r| r.clicks),
        Metric::Accepts => offer_of().map(|r| r.accepts),
        Metric::Dismissals => offer_of().map(|r| r.dismissals),
        Metric::Conversions => offer_of().map(|r| r.conversions),
        Metric::Revenue => offer_of().map(|r| r.revenue),
        Metric::Ctr => offer_of().and_then(|r| r.ctr()),
        Metric::ConversionRate => offer_of().and_then(|r| r.conversion_rate()),
    }
}

/// Every KPI's status at `now`: its window ending today against its target, and the trend
/// against the window before it. `tallies` must cover both windows.
pub fn kpis(kpis: &[Kpi], stages: &[String], tallies: &Tallies, now: Millis) -> Vec<KpiStatus> {
    kpis.iter()
        .map(|k| {
            let window = Days::last(k.window_days, now);
            let before = window.previous();
            let value = kpi_value(k, stages, &tallies.sum(window.from, window.to), &tallies.current);
            // "In stage now" has no history: its trend is not known.
            let previous = (k.metric != Metric::InStage)
                .then(|| kpi_value(k, stages, &tallies.sum(before.from, before.to), &tallies.current))
                .flatten();
            let status = match value {
                None => Status::NoData,
                Some(v) if (k.at_most && v <= k.target) || (!k.at_most && v >= k.target) => Status::Met,
                Some(_) => Status::Missed,
            };
            let trend = match (value, previous) {
                (Some(v), Some(p)) if (v - p).abs() <= 0.01 * p.abs().max(f64::MIN_POSITIVE) => Trend::Flat,
                (Some(v), Some(p)) if v > p => Trend::Up,
                (Some(_), Some(_)) => Trend::Down,
                _ => Trend::NoData,
            };
            KpiStatus { kpi: k.clone(), value, previous, status, trend }
        })
        .collect()
}

/// The days every KPI needs read: twice the longest window, ending today.
pub fn kpi_days(kpis: &[Kpi], now: Millis) -> Days {
    let longest = kpis.iter().map(|k| k.window_days).max().unwrap_or(1);
    Days::last(longest.saturating_mul(2), now)
}

/// A UTC day number as `YYYY-MM-DD`.
pub fn date(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * MS_PER_DAY)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Event;
    use crate::domain::funnel::{DecisionScope, apply_events, decision_counts, outcome_counts};
    use crate::domain::journey::{JourneyDef as Journey, Trigger};
    use crate::domain::outcome::OutcomeKind;
    use crate::domain::profile::UserState;

    fn stages() -> Vec<String> {
        ["awareness", "consideration", "conversion"].map(String::from).to_vec()
    }

    fn journey() -> Journey {
        let triggers = vec![
            Trigger { event_type: "view".into(), min_count: 2, to: 1 },
            Trigger { event_type: "purchase".into(), min_count: 1, to: 2 },
        ];
        Journey::new(stages(), triggers, 30.0, "purchase".into())
    }

    fn ev(user: &str, id: &str, kind: &str, ts: Millis) -> Event {
        Event {
            event_id: id.into(),
            user_id: user.into(),
            event_type: kind.into(),
            timestamp: ts,
            channel: "web".into(),
            offer_id: String::new(),
            value: 0.0,
            properties: Default::default(),
        }
    }

    /// Ten users view once, six twice (consideration after an hour), two of those buy.
    fn tallies() -> Tallies {
        let j = journey();
        let mut t = Tallies::default();
        for u in 0..10 {
            let user = format!("u{u}");
            let mut s = UserState::default();
            let mut evs = vec![ev(&user, "1", "view", 0)];
            if u < 6 {
                evs.push(ev(&user, "2", "view", 3_600_000 * (u + 1)));
            }
            if u < 2 {
                evs.push(ev(&user, "3", "purchase", 10 * 3_600_000));
            }
            for e in &evs {
                for c in apply_events(&j, &mut s, &[e]).1 {
                    t.add(c.day, &c.field, c.by);
                }
            }
        }
        t
    }

    #[test]
    fn the_funnel_from_counters() {
        let t = tallies();
        let rows = funnel(&stages(), &t.sum(0, 0), &t.current, None, None);
        assert_eq!(rows.iter().map(|r| r.entered).collect::<Vec<_>>(), [10.0, 6.0, 2.0]);
        assert_eq!(rows.iter().map(|r| r.current).collect::<Vec<_>>(), [4.0, 4.0, 2.0]);
        assert_eq!(rows[0].advance_rate, Some(0.6));
        assert_eq!(rows[1].advanced_to.get("conversion"), Some(&2.0));
        assert_eq!(rows[2].advance_rate, Some(0.0));
        // Times in awareness: 1..6 hours, all in the 1-3 h and 3-6 h buckets.
        let median = rows[0].median_hours.unwrap();
        assert!((2.0..=4.0).contains(&median), "{median}");
        assert!(rows[0].p90_hours.unwrap() > median);
        assert_eq!(rows[2].median_hours, None);
        // Another channel saw nothing.
        assert_eq!(funnel(&stages(), &t.sum(0, 0), &t.current, Some("app"), None)[0].entered, 0.0);
    }

    #[test]
    fn offers_and_rates() {
        let mut t = Tallies::default();
        let rec = crate::domain::decision::DecisionRecord {
            at: 5,
            stage: "awareness".into(),
            channel: "web".into(),
            chosen: vec![crate::domain::decision::Chosen {
                offer_id: "o1".into(),
                score: 1.0,
                selection_probability: 1.0,
            }],
            ..Default::default()
        };
        for _ in 0..4 {
            for c in decision_counts(&rec) {
                t.add(c.day, &c.field, c.by);
            }
        }
        for (kind, n) in [(OutcomeKind::Impression, 4), (OutcomeKind::Click, 1), (OutcomeKind::Conversion, 1)] {
            for _ in 0..n {
                let scope = DecisionScope { stage: "awareness", channel: "web", segments: &[] };
                for c in outcome_counts("o1", scope, kind, 20.0, 5) {
                    t.add(c.day, &c.field, c.by);
                }
            }
        }
        let rows = offers(&t.sum(0, 0), OfferFilter::default());
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].decisions, rows[0].clicks, rows[0].revenue), (4.0, 1.0, 20.0));
        assert_eq!(rows[0].ctr(), Some(0.25));
        assert_eq!(rows[0].conversion_rate(), Some(0.25));
        assert!(offers(&t.sum(0, 0), OfferFilter { stage: Some("retention"), ..Default::default() }).is_empty());
    }

    #[test]
    fn kpi_status_flips_when_the_target_is_crossed() {
        let t = tallies();
        let kpi = |target| Kpi {
            name: "k".into(),
            stage: "awareness".into(),
            metric: Metric::AdvanceRate,
            target,
            window_days: 1,
            at_most: false,
            channel: None,
            offer: None,
        };
        let now = 1000;
        let met = kpis(&[kpi(0.6)], &stages(), &t, now);
        assert_eq!(met[0].status, Status::Met);
        assert_eq!(met[0].value, Some(0.6));
        assert_eq!(met[0].trend, Trend::NoData, "nothing the day before");
        assert_eq!(kpis(&[kpi(0.61)], &stages(), &t, now)[0].status, Status::Missed);
        // A week later the window is empty.
        assert_eq!(kpis(&[kpi(0.6)], &stages(), &t, 8 * MS_PER_DAY)[0].status, Status::NoData);
        assert_eq!(Metric::parse("p90_hours_in_stage"), Some(Metric::P90HoursInStage));
        assert!(Metric::ALL.iter().all(|(m, n)| m.name() == *n));
        assert_eq!(kpi_days(&[kpi(0.1)], MS_PER_DAY), Days { from: 0, to: 1 });
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut h = vec![0.0; TIME_BUCKETS_MS.len() + 1];
        h[2] = 10.0; // 10 min .. 1 h
        let m = quantile_hours(&h, 0.5).unwrap();
        assert!((m - (10.0 + 25.0) / 60.0).abs() < 1e-9, "{m}");
        h[TIME_BUCKETS_MS.len()] = 100.0;
        assert_eq!(quantile_hours(&h, 0.9), Some(90.0 * 24.0));
        assert_eq!(quantile_hours(&[0.0; 3], 0.5), None);
    }
}
