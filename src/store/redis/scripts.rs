//! The Lua scripts (in `scripts/*.lua`) and one typed argument struct per script that builds
//! its KEYS and ARGV in one place. Each `.lua` file documents, at its top, the KEYS and ARGV
//! its struct's `invocation` pushes, in the same order.
use super::codec::{self, encode_decision_offers, encode_event, encode_profile};
use super::keys::Keys;
use super::logrec;
use super::seal::UserKey;
use crate::domain::Millis;
use crate::domain::event::Event;
use crate::domain::experiment::Happening;
use crate::domain::funnel::{Count, counter_expiry, day_of};
use crate::domain::outcome::{OutcomeKind, OutcomeRecord};
use crate::domain::profile::{Transition, UserState};
use crate::store::{DecisionToWrite, DecisionWrite, OutcomeLink};
use redis::{Script, ScriptInvocation};

/// A user's recent-decision, contact and mark keys expire this long after they were last
/// written, so users who are decided on but never return leave nothing behind forever. Every
/// cap, contact limit, cooldown and attribution window is at most this long (config checks).
/// Exposures (`:x`) do not expire.
pub const DECISION_MEMORY_MS: i64 = 90 * 86_400_000;

const ATTRIBUTE: &str = include_str!("scripts/attribute.lua");
const USER_KEY: &str = include_str!("scripts/user_key.lua");
const COUNT: &str = include_str!("scripts/count.lua");
const LOG: &str = include_str!("scripts/log.lua");

/// A log stream's cap as the scripts take it (`log.lua`): trim to about `maxlen` entries, or in
/// archive mode never trim (the archiver does) and refuse writes at `maxlen` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCap {
    pub maxlen: u64,
    pub archive: bool,
}

impl LogCap {
    fn arg(self) -> String {
        if self.archive { format!("a{}", self.maxlen) } else { self.maxlen.to_string() }
    }
}

/// A script with the `attribute` helper inserted after its `#!lua` shebang line (which must
/// stay the first line). The shebang makes Redis 7 treat a script by its declared flags: one
/// without `no-writes` is refused with `OOM` before it runs when Redis is over `maxmemory`
/// (a script without a shebang is only stopped at its first write that is not allowed under
/// OOM, after a `DEL` may already have run); a shebang script must declare its keys, which
/// every script here does (all in the user's slot).
fn with_helpers(script: &str, helpers: &[&str]) -> String {
    let (shebang, body) = script.split_once('\n').unwrap_or((script, ""));
    format!("{shebang}\n{}{body}", helpers.concat())
}

/// The key a write seals the user's log entries with, and whether it was just generated
/// (`new`: stored if the user has none) or read from the store (`known`: must still be there).
#[derive(Debug, Clone, Copy)]
pub struct Sealing<'a> {
    pub key: &'a UserKey,
    pub new: bool,
}

impl Sealing<'_> {
    /// user_key.lua's argument: `new:kid:hex` or `known:kid:hex`.
    fn arg(&self) -> String {
        format!("{}:{}", if self.new { "new" } else { "known" }, self.key.stored())
    }
}

/// The store's scripts, hashed once (sent by SHA, loaded on a NOSCRIPT).
pub struct Scripts {
    commit: Script,
    decision: Script,
    outcome: Script,
    set_current: Script,
    rollback: Script,
    erase: Script,
}

impl Scripts {
    /// Every script, with the `attribute` helper prepended where it is called.
    pub fn new() -> Self {
        Self {
            commit: Script::new(&with_helpers(include_str!("scripts/commit.lua"), &[ATTRIBUTE, USER_KEY, COUNT, LOG])),
            decision: Script::new(&with_helpers(include_str!("scripts/decision.lua"), &[USER_KEY, COUNT, LOG])),
            outcome: Script::new(&with_helpers(include_str!("scripts/outcome.lua"), &[ATTRIBUTE, USER_KEY, LOG])),
            set_current: Script::new(include_str!("scripts/set_current.lua")),
            rollback: Script::new(include_str!("scripts/rollback.lua")),
            erase: Script::new(include_str!("scripts/erase.lua")),
        }
    }
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

/// What the `attribute` helper (attribute.lua) reads: the attribution windows of the user's
/// experiments and the visits and conversions to attribute.
#[derive(Debug, Clone, Copy)]
pub struct AttributionArgs<'a> {
    /// (experiment id, attribution window ms).
    pub windows: &'a [(String, Millis)],
    pub happenings: &'a [Happening],
}

