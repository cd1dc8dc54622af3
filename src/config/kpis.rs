//! `[[kpis]]`: targets for the funnel and offer metrics of a stage (issue 13).
use super::Problems;
use super::file::FileConfig;
use crate::domain::analytics::{Kpi, Metric};

/// The longest KPI window: its trend reads the window before it too, and a day's counters are
/// kept `redis.counter_retention_days`.
fn longest_window(file: &FileConfig) -> u32 {
    (file.redis.counter_retention_days / 2).max(1)
}

/// The KPIs without problems; each problem is recorded with its entry.
pub fn compile(file: &FileConfig, p: &mut Problems) -> Vec<Kpi> {
    let mut out: Vec<Kpi> = Vec::new();
    for (i, k) in file.kpis.iter().enumerate() {
        let i = file.at("kpis", i);
        let entry = format!("kpis[{i}]");
        let before = p.list.len();
        if !file.journey.stages.contains(&k.stage) {
            p.add(format!("{entry}.stage"), format!("unknown stage {:?}", k.stage));
        }
        let metric = Metric::parse(&k.metric);
        if metric.is_none() {
            let names: Vec<&str> = Metric::ALL.iter().map(|(_, n)| *n).collect();
            p.add(format!("{entry}.metric"), format!("unknown metric {:?}: one of {}", k.metric, names.join(", ")));
        }
        if !k.target.is_finite() {
            p.add(format!("{entry}.target"), "must be a finite number");
        }
        let longest = longest_window(file);
        if k.window_days == 0 || k.window_days > longest {
            p.add(
                format!("{entry}.window_days"),
                format!(
                    "must be 1..={longest} (half of redis.counter_retention_days: the trend reads the window before)"
                ),
            );
        }
        let at_most = match k.direction.as_deref() {
            None => metric.is_some_and(Metric::lower_is_better),
            Some("at_least") => false,
            Some("at_most") => true,
            Some(d) => {
                p.add(format!("{entry}.direction"), format!("{d:?} is not \"at_least\" or \"at_most\""));
                false
            }
        };
        if let Some(c) = k.channel.as_ref().filter(|c| !file.decisions.channels.contains(c)) {
            p.add(format!("{entry}.channel"), format!("unknown channel {c:?}"));
        }
        if let Some(o) = &k.offer {
            if !file.offers.iter().any(|x| &x.id == o) && !file.unread_ids.contains(o) {
                p.add(format!("{entry}.offer"), format!("unknown offer {o:?}"));
            }
            if metric.is_some_and(|m| !m.is_offer_metric()) {
                p.add(format!("{entry}.offer"), format!("metric {:?} is not an offer metric", k.metric));
            }
        }
        let name = k.name.clone().unwrap_or_else(|| format!("{}:{}", k.stage, k.metric));
        if out.iter().any(|o| o.name == name) {
            p.add(format!("{entry}.name"), format!("a KPI named {name:?} is already defined (give it a name)"));
        }
        if let (Some(metric), true) = (metric, p.list.len() == before) {
            out.push(Kpi {
                name,
                stage: k.stage.clone(),
                metric,
                target: k.target,
                window_days: k.window_days,
                at_most,
                channel: k.channel.clone(),
                offer: k.offer.clone(),
            });
        }
    }
    out
}
