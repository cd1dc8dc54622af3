//! The decision-log record in a compact binary encoding (protobuf, through prost's derive:
//! the messages are internal to the store, so they live here rather than in the public
//! `proto/`). Issue 9: the JSON record with field names, then base64 of its sealed bytes, was
//! ~2.6 KB per decision; the record is now ~0.3 KB for the same content, and `touchpoint
//! replay` still re-runs it exactly (every value the decision read is kept, doubles bit for
//! bit).
//!
//! What is shortened:
//! - What repeats from decision to decision under one config (config and model versions,
//!   stage, channel, placement, the candidates' offer ids, the names of the scores and of the
//!   features) is a `Dict`, stored once per log shard (`Keys::log_dicts`) under its content
//!   hash; a record names its dictionary by that hash. So a record's size is bounded by the
//!   config, and the dictionaries by the number of distinct (config, models, stage, channel,
//!   placement) combinations.
//! - The feature vector is its non-zero values and a bit mask.
//! - A chosen offer is an index into the candidates (plus its selection probability unless it
//!   is 1); a drop reason without fields is an index into `UNIT_DROPS`; other drop reasons,
//!   attribute and context values are their short JSON (rare, small, versioned by serde).
//! - The decision id is the log entry's `id` field, not repeated in the record.
//!
//! Records written before (with the strings inline, or JSON) still decode: `decode` tells
//! them apart by their first byte and by whether they name a dictionary.
use crate::domain::contact::{Contact, ContactState};
use crate::domain::decision::{Candidate, Chosen, DecisionRecord, DropReason};
use crate::domain::features::FEATURE_NAMES;
use crate::domain::profile::{Aggregates, AttrValue, UserState};
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

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
    /// The dictionary's id (`DictEntry::id`); empty in records written before dictionaries,
    /// which carry every string inline.
    #[prost(bytes = "vec", tag = "27")]
    dict: Vec<u8>,
    /// With a dictionary: the scores in the order of its `score_names`.
    #[prost(double, repeated, tag = "28")]
    score_values: Vec<f64>,
    /// With a dictionary of at most 64 features: bit i set when feature i is stored (non-zero);
    /// `feature_values` holds just those. `None`: every value is stored.
    #[prost(uint64, optional, tag = "29")]
    feature_mask: Option<u64>,
    /// The suppression as an index into `UNIT_DROPS` plus one (0: `suppression` says).
    #[prost(uint32, tag = "30")]
    suppression_unit: u32,
}

/// What repeats from decision to decision under one config, stored once per log shard.
#[derive(Clone, PartialEq, Message)]
pub struct Dict {
    #[prost(string, tag = "1")]
    config_version: String,
    #[prost(btree_map = "string, string", tag = "2")]
    model_versions: BTreeMap<String, String>,
    #[prost(string, tag = "3")]
    stage: String,
    #[prost(string, tag = "4")]
    channel: String,
    #[prost(string, tag = "5")]
    placement: String,
    /// The candidates' offer ids, sorted (candidates name theirs by index: their order is the
    /// ranking, which varies from decision to decision).
    #[prost(string, repeated, tag = "6")]
    offers: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    score_names: Vec<String>,
    #[prost(string, repeated, tag = "8")]
    feature_names: Vec<String>,
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
    /// The selection probability is 1 (`selection_probability` is then not stored).
    #[prost(bool, tag = "5")]
    certain: bool,
}

#[derive(Clone, PartialEq, Message)]
struct CandidateRec {
    #[prost(string, tag = "1")]
    offer_id: String,
    #[prost(double, tag = "2")]
    score: f64,
    #[prost(btree_map = "string, double", tag = "3")]
    scores: BTreeMap<String, f64>,
    /// DropReason JSON; empty when kept or when `dropped_unit` says.
    #[prost(string, tag = "4")]
    dropped: String,
    /// A drop reason without fields: its index in `UNIT_DROPS` plus one.
    #[prost(uint32, tag = "5")]
    dropped_unit: u32,
    /// With a dictionary: the offer id's index in its `offers` plus one.
    #[prost(uint32, tag = "6")]
    offer: u32,
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
    /// The decision id as a UUID's 16 bytes (`decision_id` is then empty).
    #[prost(bytes = "vec", tag = "5")]
    decision_uuid: Vec<u8>,
}

