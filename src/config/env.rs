//! Environment overrides: every scalar setting of the single sections (server, redis, journey,
//! decisions, models, holdout, auth) as `TOUCHPOINT_<PATH>`, the path's dots written as `_`.
//!
//! Lists and the array sections (offers, segments, experiments, ...) come from the file only.
use super::Problems;
use std::collections::HashMap;

/// Prefix of every override variable.
pub const ENV_PREFIX: &str = "TOUCHPOINT_";

/// The value type of an overridable setting, for parsing the variable's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Taken as written.
    Str,
    /// A whole number.
    Int,
    /// A number.
    Float,
    /// `true`/`false`, `1`/`0` or `yes`/`no`.
    Bool,
}

/// Every overridable setting by entry path. A unit test checks it against the sections' fields,
/// so a new scalar setting cannot be forgotten here.
pub const OVERRIDABLE: &[(&str, Kind)] = &[
    ("server.listen", Kind::Str),
    ("server.metrics_listen", Kind::Str),
    ("server.shutdown_grace_ms", Kind::Int),
    ("server.limits.interactive", Kind::Int),
    ("server.limits.batch", Kind::Int),
    ("server.limits.batch_decisions", Kind::Int),
    ("server.limits.batch_nice", Kind::Int),
    ("server.limits.ingest", Kind::Int),
    ("server.limits.profiles", Kind::Int),
    ("server.limits.admin", Kind::Int),
    ("server.limits.breaker_failures", Kind::Int),
    ("server.limits.breaker_cooldown_ms", Kind::Int),
    ("server.limits.max_connections", Kind::Int),
    ("server.limits.max_concurrent_streams", Kind::Int),
    ("server.limits.max_pending_reset_streams", Kind::Int),
    ("server.limits.keepalive_interval_ms", Kind::Int),
    ("server.limits.keepalive_timeout_ms", Kind::Int),
    ("server.limits.handshake_timeout_ms", Kind::Int),
    ("redis.url", Kind::Str),
    ("redis.cluster", Kind::Bool),
    ("redis.key_prefix", Kind::Str),
    ("redis.command_timeout_ms", Kind::Int),
    ("redis.journey_log_maxlen", Kind::Int),
    ("redis.decision_log_maxlen", Kind::Int),
    ("redis.dedup_window_days", Kind::Float),
    ("redis.dedup_max_per_user", Kind::Int),
    ("redis.recent_decisions_per_user", Kind::Int),
    ("redis.counter_retention_days", Kind::Int),
    ("redis.archive", Kind::Bool),
    ("server.kpi_refresh_seconds", Kind::Int),
    ("server.http_api", Kind::Bool),
    ("redis.tls_ca_file", Kind::Str),
    ("redis.tls_cert_file", Kind::Str),
    ("redis.tls_key_file", Kind::Str),
    ("journey.lapse_after_days", Kind::Float),
    ("journey.purchase_event", Kind::Str),
    ("journey.unsubscribe_event", Kind::Str),
    ("journey.subscribe_event", Kind::Str),
    ("decisions.default_limit", Kind::Int),
    ("decisions.priority", Kind::Str),
    ("decisions.deadline_ms", Kind::Int),
    ("decisions.exploration.policy", Kind::Str),
    ("decisions.exploration.epsilon", Kind::Float),
    ("decisions.exploration.temperature", Kind::Float),
    ("decisions.exploration.reward", Kind::Str),
    ("decisions.exploration.samples", Kind::Int),
    ("decisions.exploration.window_days", Kind::Int),
    ("decisions.exploration.refresh_seconds", Kind::Int),
    ("decisions.exploration.prior_alpha", Kind::Float),
    ("decisions.exploration.prior_beta", Kind::Float),
    ("models.churn", Kind::Str),
    ("models.purchase", Kind::Str),
    ("models.poll_seconds", Kind::Float),
    ("holdout.share", Kind::Float),
    ("holdout.salt", Kind::Str),
    ("holdout.attribution_days", Kind::Float),
    ("auth.enabled", Kind::Bool),
    ("auth.keys_file", Kind::Str),
    ("auth.allow_health", Kind::Bool),
    ("auth.allow_reflection", Kind::Bool),
];

/// The variable that overrides an entry path: `redis.key_prefix` → `TOUCHPOINT_REDIS_KEY_PREFIX`.
pub fn var_name(path: &str) -> String {
    format!("{ENV_PREFIX}{}", path.replace('.', "_").to_ascii_uppercase())
}

/// What the overrides did: `VAR=value` lines (for the config version) and, by entry path, the
/// variable that set it (so a bad value names the variable rather than a line of the file).
#[derive(Debug, Default)]
pub struct Applied {
    pub lines: Vec<String>,
    pub by_path: HashMap<String, String>,
}

