//! matmul: 2-D, batched, broadcast and 1-D forms against float64; backward by gradcheck and
//! against PyTorch (matmul, batched matmul, and linear = x w^T + b).

mod common;
use common::*;

/// Rounding error bound for a dot product: a few ulps of sum |a||b|.
fn check_mm(m: usize, k: usize, n: usize, seed: u64) {
    let a = randn(seed, m * k);
    let b = randn(seed + 1, k * n);
    let got = tensor(&a, &[m, k]).matmul(&tensor(&b, &[k, n])).unwrap();
    assert_eq!(got.shape(), &[m, n]);
    let (want, mag) = matmul_ref(&a, &b, 1, m, k, n);
    let got = got.to_vec().unwrap();
    for i in 0..m * n {
        let err = (got[i] as f64 - want[i]).abs();
        assert!(
            err <= 1e-6 * mag[i] * (k as f64).sqrt() + 1e-6,
            "{m}x{k}x{n} [{i}]: {} vs {}",
            got[i],
            want[i]
        );
    }
}

#[test]
fn two_d_matches_float64_across_tile_edges() {
    for (i, &(m, k, n)) in [
        (1, 1, 1),
        (7, 13, 5),
        (32, 32, 32),
        (33, 31, 65),
        (65, 33, 70),
        (130, 257, 67),
        (1, 300, 1),
    ]
    .iter()
    .enumerate()
    {
        check_mm(m, k, n, i as u64 * 10);
    }
}

#[test]
fn batched_and_broadcast_forms() {
    let (m, k, n) = (5, 6, 7);
    let a = randn(1, 2 * 3 * m * k);
    let b = randn(2, 3 * k * n);
    // [2, 3, m, k] x [3, k, n]: b broadcast over the first batch dim.
    let got = tensor(&a, &[2, 3, m, k])
        .matmul(&tensor(&b, &[3, k, n]))
        .unwrap();
    assert_eq!(got.shape(), &[2, 3, m, n]);
    let bb: Vec<f32> = b.iter().chain(b.iter()).cloned().collect();
    let (want, _) = matmul_ref(&a, &bb, 6, m, k, n);
    assert_close(
        &got.to_vec().unwrap(),
        &want,
        1e-5,
        1e-5,
        "batched broadcast",
    );

    // [2, 1, m, k] x [3, k, n] -> [2, 3, m, n]: a expanded along dim 1.
    let a2 = randn(3, 2 * m * k);
    let got = tensor(&a2, &[2, 1, m, k])
        .matmul(&tensor(&b, &[3, k, n]))
        .unwrap();
    assert_eq!(got.shape(), &[2, 3, m, n]);
    let mut aa = Vec::new();
    for bi in 0..2 {
        for _ in 0..3 {
            aa.extend_from_slice(&a2[bi * m * k..(bi + 1) * m * k]);
        }
    }
    let (want, _) = matmul_ref(&aa, &bb, 6, m, k, n);
    assert_close(&got.to_vec().unwrap(), &want, 1e-5, 1e-5, "expanded batch");

    // Batched x 2-D.
    let w = randn(4, k * n);
    let got = tensor(&a, &[6, m, k]).matmul(&tensor(&w, &[k, n])).unwrap();
    let ww: Vec<f32> = (0..6).flat_map(|_| w.clone()).collect();
    let (want, _) = matmul_ref(&a, &ww, 6, m, k, n);
    assert_close(&got.to_vec().unwrap(), &want, 1e-5, 1e-5, "batched x 2-D");

    // 1-D operands.
    let v = randn(5, k);
    let mat = randn(6, k * n);
    let got = tensor(&v, &[k]).matmul(&tensor(&mat, &[k, n])).unwrap();
    assert_eq!(got.shape(), &[n]);
    let (want, _) = matmul_ref(&v, &mat, 1, 1, k, n);
    assert_close(&got.to_vec().unwrap(), &want, 1e-5, 1e-5, "vector x matrix");
    let got = tensor(&mat, &[n, k]).matmul(&tensor(&v, &[k])).unwrap();
    assert_eq!(got.shape(), &[n]);
    let dot = tensor(&v, &[k]).matmul(&tensor(&v, &[k])).unwrap();
    assert_eq!(dot.shape(), &[] as &[usize]);
}

