//! Fusion wherever the ops come from: a model written the PyTorch way (a struct whose forward
//! calls conv2d, relu, max_pool2d, linear) runs the same kernels as `Sequential` and gives the
//! same numbers; deferred outputs keep PyTorch's semantics when read, viewed or overwritten.

mod common;
use common::*;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::{Module, Sequential};
use webgrad::{Conv2dParams, Device, DeviceOptions, Pool2dParams, Reduction, Tensor};

/// LeNet-5 as a hand-written module over the parameters of `models::LeNet5`.
struct HandWritten {
    p: Vec<Tensor>,
}

impl Module for HandWritten {
    fn forward(&self, x: &Tensor) -> webgrad::Result<Tensor> {
        let p = &self.p;
        let pool = Pool2dParams::new(2);
        let x = x
            .conv2d(&p[0], Some(&p[1]), Conv2dParams::default().padding(2))?
            .relu()?
            .max_pool2d(pool)?;
        let x = x.conv2d(&p[2], Some(&p[3]), Conv2dParams::default())?;
        let x = x.relu()?; // shadowing keeps the unfused output alive: it must stay unused
        let x = x.max_pool2d(pool)?.flatten(1, -1)?;
        let x = x.linear(&p[4], Some(&p[5]))?.relu()?;
        let x = x.linear(&p[6], Some(&p[7]))?.relu()?;
        x.linear(&p[8], Some(&p[9]))
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.p
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("p{i}"), t.clone()))
            .collect()
    }
    fn describe(&self) -> String {
        "HandWritten LeNet-5".into()
    }
}

/// One training step's loss, input gradient and the kernels it ran (name and calls).
fn step(dev: &Device, model: &dyn Module, x: &[f32], n: usize) -> (Vec<f32>, Vec<f32>, String) {
    model.zero_grad();
    dev.profile_reset();
    let x = Tensor::from_slice(dev, x, &[n, 1, 28, 28])
        .unwrap()
        .requires_grad();
    let targets: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let loss = model
        .forward(&x)
        .unwrap()
        .cross_entropy(&targets, Reduction::Mean)
        .unwrap();
    loss.backward().unwrap();
    let gx = x.grad().unwrap().to_vec().unwrap();
    let report = dev.profile_report().unwrap();
    // The kernel names and call counts, in a stable order.
    let mut kernels: Vec<String> = report
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, calls) = (w.next()?, w.next()?);
            calls.parse::<u64>().ok().map(|c| format!("{name} {c}"))
        })
        .collect();
    kernels.sort();
    (loss.to_vec().unwrap(), gx, kernels.join("\n"))
}

#[test]
fn a_hand_written_model_runs_the_kernels_sequential_runs() {
    for class in device().runnable_kernel_classes() {
        let dev = profiled(class);
        dev.manual_seed(3);
        let seq: Sequential = LeNet5::build(&dev, LeNetFlavour::Modern).unwrap();
        let hand = HandWritten {
            p: seq.parameters(),
        };
        let x = randn(9, 8 * 784);
        let (loss_s, gx_s, kernels_s) = step(&dev, &seq, &x, 8);
        let (loss_h, gx_h, kernels_h) = step(&dev, &hand, &x, 8);
        let what = class.name();
        assert_eq!(loss_h, loss_s, "{what}: same loss");
        assert_eq!(gx_h, gx_s, "{what}: same input gradient");
        assert_eq!(kernels_h, kernels_s, "{what}: same kernels");
        // Every ReLU folded into a conv or linear kernel: no elementwise ReLU pass.
        assert!(!kernels_h.contains("unary_forward"), "{what}:\n{kernels_h}");
    }
}

