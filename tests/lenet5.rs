//! LeNet-5 against PyTorch (`tests/reference/lenet5_step.safetensors`): logits, loss and every
//! parameter gradient for one batch, then the parameters after 3 SGD-momentum steps and after
//! 3 Adam steps.

mod common;
use common::*;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::{Module, Sequential};
use webgrad::optim::{Adam, Optimizer, Sgd};
use webgrad::Reduction;

const NAMES: [&str; 10] = [
    "conv1.weight",
    "conv1.bias",
    "conv2.weight",
    "conv2.bias",
    "fc1.weight",
    "fc1.bias",
    "fc2.weight",
    "fc2.bias",
    "fc3.weight",
    "fc3.bias",
];

fn model_from_reference(r: &Reference) -> Sequential {
    let model = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, NAMES, "state_dict names follow PyTorch");
    for (name, p) in model.named_parameters() {
        let (data, shape) = r.get("init", &name);
        assert_eq!(p.shape(), shape.as_slice(), "{name}");
        p.write_from_slice(&data).unwrap();
    }
    model
}

fn batch(r: &Reference) -> (webgrad::Tensor, Vec<usize>) {
    let x = r.tensor("input", "");
    let t = r.get("target", "").0.iter().map(|&v| v as usize).collect();
    (x, t)
}

#[test]
fn forward_and_gradients_match_pytorch() {
    let r = Reference::load("lenet5_step.safetensors");
    let model = model_from_reference(&r);
    let (x, t) = batch(&r);
    let logits = model.forward(&x).unwrap();
    r.assert_matches("logits", "", &logits, 1e-5, 1e-4);
    let loss = logits.cross_entropy(&t, Reduction::Mean).unwrap();
    let want_loss = r.get("loss", "").0[0] as f64;
    assert_close(&loss.to_vec().unwrap(), &[want_loss], 1e-6, 1e-5, "loss");
    loss.backward().unwrap();
    for (name, p) in model.named_parameters() {
        r.assert_matches("grad", &name, &p.grad().unwrap(), 1e-6, 1e-4);
    }
}

fn three_steps(opt: &mut dyn Optimizer, model: &Sequential, x: &webgrad::Tensor, t: &[usize]) {
    for _ in 0..3 {
        opt.zero_grad();
        model
            .forward(x)
            .unwrap()
            .cross_entropy(t, Reduction::Mean)
            .unwrap()
            .backward()
            .unwrap();
        opt.step().unwrap();
    }
}

#[test]
fn three_sgd_momentum_steps_match_pytorch() {
    let r = Reference::load("lenet5_step.safetensors");
    let model = model_from_reference(&r);
    let (x, t) = batch(&r);
    let mut opt = Sgd::new(model.parameters(), 0.05)
        .unwrap()
        .with_momentum(0.9);
    three_steps(&mut opt, &model, &x, &t);
    for (name, p) in model.named_parameters() {
        r.assert_matches("sgd3", &name, &p, 1e-5, 1e-4);
    }
}

#[test]
fn three_adam_steps_match_pytorch() {
    let r = Reference::load("lenet5_step.safetensors");
    let model = model_from_reference(&r);
    let (x, t) = batch(&r);
    let mut opt = Adam::new(model.parameters(), 1e-3).unwrap();
    three_steps(&mut opt, &model, &x, &t);
    for (name, p) in model.named_parameters() {
        r.assert_matches("adam3", &name, &p, 1e-5, 1e-4);
    }
}

/// A device opened with `opts`, LeNet-5 on it with the reference's initial parameters, and
/// the reference batch and its targets.
fn reference_setup(
    r: &Reference,
    opts: webgrad::DeviceOptions,
) -> (webgrad::Device, Sequential, webgrad::Tensor, Vec<usize>) {
    let dev = webgrad::Device::with_options(opts).unwrap();
    let model = LeNet5::build(&dev, LeNetFlavour::Modern).unwrap();
    for (name, p) in model.named_parameters() {
        p.write_from_slice(&r.get("init", &name).0).unwrap();
    }
    let (x, shape) = r.get("input", "");
    let x = webgrad::Tensor::from_slice(&dev, &x, &shape).unwrap();
    let t = r.get("target", "").0.iter().map(|&v| v as usize).collect();
    (dev, model, x, t)
}

