//! The engine: each use case as one read from the store, pure domain work, one write.
//!
//! Handlers call these methods with validated domain values; the engine checks what needs the
//! live configuration (known channels), talks to the store and returns domain results. The
//! configuration lives in an atomically swapped snapshot: a request keeps the snapshot it
//! started with, so a reload never mixes two configurations in one answer.
use crate::config::{Config, ConfigError};
use crate::domain::Millis;
use crate::domain::decision::{self, Chosen, DecisionInputs, DecisionQuery, DecisionRecord, OutcomeRecord};
use crate::domain::event::Event;
use crate::domain::experiment::{Assignment, ExperimentReport, GLOBAL_HOLDOUT, Happening};
use crate::domain::limits::{FieldError, MAX_ATTRIBUTES_PER_PROFILE};
use crate::domain::model::{BoundModel, ModelArtifact};
use crate::domain::policy::Policy;
use crate::domain::profile::{AttrValue, Transition, UserState};
use crate::store::{Attribution, OutcomeLink, Store, StoreError, UserWrite, new_version};
use arc_swap::ArcSwap;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Attempts at an optimistic write before giving up with `Error::Contention`.
const MAX_COMMIT_ATTEMPTS: usize = 32;
/// Users of one `DecideBatch` in flight at once.
const BATCH_CONCURRENCY: usize = 256;
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
            StoreError::Internal(m) => Error::Internal(m),
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
    /// Why the answer is degraded (store unavailable or too slow), when it is.
    pub degraded_reason: Option<String>,
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
    pub model_versions: BTreeMap<String, String>,
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

    /// Follows the model registry: for each model named in `models.registry` whose `current`
    /// pointer names another version than the one in use, loads that artifact and swaps in a
    /// snapshot with it. Returns the names switched. A bad artifact is logged and skipped.
    pub async fn refresh_models(&self) -> Result<Vec<String>, Error> {
        let snap = self.snapshot();
        let mut updates = Vec::new();
        for name in &snap.config.file.models.registry {
            let Some(version) = self.store.current_model(name).await? else { continue };
            if snap.config.policy.models.get(name).is_some_and(|m| m.version() == version) {
                continue;
            }
            let Some(json) = self.store.get_model(name, &version).await? else {
                tracing::error!(model = %name, %version, "registry points at a version it does not hold");
                continue;
            };
            let bound =
                serde_json::from_str::<ModelArtifact>(&json).map_err(|e| e.to_string()).and_then(BoundModel::bind);
            match bound {
                Ok(m) => updates.push((name.clone(), Arc::new(m))),
                Err(e) => tracing::error!(model = %name, %version, error = %e, "cannot use the published model"),
            }
        }
        if updates.is_empty() {
            return Ok(vec![]);
        }
        self.snapshot.rcu(|old| {
            let mut policy = (*old.config.policy).clone();
            for (name, model) in &updates {
                policy.models.set(name, model.clone());
            }
            let config = Config { policy: Arc::new(policy), ..old.config.clone() };
            Snapshot { config, loaded_at: old.loaded_at }
        });
        let names: Vec<String> = updates
            .into_iter()
            .map(|(n, m)| {
                tracing::info!(model = %n, version = %m.version(), "switched to the published model");
                n
            })
            .collect();
        Ok(names)
    }

    /// Checks the registry every `models.poll_seconds` until the engine is dropped.
    pub fn spawn_model_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(engine) = weak.upgrade() else { return };
                if !engine.snapshot().config.file.models.registry.is_empty()
                    && let Err(e) = engine.refresh_models().await
                {
                    tracing::warn!(error = %e, "model registry check failed");
                }
                let period = Duration::from_secs_f64(engine.snapshot().config.file.models.poll_seconds);
                drop(engine);
                tokio::time::sleep(period).await;
            }
        })
    }

    pub async fn status(&self) -> Status {
        let s = self.snapshot();
        Status {
            started_at: self.started_at,
            config_version: s.config.version.clone(),
            model_versions: s.config.policy.models.versions(),
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
        if config.policy.channels.iter().any(|c| c == channel) {
            Ok(())
        } else {
            let known = config.policy.channels.join(", ");
            Err(FieldError::new(field, format!("unknown channel {channel:?} (known: {known})")).into())
        }
    }

    /// How long a decision may wait for the store: the configured `decisions.deadline_ms`,
    /// or less when the caller's own deadline is shorter (minus a margin to answer in time).
    fn budget(snap: &Snapshot, deadline: Option<Duration>) -> Duration {
        let configured = Duration::from_millis(snap.config.file.decisions.deadline_ms);
        match deadline {
            Some(d) => {
                let margin = (d / 5).max(Duration::from_millis(2));
                configured.min(d.saturating_sub(margin)).max(Duration::from_micros(500))
            }
            None => configured,
        }
    }

    /// One decision: one read, the pure decision, one atomic write (decision log, contacts).
    /// When the store is unreachable or slower than the budget, the answer comes from the
    /// configured fallback with `degraded` set, in time, instead of an error.
    pub async fn decide(&self, query: DecisionQuery, deadline: Option<Duration>) -> Result<Decision, Error> {
        let snap = self.snapshot();
        Self::check_channel(&snap.config, "channel", &query.channel)?;
        let budget = Self::budget(&snap, deadline);
        match tokio::time::timeout(budget, self.decide_online(&snap, query.clone())).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(Error::Unavailable(reason))) => {
                Ok(Self::fallback(&snap, query, format!("store unavailable: {reason}")))
            }
            Err(_) => Ok(Self::fallback(&snap, query, format!("store slower than the {budget:?} budget"))),
            Ok(Err(e)) => Err(e),
        }
    }

    /// The whole flow against the store, no fallback (a campaign send wants errors, not
    /// fallbacks). Re-decides when a concurrent decision used up a cap or contact limit.
    async fn decide_online(&self, snap: &Snapshot, mut query: DecisionQuery) -> Result<Decision, Error> {
        let policy = &snap.config.policy;
        if query.limit == 0 {
            query.limit = policy.default_limit as usize;
        }
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let now = now_ms();
            let loaded = self.store.load_user(&query.user_id, &[], Some(now - policy.longest_window())).await?;
            let seed = rand::random::<u64>();
            let input = DecisionInputs { query: &query, state: &loaded.state, contacts: &loaded.contacts, now, seed };
            let outcome = decision::decide(policy, &input);
            let guard = decision::guard(policy, &query, &outcome, now);
            let state = UserState { transitions: vec![], ..loaded.state };
            let record = DecisionRecord {
                decision_id: uuid::Uuid::now_v7().to_string(),
                user_id: query.user_id.clone(),
                at: now,
                channel: query.channel.clone(),
                placement: query.placement.clone(),
                limit: query.limit,
                context: query.context.clone(),
                stage: outcome.stage,
                lapsed: outcome.lapsed,
                segments: outcome.segments,
                config_version: snap.config.version.clone(),
                model_versions: outcome.model_versions,
                features: DecisionRecord::features_by_name(&outcome.features),
                scores: outcome.scores,
                degraded: false,
                seed,
                chosen: outcome.chosen,
                candidates: outcome.candidates,
                suppression: outcome.suppression,
                state,
                contacts: loaded.contacts,
                assignments: outcome
                    .assignments
                    .iter()
                    .filter_map(|a| Some((a.experiment_id.clone(), a.variant.clone()?)))
                    .collect(),
            };
            if self.store.log_decision(&record, &guard).await? {
                return Ok(Self::decision_view(policy, record, query.explain, None));
            }
        }
        Err(Error::Contention(query.user_id))
    }

    fn decision_view(
        policy: &Policy,
        record: DecisionRecord,
        explain: bool,
        degraded_reason: Option<String>,
    ) -> Decision {
        let offers = record
            .chosen
            .iter()
            .filter_map(|c| {
                let o = policy.catalogue.get(&c.offer_id)?;
                Some(OfferView {
                    offer_id: o.id.clone(),
                    name: o.name.clone(),
                    content_ref: o.content_ref.clone(),
                    channel: record.channel.clone(),
                    score: c.score,
                    selection_probability: c.selection_probability,
                })
            })
            .collect();
        Decision { record, offers, explain, degraded_reason }
    }

    /// The degraded answer: the configured fallback offers of the channel, nothing read or written.
    fn fallback(snap: &Snapshot, query: DecisionQuery, reason: String) -> Decision {
        metrics::counter!("touchpoint_decisions_degraded_total").increment(1);
        tracing::warn!(user_id = %query.user_id, %reason, "degraded decision");
        let policy = &snap.config.policy;
        let limit = if query.limit == 0 { policy.default_limit as usize } else { query.limit };
        let fallback = policy.fallback(&query.channel);
        let held_out = policy.held_out_by_hash(&query.user_id, &query.channel, now_ms());
        let chosen: Vec<Chosen> = fallback
            .into_iter()
            .filter(|_| held_out.is_none())
            .flat_map(|f| &f.offers)
            .filter_map(|id| policy.catalogue.get(id))
            .take(limit)
            .map(|o| Chosen { offer_id: o.id.clone(), score: o.priority, selection_probability: 1.0 })
            .collect();
        let record = DecisionRecord {
            decision_id: uuid::Uuid::now_v7().to_string(),
            user_id: query.user_id,
            at: now_ms(),
            channel: query.channel,
            placement: query.placement,
            limit,
            context: query.context,
            stage: fallback.and_then(|f| f.stage.clone()).unwrap_or_default(),
            lapsed: false,
            segments: vec![],
            config_version: snap.config.version.clone(),
            model_versions: policy.models.versions(),
            features: BTreeMap::new(),
            scores: BTreeMap::new(),
            degraded: true,
            seed: 0,
            suppression: chosen.is_empty().then(|| {
                held_out.clone().unwrap_or_else(|| "degraded: no fallback offer for this channel".to_string())
            }),
            chosen,
            candidates: vec![],
            state: UserState::default(),
            contacts: Default::default(),
            assignments: BTreeMap::new(),
        };
        Self::decision_view(policy, record, query.explain, Some(reason))
    }

    /// A user's assignment in every experiment (or one), with the reasons.
    pub async fn get_assignment(&self, user: &str, experiment: Option<&str>) -> Result<Vec<Assignment>, Error> {
        let snap = self.snapshot();
        let policy = &snap.config.policy;
        if let Some(e) = experiment
            && e != GLOBAL_HOLDOUT
            && !policy.experiments.iter().any(|x| x.id == e)
        {
            return Err(Error::NotFound(format!("no experiment {e:?}")));
        }
        let loaded = self.store.load_user(user, &[], None).await?;
        let all = decision::assignments(policy, user, &loaded.state, now_ms());
        Ok(all.into_iter().filter(|a| experiment.is_none_or(|e| a.experiment_id == e)).collect())
    }

    /// Per-variant exposure, visits, conversions, revenue, lifts and the SRM check.
    pub async fn experiment_results(&self, id: &str) -> Result<ExperimentReport, Error> {
        let snap = self.snapshot();
        let policy = &snap.config.policy;
        let (control, weights): (String, Vec<(String, f64)>) = if id == GLOBAL_HOLDOUT {
            let h = policy.holdout.as_ref().ok_or_else(|| Error::NotFound("no global holdout is configured".into()))?;
            ("holdout".into(), vec![("holdout".into(), h.share), ("treated".into(), 1.0 - h.share)])
        } else {
            let e = policy
                .experiments
                .iter()
                .find(|e| e.id == id)
                .ok_or_else(|| Error::NotFound(format!("no experiment {id:?}")))?;
            (e.control.clone(), e.variants.iter().map(|v| (v.name.clone(), v.weight)).collect())
        };
        let counters = self.store.experiment_counters(id).await?;
        Ok(crate::domain::experiment::report(id, &control, &weights, &counters))
    }

    /// Finds a logged decision by id (scans the decision log: an offline tool, not a hot path).
    pub async fn find_decision(&self, decision_id: &str) -> Result<Option<DecisionRecord>, Error> {
        let mut found = None;
        self.store
            .export_decision_log(&mut |e| {
                if let crate::store::DecisionLogEntry::Decision(d) = e
                    && d.decision_id == decision_id
                {
                    found = Some(*d);
                }
            })
            .await?;
        Ok(found)
    }

    /// Decisions for many users of one channel (a campaign send), in input order, all under
    /// one configuration snapshot. Reads and writes of up to `BATCH_CONCURRENCY` users are in
    /// flight at once, which the multiplexed Redis connection pipelines.
    pub fn decide_batch(
        self: &Arc<Self>,
        template: DecisionQuery,
        users: Vec<String>,
    ) -> Result<impl futures::Stream<Item = Result<Decision, Error>> + Send + 'static, Error> {
        let snap = self.snapshot();
        Self::check_channel(&snap.config, "channel", &template.channel)?;
        let engine = self.clone();
        Ok(futures::stream::iter(users)
            .map(move |user_id| {
                let engine = engine.clone();
                let snap = snap.clone();
                let query = DecisionQuery { user_id, ..template.clone() };
                async move { engine.decide_online(&snap, query).await }
            })
            .buffered(BATCH_CONCURRENCY))
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
        let policy = &snap.config.policy;
        let windows = policy.attribution_windows();
        let windows = &windows;
        let mut results = futures::stream::iter(by_user)
            .map(|(user, evs)| async move { self.apply_user_events(policy, windows, &user, evs).await })
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
        policy: &Policy,
        windows: &[(String, Millis)],
        user: &str,
        events: Vec<Event>,
    ) -> Result<(u32, u32), Error> {
        let journey = &policy.journey;
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let _turn = self.lock_user(user).await;
        for attempt in 0..MAX_COMMIT_ATTEMPTS {
            if attempt > 0 {
                Self::backoff(attempt).await;
            }
            let loaded = self.store.load_user(user, &ids, None).await?;
            let fresh: Vec<&Event> =
                events.iter().zip(&loaded.seen).filter(|(_, seen)| !**seen).map(|(e, _)| e).collect();
            let duplicates = (events.len() - fresh.len()) as u32;
            if fresh.is_empty() {
                return Ok((0, duplicates));
            }
            let mut state = loaded.state;
            let transitions: Vec<Transition> = journey.apply_events(&mut state, &fresh);
            let applied: Vec<Event> = fresh.iter().map(|e| (*e).clone()).collect();
            // Visits and purchases among the new events count for the user's experiments.
            let happenings: Vec<Happening> = applied
                .iter()
                .filter_map(|e| {
                    if e.event_type == journey.purchase_event {
                        Some(Happening::Conversion { at: e.timestamp, value: e.value })
                    } else if policy.visit_events.contains(&e.event_type) {
                        Some(Happening::Visit { at: e.timestamp })
                    } else {
                        None
                    }
                })
                .collect();
            let write = UserWrite {
                state: &state,
                new_transitions: &transitions,
                events: &applied,
                now: now_ms(),
                new_version: new_version(),
                attribution: Attribution { windows, happenings: &happenings },
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
        let windows = self.snapshot().config.policy.attribution_windows();
        match self.store.log_outcome(&record, &windows).await? {
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
        let loaded = self.store.load_user(user, &[], None).await?;
        if loaded.version == 0 {
            return Err(Error::NotFound(format!("user {user} has no profile")));
        }
        Ok((loaded.version, loaded.state))
    }

    fn view(&self, user: &str, state: UserState) -> ProfileView {
        let snap = self.snapshot();
        let journey = &snap.config.policy.journey;
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
            let loaded = self.store.load_user(user, &[], None).await?;
            let mut state = loaded.state;
            for name in &remove {
                state.attributes.remove(name);
            }
            if let Some(name) = set.keys().find(|k| decision::RESERVED_PROFILE_NAMES.contains(&k.as_str())) {
                return Err(
                    FieldError::new(format!("attributes[{name:?}]"), "is the name of an aggregate rules read").into()
                );
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
                attribution: Attribution::default(),
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
