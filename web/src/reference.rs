//! PyTorch's reference values (`tests/reference/`, see its README) run against webgrad on any
//! device: every case of `ops.safetensors`, `activations.safetensors`, `losses.safetensors`,
//! `norms.safetensors`, `pad.safetensors`, `pools.safetensors` and `tensor_ops.safetensors` (an
//! op family's forward and backward), of `optimizers.safetensors` (4 steps of RMSprop, Adagrad
//! or Adadelta), and the
//! LeNet-5 step of `lenet5_step.safetensors` (logits, loss, every gradient, 3 SGD-momentum and 3
//! Adam steps). The tolerances are the native tests' (`tests/*.rs`). Every readback awaits, so
//! the same code runs in a page and natively.

use std::collections::HashMap;

use serde_json::Value;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::{Conv2d, Module, PaddingMode, Sequential};
use webgrad::optim::{Adadelta, Adagrad, Adam, Optimizer, RmsProp, Sgd};
use webgrad::weights::{load_bytes, HostTensor};
use webgrad::{
    BatchNormArgs, Conv2dParams, CrossEntropyOptions, Device, Error, NllLossOptions, PadMode,
    Pool2dParams, Reduction, Result, Tensor,
};

/// The op-case files of `tests/reference/` the page runs (every case of each), in order; the
/// LeNet-5 step's `lenet5_step.safetensors` comes apart.
pub const OP_CASE_FILES: [&str; 8] = [
    "ops.safetensors",
    "activations.safetensors",
    "losses.safetensors",
    "norms.safetensors",
    "pad.safetensors",
    "pools.safetensors",
    "tensor_ops.safetensors",
    "optimizers.safetensors",
];

/// A reference file: tensors named `CASE.ROLE` and each case's JSON metadata.
pub struct Reference {
    name: String,
    tensors: HashMap<String, HostTensor>,
    meta: HashMap<String, Value>,
}

/// One comparison of webgrad's values with PyTorch's.
#[derive(Clone, Debug)]
pub struct Check {
    /// Milliseconds the case took until this comparison (pipelines compiled on the way).
    pub ms: f64,
    /// `case.role`, e.g. `conv2d_groups2.grad_weight`.
    pub name: String,
    /// The largest |got - want| / (atol + rtol |want|): at most 1 passes.
    pub worst: f64,
    /// Whether every value is within the tolerance (and the shapes agree).
    pub ok: bool,
    /// What went wrong, if anything.
    pub detail: String,
}

