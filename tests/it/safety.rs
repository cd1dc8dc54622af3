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
    eprintln!("OOM: limit {limit} B, accepted {accepted}, refused {refused}, max used {max_used} B");
    assert!(accepted > 0 && refused > 100, "accepted {accepted}, refused {refused}");
    // One command's worth: a call of ~33 kB of arguments, plus the script's bookkeeping.
    assert!(max_used < limit + 256 * 1024, "used {max_used} over the limit {limit}");

    // A refused user left nothing behind (the commit script never ran).
    let refused_user = format!("u{}", 399);
    assert_eq!(user_keys(&mut c, &refused_user), Vec::<String>::new());

    // Firmly over the limit from here on (a refused call may free a little memory).
    let used = info_memory(&mut c, "used_memory");
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(used - 64 * 1024).query(&mut c).unwrap();
    let s = d.record_events(pb::RecordEventsRequest { events: vec![ev("kept", "k2", "page_view", 2, 0.0)] }).await;
    assert_eq!(s.unwrap_err().code(), tonic::Code::ResourceExhausted);

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

/// What Redis holds of a user's decisions: the recent decisions (members `id|offers|`), the
/// contacts and exposures, and the decision-log entries naming the decision.
fn recorded(c: &mut redis::Connection, user: &str, decision_id: &str) -> (bool, Vec<String>) {
    let keys = user_keys(c, user);
    let in_recent = keys.iter().find(|k| k.ends_with(":r")).is_some_and(|recent| {
        let found: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(recent)
            .arg(format!("[{decision_id}|"))
            .arg(format!("({decision_id}}}"))
            .query(c)
            .unwrap();
        !found.is_empty()
    });
    // Values as bytes: a decision's record (`bin`) is binary.
    type Entry = (String, Vec<(String, Vec<u8>)>);
    let log: Vec<Entry> = redis::cmd("XRANGE").arg("tp:dlog").arg("-").arg("+").query(c).unwrap();
    // The entry's `id` is the decision id's 16 bytes.
    let id = uuid::Uuid::parse_str(decision_id).unwrap();
    let logged = log.iter().any(|(_, f)| f.iter().any(|(k, v)| k == "id" && v == id.as_bytes()));
    assert_eq!(in_recent, logged, "recent decisions and the log agree for {user}");
    (logged, keys)
}

/// Writes are paused (CLIENT PAUSE WRITE from a second connection: reads go on, the commit
/// script waits) while a Decide is in flight, for no time, for less than the 300 ms budget,
/// around it, or longer. Whatever the timing, either the answer is the real decision and it is
/// recorded, or it is a fallback and nothing of it exists in Redis.
#[tokio::test]
async fn a_decision_answered_with_a_fallback_is_never_recorded() {
    let redis = RedisServer::start();
    let vars = [
        ("TOUCHPOINT_REDIS_URL".to_string(), redis.url()),
        ("TOUCHPOINT_DECISIONS_DEADLINE_MS".to_string(), "300".to_string()),
    ];
    let config = touchpoint::config::Config::load(&crate::harness::example_path(), vars).unwrap();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, config).await;
    let mut d = srv.decisions();
    let mut c = redis.conn();
    let (mut real, mut fallback) = (0, 0);
    for (i, pause_ms) in [0u64, 5, 150, 280, 300, 320, 450, 600, 0, 40].into_iter().enumerate() {
        let user = format!("slow{i}");
        if pause_ms > 0 {
            let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(pause_ms).arg("WRITE").query(&mut c).unwrap();
        }
        let r = d.decide(decide(&user)).await.unwrap().into_inner();
        // Let any write still queued behind the pause run before looking.
        tokio::time::sleep(std::time::Duration::from_millis(pause_ms + 20)).await;
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
    // A pause longer than the budget can only end in a fallback; no pause, in a real decision
    // (short of a loaded machine taking 300 ms over a read and a write on loopback).
    assert!(fallback >= 2 && real >= 1, "real {real}, fallback {fallback}");
}

/// Redis blocked for every client (CLIENT PAUSE ALL, in effect when the command returns) while
/// a Decide is in flight: the answer is a fallback and, once Redis serves again, nothing of the
/// decision is there.
#[tokio::test]
async fn a_decision_in_flight_while_redis_sleeps_leaves_nothing() {
    let redis = RedisServer::start();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let mut d = srv.decisions();
    let mut c = redis.conn();
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(300).arg("ALL").query(&mut c).unwrap();
    let r = d.decide(decide("sleepy")).await.unwrap().into_inner();
    assert!(r.degraded, "{r:?}");
    assert_eq!(r.degraded_reason, "store_timeout");
    // Past the pause, and a moment for anything queued behind it to run before looking.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let (logged, keys) = recorded(&mut c, "sleepy", &r.decision_id);
    assert!(!logged);
    assert_eq!(keys, Vec::<String>::new());
}

