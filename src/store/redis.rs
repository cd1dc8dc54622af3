//! The Redis store: single node (auto-reconnecting multiplexed connection) or Redis Cluster
//! (the redis crate's cluster client). The only place that knows key names and encodings.
//!
//! Key layout (prefix `tp` by default); every key of a user carries the hash tag `{user id}`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `tp:{u}:p` | hash | `v` version, `stage`, `since`, aggregates (`fs` `ls` `lp` `mon` `pc`, `c:<event type>` counts), `a:<name>` attributes as JSON |
//! | `tp:{u}:j` | list | stage transitions, JSON, oldest first |
//! | `tp:{u}:e` | sorted set | event ids already applied, scored by store time (de-duplication) |
//! | `tp:{u}:d` | hash | recent decision id -> `,offer,offer,` (links outcomes to decisions) |
//! | `tp:{u}:di` | sorted set | recent decision ids by time, to trim `:d` |
//! | `tp:{u}:c` | sorted set | contacts `decision|channel|offer` by time (caps, contact limits) |
//! | `tp:{u}:o` | hash | `dismiss:<offer>` / `accept:<offer>` -> last time (cooldowns) |
//! | `tp:{u}:x` | hash | experiment -> `variant|first exposure`; `<exp>:v`, `<exp>:c` flags, `<exp>:r` revenue |
//! | `tp:xc` / `tp:xc:{tag}` | hash | experiment counters `exp|variant|metric` (sharded by slot like the logs) |
//! | `tp:jlog` / `tp:jlog:{tag}` | stream | journey log: one entry per applied event |
//! | `tp:{model:<name>}:v` | hash | model registry: version -> artifact JSON |
//! | `tp:{model:<name>}:current` | string | the version in use |
//! | `tp:{model:<name>}:history` | list | earlier `current` versions, for rollback |
//! | `tp:dlog` / `tp:dlog:{tag}` | stream | decision log: decisions and outcomes (`json` field) |
//!
//! On a single node the logs are one stream each. On a cluster, a Lua script may only touch
//! keys of one slot, so the logs are sharded by slot: `{tag}` is a short string chosen to hash
//! to the same slot as the user, which keeps "apply the event and log it" one atomic script.
use super::{DecisionLogEntry, LoadedUser, OutcomeLink, Retention, Store, StoreError, UserWrite};
use crate::config::RedisConfig;
use crate::domain::Millis;
use crate::domain::contact::{Contact, ContactGuard, ContactState};
use crate::domain::decision::{DecisionRecord, OutcomeKind, OutcomeRecord};
use crate::domain::event::Event;
use crate::domain::experiment::{Happening, VariantCounters};
use crate::domain::profile::{AttrValue, Transition, UserState};
use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Key names, in one place.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    pub fn new(prefix: &str, cluster: bool) -> Self {
        Self { prefix: prefix.to_string(), cluster }
    }
    /// `prefix:{tag}:suffix`. The tag is the user id itself, unless that id could end the
    /// hash tag early or look like an encoded one (braces, a leading `#`): then it is `#` and
    /// the id in hex, so every key of a user always shares one non-empty tag.
    fn user(&self, user: &str, suffix: &str) -> String {
        if user.contains(['{', '}']) || user.starts_with('#') {
            format!("{}:{{#{}}}:{suffix}", self.prefix, hex::encode(user))
        } else {
            format!("{}:{{{user}}}:{suffix}", self.prefix)
        }
    }
    pub fn profile(&self, user: &str) -> String {
        self.user(user, "p")
    }
    pub fn journey(&self, user: &str) -> String {
        self.user(user, "j")
    }
    pub fn dedup(&self, user: &str) -> String {
        self.user(user, "e")
    }
    pub fn decisions(&self, user: &str) -> String {
        self.user(user, "d")
    }
    pub fn decision_index(&self, user: &str) -> String {
        self.user(user, "di")
    }
    pub fn contacts(&self, user: &str) -> String {
        self.user(user, "c")
    }
    pub fn marks(&self, user: &str) -> String {
        self.user(user, "o")
    }
    pub fn exposures(&self, user: &str) -> String {
        self.user(user, "x")
    }
    pub fn experiment_counters(&self, user: &str) -> String {
        self.log("xc", user)
    }
    /// Every per-user key (what `DeleteProfile` erases).
    pub fn all_of_user(&self, user: &str) -> [String; 8] {
        [
            self.profile(user),
            self.journey(user),
            self.dedup(user),
            self.decisions(user),
            self.decision_index(user),
            self.contacts(user),
            self.marks(user),
            self.exposures(user),
        ]
    }
    fn model(&self, name: &str, suffix: &str) -> String {
        format!("{}:{{model:{name}}}:{suffix}", self.prefix)
    }
    pub fn model_versions(&self, name: &str) -> String {
        self.model(name, "v")
    }
    pub fn model_current(&self, name: &str) -> String {
        self.model(name, "current")
    }
    pub fn model_history(&self, name: &str) -> String {
        self.model(name, "history")
    }
    fn log(&self, name: &str, user: &str) -> String {
        if self.cluster {
            format!("{}:{name}:{{{}}}", self.prefix, slot_tag(slot_of_key(&self.profile(user))))
        } else {
            format!("{}:{name}", self.prefix)
        }
    }
    pub fn journey_log(&self, user: &str) -> String {
        self.log("jlog", user)
    }
    pub fn decision_log(&self, user: &str) -> String {
        self.log("dlog", user)
    }
    /// Every stream shard of a log.
    fn log_shards(&self, name: &str) -> Vec<String> {
        if self.cluster {
            (0..SLOTS).map(|s| format!("{}:{name}:{{{}}}", self.prefix, slot_tag(s))).collect()
        } else {
            vec![format!("{}:{name}", self.prefix)]
        }
    }
}

