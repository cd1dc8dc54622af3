//! Test harness: real redis-server processes on random ports (single node and a 3-master
//! cluster), and a real gRPC server on 127.0.0.1:0 with a real tonic client.
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use touchpoint::config::{Config, RedisConfig};
use touchpoint::engine::Engine;
use touchpoint::store::{Retention, Store, redis::RedisStore};

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else { return false };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else { return false };
    redis::cmd("PING").query::<String>(&mut conn).is_ok()
}

/// A `redis-server` on a random port in a temp dir, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        for _ in 0..5 {
            let mut s = RedisServer {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().unwrap(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
            };
            // A failed spawn is a port taken between our probe and redis' bind: try another.
            if s.spawn() {
                return s;
            }
        }
        panic!("could not start redis-server on a free port");
    }

    fn spawn(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (the README's test command installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if ping(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (after `stop`).
    pub fn restart(&mut self) {
        assert!(self.spawn(), "redis-server restarts on port {}", self.port);
    }

    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A 3-master Redis Cluster on random ports, joined with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// A synchronous cluster connection (routes each command by its key's slot).
    pub fn conn(&self) -> redis::cluster::ClusterConnection {
        let nodes: Vec<String> = self.nodes.iter().map(|n| n.url()).collect();
        redis::cluster::ClusterClient::new(nodes).unwrap().get_connection().unwrap()
    }

    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]))
            .collect();
        Self::join(nodes)
    }

    /// Joins started nodes into a cluster and waits until every node says it is ok.
    fn join(nodes: Vec<RedisServer>) -> Self {
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli on PATH");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in &nodes {
            loop {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut n.conn()).unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "cluster did not converge: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",")
    }
}

pub fn retention() -> Retention {
    Retention {
        journey_log_maxlen: 100_000,
        decision_log_maxlen: 100_000,
        dedup_window_ms: 30 * 86_400_000,
        dedup_max_per_user: 5,
        recent_decisions_per_user: 3,
        counter_retention_days: 90,
        archive: false,
    }
}

pub fn redis_config(url: &str, cluster: bool, prefix: &str) -> RedisConfig {
    RedisConfig { url: url.into(), cluster, key_prefix: prefix.into(), command_timeout_ms: 500, ..Default::default() }
}

pub async fn redis_store(url: &str, cluster: bool) -> Arc<dyn Store> {
    Arc::new(RedisStore::connect(&redis_config(url, cluster, "tp"), retention()).await.unwrap())
}

pub fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/touchpoint.toml")
}

/// The example config pointing at `redis_url`.
pub fn example_config(redis_url: &str) -> Config {
    Config::load(&example_path(), [("TOUCHPOINT_REDIS_URL".to_string(), redis_url.to_string())]).unwrap()
}

/// The API key every harness client sends; `AUTH_TOML` grants it every role.
pub const TEST_KEY: &str = "tpk_harness-key-with-every-role";

/// An `[[auth.keys]]` entry for `TEST_KEY`, to append to config files tests write.
pub fn auth_toml() -> String {
    format!(
        "\n[[auth.keys]]\nid = \"harness\"\nsha256 = \"{}\"\nroles = [\"decide\", \"ingest\", \"profiles\", \"analyst\", \"admin\"]\n",
        hex::encode(touchpoint::config::key_hash(TEST_KEY))
    )
}

/// `config` with `TEST_KEY` as its one key when it has none (authentication stays on).
pub fn with_test_key(mut config: Config) -> Config {
    if config.auth.keys.is_empty() && config.auth.clients.is_empty() {
        config.auth = Config::from_toml(&auth_toml(), "<harness>", std::iter::empty()).unwrap().auth;
    }
    config
}

