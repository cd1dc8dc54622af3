//! The log archive (issue 10, point 1) against a real redis-server and the real `touchpoint
//! archive` process: with `redis.archive` on, a log at its cap refuses writes instead of
//! dropping accepted entries; the archiver writes Parquet files, acknowledges and trims; an
//! archiver that stops between writing and acknowledging, or is killed mid-run, loses nothing
//! and duplicates nothing; the trainer's reading of archive + live log has every acknowledged
//! entry exactly once.
use crate::harness::RedisServer;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use touchpoint::config::Config;
use touchpoint::domain::decision::DecisionQuery;
use touchpoint::domain::event::Event;
use touchpoint::engine::{Engine, Error};
use touchpoint::store::redis::RedisStore;
use touchpoint::store::{DecisionLogEntry, Retention};

fn event(n: usize) -> Event {
    Event {
        event_id: format!("e{n}"),
        user_id: format!("u{}", n % 37),
        event_type: "page_view".into(),
        timestamp: touchpoint::engine::now_ms(),
        channel: String::new(),
        offer_id: String::new(),
        value: 0.0,
        properties: BTreeMap::new(),
    }
}

fn archive(config: &Path, out: &Path, exit_before_ack: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_touchpoint"));
    cmd.args(["archive", "--once", "--batch", "25", "--config", config.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .env("RUST_LOG", "error");
    if exit_before_ack {
        cmd.env("TOUCHPOINT_ARCHIVE_EXIT_BEFORE_ACK", "1");
    }
    cmd.output().unwrap()
}

async fn xlen(redis: &RedisServer, key: &str) -> i64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("XLEN").arg(key).query_async(&mut c).await.unwrap()
}

#[tokio::test]
async fn the_archive_loses_nothing_and_duplicates_nothing_across_caps_and_crashes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (config, out) = (dir.path().join("touchpoint.toml"), dir.path().join("archive"));
    let src = format!(
        "[redis]\nurl = \"{}\"\narchive = true\njourney_log_maxlen = 60\ndecision_log_maxlen = 40\n",
        redis.url()
    );
    std::fs::write(&config, &src).unwrap();
    let cfg = Config::from_toml(&src, "touchpoint.toml", std::iter::empty()).unwrap();
    let store = touchpoint::store::open(&cfg.file.redis).await.unwrap();
    let engine = Engine::new(store, cfg.clone(), None, vec![]);

    // Events until the journey log is at its cap: the next one is refused, nothing written.
    let mut accepted = BTreeSet::new();
    let mut n = 0;
    let refused = loop {
        match engine.record_events(vec![event(n)]).await {
            Ok(_) => accepted.insert(format!("e{n}")),
            Err(e) => break e,
        };
        n += 1;
        assert!(n < 200, "the cap never refused");
    };
    assert!(matches!(refused, Error::OutOfMemory(ref m) if m.contains("archiver is behind")), "{refused:?}");
    assert_eq!(accepted.len(), 60, "the cap, exactly: nothing trimmed");
    assert_eq!(xlen(&redis, "tp:jlog").await, 60);
    // Decisions until the decision log is at its cap: then answered from the fallback
    // (`store_oom`), which logs nothing.
    let mut decided = BTreeSet::new();
    for i in 0..60 {
        let q = DecisionQuery {
            user_id: format!("u{i}"),
            channel: "web".into(),
            placement: String::new(),
            context: BTreeMap::new(),
            limit: 1,
            explain: false,
        };
        let d = engine.decide(q, None).await.unwrap();
        match d.degraded_reason.as_deref() {
            None => assert!(decided.insert(d.record.decision_id.clone())),
            Some(reason) => assert_eq!(reason, "store_oom"),
        }
    }
    assert_eq!(decided.len(), 40);

    // An archiver that stops after writing its first file, before acknowledging it...
    let first = archive(&config, &out, true);
    assert_eq!(first.status.code(), Some(9), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(touchpoint::archive::read(&out, "journey").unwrap().len(), 25);
    assert_eq!(xlen(&redis, "tp:jlog").await, 60, "nothing acknowledged, nothing trimmed");
    // ... then a full pass: the unacknowledged batch is acknowledged, not written again.
    let second = archive(&config, &out, false);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!((xlen(&redis, "tp:jlog").await, xlen(&redis, "tp:dlog").await), (0, 0), "archived, then trimmed");

    // Room again: more events while an archiver runs continuously, killed mid-run.
    let mut running = Command::new(env!("CARGO_BIN_EXE_touchpoint"))
        .args(["archive", "--batch", "7", "--interval-ms", "10", "--config", config.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    for _ in 0..150 {
        n += 1;
        match engine.record_events(vec![event(n)]).await {
            Ok(_) => {
                accepted.insert(format!("e{n}"));
            }
            // The archiver is behind for a moment: refused, not lost; the caller retries later.
            Err(Error::OutOfMemory(_)) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(e) => panic!("{e:?}"),
        }
    }
    running.kill().unwrap(); // SIGKILL
    running.wait().unwrap();
    let last = archive(&config, &out, false);
    assert!(last.status.success(), "{}", String::from_utf8_lossy(&last.stderr));

    // Every accepted event is archived exactly once, and nothing else is.
    let redis_store = RedisStore::connect(&cfg.file.redis, Retention::from_config(&cfg.file.redis)).await.unwrap();
    let archived = touchpoint::archive::read(&out, "journey").unwrap();
    let ids: BTreeSet<&str> = archived.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), archived.len(), "an entry archived twice");
    let events = redis_store.open_archived_events(&archived).await.unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *counts.entry(e.event_id.clone()).or_default() += 1;
    }
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), accepted);
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    // The trainer's view (archive + live log): every decision once.
    let log = redis_store.decision_log_with_archive(&out).await.unwrap();
    let logged: Vec<String> = log
        .iter()
        .filter_map(|e| match e {
            DecisionLogEntry::Decision(d) => Some(d.decision_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(logged.iter().cloned().collect::<BTreeSet<_>>(), decided);
    assert_eq!(logged.len(), decided.len());
}

/// On a Redis Cluster the logs are sharded by slot; the archiver walks every shard, and each
/// accepted event is archived once, from whichever node holds its shard.
#[tokio::test]
async fn the_archive_covers_every_shard_of_a_cluster() {
    let cluster = crate::harness::shared_cluster();
    let dir = tempfile::tempdir().unwrap();
    let (config, out) = (dir.path().join("touchpoint.toml"), dir.path().join("archive"));
    let src = format!(
        "[redis]\nurl = \"{}\"\ncluster = true\nkey_prefix = \"tp-archive\"\narchive = true\n",
        cluster.nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(",")
    );
    std::fs::write(&config, &src).unwrap();
    let cfg = Config::from_toml(&src, "touchpoint.toml", std::iter::empty()).unwrap();
    let engine = Engine::new(touchpoint::store::open(&cfg.file.redis).await.unwrap(), cfg.clone(), None, vec![]);
    let accepted: BTreeSet<String> = (0..60).map(|n| format!("e{n}")).collect();
    for n in 0..60 {
        engine.record_events(vec![event(n)]).await.unwrap();
    }
    let run = archive(&config, &out, false);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let store = RedisStore::connect(&cfg.file.redis, Retention::from_config(&cfg.file.redis)).await.unwrap();
    let archived = touchpoint::archive::read(&out, "journey").unwrap();
    let shards: BTreeSet<&str> = archived.iter().map(|e| e.stream.as_str()).collect();
    assert!(shards.len() > 10, "37 users spread over many slot shards: {}", shards.len());
    let events = store.open_archived_events(&archived).await.unwrap();
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), accepted.len());
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), accepted);
    // Trimmed on every node: a second pass finds nothing.
    let again = archive(&config, &out, false);
    assert!(String::from_utf8_lossy(&again.stdout).contains("archived 0 entries"));
}
