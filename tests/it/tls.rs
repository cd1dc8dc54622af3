//! `rediss://`: the store over TLS, against a real `redis-server --tls-port` whose certificates
//! (a test CA and a server certificate for 127.0.0.1) are made with the openssl CLI at test time
//! (`certs.rs`); client certificates; Redis ACL users.
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

use crate::certs::Ca;

/// A TLS-only redis-server (plain port 0: no plaintext listener), killed on drop.
struct TlsRedis {
    port: u16,
    child: Child,
    // Holds the certificates the server reads.
    _dir: TempDir,
    ca: Ca,
}

impl TlsRedis {
    /// `client_certs`: `--tls-auth-clients yes` (clients must present a certificate signed by
    /// the test CA).
    fn start(client_certs: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "ca");
        ca.server("server");
        let d = dir.path();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt"])
                .args(["--tls-auth-clients", if client_certs { "yes" } else { "no" }])
                .args(["--save", "", "--appendonly", "no"])
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on PATH");
            // Readiness: the TLS port accepts connections (bounded wait; a taken port exits).
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return TlsRedis { port, child, _dir: dir, ca };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start a TLS redis-server on a free port");
    }

    fn ca(&self) -> PathBuf {
        self.ca.crt()
    }

    /// `[redis]` for this server with the given TLS files.
    fn config(&self, ca: bool, client: Option<(&Path, &Path)>) -> touchpoint::config::RedisConfig {
        let mut c = crate::harness::redis_config(&format!("rediss://127.0.0.1:{}", self.port), false, "tls");
        if ca {
            c.tls_ca_file = self.ca().display().to_string();
        }
        if let Some((crt, key)) = client {
            c.tls_cert_file = crt.display().to_string();
            c.tls_key_file = key.display().to_string();
        }
        c
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_store_works_over_rediss_trusting_the_ca_file() {
    let server = TlsRedis::start(false);
    // redis.tls_ca_file: the private test CA, not the system roots.
    let store = touchpoint::store::open(&server.config(true, None)).await.unwrap();
    store.ping().await.unwrap();
    store.put_model("churn", "v1", "{\"a\":1}").await.unwrap();
    store.set_current_model("churn", "v1").await.unwrap();
    assert_eq!(store.current_model("churn").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(store.get_model("churn", "v1").await.unwrap().as_deref(), Some("{\"a\":1}"));
    // The same server refuses plaintext: the data above did go over TLS.
    let plain = format!("redis://127.0.0.1:{}", server.port);
    let plain = touchpoint::store::open(&crate::harness::redis_config(&plain, false, "tls")).await.unwrap();
    assert!(plain.ping().await.is_err(), "a plaintext client must not talk to the TLS port");
}

#[test]
fn rediss_verifies_the_server_certificate() {
    let server = TlsRedis::start(false);
    let example = crate::harness::example_path();
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let replay = |ca: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_touchpoint"));
        cmd.args(["replay", "no-such-decision", "--config", example.to_str().unwrap(), "--redis-url", &url]);
        cmd.env("RUST_LOG", "error");
        // The system roots are used (rustls-native-certs), and SSL_CERT_FILE replaces them.
        match ca {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        let out = cmd.output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    // Trusting the test CA: connected, looked the decision up, did not find it (exit 2).
    let (code, out) = replay(Some(&server.ca()));
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not in the decision log"), "{out}");
    // Not trusting it: the handshake fails on the unknown issuer.
    let (code, out) = replay(None);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("UnknownIssuer") || out.contains("certificate"), "{out}");
}

#[tokio::test]
async fn without_the_ca_file_the_private_ca_is_not_trusted() {
    let server = TlsRedis::start(false);
    let store = touchpoint::store::open(&server.config(false, None)).await.unwrap();
    let e = store.ping().await.unwrap_err();
    assert!(matches!(e, touchpoint::store::StoreError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn rediss_with_a_client_certificate_when_the_server_requires_one() {
    let server = TlsRedis::start(true);
    let (crt, key) = server.ca.client("redis-client", "touchpoint", "touchpoint.internal");
    // Trusting the server but presenting no certificate: the server refuses the handshake.
    let without = touchpoint::store::open(&server.config(true, None)).await.unwrap();
    assert!(without.ping().await.is_err(), "tls-auth-clients yes refuses a client without a certificate");
    let with = touchpoint::store::open(&server.config(true, Some((&crt, &key)))).await.unwrap();
    with.ping().await.unwrap();
    with.put_model("churn", "v1", "{}").await.unwrap();
    assert_eq!(with.get_model("churn", "v1").await.unwrap().as_deref(), Some("{}"));
}

#[test]
fn the_config_checks_redis_tls_settings() {
    let load = |redis: &str| {
        touchpoint::config::Config::from_toml(&format!("[redis]\n{redis}"), "t.toml", std::iter::empty())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = load("url = \"rediss://h:1/#insecure\"").unwrap_err();
    assert!(e.contains("redis.url") && e.contains("tls_ca_file"), "{e}");
    let e = load("url = \"redis://h:1\"\ntls_ca_file = \"ca.crt\"").unwrap_err();
    assert!(e.contains("need a rediss:// URL"), "{e}");
    let e = load("url = \"rediss://h:1\"\ntls_ca_file = \"/no/such/ca.crt\"").unwrap_err();
    assert!(e.contains("t.toml:3: redis.tls_ca_file: cannot read"), "{e}");
    let e = load("url = \"rediss://h:1\"\ntls_cert_file = \"c.crt\"").unwrap_err();
    assert!(e.contains("needs both tls_cert_file and tls_key_file"), "{e}");
}

#[tokio::test]
async fn an_acl_user_and_password_in_the_url() {
    // The default user may only connect and PING (the harness's readiness probe); `app` may
    // do everything with its password.
    let acl = ["--user", "app", "on", ">s3cret", "~*", "&*", "+@all"];
    let acl = [&acl[..], &["--user", "default", "on", "nopass", "-@all", "+@connection"]].concat();
    let redis = crate::harness::RedisServer::start_with(&acl);
    let config =
        |auth: &str| crate::harness::redis_config(&format!("redis://{auth}127.0.0.1:{}", redis.port), false, "acl");
    let store = touchpoint::store::open(&config("app:s3cret@")).await.unwrap();
    store.ping().await.unwrap();
    store.put_model("churn", "v1", "{}").await.unwrap();
    assert_eq!(store.get_model("churn", "v1").await.unwrap().as_deref(), Some("{}"));
    let wrong = touchpoint::store::open(&config("app:nope@")).await.unwrap();
    assert!(wrong.ping().await.is_err(), "a wrong password is refused");
    let anonymous = touchpoint::store::open(&config("")).await.unwrap();
    assert!(anonymous.put_model("churn", "v2", "{}").await.is_err(), "the default user may not write");
}