impl Reference {
    /// Parses a reference file's bytes; `name` stands for it in messages.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Reference> {
        let (tensors, metadata) = load_bytes(bytes, name)?;
        // Cases are the metadata entries holding a JSON object with an `op` (other entries,
        // such as the LeNet file's notes, are text).
        let meta = metadata
            .into_iter()
            .filter_map(|(case, text)| {
                let v: Value = serde_json::from_str(&text).ok()?;
                v.get("op").is_some().then_some((case, v))
            })
            .collect();
        Ok(Reference {
            name: name.to_string(),
            tensors,
            meta,
        })
    }

    fn key(case: &str, role: &str) -> String {
        if role.is_empty() {
            case.to_string()
        } else {
            format!("{case}.{role}")
        }
    }

    fn host(&self, case: &str, role: &str) -> Result<&HostTensor> {
        let key = Reference::key(case, role);
        self.tensors
            .get(&key)
            .ok_or_else(|| Error::Io(format!("{}: no tensor {key}", self.name)))
    }

    fn has(&self, case: &str, role: &str) -> bool {
        self.tensors.contains_key(&Reference::key(case, role))
    }

    fn tensor(&self, dev: &Device, case: &str, role: &str) -> Result<Tensor> {
        let h = self.host(case, role)?;
        Tensor::from_slice(dev, &h.data, &h.shape)
    }

    fn leaf(&self, dev: &Device, case: &str, role: &str) -> Result<Tensor> {
        Ok(self.tensor(dev, case, role)?.requires_grad())
    }

    fn signed_classes(&self, case: &str, role: &str) -> Result<Vec<i64>> {
        Ok(self
            .host(case, role)?
            .data
            .iter()
            .map(|&v| v as i64)
            .collect())
    }

    fn classes(&self, case: &str, role: &str) -> Result<Vec<usize>> {
        Ok(self
            .host(case, role)?
            .data
            .iter()
            .map(|&v| v as usize)
            .collect())
    }

    /// The case names, sorted.
    pub fn cases(&self) -> Vec<String> {
        let mut cases: Vec<String> = self.meta.keys().cloned().collect();
        cases.sort();
        cases
    }

    /// Compares `got` with the tensor `case.role` within `atol + rtol |want|`.
    async fn compare(&self, got: &Tensor, case: &str, role: &str, tol: (f64, f64)) -> Check {
        let name = Reference::key(case, role);
        let fail = |detail: String| Check {
            ms: 0.0,
            name: name.clone(),
            worst: f64::INFINITY,
            ok: false,
            detail,
        };
        let want = match self.host(case, role) {
            Ok(w) => w,
            Err(e) => return fail(e.to_string()),
        };
        // A scalar is [] here and [1] in some reference files.
        let scalars = got.numel() == 1 && want.data.len() == 1;
        if got.shape() != want.shape.as_slice() && !scalars {
            return fail(format!(
                "shape {:?}, PyTorch's {:?}",
                got.shape(),
                want.shape
            ));
        }
        let got = match got.to_vec_async().await {
            Ok(v) => v,
            Err(e) => return fail(e.to_string()),
        };
        let (atol, rtol) = tol;
        let mut worst = 0.0f64;
        let mut at = 0;
        for (i, (&g, &w)) in got.iter().zip(&want.data).enumerate() {
            // NaN where PyTorch has NaN (a mean over no target), an infinity where it has the
            // same one: equal; so is any equal value (an exact check's 0 / 0 is no failure).
            let same = (g.is_nan() && w.is_nan()) || g == w;
            let ratio = match same {
                true => 0.0,
                false => (g as f64 - w as f64).abs() / (atol + rtol * (w as f64).abs()),
            };
            // NaN compares false: count it as the worst.
            if ratio.is_nan() || ratio > worst {
                worst = if ratio.is_nan() { f64::INFINITY } else { ratio };
                at = i;
            }
        }
        let ok = worst <= 1.0;
        let detail = if ok {
            String::new()
        } else {
            format!(
                "element {at}: {} against PyTorch's {}",
                got[at], want.data[at]
            )
        };
        Check {
            ms: 0.0,
            name,
            worst,
            ok,
            detail,
        }
    }
}

/// (atol, rtol) of the native tests.
const ELEMENTWISE: (f64, f64) = (1e-6, 1e-5);
const PRODUCT: (f64, f64) = (1e-5, 1e-5);
const CONV: (f64, f64) = (1e-5, 1e-4);
const CONV_PARAMS: (f64, f64) = (1e-4, 1e-4);
const LOSS_GRAD: (f64, f64) = (1e-7, 1e-5);
const REDUCE_GRAD: (f64, f64) = (1e-7, 1e-6);
const PAD: (f64, f64) = (1e-5, 1e-5);
/// Exact: max pooling's indices.
const EXACT: (f64, f64) = (0.0, 0.0);

fn pair(v: &Value) -> (usize, usize) {
    let n = |i: usize| v[i].as_u64().unwrap_or(0) as usize;
    (n(0), n(1))
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|d| d as usize)
                .collect()
        })
        .unwrap_or_default()
}

fn reduction(m: &Value) -> Result<Reduction> {
    match m["reduction"].as_str().unwrap_or("mean") {
        "mean" => Ok(Reduction::Mean),
        "sum" => Ok(Reduction::Sum),
        "none" => Ok(Reduction::None),
        other => Err(Error::Invalid(format!("unknown reduction {other}"))),
    }
}

