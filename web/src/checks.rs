//! The page test and the page benchmark, as plain async Rust (also run natively by this
//! crate's tests). Reports are JSON, read by `web/tests/page.test.mjs`.

use serde_json::{json, Value};
use web_time::Instant;
use webgrad::diagnostics::{compile_every_shader, created_pipelines, time_pipelines, PipelineSpec};
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::{Module, Sequential};
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

/// LeNet-5 (modern), its Adam optimizer, random inputs at `batch` and their labels.
type Lenet = (Sequential, Adam, Tensor, Vec<usize>);

fn lenet(dev: &Device, batch: usize) -> Result<Lenet> {
    dev.manual_seed(0);
    let model = LeNet5::build(dev, LeNetFlavour::Modern)?;
    let opt = Adam::new(model.parameters(), 1e-3)?;
    let x = Tensor::rand(dev, &[batch, 1, 28, 28])?;
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    Ok((model, opt, x, labels))
}

/// One training step (forward, cross-entropy, backward, Adam, the loss read back); its
/// milliseconds.
async fn train_step((model, opt, x, labels): &mut Lenet) -> Result<f64> {
    let start = Instant::now();
    let loss = model.forward(x)?.cross_entropy(labels, Reduction::Mean)?;
    opt.zero_grad();
    loss.backward()?;
    opt.step()?;
    loss.item_async().await?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// One inference pass (the classes read back); its milliseconds.
async fn infer(model: &Sequential, x: &Tensor) -> Result<f64> {
    let start = Instant::now();
    let classes = no_grad(|| model.forward(x)?.argmax(1, false))?;
    classes.to_vec_async().await?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// LeNet-5 timings on random inputs: the first training step (pipelines compiled on the way),
/// the wait for the pipelines it left compiling in the background (`ready_ms`; 0 where none
/// do), `steps` more (forward, cross-entropy, backward, Adam, the loss read back), and three
/// inference passes at `infer_batch` (the first compiles the inference pipelines).
pub async fn bench(dev: &Device, batch: usize, steps: usize, infer_batch: usize) -> Result<Value> {
    let mut net = lenet(dev, batch)?;
    let first_ms = train_step(&mut net).await?;
    let start = Instant::now();
    dev.pipelines_compiled_async().await?;
    let ready_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut train_ms = Vec::new();
    for _ in 0..steps {
        train_ms.push(train_step(&mut net).await?);
    }
    let xi = Tensor::rand(dev, &[infer_batch, 1, 28, 28])?;
    let mut infer_ms = Vec::new();
    for _ in 0..3 {
        infer_ms.push(infer(&net.0, &xi).await?);
    }
    Ok(json!({
        "adapter": dev.info().to_string(),
        "first_ms": first_ms,
        "ready_ms": ready_ms,
        "train_ms": train_ms,
        "first_infer_ms": infer_ms[0],
        "infer_ms": &infer_ms[1..],
    }))
}

/// Where LeNet-5's time goes in the page: after a warm-up (pipelines compiled), the kernel
/// table ([`Device::profile_report`]) of `steps` training steps at `batch`, then of one
/// inference pass at `infer_batch`. `dev` must profile (GPU timestamps: the page's host clock
/// sees only the recording).
pub async fn profile(
    dev: &Device,
    batch: usize,
    steps: usize,
    infer_batch: usize,
) -> Result<Value> {
    let mut net = lenet(dev, batch)?;
    let xi = Tensor::rand(dev, &[infer_batch, 1, 28, 28])?;
    train_step(&mut net).await?;
    dev.pipelines_compiled_async().await?;
    train_step(&mut net).await?;
    infer(&net.0, &xi).await?;
    let table = |dev: &Device| dev.profile_report().unwrap_or_default();
    dev.sync_async().await?;
    dev.profile_reset();
    for _ in 0..steps {
        train_step(&mut net).await?;
    }
    dev.sync_async().await?;
    let step = table(dev);
    dev.profile_reset();
    infer(&net.0, &xi).await?;
    dev.sync_async().await?;
    Ok(json!({ "adapter": dev.info().to_string(), "step": step, "inference": table(dev) }))
}

fn specs_json(specs: &[PipelineSpec]) -> Value {
    specs
        .iter()
        .map(|s| {
            json!({
                "shader": s.shader,
                "entry": s.entry,
                "bindings": s.bindings,
                "kinds": s.kinds,
                "constants": s.constants,
            })
        })
        .collect()
}

/// The pipelines `dev` creates for LeNet-5's first training step at `batch` and then its
/// first inference at `infer_batch` (as [`bench`]), with those two times:
/// `{ "step": [spec..], "inference": [spec..], "first_ms", "first_infer_ms" }`, the specs as
/// [`pipeline_times`] takes them.
pub async fn pipeline_list(dev: &Device, batch: usize, infer_batch: usize) -> Result<Value> {
    let mut net = lenet(dev, batch)?;
    let first_ms = train_step(&mut net).await?;
    let step = created_pipelines(dev);
    // What compiled in the background meanwhile, created (from the browser's cache) by the
    // next step.
    let start = Instant::now();
    dev.pipelines_compiled_async().await?;
    let ready_ms = start.elapsed().as_secs_f64() * 1e3;
    train_step(&mut net).await?;
    let steady = created_pipelines(dev);
    let xi = Tensor::rand(dev, &[infer_batch, 1, 28, 28])?;
    let first_infer_ms = infer(&net.0, &xi).await?;
    let all = created_pipelines(dev);
    Ok(json!({
        "adapter": dev.info().to_string(),
        "step": specs_json(&step),
        "background": specs_json(&steady[step.len()..]),
        "inference": specs_json(&all[steady.len()..]),
        "first_ms": first_ms,
        "ready_ms": ready_ms,
        "first_infer_ms": first_infer_ms,
    }))
}

/// Compiles each pipeline of `specs` (a JSON list as [`pipeline_list`] writes) on `dev`, one
/// at a time, each awaited: the list with `module_ms` (its module's compile, on a module's
/// first pipeline) and `ms` added. On a fresh browser's device the times are free of caches.
pub async fn pipeline_times(dev: &Device, specs: &Value) -> Result<Value> {
    let bad = || webgrad::Error::Invalid("a pipeline spec as pipeline_list writes".into());
    let specs = specs
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|s| {
            Some(PipelineSpec {
                shader: s["shader"].as_str()?.into(),
                entry: s["entry"].as_str()?.into(),
                bindings: s["bindings"].as_u64()? as u32,
                kinds: s["kinds"].as_u64()? as u32,
                constants: s["constants"]
                    .as_array()?
                    .iter()
                    .map(|c| Some((c[0].as_str()?.into(), c[1].as_u64()? as u32)))
                    .collect::<Option<_>>()?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    let times = time_pipelines(dev, &specs).await?;
    Ok(times
        .iter()
        .map(|t| {
            let mut v = specs_json(std::slice::from_ref(&t.spec))[0].take();
            v["module_ms"] = json!(t.module_ms);
            v["ms"] = json!(t.ms);
            v
        })
        .collect())
}
