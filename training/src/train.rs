//! Fitting: standardisation, the IRLS solver, stratified cross-validation, time-based
//! holdouts, and the artifact (logistic or gradient-boosted trees).
use crate::irls::{Irls, IrlsFit};
use crate::metrics::{Evaluation, evaluate};
use anyhow::Context;
use linfa::dataset::DatasetBase;
use linfa::traits::Fit;
use ndarray::{Array2, ArrayView1, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use touchpoint::domain::model::{GBDT, LOGISTIC, ModelArtifact, Scaling};

/// Standardises columns in place (no copy of the matrix) and returns the scaling.
pub fn standardise(x: &mut Array2<f64>) -> Scaling {
    let s = scaling_of(x);
    apply_scaling(x, &s);
    s
}

/// The columns' means and standard deviations (1 for a constant column).
pub fn scaling_of(x: &Array2<f64>) -> Scaling {
    let n = x.nrows().max(1) as f64;
    let mean: Vec<f64> = x.mean_axis(Axis(0)).map(|m| m.to_vec()).unwrap_or_default();
    let std: Vec<f64> = x
        .axis_iter(Axis(1))
        .zip(&mean)
        .map(|(col, m)| {
            let var = col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n;
            if var > 1e-24 { var.sqrt() } else { 1.0 }
        })
        .collect();
    Scaling { mean, std }
}

/// Applies a scaling fitted elsewhere (in place).
pub fn apply_scaling(x: &mut Array2<f64>, s: &Scaling) {
    for mut row in x.rows_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - s.mean[j]) / s.std[j];
        }
    }
}

/// Fits through linfa's `Dataset` and `Fit` (borrowed views: no copy of the matrix). A fit
/// that does not converge is an error, so no caller can turn it into an artifact.
pub fn fit_scaled(x_scaled: &Array2<f64>, y: &[bool], params: &Irls) -> Result<IrlsFit, crate::irls::IrlsError> {
    params.fit(&DatasetBase::new(x_scaled.view(), ArrayView1::from(y)))
}

pub fn predict(fit: &IrlsFit, x_scaled: &Array2<f64>) -> Vec<f64> {
    fit.predict_proba(&x_scaled.view()).to_vec()
}

/// Stratified folds: each class shuffled (seeded) and dealt round-robin.
pub fn stratified_folds(y: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold = vec![0; y.len()];
    for class in [true, false] {
        let mut idx: Vec<usize> = (0..y.len()).filter(|&i| y[i] == class).collect();
        idx.shuffle(&mut rng);
        for (n, i) in idx.into_iter().enumerate() {
            fold[i] = n % k;
        }
    }
    fold
}

pub struct CvResult {
    /// The fold of each row.
    pub folds: Vec<usize>,
    pub fold_aucs: Vec<f64>,
    pub oof_mean_predicted: f64,
    /// Out-of-fold predictions for every row.
    pub oof: Evaluation,
}

/// K-fold stratified cross-validation: each fold standardised on its training part.
pub fn cross_validate(x: &Array2<f64>, y: &[bool], k: usize, params: &Irls, seed: u64) -> anyhow::Result<CvResult> {
    cross_validate_with(y, k, seed, "cross-validation folds", |train, test| {
        let mut xt = x.select(Axis(0), train);
        let yt: Vec<bool> = train.iter().map(|&i| y[i]).collect();
        let scaling = standardise(&mut xt);
        let fit = fit_scaled(&xt, &yt, params)?;
        let mut xv = x.select(Axis(0), test);
        apply_scaling(&mut xv, &scaling);
        Ok(predict(&fit, &xv))
    })
}

