//! Conversions of the Analytics service: day ranges in, funnel, offer and KPI reports out.
use super::pb;
use crate::domain::analytics::{Days, KpiStatus, OfferRow, StageRow, Status, Trend, date};
use crate::domain::limits::FieldError;
use crate::engine::analytics::{AskedDays, OfferQuery};

/// A `YYYY-MM-DD` day as a UTC day number.
fn day(field: &str, s: &str) -> Result<Option<i64>, FieldError> {
    if s.is_empty() {
        return Ok(None);
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| FieldError::new(field, format!("{s:?} is not a date YYYY-MM-DD")))?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    Ok(Some((d - epoch).num_days()))
}

/// The range a request asks for.
pub fn asked(range: Option<pb::DayRange>) -> Result<AskedDays, FieldError> {
    let r = range.unwrap_or_default();
    Ok(AskedDays { from: day("range.from_date", &r.from_date)?, to: day("range.to_date", &r.to_date)? })
}

fn range(d: Days) -> Option<pb::DayRange> {
    Some(pb::DayRange { from_date: date(d.from), to_date: date(d.to) })
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// An offer report's filters.
pub fn offer_query(r: &pb::GetOfferPerformanceRequest) -> OfferQuery {
    OfferQuery {
        channel: some(r.channel.clone()),
        stage: some(r.stage.clone()),
        offer: some(r.offer_id.clone()),
        segment: some(r.segment.clone()),
    }
}

fn n(v: f64) -> u64 {
    v.max(0.0).round() as u64
}

/// The funnel answer.
pub fn funnel(days: Days, channel: String, segment: String, rows: Vec<StageRow>) -> pb::Funnel {
    let stages = rows
        .into_iter()
        .map(|r| pb::StageFunnel {
            entered: n(r.entered),
            advanced: n(r.advanced),
            advanced_to: r.advanced_to.into_iter().map(|(s, v)| (s, n(v))).collect(),
            advance_rate: r.advance_rate,
            lapses: n(r.lapses),
            in_stage: n(r.current),
            exits: n(r.exits),
            median_hours_in_stage: r.median_hours,
            p90_hours_in_stage: r.p90_hours,
            stage: r.stage,
        })
        .collect();
    pb::Funnel { range: range(days), channel, segment, stages }
}

/// The offer answer.
pub fn offers(days: Days, rows: Vec<OfferRow>) -> pb::OfferPerformance {
    let offers = rows
        .into_iter()
        .map(|r| pb::OfferStats {
            ctr: r.ctr(),
            conversion_rate: r.conversion_rate(),
            decisions: n(r.decisions),
            impressions: n(r.impressions),
            clicks: n(r.clicks),
            accepts: n(r.accepts),
            dismissals: n(r.dismissals),
            conversions: n(r.conversions),
            revenue: r.revenue,
            offer_id: r.offer,
            stage: r.stage,
            channel: r.channel,
        })
        .collect();
    pb::OfferPerformance { range: range(days), offers }
}

/// The KPI answer.
pub fn kpis(as_of: i64, status: Vec<KpiStatus>) -> pb::Kpis {
    let kpis = status
        .into_iter()
        .map(|s| pb::KpiStatus {
            name: s.kpi.name,
            stage: s.kpi.stage,
            metric: s.kpi.metric.name().to_string(),
            target: s.kpi.target,
            window_days: s.kpi.window_days,
            direction: if s.kpi.at_most { "at_most" } else { "at_least" }.to_string(),
            channel: s.kpi.channel.unwrap_or_default(),
            offer_id: s.kpi.offer.unwrap_or_default(),
            value: s.value,
            previous: s.previous,
            status: match s.status {
                Status::Met => "met",
                Status::Missed => "missed",
                Status::NoData => "no_data",
            }
            .to_string(),
            trend: match s.trend {
                Trend::Up => "up",
                Trend::Down => "down",
                Trend::Flat => "flat",
                Trend::NoData => "no_data",
            }
            .to_string(),
        })
        .collect();
    pb::Kpis { as_of: date(as_of), kpis }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_name_their_field() {
        assert_eq!(day("f", "1970-01-02").unwrap(), Some(1));
        assert_eq!(date(20_415), "2025-11-23");
        assert_eq!(day("f", &date(20_415)).unwrap(), Some(20_415));
        assert_eq!(day("f", "").unwrap(), None);
        let e = asked(Some(pb::DayRange { from_date: "2025-13-01".into(), to_date: String::new() })).unwrap_err();
        assert_eq!(e.field, "range.from_date");
    }
}
