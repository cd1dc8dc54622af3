//! Feature tables (CSV): a named 0/1 label column, columns to drop, an optional row filter,
//! numeric columns as they are and categorical columns one-hot encoded (the encoding is kept
//! for the artifact).
//!
//! The delimiter (`,` `;` tab `|`) is detected from the header line unless given. A column is
//! categorical when more than 5% of its present values are not numbers. Missing values (blank,
//! `NA`, `NaN`, `?`) are imputed, the median in a numeric column and the most frequent value in
//! a categorical one, and such a column gets a `<column>_missing` 0/1 indicator, so a row with
//! a gap is kept and the gap itself can carry signal. A value that is present but not a number
//! in a numeric column, or a label that is not 0/1, makes the row bad (skipped, counted).
use crate::data::{BadRows, open_csv};
use anyhow::bail;
use ndarray::Array2;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A feature table ready to fit.
pub struct Table {
    /// Column names of `x`, in order.
    pub feature_names: Vec<String>,
    /// One row per usable input row.
    pub x: Array2<f64>,
    /// The label of each row.
    pub y: Vec<bool>,
    /// column -> categories, in one-hot order
    pub encodings: BTreeMap<String, Vec<String>>,
    /// For each row of `x`, its data row number in the input file (1-based: the first line
    /// after the header is row 1; rows filtered out or skipped as bad leave gaps).
    pub rows: Vec<usize>,
    /// Columns with missing values: how many, and the value put in their place.
    pub imputed: BTreeMap<String, Imputed>,
}

/// What was done about a column's missing values.
#[derive(Debug, Clone, PartialEq)]
pub struct Imputed {
    /// Rows (among those kept) where the value was missing.
    pub missing: usize,
    /// The median (numeric column) or most frequent value (categorical column) used instead.
    pub value: String,
}

