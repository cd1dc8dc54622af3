//! The store conformance suite: one named test per behaviour, each run against the in-memory
//! store, a real redis-server and a real 3-master Redis Cluster (`conformance!` generates
//! `<behaviour>::memory`, `<behaviour>::redis` and `<behaviour>::cluster`). The Redis tests
//! share one server and one cluster per test binary, each test under its own key prefix.
use crate::harness::{
    RedisCluster, free_ports, redis_config, retention, shared_cluster, shared_redis, shared_redis_store,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use touchpoint::config::Config;
use touchpoint::domain::analytics::{self, Days};
use touchpoint::domain::contact::{Contact, ContactGuard, ContactState};
use touchpoint::domain::decision::{Chosen, DecisionRecord};
use touchpoint::domain::event::Event;
use touchpoint::domain::experiment::{Happening, VariantCounters};
use touchpoint::domain::funnel;
use touchpoint::domain::outcome::{OutcomeKind, OutcomeRecord};
use touchpoint::domain::profile::{AttrValue, Transition, UserState};
use touchpoint::engine::Engine;
use touchpoint::store::redis::RedisStore;
use touchpoint::store::{
    Attribution, DecisionLogEntry, DecisionToWrite, DecisionWrite, OutcomeLink, Store, StoreError, UserWrite,
    new_version,
};

/// For each behaviour, one test per store: `memory`, `redis` (single node) and `cluster`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(std::sync::Arc::new(touchpoint::store::memory::MemoryStore::new(
                    crate::harness::retention(),
                )))
                .await;
            }

            #[tokio::test]
            async fn redis() {
                let store = crate::harness::shared_redis_store(false, concat!("tp-", stringify!($name))).await;
                super::$name(std::sync::Arc::new(store)).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                let store = crate::harness::shared_redis_store(true, concat!("tp-", stringify!($name))).await;
                super::$name(std::sync::Arc::new(store)).await;
            }
        }
    )*};
}

conformance!(
    unknown_user_reads_empty,
    commit_round_trips_state,
    commit_of_changes_round_trips_state,
    load_without_history_is_the_load_less_the_history,
    cas_commit_refuses_stale_writes,
    history_is_append_only,
    dedup_bounds,
    log_round_trip,
    log_export_pages_through_long_logs,
    outcome_idempotency,
    contact_guard,
    cooldown_marks,
    exposures_and_attribution,
    delete_count,
    delete_has_no_aba,
    erasure_leaves_the_logs_unreadable,
    consent_round_trips,
    racing_engines,
    model_registry_publish_and_current,
    model_registry_repoint_same_version_is_a_no_op,
    model_registry_rollback,
    model_registry_history_order,
    funnel_and_offer_counters,
    group_writes_are_each_decision_in_order,
    group_reads_are_each_users_read,
);

type S = Arc<dyn Store>;

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

pub(crate) fn decision(user: &str, id: &str, offers: &[&str]) -> DecisionRecord {
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

/// A write of `state` with nothing to attribute, under a fresh version.
fn write<'a>(state: &'a UserState, transitions: &'a [Transition], events: &'a [Event], now: i64) -> UserWrite<'a> {
    UserWrite {
        state,
        before: None,
        new_transitions: transitions,
        events,
        now,
        new_version: new_version(),
        attribution: Default::default(),
        counts: &[],
    }
}

/// Alice's first commit: two events that move her through two stages, and typed attributes.
/// Returns her state, the events and her version.
async fn first_commit(s: &S) -> (UserState, [Event; 2], u64) {
    let journey = Config::defaults().policy.journey.clone();
    let evs = [event("alice", "e1", "page_view", 10), event("alice", "e2", "purchase", 20)];
    let mut state = s.load_user("alice", &[], None).await.unwrap().state;
    state.attributes.insert("age".into(), AttrValue::Num(33.0));
    state.attributes.insert("vip".into(), AttrValue::Bool(true));
    state.attributes.insert("zip".into(), AttrValue::Str("01234".into()));
    let transitions = journey.apply_events(&mut state, &evs.iter().collect::<Vec<_>>());
    assert_eq!(transitions.len(), 2);
    let w = write(&state, &transitions, &evs, 100);
    let version = w.new_version;
    assert!(s.commit_user("alice", 0, w).await.unwrap());
    (state, evs, version)
}

/// Five more page views for alice (e3..e7) at store time 200, on top of `first_commit`.
async fn more_events(s: &S, state: &UserState, version: u64) -> Vec<Event> {
    let mut rewritten = state.clone();
    rewritten.transitions.clear();
    let more: Vec<Event> = (3..=7).map(|i| event("alice", &format!("e{i}"), "page_view", 30 + i)).collect();
    assert!(s.commit_user("alice", version, write(&rewritten, &[], &more, 200)).await.unwrap());
    more
}

async fn journey_log(s: &S) -> Vec<Event> {
    let mut logged = Vec::new();
    s.export_journey_log(&mut |e| logged.push(e)).await.unwrap();
    logged
}

fn at(mut d: DecisionRecord, t: i64) -> DecisionRecord {
    d.at = t;
    d
}

fn guard(channel: &str, offers: &[&str], limits: Vec<(u32, i64)>, caps: Vec<(String, u32, i64)>) -> ContactGuard {
    ContactGuard {
        channel: channel.into(),
        channel_limits: limits,
        offer_caps: caps,
        offers: offers.iter().map(|o| o.to_string()).collect(),
        keep_since: 0,
    }
}

fn contact(t: i64, d: &str, ch: &str, o: &str) -> Contact {
    Contact { at: t, decision_id: d.into(), channel: ch.into(), offer_id: o.into() }
}

fn with_outcome(mut o: OutcomeRecord, kind: OutcomeKind, t: i64) -> OutcomeRecord {
    o.outcome = kind;
    o.at = t;
    o
}

