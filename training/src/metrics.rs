//! Evaluation: ROC AUC, log loss, Brier score, calibration by decile, lift in the top decile.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decile {
    pub mean_predicted: f64,
    pub observed_rate: f64,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub rows: usize,
    pub base_rate: f64,
    pub auc: f64,
    pub log_loss: f64,
    pub brier: f64,
    /// Observed rate in the top-scored tenth over the base rate.
    pub lift_top_decile: f64,
    /// Deciles of predicted probability, lowest first.
    pub calibration: Vec<Decile>,
    /// (false positive rate, true positive rate), at most ~200 points.
    pub roc: Vec<(f64, f64)>,
}

/// ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half.
pub fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += idx[i..=j].iter().filter(|&&k| labels[k]).count() as f64 * avg_rank;
        i = j + 1;
    }
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

pub fn evaluate(p: &[f64], y: &[bool]) -> Evaluation {
    let n = p.len();
    let yf = |b: bool| if b { 1.0 } else { 0.0 };
    let base_rate = y.iter().filter(|b| **b).count() as f64 / n.max(1) as f64;
    let log_loss = p
        .iter()
        .zip(y)
        .map(|(p, y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            -(yf(*y) * p.ln() + (1.0 - yf(*y)) * (1.0 - p).ln())
        })
        .sum::<f64>()
        / n.max(1) as f64;
    let brier = p.iter().zip(y).map(|(p, y)| (p - yf(*y)).powi(2)).sum::<f64>() / n.max(1) as f64;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let calibration: Vec<Decile> = (0..10)
        .map(|d| {
            let (lo, hi) = (d * n / 10, (d + 1) * n / 10);
            let part = &order[lo..hi];
            let c = part.len().max(1) as f64;
            Decile {
                mean_predicted: part.iter().map(|&i| p[i]).sum::<f64>() / c,
                observed_rate: part.iter().filter(|&&i| y[i]).count() as f64 / c,
                count: part.len(),
            }
        })
        .collect();
    let lift_top_decile = if base_rate > 0.0 { calibration[9].observed_rate / base_rate } else { f64::NAN };
    // ROC points, from the highest score down.
    let (pos, neg) = (base_rate * n as f64, (1.0 - base_rate) * n as f64);
    let mut roc = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let every = (n / 200).max(1);
    for (k, &i) in order.iter().rev().enumerate() {
        if y[i] {
            tp += 1.0
        } else {
            fp += 1.0
        }
        if k % every == 0 || k + 1 == n {
            roc.push((fp / neg.max(1.0), tp / pos.max(1.0)));
        }
    }
    Evaluation { rows: n, base_rate, auc: auc(p, y), log_loss, brier, lift_top_decile, calibration, roc }
}

impl Evaluation {
    /// The metrics as they are stored in an artifact (prefix: `holdout_`, `cv_`, ...).
    pub fn metrics(&self, prefix: &str) -> Vec<(String, f64)> {
        [
            ("auc", self.auc),
            ("log_loss", self.log_loss),
            ("brier", self.brier),
            ("lift_top_decile", self.lift_top_decile),
            ("base_rate", self.base_rate),
            ("rows", self.rows as f64),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect()
    }

    pub fn table(&self, title: &str) -> String {
        let mut out = format!(
            "{title}\n  rows {:>9}   base rate {:.4}   ROC AUC {:.4}   log loss {:.4}   Brier {:.4}   lift@top10% {:.2}\n  decile  mean predicted  observed    rows\n",
            self.rows, self.base_rate, self.auc, self.log_loss, self.brier, self.lift_top_decile
        );
        for (i, d) in self.calibration.iter().enumerate() {
            out += &format!("  {:>6}  {:>14.4}  {:>8.4}  {:>6}\n", i + 1, d.mean_predicted, d.observed_rate, d.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scores: &[f64], labels: &[bool], expected: f64) {
        assert!((auc(scores, labels) - expected).abs() < 1e-12, "{scores:?} {labels:?}");
    }

    #[test]
    fn auc_reference_values() {
        // scikit-learn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.75
        check(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true], 0.75);
        check(&[0.1, 0.2, 0.3, 0.4], &[false, false, true, true], 1.0);
        check(&[0.5, 0.5, 0.5, 0.5], &[false, true, false, true], 0.5);
        // ties between classes count half: roc_auc_score([0,1,1],[0.3,0.3,0.9]) == 0.75
        check(&[0.3, 0.3, 0.9], &[false, true, true], 0.75);
        assert!(auc(&[0.1, 0.2], &[true, true]).is_nan());
    }

    #[test]
    fn evaluation_of_a_perfectly_calibrated_coin() {
        let p = vec![0.5; 1000];
        let y: Vec<bool> = (0..1000).map(|i| i % 2 == 0).collect();
        let e = evaluate(&p, &y);
        assert!((e.log_loss - 2f64.ln()).abs() < 1e-12);
        assert!((e.brier - 0.25).abs() < 1e-12);
        assert_eq!(e.base_rate, 0.5);
        assert_eq!(e.calibration.iter().map(|d| d.count).sum::<usize>(), 1000);
        assert_eq!(e.roc.first(), Some(&(0.0, 0.0)));
        assert_eq!(e.roc.last(), Some(&(1.0, 1.0)));
    }
}
