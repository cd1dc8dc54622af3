//! Sorting Redis errors into the store's classes (`StoreError`): out of memory, unavailable
//! (cannot be reached, or not in time, or refuses work for now), or internal (anything else
//! Redis says: a bug or a damaged key, never an outage).
use super::StoreError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Sorts a Redis error: a Redis that cannot be reached, or answers not yet, is unavailable;
/// anything else it says is an internal error (a bug or a damaged key, never an outage).
pub fn classify(e: RedisError) -> StoreError {
    // Out of memory: refused up front (the scripts declare themselves writing with a
    // `#!lua` shebang, so Redis checks before running them), or a command inside a script.
    if e.code() == Some("OOM") || e.to_string().contains("OOM command not allowed") {
        return StoreError::OutOfMemory(e.to_string());
    }
    let unreachable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || match e.kind() {
            // No node to send to, or credentials refused: the connection cannot be made.
            ErrorKind::ClusterConnectionNotFound | ErrorKind::AuthenticationFailed => true,
            // Redis is loading, failing over or between masters: it will answer again.
            ErrorKind::Server(k) => matches!(
                k,
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    // Still redirected after the client's retries: a resharding in progress.
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            ),
            // A long script of another client holds the server; it is out of memory; it cannot
            // persist or reach its replicas; our credentials were revoked.
            ErrorKind::Extension => matches!(e.code(), Some("BUSY" | "MISCONF" | "NOREPLICAS" | "NOAUTH")),
            _ => false,
        }
        // Out of connection slots.
        || e.to_string().contains("max number of clients")
        // Credentials missing: Redis refuses a long command from an unauthenticated client
        // with a protocol error (more than 10 arguments) instead of NOAUTH.
        || e.to_string().contains("Protocol error: unauthenticated");
    if unreachable { StoreError::Unavailable(e.to_string()) } else { StoreError::Internal(e.to_string()) }
}

/// A client that cannot even be built (a malformed URL) is a configuration error, reported as
/// unavailable like the startup failures it replaces.
pub(super) fn bad_client(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;
    use std::io;

    fn server_error(reply: &str) -> RedisError {
        match redis::parse_redis_value(reply.as_bytes()).unwrap() {
            Value::ServerError(e) => e.into(),
            v => panic!("not an error reply: {v:?}"),
        }
    }

    #[test]
    fn errors_are_sorted_into_unavailable_and_internal() {
        let io = |kind: io::ErrorKind| RedisError::from(io::Error::new(kind, "socket"));
        let table: Vec<(&str, RedisError, bool)> = vec![
            ("refused", io(io::ErrorKind::ConnectionRefused), true),
            ("reset", io(io::ErrorKind::ConnectionReset), true),
            ("i/o timeout", io(io::ErrorKind::TimedOut), true),
            ("eof", io(io::ErrorKind::UnexpectedEof), true),
            ("dropped", RedisError::from((ErrorKind::Io, "connection dropped")), true),
            ("no node", RedisError::from((ErrorKind::ClusterConnectionNotFound, "no connections found")), true),
            ("auth", RedisError::from((ErrorKind::AuthenticationFailed, "wrong password")), true),
            ("loading", server_error("-LOADING Redis is loading the dataset in memory\r\n"), true),
            ("cluster down", server_error("-CLUSTERDOWN The cluster is down\r\n"), true),
            ("try again", server_error("-TRYAGAIN Multiple keys request during rehashing\r\n"), true),
            ("busy script", server_error("-BUSY Redis is busy running a script\r\n"), true),
            ("misconf", server_error("-MISCONF Redis is configured to save RDB snapshots\r\n"), true),
            ("no replicas", server_error("-NOREPLICAS Not enough good replicas to write\r\n"), true),
            ("noauth", server_error("-NOAUTH Authentication required.\r\n"), true),
            ("max clients", server_error("-ERR max number of clients reached\r\n"), true),
            ("unauthenticated", server_error("-ERR Protocol error: unauthenticated multibulk length\r\n"), true),
            ("moved", server_error("-MOVED 3999 127.0.0.1:6381\r\n"), true),
            (
                "wrong type",
                server_error("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
                false,
            ),
            (
                "script error",
                server_error("-ERR user_script:3: Script attempted to access nonexistent global\r\n"),
                false,
            ),
            ("cross slot", server_error("-CROSSSLOT Keys in request don't hash to the same slot\r\n"), false),
            ("no permission", server_error("-NOPERM this user has no permissions\r\n"), false),
            ("return type", RedisError::from((ErrorKind::UnexpectedReturnType, "not an integer")), false),
            ("parse", RedisError::from((ErrorKind::Parse, "bad reply")), false),
            ("client", RedisError::from((ErrorKind::Client, "bad request")), false),
        ];
        for (what, e, unavailable) in table {
            match classify(e) {
                StoreError::Unavailable(_) => assert!(unavailable, "{what} is not an outage"),
                StoreError::Internal(_) => assert!(!unavailable, "{what} is an outage"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn out_of_memory_is_its_own_class() {
        for reply in [
            "-OOM command not allowed when used memory > 'maxmemory'.\r\n",
            // Redis 6 wraps an OOM inside a script in ERR.
            "-ERR Error running script: OOM command not allowed when used memory > 'maxmemory'\r\n",
        ] {
            assert!(matches!(classify(server_error(reply)), StoreError::OutOfMemory(_)), "{reply}");
        }
    }
}
