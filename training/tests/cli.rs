//! The trainer's command line as a user meets it: one-line errors, no artifact from a failed
//! fit, fold numbers that point into the input file.
use std::path::Path;
use std::process::{Command, Output};

fn train(args: &[&str]) -> Output {
    // RUST_BACKTRACE=1: a user error must still be one line, not a stack trace.
    Command::new(env!("CARGO_BIN_EXE_touchpoint-train")).args(args).env("RUST_BACKTRACE", "1").output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_user_error_is_one_line_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "a;b;label\n1;2;1\n2;1;0\n").unwrap();
    let out = dir.path().join("m.json");
    let o = train(&["fit-table", "--csv", path(&csv), "--label", "y", "--out", path(&out)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: no column \"y\"") && err.contains("a, b, label"), "{err}");
    assert!(!out.exists());
}

/// Perfectly separable rows with almost no regularisation: the optimum is at infinity, the
/// solver cannot converge, and neither the artifact nor the report is written.
#[test]
fn a_fit_that_does_not_converge_exits_1_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sep.csv");
    let mut text = "x,noise,y\n".to_string();
    for i in 0..200 {
        text += &format!("{},{},{}\n", i, (i * 37) % 11, u8::from(i >= 100));
    }
    std::fs::write(&csv, text).unwrap();
    let (out, report) = (dir.path().join("m.json"), dir.path().join("r.html"));
    for cv in ["0", "3"] {
        let o = train(&[
            "fit-table",
            "--csv",
            path(&csv),
            "--label",
            "y",
            "--c",
            "1e12",
            "--cv",
            cv,
            "--out",
            path(&out),
            "--report",
            path(&report),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "--cv {cv}: {err}");
        assert!(err.lines().last().unwrap().contains("logistic regression did not converge"), "--cv {cv}: {err}");
        if cv == "3" {
            assert!(err.contains("cross-validation fold 1 of 3"), "{err}");
        }
        assert!(!out.exists() && !report.exists(), "--cv {cv}");
    }
}

/// `--folds-out` rows are the input file's 1-based data rows, gaps where rows were filtered
/// out or bad; gaps are imputed and reported on stderr.
#[test]
fn folds_point_at_input_rows_and_gaps_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    let mut text = "seg|x|z|y\n".to_string();
    for i in 0..60 {
        let seg = if i % 10 == 3 { "B" } else { "A" };
        let z = if i % 7 == 0 { "NA".to_string() } else { ((i * 13) % 5).to_string() };
        text += &format!("{seg}|{}|{z}|{}\n", (i * 7) % 13, u8::from(i % 3 == 0));
    }
    std::fs::write(&csv, text).unwrap();
    let (out, folds) = (dir.path().join("m.json"), dir.path().join("folds.csv"));
    let o = train(&[
        "fit-table",
        "--csv",
        path(&csv),
        "--label",
        "y",
        "--where",
        "seg=A",
        "--cv",
        "3",
        "--out",
        path(&out),
        "--folds-out",
        path(&folds),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("column \"z\": 9 missing value(s) imputed"), "{err}");
    let rows: Vec<usize> = std::fs::read_to_string(&folds)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    let want: Vec<usize> = (0..60).filter(|i| i % 10 != 3).map(|i| i + 1).collect();
    assert_eq!(rows, want);
    let model: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(model["params"]["imputed"]["z"]["missing"], 9);
    assert!(model["feature_names"].as_array().unwrap().iter().any(|n| n == "z_missing"));
}

/// `evaluate` reads a plain CSV of logged bandit data and prints the estimates; a bad cell is
/// one line naming its line and column.
#[test]
fn evaluate_reads_logged_bandit_data() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("log.csv");
    std::fs::write(
        &csv,
        "reward,propensity,target_probability,dm_estimate\n1,0.5,1,0.6\n0,0.5,0,0.6\n0,0.5,1,0.6\n1,0.5,0,0.6\n",
    )
    .unwrap();
    let o = train(&["evaluate", "--csv", path(&csv), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((json["n"].as_u64(), json["ips"]["value"].as_f64()), (Some(4), Some(0.5)));
    assert_eq!(json["effective_sample_size"].as_f64(), Some(2.0));
    assert!(json["dr"]["ci"].is_array());
    std::fs::write(&csv, "reward,propensity,target_probability\n1,often,1\n").unwrap();
    let o = train(&["evaluate", "--csv", path(&csv)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.lines().count() == 1 && err.contains("line 2") && err.contains("propensity"), "{err}");
}
