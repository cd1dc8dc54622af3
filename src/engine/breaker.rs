//! The store circuit breaker: after `breaker_failures` consecutive outages (connection
//! errors, timeouts) of the store, calls fail at once for `breaker_cooldown_ms` instead of
//! each waiting for its own timeout; then one probe call goes through (half-open), and its
//! success closes the breaker (its failure opens it again).
//!
//! `BreakerStore` wraps the store the engine talks to, so every use case gets it: `Decide`
//! answers degraded (`store_unavailable`) at once, writes answer UNAVAILABLE at once. It also
//! counts store errors by class (`touchpoint_store_errors_total{class}`) and shows its state
//! in `touchpoint_store_breaker_open` (1 open, 0.5 half-open, 0 closed).
use super::degraded;
use crate::domain::Millis;
use crate::domain::analytics::{Days, Tallies};
use crate::domain::contact::ContactGuard;
use crate::domain::decision::DecisionRecord;
use crate::domain::event::Event;
use crate::domain::experiment::VariantCounters;
use crate::domain::outcome::OutcomeRecord;
use crate::store::{
    DecisionLogEntry, DecisionToWrite, DecisionWrite, LoadedUser, OutcomeLink, Store, StoreError, UserWrite,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a caller sees while the breaker is open (classified as `store_unavailable`).
pub const OPEN_MESSAGE: &str = "circuit breaker open: the store is known to be down";

/// The breaker's state as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to the store.
    Closed,
    /// Calls fail at once.
    Open,
    /// The cool-down is over: the next call probes the store.
    HalfOpen,
}

impl BreakerState {
    /// The state's stable name (`closed`, `open`, `half_open`), as `GetStatus` shows it.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Consecutive-failure circuit breaker; lock-free (a few atomics per store call).
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Microseconds since `epoch` when the breaker opened, plus one; 0 while closed.
    opened_at: AtomicU64,
    /// A half-open probe is in flight.
    probing: AtomicBool,
}

