//! The trainer against the server: identical feature vectors, and publishing to the Redis
//! registry (the gate, --force, rollback) picked up by a running server without a restart.
#[allow(dead_code)]
#[path = "../../tests/it/harness.rs"]
mod harness;

use harness::{RedisServer, TestServer, redis_store};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use touchpoint::config::Config;
use touchpoint::domain::MS_PER_DAY;
use touchpoint::domain::decision::DecisionQuery;
use touchpoint::domain::features::FEATURE_NAMES;
use touchpoint::domain::journey::JourneyDef;
use touchpoint::engine::Engine;
use touchpoint::grpc::pb;
use touchpoint::sim::{SimConfig, simulate};

fn train(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_touchpoint-train")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The server's decision logs the feature vector it used; the trainer, folding the same
/// events up to the decision's time, computes the same vector.
#[tokio::test]
async fn trainer_and_server_compute_identical_feature_vectors() {
    let now = touchpoint::engine::now_ms();
    let sim = simulate(&SimConfig { users: 40, days: 60, seed: 3, end: now - MS_PER_DAY });
    let redis = RedisServer::start();
    let cfg = Config::from_toml(&format!("[redis]\nurl = \"{}\"", redis.url()), "t", std::iter::empty()).unwrap();
    let engine = Engine::new(redis_store(&redis.url(), false).await, cfg, None, vec![]);
    for chunk in sim.events.chunks(500) {
        engine.record_events(chunk.to_vec()).await.unwrap();
    }
    let journey = JourneyDef::default_journey();
    let mut compared = 0;
    for u in sim.users.iter().take(25) {
        let q = DecisionQuery {
            user_id: u.user_id.clone(),
            channel: "web".into(),
            placement: String::new(),
            context: Default::default(),
            limit: 1,
            explain: false,
        };
        let d = engine.decide(q, None).await.unwrap();
        assert!(!d.record.degraded);
        let events: Vec<&touchpoint::domain::event::Event> =
            sim.events.iter().filter(|e| e.user_id == u.user_id).collect();
        let state = touchpoint_train::journey::state_at(&journey, &events, d.record.at);
        let trainer = touchpoint::domain::features::features(&state, &journey, d.record.at);
        let server: Vec<f64> = FEATURE_NAMES.iter().map(|n| d.record.features[*n]).collect();
        assert_eq!(server, trainer.to_vec(), "user {}", u.user_id);
        compared += 1;
    }
    assert_eq!(compared, 25);

    // `export` dumps the server's journey log: every recorded event, as JSON Lines the trainer reads.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.jsonl");
    let (ok, text) = train(&["export", "--redis-url", &redis.url(), "--out", out.to_str().unwrap()]);
    assert!(ok, "{text}");
    let mut bad = touchpoint_train::data::BadRows::new(0);
    let mut exported = touchpoint_train::data::read_events(&out, &mut bad).unwrap();
    let mut recorded = sim.events.clone();
    let key = |e: &touchpoint::domain::event::Event| (e.user_id.clone(), e.event_id.clone());
    exported.sort_by_key(key);
    recorded.sort_by_key(key);
    assert_eq!(exported, recorded, "the export round-trips every acknowledged event");
}

/// The features declared in the config (`[[features]]`, every kind): the server logs them
/// with each decision, and the trainer, folding the same events (and the same profile
/// attributes) up to the decision's time through the same function, gets the same values.
#[tokio::test]
async fn configured_features_are_the_same_in_server_and_trainer() {
    let now = touchpoint::engine::now_ms();
    let sim = simulate(&SimConfig { users: 300, days: 60, seed: 4, end: now - MS_PER_DAY });
    let redis = RedisServer::start();
    let src = format!(
        r#"[redis]
url = "{}"

[[features]]
name = "views_7d"
kind = "count"
events = ["page_view", "product_view"]
window_days = 7
log1p = true

[[features]]
name = "purchases_ever"
kind = "count"
events = ["purchase"]

[[features]]
name = "days_since_cart"
kind = "recency"
events = ["add_to_cart", "checkout_started"]

[[features]]
name = "spend_30d"
kind = "monetary"
events = ["purchase"]
window_days = 30

[[features]]
name = "age"
kind = "attribute"
attribute = "age"
default = 40

[[features]]
name = "income_high"
kind = "one_hot"
attribute = "income_band"
value = "high"

[[features]]
name = "basket"
kind = "context"
key = "basket_value"

[[features]]
name = "in_conversion"
kind = "stage"
stage = "conversion"
"#,
        redis.url()
    );
    let cfg = Config::from_toml(&src, "t", std::iter::empty()).unwrap();
    let (journey, defs) = (cfg.policy.journey.clone(), cfg.policy.features.clone());
    assert_eq!(defs.len(), 8);
    let engine = Engine::new(redis_store(&redis.url(), false).await, cfg, None, vec![]);
    for u in &sim.users {
        engine.put_profile(&u.user_id, u.attributes.clone(), vec![]).await.unwrap();
    }
    for chunk in sim.events.chunks(500) {
        engine.record_events(chunk.to_vec()).await.unwrap();
    }
    let mut nonzero = std::collections::BTreeSet::new();
    for (i, u) in sim.users.iter().take(25).enumerate() {
        let context = std::collections::BTreeMap::from([(
            "basket_value".to_string(),
            touchpoint::domain::profile::AttrValue::Num(i as f64 * 10.0),
        )]);
        let q = DecisionQuery {
            user_id: u.user_id.clone(),
            channel: "web".into(),
            placement: String::new(),
            context: context.clone(),
            limit: 1,
            explain: false,
        };
        let d = engine.decide(q, None).await.unwrap();
        let events: Vec<&touchpoint::domain::event::Event> =
            sim.events.iter().filter(|e| e.user_id == u.user_id).collect();
        let mut state = touchpoint_train::journey::state_at(&journey, &events, d.record.at);
        state.attributes = u.attributes.clone();
        let trainer = touchpoint::domain::features::configured(&defs, &state, &context, &journey, d.record.at);
        let server: Vec<f64> = defs.iter().map(|f| d.record.features[&f.name]).collect();
        assert_eq!(server, trainer, "user {}", u.user_id);
        let builtin: Vec<f64> = FEATURE_NAMES.iter().map(|n| d.record.features[*n]).collect();
        assert_eq!(builtin, touchpoint::domain::features::features(&state, &journey, d.record.at).to_vec());
        nonzero.extend(defs.iter().zip(&server).filter(|(_, v)| **v != 0.0).map(|(f, _)| f.name.clone()));
    }
    // Not vacuous: every feature took a value other than 0 for some user.
    assert_eq!(nonzero.len(), 8, "{nonzero:?}");

    // The trainer's tables carry the configured features as columns, named as the server
    // names them, so its models bind on the server; without the config they would not.
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("ev.jsonl");
    let config = dir.path().join("t.toml");
    std::fs::write(&config, &src).unwrap();
    let (ok, text) = train(&["export", "--redis-url", &redis.url(), "--out", events.to_str().unwrap()]);
    assert!(ok, "{text}");
    let model = dir.path().join("purchase.json");
    let cutoff = chrono::DateTime::from_timestamp_millis(now - 10 * MS_PER_DAY).unwrap().to_rfc3339();
    let (ok, text) = train(&[
        "fit-journey",
        "--events",
        events.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--target",
        "purchase",
        "--cutoff",
        &cutoff,
        "--horizon",
        "7",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let artifact: touchpoint::domain::model::ModelArtifact =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert!(artifact.feature_names.iter().any(|n| n == "views_7d") && artifact.feature_names.len() == 23);
    let (ok, text) = train(&["publish", "--redis-url", &redis.url(), model.to_str().unwrap()]);
    assert!(!ok && text.contains("views_7d"), "refused without the config's features: {text}");
    let (ok, text) =
        train(&["publish", "--redis-url", &redis.url(), model.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(ok, "{text}");

    // A table model whose columns are configured features is servable too (and only with the
    // config that declares them).
    let table = dir.path().join("table.csv");
    let mut csv = String::from("views_7d,age,bought\n");
    for i in 0..300u32 {
        let views = i % 10;
        csv += &format!("{views},{},{}\n", 20 + i % 50, u8::from((i * 7919) % 100 < 10 + 8 * views));
    }
    std::fs::write(&table, csv).unwrap();
    let table_model = dir.path().join("table.json");
    let (ok, text) = train(&[
        "fit-table",
        "--csv",
        table.to_str().unwrap(),
        "--label",
        "bought",
        "--name",
        "purchase",
        "--out",
        table_model.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let url = redis.url();
    let publish = |with_config: bool| {
        let mut args = vec!["publish", "--redis-url", &url, table_model.to_str().unwrap(), "--force"];
        if with_config {
            args.extend(["--config", config.to_str().unwrap()]);
        }
        train(&args)
    };
    let (ok, text) = publish(false);
    assert!(!ok && text.contains("views_7d"), "{text}");
    let (ok, text) = publish(true);
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_gate_and_hot_pickup_by_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    let sim_args = ["simulate", "--users", "3000", "--days", "120", "--end", "2026-06-01", "--seed", "5", "--out"];
    let (ok, out) = train(&[&sim_args[..], &[&path("ev.jsonl")]].concat());
    assert!(ok, "{out}");
    let fit = |c: &str, cutoff: &str, out_file: &str| {
        let events = path("ev.jsonl");
        let out = path(out_file);
        train(&[
            "fit-journey",
            "--events",
            &events,
            "--target",
            "purchase",
            "--cutoff",
            cutoff,
            "--horizon",
            "30",
            "--c",
            c,
            "--out",
            &out,
        ])
    };
    let (ok, out) = fit("1.0", "2026-05-01", "good.json");
    assert!(ok, "{out}");
    assert!(out.contains("ROC AUC"), "prints the metrics table: {out}");
    let good: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path("good.json")).unwrap()).unwrap();
    let good_version = good["version"].as_str().unwrap().to_string();
    // A worse model on the same holdout: the same artifact with its coefficients flipped.
    let mut bad = good.clone();
    bad["version"] = "purchase-flipped".into();
    for c in bad["coefficients"].as_array_mut().unwrap() {
        *c = (-c.as_f64().unwrap()).into();
    }
    let auc = good["metrics"]["holdout_auc"].as_f64().unwrap();
    bad["metrics"]["holdout_auc"] = (1.0 - auc).into();
    std::fs::write(path("bad.json"), bad.to_string()).unwrap();

    let redis = RedisServer::start();
    let body = format!("[redis]\nurl = \"{}\"\n[models]\nregistry = [\"purchase\"]\npoll_seconds = 0.1\n", redis.url());
    let cfg = Config::from_toml(&body, "t", std::iter::empty()).unwrap();
    // The harness's clients send its key: the served config must know it.
    let cfg = harness::with_test_key(cfg);
    let engine = Arc::new(Engine::new(redis_store(&redis.url(), false).await, cfg, None, vec![]));
    let _watcher = engine.spawn_model_watcher();
    let srv = TestServer::start(engine).await;
    let d = srv.decisions();
    // Decides until the purchase model version in the answer is `want` (or 10 s passed).
    let version_in_decisions = |want: Option<String>| {
        let mut d = d.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let req = pb::DecideRequest { user_id: "x".into(), channel: "web".into(), ..Default::default() };
                let got = d.decide(req).await.unwrap().into_inner().model_versions.get("purchase").cloned();
                if got == want || Instant::now() > deadline {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_eq!(version_in_decisions(None).await, None);

    let url = redis.url();
    let publish = |model: &str, extra: &[&str]| {
        let mut args = vec!["publish", "--redis-url", &url, model];
        args.extend_from_slice(extra);
        train(&args)
    };
    let (ok, out) = publish(&path("good.json"), &[]);
    assert!(ok, "{out}");
    assert_eq!(
        version_in_decisions(Some(good_version.clone())).await,
        Some(good_version.clone()),
        "picked up without a restart"
    );

    let (ok, out) = publish(&path("bad.json"), &[]);
    assert!(!ok && out.contains("refusing to publish"), "{out}");
    let (ok, out) = publish(&path("bad.json"), &["--events", &path("ev.jsonl")]);
    assert!(!ok && out.contains("refusing to publish") && out.contains("both evaluated"), "{out}");
    let (ok, out) = publish(&path("bad.json"), &["--force"]);
    assert!(ok, "{out}");
    assert_eq!(version_in_decisions(Some("purchase-flipped".into())).await.as_deref(), Some("purchase-flipped"));

    let (ok, out) = train(&["rollback", "--redis-url", &url, "purchase"]);
    assert!(ok && out.contains(&good_version), "{out}");
    assert_eq!(version_in_decisions(Some(good_version.clone())).await, Some(good_version));
    let (ok, out) = train(&["rollback", "--redis-url", &url, "purchase"]);
    assert!(!ok && out.contains("no earlier version"), "{out}");
    // A model fitted on another holdout cannot be compared from stored metrics alone.
    let (ok, out) = fit("1.0", "2026-04-20", "other.json");
    assert!(ok, "{out}");
    let (ok, out) = publish(&path("other.json"), &[]);
    assert!(!ok && out.contains("not evaluated on the same holdout"), "{out}");
}

/// A gradient-boosted model fitted by the trainer is published through the same gate and
/// picked up by a running server, which scores `Decide` requests with it exactly as the
/// artifact's own tree walk scores the user's features.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_gbdt_model_scores_decisions_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    let sim_args = ["simulate", "--users", "2000", "--days", "120", "--end", "2026-06-01", "--seed", "9", "--out"];
    let (ok, out) = train(&[&sim_args[..], &[&path("ev.jsonl")]].concat());
    assert!(ok, "{out}");
    let (ok, out) = train(&[
        "fit-journey",
        "--events",
        &path("ev.jsonl"),
        "--target",
        "purchase",
        "--cutoff",
        "2026-05-01",
        "--model",
        "gbdt",
        "--max-depth",
        "4",
        "--out",
        &path("gbdt.json"),
    ]);
    assert!(ok, "{out}");
    let a: touchpoint::domain::model::ModelArtifact =
        serde_json::from_str(&std::fs::read_to_string(path("gbdt.json")).unwrap()).unwrap();
    assert_eq!(a.kind, "gbdt");
    assert!(!a.trees.is_empty() && a.coefficients.is_empty());
    assert!(a.trees.iter().all(|t| t.depth() <= 4));

    let redis = RedisServer::start();
    let body = format!(
        "[redis]\nurl = \"{}\"\n[models]\nregistry = [\"purchase\"]\npoll_seconds = 0.1\n\n[[offers]]\nid = \"o\"\nstages = [\"awareness\", \"consideration\", \"conversion\", \"retention\", \"advocacy\"]\nchannels = [\"web\"]\ncontent_ref = \"cms://o\"\n",
        redis.url()
    );
    let cfg = Config::from_toml(&body, "t", std::iter::empty()).unwrap();
    // The harness's clients send its key: the served config must know it.
    let cfg = harness::with_test_key(cfg);
    let engine = Arc::new(Engine::new(redis_store(&redis.url(), false).await, cfg, None, vec![]));
    let _watcher = engine.spawn_model_watcher();
    let srv = TestServer::start(engine.clone()).await;
    let (ok, out) = train(&["publish", "--redis-url", &redis.url(), &path("gbdt.json")]);
    assert!(ok && out.contains("is now current"), "{out}");

    let mut d = srv.decisions();
    let req = pb::DecideRequest { user_id: "x".into(), channel: "web".into(), explain: true, ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let got = d.decide(req.clone()).await.unwrap().into_inner();
        if got.model_versions.get("purchase") == Some(&a.version) || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(answer.model_versions.get("purchase"), Some(&a.version), "picked up without a restart");
    let served = answer.explanation.first().and_then(|c| c.scores.get("purchase").copied()).expect("a purchase score");
    // The same user's feature vector, as the server computes it, scored by the artifact.
    let q = DecisionQuery {
        user_id: "x".into(),
        channel: "web".into(),
        placement: String::new(),
        context: Default::default(),
        limit: 1,
        explain: false,
    };
    let record = engine.decide(q, None).await.unwrap().record;
    let row: Vec<f64> = a.feature_names.iter().map(|n| record.features[n]).collect();
    assert_eq!(served, a.score_row(&row), "the server scores with the artifact's trees");
    assert_eq!(record.scores.get("purchase"), Some(&served));
}

/// A model whose features the server cannot produce (here a feature-table column) is refused
/// at publish, --force or not, and the registry is left as it was.
#[tokio::test]
async fn a_model_the_server_cannot_bind_is_refused_at_publish() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a: touchpoint::domain::model::ModelArtifact =
        serde_json::from_str(include_str!("../../examples/models/purchase.json")).unwrap();
    a.version = "purchase-shoe".into();
    a.feature_names[0] = "shoe_size".into();
    let model = dir.path().join("shoe.json");
    std::fs::write(&model, serde_json::to_string(&a).unwrap()).unwrap();
    let url = redis.url();
    for force in [false, true] {
        let mut args = vec!["publish", "--redis-url", &url, model.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        let (ok, out) = train(&args);
        assert!(!ok, "{out}");
        assert!(out.contains("the server cannot serve this model") && out.contains("shoe_size"), "{out}");
    }
    let store = redis_store(&redis.url(), false).await;
    assert_eq!(store.current_model("purchase").await.unwrap(), None);
    assert_eq!(store.get_model("purchase", "purchase-shoe").await.unwrap(), None, "nothing stored");
}
