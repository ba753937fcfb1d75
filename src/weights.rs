//! Weight loading: safetensors files read one tensor at a time (only the headers are read up
//! front; each tensor is read with positioned reads into its own buffer, so neither a second copy
//! of the checkpoint nor mapped file pages stay resident), or tensors held in memory, looked up
//! by checkpoint key with a prefix builder (`weights.pp("model").pp("sam_model")`) and converted
//! to the compute dtype as they are read.
//!
//! Shared by `quant` (pre-quantised checkpoints) and `model`. A missing tensor or one of the
//! wrong shape is a [`WeightsError`] that names it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::fs::File;
use std::os::unix::fs::FileExt;

use candle_core::{DType, Device, Tensor};

/// Why a tensor could not be had from a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The checkpoint has no tensor of that name.
    #[error("missing tensor `{name}` in {searched}")]
    MissingTensor {
        /// Full checkpoint key.
        name: String,
        /// The files (or in-memory source) searched.
        searched: String,
    },
    /// The tensor exists with another shape.
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    TensorShape {
        /// Full checkpoint key.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The stored shape.
        got: Vec<usize>,
    },
    /// A weights file or folder could not be opened or parsed.
    #[error("cannot read weights {path}: {reason}")]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Reading or converting a tensor failed.
    #[error("cannot load tensor `{name}`: {source}")]
    Load {
        /// Full checkpoint key.
        name: String,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// Writing an output file failed.
    #[error(transparent)]
    Io(#[from] crate::fsutil::IoError),
}

enum Source {
    Files {
        files: Vec<(PathBuf, File)>,
        /// name -> (file index, dtype, shape, absolute byte range)
        index: HashMap<String, Entry>,
    },
    Memory(HashMap<String, Tensor>),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Files { files, .. } => files
                .iter()
                .map(|(f, _)| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Source::Memory(_) => "<in-memory tensors>".into(),
        }
    }
}

/// The format a [`QuantizeSpec`] quantises to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuantKind {
    /// NF4, 4 bits per weight in blocks (`bitsandbytes.nn.Linear4bit`; QLoRA's default).
    #[default]
    Nf4,
    /// LLM.int8: int8 rows with an f32 scale each, outlier threshold 6.0
    /// (`bitsandbytes.nn.Linear8bitLt`, transformers' `load_in_8bit`).
    Int8,
}

/// Quantise-at-load settings: linear weights whose key starts with one of `include` (and
/// contains none of `skip`) are quantised (to NF4 or int8, see `kind`) as they are read, so a
/// dense copy of the whole model never exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizeSpec {
    /// The quantised format.
    pub kind: QuantKind,
    /// Elements per NF4 block (64 in bitsandbytes; unused by int8).
    pub blocksize: usize,
    /// Double-quantise the block scales.
    pub double_quant: bool,
    /// Key prefixes to quantise.
    pub include: Vec<String>,
    /// Key fragments never quantised.
    pub skip: Vec<String>,
    /// Keep the other frozen linear weights (vision tower, `lm_head`) in the checkpoint's
    /// bf16/f16 when the model computes in f32 on the CPU: exact (16-bit floats convert to f32
    /// without loss) at half the memory.
    pub compact_frozen: bool,
}

impl QuantizeSpec {
    /// QLoRA's default for DeepSeek-OCR: every decoder linear (attention, dense MLP, experts),
    /// NF4 blocksize 64 with double quantisation; `lm_head`, embeddings and the vision encoder
    /// stay dense (their linears in the checkpoint's 16-bit dtype, see
    /// [`compact_frozen`](Self::compact_frozen)).
    pub fn nf4_decoder() -> Self {
        Self {
            kind: QuantKind::Nf4,
            blocksize: 64,
            double_quant: true,
            include: vec!["model.layers.".into()],
            skip: vec!["lm_head".into()],
            compact_frozen: true,
        }
    }

    /// 8-bit QLoRA: the layers of [`nf4_decoder`](Self::nf4_decoder) quantised to LLM.int8
    /// (bitsandbytes' `Linear8bitLt`, threshold 6.0) instead of NF4.
    pub fn int8_decoder() -> Self {
        Self {
            kind: QuantKind::Int8,
            ..Self::nf4_decoder()
        }
    }

    /// Whether the weight `key` (a full checkpoint key) is quantised under this spec.
    pub fn selects(&self, key: &str) -> bool {
        !self.skip.iter().any(|s| key.contains(s.as_str()))
            && self.include.iter().any(|p| key.starts_with(p.as_str()))
    }
}

/// A view of a checkpoint's tensors under a key prefix, loading in one dtype on one device.
#[derive(Clone)]
pub struct Weights {
    source: Arc<Source>,
    prefix: String,
    dtype: DType,
    device: Device,
    quantize: Option<Arc<QuantizeSpec>>,
    trainable: Option<Arc<Trainable>>,
}

