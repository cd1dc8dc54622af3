//! Authentication, roles and gRPC TLS over real sockets: API keys from the config and a keys
//! file (rotated by reload), a role per method class, health and reflection, gRPC over TLS with
//! a certificate that follows reloads, and mutual TLS with certificate subjects mapped to roles.
use crate::certs::Ca;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use touchpoint::config::{Config, key_hash};
use touchpoint::engine::Engine;
use touchpoint::grpc::auth::{ApiKey, KeyedChannel, keyed};
use touchpoint::grpc::pb;

fn entry(table: &str, id: &str, key: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
    format!("\n[[{table}]]\nid = {id:?}\nsha256 = \"{}\"\nroles = [{}]\n", hex::encode(key_hash(key)), roles.join(", "))
}

/// A key per role, plus `k-all` with every role.
fn role_keys() -> String {
    let mut s = String::new();
    for role in ["decide", "ingest", "profiles", "analyst", "admin"] {
        s += &entry("auth.keys", role, &format!("k-{role}"), &[role]);
    }
    s + &entry("auth.keys", "all", "k-all", &["decide", "ingest", "profiles", "analyst", "admin"])
}

/// A server over the in-memory store for the config file at `path` (reloadable), on
/// 127.0.0.1:0, stopped on drop.
struct Served {
    addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(path: &Path) -> Served {
    let config = Config::load(path, std::iter::empty()).unwrap();
    config.check_serving().unwrap();
    let store = touchpoint::store::open(&config.file.redis).await.unwrap();
    let engine = Arc::new(Engine::new(store, config, Some(path.to_path_buf()), vec![]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(touchpoint::grpc::serve(listener, engine, async {
        let _ = rx.await;
    }));
    Served { addr, _stop: tx }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn plain(addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

fn with_key(channel: &Channel, key: Option<&str>) -> KeyedChannel {
    keyed(channel.clone(), ApiKey::new(key).unwrap())
}

/// One call of each role class; the code it got.
async fn call(class: &str, ch: KeyedChannel) -> Code {
    let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |()| Code::Ok);
    match class {
        "decide" => code(
            pb::decisions_client::DecisionsClient::new(ch)
                .decide(pb::DecideRequest { user_id: "u1".into(), channel: "web".into(), ..Default::default() })
                .await
                .map(drop),
        ),
        "ingest" => {
            let event = pb::Event {
                event_id: "e1".into(),
                user_id: "u1".into(),
                event_type: "page_view".into(),
                timestamp: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 0 }),
                channel: "web".into(),
                ..Default::default()
            };
            code(
                pb::decisions_client::DecisionsClient::new(ch)
                    .record_events(pb::RecordEventsRequest { events: vec![event] })
                    .await
                    .map(drop),
            )
        }
        "profiles" => code(
            pb::profiles_client::ProfilesClient::new(ch)
                .put_profile(pb::PutProfileRequest { user_id: "u2".into(), ..Default::default() })
                .await
                .map(drop),
        ),
        // No experiment of that name: NOT_FOUND once past authorisation.
        "analyst" => code(
            pb::experiments_client::ExperimentsClient::new(ch)
                .get_experiment_results(pb::GetExperimentResultsRequest { experiment_id: "none".into() })
                .await
                .map(drop),
        ),
        "admin" => code(pb::admin_client::AdminClient::new(ch).get_status(pb::GetStatusRequest {}).await.map(drop)),
        _ => unreachable!(),
    }
}

/// What a call of `class` answers once it is authorised.
fn authorised(class: &str) -> Code {
    if class == "analyst" { Code::NotFound } else { Code::Ok }
}

const CLASSES: [&str; 5] = ["decide", "ingest", "profiles", "analyst", "admin"];

#[tokio::test]
async fn no_key_or_an_unknown_key_is_unauthenticated_without_echoing_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(&write(dir.path(), "c.toml", &role_keys())).await;
    let ch = plain(srv.addr).await;
    for class in CLASSES {
        assert_eq!(call(class, with_key(&ch, None)).await, Code::Unauthenticated, "{class} without a key");
        assert_eq!(call(class, with_key(&ch, Some("k-nope"))).await, Code::Unauthenticated, "{class} with a bad key");
    }
    let mut d = pb::decisions_client::DecisionsClient::new(with_key(&ch, Some("tpk_secret-guess")));
    let e = d.decide(pb::DecideRequest { user_id: "u".into(), channel: "web".into(), ..Default::default() }).await;
    let e = e.unwrap_err();
    assert_eq!(e.message(), "unknown API key");
    // `x-api-key` is accepted like the bearer header.
    let mut req = tonic::Request::new(pb::GetStatusRequest {});
    req.metadata_mut().insert("x-api-key", "k-admin".parse().unwrap());
    pb::admin_client::AdminClient::new(ch.clone()).get_status(req).await.unwrap();
}

#[tokio::test]
async fn each_role_class_needs_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let srv = serve(&write(dir.path(), "c.toml", &role_keys())).await;
    let ch = plain(srv.addr).await;
    for class in CLASSES {
        for holder in CLASSES {
            let got = call(class, with_key(&ch, Some(&format!("k-{holder}")))).await;
            let want = if class == holder { authorised(class) } else { Code::PermissionDenied };
            assert_eq!(got, want, "a {holder} key calling a {class} method");
        }
        assert_eq!(call(class, with_key(&ch, Some("k-all"))).await, authorised(class), "{class} with every role");
    }
    let e = pb::admin_client::AdminClient::new(with_key(&ch, Some("k-decide")))
        .reload(pb::ReloadRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(e.message(), "this call needs the `admin` role");
}

#[tokio::test]
async fn keys_rotate_on_reload_from_the_config_and_the_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = |key: &str| entry("keys", "shop", key, &["decide"]);
    write(dir.path(), "keys.toml", &keys("k-old"));
    let config = format!("[auth]\nkeys_file = \"keys.toml\"\n{}", entry("auth.keys", "ops", "k-ops", &["admin"]));
    let path = write(dir.path(), "c.toml", &config);
    let srv = serve(&path).await;
    let ch = plain(srv.addr).await;
    let mut admin = pb::admin_client::AdminClient::new(with_key(&ch, Some("k-ops")));
    assert_eq!(call("decide", with_key(&ch, Some("k-old"))).await, Code::Ok);
    assert_eq!(call("decide", with_key(&ch, Some("k-new"))).await, Code::Unauthenticated);

