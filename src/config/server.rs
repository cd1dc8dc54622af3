//! The `[server]` and `[redis]` settings: addresses, the store URL and its limits.
use super::Problems;
use super::file::{RedisConfig, ServerConfig};
use crate::domain::limits::MAX_EVENTS_PER_CALL;

/// Records what is wrong with the server and Redis settings.
pub fn check(s: &ServerConfig, r: &RedisConfig, p: &mut Problems) {
    if s.listen.parse::<std::net::SocketAddr>().is_err() {
        p.add("server.listen", "must be an address such as 127.0.0.1:50051");
    }
    if !s.metrics_listen.is_empty() && s.metrics_listen.parse::<std::net::SocketAddr>().is_err() {
        p.add("server.metrics_listen", "must be an address such as 127.0.0.1:9464, or empty");
    }
    if !(r.url.starts_with("memory://") || r.url.starts_with("redis://") || r.url.starts_with("rediss://")) {
        p.add("redis.url", "must start with memory://, redis:// or rediss://");
    }
    if r.key_prefix.is_empty() || r.key_prefix.len() > 64 || r.key_prefix.contains(['{', '}', ' ']) {
        p.add("redis.key_prefix", "must be 1-64 characters without braces or spaces");
    }
    if r.command_timeout_ms == 0 {
        p.add("redis.command_timeout_ms", "must be positive");
    }
    if !(r.dedup_window_days > 0.0 && r.dedup_window_days.is_finite()) {
        p.add("redis.dedup_window_days", "must be a positive number of days");
    }
    if r.dedup_max_per_user < MAX_EVENTS_PER_CALL as u64 {
        // Smaller, and one large RecordEvents call could forget its own ids at once.
        p.add("redis.dedup_max_per_user", format!("must be at least {MAX_EVENTS_PER_CALL}"));
    }
    if r.counter_retention_days == 0 {
        p.add("redis.counter_retention_days", "must be positive");
    }
    if r.archive && r.url.starts_with("memory://") {
        p.add("redis.archive", "needs a Redis store: the in-memory store keeps no streams to archive");
    }
    if r.recent_decisions_per_user == 0 {
        p.add("redis.recent_decisions_per_user", "must be positive");
    }
    if r.journey_log_maxlen == 0 {
        p.add("redis.journey_log_maxlen", "must be positive");
    }
    if r.decision_log_maxlen == 0 {
        p.add("redis.decision_log_maxlen", "must be positive");
    }
}
