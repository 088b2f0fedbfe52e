//! The page test and the page benchmark, as plain async Rust (also run natively by this
//! crate's tests). Reports are JSON, read by `web/tests/page.test.mjs`.

use serde_json::{json, Value};
use web_time::Instant;
use webgrad::diagnostics::compile_every_shader;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::Module;
use webgrad::optim::{Adam, Optimizer};
use webgrad::{no_grad, Device, DeviceOptions, Reduction, Result, Tensor};

use crate::reference::{run_lenet_step, run_ops, Check, Reference};

fn checks_json(checks: &[Check]) -> Value {
    checks
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "ok": c.ok,
                // JSON has no infinity: a case that failed to run reports null.
                "worst": c.worst.is_finite().then_some(c.worst),
                "detail": c.detail,
                "ms": c.ms,
            })
        })
        .collect()
}

/// PyTorch's reference cases on the default device's adapter: for every kernel class it can
/// run, the checks of every op-case file (`files`: name and bytes, e.g. `ops.safetensors`) and
/// of the LeNet-5 step, and the device's error state afterwards (a pipeline the browser refused
/// shows there); `cases` lists the op cases run.
///
/// `only`: run only the cases whose name contains it (and the LeNet-5 step only if it is
/// `lenet`), for a look at one case.
pub async fn references(
    files: &[(&str, &[u8])],
    lenet: &[u8],
    only: Option<&str>,
) -> Result<Value> {
    let sets = files
        .iter()
        .map(|(name, bytes)| Reference::parse(bytes, name))
        .collect::<Result<Vec<_>>>()?;
    let lenet = Reference::parse(lenet, "lenet5_step.safetensors")?;
    // The cases the checks must cover, each with a check named `case.role`.
    let cases: Vec<String> = sets
        .iter()
        .flat_map(Reference::cases)
        .filter(|c| only.is_none_or(|o| c.contains(o)))
        .collect();
    let dev = Device::new_async().await?;
    let mut classes = Vec::new();
    for class in dev.runnable_kernel_classes() {
        let d = Device::with_options_async(DeviceOptions::default().force_kernels(class)).await?;
        let mut checks = Vec::new();
        for set in &sets {
            checks.extend(run_ops(set, &d, only).await);
        }
        if only.is_none_or(|o| o == "lenet") {
            checks.extend(run_lenet_step(&lenet, &d).await?);
        }
        let device_error = d.sync_async().await.err().map(|e| e.to_string());
        classes.push(json!({
            "class": class.name(),
            "checks": checks_json(&checks),
            "device_error": device_error,
        }));
    }
    Ok(json!({ "adapter": dev.info().to_string(), "cases": cases, "classes": classes }))
}

/// What the device's WGSL compiler says of every shader module.
pub async fn shaders() -> Result<Value> {
    let dev = Device::new_async().await?;
    let shaders: Vec<Value> = compile_every_shader(&dev)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "errors": s.errors,
                "warnings": s.warnings,
                "skipped": s.skipped,
                "ms": s.millis,
            })
        })
        .collect();
    Ok(json!({ "adapter": dev.info().to_string(), "shaders": shaders }))
}

/// The errors of the blocking calls (in a page the documented [`webgrad::Error::Blocking`];
/// natively none).
pub async fn blocking() -> Result<Value> {
    let dev = Device::new_async().await?;
    blocking_errors(&dev)
}

/// What each blocking call returns (in a page: the documented [`webgrad::Error::Blocking`]).
fn blocking_errors(dev: &Device) -> Result<Value> {
    let text = |r: Result<()>| r.err().map(|e| e.to_string());
    let t = Tensor::zeros(dev, &[1])?;
    Ok(json!({
        "Device::new": text(Device::new().map(drop)),
        "Device::sync": text(dev.sync()),
        "Tensor::to_vec": text(t.to_vec().map(drop)),
        "Tensor::item": text(t.item().map(drop)),
    }))
}

/// LeNet-5 timings on random inputs: the first training step (pipelines compiled on the way),
/// `steps` more (forward, cross-entropy, backward, Adam, the loss read back), and two inference
/// passes at `infer_batch` (the first compiles the inference pipelines).
pub async fn bench(dev: &Device, batch: usize, steps: usize, infer_batch: usize) -> Result<Value> {
    dev.manual_seed(0);
    let model = LeNet5::build(dev, LeNetFlavour::Modern)?;
    let mut opt = Adam::new(model.parameters(), 1e-3)?;
    let x = Tensor::rand(dev, &[batch, 1, 28, 28])?;
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let mut train_ms = Vec::new();
    for _ in 0..=steps {
        let start = Instant::now();
        let loss = model.forward(&x)?.cross_entropy(&labels, Reduction::Mean)?;
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
        loss.item_async().await?;
        train_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let first_ms = train_ms.remove(0);
    let xi = Tensor::rand(dev, &[infer_batch, 1, 28, 28])?;
    let mut infer_ms = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let classes = no_grad(|| model.forward(&xi)?.argmax(1, false))?;
        classes.to_vec_async().await?;
        infer_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(json!({
        "adapter": dev.info().to_string(),
        "first_ms": first_ms,
        "train_ms": train_ms,
        "first_infer_ms": infer_ms[0],
        "infer_ms": &infer_ms[1..],
    }))
}
