//! Encodings of the store's values: profile hash fields, contacts and marks, journey-log
//! stream entries, decision-log entries, recent-decision offer lists and experiment counters.
//! Pure functions (no I/O), so each round-trips in a unit test.
use crate::domain::Millis;
use crate::domain::contact::{Contact, ContactState};
use crate::domain::decision::DecisionRecord;
use crate::domain::event::Event;
use crate::domain::experiment::VariantCounters;
use crate::domain::profile::{AttrValue, Transition, UserState};
use crate::store::{DecisionLogEntry, StoreError};
use std::collections::BTreeMap;

fn ms_str(v: Option<i64>) -> Option<String> {
    v.map(|t| t.to_string())
}

/// Profile hash fields for a state (without the version).
/// A field name, once used, keeps its meaning in every later version: writes send only the
/// fields that changed (`profile_changes`), so a field this version does not know stays
/// in the hash until the profile is erased.
pub fn encode_profile(s: &UserState) -> Vec<(String, String)> {
    // Every field, as the changes from an empty profile: one place says how each is written.
    profile_changes(&UserState::default(), s).0
}

/// An attribute value as stored (JSON: a bool, a number or a string). The common shapes (a
/// plain string without escapes, a number) are read directly; anything else goes through
/// serde_json (an untagged enum, slow: it buffers the value and tries each variant).
pub fn decode_attr(v: &str) -> Option<AttrValue> {
    let b = v.as_bytes();
    match b.first()? {
        b'"' if b.len() >= 2 && b[b.len() - 1] == b'"' => {
            let inner = &v[1..v.len() - 1];
            if !inner.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20) {
                return Some(AttrValue::Str(inner.to_string()));
            }
        }
        b'-' | b'0'..=b'9' if b.iter().all(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) => {
            // Finite only: `1e400` is not a number the writer stores (serde_json refuses it).
            if let Ok(x) = v.parse::<f64>().map_err(drop).and_then(|x| if x.is_finite() { Ok(x) } else { Err(()) }) {
                return Some(AttrValue::Num(x));
            }
        }
        _ => {}
    }
    serde_json::from_str(v).ok()
}

/// What turns the profile hash of `before` into that of `after`: the fields to set (new or
/// changed) and the fields to delete (the version field is not among them). The one place
/// that says how each part of the state is written (`encode_profile` is the changes from an
/// empty profile): a field is written when present, scalars by name, maps as `prefix<key>`. Parts that are equal are not encoded at all: a page view changes three
/// fields, and encoding every attribute twice to compare cost a tenth of RecordEvents' CPU.
pub fn profile_changes(before: &UserState, after: &UserState) -> (Vec<(String, String)>, Vec<String>) {
    let mut c = Changes::default();
    let (b, a) = (&before.aggregates, &after.aggregates);
    if before.stage != after.stage {
        c.one("stage", before.stage.clone(), after.stage.clone());
    }
    for (k, old, new) in [
        ("since", before.stage_since, after.stage_since),
        ("fs", b.first_seen, a.first_seen),
        ("ls", b.last_seen, a.last_seen),
        ("lp", b.last_purchase, a.last_purchase),
    ] {
        if old != new {
            c.one(k, ms_str(old), ms_str(new));
        }
    }
    if b.monetary_total != a.monetary_total {
        let mon = |x: f64| (x != 0.0).then(|| x.to_string());
        c.one("mon", mon(b.monetary_total), mon(a.monetary_total));
    }
    if b.purchase_count != a.purchase_count {
        let pc = |n: u64| (n != 0).then(|| n.to_string());
        c.one("pc", pc(b.purchase_count), pc(a.purchase_count));
    }
    c.map("c:", &b.event_counts, &a.event_counts, |v| v.to_string());
    c.map("d:", &b.daily, &a.daily, crate::domain::profile::encode_daily);
    c.map("t:", &b.last_by_type, &a.last_by_type, |v| v.to_string());
    c.map("a:", &before.attributes, &after.attributes, |v| {
        serde_json::to_string(v).expect("attribute values serialise")
    });
    c.map("w:", &before.consent_withdrawn, &after.consent_withdrawn, |v| v.to_string());
    (c.set, c.del)
}

