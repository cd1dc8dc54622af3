//! Recording journey events: per user one read, the journey engine, one atomic
//! conditional write; idempotent on event ids.
use super::{Engine, Error, MAX_COMMIT_ATTEMPTS, now_ms};
use crate::domain::Millis;
use crate::domain::event::Event;
use crate::domain::experiment::Happening;
use crate::domain::funnel;
use crate::domain::journey::CONSENT_CHANNEL_PROPERTY;
use crate::domain::limits::FieldError;
use crate::domain::policy::Policy;
use crate::domain::profile::Transition;
use crate::store::{Attribution, UserWrite, new_version};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};

/// Users of one `RecordEvents` call written concurrently.
const WRITE_CONCURRENCY: usize = 64;

/// What a `RecordEvents` call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Events newly stored.
    pub accepted: u32,
    /// Events already stored (or repeated in the call), skipped.
    pub duplicates: u32,
}

impl Engine {
    /// Applies events: per user, one read, the journey engine, one atomic conditional write.
    /// Events already stored (by `event_id`, per user) are counted as duplicates and skipped.
    /// If the store fails part-way, the call fails: users written before the failure keep
    /// their events, and a retry of the whole call reports those as duplicates.
    pub async fn record_events(&self, events: Vec<Event>) -> Result<RecordSummary, Error> {
        let snap = self.snapshot();
        for (i, e) in events.iter().enumerate() {
            if !e.channel.is_empty() {
                Self::check_channel(&snap.config, &format!("events[{i}].channel"), &e.channel)?;
            }
            if snap.config.policy.journey.is_consent_event(&e.event_type) {
                let field = format!("events[{i}].properties.{CONSENT_CHANNEL_PROPERTY}");
                match e.properties.get(CONSENT_CHANNEL_PROPERTY) {
                    Some(channel) => Self::check_channel(&snap.config, &field, channel)?,
                    None => {
                        return Err(
                            FieldError::new(field, "is required for a consent event (the channel it is for)").into()
                        );
                    }
                }
            }
        }
        let mut summary = RecordSummary::default();
        let mut by_user: HashMap<String, Vec<Event>> = HashMap::new();
        let mut ids: HashSet<(String, String)> = HashSet::new();
        for e in events {
            if ids.insert((e.user_id.clone(), e.event_id.clone())) {
                by_user.entry(e.user_id.clone()).or_default().push(e);
            } else {
                summary.duplicates += 1;
            }
        }
        let policy = &snap.config.policy;
        let windows = policy.attribution_windows();
        let windows = &windows;
        let mut results = futures::stream::iter(by_user)
            .map(|(user, evs)| async move { self.apply_user_events(policy, windows, &user, evs).await })
            .buffer_unordered(WRITE_CONCURRENCY);
        let mut first_error = None;
        while let Some(r) = results.next().await {
            match r {
                Ok((accepted, duplicates)) => {
                    summary.accepted += accepted;
                    summary.duplicates += duplicates;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    async fn apply_user_events(
        &self,
        policy: &Policy,
        windows: &[(String, Millis)],
        user: &str,
        events: Vec<Event>,
    ) -> Result<(u32, u32), Error> {
        let journey = &policy.journey;
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let _turn = self.lock_user(user).await;
        for attempt in 0..MAX_COMMIT_ATTEMPTS {
            if attempt > 0 {
                Self::backoff(attempt).await;
            }
            let loaded = self.store.load_user_without_history(user, &ids, None).await?;
            let fresh: Vec<&Event> =
                events.iter().zip(&loaded.seen).filter(|(_, seen)| !**seen).map(|(e, _)| e).collect();
            let duplicates = (events.len() - fresh.len()) as u32;
            if fresh.is_empty() {
                return Ok((0, duplicates));
            }
            let before = loaded.state;
            let mut state = before.clone();
            let (transitions, mut counts): (Vec<Transition>, _) = funnel::apply_events(journey, &mut state, &fresh);
            // The funnel per segment: the segments the user is in after these events, worked
            // out only when something is counted by segment (a new user, a move, a lapse).
            if !policy.segments.is_empty() && counts.iter().any(|c| c.day.is_some()) {
                let segments = crate::domain::decision::segments_of(policy, &state, now_ms());
                counts.extend(funnel::by_segment(&counts, &segments));
            }
            let applied: Vec<Event> = fresh.iter().map(|e| (*e).clone()).collect();
            // Visits and purchases among the new events count for the user's experiments.
            let happenings: Vec<Happening> = applied
                .iter()
                .filter_map(|e| {
                    if e.event_type == journey.purchase_event {
                        Some(Happening::Conversion { at: e.timestamp, value: e.value })
                    } else if policy.visit_events.contains(&e.event_type) {
                        Some(Happening::Visit { at: e.timestamp })
                    } else {
                        None
                    }
                })
                .collect();
            let write = UserWrite {
                state: &state,
                before: Some(&before),
                new_transitions: &transitions,
                events: &applied,
                now: now_ms(),
                new_version: new_version(),
                attribution: Attribution { windows, happenings: &happenings },
                counts: &counts,
            };
            if self.store.commit_user(user, loaded.version, write).await? {
                return Ok((applied.len() as u32, duplicates));
            }
        }
        Err(Error::Contention(user.to_string()))
    }
}