impl AttributionArgs<'_> {
    /// ARGV: nwindows, (experiment, window ms)..., nhappenings, (kind v|c, time, value)...
    fn push(&self, inv: &mut ScriptInvocation<'_>) {
        inv.arg(self.windows.len());
        for (experiment, window) in self.windows {
            inv.arg(experiment).arg(window);
        }
        inv.arg(self.happenings.len());
        for h in self.happenings {
            match *h {
                Happening::Visit { at } => inv.arg("v").arg(at).arg(0),
                Happening::Conversion { at, value } => inv.arg("c").arg(at).arg(value),
            };
        }
    }
}

/// What the `count` helper (count.lua) applies: funnel and offer counters, in the user's
/// slot, with the day hashes' expiry.
#[derive(Debug, Clone, Copy)]
pub struct CountArgs<'a> {
    pub user: &'a str,
    pub counts: &'a [Count],
    /// Days a day's counters are kept.
    pub retention_days: u32,
}

impl CountArgs<'_> {
    /// KEYS: the in-stage-now hash, then each day's hash; ARGV: the days header (ndays,
    /// expire-at...), then the counter block (ncounts, (key index, field, increment)...).
    fn push(&self, inv: &mut ScriptInvocation<'_>, k: &Keys) {
        let days = count_days(self.counts);
        push_count_header(inv, k, self.user, &days, self.retention_days);
        push_count_block(inv, self.counts, &days);
    }
}

/// The days the counts fall on, sorted, each once (the day hashes a count.lua call names).
fn count_days<'c>(counts: impl IntoIterator<Item = &'c Count>) -> Vec<i64> {
    let mut days: Vec<i64> = counts.into_iter().filter_map(|c| c.day).collect();
    days.sort_unstable();
    days.dedup();
    days
}

/// count.lua's keys (the in-stage-now hash and the day hashes of `user`'s slot) and its days
/// header (ndays, expire-at...).
fn push_count_header(inv: &mut ScriptInvocation<'_>, k: &Keys, user: &str, days: &[i64], retention_days: u32) {
    inv.key(k.stage_counters(user));
    for d in days {
        inv.key(k.day_counters(user, *d));
    }
    inv.arg(days.len());
    for d in days {
        inv.arg(counter_expiry(*d, retention_days));
    }
}

/// A counter block: ncounts, (key index into `days`' hashes, field, increment)...
fn push_count_block(inv: &mut ScriptInvocation<'_>, counts: &[Count], days: &[i64]) {
    inv.arg(counts.len());
    for c in counts {
        inv.arg(count_key(c, days)).arg(&c.field).arg(increment(c.by));
    }
}

/// A count's key index: 0 for the in-stage-now hash, d for the d-th of `days`' hashes.
fn count_key(c: &Count, days: &[i64]) -> usize {
    c.day.and_then(|d| days.binary_search(&d).ok()).map_or(0, |i| i + 1)
}

/// The counter fields of a group of decisions, each named once (count.lua's fields table:
/// nfields, (key index, field)...); a decision's counts then name theirs by number, so the
/// script sums numbers instead of building and matching a string per count.
struct CountFields<'a> {
    /// The days the counts fall on (`count_days`).
    days: &'a [i64],
    /// (key index, field) in first-seen order; a field's number is its position plus one
    /// (a group has a few dozen at most: a scan beats hashing them).
    order: Vec<(usize, &'a str)>,
}

impl<'a> CountFields<'a> {
    fn new(counts: impl IntoIterator<Item = &'a Count>, days: &'a [i64]) -> Self {
        let mut fields = CountFields { days, order: vec![] };
        for c in counts {
            let f = (count_key(c, days), c.field.as_str());
            if !fields.order.contains(&f) {
                fields.order.push(f);
            }
        }
        fields
    }

