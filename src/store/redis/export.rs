//! Reading the log streams back (exports, `touchpoint replay`): page by page, shard by shard,
//! opening each sealed entry with its user's key from the keyring of the shard's slot. Entries
//! whose key was erased (`DeleteProfile`) stay unreadable.
use super::codec::{self, Keyring, StreamPage};
use super::seal::UserKey;
use super::{RedisStore, StoreError};
use futures::StreamExt;

/// Receives the fields of each stream entry during an export, with the keys of its page.
pub(super) type FieldSink<'a> = dyn FnMut(&codec::EntryFields, &Keyring) + Send + 'a;

/// Entries asked for per XRANGE during an export.
const STREAM_PAGE: usize = 1000;

/// Shards read concurrently during an export or a counter sum. Each read keeps its own
/// command timeout, so this stays small enough that the last of a burst is answered in time on
/// a loaded machine (64 timed out in the full test suite on 2 busy cores).
pub(super) const SHARDS_IN_FLIGHT: usize = 16;

impl RedisStore {
    /// One page of a stream, after `start` (`-`: from the beginning).
    async fn stream_page(&self, key: &str, start: &str) -> Result<StreamPage, StoreError> {
        self.run(|mut c| {
            let cmd = redis::cmd("XRANGE").arg(key).arg(start).arg("+").arg("COUNT").arg(STREAM_PAGE).clone();
            async move { cmd.query_async(&mut c).await }
        })
        .await
    }

    /// What opens a page's entries: its users' keys from the keyring of the shard's slot (an
    /// HMGET) and, for decision records, the shard's dictionaries (an HGETALL of the hash beside
    /// the keyring); one round trip.
    pub(super) async fn page_keys(&self, keyring: &str, page: &StreamPage) -> Result<Keyring, StoreError> {
        let ids = codec::key_ids(page);
        let dicts = codec::names_dicts(page).then(|| self.keys.log_dicts_beside(keyring));
        if ids.is_empty() && dicts.is_none() {
            return Ok(Keyring::default());
        }
        let (found, dict_fields): (Vec<Option<String>>, super::logrec::DictFields) = self
            .run(|mut c| {
                let mut p = redis::pipe();
                if !ids.is_empty() {
                    p.cmd("HMGET").arg(keyring).arg(&ids);
                }
                if let Some(d) = &dicts {
                    p.cmd("HGETALL").arg(d);
                }
                let want_keys = !ids.is_empty();
                let want_dicts = dicts.is_some();
                async move {
                    let mut v = p.query_async::<Vec<redis::Value>>(&mut c).await?.into_iter();
                    let found = match want_keys {
                        false => vec![],
                        true => redis::from_redis_value(v.next().unwrap_or(redis::Value::Nil))?,
                    };
                    let dicts = match want_dicts {
                        true => redis::from_redis_value(v.next().unwrap_or(redis::Value::Nil))?,
                        false => vec![],
                    };
                    Ok((found, dicts))
                }
            })
            .await?;
        let mut keys =
            Keyring { dicts: super::logrec::dicts_in(dict_fields).map_err(StoreError::Corrupt)?, ..Default::default() };
        for (kid, hex) in ids.iter().zip(found) {
            if let Some(hex) = hex {
                let key = UserKey::from_parts(kid, &hex)
                    .ok_or_else(|| StoreError::Corrupt(format!("keyring entry {kid} is not a key")))?;
                keys.keys.insert(kid.clone(), key);
            }
        }
        Ok(keys)
    }

    /// Every entry of every shard (`(stream, keyring)` pairs), oldest first within a shard.
    pub(super) async fn export_stream(
        &self,
        shards: Vec<(String, String)>,
        sink: &mut FieldSink<'_>,
    ) -> Result<u64, StoreError> {
        let mut n = 0u64;
        // On a cluster a log is 16,384 shards, mostly empty: ask for the first page of many at
        // once (the connection is multiplexed), in shard order, then page through long shards.
        let mut first_pages = futures::stream::iter(shards)
            .map(|(key, ring)| async move {
                let page = self.stream_page(&key, "-").await;
                (key, ring, page)
            })
            .buffered(SHARDS_IN_FLIGHT);
        while let Some((key, ring, page)) = first_pages.next().await {
            let mut page = page?;
            while let Some((last, _)) = page.last() {
                let start = format!("({last}");
                let keys = self.page_keys(&ring, &page).await?;
                for (_, fields) in &page {
                    sink(fields, &keys);
                    n += 1;
                }
                if page.len() < STREAM_PAGE {
                    break;
                }
                page = self.stream_page(&key, &start).await?;
            }
        }
        Ok(n)
    }
}
