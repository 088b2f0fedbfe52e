//! Losses: PyTorch's cases (cross_entropy, mse_loss, bce_with_logits), float64 references,
//! stability for large logits, every reduction, gradcheck, bad targets.

mod common;
use common::*;
use webgrad::Reduction;

#[test]
fn matches_pytorch_reference() {
    let r = Reference::ops();
    // cross_entropy (mean)
    let case = "cross_entropy";
    let x = r.tensor(case, "input").requires_grad();
    let t: Vec<usize> = r
        .get(case, "target")
        .0
        .iter()
        .map(|&v| v as usize)
        .collect();
    let l = x.cross_entropy(&t, Reduction::Mean).unwrap();
    r.assert_matches(case, "output", &l, 1e-6, 1e-5);
    l.backward_with(&r.tensor(case, "grad_output")).unwrap();
    r.assert_matches(case, "grad_input", &x.grad().unwrap(), 1e-7, 1e-5);

    type Loss =
        fn(&webgrad::Tensor, &webgrad::Tensor, Reduction) -> webgrad::Result<webgrad::Tensor>;
    let losses: [(&str, Loss); 2] = [
        ("mse_loss", |x, t, r| x.mse_loss(t, r)),
        ("bce_with_logits", |x, t, r| {
            x.binary_cross_entropy_with_logits(t, r)
        }),
    ];
    for (case, f) in losses {
        let x = r.tensor(case, "input").requires_grad();
        let t = r.tensor(case, "target").requires_grad();
        let l = f(&x, &t, Reduction::Mean).unwrap();
        r.assert_matches(case, "output", &l, 1e-6, 1e-5);
        l.backward_with(&r.tensor(case, "grad_output")).unwrap();
        r.assert_matches(case, "grad_input", &x.grad().unwrap(), 1e-7, 1e-5);
        r.assert_matches(case, "grad_target", &t.grad().unwrap(), 1e-7, 1e-5);
    }
}

fn ce_ref(x: &[f32], classes: usize, t: &[usize]) -> Vec<f64> {
    t.iter()
        .enumerate()
        .map(|(i, &ti)| {
            let row: Vec<f64> = x[i * classes..(i + 1) * classes]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            lse - row[ti]
        })
        .collect()
}

#[test]
fn cross_entropy_matches_float64_and_is_stable() {
    let (rows, classes) = (300, 10);
    let x: Vec<f32> = randn(1, rows * classes).iter().map(|v| v * 3.0).collect();
    let t: Vec<usize> = (0..rows).map(|i| (i * 7) % classes).collect();
    let want = ce_ref(&x, classes, &t);
    let xt = tensor(&x, &[rows, classes]);
    let none = xt.cross_entropy(&t, Reduction::None).unwrap();
    assert_eq!(none.shape(), &[rows]);
    assert_close(&none.to_vec().unwrap(), &want, 1e-6, 1e-5, "none");
    let sum: f64 = want.iter().sum();
    assert_close(
        &xt.cross_entropy(&t, Reduction::Sum)
            .unwrap()
            .to_vec()
            .unwrap(),
        &[sum],
        1e-3,
        1e-5,
        "sum",
    );
    assert_close(
        &xt.cross_entropy(&t, Reduction::Mean)
            .unwrap()
            .to_vec()
            .unwrap(),
        &[sum / rows as f64],
        1e-5,
        1e-5,
        "mean",
    );
    // Logits of magnitude 100 neither overflow nor lose the small loss.
    let big = [100.0, -100.0, 50.0, -100.0, 100.0, 99.0];
    let got = tensor(&big, &[2, 3])
        .cross_entropy(&[0, 2], Reduction::None)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_close(&got, &ce_ref(&big, 3, &[0, 2]), 1e-6, 1e-5, "large logits");
}

#[test]
fn bce_variants_match_float64() {
    let x: Vec<f32> = randn(2, 40).iter().map(|v| v * 30.0).collect();
    let t = uniform(3, 40, 0.0, 1.0);
    let got = tensor(&x, &[40])
        .binary_cross_entropy_with_logits(&tensor(&t, &[40]), Reduction::None)
        .unwrap();
    let want: Vec<f64> = x
        .iter()
        .zip(&t)
        .map(|(&x, &t)| {
            let (x, t) = (x as f64, t as f64);
            x.max(0.0) - x * t + (1.0 + (-x.abs()).exp()).ln()
        })
        .collect();
    assert_close(&got.to_vec().unwrap(), &want, 1e-5, 1e-5, "bce_with_logits");
    let p = uniform(4, 40, 0.01, 0.99);
    let got = tensor(&p, &[40])
        .binary_cross_entropy(&tensor(&t, &[40]), Reduction::None)
        .unwrap();
    let want: Vec<f64> = p
        .iter()
        .zip(&t)
        .map(|(&p, &t)| -((t as f64) * (p as f64).ln() + (1.0 - t as f64) * (1.0 - p as f64).ln()))
        .collect();
    assert_close(&got.to_vec().unwrap(), &want, 1e-6, 1e-5, "bce");
    let edge = tensor(&[0.0, 1.0], &[2])
        .binary_cross_entropy(&tensor(&[1.0, 0.0], &[2]), Reduction::None)
        .unwrap();
    assert_eq!(edge.to_vec().unwrap(), vec![100.0, 100.0]);
}

