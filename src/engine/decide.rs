//! Deciding: one user (`decide`, with the fallback within the budget), a campaign send
//! (`decide_batch`), and finding a logged decision for replay.
use super::{Engine, Error, MAX_COMMIT_ATTEMPTS, Snapshot, degraded, now_ms};
use crate::domain::contact::ContactGuard;
use crate::domain::decision::{self, Chosen, DecisionInputs, DecisionQuery, DecisionRecord, DropReason};
use crate::domain::policy::Policy;
use crate::domain::profile::UserState;
use crate::store::{DecisionToWrite, DecisionWrite, LoadedUser};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Users of one `DecideBatch` waiting for or holding a slot of the global bound
/// (`server.limits.batch_decisions`) at once.
const BATCH_CONCURRENCY: usize = 256;

/// Users a campaign send reads together, decides one after the other and writes together
/// (one round trip each way: `Store::load_users_without_history`, `Store::log_decisions`),
/// at most: a chunk is half the global bound (`server.limits.batch_decisions`), so that two
/// chunks overlap (one decides while the other waits for Redis), and at most this many, so
/// that one chunk's script keeps Redis busy for well under a millisecond. Issue 9: one user
/// at a time spent a fifth of the CPU waking tasks and threads per round trip.
const BATCH_CHUNK: usize = 32;

/// The nice value of the batch runtime's threads (`server.limits.batch_nice`, set by
/// `Engine::new` before the first batch; 0 is the default priority, 19 the lowest). At 10 the
/// kernel gives a busy interactive thread about 9 times a batch thread's share of a contended
/// core, and a batch thread the whole core when nothing else wants it.
pub(super) static BATCH_NICE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(10);

/// The runtime campaign sends (`DecideBatch`) run their decisions on: as many threads as
/// cores, each at a lower CPU priority (`BATCH_NICE`), so that on a busy machine the kernel
/// runs interactive calls (and Redis) first, while an idle machine still gives batches every
/// core. Issue 9: with batch work on the same threads, 8 concurrent 5,000-user sends doubled
/// the interactive p99. One runtime for the process, never shut down.
fn batch_runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
                .thread_name("tp-batch")
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                .expect("the batch runtime starts")
        })
        .handle()
}

/// Lowers the calling thread's CPU priority to `BATCH_NICE` (Linux: the nice value is per
/// thread). Best effort: where it is refused, batch threads run at normal priority.
fn lower_priority() {
    let nice = BATCH_NICE.load(std::sync::atomic::Ordering::Relaxed);
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
    }
}

/// A decision's budget: when the engine stops waiting for the read (`until`), and the same
/// instant on the wall clock (`wall`, ms since the epoch) after which the store refuses the write.
#[derive(Debug, Clone, Copy)]
struct WriteBy {
    until: tokio::time::Instant,
    wall: crate::domain::Millis,
    budget: Duration,
}

/// A chosen offer, resolved against the catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferView {
    /// The offer.
    pub offer_id: String,
    /// Its display name.
    pub name: String,
    /// Where the caller finds the content.
    pub content_ref: String,
    /// The channel it is for.
    pub channel: String,
    /// Its priority.
    pub score: f64,
    /// The probability of this pick at its rank.
    pub selection_probability: f64,
}

/// A decision as answered: the logged record and the resolved offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What is (or would be, when degraded) logged.
    pub record: DecisionRecord,
    /// The chosen offers resolved against the catalogue, in rank order.
    pub offers: Vec<OfferView>,
    /// Whether the caller asked for the candidates' reasons.
    pub explain: bool,
    /// Why the answer is degraded, as a stable code from `degraded`, when it is.
    pub degraded_reason: Option<String>,
}

