//! Gradient-boosted trees for binary log-loss: histogram splits (≤ 255 bins a feature),
//! leaf-wise growth limited by leaves and depth, shrinkage, a minimum leaf size, L2 on leaf
//! values, and early stopping on a stratified validation split. The fitted trees are the
//! artifact's tree list, scored by the server with `touchpoint::domain::trees`.
use crate::train::{CvResult, stratified_folds};
use ndarray::{Array2, Axis};
use touchpoint::domain::trees::{Node, Tree};

/// Hyper-parameters; the defaults are scikit-learn's `HistGradientBoostingClassifier`'s.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Params {
    /// Shrinkage applied to every leaf value.
    pub learning_rate: f64,
    /// Most trees (boosting rounds); early stopping usually ends sooner.
    pub max_trees: usize,
    /// Most leaves a tree.
    pub max_leaves: usize,
    /// Deepest a leaf may be (0: limited by `max_leaves` only).
    pub max_depth: usize,
    /// Fewest training rows in a leaf.
    pub min_leaf: usize,
    /// L2 penalty on leaf values (added to the hessian sum).
    pub l2: f64,
    /// Histogram bins a feature (2..=255).
    pub max_bins: usize,
    /// Stop after this many rounds without a better validation log-loss (0: no early stopping,
    /// all rows train).
    pub patience: usize,
    /// Share of the training rows held out (stratified) for early stopping.
    pub validation_fraction: f64,
    /// Seed of the validation split.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            learning_rate: 0.1,
            max_trees: 100,
            max_leaves: 31,
            max_depth: 0,
            min_leaf: 20,
            l2: 0.0,
            max_bins: 255,
            patience: 10,
            validation_fraction: 0.1,
            seed: 7,
        }
    }
}

impl Params {
    /// Checks the parameters make sense, naming the first that does not.
    pub fn check(&self) -> Result<(), String> {
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return Err(format!("learning rate {} is not in (0, 1]", self.learning_rate));
        }
        if self.max_trees == 0 || self.max_leaves < 2 || self.min_leaf == 0 {
            return Err("max trees ≥ 1, max leaves ≥ 2 and min leaf ≥ 1 are needed".into());
        }
        if !(2..=255).contains(&self.max_bins) {
            return Err(format!("max bins {} is not in 2..=255", self.max_bins));
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return Err(format!("l2 {} is not a finite non-negative number", self.l2));
        }
        if self.patience > 0 && !(self.validation_fraction > 0.0 && self.validation_fraction < 0.5) {
            return Err(format!("validation fraction {} is not in (0, 0.5)", self.validation_fraction));
        }
        Ok(())
    }
}

/// A fitted ensemble over raw features.
#[derive(Debug, Clone)]
pub struct GbdtFit {
    /// The base log-odds (the training rows' positive rate).
    pub base: f64,
    /// The trees, learning rate applied to their leaves.
    pub trees: Vec<Tree>,
    /// Validation log-loss of the kept trees (None without early stopping).
    pub validation_loss: Option<f64>,
    /// Whether early stopping ended the boosting before `max_trees`.
    pub stopped_early: bool,
}

impl GbdtFit {
    /// Probabilities for raw rows.
    pub fn predict(&self, x: &Array2<f64>) -> Vec<f64> {
        x.rows()
            .into_iter()
            .map(|r| {
                let row = r.to_vec();
                sigmoid(touchpoint::domain::trees::margin(self.base, &self.trees, &row))
            })
            .collect()
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Bin upper edges of one column: a value `v` falls in bin `b` when `edges[b-1] < v <= edges[b]`,
/// so "bin ≤ b" is the same test as "v ≤ edges[b]" and trees split on raw values. Midpoints
/// between distinct values, at most `max_bins - 1` of them at quantiles.
fn edges(col: &[f64], max_bins: usize) -> Vec<f64> {
    let mut v: Vec<f64> = col.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for x in v.iter().copied() {
        match distinct.last_mut() {
            Some((d, n)) if *d == x => *n += 1,
            _ => distinct.push((x, 1)),
        }
    }
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| (w[0].0 + w[1].0) / 2.0).collect();
    }
    // Cut at the quantiles: an edge after the distinct value where the running count
    // passes the next multiple of n / max_bins.
    let step = v.len() as f64 / max_bins as f64;
    let mut out = Vec::with_capacity(max_bins - 1);
    let mut seen = 0usize;
    let mut next = step;
    for w in distinct.windows(2) {
        seen += w[0].1;
        if seen as f64 >= next && out.len() < max_bins - 1 {
            out.push((w[0].0 + w[1].0) / 2.0);
            while next <= seen as f64 {
                next += step;
            }
        }
    }
    out
}

