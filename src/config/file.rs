//! The TOML file format: the raw sections and entries as written, with their defaults.
//!
//! Unknown keys are not refused here (no `deny_unknown_fields`): `read.rs` collects them with
//! their paths so that they are reported together with every other problem of the file.
use crate::domain::MS_PER_DAY;
use crate::domain::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[server]`: where the gRPC and metrics endpoints listen.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerConfig {
    /// gRPC address.
    pub listen: String,
    /// The HTTP port: Prometheus `/metrics`, and (with `http_api`) the web console and the
    /// HTTP/JSON API; empty disables it.
    pub metrics_listen: String,
    /// Serve the web console and the HTTP/JSON API on the HTTP port. The port is plaintext
    /// HTTP/1.1 without the gRPC port's TLS, client certificates and connection limits, so the
    /// default is on only when the gRPC port has no `[server.tls]` either.
    pub http_api: Option<bool>,
    /// How long shutdown waits for in-flight calls to finish.
    pub shutdown_grace_ms: u64,
    /// How often the KPI gauges on `/metrics` are recomputed from the counters (0: never).
    pub kpi_refresh_seconds: u64,
    /// `[server.tls]`: gRPC over TLS; none serves plaintext.
    pub tls: Option<super::tls::ServerTlsConfig>,
    /// `[server.limits]`: concurrency, breaker, HTTP/2 and connection limits.
    pub limits: super::limits::LimitsConfig,
}

impl ServerConfig {
    /// Whether the HTTP port serves the console and the JSON API (`http_api`, by default only
    /// when gRPC is plaintext too).
    pub fn http_api_enabled(&self) -> bool {
        self.http_api.unwrap_or(self.tls.is_none())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".into(),
            metrics_listen: String::new(),
            http_api: None,
            shutdown_grace_ms: 10_000,
            kpi_refresh_seconds: 60,
            tls: None,
            limits: Default::default(),
        }
    }
}

/// `[redis]`: the store and its retention limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `memory://` for the embedded in-memory store, `redis://host:port/db` for Redis.
    /// With `cluster = true`, a comma-separated list of seed nodes.
    pub url: String,
    /// Redis Cluster rather than a single node.
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
    /// Days the funnel and offer counters of a day are kept (analytics; at least 1).
    pub counter_retention_days: u32,
    /// Archive mode: the log streams are not trimmed as they grow; `touchpoint archive` trims
    /// what it has archived, and a write that would pass a `*_log_maxlen` cap is refused
    /// (RESOURCE_EXHAUSTED) until the archiver catches up, so no accepted entry is lost.
    pub archive: bool,
    /// `rediss://`: PEM CA certificates to trust instead of the system roots.
    pub tls_ca_file: String,
    /// `rediss://`: PEM client certificate, for a Redis with `tls-auth-clients yes`.
    pub tls_cert_file: String,
    /// `rediss://`: the client certificate's PEM private key.
    pub tls_key_file: String,
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
            counter_retention_days: 90,
            archive: false,
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

/// `[[journey.transitions]]`: an event type that moves a user to a stage.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TransitionConfig {
    /// The event type that triggers the transition.
    pub event_type: String,
    /// The stage it moves the user to.
    pub to: String,
    /// The transition fires from the `min_count`-th event of this type on.
    #[serde(default = "one")]
    pub min_count: u64,
}

fn one() -> u64 {
    1
}

/// `[journey]`: the stages and how events move users through them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct JourneyConfig {
    /// Stage names, in journey order (users only move forward).
    pub stages: Vec<String>,
    /// Days without activity after which a user counts as lapsed (0 disables).
    pub lapse_after_days: f64,
    /// The event type that counts as a purchase.
    pub purchase_event: String,
    /// The event type that withdraws consent for the channel named by its `channel` property.
    pub unsubscribe_event: String,
    /// The event type that grants consent again for the channel named by its `channel` property.
    pub subscribe_event: String,
    /// Channels whose offers need the user's consent known before they are made (e-mail, SMS).
    /// A degraded answer (store unavailable) cannot read consent, so these channels may have
    /// no `[[fallbacks]]`: their degraded answers offer nothing (`no_fallback_offer`).
    pub consent_channels: Vec<String>,
    /// The triggers between stages.
    pub transitions: Vec<TransitionConfig>,
    /// `[journey.feature_events]`: which event types feed which role-named feature; a role
    /// left out is read off the transitions (see `domain::journey::FeatureEvents`).
    pub feature_events: FeatureEventsConfig,
}

