//! `fit-table --model auto` on tables where each model kind wins: it prints both CV AUCs,
//! says which kind is better and writes that kind's artifact (and its report).
use std::process::Command;

fn train(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_touchpoint-train")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// 3000 rows of two uniform columns in [-1, 1) from a fixed sequence, labelled by `label`
/// from the columns and a third uniform draw (for noise).
fn table(path: &std::path::Path, label: impl Fn(f64, f64, f64) -> bool) {
    let mut state = 12345u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut s = String::from("a,b,y\n");
    for _ in 0..3000 {
        let (a, b, u) = (next() * 2.0 - 1.0, next() * 2.0 - 1.0, next());
        s += &format!("{a},{b},{}\n", u8::from(label(a, b, u)));
    }
    std::fs::write(path, s).unwrap();
}

fn auto(csv: &std::path::Path, out: &std::path::Path, report: &std::path::Path) -> (serde_json::Value, String) {
    let (ok, text) = train(&[
        "fit-table",
        "--csv",
        csv.to_str().unwrap(),
        "--label",
        "y",
        "--cv",
        "5",
        "--model",
        "auto",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("logistic regression CV ROC AUC") && text.contains("gradient-boosted trees"), "{text}");
    (serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap(), text)
}

#[test]
fn auto_says_which_kind_is_better_and_fits_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f);
    // Linear log-odds with smooth noise: logistic regression is the right model.
    table(&p("linear.csv"), |a, b, u| u < 1.0 / (1.0 + (-(1.5 * a - b)).exp()));
    let (a, text) = auto(&p("linear.csv"), &p("linear.json"), &p("linear.html"));
    assert!(text.contains("logistic regression is better on this table"), "{text}");
    assert_eq!(a["kind"], "logistic_regression");
    assert!(std::fs::read_to_string(p("linear.html")).unwrap().contains("Coefficients"));
    // XOR of the signs: no linear model separates it.
    table(&p("xor.csv"), |a, b, u| ((a > 0.0) != (b > 0.0)) != (u < 0.05));
    let (a, text) = auto(&p("xor.csv"), &p("xor.json"), &p("xor.html"));
    assert!(text.contains("gradient-boosted trees are better on this table"), "{text}");
    assert_eq!(a["kind"], "gbdt");
    assert!(a["metrics"]["cv_auc"].as_f64().unwrap() > 0.9, "{}", a["metrics"]);
    assert!(std::fs::read_to_string(p("xor.html")).unwrap().contains("Gradient-boosted trees"));
    // auto chooses by cross-validation, so it needs folds.
    let (ok, text) = train(&[
        "fit-table",
        "--csv",
        p("xor.csv").to_str().unwrap(),
        "--label",
        "y",
        "--model",
        "auto",
        "--out",
        p("x.json").to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("--cv 2 or more"), "{text}");
}
