//! The layers: each wraps one op (or a few) and owns its parameters.

use super::init::{kaiming_bound, uniform};
use super::Module;
use crate::device::Device;
use crate::error::Result;
use crate::ops::batch_norm::BatchNormArgs;
use crate::ops::conv::Conv2dParams;
use crate::ops::pool::Pool2dParams;
use crate::ops::unary::GeluApproximate;
use crate::tensor::Tensor;

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

/// Options of [`Conv2d`] with PyTorch's defaults: stride 1, no padding, bias on.
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
        }
    }
    /// Zero padding `p` on every side.
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
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.params)
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
        format!(
            "Conv2d({}, {}, k={}x{}, s={}, p={})",
            s[1] * p.groups,
            s[0],
            s[2],
            s[3],
            p.stride.0,
            p.padding.0
        )
    }
}

/// Max pooling.
pub struct MaxPool2d(pub Pool2dParams);

impl MaxPool2d {
    /// A k x k window with stride k.
    pub fn new(k: usize) -> Self {
        MaxPool2d(Pool2dParams::new(k))
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.max_pool2d(self.0)
    }
    fn kernel_stride(&self) -> (usize, usize) {
        (self.0.kernel.0, self.0.stride.0)
    }
    fn describe(&self) -> String {
        format!("MaxPool2d(k={}, s={})", self.0.kernel.0, self.0.stride.0)
    }
}

/// Average pooling.
pub struct AvgPool2d(pub Pool2dParams);

impl AvgPool2d {
    /// A `k` x `k` window with stride `k`, no padding.
    pub fn new(k: usize) -> Self {
        AvgPool2d(Pool2dParams::new(k))
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
        format!("AvgPool2d(k={}, s={})", self.0.kernel.0, self.0.stride.0)
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
    fn describe(&self) -> String {
        format!("Dropout(p={})", self.p)
    }
}

/// Batch normalization over channels, with affine weight and bias and running statistics.
pub struct BatchNorm2d {
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
    training: bool,
}

impl BatchNorm2d {
    /// Batch normalisation over `channels` channels with PyTorch's defaults.
    pub fn new(dev: &Device, channels: usize) -> Result<BatchNorm2d> {
        Ok(BatchNorm2d {
            weight: Tensor::ones(dev, &[channels])?.requires_grad(),
            bias: Tensor::zeros(dev, &[channels])?.requires_grad(),
            running_mean: Tensor::zeros(dev, &[channels])?,
            running_var: Tensor::ones(dev, &[channels])?,
            momentum: 0.1,
            eps: 1e-5,
            training: true,
        })
    }
}

impl Module for BatchNorm2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.batch_norm2d(BatchNormArgs {
            running_mean: Some(&self.running_mean),
            running_var: Some(&self.running_var),
            weight: Some(&self.weight),
            bias: Some(&self.bias),
            training: self.training,
            momentum: self.momentum,
            eps: self.eps,
        })
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
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
    fn describe(&self) -> String {
        format!("BatchNorm2d({})", self.weight.numel())
    }
}
