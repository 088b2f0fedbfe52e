//! batch_norm2d: PyTorch's training case with running statistics, float64 reference in both
//! modes, gradcheck.

mod common;
use common::*;
use webgrad::{BatchNormArgs, Tensor};

#[test]
fn matches_pytorch_reference_in_training_mode() {
    let r = Reference::ops();
    let case = "batch_norm2d_train";
    let m = r.meta(case);
    let x = r.tensor(case, "input").requires_grad();
    let w = r.tensor(case, "weight").requires_grad();
    let b = r.tensor(case, "bias").requires_grad();
    let c = x.shape()[1];
    let rm = Tensor::zeros(device(), &[c]).unwrap();
    let rv = Tensor::ones(device(), &[c]).unwrap();
    let y = x
        .batch_norm2d(BatchNormArgs {
            running_mean: Some(&rm),
            running_var: Some(&rv),
            weight: Some(&w),
            bias: Some(&b),
            training: true,
            momentum: m["momentum"].as_f64().unwrap() as f32,
            eps: m["eps"].as_f64().unwrap() as f32,
        })
        .unwrap();
    r.assert_matches(case, "output", &y, 1e-5, 1e-4);
    r.assert_matches(case, "running_mean_after", &rm, 1e-6, 1e-5);
    r.assert_matches(case, "running_var_after", &rv, 1e-6, 1e-5);
    y.backward_with(&r.tensor(case, "grad_output")).unwrap();
    r.assert_matches(case, "grad_input", &x.grad().unwrap(), 1e-5, 1e-4);
    r.assert_matches(case, "grad_weight", &w.grad().unwrap(), 1e-5, 1e-4);
    r.assert_matches(case, "grad_bias", &b.grad().unwrap(), 1e-5, 1e-4);
}

#[test]
fn eval_mode_uses_running_statistics() {
    let s = [3, 2, 4, 5];
    let x = randn(1, numel(&s));
    let (rm, rv, w, b) = (
        [0.5f32, -1.0],
        [2.0f32, 0.25],
        [1.5f32, -0.5],
        [0.1f32, 0.2],
    );
    let y = tensor(&x, &s)
        .batch_norm2d(BatchNormArgs {
            running_mean: Some(&tensor(&rm, &[2])),
            running_var: Some(&tensor(&rv, &[2])),
            weight: Some(&tensor(&w, &[2])),
            bias: Some(&tensor(&b, &[2])),
            training: false,
            ..Default::default()
        })
        .unwrap();
    let want: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(e, &v)| {
            let c = (e / 20) % 2;
            (v as f64 - rm[c] as f64) / (rv[c] as f64 + 1e-5).sqrt() * w[c] as f64 + b[c] as f64
        })
        .collect();
    assert_close(&y.to_vec().unwrap(), &want, 1e-5, 1e-5, "eval");
}

#[test]
fn backward_matches_finite_differences() {
    let s = [3, 2, 3, 2];
    let x = randn(2, numel(&s));
    for training in [true, false] {
        check_grad(
            &format!("batch_norm training={training}"),
            move |t| {
                let rm = Tensor::from_slice(t[0].device(), &[0.1, -0.2], &[2])?;
                let rv = Tensor::from_slice(t[0].device(), &[0.8, 1.3], &[2])?;
                t[0].batch_norm2d(BatchNormArgs {
                    running_mean: Some(&rm),
                    running_var: Some(&rv),
                    weight: Some(&t[1]),
                    bias: Some(&t[2]),
                    training,
                    ..Default::default()
                })
            },
            &[
                tensor(&x, &s),
                tensor(&[1.2, 0.7], &[2]),
                tensor(&[0.3, -0.1], &[2]),
            ],
            5e-3,
        );
    }
}

#[test]
fn an_empty_batch_gives_an_empty_output_and_leaves_running_statistics_alone() {
    // As PyTorch's batch_norm on an input with no elements, in either mode.
    let c = 3;
    for training in [true, false] {
        let x = Tensor::zeros(device(), &[0, c, 4, 4])
            .unwrap()
            .requires_grad();
        let w = tensor(&[1.0, 2.0, 3.0], &[c]).requires_grad();
        let b = tensor(&[0.5, 0.5, 0.5], &[c]).requires_grad();
        let rm = tensor(&[0.1, 0.2, 0.3], &[c]);
        let rv = tensor(&[1.1, 1.2, 1.3], &[c]);
        let y = x
            .batch_norm2d(BatchNormArgs {
                running_mean: Some(&rm),
                running_var: Some(&rv),
                weight: Some(&w),
                bias: Some(&b),
                training,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(y.shape(), &[0, c, 4, 4]);
        assert!(y.to_vec().unwrap().is_empty());
        assert_eq!(rm.to_vec().unwrap(), vec![0.1, 0.2, 0.3]);
        assert_eq!(rv.to_vec().unwrap(), vec![1.1, 1.2, 1.3]);
        y.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), &[0, c, 4, 4]);
        assert_eq!(w.grad().unwrap().to_vec().unwrap(), vec![0.0; c]);
        assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![0.0; c]);
    }
    // One value per channel still cannot be normalised in training.
    let one = Tensor::zeros(device(), &[1, c, 1, 1]).unwrap();
    assert!(one.batch_norm2d(BatchNormArgs::default()).is_err());
}

