//! The tape: each recorded op is a `Node` stamped with its position in recording order.
//! `backward()` gathers the nodes reachable from the loss, replays them from the newest to the
//! oldest (recording order is already a topological order), and for each one turns the
//! upstream gradient into its inputs' gradients (local gradient x upstream gradient).
//! Gradients add up where a tensor feeds several ops. Afterwards the replayed nodes release
//! what they saved, so a second backward through the same graph is an error.
//!
//! `Op` is the one list of differentiable ops; each op's backward lives next to its forward
//! in `ops/`, and [`Op::backward`] routes to it.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::ops;
use crate::tensor::{Storage, Tensor};

pub(crate) struct Node {
    seq: u64,
    /// `None` once backward has replayed (and freed) this node.
    state: Mutex<Option<NodeState>>,
    /// The `graph::scope` (layer) the op was recorded in, for drawing the graph.
    scope: Option<Arc<str>>,
    /// Gradients kept for a drawing of the graph (`graph::Graph::capture` asks for them).
    trace: Mutex<Option<Trace>>,
}

/// What backward passed through a node, kept for small tensors when the graph is drawn: the
/// upstream gradient (of the op's output) and the downstream gradient sent to each input.
#[derive(Default, Clone)]
pub(crate) struct Trace {
    pub upstream: Option<Tensor>,
    pub downstream: Vec<Option<Tensor>>,
}

/// Gradients of at most this many elements are kept in a `Trace`.
const TRACE_MAX_ELEMENTS: usize = 8;

/// `t`, if it is small enough to keep in a `Trace`.
fn small_clone(t: &Tensor) -> Option<Tensor> {
    (t.numel() <= TRACE_MAX_ELEMENTS).then(|| t.clone())
}

struct NodeState {
    op: Op,
    inputs: Vec<Tensor>,
    /// The inputs' and the output's storage versions when the op was recorded: backward
    /// refuses to use a saved tensor that was written in place since (as PyTorch does).
    input_versions: Vec<u64>,
    output_version: u64,
}

/// Which of an op's tensors its backward reads: the inputs by position, and the output.
struct SavedTensors {
    inputs: &'static [usize],
    output: bool,
}

/// A recorded op with what its backward needs (saved inputs, outputs, sizes).
pub(crate) enum Op {
    /// A deferred output's op, until its values are computed (`fusion.rs`), which replaces it.
    Deferred,
    Identity,
    Reshape,
    Unary(ops::unary::Saved),
    Binary(ops::binary::Saved),
    Reduce(ops::reduce::Saved),
    Max(ops::reduce::MaxSaved),
    Matmul(ops::matmul::Saved),
    Linear(ops::matmul::LinearSaved),
    Softmax(ops::softmax::Saved),
    Permute(ops::layout::PermuteSaved),
    Expand,
    Conv2d(ops::conv::Saved),
    Pool(ops::pool::Saved),
    BatchNorm(ops::batch_norm::Saved),
    Dropout(ops::dropout::Saved),
    Loss(ops::loss::Saved),
    CrossEntropy(ops::loss::CrossEntropySaved),
    /// nll_loss, and cross_entropy with options: inputs x, targets and any class weights.
    ClassLoss(ops::loss::ClassLossSaved),
    /// narrow, index_select, gather: inputs x and any index tensor.
    Take(ops::index::TakeSaved),
    Cat(ops::index::CatSaved),
    /// where: inputs a, b (both expanded) and the expanded condition.
    Where(ops::index::WhereSaved),
    Amax(ops::index::AmaxSaved),
    Pad(ops::pad::Saved),
}

fn needs(inputs: &[Tensor]) -> Vec<bool> {
    inputs.iter().map(|t| t.is_requires_grad()).collect()
}

