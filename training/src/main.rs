//! touchpoint-train: journey logs and feature tables in, evaluated model artifacts out;
//! publishing to and rolling back in the Redis model registry.
//!
//! Over 500 lines on purpose: the clap definitions of every subcommand, with the help text of
//! every flag, and one thin function per subcommand; the work itself is in the library modules.
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use touchpoint::domain::MS_PER_DAY;
use touchpoint::domain::features::FEATURE_NAMES;
use touchpoint::domain::journey::JourneyDef;
use touchpoint::domain::model::{BoundModel, ModelArtifact};
use touchpoint_train::data::{BadRows, fingerprint, parse_time, read_events};
use touchpoint_train::irls::Irls;
use touchpoint_train::journey::{Target, build};
use touchpoint_train::metrics::evaluate;
use touchpoint_train::train::{self, ArtifactInfo};
use touchpoint_train::{bench, gbdt, report, table};

#[derive(Parser)]
#[command(name = "touchpoint-train", version, about = "Offline trainer for Touchpoint propensity models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Store {
    /// Redis URL (with --cluster: comma-separated seed nodes).
    #[arg(long)]
    redis_url: String,
    #[arg(long)]
    cluster: bool,
    #[arg(long, default_value = "tp")]
    key_prefix: String,
}

/// Which model kind to fit.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModelChoice {
    /// Logistic regression (IRLS) over standardised features.
    Logistic,
    /// Gradient-boosted trees (histogram splits, early stopping).
    Gbdt,
    /// Cross-validate both on the same folds and fit the one with the higher CV ROC AUC.
    Auto,
}

#[derive(clap::Args, Clone)]
#[command(next_help_heading = "Gradient-boosted trees (--model gbdt or auto)")]
struct GbdtArgs {
    /// Shrinkage applied to every tree's leaf values.
    #[arg(long, default_value_t = 0.1)]
    learning_rate: f64,
    /// Most boosting rounds (early stopping usually ends sooner).
    #[arg(long, default_value_t = 100)]
    max_trees: usize,
    /// Most leaves a tree.
    #[arg(long, default_value_t = 31)]
    max_leaves: usize,
    /// Deepest a leaf may be (0: limited by --max-leaves only).
    #[arg(long, default_value_t = 0)]
    max_depth: usize,
    /// Fewest training rows in a leaf.
    #[arg(long, default_value_t = 20)]
    min_leaf: usize,
    /// L2 penalty on leaf values.
    #[arg(long, default_value_t = 0.0)]
    l2: f64,
    /// Histogram bins a feature (2..=255).
    #[arg(long, default_value_t = 255)]
    max_bins: usize,
    /// Stop after this many rounds without a better validation log-loss (0: off).
    #[arg(long, default_value_t = 10)]
    early_stopping: usize,
    /// Share of the training rows held out for early stopping.
    #[arg(long, default_value_t = 0.1)]
    validation_fraction: f64,
}

impl GbdtArgs {
    fn params(&self, seed: u64) -> gbdt::Params {
        gbdt::Params {
            learning_rate: self.learning_rate,
            max_trees: self.max_trees,
            max_leaves: self.max_leaves,
            max_depth: self.max_depth,
            min_leaf: self.min_leaf,
            l2: self.l2,
            max_bins: self.max_bins,
            patience: self.early_stopping,
            validation_fraction: self.validation_fraction,
            seed,
        }
    }
}