#[test]
fn mismatched_inner_dims_are_an_error() {
    let err = tensor(&[0.0; 6], &[2, 3])
        .matmul(&tensor(&[0.0; 8], &[4, 2]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 2]"), "{err}");
}

#[test]
fn backward_matches_finite_differences() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 4], &[4, 5]),
        (&[2, 3, 4], &[2, 4, 2]),
        (&[2, 3, 4], &[4, 2]),
        (&[3, 4], &[2, 4, 2]),
        (&[2, 1, 2, 3], &[3, 3, 2]),
        (&[4], &[4, 3]),
        (&[3, 4], &[4]),
    ];
    for (i, (sa, sb)) in cases.iter().enumerate() {
        let a = randn(i as u64 + 30, numel(sa));
        let b = randn(i as u64 + 60, numel(sb));
        check_grad(
            &format!("matmul {sa:?} {sb:?}"),
            |t| t[0].matmul(&t[1]),
            &[tensor(&a, sa), tensor(&b, sb)],
            5e-3,
        );
    }
}

#[test]
fn matches_pytorch_reference() {
    let r = Reference::ops();
    for case in ["matmul", "matmul_batched"] {
        let a = r.tensor(case, "a").requires_grad();
        let b = r.tensor(case, "b").requires_grad();
        let out = a.matmul(&b).unwrap();
        r.assert_matches(case, "output", &out, 1e-5, 1e-5);
        out.backward_with(&r.tensor(case, "grad_output")).unwrap();
        r.assert_matches(case, "grad_a", &a.grad().unwrap(), 1e-5, 1e-5);
        r.assert_matches(case, "grad_b", &b.grad().unwrap(), 1e-5, 1e-5);
    }
    // linear(x, w, b) = x w^T + b, fused and composed from core ops.
    for fused in [true, false] {
        let case = "linear";
        let x = r.tensor(case, "input").requires_grad();
        let w = r.tensor(case, "weight").requires_grad();
        let b = r.tensor(case, "bias").requires_grad();
        let out = if fused {
            x.linear(&w, Some(&b)).unwrap()
        } else {
            x.matmul(&w.t().unwrap()).unwrap().add(&b).unwrap()
        };
        r.assert_matches(case, "output", &out, 1e-5, 1e-5);
        out.backward_with(&r.tensor(case, "grad_output")).unwrap();
        r.assert_matches(case, "grad_input", &x.grad().unwrap(), 1e-5, 1e-5);
        r.assert_matches(case, "grad_weight", &w.grad().unwrap(), 1e-5, 1e-5);
        r.assert_matches(case, "grad_bias", &b.grad().unwrap(), 1e-5, 1e-5);
    }
}

#[test]
fn linear_backward_matches_finite_differences() {
    let (x, w, b) = (randn(1, 15), randn(2, 12), randn(3, 4));
    check_grad(
        "linear",
        |t| t[0].linear(&t[1], Some(&t[2])),
        &[tensor(&x, &[5, 3]), tensor(&w, &[4, 3]), tensor(&b, &[4])],
        5e-3,
    );
    check_grad(
        "linear 3-D",
        |t| t[0].linear(&t[1], None),
        &[tensor(&randn(4, 24), &[2, 4, 3]), tensor(&w, &[4, 3])],
        5e-3,
    );
    // The bias gradient sums over every leading dimension.
    check_grad(
        "linear 3-D with bias",
        |t| t[0].linear(&t[1], Some(&t[2])),
        &[
            tensor(&randn(5, 24), &[2, 4, 3]),
            tensor(&w, &[4, 3]),
            tensor(&b, &[4]),
        ],
        5e-3,
    );
}

#[test]
fn linear_bias_and_weight_gradients_match_float64() {
    // On CPU adapters a narrow layer's weight-gradient kernel also sums the upstream gradient
    // for the bias (LeNet's fc3: 10 outputs, 84 inputs, two column tiles and a partial row
    // tile); 9,000 rows pass the loop budget and take the separate sum.
    for &(rows, inp, out) in &[
        (64, 84, 10),
        (7, 3, 16),
        (33, 130, 9),
        (9000, 5, 3),
        (1, 1, 1),
    ] {
        let (xv, wv) = (randn(1, rows * inp), randn(2, out * inp));
        let gv = randn(3, rows * out);
        let x = tensor(&xv, &[rows, inp]);
        let w = tensor(&wv, &[out, inp]).requires_grad();
        let b = tensor(&randn(4, out), &[out]).requires_grad();
        let y = x.linear(&w, Some(&b)).unwrap();
        y.backward_with(&tensor(&gv, &[rows, out])).unwrap();
        let want_b: Vec<f64> = (0..out)
            .map(|o| (0..rows).map(|r| gv[r * out + o] as f64).sum())
            .collect();
        let want_w: Vec<f64> = (0..out * inp)
            .map(|e| {
                let (o, i) = (e / inp, e % inp);
                (0..rows)
                    .map(|r| gv[r * out + o] as f64 * xv[r * inp + i] as f64)
                    .sum()
            })
            .collect();
        let what = format!("{rows}x{inp}->{out}");
        let tol = 1e-5 * (rows as f64).sqrt();
        let got_b = b.grad().unwrap().to_vec().unwrap();
        assert_close(&got_b, &want_b, tol, 1e-4, &format!("{what}: grad b"));
        let got_w = w.grad().unwrap().to_vec().unwrap();
        assert_close(&got_w, &want_w, tol, 1e-4, &format!("{what}: grad w"));
    }
}

