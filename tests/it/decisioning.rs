//! Decisioning end to end over a real gRPC socket and a real redis-server: segments,
//! eligibility, models, caps and contact limits under concurrency, DecideBatch, fallback
//! within the deadline, reload under load, replay.
use crate::grpc_e2e::ev;
use crate::harness::{RedisServer, TestServer, example_config, example_path, redis_config, redis_store, retention};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use touchpoint::config::{Config, RedisConfig};
use touchpoint::engine::Engine;
use touchpoint::grpc::convert::parse_cli_value;
use touchpoint::grpc::pb;
use touchpoint::store::redis::RedisStore;

fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, pb::Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), parse_cli_value(v))).collect()
}

fn decide(user: &str, channel: &str, limit: u32) -> pb::DecideRequest {
    pb::DecideRequest { user_id: user.into(), channel: channel.into(), limit, explain: true, ..Default::default() }
}

/// A config with `body` on top of the example's journey, pointing at `redis`.
fn config(body: &str, redis: &str) -> Config {
    let src = format!("[redis]\nurl = \"{redis}\"\n{body}");
    Config::from_toml(&src, "test.toml", std::iter::empty()).unwrap()
}

async fn served_example(redis: &RedisServer) -> TestServer {
    TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await
}

#[tokio::test]
async fn segments_of_every_kind_and_offer_eligibility() {
    let redis = RedisServer::start();
    let srv = served_example(&redis).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    let a = [("age", "25"), ("income_band", "high"), ("country", "DE"), ("interests", "electronics,books")];
    p.put_profile(pb::PutProfileRequest { user_id: "ana".into(), attributes: attrs(&a), remove_attributes: vec![] })
        .await
        .unwrap();
    let events = ["page_view", "add_to_cart", "purchase", "add_to_cart", "purchase", "add_to_cart"];
    let evs = events.iter().enumerate().map(|(i, t)| ev("ana", &format!("ana-{i}"), t, i as i64, 30.0)).collect();
    d.record_events(pb::RecordEventsRequest { events: evs }).await.unwrap();
    let r = d.decide(decide("ana", "web", 3)).await.unwrap().into_inner();
    let mut segments = r.segments.clone();
    segments.sort();
    assert_eq!(
        segments,
        [
            "cart_abandoners",
            "eu_customers",
            "high_income",
            "recently_active",
            "repeat_buyers",
            "tech_enthusiasts",
            "young_adults"
        ],
        "demographic, behavioural, psychographic and geographic segments"
    );

    // Eligibility in the consideration stage: interest- and country-led offers.
    let b = [("age", "52"), ("income_band", "low"), ("country", "US"), ("interests", "books")];
    for (user, a) in [("ben", &b[..]), ("cai", &a[..])] {
        p.put_profile(pb::PutProfileRequest { user_id: user.into(), attributes: attrs(a), remove_attributes: vec![] })
            .await
            .unwrap();
        let evs = vec![ev(user, &format!("{user}-1"), "product_view", 1, 0.0)];
        d.record_events(pb::RecordEventsRequest { events: evs }).await.unwrap();
    }
    let explain = |r: &pb::DecideResponse, id: &str| r.explanation.iter().find(|c| c.offer_id == id).cloned().unwrap();
    let ben = d.decide(decide("ben", "web", 5)).await.unwrap().into_inner();
    assert_eq!(ben.segments, ["recently_active"]);
    for offer in ["gadget_guide", "eu_free_returns"] {
        let c = explain(&ben, offer);
        assert!(!c.kept && c.reason == "eligibility rule is false" && c.reason_code == "ineligible", "{c:?}");
    }
    let cai = d.decide(decide("cai", "web", 5)).await.unwrap().into_inner();
    let ids: Vec<&str> = cai.offers.iter().map(|o| o.offer_id.as_str()).collect();
    assert_eq!(ids[..2], ["gadget_guide", "similar_items"], "ranked by priority: 55, 50, then 48");
    assert!(ids.contains(&"eu_free_returns"));
    assert!(cai.segments.contains(&"eu_customers".to_string()));
}

