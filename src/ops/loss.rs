//! Losses: `mse_loss`, `binary_cross_entropy_with_logits`, `binary_cross_entropy` and the fused
//! log-softmax + NLL `cross_entropy`: `shaders/loss.wgsl`.

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

    /// Cross-entropy of logits [N, C] against class indices (log-softmax and negative
    /// log-likelihood fused in one forward and one backward kernel).
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
        let s = self.shape();
        if s.len() != 2 {
            return shape_err("cross_entropy", format!("expects logits [N, C], got {s:?}"));
        }
        let (rows, classes) = (s[0], s[1]);
        if targets.len() != rows {
            return shape_err(
                "cross_entropy",
                format!("{} targets for logits {s:?} ({rows} rows)", targets.len()),
            );
        }
        if let Some((i, &t)) = targets.iter().enumerate().find(|(_, &t)| t >= classes) {
            return Err(Error::Invalid(format!(
                "cross_entropy: target {i} is class {t}, but the logits {s:?} have {classes} classes"
            )));
        }
        let dev = self.device();
        let max_classes = dev.policy().cross_entropy_max_classes();
        if classes > max_classes {
            return Err(Error::Invalid(format!(
                "cross_entropy: {classes} classes; at most {max_classes} are supported on {}",
                dev.info().name
            )));
        }
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
        let reduced =
            scale.filter(|_| rows > 0 && dev.policy().cross_entropy_reduced(rows, classes));
        let (entry, outputs, shape, workgroups) = match reduced {
            Some(_) => ("cross_entropy_reduced_forward", 1, vec![], 1),
            None => ("cross_entropy_forward", rows, vec![rows], rows.div_ceil(64)),
        };
        // Training with the reduction fused in: the forward also writes the gradient for the
        // usual upstream gradient of 1, saving the backward's dispatch.
        let training = self.is_requires_grad() && crate::is_grad_enabled();
        let unit_grad = match reduced {
            Some(_) if training => Some(Tensor::uninit(dev, self.shape())?),
            _ => None,
        };
        let l = dev.storage(outputs)?;
        // Without the saved gradient the device's dummy buffer fills its slot (unwritten).
        let mut binds = vec![
            Bind::Read(self.buffer()),
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
            },
            workgroups as u32,
        )?;
        let l = Tensor::from_op(l, shape, &[self], || {
            Op::CrossEntropy(CrossEntropySaved {
                x: self.detach(),
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
}
