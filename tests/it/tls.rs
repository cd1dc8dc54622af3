//! `rediss://`: the store over TLS, against a real `redis-server --tls-port` whose certificates
//! (a test CA and a server certificate for 127.0.0.1) are made with the openssl CLI at test time.
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// A TLS-only redis-server (plain port 0: no plaintext listener), killed on drop.
struct TlsRedis {
    port: u16,
    child: Child,
    dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl CLI on PATH");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TlsRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=touchpoint-test-ca"]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(d, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
        openssl(d, &csr);
        std::fs::write(
            d.join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt"])
                .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server on PATH");
            // Readiness: the TLS port accepts connections (bounded wait; a taken port exits).
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return TlsRedis { port, child, dir };
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
        self.dir.path().join("ca.crt")
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_store_works_over_rediss() {
    let server = TlsRedis::start();
    // `#insecure` skips certificate verification (the redis crate's URL form); the test below
    // checks verification against the test CA through the binary.
    let url = format!("rediss://127.0.0.1:{}/#insecure", server.port);
    let store = touchpoint::store::open(&crate::harness::redis_config(&url, false, "tls")).await.unwrap();
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
    let server = TlsRedis::start();
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
