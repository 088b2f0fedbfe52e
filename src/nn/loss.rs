//! The classification losses as modules with PyTorch's names and defaults, and the
//! log-softmax that [`NLLLoss`] pairs with (`LogSoftmax(dim=1)` then `NLLLoss` is
//! `CrossEntropyLoss`). A loss takes the targets besides the input, so it is not a [`Module`];
//! its `forward(input, targets)` is the functional op with the module's options.

use super::Module;
use crate::error::Result;
use crate::ops::loss::{ClassTargets, CrossEntropyOptions, NllLossOptions, Reduction};
use crate::tensor::Tensor;

/// `log_softmax` over `dim` as a layer (`torch.nn.LogSoftmax(dim)`).
#[derive(Clone, Copy, Debug)]
pub struct LogSoftmax {
    /// The dimension the log-softmax normalises (negative counts from the end).
    pub dim: isize,
}

impl LogSoftmax {
    /// The log-softmax over `dim`.
    pub fn new(dim: isize) -> Self {
        LogSoftmax { dim }
    }
}

impl Module for LogSoftmax {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.log_softmax(self.dim)
    }
    fn describe(&self) -> String {
        format!("LogSoftmax(dim={})", self.dim)
    }
}

/// Cross-entropy of logits [N, C] against class targets (`torch.nn.CrossEntropyLoss`), its
/// options those of [`Tensor::cross_entropy_with`] with PyTorch's defaults.
///
/// ```
/// # use webgrad::{nn, Device, Reduction, Tensor};
/// let dev = Device::new()?;
/// let logits = Tensor::from_vec(&dev, vec![2.0, 0.0, 0.0, 0.0, 0.0, 3.0], &[2, 3])?;
/// let criterion = nn::CrossEntropyLoss::new().label_smoothing(0.1);
/// let loss = criterion.forward(&logits, &[0, 2])?;
/// assert!(loss.item()? > logits.cross_entropy(&[0, 2], Reduction::Mean)?.item()?);
/// # Ok::<(), webgrad::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyLoss {
    /// Class weights, `ignore_index`, reduction and label smoothing.
    pub options: CrossEntropyOptions,
}

impl CrossEntropyLoss {
    /// The loss with PyTorch's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With a weight per class ([C]).
    pub fn weight(self, weight: &Tensor) -> Self {
        Self {
            options: self.options.weight(weight),
        }
    }

    /// With another `ignore_index` (default -100).
    pub fn ignore_index(self, ignore_index: i64) -> Self {
        Self {
            options: self.options.ignore_index(ignore_index),
        }
    }

    /// With another reduction (default the mean).
    pub fn reduction(self, reduction: Reduction) -> Self {
        Self {
            options: self.options.reduction(reduction),
        }
    }

    /// With label smoothing in [0, 1] (default 0).
    pub fn label_smoothing(self, label_smoothing: f32) -> Self {
        Self {
            options: self.options.label_smoothing(label_smoothing),
        }
    }

    /// The loss of `input` (logits [N, C]) at `targets`.
    pub fn forward<'a>(
        &self,
        input: &Tensor,
        targets: impl Into<ClassTargets<'a>>,
    ) -> Result<Tensor> {
        input.cross_entropy_with(targets, &self.options)
    }
}

/// Negative log-likelihood of log-probabilities [N, C] at class targets
/// (`torch.nn.NLLLoss`), its options those of [`Tensor::nll_loss_with`] with PyTorch's
/// defaults.
///
/// ```
/// # use webgrad::{nn, nn::Module, Device, Reduction, Tensor};
/// let dev = Device::new()?;
/// let logits = Tensor::from_vec(&dev, vec![2.0, 0.0, 0.0, 0.0, 0.0, 3.0], &[2, 3])?;
/// let log_probs = nn::LogSoftmax::new(1).forward(&logits)?;
/// let loss = nn::NLLLoss::new().forward(&log_probs, &[0, 2])?;
/// let ce = logits.cross_entropy(&[0, 2], Reduction::Mean)?;
/// assert!((loss.item()? - ce.item()?).abs() < 1e-6);
/// # Ok::<(), webgrad::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct NLLLoss {
    /// Class weights, `ignore_index` and reduction.
    pub options: NllLossOptions,
}

impl NLLLoss {
    /// The loss with PyTorch's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// With a weight per class ([C]).
    pub fn weight(self, weight: &Tensor) -> Self {
        Self {
            options: self.options.weight(weight),
        }
    }

    /// With another `ignore_index` (default -100).
    pub fn ignore_index(self, ignore_index: i64) -> Self {
        Self {
            options: self.options.ignore_index(ignore_index),
        }
    }

    /// With another reduction (default the mean).
    pub fn reduction(self, reduction: Reduction) -> Self {
        Self {
            options: self.options.reduction(reduction),
        }
    }

    /// The loss of `input` (log-probabilities [N, C]) at `targets`.
    pub fn forward<'a>(
        &self,
        input: &Tensor,
        targets: impl Into<ClassTargets<'a>>,
    ) -> Result<Tensor> {
        input.nll_loss_with(targets, &self.options)
    }
}
