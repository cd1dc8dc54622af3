//! Configuration: defaults in code, one TOML file, environment overrides for scalar settings,
//! and validation that names the entry (and its line) at fault.
use crate::domain::contact::Limit;
use crate::domain::experiment::{Experiment, GLOBAL_HOLDOUT, GlobalHoldout, Overrides, Variant};
use crate::domain::journey::{JourneyDef, Trigger};
use crate::domain::limits::{MAX_LIMIT, check_name};
use crate::domain::model::{BoundModel, ModelArtifact};
use crate::domain::offer::{Catalogue, Offer};
use crate::domain::policy::{Exploration, Fallback, Models, OfferRules, Policy, Priority, Segment};
use crate::domain::rules::{Expect, Prepared, Rule, offer_value};
use crate::domain::{MS_PER_DAY, Millis};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

/// Exit code for a bad configuration (EX_CONFIG is 78; sysexits' EX_USAGE 64 is what the CLI contract names).
pub const EXIT_BAD_CONFIG: i32 = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Prometheus `/metrics` address; empty disables the endpoint.
    pub metrics_listen: String,
    /// How long shutdown waits for in-flight calls to finish.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:50051".into(), metrics_listen: String::new(), shutdown_grace_ms: 10_000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `memory://` for the embedded in-memory store, `redis://host:port/db` for Redis.
    /// With `cluster = true`, a comma-separated list of seed nodes.
    pub url: String,
    pub cluster: bool,
    /// Prefix of every key, so several environments can share one Redis.
    pub key_prefix: String,
    /// Per-command timeout; a slower Redis counts as unavailable.
    pub command_timeout_ms: u64,
    /// Approximate maximum length of each journey-log stream (MAXLEN ~).
    pub journey_log_maxlen: u64,
    /// Approximate maximum length of each decision-log stream (MAXLEN ~).
    pub decision_log_maxlen: u64,
    /// How long an event id is remembered for de-duplication.
    pub dedup_window_days: f64,
    /// At most this many event ids are remembered per user (the oldest go first).
    pub dedup_max_per_user: u64,
    /// Recent decisions kept per user so outcomes can be linked to them.
    pub recent_decisions_per_user: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "memory://".into(),
            cluster: false,
            key_prefix: "tp".into(),
            command_timeout_ms: 1000,
            journey_log_maxlen: 1_000_000,
            decision_log_maxlen: 1_000_000,
            dedup_window_days: 30.0,
            dedup_max_per_user: 10_000,
            recent_decisions_per_user: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionConfig {
    pub event_type: String,
    pub to: String,
    /// The transition fires from the `min_count`-th event of this type on.
    #[serde(default = "one")]
    pub min_count: u64,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JourneyConfig {
    pub stages: Vec<String>,
    pub lapse_after_days: f64,
    pub purchase_event: String,
    pub transitions: Vec<TransitionConfig>,
}

impl Default for JourneyConfig {
    fn default() -> Self {
        let t = |e: &str, to: &str| TransitionConfig { event_type: e.into(), to: to.into(), min_count: 1 };
        Self {
            stages: ["awareness", "consideration", "conversion", "retention", "advocacy"].map(String::from).into(),
            lapse_after_days: 30.0,
            purchase_event: "purchase".into(),
            transitions: vec![
                t("page_view", "awareness"),
                t("product_view", "consideration"),
                t("add_to_cart", "conversion"),
                t("checkout_started", "conversion"),
                t("purchase", "retention"),
                t("review_posted", "advocacy"),
                t("referral", "advocacy"),
            ],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionsConfig {
    pub channels: Vec<String>,
    /// Offers returned when a request's `limit` is 0.
    pub default_limit: u32,
    /// CEL priority expression; empty for the built-in default (see `Priority::Default`).
    pub priority: String,
    /// How long a decision may wait for the store before answering from the fallback
    /// (a shorter gRPC deadline on the request wins).
    pub deadline_ms: u64,
    pub exploration: ExplorationConfig,
}

impl Default for DecisionsConfig {
    fn default() -> Self {
        Self {
            channels: ["web", "app", "email"].map(String::from).into(),
            default_limit: 3,
            priority: String::new(),
            deadline_ms: 50,
            exploration: ExplorationConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplorationConfig {
    /// `none` or `epsilon_greedy`.
    pub policy: String,
    pub epsilon: f64,
}

impl Default for ExplorationConfig {
    fn default() -> Self {
        Self { policy: "none".into(), epsilon: 0.1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentConfig {
    pub id: String,
    /// demographic, behavioural, psychographic, geographic (or any label, for reporting).
    #[serde(default)]
    pub kind: String,
    pub rule: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub max: u32,
    pub days: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPolicyConfig {
    pub channel: String,
    pub limits: Vec<LimitConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackConfig {
    pub channel: String,
    #[serde(default)]
    pub stage: Option<String>,
    pub offers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantConfig {
    pub name: String,
    #[serde(default = "one_f")]
    pub weight: f64,
    /// A CEL priority expression for this variant's decisions.
    #[serde(default)]
    pub priority: Option<String>,
    /// Model artifact files (relative to the config file) replacing the configured ones.
    #[serde(default)]
    pub churn_model: Option<String>,
    #[serde(default)]
    pub purchase_model: Option<String>,
    /// Only these offers are candidates.
    #[serde(default)]
    pub offers: Option<Vec<String>>,
    /// none | epsilon_greedy (with `epsilon`), overriding decisions.exploration.
    #[serde(default)]
    pub exploration: Option<String>,
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// No offers for this variant's users (control of "contact or not").
    #[serde(default)]
    pub holdout: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    pub id: String,
    /// Hash salt of the variant assignment; default: the id. Change it to re-randomise.
    #[serde(default)]
    pub salt: Option<String>,
    /// Experiments in one layer get disjoint traffic; default: a layer of its own.
    #[serde(default)]
    pub layer: Option<String>,
    /// Where in the layer the experiment's slice starts, and its share of the layer.
    #[serde(default)]
    pub offset: f64,
    #[serde(default = "one_f")]
    pub allocation: f64,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    /// CEL rule: only users for whom it holds enter the experiment.
    #[serde(default)]
    pub targeting: Option<String>,
    /// The variant others are compared with; default: the first.
    #[serde(default)]
    pub control: Option<String>,
    #[serde(default = "fourteen")]
    pub attribution_days: f64,
    pub variants: Vec<VariantConfig>,
}

fn fourteen() -> f64 {
    14.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldoutConfig {
    /// Share of all users who never receive offers (0 disables).
    pub share: f64,
    #[serde(default = "holdout_salt")]
    pub salt: String,
    #[serde(default = "fourteen")]
    pub attribution_days: f64,
}

fn holdout_salt() -> String {
    "global".into()
}

/// Model artifact files, relative to the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    pub churn: Option<String>,
    pub purchase: Option<String>,
    /// offer id -> response model file
    pub response: BTreeMap<String, String>,
    /// Models to follow in the Redis registry (`churn`, `purchase`, `response:<offer id>`):
    /// when `touchpoint-train publish` moves a model's `current` pointer, running servers
    /// switch to it without a restart (it replaces the file model of the same name).
    pub registry: Vec<String>,
    /// How often the registry pointers are checked.
    pub poll_seconds: f64,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self { churn: None, purchase: None, response: BTreeMap::new(), registry: vec![], poll_seconds: 5.0 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub stages: Vec<String>,
    pub channels: Vec<String>,
    #[serde(default)]
    pub placements: Vec<String>,
    pub content_ref: String,
    #[serde(default)]
    pub priority: f64,
    #[serde(default)]
    pub value: f64,
    #[serde(default)]
    pub cost: f64,
    #[serde(default = "one_f")]
    pub weight: f64,
    /// RFC 3339 time from which the offer may be shown.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// RFC 3339 time from which the offer may no longer be shown.
    #[serde(default)]
    pub valid_until: Option<String>,
    /// CEL rule: the offer is a candidate only when it holds.
    #[serde(default)]
    pub eligibility: Option<String>,
    /// At most `max` showings per `days` per user, on any channel.
    #[serde(default)]
    pub cap: Option<LimitConfig>,
    #[serde(default)]
    pub cooldown_after_dismiss_days: f64,
    #[serde(default)]
    pub cooldown_after_accept_days: f64,
}

fn one_f() -> f64 {
    1.0
}

/// The file as written (after environment overrides), before derivation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerConfig,
    pub redis: RedisConfig,
    pub journey: JourneyConfig,
    pub decisions: DecisionsConfig,
    pub segments: Vec<SegmentConfig>,
    pub offers: Vec<OfferConfig>,
    pub contact_policy: Vec<ContactPolicyConfig>,
    pub fallbacks: Vec<FallbackConfig>,
    pub models: ModelsConfig,
    pub experiments: Vec<ExperimentConfig>,
    pub holdout: Option<HoldoutConfig>,
    /// Event types that count as a visit in experiment results.
    pub visit_events: Vec<String>,
}

/// A validated configuration with its derived domain objects.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: FileConfig,
    pub policy: Arc<Policy>,
    /// Content hash of the file, overrides and model files: changes whenever behaviour may.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub line: Option<usize>,
    pub entry: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}: {}", self.source_name, line, self.entry, self.message),
            None => write!(f, "{}: {}: {}", self.source_name, self.entry, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Scalar settings that environment variables may override, as `TOUCHPOINT_<SECTION>_<KEY>`.
const OVERRIDABLE: &[(&str, &str, Kind)] = &[
    ("server", "listen", Kind::Str),
    ("server", "metrics_listen", Kind::Str),
    ("server", "shutdown_grace_ms", Kind::Int),
    ("redis", "url", Kind::Str),
    ("redis", "cluster", Kind::Bool),
    ("redis", "key_prefix", Kind::Str),
    ("redis", "command_timeout_ms", Kind::Int),
    ("redis", "journey_log_maxlen", Kind::Int),
    ("redis", "decision_log_maxlen", Kind::Int),
    ("redis", "dedup_window_days", Kind::Float),
    ("redis", "dedup_max_per_user", Kind::Int),
    ("redis", "recent_decisions_per_user", Kind::Int),
    ("journey", "lapse_after_days", Kind::Float),
    ("journey", "purchase_event", Kind::Str),
    ("decisions", "default_limit", Kind::Int),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

pub const ENV_PREFIX: &str = "TOUCHPOINT_";

impl Config {
    /// Reads and validates a file, applying overrides from `vars` (pass `std::env::vars()`).
    pub fn load(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            line: None,
            entry: "file".into(),
            message: format!("cannot read: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&src, &name, vars, &base)
    }

    /// The built-in defaults (no offers), for the in-memory demo and unit tests.
    pub fn defaults() -> Config {
        Self::from_toml("", "<defaults>", std::iter::empty()).expect("defaults are valid")
    }

    /// Parses TOML text; relative model paths resolve against the working directory.
    pub fn from_toml(
        src: &str,
        source_name: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::parse(src, source_name, vars, Path::new("."))
    }

    fn parse(
        src: &str,
        source_name: &str,
        vars: impl IntoIterator<Item = (String, String)>,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let err = |line, entry: &str, message: String| ConfigError {
            source_name: source_name.into(),
            line,
            entry: entry.into(),
            message,
        };
        let mut doc: toml::Table = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_at(src, s.start));
            err(line, "toml", e.message().to_string())
        })?;
        let mut applied = Vec::new();
        for (var, raw) in vars {
            let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some((section, key, kind)) = OVERRIDABLE.iter().find(|(s, k, _)| rest == format!("{s}_{k}")) else {
                continue;
            };
            let value = parse_override(*kind, &raw)
                .ok_or_else(|| err(None, &var, format!("cannot parse {raw:?} as {kind:?}")))?;
            let table = doc
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| err(None, section, "must be a table".into()))?;
            table.insert(key.to_string(), value);
            applied.push(format!("{var}={raw}"));
        }
        applied.sort();
        let file: FileConfig = FileConfig::deserialize(toml::Value::Table(doc)).map_err(|e| {
            // Spans are lost once overrides are merged; name the key toml reports and find its line.
            let msg = e.message().to_string();
            let line = e.span().map(|s| line_at(src, s.start));
            err(line, "toml", msg)
        })?;
        let mut hasher = Sha256::new();
        hasher.update(src.as_bytes());
        for a in &applied {
            hasher.update(a.as_bytes());
        }
        let models =
            load_models(&file.models, base).map_err(|(entry, message)| err(locate(src, &entry), &entry, message))?;
        for (name, version) in models.versions() {
            hasher.update(format!("model {name}={version}").as_bytes());
        }
        let version = hex::encode(&hasher.finalize()[..6]);
        validate(file, models, version, base).map_err(|(entry, message)| err(locate(src, &entry), &entry, message))
    }
}

fn parse_override(kind: Kind, raw: &str) -> Option<toml::Value> {
    Some(match kind {
        Kind::Str => toml::Value::String(raw.to_string()),
        Kind::Int => toml::Value::Integer(raw.trim().parse().ok()?),
        Kind::Float => toml::Value::Float(raw.trim().parse().ok()?),
        Kind::Bool => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return None,
        }),
    })
}

type Invalid = (String, String);

fn read_model(entry: &str, path: &str, base: &Path) -> Result<Arc<BoundModel>, Invalid> {
    let full: PathBuf = base.join(path);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| (entry.to_string(), format!("cannot read {}: {e}", full.display())))?;
    let artifact: ModelArtifact = serde_json::from_str(&text)
        .map_err(|e| (entry.to_string(), format!("{} is not a model artifact: {e}", full.display())))?;
    BoundModel::bind(artifact).map(Arc::new).map_err(|e| (entry.to_string(), format!("{}: {e}", full.display())))
}

fn load_models(m: &ModelsConfig, base: &Path) -> Result<Models, Invalid> {
    let opt = |entry: &str, p: &Option<String>| p.as_ref().map(|p| read_model(entry, p, base)).transpose();
    Ok(Models {
        churn: opt("models.churn", &m.churn)?,
        purchase: opt("models.purchase", &m.purchase)?,
        response: m
            .response
            .iter()
            .map(|(offer, p)| Ok((offer.clone(), read_model(&format!("models.response.{offer}"), p, base)?)))
            .collect::<Result<_, Invalid>>()?,
    })
}

fn days_ms(days: f64) -> Millis {
    (days * MS_PER_DAY as f64) as Millis
}

/// The longest window a cap, contact limit, cooldown or attribution may span: per-user helper
/// keys in Redis expire after this long.
pub const MAX_WINDOW_DAYS: f64 = 90.0;

fn limit(entry: &str, l: &LimitConfig) -> Result<Limit, Invalid> {
    if l.max == 0 || !(l.days > 0.0 && l.days <= MAX_WINDOW_DAYS) {
        return Err((entry.to_string(), format!("needs max >= 1 and 0 < days <= {MAX_WINDOW_DAYS}")));
    }
    Ok(Limit { max: l.max, window_ms: days_ms(l.days) })
}

fn validate(file: FileConfig, models: Models, version: String, base: &Path) -> Result<Config, Invalid> {
    let bad = |entry: &str, msg: &str| Err((entry.to_string(), msg.to_string()));
    if file.server.listen.parse::<std::net::SocketAddr>().is_err() {
        return bad("server.listen", "must be an address such as 127.0.0.1:50051");
    }
    if !file.server.metrics_listen.is_empty() && file.server.metrics_listen.parse::<std::net::SocketAddr>().is_err() {
        return bad("server.metrics_listen", "must be an address such as 127.0.0.1:9464, or empty");
    }
    let r = &file.redis;
    if !(r.url.starts_with("memory://") || r.url.starts_with("redis://") || r.url.starts_with("rediss://")) {
        return bad("redis.url", "must start with memory://, redis:// or rediss://");
    }
    if r.key_prefix.is_empty() || r.key_prefix.len() > 64 || r.key_prefix.contains(['{', '}', ' ']) {
        return bad("redis.key_prefix", "must be 1-64 characters without braces or spaces");
    }
    if r.command_timeout_ms == 0 {
        return bad("redis.command_timeout_ms", "must be positive");
    }
    if !(r.dedup_window_days > 0.0 && r.dedup_window_days.is_finite()) {
        return bad("redis.dedup_window_days", "must be a positive number of days");
    }
    if r.dedup_max_per_user < crate::domain::limits::MAX_EVENTS_PER_CALL as u64 {
        // Smaller, and one large RecordEvents call could forget its own ids at once.
        return bad(
            "redis.dedup_max_per_user",
            &format!("must be at least {}", crate::domain::limits::MAX_EVENTS_PER_CALL),
        );
    }
    if r.recent_decisions_per_user == 0 {
        return bad("redis.recent_decisions_per_user", "must be positive");
    }
    if r.journey_log_maxlen == 0 || r.decision_log_maxlen == 0 {
        return bad("redis.journey_log_maxlen", "journey_log_maxlen and decision_log_maxlen must be positive");
    }

    let j = &file.journey;
    if j.stages.is_empty() {
        return bad("journey.stages", "needs at least one stage");
    }
    let mut seen = HashSet::new();
    for s in &j.stages {
        check_name("journey.stages", s, 64)
            .map_err(|e| ("journey.stages".to_string(), format!("{s:?} {}", e.message)))?;
        if !seen.insert(s.as_str()) {
            return bad("journey.stages", &format!("stage {s:?} is listed twice"));
        }
    }
    if !(j.lapse_after_days >= 0.0 && j.lapse_after_days.is_finite()) {
        return bad("journey.lapse_after_days", "must be a non-negative number of days (0 disables lapse)");
    }
    let mut triggers = Vec::new();
    for (i, t) in j.transitions.iter().enumerate() {
        let entry = format!("journey.transitions[{i}]");
        check_name(&format!("{entry}.event_type"), &t.event_type, 64).map_err(|e| (e.field.clone(), e.message))?;
        let Some(to) = j.stages.iter().position(|s| *s == t.to) else {
            return Err((format!("{entry}.to"), format!("unknown stage {:?}", t.to)));
        };
        if t.min_count == 0 {
            return Err((format!("{entry}.min_count"), "must be at least 1".into()));
        }
        triggers.push(Trigger { event_type: t.event_type.clone(), to, min_count: t.min_count });
    }
    let journey = JourneyDef::new(j.stages.clone(), triggers, j.lapse_after_days, j.purchase_event.clone());

    let d = &file.decisions;
    if d.channels.is_empty() {
        return bad("decisions.channels", "needs at least one channel");
    }
    for c in &d.channels {
        check_name("decisions.channels", c, 64)
            .map_err(|e| ("decisions.channels".to_string(), format!("{c:?} {}", e.message)))?;
    }
    if d.default_limit == 0 || d.default_limit > MAX_LIMIT {
        return bad("decisions.default_limit", &format!("must be 1..={MAX_LIMIT}"));
    }

    let mut ids = HashSet::new();
    let mut offers = Vec::new();
    let mut offer_rules = Vec::new();
    for (i, o) in file.offers.iter().enumerate() {
        let entry = format!("offers[{i}]");
        let field = |f: &str| format!("{entry}.{f}");
        check_name(&field("id"), &o.id, 128).map_err(|e| (e.field, e.message))?;
        if !ids.insert(o.id.as_str()) {
            return Err((field("id"), format!("offer id {:?} is used twice", o.id)));
        }
        if o.stages.is_empty() {
            return Err((field("stages"), format!("offer {:?} needs at least one stage", o.id)));
        }
        if let Some(s) = o.stages.iter().find(|s| !j.stages.contains(s)) {
            return Err((field("stages"), format!("offer {:?}: unknown stage {s:?}", o.id)));
        }
        if o.channels.is_empty() {
            return Err((field("channels"), format!("offer {:?} needs at least one channel", o.id)));
        }
        if let Some(c) = o.channels.iter().find(|c| !d.channels.contains(c)) {
            return Err((
                field("channels"),
                format!("offer {:?}: unknown channel {c:?} (declare it in decisions.channels)", o.id),
            ));
        }
        if o.content_ref.is_empty() {
            return Err((field("content_ref"), format!("offer {:?} needs a content reference", o.id)));
        }
        for (name, v) in [("priority", o.priority), ("value", o.value), ("cost", o.cost), ("weight", o.weight)] {
            if !v.is_finite() {
                return Err((field(name), format!("offer {:?}: must be a finite number", o.id)));
            }
        }
        if o.weight < 0.0 {
            return Err((field("weight"), format!("offer {:?}: must not be negative", o.id)));
        }
        let valid_from = parse_time(o.valid_from.as_deref()).map_err(|m| (field("valid_from"), m))?;
        let valid_until = parse_time(o.valid_until.as_deref()).map_err(|m| (field("valid_until"), m))?;
        if let (Some(a), Some(b)) = (valid_from, valid_until)
            && a >= b
        {
            return Err((field("valid_until"), format!("offer {:?}: must be after valid_from", o.id)));
        }
        let eligibility = o
            .eligibility
            .as_deref()
            .map(|src| Rule::compile(src, Expect::Bool, true))
            .transpose()
            .map_err(|e| (field("eligibility"), format!("offer {:?}: {e}", o.id)))?;
        let cap = o.cap.as_ref().map(|c| limit(&field("cap"), c)).transpose()?;
        for (name, d) in [
            ("cooldown_after_dismiss_days", o.cooldown_after_dismiss_days),
            ("cooldown_after_accept_days", o.cooldown_after_accept_days),
        ] {
            if !(0.0..=MAX_WINDOW_DAYS).contains(&d) {
                return Err((field(name), format!("offer {:?}: must be 0..={MAX_WINDOW_DAYS} days", o.id)));
            }
        }
        offer_rules.push((
            eligibility,
            cap,
            days_ms(o.cooldown_after_dismiss_days),
            days_ms(o.cooldown_after_accept_days),
        ));
        offers.push(Offer {
            id: o.id.clone(),
            name: if o.name.is_empty() { o.id.clone() } else { o.name.clone() },
            stages: o.stages.clone(),
            channels: o.channels.clone(),
            placements: o.placements.clone(),
            content_ref: o.content_ref.clone(),
            priority: o.priority,
            value: o.value,
            cost: o.cost,
            weight: o.weight,
            valid_from,
            valid_until,
        });
    }
    let offer_rules: Vec<OfferRules> = offers
        .iter()
        .zip(offer_rules)
        .map(|(o, (eligibility, cap, dismiss, accept))| OfferRules {
            eligibility,
            cap,
            cooldown_after_dismiss_ms: dismiss,
            cooldown_after_accept_ms: accept,
            value: Prepared::new(offer_value(o)),
        })
        .collect();
    let catalogue = Catalogue::new(offers);

    let mut segments = Vec::new();
    let mut segment_ids = HashSet::new();
    for (i, s) in file.segments.iter().enumerate() {
        let entry = format!("segments[{i}]");
        check_name(&format!("{entry}.id"), &s.id, 128).map_err(|e| (e.field, e.message))?;
        if !segment_ids.insert(s.id.as_str()) {
            return Err((format!("{entry}.id"), format!("segment id {:?} is used twice", s.id)));
        }
        let rule = Rule::compile(&s.rule, Expect::Bool, false)
            .map_err(|e| (format!("{entry}.rule"), format!("segment {:?}: {e}", s.id)))?;
        segments.push(Segment { id: s.id.clone(), kind: s.kind.clone(), rule });
    }

    let priority = if d.priority.trim().is_empty() {
        Priority::Default
    } else {
        Priority::Rule(
            Rule::compile(&d.priority, Expect::Number, true).map_err(|e| ("decisions.priority".to_string(), e))?,
        )
    };
    let exploration = match d.exploration.policy.as_str() {
        "none" => Exploration::None,
        "epsilon_greedy" if (0.0..=1.0).contains(&d.exploration.epsilon) => {
            Exploration::EpsilonGreedy { epsilon: d.exploration.epsilon }
        }
        "epsilon_greedy" => return bad("decisions.exploration", "epsilon must be within 0..=1"),
        other => return bad("decisions.exploration", &format!("unknown policy {other:?} (none, epsilon_greedy)")),
    };
    if d.deadline_ms == 0 {
        return bad("decisions.deadline_ms", "must be positive");
    }

    let mut contact_limits: HashMap<String, Vec<Limit>> = HashMap::new();
    for (i, c) in file.contact_policy.iter().enumerate() {
        let entry = format!("contact_policy[{i}]");
        if !d.channels.contains(&c.channel) {
            return Err((format!("{entry}.channel"), format!("unknown channel {:?}", c.channel)));
        }
        let limits = c.limits.iter().map(|l| limit(&format!("{entry}.limits"), l)).collect::<Result<Vec<_>, _>>()?;
        contact_limits.entry(c.channel.clone()).or_default().extend(limits);
    }

    let mut fallbacks = Vec::new();
    for (i, f) in file.fallbacks.iter().enumerate() {
        let entry = format!("fallbacks[{i}]");
        if !d.channels.contains(&f.channel) {
            return Err((format!("{entry}.channel"), format!("unknown channel {:?}", f.channel)));
        }
        if let Some(s) = f.stage.as_ref().filter(|s| !j.stages.contains(s)) {
            return Err((format!("{entry}.stage"), format!("unknown stage {s:?}")));
        }
        for o in &f.offers {
            match catalogue.get(o) {
                None => return Err((format!("{entry}.offers"), format!("unknown offer {o:?}"))),
                Some(offer) if !offer.channels.contains(&f.channel) => {
                    return Err((format!("{entry}.offers"), format!("offer {o:?} is not for channel {:?}", f.channel)));
                }
                Some(_) => {}
            }
        }
        fallbacks.push(Fallback { channel: f.channel.clone(), stage: f.stage.clone(), offers: f.offers.clone() });
    }
    for (i, name) in file.models.registry.iter().enumerate() {
        let known = matches!(name.as_str(), "churn" | "purchase")
            || name.strip_prefix("response:").is_some_and(|o| catalogue.get(o).is_some());
        if !known {
            return Err((
                format!("models.registry[{i}]"),
                format!("{name:?} is not churn, purchase or response:<offer id>"),
            ));
        }
    }
    if !(file.models.poll_seconds > 0.0 && file.models.poll_seconds.is_finite()) {
        return Err(("models.poll_seconds".into(), "must be a positive number of seconds".into()));
    }
    if let Some(o) = models.response.keys().find(|o| catalogue.get(o).is_none()) {
        return Err((format!("models.response.{o}"), format!("unknown offer {o:?}")));
    }

    let experiments = validate_experiments(&file, &catalogue, base)?;
    let holdout = match &file.holdout {
        None => None,
        Some(h) if !(0.0..1.0).contains(&h.share) => return bad("holdout.share", "must be within 0..1"),
        Some(h) if h.share == 0.0 => None,
        Some(h) => {
            Some(GlobalHoldout { salt: h.salt.clone(), share: h.share, attribution_ms: days_ms(h.attribution_days) })
        }
    };
    for (i, t) in file.visit_events.iter().enumerate() {
        check_name(&format!("visit_events[{i}]"), t, 64).map_err(|e| (e.field, e.message))?;
    }
    let policy = Policy {
        journey,
        catalogue,
        offer_rules,
        segments,
        priority,
        exploration,
        contact_limits,
        models,
        fallbacks,
        channels: d.channels.clone(),
        default_limit: d.default_limit,
        experiments,
        holdout,
        visit_events: if file.visit_events.is_empty() { vec!["page_view".into()] } else { file.visit_events.clone() },
    };
    Ok(Config { file, policy: Arc::new(policy), version })
}

/// An id usable in store fields: letters, digits, `_`, `-`, `.` (no `|` or `:`).
fn check_experiment_name(field: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty()
        || value.len() > 64
        || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err((field.to_string(), format!("{value:?} must be 1-64 letters, digits, _ - or .")));
    }
    Ok(())
}

fn validate_experiments(file: &FileConfig, catalogue: &Catalogue, base: &Path) -> Result<Vec<Experiment>, Invalid> {
    let mut out: Vec<Experiment> = Vec::new();
    for (i, e) in file.experiments.iter().enumerate() {
        let entry = format!("experiments[{i}]");
        let f = |name: &str| format!("{entry}.{name}");
        check_experiment_name(&f("id"), &e.id)?;
        if e.id == GLOBAL_HOLDOUT || out.iter().any(|x| x.id == e.id) {
            return Err((f("id"), format!("experiment id {:?} is taken", e.id)));
        }
        let layer = e.layer.clone().unwrap_or_else(|| e.id.clone());
        check_experiment_name(&f("layer"), &layer)?;
        if !(e.offset >= 0.0 && e.allocation > 0.0 && e.offset + e.allocation <= 1.0 + 1e-12) {
            return Err((f("allocation"), "offset >= 0, allocation > 0 and offset + allocation <= 1".into()));
        }
        let start = parse_time(e.start.as_deref()).map_err(|m| (f("start"), m))?;
        let end = parse_time(e.end.as_deref()).map_err(|m| (f("end"), m))?;
        if let Some(c) = e.channels.iter().find(|c| !file.decisions.channels.contains(c)) {
            return Err((f("channels"), format!("unknown channel {c:?}")));
        }
        let targeting = e
            .targeting
            .as_deref()
            .map(|src| Rule::compile(src, Expect::Bool, false))
            .transpose()
            .map_err(|m| (f("targeting"), format!("experiment {:?}: {m}", e.id)))?;
        if e.variants.len() < 2 {
            return Err((f("variants"), format!("experiment {:?} needs at least two variants", e.id)));
        }
        let mut variants = Vec::new();
        for (k, v) in e.variants.iter().enumerate() {
            let vf = |name: &str| format!("{entry}.variants[{k}].{name}");
            check_experiment_name(&vf("name"), &v.name)?;
            if variants.iter().any(|x: &Variant| x.name == v.name) {
                return Err((vf("name"), format!("variant {:?} is listed twice", v.name)));
            }
            if !(v.weight > 0.0 && v.weight.is_finite()) {
                return Err((vf("weight"), "must be positive".into()));
            }
            let priority = v
                .priority
                .as_deref()
                .map(|src| Rule::compile(src, Expect::Number, true))
                .transpose()
                .map_err(|m| (vf("priority"), m))?;
            let model = |name: &str, p: &Option<String>| p.as_ref().map(|p| read_model(&vf(name), p, base)).transpose();
            let offers = match &v.offers {
                Some(list) => {
                    if let Some(o) = list.iter().find(|o| catalogue.get(o).is_none()) {
                        return Err((vf("offers"), format!("unknown offer {o:?}")));
                    }
                    Some(list.iter().cloned().collect())
                }
                None => None,
            };
            let exploration = match (v.exploration.as_deref(), v.epsilon) {
                (None, _) => None,
                (Some("none"), _) => Some(Exploration::None),
                (Some("epsilon_greedy"), eps) => {
                    let epsilon = eps.unwrap_or(0.1);
                    if !(0.0..=1.0).contains(&epsilon) {
                        return Err((vf("epsilon"), "must be within 0..=1".into()));
                    }
                    Some(Exploration::EpsilonGreedy { epsilon })
                }
                (Some(other), _) => {
                    return Err((vf("exploration"), format!("unknown policy {other:?} (none, epsilon_greedy)")));
                }
            };
            let overrides = Overrides {
                priority,
                churn: model("churn_model", &v.churn_model)?,
                purchase: model("purchase_model", &v.purchase_model)?,
                offers,
                exploration,
                holdout: v.holdout,
            };
            variants.push(Variant { name: v.name.clone(), weight: v.weight, overrides });
        }
        let control = e.control.clone().unwrap_or_else(|| variants[0].name.clone());
        if !variants.iter().any(|v| v.name == control) {
            return Err((f("control"), format!("no variant named {control:?}")));
        }
        if !(e.attribution_days > 0.0 && e.attribution_days <= MAX_WINDOW_DAYS) {
            return Err((f("attribution_days"), format!("must be within 0..={MAX_WINDOW_DAYS} days")));
        }
        let exp = Experiment {
            id: e.id.clone(),
            salt: e.salt.clone().unwrap_or_else(|| e.id.clone()),
            layer,
            offset: e.offset,
            allocation: e.allocation,
            start,
            end,
            channels: e.channels.clone(),
            targeting,
            variants,
            control,
            attribution_ms: days_ms(e.attribution_days),
        };
        let (from, to) = exp.slice();
        if let Some(other) = out.iter().find(|o| o.layer == exp.layer && o.slice().0 < to && from < o.slice().1) {
            return Err((
                f("offset"),
                format!(
                    "overlaps experiment {:?} in layer {:?}: one layer's experiments need disjoint slices",
                    other.id, exp.layer
                ),
            ));
        }
        out.push(exp);
    }
    Ok(out)
}

fn parse_time(s: Option<&str>) -> Result<Option<Millis>, String> {
    match s {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}")),
    }
}

impl RedisConfig {
    pub fn dedup_window_ms(&self) -> Millis {
        (self.dedup_window_days * MS_PER_DAY as f64) as Millis
    }
}

/// 1-based line of a byte offset.
fn line_at(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Finds the line of an entry path such as `offers[2].stages`, `redis.key_prefix` or
/// `experiments[0].variants[1].priority`: the n-th `[[array]]` header (nested arrays counted
/// from their parent's header), or the `[section]` header, then the key inside that table.
fn locate(src: &str, entry: &str) -> Option<usize> {
    let lines: Vec<&str> = src.lines().collect();
    let (table, key) = match entry.rsplit_once('.') {
        Some((t, k)) if !k.contains('[') => (t, Some(k)),
        _ => (entry, None),
    };
    let mut start = 0usize;
    let mut end = lines.len();
    let mut path: Vec<&str> = Vec::new();
    let mut indexed = false;
    for part in table.split('.') {
        let (name, idx) = match part.split_once('[') {
            Some((n, i)) => (n, Some(i.trim_end_matches(']').parse::<usize>().ok()?)),
            None => (part, None),
        };
        path.push(name);
        let header = match idx {
            Some(_) => format!("[[{}]]", path.join(".")),
            None => format!("[{}]", path.join(".")),
        };
        let found = lines[start..end]
            .iter()
            .enumerate()
            .filter(|(_, l)| l.trim() == header)
            .map(|(i, _)| start + i)
            .nth(idx.unwrap_or(0))?;
        start = found;
        indexed |= idx.is_some();
        // The table runs to the next header of the same or a shallower array.
        let own = if indexed { format!("[[{}]]", path[..1].join(".")) } else { header.clone() };
        end = lines[found + 1..end]
            .iter()
            .position(|l| l.trim() == own || l.trim() == header)
            .map_or(end, |p| found + 1 + p);
    }
    let Some(key) = key else { return Some(start + 1) };
    let found = lines[start + 1..end]
        .iter()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| l.trim_start().strip_prefix(key).is_some_and(|r| r.trim_start().starts_with('=')));
    Some(found.map_or(start, |i| start + 1 + i) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[redis]
key_prefix = "t"

[[offers]]
id = "a"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://a"

[[offers]]
id = "b"
stages = ["nowhere"]
channels = ["web"]
content_ref = "cms://b"
"#;

    fn check(src: &str, vars: &[(&str, &str)], expected: Result<(), (&str, Option<usize>)>) {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        match (Config::from_toml(src, "t.toml", vars), expected) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err((entry, line))) => {
                assert!(e.entry.starts_with(entry), "{e} should name {entry}");
                assert_eq!(e.line, line, "{e}");
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn names_the_entry_and_line() {
        check(BASE, &[], Err(("offers[1].stages", Some(13))));
        check(&BASE.replace("nowhere", "awareness"), &[], Ok(()));
        check(&BASE.replace("\"nowhere\"", "awareness"), &[], Err(("toml", Some(13))));
        check(&BASE.replace("id = \"b\"", "id = \"a\""), &[], Err(("offers[1].id", Some(12))));
        check("[server]\nlisten = \"nope\"\n", &[], Err(("server.listen", Some(2))));
        let nested = "[[experiments]]\nid = \"a\"\n[[experiments.variants]]\nname = \"x\"\n[[experiments.variants]]\nname = \"y\"\npriority = \"1 +\"\n";
        check(nested, &[], Err(("experiments[0].variants[1].priority", Some(7))));
        check("[server]\nlisn = 1\n", &[], Err(("toml", None)));
    }

    #[test]
    fn env_overrides_scalars() {
        let vars = [("TOUCHPOINT_REDIS_KEY_PREFIX".to_string(), "env".to_string()), ("OTHER".into(), "x".into())];
        let c = Config::from_toml("", "t", vars).unwrap();
        assert_eq!(c.file.redis.key_prefix, "env");
        let c2 = Config::from_toml("", "t", std::iter::empty()).unwrap();
        assert_ne!(c.version, c2.version, "overrides change the version");
        check(
            "",
            &[("TOUCHPOINT_SERVER_SHUTDOWN_GRACE_MS", "soon")],
            Err(("TOUCHPOINT_SERVER_SHUTDOWN_GRACE_MS", None)),
        );
        check("", &[("TOUCHPOINT_REDIS_URL", "ftp://x")], Err(("redis.url", None)));
    }

    #[test]
    fn default_journey_matches_design() {
        let c = Config::defaults();
        assert_eq!(c.policy.journey, JourneyDef::default_journey());
    }
}
