//! Off-policy evaluation of logged bandit data: what a candidate policy's value (click or
//! conversion rate, value per decision) would have been on decisions another policy made, from
//! the logged reward, the logged action's propensity and the candidate's probability of that
//! action. Inverse propensity scoring (IPS), self-normalised IPS (SNIPS) and doubly robust
//! (DR, with a direct-method model's estimates), each with a 95% normal-approximation CI, the
//! effective sample size, and the logged policy's own value for comparison.
//!
//! The plain CSV format (`touchpoint-train evaluate --csv`), one row per logged decision:
//!
//! | column | meaning |
//! |---|---|
//! | `reward` | what followed the logged action (0/1 for a click or conversion, or a value) |
//! | `propensity` | the logging policy's probability of the logged action, in (0, 1] |
//! | `target_probability` | the candidate policy's probability of that same action, in [0, 1] |
//! | `dm_estimate` (optional) | a direct-method model's expected reward of the candidate policy for the row's context (Σₐ π(a\|x) q̂(x, a)) |
//! | `dm_logged` (optional) | the model's expected reward of the logged action, q̂(x, a_logged); default `dm_estimate` |
//!
//! Other columns are ignored; the header names the columns in any order. Cells are plain (no
//! quoted commas).
use std::io::Read;

/// One logged decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Logged {
    /// The observed reward.
    pub reward: f64,
    /// The logging policy's probability of the logged action.
    pub propensity: f64,
    /// The candidate policy's probability of the logged action.
    pub target: f64,
    /// Direct-method estimates: (the candidate's expected reward, the logged action's).
    pub dm: Option<(f64, f64)>,
}

/// A value with its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// The point estimate.
    pub value: f64,
    /// Its standard error.
    pub se: f64,
    /// value ± 1.96 se.
    pub ci: (f64, f64),
}

impl Estimate {
    fn new(value: f64, se: f64) -> Self {
        Self { value, se, ci: (value - 1.96 * se, value + 1.96 * se) }
    }

    /// A mean with its standard error from the values' sample variance.
    pub fn mean(xs: impl Iterator<Item = f64> + Clone) -> Self {
        let n = xs.clone().count() as f64;
        let mean = xs.clone().sum::<f64>() / n;
        let var = if n > 1.0 { xs.map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        Self::new(mean, (var / n).sqrt())
    }
}

/// The estimates for one candidate policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// Logged decisions read.
    pub n: usize,
    /// The logging policy's own value: the mean reward.
    pub logged: Estimate,
    /// Inverse propensity scoring: mean of w·r, w = target / propensity.
    pub ips: Estimate,
    /// Self-normalised IPS: Σ w·r / Σ w (delta-method standard error).
    pub snips: Estimate,
    /// Doubly robust: mean of dm + w·(r − dm_logged); present when every row has `dm_estimate`.
    pub dr: Option<Estimate>,
    /// Effective sample size (Σ w)² / Σ w²: how many logged decisions the estimate is worth.
    pub effective_sample_size: f64,
    /// The largest importance weight.
    pub max_weight: f64,
}

/// Evaluates a candidate on logged decisions; refuses what no estimate can use.
pub fn evaluate(rows: &[Logged]) -> Result<Evaluation, String> {
    if rows.is_empty() {
        return Err("no logged decisions".into());
    }
    for (i, r) in rows.iter().enumerate() {
        if !(r.propensity > 0.0 && r.propensity <= 1.0) {
            return Err(format!("row {}: propensity {} is not in (0, 1]", i + 1, r.propensity));
        }
        if !(0.0..=1.0).contains(&r.target) {
            return Err(format!("row {}: target_probability {} is not in [0, 1]", i + 1, r.target));
        }
        if !r.reward.is_finite() || r.dm.is_some_and(|(a, b)| !a.is_finite() || !b.is_finite()) {
            return Err(format!("row {}: a reward or estimate is not a finite number", i + 1));
        }
    }
    let w = |r: &Logged| r.target / r.propensity;
    let sum_w: f64 = rows.iter().map(w).sum();
    let sum_w2: f64 = rows.iter().map(|r| w(r).powi(2)).sum();
    let ips = Estimate::mean(rows.iter().map(|r| w(r) * r.reward));
    let snips = if sum_w > 0.0 {
        let v = rows.iter().map(|r| w(r) * r.reward).sum::<f64>() / sum_w;
        let var = rows.iter().map(|r| (w(r) * (r.reward - v)).powi(2)).sum::<f64>();
        Estimate::new(v, var.sqrt() / sum_w)
    } else {
        Estimate::new(f64::NAN, f64::NAN)
    };
    let dr = rows.iter().all(|r| r.dm.is_some()).then(|| {
        Estimate::mean(rows.iter().map(|r| {
            let (dm, dm_logged) = r.dm.unwrap_or_default();
            dm + w(r) * (r.reward - dm_logged)
        }))
    });
    Ok(Evaluation {
        n: rows.len(),
        logged: Estimate::mean(rows.iter().map(|r| r.reward)),
        ips,
        snips,
        dr,
        effective_sample_size: if sum_w2 > 0.0 { sum_w * sum_w / sum_w2 } else { 0.0 },
        max_weight: rows.iter().map(w).fold(0.0, f64::max),
    })
}

