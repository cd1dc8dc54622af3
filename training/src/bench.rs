//! `touchpoint-train bench-lr`: logistic regression speed on synthetic rows (a known logistic
//! model over standard-normal features), IRLS vs linfa-logistic's stock solver, with AUC on a
//! separate test set. `--npy DIR` writes the same data for `training/compare/bench_lr.py`.
use crate::irls::{Irls, fit_view};
use crate::metrics::auc;
use linfa::prelude::*;
use ndarray::{Array1, Array2, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    #[arg(long, default_value_t = 30)]
    features: usize,
    #[arg(long, default_value_t = 200_000)]
    test_rows: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rows for linfa's stock solver (0: skip it; it is slow on large data).
    #[arg(long, default_value_t = 100_000)]
    stock_rows: usize,
    /// Threads for the IRLS accumulation (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Write X_train.npy, y_train.npy, X_test.npy, y_test.npy here.
    #[arg(long)]
    npy: Option<PathBuf>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Box-Muller standard normal.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub fn synthetic(rows: usize, d: usize, seed: u64) -> (Array2<f64>, Vec<bool>) {
    let mut coef_rng = ChaCha8Rng::seed_from_u64(12345);
    let w: Vec<f64> = (0..d).map(|_| coef_rng.gen_range(-0.6..0.6)).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::<f64>::zeros((rows, d));
    let mut y = Vec::with_capacity(rows);
    for mut row in x.rows_mut() {
        let mut z = -1.0;
        for (j, v) in row.iter_mut().enumerate() {
            *v = normal(&mut rng);
            z += w[j] * *v;
        }
        y.push(rng.r#gen::<f64>() < sigmoid(z));
    }
    (x, y)
}

/// Writes a C-order float64 array as .npy (version 1.0).
pub fn write_npy(path: &Path, shape: &[usize], data: impl Iterator<Item = f64>) -> std::io::Result<()> {
    let shape_str = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape_str}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    for v in data {
        w.write_all(&v.to_le_bytes())?;
    }
    w.flush()
}

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let t = Instant::now();
    let (x, y) = synthetic(a.rows, a.features, a.seed);
    let (xt, yt) = synthetic(a.test_rows, a.features, a.seed + 1);
    println!(
        "generated {} x {} training rows and {} test rows in {:.2?}",
        a.rows,
        a.features,
        a.test_rows,
        t.elapsed()
    );
    let matrix_mib = (a.rows * a.features * 8) as f64 / 1048576.0;
    let rss_before = peak_rss_mib().unwrap_or(f64::NAN);
    if let Some(dir) = &a.npy {
        std::fs::create_dir_all(dir)?;
        write_npy(&dir.join("X_train.npy"), &[a.rows, a.features], x.iter().copied())?;
        write_npy(&dir.join("y_train.npy"), &[a.rows], y.iter().map(|b| f64::from(u8::from(*b))))?;
        write_npy(&dir.join("X_test.npy"), &[a.test_rows, a.features], xt.iter().copied())?;
        write_npy(&dir.join("y_test.npy"), &[a.test_rows], yt.iter().map(|b| f64::from(u8::from(*b))))?;
        println!("wrote .npy files to {}", dir.display());
    }

    // The data are standard normal already: no standardisation, as in the sklearn script.
    let t = Instant::now();
    let fit = fit_view(&Irls { threads: a.threads, ..Default::default() }, x.view(), &y)?;
    let irls_secs = t.elapsed().as_secs_f64();
    let irls_auc = auc(&fit.predict_proba(&xt.view()).to_vec(), &yt);
    let rss_after = peak_rss_mib().unwrap_or(f64::NAN);
    println!(
        "IRLS (C=1, {} thread(s)): {:>8.3} s  {} iterations  test ROC AUC {:.5}  peak RSS {:.0} MiB (feature matrices {:.0} MiB; +{:.0} MiB during the fit)",
        if a.threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { a.threads },
        irls_secs,
        fit.iterations,
        irls_auc,
        rss_after,
        matrix_mib * (1.0 + a.test_rows as f64 / a.rows as f64),
        rss_after - rss_before
    );

    if a.stock_rows > 0 {
        let n = a.stock_rows.min(a.rows);
        let ds = Dataset::new(x.slice(s![..n, ..]).to_owned(), Array1::from(y[..n].to_vec()));
        let t = Instant::now();
        let model = linfa_logistic::LogisticRegression::default().alpha(1.0).max_iterations(100).fit(&ds)?;
        let secs = t.elapsed().as_secs_f64();
        // linfa reports the probability of its `pos` class, the more frequent one: flip when
        // that is `false`, or the scores come out upside down (AUC below 0.5).
        let p_pos = model.predict_probabilities(&xt);
        let pos_is_true = model.labels().pos.class;
        let p: Vec<f64> = p_pos.iter().map(|p| if pos_is_true { *p } else { 1.0 - *p }).collect();
        println!(
            "linfa stock (alpha=1): {:>8.2} s on {n} rows  test ROC AUC {:.5}  (pos class = {pos_is_true})",
            secs,
            auc(&p, &yt)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_data_follows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy(&p, &[2, 3], (0..6).map(f64::from)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert!(std::str::from_utf8(&bytes[10..10 + header_len]).unwrap().contains("'shape': (2, 3)"));
        let data = &bytes[10 + header_len..];
        assert_eq!(data.len(), 48);
        assert_eq!(f64::from_le_bytes(data[40..48].try_into().unwrap()), 5.0);
    }
}
