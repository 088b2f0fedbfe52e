//! max_pool2d / avg_pool2d: PyTorch's cases, float64 references, gradcheck, determinism.

mod common;
use common::*;
use webgrad::nn::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, Module};
use webgrad::{Pool2dParams, Tensor};

/// One axis's pooled size, PyTorch's rule (ceil_mode: rounded up, less one if the last window
/// would start in the right padding).
fn pooled(n: usize, k: usize, st: usize, pad: usize, d: usize, ceil: bool) -> usize {
    let room = n + 2 * pad - (d * (k - 1) + 1);
    let mut out = if ceil { room.div_ceil(st) } else { room / st } + 1;
    if ceil && (out - 1) * st >= n + pad {
        out -= 1;
    }
    out
}

/// The windows of a pooling, in output order: the indices of the input cells each reads
/// (row-major tap order) and its averaging divisor (count_include_pad: the window clipped to
/// the padded input).
fn windows(s: &[usize], p: Pool2dParams) -> (usize, usize, Vec<(Vec<usize>, f64)>) {
    let (h, w) = (s[2], s[3]);
    let ho = pooled(
        h,
        p.kernel.0,
        p.stride.0,
        p.padding.0,
        p.dilation.0,
        p.ceil_mode,
    );
    let wo = pooled(
        w,
        p.kernel.1,
        p.stride.1,
        p.padding.1,
        p.dilation.1,
        p.ceil_mode,
    );
    let mut out = Vec::new();
    for plane in 0..s[0] * s[1] {
        for oh in 0..ho {
            for ow in 0..wo {
                let h0 = (oh * p.stride.0) as isize - p.padding.0 as isize;
                let w0 = (ow * p.stride.1) as isize - p.padding.1 as isize;
                let mut cells = Vec::new();
                for a in 0..p.kernel.0 as isize {
                    for b in 0..p.kernel.1 as isize {
                        let i = h0 + a * p.dilation.0 as isize;
                        let j = w0 + b * p.dilation.1 as isize;
                        if i >= 0 && j >= 0 && i < h as isize && j < w as isize {
                            cells.push(plane * h * w + i as usize * w + j as usize);
                        }
                    }
                }
                let he = (h0 + p.kernel.0 as isize).min((h + p.padding.0) as isize);
                let we = (w0 + p.kernel.1 as isize).min((w + p.padding.1) as isize);
                let div = if p.count_include_pad {
                    ((he - h0) * (we - w0)) as f64
                } else {
                    cells.len() as f64
                };
                out.push((cells, div));
            }
        }
    }
    (ho, wo, out)
}

/// The first maximum of the cells (NaN-free input), None for no cells.
fn argmax_ref(x: &[f32], cells: &[usize]) -> Option<usize> {
    cells.iter().copied().fold(None, |b, c| match b {
        Some(b) if x[c] <= x[b] => Some(b),
        _ => Some(c),
    })
}

/// float64 pooling reference: max (-inf for a window reading nothing) or average.
fn pool_ref(x: &[f32], s: &[usize], p: Pool2dParams, max: bool) -> Vec<f64> {
    let (_, _, wins) = windows(s, p);
    wins.iter()
        .map(|(cells, div)| {
            if max {
                argmax_ref(x, cells).map_or(f64::NEG_INFINITY, |c| x[c] as f64)
            } else {
                cells.iter().map(|&c| x[c] as f64).sum::<f64>() / div
            }
        })
        .collect()
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
        check_pool_grads(i as u64, &s, p);
    }
}

