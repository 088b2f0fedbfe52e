//! The layers: each wraps one op (or a few) and owns its parameters.

use super::init::{kaiming_bound, uniform};
use super::{Counter, Module};
use crate::device::Device;
use crate::error::Result;
use crate::ops::batch_norm::BatchNormArgs;
use crate::ops::conv::Conv2dParams;
use crate::ops::pad::PadMode;
use crate::ops::pool::Pool2dParams;
use crate::ops::unary::GeluApproximate;
use crate::tensor::Tensor;
use std::sync::atomic::Ordering;

/// Options of [`Linear`] with PyTorch's defaults (bias on).
#[derive(Clone, Copy, Debug)]
pub struct LinearConfig {
    /// Size of each input row.
    pub in_features: usize,
    /// Size of each output row.
    pub out_features: usize,
    /// Whether the layer adds a learned bias (default true).
    pub bias: bool,
}

impl LinearConfig {
    /// A layer from `in_features` to `out_features`, with a bias.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        LinearConfig {
            in_features,
            out_features,
            bias: true,
        }
    }
    /// With or without the bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// The layer, initialised as PyTorch does, from the device's seeded generator.
    pub fn init(self, dev: &Device) -> Result<Linear> {
        Linear::new(dev, self)
    }
}

/// y = x W^T + b, weight [out, in].
pub struct Linear {
    /// `[out_features, in_features]`.
    pub weight: Tensor,
    /// `[out_features]`, if the layer has one.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// The layer described by `c` (the same as `c.init(dev)`).
    pub fn new(dev: &Device, c: LinearConfig) -> Result<Linear> {
        let bound = kaiming_bound(c.in_features);
        let weight = uniform(dev, &[c.out_features, c.in_features], bound)?;
        let bias = if c.bias {
            Some(uniform(dev, &[c.out_features], bound)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("Linear({}, {})", s[1], s[0])
    }
}

/// What [`Conv2d`]'s padding holds (PyTorch's `padding_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PaddingMode {
    /// Zeros (`"zeros"`, the default), inside the convolution kernel.
    #[default]
    Zeros,
    /// The input mirrored at its edges (`"reflect"`; padding < the input's size).
    Reflect,
    /// The edge values repeated (`"replicate"`).
    Replicate,
    /// The input wrapped around (`"circular"`; padding <= the input's size).
    Circular,
}

impl PaddingMode {
    /// The [`Tensor::pad`] mode that pads explicitly before the convolution, `None` for zeros.
    fn pad_mode(self) -> Option<PadMode> {
        match self {
            PaddingMode::Zeros => None,
            PaddingMode::Reflect => Some(PadMode::Reflect),
            PaddingMode::Replicate => Some(PadMode::Replicate),
            PaddingMode::Circular => Some(PadMode::Circular),
        }
    }
}

/// Options of [`Conv2d`] with PyTorch's defaults: stride 1, no padding (zeros mode), bias on.
#[derive(Clone, Copy, Debug)]
pub struct Conv2dConfig {
    /// Channels of the input.
    pub in_channels: usize,
    /// Channels of the output (the number of kernels).
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Stride, padding, dilation and groups.
    pub params: Conv2dParams,
    /// Whether the layer adds a learned bias (default true).
    pub bias: bool,
    /// What the padding holds (default zeros).
    pub padding_mode: PaddingMode,
}

impl Conv2dConfig {
    /// A `kernel` x `kernel` convolution from `in_channels` to `out_channels`, stride 1, no
    /// padding, with a bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Conv2dConfig {
            in_channels,
            out_channels,
            kernel: (kernel, kernel),
            params: Conv2dParams::default(),
            bias: true,
            padding_mode: PaddingMode::Zeros,
        }
    }
    /// Padding `p` on every side (zeros unless [`with_padding_mode`](Self::with_padding_mode)
    /// says otherwise).
    pub fn with_padding(mut self, p: usize) -> Self {
        self.params.padding = (p, p);
        self
    }
    /// Stride `s` along both axes.
    pub fn with_stride(mut self, s: usize) -> Self {
        self.params.stride = (s, s);
        self
    }
    /// Dilation `d` along both axes.
    pub fn with_dilation(mut self, d: usize) -> Self {
        self.params.dilation = (d, d);
        self
    }
    /// `g` groups: input and output channels split into `g` independent convolutions.
    pub fn with_groups(mut self, g: usize) -> Self {
        self.params.groups = g;
        self
    }
    /// With or without the bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
    /// What the padding holds: as PyTorch, a mode other than zeros pads the input with
    /// [`Tensor::pad`] and convolves with no padding.
    pub fn with_padding_mode(mut self, mode: PaddingMode) -> Self {
        self.padding_mode = mode;
        self
    }
    /// The layer, initialised as PyTorch does, from the device's seeded generator.
    pub fn init(self, dev: &Device) -> Result<Conv2d> {
        Conv2d::new(dev, self)
    }
}