/// The artifact params that describe a GBDT fit.
fn gbdt_params(p: &mut BTreeMap<String, serde_json::Value>, g: &gbdt::Params, fit: &gbdt::GbdtFit) {
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(g) {
        p.extend(m.into_iter().map(|(k, v)| (format!("gbdt_{k}"), v)));
    }
    p.insert("trees".to_string(), serde_json::json!(fit.trees.len()));
    p.insert("stopped_early".to_string(), serde_json::json!(fit.stopped_early));
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic journey log (JSON Lines) and each user's ground truth (CSV).
    Simulate {
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 120)]
        days: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// End of the simulated window (date); default: now.
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// Ground truth (user, churned, P(churn), P(purchase) within --horizon, attributes).
        #[arg(long)]
        truth: Option<PathBuf>,
        #[arg(long, default_value_t = 30)]
        horizon: u32,
    },
    /// Dump the server's journey-log stream as JSON Lines.
    Export {
        #[command(flatten)]
        store: Store,
        #[arg(long)]
        out: PathBuf,
        /// Also the journey log archived here (`touchpoint archive`), first; each event once.
        #[arg(long)]
        archive: Option<PathBuf>,
    },
    /// Fit a churn or purchase model on a journey log, with a time-based holdout.
    FitJourney {
        /// JSON Lines or CSV of events.
        #[arg(long)]
        events: PathBuf,
        #[arg(long, value_enum)]
        target: Target,
        /// Features as of this date; labels from the horizon after it (the holdout).
        #[arg(long)]
        cutoff: String,
        #[arg(long, default_value_t = 30)]
        horizon: u32,
        /// Inverse L2 strength (scikit-learn's C).
        #[arg(long, default_value_t = 1.0)]
        c: f64,
        /// Model kind: logistic or gbdt (auto needs cross-validation: fit-table only).
        #[arg(long, value_enum, default_value = "logistic")]
        model: ModelChoice,
        #[command(flatten)]
        gbdt: GbdtArgs,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        report: Option<PathBuf>,
        /// Also write the training and holdout feature tables (CSV) for outside comparison.
        #[arg(long)]
        export_features: Option<PathBuf>,
        /// The server's config: its journey (stages, triggers, purchase event) shapes the
        /// features and labels. Default: the five-stage default journey.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        max_bad_rows: usize,
    },
    /// Fit a model on a feature table (CSV) with a named 0/1 label column.
    ///
    /// Reads `,` `;` tab or `|` separated files (detected from the header line), plain or
    /// gzip-compressed. Numeric columns are used as they are, categorical ones one-hot encoded;
    /// missing values (blank, NA, NaN, ?) are imputed (median / most frequent) with a
    /// `<column>_missing` indicator. Exits 1 with one `error: ...` line on bad input or when the
    /// solver does not converge (no model is written then).
    #[command(after_help = "Examples:
  touchpoint-train fit-table --csv data/online_shoppers_intention.csv.gz --label Revenue --cv 5 \\
      --out model.json --report report.html
  touchpoint-train fit-table --csv bank.csv --label y --drop duration --cv 5 --out bank.json
  touchpoint-train fit-table --csv churn.tsv --delimiter tab --label Churn --drop customerID --out churn.json")]
    FitTable {
        /// The feature table: CSV with a header line, optionally gzip-compressed (.gz).
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
        /// The label column: 1/0, true/false, yes/no (rows with another value are bad rows).
        #[arg(long, value_name = "COLUMN")]
        label: String,
        /// Columns to leave out, comma-separated (ids, leaks, the other labels), e.g. `--drop id,spend`.
        #[arg(long, value_delimiter = ',', value_name = "COL,...")]
        drop: Vec<String>,
        /// Keep only rows where COLUMN=VALUE (the column is then not a feature), e.g. `--where segment=A`.
        #[arg(long = "where", value_name = "COLUMN=VALUE")]
        filter: Option<String>,
        /// The field delimiter: `,` `;` `|` `tab` or any single character; default: detected
        /// from the header line (the most frequent of `,` `;` tab `|`).
        #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
        delimiter: Option<u8>,
        /// Refuse a categorical column with more distinct values than this (an id column would
        /// become thousands of one-hot columns); drop the column or raise the limit.
        #[arg(long, default_value_t = 50, value_name = "N")]
        max_levels: usize,
        /// Stratified cross-validation folds (0 or 1: none); the report then shows out-of-fold
        /// predictions.
        #[arg(long, default_value_t = 0, value_name = "K")]
        cv: usize,
        /// Inverse L2 regularisation strength (scikit-learn's C); smaller is stronger.
        #[arg(long, default_value_t = 1.0)]
        c: f64,
        /// Model kind: logistic, gbdt, or auto (both cross-validated, the better one fitted).
        #[arg(long, value_enum, default_value = "logistic")]
        model: ModelChoice,
        #[command(flatten)]
        gbdt: GbdtArgs,
        /// Seed of the fold assignment.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The model's name in the artifact and the registry.
        #[arg(long, default_value = "table")]
        name: String,
        /// Where to write the model artifact (JSON); not written when the fit fails.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also write an HTML report (ROC, calibration, lift, coefficients).
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Write each row's cross-validation fold as CSV `row,fold`, where `row` is the 1-based
        /// data row number in the input file (the first line after the header is row 1; rows
        /// filtered out or skipped as bad are absent).
        #[arg(long, value_name = "FILE")]
        folds_out: Option<PathBuf>,
        /// Fail when more than N rows are unreadable (wrong field count, a label that is not
        /// 0/1, text in a numeric column); they are skipped and counted up to N.
        #[arg(long, default_value_t = 0, value_name = "N")]
        max_bad_rows: usize,
    },
    /// Put a model in the registry and point `current` at it, unless it scores worse than the
    /// current model on the same holdout (--force publishes anyway).
    Publish {
        #[command(flatten)]
        store: Store,
        model: PathBuf,
        /// Journey log to evaluate both models on the new model's holdout.
        #[arg(long)]
        events: Option<PathBuf>,
        /// The servers' config: the model is bound against its features (built-in and
        /// `[[features]]`) as the servers will bind it (default: --gate-config, else the
        /// built-in features only).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Counterfactual gate: the running config. The running policy with the new model
        /// swapped in is evaluated on the decision log of this store (SNIPS), and refused when
        /// the lower bound of its 95% CI is below the running policy's estimate minus
        /// --gate-margin.
        #[arg(long)]
        gate_config: Option<PathBuf>,
        /// The reward the gate compares.
        #[arg(long, value_enum, default_value = "click")]
        gate_reward: touchpoint_train::policy_eval::Reward,
        /// How far below the running policy's estimate the candidate's lower bound may be.
        #[arg(long, default_value_t = 0.0)]
        gate_margin: f64,
        /// Outcomes up to this many days after a decision count for the gate.
        #[arg(long, default_value_t = 7.0)]
        gate_window_days: f64,
        #[arg(long)]
        force: bool,
    },
    /// Point a model's `current` back at the previous version.
    Rollback {
        #[command(flatten)]
        store: Store,
        name: String,
    },
    /// The decision log joined with its outcomes: one CSV row per (decision, offer shown) with
    /// the context, features, candidates' scores, rank, logged selection probability and the
    /// outcomes within --window-days (erased users' entries are left out).
    ExportDecisions {
        #[command(flatten)]
        store: Store,
        #[arg(long)]
        out: PathBuf,
        /// Outcomes up to this many days after the decision count.
        #[arg(long, default_value_t = 7.0)]
        window_days: f64,
        /// Salt of the pseudonymous user ids (sha256(salt:user)); keep it to join exports.
        #[arg(long, default_value = "touchpoint")]
        salt: String,
        /// Also read the archive `touchpoint archive` wrote here (entries opened with the live
        /// keyrings; each entry once).
        #[arg(long)]
        archive: Option<PathBuf>,
    },
    /// Off-policy evaluation of logged bandit data from any system: IPS, self-normalised IPS
    /// and doubly robust estimates of a candidate policy's value with 95% CIs and the
    /// effective sample size (CSV columns: reward, propensity, target_probability, optional
    /// dm_estimate and dm_logged; see `ope.rs`).
    ///
    /// Or on Touchpoint's own decision log: --config names the running config (its [redis]
    /// holds the log); each --candidate config and each --candidate-model (the running config
    /// with that model swapped in) is replayed on every logged decision and estimated against
    /// the running config's own estimate.
    #[command(
        after_help = "Examples:\n  touchpoint-train evaluate --csv logged.csv\n  touchpoint-train evaluate --config touchpoint.toml --candidate formula-b.toml --reward click\n  touchpoint-train evaluate --config touchpoint.toml --candidate-model purchase-v2.json --reward conversion"
    )]
    Evaluate {
        /// Logged decisions of any system (plain or gzip-compressed CSV).
        #[arg(long, required_unless_present = "config", conflicts_with = "config")]
        csv: Option<PathBuf>,
        /// The running config: its store holds the decision log, and it is the baseline.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A candidate config to evaluate (repeatable).
        #[arg(long, requires = "config")]
        candidate: Vec<PathBuf>,
        /// A candidate model artifact, evaluated as the running config with it swapped in
        /// (repeatable).
        #[arg(long, requires = "config")]
        candidate_model: Vec<PathBuf>,
        /// The reward of a decision's first offer.
        #[arg(long, value_enum, default_value = "click")]
        reward: touchpoint_train::policy_eval::Reward,
        /// Outcomes up to this many days after the decision count.
        #[arg(long, default_value_t = 7.0)]
        window_days: f64,
        /// Also read the decision log archived here (`touchpoint archive`).
        #[arg(long, requires = "config")]
        archive: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Per-offer response models from the decision log joined with its outcomes: for each
    /// offer shown, P(outcome within the window | the server's features), a logistic
    /// regression written as a `response:<offer>` artifact (serve it with
    /// `[models.response] <offer> = "file"` or publish it to the registry).
    FitResponses {
        #[command(flatten)]
        store: Store,
        /// Also read the decision log archived here (`touchpoint archive`).
        #[arg(long)]
        archive: Option<PathBuf>,
        /// The outcome modelled.
        #[arg(long, value_enum, default_value = "click")]
        reward: touchpoint_train::policy_eval::Reward,
        /// Outcomes up to this many days after the decision count.
        #[arg(long, default_value_t = 7.0)]
        window_days: f64,
        /// Where the artifacts go (`response-<offer>.json`).
        #[arg(long)]
        out_dir: PathBuf,
        /// Offers with fewer positives (or negatives) than this are skipped.
        #[arg(long, default_value_t = 10)]
        min_positives: usize,
    },
    /// A learned targeting policy on Hillstrom's randomised e-mail test: per-arm conversion
    /// models fitted on one half, the policy "send each customer the arm with the highest
    /// predicted uplift" estimated by IPS/SNIPS on the other half against each single arm.
    HillstromUplift {
        /// The Hillstrom file (plain or gzip-compressed CSV).
        #[arg(long, default_value = "data/hillstrom.csv.gz")]
        csv: PathBuf,
        /// Seed of the split into halves.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Logistic regression speed: IRLS vs linfa's stock solver on synthetic rows; writes
    /// the data as .npy for the scikit-learn comparison script.
    BenchLr(bench::Args),
}

/// `--delimiter`: a single character, or `tab`.
fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!("{s:?} is not a single ASCII character or `tab`")),
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?).with_context(|| format!("writing {}", path.display()))
}

