//! A learned targeting policy on a real randomised test (issue 10, part 7). Hillstrom's e-mail
//! test assigned each customer to Mens, Womens or no e-mail with probability 1/3, so the file
//! is logged bandit data with known propensities. The file is split in two halves (seeded
//! shuffle); on the first, a two-model ("T-") learner fits one conversion model per arm on the
//! customer features (logistic regression, IRLS) and the mean spend of a converter per arm; on
//! the second, IPS and SNIPS estimate the conversion rate and spend per customer of:
//!
//! - `learned (conversion)`: each customer gets the arm with the highest predicted conversion
//!   (the highest predicted uplift over no e-mail, or no e-mail when neither e-mail's uplift is
//!   positive);
//! - `learned (spend)`: the same with predicted spend (P(conversion) × the arm's spend per
//!   converter);
//! - `always mens`, `always womens`, `no e-mail`: the single arms.
//!
//! The learned policies are compared with the best single arm by a paired IPS difference on the
//! same evaluation rows (the estimates share rows, so their CIs alone would overstate the
//! uncertainty of the difference).
use crate::irls::Irls;
use crate::ope::{Estimate, Logged, evaluate};
use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// The arms, in the file's randomisation.
pub const ARMS: [&str; 3] = ["Mens E-Mail", "Womens E-Mail", "No E-Mail"];
/// Each arm's probability in the file.
pub const PROPENSITY: f64 = 1.0 / 3.0;
/// The features the per-arm models see.
pub const FEATURES: [&str; 9] =
    ["recency", "log1p_history", "mens", "womens", "newbie", "zip_urban", "zip_rural", "channel_web", "channel_phone"];

/// One customer of the file.
#[derive(Debug, Clone)]
pub struct Customer {
    /// Index into [`ARMS`].
    pub arm: usize,
    pub x: [f64; FEATURES.len()],
    pub conversion: f64,
    pub spend: f64,
}

/// Reads the file (plain or gzip); the header may order the columns freely.
pub fn read(path: &Path) -> anyhow::Result<Vec<Customer>> {
    let file = touchpoint::io::open_maybe_gz(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(file);
    let header: Vec<String> = reader.headers()?.iter().map(String::from).collect();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| anyhow::anyhow!("{}: no column {name}", path.display()))
    };
    let names =
        ["recency", "history", "mens", "womens", "newbie", "zip_code", "channel", "segment", "conversion", "spend"];
    let cols = names.iter().map(|n| col(n)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| anyhow::anyhow!("{}: line {line}: {e}", path.display()))?;
        let cell = |k: usize| rec.get(cols[k]).unwrap_or_default();
        let num = |k: usize| {
            cell(k)
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("line {line}: {} {:?} is not a number", names[k], cell(k)))
        };
        let arm = ARMS
            .iter()
            .position(|a| *a == cell(7))
            .ok_or_else(|| anyhow::anyhow!("line {line}: unknown segment {:?}", cell(7)))?;
        let (zip, channel) = (cell(5), cell(6));
        out.push(Customer {
            arm,
            x: [
                num(0)?,
                num(1)?.max(0.0).ln_1p(),
                num(2)?,
                num(3)?,
                num(4)?,
                f64::from(u8::from(zip == "Urban")),
                f64::from(u8::from(zip == "Rural")),
                f64::from(u8::from(channel == "Web")),
                f64::from(u8::from(channel == "Phone")),
            ],
            conversion: num(8)?,
            spend: num(9)?,
        });
    }
    Ok(out)
}

/// Splits the rows into a training and an evaluation half (seeded shuffle; the evaluation half
/// takes the odd one out).
pub fn split(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let eval = idx.split_off(n / 2);
    (idx, eval)
}

/// One arm's response model: P(conversion | x) and the mean spend of a converter.
#[derive(Debug, Clone)]
pub struct ArmModel {
    /// The conversion model, as an artifact (scored like any served model).
    model: touchpoint::domain::model::ModelArtifact,
    /// Mean spend of the arm's converters in the training half.
    pub spend_per_conversion: f64,
    /// Training rows of the arm.
    pub n: usize,
}

impl ArmModel {
    /// Predicted conversion probability.
    pub fn conversion(&self, x: &[f64]) -> f64 {
        self.model.score_row(x)
    }

    /// Predicted spend: P(conversion) × spend per converter.
    pub fn spend(&self, x: &[f64]) -> f64 {
        self.conversion(x) * self.spend_per_conversion
    }
}

