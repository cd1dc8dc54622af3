//! Experiment statistics: two-proportion z-test, Welch's t-test, relative lifts with 95%
//! confidence intervals, and the sample-ratio-mismatch chi-square test. Checked against
//! scipy (tests/vectors/stats_vectors.py writes the reference values).
//!
//! Every p-value comes from a survival function (`sf`), never `1 - cdf`: the CDF rounds to 1
//! beyond about 8 standard errors, and `1 - cdf` then underflows to 0 where the true p-value
//! (e.g. 5.7e-112 for Hillstrom's visit lift) is still far above the smallest double.
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal, StudentsT};

/// The 97.5% quantile of the standard normal (two-sided 95%).
pub const Z_975: f64 = 1.959963984540054;

/// A test of treatment against control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Treatment over control, minus one.
    pub lift: f64,
    /// 95% confidence interval of the lift.
    pub ci: (f64, f64),
    /// The test statistic (z or t) of treatment minus control.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

fn normal_sf(z: f64) -> f64 {
    Normal::standard().sf(z)
}

/// Rates `x/n`: pooled two-proportion z-test (two-sided); lift CI by the delta method on the
/// log of the rate ratio. None when a rate is 0 (no ratio to speak of) or a group is empty.
pub fn two_proportions(x_control: u64, n_control: u64, x_treat: u64, n_treat: u64) -> Option<Comparison> {
    if n_control == 0 || n_treat == 0 || x_control == 0 || x_treat == 0 {
        return None;
    }
    let (nc, nt) = (n_control as f64, n_treat as f64);
    let (pc, pt) = (x_control as f64 / nc, x_treat as f64 / nt);
    let pooled = (x_control + x_treat) as f64 / (nc + nt);
    let se = (pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nt)).sqrt();
    let z = if se > 0.0 { (pt - pc) / se } else { 0.0 };
    let log_ratio = (pt / pc).ln();
    let se_log = ((1.0 - pt) / (nt * pt) + (1.0 - pc) / (nc * pc)).sqrt();
    Some(Comparison {
        lift: pt / pc - 1.0,
        ci: ((log_ratio - Z_975 * se_log).exp() - 1.0, (log_ratio + Z_975 * se_log).exp() - 1.0),
        statistic: z,
        p_value: (2.0 * normal_sf(z.abs())).min(1.0),
    })
}

/// Summary of a per-user metric: mean, (sample) variance, count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Mean per user.
    pub mean: f64,
    /// Sample variance (n - 1 denominator; 0 for fewer than 2 users).
    pub variance: f64,
    /// Number of users.
    pub n: u64,
}

impl Sample {
    /// From a sum and a sum of squares over `n` users (users without any value count as 0).
    pub fn from_sums(sum: f64, sum_sq: f64, n: u64) -> Sample {
        let nf = n as f64;
        let mean = if n > 0 { sum / nf } else { 0.0 };
        let variance = if n > 1 { ((sum_sq - nf * mean * mean) / (nf - 1.0)).max(0.0) } else { 0.0 };
        Sample { mean, variance, n }
    }
}

/// Welch's t-test (two-sided) of treatment mean against control mean; lift CI from the
/// Welch-Satterthwaite t quantile. None when a group has fewer than 2 users, no variance, or
/// the control mean is 0.
pub fn welch(control: Sample, treat: Sample) -> Option<Comparison> {
    if control.n < 2 || treat.n < 2 || control.mean == 0.0 {
        return None;
    }
    let (a, b) = (treat.variance / treat.n as f64, control.variance / control.n as f64);
    let se = (a + b).sqrt();
    if se == 0.0 {
        return None;
    }
    let df = (a + b).powi(2) / (a * a / (treat.n as f64 - 1.0) + b * b / (control.n as f64 - 1.0));
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    let diff = treat.mean - control.mean;
    let t = diff / se;
    let p_value = (2.0 * dist.sf(t.abs())).min(1.0);
    let q = quantile(&dist, 0.975);
    Some(Comparison {
        lift: diff / control.mean,
        ci: ((diff - q * se) / control.mean, (diff + q * se) / control.mean),
        statistic: t,
        p_value,
    })
}

/// A Student-t quantile: statrs's inverse (accurate to about 1e-7) polished by Newton steps on
/// the CDF (accurate to about 1e-15), so intervals match scipy to 1e-9.
fn quantile(dist: &StudentsT, p: f64) -> f64 {
    let mut x = dist.inverse_cdf(p);
    for _ in 0..4 {
        let step = (dist.cdf(x) - p) / dist.pdf(x);
        x -= step;
        if step.abs() < 1e-15 {
            break;
        }
    }
    x
}

/// Sample-ratio mismatch: chi-square of observed counts against the split the weights ask for.
/// Returns (statistic, p-value); None when it cannot be computed: fewer than two groups, no
/// observations, or a group with no expected count (a weight that is zero, negative or not
/// finite), where the statistic would divide by zero.
pub fn srm(observed: &[u64], weights: &[f64]) -> Option<(f64, f64)> {
    let total: u64 = observed.iter().sum();
    let wsum: f64 = weights.iter().sum();
    if observed.len() < 2
        || observed.len() != weights.len()
        || total == 0
        || !weights.iter().all(|w| w.is_finite() && *w > 0.0)
    {
        return None;
    }
    let chi2: f64 = observed
        .iter()
        .zip(weights)
        .map(|(o, w)| {
            let e = total as f64 * w / wsum;
            (*o as f64 - e).powi(2) / e
        })
        .sum();
    let dist = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    Some((chi2, dist.sf(chi2)))
}

