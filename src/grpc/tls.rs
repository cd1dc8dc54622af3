//! gRPC over TLS with a certificate that follows reloads: tonic's own TLS configuration is
//! fixed at start, so connections are accepted here instead. Each new connection takes the
//! rustls configuration of the config snapshot current at that moment (a reload re-reads the
//! certificate files), handshakes in its own task (a slow client holds nobody else up), and
//! reaches tonic as a stream whose `Connected` info carries the client certificate's names
//! for `grpc::auth`.
use super::accept::Conn;
use crate::engine::Engine;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at most; more connections wait in the listen backlog.
const HANDSHAKES_IN_FLIGHT: usize = 256;

/// What tonic puts in each request's extensions for a TLS connection.
#[derive(Debug, Clone, Default)]
pub struct TlsConnectInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The verified client certificate's subject CN, then its DNS names (empty without one).
    pub peer_names: Arc<Vec<String>>,
}

/// An accepted TLS connection.
pub struct TlsIo {
    inner: TlsStream<Conn>,
    info: TlsConnectInfo,
}

impl Connected for TlsIo {
    type ConnectInfo = TlsConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    /// False, as for plain connections (`accept::Conn`): HTTP/2 then puts whole small answers
    /// into one buffer, so they are sealed into TLS records and written together.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// TLS connections over the TCP connections `accept::incoming` admits (its connection limit,
/// first-bytes timeout and accept back-off apply here too), each with the certificate of the
/// snapshot current when it arrives (`fallback` when a reload dropped `[server.tls]`: listener
/// settings change only at restart). Failed handshakes are logged at debug level and dropped.
pub fn incoming(
    conns: impl futures::Stream<Item = std::io::Result<Conn>> + Send + 'static,
    engine: Arc<Engine>,
    fallback: Arc<rustls::ServerConfig>,
) -> impl futures::Stream<Item = std::io::Result<TlsIo>> {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel::<TlsIo>(64);
    let permits = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT));
    tokio::spawn(async move {
        let mut conns = std::pin::pin!(conns);
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let tcp = tokio::select! {
                c = conns.next() => match c {
                    Some(Ok(c)) => c,
                    Some(Err(_)) => continue,
                    None => return,
                },
                // The server stopped taking connections.
                _ = tx.closed() => return,
            };
            let addr = tcp.connect_info().remote_addr();
            let config = engine.snapshot().config.tls.as_ref().map_or_else(|| fallback.clone(), |t| t.config.clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let peer_names = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| names(c.as_ref()))
                            .unwrap_or_default();
                        let info = TlsConnectInfo { remote_addr: addr, peer_names: Arc::new(peer_names) };
                        let _ = tx.send(TlsIo { inner: stream, info }).await;
                    }
                    Ok(Err(e)) => tracing::debug!(?addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(?addr, "TLS handshake timed out"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|io| (Ok(io), rx)) })
}

/// A certificate's subject CN followed by its DNS subject alternative names (the certificate
/// was verified by rustls already; this only reads names).
pub fn names(der: &[u8]) -> Vec<String> {
    let der = rustls::pki_types::CertificateDer::from(der);
    let Ok(cert) = webpki::EndEntityCert::try_from(&der) else { return vec![] };
    let mut names: Vec<String> = common_name(cert.subject()).into_iter().collect();
    names.extend(cert.valid_dns_names().map(str::to_string));
    names
}

/// The first CN (OID 2.5.4.3) of a DER Name's contents: SEQUENCE OF SET OF SEQUENCE { OID, value }.
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    while !name.is_empty() {
        let (set, rest) = tlv(name, 0x31)?;
        name = rest;
        let mut set = set;
        while !set.is_empty() {
            let (atv, rest) = tlv(set, 0x30)?;
            set = rest;
            if let Some(value) = atv.strip_prefix(CN) {
                // UTF8String, PrintableString, IA5String, T61String.
                let tag = *value.first()?;
                let (text, _) = tlv(value, tag)?;
                if matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) {
                    return std::str::from_utf8(text).ok().map(str::to_string);
                }
            }
        }
    }
    None
}

/// The contents of one DER element with tag `tag` at the start of `der`, and what follows it.
fn tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *der.first()? != tag {
        return None;
    }
    let first = *der.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = der.get(2..2 + n)?.iter().fold(0usize, |l, b| (l << 8) | *b as usize);
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((der.get(header..end)?, der.get(end..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name_of_a_name() {
        // SET { SEQ { OID O, "Acme" } }, SET { SEQ { OID CN, UTF8 "etl.internal" } }
        let mut name = vec![0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x04];
        name.extend(b"Acme");
        name.extend([0x31, 0x15, 0x30, 0x13, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x0c]);
        name.extend(b"etl.internal");
        assert_eq!(common_name(&name).as_deref(), Some("etl.internal"));
        assert_eq!(common_name(&name[..10]), None, "truncated input is not a name");
        assert_eq!(common_name(&[0x31, 0x85, 0xff]), None);
        assert!(names(b"not a certificate").is_empty());
    }
}