/// Runs one case of `ops.safetensors`: the forward output, then the backward of
/// `sum(output * grad_output)`, each compared with PyTorch's.
pub async fn run_op_case(r: &Reference, dev: &Device, case: &str) -> Result<Vec<Check>> {
    let m = r.meta[case].clone();
    let op = m["op"].as_str().unwrap_or_default().to_string();
    // (inputs that get gradients, output, tolerance of the output, of the gradients)
    let (leaves, out, tol, grad_tol): (Vec<(&str, Tensor)>, Tensor, _, _) = match op.as_str() {
        "relu" | "sigmoid" | "tanh" | "exp" | "log" | "leaky_relu" | "elu" | "gelu" | "silu"
        | "softplus" | "hardtanh" | "clamp" => {
            let x = r.leaf(dev, case, "input")?;
            let f = |key: &str, default: f64| m[key].as_f64().unwrap_or(default) as f32;
            let y = match op.as_str() {
                "relu" => x.relu(),
                "sigmoid" => x.sigmoid(),
                "tanh" => x.tanh(),
                "exp" => x.exp(),
                "log" => x.log(),
                "leaky_relu" => x.leaky_relu(f("negative_slope", 0.01)),
                "elu" => x.elu(f("alpha", 1.0)),
                "gelu" => x.gelu(m["approximate"].as_str().unwrap_or("none").parse()?),
                "silu" => x.silu(),
                "softplus" => x.softplus(f("beta", 1.0), f("threshold", 20.0)),
                "hardtanh" => x.hardtanh(f("min_val", -1.0), f("max_val", 1.0)),
                _ => x.clamp(f("min", f64::NEG_INFINITY), f("max", f64::INFINITY)),
            }?;
            (vec![("input", x)], y, ELEMENTWISE, ELEMENTWISE)
        }
        "pad" => {
            let x = r.leaf(dev, case, "input")?;
            let mode = match m["mode"].as_str().unwrap_or("constant") {
                "constant" => PadMode::Constant,
                "reflect" => PadMode::Reflect,
                "replicate" => PadMode::Replicate,
                "circular" => PadMode::Circular,
                other => return Err(Error::Invalid(format!("{case}: pad mode {other:?}"))),
            };
            let value = m["value"].as_f64().unwrap_or(0.0) as f32;
            let y = x.pad(&usizes(&m["pad"]), mode, value)?;
            (vec![("input", x)], y, PAD, PAD)
        }
        "conv2d" if m.get("padding_mode").is_some() => {
            return padded_conv2d_case(r, dev, case, &m).await
        }
        "nll_loss" => {
            let x = r.leaf(dev, case, "input")?;
            let mut o = NllLossOptions::default()
                .ignore_index(m["ignore_index"].as_i64().unwrap_or(-100))
                .reduction(reduction(&m)?);
            if r.has(case, "weight") {
                o = o.weight(&r.tensor(dev, case, "weight")?);
            }
            let y = x.nll_loss_with(&r.signed_classes(case, "target")?, &o)?;
            (vec![("input", x)], y, ELEMENTWISE, ELEMENTWISE)
        }
        "layer_norm" | "group_norm" => {
            let x = r.leaf(dev, case, "input")?;
            let (w, b) = match r.has(case, "weight") {
                true => (
                    Some(r.leaf(dev, case, "weight")?),
                    Some(r.leaf(dev, case, "bias")?),
                ),
                false => (None, None),
            };
            let eps = m["eps"].as_f64().unwrap_or(1e-5) as f32;
            let y = if op == "layer_norm" {
                x.layer_norm(&usizes(&m["normalized_shape"]), w.as_ref(), b.as_ref(), eps)?
            } else {
                let groups = m["num_groups"].as_u64().unwrap_or(1) as usize;
                x.group_norm(groups, w.as_ref(), b.as_ref(), eps)?
            };
            // The native test's tolerances, looser where the inputs sit near 1000.
            let (atol, gatol) = match case.contains("offset") {
                true => (1e-4, 5e-4),
                false => (1e-5, 1e-4),
            };
            y.backward_with(&r.tensor(dev, case, "grad_output")?)?;
            let mut checks = vec![
                r.compare(&y, case, "output", (atol, 1e-4)).await,
                r.compare(&grad(&x)?, case, "grad_input", (gatol, 1e-4))
                    .await,
            ];
            if let (Some(w), Some(b)) = (w, b) {
                checks.push(
                    r.compare(&grad(&w)?, case, "grad_weight", (gatol, 1e-4))
                        .await,
                );
                checks.push(r.compare(&grad(&b)?, case, "grad_bias", CONV).await);
            }
            return Ok(checks);
        }
        "add" | "sub" | "mul" | "div" | "matmul" => {
            let a = r.leaf(dev, case, "a")?;
            let b = r.leaf(dev, case, "b")?;
            let (y, tol) = match op.as_str() {
                "add" => (a.add(&b)?, ELEMENTWISE),
                "sub" => (a.sub(&b)?, ELEMENTWISE),
                "mul" => (a.mul(&b)?, ELEMENTWISE),
                "div" => (a.div(&b)?, ELEMENTWISE),
                _ => (a.matmul(&b)?, PRODUCT),
            };
            (vec![("a", a), ("b", b)], y, tol, tol)
        }
        "linear" | "conv2d" => {
            let x = r.leaf(dev, case, "input")?;
            let w = r.leaf(dev, case, "weight")?;
            let b = match r.has(case, "bias") {
                true => Some(r.leaf(dev, case, "bias")?),
                false => None,
            };
            let (y, tol, param_tol) = if op == "linear" {
                (x.linear(&w, b.as_ref())?, PRODUCT, PRODUCT)
            } else {
                let p = Conv2dParams {
                    stride: pair(&m["stride"]),
                    padding: pair(&m["padding"]),
                    dilation: pair(&m["dilation"]),
                    groups: m["groups"].as_u64().unwrap_or(1) as usize,
                };
                (x.conv2d(&w, b.as_ref(), p)?, CONV, CONV_PARAMS)
            };
            y.backward_with(&r.tensor(dev, case, "grad_output")?)?;
            let mut checks = vec![
                r.compare(&y, case, "output", tol).await,
                r.compare(&grad(&x)?, case, "grad_input", tol).await,
                r.compare(&grad(&w)?, case, "grad_weight", param_tol).await,
            ];
            if let Some(b) = b {
                checks.push(r.compare(&grad(&b)?, case, "grad_bias", param_tol).await);
            }
            return Ok(checks);
        }
        "max_pool2d" | "avg_pool2d" => {
            let x = r.leaf(dev, case, "input")?;
            // ops.safetensors' cases name no dilation or ceil mode: PyTorch's defaults.
            let p = Pool2dParams {
                kernel: pair(&m["kernel_size"]),
                stride: pair(&m["stride"]),
                padding: pair(&m["padding"]),
                dilation: m.get("dilation").map_or((1, 1), pair),
                ceil_mode: m["ceil_mode"].as_bool().unwrap_or(false),
                count_include_pad: m["count_include_pad"].as_bool().unwrap_or(true),
            };
            let y = match op.as_str() {
                // pools.safetensors has max pooling's indices too.
                "max_pool2d" if r.has(case, "indices") => {
                    let (y, indices) = x.max_pool2d_with_indices(p)?;
                    y.backward_with(&r.tensor(dev, case, "grad_output")?)?;
                    return Ok(vec![
                        r.compare(&y, case, "output", ELEMENTWISE).await,
                        r.compare(&grad(&x)?, case, "grad_input", ELEMENTWISE).await,
                        r.compare(&indices, case, "indices", EXACT).await,
                    ]);
                }
                "max_pool2d" => x.max_pool2d(p),
                _ => x.avg_pool2d(p),
            }?;
            (vec![("input", x)], y, ELEMENTWISE, ELEMENTWISE)
        }
        "adaptive_avg_pool2d" => {
            let x = r.leaf(dev, case, "input")?;
            let y = x.adaptive_avg_pool2d(pair(&m["output_size"]))?;
            (vec![("input", x)], y, ELEMENTWISE, ELEMENTWISE)
        }
        "batch_norm2d" | "batch_norm" => return batch_norm_case(r, dev, case, &m).await,
        "softmax" | "log_softmax" => {
            let x = r.leaf(dev, case, "input")?;
            let dim = m["dim"].as_i64().unwrap_or(-1) as isize;
            let y = match op.as_str() {
                "softmax" => x.softmax(dim),
                _ => x.log_softmax(dim),
            }?;
            (vec![("input", x)], y, ELEMENTWISE, ELEMENTWISE)
        }
        // tensor_ops.safetensors' sums name a list of dims.
        "sum" if m["dim"].is_array() => return tensor_op_case(r, dev, case, &m).await,
        "cat" | "stack" | "narrow" | "index_select" | "gather" | "one_hot" | "where" | "amax"
        | "amin" | "min" => return tensor_op_case(r, dev, case, &m).await,
        "RMSprop" | "Adagrad" | "Adadelta" => return optimizer_case(r, dev, case, &m).await,
        "sum" | "mean" => {
            let x = r.leaf(dev, case, "input")?;
            let keepdim = m["keepdim"].as_bool().unwrap_or(false);
            let y = match (op.as_str(), m["dim"].as_i64()) {
                ("sum", Some(d)) => x.sum_dim(d as isize, keepdim),
                ("sum", None) => x.sum(),
                (_, Some(d)) => x.mean_dim(d as isize, keepdim),
                (_, None) => x.mean(),
            }?;
            let tol = if op == "sum" { PRODUCT } else { ELEMENTWISE };
            (vec![("input", x)], y, tol, REDUCE_GRAD)
        }
        // ops.safetensors' case has PyTorch's default options (the fused path); losses.safetensors'
        // name theirs.
        "cross_entropy" if m.get("ignore_index").is_none() => {
            let x = r.leaf(dev, case, "input")?;
            let y = x.cross_entropy(&r.classes(case, "target")?, reduction(&m)?)?;
            (vec![("input", x)], y, ELEMENTWISE, LOSS_GRAD)
        }
        "cross_entropy" => {
            let x = r.leaf(dev, case, "input")?;
            let mut o = CrossEntropyOptions::default()
                .ignore_index(m["ignore_index"].as_i64().unwrap_or(-100))
                .reduction(reduction(&m)?)
                .label_smoothing(m["label_smoothing"].as_f64().unwrap_or(0.0) as f32);
            if r.has(case, "weight") {
                o = o.weight(&r.tensor(dev, case, "weight")?);
            }
            let y = x.cross_entropy_with(&r.signed_classes(case, "target")?, &o)?;
            (vec![("input", x)], y, ELEMENTWISE, ELEMENTWISE)
        }
        "mse_loss" | "binary_cross_entropy_with_logits" => {
            let x = r.leaf(dev, case, "input")?;
            let t = r.leaf(dev, case, "target")?;
            let y = match op.as_str() {
                "mse_loss" => x.mse_loss(&t, reduction(&m)?),
                _ => x.binary_cross_entropy_with_logits(&t, reduction(&m)?),
            }?;
            (vec![("input", x), ("target", t)], y, ELEMENTWISE, LOSS_GRAD)
        }
        other => {
            return Err(Error::Invalid(format!(
                "{}: case {case} is of op {other:?}, which the page's runner does not know",
                r.name
            )))
        }
    };
    out.backward_with(&r.tensor(dev, case, "grad_output")?)?;
    let mut checks = vec![r.compare(&out, case, "output", tol).await];
    for (role, leaf) in leaves {
        let g = grad(&leaf)?;
        checks.push(r.compare(&g, case, &format!("grad_{role}"), grad_tol).await);
    }
    Ok(checks)
}