/// 2-D convolution, weight [C_out, C_in/groups, KH, KW].
pub struct Conv2d {
    /// `[out_channels, in_channels / groups, kernel height, kernel width]`.
    pub weight: Tensor,
    /// `[out_channels]`, if the layer has one.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub params: Conv2dParams,
    /// What the padding holds.
    pub padding_mode: PaddingMode,
}

impl Conv2d {
    /// The layer described by `c` (the same as `c.init(dev)`).
    pub fn new(dev: &Device, c: Conv2dConfig) -> Result<Conv2d> {
        let groups = c.params.groups.max(1);
        if !c.in_channels.is_multiple_of(groups) || !c.out_channels.is_multiple_of(groups) {
            return Err(crate::Error::Invalid(format!(
                "Conv2d: groups {groups} must divide in_channels {} and out_channels {}",
                c.in_channels, c.out_channels
            )));
        }
        let fan_in = c.in_channels / groups * c.kernel.0 * c.kernel.1;
        let bound = kaiming_bound(fan_in);
        let shape = [
            c.out_channels,
            c.in_channels / groups,
            c.kernel.0,
            c.kernel.1,
        ];
        let weight = uniform(dev, &shape, bound)?;
        let bias = if c.bias {
            Some(uniform(dev, &[c.out_channels], bound)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            params: c.params,
            padding_mode: c.padding_mode,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Some(mode) = self.padding_mode.pad_mode() else {
            return x.conv2d(&self.weight, self.bias.as_ref(), self.params);
        };
        let (ph, pw) = self.params.padding;
        let params = Conv2dParams {
            padding: (0, 0),
            ..self.params
        };
        x.pad(&[pw, pw, ph, ph], mode, 0.0)?
            .conv2d(&self.weight, self.bias.as_ref(), params)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push(("bias".to_string(), b.clone()));
        }
        v
    }
    fn kernel_stride(&self) -> (usize, usize) {
        let k = self.weight.shape()[2];
        (self.params.dilation.0 * (k - 1) + 1, self.params.stride.0)
    }
    fn describe(&self) -> String {
        let s = self.weight.shape();
        let p = &self.params;
        let mode = match self.padding_mode.pad_mode() {
            Some(m) => format!(", {}", m.name()),
            None => String::new(),
        };
        format!(
            "Conv2d({}, {}, k={}x{}, s={}, p={}{mode})",
            s[1] * p.groups,
            s[0],
            s[2],
            s[3],
            p.stride.0,
            p.padding.0
        )
    }
}

/// Max pooling, PyTorch's `MaxPool2d`: a `k` x `k` window, stride `k`, no padding, dilation
/// 1 and rounding down by default, set otherwise by the `with_` methods. (PyTorch's
/// `return_indices` has no place in [`Module::forward`]'s one output: use
/// [`Tensor::max_pool2d_with_indices`].)
pub struct MaxPool2d(pub Pool2dParams);

impl MaxPool2d {
    /// A k x k window with stride k.
    pub fn new(k: usize) -> Self {
        MaxPool2d(Pool2dParams::new(k))
    }
    /// Padding `p` (counting as -inf) on every side.
    pub fn with_padding(self, p: usize) -> Self {
        MaxPool2d(self.0.padding(p))
    }
    /// Dilation `d` along both axes: the window's taps `d` pixels apart.
    pub fn with_dilation(self, d: usize) -> Self {
        MaxPool2d(self.0.dilation(d))
    }
}

/// The builder methods both pooling layers have.
macro_rules! pool_options {
    ($layer:ident) => {
        impl $layer {
            /// Stride `s` along both axes.
            pub fn with_stride(self, s: usize) -> Self {
                $layer(self.0.stride(s))
            }
            /// Whether the output size rounds up (PyTorch's `ceil_mode`).
            pub fn with_ceil_mode(self, yes: bool) -> Self {
                $layer(self.0.ceil_mode(yes))
            }
        }
    };
}
pool_options!(MaxPool2d);
pool_options!(AvgPool2d);

/// The summary's name of a pooling layer: kernel and stride, and the options that differ
/// from the defaults.
fn describe_pool(name: &str, p: &Pool2dParams) -> String {
    let mut s = format!("{name}(k={}, s={}", p.kernel.0, p.stride.0);
    if p.padding != (0, 0) {
        s += &format!(", p={}", p.padding.0);
    }
    if p.dilation != (1, 1) {
        s += &format!(", d={}", p.dilation.0);
    }
    if p.ceil_mode {
        s += ", ceil_mode=true";
    }
    s + ")"
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(self.0)
    }
    fn kernel_stride(&self) -> (usize, usize) {
        (
            self.0.dilation.0 * self.0.kernel.0.saturating_sub(1) + 1,
            self.0.stride.0,
        )
    }
    fn describe(&self) -> String {
        describe_pool("MaxPool2d", &self.0)
    }
}

