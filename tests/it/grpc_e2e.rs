//! End to end over a real gRPC socket and a real redis-server.
use crate::harness::{RedisServer, TestServer, example_config, redis_store};
use prost_types::Timestamp;
use std::collections::HashMap;
use std::sync::Arc;
use touchpoint::grpc::pb;

const STAGES: [&str; 5] = ["awareness", "consideration", "conversion", "retention", "advocacy"];

/// Event times are an hour ago plus a few seconds: recent (not lapsed), never in the future.
pub fn base() -> i64 {
    static BASE: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| touchpoint::engine::now_ms() / 1000 - 3600);
    *BASE
}

pub fn ev(user: &str, id: &str, kind: &str, secs: i64, value: f64) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        user_id: user.into(),
        event_type: kind.into(),
        timestamp: Some(Timestamp { seconds: base() + secs, nanos: 0 }),
        channel: "web".into(),
        offer_id: String::new(),
        value,
        properties: HashMap::from([("page".to_string(), "/home".to_string())]),
    }
}

fn walk(user: &str) -> Vec<pb::Event> {
    vec![
        ev(user, &format!("{user}-1"), "page_view", 1, 0.0),
        ev(user, &format!("{user}-2"), "product_view", 2, 0.0),
        ev(user, &format!("{user}-3"), "add_to_cart", 3, 0.0),
        ev(user, &format!("{user}-4"), "purchase", 4, 42.5),
        ev(user, &format!("{user}-5"), "review_posted", 5, 0.0),
    ]
}

/// Held by the tests that make GetJourney calls fail while the metrics test counts them.
static JOURNEY_ERRORS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn served(redis: &RedisServer) -> TestServer {
    TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await
}

#[tokio::test]
async fn user_walks_all_five_stages_and_replay_changes_nothing() {
    let redis = RedisServer::start();
    let srv = served(&redis).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());

    // One event per call, so each stage is observed on the way.
    for (e, stage) in walk("walker").into_iter().zip(STAGES) {
        let r = d.record_events(pb::RecordEventsRequest { events: vec![e] }).await.unwrap().into_inner();
        assert_eq!((r.accepted, r.duplicates), (1, 0));
        let prof = p.get_profile(pb::GetProfileRequest { user_id: "walker".into() }).await.unwrap().into_inner();
        assert_eq!(prof.stage, stage);
    }
    let before = p.get_profile(pb::GetProfileRequest { user_id: "walker".into() }).await.unwrap().into_inner();
    let agg = before.aggregates.clone().unwrap();
    assert_eq!((agg.purchase_count, agg.monetary_total), (1, 42.5));
    assert_eq!(agg.event_counts.get("page_view"), Some(&1));
    assert_eq!(agg.last_purchase.unwrap().seconds, base() + 4);
    assert_eq!(agg.first_seen.unwrap().seconds, base() + 1);

    let journey = p.get_journey(pb::GetJourneyRequest { user_id: "walker".into() }).await.unwrap().into_inner();
    let path: Vec<(&str, &str, &str)> = journey
        .transitions
        .iter()
        .map(|t| (t.from_stage.as_str(), t.to_stage.as_str(), t.trigger_event_type.as_str()))
        .collect();
    assert_eq!(
        path,
        [
            ("", "awareness", "page_view"),
            ("awareness", "consideration", "product_view"),
            ("consideration", "conversion", "add_to_cart"),
            ("conversion", "retention", "purchase"),
            ("retention", "advocacy", "review_posted")
        ]
    );

    // Replaying every event is acknowledged as duplicates and changes nothing.
    let r = d.record_events(pb::RecordEventsRequest { events: walk("walker") }).await.unwrap().into_inner();
    assert_eq!((r.accepted, r.duplicates), (0, 5));
    let after = p.get_profile(pb::GetProfileRequest { user_id: "walker".into() }).await.unwrap().into_inner();
    assert_eq!(after, before);
    let journey2 = p.get_journey(pb::GetJourneyRequest { user_id: "walker".into() }).await.unwrap().into_inner();
    assert_eq!(journey2, journey);
    // A repeat inside one call counts as a duplicate too.
    let twice = vec![ev("walker", "x-1", "page_view", 9, 0.0), ev("walker", "x-1", "page_view", 9, 0.0)];
    let r = d.record_events(pb::RecordEventsRequest { events: twice }).await.unwrap().into_inner();
    assert_eq!((r.accepted, r.duplicates), (1, 1));

    // Each acknowledged event is in the journey-log stream exactly once.
    let mut logged = Vec::new();
    srv.engine.store().export_journey_log(&mut |e| logged.push(e.event_id)).await.unwrap();
    logged.sort();
    assert_eq!(logged, ["walker-1", "walker-2", "walker-3", "walker-4", "walker-5", "x-1"]);
}

