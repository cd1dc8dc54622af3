//! The engine: each use case as one read from the store, pure domain work, one write.
//!
//! Handlers call these methods with validated domain values; the engine checks what needs the
//! live configuration (known channels), talks to the store and returns domain results. The
//! configuration lives in an atomically swapped snapshot: a request keeps the snapshot it
//! started with, so a reload never mixes two configurations in one answer.
use crate::config::{Config, ConfigError};
use crate::domain::Millis;
use crate::domain::decision::{self, DecisionQuery, DecisionRecord, OutcomeRecord};
use crate::domain::event::Event;
use crate::domain::limits::{FieldError, MAX_ATTRIBUTES_PER_PROFILE};
use crate::domain::profile::{AttrValue, Transition, UserState};
use crate::store::{OutcomeLink, Store, StoreError, UserWrite, new_version};
use arc_swap::ArcSwap;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// Attempts at an optimistic write before giving up with `Error::Contention`.
const MAX_COMMIT_ATTEMPTS: usize = 32;
/// Users of one `RecordEvents` call written concurrently.
const WRITE_CONCURRENCY: usize = 64;
/// Stripes of the per-user write lock.
const LOCK_STRIPES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(#[from] FieldError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("too many concurrent writes for user {0}, retry")]
    Contention(String),
    #[error("{0}")]
    Internal(String),
    #[error("config rejected, still serving the previous one: {0}")]
    Config(#[from] ConfigError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Error::Unavailable(m),
            StoreError::Corrupt(m) => Error::Internal(m),
        }
    }
}

pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// A configuration in force, with when it was loaded.
pub struct Snapshot {
    pub config: Config,
    pub loaded_at: Millis,
}