impl Engine {
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
    ///
    /// The budget covers the read and the computation. Once the write is sent the engine
    /// waits for its answer (up to the store's command timeout), and the write carries the
    /// budget's end as a wall-clock deadline that the store checks against its own clock
    /// before writing anything: a write that runs late is refused, so a caller never gets a
    /// fallback for a decision whose contacts, exposures or log entry were recorded.
    pub async fn decide(&self, query: DecisionQuery, deadline: Option<Duration>) -> Result<Decision, Error> {
        let snap = self.snapshot();
        Self::check_channel(&snap.config, "channel", &query.channel)?;
        let budget = Self::budget(&snap, deadline);
        let by =
            WriteBy { until: tokio::time::Instant::now() + budget, wall: now_ms() + budget.as_millis() as i64, budget };
        match self.decide_online(&snap, query.clone(), Some(by)).await {
            Ok(d) => Ok(d),
            Err(Error::Unavailable(detail)) => {
                Ok(Self::fallback(&snap, query, degraded::classify_unavailable(&detail), &detail))
            }
            Err(Error::OutOfMemory(detail)) => Ok(Self::fallback(&snap, query, degraded::STORE_OOM, &detail)),
            // A damaged profile must not make the user's every answer fail: serve the fallback.
            Err(Error::Corrupt(detail)) => Ok(Self::fallback(&snap, query, degraded::STORE_CORRUPT, &detail)),
            Err(e) => Err(e),
        }
    }