    /// A count's field number (0 for one `new` did not see, which count.lua never applies).
    fn number(&self, c: &Count) -> usize {
        let f = (count_key(c, self.days), c.field.as_str());
        self.order.iter().position(|o| *o == f).map_or(0, |i| i + 1)
    }

    fn push(&self, inv: &mut ScriptInvocation<'_>) {
        inv.arg(self.order.len());
        for (key, field) in &self.order {
            inv.arg(key).arg(field);
        }
    }

    /// One decision's counts (all among `new`'s): nints, (field number, whole increment)...,
    /// nfloats, (field number, float increment)...
    fn push_block(&self, inv: &mut ScriptInvocation<'_>, counts: &[Count]) {
        for ints in [true, false] {
            let part = || counts.iter().filter(move |c| whole(c.by) == ints);
            inv.arg(part().count());
            for c in part() {
                inv.arg(self.number(c)).arg(increment(c.by));
            }
        }
    }
}

/// An increment as count.lua reads it: whole numbers as integers (HINCRBY), others as floats.
fn increment(by: f64) -> String {
    if whole(by) { format!("{}", by as i64) } else { format!("{by:e}") }
}

/// Whether an increment is applied with HINCRBY (else HINCRBYFLOAT).
fn whole(by: f64) -> bool {
    by.fract() == 0.0 && by.abs() < 1e15
}

/// The read of a user: profile, history, seen event ids, contacts and marks, sealing key.
/// Not a script: one pipeline of plain reads, one round trip, at a fraction of a script's
/// Redis CPU (issue 9: load.lua, which it replaces, cost ~18 µs; a read ~1 µs). Not a
/// `MULTI` either: Redis refuses every command queued in a transaction when it is over
/// `maxmemory`, and reads must keep working then. Atomicity is not needed: a commit applies
/// only if the version read is still current (optimistic, so a write between two of these
/// reads makes it reload), and a decision's write re-checks its guards atomically. Every key
/// is in the user's slot, so a cluster sends the pipeline to one node.
#[derive(Debug, Clone, Copy)]
pub struct LoadArgs<'a> {
    pub user: &'a str,
    /// Contacts since this time (and the marks) are read; None: neither is.
    pub contacts_since: Option<Millis>,
    /// Event ids to check against the dedup set.
    pub event_ids: &'a [&'a str],
    /// The stage history is read (`LRANGE`); when not, the loaded state has none.
    pub history: bool,
}

/// What the read returns: profile fields, transitions, seen flags, contacts with scores, marks,
/// the sealing key (`kid:key-hex`, None when the user has none).
pub type Loaded = (Vec<String>, Vec<String>, Vec<bool>, Vec<String>, Vec<String>, Option<String>);

