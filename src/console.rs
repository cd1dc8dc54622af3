//! The web console on the HTTP port (beside `/metrics` and the JSON door): the funnel with stage
//! conversion rates and time in stage, offer performance per stage, KPI status against targets,
//! experiment results (lifts with 95% CIs, p-values, the SRM alarm) and the models in use.
//!
//! Server-rendered HTML with inline SVG and inline CSS: no script, no external CDN, nothing to
//! build. It reads the engine directly (the same use cases the Analytics and Experiments RPCs
//! call). Access is the `analyst` role, like those RPCs: the API key as `Authorization: Bearer
//! <key>`, `x-api-key`, or the password of HTTP Basic auth (any user name), so a browser asks
//! for it; with `auth.enabled = false` the console is open.
use crate::domain::analytics::{KpiStatus, OfferRow, StageRow, Status, Trend};
use crate::domain::results::ExperimentReport;
use crate::domain::stats::Comparison;
use crate::engine::Engine;
use crate::engine::analytics::{AskedDays, OfferQuery};
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

/// Everything the HTTP port serves besides `/metrics`: the console and the JSON door.
pub fn http_routes(engine: Arc<Engine>) -> axum::Router {
    router(engine.clone()).merge(crate::grpc::json::router(engine))
}

/// The console's routes: `/` (redirects) and `/console`.
pub fn router(engine: Arc<Engine>) -> axum::Router {
    // Pages at once, like the admin class of the gRPC port (a page reads every counter shard).
    let slots = engine.snapshot().config.file.server.limits.admin.max(1) as usize;
    let state = Console { engine, pages: Arc::new(tokio::sync::Semaphore::new(slots)) };
    axum::Router::new()
        .route("/", axum::routing::get(|| async { axum::response::Redirect::to("/console") }))
        .route("/console", axum::routing::get(page))
        .with_state(state)
}

/// The console's state: the engine, and the page slots.
#[derive(Clone)]
struct Console {
    engine: Arc<Engine>,
    pages: Arc<tokio::sync::Semaphore>,
}

/// `?days=7&channel=web&view=offers`
#[derive(Debug, Default, serde::Deserialize)]
struct Params {
    days: Option<i64>,
    channel: Option<String>,
    /// One section only (`kpis`, `funnel`, `offers`, `experiments`, `models`); all by default.
    view: Option<String>,
    /// Offer performance of one segment's decisions (over every channel).
    segment: Option<String>,
}

/// The sections, in page order.
const SECTIONS: [&str; 5] = ["kpis", "funnel", "offers", "experiments", "models"];

/// The key a browser or client presents (Basic auth's password included) as `Bearer` headers
/// for the API's authorisation.
fn as_bearer(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    let basic = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(_, key)| key.to_string()));
    if let Some(key) = basic
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {key}"))
    {
        out.insert(http::header::AUTHORIZATION, v);
    }
    out
}

async fn page(State(console): State<Console>, Query(p): Query<Params>, headers: HeaderMap) -> Response {
    let engine = &console.engine;
    let policy = engine.snapshot().config.auth.clone();
    if let Err(status) =
        crate::grpc::auth::authorize(&policy, "/touchpoint.v1.Analytics/GetFunnel", &as_bearer(&headers), &[])
    {
        let code = crate::grpc::json::http_status(status.code());
        let mut r = (code, Html(format!("<!doctype html><title>Touchpoint</title><p>{}</p>", esc(status.message()))))
            .into_response();
        if code == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"touchpoint console (password: API key)\""),
            );
        }
        return r;
    }
    let Ok(_slot) = console.pages.try_acquire() else {
        let msg = "the console is busy (server.limits.admin pages at once): retry in a moment";
        return (StatusCode::TOO_MANY_REQUESTS, Html(format!("<!doctype html><title>Touchpoint</title><p>{msg}</p>")))
            .into_response();
    };
    match render(engine, &p).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            let status: tonic::Status = e.into();
            let code = crate::grpc::json::http_status(status.code());
            (code, Html(format!("<!doctype html><title>Touchpoint</title><p>{}</p>", esc(status.message()))))
                .into_response()
        }
    }
}

