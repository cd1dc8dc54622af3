//! `[[experiments]]` with their variants and overrides, the global `[holdout]`, and the
//! `visit_events` that experiment results count.
use super::file::{ExperimentConfig, FileConfig, HoldoutConfig, VariantConfig};
use super::models::{ModelFiles, read_model};
use super::{Invalid, MAX_WINDOW_DAYS, Problems, days_ms, parse_time};
use crate::domain::arbitration::Exploration;
use crate::domain::experiment::{Experiment, GLOBAL_HOLDOUT, GlobalHoldout, Overrides, Variant};
use crate::domain::limits::check_name;
use crate::domain::offer::Catalogue;
use crate::domain::rules::{Expect, Rule};

/// An id usable in store fields: letters, digits, `_`, `-`, `.` (no `|` or `:`).
fn check_experiment_name(field: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty()
        || value.len() > 64
        || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err((field.to_string(), format!("{value:?} must be 1-64 letters, digits, _ - or .")));
    }
    Ok(())
}

/// The experiments without problems; each problem is recorded.
pub fn compile(file: &FileConfig, catalogue: &Catalogue, base: &ModelFiles, p: &mut Problems) -> Vec<Experiment> {
    let mut out: Vec<Experiment> = Vec::new();
    for (i, e) in file.experiments.iter().enumerate() {
        let i = file.at("experiments", i);
        let before = p.list.len();
        let exp = experiment(file, catalogue, base, &format!("experiments[{i}]"), e, &out, p);
        if p.list.len() == before {
            out.push(exp);
        }
    }
    out
}

fn experiment(
    file: &FileConfig,
    catalogue: &Catalogue,
    base: &ModelFiles,
    entry: &str,
    e: &ExperimentConfig,
    earlier: &[Experiment],
    p: &mut Problems,
) -> Experiment {
    let f = |name: &str| format!("{entry}.{name}");
    p.take(check_experiment_name(&f("id"), &e.id));
    if e.id == GLOBAL_HOLDOUT || earlier.iter().any(|x| x.id == e.id) {
        p.add(f("id"), format!("experiment id {:?} is taken", e.id));
    }
    let layer = e.layer.clone().unwrap_or_else(|| e.id.clone());
    p.take(check_experiment_name(&f("layer"), &layer));
    if !(e.offset >= 0.0 && e.allocation > 0.0 && e.offset + e.allocation <= 1.0 + 1e-12) {
        p.add(f("allocation"), "offset >= 0, allocation > 0 and offset + allocation <= 1");
    }
    let start = p.take(parse_time(e.start.as_deref()).map_err(|m| (f("start"), m))).flatten();
    let end = p.take(parse_time(e.end.as_deref()).map_err(|m| (f("end"), m))).flatten();
    if let Some(c) = e.channels.iter().find(|c| !file.decisions.channels.contains(c)) {
        p.add(f("channels"), format!("unknown channel {c:?}"));
    }
    let targeting = e.targeting.as_deref().and_then(|src| {
        let rule = Rule::compile(src, Expect::Bool, false);
        p.take(rule.map_err(|m| (f("targeting"), format!("experiment {:?}: {m}", e.id))))
    });
    if e.variants.len() < 2 {
        p.add(f("variants"), format!("experiment {:?} needs at least two variants", e.id));
    }
    let mut variants: Vec<Variant> = Vec::new();
    for (k, v) in e.variants.iter().enumerate() {
        let vf = format!("{entry}.variants[{k}]");
        if variants.iter().any(|x| x.name == v.name) {
            p.add(format!("{vf}.name"), format!("variant {:?} is listed twice", v.name));
        }
        variants.push(variant(catalogue, &file.unread_ids, base, &vf, v, file.decisions.exploration.samples, p));
    }
    let control = e.control.clone().or_else(|| variants.first().map(|v| v.name.clone())).unwrap_or_default();
    if !variants.iter().any(|v| v.name == control) {
        p.add(f("control"), format!("no variant named {control:?}"));
    }
    if !(e.attribution_days > 0.0 && e.attribution_days <= MAX_WINDOW_DAYS) {
        p.add(f("attribution_days"), format!("must be within 0..={MAX_WINDOW_DAYS} days"));
    }
    let exp = Experiment {
        id: e.id.clone(),
        salt: e.salt.clone().unwrap_or_else(|| e.id.clone()),
        layer,
        offset: e.offset,
        allocation: e.allocation,
        start,
        end,
        channels: e.channels.clone(),
        targeting,
        variants,
        control,
        attribution_ms: days_ms(e.attribution_days),
    };
    let (from, to) = exp.slice();
    if let Some(other) = earlier.iter().find(|o| o.layer == exp.layer && o.slice().0 < to && from < o.slice().1) {
        p.add(
            f("offset"),
            format!(
                "overlaps experiment {:?} in layer {:?}: one layer's experiments need disjoint slices",
                other.id, exp.layer
            ),
        );
    }
    exp
}

