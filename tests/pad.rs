//! Padding (`Tensor::pad` in every mode, the padding layers, Conv2d's `padding_mode`): float64
//! references on random inputs, gradcheck, PyTorch's values (tests/reference/pad.py) and bad
//! input.

mod common;
use common::*;
use webgrad::nn::{
    CircularPad2d, ConstantPad2d, Conv2d, Conv2dConfig, Module, PaddingMode, ReflectionPad2d,
    ReplicationPad2d, ZeroPad2d,
};
use webgrad::{Conv2dParams, PadMode, Tensor};

const MODES: [PadMode; 4] = [
    PadMode::Constant,
    PadMode::Reflect,
    PadMode::Replicate,
    PadMode::Circular,
];

/// The input coordinate output coordinate `c` of a dim of size `n` padded by `left` reads,
/// or None (constant padding).
fn source(c: usize, n: usize, left: usize, mode: PadMode) -> Option<usize> {
    let s = c as i64 - left as i64;
    let n = n as i64;
    let s = match mode {
        PadMode::Constant => return (0..n).contains(&s).then_some(s as usize),
        PadMode::Reflect if s < 0 => -s,
        PadMode::Reflect if s >= n => 2 * (n - 1) - s,
        PadMode::Reflect => s,
        PadMode::Replicate => s.clamp(0, n - 1),
        PadMode::Circular => s.rem_euclid(n),
    };
    Some(s as usize)
}

/// For every output element, the input element it reads (None: the constant), in float64
/// terms: the output shape and the map.
fn pad_map(shape: &[usize], pad: &[usize], mode: PadMode) -> (Vec<usize>, Vec<Option<usize>>) {
    let rank = shape.len();
    let mut out_shape = shape.to_vec();
    for k in 0..pad.len() / 2 {
        out_shape[rank - 1 - k] += pad[2 * k] + pad[2 * k + 1];
    }
    let in_strides = strides(shape);
    let mut map = Vec::new();
    for e in 0..numel(&out_shape) {
        let mut rest = e;
        let mut at = Some(0);
        for d in (0..rank).rev() {
            let c = rest % out_shape[d];
            rest /= out_shape[d];
            let k = rank - 1 - d;
            let left = if k < pad.len() / 2 { pad[2 * k] } else { 0 };
            let s = source(c, shape[d], left, mode);
            at = at.zip(s).map(|(a, s)| a + s * in_strides[d]);
        }
        map.push(at);
    }
    (out_shape, map)
}

fn pad_ref(x: &[f32], shape: &[usize], pad: &[usize], mode: PadMode, value: f32) -> Vec<f64> {
    let (_, map) = pad_map(shape, pad, mode);
    map.iter()
        .map(|m| m.map_or(value as f64, |i| x[i] as f64))
        .collect()
}

/// The gradient: each output element's g added into the input element it read.
fn pad_grad_ref(g: &[f32], shape: &[usize], pad: &[usize], mode: PadMode) -> Vec<f64> {
    let (_, map) = pad_map(shape, pad, mode);
    let mut gx = vec![0.0; numel(shape)];
    for (m, &g) in map.iter().zip(g) {
        if let Some(i) = m {
            gx[*i] += g as f64;
        }
    }
    gx
}

/// (shape, pad) cases every mode accepts.
fn cases() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![2, 3, 5], vec![2, 1]),
        (vec![3, 4], vec![3, 3]),
        (vec![2, 1, 4, 5], vec![1, 2, 3, 0]),
        (vec![3, 4, 5], vec![0, 4, 1, 1]),
        (vec![1, 2, 3, 4, 5], vec![1, 2, 2, 1, 2, 0]),
        (vec![2, 3, 4, 3], vec![2, 2, 1, 2, 2, 1]),
    ]
}

/// Pads the mode accepts: reflect's below the size, circular's up to it.
fn fits(mode: PadMode, shape: &[usize], pad: &[usize]) -> bool {
    (0..pad.len() / 2).all(|k| {
        let n = shape[shape.len() - 1 - k];
        let most = pad[2 * k].max(pad[2 * k + 1]);
        match mode {
            PadMode::Reflect => most < n,
            PadMode::Circular => most <= n,
            _ => true,
        }
    })
}