#[test]
fn a_deferred_output_read_after_its_relu_holds_the_unfused_values() {
    let x = tensor(&randn(1, 2 * 3 * 6 * 6), &[2, 3, 6, 6]);
    let w = tensor(&randn(2, 4 * 3 * 9), &[4, 3, 3, 3]);
    let p = Conv2dParams::default().padding(1);
    let want = x.conv2d(&w, None, p).unwrap().to_vec().unwrap();
    assert!(want.iter().any(|&v| v < 0.0));
    let c = x.conv2d(&w, None, p).unwrap();
    let r = c.relu().unwrap();
    let pooled = r.max_pool2d(Pool2dParams::new(2)).unwrap();
    let relu: Vec<f32> = want.iter().map(|&v| v.max(0.0)).collect();
    assert_eq!(r.to_vec().unwrap(), relu);
    assert_eq!(
        c.to_vec().unwrap(),
        want,
        "the convolution's own output, not its ReLU"
    );
    assert_eq!(pooled.shape(), &[2, 4, 3, 3]);
    // A view of a deferred output is not fused into (its own values, then its ReLU).
    let c = x.conv2d(&w, None, p).unwrap();
    let view = c.reshape(&[2, 4 * 36]).unwrap().relu().unwrap();
    assert_eq!(view.to_vec().unwrap(), relu);
}

#[test]
fn a_deferred_output_sees_its_inputs_as_they_were() {
    // The convolution and the product are computed later, but of the values at the call: an
    // in-place write to an input first computes the outputs that read it.
    let dev = device();
    let x = tensor(&randn(3, 2 * 3 * 5 * 5), &[2, 3, 5, 5]);
    let w = tensor(&randn(4, 4 * 3 * 9), &[4, 3, 3, 3]);
    let p = Conv2dParams::default();
    let want = x.conv2d(&w, None, p).unwrap().to_vec().unwrap();
    let lw = tensor(&randn(5, 6 * 75), &[6, 75]);
    let flat = x.reshape(&[2, 75]).unwrap();
    let want_l = flat.linear(&lw, None).unwrap().to_vec().unwrap();
    let y = x.conv2d(&w, None, p).unwrap();
    let l = flat.linear(&lw, None).unwrap();
    x.write_from_slice(&vec![0.0; 150]).unwrap();
    w.copy_from(&Tensor::zeros(dev, &[4, 3, 3, 3]).unwrap())
        .unwrap();
    assert_eq!(y.to_vec().unwrap(), want);
    assert_eq!(l.to_vec().unwrap(), want_l);
}

#[test]
fn the_pytorch_mnist_example_network_runs_inference_at_batch_1000() {
    // conv 1->32 k3, ReLU, conv 32->64 k3, ReLU, max-pool 2, dropout, flatten, linear
    // 9216->128, ReLU, dropout, linear 128->10. At batch 1,000 the second convolution's
    // output is 147 MB, more than one buffer holds on lavapipe: fused with its ReLU and pool
    // it is never stored. (With the adapter's own kernels: the GPU kernel class, forced here by
    // WEBGRAD_KERNELS=gpu, has no fused conv + pool kernel and stores the activation, which
    // exceeds a 128 MiB binding.)
    let native = device().runnable_kernel_classes()[0];
    let dev = &Device::with_options(DeviceOptions::default().force_kernels(native)).unwrap();
    dev.manual_seed(1);
    let param = |shape: &[usize], fan_in: usize| {
        Tensor::rand(dev, shape)
            .unwrap()
            .sub_scalar(0.5)
            .unwrap()
            .mul_scalar(2.0 / (fan_in as f32).sqrt())
            .unwrap()
    };
    let (w1, b1) = (param(&[32, 1, 3, 3], 9), param(&[32], 9));
    let (w2, b2) = (param(&[64, 32, 3, 3], 288), param(&[64], 288));
    let (w3, b3) = (param(&[128, 9216], 9216), param(&[128], 9216));
    let (w4, b4) = (param(&[10, 128], 128), param(&[10], 128));
    let net = |x: &Tensor| -> webgrad::Result<Tensor> {
        let p = Conv2dParams::default();
        let x = x.conv2d(&w1, Some(&b1), p)?.relu()?;
        let x = x.conv2d(&w2, Some(&b2), p)?.relu()?;
        let x = x.max_pool2d(Pool2dParams::new(2))?.dropout(0.25, false)?;
        let x = x.flatten(1, -1)?.linear(&w3, Some(&b3))?.relu()?;
        x.dropout(0.5, false)?.linear(&w4, Some(&b4))
    };
    let images = randn(7, 1000 * 784);
    let tensor = |d: &[f32], s: &[usize]| Tensor::from_slice(dev, d, s).unwrap();
    let all = webgrad::no_grad(|| net(&tensor(&images, &[1000, 1, 28, 28])))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(all.len(), 10_000);
    // The same logits as small batches of the same images.
    for start in [0usize, 996] {
        let part = tensor(&images[start * 784..(start + 4) * 784], &[4, 1, 28, 28]);
        let want = webgrad::no_grad(|| net(&part)).unwrap().to_vec().unwrap();
        assert_close(
            &all[start * 10..(start + 4) * 10],
            &to_f64(&want),
            1e-4,
            1e-4,
            &format!("images {start}.."),
        );
    }
}

