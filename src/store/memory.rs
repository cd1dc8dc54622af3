//! The in-memory store: the embedded default (demo) and a fast store for unit tests.
//! It mirrors the Redis store's records one for one, so both report the same key counts.
use super::logrec::{self, DictCache, DictEntry, Dicts};
use super::{DecisionLogEntry, DecisionWrite, LoadedUser, OutcomeLink, Retention, Store, StoreError, UserWrite};
use crate::domain::Millis;
use crate::domain::analytics::{Days, Tallies};
use crate::domain::contact::{Contact, ContactGuard, ContactState};
use crate::domain::decision::DecisionRecord;
use crate::domain::event::Event;
use crate::domain::experiment::{Exposure, Happening, VariantCounters, attribute};
use crate::domain::funnel::{self, Count, counter_expiry};
use crate::domain::outcome::{OutcomeKind, OutcomeRecord};
use crate::domain::profile::UserState;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct User {
    version: u64,
    state: UserState,
    /// event id -> time it was stored
    seen: HashMap<String, Millis>,
    /// (time, decision id) -> offer ids and the outcomes recorded; the first key is the oldest
    decisions: BTreeMap<(Millis, String), Decided>,
    /// contacts and dismiss/accept marks
    contacts: ContactState,
    /// experiment id -> exposure
    exposures: BTreeMap<String, Exposure>,
    /// Whether a log entry of the user was written (the Redis store then holds the user's
    /// sealing key, one more key to erase).
    sealed: bool,
}

#[derive(Default)]
struct Decided {
    offers: Vec<String>,
    /// The decision's stage and channel (offer counters of its outcomes).
    stage: String,
    channel: String,
    segments: Vec<String>,
    outcomes: HashSet<(String, &'static str)>,
}

/// A decision-log entry as kept: a decision in the Redis store's compact encoding
/// (`logrec::encode`, ~0.4 KB where the record itself takes ~5 KB of heap), decoded on export.
enum Logged {
    /// `dict`: the dictionary the record names, shared with the entries naming the same one
    /// (so a dictionary lives as long as an entry names it).
    Decision {
        user_id: String,
        decision_id: String,
        record: Box<[u8]>,
        dict: Arc<DictEntry>,
    },
    Entry(DecisionLogEntry),
}

#[derive(Default)]
struct Registry {
    versions: HashMap<String, String>,
    current: Option<String>,
    history: Vec<String>,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, User>,
    /// (experiment, variant) -> counters
    counters: BTreeMap<(String, String), VariantCounters>,
    models: HashMap<String, Registry>,
    journey_log: VecDeque<Event>,
    decision_log: VecDeque<Logged>,
    /// Funnel and offer counters (what the Redis store keeps in `kd:<day>` and `kn`).
    tallies: Tallies,
}

impl Inner {
    /// Applies counters, and forgets the days the Redis store's hashes would have expired.
    fn count(&mut self, counts: &[Count], retention_days: u32) {
        for c in counts {
            self.tallies.add(c.day, &c.field, c.by);
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis);
        self.tallies.days.retain(|&day, _| counter_expiry(day, retention_days) > now);
    }
}

/// A store in process memory: nothing survives a restart.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    retention: Retention,
    /// The records' dictionaries, built once per (config, stage, channel, placement).
    dicts: DictCache,
}

/// The embedded store keeps at most this many entries of each log (a decision's entry is its
/// compact record, ~0.4 KB, plus ~0.1 KB of ids; an event ~1 KB): ~100 MB at most.
pub const MEMORY_LOG_CAP: u64 = 100_000;

