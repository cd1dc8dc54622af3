//! Protobuf <-> domain conversions. Validation of request shape happens here, naming the field.
use super::pb;
use crate::domain::Millis;
use crate::domain::decision::DecisionQuery;
use crate::domain::event::Event;
use crate::domain::experiment::Assignment;
use crate::domain::limits::*;
use crate::domain::outcome::{OutcomeKind, OutcomeRecord};
use crate::domain::profile::{AttrValue, Transition};
use crate::domain::results::ExperimentReport;
use crate::domain::stats::Comparison;
use crate::engine::{self, Decision, ProfileView};
use std::collections::{BTreeMap, HashMap};

/// A protobuf timestamp from ms since the epoch (negative times included).
pub fn timestamp(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

fn opt_timestamp(ms: Option<Millis>) -> Option<prost_types::Timestamp> {
    ms.map(timestamp)
}

/// A timestamp field: valid, and not further in the future than clock skew allows.
fn millis(field: &str, ts: &prost_types::Timestamp, now: Millis) -> Result<Millis, FieldError> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(FieldError::new(field, "nanos must be in 0..1e9"));
    }
    let ms = ts
        .seconds
        .checked_mul(1000)
        .and_then(|s| s.checked_add(i64::from(ts.nanos) / 1_000_000))
        .filter(|ms| *ms >= 0)
        .ok_or_else(|| FieldError::new(field, "is out of range"))?;
    if ms > now + MAX_FUTURE_SKEW_MS {
        return Err(FieldError::new(field, "is more than 24 hours in the future"));
    }
    Ok(ms)
}

fn value(field: &str, v: &pb::Value) -> Result<AttrValue, FieldError> {
    match &v.kind {
        None => Err(FieldError::new(field, "has no value (set string_value, number_value or bool_value)")),
        Some(pb::value::Kind::StringValue(s)) => {
            check_text(field, s, MAX_STRING_VALUE_BYTES)?;
            Ok(AttrValue::Str(s.clone()))
        }
        Some(pb::value::Kind::NumberValue(n)) => {
            check_finite(field, *n)?;
            Ok(AttrValue::Num(*n))
        }
        Some(pb::value::Kind::BoolValue(b)) => Ok(AttrValue::Bool(*b)),
    }
}

fn to_pb_value(v: &AttrValue) -> pb::Value {
    let kind = match v {
        AttrValue::Str(s) => pb::value::Kind::StringValue(s.clone()),
        AttrValue::Num(n) => pb::value::Kind::NumberValue(*n),
        AttrValue::Bool(b) => pb::value::Kind::BoolValue(*b),
    };
    pb::Value { kind: Some(kind) }
}

/// A map of typed values with at most `max` entries, keys checked as names.
fn value_map(
    field: &str,
    m: &HashMap<String, pb::Value>,
    max: usize,
) -> Result<BTreeMap<String, AttrValue>, FieldError> {
    if m.len() > max {
        return Err(FieldError::new(field, format!("has {} entries, at most {max} allowed", m.len())));
    }
    m.iter()
        .map(|(k, v)| {
            let f = format!("{field}[{k:?}]");
            check_name(&f, k, MAX_KEY_BYTES)?;
            Ok((k.clone(), value(&f, v)?))
        })
        .collect()
}

/// A validated user id (the `user_id` field).
pub fn user_id(id: &str) -> Result<String, FieldError> {
    check_id("user_id", id, MAX_USER_ID_BYTES)?;
    Ok(id.to_string())
}

/// A validated experiment id (the `experiment_id` field).
pub fn experiment_id(id: &str) -> Result<String, FieldError> {
    check_id("experiment_id", id, MAX_ID_BYTES)?;
    Ok(id.to_string())
}

impl TryFrom<pb::DecideRequest> for DecisionQuery {
    type Error = FieldError;
    fn try_from(r: pb::DecideRequest) -> Result<Self, FieldError> {
        check_name("channel", &r.channel, 64)?;
        if !r.placement.is_empty() {
            check_name("placement", &r.placement, MAX_ID_BYTES)?;
        }
        if r.limit > MAX_LIMIT {
            return Err(FieldError::new("limit", format!("is {}, at most {MAX_LIMIT} allowed", r.limit)));
        }
        Ok(DecisionQuery {
            user_id: user_id(&r.user_id)?,
            context: value_map("context", &r.context, MAX_CONTEXT_ENTRIES)?,
            channel: r.channel,
            placement: r.placement,
            limit: r.limit as usize,
            explain: r.explain,
        })
    }
}

