//! max_pool2d / avg_pool2d: PyTorch's cases, float64 references, gradcheck, determinism.

mod common;
use common::*;
use webgrad::{Pool2dParams, Tensor};

/// float64 pooling reference: (max or average, count_include_pad).
fn pool_ref(x: &[f32], s: &[usize], p: Pool2dParams, max: bool) -> Vec<f64> {
    let (h, w) = (s[2], s[3]);
    let ho = (h + 2 * p.padding.0 - p.kernel.0) / p.stride.0 + 1;
    let wo = (w + 2 * p.padding.1 - p.kernel.1) / p.stride.1 + 1;
    let mut out = Vec::new();
    for plane in 0..s[0] * s[1] {
        for oh in 0..ho {
            for ow in 0..wo {
                let h0 = (oh * p.stride.0) as isize - p.padding.0 as isize;
                let w0 = (ow * p.stride.1) as isize - p.padding.1 as isize;
                let (mut best, mut sum, mut count) = (f64::NEG_INFINITY, 0.0, 0);
                for i in h0..h0 + p.kernel.0 as isize {
                    for j in w0..w0 + p.kernel.1 as isize {
                        if i < 0 || j < 0 || i >= h as isize || j >= w as isize {
                            continue;
                        }
                        let v = x[plane * h * w + i as usize * w + j as usize] as f64;
                        best = best.max(v);
                        sum += v;
                        count += 1;
                    }
                }
                let he = (h0 + p.kernel.0 as isize).min((h + p.padding.0) as isize);
                let we = (w0 + p.kernel.1 as isize).min((w + p.padding.1) as isize);
                let div = if p.count_include_pad {
                    ((he - h0) * (we - w0)) as f64
                } else {
                    count as f64
                };
                out.push(if max { best } else { sum / div });
            }
        }
    }
    out
}

fn configs() -> Vec<(Vec<usize>, Pool2dParams)> {
    vec![
        (vec![2, 3, 8, 8], Pool2dParams::new(2)),
        (vec![1, 2, 9, 7], Pool2dParams::new(3).stride(2).padding(1)),
        (
            vec![3, 1, 5, 6],
            Pool2dParams::new(3)
                .stride(1)
                .padding(1)
                .count_include_pad(false),
        ),
        (
            vec![2, 2, 7, 9],
            Pool2dParams {
                kernel: (2, 3),
                stride: (1, 2),
                padding: (1, 0),
                dilation: (1, 1),
                ceil_mode: false,
                count_include_pad: true,
            },
        ),
        // kernel = stride that leaves the last row and column outside every window (their
        // gradient is 0), and windows that tile the input exactly (one invocation per window).
        (vec![2, 3, 9, 7], Pool2dParams::new(2)),
        (vec![1, 2, 9, 6], Pool2dParams::new(3)),
        (vec![64, 6, 28, 28], Pool2dParams::new(2)),
    ]
}

#[test]
fn forward_matches_float64() {
    for (i, (s, p)) in configs().into_iter().enumerate() {
        let x = randn(i as u64, numel(&s));
        let t = tensor(&x, &s);
        assert_close(
            &t.max_pool2d(p).unwrap().to_vec().unwrap(),
            &pool_ref(&x, &s, p, true),
            0.0,
            0.0,
            "max",
        );
        assert_close(
            &t.avg_pool2d(p).unwrap().to_vec().unwrap(),
            &pool_ref(&x, &s, p, false),
            1e-6,
            1e-6,
            "avg",
        );
    }
}

#[test]
fn backward_matches_finite_differences() {
    for (i, (s, p)) in configs().into_iter().enumerate() {
        if numel(&s) > 10_000 {
            continue;
        }
        // Distinct values, so each window's max is unique and moving by eps keeps it.
        let mut vals: Vec<f32> = (0..numel(&s)).map(|v| v as f32 * 0.05).collect();
        webgrad::Rng::new(i as u64).shuffle(&mut vals);
        check_grad(
            &format!("max_pool {i}"),
            move |t| t[0].max_pool2d(p),
            &[tensor(&vals, &s)],
            5e-3,
        );
        check_grad(
            &format!("avg_pool {i}"),
            move |t| t[0].avg_pool2d(p),
            &[tensor(&randn(i as u64, numel(&s)), &s)],
            5e-3,
        );
    }
}

#[test]
fn matches_pytorch_reference() {
    let r = Reference::ops();
    for op in ["max_pool2d", "avg_pool2d"] {
        for case in r.cases(op) {
            let m = r.meta(&case);
            let p = Pool2dParams {
                kernel: pair(&m["kernel_size"]),
                stride: pair(&m["stride"]),
                padding: pair(&m["padding"]),
                dilation: (1, 1),
                ceil_mode: false,
                count_include_pad: m["count_include_pad"].as_bool().unwrap_or(true),
            };
            let x = r.tensor(&case, "input").requires_grad();
            let y = if op == "max_pool2d" {
                x.max_pool2d(p)
            } else {
                x.avg_pool2d(p)
            }
            .unwrap();
            r.assert_matches(&case, "output", &y, 1e-6, 1e-5);
            y.backward_with(&r.tensor(&case, "grad_output")).unwrap();
            r.assert_matches(&case, "grad_input", &x.grad().unwrap(), 1e-6, 1e-5);
        }
    }
}

#[test]
fn ties_route_to_the_first_max_and_bad_shapes_fail() {
    let x = tensor(&[1.0, 1.0, 1.0, 1.0], &[1, 1, 2, 2]).requires_grad();
    x.max_pool2d(Pool2dParams::new(2))
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        x.grad().unwrap().to_vec().unwrap(),
        vec![1.0, 0.0, 0.0, 0.0]
    );
    let bad = Tensor::zeros(device(), &[1, 1, 3, 3]).unwrap();
    assert!(bad.max_pool2d(Pool2dParams::new(4)).is_err());
    assert!(bad.max_pool2d(Pool2dParams::new(2).padding(2)).is_err());
    assert!(Tensor::zeros(device(), &[3, 3])
        .unwrap()
        .avg_pool2d(Pool2dParams::new(2))
        .is_err());
}

