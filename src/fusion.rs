//! Fusion in one place: epilogues folded into the op that produced their input, whoever wrote
//! the model (`Sequential`, a hand-written `forward`, plain tensor calls).
//!
//! An op that can take an epilogue (`conv2d`, `linear`, BatchNorm) returns its output *deferred*: shape,
//! autograd node and inputs exist, but no kernel is recorded and no buffer allocated yet.
//! - `relu` of a deferred output becomes a deferred producer with the ReLU applied as it
//!   stores (`conv2d_relu`, `linear_relu`, BatchNorm's normalization + ReLU);
//! - eval-mode BatchNorm of a deferred conv (or linear) output scales the product's weight
//!   and bias instead of running (`batch_norm_eval`);
//! - a 2 x 2 `max_pool2d` of a deferred conv + ReLU runs the fused conv + ReLU + pool kernel
//!   where the policy's kernels have one, never storing the convolution's output.
//!
//! Anything else that needs a deferred tensor's values (a kernel binding its buffer, a
//! readback, `backward()` reaching its node) computes it then, with the grad mode of its
//! creation; an in-place write to one of its inputs computes it first. So a deferred output
//! that an epilogue consumed, and that nothing else reads, is never computed or allocated: a
//! model written the PyTorch way gets the fused kernels, and unfused activations too large for
//! one buffer never exist.

use std::sync::{Arc, Weak};

use crate::error::Result;
use crate::ops::batch_norm::{self, BatchNormParams};
use crate::ops::conv::{self, Conv2dParams};
use crate::ops::matmul;
use crate::ops::pool::Pool2dParams;
use crate::shape::numel;
use crate::tape::{self, Node, Op};
use crate::tensor::{Storage, Tensor};

/// An op whose output can still take an epilogue.
#[derive(Clone)]
pub(crate) enum Producer {
    Conv {
        x: Tensor,
        w: Tensor,
        b: Option<Tensor>,
        p: Conv2dParams,
        relu: bool,
    },
    Linear {
        x: Tensor,
        w: Tensor,
        b: Option<Tensor>,
        relu: bool,
    },
    /// BatchNorm's normalization, its statistics already computed (`batch_norm_nc`).
    BatchNorm {
        x: Tensor,
        stats: Tensor,
        weight: Tensor,
        bias: Tensor,
        params: BatchNormParams,
        relu: bool,
    },
}

impl Producer {
    fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Producer::Conv { x, w, b, .. } | Producer::Linear { x, w, b, .. } => {
                [x, w].into_iter().chain(b).collect()
            }
            Producer::BatchNorm {
                x, weight, bias, ..
            } => vec![x, weight, bias],
        }
    }

    /// The same producer with a ReLU applied as it stores, if it takes one and has none yet.
    fn with_relu(&self) -> Option<Producer> {
        let mut p = self.clone();
        match &mut p {
            Producer::Conv { relu, .. }
            | Producer::Linear { relu, .. }
            | Producer::BatchNorm { relu, .. } => {
                if *relu {
                    return None;
                }
                *relu = true;
            }
        }
        Some(p)
    }

    /// Records the kernels that write the output into `storage`; the op for its node.
    fn run(&self, storage: &Arc<Storage>, shape: &[usize]) -> Result<Op> {
        match self {
            Producer::Conv { x, w, b, p, relu } => {
                conv::conv2d_into(x, w, b.as_ref(), *p, *relu, storage, shape)
            }
            Producer::Linear { x, w, b, relu } => {
                matmul::linear_into(x, w, b.as_ref(), *relu, storage, shape)
            }
            Producer::BatchNorm {
                x,
                stats,
                weight,
                params,
                relu,
                ..
            } => batch_norm::normalize_into(x, stats, weight, *params, *relu, storage, shape),
        }
    }
}

/// What a deferred storage will hold, and the node its op belongs to.
pub(crate) struct Deferred {
    producer: Producer,
    shape: Vec<usize>,
    /// The tensor the producer returned: an epilogue folds in only for it (not for a detached
    /// or reshaped view of the same storage, whose autograd differs).
    tensor_id: u64,
    node: Option<Weak<Node>>,
    grad_enabled: bool,
}

impl Deferred {
    /// Whether `storage`'s values come from `input` (so a write to it must compute them first).
    pub fn reads(&self, input: &Storage) -> bool {
        self.producer
            .inputs()
            .iter()
            .any(|t| std::ptr::eq(Arc::as_ptr(t.storage()), input))
    }
}

/// A deferred output of `producer` (its kernels run when its values are needed).
pub(crate) fn defer(shape: Vec<usize>, producer: Producer) -> Result<Tensor> {
    let inputs = producer.inputs();
    let dev = inputs[0].device();
    let storage = dev.deferred_storage(numel(&shape))?;
    let t = Tensor::from_op(storage.clone(), shape.clone(), &inputs, || Op::Deferred);
    storage.set_deferred(Deferred {
        shape,
        tensor_id: t.id(),
        node: t.node().map(Arc::downgrade),
        grad_enabled: tape::is_grad_enabled(),
        producer,
    });
    Ok(t)
}