const SLOTS: u16 = 16384;

/// A user's recent-decision, contact and mark keys expire this long after they were last
/// written, so users who are decided on but never return leave nothing behind forever. Every
/// cap, contact limit, cooldown and attribution window is at most this long (config checks).
/// Exposures (`:x`) do not expire.
const DECISION_MEMORY_MS: i64 = 90 * 86_400_000;

/// CRC16/XMODEM, the checksum Redis Cluster uses for key slots.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The cluster slot of a key, honouring `{hash tags}`.
pub fn slot_of_key(key: &str) -> u16 {
    let b = key.as_bytes();
    let hashed = match b.iter().position(|&c| c == b'{') {
        Some(open) => match b[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &b[open + 1..open + 1 + len],
            _ => b,
        },
        None => b,
    };
    crc16(hashed) % SLOTS
}

/// A short tag per slot that hashes to that slot (found once by enumeration).
fn slot_tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); SLOTS as usize];
        let mut missing = SLOTS as usize;
        let mut n: u64 = 0;
        while missing > 0 {
            let candidate = format!("{n:x}");
            let s = (crc16(candidate.as_bytes()) % SLOTS) as usize;
            if tags[s].is_empty() {
                tags[s] = candidate;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    &tags[slot as usize]
}

/// Receives the fields of each stream entry during an export.
type FieldSink<'a> = dyn FnMut(&[(String, String)]) + Send + 'a;

/// A single-node or cluster connection behind one `ConnectionLike`.
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

// Attribution of visits and conversions to experiment variants (the rule of
// domain::experiment::attribute). Reads from ARGV[i]: nwindows, (experiment, window ms)...,
// nhappenings, (kind v|c, time, value)...
const ATTRIBUTE: &str = r#"
local function attribute(xkey, ckey, i)
  local windows, happenings = {}, {}
  for k = 1, tonumber(ARGV[i]) do windows[k] = {ARGV[i + 2 * k - 1], tonumber(ARGV[i + 2 * k])} end
  i = i + 2 * #windows + 1
  for k = 1, tonumber(ARGV[i]) do happenings[k] = {ARGV[i + 3 * k - 2], tonumber(ARGV[i + 3 * k - 1]), tonumber(ARGV[i + 3 * k])} end
  if #happenings == 0 then return end
  for _, w in ipairs(windows) do
    local rec = redis.call('HGET', xkey, w[1])
    if rec then
      local variant, first = string.match(rec, '^(.*)|(%-?%d+)$')
      first = tonumber(first)
      local prefix = w[1] .. '|' .. variant .. '|'
      for _, h in ipairs(happenings) do
        if h[2] >= first and h[2] <= first + w[2] then
          if h[1] == 'v' then
            if redis.call('HSETNX', xkey, w[1] .. ':v', 1) == 1 then redis.call('HINCRBY', ckey, prefix .. 'visitors', 1) end
          else
            if redis.call('HSETNX', xkey, w[1] .. ':c', 1) == 1 then redis.call('HINCRBY', ckey, prefix .. 'converters', 1) end
            if h[3] ~= 0 then
              -- The user's revenue as a double, exactly as the in-memory store keeps it.
              local before = tonumber(redis.call('HGET', xkey, w[1] .. ':r') or '0')
              local r = before + h[3]
              redis.call('HSET', xkey, w[1] .. ':r', string.format('%.17g', r))
              redis.call('HINCRBYFLOAT', ckey, prefix .. 'revenue', h[3])
              redis.call('HINCRBYFLOAT', ckey, prefix .. 'revenue_sq', r * r - before * before)
            end
          end
        end
      end
    end
  end
end
"#;

// KEYS: current, history. ARGV: new version. Moves the pointer, remembering the old one.
const SET_CURRENT: &str = r#"
local prev = redis.call('GET', KEYS[1])
if prev and prev ~= ARGV[1] then redis.call('RPUSH', KEYS[2], prev) end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"#;

// KEYS: current, history. Moves the pointer back; nil when there is no earlier version.
const ROLLBACK: &str = r#"
local prev = redis.call('RPOP', KEYS[2])
if not prev then return false end
redis.call('SET', KEYS[1], prev)
return prev
"#;

struct Scripts {
    set_current: Script,
    rollback: Script,
    load: Script,
    commit: Script,
    decision: Script,
    outcome: Script,
}

pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    retention: Retention,
    timeout: Duration,
    scripts: Arc<Scripts>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

// KEYS: profile, history, dedup, contacts, marks. ARGV: contacts since ('' = not needed), event ids...
const LOAD: &str = r#"
local p = redis.call('HGETALL', KEYS[1])
local j = redis.call('LRANGE', KEYS[2], 0, -1)
local seen = {}
if #ARGV > 1 then
  local ids = {}
  for i = 2, #ARGV do ids[i - 1] = ARGV[i] end
  local s = redis.call('ZMSCORE', KEYS[3], unpack(ids))
  for i = 1, #ids do seen[i] = s[i] and 1 or 0 end
end
local contacts, marks = {}, {}
if ARGV[1] ~= '' then
  contacts = redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[1], '+inf', 'WITHSCORES')
  marks = redis.call('HGETALL', KEYS[5])
