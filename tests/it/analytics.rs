//! Journey analytics end to end (issue 13): the Analytics RPCs, KPI status, the HTTP/JSON door
//! against gRPC, and the console, over real sockets and a real redis-server.
use crate::grpc_e2e::ev;
use crate::harness::{RedisServer, TEST_KEY, TestServer, example_config, example_path, http_request, redis_store};
use serde_json::Value;
use touchpoint::config::Config;
use touchpoint::grpc::pb::{self, analytics_client::AnalyticsClient};

const BEARER: &str = "Bearer ";

fn auth() -> String {
    format!("{BEARER}{TEST_KEY}")
}

/// The example config with one more KPI, `flip`: at least 3 users entered awareness in 2 days.
fn config_with_flip_kpi(redis_url: &str) -> Config {
    let src = std::fs::read_to_string(example_path()).unwrap()
        + "\n[[kpis]]\nname = \"flip\"\nstage = \"awareness\"\nmetric = \"entered\"\ntarget = 3\nwindow_days = 2\n";
    Config::from_toml(&src, "touchpoint.toml", [("TOUCHPOINT_REDIS_URL".to_string(), redis_url.to_string())]).unwrap()
}

async fn served(redis: &RedisServer) -> TestServer {
    TestServer::with_store(redis_store(&redis.url(), false).await, config_with_flip_kpi(&redis.url())).await
}

async fn post(srv: &TestServer, path: &str, body: &str) -> (u16, Value) {
    let a = auth();
    let (status, head, text) =
        http_request(srv.http, "POST", path, &[("authorization", &a), ("content-type", "application/json")], body)
            .await;
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {head}\n{text}"));
    (status, json)
}

fn flip(k: &pb::Kpis) -> &pb::KpiStatus {
    k.kpis.iter().find(|k| k.name == "flip").unwrap()
}

