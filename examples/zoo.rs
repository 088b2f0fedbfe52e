//! The benchmark zoo: `cargo run --release --example zoo [-- --steps N] [--models a,b]
//! [--pipelines]` (or `cargo bench`, `cargo bench --bench zoo -- [flags]`).
//!
//! Times five models of `webgrad::models` at batch 64 on random inputs: LeNet-5 (Modern) and
//! the MLP with SGD momentum 0.9, PyTorch's MNIST example network with Adadelta (lr 1.0, as
//! the example), ResNet-20 and the VGG-style net with SGD momentum 0.9 and weight decay
//! 5e-4. Per model, on a fresh device (so that the first step creates every pipeline the
//! model needs): the first training step, the median training step (zero_grad, forward, loss,
//! backward, optimizer step, then a sync) and the median inference at batch 1,000 (eval
//! mode, no_grad, argmax). When `python3 -c "import torch"` works it runs
//! `benches/torch_zoo.py` (the same models, 2 threads) before and after webgrad's
//! measurements and prints one markdown table with the ratios webgrad / PyTorch (the mean of
//! PyTorch's two runs: the machine's speed drifts). `--models` picks some of `lenet5`, `mlp`,
//! `mnistnet`, `resnet20`, `vgg`; `--steps` sets every model's timed steps (default: 200 for
//! the small models, 10 for the MNIST network, 5 for the CIFAR nets, whose inference runs
//! once after a warm-up run). `WEBGRAD_PROFILE=1`
//! prints each model's per-kernel table over its timed steps; `--pipelines` prints what each
//! pipeline of its first step costs to compile (created one at a time on a fresh device),
//! largest first, which is most of the first step.

use std::collections::HashMap;
use std::time::Instant;

#[path = "common/compile_times.rs"]
mod compile_times;

use webgrad::diagnostics::{self, PipelineSpec};
use webgrad::models::{LeNet5, LeNetFlavour, Mlp, MnistNet, ResNet20, VggNet};
use webgrad::nn::Module;
use webgrad::optim::{Adadelta, Optimizer, Sgd};
use webgrad::{no_grad, Device, Error, Reduction, Result, Tensor};

/// One model of the zoo; the same table is in benches/torch_zoo.py.
struct Spec {
    name: &'static str,
    /// One sample's shape.
    sample: [usize; 3],
    /// Timed training steps (after 3 warm-up steps) unless `--steps` says otherwise.
    steps: usize,
    /// Timed inference runs at batch 1,000 (after one warm-up run).
    infer_reps: usize,
}

const ZOO: [Spec; 5] = [
    Spec {
        name: "lenet5",
        sample: [1, 28, 28],
        steps: 200,
        infer_reps: 20,
    },
    Spec {
        name: "mlp",
        sample: [1, 28, 28],
        steps: 200,
        infer_reps: 20,
    },
    Spec {
        name: "mnistnet",
        sample: [1, 28, 28],
        steps: 10,
        infer_reps: 3,
    },
    Spec {
        name: "resnet20",
        sample: [3, 32, 32],
        steps: 5,
        infer_reps: 1,
    },
    Spec {
        name: "vgg",
        sample: [3, 32, 32],
        steps: 5,
        infer_reps: 1,
    },
];

const BATCH: usize = 64;

/// A fresh model, its optimizer, and whether the model returns log-probabilities (then the
/// loss is `nll_loss`, else `cross_entropy`).
type Built = (Box<dyn Module>, Box<dyn Optimizer>, bool);