/// `[journey.feature_events]`: event types per feature role (each optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FeatureEventsConfig {
    /// Events counted as page views (`log_page_views`).
    pub page_views: Option<Vec<String>>,
    /// Events counted as product views (`log_product_views`).
    pub product_views: Option<Vec<String>>,
    /// Events counted as cart additions (`log_add_to_cart`, `cart_abandoned`).
    pub carts: Option<Vec<String>>,
    /// Events counted as checkouts (`log_checkouts`).
    pub checkouts: Option<Vec<String>>,
    /// Events counted as reviews and referrals (`log_reviews_referrals`).
    pub advocacy: Option<Vec<String>>,
}

impl Default for JourneyConfig {
    fn default() -> Self {
        let t = |e: &str, to: &str| TransitionConfig { event_type: e.into(), to: to.into(), min_count: 1 };
        Self {
            stages: ["awareness", "consideration", "conversion", "retention", "advocacy"].map(String::from).into(),
            lapse_after_days: 30.0,
            purchase_event: "purchase".into(),
            unsubscribe_event: "unsubscribe".into(),
            subscribe_event: "subscribe".into(),
            consent_channels: vec![],
            transitions: vec![
                t("page_view", "awareness"),
                t("product_view", "consideration"),
                t("add_to_cart", "conversion"),
                t("checkout_started", "conversion"),
                t("purchase", "retention"),
                t("review_posted", "advocacy"),
                t("referral", "advocacy"),
            ],
            feature_events: FeatureEventsConfig::default(),
        }
    }
}

/// `[decisions]`: channels, limits, arbitration and exploration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct DecisionsConfig {
    /// Channels a request may name.
    pub channels: Vec<String>,
    /// Offers returned when a request's `limit` is 0.
    pub default_limit: u32,
    /// CEL priority expression; empty for the built-in default (see `Priority::Default`).
    pub priority: String,
    /// How long a decision may wait for the store before answering from the fallback
    /// (a shorter gRPC deadline on the request wins).
    pub deadline_ms: u64,
    /// `[decisions.exploration]`.
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

/// `[decisions.exploration]`: how often a random candidate is shown instead of the best.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ExplorationConfig {
    /// `none`, `epsilon_greedy`, `softmax` or `thompson`.
    pub policy: String,
    /// Share of ranks filled at random under `epsilon_greedy`.
    pub epsilon: f64,
    /// `softmax`: picks with probability proportional to `exp(priority / temperature)`
    /// (in the priority's units; positive).
    pub temperature: f64,
    /// `thompson`: the outcome that counts as a success (`click`, `accept` or `conversion`);
    /// trials are the decisions that picked the offer.
    pub reward: String,
    /// `thompson`: joint posterior draws estimating each offer's win probability (100..=100000).
    pub samples: u32,
    /// `thompson`: the posteriors count the last this many days (at most
    /// `redis.counter_retention_days`).
    pub window_days: u32,
    /// `thompson`: how often the server re-reads the posteriors (seconds, at least 1).
    pub refresh_seconds: u64,
    /// `thompson`: the Beta prior every offer starts from.
    pub prior_alpha: f64,
    /// `thompson`: the prior's beta.
    pub prior_beta: f64,
}

impl Default for ExplorationConfig {
    fn default() -> Self {
        Self {
            policy: "none".into(),
            epsilon: 0.1,
            temperature: 1.0,
            reward: "click".into(),
            samples: 2000,
            window_days: 14,
            refresh_seconds: 10,
            prior_alpha: 1.0,
            prior_beta: 1.0,
        }
    }
}

impl ExplorationConfig {
    /// The outcome kinds Thompson sampling can count as a success.
    pub const REWARDS: [&str; 3] = ["click", "accept", "conversion"];
}

/// `[[segments]]`: a named CEL rule over the profile.
#[derive(Debug, Clone, Deserialize)]
pub struct SegmentConfig {
    /// Segment id, returned with decisions.
    pub id: String,
    /// demographic, behavioural, psychographic, geographic (or any label, for reporting).
    #[serde(default)]
    pub kind: String,
    /// CEL rule: the user is in the segment when it holds.
    pub rule: String,
}

/// At most `max` contacts per `days`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LimitConfig {
    /// Contacts allowed in the window.
    pub max: u32,
    /// Window length in days.
    pub days: f64,
}