impl Op {
    /// The op's name in error messages.
    fn name(&self) -> String {
        match self {
            Op::Deferred => "deferred op".into(),
            Op::Identity => "copy".into(),
            Op::Reshape => "reshape".into(),
            Op::Unary(s) => s.op.name().into(),
            Op::Binary(s) => s.op.name().into(),
            Op::Reduce(_) => "sum".into(),
            Op::Max(_) => "max".into(),
            Op::Matmul(_) => "matmul".into(),
            Op::Linear(_) => "linear".into(),
            Op::Softmax(_) => "softmax".into(),
            Op::Permute(_) => "permute".into(),
            Op::Expand => "expand".into(),
            Op::Conv2d(_) => "conv2d".into(),
            Op::Pool(_) => "pool2d".into(),
            Op::BatchNorm(_) => "batch_norm".into(),
            Op::Dropout(_) => "dropout".into(),
            Op::Loss(_) => "loss".into(),
            Op::CrossEntropy(_) => "cross_entropy".into(),
            Op::ClassLoss(s) => s.op.into(),
            Op::Take(s) => s.op.into(),
            Op::Cat(_) => "cat".into(),
            Op::Where(_) => "where".into(),
            Op::Amax(_) => "amax".into(),
            Op::Pad(_) => "pad".into(),
        }
    }

    /// The op's name with the epilogues fused into it, for drawings of the graph.
    fn label(&self) -> String {
        match self {
            Op::Conv2d(s) => format!("conv2d{}", s.epilogue()),
            Op::Linear(s) => format!("linear{}", s.epilogue()),
            Op::BatchNorm(s) => format!("batch_norm{}", s.epilogue()),
            _ => self.name(),
        }
    }

    /// The tensors whose values the backward reads (an in-place write to any of them between
    /// forward and backward makes the gradient wrong).
    fn saved(&self) -> SavedTensors {
        let (inputs, output): (&'static [usize], bool) = match self {
            Op::Identity | Op::Reshape | Op::Expand | Op::Permute(_) | Op::Reduce(_) => {
                (&[], false)
            }
            Op::Deferred | Op::Max(_) | Op::Pool(_) | Op::Dropout(_) => (&[], false),
            Op::Binary(s) => match s.op {
                ops::binary::BinaryOp::Add | ops::binary::BinaryOp::Sub => (&[], false),
                _ => (&[0, 1], false),
            },
            // Unary backwards read the input or the output, depending on the function.
            Op::Unary(_) => (&[0], true),
            Op::Softmax(_) => (&[], true),
            // With a fused ReLU, the output is the ReLU's mask.
            Op::Matmul(_) | Op::Linear(_) | Op::Conv2d(_) => (&[0, 1], true),
            Op::BatchNorm(s) => (&[0, 1], s.epilogue() == "+relu"),
            Op::Loss(_) => (&[0, 1], false),
            Op::CrossEntropy(_) => (&[0], false),
            Op::ClassLoss(s) if s.weighted() => (&[0, 1, 2], false),
            Op::ClassLoss(_) => (&[0, 1], false),
            Op::Take(s) if s.has_indices() => (&[1], false),
            Op::Take(_) | Op::Cat(_) | Op::Amax(_) | Op::Pad(_) => (&[], false),
            Op::Where(_) => (&[2], false),
        };
        SavedTensors { inputs, output }
    }

    fn backward(&self, grad: &Tensor, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
        let need = |i: usize| inputs[i].is_requires_grad();
        Ok(match self {
            Op::Deferred => {
                return Err(Error::Autograd(
                    "internal: backward reached a deferred op that was never computed".into(),
                ))
            }
            Op::Identity => vec![Some(grad.clone())],
            Op::Reshape => vec![Some(grad.reshape(inputs[0].shape())?)],
            Op::Unary(s) => vec![Some(ops::unary::backward(s, grad)?)],
            Op::Binary(s) => ops::binary::backward(s, grad, need(0), need(1))?,
            Op::Reduce(s) => vec![Some(ops::reduce::backward(s, grad)?)],
            Op::Max(s) => vec![Some(ops::reduce::max_backward(s, grad)?)],
            Op::Matmul(s) => ops::matmul::backward(s, grad, need(0), need(1))?,
            Op::Linear(s) => ops::matmul::linear_backward(s, grad, &needs(inputs))?,
            Op::Softmax(s) => vec![Some(ops::softmax::backward(s, grad)?)],
            Op::Permute(s) => vec![Some(ops::layout::permute_backward(s, grad)?)],
            Op::Expand => vec![Some(ops::binary::sum_to(grad, inputs[0].shape())?)],
            Op::Conv2d(s) => ops::conv::backward(s, grad, &needs(inputs))?,
            Op::Pool(s) => vec![Some(ops::pool::backward(s, grad)?)],
            Op::BatchNorm(s) => ops::batch_norm::backward(s, grad, &needs(inputs))?,
            Op::Dropout(s) => vec![Some(ops::dropout::backward(s, grad)?)],
            Op::Loss(s) => ops::loss::backward(s, grad)?,
            Op::CrossEntropy(s) => vec![Some(ops::loss::cross_entropy_backward(s, grad)?)],
            Op::ClassLoss(s) => vec![Some(ops::loss::class_loss_backward(s, grad)?)],
            Op::Take(s) => ops::index::take_backward(s, grad)?,
            Op::Cat(s) => ops::index::cat_backward(s, grad, &needs(inputs))?,
            Op::Where(s) => ops::index::where_backward(s, grad, &needs(inputs))?,
            Op::Amax(s) => vec![Some(ops::index::amax_backward(s, grad)?)],
            Op::Pad(s) => vec![Some(ops::pad::backward(s, grad)?)],
        })
    }
}

