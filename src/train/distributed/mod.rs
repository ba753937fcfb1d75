//! Data-parallel training (issue 20's core, on the CPU for now): every rank runs its own
//! micro-batches of a step, the ranks' summed LoRA gradients are combined with one all-reduce
//! (PyTorch DDP's averaging: the mean over every counted micro-batch of every rank), and every
//! rank applies the same clipped AdamW update ([`crate::train::Trainer::step_distributed`]).
//! Each rank reads its own shard of the epoch's order ([`shard`], PyTorch
//! `DistributedSampler` semantics).
//!
//! The collective is behind [`Collective`]: [`InProcessGroup`] (ranks as threads of one
//! process) serves CPU tests; NCCL is the implementation for CUDA ranks.

mod in_process;
mod reduce;
mod sampler;

pub use in_process::InProcessGroup;
pub(crate) use reduce::all_reduce_grads;
pub use sampler::shard;

/// What a collective reports when it cannot finish.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// Ranks that did not reach a collective call in time (dead, hung or out of step).
    #[error("rank {rank}: rank(s) {missing:?} did not reach the all-reduce within {seconds:.1} s")]
    Timeout {
        /// The rank reporting.
        rank: usize,
        /// The ranks that never arrived.
        missing: Vec<usize>,
        /// The timeout in seconds.
        seconds: f64,
    },
    /// The ranks passed buffers of different lengths.
    #[error("all-reduce: buffer lengths differ across ranks: {0:?}")]
    Mismatch(Vec<usize>),
}

/// A group of ranks that can sum buffers element-wise. Every rank calls each collective in the
/// same order with a buffer of the same length, and every rank gets the same result (bit for
/// bit: implementations sum in a fixed order).
pub trait Collective: Send + Sync {
    /// This rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Replaces `buf` with its element-wise sum over the ranks.
    fn all_reduce_sum_f32(&self, buf: &mut [f32]) -> Result<(), CollectiveError>;
    /// [`Self::all_reduce_sum_f32`] for `f64` (losses, counts).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CollectiveError>;
}