#[test]
fn pad_matches_float64() {
    let mut seed = 1;
    for mode in MODES {
        let mut all = cases();
        if mode == PadMode::Constant {
            // Constant padding pads any trailing dims, none, or more than three (in passes).
            all.push((vec![2, 3, 2, 3, 2], vec![1, 0, 0, 2, 1, 1, 2, 1]));
            all.push((vec![2, 1, 2, 3, 2], vec![1, 1, 0, 1, 2, 0, 1, 0, 1, 2]));
            all.push((vec![5], vec![2, 3]));
            all.push((vec![2, 3], vec![]));
            all.push((vec![2, 0, 3], vec![1, 1, 2, 0]));
        }
        for (shape, pad) in all {
            if !fits(mode, &shape, &pad) {
                continue;
            }
            seed += 1;
            let x = randn(seed, numel(&shape));
            let value = if mode == PadMode::Constant { -1.5 } else { 0.0 };
            let y = tensor(&x, &shape).pad(&pad, mode, value).unwrap();
            let (out_shape, _) = pad_map(&shape, &pad, mode);
            assert_eq!(
                y.shape(),
                out_shape.as_slice(),
                "{mode:?} {shape:?} {pad:?}"
            );
            let want = pad_ref(&x, &shape, &pad, mode, value);
            let what = format!("pad {mode:?} {shape:?} {pad:?}");
            assert_close(&y.to_vec().unwrap(), &want, 0.0, 0.0, &what);
            // The backward against the float64 scatter of a random upstream gradient.
            let xt = tensor(&x, &shape).requires_grad();
            let g = randn(seed + 100, numel(&out_shape));
            let y = xt.pad(&pad, mode, value).unwrap();
            y.backward_with(&tensor(&g, &out_shape)).unwrap();
            let want = pad_grad_ref(&g, &shape, &pad, mode);
            let got = xt.grad().unwrap().to_vec().unwrap();
            assert_close(&got, &want, 1e-5, 1e-5, &format!("{what} gradient"));
        }
    }
}

#[test]
fn pad_modes_on_a_row() {
    let x = tensor(&[1.0, 2.0, 3.0], &[1, 3]);
    let row = |mode, pad: &[usize]| x.pad(pad, mode, 9.0).unwrap().to_vec().unwrap();
    assert_eq!(row(PadMode::Constant, &[2, 1]), [9., 9., 1., 2., 3., 9.]);
    assert_eq!(row(PadMode::Reflect, &[2, 2]), [3., 2., 1., 2., 3., 2., 1.]);
    assert_eq!(
        row(PadMode::Replicate, &[2, 2]),
        [1., 1., 1., 2., 3., 3., 3.]
    );
    assert_eq!(
        row(PadMode::Circular, &[2, 2]),
        [2., 3., 1., 2., 3., 1., 2.]
    );
    assert_eq!(
        row(PadMode::Circular, &[3, 3]),
        [1., 2., 3., 1., 2., 3., 1., 2., 3.]
    );
}

#[test]
fn pad_gradcheck() {
    let mut seed = 50;
    for mode in MODES {
        for (shape, pad) in [
            (vec![2, 4], vec![2, 3]),
            (vec![1, 3, 4], vec![1, 2, 2, 1]),
            (vec![1, 3, 2, 4], vec![1, 1, 1, 0, 1, 2]),
        ] {
            if !fits(mode, &shape, &pad) {
                continue;
            }
            seed += 1;
            let x = tensor(&randn(seed, numel(&shape)), &shape);
            let what = format!("pad {mode:?} {shape:?} {pad:?}");
            check_grad(&what, |t| t[0].pad(&pad, mode, 0.5), &[x], 1e-2);
        }
    }
}

