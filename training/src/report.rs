//! The evaluation report a person can open: one HTML file, charts as inline SVG
//! (ROC curve, calibration plot, lift by decile), the metrics table and the coefficients.
use crate::metrics::Evaluation;
use touchpoint::console::esc;
use touchpoint::domain::model::ModelArtifact;

const W: f64 = 320.0;
const H: f64 = 320.0;
const PAD: f64 = 40.0;

/// A square chart with axes 0..x_max (x) and 0..y_max (y), ticks in data units.
fn chart(title: &str, x_label: &str, y_label: &str, x_max: f64, y_max: f64, body: &str) -> String {
    let mut s = format!(
        r##"<figure><svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11">
<rect x="{PAD}" y="10" width="{W}" height="{H}" fill="none" stroke="#999"/>"##,
        w = W + PAD + 10.0,
        h = H + PAD + 20.0
    );
    for i in 0..=4 {
        let f = i as f64 / 4.0;
        let (x, y) = (PAD + f * W, 10.0 + H - f * H);
        s += &format!(
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#ccc"/><text x="{x}" y="{}" text-anchor="middle">{:.2}</text>"##,
            10.0 + H,
            14.0 + H,
            26.0 + H,
            f * x_max
        );
        s += &format!(r##"<text x="{}" y="{}" text-anchor="end">{:.2}</text>"##, PAD - 4.0, y + 4.0, f * y_max);
    }
    s += &format!(r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, PAD + W / 2.0, H + 45.0, esc(x_label));
    s += &format!(
        r#"<text x="12" y="{}" text-anchor="middle" transform="rotate(-90 12 {})">{}</text>"#,
        10.0 + H / 2.0,
        10.0 + H / 2.0,
        esc(y_label)
    );
    s += body;
    s += &format!("</svg><figcaption>{}</figcaption></figure>", esc(title));
    s
}

/// SVG coordinates of the data point (x, y) on axes 0..x_max and 0..y_max.
fn point(x: f64, y: f64, x_max: f64, y_max: f64) -> (f64, f64) {
    (PAD + (x / x_max).clamp(0.0, 1.0) * W, 10.0 + H - (y / y_max).clamp(0.0, 1.0) * H)
}

fn polyline(points: &[(f64, f64)], x_max: f64, y_max: f64, color: &str) -> String {
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| {
            let (a, b) = point(*x, *y, x_max, y_max);
            format!("{a:.1},{b:.1}")
        })
        .collect();
    format!(r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "))
}

pub fn roc_svg(e: &Evaluation) -> String {
    let diagonal = polyline(&[(0.0, 0.0), (1.0, 1.0)], 1.0, 1.0, "#bbb");
    chart(
        &format!("ROC curve (AUC {:.4})", e.auc),
        "false positive rate",
        "true positive rate",
        1.0,
        1.0,
        &(diagonal + &polyline(&e.roc, 1.0, 1.0, "#1f77b4")),
    )
}

/// Observed rate against mean predicted probability by decile, both axes on the same
/// 0..max scale (zoomed to the data), so the ideal y = x is the square's diagonal.
pub fn calibration_svg(e: &Evaluation) -> String {
    let top = e.calibration.iter().map(|d| d.mean_predicted.max(d.observed_rate)).fold(0.0f64, f64::max).max(0.05);
    let max = (top * 1.1).min(1.0);
    let ideal = polyline(&[(0.0, 0.0), (max, max)], max, max, "#bbb");
    let pts: Vec<(f64, f64)> = e.calibration.iter().map(|d| (d.mean_predicted, d.observed_rate)).collect();
    let dots: String = pts
        .iter()
        .map(|(x, y)| {
            let (a, b) = point(*x, *y, max, max);
            format!(r##"<circle cx="{a:.1}" cy="{b:.1}" r="3.5" fill="#d62728"/>"##)
        })
        .collect();
    chart(
        "Calibration by decile (grey: perfectly calibrated)",
        "mean predicted probability",
        "observed rate",
        max,
        max,
        &(ideal + &polyline(&pts, max, max, "#d62728") + &dots),
    )
}

pub fn lift_svg(e: &Evaluation) -> String {
    // Lift per decile, highest scores first.
    let lifts: Vec<f64> = e
        .calibration
        .iter()
        .rev()
        .map(|d| if e.base_rate > 0.0 { d.observed_rate / e.base_rate } else { 0.0 })
        .collect();
    let y_max = lifts.iter().cloned().fold(1.0f64, f64::max) * 1.1;
    let bar_w = W / 10.0;
    let mut body = String::new();
    for (i, l) in lifts.iter().enumerate() {
        let (x, y) = (PAD + i as f64 * bar_w + 2.0, 10.0 + H - (l / y_max) * H);
        body += &format!(
            r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#2ca02c"/>"##,
            bar_w - 4.0,
            (l / y_max) * H
        );
    }
    let (_, one) = point(0.0, 1.0, 1.0, y_max);
    body += &format!(
        r##"<line x1="{PAD}" y1="{one:.1}" x2="{}" y2="{one:.1}" stroke="#555" stroke-dasharray="4"/>"##,
        PAD + W
    );
    chart(
        &format!("Lift by decile, best first (top decile {:.2})", e.lift_top_decile),
        "share of rows, best scores first",
        "lift over base rate",
        1.0,
        y_max,
        &body,
    )
}

fn metrics_table(e: &Evaluation) -> String {
    let mut s =
        String::from("<table><tr><th>decile</th><th>mean predicted</th><th>observed rate</th><th>rows</th></tr>");
    for (i, d) in e.calibration.iter().enumerate() {
        s += &format!(
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            i + 1,
            d.mean_predicted,
            d.observed_rate,
            d.count
        );
    }
    s + "</table>"
}

/// The whole report for an artifact evaluated on `eval` (holdout or out-of-fold).
pub fn html(a: &ModelArtifact, eval: &Evaluation, eval_name: &str) -> String {
    let mut metrics: String =
        a.metrics.iter().map(|(k, v)| format!("<tr><td>{}</td><td>{v:.6}</td></tr>", esc(k))).collect();
    metrics = format!("<table><tr><th>metric</th><th>value</th></tr>{metrics}</table>");
    let mut coefs: Vec<(&String, &f64)> = a.feature_names.iter().zip(&a.coefficients).collect();
    coefs.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    let coefs: String = coefs.iter().map(|(n, c)| format!("<tr><td>{}</td><td>{c:+.4}</td></tr>", esc(n))).collect();
    let parameters = if a.trees.is_empty() {
        format!(
            r#"<h2>Coefficients (standardised features, largest first)</h2><table><tr><th>feature</th><th>coefficient</th></tr><tr><td>(intercept)</td><td>{:+.4}</td></tr>{coefs}</table>"#,
            a.intercept
        )
    } else {
        trees_section(a)
    };
    format!(
        r##"<!doctype html><html><head><meta charset="utf-8"><title>{name} {version}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1240px}} figure{{display:inline-block;margin:0 1em 1em 0}} table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ddd;padding:2px 8px;text-align:right}} th{{background:#f4f4f4}}</style></head><body>
<h1>Model {name}</h1>
<p>version <b>{version}</b> · target: {target} · trained on: {window} · data fingerprint {fp} · created {created}</p>
<h2>Evaluation on the {eval_name} ({rows} rows, base rate {base:.4})</h2>
<p>ROC AUC <b>{auc:.4}</b> · log loss {ll:.4} · Brier {brier:.4} · lift in the top decile {lift:.2}</p>
{roc}{cal}{lift_svg}
<h2>Metrics stored in the artifact</h2>{metrics}
<h2>Calibration by decile</h2>{deciles}
{parameters}
</body></html>"##,
        name = esc(&a.name),
        version = esc(&a.version),
        target = esc(&a.target),
        window = esc(&a.training_window),
        fp = esc(&a.data_fingerprint),
        created = esc(&a.created_at),
        rows = eval.rows,
        base = eval.base_rate,
        auc = eval.auc,
        ll = eval.log_loss,
        brier = eval.brier,
        lift = eval.lift_top_decile,
        roc = roc_svg(eval),
        cal = calibration_svg(eval),
        lift_svg = lift_svg(eval),
        deciles = metrics_table(eval),
    )
}

/// A gbdt model's summary: how many trees, how deep, and how often each feature is split on.
fn trees_section(a: &ModelArtifact) -> String {
    use touchpoint::domain::trees::split_counts;
    let depth = a.trees.iter().map(|t| t.depth()).max().unwrap_or(0);
    let mut counts: Vec<(&String, usize)> =
        a.feature_names.iter().zip(split_counts(&a.trees, a.feature_names.len())).filter(|(_, n)| *n > 0).collect();
    counts.sort_by_key(|x| std::cmp::Reverse(x.1));
    let rows: String = counts.iter().map(|(n, c)| format!("<tr><td>{}</td><td>{c}</td></tr>", esc(n))).collect();
    format!(
        "<h2>Gradient-boosted trees</h2><p>{} trees, deepest leaf at depth {depth}, base log-odds {:+.4}</p><table><tr><th>feature</th><th>splits</th></tr>{rows}</table>",
        a.trees.len(),
        a.intercept
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::evaluate;

    fn polylines(svg: &str) -> Vec<&str> {
        svg.split(r#"points=""#).skip(1).map(|s| &s[..s.find('"').unwrap()]).collect()
    }

    /// A constant model's ROC curve is drawn exactly on the chance diagonal.
    #[test]
    fn a_constant_model_draws_the_diagonal() {
        let y: Vec<bool> = (0..500).map(|i| i % 5 == 0).collect();
        let svg = roc_svg(&evaluate(&vec![0.2; 500], &y));
        let lines = polylines(&svg);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "40.0,330.0 360.0,10.0", "the diagonal, corner to corner");
        assert_eq!(lines[1], lines[0], "the model's curve is the diagonal");
        assert!(svg.contains("AUC 0.5000"));
    }

    /// The calibration diagonal runs from the origin to the top-right corner (it used to stop
    /// at x = max², inside the chart), and a decile is drawn at its data coordinates.
    #[test]
    fn calibration_diagonal_ends_in_the_corner() {
        let p: Vec<f64> = (0..1000).map(|i| i as f64 / 5000.0).collect();
        let y: Vec<bool> = (0..1000).map(|i| i % 10 == 0).collect();
        let e = evaluate(&p, &y);
        let svg = calibration_svg(&e);
        assert_eq!(polylines(&svg)[0], "40.0,330.0 360.0,10.0");
        let max = (e.calibration.iter().map(|d| d.mean_predicted.max(d.observed_rate)).fold(0.0f64, f64::max) * 1.1)
            .clamp(0.055, 1.0);
        let d = &e.calibration[9];
        let (a, b) = point(d.mean_predicted, d.observed_rate, max, max);
        assert!(svg.contains(&format!(r#"cx="{a:.1}" cy="{b:.1}""#)), "{svg}");
    }
}