/// Computes a deferred storage's values now (nothing when it is not deferred). Errors go to
/// the device, which reports them at the next submit or readback.
pub(crate) fn materialize(storage: &Arc<Storage>) {
    let Some(d) = storage.take_deferred() else {
        return;
    };
    let _mode = tape::GradMode::set(d.grad_enabled);
    match d.producer.run(storage, &d.shape) {
        Ok(op) => {
            if let Some(node) = d.node.and_then(|n| n.upgrade()) {
                node.set_op(op);
            }
        }
        Err(e) => storage.device.record_error(e),
    }
}

/// The producer `t` is the deferred output of, if an epilogue may fold into it.
fn deferred_producer(t: &Tensor) -> Option<(Producer, Vec<usize>)> {
    t.storage().with_deferred(|d| {
        (d.tensor_id == t.id() && d.grad_enabled == tape::is_grad_enabled())
            .then(|| (d.producer.clone(), d.shape.clone()))
    })?
}

/// The scope t's op was recorded in: an op fused into it is drawn under both names.
fn producer_scope(t: &Tensor) -> Option<&str> {
    t.node().and_then(|n| n.scope())
}

/// `relu(t)` folded into t's producer, if t is a deferred conv or linear output.
pub(crate) fn relu(t: &Tensor) -> Result<Option<Tensor>> {
    crate::graph::fused_scope(producer_scope(t), || fold_relu(t))
}

fn fold_relu(t: &Tensor) -> Result<Option<Tensor>> {
    match deferred_producer(t) {
        Some((producer, shape)) => match producer.with_relu() {
            Some(fused) => defer(shape, fused).map(Some),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// Eval-mode batch normalization of t folded into t's producer, if t is a deferred
/// convolution (or a deferred linear output of shape [N, C]) without ReLU: the product runs
/// with its weight scaled per output channel by `scale = weight / sqrt(running_var + eps)`
/// and bias `(bias - running_mean) * scale + beta`. The folded parameters are tensor ops, so
/// gradients reach the convolution's and BatchNorm's parameters as through the unfolded pair.
pub(crate) fn batch_norm_eval(
    t: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    eps: f32,
) -> Result<Option<Tensor>> {
    let Some((producer, shape)) = deferred_producer(t) else {
        return Ok(None);
    };
    // The product's parameters, and how to rebuild it with others.
    let (x, w, b, conv) = match producer {
        Producer::Conv {
            x,
            w,
            b,
            p,
            relu: false,
        } => (x, w, b, Some(p)),
        Producer::Linear {
            x,
            w,
            b,
            relu: false,
        } if shape.len() == 2 => (x, w, b, None),
        _ => return Ok(None),
    };
    let c = w.shape()[0];
    if running_mean.shape() != [c] {
        return Ok(None);
    }
    crate::graph::fused_scope(producer_scope(t), || {
        let dev = t.device();
        let inv_std = running_var.add_scalar(eps)?.sqrt()?;
        let scale = match gamma {
            Some(g) => g.div(&inv_std)?,
            None => Tensor::ones(dev, &[c])?.div(&inv_std)?,
        };
        let mut per_channel = vec![1; w.shape().len()];
        per_channel[0] = c;
        let w = w.mul(&scale.reshape(&per_channel)?)?;
        let shifted = match &b {
            Some(b) => b.sub(running_mean)?,
            None => running_mean.neg()?,
        };
        let shifted = shifted.mul(&scale)?;
        let b = Some(match beta {
            Some(beta) => shifted.add(beta)?,
            None => shifted,
        });
        let relu = false;
        let folded = match conv {
            Some(p) => Producer::Conv { x, w, b, p, relu },
            None => Producer::Linear { x, w, b, relu },
        };
        defer(shape, folded).map(Some)
    })
}

/// `max_pool2d(t, pool)` as one fused kernel with t's producer, if t is a deferred conv + ReLU
/// and the pool is 2 x 2 with stride 2, undilated, rounding down (where the kernels have the
/// fused form).
pub(crate) fn max_pool2d(t: &Tensor, pool: Pool2dParams) -> Result<Option<Tensor>> {
    let two_by_two = pool.kernel == (2, 2)
        && pool.stride == (2, 2)
        && pool.padding == (0, 0)
        && pool.dilation == (1, 1)
        && !pool.ceil_mode;
    match deferred_producer(t) {
        Some((
            Producer::Conv {
                x,
                w,
                b,
                p,
                relu: true,
            },
            _,
        )) if two_by_two => crate::graph::fused_scope(producer_scope(t), || {
            conv::conv_relu_pool(&x, &w, b.as_ref(), p)
        }),
        _ => Ok(None),
    }
}
