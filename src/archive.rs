//! The archive of the log streams (issue 10, point 1): rolling Parquet files, one per batch
//! of one stream shard, in `<dir>/<log>/<shard>/<first-id>_<last-id>.parquet` (zstd).
//!
//! **Why Parquet, without Arrow.** The files are read by the trainer and by any analytics tool
//! (DuckDB, pandas, Spark) without Touchpoint; Parquet is the columnar format they all read.
//! The `parquet` crate's own column writer is used directly (no `arrow` feature): it builds in
//! about 15 s here, against minutes for the Arrow stack, and the schema is small and fixed.
//!
//! **Columns:** `log` (journey or decision), `stream` (the Redis stream key of the shard),
//! `entry_id` (the stream entry id, `ms-seq`), `ms` (its milliseconds), `kind` (event,
//! decision or outcome), `kid` (the sealing key's id) and `fields` (the entry's field/value
//! pairs, length-prefixed: u32 name length, name, u32 value length, value, little-endian).
//! Entries stay **sealed** as they are in Redis: an archived entry is read with its user's key
//! from the live keyring, so erasing a user (`DeleteProfile` shreds the key) makes their
//! archived entries unreadable too, with no rewrite of the archive.
//!
//! **Exactly once.** A batch is written to a temporary file, synced and renamed into place
//! before the archiver acknowledges its entries and trims the stream. After a crash the
//! unacknowledged entries are delivered again; those at or below the shard's high-water mark
//! (the largest last id of its files) were archived already and are only acknowledged.
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::RowAccessor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files' schema.
const SCHEMA: &str = "message touchpoint_log_entry {
  REQUIRED BYTE_ARRAY log (UTF8);
  REQUIRED BYTE_ARRAY stream (UTF8);
  REQUIRED BYTE_ARRAY entry_id (UTF8);
  REQUIRED INT64 ms;
  REQUIRED BYTE_ARRAY kind (UTF8);
  REQUIRED BYTE_ARRAY kid (UTF8);
  REQUIRED BYTE_ARRAY fields;
}";

/// One stream entry, as archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEntry {
    /// `journey` or `decision`.
    pub log: String,
    /// The Redis stream key of its shard.
    pub stream: String,
    /// The stream entry id (`ms-seq`).
    pub id: String,
    /// The entry's fields, as in Redis (sealed).
    pub fields: Vec<(String, Vec<u8>)>,
}

/// A stream entry id, ordered as Redis orders them.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The id just after `id` (for `XTRIM MINID`, which keeps ids at or above it).
pub fn next_id(id: &str) -> Option<String> {
    let (ms, seq) = parse_id(id)?;
    Some(if seq == u64::MAX { format!("{}-0", ms + 1) } else { format!("{ms}-{}", seq + 1) })
}

/// A shard's directory name: the stream key with characters unsafe in file names replaced.
fn shard_dir(stream: &str) -> String {
    stream.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Where one shard's files go.
pub fn shard_path(dir: &Path, log: &str, stream: &str) -> PathBuf {
    dir.join(log).join(shard_dir(stream))
}

/// The largest last id among a shard's files: everything at or below it is archived.
pub fn high_water_mark(shard: &Path) -> std::io::Result<Option<(u64, u64)>> {
    let mut best = None;
    let entries = match std::fs::read_dir(shard) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for e in entries {
        let name = e?.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".parquet") else { continue };
        if let Some(last) = stem.split_once('_').and_then(|(_, last)| parse_id(last)) {
            best = best.max(Some(last));
        }
    }
    Ok(best)
}

fn encode_fields(fields: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend(name.as_bytes());
        out.extend((value.len() as u32).to_le_bytes());
        out.extend(value);
    }
    out
}

