//! Losses: `mse_loss`, `binary_cross_entropy_with_logits`, `binary_cross_entropy`, the fused
//! log-softmax + NLL `cross_entropy`, and `nll_loss` / `cross_entropy_with` with PyTorch's
//! class weights, `ignore_index` and label smoothing: `shaders/loss.wgsl`.

use crate::error::{shape_err, Error, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("loss");

/// How per-element losses are combined, as PyTorch's `reduction` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The average (the default).
    #[default]
    Mean,
    /// The total.
    Sum,
    /// No reduction: one loss per element (per row for cross-entropy).
    None,
}

fn reduce(l: Tensor, r: Reduction) -> Result<Tensor> {
    match r {
        Reduction::Mean => l.mean(),
        Reduction::Sum => l.sum(),
        Reduction::None => Ok(l),
    }
}

kernel_params! {
    /// `Params` of `shaders/loss.wgsl`.
    pub(crate) struct LossParams for "loss" {
        len: u32,
        classes: u32,
        /// cross_entropy with a reduction: 1 / rows (mean) or 1 (sum).
        scale: f32,
        /// class_loss: ignore_index as f32.
        ignore: f32,
        /// class_loss: the label smoothing.
        smoothing: f32,
        /// class_loss: what a row whose target is not a class gets (NaN).
        invalid: f32,
    }
}

#[derive(Clone, Copy)]
enum Elementwise {
    BceLogits,
    Bce,
}

impl Elementwise {
    /// The shader's pipeline constants: which of the binary cross-entropies.
    fn constants(self) -> [(&'static str, u32); 1] {
        [("LOGITS", matches!(self, Elementwise::BceLogits) as u32)]
    }
}

pub(crate) struct Saved {
    kind: Elementwise,
    x: Tensor,
    t: Tensor,
}

pub(crate) struct CrossEntropySaved {
    x: Tensor,
    targets: Tensor,
    lse: Tensor,
    /// With the reduction fused in: the scalar loss is this times the sum of the rows' losses.
    reduced: Option<f32>,
    /// With the reduction fused in, the gradient for an upstream gradient of 1, written by
    /// the forward kernel.
    unit_grad: Option<Tensor>,
}

/// What `nll_loss` and `cross_entropy_with` saved for the backward (the class_loss kernels).
pub(crate) struct ClassLossSaved {
    /// "nll_loss" or "cross_entropy".
    pub(crate) op: &'static str,
    x: Tensor,
    /// The class indices as f32, ignored rows holding `ignore_index`.
    targets: Tensor,
    weight: Option<Tensor>,
    /// Per row (lse_i, a_i): see `shaders/loss.wgsl`.
    stats: Tensor,
    params: LossParams,
    constants: [(&'static str, u32); 3],
}

impl ClassLossSaved {
    /// Whether the backward reads a class-weight tensor (the op's third input).
    pub(crate) fn weighted(&self) -> bool {
        self.weight.is_some()
    }
}

/// Class targets of [`Tensor::nll_loss`] and [`Tensor::cross_entropy_with`], one per row of
/// the input [N, C]: class indices in `0..C`, or `ignore_index` for a row that does not count.
///
/// Host indices are checked before any kernel runs: one that is neither a class nor
/// `ignore_index` is an error naming it. A device tensor's are not read back (that would wait
/// for the device): as PyTorch's device-side assert, but without stopping anything, a row
/// whose target is not a class (negative but not `ignore_index`, `>= C`, fractional or NaN)
/// gets NaN as its loss and its gradient, so the reduced loss is NaN; never a silently wrong
/// value.
///
/// `&[usize]` (and `&Vec<usize>`, `&[usize; N]`) and `&[i64]` (`&Vec<i64>`, PyTorch's int64
/// targets, which may hold a negative `ignore_index` such as -100) convert into it with
/// `into()`, as does a `&Tensor`.
#[derive(Clone, Copy, Debug)]
pub enum ClassTargets<'a> {
    /// Class indices on the host.
    Indices(&'a [usize]),
    /// Class indices on the host that may include a negative `ignore_index`.
    Signed(&'a [i64]),
    /// A device tensor of shape [N] holding class indices as f32 (exact up to 2^24), the
    /// ignored rows `ignore_index` (compared as f32): no host round trip.
    Tensor(&'a Tensor),
}

impl<'a> From<&'a [usize]> for ClassTargets<'a> {
    fn from(t: &'a [usize]) -> Self {
        ClassTargets::Indices(t)
    }
}

impl<'a> From<&'a Vec<usize>> for ClassTargets<'a> {
    fn from(t: &'a Vec<usize>) -> Self {
        ClassTargets::Indices(t)
    }
}

impl<'a, const N: usize> From<&'a [usize; N]> for ClassTargets<'a> {
    fn from(t: &'a [usize; N]) -> Self {
        ClassTargets::Indices(t)
    }
}

impl<'a> From<&'a [i64]> for ClassTargets<'a> {
    fn from(t: &'a [i64]) -> Self {
        ClassTargets::Signed(t)
    }
}

impl<'a> From<&'a Vec<i64>> for ClassTargets<'a> {
    fn from(t: &'a Vec<i64>) -> Self {
        ClassTargets::Signed(t)
    }
}

