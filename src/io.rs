//! Reading data files that may be gzip-compressed (the vendored `data/*.gz`), transparently,
//! and writing CSV cells.
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// The two bytes every gzip member starts with (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Wraps `inner` so that gzip data is decompressed and anything else passes through as is.
/// Decided by the magic bytes rather than the name, so a compressed file without `.gz`, or a
/// progress-reporting wrapper around a file, reads the same way.
pub fn maybe_gunzip<R: Read + Send + 'static>(mut inner: R) -> std::io::Result<Box<dyn Read + Send>> {
    // A read may return fewer bytes than asked for, so collect up to two before deciding, then
    // put them back in front of the rest.
    let mut head = [0u8; 2];
    let mut n = 0;
    while n < head.len() {
        match inner.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = BufReader::new(std::io::Cursor::new(head[..n].to_vec()).chain(inner));
    if head[..n] == GZIP_MAGIC {
        // Multi-member: `cat a.gz b.gz` is a valid gzip file and must read as both.
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(whole)))
    } else {
        Ok(Box::new(whole))
    }
}

/// Opens `path` for reading, decompressing it when it is gzip (by its magic bytes).
pub fn open_maybe_gz(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    maybe_gunzip(std::fs::File::open(path)?)
}

/// The path without a trailing `.gz`: what decides the format inside (`events.csv.gz` is CSV).
pub fn without_gz(path: &Path) -> PathBuf {
    match path.extension() {
        Some(e) if e.eq_ignore_ascii_case("gz") => path.with_extension(""),
        _ => path.to_path_buf(),
    }
}

/// A CSV cell: quoted (quotes doubled) when it holds a comma, a quote or a line break.
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(r: &mut dyn Read) -> String {
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn plain_and_gzip_read_the_same() {
        let text = "a,b\r\n1,2\r\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_ne!(gz, text.as_bytes());
        assert_eq!(read_all(&mut maybe_gunzip(std::io::Cursor::new(gz)).unwrap()), text);
        assert_eq!(read_all(&mut maybe_gunzip(std::io::Cursor::new(text.as_bytes().to_vec())).unwrap()), text);
        assert_eq!(read_all(&mut maybe_gunzip(std::io::empty()).unwrap()), "");
    }

    #[test]
    fn concatenated_members_read_as_one_stream() {
        let member = |s: &str| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(s.as_bytes()).unwrap();
            gz.finish().unwrap()
        };
        let both = [member("first\n"), member("second\n")].concat();
        assert_eq!(read_all(&mut maybe_gunzip(std::io::Cursor::new(both)).unwrap()), "first\nsecond\n");
    }

    #[test]
    fn the_format_is_named_by_what_is_under_gz() {
        assert_eq!(without_gz(Path::new("data/events.csv.gz")), Path::new("data/events.csv"));
        assert_eq!(without_gz(Path::new("data/events.CSV.GZ")), Path::new("data/events.CSV"));
        assert_eq!(without_gz(Path::new("events.jsonl")), Path::new("events.jsonl"));
    }
}