fn event(i: usize, e: pb::Event, now: Millis) -> Result<Event, FieldError> {
    let f = |name: &str| format!("events[{i}].{name}");
    check_id(&f("event_id"), &e.event_id, MAX_ID_BYTES)?;
    check_id(&f("user_id"), &e.user_id, MAX_USER_ID_BYTES)?;
    check_name(&f("event_type"), &e.event_type, MAX_EVENT_TYPE_BYTES)?;
    if !e.channel.is_empty() {
        check_name(&f("channel"), &e.channel, 64)?;
    }
    if !e.offer_id.is_empty() {
        check_name(&f("offer_id"), &e.offer_id, MAX_ID_BYTES)?;
    }
    check_amount(&f("value"), e.value)?;
    if e.properties.len() > MAX_PROPERTIES {
        return Err(FieldError::new(
            f("properties"),
            format!("has {} entries, at most {MAX_PROPERTIES} allowed", e.properties.len()),
        ));
    }
    for (k, v) in &e.properties {
        let pf = format!("{}[{k:?}]", f("properties"));
        check_name(&pf, k, MAX_KEY_BYTES)?;
        check_text(&pf, v, MAX_STRING_VALUE_BYTES)?;
    }
    let timestamp = match &e.timestamp {
        Some(ts) => millis(&f("timestamp"), ts, now)?,
        None => now,
    };
    Ok(Event {
        event_id: e.event_id,
        user_id: e.user_id,
        event_type: e.event_type,
        timestamp,
        channel: e.channel,
        offer_id: e.offer_id,
        value: e.value,
        properties: e.properties.into_iter().collect(),
    })
}

/// Validates a `RecordEvents` request: 1..=`MAX_EVENTS_PER_CALL` events, each with valid
/// ids, names, values and properties; a missing timestamp is now, and none may be further
/// ahead of the clock than `MAX_FUTURE_SKEW_MS`.
pub fn events(r: pb::RecordEventsRequest) -> Result<Vec<Event>, FieldError> {
    if r.events.is_empty() {
        return Err(FieldError::new("events", "is empty"));
    }
    if r.events.len() > MAX_EVENTS_PER_CALL {
        return Err(FieldError::new(
            "events",
            format!("has {} events, at most {MAX_EVENTS_PER_CALL} per call", r.events.len()),
        ));
    }
    let now = engine::now_ms();
    r.events.into_iter().enumerate().map(|(i, e)| event(i, e, now)).collect()
}

/// Validates a `RecordOutcome` request into the outcome to record.
pub fn outcome(r: pb::RecordOutcomeRequest) -> Result<OutcomeRecord, FieldError> {
    check_id("decision_id", &r.decision_id, MAX_ID_BYTES)?;
    check_name("offer_id", &r.offer_id, MAX_ID_BYTES)?;
    check_amount("value", r.value)?;
    let outcome = match pb::Outcome::try_from(r.outcome) {
        Ok(pb::Outcome::Impression) => OutcomeKind::Impression,
        Ok(pb::Outcome::Click) => OutcomeKind::Click,
        Ok(pb::Outcome::Dismiss) => OutcomeKind::Dismiss,
        Ok(pb::Outcome::Accept) => OutcomeKind::Accept,
        Ok(pb::Outcome::Conversion) => OutcomeKind::Conversion,
        Ok(pb::Outcome::Unspecified) => return Err(FieldError::new("outcome", "is required")),
        Err(_) => {
            return Err(FieldError::new("outcome", format!("unknown value {}", r.outcome)));
        }
    };
    let now = engine::now_ms();
    let at = match &r.timestamp {
        Some(ts) => millis("timestamp", ts, now)?,
        None => now,
    };
    // Decision ids are UUID v7 carrying the decision's time: an outcome cannot predate it.
    if let Ok(id) = uuid::Uuid::parse_str(&r.decision_id)
        && id.get_version_num() == 7
        && let Some(ts) = id.get_timestamp()
    {
        let (secs, nanos) = ts.to_unix();
        let decided_at = (secs as i64).saturating_mul(1000) + i64::from(nanos / 1_000_000);
        if at < decided_at {
            return Err(FieldError::new(
                "timestamp",
                format!("is {} ms before its decision was made", decided_at - at),
            ));
        }
    }
    Ok(OutcomeRecord {
        user_id: user_id(&r.user_id)?,
        decision_id: r.decision_id,
        offer_id: r.offer_id,
        outcome,
        value: r.value,
        at,
    })
}

/// A validated `PutProfile`: the user, attributes to set, attribute names to remove.
pub type ProfileChange = (String, BTreeMap<String, AttrValue>, Vec<String>);

/// Validates a `SetConsent` request: the user, the channel (checked against the config by the engine)
/// and whether consent is granted.
pub fn set_consent(r: pb::SetConsentRequest) -> Result<(String, String, bool), FieldError> {
    let user = user_id(&r.user_id)?;
    check_name("channel", &r.channel, 64)?;
    Ok((user, r.channel, r.granted))
}