fn redis_config(s: &Store) -> touchpoint::config::RedisConfig {
    touchpoint::config::RedisConfig {
        url: s.redis_url.clone(),
        cluster: s.cluster,
        key_prefix: s.key_prefix.clone(),
        command_timeout_ms: 10_000,
        ..Default::default()
    }
}

async fn open_store(s: &Store) -> anyhow::Result<std::sync::Arc<dyn touchpoint::store::Store>> {
    Ok(touchpoint::store::open(&redis_config(s)).await?)
}

/// The decision log of a store, with the archive under `archive` when given.
async fn decision_entries(
    cfg: &touchpoint::config::RedisConfig,
    archive: Option<&Path>,
) -> anyhow::Result<Vec<touchpoint::store::DecisionLogEntry>> {
    match archive {
        Some(dir) => {
            let retention = touchpoint::store::Retention::from_config(cfg);
            let s = touchpoint::store::redis::RedisStore::connect(cfg, retention).await?;
            Ok(s.decision_log_with_archive(dir).await?)
        }
        None => {
            let s = touchpoint::store::open(cfg).await?;
            let mut entries = Vec::new();
            s.export_decision_log(&mut |e| entries.push(e)).await?;
            Ok(entries)
        }
    }
}

fn write_features(
    path: &Path,
    names: &[String],
    sets: &[(&str, &ndarray::Array2<f64>, &[bool])],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path)?;
    let mut header = vec!["set".to_string()];
    header.extend(names.iter().cloned());
    header.push("label".into());
    w.write_record(&header)?;
    for (set, x, y) in sets {
        for (row, label) in x.rows().into_iter().zip(y.iter()) {
            let mut rec = vec![set.to_string()];
            rec.extend(row.iter().map(|v| v.to_string()));
            rec.push(u8::from(*label).to_string());
            w.write_record(&rec)?;
        }
    }
    w.flush()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn fit_journey(
    (journey, defs): (&JourneyDef, &[touchpoint::domain::features::FeatureDef]),
    events: &Path,
    target: Target,
    cutoff: &str,
    horizon: u32,
    c: f64,
    model: ModelChoice,
    gb: &gbdt::Params,
    out: &Path,
    report_path: Option<&Path>,
    export: Option<&Path>,
    max_bad_rows: usize,
) -> anyhow::Result<()> {
    let mut bad = BadRows::new(max_bad_rows);
    let log = read_events(events, &mut bad)?;
    bad.report();
    let journey = journey.clone();
    let cutoff_ms = parse_time(cutoff)?;
    let h = i64::from(horizon) * MS_PER_DAY;
    // Time-based split: learn from the window before the cutoff, judge on the one after it.
    let mut trainset = build(&log, &journey, defs, target, cutoff_ms - h, h);
    let mut holdout = build(&log, &journey, defs, target, cutoff_ms, h);
    if trainset.y.is_empty() || holdout.y.is_empty() {
        bail!("no users active before {cutoff} (train: {}, holdout: {})", trainset.y.len(), holdout.y.len());
    }
    let names = touchpoint::domain::features::all_names(defs);
    if let Some(p) = export {
        write_features(p, &names, &[("train", &trainset.x, &trainset.y), ("holdout", &holdout.x, &holdout.y)])?;
        println!("feature tables written to {}", p.display());
    }
    // Trees split raw features; logistic regression standardises them (in place).
    let (fitted, train_eval, holdout_eval) = match model {
        ModelChoice::Logistic => {
            let params = Irls { c, ..Default::default() };
            let fitted = train::fit(&mut trainset.x, &trainset.y, &params)?;
            let train_eval = evaluate(&train::predict(&fitted.fit, &trainset.x), &trainset.y);
            train::apply_scaling(&mut holdout.x, &fitted.scaling);
            let holdout_eval = evaluate(&train::predict(&fitted.fit, &holdout.x), &holdout.y);
            (train::Trained::Logistic(fitted), train_eval, holdout_eval)
        }
        ModelChoice::Gbdt => {
            let scaling = train::scaling_of(&trainset.x);
            let fit = gbdt::fit(&trainset.x, &trainset.y, gb).map_err(anyhow::Error::msg)?;
            let train_eval = evaluate(&fit.predict(&trainset.x), &trainset.y);
            let holdout_eval = evaluate(&fit.predict(&holdout.x), &holdout.y);
            (train::Trained::Gbdt(fit, scaling), train_eval, holdout_eval)
        }
        ModelChoice::Auto => {
            bail!("--model auto picks by cross-validation, which fit-journey does not do: use logistic or gbdt")
        }
    };
    print!(
        "{}",
        train_eval.table(&format!("{} model, training window ending {}", target.name(), chrono_date(cutoff_ms - h)))
    );
    print!(
        "{}",
        holdout_eval.table(&format!(
            "{} model, holdout: features at {cutoff}, labels over the next {horizon} days",
            target.name()
        ))
    );
    let mut metrics = holdout_eval.metrics("holdout_");
    metrics.extend(train_eval.metrics("train_"));
    let mut p = BTreeMap::new();
    match &fitted {
        train::Trained::Logistic(f) => {
            metrics.push(("iterations".into(), f.fit.iterations as f64));
            p.insert("c".to_string(), serde_json::json!(c));
            p.insert("solver".to_string(), serde_json::json!("irls"));
        }
        train::Trained::Gbdt(f, _) => {
            gbdt_params(&mut p, gb, f);
            p.insert("solver".to_string(), serde_json::json!("gbdt"));
        }
    }
    let fp = fingerprint(events)?;
    let holdout_id = format!("{fp}:{}:{cutoff_ms}:{horizon}", target.name());
    p.insert("target".to_string(), serde_json::json!(target.name()));
    p.insert("cutoff_ms".to_string(), serde_json::json!(cutoff_ms));
    p.insert("horizon_days".to_string(), serde_json::json!(horizon));
    p.insert("holdout".to_string(), serde_json::json!(holdout_id));
    let info = ArtifactInfo {
        name: target.name(),
        target: match target {
            Target::Churn => format!("no activity within {horizon} days"),
            Target::Purchase => format!("a purchase within {horizon} days"),
        },
        training_window: format!("events up to {}, labels to {cutoff}", chrono_date(cutoff_ms - h)),
        data_fingerprint: fp,
        feature_names: names,
        encodings: Default::default(),
        params: p,
        metrics,
    };
    let a = fitted.artifact(info);
    BoundModel::bind_with(a.clone(), &touchpoint::domain::features::all_names(defs)).map_err(anyhow::Error::msg)?;
    write_json(out, &a)?;
    println!("model {} written to {}", a.version, out.display());
    if let Some(r) = report_path {
        std::fs::write(r, report::html(&a, &holdout_eval, "time-based holdout"))?;
        println!("report written to {}", r.display());
    }
    Ok(())
}

