//! `layer_norm` and `group_norm`. Both normalize the rows of the input seen as [rows, m]
//! (a row: one sample's trailing `normalized_shape` values, or one sample's group of
//! channels) with batch statistics: that is batch normalization of a [1, rows, m] view, one
//! "channel" per row, so the kernels (and their paired backward) are those of
//! `shaders/batch_norm.wgsl`, run by [`Tensor::batch_norm_nc`]. The elementwise affine is
//! then a broadcasting multiply and add, whose backward gives the weight and bias gradients.

use crate::error::{shape_err, Error, Result};
use crate::ops::batch_norm::BatchNormArgs;
use crate::tensor::Tensor;

/// `y * weight + bias` with weight and bias, when given, broadcast as `shape`.
fn affine(
    y: Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    shape: &[usize],
) -> Result<Tensor> {
    let y = match weight {
        Some(w) => y.mul(&w.reshape(shape)?)?,
        None => y,
    };
    match bias {
        Some(b) => y.add(&b.reshape(shape)?),
        None => Ok(y),
    }
}

/// Checks that `weight` and `bias`, when given, have shape `want`.
fn check_affine(
    op: &'static str,
    input: &[usize],
    want: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
) -> Result<()> {
    for (name, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            if t.shape() != want {
                return shape_err(
                    op,
                    format!(
                        "{name} {:?} should be {want:?} for input {input:?}",
                        t.shape()
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Normalization of every row of this tensor seen as [rows, m], biased variance, `eps` added.
fn normalize_rows(x: &Tensor, rows: usize, m: usize, eps: f32, op: &'static str) -> Result<Tensor> {
    let args = BatchNormArgs {
        eps,
        ..Default::default()
    };
    x.batch_norm_nc(1, rows, m, args, op)
}

impl Tensor {
    /// Layer normalization over the trailing dimensions `normalized_shape`, as
    /// `F.layer_norm`: each sample's values there are normalized with their mean and biased
    /// variance (plus `eps`), then scaled by `weight` and shifted by `bias` (both of shape
    /// `normalized_shape`, elementwise; `None` for 1 and 0).
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        let s = self.shape();
        let k = normalized_shape.len();
        if k == 0 || k > s.len() || s[s.len() - k..] != *normalized_shape {
            return shape_err(
                "layer_norm",
                format!(
                    "normalized_shape {normalized_shape:?} should be the trailing dimensions \
                     of input {s:?}"
                ),
            );
        }
        check_affine("layer_norm", s, normalized_shape, weight, bias)?;
        for t in [weight, bias].into_iter().flatten() {
            self.device().same(t.device(), "layer_norm")?;
        }
        let m: usize = normalized_shape.iter().product();
        let rows: usize = s[..s.len() - k].iter().product();
        let y = normalize_rows(self, rows, m, eps, "layer_norm")?;
        affine(y, weight, bias, normalized_shape)
    }

    /// Group normalization of an [N, C, *] input, as `F.group_norm`: the C channels form
    /// `num_groups` groups, each sample's group is normalized with its mean and biased
    /// variance (plus `eps`), then every channel scaled by `weight` and shifted by `bias`
    /// (both [C]; `None` for 1 and 0).
    pub fn group_norm(
        &self,
        num_groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        let s = self.shape();
        if s.len() < 2 {
            return shape_err(
                "group_norm",
                format!("expects an [N, C, *] input, got {s:?}"),
            );
        }
        let (n, c) = (s[0], s[1]);
        if num_groups == 0 || !c.is_multiple_of(num_groups) {
            return Err(Error::Invalid(format!(
                "group_norm: {c} channels (input {s:?}) are not divisible into {num_groups} \
                 groups"
            )));
        }
        check_affine("group_norm", s, &[c], weight, bias)?;
        for t in [weight, bias].into_iter().flatten() {
            self.device().same(t.device(), "group_norm")?;
        }
        let hw: usize = s[2..].iter().product();
        let y = normalize_rows(self, n * num_groups, c / num_groups * hw, eps, "group_norm")?;
        // Weight and bias as [C, 1, ...], one value per channel of [N, C, *].
        let mut per_channel = vec![1; s.len() - 1];
        per_channel[0] = c;
        affine(y, weight, bias, &per_channel)
    }
}
