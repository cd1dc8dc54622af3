//! The engine: each use case as one read from the store, pure domain work, one write; one
//! file per use case (`decide`, `events`, `outcomes`, `profiles`, `experiments`, `models`,
//! `reload`), this file the shared parts (errors, the snapshot, write-lock stripes).
//!
//! Handlers call these methods with validated domain values; the engine checks what needs the
//! live configuration (known channels), talks to the store and returns domain results. The
//! configuration lives in an atomically swapped snapshot: a request keeps the snapshot it
//! started with, so a reload never mixes two configurations in one answer.
use crate::config::{Config, ConfigError};
use crate::domain::Millis;
use crate::domain::limits::FieldError;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub mod analytics;
pub mod breaker;
mod commit;
mod decide;
pub mod degraded;
mod events;
mod experiments;
mod models;
mod outcomes;
mod profiles;
mod reload;

pub use decide::{Decision, OfferView};
pub use events::RecordSummary;
pub use profiles::ProfileView;

/// Attempts at an optimistic write before giving up with `Error::Contention`.
const MAX_COMMIT_ATTEMPTS: usize = 32;
/// Stripes of the per-user write lock.
const LOCK_STRIPES: usize = 1024;

/// What a use case can fail with; mapped to a gRPC status in exactly one place
/// (`grpc::status`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Bad input, naming the field.
    #[error("{0}")]
    InvalidArgument(#[from] FieldError),
    /// No such user, decision, experiment or model.
    #[error("{0}")]
    NotFound(String),
    /// The store cannot be reached (or not in time).
    #[error("{0}")]
    Unavailable(String),
    /// The store refused a write: out of memory (nothing written; `RESOURCE_EXHAUSTED`).
    #[error("{0}")]
    OutOfMemory(String),
    /// Optimistic writes of one user kept conflicting.
    #[error("too many concurrent writes for user {0}, retry")]
    Contention(String),
    /// A stored value does not decode: logged, answered without detail (`Decide` degrades).
    #[error("{0}")]
    Corrupt(String),
    /// A bug: logged, answered without detail.
    #[error("{0}")]
    Internal(String),
    /// A reload was refused; the previous configuration keeps serving.
    #[error("config rejected, still serving the previous one: {0}")]
    Config(#[from] ConfigError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Error::Unavailable(m),
            StoreError::OutOfMemory(m) => Error::OutOfMemory(m),
            StoreError::Corrupt(m) => Error::Corrupt(m),
            StoreError::Internal(m) => Error::Internal(m),
        }
    }
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// A configuration in force, with when it was loaded.
pub struct Snapshot {
    /// The configuration (and compiled policy).
    pub config: Config,
    /// When it was loaded.
    pub loaded_at: Millis,
}

/// What `Admin.GetStatus` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// When the process started.
    pub started_at: Millis,
    /// The content hash of the configuration in force.
    pub config_version: String,
    /// Model name -> version in use.
    pub model_versions: BTreeMap<String, String>,
    /// When the configuration was loaded.
    pub config_loaded_at: Millis,
    /// `memory`, `redis` or `redis-cluster`.
    pub store_kind: &'static str,
    /// Why the store does not answer, when it does not: a stable class from
    /// `degraded` (the detail is logged, not shown).
    pub store_error: Option<String>,
    /// The store circuit breaker's state (`closed`, `open`, `half_open`).
    pub store_breaker: &'static str,
}

