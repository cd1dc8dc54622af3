//! The store seam: what the engine needs from persistence, with an in-memory and a Redis
//! implementation that pass the same conformance suite (`tests/it/store_suite.rs`).
//!
//! Writes of a user's state are optimistic: `load_user` returns a version, the engine
//! computes the new state in the pure domain, and `commit_user` applies it atomically only if
//! the version is unchanged (otherwise the engine reloads and retries). The commit also marks
//! the applied event ids as seen and appends the events to the journey log, so an
//! acknowledged event is stored exactly once.
use crate::domain::Millis;
use crate::domain::analytics::{Days, Tallies};
use crate::domain::contact::{ContactGuard, ContactState};
use crate::domain::decision::DecisionRecord;
use crate::domain::event::Event;
use crate::domain::experiment::{Happening, VariantCounters};
use crate::domain::funnel::Count;
use crate::domain::outcome::OutcomeRecord;
use crate::domain::profile::{Transition, UserState};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod logrec;
pub mod memory;
pub mod redis;

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached, or did not answer in time: a transient outage the engine
    /// may degrade on.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused a write because it is out of memory (Redis over `maxmemory` with
    /// `noeviction`): nothing of the call was written. Writes answer `RESOURCE_EXHAUSTED`,
    /// `Decide` degrades with `store_oom`.
    #[error("store out of memory: {0}")]
    OutOfMemory(String),
    /// A stored value does not decode (written by another version, or damaged).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store answered with an error that is not an outage (a script error, a key of the
    /// wrong type, a reply that does not parse): a bug or a damaged key, never degraded on.
    #[error("store error: {0}")]
    Internal(String),
}

/// What one read of a user returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadedUser {
    /// Opaque version token of the stored profile; 0 when there is none. Every commit sets a
    /// fresh random token, so a token never comes back after a delete (no ABA).
    pub version: u64,
    /// The stored profile (default for a user never stored).
    pub state: UserState,
    /// For each event id asked about: already stored (a duplicate)?
    pub seen: Vec<bool>,
    /// Contacts since the time asked for, and dismiss/accept marks (empty when not asked).
    pub contacts: ContactState,
}

/// A user's new state plus what to append, applied atomically by `commit_user`.
#[derive(Debug, Clone, Copy)]
pub struct UserWrite<'a> {
    /// The new state; its `transitions` are ignored (the store appends `new_transitions`).
    pub state: &'a UserState,
    /// The state as loaded with the expected version, when the caller has it: the Redis store
    /// then writes only the profile fields that differ from it (the version check makes the
    /// stored profile exactly this state). None rewrites the whole profile.
    pub before: Option<&'a UserState>,
    /// Transitions added since the load, appended to the stage history.
    pub new_transitions: &'a [Transition],
    /// Events newly applied: their ids are remembered and they go to the journey log.
    pub events: &'a [Event],
    /// The commit time (ms since the epoch): when the event ids were seen.
    pub now: Millis,
    /// The version token the commit stores (random, non-zero).
    pub new_version: u64,
    /// Visits and conversions among the events, attributed to the user's experiment variants.
    pub attribution: Attribution<'a>,
    /// Funnel counters the events cause (`domain::funnel::apply_events`), applied with them.
    pub counts: &'a [Count],
}

/// What to attribute to experiments, and the windows that apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attribution<'a> {
    /// (experiment id, attribution window) of every experiment, the global holdout included.
    pub windows: &'a [(String, Millis)],
    /// Visits and conversions to attribute.
    pub happenings: &'a [Happening],
}

/// A fresh random version token.
pub fn new_version() -> u64 {
    rand::random::<u64>() | 1
}

/// How an outcome relates to the user's recent decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeLink {
    /// Recorded against a recent decision of the user.
    Linked,
    /// The same outcome for the same offer of the same decision was already recorded.
    Duplicate,
    /// The decision is not among the user's recent decisions (unknown or too old).
    UnknownDecision,
    /// The decision did not show this offer.
    OfferNotInDecision,
}

/// What became of a decision's write (`Store::log_decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionWrite {
    /// Recorded: contacts, log entry, exposures.
    Logged,
    /// A concurrent decision used up a cap or contact limit: nothing written (decide again).
    GuardFailed,
    /// The store ran the write after its `write_by` time: nothing written (the caller was
    /// answered with a fallback, so nothing of this decision may be recorded).
    Late,
}

impl DecisionWrite {
    /// Whether the decision was recorded.
    pub fn logged(self) -> bool {
        self == DecisionWrite::Logged
    }
}

