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

/// A float64 array on the host, row-major, for the reference of random op sequences.
#[derive(Clone, Debug)]
struct Arr {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl Arr {
    fn map(&self, f: impl Fn(f64) -> f64) -> Arr {
        Arr {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&v| f(v)).collect(),
        }
    }

    fn strides(shape: &[usize]) -> Vec<usize> {
        let mut s = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * shape[i + 1];
        }
        s
    }

    /// NumPy broadcasting of two arrays under `f`.
    fn zip(&self, other: &Arr, f: impl Fn(f64, f64) -> f64) -> Arr {
        let rank = self.shape.len().max(other.shape.len());
        let pad = |s: &[usize]| [vec![1; rank - s.len()], s.to_vec()].concat();
        let (a, b) = (pad(&self.shape), pad(&other.shape));
        let shape: Vec<usize> = (0..rank)
            .map(|i| if a[i] == 1 { b[i] } else { a[i] })
            .collect();
        let (sa, sb, so) = (Arr::strides(&a), Arr::strides(&b), Arr::strides(&shape));
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|flat| {
                let (mut ia, mut ib) = (0, 0);
                for d in 0..rank {
                    let i = flat / so[d] % shape[d];
                    ia += if a[d] == 1 { 0 } else { i * sa[d] };
                    ib += if b[d] == 1 { 0 } else { i * sb[d] };
                }
                f(self.data[ia], other.data[ib])
            })
            .collect();
        Arr { shape, data }
    }

    fn sum_dim(&self, d: usize, keepdim: bool, mean: bool) -> Arr {
        let outer: usize = self.shape[..d].iter().product();
        let (n, inner) = (self.shape[d], self.shape[d + 1..].iter().product::<usize>());
        let mut data = vec![0.0; outer * inner];
        for o in 0..outer {
            for i in 0..inner {
                let s: f64 = (0..n).map(|k| self.data[(o * n + k) * inner + i]).sum();
                data[o * inner + i] = if mean { s / n as f64 } else { s };
            }
        }
        let mut shape = self.shape.clone();
        if keepdim {
            shape[d] = 1;
        } else {
            shape.remove(d);
        }
        Arr { shape, data }
    }

    /// Swaps the last two dims.
    fn transpose(&self) -> Arr {
        let r = self.shape.len();
        let (m, n) = (self.shape[r - 2], self.shape[r - 1]);
        let batch = self.data.len() / (m * n).max(1);
        let mut data = vec![0.0; self.data.len()];
        for b in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    data[b * m * n + j * m + i] = self.data[b * m * n + i * n + j];
                }
            }
        }
        let mut shape = self.shape.clone();
        shape.swap(r - 2, r - 1);
        Arr { shape, data }
    }

    /// [.., k] x [k, n] for a 2-D right-hand side.
    fn matmul(&self, w: &Arr) -> Arr {
        let k = *self.shape.last().unwrap();
        let n = w.shape[1];
        let rows = self.data.len() / k.max(1);
        let rows = if k == 0 {
            self.shape[..self.shape.len() - 1].iter().product()
        } else {
            rows
        };
        let mut data = vec![0.0; rows * n];
        for r in 0..rows {
            for c in 0..n {
                data[r * n + c] = (0..k)
                    .map(|i| self.data[r * k + i] * w.data[i * n + c])
                    .sum();
            }
        }
        let mut shape = self.shape.clone();
        *shape.last_mut().unwrap() = n;
        Arr { shape, data }
    }
}

/// One op of a random sequence; the second operand of a binary op is input 1, the matrix of
/// a product input 2.
#[derive(Clone, Copy, Debug)]
enum Step {
    Tanh,
    Sigmoid,
    Exp,
    Affine(f32, f32),
    Add,
    Sub,
    Mul,
    Sum(usize, bool),
    Mean(usize, bool),
    Transpose,
    Matmul,
}

/// Applies `steps` on the device: t[0] the input, t[1] the broadcast operand, t[2] the matrix.
fn run_steps(t: &[Tensor], steps: &[Step]) -> webgrad::Result<Tensor> {
    let mut y = t[0].clone();
    for s in steps {
        y = match *s {
            Step::Tanh => y.tanh()?,
            Step::Sigmoid => y.sigmoid()?,
            Step::Exp => y.mul_scalar(0.5)?.exp()?,
            Step::Affine(a, b) => y.mul_scalar(a)?.add_scalar(b)?,
            Step::Add => y.add(&t[1])?,
            Step::Sub => t[1].sub(&y)?,
            Step::Mul => y.mul(&t[1])?,
            Step::Sum(d, k) => y.sum_dim(d as isize, k)?,
            Step::Mean(d, k) => y.mean_dim(d as isize, k)?,
            Step::Transpose => y.transpose(-2, -1)?,
            Step::Matmul => y.matmul(&t[2])?,
        };
    }
    Ok(y)
}

