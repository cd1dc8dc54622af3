//! Overload (issue 12, points 3 and 4): per-class shedding, the global batch bound, the store
//! circuit breaker, connection limits, and metrics by final status — over real sockets,
//! against real Redis, with the counters read by scraping `/metrics`.
use crate::harness::{RedisServer, TestServer, example_path, redis_config, retention, shared_redis};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tonic::Code;
use touchpoint::config::Config;
use touchpoint::engine::breaker::BreakerState;
use touchpoint::grpc::pb;
use touchpoint::store::redis::RedisStore;

/// The example config on `url` with `[server.limits]` (and other) overrides.
fn config(url: &str, overrides: &[(&str, &str)]) -> Config {
    let mut vars = vec![("TOUCHPOINT_REDIS_URL".to_string(), url.to_string())];
    vars.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::load(&example_path(), vars).unwrap()
}

async fn served(url: &str, prefix: &str, overrides: &[(&str, &str)]) -> TestServer {
    served_with_timeout(url, prefix, overrides, 2_000).await
}

/// A generous command timeout: the tests share a loaded machine (stalls of seconds were seen
/// while other builds ran), and a stalled command would be a flaky test, not a finding (the
/// breaker test stops Redis outright).
async fn served_with_timeout(url: &str, prefix: &str, overrides: &[(&str, &str)], timeout_ms: u64) -> TestServer {
    let redis = touchpoint::config::RedisConfig { command_timeout_ms: timeout_ms, ..redis_config(url, false, prefix) };
    let store = RedisStore::connect(&redis, retention()).await.unwrap();
    TestServer::with_store(Arc::new(store), config(url, overrides)).await
}

/// Scrapes `/metrics` over a socket (one endpoint for the test binary; the recorder is
/// process-wide, so tests compare before and after).
async fn scrape() -> String {
    static ADDR: tokio::sync::OnceCell<std::net::SocketAddr> = tokio::sync::OnceCell::const_new();
    let addr = *ADDR
        .get_or_init(|| async {
            touchpoint::telemetry::prometheus();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // Its own runtime: test runtimes end with their test.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    listener.set_nonblocking(true).unwrap();
                    let l = tokio::net::TcpListener::from_std(listener).unwrap();
                    let _ = touchpoint::telemetry::serve_metrics(l, std::future::pending()).await;
                });
            });
            addr
        })
        .await;
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