/// A chosen offer, resolved against the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferView {
    pub offer_id: String,
    pub name: String,
    pub content_ref: String,
    pub channel: String,
    pub score: f64,
    pub selection_probability: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub record: DecisionRecord,
    pub offers: Vec<OfferView>,
    pub explain: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordSummary {
    pub accepted: u32,
    pub duplicates: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProfileView {
    pub user_id: String,
    pub stage: String,
    pub lapsed: bool,
    pub state: UserState,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub started_at: Millis,
    pub config_version: String,
    pub config_loaded_at: Millis,
    pub store_kind: &'static str,
    pub store_error: Option<String>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    snapshot: ArcSwap<Snapshot>,
    config_path: Option<PathBuf>,
    vars: Vec<(String, String)>,
    started_at: Millis,
    /// Writes of one user from this process take turns, so optimistic retries are only
    /// needed when several servers write the same user at once.
    write_locks: Vec<tokio::sync::Mutex<()>>,
}

impl Engine {
    /// `config_path` and `vars` are what `reload` reads again.
    pub fn new(
        store: Arc<dyn Store>,
        config: Config,
        config_path: Option<PathBuf>,
        vars: Vec<(String, String)>,
    ) -> Self {
        let snapshot = ArcSwap::from_pointee(Snapshot { config, loaded_at: now_ms() });
        Self {
            store,
            snapshot,
            config_path,
            vars,
            started_at: now_ms(),
            write_locks: (0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Re-reads the config file and swaps it in; in-flight requests finish on the old one.
    /// Store and listener settings take effect only at restart.
    pub fn reload(&self) -> Result<Arc<Snapshot>, ConfigError> {
        let Some(path) = &self.config_path else {
            return Ok(self.snapshot());
        };
        let config = Config::load(path, self.vars.clone())?;
        self.snapshot.store(Arc::new(Snapshot { config, loaded_at: now_ms() }));
        Ok(self.snapshot())
    }

    pub async fn status(&self) -> Status {
        let s = self.snapshot();
        Status {
            started_at: self.started_at,
            config_version: s.config.version.clone(),
            config_loaded_at: s.loaded_at,
            store_kind: self.store.kind(),
            store_error: self.store.ping().await.err().map(|e| e.to_string()),
        }
    }

    async fn lock_user(&self, user: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let stripe = BuildHasherDefault::<DefaultHasher>::default().hash_one(user) as usize % LOCK_STRIPES;
        self.write_locks[stripe].lock().await
    }

    /// Waits a little before retrying a conflicting write, more after each conflict.
    async fn backoff(attempt: usize) {
        use rand::Rng;
        let micros = rand::thread_rng().gen_range(0..=200 * (attempt as u64 + 1));
        tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
    }

    fn check_channel(config: &Config, field: &str, channel: &str) -> Result<(), Error> {
        if config.file.decisions.channels.iter().any(|c| c == channel) {
            Ok(())
        } else {
            let known = config.file.decisions.channels.join(", ");
            Err(FieldError::new(field, format!("unknown channel {channel:?} (known: {known})")).into())
        }
    }

    /// One decision: one read, ranking, one write to the decision log.
    pub async fn decide(&self, mut query: DecisionQuery) -> Result<Decision, Error> {
        let snap = self.snapshot();
        let config = &snap.config;
        Self::check_channel(config, "channel", &query.channel)?;
        if query.limit == 0 {
            query.limit = config.file.decisions.default_limit as usize;
        }
        let loaded = self.store.load_user(&query.user_id, &[]).await?;
        let now = now_ms();
        let stage = config.journey.stage_of(&loaded.state).to_string();
        let lapsed = config.journey.is_lapsed(&loaded.state, now);
        let ranking = decision::rank(&config.catalogue, &stage, &query, now);
        let record = DecisionRecord {
            decision_id: uuid::Uuid::now_v7().to_string(),
            user_id: query.user_id.clone(),
            at: now,
            channel: query.channel.clone(),
            placement: query.placement.clone(),
            stage,
            lapsed,
            config_version: config.version.clone(),
            degraded: false,
            chosen: ranking.chosen,
            candidates: ranking.candidates,
        };
        self.store.log_decision(&record).await?;
        let offers = record
            .chosen
            .iter()
            .filter_map(|c| {
                let o = config.catalogue.get(&c.offer_id)?;
                Some(OfferView {
                    offer_id: o.id.clone(),
                    name: o.name.clone(),
                    content_ref: o.content_ref.clone(),
                    channel: query.channel.clone(),
                    score: c.score,
                    selection_probability: c.selection_probability,
                })
            })
            .collect();
        Ok(Decision { record, offers, explain: query.explain })
    }

    /// Applies events: per user, one read, the journey engine, one atomic conditional write.
    /// Events already stored (by `event_id`, per user) are counted as duplicates and skipped.
    /// If the store fails part-way, the call fails: users written before the failure keep
    /// their events, and a retry of the whole call reports those as duplicates.
    pub async fn record_events(&self, events: Vec<Event>) -> Result<RecordSummary, Error> {
        let snap = self.snapshot();
        for (i, e) in events.iter().enumerate() {
            if !e.channel.is_empty() {
                Self::check_channel(&snap.config, &format!("events[{i}].channel"), &e.channel)?;
            }
        }
        let mut summary = RecordSummary::default();
        let mut by_user: HashMap<String, Vec<Event>> = HashMap::new();
        let mut ids: HashSet<(String, String)> = HashSet::new();
        for e in events {
            if ids.insert((e.user_id.clone(), e.event_id.clone())) {
                by_user.entry(e.user_id.clone()).or_default().push(e);
            } else {
                summary.duplicates += 1;
            }
        }
        let journey = &snap.config.journey;
        let mut results = futures::stream::iter(by_user)
            .map(|(user, evs)| async move { self.apply_user_events(journey, &user, evs).await })
            .buffer_unordered(WRITE_CONCURRENCY);
        let mut first_error = None;
        while let Some(r) = results.next().await {
            match r {
                Ok((accepted, duplicates)) => {
                    summary.accepted += accepted;
                    summary.duplicates += duplicates;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    async fn apply_user_events(
        &self,
        journey: &crate::domain::journey::JourneyDef,
        user: &str,
        events: Vec<Event>,
    ) -> Result<(u32, u32), Error> {
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let _turn = self.lock_user(user).await;
        for attempt in 0..MAX_COMMIT_ATTEMPTS {
            if attempt > 0 {
                Self::backoff(attempt).await;
            }
            let loaded = self.store.load_user(user, &ids).await?;
            let fresh: Vec<&Event> =
                events.iter().zip(&loaded.seen).filter(|(_, seen)| !**seen).map(|(e, _)| e).collect();
            let duplicates = (events.len() - fresh.len()) as u32;
            if fresh.is_empty() {
                return Ok((0, duplicates));
            }
            let mut state = loaded.state;
            let transitions: Vec<Transition> = journey.apply_events(&mut state, &fresh);
            let applied: Vec<Event> = fresh.iter().map(|e| (*e).clone()).collect();
            let write = UserWrite {
                state: &state,
                new_transitions: &transitions,
                events: &applied,
                now: now_ms(),
                new_version: new_version(),
            };
            if self.store.commit_user(user, loaded.version, write).await? {
                return Ok((applied.len() as u32, duplicates));
            }
        }
        Err(Error::Contention(user.to_string()))
    }

    /// Appends an outcome to the decision log, linked to one of the user's recent decisions.
    /// Returns false when the same outcome was already recorded (a retry): acknowledged, not
    /// appended again.
    pub async fn record_outcome(&self, record: OutcomeRecord) -> Result<bool, Error> {
        match self.store.log_outcome(&record).await? {
            OutcomeLink::Linked => Ok(true),
            OutcomeLink::Duplicate => Ok(false),
            OutcomeLink::UnknownDecision => Err(Error::NotFound(format!(
                "decision {} is not among the recent decisions of user {}",
                record.decision_id, record.user_id
            ))),
            OutcomeLink::OfferNotInDecision => Err(FieldError::new(
                "offer_id",
                format!("offer {} was not part of decision {}", record.offer_id, record.decision_id),
            )
            .into()),
        }
    }

    async fn load_existing(&self, user: &str) -> Result<(u64, UserState), Error> {
        let loaded = self.store.load_user(user, &[]).await?;
        if loaded.version == 0 {
            return Err(Error::NotFound(format!("user {user} has no profile")));
        }
        Ok((loaded.version, loaded.state))
    }

    fn view(&self, user: &str, state: UserState) -> ProfileView {
        let snap = self.snapshot();
        let journey = &snap.config.journey;
        ProfileView {
            user_id: user.to_string(),
            stage: journey.stage_of(&state).to_string(),
            lapsed: journey.is_lapsed(&state, now_ms()),
            state,
        }
    }

    pub async fn get_profile(&self, user: &str) -> Result<ProfileView, Error> {
        let (_, state) = self.load_existing(user).await?;
        Ok(self.view(user, state))
    }

    /// Merges attributes (and removes the named ones) with an optimistic write.
    pub async fn put_profile(
        &self,
        user: &str,
        set: BTreeMap<String, AttrValue>,
        remove: Vec<String>,
    ) -> Result<ProfileView, Error> {
        let _turn = self.lock_user(user).await;
        for attempt in 0..MAX_COMMIT_ATTEMPTS {
            if attempt > 0 {
                Self::backoff(attempt).await;
            }
            let loaded = self.store.load_user(user, &[]).await?;
            let mut state = loaded.state;
            for name in &remove {
                state.attributes.remove(name);
            }
            state.attributes.extend(set.clone());
            if state.attributes.len() > MAX_ATTRIBUTES_PER_PROFILE {
                return Err(FieldError::new(
                    "attributes",
                    format!(
                        "the profile would hold {} attributes, at most {MAX_ATTRIBUTES_PER_PROFILE}",
                        state.attributes.len()
                    ),
                )
                .into());
            }
            let write = UserWrite {
                state: &state,
                new_transitions: &[],
                events: &[],
                now: now_ms(),
                new_version: new_version(),
            };
            if self.store.commit_user(user, loaded.version, write).await? {
                return Ok(self.view(user, state));
            }
        }
        Err(Error::Contention(user.to_string()))
    }

    pub async fn delete_profile(&self, user: &str) -> Result<u64, Error> {
        let _turn = self.lock_user(user).await;
        Ok(self.store.delete_user(user).await?)
    }

    pub async fn get_journey(&self, user: &str) -> Result<ProfileView, Error> {
        let (_, state) = self.load_existing(user).await?;
        Ok(self.view(user, state))
    }
}
