//! Ready-made models: LeNet-5, the benchmark zoo's MLP, PyTorch's MNIST example network
//! ([`MnistNet`]), ResNet-20 for CIFAR ([`ResNet20`]) and a VGG-style CIFAR net ([`VggNet`]).
//! Each is built from `nn` modules with PyTorch's `state_dict` names and PyTorch's default
//! initialisation, drawn from the device's seeded generator.

mod resnet;

pub use resnet::{BasicBlock, ResNet20};

use crate::device::Device;
use crate::error::Result;
use crate::nn::{
    AvgPool2d, BatchNorm2d, Conv2dConfig, Dropout, Flatten, LinearConfig, LogSoftmax, MaxPool2d,
    ReLU, Sequential, Tanh,
};

/// Which LeNet-5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LeNetFlavour {
    /// ReLU and max pooling (the form PyTorch tutorials use).
    #[default]
    Modern,
    /// LeCun et al. 1998: tanh and average pooling.
    Classic,
}

/// LeNet-5 for 1 x 28 x 28 inputs: conv1 1->6 k5 pad 2, act, pool 2; conv2 6->16 k5, act,
/// pool 2; flatten 400; fc1 400->120, act; fc2 120->84, act; fc3 84->10. Parameter names
/// match PyTorch's (`conv1.weight`, ..., `fc3.bias`).
pub struct LeNet5;

impl LeNet5 {
    /// The model with PyTorch's default initialisation from the device's seeded generator.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor, models::{LeNet5, LeNetFlavour}, nn::Module};
    /// let dev = Device::new()?;
    /// let model = LeNet5::build(&dev, LeNetFlavour::Modern)?;
    /// let logits = model.forward(&Tensor::zeros(&dev, &[2, 1, 28, 28])?)?;
    /// assert_eq!(logits.shape(), &[2, 10]);
    /// assert_eq!(model.num_parameters(), 61_706);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn build(dev: &Device, flavour: LeNetFlavour) -> Result<Sequential> {
        let conv1 = Conv2dConfig::new(1, 6, 5).with_padding(2).init(dev)?;
        let conv2 = Conv2dConfig::new(6, 16, 5).init(dev)?;
        let fc1 = LinearConfig::new(400, 120).init(dev)?;
        let fc2 = LinearConfig::new(120, 84).init(dev)?;
        let fc3 = LinearConfig::new(84, 10).init(dev)?;
        Ok(match flavour {
            LeNetFlavour::Modern => Sequential::new()
                .add("conv1", conv1)
                .add("relu1", ReLU)
                .add("pool1", MaxPool2d::new(2))
                .add("conv2", conv2)
                .add("relu2", ReLU)
                .add("pool2", MaxPool2d::new(2))
                .add("flatten", Flatten)
                .add("fc1", fc1)
                .add("relu3", ReLU)
                .add("fc2", fc2)
                .add("relu4", ReLU)
                .add("fc3", fc3),
            LeNetFlavour::Classic => Sequential::new()
                .add("conv1", conv1)
                .add("tanh1", Tanh)
                .add("pool1", AvgPool2d::new(2))
                .add("conv2", conv2)
                .add("tanh2", Tanh)
                .add("pool2", AvgPool2d::new(2))
                .add("flatten", Flatten)
                .add("fc1", fc1)
                .add("tanh3", Tanh)
                .add("fc2", fc2)
                .add("tanh4", Tanh)
                .add("fc3", fc3),
        })
    }
}

/// The multilayer perceptron of the benchmark zoo: flatten, fc1 784->256, ReLU, fc2 256->256,
/// ReLU, fc3 256->10. It takes [N, 1, 28, 28] images (or any [N, ...] of 784 values per
/// sample) and returns logits; parameters `fc1.weight`, `fc1.bias`, ..., `fc3.bias`.
pub struct Mlp;

impl Mlp {
    /// The model with PyTorch's default initialisation from the device's seeded generator.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor, models::Mlp, nn::Module};
    /// let dev = Device::new()?;
    /// let model = Mlp::build(&dev)?;
    /// let logits = model.forward(&Tensor::zeros(&dev, &[2, 1, 28, 28])?)?;
    /// assert_eq!(logits.shape(), &[2, 10]);
    /// assert_eq!(model.num_parameters(), 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn build(dev: &Device) -> Result<Sequential> {
        Ok(Sequential::new()
            .add("flatten", Flatten)
            .add("fc1", LinearConfig::new(784, 256).init(dev)?)
            .add("relu1", ReLU)
            .add("fc2", LinearConfig::new(256, 256).init(dev)?)
            .add("relu2", ReLU)
            .add("fc3", LinearConfig::new(256, 10).init(dev)?))
    }
}

/// The network of PyTorch's MNIST example (`examples/mnist/main.py`, `Net`) for
/// [N, 1, 28, 28] images: conv1 1->32 k3, ReLU, conv2 32->64 k3, ReLU, 2 x 2 max-pool,
/// dropout1 (p 0.25), flatten 9216, fc1 9216->128, ReLU, dropout2 (p 0.5), fc2 128->10,
/// log_softmax over the classes. It returns log-probabilities, so it trains with
/// [`Tensor::nll_loss`](crate::Tensor::nll_loss) as the example does (and Adadelta, lr 1.0).
/// Parameters `conv1.weight`, `conv1.bias`, `conv2.*`, `fc1.*`, `fc2.*`; the dropouts follow
/// [`Module::set_training`](crate::nn::Module::set_training).
pub struct MnistNet;