#[tokio::test]
async fn models_score_offers_and_a_missing_score_is_explained() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let artifact = |name: &str, version: &str, coef: f64| {
        let a = serde_json::json!({
            "name": name, "version": version, "kind": "logistic_regression",
            "feature_names": ["log_purchases", "log_recency_days"],
            "scaling": { "mean": [0.0, 0.0], "std": [1.0, 1.0] },
            "intercept": -1.0, "coefficients": [coef, -0.2]
        });
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, a.to_string()).unwrap();
        path.display().to_string()
    };
    let purchase = artifact("purchase", "p-7", 1.0);
    let body = format!(
        r#"
[models]
purchase = "{purchase}"

[[segments]]
id = "likely_buyers"
rule = "scores.purchase > 0.3"

[[segments]]
id = "churn_risk"
rule = "scores.churn > 0.5"

[[offers]]
id = "cheap"
stages = ["awareness", "retention"]
channels = ["web"]
content_ref = "cms://cheap"
value = 2.0

[[offers]]
id = "dear"
stages = ["awareness", "retention"]
channels = ["web"]
content_ref = "cms://dear"
value = 10.0
weight = 0.5

[[offers]]
id = "rescue"
stages = ["awareness", "retention"]
channels = ["web"]
content_ref = "cms://rescue"
value = 100.0
eligibility = "scores.churn > 0.5"
"#
    );
    let cfg = config(&body, &redis.url());
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, cfg).await;
    let mut d = srv.decisions();
    let evs = (0..3).map(|i| ev("m", &format!("m{i}"), "purchase", i, 20.0)).collect();
    d.record_events(pb::RecordEventsRequest { events: evs }).await.unwrap();
    let r = d.decide(decide("m", "web", 3)).await.unwrap().into_inner();
    assert_eq!(r.model_versions.get("purchase").map(String::as_str), Some("p-7"));
    let p = r.explanation[0].scores["purchase"];
    // purchases = 3, recency about an hour: z = -1 + ln(4) - 0.2 ln(1 + 1/24)
    let z: f64 = -1.0 + 4f64.ln() - 0.2 * (1.0f64 + 1.0 / 24.0).ln();
    assert!((p - 1.0 / (1.0 + (-z).exp())).abs() < 1e-3, "{p}");
    let ids: Vec<&str> = r.offers.iter().map(|o| o.offer_id.as_str()).collect();
    assert_eq!(ids, ["dear", "cheap"], "default priority: purchase score * value * weight (5 vs 2)");
    assert!((r.offers[0].score - p * 10.0 * 0.5).abs() < 1e-9);
    assert_eq!(r.segments, ["likely_buyers"], "a segment reading a missing score is false");
    let rescue = r.explanation.iter().find(|c| c.offer_id == "rescue").unwrap();
    assert_eq!(rescue.reason, "eligibility rule could not be evaluated: no value for \"churn\"");
    assert_eq!(rescue.reason_code, "eligibility_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_and_contact_limits_hold_under_concurrent_decide_and_decide_batch() {
    let redis = RedisServer::start();
    // A generous store budget and room for every call at once: this test is about caps and
    // contact limits under concurrency, not about degrading or shedding under load.
    let body = r#"
[decisions]
deadline_ms = 10000

[server.limits]
interactive = 64

[[offers]]
id = "promo"
stages = ["awareness"]
channels = ["web", "email"]
content_ref = "cms://promo"
cap = { max = 2, days = 7 }

[[offers]]
id = "newsletter"
stages = ["awareness"]
channels = ["email"]
content_ref = "cms://newsletter"
priority = -1

[[contact_policy]]
channel = "email"
limits = [{ max = 1, days = 3 }]
"#;
    let srv =
        Arc::new(TestServer::with_store(redis_store(&redis.url(), false).await, config(body, &redis.url())).await);

    // 30 concurrent web decisions for one user: the cap lets exactly 2 show the promo.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let mut d = srv.decisions();
        tasks.spawn(async move { d.decide(decide("hot", "web", 1)).await.unwrap().into_inner() });
    }
    let mut shown = 0;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert!(!r.degraded, "{r:?}");
        shown += r.offers.iter().filter(|o| o.offer_id == "promo").count();
        if r.offers.is_empty() {
            let promo = r.explanation.iter().find(|c| c.offer_id == "promo").unwrap();
            assert!(promo.reason.starts_with("capped"), "{promo:?}");
        }
    }
    assert_eq!(shown, 2, "cap of 2 per 7 days holds under concurrency");

    // E-mail: concurrent Decide calls and DecideBatch sends naming the same user: one contact.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mut d = srv.decisions();
        if i % 4 == 0 {
            tasks.spawn(async move {
                let req = pb::DecideBatchRequest {
                    user_ids: vec!["mailee".into(); 5],
                    channel: "email".into(),
                    limit: 1,
                    ..Default::default()
                };
                let mut stream = d.decide_batch(req).await.unwrap().into_inner();
                let mut mailed = 0;
                while let Some(item) = stream.message().await.unwrap() {
                    mailed += usize::from(!item.decision.unwrap().offers.is_empty());
                }
                mailed
            });
        } else {
            tasks.spawn(async move {
                usize::from(!d.decide(decide("mailee", "email", 1)).await.unwrap().into_inner().offers.is_empty())
            });
        }
    }
    let mut mailed = 0;
    while let Some(r) = tasks.join_next().await {
        mailed += r.unwrap();
    }
    assert_eq!(mailed, 1, "at most 1 e-mail per 3 days, whatever the concurrency");
    let r = srv.decisions().decide(decide("mailee", "email", 1)).await.unwrap().into_inner();
    assert!(r.offers.is_empty());
    assert!(
        r.explanation.iter().all(|c| c.reason == "contact limit: at most 1 email contact(s) per 3 day(s)"),
        "{r:?}"
    );
}

