//! nll_loss, cross_entropy with class weights, ignore_index and label smoothing, and
//! log_softmax: PyTorch's values (`tests/reference/losses.safetensors`), float64 references on
//! random inputs, finite differences, host and device targets, NaN for bad device targets,
//! errors for bad shapes, indices and options.

mod common;
use common::*;
use webgrad::nn::{self, Module};
use webgrad::{ClassTargets, CrossEntropyOptions, NllLossOptions, Reduction, Tensor};

fn reduction(name: &str) -> Reduction {
    match name {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "none" => Reduction::None,
        _ => panic!("reduction {name}"),
    }
}

/// A class loss as the tests call it: cross_entropy (label smoothing `eps`) or nll_loss.
#[derive(Clone)]
struct Case {
    nll: bool,
    weight: Option<Vec<f32>>,
    ignore_index: i64,
    reduction: Reduction,
    eps: f32,
}

impl Case {
    fn run<'a>(&self, x: &Tensor, t: impl Into<ClassTargets<'a>>) -> webgrad::Result<Tensor> {
        let w = self.weight.as_ref().map(|w| tensor(w, &[w.len()]));
        if self.nll {
            let mut o = NllLossOptions::default()
                .ignore_index(self.ignore_index)
                .reduction(self.reduction);
            o.weight = w;
            x.nll_loss_with(t, &o)
        } else {
            let mut o = CrossEntropyOptions::default()
                .ignore_index(self.ignore_index)
                .reduction(self.reduction)
                .label_smoothing(self.eps);
            o.weight = w;
            x.cross_entropy_with(t, &o)
        }
    }

    /// The same through the nn modules.
    fn run_module(&self, x: &Tensor, t: &[i64]) -> webgrad::Result<Tensor> {
        let w = self.weight.as_ref().map(|w| tensor(w, &[w.len()]));
        if self.nll {
            let mut m = nn::NLLLoss::new()
                .ignore_index(self.ignore_index)
                .reduction(self.reduction);
            if let Some(w) = &w {
                m = m.weight(w);
            }
            m.forward(x, t)
        } else {
            let mut m = nn::CrossEntropyLoss::new()
                .ignore_index(self.ignore_index)
                .reduction(self.reduction)
                .label_smoothing(self.eps);
            if let Some(w) = &w {
                m = m.weight(w);
            }
            m.forward(x, t)
        }
    }

    /// float64 reference: the per-row losses reduced as PyTorch, and d(sum(loss * up))/dx.
    fn reference(&self, x: &[f32], classes: usize, t: &[i64], up: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let rows = t.len();
        let w = |c: usize| self.weight.as_ref().map_or(1.0, |w| w[c] as f64);
        let w_sum: f64 = (0..classes).map(w).sum();
        let eps = self.eps as f64;
        let k = eps / classes as f64;
        let mut losses = vec![0.0; rows];
        let mut row_w = vec![0.0; rows];
        // d l_i / d x_ic
        let mut dl = vec![0.0; rows * classes];
        for i in 0..rows {
            if t[i] == self.ignore_index {
                continue;
            }
            let ti = t[i] as usize;
            let row: Vec<f64> = x[i * classes..(i + 1) * classes]
                .iter()
                .map(|&v| v as f64)
                .collect();
            row_w[i] = w(ti);
            if self.nll {
                losses[i] = -w(ti) * row[ti];
                dl[i * classes + ti] = -w(ti);
                continue;
            }
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let smooth: f64 = (0..classes).map(|c| w(c) * (lse - row[c])).sum();
            losses[i] = (1.0 - eps) * w(ti) * (lse - row[ti]) + k * smooth;
            let a = (1.0 - eps) * w(ti) + k * w_sum;
            for c in 0..classes {
                let hit = if c == ti { 1.0 } else { 0.0 };
                dl[i * classes + c] =
                    a * (row[c] - lse).exp() - (1.0 - eps) * w(ti) * hit - k * w(c);
            }
        }
        let total: f64 = losses.iter().sum();
        let denominator: f64 = row_w.iter().sum();
        let (out, scale): (Vec<f64>, Vec<f64>) = match self.reduction {
            Reduction::None => (losses, up.to_vec()),
            Reduction::Sum => (vec![total], vec![up[0]; rows]),
            Reduction::Mean => (vec![total / denominator], vec![up[0] / denominator; rows]),
        };
        let grad = (0..rows * classes)
            .map(|e| {
                let i = e / classes;
                if t[i] == self.ignore_index {
                    0.0
                } else {
                    scale[i] * dl[e]
                }
            })
            .collect();
        (out, grad)
    }
}

