//! Neural-network building blocks: the [`Module`] trait, the layers, [`Sequential`] and a
//! model summary. Parameters carry PyTorch's `state_dict` names (`conv1.weight`, ...).

mod init;
mod layers;
mod loss;
mod sequential;
mod summary;

pub use layers::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dConfig, Dropout, Flatten,
    GroupNorm, Hardtanh, LayerNorm, LeakyReLU, Linear, LinearConfig, MaxPool2d, ReLU, SiLU,
    Sigmoid, Softplus, Tanh, ELU, GELU,
};
pub use loss::{CrossEntropyLoss, LogSoftmax, NLLLoss};
pub use sequential::Sequential;
pub use summary::{summary, LayerSummary};

use crate::error::Result;
use crate::tensor::Tensor;

/// A layer or a model: a forward pass plus its named parameters and buffers. Modules are
/// `Send + Sync`, so a model can move to (or be shared with) a worker thread.
pub trait Module: Send + Sync {
    /// The module's output for input `x` (recorded on the tape when its parameters require
    /// grad).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Trainable tensors with their `state_dict` names, in registration order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Non-trainable state saved with the model (BatchNorm's running statistics).
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Training mode (dropout on, batch statistics) or eval mode.
    fn set_training(&mut self, _training: bool) {}

    /// (kernel, stride) along one axis, for the receptive field; 1 x 1 for pointwise layers.
    fn kernel_stride(&self) -> (usize, usize) {
        (1, 1)
    }

    /// A short description for summaries, e.g. `Conv2d(1, 6, k=5, s=1, p=2)`.
    fn describe(&self) -> String;

    /// The parameters without their names.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    /// Parameters and buffers: what a checkpoint holds.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut v = self.named_parameters();
        v.extend(self.named_buffers());
        v
    }

    /// Forgets the gradients of every parameter.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// Number of trainable values.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }
}
