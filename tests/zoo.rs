//! One training step of every benchmark-zoo model against PyTorch
//! (`tests/reference/zoo_step.safetensors`, written by `tests/reference/zoo_step.py`): from
//! PyTorch's initial state_dict and batch, the logits, the loss, every parameter's gradient,
//! the parameters after one SGD step (lr 0.1) and the BatchNorm running statistics after it.
//!
//! Tolerances come from PyTorch's own float32 error: the script runs the step in float32 and
//! in float64 and stores, per tensor, the largest |float32 - float64|; webgrad (float32) may
//! differ from the float64 values by `ERR_MULTIPLE` times that, plus a floor of a few float32
//! roundings of the tensor's largest value (a tensor that float32 happened to get exactly
//! right would otherwise allow no rounding at all). MnistNet runs in eval mode, which turns
//! its dropouts off (it has no BatchNorm); the others train (BatchNorm on batch statistics).

mod common;
use common::*;
use webgrad::models::{LeNet5, LeNetFlavour, Mlp, MnistNet, ResNet20, VggNet};
use webgrad::nn::Module;
use webgrad::optim::{Optimizer, Sgd};
use webgrad::{Reduction, Tensor};

const FILE: &str = "zoo_step.safetensors";
/// How many times PyTorch's float32 error webgrad's may be (different summation orders).
const ERR_MULTIPLE: f64 = 8.0;
/// The floor, in float32 roundings (2^-24 relative) of the tensor's largest magnitude.
const FLOOR_ROUNDINGS: f64 = 8.0;
/// Kept gradient elements per tensor (the script's KEEP).
const KEEP: usize = 4096;

/// Every s-th element of `v`, s = ceil(len / KEEP): the script's subset of a gradient.
fn kept(v: &[f32]) -> Vec<f32> {
    v.iter().step_by(v.len().div_ceil(KEEP)).copied().collect()
}

/// The allowed error for `want`, whose float32 error in PyTorch was the reference's
/// `err[key]`.
fn tolerance(r: &Reference, model: &str, key: &str, want: &[f64]) -> f64 {
    let err = r.meta(model)["err"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("{model}: no err.{key}"));
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    ERR_MULTIPLE * err + FLOOR_ROUNDINGS * scale * 2f64.powi(-24)
}

fn assert_within(r: &Reference, model: &str, key: &str, got: &[f32], want: &[f64]) {
    let tol = tolerance(r, model, key, want);
    let worst = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (&g, w)| m.max((g as f64 - w).abs()));
    // Shown when a test fails (or with --nocapture): how webgrad's error compares.
    println!(
        "{model}.{key}: error {worst:.2e}, PyTorch float32's {:.2e}, allowed {tol:.2e}",
        r.meta(model)["err"][key].as_f64().unwrap_or(f64::NAN)
    );
    assert_close(got, want, tol, 0.0, &format!("{model}.{key}"));
}

