//! conv2d: PyTorch's cases (forward and every gradient), float64 references, gradcheck over
//! random configurations, the course's hand-computed kernels, chunked large batches,
//! determinism and shape errors.

mod common;
use common::*;
use webgrad::{conv2d_output_size, receptive_field, Conv2dParams, Tensor};

#[test]
fn matches_pytorch_reference() {
    let r = Reference::ops();
    let cases = r.cases("conv2d");
    assert!(cases.len() >= 6, "{cases:?}");
    for case in cases {
        let m = r.meta(&case);
        let p = Conv2dParams {
            stride: pair(&m["stride"]),
            padding: pair(&m["padding"]),
            dilation: pair(&m["dilation"]),
            groups: m["groups"].as_u64().unwrap() as usize,
        };
        let x = r.tensor(&case, "input").requires_grad();
        let w = r.tensor(&case, "weight").requires_grad();
        let b = r
            .has(&case, "bias")
            .then(|| r.tensor(&case, "bias").requires_grad());
        let y = x.conv2d(&w, b.as_ref(), p).unwrap();
        r.assert_matches(&case, "output", &y, 1e-5, 1e-4);
        y.backward_with(&r.tensor(&case, "grad_output")).unwrap();
        r.assert_matches(&case, "grad_input", &x.grad().unwrap(), 1e-5, 1e-4);
        r.assert_matches(&case, "grad_weight", &w.grad().unwrap(), 1e-4, 1e-4);
        if let Some(b) = b {
            r.assert_matches(&case, "grad_bias", &b.grad().unwrap(), 1e-4, 1e-4);
        }
    }
}

#[test]
fn forward_matches_float64_on_random_configurations() {
    let configs = [
        // (n, c, h, w, c_out, kh, kw, stride, pad, dil, groups)
        (1, 1, 5, 5, 1, 3, 3, (1, 1), (0, 0), (1, 1), 1),
        (3, 4, 9, 7, 6, 3, 2, (2, 1), (1, 0), (1, 2), 2),
        (2, 3, 17, 13, 5, 5, 5, (1, 1), (2, 2), (1, 1), 1),
        (5, 6, 8, 8, 6, 1, 1, (3, 3), (0, 0), (1, 1), 3),
        (2, 2, 30, 31, 4, 3, 3, (2, 2), (1, 1), (3, 3), 1),
        // Channel counts that are not multiples of 8: blocks of 6 (12 outputs), of 5 (10 per
        // group), of 7 (13).
        (3, 10, 7, 6, 12, 3, 3, (1, 1), (1, 1), (1, 1), 1),
        (2, 20, 6, 7, 26, 3, 2, (2, 1), (1, 0), (1, 1), 2),
        (4, 9, 5, 5, 13, 1, 1, (1, 1), (0, 0), (1, 1), 1),
    ];
    for (i, &(n, c, h, w, co, kh, kw, s, p, d, g)) in configs.iter().enumerate() {
        let (xs, ws) = ([n, c, h, w], [co, c / g, kh, kw]);
        let x = randn(i as u64, numel(&xs));
        let wt = randn(i as u64 + 9, numel(&ws));
        let b = randn(i as u64 + 99, co);
        let params = Conv2dParams {
            stride: s,
            padding: p,
            dilation: d,
            groups: g,
        };
        let y = tensor(&x, &xs)
            .conv2d(&tensor(&wt, &ws), Some(&tensor(&b, &[co])), params)
            .unwrap();
        let want = conv2d_ref(&x, &xs, &wt, &ws, Some(&b), s, p, d, g, 0..n);
        assert_close(
            &y.to_vec().unwrap(),
            &want,
            1e-5,
            1e-5,
            &format!("config {i}"),
        );
    }
}

/// float64 input gradient of conv2d: each output gradient g[n, co, oh, ow] times the weights,
/// added at the input pixels its taps read.
#[allow(clippy::too_many_arguments)]
fn conv2d_input_grad_ref(
    g: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
) -> Vec<f64> {
    let mut gx = vec![0.0f64; numel(xs)];
    conv2d_taps(xs, ws, stride, pad, dil, groups, 0..xs[0], |o, xi, wi| {
        gx[xi] += w[wi] as f64 * g[o] as f64
    });
    gx
}

/// float64 weight and bias gradients of conv2d: each weight's input times the output gradient
/// it reached, summed over images and pixels; the output gradient summed per channel.
#[allow(clippy::too_many_arguments)]
fn conv2d_weight_grad_ref(
    g: &[f32],
    x: &[f32],
    xs: &[usize],
    ws: &[usize],
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut gw = vec![0.0f64; numel(ws)];
    conv2d_taps(xs, ws, stride, pad, dil, groups, 0..xs[0], |o, xi, wi| {
        gw[wi] += x[xi] as f64 * g[o] as f64
    });
    let plane = g.len() / (xs[0] * ws[0]);
    let mut gb = vec![0.0f64; ws[0]];
    for (i, v) in g.iter().enumerate() {
        gb[i / plane % ws[0]] += *v as f64;
    }
    (gw, gb)
}