/// A gRPC server on 127.0.0.1:0 serving `engine` through the same `grpc::serve` main uses.
pub struct TestServer {
    pub engine: Arc<Engine>,
    /// A connection that sends `TEST_KEY` with every call.
    pub channel: touchpoint::grpc::auth::KeyedChannel,
    /// The same connection without a key.
    pub bare: tonic::transport::Channel,
    pub addr: std::net::SocketAddr,
    /// The HTTP port: `/metrics`, the console and the JSON door.
    pub http: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(engine: Arc<Engine>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let e = engine.clone();
        let task = tokio::spawn(async move {
            touchpoint::grpc::serve(listener, e, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let routes = touchpoint::console::http_routes(engine.clone());
        let http_task = tokio::spawn(touchpoint::telemetry::serve_http(http_listener, routes, std::future::pending()));
        let task = tokio::spawn(async move {
            let _ = task.await;
            http_task.abort();
        });
        let bare = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let key = touchpoint::grpc::auth::ApiKey::new(Some(TEST_KEY)).unwrap();
        let channel = touchpoint::grpc::auth::keyed(bare.clone(), key);
        TestServer { engine, channel, bare, addr, http, stop: Some(tx), task: Some(task) }
    }

    /// A config over a store, served (with `TEST_KEY` added when the config has no key).
    pub async fn with_store(store: Arc<dyn Store>, config: Config) -> Self {
        Self::start(Arc::new(Engine::new(store, with_test_key(config), None, vec![]))).await
    }

    pub fn decisions(
        &self,
    ) -> touchpoint::grpc::pb::decisions_client::DecisionsClient<touchpoint::grpc::auth::KeyedChannel> {
        touchpoint::grpc::pb::decisions_client::DecisionsClient::new(self.channel.clone())
    }

    pub fn profiles(
        &self,
    ) -> touchpoint::grpc::pb::profiles_client::ProfilesClient<touchpoint::grpc::auth::KeyedChannel> {
        touchpoint::grpc::pb::profiles_client::ProfilesClient::new(self.channel.clone())
    }

    /// Signals shutdown and waits until the server has drained.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// `n` distinct ports with nothing listening (at the time of asking).
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::new();
    while ports.len() < n {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

impl RedisCluster {
    /// A 3-master cluster on the given ports (for tests that point a store at them first).
    pub fn start_on(ports: &[u16]) -> Self {
        let nodes: Vec<RedisServer> = ports
            .iter()
            .map(|&port| {
                let mut s = RedisServer {
                    port,
                    child: None,
                    dir: tempfile::tempdir().unwrap(),
                    extra: ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"].map(String::from).to_vec(),
                };
                assert!(s.spawn(), "redis-server starts on port {port}");
                s
            })
            .collect();
        Self::join(nodes)
    }
}

/// Kills `server` (and removes its directory) when this test process exits, however it exits:
/// shared servers live in statics, which are never dropped. A `sh` watchdog waits for its
/// stdin to close, which happens only when the process holding the other end is gone.
fn reap_at_exit(server: &RedisServer) {
    static WATCHDOGS: std::sync::Mutex<Vec<Child>> = std::sync::Mutex::new(Vec::new());
    let pid = server.child.as_ref().expect("a running server").id();
    let dog = Command::new("sh")
        .args(["-c", "cat >/dev/null; kill \"$0\"; sleep 1; rm -rf \"$1\""])
        .arg(pid.to_string())
        .arg(server.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh on PATH");
    WATCHDOGS.lock().unwrap_or_else(|p| p.into_inner()).push(dog);
}

/// One redis-server shared by every test of this binary that asks for it; each test keeps to
/// its own key prefix.
pub fn shared_redis() -> &'static RedisServer {
    static SERVER: std::sync::OnceLock<RedisServer> = std::sync::OnceLock::new();
    SERVER.get_or_init(|| {
        let s = RedisServer::start();
        reap_at_exit(&s);
        s
    })
}

/// One 3-master cluster shared by every test of this binary that asks for it; each test keeps
/// to its own key prefix.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| {
        let c = RedisCluster::start();
        c.nodes.iter().for_each(reap_at_exit);
        c
    })
}

/// A store on the shared server (`cluster`: the shared cluster) under its own key prefix.
pub async fn shared_redis_store(cluster: bool, prefix: &str) -> RedisStore {
    let url = if cluster { shared_cluster().url() } else { shared_redis().url() };
    RedisStore::connect(&redis_config(&url, cluster, prefix), retention()).await.unwrap()
}

/// One HTTP/1.0 request to `addr`: (status, headers and body as text).
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: test\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    req += body;
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}
