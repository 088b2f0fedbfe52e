//! Host code of the portable kernels (workgroup tiles, im2col): what GPUs run, and any
//! adapter where the policy chooses them. The CPU adapters' variants are in [`super::cpu`].

pub(crate) mod conv;
pub(crate) mod matmul;
pub(crate) mod pool;
