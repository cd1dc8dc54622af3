//! The Redis store: single node (auto-reconnecting multiplexed connection) or Redis Cluster
//! (the redis crate's cluster client, connected lazily). Key names live in `keys`, value
//! encodings in `codec`, the Lua scripts and their typed arguments in `scripts`; this file
//! runs the calls and sorts their errors.
//!
//! Errors: a Redis that cannot be reached, or not in time, is `StoreError::Unavailable` (the
//! engine degrades or answers UNAVAILABLE); anything else Redis says (a script error, a key of
//! the wrong type, an answer that does not parse) is `StoreError::Internal`, never treated as
//! an outage (see `classify`).
use super::{
    DecisionLogEntry, DecisionToWrite, DecisionWrite, LoadedUser, OutcomeLink, Retention, Store, StoreError, UserWrite,
};
use crate::config::RedisConfig;
use crate::domain::Millis;
use crate::domain::analytics::{Days, Tallies};
use crate::domain::contact::ContactGuard;
use crate::domain::decision::DecisionRecord;
use crate::domain::event::Event;
use crate::domain::experiment::VariantCounters;
use crate::domain::outcome::OutcomeRecord;
use async_trait::async_trait;
use futures::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub mod archive;
mod codec;
mod errors;
mod export;
pub mod keys;
use super::logrec;
mod scripts;
mod seal;

use errors::bad_client;
pub use errors::classify;
pub use keys::{Keys, slot_of_key};
use scripts::{
    AttributionArgs, CommitArgs, CountArgs, DecisionArgs, DecisionItem, EraseArgs, LoadArgs, Loaded, LogCap,
    OutcomeArgs, RollbackArgs, Scripts, Sealing, SetCurrentArgs,
};

/// Writes sealed with a stale key (the user was erased meanwhile) are retried this often.
const SEAL_ATTEMPTS: usize = 3;

use export::SHARDS_IN_FLIGHT;
use seal::{KeyCache, UserKey};

/// A live single-node or cluster connection behind one `ConnectionLike`.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(p, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(p, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where connections come from. The cluster client has no lazy mode (it asks a node for the
/// topology when connecting), so the cluster connection is made on first use and retried on
/// every call until it succeeds: the server starts, like on a single node, while Redis is down.
enum Source {
    Single(ConnectionManager),
    // Boxed: the cluster client is large, and there is one `Source` per store.
    Cluster(Box<LazyCluster>),
}

/// The cluster client and, once made, its connection.
struct LazyCluster {
    client: ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
    /// The connection attempt in progress. It runs in its own task, shared by the callers
    /// waiting for it, so a caller's timeout cancels only its wait, never the attempt (which
    /// may need longer than one command's budget when a seed node does not answer).
    attempt: std::sync::Mutex<Option<Attempt>>,
}

type Attempt = futures::future::Shared<futures::future::BoxFuture<'static, Result<ClusterConnection, String>>>;

impl LazyCluster {
    /// The connection, made by a shared background attempt the first time (and again after
    /// an attempt failed).
    async fn get(&self) -> Result<ClusterConnection, String> {
        use futures::FutureExt;
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let attempt = {
            let mut slot = self.attempt.lock().unwrap_or_else(|e| e.into_inner());
            let failed = slot.as_ref().is_some_and(|a| matches!(a.peek(), Some(Err(_))));
            if slot.is_none() || failed {
                let client = self.client.clone();
                let task = tokio::spawn(async move { client.get_async_connection().await.map_err(|e| e.to_string()) });
                *slot = Some(async move { task.await.map_err(|e| e.to_string())? }.boxed().shared());
            }
            slot.clone().expect("an attempt was just made")
        };
        let c = attempt.await?;
        let _ = self.conn.set(c.clone());
        Ok(c)
    }
}

/// The Redis-backed store.
pub struct RedisStore {
    source: Source,
    keys: Keys,
    retention: Retention,
    timeout: Duration,
    scripts: Arc<Scripts>,
    /// Sealing keys read with users, for the write that follows.
    key_cache: KeyCache,
    /// Decision-record dictionaries built, and known to be stored.
    dicts: logrec::DictCache,
}

/// `redis.tls_*`: a private CA and/or a client certificate for `rediss://`; `None` when no
/// file is named (the system roots are trusted). The config load checked the files.
fn tls_certificates(cfg: &RedisConfig) -> Result<Option<redis::TlsCertificates>, StoreError> {
    let read = |f: &str| std::fs::read(f).map_err(|e| StoreError::Unavailable(format!("cannot read {f}: {e}")));
    let root_cert = if cfg.tls_ca_file.is_empty() { None } else { Some(read(&cfg.tls_ca_file)?) };
    let client_tls = if cfg.tls_cert_file.is_empty() {
        None
    } else {
        Some(redis::ClientTlsConfig { client_cert: read(&cfg.tls_cert_file)?, client_key: read(&cfg.tls_key_file)? })
    };
    Ok((root_cert.is_some() || client_tls.is_some()).then_some(redis::TlsCertificates { client_tls, root_cert }))
}