/// The alarm threshold for sample-ratio mismatch.
pub const SRM_ALARM_P: f64 = 0.001;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/stats.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn close(got: f64, want: &Value, what: &str) {
        let want = want.as_f64().unwrap();
        let tol = 1e-9 * want.abs().max(1.0);
        assert!((got - want).abs() <= tol, "{what}: {got} vs scipy {want}");
    }

    /// p-values span hundreds of orders of magnitude, so an absolute tolerance would pass a
    /// p-value of 0 for 1e-112: compare relatively (1e-6), with an absolute 1e-12 allowed near 1
    /// only. Where scipy's value is 0 (below the smallest double), ours must be below the
    /// smallest normal double too.
    fn close_p(got: f64, want: &Value, what: &str) {
        let want = want.as_f64().unwrap();
        if want == 0.0 {
            assert!((0.0..f64::MIN_POSITIVE).contains(&got), "{what}: {got} vs scipy 0 (underflow)");
            return;
        }
        let rel = (got - want).abs() / want;
        assert!(rel <= 1e-6 || (want > 0.5 && (got - want).abs() <= 1e-12), "{what}: {got:e} vs scipy {want:e}");
    }

    #[test]
    fn z_quantile() {
        close(Z_975, &vectors()["z975"], "z975");
    }

    #[test]
    fn two_proportions_match_scipy() {
        for v in vectors()["proportions"].as_array().unwrap() {
            let c = v["control"].as_array().unwrap();
            let t = v["treatment"].as_array().unwrap();
            let u = |x: &Value| x.as_u64().unwrap();
            let r = two_proportions(u(&c[0]), u(&c[1]), u(&t[0]), u(&t[1])).unwrap();
            close(r.statistic, &v["z"], "z");
            close_p(r.p_value, &v["p_value"], "p");
            close(r.lift, &v["lift"], "lift");
            close(r.ci.0, &v["ci"][0], "ci low");
            close(r.ci.1, &v["ci"][1], "ci high");
        }
        assert_eq!(two_proportions(0, 10, 1, 10), None);
    }

    #[test]
    fn welch_matches_scipy() {
        for v in vectors()["welch"].as_array().unwrap() {
            let s = |a: &Value| Sample {
                mean: a[0].as_f64().unwrap(),
                variance: a[1].as_f64().unwrap(),
                n: a[2].as_u64().unwrap(),
            };
            let r = welch(s(&v["control"]), s(&v["treatment"])).unwrap();
            close(r.statistic, &v["t"], "t");
            close_p(r.p_value, &v["p_value"], "p");
            close(r.lift, &v["lift"], "lift");
            close(r.ci.0, &v["ci"][0], "ci low");
            close(r.ci.1, &v["ci"][1], "ci high");
        }
    }

    #[test]
    fn srm_matches_scipy_and_alarms_on_a_skewed_split() {
        for v in vectors()["srm"].as_array().unwrap() {
            let obs: Vec<u64> = v["observed"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            let w: Vec<f64> = v["weights"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let (chi2, p) = srm(&obs, &w).unwrap();
            close(chi2, &v["chi2"], "chi2");
            close_p(p, &v["p_value"], "p");
        }
        let (_, p) = srm(&[5000, 5400], &[1.0, 1.0]).unwrap();
        assert!(p < SRM_ALARM_P, "a 5000/5400 split of a 50/50 test is a mismatch: p = {p}");
        let (_, p) = srm(&[21306, 21307, 21387], &[1.0, 1.0, 1.0]).unwrap();
        assert!(p > SRM_ALARM_P, "Hillstrom's arms are balanced: p = {p}");
    }

    #[test]
    fn normal_tail_matches_scipy_far_out() {
        let vectors = vectors();
        let tail = vectors["normal_tail"].as_array().unwrap();
        assert!(tail.iter().any(|v| v["z"].as_f64().unwrap() >= 40.0), "the vectors reach |z| = 40");
        for v in tail {
            let z = v["z"].as_f64().unwrap();
            close_p((2.0 * normal_sf(z.abs())).min(1.0), &v["p_value"], &format!("2 sf({z})"));
        }
        // The Hillstrom visit lift (mens e-mail against no e-mail): about 5.7e-112, not 0.
        let r = two_proportions(2262, 21306, 3894, 21307).unwrap();
        assert!(r.p_value > 5.6e-112 && r.p_value < 5.8e-112, "{:e}", r.p_value);
    }

    #[test]
    fn srm_is_none_when_it_cannot_be_computed() {
        assert_eq!(srm(&[0, 0], &[1.0, 1.0]), None, "no exposures");
        assert_eq!(srm(&[10], &[1.0]), None, "a single variant");
        assert_eq!(srm(&[10, 0], &[1.0, 0.0]), None, "a zero expected count");
        assert_eq!(srm(&[10, 5], &[1.0, f64::NAN]), None, "a weight that is not a number");
        assert_eq!(srm(&[10, 5], &[1.0]), None, "counts and weights disagree");
        assert!(srm(&[10, 5], &[1.0, 1.0]).is_some());
    }

    #[test]
    fn sample_from_sums() {
        let xs = [0.0, 0.0, 3.0, 5.0];
        let s = Sample::from_sums(8.0, 34.0, 4);
        let mean = 2.0;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 3.0;
        assert!((s.mean - mean).abs() < 1e-12 && (s.variance - var).abs() < 1e-12);
    }
}