/// One decision to write (`Store::log_decisions`): as `log_decision`'s arguments.
#[derive(Debug, Clone, Copy)]
pub struct DecisionToWrite<'a> {
    /// The decision.
    pub record: &'a DecisionRecord,
    /// What must still hold for it to be written.
    pub guard: &'a ContactGuard,
    /// The store refuses (writes nothing of this decision) when its clock is past this (ms
    /// since the epoch).
    pub write_by: Option<Millis>,
}

/// One entry of the decision log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecisionLogEntry {
    /// A decision.
    Decision(Box<DecisionRecord>),
    /// An outcome of a decision.
    Outcome(OutcomeRecord),
    /// A decision or outcome of a user erased since (`DeleteProfile`): its content is no
    /// longer readable; `id` is the decision's id.
    Erased {
        /// The decision id.
        id: String,
    },
}

/// Retention settings every store honours.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Approximate maximum length of each journey-log stream.
    pub journey_log_maxlen: u64,
    /// Approximate maximum length of each decision-log stream.
    pub decision_log_maxlen: u64,
    /// How long an event id is remembered for de-duplication, in milliseconds.
    pub dedup_window_ms: Millis,
    /// At most this many event ids are remembered per user (the oldest go first).
    pub dedup_max_per_user: u64,
    /// Recent decisions kept per user so outcomes can be linked to them.
    pub recent_decisions_per_user: u64,
    /// Days the funnel and offer counters of a day are kept.
    pub counter_retention_days: u32,
    /// Archive mode (`redis.archive`): the log streams are trimmed by `touchpoint archive`
    /// only, after archiving; a write that would pass a cap is refused instead.
    pub archive: bool,
}

impl Retention {
    /// The retention settings of a `[redis]` config section.
    pub fn from_config(r: &crate::config::RedisConfig) -> Self {
        Self {
            journey_log_maxlen: r.journey_log_maxlen,
            decision_log_maxlen: r.decision_log_maxlen,
            dedup_window_ms: r.dedup_window_ms(),
            dedup_max_per_user: r.dedup_max_per_user,
            recent_decisions_per_user: r.recent_decisions_per_user,
            counter_retention_days: r.counter_retention_days,
            archive: r.archive,
        }
    }
}

