//! Data-parallel training (issue 20's core, on the CPU for now): every rank runs its own
//! micro-batches of a step, the ranks' summed LoRA gradients are combined with one all-reduce
//! (PyTorch DDP's averaging: the mean over every counted micro-batch of every rank), and every
//! rank applies the same clipped AdamW update ([`crate::train::Trainer::step_distributed`]).
//! Each rank reads its own shard of the epoch's order ([`shard`]: PyTorch
//! `DistributedSampler`'s, without its padding, so the order does not depend on the world
//! size).
//!
//! Processes find each other through the torchrun environment ([`DistEnv`]) and a TCP
//! rendezvous at rank 0 ([`rendezvous()`]). The collective is behind [`Collective`]:
//! [`InProcessGroup`] (ranks as threads of one process) serves unit tests, [`TcpGroup`] (ranks
//! as processes, through rank 0) is the CPU backend as gloo is PyTorch's; NCCL is the
//! implementation for CUDA ranks (not built here).

mod env;
mod gather;
mod in_process;
mod reduce;
pub mod rendezvous;
mod sampler;
mod tcp;
#[cfg(test)]
mod tcp_tests;
pub mod test_hooks;
mod wire;

pub use env::{free_port, DistEnv, VARS as TORCHRUN_VARS};
pub use gather::gather_strided;
pub use in_process::InProcessGroup;
pub(crate) use reduce::all_reduce_grads;
pub use rendezvous::{rendezvous, RankInfo, Rendezvous};
pub use sampler::shard;
pub use tcp::TcpGroup;

use std::time::Duration;

/// What a collective reports when it cannot finish.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CollectiveError {
    /// Ranks that did not reach a collective call in time (hung, or out of step).
    #[error("rank {rank}: rank(s) {missing:?} did not reach the {op} within {seconds:.1} s")]
    Timeout {
        /// The rank reporting.
        rank: usize,
        /// The collective (`all-reduce`, `all-gather`).
        op: &'static str,
        /// The ranks that never arrived.
        missing: Vec<usize>,
        /// The timeout in seconds.
        seconds: f64,
    },
    /// The connection to a rank failed (it closed: the process ended).
    #[error("rank {rank}: lost rank {peer}: {reason}")]
    Lost {
        /// The rank reporting.
        rank: usize,
        /// The rank whose connection failed.
        peer: usize,
        /// What the connection reported.
        reason: String,
    },
    /// Rank 0 ended the round and said why (another rank failed).
    #[error("rank {rank}: rank 0 ended the collective: {reason}")]
    Remote {
        /// The rank reporting.
        rank: usize,
        /// Rank 0's error.
        reason: String,
    },
    /// Two ranks called different collectives at the same point.
    #[error("rank {rank}: rank {peer} called an {theirs} where this rank called an {ours}")]
    OutOfStep {
        /// The rank reporting.
        rank: usize,
        /// The other rank.
        peer: usize,
        /// Its collective.
        theirs: &'static str,
        /// This rank's.
        ours: &'static str,
    },
    /// The ranks passed buffers of different lengths.
    #[error("all-reduce: buffer lengths differ across ranks: {0:?}")]
    Mismatch(Vec<usize>),
}

/// The exit status of a `deepsynth` rank that stopped because another rank failed (its
/// collective lost that rank): launchers report the ranks that failed on their own first.
pub const PEER_FAILED_STATUS: u8 = 3;

/// What setting up a group of processes reports.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A torchrun variable has a bad value.
    #[error("torchrun environment: {var}=`{value}`: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A torchrun variable that the others require is not set.
    #[error("torchrun environment: {var} is not set ({reason})")]
    MissingVar {
        /// The variable.
        var: &'static str,
        /// Why it is needed.
        reason: String,
    },
    /// Ranks that did not join rank 0 in time.
    #[error(
        "rank 0: rank(s) {missing:?} did not join the rendezvous at {master} within {seconds:.1} s"
    )]
    Missing {
        /// The ranks that never connected.
        missing: Vec<usize>,
        /// `MASTER_ADDR:MASTER_PORT`.
        master: String,
        /// The timeout in seconds.
        seconds: f64,
    },
    /// The rendezvous failed on this rank.
    #[error("rank {rank}: rendezvous: {reason}")]
    Rendezvous {
        /// The rank reporting.
        rank: usize,
        /// What went wrong.
        reason: String,
    },
}

/// Joins the group the torchrun environment describes and returns its collective: `None` for a
/// single process.
pub fn join_from_env(timeout: Duration) -> Result<Option<TcpGroup>, DistError> {
    let env = DistEnv::from_env()?;
    if !env.is_distributed() {
        return Ok(None);
    }
    let rdv = rendezvous(&env, timeout)?;
    Ok(Some(TcpGroup::new(rdv, timeout)))
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
    /// [`Self::all_reduce_sum_f32`] for `f64`. A training step does not call it: its counts
    /// travel exactly inside its one `f32` all-reduce.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<(), CollectiveError>;
    /// Every rank's `mine`, in rank order, on every rank (sharded evaluation and inference
    /// gather their per-example results with it).
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError>;
}
