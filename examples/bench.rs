//! The benchmark: `cargo run --release --example bench [-- --steps N]`.
//!
//! Prints one table: matmul GFLOP/s (square and LeNet's shapes), conv2d forward and backward
//! for LeNet's layers at batch 64, pooling, the LeNet-5 training step (median, p10, p90),
//! inference at batch 1000, the first step (pipeline creation included), and GPU memory after
//! 10 and after N steps. When `python3 -c "import torch"` works, it also runs
//! benches/torch_lenet.py before and after its own measurements and prints webgrad / PyTorch
//! ratios from the same run.

use std::time::Instant;

use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::Module;
use webgrad::optim::{Optimizer, Sgd};
use webgrad::{no_grad, Conv2dParams, Device, Pool2dParams, Reduction, Result, Tensor};

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Median milliseconds of `f` over `reps` runs after `warm` warm-up runs (synced each time).
fn time_ms(
    dev: &Device,
    warm: usize,
    reps: usize,
    f: &mut dyn FnMut() -> Result<()>,
) -> Result<f64> {
    for _ in 0..warm {
        f()?;
    }
    dev.sync()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        dev.sync()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(percentile(&t, 0.5))
}

fn main() -> Result<()> {
    // Steps 1-9 settle memory, 10-29 warm up, 30.. are timed: at least one must be.
    let steps: usize = match std::env::args().skip_while(|a| a != "--steps").nth(1) {
        None => 500,
        Some(v) => v.parse().ok().filter(|&n| n > 30).ok_or_else(|| {
            webgrad::Error::Invalid(format!("--steps {v}: give a whole number above 30"))
        })?,
    };
    let torch_before = torch_micro();
    let t0 = Instant::now();
    let dev = Device::new()?;
    let device_ms = t0.elapsed().as_secs_f64() * 1e3;
    println!("adapter: {}", dev.info());
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| {
        println!("{k:<46} {v}");
        rows.push((k.to_string(), v));
    };

    // The first training step on a fresh device: every pipeline is created here.
    let model = LeNet5::build(&dev, LeNetFlavour::Modern)?;
    let mut opt = Sgd::new(model.parameters(), 0.05)?.with_momentum(0.9);
    let xs: Vec<Tensor> = (0..4)
        .map(|_| Tensor::rand(&dev, &[64, 1, 28, 28]))
        .collect::<Result<_>>()?;
    let labels: Vec<Vec<usize>> = (0..4)
        .map(|j| (0..64).map(|i| (i * 7 + j) % 10).collect())
        .collect();
    let step = |i: usize, opt: &mut Sgd| -> Result<()> {
        let loss = model
            .forward(&xs[i % 4])?
            .cross_entropy(&labels[i % 4], Reduction::Mean)?;
        opt.zero_grad();
        loss.backward()?;
        opt.step()
    };
    let start = Instant::now();
    step(0, &mut opt)?;
    dev.sync()?;
    row("device creation", format!("{device_ms:.0} ms"));
    row(
        "first training step (pipelines created)",
        format!("{:.0} ms", start.elapsed().as_secs_f64() * 1e3),
    );

    // Training step: the step is recorded and submitted without readbacks; each timing syncs.
    for i in 1..10 {
        step(i, &mut opt)?;
    }
    dev.sync()?;
    let mem10 = dev.memory_allocated();
    dev.reset_peak_memory();
    dev.profile_reset();
    let mut times = Vec::new();
    for i in 10..steps {
        let s = Instant::now();
        step(i, &mut opt)?;
        dev.sync()?;
        if i >= 30 {
            times.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mem_n = dev.memory_allocated();
    if let Some(table) = dev.profile_report() {
        println!(
            "per-kernel time over {} steps (WEBGRAD_PROFILE=1):\n{table}",
            steps - 10
        );
    }
    times.sort_by(f64::total_cmp);
    let step_ms = percentile(&times, 0.5);
    row(
        &format!("LeNet-5 training step, batch 64 ({} steps)", times.len()),
        format!(
            "median {step_ms:.2} ms  p10 {:.2}  p90 {:.2}  ({:.0} img/s)",
            percentile(&times, 0.1),
            percentile(&times, 0.9),
            64.0 / step_ms * 1e3
        ),
    );
    row(
        "GPU memory after 10 steps",
        format!("{:.2} MiB", mem10 as f64 / 1048576.0),
    );
    row(
        &format!("GPU memory after {steps} steps"),
        format!("{:.2} MiB", mem_n as f64 / 1048576.0),
    );
    row(
        "peak GPU memory of a step (live tensors)",
        format!("{:.2} MiB", dev.peak_memory_in_use() as f64 / 1048576.0),
    );

    // Inference at batch 1000.
    let xb = Tensor::rand(&dev, &[1000, 1, 28, 28])?;
    dev.profile_reset();
    let infer_ms = time_ms(&dev, 3, 20, &mut || {
        no_grad(|| model.forward(&xb)?.argmax(1, false).map(|_| ()))
    })?;
    if let Some(table) = dev.profile_report() {
        println!("per-kernel time over 23 inference runs (WEBGRAD_PROFILE=1):\n{table}");
    }
    row(
        "LeNet-5 inference, batch 1000",
        format!("{infer_ms:.1} ms ({:.0} img/s)", 1000.0 / infer_ms * 1e3),
    );

    // Matmul.
    for (m, k, n, label) in [
        (256, 256, 256, "256^3"),
        (512, 512, 512, "512^3"),
        (1024, 1024, 1024, "1024^3"),
        (64, 400, 120, "LeNet fc1 64x400x120"),
        (64, 120, 84, "LeNet fc2 64x120x84"),
    ] {
        let a = Tensor::rand(&dev, &[m, k])?;
        let b = Tensor::rand(&dev, &[k, n])?;
        let reps = if m * n * k > 1 << 27 { 5 } else { 30 };
        let ms = time_ms(&dev, 2, reps, &mut || a.matmul(&b).map(|_| ()))?;
        row(
            &format!("matmul {label}"),
            format!(
                "{:.1} GFLOP/s ({ms:.2} ms)",
                2.0 * (m * n * k) as f64 / ms / 1e6
            ),
        );
    }

    // Convolutions and pooling at batch 64.
    for (name, xs, ws, pad) in [
        (
            "conv1 64x1x28x28 * 6x1x5x5 pad 2",
            [64, 1, 28, 28],
            [6, 1, 5, 5],
            2,
        ),
        (
            "conv2 64x6x14x14 * 16x6x5x5",
            [64, 6, 14, 14],
            [16, 6, 5, 5],
            0,
        ),
    ] {
        let x = Tensor::rand(&dev, &xs)?.requires_grad();
        let w = Tensor::rand(&dev, &ws)?.requires_grad();
        let b = Tensor::rand(&dev, &[ws[0]])?.requires_grad();
        let p = Conv2dParams::default().padding(pad);
        // The output is kept until the sync that ends each timing: conv2d's output is deferred
        // (computed when needed), and sync() computes the ones still held.
        let mut kept = None;
        let fwd = time_ms(&dev, 3, 30, &mut || {
            kept = Some(no_grad(|| x.conv2d(&w, Some(&b), p))?);
            Ok(())
        })?;
        drop(kept);
        let y = x.conv2d(&w, Some(&b), p)?;
        let g = Tensor::rand(&dev, y.shape())?;
        let both = time_ms(&dev, 3, 30, &mut || {
            let y = x.conv2d(&w, Some(&b), p)?;
            y.backward_with(&g)
        })?;
        row(&format!("{name} forward"), format!("{fwd:.2} ms"));
        row(
            &format!("{name} backward"),
            format!("{:.2} ms", (both - fwd).max(0.0)),
        );
    }
    let a = Tensor::rand(&dev, &[64, 6, 28, 28])?.requires_grad();
    let fwd = time_ms(&dev, 3, 30, &mut || {
        no_grad(|| a.max_pool2d(Pool2dParams::new(2)).map(|_| ()))
    })?;
    let y = a.max_pool2d(Pool2dParams::new(2))?;
    let g = Tensor::rand(&dev, y.shape())?;
    let both = time_ms(&dev, 3, 30, &mut || {
        a.max_pool2d(Pool2dParams::new(2))?.backward_with(&g)
    })?;
    row("max_pool2d 64x6x28x28 forward", format!("{fwd:.2} ms"));
    row(
        "max_pool2d 64x6x28x28 backward",
        format!("{:.2} ms", (both - fwd).max(0.0)),
    );

    torch_comparison(torch_before, step_ms, infer_ms);
    Ok(())
}

/// One run of the PyTorch companion when torch is importable: its output, and its training
/// step and inference medians (ms).
fn torch_micro() -> Option<(String, f64, f64)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_lenet.py");
    let out = std::process::Command::new("python3")
        .args([script, "micro"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let grab = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split("median ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let (step, infer) = (grab("train step bs64")?, grab("inference bs1000")?);
    Some((text, step, infer))
}

/// Prints PyTorch's runs (one before webgrad's measurements, one after: the machine's speed
/// drifts) and the ratios of webgrad's medians to the mean of PyTorch's.
fn torch_comparison(before: Option<(String, f64, f64)>, step_ms: f64, infer_ms: f64) {
    let Some(before) = before else {
        println!("PyTorch: not available (pip install torch numpy), no ratio printed");
        return;
    };
    let after = torch_micro().unwrap_or_else(|| before.clone());
    println!(
        "PyTorch before webgrad's measurements:\n{}",
        before.0.trim_end()
    );
    println!("PyTorch after:\n{}", after.0.trim_end());
    let (step, infer) = ((before.1 + after.1) / 2.0, (before.2 + after.2) / 2.0);
    println!(
        "training step: webgrad {step_ms:.2} ms / PyTorch {step:.2} ms (mean of {:.2} and {:.2}) = {:.2}x",
        before.1,
        after.1,
        step_ms / step
    );
    println!(
        "inference:     webgrad {infer_ms:.1} ms / PyTorch {infer:.1} ms (mean of {:.1} and {:.1}) = {:.2}x",
        before.2,
        after.2,
        infer_ms / infer
    );
}