fn grad(t: &Tensor) -> Result<Tensor> {
    t.grad()
        .ok_or_else(|| Error::Autograd("the backward pass left no gradient".into()))
}

/// A `tensor_ops.safetensors` case (joining, slicing, indexing, multi-dim reductions), at
/// tests/tensor_ops.rs's tolerances: the output, the indices of `min`, and the inputs'
/// gradients where the case has an upstream gradient.
async fn tensor_op_case(r: &Reference, dev: &Device, case: &str, m: &Value) -> Result<Vec<Check>> {
    let op = m["op"].as_str().unwrap_or_default();
    let dim = m["dim"].as_i64().unwrap_or(0) as isize;
    let dims: Vec<isize> = m["dim"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_i64)
                .map(|d| d as isize)
                .collect()
        })
        .unwrap_or_default();
    let keepdim = m["keepdim"].as_bool().unwrap_or(false);
    let mut checks = Vec::new();
    let (leaves, out): (Vec<(&str, Tensor)>, Tensor) = match op {
        "cat" | "stack" => {
            let mut leaves = Vec::new();
            for role in ["a", "b", "c"].into_iter().filter(|x| r.has(case, x)) {
                leaves.push((role, r.leaf(dev, case, role)?));
            }
            let ts: Vec<&Tensor> = leaves.iter().map(|(_, t)| t).collect();
            let out = match op {
                "cat" => Tensor::cat(&ts, dim),
                _ => Tensor::stack(&ts, dim),
            }?;
            (leaves, out)
        }
        "where" => {
            let (a, b) = (r.leaf(dev, case, "input")?, r.leaf(dev, case, "other")?);
            let out = Tensor::where_(&r.tensor(dev, case, "condition")?, &a, &b)?;
            (vec![("input", a), ("other", b)], out)
        }
        "one_hot" => {
            let classes = m["num_classes"].as_u64().unwrap_or(0) as usize;
            (vec![], r.tensor(dev, case, "input")?.one_hot(classes)?)
        }
        _ => {
            let x = r.leaf(dev, case, "input")?;
            let out = match op {
                "narrow" => {
                    let n = |key: &str| m[key].as_u64().unwrap_or(0) as usize;
                    x.narrow(dim, n("start"), n("length"))?
                }
                "index_select" => x.index_select(dim, &r.tensor(dev, case, "index")?)?,
                "gather" => x.gather(dim, &r.tensor(dev, case, "index")?)?,
                "sum" => x.sum_dims(&dims, keepdim)?,
                "amax" => x.amax(&dims, keepdim)?,
                "amin" => x.amin(&dims, keepdim)?,
                _ => {
                    let (values, indices) = x.min_dim(dim, keepdim)?;
                    checks.push(r.compare(&indices, case, "indices", EXACT).await);
                    values
                }
            };
            (vec![("input", x)], out)
        }
    };
    checks.insert(0, r.compare(&out, case, "output", ELEMENTWISE).await);
    if r.has(case, "grad_output") {
        out.backward_with(&r.tensor(dev, case, "grad_output")?)?;
        for (role, leaf) in leaves {
            let g = grad(&leaf)?;
            checks.push(
                r.compare(&g, case, &format!("grad_{role}"), ELEMENTWISE)
                    .await,
            );
        }
    }
    Ok(checks)
}

