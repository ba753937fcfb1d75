//! Loading two text columns (evaluation pairs; training documents with their summaries) from
//! JSONL, Parquet or CSV.
//!
//! Records that cannot be used (invalid JSON or UTF-8, a missing or non-string field, a null
//! value) are returned as [`BadRecord`]s with their 1-based line (JSONL) or row (Parquet)
//! number; the good ones are still loaded, so one bad line never hides the rest.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::DataError;
use crate::fsutil::IoError;

/// One pair to score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// Record id (the `id` field, else the line/row number).
    pub id: String,
    /// The reference (target) text.
    pub reference: String,
    /// The system output.
    pub prediction: String,
}

impl Pair {
    /// A pair from its parts.
    pub fn new(
        id: impl Into<String>,
        reference: impl Into<String>,
        prediction: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            reference: reference.into(),
            prediction: prediction.into(),
        }
    }
}

/// A record that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// 1-based line (JSONL) or row (Parquet) number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// Field names of the pair columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairFields {
    /// Reference text field.
    pub reference: String,
    /// Prediction text field.
    pub prediction: String,
    /// Id field (optional in the data).
    pub id: String,
}

impl Default for PairFields {
    fn default() -> Self {
        Self {
            reference: "reference".into(),
            prediction: "prediction".into(),
            id: "id".into(),
        }
    }
}

/// Pairs loaded from a file, with the records that were skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadedPairs {
    /// The usable pairs, in file order.
    pub pairs: Vec<Pair>,
    /// Skipped records.
    pub bad: Vec<BadRecord>,
}

/// Loads pairs from a `.jsonl`, `.parquet` or `.csv` file (CSV: RFC 4180 with a header row;
/// the record number is the line the record starts on).
pub fn load_pairs(path: &Path, fields: &PairFields) -> Result<LoadedPairs, DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jsonl") | Some("json") => load_jsonl(path, fields),
        Some("parquet") => load_parquet(path, fields),
        Some("csv") => load_csv(path, fields),
        _ => Err(DataError::UnsupportedFormat {
            path: path.to_owned(),
            expected: "a .jsonl, .parquet or .csv file",
        }),
    }
}

fn load_jsonl(path: &Path, fields: &PairFields) -> Result<LoadedPairs, DataError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::new("read", path, e))?;
    let mut out = LoadedPairs::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(e) => {
                out.bad.push(BadRecord {
                    line,
                    reason: format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                });
                continue;
            }
        };
        match parse_record(text, fields, line) {
            Ok(pair) => out.pairs.push(pair),
            Err(reason) => out.bad.push(BadRecord { line, reason }),
        }
    }
    Ok(out)
}

fn parse_record(text: &str, fields: &PairFields, line: usize) -> Result<Pair, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "not a JSON object".to_owned())?;
    let field = |name: &str| -> Result<String, String> {
        match obj.get(name) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("field `{name}` is not a string but {other}")),
            None => Err(format!("missing string field `{name}`")),
        }
    };
    let reference = field(&fields.reference)?;
    let prediction = field(&fields.prediction)?;
    let id = match obj.get(&fields.id) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v @ serde_json::Value::Number(_)) => v.to_string(),
        _ => line.to_string(),
    };
    Ok(Pair {
        id,
        reference,
        prediction,
    })
}

/// RFC 4180 records: `(starting line, fields)`; quoted fields may hold commas, `""` and
/// newlines. An unterminated quote is an error naming its line.
/// A CSV record: the line it starts on and its fields.
type CsvRecord = (usize, Vec<String>);

