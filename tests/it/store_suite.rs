//! The store conformance suite: one set of checks run against the in-memory store, a real
//! redis-server and a real 3-master Redis Cluster.
use crate::harness::{RedisCluster, RedisServer, redis_store, retention};
use std::sync::Arc;
use touchpoint::config::Config;
use touchpoint::domain::decision::{Chosen, DecisionRecord, OutcomeKind, OutcomeRecord};
use touchpoint::domain::event::Event;
use touchpoint::domain::profile::{AttrValue, UserState};
use touchpoint::engine::Engine;
use touchpoint::store::memory::MemoryStore;
use touchpoint::store::{DecisionLogEntry, OutcomeLink, Store, UserWrite};

fn event(user: &str, id: &str, kind: &str, ts: i64) -> Event {
    Event {
        event_id: id.into(),
        user_id: user.into(),
        event_type: kind.into(),
        timestamp: ts,
        channel: "web".into(),
        offer_id: String::new(),
        value: if kind == "purchase" { 12.5 } else { 0.0 },
        properties: [("sku".to_string(), "A-1".to_string())].into(),
    }
}

fn decision(user: &str, id: &str, offers: &[&str]) -> DecisionRecord {
    DecisionRecord {
        decision_id: id.into(),
        user_id: user.into(),
        at: 1_000,
        channel: "web".into(),
        placement: String::new(),
        stage: "awareness".into(),
        lapsed: false,
        config_version: "v".into(),
        degraded: false,
        chosen: offers
            .iter()
            .map(|o| Chosen { offer_id: o.to_string(), score: 1.0, selection_probability: 1.0 })
            .collect(),
        candidates: vec![],
    }
}

fn outcome(user: &str, decision: &str, offer: &str) -> OutcomeRecord {
    OutcomeRecord {
        decision_id: decision.into(),
        user_id: user.into(),
        offer_id: offer.into(),
        outcome: OutcomeKind::Click,
        value: 0.0,
        at: 2_000,
    }
}