fn chrono_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn fit_table(
    csv_path: &Path,
    label: &str,
    drop: &[String],
    filter: Option<&str>,
    delimiter: Option<u8>,
    max_levels: usize,
    cv: usize,
    c: f64,
    model: ModelChoice,
    gb: &gbdt::Params,
    seed: u64,
    name: &str,
    out: &Path,
    report_path: Option<&Path>,
    folds_out: Option<&Path>,
    max_bad_rows: usize,
) -> anyhow::Result<()> {
    let filter = filter
        .map(|f| f.split_once('=').with_context(|| format!("--where {f:?}: expected COLUMN=VALUE")))
        .transpose()?;
    let mut bad = BadRows::new(max_bad_rows);
    let mut t = table::read(csv_path, &table::Options { label, drop, filter, delimiter, max_levels }, &mut bad)?;
    bad.report();
    for (column, imp) in &t.imputed {
        eprintln!(
            "column {column:?}: {} missing value(s) imputed with {:?}, indicator column {column}_missing",
            imp.missing, imp.value
        );
    }
    let params = Irls { c, ..Default::default() };
    let mut metrics = Vec::new();
    let mut shown = None;
    let mut kind = model;
    if cv > 1 {
        let lr =
            (model != ModelChoice::Gbdt).then(|| train::cross_validate(&t.x, &t.y, cv, &params, seed)).transpose()?;
        let gb_cv =
            (model != ModelChoice::Logistic).then(|| gbdt::cross_validate(&t.x, &t.y, cv, gb, seed)).transpose()?;
        let r = match (lr, gb_cv) {
            (Some(l), Some(g)) => {
                let (la, ga) = (train::mean(&l.fold_aucs), train::mean(&g.fold_aucs));
                println!(
                    "model comparison on the same {cv} folds: logistic regression CV ROC AUC {la:.4} ± {:.4}, gradient-boosted trees {ga:.4} ± {:.4}",
                    train::std_dev(&l.fold_aucs),
                    train::std_dev(&g.fold_aucs)
                );
                // A tie goes to the simpler model.
                if ga > la {
                    println!("gradient-boosted trees are better on this table (+{:.4} CV AUC): fitting gbdt", ga - la);
                    kind = ModelChoice::Gbdt;
                    g
                } else {
                    println!(
                        "logistic regression is better on this table (+{:.4} CV AUC): fitting logistic regression",
                        la - ga
                    );
                    kind = ModelChoice::Logistic;
                    l
                }
            }
            (Some(r), None) | (None, Some(r)) => r,
            (None, None) => unreachable!("at least one model kind is cross-validated"),
        };
        println!(
            "{cv}-fold stratified CV: ROC AUC per fold {:?}",
            r.fold_aucs.iter().map(|a| format!("{a:.4}")).collect::<Vec<_>>()
        );
        print!("{}", r.oof.table(&format!("{name}: out-of-fold predictions")));
        metrics.push(("cv_auc".to_string(), train::mean(&r.fold_aucs)));
        metrics.push(("cv_auc_std".to_string(), train::std_dev(&r.fold_aucs)));
        metrics.extend(r.oof.metrics("cv_oof_"));
        metrics.push(("cv_oof_mean_predicted".to_string(), r.oof_mean_predicted));
        println!("out-of-fold mean predicted {:.5} vs observed rate {:.5}", r.oof_mean_predicted, r.oof.base_rate);
        if let Some(p) = folds_out {
            let mut w = csv::Writer::from_path(p)?;
            w.write_record(["row", "fold"])?;
            // Rows of the input file (1-based data rows), not of the table after filtering.
            for (row, f) in t.rows.iter().zip(&r.folds) {
                w.write_record([row.to_string(), f.to_string()])?;
            }
            w.flush()?;
        }
        println!("cv_auc {:.4} ± {:.4}", train::mean(&r.fold_aucs), train::std_dev(&r.fold_aucs));
        shown = Some((r.oof, "out-of-fold predictions"));
    } else if model == ModelChoice::Auto {
        bail!("--model auto picks the model by cross-validation: give --cv 2 or more (e.g. --cv 5)");
    }
    let (fitted, in_sample) = if kind == ModelChoice::Gbdt {
        let scaling = train::scaling_of(&t.x);
        let fit = gbdt::fit(&t.x, &t.y, gb).map_err(anyhow::Error::msg)?;
        let p = fit.predict(&t.x);
        println!(
            "gradient-boosted trees: {} trees{}",
            fit.trees.len(),
            if fit.stopped_early { " (early stopping on the validation split)" } else { "" }
        );
        (train::Trained::Gbdt(fit, scaling), p)
    } else {
        let fitted = train::fit(&mut t.x, &t.y, &params)?;
        let p = train::predict(&fitted.fit, &t.x);
        (train::Trained::Logistic(fitted), p)
    };
    let train_eval = evaluate(&in_sample, &t.y);
    print!("{}", train_eval.table(&format!("{name}: fitted on all {} rows (in-sample)", t.y.len())));
    metrics.extend(train_eval.metrics("train_"));
    metrics.push(("mean_predicted".to_string(), train::mean(&in_sample)));
    let mut p = BTreeMap::new();
    match &fitted {
        train::Trained::Logistic(_) => {
            p.insert("c".to_string(), serde_json::json!(c));
        }
        train::Trained::Gbdt(f, _) => gbdt_params(&mut p, gb, f),
    }
    p.insert("label".to_string(), serde_json::json!(label));
    p.insert("cv_folds".to_string(), serde_json::json!(cv));
    p.insert("seed".to_string(), serde_json::json!(seed));
    p.insert("where".to_string(), serde_json::json!(filter.map(|(a, b)| format!("{a}={b}"))));
    p.insert("dropped".to_string(), serde_json::json!(drop));
    let imputed: BTreeMap<&String, serde_json::Value> = t
        .imputed
        .iter()
        .map(|(k, v)| {
            (k, serde_json::json!({"missing": v.missing, "value": v.value, "indicator": format!("{k}_missing")}))
        })
        .collect();
    p.insert("imputed".to_string(), serde_json::json!(imputed));
    let fp = fingerprint(csv_path)?;
    p.insert("holdout".to_string(), serde_json::json!(format!("{fp}:cv{cv}:seed{seed}")));
    let info = ArtifactInfo {
        name,
        target: format!("{label} is true"),
        training_window: format!("{} ({} rows)", csv_path.display(), t.y.len()),
        data_fingerprint: fp,
        feature_names: t.feature_names.clone(),
        encodings: t.encodings.clone(),
        params: p,
        metrics,
    };
    let a = fitted.artifact(info);
    write_json(out, &a)?;
    println!("model {} written to {}", a.version, out.display());
    if let Some(r) = report_path {
        let (eval, what) = shown.unwrap_or((train_eval, "training data (in-sample)"));
        std::fs::write(r, report::html(&a, &eval, what))?;
        println!("report written to {}", r.display());
    }
    Ok(())
}

