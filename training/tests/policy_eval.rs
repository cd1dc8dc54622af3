//! Counterfactual evaluation on the simulator (issue 10, point 6 and its done-when): a server
//! logs decisions under an exploring policy and the simulated users respond with known click
//! probabilities; `touchpoint-train evaluate` estimates candidate policies from that log; then
//! each candidate runs on-policy on the same users, and its true value (the mean true click
//! probability of what it showed) must lie within the estimates' 95% CIs. The publish gate
//! reads the same log.
#[allow(dead_code)]
#[path = "../../tests/it/harness.rs"]
mod harness;

use harness::{RedisServer, redis_store};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use touchpoint::config::Config;
use touchpoint::domain::MS_PER_DAY;
use touchpoint::domain::decision::DecisionQuery;
use touchpoint::domain::outcome::{OutcomeKind, OutcomeRecord};
use touchpoint::engine::Engine;
use touchpoint::sim::{SimConfig, SimUser, click_probability, offer_appeal, simulate};

/// Four offers in every stage on the web, static priorities 4..1 by the simulator's appeal
/// (the greedy policy shows the most appealing offer, the reversed one the least), and
/// `decisions`.
fn config_text(redis: &str, decisions: &str) -> String {
    let mut offers = ["o1", "o2", "o3", "o4"];
    offers.sort_by(|a, b| offer_appeal(b).total_cmp(&offer_appeal(a)));
    let mut s = format!("[redis]\nurl = \"{redis}\"\n\n{decisions}\n");
    for (k, id) in offers.iter().enumerate() {
        s += &format!(
            "[[offers]]\nid = \"{id}\"\nstages = [\"awareness\", \"consideration\", \"conversion\", \"retention\", \"advocacy\"]\nchannels = [\"web\"]\ncontent_ref = \"cms://{id}\"\npriority = {}\n\n",
            4 - k
        );
    }
    s
}

/// One web decision per user; returns (user index, offer shown) pairs.
async fn decide_all(engine: &Engine, users: &[SimUser]) -> Vec<(usize, String)> {
    let mut shown = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let d = engine.decide(web_query(u), None).await.unwrap();
        assert!(d.degraded_reason.is_none());
        shown.push((i, d.offers[0].offer_id.clone()));
    }
    shown
}

/// A web decision for one offer.
fn web_query(u: &SimUser) -> DecisionQuery {
    DecisionQuery {
        user_id: u.user_id.clone(),
        channel: "web".into(),
        placement: String::new(),
        context: BTreeMap::new(),
        limit: 1,
        explain: false,
    }
}