/// Average pooling, PyTorch's `AvgPool2d`: a `k` x `k` window, stride `k`, no padding,
/// rounding down, padded zeros counted, set otherwise by the `with_` methods.
pub struct AvgPool2d(pub Pool2dParams);

impl AvgPool2d {
    /// A `k` x `k` window with stride `k`, no padding.
    pub fn new(k: usize) -> Self {
        AvgPool2d(Pool2dParams::new(k))
    }
    /// Zero padding `p` on every side.
    pub fn with_padding(self, p: usize) -> Self {
        AvgPool2d(self.0.padding(p))
    }
    /// Whether padded zeros count in the average (PyTorch's `count_include_pad`).
    pub fn with_count_include_pad(self, yes: bool) -> Self {
        AvgPool2d(self.0.count_include_pad(yes))
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.avg_pool2d(self.0)
    }
    fn kernel_stride(&self) -> (usize, usize) {
        (self.0.kernel.0, self.0.stride.0)
    }
    fn describe(&self) -> String {
        describe_pool("AvgPool2d", &self.0)
    }
}

/// Adaptive average pooling, PyTorch's `AdaptiveAvgPool2d`: every input plane averaged to
/// the output size (height, width) over PyTorch's bins; `AdaptiveAvgPool2d::new(1)` is the
/// global average pooling that ends a ResNet. Its windows depend on the input's size, so the
/// summary's receptive field does not count them.
pub struct AdaptiveAvgPool2d(pub (usize, usize));

impl AdaptiveAvgPool2d {
    /// An `s` x `s` output.
    pub fn new(s: usize) -> Self {
        AdaptiveAvgPool2d((s, s))
    }
}

impl Module for AdaptiveAvgPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.adaptive_avg_pool2d(self.0)
    }
    fn describe(&self) -> String {
        format!("AdaptiveAvgPool2d(output_size={:?})", self.0)
    }
}

/// An activation module calling `Tensor::$method`: a unit struct, or one with the method's
/// parameters as fields, PyTorch's defaults as its `Default`, and PyTorch's repr as its summary
/// name (`LeakyReLU(negative_slope=0.01)`).
macro_rules! activation {
    ($name:ident, $method:ident) => {
        #[doc = concat!("The `", stringify!($method), "` activation.")]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                x.$method()
            }
            fn describe(&self) -> String {
                stringify!($name).to_string()
            }
        }
    };
    ($name:ident, $method:ident { $($(#[$doc:meta])* $field:ident = $default:expr),+ }) => {
        #[doc = concat!("The [`Tensor::", stringify!($method), "`] activation.")]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $($(#[$doc])* pub $field: f32),+
        }

        impl $name {
            /// With the given parameters, in the tensor method's order.
            pub fn new($($field: f32),+) -> Self {
                $name { $($field),+ }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new($($default),+)
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                x.$method($(self.$field),+)
            }
            fn describe(&self) -> String {
                let fields = [$(format!(concat!(stringify!($field), "={}"), self.$field)),+];
                format!("{}({})", stringify!($name), fields.join(", "))
            }
        }
    };
}

activation!(ReLU, relu);
activation!(Tanh, tanh);
activation!(Sigmoid, sigmoid);
activation!(SiLU, silu);
activation!(LeakyReLU, leaky_relu {
    /// The slope below 0 (PyTorch's default 0.01).
    negative_slope = 0.01
});
activation!(ELU, elu {
    /// The scale of the negative side, `alpha * (e^x - 1)` (PyTorch's default 1).
    alpha = 1.0
});
activation!(Softplus, softplus {
    /// PyTorch's default 1 (0 is an error in `forward`).
    beta = 1.0,
    /// Above this `beta * x` the output is `x` (PyTorch's default 20).
    threshold = 20.0
});
activation!(Hardtanh, hardtanh {
    /// The lower bound (PyTorch's default -1).
    min_val = -1.0,
    /// The upper bound (PyTorch's default 1); below `min_val` is an error in `forward`.
    max_val = 1.0
});

/// The Gaussian error linear unit ([`Tensor::gelu`]), exact by default as in PyTorch.
#[derive(Clone, Copy, Debug, Default)]
pub struct GELU {
    /// Exact (default) or the tanh approximation.
    pub approximate: GeluApproximate,
}

impl GELU {
    /// Exact or by the tanh approximation.
    pub fn new(approximate: GeluApproximate) -> Self {
        GELU { approximate }
    }
}

impl Module for GELU {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.gelu(self.approximate)
    }
    fn describe(&self) -> String {
        let approximate = match self.approximate {
            GeluApproximate::None => "none",
            GeluApproximate::Tanh => "tanh",
        };
        format!("GELU(approximate='{approximate}')")
    }
}