/// The sum of a metric's samples that carry every label given.
fn metric(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn decide(user: &str) -> pb::DecideRequest {
    pb::DecideRequest { user_id: user.into(), channel: "web".into(), limit: 2, ..Default::default() }
}

fn batch(users: usize, tag: &str) -> pb::DecideBatchRequest {
    pb::DecideBatchRequest {
        user_ids: (0..users).map(|i| format!("{tag}-{i}")).collect(),
        channel: "web".into(),
        limit: 2,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_decides_is_shed_and_every_admitted_call_is_a_full_answer() {
    // Budget raised from 50 ms to 1 s so that a busy test machine (the whole suite runs in
    // parallel on 2 shared cores) cannot degrade an admitted call: what is checked is that
    // excess calls are refused rather than queued.
    let redis = RedisServer::start();
    let srv = served(
        &redis.url(),
        "ovl-flood",
        &[("TOUCHPOINT_SERVER_LIMITS_INTERACTIVE", "4"), ("TOUCHPOINT_DECISIONS_DEADLINE_MS", "1000")],
    )
    .await;
    let before = scrape().await;
    // 400 calls at once over 4 connections: 100 times the limit.
    let mut channels = vec![srv.channel.clone()];
    for _ in 0..3 {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", srv.addr)).unwrap();
        let key = touchpoint::grpc::auth::ApiKey::new(Some(crate::harness::TEST_KEY)).unwrap();
        channels.push(touchpoint::grpc::auth::keyed(ch.connect().await.unwrap(), key));
    }
    let calls = (0..400).map(|i| {
        let mut d = pb::decisions_client::DecisionsClient::new(channels[i % channels.len()].clone());
        async move { d.decide(decide(&format!("flood-{i}"))).await }
    });
    let results = futures::future::join_all(calls).await;
    let (mut admitted, mut shed) = (0, 0);
    for r in results {
        match r {
            Ok(r) => {
                let r = r.into_inner();
                assert!(!r.degraded, "an admitted call is a full answer: {r:?}");
                admitted += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("interactive"), "names the class: {}", e.message());
                shed += 1;
            }
        }
    }
    assert!(shed > 0, "some calls are shed ({admitted} admitted)");
    assert!(admitted >= 4, "calls within the limit are served ({shed} shed)");
    let after = scrape().await;
    let moved = |name: &str, labels: &[(&str, &str)]| metric(&after, name, labels) - metric(&before, name, labels);
    assert!(moved("touchpoint_requests_shed_total", &[("class", "interactive")]) >= shed as f64, "{after}");
    assert!(
        moved("touchpoint_grpc_requests_total", &[("rpc", "Decide"), ("code", "RESOURCE_EXHAUSTED")]) >= shed as f64
    );
    assert!(moved("touchpoint_grpc_requests_total", &[("rpc", "Decide"), ("code", "OK")]) >= admitted as f64);
    // The slots come back: once the flood is over a call is admitted again.
    srv.decisions().decide(decide("after-the-flood")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_campaign_batches_do_not_degrade_interactive_decides() {
    // The interactive budget is 1 s rather than 50 ms: test builds are unoptimised and share
    // the machine (load averages of 5-11 while this was written). The bound is checked
    // directly (decisions in flight sampled) as well as by its effect (degraded calls). Without the global bound (8 x 256 decisions in flight) this still degrades
    // calls; with it (`batch_decisions`, default 16) at most 1%, usually none.
    let bound = std::env::var("OVL_BATCH_DECISIONS").unwrap_or_else(|_| "16".into());
    let redis = RedisServer::start();
    let srv = served_with_timeout(
        &redis.url(),
        "ovl-batch",
        &[("TOUCHPOINT_DECISIONS_DEADLINE_MS", "1000"), ("TOUCHPOINT_SERVER_LIMITS_BATCH_DECISIONS", &bound)],
        10_000,
    )
    .await;
    let batches = (0..8).map(|b| {
        let mut d = srv.decisions();
        async move {
            let mut stream = d.decide_batch(batch(2_000, &format!("camp{b}"))).await.unwrap().into_inner();
            let mut n = 0;
            while let Some(item) = stream.message().await.unwrap() {
                assert!(!item.decision.unwrap().degraded);
                n += 1;
            }
            n
        }
    });
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let interactive = (0..4).map(|w| {
        let mut d = srv.decisions();
        let done = done.clone();
        async move {
            let (mut calls, mut degraded) = (0u32, 0u32);
            while !done.load(std::sync::atomic::Ordering::Relaxed) || calls < 25 {
                let r = d.decide(decide(&format!("web-{w}-{calls}"))).await.unwrap().into_inner();
                calls += 1;
                degraded += u32::from(r.degraded);
            }
            (calls, degraded)
        }
    });
    let batches = async {
        let counts = futures::future::join_all(batches).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        counts
    };
    // The bound itself, sampled while the batches run: never more than 16 in flight.
    let engine = srv.engine.clone();
    let done_sampling = done.clone();
    let sampler = tokio::spawn(async move {
        let mut most = 0;
        while !done_sampling.load(std::sync::atomic::Ordering::Relaxed) {
            most = most.max(engine.batch_decisions_in_flight());
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        most
    });
    let (counts, interactive) = tokio::join!(batches, futures::future::join_all(interactive));
    let most_in_flight = sampler.await.unwrap();
    let limit: usize = bound.parse().unwrap();
    assert!(most_in_flight > 0 && most_in_flight <= limit.min(16), "{most_in_flight} batch decisions in flight");
    assert_eq!(counts, vec![2_000; 8], "every batch decided every user");
    let calls: u32 = interactive.iter().map(|c| c.0).sum();
    let degraded: u32 = interactive.iter().map(|c| c.1).sum();
    assert!(calls >= 100, "interactive calls ran alongside the batches: {calls}");
    // Issue 9's bar: at most 1% (0 in quiet runs; a loaded test machine may stall a call).
    assert!(degraded * 100 <= calls, "{degraded} of {calls} interactive decides degraded while batches ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_fails_fast_while_redis_is_down_and_closes_when_it_returns() {
    let mut redis = RedisServer::start();
    let srv = served(
        &redis.url(),
        "ovl-br",
        &[("TOUCHPOINT_SERVER_LIMITS_BREAKER_FAILURES", "3"), ("TOUCHPOINT_SERVER_LIMITS_BREAKER_COOLDOWN_MS", "200")],
    )
    .await;
    let mut d = srv.decisions();
    assert!(!d.decide(decide("b")).await.unwrap().into_inner().degraded);
    assert_eq!(srv.engine.breaker_state(), BreakerState::Closed);
    let before = scrape().await;

    redis.stop();
    // Decides degrade with a stable reason until the breaker has seen enough failures.
    let mut opened = false;
    for _ in 0..200 {
        let r = d.decide(decide("b")).await.unwrap().into_inner();
        assert!(r.degraded, "{r:?}");
        assert!(["store_unavailable", "store_timeout"].contains(&r.degraded_reason.as_str()), "{r:?}");
        if srv.engine.breaker_state() != BreakerState::Closed {
            opened = true;
            break;
        }
    }
    assert!(opened, "the breaker opens after consecutive failures");
    // Operators see it in GetStatus.
    let status = || async {
        pb::admin_client::AdminClient::new(srv.channel.clone())
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    let s = status().await;
    assert!(["open", "half_open"].contains(&s.store_breaker.as_str()), "{s:?}");
    // While open: Decide degraded as store_unavailable, writes UNAVAILABLE, a batch stream that
    // opened OK ends UNAVAILABLE — and is counted so.
    let r = d.decide(decide("b")).await.unwrap().into_inner();
    assert_eq!((r.degraded, r.degraded_reason.as_str()), (true, "store_unavailable"));
    let e = d
        .record_events(pb::RecordEventsRequest { events: vec![crate::grpc_e2e::ev("b", "b-1", "page_view", 0, 0.0)] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let mut stream = d.decide_batch(batch(3, "br")).await.expect("the stream opens").into_inner();
    let e = loop {
        match stream.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the batch cannot succeed while the store is down"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let during = scrape().await;
    let moved =
        |body: &str, name: &str, labels: &[(&str, &str)]| metric(body, name, labels) - metric(&before, name, labels);
    assert!(moved(&during, "touchpoint_store_breaker_opened_total", &[]) >= 1.0, "{during}");
    assert!(moved(&during, "touchpoint_store_breaker_rejected_total", &[]) >= 1.0);
    assert!(
        moved(&during, "touchpoint_store_errors_total", &[("class", "store_unavailable")])
            + moved(&during, "touchpoint_store_errors_total", &[("class", "store_timeout")])
            >= 3.0
    );
    assert!(moved(&during, "touchpoint_decisions_degraded_total", &[("reason", "store_unavailable")]) >= 1.0);
    assert!(
        moved(&during, "touchpoint_grpc_requests_total", &[("rpc", "DecideBatch"), ("code", "UNAVAILABLE")]) >= 1.0
    );
    assert!(during.contains("touchpoint_store_breaker_open"), "the state gauge is exported");

    // Redis back: a half-open probe succeeds and the breaker closes.
    redis.restart();
    let mut recovered = false;
    for _ in 0..200 {
        let r = d.decide(decide("b")).await.unwrap().into_inner();
        if !r.degraded {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "decides are full answers again within 10 s of Redis returning");
    assert_eq!(srv.engine.breaker_state(), BreakerState::Closed);
    assert_eq!(status().await.store_breaker, "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_counted_by_final_status_deadline_and_cancellation() {
    let srv = served(&shared_redis().url(), "ovl-metrics", &[]).await;
    let mut d = srv.decisions();
    let before = scrape().await;
    let count = |body: &str, code: &str| {
        metric(body, "touchpoint_grpc_requests_total", &[("rpc", "DecideBatch"), ("code", code)])
    };

    // A complete stream: OK.
    let mut s = d.decide_batch(batch(3, "m-ok")).await.unwrap().into_inner();
    while s.message().await.unwrap().is_some() {}
    // Refused before streaming: INVALID_ARGUMENT.
    let e = d.decide_batch(pb::DecideBatchRequest { channel: "fax".into(), ..batch(1, "m") }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // The client's deadline passes mid-stream: DEADLINE_EXCEEDED, as the client saw it.
    let mut req = tonic::Request::new(batch(10_000, "m-slow"));
    req.set_timeout(Duration::from_millis(100));
    let mut s = d.decide_batch(req).await.unwrap().into_inner();
    let e = loop {
        match s.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("10,000 decisions do not fit in 100 ms"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    drop(s);
    // The client walks away from a stream without a deadline: CANCELLED.
    let mut s = d.decide_batch(batch(10_000, "m-cancel")).await.unwrap().into_inner();
    s.message().await.unwrap().expect("a first item");
    drop(s);

    // The server learns of the last two when h2 resets the streams: wait for it (bounded).
    let mut after = scrape().await;
    for _ in 0..100 {
        if count(&after, "CANCELLED") > count(&before, "CANCELLED")
            && count(&after, "DEADLINE_EXCEEDED") > count(&before, "DEADLINE_EXCEEDED")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = scrape().await;
    }
    // The recorder is process-wide and other tests of this binary run DecideBatch calls that
    // end OK or INVALID_ARGUMENT at the same time: those two are checked as "counted", the
    // deadline and the cancellation (which no other test produces) exactly.
    assert!(count(&after, "OK") - count(&before, "OK") >= 1.0, "{after}");
    assert!(count(&after, "INVALID_ARGUMENT") - count(&before, "INVALID_ARGUMENT") >= 1.0, "{after}");
    assert_eq!(count(&after, "DEADLINE_EXCEEDED") - count(&before, "DEADLINE_EXCEEDED"), 1.0, "{after}");
    assert_eq!(count(&after, "CANCELLED") - count(&before, "CANCELLED"), 1.0, "{after}");
}

/// Reads until the server closes the connection (bounded: 10 s).
async fn closed_by_server(conn: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let read = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_or_silent_ones_are_closed() {
    let srv = served(
        &shared_redis().url(),
        "ovl-conn",
        &[("TOUCHPOINT_SERVER_LIMITS_MAX_CONNECTIONS", "2"), ("TOUCHPOINT_SERVER_LIMITS_HANDSHAKE_TIMEOUT_MS", "300")],
    )
    .await;
    let before = scrape().await;
    // The harness's channel holds one slot; a second client takes the other.
    let second =
        tonic::transport::Endpoint::from_shared(format!("http://{}", srv.addr)).unwrap().connect().await.unwrap();
    let key = touchpoint::grpc::auth::ApiKey::new(Some(crate::harness::TEST_KEY)).unwrap();
    let keyed = touchpoint::grpc::auth::keyed(second.clone(), key);
    pb::decisions_client::DecisionsClient::new(keyed.clone()).decide(decide("c2")).await.unwrap();
    srv.decisions().decide(decide("c1")).await.unwrap();
    // A third is closed at once.
    let mut third = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    assert!(closed_by_server(&mut third).await, "the connection over the limit is closed");
    let after = scrape().await;
    assert!(
        metric(&after, "touchpoint_connections_refused_total", &[])
            > metric(&before, "touchpoint_connections_refused_total", &[])
    );
    // Served clients are untouched.
    srv.decisions().decide(decide("c1")).await.unwrap();

    // A connection that sends nothing is closed after the handshake timeout, freeing its slot.
    drop((second, keyed));
    let srv2 =
        served(&shared_redis().url(), "ovl-conn2", &[("TOUCHPOINT_SERVER_LIMITS_HANDSHAKE_TIMEOUT_MS", "300")]).await;
    let mut silent = tokio::net::TcpStream::connect(srv2.addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await, "a silent connection is closed");
    let after = scrape().await;
    assert!(metric(&after, "touchpoint_connections_timed_out_total", &[]) >= 1.0);
    srv2.decisions().decide(decide("c3")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_past_its_deadline_counts_as_deadline_exceeded() {
    let redis = RedisServer::start();
    let srv = served(&redis.url(), "ovl-deadline", &[]).await;
    let mut d = srv.decisions();
    d.record_events(pb::RecordEventsRequest { events: vec![crate::grpc_e2e::ev("dl", "dl-0", "page_view", 0, 0.0)] })
        .await
        .unwrap();
    let before = scrape().await;
    // Redis paused for 2 s (in effect when the command returns): the write cannot finish
    // within the caller's 200 ms.
    let mut c = redis.conn();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(2000).arg("ALL").query(&mut c).unwrap();
    let mut req = tonic::Request::new(pb::RecordEventsRequest {
        events: vec![crate::grpc_e2e::ev("dl", "dl-1", "page_view", 1, 0.0)],
    });
    req.set_timeout(Duration::from_millis(200));
    let e = d.record_events(req).await.unwrap_err();
    assert!([Code::DeadlineExceeded, Code::Cancelled].contains(&e.code()), "{e:?}");
    let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut c).unwrap();
    let count = |body: &str| {
        metric(body, "touchpoint_grpc_requests_total", &[("rpc", "RecordEvents"), ("code", "DEADLINE_EXCEEDED")])
    };
    let mut after = scrape().await;
    for _ in 0..100 {
        if count(&after) > count(&before) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = scrape().await;
    }
    assert_eq!(count(&after) - count(&before), 1.0, "{after}");
}

/// A gRPC request frame: uncompressed flag, big-endian length, message.
fn grpc_frame(msg: &impl prost::Message) -> bytes::Bytes {
    let body = msg.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame.into()
}

/// A `Decide` request's headers for a raw HTTP/2 client.
fn decide_headers(addr: std::net::SocketAddr) -> http::Request<()> {
    http::Request::post(format!("http://{addr}/touchpoint.v1.Decisions/Decide"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", crate::harness::TEST_KEY))
        .body(())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_limits_are_advertised_and_cancelling_clients_keep_their_connection() {
    let srv =
        served(&shared_redis().url(), "ovl-h2", &[("TOUCHPOINT_SERVER_LIMITS_MAX_CONCURRENT_STREAMS", "7")]).await;
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    // One full call: the server's SETTINGS have arrived once it is answered.
    let call = |client: &mut h2::client::SendRequest<bytes::Bytes>, user: &str| {
        let (response, mut body) = client.send_request(decide_headers(srv.addr), false).unwrap();
        body.send_data(grpc_frame(&decide(user)), true).unwrap();
        async move {
            let response = response.await.unwrap();
            assert_eq!(response.status(), 200);
            let mut body = response.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            let trailers = body.trailers().await.unwrap().unwrap_or_default();
            trailers.get("grpc-status").map(|v| v.to_str().unwrap().to_string())
        }
    };
    assert_eq!(call(&mut client, "h2-a").await.as_deref(), Some("0"));
    assert_eq!(client.current_max_send_streams(), 7, "max_concurrent_streams is advertised");
    // 100 streams reset by the client right after their headers (a client cancelling on its
    // deadline), written together so the server sees each reset before it accepts the stream:
    // h2's default of 20 such resets would close the connection with GOAWAY.
    for _ in 0..100 {
        client = client.ready().await.unwrap();
        let (_response, mut body) = client.send_request(decide_headers(srv.addr), false).unwrap();
        body.send_reset(h2::Reason::CANCEL);
    }
    // The connection still serves calls.
    client = client.ready().await.unwrap();
    assert_eq!(call(&mut client, "h2-b").await.as_deref(), Some("0"), "the connection survived the resets");
    assert!(!conn.is_finished(), "the connection is open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_answering_pings_is_closed_by_keepalive() {
    use tokio::io::AsyncWriteExt;
    let srv = served(
        &shared_redis().url(),
        "ovl-keepalive",
        &[
            ("TOUCHPOINT_SERVER_LIMITS_KEEPALIVE_INTERVAL_MS", "100"),
            ("TOUCHPOINT_SERVER_LIMITS_KEEPALIVE_TIMEOUT_MS", "200"),
        ],
    )
    .await;
    // A raw HTTP/2 client: the preface and an empty SETTINGS frame, then silence (it never
    // acknowledges the server's SETTINGS or answers its PINGs).
    let mut conn = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    let started = std::time::Instant::now();
    let (mut frames, mut buf, mut pinged) = (Vec::new(), [0u8; 1024], false);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => frames.extend_from_slice(&buf[..n]),
            }
            // Frames: 3-byte length, 1-byte type (6 = PING), flags, stream id.
            let mut at = 0;
            while at + 9 <= frames.len() {
                let len =
                    usize::from(frames[at]) << 16 | usize::from(frames[at + 1]) << 8 | usize::from(frames[at + 2]);
                pinged |= frames[at + 3] == 6;
                at += 9 + len;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the silent connection");
    assert!(pinged, "the server sent a keepalive PING first");
    assert!(started.elapsed() < Duration::from_secs(5), "closed after the keepalive timeout: {:?}", started.elapsed());
    // The server goes on serving others.
    srv.decisions().decide(decide("after-keepalive")).await.unwrap();
}
