//! Texel reads: where the policy says so (`Policy::texel_reads`), a memory-bound kernel (a
//! BatchNorm channel pass, the images-innermost re-layout, the same-shape elementwise ops)
//! reads its large operands from texture copies of their buffers instead of the buffers: on
//! llvmpipe a storage load runs lane by lane, a texel fetch is one vector gather. The kernel
//! declares both forms of each operand and a TEXELS constant choosing between them; the slots
//! it leaves unread hold placeholders.

use std::sync::Arc;

use crate::backend::cpu::texels::Texels;
use crate::device::Device;
use crate::error::Result;
use crate::kernel::Bind;
use crate::tensor::Tensor;

/// The operands a memory-bound kernel reads through texel fetches where the policy says so
/// (`Policy::texel_reads`, the kernel's TEXELS constant): each present operand's texture copy
/// (`Storage::texels`), or none at all when the policy says no or one does not fit in a
/// texture (every operand is then read from its buffer).
pub(crate) struct TexelReads {
    copies: Option<Vec<Option<Arc<Texels>>>>,
}

impl TexelReads {
    pub fn new(dev: &Device, operands: &[Option<&Tensor>]) -> Result<Self> {
        let floats = operands.iter().flatten().map(|t| t.numel()).sum();
        if !dev.policy().texel_reads(floats) {
            return Ok(Self { copies: None });
        }
        let mut copies = Vec::with_capacity(operands.len());
        for t in operands {
            match t {
                Some(t) => match t.storage().texels()? {
                    Some(copy) => copies.push(Some(copy)),
                    None => return Ok(Self { copies: None }),
                },
                None => copies.push(None),
            }
        }
        Ok(Self {
            copies: Some(copies),
        })
    }

    /// [`new`](Self::new) for the optimizer's operand buffers, of `n` values each
    /// (`Policy::optimizer_texel_reads`): copies made afresh, not kept.
    pub fn of_buffers(dev: &Device, buffers: &[Option<&wgpu::Buffer>], n: usize) -> Result<Self> {
        if !dev.policy().optimizer_texel_reads(n) {
            return Ok(Self { copies: None });
        }
        let mut copies = Vec::with_capacity(buffers.len());
        for b in buffers {
            match b {
                Some(b) => match dev.texels_of(b)? {
                    Some(copy) => copies.push(Some(Arc::new(copy))),
                    None => return Ok(Self { copies: None }),
                },
                None => copies.push(None),
            }
        }
        Ok(Self {
            copies: Some(copies),
        })
    }

    /// Whether the kernel reads the textures (its TEXELS).
    pub fn on(&self) -> bool {
        self.copies.is_some()
    }

    /// An operand's buffer slot: its buffer, or a placeholder where the kernel reads its
    /// texture or it is absent.
    pub fn buffer<'a>(&self, dev: &'a Device, t: Option<&'a Tensor>) -> Bind<'a> {
        Bind::Read(match t {
            Some(t) if !self.on() => t.buffer(),
            _ => dev.dummy_buffer(),
        })
    }

    /// Operand i's texture slot: its copy, or a placeholder.
    pub fn texture<'a>(&'a self, dev: &'a Device, i: usize) -> Bind<'a> {
        Bind::Texels(match self.copies.as_ref().and_then(|c| c[i].as_ref()) {
            Some(copy) => copy.view(),
            None => dev.unused_texels(),
        })
    }
}