impl MemoryStore {
    /// An empty store; each log keeps at most `MEMORY_LOG_CAP` entries, whatever `retention` says.
    pub fn new(mut retention: Retention) -> Self {
        retention.journey_log_maxlen = retention.journey_log_maxlen.min(MEMORY_LOG_CAP);
        retention.decision_log_maxlen = retention.decision_log_maxlen.min(MEMORY_LOG_CAP);
        Self { inner: Mutex::new(Inner::default()), retention, dicts: DictCache::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied write (writes are
        // computed before the lock is taken), so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Attributes happenings to every experiment the user was exposed to (the domain's rule).
fn attribute_all(
    exposures: &mut BTreeMap<String, Exposure>,
    counters: &mut BTreeMap<(String, String), VariantCounters>,
    windows: &[(String, Millis)],
    happenings: &[Happening],
) {
    for (experiment, window) in windows {
        let Some(x) = exposures.get_mut(experiment) else { continue };
        let c = counters.entry((experiment.clone(), x.variant.clone())).or_default();
        for h in happenings {
            attribute(x, c, *window, *h);
        }
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, item: T, max: u64) {
    q.push_back(item);
    while q.len() as u64 > max.max(1) {
        q.pop_front();
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn load_user(
        &self,
        user_id: &str,
        event_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<LoadedUser, StoreError> {
        let inner = self.lock();
        Ok(match inner.users.get(user_id) {
            Some(u) => LoadedUser {
                version: u.version,
                state: u.state.clone(),
                seen: event_ids.iter().map(|id| u.seen.contains_key(*id)).collect(),
                contacts: match contacts_since {
                    Some(since) => ContactState {
                        contacts: u.contacts.contacts.iter().filter(|c| c.at >= since).cloned().collect(),
                        ..u.contacts.clone()
                    },
                    None => ContactState::default(),
                },
            },
            None => LoadedUser { seen: vec![false; event_ids.len()], ..Default::default() },
        })
    }

    async fn commit_user(&self, user_id: &str, expected_version: u64, w: UserWrite<'_>) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let user = inner.users.entry(user_id.to_string()).or_default();
        if user.version != expected_version {
            return Ok(false);
        }
        // The Redis store writes only what differs from `before`, so a caller must pass the
        // state of the version it expects: checked here, where tests run every caller.
        debug_assert!(
            w.before.is_none_or(|b| UserState { transitions: vec![], ..b.clone() }
                == UserState { transitions: vec![], ..user.state.clone() }),
            "UserWrite::before is not the state of the expected version"
        );
        user.version = w.new_version;
        let mut history = std::mem::take(&mut user.state.transitions);
        history.extend_from_slice(w.new_transitions);
        user.state = UserState { transitions: history, ..w.state.clone() };
        user.sealed |= !w.events.is_empty();
        for e in w.events {
            user.seen.insert(e.event_id.clone(), w.now);
            push_bounded(&mut inner.journey_log, e.clone(), self.retention.journey_log_maxlen);
        }
        attribute_all(&mut user.exposures, &mut inner.counters, w.attribution.windows, w.attribution.happenings);
        let cutoff = w.now - self.retention.dedup_window_ms;
        user.seen.retain(|_, t| *t >= cutoff);
        if user.seen.len() as u64 > self.retention.dedup_max_per_user {
            let mut by_age: Vec<(Millis, String)> = user.seen.iter().map(|(k, t)| (*t, k.clone())).collect();
            by_age.sort();
            let excess = user.seen.len() - self.retention.dedup_max_per_user as usize;
            for (_, k) in by_age.into_iter().take(excess) {
                user.seen.remove(&k);
            }
        }
        inner.count(w.counts, self.retention.counter_retention_days);
        Ok(true)
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let Some(u) = inner.users.remove(user_id) else {
            return Ok(0);
        };
        // Out of the in-stage counter (erase.lua does the same).
        let stage = u.state.stage.clone().or_else(|| u.state.aggregates.first_seen.map(|_| String::new()));
        if let Some(stage) = stage {
            inner.tallies.add(None, &funnel::in_stage(&stage), -1.0);
        }
        // What crypto-shredding does to the Redis streams: the user's entries can no longer be
        // read. Journey-log entries are not exported; decision-log entries export as `Erased`.
        if u.sealed {
            inner.journey_log.retain(|e| e.user_id != user_id);
            for entry in inner.decision_log.iter_mut() {
                let id = match entry {
                    Logged::Decision { user_id: u, decision_id, .. } if u == user_id => decision_id.clone(),
                    Logged::Entry(DecisionLogEntry::Outcome(o)) if o.user_id == user_id => o.decision_id.clone(),
                    _ => continue,
                };
                *entry = Logged::Entry(DecisionLogEntry::Erased { id });
            }
        }
        // The Redis layout: profile hash, stage-history list, dedup set, recent decisions.
        let keys =
            [u.version > 0, !u.state.transitions.is_empty(), !u.seen.is_empty()].into_iter().filter(|&b| b).count()
                + usize::from(!u.decisions.is_empty())
                + usize::from(!u.contacts.contacts.is_empty())
                + usize::from(!u.contacts.dismissed.is_empty() || !u.contacts.accepted.is_empty())
                + usize::from(!u.exposures.is_empty())
                + usize::from(u.sealed);
        Ok(keys as u64)
    }

    async fn log_decision(
        &self,
        record: &DecisionRecord,
        guard: &ContactGuard,
        write_by: Option<Millis>,
    ) -> Result<DecisionWrite, StoreError> {
        // `write_by` needs no check here: this write completes within the call, so it can never
        // land after its caller gave up on it (the engine returns what it answers).
        let _ = write_by;
        let dict = self.dicts.dict(record);
        let encoded = logrec::encode(record, &dict).into_boxed_slice();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let user = inner.users.entry(record.user_id.clone()).or_default();
        if !guard.holds(&user.contacts) {
            return Ok(DecisionWrite::GuardFailed);
        }
        for offer in &guard.offers {
            user.contacts.contacts.push(Contact {
                at: record.at,
                decision_id: record.decision_id.clone(),
                channel: guard.channel.clone(),
                offer_id: offer.clone(),
            });
        }
        if !guard.offers.is_empty() {
            user.contacts.contacts.retain(|c| c.at >= guard.keep_since);
        }
        for (experiment, variant) in &record.assignments {
            let counters = inner.counters.entry((experiment.clone(), variant.clone())).or_default();
            counters.decisions += 1;
            if !user.exposures.contains_key(experiment) {
                user.exposures.insert(
                    experiment.clone(),
                    Exposure { variant: variant.clone(), first: record.at, ..Default::default() },
                );
                counters.exposed += 1;
            }
        }
        user.sealed = true;
        let offers = record.chosen.iter().map(|c| c.offer_id.clone()).collect();
        let decided = Decided {
            offers,
            stage: record.stage.clone(),
            channel: record.channel.clone(),
            segments: record.segments.clone(),
            outcomes: HashSet::new(),
        };
        user.decisions.insert((record.at, record.decision_id.clone()), decided);
        while user.decisions.len() as u64 > self.retention.recent_decisions_per_user {
            user.decisions.pop_first();
        }
        let entry = Logged::Decision {
            user_id: record.user_id.clone(),
            decision_id: record.decision_id.clone(),
            record: encoded,
            dict,
        };
        push_bounded(&mut inner.decision_log, entry, self.retention.decision_log_maxlen);
        inner.count(&funnel::decision_counts(record), self.retention.counter_retention_days);
        Ok(DecisionWrite::Logged)
    }

    async fn log_outcome(
        &self,
        record: &OutcomeRecord,
        windows: &[(String, Millis)],
    ) -> Result<OutcomeLink, StoreError> {
        let mut inner = self.lock();
        let decided = inner
            .users
            .get_mut(&record.user_id)
            .and_then(|u| u.decisions.iter_mut().find(|((_, id), _)| *id == record.decision_id).map(|(_, d)| d));
        let mut counts = Vec::new();
        let link = match decided {
            None => OutcomeLink::UnknownDecision,
            Some(d) if !d.offers.contains(&record.offer_id) => OutcomeLink::OfferNotInDecision,
            Some(d) => {
                if d.outcomes.insert((record.offer_id.clone(), record.outcome.as_str())) {
                    let r = record;
                    let scope = funnel::DecisionScope { stage: &d.stage, channel: &d.channel, segments: &d.segments };
                    counts = funnel::outcome_counts(&r.offer_id, scope, r.outcome, r.value, r.at);
                    OutcomeLink::Linked
                } else {
                    OutcomeLink::Duplicate
                }
            }
        };
        inner.count(&counts, self.retention.counter_retention_days);
        if link == OutcomeLink::Linked {
            let inner = &mut *inner;
            if let Some(user) = inner.users.get_mut(&record.user_id) {
                user.sealed = true;
                let happening = match record.outcome {
                    OutcomeKind::Click => Some(Happening::Visit { at: record.at }),
                    OutcomeKind::Conversion => Some(Happening::Conversion { at: record.at, value: record.value }),
                    _ => None,
                };
                attribute_all(&mut user.exposures, &mut inner.counters, windows, happening.as_slice());
                let marks = match record.outcome {
                    OutcomeKind::Dismiss => Some(&mut user.contacts.dismissed),
                    OutcomeKind::Accept => Some(&mut user.contacts.accepted),
                    _ => None,
                };
                if let Some(marks) = marks {
                    let t = marks.entry(record.offer_id.clone()).or_insert(record.at);
                    *t = (*t).max(record.at);
                }
            }
            push_bounded(
                &mut inner.decision_log,
                Logged::Entry(DecisionLogEntry::Outcome(record.clone())),
                self.retention.decision_log_maxlen,
            );
        }
        Ok(link)
    }

    async fn tallies(&self, days: Days) -> Result<Tallies, StoreError> {
        let inner = self.lock();
        let t = &inner.tallies;
        Ok(Tallies {
            days: t.days.range(days.from..=days.to).map(|(d, f)| (*d, f.clone())).collect(),
            current: t.current.clone(),
        })
    }

    async fn experiment_counters(&self, experiment: &str) -> Result<BTreeMap<String, VariantCounters>, StoreError> {
        Ok(self
            .lock()
            .counters
            .iter()
            .filter(|((e, _), _)| e == experiment)
            .map(|((_, v), c)| (v.clone(), *c))
            .collect())
    }

    async fn put_model(&self, name: &str, version: &str, artifact: &str) -> Result<(), StoreError> {
        self.lock()
            .models
            .entry(name.to_string())
            .or_default()
            .versions
            .insert(version.to_string(), artifact.to_string());
        Ok(())
    }

    async fn get_model(&self, name: &str, version: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().models.get(name).and_then(|r| r.versions.get(version).cloned()))
    }

    async fn current_model(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().models.get(name).and_then(|r| r.current.clone()))
    }

    async fn set_current_model(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let r = inner.models.entry(name.to_string()).or_default();
        // Re-pointing to the version already current is a no-op: a history entry for it would
        // make the next rollback "return" to where the pointer already is.
        if r.current.as_deref() == Some(version) {
            return Ok(());
        }
        if let Some(prev) = r.current.replace(version.to_string()) {
            r.history.push(prev);
        }
        Ok(())
    }

    async fn rollback_model(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut inner = self.lock();
        let Some(r) = inner.models.get_mut(name) else { return Ok(None) };
        let prev = r.history.pop();
        if let Some(p) = &prev {
            r.current = Some(p.clone());
        }
        Ok(prev)
    }

    async fn export_journey_log(&self, sink: &mut (dyn FnMut(Event) + Send)) -> Result<u64, StoreError> {
        let events: Vec<Event> = self.lock().journey_log.iter().cloned().collect();
        let n = events.len() as u64;
        events.into_iter().for_each(sink);
        Ok(n)
    }

    async fn export_decision_log(&self, sink: &mut (dyn FnMut(DecisionLogEntry) + Send)) -> Result<u64, StoreError> {
        let entries = {
            let inner = self.lock();
            let mut dicts = Dicts::new();
            for e in &inner.decision_log {
                if let Logged::Decision { dict, .. } = e {
                    dicts.entry(dict.id.clone()).or_insert_with(|| dict.dict.clone());
                }
            }
            inner
                .decision_log
                .iter()
                .map(|e| match e {
                    Logged::Decision { decision_id, record, .. } => logrec::decode(record, decision_id, &dicts)
                        .map(|r| DecisionLogEntry::Decision(Box::new(r)))
                        .map_err(|e| StoreError::Corrupt(format!("decision {decision_id}: {e}"))),
                    Logged::Entry(e) => Ok(e.clone()),
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let n = entries.len() as u64;
        entries.into_iter().for_each(sink);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(decision_log_maxlen: u64) -> Retention {
        Retention {
            journey_log_maxlen: 10,
            decision_log_maxlen,
            dedup_window_ms: 86_400_000,
            dedup_max_per_user: 10,
            recent_decisions_per_user: 3,
            counter_retention_days: 1,
            archive: false,
        }
    }

    /// Placements come from requests: a dictionary per placement. An entry holds its own,
    /// so what the log still names decodes after the process's dictionary cache has been
    /// cleared (past `DICTS_REMEMBERED` dictionaries), and those of entries gone are freed.
    #[tokio::test]
    async fn each_entry_keeps_its_dictionary() {
        let s = MemoryStore::new(retention(10));
        let n = 5000;
        let mut first = None;
        for i in 0..n {
            let record = DecisionRecord {
                decision_id: format!("d{i:05}"),
                user_id: format!("u{}", i % 7),
                channel: "web".into(),
                placement: format!("p{}", i % 4500),
                ..Default::default()
            };
            let guard = ContactGuard { channel: "web".into(), ..Default::default() };
            assert_eq!(s.log_decision(&record, &guard, None).await.unwrap(), DecisionWrite::Logged);
            if i == 0 {
                first = Some(Arc::downgrade(&s.dicts.dict(&record)));
            }
        }
        assert!(first.unwrap().upgrade().is_none(), "the first entry's dictionary is freed with it");
        let mut placements = vec![];
        s.export_decision_log(&mut |e| {
            if let DecisionLogEntry::Decision(d) = e {
                placements.push(d.placement);
            }
        })
        .await
        .unwrap();
        let expected: Vec<String> = (n - 10..n).map(|i| format!("p{}", i % 4500)).collect();
        assert_eq!(placements, expected);
    }
}