impl Node {
    /// The op's label (its name and fused epilogues) and its inputs, or `None` once backward
    /// has freed the node.
    pub(crate) fn describe(&self) -> Option<(String, Vec<Tensor>)> {
        let state = self.state.lock().unwrap();
        let state = state.as_ref()?;
        Some((state.op.label(), state.inputs.clone()))
    }

    /// The scope the op was recorded in.
    pub(crate) fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Makes the next backward through this node keep its (small) gradients.
    pub(crate) fn start_trace(&self) {
        *self.trace.lock().unwrap() = Some(Trace::default());
    }

    /// What the last backward passed through the node, if it was traced.
    pub(crate) fn trace(&self) -> Option<Trace> {
        self.trace.lock().unwrap().clone()
    }

    /// Replaces a deferred op once its output is computed.
    pub(crate) fn set_op(&self, op: Op) {
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.op = op;
        }
    }
}

impl NodeState {
    /// An error naming the op when a tensor its backward reads was written in place since the
    /// forward pass.
    fn check_versions(&self, output: &Tensor) -> Result<()> {
        let saved = self.op.saved();
        let stale = |what: String, then: u64, now: u64| {
            Err(Error::Autograd(format!(
                "one of the tensors needed for gradient computation has been modified by an \
                 in-place operation: the {what} of {} was at version {then} when it was \
                 recorded and is now at version {now} (an optimizer step, copy_from or \
                 write_from_slice in between); recompute the forward pass after it",
                self.op.name()
            )))
        };
        for &i in saved.inputs {
            let now = self.inputs[i].storage().version();
            if now != self.input_versions[i] {
                return stale(format!("input {i}"), self.input_versions[i], now);
            }
        }
        let now = output.storage().version();
        if saved.output && now != self.output_version {
            return stale("output".into(), self.output_version, now);
        }
        Ok(())
    }
}

