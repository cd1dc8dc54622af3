//! From the parsed TOML table to the file format, one section and one array element at a time,
//! so that every unknown key and every ill-typed value of the file is reported, not only the first.
use super::Problems;
use super::file::FileConfig;
use serde::de::DeserializeOwned;

/// Reads every section it can; what cannot be read stays at its default and is a problem.
pub fn read(doc: toml::Table, p: &mut Problems) -> FileConfig {
    let mut f = FileConfig::default();
    for (key, value) in doc {
        let k = key.as_str();
        match k {
            "server" => set(&mut f.server, section(value, k, p)),
            "redis" => set(&mut f.redis, section(value, k, p)),
            "journey" => set(&mut f.journey, section(value, k, p)),
            "decisions" => set(&mut f.decisions, section(value, k, p)),
            "models" => set(&mut f.models, section(value, k, p)),
            "auth" => set(&mut f.auth, section(value, k, p)),
            "holdout" => f.holdout = one(value, k, p),
            "visit_events" => set(&mut f.visit_events, one(value, k, p)),
            "segments" => f.segments = each(value, k, &mut f.positions, &mut f.unread_ids, p),
            "offers" => f.offers = each(value, k, &mut f.positions, &mut f.unread_ids, p),
            "contact_policy" => f.contact_policy = each(value, k, &mut f.positions, &mut f.unread_ids, p),
            "fallbacks" => f.fallbacks = each(value, k, &mut f.positions, &mut f.unread_ids, p),
            "kpis" => f.kpis = each(value, k, &mut f.positions, &mut f.unread_ids, p),
            "features" => f.features = each(value, k, &mut f.positions, &mut f.unread_ids, p),
            "experiments" => f.experiments = each(value, k, &mut f.positions, &mut f.unread_ids, p),
            _ => p.add(k, "unknown key"),
        }
    }
    f
}

/// A section table, read like `one`, except that a value of the wrong type is reported and
/// left out and the rest of the section is still read: one bad scalar must not reset the whole
/// section to its defaults (that would report false problems elsewhere, e.g. unknown channels).
fn section<T: DeserializeOwned>(mut value: toml::Value, path: &str, p: &mut Problems) -> Option<T> {
    // Bounded: each round removes one key.
    for _ in 0..64 {
        let mut trial = Problems::default();
        if let Some(v) = one::<T>(value.clone(), path, &mut trial) {
            p.list.extend(trial.list);
            return Some(v);
        }
        let (entry, message) = trial.list.pop()?;
        let key = entry.strip_prefix(path).and_then(|k| k.strip_prefix('.')).unwrap_or_default();
        let removed = !key.is_empty() && !key.contains('[') && remove_key(&mut value, key);
        p.add(entry, message);
        if !removed {
            p.list.extend(trial.list);
            return None;
        }
    }
    None
}