/// An unknown user reads as empty, version 0, nothing seen.
async fn unknown_user_reads_empty(s: S) {
    s.ping().await.unwrap();
    let fresh = s.load_user("alice", &["e1"], Some(0)).await.unwrap();
    assert_eq!((fresh.version, fresh.seen.as_slice()), (0, &[false][..]));
    assert!(fresh.state.is_empty());
    assert_eq!(fresh.contacts, ContactState::default());
}

/// A commit at the expected version applies state, history and dedup markers.
async fn commit_round_trips_state(s: S) {
    let (state, _, v1) = first_commit(&s).await;
    let loaded = s.load_user("alice", &["e1", "e2", "e3"], None).await.unwrap();
    assert_eq!(loaded.version, v1);
    assert_eq!(loaded.state, state, "state round-trips exactly");
    assert_eq!(loaded.seen, vec![true, true, false]);
}

/// A write that names the state it was derived from (`UserWrite::before`) stores exactly the
/// new state: changed and added fields, and removed ones (an attribute, the stage), are all
/// applied, whatever the store writes.
async fn commit_of_changes_round_trips_state(s: S) {
    let (_, _, v1) = first_commit(&s).await;
    let loaded = s.load_user("alice", &[], None).await.unwrap();
    let mut after = loaded.state.clone();
    after.attributes.remove("vip");
    after.attributes.insert("age".into(), AttrValue::Num(34.5));
    after.attributes.insert("tier".into(), AttrValue::Str("gold \"quoted\"".into()));
    after.aggregates.event_counts.insert("page_view".into(), 9);
    after.aggregates.last_purchase = None;
    after.stage = None;
    after.stage_since = None;
    let w = UserWrite { before: Some(&loaded.state), ..write(&after, &[], &[], 300) };
    let v2 = w.new_version;
    assert!(s.commit_user("alice", v1, w).await.unwrap());
    let reloaded = s.load_user("alice", &[], None).await.unwrap();
    assert_eq!((reloaded.version, reloaded.state), (v2, after), "the changes round-trip exactly");
}

/// The read for deciding and recording events is the full read without the stage history:
/// same version, profile, stage, dedup flags and contacts.
async fn load_without_history_is_the_load_less_the_history(s: S) {
    let (state, _, v1) = first_commit(&s).await;
    let full = s.load_user("alice", &["e1", "zz"], Some(0)).await.unwrap();
    let lean = s.load_user_without_history("alice", &["e1", "zz"], Some(0)).await.unwrap();
    assert_eq!(full.state.transitions.len(), 2);
    assert!(lean.state.transitions.is_empty());
    assert_eq!(lean.state, UserState { transitions: vec![], ..state });
    assert_eq!((lean.version, &lean.seen, &lean.contacts), (v1, &full.seen, &full.contacts));
    assert_eq!(lean.seen, [true, false]);
}

/// A stale version is refused and changes nothing: no state, no dedup mark, no log entry.
async fn cas_commit_refuses_stale_writes(s: S) {
    let (state, _, v1) = first_commit(&s).await;
    let other = UserState { stage: Some("advocacy".into()), ..Default::default() };
    let sneaky = [event("alice", "stale-1", "referral", 15)];
    assert!(!s.commit_user("alice", 0, write(&other, &[], &sneaky, 101)).await.unwrap());
    let after = s.load_user("alice", &["stale-1"], None).await.unwrap();
    assert_eq!((after.state, after.seen, after.version), (state, vec![false], v1));
    let ids: Vec<String> = journey_log(&s).await.into_iter().map(|e| e.event_id).collect();
    assert_eq!(ids, ["e1", "e2"], "the refused write logged nothing");
}

/// Stage history is append-only: the store appends `new_transitions`, whatever the state's
/// own list says.
async fn history_is_append_only(s: S) {
    let (state, _, v1) = first_commit(&s).await;
    more_events(&s, &state, v1).await;
    assert_eq!(s.load_user("alice", &[], None).await.unwrap().state.transitions, state.transitions);
    assert_eq!(state.transitions.len(), 2);
}

/// Dedup memory is bounded per user: the oldest ids go first (max 5 in the suite's
/// retention), and ids older than the dedup window are forgotten.
async fn dedup_bounds(s: S) {
    let (state, _, v1) = first_commit(&s).await;
    more_events(&s, &state, v1).await;
    let loaded = s.load_user("alice", &["e1", "e2", "e3", "e7"], None).await.unwrap();
    assert_eq!(loaded.seen, vec![false, false, true, true]);
    let window = retention().dedup_window_ms;
    let late = [event("alice", "e8", "page_view", 50)];
    assert!(s.commit_user("alice", loaded.version, write(&state, &[], &late, 201 + window)).await.unwrap());
    let seen = s.load_user("alice", &["e3", "e7", "e8"], None).await.unwrap().seen;
    assert_eq!(seen, vec![false, false, true], "ids stored before the window are forgotten");
}

/// The journey log holds every applied event, in order for the user, field for field.
async fn log_round_trip(s: S) {
    let (state, evs, v1) = first_commit(&s).await;
    let more = more_events(&s, &state, v1).await;
    let logged = journey_log(&s).await;
    let alice: Vec<&Event> = logged.iter().filter(|e| e.user_id == "alice").collect();
    assert_eq!(alice.len(), 7);
    assert_eq!(*alice[0], evs[0], "events round-trip through the log");
    assert_eq!(*alice[1], evs[1], "a value and properties round-trip");
    assert_eq!(*alice[6], more[4]);
    let ids: Vec<&str> = alice.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "e3", "e4", "e5", "e6", "e7"]);
}