end
return {p, j, seen, contacts, marks}
"#;

// KEYS: profile, history, dedup, journey log, exposures, experiment counters.
// ARGV: expected version, now, dedup cutoff, dedup max, jlog maxlen, new version,
//       nfields, field/value pairs..., ntransitions, transitions..., nevents,
//       per event: id, nfields, field/value pairs..., then the attribution arguments.
const COMMIT_BODY: &str = r#"
local v = redis.call('HGET', KEYS[1], 'v') or '0'
if v ~= ARGV[1] then return 0 end
local now = ARGV[2]
redis.call('DEL', KEYS[1])
local i = 7
local nf = tonumber(ARGV[i]); i = i + 1
-- One HSET for the whole profile (at most ~330 fields: well inside unpack's limit).
local fields = {'v', ARGV[6]}
for k = 1, 2 * nf do fields[k + 2] = ARGV[i + k - 1] end
i = i + 2 * nf
redis.call('HSET', KEYS[1], unpack(fields))
local nt = tonumber(ARGV[i]); i = i + 1
for k = 1, nt do
  redis.call('RPUSH', KEYS[2], ARGV[i]); i = i + 1
end
local ne = tonumber(ARGV[i]); i = i + 1
for k = 1, ne do
  redis.call('ZADD', KEYS[3], now, ARGV[i]); i = i + 1
  local n = tonumber(ARGV[i]); i = i + 1
  local fields = {}
  for f = 1, n * 2 do fields[f] = ARGV[i]; i = i + 1 end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
end
attribute(KEYS[5], KEYS[6], i)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[3])
local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, excess - 1) end
-- Event ids are only needed for the dedup window: the set expires when no event came for that long.
redis.call('PEXPIRE', KEYS[3], tonumber(now) - tonumber(ARGV[3]))
return 1
"#;