/// `[[contact_policy]]`: contact limits of one channel.
#[derive(Debug, Clone, Deserialize)]
pub struct ContactPolicyConfig {
    /// The channel limited.
    pub channel: String,
    /// Every limit must hold.
    pub limits: Vec<LimitConfig>,
}

/// `[[fallbacks]]`: offers answered when the store is unavailable.
#[derive(Debug, Clone, Deserialize)]
pub struct FallbackConfig {
    /// The channel it answers for.
    pub channel: String,
    /// The stage it is for; the entry without a stage serves users whose stage is unknown.
    #[serde(default)]
    pub stage: Option<String>,
    /// Offer ids, in order.
    pub offers: Vec<String>,
}

/// `[[experiments.variants]]`: one arm of an experiment and what it overrides.
#[derive(Debug, Clone, Deserialize)]
pub struct VariantConfig {
    /// Variant name, unique in its experiment.
    pub name: String,
    /// Relative share of the experiment's traffic.
    #[serde(default = "one_f")]
    pub weight: f64,
    /// A CEL priority expression for this variant's decisions.
    #[serde(default)]
    pub priority: Option<String>,
    /// Model artifact files (relative to the config file) replacing the configured ones.
    #[serde(default)]
    pub churn_model: Option<String>,
    /// Purchase model file replacing the configured one.
    #[serde(default)]
    pub purchase_model: Option<String>,
    /// Only these offers are candidates.
    #[serde(default)]
    pub offers: Option<Vec<String>>,
    /// none | epsilon_greedy (with `epsilon`) | softmax (with `temperature`) | thompson (with
    /// decisions.exploration's reward, samples and window), overriding decisions.exploration.
    #[serde(default)]
    pub exploration: Option<String>,
    /// Epsilon for `exploration = "epsilon_greedy"` (default 0.1).
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Temperature for `exploration = "softmax"` (default 1).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// No offers for this variant's users (control of "contact or not").
    #[serde(default)]
    pub holdout: bool,
}

/// `[[experiments]]`: a randomised experiment over decisions.
#[derive(Debug, Clone, Deserialize)]
pub struct ExperimentConfig {
    /// Experiment id (letters, digits, `_ - .`).
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
    /// Share of the layer in the experiment (see `offset`).
    #[serde(default = "one_f")]
    pub allocation: f64,
    /// RFC 3339 time the experiment starts.
    #[serde(default)]
    pub start: Option<String>,
    /// RFC 3339 time the experiment ends.
    #[serde(default)]
    pub end: Option<String>,
    /// Channels it runs on; empty for all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// CEL rule: only users for whom it holds enter the experiment.
    #[serde(default)]
    pub targeting: Option<String>,
    /// The variant others are compared with; default: the first.
    #[serde(default)]
    pub control: Option<String>,
    /// How long after a showing an outcome counts for the variant.
    #[serde(default = "fourteen")]
    pub attribution_days: f64,
    /// At least two.
    pub variants: Vec<VariantConfig>,
}

fn fourteen() -> f64 {
    14.0
}

/// `[holdout]`: the global holdout, users who never receive offers.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HoldoutConfig {
    /// Share of all users who never receive offers (0 disables).
    pub share: f64,
    /// Hash salt of the holdout assignment.
    #[serde(default = "holdout_salt")]
    pub salt: String,
    /// How long after a decision an outcome counts for the holdout comparison.
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
    /// Churn model file.
    pub churn: Option<String>,
    /// Purchase model file.
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

