//! Property test: random convolution → ReLU → max-pool → linear → ReLU chains with random
//! shapes (empty batches and 1-sized dims included), under every kernel class. The forward
//! pass must match a float64 CPU reference, and the gradients of the fused chain (the ops
//! deferred and folded, as any model runs them) must match those of the same chain computed
//! op by op (each op's own kernels, which their own tests check against PyTorch and finite
//! differences). Also: in-place writes to the inputs after the forward pass must not change
//! its results.

mod common;
use common::*;
use webgrad::{Conv2dParams, Device, Pool2dParams, Rng, Tensor};

#[derive(Debug, Clone, Copy)]
struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    conv_bias: bool,
    relu: bool,
    pool: bool,
    features: usize,
    lin_bias: bool,
    lin_relu: bool,
}

impl Case {
    fn random(r: &mut Rng) -> Case {
        let pick = |r: &mut Rng, lo: usize, hi: usize| {
            lo + (r.uniform() * (hi - lo + 1) as f32) as usize % (hi - lo + 1)
        };
        let k = pick(r, 1, 3);
        let pad = pick(r, 0, 1).min(k / 2);
        let h = pick(r, k.saturating_sub(2 * pad).max(1), 9);
        let w = pick(r, k.saturating_sub(2 * pad).max(1), 9);
        Case {
            n: [0, 1, 2, 3, 5][pick(r, 0, 4)],
            c: pick(r, 1, 3),
            h,
            w,
            c_out: pick(r, 1, 4),
            k,
            stride: pick(r, 1, 2),
            pad,
            conv_bias: r.uniform() < 0.7,
            relu: r.uniform() < 0.8,
            pool: r.uniform() < 0.6,
            features: pick(r, 1, 5),
            lin_bias: r.uniform() < 0.7,
            lin_relu: r.uniform() < 0.5,
        }
    }

    fn conv_out(&self) -> (usize, usize) {
        let o = |i: usize| (i + 2 * self.pad - self.k) / self.stride + 1;
        (o(self.h), o(self.w))
    }

    /// The max-pool only where the convolution's output is at least 2 x 2.
    fn pools(&self) -> bool {
        let (ho, wo) = self.conv_out();
        self.pool && ho >= 2 && wo >= 2
    }
}

struct Inputs {
    x: Vec<f32>,
    cw: Vec<f32>,
    cb: Vec<f32>,
    lw: Vec<f32>,
    lb: Vec<f32>,
}

