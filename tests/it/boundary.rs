//! What callers see when the store misbehaves or a reload fails: stable short reasons, never
//! backend text or server paths (issue 12, "no leaks"); and refused outcomes that predate
//! their decision.
use crate::grpc_e2e::{base, ev};
use crate::harness::{RedisServer, TestServer, example_config, example_path, redis_store};
use prost_types::Timestamp;
use std::process::Command;
use touchpoint::grpc::pb;

/// Stable degraded reasons a caller may see.
const REASONS: [&str; 5] = ["store_unavailable", "store_timeout", "store_overloaded", "store_corrupt", "store_error"];

fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &redis.port.to_string()]).args(args).output().unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn decide(user: &str) -> pb::DecideRequest {
    pb::DecideRequest { user_id: user.into(), channel: "web".into(), limit: 2, ..Default::default() }
}

fn no_backend_text(text: &str) {
    for leak in ["WRONGTYPE", "script", "NOAUTH", "OOM", "redis", "/", "profile field"] {
        assert!(!text.contains(leak), "{text:?} leaks {leak:?}");
    }
}

#[tokio::test]
async fn a_corrupt_profile_degrades_decide_with_a_stable_reason() {
    let redis = RedisServer::start();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let mut d = srv.decisions();
    d.record_events(pb::RecordEventsRequest { events: vec![ev("c", "c1", "page_view", 0, 0.0)] }).await.unwrap();
    assert!(!d.decide(decide("c")).await.unwrap().into_inner().degraded);

    let key = redis_cli(&redis, &["--scan", "--pattern", "*{c}:p"]).trim().to_string();
    assert!(!key.is_empty(), "the profile hash exists");
    redis_cli(&redis, &["HSET", &key, "fs", "not-a-time"]);
    let r = d.decide(decide("c")).await.unwrap().into_inner();
    assert!(r.degraded, "{r:?}");
    assert_eq!(r.degraded_reason, "store_corrupt");
    assert_eq!(
        r.offers.iter().map(|o| o.offer_id.as_str()).collect::<Vec<_>>(),
        ["welcome_banner", "newsletter_signup"]
    );

    // A key of the wrong type: an error, not an outage; the caller learns nothing of Redis.
    redis_cli(&redis, &["DEL", &key]);
    redis_cli(&redis, &["SET", &key, "garbage"]);
    match d.decide(decide("c")).await {
        Ok(r) => {
            let r = r.into_inner();
            assert!(REASONS.contains(&r.degraded_reason.as_str()), "{r:?}");
        }
        Err(e) => {
            assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
            assert_eq!(e.message(), "internal error");
        }
    }
    let e = srv.profiles().get_profile(pb::GetProfileRequest { user_id: "c".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    assert_eq!(e.message(), "internal error");
}

#[tokio::test]
async fn refused_credentials_degrade_with_a_stable_reason_and_status_shows_a_class() {
    let redis = RedisServer::start();
    // Set after the harness' readiness ping: the server's first connection gets NOAUTH.
    redis_cli(&redis, &["CONFIG", "SET", "requirepass", "s3cret"]);
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let r = srv.decisions().decide(decide("n")).await.unwrap().into_inner();
    assert!(r.degraded, "{r:?}");
    assert_eq!(r.degraded_reason, "store_unavailable");
    let e = srv
        .decisions()
        .record_events(pb::RecordEventsRequest { events: vec![ev("n", "n1", "page_view", 0, 0.0)] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    no_backend_text(e.message());

    let mut admin = pb::admin_client::AdminClient::new(srv.channel.clone());
    let status = admin.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.store_error, "store_unavailable");
}

#[tokio::test]
async fn a_failed_reload_names_the_file_without_its_directory() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("touchpoint.toml");
    let example = std::fs::read_to_string(example_path())
        .unwrap()
        .replace("url = \"memory://\"", &format!("url = \"{}\"", redis.url()))
        + &crate::harness::auth_toml();
    std::fs::write(&path, &example).unwrap();
    let cfg = touchpoint::config::Config::load(&path, std::iter::empty()).unwrap();
    let engine = std::sync::Arc::new(touchpoint::engine::Engine::new(
        redis_store(&redis.url(), false).await,
        cfg,
        Some(path.clone()),
        vec![],
    ));
    let srv = TestServer::start(engine).await;
    let mut admin = pb::admin_client::AdminClient::new(srv.channel.clone());
    std::fs::write(&path, "[journey]\nstages = []\n").unwrap();
    let e = admin.reload(pb::ReloadRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(e.message().contains("touchpoint.toml") && e.message().contains("journey.stages"), "{e:?}");
    let dir_text = dir.path().to_str().unwrap();
    assert!(!e.message().contains(dir_text), "{:?} leaks {dir_text}", e.message());
}

#[tokio::test]
async fn an_outcome_before_its_decision_is_refused() {
    let redis = RedisServer::start();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let mut d = srv.decisions();
    let r = d.decide(decide("o")).await.unwrap().into_inner();
    assert!(!r.degraded && !r.offers.is_empty(), "{r:?}");
    // The decision id is a UUID v7 carrying the decision's time.
    let (secs, nanos) = uuid::Uuid::parse_str(&r.decision_id).unwrap().get_timestamp().expect("a v7 id").to_unix();
    let decided_at = Timestamp { seconds: secs as i64, nanos: nanos as i32 };
    let outcome = |ts: Timestamp| pb::RecordOutcomeRequest {
        decision_id: r.decision_id.clone(),
        user_id: "o".into(),
        offer_id: r.offers[0].offer_id.clone(),
        outcome: pb::Outcome::Click as i32,
        value: 0.0,
        timestamp: Some(ts),
    };
    let early = Timestamp { seconds: decided_at.seconds - 1, nanos: decided_at.nanos };
    let e = d.record_outcome(outcome(early)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("timestamp"), "{e:?}");
    let e = d.record_outcome(outcome(Timestamp { seconds: base(), nanos: 0 })).await.unwrap_err();
    assert!(e.message().starts_with("timestamp"), "{e:?}");
    // At the decision's own time it is accepted.
    d.record_outcome(outcome(decided_at)).await.unwrap();
}
