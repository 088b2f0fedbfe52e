//! `Sequential`: named layers applied in order; parameter names are `child.param`.

use super::Module;
use crate::error::Result;
use crate::tensor::Tensor;

/// Layers run one after the other. Children are named (`conv1`, `fc1`, ...), and parameters
/// are reported as `name.weight`, as PyTorch names them in a module with named children.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a layer under `name` (use the index, "0", "1", ..., for PyTorch's
    /// `nn.Sequential` naming).
    pub fn add(mut self, name: &str, layer: impl Module + 'static) -> Sequential {
        self.layers.push((name.to_string(), Box::new(layer)));
        self
    }

    /// The layers with their names, in order.
    pub fn layers(&self) -> impl Iterator<Item = (&str, &dyn Module)> {
        self.layers.iter().map(|(n, l)| (n.as_str(), l.as_ref()))
    }
}

fn prefixed(name: &str, items: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    items
        .into_iter()
        .map(|(p, t)| (format!("{name}.{p}"), t))
        .collect()
}

impl Module for Sequential {
    /// Runs the layers in order. A layer followed by a ReLU runs both in one pass when it
    /// can (`Module::forward_relu`: Linear and Conv2d apply the ReLU as they store their
    /// output), and Conv2d, ReLU, MaxPool2d run as `conv2d_relu_max_pool2d`; the result is
    /// the same.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let mut i = 0;
        while i < self.layers.len() {
            let layer = &self.layers[i].1;
            let next_is_relu = self.layers.get(i + 1).is_some_and(|(_, l)| l.is_relu());
            let pool = self
                .layers
                .get(i + 2)
                .and_then(|(_, l)| l.max_pool_params());
            if let Some(fused) = pool
                .filter(|_| next_is_relu)
                .and_then(|pool| layer.forward_relu_max_pool(&h, pool))
            {
                h = fused?;
                i += 3;
                continue;
            }
            let fused = if next_is_relu {
                layer.forward_relu(&h)
            } else {
                None
            };
            match fused {
                Some(fused) => {
                    h = fused?;
                    i += 2;
                }
                None => {
                    h = layer.forward(&h)?;
                    i += 1;
                }
            }
        }
        Ok(h)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .flat_map(|(n, l)| prefixed(n, l.named_parameters()))
            .collect()
    }
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .flat_map(|(n, l)| prefixed(n, l.named_buffers()))
            .collect()
    }
    fn set_training(&mut self, training: bool) {
        for (_, l) in &mut self.layers {
            l.set_training(training);
        }
    }
    fn describe(&self) -> String {
        format!("Sequential({} layers)", self.layers.len())
    }
}
