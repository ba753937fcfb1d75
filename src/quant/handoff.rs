//! [`Handoff`]: an output computed with untracked ops, handed once to a custom op's forward so
//! that the op can attach its own backward to it.
//!
//! The op takes the tensor out of the slot, so the graph keeps only the op's result, not a
//! second copy of the output.

use std::sync::Mutex;

use candle_core::{CpuStorage, Layout, Shape, Storage, Tensor};

/// A precomputed output waiting for its custom op.
pub(crate) struct Handoff(Mutex<Option<Tensor>>);

fn copy_storage(s: &CpuStorage, l: &Layout) -> candle_core::Result<CpuStorage> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("custom op: output not contiguous".into()))?;
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(v[a..b].to_vec()),
        CpuStorage::BF16(v) => CpuStorage::BF16(v[a..b].to_vec()),
        CpuStorage::F16(v) => CpuStorage::F16(v[a..b].to_vec()),
        CpuStorage::F64(v) => CpuStorage::F64(v[a..b].to_vec()),
        _ => candle_core::bail!("custom op: unsupported output dtype"),
    })
}

impl Handoff {
    /// A slot holding `out`.
    pub(crate) fn new(out: Tensor) -> Self {
        Self(Mutex::new(Some(out)))
    }

    fn take(&self) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("custom op: poisoned output slot".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("custom op: output already taken".into()))
    }

    /// The output as the result of a CPU forward.
    pub(crate) fn cpu(&self) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = self.take()?;
        let (st, l) = out.storage_and_layout();
        match &*st {
            Storage::Cpu(s) => Ok((copy_storage(s, l)?, l.shape().clone())),
            _ => candle_core::bail!("custom op: output not on the CPU"),
        }
    }

    /// The output as the result of a CUDA forward.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda(&self) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let out = self.take()?.contiguous()?;
        let (st, l) = out.storage_and_layout();
        match &*st {
            Storage::Cuda(s) if l.start_offset() == 0 => Ok((s.try_clone(l)?, l.shape().clone())),
            _ => candle_core::bail!("custom op: output not a whole CUDA tensor"),
        }
    }
}