/// `profile_changes`' result as it is built.
#[derive(Default)]
struct Changes {
    set: Vec<(String, String)>,
    del: Vec<String>,
}

impl Changes {
    /// A field written when present, given its two encodings.
    fn one(&mut self, field: &str, old: Option<String>, new: Option<String>) {
        match new {
            Some(v) if old.as_ref() != Some(&v) => self.set.push((field.to_string(), v)),
            Some(_) => {}
            None if old.is_some() => self.del.push(field.to_string()),
            None => {}
        }
    }

    /// The fields `prefix<key>` of one map.
    fn map<V: PartialEq>(
        &mut self,
        prefix: &str,
        old: &BTreeMap<String, V>,
        new: &BTreeMap<String, V>,
        encode: impl Fn(&V) -> String,
    ) {
        if old == new {
            return;
        }
        for (k, v) in new {
            if old.get(k) != Some(v) {
                self.set.push((format!("{prefix}{k}"), encode(v)));
            }
        }
        self.del.extend(old.keys().filter(|k| !new.contains_key(*k)).map(|k| format!("{prefix}{k}")));
    }
}

pub fn decode_profile(fields: Vec<String>, transitions: Vec<String>) -> Result<(u64, UserState), StoreError> {
    let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("profile field {what}: {v:?}"));
    let mut s = UserState::default();
    let mut version = 0;
    let mut it = fields.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let int = || v.parse::<i64>().map_err(|_| corrupt(&k, &v));
        match k.as_str() {
            "v" => version = v.parse().map_err(|_| corrupt(&k, &v))?,
            "stage" => s.stage = Some(v.clone()),
            "since" => s.stage_since = Some(int()?),
            "fs" => s.aggregates.first_seen = Some(int()?),
            "ls" => s.aggregates.last_seen = Some(int()?),
            "lp" => s.aggregates.last_purchase = Some(int()?),
            "mon" => s.aggregates.monetary_total = v.parse().map_err(|_| corrupt(&k, &v))?,
            "pc" => s.aggregates.purchase_count = v.parse().map_err(|_| corrupt(&k, &v))?,
            _ => {
                if let Some(t) = k.strip_prefix("c:") {
                    s.aggregates.event_counts.insert(t.to_string(), v.parse().map_err(|_| corrupt(&k, &v))?);
                } else if let Some(t) = k.strip_prefix("d:") {
                    let days = crate::domain::profile::decode_daily(&v).ok_or_else(|| corrupt(&k, &v))?;
                    s.aggregates.daily.insert(t.to_string(), days);
                } else if let Some(t) = k.strip_prefix("t:") {
                    s.aggregates.last_by_type.insert(t.to_string(), int()?);
                } else if let Some(channel) = k.strip_prefix("w:") {
                    s.consent_withdrawn.insert(channel.to_string(), int()?);
                } else if let Some(name) = k.strip_prefix("a:") {
                    let value = decode_attr(&v).ok_or_else(|| corrupt(&k, &v))?;
                    s.attributes.insert(name.to_string(), value);
                }
            }
        }
    }
    for t in transitions {
        s.transitions.push(serde_json::from_str::<Transition>(&t).map_err(|_| corrupt("transition", &t))?);
    }
    Ok((version, s))
}

/// Contacts (`decision|channel|offer`, score) and marks (`dismiss:<offer>`, time).
pub fn decode_contacts(contacts: Vec<String>, marks: Vec<String>) -> Result<ContactState, StoreError> {
    let mut state = ContactState::default();
    let mut it = contacts.into_iter();
    while let (Some(member), Some(score)) = (it.next(), it.next()) {
        let mut parts = member.splitn(3, '|');
        let (Some(d), Some(ch), Some(o)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StoreError::Corrupt(format!("contact {member:?}")));
        };
        let at = score.parse::<f64>().map_err(|_| StoreError::Corrupt(format!("contact time {score:?}")))? as Millis;
        state.contacts.push(Contact { at, decision_id: d.into(), channel: ch.into(), offer_id: o.into() });
    }
    let mut it = marks.into_iter();
    while let (Some(field), Some(t)) = (it.next(), it.next()) {
        let at: Millis = t.parse().map_err(|_| StoreError::Corrupt(format!("mark {field}={t}")))?;
        match field.split_once(':') {
            Some(("dismiss", offer)) => state.dismissed.insert(offer.to_string(), at),
            Some(("accept", offer)) => state.accepted.insert(offer.to_string(), at),
            _ => return Err(StoreError::Corrupt(format!("mark {field:?}"))),
        };
    }
    Ok(state)
}