static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread are being recorded.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` without recording ops on the tape (inference, optimizer updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Sets grad mode to a given value until dropped (a deferred op computes with the mode of its
/// creation).
pub(crate) struct GradMode {
    previous: bool,
}

impl GradMode {
    pub(crate) fn set(enabled: bool) -> GradMode {
        GradMode {
            previous: GRAD_ENABLED.with(|g| g.replace(enabled)),
        }
    }
}

impl Drop for GradMode {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Turns recording off until dropped.
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    /// Turns recording off until the guard is dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> NoGradGuard {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { previous }
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// A node for an op on `inputs`, or `None` when nothing needs its gradient.
pub(crate) fn record(
    inputs: &[&Tensor],
    output: &Storage,
    make_op: impl FnOnce() -> Op,
) -> Option<Arc<Node>> {
    if !is_grad_enabled() || !inputs.iter().any(|t| t.is_requires_grad()) {
        return None;
    }
    Some(Arc::new(Node {
        seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
        scope: crate::graph::current_scope(),
        trace: Mutex::new(None),
        state: Mutex::new(Some(NodeState {
            op: make_op(),
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            input_versions: inputs.iter().map(|t| t.storage().version()).collect(),
            output_version: output.version(),
        })),
    }))
}

/// Adds `g` into the gradient slot `slot` (out of place, so gradients never alias).
fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(old) => old.add(&g)?,
        None => g,
    });
    Ok(())
}

impl Tensor {
    /// Back-propagates from this one-element tensor (usually the loss) into the `grad` of every
    /// leaf that requires grad.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor};
    /// let dev = Device::new()?;
    /// let x = Tensor::from_vec(&dev, vec![3.0], &[1])?.requires_grad();
    /// let y = x.mul(&x)?; // x^2
    /// y.backward()?;
    /// assert_eq!(x.grad().unwrap().to_vec()?, vec![6.0]);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a one-element tensor (a loss), got shape {:?}; \
                 use backward_with(grad) for other outputs",
                self.shape()
            )));
        }
        // An upload rather than a fill kernel: uploads ride along with the next submit.
        let seed = Tensor::from_vec(self.device(), vec![1.0], self.shape())?;
        self.backward_with(&seed)
    }

    /// Back-propagates an explicit upstream gradient of this tensor's shape.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(Error::Autograd(format!(
                "gradient of shape {:?} given for a tensor of shape {:?}",
                grad.shape(),
                self.shape()
            )));
        }
        self.device().same(grad.device(), "backward_with")?;
        if !self.is_requires_grad() {
            return Err(Error::Autograd(
                "backward on a tensor that does not require grad (no input called \
                 .requires_grad(), or it was computed under no_grad)"
                    .into(),
            ));
        }
        let _no_grad = NoGradGuard::new();
        if self.is_leaf() {
            let mut slot = self.grad_slot().lock().unwrap();
            return accumulate(&mut slot, grad.clone());
        }

        // Every node reachable from `self`, with the tensor it produced.
        let mut nodes: Vec<(u64, Tensor)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![self.clone()];
        while let Some(t) = stack.pop() {
            let Some(node) = t.node() else { continue };
            if !seen.insert(Arc::as_ptr(node)) {
                continue;
            }
            let state = node.state.lock().unwrap();
            let Some(state) = state.as_ref() else {
                return Err(Error::Autograd(
                    "backward through a graph that was already freed: a previous backward \
                     replayed it; recompute the forward pass"
                        .into(),
                ));
            };
            stack.extend(
                state
                    .inputs
                    .iter()
                    .filter(|i| i.is_requires_grad())
                    .cloned(),
            );
            nodes.push((node.seq, t.clone()));
        }
        nodes.sort_by_key(|n| std::cmp::Reverse(n.0));

        let mut grads: HashMap<u64, Tensor> = HashMap::new();
        grads.insert(self.id(), grad.clone());
        for (_, out) in &nodes {
            let node = out.node().expect("collected nodes have a node");
            // A deferred output that only a view or nothing read yet: compute it (and its op).
            crate::fusion::materialize(out.storage());
            let state = node.state.lock().unwrap().take();
            let Some(state) = state else {
                continue;
            };
            let Some(g) = grads.remove(&out.id()) else {
                continue;
            };
            state.check_versions(out)?;
            let NodeState { op, inputs, .. } = state;
            let input_grads = op.backward(&g, &inputs)?;
            if let Some(trace) = node.trace.lock().unwrap().as_mut() {
                trace.upstream = small_clone(&g);
                trace.downstream = input_grads
                    .iter()
                    .map(|t| t.as_ref().and_then(small_clone))
                    .collect();
            }
            for (input, ig) in inputs.iter().zip(input_grads) {
                let Some(ig) = ig else { continue };
                if !input.is_requires_grad() {
                    continue;
                }
                if ig.shape() != input.shape() {
                    return Err(Error::Autograd(format!(
                        "internal: gradient of shape {:?} for an input of shape {:?}",
                        ig.shape(),
                        input.shape()
                    )));
                }
                if input.is_leaf() {
                    let mut slot = input.grad_slot().lock().unwrap();
                    accumulate(&mut slot, ig)?;
                } else {
                    let mut slot = grads.remove(&input.id());
                    accumulate(&mut slot, ig)?;
                    grads.insert(input.id(), slot.unwrap());
                }
            }
        }
        Ok(())
    }
}
