//! The decision export (issue 10, point 2): one row per (decision, offer shown) from the
//! decision log, joined with the outcomes that followed within a window — the input of
//! response models and off-policy evaluation.
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use touchpoint::domain::Millis;
use touchpoint::domain::decision::DecisionRecord;
use touchpoint::domain::outcome::{OutcomeKind, OutcomeRecord};
use touchpoint::io::csv_cell as quote;
use touchpoint::store::DecisionLogEntry;

/// One offer shown by one decision, with what followed.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub decision_id: String,
    /// Decision time (ms since the epoch).
    pub at: Millis,
    /// `sha256(salt:user)`, first 16 hex digits: joinable across exports with one salt,
    /// not reversible to the id.
    pub user: String,
    pub stage: String,
    pub channel: String,
    pub placement: String,
    pub segments: Vec<String>,
    /// experiment -> variant
    pub variants: BTreeMap<String, String>,
    pub features: BTreeMap<String, f64>,
    /// Every candidate's priority (dropped ones included), by offer.
    pub candidate_scores: BTreeMap<String, f64>,
    /// 1 for the first offer shown.
    pub rank: usize,
    pub offer_id: String,
    pub score: f64,
    /// The logged probability of this pick given the earlier ranks.
    pub selection_probability: f64,
    /// Outcomes of this offer within the window: impression, click, accept, dismiss, conversion.
    pub outcomes: [bool; 5],
    /// Sum of the conversions' values within the window.
    pub value: f64,
}

/// The outcome kinds in `Row::outcomes` order.
pub const OUTCOMES: [OutcomeKind; 5] =
    [OutcomeKind::Impression, OutcomeKind::Click, OutcomeKind::Accept, OutcomeKind::Dismiss, OutcomeKind::Conversion];

/// A pseudonymous user id.
pub fn pseudonym(salt: &str, user: &str) -> String {
    hex::encode(&Sha256::digest(format!("{salt}:{user}").as_bytes())[..8])
}

/// Joins a decision log: every offer each decision showed, with the outcomes recorded for
/// it at most `window_ms` after the decision. Erased entries are skipped; outcomes of
/// decisions not in the log (trimmed away) are ignored. Rows come in log order.
pub fn join(entries: impl IntoIterator<Item = DecisionLogEntry>, window_ms: Millis, salt: &str) -> Vec<Row> {
    let log = Log::read(entries);
    let mut rows = Vec::new();
    for d in &log.decisions {
        let candidate_scores: BTreeMap<String, f64> =
            d.candidates.iter().map(|c| (c.offer_id.clone(), c.score)).collect();
        for (i, c) in d.chosen.iter().enumerate() {
            let mut row = Row {
                decision_id: d.decision_id.clone(),
                at: d.at,
                user: pseudonym(salt, &d.user_id),
                stage: d.stage.clone(),
                channel: d.channel.clone(),
                placement: d.placement.clone(),
                segments: d.segments.clone(),
                variants: d.assignments.clone(),
                features: d.features.clone(),
                candidate_scores: candidate_scores.clone(),
                rank: i + 1,
                offer_id: c.offer_id.clone(),
                score: c.score,
                selection_probability: c.selection_probability,
                outcomes: [false; 5],
                value: 0.0,
            };
            (row.outcomes, row.value) = log.outcomes_of(d, &c.offer_id, window_ms);
            rows.push(row);
        }
    }
    rows
}

/// A decision log read into its decisions (log order) and their outcomes (erased entries
/// skipped).
#[derive(Debug, Default)]
pub struct Log {
    pub decisions: Vec<DecisionRecord>,
    outcomes: HashMap<(String, String), Vec<OutcomeRecord>>,
}

impl Log {
    pub fn read(entries: impl IntoIterator<Item = DecisionLogEntry>) -> Self {
        let mut log = Log::default();
        for e in entries {
            match e {
                DecisionLogEntry::Decision(d) => log.decisions.push(*d),
                DecisionLogEntry::Outcome(o) => {
                    log.outcomes.entry((o.decision_id.clone(), o.offer_id.clone())).or_default().push(o)
                }
                DecisionLogEntry::Erased { .. } => {}
            }
        }
        log
    }

    /// The outcomes of `offer` of decision `d` at most `window_ms` after it: a flag per kind
    /// (`OUTCOMES` order) and the conversions' summed value.
    pub fn outcomes_of(&self, d: &DecisionRecord, offer: &str, window_ms: Millis) -> ([bool; 5], f64) {
        let (mut flags, mut value) = ([false; 5], 0.0);
        let key = (d.decision_id.clone(), offer.to_string());
        for o in self.outcomes.get(&key).into_iter().flatten().filter(|o| o.at >= d.at && o.at - d.at <= window_ms) {
            if let Some(k) = OUTCOMES.iter().position(|x| *x == o.outcome) {
                flags[k] = true;
            }
            if o.outcome == OutcomeKind::Conversion {
                value += o.value;
            }
        }
        (flags, value)
    }
}

/// The rows as CSV: fixed columns, then one `f_<feature>` column per feature name seen.
pub fn csv(rows: &[Row]) -> String {
    let names: BTreeSet<&str> = rows.iter().flat_map(|r| r.features.keys().map(String::as_str)).collect();
    let mut out = String::from(
        "decision_id,at,user,stage,channel,placement,segments,variants,rank,offer_id,score,selection_probability,impression,click,accept,dismiss,conversion,value,candidate_scores",
    );
    for n in &names {
        out += &format!(",f_{n}");
    }
    out.push('\n');
    for r in rows {
        let variants: Vec<String> = r.variants.iter().map(|(e, v)| format!("{e}={v}")).collect();
        let scores = serde_json::to_string(&r.candidate_scores).unwrap_or_default();
        let flags: Vec<&str> = r.outcomes.iter().map(|b| if *b { "1" } else { "0" }).collect();
        out += &[
            quote(&r.decision_id),
            r.at.to_string(),
            r.user.clone(),
            quote(&r.stage),
            quote(&r.channel),
            quote(&r.placement),
            quote(&r.segments.join(";")),
            quote(&variants.join(";")),
            r.rank.to_string(),
            quote(&r.offer_id),
            r.score.to_string(),
            r.selection_probability.to_string(),
            flags.join(","),
            r.value.to_string(),
            quote(&scores),
        ]
        .join(",");
        for n in &names {
            out += &format!(",{}", r.features.get(*n).map(|v| v.to_string()).unwrap_or_default());
        }
        out.push('\n');
    }
    out
}
