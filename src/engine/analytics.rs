//! Journey analytics: the funnel, offer performance and KPI status from the store's write-time
//! counters (`Store::tallies`), and the KPI gauges on `/metrics`.
use super::{Engine, Error, now_ms};
use crate::domain::analytics::{self, Days, KpiStatus, OfferFilter, OfferRow, StageRow, Status};
use crate::domain::funnel::day_of;
use crate::domain::limits::FieldError;
use crate::domain::thompson::Posteriors;
use std::sync::Arc;
use std::time::Duration;

/// Days of a report when the caller names none.
pub const DEFAULT_DAYS: i64 = 7;

/// A range of days as asked: either end may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AskedDays {
    /// First day (UTC day number).
    pub from: Option<i64>,
    /// Last day.
    pub to: Option<i64>,
}

/// What an offer report keeps.
#[derive(Debug, Clone, Default)]
pub struct OfferQuery {
    /// Only this channel.
    pub channel: Option<String>,
    /// Only this stage.
    pub stage: Option<String>,
    /// Only this offer.
    pub offer: Option<String>,
    /// Only decisions of users in this segment (rows over every channel).
    pub segment: Option<String>,
}

impl Engine {
    /// The days a report covers: as asked, defaulting to `DEFAULT_DAYS` ending today, within
    /// the days the counters are kept (`field` names the range in errors).
    fn report_days(&self, asked: AskedDays, field: &str) -> Result<Days, Error> {
        let today = day_of(now_ms());
        let kept = i64::from(self.snapshot().config.file.redis.counter_retention_days);
        // The default span never exceeds what is kept.
        let n = DEFAULT_DAYS.min(kept.max(1));
        let (from, to) = match (asked.from, asked.to) {
            (Some(f), Some(t)) => (f, t),
            (Some(f), None) => (f, f.saturating_add(n - 1)),
            (None, Some(t)) => (t.saturating_sub(n - 1), t),
            (None, None) => (today - n + 1, today),
        };
        if from > to {
            return Err(FieldError::new(format!("{field}.from_date"), "is after to_date").into());
        }
        if to - from + 1 > kept {
            let msg =
                format!("spans {} days; counters are kept {kept} days (redis.counter_retention_days)", to - from + 1);
            return Err(FieldError::new(field.to_string(), msg).into());
        }
        Ok(Days { from, to })
    }

    fn check_stage(&self, field: &str, stage: &str) -> Result<(), Error> {
        let snap = self.snapshot();
        let stages = snap.config.policy.journey.stages();
        if stages.iter().any(|s| s == stage) {
            Ok(())
        } else {
            Err(FieldError::new(field, format!("unknown stage {stage:?} (known: {})", stages.join(", "))).into())
        }
    }

    /// The funnel over `asked` days, optionally of one channel or of one segment.
    pub async fn funnel(
        &self,
        asked: AskedDays,
        channel: Option<&str>,
        segment: Option<&str>,
    ) -> Result<(Days, Vec<StageRow>), Error> {
        let q = OfferQuery {
            channel: channel.map(str::to_string),
            segment: segment.map(str::to_string),
            ..Default::default()
        };
        let (days, rows, _) = self.overview(asked, &q, false).await?;
        Ok((days, rows))
    }

    /// Offer performance over `asked` days: one row per offer × stage × channel (or per
    /// offer × stage of one segment).
    pub async fn offer_performance(&self, asked: AskedDays, q: &OfferQuery) -> Result<(Days, Vec<OfferRow>), Error> {
        let (days, _, offers) = self.overview(asked, q, true).await?;
        Ok((days, offers))
    }

    /// The funnel (of `q.channel`) and, when `with_offers`, the offer rows `q` selects, from one
    /// read of the counters (the console shows both).
    pub async fn overview(
        &self,
        asked: AskedDays,
        q: &OfferQuery,
        with_offers: bool,
    ) -> Result<(Days, Vec<StageRow>, Vec<OfferRow>), Error> {
        let snap = self.snapshot();
        if let Some(c) = &q.channel {
            Self::check_channel(&snap.config, "channel", c)?;
        }
        if let Some(s) = &q.stage {
            self.check_stage("stage", s)?;
        }
        if let Some(s) = &q.segment {
            if !snap.config.policy.segments.iter().any(|x| &x.id == s) {
                let known: Vec<&str> = snap.config.policy.segments.iter().map(|x| x.id.as_str()).collect();
                let msg = format!("unknown segment {s:?} (known: {})", known.join(", "));
                return Err(FieldError::new("segment", msg).into());
            }
            if q.channel.is_some() {
                let msg = "cannot be combined with segment: counts per segment are kept over every channel";
                return Err(FieldError::new("channel", msg).into());
            }
        }
        let days = self.report_days(asked, "range")?;
        let t = self.store.tallies(days).await?;
        let summed = t.sum(days.from, days.to);
        let stages = snap.config.policy.journey.stages();
        // A segment's counters are over every channel.
        let channel = q.channel.as_deref().filter(|_| q.segment.is_none());
        let funnel = analytics::funnel(stages, &summed, &t.current, channel, q.segment.as_deref());
        let offers = if with_offers {
            let filter = OfferFilter {
                offer: q.offer.as_deref(),
                stage: q.stage.as_deref(),
                channel: q.channel.as_deref(),
                segment: q.segment.as_deref(),
            };
            analytics::offers(&summed, filter)
        } else {
            Vec::new()
        };
        Ok((days, funnel, offers))
    }