impl<'a> From<&'a Tensor> for ClassTargets<'a> {
    fn from(t: &'a Tensor) -> Self {
        ClassTargets::Tensor(t)
    }
}

/// PyTorch's `ignore_index` default: a target of -100 does not count.
const DEFAULT_IGNORE_INDEX: i64 = -100;

/// Options of [`Tensor::cross_entropy_with`] (and [`crate::nn::CrossEntropyLoss`]), with
/// PyTorch's defaults: no class weights, `ignore_index` -100, the mean, no label smoothing.
///
/// ```
/// # use webgrad::{CrossEntropyOptions, Reduction};
/// let options = CrossEntropyOptions::default()
///     .ignore_index(0)
///     .label_smoothing(0.1)
///     .reduction(Reduction::Sum);
/// assert_eq!(options.ignore_index, 0);
/// ```
#[derive(Clone, Debug)]
pub struct CrossEntropyOptions {
    /// A weight per class ([C], on the input's device), or `None` for all 1. Constants: no
    /// gradient flows to them (PyTorch has none either).
    pub weight: Option<Tensor>,
    /// Rows whose target is this do not count (nor does their weight in the mean).
    pub ignore_index: i64,
    /// How the rows' losses are combined.
    pub reduction: Reduction,
    /// In [0, 1]: the target is `1 - label_smoothing` on its class plus
    /// `label_smoothing / C` on every class.
    pub label_smoothing: f32,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
            label_smoothing: 0.0,
        }
    }
}

impl CrossEntropyOptions {
    /// With a weight per class ([C]).
    pub fn weight(mut self, weight: &Tensor) -> Self {
        self.weight = Some(weight.clone());
        self
    }

    /// With another `ignore_index`.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// With another reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// With label smoothing in [0, 1].
    pub fn label_smoothing(mut self, label_smoothing: f32) -> Self {
        self.label_smoothing = label_smoothing;
        self
    }
}

/// Options of [`Tensor::nll_loss_with`] (and [`crate::nn::NLLLoss`]), with PyTorch's defaults:
/// no class weights, `ignore_index` -100, the mean.
#[derive(Clone, Debug)]
pub struct NllLossOptions {
    /// A weight per class ([C], on the input's device), or `None` for all 1. Constants: no
    /// gradient flows to them (PyTorch has none either).
    pub weight: Option<Tensor>,
    /// Rows whose target is this do not count (nor does their weight in the mean).
    pub ignore_index: i64,
    /// How the rows' losses are combined.
    pub reduction: Reduction,
}

impl Default for NllLossOptions {
    fn default() -> Self {
        NllLossOptions {
            weight: None,
            ignore_index: DEFAULT_IGNORE_INDEX,
            reduction: Reduction::Mean,
        }
    }
}

impl NllLossOptions {
    /// With a weight per class ([C]).
    pub fn weight(mut self, weight: &Tensor) -> Self {
        self.weight = Some(weight.clone());
        self
    }