pub fn encode_event(e: &Event) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("event_id", e.event_id.clone()),
        ("user_id", e.user_id.clone()),
        ("event_type", e.event_type.clone()),
        ("ts", e.timestamp.to_string()),
    ];
    if !e.channel.is_empty() {
        f.push(("channel", e.channel.clone()));
    }
    if !e.offer_id.is_empty() {
        f.push(("offer_id", e.offer_id.clone()));
    }
    if e.value != 0.0 {
        f.push(("value", e.value.to_string()));
    }
    if !e.properties.is_empty() {
        f.push(("properties", serde_json::to_string(&e.properties).expect("string map serialises")));
    }
    f
}

/// The fields of a stream entry as read back: values are bytes (the decision log's `bin` is
/// binary; every other value is text).
pub type EntryFields = [(String, Vec<u8>)];

/// Entries (id, fields) of one XRANGE page.
pub type StreamPage = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// A text field of an entry ("" when absent or not UTF-8).
fn text<'f>(fields: &'f EntryFields, name: &str) -> &'f str {
    fields.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok()).unwrap_or("")
}

/// A journey-log entry: sealed (`kid`, `enc`: None when its key was erased) or, written
/// before sealing, in clear.
pub fn decode_sealed_event(fields: &EntryFields, keys: &Keyring) -> Result<Option<Event>, StoreError> {
    match open_sealed(fields, keys, "journey log")? {
        Sealed::Clear => {
            let clear: Vec<(String, String)> =
                fields.iter().map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned())).collect();
            decode_event(&clear).map(Some)
        }
        Sealed::Erased => Ok(None),
        Sealed::Open(plain) => {
            let map: BTreeMap<String, String> = serde_json::from_slice(&plain)
                .map_err(|e| StoreError::Corrupt(format!("sealed journey log entry: {e}")))?;
            decode_event(&map.into_iter().collect::<Vec<_>>()).map(Some)
        }
    }
}

/// An entry's key id: hex text, or 16 raw bytes (decision entries since the record
/// dictionaries), given as hex.
fn kid_of(fields: &EntryFields) -> String {
    match fields.iter().find(|(k, _)| k == "kid") {
        Some((_, v)) if v.len() == 16 => hex::encode(v),
        _ => text(fields, "kid").to_string(),
    }
}

/// A decision id as the log entry's `id` stores it: the UUID's 16 bytes (its text when it is
/// not a UUID).
pub fn raw_id(id: &str) -> Vec<u8> {
    uuid::Uuid::parse_str(id).map_or_else(|_| id.as_bytes().to_vec(), |u| u.as_bytes().to_vec())
}

/// A decision-log entry's decision id: text, or a UUID's 16 raw bytes (`raw_id`).
fn decision_id_of(fields: &EntryFields) -> String {
    match fields.iter().find(|(k, _)| k == "id") {
        Some((_, v)) if v.len() == 16 => uuid::Uuid::from_slice(v).map(|u| u.to_string()).unwrap_or_default(),
        _ => text(fields, "id").to_string(),
    }
}

/// What opens a page of log entries: the keys of the users whose entries it holds, by key id
/// (erased ones are absent), and for a decision-log page the shard's record dictionaries.
#[derive(Default)]
pub struct Keyring {
    pub keys: std::collections::HashMap<String, super::seal::UserKey>,
    pub dicts: super::logrec::Dicts,
}

/// Whether a page holds decision records that may name a dictionary.
pub fn names_dicts(page: &StreamPage) -> bool {
    page.iter().any(|(_, f)| text(f, "kind") == "decision" && f.iter().any(|(k, _)| k == "bin"))
}

enum Sealed {
    Clear,
    Erased,
    Open(Vec<u8>),
}

