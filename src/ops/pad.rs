//! `pad` (PyTorch's `F.pad`): constant, reflect, replicate and circular padding of the last
//! dims, `shaders/pad.wgsl`.

use crate::error::{shape_err, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::shape::{check_shape, numel};
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("pad");

kernel_params! {
    /// `Params` of `shaders/pad.wgsl`.
    pub(crate) struct PadParams for "pad" {
        in_size: [u32; 4],
        out_size: [u32; 4],
        left: [u32; 4],
        len: u32,
        value: f32,
        _pad: [u32; 2],
    }
}

/// How [`Tensor::pad`] fills the border (PyTorch's `mode` of `F.pad`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PadMode {
    /// The given value (`"constant"`, the default).
    #[default]
    Constant = 0,
    /// The input mirrored at its edges, the edge itself not repeated (`"reflect"`:
    /// [1, 2, 3] padded by 2 on each side is [3, 2, 1, 2, 3, 2, 1]); pads < the dim's size.
    Reflect = 1,
    /// The edge values repeated (`"replicate"`: [1, 1, 1, 2, 3, 3, 3]).
    Replicate = 2,
    /// The input wrapped around (`"circular"`: [2, 3, 1, 2, 3, 1, 2]); pads <= the dim's size.
    Circular = 3,
}

impl PadMode {
    /// PyTorch's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            PadMode::Constant => "constant",
            PadMode::Reflect => "reflect",
            PadMode::Replicate => "replicate",
            PadMode::Circular => "circular",
        }
    }
}

/// One kernel pass: the input seen as [outer, n2, n1, n0] (axis 0 innermost, `axes[0]`),
/// each axis padded by (left, right).
#[derive(Clone, Copy, Debug)]
struct View {
    outer: usize,
    /// (size, left, right) per axis, innermost first.
    axes: [(usize, usize, usize); 3],
}

impl View {
    fn params(&self, len: usize, value: f32) -> PadParams {
        let mut p = PadParams {
            len: len as u32,
            value,
            ..Default::default()
        };
        for (a, &(n, l, r)) in self.axes.iter().enumerate() {
            p.in_size[a] = n as u32;
            p.out_size[a] = (l + n + r) as u32;
            p.left[a] = l as u32;
        }
        p
    }

    /// The view with every axis but `a` unpadded and the axes below `a` already unpadded:
    /// the pass of the backward that removes axis `a`'s padding.
    fn only(&self, a: usize) -> View {
        let mut v = *self;
        for (b, axis) in v.axes.iter_mut().enumerate() {
            if b < a {
                *axis = (axis.0, 0, 0);
            } else if b > a {
                *axis = (axis.0 + axis.1 + axis.2, 0, 0);
            }
        }
        v
    }

    /// The most output positions one input element is read by along axis `a` (the backward's
    /// loop count for it).
    fn reads(&self, a: usize, mode: PadMode) -> usize {
        let (_, l, r) = self.axes[a];
        match mode {
            PadMode::Constant => 1,
            PadMode::Reflect | PadMode::Circular => 3,
            PadMode::Replicate => l + r + 1,
        }
    }
}

/// What pad's backward needs.
pub(crate) struct Saved {
    view: View,
    mode: PadMode,
    in_shape: Vec<usize>,
}

/// One pass of the kernel over `x` (its shape seen as `view`), giving `out_shape`.
fn pad_view(
    x: &Tensor,
    view: View,
    mode: PadMode,
    value: f32,
    out_shape: Vec<usize>,
) -> Result<Tensor> {
    let dev = x.device();
    let len = numel(&out_shape);
    let out = dev.storage(len)?;
    if len > 0 {
        let src = if x.numel() > 0 {
            x.buffer()
        } else {
            dev.dummy_buffer()
        };
        dev.dispatch_with(
            &SHADER,
            "pad",
            &[("MODE", mode as u32)],
            &[Bind::Read(src), Bind::Write(out.buffer())],
            &view.params(len, value),
            groups(len),
        )?;
    }
    Ok(Tensor::from_op(out, out_shape, &[x], || {
        Op::Pad(Saved {
            view,
            mode,
            in_shape: x.shape().to_vec(),
        })
    }))
}

/// The gradient of one pass: a gather of `g` over the output positions that read each input
/// element, in one kernel pass when the product of the axes' loop counts fits the policy's
/// loop limit, else one pass per axis (an axis whose replicated edges alone are wider than
/// the limit summed by `wide_replicate_backward`).
pub(crate) fn backward(s: &Saved, g: &Tensor) -> Result<Tensor> {
    let dev = g.device();
    let limit = dev.policy().loop_limit();
    let reads: Vec<usize> = (0..3).map(|a| s.view.reads(a, s.mode)).collect();
    let passes: Vec<(usize, View)> = if reads.iter().product::<usize>() <= limit {
        vec![(0, s.view)]
    } else {
        (0..3).map(|a| (a, s.view.only(a))).collect()
    };
    let mut gx = g.detach();
    for (a, view) in passes {
        let len = view.outer * view.axes.iter().map(|a| a.0).product::<usize>();
        // Only replicate's loop count grows with the pads; its pass pads axis a alone.
        if reads[a] > limit {
            gx = wide_replicate_backward(&gx, &view, a)?;
            continue;
        }
        let out = Tensor::uninit(dev, &[len])?;
        if len > 0 {
            dev.dispatch_with(
                &SHADER,
                "pad_backward",
                &[("MODE", s.mode as u32)],
                &[Bind::Read(gx.buffer()), Bind::Write(out.buffer())],
                &view.params(len, 0.0),
                groups(len),
            )?;
        }
        gx = out;
    }
    gx.reshape(&s.in_shape)
}