/// Validates a `PutProfile` request.
pub fn put_profile(r: pb::PutProfileRequest) -> Result<ProfileChange, FieldError> {
    let user = user_id(&r.user_id)?;
    let set = value_map("attributes", &r.attributes, MAX_ATTRIBUTES_PER_CALL)?;
    if r.remove_attributes.len() > MAX_ATTRIBUTES_PER_CALL {
        return Err(FieldError::new("remove_attributes", format!("at most {MAX_ATTRIBUTES_PER_CALL} names")));
    }
    for (i, name) in r.remove_attributes.iter().enumerate() {
        check_name(&format!("remove_attributes[{i}]"), name, MAX_KEY_BYTES)?;
    }
    Ok((user, set, r.remove_attributes))
}

impl From<Decision> for pb::DecideResponse {
    fn from(d: Decision) -> Self {
        let r = d.record;
        let explanation = if d.explain {
            r.candidates
                .iter()
                .map(|c| {
                    let mut scores: HashMap<String, f64> = r.scores.clone().into_iter().collect();
                    scores.extend(c.scores.clone());
                    pb::CandidateExplanation {
                        offer_id: c.offer_id.clone(),
                        kept: c.dropped.is_none(),
                        reason: c.dropped.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                        reason_code: c.dropped.as_ref().map(|d| d.code().to_string()).unwrap_or_default(),
                        score: c.score,
                        scores,
                    }
                })
                .collect()
        } else {
            vec![]
        };
        pb::DecideResponse {
            decision_id: r.decision_id,
            user_id: r.user_id,
            stage: r.stage,
            offers: d
                .offers
                .into_iter()
                .enumerate()
                .map(|(i, o)| pb::OfferResult {
                    offer_id: o.offer_id,
                    content_ref: o.content_ref,
                    channel: o.channel,
                    score: o.score,
                    selection_probability: o.selection_probability,
                    rank: i as u32 + 1,
                    name: o.name,
                })
                .collect(),
            degraded: r.degraded,
            degraded_reason: d.degraded_reason.unwrap_or_default(),
            lapsed: r.lapsed,
            segments: r.segments,
            model_versions: r.model_versions.into_iter().collect(),
            assignments: r
                .assignments
                .iter()
                .map(|(e, v)| pb::VariantAssignment { experiment_id: e.clone(), variant: v.clone() })
                .collect(),
            config_version: r.config_version,
            explanation,
            suppression_reason: r.suppression.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            suppression_code: r.suppression.as_ref().map(|s| s.code().to_string()).unwrap_or_default(),
        }
    }
}

/// The `GetAssignment` response for a user's assignments (a user in no variant gets an
/// empty `variant`).
pub fn assignments(user_id: String, list: Vec<Assignment>) -> pb::GetAssignmentResponse {
    pb::GetAssignmentResponse {
        user_id,
        assignments: list
            .into_iter()
            .map(|a| pb::Assignment {
                experiment_id: a.experiment_id,
                layer: a.layer,
                variant: a.variant.unwrap_or_default(),
                bucket: a.bucket as u32,
                reason: a.reason,
            })
            .collect(),
    }
}

impl From<ExperimentReport> for pb::ExperimentResults {
    fn from(r: ExperimentReport) -> Self {
        let cmp = |c: &Option<Comparison>| {
            c.map_or((0.0, None, 1.0), |c| (c.lift, Some(pb::Interval { low: c.ci.0, high: c.ci.1 }), c.p_value))
        };
        pb::ExperimentResults {
            experiment_id: r.experiment_id,
            control: r.control,
            variants: r
                .variants
                .iter()
                .map(|v| {
                    let (visit_lift, visit_lift_ci, visit_p_value) = cmp(&v.visit);
                    let (conversion_lift, conversion_lift_ci, conversion_p_value) = cmp(&v.conversion);
                    let (revenue_lift, revenue_lift_ci, revenue_p_value) = cmp(&v.revenue);
                    pb::VariantResult {
                        variant: v.variant.clone(),
                        exposed_users: v.counters.exposed,
                        converted_users: v.counters.converters,
                        conversion_rate: v.conversion_rate,
                        revenue: v.counters.revenue,
                        revenue_per_user: v.revenue_per_user,
                        conversion_lift,
                        conversion_lift_ci,
                        conversion_p_value,
                        revenue_lift,
                        revenue_lift_ci,
                        revenue_p_value,
                        is_control: v.is_control,
                        visitors: v.counters.visitors,
                        visit_rate: v.visit_rate,
                        visit_lift,
                        visit_lift_ci,
                        visit_p_value,
                        expected_share: v.expected_share,
                        comparable: v.conversion.is_some() || v.visit.is_some(),
                    }
                })
                .collect(),
            srm_chi_square: r.srm_chi_square,
            srm_p_value: r.srm_p_value,
            srm_alarm: r.srm_alarm,
        }
    }
}

