//! Numerical gradient checking: compares the tape's gradients with central finite differences.

use crate::error::{Error, Result};
use crate::tape::no_grad;
use crate::tensor::Tensor;

/// Settings for [`gradcheck`]. The GPU computes in f32, so the step is larger than PyTorch's
/// f64 default and the comparison uses a floor on the denominator.
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f32,
    /// Seed of the random weights that turn f's output into a scalar.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-2, seed: 7 }
    }
}

/// How far the analytic gradients are from the numerical ones.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// max |analytic - numeric| / max(0.1, |numeric|) over all input elements (the floor keeps
    /// f32 rounding noise on near-zero gradients from dominating).
    pub max_rel_error: f64,
    /// max |analytic - numeric|.
    pub max_abs_error: f64,
    /// (input index, element index) of the worst element.
    pub worst: (usize, usize),
}

/// Checks `f`'s backward against central finite differences with default options.
///
/// `f` maps the inputs to any tensor; it is reduced to the scalar `sum(f(x) * w)` with fixed
/// random weights `w`, so that every output element's gradient matters.
///
/// ```
/// # use webgrad::{Device, Tensor, gradcheck};
/// let dev = Device::new()?;
/// let x = Tensor::randn(&dev, &[3, 4])?;
/// let report = gradcheck(|t| t[0].tanh(), &[x])?;
/// assert!(report.max_rel_error < 1e-2);
/// # Ok::<(), webgrad::Error>(())
/// ```
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
) -> Result<GradcheckReport> {
    gradcheck_with(f, inputs, GradcheckOptions::default())
}

/// [`gradcheck`] with explicit options.
pub fn gradcheck_with(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradcheckOptions,
) -> Result<GradcheckReport> {
    let dev = inputs
        .first()
        .ok_or_else(|| Error::Invalid("gradcheck needs at least one input".into()))?
        .device()
        .clone();
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.detach().requires_grad()).collect();
    let out = f(&leaves)?;
    let mut rng = crate::rng::Rng::new(opts.seed);
    let weights: Vec<f32> = (0..out.numel())
        .map(|_| rng.uniform() * 2.0 - 1.0)
        .collect();
    let w = Tensor::from_slice(&dev, &weights, out.shape())?;
    out.mul(&w)?.sum()?.backward()?;

    let values: Vec<Vec<f32>> = inputs.iter().map(|t| t.to_vec()).collect::<Result<_>>()?;
    let objective = |vals: &[Vec<f32>]| -> Result<f64> {
        no_grad(|| {
            let ts: Vec<Tensor> = vals
                .iter()
                .zip(inputs)
                .map(|(v, t)| Tensor::from_slice(&dev, v, t.shape()))
                .collect::<Result<_>>()?;
            // The weighted sum in f64 on the host: a GPU sum in f32 would add rounding noise
            // that the finite difference then divides by 2 eps.
            let y = f(&ts)?.to_vec()?;
            Ok(y.iter()
                .zip(&weights)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum())
        })
    };
    let mut report = GradcheckReport {
        max_rel_error: 0.0,
        max_abs_error: 0.0,
        worst: (0, 0),
    };
    for (i, leaf) in leaves.iter().enumerate() {
        let analytic = match leaf.grad() {
            Some(g) => g.to_vec()?,
            None => vec![0.0; leaf.numel()],
        };
        for e in 0..leaf.numel() {
            let mut vals = values.clone();
            let x0 = vals[i][e];
            vals[i][e] = x0 + opts.eps;
            let plus = objective(&vals)?;
            vals[i][e] = x0 - opts.eps;
            let minus = objective(&vals)?;
            // The step actually taken in f32 may differ slightly from eps.
            let h = (x0 + opts.eps) as f64 - (x0 - opts.eps) as f64;
            let numeric = (plus - minus) / h;
            let abs = (analytic[e] as f64 - numeric).abs();
            let rel = abs / numeric.abs().max(0.1);
            if abs > report.max_abs_error {
                report.max_abs_error = abs;
            }
            if rel > report.max_rel_error || !rel.is_finite() {
                report.max_rel_error = rel;
                report.worst = (i, e);
            }
        }
    }
    Ok(report)
}
