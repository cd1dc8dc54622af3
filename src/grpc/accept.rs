//! The accept loop: a connection limit below the file-descriptor limit, a first-bytes
//! (handshake) timeout, and back-off on accept errors.
//!
//! - At `max_connections` open connections a new one is accepted and closed at once
//!   (`touchpoint_connections_refused_total`), so clients fail fast instead of hanging in the
//!   kernel's backlog.
//! - A connection that sends nothing within `handshake_timeout_ms` is closed
//!   (`touchpoint_connections_timed_out_total`): half-open clients do not hold descriptors.
//! - An accept error such as EMFILE is not retried in a hot loop: the loop sleeps, doubling
//!   from 5 ms to 1 s (`touchpoint_accept_errors_total`).
//!
//! Each trigger logs a WARN line at most once per second.
use super::limits::RateLimitedLog;
use crate::config::LimitsConfig;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Descriptors kept free for everything that is not a client connection (Redis, files).
const FD_RESERVE: u64 = 64;

/// An accepted connection holding its slot of the connection limit until it closes.
pub struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    /// False, so that HTTP/2 batches responses: with vectored writes `h2` keeps a DATA
    /// payload over 256 bytes out of its write buffer and must write it before it can take
    /// the next frame, so a 300-byte `Decide` answer cost two `writev`s (headers and data,
    /// then the trailers) and was never batched with other answers. Without, payloads up to
    /// 1 KiB are copied into the 16 KiB buffer and a flush carries every answer ready by then
    /// in one `write` (BENCHMARKS.md, "Answers in one write").
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// The connection limit actually used: `configured`, lowered to stay below the process's
/// soft file-descriptor limit (minus a reserve) when that is lower.
pub fn max_connections(configured: u32) -> u32 {
    let Some(fds) = fd_limit() else { return configured.max(1) };
    let ceiling = fds.saturating_sub(FD_RESERVE.max(fds / 8)).max(1);
    if u64::from(configured) > ceiling {
        tracing::warn!(
            configured,
            fd_limit = fds,
            used = ceiling,
            "server.limits.max_connections lowered to stay below the file-descriptor limit"
        );
        ceiling as u32
    } else {
        configured.max(1)
    }
}

#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
fn fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
fn fd_limit() -> Option<u64> {
    None
}

static REFUSED_LOG: RateLimitedLog = RateLimitedLog::new();
static SILENT_LOG: RateLimitedLog = RateLimitedLog::new();
static ERROR_LOG: RateLimitedLog = RateLimitedLog::new();

/// Accepts on `listener` under the limits of `l`, until the returned stream is dropped
/// (tonic drops it when the server shuts down).
pub fn incoming(listener: TcpListener, l: &LimitsConfig) -> impl futures::Stream<Item = io::Result<Conn>> + use<> {
    let max = max_connections(l.max_connections);
    let handshake = Duration::from_millis(l.handshake_timeout_ms.max(1));
    // Connections that sent their first bytes, waiting for tonic to pick them up.
    let (tx, rx) = mpsc::channel::<io::Result<Conn>>(256);
    tokio::spawn(accept_loop(listener, Arc::new(Semaphore::new(max as usize)), max, handshake, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    slots: Arc<Semaphore>,
    max: u32,
    handshake: Duration,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = Duration::ZERO;
                stream
            }
            Err(e) if per_connection(&e) => continue,
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                metrics::counter!("touchpoint_accept_errors_total").increment(1);
                if ERROR_LOG.allow() {
                    tracing::warn!(error = %e, ?backoff, "accept failed (out of file descriptors?): backing off");
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("touchpoint_connections_refused_total").increment(1);
            if REFUSED_LOG.allow() {
                tracing::warn!(max_connections = max, "connection limit reached: closing new connections");
            }
            drop(stream);
            continue;
        };
        // Small unary answers must not wait for the client's delayed ACK (Nagle).
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            match tokio::time::timeout(handshake, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {
                    let _ = tx.send(Ok(Conn { stream, _slot: slot })).await;
                }
                // Closed before sending anything.
                Ok(_) => {}
                Err(_) => {
                    metrics::counter!("touchpoint_connections_timed_out_total").increment(1);
                    if SILENT_LOG.allow() {
                        tracing::warn!(timeout = ?handshake, "closing connections that sent nothing in time");
                    }
                }
            }
        });
    }
}

/// Errors about one connection that went away before it was accepted: accept the next.
fn per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_stays_below_the_descriptor_limit() {
        let fds = fd_limit().unwrap_or(u64::MAX);
        assert!(u64::from(max_connections(u32::MAX)) < fds);
        assert_eq!(max_connections(3), 3);
        assert_eq!(max_connections(0), 1);
    }

    /// HTTP/2 batches small answers only over a connection that does not ask for vectored
    /// writes (see `Conn::is_write_vectored`).
    #[tokio::test]
    async fn connections_take_plain_writes() {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut conns = std::pin::pin!(incoming(listener, &LimitsConfig::default()));
        let mut client = TcpStream::connect(addr).await.unwrap();
        assert!(client.is_write_vectored(), "a bare TCP stream takes vectored writes");
        client.write_all(b"PRI").await.unwrap();
        let conn = conns.next().await.unwrap().unwrap();
        assert!(!conn.is_write_vectored());
    }
}
