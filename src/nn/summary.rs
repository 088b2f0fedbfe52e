//! A model summary: each layer's output shape, parameter count and receptive field.

use super::{Module, Sequential};
use crate::error::Result;
use crate::tape::no_grad;
use crate::tensor::Tensor;

/// One row of a [`summary`].
#[derive(Clone, Debug)]
pub struct LayerSummary {
    /// The layer's name in the model (`conv1`).
    pub name: String,
    /// What the layer is, e.g. `Conv2d(1, 6, k=5, s=1, p=2)`.
    pub layer: String,
    /// The layer's output shape for the given input shape.
    pub output_shape: Vec<usize>,
    /// The layer's trainable values.
    pub parameters: usize,
    /// Receptive field (pixels along one axis) of one output value of this layer.
    pub receptive_field: usize,
}

/// Runs a zero input of `input_shape` through the model's layers and tabulates them.
/// Returns the rows and the table as text.
pub fn summary(model: &Sequential, input_shape: &[usize]) -> Result<(Vec<LayerSummary>, String)> {
    let dev = match model.parameters().first() {
        Some(p) => p.device().clone(),
        None => crate::Device::new()?,
    };
    let mut rows = Vec::new();
    let (mut field, mut jump) = (1usize, 1usize);
    no_grad(|| -> Result<()> {
        let mut h = Tensor::zeros(&dev, input_shape)?;
        for (name, layer) in model.layers() {
            h = layer.forward(&h)?;
            let (k, s) = layer.kernel_stride();
            field += (k - 1) * jump;
            jump *= s;
            rows.push(LayerSummary {
                name: name.to_string(),
                layer: layer.describe(),
                output_shape: h.shape().to_vec(),
                parameters: layer.num_parameters(),
                receptive_field: field,
            });
        }
        Ok(())
    })?;
    let mut text = format!(
        "{:<8} {:<30} {:<18} {:>10} {:>8}\n",
        "name", "layer", "output", "params", "field"
    );
    for r in &rows {
        text += &format!(
            "{:<8} {:<30} {:<18} {:>10} {:>8}\n",
            r.name,
            r.layer,
            format!("{:?}", r.output_shape),
            r.parameters,
            r.receptive_field
        );
    }
    let total: usize = rows.iter().map(|r| r.parameters).sum();
    text += &format!("total parameters: {total}\n");
    Ok((rows, text))
}