/// Replicate padding so wide that one gradient element sums more values than one kernel
/// invocation may loop over on a CPU adapter: the backward runs one pass per dim, and sums
/// edges wider than the limit by tensor ops.
#[test]
fn wide_replicate_padding_gradient() {
    let shape = [1, 2, 2, 3, 2];
    let pad = [20, 19, 21, 20, 20, 22];
    let x = randn(7, numel(&shape));
    let xt = tensor(&x, &shape).requires_grad();
    let y = xt.pad(&pad, PadMode::Replicate, 0.0).unwrap();
    let (out_shape, _) = pad_map(&shape, &pad, PadMode::Replicate);
    let g = randn(8, numel(&out_shape));
    y.backward_with(&tensor(&g, &out_shape)).unwrap();
    let want = pad_grad_ref(&g, &shape, &pad, PadMode::Replicate);
    let got = xt.grad().unwrap().to_vec().unwrap();
    assert_close(&got, &want, 1e-3, 1e-5, "wide replicate gradient");
    // Edges wider than a CPU adapter's loop budget (8,192) along one dim: summed by tensor
    // ops there.
    let shape = [2, 1, 3];
    let pad = [4100, 4200];
    let x = randn(9, numel(&shape));
    let xt = tensor(&x, &shape).requires_grad();
    let y = xt.pad(&pad, PadMode::Replicate, 0.0).unwrap();
    let want = pad_ref(&x, &shape, &pad, PadMode::Replicate, 0.0);
    assert_close(&y.to_vec().unwrap(), &want, 0.0, 0.0, "wider replicate");
    let (out_shape, _) = pad_map(&shape, &pad, PadMode::Replicate);
    let g = uniform(10, numel(&out_shape), -1.0, 1.0);
    y.backward_with(&tensor(&g, &out_shape)).unwrap();
    let want = pad_grad_ref(&g, &shape, &pad, PadMode::Replicate);
    let got = xt.grad().unwrap().to_vec().unwrap();
    assert_close(&got, &want, 1e-3, 1e-5, "wider replicate gradient");
}

#[test]
fn padding_layers_call_pad() {
    let shape = [2, 3, 4, 5];
    let x = tensor(&randn(3, numel(&shape)), &shape);
    let sides = [1, 2, 3, 0];
    let layers: Vec<(Box<dyn Module>, PadMode, f32, &str)> = vec![
        (
            Box::new(ZeroPad2d::sides(sides)),
            PadMode::Constant,
            0.0,
            "ZeroPad2d((1, 2, 3, 0))",
        ),
        (
            Box::new(ConstantPad2d::sides(sides, 2.5)),
            PadMode::Constant,
            2.5,
            "ConstantPad2d(padding=(1, 2, 3, 0), value=2.5)",
        ),
        (
            Box::new(ReflectionPad2d::sides(sides)),
            PadMode::Reflect,
            0.0,
            "ReflectionPad2d((1, 2, 3, 0))",
        ),
        (
            Box::new(ReplicationPad2d::sides(sides)),
            PadMode::Replicate,
            0.0,
            "ReplicationPad2d((1, 2, 3, 0))",
        ),
        (
            Box::new(CircularPad2d::sides(sides)),
            PadMode::Circular,
            0.0,
            "CircularPad2d((1, 2, 3, 0))",
        ),
    ];
    for (layer, mode, value, name) in layers {
        let want = x.pad(&sides, mode, value).unwrap().to_vec().unwrap();
        assert_eq!(layer.forward(&x).unwrap().to_vec().unwrap(), want, "{name}");
        assert_eq!(layer.describe(), name);
    }
    let y = ReflectionPad2d::new(2).forward(&x).unwrap();
    assert_eq!(y.shape(), &[2, 3, 8, 9]);
    // A [C, H, W] input too; reflection by the whole size is an error.
    assert!(ReflectionPad2d::new(1)
        .forward(&x.reshape(&[6, 4, 5]).unwrap())
        .is_ok());
    assert!(ReflectionPad2d::new(4).forward(&x).is_err());
}

