//! add/sub/mul/div with broadcasting: forward against float64, backward by gradcheck and
//! against PyTorch; shape errors name both shapes.

mod common;
use common::*;
use webgrad::Tensor;

type Op = (
    &'static str,
    fn(&Tensor, &Tensor) -> webgrad::Result<Tensor>,
    fn(f64, f64) -> f64,
);

fn ops() -> [Op; 4] {
    [
        ("add", |a, b| a.add(b), |x, y| x + y),
        ("sub", |a, b| a.sub(b), |x, y| x - y),
        ("mul", |a, b| a.mul(b), |x, y| x * y),
        ("div", |a, b| a.div(b), |x, y| x / y),
    ]
}

const PAIRS: &[(&[usize], &[usize])] = &[
    (&[7], &[7]),
    (&[300, 301], &[300, 301]),
    (&[4, 3, 5], &[5]),
    (&[4, 3, 5], &[3, 1]),
    (&[2, 1], &[1, 7]),
    (&[5, 1, 3], &[4, 1]),
    (&[], &[3, 4]),
    (&[33, 1, 9], &[1, 130, 1]),
];

/// Divisors stay away from 0 so the float64 comparison is meaningful.
fn away_from_zero(v: Vec<f32>) -> Vec<f32> {
    v.into_iter()
        .map(|x| {
            if x.abs() < 0.5 {
                x.signum() * 0.5 + x
            } else {
                x
            }
        })
        .collect()
}

#[test]
fn forward_broadcasts_like_numpy() {
    for (i, (sa, sb)) in PAIRS.iter().enumerate() {
        let a = randn(i as u64, numel(sa));
        let b = away_from_zero(randn(i as u64 + 50, numel(sb)));
        for (name, f, r) in ops() {
            let (want, shape) = broadcast_ref(&a, sa, &b, sb, r);
            let got = f(&tensor(&a, sa), &tensor(&b, sb)).unwrap();
            assert_eq!(got.shape(), shape.as_slice(), "{name} {sa:?} {sb:?}");
            assert_close(&got.to_vec().unwrap(), &want, 1e-6, 1e-6, name);
            // And the other way round.
            let (want, _) = broadcast_ref(&b, sb, &a, sa, r);
            let got = f(&tensor(&b, sb), &tensor(&a, sa)).unwrap();
            assert_close(&got.to_vec().unwrap(), &want, 1e-5, 1e-6, name);
        }
    }
}

/// Same shapes take the vec4 kernel (over the first len - len % 4 elements) and the scalar
/// one (the rest, or all of a small tensor), each reading the buffers or, where the policy
/// says so, texture copies of them: under every kernel class.
#[test]
fn same_shapes_match_float64_under_every_kernel_class() {
    for_each_policy(|dev| {
        for (i, n) in [7usize, 4096, 4355, 90_003].into_iter().enumerate() {
            let a = randn(300 + i as u64, n);
            let b = away_from_zero(randn(400 + i as u64, n));
            for (name, f, r) in ops() {
                let on = |v: &[f32]| Tensor::from_slice(dev, v, &[n]).unwrap();
                let got = f(&on(&a), &on(&b)).unwrap().to_vec().unwrap();
                let want: Vec<f64> = a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| r(x as f64, y as f64))
                    .collect();
                let what = format!("{name} of {n} under {:?}", dev.kernel_class());
                assert_close(&got, &want, 1e-6, 1e-6, &what);
            }
        }
    });
}

#[test]
fn backward_sums_over_broadcast_dims() {
    let small: &[(&[usize], &[usize])] = &[
        (&[3, 4], &[3, 4]),
        (&[2, 3, 4], &[4]),
        (&[2, 3, 4], &[3, 1]),
        (&[2, 1], &[1, 5]),
        (&[], &[2, 3]),
    ];
    for (i, (sa, sb)) in small.iter().enumerate() {
        let a = randn(i as u64 + 7, numel(sa));
        let b = away_from_zero(randn(i as u64 + 70, numel(sb)));
        for (name, f, _) in ops() {
            check_grad(
                &format!("{name} {sa:?} {sb:?}"),
                move |t| f(&t[0], &t[1]),
                &[tensor(&a, sa), tensor(&b, sb)],
                5e-3,
            );
        }
    }
}

#[test]
fn matches_pytorch_reference() {
    let r = Reference::ops();
    for (case, f) in [
        ("add_broadcast", ops()[0].1),
        ("sub", ops()[1].1),
        ("mul_broadcast", ops()[2].1),
        ("div", ops()[3].1),
    ] {
        let a = r.tensor(case, "a").requires_grad();
        let b = r.tensor(case, "b").requires_grad();
        let out = f(&a, &b).unwrap();
        r.assert_matches(case, "output", &out, 1e-6, 1e-5);
        out.backward_with(&r.tensor(case, "grad_output")).unwrap();
        r.assert_matches(case, "grad_a", &a.grad().unwrap(), 1e-6, 1e-5);
        r.assert_matches(case, "grad_b", &b.grad().unwrap(), 1e-6, 1e-5);
    }
}

#[test]
fn mismatched_shapes_are_an_error_naming_both() {
    let a = tensor(&[0.0; 6], &[2, 3]);
    let b = tensor(&[0.0; 12], &[4, 3]);
    let err = a.add(&b).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 3]"), "{err}");
}
