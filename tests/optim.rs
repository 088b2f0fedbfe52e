//! Optimizer kernels against float64 implementations of PyTorch's update rules and against
//! PyTorch's own steps (`tests/reference/optimizers.safetensors`), the learning-rate
//! schedules, state checkpoints and bad hyper-parameters.

mod common;
use common::*;
use webgrad::optim::{
    Adadelta, Adagrad, Adam, CosineLr, LrSchedule, Optimizer, RmsProp, Sgd, StepLr,
};
use webgrad::Tensor;

/// A parameter whose gradient is set to `g` (via backward of sum(p * g)).
fn set_grad(p: &Tensor, g: &[f32]) {
    p.zero_grad();
    p.mul(&tensor(g, p.shape()))
        .unwrap()
        .sum()
        .unwrap()
        .backward()
        .unwrap();
}

#[test]
fn sgd_variants_follow_pytorch() {
    // 4,099 = 4,096 through the vec4 kernel and 3 through the scalar one.
    let n = 4099;
    for (momentum, nesterov, wd, damp) in [
        (0.0, false, 0.0, 0.0),
        (0.9, false, 0.0, 0.0),
        (0.9, true, 1e-2, 0.0),
        (0.5, false, 0.1, 0.3),
    ] {
        let p0 = randn(1, n);
        let p = tensor(&p0, &[n]).requires_grad();
        let mut opt = Sgd::new(vec![p.clone()], 0.1)
            .unwrap()
            .with_momentum(momentum)
            .with_nesterov(nesterov)
            .with_weight_decay(wd)
            .with_dampening(damp);
        let mut want: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
        let mut buf = vec![0.0f64; n];
        for step in 0..3 {
            let g = randn(10 + step, n);
            set_grad(&p, &g);
            opt.step().unwrap();
            for i in 0..n {
                let mut d = g[i] as f64 + wd as f64 * want[i];
                if momentum != 0.0 {
                    buf[i] = if step == 0 {
                        d
                    } else {
                        momentum as f64 * buf[i] + (1.0 - damp as f64) * d
                    };
                    d = if nesterov {
                        d + momentum as f64 * buf[i]
                    } else {
                        buf[i]
                    };
                }
                want[i] -= 0.1 * d;
            }
        }
        assert_close(
            &p.to_vec().unwrap(),
            &want,
            1e-6,
            1e-5,
            &format!("sgd m={momentum} nesterov={nesterov}"),
        );
    }
}

#[test]
fn adam_and_adamw_follow_pytorch() {
    let n = 4097;
    for decoupled in [false, true] {
        let p0 = randn(2, n);
        let p = tensor(&p0, &[n]).requires_grad();
        let (lr, b1, b2, eps, wd) = (1e-2f64, 0.9f64, 0.99f64, 1e-8f64, 0.05f64);
        let base = if decoupled {
            Adam::adamw(vec![p.clone()], lr as f32)
        } else {
            Adam::new(vec![p.clone()], lr as f32)
        };
        let mut opt = base
            .unwrap()
            .with_betas(b1 as f32, b2 as f32)
            .with_weight_decay(wd as f32);
        let mut w: Vec<f64> = p0.iter().map(|&v| v as f64).collect();
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        for t in 1..=4 {
            let g = randn(20 + t, n);
            set_grad(&p, &g);
            opt.step().unwrap();
            for i in 0..n {
                let mut gi = g[i] as f64;
                if decoupled {
                    w[i] *= 1.0 - lr * wd;
                } else {
                    gi += wd * w[i];
                }
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                let bc1 = 1.0 - b1.powi(t as i32);
                let bc2 = 1.0 - b2.powi(t as i32);
                w[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + eps);
            }
        }
        assert_close(
            &p.to_vec().unwrap(),
            &w,
            1e-6,
            1e-5,
            &format!("adam decoupled={decoupled}"),
        );
    }
}

