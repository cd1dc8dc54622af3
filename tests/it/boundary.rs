//! What callers see when the store misbehaves or a reload fails: stable short reasons, never
//! backend text or server paths (issue 12, "no leaks"); and refused outcomes that predate
//! their decision.
use crate::grpc_e2e::{base, ev};
use crate::harness::{RedisServer, TestServer, example_config, example_path, redis_store};
use prost_types::Timestamp;
use std::collections::HashMap;
use std::process::Command;
use touchpoint::grpc::pb;

/// Stable degraded reasons a caller may see.
const REASONS: [&str; 6] =
    ["store_unavailable", "store_timeout", "store_overloaded", "store_oom", "store_corrupt", "store_error"];

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

/// The rest of the malformed-request corpus (with `grpc_e2e::bad_input_gets_invalid_argument_naming_the_field`
/// it passes 60 cases): batch sends, assignments, results, Unicode format characters the first
/// corpus missed (found by `fuzz.rs`), and deadlines no clock can hold.
#[tokio::test]
async fn more_malformed_requests_name_their_field() {
    let redis = RedisServer::start();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let (mut d, mut x, mut p) =
        (srv.decisions(), pb::experiments_client::ExperimentsClient::new(srv.channel.clone()), srv.profiles());
    let num = |x: f64| pb::Value { kind: Some(pb::value::Kind::NumberValue(x)) };
    let batch = |f: &dyn Fn(&mut pb::DecideBatchRequest)| {
        let mut r = pb::DecideBatchRequest {
            user_ids: vec!["a".into(), "b".into(), "c".into()],
            channel: "email".into(),
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let batch_cases: Vec<(pb::DecideBatchRequest, &str)> = vec![
        (batch(&|r| r.user_ids.clear()), "user_ids"),
        (batch(&|r| r.user_ids = (0..10_001).map(|i| i.to_string()).collect()), "user_ids"),
        (batch(&|r| r.user_ids[2] = String::new()), "user_ids[2]"),
        (batch(&|r| r.user_ids[1] = "b\u{AD}".into()), "user_ids[1]"),
        (batch(&|r| r.user_ids[0] = "x".repeat(129)), "user_ids[0]"),
        (batch(&|r| r.channel = "fax".into()), "channel"),
        (batch(&|r| r.channel.clear()), "channel"),
        (batch(&|r| r.limit = 51), "limit"),
        (batch(&|r| r.context = HashMap::from([("x".into(), num(f64::INFINITY))])), "context[\"x\"]"),
    ];
    for (req, field) in batch_cases {
        let e = match d.decide_batch(req).await {
            Err(e) => e,
            Ok(stream) => stream.into_inner().message().await.expect_err("a malformed batch is refused"),
        };
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{:?} should name {field}", e.message());
    }

    let assignment = |user: &str, channel: &str| pb::GetAssignmentRequest {
        user_id: user.into(),
        channel: channel.into(),
        ..Default::default()
    };
    for (req, field) in
        [(assignment("", ""), "user_id"), (assignment("u\u{061C}", ""), "user_id"), (assignment("u", "fax"), "channel")]
    {
        let e = x.get_assignment(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{:?} should name {field}", e.message());
    }
    for id in ["", "exp\u{0}1"] {
        let e =
            x.get_experiment_results(pb::GetExperimentResultsRequest { experiment_id: id.into() }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{id:?}: {e:?}");
        assert!(e.message().starts_with("experiment_id"), "{e:?}");
    }

    // Format characters beyond the first corpus: soft hyphen, Arabic letter mark, tags.
    for user in ["a\u{AD}b", "a\u{180E}", "\u{E0041}b"] {
        let e = d.decide(decide(user)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{user:?}: {e:?}");
        assert!(e.message().starts_with("user_id"));
    }
    let e = p
        .put_profile(pb::PutProfileRequest {
            user_id: "u".into(),
            attributes: HashMap::from([(
                "bio".into(),
                pb::Value { kind: Some(pb::value::Kind::StringValue("b".repeat(1025))) },
            )]),
            remove_attributes: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("attributes[\"bio\"]"), "{e:?}");

    // Deadlines: the largest the spec allows, and one with more digits than it allows, are
    // served (the latter as if none was set) rather than overflowing.
    for timeout in ["99999999H", "999999999999999999999H", "12x"] {
        let mut req = tonic::Request::new(decide("t"));
        req.metadata_mut().insert("grpc-timeout", timeout.parse().unwrap());
        let r = d.decide(req).await.unwrap().into_inner();
        assert!(!r.degraded && !r.offers.is_empty(), "{timeout}: {r:?}");
    }
}
