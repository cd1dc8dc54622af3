//! The `[decisions]` section and what decisions draw on besides offers: channels, the priority
//! rule, exploration, `[[segments]]`, `[[contact_policy]]` and `[[fallbacks]]`.
use super::file::FileConfig;
use super::{Problems, limit};
use crate::domain::arbitration::{Exploration, Priority};
use crate::domain::contact::Limit;
use crate::domain::limits::{MAX_LIMIT, check_name};
use crate::domain::offer::Catalogue;
use crate::domain::policy::{Fallback, Segment};
use crate::domain::rules::{Expect, Rule};
use std::collections::{HashMap, HashSet};

/// The compiled decision settings that do not depend on the catalogue.
pub struct Decisions {
    pub priority: Priority,
    pub exploration: Exploration,
    pub segments: Vec<Segment>,
    pub contact_limits: HashMap<String, Vec<Limit>>,
}

/// Compiles `[decisions]`, segments and contact limits; what is invalid is left out.
pub fn compile(file: &FileConfig, p: &mut Problems) -> Decisions {
    let d = &file.decisions;
    if d.channels.is_empty() {
        p.add("decisions.channels", "needs at least one channel");
    }
    for c in &d.channels {
        if let Err(e) = check_name("decisions.channels", c, 64) {
            p.add("decisions.channels", format!("{c:?} {}", e.message));
        }
    }
    if d.default_limit == 0 || d.default_limit > MAX_LIMIT {
        p.add("decisions.default_limit", format!("must be 1..={MAX_LIMIT}"));
    }
    let priority = if d.priority.trim().is_empty() {
        Priority::Default
    } else {
        let rule = Rule::compile(&d.priority, Expect::Number, true).map_err(|e| ("decisions.priority".to_string(), e));
        p.take(rule).map_or(Priority::Default, Priority::Rule)
    };
    let exploration = match d.exploration.policy.as_str() {
        "none" => Exploration::None,
        "epsilon_greedy" if (0.0..=1.0).contains(&d.exploration.epsilon) => {
            Exploration::EpsilonGreedy { epsilon: d.exploration.epsilon }
        }
        "epsilon_greedy" => {
            p.add("decisions.exploration.epsilon", "must be within 0..=1");
            Exploration::None
        }
        "softmax" if d.exploration.temperature > 0.0 && d.exploration.temperature.is_finite() => {
            Exploration::Softmax { temperature: d.exploration.temperature }
        }
        "softmax" => {
            p.add("decisions.exploration.temperature", "must be a positive number");
            Exploration::None
        }
        "thompson" => Exploration::Thompson { samples: d.exploration.samples },
        other => {
            p.add(
                "decisions.exploration.policy",
                format!("unknown policy {other:?} (none, epsilon_greedy, softmax, thompson)"),
            );
            Exploration::None
        }
    };
    check_thompson(&d.exploration, p);
    if d.deadline_ms == 0 {
        p.add("decisions.deadline_ms", "must be positive");
    }

    let mut segments = Vec::new();
    let mut segment_ids = HashSet::new();
    for (i, s) in file.segments.iter().enumerate() {
        let i = file.at("segments", i);
        let entry = format!("segments[{i}]");
        if let Err(e) = check_name(&format!("{entry}.id"), &s.id, 128) {
            p.add(e.field, e.message);
        }
        if !segment_ids.insert(s.id.as_str()) {
            p.add(format!("{entry}.id"), format!("segment id {:?} is used twice", s.id));
        }
        let rule = Rule::compile(&s.rule, Expect::Bool, false)
            .map_err(|e| (format!("{entry}.rule"), format!("segment {:?}: {e}", s.id)));
        if let Some(rule) = p.take(rule) {
            segments.push(Segment { id: s.id.clone(), kind: s.kind.clone(), rule });
        }
    }

    let mut contact_limits: HashMap<String, Vec<Limit>> = HashMap::new();
    for (i, c) in file.contact_policy.iter().enumerate() {
        let i = file.at("contact_policy", i);
        let entry = format!("contact_policy[{i}]");
        if !d.channels.contains(&c.channel) {
            p.add(format!("{entry}.channel"), format!("unknown channel {:?}", c.channel));
        }
        let limits: Vec<Limit> = c.limits.iter().filter_map(|l| p.take(limit(&format!("{entry}.limits"), l))).collect();
        contact_limits.entry(c.channel.clone()).or_default().extend(limits);
    }
    Decisions { priority, exploration, segments, contact_limits }
}

/// The `[[fallbacks]]`: offers answered when the store is unavailable.
pub fn fallbacks(file: &FileConfig, catalogue: &Catalogue, p: &mut Problems) -> Vec<Fallback> {
    let (channels, stages) = (&file.decisions.channels, &file.journey.stages);
    let mut out = Vec::new();
    for (i, f) in file.fallbacks.iter().enumerate() {
        let i = file.at("fallbacks", i);
        let entry = format!("fallbacks[{i}]");
        if !channels.contains(&f.channel) {
            p.add(format!("{entry}.channel"), format!("unknown channel {:?}", f.channel));
        }
        if file.journey.consent_channels.contains(&f.channel) {
            p.add(
                format!("{entry}.channel"),
                format!(
                    "channel {:?} needs consent (journey.consent_channels) and a degraded answer cannot read it: \
                     it can have no fallback",
                    f.channel
                ),
            );
        }
        if let Some(s) = f.stage.as_ref().filter(|s| !stages.contains(s)) {
            p.add(format!("{entry}.stage"), format!("unknown stage {s:?}"));
        }
        for o in &f.offers {
            match catalogue.get(o) {
                None if file.unread_ids.contains(o) => {}
                None => p.add(format!("{entry}.offers"), format!("unknown offer {o:?}")),
                Some(offer) if !offer.channels.contains(&f.channel) => {
                    p.add(format!("{entry}.offers"), format!("offer {o:?} is not for channel {:?}", f.channel));
                }
                Some(_) => {}
            }
        }
        out.push(Fallback { channel: f.channel.clone(), stage: f.stage.clone(), offers: f.offers.clone() });
    }
    out
}

/// Thompson sampling's settings, checked whatever the policy (a variant may use them).
fn check_thompson(e: &crate::config::file::ExplorationConfig, p: &mut Problems) {
    let f = |name: &str| format!("decisions.exploration.{name}");
    if !crate::config::file::ExplorationConfig::REWARDS.contains(&e.reward.as_str()) {
        p.add(f("reward"), format!("unknown outcome {:?} (click, accept, conversion)", e.reward));
    }
    if !(100..=100_000).contains(&e.samples) {
        p.add(f("samples"), "must be within 100..=100000");
    }
    if e.window_days == 0 {
        p.add(f("window_days"), "must be at least 1");
    }
    if e.refresh_seconds == 0 {
        p.add(f("refresh_seconds"), "must be at least 1");
    }
    for (name, v) in [("prior_alpha", e.prior_alpha), ("prior_beta", e.prior_beta)] {
        if !(v > 0.0 && v.is_finite()) {
            p.add(f(name), "must be a positive number");
        }
    }
}