fn csv_records(text: &str) -> Result<Vec<CsvRecord>, (usize, String)> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut cur = String::new();
    let (mut line, mut start) = (1usize, 1usize);
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cur.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    cur.push(c);
                }
                _ => cur.push(c),
            }
            continue;
        }
        match c {
            '"' if cur.is_empty() => quoted = true,
            ',' => fields.push(std::mem::take(&mut cur)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut cur));
                out.push((start, std::mem::take(&mut fields)));
                line += 1;
                start = line;
                any = false;
            }
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err((start, "unterminated quoted field".into()));
    }
    if any || !cur.is_empty() || !fields.is_empty() {
        fields.push(cur);
        out.push((start, fields));
    }
    Ok(out)
}

fn load_csv(path: &Path, fields: &PairFields) -> Result<LoadedPairs, DataError> {
    let bytes = std::fs::read(path).map_err(|e| IoError::new("read", path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| DataError::InvalidUtf8 {
        path: path.to_owned(),
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = csv_records(text).map_err(|(line, reason)| DataError::Csv {
        path: path.to_owned(),
        line,
        reason,
    })?;
    let mut it = records.into_iter();
    let Some((_, header)) = it.next() else {
        return Ok(LoadedPairs::default());
    };
    let col = |name: &str| header.iter().position(|h| h == name);
    let missing = |name: &str| DataError::MissingColumn {
        path: path.to_owned(),
        column: name.to_owned(),
    };
    let r = col(&fields.reference).ok_or_else(|| missing(&fields.reference))?;
    let p = col(&fields.prediction).ok_or_else(|| missing(&fields.prediction))?;
    let id = col(&fields.id);
    let mut out = LoadedPairs::default();
    for (line, rec) in it {
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        if rec.len() != header.len() {
            out.bad.push(BadRecord {
                line,
                reason: format!("{} fields, the header has {}", rec.len(), header.len()),
            });
            continue;
        }
        out.pairs.push(Pair {
            id: id
                .map(|i| rec[i].clone())
                .unwrap_or_else(|| line.to_string()),
            reference: rec[r].clone(),
            prediction: rec[p].clone(),
        });
    }
    Ok(out)
}

#[cfg(not(feature = "frames"))]
fn load_parquet(path: &Path, _fields: &PairFields) -> Result<LoadedPairs, DataError> {
    Err(DataError::Parquet {
        path: path.to_owned(),
        reason: crate::NO_FRAMES.into(),
    })
}

#[cfg(feature = "frames")]
fn load_parquet(path: &Path, fields: &PairFields) -> Result<LoadedPairs, DataError> {
    use polars::prelude::{DataType, ParquetReader, SerReader};
    let parquet_err = |reason: String| DataError::Parquet {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| IoError::new("open", path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| parquet_err(e.to_string()))?;
    let text_column = |name: &str| -> Result<Vec<Option<String>>, DataError> {
        let col = df.column(name).map_err(|_| DataError::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
        })?;
        let col = col
            .cast(&DataType::String)
            .map_err(|e| parquet_err(format!("column `{name}`: {e}")))?;
        let ca = col
            .str()
            .map_err(|e| parquet_err(format!("column `{name}`: {e}")))?;
        Ok(ca.iter().map(|v| v.map(str::to_owned)).collect())
    };
    let refs = text_column(&fields.reference)?;
    let preds = text_column(&fields.prediction)?;
    let ids = if df.column(&fields.id).is_ok() {
        text_column(&fields.id)?
    } else {
        vec![None; df.height()]
    };
    let mut out = LoadedPairs::default();
    for (i, ((r, p), id)) in refs.into_iter().zip(preds).zip(ids).enumerate() {
        let row = i + 1;
        match (r, p) {
            (Some(reference), Some(prediction)) => out.pairs.push(Pair {
                id: id.unwrap_or_else(|| row.to_string()),
                reference,
                prediction,
            }),
            (r, _) => {
                let name = if r.is_none() {
                    &fields.reference
                } else {
                    &fields.prediction
                };
                out.bad.push(BadRecord {
                    line: row,
                    reason: format!("null `{name}`"),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_newlines_and_bad_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("d.csv");
        std::fs::write(
            &p,
            "id,text,summary\r\n1,\"Hello, \"\"world\"\"\nline two\",Short.\n2,only two\n3,plain,\"S, with comma\"\n",
        )
        .unwrap();
        let f = PairFields {
            reference: "summary".into(),
            prediction: "text".into(),
            id: "id".into(),
        };
        let got = load_pairs(&p, &f).unwrap();
        assert_eq!(got.pairs.len(), 2);
        assert_eq!(got.pairs[0].prediction, "Hello, \"world\"\nline two");
        assert_eq!(got.pairs[0].reference, "Short.");
        assert_eq!(got.pairs[1].reference, "S, with comma");
        assert_eq!(
            got.bad,
            vec![BadRecord {
                line: 4,
                reason: "2 fields, the header has 3".into()
            }]
        );
        std::fs::write(&p, "text,summary\n\"open,x\n").unwrap();
        let err = load_pairs(&p, &f).unwrap_err().to_string();
        assert!(err.contains("d.csv:2: invalid CSV: unterminated"), "{err}");
    }

    #[test]
    fn jsonl_keeps_good_records_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pairs.jsonl");
        let mut bytes =
            b"{\"id\": \"a\", \"reference\": \"r1\", \"prediction\": \"p1\"}\n\n".to_vec();
        bytes.extend_from_slice(b"{\"reference\": \"r\xff\", \"prediction\": \"p\"}\n");
        bytes.extend_from_slice(b"{\"reference\": \"only\"}\r\n");
        bytes.extend_from_slice(b"{\"reference\": 3, \"prediction\": \"p\"}\n");
        bytes.extend_from_slice(b"[1, 2]\n{\"reference\": \"r6\", \"prediction\": \"p6\"}");
        std::fs::write(&p, bytes).unwrap();
        let got = load_pairs(&p, &PairFields::default()).unwrap();
        assert_eq!(
            got.pairs,
            vec![Pair::new("a", "r1", "p1"), Pair::new("7", "r6", "p6")]
        );
        let bad: Vec<(usize, &str)> = got
            .bad
            .iter()
            .map(|b| (b.line, b.reason.as_str()))
            .collect();
        assert_eq!(bad.len(), 4);
        assert_eq!(bad[0].0, 3);
        assert!(bad[0].1.starts_with("invalid UTF-8"), "{}", bad[0].1);
        assert_eq!(bad[1], (4, "missing string field `prediction`"));
        assert_eq!(bad[2], (5, "field `reference` is not a string but 3"));
        assert_eq!(bad[3], (6, "not a JSON object"));
    }

    #[cfg(feature = "frames")]
    #[test]
    fn parquet_round_trip_with_custom_fields_and_nulls() {
        use polars::prelude::{Column, DataFrame, ParquetWriter};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pairs.parquet");
        let mut df = DataFrame::new(
            3,
            vec![
                Column::new("summary".into(), [Some("r1"), None, Some("r3")]),
                Column::new("generated".into(), [Some("p1"), Some("p2"), Some("p3")]),
            ],
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(&p).unwrap())
            .finish(&mut df)
            .unwrap();
        let fields = PairFields {
            reference: "summary".into(),
            prediction: "generated".into(),
            id: "id".into(),
        };
        let got = load_pairs(&p, &fields).unwrap();
        assert_eq!(
            got.pairs,
            vec![Pair::new("1", "r1", "p1"), Pair::new("3", "r3", "p3")]
        );
        assert_eq!(
            got.bad,
            vec![BadRecord {
                line: 2,
                reason: "null `summary`".into()
            }]
        );
        let err = load_pairs(&p, &PairFields::default()).unwrap_err();
        assert!(err.to_string().contains("no column `reference`"), "{err}");
        std::fs::write(&p, b"PAR1 not really").unwrap();
        assert!(matches!(
            load_pairs(&p, &fields),
            Err(DataError::Parquet { .. })
        ));
    }
}
