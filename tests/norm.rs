//! layer_norm, group_norm and batch_norm1d (and their nn layers): float64 CPU references on
//! random inputs (also far from zero, where a naive variance cancels), PyTorch's values from
//! `reference/norms.safetensors`, gradcheck, and the errors on bad shapes.

mod common;
use common::*;
use webgrad::nn::{BatchNorm1d, GroupNorm, LayerNorm, Module};
use webgrad::{BatchNormArgs, Tensor};

/// float64 normalization of x seen as [rows, m] (biased variance), then `y * w[ch] + b[ch]`
/// with ch = (e / hw) % channels for element e.
#[allow(clippy::too_many_arguments)]
fn norm_ref(
    x: &[f32],
    m: usize,
    eps: f64,
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    hw: usize,
    channels: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(m) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / m as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / m as f64;
        for &v in row {
            out.push((v as f64 - mean) / (var + eps).sqrt());
        }
    }
    for (e, y) in out.iter_mut().enumerate() {
        let ch = (e / hw) % channels;
        *y = *y * w.map_or(1.0, |w| w[ch] as f64) + b.map_or(0.0, |b| b[ch] as f64);
    }
    out
}

/// Random values around `offset`.
fn input(seed: u64, n: usize, offset: f32) -> Vec<f32> {
    randn(seed, n).into_iter().map(|v| offset + v).collect()
}

#[test]
fn layer_norm_matches_a_float64_reference() {
    for (shape, k, offset) in [
        (vec![4, 7], 1, 0.0),
        (vec![2, 3, 10], 2, 0.0),
        (vec![3, 300], 1, 0.0),
        (vec![3, 64], 1, 1000.0),
        (vec![5], 1, -50.0),
    ] {
        let norm = &shape[shape.len() - k..];
        let m = numel(norm);
        let x = input(1, numel(&shape), offset);
        let w = uniform(2, m, 0.5, 1.5);
        let b = randn(3, m);
        let y = tensor(&x, &shape)
            .layer_norm(norm, Some(&tensor(&w, norm)), Some(&tensor(&b, norm)), 1e-5)
            .unwrap();
        assert_eq!(y.shape(), shape.as_slice());
        let want = norm_ref(&x, m, 1e-5, Some(&w), Some(&b), 1, m);
        // Near 1000 the f32 mean itself rounds by up to 3e-5 (half an ulp of 1000); a naive
        // E[x^2] - E[x]^2 would be off by far more.
        let atol = if offset == 0.0 { 2e-5 } else { 1e-4 };
        assert_close(
            &y.to_vec().unwrap(),
            &want,
            atol,
            1e-4,
            &format!("layer_norm {shape:?}"),
        );
        // Without the affine.
        let y = tensor(&x, &shape)
            .layer_norm(norm, None, None, 1e-3)
            .unwrap();
        let want = norm_ref(&x, m, 1e-3, None, None, 1, m);
        assert_close(&y.to_vec().unwrap(), &want, atol, 1e-4, "no affine");
    }
}

#[test]
fn group_norm_matches_a_float64_reference() {
    for (shape, groups, offset) in [
        (vec![2, 6, 3, 3], 3, 0.0),
        (vec![3, 4, 5], 4, 0.0),
        (vec![2, 8], 2, 0.0),
        (vec![2, 4, 40], 2, 1000.0),
    ] {
        let c = shape[1];
        let hw = numel(&shape[2..]);
        let x = input(4, numel(&shape), offset);
        let w = uniform(5, c, 0.5, 1.5);
        let b = randn(6, c);
        let y = tensor(&x, &shape)
            .group_norm(
                groups,
                Some(&tensor(&w, &[c])),
                Some(&tensor(&b, &[c])),
                1e-5,
            )
            .unwrap();
        assert_eq!(y.shape(), shape.as_slice());
        let want = norm_ref(&x, c / groups * hw, 1e-5, Some(&w), Some(&b), hw, c);
        let atol = if offset == 0.0 { 2e-5 } else { 1e-4 };
        assert_close(
            &y.to_vec().unwrap(),
            &want,
            atol,
            1e-4,
            &format!("group_norm {shape:?} groups {groups}"),
        );
    }
}

#[test]
fn batch_norm1d_matches_a_float64_reference() {
    for shape in [vec![5, 3], vec![4, 3, 6]] {
        let (n, c) = (shape[0], shape[1]);
        let l = numel(&shape[2..]);
        let x = input(7, numel(&shape), 3.0);
        let y = tensor(&x, &shape)
            .batch_norm1d(BatchNormArgs::default())
            .unwrap();
        // Per channel over N and L: gather each channel's values into one row.
        let mut rows = vec![0.0f32; x.len()];
        for (e, &v) in x.iter().enumerate() {
            let (i, ch, j) = (e / (c * l), (e / l) % c, e % l);
            rows[ch * n * l + i * l + j] = v;
        }
        let normed = norm_ref(&rows, n * l, 1e-5, None, None, 1, 1);
        let want: Vec<f64> = (0..x.len())
            .map(|e| {
                let (i, ch, j) = (e / (c * l), (e / l) % c, e % l);
                normed[ch * n * l + i * l + j]
            })
            .collect();
        assert_close(&y.to_vec().unwrap(), &want, 2e-5, 1e-4, "batch_norm1d");
    }
}