/// Opens an entry sealed with its user's key: raw bytes in `bin` (decision records since
/// issue 9) or base64 in `enc`.
fn open_sealed(fields: &EntryFields, keys: &Keyring, what: &str) -> Result<Sealed, StoreError> {
    let kid = kid_of(fields);
    if kid.is_empty() {
        return Ok(Sealed::Clear);
    }
    let Some(key) = keys.keys.get(&kid) else { return Ok(Sealed::Erased) };
    let opened = match fields.iter().find(|(k, _)| k == "bin") {
        Some((_, raw)) => key.open_raw(raw),
        None => key.open(text(fields, "enc")),
    };
    opened.map(Sealed::Open).ok_or_else(|| StoreError::Corrupt(format!("{what} entry sealed with {kid} does not open")))
}

/// The key ids of a page's entries.
pub fn key_ids(page: &StreamPage) -> Vec<String> {
    let mut ids: Vec<String> = page.iter().map(|(_, f)| kid_of(f)).filter(|k| !k.is_empty()).collect();
    ids.sort();
    ids.dedup();
    ids
}

pub fn decode_event(fields: &[(String, String)]) -> Result<Event, StoreError> {
    let m: BTreeMap<&str, &str> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let get = |k: &str| m.get(k).map(|s| s.to_string()).unwrap_or_default();
    let bad = |k: &str| StoreError::Corrupt(format!("journey log field {k}: {:?}", m.get(k)));
    Ok(Event {
        event_id: get("event_id"),
        user_id: get("user_id"),
        event_type: get("event_type"),
        timestamp: get("ts").parse().map_err(|_| bad("ts"))?,
        channel: get("channel"),
        offer_id: get("offer_id"),
        value: m.get("value").map_or(Ok(0.0), |v| v.parse()).map_err(|_| bad("value"))?,
        properties: match m.get("properties") {
            Some(p) => serde_json::from_str(p).map_err(|_| bad("properties"))?,
            None => Default::default(),
        },
    })
}

/// A recent decision's offers before any outcome, as decision.lua stores them after the id in
/// its member of the user's recent decisions (`id|,o1,o2,|~stage~channel~s1,s2|`): the offers
/// between commas, then `|`, then the decision's stage, channel and segments for the offer
/// counters (outcome.lua appends outcomes after it: `id|,o1,o2,|~stage~channel~|o1:click|`).
pub fn encode_decision_offers(rec: &DecisionRecord) -> String {
    let offers = rec.chosen.iter().fold(",".to_string(), |acc, c| acc + &c.offer_id + ",");
    format!("{offers}|~{}~{}~{}|", rec.stage, rec.channel, rec.segments.join(","))
}

/// A decision-log stream entry: `kind`, `id` and the record, sealed (`kid` and `bin`, or `enc`
/// before issue 9; `DecisionLogEntry::Erased` when its key was erased) or, written before
/// sealing, in `json`. A decision record is `logrec`'s binary encoding or, before it, JSON.
pub fn decode_decision_log_entry(fields: &EntryFields, keys: &Keyring) -> Result<DecisionLogEntry, StoreError> {
    let plain = match open_sealed(fields, keys, "decision log")? {
        Sealed::Clear => text(fields, "json").as_bytes().to_vec(),
        Sealed::Erased => return Ok(DecisionLogEntry::Erased { id: decision_id_of(fields) }),
        Sealed::Open(plain) => plain,
    };
    let parsed = match text(fields, "kind") {
        "decision" => super::logrec::decode(&plain, &decision_id_of(fields), &keys.dicts)
            .map(|d| DecisionLogEntry::Decision(Box::new(d))),
        _ => serde_json::from_slice(&plain).map(DecisionLogEntry::Outcome).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| StoreError::Corrupt(format!("decision log entry: {e}")))
}

