//! The backend boundary. [`caps`] reads what the adapter can do once, when the device opens;
//! [`policy`] turns those capabilities and a problem's shape into the kernel variant that runs.
//! Ops ask the policy and never look at the adapter. The backend functions an op family calls
//! ask the policy and run a portable kernel ([`portable`]: what GPUs run) or a CPU-adapter one
//! ([`cpu`]): [`gemm`] (the matrix product), [`conv`] (the convolution's forward and
//! gradients), [`pool`] (pooling, portable kernels on every adapter); and [`texel_reads`], the
//! texture copies that memory-bound kernels read on CPU adapters.

pub(crate) mod caps;
pub(crate) mod conv;
pub(crate) mod cpu;
pub(crate) mod gemm;
pub(crate) mod policy;
pub(crate) mod portable;
pub(crate) mod texel_reads;

/// Pooling: every adapter runs the portable kernels.
pub(crate) use portable::pool;

pub use caps::{AdapterClass, Limits};
pub(crate) use gemm::{gemm, Gemm, Operand};
pub(crate) use texel_reads::TexelReads;
