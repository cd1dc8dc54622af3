//! The decision-log record in a compact binary encoding (protobuf, through prost's derive:
//! the messages are internal to the store, so they live here rather than in the public
//! `proto/`). Issue 9: the JSON record with field names, then base64 of its sealed bytes, was
//! ~2.6 KB per decision; this is ~0.5 KB of sealed bytes for the same content, and
//! `touchpoint replay` still re-runs it exactly (every value the decision read is kept, doubles
//! bit for bit).
//!
//! What is shortened: the feature vector is stored as values only when its names are the
//! built-in `FEATURE_NAMES` (names otherwise), a chosen offer is an index into the candidates
//! plus its selection probability, and drop reasons, attribute and context values are their
//! short JSON (rare, small, and already versioned by serde). Entries written before this
//! encoding (JSON) still decode: `decode` tells them apart by their first byte.
use crate::domain::contact::{Contact, ContactState};
use crate::domain::decision::{Candidate, Chosen, DecisionRecord, DropReason};
use crate::domain::features::FEATURE_NAMES;
use crate::domain::profile::{Aggregates, AttrValue, UserState};
use prost::Message;
use std::collections::BTreeMap;

#[derive(Clone, PartialEq, Message)]
struct Record {
    #[prost(string, tag = "1")]
    decision_id: String,
    #[prost(string, tag = "2")]
    user_id: String,
    #[prost(int64, tag = "3")]
    at: i64,
    #[prost(string, tag = "4")]
    channel: String,
    #[prost(string, tag = "5")]
    placement: String,
    #[prost(uint64, tag = "6")]
    limit: u64,
    /// name -> AttrValue JSON.
    #[prost(btree_map = "string, string", tag = "7")]
    context: BTreeMap<String, String>,
    #[prost(string, tag = "8")]
    stage: String,
    #[prost(bool, tag = "9")]
    lapsed: bool,
    #[prost(string, repeated, tag = "10")]
    segments: Vec<String>,
    #[prost(string, tag = "11")]
    config_version: String,
    #[prost(btree_map = "string, string", tag = "12")]
    model_versions: BTreeMap<String, String>,
    /// Empty when `standard_features`.
    #[prost(string, repeated, tag = "13")]
    feature_names: Vec<String>,
    /// The names are `FEATURE_NAMES`, in that order (only the values are stored).
    #[prost(bool, tag = "26")]
    standard_features: bool,
    #[prost(double, repeated, tag = "14")]
    feature_values: Vec<f64>,
    #[prost(btree_map = "string, double", tag = "15")]
    scores: BTreeMap<String, f64>,
    #[prost(bool, tag = "16")]
    degraded: bool,
    #[prost(fixed64, tag = "17")]
    seed: u64,
    #[prost(message, repeated, tag = "18")]
    chosen: Vec<ChosenRec>,
    #[prost(message, repeated, tag = "19")]
    candidates: Vec<CandidateRec>,
    /// DropReason JSON; empty when none.
    #[prost(string, tag = "20")]
    suppression: String,
    #[prost(message, optional, tag = "21")]
    state: Option<StateRec>,
    #[prost(message, repeated, tag = "22")]
    contacts: Vec<ContactRec>,
    #[prost(btree_map = "string, int64", tag = "23")]
    dismissed: BTreeMap<String, i64>,
    #[prost(btree_map = "string, int64", tag = "24")]
    accepted: BTreeMap<String, i64>,
    #[prost(btree_map = "string, string", tag = "25")]
    assignments: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct ChosenRec {
    /// Index into the candidates; the offer id when it is not a candidate.
    #[prost(uint32, tag = "1")]
    candidate: u32,
    #[prost(string, tag = "2")]
    offer_id: String,
    #[prost(double, tag = "3")]
    score: f64,
    #[prost(double, tag = "4")]
    selection_probability: f64,
}

#[derive(Clone, PartialEq, Message)]
struct CandidateRec {
    #[prost(string, tag = "1")]
    offer_id: String,
    #[prost(double, tag = "2")]
    score: f64,
    #[prost(btree_map = "string, double", tag = "3")]
    scores: BTreeMap<String, f64>,
    /// DropReason JSON; empty when kept.
    #[prost(string, tag = "4")]
    dropped: String,
}

#[derive(Clone, PartialEq, Message)]
struct StateRec {
    /// name -> AttrValue JSON.
    #[prost(btree_map = "string, string", tag = "1")]
    attributes: BTreeMap<String, String>,
    #[prost(btree_map = "string, uint64", tag = "2")]
    event_counts: BTreeMap<String, u64>,
    #[prost(double, tag = "3")]
    monetary_total: f64,
    #[prost(uint64, tag = "4")]
    purchase_count: u64,
    #[prost(int64, optional, tag = "5")]
    first_seen: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    last_seen: Option<i64>,
    #[prost(int64, optional, tag = "7")]
    last_purchase: Option<i64>,
    #[prost(string, optional, tag = "8")]
    stage: Option<String>,
    #[prost(int64, optional, tag = "9")]
    stage_since: Option<i64>,
    #[prost(btree_map = "string, int64", tag = "10")]
    consent_withdrawn: BTreeMap<String, i64>,
    /// event type -> day buckets (`profile::encode_daily`).
    #[prost(btree_map = "string, string", tag = "11")]
    daily: BTreeMap<String, String>,
    #[prost(btree_map = "string, int64", tag = "12")]
    last_by_type: BTreeMap<String, i64>,
}

#[derive(Clone, PartialEq, Message)]
struct ContactRec {
    #[prost(int64, tag = "1")]
    at: i64,
    #[prost(string, tag = "2")]
    decision_id: String,
    #[prost(string, tag = "3")]
    channel: String,
    #[prost(string, tag = "4")]
    offer_id: String,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain values serialise")
}

fn attrs_out(m: &BTreeMap<String, AttrValue>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), json(v))).collect()
}