/// Fits one model per arm on the given rows.
pub fn fit(rows: &[&Customer]) -> anyhow::Result<Vec<ArmModel>> {
    (0..ARMS.len())
        .map(|arm| {
            let mine: Vec<&&Customer> = rows.iter().filter(|c| c.arm == arm).collect();
            let mut x = Array2::from_shape_fn((mine.len(), FEATURES.len()), |(i, j)| mine[i].x[j]);
            let y: Vec<bool> = mine.iter().map(|c| c.conversion > 0.0).collect();
            let converters: Vec<f64> = mine.iter().filter(|c| c.conversion > 0.0).map(|c| c.spend).collect();
            anyhow::ensure!(!converters.is_empty(), "{}: no conversions in the training half", ARMS[arm]);
            let fitted = crate::train::fit(&mut x, &y, &Irls::default())
                .map_err(|e| anyhow::anyhow!("{}: conversion model: {e:#}", ARMS[arm]))?;
            let info = crate::train::ArtifactInfo {
                name: "hillstrom-conversion",
                target: format!("conversion in the {} arm", ARMS[arm]),
                training_window: String::new(),
                data_fingerprint: String::new(),
                feature_names: FEATURES.iter().map(|f| f.to_string()).collect(),
                encodings: Default::default(),
                params: Default::default(),
                metrics: vec![],
            };
            Ok(ArmModel {
                model: crate::train::artifact(info, &fitted),
                spend_per_conversion: converters.iter().sum::<f64>() / converters.len() as f64,
                n: mine.len(),
            })
        })
        .collect()
}

/// A targeting policy: the arm a customer gets.
pub type Policy<'a> = Box<dyn Fn(&Customer) -> usize + 'a>;

/// The arm with the highest predicted value (ties to the earlier arm).
fn argmax(values: impl Iterator<Item = f64>) -> usize {
    values.enumerate().fold((0, f64::NEG_INFINITY), |best, (i, v)| if v > best.1 { (i, v) } else { best }).0
}

/// The policies compared: learned by conversion, learned by spend, and each single arm.
pub fn policies(models: &[ArmModel]) -> Vec<(String, Policy<'_>)> {
    let mut out: Vec<(String, Policy<'_>)> = vec![
        (
            "learned (conversion)".into(),
            Box::new(move |c: &Customer| argmax(models.iter().map(|m| m.conversion(&c.x)))),
        ),
        ("learned (spend)".into(), Box::new(move |c: &Customer| argmax(models.iter().map(|m| m.spend(&c.x))))),
    ];
    for (arm, name) in ["always mens", "always womens", "no e-mail"].into_iter().enumerate() {
        out.push((name.into(), Box::new(move |_: &Customer| arm)));
    }
    out
}

/// Logged rows of one policy on the evaluation rows, for one reward.
pub fn logged(rows: &[&Customer], policy: &Policy, reward: fn(&Customer) -> f64) -> Vec<Logged> {
    rows.iter()
        .map(|c| Logged {
            reward: reward(c),
            propensity: PROPENSITY,
            target: if policy(c) == c.arm { 1.0 } else { 0.0 },
            dm: None,
        })
        .collect()
}

/// The paired IPS difference of two policies on the same logged rows: mean of (w_a − w_b)·r.
pub fn ips_difference(a: &[Logged], b: &[Logged]) -> Estimate {
    Estimate::mean(a.iter().zip(b).map(|(a, b)| (a.target - b.target) / a.propensity * a.reward))
}

/// One policy's estimates on the evaluation half.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyResult {
    pub policy: String,
    /// Share of evaluation customers sent each arm (Mens, Womens, no e-mail).
    pub arm_shares: [f64; 3],
    pub conversion_ips: Estimate,
    pub conversion_snips: Estimate,
    pub spend_ips: Estimate,
    pub spend_snips: Estimate,
    /// Paired IPS difference with the best single arm (by conversion IPS).
    pub conversion_vs_best_arm: Estimate,
    pub spend_vs_best_arm: Estimate,
    /// Paired IPS difference with sending nothing.
    pub conversion_vs_nothing: Estimate,
    pub spend_vs_nothing: Estimate,
}

/// The whole study's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Study {
    pub seed: u64,
    pub train_rows: usize,
    pub eval_rows: usize,
    /// The best single arm on the evaluation half (by conversion IPS).
    pub best_arm: String,
    pub policies: Vec<PolicyResult>,
}

fn conversion(c: &Customer) -> f64 {
    c.conversion
}
fn spend(c: &Customer) -> f64 {
    c.spend
}

