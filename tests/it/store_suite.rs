//! The store conformance suite: one set of checks run against the in-memory store, a real
//! redis-server and a real 3-master Redis Cluster.
use crate::harness::{RedisCluster, RedisServer, redis_store, retention};
use std::sync::Arc;
use touchpoint::config::Config;
use touchpoint::domain::contact::{Contact, ContactGuard, ContactState};
use touchpoint::domain::decision::{Chosen, DecisionRecord, OutcomeKind, OutcomeRecord};
use touchpoint::domain::event::Event;
use touchpoint::domain::experiment::{Happening, VariantCounters};
use touchpoint::domain::profile::{AttrValue, UserState};
use touchpoint::engine::Engine;
use touchpoint::store::memory::MemoryStore;
use touchpoint::store::{Attribution, DecisionLogEntry, OutcomeLink, Store, UserWrite, new_version};

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
        limit: 3,
        context: Default::default(),
        stage: "awareness".into(),
        lapsed: false,
        segments: vec![],
        config_version: "v".into(),
        model_versions: Default::default(),
        features: Default::default(),
        scores: Default::default(),
        degraded: false,
        seed: 7,
        chosen: offers
            .iter()
            .map(|o| Chosen { offer_id: o.to_string(), score: 1.0, selection_probability: 1.0 })
            .collect(),
        candidates: vec![],
        suppression: None,
        state: Default::default(),
        contacts: Default::default(),
        assignments: Default::default(),
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
    let journey = Config::defaults().policy.journey.clone();

    // An unknown user reads as empty, version 0.
    let fresh = s.load_user("alice", &["e1"], None).await.unwrap();
    assert_eq!((fresh.version, fresh.seen.as_slice()), (0, &[false][..]));
    assert!(fresh.state.is_empty());

    // A commit at the expected version applies state, history, dedup markers and the log.
    let evs = [event("alice", "e1", "page_view", 10), event("alice", "e2", "purchase", 20)];
    let mut state = fresh.state.clone();
    state.attributes.insert("age".into(), AttrValue::Num(33.0));
    state.attributes.insert("vip".into(), AttrValue::Bool(true));
    state.attributes.insert("zip".into(), AttrValue::Str("01234".into()));
    let transitions = journey.apply_events(&mut state, &evs.iter().collect::<Vec<_>>());
    assert_eq!(transitions.len(), 2);
    let v1 = new_version();
    let w = UserWrite {
        state: &state,
        new_transitions: &transitions,
        events: &evs,
        now: 100,
        new_version: v1,
        attribution: Default::default(),
    };
    assert!(s.commit_user("alice", 0, w).await.unwrap());
    let loaded = s.load_user("alice", &["e1", "e2", "e3"], None).await.unwrap();
    assert_eq!(loaded.version, v1);
    assert_eq!(loaded.state, state, "state round-trips exactly");
    assert_eq!(loaded.seen, vec![true, true, false]);

    // A stale version is refused and changes nothing: no state, no dedup mark, no log entry.
    let other = UserState { stage: Some("advocacy".into()), ..Default::default() };
    let sneaky = [event("alice", "stale-1", "referral", 15)];
    let stale = UserWrite {
        state: &other,
        new_transitions: &[],
        events: &sneaky,
        now: 101,
        new_version: new_version(),
        attribution: Default::default(),
    };
    assert!(!s.commit_user("alice", 0, stale).await.unwrap());
    let after = s.load_user("alice", &["stale-1"], None).await.unwrap();
    assert_eq!((after.state, after.seen, after.version), (state.clone(), vec![false], v1));

    // Stage history is append-only: the store appends `new_transitions`, whatever the
    // state's own list says.
    let mut rewritten = state.clone();
    rewritten.transitions.clear();
    let more: Vec<Event> = (3..=7).map(|i| event("alice", &format!("e{i}"), "page_view", 30 + i)).collect();
    let w = UserWrite {
        state: &rewritten,
        new_transitions: &[],
        events: &more,
        now: 200,
        new_version: new_version(),
        attribution: Default::default(),
    };
    assert!(s.commit_user("alice", v1, w).await.unwrap());
    assert_eq!(s.load_user("alice", &[], None).await.unwrap().state.transitions, state.transitions);
    // Dedup memory is bounded per user: the oldest ids go first (max 5 in the suite's retention).
    let seen = s.load_user("alice", &["e1", "e2", "e3", "e7"], None).await.unwrap().seen;
    assert_eq!(seen, vec![false, false, true, true]);

    // The journey log holds every applied event, in order for the user.
    let mut logged = Vec::new();
    s.export_journey_log(&mut |e| logged.push(e)).await.unwrap();
    let alice: Vec<&Event> = logged.iter().filter(|e| e.user_id == "alice").collect();
    assert_eq!(alice.len(), 7, "the refused write logged nothing");
    assert_eq!(*alice[0], evs[0], "events round-trip through the log");
    assert_eq!(alice[6].event_id, "e7");

    // Decisions are logged and remembered; outcomes link to them.
    for i in 1..=4 {
        assert!(
            s.log_decision(&decision("alice", &format!("d{i}"), &["o1", "o2"]), &ContactGuard::default())
                .await
                .unwrap()
        );
    }
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o2"), &[]).await.unwrap(), OutcomeLink::Linked);
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o2"), &[]).await.unwrap(), OutcomeLink::Duplicate, "a retry");
    let mut conversion = outcome("alice", "d4", "o2");
    conversion.outcome = OutcomeKind::Conversion;
    assert_eq!(s.log_outcome(&conversion, &[]).await.unwrap(), OutcomeLink::Linked, "another kind is another outcome");
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o9"), &[]).await.unwrap(), OutcomeLink::OfferNotInDecision);
    assert_eq!(
        s.log_outcome(&outcome("alice", "d1", "o1"), &[]).await.unwrap(),
        OutcomeLink::UnknownDecision,
        "only 3 recent kept"
    );
    assert_eq!(s.log_outcome(&outcome("bob", "d4", "o1"), &[]).await.unwrap(), OutcomeLink::UnknownDecision);
    let mut entries = Vec::new();
    s.export_decision_log(&mut |e| entries.push(e)).await.unwrap();
    let decisions =
        entries.iter().filter(|e| matches!(e, DecisionLogEntry::Decision(d) if d.user_id == "alice")).count();
    let outcomes: Vec<&DecisionLogEntry> =
        entries.iter().filter(|e| matches!(e, DecisionLogEntry::Outcome(_))).collect();
    assert_eq!(decisions, 4);
    assert_eq!(
        outcomes,
        vec![&DecisionLogEntry::Outcome(outcome("alice", "d4", "o2")), &DecisionLogEntry::Outcome(conversion.clone())]
    );

    // Contacts: a decision's write re-checks its guard atomically and records its offers.
    let guard = |channel: &str, offers: &[&str], limits: Vec<(u32, i64)>, caps: Vec<(String, u32, i64)>| ContactGuard {
        channel: channel.into(),
        channel_limits: limits,
        offer_caps: caps,
        offers: offers.iter().map(|o| o.to_string()).collect(),
        keep_since: 0,
    };
    let at = |mut d: DecisionRecord, t: i64| {
        d.at = t;
        d
    };
    assert!(
        s.log_decision(
            &at(decision("dave", "d5", &["o1", "o2"]), 1_000),
            &guard("email", &["o1", "o2"], vec![(1, 0)], vec![])
        )
        .await
        .unwrap()
    );
    let refused = at(decision("dave", "d6", &["o3"]), 2_000);
    assert!(
        !s.log_decision(&refused, &guard("email", &["o3"], vec![(1, 0)], vec![])).await.unwrap(),
        "1 e-mail allowed"
    );
    assert_eq!(
        s.log_outcome(&outcome("dave", "d6", "o3"), &[]).await.unwrap(),
        OutcomeLink::UnknownDecision,
        "a refused decision is not logged"
    );
    assert!(
        s.log_decision(&refused, &guard("email", &["o3"], vec![(1, 1_500)], vec![])).await.unwrap(),
        "outside the window"
    );
    let capped = guard("web", &["o1"], vec![], vec![("o1".into(), 1, 0)]);
    assert!(!s.log_decision(&at(decision("dave", "d7", &["o1"]), 3_000), &capped).await.unwrap(), "o1 capped at 1");
    let web = guard("web", &["o4"], vec![(1, 0)], vec![("o4".into(), 1, 0)]);
    assert!(
        s.log_decision(&at(decision("dave", "d8", &["o4"]), 3_000), &web).await.unwrap(),
        "other channel, other offer"
    );
    let contact = |t: i64, d: &str, ch: &str, o: &str| Contact {
        at: t,
        decision_id: d.into(),
        channel: ch.into(),
        offer_id: o.into(),
    };
    let mut contacts = s.load_user("dave", &[], Some(0)).await.unwrap().contacts.contacts;
    contacts.sort_by(|a, b| (a.at, &a.offer_id).cmp(&(b.at, &b.offer_id)));
    assert_eq!(
        contacts,
        vec![
            contact(1_000, "d5", "email", "o1"),
            contact(1_000, "d5", "email", "o2"),
            contact(2_000, "d6", "email", "o3"),
            contact(3_000, "d8", "web", "o4")
        ]
    );
    assert_eq!(
        s.load_user("dave", &[], Some(2_500)).await.unwrap().contacts.contacts,
        vec![contact(3_000, "d8", "web", "o4")]
    );
    assert_eq!(s.load_user("dave", &[], None).await.unwrap().contacts, ContactState::default(), "not asked, not read");
    // Dismiss and accept mark the offer for cooldowns (the latest time wins).
    let mut dismiss = outcome("dave", "d5", "o1");
    dismiss.outcome = OutcomeKind::Dismiss;
    dismiss.at = 5_000;
    assert_eq!(s.log_outcome(&dismiss, &[]).await.unwrap(), OutcomeLink::Linked);
    let mut accept = outcome("dave", "d8", "o4");
    accept.outcome = OutcomeKind::Accept;
    accept.at = 6_000;
    assert_eq!(s.log_outcome(&accept, &[]).await.unwrap(), OutcomeLink::Linked);
    let marks = s.load_user("dave", &[], Some(0)).await.unwrap().contacts;
    assert_eq!(marks.dismissed, [("o1".to_string(), 5_000)].into());
    assert_eq!(marks.accepted, [("o4".to_string(), 6_000)].into());
    assert_eq!(s.delete_user("dave").await.unwrap(), 4, "decisions, decision index, contacts, marks");
    assert_eq!(s.load_user("dave", &[], Some(0)).await.unwrap().contacts, ContactState::default());

    // Experiments: a logged decision records the first exposure per experiment; visits and
    // conversions inside the attribution window count once per user; revenue adds up.
    let windows = vec![("exp".to_string(), 10_000i64)];
    let mut d9 = at(decision("erin", "d9", &["o1"]), 1_000);
    d9.assignments.insert("exp".into(), "b".into());
    assert!(s.log_decision(&d9, &ContactGuard::default()).await.unwrap());
    let mut d10 = at(decision("erin", "d10", &["o1"]), 2_000);
    d10.assignments.insert("exp".into(), "b".into());
    assert!(s.log_decision(&d10, &ContactGuard::default()).await.unwrap());
    let mut click = outcome("erin", "d9", "o1");
    click.at = 3_000;
    assert_eq!(s.log_outcome(&click, &windows).await.unwrap(), OutcomeLink::Linked);
    let mut conv = outcome("erin", "d10", "o1");
    conv.outcome = OutcomeKind::Conversion;
    conv.at = 4_000;
    conv.value = 3.0;
    assert_eq!(s.log_outcome(&conv, &windows).await.unwrap(), OutcomeLink::Linked);
    let purchases = [
        Happening::Conversion { at: 5_000, value: 2.0 },
        Happening::Visit { at: 5_000 },
        Happening::Conversion { at: 99_000, value: 50.0 }, // outside the window
    ];
    let erin = s.load_user("erin", &[], None).await.unwrap();
    let w = UserWrite {
        state: &erin.state,
        new_transitions: &[],
        events: &[],
        now: 5_000,
        new_version: new_version(),
        attribution: Attribution { windows: &windows, happenings: &purchases },
    };
    assert!(s.commit_user("erin", erin.version, w).await.unwrap());
    let counters = s.experiment_counters("exp").await.unwrap();
    let want = VariantCounters { exposed: 1, decisions: 2, visitors: 1, converters: 1, revenue: 5.0, revenue_sq: 25.0 };
    assert_eq!(counters, [("b".to_string(), want)].into());
    assert!(s.experiment_counters("other").await.unwrap().is_empty());
    assert_eq!(s.delete_user("erin").await.unwrap(), 4, "profile, decisions, decision index, exposures");
    assert_eq!(s.experiment_counters("exp").await.unwrap()["b"], want, "aggregates stay after an erasure");

    // Delete erases every record of the user: profile, history, dedup, decisions + index.
    let vb = new_version();
    let bob = UserWrite {
        state: &state,
        new_transitions: &[],
        events: &[],
        now: 1,
        new_version: vb,
        attribution: Default::default(),
    };
    assert!(s.commit_user("bob", 0, bob).await.unwrap());
    assert_eq!(
        s.load_user("bob", &[], None).await.unwrap().state.transitions,
        vec![],
        "no history was appended for bob"
    );
    assert_eq!(s.delete_user("alice").await.unwrap(), 5);
    assert_eq!(s.delete_user("alice").await.unwrap(), 0);
    let gone = s.load_user("alice", &["e7"], None).await.unwrap();
    assert_eq!((gone.version, gone.seen[0]), (0, false));
    assert!(gone.state.is_empty());
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o2"), &[]).await.unwrap(), OutcomeLink::UnknownDecision);
    assert_eq!(s.load_user("bob", &[], None).await.unwrap().version, vb, "other users untouched");
    // After a delete, a writer holding the old version cannot resurrect the user (no ABA).
    assert_eq!(s.delete_user("bob").await.unwrap(), 1);
    let fresh = UserWrite {
        state: &other,
        new_transitions: &[],
        events: &[],
        now: 2,
        new_version: new_version(),
        attribution: Default::default(),
    };
    assert!(s.commit_user("bob", 0, fresh).await.unwrap());
    let late = UserWrite {
        state: &state,
        new_transitions: &[],
        events: &[],
        now: 3,
        new_version: new_version(),
        attribution: Default::default(),
    };
    assert!(!s.commit_user("bob", vb, late).await.unwrap());

    // Optimistic writes under contention: two engines (as two servers would) race on one
    // user; the version check must keep every event exactly once.
    let config = Config::defaults();
    let engines = [
        Arc::new(Engine::new(s.clone(), config.clone(), None, vec![])),
        Arc::new(Engine::new(s.clone(), config, None, vec![])),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let engine = engines[i % 2].clone();
        tasks.spawn(async move {
            engine.record_events(vec![event("carol", &format!("c{i}"), "page_view", i as i64)]).await.unwrap()
        });
    }
    let mut accepted = 0;
    while let Some(r) = tasks.join_next().await {
        accepted += r.unwrap().accepted;
    }
    assert_eq!(accepted, 40);
    let carol = s.load_user("carol", &[], None).await.unwrap();
    assert_eq!(carol.state.aggregates.count("page_view"), 40);
    let mut carols = 0;
    s.export_journey_log(&mut |e| carols += usize::from(e.user_id == "carol")).await.unwrap();
    assert_eq!(carols, 40, "each event logged once");
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
