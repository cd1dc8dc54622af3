//! Per-offer response models (issue 10, point 4): P(response | features) for each offer,
//! fitted on the decisions that showed it, from the decision log joined with its outcomes.
//!
//! **One model per offer**, not one model with offer features: offers differ first of all in
//! their base rate (an intercept per offer) and then in who responds (their own coefficients),
//! which a per-offer logistic regression captures without the server having to encode offers;
//! the server already serves a model per offer (`models.response.<offer>`, registry name
//! `response:<offer>`) as `scores.response`, which the default priority multiplies by the
//! offer's value and weight. The features are the server's own vector as logged with each
//! decision — the built-in features and the configured ones (`[[features]]`) — so the
//! artifacts bind as the server binds them (publish them with the servers' `--config`).
//!
//! Rows are the (decision, offer shown) pairs, every rank; the label is the chosen outcome
//! within the window. Rows are not reweighted by the logged propensity: the model is
//! conditional on the features the logging policy saw, so exploration only has to give every
//! offer some rows in every part of the feature space.
use crate::decisions::Log;
use crate::irls::Irls;
use crate::policy_eval::Reward;
use crate::train::{ArtifactInfo, artifact, cross_validate, fit};
use ndarray::Array2;
use std::collections::BTreeMap;
use touchpoint::domain::Millis;
use touchpoint::domain::features::FEATURE_NAMES;
use touchpoint::domain::model::ModelArtifact;

/// One offer's training rows.
#[derive(Debug, Default, Clone)]
pub struct OfferRows {
    pub x: Vec<Vec<f64>>,
    pub y: Vec<bool>,
}

/// The training data: the feature names (as the server logged them: the built-in ones, then
/// the configured ones) and each offer's rows.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    pub names: Vec<String>,
    pub by_offer: BTreeMap<String, OfferRows>,
    /// Decisions left out because they lack one of the features (logged under another config).
    pub skipped: usize,
}

/// The features the log's newest decision carries (what the servers compute now): the
/// built-in ones in vector order, then the others (configured) by name.
fn logged_names(log: &Log) -> Vec<String> {
    let Some(d) = log.decisions.iter().filter(|d| !d.degraded).max_by_key(|d| d.at) else { return Vec::new() };
    let mut names: Vec<String> = FEATURE_NAMES.iter().map(|n| n.to_string()).collect();
    names.extend(d.features.keys().filter(|k| !FEATURE_NAMES.contains(&k.as_str())).cloned());
    names
}

/// The rows of every offer shown in the log, labelled by `reward` within `window_ms`.
pub fn rows(log: &Log, window_ms: Millis, reward: Reward) -> Result<Rows, String> {
    let k = reward.outcome().ok_or("a response model needs a yes/no outcome: click, accept or conversion")?;
    let mut out = Rows { names: logged_names(log), ..Rows::default() };
    for d in log.decisions.iter().filter(|d| !d.degraded) {
        let Some(x) = out.names.iter().map(|n| d.features.get(n).copied()).collect::<Option<Vec<f64>>>() else {
            out.skipped += 1;
            continue;
        };
        for c in &d.chosen {
            let (flags, _) = log.outcomes_of(d, &c.offer_id, window_ms);
            let r = out.by_offer.entry(c.offer_id.clone()).or_default();
            r.x.push(x.clone());
            r.y.push(flags[k]);
        }
    }
    Ok(out)
}

/// What became of one offer.
#[derive(Debug, Clone)]
pub enum Fitted {
    /// The artifact, with its rows and positives.
    Model(Box<ModelArtifact>),
    /// Too few positives or negatives to fit.
    Skipped(String),
}

/// Fits one offer's response model (standardised logistic regression, IRLS); 5-fold CV ROC
/// AUC when there are at least 10 of each class.
pub fn fit_offer(
    offer: &str,
    names: &[String],
    rows: &OfferRows,
    reward: Reward,
    window_days: f64,
    min: usize,
) -> Fitted {
    let positives = rows.y.iter().filter(|y| **y).count();
    let negatives = rows.y.len() - positives;
    if positives < min || negatives < min {
        return Fitted::Skipped(format!(
            "{positives} positives and {negatives} negatives; at least {min} of each needed"
        ));
    }
    let mut x = Array2::from_shape_fn((rows.x.len(), names.len()), |(i, j)| rows.x[i][j]);
    let params = Irls::default();
    let cv = (positives >= 10 && negatives >= 10)
        .then(|| cross_validate(&x, &rows.y, 5, &params, 7).ok())
        .flatten()
        .map(|cv| cv.oof.auc);
    let fitted = match fit(&mut x, &rows.y, &params) {
        Ok(f) => f,
        Err(e) => return Fitted::Skipped(format!("the fit failed: {e:#}")),
    };
    let name = format!("response:{offer}");
    let mut metrics = vec![("rows".to_string(), rows.y.len() as f64), ("positives".to_string(), positives as f64)];
    metrics.push(("rate".to_string(), positives as f64 / rows.y.len() as f64));
    if let Some(auc) = cv {
        metrics.push(("cv_auc".to_string(), auc));
    }
    let info = ArtifactInfo {
        name: &name,
        target: format!("{reward:?} within {window_days} days of being shown").to_lowercase(),
        training_window: String::new(),
        data_fingerprint: format!("{:016x}", rows.y.len() as u64 * 1_000_003 + positives as u64),
        feature_names: names.to_vec(),
        encodings: BTreeMap::new(),
        params: BTreeMap::from([("model".to_string(), serde_json::json!("logistic"))]),
        metrics,
    };
    Fitted::Model(Box::new(artifact(info, &fitted)))
}
