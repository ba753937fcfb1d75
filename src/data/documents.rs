//! Loading documents to render: a text file, a JSONL file, or a folder of them.
//!
//! - `*.txt` / `*.md`: one document, id = file stem.
//! - `*.jsonl`: one JSON object per line with a text field (default `text`) and an optional id
//!   field (default `id`; the line number otherwise). Blank lines are skipped.
//! - a folder: every `.txt`, `.md` and `.jsonl` file in it (not recursive), in name order.

use std::path::{Path, PathBuf};

use crate::fsutil::IoError;
use crate::render::Document;

/// Errors loading documents; each names the file and, for JSONL, the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file is not valid UTF-8.
    #[error("{path}: not valid UTF-8 (first bad byte at offset {offset})")]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// A JSONL line is not a JSON object.
    #[error("{path}:{line}: invalid JSON: {reason}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        reason: String,
    },
    /// A CSV file is malformed.
    #[error("{path}:{line}: invalid CSV: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// A JSONL record lacks the text field (or it is not a string).
    #[error("{path}:{line}: missing string field `{field}`")]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field.
        field: String,
    },
    /// A file in a format this loader does not read.
    #[error("{path}: unsupported format (expected {expected})")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What is supported.
        expected: &'static str,
    },
    /// A Parquet file could not be read.
    #[error("{path}: cannot read Parquet: {reason}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The reader's message.
        reason: String,
    },
    /// A table lacks a required column.
    #[error("{path}: no column `{column}`")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// The path is neither a supported file nor a folder holding one.
    #[error("{path}: no documents (expected a .txt, .md or .jsonl file, or a folder of them)")]
    NoDocuments {
        /// The path.
        path: PathBuf,
    },
    /// A document that needs more than one page where only one is read.
    #[error(
        "the document needs {pages} pages; one page shows {shown_chars} of its {total_chars} \
         characters (on_overflow = truncate keeps that first page)"
    )]
    Overflow {
        /// Pages the whole text needs.
        pages: usize,
        /// Characters on the first page.
        shown_chars: usize,
        /// Characters of the document.
        total_chars: usize,
    },
    /// Rendering a document failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// An input that cannot be used (an image, a prompt, a tokenizer), with what is wrong.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being read or built.
        what: String,
        /// Why it failed.
        reason: String,
    },
}

/// Which JSONL fields hold the text and the id.
#[derive(Clone, Debug)]
pub struct DocumentSource {
    /// Field with the document text.
    pub text_field: String,
    /// Field with the document id.
    pub id_field: String,
}

impl Default for DocumentSource {
    fn default() -> Self {
        Self {
            text_field: "text".into(),
            id_field: "id".into(),
        }
    }
}

/// Loads documents from a file or folder (see the module docs for formats).
pub fn load_documents(path: &Path, source: &DocumentSource) -> Result<Vec<Document>, DataError> {
    let meta = std::fs::metadata(path).map_err(|e| IoError::new("read", path, e))?;
    let docs = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| IoError::new("list", path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && kind(p).is_some())
            .collect();
        files.sort();
        let mut docs = Vec::new();
        for f in files {
            docs.extend(load_file(&f, source)?);
        }
        docs
    } else {
        load_file(path, source)?
    };
    if docs.is_empty() {
        return Err(DataError::NoDocuments {
            path: path.to_owned(),
        });
    }
    Ok(docs)
}

#[derive(PartialEq)]
enum Kind {
    Text,
    Jsonl,
}

fn kind(path: &Path) -> Option<Kind> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "txt" | "md" => Some(Kind::Text),
        "jsonl" => Some(Kind::Jsonl),
        _ => None,
    }
}

fn load_file(path: &Path, source: &DocumentSource) -> Result<Vec<Document>, DataError> {
    let Some(k) = kind(path) else {
        return Err(DataError::NoDocuments {
            path: path.to_owned(),
        });
    };
    let bytes = std::fs::read(path).map_err(|e| IoError::new("read", path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| DataError::InvalidUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    if k == Kind::Text {
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![Document::new(id, text)]);
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| DataError::Json {
            path: path.to_owned(),
            line: line_no,
            reason: e.to_string(),
        })?;
        let missing = || DataError::MissingField {
            path: path.to_owned(),
            line: line_no,
            field: source.text_field.clone(),
        };
        let obj = value.as_object().ok_or_else(missing)?;
        let body = obj
            .get(&source.text_field)
            .and_then(|v| v.as_str())
            .ok_or_else(missing)?;
        let id = match obj.get(&source.id_field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ serde_json::Value::Number(_)) => v.to_string(),
            _ => format!("{stem}-{line_no}"),
        };
        docs.push(Document::new(id, body));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_folder_of_txt_and_jsonl_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "bee").unwrap();
        std::fs::write(
            dir.path().join("a.jsonl"),
            "{\"id\": \"x\", \"text\": \"one\"}\n\n{\"text\": \"two\"}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.png"), [0u8, 1]).unwrap();
        let docs = load_documents(dir.path(), &DocumentSource::default()).unwrap();
        let got: Vec<_> = docs
            .iter()
            .map(|d| (d.id.as_str(), d.text.as_str()))
            .collect();
        assert_eq!(got, vec![("x", "one"), ("a-3", "two"), ("b", "bee")]);
    }

    #[test]
    fn bad_records_report_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n").unwrap();
        let err = load_documents(&p, &DocumentSource::default()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("d.jsonl:2: missing string field `text`"),
            "{err}"
        );
        std::fs::write(&p, "{\"text\": \"ok\"}\n{oops\n").unwrap();
        let err = load_documents(&p, &DocumentSource::default()).unwrap_err();
        assert!(matches!(err, DataError::Json { line: 2, .. }), "{err}");
        let t = dir.path().join("bad.txt");
        std::fs::write(&t, [b'o', b'k', 0xff, 0xfe]).unwrap();
        let err = load_documents(&t, &DocumentSource::default()).unwrap_err();
        assert!(
            matches!(err, DataError::InvalidUtf8 { offset: 2, .. }),
            "{err}"
        );
    }
}