/// An `optimizers.safetensors` case: the optimizer over the file's `init` parameters, 4 steps
/// on its gradients `grad1` .. `grad4`, the parameters after each compared (tests/optim.rs's
/// tolerance).
async fn optimizer_case(r: &Reference, dev: &Device, case: &str, m: &Value) -> Result<Vec<Check>> {
    let names = ["weight", "bias"];
    let f = |key: &str, default: f64| m[key].as_f64().unwrap_or(default) as f32;
    let op = m["op"].as_str().unwrap_or_default();
    let params = names
        .iter()
        .map(|n| r.leaf(dev, "init", n))
        .collect::<Result<Vec<_>>>()?;
    let mut opt: Box<dyn Optimizer> = match op {
        "RMSprop" => Box::new(
            RmsProp::new(params.clone(), f("lr", 0.01))?
                .with_alpha(f("alpha", 0.99))
                .with_eps(f("eps", 1e-8))
                .with_weight_decay(f("weight_decay", 0.0))
                .with_momentum(f("momentum", 0.0))
                .with_centered(m["centered"].as_bool().unwrap_or(false)),
        ),
        "Adagrad" => Box::new(
            Adagrad::new(params.clone(), f("lr", 0.01))?
                .with_lr_decay(f("lr_decay", 0.0))
                .with_weight_decay(f("weight_decay", 0.0))
                .with_initial_accumulator_value(f("initial_accumulator_value", 0.0))
                .with_eps(f("eps", 1e-10)),
        ),
        _ => Box::new(
            Adadelta::new(params.clone(), f("lr", 1.0))?
                .with_rho(f("rho", 0.9))
                .with_eps(f("eps", 1e-6))
                .with_weight_decay(f("weight_decay", 0.0)),
        ),
    };
    let mut checks = Vec::new();
    for k in 1..=4 {
        for (p, n) in params.iter().zip(names) {
            // The gradient PyTorch's step got: that of sum(p * g).
            p.zero_grad();
            p.mul(&r.tensor(dev, &format!("grad{k}"), n)?)?
                .sum()?
                .backward()?;
        }
        opt.step()?;
        for (p, n) in params.iter().zip(names) {
            checks.push(
                r.compare(p, case, &format!("step{k}.{n}"), ELEMENTWISE)
                    .await,
            );
        }
    }
    Ok(checks)
}

