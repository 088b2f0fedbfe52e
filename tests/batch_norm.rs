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
