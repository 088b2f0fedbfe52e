//! # webgrad
//!
//! A deep-learning framework whose every kernel is a WebGPU (WGSL) compute shader, so it trains
//! on any Vulkan, Metal, DX12 or GL GPU through `wgpu`, or on a software adapter (lavapipe).
//!
//! ```
//! use webgrad::{Device, Tensor};
//! let dev = Device::new()?;
//! let x = Tensor::from_vec(&dev, vec![-2.0], &[1])?.requires_grad();
//! let y = Tensor::from_vec(&dev, vec![5.0], &[1])?.requires_grad();
//! let z = Tensor::from_vec(&dev, vec![-4.0], &[1])?.requires_grad();
//! let f = x.add(&y)?.mul(&z)?; // (x + y) * z = -12
//! f.backward()?;
//! assert_eq!(f.to_vec()?, vec![-12.0]);
//! assert_eq!(x.grad().unwrap().to_vec()?, vec![-4.0]);
//! assert_eq!(z.grad().unwrap().to_vec()?, vec![3.0]);
//! # Ok::<(), webgrad::Error>(())
//! ```
//!
//! Layout: an op's Rust side is `src/ops/NAME.rs`, its shader `shaders/NAME.wgsl` (forward and
//! backward entry points side by side) and its tests `tests/NAME.rs`. The tape (`src/tape.rs`)
//! records ops and replays them in reverse in `backward()`.

#![warn(missing_docs)]

mod backend;
mod background;
pub mod data;
mod device;
#[doc(hidden)]
pub mod diagnostics;
mod error;
mod fusion;
mod gradcheck;
pub mod graph;
mod kernel;
pub mod models;
pub mod nn;
mod ops;
pub mod optim;
mod platform;
mod pool;
mod profile;
mod rng;
mod shape;
mod tape;
mod tensor;
pub mod weights;

pub use backend::{AdapterClass, Limits};
pub use device::{Device, DeviceInfo, DeviceOptions};
pub use error::{Error, Result};
pub use gradcheck::{gradcheck, gradcheck_with, GradcheckOptions, GradcheckReport};
pub use ops::batch_norm::BatchNormArgs;
pub use ops::conv::{conv2d_output_size, receptive_field, Conv2dParams};
pub use ops::index::Indices;
pub use ops::loss::{ClassTargets, CrossEntropyOptions, NllLossOptions, Reduction};
pub use ops::pad::PadMode;
pub use ops::pool::Pool2dParams;
pub use ops::unary::GeluApproximate;
pub use rng::Rng;
pub use tape::{is_grad_enabled, no_grad, NoGradGuard};
pub use tensor::Tensor;

// The guide's pages (docs/*.md), each Rust block a doc test.
#[cfg(doctest)]
pub mod guide;
