//! The backend boundary. [`caps`] reads what the adapter can do once, when the device opens;
//! [`policy`] turns those capabilities and a problem's shape into the kernel variant that runs.
//! Ops ask the policy and never look at the adapter. Behind the backend functions ([`gemm`]:
//! the matrix product) sit the portable kernels ([`portable`]: what GPUs run) and the
//! CPU-adapter kernels ([`cpu`]).

pub(crate) mod caps;
pub(crate) mod cpu;
pub(crate) mod gemm;
pub(crate) mod policy;
pub(crate) mod portable;

pub use caps::{AdapterClass, Limits};
pub(crate) use gemm::{gemm, Gemm, Operand};