fn signed(t: &[f32]) -> Vec<i64> {
    t.iter().map(|&v| v as i64).collect()
}

fn device_targets(t: &[i64]) -> Tensor {
    let v: Vec<f32> = t.iter().map(|&c| c as f32).collect();
    tensor(&v, &[t.len()])
}

#[test]
fn class_losses_match_pytorch_reference() {
    let r = Reference::load("losses.safetensors");
    let mut cases = r.cases("nll_loss");
    cases.extend(r.cases("cross_entropy"));
    assert!(cases.len() >= 25, "{cases:?}");
    for name in cases {
        let meta = r.meta(&name);
        let case = Case {
            nll: meta["op"] == "nll_loss",
            weight: r.has(&name, "weight").then(|| r.get(&name, "weight").0),
            ignore_index: meta["ignore_index"].as_i64().unwrap(),
            reduction: reduction(meta["reduction"].as_str().unwrap()),
            eps: meta["label_smoothing"].as_f64().unwrap_or(0.0) as f32,
        };
        let t = signed(&r.get(&name, "target").0);
        for how in ["host", "device", "module"] {
            let x = r.tensor(&name, "input").requires_grad();
            let l = match how {
                "host" => case.run(&x, &t),
                "device" => case.run(&x, &device_targets(&t)),
                _ => case.run_module(&x, &t),
            }
            .unwrap();
            let what = format!("{name} ({how} targets)");
            r.assert_matches(&name, "output", &l, 1e-6, 1e-5);
            l.backward_with(&r.tensor(&name, "grad_output")).unwrap();
            let (want, shape) = r.get(&name, "grad_input");
            let g = x.grad().unwrap();
            assert_eq!(g.shape(), shape.as_slice(), "{what}");
            assert_close(&g.to_vec().unwrap(), &to_f64(&want), 1e-6, 1e-5, &what);
        }
    }
}

#[test]
fn log_softmax_matches_pytorch_reference() {
    let r = Reference::load("losses.safetensors");
    let cases = r.cases("log_softmax");
    assert_eq!(cases.len(), 3);
    for name in cases {
        let dim = r.meta(&name)["dim"].as_i64().unwrap() as isize;
        for module in [false, true] {
            let x = r.tensor(&name, "input").requires_grad();
            let y = if module {
                nn::LogSoftmax::new(dim).forward(&x)
            } else {
                x.log_softmax(dim)
            }
            .unwrap();
            r.assert_matches(&name, "output", &y, 1e-6, 1e-5);
            y.backward_with(&r.tensor(&name, "grad_output")).unwrap();
            r.assert_matches(&name, "grad_input", &x.grad().unwrap(), 1e-6, 1e-5);
        }
    }
    assert_eq!(nn::LogSoftmax::new(1).describe(), "LogSoftmax(dim=1)");
}

/// Random cases: each reduction, with and without weights, ignored rows and smoothing.
fn random_cases() -> Vec<Case> {
    let weight = uniform(11, 7, 0.2, 2.0);
    let mut v = Vec::new();
    for nll in [false, true] {
        for weighted in [false, true] {
            for ignore_index in [-100, 3] {
                for eps in [0.0, 0.1, 0.35] {
                    if nll && eps > 0.0 {
                        continue;
                    }
                    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                        v.push(Case {
                            nll,
                            weight: weighted.then(|| weight.clone()),
                            ignore_index,
                            reduction,
                            eps,
                        });
                    }
                }
            }
        }
    }
    v
}