/// Removes `a.b.c` from nested tables; false when it is not there.
fn remove_key(value: &mut toml::Value, dotted: &str) -> bool {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let Some(last) = parts.pop() else { return false };
    let mut at = value;
    for part in parts {
        match at.get_mut(part) {
            Some(next) => at = next,
            None => return false,
        }
    }
    at.as_table_mut().is_some_and(|t| t.remove(last).is_some())
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Every element of an array section that reads; the others are problems. When one does not
/// read, the file positions of those that do go to `positions`, and its `id` to `unread_ids`.
fn each<T: DeserializeOwned>(
    value: toml::Value,
    path: &str,
    positions: &mut std::collections::BTreeMap<String, Vec<usize>>,
    unread_ids: &mut std::collections::BTreeSet<String>,
    p: &mut Problems,
) -> Vec<T> {
    match value {
        toml::Value::Array(items) => {
            let mut read = Vec::new();
            let mut at = Vec::new();
            for (i, v) in items.into_iter().enumerate() {
                let id = v.get("id").and_then(|id| id.as_str()).map(str::to_string);
                match one(v, &format!("{path}[{i}]"), p) {
                    Some(t) => {
                        read.push(t);
                        at.push(i);
                    }
                    None => unread_ids.extend(id),
                }
            }
            if at.len() != read.len() || at.iter().enumerate().any(|(k, i)| k != *i) {
                positions.insert(path.to_string(), at);
            }
            read
        }
        _ => {
            p.add(path, "must be an array of tables ([[section]])");
            vec![]
        }
    }
}

/// One value as `T`: its unknown keys, or the first type error inside it, are problems at
/// their own paths (a type error leaves the whole value unread).
fn one<T: DeserializeOwned>(value: toml::Value, path: &str, p: &mut Problems) -> Option<T> {
    let mut unknown = Vec::new();
    let mut note = |at: serde_ignored::Path| unknown.push(ignored_path(&at));
    let read: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note));
    for at in unknown {
        p.add(join(path, &at), "unknown key");
    }
    match read {
        Ok(v) => Some(v),
        Err(e) => {
            let mut at = String::new();
            for segment in e.path().iter() {
                match segment {
                    serde_path_to_error::Segment::Seq { index } => at.push_str(&format!("[{index}]")),
                    serde_path_to_error::Segment::Map { key } => at.push_str(&format!(".{key}")),
                    serde_path_to_error::Segment::Enum { variant } => at.push_str(&format!(".{variant}")),
                    serde_path_to_error::Segment::Unknown => {}
                }
            }
            p.add(join(path, at.trim_start_matches('.')), e.into_inner().message().to_string());
            None
        }
    }
}

fn join(path: &str, rest: &str) -> String {
    match rest {
        "" => path.to_string(),
        r if r.starts_with('[') => format!("{path}{r}"),
        r => format!("{path}.{r}"),
    }
}

/// `cap.days` / `variants[1].colour` from serde_ignored's path.
fn ignored_path(at: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match at {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        Path::Map { parent, key } => join(&ignored_path(parent), key).trim_start_matches('.').to_string(),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<(String, String)> {
        let mut p = Problems::default();
        read(toml::from_str(src).unwrap(), &mut p);
        p.list
    }

    #[test]
    fn reports_every_unknown_key_and_type_error() {
        let src = r#"
colour = "red"
[server]
lisn = "x"
[decisions]
default_limit = "three"
[[offers]]
id = "a"
stages = ["s"]
channels = ["web"]
content_ref = "c"
cap = { max = 1, days = 2, dayz = 3 }
[[offers]]
id = "b"
[[experiments]]
id = "e"
[[experiments.variants]]
name = "x"
colour = 1
"#;
        let got = problems(src);
        let entries: Vec<&str> = got.iter().map(|(e, _)| e.as_str()).collect();
        for want in [
            "colour",
            "server.lisn",
            "decisions.default_limit",
            "offers[0].cap.dayz",
            "offers[1]",
            "experiments[0].variants[0].colour",
        ] {
            assert!(entries.contains(&want), "{want} missing from {got:?}");
        }
        assert_eq!(got.len(), 6, "{got:?}");
        let limit = got.iter().find(|(e, _)| e == "decisions.default_limit").unwrap();
        assert!(limit.1.contains("invalid type"), "{limit:?}");
        let missing = got.iter().find(|(e, _)| e == "offers[1]").unwrap();
        assert!(missing.1.contains("missing field"), "{missing:?}");
    }

    #[test]
    fn reads_a_clean_file() {
        let mut p = Problems::default();
        let f = read(toml::from_str("visit_events = []\n[redis]\nkey_prefix = \"k\"\n").unwrap(), &mut p);
        assert!(p.list.is_empty(), "{:?}", p.list);
        assert_eq!(f.redis.key_prefix, "k");
        assert_eq!(f.redis.url, "memory://", "unset keys keep their defaults");
    }
}