fn build(dev: &Device, name: &str) -> Result<Built> {
    let sgd = |model: &dyn Module, weight_decay: f32| -> Result<Box<dyn Optimizer>> {
        Ok(Box::new(
            Sgd::new(model.parameters(), 0.05)?
                .with_momentum(0.9)
                .with_weight_decay(weight_decay),
        ))
    };
    Ok(match name {
        "lenet5" => {
            let m = LeNet5::build(dev, LeNetFlavour::Modern)?;
            let o = sgd(&m, 0.0)?;
            (Box::new(m), o, false)
        }
        "mlp" => {
            let m = Mlp::build(dev)?;
            let o = sgd(&m, 0.0)?;
            (Box::new(m), o, false)
        }
        "mnistnet" => {
            let m = MnistNet::build(dev)?;
            let o = Box::new(Adadelta::new(m.parameters(), 1.0)?);
            (Box::new(m), o, true)
        }
        "resnet20" => {
            let m = ResNet20::new(dev, 3, 10)?;
            let o = sgd(&m, 5e-4)?;
            (Box::new(m), o, false)
        }
        "vgg" => {
            let m = VggNet::build(dev)?;
            let o = sgd(&m, 5e-4)?;
            (Box::new(m), o, false)
        }
        _ => return Err(Error::Invalid(format!("unknown model {name}"))),
    })
}

/// webgrad's timings of one model, in milliseconds.
struct Timing {
    first: f64,
    step: f64,
    infer: f64,
    /// The pipelines the first step created.
    pipelines: Vec<PipelineSpec>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(spec: &Spec, steps: usize) -> Result<Timing> {
    let dev = Device::new()?;
    let (mut model, mut opt, log_probs) = build(&dev, spec.name)?;
    let mut shape = vec![BATCH];
    shape.extend(spec.sample);
    let xs: Vec<Tensor> = (0..4)
        .map(|_| Tensor::rand(&dev, &shape))
        .collect::<Result<_>>()?;
    let labels: Vec<Vec<usize>> = (0..4)
        .map(|j| (0..BATCH).map(|i| (i * 7 + j) % 10).collect())
        .collect();
    let mut step = |i: usize| -> Result<()> {
        let out = model.forward(&xs[i % 4])?;
        let loss = if log_probs {
            out.nll_loss(&labels[i % 4], Reduction::Mean)?
        } else {
            out.cross_entropy(&labels[i % 4], Reduction::Mean)?
        };
        opt.zero_grad();
        loss.backward()?;
        opt.step()?;
        dev.sync()
    };
    let start = Instant::now();
    step(0)?;
    let first = start.elapsed().as_secs_f64() * 1e3;
    let pipelines = diagnostics::created_pipelines(&dev);
    for i in 1..3 {
        step(i)?;
    }
    dev.profile_reset();
    let mut times = Vec::with_capacity(steps);
    for i in 0..steps {
        let start = Instant::now();
        step(i)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    if let Some(table) = dev.profile_report() {
        println!(
            "{}: per-kernel time over {steps} training steps (WEBGRAD_PROFILE=1):\n{table}",
            spec.name
        );
    }
    let step_ms = median(times);

    model.set_training(false);
    shape[0] = 1000;
    let xb = Tensor::rand(&dev, &shape)?;
    let infer = || -> Result<()> {
        no_grad(|| model.forward(&xb)?.argmax(1, false).map(|_| ()))?;
        dev.sync()
    };
    infer()?;
    dev.profile_reset();
    let mut times = Vec::with_capacity(spec.infer_reps);
    for _ in 0..spec.infer_reps {
        let start = Instant::now();
        infer()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    if let Some(table) = dev.profile_report() {
        println!(
            "{}: per-kernel time over {} inference runs at batch 1000:\n{table}",
            spec.name, spec.infer_reps
        );
    }
    Ok(Timing {
        first,
        step: step_ms,
        infer: median(times),
        pipelines,
    })
}

/// Each of `specs` compiled alone on a fresh device: the slowest `top`, and the total.
fn print_compile_times(name: &str, specs: &[PipelineSpec], top: usize) -> Result<()> {
    let times = compile_times::slowest_first(specs)?;
    let total: f64 = times.iter().map(|t| t.ms + t.module_ms).sum();
    println!(
        "{name}: {} pipelines in the first step, {total:.0} ms to compile them one by one",
        times.len()
    );
    for t in times.iter().take(top) {
        let s = &t.spec;
        let ms = t.ms + t.module_ms;
        let overrides = compile_times::overrides(s);
        println!("  {ms:>7.1} ms  {} {} {overrides}", s.shader, s.entry);
    }
    Ok(())
}

/// PyTorch's timings per model from one run of the companion script, or `None` without
/// torch.
fn torch_run(models: &[&str], steps: Option<usize>) -> Option<HashMap<String, Timing>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_zoo.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.args([script, "--models", &models.join(",")]);
    if let Some(s) = steps {
        cmd.args(["--steps", &s.to_string()]);
    }
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("PyTorch: {text}");
    let mut res = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("zoo ")) {
        let mut words = line.split_whitespace().skip(1);
        let name = words.next()?.to_string();
        let fields: HashMap<&str, f64> = words
            .filter_map(|w| w.split_once('='))
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect();
        res.insert(
            name,
            Timing {
                first: *fields.get("first_ms")?,
                step: *fields.get("step_ms")?,
                infer: *fields.get("infer_ms")?,
                pipelines: Vec::new(),
            },
        );
    }
    Some(res)
}

/// `12.3 ms` below 10 s, else seconds.
fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let steps: Option<usize> = match value("--steps") {
        Some(s) => Some(
            s.parse()
                .ok()
                .filter(|&n: &usize| n > 0)
                .ok_or_else(|| Error::Invalid(format!("--steps {s}: not a positive number")))?,
        ),
        None => None,
    };
    let names: Vec<String> = match value("--models") {
        Some(m) => m.split(',').map(str::to_string).collect(),
        None => ZOO.iter().map(|s| s.name.to_string()).collect(),
    };
    let specs: Vec<&Spec> = names
        .iter()
        .map(|n| {
            ZOO.iter().find(|s| s.name == n).ok_or_else(|| {
                let all: Vec<&str> = ZOO.iter().map(|s| s.name).collect();
                Error::Invalid(format!("unknown model {n}; the zoo has {}", all.join(", ")))
            })
        })
        .collect::<Result<_>>()?;
    let chosen: Vec<&str> = specs.iter().map(|s| s.name).collect();