/// Conv2d with a padding mode is that padding, then the convolution with no padding.
#[test]
fn conv2d_padding_modes_match_float64() {
    let dev = device();
    let xs = [2, 3, 6, 5];
    let x = randn(21, numel(&xs));
    for mode in [
        PaddingMode::Zeros,
        PaddingMode::Reflect,
        PaddingMode::Replicate,
        PaddingMode::Circular,
    ] {
        for (pad, stride) in [(1, 1), (2, 2)] {
            dev.manual_seed(5);
            let conv = Conv2dConfig::new(3, 4, 3)
                .with_padding(pad)
                .with_stride(stride)
                .with_padding_mode(mode)
                .init(dev)
                .unwrap();
            let w = conv.weight.to_vec().unwrap();
            let b = conv.bias.as_ref().unwrap().to_vec().unwrap();
            let pm = match mode {
                PaddingMode::Zeros => PadMode::Constant,
                PaddingMode::Reflect => PadMode::Reflect,
                PaddingMode::Replicate => PadMode::Replicate,
                PaddingMode::Circular => PadMode::Circular,
            };
            let padded = pad_ref(&x, &xs, &[pad, pad, pad, pad], pm, 0.0);
            let padded: Vec<f32> = padded.iter().map(|&v| v as f32).collect();
            let ps = [2, 3, 6 + 2 * pad, 5 + 2 * pad];
            let want = conv2d_ref(
                &padded,
                &ps,
                &w,
                &[4, 3, 3, 3],
                Some(&b),
                (stride, stride),
                (0, 0),
                (1, 1),
                1,
                0..2,
            );
            let got = conv.forward(&tensor(&x, &xs)).unwrap();
            let (ho, wo) = ((ps[2] - 3) / stride + 1, (ps[3] - 3) / stride + 1);
            assert_eq!(got.shape(), &[2, 4, ho, wo], "{mode:?}");
            let what = format!("conv2d {mode:?} padding {pad} stride {stride}");
            assert_close(&got.to_vec().unwrap(), &want, 1e-4, 1e-4, &what);
            assert_eq!(conv.padding_mode, mode);
        }
    }
}

#[test]
fn conv2d_padding_modes_gradcheck() {
    let dev = device();
    let xs = [1, 2, 4, 5];
    for mode in [
        PaddingMode::Reflect,
        PaddingMode::Replicate,
        PaddingMode::Circular,
    ] {
        let conv = Conv2dConfig::new(2, 2, 3)
            .with_padding(2)
            .with_padding_mode(mode)
            .init(dev)
            .unwrap();
        let x = tensor(&randn(31, numel(&xs)), &xs);
        let w = conv.weight.clone();
        let b = conv.bias.clone().unwrap();
        let f = |t: &[Tensor]| {
            let c = Conv2d {
                weight: t[1].clone(),
                bias: Some(t[2].clone()),
                params: conv.params,
                padding_mode: mode,
            };
            c.forward(&t[0])
        };
        check_grad(&format!("conv2d {mode:?}"), f, &[x, w, b], 2e-2);
    }
}

#[test]
fn matches_pytorch() {
    let r = Reference::load("pad.safetensors");
    let leaf = |case: &str, role: &str| r.tensor(case, role).requires_grad();
    let check = |case: &str, out: &Tensor, inputs: &[(&str, &Tensor)]| {
        r.assert_matches(case, "output", out, 1e-5, 1e-5);
        out.backward_with(&r.tensor(case, "grad_output")).unwrap();
        for (role, t) in inputs {
            let grad = t.grad().unwrap();
            r.assert_matches(case, &format!("grad_{role}"), &grad, 1e-5, 1e-5);
        }
    };
    let usizes = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect()
    };
    let pad_cases = r.cases("pad");
    for case in &pad_cases {
        let m = r.meta(case);
        let mode = match m["mode"].as_str().unwrap() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "replicate" => PadMode::Replicate,
            "circular" => PadMode::Circular,
            other => panic!("{case}: mode {other}"),
        };
        let x = leaf(case, "input");
        let value = m["value"].as_f64().unwrap() as f32;
        let out = x.pad(&usizes(&m["pad"]), mode, value).unwrap();
        check(case, &out, &[("input", &x)]);
    }
    let conv_cases = r.cases("conv2d");
    for case in &conv_cases {
        let m = r.meta(case);
        let mode = match m["padding_mode"].as_str().unwrap() {
            "zeros" => PaddingMode::Zeros,
            "reflect" => PaddingMode::Reflect,
            "replicate" => PaddingMode::Replicate,
            "circular" => PaddingMode::Circular,
            other => panic!("{case}: padding_mode {other}"),
        };
        let (padding, stride) = (usizes(&m["padding"]), usizes(&m["stride"]));
        let (x, w, b) = (
            leaf(case, "input"),
            leaf(case, "weight"),
            leaf(case, "bias"),
        );
        let conv = Conv2d {
            weight: w.clone(),
            bias: Some(b.clone()),
            params: Conv2dParams {
                padding: (padding[0], padding[1]),
                stride: (stride[0], stride[1]),
                ..Default::default()
            },
            padding_mode: mode,
        };
        let out = conv.forward(&x).unwrap();
        r.assert_matches(case, "output", &out, 1e-5, 1e-4);
        out.backward_with(&r.tensor(case, "grad_output")).unwrap();
        for (role, t) in [("input", &x), ("weight", &w), ("bias", &b)] {
            let grad = t.grad().unwrap();
            r.assert_matches(case, &format!("grad_{role}"), &grad, 1e-4, 1e-4);
        }
    }
    assert_eq!(pad_cases.len(), 23);
    assert_eq!(conv_cases.len(), 12);
}

