//! `add`, `sub`, `mul`, `div` with NumPy/PyTorch broadcasting: `shaders/binary.wgsl`.
//! The backward undoes broadcasting by summing over the broadcast dims inside the kernel.

use crate::backend::TexelReads;
use crate::error::{shape_err, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::shape::{broadcast, broadcast_strides, numel, pad_shape, vec4x2};
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("binary");

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
    Div = 3,
}

impl BinaryOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

pub(crate) struct Saved {
    pub(crate) op: BinaryOp,
    a: Tensor,
    b: Tensor,
    out_shape: Vec<usize>,
}

kernel_params! {
    /// `Params` of `shaders/binary.wgsl`: shapes and strides of rank up to 8.
    pub(crate) struct BinaryParams for "binary" {
        out_shape: [[u32; 4]; 2],
        a_strides: [[u32; 4]; 2],
        b_strides: [[u32; 4]; 2],
        t_shape: [[u32; 4]; 2],
        len: u32,
        rank: u32,
        red_count: u32,
        /// binary_same's first element (after binary_same4's).
        start: u32,
    }
}

/// The broadcast parameters.
fn params(len: usize, out: &[usize], a: &[usize], b: &[usize], target: &[usize]) -> BinaryParams {
    BinaryParams {
        out_shape: vec4x2(out),
        a_strides: vec4x2(&broadcast_strides(a, out)),
        b_strides: vec4x2(&broadcast_strides(b, out)),
        t_shape: vec4x2(&pad_shape(target, out.len())),
        len: len as u32,
        rank: out.len() as u32,
        red_count: (numel(out) / numel(target).max(1)) as u32,
        ..Default::default()
    }
}

/// Parameters of the same-shape kernels: only `len` (and binary_same's `start`).
fn same_params(len: usize) -> BinaryParams {
    BinaryParams {
        len: len as u32,
        ..Default::default()
    }
}

fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    a.device().same(b.device(), op.name())?;
    let dev = a.device();
    let out_shape = broadcast(a.shape(), b.shape(), op.name())?;
    let n = numel(&out_shape);
    let storage = dev.storage(n)?;
    let op_code = [("OP", op as u32)];
    if a.shape() == b.shape() {
        // Vec4s, read from texture copies where the policy says so.
        let reads = TexelReads::new(dev, &[Some(a), Some(b)])?;
        dev.dispatch_vec4(
            &SHADER,
            ("binary_same", "binary_same4"),
            &[("OP", op as u32), ("TEXELS", reads.on() as u32)],
            &[
                reads.buffer(dev, Some(a)),
                reads.buffer(dev, Some(b)),
                Bind::Write(storage.buffer()),
                reads.texture(dev, 0),
                reads.texture(dev, 1),
            ],
            n,
            |start| BinaryParams {
                start: start as u32,
                ..same_params(n)
            },
        )?;
    } else {
        let binds = [
            Bind::Read(a.buffer()),
            Bind::Read(b.buffer()),
            Bind::Write(storage.buffer()),
        ];
        let p = params(n, &out_shape, a.shape(), b.shape(), &out_shape);
        dev.dispatch_with(&SHADER, "binary_broadcast", &op_code, &binds, &p, groups(n))?;
    }
    Ok(Tensor::from_op(storage, out_shape.clone(), &[a, b], || {
        Op::Binary(Saved {
            op,
            a: a.detach(),
            b: b.detach(),
            out_shape,
        })
    }))
}