/// AUC of a journey model on the holdout that `reference` (a journey artifact) describes.
fn holdout_auc(
    events: &Path,
    reference: &ModelArtifact,
    model: &ModelArtifact,
    (journey, defs): (&JourneyDef, &[touchpoint::domain::features::FeatureDef]),
) -> anyhow::Result<f64> {
    let target = match reference.params.get("target").and_then(|v| v.as_str()) {
        Some("churn") => Target::Churn,
        Some("purchase") => Target::Purchase,
        _ => bail!("{} is not a journey model (no target in its params)", reference.version),
    };
    let cutoff = reference.params.get("cutoff_ms").and_then(|v| v.as_i64()).context("no cutoff_ms in params")?;
    let horizon = reference.params.get("horizon_days").and_then(|v| v.as_i64()).context("no horizon_days in params")?;
    let mut bad = BadRows::new(usize::MAX);
    let log = read_events(events, &mut bad)?;
    let ex = build(&log, journey, defs, target, cutoff, horizon * MS_PER_DAY);
    let names = touchpoint::domain::features::all_names(defs);
    let bound = BoundModel::bind_with(model.clone(), &names).map_err(anyhow::Error::msg)?;
    let p: Vec<f64> =
        ex.x.rows()
            .into_iter()
            .map(|r| {
                let r = r.as_slice().expect("standard layout");
                let mut x = [0.0; FEATURE_NAMES.len()];
                x.copy_from_slice(&r[..FEATURE_NAMES.len()]);
                bound.score_with(&x, &r[FEATURE_NAMES.len()..])
            })
            .collect();
    Ok(touchpoint_train::metrics::auc(&p, &ex.y))
}