    // Rotate the keys file and reload: the old key is refused, the new one accepted.
    write(dir.path(), "keys.toml", &keys("k-new"));
    admin.reload(pb::ReloadRequest {}).await.unwrap();
    assert_eq!(call("decide", with_key(&ch, Some("k-old"))).await, Code::Unauthenticated);
    assert_eq!(call("decide", with_key(&ch, Some("k-new"))).await, Code::Ok);

    // A key in the config file itself rotates the same way.
    let rotated = format!("[auth]\nkeys_file = \"keys.toml\"\n{}", entry("auth.keys", "ops", "k-ops2", &["admin"]));
    write(dir.path(), "c.toml", &rotated);
    admin.reload(pb::ReloadRequest {}).await.unwrap();
    assert_eq!(call("admin", with_key(&ch, Some("k-ops"))).await, Code::Unauthenticated);
    assert_eq!(call("admin", with_key(&ch, Some("k-ops2"))).await, Code::Ok);

    // A reload that would leave no key is refused, and the keys in use stay.
    write(dir.path(), "keys.toml", "");
    write(dir.path(), "c.toml", "[auth]\nkeys_file = \"keys.toml\"\n");
    let mut admin = pb::admin_client::AdminClient::new(with_key(&ch, Some("k-ops2")));
    let e = admin.reload(pb::ReloadRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("no API key"), "{e:?}");
    assert_eq!(call("decide", with_key(&ch, Some("k-new"))).await, Code::Ok);
}

