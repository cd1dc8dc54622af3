//! `touchpoint experiments`: read an experiment's results from a running server, or run
//! the Hillstrom e-mail test through the engine.
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use touchpoint::domain::experiment::VariantCounters;
use touchpoint::domain::results::{ExperimentReport, VariantResult};
use touchpoint::domain::stats::Comparison;
use touchpoint::engine::Engine;
use touchpoint::grpc::pb::{self, experiments_client::ExperimentsClient};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Per-variant exposure, visits, conversions, revenue, lifts with 95% CIs, p-values, SRM.
    Report {
        experiment_id: String,
        #[command(flatten)]
        conn: super::keys::Conn,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Run Kevin Hillstrom's e-mail test through the engine and print its report.
    Hillstrom {
        /// The data set, plain or gzip-compressed; the default is the copy vendored in the
        /// repository, relative to the working directory (the repository root).
        #[arg(long, default_value = "data/hillstrom.csv.gz")]
        csv: PathBuf,
        /// Store: memory:// (default) or a Redis URL.
        #[arg(long, default_value = "memory://")]
        redis_url: String,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn print(r: &ExperimentReport, f: Format) -> anyhow::Result<()> {
    match f {
        Format::Table => print!("{}", r.table()),
        Format::Csv => print!("{}", r.csv()),
        Format::Json => println!("{}", serde_json::to_string_pretty(r)?),
    }
    Ok(())
}

/// The wire form back into the report the formatters print.
fn from_pb(r: pb::ExperimentResults) -> ExperimentReport {
    let cmp = |ok: bool, lift: f64, ci: Option<pb::Interval>, p: f64| {
        ci.filter(|_| ok).map(|ci| Comparison { lift, ci: (ci.low, ci.high), statistic: f64::NAN, p_value: p })
    };
    ExperimentReport {
        experiment_id: r.experiment_id,
        control: r.control,
        // Absent on the wire when the server could not compute it: the report says "no data".
        srm_chi_square: r.srm_chi_square,
        srm_p_value: r.srm_p_value,
        srm_alarm: r.srm_alarm,
        variants: r
            .variants
            .into_iter()
            .map(|v| VariantResult {
                is_control: v.is_control,
                expected_share: v.expected_share,
                counters: VariantCounters {
                    exposed: v.exposed_users,
                    decisions: 0,
                    visitors: v.visitors,
                    converters: v.converted_users,
                    revenue: v.revenue,
                    revenue_sq: 0.0,
                },
                visit_rate: v.visit_rate,
                conversion_rate: v.conversion_rate,
                revenue_per_user: v.revenue_per_user,
                visit: cmp(!v.is_control, v.visit_lift, v.visit_lift_ci, v.visit_p_value),
                conversion: cmp(!v.is_control, v.conversion_lift, v.conversion_lift_ci, v.conversion_p_value),
                revenue: cmp(!v.is_control, v.revenue_lift, v.revenue_lift_ci, v.revenue_p_value),
                variant: v.variant,
            })
            .collect(),
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Cmd::Report { experiment_id, conn, format } => {
            let channel = conn.connect().await?;
            let r = ExperimentsClient::new(channel)
                .get_experiment_results(pb::GetExperimentResultsRequest { experiment_id })
                .await?
                .into_inner();
            print(&from_pb(r), format)
        }
        Cmd::Hillstrom { csv, redis_url, format } => {
            let config = touchpoint::hillstrom::config(&redis_url)?;
            let store = touchpoint::store::open(&config.file.redis).await?;
            let engine = Arc::new(Engine::new(store, config, None, vec![]));
            let t = std::time::Instant::now();
            let report = touchpoint::hillstrom::run(engine, &csv).await?;
            eprintln!("ran {} through the engine in {:.1?}", csv.display(), t.elapsed());
            print(&report, format)
        }
    }
}