    let before = torch_run(&chosen, steps);
    println!("adapter: {}", Device::new()?.info());
    let mut ours = Vec::new();
    for spec in &specs {
        let n = steps.unwrap_or(spec.steps);
        let t = bench(spec, n)?;
        println!(
            "webgrad {}: first step {}, step {} (median of {n}), inference b1000 {}",
            spec.name,
            ms(t.first),
            ms(t.step),
            ms(t.infer)
        );
        if args.iter().any(|a| a == "--pipelines") {
            print_compile_times(spec.name, &t.pipelines, 8)?;
        }
        ours.push(t);
    }
    let after = before.as_ref().and_then(|_| torch_run(&chosen, steps));

    println!(
        "\n| model | webgrad step | PyTorch step | ratio | webgrad infer b1000 | PyTorch infer \
         | ratio | first step (PyTorch) |\n|---|---|---|---|---|---|---|---|"
    );
    for (spec, t) in specs.iter().zip(&ours) {
        let torch = |f: fn(&Timing) -> f64| {
            let runs: Vec<f64> = [&before, &after]
                .into_iter()
                .filter_map(|r| r.as_ref()?.get(spec.name).map(f))
                .collect();
            (!runs.is_empty()).then(|| runs.iter().sum::<f64>() / runs.len() as f64)
        };
        let cell = |v: Option<f64>| v.map_or("-".to_string(), ms);
        let ratio =
            |ours: f64, v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}x", ours / v));
        let (step, infer, first) = (torch(|t| t.step), torch(|t| t.infer), torch(|t| t.first));
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} ({}) |",
            spec.name,
            ms(t.step),
            cell(step),
            ratio(t.step, step),
            ms(t.infer),
            cell(infer),
            ratio(t.infer, infer),
            ms(t.first),
            cell(first)
        );
    }
    if before.is_none() {
        println!("(PyTorch not available: pip install torch for the ratios)");
    }
    Ok(())
}
