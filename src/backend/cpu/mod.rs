//! Kernels for CPU adapters (lavapipe and other software adapters): operands read as vec4
//! texels of rgba32float textures (`texels.rs`, a texel fetch there is a straight gather, a
//! storage load a loop over the SIMD lanes), convolution as an implicit GEMM with images
//! innermost (`conv_implicit.rs`, `shaders/cpu/conv_implicit.wgsl`), and matrix products in
//! register blocks, some with 8-lane subgroups sharing fetched rows (`matmul.rs`,
//! `shaders/cpu/matmul_*.wgsl`). The policy decides when they run; the portable kernels
//! (workgroup tiles, im2col) have their host code in `backend/portable/` and their shaders in
//! `shaders/`.

pub(crate) mod conv_acc_gen;
pub(crate) mod conv_implicit;
pub(crate) mod conv_weight_gen;
pub(crate) mod matmul;
pub(crate) mod matmul_gen;
pub(crate) mod texels;
