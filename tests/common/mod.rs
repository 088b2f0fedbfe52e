//! Helpers shared by the integration tests: one device per test binary, seeded random data,
//! float64 CPU references, tolerant comparisons and the PyTorch reference cases.
#![allow(dead_code)]

pub mod alloc;

use std::collections::HashMap;
use std::sync::OnceLock;

use webgrad::{Device, Rng, Tensor};

/// The device every test in this binary shares. No adapter is a failure, never a skip.
pub fn device() -> &'static Device {
    static DEV: OnceLock<Device> = OnceLock::new();
    DEV.get_or_init(|| {
        Device::new().unwrap_or_else(|e| {
            panic!("tests need a wgpu adapter (install mesa-vulkan-drivers for lavapipe): {e}")
        })
    })
}

/// One device per kernel class this adapter can run (its own class first): the GPU kernels
/// (workgroup tiles, im2col) run on a CPU adapter too, so every variant is tested here.
/// New devices for each caller: on GL, threads sharing one device wait on one context lock,
/// which wgpu gives up on after a second (a slow test then panics another).
pub fn policy_devices() -> Vec<Device> {
    let classes = device().runnable_kernel_classes();
    assert!(classes.len() >= 2, "every adapter runs two kernel classes");
    classes
        .into_iter()
        .map(|class| {
            let opts = webgrad::DeviceOptions::default().force_kernels(class);
            let dev = Device::with_options(opts).unwrap();
            assert_eq!(dev.kernel_class(), class);
            dev
        })
        .collect()
}

/// Runs `f` under every kernel class this adapter can run ([`policy_devices`]).
pub fn for_each_policy(mut f: impl FnMut(&Device)) {
    for dev in policy_devices() {
        f(&dev);
    }
}

/// Seeded normal values.
pub fn randn(seed: u64, n: usize) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.normal()).collect()
}

/// Seeded uniform values in [lo, hi).
pub fn uniform(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| lo + (hi - lo) * r.uniform()).collect()
}

pub fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(device(), data, shape).unwrap()
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Asserts |got - want| <= atol + rtol * |want| elementwise (NaN only matches NaN).
pub fn assert_close(got: &[f32], want: &[f64], atol: f64, rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(g.is_nan(), "{what}[{i}]: got {g}, want NaN");
            continue;
        }
        let err = (g as f64 - w).abs();
        let bound = atol + rtol * w.abs();
        assert!(
            err <= bound,
            "{what}[{i}]: got {g}, want {w} (error {err:.3e} > {bound:.3e})"
        );
        if err > worst.0 {
            worst = (err, i);
        }
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// g * f'(x) elementwise for an elementwise float64 reference f, its derivative by central
/// differences of step `h`.
pub fn central_difference_grad(f: impl Fn(f64) -> f64, xs: &[f32], g: &[f32], h: f64) -> Vec<f64> {
    xs.iter()
        .zip(g)
        .map(|(&x, &g)| {
            let x = x as f64;
            g as f64 * (f(x + h) - f(x - h)) / (2.0 * h)
        })
        .collect()
}

/// Runs `webgrad::gradcheck` and asserts the worst relative error is below `tol`.
pub fn check_grad(
    what: &str,
    f: impl Fn(&[Tensor]) -> webgrad::Result<Tensor>,
    inputs: &[Tensor],
    tol: f64,
) {
    let r = webgrad::gradcheck(f, inputs).unwrap();
    assert!(
        r.max_rel_error < tol,
        "{what}: gradcheck error {:.3e} at input {} element {} (tolerance {tol:.0e})",
        r.max_rel_error,
        r.worst.0,
        r.worst.1
    );
}

/// Contiguous strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// float64 reference of a broadcasting binary op.
pub fn broadcast_ref(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    f: impl Fn(f64, f64) -> f64,
) -> (Vec<f64>, Vec<usize>) {
    let rank = sa.len().max(sb.len());
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (pa, pb) = (pad(sa), pad(sb));
    let out: Vec<usize> = (0..rank).map(|d| pa[d].max(pb[d])).collect();
    let (ta, tb) = (strides(&pa), strides(&pb));
    let n = numel(&out);
    let mut res = Vec::with_capacity(n);
    for i in 0..n {
        let (mut rest, mut ia, mut ib) = (i, 0, 0);
        for d in (0..rank).rev() {
            let k = rest % out[d];
            rest /= out[d];
            if pa[d] != 1 {
                ia += k * ta[d];
            }
            if pb[d] != 1 {
                ib += k * tb[d];
            }
        }
        res.push(f(a[ia] as f64, b[ib] as f64));
    }
    (res, out)
}

/// float64 reference of a batched matmul of contiguous [batch, m, k] x [batch, k, n].
pub fn matmul_ref(
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    // Returns the product and, per element, sum |a||b| (the scale of its rounding error).
    let mut out = vec![0.0; batch * m * n];
    let mut mag = vec![0.0; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut t) = (0.0f64, 0.0f64);
                for kk in 0..k {
                    let p = a[bi * m * k + i * k + kk] as f64 * b[bi * k * n + kk * n + j] as f64;
                    s += p;
                    t += p.abs();
                }
                out[bi * m * n + i * n + j] = s;
                mag[bi * m * n + i * n + j] = t;
            }
        }
    }
    (out, mag)
}