fn variant(
    catalogue: &Catalogue,
    unread: &std::collections::BTreeSet<String>,
    base: &ModelFiles,
    entry: &str,
    v: &VariantConfig,
    samples: u32,
    p: &mut Problems,
) -> Variant {
    let vf = |name: &str| format!("{entry}.{name}");
    p.take(check_experiment_name(&vf("name"), &v.name));
    if !(v.weight > 0.0 && v.weight.is_finite()) {
        p.add(vf("weight"), "must be positive");
    }
    let priority = v
        .priority
        .as_deref()
        .and_then(|src| p.take(Rule::compile(src, Expect::Number, true).map_err(|m| (vf("priority"), m))));
    let mut model =
        |name: &str, path: &Option<String>| path.as_ref().and_then(|f| p.take(read_model(&vf(name), f, base)));
    let churn = model("churn_model", &v.churn_model);
    let purchase = model("purchase_model", &v.purchase_model);
    if let Some(o) = v.offers.iter().flatten().find(|o| catalogue.get(o).is_none() && !unread.contains(*o)) {
        p.add(vf("offers"), format!("unknown offer {o:?}"));
    }
    let offers = v.offers.as_ref().map(|list| list.iter().cloned().collect());
    let exploration = match (v.exploration.as_deref(), v.epsilon) {
        (None, _) => None,
        (Some("none"), _) => Some(Exploration::None),
        (Some("epsilon_greedy"), eps) => {
            let epsilon = eps.unwrap_or(0.1);
            if !(0.0..=1.0).contains(&epsilon) {
                p.add(vf("epsilon"), "must be within 0..=1");
            }
            Some(Exploration::EpsilonGreedy { epsilon })
        }
        (Some("softmax"), _) => {
            let temperature = v.temperature.unwrap_or(1.0);
            if !(temperature > 0.0 && temperature.is_finite()) {
                p.add(vf("temperature"), "must be a positive number");
            }
            Some(Exploration::Softmax { temperature })
        }
        (Some("thompson"), _) => Some(Exploration::Thompson { samples }),
        (Some(other), _) => {
            p.add(vf("exploration"), format!("unknown policy {other:?} (none, epsilon_greedy, softmax, thompson)"));
            None
        }
    };
    let overrides = Overrides { priority, churn, purchase, offers, exploration, holdout: v.holdout };
    Variant { name: v.name.clone(), weight: v.weight, overrides }
}

/// The global holdout; a share of 0 disables it.
pub fn holdout(h: Option<&HoldoutConfig>, p: &mut Problems) -> Option<GlobalHoldout> {
    let h = h?;
    if !(0.0..1.0).contains(&h.share) {
        p.add("holdout.share", "must be within 0..1");
        return None;
    }
    (h.share > 0.0).then(|| GlobalHoldout {
        salt: h.salt.clone(),
        share: h.share,
        attribution_ms: days_ms(h.attribution_days),
    })
}

/// The event types that count as a visit; `page_view` when none are listed.
pub fn visit_events(events: &[String], p: &mut Problems) -> Vec<String> {
    for (i, t) in events.iter().enumerate() {
        if let Err(e) = check_name(&format!("visit_events[{i}]"), t, 64) {
            p.add(e.field, e.message);
        }
    }
    if events.is_empty() { vec!["page_view".into()] } else { events.to_vec() }
}