/// Loads the reference's initial state into `model`, runs the step and checks everything.
fn step_matches_pytorch(name: &str, model: &mut dyn Module, log_probs: bool) {
    let r = Reference::load(FILE);
    let meta = r.meta(name);
    assert_eq!(meta["op"], "zoo_step");
    let lr = meta["lr"].as_f64().unwrap() as f32;

    // The state_dict names are PyTorch's.
    let mut names: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, r.names_under(&format!("{name}.init.")), "{name}");
    for (n, t) in model.state_dict() {
        let (data, shape) = r.get(name, &format!("init.{n}"));
        assert_eq!(t.shape(), shape.as_slice(), "{name}.{n}");
        t.write_from_slice(&data).unwrap();
    }
    // Training mode but for MnistNet, whose dropouts the reference turned off by eval mode.
    model.set_training(!log_probs);

    let x = r.tensor(name, "input");
    let target: Vec<usize> = r
        .get(name, "target")
        .0
        .iter()
        .map(|&v| v as usize)
        .collect();
    let logits = model.forward(&x).unwrap();
    let (want, shape) = r.get(name, "logits");
    assert_eq!(logits.shape(), shape.as_slice());
    assert_within(
        &r,
        name,
        "logits",
        &logits.to_vec().unwrap(),
        &to_f64(&want),
    );
    let loss = if log_probs {
        logits.nll_loss(&target, Reduction::Mean).unwrap()
    } else {
        logits.cross_entropy(&target, Reduction::Mean).unwrap()
    };
    let want = to_f64(&r.get(name, "loss").0);
    assert_within(&r, name, "loss", &loss.to_vec().unwrap(), &want);

    let mut opt = Sgd::new(model.parameters(), lr).unwrap();
    opt.zero_grad();
    loss.backward().unwrap();
    let params: Vec<(String, Tensor)> = model.named_parameters();
    let mut before = Vec::new();
    for (n, p) in &params {
        let key = format!("grad.{n}");
        let got = kept(&p.grad().unwrap().to_vec().unwrap());
        let want = to_f64(&r.get(name, &key).0);
        assert_within(&r, name, &key, &got, &want);
        before.push(kept(&p.to_vec().unwrap()));
    }
    opt.step().unwrap();

    // Plain SGD: each parameter moves to init - lr * grad; the step's own rounding is one
    // float32 rounding of the result.
    for ((n, p), init) in params.iter().zip(&before) {
        let key = format!("grad.{n}");
        let grad = to_f64(&r.get(name, &key).0);
        let want: Vec<f64> = init
            .iter()
            .zip(&grad)
            .map(|(&w, g)| w as f64 - lr as f64 * g)
            .collect();
        let tol = lr as f64 * tolerance(&r, name, &key, &grad)
            + want.iter().fold(0.0f64, |m, v| m.max(v.abs())) * 2f64.powi(-23);
        let got = kept(&p.to_vec().unwrap());
        assert_close(
            &got,
            &want,
            tol,
            0.0,
            &format!("{name}: {n} after the step"),
        );
    }
    for (n, b) in model.named_buffers() {
        let key = format!("after.{n}");
        let want = to_f64(&r.get(name, &key).0);
        assert_within(&r, name, &key, &b.to_vec().unwrap(), &want);
    }
}

#[test]
fn lenet5_step_matches_pytorch() {
    let mut m = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    step_matches_pytorch("lenet5", &mut m, false);
}

#[test]
fn mlp_step_matches_pytorch() {
    let mut m = Mlp::build(device()).unwrap();
    step_matches_pytorch("mlp", &mut m, false);
}

#[test]
fn mnistnet_step_matches_pytorch() {
    let mut m = MnistNet::build(device()).unwrap();
    step_matches_pytorch("mnistnet", &mut m, true);
}

#[test]
fn resnet20_step_matches_pytorch() {
    let mut m = ResNet20::new(device(), 3, 10).unwrap();
    step_matches_pytorch("resnet20", &mut m, false);
}

#[test]
fn vgg_step_matches_pytorch() {
    let mut m = VggNet::build(device()).unwrap();
    step_matches_pytorch("vgg", &mut m, false);
}

#[test]
fn resnet20_takes_fashion_mnist_and_refuses_bad_shapes() {
    let dev = device();
    let mut m = ResNet20::new(dev, 1, 10).unwrap();
    m.set_training(false);
    let y = m
        .forward(&Tensor::rand(dev, &[2, 1, 28, 28]).unwrap())
        .unwrap();
    assert_eq!(y.shape(), &[2, 10]);
    let e = m
        .forward(&Tensor::rand(dev, &[2, 28, 28]).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[2, 28, 28]"), "{e}");
    let e = m
        .forward(&Tensor::rand(dev, &[2, 3, 32, 32]).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("[2, 3, 32, 32]"), "{e}");
    assert!(ResNet20::new(dev, 0, 10).is_err());
    let e = webgrad::models::BasicBlock::new(dev, 16, 8, 2)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("16 -> 8"), "{e}");
}

#[test]
fn resnet20_counts_training_batches_in_every_batch_norm() {
    let dev = device();
    let mut m = ResNet20::new(dev, 1, 10).unwrap();
    let x = Tensor::rand(dev, &[2, 1, 8, 8]).unwrap();
    m.forward(&x).unwrap();
    m.eval();
    assert_eq!(m.is_training(), Some(false));
    m.forward(&x).unwrap();
    let counters = m.named_counters();
    assert_eq!(counters.len(), 19, "bn1 and two per block");
    assert_eq!(counters[0].0, "bn1.num_batches_tracked");
    assert_eq!(counters[1].0, "layer1.0.bn1.num_batches_tracked");
    assert_eq!(counters[18].0, "layer3.2.bn2.num_batches_tracked");
    for (name, c) in counters {
        assert_eq!(c.load(std::sync::atomic::Ordering::Relaxed), 1, "{name}");
    }
}