#[test]
fn sync_computes_deferred_outputs() {
    // What a benchmark times: conv2d then sync() has run the convolution.
    let opts = DeviceOptions::default().with_profile(true);
    let dev = Device::with_options(opts).unwrap();
    let x = Tensor::from_slice(&dev, &randn(1, 2 * 3 * 8 * 8), &[2, 3, 8, 8]).unwrap();
    let w = Tensor::from_slice(&dev, &randn(2, 4 * 3 * 9), &[4, 3, 3, 3]).unwrap();
    dev.profile_reset();
    let _y = x.conv2d(&w, None, Conv2dParams::default()).unwrap();
    dev.sync().unwrap();
    let report = dev.profile_report().unwrap();
    let ran = |k: &str| report.lines().any(|l| l.starts_with(k));
    assert!(
        ran("conv") || ran("im2col"),
        "no convolution ran:\n{report}"
    );
}

/// Eval-mode BatchNorm after a convolution (or a linear layer of [N, C] output) folds into it:
/// no BatchNorm kernel runs, and the output and every gradient (input, the product's weight
/// and bias, BatchNorm's weight and bias) match the unfolded pair, whose BatchNorm reads a
/// view of the stored product.
#[test]
fn eval_batch_norm_folds_into_the_product_before_it() {
    for class in device().runnable_kernel_classes() {
        let dev = &profiled(class);
        let on = |v: &[f32], s: &[usize]| Tensor::from_slice(dev, v, s).unwrap();
        let c = 4;
        let (rm, rv) = (on(&randn(31, c), &[c]), on(&uniform(32, c, 0.5, 2.0), &[c]));
        // (input shape, weight shape, convolution or linear)
        for (xs, ws, conv) in [
            (vec![2, 3, 6, 6], vec![c, 3, 3, 3], true),
            (vec![5, 7], vec![c, 7], false),
        ] {
            let x = randn(33, xs.iter().product());
            let w = randn(34, ws.iter().product());
            let (b, gamma, beta) = (randn(35, c), uniform(36, c, 0.5, 1.5), randn(37, c));
            let run = |fold: bool| {
                dev.profile_reset();
                let leaves: Vec<Tensor> = [(&x, &xs[..]), (&w, &ws[..])]
                    .into_iter()
                    .chain([(&b, &[c][..]), (&gamma, &[c]), (&beta, &[c])])
                    .map(|(v, s)| on(v, s).requires_grad())
                    .collect();
                let y = if conv {
                    let p = Conv2dParams::default().padding(1);
                    leaves[0].conv2d(&leaves[1], Some(&leaves[2]), p)
                } else {
                    leaves[0].linear(&leaves[1], Some(&leaves[2]))
                }
                .unwrap();
                // A view of the product is not its deferred output: nothing folds into it.
                let y = if fold {
                    y
                } else {
                    y.reshape(y.shape()).unwrap()
                };
                let args = webgrad::BatchNormArgs {
                    running_mean: Some(&rm),
                    running_var: Some(&rv),
                    weight: Some(&leaves[3]),
                    bias: Some(&leaves[4]),
                    training: false,
                    ..Default::default()
                };
                let z = if conv {
                    y.batch_norm2d(args)
                } else {
                    y.batch_norm1d(args)
                }
                .unwrap()
                .relu()
                .unwrap();
                values_and_gradients(dev, &z, &leaves)
            };
            let what = format!("{} {xs:?}", class.name());
            assert_folded(run(true), run(false), "bn_", 1e-4, &what);
        }
    }
}