/// An export reads logs longer than one page (the Redis store pages by 1,000), in order.
async fn log_export_pages_through_long_logs(s: S) {
    let mut version = 0;
    for batch in 0..5 {
        let events: Vec<Event> =
            (0..500).map(|i| event("paula", &format!("p{}", batch * 500 + i), "page_view", i)).collect();
        let state = UserState::default();
        let w = write(&state, &[], &events, 1_000 + batch);
        assert!(s.commit_user("paula", version, w).await.unwrap());
        version = w.new_version;
    }
    let logged = journey_log(&s).await;
    let ids: Vec<&str> = logged.iter().filter(|e| e.user_id == "paula").map(|e| e.event_id.as_str()).collect();
    let want: Vec<String> = (0..2_500).map(|i| format!("p{i}")).collect();
    assert_eq!(ids, want);
}

/// Decisions are logged and remembered; an outcome links to a recent decision once per
/// (offer, kind), and only linked outcomes reach the decision log.
async fn outcome_idempotency(s: S) {
    for i in 1..=4 {
        let d = decision("alice", &format!("d{i}"), &["o1", "o2"]);
        assert!(s.log_decision(&d, &ContactGuard::default(), None).await.unwrap().logged());
    }
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o2"), &[]).await.unwrap(), OutcomeLink::Linked);
    assert_eq!(s.log_outcome(&outcome("alice", "d4", "o2"), &[]).await.unwrap(), OutcomeLink::Duplicate, "a retry");
    let conversion = with_outcome(outcome("alice", "d4", "o2"), OutcomeKind::Conversion, 2_000);
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
        vec![&DecisionLogEntry::Outcome(outcome("alice", "d4", "o2")), &DecisionLogEntry::Outcome(conversion)]
    );
}

/// A decision's write re-checks its guard atomically and records its offers as contacts.
async fn contact_guard(s: S) {
    assert!(
        s.log_decision(
            &at(decision("dave", "d5", &["o1", "o2"]), 1_000),
            &guard("email", &["o1", "o2"], vec![(1, 0)], vec![]),
            None
        )
        .await
        .unwrap()
        .logged()
    );
    let refused = at(decision("dave", "d6", &["o3"]), 2_000);
    assert!(
        !s.log_decision(&refused, &guard("email", &["o3"], vec![(1, 0)], vec![]), None).await.unwrap().logged(),
        "1 e-mail allowed"
    );
    assert_eq!(
        s.log_outcome(&outcome("dave", "d6", "o3"), &[]).await.unwrap(),
        OutcomeLink::UnknownDecision,
        "a refused decision is not logged"
    );
    assert!(
        s.log_decision(&refused, &guard("email", &["o3"], vec![(1, 1_500)], vec![]), None).await.unwrap().logged(),
        "outside the window"
    );
    let capped = guard("web", &["o1"], vec![], vec![("o1".into(), 1, 0)]);
    assert!(
        !s.log_decision(&at(decision("dave", "d7", &["o1"]), 3_000), &capped, None).await.unwrap().logged(),
        "o1 capped at 1"
    );
    let web = guard("web", &["o4"], vec![(1, 0)], vec![("o4".into(), 1, 0)]);
    assert!(
        s.log_decision(&at(decision("dave", "d8", &["o4"]), 3_000), &web, None).await.unwrap().logged(),
        "other channel, other offer"
    );
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
}

/// Dismiss and accept mark the offer for cooldowns; the latest time wins.
async fn cooldown_marks(s: S) {
    for (id, offers, t) in [("d5", &["o1", "o2"][..], 1_000), ("d8", &["o4"][..], 3_000), ("d9", &["o1"][..], 3_500)] {
        assert!(
            s.log_decision(&at(decision("dave", id, offers), t), &ContactGuard::default(), None)
                .await
                .unwrap()
                .logged()
        );
    }
    let dismiss = with_outcome(outcome("dave", "d5", "o1"), OutcomeKind::Dismiss, 5_000);
    assert_eq!(s.log_outcome(&dismiss, &[]).await.unwrap(), OutcomeLink::Linked);
    let accept = with_outcome(outcome("dave", "d8", "o4"), OutcomeKind::Accept, 6_000);
    assert_eq!(s.log_outcome(&accept, &[]).await.unwrap(), OutcomeLink::Linked);
    let earlier = with_outcome(outcome("dave", "d9", "o1"), OutcomeKind::Dismiss, 4_000);
    assert_eq!(s.log_outcome(&earlier, &[]).await.unwrap(), OutcomeLink::Linked);
    let click = with_outcome(outcome("dave", "d5", "o2"), OutcomeKind::Click, 7_000);
    assert_eq!(s.log_outcome(&click, &[]).await.unwrap(), OutcomeLink::Linked);
    let marks = s.load_user("dave", &[], Some(0)).await.unwrap().contacts;
    assert_eq!(marks.dismissed, [("o1".to_string(), 5_000)].into(), "the later dismissal stays");
    assert_eq!(marks.accepted, [("o4".to_string(), 6_000)].into(), "a click marks nothing");
}