// KEYS: decisions hash, decision index, decision log, contacts, exposures, experiment counters.
// After the offers: nexposures, (experiment, variant)... recorded once the guard holds.
// ARGV: id, now, ",offers,|", keep, json, maxlen, ttl ms, channel, keep contacts since,
//       nlimits, (max, since)..., ncaps, (offer, max, since)..., noffers, offer...
// A decision's hash value is its offers then the outcomes recorded: ",o1,o2,|o1:click|".
// The guard re-counts contacts here, atomically with recording the new ones.
const DECISION: &str = r#"
local i = 10
local limits, caps, offers = {}, {}, {}
for k = 1, tonumber(ARGV[i]) do limits[k] = {tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])}; i = i + 2 end
i = i + 1
for k = 1, tonumber(ARGV[i]) do caps[k] = {ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])}; i = i + 3 end
i = i + 1
for k = 1, tonumber(ARGV[i]) do offers[k] = ARGV[i + k] end
i = i + #offers + 1
local exposures = {}
for k = 1, tonumber(ARGV[i]) do exposures[k] = {ARGV[i + 2 * k - 1], ARGV[i + 2 * k]} end
if #limits > 0 or #caps > 0 then
  local since = math.huge
  for _, l in ipairs(limits) do since = math.min(since, l[2]) end
  for _, c in ipairs(caps) do since = math.min(since, c[3]) end
  local m = redis.call('ZRANGEBYSCORE', KEYS[4], since, '+inf', 'WITHSCORES')
  for _, l in ipairs(limits) do
    local seen, n = {}, 0
    for j = 1, #m, 2 do
      local d, ch = string.match(m[j], '^([^|]*)|([^|]*)|')
      if ch == ARGV[8] and tonumber(m[j + 1]) >= l[2] and not seen[d] then seen[d] = true; n = n + 1 end
    end
    if n >= l[1] then return 0 end
  end
  for _, c in ipairs(caps) do
    local n = 0
    for j = 1, #m, 2 do
      local o = string.match(m[j], '^[^|]*|[^|]*|(.*)$')
      if o == c[1] and tonumber(m[j + 1]) >= c[3] then n = n + 1 end
    end
    if n >= c[2] then return 0 end
  end
end
if #offers > 0 then
  for _, o in ipairs(offers) do redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1] .. '|' .. ARGV[8] .. '|' .. o) end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[9])
  -- Contacts live at least as long as the longest window that counts them.
  redis.call('PEXPIRE', KEYS[4], math.max(tonumber(ARGV[7]), tonumber(ARGV[2]) - tonumber(ARGV[9]) + 86400000))
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 'kind', 'decision', 'id', ARGV[1], 'json', ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], excess)
  for k = 1, #old, 2 do redis.call('HDEL', KEYS[1], old[k]) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
