//! ResNet-20 for CIFAR-sized images (He et al. 2016, section 4.2), with the names of the
//! common PyTorch CIFAR ResNet (`conv1`, `bn1`, `layer1.0.conv1`, ..., `linear`).

use crate::device::Device;
use crate::error::{Error, Result};
use crate::graph::scope;
use crate::nn::{BatchNorm2d, Conv2d, Conv2dConfig, Counter, Linear, LinearConfig, Module};
use crate::ops::pool::Pool2dParams;
use crate::tensor::Tensor;

/// A 3 x 3 convolution with padding 1 and no bias (the BatchNorm after it shifts).
fn conv3x3(dev: &Device, in_channels: usize, out_channels: usize, stride: usize) -> Result<Conv2d> {
    Conv2dConfig::new(in_channels, out_channels, 3)
        .with_stride(stride)
        .with_padding(1)
        .with_bias(false)
        .init(dev)
}

/// `prefix.name` for each of a child's named tensors.
fn prefixed<T>(prefix: &str, items: Vec<(String, T)>) -> Vec<(String, T)> {
    items
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
}

/// The residual block of ResNet-20: conv1 (3 x 3, stride 1 or 2), bn1, ReLU, conv2 (3 x 3),
/// bn2, plus the shortcut, then ReLU. The shortcut is the identity ("option A" of the paper):
/// where the block halves the resolution and widens the channels, it takes every second pixel
/// of each row and column (a 1 x 1 max-pool of stride 2) and pads the new channels with zeros,
/// half before and half after the input's (as the common PyTorch CIFAR ResNet's
/// `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`), so it has no
/// parameters. Parameters `conv1.weight`, `bn1.weight`, `bn1.bias`, `conv2.weight`,
/// `bn2.weight`, `bn2.bias`.
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    stride: usize,
    /// Zero channels added before (and after) the input's on the shortcut.
    pad_channels: usize,
}

impl BasicBlock {
    /// A block from `in_channels` to `out_channels` whose first convolution has `stride`.
    /// Where the shape changes, `out_channels` must be `in_channels` plus an even number
    /// (the shortcut pads half of the new channels on each side) and `stride` 1 or 2.
    pub fn new(
        dev: &Device,
        in_channels: usize,
        out_channels: usize,
        stride: usize,
    ) -> Result<BasicBlock> {
        let same = stride == 1 && in_channels == out_channels;
        if !same
            && (out_channels < in_channels
                || !(out_channels - in_channels).is_multiple_of(2)
                || stride == 0
                || stride > 2)
        {
            return Err(Error::Invalid(format!(
                "BasicBlock: the zero-padding shortcut needs stride 1 or 2 and out_channels = \
                 in_channels + an even number, got {in_channels} -> {out_channels}, stride \
                 {stride}"
            )));
        }
        Ok(BasicBlock {
            conv1: conv3x3(dev, in_channels, out_channels, stride)?,
            bn1: BatchNorm2d::new(dev, out_channels)?,
            conv2: conv3x3(dev, out_channels, out_channels, 1)?,
            bn2: BatchNorm2d::new(dev, out_channels)?,
            stride,
            pad_channels: (out_channels - in_channels) / 2,
        })
    }

    /// The parameter-free shortcut: `x` itself, or subsampled and zero-padded.
    fn shortcut(&self, x: &Tensor) -> Result<Tensor> {
        let mut s = x.clone();
        if self.stride != 1 {
            s = s.max_pool2d(Pool2dParams::new(1).stride(self.stride))?;
        }
        if self.pad_channels == 0 {
            return Ok(s);
        }
        let shape = s.shape();
        let zeros = Tensor::zeros(
            s.device(),
            &[shape[0], self.pad_channels, shape[2], shape[3]],
        )?;
        Tensor::cat(&[&zeros, &s, &zeros], 1)
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.bn1.forward(&self.conv1.forward(x)?)?.relu()?;
        let h = self.bn2.forward(&self.conv2.forward(&h)?)?;
        h.add(&self.shortcut(x)?)?.relu()
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = prefixed("conv1", self.conv1.named_parameters());
        v.extend(prefixed("bn1", self.bn1.named_parameters()));
        v.extend(prefixed("conv2", self.conv2.named_parameters()));
        v.extend(prefixed("bn2", self.bn2.named_parameters()));
        v
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut v = prefixed("bn1", self.bn1.named_buffers());
        v.extend(prefixed("bn2", self.bn2.named_buffers()));
        v
    }
    fn named_counters(&self) -> Vec<(String, Counter)> {
        let mut v = prefixed("bn1", self.bn1.named_counters());
        v.extend(prefixed("bn2", self.bn2.named_counters()));
        v
    }
    fn set_training(&mut self, training: bool) {
        self.bn1.set_training(training);
        self.bn2.set_training(training);
    }
    fn is_training(&self) -> Option<bool> {
        self.bn1.is_training()
    }
    fn describe(&self) -> String {
        let w = self.conv1.weight.shape();
        format!("BasicBlock({}, {}, stride={})", w[1], w[0], self.stride)
    }
}