#[tokio::test]
async fn health_and_reflection_without_a_key_follow_the_config() {
    use tonic_reflection::pb::v1 as r1;
    let dir = tempfile::tempdir().unwrap();
    let health_check = |ch: KeyedChannel| async move {
        tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
            .await
            .map_or_else(|s| s.code(), |_| Code::Ok)
    };
    let reflect = |ch: KeyedChannel| async move {
        let req = r1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r1::server_reflection_request::MessageRequest::ListServices(String::new())),
        };
        match r1::server_reflection_client::ServerReflectionClient::new(ch)
            .server_reflection_info(futures::stream::iter([req]))
            .await
        {
            Err(s) => s.code(),
            Ok(mut stream) => stream.get_mut().message().await.map_or_else(|s| s.code(), |_| Code::Ok),
        }
    };
    // Defaults: health open, reflection for any valid key.
    let srv = serve(&write(dir.path(), "a.toml", &role_keys())).await;
    let ch = plain(srv.addr).await;
    assert_eq!(health_check(with_key(&ch, None)).await, Code::Ok);
    assert_eq!(reflect(with_key(&ch, None)).await, Code::Unauthenticated);
    assert_eq!(reflect(with_key(&ch, Some("k-decide"))).await, Code::Ok);
    // Reversed.
    let config = format!("[auth]\nallow_health = false\nallow_reflection = true\n{}", role_keys());
    let srv = serve(&write(dir.path(), "b.toml", &config)).await;
    let ch = plain(srv.addr).await;
    assert_eq!(health_check(with_key(&ch, None)).await, Code::Unauthenticated);
    assert_eq!(health_check(with_key(&ch, Some("k-ingest"))).await, Code::Ok);
    assert_eq!(reflect(with_key(&ch, None)).await, Code::Ok);
    // Authentication explicitly off: everything is open.
    let srv = serve(&write(dir.path(), "c.toml", "[auth]\nenabled = false\n")).await;
    let ch = plain(srv.addr).await;
    assert_eq!(call("admin", with_key(&ch, None)).await, Code::Ok);
}