#[tokio::test]
async fn decide_batch_keeps_input_order_and_says_why_users_get_nothing() {
    let redis = RedisServer::start();
    let srv = served_example(&redis).await;
    let mut d = srv.decisions();
    // u1 was mailed already: suppressed by the contact policy.
    d.decide(decide("u1", "email", 1)).await.unwrap();
    let users: Vec<String> = (0..300).map(|i| format!("u{i}")).collect();
    let req =
        pb::DecideBatchRequest { user_ids: users.clone(), channel: "email".into(), limit: 1, ..Default::default() };
    let mut stream = d.decide_batch(req).await.unwrap().into_inner();
    let mut items = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        items.push(item);
    }
    assert_eq!(items.len(), 300);
    for (i, item) in items.iter().enumerate() {
        assert_eq!((item.index as usize, item.user_id.as_str()), (i, users[i].as_str()));
    }
    assert_eq!(items[1].suppression_reason, "contact limit: at most 1 email contact(s) per 3 day(s)");
    assert_eq!(items[1].suppression_code, "contact_limit");
    let decided = items[1].decision.as_ref().unwrap();
    assert_eq!(
        (decided.suppression_code.as_str(), decided.suppression_reason.as_str()),
        ("contact_limit", items[1].suppression_reason.as_str())
    );
    assert!(items[1].decision.as_ref().unwrap().offers.is_empty());
    assert!(items.iter().enumerate().filter(|(i, _)| *i != 1).all(|(_, it)| it.suppression_reason.is_empty()
        && it.decision.as_ref().unwrap().offers[0].offer_id == "bestsellers_email"));
    let e = d
        .decide_batch(pb::DecideBatchRequest {
            user_ids: vec!["ok".into(), String::new()],
            channel: "email".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("user_ids[1]"), "{e:?}");
}