#[test]
fn bad_input_is_an_error() {
    let x = tensor(&randn(1, 24), &[2, 3, 4]);
    let err = |pad: &[usize], mode| {
        let e = x.pad(pad, mode, 0.0).unwrap_err().to_string();
        assert!(e.contains("[2, 3, 4]"), "{pad:?} {mode:?}: {e}");
    };
    // An odd list, too many pairs.
    err(&[1], PadMode::Constant);
    err(&[1, 1, 1, 1, 1, 1, 1, 1], PadMode::Constant);
    // Reflect pads below the size, circular at most the size.
    err(&[4, 0], PadMode::Reflect);
    err(&[0, 1, 3, 0], PadMode::Reflect);
    err(&[5, 0], PadMode::Circular);
    assert!(x.pad(&[4, 4], PadMode::Circular, 0.0).is_ok());
    assert!(x.pad(&[3, 3, 2, 2], PadMode::Reflect, 0.0).is_ok());
    assert!(x.pad(&[9, 9], PadMode::Replicate, 0.0).is_ok());
    // Non-constant modes pad 1-3 dims of an input of 1 or 2 more dims, non-empty ones.
    err(&[1, 1, 1, 1, 1, 1], PadMode::Reflect);
    let v = tensor(&[1.0, 2.0, 3.0], &[3]);
    assert!(v.pad(&[1, 1], PadMode::Replicate, 0.0).is_err());
    assert!(v.pad(&[1, 1], PadMode::Constant, 0.0).is_ok());
    let empty = Tensor::zeros(device(), &[2, 0]).unwrap();
    assert!(empty.pad(&[1, 1], PadMode::Replicate, 0.0).is_err());
    assert!(empty.pad(&[1, 1], PadMode::Reflect, 0.0).is_err());
    // Overflowing pads.
    assert!(x.pad(&[usize::MAX, 1], PadMode::Constant, 0.0).is_err());
    // Conv2d: reflection padding as wide as the input.
    let dev = device();
    let conv = Conv2dConfig::new(3, 2, 3)
        .with_padding(4)
        .with_padding_mode(PaddingMode::Reflect)
        .init(dev)
        .unwrap();
    let x = tensor(&randn(2, 48), &[1, 3, 4, 4]);
    assert!(conv.forward(&x).is_err());
}

/// Padding a convolution's output, which is deferred until a kernel reads it (fusion.rs),
/// and its gradient back through the convolution.
#[test]
fn pad_of_a_deferred_convolution() {
    let xs = [1, 2, 5, 5];
    let ws = [3, 2, 3, 3];
    let (x, w) = (randn(41, numel(&xs)), randn(42, numel(&ws)));
    let conv = |x: &Tensor, w: &Tensor| {
        x.conv2d(w, None, Conv2dParams::default())?.relu()?.pad(
            &[1, 1, 2, 1],
            PadMode::Reflect,
            0.0,
        )
    };
    let y = conv(&tensor(&x, &xs), &tensor(&w, &ws)).unwrap();
    let c = conv2d_ref(&x, &xs, &w, &ws, None, (1, 1), (0, 0), (1, 1), 1, 0..1);
    let c: Vec<f32> = c.iter().map(|&v| v.max(0.0) as f32).collect();
    let want = pad_ref(&c, &[1, 3, 3, 3], &[1, 1, 2, 1], PadMode::Reflect, 0.0);
    assert_eq!(y.shape(), &[1, 3, 6, 5]);
    assert_close(&y.to_vec().unwrap(), &want, 1e-4, 1e-4, "pad of conv2d");
    let inputs = [tensor(&x, &xs), tensor(&w, &ws)];
    check_grad("pad of conv2d", |t| conv(&t[0], &t[1]), &inputs, 2e-2);
}