/// The bin of a value; NaN goes to the last bin, to the right of every split (as scoring does).
fn bin_of(edges: &[f64], v: f64) -> u8 {
    if v.is_nan() { edges.len() as u8 } else { edges.partition_point(|e| *e < v) as u8 }
}

/// Columns of bin indices, one `Vec<u8>` a feature (column-major: histograms read one column).
fn bin_columns(x: &Array2<f64>, edges: &[Vec<f64>]) -> Vec<Vec<u8>> {
    x.axis_iter(Axis(1)).zip(edges).map(|(col, e)| col.iter().map(|v| bin_of(e, *v)).collect()).collect()
}

#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

const BINS: usize = 256;

#[derive(Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: u8,
}

/// A leaf still growing: its rows, gradient sums, histogram and best split.
struct Open {
    node: usize,
    depth: usize,
    rows: Vec<u32>,
    g: f64,
    h: f64,
    hist: Vec<Bin>,
    best: Option<Split>,
}

/// A node of the tree being grown, with the bin its split tests (for binned validation rows).
enum Grow {
    Split { feature: usize, bin: u8, left: usize, right: usize },
    Leaf(f64),
}

struct Grower<'a> {
    bins: &'a [Vec<u8>],
    n_bins: Vec<usize>,
    grad: &'a [f64],
    hess: &'a [f64],
    p: &'a Params,
}