impl LoadArgs<'_> {
    /// The pipeline: HGETALL profile, LRANGE history (when asked), GET sealing key, then
    /// ZMSCORE of the event ids (when asked), then ZRANGEBYSCORE contacts and HGETALL marks
    /// (when asked).
    pub fn pipeline(&self, k: &Keys) -> redis::Pipeline {
        let mut p = redis::pipe();
        p.ignore_errors();
        self.push(&mut p, k);
        p
    }

    /// Appends the read's commands to `p` (many users read in one round trip).
    pub fn push(&self, p: &mut redis::Pipeline, k: &Keys) {
        let u = self.user;
        p.cmd("HGETALL").arg(k.profile(u));
        if self.history {
            p.cmd("LRANGE").arg(k.journey(u)).arg(0).arg(-1);
        }
        p.cmd("GET").arg(k.user_key(u));
        if !self.event_ids.is_empty() {
            p.cmd("ZMSCORE").arg(k.dedup(u)).arg(self.event_ids);
        }
        if let Some(since) = self.contacts_since {
            p.cmd("ZRANGEBYSCORE").arg(k.contacts(u)).arg(since).arg("+inf").arg("WITHSCORES");
            p.cmd("HGETALL").arg(k.marks(u));
        }
    }

    /// How many replies the read's commands give.
    pub fn replies(&self) -> usize {
        2 + usize::from(self.history)
            + usize::from(!self.event_ids.is_empty())
            + 2 * usize::from(self.contacts_since.is_some())
    }

    /// The replies of `pipeline`, in its order.
    pub fn decode(&self, replies: Vec<redis::Value>) -> Result<Loaded, String> {
        let mut it = replies.into_iter();
        let mut next = |what: &str| it.next().ok_or_else(|| format!("the read returned no {what}"));
        let parse = |e: redis::ParsingError| e.to_string();
        let fields: Vec<String> = redis::from_redis_value(next("profile")?).map_err(parse)?;
        let transitions: Vec<String> =
            if self.history { redis::from_redis_value(next("history")?).map_err(parse)? } else { vec![] };
        let key: Option<String> = redis::from_redis_value(next("sealing key")?).map_err(parse)?;
        let seen = if self.event_ids.is_empty() {
            vec![]
        } else {
            let scores: Vec<Option<f64>> = redis::from_redis_value(next("seen ids")?).map_err(parse)?;
            scores.into_iter().map(|s| s.is_some()).collect()
        };
        let (contacts, marks) = if self.contacts_since.is_some() {
            (
                redis::from_redis_value(next("contacts")?).map_err(parse)?,
                redis::from_redis_value(next("marks")?).map_err(parse)?,
            )
        } else {
            (vec![], vec![])
        };
        Ok((fields, transitions, seen, contacts, marks, key))
    }
}

/// commit.lua: the optimistic write of a user's state.
#[derive(Debug, Clone, Copy)]
pub struct CommitArgs<'a> {
    pub user: &'a str,
    pub expected_version: u64,
    pub now: Millis,
    /// Event ids stored before this time are forgotten.
    pub dedup_cutoff: Millis,
    /// At most this many event ids are remembered per user.
    pub dedup_max: u64,
    pub journey_log_maxlen: LogCap,
    pub new_version: u64,
    /// The new state (its own transitions are ignored: `transitions` are appended).
    pub state: &'a UserState,
    /// The state the expected version stands for: only the fields that differ are written.
    /// None: the whole profile is replaced.
    pub before: Option<&'a UserState>,
    pub transitions: &'a [Transition],
    pub events: &'a [Event],
    pub attribution: AttributionArgs<'a>,
    /// The key the journey-log entries are sealed with (None only when there is no event).
    pub seal: Option<Sealing<'a>>,
    /// The funnel counters the events cause.
    pub counts: CountArgs<'a>,
}

impl CommitArgs<'_> {
    /// The invocation of commit.lua with these arguments.
    pub fn invocation<'s>(&self, scripts: &'s Scripts, k: &Keys) -> ScriptInvocation<'s> {
        let u = self.user;
        let mut inv = scripts.commit.prepare_invoke();
        inv.key(k.profile(u))
            .key(k.journey(u))
            .key(k.dedup(u))
            .key(k.journey_log(u))
            .key(k.exposures(u))
            .key(k.experiment_counters(u))
            .key(k.user_key(u))
            .key(k.keyring(u));
        inv.arg(self.expected_version.to_string())
            .arg(self.now)
            .arg(self.dedup_cutoff)
            .arg(self.dedup_max)
            .arg(self.journey_log_maxlen.arg())
            .arg(self.new_version.to_string())
            .arg(self.seal.filter(|_| !self.events.is_empty()).map(|s| s.arg()).unwrap_or_default());
        let (set, del) = match self.before {
            Some(before) => codec::profile_changes(before, self.state),
            None => (encode_profile(self.state), vec![]),
        };
        inv.arg(set.len());
        for (f, v) in &set {
            inv.arg(f).arg(v);
        }
        // -1: replace the whole profile.
        inv.arg(if self.before.is_some() { del.len() as i64 } else { -1 });
        for f in &del {
            inv.arg(f);
        }
        inv.arg(self.transitions.len());
        for t in self.transitions {
            inv.arg(serde_json::to_string(t).expect("transition serialises"));
        }
        // The whole entry sealed: only the key id is readable (`seal_event`). The store always
        // passes a key with events; without one, nothing is logged in clear.
        let events = if self.seal.is_some() { self.events } else { &[] };
        inv.arg(events.len());
        for (e, s) in events.iter().zip(std::iter::repeat(self.seal).flatten()) {
            inv.arg(&e.event_id).arg(2).arg("kid").arg(&s.key.kid).arg("enc").arg(seal_event(s.key, e));
        }
        self.counts.push(&mut inv, k);
        self.attribution.push(&mut inv);
        inv
    }
}

