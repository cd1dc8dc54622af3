//! `touchpoint archive`: the log streams into rolling Parquet files (`touchpoint::archive`),
//! read through the consumer group `archive`, acknowledged and trimmed only once the file is
//! on disk. Run it with `redis.archive = true` on the servers, so only it trims the logs.
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;
use touchpoint::archive::{ArchivedEntry, high_water_mark, parse_id, shard_path, write_batch};
use touchpoint::store::Retention;
use touchpoint::store::redis::RedisStore;

#[derive(clap::Args)]
pub struct Args {
    /// The servers' config (its [redis] names the store).
    #[arg(long)]
    config: PathBuf,
    /// Redis URL (overrides redis.url).
    #[arg(long)]
    redis_url: Option<String>,
    /// The archive directory.
    #[arg(long, default_value = "archive")]
    out: PathBuf,
    /// Entries per file at most.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Pause between passes over the logs when there is nothing to archive.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// One pass over every log shard, then exit.
    #[arg(long)]
    once: bool,
}

/// Archives one shard until it has nothing new; returns the entries written.
async fn archive_shard(store: &RedisStore, dir: &Path, log: &str, stream: &str, batch: usize) -> anyhow::Result<u64> {
    let mut written = 0u64;
    loop {
        let page = store.archive_read(stream, batch).await?;
        if page.is_empty() {
            return Ok(written);
        }
        // Entries at or below the shard's high-water mark were archived before a restart:
        // acknowledged again, never written twice.
        let archived = high_water_mark(&shard_path(dir, log, stream))?;
        // An entry trimmed away between delivery and acknowledgement comes back with no
        // fields (possible only with `redis.archive` off): acknowledged, not archived.
        let gone = page.iter().filter(|(_, fields)| fields.is_empty()).count();
        if gone > 0 {
            tracing::warn!(stream, entries = gone, "delivered entries were trimmed before they were archived");
        }
        let fresh: Vec<ArchivedEntry> = page
            .iter()
            .filter(|(id, fields)| parse_id(id) > archived && !fields.is_empty())
            .map(|(id, fields)| ArchivedEntry {
                log: log.to_string(),
                stream: stream.to_string(),
                id: id.clone(),
                fields: fields.clone(),
            })
            .collect();
        if !fresh.is_empty() {
            let path = write_batch(dir, log, stream, &fresh)?;
            written += fresh.len() as u64;
            tracing::info!(file = %path.display(), entries = fresh.len(), "archived");
            metrics::counter!("touchpoint_archived_entries_total", "log" => log.to_string())
                .increment(fresh.len() as u64);
        }
        // A test hook standing for a crash between writing a file and acknowledging it.
        if std::env::var_os("TOUCHPOINT_ARCHIVE_EXIT_BEFORE_ACK").is_some() {
            std::process::exit(9);
        }
        let ids: Vec<String> = page.into_iter().map(|(id, _)| id).collect();
        store.archive_ack(stream, &ids).await?;
    }
}

pub async fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let overrides = args.redis_url.map(|u| ("TOUCHPOINT_REDIS_URL".to_string(), u)).into_iter().collect();
    let (cfg, _) = match super::load_config(&args.config, overrides) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if cfg.file.redis.url.starts_with("memory://") {
        anyhow::bail!("{}: the store is memory://, which has no log streams to archive", args.config.display());
    }
    if !cfg.file.redis.archive {
        tracing::warn!(
            "redis.archive is off: the servers trim the logs at their caps themselves, so entries can leave Redis before they are archived"
        );
    }
    let store = RedisStore::connect(&cfg.file.redis, Retention::from_config(&cfg.file.redis)).await?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    loop {
        let mut written = 0;
        for (log, stream) in store.existing_log_streams().await? {
            written += archive_shard(&store, &args.out, log, &stream, args.batch.max(1)).await?;
        }
        if args.once {
            println!("archived {written} entries to {}", args.out.display());
            return Ok(std::process::ExitCode::SUCCESS);
        }
        if written == 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
    }
}