for _, e in ipairs(exposures) do
  local prefix = e[1] .. '|' .. e[2] .. '|'
  redis.call('HINCRBY', KEYS[6], prefix .. 'decisions', 1)
  if redis.call('HSETNX', KEYS[5], e[1], e[2] .. '|' .. ARGV[2]) == 1 then
    redis.call('HINCRBY', KEYS[6], prefix .. 'exposed', 1)
  end
end
-- Exposures do not expire: a user must never be counted as newly exposed again
-- (DeleteProfile removes them).
return 1
"#;

// KEYS: decisions hash, decision log, marks, exposures, experiment counters.
// ARGV: decision id, offer id, json, maxlen, outcome kind, at, ttl ms, then the attribution arguments.
const OUTCOME_BODY: &str = r#"
local d = redis.call('HGET', KEYS[1], ARGV[1])
if not d then return 0 end
local bar = string.find(d, '|', 1, true)
if not string.find(string.sub(d, 1, bar), ',' .. ARGV[2] .. ',', 1, true) then return -1 end
local mark = ARGV[2] .. ':' .. ARGV[5] .. '|'
if string.find(d, '|' .. mark, 1, true) then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], d .. mark)
if ARGV[5] == 'dismiss' or ARGV[5] == 'accept' then
  local field = ARGV[5] .. ':' .. ARGV[2]
  local prev = tonumber(redis.call('HGET', KEYS[3], field) or '0')
  if tonumber(ARGV[6]) > prev then redis.call('HSET', KEYS[3], field, ARGV[6]) end
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
attribute(KEYS[4], KEYS[5], 8)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'kind', 'outcome', 'id', ARGV[1], 'json', ARGV[3])
return 1
"#;

impl RedisStore {
    /// Connects lazily on a single node (the server starts, and recovers, while Redis is down);
    /// a cluster is asked for its topology at once.
    pub async fn connect(cfg: &RedisConfig, retention: Retention) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(cfg.command_timeout_ms);
        let conn = if cfg.cluster {
            let nodes: Vec<&str> = cfg.url.split(',').map(str::trim).collect();
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()
                .map_err(unavailable)?;
            // Build the slot-tag table now rather than on the first request.
            slot_tag(0);
            Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?)
        } else {
            let client = redis::Client::open(cfg.url.as_str()).map_err(unavailable)?;
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(timeout))
                .set_connection_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            Conn::Single(ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?)
        };
        let scripts = Scripts {
            set_current: Script::new(SET_CURRENT),
            rollback: Script::new(ROLLBACK),
            load: Script::new(LOAD),
            commit: Script::new(&format!("{ATTRIBUTE}{COMMIT_BODY}")),
            decision: Script::new(DECISION),
            outcome: Script::new(&format!("{ATTRIBUTE}{OUTCOME_BODY}")),
        };
        Ok(Self { conn, keys: Keys::new(&cfg.key_prefix, cfg.cluster), retention, timeout, scripts: Arc::new(scripts) })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Runs one Redis call with the command timeout: a slow Redis is an unavailable Redis.
    async fn run<T, F>(&self, f: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, f(self.conn.clone())).await {
            Ok(r) => r.map_err(unavailable),
            Err(_) => Err(StoreError::Unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn export_stream(&self, name: &str, sink: &mut FieldSink<'_>) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for key in self.keys.log_shards(name) {
            let mut start = "-".to_string();
            loop {
                let page: Vec<(String, Vec<(String, String)>)> = self
                    .run(|mut c| {
                        let cmd = redis::cmd("XRANGE").arg(&key).arg(&start).arg("+").arg("COUNT").arg(1000).clone();
                        async move { cmd.query_async(&mut c).await }
                    })
                    .await?;
                let Some((last, _)) = page.last() else { break };
                start = format!("({last}");
                for (_, fields) in &page {
                    sink(fields);
                    n += 1;
                }
                if page.len() < 1000 {
                    break;
                }
            }
        }
        Ok(n)
    }
}

fn ms_str(v: Option<i64>) -> Option<String> {
    v.map(|t| t.to_string())
}

