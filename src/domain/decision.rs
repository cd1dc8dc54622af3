//! One decision: the query, candidate selection, ranking and the record that is logged.
use super::Millis;
use super::offer::{Catalogue, Offer};
use super::profile::AttrValue;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A validated `Decide` request.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionQuery {
    pub user_id: String,
    pub channel: String,
    pub placement: String,
    pub context: BTreeMap<String, AttrValue>,
    pub limit: usize,
    pub explain: bool,
}

/// Why a candidate of the user's stage was not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    WrongChannel,
    WrongPlacement,
    OutsideWindow,
    BelowLimit,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::WrongChannel => "wrong channel",
            DropReason::WrongPlacement => "wrong placement",
            DropReason::OutsideWindow => "outside its validity window",
            DropReason::BelowLimit => "ranked below the limit",
        }
    }
}

/// A candidate offer with its score, kept or dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub offer_id: String,
    pub score: f64,
    pub dropped: Option<DropReason>,
}

/// An offer chosen for the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chosen {
    pub offer_id: String,
    pub score: f64,
    pub selection_probability: f64,
}

/// The outcome of ranking a stage's offers for one query.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    pub chosen: Vec<Chosen>,
    pub candidates: Vec<Candidate>,
}

/// Ranks the stage's offers for the query's channel and placement by static priority.
/// Ties break on offer id, so the same inputs always give the same answer.
pub fn rank(catalogue: &Catalogue, stage: &str, query: &DecisionQuery, now: Millis) -> Ranking {
    let mut candidates: Vec<Candidate> = catalogue
        .for_stage(stage)
        .map(|o| Candidate { offer_id: o.id.clone(), score: o.priority, dropped: filter(o, query, now) })
        .collect();
    candidates.sort_by(|a, b| {
        a.dropped
            .is_some()
            .cmp(&b.dropped.is_some())
            .then(b.score.total_cmp(&a.score))
            .then_with(|| a.offer_id.cmp(&b.offer_id))
    });
    let mut chosen = Vec::new();
    for c in candidates.iter_mut().filter(|c| c.dropped.is_none()) {
        if chosen.len() < query.limit {
            chosen.push(Chosen { offer_id: c.offer_id.clone(), score: c.score, selection_probability: 1.0 });
        } else {
            c.dropped = Some(DropReason::BelowLimit);
        }
    }
    Ranking { chosen, candidates }
}

fn filter(offer: &Offer, query: &DecisionQuery, now: Millis) -> Option<DropReason> {
    if !offer.channels.contains(&query.channel) {
        Some(DropReason::WrongChannel)
    } else if !query.placement.is_empty()
        && !offer.placements.is_empty()
        && !offer.placements.contains(&query.placement)
    {
        Some(DropReason::WrongPlacement)
    } else if !offer.in_window(now) {
        Some(DropReason::OutsideWindow)
    } else {
        None
    }
}

/// The decision-log entry: enough to audit and later replay the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub user_id: String,
    pub at: Millis,
    pub channel: String,
    pub placement: String,
    pub stage: String,
    pub lapsed: bool,
    pub config_version: String,
    pub degraded: bool,
    pub chosen: Vec<Chosen>,
    pub candidates: Vec<Candidate>,
}

/// An outcome reported for an offer of a logged decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub decision_id: String,
    pub user_id: String,
    pub offer_id: String,
    pub outcome: OutcomeKind,
    pub value: f64,
    pub at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Impression,
    Click,
    Dismiss,
    Accept,
    Conversion,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Impression => "impression",
            OutcomeKind::Click => "click",
            OutcomeKind::Dismiss => "dismiss",
            OutcomeKind::Accept => "accept",
            OutcomeKind::Conversion => "conversion",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(id: &str, priority: f64, channels: &[&str]) -> Offer {
        Offer {
            id: id.into(),
            name: id.into(),
            stages: vec!["awareness".into()],
            channels: channels.iter().map(|c| c.to_string()).collect(),
            placements: vec![],
            content_ref: format!("cms://{id}"),
            priority,
            value: 1.0,
            cost: 0.0,
            weight: 1.0,
            valid_from: None,
            valid_until: Some(100),
        }
    }

    fn query(channel: &str, limit: usize) -> DecisionQuery {
        DecisionQuery {
            user_id: "u".into(),
            channel: channel.into(),
            placement: String::new(),
            context: Default::default(),
            limit,
            explain: true,
        }
    }

    fn check(now: Millis, channel: &str, limit: usize, expected: &[&str]) {
        let cat = Catalogue::new(vec![
            offer("b", 5.0, &["web"]),
            offer("a", 5.0, &["web", "app"]),
            offer("c", 9.0, &["email"]),
            offer("d", 1.0, &["web"]),
        ]);
        let r = rank(&cat, "awareness", &query(channel, limit), now);
        let ids: Vec<&str> = r.chosen.iter().map(|c| c.offer_id.as_str()).collect();
        assert_eq!(ids, expected);
        assert_eq!(r.candidates.len(), 4, "every stage offer is explained");
    }

    #[test]
    fn ranks_by_priority_with_id_tie_break() {
        check(0, "web", 10, &["a", "b", "d"]);
        check(0, "web", 2, &["a", "b"]);
        check(0, "email", 10, &["c"]);
        check(0, "app", 10, &["a"]);
        check(100, "web", 10, &[]);
    }
}