fn attrs_in(m: BTreeMap<String, String>) -> Result<BTreeMap<String, AttrValue>, String> {
    m.into_iter().map(|(k, v)| serde_json::from_str(&v).map(|v| (k, v)).map_err(|e| e.to_string())).collect()
}

fn reason_in(s: &str) -> Result<Option<DropReason>, String> {
    if s.is_empty() { Ok(None) } else { serde_json::from_str(s).map(Some).map_err(|e| e.to_string()) }
}

/// The record's binary encoding (the plaintext that is sealed into the decision log).
pub fn encode(r: &DecisionRecord) -> Vec<u8> {
    let standard = r.features.len() == FEATURE_NAMES.len() && FEATURE_NAMES.iter().all(|n| r.features.contains_key(*n));
    let (feature_names, feature_values) = if standard {
        (vec![], FEATURE_NAMES.iter().map(|n| r.features[*n]).collect())
    } else {
        r.features.iter().map(|(k, v)| (k.clone(), *v)).unzip()
    };
    let candidate = |id: &str| r.candidates.iter().position(|c| c.offer_id == id);
    let a = &r.state.aggregates;
    Record {
        decision_id: r.decision_id.clone(),
        user_id: r.user_id.clone(),
        at: r.at,
        channel: r.channel.clone(),
        placement: r.placement.clone(),
        limit: r.limit as u64,
        context: attrs_out(&r.context),
        stage: r.stage.clone(),
        lapsed: r.lapsed,
        segments: r.segments.clone(),
        config_version: r.config_version.clone(),
        model_versions: r.model_versions.clone(),
        feature_names,
        feature_values,
        standard_features: standard,
        scores: r.scores.clone(),
        degraded: r.degraded,
        seed: r.seed,
        chosen: r
            .chosen
            .iter()
            .map(|c| {
                let same = candidate(&c.offer_id).filter(|&i| r.candidates[i].score.to_bits() == c.score.to_bits());
                ChosenRec {
                    candidate: same.map_or(0, |i| i as u32 + 1),
                    offer_id: if same.is_some() { String::new() } else { c.offer_id.clone() },
                    score: if same.is_some() { 0.0 } else { c.score },
                    selection_probability: c.selection_probability,
                }
            })
            .collect(),
        candidates: r
            .candidates
            .iter()
            .map(|c| CandidateRec {
                offer_id: c.offer_id.clone(),
                score: c.score,
                scores: c.scores.clone(),
                dropped: c.dropped.as_ref().map(json).unwrap_or_default(),
            })
            .collect(),
        suppression: r.suppression.as_ref().map(json).unwrap_or_default(),
        state: Some(StateRec {
            attributes: attrs_out(&r.state.attributes),
            event_counts: a.event_counts.clone(),
            monetary_total: a.monetary_total,
            purchase_count: a.purchase_count,
            first_seen: a.first_seen,
            last_seen: a.last_seen,
            last_purchase: a.last_purchase,
            stage: r.state.stage.clone(),
            stage_since: r.state.stage_since,
            consent_withdrawn: r.state.consent_withdrawn.clone(),
            daily: a.daily.iter().map(|(k, d)| (k.clone(), crate::domain::profile::encode_daily(d))).collect(),
            last_by_type: a.last_by_type.clone(),
        }),
        contacts: r
            .contacts
            .contacts
            .iter()
            .map(|c| ContactRec {
                at: c.at,
                decision_id: c.decision_id.clone(),
                channel: c.channel.clone(),
                offer_id: c.offer_id.clone(),
            })
            .collect(),
        dismissed: r.contacts.dismissed.clone(),
        accepted: r.contacts.accepted.clone(),
        assignments: r.assignments.clone(),
    }
    .encode_to_vec()
}