/// Channels long enough to be split into pieces (two on a CPU adapter, many under the GPU
/// kernels), with values far from 0: the statistics and the weight and bias gradients still
/// match float64.
#[test]
fn statistics_and_gradients_of_long_channels_merge_their_pieces_exactly() {
    let s = [2, 2, 1024, 1040]; // 2,129,920 values per channel: over 256 x 8,192
    let n = numel(&s);
    let x: Vec<f32> = randn(11, n).iter().map(|v| 1000.0 + v).collect();
    let g = randn(12, n);
    let per = 1024 * 1040;
    let rm = Tensor::zeros(device(), &[2]).unwrap();
    let rv = Tensor::ones(device(), &[2]).unwrap();
    let w = tensor(&[1.0, 1.0], &[2]).requires_grad();
    let b = tensor(&[0.0, 0.0], &[2]).requires_grad();
    let xt = tensor(&x, &s).requires_grad();
    let y = xt
        .batch_norm2d(BatchNormArgs {
            running_mean: Some(&rm),
            running_var: Some(&rv),
            weight: Some(&w),
            bias: Some(&b),
            training: true,
            momentum: 1.0,
            eps: 1e-5,
        })
        .unwrap();
    y.backward_with(&tensor(&g, &s)).unwrap();
    let (rm, rv) = (rm.to_vec().unwrap(), rv.to_vec().unwrap());
    let (gw, gb) = (
        w.grad().unwrap().to_vec().unwrap(),
        b.grad().unwrap().to_vec().unwrap(),
    );
    for c in 0..2 {
        let idx = |i: usize| (i / per * 2 + c) * per + i % per;
        let m = 2 * per;
        let mean = (0..m).map(|i| x[idx(i)] as f64).sum::<f64>() / m as f64;
        let var = (0..m)
            .map(|i| (x[idx(i)] as f64 - mean).powi(2))
            .sum::<f64>()
            / m as f64;
        let invstd = 1.0 / (var + 1e-5).sqrt();
        // Four f32 ulps of 1000 (6.1e-5 each).
        assert!(
            (rm[c] as f64 - mean).abs() < 2.5e-4,
            "mean {c}: {} vs {mean}",
            rm[c]
        );
        let unbiased = var * m as f64 / (m - 1) as f64;
        assert!(
            (rv[c] as f64 - unbiased).abs() < 1e-4 * unbiased,
            "var {c}: {} vs {unbiased}",
            rv[c]
        );
        let sum_g: f64 = (0..m).map(|i| g[idx(i)] as f64).sum();
        // xhat from the f32 mean the layer used (momentum 1: the running mean), whose ulp
        // times sum(g) is already ~0.1 here: this checks the sums, the lines above the mean.
        let used = rm[c] as f64;
        let sum_gx: f64 = (0..m)
            .map(|i| g[idx(i)] as f64 * (x[idx(i)] as f64 - used) * invstd)
            .sum();
        assert!(
            (gb[c] as f64 - sum_g).abs() < 0.05,
            "bias grad {c}: {} vs {sum_g}",
            gb[c]
        );
        assert!(
            (gw[c] as f64 - sum_gx).abs() < 0.05,
            "weight grad {c}: {} vs {sum_gx}",
            gw[c]
        );
    }
}

/// Training forward and input gradient against float64 on shapes whose channels the passes
/// cut into several pieces, with planes smaller than a workgroup's 256 values (an invocation's
/// steps cross images) and larger, taken a value or a quad at a time (planes of 4k values, as
/// storage loads or, from 4,096 floats, texel fetches): under every kernel class.
#[test]
fn training_output_and_input_gradient_match_float64_across_pieces() {
    for_each_policy(|dev| {
        let shapes = [
            [70usize, 3, 7, 9],
            [3, 2, 40, 50],
            [9000, 2, 1, 1],
            [20, 2, 4, 4],
            [50, 3, 6, 6],
        ];
        for s in shapes {
            let n = numel(&s);
            let (c, hw) = (s[1], s[2] * s[3]);
            let m = n / c;
            let x = randn(21, n);
            let g = randn(22, n);
            let (w, b) = (uniform(23, c, 0.5, 1.5), randn(24, c));
            let on = |v: &[f32], shape: &[usize]| Tensor::from_slice(dev, v, shape).unwrap();
            let xt = on(&x, &s).requires_grad();
            let y = xt
                .batch_norm2d(BatchNormArgs {
                    weight: Some(&on(&w, &[c])),
                    bias: Some(&on(&b, &[c])),
                    ..Default::default()
                })
                .unwrap();
            y.backward_with(&on(&g, &s)).unwrap();
            let channel = |e: usize| (e / hw) % c;
            let (mut mean, mut var) = (vec![0f64; c], vec![0f64; c]);
            for (e, &v) in x.iter().enumerate() {
                mean[channel(e)] += v as f64 / m as f64;
            }
            for (e, &v) in x.iter().enumerate() {
                var[channel(e)] += (v as f64 - mean[channel(e)]).powi(2) / m as f64;
            }
            let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
            let xhat = |e: usize| (x[e] as f64 - mean[channel(e)]) * invstd[channel(e)];
            let (mut sum_g, mut sum_gx) = (vec![0f64; c], vec![0f64; c]);
            for (e, &gv) in g.iter().enumerate() {
                sum_g[channel(e)] += gv as f64;
                sum_gx[channel(e)] += gv as f64 * xhat(e);
            }
            let want_y: Vec<f64> = (0..n)
                .map(|e| xhat(e) * w[channel(e)] as f64 + b[channel(e)] as f64)
                .collect();
            let want_gx: Vec<f64> = (0..n)
                .map(|e| {
                    let k = channel(e);
                    w[k] as f64 * invstd[k] / m as f64
                        * (m as f64 * g[e] as f64 - sum_g[k] - xhat(e) * sum_gx[k])
                })
                .collect();
            let what = format!("{s:?} under {:?}", dev.kernel_class());
            assert_close(&y.to_vec().unwrap(), &want_y, 1e-4, 1e-4, &what);
            let gx = xt.grad().unwrap().to_vec().unwrap();
            assert_close(&gx, &want_gx, 1e-4, 1e-4, &what);
        }
    });
}
