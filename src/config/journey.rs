//! The `[journey]` section: stages, the event triggers between them, lapse and purchase event.
use super::Problems;
use super::file::JourneyConfig;
use crate::domain::journey::{JourneyDef, Trigger};
use crate::domain::limits::check_name;
use std::collections::HashSet;

/// The journey definition; invalid triggers are left out (and recorded).
pub fn compile(j: &JourneyConfig, channels: &[String], p: &mut Problems) -> JourneyDef {
    if j.stages.is_empty() {
        p.add("journey.stages", "needs at least one stage");
    }
    let mut seen = HashSet::new();
    for s in &j.stages {
        if let Err(e) = check_name("journey.stages", s, 64) {
            p.add("journey.stages", format!("{s:?} {}", e.message));
        }
        if !seen.insert(s.as_str()) {
            p.add("journey.stages", format!("stage {s:?} is listed twice"));
        }
    }
    if !(j.lapse_after_days >= 0.0 && j.lapse_after_days.is_finite()) {
        p.add("journey.lapse_after_days", "must be a non-negative number of days (0 disables lapse)");
    }
    let mut triggers = Vec::new();
    for (i, t) in j.transitions.iter().enumerate() {
        let entry = format!("journey.transitions[{i}]");
        let name_ok =
            p.take(check_name(&format!("{entry}.event_type"), &t.event_type, 64).map_err(|e| (e.field, e.message)));
        let to = j.stages.iter().position(|s| *s == t.to);
        if to.is_none() {
            p.add(format!("{entry}.to"), format!("unknown stage {:?}", t.to));
        }
        if t.min_count == 0 {
            p.add(format!("{entry}.min_count"), "must be at least 1");
        }
        if let (Some(()), Some(to)) = (name_ok, to) {
            triggers.push(Trigger { event_type: t.event_type.clone(), to, min_count: t.min_count });
        }
    }
    for (entry, name) in
        [("journey.unsubscribe_event", &j.unsubscribe_event), ("journey.subscribe_event", &j.subscribe_event)]
    {
        p.take(check_name(entry, name, 64).map_err(|e| (e.field, e.message)));
    }
    if j.unsubscribe_event == j.subscribe_event {
        p.add("journey.subscribe_event", "must differ from journey.unsubscribe_event");
    }
    for c in j.consent_channels.iter().filter(|c| !channels.contains(c)) {
        p.add("journey.consent_channels", format!("unknown channel {c:?} (declare it in decisions.channels)"));
    }
    let mut journey = JourneyDef::new(j.stages.clone(), triggers, j.lapse_after_days, j.purchase_event.clone());
    journey.unsubscribe_event = j.unsubscribe_event.clone();
    journey.subscribe_event = j.subscribe_event.clone();
    let (roles, given) = (&mut journey.feature_events, &j.feature_events);
    for (role, events) in [
        (&mut roles.page_views, &given.page_views),
        (&mut roles.product_views, &given.product_views),
        (&mut roles.carts, &given.carts),
        (&mut roles.checkouts, &given.checkouts),
        (&mut roles.advocacy, &given.advocacy),
    ] {
        if let Some(events) = events {
            *role = events.clone();
        }
    }
    journey
}