#[test]
fn forward_and_gradient_match_float64_for_host_and_device_targets() {
    let (rows, classes) = (70, 7);
    let logits: Vec<f32> = randn(21, rows * classes).iter().map(|v| v * 3.0).collect();
    // nll_loss's input: log-probabilities (any values would do).
    let log_probs = {
        let t = tensor(&logits, &[rows, classes]);
        t.log_softmax(1).unwrap().to_vec().unwrap()
    };
    // Targets with -100 in some rows; class 3 (ignored where ignore_index is 3) in others.
    let t: Vec<i64> = (0..rows)
        .map(|i| {
            if i % 9 == 4 {
                -100
            } else {
                ((i * 5 + 2) % classes) as i64
            }
        })
        .collect();
    let up_rows = randn(22, rows);
    for case in random_cases() {
        // With ignore_index 3, the -100 targets would be out of range: make them class 1.
        let t: Vec<i64> = t
            .iter()
            .map(|&c| {
                if c == -100 && case.ignore_index != -100 {
                    1
                } else {
                    c
                }
            })
            .collect();
        let x = if case.nll { &log_probs } else { &logits };
        let up: Vec<f32> = match case.reduction {
            Reduction::None => up_rows.clone(),
            _ => vec![0.75],
        };
        let (want, want_grad) = case.reference(x, classes, &t, &to_f64(&up));
        for device in [false, true] {
            let what = format!(
                "nll {} weighted {} ignore {} eps {} {:?}, device targets {device}",
                case.nll,
                case.weight.is_some(),
                case.ignore_index,
                case.eps,
                case.reduction
            );
            let xt = tensor(x, &[rows, classes]).requires_grad();
            let l = if device {
                case.run(&xt, &device_targets(&t))
            } else {
                case.run(&xt, &t)
            }
            .unwrap();
            let tol = 1e-5 * want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            assert_close(&l.to_vec().unwrap(), &want, tol, 1e-5, &what);
            let up_shape: &[usize] = if up.len() == 1 { &[] } else { &[rows] };
            l.backward_with(&tensor(&up, up_shape)).unwrap();
            let g = xt.grad().unwrap().to_vec().unwrap();
            assert_close(&g, &want_grad, 1e-6, 1e-4, &format!("{what}: grad"));
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let (rows, classes) = (4, 5);
    let x = randn(31, rows * classes);
    let weight = uniform(32, classes, 0.3, 2.0);
    for case in random_cases() {
        // Fewer classes here: ignore_index 3 stays a class, and -100 rows are class 2.
        let t: Vec<i64> = vec![1, 3, 0, if case.ignore_index == -100 { -100 } else { 2 }];
        let case = Case {
            weight: case.weight.as_ref().map(|_| weight.clone()),
            ..case
        };
        let what = format!(
            "nll {} weighted {} ignore {} eps {} {:?}",
            case.nll,
            case.weight.is_some(),
            case.ignore_index,
            case.eps,
            case.reduction
        );
        let c = case.clone();
        let t2 = t.clone();
        check_grad(
            &what,
            move |v| c.run(&v[0], &t2),
            &[tensor(&x, &[rows, classes])],
            5e-3,
        );
        // Device targets go through the same kernels; check them too.
        let c = case.clone();
        check_grad(
            &format!("{what}, device targets"),
            move |v| c.run(&v[0], &device_targets(&t)),
            &[tensor(&x, &[rows, classes])],
            5e-3,
        );
    }
}

#[test]
fn default_options_take_the_fused_path_with_identical_values() {
    // cross_entropy_with and the module with the defaults are cross_entropy itself, bit for
    // bit; device targets (the class-loss kernels) agree within rounding.
    let (rows, classes) = (40, 10);
    let x: Vec<f32> = randn(41, rows * classes).iter().map(|v| v * 2.0).collect();
    let t: Vec<usize> = (0..rows).map(|i| (i * 3 + 1) % classes).collect();
    for reduction in [Reduction::Mean, Reduction::Sum, Reduction::None] {
        let run = |f: &dyn Fn(&Tensor) -> webgrad::Result<Tensor>| {
            let xt = tensor(&x, &[rows, classes]).requires_grad();
            let l = f(&xt).unwrap();
            l.sum().unwrap().backward().unwrap();
            (l.to_vec().unwrap(), xt.grad().unwrap().to_vec().unwrap())
        };
        let base = run(&|x| x.cross_entropy(&t, reduction));
        let options = CrossEntropyOptions::default().reduction(reduction);
        assert_eq!(run(&|x| x.cross_entropy_with(&t, &options)), base);
        let signed: Vec<i64> = t.iter().map(|&c| c as i64).collect();
        assert_eq!(run(&|x| x.cross_entropy_with(&signed, &options)), base);
        let module = nn::CrossEntropyLoss::new().reduction(reduction);
        assert_eq!(run(&|x| module.forward(x, &t)), base);
        let dt = device_targets(&signed);
        let (l, g) = run(&|x| x.cross_entropy_with(&dt, &options));
        assert_close(&l, &to_f64(&base.0), 1e-5, 1e-5, "device targets");
        assert_close(&g, &to_f64(&base.1), 1e-7, 1e-5, "device targets: grad");
    }
}

#[test]
fn smoothing_and_weights_stay_finite_for_large_logits() {
    let x = [100.0, -100.0, 50.0, -1000.0, 1000.0, 999.0, 3.0, 3.0, 3.0];
    let case = Case {
        nll: false,
        weight: Some(vec![0.5, 2.0, 1.0]),
        ignore_index: -100,
        reduction: Reduction::None,
        eps: 0.2,
    };
    let t = [0i64, 2, 1];
    let got = case.run(&tensor(&x, &[3, 3]), &t[..]).unwrap();
    let (want, _) = case.reference(&x, 3, &t, &[1.0; 3]);
    assert_close(&got.to_vec().unwrap(), &want, 1e-4, 1e-5, "large logits");
}

#[test]
fn out_of_range_device_targets_give_nan_never_a_wrong_loss() {
    // Host targets are checked; a device tensor's are not read back: a row whose target is
    // not a class gets NaN as its loss and gradient, the other rows their values.
    let (rows, classes) = (5, 4);
    let x: Vec<f32> = randn(51, rows * classes);
    for bad in [4.0, -1.0, 1.5, f32::NAN, 1e9] {
        for nll in [false, true] {
            let targets = [0.0, bad, 2.0, -100.0, 3.0];
            let case = Case {
                nll,
                weight: Some(vec![1.0, 0.5, 2.0, 1.5]),
                ignore_index: -100,
                reduction: Reduction::None,
                eps: if nll { 0.0 } else { 0.1 },
            };
            let what = format!("target {bad}, nll {nll}");
            let xt = tensor(&x, &[rows, classes]).requires_grad();
            let l = case.run(&xt, &tensor(&targets, &[rows])).unwrap();
            let got = l.to_vec().unwrap();
            let good = [0i64, 0, 2, -100, 3];
            let (want, want_grad) = case.reference(&x, classes, &good, &[1.0; 5]);
            for i in 0..rows {
                if i == 1 {
                    assert!(got[1].is_nan(), "{what}: {got:?}");
                } else {
                    assert_close(&got[i..=i], &want[i..=i], 1e-5, 1e-5, &what);
                }
            }
            l.sum().unwrap().backward().unwrap();
            let g = xt.grad().unwrap().to_vec().unwrap();
            for e in 0..rows * classes {
                if e / classes == 1 {
                    assert!(g[e].is_nan(), "{what}: grad {g:?}");
                } else {
                    assert_close(&g[e..=e], &want_grad[e..=e], 1e-6, 1e-4, &what);
                }
            }
            for reduction in [Reduction::Mean, Reduction::Sum] {
                let case = Case {
                    reduction,
                    ..case.clone()
                };
                let l = case.run(&xt.detach(), &tensor(&targets, &[rows])).unwrap();
                assert!(l.item().unwrap().is_nan(), "{what}: {reduction:?}");
            }
        }
    }
}

#[test]
fn an_empty_batch_and_an_all_ignored_batch_follow_pytorch() {
    let x = Tensor::zeros(device(), &[0, 4]).unwrap().requires_grad();
    let w = tensor(&[1.0, 2.0, 3.0, 4.0], &[4]);
    let options = CrossEntropyOptions::default()
        .weight(&w)
        .label_smoothing(0.1);
    let mean = x.cross_entropy_with(&[0usize; 0], &options).unwrap();
    assert!(mean.item().unwrap().is_nan());
    let none = x
        .nll_loss_with(
            &device_targets(&[]),
            &NllLossOptions::default().reduction(Reduction::None),
        )
        .unwrap();
    assert_eq!(none.shape(), &[0]);
    let sum = x
        .cross_entropy_with(&[0usize; 0], &options.clone().reduction(Reduction::Sum))
        .unwrap();
    assert_eq!(sum.item().unwrap(), 0.0);
    sum.backward().unwrap();
    assert_eq!(x.grad().unwrap().shape(), &[0, 4]);
    // Every row ignored: the mean is 0 / 0 = NaN, the gradient 0 (not NaN), as PyTorch.
    let x = tensor(&randn(61, 8), &[2, 4]).requires_grad();
    let l = x
        .cross_entropy_with(&[-100i64, -100][..], &options)
        .unwrap();
    assert!(l.item().unwrap().is_nan());
    l.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec().unwrap(), vec![0.0; 8]);
}

#[test]
fn in_place_writes_to_targets_or_weights_before_backward_are_errors() {
    let x = tensor(&randn(71, 6), &[2, 3]).requires_grad();
    let t = tensor(&[0.0, 2.0], &[2]);
    let w = tensor(&[1.0, 2.0, 3.0], &[3]);
    let l = x
        .cross_entropy_with(&t, &CrossEntropyOptions::default().weight(&w))
        .unwrap();
    w.write_from_slice(&[3.0, 2.0, 1.0]).unwrap();
    let err = l.backward().unwrap_err().to_string();
    assert!(
        err.contains("cross_entropy") && err.contains("input 2"),
        "{err}"
    );
    let l = x.nll_loss(&t, Reduction::Sum).unwrap();
    t.write_from_slice(&[1.0, 1.0]).unwrap();
    let err = l.backward().unwrap_err().to_string();
    assert!(err.contains("nll_loss") && err.contains("input 1"), "{err}");
}

#[test]
fn class_weights_are_constants() {
    let x = tensor(&randn(72, 6), &[2, 3]).requires_grad();
    let w = tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    let l = x
        .nll_loss_with(&[0, 2], &NllLossOptions::default().weight(&w))
        .unwrap();
    l.backward().unwrap();
    assert!(x.grad().is_some() && w.grad().is_none());
    // Nothing to differentiate when only the weights require grad.
    let l = x
        .detach()
        .cross_entropy_with(&[0, 2], &CrossEntropyOptions::default().weight(&w))
        .unwrap();
    assert!(!l.is_requires_grad());
}

#[test]
fn bad_shapes_indices_and_options_are_errors_naming_them() {
    let x = tensor(&randn(81, 6), &[2, 3]);
    let err = |r: webgrad::Result<Tensor>| r.unwrap_err().to_string();
    let ce = CrossEntropyOptions::default();
    let nll = NllLossOptions::default();
    // Input rank.
    let e = err(tensor(&[0.0; 3], &[3]).nll_loss(&[0], Reduction::Mean));
    assert!(e.contains("nll_loss") && e.contains("[3]"), "{e}");
    // Target count (host and device).
    let e = err(x.nll_loss(&[0, 1, 2], Reduction::Mean));
    assert!(e.contains("3 targets") && e.contains("[2, 3]"), "{e}");
    let e = err(x.cross_entropy_with(&tensor(&[0.0; 3], &[3]), &ce));
    assert!(e.contains("targets [3]") && e.contains("[2, 3]"), "{e}");
    let e = err(x.cross_entropy_with(&tensor(&[0.0; 2], &[2, 1]), &ce));
    assert!(e.contains("targets [2, 1]"), "{e}");
    // Host classes out of range, negative not ignore_index, ignore_index as a class.
    let e = err(x.nll_loss(&[0, 3], Reduction::Mean));
    assert!(
        e.contains("target 1 is class 3") && e.contains("3 classes"),
        "{e}"
    );
    let e = err(x.cross_entropy_with(&[0i64, -1][..], &ce));
    assert!(
        e.contains("target 1 is -1") && e.contains("ignore_index -100"),
        "{e}"
    );
    let e = err(x.cross_entropy_with(&[-100i64, 0][..], &ce.clone().ignore_index(-1)));
    assert!(e.contains("target 0 is -100"), "{e}");
    assert!(x
        .cross_entropy_with(&[2i64, 0][..], &ce.clone().ignore_index(2))
        .is_ok());
    // Weights: one per class, on the input's device.
    let e = err(x.nll_loss_with(&[0, 1], &nll.clone().weight(&tensor(&[1.0; 4], &[4]))));
    assert!(e.contains("weight [4]") && e.contains("[3]"), "{e}");
    let other = webgrad::Device::new().unwrap();
    let w_elsewhere = Tensor::from_slice(&other, &[1.0; 3], &[3]).unwrap();
    assert!(x
        .nll_loss_with(&[0, 1], &nll.clone().weight(&w_elsewhere))
        .is_err());
    let t_elsewhere = Tensor::from_slice(&other, &[0.0; 2], &[2]).unwrap();
    assert!(x.nll_loss(&t_elsewhere, Reduction::Mean).is_err());
    // Label smoothing in [0, 1].
    for eps in [-0.1, 1.5, f32::NAN] {
        let e = err(x.cross_entropy_with(&[0, 1], &ce.clone().label_smoothing(eps)));
        assert!(e.contains("label_smoothing"), "{e}");
    }
    assert!(x
        .cross_entropy_with(&[0, 1], &ce.clone().label_smoothing(1.0))
        .is_ok());
    // Device targets against no classes.
    let empty = Tensor::zeros(device(), &[2, 0]).unwrap();
    let e = err(empty.nll_loss(&tensor(&[0.0; 2], &[2]), Reduction::Mean));
    assert!(e.contains("no classes"), "{e}");
    assert!(empty.nll_loss(&[0, 0], Reduction::Mean).is_err());
}
