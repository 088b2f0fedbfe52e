//! sum / mean / max over all elements and over a dim: float64 references, gradcheck, PyTorch.

mod common;
use common::*;

/// float64 sum over `dim` of a contiguous tensor (returns values and the [outer, n, inner]).
fn sum_dim_ref(x: &[f32], shape: &[usize], dim: usize) -> Vec<f64> {
    let outer: usize = shape[..dim].iter().product();
    let n = shape[dim];
    let inner: usize = shape[dim + 1..].iter().product();
    let mut out = vec![0.0; outer * inner];
    for o in 0..outer {
        for k in 0..n {
            for i in 0..inner {
                out[o * inner + i] += x[(o * n + k) * inner + i] as f64;
            }
        }
    }
    out
}

#[test]
fn sum_and_mean_match_float64() {
    let shapes: &[&[usize]] = &[
        &[1],
        &[5],
        &[1000],
        &[3, 700],
        &[4, 6, 5],
        &[2, 3, 300, 2],
        &[100_003],
    ];
    for (s, shape) in shapes.iter().enumerate() {
        let x = randn(s as u64, numel(shape));
        let t = tensor(&x, shape);
        let total: f64 = x.iter().map(|&v| v as f64).sum();
        let abs: f64 = x.iter().map(|&v| (v as f64).abs()).sum();
        let got = t.sum().unwrap();
        assert_eq!(got.shape(), &[] as &[usize]);
        assert_close(
            &got.to_vec().unwrap(),
            &[total],
            1e-6 * abs + 1e-6,
            0.0,
            "sum",
        );
        let n = numel(shape) as f64;
        assert_close(
            &t.mean().unwrap().to_vec().unwrap(),
            &[total / n],
            (1e-6 * abs + 1e-6) / n,
            0.0,
            "mean",
        );
        for d in 0..shape.len() {
            let want = sum_dim_ref(&x, shape, d);
            for keepdim in [false, true] {
                let got = t.sum_dim(d as isize, keepdim).unwrap();
                let mut ws = shape.to_vec();
                if keepdim {
                    ws[d] = 1
                } else {
                    ws.remove(d);
                }
                assert_eq!(got.shape(), ws.as_slice());
                let tol = 1e-6 * (shape[d] as f64).sqrt() * 4.0;
                assert_close(&got.to_vec().unwrap(), &want, tol, 1e-6, "sum_dim");
                let mean: Vec<f64> = want.iter().map(|v| v / shape[d] as f64).collect();
                let got = t
                    .mean_dim(d as isize - shape.len() as isize, keepdim)
                    .unwrap();
                assert_close(&got.to_vec().unwrap(), &mean, tol, 1e-6, "mean_dim");
            }
        }
    }
}

#[test]
fn max_dim_returns_values_and_first_indices() {
    let shape = [3usize, 5, 4];
    let mut x = randn(3, 60);
    x[7] = x[3]; // a tie along dim 1 at (0, 0..) is not guaranteed; make one explicitly:
    x[4 * 2] = 10.0; // (0, 2, 0)
    x[4 * 4] = 10.0; // (0, 4, 0): same max, later index
    let t = tensor(&x, &shape);
    let (v, i) = t.max_dim(1, false).unwrap();
    assert_eq!(v.shape(), &[3, 4]);
    let (v, i) = (v.to_vec().unwrap(), i.to_vec().unwrap());
    for o in 0..3 {
        for j in 0..4 {
            let col: Vec<f32> = (0..5).map(|k| x[(o * 5 + k) * 4 + j]).collect();
            let m = col.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let first = col.iter().position(|&c| c == m).unwrap();
            assert_eq!(v[o * 4 + j], m);
            assert_eq!(i[o * 4 + j], first as f32);
        }
    }
    let am = t.argmax(-1, true).unwrap();
    assert_eq!(am.shape(), &[3, 5, 1]);
    let nan = tensor(&[1.0, f32::NAN, 3.0], &[3]);
    assert!(nan.max_dim(0, false).unwrap().0.to_vec().unwrap()[0].is_nan());
}

#[test]
fn backward_matches_finite_differences() {
    let x = randn(21, 24);
    check_grad("sum", |t| t[0].sum(), &[tensor(&x, &[2, 3, 4])], 5e-3);
    check_grad("mean", |t| t[0].mean(), &[tensor(&x, &[2, 3, 4])], 5e-3);
    for d in -3..3isize {
        check_grad(
            "sum_dim",
            move |t| t[0].sum_dim(d, false),
            &[tensor(&x, &[2, 3, 4])],
            5e-3,
        );
        check_grad(
            "mean_dim",
            move |t| t[0].mean_dim(d, true),
            &[tensor(&x, &[2, 3, 4])],
            5e-3,
        );
        check_grad(
            "max_dim",
            move |t| Ok(t[0].max_dim(d, false)?.0),
            &[tensor(&x, &[2, 3, 4])],
            5e-3,
        );
    }
    // A long row takes the one-workgroup-per-row kernel.
    let long = randn(22, 600);
    check_grad(
        "sum wide",
        |t| t[0].sum_dim(1, false),
        &[tensor(&long, &[2, 300])],
        5e-3,
    );
}