/// ResNet-20 for 32 x 32 images (He et al. 2016, "Deep Residual Learning for Image
/// Recognition", section 4.2): conv1 (3 x 3, 16 channels), bn1, ReLU; three stages
/// (`layer1`, `layer2`, `layer3`) of three [`BasicBlock`]s with 16, 32 and 64 channels, the
/// first block of stages 2 and 3 halving the resolution (stride 2) with the parameter-free
/// zero-padding shortcut ("option A"); global average pooling (a mean over each channel's
/// pixels) and `linear` 64 -> classes. 0.27 M parameters for 10 classes. Names as the common
/// PyTorch CIFAR ResNet's `state_dict`: `conv1.weight`, `bn1.*`,
/// `layer1.0.conv1.weight`, `layer1.0.bn1.running_mean`, ..., `layer3.2.bn2.bias`,
/// `linear.weight`, `linear.bias`.
///
/// Any input size works (the pooling averages whatever resolution is left): 28 x 28
/// Fashion-MNIST images give 7 x 7 maps at the end. Initialisation is PyTorch's default for
/// each layer (not the Kaiming-normal the paper and that PyTorch code apply afterwards).
pub struct ResNet20 {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    layers: Vec<Vec<BasicBlock>>,
    linear: Linear,
}

impl ResNet20 {
    /// The model for images of `in_channels` channels (3 for CIFAR-10, 1 for
    /// Fashion-MNIST) and `num_classes` classes, with PyTorch's default initialisation from
    /// the device's seeded generator, in training mode.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor, models::ResNet20, nn::Module};
    /// let dev = Device::new()?;
    /// let mut model = ResNet20::new(&dev, 3, 10)?;
    /// assert_eq!(model.num_parameters(), 269_722);
    /// model.set_training(false);
    /// let logits = model.forward(&Tensor::rand(&dev, &[2, 3, 32, 32])?)?;
    /// assert_eq!(logits.shape(), &[2, 10]);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn new(dev: &Device, in_channels: usize, num_classes: usize) -> Result<ResNet20> {
        if in_channels == 0 || num_classes == 0 {
            return Err(Error::Invalid(format!(
                "ResNet20: in_channels {in_channels} and num_classes {num_classes} must be \
                 positive"
            )));
        }
        let conv1 = conv3x3(dev, in_channels, 16, 1)?;
        let bn1 = BatchNorm2d::new(dev, 16)?;
        let mut layers = Vec::new();
        let mut channels = 16;
        for (stage, width) in [16, 32, 64].into_iter().enumerate() {
            let mut blocks = Vec::new();
            for b in 0..3 {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(dev, channels, width, stride)?);
                channels = width;
            }
            layers.push(blocks);
        }
        let linear = LinearConfig::new(64, num_classes).init(dev)?;
        Ok(ResNet20 {
            conv1,
            bn1,
            layers,
            linear,
        })
    }

    /// Each block with its `state_dict` prefix (`layer1.0`, ..., `layer3.2`).
    fn blocks(&self) -> impl Iterator<Item = (String, &BasicBlock)> {
        self.layers.iter().enumerate().flat_map(|(s, blocks)| {
            blocks
                .iter()
                .enumerate()
                .map(move |(b, block)| (format!("layer{}.{b}", s + 1), block))
        })
    }
}

impl Module for ResNet20 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 {
            return Err(Error::Shape {
                op: "ResNet20",
                msg: format!("expects [N, C, H, W] images, got {:?}", x.shape()),
            });
        }
        let mut h = scope("conv1", || self.conv1.forward(x))?;
        h = scope("bn1", || self.bn1.forward(&h))?.relu()?;
        for (name, block) in self.blocks() {
            h = scope(&name, || block.forward(&h))?;
        }
        // Global average pooling: the mean of each channel's pixels.
        let s = h.shape().to_vec();
        let pooled = h.reshape(&[s[0], s[1], s[2] * s[3]])?.mean_dim(2, false)?;
        scope("linear", || self.linear.forward(&pooled))
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = prefixed("conv1", self.conv1.named_parameters());
        v.extend(prefixed("bn1", self.bn1.named_parameters()));
        for (name, block) in self.blocks() {
            v.extend(prefixed(&name, block.named_parameters()));
        }
        v.extend(prefixed("linear", self.linear.named_parameters()));
        v
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut v = prefixed("bn1", self.bn1.named_buffers());
        for (name, block) in self.blocks() {
            v.extend(prefixed(&name, block.named_buffers()));
        }
        v
    }
    fn named_counters(&self) -> Vec<(String, Counter)> {
        let mut v = prefixed("bn1", self.bn1.named_counters());
        for (name, block) in self.blocks() {
            v.extend(prefixed(&name, block.named_counters()));
        }
        v
    }
    fn is_training(&self) -> Option<bool> {
        self.bn1.is_training()
    }
    fn set_training(&mut self, training: bool) {
        self.bn1.set_training(training);
        for block in self.layers.iter_mut().flatten() {
            block.set_training(training);
        }
    }
    fn describe(&self) -> String {
        format!(
            "ResNet20({}, {})",
            self.conv1.weight.shape()[1],
            self.linear.weight.shape()[0]
        )
    }
}