/// gradcheck of max pooling and (undilated) average pooling with `p` on an input of shape s.
fn check_pool_grads(seed: u64, s: &[usize], p: Pool2dParams) {
    // Distinct values, so each window's max is unique and moving by eps keeps it.
    let mut vals: Vec<f32> = (0..numel(s)).map(|v| v as f32 * 0.05).collect();
    webgrad::Rng::new(seed).shuffle(&mut vals);
    check_grad(
        &format!("max_pool {s:?} {p:?}"),
        move |t| t[0].max_pool2d(p),
        &[tensor(&vals, s)],
        5e-3,
    );
    if p.dilation == (1, 1) {
        check_grad(
            &format!("avg_pool {s:?} {p:?}"),
            move |t| t[0].avg_pool2d(p),
            &[tensor(&randn(seed, numel(s)), s)],
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
    let mut g = vec![0.0; x.len()];
    for (cells, div) in windows(s, p).2 {
        if max {
            if let Some(c) = argmax_ref(x, &cells) {
                g[c] += 1.0;
            }
        } else {
            for c in cells {
                g[c] += 1.0 / div;
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

/// Dilated and ceil_mode windows (max pooling; average pooling too where undilated).
fn option_configs() -> Vec<(Vec<usize>, Pool2dParams)> {
    vec![
        (
            vec![2, 2, 9, 9],
            Pool2dParams::new(3).stride(1).padding(1).dilation(2),
        ),
        (
            vec![1, 3, 8, 11],
            Pool2dParams {
                kernel: (2, 3),
                stride: (2, 1),
                padding: (1, 1),
                dilation: (3, 2),
                ceil_mode: false,
                count_include_pad: true,
            },
        ),
        (
            vec![2, 2, 7, 6],
            Pool2dParams::new(3).stride(2).padding(1).ceil_mode(true),
        ),
        (
            vec![1, 2, 6, 7],
            Pool2dParams::new(3)
                .stride(2)
                .padding(1)
                .ceil_mode(true)
                .count_include_pad(false),
        ),
        // ceil_mode over tiles that leave a row and a column over: the plain 2 x 2 kernels
        // must not take it.
        (vec![1, 3, 5, 7], Pool2dParams::new(2).ceil_mode(true)),
        // ceil_mode that adds no window: the plain parameters.
        (vec![2, 2, 8, 8], Pool2dParams::new(2).ceil_mode(true)),
        (
            vec![2, 1, 10, 9],
            Pool2dParams {
                kernel: (3, 2),
                stride: (3, 2),
                padding: (1, 1),
                dilation: (2, 3),
                ceil_mode: true,
                count_include_pad: true,
            },
        ),
    ]
}

#[test]
fn dilation_and_ceil_mode_match_float64() {
    for (i, (s, p)) in option_configs().into_iter().enumerate() {
        let data = randn(i as u64 + 100, numel(&s));
        for max in [true, false] {
            if !max && p.dilation != (1, 1) {
                continue;
            }
            let what = format!("max={max} {s:?} {p:?}");
            let x = tensor(&data, &s).requires_grad();
            let y = if max {
                x.max_pool2d(p)
            } else {
                x.avg_pool2d(p)
            }
            .unwrap();
            let (_, ho, wo) = (0, windows(&s, p).0, windows(&s, p).1);
            assert_eq!(y.shape(), &[s[0], s[1], ho, wo], "{what}");
            assert_close(
                &y.to_vec().unwrap(),
                &pool_ref(&data, &s, p, max),
                1e-6,
                1e-5,
                &what,
            );
            y.sum().unwrap().backward().unwrap();
            let g = x.grad().unwrap().to_vec().unwrap();
            assert_close(&g, &pool_grad_ref(&data, &s, p, max), 1e-6, 1e-5, &what);
        }
    }
}

#[test]
fn dilation_and_ceil_mode_match_finite_differences() {
    for (i, (s, p)) in option_configs().into_iter().enumerate() {
        check_pool_grads(i as u64, &s, p);
    }
}

#[test]
fn indices_are_pytorchs_flat_plane_indices() {
    for (i, (s, p)) in configs().into_iter().chain(option_configs()).enumerate() {
        let data = randn(i as u64 + 200, numel(&s));
        let x = tensor(&data, &s).requires_grad();
        let (y, idx) = x.max_pool2d_with_indices(p).unwrap();
        assert_eq!(idx.shape(), y.shape());
        assert!(!idx.is_requires_grad());
        let plane = s[2] * s[3];
        let want: Vec<f64> = windows(&s, p)
            .2
            .iter()
            .map(|(cells, _)| (argmax_ref(&data, cells).unwrap() % plane) as f64)
            .collect();
        let what = format!("{s:?} {p:?}");
        assert_close(&idx.to_vec().unwrap(), &want, 0.0, 0.0, &what);
        assert_close(
            &y.to_vec().unwrap(),
            &pool_ref(&data, &s, p, true),
            0.0,
            0.0,
            &what,
        );
        // The values still carry the gradient.
        y.sum().unwrap().backward().unwrap();
        let g = x.grad().unwrap().to_vec().unwrap();
        assert_close(&g, &pool_grad_ref(&data, &s, p, true), 0.0, 0.0, &what);
    }
    // Under no_grad too (the argmax is otherwise skipped there).
    let x = tensor(&[3.0, 1.0, 2.0, 5.0], &[1, 1, 2, 2]);
    let (y, idx) = webgrad::no_grad(|| x.max_pool2d_with_indices(Pool2dParams::new(2))).unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![5.0]);
    assert_eq!(idx.to_vec().unwrap(), vec![3.0]);
}

#[test]
fn a_dilated_window_of_padding_only_is_minus_infinity() {
    // One pixel, a 2 x 2 window with dilation 2 and padding 1: the taps at -1 and 1 miss it.
    let x = tensor(&[4.0], &[1, 1, 1, 1]).requires_grad();
    let p = Pool2dParams::new(2).stride(1).padding(1).dilation(2);
    let (y, idx) = x.max_pool2d_with_indices(p).unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![f32::NEG_INFINITY]);
    assert_eq!(idx.to_vec().unwrap(), vec![-1.0]);
    y.sum().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![0.0]);
}

/// float64 adaptive average pooling and the gradient of the sum of its outputs times g.
fn adaptive_ref(x: &[f32], s: &[usize], out: (usize, usize), g: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let (h, w) = (s[2], s[3]);
    let bin = |i: usize, n: usize, m: usize| (i * n / m, ((i + 1) * n).div_ceil(m));
    let (mut y, mut gx) = (Vec::new(), vec![0.0; x.len()]);
    for plane in 0..s[0] * s[1] {
        for oh in 0..out.0 {
            for ow in 0..out.1 {
                let (r0, r1) = bin(oh, h, out.0);
                let (c0, c1) = bin(ow, w, out.1);
                let count = ((r1 - r0) * (c1 - c0)) as f64;
                let go = g[y.len()] as f64;
                let mut sum = 0.0;
                for i in r0..r1 {
                    for j in c0..c1 {
                        let at = plane * h * w + i * w + j;
                        sum += x[at] as f64;
                        gx[at] += go / count;
                    }
                }
                y.push(sum / count);
            }
        }
    }
    (y, gx)
}

fn adaptive_configs() -> Vec<(Vec<usize>, (usize, usize))> {
    vec![
        (vec![4, 8, 8, 8], (1, 1)),
        (vec![2, 3, 6, 8], (3, 2)),
        (vec![2, 3, 7, 9], (3, 4)),
        (vec![1, 2, 5, 3], (7, 8)),
        (vec![2, 1, 10, 4], (4, 6)),
        (vec![1, 1, 1, 1], (2, 3)),
        (vec![0, 3, 5, 5], (2, 2)),
    ]
}

/// adaptive_avg_pool2d of a random input of shape s to `out`, and its backward of a random
/// output gradient, against the float64 reference (the gradient within `grad_rtol`: an input
/// pixel in thousands of bins sums thousands of terms in f32).
fn check_adaptive(seed: u64, s: &[usize], out: (usize, usize), grad_rtol: f64) {
    let data = randn(seed, numel(s));
    let x = tensor(&data, s).requires_grad();
    let y = x.adaptive_avg_pool2d(out).unwrap();
    assert_eq!(y.shape(), &[s[0], s[1], out.0, out.1]);
    let g = randn(seed + 1, y.numel());
    let (want_y, want_g) = adaptive_ref(&data, s, out, &g);
    let what = format!("{s:?} -> {out:?}");
    assert_close(&y.to_vec().unwrap(), &want_y, 1e-6, 1e-5, &what);
    y.backward_with(&tensor(&g, y.shape())).unwrap();
    let gx = x.grad().unwrap().to_vec().unwrap();
    assert_close(&gx, &want_g, 1e-6, grad_rtol, &what);
}

#[test]
fn adaptive_avg_pool_matches_float64() {
    for (i, (s, out)) in adaptive_configs().into_iter().enumerate() {
        check_adaptive(i as u64 * 2 + 300, &s, out, 1e-5);
    }
}

#[test]
fn adaptive_avg_pool_matches_finite_differences() {
    for (i, (s, out)) in adaptive_configs().into_iter().enumerate() {
        if numel(&s) == 0 {
            continue;
        }
        check_grad(
            &format!("adaptive_avg_pool2d {s:?} -> {out:?}"),
            move |t| t[0].adaptive_avg_pool2d(out),
            &[tensor(&randn(i as u64, numel(&s)), &s)],
            5e-3,
        );
    }
}

#[test]
fn adaptive_avg_pool_past_the_loop_budget_is_exact() {
    // Bins of 200 x 150 (30,000 taps) pool one axis at a time where the device cuts long
    // loops; an output larger than the input likewise for the backward; a global pool of
    // 60,000 pixels is a staged row mean.
    check_adaptive(7, &[1, 2, 200, 300], (1, 2), 1e-5);
    check_adaptive(8, &[2, 1, 300, 200], (1, 1), 1e-5);
    check_adaptive(9, &[1, 1, 3, 2], (20000, 1), 1e-4);
}

#[test]
fn pooling_options_match_pytorch_reference() {
    let r = Reference::load("pools.safetensors");
    let mut seen = 0;
    for op in ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"] {
        for case in r.cases(op) {
            let m = r.meta(&case);
            let x = r.tensor(&case, "input").requires_grad();
            let p = || Pool2dParams {
                kernel: pair(&m["kernel_size"]),
                stride: pair(&m["stride"]),
                padding: pair(&m["padding"]),
                dilation: m.get("dilation").map_or((1, 1), pair),
                ceil_mode: m["ceil_mode"].as_bool().unwrap(),
                count_include_pad: m["count_include_pad"].as_bool().unwrap_or(true),
            };
            let y = match op {
                "max_pool2d" => {
                    let (y, idx) = x.max_pool2d_with_indices(p()).unwrap();
                    r.assert_matches(&case, "indices", &idx, 0.0, 0.0);
                    // The module gives the same values.
                    let module = MaxPool2d(p()).forward(&x.detach()).unwrap();
                    assert_eq!(module.to_vec().unwrap(), y.to_vec().unwrap(), "{case}");
                    y
                }
                "avg_pool2d" => x.avg_pool2d(p()).unwrap(),
                _ => AdaptiveAvgPool2d(pair(&m["output_size"]))
                    .forward(&x)
                    .unwrap(),
            };
            r.assert_matches(&case, "output", &y, 1e-6, 1e-5);
            y.backward_with(&r.tensor(&case, "grad_output")).unwrap();
            r.assert_matches(&case, "grad_input", &x.grad().unwrap(), 1e-6, 1e-5);
            seen += 1;
        }
    }
    assert_eq!(seen, 14);
}

#[test]
fn modules_have_pytorchs_options() {
    let m = MaxPool2d::new(3)
        .with_stride(2)
        .with_padding(1)
        .with_dilation(2)
        .with_ceil_mode(true);
    assert_eq!(
        m.0,
        Pool2dParams::new(3)
            .stride(2)
            .padding(1)
            .dilation(2)
            .ceil_mode(true)
    );
    assert_eq!(
        m.describe(),
        "MaxPool2d(k=3, s=2, p=1, d=2, ceil_mode=true)"
    );
    assert_eq!(MaxPool2d::new(2).describe(), "MaxPool2d(k=2, s=2)");
    let a = AvgPool2d::new(3)
        .with_stride(1)
        .with_padding(1)
        .with_ceil_mode(true)
        .with_count_include_pad(false);
    assert_eq!(
        a.0,
        Pool2dParams::new(3)
            .stride(1)
            .padding(1)
            .ceil_mode(true)
            .count_include_pad(false)
    );
    let g = AdaptiveAvgPool2d::new(1);
    assert_eq!(g.describe(), "AdaptiveAvgPool2d(output_size=(1, 1))");
    let x = tensor(&randn(3, 2 * 4 * 8 * 8), &[2, 4, 8, 8]);
    assert_eq!(g.forward(&x).unwrap().shape(), &[2, 4, 1, 1]);
}

#[test]
fn bad_pooling_options_fail_with_the_values() {
    let x = Tensor::zeros(device(), &[1, 1, 6, 6]).unwrap();
    let err = |r: webgrad::Result<Tensor>| r.unwrap_err().to_string();
    let e = err(x.avg_pool2d(Pool2dParams::new(2).dilation(2)));
    assert!(e.contains("avg_pool2d") && e.contains("dilation"), "{e}");
    let e = err(x.max_pool2d(Pool2dParams::new(2).dilation(0)));
    assert!(e.contains("max_pool2d") && e.contains("dilation 0"), "{e}");
    // A dilated window wider than the padded input.
    let e = err(x.max_pool2d(Pool2dParams::new(3).dilation(3)));
    assert!(
        e.contains("max_pool2d") && e.contains("[1, 1, 6, 6]"),
        "{e}"
    );
    assert!(x.max_pool2d_with_indices(Pool2dParams::new(7)).is_err());
    let e = err(x.adaptive_avg_pool2d((0, 2)));
    assert!(
        e.contains("adaptive_avg_pool2d") && e.contains("(0, 2)"),
        "{e}"
    );
    let e = err(Tensor::zeros(device(), &[6, 6])
        .unwrap()
        .adaptive_avg_pool2d((1, 1)));
    assert!(
        e.contains("adaptive_avg_pool2d") && e.contains("[6, 6]"),
        "{e}"
    );
    let e = err(Tensor::zeros(device(), &[1, 1, 0, 4])
        .unwrap()
        .adaptive_avg_pool2d((1, 1)));
    assert!(e.contains("[1, 1, 0, 4]"), "{e}");
    let e = err(x.adaptive_avg_pool2d((1 << 22, 1)));
    assert!(e.contains("2^24"), "{e}");
}
