//! `[server.tls]` (gRPC over TLS, optionally requiring client certificates) and the `[redis]`
//! TLS files. The server's certificate and key are read and checked with every load, so a
//! reload (SIGHUP, `Admin.Reload`) picks up a renewed certificate and a bad one is refused
//! while the old one keeps serving.
use super::Problems;
use super::file::RedisConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// `[server.tls]`: PEM files, relative to the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ServerTlsConfig {
    /// The server's certificate chain (leaf first).
    pub cert_file: String,
    /// The server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// CA certificates for client certificates; when set, every client must present one
    /// signed by them (mutual TLS), and `[[auth.clients]]` can map its subject to roles.
    pub client_ca_file: Option<String>,
}

/// The TLS settings of the gRPC server, ready for the acceptor.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The rustls configuration new connections use.
    pub config: Arc<rustls::ServerConfig>,
    /// Whether client certificates are required.
    pub client_auth: bool,
}

/// The crypto provider of every TLS configuration this crate builds.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `[server.tls]`; `None` (with the problems recorded) when a file is bad.
pub(crate) fn compile_server(t: &ServerTlsConfig, base: &Path, p: &mut Problems) -> Option<ServerTls> {
    let certs = p.take(certs(base, &t.cert_file, "server.tls.cert_file"));
    let key = p.take(key(base, &t.key_file, "server.tls.key_file"));
    let roots = match &t.client_ca_file {
        Some(f) => Some(p.take(roots(base, f, "server.tls.client_ca_file"))?),
        None => None,
    };
    let (certs, key) = (certs?, key?);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| p.add("server.tls", e.to_string()))
        .ok()?;
    let builder = match &roots {
        Some(roots) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| p.add("server.tls.client_ca_file", e.to_string()))
                .ok()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| p.add("server.tls.key_file", format!("does not go with the certificate: {e}")))
        .ok()?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Some(ServerTls { config: Arc::new(config), client_auth: roots.is_some() })
}

/// Checks the `[redis]` TLS settings: the files read and parse, and only with `rediss://`.
/// Relative paths are made relative to the config file's directory here, so the store, which
/// only sees `[redis]`, opens the files that were checked.
pub(crate) fn check_redis(r: &mut RedisConfig, base: &Path, p: &mut Problems) {
    if r.url.contains("#insecure") {
        p.add(
            "redis.url",
            "`#insecure` (no certificate verification) is not supported: trust a private CA with redis.tls_ca_file",
        );
    }
    let any = !(r.tls_ca_file.is_empty() && r.tls_cert_file.is_empty() && r.tls_key_file.is_empty());
    if any && !r.url.contains("rediss://") {
        p.add("redis.url", "the redis.tls_* files need a rediss:// URL");
    }
    if r.tls_cert_file.is_empty() != r.tls_key_file.is_empty() {
        p.add("redis.tls_cert_file", "a client certificate needs both tls_cert_file and tls_key_file");
    }
    if !r.tls_ca_file.is_empty() {
        p.take(roots(base, &r.tls_ca_file, "redis.tls_ca_file"));
    }
    if !r.tls_cert_file.is_empty() {
        p.take(certs(base, &r.tls_cert_file, "redis.tls_cert_file"));
    }
    if !r.tls_key_file.is_empty() {
        p.take(key(base, &r.tls_key_file, "redis.tls_key_file"));
    }
    for f in [&mut r.tls_ca_file, &mut r.tls_cert_file, &mut r.tls_key_file] {
        if !f.is_empty() {
            *f = base.join(&*f).display().to_string();
        }
    }
}

fn read(base: &Path, file: &str, entry: &str) -> Result<Vec<u8>, (String, String)> {
    if file.is_empty() {
        return Err((entry.into(), "must name a PEM file".into()));
    }
    std::fs::read(base.join(file)).map_err(|e| (entry.into(), format!("cannot read {file}: {e}")))
}

fn certs(base: &Path, file: &str, entry: &str) -> Result<Vec<CertificateDer<'static>>, (String, String)> {
    let pem = read(base, file, entry)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| (entry.to_string(), format!("{file}: {e}")))?;
    if certs.is_empty() {
        return Err((entry.into(), format!("{file} holds no PEM certificate")));
    }
    Ok(certs)
}

fn key(base: &Path, file: &str, entry: &str) -> Result<PrivateKeyDer<'static>, (String, String)> {
    let pem = read(base, file, entry)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| (entry.into(), format!("{file} holds no usable private key: {e}")))
}

fn roots(base: &Path, file: &str, entry: &str) -> Result<Arc<rustls::RootCertStore>, (String, String)> {
    let mut store = rustls::RootCertStore::empty();
    for cert in certs(base, file, entry)? {
        store.add(cert).map_err(|e| (entry.to_string(), format!("{file}: {e}")))?;
    }
    Ok(Arc::new(store))
}