/// The choices for a slow shader compiler (the browser's SwiftShader: pipelines shared between
/// variants, the fused conv + ReLU + pool kernel's training pipeline run by inference too),
/// under every kernel class: PyTorch's logits, in training and in inference, and gradients.
#[test]
fn a_slow_compilers_kernels_match_pytorch() {
    let r = Reference::load("lenet5_step.safetensors");
    for class in device().runnable_kernel_classes() {
        let opts = webgrad::DeviceOptions::default()
            .force_kernels(class)
            .force_slow_compiler();
        let (_, model, x, t) = reference_setup(&r, opts);
        let inferred = webgrad::no_grad(|| model.forward(&x)).unwrap();
        r.assert_matches("logits", "", &inferred, 1e-5, 1e-4);
        let logits = model.forward(&x).unwrap();
        r.assert_matches("logits", "", &logits, 1e-5, 1e-4);
        logits
            .cross_entropy(&t, Reduction::Mean)
            .unwrap()
            .backward()
            .unwrap();
        for (name, p) in model.named_parameters() {
            r.assert_matches("grad", &name, &p.grad().unwrap(), 1e-6, 1e-4);
        }
    }
}

/// Where pipelines compile in the background (a page on SwiftShader), the first training step
/// runs im2col and matmul_rows while the implicit and texel kernels compile, and the next ones
/// run those: every step must match PyTorch, the first must have asked for every pipeline the
/// next ones create, and those must really run the faster kernels.
#[test]
fn training_switches_to_kernels_compiled_in_the_background() {
    let r = Reference::load("lenet5_step.safetensors");
    let classes = device().runnable_kernel_classes();
    for class in classes.into_iter().filter(|c| c.is_cpu()) {
        let opts = webgrad::DeviceOptions::default()
            .force_kernels(class)
            .force_slow_compiler()
            .force_background_compiles()
            .with_profile(true);
        let (dev, model, x, t) = reference_setup(&r, opts);
        let mut created = Vec::new();
        for step in 0..3 {
            dev.profile_reset();
            model.zero_grad();
            let logits = model.forward(&x).unwrap();
            r.assert_matches("logits", "", &logits, 1e-5, 1e-4);
            let loss = logits.cross_entropy(&t, Reduction::Mean).unwrap();
            loss.backward().unwrap();
            for (name, p) in model.named_parameters() {
                r.assert_matches("grad", &name, &p.grad().unwrap(), 1e-6, 1e-4);
            }
            let report = dev.profile_report().unwrap();
            let ran = |kernel: &str| report.contains(kernel);
            let pipelines = webgrad::diagnostics::created_pipelines(&dev);
            let fast_products =
                ran("matmul_vec4") || ran("matmul_blocked8") || ran("matmul_subgroup");
            match step {
                0 => assert!(
                    ran("im2col") && !ran("conv_relu_pool_forward") && !fast_products,
                    "{class:?}: the first step runs im2col and matmul_rows while the implicit \
                     and texel kernels compile:\n{report}"
                ),
                _ => {
                    assert!(
                        ran("conv_relu_pool_forward") && !ran("im2col") && fast_products,
                        "{class:?}: step {step} runs the implicit and texel kernels:\n{report}"
                    );
                    let new = &pipelines[created.len()..];
                    assert!(
                        new.is_empty(),
                        "{class:?}: step {step} compiled pipelines that were not compiled in \
                         the background: {new:?}"
                    );
                }
            }
            created = pipelines;
        }
        // conv2's input gradient needs one pipeline whichever kernels conv1 runs: where the
        // compiler is slow, whether it also writes images innermost is a parameter, so the
        // first step's dry run compiles nothing the later steps leave unused.
        let input_grads: Vec<_> = created
            .iter()
            .filter(|p| p.entry.starts_with("conv_backward_input"))
            .collect();
        assert_eq!(input_grads.len(), 1, "{class:?}: {input_grads:?}");
    }
}
