//! Model artifacts: the self-describing, versioned file the trainer writes and the server
//! scores with: logistic regression over standardised features, or gradient-boosted trees.
use super::features::{FEATURE_NAMES, Features};
use super::trees::{self, Compiled, Tree};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Per-feature standardisation: `(x - mean) / std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Training means, in feature order.
    pub mean: Vec<f64>,
    /// Training standard deviations (1 for a constant feature).
    pub std: Vec<f64>,
}

/// A trained model as the trainer writes it and the registry stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelArtifact {
    /// `churn`, `purchase`, or `response:<offer id>`.
    pub name: String,
    /// Unique version (name, training time, data fingerprint prefix).
    pub version: String,
    /// `logistic_regression` (intercept + coefficients) or `gbdt` (intercept + trees).
    pub kind: String,
    /// What the score is the probability of (e.g. "purchase within 30 days").
    #[serde(default)]
    pub target: String,
    /// When the trainer wrote it (RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// Training window or data fingerprint: what the model was fitted on.
    #[serde(default)]
    pub training_window: String,
    /// SHA-256 of the training data.
    #[serde(default)]
    pub data_fingerprint: String,
    /// Feature names in coefficient order (for trees: the order split features index).
    pub feature_names: Vec<String>,
    /// The training data's means and standard deviations. Logistic coefficients apply to
    /// standardised features; tree thresholds are in raw units (trees are invariant to it).
    pub scaling: Scaling,
    /// One-hot encodings of categorical columns (feature-table models): column -> categories.
    #[serde(default)]
    pub encodings: BTreeMap<String, Vec<String>>,
    /// Logistic: the intercept; gbdt: the base log-odds the trees' values are added to.
    pub intercept: f64,
    /// Logistic coefficients (empty for gbdt).
    #[serde(default)]
    pub coefficients: Vec<f64>,
    /// The boosted trees of a gbdt model (absent for logistic regression, so logistic
    /// artifacts keep their exact shape).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trees: Vec<Tree>,
    /// Training parameters (regularisation, tree limits, holdout identity...).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Evaluation metrics (holdout or cross-validated).
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `kind` of a logistic-regression artifact.
pub const LOGISTIC: &str = "logistic_regression";
/// `kind` of a gradient-boosted-trees artifact.
pub const GBDT: &str = "gbdt";

impl ModelArtifact {
    /// Checks the artifact can be scored: a known kind, parameters that match its features,
    /// everything finite.
    pub fn check(&self) -> Result<(), String> {
        let n = self.feature_names.len();
        if self.kind == GBDT {
            return self.check_trees();
        }
        if self.kind != LOGISTIC {
            return Err(format!("model kind {:?} is not supported ({LOGISTIC}, {GBDT})", self.kind));
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

    fn check_trees(&self) -> Result<(), String> {
        let n = self.feature_names.len();
        if self.trees.is_empty() {
            return Err("a gbdt model without trees".into());
        }
        if !self.coefficients.is_empty() {
            return Err(format!("a gbdt model with {} coefficients (trees only)", self.coefficients.len()));
        }
        if self.scaling.mean.len() != n || self.scaling.std.len() != n {
            return Err(format!("{n} features but {} means, {} stds", self.scaling.mean.len(), self.scaling.std.len()));
        }
        if !self.intercept.is_finite() {
            return Err("non-finite base score (intercept)".into());
        }
        for (i, t) in self.trees.iter().enumerate() {
            t.check(n).map_err(|e| format!("tree {i}: {e}"))?;
        }
        Ok(())
    }

    /// Probability for a raw (unscaled) row in `feature_names` order.
    pub fn score_row(&self, row: &[f64]) -> f64 {
        if self.kind == GBDT {
            return sigmoid(trees::margin(self.intercept, &self.trees, row));
        }
        let z = self
            .coefficients
            .iter()
            .zip(row)
            .zip(self.scaling.mean.iter().zip(&self.scaling.std))
            .fold(self.intercept, |acc, ((w, x), (m, s))| acc + w * (x - m) / if *s > 0.0 { *s } else { 1.0 });
        sigmoid(z)
    }
}

/// How a bound model turns the feature vector into log-odds.
#[derive(Debug, Clone, PartialEq)]
enum Scorer {
    /// Precomputed `w / std` and the constant part, so scoring is one dot product.
    Linear { weights: Vec<f64>, constant: f64 },
    /// Trees compiled against `FEATURE_NAMES` positions, plus the base log-odds.
    Trees { trees: Compiled, base: f64 },
}

/// A journey model bound to the shared feature vector: ready to score a user.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundModel {
    /// The artifact it was bound from.
    pub artifact: ModelArtifact,
    /// For each artifact feature, its position in `FEATURE_NAMES`.
    index: Vec<usize>,
    scorer: Scorer,
}

impl BoundModel {
    /// Checks the artifact and binds its features to positions in `FEATURE_NAMES`.
    pub fn bind(artifact: ModelArtifact) -> Result<Self, String> {
        let names: Vec<String> = FEATURE_NAMES.iter().map(|n| n.to_string()).collect();
        Self::bind_with(artifact, &names)
    }

    /// Checks the artifact and binds its features to positions in `names`: the built-in
    /// features then the configured ones (`features::all_names`), as the server computes them.
    pub fn bind_with(artifact: ModelArtifact, names: &[String]) -> Result<Self, String> {
        artifact.check()?;
        let index = artifact
            .feature_names
            .iter()
            .map(|f| {
                names.iter().position(|n| n == f).ok_or_else(|| {
                    format!("feature {f:?} is not a feature the server computes (known: {})", names.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if artifact.kind == GBDT {
            let scorer = Scorer::Trees { trees: Compiled::new(&artifact.trees, &index), base: artifact.intercept };
            return Ok(Self { artifact, index, scorer });
        }
        let s = &artifact.scaling;
        let weights: Vec<f64> =
            artifact.coefficients.iter().zip(&s.std).map(|(w, sd)| w / if *sd > 0.0 { *sd } else { 1.0 }).collect();
        let constant = artifact.intercept - weights.iter().zip(&s.mean).map(|(w, m)| w * m).sum::<f64>();
        Ok(Self { artifact, index, scorer: Scorer::Linear { weights, constant } })
    }

    /// The model's probability for a user's feature vector.
    pub fn score(&self, x: &Features) -> f64 {
        self.score_with(x, &[])
    }

    /// The model's probability for the built-in features `x` followed by the configured ones
    /// `extra` (positions past `N_FEATURES` read `extra`).
    pub fn score_with(&self, x: &Features, extra: &[f64]) -> f64 {
        let at = |i: usize| if i < x.len() { x[i] } else { extra.get(i - x.len()).copied().unwrap_or(0.0) };
        match &self.scorer {
            Scorer::Linear { weights, constant } => {
                sigmoid(self.index.iter().zip(weights).fold(*constant, |acc, (i, w)| acc + w * at(*i)))
            }
            Scorer::Trees { trees, base } if self.index.iter().all(|i| *i < x.len()) => sigmoid(trees.margin(*base, x)),
            Scorer::Trees { trees, base } => {
                // A configured feature the caller did not compute reads 0, as in the linear case.
                let width = self.index.iter().max().map_or(0, |m| m + 1).max(x.len());
                let full: Vec<f64> = (0..width).map(at).collect();
                sigmoid(trees.margin(*base, &full))
            }
        }
    }

    /// The artifact's version.
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
            trees: vec![],
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

    fn gbdt(features: &[&str]) -> ModelArtifact {
        use crate::domain::trees::Node;
        let mut a = artifact(features, &[]);
        a.kind = GBDT.into();
        a.intercept = -1.0;
        // f0 <= 2 ? 0.5 : (f1 <= 0.5 ? -0.3 : 1.2), then a stump on f1.
        a.trees = vec![
            Tree {
                nodes: vec![
                    Node::Split { feature: 0, threshold: 2.0, left: 1, right: 2 },
                    Node::Leaf(0.5),
                    Node::Split { feature: 1, threshold: 0.5, left: 3, right: 4 },
                    Node::Leaf(-0.3),
                    Node::Leaf(1.2),
                ],
            },
            Tree {
                nodes: vec![
                    Node::Split { feature: 1, threshold: 0.0, left: 1, right: 2 },
                    Node::Leaf(-0.1),
                    Node::Leaf(0.2),
                ],
            },
        ];
        a
    }

    #[test]
    fn gbdt_scores_match_hand_computed_values_bound_or_not() {
        let a = gbdt(&["log_purchases", "lapsed"]);
        let m = BoundModel::bind(a.clone()).unwrap();
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        for (f0, f1, z) in [(1.0, 0.0, -1.0 + 0.5 - 0.1), (3.0, 0.0, -1.0 - 0.3 - 0.1), (3.0, 1.0, -1.0 + 1.2 + 0.2)] {
            let want = sig(z);
            assert!((a.score_row(&[f0, f1]) - want).abs() < 1e-12, "({f0}, {f1})");
            let mut x = [0.0; N_FEATURES];
            x[7] = f0; // log_purchases
            x[14] = f1; // lapsed
            assert_eq!(m.score(&x), a.score_row(&[f0, f1]), "bound and artifact scoring agree to the bit");
        }
    }

    #[test]
    fn gbdt_binding_rejects_what_it_cannot_score() {
        use crate::domain::trees::Node;
        assert!(BoundModel::bind(gbdt(&["log_purchases", "nope"])).unwrap_err().contains("nope"));
        assert!(BoundModel::bind(gbdt(&["log_purchases"])).unwrap_err().contains("feature 1"));
        let mut a = gbdt(&["log_purchases", "lapsed"]);
        a.trees[1].nodes[2] = Node::Leaf(f64::INFINITY);
        assert!(BoundModel::bind(a).unwrap_err().contains("tree 1"));
        let mut a = gbdt(&["log_purchases", "lapsed"]);
        a.trees.clear();
        assert!(BoundModel::bind(a).unwrap_err().contains("without trees"));
        let mut a = gbdt(&["log_purchases", "lapsed"]);
        a.coefficients = vec![1.0, 2.0];
        assert!(BoundModel::bind(a).unwrap_err().contains("coefficients"));
    }

    #[test]
    fn gbdt_artifact_round_trips_and_logistic_json_has_no_trees() {
        let a = gbdt(&["log_purchases", "lapsed"]);
        let json = serde_json::to_string(&a).unwrap();
        let back: ModelArtifact = serde_json::from_str(&json).unwrap();
        assert_eq!(a, back);
        assert_eq!(back.score_row(&[3.0, 1.0]), a.score_row(&[3.0, 1.0]));
        let lr = serde_json::to_value(artifact(&["log_purchases"], &[0.25])).unwrap();
        assert!(lr.get("trees").is_none(), "logistic artifacts keep their shape: {lr}");
    }

    #[test]
    fn artifact_round_trips_through_json() {
        let a = artifact(&["log_purchases"], &[0.25]);
        let back: ModelArtifact = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(a, back);
    }
}
