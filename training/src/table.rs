//! Feature tables (CSV): a named 0/1 label column, columns to drop, an optional row filter,
//! numeric columns as they are and categorical columns one-hot encoded (the encoding is kept
//! for the artifact).
//!
//! A column is categorical when more than 5% of its non-empty values are not numbers; in a
//! numeric column, a value that is not a number makes the row bad (skipped, counted).
use crate::data::BadRows;
use anyhow::{Context, bail};
use ndarray::Array2;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub struct Table {
    pub feature_names: Vec<String>,
    pub x: Array2<f64>,
    pub y: Vec<bool>,
    /// column -> categories, in one-hot order
    pub encodings: BTreeMap<String, Vec<String>>,
}

pub fn parse_label(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "y" | "t" => Some(true),
        "0" | "0.0" | "false" | "no" | "n" | "f" => Some(false),
        _ => None,
    }
}

pub struct Options<'a> {
    pub label: &'a str,
    pub drop: &'a [String],
    /// Keep only rows where column == value.
    pub filter: Option<(&'a str, &'a str)>,
}

/// Reads a feature table from a CSV file, plain or gzip-compressed.
pub fn read(path: &Path, opts: &Options, bad: &mut BadRows) -> anyhow::Result<Table> {
    let file = touchpoint::io::open_maybe_gz(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(file);
    let headers: Vec<String> = reader.headers()?.iter().map(String::from).collect();
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no column {name:?} in {} (columns: {})", path.display(), headers.join(", ")))
    };
    let label = find(opts.label)?;
    for d in opts.drop {
        find(d)?;
    }
    let filter = opts.filter.map(|(c, v)| find(c).map(|i| (i, v.to_string()))).transpose()?;
    let features: Vec<usize> = (0..headers.len())
        .filter(|&i| i != label && !opts.drop.contains(&headers[i]) && filter.as_ref().is_none_or(|(f, _)| *f != i))
        .collect();

    // Pass 1: column types and categories.
    let mut non_numeric = vec![0usize; headers.len()];
    let mut filled = vec![0usize; headers.len()];
    let mut categories: Vec<BTreeSet<String>> = vec![BTreeSet::new(); headers.len()];
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = match rec {
            Ok(r) if r.len() == headers.len() => r,
            Ok(r) => {
                bad.add(line, format!("{} fields, the header has {}", r.len(), headers.len()))?;
                continue;
            }
            Err(e) => {
                bad.add(line, e)?;
                continue;
            }
        };
        if let Some((f, v)) = &filter
            && rec.get(*f) != Some(v.as_str())
        {
            continue;
        }
        for &c in &features {
            let v = &rec[c];
            if !v.is_empty() {
                filled[c] += 1;
                if v.parse::<f64>().is_err() {
                    non_numeric[c] += 1;
                    categories[c].insert(v.to_string());
                }
            }
        }
        rows.push((line, rec));
    }
    let categorical: Vec<bool> = (0..headers.len()).map(|c| non_numeric[c] * 20 > filled[c]).collect();
    // A categorical column's categories include its number-looking values too.
    for (_, rec) in &rows {
        for &c in features.iter().filter(|&&c| categorical[c]) {
            if !rec[c].is_empty() {
                categories[c].insert(rec[c].to_string());
            }
        }
    }
    let mut feature_names = Vec::new();
    let mut encodings = BTreeMap::new();
    for &c in &features {
        if categorical[c] {
            let cats: Vec<String> = categories[c].iter().cloned().collect();
            feature_names.extend(cats.iter().map(|v| format!("{}={v}", headers[c])));
            encodings.insert(headers[c].clone(), cats);
        } else {
            feature_names.push(headers[c].clone());
        }
    }

    // Pass 2: the matrix.
    let mut data = Vec::with_capacity(rows.len() * feature_names.len());
    let mut y = Vec::with_capacity(rows.len());
    'rows: for (line, rec) in rows {
        let Some(label_value) = parse_label(&rec[label]) else {
            bad.add(line, format!("label {:?} is not 0/1, true/false or yes/no", &rec[label]))?;
            continue;
        };
        let start = data.len();
        for &c in &features {
            if categorical[c] {
                let cats = &encodings[&headers[c]];
                data.extend(cats.iter().map(|k| if *k == rec[c] { 1.0 } else { 0.0 }));
            } else {
                match rec[c].parse::<f64>() {
                    Ok(v) if v.is_finite() => data.push(v),
                    _ => {
                        data.truncate(start);
                        bad.add(line, format!("column {:?}: {:?} is not a number", headers[c], &rec[c]))?;
                        continue 'rows;
                    }
                }
            }
        }
        y.push(label_value);
    }
    if y.is_empty() {
        bail!("{}: no usable rows", path.display());
    }
    let x = Array2::from_shape_vec((y.len(), feature_names.len()), data).expect("rows have one value per feature");
    Ok(Table { feature_names, x, y, encodings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_categories_drops_filters_and_counts_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        let mut csv = "Month,Visits,Arm,Noise,Revenue\nMay,3,A,9,TRUE\nJune,1,A,9,FALSE\nMay,x,A,9,TRUE\nMay,2,B,9,yes\nJune,4,A,9,maybe\nJune,2,A\n".to_string();
        for i in 0..25 {
            csv += &format!("June,{i},A,9,no\n");
        }
        std::fs::write(&p, csv).unwrap();
        let mut bad = BadRows::new(10);
        let drop = ["Noise".to_string()];
        let t = read(&p, &Options { label: "Revenue", drop: &drop, filter: Some(("Arm", "A")) }, &mut bad).unwrap();
        assert_eq!(t.feature_names, ["Month=June", "Month=May", "Visits"]);
        assert_eq!(t.encodings["Month"], ["June", "May"]);
        assert_eq!(t.y[..2], [true, false]);
        assert_eq!(t.y.len(), 27, "the arm B row is filtered out");
        assert_eq!(t.x.row(0).to_vec(), [0.0, 1.0, 3.0]);
        assert_eq!(bad.count, 3, "{:?}", bad.examples);
        assert!(bad.examples.iter().any(|m| m.starts_with("line 4:") && m.contains("Visits")));
        assert!(bad.examples.iter().any(|m| m.starts_with("line 6:") && m.contains("maybe")));
        assert!(bad.examples.iter().any(|m| m.starts_with("line 7:") && m.contains("fields")));
    }

    /// The vendored Online Shoppers data, read compressed: the row and label counts of
    /// data/README.md.
    #[test]
    fn reads_the_vendored_gzip_table() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/online_shoppers_intention.csv.gz");
        let mut bad = BadRows::new(0);
        let t = read(&p, &Options { label: "Revenue", drop: &[], filter: None }, &mut bad).unwrap();
        assert_eq!((t.y.len(), t.y.iter().filter(|y| **y).count()), (12_330, 1_908));
        assert_eq!(t.encodings["VisitorType"], ["New_Visitor", "Other", "Returning_Visitor"]);
    }

    #[test]
    fn labels() {
        for (v, want) in
            [("TRUE", Some(true)), ("no", Some(false)), ("1", Some(true)), ("0.0", Some(false)), ("2", None)]
        {
            assert_eq!(parse_label(v), want, "{v}");
        }
    }
}