/// Whether a call may go to the store, and whether it is the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Call,
    Probe,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, probes after `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            opened_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match self.opened_at.load(Ordering::Acquire) {
            0 => BreakerState::Closed,
            at if self.now().saturating_sub(at) < self.cooldown.as_micros() as u64 => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    fn admit(&self) -> Option<Admit> {
        match self.state() {
            BreakerState::Closed => Some(Admit::Call),
            BreakerState::Open => None,
            BreakerState::HalfOpen => {
                self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok().then(|| {
                    metrics::gauge!("touchpoint_store_breaker_open").set(0.5);
                    Admit::Probe
                })
            }
        }
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.opened_at.swap(0, Ordering::AcqRel) != 0 {
            self.probing.store(false, Ordering::Release);
            metrics::gauge!("touchpoint_store_breaker_open").set(0.0);
            tracing::info!("store answers again: circuit breaker closed");
        }
    }

    fn failure(&self, admitted: Admit) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let reopen = admitted == Admit::Probe;
        if reopen || (failures >= self.threshold && self.opened_at.load(Ordering::Acquire) == 0) {
            let was = self.opened_at.swap(self.now(), Ordering::AcqRel);
            self.probing.store(false, Ordering::Release);
            metrics::gauge!("touchpoint_store_breaker_open").set(1.0);
            if was == 0 {
                metrics::counter!("touchpoint_store_breaker_opened_total").increment(1);
                tracing::warn!(
                    failures,
                    cooldown = ?self.cooldown,
                    "store failing: circuit breaker open, calls fail fast until a probe succeeds"
                );
            }
        }
    }

    /// Probe ended without an answer either way (the caller gave up): let another call probe.
    fn abandoned(&self, admitted: Admit) {
        if admitted == Admit::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// Runs `call` through the breaker: refused at once while open, counted when it ends.
    async fn run<T>(&self, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let Some(admitted) = self.admit() else {
            metrics::counter!("touchpoint_store_breaker_rejected_total").increment(1);
            return Err(StoreError::Unavailable(OPEN_MESSAGE.into()));
        };
        // A caller that stops waiting (a budget ran out) drops this future: release the probe.
        struct Pending<'a>(&'a Breaker, Admit, bool);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                if !self.2 {
                    self.0.abandoned(self.1);
                }
            }
        }
        let mut pending = Pending(self, admitted, false);
        let result = call.await;
        pending.2 = true;
        match &result {
            Ok(_) => self.success(),
            Err(e) => {
                let class = error_class(e);
                metrics::counter!("touchpoint_store_errors_total", "class" => class).increment(1);
                if class == degraded::STORE_UNAVAILABLE || class == degraded::STORE_TIMEOUT {
                    self.failure(admitted);
                } else {
                    // The store answered (with a refusal or a bad value): it is up.
                    self.success();
                }
            }
        }
        result
    }
}

/// The stable class of a store error (`degraded`'s reason codes).
pub fn error_class(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(m) => degraded::classify_unavailable(m),
        StoreError::OutOfMemory(_) => degraded::STORE_OOM,
        StoreError::Corrupt(_) => degraded::STORE_CORRUPT,
        StoreError::Internal(_) => degraded::STORE_ERROR,
    }
}

/// A store behind a circuit breaker, counting errors by class. `ping` bypasses the breaker
/// (it is the operator's own probe, `GetStatus`).
pub struct BreakerStore {
    inner: Arc<dyn Store>,
    breaker: Breaker,
}

impl BreakerStore {
    /// `inner` behind `breaker`.
    pub fn new(inner: Arc<dyn Store>, breaker: Breaker) -> Self {
        metrics::gauge!("touchpoint_store_breaker_open").set(0.0);
        Self { inner, breaker }
    }

    /// The breaker's state.
    pub fn state(&self) -> BreakerState {
        self.breaker.state()
    }
}

#[async_trait]
impl Store for BreakerStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn load_user(
        &self,
        user_id: &str,
        event_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<LoadedUser, StoreError> {
        self.breaker.run(self.inner.load_user(user_id, event_ids, contacts_since)).await
    }

    async fn load_user_without_history(
        &self,
        user_id: &str,
        event_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<LoadedUser, StoreError> {
        self.breaker.run(self.inner.load_user_without_history(user_id, event_ids, contacts_since)).await
    }

    async fn load_users_without_history(
        &self,
        user_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<Vec<Result<LoadedUser, StoreError>>, StoreError> {
        self.breaker.run(self.inner.load_users_without_history(user_ids, contacts_since)).await
    }

    async fn commit_user(
        &self,
        user_id: &str,
        expected_version: u64,
        write: UserWrite<'_>,
    ) -> Result<bool, StoreError> {
        self.breaker.run(self.inner.commit_user(user_id, expected_version, write)).await
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.breaker.run(self.inner.delete_user(user_id)).await
    }

    async fn log_decision(
        &self,
        record: &DecisionRecord,
        guard: &ContactGuard,
        write_by: Option<Millis>,
    ) -> Result<DecisionWrite, StoreError> {
        self.breaker.run(self.inner.log_decision(record, guard, write_by)).await
    }

    async fn log_decisions(&self, decisions: &[DecisionToWrite<'_>]) -> Result<Vec<DecisionWrite>, StoreError> {
        self.breaker.run(self.inner.log_decisions(decisions)).await
    }

    fn group_commit(&self) -> bool {
        self.inner.group_commit()
    }

    async fn log_outcome(
        &self,
        record: &OutcomeRecord,
        windows: &[(String, Millis)],
    ) -> Result<OutcomeLink, StoreError> {
        self.breaker.run(self.inner.log_outcome(record, windows)).await
    }

    async fn tallies(&self, days: Days) -> Result<Tallies, StoreError> {
        self.breaker.run(self.inner.tallies(days)).await
    }

    async fn experiment_counters(&self, experiment: &str) -> Result<BTreeMap<String, VariantCounters>, StoreError> {
        self.breaker.run(self.inner.experiment_counters(experiment)).await
    }

    async fn put_model(&self, name: &str, version: &str, artifact: &str) -> Result<(), StoreError> {
        self.breaker.run(self.inner.put_model(name, version, artifact)).await
    }

    async fn get_model(&self, name: &str, version: &str) -> Result<Option<String>, StoreError> {
        self.breaker.run(self.inner.get_model(name, version)).await
    }

    async fn current_model(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.breaker.run(self.inner.current_model(name)).await
    }

    async fn set_current_model(&self, name: &str, version: &str) -> Result<(), StoreError> {
        self.breaker.run(self.inner.set_current_model(name, version)).await
    }

    async fn rollback_model(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.breaker.run(self.inner.rollback_model(name)).await
    }

    async fn export_journey_log(&self, sink: &mut (dyn FnMut(Event) + Send)) -> Result<u64, StoreError> {
        self.breaker.run(self.inner.export_journey_log(sink)).await
    }

    async fn export_decision_log(&self, sink: &mut (dyn FnMut(DecisionLogEntry) + Send)) -> Result<u64, StoreError> {
        self.breaker.run(self.inner.export_decision_log(sink)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> Result<(), StoreError> {
        Err(StoreError::Unavailable("Connection refused (os error 111)".into()))
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_probe() {
        block_on(async {
            let b = Breaker::new(3, Duration::ZERO);
            for _ in 0..2 {
                assert!(b.run(async { down() }).await.is_err());
            }
            // A success in between resets the count.
            b.run(async { Ok(()) }).await.unwrap();
            for _ in 0..2 {
                b.run(async { down() }).await.unwrap_err();
            }
            assert_eq!(b.state(), BreakerState::Closed);
            b.run(async { down() }).await.unwrap_err();
            assert_ne!(b.state(), BreakerState::Closed);
            // Cool-down zero: half-open, the probe fails and opens it again; then one succeeds.
            assert_eq!(b.state(), BreakerState::HalfOpen);
            b.run(async { down() }).await.unwrap_err();
            assert_ne!(b.state(), BreakerState::Closed);
            b.run(async { Ok(()) }).await.unwrap();
            assert_eq!(b.state(), BreakerState::Closed);
        });
    }

    #[test]
    fn open_refuses_without_calling_and_answers_are_not_outages() {
        block_on(async {
            let b = Breaker::new(1, Duration::from_secs(3600));
            // A refusal (out of memory) or a script error is an answer: the store is up.
            b.run(async { Err::<(), _>(StoreError::Internal("WRONGTYPE".into())) }).await.unwrap_err();
            assert_eq!(b.state(), BreakerState::Closed);
            b.run(async { down() }).await.unwrap_err();
            assert_eq!(b.state(), BreakerState::Open);
            let mut called = false;
            let r = b
                .run(async {
                    called = true;
                    Ok(())
                })
                .await;
            assert!(!called);
            assert!(matches!(r, Err(StoreError::Unavailable(m)) if m == OPEN_MESSAGE));
        });
    }
}