/// Every store passes exactly these checks.
pub async fn store_suite(s: Arc<dyn Store>) {
    s.ping().await.unwrap();
    let journey = Config::defaults().journey;

    // An unknown user reads as empty, version 0.
    let fresh = s.load_user("alice", &["e1"]).await.unwrap();
    assert_eq!((fresh.version, fresh.seen.as_slice()), (0, &[false][..]));
    assert!(fresh.state.is_empty());

    // A commit at the expected version applies state, history, dedup markers and the log.
    let evs = [event("alice", "e1", "page_view", 10), event("alice", "e2", "purchase", 20)];
    let mut state = fresh.state.clone();
    state.attributes.insert("age".into(), AttrValue::Num(33.0));
    state.attributes.insert("vip".into(), AttrValue::Bool(true));
    state.attributes.insert("zip".into(), AttrValue::Str("01234".into()));
    let transitions = journey.apply_events(&mut state, &evs.iter().collect::<Vec<_>>());
    let w = UserWrite { state: &state, new_transitions: &transitions, events: &evs, now: 100 };
    assert!(s.commit_user("alice", 0, w).await.unwrap());
    let loaded = s.load_user("alice", &["e1", "e2", "e3"]).await.unwrap();
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.state, state, "state round-trips exactly");
    assert_eq!(loaded.seen, vec![true, true, false]);

    // A stale version is refused and changes nothing.
    let mut other = UserState::default();
    other.stage = Some("advocacy".into());
    let stale = UserWrite { state: &other, new_transitions: &[], events: &[], now: 101 };
    assert!(!s.commit_user("alice", 0, stale).await.unwrap());
    assert_eq!(s.load_user("alice", &[]).await.unwrap().state, state);

    // Dedup memory is bounded per user: the oldest ids go first (max 5 in the suite's retention).
    let more: Vec<Event> = (3..=7).map(|i| event("alice", &format!("e{i}"), "page_view", 30 + i)).collect();
    let w = UserWrite { state: &state, new_transitions: &[], events: &more, now: 200 };
    assert!(s.commit_user("alice", 1, w).await.unwrap());
    let seen = s.load_user("alice", &["e1", "e2", "e3", "e7"]).await.unwrap().seen;
    assert_eq!(seen, vec![false, false, true, true]);

    // The journey log holds every applied event, in order for the user.
    let mut logged = Vec::new();
    s.export_journey_log(&mut |e| logged.push(e)).await.unwrap();
    let alice: Vec<&Event> = logged.iter().filter(|e| e.user_id == "alice").collect();
    assert_eq!(alice.len(), 7);
    assert_eq!(*alice[0], evs[0], "events round-trip through the log");
    assert_eq!(alice[6].event_id, "e7");

    // Decisions are logged and remembered; outcomes link to them.
    for i in 1..=4 {
        s.log_decision(&decision("alice", &format!("d{i}"), &["o1", "o2"])).await.unwrap();
    }
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o2")).await.unwrap(), OutcomeLink::Linked);
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o9")).await.unwrap(), OutcomeLink::OfferNotInDecision);
    assert_eq!(
        s.log_outcome(&outcome("alice", "d1", "o1")).await.unwrap(),
        OutcomeLink::UnknownDecision,
        "only 3 recent kept"
    );
    assert_eq!(s.log_outcome(&outcome("bob", "d4", "o1")).await.unwrap(), OutcomeLink::UnknownDecision);
    let mut entries = Vec::new();
    s.export_decision_log(&mut |e| entries.push(e)).await.unwrap();
    let decisions =
        entries.iter().filter(|e| matches!(e, DecisionLogEntry::Decision(d) if d.user_id == "alice")).count();
    let outcomes: Vec<&DecisionLogEntry> =
        entries.iter().filter(|e| matches!(e, DecisionLogEntry::Outcome(_))).collect();
    assert_eq!(decisions, 4);
    assert_eq!(outcomes, vec![&DecisionLogEntry::Outcome(outcome("alice", "d4", "o2"))]);

    // Delete erases every record of the user: profile, history, dedup, decisions + index.
    s.commit_user("bob", 0, UserWrite { state: &state, new_transitions: &[], events: &[], now: 1 }).await.unwrap();
    assert_eq!(s.delete_user("alice").await.unwrap(), 5);
    assert_eq!(s.delete_user("alice").await.unwrap(), 0);
    let gone = s.load_user("alice", &["e7"]).await.unwrap();
    assert_eq!((gone.version, gone.seen[0]), (0, false));
    assert!(gone.state.is_empty());
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o2")).await.unwrap(), OutcomeLink::UnknownDecision);
    assert_eq!(s.load_user("bob", &[]).await.unwrap().version, 1, "other users untouched");

    // Optimistic writes under contention: concurrent writers for one user lose nothing.
    let engine = Arc::new(Engine::new(s.clone(), Config::defaults(), None, vec![]));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let engine = engine.clone();
        tasks.spawn(async move {
            engine.record_events(vec![event("carol", &format!("c{i}"), "page_view", i)]).await.unwrap()
        });
    }
    let mut accepted = 0;
    while let Some(r) = tasks.join_next().await {
        accepted += r.unwrap().accepted;
    }
    assert_eq!(accepted, 40);
    let carol = s.load_user("carol", &[]).await.unwrap();
    assert_eq!(carol.state.aggregates.count("page_view"), 40);
    assert_eq!(carol.version, 40);
}

#[tokio::test]
async fn memory_store_conforms() {
    store_suite(Arc::new(MemoryStore::new(retention()))).await;
}

#[tokio::test]
async fn redis_store_conforms() {
    let redis = RedisServer::start();
    store_suite(redis_store(&redis.url(), false).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_conforms() {
    let cluster = RedisCluster::start();
    store_suite(redis_store(&cluster.url(), true).await).await;
}