/// The publish gate's settings.
struct GateArgs {
    config: PathBuf,
    reward: touchpoint_train::policy_eval::Reward,
    margin: f64,
    window_ms: i64,
}

/// The running config's policy, and its decision log read into decisions with rewards.
async fn logged_for(
    config: &Path,
    reward: touchpoint_train::policy_eval::Reward,
    window_ms: i64,
    archive: Option<&Path>,
) -> anyhow::Result<(touchpoint::config::Config, Vec<touchpoint_train::policy_eval::LoggedDecision>)> {
    let cfg = touchpoint::config::Config::load(config, std::env::vars())?;
    if cfg.file.redis.url.starts_with("memory://") {
        bail!(
            "{}: the store is memory://, which keeps no log between runs: point [redis] url at the server's Redis",
            config.display()
        );
    }
    let cfg = with_registry_models(cfg).await?;
    let entries = decision_entries(&cfg.file.redis, archive).await?;
    let log = touchpoint_train::decisions::Log::read(entries);
    let logged = touchpoint_train::policy_eval::logged_decisions(&log, window_ms, reward);
    if logged.is_empty() {
        bail!("{}: the decision log has no decision that showed an offer", config.display());
    }
    Ok((cfg, logged))
}

/// A config with the models its servers follow in the registry (`models.registry`) swapped in,
/// exactly as a server does (`Engine::refresh_models`): what the servers actually serve.
async fn with_registry_models(cfg: touchpoint::config::Config) -> anyhow::Result<touchpoint::config::Config> {
    if cfg.file.models.registry.is_empty() {
        return Ok(cfg);
    }
    let store = touchpoint::store::open(&cfg.file.redis).await?;
    let engine = touchpoint::engine::Engine::new(store, cfg, None, vec![]);
    engine.refresh_models().await?;
    Ok(engine.snapshot().config.clone())
}

/// The running policy with a model artifact in its slot (`churn`, `purchase`,
/// `response:<offer>`), bound as the server binds it.
fn policy_with_model(
    policy: &touchpoint::domain::policy::Policy,
    path: &Path,
) -> anyhow::Result<(touchpoint::domain::policy::Policy, ModelArtifact)> {
    let json = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let a: ModelArtifact =
        serde_json::from_str(&json).with_context(|| format!("{} is not a model artifact", path.display()))?;
    let bound = std::sync::Arc::new(
        BoundModel::bind_with(a.clone(), &touchpoint::domain::features::all_names(&policy.features))
            .map_err(|e| anyhow::anyhow!("{}: the server cannot serve this model: {e}", path.display()))?,
    );
    let mut p = policy.clone();
    match a.name.as_str() {
        "churn" => p.models.churn = Some(bound),
        "purchase" => p.models.purchase = Some(bound),
        other => match other.strip_prefix("response:") {
            Some(offer) => {
                p.models.response.insert(offer.to_string(), bound);
            }
            None => bail!("{}: model {other:?} fills no slot (churn, purchase, response:<offer>)", path.display()),
        },
    }
    Ok((p, a))
}

/// What `evaluate` compares: the running config and the candidates.
struct Policies<'a> {
    config: &'a Path,
    candidates: &'a [PathBuf],
    models: &'a [PathBuf],
}

