//! Reading inputs: journey logs (JSON Lines or CSV of events) with bad-row accounting.
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use touchpoint::domain::Millis;
use touchpoint::domain::event::Event;

/// Rows skipped as unreadable: the count and the first few messages (with line numbers).
#[derive(Debug, Default)]
pub struct BadRows {
    pub count: usize,
    pub examples: Vec<String>,
    pub max: usize,
}

impl BadRows {
    pub fn new(max: usize) -> Self {
        Self { max, ..Default::default() }
    }

    /// Records a bad row; fails once more than `max` rows were bad.
    pub fn add(&mut self, line: usize, message: impl std::fmt::Display) -> anyhow::Result<()> {
        self.count += 1;
        let msg = format!("line {line}: {message}");
        if self.examples.len() < 10 {
            eprintln!("skipping bad row, {msg}");
            self.examples.push(msg);
        }
        if self.count > self.max {
            bail!(
                "more than {} bad rows (--max-bad-rows); the last was {}",
                self.max,
                self.examples.last().cloned().unwrap_or_default()
            );
        }
        Ok(())
    }

    pub fn report(&self) {
        if self.count > 0 {
            eprintln!("skipped {} bad row(s)", self.count);
        }
    }
}

/// The delimiters detection chooses from.
pub const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The delimiter of a CSV file from its header line: the most frequent of `,` `;` tab `|`
/// outside double quotes (`,` when none occurs: a one-column file).
pub fn detect_delimiter(header: &str) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for b in header.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(i) = DELIMITERS.iter().position(|d| *d == b) {
            counts[i] += 1;
        }
    }
    // max_by_key keeps the last maximum: reverse so that ties go to the earlier (`,` first).
    let (i, n) = counts.iter().enumerate().rev().max_by_key(|(_, n)| **n).expect("four candidates");
    if *n == 0 { b',' } else { DELIMITERS[i] }
}

/// Opens a CSV file (plain or gzip-compressed) with a progress bar on the bytes read, fields
/// trimmed, the delimiter given or detected from the header line; returns the delimiter used.
pub fn open_csv(
    path: &Path,
    delimiter: Option<u8>,
) -> anyhow::Result<(csv::Reader<Box<dyn std::io::Read + Send>>, u8)> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = crate::progress::bytes(size, &format!("reading {}", path.display()));
    let mut reader = BufReader::new(
        touchpoint::io::maybe_gunzip(bar.wrap_read(file)).with_context(|| format!("reading {}", path.display()))?,
    );
    let mut header = String::new();
    reader.read_line(&mut header).with_context(|| format!("reading the header line of {}", path.display()))?;
    let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(&header));
    // The header line goes back in front of the rest for the CSV reader.
    let rest: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(header.into_bytes()).chain(reader));
    let csv = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).delimiter(delimiter).from_reader(rest);
    Ok((csv, delimiter))
}

/// A date (`YYYY-MM-DD`, midnight UTC), an RFC 3339 time, or milliseconds since the epoch.
pub fn parse_time(s: &str) -> anyhow::Result<Millis> {
    let s = s.trim();
    let date = |fmt| {
        chrono::NaiveDate::parse_from_str(s, fmt)
            .ok()
            .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis())
    };
    // Eight digits read as a date (CDNOW's YYYYMMDD), not as milliseconds after 1970.
    if let Some(ms) = date("%Y-%m-%d").or_else(|| if s.len() == 8 { date("%Y%m%d") } else { None }) {
        return Ok(ms);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .with_context(|| format!("{s:?} is not a date, an RFC 3339 time or epoch milliseconds"))
}

/// Reads a journey log: `.jsonl`/`.json` (one `RecordEvents` event per line, timestamp in ms)
/// or `.csv` (columns event_id,user_id,event_type,timestamp[,channel,offer_id,value]), either
/// one gzip-compressed or not (`events.csv.gz` is CSV).
pub fn read_events(path: &Path, bad: &mut BadRows) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = crate::progress::bytes(size, &format!("reading {}", path.display()));
    // The bar counts the bytes on disk (compressed or not), which is what its total is.
    let mut reader = BufReader::new(
        touchpoint::io::maybe_gunzip(bar.wrap_read(file)).with_context(|| format!("reading {}", path.display()))?,
    );
    let mut events = Vec::new();
    if touchpoint::io::without_gz(path).extension().is_some_and(|e| e == "csv") {
        // The delimiter (`,` `;` tab `|`) from the header line, which then goes back in front.
        let mut header = String::new();
        reader.read_line(&mut header).with_context(|| format!("reading {}", path.display()))?;
        let delimiter = detect_delimiter(&header);
        let reader = std::io::Read::chain(std::io::Cursor::new(header.into_bytes()), reader);
        let mut csv = csv::ReaderBuilder::new().flexible(true).delimiter(delimiter).from_reader(reader);
        let headers = csv.headers()?.clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let (Some(id), Some(user), Some(kind), Some(ts)) =
            (col("event_id"), col("user_id"), col("event_type"), col("timestamp"))
        else {
            bail!("{}: the header needs event_id, user_id, event_type and timestamp", path.display());
        };
        let (channel, offer, value) = (col("channel"), col("offer_id"), col("value"));
        for (i, row) in csv.records().enumerate() {
            let line = i + 2;
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    bad.add(line, e)?;
                    continue;
                }
            };
            let get = |c: Option<usize>| c.and_then(|c| row.get(c)).unwrap_or("").to_string();
            let timestamp = match parse_time(&get(Some(ts))) {
                Ok(t) => t,
                Err(e) => {
                    bad.add(line, e)?;
                    continue;
                }
            };
            let value = match get(value).as_str() {
                "" => 0.0,
                v => match v.parse::<f64>() {
                    Ok(v) if v.is_finite() => v,
                    _ => {
                        bad.add(line, format!("value {v:?} is not a number"))?;
                        continue;
                    }
                },
            };
            let (event_id, user_id, event_type) = (get(Some(id)), get(Some(user)), get(Some(kind)));
            if event_id.is_empty() || user_id.is_empty() || event_type.is_empty() {
                bad.add(line, "event_id, user_id and event_type are required")?;
                continue;
            }
            events.push(Event {
                event_id,
                user_id,
                event_type,
                timestamp,
                channel: get(channel),
                offer_id: get(offer),
                value,
                properties: Default::default(),
            });
        }
    } else {
        for (i, line) in reader.lines().enumerate() {
            let line_no = i + 1;
            let line = line.with_context(|| format!("reading line {line_no}"))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Event>(&line) {
                Ok(e) if !e.event_id.is_empty() && !e.user_id.is_empty() && e.value.is_finite() => events.push(e),
                Ok(_) => bad.add(line_no, "event_id and user_id are required, value must be finite")?,
                Err(e) => bad.add(line_no, e)?,
            }
        }
    }
    bar.finish_and_clear();
    events.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.event_id.cmp(&b.event_id)));
    Ok(events)
}