#[test]
fn channel_blocks_of_16_and_32_match_float64_forward_and_gradients() {
    // Channel counts in whole blocks of 8 from 16 up, which 8-lane subgroup adapters share
    // across a subgroup (32 channels per subgroup, or 16 with two image quads per lane): odd
    // image quads, partly used blocks (24 and 40 channels per group; 90 and 96 taps, in the
    // weight gradient's blocks of taps), groups, dilation, taps not a multiple of 4, strides,
    // with and without the fused ReLU; all three gradients; under every kernel class.
    let configs = [
        // (n, c, h, w, c_out, kh, kw, stride, pad, dil, groups)
        (5, 3, 9, 8, 16, 3, 3, (2, 2), (1, 1), (1, 1), 1),
        (9, 16, 7, 6, 32, 3, 2, (1, 1), (1, 0), (2, 1), 1),
        (3, 48, 5, 5, 48, 3, 3, (1, 1), (2, 2), (1, 1), 2),
        (2, 64, 4, 4, 40, 1, 1, (1, 1), (0, 0), (1, 1), 1),
        (4, 16, 6, 6, 3, 3, 3, (1, 1), (1, 1), (1, 1), 1),
        // Strided input gradients: stride 2 (ResNet-20's downsampling), and strides 3 and 2
        // against dilations 2 and 1 (taps whose numerators the stride divides at varying
        // offsets).
        (4, 16, 9, 8, 8, 3, 3, (2, 2), (1, 1), (1, 1), 1),
        (3, 32, 11, 10, 16, 3, 2, (3, 2), (1, 0), (2, 1), 1),
        // Two blocks of 32 channels at stride 2, and 90 taps (10 input channels x 9).
        (6, 32, 8, 8, 64, 3, 3, (2, 2), (1, 1), (1, 1), 1),
        (5, 10, 6, 7, 32, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    ];
    for_each_policy(|dev| {
        for (i, &(n, c, h, w, co, kh, kw, s, p, d, g)) in configs.iter().enumerate() {
            let (xs, ws) = ([n, c, h, w], [co, c / g, kh, kw]);
            let on = |v: &[f32], shape: &[usize]| Tensor::from_slice(dev, v, shape).unwrap();
            let (xv, wv, bv) = (
                randn(200 + i as u64, numel(&xs)),
                randn(210 + i as u64, numel(&ws)),
                randn(220 + i as u64, co),
            );
            let params = Conv2dParams {
                stride: s,
                padding: p,
                dilation: d,
                groups: g,
            };
            let relu = i % 2 == 1;
            let x = on(&xv, &xs).requires_grad();
            let (wt, b) = (on(&wv, &ws).requires_grad(), on(&bv, &[co]).requires_grad());
            let y = match relu {
                true => x.conv2d_relu(&wt, Some(&b), params),
                false => x.conv2d(&wt, Some(&b), params),
            }
            .unwrap();
            let mut want = conv2d_ref(&xv, &xs, &wv, &ws, Some(&bv), s, p, d, g, 0..n);
            if relu {
                want.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            let what = format!("config {i} kernels={}", dev.kernel_class().name());
            assert_close(
                &y.to_vec().unwrap(),
                &want,
                1e-4,
                1e-4,
                &format!("{what}: output"),
            );
            // The gradient reaching the convolution: zero where the ReLU cut.
            let gv: Vec<f32> = randn(230 + i as u64, y.numel())
                .iter()
                .zip(&want)
                .map(|(g, y)| if relu && *y <= 0.0 { 0.0 } else { *g })
                .collect();
            y.backward_with(&on(&randn(230 + i as u64, y.numel()), y.shape()))
                .unwrap();
            let want_gx = conv2d_input_grad_ref(&gv, &xs, &wv, &ws, s, p, d, g);
            assert_close(
                &x.grad().unwrap().to_vec().unwrap(),
                &want_gx,
                1e-4,
                1e-4,
                &format!("{what}: input gradient"),
            );
            let (want_gw, want_gb) = conv2d_weight_grad_ref(&gv, &xv, &xs, &ws, s, p, d, g);
            assert_close(
                &wt.grad().unwrap().to_vec().unwrap(),
                &want_gw,
                1e-4,
                1e-4,
                &format!("{what}: weight gradient"),
            );
            assert_close(
                &b.grad().unwrap().to_vec().unwrap(),
                &want_gb,
                1e-4,
                1e-4,
                &format!("{what}: bias gradient"),
            );
        }
    });
}

#[test]
fn backward_matches_finite_differences() {
    let configs = [
        (1, 1, 5, 5, 2, 3, 3, (1, 1), (1, 1), (1, 1), 1),
        (5, 2, 5, 4, 2, 2, 3, (2, 1), (0, 1), (1, 1), 1),
        (1, 4, 7, 5, 2, 3, 3, (1, 2), (2, 1), (2, 1), 2),
        (2, 3, 6, 6, 3, 1, 2, (1, 1), (0, 0), (1, 2), 3),
        // 10 input and 12 output channels: blocks of 5 and of 6.
        (2, 10, 4, 4, 12, 2, 2, (1, 1), (1, 0), (1, 1), 1),
    ];
    for (i, &(n, c, h, w, co, kh, kw, s, p, d, g)) in configs.iter().enumerate() {
        let (xs, ws) = ([n, c, h, w], [co, c / g, kh, kw]);
        let params = Conv2dParams {
            stride: s,
            padding: p,
            dilation: d,
            groups: g,
        };
        check_grad(
            &format!("conv2d config {i}"),
            move |t| t[0].conv2d(&t[1], Some(&t[2]), params),
            &[
                tensor(&randn(i as u64, numel(&xs)), &xs),
                tensor(&randn(i as u64 + 5, numel(&ws)), &ws),
                tensor(&randn(i as u64 + 7, co), &[co]),
            ],
            5e-3,
        );
    }
}

#[test]
fn blur_and_sobel_kernels_give_the_hand_computed_values() {
    // A 4x4 image with a vertical edge between columns 1 and 2.
    #[rustfmt::skip]
    let img = [
        0.0, 0.0, 8.0, 8.0,
        0.0, 0.0, 8.0, 8.0,
        0.0, 0.0, 8.0, 8.0,
        0.0, 0.0, 8.0, 8.0,
    ];
    let x = tensor(&img, &[1, 1, 4, 4]);
    // Gaussian blur 1/16 [1 2 1; 2 4 2; 1 2 1], no padding: each output row sees columns
    // (0,1,2) -> (0 + 0 + 8) weights (1,2,1)/4 = 2 and columns (1,2,3) -> (0 + 8*2 + 8)/4 = 6.
    #[rustfmt::skip]
    let blur: Vec<f32> = [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0].iter().map(|v| v / 16.0).collect();
    let y = x
        .conv2d(&tensor(&blur, &[1, 1, 3, 3]), None, Conv2dParams::default())
        .unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![2.0, 6.0, 2.0, 6.0]);
    // Sobel S_x = [-1 0 1; -2 0 2; -1 0 1]: (8 - 0) * (1 + 2 + 1) = 32 across the edge.
    let sobel = [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];
    let y = x
        .conv2d(
            &tensor(&sobel, &[1, 1, 3, 3]),
            None,
            Conv2dParams::default(),
        )
        .unwrap();
    assert_eq!(y.to_vec().unwrap(), vec![32.0, 32.0, 32.0, 32.0]);
    // With zero padding the border columns see the edge of the image: column 0 gets
    // (0 - pad) = 0, column 3 gets (pad 0 - 8) * 4 = -32, except in the corners (1 + 2 only).
    let y = x
        .conv2d(
            &tensor(&sobel, &[1, 1, 3, 3]),
            None,
            Conv2dParams::default().padding(1),
        )
        .unwrap();
    #[rustfmt::skip]
    let want = vec![
        0.0, 24.0, 24.0, -24.0,
        0.0, 32.0, 32.0, -32.0,
        0.0, 32.0, 32.0, -32.0,
        0.0, 24.0, 24.0, -24.0,
    ];
    assert_eq!(y.to_vec().unwrap(), want);
}

#[test]
fn batch_of_4096_lenet_inputs_runs_in_chunks() {
    let n = 4096;
    let (xs, ws) = ([n, 1, 28, 28], [6, 1, 5, 5]);
    let x = uniform(1, numel(&xs), 0.0, 1.0);
    let w = randn(2, numel(&ws));
    let b = randn(3, 6);
    let xt = tensor(&x, &xs).requires_grad();
    let wt = tensor(&w, &ws).requires_grad();
    let p = Conv2dParams::default().padding(2);
    let y = xt.conv2d(&wt, Some(&tensor(&b, &[6])), p).unwrap();
    assert_eq!(y.shape(), &[n, 6, 28, 28]);
    let got = y.to_vec().unwrap();
    let per = 6 * 28 * 28;
    for img in [0, 1, 855, 856, 2047, 4095] {
        let want = conv2d_ref(
            &x,
            &xs,
            &w,
            &ws,
            Some(&b),
            (1, 1),
            (2, 2),
            (1, 1),
            1,
            img..img + 1,
        );
        assert_close(
            &got[img * per..(img + 1) * per],
            &want,
            1e-5,
            1e-5,
            &format!("image {img}"),
        );
    }
    // The weight gradient of sum(y) is the sum of each tap's input over all images.
    y.sum().unwrap().backward().unwrap();
    let gw = wt.grad().unwrap().to_vec().unwrap();
    let (i, j) = (2, 2); // the centre tap sees every pixel once
    let want: f64 = x.iter().map(|&v| v as f64).sum();
    assert_close(
        &gw[i * 5 + j..i * 5 + j + 1],
        &[want],
        1e-3,
        1e-4,
        "centre tap gradient",
    );
    assert_eq!(xt.grad().unwrap().shape(), &xs);
}

#[test]
fn forward_and_backward_are_deterministic() {
    let (xs, ws) = ([3, 4, 11, 9], [6, 2, 3, 3]);
    let x = randn(5, numel(&xs));
    let w = randn(6, numel(&ws));
    let p = Conv2dParams::default().stride(2).padding(1).groups(2);
    let run = || {
        let xt = tensor(&x, &xs).requires_grad();
        let wt = tensor(&w, &ws).requires_grad();
        let y = xt.conv2d(&wt, None, p).unwrap();
        y.tanh().unwrap().sum().unwrap().backward().unwrap();
        (
            y.to_vec().unwrap(),
            xt.grad().unwrap().to_vec().unwrap(),
            wt.grad().unwrap().to_vec().unwrap(),
        )
    };
    let (a, b) = (run(), run());
    assert!(a
        .0
        .iter()
        .zip(&b.0)
        .all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(a
        .1
        .iter()
        .zip(&b.1)
        .all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(a
        .2
        .iter()
        .zip(&b.2)
        .all(|(p, q)| p.to_bits() == q.to_bits()));
}

#[test]
fn bad_configurations_are_errors_naming_the_numbers() {
    let x = Tensor::zeros(device(), &[1, 4, 5, 5]).unwrap();
    let w = Tensor::zeros(device(), &[6, 3, 3, 3]).unwrap();
    let err = x
        .conv2d(&w, None, Conv2dParams::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("[6, 3, 3, 3]") && err.contains("4"), "{err}");
    let w = Tensor::zeros(device(), &[6, 2, 3, 3]).unwrap();
    let err = x
        .conv2d(&w, None, Conv2dParams::default().groups(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("groups = 3"), "{err}");
    let w = Tensor::zeros(device(), &[6, 4, 7, 7]).unwrap();
    let err = x
        .conv2d(&w, None, Conv2dParams::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let w = Tensor::zeros(device(), &[6, 4, 3, 3]).unwrap();
    let b = Tensor::zeros(device(), &[5]).unwrap();
    assert!(x.conv2d(&w, Some(&b), Conv2dParams::default()).is_err());
}

#[test]
fn output_size_and_receptive_field_helpers() {
    assert_eq!(conv2d_output_size(28, 5, 1, 2, 1).unwrap(), 28);
    assert_eq!(conv2d_output_size(14, 5, 1, 0, 1).unwrap(), 10);
    assert_eq!(conv2d_output_size(9, 3, 2, 1, 1).unwrap(), 5);
    assert_eq!(conv2d_output_size(10, 3, 1, 2, 2).unwrap(), 10);
    assert!(conv2d_output_size(3, 5, 1, 0, 1).is_err());
    // LeNet-5: conv5, pool2, conv5, pool2 -> 1 + 4 + 1*1 + 4*2 + 1*2*1 = 16.
    assert_eq!(receptive_field(&[(5, 1), (2, 2), (5, 1), (2, 2)]), 16);
    assert_eq!(receptive_field(&[(3, 1), (3, 1)]), 5);
}

#[test]
fn bias_gradient_over_many_pixels_is_complete() {
    // 40 x 256 x 256 pixels per channel: more than one workgroup's loops may cover.
    let x = Tensor::ones(device(), &[40, 1, 256, 256]).unwrap();
    let w = Tensor::ones(device(), &[2, 1, 1, 1]).unwrap();
    let b = Tensor::zeros(device(), &[2]).unwrap().requires_grad();
    x.conv2d(&w, Some(&b), Conv2dParams::default())
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![2_621_440.0; 2]);
}

#[test]
fn explicit_and_implicit_paths_both_match_pytorch() {
    // Whatever the adapter prefers, run the im2col path and the implicit-GEMM path (GPU and
    // CPU kernel classes).
    let r = Reference::ops();
    // Every kernel variant this adapter can run (see `for_each_policy`).
    for dev in policy_devices() {
        let on = |case: &str, role: &str| {
            let (d, s) = r.get(case, role);
            Tensor::from_slice(&dev, &d, &s).unwrap()
        };
        for case in r.cases("conv2d") {
            let m = r.meta(&case);
            let p = Conv2dParams {
                stride: pair(&m["stride"]),
                padding: pair(&m["padding"]),
                dilation: pair(&m["dilation"]),
                groups: m["groups"].as_u64().unwrap() as usize,
            };
            let x = on(&case, "input").requires_grad();
            let w = on(&case, "weight").requires_grad();
            let b = r
                .has(&case, "bias")
                .then(|| on(&case, "bias").requires_grad());
            let y = x.conv2d(&w, b.as_ref(), p).unwrap();
            let what = format!("{case} kernels={}", dev.kernel_class().name());
            let check = |role: &str, t: &Tensor| {
                let (want, _) = r.get(&case, role);
                assert_close(
                    &t.to_vec().unwrap(),
                    &to_f64(&want),
                    1e-4,
                    1e-4,
                    &format!("{what} {role}"),
                );
            };
            check("output", &y);
            y.backward_with(&on(&case, "grad_output")).unwrap();
            check("grad_input", &x.grad().unwrap());
            check("grad_weight", &w.grad().unwrap());
            if let Some(b) = b {
                check("grad_bias", &b.grad().unwrap());
            }
        }
    }
}

#[test]
fn weight_and_bias_gradients_over_a_large_batch_are_complete() {
    // 8,200 images: on CPU adapters the implicit path's weight gradient then sums several
    // image quads per part, and every part's sums (weights and bias) must be added up.
    let (n, c, h, w, co, k) = (8200, 2, 5, 5, 3, 3);
    let (ho, wo) = (h - k + 1, w - k + 1);
    let xv = uniform(40, n * c * h * w, -1.0, 1.0);
    let gv = uniform(41, n * co * ho * wo, -1.0, 1.0);
    let x = tensor(&xv, &[n, c, h, w]);
    let wt = tensor(&uniform(42, co * c * k * k, -1.0, 1.0), &[co, c, k, k]).requires_grad();
    let b = tensor(&[0.1, 0.2, 0.3], &[co]).requires_grad();
    let y = x.conv2d(&wt, Some(&b), Conv2dParams::default()).unwrap();
    y.backward_with(&tensor(&gv, &[n, co, ho, wo])).unwrap();
    let mut want_w = vec![0.0f64; co * c * k * k];
    let mut want_b = vec![0.0f64; co];
    for ni in 0..n {
        for o in 0..co {
            for oh in 0..ho {
                for ow in 0..wo {
                    let g = gv[((ni * co + o) * ho + oh) * wo + ow] as f64;
                    want_b[o] += g;
                    for ci in 0..c {
                        for kh in 0..k {
                            for kw in 0..k {
                                let xi = ((ni * c + ci) * h + oh + kh) * w + ow + kw;
                                want_w[((o * c + ci) * k + kh) * k + kw] += g * xv[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let grad_w = wt.grad().unwrap().to_vec().unwrap();
    assert_close(&grad_w, &want_w, 1e-3, 1e-4, "weight gradient");
    assert_close(
        &b.grad().unwrap().to_vec().unwrap(),
        &want_b,
        1e-3,
        1e-4,
        "bias gradient",
    );
}

#[test]
fn fused_relu_matches_conv_then_relu_on_both_paths() {
    // conv2d_relu against relu(conv2d(..)): the same output, and the same gradients for every
    // combination of inputs that need them (the backward masks g in different places).
    // Every kernel variant this adapter can run (see `for_each_policy`).
    for dev in policy_devices() {
        let t = |seed: u64, shape: &[usize]| {
            webgrad::Tensor::from_slice(&dev, &randn(seed, numel(shape)), shape).unwrap()
        };
        // Planes (C x H x W) a multiple of 4 and not: both re-layout kernels.
        let geometries = [
            ([5, 3, 9, 8], Conv2dParams::default().padding(1).stride(2)),
            ([3, 3, 7, 7], Conv2dParams::default()),
        ];
        for ((xs, p), (need_x, need_w, with_bias)) in geometries.into_iter().flat_map(|g| {
            [
                (true, true, true),
                (false, true, true),
                (true, false, true),
                (true, true, false),
            ]
            .map(|n| (g, n))
        }) {
            let grads = |fused: bool| {
                let x = t(1, &xs);
                let w = t(2, &[6, 3, 3, 3]);
                let b = t(3, &[6]);
                let x = if need_x { x.requires_grad() } else { x };
                let w = if need_w { w.requires_grad() } else { w };
                let b = if with_bias { b.requires_grad() } else { b };
                let bias = with_bias.then_some(&b);
                let y = if fused {
                    x.conv2d_relu(&w, bias, p).unwrap()
                } else {
                    x.conv2d(&w, bias, p).unwrap().relu().unwrap()
                };
                let g = t(4, y.shape());
                y.backward_with(&g).unwrap();
                let grad = |v: &webgrad::Tensor| v.grad().map(|g| g.to_vec().unwrap());
                (y.to_vec().unwrap(), grad(&x), grad(&w), grad(&b))
            };
            let (fused, plain) = (grads(true), grads(false));
            let what = format!(
                "kernels={} {xs:?} x={need_x} w={need_w} bias={with_bias}",
                dev.kernel_class().name()
            );
            assert_eq!(fused.0, plain.0, "{what}: output");
            for (name, f, p) in [
                ("x", &fused.1, &plain.1),
                ("w", &fused.2, &plain.2),
                ("b", &fused.3, &plain.3),
            ] {
                assert_eq!(f.is_some(), p.is_some(), "{what}: {name}");
                if let (Some(f), Some(p)) = (f, p) {
                    assert_close(f, &to_f64(p), 1e-5, 1e-5, &format!("{what}: grad {name}"));
                }
            }
        }
    }
}

/// (input shape, weight shape, params) for the fused conv + ReLU + pool tests: a batch that is
/// not a multiple of 4, LeNet's conv2, groups with stride and padding, and an odd-sized output
/// (7 x 7) that runs as the three ops.
fn conv_pool_cases() -> Vec<(Vec<usize>, Vec<usize>, Conv2dParams)> {
    vec![
        (
            vec![5, 1, 8, 8],
            vec![6, 1, 3, 3],
            Conv2dParams::default().padding(1),
        ),
        (
            vec![64, 6, 14, 14],
            vec![16, 6, 5, 5],
            Conv2dParams::default(),
        ),
        (
            vec![3, 4, 11, 9],
            vec![6, 2, 3, 3],
            Conv2dParams::default().stride(2).padding(2).groups(2),
        ),
        (vec![2, 2, 9, 9], vec![3, 2, 3, 3], Conv2dParams::default()),
        // Even-sized outputs whose column stride differs from the dilation (the kernel then
        // fetches every pixel of the window) or equals it (it slides the window along).
        (
            vec![3, 4, 12, 11],
            vec![6, 2, 3, 3],
            Conv2dParams::default().stride(2).padding(1).groups(2),
        ),
        (
            vec![2, 3, 10, 10],
            vec![5, 3, 3, 3],
            Conv2dParams::default().dilation(2),
        ),
        (
            vec![2, 3, 13, 13],
            vec![5, 3, 3, 3],
            Conv2dParams::default().stride(2).dilation(2).padding(1),
        ),
        // The widest and narrowest kernels whose taps the forward unrolls (ROW_SLIDE).
        (
            vec![6, 2, 12, 12],
            vec![3, 2, 7, 7],
            Conv2dParams::default().padding(3),
        ),
        (vec![3, 5, 6, 6], vec![4, 5, 1, 1], Conv2dParams::default()),
        // Blocks of 32 channels shared across an 8-lane subgroup: odd batches, groups,
        // dilation, stride; and 24 per group, which such adapters run as the others.
        (
            vec![5, 4, 10, 10],
            vec![32, 4, 3, 3],
            Conv2dParams::default().padding(1),
        ),
        (
            vec![3, 16, 8, 8],
            vec![64, 8, 3, 3],
            Conv2dParams::default().padding(2).dilation(2).groups(2),
        ),
        (
            vec![9, 8, 13, 13],
            vec![32, 8, 3, 3],
            Conv2dParams::default().stride(2).padding(2),
        ),
        (
            vec![3, 16, 8, 8],
            vec![48, 8, 3, 3],
            Conv2dParams::default().padding(1).groups(2),
        ),
        // The other unrolled widths: 2, 4 (fma16x4 alone) and 6 (fma16x4 and two taps).
        (vec![2, 2, 7, 7], vec![3, 2, 2, 2], Conv2dParams::default()),
        (vec![2, 2, 9, 9], vec![3, 2, 4, 4], Conv2dParams::default()),
        (vec![2, 2, 8, 11], vec![3, 2, 3, 6], Conv2dParams::default()),
        // Groups under ROW_SLIDE (each group's weights start elsewhere in the layout).
        (
            vec![3, 4, 10, 10],
            vec![6, 2, 3, 3],
            Conv2dParams::default().padding(1).groups(2),
        ),
    ]
}

#[test]
fn fused_conv_relu_max_pool_matches_the_three_ops() {
    // Under no_grad, 2 x 2 pooling over an even-sized output runs as one kernel (CPU adapters);
    // it must equal max_pool2d(conv2d_relu(..)) exactly, NaN and ReLU's ties at 0 included.
    use webgrad::Pool2dParams;
    let cases = conv_pool_cases();
    let (mut zeros, mut nans) = (false, false);
    for (i, (xs, ws, p)) in cases.into_iter().enumerate() {
        let mut xv = randn(50 + i as u64, numel(&xs));
        xv[3] = f32::NAN;
        let x = tensor(&xv, &xs);
        let w = tensor(&randn(60 + i as u64, numel(&ws)), &ws);
        let b = tensor(&randn(70 + i as u64, ws[0]), &[ws[0]]);
        let pool = Pool2dParams::new(2);
        let three = relu_pool(&x, &w, &b, p, false);
        let fused = webgrad::no_grad(|| x.conv2d_relu_max_pool2d(&w, Some(&b), p, pool)).unwrap();
        assert_eq!(fused.shape(), three.shape(), "case {i}");
        let (f, t) = (fused.to_vec().unwrap(), three.to_vec().unwrap());
        for (j, (a, b)) in f.iter().zip(&t).enumerate() {
            assert!(
                a == b || (a.is_nan() && b.is_nan()),
                "case {i} [{j}]: {a} vs {b}"
            );
        }
        zeros |= t.contains(&0.0);
        nans |= t.iter().any(|v| v.is_nan());
    }
    // The cases did reach windows whose ReLU outputs are all 0, and NaN.
    assert!(zeros && nans);
}

/// max_pool2d(relu(conv2d(x, w) + b), 2) as the fused op or as the three ops. (The ReLU of a
/// view: a 2 x 2 max_pool2d of a deferred conv2d_relu would run the fused kernel too.)
fn relu_pool(
    x: &webgrad::Tensor,
    w: &webgrad::Tensor,
    b: &webgrad::Tensor,
    p: Conv2dParams,
    fused: bool,
) -> webgrad::Tensor {
    let pool = webgrad::Pool2dParams::new(2);
    if fused {
        x.conv2d_relu_max_pool2d(w, Some(b), p, pool).unwrap()
    } else {
        let y = x.conv2d(w, Some(b), p).unwrap();
        let relu = y.reshape(&[y.numel()]).unwrap().relu().unwrap();
        relu.reshape(y.shape()).unwrap().max_pool2d(pool).unwrap()
    }
}

#[test]
fn fused_conv_relu_max_pool_gradients_match_the_three_ops() {
    // Recording a gradient, the fused op keeps each window's winner and starts its backward
    // from the pooled gradient: every gradient must match the three ops', for every
    // combination of inputs needing one (NaN left out: its gradient is NaN either way).
    let cases = conv_pool_cases();
    for (i, (xs, ws, p)) in cases.into_iter().enumerate() {
        for (need_x, need_w, need_b) in [
            (true, true, true),
            (false, true, true),
            (true, false, true),
            (false, false, true),
            (true, true, false),
        ] {
            let run = |fused: bool| {
                let t = |seed: u64, shape: &[usize], need: bool| {
                    let v = tensor(&randn(seed, numel(shape)), shape);
                    if need {
                        v.requires_grad()
                    } else {
                        v
                    }
                };
                let x = t(80 + i as u64, &xs, need_x);
                let w = t(90 + i as u64, &ws, need_w);
                let b = t(95 + i as u64, &[ws[0]], need_b);
                let y = relu_pool(&x, &w, &b, p, fused);
                y.backward_with(&t(99, y.shape(), false)).unwrap();
                let grad = |v: &webgrad::Tensor| v.grad().map(|g| g.to_vec().unwrap());
                (y.to_vec().unwrap(), [grad(&x), grad(&w), grad(&b)])
            };
            let (f, t) = (run(true), run(false));
            let what = format!("case {i} x={need_x} w={need_w} b={need_b}");
            assert_eq!(f.0, t.0, "{what}: output");
            for (k, (a, b)) in f.1.iter().zip(&t.1).enumerate() {
                assert_eq!(a.is_some(), b.is_some(), "{what}: gradient {k}");
                if let (Some(a), Some(b)) = (a, b) {
                    assert_close(a, &to_f64(b), 1e-5, 1e-5, &format!("{what}: gradient {k}"));
                }
            }
        }
    }
}

#[test]
fn a_convolution_after_conv_relu_reads_its_output_as_written() {
    // A convolution with a fused ReLU may also write its output with images innermost, which
    // the next convolution then reads: the values (5 images: a padded quad) and the input
    // gradient must be those of float64 and of the unfused ops, and an in-place write to the
    // output must reach the next convolution; under every kernel class, with 32 channels (the
    // subgroup kernels' blocks) and 24.
    for_each_policy(|dev| {
        for (i, c_mid) in [32usize, 24].into_iter().enumerate() {
            let (xs, w1s, w2s) = ([5, 8, 9, 7], [c_mid, 8, 3, 3], [16, c_mid, 3, 3]);
            let on = |v: &[f32], shape: &[usize]| Tensor::from_slice(dev, v, shape).unwrap();
            let (xv, w1v, b1v, w2v) = (
                randn(500 + i as u64, numel(&xs)),
                randn(510 + i as u64, numel(&w1s)),
                randn(520 + i as u64, c_mid),
                randn(530 + i as u64, numel(&w2s)),
            );
            let p = Conv2dParams {
                padding: (1, 1),
                ..Default::default()
            };
            let what = format!("{c_mid} channels under {:?}", dev.kernel_class());
            let run = |fused: bool| {
                let x = on(&xv, &xs).requires_grad();
                let (w1, b1, w2) = (on(&w1v, &w1s), on(&b1v, &[c_mid]), on(&w2v, &w2s));
                let y = match fused {
                    true => x.conv2d_relu(&w1, Some(&b1), p).unwrap(),
                    // The ReLU of a reshaped view: nothing fuses it into the convolution.
                    false => {
                        let c = x.conv2d(&w1, Some(&b1), p).unwrap();
                        let shape = c.shape().to_vec();
                        c.reshape(&[numel(&shape)])
                            .unwrap()
                            .relu()
                            .unwrap()
                            .reshape(&shape)
                            .unwrap()
                    }
                };
                let z = y.conv2d(&w2, None, p).unwrap();
                z.backward_with(&on(&randn(540, z.numel()), z.shape()))
                    .unwrap();
                let values = z.to_vec().unwrap();
                // Overwrite y in place: the next convolution sees the new values.
                let other = on(&randn(550 + i as u64, y.numel()), y.shape());
                let y = y.detach();
                y.copy_from(&other).unwrap();
                let conv = |t: &Tensor| {
                    webgrad::no_grad(|| t.conv2d(&w2, None, p))
                        .unwrap()
                        .to_vec()
                        .unwrap()
                };
                assert_eq!(
                    conv(&y),
                    conv(&other),
                    "{what} fused={fused}: after copy_from"
                );
                (values, x.grad().unwrap().to_vec().unwrap())
            };
            let (fused, gx_fused) = run(true);
            let (plain, gx_plain) = run(false);
            let mut y = conv2d_ref(
                &xv,
                &xs,
                &w1v,
                &w1s,
                Some(&b1v),
                (1, 1),
                (1, 1),
                (1, 1),
                1,
                0..5,
            );
            y.iter_mut().for_each(|v| *v = v.max(0.0));
            let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
            let ys = [5, c_mid, 9, 7];
            let want = conv2d_ref(&y32, &ys, &w2v, &w2s, None, (1, 1), (1, 1), (1, 1), 1, 0..5);
            assert_close(&fused, &want, 1e-4, 1e-4, &format!("{what}: fused"));
            assert_close(&plain, &want, 1e-4, 1e-4, &format!("{what}: unfused"));
            let gx_plain: Vec<f64> = gx_plain.iter().map(|&v| v as f64).collect();
            assert_close(
                &gx_fused,
                &gx_plain,
                1e-4,
                1e-4,
                &format!("{what}: input gradient"),
            );
        }
    });
}

#[test]
fn a_convolution_after_the_fused_op_reads_its_output_as_written() {
    // The fused op also writes its output with images innermost, and the next convolution
    // reads that instead of re-laying the output out: values and gradients must be those of
    // the three ops followed by the convolution (batches of 5, 64, 3 and 2 images: padded
    // quads included), and an in-place write to the output must reach the next convolution.
    // Without x's gradient, the fused op's backward reads its pooled gradient images-innermost
    // as the next convolution's input gradient kernel wrote it.
    for (i, (xs, ws, p)) in conv_pool_cases().into_iter().enumerate() {
        let x_grad = i % 2 == 0;
        let run = |fused: bool| {
            let t = |seed: u64, shape: &[usize]| tensor(&randn(seed, numel(shape)), shape);
            let x = t(110 + i as u64, &xs);
            let x = if x_grad { x.requires_grad() } else { x };
            let w = t(120 + i as u64, &ws).requires_grad();
            let b = t(130 + i as u64, &[ws[0]]);
            let y = relu_pool(&x, &w, &b, p, fused);
            let k = y.shape()[2].min(y.shape()[3]).min(2);
            let w2 = t(140 + i as u64, &[4, ws[0], k, k]).requires_grad();
            let z = y.conv2d(&w2, None, Conv2dParams::default()).unwrap();
            z.backward_with(&t(150, z.shape())).unwrap();
            let grad = |v: &webgrad::Tensor| v.grad().unwrap().to_vec().unwrap();
            // Overwrite the pooled output in place: the next convolution sees the new values.
            let other = t(160 + i as u64, y.shape());
            let y = y.detach();
            y.copy_from(&other).unwrap();
            let after = webgrad::no_grad(|| y.conv2d(&w2, None, Conv2dParams::default()))
                .unwrap()
                .to_vec()
                .unwrap();
            let want_after = webgrad::no_grad(|| other.conv2d(&w2, None, Conv2dParams::default()))
                .unwrap()
                .to_vec()
                .unwrap();
            assert_eq!(after, want_after, "case {i} fused={fused}: after copy_from");
            // Likewise a host upload into a fresh output.
            let y = relu_pool(&x, &w, &b, p, fused).detach();
            let values = randn(170 + i as u64, other.numel());
            y.write_from_slice(&values).unwrap();
            let uploaded = tensor(&values, y.shape());
            let conv = |t: &webgrad::Tensor| {
                webgrad::no_grad(|| t.conv2d(&w2, None, Conv2dParams::default()))
                    .unwrap()
                    .to_vec()
                    .unwrap()
            };
            assert_eq!(
                conv(&y),
                conv(&uploaded),
                "case {i} fused={fused}: after write_from_slice"
            );
            let gx = if x_grad { grad(&x) } else { Vec::new() };
            (z.to_vec().unwrap(), [gx, grad(&w), grad(&w2)])
        };
        let (f, t) = (run(true), run(false));
        assert_eq!(f.0, t.0, "case {i}: output");
        for (k, (a, b)) in f.1.iter().zip(&t.1).enumerate() {
            assert_close(
                a,
                &to_f64(b),
                1e-5,
                1e-5,
                &format!("case {i}: gradient {k}"),
            );
        }
    }
}

#[test]
fn an_empty_batch_gives_empty_outputs_and_zero_parameter_gradients() {
    // PyTorch: conv2d of a [0, C, H, W] input is [0, C_out, Ho, Wo]; the weight and bias
    // gradients sum over no images (zeros), the input gradient is empty.
    for dev in policy_devices() {
        let on = |d: &[f32], s: &[usize]| Tensor::from_slice(&dev, d, s).unwrap();
        let p = Conv2dParams::default().padding(1);
        let pool = webgrad::Pool2dParams::new(2);
        for fused in 0..3 {
            let what = format!("kernels={} fused={fused}", dev.kernel_class().name());
            let x = on(&[], &[0, 2, 6, 6]).requires_grad();
            let w = on(&randn(1, 4 * 2 * 9), &[4, 2, 3, 3]).requires_grad();
            let b = on(&randn(2, 4), &[4]).requires_grad();
            let (y, shape) = match fused {
                0 => (x.conv2d(&w, Some(&b), p), [0, 4, 6, 6]),
                1 => (x.conv2d_relu(&w, Some(&b), p), [0, 4, 6, 6]),
                _ => (
                    x.conv2d_relu_max_pool2d(&w, Some(&b), p, pool),
                    [0, 4, 3, 3],
                ),
            };
            let y = y.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(y.shape(), &shape, "{what}");
            assert!(y.to_vec().unwrap().is_empty(), "{what}");
            y.sum().unwrap().backward().unwrap();
            assert_eq!(x.grad().unwrap().shape(), &[0, 2, 6, 6], "{what}");
            assert_eq!(w.grad().unwrap().to_vec().unwrap(), vec![0.0; 72], "{what}");
            assert_eq!(b.grad().unwrap().to_vec().unwrap(), vec![0.0; 4], "{what}");
        }
    }
}

#[test]
fn huge_paddings_and_dilations_are_errors_not_wrapped_sizes() {
    // The padded input or the kernel's span would overflow.
    assert!(conv2d_output_size(4, 3, 1, usize::MAX / 2, 1).is_err());
    assert!(conv2d_output_size(4, 3, 1, 0, usize::MAX / 2 + 1).is_err());
    assert!(conv2d_output_size(4, 3, 1, usize::MAX, 1).is_err());
    // The output's element count would overflow: 2^62 x 2^62 pixels.
    let x = Tensor::zeros(device(), &[1, 1, 1, 1]).unwrap();
    let w = Tensor::zeros(device(), &[1, 1, 1, 1]).unwrap();
    let p = Conv2dParams::default().padding(1 << 61);
    let err = x.conv2d(&w, None, p).unwrap_err().to_string();
    assert!(err.contains("conv2d") && err.contains("overflows"), "{err}");
    // Also for an empty batch, whose output has no elements but wrapping strides.
    let x = Tensor::zeros(device(), &[0, 1, 1, 1]).unwrap();
    assert!(x.conv2d(&w, None, p).is_err());
    // Pooling windows that large are refused too.
    let x = Tensor::zeros(device(), &[1, 1, 4, 4]).unwrap();
    let pool = webgrad::Pool2dParams {
        kernel: (usize::MAX, usize::MAX),
        stride: (1, 1),
        padding: (usize::MAX / 2, usize::MAX / 2),
        dilation: (1, 1),
        ceil_mode: false,
        count_include_pad: true,
    };
    assert!(x.max_pool2d(pool).is_err());
    assert!(x.avg_pool2d(pool).is_err());
}

/// Where pipelines compile in the background (a page on SwiftShader), a training convolution
/// runs im2col until its implicit kernels are ready: here unfused ones (a ReLU, a stride, no
/// bias; no pooling), whose gradients must be those of a device that runs the implicit
/// kernels throughout, at the first step and after the switch.
#[test]
fn unfused_convolutions_switch_kernels_without_changing_gradients() {
    let classes = device().runnable_kernel_classes();
    for class in classes.into_iter().filter(|c| c.is_cpu()) {
        let base = webgrad::DeviceOptions::default()
            .force_kernels(class)
            .force_slow_compiler();
        let background = base.clone().force_background_compiles().with_profile(true);
        let devs = [base, background].map(|o| webgrad::Device::with_options(o).unwrap());
        let (xs, ws1, bs1, ws2) = (
            randn(1, 4 * 3 * 9 * 9),
            randn(2, 8 * 3 * 3 * 3),
            randn(3, 8),
            randn(4, 5 * 8 * 3 * 3),
        );
        // y: [4, 5, 4, 4] ((9 - 3) / 2 + 1 = 4).
        let weights = randn(5, 4 * 5 * 4 * 4);
        let leaf = |dev: &webgrad::Device, v: &[f32], shape: &[usize]| {
            Tensor::from_vec(dev, v.to_vec(), shape)
                .unwrap()
                .requires_grad()
        };
        let mut created = 0;
        for step in 0..3 {
            let mut grads = Vec::new();
            for dev in &devs {
                dev.profile_reset();
                let x = leaf(dev, &xs, &[4, 3, 9, 9]);
                let w1 = leaf(dev, &ws1, &[8, 3, 3, 3]);
                let b1 = leaf(dev, &bs1, &[8]);
                let w2 = leaf(dev, &ws2, &[5, 8, 3, 3]);
                let h = x
                    .conv2d(&w1, Some(&b1), Conv2dParams::default().padding(1))
                    .unwrap()
                    .relu()
                    .unwrap();
                let y = h
                    .conv2d(&w2, None, Conv2dParams::default().stride(2))
                    .unwrap();
                let k = Tensor::from_vec(dev, weights.clone(), y.shape()).unwrap();
                y.mul(&k).unwrap().sum().unwrap().backward().unwrap();
                grads.push([x, w1, b1, w2].map(|t| t.grad().unwrap().to_vec().unwrap()));
            }
            for (i, name) in ["x", "w1", "b1", "w2"].iter().enumerate() {
                let want = to_f64(&grads[0][i]);
                let what = format!("{class:?} step {step}: d{name}");
                assert_close(&grads[1][i], &want, 1e-4, 1e-4, &what);
            }
            let report = devs[1].profile_report().unwrap();
            let implicit = report.contains("conv_forward") && !report.contains("im2col");
            assert_eq!(implicit, step > 0, "{class:?} step {step}:\n{report}");
            let pipelines = webgrad::diagnostics::created_pipelines(&devs[1]);
            if step > 0 {
                let new = &pipelines[created..];
                assert!(new.is_empty(), "{class:?} step {step} compiled {new:?}");
            }
            created = pipelines.len();
        }
    }
}