    /// With another `ignore_index`.
    pub fn ignore_index(mut self, ignore_index: i64) -> Self {
        self.ignore_index = ignore_index;
        self
    }

    /// With another reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }
}

fn same_shape(x: &Tensor, t: &Tensor, op: &'static str) -> Result<()> {
    x.device().same(t.device(), op)?;
    if x.shape() != t.shape() {
        return shape_err(
            op,
            format!(
                "input {:?} and target {:?} must have the same shape",
                x.shape(),
                t.shape()
            ),
        );
    }
    Ok(())
}

fn elementwise(x: &Tensor, t: &Tensor, kind: Elementwise, r: Reduction) -> Result<Tensor> {
    let name = match kind {
        Elementwise::BceLogits => "binary_cross_entropy_with_logits",
        Elementwise::Bce => "binary_cross_entropy",
    };
    same_shape(x, t, name)?;
    let dev = x.device();
    let n = x.numel();
    let l = dev.storage(n)?;
    dev.dispatch_with(
        &SHADER,
        "bce_forward",
        &kind.constants(),
        &[
            Bind::Read(x.buffer()),
            Bind::Read(t.buffer()),
            Bind::Write(l.buffer()),
        ],
        &LossParams {
            len: n as u32,
            ..Default::default()
        },
        groups(n),
    )?;
    let l = Tensor::from_op(l, x.shape().to_vec(), &[x, t], || {
        Op::Loss(Saved {
            kind,
            x: x.detach(),
            t: t.detach(),
        })
    });
    reduce(l, r)
}

pub(crate) fn backward(s: &Saved, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let dev = g.device();
    let n = g.numel();
    let gx = Tensor::uninit(dev, g.shape())?;
    let gt = Tensor::uninit(dev, g.shape())?;
    dev.dispatch_with(
        &SHADER,
        "bce_backward",
        &s.kind.constants(),
        &[
            Bind::Read(s.x.buffer()),
            Bind::Read(s.t.buffer()),
            Bind::Read(g.buffer()),
            Bind::Write(gx.buffer()),
            Bind::Write(gt.buffer()),
        ],
        &LossParams {
            len: n as u32,
            ..Default::default()
        },
        groups(n),
    )?;
    Ok(vec![Some(gx), Some(gt)])
}

pub(crate) fn cross_entropy_backward(s: &CrossEntropySaved, g: &Tensor) -> Result<Tensor> {
    if let (Some(unit), Some(1.0)) = (&s.unit_grad, g.storage().known_value()) {
        return Ok(unit.clone());
    }
    let dev = g.device();
    let (rows, classes) = (s.x.shape()[0], s.x.shape()[1]);
    let gx = Tensor::uninit(dev, s.x.shape())?;
    let scale = s.reduced.unwrap_or(1.0);
    dev.dispatch_with(
        &SHADER,
        "cross_entropy_backward",
        &[("REDUCED", s.reduced.is_some() as u32)],
        &[
            Bind::Read(s.x.buffer()),
            Bind::Read(s.targets.buffer()),
            Bind::Read(g.buffer()),
            Bind::Write(gx.buffer()),
            Bind::Read(s.lse.buffer()),
        ],
        &LossParams {
            len: rows as u32,
            classes: classes as u32,
            scale,
            ..Default::default()
        },
        groups(rows * classes),
    )?;
    Ok(gx)
}

impl Tensor {
    /// Squared error between this tensor and `target` (same shape).
    pub fn mse_loss(&self, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
        same_shape(self, target, "mse_loss")?;
        let d = self.sub(target)?;
        reduce(d.mul(&d)?, reduction)
    }

    /// The logistic loss of logits against targets in [0, 1], stable for large |x|.
    pub fn binary_cross_entropy_with_logits(
        &self,
        target: &Tensor,
        reduction: Reduction,
    ) -> Result<Tensor> {
        elementwise(self, target, Elementwise::BceLogits, reduction)
    }

    /// Binary cross-entropy of probabilities in [0, 1] (logs clamped at -100, as PyTorch).
    pub fn binary_cross_entropy(&self, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
        elementwise(self, target, Elementwise::Bce, reduction)
    }