/// Fits on one half, evaluates every policy on the other.
pub fn study(customers: &[Customer], seed: u64) -> anyhow::Result<Study> {
    let (train, eval) = split(customers.len(), seed);
    let train: Vec<&Customer> = train.iter().map(|&i| &customers[i]).collect();
    let eval: Vec<&Customer> = eval.iter().map(|&i| &customers[i]).collect();
    let models = fit(&train)?;
    let policies = policies(&models);
    let logs: Vec<(Vec<Logged>, Vec<Logged>)> =
        policies.iter().map(|(_, p)| (logged(&eval, p, conversion), logged(&eval, p, spend))).collect();
    let est = |rows: &[Logged]| evaluate(rows).map_err(anyhow::Error::msg);
    // The single arms are the last three policies, in ARMS order.
    let single = policies.len() - ARMS.len();
    let mut best = single;
    for k in single..policies.len() {
        if est(&logs[k].0)?.ips.value > est(&logs[best].0)?.ips.value {
            best = k;
        }
    }
    let nothing = policies.len() - 1;
    let mut results = Vec::new();
    for (k, (name, policy)) in policies.iter().enumerate() {
        let (conv, spent) = (est(&logs[k].0)?, est(&logs[k].1)?);
        let mut arm_shares = [0.0; 3];
        for c in &eval {
            arm_shares[policy(c)] += 1.0 / eval.len() as f64;
        }
        results.push(PolicyResult {
            policy: name.clone(),
            arm_shares,
            conversion_ips: conv.ips,
            conversion_snips: conv.snips,
            spend_ips: spent.ips,
            spend_snips: spent.snips,
            conversion_vs_best_arm: ips_difference(&logs[k].0, &logs[best].0),
            spend_vs_best_arm: ips_difference(&logs[k].1, &logs[best].1),
            conversion_vs_nothing: ips_difference(&logs[k].0, &logs[nothing].0),
            spend_vs_nothing: ips_difference(&logs[k].1, &logs[nothing].1),
        });
    }
    Ok(Study {
        seed,
        train_rows: train.len(),
        eval_rows: eval.len(),
        best_arm: policies[best].0.clone(),
        policies: results,
    })
}

/// The study as a table.
pub fn table(s: &Study) -> String {
    let ci = |e: &Estimate, scale: f64, digits: usize| {
        format!("{:.*} [{:.*}, {:.*}]", digits, e.value * scale, digits, e.ci.0 * scale, digits, e.ci.1 * scale)
    };
    let mut out = format!(
        "fitted on {} customers, evaluated on the other {} (seed {}); best single arm: {}\n\
         conversion in %, spend per customer; IPS and SNIPS with 95% CIs; differences are paired IPS\n\n",
        s.train_rows, s.eval_rows, s.seed, s.best_arm
    );
    out += &format!(
        "{:<21} {:>17}  {:<24} {:<24} {:<22} {:<22} {:<24} {:<22}\n",
        "policy",
        "mens/womens/none",
        "conversion IPS",
        "conversion SNIPS",
        "spend IPS",
        "spend SNIPS",
        "conv. vs best arm",
        "spend vs best arm"
    );
    for p in &s.policies {
        let shares =
            format!("{:.0}/{:.0}/{:.0}%", p.arm_shares[0] * 100.0, p.arm_shares[1] * 100.0, p.arm_shares[2] * 100.0);
        out += &format!(
            "{:<21} {:>17}  {:<24} {:<24} {:<22} {:<22} {:<24} {:<22}\n",
            p.policy,
            shares,
            ci(&p.conversion_ips, 100.0, 3),
            ci(&p.conversion_snips, 100.0, 3),
            ci(&p.spend_ips, 1.0, 3),
            ci(&p.spend_snips, 1.0, 3),
            ci(&p.conversion_vs_best_arm, 100.0, 3),
            ci(&p.spend_vs_best_arm, 1.0, 3),
        );
    }
    for p in s.policies.iter().filter(|p| p.policy.starts_with("learned")) {
        out += &format!(
            "{} vs sending nothing: conversion {} points, spend {} per customer\n",
            p.policy,
            ci(&p.conversion_vs_nothing, 100.0, 3),
            ci(&p.spend_vs_nothing, 1.0, 3)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_halves_partition_the_rows() {
        let (a, b) = split(11, 7);
        assert_eq!((a.len(), b.len()), (5, 6));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..11).collect::<Vec<_>>());
        assert_ne!(split(11, 8).0, a, "the seed changes the split");
    }

    #[test]
    fn argmax_takes_the_first_best() {
        assert_eq!(argmax([0.1, 0.3, 0.3].into_iter()), 1);
        assert_eq!(argmax([0.5].into_iter()), 0);
    }

    #[test]
    fn the_paired_difference_is_the_difference_of_ips() {
        let row = |reward, target| Logged { reward, propensity: PROPENSITY, target, dm: None };
        let a = [row(1.0, 1.0), row(0.0, 1.0), row(1.0, 0.0)];
        let b = [row(1.0, 0.0), row(0.0, 1.0), row(1.0, 1.0)];
        let d = ips_difference(&a, &b);
        let (ea, eb) = (evaluate(&a).unwrap(), evaluate(&b).unwrap());
        assert!((d.value - (ea.ips.value - eb.ips.value)).abs() < 1e-12);
    }
}
