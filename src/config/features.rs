//! `[[features]]`: the feature vector beyond the built-in features, declared in the config and
//! computed by `domain::features::configured` in the server and the trainer alike.
use super::Problems;
use super::file::{FeatureConfig, FileConfig};
use crate::domain::features::{FEATURE_NAMES, FeatureDef, FeatureKind};
use crate::domain::journey::Tracked;
use crate::domain::limits::check_name;

/// The kinds, as written in the config.
const KINDS: &str = "count, recency, monetary, attribute, one_hot, context, stage";

/// The configured features without problems; each problem is recorded with its entry.
pub fn compile(file: &FileConfig, p: &mut Problems) -> Vec<FeatureDef> {
    let mut out: Vec<FeatureDef> = Vec::new();
    for (i, f) in file.features.iter().enumerate() {
        let entry = format!("features[{}]", file.at("features", i));
        let before = p.list.len();
        if let Err(e) = check_name(&format!("{entry}.name"), &f.name, 64) {
            p.add(e.field, e.message);
        } else if FEATURE_NAMES.contains(&f.name.as_str()) || out.iter().any(|o| o.name == f.name) {
            p.add(format!("{entry}.name"), format!("{:?} is already a feature", f.name));
        }
        if let Some(kind) = kind(&entry, f, file, p)
            && p.list.len() == before
        {
            out.push(FeatureDef { name: f.name.clone(), kind, log1p: f.log1p });
        }
    }
    out
}

fn kind(entry: &str, f: &FeatureConfig, file: &FileConfig, p: &mut Problems) -> Option<FeatureKind> {
    let need = |p: &mut Problems, field: &str, v: &Option<String>| {
        if v.is_none() {
            p.add(format!("{entry}.{field}"), format!("needed by kind {:?}", f.kind));
        }
        v.clone().unwrap_or_default()
    };
    let events = |p: &mut Problems| {
        if f.events.is_empty() {
            p.add(format!("{entry}.events"), "needs at least one event type");
        }
        f.events.clone()
    };
    let window = |p: &mut Problems, required: bool| match f.window_days {
        Some(w) if (1..=366).contains(&w) => Some(i64::from(w)),
        Some(_) => {
            p.add(format!("{entry}.window_days"), "must be 1..=366");
            None
        }
        None if required => {
            p.add(format!("{entry}.window_days"), format!("needed by kind {:?}", f.kind));
            None
        }
        None => None,
    };
    Some(match f.kind.as_str() {
        "count" => FeatureKind::Count { events: events(p), window_days: window(p, false) },
        "recency" => FeatureKind::Recency { events: events(p) },
        "monetary" => FeatureKind::Monetary { events: events(p), window_days: window(p, true).unwrap_or(1) },
        "attribute" => FeatureKind::Attribute { attribute: need(p, "attribute", &f.attribute), default: f.default },
        "one_hot" => {
            FeatureKind::OneHot { attribute: need(p, "attribute", &f.attribute), value: need(p, "value", &f.value) }
        }
        "context" => FeatureKind::Context { key: need(p, "key", &f.key), default: f.default },
        "stage" => {
            let stage = need(p, "stage", &f.stage);
            if !stage.is_empty() && !file.journey.stages.contains(&stage) {
                p.add(format!("{entry}.stage"), format!("unknown stage {stage:?}"));
            }
            FeatureKind::Stage { stage }
        }
        other => {
            p.add(format!("{entry}.kind"), format!("unknown kind {other:?}: one of {KINDS}"));
            return None;
        }
    })
}

/// What the profile must keep for the features: the event types counted in windows or by
/// recency, and the longest window.
pub fn tracked(defs: &[FeatureDef]) -> Tracked {
    let mut t = Tracked::default();
    for d in defs {
        match &d.kind {
            FeatureKind::Count { events, window_days: Some(w) } | FeatureKind::Monetary { events, window_days: w } => {
                t.types.extend(events.iter().cloned());
                t.days = t.days.max(*w);
            }
            FeatureKind::Recency { events } => t.types.extend(events.iter().cloned()),
            _ => {}
        }
    }
    t
}