/// A ReLU after BatchNorm (training and eval mode, on an input that is no deferred product)
/// is applied as the normalization stores: no elementwise ReLU kernel runs forward or
/// backward, and the output and the gradients of the input, weight and bias match BatchNorm
/// followed by a ReLU of a view.
#[test]
fn relu_after_batch_norm_folds_into_its_normalization() {
    for class in device().runnable_kernel_classes() {
        let dev = &profiled(class);
        let on = |v: &[f32], s: &[usize]| Tensor::from_slice(dev, v, s).unwrap();
        let c = 3;
        let (w, b) = (uniform(42, c, 0.5, 1.5), randn(43, c));
        let (rm, rv) = (on(&randn(44, c), &[c]), on(&uniform(45, c, 0.5, 2.0), &[c]));
        // Planes of 35 values (taken one at a time) and of 28 (in quads; 8,064 values, read
        // as texels where the policy copies).
        for (s, training) in [
            ([6usize, 3, 5, 7], true),
            ([6, 3, 5, 7], false),
            ([96, 3, 4, 7], true),
            ([96, 3, 4, 7], false),
        ] {
            let x = randn(41, numel(&s));
            let run = |fold: bool| {
                dev.profile_reset();
                let leaves = [(&x, &s[..]), (&w, &[c][..]), (&b, &[c])]
                    .map(|(v, shape)| on(v, shape).requires_grad());
                let y = leaves[0]
                    .batch_norm2d(webgrad::BatchNormArgs {
                        running_mean: Some(&rm),
                        running_var: Some(&rv),
                        weight: Some(&leaves[1]),
                        bias: Some(&leaves[2]),
                        training,
                        ..Default::default()
                    })
                    .unwrap();
                let y = if fold { y } else { y.reshape(&s).unwrap() };
                values_and_gradients(dev, &y.relu().unwrap(), &leaves)
            };
            let folded = run(true);
            let y = &folded.0[0];
            assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0));
            let what = format!("{} {s:?} training {training}", class.name());
            assert_folded(folded, run(false), "unary", 1e-5, &what);
        }
    }
}

/// A device that profiles its kernels, running the kernel class `class`.
fn profiled(class: webgrad::AdapterClass) -> Device {
    let opts = DeviceOptions::default()
        .with_profile(true)
        .force_kernels(class);
    Device::with_options(opts).unwrap()
}

/// z's values and the gradients of `leaves` after z's backward with a seeded gradient, and
/// the kernels the profile saw since it was last reset.
fn values_and_gradients(dev: &Device, z: &Tensor, leaves: &[Tensor]) -> (Vec<Vec<f32>>, String) {
    let g = Tensor::from_slice(dev, &randn(38, z.numel()), z.shape()).unwrap();
    z.backward_with(&g).unwrap();
    let mut got = vec![z.to_vec().unwrap()];
    got.extend(leaves.iter().map(|t| t.grad().unwrap().to_vec().unwrap()));
    (got, dev.profile_report().unwrap())
}

/// The folded run ran no kernel named `kernel`, the plain run did, and both gave the same
/// values and gradients within `tol`.
fn assert_folded(
    (folded, report): (Vec<Vec<f32>>, String),
    (plain, plain_report): (Vec<Vec<f32>>, String),
    kernel: &str,
    tol: f64,
    what: &str,
) {
    assert!(!report.contains(kernel), "{what}: {kernel} ran:\n{report}");
    assert!(plain_report.contains(kernel), "{what}:\n{plain_report}");
    for (i, (f, p)) in folded.iter().zip(&plain).enumerate() {
        let values = format!("{what} output/grad {i}");
        assert_close(f, &to_f64(p), tol, tol, &values);
    }
}
