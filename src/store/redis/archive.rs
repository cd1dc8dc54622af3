//! The archiver's side of the log streams (`touchpoint archive`, `crate::archive`): reading a
//! shard through the consumer group `archive`, acknowledging and trimming what was archived,
//! and opening archived entries with the live keyrings.
use super::codec::{self, StreamPage};
use super::{RedisStore, StoreError};
use crate::archive::{ArchivedEntry, next_id};
use crate::domain::event::Event;
use crate::store::DecisionLogEntry;
use std::collections::BTreeMap;

/// The consumer group the archiver reads with.
pub const GROUP: &str = "archive";
/// Its one consumer: one archiver runs per Redis (or cluster).
const CONSUMER: &str = "archiver";

impl RedisStore {
    /// Every log shard: (`journey` or `decision`, stream key).
    pub fn log_streams(&self) -> Vec<(&'static str, String)> {
        let journey = self.keys.journey_log_shards().into_iter().map(|(s, _)| ("journey", s));
        journey.chain(self.keys.decision_log_shards().into_iter().map(|(s, _)| ("decision", s))).collect()
    }

    /// The log shards that exist now (on a cluster most of the 16,384 slots of each log are
    /// empty): asked many at once, as the exports do.
    pub async fn existing_log_streams(&self) -> Result<Vec<(&'static str, String)>, StoreError> {
        use futures::StreamExt;
        let mut checks = futures::stream::iter(self.log_streams())
            .map(|(log, stream)| async move {
                let exists: Result<i64, StoreError> = self
                    .run(|mut c| {
                        let cmd = redis::cmd("EXISTS").arg(&stream).clone();
                        async move { cmd.query_async(&mut c).await }
                    })
                    .await;
                exists.map(|n| (n > 0).then_some((log, stream)))
            })
            .buffered(super::export::SHARDS_IN_FLIGHT);
        let mut out = Vec::new();
        while let Some(found) = checks.next().await {
            out.extend(found?);
        }
        Ok(out)
    }

    /// Up to `count` entries of a shard for the archiver: first those delivered before and
    /// never acknowledged (an archiver that stopped between reading and acknowledging), then
    /// new ones. Creates the group at the stream's start on first use (never the stream: a
    /// shard with no stream gives nothing).
    pub async fn archive_read(&self, stream: &str, count: usize) -> Result<StreamPage, StoreError> {
        let created = self
            .run(|mut c| {
                let cmd = redis::cmd("XGROUP").arg("CREATE").arg(stream).arg(GROUP).arg("0").clone();
                async move { cmd.query_async::<()>(&mut c).await }
            })
            .await;
        match created {
            Err(StoreError::Internal(e)) if e.contains("BUSYGROUP") => {}
            Err(StoreError::Internal(e)) if e.contains("requires the key to exist") => return Ok(Vec::new()),
            other => other?,
        }
        for start in ["0", ">"] {
            let page: Option<Vec<(String, StreamPage)>> = self
                .run(|mut c| {
                    let cmd = redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(GROUP)
                        .arg(CONSUMER)
                        .arg("COUNT")
                        .arg(count)
                        .arg("STREAMS")
                        .arg(stream)
                        .arg(start)
                        .clone();
                    async move { cmd.query_async(&mut c).await }
                })
                .await?;
            let page: StreamPage = page.into_iter().flatten().flat_map(|(_, entries)| entries).collect();
            if !page.is_empty() {
                return Ok(page);
            }
        }
        Ok(Vec::new())
    }

    /// Acknowledges archived entries (in id order) and trims the stream up to the last of
    /// them: only what is archived leaves Redis.
    pub async fn archive_ack(&self, stream: &str, ids: &[String]) -> Result<(), StoreError> {
        let Some(minid) = ids.last().and_then(|l| next_id(l)) else { return Ok(()) };
        self.run(|mut c| {
            let mut p = redis::pipe();
            p.cmd("XACK").arg(stream).arg(GROUP).arg(ids).ignore();
            p.cmd("XTRIM").arg(stream).arg("MINID").arg(&minid).ignore();
            async move { p.query_async::<()>(&mut c).await }
        })
        .await
    }

    /// Archived entries grouped by their shard's stream, with the keys of each group (one
    /// HMGET per shard), decoded by `decode` (None: left out).
    async fn open_archived<T>(
        &self,
        entries: &[ArchivedEntry],
        shards: Vec<(String, String)>,
        decode: impl Fn(&codec::EntryFields, &codec::Keyring) -> Result<Option<T>, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let rings: BTreeMap<String, String> = shards.into_iter().collect();
        let mut by_stream: BTreeMap<&str, StreamPage> = BTreeMap::new();
        for e in entries {
            by_stream.entry(e.stream.as_str()).or_default().push((e.id.clone(), e.fields.clone()));
        }
        let mut out = Vec::new();
        for (stream, page) in by_stream {
            let ring = rings
                .get(stream)
                .ok_or_else(|| StoreError::Corrupt(format!("archived stream {stream} is not a log of this store")))?;
            let keys = self.page_keys(ring, &page).await?;
            for (_, fields) in &page {
                out.extend(decode(fields, &keys)?);
            }
        }
        Ok(out)
    }

    /// Archived decision-log entries, opened with the live keyrings (erased users' entries
    /// come back as `Erased`).
    pub async fn open_archived_decisions(
        &self,
        entries: &[ArchivedEntry],
    ) -> Result<Vec<DecisionLogEntry>, StoreError> {
        let shards = self.keys.decision_log_shards();
        self.open_archived(entries, shards, |f, k| codec::decode_decision_log_entry(f, k).map(Some)).await
    }

    /// Archived journey-log entries, opened with the live keyrings (erased users' entries are
    /// left out).
    pub async fn open_archived_events(&self, entries: &[ArchivedEntry]) -> Result<Vec<Event>, StoreError> {
        self.open_archived(entries, self.keys.journey_log_shards(), codec::decode_sealed_event).await
    }

    /// The decision log as the trainer reads it: the archive under `dir` (opened with the live
    /// keyrings), then the live streams; each decision and outcome once (an entry archived but
    /// not yet trimmed is in both).
    pub async fn decision_log_with_archive(&self, dir: &std::path::Path) -> Result<Vec<DecisionLogEntry>, StoreError> {
        let archived = crate::archive::read(dir, "decision").map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut out = self.open_archived_decisions(&archived).await?;
        crate::store::Store::export_decision_log(self, &mut |e| out.push(e)).await?;
        let mut seen = std::collections::HashSet::new();
        out.retain(|e| {
            seen.insert(match e {
                DecisionLogEntry::Decision(d) => format!("d|{}", d.decision_id),
                DecisionLogEntry::Outcome(o) => {
                    format!("o|{}|{}|{}|{}", o.decision_id, o.offer_id, o.outcome.as_str(), o.at)
                }
                DecisionLogEntry::Erased { id } => format!("e|{id}"),
            })
        });
        Ok(out)
    }
}