/// Reads a label: 1/0, true/false, yes/no, y/n, t/f (any case).
pub fn parse_label(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "y" | "t" => Some(true),
        "0" | "0.0" | "false" | "no" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// Whether a cell counts as missing: blank, `NA`, `NaN` (any case) or `?`.
pub fn is_missing(v: &str) -> bool {
    v.is_empty() || v == "?" || v.eq_ignore_ascii_case("na") || v.eq_ignore_ascii_case("nan")
}

/// How to read a table.
pub struct Options<'a> {
    /// The 0/1 label column.
    pub label: &'a str,
    /// Columns to leave out.
    pub drop: &'a [String],
    /// Keep only rows where column == value.
    pub filter: Option<(&'a str, &'a str)>,
    /// The field delimiter; `None`: detected from the header line.
    pub delimiter: Option<u8>,
    /// A categorical column with more distinct values than this is refused (one-hot encoding
    /// an id column makes thousands of useless columns).
    pub max_levels: usize,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

/// Reads a feature table from a CSV file, plain or gzip-compressed.
pub fn read(path: &Path, opts: &Options, bad: &mut BadRows) -> anyhow::Result<Table> {
    let (mut reader, delimiter) = open_csv(path, opts.delimiter)?;
    let headers: Vec<String> = reader.headers()?.iter().map(String::from).collect();
    let find = |name: &str| match headers.iter().position(|h| h == name) {
        Some(i) => Ok(i),
        None => bail!(
            "no column {name:?} in {} (read with delimiter {:?}; columns: {})",
            path.display(),
            char::from(delimiter),
            headers.join(", ")
        ),
    };
    let label = find(opts.label)?;
    for d in opts.drop {
        find(d)?;
    }
    let filter = opts.filter.map(|(c, v)| find(c).map(|i| (i, v.to_string()))).transpose()?;
    let features: Vec<usize> = (0..headers.len())
        .filter(|&i| i != label && !opts.drop.contains(&headers[i]) && filter.as_ref().is_none_or(|(f, _)| *f != i))
        .collect();

    // Pass 1: the rows kept, and what each column holds.
    let mut non_numeric = vec![0usize; headers.len()];
    let mut present = vec![0usize; headers.len()];
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
        let Some(label_value) = parse_label(&rec[label]) else {
            bad.add(line, format!("label {:?} is not 0/1, true/false or yes/no", &rec[label]))?;
            continue;
        };
        for &c in &features {
            let v = &rec[c];
            if !is_missing(v) {
                present[c] += 1;
                if v.parse::<f64>().is_err() {
                    non_numeric[c] += 1;
                }
            }
        }
        rows.push((i + 1, line, label_value, rec));
    }
    if rows.is_empty() {
        bail!("{}: no usable rows", path.display());
    }
    let categorical: Vec<bool> = (0..headers.len()).map(|c| non_numeric[c] * 20 > present[c]).collect();

    // Per column: level counts (categorical) or the present numbers (numeric), and the gaps.
    let bar = crate::progress::steps(features.len() as u64, "encoding columns");
    let mut encodings = BTreeMap::new();
    let mut imputed = BTreeMap::new();
    let mut fill: HashMap<usize, String> = HashMap::new();
    for &c in &features {
        let name = &headers[c];
        let missing = rows.iter().filter(|r| is_missing(&r.3[c])).count();
        if categorical[c] {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for r in &rows {
                if !is_missing(&r.3[c]) {
                    *counts.entry(&r.3[c]).or_default() += 1;
                }
            }
            if counts.len() > opts.max_levels {
                bar.finish_and_clear();
                bail!(
                    "column {name:?} has {} distinct values, more than --max-levels {}: leave it out with --drop {name} or allow it with --max-levels {}",
                    counts.len(),
                    opts.max_levels,
                    counts.len()
                );
            }
            if missing > 0 {
                // Most frequent; ties to the first in sort order (deterministic).
                let (mode, _) = counts.iter().fold(("", 0), |best, (k, n)| if *n > best.1 { (k, *n) } else { best });
                fill.insert(c, mode.to_string());
                imputed.insert(name.clone(), Imputed { missing, value: mode.to_string() });
            }
            encodings.insert(name.clone(), counts.keys().map(|k| k.to_string()).collect::<Vec<_>>());
        } else if missing > 0 {
            let mut values: Vec<f64> =
                rows.iter().filter_map(|r| r.3[c].parse::<f64>().ok()).filter(|v| v.is_finite()).collect();
            let m = if values.is_empty() { 0.0 } else { median(&mut values) };
            fill.insert(c, m.to_string());
            imputed.insert(name.clone(), Imputed { missing, value: m.to_string() });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut feature_names = Vec::new();
    for &c in &features {
        match encodings.get(&headers[c]) {
            Some(cats) => feature_names.extend(cats.iter().map(|v| format!("{}={v}", headers[c]))),
            None => feature_names.push(headers[c].clone()),
        }
        if fill.contains_key(&c) {
            feature_names.push(format!("{}_missing", headers[c]));
        }
    }

    // Pass 2: the matrix.
    let bar = crate::progress::steps(rows.len() as u64, "building the feature matrix");
    let mut data = Vec::with_capacity(rows.len() * feature_names.len());
    let mut y = Vec::with_capacity(rows.len());
    let mut numbers = Vec::with_capacity(rows.len());
    'rows: for (k, (row, line, label_value, rec)) in rows.into_iter().enumerate() {
        if k % 4096 == 0 {
            bar.set_position(k as u64);
        }
        let start = data.len();
        for &c in &features {
            let gap = is_missing(&rec[c]);
            let value = if gap { fill[&c].as_str() } else { &rec[c] };
            if categorical[c] {
                let cats = &encodings[&headers[c]];
                data.extend(cats.iter().map(|k| if k == value { 1.0 } else { 0.0 }));
            } else {
                match value.parse::<f64>() {
                    Ok(v) if v.is_finite() => data.push(v),
                    _ => {
                        data.truncate(start);
                        bad.add(line, format!("column {:?}: {:?} is not a number", headers[c], &rec[c]))?;
                        continue 'rows;
                    }
                }
            }
            if fill.contains_key(&c) {
                data.push(if gap { 1.0 } else { 0.0 });
            }
        }
        y.push(label_value);
        numbers.push(row);
    }
    bar.finish_and_clear();
    if y.is_empty() {
        bail!("{}: no usable rows", path.display());
    }
    let x = Array2::from_shape_vec((y.len(), feature_names.len()), data).expect("rows have one value per feature");
    Ok(Table { feature_names, x, y, encodings, rows: numbers, imputed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts<'a>(label: &'a str, drop: &'a [String]) -> Options<'a> {
        Options { label, drop, filter: None, delimiter: None, max_levels: 50 }
    }

    fn table(text: &str, o: &Options) -> anyhow::Result<(Table, BadRows)> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, text).unwrap();
        let mut bad = BadRows::new(10);
        read(&p, o, &mut bad).map(|t| (t, bad))
    }

    /// Gaps are imputed (median, most frequent) with an indicator column, not dropped rows.
    #[test]
    fn missing_values_are_imputed_with_an_indicator() {
        let text = "a;b;c;y\n1;red;5;1\nNA;red;7;0\n3;?;;1\n10;blue;NaN;0\n;red;6;1\n";
        let (t, bad) = table(text, &opts("y", &[])).unwrap();
        assert_eq!(bad.count, 0);
        assert_eq!(t.y.len(), 5);
        assert_eq!(t.feature_names, ["a", "a_missing", "b=blue", "b=red", "b_missing", "c", "c_missing"]);
        // a: median of 1, 3, 10; b: "red"; c: median of 5, 7, 6.
        assert_eq!(t.x.row(1).to_vec(), [3.0, 1.0, 0.0, 1.0, 0.0, 7.0, 0.0]);
        assert_eq!(t.x.row(2).to_vec(), [3.0, 0.0, 0.0, 1.0, 1.0, 6.0, 1.0]);
        assert_eq!(t.imputed["a"], Imputed { missing: 2, value: "3".into() });
        assert_eq!(t.imputed["b"], Imputed { missing: 1, value: "red".into() });
        assert_eq!(t.imputed["c"].missing, 2);
    }

    #[test]
    fn too_many_levels_are_refused_unless_allowed() {
        let mut text = "id,x,y\n".to_string();
        for i in 0..30 {
            text += &format!("user{i},{i},{}\n", i % 2);
        }
        let err = table(&text, &Options { max_levels: 20, ..opts("y", &[]) }).err().unwrap().to_string();
        assert!(err.contains(r#"column "id" has 30 distinct values"#) && err.contains("--drop id"), "{err}");
        assert!(err.contains("--max-levels 30"), "{err}");
        let (t, _) = table(&text, &Options { max_levels: 30, ..opts("y", &[]) }).unwrap();
        assert_eq!(t.encodings["id"].len(), 30);
        let drop = ["id".to_string()];
        let (t, _) = table(&text, &Options { max_levels: 20, ..opts("y", &drop) }).unwrap();
        assert_eq!(t.feature_names, ["x"]);
    }

    /// Each delimiter is detected; a wrong explicit one names the delimiter it read with.
    #[test]
    fn delimiters_are_detected_or_given() {
        for d in [",", ";", "\t", "|"] {
            let text = format!("x{d}y\n1{d}0\n2{d}1\n");
            let (t, _) = table(&text, &opts("y", &[])).unwrap();
            assert_eq!(t.x.column(0).to_vec(), [1.0, 2.0], "{d:?}");
        }
        let err = table("x;y\n1;0\n", &Options { delimiter: Some(b','), ..opts("y", &[]) }).err().unwrap();
        assert!(err.to_string().contains("no column \"y\"") && err.to_string().contains("','"), "{err}");
    }

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
        let t = read(&p, &Options { filter: Some(("Arm", "A")), ..opts("Revenue", &drop) }, &mut bad).unwrap();
        assert_eq!(t.feature_names, ["Month=June", "Month=May", "Visits"]);
        assert_eq!(t.encodings["Month"], ["June", "May"]);
        assert_eq!(t.y[..2], [true, false]);
        assert_eq!(t.y.len(), 27, "the arm B row is filtered out");
        assert_eq!(t.x.row(0).to_vec(), [0.0, 1.0, 3.0]);
        assert_eq!(t.rows[..3], [1, 2, 7], "input data rows: 3, 5, 6 are bad, 4 is filtered out");
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
        let t = read(&p, &opts("Revenue", &[]), &mut bad).unwrap();
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
