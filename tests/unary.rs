//! Unary ops: forward against float64 on random inputs, backward by gradcheck and PyTorch.

mod common;
use common::*;
use webgrad::Tensor;

type UnaryFn = fn(&Tensor) -> webgrad::Result<Tensor>;
type Op = (&'static str, UnaryFn, fn(f64) -> f64);

fn ops() -> Vec<Op> {
    vec![
        ("neg", |t| t.neg(), |x| -x),
        ("relu", |t| t.relu(), |x| x.max(0.0)),
        ("sigmoid", |t| t.sigmoid(), |x| 1.0 / (1.0 + (-x).exp())),
        ("tanh", |t| t.tanh(), |x| x.tanh()),
        ("exp", |t| t.exp(), |x| x.exp()),
        ("abs", |t| t.abs(), |x| x.abs()),
        ("powf2", |t| t.powf(2.0), |x| x.powi(2)),
        ("powf3", |t| t.powf(3.0), |x| x.powi(3)),
        ("add_scalar", |t| t.add_scalar(1.5), |x| x + 1.5),
        ("sub_scalar", |t| t.sub_scalar(0.25), |x| x - 0.25),
        ("mul_scalar", |t| t.mul_scalar(-3.0), |x| x * -3.0),
        ("div_scalar", |t| t.div_scalar(7.0), |x| x / 7.0),
    ]
}

fn positive_ops() -> Vec<Op> {
    vec![
        ("log", |t| t.log(), |x| x.ln()),
        ("sqrt", |t| t.sqrt(), |x| x.sqrt()),
        ("powf_frac", |t| t.powf(1.7), |x| x.powf(1.7)),
        ("powf_neg", |t| t.powf(-0.5), |x| x.powf(-0.5)),
    ]
}

// Small tensors run the scalar kernel only; from 4,096 elements the vec4 kernel takes all but
// the n % 4 tail.
const SHAPES: &[&[usize]] = &[&[1], &[7], &[257], &[3, 5, 7], &[4099], &[70, 1000]];

#[test]
fn forward_matches_float64_on_random_inputs() {
    for (si, shape) in SHAPES.iter().enumerate() {
        let n = numel(shape);
        let x = randn(si as u64 + 1, n)
            .iter()
            .map(|v| v * 3.0)
            .collect::<Vec<_>>();
        let xp = uniform(si as u64 + 100, n, 0.01, 10.0);
        for (xs, list) in [(&x, ops()), (&xp, positive_ops())] {
            let t = tensor(xs, shape);
            for (name, f, r) in list {
                let got = f(&t).unwrap();
                assert_eq!(got.shape(), *shape);
                let want: Vec<f64> = xs.iter().map(|&v| r(v as f64)).collect();
                assert_close(&got.to_vec().unwrap(), &want, 1e-6, 1e-5, name);
            }
        }
    }
}

/// Backward on tensors the vec4 kernel takes (with a tail), against float64 derivatives: each
/// op reading its input, its output or neither, from the buffers or (where the policy says
/// so) texture copies of them; under every kernel class.
#[test]
fn backward_of_large_tensors_matches_float64_under_every_kernel_class() {
    type Derivative = fn(f64) -> f64;
    let cases: [(&str, UnaryFn, Derivative); 5] = [
        ("relu", |t| t.relu(), |x| if x > 0.0 { 1.0 } else { 0.0 }),
        (
            "sigmoid",
            |t| t.sigmoid(),
            |x| {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s)
            },
        ),
        ("tanh", |t| t.tanh(), |x| 1.0 - x.tanh().powi(2)),
        ("exp", |t| t.exp(), |x| x.exp()),
        ("mul_scalar", |t| t.mul_scalar(-3.0), |_| -3.0),
    ];
    for_each_policy(|dev| {
        for (si, shape) in [&[4099usize][..], &[70, 1000]].into_iter().enumerate() {
            let n = numel(shape);
            let x = randn(si as u64 + 40, n);
            let g = randn(si as u64 + 50, n);
            for (name, f, d) in cases {
                let on = |v: &[f32]| Tensor::from_slice(dev, v, shape).unwrap();
                let t = on(&x).requires_grad();
                f(&t).unwrap().backward_with(&on(&g)).unwrap();
                let want: Vec<f64> = x
                    .iter()
                    .zip(&g)
                    .map(|(&x, &g)| g as f64 * d(x as f64))
                    .collect();
                let what = format!("{name} of {shape:?} under {:?}", dev.kernel_class());
                assert_close(
                    &t.grad().unwrap().to_vec().unwrap(),
                    &want,
                    1e-5,
                    1e-5,
                    &what,
                );
            }
        }
    });
}