/// A logged decision records the first exposure per experiment; visits and conversions
/// inside the attribution window count once per user; revenue adds up; the counters stay
/// after the user is erased.
async fn exposures_and_attribution(s: S) {
    let windows = vec![("exp".to_string(), 10_000i64)];
    let mut d9 = at(decision("erin", "d9", &["o1"]), 1_000);
    d9.assignments.insert("exp".into(), "b".into());
    assert!(s.log_decision(&d9, &ContactGuard::default(), None).await.unwrap().logged());
    let mut d10 = at(decision("erin", "d10", &["o1"]), 2_000);
    d10.assignments.insert("exp".into(), "b".into());
    assert!(s.log_decision(&d10, &ContactGuard::default(), None).await.unwrap().logged());
    let click = with_outcome(outcome("erin", "d9", "o1"), OutcomeKind::Click, 3_000);
    assert_eq!(s.log_outcome(&click, &windows).await.unwrap(), OutcomeLink::Linked);
    let mut conv = with_outcome(outcome("erin", "d10", "o1"), OutcomeKind::Conversion, 4_000);
    conv.value = 3.0;
    assert_eq!(s.log_outcome(&conv, &windows).await.unwrap(), OutcomeLink::Linked);
    let purchases = [
        Happening::Conversion { at: 5_000, value: 2.0 },
        Happening::Visit { at: 5_000 },
        Happening::Conversion { at: 99_000, value: 50.0 }, // outside the window
    ];
    let erin = s.load_user("erin", &[], None).await.unwrap();
    let w = UserWrite {
        attribution: Attribution { windows: &windows, happenings: &purchases },
        ..write(&erin.state, &[], &[], 5_000)
    };
    assert!(s.commit_user("erin", erin.version, w).await.unwrap());
    let counters = s.experiment_counters("exp").await.unwrap();
    let want = VariantCounters { exposed: 1, decisions: 2, visitors: 1, converters: 1, revenue: 5.0, revenue_sq: 25.0 };
    assert_eq!(counters, [("b".to_string(), want)].into());
    assert!(s.experiment_counters("other").await.unwrap().is_empty());
    assert_eq!(s.delete_user("erin").await.unwrap(), 4, "profile, recent decisions, exposures, sealing key");
    assert_eq!(s.experiment_counters("exp").await.unwrap()["b"], want, "aggregates stay after an erasure");
}

/// Delete erases every record of the user and counts them as the Redis layout does (one key
/// per kind of record), leaving other users alone.
async fn delete_count(s: S) {
    let (_, _, _) = first_commit(&s).await;
    assert!(s.log_decision(&decision("alice", "d1", &["o1"]), &ContactGuard::default(), None).await.unwrap().logged());
    let bob_state = UserState { stage: Some("awareness".into()), ..Default::default() };
    let bob = write(&bob_state, &[], &[], 1);
    assert!(s.commit_user("bob", 0, bob).await.unwrap());
    assert_eq!(s.load_user("bob", &[], None).await.unwrap().state.transitions, vec![], "no history for bob");
    assert!(
        s.log_decision(&at(decision("dave", "d5", &["o1"]), 1_000), &guard("email", &["o1"], vec![], vec![]), None)
            .await
            .unwrap()
            .logged()
    );
    let dismiss = with_outcome(outcome("dave", "d5", "o1"), OutcomeKind::Dismiss, 2_000);
    assert_eq!(s.log_outcome(&dismiss, &[]).await.unwrap(), OutcomeLink::Linked);

    assert_eq!(s.delete_user("alice").await.unwrap(), 5, "profile, history, dedup, recent decisions, key");
    assert_eq!(s.delete_user("alice").await.unwrap(), 0);
    let gone = s.load_user("alice", &["e1"], None).await.unwrap();
    assert_eq!((gone.version, gone.seen[0]), (0, false));
    assert!(gone.state.is_empty());
    assert_eq!(s.log_outcome(&outcome("alice", "d1", "o1"), &[]).await.unwrap(), OutcomeLink::UnknownDecision);
    assert_eq!(s.load_user("bob", &[], None).await.unwrap().version, bob.new_version, "other users untouched");
    assert_eq!(s.delete_user("dave").await.unwrap(), 4, "recent decisions, contacts, marks, key");
    assert_eq!(s.load_user("dave", &[], Some(0)).await.unwrap().contacts, ContactState::default());
    assert_eq!(s.delete_user("bob").await.unwrap(), 1, "profile");
}

/// After `delete_user`, the user's log entries can no longer be read: journey-log entries are
/// not exported, decision-log entries export as `Erased` (their decision id only). Other users'
/// entries are intact, and a user re-created under the same id starts a new, readable history.
async fn erasure_leaves_the_logs_unreadable(s: S) {
    let (_, evs, _) = first_commit(&s).await;
    let mut d1 = decision("alice", "d1", &["o1"]);
    d1.state.attributes.insert("email".into(), AttrValue::Str("alice@example.com".into()));
    assert!(s.log_decision(&d1, &ContactGuard::default(), None).await.unwrap().logged());
    assert_eq!(s.log_outcome(&outcome("alice", "d1", "o1"), &[]).await.unwrap(), OutcomeLink::Linked);
    let bob_events = [event("bob", "b1", "page_view", 5)];
    let bob_state = UserState { stage: Some("awareness".into()), ..Default::default() };
    assert!(s.commit_user("bob", 0, write(&bob_state, &[], &bob_events, 1)).await.unwrap());
    assert!(s.log_decision(&decision("bob", "d2", &["o2"]), &ContactGuard::default(), None).await.unwrap().logged());
    let mut entries = Vec::new();
    s.export_decision_log(&mut |e| entries.push(e)).await.unwrap();
    assert!(entries.contains(&DecisionLogEntry::Decision(Box::new(d1.clone()))), "readable before the erasure");
    assert_eq!(journey_log(&s).await.iter().filter(|e| e.user_id == "alice").count(), evs.len());

    assert!(s.delete_user("alice").await.unwrap() > 0);
    let logged = journey_log(&s).await;
    assert!(logged.iter().all(|e| e.user_id != "alice"), "no readable event of alice");
    assert_eq!(logged.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["b1"], "bob's events stay");
    let mut entries = Vec::new();
    s.export_decision_log(&mut |e| entries.push(e)).await.unwrap();
    let erased = DecisionLogEntry::Erased { id: "d1".into() };
    assert_eq!(entries.iter().filter(|e| **e == erased).count(), 2, "the decision and its outcome: {entries:?}");
    let readable = |e: &DecisionLogEntry| match e {
        DecisionLogEntry::Decision(d) => Some(d.user_id.clone()),
        DecisionLogEntry::Outcome(o) => Some(o.user_id.clone()),
        DecisionLogEntry::Erased { .. } => None,
    };
    assert_eq!(entries.iter().filter_map(readable).collect::<Vec<_>>(), ["bob"]);

    // Alice again, under the same id: a new key, her new entries readable, the old ones not.
    let again = [event("alice", "a9", "page_view", 50)];
    assert!(s.commit_user("alice", 0, write(&bob_state, &[], &again, 300)).await.unwrap());
    assert!(s.log_decision(&decision("alice", "d3", &["o1"]), &ContactGuard::default(), None).await.unwrap().logged());
    let ids: Vec<String> =
        journey_log(&s).await.into_iter().filter(|e| e.user_id == "alice").map(|e| e.event_id).collect();
    assert_eq!(ids, ["a9"]);
    let mut entries = Vec::new();
    s.export_decision_log(&mut |e| entries.push(e)).await.unwrap();
    assert_eq!(entries.iter().filter(|e| **e == erased).count(), 2, "old entries stay unreadable");
    assert!(entries.iter().any(|e| matches!(e, DecisionLogEntry::Decision(d) if d.decision_id == "d3")));
}

