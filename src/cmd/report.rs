//! `touchpoint report funnel|offers|kpis`: journey analytics from a running server (the
//! Analytics RPCs) as a table, CSV or canonical protobuf JSON.
use clap::{Subcommand, ValueEnum};
use touchpoint::grpc::pb::{self, analytics_client::AnalyticsClient};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

/// Where to ask and how to print (every report takes them).
#[derive(clap::Args)]
struct Common {
    #[command(flatten)]
    conn: super::keys::Conn,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

/// `--from 2026-11-01 --to 2026-11-07` (UTC days; default: the 7 days ending today).
#[derive(clap::Args)]
struct Range {
    #[arg(long, value_name = "YYYY-MM-DD")]
    from: Option<String>,
    #[arg(long, value_name = "YYYY-MM-DD")]
    to: Option<String>,
}

impl Range {
    fn pb(self) -> Option<pb::DayRange> {
        Some(pb::DayRange { from_date: self.from.unwrap_or_default(), to_date: self.to.unwrap_or_default() })
    }
}

#[derive(Subcommand)]
enum What {
    /// Per stage: entered, advanced, advance rate, in stage now, lapses, time in stage.
    Funnel {
        #[command(flatten)]
        range: Range,
        /// Only counts caused on this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Only users in this segment when events moved them (every channel).
        #[arg(long, conflicts_with = "channel")]
        segment: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Per offer × stage × channel: decisions, outcomes, CTR, conversion rate, revenue.
    Offers {
        #[command(flatten)]
        range: Range,
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        stage: Option<String>,
        #[arg(long)]
        offer: Option<String>,
        /// Only decisions of users in this segment (rows over every channel).
        #[arg(long, conflicts_with = "channel")]
        segment: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Every configured KPI: value, target, status, trend.
    Kpis {
        #[command(flatten)]
        common: Common,
    },
}

/// A report as rows of text: printed aligned, or as CSV.
struct Rows {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Rows {
    fn table(&self) -> String {
        let mut width: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells.iter().zip(&width).map(|(c, w)| format!("{c:<w$}")).collect();
            padded.join("  ").trim_end().to_string() + "\n"
        };
        let mut out = line(self.header.clone());
        for r in &self.rows {
            out += &line(r.iter().map(String::as_str).collect());
        }
        out
    }

    fn csv(&self) -> String {
        let mut out = self.header.join(",") + "\n";
        for r in &self.rows {
            out += &(r.iter().map(|c| touchpoint::io::csv_cell(c)).collect::<Vec<_>>().join(",") + "\n");
        }
        out
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn funnel_rows(f: &pb::Funnel) -> Rows {
    Rows {
        header: vec![
            "stage",
            "entered",
            "advanced",
            "advance_rate",
            "in_stage",
            "lapses",
            "exits",
            "median_hours",
            "p90_hours",
        ],
        rows: f
            .stages
            .iter()
            .map(|s| {
                vec![
                    s.stage.clone(),
                    s.entered.to_string(),
                    s.advanced.to_string(),
                    opt(s.advance_rate),
                    s.in_stage.to_string(),
                    s.lapses.to_string(),
                    s.exits.to_string(),
                    opt(s.median_hours_in_stage),
                    opt(s.p90_hours_in_stage),
                ]
            })
            .collect(),
    }
}

fn offer_rows(o: &pb::OfferPerformance) -> Rows {
    Rows {
        header: vec![
            "offer",
            "stage",
            "channel",
            "decisions",
            "impressions",
            "clicks",
            "ctr",
            "accepts",
            "dismissals",
            "conversions",
            "conversion_rate",
            "revenue",
        ],
        rows: o
            .offers
            .iter()
            .map(|r| {
                vec![
                    r.offer_id.clone(),
                    r.stage.clone(),
                    r.channel.clone(),
                    r.decisions.to_string(),
                    r.impressions.to_string(),
                    r.clicks.to_string(),
                    opt(r.ctr),
                    r.accepts.to_string(),
                    r.dismissals.to_string(),
                    r.conversions.to_string(),
                    opt(r.conversion_rate),
                    format!("{:.2}", r.revenue),
                ]
            })
            .collect(),
    }
}

fn kpi_rows(k: &pb::Kpis) -> Rows {
    Rows {
        header: vec![
            "kpi",
            "stage",
            "metric",
            "window_days",
            "direction",
            "target",
            "value",
            "previous",
            "status",
            "trend",
        ],
        rows: k
            .kpis
            .iter()
            .map(|k| {
                vec![
                    k.name.clone(),
                    k.stage.clone(),
                    k.metric.clone(),
                    k.window_days.to_string(),
                    k.direction.clone(),
                    k.target.to_string(),
                    opt(k.value),
                    opt(k.previous),
                    k.status.clone(),
                    k.trend.clone(),
                ]
            })
            .collect(),
    }
}

fn print<M: prost::Message>(format: Format, name: &str, msg: &M, rows: Rows, title: String) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let pool = touchpoint::grpc::json::descriptors();
            println!("{}", serde_json::to_string_pretty(&touchpoint::grpc::json::message_json(&pool, name, msg))?);
        }
        Format::Csv => print!("{}", rows.csv()),
        Format::Table => print!("{title}\n{}", rows.table()),
    }
    Ok(())
}

fn range_title(r: &Option<pb::DayRange>) -> String {
    r.as_ref().map(|r| format!("{} .. {} (UTC)", r.from_date, r.to_date)).unwrap_or_default()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let common = match &args.what {
        What::Funnel { common, .. } | What::Offers { common, .. } | What::Kpis { common } => common,
    };
    let format = common.format;
    let mut client = AnalyticsClient::new(common.conn.connect().await?);
    match args.what {
        What::Funnel { range, channel, segment, .. } => {
            let req = pb::GetFunnelRequest {
                range: range.pb(),
                channel: channel.unwrap_or_default(),
                segment: segment.unwrap_or_default(),
            };
            let f = client.get_funnel(req).await?.into_inner();
            let title = format!(
                "funnel {}{}",
                range_title(&f.range),
                if f.channel.is_empty() { String::new() } else { format!(", channel {}", f.channel) }
            );
            print(format, "touchpoint.v1.Funnel", &f, funnel_rows(&f), title)
        }
        What::Offers { range, channel, stage, offer, segment, .. } => {
            let req = pb::GetOfferPerformanceRequest {
                range: range.pb(),
                channel: channel.unwrap_or_default(),
                stage: stage.unwrap_or_default(),
                offer_id: offer.unwrap_or_default(),
                segment: segment.unwrap_or_default(),
            };
            let o = client.get_offer_performance(req).await?.into_inner();
            let title = format!("offers {}", range_title(&o.range));
            print(format, "touchpoint.v1.OfferPerformance", &o, offer_rows(&o), title)
        }
        What::Kpis { .. } => {
            let k = client.get_kpis(pb::GetKpisRequest {}).await?.into_inner();
            let title = format!("KPIs as of {}", k.as_of);
            print(format, "touchpoint.v1.Kpis", &k, kpi_rows(&k), title)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_align_and_quote() {
        let r = Rows { header: vec!["a", "bb"], rows: vec![vec!["x,y".into(), "1".into()]] };
        assert_eq!(r.table(), "a    bb\nx,y  1\n");
        assert_eq!(r.csv(), "a,bb\n\"x,y\",1\n");
    }
}
