//! Experiment results: per-variant rates, lifts with 95% intervals, p-values and the
//! sample-ratio check, and their table / CSV renderings.
use super::experiment::VariantCounters;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One variant's results against the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantResult {
    /// Variant name.
    pub variant: String,
    /// Whether this is the experiment's control.
    pub is_control: bool,
    /// The share of traffic the weights ask for.
    pub expected_share: f64,
    /// The raw counters.
    pub counters: VariantCounters,
    /// Visitors over exposed users (0 without exposures).
    pub visit_rate: f64,
    /// Converters over exposed users (0 without exposures).
    pub conversion_rate: f64,
    /// Attributed revenue over exposed users (0 without exposures).
    pub revenue_per_user: f64,
    /// Against the control (None for the control, or when undefined, e.g. a zero rate).
    pub visit: Option<super::stats::Comparison>,
    /// Conversion rate against the control (two-proportion z-test; None as for `visit`).
    pub conversion: Option<super::stats::Comparison>,
    /// Revenue per exposed user against the control (Welch's t-test; None as for `visit`).
    pub revenue: Option<super::stats::Comparison>,
}

/// An experiment's results: every variant against the control, and the sample-ratio check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    /// The experiment (or `global_holdout`).
    pub experiment_id: String,
    /// Name of the control variant.
    pub control: String,
    /// One entry per variant, in the order of the weights given to `report`.
    pub variants: Vec<VariantResult>,
    /// Chi-square statistic of exposures against the weights (None when it cannot be computed,
    /// e.g. before any exposure).
    pub srm_chi_square: Option<f64>,
    /// Its p-value (None when the statistic is None).
    pub srm_p_value: Option<f64>,
    /// Sample-ratio mismatch below p = 0.001: the split is broken, do not trust the lifts.
    pub srm_alarm: bool,
}

/// Rates, lifts with 95% intervals and p-values (two-proportion z-tests for visit and
/// conversion rates, Welch's t-test for revenue per exposed user), and the SRM check.
pub fn report(
    experiment_id: &str,
    control: &str,
    weights: &[(String, f64)],
    counters: &BTreeMap<String, VariantCounters>,
) -> ExperimentReport {
    use super::stats::{SRM_ALARM_P, Sample, srm, two_proportions, welch};
    let get = |v: &str| counters.get(v).copied().unwrap_or_default();
    let rate = |x: u64, n: u64| if n > 0 { x as f64 / n as f64 } else { 0.0 };
    let c = get(control);
    let total_weight: f64 = weights.iter().map(|(_, w)| w).sum();
    let variants = weights
        .iter()
        .map(|(name, w)| {
            let t = get(name);
            let is_control = name == control;
            let sample = |k: &VariantCounters| Sample::from_sums(k.revenue, k.revenue_sq, k.exposed);
            VariantResult {
                variant: name.clone(),
                is_control,
                expected_share: w / total_weight,
                counters: t,
                visit_rate: rate(t.visitors, t.exposed),
                conversion_rate: rate(t.converters, t.exposed),
                revenue_per_user: if t.exposed > 0 { t.revenue / t.exposed as f64 } else { 0.0 },
                visit: (!is_control).then(|| two_proportions(c.visitors, c.exposed, t.visitors, t.exposed)).flatten(),
                conversion: (!is_control)
                    .then(|| two_proportions(c.converters, c.exposed, t.converters, t.exposed))
                    .flatten(),
                revenue: (!is_control).then(|| welch(sample(&c), sample(&t))).flatten(),
            }
        })
        .collect::<Vec<_>>();
    let observed: Vec<u64> = variants.iter().map(|v| v.counters.exposed).collect();
    let w: Vec<f64> = weights.iter().map(|(_, w)| *w).collect();
    let s = srm(&observed, &w);
    ExperimentReport {
        experiment_id: experiment_id.to_string(),
        control: control.to_string(),
        variants,
        srm_chi_square: s.map(|x| x.0),
        srm_p_value: s.map(|x| x.1),
        srm_alarm: s.is_some_and(|(_, p)| p < SRM_ALARM_P),
    }
}