/// What the engine needs from persistence; every implementation passes the conformance
/// suite (`tests/it/store_suite.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `memory`, `redis` or `redis-cluster`.
    fn kind(&self) -> &'static str;

    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Profile, stage, stage history, version, which of `event_ids` are stored and, when
    /// `contacts_since` is given, the contact history since then: one round trip.
    async fn load_user(
        &self,
        user_id: &str,
        event_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<LoadedUser, StoreError>;

    /// As `load_user`, without the stage history (`state.transitions` is empty): what
    /// deciding and recording events read (they use the current stage and its start, kept
    /// with the profile). A store that keeps the history apart skips reading it.
    async fn load_user_without_history(
        &self,
        user_id: &str,
        event_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<LoadedUser, StoreError> {
        let mut loaded = self.load_user(user_id, event_ids, contacts_since).await?;
        loaded.state.transitions.clear();
        Ok(loaded)
    }

    /// `load_user_without_history` of many users with no event ids (a campaign send), in
    /// order: one round trip where the store can. The outer error is the round trip's; a
    /// user whose data does not decode gets their own error.
    async fn load_users_without_history(
        &self,
        user_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<Vec<Result<LoadedUser, StoreError>>, StoreError> {
        let mut loaded = Vec::with_capacity(user_ids.len());
        for u in user_ids {
            loaded.push(self.load_user_without_history(u, &[], contacts_since).await);
        }
        Ok(loaded)
    }

    /// Applies `write` if the user's version is still `expected_version`; false on a conflict.
    async fn commit_user(&self, user_id: &str, expected_version: u64, write: UserWrite<'_>)
    -> Result<bool, StoreError>;

    /// Erases every record of the user (profile and consent, history, dedup markers, recent
    /// decisions, contacts, dismiss/accept marks, exposures) and makes the user's log entries
    /// unreadable: afterwards the journey-log export skips them and the decision-log export
    /// returns them as `DecisionLogEntry::Erased` (the Redis store destroys the key they are
    /// sealed with). Returns how many keys were removed (the sealing key counts as one).
    async fn delete_user(&self, user_id: &str) -> Result<u64, StoreError>;

    /// Atomically: unless the store's clock is past `write_by` (ms since the epoch: the
    /// decision's budget ran out, so its caller may already have a fallback; a store whose
    /// write completes within the call, like the memory store, needs no check) and if `guard`
    /// still holds (no cap or contact limit would be exceeded), records
    /// the guard's offers as contacts, appends the decision to the decision log, remembers it
    /// for outcome linking and records the user's exposure to the record's experiment
    /// variants (first exposure time, unique-user counters). Nothing is written when it
    /// answers `GuardFailed` or `Late`.
    async fn log_decision(
        &self,
        record: &DecisionRecord,
        guard: &ContactGuard,
        write_by: Option<Millis>,
    ) -> Result<DecisionWrite, StoreError>;

    /// `log_decision` of many decisions (a campaign send's chunk, or interactive decisions
    /// made together), each atomic with its own guard and `write_by`, applied in order (a
    /// decision's guard counts the contacts of an earlier one of the same user), answered in
    /// order: one round trip where the store can (group commit). On an error, decisions
    /// before the failing one may be recorded.
    async fn log_decisions(&self, decisions: &[DecisionToWrite<'_>]) -> Result<Vec<DecisionWrite>, StoreError> {
        let mut writes = Vec::with_capacity(decisions.len());
        for d in decisions {
            writes.push(self.log_decision(d.record, d.guard, d.write_by).await?);
        }
        Ok(writes)
    }

    /// Whether `log_decisions` of many decisions costs the store less than each alone (a
    /// single Redis node: one script call), so that the engine gathers interactive
    /// decisions made at the same time into one write.
    fn group_commit(&self) -> bool {
        false
    }

    /// Appends an outcome if its decision is one of the user's recent decisions and this
    /// outcome kind was not yet recorded for that offer of that decision. A dismiss or an
    /// accept also marks the offer for cooldowns; a click or a conversion is attributed to the
    /// user's experiment variants (`windows`).
    async fn log_outcome(
        &self,
        record: &OutcomeRecord,
        windows: &[(String, Millis)],
    ) -> Result<OutcomeLink, StoreError>;

    /// The funnel and offer counters (`domain::funnel`) of `days`, and the in-stage-now
    /// counters, summed over every shard. Counters are written atomically with the event,
    /// decision or outcome that causes them: `commit_user` applies `UserWrite::counts`,
    /// `log_decision` counts `funnel::decision_counts`, a linked `log_outcome` counts
    /// `funnel::outcome_counts` in its decision's stage and channel, and `delete_user` takes
    /// the user out of the in-stage counter. A day's counters are kept
    /// `Retention::counter_retention_days` days.
    async fn tallies(&self, days: Days) -> Result<Tallies, StoreError>;

    /// Per-variant counters of an experiment, summed over every shard.
    async fn experiment_counters(&self, experiment: &str) -> Result<BTreeMap<String, VariantCounters>, StoreError>;

    /// Stores a model artifact (JSON) under its name and version.
    async fn put_model(&self, name: &str, version: &str, artifact: &str) -> Result<(), StoreError>;

    /// A model artifact (JSON) by name and version; None when not stored.
    async fn get_model(&self, name: &str, version: &str) -> Result<Option<String>, StoreError>;

    /// The version the `current` pointer of a model names.
    async fn current_model(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Points `current` at `version`, remembering the previous pointer for rollback.
    /// Re-pointing to the version already current is a no-op (nothing is remembered).
    async fn set_current_model(&self, name: &str, version: &str) -> Result<(), StoreError>;

    /// Moves `current` back to the previous version and returns it (None: nothing to go back to).
    async fn rollback_model(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Every readable journey-log entry (not those of erased users), oldest first within each
    /// shard, handed to `sink`.
    async fn export_journey_log(&self, sink: &mut (dyn FnMut(Event) + Send)) -> Result<u64, StoreError>;

    /// Every decision-log entry, oldest first within each shard, handed to `sink`.
    async fn export_decision_log(&self, sink: &mut (dyn FnMut(DecisionLogEntry) + Send)) -> Result<u64, StoreError>;
}

/// Opens the store a config names: `memory://` or Redis (single node or cluster).
pub async fn open(cfg: &crate::config::RedisConfig) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let retention = Retention::from_config(cfg);
    if cfg.url.starts_with("memory://") {
        Ok(std::sync::Arc::new(memory::MemoryStore::new(retention)))
    } else {
        Ok(std::sync::Arc::new(redis::RedisStore::connect(cfg, retention).await?))
    }
}
