//! Finding a model's files: a local folder, or a Hugging Face Hub repository through `hf-hub`
//! and its cache (the same `models--org--name/snapshots/<rev>/` layout Python's
//! `huggingface_hub` uses, under `$HF_HOME/hub` or `$HF_HUB_CACHE`), online or offline
//! (`HF_HUB_OFFLINE=1`).

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use super::ModelError;

/// Where a model comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// A local folder with `config.json` and safetensors files.
    Dir(PathBuf),
    /// A Hub repository id (`deepseek-ai/DeepSeek-OCR`) at a revision (default `main`).
    Hub {
        /// `org/name`.
        repo: String,
        /// Branch, tag or commit.
        revision: Option<String>,
    },
}

impl ModelSource {
    /// A folder if `spec` names an existing one, else a Hub id (`org/name[@revision]`).
    pub fn parse(spec: &str) -> Self {
        let p = Path::new(spec);
        if p.is_dir() {
            return ModelSource::Dir(p.to_path_buf());
        }
        match spec.split_once('@') {
            Some((repo, rev)) => ModelSource::Hub {
                repo: repo.to_string(),
                revision: Some(rev.to_string()),
            },
            None => ModelSource::Hub {
                repo: spec.to_string(),
                revision: None,
            },
        }
    }

    fn name(&self) -> String {
        match self {
            ModelSource::Dir(d) => d.display().to_string(),
            ModelSource::Hub { repo, .. } => repo.clone(),
        }
    }
}

/// The files of a model.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `tokenizer.json`, if the model has one.
    pub tokenizer: Option<PathBuf>,
    /// The weight shards.
    pub weights: Vec<PathBuf>,
}

/// Whether `HF_HUB_OFFLINE` asks for offline mode.
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes"))
}

/// The hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    if let Ok(p) = std::env::var("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    Cache::from_env().path().clone()
}

trait Fetch {
    fn fetch(&self, file: &str) -> Result<Option<PathBuf>, String>;
}

struct DirFetch(PathBuf);
impl Fetch for DirFetch {
    fn fetch(&self, file: &str) -> Result<Option<PathBuf>, String> {
        let p = self.0.join(file);
        Ok(p.is_file().then_some(p))
    }
}

struct CacheFetch(hf_hub::CacheRepo);
impl Fetch for CacheFetch {
    fn fetch(&self, file: &str) -> Result<Option<PathBuf>, String> {
        Ok(self.0.get(file))
    }
}

struct ApiFetch(hf_hub::api::sync::ApiRepo);
impl Fetch for ApiFetch {
    fn fetch(&self, file: &str) -> Result<Option<PathBuf>, String> {
        match self.0.get(file) {
            Ok(p) => Ok(Some(p)),
            Err(hf_hub::api::sync::ApiError::RequestError(e))
                if matches!(*e, ureq::Error::Status(404, _)) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Resolves `source` to its files, downloading what is missing unless `offline`.
pub fn resolve(source: &ModelSource, offline: bool) -> Result<ModelFiles, ModelError> {
    let name = source.name();
    let fetcher: Box<dyn Fetch> = match source {
        ModelSource::Dir(d) => Box::new(DirFetch(d.clone())),
        ModelSource::Hub { repo, revision } => {
            let repo = Repo::with_revision(
                repo.clone(),
                RepoType::Model,
                revision.clone().unwrap_or_else(|| "main".into()),
            );
            if offline {
                Box::new(CacheFetch(Cache::new(cache_dir()).repo(repo)))
            } else {
                let api = hf_hub::api::sync::ApiBuilder::from_env()
                    .with_cache_dir(cache_dir())
                    .build()
                    .map_err(|e| ModelError::Hub {
                        model: name.clone(),
                        reason: e.to_string(),
                    })?;
                Box::new(ApiFetch(api.repo(repo)))
            }
        }
    };
    let hub_err = |reason: String| ModelError::Hub {
        model: name.clone(),
        reason,
    };
    let where_ = if offline && matches!(source, ModelSource::Hub { .. }) {
        format!("in the offline cache {}", cache_dir().display())
    } else {
        "in the model".into()
    };
    let config = fetcher
        .fetch("config.json")
        .map_err(&hub_err)?
        .ok_or_else(|| hub_err(format!("no config.json {where_}")))?;
    let tokenizer = fetcher.fetch("tokenizer.json").map_err(&hub_err)?;
    let weights = if let Some(single) = fetcher.fetch("model.safetensors").map_err(&hub_err)? {
        vec![single]
    } else if let Some(index) = fetcher
        .fetch("model.safetensors.index.json")
        .map_err(&hub_err)?
    {
        let mut shards = shard_names(&index).map_err(&hub_err)?;
        shards.sort();
        shards.dedup();
        shards
            .iter()
            .map(|s| {
                fetcher.fetch(s).map_err(&hub_err)?.ok_or_else(|| {
                    hub_err(format!("shard {s} listed in the index is missing {where_}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        return Err(hub_err(format!(
            "neither model.safetensors nor model.safetensors.index.json {where_}"
        )));
    };
    Ok(ModelFiles {
        config,
        tokenizer,
        weights,
    })
}

/// The shard file names of a `model.safetensors.index.json`.
fn shard_names(index: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(index).map_err(|e| format!("{}: {e}", index.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| format!("{}: no weight_map", index.display()))?;
    Ok(map
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made cache in Python's layout resolves offline, shards from the index.
    #[test]
    fn offline_cache_layout_resolves() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--org--tiny");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::write(
            snap.join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-1.safetensors"}}"#,
        )
        .unwrap();
        std::fs::write(snap.join("m-1.safetensors"), "").unwrap();
        std::fs::write(snap.join("m-2.safetensors"), "").unwrap();
        let cache = Cache::new(tmp.path().to_path_buf()).repo(Repo::model("org/tiny".into()));
        assert_eq!(
            CacheFetch(cache).fetch("config.json").unwrap(),
            Some(snap.join("config.json"))
        );
        std::env::set_var("HF_HUB_CACHE", tmp.path());
        let files = resolve(&ModelSource::parse("org/tiny"), true).unwrap();
        assert_eq!(
            files.weights,
            vec![snap.join("m-1.safetensors"), snap.join("m-2.safetensors")]
        );
        assert!(files.tokenizer.is_none());
        let err = resolve(&ModelSource::parse("org/absent"), true).unwrap_err();
        assert!(err.to_string().contains("org/absent"), "{err}");
        std::env::remove_var("HF_HUB_CACHE");
    }

    #[test]
    fn local_folder_wins_over_hub_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = tmp.path().to_str().unwrap();
        assert_eq!(
            ModelSource::parse(spec),
            ModelSource::Dir(tmp.path().to_path_buf())
        );
        assert_eq!(
            ModelSource::parse("deepseek-ai/DeepSeek-OCR@v1"),
            ModelSource::Hub {
                repo: "deepseek-ai/DeepSeek-OCR".into(),
                revision: Some("v1".into())
            }
        );
    }
}