/// The tensors a [`Weights`] in trainable mode handed out as variables.
#[derive(Debug, Default)]
pub struct Trainable {
    prefixes: Vec<String>,
    vars: std::sync::Mutex<Vec<(String, candle_core::Var)>>,
}

impl Trainable {
    /// Every variable handed out so far, by checkpoint key, in load order.
    pub fn vars(&self) -> Vec<(String, candle_core::Var)> {
        self.vars.lock().expect("trainable set lock").clone()
    }

    fn selects(&self, key: &str) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights")
            .field("source", &self.source.describe())
            .field("prefix", &self.prefix)
            .field("dtype", &self.dtype)
            .finish()
    }
}

impl Weights {
    /// Opens `files` (one checkpoint, possibly sharded) and reads their headers; tensors are read
    /// when asked for. A truncated or corrupt file is refused here, naming it.
    pub fn from_safetensors(
        files: &[PathBuf],
        dtype: DType,
        device: &Device,
    ) -> Result<Self, WeightsError> {
        if files.is_empty() {
            return Err(WeightsError::File {
                path: PathBuf::new(),
                reason: "no safetensors file given".into(),
            });
        }
        for f in files {
            if !f.is_file() {
                return Err(WeightsError::File {
                    path: f.clone(),
                    reason: "no such file".into(),
                });
            }
        }
        let mut handles = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for (fi, path) in files.iter().enumerate() {
            let file = File::open(path).map_err(|e| WeightsError::File {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            for (name, entry) in read_header(&file, fi).map_err(|reason| WeightsError::File {
                path: path.clone(),
                reason,
            })? {
                index.insert(name, entry);
            }
            handles.push((path.clone(), file));
        }
        Ok(Self {
            source: Arc::new(Source::Files {
                files: handles,
                index,
            }),
            prefix: String::new(),
            dtype,
            device: device.clone(),
            quantize: None,
            trainable: None,
        })
    }

    /// Every `*.safetensors` file of `dir`, sorted by name.
    pub fn from_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Self, WeightsError> {
        Self::from_safetensors(&safetensors_files(dir)?, dtype, device)
    }

    /// Tensors already in memory (tests, generated checkpoints).
    pub fn from_tensors(tensors: HashMap<String, Tensor>, dtype: DType, device: &Device) -> Self {
        Self {
            source: Arc::new(Source::Memory(tensors)),
            prefix: String::new(),
            dtype,
            device: device.clone(),
            quantize: None,
            trainable: None,
        }
    }

    /// The same weights under `prefix.name`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix = if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        };
        Self {
            prefix,
            ..self.clone()
        }
    }

    /// The same weights, loading in `dtype`.
    pub fn with_dtype(&self, dtype: DType) -> Self {
        Self {
            dtype,
            ..self.clone()
        }
    }

    /// The same weights, quantising the linear layers `spec` selects as they load.
    pub fn with_quantize(&self, spec: Option<QuantizeSpec>) -> Self {
        Self {
            quantize: spec.map(Arc::new),
            ..self.clone()
        }
    }

    /// The same weights, handing out every floating-point tensor whose key starts with one of
    /// `prefixes` as a fresh [`candle_core::Var`] (recorded in the returned set), so a model
    /// built from them can be trained in full. Quantisation must be off for those tensors.
    pub fn with_trainable(&self, prefixes: &[&str]) -> (Self, Arc<Trainable>) {
        let set = Arc::new(Trainable {
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            vars: Default::default(),
        });
        (
            Self {
                trainable: Some(set.clone()),
                ..self.clone()
            },
            set,
        )
    }

    /// The quantise-at-load settings, if any.
    pub fn quantize_spec(&self) -> Option<&QuantizeSpec> {
        self.quantize.as_deref()
    }

    /// The compute dtype tensors are converted to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device tensors are loaded on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The full checkpoint key of `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether the checkpoint has `name` under this prefix.
    pub fn contains(&self, name: &str) -> bool {
        let key = self.key(name);
        match &*self.source {
            Source::Files { index, .. } => index.contains_key(&key),
            Source::Memory(m) => m.contains_key(&key),
        }
    }

    /// Every checkpoint key under this prefix.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = match &*self.source {
            Source::Files { index, .. } => index.keys().cloned().collect(),
            Source::Memory(m) => m.keys().cloned().collect(),
        };
        let p = format!("{}.", self.prefix);
        keys.retain(|k| self.prefix.is_empty() || k.starts_with(&p));
        keys.sort();
        keys
    }

    /// Whether `name` holds int8 codes: stored as safetensors `I8` in a file, or (candle has no
    /// i8 dtype) a `u8` tensor of their bit patterns in memory. [`Weights::get_raw`] hands
    /// such a tensor out as `u8`.
    pub fn is_int8(&self, name: &str) -> bool {
        let key = self.key(name);
        match &*self.source {
            Source::Files { index, .. } => index.get(&key).is_some_and(|e| e.int8),
            Source::Memory(m) => m.get(&key).is_some_and(|t| t.dtype() == DType::U8),
        }
    }

    /// The stored shape of `name`, if present.
    pub fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        let key = self.key(name);
        match &*self.source {
            Source::Files { index, .. } => index.get(&key).map(|e| e.shape.clone()),
            Source::Memory(m) => m.get(&key).map(|t| t.dims().to_vec()),
        }
    }

    /// `name` in its stored dtype, shape unchecked (quantised data, metadata bytes).
    pub fn get_raw(&self, name: &str) -> Result<Tensor, WeightsError> {
        let key = self.key(name);
        let t = match &*self.source {
            Source::Files { files, index } => {
                let Some(e) = index.get(&key) else {
                    return Err(self.missing(key));
                };
                let (path, file) = &files[e.file];
                let mut buf = vec![0u8; e.end - e.start];
                file.read_exact_at(&mut buf, e.start as u64)
                    .map_err(|err| WeightsError::File {
                        path: path.clone(),
                        reason: format!("reading `{key}`: {err}"),
                    })?;
                Tensor::from_raw_buffer(&buf, e.dtype, &e.shape, &self.device).map_err(
                    |source| WeightsError::Load {
                        name: key.clone(),
                        source,
                    },
                )?
            }
            Source::Memory(m) => match m.get(&key) {
                Some(t) => t
                    .to_device(&self.device)
                    .map_err(|source| WeightsError::Load {
                        name: key.clone(),
                        source,
                    })?,
                None => return Err(self.missing(key)),
            },
        };
        Ok(t)
    }

    /// `name` with the expected `shape`, in the compute dtype.
    pub fn get(&self, shape: &[usize], name: &str) -> Result<Tensor, WeightsError> {
        self.get_as(shape, name, self.dtype)
    }

    /// `name` with the expected `shape`, in `dtype`.
    pub fn get_as(
        &self,
        shape: &[usize],
        name: &str,
        dtype: DType,
    ) -> Result<Tensor, WeightsError> {
        if let Some(stored) = self.shape_of(name) {
            if stored != shape {
                return Err(WeightsError::TensorShape {
                    name: self.key(name),
                    expected: shape.to_vec(),
                    got: stored,
                });
            }
        }
        if matches!(&*self.source, Source::Files { .. }) && self.is_int8(name) {
            return Err(WeightsError::File {
                path: self.key(name).into(),
                reason: "stored as int8 codes (an 8-bit checkpoint): only an 8-bit linear layer \
                         can read it"
                    .into(),
            });
        }
        let t = self.get_raw(name)?;
        let t = if t.dtype() == dtype {
            t
        } else {
            t.to_dtype(dtype).map_err(|source| WeightsError::Load {
                name: self.key(name),
                source,
            })?
        };
        match &self.trainable {
            Some(set) if dtype.is_float() && set.selects(&self.key(name)) => {
                let var =
                    candle_core::Var::from_tensor(&t).map_err(|source| WeightsError::Load {
                        name: self.key(name),
                        source,
                    })?;
                let out = var.as_tensor().clone();
                set.vars
                    .lock()
                    .expect("trainable set lock")
                    .push((self.key(name), var));
                Ok(out)
            }
            _ => Ok(t),
        }
    }

    /// `name` kept in its stored bf16/f16 when [`QuantizeSpec::compact_frozen`] applies (a
    /// spec with it set, f32 compute on the CPU, a 16-bit checkpoint tensor, no trainable
    /// set); `None` otherwise (load it with [`Weights::get`]).
    pub fn get_compact(&self, shape: &[usize], name: &str) -> Result<Option<Tensor>, WeightsError> {
        let wanted = self.quantize_spec().is_some_and(|s| s.compact_frozen)
            && self.trainable.is_none()
            && self.dtype == DType::F32
            && self.device.is_cpu()
            && self.shape_of(name).as_deref() == Some(shape);
        if !wanted {
            return Ok(None);
        }
        let t = self.get_raw(name)?;
        Ok(matches!(t.dtype(), DType::BF16 | DType::F16).then_some(t))
    }

    fn missing(&self, key: String) -> WeightsError {
        WeightsError::MissingTensor {
            name: key,
            searched: self.source.describe(),
        }
    }
}