#[test]
fn parameters_without_gradients_are_left_alone() {
    let p = tensor(&[1.0, 2.0], &[2]).requires_grad();
    let mut opt = Sgd::new(vec![p.clone()], 0.5).unwrap();
    opt.step().unwrap();
    assert_eq!(p.to_vec().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn schedules_match_their_closed_forms() {
    let c = CosineLr {
        base_lr: 0.1,
        t_max: 10,
        eta_min: 0.001,
    };
    assert!((c.lr_at(0) - 0.1).abs() < 1e-7);
    assert!((c.lr_at(5) - (0.001 + 0.099 * 0.5)).abs() < 1e-6);
    assert!((c.lr_at(10) - 0.001).abs() < 1e-7);
    let s = StepLr {
        base_lr: 1.0,
        step_size: 3,
        gamma: 0.5,
    };
    assert_eq!(
        [s.lr_at(0), s.lr_at(2), s.lr_at(3), s.lr_at(7)],
        [1.0, 1.0, 0.5, 0.25]
    );
}

#[test]
fn parameters_updated_together_match_parameters_updated_alone() {
    // Parameters below 16,384 elements are updated side by side in flat copies (copied back
    // after), larger ones alone: every one must end where an optimizer holding only that
    // parameter takes it (every optimizer), states included over three steps.
    let sizes = [1, 7, 300, 4099, 6, 20_001];
    for kind in 0..7 {
        let make = |params: Vec<Tensor>| -> Box<dyn Optimizer> {
            match kind {
                0 => Box::new(Sgd::new(params, 0.1).unwrap().with_momentum(0.9)),
                1 => Box::new(Adam::new(params, 0.01).unwrap()),
                2 => Box::new(Adam::adamw(params, 0.01).unwrap()),
                // One state (two unused slots), and all three.
                3 => Box::new(RmsProp::new(params, 0.01).unwrap()),
                4 => Box::new(
                    RmsProp::new(params, 0.01)
                        .unwrap()
                        .with_momentum(0.9)
                        .with_centered(true),
                ),
                5 => Box::new(
                    Adagrad::new(params, 0.1)
                        .unwrap()
                        .with_initial_accumulator_value(0.1),
                ),
                _ => Box::new(Adadelta::new(params, 1.0).unwrap()),
            }
        };
        let init = |i: usize| tensor(&randn(30 + i as u64, sizes[i]), &[sizes[i]]).requires_grad();
        let together: Vec<Tensor> = (0..sizes.len()).map(init).collect();
        let alone: Vec<Tensor> = (0..sizes.len()).map(init).collect();
        let mut opt = make(together.clone());
        let mut opts: Vec<_> = alone.iter().map(|p| make(vec![p.clone()])).collect();
        for step in 0..3u64 {
            for (i, (a, b)) in together.iter().zip(&alone).enumerate() {
                let g = randn(100 * step + i as u64, sizes[i]);
                set_grad(a, &g);
                set_grad(b, &g);
            }
            opt.step().unwrap();
            for o in &mut opts {
                o.step().unwrap();
            }
        }
        for (i, (a, b)) in together.iter().zip(&alone).enumerate() {
            assert_eq!(
                a.to_vec().unwrap(),
                b.to_vec().unwrap(),
                "optimizer {kind}, parameter {i} ({} elements)",
                sizes[i]
            );
        }
    }
}

#[test]
fn an_optimizer_over_parameters_on_two_devices_is_an_error() {
    let other = webgrad::Device::new().unwrap();
    let a = tensor(&[1.0, 2.0], &[2]).requires_grad();
    let b = Tensor::from_slice(&other, &[3.0, 4.0], &[2])
        .unwrap()
        .requires_grad();
    for (i, err) in [
        Sgd::new(vec![a.clone(), b.clone()], 0.1).err(),
        Adam::new(vec![a.clone(), b.clone()], 0.1).err(),
        Adam::adamw(vec![a.clone(), b.clone()], 0.1).err(),
        RmsProp::new(vec![a.clone(), b.clone()], 0.1).err(),
        Adagrad::new(vec![a.clone(), b.clone()], 0.1).err(),
        Adadelta::new(vec![a.clone(), b.clone()], 0.1).err(),
    ]
    .into_iter()
    .enumerate()
    {
        let err = err.unwrap_or_else(|| panic!("optimizer {i} accepted two devices"));
        assert!(matches!(err, webgrad::Error::DeviceMismatch(_)), "{err}");
    }
    // Each device's parameters alone are fine.
    b.sum().unwrap().backward().unwrap();
    let mut opt = Sgd::new(vec![b.clone()], 0.5).unwrap();
    opt.step().unwrap();
    assert_eq!(b.to_vec().unwrap(), vec![2.5, 3.5]);
}

/// RMSprop, Adagrad or Adadelta with its hyper-parameters but the learning rate, and its
/// update rule in float64, in PyTorch's order.
#[derive(Clone, Copy, Debug)]
enum Rule {
    RmsProp {
        alpha: f64,
        eps: f64,
        weight_decay: f64,
        momentum: f64,
        centered: bool,
    },
    Adagrad {
        lr_decay: f64,
        weight_decay: f64,
        initial: f64,
        eps: f64,
    },
    Adadelta {
        rho: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl Rule {
    /// PyTorch's defaults but for the options `meta` (a reference case's JSON) names.
    fn from_meta(meta: &serde_json::Value) -> Rule {
        let get = |k: &str, default: f64| meta.get(k).map_or(default, |v| v.as_f64().unwrap());
        match meta["op"].as_str().unwrap() {
            "RMSprop" => Rule::RmsProp {
                alpha: get("alpha", 0.99),
                eps: get("eps", 1e-8),
                weight_decay: get("weight_decay", 0.0),
                momentum: get("momentum", 0.0),
                centered: meta.get("centered").is_some_and(|v| v.as_bool().unwrap()),
            },
            "Adagrad" => Rule::Adagrad {
                lr_decay: get("lr_decay", 0.0),
                weight_decay: get("weight_decay", 0.0),
                initial: get("initial_accumulator_value", 0.0),
                eps: get("eps", 1e-10),
            },
            "Adadelta" => Rule::Adadelta {
                rho: get("rho", 0.9),
                eps: get("eps", 1e-6),
                weight_decay: get("weight_decay", 0.0),
            },
            op => panic!("unexpected optimizer {op}"),
        }
    }

    /// PyTorch's default learning rate.
    fn default_lr(self) -> f64 {
        match self {
            Rule::Adadelta { .. } => 1.0,
            _ => 0.01,
        }
    }

    /// webgrad's optimizer with these hyper-parameters, through its builders.
    fn optimizer(self, params: Vec<Tensor>, lr: f32) -> Box<dyn Optimizer> {
        match self {
            Rule::RmsProp {
                alpha,
                eps,
                weight_decay,
                momentum,
                centered,
            } => Box::new(
                RmsProp::new(params, lr)
                    .unwrap()
                    .with_alpha(alpha as f32)
                    .with_eps(eps as f32)
                    .with_weight_decay(weight_decay as f32)
                    .with_momentum(momentum as f32)
                    .with_centered(centered),
            ),
            Rule::Adagrad {
                lr_decay,
                weight_decay,
                initial,
                eps,
            } => Box::new(
                Adagrad::new(params, lr)
                    .unwrap()
                    .with_lr_decay(lr_decay as f32)
                    .with_weight_decay(weight_decay as f32)
                    .with_initial_accumulator_value(initial as f32)
                    .with_eps(eps as f32),
            ),
            Rule::Adadelta {
                rho,
                eps,
                weight_decay,
            } => Box::new(
                Adadelta::new(params, lr)
                    .unwrap()
                    .with_rho(rho as f32)
                    .with_eps(eps as f32)
                    .with_weight_decay(weight_decay as f32),
            ),
        }
    }

    /// Step t (from 1) of one element: parameter w, gradient g, states s (zeros before the
    /// first step), learning rate lr.
    fn step(self, lr: f64, t: u64, w: &mut f64, g: f64, s: &mut [f64; 3]) {
        match self {
            Rule::RmsProp {
                alpha,
                eps,
                weight_decay,
                momentum,
                centered,
            } => {
                let g = g + weight_decay * *w;
                s[0] = alpha * s[0] + (1.0 - alpha) * g * g;
                let mut avg = s[0];
                if centered {
                    s[2] = alpha * s[2] + (1.0 - alpha) * g;
                    avg -= s[2] * s[2];
                }
                let avg = avg.sqrt() + eps;
                if momentum > 0.0 {
                    s[1] = momentum * s[1] + g / avg;
                    *w -= lr * s[1];
                } else {
                    *w -= lr * g / avg;
                }
            }
            Rule::Adagrad {
                lr_decay,
                weight_decay,
                initial,
                eps,
            } => {
                let g = g + weight_decay * *w;
                if t == 1 {
                    s[0] = initial;
                }
                let clr = lr / (1.0 + (t - 1) as f64 * lr_decay);
                s[0] += g * g;
                *w -= clr * g / (s[0].sqrt() + eps);
            }
            Rule::Adadelta {
                rho,
                eps,
                weight_decay,
            } => {
                let g = g + weight_decay * *w;
                s[0] = rho * s[0] + (1.0 - rho) * g * g;
                let delta = (s[1] + eps).sqrt() / (s[0] + eps).sqrt() * g;
                s[1] = rho * s[1] + (1.0 - rho) * delta * delta;
                *w -= lr * delta;
            }
        }
    }
}

/// Steps an optimizer with `rule` over one parameter of n random elements with random
/// gradients, the learning rate of step t being `lrs[t - 1]` (set before each step, as a
/// schedule does), and checks it against the float64 rule after every step.
fn follow_rule(rule: Rule, n: usize, lrs: &[f32], seed: u64) {
    let p0 = randn(seed, n);
    let p = tensor(&p0, &[n]).requires_grad();
    let mut opt = rule.optimizer(vec![p.clone()], lrs[0]);
    let mut w = to_f64(&p0);
    let mut states = vec![[0.0; 3]; n];
    for (t, &lr) in (1..).zip(lrs) {
        let g = randn(seed + 100 * t, n);
        set_grad(&p, &g);
        opt.set_learning_rate(lr);
        opt.step().unwrap();
        for i in 0..n {
            rule.step(lr as f64, t, &mut w[i], g[i] as f64, &mut states[i]);
        }
        assert_close(
            &p.to_vec().unwrap(),
            &w,
            1e-6,
            1e-5,
            &format!("{rule:?}, step {t}, lr {lr}"),
        );
    }
}

#[test]
fn rmsprop_adagrad_adadelta_follow_their_rules() {
    // 4,099 elements: 4,096 through the vec4 kernel, 3 through the scalar one. A large eps
    // where it matters whether it is added inside or outside the root.
    let rules = [
        Rule::RmsProp {
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        },
        Rule::RmsProp {
            alpha: 0.9,
            eps: 1e-6,
            weight_decay: 0.1,
            momentum: 0.8,
            centered: true,
        },
        Rule::RmsProp {
            alpha: 0.95,
            eps: 0.1,
            weight_decay: 0.0,
            momentum: 0.5,
            centered: false,
        },
        Rule::Adagrad {
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial: 0.0,
            eps: 1e-10,
        },
        Rule::Adagrad {
            lr_decay: 0.2,
            weight_decay: 0.05,
            initial: 0.3,
            eps: 0.1,
        },
        Rule::Adadelta {
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
        },
        Rule::Adadelta {
            rho: 0.5,
            eps: 1e-4,
            weight_decay: 0.1,
        },
    ];
    for (i, rule) in rules.into_iter().enumerate() {
        let lr = rule.default_lr() as f32;
        follow_rule(rule, 4099, &[lr; 4], 40 + i as u64);
    }
}

#[test]
fn rmsprop_adagrad_adadelta_match_pytorch() {
    let r = Reference::load("optimizers.safetensors");
    let names = ["weight", "bias"];
    let mut cases = 0;
    for op in ["RMSprop", "Adagrad", "Adadelta"] {
        for case in r.cases(op) {
            let meta = r.meta(&case);
            let rule = Rule::from_meta(meta);
            let lr = meta
                .get("lr")
                .map_or(rule.default_lr(), |v| v.as_f64().unwrap());
            let params: Vec<Tensor> = names
                .iter()
                .map(|n| r.tensor("init", n).requires_grad())
                .collect();
            let mut opt = rule.optimizer(params.clone(), lr as f32);
            for k in 1..=4 {
                for (p, n) in params.iter().zip(names) {
                    set_grad(p, &r.get(&format!("grad{k}"), n).0);
                }
                opt.step().unwrap();
                for (p, n) in params.iter().zip(names) {
                    r.assert_matches(&case, &format!("step{k}.{n}"), p, 1e-6, 1e-5);
                }
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 12, "reference cases");
}

#[test]
fn schedules_drive_rmsprop_adagrad_and_adadelta() {
    // The schedule sets the learning rate through the Optimizer trait before every step (an
    // "epoch" here); Adagrad's lr_decay applies on top of it.
    let step = StepLr {
        base_lr: 0.05,
        step_size: 2,
        gamma: 0.5,
    };
    let cosine = CosineLr {
        base_lr: 0.02,
        t_max: 4,
        eta_min: 0.001,
    };
    let rms = Rule::RmsProp {
        alpha: 0.9,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum: 0.9,
        centered: false,
    };
    let ada = Rule::Adagrad {
        lr_decay: 0.1,
        weight_decay: 0.0,
        initial: 0.0,
        eps: 1e-10,
    };
    let delta = Rule::Adadelta {
        rho: 0.9,
        eps: 1e-6,
        weight_decay: 0.0,
    };
    for (i, rule) in [rms, ada, delta].into_iter().enumerate() {
        for schedule in [&step as &dyn LrSchedule, &cosine] {
            let lrs: Vec<f32> = (0..5).map(|e| schedule.lr_at(e)).collect();
            follow_rule(rule, 301, &lrs, 60 + i as u64);
        }
    }
}

#[test]
fn optimizer_state_resumes_where_it_stopped() {
    // Two steps, a checkpoint (state and step count) loaded into a fresh optimizer over a copy
    // of the parameters, then the same third step for both.
    let make = |kind: usize, params: Vec<Tensor>| -> Box<dyn Optimizer> {
        match kind {
            0 => Box::new(
                RmsProp::new(params, 0.01)
                    .unwrap()
                    .with_momentum(0.9)
                    .with_centered(true),
            ),
            1 => Box::new(
                Adagrad::new(params, 0.1)
                    .unwrap()
                    .with_initial_accumulator_value(0.5)
                    .with_lr_decay(0.1),
            ),
            _ => Box::new(Adadelta::new(params, 1.0).unwrap()),
        }
    };
    let names: [&[&str]; 3] = [
        &["0.square_avg", "0.momentum_buffer", "0.grad_avg"],
        &["0.sum"],
        &["0.square_avg", "0.acc_delta"],
    ];
    for (kind, names) in names.into_iter().enumerate() {
        let n = 37;
        let p = tensor(&randn(70, n), &[n]).requires_grad();
        let mut opt = make(kind, vec![p.clone()]);
        for step in 0..2 {
            set_grad(&p, &randn(71 + step, n));
            opt.step().unwrap();
        }
        let state = opt.state();
        let got: Vec<&str> = state.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(got, names, "optimizer {kind}: state names");
        let q = tensor(&p.to_vec().unwrap(), &[n]).requires_grad();
        let mut resumed = make(kind, vec![q.clone()]);
        resumed.load_state(&state, opt.steps()).unwrap();
        assert_eq!(resumed.steps(), 2);
        let g = randn(80, n);
        set_grad(&p, &g);
        set_grad(&q, &g);
        opt.step().unwrap();
        resumed.step().unwrap();
        assert_eq!(p.to_vec().unwrap(), q.to_vec().unwrap(), "optimizer {kind}");
    }
}

#[test]
fn bad_hyper_parameters_are_errors_naming_the_value() {
    let p = || tensor(&[1.0, 2.0, 3.0], &[3]).requires_grad();
    let message = |e: webgrad::Error| {
        assert!(matches!(e, webgrad::Error::Invalid(_)), "{e:?}");
        e.to_string()
    };
    // A negative learning rate, at construction.
    for (name, err) in [
        ("SGD", Sgd::new(vec![p()], -0.5).err()),
        ("Adam", Adam::new(vec![p()], -0.5).err()),
        ("RMSprop", RmsProp::new(vec![p()], -0.5).err()),
        ("Adagrad", Adagrad::new(vec![p()], -0.5).err()),
        ("Adadelta", Adadelta::new(vec![p()], -0.5).err()),
    ] {
        let m = message(err.unwrap_or_else(|| panic!("{name} took lr -0.5")));
        assert!(m.contains(name) && m.contains("learning rate -0.5"), "{m}");
    }
    // Options set by the builders or a schedule, at the step, which then changes nothing.
    let steps: Vec<(&str, Box<dyn Optimizer>)> = vec![
        (
            "rho 1.5",
            Box::new(Adadelta::new(vec![p()], 1.0).unwrap().with_rho(1.5)),
        ),
        (
            "rho -0.1",
            Box::new(Adadelta::new(vec![p()], 1.0).unwrap().with_rho(-0.1)),
        ),
        (
            "eps -0.001",
            Box::new(Adadelta::new(vec![p()], 1.0).unwrap().with_eps(-1e-3)),
        ),
        (
            "eps -0.001",
            Box::new(RmsProp::new(vec![p()], 0.01).unwrap().with_eps(-1e-3)),
        ),
        (
            "alpha -0.5",
            Box::new(RmsProp::new(vec![p()], 0.01).unwrap().with_alpha(-0.5)),
        ),
        (
            "momentum -0.9",
            Box::new(RmsProp::new(vec![p()], 0.01).unwrap().with_momentum(-0.9)),
        ),
        (
            "weight_decay -0.1",
            Box::new(
                RmsProp::new(vec![p()], 0.01)
                    .unwrap()
                    .with_weight_decay(-0.1),
            ),
        ),
        (
            "eps -0.001",
            Box::new(Adagrad::new(vec![p()], 0.01).unwrap().with_eps(-1e-3)),
        ),
        (
            "lr_decay -0.1",
            Box::new(Adagrad::new(vec![p()], 0.01).unwrap().with_lr_decay(-0.1)),
        ),
        (
            "initial_accumulator_value -1",
            Box::new(
                Adagrad::new(vec![p()], 0.01)
                    .unwrap()
                    .with_initial_accumulator_value(-1.0),
            ),
        ),
        (
            "beta2 1",
            Box::new(Adam::new(vec![p()], 0.01).unwrap().with_betas(0.9, 1.0)),
        ),
        (
            "momentum -0.9",
            Box::new(Sgd::new(vec![p()], 0.01).unwrap().with_momentum(-0.9)),
        ),
        ("learning rate NaN", {
            let mut o = Adagrad::new(vec![p()], 0.01).unwrap();
            o.set_learning_rate(f32::NAN);
            Box::new(o)
        }),
        ("learning rate -1", {
            let mut o = RmsProp::new(vec![p()], 0.01).unwrap();
            o.set_learning_rate(-1.0);
            Box::new(o)
        }),
    ];
    for (want, mut opt) in steps {
        let w = &opt.parameters()[0];
        set_grad(w, &[1.0, 1.0, 1.0]);
        let m = message(opt.step().unwrap_err());
        assert!(m.contains(want), "{m} (wanted {want})");
        assert_eq!(
            opt.parameters()[0].to_vec().unwrap(),
            [1.0, 2.0, 3.0],
            "{m}"
        );
        assert_eq!(opt.steps(), 0, "{m}");
    }
    // The bounds themselves are fine.
    let mut edge = Adadelta::new(vec![p()], 0.0)
        .unwrap()
        .with_rho(1.0)
        .with_eps(0.0);
    set_grad(&edge.parameters()[0], &[1.0, 1.0, 1.0]);
    edge.step().unwrap();
}