    /// Cross-entropy of logits [N, C] against class indices, with PyTorch's defaults (no
    /// class weights, no label smoothing); see [`Tensor::cross_entropy_with`] for the options.
    /// Log-softmax and negative log-likelihood are fused in one forward and one backward
    /// kernel.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor, Reduction};
    /// let dev = Device::new()?;
    /// let logits = Tensor::from_vec(&dev, vec![2.0, 0.0, 0.0, 0.0, 0.0, 3.0], &[2, 3])?;
    /// let loss = logits.cross_entropy(&[0, 2], Reduction::Mean)?;
    /// assert!(loss.item()? < 0.2);
    /// assert!(logits.cross_entropy(&[0, 3], Reduction::Mean).is_err()); // class 3 of 3
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn cross_entropy(&self, targets: &[usize], reduction: Reduction) -> Result<Tensor> {
        self.cross_entropy_with(
            targets,
            &CrossEntropyOptions::default().reduction(reduction),
        )
    }

    /// Cross-entropy of logits [N, C] against class targets with PyTorch's options
    /// (`F.cross_entropy(input, target, weight, ignore_index=-100, reduction='mean',
    /// label_smoothing=0.0)`): with label smoothing eps, class weights w (all 1 without) and
    /// C classes, row i's loss is
    ///
    /// ```text
    /// l_i = (1 - eps) w_t (-log p_it) + (eps / C) sum_c w_c (-log p_ic),   p_i = softmax(x_i)
    /// ```
    ///
    /// and 0 where its target is `ignore_index`; the mean divides the rows' sum by the sum of
    /// `w_t` over the rows not ignored (NaN when every row is), as PyTorch.
    ///
    /// Host targets out of range are an error; a device tensor's are not checked: see
    /// [`ClassTargets`]. With the default options and host targets none of which is ignored,
    /// this is [`Tensor::cross_entropy`]'s fused kernel.
    ///
    /// ```
    /// # use webgrad::{ClassTargets, CrossEntropyOptions, Device, Reduction, Tensor};
    /// let dev = Device::new()?;
    /// let logits = Tensor::from_vec(&dev, vec![2.0, 0.0, 0.0, 0.0, 0.0, 3.0], &[2, 3])?;
    /// let weight = Tensor::from_vec(&dev, vec![1.0, 1.0, 2.0], &[3])?;
    /// let options = CrossEntropyOptions::default().weight(&weight).label_smoothing(0.1);
    /// let rows = logits.cross_entropy_with(&[0, 2], &options.clone().reduction(Reduction::None))?;
    /// // The second row's target is -100, the default ignore_index: the mean is the first
    /// // row's loss over its class weight, 1.
    /// let mean = logits.cross_entropy_with(ClassTargets::Signed(&[0, -100]), &options)?;
    /// assert!((mean.item()? - rows.to_vec()?[0]).abs() < 1e-6);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn cross_entropy_with<'a>(
        &self,
        targets: impl Into<ClassTargets<'a>>,
        options: &CrossEntropyOptions,
    ) -> Result<Tensor> {
        class_loss(
            self,
            targets.into(),
            ClassLoss {
                op: "cross_entropy",
                nll: false,
                weight: options.weight.as_ref(),
                ignore_index: options.ignore_index,
                reduction: options.reduction,
                smoothing: options.label_smoothing,
            },
        )
    }

    /// The negative log-likelihood of log-probabilities [N, C] (e.g. a [`Tensor::log_softmax`]
    /// over dim 1) at class targets, as PyTorch's `F.nll_loss` with its defaults: row i's loss
    /// is `-input[i, t_i]`. See [`Tensor::nll_loss_with`] for class weights and
    /// `ignore_index`.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor, Reduction};
    /// let dev = Device::new()?;
    /// let logits = Tensor::from_vec(&dev, vec![2.0, 0.0, 0.0, 0.0, 0.0, 3.0], &[2, 3])?;
    /// let nll = logits.log_softmax(1)?.nll_loss(&[0, 2], Reduction::Mean)?;
    /// let ce = logits.cross_entropy(&[0, 2], Reduction::Mean)?;
    /// assert!((nll.item()? - ce.item()?).abs() < 1e-6);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn nll_loss<'a>(
        &self,
        targets: impl Into<ClassTargets<'a>>,
        reduction: Reduction,
    ) -> Result<Tensor> {
        self.nll_loss_with(targets, &NllLossOptions::default().reduction(reduction))
    }

    /// [`Tensor::nll_loss`] with PyTorch's options (`F.nll_loss(input, target, weight,
    /// ignore_index=-100, reduction='mean')`): row i's loss is `-w_t input[i, t_i]` (w all 1
    /// without class weights), 0 where its target is `ignore_index`; the mean divides the
    /// rows' sum by the sum of `w_t` over the rows not ignored (NaN when every row is).
    /// Host targets out of range are an error; for a device tensor's see [`ClassTargets`].
    pub fn nll_loss_with<'a>(
        &self,
        targets: impl Into<ClassTargets<'a>>,
        options: &NllLossOptions,
    ) -> Result<Tensor> {
        class_loss(
            self,
            targets.into(),
            ClassLoss {
                op: "nll_loss",
                nll: true,
                weight: options.weight.as_ref(),
                ignore_index: options.ignore_index,
                reduction: options.reduction,
                smoothing: 0.0,
            },
        )
    }
}

