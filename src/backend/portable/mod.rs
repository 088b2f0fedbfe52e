//! Host code of the portable kernels (workgroup tiles, im2col): what GPUs run, and any
//! adapter where the policy chooses them.

pub(crate) mod conv;
pub(crate) mod pool;