/// The PyTorch reference cases of `tests/reference/ops.safetensors` (see its README).
pub struct Reference {
    tensors: HashMap<String, (Vec<f32>, Vec<usize>)>,
    meta: HashMap<String, serde_json::Value>,
}

impl Reference {
    pub fn load(file: &str) -> Reference {
        let path = format!("{}/tests/reference/{file}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let data: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                // bfloat16: the upper half of a float32.
                safetensors::Dtype::BF16 => view
                    .data()
                    .chunks_exact(2)
                    .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                    .collect(),
                safetensors::Dtype::I64 => view
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                d => panic!("{name}: unexpected dtype {d:?}"),
            };
            tensors.insert(name.to_string(), (data, view.shape().to_vec()));
        }
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_str(&v).ok().map(|j| (k, j)))
            .collect();
        Reference { tensors, meta }
    }

    pub fn ops() -> Reference {
        Reference::load("ops.safetensors")
    }

    /// The case's tensor for `role` (data, shape).
    pub fn get(&self, case: &str, role: &str) -> (Vec<f32>, Vec<usize>) {
        let key = if role.is_empty() {
            case.to_string()
        } else {
            format!("{case}.{role}")
        };
        self.tensors
            .get(&key)
            .unwrap_or_else(|| panic!("reference has no {case}.{role}"))
            .clone()
    }

    /// The names of the tensors that start with `prefix`, with it removed, sorted.
    pub fn names_under(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect();
        v.sort();
        v
    }

    pub fn has(&self, case: &str, role: &str) -> bool {
        self.tensors.contains_key(&format!("{case}.{role}"))
    }

    /// The case as a device tensor.
    pub fn tensor(&self, case: &str, role: &str) -> Tensor {
        let (d, s) = self.get(case, role);
        tensor(&d, &s)
    }

    /// The case's argument object (op name and its arguments).
    pub fn meta(&self, case: &str) -> &serde_json::Value {
        &self.meta[case]
    }

    /// All cases whose `op` is `op`.
    pub fn cases(&self, op: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .meta
            .iter()
            .filter(|(_, m)| m["op"] == op)
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    /// Asserts `got` matches the case's `role` within atol + rtol * |want|.
    pub fn assert_matches(&self, case: &str, role: &str, got: &Tensor, atol: f64, rtol: f64) {
        let (want, shape) = self.get(case, role);
        assert_eq!(got.shape(), shape.as_slice(), "{case}.{role}: shape");
        assert_close(
            &got.to_vec().unwrap(),
            &to_f64(&want),
            atol,
            rtol,
            &format!("{case}.{role}"),
        );
    }
}

/// conv2d's output height and width for input shape `xs` and weight shape `ws`.
pub fn conv2d_out_hw(
    xs: &[usize],
    ws: &[usize],
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
) -> (usize, usize) {
    let ho = (xs[2] + 2 * pad.0 - dil.0 * (ws[2] - 1) - 1) / stride.0 + 1;
    let wo = (xs[3] + 2 * pad.1 - dil.1 * (ws[3] - 1) - 1) / stride.1 + 1;
    (ho, wo)
}

/// Calls `f(out, x, w)` for every product conv2d sums (NCHW x, [C_out, C_in/g, KH, KW] w): the
/// flat indices of the output element (images counted from `images.start`), of the input
/// element and of the weight that multiplies it. Taps in the padding are skipped.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_taps(
    xs: &[usize],
    ws: &[usize],
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
    images: std::ops::Range<usize>,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (c, h, wd) = (xs[1], xs[2], xs[3]);
    let (co, cig, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
    let (ho, wo) = conv2d_out_hw(xs, ws, stride, pad, dil);
    let cog = co / groups;
    let first = images.start;
    for n in images {
        for o in 0..co {
            let g = o / cog;
            for oh in 0..ho {
                for ow in 0..wo {
                    let out = (((n - first) * co + o) * ho + oh) * wo + ow;
                    for ci in 0..cig {
                        let cin = g * cig + ci;
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (oh * stride.0 + i * dil.0) as isize - pad.0 as isize;
                                let iw = (ow * stride.1 + j * dil.1) as isize - pad.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                    continue;
                                }
                                let x = ((n * c + cin) * h + ih as usize) * wd + iw as usize;
                                f(out, x, ((o * cig + ci) * kh + i) * kw + j);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// float64 reference convolution (cross-correlation) of NCHW x with [C_out, C_in/g, KH, KW] w.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_ref(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    b: Option<&[f32]>,
    stride: (usize, usize),
    pad: (usize, usize),
    dil: (usize, usize),
    groups: usize,
    images: std::ops::Range<usize>,
) -> Vec<f64> {
    let (ho, wo) = conv2d_out_hw(xs, ws, stride, pad, dil);
    let plane = ho * wo;
    let mut out: Vec<f64> = (0..images.len() * ws[0] * plane)
        .map(|i| b.map_or(0.0, |b| b[i / plane % ws[0]] as f64))
        .collect();
    conv2d_taps(xs, ws, stride, pad, dil, groups, images, |o, xi, wi| {
        out[o] += x[xi] as f64 * w[wi] as f64
    });
    out
}

/// The (h, w) pair of a JSON [h, w] array.
pub fn pair(v: &serde_json::Value) -> (usize, usize) {
    (
        v[0].as_u64().unwrap() as usize,
        v[1].as_u64().unwrap() as usize,
    )
}