fn run_ref(a: &Arr, b: &Arr, w: &Arr, steps: &[Step]) -> Arr {
    let mut y = a.clone();
    for s in steps {
        y = match *s {
            Step::Tanh => y.map(f64::tanh),
            Step::Sigmoid => y.map(|v| 1.0 / (1.0 + (-v).exp())),
            Step::Exp => y.map(|v| (0.5 * v).exp()),
            Step::Affine(p, q) => y.map(|v| v * p as f64 + q as f64),
            Step::Add => y.zip(b, |x, z| x + z),
            Step::Sub => b.zip(&y, |z, x| z - x),
            Step::Mul => y.zip(b, |x, z| x * z),
            Step::Sum(d, k) => y.sum_dim(d, k, false),
            Step::Mean(d, k) => y.sum_dim(d, k, true),
            Step::Transpose => y.transpose(),
            Step::Matmul => y.matmul(w),
        };
    }
    y
}

/// A random sequence that keeps `shape` valid for each op; the broadcast operand's shape is
/// fixed for the first shape it meets, so binary ops come first. `None` when a step cannot
/// apply.
fn random_program(r: &mut Rng) -> (Vec<usize>, Vec<usize>, Vec<usize>, Vec<Step>) {
    let pick = |r: &mut Rng, n: usize| (r.uniform() * n as f32) as usize % n;
    let rank = 1 + pick(r, 3);
    let a: Vec<usize> = (0..rank).map(|_| [0, 1, 2, 3, 4][pick(r, 5)]).collect();
    // The broadcast operand: some dims 1, maybe fewer leading dims.
    let drop = pick(r, rank);
    let b: Vec<usize> = a[drop..]
        .iter()
        .map(|&d| if r.uniform() < 0.4 { 1 } else { d })
        .collect();
    let mut steps = vec![[Step::Add, Step::Sub, Step::Mul][pick(r, 3)]];
    let mut shape = a.clone();
    let w = vec![*shape.last().unwrap(), 1 + pick(r, 3)];
    let mut used_matmul = false;
    for _ in 0..2 + pick(r, 3) {
        let step = match pick(r, 7) {
            0 => Step::Tanh,
            1 => Step::Sigmoid,
            2 => Step::Exp,
            3 => Step::Affine(0.5 + r.uniform(), r.uniform() - 0.5),
            4 if shape.len() >= 2 => Step::Transpose,
            5 if !used_matmul && shape.last() == Some(&w[0]) => Step::Matmul,
            // A mean over an empty dim is NaN: sum there.
            _ if !shape.is_empty() => {
                let d = pick(r, shape.len());
                let keep = r.uniform() < 0.5;
                if shape[d] == 0 {
                    Step::Sum(d, keep)
                } else {
                    Step::Mean(d, keep)
                }
            }
            _ => Step::Tanh,
        };
        match step {
            Step::Transpose => {
                let r2 = shape.len();
                shape.swap(r2 - 2, r2 - 1);
            }
            Step::Matmul => {
                used_matmul = true;
                *shape.last_mut().unwrap() = w[1];
            }
            Step::Sum(d, keep) | Step::Mean(d, keep) => {
                if keep {
                    shape[d] = 1;
                } else {
                    shape.remove(d);
                }
            }
            _ => {}
        }
        steps.push(step);
    }
    (a, b, w, steps)
}

#[test]
fn random_op_sequences_match_float64_and_finite_differences() {
    // Elementwise, broadcast binary, reductions (keepdim or not), transposes and products on
    // random shapes with 0- and 1-sized dims: forward against float64, gradients of every
    // input against central finite differences (`gradcheck`), under every kernel class.
    let mut r = Rng::new(31);
    let programs: Vec<_> = (0..40).map(|_| random_program(&mut r)).collect();
    for dev in policy_devices() {
        for (i, (a, b, w, steps)) in programs.iter().enumerate() {
            let what = format!(
                "{} program {i}: a {a:?} b {b:?} w {w:?} {steps:?}",
                dev.kernel_class().name()
            );
            let seed = 500 + i as u64 * 3;
            let host = |shape: &[usize], s: u64| Arr {
                shape: shape.to_vec(),
                data: to_f64(&randn(s, numel(shape))),
            };
            let (ha, hb, hw) = (host(a, seed), host(b, seed + 1), host(w, seed + 2));
            let t = |h: &Arr| {
                let v: Vec<f32> = h.data.iter().map(|&x| x as f32).collect();
                Tensor::from_slice(&dev, &v, &h.shape).unwrap()
            };
            let inputs = [t(&ha), t(&hb), t(&hw)];
            let want = run_ref(&ha, &hb, &hw, steps);
            let got = run_steps(&inputs, steps).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.shape(), &want.shape[..], "{what}");
            assert_close(
                &got.to_vec().unwrap(),
                &want.data,
                1e-4,
                1e-4,
                &format!("{what}: forward"),
            );
            let report = webgrad::gradcheck(|t| run_steps(t, steps), &inputs).unwrap();
            assert!(
                report.max_rel_error < 2e-2,
                "{what}: gradcheck error {:.3e} at input {} element {}",
                report.max_rel_error,
                report.worst.0,
                report.worst.1
            );
        }
    }
}