/// The gradient of replicate padding along axis `a` alone, by tensor ops: with `g` seen as
/// [before, m, after], the interior n positions plus, at the first and last, the sums of the
/// left and right borders (`sum_dim` stages its loop within the limit).
fn wide_replicate_backward(g: &Tensor, view: &View, a: usize) -> Result<Tensor> {
    let (n, l, r) = view.axes[a];
    let after: usize = view.axes[..a].iter().map(|x| x.0).product();
    let before = view.outer * view.axes[a + 1..].iter().map(|x| x.0).product::<usize>();
    let g = g.reshape(&[before, l + n + r, after])?;
    let mut gx = g.narrow(1, l, n)?;
    for (start, width, pad) in [(0, l, [0, 0, 0, n - 1]), (l + n, r, [0, 0, n - 1, 0])] {
        if width > 0 {
            let edge = g.narrow(1, start, width)?.sum_dim(1, true)?;
            gx = gx.add(&edge.pad(&pad, PadMode::Constant, 0.0)?)?;
        }
    }
    gx.reshape(&[before * n * after])
}

impl Tensor {
    /// Pads the last dims as PyTorch's `F.pad(input, pad, mode, value)`: `pad` lists
    /// (left, right) pairs starting from the last dim, `(l, r)` for the last dim,
    /// `(l, r, top, bottom)` for the last two, and so on. `value` fills the border in
    /// [`PadMode::Constant`], which may pad any number of dims; the other modes pad 1 to 3
    /// dims of an input of one or two more dims (a 2-D or 3-D input for one pair, 3-D or 4-D for
    /// two, 4-D or 5-D for three), as PyTorch allows, each padded dim non-empty, reflect's pads
    /// smaller than the dim and circular's at most its size. Negative padding (cropping) is
    /// not supported. The gradient sums, for each input element, the output elements that
    /// copied it.
    pub fn pad(&self, pad: &[usize], mode: PadMode, value: f32) -> Result<Tensor> {
        let shape = self.shape();
        let rank = shape.len();
        let pairs = pad.len() / 2;
        if !pad.len().is_multiple_of(2) {
            return shape_err(
                "pad",
                format!(
                    "padding {pad:?} of input {shape:?} must list (left, right) pairs: its \
                     length must be even"
                ),
            );
        }
        if pairs > rank {
            return shape_err(
                "pad",
                format!("padding {pad:?} pads {pairs} dims of a tensor of shape {shape:?}"),
            );
        }
        if mode != PadMode::Constant {
            if !(1..=3).contains(&pairs) || !(pairs + 1..=pairs + 2).contains(&rank) {
                return shape_err(
                    "pad",
                    format!(
                        "{} padding {pad:?} of a {rank}-D input {shape:?}: non-constant modes pad \
                         1 to 3 dims of an input of one or two more dims",
                        mode.name()
                    ),
                );
            }
            for k in 0..pairs {
                let (l, r, n) = (pad[2 * k], pad[2 * k + 1], shape[rank - 1 - k]);
                let bad = match mode {
                    PadMode::Reflect => n == 0 || l >= n || r >= n,
                    PadMode::Replicate => n == 0,
                    _ => l > n || r > n,
                };
                if bad {
                    let rule = match mode {
                        PadMode::Reflect => "each pad must be less than the dim's size",
                        PadMode::Replicate => "the dim must not be empty",
                        _ => "each pad must be at most the dim's size (one wrap)",
                    };
                    return shape_err(
                        "pad",
                        format!(
                            "{} padding {pad:?} of input {shape:?}: ({l}, {r}) at dim {} of size \
                             {n}: {rule}",
                            mode.name(),
                            rank - 1 - k
                        ),
                    );
                }
            }
        }
        let mut out_shape = shape.to_vec();
        for k in 0..pairs {
            let d = rank - 1 - k;
            let grown = shape[d]
                .checked_add(pad[2 * k])
                .and_then(|v| v.checked_add(pad[2 * k + 1]));
            let Some(grown) = grown else {
                return shape_err(
                    "pad",
                    format!("padding {pad:?} of input {shape:?} overflows"),
                );
            };
            out_shape[d] = grown;
        }
        check_shape(&out_shape, "pad")?;
        // Passes of up to three padded dims from the last; after the first, the dims already
        // padded are flattened into axis 0 (unpadded) and two more dims are padded per pass.
        let mut y = self.clone();
        let mut k = 0;
        loop {
            let trailing: usize = y.shape()[rank - k..].iter().product();
            let mut axes = [(1, 0, 0); 3];
            let mut a = 0;
            if k > 0 {
                axes[0] = (trailing, 0, 0);
                a = 1;
            }
            let first = k;
            while a < 3 && k < pairs {
                axes[a] = (y.shape()[rank - 1 - k], pad[2 * k], pad[2 * k + 1]);
                a += 1;
                k += 1;
            }
            let outer = y.shape()[..rank - k].iter().product();
            let mut next = y.shape().to_vec();
            for j in first..k {
                next[rank - 1 - j] = out_shape[rank - 1 - j];
            }
            y = pad_view(&y, View { outer, axes }, mode, value, next)?;
            if k >= pairs {
                return Ok(y);
            }
        }
    }
}
