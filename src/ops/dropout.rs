//! `dropout`: a seeded mask generated on the GPU, `shaders/dropout.wgsl`.

use crate::error::{Error, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("dropout");

kernel_params! {
    /// `Params` of `shaders/dropout.wgsl`.
    pub(crate) struct DropoutParams for "dropout" {
        len: u32,
        seed: u32,
        p: f32,
        scale: f32,
    }
}

pub(crate) struct Saved {
    mask: Tensor,
}

pub(crate) fn backward(s: &Saved, g: &Tensor) -> Result<Tensor> {
    let dev = g.device();
    let gx = Tensor::uninit(dev, g.shape())?;
    let n = g.numel();
    dev.dispatch(
        &SHADER,
        "dropout_backward",
        &[
            Bind::Read(g.buffer()),
            Bind::Read(s.mask.buffer()),
            Bind::Write(gx.buffer()),
        ],
        &DropoutParams {
            len: n as u32,
            ..Default::default()
        },
        groups(n),
    )?;
    Ok(gx)
}

impl Tensor {
    /// Zeroes each element with probability `p` and scales the rest by 1 / (1 - p) when
    /// `training`; the identity otherwise. The mask is drawn from the device's seeded
    /// generator ([`Device::manual_seed`](crate::Device::manual_seed)).
    pub fn dropout(&self, p: f32, training: bool) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Invalid(format!(
                "dropout probability has to be between 0 and 1, got {p}"
            )));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        if p == 1.0 {
            return self.mul_scalar(0.0);
        }
        let dev = self.device();
        let seed = dev.rng().lock().unwrap().next_u64() as u32;
        let n = self.numel();
        let y = dev.storage(n)?;
        let mask = Tensor::uninit(dev, self.shape())?;
        let scale = 1.0 / (1.0 - p);
        dev.dispatch(
            &SHADER,
            "dropout_forward",
            &[
                Bind::Read(self.buffer()),
                Bind::Write(y.buffer()),
                Bind::Write(mask.buffer()),
            ],
            &DropoutParams {
                len: n as u32,
                seed,
                p,
                scale,
            },
            groups(n),
        )?;
        Ok(Tensor::from_op(y, self.shape().to_vec(), &[self], || {
            Op::Dropout(Saved { mask })
        }))
    }
}
