//! The decision export joins outcomes exactly (issue 10): one row per offer shown, each with
//! the outcomes of that offer of that decision within the window, and nothing else.
use std::collections::BTreeMap;
use touchpoint::domain::contact::ContactGuard;
use touchpoint::domain::decision::{Candidate, Chosen, DecisionRecord};
use touchpoint::domain::outcome::{OutcomeKind, OutcomeRecord};
use touchpoint::store::memory::MemoryStore;
use touchpoint::store::{Retention, Store};
use touchpoint_train::decisions::{csv, join, pseudonym};

const DAY: i64 = 86_400_000;

/// (decision, rank, offer, selection probability, outcome flags, value)
type Joined<'a> = (&'a str, usize, &'a str, f64, [bool; 5], f64);

fn decision(id: &str, user: &str, at: i64, offers: &[(&str, f64)]) -> DecisionRecord {
    DecisionRecord {
        decision_id: id.into(),
        user_id: user.into(),
        at,
        channel: "web".into(),
        stage: "consideration".into(),
        segments: vec!["vip".into()],
        assignments: BTreeMap::from([("exp".to_string(), "b".to_string())]),
        features: BTreeMap::from([("recency_days".to_string(), 2.0)]),
        chosen: offers
            .iter()
            .map(|(o, p)| Chosen { offer_id: o.to_string(), score: 1.0, selection_probability: *p })
            .collect(),
        candidates: offers
            .iter()
            .chain(&[("other", 0.0)])
            .map(|(o, _)| Candidate { offer_id: o.to_string(), score: 1.0, scores: BTreeMap::new(), dropped: None })
            .collect(),
        ..Default::default()
    }
}

fn outcome(d: &str, user: &str, offer: &str, kind: OutcomeKind, at: i64, value: f64) -> OutcomeRecord {
    OutcomeRecord { decision_id: d.into(), user_id: user.into(), offer_id: offer.into(), outcome: kind, value, at }
}

#[tokio::test]
async fn the_export_joins_outcomes_within_the_window_exactly() {
    let retention = Retention {
        journey_log_maxlen: 1000,
        decision_log_maxlen: 1000,
        dedup_window_ms: 30 * DAY,
        dedup_max_per_user: 100,
        recent_decisions_per_user: 10,
        counter_retention_days: 90,
        archive: false,
    };
    let s = MemoryStore::new(retention);
    let t0 = 1_700_000_000_000;
    let guard = ContactGuard {
        channel: "web".into(),
        channel_limits: vec![],
        offer_caps: vec![],
        offers: vec![],
        keep_since: 0,
    };
    s.log_decision(&decision("d1", "ann", t0, &[("a", 0.9), ("b", 0.5)]), &guard, None).await.unwrap();
    s.log_decision(&decision("d2", "bob", t0 + 10, &[("a", 1.0)]), &guard, None).await.unwrap();
    for o in [
        outcome("d1", "ann", "a", OutcomeKind::Impression, t0 + 1, 0.0),
        outcome("d1", "ann", "a", OutcomeKind::Click, t0 + 2, 0.0),
        outcome("d1", "ann", "a", OutcomeKind::Conversion, t0 + DAY, 30.0),
        outcome("d1", "ann", "b", OutcomeKind::Dismiss, t0 + 3, 0.0),
        // Outside a 7-day window: not joined.
        outcome("d2", "bob", "a", OutcomeKind::Click, t0 + 8 * DAY, 0.0),
    ] {
        s.log_outcome(&o, &[]).await.unwrap();
    }
    let mut entries = Vec::new();
    s.export_decision_log(&mut |e| entries.push(e)).await.unwrap();
    let rows = join(entries.clone(), 7 * DAY, "salt");
    let got: Vec<Joined> = rows
        .iter()
        .map(|r| (r.decision_id.as_str(), r.rank, r.offer_id.as_str(), r.selection_probability, r.outcomes, r.value))
        .collect();
    // Outcome flags: impression, click, accept, dismiss, conversion.
    assert_eq!(
        got,
        [
            ("d1", 1, "a", 0.9, [true, true, false, false, true], 30.0),
            ("d1", 2, "b", 0.5, [false, false, false, true, false], 0.0),
            ("d2", 1, "a", 1.0, [false; 5], 0.0),
        ]
    );
    assert_eq!(rows[0].user, pseudonym("salt", "ann"));
    assert_ne!(rows[0].user, pseudonym("other salt", "ann"));
    assert_eq!(rows[0].candidate_scores.len(), 3, "dropped candidates' scores too");
    // A wider window takes bob's late click.
    assert!(join(entries.clone(), 9 * DAY, "salt")[2].outcomes[1]);
    // An erased user's decisions leave the export.
    s.delete_user("ann").await.unwrap();
    let mut after = Vec::new();
    s.export_decision_log(&mut |e| after.push(e)).await.unwrap();
    let left: Vec<String> = join(after, 7 * DAY, "salt").into_iter().map(|r| r.decision_id).collect();
    assert_eq!(left, ["d2"]);
    // The CSV: a header with the feature columns, one line per row.
    let text = csv(&rows);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].ends_with(",candidate_scores,f_recency_days"), "{}", lines[0]);
    assert!(lines[1].contains(",vip,exp=b,1,a,1,0.9,1,1,0,0,1,30,"), "{}", lines[1]);
}
