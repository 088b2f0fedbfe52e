//! What LeNet-5's first training step costs natively: `cargo run --release --example
//! first_step`.
//!
//! Runs the first and second training step (batch 64, SGD) of the modern LeNet-5 on one
//! device, then creates each pipeline the step created, one at a time, on a fresh device
//! (`webgrad::diagnostics::time_pipelines`, as the page's `web/bench/pipelines.mjs` does in a
//! browser) and prints each one's compile time, largest first. The difference between the two
//! steps is pipeline creation; so is most of the table's total, unless a driver's shader cache
//! serves the table from the first step's compiles (NVIDIA's does: `__GL_SHADER_DISK_CACHE=0`
//! turns it off).

use std::time::Instant;

#[path = "common/compile_times.rs"]
mod compile_times;

use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::Module;
use webgrad::optim::{Optimizer, Sgd};
use webgrad::{diagnostics, Device, Reduction, Result, Tensor};

/// One training step of a fresh model on `dev`, in milliseconds (loss read back).
fn step(dev: &Device) -> Result<f64> {
    let model = LeNet5::build(dev, LeNetFlavour::Modern)?;
    let mut opt = Sgd::new(model.parameters(), 0.05)?;
    let x = Tensor::randn(dev, &[64, 1, 28, 28])?;
    let targets: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let start = Instant::now();
    opt.zero_grad();
    let loss = model
        .forward(&x)?
        .cross_entropy(&targets, Reduction::Mean)?;
    loss.backward()?;
    opt.step()?;
    loss.to_vec()?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

fn main() -> Result<()> {
    let dev = Device::new()?;
    println!("adapter: {}", dev.info());
    let (first, second) = (step(&dev)?, step(&dev)?);
    println!("first step {first:.0} ms, second {second:.0} ms");
    let specs = diagnostics::created_pipelines(&dev);
    let times = compile_times::slowest_first(&specs)?;
    println!("| ms | module ms | module | entry point | overrides |\n|---|---|---|---|---|");
    for t in &times {
        let (ms, module, s) = (t.ms, t.module_ms, &t.spec);
        let (shader, entry, overrides) = (&s.shader, &s.entry, compile_times::overrides(s));
        println!("| {ms:.1} | {module:.1} | {shader} | {entry} | {overrides} |");
    }
    let total: f64 = times.iter().map(|t| t.ms + t.module_ms).sum();
    println!("total {total:.0} ms over {} pipelines", times.len());
    Ok(())
}
