//! softmax / log_softmax over a dim: float64 references, stability, gradcheck, PyTorch.

mod common;
use common::*;

fn softmax_ref(x: &[f32], shape: &[usize], dim: usize, log: bool) -> Vec<f64> {
    let outer: usize = shape[..dim].iter().product();
    let n = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let mut out = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * n + k) * inner + i;
            let m = (0..n)
                .map(|k| x[at(k)] as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..n).map(|k| (x[at(k)] as f64 - m).exp()).sum();
            for k in 0..n {
                let v = x[at(k)] as f64 - m;
                out[at(k)] = if log { v - s.ln() } else { v.exp() / s };
            }
        }
    }
    out
}

#[test]
fn forward_matches_float64_over_every_dim() {
    for (si, shape) in [&[10usize][..], &[8, 10], &[3, 4, 5], &[2, 300, 3]]
        .iter()
        .enumerate()
    {
        let x: Vec<f32> = randn(si as u64, numel(shape))
            .iter()
            .map(|v| v * 4.0)
            .collect();
        let t = tensor(&x, shape);
        for d in 0..shape.len() {
            for log in [false, true] {
                let got = if log {
                    t.log_softmax(d as isize)
                } else {
                    t.softmax(d as isize)
                }
                .unwrap();
                assert_close(
                    &got.to_vec().unwrap(),
                    &softmax_ref(&x, shape, d, log),
                    1e-6,
                    1e-5,
                    "softmax",
                );
            }
        }
    }
}

#[test]
fn stable_for_large_logits() {
    let x = [100.0, 0.0, -100.0, 1000.0, 999.0, -1000.0];
    let t = tensor(&x, &[2, 3]);
    let s = t.softmax(-1).unwrap().to_vec().unwrap();
    assert!(s.iter().all(|v| v.is_finite()), "{s:?}");
    assert_close(
        &s,
        &softmax_ref(&x, &[2, 3], 1, false),
        1e-7,
        1e-5,
        "softmax large",
    );
    let l = t.log_softmax(-1).unwrap().to_vec().unwrap();
    assert_close(
        &l,
        &softmax_ref(&x, &[2, 3], 1, true),
        1e-5,
        1e-5,
        "log_softmax large",
    );
}

#[test]
fn backward_matches_finite_differences() {
    let x = randn(5, 24);
    for d in [0isize, 1, -1] {
        check_grad(
            "softmax",
            move |t| t[0].softmax(d),
            &[tensor(&x, &[2, 3, 4])],
            5e-3,
        );
        check_grad(
            "log_softmax",
            move |t| t[0].log_softmax(d),
            &[tensor(&x, &[2, 3, 4])],
            5e-3,
        );
    }
}

#[test]
fn matches_pytorch_reference() {
    let r = Reference::ops();
    for case in ["softmax", "log_softmax"] {
        let dim = r.meta(case)["dim"].as_i64().unwrap() as isize;
        let x = r.tensor(case, "input").requires_grad();
        let y = if case == "softmax" {
            x.softmax(dim)
        } else {
            x.log_softmax(dim)
        }
        .unwrap();
        r.assert_matches(case, "output", &y, 1e-6, 1e-5);
        y.backward_with(&r.tensor(case, "grad_output")).unwrap();
        r.assert_matches(case, "grad_input", &x.grad().unwrap(), 1e-6, 1e-5);
    }
}

#[test]
fn long_rows_are_computed_in_stages() {
    // 10,000 classes: more than one invocation's loops may cover on lavapipe.
    let (rows, n) = (3, 10_000);
    let x: Vec<f32> = randn(9, rows * n).iter().map(|v| v * 3.0).collect();
    let t = tensor(&x, &[rows, n]);
    for log in [false, true] {
        let got = if log { t.log_softmax(1) } else { t.softmax(1) }.unwrap();
        assert_close(
            &got.to_vec().unwrap(),
            &softmax_ref(&x, &[rows, n], 1, log),
            1e-6,
            1e-4,
            "long softmax",
        );
    }
    // Its gradient through the tape: d/dx sum(softmax(x) * w) = y * (w - sum(y * w)).
    let w = uniform(10, rows * n, -1.0, 1.0);
    let xt = tensor(&x, &[rows, n]).requires_grad();
    let y = xt.softmax(-1).unwrap();
    y.mul(&tensor(&w, &[rows, n]))
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    let yv = softmax_ref(&x, &[rows, n], 1, false);
    let g = xt.grad().unwrap().to_vec().unwrap();
    for r in 0..rows {
        let dot: f64 = (0..n).map(|k| yv[r * n + k] * w[r * n + k] as f64).sum();
        let want: Vec<f64> = (0..n)
            .map(|k| yv[r * n + k] * (w[r * n + k] as f64 - dot))
            .collect();
        assert_close(
            &g[r * n..(r + 1) * n],
            &want,
            1e-7,
            1e-3,
            "long softmax grad",
        );
    }
}