/// Behaviour, not speed: Redis is held far longer than any deadline here, so a `Decide` that
/// waited for it would end in `DEADLINE_EXCEEDED` at the client. An answer at all, degraded
/// with the fallback's offers, shows the budget cut the wait short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decide_answers_from_the_fallback_within_the_deadline_when_redis_is_down_or_slow() {
    let mut redis = RedisServer::start();
    let srv = served_example(&redis).await;
    // A second server whose configured budget (10 s) and Redis command timeout (30 s) both
    // outlast the caller's deadline: only the request's own deadline can cut its wait short.
    let vars = [
        ("TOUCHPOINT_REDIS_URL".to_string(), redis.url()),
        ("TOUCHPOINT_DECISIONS_DEADLINE_MS".to_string(), "10000".to_string()),
    ];
    let patient = RedisConfig { command_timeout_ms: 30_000, ..redis_config(&redis.url(), false, "tp") };
    let patient = TestServer::with_store(
        Arc::new(RedisStore::connect(&patient, retention()).await.unwrap()),
        Config::load(&example_path(), vars).unwrap(),
    )
    .await;
    let timed = |channel: &str, limit: u32, ms: u64| {
        let mut req = tonic::Request::new(decide("f", channel, limit));
        req.set_timeout(Duration::from_millis(ms));
        req
    };
    assert!(!srv.decisions().decide(timed("web", 2, 2000)).await.unwrap().into_inner().degraded);
    assert!(!patient.decisions().decide(timed("web", 2, 2000)).await.unwrap().into_inner().degraded);

    // Slow: every client paused for 6 s, far beyond the 50 ms decision budget and the
    // callers' 3 s deadlines.
    let mut conn = redis.conn();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(6_000).arg("ALL").query(&mut conn).unwrap();
    for (server, name) in [(&srv, "the 50 ms budget"), (&patient, "the request's deadline")] {
        let r = server
            .decisions()
            .decide(timed("web", 2, 3000))
            .await
            .unwrap_or_else(|e| panic!("{name} did not cut the wait short: {e:?}"))
            .into_inner();
        assert!(r.degraded && r.degraded_reason == "store_timeout", "{name}: {r:?}");
        let ids: Vec<&str> = r.offers.iter().map(|o| o.offer_id.as_str()).collect();
        assert_eq!(ids, ["welcome_banner", "newsletter_signup"], "{name}");
    }
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut conn).unwrap();

    // Down: the fallback of the request's channel.
    redis.stop();
    let r = srv.decisions().decide(timed("app", 1, 3000)).await.unwrap().into_inner();
    assert!(r.degraded, "{r:?}");
    assert_eq!(r.offers[0].offer_id, "newsletter_signup");
    // E-mail is a consent channel (journey.consent_channels): consent cannot be read, so a
    // degraded answer offers nothing there.
    let r = srv.decisions().decide(timed("email", 1, 3000)).await.unwrap().into_inner();
    assert!(r.degraded && r.offers.is_empty(), "{r:?}");
    assert_eq!(r.suppression_code, "no_fallback_offer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request_and_later_answers_use_the_new_version() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("touchpoint.toml");
    let example = std::fs::read_to_string(example_path()).unwrap() + &crate::harness::auth_toml();
    std::fs::write(&path, &example).unwrap();
    let vars = vec![("TOUCHPOINT_REDIS_URL".to_string(), redis.url())];
    let cfg = Config::load(&path, vars.clone()).unwrap();
    let old = cfg.version.clone();
    let engine = Arc::new(Engine::new(redis_store(&redis.url(), false).await, cfg, Some(path.clone()), vars));
    let srv = Arc::new(TestServer::start(engine).await);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (stop, done, mut d) = (stop.clone(), done.clone(), srv.decisions());
        load.spawn(async move {
            let mut versions = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = d
                    .decide(decide(&format!("w{w}-{}", i % 20), "web", 1))
                    .await
                    .expect("no request fails during reload");
                versions.push(r.into_inner().config_version);
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            versions
        });
    }
    while done.load(Ordering::Relaxed) < 200 {
        tokio::task::yield_now().await;
    }
    std::fs::write(&path, example.replace("priority = 50\nvalue = 1.0", "priority = 5\nvalue = 1.0")).unwrap();
    let mut admin = pb::admin_client::AdminClient::new(srv.channel.clone());
    let new = admin.reload(pb::ReloadRequest {}).await.unwrap().into_inner().config_version;
    assert_ne!(new, old);
    let after = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < after + 200 {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen_new = 0;
    while let Some(versions) = load.join_next().await {
        let versions = versions.unwrap();
        assert!(versions.iter().all(|v| *v == old || *v == new));
        // Once a worker saw the new version, it never sees the old one again.
        let first_new = versions.iter().position(|v| *v == new).expect("new version reached every worker");
        assert!(versions[first_new..].iter().all(|v| *v == new));
        seen_new += versions.len() - first_new;
    }
    assert!(seen_new >= 200);
    // The new config is in force: welcome_banner lost its priority.
    let r = srv.decisions().decide(decide("fresh", "web", 1)).await.unwrap().into_inner();
    assert_eq!(r.offers[0].offer_id, "newsletter_signup");
    // A broken file is refused and the server keeps serving the version it had.
    std::fs::write(&path, "[journey]\nstages = []\n").unwrap();
    let e = admin.reload(pb::ReloadRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("journey.stages"), "{e:?}");
    assert_eq!(admin.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner().config_version, new);
}