/// A short content hash of a file: what a model was trained on. A gzip-compressed file is
/// hashed decompressed, so the same data gives the same fingerprint either way.
pub fn fingerprint(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut file = touchpoint::io::open_maybe_gz(path).with_context(|| format!("opening {}", path.display()))?;
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(&hasher.finalize()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_logs_with_semicolons_read_like_commas() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
        std::fs::write(&a, "event_id,user_id,event_type,timestamp,value\ne1,u,purchase,5,3\n").unwrap();
        std::fs::write(&b, "event_id;user_id;event_type;timestamp;value\ne1;u;purchase;5;3\n").unwrap();
        let mut bad = BadRows::new(0);
        assert_eq!(read_events(&a, &mut bad).unwrap(), read_events(&b, &mut bad).unwrap());
    }

    #[test]
    fn delimiters_are_detected_from_the_header() {
        assert_eq!(detect_delimiter("age;job;marital;\"y\"\n"), b';');
        assert_eq!(detect_delimiter("a\tb\tc"), b'\t');
        assert_eq!(detect_delimiter("a|b|c"), b'|');
        assert_eq!(detect_delimiter("a,b,c"), b',');
        assert_eq!(detect_delimiter("\"x;y\",b,c"), b',', "delimiters inside quotes do not count");
        assert_eq!(detect_delimiter("single"), b',');
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time("19700102").unwrap(), 86_400_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(parse_time("1234").unwrap(), 1234);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn bad_rows_are_counted_with_line_numbers_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.csv");
        std::fs::write(&p, "event_id,user_id,event_type,timestamp,value\ne1,u,page_view,1970-01-02,\ne2,u,purchase,nope,3\ne3,u,purchase,5,x\ne4,u,purchase,6,4.5\n").unwrap();
        let mut bad = BadRows::new(5);
        let events = read_events(&p, &mut bad).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(bad.count, 2);
        assert!(bad.examples[0].starts_with("line 3:"), "{:?}", bad.examples);
        assert!(bad.examples[1].starts_with("line 4:"), "{:?}", bad.examples);
        let mut strict = BadRows::new(1);
        let err = read_events(&p, &mut strict).unwrap_err().to_string();
        assert!(err.contains("more than 1 bad rows"), "{err}");
    }

    #[test]
    fn gzip_logs_read_like_plain_ones_and_fingerprint_the_same() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let text = "event_id,user_id,event_type,timestamp,value\ne1,u,page_view,1970-01-02,\ne2,u,purchase,5,3\n";
        let jsonl = r#"{"event_id":"e1","user_id":"u","event_type":"purchase","timestamp":7,"value":2.5}"#;
        let gz = |s: &str| {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            w.write_all(s.as_bytes()).unwrap();
            w.finish().unwrap()
        };
        let (plain, packed, packed_jsonl) =
            (dir.path().join("e.csv"), dir.path().join("e.csv.gz"), dir.path().join("e.jsonl.gz"));
        std::fs::write(&plain, text).unwrap();
        std::fs::write(&packed, gz(text)).unwrap();
        std::fs::write(&packed_jsonl, gz(jsonl)).unwrap();
        let mut bad = BadRows::new(0);
        let want = read_events(&plain, &mut bad).unwrap();
        assert_eq!(want.len(), 2);
        assert_eq!(read_events(&packed, &mut bad).unwrap(), want, "CSV under .gz");
        let j = read_events(&packed_jsonl, &mut bad).unwrap();
        assert_eq!((j.len(), j[0].value), (1, 2.5), "JSON Lines under .gz");
        assert_eq!(fingerprint(&packed).unwrap(), fingerprint(&plain).unwrap());
        assert_ne!(fingerprint(&packed_jsonl).unwrap(), fingerprint(&plain).unwrap());
    }
}
