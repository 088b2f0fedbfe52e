//! Portable kernels: what GPUs run, and any adapter can (workgroup-memory tiles with
//! barriers). The CPU adapters' variants are in [`super::cpu`]; the policy decides which run.

pub(crate) mod matmul;
