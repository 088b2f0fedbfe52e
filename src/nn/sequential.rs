//! `Sequential`: named layers applied in order; parameter names are `child.param`.

use super::{Counter, Module};
use crate::error::Result;
use crate::tensor::Tensor;

/// Layers run one after the other. Children are named (`conv1`, `fc1`, ...), and parameters
/// are reported as `name.weight`, as PyTorch names them in a module with named children.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// An empty model.
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

fn prefixed<T>(name: &str, items: Vec<(String, T)>) -> Vec<(String, T)> {
    items
        .into_iter()
        .map(|(p, t)| (format!("{name}.{p}"), t))
        .collect()
}

impl Module for Sequential {
    /// Runs the layers in order. (Conv2d or Linear followed by ReLU, and then a 2 x 2
    /// MaxPool2d, run as fused kernels whatever module calls them: see `fusion.rs`.)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for (name, layer) in &self.layers {
            h = crate::graph::scope(name, || layer.forward(&h))?;
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
    fn named_counters(&self) -> Vec<(String, Counter)> {
        self.layers
            .iter()
            .flat_map(|(n, l)| prefixed(n, l.named_counters()))
            .collect()
    }
    fn set_training(&mut self, training: bool) {
        for (_, l) in &mut self.layers {
            l.set_training(training);
        }
    }
    fn is_training(&self) -> Option<bool> {
        self.layers.iter().find_map(|(_, l)| l.is_training())
    }
    fn describe(&self) -> String {
        format!("Sequential({} layers)", self.layers.len())
    }
}