/// A `pad.safetensors` convolution: `nn::Conv2d` with a `padding_mode`, at tests/pad.rs's
/// tolerances.
async fn padded_conv2d_case(
    r: &Reference,
    dev: &Device,
    case: &str,
    m: &Value,
) -> Result<Vec<Check>> {
    let padding_mode = match m["padding_mode"].as_str().unwrap_or("zeros") {
        "zeros" => PaddingMode::Zeros,
        "reflect" => PaddingMode::Reflect,
        "replicate" => PaddingMode::Replicate,
        "circular" => PaddingMode::Circular,
        other => return Err(Error::Invalid(format!("{case}: padding_mode {other:?}"))),
    };
    let (x, w, b) = (
        r.leaf(dev, case, "input")?,
        r.leaf(dev, case, "weight")?,
        r.leaf(dev, case, "bias")?,
    );
    let conv = Conv2d {
        weight: w.clone(),
        bias: Some(b.clone()),
        params: Conv2dParams {
            padding: pair(&m["padding"]),
            stride: pair(&m["stride"]),
            ..Default::default()
        },
        padding_mode,
    };
    let y = conv.forward(&x)?;
    y.backward_with(&r.tensor(dev, case, "grad_output")?)?;
    let mut checks = vec![r.compare(&y, case, "output", CONV).await];
    for (role, t) in [("input", &x), ("weight", &w), ("bias", &b)] {
        let g = grad(t)?;
        checks.push(
            r.compare(&g, case, &format!("grad_{role}"), CONV_PARAMS)
                .await,
        );
    }
    Ok(checks)
}