/// Everything one page shows, read from the engine.
async fn render(engine: &Engine, p: &Params) -> Result<String, crate::engine::Error> {
    let kept = i64::from(engine.snapshot().config.file.redis.counter_retention_days).max(1);
    let days = p.days.unwrap_or(crate::engine::analytics::DEFAULT_DAYS).clamp(1, kept);
    let today = crate::domain::funnel::day_of(crate::engine::now_ms());
    let asked = AskedDays { from: Some(today - days + 1), to: Some(today) };
    let channel = p.channel.as_deref().filter(|c| !c.is_empty());
    let segment = p.segment.as_deref().filter(|s| !s.is_empty());
    let offer_query = OfferQuery {
        channel: channel.filter(|_| segment.is_none()).map(str::to_string),
        segment: segment.map(str::to_string),
        ..Default::default()
    };
    // One read of the counters for the funnel and the offers.
    let (range, funnel, offers) = engine.overview(asked, &offer_query, true).await?;
    let (_, kpis) = engine.kpis().await?;
    let snap = engine.snapshot();
    let policy = &snap.config.policy;
    let mut experiments = Vec::new();
    let ids = policy
        .experiments
        .iter()
        .map(|e| e.id.clone())
        .chain(policy.holdout.as_ref().map(|_| crate::domain::experiment::GLOBAL_HOLDOUT.to_string()));
    for id in ids {
        experiments.push(engine.experiment_results(&id).await?);
    }
    let status = engine.status().await;
    let mut h = String::with_capacity(32 * 1024);
    let title = format!(
        "{} – {} (UTC){}",
        crate::domain::analytics::date(range.from),
        crate::domain::analytics::date(range.to),
        channel.map(|c| format!(", channel {c}")).unwrap_or_default()
    ) + &segment.map(|s| format!(", segment {s}")).unwrap_or_default();
    head(&mut h, &title);
    let _ = write!(
        h,
        "<header><h1>Touchpoint</h1><p>{} · config <code>{}</code> · store <b>{}</b>{} · channels: {}</p></header>",
        esc(&title),
        esc(&status.config_version[..status.config_version.len().min(12)]),
        status.store_kind,
        status.store_error.map(|e| format!(" <span class=bad>{}</span>", esc(&e))).unwrap_or_default(),
        channel_links(&policy.channels, channel, days),
    );
    let view = p.view.as_deref().filter(|v| SECTIONS.contains(v));
    let _ = write!(h, "<nav>{}</nav>", nav(view, channel, days));
    let show = |s: &str| view.is_none_or(|v| v == s);
    if show("kpis") {
        kpi_section(&mut h, &kpis);
    }
    if show("funnel") {
        funnel_section(&mut h, &funnel);
    }
    if show("offers") {
        let segments: Vec<&str> = policy.segments.iter().map(|s| s.id.as_str()).collect();
        offer_section(&mut h, policy.journey.stages(), &offers, (&segments, segment, days));
    }
    if show("experiments") {
        experiment_section(&mut h, &experiments);
    }
    if show("models") {
        model_section(&mut h, policy);
    }
    h.push_str("</main></body></html>\n");
    Ok(h)
}

/// HTML-escapes text (the trainer's HTML report uses it too).
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.1}%", 100.0 * x))
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.2}") }
}

fn hours(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(h) if h < 1.0 => format!("{:.0} min", h * 60.0),
        Some(h) if h < 48.0 => format!("{h:.1} h"),
        Some(h) => format!("{:.1} d", h / 24.0),
    }
}