/// Reads the CSV format of the module documentation; a bad value names its line and column.
pub fn read_csv(input: impl Read) -> Result<Vec<Logged>, String> {
    let mut text = String::new();
    std::io::BufReader::new(input).read_to_string(&mut text).map_err(|e| e.to_string())?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or("empty file: no header")?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let need = |name: &str| col(name).ok_or(format!("line 1: no `{name}` column (found: {})", cols.join(", ")));
    let (reward, propensity, target) = (need("reward")?, need("propensity")?, need("target_probability")?);
    let (dm, dm_logged) = (col("dm_estimate"), col("dm_logged"));
    let mut out = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let num = |c: usize, name: &str| -> Result<f64, String> {
            let cell = cells.get(c).copied().unwrap_or_default();
            cell.parse::<f64>().map_err(|_| format!("line {}: {name} {cell:?} is not a number", i + 1))
        };
        let dm = match dm {
            Some(d) => {
                let est = num(d, "dm_estimate")?;
                Some((est, dm_logged.map(|c| num(c, "dm_logged")).transpose()?.unwrap_or(est)))
            }
            None => None,
        };
        out.push(Logged {
            reward: num(reward, "reward")?,
            propensity: num(propensity, "propensity")?,
            target: num(target, "target_probability")?,
            dm,
        });
    }
    Ok(out)
}

/// The evaluation as a small table.
pub fn table(e: &Evaluation) -> String {
    let row = |name: &str, x: &Estimate| {
        format!("{name:<8} {:>10.6}  [{:.6}, {:.6}]  se {:.6}\n", x.value, x.ci.0, x.ci.1, x.se)
    };
    let mut out = format!(
        "{} logged decisions; effective sample size {:.1}; largest weight {:.3}\n",
        e.n, e.effective_sample_size, e.max_weight
    );
    out += &row("logged", &e.logged);
    out += &row("IPS", &e.ips);
    out += &row("SNIPS", &e.snips);
    if let Some(dr) = &e.dr {
        out += &row("DR", dr);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimators_on_a_small_log() {
        // Two actions logged 50/50; the candidate always takes action A (rows 1, 3).
        let rows = [
            Logged { reward: 1.0, propensity: 0.5, target: 1.0, dm: Some((0.6, 0.6)) },
            Logged { reward: 0.0, propensity: 0.5, target: 0.0, dm: Some((0.6, 0.2)) },
            Logged { reward: 0.0, propensity: 0.5, target: 1.0, dm: Some((0.6, 0.6)) },
            Logged { reward: 1.0, propensity: 0.5, target: 0.0, dm: Some((0.6, 0.2)) },
        ];
        let e = evaluate(&rows).unwrap();
        assert_eq!(e.ips.value, 0.5); // (2 + 0 + 0 + 0) / 4
        assert_eq!(e.snips.value, 0.5); // 2 / 4
        assert_eq!(e.logged.value, 0.5);
        assert_eq!(e.effective_sample_size, 2.0); // 4² / 8
        // DR: mean of 0.6 + w (r - dm_logged): 1.4, 0.6, -0.6, 0.6 -> 0.5
        assert!((e.dr.unwrap().value - 0.5).abs() < 1e-12);
        assert!(e.ips.ci.0 < e.ips.value && e.ips.value < e.ips.ci.1);
        assert!(evaluate(&[]).is_err());
        let bad = [Logged { reward: 1.0, propensity: 0.0, target: 1.0, dm: None }];
        assert!(evaluate(&bad).unwrap_err().contains("propensity"));
    }

    #[test]
    fn the_csv_names_bad_cells() {
        let ok = "reward,propensity,target_probability,extra\n1,0.5,1,x\n0,0.25,0,y\n";
        let rows = read_csv(ok.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], Logged { reward: 0.0, propensity: 0.25, target: 0.0, dm: None });
        let e = read_csv("reward,propensity,target_probability\n1,half,1\n".as_bytes()).unwrap_err();
        assert!(e.contains("line 2") && e.contains("propensity"), "{e}");
        assert!(read_csv("reward,propensity\n".as_bytes()).unwrap_err().contains("target_probability"));
    }
}