/// One decision of a decision.lua call.
#[derive(Debug, Clone, Copy)]
pub struct DecisionItem<'a> {
    /// The decision, its guard and its deadline.
    pub decision: DecisionToWrite<'a>,
    /// The key the log entry is sealed with.
    pub seal: Sealing<'a>,
    /// The offer counters the decision causes (`funnel::decision_counts`).
    pub counts: &'a [Count],
    /// The record's binary encoding (`logrec::encode`) and its dictionary (an index into
    /// `DecisionArgs::dicts`).
    pub encoded: &'a [u8],
    pub dict: usize,
}

/// decision.lua: logs decisions, each if its contact guard still holds. One call carries one
/// decision, or many (group commit, single node only: the shared keys are named after the
/// first decision's user).
#[derive(Debug, Clone, Copy)]
pub struct DecisionArgs<'a> {
    pub items: &'a [DecisionItem<'a>],
    /// How many recent decisions per user are kept for outcome linking.
    pub recent_decisions: u64,
    pub decision_log_maxlen: LogCap,
    /// Days a day's counters are kept.
    pub retention_days: u32,
    /// The records' dictionaries, each with whether it is known to be stored in the shard
    /// (it is then not sent).
    pub dicts: &'a [(&'a logrec::DictEntry, bool)],
}

impl DecisionArgs<'_> {
    /// The invocation of decision.lua with these arguments (`items` is not empty).
    pub fn invocation<'s>(&self, scripts: &'s Scripts, k: &Keys) -> ScriptInvocation<'s> {
        let u = self.items.first().map_or("", |d| d.decision.record.user_id.as_str());
        let mut inv = scripts.decision.prepare_invoke();
        inv.key(k.decision_log(u)).key(k.experiment_counters(u)).key(k.keyring(u)).key(k.log_dicts(u));
        inv.arg(self.recent_decisions)
            .arg(self.decision_log_maxlen.arg())
            .arg(DECISION_MEMORY_MS)
            .arg(self.dicts.len());
        for (dict, stored) in self.dicts {
            inv.arg(&dict.id).arg(if *stored { &[][..] } else { &dict.bytes[..] });
        }
        let days = count_days(self.items.iter().flat_map(|d| d.counts));
        push_count_header(&mut inv, k, u, &days, self.retention_days);
        let fields = CountFields::new(self.items.iter().flat_map(|d| d.counts), &days);
        fields.push(&mut inv);
        inv.arg(self.items.len());
        for d in self.items {
            Self::push_decision(&mut inv, k, d, &fields);
        }
        inv
    }

    /// One decision's keys and arguments.
    fn push_decision(inv: &mut ScriptInvocation<'_>, k: &Keys, d: &DecisionItem<'_>, fields: &CountFields<'_>) {
        let DecisionToWrite { record: rec, guard, write_by } = d.decision;
        let u = rec.user_id.as_str();
        inv.key(k.decisions(u)).key(k.contacts(u)).key(k.exposures(u)).key(k.user_key(u));
        inv.arg(d.dict + 1)
            .arg(&rec.decision_id)
            .arg(rec.at)
            .arg(encode_decision_offers(rec))
            .arg(d.seal.key.seal_raw(d.encoded))
            .arg(&guard.channel)
            .arg(guard.keep_since)
            .arg(write_by.map(|t| t.to_string()).unwrap_or_default())
            .arg(d.seal.arg())
            .arg(codec::raw_id(&rec.decision_id))
            .arg(hex::decode(&d.seal.key.kid).unwrap_or_else(|_| d.seal.key.kid.as_bytes().to_vec()))
            .arg(guard.channel_limits.len());
        for (max, since) in &guard.channel_limits {
            inv.arg(max).arg(since);
        }
        inv.arg(guard.offer_caps.len());
        for (offer, max, since) in &guard.offer_caps {
            inv.arg(offer).arg(max).arg(since);
        }
        inv.arg(guard.offers.len());
        for offer in &guard.offers {
            inv.arg(offer);
        }
        inv.arg(rec.assignments.len());
        for (experiment, variant) in &rec.assignments {
            inv.arg(experiment).arg(variant);
        }
        fields.push_block(inv, d.counts);
    }

    /// What decision.lua's answer for one decision means (None: sealed with a stale key, or
    /// the dictionary was missing: write again).
    pub fn outcome(answer: i64) -> Option<DecisionWrite> {
        match answer {
            1 => Some(DecisionWrite::Logged),
            -1 => Some(DecisionWrite::Late),
            -2 | -3 => None,
            _ => Some(DecisionWrite::GuardFailed),
        }
    }
}

