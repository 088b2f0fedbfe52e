//! Views and layout changes: `reshape`/`flatten` (no copy), `permute`/`transpose` and
//! `expand` (strided copies through `shaders/layout.wgsl`).

use crate::error::{shape_err, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::shape::{broadcast_strides, numel, resolve_dim, strides, vec4x2};
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("layout");

kernel_params! {
    /// `Params` of `shaders/layout.wgsl`.
    pub(crate) struct LayoutParams for "layout" {
        out_shape: [[u32; 4]; 2],
        src_strides: [[u32; 4]; 2],
        len: u32,
        rank: u32,
        _pad: [u32; 2],
    }
}

pub(crate) struct PermuteSaved {
    inverse: Vec<usize>,
}

/// Copies `src` into a new contiguous tensor of `out_shape`, reading element idx at
/// sum(idx[d] * src_strides[d]).
fn strided_copy(src: &Tensor, out_shape: &[usize], src_strides: &[usize]) -> Result<Tensor> {
    let dev = src.device();
    let out = Tensor::uninit(dev, out_shape)?;
    let n = out.numel();
    let p = LayoutParams {
        out_shape: vec4x2(out_shape),
        src_strides: vec4x2(src_strides),
        len: n as u32,
        rank: out_shape.len() as u32,
        ..Default::default()
    };
    dev.dispatch(
        &SHADER,
        "strided_copy",
        &[Bind::Read(src.buffer()), Bind::Write(out.buffer())],
        &p,
        groups(n),
    )?;
    Ok(out)
}

fn permute_raw(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let s = strides(x.shape());
    let out_shape: Vec<usize> = perm.iter().map(|&d| x.shape()[d]).collect();
    let src_strides: Vec<usize> = perm.iter().map(|&d| s[d]).collect();
    strided_copy(x, &out_shape, &src_strides)
}

pub(crate) fn permute_backward(s: &PermuteSaved, g: &Tensor) -> Result<Tensor> {
    permute_raw(g, &s.inverse)
}

impl Tensor {
    /// The same data with a new shape of equal element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        crate::shape::check_shape(shape, "reshape")?;
        if numel(shape) != self.numel() {
            return shape_err(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) into {shape:?} ({} elements)",
                    self.shape(),
                    self.numel(),
                    numel(shape)
                ),
            );
        }
        Ok(Tensor::from_op(
            self.storage().clone(),
            shape.to_vec(),
            &[self],
            || Op::Reshape,
        ))
    }

    /// Merges dims `start..=end` (negative counts from the end) into one, as `torch.flatten`.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let s = resolve_dim(start, self.rank(), "flatten")?;
        let e = resolve_dim(end, self.rank(), "flatten")?;
        if s > e {
            return shape_err(
                "flatten",
                format!("start dim {start} is after end dim {end}"),
            );
        }
        let mut shape = self.shape()[..s].to_vec();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(&shape)
    }

    /// All elements in one dimension.
    pub fn flatten_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])
    }

    /// Reorders the dims: output dim i is input dim `perm[i]` (a copy).
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let mut seen = vec![false; self.rank()];
        let valid = perm.len() == self.rank()
            && perm
                .iter()
                .all(|&d| d < self.rank() && !std::mem::replace(&mut seen[d], true));
        if !valid {
            return shape_err(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the dims of {:?}",
                    self.shape()
                ),
            );
        }
        let out = permute_raw(self, perm)?;
        let mut inverse = vec![0; perm.len()];
        for (i, &d) in perm.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(Tensor::from_op(
            out.storage().clone(),
            out.shape().to_vec(),
            &[self],
            || Op::Permute(PermuteSaved { inverse }),
        ))
    }

    /// Swaps two dims (a copy; negative dims count from the end).
    pub fn transpose(&self, dim0: isize, dim1: isize) -> Result<Tensor> {
        let a = resolve_dim(dim0, self.rank(), "transpose")?;
        let b = resolve_dim(dim1, self.rank(), "transpose")?;
        if self.rank() == 0 {
            // As PyTorch: dims 0 and -1 of a 0-d tensor name the tensor itself; nothing moves.
            return self.permute(&[]);
        }
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of a 2-D tensor.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() != 2 {
            return shape_err("t", format!("expects a 2-D tensor, got {:?}", self.shape()));
        }
        self.transpose(0, 1)
    }

    /// Broadcasts to `shape` (NumPy rules: size-1 dims and missing leading dims repeat).
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        crate::shape::check_shape(shape, "expand")?;
        let out = crate::shape::broadcast(self.shape(), shape, "expand")?;
        if out != shape {
            return shape_err(
                "expand",
                format!("cannot expand {:?} to {shape:?}", self.shape()),
            );
        }
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let copy = strided_copy(self, shape, &broadcast_strides(self.shape(), shape))?;
        Ok(Tensor::from_op(
            copy.storage().clone(),
            shape.to_vec(),
            &[self],
            || Op::Expand,
        ))
    }
}