/// Profile hash fields for a state (without the version).
fn encode_profile(s: &UserState) -> Vec<(String, String)> {
    let a = &s.aggregates;
    let mut f: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            f.push((k.to_string(), v));
        }
    };
    put("stage", s.stage.clone());
    put("since", ms_str(s.stage_since));
    put("fs", ms_str(a.first_seen));
    put("ls", ms_str(a.last_seen));
    put("lp", ms_str(a.last_purchase));
    put("mon", (a.monetary_total != 0.0).then(|| a.monetary_total.to_string()));
    put("pc", (a.purchase_count != 0).then(|| a.purchase_count.to_string()));
    for (k, v) in &a.event_counts {
        f.push((format!("c:{k}"), v.to_string()));
    }
    for (k, v) in &s.attributes {
        f.push((format!("a:{k}"), serde_json::to_string(v).expect("attribute values serialise")));
    }
    f
}

fn decode_profile(fields: Vec<String>, transitions: Vec<String>) -> Result<(u64, UserState), StoreError> {
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
                } else if let Some(name) = k.strip_prefix("a:") {
                    let value: AttrValue = serde_json::from_str(&v).map_err(|_| corrupt(&k, &v))?;
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

/// The attribution arguments the Lua `attribute` helper reads.
fn attribution_args(inv: &mut redis::ScriptInvocation<'_>, windows: &[(String, Millis)], happenings: &[Happening]) {
    inv.arg(windows.len());
    for (experiment, window) in windows {
        inv.arg(experiment).arg(window);
    }
    inv.arg(happenings.len());
    for h in happenings {
        match *h {
            Happening::Visit { at } => inv.arg("v").arg(at).arg(0),
            Happening::Conversion { at, value } => inv.arg("c").arg(at).arg(value),
        };
    }
}

/// Contacts (`decision|channel|offer`, score) and marks (`dismiss:<offer>`, time).
fn decode_contacts(contacts: Vec<String>, marks: Vec<String>) -> Result<ContactState, StoreError> {
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

fn encode_event(e: &Event) -> Vec<(&'static str, String)> {
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

fn decode_event(fields: &[(String, String)]) -> Result<Event, StoreError> {
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

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        if self.keys.cluster { "redis-cluster" } else { "redis" }
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
        let k = &self.keys;
        let mut inv = self.scripts.load.prepare_invoke();
        inv.key(k.profile(user_id))
            .key(k.journey(user_id))
            .key(k.dedup(user_id))
            .key(k.contacts(user_id))
            .key(k.marks(user_id));
        inv.arg(contacts_since.map(|t| t.to_string()).unwrap_or_default());
        for id in event_ids {
            inv.arg(*id);
        }
        type Loaded = (Vec<String>, Vec<String>, Vec<i64>, Vec<String>, Vec<String>);
        let (fields, transitions, seen, contacts, marks): Loaded =
            self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
        let (version, state) = decode_profile(fields, transitions)?;
        Ok(LoadedUser {
            version,
            state,
            seen: seen.into_iter().map(|s| s == 1).collect(),
            contacts: decode_contacts(contacts, marks)?,
        })
    }

    async fn commit_user(&self, user_id: &str, expected_version: u64, w: UserWrite<'_>) -> Result<bool, StoreError> {
        let k = &self.keys;
        let r = &self.retention;
        let mut inv = self.scripts.commit.prepare_invoke();
        inv.key(k.profile(user_id))
            .key(k.journey(user_id))
            .key(k.dedup(user_id))
            .key(k.journey_log(user_id))
            .key(k.exposures(user_id))
            .key(k.experiment_counters(user_id));
        inv.arg(expected_version.to_string())
            .arg(w.now)
            .arg(w.now - r.dedup_window_ms)
            .arg(r.dedup_max_per_user)
            .arg(r.journey_log_maxlen)
            .arg(w.new_version.to_string());
        let fields = encode_profile(w.state);
        inv.arg(fields.len());
        for (f, v) in &fields {
            inv.arg(f).arg(v);
        }
        inv.arg(w.new_transitions.len());
        for t in w.new_transitions {
            inv.arg(serde_json::to_string(t).expect("transition serialises"));
        }
        inv.arg(w.events.len());
        for e in w.events {
            let f = encode_event(e);
            inv.arg(&e.event_id).arg(f.len());
            for (name, v) in f {
                inv.arg(name).arg(v);
            }
        }
        attribution_args(&mut inv, w.attribution.windows, w.attribution.happenings);
        let done: i64 = self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
        Ok(done == 1)
    }

    async fn delete_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let keys = self.keys.all_of_user(user_id);
        self.run(|mut c| async move { redis::cmd("DEL").arg(&keys[..]).query_async(&mut c).await }).await
    }

    async fn log_decision(&self, rec: &DecisionRecord, guard: &ContactGuard) -> Result<bool, StoreError> {
        let k = &self.keys;
        let offers: String = rec.chosen.iter().fold(",".to_string(), |acc, c| acc + &c.offer_id + ",") + "|";
        let json = serde_json::to_string(rec).expect("decision record serialises");
        let mut inv = self.scripts.decision.prepare_invoke();
        inv.key(k.decisions(&rec.user_id))
            .key(k.decision_index(&rec.user_id))
            .key(k.decision_log(&rec.user_id))
            .key(k.contacts(&rec.user_id))
            .key(k.exposures(&rec.user_id))
            .key(k.experiment_counters(&rec.user_id));
        inv.arg(&rec.decision_id)
            .arg(rec.at)
            .arg(offers)
            .arg(self.retention.recent_decisions_per_user)
            .arg(json)
            .arg(self.retention.decision_log_maxlen)
            .arg(DECISION_MEMORY_MS)
            .arg(&guard.channel)
            .arg(guard.keep_since)
            .arg(guard.channel_limits.len());
        for (max, since) in &guard.channel_limits {
            inv.arg(max).arg(since);
        }
        inv.arg(guard.offer_caps.len());
        for (offer, max, since) in &guard.offer_caps {
            inv.arg(offer).arg(max).arg(since);
        }
        inv.arg(guard.offers.len());
        for offer in &guard.offers {
            inv.arg(offer);
        }
        inv.arg(rec.assignments.len());
        for (experiment, variant) in &rec.assignments {
            inv.arg(experiment).arg(variant);
        }
        let r: i64 = self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
        Ok(r == 1)
    }

    async fn log_outcome(&self, rec: &OutcomeRecord, windows: &[(String, Millis)]) -> Result<OutcomeLink, StoreError> {
        let k = &self.keys;
        let json = serde_json::to_string(rec).expect("outcome record serialises");
        let mut inv = self.scripts.outcome.prepare_invoke();
        inv.key(k.decisions(&rec.user_id))
            .key(k.decision_log(&rec.user_id))
            .key(k.marks(&rec.user_id))
            .key(k.exposures(&rec.user_id))
            .key(k.experiment_counters(&rec.user_id));
        inv.arg(&rec.decision_id)
            .arg(&rec.offer_id)
            .arg(json)
            .arg(self.retention.decision_log_maxlen)
            .arg(rec.outcome.as_str())
            .arg(rec.at)
            .arg(DECISION_MEMORY_MS);
        let happening = match rec.outcome {
            OutcomeKind::Click => Some(Happening::Visit { at: rec.at }),
            OutcomeKind::Conversion => Some(Happening::Conversion { at: rec.at, value: rec.value }),
            _ => None,
        };
        attribution_args(&mut inv, windows, happening.as_slice());
        let r: i64 = self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
        Ok(match r {
            1 => OutcomeLink::Linked,
            2 => OutcomeLink::Duplicate,
            0 => OutcomeLink::UnknownDecision,
            _ => OutcomeLink::OfferNotInDecision,
        })
    }

    async fn experiment_counters(&self, experiment: &str) -> Result<BTreeMap<String, VariantCounters>, StoreError> {
        let mut out: BTreeMap<String, VariantCounters> = BTreeMap::new();
        let prefix = format!("{experiment}|");
        for key in self.keys.log_shards("xc") {
            let fields: Vec<(String, String)> =
                self.run(|mut c| async move { redis::cmd("HGETALL").arg(&key).query_async(&mut c).await }).await?;
            for (field, value) in fields {
                let Some(rest) = field.strip_prefix(&prefix) else { continue };
                let Some((variant, metric)) = rest.rsplit_once('|') else { continue };
                let c = out.entry(variant.to_string()).or_default();
                let int = || value.parse::<u64>().map_err(|_| StoreError::Corrupt(format!("counter {field}={value}")));
                let float =
                    || value.parse::<f64>().map_err(|_| StoreError::Corrupt(format!("counter {field}={value}")));
                match metric {
                    "exposed" => c.exposed += int()?,
                    "decisions" => c.decisions += int()?,
                    "visitors" => c.visitors += int()?,
                    "converters" => c.converters += int()?,
                    "revenue" => c.revenue += float()?,
                    "revenue_sq" => c.revenue_sq += float()?,
                    _ => {}
                }
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
        let mut inv = self.scripts.set_current.prepare_invoke();
        inv.key(self.keys.model_current(name)).key(self.keys.model_history(name)).arg(version);
        self.run(|mut c| async move { inv.invoke_async::<i64>(&mut c).await }).await.map(|_| ())
    }

    async fn rollback_model(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut inv = self.scripts.rollback.prepare_invoke();
        inv.key(self.keys.model_current(name)).key(self.keys.model_history(name));
        self.run(|mut c| async move { inv.invoke_async(&mut c).await }).await
    }

    async fn export_journey_log(&self, sink: &mut (dyn FnMut(Event) + Send)) -> Result<u64, StoreError> {
        let mut err = None;
        let n = self
            .export_stream("jlog", &mut |fields| match decode_event(fields) {
                Ok(e) => sink(e),
                Err(e) => err = Some(e),
            })
            .await?;
        err.map_or(Ok(n), Err)
    }

    async fn export_decision_log(&self, sink: &mut (dyn FnMut(DecisionLogEntry) + Send)) -> Result<u64, StoreError> {
        let mut err = None;
        let n = self
            .export_stream("dlog", &mut |fields| {
                let json = fields.iter().find(|(k, _)| k == "json").map(|(_, v)| v.as_str()).unwrap_or("");
                let kind = fields.iter().find(|(k, _)| k == "kind").map(|(_, v)| v.as_str()).unwrap_or("");
                let parsed = match kind {
                    "decision" => serde_json::from_str(json).map(|d| DecisionLogEntry::Decision(Box::new(d))),
                    _ => serde_json::from_str(json).map(DecisionLogEntry::Outcome),
                };
                match parsed {
                    Ok(e) => sink(e),
                    Err(e) => err = Some(StoreError::Corrupt(format!("decision log entry: {e}"))),
                }
            })
            .await?;
        err.map_or(Ok(n), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_cluster_spec() {
        // Test vector from the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot_of_key("{user1000}.following"), slot_of_key("{user1000}.followers"));
        assert_eq!(slot_of_key("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot_of_key("foo{{bar}}zap"), crc16(b"{bar") % SLOTS);
    }

    #[test]
    fn user_keys_and_log_shard_share_a_slot() {
        let k = Keys::new("tp", true);
        for user in ["alice", "u-1", "a}b", "{x}", "}x", "#61", "Zoë"] {
            let slot = slot_of_key(&k.profile(user));
            for key in k.all_of_user(user).iter().chain([&k.journey_log(user), &k.decision_log(user)]) {
                assert_eq!(slot_of_key(key), slot, "{key}");
            }
        }
        assert_eq!(Keys::new("tp", false).journey_log("alice"), "tp:jlog");
    }

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
}