/// The use cases over one store and a swappable configuration snapshot.
pub struct Engine {
    store: Arc<dyn Store>,
    /// The same store, seen as its breaker (for its state).
    breaker: Arc<breaker::BreakerStore>,
    /// Decisions of every `DecideBatch` call in flight together (`server.limits.batch_decisions`).
    batch_slots: Arc<tokio::sync::Semaphore>,
    batch_slots_size: usize,
    snapshot: ArcSwap<Snapshot>,
    config_path: Option<PathBuf>,
    vars: Vec<(String, String)>,
    started_at: Millis,
    /// Writes of one user from this process take turns, so optimistic retries are only
    /// needed when several servers write the same user at once.
    write_locks: Vec<tokio::sync::Mutex<()>>,
    /// Thompson sampling's posteriors, re-read every `decisions.exploration.refresh_seconds`.
    posteriors: ArcSwap<crate::domain::thompson::Posteriors>,
    /// Seeds of exploration drawn from a fixed sequence instead of the system RNG (simulations
    /// that must be reproducible); `None` in production.
    exploration_seeds: Option<std::sync::atomic::AtomicU64>,
    /// Interactive decisions' writes, gathered into groups (`commit`).
    group_commit: commit::GroupCommit,
}

impl Engine {
    /// `config_path` and `vars` are what `reload` reads again.
    pub fn new(
        store: Arc<dyn Store>,
        config: Config,
        config_path: Option<PathBuf>,
        vars: Vec<(String, String)>,
    ) -> Self {
        let limits = &config.file.server.limits;
        let breaker = Arc::new(breaker::BreakerStore::new(
            store,
            breaker::Breaker::new(
                limits.breaker_failures,
                std::time::Duration::from_millis(limits.breaker_cooldown_ms),
            ),
        ));
        let batch_slots_size = limits.batch_decisions.max(1) as usize;
        decide::BATCH_NICE.store(limits.batch_nice.min(19) as i32, std::sync::atomic::Ordering::Relaxed);
        let batch_slots = Arc::new(tokio::sync::Semaphore::new(batch_slots_size));
        let e = &config.file.decisions.exploration;
        let posteriors =
            ArcSwap::from_pointee(crate::domain::thompson::Posteriors::prior_only((e.prior_alpha, e.prior_beta)));
        let snapshot = ArcSwap::from_pointee(Snapshot { config, loaded_at: now_ms() });
        Self {
            store: breaker.clone(),
            breaker,
            batch_slots,
            batch_slots_size,
            snapshot,
            config_path,
            vars,
            started_at: now_ms(),
            write_locks: (0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            posteriors,
            exploration_seeds: None,
            group_commit: commit::GroupCommit::default(),
        }
    }

    /// Draws exploration seeds from a fixed sequence starting at `seed` (SplitMix64), so a
    /// simulation that decides one request at a time is reproducible. Servers leave this off:
    /// their seeds come from the system RNG.
    pub fn with_exploration_seed(mut self, seed: u64) -> Self {
        self.exploration_seeds = Some(std::sync::atomic::AtomicU64::new(seed));
        self
    }

    /// The next exploration seed.
    fn exploration_seed(&self) -> u64 {
        match &self.exploration_seeds {
            None => rand::random(),
            Some(state) => {
                // SplitMix64: a well-mixed output per step of a counter.
                let mut z = state
                    .fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed)
                    .wrapping_add(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            }
        }
    }

    /// The configuration in force (a request keeps the one it started with).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The store the engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Batch decisions holding a slot of the global bound right now
    /// (at most `server.limits.batch_decisions`).
    pub fn batch_decisions_in_flight(&self) -> usize {
        self.batch_slots_size.saturating_sub(self.batch_slots.available_permits())
    }

    /// The store circuit breaker's state.
    pub fn breaker_state(&self) -> breaker::BreakerState {
        self.breaker.state()
    }

    /// Versions, load times and store health.
    pub async fn status(&self) -> Status {
        let s = self.snapshot();
        Status {
            started_at: self.started_at,
            config_version: s.config.version.clone(),
            model_versions: s.config.policy.models.versions(),
            config_loaded_at: s.loaded_at,
            store_kind: self.store.kind(),
            store_error: self.store.ping().await.err().map(|e| {
                let class = breaker::error_class(&e);
                degraded::warn_limited(class, "store health check failed", &e.to_string());
                class.to_string()
            }),
            store_breaker: self.breaker_state().name(),
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
}