#[tokio::test]
async fn replay_reproduces_a_logged_decision_and_shows_what_changed() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("touchpoint.toml");
    let example = std::fs::read_to_string(example_path())
        .unwrap()
        .replace("policy = \"none\"\nepsilon = 0.1", "policy = \"epsilon_greedy\"\nepsilon = 0.5")
        .replace("url = \"memory://\"", &format!("url = \"{}\"", redis.url()));
    std::fs::write(&path, &example).unwrap();
    let cfg = Config::load(&path, std::iter::empty()).unwrap();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, cfg).await;
    let mut d = srv.decisions();
    // A profile with an attribute a rule reads (country: the eu_customers segment) and ten
    // kilobytes no rule or feature reads: the log keeps the first and not the rest.
    let blob = "x".repeat(1000);
    let mut profile: Vec<(String, &str)> = (0..10).map(|i| (format!("notes_{i}"), blob.as_str())).collect();
    profile.push(("country".into(), "DE"));
    let profile: Vec<(&str, &str)> = profile.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let put = pb::PutProfileRequest { user_id: "rita".into(), attributes: attrs(&profile), remove_attributes: vec![] };
    srv.profiles().put_profile(put).await.unwrap();
    let evs = vec![ev("rita", "r1", "product_view", 1, 0.0)];
    d.record_events(pb::RecordEventsRequest { events: evs }).await.unwrap();
    let mut req = decide("rita", "web", 3);
    req.context = attrs(&[("basket_value", "80")]);
    let r = d.decide(req).await.unwrap().into_inner();
    assert!(r.segments.contains(&"eu_customers".to_string()), "{:?}", r.segments);

    let replay_of = |id: &str, config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_touchpoint"))
            .args(["replay", id, "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let replay = |config: &std::path::Path| {
        let out = replay_of(&r.decision_id, config);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (code, out) = replay(&path);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("same decision"), "{out}");
    let chosen: Vec<String> = r.offers.iter().map(|o| format!("{:?}", o.offer_id)).collect();
    assert!(out.contains(&format!("chosen [{}]", chosen.join(", "))), "{out}");

    let changed = dir.path().join("changed.toml");
    std::fs::write(&changed, example.replace("priority = \"\"", "priority = \"0.0 - offer.priority\"")).unwrap();
    let (code, out) = replay(&changed);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("differs:") && out.contains("candidate"), "{out}");

    // Issue 9: what repeats across decisions (config and model versions, stage, channel, offer
    // ids, feature names) is one dictionary per log shard; more decisions in the same stage and
    // channel add none, and each log entry stays small: rita's too, whose unread 10 KB of
    // attributes are not logged (and her decision replayed the same above, segment included).
    for user in ["rosa", "rick"] {
        let evs = vec![ev(user, &format!("{user}1"), "product_view", 1, 0.0)];
        d.record_events(pb::RecordEventsRequest { events: evs }).await.unwrap();
        d.decide(decide(user, "web", 3)).await.unwrap();
    }
    let mut c = redis.conn();
    let dicts: usize = redis::cmd("HLEN").arg("tp:ldict").query(&mut c).unwrap();
    assert_eq!(dicts, 1);
    type Entries = Vec<(String, Vec<(String, Vec<u8>)>)>;
    let entries: Entries = redis::cmd("XRANGE").arg("tp:dlog").arg("-").arg("+").query(&mut c).unwrap();
    assert_eq!(entries.len(), 3);
    for (_, fields) in &entries {
        let bytes: usize = fields.iter().map(|(k, v)| k.len() + v.len()).sum();
        // (~300-420 B here: exploration probabilities, context and segments vary the size.)
        assert!(bytes < 600, "{bytes} B: {fields:?}");
    }
    // A record whose dictionary is gone cannot be read: replay says so rather than guessing.
    redis::cmd("DEL").arg("tp:ldict").exec(&mut c).unwrap();
    let out = replay_of(&r.decision_id, &path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("dictionary") && err.contains("not stored"), "{err}");
    // The server believed it stored: the next decision's script finds it missing, the server
    // sends it again, and that decision replays.
    let again = d.decide(decide("rosa", "web", 3)).await.unwrap().into_inner();
    assert!(!again.degraded);
    let dicts: usize = redis::cmd("HLEN").arg("tp:ldict").query(&mut c).unwrap();
    assert_eq!(dicts, 1);
    let out = replay_of(&again.decision_id, &path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("same decision"), "{text}");
}

