//! Command-line commands of the `touchpoint` binary.
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use touchpoint::config::{Config, EXIT_BAD_CONFIG};
use touchpoint::engine::Engine;

pub mod archive;
pub mod bench;
pub mod client;
pub mod demo;
pub mod experiments;
pub mod keys;
pub mod report;
pub mod serve;

#[derive(Parser)]
#[command(name = "touchpoint", version, about = "Next-best-action engine served over gRPC")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (and /metrics) with a config file.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// gRPC address (overrides server.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Redis URL (overrides redis.url); memory:// for the embedded store.
        #[arg(long)]
        redis_url: Option<String>,
        /// Metrics address (overrides server.metrics_listen).
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Validate a config file and exit (64 when it is bad, with every problem and its line).
    CheckConfig {
        /// The config file (or give it as `--config FILE`, like the other commands).
        #[arg(required_unless_present = "config", conflicts_with = "config", value_name = "FILE")]
        file: Option<PathBuf>,
        /// The config file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Seed the in-memory store with simulated journeys, serve, and run a short scripted session.
    Demo(demo::Args),
    /// Call a running server.
    Client(client::Args),
    /// Experiment results, and the Hillstrom replay.
    Experiments(experiments::Args),
    /// Journey analytics from a running server: `report funnel|offers|kpis [--format csv|json]`.
    Report(report::Args),
    /// Load generator: Decide end to end vs a bare tonic server, side by side.
    Bench(bench::Args),
    /// API keys: `keys new --id NAME --role decide [--role ingest]`.
    Keys(keys::Args),
    /// Archive the journey and decision logs into rolling Parquet files (consumer group
    /// `archive`; entries leave Redis only once archived). Pair with `redis.archive = true`.
    Archive(archive::Args),
    /// Re-run a logged decision under the current config and models and show what differs
    /// (exit code 3 when the decision would now differ).
    Replay {
        decision_id: String,
        #[arg(long)]
        config: PathBuf,
        /// Redis URL (overrides redis.url).
        #[arg(long)]
        redis_url: Option<String>,
    },
}

/// Loads a config with environment and command-line overrides; a bad one ends the process with 64.
pub fn load_config(path: &Path, overrides: Vec<(String, String)>) -> Result<(Config, Vec<(String, String)>), ExitCode> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.extend(overrides);
    match Config::load(path, vars.clone()) {
        Ok(c) => Ok((c, vars)),
        Err(e) => {
            let n = e.problems.len();
            eprintln!("bad config ({n} problem{}):\n{e}", if n == 1 { "" } else { "s" });
            Err(ExitCode::from(EXIT_BAD_CONFIG as u8))
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, listen, redis_url, metrics_listen } => {
            let overrides = [("LISTEN", listen), ("REDIS_URL", redis_url), ("METRICS_LISTEN", metrics_listen)]
                .into_iter()
                .filter_map(|(k, v)| {
                    let key = match k {
                        "REDIS_URL" => "TOUCHPOINT_REDIS_URL".to_string(),
                        other => format!("TOUCHPOINT_SERVER_{other}"),
                    };
                    v.map(|v| (key, v))
                })
                .collect();
            let (cfg, vars) = match load_config(&config, overrides) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            if let Err(e) = cfg.check_serving() {
                eprintln!("bad config (1 problem):\n{e}");
                return Ok(ExitCode::from(EXIT_BAD_CONFIG as u8));
            }
            let store = touchpoint::store::open(&cfg.file.redis).await.context("opening the store")?;
            let server = cfg.file.server.clone();
            let engine = Arc::new(Engine::new(store, cfg, Some(config), vars));
            serve::run(engine, &server, None).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file, config } => {
            let file = config.or(file).expect("clap requires one of FILE and --config");
            Ok(check_config(&file))
        }
        Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Replay { decision_id, config, redis_url } => {
            let overrides = redis_url.map(|u| ("TOUCHPOINT_REDIS_URL".to_string(), u)).into_iter().collect();
            let (cfg, _) = match load_config(&config, overrides) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let store = touchpoint::store::open(&cfg.file.redis).await.context("opening the store")?;
            let policy = cfg.policy.clone();
            let version = cfg.version.clone();
            let engine = Engine::new(store, cfg, None, vec![]);
            let record = match engine.find_decision(&decision_id).await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    eprintln!("decision {decision_id} is not in the decision log");
                    return Ok(ExitCode::from(2));
                }
                // Erased with its user (DeleteProfile): the entry is there but unreadable.
                Err(touchpoint::engine::Error::NotFound(m)) => {
                    eprintln!("{m}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            };
            println!(
                "decision {} for {} on {} at {} (config {}, models {:?})",
                record.decision_id,
                record.user_id,
                record.channel,
                record.at,
                record.config_version,
                record.model_versions
            );
            let chosen: Vec<&str> = record.chosen.iter().map(|c| c.offer_id.as_str()).collect();
            println!("logged: stage {}, segments {:?}, chosen {:?}", record.stage, record.segments, chosen);
            let replayed = record.replay(&policy);
            let now: Vec<&str> = replayed.chosen.iter().map(|c| c.offer_id.as_str()).collect();
            println!(
                "now (config {version}): stage {}, segments {:?}, chosen {:?}",
                replayed.stage, replayed.segments, now
            );
            let diffs = record.differences(&replayed);
            if diffs.is_empty() {
                println!("same decision");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("differs:");
                for d in diffs {
                    println!("  {d}");
                }
                Ok(ExitCode::from(3))
            }
        }
        Command::Client(args) => client::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Experiments(args) => experiments::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Keys(args) => keys::run(args).map(|()| ExitCode::SUCCESS),
        Command::Archive(args) => archive::run(args).await,
        Command::Report(args) => report::run(args).await.map(|()| ExitCode::SUCCESS),
    }
}

/// `check-config`: a summary of a good config, or every problem of a bad one (exit 64),
/// including what a server needs (a key, unless authentication is explicitly off).
fn check_config(file: &Path) -> ExitCode {
    match load_config(file, vec![]) {
        Ok((c, _)) if c.check_serving().is_err() => {
            eprintln!("bad config (1 problem):\n{}", c.check_serving().unwrap_err());
            ExitCode::from(EXIT_BAD_CONFIG as u8)
        }
        Ok((c, _)) => {
            println!(
                "{}: ok (version {}, {} stages, {} offers, channels {})",
                file.display(),
                c.version,
                c.policy.journey.stages().len(),
                c.policy.catalogue.offers().len(),
                c.file.decisions.channels.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
