//! Configuration: defaults in code, one TOML file, environment overrides for scalar settings,
//! and validation that reports every problem of a file at once, each with its entry and line.
//!
//! The stages: parse the TOML (a syntax error stops here), apply the environment (`env.rs`),
//! read the sections into the file format (`read.rs`, `file.rs`), compile each section into
//! domain objects (`server.rs`, `journey.rs`, `offers.rs`, `decisions.rs`, `models.rs`,
//! `experiments.rs`), and give each problem its line (`spans.rs`).
use crate::domain::contact::Limit;
use crate::domain::policy::Policy;
use crate::domain::{MS_PER_DAY, Millis};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

mod auth;
mod decisions;
mod env;
mod experiments;
mod features;
mod file;
mod journey;
mod kpis;
mod limits;
mod models;
mod offers;
mod read;
mod server;
mod spans;
mod tls;

pub use auth::{ApiKey, AuthConfig, AuthPolicy, ClientConfig, ClientIdentity, KeyConfig, Role, Roles, key_hash};
pub use env::{ENV_PREFIX, Kind, OVERRIDABLE, var_name};
pub use file::*;
pub use limits::LimitsConfig;
pub use tls::{ServerTls, ServerTlsConfig, provider as tls_provider};

/// Exit code for a bad configuration (EX_CONFIG is 78; sysexits' EX_USAGE 64 is what the CLI contract names).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// The longest window a cap, contact limit, cooldown or attribution may span: per-user helper
/// keys in Redis expire after this long.
pub const MAX_WINDOW_DAYS: f64 = 90.0;

/// A validated configuration with its derived domain objects.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file as written, after environment overrides.
    pub file: FileConfig,
    /// The domain objects compiled from it.
    pub policy: Arc<Policy>,
    /// Content hash of the file, overrides and model files: changes whenever behaviour may.
    pub version: String,
    /// `[auth]`: who may call what (read again with every load: keys rotate on reload).
    pub auth: Arc<AuthPolicy>,
    /// `[server.tls]`, read again with every load (a renewed certificate on reload).
    pub tls: Option<ServerTls>,
}

/// Everything wrong with one config file, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file's name as given (a path, or a label such as `<defaults>`).
    pub source_name: String,
    /// The first problem's line, entry and message (the fields of a one-problem error, kept
    /// for callers that only show one).
    pub line: Option<usize>,
    /// See `line`.
    pub entry: String,
    /// See `line`.
    pub message: String,
    /// Every problem, the first one included; never empty.
    pub problems: Vec<Problem>,
}

/// One problem of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file; `None` when the value came from the environment or a default.
    pub line: Option<usize>,
    /// The entry at fault, such as `offers[2].channels`, or the environment variable.
    pub entry: String,
    /// What is wrong with it.
    pub message: String,
}

impl ConfigError {
    fn new(source_name: &str, problems: Vec<Problem>) -> Self {
        let first = problems.first().cloned().unwrap_or_else(|| Problem {
            line: None,
            entry: "file".into(),
            message: "invalid".into(),
        });
        Self { source_name: source_name.into(), line: first.line, entry: first.entry, message: first.message, problems }
    }

    fn one(source_name: &str, line: Option<usize>, entry: &str, message: String) -> Self {
        Self::new(source_name, vec![Problem { line, entry: entry.into(), message }])
    }
}

impl fmt::Display for ConfigError {
    /// One problem per line: `file:line: entry: message`. A message of several lines (a CEL
    /// syntax error points at the column under the rule) goes on indented.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let message = p.message.trim_end().replace('\n', "\n    ");
            match p.line {
                Some(line) => write!(f, "{}:{}: {}: {message}", self.source_name, line, p.entry)?,
                None => write!(f, "{}: {}: {message}", self.source_name, p.entry)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// An entry and what is wrong with it, before it is given a line.
type Invalid = (String, String);

/// The problems found so far; compilation goes on past each one so that all are reported.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Invalid>,
}

impl Problems {
    fn add(&mut self, entry: impl Into<String>, message: impl Into<String>) {
        self.list.push((entry.into(), message.into()));
    }