/// outcome.lua: links an outcome to a recent decision, once per offer and outcome kind.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeArgs<'a> {
    pub record: &'a OutcomeRecord,
    pub decision_log_maxlen: LogCap,
    /// (experiment id, attribution window ms) of every experiment.
    pub windows: &'a [(String, Millis)],
    /// The key the log entry is sealed with.
    pub seal: Sealing<'a>,
    /// Days a day's counters are kept.
    pub counter_retention_days: u32,
}

impl OutcomeArgs<'_> {
    /// The invocation of outcome.lua with these arguments.
    pub fn invocation<'s>(&self, scripts: &'s Scripts, k: &Keys) -> ScriptInvocation<'s> {
        let rec = self.record;
        let u = rec.user_id.as_str();
        let mut inv = scripts.outcome.prepare_invoke();
        inv.key(k.decisions(u))
            .key(k.decision_log(u))
            .key(k.marks(u))
            .key(k.exposures(u))
            .key(k.experiment_counters(u))
            .key(k.user_key(u))
            .key(k.keyring(u))
            .key(k.legacy_decisions(u))
            .key(k.day_counters(u, day_of(rec.at)));
        inv.arg(&rec.decision_id)
            .arg(&rec.offer_id)
            .arg(self.seal.key.seal(serde_json::to_string(rec).expect("outcome record serialises").as_bytes()))
            .arg(self.decision_log_maxlen.arg())
            .arg(rec.outcome.as_str())
            .arg(rec.at)
            .arg(DECISION_MEMORY_MS)
            .arg(self.seal.arg())
            .arg(counter_expiry(day_of(rec.at), self.counter_retention_days))
            .arg(rec.value);
        // A click is a visit and a conversion a conversion for the user's experiments.
        let happening = match rec.outcome {
            OutcomeKind::Click => Some(Happening::Visit { at: rec.at }),
            OutcomeKind::Conversion => Some(Happening::Conversion { at: rec.at, value: rec.value }),
            _ => None,
        };
        AttributionArgs { windows: self.windows, happenings: happening.as_slice() }.push(&mut inv);
        inv
    }

    /// What outcome.lua's answer means (None: sealed with a stale key, nothing written).
    pub fn link(answer: i64) -> Option<OutcomeLink> {
        (answer != -2).then(|| Self::link_of(answer))
    }

    fn link_of(answer: i64) -> OutcomeLink {
        match answer {
            1 => OutcomeLink::Linked,
            2 => OutcomeLink::Duplicate,
            0 => OutcomeLink::UnknownDecision,
            _ => OutcomeLink::OfferNotInDecision,
        }
    }
}

/// erase.lua: every per-user key, and the user's sealing key from the keyring.
#[derive(Debug, Clone, Copy)]
pub struct EraseArgs<'a> {
    pub user: &'a str,
}

