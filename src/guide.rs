//! The guide in `docs/`, compiled only for doc tests: each page's Rust blocks run with
//! `cargo test --release --doc`, so the guide's code cannot drift from the API.

#[doc = include_str!("../docs/README.md")]
pub struct GuideIndex;

#[doc = include_str!("../docs/01-tensors-and-devices.md")]
pub struct GuideTensorsAndDevices;

#[doc = include_str!("../docs/02-losses.md")]
pub struct GuideLosses;

#[doc = include_str!("../docs/03-gradient-descent.md")]
pub struct GuideGradientDescent;

#[doc = include_str!("../docs/04-differentiation.md")]
pub struct GuideDifferentiation;

#[doc = include_str!("../docs/05-computational-graphs.md")]
pub struct GuideComputationalGraphs;

#[doc = include_str!("../docs/06-convolutions-and-pooling.md")]
pub struct GuideConvolutionsAndPooling;

#[doc = include_str!("../docs/07-lenet5.md")]
pub struct GuideLeNet5;