#[test]
fn backward_matches_finite_differences() {
    let x = randn(5, 12);
    let t = uniform(6, 12, 0.0, 1.0);
    let p = uniform(7, 12, 0.1, 0.9);
    for red in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        check_grad(
            "mse",
            move |v| v[0].mse_loss(&v[1], red),
            &[tensor(&x, &[3, 4]), tensor(&t, &[3, 4])],
            5e-3,
        );
        check_grad(
            "bce_logits",
            move |v| v[0].binary_cross_entropy_with_logits(&v[1], red),
            &[tensor(&x, &[3, 4]), tensor(&t, &[3, 4])],
            5e-3,
        );
        check_grad(
            "bce",
            move |v| v[0].binary_cross_entropy(&v[1], red),
            &[tensor(&p, &[3, 4]), tensor(&t, &[3, 4])],
            5e-3,
        );
        check_grad(
            "cross_entropy",
            move |v| v[0].cross_entropy(&[1, 3, 0], red),
            &[tensor(&x, &[3, 4])],
            5e-3,
        );
    }
}

#[test]
fn bad_targets_are_errors() {
    let x = tensor(&randn(1, 6), &[2, 3]);
    let err = x
        .cross_entropy(&[0, 3], Reduction::Mean)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("class 3") && err.contains("3 classes"),
        "{err}"
    );
    assert!(x.cross_entropy(&[0], Reduction::Mean).is_err());
    assert!(x
        .mse_loss(&tensor(&[0.0; 3], &[3]), Reduction::Mean)
        .is_err());
}

#[test]
fn reduced_cross_entropy_and_its_gradient_match_float64_on_both_paths() {
    // A mean or sum is fused into the loss kernel (300 rows: each invocation takes several)
    // unless its loop would pass the loop budget (24,000 rows x 10 classes: then the rows'
    // losses are reduced by sum_rows). Loss and dL/dx = scale (softmax - onehot) either way.
    let classes = 10;
    for rows in [300, 24_000] {
        let x: Vec<f32> = randn(rows as u64, rows * classes)
            .iter()
            .map(|v| v * 2.0)
            .collect();
        let t: Vec<usize> = (0..rows).map(|i| (i * 3 + 1) % classes).collect();
        let losses = ce_ref(&x, classes, &t);
        let total: f64 = losses.iter().sum();
        // The upstream gradient: backward()'s seed of 1 (whose gradient the forward kernel
        // writes), or 2.5 (the backward kernel's).
        let cases = [
            (Reduction::Mean, 1.0 / rows as f64, 1.0),
            (Reduction::Sum, 1.0, 1.0),
            (Reduction::Mean, 1.0 / rows as f64, 2.5),
        ];
        for (reduction, scale, upstream) in cases {
            let inference =
                webgrad::no_grad(|| tensor(&x, &[rows, classes]).cross_entropy(&t, reduction))
                    .unwrap();
            let xt = tensor(&x, &[rows, classes]).requires_grad();
            let l = xt.cross_entropy(&t, reduction).unwrap();
            assert_eq!(l.shape(), &[] as &[usize]);
            let what = format!("{rows} rows, scale {scale}, upstream {upstream}");
            let tol = 1e-5 * (1.0 + (total * scale).abs());
            assert_close(&l.to_vec().unwrap(), &[total * scale], tol, 1e-5, &what);
            assert_close(
                &inference.to_vec().unwrap(),
                &[total * scale],
                tol,
                1e-5,
                &what,
            );
            if upstream == 1.0 {
                l.backward().unwrap();
            } else {
                l.backward_with(&tensor(&[upstream as f32], &[])).unwrap();
            }
            let scale = scale * upstream;
            let want: Vec<f64> = (0..rows * classes)
                .map(|e| {
                    let (i, c) = (e / classes, e % classes);
                    let row = &x[i * classes..(i + 1) * classes];
                    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let sum: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
                    let p = (x[e] as f64 - m).exp() / sum;
                    scale * (p - if c == t[i] { 1.0 } else { 0.0 })
                })
                .collect();
            let g = xt.grad().unwrap().to_vec().unwrap();
            assert_close(
                &g,
                &want,
                1e-6 * scale.max(1e-3),
                1e-4,
                &format!("{what}: grad"),
            );
        }
    }
}

#[test]
fn cross_entropy_over_an_empty_batch_follows_pytorch() {
    // PyTorch: the mean over no rows is NaN, the sum 0, no reduction an empty vector; the
    // gradient (of the sum) is empty.
    let x = webgrad::Tensor::zeros(device(), &[0, 10])
        .unwrap()
        .requires_grad();
    let mean = x.cross_entropy(&[], Reduction::Mean).unwrap();
    assert_eq!(mean.shape(), &[] as &[usize]);
    assert!(mean.item().unwrap().is_nan());
    let none = x.cross_entropy(&[], Reduction::None).unwrap();
    assert_eq!(none.shape(), &[0]);
    let sum = x.cross_entropy(&[], Reduction::Sum).unwrap();
    assert_eq!(sum.item().unwrap(), 0.0);
    sum.backward().unwrap();
    assert_eq!(x.grad().unwrap().shape(), &[0, 10]);
    // Also without recording (the fused reduction path's other branch).
    let mean = webgrad::no_grad(|| x.cross_entropy(&[], Reduction::Mean).unwrap());
    assert!(mean.item().unwrap().is_nan());
    let mse = x.mse_loss(&x.detach(), Reduction::Mean).unwrap();
    assert!(mse.item().unwrap().is_nan());
}