impl RedisStore {
    /// The decision log's cap as the scripts take it.
    fn decision_cap(&self) -> LogCap {
        LogCap { maxlen: self.retention.decision_log_maxlen, archive: self.retention.archive }
    }

    /// Connects lazily, single node and cluster alike: the server starts, and recovers, while
    /// Redis is down; calls answer `Unavailable` until it is up.
    pub async fn connect(cfg: &RedisConfig, retention: Retention) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(cfg.command_timeout_ms);
        let source = if cfg.cluster {
            let nodes: Vec<&str> = cfg.url.split(',').map(str::trim).collect();
            let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2);
            if let Some(certs) = tls_certificates(cfg)? {
                builder = builder.certs(certs);
            }
            let client = builder.build().map_err(bad_client)?;
            // Build the slot-tag table now rather than on the first request.
            keys::warm_slot_tags();
            Source::Cluster(Box::new(LazyCluster {
                client,
                conn: tokio::sync::OnceCell::new(),
                attempt: std::sync::Mutex::new(None),
            }))
        } else {
            let client = match tls_certificates(cfg)? {
                Some(certs) => redis::Client::build_with_tls(cfg.url.as_str(), certs),
                None => redis::Client::open(cfg.url.as_str()),
            }
            .map_err(bad_client)?;
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            Source::Single(ConnectionManager::new_lazy_with_config(client, config).map_err(bad_client)?)
        };
        Ok(Self {
            source,
            keys: Keys::new(&cfg.key_prefix, cfg.cluster),
            retention,
            timeout,
            scripts: Arc::new(Scripts::new()),
            key_cache: KeyCache::default(),
            dicts: logrec::DictCache::default(),
        })
    }

    /// The key names this store uses.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A live connection; for a cluster, connects now if no connection was made yet.
    async fn conn(&self) -> Result<Conn, StoreError> {
        match &self.source {
            Source::Single(c) => Ok(Conn::Single(c.clone())),
            Source::Cluster(lazy) => {
                // A failed attempt is replaced by a new one on the next call.
                let c = lazy
                    .get()
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("cannot connect to the cluster: {e}")))?;
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// The user read (`LoadArgs::pipeline`): one round trip.
    async fn load(&self, args: LoadArgs<'_>) -> Result<LoadedUser, StoreError> {
        let pipeline = args.pipeline(&self.keys);
        let replies: Vec<Value> = self.run(|mut c| async move { pipeline.query_async(&mut c).await }).await?;
        self.loaded(&args, replies)
    }

    /// The reads of many users: on a single node, one pipeline (one round trip); on a
    /// cluster, each user's own (their keys are in different slots), sent together.
    async fn load_many(&self, args: &[LoadArgs<'_>]) -> Result<Vec<Result<LoadedUser, StoreError>>, StoreError> {
        if self.keys.cluster() {
            return Ok(futures::future::join_all(args.iter().map(|a| self.load(*a))).await);
        }
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        for a in args {
            a.push(&mut pipeline, &self.keys);
        }
        let replies: Vec<Value> = self.run(|mut c| async move { pipeline.query_async(&mut c).await }).await?;
        let mut replies = replies.into_iter();
        Ok(args.iter().map(|a| self.loaded(a, replies.by_ref().take(a.replies()).collect())).collect())
    }

    /// A user as read by `args`, from its replies. A command's error (NOAUTH, a key of the
    /// wrong type) comes back as that command's reply (`ignore_errors`), raised here with its
    /// own code so that it is classified like any other (the pipeline's own error would wrap
    /// every reply's error in one).
    fn loaded(&self, args: &LoadArgs<'_>, replies: Vec<Value>) -> Result<LoadedUser, StoreError> {
        let replies = replies.into_iter().map(Value::extract_error).collect::<Result<Vec<_>, _>>().map_err(classify)?;
        let (fields, transitions, seen, contacts, marks, key): Loaded =
            args.decode(replies).map_err(|e| StoreError::Internal(format!("reading a user: {e}")))?;
        let (version, state) = codec::decode_profile(fields, transitions)?;
        self.key_cache.put(args.user, key.as_deref().and_then(UserKey::parse));
        Ok(LoadedUser { version, state, seen, contacts: codec::decode_contacts(contacts, marks)? })
    }

    /// Runs one Redis call with the command timeout (connecting included): a slow Redis is an
    /// unavailable Redis.
    async fn run<T, F>(&self, f: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let call = async { f(self.conn().await?).await.map_err(classify) };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// The key a write seals the user's log entries with: the one read with the user (cached;
    /// a new one when the read found none), else the stored one (one GET), else a new one
    /// (`Sealing::new`). `fresh` skips the cache.
    async fn sealing_key(&self, user: &str, fresh: bool) -> Result<(UserKey, bool), StoreError> {
        match self.key_cache.get(user).filter(|_| !fresh) {
            Some(Some(k)) => return Ok((k, false)),
            Some(None) => return Ok((UserKey::generate(), true)),
            None => {}
        }
        let key = self.keys.user_key(user);
        let stored: Option<String> =
            self.run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await }).await?;
        match stored {
            Some(v) => {
                let k = UserKey::parse(&v).ok_or_else(|| StoreError::Corrupt("sealing key".into()))?;
                self.key_cache.put(user, Some(k.clone()));
                Ok((k, false))
            }
            None => Ok((UserKey::generate(), true)),
        }
    }

    /// One decision.lua call for `decisions` (all in one shard). Answers, in order, what
    /// became of each, or None for one to write again (sealed with a stale key, or its
    /// dictionary was missing). `fresh_keys` reads the sealing keys from the store.
    async fn log_group(
        &self,
        decisions: &[DecisionToWrite<'_>],
        fresh_keys: bool,
    ) -> Result<Vec<Option<DecisionWrite>>, StoreError> {
        let Some(first) = decisions.first() else { return Ok(vec![]) };
        let shard = self.keys.log_dicts(&first.record.user_id);
        // The records' dictionaries, each once, and each record's encoding and sealing key.
        let mut dicts: Vec<Arc<logrec::DictEntry>> = vec![];
        let mut prepared = Vec::with_capacity(decisions.len());
        for DecisionToWrite { record, .. } in decisions {
            let dict = self.dicts.dict(record);
            let at = dicts.iter().position(|d| d.id == dict.id).unwrap_or_else(|| {
                dicts.push(dict.clone());
                dicts.len() - 1
            });
            let counts = crate::domain::funnel::decision_counts(record);
            let key = self.sealing_key(&record.user_id, fresh_keys).await?;
            prepared.push((logrec::encode(record, &dict), at, counts, key));
        }
        let known: Vec<(&logrec::DictEntry, bool)> =
            dicts.iter().map(|d| (d.as_ref(), self.dicts.stored(&shard, &d.id))).collect();
        let items: Vec<DecisionItem<'_>> = decisions
            .iter()
            .zip(&prepared)
            .map(|(d, (encoded, dict, counts, (key, new)))| DecisionItem {
                decision: *d,
                seal: Sealing { key, new: *new },
                counts,
                encoded,
                dict: *dict,
            })
            .collect();
        let args = DecisionArgs {
            items: &items,
            recent_decisions: self.retention.recent_decisions_per_user,
            decision_log_maxlen: self.decision_cap(),
            retention_days: self.retention.counter_retention_days,
            dicts: &known,
        };
        let inv = args.invocation(&self.scripts, &self.keys);
        let answers: Vec<i64> = self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
        if answers.len() != items.len() {
            return Err(StoreError::Internal(format!("{} answers to {} decisions", answers.len(), items.len())));
        }
        for (item, &r) in items.iter().zip(&answers) {
            let (dict, stored) = known[item.dict];
            match r {
                1 if !stored => self.dicts.mark_stored(&shard, &dict.id),
                // The dictionary is gone (Redis lost data): send it with the next attempt.
                -3 => self.dicts.forget_stored(&shard, &dict.id),
                _ => {}
            }
            self.sealed(&item.decision.record.user_id, item.seal.key, r == -2);
        }
        Ok(answers.into_iter().map(DecisionArgs::outcome).collect())
    }

    /// After a write sealed with `key`: remember it when it was stored, forget it when stale.
    fn sealed(&self, user: &str, key: &UserKey, stale: bool) {
        if stale { self.key_cache.evict(user) } else { self.key_cache.put(user, Some(key.clone())) }
    }
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        if self.keys.cluster() { "redis-cluster" } else { "redis" }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await }).await.map(|_| ())
    }

    async fn load_user(
        &self,
        user_id: &str,
        event_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<LoadedUser, StoreError> {
        self.load(LoadArgs { user: user_id, contacts_since, event_ids, history: true }).await
    }

    async fn load_user_without_history(
        &self,
        user_id: &str,
        event_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<LoadedUser, StoreError> {
        self.load(LoadArgs { user: user_id, contacts_since, event_ids, history: false }).await
    }

    async fn load_users_without_history(
        &self,
        user_ids: &[&str],
        contacts_since: Option<Millis>,
    ) -> Result<Vec<Result<LoadedUser, StoreError>>, StoreError> {
        let args: Vec<LoadArgs<'_>> =
            user_ids.iter().map(|u| LoadArgs { user: u, contacts_since, event_ids: &[], history: false }).collect();
        self.load_many(&args).await
    }

    async fn commit_user(&self, user_id: &str, expected_version: u64, w: UserWrite<'_>) -> Result<bool, StoreError> {
        let r = &self.retention;
        for attempt in 0..SEAL_ATTEMPTS {
            let key = if w.events.is_empty() { None } else { Some(self.sealing_key(user_id, attempt > 0).await?) };
            let args = CommitArgs {
                user: user_id,
                expected_version,
                now: w.now,
                dedup_cutoff: w.now - r.dedup_window_ms,
                dedup_max: r.dedup_max_per_user,
                journey_log_maxlen: LogCap { maxlen: r.journey_log_maxlen, archive: r.archive },
                new_version: w.new_version,
                state: w.state,
                before: w.before,
                transitions: w.new_transitions,
                events: w.events,
                attribution: AttributionArgs { windows: w.attribution.windows, happenings: w.attribution.happenings },
                seal: key.as_ref().map(|(key, new)| Sealing { key, new: *new }),
                counts: CountArgs { user: user_id, counts: w.counts, retention_days: r.counter_retention_days },
            };
            let inv = args.invocation(&self.scripts, &self.keys);
            let done: i64 = self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
            if let Some((k, _)) = &key {
                self.sealed(user_id, k, done == -2);
            }
            if done != -2 {
                return Ok(done == 1);
            }
        }
        Err(StoreError::Internal(format!("sealing key of {user_id} kept changing")))
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let inv = EraseArgs { user: user_id }.invocation(&self.scripts, &self.keys);
        let n = self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
        self.key_cache.evict(user_id);
        Ok(n)
    }

    async fn log_decision(
        &self,
        record: &DecisionRecord,
        guard: &ContactGuard,
        write_by: Option<Millis>,
    ) -> Result<DecisionWrite, StoreError> {
        for attempt in 0..SEAL_ATTEMPTS {
            if let [Some(w)] = self.log_group(&[DecisionToWrite { record, guard, write_by }], attempt > 0).await?[..] {
                return Ok(w);
            }
        }
        Err(StoreError::Internal(format!("sealing key of {} kept changing", record.user_id)))
    }

    /// One decision.lua call per log shard (the keys a call's decisions share): on a single
    /// node one for all of them (group commit), on a cluster one per slot, the calls sent
    /// together. The few to write again (sealed with a stale key, their dictionary lost) then
    /// go alone, in order.
    async fn log_decisions(&self, decisions: &[DecisionToWrite<'_>]) -> Result<Vec<DecisionWrite>, StoreError> {
        let mut shards: Vec<(String, Vec<usize>)> = vec![];
        for (i, d) in decisions.iter().enumerate() {
            let shard = self.keys.log_dicts(&d.record.user_id);
            match shards.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, members)) => members.push(i),
                None => shards.push((shard, vec![i])),
            }
        }
        let written = futures::future::try_join_all(shards.iter().map(|(_, members)| async move {
            let group: Vec<_> = members.iter().map(|&i| decisions[i]).collect();
            let mut writes = Vec::with_capacity(group.len());
            for (w, d) in self.log_group(&group, false).await?.into_iter().zip(&group) {
                writes.push(match w {
                    Some(w) => w,
                    None => self.log_decision(d.record, d.guard, d.write_by).await?,
                });
            }
            Ok::<_, StoreError>(writes)
        }))
        .await?;
        let mut out = vec![DecisionWrite::GuardFailed; decisions.len()];
        for ((_, members), writes) in shards.iter().zip(written) {
            for (&i, w) in members.iter().zip(writes) {
                out[i] = w;
            }
        }
        Ok(out)
    }

    fn group_commit(&self) -> bool {
        !self.keys.cluster()
    }

    async fn log_outcome(
        &self,
        record: &OutcomeRecord,
        windows: &[(String, Millis)],
    ) -> Result<OutcomeLink, StoreError> {
        for attempt in 0..SEAL_ATTEMPTS {
            let (key, new) = self.sealing_key(&record.user_id, attempt > 0).await?;
            let seal = Sealing { key: &key, new };
            let args = OutcomeArgs {
                record,
                decision_log_maxlen: self.decision_cap(),
                windows,
                seal,
                counter_retention_days: self.retention.counter_retention_days,
            };
            let inv = args.invocation(&self.scripts, &self.keys);
            let r: i64 = self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
            let link = OutcomeArgs::link(r);
            if r == 1 || link.is_none() {
                self.sealed(&record.user_id, &key, link.is_none());
            }
            if let Some(link) = link {
                return Ok(link);
            }
        }
        Err(StoreError::Internal(format!("sealing key of {} kept changing", record.user_id)))
    }

    async fn tallies(&self, days: Days) -> Result<Tallies, StoreError> {
        let mut out = Tallies::default();
        // Per shard one pipeline (its keys share a slot), many shards at once.
        let mut shards = futures::stream::iter(self.keys.counter_shards(days.from, days.to))
            .map(|keys| {
                self.run(move |mut c| async move {
                    let mut p = redis::pipe();
                    for k in &keys {
                        p.cmd("HGETALL").arg(k);
                    }
                    p.query_async::<Vec<Vec<(String, String)>>>(&mut c).await
                })
            })
            .buffered(SHARDS_IN_FLIGHT);
        while let Some(hashes) = shards.next().await {
            for (i, fields) in hashes?.into_iter().enumerate() {
                let day = (i > 0).then(|| days.from + i as i64 - 1);
                for (field, value) in fields {
                    let v: f64 = value
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("counter {field} is {value:?}, not a number")))?;
                    out.add(day, &field, v);
                }
            }
        }
        Ok(out)
    }

    async fn experiment_counters(&self, experiment: &str) -> Result<BTreeMap<String, VariantCounters>, StoreError> {
        let mut out: BTreeMap<String, VariantCounters> = BTreeMap::new();
        // Many shards at once, as in `export_stream`.
        let mut shards = futures::stream::iter(self.keys.experiment_counter_shards())
            .map(|key| {
                self.run(|mut c| async move {
                    redis::cmd("HGETALL").arg(&key).query_async::<Vec<(String, String)>>(&mut c).await
                })
            })
            .buffered(SHARDS_IN_FLIGHT);
        while let Some(fields) = shards.next().await {
            for (field, value) in fields? {
                codec::add_counter(&mut out, experiment, &field, &value)?;
            }
        }
        Ok(out)
    }

    async fn put_model(&self, name: &str, version: &str, artifact: &str) -> Result<(), StoreError> {
        let key = self.keys.model_versions(name);
        self.run(|mut c| async move {
            redis::cmd("HSET").arg(&key).arg(version).arg(artifact).query_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    async fn get_model(&self, name: &str, version: &str) -> Result<Option<String>, StoreError> {
        let key = self.keys.model_versions(name);
        self.run(|mut c| async move { redis::cmd("HGET").arg(&key).arg(version).query_async(&mut c).await }).await
    }

    async fn current_model(&self, name: &str) -> Result<Option<String>, StoreError> {
        let key = self.keys.model_current(name);
        self.run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await }).await
    }

    async fn set_current_model(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let inv = SetCurrentArgs { model: name, version }.invocation(&self.scripts, &self.keys);
        self.run(|mut c| async move { inv.invoke_async::<i64>(&mut c).await }).await.map(|_| ())
    }

    async fn rollback_model(&self, name: &str) -> Result<Option<String>, StoreError> {
        let inv = RollbackArgs { model: name }.invocation(&self.scripts, &self.keys);
        self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await
    }

    async fn export_journey_log(&self, sink: &mut (dyn FnMut(Event) + Send)) -> Result<u64, StoreError> {
        let mut err = None;
        let n = self
            .export_stream(self.keys.journey_log_shards(), &mut |fields, keys| {
                match codec::decode_sealed_event(fields, keys) {
                    Ok(Some(e)) => sink(e),
                    // The user was erased: the entry cannot be read (nor exported).
                    Ok(None) => {}
                    Err(e) => err = Some(e),
                }
            })
            .await?;
        err.map_or(Ok(n), Err)
    }

    async fn export_decision_log(&self, sink: &mut (dyn FnMut(DecisionLogEntry) + Send)) -> Result<u64, StoreError> {
        let mut err = None;
        let n = self
            .export_stream(self.keys.decision_log_shards(), &mut |fields, keys| match codec::decode_decision_log_entry(
                fields, keys,
            ) {
                Ok(e) => sink(e),
                Err(e) => err = Some(e),
            })
            .await?;
        err.map_or(Ok(n), Err)
    }
}