/// Classes up to this many have exact f32 indices (targets travel to the kernels as f32).
const MAX_F32_CLASSES: usize = 1 << 24;

/// What a class loss was asked for.
struct ClassLoss<'a> {
    op: &'static str,
    /// nll_loss (the input holds log-probabilities) rather than cross_entropy (logits).
    nll: bool,
    weight: Option<&'a Tensor>,
    ignore_index: i64,
    reduction: Reduction,
    smoothing: f32,
}

/// Validated class targets: all on the host and classes (the fused cross_entropy's case), or
/// as the f32 tensor the class-loss kernels read.
enum Checked {
    Classes(Vec<usize>),
    Tensor(Tensor),
}

fn check_targets(x: &Tensor, targets: ClassTargets, o: &ClassLoss) -> Result<Checked> {
    let (op, s) = (o.op, x.shape());
    let (rows, classes) = (s[0], s[1]);
    let count = match targets {
        ClassTargets::Indices(t) => t.len(),
        ClassTargets::Signed(t) => t.len(),
        ClassTargets::Tensor(t) => {
            x.device().same(t.device(), op)?;
            if t.shape() != [rows] {
                return shape_err(
                    op,
                    format!(
                        "targets {:?} for input {s:?}: one class index per row ([{rows}])",
                        t.shape()
                    ),
                );
            }
            return Ok(Checked::Tensor(t.detach()));
        }
    };
    if count != rows {
        return shape_err(op, format!("{count} targets for input {s:?} ({rows} rows)"));
    }
    // Each target: Some(class), or None where it is ignore_index.
    let ignore = o.ignore_index;
    let class_of = |i: usize, t: i64| -> Result<Option<usize>> {
        if t == ignore {
            return Ok(None);
        }
        match usize::try_from(t) {
            Ok(c) if c < classes => Ok(Some(c)),
            Ok(c) => Err(Error::Invalid(format!(
                "{op}: target {i} is class {c}, but the input {s:?} has {classes} classes"
            ))),
            Err(_) => Err(Error::Invalid(format!(
                "{op}: target {i} is {t}, neither a class of the input {s:?} nor ignore_index \
                 {ignore}"
            ))),
        }
    };
    let classes_of: Vec<Option<usize>> = match targets {
        ClassTargets::Indices(t) => t
            .iter()
            .enumerate()
            .map(|(i, &c)| class_of(i, i64::try_from(c).unwrap_or(i64::MAX)))
            .collect::<Result<_>>()?,
        ClassTargets::Signed(t) => t
            .iter()
            .enumerate()
            .map(|(i, &c)| class_of(i, c))
            .collect::<Result<_>>()?,
        ClassTargets::Tensor(_) => unreachable!("returned above"),
    };
    if classes_of.iter().all(Option::is_some) {
        return Ok(Checked::Classes(classes_of.into_iter().flatten().collect()));
    }
    let t: Vec<f32> = classes_of
        .iter()
        .map(|c| c.map_or(ignore as f32, |c| c as f32))
        .collect();
    Ok(Checked::Tensor(Tensor::from_vec(x.device(), t, &[rows])?))
}