/// `[[offers]]`: one offer of the catalogue.
#[derive(Debug, Clone, Deserialize)]
pub struct OfferConfig {
    /// Offer id, unique.
    pub id: String,
    /// Display name; default: the id.
    #[serde(default)]
    pub name: String,
    /// Journey stages the offer is for.
    pub stages: Vec<String>,
    /// Channels it may be shown on.
    pub channels: Vec<String>,
    /// Placements (free labels for the caller).
    #[serde(default)]
    pub placements: Vec<String>,
    /// Reference to the content, returned with the decision.
    pub content_ref: String,
    /// Static priority (the default arbitration without models).
    #[serde(default)]
    pub priority: f64,
    /// Value of an acceptance.
    #[serde(default)]
    pub value: f64,
    /// Cost of a showing.
    #[serde(default)]
    pub cost: f64,
    /// Business weight multiplying the priority.
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
    /// Days the offer is not shown again after a dismissal.
    #[serde(default)]
    pub cooldown_after_dismiss_days: f64,
    /// Days the offer is not shown again after an acceptance.
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
    /// `[server]`.
    pub server: ServerConfig,
    /// `[redis]`.
    pub redis: RedisConfig,
    /// `[journey]`.
    pub journey: JourneyConfig,
    /// `[decisions]`.
    pub decisions: DecisionsConfig,
    /// `[[segments]]`.
    pub segments: Vec<SegmentConfig>,
    /// `[[offers]]`.
    pub offers: Vec<OfferConfig>,
    /// `[[contact_policy]]`.
    pub contact_policy: Vec<ContactPolicyConfig>,
    /// `[[fallbacks]]`.
    pub fallbacks: Vec<FallbackConfig>,
    /// `[models]`.
    pub models: ModelsConfig,
    /// `[[experiments]]`.
    pub experiments: Vec<ExperimentConfig>,
    /// For each array section with an element that could not be read: the position in the
    /// file of each element that was (so later problems name the right element and line).
    #[serde(skip)]
    pub positions: std::collections::BTreeMap<String, Vec<usize>>,
    /// The `id`s of array elements that could not be read (their own problem is reported;
    /// references to them are not reported again as unknown).
    #[serde(skip)]
    pub unread_ids: std::collections::BTreeSet<String>,
    /// `[holdout]`; none by default.
    pub holdout: Option<HoldoutConfig>,
    /// Event types that count as a visit in experiment results.
    pub visit_events: Vec<String>,
    /// `[auth]`.
    pub auth: super::auth::AuthConfig,
    /// `[[kpis]]`.
    pub kpis: Vec<KpiConfig>,
    /// `[[features]]`.
    pub features: Vec<FeatureConfig>,
}

/// `[[features]]`: one feature beyond the built-in ones (`domain::features::FeatureKind`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FeatureConfig {
    /// Its name, as model artifacts name it.
    pub name: String,
    /// count | recency | monetary | attribute | one_hot | context | stage.
    pub kind: String,
    /// count, recency, monetary: the event types.
    #[serde(default)]
    pub events: Vec<String>,
    /// count (optional: ever without), monetary (required): days back from now, 1..=366.
    #[serde(default)]
    pub window_days: Option<u32>,
    /// attribute, one_hot: the profile attribute.
    #[serde(default)]
    pub attribute: Option<String>,
    /// one_hot: the value that gives 1.
    #[serde(default)]
    pub value: Option<String>,
    /// context: the request context key.
    #[serde(default)]
    pub key: Option<String>,
    /// stage: the stage that gives 1.
    #[serde(default)]
    pub stage: Option<String>,
    /// attribute, context: the value when missing.
    #[serde(default)]
    pub default: f64,
    /// Take ln(1 + x) of the value.
    #[serde(default)]
    pub log1p: bool,
}

/// `[[kpis]]`: a target for a stage's funnel or offer metric over a rolling window.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct KpiConfig {
    /// Name in reports and gauges (default `stage:metric`).
    #[serde(default)]
    pub name: Option<String>,
    /// The journey stage.
    pub stage: String,
    /// One of `domain::analytics::Metric::ALL` (e.g. `advance_rate`, `ctr`).
    pub metric: String,
    /// The value to meet.
    pub target: f64,
    /// Days ending today the value is computed over.
    #[serde(default = "seven")]
    pub window_days: u32,
    /// `at_least` or `at_most` (default: at most for lapses, time in stage and dismissals).
    #[serde(default)]
    pub direction: Option<String>,
    /// Only this channel's counts.
    #[serde(default)]
    pub channel: Option<String>,
    /// Offer metrics: only this offer.
    #[serde(default)]
    pub offer: Option<String>,
}

fn seven() -> u32 {
    7
}

impl RedisConfig {
    /// How long an event id is remembered for de-duplication, in milliseconds.
    pub fn dedup_window_ms(&self) -> Millis {
        (self.dedup_window_days * MS_PER_DAY as f64) as Millis
    }
}

impl FileConfig {
    /// The position in the file of the `i`-th element read of an array section.
    pub fn at(&self, section: &str, i: usize) -> usize {
        self.positions.get(section).and_then(|v| v.get(i)).copied().unwrap_or(i)
    }
}
