//! Optimizer kernels against float64 implementations of PyTorch's update rules, and the
//! learning-rate schedules.

mod common;
use common::*;
use webgrad::optim::{Adam, CosineLr, LrSchedule, Optimizer, Sgd, StepLr};
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
    // parameter takes it (SGD with momentum, Adam, AdamW), states included over three steps.
    let sizes = [1, 7, 300, 4099, 6, 20_001];
    for kind in 0..3 {
        let make = |params: Vec<Tensor>| -> Box<dyn Optimizer> {
            match kind {
                0 => Box::new(Sgd::new(params, 0.1).unwrap().with_momentum(0.9)),
                1 => Box::new(Adam::new(params, 0.01).unwrap()),
                _ => Box::new(Adam::adamw(params, 0.01).unwrap()),
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