#[test]
fn matches_pytorch_reference() {
    let r = Reference::load("norms.safetensors");
    let mut seen = 0;
    for op in ["layer_norm", "group_norm", "batch_norm"] {
        for case in r.cases(op) {
            seen += 1;
            let m = r.meta(&case).clone();
            let eps = m["eps"].as_f64().unwrap() as f32;
            let x = r.tensor(&case, "input").requires_grad();
            let affine = r.has(&case, "weight");
            let (w, b) = if affine {
                (
                    Some(r.tensor(&case, "weight").requires_grad()),
                    Some(r.tensor(&case, "bias").requires_grad()),
                )
            } else {
                (None, None)
            };
            let c = x.shape().get(1).copied().unwrap_or(0);
            let (rm, rv) = (
                Tensor::zeros(device(), &[c]).unwrap(),
                Tensor::ones(device(), &[c]).unwrap(),
            );
            let y = match op {
                "layer_norm" => {
                    let norm: Vec<usize> = m["normalized_shape"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap() as usize)
                        .collect();
                    x.layer_norm(&norm, w.as_ref(), b.as_ref(), eps)
                }
                "group_norm" => {
                    let groups = m["num_groups"].as_u64().unwrap() as usize;
                    x.group_norm(groups, w.as_ref(), b.as_ref(), eps)
                }
                _ => x.batch_norm1d(BatchNormArgs {
                    running_mean: Some(&rm),
                    running_var: Some(&rv),
                    weight: w.as_ref(),
                    bias: b.as_ref(),
                    training: true,
                    momentum: m["momentum"].as_f64().unwrap() as f32,
                    eps,
                }),
            }
            .unwrap();
            let offset = case.contains("offset");
            let (atol, gatol) = if offset { (1e-4, 5e-4) } else { (1e-5, 1e-4) };
            r.assert_matches(&case, "output", &y, atol, 1e-4);
            if op == "batch_norm" {
                r.assert_matches(&case, "running_mean_after", &rm, 1e-6, 1e-5);
                r.assert_matches(&case, "running_var_after", &rv, 1e-6, 1e-5);
            }
            y.backward_with(&r.tensor(&case, "grad_output")).unwrap();
            r.assert_matches(&case, "grad_input", &x.grad().unwrap(), gatol, 1e-4);
            if let (Some(w), Some(b)) = (w, b) {
                r.assert_matches(&case, "grad_weight", &w.grad().unwrap(), gatol, 1e-4);
                r.assert_matches(&case, "grad_bias", &b.grad().unwrap(), 1e-5, 1e-4);
            }
        }
    }
    assert_eq!(seen, 11, "cases in norms.safetensors");
}

#[test]
fn backward_matches_finite_differences() {
    let x = randn(8, 2 * 3 * 4);
    check_grad(
        "layer_norm",
        |t| t[0].layer_norm(&[4], Some(&t[1]), Some(&t[2]), 1e-5),
        &[
            tensor(&x, &[2, 3, 4]),
            tensor(&[1.2, 0.7, -0.4, 1.0], &[4]),
            tensor(&[0.3, -0.1, 0.0, 0.2], &[4]),
        ],
        5e-3,
    );
    check_grad(
        "layer_norm over two dims, no affine",
        |t| t[0].layer_norm(&[3, 4], None, None, 1e-5),
        &[tensor(&x, &[2, 3, 4])],
        5e-3,
    );
    check_grad(
        "group_norm",
        |t| t[0].group_norm(2, Some(&t[1]), Some(&t[2]), 1e-5),
        &[
            tensor(&x, &[2, 4, 3]),
            tensor(&[1.2, 0.7, -0.4, 1.0], &[4]),
            tensor(&[0.3, -0.1, 0.0, 0.2], &[4]),
        ],
        5e-3,
    );
    check_grad(
        "batch_norm1d",
        |t| {
            t[0].batch_norm1d(BatchNormArgs {
                weight: Some(&t[1]),
                bias: Some(&t[2]),
                ..Default::default()
            })
        },
        &[
            tensor(&x, &[6, 4]),
            tensor(&[1.2, 0.7, -0.4, 1.0], &[4]),
            tensor(&[0.3, -0.1, 0.0, 0.2], &[4]),
        ],
        5e-3,
    );
}