/// Where one tensor lives.
#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    dtype: DType,
    /// Stored as safetensors `I8` (candle has no i8: read as the codes' u8 bit patterns).
    int8: bool,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// Parses a safetensors header: `u64` little-endian length, then JSON
/// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`; offsets are
/// relative to the end of the header.
fn read_header(file: &File, fi: usize) -> Result<Vec<(String, Entry)>, String> {
    let mut len = [0u8; 8];
    file.read_exact_at(&mut len, 0)
        .map_err(|e| format!("not a safetensors file: {e}"))?;
    let n = u64::from_le_bytes(len) as usize;
    let size = file.metadata().map_err(|e| e.to_string())?.len() as usize;
    if n > size.saturating_sub(8) || n > 100 << 20 {
        return Err(format!(
            "not a safetensors file (header length {n}, file {size} bytes)"
        ));
    }
    let mut header = vec![0u8; n];
    file.read_exact_at(&mut header, 8)
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| format!("bad safetensors header: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("bad safetensors header: not an object")?;
    let base = 8 + n;
    let mut out = Vec::with_capacity(obj.len());
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| format!("tensor `{name}`: {what}");
        let stored = info["dtype"].as_str().ok_or_else(|| bad("no dtype"))?;
        let dtype = match stored {
            "F32" => DType::F32,
            "F64" => DType::F64,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "U8" | "I8" => DType::U8,
            "U32" => DType::U32,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            other => return Err(bad(&format!("unsupported dtype {other}"))),
        };
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .map(|d| d as usize)
                    .ok_or_else(|| bad("bad shape"))
            })
            .collect::<Result<_, _>>()?;
        let offs = info["data_offsets"]
            .as_array()
            .ok_or_else(|| bad("no data_offsets"))?;
        let (Some(s), Some(e)) = (
            offs.first().and_then(|v| v.as_u64()),
            offs.get(1).and_then(|v| v.as_u64()),
        ) else {
            return Err(bad("bad data_offsets"));
        };
        let (start, end) = (base + s as usize, base + e as usize);
        let want = shape.iter().product::<usize>() * dtype.size_in_bytes();
        if end < start || end - start != want || end > size {
            return Err(bad(&format!(
                "data range {s}..{e} does not hold {want} bytes (file truncated?)"
            )));
        }
        out.push((
            name.clone(),
            Entry {
                file: fi,
                dtype,
                int8: stored == "I8",
                shape,
                start,
                end,
            },
        ));
    }
    Ok(out)
}