async fn batch_norm_case(r: &Reference, dev: &Device, case: &str, m: &Value) -> Result<Vec<Check>> {
    let x = r.leaf(dev, case, "input")?;
    let w = r.leaf(dev, case, "weight")?;
    let b = r.leaf(dev, case, "bias")?;
    let c = x.shape()[1];
    let running_mean = Tensor::zeros(dev, &[c])?;
    let running_var = Tensor::ones(dev, &[c])?;
    let args = BatchNormArgs {
        running_mean: Some(&running_mean),
        running_var: Some(&running_var),
        weight: Some(&w),
        bias: Some(&b),
        training: m["training"].as_bool().unwrap_or(true),
        momentum: m["momentum"].as_f64().unwrap_or(0.1) as f32,
        eps: m["eps"].as_f64().unwrap_or(1e-5) as f32,
    };
    // batch_norm2d for [N, C, H, W]; batch_norm1d for [N, C] and [N, C, L].
    let y = match x.rank() {
        4 => x.batch_norm2d(args)?,
        _ => x.batch_norm1d(args)?,
    };
    y.backward_with(&r.tensor(dev, case, "grad_output")?)?;
    // The native tests' tolerances: batch_norm2d's, and tests/norm.rs's for batch_norm1d.
    let grads = if x.rank() == 4 { CONV } else { (1e-4, 1e-4) };
    Ok(vec![
        r.compare(&y, case, "output", CONV).await,
        r.compare(&running_mean, case, "running_mean_after", ELEMENTWISE)
            .await,
        r.compare(&running_var, case, "running_var_after", ELEMENTWISE)
            .await,
        r.compare(&grad(&x)?, case, "grad_input", grads).await,
        r.compare(&grad(&w)?, case, "grad_weight", grads).await,
        r.compare(&grad(&b)?, case, "grad_bias", CONV).await,
    ])
}

