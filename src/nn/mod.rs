//! Neural-network building blocks: the [`Module`] trait, the layers, [`Sequential`] and a
//! model summary. Parameters carry PyTorch's `state_dict` names (`conv1.weight`, ...).

mod init;
mod layers;
mod loss;
mod pad;
mod sequential;
mod summary;

pub use layers::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv2d, Conv2dConfig, Dropout, Flatten,
    GroupNorm, Hardtanh, LayerNorm, LeakyReLU, Linear, LinearConfig, MaxPool2d, PaddingMode, ReLU,
    SiLU, Sigmoid, Softplus, Tanh, ELU, GELU,
};
pub use loss::{CrossEntropyLoss, LogSoftmax, NLLLoss};
pub use pad::{CircularPad2d, ConstantPad2d, ReflectionPad2d, ReplicationPad2d, ZeroPad2d};
pub use sequential::Sequential;
pub use summary::{summary, LayerSummary};

use crate::error::Result;
use crate::tensor::Tensor;

/// A module's integer state, such as BatchNorm's `num_batches_tracked`: shared, so that a
/// loader can set what the module's forward counts.
pub type Counter = std::sync::Arc<std::sync::atomic::AtomicU64>;

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

    /// Integer state saved with the model: BatchNorm's `num_batches_tracked`, which PyTorch
    /// saves as an int64 scalar. Not part of [`state_dict`](Self::state_dict) (whose values
    /// are f32 tensors); `weights::save_module` writes these as int64 entries and the loaders
    /// read them back.
    fn named_counters(&self) -> Vec<(String, Counter)> {
        Vec::new()
    }

    /// Training mode (dropout on, batch statistics) or eval mode; containers pass it to
    /// every child.
    fn set_training(&mut self, _training: bool) {}

    /// Training mode, as PyTorch's `module.train()`: `set_training(true)`.
    fn train(&mut self) {
        self.set_training(true);
    }

    /// Eval mode, as PyTorch's `module.eval()`: `set_training(false)`.
    fn eval(&mut self) {
        self.set_training(false);
    }

    /// The mode of a module whose forward depends on it (Dropout, the BatchNorms, a
    /// container holding one: its first such child's), `None` for the others, which behave
    /// the same in both.
    fn is_training(&self) -> Option<bool> {
        None
    }

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

/// A boxed module is a module, so `Box<dyn Module>` values compose (into [`Sequential`], or a
/// model's own fields) like the layers they hold.
impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        (**self).forward(x)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        (**self).named_parameters()
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        (**self).named_buffers()
    }
    fn named_counters(&self) -> Vec<(String, Counter)> {
        (**self).named_counters()
    }
    fn set_training(&mut self, training: bool) {
        (**self).set_training(training)
    }
    fn train(&mut self) {
        (**self).train()
    }
    fn eval(&mut self) {
        (**self).eval()
    }
    fn is_training(&self) -> Option<bool> {
        (**self).is_training()
    }
    fn kernel_stride(&self) -> (usize, usize) {
        (**self).kernel_stride()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn parameters(&self) -> Vec<Tensor> {
        (**self).parameters()
    }
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        (**self).state_dict()
    }
    fn zero_grad(&self) {
        (**self).zero_grad()
    }
    fn num_parameters(&self) -> usize {
        (**self).num_parameters()
    }
}
