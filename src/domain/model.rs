//! Model artifacts: the self-describing, versioned file the trainer writes and the server
//! scores with. Logistic regression over standardised features (trees may follow).
use super::features::{FEATURE_NAMES, Features};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Per-feature standardisation: a feature enters the model as `(x - mean) / std`
/// (a `std` of 0 is treated as 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Feature means, in `feature_names` order.
    pub mean: Vec<f64>,
    /// Feature standard deviations, in `feature_names` order.
    pub std: Vec<f64>,
}

/// A trained model as stored (JSON): identity, provenance and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// `churn`, `purchase`, or `response:<offer id>`.
    pub name: String,
    /// Version label, unique per name (the trainer writes `<name>-<UTC time>-<fingerprint>`).
    pub version: String,
    /// `logistic_regression`.
    pub kind: String,
    /// What the score is the probability of (e.g. "purchase within 30 days").
    #[serde(default)]
    pub target: String,
    /// When it was trained (RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// Training window or data fingerprint: what the model was fitted on.
    #[serde(default)]
    pub training_window: String,
    /// Short SHA-256 of the training data file.
    #[serde(default)]
    pub data_fingerprint: String,
    /// Feature names in coefficient order.
    pub feature_names: Vec<String>,
    /// Standardisation of each feature.
    pub scaling: Scaling,
    /// One-hot encodings of categorical columns (feature-table models): column -> categories.
    #[serde(default)]
    pub encodings: BTreeMap<String, Vec<String>>,
    /// Logistic-regression intercept (on standardised features).
    pub intercept: f64,
    /// One coefficient per feature, in `feature_names` order (on standardised features).
    pub coefficients: Vec<f64>,
    /// Training hyper-parameters, for the record.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Evaluation metrics by name (e.g. AUC on held-out data).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl ModelArtifact {
    /// Checks the artifact can be scored: a supported kind, one coefficient, mean and std per
    /// feature, and finite parameters.
    pub fn check(&self) -> Result<(), String> {
        let n = self.feature_names.len();
        if self.kind != "logistic_regression" {
            return Err(format!("model kind {:?} is not supported (logistic_regression)", self.kind));
        }
        if self.coefficients.len() != n || self.scaling.mean.len() != n || self.scaling.std.len() != n {
            return Err(format!(
                "{} features but {} coefficients, {} means, {} stds",
                n,
                self.coefficients.len(),
                self.scaling.mean.len(),
                self.scaling.std.len()
            ));
        }
        let all = self.coefficients.iter().chain(&self.scaling.mean).chain(&self.scaling.std).chain([&self.intercept]);
        if !all.clone().all(|x| x.is_finite()) {
            return Err("non-finite parameter".into());
        }
        Ok(())
    }

    /// Probability for a raw (unscaled) row in `feature_names` order.
    pub fn score_row(&self, row: &[f64]) -> f64 {
        let z = self
            .coefficients
            .iter()
            .zip(row)
            .zip(self.scaling.mean.iter().zip(&self.scaling.std))
            .fold(self.intercept, |acc, ((w, x), (m, s))| acc + w * (x - m) / if *s > 0.0 { *s } else { 1.0 });
        sigmoid(z)
    }
}

/// A journey model bound to the shared feature vector: ready to score a user.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundModel {
    /// The artifact it was bound from.
    pub artifact: ModelArtifact,
    /// For each coefficient, its position in `FEATURE_NAMES`.
    index: Vec<usize>,
    /// Precomputed `w / std` and the constant part, so scoring is one dot product.
    weights: Vec<f64>,
    constant: f64,
}

impl BoundModel {
    /// Checks the artifact and binds its features to `FEATURE_NAMES`; fails naming a feature
    /// the journey does not compute.
    pub fn bind(artifact: ModelArtifact) -> Result<Self, String> {
        artifact.check()?;
        let index = artifact
            .feature_names
            .iter()
            .map(|f| {
                FEATURE_NAMES.iter().position(|n| n == f).ok_or_else(|| {
                    format!("feature {f:?} is not a journey feature (known: {})", FEATURE_NAMES.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let s = &artifact.scaling;
        let weights: Vec<f64> =
            artifact.coefficients.iter().zip(&s.std).map(|(w, sd)| w / if *sd > 0.0 { *sd } else { 1.0 }).collect();
        let constant = artifact.intercept - weights.iter().zip(&s.mean).map(|(w, m)| w * m).sum::<f64>();
        Ok(Self { artifact, index, weights, constant })
    }

    /// The probability the model gives for a user's feature vector.
    pub fn score(&self, x: &Features) -> f64 {
        sigmoid(self.index.iter().zip(&self.weights).fold(self.constant, |acc, (i, w)| acc + w * x[*i]))
    }

    /// The artifact's version label.
    pub fn version(&self) -> &str {
        &self.artifact.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::N_FEATURES;

    pub fn artifact(features: &[&str], coefficients: &[f64]) -> ModelArtifact {
        ModelArtifact {
            name: "purchase".into(),
            version: "v1".into(),
            kind: "logistic_regression".into(),
            target: String::new(),
            created_at: String::new(),
            training_window: String::new(),
            data_fingerprint: String::new(),
            feature_names: features.iter().map(|s| s.to_string()).collect(),
            scaling: Scaling { mean: vec![1.0; features.len()], std: vec![2.0; features.len()] },
            encodings: Default::default(),
            intercept: -0.5,
            coefficients: coefficients.to_vec(),
            params: Default::default(),
            metrics: Default::default(),
        }
    }

    #[test]
    fn bound_score_equals_the_artifact_formula() {
        let a = artifact(&["log_purchases", "lapsed"], &[1.5, -2.0]);
        let m = BoundModel::bind(a.clone()).unwrap();
        let mut x = [0.0; N_FEATURES];
        x[7] = 3.0; // log_purchases
        x[14] = 1.0; // lapsed
        let expected = a.score_row(&[3.0, 1.0]);
        assert!((m.score(&x) - expected).abs() < 1e-12);
        let z: f64 = -0.5 + 1.5 * (3.0 - 1.0) / 2.0 - 2.0 * (1.0 - 1.0) / 2.0;
        assert!((expected - 1.0 / (1.0 + (-z).exp())).abs() < 1e-12);
    }

    #[test]
    fn binding_rejects_what_it_cannot_score() {
        assert!(BoundModel::bind(artifact(&["nope"], &[1.0])).unwrap_err().contains("nope"));
        assert!(BoundModel::bind(artifact(&["lapsed"], &[1.0, 2.0])).unwrap_err().contains("coefficients"));
        let mut a = artifact(&["lapsed"], &[f64::NAN]);
        assert!(BoundModel::bind(a.clone()).is_err());
        a.coefficients = vec![1.0];
        a.kind = "forest".into();
        assert!(BoundModel::bind(a).unwrap_err().contains("not supported"));
    }

    #[test]
    fn artifact_round_trips_through_json() {
        let a = artifact(&["log_purchases"], &[0.25]);
        let back: ModelArtifact = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(a, back);
    }
}