#[test]
fn special_values_follow_pytorch() {
    let t = tensor(&[-100.0, -20.0, 0.0, 20.0, 100.0], &[5]);
    let s = t.sigmoid().unwrap().to_vec().unwrap();
    assert_close(
        &s,
        &[0.0, 2.0611536e-9, 0.5, 1.0, 1.0],
        1e-12,
        1e-5,
        "sigmoid",
    );
    let th = t.tanh().unwrap().to_vec().unwrap();
    assert_eq!(th, vec![-1.0, -1.0, 0.0, 1.0, 1.0]);
    let neg = tensor(&[-2.0, -1.0], &[2]);
    assert!(neg
        .log()
        .unwrap()
        .to_vec()
        .unwrap()
        .iter()
        .all(|v| v.is_nan()));
    assert_eq!(neg.powf(3.0).unwrap().to_vec().unwrap(), vec![-8.0, -1.0]);
    assert_eq!(neg.powf(2.0).unwrap().to_vec().unwrap(), vec![4.0, 1.0]);
    assert_eq!(neg.powf(0.0).unwrap().to_vec().unwrap(), vec![1.0, 1.0]);
    // ReLU keeps NaN, as torch.relu does, alone and in the epilogues that fuse it.
    let r = tensor(&[f32::NAN, -1.0, 0.0, 2.0], &[1, 4]);
    let got = r.relu().unwrap().to_vec().unwrap();
    assert!(got[0].is_nan() && got[1..] == [0.0, 0.0, 2.0]);
    // (NaN * 0 is NaN, so both outputs are, as in PyTorch; a max(v, 0) could have made 0.)
    let w = tensor(&[1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0], &[2, 4]);
    let fused = r.linear_relu(&w, None).unwrap().to_vec().unwrap();
    assert!(fused.iter().all(|v| v.is_nan()), "{fused:?}");
}

#[test]
fn backward_matches_finite_differences() {
    // Inputs keep away from relu's and abs's kink at 0 (the step is 1e-2).
    let x: Vec<f32> = randn(11, 15)
        .iter()
        .map(|v| {
            if v.abs() < 0.1 {
                v.signum() * 0.3 + v
            } else {
                *v
            }
        })
        .collect();
    let xp = uniform(12, 15, 0.5, 2.0);
    for (xs, list) in [(&x, ops()), (&xp, positive_ops())] {
        for (name, f, _) in list {
            check_grad(name, move |t| f(&t[0]), &[tensor(xs, &[3, 5])], 5e-3);
        }
    }
}

#[test]
fn matches_pytorch_reference() {
    let r = Reference::ops();
    let fs: [(&str, UnaryFn); 5] = [
        ("relu", |t| t.relu()),
        ("sigmoid", |t| t.sigmoid()),
        ("tanh", |t| t.tanh()),
        ("exp", |t| t.exp()),
        ("log", |t| t.log()),
    ];
    for (case, f) in fs {
        let x = r.tensor(case, "input").requires_grad();
        let y = f(&x).unwrap();
        r.assert_matches(case, "output", &y, 1e-6, 1e-5);
        y.backward_with(&r.tensor(case, "grad_output")).unwrap();
        r.assert_matches(case, "grad_input", &x.grad().unwrap(), 1e-6, 1e-5);
    }
}

#[test]
fn backward_of_large_tensors_matches_float64_derivatives() {
    // 4,099 elements: the vec4 backward kernel and the scalar tail. The derivative of the
    // float64 reference by central differences, times a random upstream gradient.
    let n = 4099;
    let x: Vec<f32> = randn(21, n)
        .iter()
        .map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v })
        .collect();
    let xp = uniform(22, n, 0.5, 2.0);
    let g = randn(23, n);
    for (xs, list) in [(&x, ops()), (&xp, positive_ops())] {
        for (name, f, r) in list {
            let t = tensor(xs, &[n]).requires_grad();
            f(&t).unwrap().backward_with(&tensor(&g, &[n])).unwrap();
            let want = central_difference_grad(r, xs, &g, 1e-6);
            assert_close(
                &t.grad().unwrap().to_vec().unwrap(),
                &want,
                1e-4,
                1e-4,
                name,
            );
        }
    }
}