#[test]
fn both_schedules_agree_with_float64() {
    // Whatever the adapter, run the workgroup-memory tiles and the register blocks (GPU and
    // CPU kernel classes).
    // Every kernel variant this adapter can run (see `for_each_policy`).
    for dev in policy_devices() {
        for &(batch, m, k, n) in &[
            (1, 1, 1, 1),
            (1, 65, 33, 70),
            (3, 130, 17, 67),
            (2, 64, 64, 64),
            (2, 7, 9, 68),
            (1, 16, 5, 3),
        ] {
            let a = randn(m as u64, batch * m * k);
            let b = randn(n as u64, batch * k * n);
            let ta = webgrad::Tensor::from_slice(&dev, &a, &[batch, m, k]).unwrap();
            let tb = webgrad::Tensor::from_slice(&dev, &b, &[batch, k, n]).unwrap();
            let (want, _) = matmul_ref(&a, &b, batch, m, k, n);
            let got = ta.matmul(&tb).unwrap().to_vec().unwrap();
            assert_close(
                &got,
                &want,
                1e-5,
                1e-5,
                &format!("kernels={} {batch}x{m}x{k}x{n}", dev.kernel_class().name()),
            );
            // Transposed operands through strides (the backward's path).
            let tg = ta.requires_grad();
            tg.matmul(&tb).unwrap().sum().unwrap().backward().unwrap();
            let mut want_g = vec![0.0f64; batch * m * k];
            for bi in 0..batch {
                for i in 0..m {
                    for kk in 0..k {
                        want_g[bi * m * k + i * k + kk] =
                            (0..n).map(|j| b[bi * k * n + kk * n + j] as f64).sum();
                    }
                }
            }
            assert_close(
                &tg.grad().unwrap().to_vec().unwrap(),
                &want_g,
                1e-5,
                1e-5,
                "grad via strides",
            );
        }
    }
}

#[test]
fn long_inner_dimension_is_summed_completely() {
    // k = 70,000 is more loop iterations than lavapipe lets one invocation run (65,535).
    let (m, k, n) = (2, 70_000, 3);
    let a = uniform(1, m * k, -1.0, 1.0);
    let b = uniform(2, k * n, -1.0, 1.0);
    let got = tensor(&a, &[m, k]).matmul(&tensor(&b, &[k, n])).unwrap();
    let (want, mag) = matmul_ref(&a, &b, 1, m, k, n);
    let got = got.to_vec().unwrap();
    for i in 0..m * n {
        assert!(
            (got[i] as f64 - want[i]).abs() < 1e-5 * mag[i],
            "[{i}] {} vs {}",
            got[i],
            want[i]
        );
    }
}

