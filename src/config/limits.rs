//! `[server.limits]`: concurrency limits per method class, the store circuit breaker, and the
//! HTTP/2 and connection limits of the gRPC server. Defaults suit a 2-core box; the
//! interactive limit scales with the CPU cores.
use super::Problems;
use serde::{Deserialize, Serialize};

/// `[server.limits]`. Read when the server starts (a reload does not resize them).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Interactive calls in flight (`Decide`, `GetAssignment`); more get RESOURCE_EXHAUSTED.
    /// Default: `default_interactive()`, 4 per CPU core.
    pub interactive: u32,
    /// `DecideBatch` calls in flight.
    pub batch: u32,
    /// Decisions in flight across every `DecideBatch` call together (a global bound, so
    /// campaign sends cannot crowd out interactive decisions).
    pub batch_decisions: u32,
    /// The nice value (0–19) of the threads `DecideBatch` decisions run on: higher is a lower
    /// CPU priority, so on a busy machine the kernel runs interactive calls first. 0: the same
    /// priority as interactive calls. Read once, when the first batch runs.
    pub batch_nice: u32,
    /// Ingest calls in flight (`RecordEvents`, `RecordOutcome`).
    pub ingest: u32,
    /// Profile calls in flight (`GetProfile`, `PutProfile`, `DeleteProfile`, `GetJourney`).
    pub profiles: u32,
    /// Admin and report calls in flight (`Reload`, `GetStatus`, `GetExperimentResults`).
    pub admin: u32,
    /// Consecutive store failures (connection errors, timeouts) that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe call may try the store again.
    pub breaker_cooldown_ms: u64,
    /// Open client connections; further connections are closed at once. Kept below the
    /// process's file-descriptor limit at start.
    pub max_connections: u32,
    /// HTTP/2 streams (calls) one connection may have open.
    pub max_concurrent_streams: u32,
    /// Streams a client may reset before the server answered them, before h2 closes the
    /// connection with GOAWAY (h2's default of 20 kills healthy connections whose clients
    /// cancel on deadlines).
    pub max_pending_reset_streams: u32,
    /// HTTP/2 PING interval on idle connections (0: off).
    pub keepalive_interval_ms: u64,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout_ms: u64,
    /// How long a new connection may stay silent before it is closed (half-open clients).
    pub handshake_timeout_ms: u64,
}

/// The default interactive limit: 4 calls in flight per CPU core, at least 8 and at most 256.
/// An admitted call waits behind at most the others in flight, so its latency is about
/// limit / throughput (Little's law): 4 per core keeps every core busy (a Redis-backed
/// `Decide` spends about half its time waiting on Redis) while an admitted call queues behind
/// about 2 ms of work at most here, not the 7–9 ms that 32 gave on 2 cores (BENCHMARKS.md).
pub fn default_interactive() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores.saturating_mul(4)).unwrap_or(u32::MAX).clamp(8, 256)
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            interactive: default_interactive(),
            batch: 8,
            batch_decisions: 16,
            batch_nice: 10,
            ingest: 32,
            profiles: 32,
            admin: 4,
            breaker_failures: 5,
            breaker_cooldown_ms: 1_000,
            max_connections: 1_024,
            max_concurrent_streams: 256,
            max_pending_reset_streams: 1_024,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
            handshake_timeout_ms: 5_000,
        }
    }
}

/// Records what is wrong with `[server.limits]`.
pub fn check(l: &LimitsConfig, p: &mut Problems) {
    let positive = [
        ("interactive", u64::from(l.interactive)),
        ("batch", u64::from(l.batch)),
        ("batch_decisions", u64::from(l.batch_decisions)),
        ("ingest", u64::from(l.ingest)),
        ("profiles", u64::from(l.profiles)),
        ("admin", u64::from(l.admin)),
        ("breaker_failures", u64::from(l.breaker_failures)),
        ("breaker_cooldown_ms", l.breaker_cooldown_ms),
        ("max_connections", u64::from(l.max_connections)),
        ("max_concurrent_streams", u64::from(l.max_concurrent_streams)),
        ("max_pending_reset_streams", u64::from(l.max_pending_reset_streams)),
        ("handshake_timeout_ms", l.handshake_timeout_ms),
    ];
    for (key, value) in positive {
        if value == 0 {
            p.add(format!("server.limits.{key}"), "must be positive");
        }
    }
    // Semaphores hold at most this many permits; far above anything useful anyway.
    for (key, value) in [("interactive", l.interactive), ("batch_decisions", l.batch_decisions)] {
        if value > 1_000_000 {
            p.add(format!("server.limits.{key}"), "must be at most 1000000");
        }
    }
    if l.batch_nice > 19 {
        p.add("server.limits.batch_nice", "must be at most 19 (the lowest CPU priority)");
    }
    if l.keepalive_interval_ms > 0 && l.keepalive_timeout_ms == 0 {
        p.add("server.limits.keepalive_timeout_ms", "must be positive when keepalive_interval_ms is set");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_zeroes_are_named() {
        let mut p = Problems::default();
        check(&LimitsConfig::default(), &mut p);
        assert!(p.list.is_empty(), "{:?}", p.list);
        let mut p = Problems::default();
        check(&LimitsConfig { interactive: 0, keepalive_timeout_ms: 0, batch_nice: 20, ..Default::default() }, &mut p);
        let entries: Vec<&str> = p.list.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(
            entries,
            ["server.limits.interactive", "server.limits.batch_nice", "server.limits.keepalive_timeout_ms"]
        );
    }

    #[test]
    fn the_interactive_default_is_four_per_core_within_bounds() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        let d = LimitsConfig::default().interactive;
        assert_eq!(d, (4 * cores).clamp(8, 256));
        assert!((8..=256).contains(&d));
    }
}