#[test]
fn bad_shapes_and_options_are_errors() {
    let x = tensor(&randn(9, 24), &[2, 3, 4]);
    let w4 = tensor(&[1.0; 4], &[4]);
    let w3 = tensor(&[1.0; 3], &[3]);
    let err = |r: webgrad::Result<Tensor>| r.unwrap_err().to_string();
    // normalized_shape not the trailing dimensions.
    let e = err(x.layer_norm(&[3], None, None, 1e-5));
    assert!(e.contains("[3]") && e.contains("[2, 3, 4]"), "{e}");
    assert!(x.layer_norm(&[3, 5], None, None, 1e-5).is_err());
    assert!(x.layer_norm(&[1, 2, 3, 4], None, None, 1e-5).is_err());
    assert!(x.layer_norm(&[], None, None, 1e-5).is_err());
    // Weight or bias not of normalized_shape.
    let e = err(x.layer_norm(&[4], Some(&w3), None, 1e-5));
    assert!(e.contains("weight [3]"), "{e}");
    assert!(x.layer_norm(&[3, 4], Some(&w4), None, 1e-5).is_err());
    assert!(x.layer_norm(&[4], None, Some(&w3), 1e-5).is_err());
    // Channels not divisible by groups.
    let e = err(x.group_norm(2, None, None, 1e-5));
    assert!(e.contains('3') && e.contains('2'), "{e}");
    assert!(x.group_norm(0, None, None, 1e-5).is_err());
    assert!(tensor(&[1.0; 4], &[4])
        .group_norm(1, None, None, 1e-5)
        .is_err());
    let e = err(x.group_norm(3, Some(&w4), None, 1e-5));
    assert!(e.contains("weight [4]"), "{e}");
    assert!(x.group_norm(3, None, Some(&w4), 1e-5).is_err());
    assert!(GroupNorm::new(device(), 4, 6).is_err());
    // batch_norm1d: rank, per-channel tensors, one value per channel in training.
    assert!(tensor(&[1.0; 4], &[4])
        .batch_norm1d(BatchNormArgs::default())
        .is_err());
    assert!(tensor(&[1.0; 16], &[1, 2, 2, 4])
        .batch_norm1d(BatchNormArgs::default())
        .is_err());
    let e = err(x.batch_norm1d(BatchNormArgs {
        weight: Some(&w4),
        ..Default::default()
    }));
    assert!(e.contains("weight [4]"), "{e}");
    assert!(tensor(&[1.0, 2.0], &[1, 2])
        .batch_norm1d(BatchNormArgs::default())
        .is_err());
}

#[test]
fn layers_have_pytorch_parameters_and_modes() {
    let dev = device();
    let ln = LayerNorm::new(dev, &[3, 4]).unwrap();
    let names: Vec<String> = ln.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias"]);
    assert_eq!(ln.weight.as_ref().unwrap().shape(), &[3, 4]);
    assert_eq!(ln.eps, 1e-5);
    let x = tensor(&randn(10, 24), &[2, 3, 4]);
    let want = x.layer_norm(&[3, 4], None, None, 1e-5).unwrap();
    assert_close(
        &ln.forward(&x).unwrap().to_vec().unwrap(),
        &to_f64(&want.to_vec().unwrap()),
        1e-6,
        0.0,
        "LayerNorm",
    );
    let plain = LayerNorm::with_options(dev, &[4], 1e-3, false).unwrap();
    assert!(plain.state_dict().is_empty());

    let gn = GroupNorm::new(dev, 3, 6).unwrap();
    let names: Vec<String> = gn.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias"]);
    assert_eq!(gn.weight.as_ref().unwrap().shape(), &[6]);
    assert!(GroupNorm::with_options(dev, 3, 6, 1e-5, false)
        .unwrap()
        .state_dict()
        .is_empty());

    // BatchNorm1d: running statistics follow the batch in training, are used in eval.
    let mut bn = BatchNorm1d::new(dev, 2).unwrap();
    let names: Vec<String> = bn.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias", "running_mean", "running_var"]);
    bn.momentum = 0.5;
    let x = tensor(&[1.0, 10.0, 3.0, 20.0], &[2, 2]);
    bn.forward(&x).unwrap();
    assert_close(
        &bn.running_mean.to_vec().unwrap(),
        &[1.0, 7.5],
        1e-6,
        1e-6,
        "running_mean",
    );
    // Unbiased variances 2 and 50, halfway from 1.
    assert_close(
        &bn.running_var.to_vec().unwrap(),
        &[1.5, 25.5],
        1e-5,
        1e-6,
        "running_var",
    );
    bn.set_training(false);
    let y = bn.forward(&tensor(&[2.0, 7.5], &[1, 2])).unwrap();
    let want = [(2.0 - 1.0) / (1.5f64 + 1e-5).sqrt(), 0.0];
    assert_close(&y.to_vec().unwrap(), &want, 1e-5, 1e-5, "eval");
}
