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
    /// Deciles of predicted probability, lowest first (tied scores shared out, see `evaluate`).
    pub calibration: Vec<Decile>,
    /// (false positive rate, true positive rate) at distinct score thresholds, highest first,
    /// from (0, 0) to (1, 1); at most ~200 points.
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
    // Runs of tied scores (in `order`): a model cannot rank rows with equal scores, so no
    // statistic may depend on the order they were sorted in.
    let mut runs: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, positives)
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && p[order[j]] == p[order[i]] {
            j += 1;
        }
        runs.push((i, j, order[i..j].iter().filter(|&&k| y[k]).count()));
        i = j;
    }
    // Deciles by rank; a run that straddles a decile boundary is shared out in proportion to
    // its rows in each decile, with its average outcome (the expectation over tie orders).
    let calibration: Vec<Decile> = (0..10)
        .map(|d| {
            let (lo, hi) = (d * n / 10, (d + 1) * n / 10);
            let (mut predicted, mut observed) = (0.0, 0.0);
            for &(a, b, pos) in &runs {
                let overlap = b.min(hi).saturating_sub(a.max(lo)) as f64;
                if overlap > 0.0 {
                    predicted += overlap * p[order[a]];
                    observed += overlap * pos as f64 / (b - a) as f64;
                }
            }
            let c = (hi - lo).max(1) as f64;
            Decile { mean_predicted: predicted / c, observed_rate: observed / c, count: hi - lo }
        })
        .collect();
    let lift_top_decile = if base_rate > 0.0 { calibration[9].observed_rate / base_rate } else { f64::NAN };
    // ROC points, from the highest score down: one point per distinct score (a threshold
    // between tied rows does not exist), thinned to about 200 points.
    let (pos, neg) = (base_rate * n as f64, (1.0 - base_rate) * n as f64);
    let mut roc = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let every = (n / 200).max(1);
    let mut since = 0;
    for (k, &(a, b, positives)) in runs.iter().rev().enumerate() {
        tp += positives as f64;
        fp += (b - a - positives) as f64;
        since += b - a;
        if since >= every || k + 1 == runs.len() {
            roc.push((fp / neg.max(1.0), tp / pos.max(1.0)));
            since = 0;
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

    /// A constant model ranks nothing: AUC 0.5, the ROC is the diagonal, every decile shows the
    /// base rate and the top-decile lift is 1, whatever order the rows come in.
    #[test]
    fn a_constant_model_is_no_better_than_chance() {
        let y: Vec<bool> = (0..1000).map(|i| i % 7 == 0 || i > 900).collect();
        let e = evaluate(&vec![0.3; 1000], &y);
        assert_eq!(e.auc, 0.5);
        assert_eq!(e.roc, [(0.0, 0.0), (1.0, 1.0)]);
        assert!((e.lift_top_decile - 1.0).abs() < 1e-12, "{}", e.lift_top_decile);
        for d in &e.calibration {
            assert!((d.observed_rate - e.base_rate).abs() < 1e-12 && (d.mean_predicted - 0.3).abs() < 1e-12, "{d:?}");
        }
    }

    /// One ROC point per distinct score; a tie group across a decile boundary is shared out.
    #[test]
    fn ties_make_one_roc_point_and_are_shared_between_deciles() {
        // 20 rows: 10 at 0.9 (6 positive), 10 at 0.1 (1 positive).
        let p: Vec<f64> = (0..20).map(|i| if i < 10 { 0.9 } else { 0.1 }).collect();
        let y: Vec<bool> = (0..20).map(|i| i < 6 || i == 10).collect();
        let e = evaluate(&p, &y);
        assert_eq!(e.roc, [(0.0, 0.0), (4.0 / 13.0, 6.0 / 7.0), (1.0, 1.0)]);
        assert!((e.calibration[9].observed_rate - 0.6).abs() < 1e-12);
        assert!((e.lift_top_decile - 0.6 / 0.35).abs() < 1e-12);
        // The area under the drawn polyline is the AUC.
        let area: f64 = e.roc.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
        assert!((area - e.auc).abs() < 1e-12, "{area} vs {}", e.auc);
    }
}