/// Drop reasons without fields, by index (the record stores index + 1). Append only: records
/// already logged name these indexes.
const UNIT_DROPS: [&str; 8] = [
    "global_holdout",
    "wrong_channel",
    "wrong_placement",
    "outside_window",
    "ineligible",
    "below_limit",
    "no_eligible_offer",
    "no_fallback_offer",
];

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain values serialise")
}

fn attrs_out(m: &BTreeMap<String, AttrValue>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), json(v))).collect()
}

fn attrs_in(m: BTreeMap<String, String>) -> Result<BTreeMap<String, AttrValue>, String> {
    m.into_iter().map(|(k, v)| serde_json::from_str(&v).map(|v| (k, v)).map_err(|e| e.to_string())).collect()
}

/// A drop reason as (index + 1 into `UNIT_DROPS`, or 0 and its JSON).
fn reason_out(r: &Option<DropReason>) -> (u32, String) {
    let Some(r) = r else { return (0, String::new()) };
    // Codes name variants one to one, and a code in UNIT_DROPS is a variant without fields
    // (test: each decodes from its code alone).
    match UNIT_DROPS.iter().position(|u| *u == r.code()) {
        Some(i) => (i as u32 + 1, String::new()),
        None => (0, json(r)),
    }
}

fn reason_in(unit: u32, s: &str) -> Result<Option<DropReason>, String> {
    if unit > 0 {
        let code = UNIT_DROPS.get(unit as usize - 1).ok_or_else(|| format!("unknown drop reason {unit}"))?;
        return serde_json::from_str(&format!(r#"{{"code":"{code}"}}"#)).map(Some).map_err(|e| e.to_string());
    }
    if s.is_empty() { Ok(None) } else { serde_json::from_str(s).map(Some).map_err(|e| e.to_string()) }
}

/// A dictionary and its id: the first 12 bytes of the SHA-256 of its encoding, so the same
/// dictionary has the same id in every process and a record's id names exactly one.
#[derive(Debug, PartialEq)]
pub struct DictEntry {
    pub id: Vec<u8>,
    pub bytes: Vec<u8>,
    /// The dictionary itself (its `offers`, sorted, give the candidates' indexes).
    pub dict: Dict,
}

/// A record's candidate offer ids, sorted and without repeats.
fn sorted_offers(r: &DecisionRecord) -> Vec<&str> {
    let mut offers: Vec<&str> = r.candidates.iter().map(|c| c.offer_id.as_str()).collect();
    offers.sort_unstable();
    offers.dedup();
    offers
}

const DICT_ID_LEN: usize = 12;

/// Dictionaries read back, by id.
pub type Dicts = HashMap<Vec<u8>, Dict>;

/// A shard's dictionary hash as `HGETALL` gives it: (id, `Dict` bytes) pairs.
pub type DictFields = Vec<(Vec<u8>, Vec<u8>)>;

/// The dictionaries of a shard's dictionary hash (`Keys::log_dicts`).
pub fn dicts_in(fields: DictFields) -> Result<Dicts, String> {
    fields
        .into_iter()
        .map(|(id, b)| Dict::decode(&b[..]).map(|d| (id, d)).map_err(|e| format!("dictionary: {e}")))
        .collect()
}

fn dict_of(r: &DecisionRecord) -> Dict {
    Dict {
        config_version: r.config_version.clone(),
        model_versions: r.model_versions.clone(),
        stage: r.stage.clone(),
        channel: r.channel.clone(),
        placement: r.placement.clone(),
        offers: sorted_offers(r).into_iter().map(str::to_string).collect(),
        score_names: r.scores.keys().cloned().collect(),
        feature_names: r.features.keys().cloned().collect(),
    }
}

/// At most this many dictionaries are remembered per process (placements come from requests,
/// so the set is not bounded by the config alone); past it the memory starts afresh.
const DICTS_REMEMBERED: usize = 4096;

/// shard -> the ids of the dictionaries stored there.
type StoredDicts = HashMap<String, HashSet<Vec<u8>>>;

/// The dictionaries this process has built (so a decision hashes its strings instead of
/// encoding them) and the (shard, dictionary) pairs it knows are stored in Redis (so a
/// dictionary is sent with the first decision of a shard only).
#[derive(Default)]
pub struct DictCache {
    hasher: RandomState,
    built: Mutex<HashMap<u64, Arc<DictEntry>>>,
    /// shard -> ids (looked up without allocating: a decision asks for each write), and how
    /// many pairs that is.
    stored: Mutex<(StoredDicts, usize)>,
}

impl DictCache {
    /// The dictionary of a record's repeating parts.
    pub fn dict(&self, r: &DecisionRecord) -> Arc<DictEntry> {
        // A keyed hash of the strings (SipHash with this process's random keys): not
        // something a request can aim a collision at.
        let mut h = self.hasher.build_hasher();
        (&r.config_version, &r.model_versions, &r.stage, &r.channel, &r.placement).hash(&mut h);
        sorted_offers(r).hash(&mut h);
        r.scores.len().hash(&mut h);
        r.scores.keys().for_each(|k| k.hash(&mut h));
        r.features.len().hash(&mut h);
        r.features.keys().for_each(|k| k.hash(&mut h));
        let key = h.finish();
        let mut built = self.built.lock().expect("dictionary cache");
        if let Some(d) = built.get(&key) {
            return d.clone();
        }
        let dict = dict_of(r);
        let bytes = dict.encode_to_vec();
        let id = Sha256::digest(&bytes)[..DICT_ID_LEN].to_vec();
        let entry = Arc::new(DictEntry { id, bytes, dict });
        if built.len() >= DICTS_REMEMBERED {
            built.clear();
        }
        built.insert(key, entry.clone());
        entry
    }

    /// Whether the dictionary is known to be stored in the shard's dictionary hash.
    pub fn stored(&self, shard: &str, id: &[u8]) -> bool {
        self.stored.lock().expect("dictionary cache").0.get(shard).is_some_and(|ids| ids.contains(id))
    }

    /// The dictionary is not stored in the shard after all (the write said so).
    pub fn forget_stored(&self, shard: &str, id: &[u8]) {
        let mut guard = self.stored.lock().expect("dictionary cache");
        let (by_shard, n) = &mut *guard;
        if by_shard.get_mut(shard).is_some_and(|ids| ids.remove(id)) {
            *n -= 1;
        }
    }

    /// The dictionary is stored in the shard's dictionary hash (a write naming it succeeded).
    pub fn mark_stored(&self, shard: &str, id: &[u8]) {
        let mut guard = self.stored.lock().expect("dictionary cache");
        let (by_shard, n) = &mut *guard;
        if *n >= DICTS_REMEMBERED {
            by_shard.clear();
            *n = 0;
        }
        if by_shard.entry(shard.to_string()).or_default().insert(id.to_vec()) {
            *n += 1;
        }
    }
}

/// The record's binary encoding (the plaintext that is sealed into the decision log), naming
/// `dict` (`DictCache::dict` of the same record) for its repeating parts.
pub fn encode(r: &DecisionRecord, dict: &DictEntry) -> Vec<u8> {
    let mut mask = 0u64;
    let feature_values: Vec<f64> = if r.features.len() <= 64 {
        let mut values = Vec::new();
        for (i, v) in r.features.values().enumerate() {
            if v.to_bits() != 0 {
                mask |= 1 << i;
                values.push(*v);
            }
        }
        values
    } else {
        r.features.values().copied().collect()
    };
    let candidate = |id: &str| r.candidates.iter().position(|c| c.offer_id == id);
    let a = &r.state.aggregates;
    let (suppression_unit, suppression) = reason_out(&r.suppression);
    Record {
        decision_id: String::new(),
        user_id: r.user_id.clone(),
        at: r.at,
        channel: String::new(),
        placement: String::new(),
        limit: r.limit as u64,
        context: attrs_out(&r.context),
        stage: String::new(),
        lapsed: r.lapsed,
        segments: r.segments.clone(),
        config_version: String::new(),
        model_versions: BTreeMap::new(),
        feature_names: vec![],
        feature_values,
        feature_mask: (r.features.len() <= 64).then_some(mask),
        standard_features: false,
        scores: BTreeMap::new(),
        score_values: r.scores.values().copied().collect(),
        degraded: r.degraded,
        seed: r.seed,
        chosen: r
            .chosen
            .iter()
            .map(|c| {
                let same = candidate(&c.offer_id).filter(|&i| r.candidates[i].score.to_bits() == c.score.to_bits());
                let certain = c.selection_probability.to_bits() == 1f64.to_bits();
                ChosenRec {
                    candidate: same.map_or(0, |i| i as u32 + 1),
                    offer_id: if same.is_some() { String::new() } else { c.offer_id.clone() },
                    score: if same.is_some() { 0.0 } else { c.score },
                    selection_probability: if certain { 0.0 } else { c.selection_probability },
                    certain,
                }
            })
            .collect(),
        candidates: r
            .candidates
            .iter()
            .map(|c| {
                let (dropped_unit, dropped) = reason_out(&c.dropped);
                let offer = dict.dict.offers.binary_search(&c.offer_id).map_or(0, |i| i as u32 + 1);
                CandidateRec {
                    offer_id: if offer == 0 { c.offer_id.clone() } else { String::new() },
                    score: c.score,
                    scores: c.scores.clone(),
                    dropped,
                    dropped_unit,
                    offer,
                }
            })
            .collect(),
        suppression,
        suppression_unit,
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
            .map(|c| {
                let uuid =
                    uuid::Uuid::parse_str(&c.decision_id).ok().filter(|u| u.hyphenated().to_string() == c.decision_id);
                ContactRec {
                    at: c.at,
                    decision_id: if uuid.is_some() { String::new() } else { c.decision_id.clone() },
                    channel: c.channel.clone(),
                    offer_id: c.offer_id.clone(),
                    decision_uuid: uuid.map(|u| u.as_bytes().to_vec()).unwrap_or_default(),
                }
            })
            .collect(),
        dismissed: r.contacts.dismissed.clone(),
        accepted: r.contacts.accepted.clone(),
        assignments: r.assignments.clone(),
        dict: dict.id.clone(),
    }
    .encode_to_vec()
}

/// A record from `encode`'s bytes (`id`: the log entry's decision id; `dicts`: the shard's
/// dictionaries), or from the bytes of entries written before it (strings inline, or JSON).
pub fn decode(bytes: &[u8], id: &str, dicts: &Dicts) -> Result<DecisionRecord, String> {
    if bytes.first() == Some(&b'{') {
        return serde_json::from_slice(bytes).map_err(|e| e.to_string());
    }
    let mut r = Record::decode(bytes).map_err(|e| e.to_string())?;
    if r.decision_id.is_empty() {
        r.decision_id = id.to_string();
    }
    if !r.dict.is_empty() {
        let d = dicts.get(&r.dict).ok_or_else(|| format!("dictionary {} is not stored", hex(&r.dict)))?;
        if d.score_names.len() != r.score_values.len() {
            return Err(format!("dictionary {} does not fit the record", hex(&r.dict)));
        }
        r.config_version = d.config_version.clone();
        r.model_versions = d.model_versions.clone();
        r.stage = d.stage.clone();
        r.channel = d.channel.clone();
        r.placement = d.placement.clone();
        for c in r.candidates.iter_mut().filter(|c| c.offer > 0) {
            let o = d.offers.get(c.offer as usize - 1);
            c.offer_id = o.ok_or_else(|| format!("dictionary {} does not fit the record", hex(&r.dict)))?.clone();
        }
        r.scores = d.score_names.iter().cloned().zip(std::mem::take(&mut r.score_values)).collect();
        r.feature_names = d.feature_names.clone();
        if let Some(mask) = r.feature_mask {
            let mut stored = std::mem::take(&mut r.feature_values).into_iter();
            for i in 0..r.feature_names.len() {
                r.feature_values.push(if mask & (1 << i) != 0 {
                    stored.next().ok_or("feature mask past the values")?
                } else {
                    0.0
                });
            }
        }
    }
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
            Ok(Candidate {
                offer_id: c.offer_id,
                score: c.score,
                scores: c.scores,
                dropped: reason_in(c.dropped_unit, &c.dropped)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let chosen = r
        .chosen
        .into_iter()
        .map(|c| {
            let p = if c.certain { 1.0 } else { c.selection_probability };
            match c.candidate {
                0 => Ok(Chosen { offer_id: c.offer_id, score: c.score, selection_probability: p }),
                i => candidates
                    .get(i as usize - 1)
                    .map(|k| Chosen { offer_id: k.offer_id.clone(), score: k.score, selection_probability: p })
                    .ok_or_else(|| format!("chosen offer names candidate {i} of {}", candidates.len())),
            }
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
        suppression: reason_in(r.suppression_unit, &r.suppression)?,
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
                .map(|c| {
                    let decision_id = match uuid::Uuid::from_slice(&c.decision_uuid) {
                        Ok(u) => u.hyphenated().to_string(),
                        Err(_) => c.decision_id,
                    };
                    Contact { at: c.at, decision_id, channel: c.channel, offer_id: c.offer_id }
                })
                .collect(),
            dismissed: r.dismissed,
            accepted: r.accepted,
        },
        assignments: r.assignments,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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

    /// The record's bytes, with its dictionary as a reader would get it back from Redis.
    fn logged(r: &DecisionRecord) -> (Vec<u8>, Dicts) {
        let d = DictCache::default().dict(r);
        (encode(r, &d), dicts_in(vec![(d.id.clone(), d.bytes.clone())]).unwrap())
    }

    fn round_trip(r: &DecisionRecord) -> DecisionRecord {
        let (bytes, dicts) = logged(r);
        decode(&bytes, &r.decision_id, &dicts).unwrap()
    }

    /// Many features, all non-zero, one zero, or none.
    fn many(n: usize, zero_at: usize) -> BTreeMap<String, f64> {
        (0..n).map(|i| (format!("f{i:03}"), if i == zero_at { 0.0 } else { -(i as f64) - 0.5 })).collect()
    }

    #[test]
    fn a_record_round_trips_exactly_with_standard_or_other_features() {
        let signed_zero = [("a".to_string(), -0.0), ("b".to_string(), 0.0), ("c".to_string(), f64::NAN)].into();
        for features in [
            standard(),
            BTreeMap::new(),
            [("x".to_string(), f64::MIN_POSITIVE)].into(),
            many(64, 63),
            many(65, 0),
            many(70, 99),
        ] {
            let r = full(features);
            assert_eq!(round_trip(&r), r);
        }
        // Contacts' decision ids are 16 bytes when they are UUIDs in their usual form, text
        // otherwise; both come back as they were.
        let mut r = full(standard());
        for id in ["not-a-uuid", "01A20A09-0000-7662-A4D2-5C2584540E60", ""] {
            let c = Contact { at: 5, decision_id: id.into(), channel: "email".into(), offer_id: "b".into() };
            r.contacts.contacts.push(c);
        }
        assert_eq!(round_trip(&r), r);
        // -0.0 and NaN are kept bit for bit (compared as bits: NaN != NaN).
        let r = full(signed_zero);
        let back: Vec<u64> = round_trip(&r).features.values().map(|v| v.to_bits()).collect();
        assert_eq!(back, r.features.values().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert_eq!(standard().len(), N_FEATURES);
    }

    #[test]
    fn every_drop_reason_without_fields_is_an_index_and_decodes_to_itself() {
        for code in UNIT_DROPS {
            let reason: DropReason = serde_json::from_str(&format!(r#"{{"code":"{code}"}}"#)).unwrap();
            assert_eq!(reason.code(), code);
            assert!(reason_out(&Some(reason.clone())).0 > 0, "{code}");
            let mut r = full(standard());
            r.suppression = Some(reason.clone());
            r.candidates[1].dropped = Some(reason);
            assert_eq!(round_trip(&r), r);
        }
    }

    #[test]
    fn the_record_is_bounded_by_the_config_not_repeated_strings() {
        let r = full(standard());
        let (bin, _) = logged(&r);
        let json = serde_json::to_vec(&r).unwrap();
        assert!(bin.len() * 3 < json.len(), "binary {} B vs JSON {} B", bin.len(), json.len());
        // Longer model versions, offer ids and config versions go to the dictionary: the
        // record does not grow with them.
        let mut long = r.clone();
        long.model_versions.insert("churn".into(), "churn-20261122T094838Z-e11bf6f8".repeat(4));
        long.candidates.iter_mut().for_each(|c| c.offer_id = c.offer_id.repeat(40));
        long.chosen[0].offer_id = long.candidates[0].offer_id.clone();
        long.config_version = "x".repeat(64);
        assert_eq!(logged(&long).0.len(), bin.len());
        assert_eq!(round_trip(&long), long);
    }

    #[test]
    fn the_same_dictionary_has_the_same_id_everywhere_and_a_different_one_another() {
        let r = full(standard());
        let (a, b) = (DictCache::default(), DictCache::default());
        assert_eq!(a.dict(&r), b.dict(&r));
        let mut other = r.clone();
        other.stage = "retention".into();
        assert_ne!(a.dict(&other).id, a.dict(&r).id);
        // The candidates' order is their ranking, which varies: the dictionary does not.
        let mut reordered = r.clone();
        reordered.candidates.reverse();
        assert_eq!(b.dict(&reordered).id, a.dict(&r).id);
        assert_eq!(round_trip(&reordered), reordered);
        assert_eq!(a.dict(&r).id.len(), DICT_ID_LEN);
        a.mark_stored("tp:ldict", &a.dict(&r).id);
        assert!(a.stored("tp:ldict", &a.dict(&r).id) && !a.stored("tp:ldict:{x}", &a.dict(&r).id));
    }

    #[test]
    fn records_written_before_dictionaries_and_json_ones_still_decode() {
        let r = full(standard());
        // The previous layout: every string inline, the standard features as values only.
        let old = Record {
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
            standard_features: true,
            feature_values: FEATURE_NAMES.iter().map(|n| r.features[*n]).collect(),
            scores: r.scores.clone(),
            seed: r.seed,
            chosen: vec![ChosenRec { candidate: 1, selection_probability: 0.9, ..Default::default() }],
            candidates: vec![CandidateRec {
                offer_id: "a".into(),
                score: r.candidates[0].score,
                scores: r.candidates[0].scores.clone(),
                dropped: json(&DropReason::WrongChannel),
                ..Default::default()
            }],
            suppression: json(&DropReason::NoEligibleOffer),
            ..Default::default()
        };
        let back = decode(&old.encode_to_vec(), "ignored: the record has its id", &Dicts::new()).unwrap();
        assert_eq!(
            (back.decision_id.as_str(), back.features.clone(), back.scores.clone()),
            (r.decision_id.as_str(), r.features.clone(), r.scores.clone())
        );
        assert_eq!((back.chosen[0].offer_id.as_str(), back.chosen[0].selection_probability), ("a", 0.9));
        assert_eq!(
            (back.candidates[0].dropped.clone(), back.suppression),
            (Some(DropReason::WrongChannel), Some(DropReason::NoEligibleOffer))
        );
        // Entries logged as JSON before still decode, as JSON decodes them (serde_json's
        // default float parsing can be one ulp off: the binary record keeps doubles exactly).
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(decode(&json, "", &Dicts::new()).unwrap(), serde_json::from_slice::<DecisionRecord>(&json).unwrap());
    }

    #[test]
    fn damaged_records_and_missing_dictionaries_are_errors_not_panics() {
        let (bin, dicts) = logged(&full(standard()));
        for cut in [1, bin.len() / 2, bin.len() - 1] {
            assert!(decode(&bin[..cut], "d", &dicts).is_err(), "cut at {cut}");
        }
        let err = decode(&bin, "d", &Dicts::new()).unwrap_err();
        assert!(err.contains("dictionary") && err.contains("not stored"), "{err}");
        // A dictionary that does not fit (another record's) is an error, not a wrong record.
        let mut other = full(standard());
        other.candidates.pop();
        let (_, wrong) = logged(&other);
        let wrong: Dicts = wrong.into_values().map(|d| (dicts.keys().next().unwrap().clone(), d)).collect();
        assert!(decode(&bin, "d", &wrong).unwrap_err().contains("does not fit"));
        let mut r = full(standard());
        r.chosen[0].score = 5.0; // not the candidate's score: stored in full
        assert_eq!(round_trip(&r), r);
    }
}