#[tokio::test]
async fn the_funnel_offers_and_kpis_follow_events_and_outcomes() {
    let redis = RedisServer::start();
    let srv = served(&redis).await;
    let (mut d, mut a) = (srv.decisions(), AnalyticsClient::new(srv.channel.clone()));
    let kpis = a.get_kpis(pb::GetKpisRequest {}).await.unwrap().into_inner();
    assert_eq!(flip(&kpis).status, "no_data", "nothing happened yet");
    // Two users arrive; one looks at a product.
    let events = vec![
        ev("ann", "a1", "page_view", 1, 0.0),
        ev("ann", "a2", "product_view", 60, 0.0),
        ev("bob", "b1", "page_view", 2, 0.0),
    ];
    d.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    let kpis = a.get_kpis(pb::GetKpisRequest {}).await.unwrap().into_inner();
    assert_eq!((flip(&kpis).status.as_str(), flip(&kpis).value), ("missed", Some(2.0)));
    // The third user crosses the target.
    d.record_events(pb::RecordEventsRequest { events: vec![ev("cyd", "c1", "page_view", 3, 0.0)] }).await.unwrap();
    let kpis = a.get_kpis(pb::GetKpisRequest {}).await.unwrap().into_inner();
    assert_eq!((flip(&kpis).status.as_str(), flip(&kpis).value), ("met", Some(3.0)));
    assert_eq!(flip(&kpis).direction, "at_least");

    let f = a.get_funnel(pb::GetFunnelRequest::default()).await.unwrap().into_inner();
    let stage = |s: &str| f.stages.iter().find(|x| x.stage == s).unwrap().clone();
    assert_eq!(f.stages.len(), 5);
    assert_eq!((stage("awareness").entered, stage("awareness").advanced, stage("awareness").in_stage), (3, 1, 2));
    assert_eq!(stage("awareness").advance_rate, Some(1.0 / 3.0));
    assert_eq!(stage("consideration").in_stage, 1);
    // Ann spent 59 s in awareness: the first time-in-stage bucket (up to a minute).
    assert_eq!(stage("awareness").exits, 1);
    assert!(stage("awareness").median_hours_in_stage.unwrap() <= 1.0 / 60.0);

    // A decision for ann in consideration on the web, and what she did with it.
    let decided = d
        .decide(pb::DecideRequest { user_id: "ann".into(), channel: "web".into(), limit: 2, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(!decided.offers.is_empty());
    let offer = decided.offers[0].offer_id.clone();
    for kind in [pb::Outcome::Impression, pb::Outcome::Click] {
        d.record_outcome(pb::RecordOutcomeRequest {
            decision_id: decided.decision_id.clone(),
            user_id: "ann".into(),
            offer_id: offer.clone(),
            outcome: kind as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let req = pb::GetOfferPerformanceRequest { stage: "consideration".into(), ..Default::default() };
    let o = a.get_offer_performance(req).await.unwrap().into_inner();
    let row = o.offers.iter().find(|r| r.offer_id == offer).unwrap();
    assert_eq!((row.channel.as_str(), row.decisions, row.impressions, row.clicks), ("web", 1, 1, 1));
    assert_eq!(row.ctr, Some(1.0));
    assert_eq!(o.offers.iter().map(|r| r.decisions).sum::<u64>(), decided.offers.len() as u64);
    // Ann was active within 14 days: in `recently_active` at the decision.
    let req = pb::GetOfferPerformanceRequest { segment: "recently_active".into(), ..Default::default() };
    let by_segment = a.get_offer_performance(req).await.unwrap().into_inner();
    let row = by_segment.offers.iter().find(|r| r.offer_id == offer).unwrap();
    assert_eq!((row.channel.as_str(), row.stage.as_str(), row.decisions, row.clicks), ("", "consideration", 1, 1));
    let req = pb::GetOfferPerformanceRequest { segment: "high_income".into(), ..Default::default() };
    assert!(a.get_offer_performance(req).await.unwrap().into_inner().offers.is_empty(), "ann is not high income");
    for (req, field) in [
        (pb::GetOfferPerformanceRequest { segment: "astronauts".into(), ..Default::default() }, "segment:"),
        (
            pb::GetOfferPerformanceRequest {
                segment: "recently_active".into(),
                channel: "web".into(),
                ..Default::default()
            },
            "channel:",
        ),
    ] {
        let e = a.get_offer_performance(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with(field), "{}", e.message());
    }

    // The funnel of a segment: everybody here was active within 14 days, nobody is high income.
    let of = |segment: &str| pb::GetFunnelRequest { segment: segment.into(), ..Default::default() };
    let active = a.get_funnel(of("recently_active")).await.unwrap().into_inner();
    let (aw, co) = (&active.stages[0], &active.stages[1]);
    assert_eq!((aw.entered, aw.advanced, co.entered), (3, 1, 1), "{active:?}");
    let rich = a.get_funnel(of("high_income")).await.unwrap().into_inner();
    assert!(rich.stages.iter().all(|s| s.entered == 0 && s.advanced == 0), "{rich:?}");
    let both = pb::GetFunnelRequest { segment: "recently_active".into(), channel: "web".into(), ..Default::default() };
    assert!(a.get_funnel(both).await.unwrap_err().message().starts_with("channel:"));

    // Bad filters name their field.
    let bad = a.get_funnel(pb::GetFunnelRequest { channel: "pigeon".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("channel:"), "{}", bad.message());
    let range = pb::DayRange { from_date: "2020-01-01".into(), to_date: "2026-01-01".into() };
    let bad = a.get_funnel(pb::GetFunnelRequest { range: Some(range), ..Default::default() }).await.unwrap_err();
    assert!(
        bad.message().starts_with("range:") && bad.message().contains("counter_retention_days"),
        "{}",
        bad.message()
    );

    // The KPI gauges follow GetKpis.
    let (_, _, metrics) = http_request(srv.http, "GET", "/metrics", &[], "").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("touchpoint_kpi_status{") && l.contains("kpi=\"flip\"") && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l.starts_with("touchpoint_stage_users{stage=\"consideration\"} 1")), "{metrics}");
}

#[tokio::test]
async fn json_over_http_answers_what_grpc_answers_including_errors() {
    let redis = RedisServer::start();
    let srv = served(&redis).await;
    let pool = touchpoint::grpc::json::descriptors();
    let mut d = srv.decisions();
    // An event through the door, then its effect read through both.
    let body = r#"{"events":[{"eventId":"j1","userId":"jay","eventType":"product_view","channel":"app",
        "timestamp":"2026-01-01T00:00:00Z"}]}"#
        .replace(
            "2026-01-01T00:00:00Z",
            &chrono::DateTime::from_timestamp(crate::grpc_e2e::base(), 0).unwrap().to_rfc3339(),
        );
    let (status, json) = post(&srv, "/v1/record_events", &body).await;
    assert_eq!((status, json["accepted"].as_u64()), (200, Some(1)), "{json}");

    let f = AnalyticsClient::new(srv.channel.clone()).get_funnel(pb::GetFunnelRequest::default()).await.unwrap();
    let (status, json) = post(&srv, "/v1/get_funnel", "{}").await;
    assert_eq!(status, 200);
    assert_eq!(json, touchpoint::grpc::json::message_json(&pool, "touchpoint.v1.Funnel", f.get_ref()));

    let profile = srv.profiles().get_profile(pb::GetProfileRequest { user_id: "jay".into() }).await.unwrap();
    let (status, json) = post(&srv, "/v1/get_profile", r#"{"user_id": "jay"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(json, touchpoint::grpc::json::message_json(&pool, "touchpoint.v1.Profile", profile.get_ref()));
    assert_eq!(json["stage"], "consideration");

    // A decision through the door is a decision (its id links outcomes over gRPC).
    let (status, json) = post(&srv, "/v1/decide", r#"{"userId":"jay","channel":"app","limit":1}"#).await;
    assert_eq!(status, 200, "{json}");
    let id = json["decisionId"].as_str().unwrap().to_string();
    let offer = json["offers"][0]["offerId"].as_str().unwrap().to_string();
    let ok = d
        .record_outcome(pb::RecordOutcomeRequest {
            decision_id: id,
            user_id: "jay".into(),
            offer_id: offer,
            outcome: pb::Outcome::Impression as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(ok.get_ref().recorded);
    // A server-streaming RPC answers an array.
    let (status, json) = post(&srv, "/v1/decide_batch", r#"{"userIds":["jay","kim"],"channel":"web"}"#).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json.as_array().map(Vec::len), Some(2), "{json}");

    // Errors: the same status and message as gRPC, as an HTTP status.
    let grpc = d
        .decide(pb::DecideRequest { user_id: String::new(), channel: "web".into(), ..Default::default() })
        .await
        .unwrap_err();
    let (status, json) = post(&srv, "/v1/decide", r#"{"channel":"web"}"#).await;
    assert_eq!(
        (status, json["status"].as_str(), json["message"].as_str()),
        (400, Some("INVALID_ARGUMENT"), Some(grpc.message()))
    );
    let grpc = AnalyticsClient::new(srv.channel.clone())
        .get_offer_performance(pb::GetOfferPerformanceRequest { stage: "limbo".into(), ..Default::default() })
        .await
        .unwrap_err();
    let (status, json) = post(&srv, "/v1/get_offer_performance", r#"{"stage":"limbo"}"#).await;
    assert_eq!((status, json["message"].as_str()), (400, Some(grpc.message())));
    let (status, json) = post(&srv, "/v1/decide", r#"{"userId":"jay","chanel":"web"}"#).await;
    assert_eq!((status, json["status"].as_str()), (400, Some("INVALID_ARGUMENT")));
    assert!(json["message"].as_str().unwrap().contains("chanel"), "{json}");
    let (status, _) = post(&srv, "/v1/no_such_method", "{}").await;
    assert_eq!(status, 404);
    // The same auth: no key, a wrong key, a key without the role.
    let (status, _, text) = http_request(srv.http, "POST", "/v1/get_funnel", &[], "{}").await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("UNAUTHENTICATED"), "{text}");
    let (status, _, _) = http_request(srv.http, "POST", "/v1/get_funnel", &[("x-api-key", "nope")], "{}").await;
    assert_eq!(status, 401);
    // Authorised before the body is parsed; bodies are bounded.
    let (status, _, _) = http_request(srv.http, "POST", "/v1/decide", &[], "{not json").await;
    assert_eq!(status, 401);
    let big = format!("{{\"userId\":\"{}\"}}", "x".repeat(touchpoint::grpc::json::MAX_BODY));
    let (status, _, text) = http_request(srv.http, "POST", "/v1/decide", &[("authorization", &auth())], &big).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("RESOURCE_EXHAUSTED"), "{text}");

    // The OpenAPI document lists every method; like reflection, it needs a key by default.
    let (status, _, _) = http_request(srv.http, "GET", "/openapi.json", &[], "").await;
    assert_eq!(status, 401);
    let (status, _, text) = http_request(srv.http, "GET", "/openapi.json", &[("authorization", &auth())], "").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    for path in ["/v1/decide", "/v1/record_events", "/v1/get_funnel", "/v1/get_kpis", "/v1/get_experiment_results"] {
        assert!(doc["paths"][path]["post"].is_object(), "{path}");
    }
}

#[tokio::test]
async fn the_console_shows_the_funnel_offers_kpis_experiments_behind_the_api_key() {
    let redis = RedisServer::start();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let mut d = srv.decisions();
    let events = vec![ev("eve", "e1", "page_view", 1, 0.0), ev("eve", "e2", "product_view", 5, 0.0)];
    d.record_events(pb::RecordEventsRequest { events }).await.unwrap();
    d.decide(pb::DecideRequest { user_id: "eve".into(), channel: "web".into(), ..Default::default() }).await.unwrap();

    let (status, head, _) = http_request(srv.http, "GET", "/console", &[], "").await;
    assert_eq!(status, 401);
    assert!(head.to_ascii_lowercase().contains("www-authenticate: basic"), "{head}");
    use base64::Engine as _;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("me:{TEST_KEY}")));
    let (status, _, html) = http_request(srv.http, "GET", "/console", &[("authorization", &basic)], "").await;
    assert_eq!(status, 200, "{html}");
    for stage in ["awareness", "consideration", "conversion", "retention", "advocacy"] {
        assert!(html.contains(&format!(">{stage}<")), "{stage}");
    }
    for section in ["id=kpis", "id=funnel", "id=offers", "id=experiments", "id=models", "<svg"] {
        assert!(html.contains(section), "{section}");
    }
    // Eve's entry and advance, her decision's offers, the configured KPIs and experiments.
    assert!(html.contains("entered 1 · in stage now 0"), "awareness bar");
    assert!(html.contains("consideration:advance_rate"), "a KPI");
    let exp = &srv.engine.snapshot().config.policy.experiments;
    assert!(exp.iter().all(|e| html.contains(&format!("<h3>{} ", e.id))), "every experiment");
    let (_, offers) = srv.engine.offer_performance(Default::default(), &Default::default()).await.unwrap();
    assert!(!offers.is_empty() && offers.iter().all(|o| html.contains(&format!("<td>{}</td>", o.offer))));
    // A bearer key works too, and a channel filter narrows the funnel.
    let (status, _, html) =
        http_request(srv.http, "GET", "/console?channel=app", &[("authorization", &auth())], "").await;
    assert_eq!(status, 200);
    assert!(html.contains("channel app") && html.contains("entered 0 · in stage now 0"), "nothing on app");
    // One segment's offer performance: eve (active today) is in `recently_active`.
    let path = "/console?view=offers&segment=recently_active";
    let (status, _, html) = http_request(srv.http, "GET", path, &[("authorization", &auth())], "").await;
    assert_eq!(status, 200);
    assert!(html.contains("<b>recently_active</b>") && !html.contains("id=funnel"), "the offers view of one segment");
    assert!(offers.iter().all(|o| html.contains(&format!("<td>{}</td>", o.offer))), "eve's offers");
}