/// A p-value in scientific notation with its relation: `=5.69e-112`, or `<5e-324` for 0. The
/// statistics use survival functions, so 0 only means below the smallest double, and it prints
/// as that bound rather than as a p-value of 0.
fn scientific_p(p: f64) -> String {
    if p > 0.0 { format!("={p:.2e}") } else { "<5e-324".to_string() }
}

impl ExperimentReport {
    /// The results as a fixed-width text table, with the sample-ratio verdict.
    pub fn table(&self) -> String {
        let pct = |x: f64| format!("{:.3}%", 100.0 * x);
        let cmp = |c: &Option<super::stats::Comparison>| match c {
            Some(c) => {
                let p = scientific_p(c.p_value);
                format!("{:+.1}% [{:+.1}%, {:+.1}%] p{p}", 100.0 * c.lift, 100.0 * c.ci.0, 100.0 * c.ci.1)
            }
            None => "-".into(),
        };
        let mut out = format!("experiment {} (control {})\n", self.experiment_id, self.control);
        out += &format!(
            "{:<16} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9}  {:<40} {:<40} {:<40}\n",
            "variant",
            "exposed",
            "visitors",
            "visit",
            "convert",
            "conversion",
            "rev/user",
            "visit lift [95% CI] p",
            "conversion lift [95% CI] p",
            "revenue/user lift [95% CI] p"
        );
        for v in &self.variants {
            out += &format!(
                "{:<16} {:>8} {:>9} {:>9} {:>9} {:>10} {:>9.4}  {:<40} {:<40} {:<40}\n",
                v.variant,
                v.counters.exposed,
                v.counters.visitors,
                pct(v.visit_rate),
                v.counters.converters,
                pct(v.conversion_rate),
                v.revenue_per_user,
                cmp(&v.visit),
                cmp(&v.conversion),
                cmp(&v.revenue)
            );
        }
        match (self.srm_chi_square, self.srm_p_value) {
            (Some(chi), Some(p)) => {
                // Four decimals hide a tiny p-value as 0.0000: small ones in scientific notation.
                let p = match p {
                    p if p >= 1e-4 => format!("= {p:.4}"),
                    p if p > 0.0 => format!("= {p:.2e}"),
                    _ => "< 5e-324".to_string(),
                };
                out += &format!(
                    "sample ratio: chi-square {chi:.3}, p {p}{}\n",
                    if self.srm_alarm { "  ALARM: sample-ratio mismatch (p < 0.001)" } else { "  (no mismatch)" }
                )
            }
            // Not "no mismatch": without exposures in two or more variants there is no test.
            _ => out += "sample ratio: no data (no exposure yet, or fewer than two variants with weight)\n",
        }
        out
    }

    /// The results as CSV with a header, one row per variant.
    pub fn csv(&self) -> String {
        // Small p-values in scientific notation: `{}` would print 5.7e-112 as 112 decimal digits.
        let p = |p: f64| if p != 0.0 && p < 1e-4 { format!("{p:e}") } else { p.to_string() };
        let opt = |c: &Option<super::stats::Comparison>| match c {
            Some(c) => format!("{},{},{},{}", c.lift, c.ci.0, c.ci.1, p(c.p_value)),
            None => ",,,".into(),
        };
        let mut out = String::from(
            "experiment,variant,is_control,expected_share,exposed,visitors,visit_rate,converters,conversion_rate,revenue,revenue_per_user,visit_lift,visit_ci_low,visit_ci_high,visit_p,conversion_lift,conversion_ci_low,conversion_ci_high,conversion_p,revenue_lift,revenue_ci_low,revenue_ci_high,revenue_p,srm_chi_square,srm_p_value,srm_alarm\n",
        );
        for v in &self.variants {
            out += &format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                self.experiment_id,
                v.variant,
                v.is_control,
                v.expected_share,
                v.counters.exposed,
                v.counters.visitors,
                v.visit_rate,
                v.counters.converters,
                v.conversion_rate,
                v.counters.revenue,
                v.revenue_per_user,
                opt(&v.visit),
                opt(&v.conversion),
                opt(&v.revenue),
                self.srm_chi_square.map(|x| x.to_string()).unwrap_or_default(),
                self.srm_p_value.map(p).unwrap_or_default(),
                self.srm_alarm
            );
        }
        out
    }
}