/// Writes the overrides found in `vars` into the parsed file. Variables with the prefix that
/// name no setting are ignored (other tools may share the prefix); a value that does not parse
/// is a problem naming the variable.
pub fn apply(doc: &mut toml::Table, vars: impl IntoIterator<Item = (String, String)>, p: &mut Problems) -> Applied {
    let names: HashMap<String, (&str, Kind)> =
        OVERRIDABLE.iter().map(|&(path, k)| (var_name(path), (path, k))).collect();
    let mut applied = Applied::default();
    for (var, raw) in vars {
        let Some(&(path, kind)) = names.get(&var) else {
            continue;
        };
        let Some(value) = parse(kind, &raw) else {
            p.add(&var, format!("cannot parse {raw:?} as {}", describe(kind)));
            continue;
        };
        let (tables, key) = path.rsplit_once('.').expect("overridable paths have a section");
        let table = tables.split('.').try_fold(&mut *doc, |t, name| {
            t.entry(name.to_string()).or_insert_with(|| toml::Value::Table(Default::default())).as_table_mut()
        });
        let Some(table) = table else {
            p.add(&var, format!("{tables} is not a table in the file"));
            continue;
        };
        table.insert(key.to_string(), value);
        applied.lines.push(format!("{var}={raw}"));
        applied.by_path.insert(path.to_string(), var);
    }
    applied.lines.sort();
    applied
}

fn parse(kind: Kind, raw: &str) -> Option<toml::Value> {
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

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "text",
        Kind::Int => "a whole number",
        Kind::Float => "a number",
        Kind::Bool => "true or false",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::*;
    use serde::Serialize;

    /// Scalar leaves of a section's serialized defaults, by path.
    fn scalars(prefix: &str, value: &toml::Value, out: &mut Vec<(String, Kind)>) {
        match value {
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| scalars(&format!("{prefix}.{k}"), v, out)),
            toml::Value::String(_) => out.push((prefix.into(), Kind::Str)),
            toml::Value::Integer(_) => out.push((prefix.into(), Kind::Int)),
            toml::Value::Float(_) => out.push((prefix.into(), Kind::Float)),
            toml::Value::Boolean(_) => out.push((prefix.into(), Kind::Bool)),
            toml::Value::Array(_) | toml::Value::Datetime(_) => {}
        }
    }

    fn leaves(name: &str, section: impl Serialize) -> Vec<(String, Kind)> {
        let mut out = Vec::new();
        scalars(name, &toml::Value::try_from(section).unwrap(), &mut out);
        out
    }

    #[test]
    fn every_scalar_of_the_single_sections_is_overridable() {
        // Optional settings are filled in so that they serialize.
        let models = ModelsConfig { churn: Some("c".into()), purchase: Some("p".into()), ..Default::default() };
        let holdout = HoldoutConfig { share: 0.1, salt: "s".into(), attribution_days: 14.0 };
        let mut all = leaves("server", ServerConfig { http_api: Some(true), ..Default::default() });
        all.extend(leaves("redis", RedisConfig::default()));
        all.extend(leaves("journey", JourneyConfig::default()));
        all.extend(leaves("decisions", DecisionsConfig::default()));
        all.extend(leaves("models", models));
        all.extend(leaves("holdout", holdout));
        let auth = super::super::auth::AuthConfig { keys_file: Some("k".into()), ..Default::default() };
        all.extend(leaves("auth", auth));
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut table: Vec<(String, Kind)> = OVERRIDABLE.iter().map(|&(p, k)| (p.to_string(), k)).collect();
        table.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(table, all);
    }

    #[test]
    fn applies_and_names_the_variable() {
        let mut doc: toml::Table = toml::from_str("[decisions]\ndefault_limit = 2\n").unwrap();
        let mut p = Problems::default();
        let vars = [
            ("TOUCHPOINT_DECISIONS_EXPLORATION_EPSILON", "0.5"),
            ("TOUCHPOINT_REDIS_CLUSTER", "yes"),
            ("TOUCHPOINT_DECISIONS_DEFAULT_LIMIT", "7"),
            ("TOUCHPOINT_SERVER_SHUTDOWN_GRACE_MS", "soon"),
            ("TOUCHPOINT_UNRELATED", "x"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let applied = apply(&mut doc, vars, &mut p);
        assert_eq!(doc["decisions"]["exploration"]["epsilon"].as_float(), Some(0.5));
        assert_eq!(doc["decisions"]["default_limit"].as_integer(), Some(7));
        assert_eq!(doc["redis"]["cluster"].as_bool(), Some(true));
        assert_eq!(applied.by_path["redis.cluster"], "TOUCHPOINT_REDIS_CLUSTER");
        assert_eq!(applied.lines.len(), 3);
        assert_eq!(p.list.len(), 1, "{:?}", p.list);
        assert_eq!(p.list[0].0, "TOUCHPOINT_SERVER_SHUTDOWN_GRACE_MS");
        assert!(p.list[0].1.contains("whole number"), "{:?}", p.list);
    }
}