/// nll_loss and cross_entropy with their options: the fused cross_entropy kernels where the
/// options are the defaults and the targets are host classes, the class_loss kernels
/// otherwise (their per-row losses reduced here).
fn class_loss(x: &Tensor, targets: ClassTargets, o: ClassLoss) -> Result<Tensor> {
    let (op, s) = (o.op, x.shape());
    if s.len() != 2 {
        let what = if o.nll { "log-probabilities" } else { "logits" };
        return shape_err(op, format!("expects {what} [N, C], got {s:?}"));
    }
    let (rows, classes) = (s[0], s[1]);
    if !(0.0..=1.0).contains(&o.smoothing) {
        return Err(Error::Invalid(format!(
            "{op}: label_smoothing must be in [0, 1], got {}",
            o.smoothing
        )));
    }
    if let Some(w) = o.weight {
        x.device().same(w.device(), op)?;
        if w.shape() != [classes] {
            return shape_err(
                op,
                format!(
                    "weight {:?} for input {s:?}: one weight per class ([{classes}])",
                    w.shape()
                ),
            );
        }
    }
    let checked = check_targets(x, targets, &o)?;
    let dev = x.device();
    let max_classes = if o.nll {
        MAX_F32_CLASSES
    } else {
        dev.policy()
            .cross_entropy_max_classes()
            .min(MAX_F32_CLASSES)
    };
    if classes > max_classes {
        return Err(Error::Invalid(format!(
            "{op}: {classes} classes; at most {max_classes} are supported on {}",
            dev.info().name
        )));
    }
    let targets = match checked {
        Checked::Classes(t) if !o.nll && o.weight.is_none() && o.smoothing == 0.0 => {
            return cross_entropy_fused(x, &t, o.reduction);
        }
        Checked::Classes(t) => {
            let t: Vec<f32> = t.iter().map(|&c| c as f32).collect();
            Tensor::from_vec(dev, t, &[rows])?
        }
        Checked::Tensor(t) => t,
    };
    if rows > 0 && classes == 0 {
        // Host targets are checked against no classes (all could be ignored, though); a
        // device tensor's are not read.
        return shape_err(op, format!("input {s:?} has no classes"));
    }
    let l = dev.storage(rows)?;
    let stats = Tensor::uninit(dev, &[rows, 2])?;
    let row_w = Tensor::uninit(dev, &[rows])?;
    let params = LossParams {
        len: rows as u32,
        classes: classes as u32,
        scale: 1.0,
        ignore: o.ignore_index as f32,
        smoothing: o.smoothing,
        invalid: f32::NAN,
    };
    let constants = class_loss_constants(o.nll, o.weight.is_some(), o.smoothing);
    dev.dispatch_with(
        &SHADER,
        "class_loss_forward",
        &constants,
        &[
            Bind::Read(x.buffer()),
            Bind::Read(targets.buffer()),
            Bind::Write(l.buffer()),
            Bind::Write(stats.buffer()),
            Bind::Write(row_w.buffer()),
            Bind::Read(o.weight.map_or(dev.dummy_buffer(), |w| w.buffer())),
        ],
        &params,
        rows.div_ceil(64) as u32,
    )?;
    // Targets and weights are inputs so that an in-place write to them before the backward
    // is an error; detached, as they get no gradient (PyTorch has none for the weights).
    let weight = o.weight.map(Tensor::detach);
    let mut inputs = vec![x, &targets];
    inputs.extend(weight.as_ref());
    let l = Tensor::from_op(l, vec![rows], &inputs, || {
        Op::ClassLoss(ClassLossSaved {
            op,
            x: x.detach(),
            targets: targets.clone(),
            weight: weight.clone(),
            stats,
            params,
            constants,
        })
    });
    match o.reduction {
        Reduction::None => Ok(l),
        Reduction::Sum => l.sum(),
        // Over the weights of the rows not ignored, as PyTorch (not over the rows).
        Reduction::Mean => l.sum()?.div(&row_w.sum()?),
    }
}