/// The chain on the device; `fused`: as a model runs it (deferred ops folded), else op by op
/// (each deferred output read before the next op, so nothing folds).
fn chain(t: &[Tensor], case: &Case, fused: bool) -> webgrad::Result<Tensor> {
    let unfold = |y: Tensor| -> webgrad::Result<Tensor> {
        if !fused {
            y.to_vec()?;
        }
        Ok(y)
    };
    let p = Conv2dParams::default()
        .stride(case.stride)
        .padding(case.pad);
    let mut y = unfold(t[0].conv2d(&t[1], case.conv_bias.then_some(&t[2]), p)?)?;
    if case.relu {
        y = unfold(y.relu()?)?;
    }
    if case.pools() {
        y = y.max_pool2d(Pool2dParams::new(2))?;
    }
    let y = y.flatten(1, -1)?;
    let y = unfold(y.linear(&t[3], case.lin_bias.then_some(&t[4]))?)?;
    if case.lin_relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// The same chain in float64 on the host.
fn chain_ref(v: &Inputs, case: &Case) -> Vec<f64> {
    let (ho, wo) = case.conv_out();
    let xs = [case.n, case.c, case.h, case.w];
    let ws = [case.c_out, case.c, case.k, case.k];
    let s = (case.stride, case.stride);
    let pd = (case.pad, case.pad);
    let bias = case.conv_bias.then_some(&v.cb[..]);
    let mut y = conv2d_ref(&v.x, &xs, &v.cw, &ws, bias, s, pd, (1, 1), 1, 0..case.n);
    if case.relu {
        y.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    let (mut h, mut w) = (ho, wo);
    if case.pools() {
        let (ph, pw) = (h / 2, w / 2);
        let mut pooled = Vec::new();
        for plane in 0..case.n * case.c_out {
            for i in 0..ph {
                for j in 0..pw {
                    let at = |a: usize, b: usize| y[plane * h * w + (2 * i + a) * w + 2 * j + b];
                    pooled.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
                }
            }
        }
        y = pooled;
        (h, w) = (ph, pw);
    }
    let inp = case.c_out * h * w;
    let mut out = Vec::new();
    for r in 0..case.n {
        for f in 0..case.features {
            let mut s = if case.lin_bias { v.lb[f] as f64 } else { 0.0 };
            for i in 0..inp {
                s += y[r * inp + i] * v.lw[f * inp + i] as f64;
            }
            out.push(if case.lin_relu { s.max(0.0) } else { s });
        }
    }
    out
}

fn run_case(dev: &Device, case: &Case, seed: u64) {
    let what = format!("{} seed {seed}: {case:?}", dev.kernel_class().name());
    let (ho, wo) = case.conv_out();
    let (h, w) = if case.pools() {
        (ho / 2, wo / 2)
    } else {
        (ho, wo)
    };
    let inp = case.c_out * h * w;
    let shapes = [
        vec![case.n, case.c, case.h, case.w],
        vec![case.c_out, case.c, case.k, case.k],
        vec![case.c_out],
        vec![case.features, inp],
        vec![case.features],
    ];
    let v = Inputs {
        x: randn(seed, numel(&shapes[0])),
        cw: randn(seed + 1, numel(&shapes[1])),
        cb: randn(seed + 2, numel(&shapes[2])),
        lw: randn(seed + 3, numel(&shapes[3])),
        lb: randn(seed + 4, numel(&shapes[4])),
    };
    let data = [&v.x, &v.cw, &v.cb, &v.lw, &v.lb];
    let leaves = || -> Vec<Tensor> {
        data.iter()
            .zip(&shapes)
            .map(|(d, s)| Tensor::from_slice(dev, d, s).unwrap().requires_grad())
            .collect()
    };
    let want = chain_ref(&v, case);

    // Forward, fused: against float64; then in-place writes to every input must not change
    // the (possibly still deferred) result.
    let t = leaves();
    let y = chain(&t, case, true).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(y.shape(), &[case.n, case.features], "{what}");
    for (input, d) in t.iter().zip(&data) {
        input.write_from_slice(&vec![0.5; d.len()]).unwrap();
    }
    assert_close(
        &y.to_vec().unwrap(),
        &want,
        1e-4,
        1e-4,
        &format!("{what}: forward"),
    );

    // Gradients of a weighted sum, fused and op by op.
    let weights = randn(seed + 5, case.n * case.features);
    let grads = |fused: bool| -> Vec<Vec<f32>> {
        let t = leaves();
        let wt = Tensor::from_slice(dev, &weights, &[case.n, case.features]).unwrap();
        let y = chain(&t, case, fused).unwrap();
        y.mul(&wt).unwrap().sum().unwrap().backward().unwrap();
        t.iter()
            .map(|l| {
                l.grad()
                    .map_or(vec![0.0; l.numel()], |g| g.to_vec().unwrap())
            })
            .collect()
    };
    let (fused, plain) = (grads(true), grads(false));
    for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
        assert_close(f, &to_f64(p), 1e-4, 1e-4, &format!("{what}: gradient {i}"));
    }
}

#[test]
fn random_conv_relu_pool_linear_chains_match_float64_and_the_unfused_gradients() {
    let mut r = Rng::new(2024);
    let cases: Vec<Case> = (0..24).map(|_| Case::random(&mut r)).collect();
    for dev in policy_devices() {
        for (i, case) in cases.iter().enumerate() {
            run_case(&dev, case, 100 + i as u64 * 10);
        }
    }
}