/// Consent withdrawals are part of the stored profile and round-trip with it.
async fn consent_round_trips(s: S) {
    let mut state = UserState { stage: Some("awareness".into()), ..Default::default() };
    state.set_consent("email", false, 1_000);
    state.set_consent("sms", false, 2_000);
    state.set_consent("sms", true, 3_000);
    assert_eq!(state.consent_withdrawn, [("email".to_string(), 1_000)].into());
    assert!(s.commit_user("carol", 0, write(&state, &[], &[], 1)).await.unwrap());
    assert_eq!(s.load_user("carol", &[], None).await.unwrap().state, state);
}

/// After a delete, a writer holding the old version cannot resurrect the user (no ABA).
async fn delete_has_no_aba(s: S) {
    let state = UserState { stage: Some("awareness".into()), ..Default::default() };
    let first = write(&state, &[], &[], 1);
    assert!(s.commit_user("bob", 0, first).await.unwrap());
    assert_eq!(s.delete_user("bob").await.unwrap(), 1);
    let other = UserState { stage: Some("advocacy".into()), ..Default::default() };
    assert!(s.commit_user("bob", 0, write(&other, &[], &[], 2)).await.unwrap());
    assert!(!s.commit_user("bob", first.new_version, write(&state, &[], &[], 3)).await.unwrap());
    assert_eq!(s.load_user("bob", &[], None).await.unwrap().state.stage.as_deref(), Some("advocacy"));
}

/// Optimistic writes under contention: two engines (as two servers would) race on one user;
/// the version check must keep every event exactly once.
async fn racing_engines(s: S) {
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
    let carols = journey_log(&s).await.iter().filter(|e| e.user_id == "carol").count();
    assert_eq!(carols, 40, "each event logged once");
}

/// Publishing stores an artifact under its version without moving `current`; pointing
/// `current` is separate, and each model has its own registry.
async fn model_registry_publish_and_current(s: S) {
    assert_eq!(s.current_model("m").await.unwrap(), None);
    assert_eq!(s.get_model("m", "v1").await.unwrap(), None);
    s.put_model("m", "v1", "{\"a\":1}").await.unwrap();
    assert_eq!(s.get_model("m", "v1").await.unwrap().as_deref(), Some("{\"a\":1}"));
    assert_eq!(s.current_model("m").await.unwrap(), None, "publishing does not point");
    s.set_current_model("m", "v1").await.unwrap();
    assert_eq!(s.current_model("m").await.unwrap().as_deref(), Some("v1"));
    s.put_model("m", "v1", "{\"a\":2}").await.unwrap();
    assert_eq!(s.get_model("m", "v1").await.unwrap().as_deref(), Some("{\"a\":2}"), "a re-publish replaces");
    assert_eq!(s.get_model("m", "v2").await.unwrap(), None);
    assert_eq!(s.current_model("other").await.unwrap(), None);
    assert_eq!(s.get_model("other", "v1").await.unwrap(), None);
}