/// The users' events recorded, then one logged web decision each, clicked with the
/// simulator's true probability (seeded); returns the clicks.
async fn log_with_clicks(engine: &Engine, sim: &touchpoint::sim::Simulation, seed: u64) -> usize {
    for chunk in sim.events.chunks(500) {
        engine.record_events(chunk.to_vec()).await.unwrap();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut clicks = 0;
    for u in &sim.users {
        let d = engine.decide(web_query(u), None).await.unwrap();
        let offer = d.offers[0].offer_id.clone();
        if rng.gen_bool(click_probability(u, &offer)) {
            clicks += 1;
            let click = OutcomeRecord {
                decision_id: d.record.decision_id.clone(),
                user_id: u.user_id.clone(),
                offer_id: offer,
                outcome: OutcomeKind::Click,
                value: 0.0,
                at: touchpoint::engine::now_ms(),
            };
            engine.record_outcome(click).await.unwrap();
        }
    }
    clicks
}

#[tokio::test]
async fn evaluate_estimates_cover_the_candidates_on_policy_values() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let now = touchpoint::engine::now_ms();
    let sim = simulate(&SimConfig { users: 1200, days: 20, seed: 11, end: now - MS_PER_DAY });
    let store = redis_store(&redis.url(), false).await;

    // The logging policy: epsilon-greedy, epsilon 0.6 (the best offer 0.55, each other 0.15).
    let logging = config_text(&redis.url(), "[decisions.exploration]\npolicy = \"epsilon_greedy\"\nepsilon = 0.6");
    let logging_path = dir.path().join("logging.toml");
    std::fs::write(&logging_path, &logging).unwrap();
    let cfg = Config::from_toml(&logging, "logging.toml", std::iter::empty()).unwrap();
    let engine = Engine::new(store.clone(), cfg, None, vec![]).with_exploration_seed(1);
    let logged_clicks = log_with_clicks(&engine, &sim, 5).await;
    assert!(logged_clicks > 50, "{logged_clicks}");

    // Candidates: greedy by priority (always o1), greedy reversed (always o4), softmax.
    let candidates = [
        ("greedy", String::new()),
        ("reversed", "[decisions]\npriority = \"0.0 - offer.priority\"".to_string()),
        ("softmax", "[decisions.exploration]\npolicy = \"softmax\"\ntemperature = 1.0".to_string()),
    ];
    let mut args = vec!["evaluate".to_string(), "--config".into(), logging_path.display().to_string(), "--json".into()];
    for (name, decisions) in &candidates {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config_text(&redis.url(), decisions)).unwrap();
        args.extend(["--candidate".to_string(), path.display().to_string()]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_touchpoint-train")).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(results.len(), 1 + candidates.len());
    let estimate = |k: usize, which: &str| {
        let e = &results[k]["evaluation"][which];
        (e["value"].as_f64().unwrap(), e["ci"][0].as_f64().unwrap(), e["ci"][1].as_f64().unwrap())
    };
    // The running policy's own estimate is its logged value (weights all 1).
    assert_eq!(results[0]["evaluation"]["n"].as_u64(), Some(sim.users.len() as u64));
    let (ips, _, _) = estimate(0, "ips");
    let (logged, _, _) = estimate(0, "logged");
    assert!((ips - logged).abs() < 1e-12);

    // The publish gate on the same log: the running (logging) config with the example's
    // purchase model swapped in, against the running config. Whatever the estimates, a
    // margin of 1 (a click per decision) lets it through and a margin of -1 refuses it,
    // printing the evidence and storing nothing.
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/purchase.json");
    let run = |margin: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_touchpoint-train"))
            .args(["publish", "--redis-url", &redis.url(), model.to_str().unwrap()])
            .args(["--gate-config", logging_path.to_str().unwrap(), &format!("--gate-margin={margin}")])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = run("-1");
    assert!(
        !ok && text.contains("refusing to publish") && text.contains("gate (Click per decision, SNIPS on 1200"),
        "{text}"
    );
    assert_eq!(store.current_model("purchase").await.unwrap(), None, "a refused model is not stored");
    let (ok, text) = run("1");
    assert!(ok && text.contains("gate (") && text.contains("is now current"), "{text}");
    assert!(store.current_model("purchase").await.unwrap().is_some());
    // A config that follows the registry is evaluated with the model its servers would load:
    // the same estimates as a config naming that model's file.
    let with = |name: &str, models: String| {
        let path = dir.path().join(name);
        let src = format!("{logging}\n[models]\n{models}\n");
        std::fs::write(&path, src).unwrap();
        path.display().to_string()
    };
    let registry = with("registry.toml", "registry = [\"purchase\"]".into());
    let file = with("file.toml", format!("purchase = {:?}", model.display().to_string()));
    let out = Command::new(env!("CARGO_BIN_EXE_touchpoint-train"))
        .args(["evaluate", "--config", logging_path.to_str().unwrap(), "--json", "--candidate", &registry])
        .args(["--candidate", &file])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let both: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(both[1]["evaluation"], both[2]["evaluation"]);
    assert_ne!(both[0]["evaluation"], both[1]["evaluation"], "the model changes the policy");

    // On-policy: each candidate decides for the same users; its true value is the mean true
    // click probability of what it showed.
    let mut truths = Vec::new();
    for (k, (name, decisions)) in candidates.iter().enumerate() {
        let cfg = Config::from_toml(&config_text(&redis.url(), decisions), "c.toml", std::iter::empty()).unwrap();
        let on_policy = Arc::new(Engine::new(store.clone(), cfg, None, vec![]).with_exploration_seed(100 + k as u64));
        let shown = decide_all(&on_policy, &sim.users).await;
        let truth = shown.iter().map(|(i, o)| click_probability(&sim.users[*i], o)).sum::<f64>() / shown.len() as f64;
        for which in ["ips", "snips", "dr"] {
            let (v, lo, hi) = estimate(k + 1, which);
            assert!(
                lo <= truth && truth <= hi,
                "{name} {which}: true on-policy value {truth} outside {v} [{lo}, {hi}]"
            );
        }
        truths.push(truth);
    }
    // The candidates differ, so the check is not vacuous.
    assert!((truths[0] - truths[1]).abs() > 0.01, "{truths:?}");
}

/// Issue 10, point 4: per-offer response models learned from the logged decisions rank offers
/// better than static priorities. The static priorities are a marketer's guess (the coupon
/// first, the banner third); the simulated customers' appeal is banner 0.296, survey 0.233,
/// coupon 0.080, upsell 0.048 (`sim::offer_appeal`). `fit-responses` learns a model per offer
/// from an exploring server's log; a config serving them as `scores.response` is then run
/// on-policy next to the static one on the same users.
#[tokio::test]
async fn learned_response_models_rank_offers_better_than_static_priorities() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let offers = [("coupon", 4.0), ("upsell", 3.0), ("banner", 2.0), ("survey", 1.0)];
    let text = |decisions: &str, models: &str| {
        let mut s = format!("[redis]\nurl = \"{}\"\n\n{decisions}\n{models}\n", redis.url());
        for (id, priority) in offers {
            s += &format!(
                "[[offers]]\nid = \"{id}\"\nstages = [\"awareness\", \"consideration\", \"conversion\", \"retention\", \"advocacy\"]\nchannels = [\"web\"]\ncontent_ref = \"cms://{id}\"\npriority = {priority}\nvalue = 1\n\n"
            );
        }
        s
    };
    let now = touchpoint::engine::now_ms();
    let sim = simulate(&SimConfig { users: 1500, days: 20, seed: 12, end: now - MS_PER_DAY });
    let store = redis_store(&redis.url(), false).await;
    let logging = text("[decisions.exploration]\npolicy = \"epsilon_greedy\"\nepsilon = 0.6", "");
    let cfg = Config::from_toml(&logging, "logging.toml", std::iter::empty()).unwrap();
    let engine = Engine::new(store.clone(), cfg, None, vec![]).with_exploration_seed(3);
    log_with_clicks(&engine, &sim, 9).await;
    let models = dir.path().join("models");
    let out = Command::new(env!("CARGO_BIN_EXE_touchpoint-train"))
        .args(["fit-responses", "--redis-url", &redis.url(), "--out-dir", models.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    let mut served = String::from("[models.response]\n");
    for (id, _) in offers {
        let path = models.join(format!("response-{id}.json"));
        assert!(path.exists(), "no model for {id}: {printed}");
        served += &format!("{id} = {:?}\n", path.display().to_string());
    }

    // On-policy, the same users: the static priorities against the learned response scores.
    let mut values = Vec::new();
    let mut banner_share = 0.0;
    for (k, config) in [text("", ""), text("", &served)].iter().enumerate() {
        let cfg = Config::from_toml(config, "c.toml", std::iter::empty()).unwrap();
        let on_policy = Engine::new(store.clone(), cfg, None, vec![]).with_exploration_seed(50 + k as u64);
        let shown = decide_all(&on_policy, &sim.users).await;
        values.push(shown.iter().map(|(i, o)| click_probability(&sim.users[*i], o)).sum::<f64>() / shown.len() as f64);
        banner_share = shown.iter().filter(|(_, o)| o == "banner").count() as f64 / shown.len() as f64;
    }
    let (fixed, learned) = (values[0], values[1]);
    assert!(learned > fixed + 0.05, "learned {learned} vs static {fixed}\n{printed}");
    assert!(banner_share > 0.5, "the most appealing offer leads: {banner_share}");
}
