//! Hugging Face Hub datasets as pairs: the Parquet files of one config and split, found in the
//! repository (or its `refs/convert/parquet` branch, where the Hub keeps converted copies),
//! downloaded through `hf-hub` into the shared cache, or read from it offline.
//!
//! A dataset is named `hf://owner/name[@revision][/config]/split`, e.g.
//! `hf://ccdv/cnn_dailymail/3.0.0/train` or `hf://reciTAL/mlsum/fr/test`.

use std::path::{Path, PathBuf};

use hf_hub::{Repo, RepoType};

use super::{load_pairs, DataError, LoadedPairs, PairFields};
use crate::model::hub::cache_dir;

/// The Hub branch with the automatic Parquet conversion of every dataset.
pub const PARQUET_BRANCH: &str = "refs/convert/parquet";

/// One split of a Hub dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubDataset {
    /// `owner/name`.
    pub repo: String,
    /// Branch, tag or commit; `None` tries `main`, then [`PARQUET_BRANCH`].
    pub revision: Option<String>,
    /// Config (subset) folder, if the dataset has several.
    pub config: Option<String>,
    /// Split: `train`, `validation`, `test`, ...
    pub split: String,
}

impl HubDataset {
    /// Parses `hf://owner/name[@revision][/config]/split`; `None` if `spec` is not an `hf://`
    /// name, an error if it is one but malformed.
    pub fn parse(spec: &str) -> Option<Result<Self, DataError>> {
        let rest = spec.strip_prefix("hf://")?;
        let parts: Vec<&str> = rest.split('/').collect();
        let bad = || DataError::Invalid {
            what: format!("dataset `{spec}`"),
            reason: "expected hf://owner/name[@revision][/config]/split".into(),
        };
        if !(3..=4).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Some(Err(bad()));
        }
        let (name, revision) = match parts[1].split_once('@') {
            Some((n, r)) if !n.is_empty() && !r.is_empty() => (n, Some(r.to_string())),
            Some(_) => return Some(Err(bad())),
            None => (parts[1], None),
        };
        Some(Ok(Self {
            repo: format!("{}/{name}", parts[0]),
            revision,
            config: (parts.len() == 4).then(|| parts[2].to_string()),
            split: parts[parts.len() - 1].to_string(),
        }))
    }

    /// Whether repository file `path` is a Parquet file of this config and split
    /// (`config/split-00000-of-00003.parquet`, `config/split/0000.parquet`, `data/split-*.parquet`).
    pub fn selects(&self, path: &str) -> bool {
        if !path.ends_with(".parquet") {
            return false;
        }
        let comps: Vec<&str> = path.split('/').collect();
        let (dirs, file) = comps.split_at(comps.len() - 1);
        if let Some(c) = &self.config {
            if dirs.first() != Some(&c.as_str()) {
                return false;
            }
        }
        let file = file[0];
        dirs.iter().skip(1).any(|d| *d == self.split)
            || (dirs.len() == 1 && self.config.is_none() && dirs[0] == self.split)
            || file.starts_with(&format!("{}-", self.split))
            || file.starts_with(&format!("{}.", self.split))
    }

    fn revisions(&self) -> Vec<String> {
        match &self.revision {
            Some(r) => vec![r.clone()],
            None => vec!["main".into(), PARQUET_BRANCH.into()],
        }
    }

    fn err(&self, reason: String) -> DataError {
        DataError::Invalid {
            what: format!("Hub dataset {}", self.repo),
            reason,
        }
    }

    /// The local paths of the split's Parquet files in the default cache ([`cache_dir`]).
    pub fn files(&self, offline: bool) -> Result<Vec<PathBuf>, DataError> {
        self.files_in(&cache_dir(), offline)
    }

    /// The local paths of the split's Parquet files in the hub cache `cache`, sorted;
    /// downloads what is missing unless `offline`.
    pub fn files_in(&self, cache: &Path, offline: bool) -> Result<Vec<PathBuf>, DataError> {
        let mut tried = Vec::new();
        for rev in self.revisions() {
            let repo = Repo::with_revision(self.repo.clone(), RepoType::Dataset, rev.clone());
            let found = if offline {
                cached_files(cache, &repo)
                    .into_iter()
                    .filter(|(name, _)| self.selects(name))
                    .map(|(_, p)| p)
                    .collect::<Vec<_>>()
            } else {
                let api = hf_hub::api::sync::ApiBuilder::from_env()
                    .with_cache_dir(cache.to_path_buf())
                    .build()
                    .map_err(|e| self.err(e.to_string()))?;
                let api = api.repo(repo);
                let info = match api.info() {
                    Ok(i) => i,
                    Err(e) => {
                        tried.push(format!("{rev}: {e}"));
                        continue;
                    }
                };
                let mut names: Vec<String> = info
                    .siblings
                    .into_iter()
                    .map(|s| s.rfilename)
                    .filter(|n| self.selects(n))
                    .collect();
                names.sort();
                names
                    .iter()
                    .map(|n| {
                        api.get(n)
                            .map_err(|e| self.err(format!("downloading {n}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            };
            if !found.is_empty() {
                let mut found = found;
                found.sort();
                return Ok(found);
            }
            tried.push(format!("{rev}: no Parquet file of this split"));
        }
        let place = if offline {
            format!(" in the offline cache {}", cache.display())
        } else {
            String::new()
        };
        Err(self.err(format!(
            "no Parquet files for config {:?}, split `{}`{place} ({})",
            self.config.as_deref().unwrap_or("(none)"),
            self.split,
            tried.join("; ")
        )))
    }
}

/// `(repository path, local path)` of every file in the cached snapshot of `repo` (the
/// `refs/<revision>` commit of `<cache>/datasets--owner--name`, Python's layout).
fn cached_files(cache: &Path, repo: &Repo) -> Vec<(String, PathBuf)> {
    let dir = cache.join(repo.folder_name());
    match std::fs::read_to_string(dir.join("refs").join(repo.revision())) {
        Ok(commit) => crate::fsutil::files_under(&dir.join("snapshots").join(commit.trim()))
            .into_iter()
            .map(|(path, rel)| (rel, path))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Loads pairs from a local file ([`load_pairs`]) or, for an `hf://` name, from every Parquet
/// file of that Hub split in order.
pub fn load_pairs_from(
    spec: &str,
    fields: &PairFields,
    offline: bool,
) -> Result<LoadedPairs, DataError> {
    let Some(ds) = HubDataset::parse(spec) else {
        return load_pairs(Path::new(spec), fields);
    };
    load_hub_pairs(&ds?, fields, offline, &cache_dir())
}

/// Loads every Parquet file of a Hub split, in order, from the hub cache `cache`.
pub fn load_hub_pairs(
    ds: &HubDataset,
    fields: &PairFields,
    offline: bool,
    cache: &Path,
) -> Result<LoadedPairs, DataError> {
    let mut all = LoadedPairs::default();
    for f in ds.files_in(cache, offline)? {
        let part = load_pairs(&f, fields)?;
        all.pairs.extend(part.pairs);
        all.bad.extend(part.bad);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_select_the_split_files() {
        let d = HubDataset::parse("hf://ccdv/cnn_dailymail/3.0.0/train")
            .unwrap()
            .unwrap();
        assert_eq!(d.repo, "ccdv/cnn_dailymail");
        assert_eq!(d.config.as_deref(), Some("3.0.0"));
        assert!(d.selects("3.0.0/train-00000-of-00003.parquet"));
        assert!(d.selects("3.0.0/train/0000.parquet"));
        assert!(!d.selects("3.0.0/test-00000-of-00001.parquet"));
        assert!(!d.selects("2.0.0/train-00000-of-00003.parquet"));
        assert!(!d.selects("3.0.0/train-00000-of-00003.json"));
        let m = HubDataset::parse("hf://reciTAL/mlsum@v2/test")
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.revision.as_deref(), m.config.as_deref()),
            (Some("v2"), None)
        );
        assert!(m.selects("data/test-00000-of-00001.parquet"));
        assert!(m.selects("test/0000.parquet"));
        assert!(HubDataset::parse("data/train.jsonl").is_none());
        for bad in [
            "hf://only",
            "hf://a/b",
            "hf://a/b@/c",
            "hf://a//c",
            "hf://a/b/c/d/e",
        ] {
            assert!(HubDataset::parse(bad).unwrap().is_err(), "{bad}");
        }
    }

    /// A cache in Python's layout, with the split in the Parquet-conversion branch only,
    /// loads offline in file order; a missing split is an error naming the cache.
    #[cfg(feature = "frames")]
    #[test]
    fn offline_cache_loads_the_converted_split_in_order() {
        use polars::prelude::*;
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("datasets--org--news");
        let snap = repo.join("snapshots").join("c0ffee");
        std::fs::create_dir_all(snap.join("default/test")).unwrap();
        std::fs::create_dir_all(repo.join("refs/refs/convert")).unwrap();
        std::fs::write(repo.join("refs/refs/convert/parquet"), "c0ffee").unwrap();
        for (i, rows) in [(1, ["c", "d"]), (0, ["a", "b"])] {
            let mut df = df!(
                "article" => rows.iter().map(|r| format!("text {r}")).collect::<Vec<_>>(),
                "highlights" => rows.iter().map(|r| format!("sum {r}")).collect::<Vec<_>>()
            )
            .unwrap();
            let f =
                std::fs::File::create(snap.join(format!("default/test/000{i}.parquet"))).unwrap();
            ParquetWriter::new(f).finish(&mut df).unwrap();
        }
        let fields = PairFields {
            reference: "highlights".into(),
            prediction: "article".into(),
            id: "id".into(),
        };
        let ds = |s: &str| HubDataset::parse(s).unwrap().unwrap();
        let got =
            load_hub_pairs(&ds("hf://org/news/default/test"), &fields, true, tmp.path()).unwrap();
        let refs: Vec<&str> = got.pairs.iter().map(|p| p.reference.as_str()).collect();
        assert_eq!(refs, ["sum a", "sum b", "sum c", "sum d"]);
        let err = load_hub_pairs(
            &ds("hf://org/news/default/train"),
            &fields,
            true,
            tmp.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("offline cache"), "{err}");
    }
}