    /// The whole flow against the store, no fallback (a campaign send wants errors, not
    /// fallbacks, and passes no `by`). Re-decides when a concurrent decision used up a cap or
    /// contact limit. With `by`, the read must answer within the budget and the write is
    /// refused by the store if it runs after the budget (both: `Error::Unavailable`, timed out).
    async fn decide_online(
        &self,
        snap: &Snapshot,
        mut query: DecisionQuery,
        by: Option<WriteBy>,
    ) -> Result<Decision, Error> {
        let policy = &snap.config.policy;
        if query.limit == 0 {
            query.limit = policy.default_limit as usize;
        }
        let late = |what: &str| {
            let budget = by.map(|b| b.budget).unwrap_or_default();
            Error::Unavailable(format!("store timed out: {what} (budget {budget:?}); nothing recorded"))
        };
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let now = now_ms();
            let read = self.store.load_user_without_history(&query.user_id, &[], Some(now - policy.longest_window()));
            let loaded = match by {
                Some(b) => {
                    tokio::time::timeout_at(b.until, read).await.map_err(|_| late("no answer to the read"))??
                }
                None => read.await?,
            };
            let (record, guard) = self.decided(snap, &query, loaded, now);
            // Not under the budget's timeout: once sent, the write's answer is awaited (the
            // store's command timeout bounds it), and the store itself refuses a late write.
            // Interactive decisions (with a budget) are written in groups; a campaign send's
            // decision decided again here is written alone.
            let (record, written) = match by {
                Some(b) => self.write_decision(record, guard, b.wall).await?,
                None => {
                    let written = self.store.log_decision(&record, &guard, None).await?;
                    (record, written)
                }
            };
            match written {
                DecisionWrite::Logged => return Ok(Self::decision_view(policy, record, query.explain, None)),
                DecisionWrite::GuardFailed => continue,
                DecisionWrite::Late => return Err(late("the write reached the store after the budget")),
            }
        }
        Err(Error::Contention(query.user_id))
    }

    /// The decision for a user as read at `now` (pure but for the exploration seed and the
    /// posteriors), and the guard its write must still pass.
    fn decided(
        &self,
        snap: &Snapshot,
        query: &DecisionQuery,
        loaded: LoadedUser,
        now: crate::domain::Millis,
    ) -> (DecisionRecord, ContactGuard) {
        let policy = &snap.config.policy;
        let seed = self.exploration_seed();
        let posteriors = self.posteriors();
        let input = DecisionInputs {
            query,
            state: &loaded.state,
            contacts: &loaded.contacts,
            now,
            seed,
            posteriors: Some(&posteriors),
        };
        let decided = decision::decide(policy, &input);
        let guard = decision::guard(policy, query, &decided, now);
        // Logged: what the policy read, so the entry is bounded by the config.
        let mut state = loaded.state;
        policy.keep_attributes_read(&mut state.attributes);
        let record = DecisionRecord {
            decision_id: decision_id_at(now),
            user_id: query.user_id.clone(),
            at: now,
            channel: query.channel.clone(),
            placement: query.placement.clone(),
            limit: query.limit,
            context: query.context.clone(),
            stage: decided.stage,
            lapsed: decided.lapsed,
            segments: decided.segments,
            config_version: snap.config.version.clone(),
            model_versions: decided.model_versions,
            features: DecisionRecord::all_features_by_name(
                &decided.features,
                &policy.features,
                &decided.extra_features,
            ),
            scores: decided.scores,
            degraded: false,
            seed,
            chosen: decided.chosen,
            candidates: decided.candidates,
            suppression: decided.suppression,
            state,
            contacts: loaded.contacts,
            assignments: decided
                .assignments
                .iter()
                .filter_map(|a| Some((a.experiment_id.clone(), a.variant.clone()?)))
                .collect(),
        };
        (record, guard)
    }

    /// The answer for a record; counts suppressions by reason code
    /// (`touchpoint_decisions_suppressed_total{reason}`).
    fn decision_view(
        policy: &Policy,
        record: DecisionRecord,
        explain: bool,
        degraded_reason: Option<String>,
    ) -> Decision {
        if let Some(reason) = &record.suppression {
            // By stable code only: bounded label values, whatever the ids in the message.
            metrics::counter!("touchpoint_decisions_suppressed_total", "reason" => reason.code()).increment(1);
        }
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
    /// `reason` is the stable code callers see; `detail` goes only to the (rate-limited) log.
    fn fallback(snap: &Snapshot, query: DecisionQuery, reason: &'static str, detail: &str) -> Decision {
        metrics::counter!("touchpoint_decisions_degraded_total", "reason" => reason).increment(1);
        degraded::warn_limited(reason, "degraded decision", detail);
        let policy = &snap.config.policy;
        let limit = if query.limit == 0 { policy.default_limit as usize } else { query.limit };
        let fallback = policy.fallback(&query.channel);
        let held_out = decision::held_out_by_hash(policy, &query.user_id, &query.channel, now_ms());
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
            suppression: chosen.is_empty().then(|| held_out.clone().unwrap_or(DropReason::NoFallbackOffer)),
            chosen,
            candidates: vec![],
            state: UserState::default(),
            contacts: Default::default(),
            assignments: BTreeMap::new(),
        };
        Self::decision_view(policy, record, query.explain, Some(reason.to_string()))
    }

    /// Finds a logged decision by id (scans the decision log: an offline tool, not a hot path).
    /// A decision of a user erased since is `NotFound`, saying so.
    pub async fn find_decision(&self, decision_id: &str) -> Result<Option<DecisionRecord>, Error> {
        use crate::store::DecisionLogEntry;
        let (mut found, mut erased) = (None, false);
        self.store
            .export_decision_log(&mut |e| match e {
                DecisionLogEntry::Decision(d) if d.decision_id == decision_id => found = Some(*d),
                DecisionLogEntry::Erased { id } if id == decision_id => erased = true,
                _ => {}
            })
            .await?;
        if found.is_none() && erased {
            return Err(Error::NotFound(format!("decision {decision_id} is erased: its user was deleted")));
        }
        Ok(found)
    }

    /// Decisions for many users of one channel (a campaign send), in input order, all under
    /// one configuration snapshot. Users go in chunks (`BATCH_CHUNK`): read together,
    /// decided, written together; each chunk holds a slot of the engine-wide batch bound
    /// (`server.limits.batch_decisions`, shared fairly by every batch call, first come first
    /// served) per user while it reads and writes. Interactive decisions never wait for these
    /// slots, and batch decisions run on the low-priority batch runtime (`batch_runtime`).
    pub fn decide_batch(
        self: &Arc<Self>,
        mut template: DecisionQuery,
        users: Vec<String>,
    ) -> Result<impl futures::Stream<Item = Result<Decision, Error>> + Send + 'static, Error> {
        let snap = self.snapshot();
        Self::check_channel(&snap.config, "channel", &template.channel)?;
        if template.limit == 0 {
            template.limit = snap.config.policy.default_limit as usize;
        }
        let engine = self.clone();
        let chunk = (self.batch_slots_size / 2).clamp(1, BATCH_CHUNK);
        let chunks: Vec<Vec<String>> = users.chunks(chunk).map(<[String]>::to_vec).collect();
        let template = Arc::new(template);
        Ok(futures::stream::iter(chunks)
            .map(move |users| {
                let (engine, snap, template) = (engine.clone(), snap.clone(), template.clone());
                async move {
                    let n = users.len();
                    let slots = match engine.batch_slots.clone().acquire_many_owned(n as u32).await {
                        Ok(s) => s,
                        Err(_) => return Self::each(n, &Error::Internal("the batch semaphore is never closed".into())),
                    };
                    // Each chunk is its own task on the low-priority batch runtime, so the
                    // kernel runs interactive calls first on a busy machine.
                    let task = batch_runtime().spawn(async move {
                        let _slots = slots;
                        engine.decide_chunk(&snap, &template, users).await
                    });
                    AbortOnDrop(task).await.unwrap_or_else(|e| Self::each(n, &e))
                }
            })
            .buffered((BATCH_CONCURRENCY.min(self.batch_slots_size) / chunk).max(1))
            .flat_map(futures::stream::iter))
    }

    /// One chunk of a campaign send: one read of all its users, the decisions, one write of
    /// them all (`Store::log_decisions`: each still atomic with its own guard). A decision
    /// whose guard no longer holds (a concurrent decision used up a cap) is decided again
    /// alone. A failed read or write fails the users it was for.
    async fn decide_chunk(
        &self,
        snap: &Snapshot,
        template: &DecisionQuery,
        users: Vec<String>,
    ) -> Vec<Result<Decision, Error>> {
        let policy = &snap.config.policy;
        let now = now_ms();
        let ids: Vec<&str> = users.iter().map(String::as_str).collect();
        let loaded = match self.store.load_users_without_history(&ids, Some(now - policy.longest_window())).await {
            Ok(l) => l,
            Err(e) => return Self::each(users.len(), &e.into()),
        };
        let mut out: Vec<Option<Result<Decision, Error>>> = Vec::with_capacity(users.len());
        let mut decided = vec![];
        for (i, (user_id, l)) in users.into_iter().zip(loaded).enumerate() {
            let query = DecisionQuery { user_id, ..template.clone() };
            match l {
                Ok(l) => {
                    out.push(None);
                    let (record, guard) = self.decided(snap, &query, l, now);
                    decided.push((i, query, record, guard));
                }
                Err(e) => out.push(Some(Err(e.into()))),
            }
        }
        let writes: Vec<DecisionToWrite<'_>> =
            decided.iter().map(|(_, _, record, guard)| DecisionToWrite { record, guard, write_by: None }).collect();
        let writes = self.store.log_decisions(&writes).await;
        match writes {
            Ok(writes) => {
                for ((i, query, record, _), w) in decided.into_iter().zip(writes) {
                    out[i] = Some(match w {
                        DecisionWrite::Logged => Ok(Self::decision_view(policy, record, query.explain, None)),
                        DecisionWrite::GuardFailed => self.decide_online(snap, query, None).await,
                        DecisionWrite::Late => Err(Error::Internal("a write without a deadline ran late".into())),
                    });
                }
            }
            Err(e) => {
                let e = Error::from(e);
                for (i, ..) in decided {
                    out[i] = Some(Err(e.clone()));
                }
            }
        }
        out.into_iter()
            .map(|d| d.unwrap_or_else(|| Err(Error::Internal("a user of the chunk was skipped".into()))))
            .collect()
    }

    /// The same failure for each of `n` users.
    fn each(n: usize, e: &Error) -> Vec<Result<Decision, Error>> {
        vec![Err(e.clone()); n]
    }
}

/// A spawned chunk of decisions that is cancelled when its batch is dropped (the caller went
/// away).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, Error>;
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|e| Error::Internal(format!("batch decision task failed: {e}"))))
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A UUID v7 carrying the decision's own time (`at`), so an outcome's time can be checked
/// against it from the id alone, without a store read.
/// Its random bits come from the thread's CSPRNG, not a system call per id (`Uuid::new_v7`).
fn decision_id_at(at: i64) -> String {
    let at = at.max(0) as u64;
    uuid::Builder::from_unix_timestamp_millis(at, &rand::random()).into_uuid().to_string()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    fn nice() -> i32 {
        // SAFETY: system calls on the calling thread's own id.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as libc::id_t) }
    }

    #[test]
    fn batch_decisions_run_on_threads_of_lower_priority_and_nothing_else_does() {
        let before = nice();
        let on_batch = futures::executor::block_on(super::batch_runtime().spawn(async { nice() })).unwrap();
        assert!(on_batch >= 10, "batch thread at nice {on_batch}");
        assert_eq!(nice(), before, "the calling thread keeps its priority");
    }
}