/// `DecideBatch`: the shared query (user id left empty) and the users, in order.
pub fn decide_batch(r: pb::DecideBatchRequest) -> Result<(DecisionQuery, Vec<String>), FieldError> {
    if r.user_ids.is_empty() {
        return Err(FieldError::new("user_ids", "is empty"));
    }
    if r.user_ids.len() > MAX_BATCH_USERS {
        return Err(FieldError::new(
            "user_ids",
            format!("has {} ids, at most {MAX_BATCH_USERS} per call", r.user_ids.len()),
        ));
    }
    for (i, u) in r.user_ids.iter().enumerate() {
        check_id(&format!("user_ids[{i}]"), u, MAX_USER_ID_BYTES)?;
    }
    let template = pb::DecideRequest {
        user_id: "batch".into(),
        channel: r.channel,
        placement: r.placement,
        context: r.context,
        limit: r.limit,
        explain: false,
    };
    let query = DecisionQuery::try_from(template)?;
    Ok((DecisionQuery { user_id: String::new(), ..query }, r.user_ids))
}

/// The `grpc-timeout` header (e.g. `100m`, `2S`), if the caller set a deadline.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<std::time::Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

/// A `grpc-timeout` value (e.g. `100m`): 1-8 digits and a unit, per the gRPC spec; anything
/// else is no deadline.
pub fn parse_grpc_timeout(raw: &str) -> Option<std::time::Duration> {
    if !raw.is_ascii() {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    // The gRPC spec allows at most 8 digits; anything else is not a timeout we honour.
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    use std::time::Duration as D;
    Some(match unit {
        "H" => D::from_secs(n.saturating_mul(3600)),
        "M" => D::from_secs(n.saturating_mul(60)),
        "S" => D::from_secs(n),
        "m" => D::from_millis(n),
        "u" => D::from_micros(n),
        "n" => D::from_nanos(n),
        _ => return None,
    })
}

impl From<ProfileView> for pb::Profile {
    fn from(p: ProfileView) -> Self {
        let a = &p.state.aggregates;
        pb::Profile {
            user_id: p.user_id,
            stage: p.stage,
            attributes: p.state.attributes.iter().map(|(k, v)| (k.clone(), to_pb_value(v))).collect(),
            aggregates: Some(pb::Aggregates {
                event_counts: a.event_counts.clone().into_iter().collect(),
                monetary_total: a.monetary_total,
                first_seen: opt_timestamp(a.first_seen),
                last_seen: opt_timestamp(a.last_seen),
                last_purchase: opt_timestamp(a.last_purchase),
                purchase_count: a.purchase_count,
            }),
            lapsed: p.lapsed,
            stage_since: opt_timestamp(p.state.stage_since),
            consent_withdrawn: p.state.consent_withdrawn.iter().map(|(c, t)| (c.clone(), timestamp(*t))).collect(),
        }
    }
}

fn transition(t: &Transition) -> pb::StageTransition {
    pb::StageTransition {
        from_stage: t.from.clone(),
        to_stage: t.to.clone(),
        at: Some(timestamp(t.at)),
        trigger_event_type: t.trigger_event_type.clone(),
        trigger_event_id: t.trigger_event_id.clone(),
    }
}

/// The `GetJourney` response: the user's stage and stage history.
pub fn journey(p: ProfileView) -> pb::Journey {
    pb::Journey {
        transitions: p.state.transitions.iter().map(transition).collect(),
        user_id: p.user_id,
        stage: p.stage,
    }
}

impl From<Event> for pb::Event {
    fn from(e: Event) -> Self {
        pb::Event {
            timestamp: Some(timestamp(e.timestamp)),
            event_id: e.event_id,
            user_id: e.user_id,
            event_type: e.event_type,
            channel: e.channel,
            offer_id: e.offer_id,
            value: e.value,
            properties: e.properties.into_iter().collect(),
        }
    }
}

/// A domain `AttrValue` from a CLI string: true/false, a number, or text.
pub fn parse_cli_value(s: &str) -> pb::Value {
    let kind = match s {
        "true" => pb::value::Kind::BoolValue(true),
        "false" => pb::value::Kind::BoolValue(false),
        _ => match s.parse::<f64>() {
            Ok(n) if n.is_finite() => pb::value::Kind::NumberValue(n),
            _ => pb::value::Kind::StringValue(s.to_string()),
        },
    };
    pb::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_before_and_after_epoch() {
        for ms in [0, 1, 999, 1000, 1_700_000_000_123, -1, -1001] {
            let ts = timestamp(ms);
            assert!((0..1_000_000_000).contains(&ts.nanos));
            assert_eq!(ts.seconds * 1000 + i64::from(ts.nanos / 1_000_000), ms);
        }
    }
}