impl MnistNet {
    /// The model with PyTorch's default initialisation from the device's seeded generator, in
    /// training mode.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor, Reduction, models::MnistNet, nn::Module};
    /// let dev = Device::new()?;
    /// let mut model = MnistNet::build(&dev)?;
    /// model.set_training(false); // dropout off
    /// let log_probs = model.forward(&Tensor::zeros(&dev, &[2, 1, 28, 28])?)?;
    /// assert_eq!(log_probs.shape(), &[2, 10]);
    /// let loss = log_probs.nll_loss(&[3usize, 7][..], Reduction::Mean)?;
    /// assert!(loss.item()? > 0.0);
    /// assert_eq!(model.num_parameters(), 1_199_882);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn build(dev: &Device) -> Result<Sequential> {
        Ok(Sequential::new()
            .add("conv1", Conv2dConfig::new(1, 32, 3).init(dev)?)
            .add("relu1", ReLU)
            .add("conv2", Conv2dConfig::new(32, 64, 3).init(dev)?)
            .add("relu2", ReLU)
            .add("pool", MaxPool2d::new(2))
            .add("dropout1", Dropout::new(0.25))
            .add("flatten", Flatten)
            .add("fc1", LinearConfig::new(9216, 128).init(dev)?)
            .add("relu3", ReLU)
            .add("dropout2", Dropout::new(0.5))
            .add("fc2", LinearConfig::new(128, 10).init(dev)?)
            .add("log_softmax", LogSoftmax::new(1)))
    }
}

/// A VGG-style net for [N, 3, 32, 32] images (CIFAR-10), as torchvision's VGG names its
/// layers. Exact layout (3 x 3 convolutions have padding 1 and no bias, the BatchNorm's shift
/// taking its place):
///
/// | name | layer | output |
/// |---|---|---|
/// | `features.0` | Conv2d 3->32 k3 p1 | 32 x 32 x 32 |
/// | `features.1` | BatchNorm2d(32) | |
/// | `features.2` | ReLU | |
/// | `features.3` | Conv2d 32->32 k3 p1 | 32 x 32 x 32 |
/// | `features.4` | BatchNorm2d(32) | |
/// | `features.5` | ReLU | |
/// | `features.6` | MaxPool2d 2 | 32 x 16 x 16 |
/// | `features.7` | Conv2d 32->64 k3 p1 | 64 x 16 x 16 |
/// | `features.8` | BatchNorm2d(64) | |
/// | `features.9` | ReLU | |
/// | `features.10` | Conv2d 64->64 k3 p1 | 64 x 16 x 16 |
/// | `features.11` | BatchNorm2d(64) | |
/// | `features.12` | ReLU | |
/// | `features.13` | MaxPool2d 2 | 64 x 8 x 8 |
/// | `flatten` | Flatten | 4096 |
/// | `classifier` | Linear 4096->10 | 10 |
///
/// Parameters `features.0.weight`, `features.1.weight`, `features.1.bias`, ...,
/// `classifier.weight`, `classifier.bias`; buffers the BatchNorms' `running_mean` and
/// `running_var`.
pub struct VggNet;

impl VggNet {
    /// The model with PyTorch's default initialisation from the device's seeded generator, in
    /// training mode (batch statistics; [`Module::set_training`](crate::nn::Module::set_training)
    /// `(false)` for the running ones).
    ///
    /// ```
    /// # use webgrad::{Device, Tensor, models::VggNet, nn::Module};
    /// let dev = Device::new()?;
    /// let mut model = VggNet::build(&dev)?;
    /// model.set_training(false);
    /// let logits = model.forward(&Tensor::rand(&dev, &[2, 3, 32, 32])?)?;
    /// assert_eq!(logits.shape(), &[2, 10]);
    /// assert_eq!(model.named_buffers().len(), 8);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn build(dev: &Device) -> Result<Sequential> {
        let conv = |i: usize, o: usize| {
            Conv2dConfig::new(i, o, 3)
                .with_padding(1)
                .with_bias(false)
                .init(dev)
        };
        let features = Sequential::new()
            .add("0", conv(3, 32)?)
            .add("1", BatchNorm2d::new(dev, 32)?)
            .add("2", ReLU)
            .add("3", conv(32, 32)?)
            .add("4", BatchNorm2d::new(dev, 32)?)
            .add("5", ReLU)
            .add("6", MaxPool2d::new(2))
            .add("7", conv(32, 64)?)
            .add("8", BatchNorm2d::new(dev, 64)?)
            .add("9", ReLU)
            .add("10", conv(64, 64)?)
            .add("11", BatchNorm2d::new(dev, 64)?)
            .add("12", ReLU)
            .add("13", MaxPool2d::new(2));
        Ok(Sequential::new()
            .add("features", features)
            .add("flatten", Flatten)
            .add("classifier", LinearConfig::new(64 * 8 * 8, 10).init(dev)?))
    }
}
