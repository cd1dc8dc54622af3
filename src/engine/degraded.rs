//! Stable reason codes for store trouble, and the rate-limited log line carrying the detail:
//! callers see a short code, never backend text (script hashes, key types, credentials).
use std::sync::atomic::{AtomicU64, Ordering};

/// The store cannot be reached (connection refused, reset, credentials revoked).
pub const STORE_UNAVAILABLE: &str = "store_unavailable";
/// The store did not answer within the budget or the client timeout.
pub const STORE_TIMEOUT: &str = "store_timeout";
/// The store refused work it could not take (out of memory, busy script, out of clients).
pub const STORE_OVERLOADED: &str = "store_overloaded";
/// The store is out of memory and refuses writes (Redis over `maxmemory` with `noeviction`);
/// nothing of the decision was written.
pub const STORE_OOM: &str = "store_oom";
/// A stored value does not decode.
pub const STORE_CORRUPT: &str = "store_corrupt";
/// The store answered with an error that is not an outage.
pub const STORE_ERROR: &str = "store_error";

/// Every reason code, in the order of the rate limiter's slots.
pub const REASONS: [&str; 6] =
    [STORE_UNAVAILABLE, STORE_TIMEOUT, STORE_OVERLOADED, STORE_OOM, STORE_CORRUPT, STORE_ERROR];

/// The stable code for an outage's detail text (as `StoreError::Unavailable` carries it).
pub fn classify_unavailable(detail: &str) -> &'static str {
    let d = detail.to_ascii_lowercase();
    if d.contains("no answer within") || d.contains("timed out") || d.contains("timeout") {
        STORE_TIMEOUT
    } else if d.contains("oom") || d.contains("busy") || d.contains("max number of clients") || d.contains("loading") {
        STORE_OVERLOADED
    } else {
        STORE_UNAVAILABLE
    }
}

/// Unix seconds of the last line logged per reason (0: never).
static LAST_LOGGED: [AtomicU64; REASONS.len()] = [const { AtomicU64::new(0) }; REASONS.len()];

/// Logs `detail` at WARN for `reason`, at most one line per second per reason: under an outage
/// every degraded call would otherwise write its own line (megabytes a minute).
pub fn warn_limited(reason: &'static str, what: &str, detail: &str) {
    let slot = REASONS.iter().position(|r| *r == reason).unwrap_or(REASONS.len() - 1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = LAST_LOGGED[slot].load(Ordering::Relaxed);
    if last != now && LAST_LOGGED[slot].compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        tracing::warn!(reason, error = %detail, "{what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_text_maps_to_a_stable_code() {
        assert_eq!(classify_unavailable("no answer within 50ms"), STORE_TIMEOUT);
        assert_eq!(classify_unavailable("OOM command not allowed when used memory > 'maxmemory'"), STORE_OVERLOADED);
        assert_eq!(classify_unavailable("NOAUTH Authentication required"), STORE_UNAVAILABLE);
        assert_eq!(classify_unavailable("Connection refused (os error 111)"), STORE_UNAVAILABLE);
    }
}