impl EraseArgs<'_> {
    /// The invocation of erase.lua with these arguments.
    pub fn invocation<'s>(&self, scripts: &'s Scripts, k: &Keys) -> ScriptInvocation<'s> {
        let mut inv = scripts.erase.prepare_invoke();
        for key in k.all_of_user(self.user) {
            inv.key(key);
        }
        inv.key(k.keyring(self.user)).key(k.stage_counters(self.user));
        inv
    }
}

/// A journey-log entry's fields (`encode_event`) as a JSON object, sealed.
fn seal_event(key: &UserKey, e: &Event) -> String {
    let fields: std::collections::BTreeMap<&str, String> = encode_event(e).into_iter().collect();
    key.seal(serde_json::to_string(&fields).expect("string map serialises").as_bytes())
}

/// set_current.lua: points a model's `current` at a version.
#[derive(Debug, Clone, Copy)]
pub struct SetCurrentArgs<'a> {
    pub model: &'a str,
    pub version: &'a str,
}

impl SetCurrentArgs<'_> {
    /// The invocation of set_current.lua with these arguments.
    pub fn invocation<'s>(&self, scripts: &'s Scripts, k: &Keys) -> ScriptInvocation<'s> {
        let mut inv = scripts.set_current.prepare_invoke();
        inv.key(k.model_current(self.model)).key(k.model_history(self.model)).arg(self.version);
        inv
    }
}

/// rollback.lua: moves a model's `current` back to the previous version.
#[derive(Debug, Clone, Copy)]
pub struct RollbackArgs<'a> {
    pub model: &'a str,
}

impl RollbackArgs<'_> {
    /// The invocation of rollback.lua with these arguments.
    pub fn invocation<'s>(&self, scripts: &'s Scripts, k: &Keys) -> ScriptInvocation<'s> {
        let mut inv = scripts.rollback.prepare_invoke();
        inv.key(k.model_current(self.model)).key(k.model_history(self.model));
        inv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each script's header names the struct that builds its arguments, and the helper is
    /// prepended only where it is called.
    #[test]
    fn every_script_documents_its_arguments() {
        for (file, text, args) in [
            ("commit.lua", include_str!("scripts/commit.lua"), "CommitArgs"),
            ("decision.lua", include_str!("scripts/decision.lua"), "DecisionArgs"),
            ("outcome.lua", include_str!("scripts/outcome.lua"), "OutcomeArgs"),
            ("set_current.lua", include_str!("scripts/set_current.lua"), "SetCurrentArgs"),
            ("rollback.lua", include_str!("scripts/rollback.lua"), "RollbackArgs"),
            ("erase.lua", include_str!("scripts/erase.lua"), "EraseArgs"),
        ] {
            assert!(text.contains(&format!("KEYS ({args})")), "{file} documents its KEYS");
            assert!(text.contains("-- ARGV"), "{file} documents its ARGV");
            assert_eq!(text.contains("attribute("), text.contains("attribute.lua"), "{file}");
            assert_eq!(text.contains("user_key("), text.contains("user_key.lua"), "{file}");
            assert_eq!(text.contains("count("), text.contains("count.lua"), "{file}");
            // Declared flags, so Redis checks OOM before a writing script runs.
            let first = text.lines().next().unwrap_or_default();
            let flags = match file {
                // An erasure only frees memory: it must work when Redis is full.
                "erase.lua" => "#!lua flags=allow-oom",
                _ => "#!lua",
            };
            assert_eq!(first, flags, "{file}");
        }
    }

    #[test]
    fn outcome_answers() {
        assert_eq!(OutcomeArgs::link(-2), None, "a stale sealing key");
        let links: Vec<OutcomeLink> = [1, 2, 0, -1].into_iter().filter_map(OutcomeArgs::link).collect();
        assert_eq!(
            links,
            [
                OutcomeLink::Linked,
                OutcomeLink::Duplicate,
                OutcomeLink::UnknownDecision,
                OutcomeLink::OfferNotInDecision
            ]
        );
    }
}