#[tokio::test]
async fn events_out_of_order_are_applied_in_time_order_and_stay_forward_only() {
    let redis = RedisServer::start();
    let srv = served(&redis).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    let mut events = walk("late");
    events.reverse();
    let (first, rest) = events.split_at(2); // review_posted and purchase arrive first
    d.record_events(pb::RecordEventsRequest { events: first.to_vec() }).await.unwrap();
    d.record_events(pb::RecordEventsRequest { events: rest.to_vec() }).await.unwrap();
    let prof = p.get_profile(pb::GetProfileRequest { user_id: "late".into() }).await.unwrap().into_inner();
    assert_eq!(prof.stage, "advocacy", "late earlier-stage events do not move the user back");
    let agg = prof.aggregates.unwrap();
    assert_eq!(agg.first_seen.unwrap().seconds, base() + 1, "first seen is the earliest event, not the first received");
    let j = p.get_journey(pb::GetJourneyRequest { user_id: "late".into() }).await.unwrap().into_inner();
    let to: Vec<&str> = j.transitions.iter().map(|t| t.to_stage.as_str()).collect();
    assert_eq!(to, ["retention", "advocacy"]);
}

#[tokio::test]
async fn delete_profile_leaves_no_key_of_the_user() {
    let redis = RedisServer::start();
    let srv = served(&redis).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    for user in ["gone", "kept"] {
        d.record_events(pb::RecordEventsRequest { events: walk(user) }).await.unwrap();
        let attrs = HashMap::from([("country".to_string(), touchpoint::grpc::convert::parse_cli_value("FR"))]);
        p.put_profile(pb::PutProfileRequest { user_id: user.into(), attributes: attrs, remove_attributes: vec![] })
            .await
            .unwrap();
        // E-mail has a contact limit, so the decision also records a contact key.
        d.decide(pb::DecideRequest { user_id: user.into(), channel: "email".into(), ..Default::default() })
            .await
            .unwrap();
    }
    let scan = |pattern: &str| -> Vec<String> {
        let mut conn = redis.conn();
        let keys: redis::Iter<String> =
            redis::cmd("SCAN").cursor_arg(0).arg("MATCH").arg(pattern).clone().iter(&mut conn).unwrap();
        keys.map(Result::unwrap).collect()
    };
    assert_eq!(scan("*{gone}*").len(), 6, "profile, history, dedup, recent decisions, contacts, sealing key");
    let r = p.delete_profile(pb::DeleteProfileRequest { user_id: "gone".into() }).await.unwrap().into_inner();
    assert_eq!(r.keys_deleted, 6);
    assert!(scan("*{gone}*").is_empty(), "SCAN finds no key of the user");
    assert_eq!(scan("*{kept}*").len(), 6, "other users keep theirs");
    let err = p.get_profile(pb::GetProfileRequest { user_id: "gone".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // The dedup markers went too: the same events apply again as new.
    let r = d.record_events(pb::RecordEventsRequest { events: walk("gone") }).await.unwrap().into_inner();
    assert_eq!(r.accepted, 5);
    let again = p.delete_profile(pb::DeleteProfileRequest { user_id: "nobody".into() }).await.unwrap().into_inner();
    assert_eq!(again.keys_deleted, 0);
}

#[tokio::test]
async fn decide_returns_offers_of_the_users_stage_and_channel() {
    let redis = RedisServer::start();
    let srv = served(&redis).await;
    let mut d = srv.decisions();
    let snap = srv.engine.snapshot();
    let catalogue = &snap.config.policy.catalogue;
    let events = walk("s");
    for (n, stage) in STAGES.iter().enumerate() {
        let user = format!("stage{n}");
        let evs: Vec<pb::Event> = events[..=n]
            .iter()
            .map(|e| pb::Event { user_id: user.clone(), event_id: format!("{user}{}", e.event_id), ..e.clone() })
            .collect();
        d.record_events(pb::RecordEventsRequest { events: evs }).await.unwrap();
        for channel in ["web", "app", "email"] {
            let req = pb::DecideRequest {
                user_id: user.clone(),
                channel: channel.into(),
                limit: 50,
                explain: true,
                ..Default::default()
            };
            let r = d.decide(req).await.unwrap().into_inner();
            assert_eq!(r.stage, *stage);
            assert!(!r.offers.is_empty(), "{stage}/{channel} has offers in the example catalogue");
            for o in &r.offers {
                let offer = catalogue.get(&o.offer_id).unwrap();
                assert!(offer.stages.iter().any(|s| s == stage), "{} not for {stage}", o.offer_id);
                assert!(offer.channels.iter().any(|c| c == channel), "{} not on {channel}", o.offer_id);
                assert_eq!(o.channel, channel);
                assert_eq!(o.content_ref, offer.content_ref);
            }
            let scores: Vec<f64> = r.offers.iter().map(|o| o.score).collect();
            assert!(scores.windows(2).all(|w| w[0] >= w[1]), "ranked by priority: {scores:?}");
            let stage_offers = catalogue.for_stage(stage).count();
            assert_eq!(r.explanation.len(), stage_offers, "explain lists every candidate of the stage");
            assert!(r.explanation.iter().filter(|c| !c.kept).all(|c| !c.reason.is_empty()));
        }
    }
    // Limit caps the answer; an unknown user is in the first stage.
    let r = d
        .decide(pb::DecideRequest { user_id: "newcomer".into(), channel: "web".into(), limit: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.stage.as_str(), r.offers.len()), ("awareness", 1));
    assert!(!r.decision_id.is_empty());
    assert_eq!(r.config_version, snap.config.version);

    // The decision is in the decision log, and outcomes link to it.
    let mut logged = Vec::new();
    srv.engine.store().export_decision_log(&mut |e| logged.push(e)).await.unwrap();
    assert!(
        logged
            .iter()
            .any(|e| matches!(e, touchpoint::store::DecisionLogEntry::Decision(x) if x.decision_id == r.decision_id))
    );
    let outcome = |offer: &str, decision: &str| pb::RecordOutcomeRequest {
        decision_id: decision.into(),
        user_id: "newcomer".into(),
        offer_id: offer.into(),
        outcome: pb::Outcome::Click as i32,
        value: 0.0,
        timestamp: None,
    };
    let first = d.record_outcome(outcome(&r.offers[0].offer_id, &r.decision_id)).await.unwrap().into_inner();
    assert_eq!((first.recorded, first.duplicate), (true, false));
    let retry = d.record_outcome(outcome(&r.offers[0].offer_id, &r.decision_id)).await.unwrap().into_inner();
    assert_eq!((retry.recorded, retry.duplicate), (false, true), "a retried outcome is not counted twice");
    let e = d.record_outcome(outcome(&r.offers[0].offer_id, "no-such-decision")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = d.record_outcome(outcome("vip_preview", &r.decision_id)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("offer_id"));
}

#[tokio::test]
async fn bad_input_gets_invalid_argument_naming_the_field() {
    let redis = RedisServer::start();
    let srv = served(&redis).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    let decide = |f: &dyn Fn(&mut pb::DecideRequest)| {
        let mut r = pb::DecideRequest { user_id: "u".into(), channel: "web".into(), ..Default::default() };
        f(&mut r);
        r
    };
    let num = |x: f64| pb::Value { kind: Some(pb::value::Kind::NumberValue(x)) };
    let decide_cases: Vec<(pb::DecideRequest, &str)> = vec![
        (decide(&|r| r.user_id.clear()), "user_id"),
        (decide(&|r| r.user_id = "x".repeat(129)), "user_id"),
        (decide(&|r| r.user_id = "a\u{7}b".into()), "user_id"),
        (decide(&|r| r.channel.clear()), "channel"),
        (decide(&|r| r.channel = "fax".into()), "channel"),
        (decide(&|r| r.limit = 51), "limit"),
        (decide(&|r| r.placement = "home banner".into()), "placement"),
        (decide(&|r| r.context = (0..65).map(|i| (format!("k{i}"), num(1.0))).collect()), "context"),
        (decide(&|r| r.context = HashMap::from([("x".into(), num(f64::NAN))])), "context[\"x\"]"),
        (decide(&|r| r.context = HashMap::from([("x".into(), pb::Value { kind: None })])), "context[\"x\"]"),
        (decide(&|r| r.context = HashMap::from([("bad key".into(), num(1.0))])), "context[\"bad key\"]"),
        // Unicode line/paragraph separators, NEL, bidi controls and zero-width characters.
        (decide(&|r| r.user_id = "a\u{2028}b".into()), "user_id"),
        (decide(&|r| r.user_id = "a\u{2029}b".into()), "user_id"),
        (decide(&|r| r.user_id = "a\u{0085}b".into()), "user_id"),
        (decide(&|r| r.user_id = "a\u{202E}b".into()), "user_id"),
        (decide(&|r| r.user_id = "a\u{2066}b".into()), "user_id"),
        (decide(&|r| r.user_id = "a\u{2069}b".into()), "user_id"),
        (decide(&|r| r.user_id = "a\u{200D}b".into()), "user_id"),
        (decide(&|r| r.user_id = "\u{FEFF}ab".into()), "user_id"),
    ];
    for (req, field) in decide_cases {
        let e = d.decide(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{:?} should name {field}", e.message());
    }

    let event = |f: &dyn Fn(&mut pb::Event)| {
        let mut e = ev("u", "e1", "page_view", 0, 0.0);
        f(&mut e);
        pb::RecordEventsRequest { events: vec![ev("u", "ok", "page_view", 0, 0.0), e] }
    };
    let event_cases: Vec<(pb::RecordEventsRequest, &str)> = vec![
        (pb::RecordEventsRequest { events: vec![] }, "events"),
        (
            pb::RecordEventsRequest {
                events: (0..1001).map(|i| ev("u", &i.to_string(), "page_view", 0, 0.0)).collect(),
            },
            "events",
        ),
        (event(&|e| e.event_id.clear()), "events[1].event_id"),
        (event(&|e| e.user_id.clear()), "events[1].user_id"),
        (event(&|e| e.event_type = "page view".into()), "events[1].event_type"),
        (event(&|e| e.value = f64::INFINITY), "events[1].value"),
        (event(&|e| e.value = -5.0), "events[1].value"),
        (event(&|e| e.value = f64::NAN), "events[1].value"),
        (event(&|e| e.user_id = "u\u{2028}".into()), "events[1].user_id"),
        (event(&|e| e.event_id = "e\u{202A}1".into()), "events[1].event_id"),
        (event(&|e| e.timestamp = Some(Timestamp { seconds: 4_000_000_000, nanos: 0 })), "events[1].timestamp"),
        (event(&|e| e.timestamp = Some(Timestamp { seconds: 1, nanos: -5 })), "events[1].timestamp"),
        (event(&|e| e.channel = "pigeon".into()), "events[1].channel"),
        (event(&|e| e.properties = (0..65).map(|i| (format!("p{i}"), "v".into())).collect()), "events[1].properties"),
        (event(&|e| e.properties = HashMap::from([("p".into(), "v".repeat(1025))])), "events[1].properties[\"p\"]"),
    ];
    for (req, field) in event_cases {
        let e = d.record_events(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{:?} should name {field}", e.message());
    }
    // Nothing of a rejected call was stored: the valid first event was not applied either.
    assert_eq!(
        p.get_profile(pb::GetProfileRequest { user_id: "u".into() }).await.unwrap_err().code(),
        tonic::Code::NotFound
    );

    let outcome = |f: &dyn Fn(&mut pb::RecordOutcomeRequest)| {
        let mut r = pb::RecordOutcomeRequest {
            decision_id: "d".into(),
            user_id: "u".into(),
            offer_id: "o".into(),
            outcome: pb::Outcome::Click as i32,
            value: 0.0,
            timestamp: None,
        };
        f(&mut r);
        r
    };
    let outcome_cases: Vec<(pb::RecordOutcomeRequest, &str)> = vec![
        (outcome(&|r| r.decision_id.clear()), "decision_id"),
        (outcome(&|r| r.offer_id.clear()), "offer_id"),
        (outcome(&|r| r.outcome = 0), "outcome"),
        (outcome(&|r| r.outcome = 99), "outcome"),
        (outcome(&|r| r.value = f64::NAN), "value"),
        (outcome(&|r| r.user_id.clear()), "user_id"),
        (outcome(&|r| r.value = -1.0), "value"),
        (outcome(&|r| r.value = f64::NEG_INFINITY), "value"),
        (outcome(&|r| r.user_id = "u\u{2029}".into()), "user_id"),
        (outcome(&|r| r.decision_id = "d\u{200B}".into()), "decision_id"),
        // A decision id (UUID v7) made now, with an outcome an hour earlier.
        (
            outcome(&|r| {
                r.decision_id = uuid::Uuid::now_v7().to_string();
                r.timestamp = Some(Timestamp { seconds: base(), nanos: 0 });
            }),
            "timestamp",
        ),
    ];
    for (req, field) in outcome_cases {
        let e = d.record_outcome(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{:?} should name {field}", e.message());
    }

    let put = |attrs: HashMap<String, pb::Value>, remove: Vec<String>| pb::PutProfileRequest {
        user_id: "u".into(),
        attributes: attrs,
        remove_attributes: remove,
    };
    let profile_cases: Vec<(pb::PutProfileRequest, &str)> = vec![
        (put(HashMap::from([("age".into(), num(f64::NAN))]), vec![]), "attributes[\"age\"]"),
        (put(HashMap::from([("".into(), num(1.0))]), vec![]), "attributes[\"\"]"),
        (put(HashMap::new(), vec!["no spaces".into()]), "remove_attributes[0]"),
        (pb::PutProfileRequest { user_id: String::new(), ..Default::default() }, "user_id"),
        (pb::PutProfileRequest { user_id: "u\u{2028}".into(), ..Default::default() }, "user_id"),
    ];
    for (req, field) in profile_cases {
        let e = p.put_profile(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{:?} should name {field}", e.message());
    }
    // GetJourney errors are counted by `metrics_count_rpcs_by_status_with_latency_histograms`.
    let journey_counts = JOURNEY_ERRORS.lock().await;
    for e in [
        p.get_profile(pb::GetProfileRequest { user_id: String::new() }).await.unwrap_err(),
        p.get_journey(pb::GetJourneyRequest { user_id: "x".repeat(200) }).await.unwrap_err(),
        p.delete_profile(pb::DeleteProfileRequest { user_id: String::new() }).await.unwrap_err(),
    ] {
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("user_id"));
    }
    assert_eq!(
        p.get_journey(pb::GetJourneyRequest { user_id: "stranger".into() }).await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    drop(journey_counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_unavailable_and_the_server_recovers() {
    let mut redis = RedisServer::start();
    let srv = served(&redis).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    d.record_events(pb::RecordEventsRequest { events: walk("r") }).await.unwrap();

    redis.stop();
    let e = d
        .record_events(pb::RecordEventsRequest { events: vec![ev("r", "down-1", "purchase", 9, 5.0)] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    let e = p.put_profile(pb::PutProfileRequest { user_id: "r".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let e = p.delete_profile(pb::DeleteProfileRequest { user_id: "r".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let e = p.get_profile(pb::GetProfileRequest { user_id: "r".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);

    // Same server, Redis back (empty: it keeps no data): writes work again without a restart.
    redis.restart();
    let mut recovered = None;
    for _ in 0..100 {
        match d.record_events(pb::RecordEventsRequest { events: vec![ev("r", "up-1", "page_view", 10, 0.0)] }).await {
            Ok(r) => {
                recovered = Some(r.into_inner());
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::Unavailable);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(recovered.expect("recovers within 5 s").accepted, 1);
    let prof = p.get_profile(pb::GetProfileRequest { user_id: "r".into() }).await.unwrap().into_inner();
    assert_eq!(prof.stage, "awareness");
}

#[tokio::test]
async fn health_reflection_and_every_service_answers() {
    let srv = TestServer::with_store(
        Arc::new(touchpoint::store::memory::MemoryStore::new(crate::harness::retention())),
        example_config("memory://"),
    )
    .await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(srv.channel.clone());
    for service in ["touchpoint.v1.Decisions", "touchpoint.v1.Profiles", "touchpoint.v1.Admin"] {
        let r =
            health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }

    // Reflection v1 lists the services and resolves a service's file with its dependencies.
    use tonic_reflection::pb::v1 as r1;
    let mut refl = r1::server_reflection_client::ServerReflectionClient::new(srv.channel.clone());
    let reqs = vec![
        r1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r1::server_reflection_request::MessageRequest::ListServices(String::new())),
        },
        r1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "touchpoint.v1.Decisions".into(),
            )),
        },
        r1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r1::server_reflection_request::MessageRequest::FileByFilename(
                "google/protobuf/timestamp.proto".into(),
            )),
        },
    ];
    let mut stream = refl.server_reflection_info(futures::stream::iter(reqs)).await.unwrap().into_inner();
    let mut answers = Vec::new();
    while let Some(m) = futures::StreamExt::next(&mut stream).await {
        answers.push(m.unwrap().message_response.unwrap());
    }
    let r1::server_reflection_response::MessageResponse::ListServicesResponse(list) = &answers[0] else {
        panic!("{:?}", answers[0])
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for want in [
        "touchpoint.v1.Decisions",
        "touchpoint.v1.Profiles",
        "touchpoint.v1.Experiments",
        "touchpoint.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    for a in &answers[1..] {
        assert!(
            matches!(a, r1::server_reflection_response::MessageResponse::FileDescriptorResponse(f) if !f.file_descriptor_proto.is_empty()),
            "{a:?}"
        );
    }

    // v1alpha too (grpcurl 1.8 speaks it).
    use tonic_reflection::pb::v1alpha as ra;
    let mut refl = ra::server_reflection_client::ServerReflectionClient::new(srv.channel.clone());
    let req = ra::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(ra::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl.server_reflection_info(futures::stream::iter(vec![req])).await.unwrap().into_inner();
    let m = futures::StreamExt::next(&mut stream).await.unwrap().unwrap().message_response.unwrap();
    let ra::server_reflection_response::MessageResponse::ListServicesResponse(list) = m else { panic!() };
    assert!(list.service.iter().any(|s| s.name == "touchpoint.v1.Decisions"));

    // Every service answers (no RPC is left unimplemented): the experiments service too.
    let mut ex = pb::experiments_client::ExperimentsClient::new(srv.channel.clone());
    let a = ex.get_assignment(pb::GetAssignmentRequest { user_id: "u".into(), ..Default::default() }).await.unwrap();
    assert!(a.into_inner().assignments.is_empty(), "the example config defines no experiment");

    let mut admin = pb::admin_client::AdminClient::new(srv.channel.clone());
    let status = admin.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((status.store_kind.as_str(), status.store_healthy), ("memory", true));
    assert_eq!(status.config_version, srv.engine.snapshot().config.version);
    srv.shutdown().await;
}

#[tokio::test]
async fn metrics_count_rpcs_by_status_with_latency_histograms() {
    let srv = TestServer::with_store(
        Arc::new(touchpoint::store::memory::MemoryStore::new(crate::harness::retention())),
        example_config("memory://"),
    )
    .await;
    touchpoint::telemetry::prometheus();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(touchpoint::telemetry::serve_metrics(listener, std::future::pending()));
    let scrape = || async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{body}");
        body
    };
    // The recorder is process-wide and tests run in parallel: compare before and after.
    let count = |body: &str, code: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with("touchpoint_grpc_requests_total{"))
            .filter(|l| l.contains("rpc=\"GetJourney\"") && l.contains(&format!("code=\"{code}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // The recorder is process-wide: no other test's GetJourney errors in between.
    let _counts = JOURNEY_ERRORS.lock().await;
    let before = scrape().await;
    let mut p = srv.profiles();
    p.get_journey(pb::GetJourneyRequest { user_id: "nobody-here".into() }).await.unwrap_err();
    p.get_journey(pb::GetJourneyRequest { user_id: String::new() }).await.unwrap_err();
    p.get_journey(pb::GetJourneyRequest { user_id: String::new() }).await.unwrap_err();
    let after = scrape().await;
    assert_eq!(count(&after, "NOT_FOUND") - count(&before, "NOT_FOUND"), 1.0, "{after}");
    assert_eq!(count(&after, "INVALID_ARGUMENT") - count(&before, "INVALID_ARGUMENT"), 2.0, "{after}");
    assert!(
        after.contains("touchpoint_grpc_request_duration_seconds_bucket{rpc=\"GetJourney\""),
        "histograms, not summaries"
    );
}