async fn evaluate_policies(
    policies: Policies<'_>,
    reward: touchpoint_train::policy_eval::Reward,
    window_days: f64,
    archive: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    use touchpoint_train::policy_eval::evaluate_policy;
    let Policies { config, candidates, models } = policies;
    let window = (window_days * MS_PER_DAY as f64) as i64;
    let (cfg, logged) = logged_for(config, reward, window, archive).await?;
    let mut results = vec![(
        format!("running ({})", config.display()),
        evaluate_policy(&logged, &cfg.policy).map_err(anyhow::Error::msg)?,
    )];
    for c in candidates {
        let p = with_registry_models(touchpoint::config::Config::load(c, std::env::vars())?).await?.policy;
        results.push((c.display().to_string(), evaluate_policy(&logged, &p).map_err(anyhow::Error::msg)?));
    }
    for m in models {
        let (p, a) = policy_with_model(&cfg.policy, m)?;
        let name = format!("{} {} ({})", a.name, a.version, m.display());
        results.push((name, evaluate_policy(&logged, &p).map_err(anyhow::Error::msg)?));
    }
    if json {
        let out: Vec<serde_json::Value> = results
            .iter()
            .map(|(n, e)| serde_json::json!({ "policy": n, "reward": reward, "evaluation": e }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for (name, e) in &results {
            println!("{name} ({reward:?} per decision)");
            print!("{}", touchpoint_train::ope::table(e));
            println!();
        }
    }
    Ok(())
}

async fn publish(
    store: &Store,
    path: &Path,
    events: Option<&Path>,
    (journey, defs): (&JourneyDef, &[touchpoint::domain::features::FeatureDef]),
    gate: Option<&GateArgs>,
    force: bool,
) -> anyhow::Result<()> {
    let json = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let new: ModelArtifact =
        serde_json::from_str(&json).with_context(|| format!("{} is not a model artifact", path.display()))?;
    new.check().map_err(anyhow::Error::msg)?;
    // Bound as the server binds it: a model whose features the server cannot produce (a
    // feature-table column with no such server feature) would fail on every registry poll.
    // --force does not override this.
    let names = touchpoint::domain::features::all_names(defs);
    BoundModel::bind_with(new.clone(), &names).map_err(|e| {
        anyhow::anyhow!("{}: the server cannot serve this model: {e}; nothing published", path.display())
    })?;
    let s = open_store(store).await?;
    if let Some(cur_version) = s.current_model(&new.name).await? {
        let cur_json =
            s.get_model(&new.name, &cur_version).await?.context("the registry's current version has no artifact")?;
        let cur: ModelArtifact = serde_json::from_str(&cur_json)?;
        let (new_auc, cur_auc, how) = match events {
            Some(ev) => (
                holdout_auc(ev, &new, &new, (journey, defs))?,
                holdout_auc(ev, &new, &cur, (journey, defs))?,
                format!("both evaluated on the new model's holdout from {}", ev.display()),
            ),
            None => {
                let key = |a: &ModelArtifact| a.params.get("holdout").cloned();
                let metric =
                    |a: &ModelArtifact| a.metrics.get("holdout_auc").or_else(|| a.metrics.get("cv_auc")).copied();
                match (key(&new) == key(&cur) && key(&new).is_some(), metric(&new), metric(&cur)) {
                    (true, Some(n), Some(c)) => (n, c, "stored metrics on the same holdout".to_string()),
                    _ if force => (f64::NAN, f64::NAN, "not compared (--force)".to_string()),
                    _ => bail!(
                        "{} ({}) and the current {} were not evaluated on the same holdout: pass --events to evaluate both on the same data, or --force",
                        new.version,
                        path.display(),
                        cur.version
                    ),
                }
            }
        };
        println!("holdout ROC AUC: new {} {new_auc:.4}, current {} {cur_auc:.4} ({how})", new.version, cur.version);
        if new_auc < cur_auc && !force {
            bail!(
                "refusing to publish {}: it scores worse than the current {} on the same holdout (use --force to publish anyway)",
                new.version,
                cur.version
            );
        }
    }
    if let Some(g) = gate {
        let (cfg, logged) = logged_for(&g.config, g.reward, g.window_ms, None).await?;
        let (candidate, _) = policy_with_model(&cfg.policy, path)?;
        let current =
            touchpoint_train::policy_eval::evaluate_policy(&logged, &cfg.policy).map_err(anyhow::Error::msg)?;
        let new_eval =
            touchpoint_train::policy_eval::evaluate_policy(&logged, &candidate).map_err(anyhow::Error::msg)?;
        let verdict = touchpoint_train::policy_eval::gate(&new_eval, &current, g.margin);
        println!(
            "gate ({:?} per decision, SNIPS on {} logged decisions): {} {:.6} [{:.6}, {:.6}] (effective sample size {:.1}); running {:.6} [{:.6}, {:.6}]; margin {}",
            g.reward,
            logged.len(),
            new.version,
            verdict.candidate.value,
            verdict.candidate.ci.0,
            verdict.candidate.ci.1,
            new_eval.effective_sample_size,
            verdict.current.value,
            verdict.current.ci.0,
            verdict.current.ci.1,
            g.margin
        );
        if !verdict.pass && !force {
            bail!(
                "refusing to publish {}: the lower bound of its estimate ({:.6}) is below the running policy's estimate {:.6} minus the margin {} (use --force to publish anyway)",
                new.version,
                verdict.candidate.ci.0,
                verdict.current.value,
                g.margin
            );
        }
    }
    s.put_model(&new.name, &new.version, &json).await?;
    s.set_current_model(&new.name, &new.version).await?;
    println!("published {}: {} is now current", new.name, new.version);
    Ok(())
}

/// User errors end the run with one line, `error: ...` and its causes, and exit code 1: a
/// `Result` returned from `main` would print anyhow's debug form (a stack trace under
/// RUST_BACKTRACE=1).
fn main() {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Simulate { users, days, seed, end, out, truth, horizon } => {
            let end = match end {
                Some(e) => parse_time(&e)?,
                None => touchpoint::engine::now_ms(),
            };
            let sim = touchpoint::sim::simulate(&touchpoint::sim::SimConfig { users, days, seed, end });
            let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
            for e in &sim.events {
                serde_json::to_writer(&mut w, e)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            println!("{} events of {} users over {days} days written to {}", sim.events.len(), users, out.display());
            if let Some(t) = truth {
                let mut w = csv::Writer::from_path(&t)?;
                w.write_record(["user_id", "churned", "p_churn", "p_purchase", "horizon_days", "attributes"])?;
                for u in &sim.users {
                    let (pc, pp) = u.ground_truth(horizon);
                    w.write_record([
                        u.user_id.clone(),
                        u.churned.to_string(),
                        pc.to_string(),
                        pp.to_string(),
                        horizon.to_string(),
                        serde_json::to_string(&u.attributes)?,
                    ])?;
                }
                w.flush()?;
                println!("ground truth written to {}", t.display());
            }
        }
        Command::Export { store, out, archive } => {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
            let mut err = None;
            let mut seen = std::collections::HashSet::new();
            let mut n = 0u64;
            let mut write = |e: touchpoint::domain::event::Event| {
                // An event archived but not yet trimmed is in both: written once.
                if archive.is_some() && !seen.insert((e.user_id.clone(), e.event_id.clone())) {
                    return;
                }
                n += 1;
                if err.is_none()
                    && let Err(e) = serde_json::to_writer(&mut w, &e)
                        .map_err(anyhow::Error::from)
                        .and_then(|()| Ok(w.write_all(b"\n")?))
                {
                    err = Some(e);
                }
            };
            let cfg = redis_config(&store);
            if let Some(dir) = &archive {
                let retention = touchpoint::store::Retention::from_config(&cfg);
                let s = touchpoint::store::redis::RedisStore::connect(&cfg, retention).await?;
                let archived = touchpoint::archive::read(dir, "journey")?;
                s.open_archived_events(&archived).await?.into_iter().for_each(&mut write);
            }
            touchpoint::store::open(&cfg).await?.export_journey_log(&mut write).await?;
            if let Some(e) = err {
                return Err(e);
            }
            w.flush()?;
            println!("{n} events written to {}", out.display());
        }
        Command::FitJourney {
            events,
            target,
            cutoff,
            horizon,
            c,
            model,
            gbdt,
            out,
            report,
            export_features,
            config,
            max_bad_rows,
        } => {
            let (journey, defs) = match config {
                Some(path) => {
                    let c = touchpoint::config::Config::load(&path, std::env::vars())?;
                    (c.policy.journey.clone(), c.policy.features.clone())
                }
                None => (JourneyDef::default_journey(), Vec::new()),
            };
            fit_journey(
                (&journey, &defs),
                &events,
                target,
                &cutoff,
                horizon,
                c,
                model,
                &gbdt.params(7),
                &out,
                report.as_deref(),
                export_features.as_deref(),
                max_bad_rows,
            )?
        }
        Command::FitTable {
            csv,
            label,
            drop,
            filter,
            delimiter,
            max_levels,
            cv,
            c,
            model,
            gbdt,
            seed,
            name,
            out,
            report,
            folds_out,
            max_bad_rows,
        } => fit_table(
            &csv,
            &label,
            &drop,
            filter.as_deref(),
            delimiter,
            max_levels,
            cv,
            c,
            model,
            &gbdt.params(seed),
            seed,
            &name,
            &out,
            report.as_deref(),
            folds_out.as_deref(),
            max_bad_rows,
        )?,
        Command::Publish {
            store,
            model,
            events,
            config,
            gate_config,
            gate_reward,
            gate_margin,
            gate_window_days,
            force,
        } => {
            let (journey, defs) = match config.as_ref().or(gate_config.as_ref()) {
                Some(path) => {
                    let c = touchpoint::config::Config::load(path, std::env::vars())?;
                    (c.policy.journey.clone(), c.policy.features.clone())
                }
                None => (JourneyDef::default_journey(), Vec::new()),
            };
            let gate = gate_config.map(|config| GateArgs {
                config,
                reward: gate_reward,
                margin: gate_margin,
                window_ms: (gate_window_days * MS_PER_DAY as f64) as i64,
            });
            publish(&store, &model, events.as_deref(), (&journey, &defs), gate.as_ref(), force).await?
        }
        Command::Rollback { store, name } => {
            let s = open_store(&store).await?;
            match s.rollback_model(&name).await? {
                Some(v) => println!("{name}: {v} is current again"),
                None => bail!("{name}: no earlier version to roll back to"),
            }
        }
        Command::ExportDecisions { store, out, window_days, salt, archive } => {
            let entries = decision_entries(&redis_config(&store), archive.as_deref()).await?;
            let window = (window_days * touchpoint::domain::MS_PER_DAY as f64) as i64;
            let rows = touchpoint_train::decisions::join(entries, window, &salt);
            std::fs::write(&out, touchpoint_train::decisions::csv(&rows))?;
            println!("{} rows (decision, offer shown) written to {}", rows.len(), out.display());
        }
        Command::Evaluate {
            csv: None,
            config: Some(config),
            candidate,
            candidate_model,
            reward,
            window_days,
            archive,
            json,
        } => {
            let policies = Policies { config: &config, candidates: &candidate, models: &candidate_model };
            evaluate_policies(policies, reward, window_days, archive.as_deref(), json).await?
        }
        Command::Evaluate { csv, json, .. } => {
            let csv = csv.context("--csv or --config")?;
            let file = touchpoint::io::open_maybe_gz(&csv).with_context(|| format!("reading {}", csv.display()))?;
            let rows = touchpoint_train::ope::read_csv(file).map_err(|e| anyhow::anyhow!("{}: {e}", csv.display()))?;
            let e = touchpoint_train::ope::evaluate(&rows).map_err(|e| anyhow::anyhow!("{}: {e}", csv.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                print!("{}", touchpoint_train::ope::table(&e));
            }
        }
        Command::FitResponses { store, archive, reward, window_days, out_dir, min_positives } => {
            use touchpoint_train::responses::{Fitted, fit_offer, rows};
            let entries = decision_entries(&redis_config(&store), archive.as_deref()).await?;
            let log = touchpoint_train::decisions::Log::read(entries);
            let window = (window_days * MS_PER_DAY as f64) as i64;
            let data = rows(&log, window, reward).map_err(anyhow::Error::msg)?;
            let by_offer = &data.by_offer;
            if data.skipped > 0 {
                println!("{} decisions left out: they lack one of the features {:?}", data.skipped, data.names);
            }
            if by_offer.is_empty() {
                bail!("the decision log shows no offer: nothing to learn from");
            }
            std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
            println!("{:<24} {:>7} {:>9} {:>7} {:>7}  artifact", "offer", "rows", "positives", "rate", "cv auc");
            for (offer, r) in by_offer {
                let positives = r.y.iter().filter(|y| **y).count();
                let rate = positives as f64 / r.y.len() as f64;
                match fit_offer(offer, &data.names, r, reward, window_days, min_positives) {
                    Fitted::Model(a) => {
                        let path = out_dir.join(format!("response-{offer}.json"));
                        write_json(&path, &a)?;
                        let auc = a.metrics.get("cv_auc").map_or("-".to_string(), |v| format!("{v:.3}"));
                        println!(
                            "{offer:<24} {:>7} {positives:>9} {rate:>7.4} {auc:>7}  {}",
                            r.y.len(),
                            path.display()
                        );
                    }
                    Fitted::Skipped(why) => {
                        println!("{offer:<24} {:>7} {positives:>9} {rate:>7.4} {:>7}  skipped: {why}", r.y.len(), "-")
                    }
                }
            }
        }
        Command::HillstromUplift { csv, seed, json } => {
            let customers = touchpoint_train::uplift::read(&csv)?;
            let study = touchpoint_train::uplift::study(&customers, seed)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&study)?);
            } else {
                print!("{}", touchpoint_train::uplift::table(&study));
            }
        }
        Command::BenchLr(args) => bench::run(args)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `fit-table --help` explains every flag and shows examples.
    #[test]
    fn every_fit_table_flag_has_help() {
        let cmd = Cli::command();
        let fit_table = cmd.find_subcommand("fit-table").expect("the subcommand");
        for arg in fit_table.get_arguments().filter(|a| a.get_id() != "help") {
            assert!(arg.get_help().is_some(), "--{} has no help text", arg.get_id());
        }
        assert!(fit_table.get_after_help().is_some_and(|h| h.to_string().contains("--label Revenue")));
    }

    #[test]
    fn delimiters_parse() {
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert!(parse_delimiter(";;").is_err());
    }
}
