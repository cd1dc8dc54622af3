//! The `[[offers]]` catalogue: each offer's fields, time window, eligibility rule, cap and
//! cooldowns.
use super::file::{FileConfig, OfferConfig};
use super::{MAX_WINDOW_DAYS, Problems, days_ms, limit, parse_time};
use crate::domain::limits::check_name;
use crate::domain::offer::{Catalogue, Offer};
use crate::domain::policy::OfferRules;
use crate::domain::rules::{Expect, Prepared, Rule, offer_value};
use std::collections::HashSet;

/// The catalogue and each offer's rules. An offer with a bad field is still catalogued (so that
/// fallbacks and experiments naming it do not add "unknown offer" to its own problem); one
/// whose id is taken is not.
pub fn compile(file: &FileConfig, p: &mut Problems) -> (Catalogue, Vec<OfferRules>) {
    let mut ids = HashSet::new();
    let mut offers = Vec::new();
    let mut rules = Vec::new();
    for (i, o) in file.offers.iter().enumerate() {
        let i = file.at("offers", i);
        let entry = format!("offers[{i}]");
        if p.take(check_name(&format!("{entry}.id"), &o.id, 128).map_err(|e| (e.field, e.message))).is_none() {
            continue;
        }
        if !ids.insert(o.id.as_str()) {
            p.add(format!("{entry}.id"), format!("offer id {:?} is used twice", o.id));
            continue;
        }
        let (offer, rule) = one(file, &entry, o, p);
        offers.push(offer);
        rules.push(rule);
    }
    (Catalogue::new(offers), rules)
}

fn one(file: &FileConfig, entry: &str, o: &OfferConfig, p: &mut Problems) -> (Offer, OfferRules) {
    let field = |f: &str| format!("{entry}.{f}");
    let (stages, channels) = (&file.journey.stages, &file.decisions.channels);
    if o.stages.is_empty() {
        p.add(field("stages"), format!("offer {:?} needs at least one stage", o.id));
    }
    if let Some(s) = o.stages.iter().find(|s| !stages.contains(s)) {
        p.add(field("stages"), format!("offer {:?}: unknown stage {s:?}", o.id));
    }
    if o.channels.is_empty() {
        p.add(field("channels"), format!("offer {:?} needs at least one channel", o.id));
    }
    if let Some(c) = o.channels.iter().find(|c| !channels.contains(c)) {
        p.add(field("channels"), format!("offer {:?}: unknown channel {c:?} (declare it in decisions.channels)", o.id));
    }
    if o.content_ref.is_empty() {
        p.add(field("content_ref"), format!("offer {:?} needs a content reference", o.id));
    }
    for (name, v) in [("priority", o.priority), ("value", o.value), ("cost", o.cost), ("weight", o.weight)] {
        if !v.is_finite() {
            p.add(field(name), format!("offer {:?}: must be a finite number", o.id));
        }
    }
    if o.weight < 0.0 {
        p.add(field("weight"), format!("offer {:?}: must not be negative", o.id));
    }
    let valid_from = p.take(parse_time(o.valid_from.as_deref()).map_err(|m| (field("valid_from"), m))).flatten();
    let valid_until = p.take(parse_time(o.valid_until.as_deref()).map_err(|m| (field("valid_until"), m))).flatten();
    if let (Some(a), Some(b)) = (valid_from, valid_until)
        && a >= b
    {
        p.add(field("valid_until"), format!("offer {:?}: must be after valid_from", o.id));
    }
    let eligibility = o.eligibility.as_deref().and_then(|src| {
        p.take(
            Rule::compile(src, Expect::Bool, true)
                .map_err(|e| (field("eligibility"), format!("offer {:?}: {e}", o.id))),
        )
    });
    let cap = o.cap.as_ref().and_then(|c| p.take(limit(&field("cap"), c)));
    for (name, d) in [
        ("cooldown_after_dismiss_days", o.cooldown_after_dismiss_days),
        ("cooldown_after_accept_days", o.cooldown_after_accept_days),
    ] {
        if !(0.0..=MAX_WINDOW_DAYS).contains(&d) {
            p.add(field(name), format!("offer {:?}: must be 0..={MAX_WINDOW_DAYS} days", o.id));
        }
    }
    let offer = Offer {
        id: o.id.clone(),
        name: if o.name.is_empty() { o.id.clone() } else { o.name.clone() },
        stages: o.stages.clone(),
        channels: o.channels.clone(),
        placements: o.placements.clone(),
        content_ref: o.content_ref.clone(),
        priority: o.priority,
        value: o.value,
        cost: o.cost,
        weight: o.weight,
        valid_from,
        valid_until,
    };
    let rules = OfferRules {
        eligibility,
        cap,
        cooldown_after_dismiss_ms: days_ms(o.cooldown_after_dismiss_days),
        cooldown_after_accept_ms: days_ms(o.cooldown_after_accept_days),
        value: Prepared::new(offer_value(&offer)),
    };
    (offer, rules)
}
