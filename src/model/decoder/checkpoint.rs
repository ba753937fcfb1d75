//! Gradient checkpointing of decoder layers (Hugging Face's `gradient_checkpointing`, the
//! original plan's `unsloth_gradient_checkpointing`): in training, a layer's forward runs without
//! keeping its activations, and its output is recorded as one custom op over its input; the
//! backward pass runs the layer again, this time recorded, from the saved input and LoRA dropout
//! generator (so the same masks are drawn), and backpropagates the output gradient through it.
//! Activation memory per layer drops to its input and output, for one more forward per layer.
//!
//! The recomputed layer's parameters (LoRA A/B, and any trained weight) are not inputs of the
//! op, so their gradients cannot be returned through it: the backward puts them in this
//! thread's gradient sink, which [`take_grads`] hands to the trainer to add to the step's
//! [`GradStore`]. An MoE layer's balancing loss is a second output, packed after the hidden
//! states in one tensor.

use std::cell::RefCell;
use std::collections::HashSet;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, Var};

use super::{DecoderLayer, LayerOutput, Rope};
use crate::quant::Handoff;
use crate::rng::Rng;

thread_local! {
    static SINK: RefCell<GradStore> = RefCell::new(GradStore::default());
}

/// Takes the parameter gradients the checkpointed layers' backward passes left in this
/// thread's sink (empty without checkpointing). Call after each `backward()` and add them to
/// its store (`GradStore::extend`).
pub fn take_grads() -> GradStore {
    SINK.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// One layer with everything its forward needs besides the input (cheap clones: tensors share
/// their storage).
pub struct LayerFn {
    /// The layer.
    pub layer: DecoderLayer,
    /// RoPE tables.
    pub rope: Rope,
    /// `[B, L]` positions.
    pub positions: Tensor,
    /// The additive attention mask.
    pub mask: Option<Tensor>,
}

impl LayerFn {
    /// The layer on a copy of `x` that is tracked exactly when `x` was: the fused kernels taken
    /// for untracked inputs round differently from the differentiable ones, so both passes
    /// (and an unchecked run) must choose the same.
    fn run(&self, x: &Tensor, tracked: bool) -> candle_core::Result<(LayerOutput, Option<Var>)> {
        let input = if tracked {
            Some(Var::from_tensor(&x.detach())?)
        } else {
            None
        };
        let x = match &input {
            Some(v) => v.as_tensor().clone(),
            None => x.detach(),
        };
        let out = self.layer.forward(
            &x,
            &self.rope,
            &self.positions,
            self.mask.as_ref(),
            None,
            true,
        )?;
        Ok((out, input))
    }
}

/// The checkpointed layer: its packed output waits in `out` for the forward; `rng` is the
/// dropout generator before the layer ran; `tracked` whether its input needs a gradient.
struct Checkpoint {
    f: LayerFn,
    rng: Rng,
    out: Handoff,
    tracked: bool,
}

impl CustomOp1 for Checkpoint {
    fn name(&self) -> &'static str {
        "deepsynth-checkpoint"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.cpu()
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.out.cuda()
    }

    fn bwd(&self, arg: &Tensor, _: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let live = crate::lora::dropout_rng();
        crate::lora::set_dropout_rng(self.rng.clone());
        let again = self.f.run(arg, self.tracked);
        crate::lora::set_dropout_rng(live);
        let (again, x) = again?;
        let y = &again.hidden;
        let input_id = x.as_ref().map(|v| v.as_tensor().id());
        let n = y.elem_count();
        let gy = grad.narrow(0, 0, n)?.reshape(y.shape())?;
        let mut objective = (y * gy)?.sum_all()?;
        if let Some(aux) = &again.aux_loss {
            let ga = grad.narrow(0, n, 1)?.reshape(())?;
            objective = (objective + (aux.to_dtype(y.dtype())? * ga)?)?;
        }
        let params: HashSet<_> = objective
            .sorted_nodes()
            .into_iter()
            .filter(|t| t.is_variable() && Some(t.id()) != input_id)
            .map(|t| t.id())
            .collect();
        let mut grads = objective.backward()?;
        let gx = match &x {
            Some(v) => grads.remove(v.as_tensor()),
            None => None,
        };
        let mut kept = GradStore::default();
        for id in params {
            if let Some(g) = grads.get_id(id) {
                kept.insert_id(id, g.clone());
            }
        }
        SINK.with(|s| s.borrow_mut().extend(kept))?;
        Ok(gx)
    }
}

/// Runs `f` on `x` checkpointed: the output (and balancing loss) are recorded as one op over
/// `x`, whose backward recomputes the layer. The op must be tracked for the backward to reach
/// the layer's parameters: an untracked input (the first layer's) is recorded over a variable
/// copy, and the layer itself still runs on the untracked value, as it would unchecked.
pub fn run(f: LayerFn, x: &Tensor) -> candle_core::Result<LayerOutput> {
    let tracked = x.track_op();
    let x = if tracked {
        x.clone()
    } else {
        Var::from_tensor(x)?.as_tensor().clone()
    };
    let rng = crate::lora::dropout_rng();
    let (first, _) = f.run(&x, tracked)?;
    let shape = first.hidden.shape().clone();
    let n = first.hidden.elem_count();
    let dtype = first.hidden.dtype();
    let mut parts = vec![first.hidden.flatten_all()?];
    if let Some(aux) = &first.aux_loss {
        parts.push(aux.to_dtype(dtype)?.reshape(1)?);
    }
    let has_aux = parts.len() == 2;
    let packed = Tensor::cat(&parts, 0)?.detach();
    drop(parts);
    let out = x.apply_op1(Checkpoint {
        f,
        rng,
        out: Handoff::new(packed),
        tracked,
    })?;
    let hidden = out.narrow(0, 0, n)?.reshape(shape)?;
    let aux_loss = if has_aux {
        Some(out.narrow(0, n, 1)?.reshape(())?)
    } else {
        None
    };
    Ok(LayerOutput {
        hidden,
        aux_loss,
        routing: first.routing,
    })
}