/// Issue 10, part 5: Thompson sampling end to end. The posteriors are the analytics counters
/// the decision and outcome scripts keep in Redis; after a refresh each offer's Beta posterior
/// is (1 + clicks, 1 + decisions − clicks); every logged probability is the win probability the
/// pick was made with (recomputed here from the explained posteriors), the observed
/// frequencies match those probabilities, and a logged decision replays to itself.
#[tokio::test]
async fn thompson_sampling_learns_from_outcomes_and_logs_the_probabilities_it_picks_with() {
    let redis = RedisServer::start();
    let body = r#"
[decisions.exploration]
policy = "thompson"
reward = "click"
samples = 1000
refresh_seconds = 3600

[[offers]]
id = "alpha"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://alpha"

[[offers]]
id = "bravo"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://bravo"

[[offers]]
id = "charlie"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://charlie"
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("touchpoint.toml");
    std::fs::write(&path, format!("[redis]\nurl = \"{}\"\n{body}", redis.url())).unwrap();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, config(body, &redis.url())).await;
    let mut d = srv.decisions();
    let posterior = |r: &pb::DecideResponse, offer: &str| {
        let c = r.explanation.iter().find(|c| c.offer_id == offer).unwrap();
        (c.scores["thompson_alpha"], c.scores["thompson_beta"])
    };
    // Round 1, before any refresh: every offer has the prior; "alpha" is always clicked.
    let (mut shown, mut clicked) = (HashMap::<String, f64>::new(), 0.0);
    for i in 0..45 {
        let r = d.decide(decide(&format!("first-{i}"), "web", 1)).await.unwrap().into_inner();
        assert_eq!(posterior(&r, "bravo"), (1.0, 1.0));
        let offer = r.offers[0].offer_id.clone();
        *shown.entry(offer.clone()).or_default() += 1.0;
        if offer == "alpha" {
            clicked += 1.0;
            let click = pb::RecordOutcomeRequest {
                decision_id: r.decision_id.clone(),
                user_id: format!("first-{i}"),
                offer_id: offer,
                outcome: pb::Outcome::Click as i32,
                ..Default::default()
            };
            d.record_outcome(click).await.unwrap();
        }
    }
    assert!(clicked > 0.0 && shown.len() == 3, "uniform at first: {shown:?}");
    assert_eq!(srv.engine.refresh_posteriors().await.unwrap(), 3);
    let post = srv.engine.posteriors();
    assert_eq!(post.get("awareness", "alpha"), (1.0 + clicked, 1.0 + shown["alpha"] - clicked));
    assert_eq!(post.get("awareness", "bravo"), (1.0, 1.0 + shown["bravo"]));

    // Round 2: the posteriors in force; logged probabilities are the win probabilities.
    let expected = ["alpha", "bravo", "charlie"].map(|o| post.get("awareness", o));
    let (n, mut counts) = (300u32, HashMap::<String, u32>::new());
    let mut last = None;
    for i in 0..n {
        let r = d.decide(decide(&format!("second-{i}"), "web", 1)).await.unwrap().into_inner();
        let params: Vec<(f64, f64)> = ["alpha", "bravo", "charlie"].iter().map(|o| posterior(&r, o)).collect();
        assert_eq!(params, expected);
        // The candidates in the order the engine ranked them (ties by offer id: alphabetical).
        let wins = touchpoint::domain::thompson::win_probabilities(&params, 1000);
        let at = ["alpha", "bravo", "charlie"].iter().position(|o| *o == r.offers[0].offer_id).unwrap();
        assert_eq!(r.offers[0].selection_probability, wins[at]);
        *counts.entry(r.offers[0].offer_id.clone()).or_default() += 1;
        last = Some(r.decision_id);
    }
    let wins = touchpoint::domain::thompson::win_probabilities(&expected, 1000);
    assert!(wins[0] > 0.8, "the clicked offer leads: {wins:?}");
    for (k, offer) in ["alpha", "bravo", "charlie"].iter().enumerate() {
        let (p, c) = (wins[k], f64::from(counts.get(*offer).copied().unwrap_or(0)));
        let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
        assert!((c - f64::from(n) * p).abs() <= 4.5 * sd + 1.0, "{offer}: {c} of {n} vs p {p}");
    }
    // The logged decision replays to itself: it carries the posteriors it used.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_touchpoint"))
        .args(["replay", &last.unwrap(), "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("same decision"), "{text}");
}

/// Interactive decisions made together are written in groups (one decision.lua call for
/// many, `engine::commit`) and every one of them is still written and answered: with Redis
/// holding writes back for a moment (`CLIENT PAUSE WRITE`), 60 concurrent decisions for 60
/// users take far fewer script runs than 60, and each has its log entry and its contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_are_written_in_groups_and_each_is_stored() {
    let redis = RedisServer::start();
    let body = r#"
[decisions]
deadline_ms = 10000

[server.limits]
interactive = 64

[[offers]]
id = "promo"
stages = ["awareness"]
channels = ["web"]
content_ref = "cms://promo"
cap = { max = 5, days = 7 }
"#;
    let srv =
        Arc::new(TestServer::with_store(redis_store(&redis.url(), false).await, config(body, &redis.url())).await);
    let mut conn = redis.conn();
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut conn).unwrap();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(300).arg("WRITE").query(&mut conn).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60 {
        let mut d = srv.decisions();
        tasks.spawn(async move { d.decide(decide(&format!("grouped-{i}"), "web", 1)).await.unwrap().into_inner() });
    }
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap();
        assert!(!r.degraded, "{r:?}");
        assert_eq!(r.offers.iter().map(|o| o.offer_id.as_str()).collect::<Vec<_>>(), ["promo"]);
    }
    let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut conn).unwrap();
    // Script runs: EVALSHA calls less the failed ones (the first calls find no script loaded).
    let evalsha = stats.lines().find_map(|l| l.strip_prefix("cmdstat_evalsha:")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        evalsha.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok()).unwrap_or(0)
    };
    let scripts = field("calls") - field("failed_calls");
    assert!((1..40).contains(&scripts), "60 decisions written with {scripts} script runs ({evalsha})");
    let logged: u64 = redis::cmd("XLEN").arg("tp:dlog").query(&mut conn).unwrap();
    assert_eq!(logged, 60, "every decision has its log entry");
    for i in [0, 17, 59] {
        let contacts: u64 = redis::cmd("ZCARD").arg(format!("tp:{{grouped-{i}}}:c")).query(&mut conn).unwrap();
        assert_eq!(contacts, 1, "grouped-{i}'s contact is recorded");
    }
}