// ---- Erasure and consent (issue 12, point 6) ----

fn text(s: &str) -> pb::Value {
    pb::Value { kind: Some(pb::value::Kind::StringValue(s.into())) }
}

/// The example config with an experiment every user is in, on `url`.
fn config_with_experiment(url: &str) -> touchpoint::config::Config {
    let mut body = std::fs::read_to_string(crate::harness::example_path()).unwrap();
    body.push_str(
        "\n[[experiments]]\nid = \"erasure\"\nlayer = \"arbitration\"\nallocation = 1.0\n\
         [[experiments.variants]]\nname = \"a\"\n[[experiments.variants]]\nname = \"b\"\n",
    );
    let vars = [("TOUCHPOINT_REDIS_URL".to_string(), url.to_string())];
    touchpoint::config::Config::from_toml(&body, "touchpoint.toml", vars).unwrap()
}

/// Every key of the Redis server and everything it holds, as text (values of every type,
/// stream entries field by field).
fn dump(c: &mut redis::Connection) -> Vec<(String, String)> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    let mut out = Vec::new();
    for k in keys {
        let kind: String = redis::cmd("TYPE").arg(&k).query(c).unwrap();
        let v: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&k).query(c).unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&k).query(c).unwrap(),
            "list" => redis::cmd("LRANGE").arg(&k).arg(0).arg(-1).query(c).unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&k).query(c).unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&k).arg(0).arg(-1).query(c).unwrap(),
            "stream" => redis::cmd("XRANGE").arg(&k).arg("-").arg("+").query(c).unwrap(),
            other => panic!("key {k} of type {other}"),
        };
        out.push((k, format!("{v:?}")));
    }
    out
}

fn holding<'a>(dump: &'a [(String, String)], needle: &str) -> Vec<&'a str> {
    dump.iter().filter(|(k, v)| k.contains(needle) || v.contains(needle)).map(|(k, _)| k.as_str()).collect()
}