/// The class_loss kernels' pipeline constants.
fn class_loss_constants(nll: bool, weighted: bool, smoothing: f32) -> [(&'static str, u32); 3] {
    [
        ("NLL", nll as u32),
        ("WEIGHTED", weighted as u32),
        ("SMOOTHING", (smoothing > 0.0) as u32),
    ]
}

pub(crate) fn class_loss_backward(s: &ClassLossSaved, g: &Tensor) -> Result<Tensor> {
    let dev = g.device();
    let gx = Tensor::uninit(dev, s.x.shape())?;
    dev.dispatch_with(
        &SHADER,
        "class_loss_backward",
        &s.constants,
        &[
            Bind::Read(s.x.buffer()),
            Bind::Read(s.targets.buffer()),
            Bind::Read(g.buffer()),
            Bind::Write(gx.buffer()),
            Bind::Read(s.stats.buffer()),
            Bind::Read(s.weight.as_ref().map_or(dev.dummy_buffer(), |w| w.buffer())),
        ],
        &s.params,
        groups(s.x.numel()),
    )?;
    Ok(gx)
}

/// The default cross_entropy: host classes, no weights, no smoothing, no ignored row.
fn cross_entropy_fused(x: &Tensor, targets: &[usize], reduction: Reduction) -> Result<Tensor> {
    let (rows, classes) = (x.shape()[0], x.shape()[1]);
    let dev = x.device();
    let t: Vec<f32> = targets.iter().map(|&t| t as f32).collect();
    let targets = Tensor::from_vec(dev, t, &[rows])?;
    let lse = Tensor::uninit(dev, &[rows])?;
    // A mean or sum is computed by the loss kernel itself where the policy says so.
    let scale = match reduction {
        Reduction::Mean => Some(1.0 / rows.max(1) as f32),
        Reduction::Sum => Some(1.0),
        Reduction::None => None,
    };
    // No rows: the per-row losses, then `reduce` (whose mean of nothing is NaN).
    let reduced = scale.filter(|_| rows > 0 && dev.policy().cross_entropy_reduced(rows, classes));
    let (entry, outputs, shape, workgroups) = match reduced {
        Some(_) => ("cross_entropy_reduced_forward", 1, vec![], 1),
        None => ("cross_entropy_forward", rows, vec![rows], rows.div_ceil(64)),
    };
    // Training with the reduction fused in: the forward also writes the gradient for the
    // usual upstream gradient of 1, saving the backward's dispatch.
    let training = x.is_requires_grad() && crate::is_grad_enabled();
    let unit_grad = match reduced {
        Some(_) if training => Some(Tensor::uninit(dev, x.shape())?),
        _ => None,
    };
    let l = dev.storage(outputs)?;
    // Without the saved gradient the device's dummy buffer fills its slot (unwritten).
    let mut binds = vec![
        Bind::Read(x.buffer()),
        Bind::Read(targets.buffer()),
        Bind::Write(l.buffer()),
        Bind::Write(lse.buffer()),
    ];
    if let Some(saved) = unit_grad.as_ref().map(|t| t.buffer()) {
        binds.push(Bind::Write(saved));
    } else if reduced.is_some() {
        binds.push(Bind::Write(dev.dummy_buffer()));
    }
    dev.dispatch_with(
        &SHADER,
        entry,
        &[("SAVE_GRAD", unit_grad.is_some() as u32)],
        &binds,
        &LossParams {
            len: rows as u32,
            classes: classes as u32,
            scale: reduced.unwrap_or(1.0),
            ..Default::default()
        },
        workgroups as u32,
    )?;
    let l = Tensor::from_op(l, shape, &[x], || {
        Op::CrossEntropy(CrossEntropySaved {
            x: x.detach(),
            targets,
            lse,
            reduced,
            unit_grad,
        })
    });
    match reduced {
        Some(_) => Ok(l),
        None => reduce(l, reduction),
    }
}
