//! The padding layers with PyTorch's names: `ZeroPad2d`, `ConstantPad2d`, `ReflectionPad2d`,
//! `ReplicationPad2d` and `CircularPad2d`, each a call of [`Tensor::pad`] on the last two
//! dims of a [C, H, W] or [N, C, H, W] input.

use super::Module;
use crate::error::Result;
use crate::ops::pad::PadMode;
use crate::tensor::Tensor;

/// PyTorch's repr of the padding: `(left, right, top, bottom)`.
fn sides(p: &[usize; 4]) -> String {
    format!("({}, {}, {}, {})", p[0], p[1], p[2], p[3])
}

/// Padding layers that fill the border from the input.
macro_rules! pad_layer {
    ($(#[$doc:meta])* $name:ident, $mode:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            /// (left, right, top, bottom).
            pub padding: [usize; 4],
        }

        impl $name {
            /// `p` on every side.
            pub fn new(p: usize) -> Self {
                $name { padding: [p; 4] }
            }
            /// (left, right, top, bottom), as PyTorch's 4-tuple.
            pub fn sides(padding: [usize; 4]) -> Self {
                $name { padding }
            }
        }

        impl Module for $name {
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                x.pad(&self.padding, $mode, 0.0)
            }
            fn describe(&self) -> String {
                format!("{}({})", stringify!($name), sides(&self.padding))
            }
        }
    };
}

pad_layer!(
    /// Pads with zeros.
    ZeroPad2d,
    PadMode::Constant
);
pad_layer!(
    /// Pads with the input mirrored at its edges (each pad less than the size it pads).
    ReflectionPad2d,
    PadMode::Reflect
);
pad_layer!(
    /// Pads with the edge values repeated.
    ReplicationPad2d,
    PadMode::Replicate
);
pad_layer!(
    /// Pads with the input wrapped around (each pad at most the size it pads).
    CircularPad2d,
    PadMode::Circular
);

/// Pads with a constant value.
#[derive(Clone, Copy, Debug)]
pub struct ConstantPad2d {
    /// (left, right, top, bottom).
    pub padding: [usize; 4],
    /// The value of the border.
    pub value: f32,
}

impl ConstantPad2d {
    /// `p` on every side.
    pub fn new(p: usize, value: f32) -> Self {
        ConstantPad2d {
            padding: [p; 4],
            value,
        }
    }
    /// (left, right, top, bottom), as PyTorch's 4-tuple.
    pub fn sides(padding: [usize; 4], value: f32) -> Self {
        ConstantPad2d { padding, value }
    }
}

impl Module for ConstantPad2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.pad(&self.padding, PadMode::Constant, self.value)
    }
    fn describe(&self) -> String {
        format!(
            "ConstantPad2d(padding={}, value={})",
            sides(&self.padding),
            self.value
        )
    }
}
