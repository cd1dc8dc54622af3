//! Kevin Hillstrom's e-mail test (`data/hillstrom.csv.gz`) run through the engine: every
//! customer decided on the `email` channel in the `hillstrom` experiment, then their visit,
//! conversion and spend reported back: as outcomes of the e-mail decision in the e-mail arms,
//! as events (a page view, a purchase) in the no-e-mail arm, which gets no e-mail to react to.
//!
//! The file's arms were randomised by Hillstrom. To reproduce that exact split, each customer
//! gets a user id that the engine's own hash puts in the file's arm (`h<row>-<k>` for the
//! first k that does), so the engine's assignment and the file agree user for user.
use crate::domain::decision::DecisionQuery;
use crate::domain::event::Event;
use crate::domain::outcome::{OutcomeKind, OutcomeRecord};
use crate::domain::profile::AttrValue;
use crate::domain::results::ExperimentReport;
use crate::engine::{Engine, Error};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The experiment definition (examples/hillstrom-experiment.toml) appended to the example config.
pub const HILLSTROM_EXPERIMENT: &str = include_str!("../examples/hillstrom-experiment.toml");
const EXAMPLE: &str = include_str!("../examples/touchpoint.toml");

/// The example config with the Hillstrom experiment, over `redis_url` (or memory://).
pub fn config(redis_url: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
    let src = format!("{EXAMPLE}\n{HILLSTROM_EXPERIMENT}");
    crate::config::Config::from_toml(
        &src,
        "examples/hillstrom-experiment.toml",
        [("TOUCHPOINT_REDIS_URL".to_string(), redis_url.to_string())],
    )
}

struct Row {
    arm: &'static str,
    visit: bool,
    conversion: bool,
    spend: f64,
    attributes: BTreeMap<String, AttrValue>,
}

fn arm(segment: &str) -> Option<&'static str> {
    match segment {
        "Mens E-Mail" => Some("mens_email"),
        "Womens E-Mail" => Some("womens_email"),
        "No E-Mail" => Some("no_email"),
        _ => None,
    }
}

/// Reads the file, plain or gzip-compressed.
fn read(path: &Path) -> anyhow::Result<Vec<Row>> {
    let file = crate::io::open_maybe_gz(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
    let header: Vec<String> = reader.headers()?.iter().map(String::from).collect();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| anyhow::anyhow!("no column {name} in {}", path.display()))
    };
    let (seg, visit, conv, spend) = (col("segment")?, col("visit")?, col("conversion")?, col("spend")?);
    let attrs: Vec<(usize, &str)> = ["recency", "history", "mens", "womens", "zip_code", "newbie", "channel"]
        .iter()
        .filter_map(|n| col(n).ok().map(|i| (i, *n)))
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let f = rec.map_err(|e| anyhow::anyhow!("line {}: {e}", i + 2))?;
        let arm = arm(&f[seg]).ok_or_else(|| anyhow::anyhow!("line {}: unknown segment {:?}", i + 2, &f[seg]))?;
        let attributes = attrs
            .iter()
            .map(|(c, n)| {
                let v = &f[*c];
                (
                    format!("hs_{n}"),
                    v.parse::<f64>().map(AttrValue::Num).unwrap_or_else(|_| AttrValue::Str(v.to_string())),
                )
            })
            .collect();
        let spend = f[spend].parse().map_err(|_| anyhow::anyhow!("line {}: spend {:?}", i + 2, &f[spend]))?;
        rows.push(Row { arm, visit: &f[visit] == "1", conversion: &f[conv] == "1", spend, attributes });
    }
    Ok(rows)
}

/// Runs every customer of the file (plain or `.gz`) through the engine and returns the
/// experiment's report.
pub async fn run(engine: Arc<Engine>, csv: &Path) -> anyhow::Result<ExperimentReport> {
    let rows = read(csv)?;
    let snap = engine.snapshot();
    let experiment = snap
        .config
        .policy
        .experiments
        .iter()
        .find(|e| e.id == "hillstrom")
        .ok_or_else(|| anyhow::anyhow!("the config has no hillstrom experiment"))?
        .clone();
    let results = futures::stream::iter(rows.into_iter().enumerate())
        .map(|(i, row)| {
            let engine = engine.clone();
            let experiment = &experiment;
            async move {
                let user = (0..)
                    .map(|k| format!("h{i}-{k}"))
                    .find(|u| experiment.variant_of(u).name == row.arm)
                    .expect("some k lands in every arm");
                engine.put_profile(&user, row.attributes, vec![]).await?;
                let query = DecisionQuery {
                    user_id: user.clone(),
                    channel: "email".into(),
                    placement: String::new(),
                    context: Default::default(),
                    limit: 1,
                    explain: false,
                };
                let d = engine.decide(query, None).await?;
                if d.record.degraded {
                    return Err(Error::Unavailable(d.degraded_reason.unwrap_or_default()));
                }
                let at = d.record.at + 1000;
                match d.offers.first() {
                    Some(offer) => {
                        let outcome = |kind, value| OutcomeRecord {
                            decision_id: d.record.decision_id.clone(),
                            user_id: user.clone(),
                            offer_id: offer.offer_id.clone(),
                            outcome: kind,
                            value,
                            at,
                        };
                        if row.visit {
                            engine.record_outcome(outcome(OutcomeKind::Click, 0.0)).await?;
                        }
                        if row.conversion {
                            engine.record_outcome(outcome(OutcomeKind::Conversion, row.spend)).await?;
                        }
                    }
                    None => {
                        let event = |kind: &str, value| Event {
                            event_id: format!("{user}-{kind}"),
                            user_id: user.clone(),
                            event_type: kind.into(),
                            timestamp: at,
                            channel: "web".into(),
                            offer_id: String::new(),
                            value,
                            properties: Default::default(),
                        };
                        let mut events = Vec::new();
                        if row.visit {
                            events.push(event("page_view", 0.0));
                        }
                        if row.conversion {
                            events.push(event("purchase", row.spend));
                        }
                        if !events.is_empty() {
                            engine.record_events(events).await?;
                        }
                    }
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e.into());
    }
    Ok(engine.experiment_results("hillstrom").await?)
}