/// The `*.safetensors` files of `dir`, sorted by name; an error naming the folder if none.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, WeightsError> {
    let entries = std::fs::read_dir(dir).map_err(|e| WeightsError::File {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .filter(|p| {
            // PEFT adapters live beside models in some layouts: never load them as the base.
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with("adapter_model"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(WeightsError::File {
            path: dir.to_path_buf(),
            reason: "no .safetensors file in this folder".into(),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_corrupt_files_are_refused_naming_them() {
        let dev = Device::Cpu;
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("w.safetensors");
        let t = Tensor::arange(0f32, 64.0, &dev).unwrap();
        candle_core::safetensors::save(&HashMap::from([("a".to_string(), t)]), &good).unwrap();
        let w = Weights::from_safetensors(std::slice::from_ref(&good), DType::F32, &dev).unwrap();
        let v: Vec<f32> = w.get(&[64], "a").unwrap().to_vec1().unwrap();
        assert_eq!(v[63], 63.0);
        let bytes = std::fs::read(&good).unwrap();
        let cut = tmp.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
        let err =
            Weights::from_safetensors(std::slice::from_ref(&cut), DType::F32, &dev).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("cut.safetensors") && msg.contains("truncated"),
            "{msg}"
        );
        let junk = tmp.path().join("junk.safetensors");
        std::fs::write(&junk, b"definitely not a checkpoint").unwrap();
        let err = Weights::from_safetensors(&[junk], DType::F32, &dev).unwrap_err();
        assert!(err.to_string().contains("junk.safetensors"), "{err}");
    }

    #[test]
    fn missing_and_misshaped_tensors_are_named() {
        let dev = Device::Cpu;
        let mut m = HashMap::new();
        m.insert(
            "model.norm.weight".to_string(),
            Tensor::zeros(4, DType::F32, &dev).unwrap(),
        );
        let w = Weights::from_tensors(m, DType::F32, &dev);
        let err = w.pp("model").get(&[4], "embed_tokens.weight").unwrap_err();
        assert!(
            err.to_string().contains("model.embed_tokens.weight"),
            "{err}"
        );
        let err = w.pp("model.norm").get(&[5], "weight").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("model.norm.weight") && msg.contains("[5]"),
            "{msg}"
        );
        assert!(w.pp("model").pp("norm").get(&[4], "weight").is_ok());
    }
}
