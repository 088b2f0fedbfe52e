// Optimizer updates, applied to a parameter in place on the GPU (PyTorch's formulas).
//
// sgd_step:  g = grad + weight_decay * p
//            buf = g on the first step, else momentum * buf + (1 - dampening) * g
//            g = g + momentum * buf (Nesterov) or buf (momentum > 0)
//            p -= lr * g
// adam_step: AdamW first decays p *= 1 - lr * weight_decay; Adam adds weight_decay * p to g.
//            m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//            p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), bc_i = 1 - b_i^t (from the host)
// Indexing: one invocation per parameter element, grid folded into 2-D.

struct Params {
    len: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: u32,
    first_step: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    decoupled: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
@group(0) @binding(4) var<storage, read_write> buf2: array<f32>;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn sgd_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    var g = grad[i] + p.weight_decay * param[i];
    if (p.momentum != 0.0) {
        var b = g;
        if (p.first_step == 0u) {
            b = p.momentum * buf[i] + (1.0 - p.dampening) * g;
        }
        buf[i] = b;
        g = select(b, g + p.momentum * b, p.nesterov == 1u);
    }
    param[i] -= p.lr * g;
}

@compute @workgroup_size(256)
fn adam_step(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = linear_index(wid, nwg, lid);
    if (i >= p.len) {
        return;
    }
    var w = param[i];
    var g = grad[i];
    if (p.decoupled == 1u) {
        w *= 1.0 - p.lr * p.weight_decay;
    } else {
        g += p.weight_decay * w;
    }
    let m = p.beta1 * buf[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * buf2[i] + (1.0 - p.beta2) * g * g;
    buf[i] = m;
    buf2[i] = v;
    let denom = sqrt(v) / sqrt(p.bias_correction2) + p.eps;
    param[i] = w - p.lr / p.bias_correction1 * m / denom;
}