    /// Every configured KPI's status today (and the gauges updated with it). Returns the day
    /// the windows end on.
    pub async fn kpis(&self) -> Result<(i64, Vec<KpiStatus>), Error> {
        let snap = self.snapshot();
        let policy = &snap.config.policy;
        let now = now_ms();
        let days = analytics::kpi_days(&policy.kpis, now);
        let t = self.store.tallies(days).await?;
        let status = analytics::kpis(&policy.kpis, policy.journey.stages(), &t, now);
        publish_gauges(
            &status,
            &analytics::funnel(policy.journey.stages(), &Default::default(), &t.current, None, None),
        );
        Ok((day_of(now), status))
    }

    /// Thompson sampling's posteriors in force.
    pub fn posteriors(&self) -> Arc<Posteriors> {
        self.posteriors.load_full()
    }

    /// Re-reads Thompson sampling's posteriors from the analytics counters of the last
    /// `decisions.exploration.window_days` (within the counters' retention) and puts them in
    /// force; returns how many (offer, stage) pairs have counts. Reads nothing when no policy
    /// or variant uses Thompson sampling.
    pub async fn refresh_posteriors(&self) -> Result<usize, Error> {
        let snap = self.snapshot();
        let e = &snap.config.file.decisions.exploration;
        let prior = (e.prior_alpha, e.prior_beta);
        if !snap.config.policy.uses_thompson() {
            self.posteriors.store(Arc::new(Posteriors::prior_only(prior)));
            return Ok(0);
        }
        let window = e.window_days.min(snap.config.file.redis.counter_retention_days).max(1);
        let days = Days::last(window, now_ms());
        let t = self.store.tallies(days).await?;
        let p = Posteriors::from_counters(&t.sum(days.from, days.to), &e.reward, prior);
        let n = p.len();
        self.posteriors.store(Arc::new(p));
        metrics::gauge!("touchpoint_thompson_posteriors").set(n as f64);
        Ok(n)
    }

    /// Refreshes the KPI gauges every `server.kpi_refresh_seconds` (0: never) until the engine
    /// is dropped.
    pub fn spawn_kpi_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.spawn_periodic(
            "KPI refresh",
            |c| c.file.server.kpi_refresh_seconds,
            |e| Box::pin(async move { e.kpis().await.map(drop) }),
        )
    }

    /// Refreshes Thompson sampling's posteriors every `decisions.exploration.refresh_seconds`
    /// until the engine is dropped.
    pub fn spawn_posterior_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.spawn_periodic(
            "posterior refresh",
            |c| c.file.decisions.exploration.refresh_seconds,
            |e| Box::pin(async move { e.refresh_posteriors().await.map(drop) }),
        )
    }

    /// Runs `task` every `period(config)` seconds (0: skip, look again in a second) until the
    /// engine is dropped; a failure is logged and retried next period.
    fn spawn_periodic(
        self: &Arc<Self>,
        name: &'static str,
        period: fn(&crate::config::Config) -> u64,
        task: for<'a> fn(&'a Engine) -> futures::future::BoxFuture<'a, Result<(), Error>>,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(engine) = weak.upgrade() else { return };
                let period = period(&engine.snapshot().config);
                if period > 0
                    && let Err(e) = task(&engine).await
                {
                    tracing::warn!(error = %e, "{name} failed");
                }
                drop(engine);
                tokio::time::sleep(Duration::from_secs(period.max(1))).await;
            }
        })
    }
}

/// The KPI and stage gauges: `touchpoint_kpi_value` (NaN without data), `touchpoint_kpi_target`,
/// `touchpoint_kpi_status` (1 met, 0 missed, -1 no data), `touchpoint_stage_users`.
fn publish_gauges(kpis: &[KpiStatus], stages: &[StageRow]) {
    for k in kpis {
        let labels =
            [("kpi", k.kpi.name.clone()), ("stage", k.kpi.stage.clone()), ("metric", k.kpi.metric.name().to_string())];
        metrics::gauge!("touchpoint_kpi_value", &labels).set(k.value.unwrap_or(f64::NAN));
        metrics::gauge!("touchpoint_kpi_target", &labels).set(k.kpi.target);
        let status = match k.status {
            Status::Met => 1.0,
            Status::Missed => 0.0,
            Status::NoData => -1.0,
        };
        metrics::gauge!("touchpoint_kpi_status", &labels).set(status);
    }
    for s in stages {
        metrics::gauge!("touchpoint_stage_users", "stage" => s.stage.clone()).set(s.current);
    }
}
