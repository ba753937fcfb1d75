//! Batch rendering over many documents in parallel (rayon), in memory or to a folder.
//!
//! Each worker thread keeps its own [`RenderCache`]; output is byte-for-byte the same for any
//! thread count because every document is laid out and drawn independently.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{PngCompression, RenderCache, RenderError, RenderReport, Rendered, Renderer};
use crate::fsutil::{atomic_write, create_dir_all};

/// A document to render: an identifier (used in file names) and its text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Identifier; sanitised to `[A-Za-z0-9._-]` in file names.
    pub id: String,
    /// The text.
    pub text: String,
}

impl Document {
    /// A document from an id and text.
    pub fn new(id: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            text: text.into(),
        }
    }
}

/// Options for batch rendering.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct BatchOptions {
    /// Worker threads (`None`: rayon's default, one per core).
    pub threads: Option<usize>,
    /// PNG compression for files.
    pub compression: PngCompression,
}

impl BatchOptions {
    /// Sets the number of worker threads.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }
}

/// The outcome for one document written to a folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentOutput {
    /// Document id.
    pub id: String,
    /// Page files written, in order (relative to the output folder).
    pub files: Vec<String>,
    /// The render report, when rendering succeeded.
    pub report: Option<RenderReport>,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// What a folder render produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// One entry per input document, in input order.
    pub documents: Vec<DocumentOutput>,
    /// Pages written in total.
    pub pages: usize,
    /// Documents that failed.
    pub failed: usize,
    /// Where the per-document reports were written (`report.jsonl`).
    pub report_path: PathBuf,
}

impl Renderer {
    /// Renders every text in parallel; results are in input order.
    pub fn render_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        options: &BatchOptions,
    ) -> Result<Vec<Result<Rendered, RenderError>>, RenderError> {
        run_in_pool(options.threads, || {
            texts
                .par_iter()
                .map_init(RenderCache::new, |cache, t| {
                    self.render_with(t.as_ref(), cache)
                })
                .collect()
        })
    }

    /// Renders `docs` to PNG files `<id>-p001.png`, ... in `out_dir`, plus `report.jsonl`.
    ///
    /// A document that fails (e.g. strict mode and a missing glyph) is recorded in the summary
    /// and the rest go on. `progress(done, total)` is called as documents finish. Every file is
    /// written atomically.
    pub fn render_to_dir(
        &self,
        docs: &[Document],
        out_dir: &Path,
        options: &BatchOptions,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<BatchSummary, RenderError> {
        create_dir_all(out_dir)?;
        let done = AtomicUsize::new(0);
        let total = docs.len();
        let stems = unique_stems(docs);
        let outputs: Vec<DocumentOutput> = run_in_pool(options.threads, || {
            docs.par_iter()
                .zip(stems.par_iter())
                .map_init(RenderCache::new, |cache, (doc, stem)| {
                    let out = self.write_document(doc, stem, out_dir, options, cache);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    out
                })
                .collect()
        })?;
        let mut lines = String::new();
        for o in &outputs {
            lines.push_str(&serde_json::to_string(o).unwrap_or_default());
            lines.push('\n');
        }
        let report_path = out_dir.join("report.jsonl");
        atomic_write(&report_path, lines.as_bytes())?;
        Ok(BatchSummary {
            pages: outputs.iter().map(|o| o.files.len()).sum(),
            failed: outputs.iter().filter(|o| o.error.is_some()).count(),
            documents: outputs,
            report_path,
        })
    }

    fn write_document(
        &self,
        doc: &Document,
        stem: &str,
        out_dir: &Path,
        options: &BatchOptions,
        cache: &mut RenderCache,
    ) -> DocumentOutput {
        let mut out = DocumentOutput {
            id: doc.id.clone(),
            files: Vec::new(),
            report: None,
            error: None,
        };
        let result = self.layout_with(&doc.text, cache).and_then(|layout| {
            for (i, page) in layout.pages.iter().enumerate() {
                let name = format!("{stem}-p{:03}.png", i + 1);
                let png = self
                    .rasterize_with(page, cache)
                    .to_png(options.compression)?;
                atomic_write(&out_dir.join(&name), &png)?;
                out.files.push(name);
            }
            Ok(layout.report)
        });
        match result {
            Ok(report) => out.report = Some(report),
            Err(e) => out.error = Some(e.to_string()),
        }
        out
    }
}

fn run_in_pool<T: Send>(
    threads: Option<usize>,
    work: impl FnOnce() -> T + Send,
) -> Result<T, RenderError> {
    match threads {
        None => Ok(work()),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n.max(1))
                .build()
                .map_err(|e| RenderError::InvalidConfig {
                    field: "threads",
                    reason: e.to_string(),
                })?;
            Ok(pool.install(work))
        }
    }
}

/// File stems from ids: unsafe characters become `_`; a stem already taken gets `-2`, `-3`, ...
fn unique_stems(docs: &[Document]) -> Vec<String> {
    let mut used = std::collections::HashSet::new();
    docs.iter()
        .map(|d| {
            let mut stem: String =
                d.id.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .take(100)
                    .collect();
            if stem.is_empty() || stem.starts_with('.') {
                stem.insert_str(0, "doc");
            }
            let mut candidate = stem.clone();
            let mut n = 1;
            while !used.insert(candidate.clone()) {
                n += 1;
                candidate = format!("{stem}-{n}");
            }
            candidate
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_safe_and_unique() {
        let docs = [
            Document::new("a/b c", ""),
            Document::new("a/b c", ""),
            Document::new("", ""),
            Document::new("../x", ""),
            Document::new("a_b_c-2", ""),
        ];
        let stems = unique_stems(&docs);
        assert_eq!(stems[..4], ["a_b_c", "a_b_c-2", "doc", "doc.._x"]);
        assert_eq!(stems[4], "a_b_c-2-2");
    }
}
