//! ResNet-20's 3x3 convolutions against a 1024^3 matrix product on the same adapter:
//! `cargo run --release --example conv3x3`.
//!
//! Batch 64, 16 channels at 32 x 32, 32 at 16 x 16 and 64 at 8 x 8 (the three stages; each
//! 0.30 GFLOP per pass), padding 1. Per shape, three forward + backward passes after a
//! warm-up, timed per kernel by the device's profiler (GPU timestamps, or on llvmpipe each
//! dispatch submitted alone and timed from the host); each convolution kernel's GFLOP/s (the
//! forward, the input gradient and the weight gradient are one pass's FLOPs each) beside the
//! product's. The issue 14 target: 60 GFLOP/s or better for all three.

use std::collections::BTreeMap;

use webgrad::{Conv2dParams, Device, DeviceOptions, Result, Tensor};

const REPS: usize = 3;

/// Kernel name -> total milliseconds, from a profile report.
fn kernel_ms(report: &str) -> BTreeMap<String, f64> {
    report
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.first()?.to_string(), w.get(2)?.parse().ok()?))
        })
        .collect()
}

/// Runs `f` once to warm up, then `REPS` times under a fresh profile.
fn profiled(dev: &Device, f: impl Fn() -> Result<()>) -> Result<BTreeMap<String, f64>> {
    f()?;
    dev.sync()?;
    dev.profile_reset();
    for _ in 0..REPS {
        f()?;
    }
    dev.sync()?;
    Ok(kernel_ms(&dev.profile_report().unwrap_or_default()))
}

fn main() -> Result<()> {
    let dev = Device::with_options(DeviceOptions::default().with_profile(true))?;
    println!("adapter: {}", dev.info());
    let (a, b) = (
        Tensor::randn(&dev, &[1024, 1024])?,
        Tensor::randn(&dev, &[1024, 1024])?,
    );
    let product = profiled(&dev, || a.matmul(&b)?.sum().map(drop))?;
    let matmul_ms: f64 = product
        .iter()
        .filter(|(k, _)| k.starts_with("matmul"))
        .map(|(_, ms)| ms)
        .sum();
    let matmul = 2.0 * 1024f64.powi(3) * REPS as f64 / matmul_ms / 1e6;
    println!("matmul 1024^3: {matmul:.1} GFLOP/s\n");
    println!("| shape | kernel | ms per pass | GFLOP/s | vs matmul |");
    println!("|---|---|---|---|---|");
    for (c, hw) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let n = 64;
        let x = Tensor::randn(&dev, &[n, c, hw, hw])?.requires_grad();
        let w = Tensor::randn(&dev, &[c, c, 3, 3])?.requires_grad();
        let g = Tensor::ones(&dev, &[n, c, hw, hw])?;
        let p = Conv2dParams::default().padding(1);
        let times = profiled(&dev, || x.conv2d(&w, None, p)?.backward_with(&g))?;
        let gflop = 2.0 * (n * c * hw * hw * c * 9) as f64 / 1e9;
        for (kernel, ms) in times.iter().filter(|(k, _)| k.starts_with("conv_")) {
            let ms = ms / REPS as f64;
            let rate = gflop / ms * 1e3;
            println!(
                "| {n}x{c}x{hw}x{hw} | {kernel} | {ms:.1} | {rate:.1} | {:.2}x |",
                rate / matmul
            );
        }
    }
    Ok(())
}