fn grad_of(s: &Saved, g: &Tensor, side: u32) -> Result<Tensor> {
    let dev = g.device();
    let target = if side == 0 { s.a.shape() } else { s.b.shape() };
    let gt = Tensor::uninit(dev, target)?;
    let binds = [
        Bind::Read(s.a.buffer()),
        Bind::Read(s.b.buffer()),
        Bind::Read(g.buffer()),
        Bind::Write(gt.buffer()),
    ];
    let n = gt.numel();
    let consts = [("OP", s.op as u32), ("SIDE", side)];
    if s.a.shape() == s.b.shape() {
        let p = same_params(n);
        dev.dispatch_with(
            &SHADER,
            "binary_backward_same",
            &consts,
            &binds,
            &p,
            groups(n),
        )?;
    } else if (numel(&s.out_shape) / n.max(1)) * (s.out_shape.len() + 1)
        <= dev.policy().serial_sum_limit()
    {
        let p = params(n, &s.out_shape, s.a.shape(), s.b.shape(), target);
        let entry = "binary_backward_broadcast";
        dev.dispatch_with(&SHADER, entry, &consts, &binds, &p, groups(n))?;
    } else {
        // Each element was broadcast to too many places to sum in one invocation: compute the
        // local gradient at full output size, then sum it down in stages.
        let out_n = numel(&s.out_shape);
        let full = Tensor::uninit(dev, &s.out_shape)?;
        let binds = [
            Bind::Read(s.a.buffer()),
            Bind::Read(s.b.buffer()),
            Bind::Read(g.buffer()),
            Bind::Write(full.buffer()),
        ];
        let p = params(out_n, &s.out_shape, s.a.shape(), s.b.shape(), &s.out_shape);
        let entry = "binary_backward_broadcast";
        dev.dispatch_with(&SHADER, entry, &consts, &binds, &p, groups(out_n))?;
        return sum_to(&full, target);
    }
    Ok(gt)
}

pub(crate) fn backward(
    s: &Saved,
    g: &Tensor,
    need_a: bool,
    need_b: bool,
) -> Result<Vec<Option<Tensor>>> {
    // Without broadcasting, a + b passes g to both sides and a - b to a: no kernel. The
    // second side gets a buffer copy (a few microseconds on lavapipe, against a kernel's
    // milliseconds on a ResNet activation) so that the two gradients never share storage.
    let same = s.a.shape() == s.b.shape();
    let passes =
        |side: u32| same && (s.op == BinaryOp::Add || (s.op == BinaryOp::Sub && side == 0));
    let ga = match (need_a, passes(0)) {
        (false, _) => None,
        (true, true) => Some(g.clone()),
        (true, false) => Some(grad_of(s, g, 0)?),
    };
    let gb = match (need_b, passes(1)) {
        (false, _) => None,
        (true, true) if ga.is_some() => Some(g.copy()?),
        (true, true) => Some(g.clone()),
        (true, false) => Some(grad_of(s, g, 1)?),
    };
    Ok(vec![ga, gb])
}

/// Sums `g` down to `shape` over the dims it was broadcast along: the backward of `expand`,
/// and the gradient of `a` in a broadcast `a + b` (the add's backward kernel, which reads
/// neither `a` nor `b`).
pub(crate) fn sum_to(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let rank = g.rank();
    if shape.len() > rank {
        return shape_err("sum_to", format!("cannot sum {:?} to {shape:?}", g.shape()));
    }
    let t = pad_shape(shape, rank);
    let red_count = g.numel() / numel(shape).max(1);
    let dev = g.device();
    if red_count * (rank + 1) > dev.policy().serial_sum_limit() {
        // Too many positions for one invocation: sum one broadcast dim at a time instead.
        let mut acc = g.clone();
        for (d, (&td, &gd)) in t.iter().zip(g.shape()).enumerate() {
            if td == 1 && gd != 1 {
                acc = acc.sum_dim(d as isize, true)?;
            }
        }
        return acc.reshape(shape);
    }
    let out = Tensor::uninit(dev, shape)?;
    let n = out.numel();
    let unread = dev.dummy_buffer();
    dev.dispatch_with(
        &SHADER,
        "binary_backward_broadcast",
        &[("OP", BinaryOp::Add as u32), ("SIDE", 0)],
        &[
            Bind::Read(unread),
            Bind::Read(unread),
            Bind::Read(g.buffer()),
            Bind::Write(out.buffer()),
        ],
        &params(n, g.shape(), &t, &t, &t),
        groups(n),
    )?;
    Ok(out)
}

impl Tensor {
    /// `self + other`, broadcasting as NumPy does.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Add)
    }
    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Sub)
    }
    /// `self * other` elementwise, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Mul)
    }
    /// `self / other` elementwise, broadcasting.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, BinaryOp::Div)
    }
}