/// Flattens all dims but the batch dim (`torch.nn.Flatten()`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.flatten(1, -1)
    }
    fn describe(&self) -> String {
        "Flatten".to_string()
    }
}

/// Dropout with probability `p` in training mode, identity in eval mode.
pub struct Dropout {
    /// The probability of zeroing an element in training.
    pub p: f32,
    training: bool,
}

impl Dropout {
    /// Dropout with probability `p` (in [0, 1)).
    pub fn new(p: f32) -> Self {
        Dropout { p, training: true }
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.dropout(self.p, self.training)
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn is_training(&self) -> Option<bool> {
        Some(self.training)
    }
    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}

/// Defines the batch-normalization layer `$name`, whose forward runs `Tensor::$method`: the
/// layers differ only in the input ranks they accept.
macro_rules! batch_norm_layer {
    ($(#[doc = $doc:literal])* $name:ident, $method:ident) => {
$(#[doc = $doc])*
pub struct $name {
    /// The learned scale, per channel (initially 1).
    pub weight: Tensor,
    /// The learned shift, per channel (initially 0).
    pub bias: Tensor,
    /// The running mean used in eval mode (a buffer, saved with the model).
    pub running_mean: Tensor,
    /// The running (unbiased) variance used in eval mode (a buffer).
    pub running_var: Tensor,
    /// How fast the running statistics follow the batch's (PyTorch's default 0.1).
    pub momentum: f32,
    /// Added to the variance before the square root (default 1e-5).
    pub eps: f32,
    /// Training-mode forwards so far (PyTorch's `num_batches_tracked`, saved as int64).
    pub num_batches_tracked: Counter,
    training: bool,
}

impl $name {
    /// Batch normalisation over `channels` channels with PyTorch's defaults.
    pub fn new(dev: &Device, channels: usize) -> Result<$name> {
        Ok($name {
            weight: Tensor::ones(dev, &[channels])?.requires_grad(),
            bias: Tensor::zeros(dev, &[channels])?.requires_grad(),
            running_mean: Tensor::zeros(dev, &[channels])?,
            running_var: Tensor::ones(dev, &[channels])?,
            momentum: 0.1,
            eps: 1e-5,
            num_batches_tracked: Counter::default(),
            training: true,
        })
    }
}

impl Module for $name {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.$method(BatchNormArgs {
            running_mean: Some(&self.running_mean),
            running_var: Some(&self.running_var),
            weight: Some(&self.weight),
            bias: Some(&self.bias),
            training: self.training,
            momentum: self.momentum,
            eps: self.eps,
        })?;
        if self.training {
            self.num_batches_tracked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(y)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            ("weight".to_string(), self.weight.clone()),
            ("bias".to_string(), self.bias.clone()),
        ]
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        vec![
            ("running_mean".to_string(), self.running_mean.clone()),
            ("running_var".to_string(), self.running_var.clone()),
        ]
    }
    fn named_counters(&self) -> Vec<(String, Counter)> {
        vec![(
            "num_batches_tracked".to_string(),
            self.num_batches_tracked.clone(),
        )]
    }
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn is_training(&self) -> Option<bool> {
        Some(self.training)
    }
    fn describe(&self) -> String {
        format!("{}({})", stringify!($name), self.weight.numel())
    }
}
    };
}

batch_norm_layer! {
    /// Batch normalization over the channels of an NCHW input, with affine weight and bias
    /// and running statistics.
    BatchNorm2d, batch_norm2d
}

batch_norm_layer! {
    /// Batch normalization over the channels of an [N, C] or [N, C, L] input, with affine
    /// weight and bias and running statistics (PyTorch's `BatchNorm1d`).
    BatchNorm1d, batch_norm1d
}

/// `(weight, bias)` of an elementwise affine over `shape`: ones and zeros requiring grad, or
/// none.
fn affine_parameters(
    dev: &Device,
    shape: &[usize],
    affine: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    if !affine {
        return Ok((None, None));
    }
    Ok((
        Some(Tensor::ones(dev, shape)?.requires_grad()),
        Some(Tensor::zeros(dev, shape)?.requires_grad()),
    ))
}

/// The present ones of `weight` and `bias` under their `state_dict` names.
fn affine_named(weight: &Option<Tensor>, bias: &Option<Tensor>) -> Vec<(String, Tensor)> {
    [("weight", weight), ("bias", bias)]
        .into_iter()
        .filter_map(|(name, t)| t.as_ref().map(|t| (name.to_string(), t.clone())))
        .collect()
}

/// Layer normalization over the trailing `normalized_shape` dimensions (PyTorch's
/// `LayerNorm`), with an elementwise affine of that shape.
pub struct LayerNorm {
    /// The dimensions normalized over: the input's trailing ones.
    pub normalized_shape: Vec<usize>,
    /// Added to the variance before the square root (default 1e-5).
    pub eps: f32,
    /// The learned scale of shape `normalized_shape` (initially 1); `None` without the affine.
    pub weight: Option<Tensor>,
    /// The learned shift (initially 0); `None` without the affine.
    pub bias: Option<Tensor>,
}

impl LayerNorm {
    /// Layer normalization with PyTorch's defaults: eps 1e-5, `elementwise_affine` on.
    pub fn new(dev: &Device, normalized_shape: &[usize]) -> Result<LayerNorm> {
        LayerNorm::with_options(dev, normalized_shape, 1e-5, true)
    }

    /// Layer normalization with the given `eps` and, if `elementwise_affine`, a learned
    /// weight and bias.
    pub fn with_options(
        dev: &Device,
        normalized_shape: &[usize],
        eps: f32,
        elementwise_affine: bool,
    ) -> Result<LayerNorm> {
        let (weight, bias) = affine_parameters(dev, normalized_shape, elementwise_affine)?;
        Ok(LayerNorm {
            normalized_shape: normalized_shape.to_vec(),
            eps,
            weight,
            bias,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(
            &self.normalized_shape,
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.eps,
        )
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        affine_named(&self.weight, &self.bias)
    }
    fn describe(&self) -> String {
        format!("LayerNorm({:?}, eps={})", self.normalized_shape, self.eps)
    }
}

/// Group normalization of [N, C, *] inputs (PyTorch's `GroupNorm`), with a per-channel affine.
pub struct GroupNorm {
    /// Groups the channels are split into.
    pub num_groups: usize,
    /// Channels of the input (a multiple of `num_groups`).
    pub num_channels: usize,
    /// Added to the variance before the square root (default 1e-5).
    pub eps: f32,
    /// The learned scale per channel (initially 1); `None` without the affine.
    pub weight: Option<Tensor>,
    /// The learned shift per channel (initially 0); `None` without the affine.
    pub bias: Option<Tensor>,
}

impl GroupNorm {
    /// Group normalization with PyTorch's defaults: eps 1e-5, `affine` on. Errs unless
    /// `num_channels` is a multiple of `num_groups`.
    pub fn new(dev: &Device, num_groups: usize, num_channels: usize) -> Result<GroupNorm> {
        GroupNorm::with_options(dev, num_groups, num_channels, 1e-5, true)
    }

    /// Group normalization with the given `eps` and, if `affine`, a learned weight and bias.
    pub fn with_options(
        dev: &Device,
        num_groups: usize,
        num_channels: usize,
        eps: f32,
        affine: bool,
    ) -> Result<GroupNorm> {
        if num_groups == 0 || !num_channels.is_multiple_of(num_groups) {
            return Err(crate::error::Error::Invalid(format!(
                "GroupNorm: num_channels {num_channels} is not divisible by num_groups \
                 {num_groups}"
            )));
        }
        let (weight, bias) = affine_parameters(dev, &[num_channels], affine)?;
        Ok(GroupNorm {
            num_groups,
            num_channels,
            eps,
            weight,
            bias,
        })
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.group_norm(
            self.num_groups,
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.eps,
        )
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        affine_named(&self.weight, &self.bias)
    }
    fn describe(&self) -> String {
        format!("GroupNorm({}, {})", self.num_groups, self.num_channels)
    }
}
