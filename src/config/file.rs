//! The TOML file format: the raw sections and entries as written, with their defaults.
//!
//! Unknown keys are not refused here (no `deny_unknown_fields`): `read.rs` collects them with
//! their paths so that they are reported together with every other problem of the file.
use crate::domain::MS_PER_DAY;
use crate::domain::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
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
pub struct SegmentConfig {
    pub id: String,
    /// demographic, behavioural, psychographic, geographic (or any label, for reporting).
    #[serde(default)]
    pub kind: String,
    pub rule: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LimitConfig {
    pub max: u32,
    pub days: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactPolicyConfig {
    pub channel: String,
    pub limits: Vec<LimitConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FallbackConfig {
    pub channel: String,
    #[serde(default)]
    pub stage: Option<String>,
    pub offers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
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
#[serde(default)]
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

impl RedisConfig {
    /// How long an event id is remembered for de-duplication, in milliseconds.
    pub fn dedup_window_ms(&self) -> Millis {
        (self.dedup_window_days * MS_PER_DAY as f64) as Millis
    }
}
