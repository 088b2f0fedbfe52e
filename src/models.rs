//! Ready-made models.

use crate::device::Device;
use crate::error::Result;
use crate::nn::{
    AvgPool2d, Conv2dConfig, Flatten, LinearConfig, MaxPool2d, ReLU, Sequential, Tanh,
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