/// Re-pointing `current` to the version it already names changes nothing: no history entry,
/// so a rollback still goes to the version before.
async fn model_registry_repoint_same_version_is_a_no_op(s: S) {
    s.set_current_model("m", "v1").await.unwrap();
    s.set_current_model("m", "v2").await.unwrap();
    s.set_current_model("m", "v2").await.unwrap();
    assert_eq!(s.current_model("m").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(s.rollback_model("m").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(s.rollback_model("m").await.unwrap(), None, "v1 was the first");
    assert_eq!(s.current_model("m").await.unwrap().as_deref(), Some("v1"));
}

/// Rollback moves `current` back one version; with nothing to go back to it changes nothing.
async fn model_registry_rollback(s: S) {
    assert_eq!(s.rollback_model("m").await.unwrap(), None, "no registry yet");
    s.set_current_model("m", "v1").await.unwrap();
    assert_eq!(s.rollback_model("m").await.unwrap(), None);
    assert_eq!(s.current_model("m").await.unwrap().as_deref(), Some("v1"), "still current");
    s.set_current_model("m", "v2").await.unwrap();
    assert_eq!(s.rollback_model("m").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(s.current_model("m").await.unwrap().as_deref(), Some("v1"));
    assert_eq!(s.rollback_model("m").await.unwrap(), None);
    assert_eq!(s.current_model("m").await.unwrap().as_deref(), Some("v1"));
}

/// The history is a stack of earlier `current` versions: rollbacks walk it newest first,
/// a version may appear in it more than once.
async fn model_registry_history_order(s: S) {
    for v in ["v1", "v2", "v3", "v1"] {
        s.set_current_model("m", v).await.unwrap();
    }
    let mut back = Vec::new();
    while let Some(v) = s.rollback_model("m").await.unwrap() {
        back.push(v);
    }
    assert_eq!(back, ["v3", "v2", "v1"]);
    assert_eq!(s.current_model("m").await.unwrap().as_deref(), Some("v1"));
}

/// A key of the wrong type where a user's profile hash lives is an internal error, not an
/// outage: the engine must answer INTERNAL rather than degrade.
mod wrong_type_is_internal {
    use super::*;

    async fn check(store: RedisStore, conn: &mut dyn redis::ConnectionLike) {
        let key = store.keys().profile("mallory");
        let _: () = redis::cmd("SET").arg(&key).arg("not a hash").query(conn).unwrap();
        let err = store.load_user("mallory", &[], None).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(ref m) if m.contains("WRONGTYPE")), "{err:?}");
        let engine_error = touchpoint::engine::Error::from(err);
        assert!(matches!(engine_error, touchpoint::engine::Error::Internal(_)), "{engine_error:?}");
        let state = UserState::default();
        let err = store.commit_user("mallory", 0, write(&state, &[], &[], 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
        store.ping().await.expect("the server itself is fine");
    }

    #[tokio::test]
    async fn redis() {
        let store = shared_redis_store(false, "tp-wrong-type").await;
        check(store, &mut shared_redis().conn()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster() {
        let store = shared_redis_store(true, "tp-wrong-type").await;
        check(store, &mut shared_cluster().conn()).await;
    }
}

/// A decision remembered the way it was before issue 9 (the `:d` hash) still links its
/// outcomes after an upgrade, once per (offer, kind), until the old key expires.
mod legacy_recent_decisions_still_link {
    use super::*;

    async fn check(store: RedisStore, conn: &mut dyn redis::ConnectionLike) {
        let key = store.keys().legacy_decisions("olga");
        let _: () = redis::cmd("HSET").arg(&key).arg("old-1").arg(",o1,o2,|").query(conn).unwrap();
        assert_eq!(store.log_outcome(&outcome("olga", "old-1", "o2"), &[]).await.unwrap(), OutcomeLink::Linked);
        assert_eq!(store.log_outcome(&outcome("olga", "old-1", "o2"), &[]).await.unwrap(), OutcomeLink::Duplicate);
        assert_eq!(
            store.log_outcome(&outcome("olga", "old-1", "o9"), &[]).await.unwrap(),
            OutcomeLink::OfferNotInDecision
        );
        let stored: String = redis::cmd("HGET").arg(&key).arg("old-1").query(conn).unwrap();
        assert_eq!(stored, ",o1,o2,|o2:click|");
        // A decision made now is remembered in the new layout and links as well.
        assert!(
            store
                .log_decision(&decision("olga", "new-1", &["o1"]), &ContactGuard::default(), None)
                .await
                .unwrap()
                .logged()
        );
        assert_eq!(store.log_outcome(&outcome("olga", "new-1", "o1"), &[]).await.unwrap(), OutcomeLink::Linked);
        // Erasure removes both layouts.
        assert_eq!(store.delete_user("olga").await.unwrap(), 3, "recent decisions, the old hash, sealing key");
    }

    #[tokio::test]
    async fn redis() {
        let store = shared_redis_store(false, "tp-legacy").await;
        check(store, &mut shared_redis().conn()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster() {
        let store = shared_redis_store(true, "tp-legacy").await;
        check(store, &mut shared_cluster().conn()).await;
    }
}

/// A store pointed at a Redis that is down starts, and answers Unavailable until it is up.
mod starts_while_redis_is_down {
    use super::*;

    async fn down(store: &RedisStore) {
        let started = std::time::Instant::now();
        let err = store.load_user("alice", &[], None).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(matches!(store.ping().await, Err(StoreError::Unavailable(_))));
        // Bounded by the command timeout (500 ms in the harness), not hanging: a generous
        // ceiling so a loaded machine does not make this flaky.
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn redis() {
        let port = free_ports(1)[0];
        let url = format!("redis://127.0.0.1:{port}");
        let store = RedisStore::connect(&redis_config(&url, false, "tp"), retention()).await.unwrap();
        down(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster() {
        let ports = free_ports(3);
        let url = ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
        let store = RedisStore::connect(&redis_config(&url, true, "tp"), retention()).await.unwrap();
        down(&store).await;
        down(&store).await;
        // The cluster comes up on those ports: the same store now works.
        let _cluster = RedisCluster::start_on(&ports);
        store.ping().await.unwrap();
        let state = UserState { stage: Some("awareness".into()), ..Default::default() };
        assert!(store.commit_user("alice", 0, write(&state, &[], &[], 1)).await.unwrap());
        assert_eq!(store.load_user("alice", &[], None).await.unwrap().state.stage.as_deref(), Some("awareness"));
    }
}

/// Users walked through stages, decisions and outcomes (duplicates and unknown decisions
/// included) and an erasure give exactly the expected funnel and offer counters.
async fn funnel_and_offer_counters(s: S) {
    let engine = Engine::new(s.clone(), Config::defaults(), None, vec![]);
    let now = touchpoint::engine::now_ms();
    let day = funnel::day_of(now) - 1;
    let t0 = day * 86_400_000;
    let min = 60_000;
    let ev = |user: &str, id: &str, kind: &str, t: i64, channel: &str| Event {
        channel: channel.into(),
        value: 0.0,
        properties: Default::default(),
        ..event(user, id, kind, t)
    };
    let events = vec![
        ev("u1", "a", "page_view", t0, "web"),
        ev("u1", "b", "product_view", t0 + 30 * min, "web"),
        ev("u1", "c", "purchase", t0 + 120 * min, "web"),
        ev("u2", "a", "page_view", t0, "web"),
        ev("u2", "b", "product_view", t0 + 300 * min, "web"),
        ev("u3", "a", "page_view", t0, "web"),
        ev("u4", "a", "product_view", t0, "app"),
    ];
    assert_eq!(engine.record_events(events.clone()).await.unwrap().accepted, 7);
    // A retry counts nothing twice.
    assert_eq!(engine.record_events(events).await.unwrap().duplicates, 7);
    assert!(s.delete_user("u3").await.unwrap() > 0);
    let mut d1 = at(decision("u1", "d1", &["o1", "o2"]), t0 + 180 * min);
    d1.stage = "consideration".into();
    d1.segments = vec!["vip".into(), "new".into()];
    let mut d2 = at(decision("u2", "d2", &["o1"]), t0 + 180 * min);
    (d2.stage, d2.channel) = ("consideration".into(), "email".into());
    for d in [&d1, &d2] {
        assert!(s.log_decision(d, &guard(&d.channel, &[], vec![], vec![]), None).await.unwrap().logged());
    }
    let later = t0 + 240 * min;
    let mut conversion = with_outcome(outcome("u1", "d1", "o1"), OutcomeKind::Conversion, later);
    conversion.value = 20.0;
    for (o, link) in [
        (with_outcome(outcome("u1", "d1", "o1"), OutcomeKind::Impression, later), OutcomeLink::Linked),
        (with_outcome(outcome("u1", "d1", "o1"), OutcomeKind::Click, later), OutcomeLink::Linked),
        (with_outcome(outcome("u1", "d1", "o1"), OutcomeKind::Click, later), OutcomeLink::Duplicate),
        (conversion, OutcomeLink::Linked),
        (with_outcome(outcome("u1", "d1", "o2"), OutcomeKind::Impression, later), OutcomeLink::Linked),
        (with_outcome(outcome("u1", "nope", "o2"), OutcomeKind::Impression, later), OutcomeLink::UnknownDecision),
        (with_outcome(outcome("u2", "d2", "o1"), OutcomeKind::Dismiss, later), OutcomeLink::Linked),
    ] {
        assert_eq!(s.log_outcome(&o, &[]).await.unwrap(), link, "{o:?}");
    }
    let t = s.tallies(Days { from: day - 1, to: day + 1 }).await.unwrap();
    let expected_day: BTreeMap<String, f64> = [
        ("e|awareness|web", 3.0),
        ("e|awareness|app", 1.0),
        ("e|consideration|web", 2.0),
        ("e|consideration|app", 1.0),
        ("e|retention|web", 1.0),
        ("a|awareness|consideration|web", 2.0),
        ("a|awareness|consideration|app", 1.0),
        ("a|consideration|retention|web", 1.0),
        ("t|awareness|0", 1.0),
        ("t|awareness|2", 1.0),
        ("t|awareness|4", 1.0),
        ("t|consideration|3", 1.0),
        ("o|o1|consideration|web|decision", 1.0),
        ("o|o2|consideration|web|decision", 1.0),
        ("o|o1|consideration|email|decision", 1.0),
        ("o|o1|consideration|web|impression", 1.0),
        ("o|o1|consideration|web|click", 1.0),
        ("o|o1|consideration|web|conversion", 1.0),
        ("o|o1|consideration|web|revenue", 20.0),
        ("o|o2|consideration|web|impression", 1.0),
        ("o|o1|consideration|email|dismiss", 1.0),
        // Per segment of d1's user, over every channel.
        ("g|vip|o1|consideration|decision", 1.0),
        ("g|vip|o2|consideration|decision", 1.0),
        ("g|vip|o1|consideration|impression", 1.0),
        ("g|vip|o1|consideration|click", 1.0),
        ("g|vip|o1|consideration|conversion", 1.0),
        ("g|vip|o1|consideration|revenue", 20.0),
        ("g|vip|o2|consideration|impression", 1.0),
        ("g|new|o1|consideration|decision", 1.0),
        ("g|new|o2|consideration|decision", 1.0),
        ("g|new|o1|consideration|impression", 1.0),
        ("g|new|o1|consideration|click", 1.0),
        ("g|new|o1|consideration|conversion", 1.0),
        ("g|new|o1|consideration|revenue", 20.0),
        ("g|new|o2|consideration|impression", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(t.days.keys().copied().collect::<Vec<_>>(), [day]);
    assert_eq!(t.days[&day], expected_day);
    let nonzero: BTreeMap<&str, f64> =
        t.current.iter().filter(|(_, v)| **v != 0.0).map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(nonzero, BTreeMap::from([("s|consideration", 2.0), ("s|retention", 1.0)]));
    // The report built on them.
    let stages = Config::defaults().policy.journey.stages().to_vec();
    let rows = analytics::funnel(&stages, &t.sum(day, day), &t.current, None, None);
    assert_eq!(rows.iter().map(|r| r.entered).collect::<Vec<_>>(), [4.0, 3.0, 0.0, 1.0, 0.0]);
    assert_eq!(rows.iter().map(|r| r.current).collect::<Vec<_>>(), [0.0, 2.0, 0.0, 1.0, 0.0]);
    assert_eq!(rows[0].advance_rate, Some(0.75));
    let offers = analytics::offers(&t.sum(day, day), Default::default());
    let o1 = offers.iter().find(|r| r.offer == "o1" && r.channel == "web").unwrap();
    assert_eq!((o1.ctr(), o1.conversion_rate(), o1.revenue), (Some(1.0), Some(1.0), 20.0));
    let vip =
        analytics::offers(&t.sum(day, day), analytics::OfferFilter { segment: Some("vip"), ..Default::default() });
    assert_eq!(
        vip.iter().map(|r| (r.offer.as_str(), r.decisions, r.clicks)).collect::<Vec<_>>(),
        [("o1", 1.0, 1.0), ("o2", 1.0, 0.0)]
    );
    assert!(vip.iter().all(|r| r.channel.is_empty()));
}

/// Decisions written together (`log_decisions`, a campaign send's group commit) are each
/// written as `log_decision` would, in order: a later decision's guard counts an earlier
/// one's contacts (same user, same group), a refused one leaves nothing (no contact, no log
/// entry, no counter), and the counters of the logged ones add up, over several records'
/// dictionaries in one group.
async fn group_writes_are_each_decision_in_order(s: S) {
    let now = touchpoint::engine::now_ms();
    let day = funnel::day_of(now);
    let d = |user: &str, id: &str, offer: &str, channel: &str, stage: &str| {
        let mut d = at(decision(user, id, &[offer]), now);
        (d.channel, d.stage) = (channel.into(), stage.into());
        d.assignments.insert("gx".into(), "a".into());
        d
    };
    let ds = [
        d("g1", "d1", "o1", "email", "awareness"),
        d("g1", "d2", "o2", "email", "awareness"),
        d("g2", "d3", "o1", "web", "awareness"),
        d("g2", "d4", "o1", "web", "awareness"),
        d("g2", "d5", "o2", "web", "retention"),
    ];
    let email = guard("email", &["o1"], vec![(1, 0)], vec![]);
    let email2 = guard("email", &["o2"], vec![(1, 0)], vec![]);
    let web = guard("web", &["o1"], vec![], vec![("o1".into(), 1, 0)]);
    let web2 = guard("web", &["o2"], vec![], vec![("o2".into(), 1, 0)]);
    let group: Vec<DecisionToWrite<'_>> = ds
        .iter()
        .zip([&email, &email2, &web, &web, &web2])
        .map(|(record, guard)| DecisionToWrite { record, guard, write_by: None })
        .collect();
    let writes: Vec<bool> = s.log_decisions(&group).await.unwrap().into_iter().map(|w| w.logged()).collect();
    assert_eq!(writes, [true, false, true, false, true], "d2 over the e-mail limit, d4 over o1's cap");
    let mut logged = vec![];
    s.export_decision_log(&mut |e| {
        if let DecisionLogEntry::Decision(d) = e {
            logged.push(d.decision_id.clone());
        }
    })
    .await
    .unwrap();
    // A cluster's log is one stream per slot: in order per user, not across users.
    logged.sort();
    assert_eq!(logged, ["d1", "d3", "d5"]);
    let contacts = s.load_user("g2", &[], Some(0)).await.unwrap().contacts.contacts;
    assert_eq!(contacts.len(), 2, "{contacts:?}");
    assert_eq!(s.log_outcome(&outcome("g1", "d2", "o2"), &[]).await.unwrap(), OutcomeLink::UnknownDecision);
    assert_eq!(s.log_outcome(&outcome("g2", "d5", "o2"), &[]).await.unwrap(), OutcomeLink::Linked);
    let counters = s.experiment_counters("gx").await.unwrap();
    assert_eq!((counters["a"].exposed, counters["a"].decisions), (2, 3), "two users, three decisions logged");
    let t = s.tallies(Days { from: day, to: day }).await.unwrap();
    let decided: BTreeMap<&str, f64> =
        t.days[&day].iter().filter(|(k, _)| k.ends_with("|decision")).map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        decided,
        BTreeMap::from([
            ("o|o1|awareness|email|decision", 1.0),
            ("o|o1|awareness|web|decision", 1.0),
            ("o|o2|retention|web|decision", 1.0)
        ])
    );
}

/// Many users read together (`load_users_without_history`) read as each alone, in order,
/// unknown users included.
async fn group_reads_are_each_users_read(s: S) {
    let (_, _, _) = first_commit(&s).await;
    let d = at(decision("alice", "d1", &["o1"]), 1_000);
    assert!(s.log_decision(&d, &guard("web", &["o1"], vec![], vec![]), None).await.unwrap().logged());
    let users = ["nobody", "alice", "alice", "bob"];
    let together = s.load_users_without_history(&users, Some(0)).await.unwrap();
    assert_eq!(together.len(), users.len());
    for (user, got) in users.iter().zip(together) {
        let alone = s.load_user_without_history(user, &[], Some(0)).await.unwrap();
        assert_eq!(got.unwrap(), alone, "{user}");
    }
    let alice = s.load_users_without_history(&["alice"], None).await.unwrap().remove(0).unwrap();
    assert_eq!(alice.contacts, ContactState::default(), "contacts not asked, not read");
    assert!(alice.version > 0 && alice.state.stage.is_some());
}

/// In a group, a decision that reaches the store after its own `write_by` is refused alone
/// (`Late`, nothing of it written) while the others are written. The memory store writes
/// within the call and checks no deadline, so this is for the Redis stores.
mod group_writes_refuse_only_the_late_decision {
    #[tokio::test]
    async fn redis() {
        let store = crate::harness::shared_redis_store(false, "tp-group-late").await;
        super::group_writes_refuse_only_the_late_decision(std::sync::Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster() {
        let store = crate::harness::shared_redis_store(true, "tp-group-late").await;
        super::group_writes_refuse_only_the_late_decision(std::sync::Arc::new(store)).await;
    }
}

async fn group_writes_refuse_only_the_late_decision(s: S) {
    let now = touchpoint::engine::now_ms();
    let (on_time, late) = (at(decision("hal", "d1", &["o1"]), now), at(decision("hal", "d2", &["o2"]), now));
    let g = guard("web", &["o1"], vec![], vec![]);
    let g2 = guard("web", &["o2"], vec![], vec![]);
    let writes = s
        .log_decisions(&[
            DecisionToWrite { record: &late, guard: &g2, write_by: Some(now - 60_000) },
            DecisionToWrite { record: &on_time, guard: &g, write_by: Some(now + 60_000) },
        ])
        .await
        .unwrap();
    assert_eq!(writes, [DecisionWrite::Late, DecisionWrite::Logged]);
    let contacts = s.load_user("hal", &[], Some(0)).await.unwrap().contacts.contacts;
    assert_eq!(contacts, [contact(now, "d1", "web", "o1")], "nothing of the late one");
}