#[test]
fn linear_bias_epilogue_matches_float64_on_both_schedules() {
    // The bias is added inside the product: check every kernel, a split inner dimension
    // (in = 9,000 is past the loop budget, so later pieces accumulate and must not re-add it)
    // and the empty product (in = 0: the output is the bias). Sizes that are multiples of 4
    // reach the CPU adapters' vec4 kernels (their epilogue is compiled per bias, accumulation
    // and ReLU), the others the scalar ones.
    // Every kernel variant this adapter can run (see `for_each_policy`).
    for dev in policy_devices() {
        for &(rows, inp, out) in &[
            (5, 3, 4),
            (40, 70, 130),
            (40, 72, 132),
            (3, 9000, 5),
            (20, 9004, 8),
            (17, 0, 6),
        ] {
            let x = uniform(rows as u64, rows * inp, -1.0, 1.0);
            let w = uniform(inp as u64 + 7, out * inp, -1.0, 1.0);
            let b = uniform(out as u64 + 9, out, -1.0, 1.0);
            let tx = webgrad::Tensor::from_slice(&dev, &x, &[rows, inp]).unwrap();
            let tw = webgrad::Tensor::from_slice(&dev, &w, &[out, inp]).unwrap();
            let tb = webgrad::Tensor::from_slice(&dev, &b, &[out]).unwrap();
            let got = tx.linear(&tw, Some(&tb)).unwrap().to_vec().unwrap();
            let want: Vec<f64> = (0..rows * out)
                .map(|i| {
                    let (r, o) = (i / out, i % out);
                    b[o] as f64
                        + (0..inp)
                            .map(|k| x[r * inp + k] as f64 * w[o * inp + k] as f64)
                            .sum::<f64>()
                })
                .collect();
            let what = format!(
                "kernels={} linear {rows}x{inp}->{out}",
                dev.kernel_class().name()
            );
            assert_close(
                &got,
                &want,
                1e-5 * (inp as f64).sqrt().max(1.0),
                1e-5,
                &what,
            );
        }
    }
}

#[test]
fn fused_relu_matches_linear_then_relu_on_both_schedules() {
    // linear_relu against relu(linear(..)), including a split inner dimension (the ReLU must
    // wait for the last piece), in = 0, and 9,000 rows (the backward's ReLU mask and bias sum,
    // one kernel up to the loop budget's rows, are then two).
    // Every kernel variant this adapter can run (see `for_each_policy`).
    for dev in policy_devices() {
        for &(rows, inp, out) in &[
            (5, 3, 4),
            (40, 70, 130),
            (40, 72, 132),
            (3, 9000, 5),
            (20, 9002, 6),
            (20, 9004, 8),
            (17, 0, 6),
            (9000, 3, 5),
        ] {
            let run = |fused: bool| {
                let t = |seed: u64, shape: &[usize]| {
                    let v = uniform(seed, shape.iter().product(), -1.0, 1.0);
                    webgrad::Tensor::from_slice(&dev, &v, shape)
                        .unwrap()
                        .requires_grad()
                };
                let (x, w, b) = (t(1, &[rows, inp]), t(2, &[out, inp]), t(3, &[out]));
                let y = if fused {
                    x.linear_relu(&w, Some(&b)).unwrap()
                } else {
                    x.linear(&w, Some(&b)).unwrap().relu().unwrap()
                };
                y.backward_with(&t(4, &[rows, out])).unwrap();
                let grad = |v: &webgrad::Tensor| v.grad().unwrap().to_vec().unwrap();
                (y.to_vec().unwrap(), grad(&x), grad(&w), grad(&b))
            };
            let (f, p) = (run(true), run(false));
            let what = format!("kernels={} {rows}x{inp}->{out}", dev.kernel_class().name());
            assert_eq!(f.0, p.0, "{what}: output");
            assert_close(&f.1, &to_f64(&p.1), 1e-5, 1e-5, &format!("{what}: grad x"));
            assert_close(&f.2, &to_f64(&p.2), 1e-5, 1e-5, &format!("{what}: grad w"));
            assert_close(&f.3, &to_f64(&p.3), 1e-5, 1e-5, &format!("{what}: grad b"));
        }
    }
}

#[test]
fn linear_and_matmul_over_an_empty_batch_give_empty_outputs_and_zero_gradients() {
    for relu in [false, true] {
        let x = webgrad::Tensor::zeros(device(), &[0, 5])
            .unwrap()
            .requires_grad();
        let w = tensor(&randn(1, 15), &[3, 5]).requires_grad();
        let b = tensor(&randn(2, 3), &[3]).requires_grad();
        let y = if relu {
            x.linear_relu(&w, Some(&b))
        } else {
            x.linear(&w, Some(&b))
        }
        .unwrap();
        assert_eq!(y.shape(), &[0, 3]);
        assert!(y.to_vec().unwrap().is_empty());
        y.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), &[0, 5]);
        assert_eq!(w.grad().unwrap().to_vec().unwrap(), vec![0.0; 15]);
        assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![0.0; 3]);
    }
    // An empty inner dimension: [2, 0] x [0, 3] is zeros, as in PyTorch.
    let a = webgrad::Tensor::zeros(device(), &[2, 0]).unwrap();
    let b = webgrad::Tensor::zeros(device(), &[0, 3]).unwrap();
    assert_eq!(a.matmul(&b).unwrap().to_vec().unwrap(), vec![0.0; 6]);
}