impl Grower<'_> {
    fn histogram(&self, rows: &[u32]) -> Vec<Bin> {
        let mut hist = vec![Bin::default(); self.bins.len() * BINS];
        for (f, col) in self.bins.iter().enumerate() {
            let h = &mut hist[f * BINS..(f + 1) * BINS];
            for &r in rows {
                let b = &mut h[col[r as usize] as usize];
                b.g += self.grad[r as usize];
                b.h += self.hess[r as usize];
                b.n += 1;
            }
        }
        hist
    }

    fn score(&self, g: f64, h: f64) -> f64 {
        g * g / (h + self.p.l2)
    }

    fn best_split(&self, hist: &[Bin], g: f64, h: f64, n: usize, depth: usize) -> Option<Split> {
        if (self.p.max_depth > 0 && depth >= self.p.max_depth) || n < 2 * self.p.min_leaf {
            return None;
        }
        let parent = self.score(g, h);
        let mut best: Option<Split> = None;
        for (f, &nb) in self.n_bins.iter().enumerate() {
            let (mut gl, mut hl, mut nl) = (0.0, 0.0, 0usize);
            for b in 0..nb.saturating_sub(1) {
                let bin = hist[f * BINS + b];
                gl += bin.g;
                hl += bin.h;
                nl += bin.n as usize;
                let nr = n - nl;
                if nl < self.p.min_leaf {
                    continue;
                }
                if nr < self.p.min_leaf {
                    break;
                }
                let (gr, hr) = (g - gl, h - hl);
                if hl < 1e-3 || hr < 1e-3 {
                    continue;
                }
                let gain = self.score(gl, hl) + self.score(gr, hr) - parent;
                if gain > 1e-12 && best.is_none_or(|s| gain > s.gain) {
                    best = Some(Split { gain, feature: f, bin: b as u8 });
                }
            }
        }
        best
    }

    fn open(&self, node: usize, depth: usize, rows: Vec<u32>, hist: Vec<Bin>) -> Open {
        let (g, h) = rows.iter().fold((0.0, 0.0), |(g, h), &r| (g + self.grad[r as usize], h + self.hess[r as usize]));
        let best = self.best_split(&hist, g, h, rows.len(), depth);
        Open { node, depth, rows, g, h, hist, best }
    }

    /// Grows one tree best-first; returns its nodes and, for every leaf, its rows and value.
    fn grow(&self, rows: Vec<u32>) -> (Vec<Grow>, Vec<(Vec<u32>, f64)>) {
        let mut nodes = vec![Grow::Leaf(0.0)];
        let hist = self.histogram(&rows);
        let mut open = vec![self.open(0, 0, rows, hist)];
        let mut done: Vec<Open> = Vec::new();
        while open.len() + done.len() < self.p.max_leaves {
            let Some(i) = (0..open.len())
                .filter(|&i| open[i].best.is_some())
                .max_by(|&a, &b| open[a].best.unwrap().gain.total_cmp(&open[b].best.unwrap().gain))
            else {
                break;
            };
            let leaf = open.swap_remove(i);
            let s = leaf.best.expect("filtered on a split");
            let col = &self.bins[s.feature];
            let (left, right): (Vec<u32>, Vec<u32>) = leaf.rows.iter().partition(|&&r| col[r as usize] <= s.bin);
            // Histogram of the smaller child; the larger one's is the parent's minus it.
            let left_small = left.len() <= right.len();
            let small_hist = self.histogram(if left_small { &left } else { &right });
            let mut large_hist = leaf.hist;
            for (l, s) in large_hist.iter_mut().zip(&small_hist) {
                l.g -= s.g;
                l.h -= s.h;
                l.n -= s.n;
            }
            let (lh, rh) = if left_small { (small_hist, large_hist) } else { (large_hist, small_hist) };
            let (l, r) = (nodes.len(), nodes.len() + 1);
            nodes.push(Grow::Leaf(0.0));
            nodes.push(Grow::Leaf(0.0));
            nodes[leaf.node] = Grow::Split { feature: s.feature, bin: s.bin, left: l, right: r };
            open.push(self.open(l, leaf.depth + 1, left, lh));
            open.push(self.open(r, leaf.depth + 1, right, rh));
            // Leaves that cannot split are finished: keep only what is needed to set their value.
            let (still, finished): (Vec<Open>, Vec<Open>) = open.into_iter().partition(|o| o.best.is_some());
            open = still;
            done.extend(finished.into_iter().map(|mut o| {
                o.hist = Vec::new();
                o
            }));
        }
        let mut leaves = Vec::new();
        for o in open.into_iter().chain(done) {
            let value = -self.p.learning_rate * o.g / (o.h + self.p.l2);
            nodes[o.node] = Grow::Leaf(value);
            leaves.push((o.rows, value));
        }
        (nodes, leaves)
    }
}

fn binned_value(nodes: &[Grow], bins: &[Vec<u8>], r: usize) -> f64 {
    let mut i = 0;
    loop {
        match nodes[i] {
            Grow::Split { feature, bin, left, right } => i = if bins[feature][r] <= bin { left } else { right },
            Grow::Leaf(v) => return v,
        }
    }
}

fn to_tree(nodes: &[Grow], edges: &[Vec<f64>]) -> Tree {
    Tree {
        nodes: nodes
            .iter()
            .map(|n| match *n {
                Grow::Split { feature, bin, left, right } => {
                    Node::Split { feature, threshold: edges[feature][bin as usize], left, right }
                }
                Grow::Leaf(v) => Node::Leaf(v),
            })
            .collect(),
    }
}

fn log_loss(margin: &[f64], y: &[bool]) -> f64 {
    // log(1 + e^-z) for positives, log(1 + e^z) for negatives, computed stably.
    let softplus = |z: f64| if z > 0.0 { z + (-z).exp().ln_1p() } else { z.exp().ln_1p() };
    margin.iter().zip(y).map(|(&z, &t)| softplus(if t { -z } else { z })).sum::<f64>() / y.len().max(1) as f64
}