/// Every case of an op-case file (whose name contains `only`, if given); a case that fails to
/// run is one failed check.
pub async fn run_ops(r: &Reference, dev: &Device, only: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    for case in r.cases() {
        if only.is_some_and(|o| !case.contains(o)) {
            continue;
        }
        let start = web_time::Instant::now();
        match run_op_case(r, dev, &case).await {
            Ok(checks) => out.extend(checks.into_iter().map(|c| Check {
                ms: start.elapsed().as_secs_f64() * 1e3,
                ..c
            })),
            Err(e) => out.push(Check {
                ms: start.elapsed().as_secs_f64() * 1e3,
                name: case,
                worst: f64::INFINITY,
                ok: false,
                detail: e.to_string(),
            }),
        }
    }
    out
}

/// LeNet-5 with the reference's initial parameters.
fn lenet(r: &Reference, dev: &Device) -> Result<Sequential> {
    let model = LeNet5::build(dev, LeNetFlavour::Modern)?;
    for (name, p) in model.named_parameters() {
        p.write_from_slice(&r.host("init", &name)?.data)?;
    }
    Ok(model)
}

/// The LeNet-5 step of `lenet5_step.safetensors`: logits, loss, every parameter's gradient,
/// and the parameters after 3 SGD-momentum steps and after 3 Adam steps.
pub async fn run_lenet_step(r: &Reference, dev: &Device) -> Result<Vec<Check>> {
    let x = r.tensor(dev, "input", "")?;
    let t = r.classes("target", "")?;
    let model = lenet(r, dev)?;
    let logits = model.forward(&x)?;
    let loss = logits.cross_entropy(&t, Reduction::Mean)?;
    loss.backward()?;
    let mut checks = vec![
        r.compare(&logits, "logits", "", CONV).await,
        r.compare(&loss, "loss", "", ELEMENTWISE).await,
    ];
    for (name, p) in model.named_parameters() {
        checks.push(r.compare(&grad(&p)?, "grad", &name, (1e-6, 1e-4)).await);
    }
    for (label, adam) in [("sgd3", false), ("adam3", true)] {
        let model = lenet(r, dev)?;
        let mut opt: Box<dyn Optimizer> = if adam {
            Box::new(Adam::new(model.parameters(), 1e-3)?)
        } else {
            Box::new(Sgd::new(model.parameters(), 0.05)?.with_momentum(0.9))
        };
        for _ in 0..3 {
            opt.zero_grad();
            model
                .forward(&x)?
                .cross_entropy(&t, Reduction::Mean)?
                .backward()?;
            opt.step()?;
        }
        for (name, p) in model.named_parameters() {
            checks.push(r.compare(&p, label, &name, CONV).await);
        }
    }
    Ok(checks)
}
