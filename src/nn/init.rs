//! PyTorch's default initialisation, drawn from the device's seeded generator.

use crate::device::Device;
use crate::error::Result;
use crate::tensor::Tensor;

/// Uniform in [-bound, bound), as a leaf that requires grad.
pub(crate) fn uniform(dev: &Device, shape: &[usize], bound: f32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = {
        let mut rng = dev.rng().lock().unwrap();
        (0..n)
            .map(|_| (rng.uniform() * 2.0 - 1.0) * bound)
            .collect()
    };
    Ok(Tensor::from_vec(dev, data, shape)?.requires_grad())
}

/// PyTorch's Linear/Conv2d default: kaiming_uniform(a = sqrt(5)) for the weight, i.e.
/// bound 1 / sqrt(fan_in), and the same bound for the bias.
pub(crate) fn kaiming_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in.max(1) as f32).sqrt()
}