    /// The value, or `None` with the problem recorded.
    fn take<T>(&mut self, r: Result<T, Invalid>) -> Option<T> {
        r.map_err(|(entry, message)| self.add(entry, message)).ok()
    }
}

impl Config {
    /// Reads and validates a file, applying overrides from `vars` (pass `std::env::vars()`).
    pub fn load(path: &Path, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let src = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(&name, None, "file", format!("cannot read: {e}")))?;
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
        // A syntax error leaves nothing to check further: it is the one problem reported.
        let mut doc: toml::Table = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| spans::line_at(src, s.start));
            ConfigError::one(source_name, line, "toml", e.message().to_string())
        })?;
        let mut p = Problems::default();
        let applied = env::apply(&mut doc, vars, &mut p);
        let mut file = read::read(doc, &mut p);
        let mut hasher = Sha256::new();
        hasher.update(src.as_bytes());
        for a in &applied.lines {
            hasher.update(a.as_bytes());
        }
        let features = features::compile(&file, &mut p);
        let files = models::ModelFiles { base, names: crate::domain::features::all_names(&features) };
        let models = models::load(&file.models, &files, &mut p);
        for (name, version) in models.versions() {
            hasher.update(format!("model {name}={version}").as_bytes());
        }
        let mut auth = auth::compile(&file.auth, base, &mut p);
        for k in &auth.keys {
            hasher.update(format!("key {}={}", k.id, hex::encode(k.sha256)).as_bytes());
        }
        let tls = file.server.tls.as_ref().and_then(|t| tls::compile_server(t, base, &mut p));
        tls::check_redis(&mut file.redis, base, &mut p);
        let version = hex::encode(&hasher.finalize()[..6]);
        let policy = compile(&file, models, features, &files, &mut p);
        let spans = spans::Spans::new(src);
        if p.list.is_empty() {
            auth.unconfigured = auth::unconfigured(&file.auth, &auth).map(|mut problem| {
                problem.line = spans.line("auth");
                ConfigError::new(source_name, vec![problem])
            });
            return Ok(Config { file, policy: Arc::new(policy), version, auth: Arc::new(auth), tls });
        }
        let mut problems: Vec<Problem> = p
            .list
            .into_iter()
            .map(|(entry, message)| {
                // A value from the environment has no line: name the variable instead.
                let var = applied.by_path.iter().find(|(path, _)| {
                    *path == &entry || path.starts_with(&format!("{entry}.")) || entry.starts_with(&format!("{path}."))
                });
                match var {
                    Some((_, var)) => Problem { line: None, entry, message: format!("{message} (set by {var})") },
                    None if entry.starts_with(ENV_PREFIX) => Problem { line: None, entry, message },
                    None => Problem { line: spans.line(&entry), entry, message },
                }
            })
            .collect();
        problems.sort_by_key(|p| p.line);
        Err(ConfigError::new(source_name, problems))
    }
}

impl Config {
    /// What a server needs beyond a valid file: authentication on with no key (and no
    /// client certificate subject) is refused unless `auth.enabled = false` says so.
    pub fn check_serving(&self) -> Result<(), ConfigError> {
        match &self.auth.unconfigured {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// Compiles every section; with problems recorded, the policy returned is incomplete and unused.
fn compile(
    file: &FileConfig,
    models: crate::domain::policy::Models,
    features: Vec<crate::domain::features::FeatureDef>,
    files: &models::ModelFiles,
    p: &mut Problems,
) -> Policy {
    server::check(&file.server, &file.redis, p);
    limits::check(&file.server.limits, p);
    let mut journey = journey::compile(&file.journey, &file.decisions.channels, p);
    journey.tracked = features::tracked(&features);
    let d = decisions::compile(file, p);
    let (catalogue, offer_rules) = offers::compile(file, p);
    let fallbacks = decisions::fallbacks(file, &catalogue, p);
    models::check(&file.models, &catalogue, p);
    let experiments = experiments::compile(file, &catalogue, files, p);
    let holdout = experiments::holdout(file.holdout.as_ref(), p);
    let visit_events = experiments::visit_events(&file.visit_events, p);
    let kpis = kpis::compile(file, p);
    let mut policy = Policy {
        journey,
        catalogue,
        offer_rules,
        segments: d.segments,
        priority: d.priority,
        exploration: d.exploration,
        contact_limits: d.contact_limits,
        models,
        fallbacks,
        channels: file.decisions.channels.clone(),
        default_limit: file.decisions.default_limit,
        experiments,
        holdout,
        visit_events,
        kpis,
        features,
        attributes_read: None,
    };
    policy.attributes_read = policy.read_attributes();
    policy
}

fn days_ms(days: f64) -> Millis {
    (days * MS_PER_DAY as f64) as Millis
}

fn limit(entry: &str, l: &LimitConfig) -> Result<Limit, Invalid> {
    if l.max == 0 || !(l.days > 0.0 && l.days <= MAX_WINDOW_DAYS) {
        return Err((entry.to_string(), format!("needs max >= 1 and 0 < days <= {MAX_WINDOW_DAYS}")));
    }
    Ok(Limit { max: l.max, window_ms: days_ms(l.days) })
}

fn parse_time(s: Option<&str>) -> Result<Option<Millis>, String> {
    match s {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}")),
    }
}

#[cfg(test)]
mod tests;