/// The fold loop every model kind shares: stratified folds for `seed`, and for each fold
/// `fit_predict(train rows, test rows)` giving the test rows' probabilities; out-of-fold
/// predictions and per-fold AUCs are collected. A failing fold fails the whole run.
pub fn cross_validate_with(
    y: &[bool],
    k: usize,
    seed: u64,
    label: &str,
    mut fit_predict: impl FnMut(&[usize], &[usize]) -> anyhow::Result<Vec<f64>>,
) -> anyhow::Result<CvResult> {
    let folds = stratified_folds(y, k, seed);
    let mut oof = vec![0.0; y.len()];
    let mut fold_aucs = Vec::new();
    let bar = crate::progress::steps(k as u64, label);
    for f in 0..k {
        let (test, train): (Vec<usize>, Vec<usize>) = (0..y.len()).partition(|&i| folds[i] == f);
        let p = fit_predict(&train, &test).with_context(|| format!("cross-validation fold {} of {k}", f + 1))?;
        let yv: Vec<bool> = test.iter().map(|&i| y[i]).collect();
        fold_aucs.push(crate::metrics::auc(&p, &yv));
        for (j, &i) in test.iter().enumerate() {
            oof[i] = p[j];
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(CvResult { oof_mean_predicted: mean(&oof), folds, fold_aucs, oof: evaluate(&oof, y) })
}

pub struct Fitted {
    pub fit: IrlsFit,
    pub scaling: Scaling,
}

/// Standardises `x` in place and fits.
pub fn fit(x: &mut Array2<f64>, y: &[bool], params: &Irls) -> anyhow::Result<Fitted> {
    let bar = crate::progress::spinner(&format!("fitting on {} rows", y.len()));
    let scaling = standardise(x);
    let fit = fit_scaled(x, y, params).context("the final fit");
    bar.finish_and_clear();
    let fit = fit?;
    Ok(Fitted { fit, scaling })
}

/// A fitted model of either kind, ready to become an artifact.
pub enum Trained {
    /// Logistic regression over standardised features.
    Logistic(Fitted),
    /// Gradient-boosted trees over raw features, with the training data's scaling to record.
    Gbdt(crate::gbdt::GbdtFit, Scaling),
}

impl Trained {
    /// The artifact of this fit.
    pub fn artifact(&self, info: ArtifactInfo) -> ModelArtifact {
        match self {
            Trained::Logistic(f) => artifact(info, f),
            Trained::Gbdt(f, scaling) => gbdt_artifact(info, f, scaling.clone()),
        }
    }
}

pub struct ArtifactInfo<'a> {
    pub name: &'a str,
    pub target: String,
    pub training_window: String,
    pub data_fingerprint: String,
    pub feature_names: Vec<String>,
    pub encodings: BTreeMap<String, Vec<String>>,
    pub params: BTreeMap<String, serde_json::Value>,
    pub metrics: Vec<(String, f64)>,
}

pub fn artifact(info: ArtifactInfo, fitted: &Fitted) -> ModelArtifact {
    let mut a = new_artifact(info, LOGISTIC, fitted.scaling.clone());
    a.intercept = fitted.fit.intercept;
    a.coefficients = fitted.fit.coefficients.to_vec();
    a
}

/// A `gbdt` artifact: the trees over raw features, with the training data's scaling recorded.
pub fn gbdt_artifact(info: ArtifactInfo, fit: &crate::gbdt::GbdtFit, scaling: Scaling) -> ModelArtifact {
    let mut a = new_artifact(info, GBDT, scaling);
    a.intercept = fit.base;
    a.trees = fit.trees.clone();
    a
}

fn new_artifact(info: ArtifactInfo, kind: &str, scaling: Scaling) -> ModelArtifact {
    let now = chrono::Utc::now();
    let fp8: String = info.data_fingerprint.chars().take(8).collect();
    ModelArtifact {
        name: info.name.to_string(),
        version: format!("{}-{}-{fp8}", info.name, now.format("%Y%m%dT%H%M%SZ")),
        kind: kind.into(),
        target: info.target,
        created_at: now.to_rfc3339(),
        training_window: info.training_window,
        data_fingerprint: info.data_fingerprint,
        feature_names: info.feature_names,
        scaling,
        encodings: info.encodings,
        intercept: 0.0,
        coefficients: vec![],
        trees: vec![],
        params: info.params,
        metrics: info.metrics.into_iter().filter(|(_, v)| v.is_finite()).collect(),
    }
}

/// Scores rows with an artifact (raw, unscaled features in its order).
pub fn score_rows(a: &ModelArtifact, x: &Array2<f64>) -> Vec<f64> {
    x.rows().into_iter().map(|r| a.score_row(r.as_slice().expect("standard layout"))).collect()
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

pub fn std_dev(v: &[f64]) -> f64 {
    let m = mean(v);
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_and_cover_everything() {
        let y: Vec<bool> = (0..103).map(|i| i % 4 == 0).collect();
        let f = stratified_folds(&y, 5, 1);
        for k in 0..5 {
            let pos = (0..y.len()).filter(|&i| f[i] == k && y[i]).count();
            assert!((5..=6).contains(&pos), "fold {k}: {pos} positives");
        }
        assert_eq!(f, stratified_folds(&y, 5, 1), "deterministic for a seed");
    }

    #[test]
    fn artifact_scores_raw_rows_like_the_fit_scores_scaled_ones() {
        let mut x = Array2::from_shape_fn((200, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
        let raw = x.clone();
        let y: Vec<bool> = (0..200).map(|i| (i * 7) % 11 > 5).collect();
        let fitted = fit(&mut x, &y, &Irls::default()).unwrap();
        let info = ArtifactInfo {
            name: "t",
            target: "t".into(),
            training_window: String::new(),
            data_fingerprint: "abc".into(),
            feature_names: vec!["a".into(), "b".into()],
            encodings: Default::default(),
            params: Default::default(),
            metrics: vec![("auc".into(), 0.9), ("bad".into(), f64::NAN)],
        };
        let a = artifact(info, &fitted);
        let direct = predict(&fitted.fit, &x);
        let via = score_rows(&a, &raw);
        for (p, q) in direct.iter().zip(&via) {
            assert!((p - q).abs() < 1e-12);
        }
        assert!(!a.metrics.contains_key("bad"), "non-finite metrics are not stored");
    }
}