/// Fits an ensemble on raw rows. With early stopping, a stratified `validation_fraction` of
/// the rows is held out and the trees up to the best validation log-loss are kept.
pub fn fit(x: &Array2<f64>, y: &[bool], p: &Params) -> Result<GbdtFit, String> {
    p.check()?;
    if y.is_empty() || y.iter().all(|&t| t) || y.iter().all(|&t| !t) {
        return Err("boosting needs both classes in the training rows".into());
    }
    let (train, valid): (Vec<usize>, Vec<usize>) = if p.patience > 0 {
        let k = (1.0 / p.validation_fraction).round().max(2.0) as usize;
        let folds = stratified_folds(y, k, p.seed ^ 0x9e37_79b9);
        (0..y.len()).partition(|&i| folds[i] != 0)
    } else {
        ((0..y.len()).collect(), vec![])
    };
    let xt = x.select(Axis(0), &train);
    let yt: Vec<bool> = train.iter().map(|&i| y[i]).collect();
    let yv: Vec<bool> = valid.iter().map(|&i| y[i]).collect();
    let edges: Vec<Vec<f64>> = xt.axis_iter(Axis(1)).map(|c| edges(&c.to_vec(), p.max_bins)).collect();
    let bins = bin_columns(&xt, &edges);
    let vbins = bin_columns(&x.select(Axis(0), &valid), &edges);
    let rate = yt.iter().filter(|&&t| t).count() as f64 / yt.len() as f64;
    let base = (rate / (1.0 - rate)).ln();
    let mut margin = vec![base; yt.len()];
    let mut vmargin = vec![base; yv.len()];
    let (mut grad, mut hess) = (vec![0.0; yt.len()], vec![0.0; yt.len()]);
    let mut trees = Vec::new();
    let (mut best_loss, mut best_len) = (if yv.is_empty() { None } else { Some(log_loss(&vmargin, &yv)) }, 0);
    let mut stopped_early = false;
    for _ in 0..p.max_trees {
        for i in 0..yt.len() {
            let q = sigmoid(margin[i]);
            grad[i] = q - f64::from(u8::from(yt[i]));
            hess[i] = (q * (1.0 - q)).max(1e-16);
        }
        let grower =
            Grower { bins: &bins, n_bins: edges.iter().map(|e| e.len() + 1).collect(), grad: &grad, hess: &hess, p };
        let (nodes, leaves) = grower.grow((0..yt.len() as u32).collect());
        for (rows, v) in &leaves {
            for &r in rows {
                margin[r as usize] += v;
            }
        }
        for (r, m) in vmargin.iter_mut().enumerate() {
            *m += binned_value(&nodes, &vbins, r);
        }
        trees.push(to_tree(&nodes, &edges));
        if let Some(best) = best_loss {
            let loss = log_loss(&vmargin, &yv);
            if loss < best - 1e-7 {
                best_loss = Some(loss);
                best_len = trees.len();
            } else if trees.len() - best_len >= p.patience {
                stopped_early = true;
                break;
            }
        } else {
            best_len = trees.len();
        }
        if nodes.len() == 1 {
            // A tree that could not split: the next rounds would be the same.
            break;
        }
    }
    trees.truncate(best_len.max(1));
    Ok(GbdtFit { base, trees, validation_loss: best_loss, stopped_early })
}