#[test]
fn matches_pytorch_reference() {
    let r = Reference::ops();
    let x = r.tensor("sum_dim1", "input").requires_grad();
    let y = x.sum_dim(1, false).unwrap();
    r.assert_matches("sum_dim1", "output", &y, 1e-5, 1e-5);
    y.backward_with(&r.tensor("sum_dim1", "grad_output"))
        .unwrap();
    r.assert_matches("sum_dim1", "grad_input", &x.grad().unwrap(), 1e-6, 1e-6);

    let x = r.tensor("mean_all", "input").requires_grad();
    let y = x.mean().unwrap();
    r.assert_matches("mean_all", "output", &y, 1e-6, 1e-5);
    y.backward_with(&r.tensor("mean_all", "grad_output"))
        .unwrap();
    r.assert_matches("mean_all", "grad_input", &x.grad().unwrap(), 1e-7, 1e-6);
}

#[test]
fn very_long_rows_are_summed_completely() {
    // More elements per output than one invocation may loop over on lavapipe.
    let n = 17_000_000;
    let x: Vec<f32> = (0..n).map(|i| ((i % 7) as f32) - 3.0).collect();
    let want: f64 = x.iter().map(|&v| v as f64).sum();
    let got = tensor(&x, &[n]).sum().unwrap().item().unwrap();
    assert_eq!(got as f64, want);
    // Many outputs with long rows take the one-invocation-per-output kernel in chunks.
    let (rows, len) = (2048, 9000);
    let x = uniform(3, rows * len, 0.0, 1.0);
    let got = tensor(&x, &[rows, len])
        .sum_dim(1, false)
        .unwrap()
        .to_vec()
        .unwrap();
    for r in [0, 1, 2047] {
        let want: f64 = x[r * len..(r + 1) * len].iter().map(|&v| v as f64).sum();
        assert!(
            (got[r] as f64 - want).abs() < 1e-2,
            "row {r}: {} vs {want}",
            got[r]
        );
    }
}

#[test]
fn broadcast_gradients_over_many_positions_are_complete() {
    // b is broadcast to 10,000 positions per element: summed in stages.
    let a = tensor(&uniform(5, 100_000, 0.0, 1.0), &[100, 100, 10]);
    let b = tensor(&[1.0; 10], &[10]).requires_grad();
    a.mul(&b).unwrap().sum().unwrap().backward().unwrap();
    let av = a.to_vec().unwrap();
    let g = b.grad().unwrap().to_vec().unwrap();
    for j in 0..10 {
        let want: f64 = (0..10_000).map(|i| av[i * 10 + j] as f64).sum();
        assert!((g[j] as f64 - want).abs() < 1e-2, "{j}: {} vs {want}", g[j]);
    }
}

#[test]
fn max_over_long_rows_merges_chunks() {
    let n = 20_000;
    let mut x = randn(4, 2 * n);
    x[n + 15_001] = 50.0; // row 1's max, in the second chunk
    x[n + 17_000] = 50.0; // a later tie
    x[123] = 40.0; // row 0's max, first chunk
    let (v, i) = tensor(&x, &[2, n]).max_dim(1, false).unwrap();
    assert_eq!(v.to_vec().unwrap(), vec![40.0, 50.0]);
    assert_eq!(i.to_vec().unwrap(), vec![123.0, 15_001.0]);
    check_grad(
        "max_dim long",
        |t| Ok(t[0].max_dim(0, false)?.0),
        &[tensor(&x[..9000], &[9000])],
        5e-3,
    );
}

#[test]
fn reductions_of_empty_tensors_follow_pytorch() {
    let dev = device();
    let nan = f64::NAN;
    for shape in [&[0usize][..], &[2, 0, 3], &[0, 4]] {
        let x = webgrad::Tensor::zeros(dev, shape).unwrap().requires_grad();
        // sum of nothing is 0, mean of nothing is NaN (0 / 0).
        assert_eq!(x.sum().unwrap().item().unwrap(), 0.0, "sum {shape:?}");
        assert!(x.mean().unwrap().item().unwrap().is_nan(), "mean {shape:?}");
        // Backward through them gives an empty gradient of the input's shape.
        x.sum().unwrap().backward().unwrap();
        x.mean().unwrap().backward().unwrap();
        let g = x.grad().unwrap();
        assert_eq!(g.shape(), shape);
        assert!(g.to_vec().unwrap().is_empty());
    }
    // Over dims: an empty reduced dim gives zeros (sum) or NaN (mean); an empty kept dim an
    // empty result.
    let x = webgrad::Tensor::zeros(dev, &[2, 0, 3])
        .unwrap()
        .requires_grad();
    let s = x.sum_dim(1, false).unwrap();
    assert_eq!(s.shape(), &[2, 3]);
    assert_close(&s.to_vec().unwrap(), &[0.0; 6], 0.0, 0.0, "sum_dim");
    let m = x.mean_dim(-2, true).unwrap();
    assert_eq!(m.shape(), &[2, 1, 3]);
    assert_close(&m.to_vec().unwrap(), &[nan; 6], 0.0, 0.0, "mean_dim");
    let e = x.sum_dim(0, false).unwrap();
    assert_eq!(e.shape(), &[0, 3]);
    assert!(e.to_vec().unwrap().is_empty());
    assert_eq!(x.mean_dim(2, true).unwrap().shape(), &[2, 0, 1]);
    s.sum().unwrap().backward().unwrap();
    m.sum().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().shape(), &[2, 0, 3]);
    // A broadcast onto an empty batch sums no gradient into the broadcast operand.
    let b = tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    let y = webgrad::Tensor::zeros(dev, &[0, 3]).unwrap();
    y.add(&b).unwrap().sum().unwrap().backward().unwrap();
    assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![0.0; 3]);
}