/// After DeleteProfile nothing readable of the user remains in Redis: not the e-mail, the
/// country or an event property, not even the user id (every key and stream entry scanned).
/// Another user's data stays (and the scan does find it), replay still works for them and says
/// "erased" for the deleted user, and the experiment's results still answer.
#[tokio::test]
async fn delete_profile_leaves_nothing_readable_of_the_user() {
    let redis = RedisServer::start();
    let srv =
        TestServer::with_store(redis_store(&redis.url(), false).await, config_with_experiment(&redis.url())).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    let mut decisions = HashMap::new();
    for (user, email, country) in
        [("erin-gone", "erin.secret@example.com", "Atlantis"), ("kim-kept", "kim.kept@example.com", "Lemuria")]
    {
        let attributes = HashMap::from([("email".to_string(), text(email)), ("country".to_string(), text(country))]);
        p.put_profile(pb::PutProfileRequest { user_id: user.into(), attributes, remove_attributes: vec![] })
            .await
            .unwrap();
        let mut e = ev(user, &format!("{user}-1"), "page_view", 1, 0.0);
        e.properties.insert("search".into(), format!("{user}-private-search"));
        d.record_events(pb::RecordEventsRequest { events: vec![e] }).await.unwrap();
        let r = d.decide(decide(user)).await.unwrap().into_inner();
        assert!(!r.degraded && !r.offers.is_empty(), "{r:?}");
        d.record_outcome(pb::RecordOutcomeRequest {
            decision_id: r.decision_id.clone(),
            user_id: user.into(),
            offer_id: r.offers[0].offer_id.clone(),
            outcome: pb::Outcome::Click as i32,
            ..Default::default()
        })
        .await
        .unwrap();
        decisions.insert(user, r.decision_id);
    }
    let mut c = redis.conn();
    let before = dump(&mut c);
    assert!(!holding(&before, "erin-gone").is_empty(), "the scan sees the user before");

    let deleted = p.delete_profile(pb::DeleteProfileRequest { user_id: "erin-gone".into() }).await.unwrap();
    assert!(deleted.into_inner().keys_deleted >= 5);

    let after = dump(&mut c);
    for needle in ["erin-gone", "erin.secret@example.com", "Atlantis", "erin-gone-private-search"] {
        assert_eq!(holding(&after, needle), Vec::<&str>::new(), "{needle:?} is still readable");
    }
    // The same scan finds the kept user's profile (in clear in their own profile hash).
    assert!(!holding(&after, "kim.kept@example.com").is_empty());
    assert!(!holding(&after, "Lemuria").is_empty());

    // Replay: the kept user's decision reads back whole; the erased one says so.
    let kept = srv.engine.find_decision(&decisions["kim-kept"]).await.unwrap().expect("kim's decision");
    // The record keeps the attributes the policy read (country: a segment rule), not the
    // e-mail address, which no rule or feature reads.
    assert_eq!(
        kept.state.attributes.get("country"),
        Some(&touchpoint::domain::profile::AttrValue::Str("Lemuria".into()))
    );
    assert_eq!(kept.state.attributes.get("email"), None);
    match srv.engine.find_decision(&decisions["erin-gone"]).await {
        Err(touchpoint::engine::Error::NotFound(m)) => assert!(m.contains("erased"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Training reads the journey log: the kept user's events only.
    let mut users = Vec::new();
    srv.engine.store().export_journey_log(&mut |e| users.push(e.user_id)).await.unwrap();
    assert_eq!(users, ["kim-kept"]);
    // Experiment results are aggregates: both users stay counted.
    let mut ex = pb::experiments_client::ExperimentsClient::new(srv.channel.clone());
    let results = ex
        .get_experiment_results(pb::GetExperimentResultsRequest { experiment_id: "erasure".into() })
        .await
        .unwrap()
        .into_inner();
    let exposed: u64 = results.variants.iter().map(|v| v.exposed_users).sum();
    assert_eq!(exposed, 2, "{results:?}");
}

fn decide_on(user: &str, channel: &str) -> pb::DecideRequest {
    pb::DecideRequest { user_id: user.into(), channel: channel.into(), limit: 3, explain: true, ..Default::default() }
}

/// SetConsent withdraws a channel: Decide on it offers nothing, every candidate dropped with
/// `consent_withdrawn`; other channels are unaffected; GetProfile shows it; granting again
/// brings the offers back. An unknown channel is INVALID_ARGUMENT naming `channel`.
#[tokio::test]
async fn consent_set_through_the_api_suppresses_only_that_channel() {
    let redis = RedisServer::start();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let (mut d, mut p) = (srv.decisions(), srv.profiles());
    // A user like cora gets e-mail offers (cora herself stays uncontacted: e-mail allows one
    // contact in three days).
    let like = d.decide(decide_on("cora-like", "email")).await.unwrap().into_inner();
    assert!(!like.offers.is_empty(), "{like:?}");

    let set = |granted| pb::SetConsentRequest { user_id: "cora".into(), channel: "email".into(), granted };
    let profile = p.set_consent(set(false)).await.unwrap().into_inner();
    assert!(profile.consent_withdrawn.contains_key("email"), "{profile:?}");
    let shown = p.get_profile(pb::GetProfileRequest { user_id: "cora".into() }).await.unwrap().into_inner();
    assert_eq!(shown.consent_withdrawn.keys().collect::<Vec<_>>(), ["email"]);

    let r = d.decide(decide_on("cora", "email")).await.unwrap().into_inner();
    assert!(r.offers.is_empty(), "{r:?}");
    assert_eq!(r.suppression_code, "consent_withdrawn");
    let on_channel: Vec<_> = r.explanation.iter().filter(|c| c.reason != "wrong channel").collect();
    assert!(!on_channel.is_empty());
    assert!(on_channel.iter().all(|c| !c.kept && c.reason == "consent withdrawn for email"), "{r:?}");
    let web = d.decide(decide_on("cora", "web")).await.unwrap().into_inner();
    assert!(!web.offers.is_empty() && web.suppression_code.is_empty(), "{web:?}");

    p.set_consent(set(true)).await.unwrap();
    let again = d.decide(decide_on("cora", "email")).await.unwrap().into_inner();
    assert!(!again.offers.is_empty(), "{again:?}");

    let bad = pb::SetConsentRequest { user_id: "cora".into(), channel: "fax".into(), granted: false };
    let s = p.set_consent(bad).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().starts_with("channel"), "{s:?}");
    let s = p
        .set_consent(pb::SetConsentRequest { user_id: String::new(), channel: "email".into(), granted: false })
        .await
        .unwrap_err();
    assert!(s.message().starts_with("user_id"), "{s:?}");
}

/// An `unsubscribe` event with a `channel` property withdraws consent like the API, and a later
/// `subscribe` grants it again; consent events without a valid channel are INVALID_ARGUMENT
/// naming `events[i].properties.channel`.
#[tokio::test]
async fn consent_set_by_events_suppresses_only_that_channel() {
    let redis = RedisServer::start();
    let srv = TestServer::with_store(redis_store(&redis.url(), false).await, example_config(&redis.url())).await;
    let mut d = srv.decisions();
    let consent = |id: &str, kind: &str, secs: i64, channel: Option<&str>| {
        let mut e = ev("evan", id, kind, secs, 0.0);
        e.properties = channel.map(|c| ("channel".to_string(), c.to_string())).into_iter().collect();
        e
    };
    d.record_events(pb::RecordEventsRequest { events: vec![consent("u1", "unsubscribe", 10, Some("email"))] })
        .await
        .unwrap();
    let r = d.decide(decide_on("evan", "email")).await.unwrap().into_inner();
    assert!(r.offers.is_empty(), "{r:?}");
    assert_eq!(r.suppression_code, "consent_withdrawn");
    let app = d.decide(decide_on("evan", "app")).await.unwrap().into_inner();
    assert!(!app.offers.is_empty(), "{app:?}");

    d.record_events(pb::RecordEventsRequest { events: vec![consent("s1", "subscribe", 20, Some("email"))] })
        .await
        .unwrap();
    assert!(!d.decide(decide_on("evan", "email")).await.unwrap().into_inner().offers.is_empty());

    for (i, channel) in [(0, None), (1, Some("fax"))] {
        let mut events = vec![ev("evan", "ok", "page_view", 30, 0.0)];
        events.insert(i, consent("bad", "unsubscribe", 30, channel));
        let s = d.record_events(pb::RecordEventsRequest { events }).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        assert!(s.message().starts_with(&format!("events[{i}].properties.channel")), "{s:?}");
    }
}

/// Two servers on one Redis: server A read a user (and holds the user's sealing key), server B
/// erases the user, then A writes for the user. A's old key is never stored again (the write
/// script refuses a "known" key the user no longer has; A takes a new one), so the entries
/// sealed before the erasure stay unreadable and the new ones are readable.
#[tokio::test]
async fn an_erased_key_is_never_stored_again_by_another_server() {
    use touchpoint::domain::contact::ContactGuard;
    use touchpoint::store::{UserWrite, new_version};
    let redis = RedisServer::start();
    let (a, b) = (redis_store(&redis.url(), false).await, redis_store(&redis.url(), false).await);
    let state = touchpoint::domain::profile::UserState { stage: Some("awareness".into()), ..Default::default() };
    let old = touchpoint::domain::event::Event {
        event_id: "z1".into(),
        user_id: "zed".into(),
        event_type: "page_view".into(),
        timestamp: 1,
        channel: "web".into(),
        offer_id: String::new(),
        value: 0.0,
        properties: [("note".to_string(), "zed-before".to_string())].into(),
    };
    let write = |events| UserWrite {
        state: &state,
        before: None,
        new_transitions: &[],
        events,
        now: 10,
        new_version: new_version(),
        attribution: Default::default(),
        counts: &[],
    };
    assert!(a.commit_user("zed", 0, write(std::slice::from_ref(&old))).await.unwrap());
    let loaded = a.load_user("zed", &[], Some(0)).await.unwrap();
    assert!(b.delete_user("zed").await.unwrap() >= 2);

    let rec = touchpoint::domain::decision::DecisionRecord {
        at: 20,
        limit: 1,
        seed: 1,
        state: loaded.state,
        ..crate::store_suite::decision("zed", "dz", &[])
    };
    assert!(a.log_decision(&rec, &ContactGuard::default(), None).await.unwrap().logged());
    let mut events = Vec::new();
    a.export_journey_log(&mut |e| events.push(e.event_id)).await.unwrap();
    assert_eq!(events, Vec::<String>::new(), "the event sealed before the erasure stays unreadable");
    let mut entries = Vec::new();
    b.export_decision_log(&mut |e| entries.push(e)).await.unwrap();
    assert!(
        matches!(entries.as_slice(), [touchpoint::store::DecisionLogEntry::Decision(d)] if d.decision_id == "dz"),
        "{entries:?}"
    );
    let mut c = redis.conn();
    assert!(holding(&dump(&mut c), "zed-before").is_empty());
}
