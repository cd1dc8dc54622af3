//! Where each entry of a config file is written: key paths such as `offers[2].cap.max` mapped
//! to their 1-based line, from the TOML parser's spans.
use std::collections::HashMap;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The line of every key, table and array element of one file, by entry path.
#[derive(Debug, Default)]
pub struct Spans {
    lines: HashMap<String, usize>,
}

impl Spans {
    /// Maps every entry of `src`; a file that does not parse maps nothing (its syntax error is
    /// reported by the parse that builds the configuration, with its own span).
    pub fn new(src: &str) -> Spans {
        let mut spans = Spans::default();
        if let Ok(root) = DeTable::parse(src) {
            let starts = LineStarts::new(src);
            spans.table("", root.get_ref(), &starts);
        }
        spans
    }

    /// The line of `entry`, or of its nearest enclosing entry that is written in the file (a
    /// key left to its default is reported at its table's header).
    pub fn line(&self, entry: &str) -> Option<usize> {
        let mut path = entry;
        loop {
            if let Some(&line) = self.lines.get(path) {
                return Some(line);
            }
            path = parent(path)?;
        }
    }

    fn table(&mut self, prefix: &str, table: &DeTable<'_>, starts: &LineStarts) {
        for (key, value) in table.iter() {
            let path =
                if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
            // The key's own line: for `[[offers]]` it is the first header, for `a = 1` the line of `a`.
            self.lines.entry(path.clone()).or_insert_with(|| starts.line(key.span().start));
            self.value(&path, value, starts);
        }
    }

    fn value(&mut self, path: &str, value: &Spanned<DeValue<'_>>, starts: &LineStarts) {
        match value.get_ref() {
            DeValue::Table(t) => self.table(path, t, starts),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{path}[{i}]");
                    self.lines.insert(at.clone(), starts.line(item.span().start));
                    self.value(&at, item, starts);
                }
            }
            _ => {}
        }
    }
}

/// `offers[2].cap` for `offers[2].cap.max`, `offers[2]` for `offers[2].cap`, `offers` for
/// `offers[2]`, `None` at the top.
fn parent(path: &str) -> Option<&str> {
    if let Some(stripped) = path.strip_suffix(']') {
        return stripped.rfind('[').map(|i| &path[..i]);
    }
    let dot = path.rfind('.');
    let bracket = path.rfind(']').map(|i| i + 1);
    match (dot, bracket) {
        (Some(d), Some(b)) if b > d => Some(&path[..b]),
        (Some(d), _) => Some(&path[..d]),
        (None, Some(b)) => Some(&path[..b]),
        (None, None) => None,
    }
}

/// Byte offsets where lines start, for offset → line lookups without rescanning the text.
struct LineStarts(Vec<usize>);

impl LineStarts {
    fn new(src: &str) -> Self {
        Self(std::iter::once(0).chain(src.match_indices('\n').map(|(i, _)| i + 1)).collect())
    }

    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&start| start <= offset)
    }
}

/// 1-based line of a byte offset.
pub fn line_at(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const NESTED: &str = r#"[redis]
key_prefix = "t"

[[offers]]
id = "a"

[[offers]]
id = "b"
cap = { max = 2, days = 7 }

[[offers]]
id = "c"

[offers.cap]
days = 7
max = 0

[[experiments]]
id = "e1"
[[experiments.variants]]
name = "x"
[[experiments.variants]]
name = "y"
priority = "1 +"

[[experiments]]
id = "e2"
[[experiments.variants]]
name = "p"
[[experiments.variants]]
name = "q"
[[experiments.variants]]
name = "r"
weight = -1
"#;

    #[test]
    fn maps_nested_arrays_and_tables() {
        let s = Spans::new(NESTED);
        assert_eq!(s.line("redis.key_prefix"), Some(2));
        assert_eq!(s.line("offers[0]"), Some(4));
        assert_eq!(s.line("offers[1].id"), Some(8));
        assert_eq!(s.line("offers[1].cap.max"), Some(9), "inline table");
        assert_eq!(s.line("offers[2].cap.max"), Some(16), "sub-table of the third element");
        assert_eq!(s.line("offers[2].cap.days"), Some(15));
        assert_eq!(s.line("experiments[0].variants[1].priority"), Some(24));
        assert_eq!(s.line("experiments[0].variants[1]"), Some(22));
        assert_eq!(s.line("experiments[1].id"), Some(27));
        assert_eq!(s.line("experiments[1].variants[2].weight"), Some(34));
        assert_eq!(s.line("experiments[1].variants[0].name"), Some(29));
    }

    #[test]
    fn falls_back_to_the_enclosing_entry() {
        let s = Spans::new(NESTED);
        // A key left to its default is reported where its table starts.
        assert_eq!(s.line("offers[0].stages"), Some(4));
        assert_eq!(s.line("experiments[1].variants[2].priority"), Some(32));
        assert_eq!(s.line("redis.url"), Some(1));
        assert_eq!(s.line("server.listen"), None, "no [server] in the file");
        assert_eq!(Spans::new("a = [").line("a"), None, "a file that does not parse maps nothing");
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("offers[2].cap.max"), Some("offers[2].cap"));
        assert_eq!(parent("offers[2].cap"), Some("offers[2]"));
        assert_eq!(parent("offers[2]"), Some("offers"));
        assert_eq!(parent("experiments[0].variants[1]"), Some("experiments[0].variants"));
        assert_eq!(parent("offers"), None);
    }

    #[test]
    fn line_of_offsets() {
        let src = "a\nbb\n\nc";
        let starts = LineStarts::new(src);
        for (offset, line) in [(0, 1), (1, 1), (2, 2), (4, 2), (5, 3), (6, 4)] {
            assert_eq!(starts.line(offset), line, "offset {offset}");
            assert_eq!(line_at(src, offset), line, "offset {offset}");
        }
    }
}