fn decode_fields(mut b: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let take = |b: &mut &[u8]| -> Option<Vec<u8>> {
        let n = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let v = b.get(4..4 + n)?.to_vec();
        *b = &b[4 + n..];
        Some(v)
    };
    let mut out = Vec::new();
    while !b.is_empty() {
        let name = String::from_utf8(take(&mut b)?).ok()?;
        out.push((name, take(&mut b)?));
    }
    Some(out)
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    fields.iter().find(|(n, _)| n == name).map_or(&[][..], |(_, v)| v.as_slice())
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes one batch of one shard (entries in id order) as a Parquet file, atomically: a
/// temporary file, synced, renamed into place, the directory synced. Returns its path.
pub fn write_batch(dir: &Path, log: &str, stream: &str, entries: &[ArchivedEntry]) -> std::io::Result<PathBuf> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err(io("an empty batch"));
    };
    let shard = shard_path(dir, log, stream);
    std::fs::create_dir_all(&shard)?;
    let path = shard.join(format!("{}_{}.parquet", first.id, last.id));
    let tmp = shard.join(format!(".{}_{}.parquet.tmp", first.id, last.id));
    let schema = Arc::new(parquet::schema::parser::parse_message_type(SCHEMA).map_err(io)?);
    let props = Arc::new(
        WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(io)?)).build(),
    );
    let file = std::fs::File::create(&tmp)?;
    let mut writer = SerializedFileWriter::new(file, schema, props).map_err(io)?;
    let mut rg = writer.next_row_group().map_err(io)?;
    let text = |f: &dyn Fn(&ArchivedEntry) -> Vec<u8>| -> Vec<ByteArray> {
        entries.iter().map(|e| ByteArray::from(f(e))).collect()
    };
    let columns: Vec<Vec<ByteArray>> = vec![
        text(&|e| e.log.as_bytes().to_vec()),
        text(&|e| e.stream.as_bytes().to_vec()),
        text(&|e| e.id.as_bytes().to_vec()),
        Vec::new(), // ms: INT64, below
        text(&|e| {
            let kind = field(&e.fields, "kind");
            if kind.is_empty() { b"event".to_vec() } else { kind.to_vec() }
        }),
        // Hex text, as the keyring names it (decision entries store it as 16 raw bytes).
        text(&|e| match field(&e.fields, "kid") {
            raw if raw.len() == 16 => hex::encode(raw).into_bytes(),
            kid => kid.to_vec(),
        }),
        text(&|e| encode_fields(&e.fields)),
    ];
    let ms: Vec<i64> = entries.iter().map(|e| parse_id(&e.id).map_or(0, |(ms, _)| ms as i64)).collect();
    let mut k = 0;
    while let Some(mut col) = rg.next_column().map_err(io)? {
        if k == 3 {
            col.typed::<Int64Type>().write_batch(&ms, None, None).map_err(io)?;
        } else {
            col.typed::<ByteArrayType>().write_batch(&columns[k], None, None).map_err(io)?;
        }
        col.close().map_err(io)?;
        k += 1;
    }
    rg.close().map_err(io)?;
    let file = writer.into_inner().map_err(io)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(&shard)?.sync_all()?;
    Ok(path)
}

/// Every archived entry under `dir` (temporary files of an interrupted write skipped), per
/// file in id order; `log` keeps one log (`journey` or `decision`).
pub fn read(dir: &Path, log: &str) -> std::io::Result<Vec<ArchivedEntry>> {
    let mut out = Vec::new();
    let root = dir.join(log);
    let shards = match std::fs::read_dir(&root) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for shard in shards {
        for f in std::fs::read_dir(shard?.path())? {
            let p = f?.path();
            if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        let reader = SerializedFileReader::new(std::fs::File::open(&p)?).map_err(io)?;
        for row in reader.get_row_iter(None).map_err(io)? {
            let row = row.map_err(io)?;
            let bad = || io(format!("{}: a row does not decode", p.display()));
            let fields = decode_fields(row.get_bytes(6).map_err(io)?.data()).ok_or_else(bad)?;
            out.push(ArchivedEntry {
                log: row.get_string(0).map_err(io)?.clone(),
                stream: row.get_string(1).map_err(io)?.clone(),
                id: row.get_string(2).map_err(io)?.clone(),
                fields,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_sets_the_high_water_mark() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |id: &str, kind: Option<&str>| ArchivedEntry {
            log: "decision".into(),
            stream: "tp:dlog".into(),
            id: id.into(),
            fields: kind
                .map(|k| ("kind".to_string(), k.as_bytes().to_vec()))
                .into_iter()
                .chain([("kid".to_string(), b"k1".to_vec()), ("bin".to_string(), vec![0, 255, 7])])
                .collect(),
        };
        let batch = vec![entry("5-0", Some("decision")), entry("5-1", Some("outcome")), entry("9-3", None)];
        let path = write_batch(dir.path(), "decision", "tp:dlog", &batch).unwrap();
        assert!(path.ends_with("decision/tp_dlog/5-0_9-3.parquet"), "{}", path.display());
        assert_eq!(read(dir.path(), "decision").unwrap(), batch);
        assert!(read(dir.path(), "journey").unwrap().is_empty());
        let shard = shard_path(dir.path(), "decision", "tp:dlog");
        assert_eq!(high_water_mark(&shard).unwrap(), Some((9, 3)));
        // A temporary file of an interrupted write is neither read nor a high-water mark.
        std::fs::write(shard.join(".9-4_12-0.parquet.tmp"), b"partial").unwrap();
        assert_eq!(high_water_mark(&shard).unwrap(), Some((9, 3)));
        assert_eq!(read(dir.path(), "decision").unwrap().len(), 3);
        assert_eq!(next_id("9-3").as_deref(), Some("9-4"));
        assert!(parse_id("9-3") > parse_id("5-10") && parse_id("10-0") > parse_id("9-99"));
    }
}