/// The certificate a new TLS connection to `addr` is served, as DER.
async fn served_certificate(addr: std::net::SocketAddr, ca: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(touchpoint::config::tls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec()
}

fn der_of(pem_file: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(pem_file).unwrap().as_ref().to_vec()
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((crt, key)) = identity {
        tls = tls.identity(Identity::from_pem(std::fs::read(crt).unwrap(), std::fs::read(key).unwrap()));
    }
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

#[tokio::test]
async fn grpc_over_tls_and_a_reloaded_certificate_reaches_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (crt, _) = ca.server("server");
    let config = format!("[server.tls]\ncert_file = \"server.crt\"\nkey_file = \"server.key\"\n{}", role_keys());
    let srv = serve(&write(dir.path(), "c.toml", &config)).await;

    let ch = tls_channel(srv.addr, &ca.crt(), None).await.unwrap();
    assert_eq!(call("decide", with_key(&ch, Some("k-decide"))).await, Code::Ok);
    assert_eq!(call("decide", with_key(&ch, None)).await, Code::Unauthenticated, "TLS is no key");
    // Plaintext to the TLS port gets nowhere.
    let plain_call = async {
        let ch = Endpoint::from_shared(format!("http://{}", srv.addr)).unwrap().connect().await?;
        Ok::<_, tonic::transport::Error>(call("decide", with_key(&ch, Some("k-decide"))).await)
    };
    let plain_result = tokio::time::timeout(std::time::Duration::from_secs(20), plain_call).await.unwrap();
    assert!(!matches!(plain_result, Ok(Code::Ok)), "{plain_result:?}");

    let first = der_of(&crt);
    assert_eq!(served_certificate(srv.addr, &ca.crt()).await, first);
    // Renew the certificate in place (new serial and key), reload: new connections get it.
    let (crt, _) = ca.server("server");
    let second = der_of(&crt);
    assert_ne!(first, second);
    pb::admin_client::AdminClient::new(with_key(&ch, Some("k-admin"))).reload(pb::ReloadRequest {}).await.unwrap();
    assert_eq!(served_certificate(srv.addr, &ca.crt()).await, second);
    // The connection made before the reload keeps working.
    assert_eq!(call("decide", with_key(&ch, Some("k-decide"))).await, Code::Ok);
    let fresh = tls_channel(srv.addr, &ca.crt(), None).await.unwrap();
    assert_eq!(call("profiles", with_key(&fresh, Some("k-profiles"))).await, Code::Ok);

    // A broken certificate file is refused on reload and the served one stays.
    std::fs::write(&crt, "not a certificate").unwrap();
    let e = pb::admin_client::AdminClient::new(with_key(&ch, Some("k-admin")))
        .reload(pb::ReloadRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("server.tls.cert_file"), "{e:?}");
    assert_eq!(served_certificate(srv.addr, &ca.crt()).await, second);
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_and_maps_its_subject_to_roles() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    ca.server("server");
    let clients = Ca::new(dir.path(), "clients-ca");
    let etl = clients.client("etl", "etl.internal", "etl.example.com");
    let by_dns = clients.client("dns", "something-else", "reports.internal");
    let stranger = clients.client("stranger", "stranger", "stranger.example.com");
    let config = format!(
        "[server.tls]\ncert_file = \"server.crt\"\nkey_file = \"server.key\"\nclient_ca_file = \"clients-ca.crt\"\n\
         [[auth.clients]]\nsubject = \"etl.internal\"\nroles = [\"ingest\"]\n\
         [[auth.clients]]\nsubject = \"reports.internal\"\nroles = [\"analyst\"]\n{}",
        role_keys()
    );
    let srv = serve(&write(dir.path(), "c.toml", &config)).await;

    // No client certificate: the handshake (or the first call) fails.
    let refused = async {
        let ch = tls_channel(srv.addr, &ca.crt(), None).await?;
        Ok::<_, tonic::transport::Error>(call("admin", with_key(&ch, Some("k-admin"))).await)
    };
    let refused = tokio::time::timeout(std::time::Duration::from_secs(20), refused).await.unwrap();
    assert!(!matches!(refused, Ok(Code::Ok)), "{refused:?}");

    // The subject CN is mapped to `ingest`: ingest works without a key, decide does not.
    let ch = tls_channel(srv.addr, &ca.crt(), Some((&etl.0, &etl.1))).await.unwrap();
    assert_eq!(call("ingest", with_key(&ch, None)).await, Code::Ok);
    assert_eq!(call("decide", with_key(&ch, None)).await, Code::PermissionDenied);
    // A key, when presented, decides instead of the certificate.
    assert_eq!(call("decide", with_key(&ch, Some("k-decide"))).await, Code::Ok);
    // A DNS subject alternative name maps too.
    let ch = tls_channel(srv.addr, &ca.crt(), Some((&by_dns.0, &by_dns.1))).await.unwrap();
    assert_eq!(call("analyst", with_key(&ch, None)).await, Code::NotFound);
    // A valid certificate whose subject is not listed identifies nobody.
    let ch = tls_channel(srv.addr, &ca.crt(), Some((&stranger.0, &stranger.1))).await.unwrap();
    assert_eq!(call("ingest", with_key(&ch, None)).await, Code::Unauthenticated);
    assert_eq!(call("admin", with_key(&ch, Some("k-admin"))).await, Code::Ok);

    // The CLI client: TLS options, a client certificate and the key from the environment.
    let cli = |key: Option<&'static str>| {
        let (addr, ca, crt, key_file) =
            (format!("https://localhost:{}", srv.addr.port()), ca.crt(), stranger.0.clone(), stranger.1.clone());
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_touchpoint"));
            cmd.args(["client", "--addr", &addr, "--tls-ca-file"]).arg(ca).arg("--tls-cert-file").arg(crt);
            cmd.arg("--tls-key-file").arg(key_file).arg("status").env("RUST_LOG", "error");
            match key {
                Some(k) => cmd.env("TOUCHPOINT_API_KEY", k),
                None => cmd.env_remove("TOUCHPOINT_API_KEY"),
            };
            let out = cmd.output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
            )
        })
    };
    let (ok, out) = cli(Some("k-admin")).await.unwrap();
    assert!(ok && out.contains("store memory"), "{out}");
    let (ok, out) = cli(None).await.unwrap();
    assert!(!ok && out.contains("missing API key"), "{out}");
}

#[tokio::test]
async fn the_harness_server_runs_with_authentication_on() {
    let store = touchpoint::store::open(&touchpoint::config::RedisConfig::default()).await.unwrap();
    let srv = crate::harness::TestServer::with_store(store, crate::harness::example_config("memory://")).await;
    assert_eq!(call("decide", with_key(&srv.bare, None)).await, Code::Unauthenticated);
    assert_eq!(call("decide", srv.channel.clone()).await, Code::Ok);
    srv.shutdown().await;
}