fn head(h: &mut String, title: &str) {
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Touchpoint console · {}</title><style>
body{{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}}
header{{background:#1d2433;color:#fff;padding:10px 24px}} header h1{{margin:0;font-size:20px}} header p{{margin:2px 0 0;color:#c9cfdb}}
header a{{color:#9fc3ff}} nav{{margin:10px 0 0}} nav a,nav b{{margin-right:10px}} main{{max-width:1240px;margin:0 auto;padding:8px 24px 32px}}
section{{overflow-x:auto;background:#fff;border:1px solid #dde1e8;border-radius:6px;margin:14px 0;padding:10px 16px}}
h2{{font-size:16px;margin:4px 0 8px}} h3{{font-size:14px;margin:10px 0 4px}}
table{{border-collapse:collapse;width:100%}} th,td{{padding:3px 6px;border-bottom:1px solid #eef0f3;text-align:right;white-space:nowrap}}
th{{color:#5b6477;font-weight:600;background:#fafbfc}} th:first-child,td:first-child,td.l,th.l{{text-align:left}}
.met{{color:#0a7d32;font-weight:600}} .missed{{color:#b3261e;font-weight:600}} .nodata{{color:#8a93a6}}
.bad{{color:#b3261e;font-weight:600}} .alarm{{background:#fde7e6;border:1px solid #f4b4b0;padding:4px 8px;border-radius:4px;color:#8c1d18}}
td.wrap{{white-space:normal;text-align:left}} .ok{{color:#0a7d32}} code{{font-size:12px}} .muted{{color:#8a93a6}} svg text{{font:12px system-ui,sans-serif}}
</style></head><body>"#,
        esc(title)
    );
    h.push_str("<main>");
}

/// Links to each section alone, and to the whole page.
fn nav(view: Option<&str>, channel: Option<&str>, days: i64) -> String {
    let ch = channel.map(|c| format!("&channel={c}")).unwrap_or_default();
    let mut out = String::new();
    for s in std::iter::once(None).chain(SECTIONS.iter().map(|s| Some(*s))) {
        let label = s.unwrap_or("everything");
        let href = format!("/console?days={days}{ch}{}", s.map(|s| format!("&view={s}")).unwrap_or_default());
        if s == view {
            let _ = write!(out, "<b>{label}</b> ");
        } else {
            let _ = write!(out, "<a href=\"{}\">{label}</a> ", esc(&href));
        }
    }
    out
}

fn channel_links(channels: &[String], current: Option<&str>, days: i64) -> String {
    let mut out = String::new();
    let all = std::iter::once(None).chain(channels.iter().map(|c| Some(c.as_str())));
    for c in all {
        let label = c.unwrap_or("all");
        let href = format!("/console?days={days}{}", c.map(|c| format!("&channel={c}")).unwrap_or_default());
        if c == current {
            let _ = write!(out, " <b>{}</b>", esc(label));
        } else {
            let _ = write!(out, " <a href=\"{}\">{}</a>", esc(&href), esc(label));
        }
    }
    out
}

fn kpi_section(h: &mut String, kpis: &[KpiStatus]) {
    h.push_str("<section id=kpis><h2>KPIs against targets</h2>");
    if kpis.is_empty() {
        h.push_str("<p class=muted>No <code>[[kpis]]</code> configured.</p></section>");
        return;
    }
    h.push_str("<table><tr><th>KPI</th><th class=l>stage</th><th class=l>metric</th><th>window</th><th>value</th><th>target</th><th>status</th><th>trend (vs window before)</th></tr>");
    for k in kpis {
        let (class, label) = match k.status {
            Status::Met => ("met", "met"),
            Status::Missed => ("missed", "missed"),
            Status::NoData => ("nodata", "no data"),
        };
        let trend = match k.trend {
            Trend::Up => "▲ up",
            Trend::Down => "▼ down",
            Trend::Flat => "▶ flat",
            Trend::NoData => "–",
        };
        let rate = matches!(k.kpi.metric.name(), "advance_rate" | "ctr" | "conversion_rate");
        let show = |v: Option<f64>| if rate { pct(v) } else { v.map_or("–".into(), num) };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=l>{}</td><td class=l>{}</td><td>{} d</td><td>{}</td><td>{} {}</td><td class={class}>{label}</td><td>{trend} <span class=muted>({})</span></td></tr>",
            esc(&k.kpi.name),
            esc(&k.kpi.stage),
            esc(k.kpi.metric.name()),
            k.kpi.window_days,
            show(k.value),
            if k.kpi.at_most { "≤" } else { "≥" },
            if rate { pct(Some(k.kpi.target)) } else { num(k.kpi.target) },
            show(k.previous),
        );
    }
    h.push_str("</table></section>");
}

fn funnel_section(h: &mut String, rows: &[StageRow]) {
    h.push_str("<section id=funnel><h2>Funnel</h2>");
    let max = rows.iter().map(|r| r.entered.max(r.current)).fold(1.0, f64::max);
    let (w, bar_h, gap) = (1180.0, 26.0, 30.0);
    let height = rows.len() as f64 * (bar_h + gap) + 10.0;
    let _ = write!(h, "<svg width=\"100%\" viewBox=\"0 0 {w} {height}\" role=img aria-label=\"funnel\">");
    for (i, r) in rows.iter().enumerate() {
        let y = i as f64 * (bar_h + gap) + 4.0;
        let scale = |v: f64| 700.0 * v / max;
        let _ = write!(
            h,
            "<text x=0 y={}>{}</text><rect x=140 y={y} width={:.1} height={bar_h} fill=\"#4f7cff\" rx=3><title>entered {}</title></rect><rect x=140 y={} width={:.1} height=6 fill=\"#1d2433\" rx=2><title>in stage now {}</title></rect><text x={:.1} y={}>entered {} · in stage now {} · lapses {} · time in stage median {} / p90 {}</text>",
            y + 17.0,
            esc(&r.stage),
            scale(r.entered).max(1.0),
            num(r.entered),
            y + bar_h + 1.0,
            scale(r.current).max(1.0),
            num(r.current),
            150.0 + scale(r.entered).max(1.0),
            y + 17.0,
            num(r.entered),
            num(r.current),
            num(r.lapses),
            hours(r.median_hours),
            hours(r.p90_hours),
        );
        if i + 1 < rows.len() {
            let _ = write!(
                h,
                "<text x=150 y={} fill=\"#0a7d32\">↓ {} advanced ({} of entries)</text>",
                y + bar_h + 21.0,
                num(r.advanced),
                pct(r.advance_rate)
            );
        }
    }
    h.push_str("</svg>");
    h.push_str("<table><tr><th>stage</th><th>entered</th><th>advanced</th><th>advance rate</th><th>to</th><th>in stage now</th><th>lapses</th><th>left</th><th>median time</th><th>p90 time</th></tr>");
    for r in rows {
        let to: Vec<String> = r.advanced_to.iter().map(|(s, n)| format!("{} {}", esc(s), num(*n))).collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.stage),
            num(r.entered),
            num(r.advanced),
            pct(r.advance_rate),
            to.join(", "),
            num(r.current),
            num(r.lapses),
            num(r.exits),
            hours(r.median_hours),
            hours(r.p90_hours)
        );
    }
    h.push_str("</table></section>");
}

/// (every segment id, the one shown, the days shown)
type SegmentLinks<'a> = (&'a [&'a str], Option<&'a str>, i64);

fn offer_section(h: &mut String, stages: &[String], offers: &[OfferRow], (segments, current, days): SegmentLinks<'_>) {
    h.push_str("<section id=offers><h2>Offer performance per stage</h2><p>segment:");
    for s in std::iter::once(None).chain(segments.iter().map(|s| Some(*s))) {
        let label = s.unwrap_or("all");
        if s == current {
            let _ = write!(h, " <b>{}</b>", esc(label));
        } else {
            let href =
                format!("/console?days={days}&view=offers{}", s.map(|s| format!("&segment={s}")).unwrap_or_default());
            let _ = write!(h, " <a href=\"{}\">{}</a>", esc(&href), esc(label));
        }
    }
    h.push_str(if current.is_some() {
        " <span class=muted>(decisions of users in the segment, every channel)</span></p>"
    } else {
        "</p>"
    });
    if offers.is_empty() {
        h.push_str("<p class=muted>No decisions in this range.</p>");
    }
    for stage in stages {
        let rows: Vec<&OfferRow> = offers.iter().filter(|o| &o.stage == stage).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th>offer</th><th class=l>channel</th><th>decisions</th><th>impressions</th><th>clicks</th><th>CTR</th><th>accepts</th><th>dismissals</th><th>conversions</th><th>conversion rate</th><th>revenue</th></tr>",
            esc(stage)
        );
        for o in rows {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
                esc(&o.offer),
                esc(&o.channel),
                num(o.decisions),
                num(o.impressions),
                num(o.clicks),
                pct(o.ctr()),
                num(o.accepts),
                num(o.dismissals),
                num(o.conversions),
                pct(o.conversion_rate()),
                o.revenue
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
}

/// A lift with its CI drawn on a small axis from -50% to +50% (clipped), GrowthBook style:
/// green when the whole interval is above 0, red when below, grey when it spans 0.
fn lift_cell(c: &Option<Comparison>, bar: bool) -> String {
    let Some(c) = c else {
        return if bar { "<td class=muted>–</td><td></td><td></td>" } else { "<td class=muted>–</td><td></td>" }.into();
    };
    let x = |v: f64| 40.0 + 80.0 * (v.clamp(-0.5, 0.5));
    let color = if c.ci.0 > 0.0 {
        "#0a7d32"
    } else if c.ci.1 < 0.0 {
        "#b3261e"
    } else {
        "#8a93a6"
    };
    let p = if c.p_value < 1e-4 { format!("{:.1e}", c.p_value) } else { format!("{:.4}", c.p_value) };
    let text = format!(
        "<td style=\"color:{color}\">{:+.1}% [{:+.1}, {:+.1}]</td>",
        100.0 * c.lift,
        100.0 * c.ci.0,
        100.0 * c.ci.1
    );
    if !bar {
        return format!("{text}<td>{p}</td>");
    }
    format!(
        "{text}<td><svg width=80 height=14><line x1=40 y1=0 x2=40 y2=14 stroke=\"#c9cfdb\"/><rect x={:.1} y=4 width={:.1} height=6 fill=\"{color}\" rx=2/><circle cx={:.1} cy=7 r=3 fill=\"{color}\"/></svg></td><td>{p}</td>",
        x(c.ci.0),
        (x(c.ci.1) - x(c.ci.0)).max(1.0),
        x(c.lift)
    )
}

fn experiment_section(h: &mut String, reports: &[ExperimentReport]) {
    h.push_str("<section id=experiments><h2>Experiments</h2>");
    if reports.is_empty() {
        h.push_str("<p class=muted>No experiments configured.</p>");
    }
    for r in reports {
        let _ = write!(h, "<h3>{} <span class=muted>(control {})</span></h3>", esc(&r.experiment_id), esc(&r.control));
        match (r.srm_alarm, r.srm_p_value) {
            (true, Some(p)) => {
                let _ = write!(
                    h,
                    "<p class=alarm>Sample-ratio mismatch: exposures do not match the variant weights (p = {p:.1e}); do not trust these results until it is explained.</p>"
                );
            }
            (false, Some(p)) => {
                let _ = write!(h, "<p class=ok>No sample-ratio mismatch (p = {p:.3}).</p>");
            }
            _ => h.push_str("<p class=muted>No exposures yet: no SRM check.</p>"),
        }
        h.push_str("<table><tr><th>variant</th><th>exposed</th><th>share (expected)</th><th>converted</th><th>conversion</th><th>lift [95% CI, %]</th><th></th><th>p</th><th>revenue/user</th><th>lift [95% CI, %]</th><th>p</th></tr>");
        let total: u64 = r.variants.iter().map(|v| v.counters.exposed).sum();
        for v in &r.variants {
            let share = if total > 0 { v.counters.exposed as f64 / total as f64 } else { 0.0 };
            let _ = write!(
                h,
                "<tr><td>{}{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td>{}<td>{:.3}</td>{}</tr>",
                esc(&v.variant),
                if v.is_control { " <span class=muted>control</span>" } else { "" },
                v.counters.exposed,
                pct(Some(share)),
                pct(Some(v.expected_share)),
                v.counters.converters,
                pct(Some(v.conversion_rate)),
                lift_cell(&v.conversion, true),
                v.revenue_per_user,
                lift_cell(&v.revenue, false)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
}

fn model_section(h: &mut String, policy: &crate::domain::policy::Policy) {
    h.push_str("<section id=models><h2>Models in use</h2>");
    let m = &policy.models;
    let mut all: BTreeMap<String, &crate::domain::model::BoundModel> = BTreeMap::new();
    if let Some(c) = &m.churn {
        all.insert("churn".into(), c);
    }
    if let Some(p) = &m.purchase {
        all.insert("purchase".into(), p);
    }
    for (o, r) in &m.response {
        all.insert(format!("response:{o}"), r);
    }
    if all.is_empty() {
        h.push_str("<p class=muted>No models loaded: scores are absent and rules use priorities only.</p></section>");
        return;
    }
    h.push_str("<table><tr><th>slot</th><th class=l>version</th><th class=l>kind</th><th class=l>trained</th><th>features</th><th class=l>metrics</th></tr>");
    for (slot, b) in all {
        let a = &b.artifact;
        let metrics: Vec<String> = a.metrics.iter().map(|(k, v)| format!("{} {:.4}", esc(k), v)).collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=l><code>{}</code></td><td class=l>{}</td><td class=l>{}</td><td>{}</td><td class=wrap>{}</td></tr>",
            esc(&slot),
            esc(&a.version),
            esc(&a.kind),
            esc(a.created_at.get(..16).unwrap_or(&a.created_at)),
            a.feature_names.len(),
            metrics.join(" · ")
        );
    }
    h.push_str("</table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_basic_auth_becomes_a_bearer_key() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let mut h = HeaderMap::new();
        let b64 = base64::engine::general_purpose::STANDARD.encode("me:tp_secret");
        h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {b64}")).unwrap());
        assert_eq!(as_bearer(&h).get(http::header::AUTHORIZATION).unwrap(), "Bearer tp_secret");
        let lift = lift_cell(&Some(Comparison { lift: 0.1, ci: (0.02, 0.18), statistic: 2.0, p_value: 0.01 }), true);
        assert!(lift.contains("+10.0% [+2.0, +18.0]") && lift.contains("#0a7d32"), "{lift}");
    }
}