/// K-fold stratified cross-validation on the same folds as logistic regression's
/// (`train::stratified_folds` with the same seed).
pub fn cross_validate(x: &Array2<f64>, y: &[bool], k: usize, params: &Params, seed: u64) -> anyhow::Result<CvResult> {
    crate::train::cross_validate_with(y, k, seed, "cross-validation (gbdt)", |train, test| {
        let yt: Vec<bool> = train.iter().map(|&i| y[i]).collect();
        let fit = fit(&x.select(Axis(0), train), &yt, params).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(fit.predict(&x.select(Axis(0), test)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::auc;
    use rand::{Rng, SeedableRng};

    #[test]
    fn edges_put_every_distinct_value_in_its_own_bin_or_cut_at_quantiles() {
        let e = edges(&[3.0, 1.0, 2.0, 2.0, f64::NAN], 255);
        assert_eq!(e, vec![1.5, 2.5]);
        assert_eq!([1.0, 1.5, 2.0, 3.0, 9.0, f64::NAN].map(|v| bin_of(&e, v)), [0, 0, 1, 2, 2, 2]);
        let many: Vec<f64> = (0..10_000).map(f64::from).collect();
        let e = edges(&many, 255);
        assert_eq!(e.len(), 254);
        let counts = many.iter().fold(vec![0; 255], |mut c, v| {
            c[bin_of(&e, *v) as usize] += 1;
            c
        });
        assert!(counts.iter().all(|&n| (30..=50).contains(&n)), "about 10000/255 a bin: {counts:?}");
    }

    /// XOR of two signs with noise columns: no linear model separates it, trees do.
    fn xor(n: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((n, 4), |_| rng.r#gen::<f64>() * 2.0 - 1.0);
        let y = x.rows().into_iter().map(|r| (r[0] > 0.0) != (r[1] > 0.0)).collect();
        (x, y)
    }

    #[test]
    fn boosted_trees_beat_logistic_regression_on_xor() {
        let (x, y) = xor(2000, 1);
        let gb = cross_validate(&x, &y, 5, &Params::default(), 3).unwrap();
        let lr = crate::train::cross_validate(&x, &y, 5, &crate::irls::Irls::default(), 3).unwrap();
        let (g, l) = (crate::train::mean(&gb.fold_aucs), crate::train::mean(&lr.fold_aucs));
        assert!(g > 0.95 && l < 0.6, "gbdt {g:.4}, logistic {l:.4}");
        assert_eq!(gb.folds, lr.folds, "the same folds");
    }

    #[test]
    fn trees_respect_the_limits_and_early_stopping_keeps_the_best_round() {
        let (x, y) = xor(3000, 2);
        let p = Params { max_depth: 3, max_leaves: 6, min_leaf: 50, max_trees: 400, ..Params::default() };
        let fit = fit(&x, &y, &p).unwrap();
        assert!(fit.stopped_early && fit.trees.len() < 400, "{} trees", fit.trees.len());
        for t in &fit.trees {
            t.check(4).unwrap();
            assert!(t.depth() <= 3);
            assert!(t.nodes.iter().filter(|n| matches!(n, Node::Leaf(_))).count() <= 6);
        }
        // Fresh data: the ensemble generalises.
        let (xv, yv) = xor(1000, 9);
        assert!(auc(&fit.predict(&xv), &yv) > 0.95);
    }

    #[test]
    fn leaf_values_follow_the_newton_step_with_l2_and_shrinkage() {
        // One split on x0 separates the classes; with one round and no early stopping the
        // leaf value is -lr * G / (H + l2) at the base rate's gradient and hessian.
        let x = Array2::from_shape_fn((40, 1), |(i, _)| if i < 10 { 0.0 } else { 1.0 });
        let y: Vec<bool> = (0..40).map(|i| i < 10).collect();
        let p = Params { max_trees: 1, patience: 0, min_leaf: 5, l2: 2.0, learning_rate: 0.5, ..Params::default() };
        let f = fit(&x, &y, &p).unwrap();
        let q = 0.25f64; // base rate
        assert!((f.base - (q / (1.0 - q)).ln()).abs() < 1e-12);
        let h = q * (1.0 - q);
        let left = -0.5 * (10.0 * (q - 1.0)) / (10.0 * h + 2.0);
        let right = -0.5 * (30.0 * q) / (30.0 * h + 2.0);
        let t = &f.trees[0];
        assert_eq!(t.nodes[0], Node::Split { feature: 0, threshold: 0.5, left: 1, right: 2 });
        assert!(matches!(t.nodes[1], Node::Leaf(v) if (v - left).abs() < 1e-12), "{t:?}");
        assert!(matches!(t.nodes[2], Node::Leaf(v) if (v - right).abs() < 1e-12), "{t:?}");
    }

    #[test]
    fn bad_parameters_and_one_class_data_are_refused() {
        let x = Array2::zeros((10, 1));
        assert!(fit(&x, &[true; 10], &Params::default()).unwrap_err().contains("both classes"));
        let bad = Params { max_bins: 300, ..Params::default() };
        assert!(fit(&x, &[true; 10], &bad).unwrap_err().contains("max bins"));
    }
}