#[test]
fn nan_propagates_and_takes_the_gradient() {
    // As PyTorch: a window holding NaN gives NaN, and the gradient goes to the (first) NaN.
    // 2 x 2 tiles (the vec2 kernel) and 2 x 3 windows (the general one).
    let nan = f32::NAN;
    for (k, vals, want_grad) in [
        (
            (2, 2),
            vec![1.0, nan, 5.0, 1.0, 3.0, 2.0, nan, 9.0],
            vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        ),
        (
            (2, 3),
            vec![1.0, 7.0, nan, 3.0, nan, 2.0, 0.0, 0.0],
            vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ),
    ] {
        let x = tensor(&vals, &[1, 1, 2, 4]).requires_grad();
        let p = Pool2dParams {
            kernel: k,
            stride: k,
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
            count_include_pad: true,
        };
        let y = x.max_pool2d(p).unwrap();
        assert!(y.to_vec().unwrap().iter().all(|v| v.is_nan()), "{k:?}");
        y.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec().unwrap(), want_grad, "{k:?}");
    }
}

/// float64 gradient of the sum of all outputs: 1/div to every cell of each window (average),
/// or 1 to each window's first maximum in row-major order (max).
fn pool_grad_ref(x: &[f32], s: &[usize], p: Pool2dParams, max: bool) -> Vec<f64> {
    let (h, w) = (s[2], s[3]);
    let ho = (h + 2 * p.padding.0 - p.kernel.0) / p.stride.0 + 1;
    let wo = (w + 2 * p.padding.1 - p.kernel.1) / p.stride.1 + 1;
    let mut g = vec![0.0; x.len()];
    for plane in 0..s[0] * s[1] {
        for oh in 0..ho {
            for ow in 0..wo {
                let h0 = (oh * p.stride.0) as isize - p.padding.0 as isize;
                let w0 = (ow * p.stride.1) as isize - p.padding.1 as isize;
                let mut cells = Vec::new();
                for i in h0..h0 + p.kernel.0 as isize {
                    for j in w0..w0 + p.kernel.1 as isize {
                        if i >= 0 && j >= 0 && i < h as isize && j < w as isize {
                            cells.push(plane * h * w + i as usize * w + j as usize);
                        }
                    }
                }
                if max {
                    let best =
                        cells.iter().copied().fold(
                            cells[0],
                            |b, c| {
                                if x[c] > x[b] {
                                    c
                                } else {
                                    b
                                }
                            },
                        );
                    g[best] += 1.0;
                } else {
                    let div = if p.count_include_pad {
                        (p.kernel.0 * p.kernel.1) as f64
                    } else {
                        cells.len() as f64
                    };
                    for c in cells {
                        g[c] += 1.0 / div;
                    }
                }
            }
        }
    }
    g
}

#[test]
fn windows_past_the_loop_budget_are_exact() {
    // llvmpipe cuts loops after 65,535 iterations: a 256 x 256 global pool gave 0.992 for the
    // average of ones and missed the maximum. Large windows now pool one axis at a time.
    let cases = [
        (vec![1, 2, 256, 256], Pool2dParams::new(256)),
        (vec![1, 1, 296, 296], Pool2dParams::new(300).padding(2)),
        (
            vec![1, 1, 296, 296],
            Pool2dParams::new(300).padding(2).count_include_pad(false),
        ),
        // Overlapping windows: 8,281 taps, and each pixel in up to 8,281 windows.
        (vec![2, 1, 100, 100], Pool2dParams::new(91).stride(1)),
    ];
    for (seed, (shape, p)) in cases.into_iter().enumerate() {
        let n = numel(&shape);
        let ones = tensor(&vec![1.0; n], &shape);
        let avg = ones.avg_pool2d(p).unwrap().to_vec().unwrap();
        let want = pool_ref(&vec![1.0; n], &shape, p, false);
        assert_close(
            &avg,
            &want,
            1e-6,
            1e-5,
            &format!("avg of ones {shape:?} {p:?}"),
        );
        let data = randn(seed as u64 + 40, n);
        for max in [true, false] {
            let x = tensor(&data, &shape).requires_grad();
            let y = if max {
                x.max_pool2d(p).unwrap()
            } else {
                x.avg_pool2d(p).unwrap()
            };
            let what = format!("max={max} {shape:?} {p:?}");
            let want = pool_ref(&data, &shape, p, max);
            assert_close(&y.to_vec().unwrap(), &want, 1e-6, 1e-5, &what);
            y.sum().unwrap().backward().unwrap();
            let want_g = pool_grad_ref(&data, &shape, p, max);
            let got_g = x.grad().unwrap().to_vec().unwrap();
            assert_close(&got_g, &want_g, 1e-6, 1e-5, &format!("grad {what}"));
        }
    }
}

#[test]
fn an_empty_batch_pools_to_an_empty_output() {
    for max in [true, false] {
        let x = Tensor::zeros(device(), &[0, 3, 6, 6])
            .unwrap()
            .requires_grad();
        let p = Pool2dParams::new(2);
        let y = if max {
            x.max_pool2d(p)
        } else {
            x.avg_pool2d(p)
        }
        .unwrap();
        assert_eq!(y.shape(), &[0, 3, 3, 3], "max={max}");
        assert!(y.to_vec().unwrap().is_empty());
        y.sum().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().shape(), &[0, 3, 6, 6], "max={max}");
    }
}
