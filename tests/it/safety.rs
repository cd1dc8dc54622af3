//! Redis safety (issue 12, point 5): writes refused up front when Redis is out of memory, and
//! no decision recorded for a caller that was answered with a fallback.
use crate::grpc_e2e::ev;
use crate::harness::{RedisServer, TestServer, example_config, redis_store};
use std::collections::HashMap;
use touchpoint::grpc::pb;

fn info_memory(c: &mut redis::Connection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in INFO memory"))
}

/// Every key of a user (by its hash tag).
fn user_keys(c: &mut redis::Connection, user: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg(format!("*{{{user}}}*")).query(c).unwrap();
    keys.sort();
    keys
}

/// A fat event: 32 properties of 1000 bytes.
fn fat_event(user: &str, id: &str) -> pb::Event {
    let mut e = ev(user, id, "page_view", 1, 0.0);
    e.properties = (0..32).map(|i| (format!("p{i}"), format!("{id}-{i}-{}", "x".repeat(990)))).collect();
    e
}

fn decide(user: &str) -> pb::DecideRequest {
    pb::DecideRequest { user_id: user.into(), channel: "web".into(), limit: 2, ..Default::default() }
}

/// Over `maxmemory` with `noeviction`, every write (RecordEvents, PutProfile, Decide's commit)
/// is refused before it writes anything: RESOURCE_EXHAUSTED with `store_oom` (no Redis text),
/// a degraded Decide with `store_oom`; reads keep working; memory stays within one command of
/// the limit.
#[tokio::test]
async fn out_of_memory_refuses_writes_up_front() {
    let redis = RedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    d.record_events(pb::RecordEventsRequest { events: vec![ev("kept", "k1", "page_view", 0, 0.0)] }).await.unwrap();

    let mut c = redis.conn();
    let used = info_memory(&mut c, "used_memory");
    let limit = used + 2 * 1024 * 1024;
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(limit).query(&mut c).unwrap();

    // ~33 kB per call: the limit is reached within a few hundred calls.
    let (mut accepted, mut refused, mut max_used) = (0, 0, 0);
    for i in 0..400 {
        let events = vec![fat_event(&format!("u{i}"), &format!("e{i}"))];
        match d.record_events(pb::RecordEventsRequest { events }).await {
            Ok(_) => accepted += 1,
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert!(s.message().starts_with("store_oom:"), "{s:?}");
                assert!(!s.message().contains("OOM command") && !s.message().contains("maxmemory"), "{s:?}");
                refused += 1;
            }
        }
        max_used = max_used.max(info_memory(&mut c, "used_memory"));
    }
    assert!(accepted > 0 && refused > 100, "accepted {accepted}, refused {refused}");
    // One command's worth: a call of ~33 kB of arguments, plus the script's bookkeeping.
    assert!(max_used < limit + 256 * 1024, "used {max_used} over the limit {limit}");

    // A refused user left nothing behind (the commit script never ran).
    let refused_user = format!("u{}", 399);
    assert_eq!(user_keys(&mut c, &refused_user), Vec::<String>::new());

    let put = pb::PutProfileRequest {
        user_id: "kept".into(),
        attributes: HashMap::from([(
            "email".to_string(),
            pb::Value { kind: Some(pb::value::Kind::StringValue("k@example.com".into())) },
        )]),
        ..Default::default()
    };
    let s = p.put_profile(put).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");

    let r = d.decide(decide("kept")).await.unwrap().into_inner();
    assert!(r.degraded, "{r:?}");
    assert_eq!(r.degraded_reason, "store_oom");

    // Reads still answer.
    let got = p.get_profile(pb::GetProfileRequest { user_id: "kept".into() }).await.unwrap().into_inner();
    assert_eq!(got.aggregates.unwrap().event_counts.get("page_view"), Some(&1));

    // Memory back: writes work again.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query(&mut c).unwrap();
    d.record_events(pb::RecordEventsRequest { events: vec![fat_event("after", "a1")] }).await.unwrap();
    assert!(!d.decide(decide("kept")).await.unwrap().into_inner().degraded);
}

/// What Redis holds of a user's decisions: the recent-decision hash (decision id -> offers),
/// the contacts and exposures, and the decision-log entries naming the decision.
fn recorded(c: &mut redis::Connection, user: &str, decision_id: &str) -> (bool, Vec<String>) {
    let keys = user_keys(c, user);
    let in_recent = keys.iter().any(|k| k.ends_with(":d"))
        && redis::cmd("HEXISTS")
            .arg(keys.iter().find(|k| k.ends_with(":d")).unwrap())
            .arg(decision_id)
            .query(c)
            .unwrap();
    let log: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg("tp:dlog").arg("-").arg("+").query(c).unwrap();
    let logged = log.iter().any(|(_, f)| f.iter().any(|(k, v)| k == "id" && v == decision_id));
    assert_eq!(in_recent, logged, "recent decisions and the log agree for {user}");
    (logged, keys)
}

/// Writes are paused (CLIENT PAUSE WRITE from a second connection) for a random time around
/// the 50 ms budget while a Decide is in flight. Whatever the timing, either the answer is the
/// real decision and it is recorded, or it is a fallback and nothing of it exists in Redis.
#[tokio::test]
async fn a_decision_answered_with_a_fallback_is_never_recorded() {
    let redis = RedisServer::start();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let mut d = srv.decisions();
    let mut c = redis.conn();
    let (mut real, mut fallback) = (0, 0);
    for i in 0..24u64 {
        let user = format!("slow{i}");
        // Pauses from 5 to 120 ms: some end within the budget, some after it.
        let pause_ms = 5 + (i * 37) % 116;
        let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(pause_ms).arg("WRITE").query(&mut c).unwrap();
        let r = d.decide(decide(&user)).await.unwrap().into_inner();
        // Let any write still queued behind the pause run before looking.
        std::thread::sleep(std::time::Duration::from_millis(pause_ms + 20));
        let (logged, keys) = recorded(&mut c, &user, &r.decision_id);
        if r.degraded {
            assert_eq!(r.degraded_reason, "store_timeout", "{r:?}");
            assert!(!logged, "a fallback for {user} was recorded");
            assert_eq!(keys, Vec::<String>::new(), "no contact, exposure or decision key for {user}");
            fallback += 1;
        } else {
            assert!(logged, "the real decision for {user} is recorded");
            real += 1;
        }
    }
    // Both branches were exercised (a 120 ms pause cannot fit in a 50 ms budget).
    assert!(fallback > 0, "real {real}, fallback {fallback}");
    assert!(real > 0, "real {real}, fallback {fallback}");
}

/// Redis asleep (DEBUG SLEEP, everything blocked) while a Decide is in flight: the answer is
/// a fallback and, once Redis wakes up, nothing of the decision is there.
#[tokio::test]
async fn a_decision_in_flight_while_redis_sleeps_leaves_nothing() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let mut d = srv.decisions();
    let url = redis.url();
    let sleeper = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("DEBUG").arg("SLEEP").arg("0.3").query(&mut c).unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = d.decide(decide("sleepy")).await.unwrap().into_inner();
    sleeper.join().unwrap();
    assert!(r.degraded, "{r:?}");
    assert_eq!(r.degraded_reason, "store_timeout");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut c = redis.conn();
    let (logged, keys) = recorded(&mut c, "sleepy", &r.decision_id);
    assert!(!logged);
    assert_eq!(keys, Vec::<String>::new());
}