/// A record from `encode`'s bytes, or from the JSON of entries written before it.
pub fn decode(bytes: &[u8]) -> Result<DecisionRecord, String> {
    if bytes.first() == Some(&b'{') {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    }
    let r = Record::decode(bytes).map_err(|e| e.to_string())?;
    let features = if r.standard_features {
        if r.feature_values.len() != FEATURE_NAMES.len() {
            return Err(format!("{} feature values for {} features", r.feature_values.len(), FEATURE_NAMES.len()));
        }
        FEATURE_NAMES.iter().map(|n| n.to_string()).zip(r.feature_values).collect()
    } else if r.feature_names.len() == r.feature_values.len() {
        r.feature_names.into_iter().zip(r.feature_values).collect()
    } else {
        return Err(format!("{} feature names for {} values", r.feature_names.len(), r.feature_values.len()));
    };
    let candidates = r
        .candidates
        .into_iter()
        .map(|c| {
            Ok(Candidate { offer_id: c.offer_id, score: c.score, scores: c.scores, dropped: reason_in(&c.dropped)? })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let chosen = r
        .chosen
        .into_iter()
        .map(|c| match c.candidate {
            0 => Ok(Chosen { offer_id: c.offer_id, score: c.score, selection_probability: c.selection_probability }),
            i => candidates
                .get(i as usize - 1)
                .map(|k| Chosen {
                    offer_id: k.offer_id.clone(),
                    score: k.score,
                    selection_probability: c.selection_probability,
                })
                .ok_or_else(|| format!("chosen offer names candidate {i} of {}", candidates.len())),
        })
        .collect::<Result<Vec<_>, String>>()?;
    let s = r.state.unwrap_or_default();
    Ok(DecisionRecord {
        decision_id: r.decision_id,
        user_id: r.user_id,
        at: r.at,
        channel: r.channel,
        placement: r.placement,
        limit: r.limit as usize,
        context: attrs_in(r.context)?,
        stage: r.stage,
        lapsed: r.lapsed,
        segments: r.segments,
        config_version: r.config_version,
        model_versions: r.model_versions,
        features,
        scores: r.scores,
        degraded: r.degraded,
        seed: r.seed,
        chosen,
        candidates,
        suppression: reason_in(&r.suppression)?,
        state: UserState {
            attributes: attrs_in(s.attributes)?,
            aggregates: Aggregates {
                event_counts: s.event_counts,
                monetary_total: s.monetary_total,
                purchase_count: s.purchase_count,
                first_seen: s.first_seen,
                last_seen: s.last_seen,
                last_purchase: s.last_purchase,
                daily: s
                    .daily
                    .iter()
                    .map(|(k, d)| {
                        crate::domain::profile::decode_daily(d)
                            .map(|d| (k.clone(), d))
                            .ok_or_else(|| format!("day buckets of {k}: {d:?}"))
                    })
                    .collect::<Result<_, String>>()?,
                last_by_type: s.last_by_type,
            },
            stage: s.stage,
            stage_since: s.stage_since,
            transitions: vec![],
            consent_withdrawn: s.consent_withdrawn,
        },
        contacts: ContactState {
            contacts: r
                .contacts
                .into_iter()
                .map(|c| Contact { at: c.at, decision_id: c.decision_id, channel: c.channel, offer_id: c.offer_id })
                .collect(),
            dismissed: r.dismissed,
            accepted: r.accepted,
        },
        assignments: r.assignments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::N_FEATURES;

    /// A record with every field set, every drop-reason shape and attribute type, a chosen
    /// offer that is a candidate and one that is not.
    fn full(features: BTreeMap<String, f64>) -> DecisionRecord {
        let reason = |r: DropReason| Some(r);
        DecisionRecord {
            decision_id: "01a20a09-b9c4-7662-a4d2-5c2584540e60".into(),
            user_id: "u-1".into(),
            at: 1_795_464_739_268,
            channel: "web".into(),
            placement: "home".into(),
            limit: 3,
            context: [("page".to_string(), AttrValue::Str("cart".into())), ("n".into(), AttrValue::Num(2.5))].into(),
            stage: "consideration".into(),
            lapsed: true,
            segments: vec!["vip".into(), "recently_active".into()],
            config_version: "3d3448473957".into(),
            model_versions: [("churn".to_string(), "v7".to_string())].into(),
            features,
            scores: [("churn".to_string(), 0.1 + 0.2), ("purchase".into(), 1.0 / 3.0)].into(),
            degraded: false,
            seed: u64::MAX - 5,
            chosen: vec![
                Chosen { offer_id: "a".into(), score: 0.214_625_959_161_605_76, selection_probability: 0.9 },
                Chosen { offer_id: "fallback".into(), score: -1.0, selection_probability: 1.0 },
            ],
            candidates: vec![
                Candidate {
                    offer_id: "a".into(),
                    score: 0.214_625_959_161_605_76,
                    scores: [("response".to_string(), 0.07)].into(),
                    dropped: None,
                },
                Candidate {
                    offer_id: "b".into(),
                    score: 0.0,
                    scores: BTreeMap::new(),
                    dropped: reason(DropReason::WrongChannel),
                },
                Candidate {
                    offer_id: "c".into(),
                    score: 0.0,
                    scores: BTreeMap::new(),
                    dropped: reason(DropReason::ContactLimit {
                        channel: "email".into(),
                        max: 1,
                        window_ms: 259_200_000,
                    }),
                },
            ],
            suppression: Some(DropReason::NoEligibleOffer),
            state: UserState {
                attributes: [
                    ("tier".to_string(), AttrValue::Str("gold".into())),
                    ("vip".into(), AttrValue::Bool(true)),
                    ("age".into(), AttrValue::Num(41.0)),
                ]
                .into(),
                aggregates: Aggregates {
                    event_counts: [("page_view".to_string(), 12), ("purchase".into(), 1)].into(),
                    monetary_total: 99.95,
                    purchase_count: 1,
                    first_seen: Some(1_795_000_000_000),
                    last_seen: Some(1_795_464_696_215),
                    last_purchase: None,
                    daily: [("purchase".to_string(), [(20_775, (1, 99.95))].into())].into(),
                    last_by_type: [("purchase".to_string(), 1_795_000_000_000)].into(),
                },
                stage: Some("consideration".into()),
                stage_since: Some(1_795_400_000_000),
                transitions: vec![],
                consent_withdrawn: [("email".to_string(), 1_795_100_000_000)].into(),
            },
            contacts: ContactState {
                contacts: vec![Contact {
                    at: 1_795_464_000_000,
                    decision_id: "01a20a09-0000-7662-a4d2-5c2584540e60".into(),
                    channel: "web".into(),
                    offer_id: "a".into(),
                }],
                dismissed: [("b".to_string(), 1_795_464_100_000)].into(),
                accepted: BTreeMap::new(),
            },
            assignments: [("hero".to_string(), "challenger".to_string())].into(),
        }
    }

    fn standard() -> BTreeMap<String, f64> {
        FEATURE_NAMES.iter().enumerate().map(|(i, n)| (n.to_string(), (i as f64).ln_1p() / 3.0)).collect()
    }

    #[test]
    fn a_record_round_trips_exactly_with_standard_or_other_features() {
        for features in [standard(), BTreeMap::new(), [("x".to_string(), f64::MIN_POSITIVE)].into()] {
            let r = full(features);
            assert_eq!(decode(&encode(&r)).unwrap(), r);
        }
        assert_eq!(standard().len(), N_FEATURES);
    }

    #[test]
    fn the_binary_record_is_a_fraction_of_the_json_and_old_json_entries_still_decode() {
        let r = full(standard());
        let json = serde_json::to_vec(&r).unwrap();
        let bin = encode(&r);
        assert!(bin.len() * 2 < json.len(), "binary {} B vs JSON {} B", bin.len(), json.len());
        // Entries logged as JSON before still decode, as JSON decodes them (serde_json's
        // default float parsing can be one ulp off: the binary record keeps doubles exactly).
        assert_eq!(decode(&json).unwrap(), serde_json::from_slice::<DecisionRecord>(&json).unwrap());
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        let bin = encode(&full(standard()));
        for cut in [1, bin.len() / 2, bin.len() - 1] {
            assert!(decode(&bin[..cut]).is_err(), "cut at {cut}");
        }
        let mut r = full(standard());
        r.chosen[0].score = 5.0; // not the candidate's score: stored in full
        assert_eq!(decode(&encode(&r)).unwrap(), r);
    }
}
