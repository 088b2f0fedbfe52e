//! `batch_norm2d` in training and eval mode, with its backward: `shaders/batch_norm.wgsl` for
//! the per-channel finish and the elementwise parts, the reduction kernels for the sums.

use crate::error::{shape_err, Error, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::tape::{no_grad, Op};
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("batch_norm");

/// Arguments of [`Tensor::batch_norm2d`], named as in `torch.nn.functional.batch_norm`.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormArgs<'a> {
    /// Running mean per channel, updated in training and used in eval mode.
    pub running_mean: Option<&'a Tensor>,
    /// Running (unbiased) variance per channel, likewise.
    pub running_var: Option<&'a Tensor>,
    /// Scale per channel (gamma); `None` for 1.
    pub weight: Option<&'a Tensor>,
    /// Shift per channel (beta); `None` for 0.
    pub bias: Option<&'a Tensor>,
    /// Batch statistics (and running-statistics updates) rather than the running ones.
    pub training: bool,
    /// How fast the running statistics follow the batch's (PyTorch's 0.1).
    pub momentum: f32,
    /// Added to the variance before the square root (PyTorch's 1e-5).
    pub eps: f32,
}

impl Default for BatchNormArgs<'_> {
    fn default() -> Self {
        BatchNormArgs {
            running_mean: None,
            running_var: None,
            weight: None,
            bias: None,
            training: true,
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

pub(crate) struct Saved {
    x: Tensor,
    stats: Tensor,
    weight: Tensor,
    params: BatchNormParams,
}

kernel_params! {
    /// `Params` of `shaders/batch_norm.wgsl`.
    pub(crate) struct BatchNormParams for "batch_norm" {
        len: u32,
        c: u32,
        hw: u32,
        training: u32,
        momentum: f32,
        eps: f32,
        /// Elements per channel (N * H * W).
        m: f32,
        /// Pieces per channel and values per piece (bn_stats, bn_grad_sums).
        chunks: u32,
        per_chunk: u32,
    }
}

fn params(
    len: usize,
    c: usize,
    hw: usize,
    training: bool,
    momentum: f32,
    eps: f32,
    m: usize,
) -> BatchNormParams {
    BatchNormParams {
        len: len as u32,
        c: c as u32,
        hw: hw as u32,
        training: training as u32,
        momentum,
        eps,
        m: m as f32,
        chunks: 1,
        per_chunk: m as u32,
    }
}

/// `p` with the pieces the policy splits each channel's `m` values into.
fn in_pieces(dev: &crate::Device, mut p: BatchNormParams, m: usize, c: usize) -> BatchNormParams {
    let (chunks, per_chunk) = dev.policy().channel_pieces(m, c);
    p.chunks = chunks as u32;
    p.per_chunk = per_chunk as u32;
    p
}

/// As PyTorch: one value per channel (`m` of them) cannot be normalised in training, but an
/// empty input (no values) gives an empty output and leaves the running statistics alone.
fn one_value_per_channel(s: &[usize], m: usize, training: bool, op: &str) -> Result<()> {
    if training && m == 1 {
        return Err(Error::Invalid(format!(
            "{op}: training needs more than one value per channel, input {s:?}"
        )));
    }
    Ok(())
}

impl Tensor {
    /// Batch normalization of an NCHW input per channel, as `F.batch_norm`: in training mode
    /// with the batch's statistics (and the running statistics, when given, updated in place
    /// with `momentum`), in eval mode with the running statistics.
    pub fn batch_norm2d(&self, args: BatchNormArgs) -> Result<Tensor> {
        let s = self.shape();
        if s.len() != 4 {
            return shape_err("batch_norm2d", format!("expects an NCHW input, got {s:?}"));
        }
        one_value_per_channel(s, s[0] * s[2] * s[3], args.training, "batch_norm2d")?;
        self.batch_norm_nc(s[0], s[1], s[2] * s[3], args, "batch_norm2d")
    }

    /// Batch normalization of an [N, C] or [N, C, L] input per channel, as `F.batch_norm`
    /// on such inputs (PyTorch's `BatchNorm1d`); the arguments as in
    /// [`Tensor::batch_norm2d`].
    pub fn batch_norm1d(&self, args: BatchNormArgs) -> Result<Tensor> {
        let s = self.shape();
        let l = match s.len() {
            2 => 1,
            3 => s[2],
            _ => {
                return shape_err(
                    "batch_norm1d",
                    format!("expects an [N, C] or [N, C, L] input, got {s:?}"),
                )
            }
        };
        one_value_per_channel(s, s[0] * l, args.training, "batch_norm1d")?;
        self.batch_norm_nc(s[0], s[1], l, args, "batch_norm1d")
    }

    /// Batch normalization of this tensor seen as [n, c, hw] (any shape of that many
    /// elements), per channel: the kernels of [`Tensor::batch_norm2d`], also used by the
    /// layer and group normalizations (one "channel" per normalized row).
    pub(crate) fn batch_norm_nc(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        args: BatchNormArgs,
        op: &'static str,
    ) -> Result<Tensor> {
        let s = self.shape();
        let m = n * hw;
        let dev = self.device();
        for (name, t) in [
            ("running_mean", args.running_mean),
            ("running_var", args.running_var),
            ("weight", args.weight),
            ("bias", args.bias),
        ] {
            if let Some(t) = t {
                dev.same(t.device(), op)?;
                if t.shape() != [c] {
                    return shape_err(
                        op,
                        format!("{name} {:?} should be [{c}] for input {s:?}", t.shape()),
                    );
                }
            }
        }
        let ones;
        let weight = match args.weight {
            Some(w) => w,
            None => {
                ones = Tensor::ones(dev, &[c])?;
                &ones
            }
        };
        let zeros;
        let bias = match args.bias {
            Some(b) => b,
            None => {
                zeros = Tensor::zeros(dev, &[c])?;
                &zeros
            }
        };
        let p = params(
            self.numel(),
            c,
            hw,
            args.training,
            args.momentum,
            args.eps,
            m,
        );
        let stats = Tensor::uninit(dev, &[2 * c])?;
        let empty_batch = args.training && m == 0;
        no_grad(|| -> Result<()> {
            if empty_batch {
                return Ok(());
            }
            if args.training {
                // Without running statistics the update goes to scratch buffers.
                let rm = args
                    .running_mean
                    .cloned()
                    .map_or_else(|| Tensor::zeros(dev, &[c]), Ok)?;
                let rv = args
                    .running_var
                    .cloned()
                    .map_or_else(|| Tensor::ones(dev, &[c]), Ok)?;
                // Updated in place below.
                rm.storage().mark_written();
                rv.storage().mark_written();
                let pp = in_pieces(dev, p, m, c);
                let pieces = dev.storage(3 * c * pp.chunks as usize)?;
                dev.dispatch(
                    &SHADER,
                    "bn_stats",
                    &[Bind::Read(self.buffer()), Bind::Write(pieces.buffer())],
                    &pp,
                    c as u32 * pp.chunks,
                )?;
                return dev.dispatch(
                    &SHADER,
                    "bn_stats_finish",
                    &[
                        Bind::Read(pieces.buffer()),
                        Bind::Read(pieces.buffer()),
                        Bind::Write(rm.buffer()),
                        Bind::Write(rv.buffer()),
                        Bind::Write(stats.buffer()),
                    ],
                    &pp,
                    c.div_ceil(64) as u32,
                );
            }
            // Eval: the running statistics are the statistics; nothing is updated (the
            // running-statistics slots get scratch buffers).
            let (Some(mean), Some(var)) = (args.running_mean, args.running_var) else {
                return Err(Error::Invalid(format!(
                    "{op}: eval mode needs running_mean and running_var"
                )));
            };
            let (rm, rv) = (Tensor::zeros(dev, &[c])?, Tensor::zeros(dev, &[c])?);
            dev.dispatch(
                &SHADER,
                "bn_finish",
                &[
                    Bind::Read(mean.buffer()),
                    Bind::Read(var.buffer()),
                    Bind::Write(rm.buffer()),
                    Bind::Write(rv.buffer()),
                    Bind::Write(stats.buffer()),
                ],
                &p,
                c.div_ceil(64) as u32,
            )
        })?;
        let y = dev.storage(self.numel())?;
        dev.dispatch(
            &SHADER,
            "bn_apply",
            &[
                Bind::Read(self.buffer()),
                Bind::Read(stats.buffer()),
                Bind::Read(weight.buffer()),
                Bind::Read(bias.buffer()),
                Bind::Write(y.buffer()),
            ],
            &p,
            groups(self.numel()),
        )?;
        Ok(Tensor::from_op(
            y,
            s.to_vec(),
            &[self, weight, bias],
            || {
                Op::BatchNorm(Saved {
                    x: self.detach(),
                    stats,
                    weight: weight.detach(),
                    params: p,
                })
            },
        ))
    }
}

pub(crate) fn backward(s: &Saved, g: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>> {
    let dev = g.device();
    let (len, c) = (s.params.len as usize, s.params.c as usize);
    let m = len / c.max(1);
    let (sum_g, sum_g_xhat) = (Tensor::uninit(dev, &[c])?, Tensor::uninit(dev, &[c])?);
    if m == 0 {
        // No values: zero sums (and an empty input gradient below).
        for t in [&sum_g, &sum_g_xhat] {
            dev.clear_range(t.buffer(), 0, 4 * c as u64);
        }
    } else {
        let pp = in_pieces(dev, s.params, m, c);
        let pieces = dev.storage(2 * c * pp.chunks as usize)?;
        dev.dispatch(
            &SHADER,
            "bn_grad_sums",
            // The elementwise kernels' layout: x, stats, weight (unread here), g, the output.
            &[
                Bind::Read(s.x.buffer()),
                Bind::Read(s.stats.buffer()),
                Bind::Read(s.weight.buffer()),
                Bind::Read(g.buffer()),
                Bind::Write(pieces.buffer()),
            ],
            &pp,
            c as u32 * pp.chunks,
        )?;
        dev.dispatch(
            &SHADER,
            "bn_grad_finish",
            &[
                Bind::Read(pieces.buffer()),
                Bind::Write(sum_g.buffer()),
                Bind::Write(sum_g_xhat.buffer()),
            ],
            &pp,
            c.div_ceil(64) as u32,
        )?;
    }
    let gx = if need[0] {
        let gx = Tensor::uninit(dev, g.shape())?;
        dev.dispatch(
            &SHADER,
            "bn_backward",
            &[
                Bind::Read(s.x.buffer()),
                Bind::Read(s.stats.buffer()),
                Bind::Read(s.weight.buffer()),
                Bind::Read(g.buffer()),
                Bind::Read(sum_g.buffer()),
                Bind::Read(sum_g_xhat.buffer()),
                Bind::Write(gx.buffer()),
            ],
            &s.params,
            groups(len),
        )?;
        Some(gx)
    } else {
        None
    };
    Ok(vec![gx, Some(sum_g_xhat), Some(sum_g)])
}