/// Adds one field of an experiment-counter hash (`exp|variant|metric` -> number) to `out`
/// when it belongs to `experiment`; fields of other experiments and unknown metrics are skipped.
pub fn add_counter(
    out: &mut BTreeMap<String, VariantCounters>,
    experiment: &str,
    field: &str,
    value: &str,
) -> Result<(), StoreError> {
    let Some(rest) = field.strip_prefix(experiment).and_then(|r| r.strip_prefix('|')) else { return Ok(()) };
    let Some((variant, metric)) = rest.rsplit_once('|') else { return Ok(()) };
    let bad = || StoreError::Corrupt(format!("counter {field}={value}"));
    let int = || value.parse::<u64>().map_err(|_| bad());
    let float = || value.parse::<f64>().map_err(|_| bad());
    let c = out.entry(variant.to_string()).or_default();
    match metric {
        "exposed" => c.exposed += int()?,
        "decisions" => c.decisions += int()?,
        "visitors" => c.visitors += int()?,
        "converters" => c.converters += int()?,
        "revenue" => c.revenue += float()?,
        "revenue_sq" => c.revenue_sq += float()?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_round_trip() {
        let mut s = UserState { stage: Some("retention".into()), stage_since: Some(5), ..Default::default() };
        s.aggregates.event_counts.insert("purchase".into(), 2);
        s.aggregates.monetary_total = 12.5;
        s.aggregates.purchase_count = 2;
        s.aggregates.first_seen = Some(1);
        s.aggregates.last_seen = Some(9);
        s.attributes.insert("age".into(), AttrValue::Num(41.0));
        s.attributes.insert("vip".into(), AttrValue::Bool(true));
        s.attributes.insert("country".into(), AttrValue::Str("FR".into()));
        s.attributes.insert("zip".into(), AttrValue::Str("75001".into()));
        let mut fields: Vec<String> = vec!["v".into(), "3".into()];
        for (k, v) in encode_profile(&s) {
            fields.push(k);
            fields.push(v);
        }
        assert_eq!(decode_profile(fields, vec![]).unwrap(), (3, s));
    }

    proptest::proptest! {
        /// The direct reading of attribute values gives back exactly what the writer stored
        /// (numbers included: serde_json without its `float_roundtrip` feature may be off by
        /// one unit in the last place; Rust's own parsing is exact), and strings that need
        /// JSON escapes as serde_json reads them.
        #[test]
        fn attribute_values_read_as_serde_json_does(
            x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
            text in ".{0,12}",
            b in proptest::bool::ANY,
        ) {
            for v in [AttrValue::Num(x), AttrValue::Str(text.clone()), AttrValue::Bool(b), AttrValue::Str(x.to_string())] {
                let stored = serde_json::to_string(&v).unwrap();
                let direct = decode_attr(&stored);
                if !matches!(v, AttrValue::Num(_)) {
                    proptest::prop_assert_eq!(&direct, &serde_json::from_str::<AttrValue>(&stored).ok());
                }
                proptest::prop_assert_eq!(direct, Some(v));
            }
        }
    }

    #[test]
    fn attribute_values_that_are_not_json_are_refused() {
        for bad in ["", "\"open", "1.2.3", "-", "tru", "\"a\"b\"", "1e400", "-1e400"] {
            assert_eq!(decode_attr(bad), None, "{bad:?}");
        }
    }

    /// The changes turn the hash of `before` into exactly the hash of `after`, for every part
    /// changed, added or removed alone and all at once.
    #[test]
    fn profile_changes_turn_one_hash_into_the_other() {
        let mut base = UserState { stage: Some("consideration".into()), stage_since: Some(5), ..Default::default() };
        let agg = &mut base.aggregates;
        (agg.first_seen, agg.last_seen, agg.last_purchase) = (Some(1), Some(9), Some(8));
        (agg.monetary_total, agg.purchase_count) = (12.5, 2);
        agg.event_counts.insert("page_view".into(), 4);
        agg.daily.insert("page_view".into(), [(100, (2, 0.0))].into());
        agg.last_by_type.insert("page_view".into(), 9);
        base.attributes.insert("age".into(), AttrValue::Num(41.0));
        base.attributes.insert("country".into(), AttrValue::Str("FR".into()));
        base.consent_withdrawn.insert("email".into(), 3);
        let edits: Vec<fn(&mut UserState)> = vec![
            |s| s.stage = Some("conversion".into()),
            |s| s.stage = None,
            |s| s.stage_since = None,
            |s| s.aggregates.first_seen = Some(0),
            |s| s.aggregates.last_seen = None,
            |s| s.aggregates.last_purchase = None,
            |s| s.aggregates.monetary_total = 0.0,
            |s| s.aggregates.monetary_total = 13.25,
            |s| s.aggregates.purchase_count = 0,
            |s| s.aggregates.purchase_count = 3,
            |s| *s.aggregates.event_counts.get_mut("page_view").unwrap() += 1,
            |s| s.aggregates.event_counts.clear(),
            |s| {
                s.aggregates.event_counts.insert("cart".into(), 1);
            },
            |s| {
                s.aggregates.daily.get_mut("page_view").unwrap().insert(101, (1, 2.5));
            },
            |s| s.aggregates.daily.clear(),
            |s| {
                s.aggregates.last_by_type.insert("page_view".into(), 10);
            },
            |s| {
                s.attributes.insert("age".into(), AttrValue::Num(42.0));
            },
            |s| {
                s.attributes.remove("country");
            },
            |s| {
                s.attributes.insert("vip".into(), AttrValue::Bool(true));
            },
            |s| s.consent_withdrawn.clear(),
            |s| {
                s.consent_withdrawn.insert("sms".into(), 4);
            },
        ];
        let hash = |s: &UserState| encode_profile(s).into_iter().collect::<BTreeMap<_, _>>();
        let check = |before: &UserState, after: &UserState| {
            let (set, del) = profile_changes(before, after);
            let mut h = hash(before);
            for f in &del {
                assert!(h.remove(f).is_some(), "{f} deleted but not there");
            }
            for (f, v) in set {
                assert_ne!(h.insert(f.clone(), v.clone()).as_ref(), Some(&v), "{f} set to what it was");
            }
            assert_eq!(h, hash(after));
        };
        let mut all = base.clone();
        for edit in &edits {
            let mut after = base.clone();
            edit(&mut after);
            check(&base, &after);
            check(&after, &base);
            edit(&mut all);
        }
        check(&base, &all);
        check(&all, &base);
        check(&UserState::default(), &base);
        check(&base, &UserState::default());
        assert_eq!(profile_changes(&base, &base), (vec![], vec![]), "no change, nothing written");
    }

    #[test]
    fn a_bad_profile_field_is_corrupt() {
        let fields = vec!["v".to_string(), "1".to_string(), "fs".to_string(), "yesterday".to_string()];
        assert!(matches!(decode_profile(fields, vec![]), Err(StoreError::Corrupt(m)) if m.contains("fs")));
    }

    #[test]
    fn event_round_trip() {
        let e = Event {
            event_id: "e1".into(),
            user_id: "u".into(),
            event_type: "purchase".into(),
            timestamp: 42,
            channel: "web".into(),
            offer_id: "o1".into(),
            value: 9.5,
            properties: [("sku".to_string(), "A-1".to_string())].into(),
        };
        let fields: Vec<(String, String)> = encode_event(&e).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(decode_event(&fields).unwrap(), e);
    }

    #[test]
    fn counters_of_one_experiment_add_up() {
        let mut out = BTreeMap::new();
        for (f, v) in
            [("exp|a|exposed", "2"), ("exp|a|revenue", "1.5"), ("expo|a|exposed", "7"), ("other|a|exposed", "9")]
        {
            add_counter(&mut out, "exp", f, v).unwrap();
        }
        assert_eq!(out["a"], VariantCounters { exposed: 2, revenue: 1.5, ..Default::default() });
        assert_eq!(out.len(), 1);
        assert!(matches!(add_counter(&mut out, "exp", "exp|a|exposed", "x"), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn contacts_and_marks_decode() {
        let contacts = vec!["d1|email|o|1".to_string(), "1000".to_string()];
        let marks = vec!["dismiss:o".to_string(), "5".to_string()];
        let s = decode_contacts(contacts, marks).unwrap();
        assert_eq!(s.contacts[0].offer_id, "o|1", "the offer is the rest of the member");
        assert_eq!(s.dismissed, [("o".to_string(), 5)].into());
        assert!(decode_contacts(vec![], vec!["seen:o".into(), "5".into()]).is_err());
    }
}
