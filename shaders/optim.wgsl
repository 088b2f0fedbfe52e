// Optimizer updates, applied to a parameter in place on the GPU (PyTorch's formulas).
//
// sgd_step:  g = grad + weight_decay * p
//            buf = g on the first step, else momentum * buf + (1 - dampening) * g
//            g = g + momentum * buf (Nesterov) or buf (momentum > 0)
//            p -= lr * g
// adam_step: AdamW first decays p *= 1 - lr * weight_decay; Adam adds weight_decay * p to g.
//            m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//            p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), bc_i = 1 - b_i^t (from the host)
// Indexing: the *4 kernels handle vec4s, four per invocation as the prelude's `quad_index`
// lays them out. The scalar kernels take the last len % 4 elements, one per invocation from
// `start`. (Several small parameters are updated as one: the host copies them side by side,
// src/optim.rs.)

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
    start: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> buf: array<f32>;
@group(0) @binding(4) var<storage, read_write> buf2: array<f32>;
@group(0) @binding(1) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> buf4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> buf24: array<vec4<f32>>;

// The updates, on 4 elements at a time (the scalar kernels use the first lane). `buf` is read
// only after the first step, and only with momentum.
struct Sgd {
    param: vec4<f32>,
    buf: vec4<f32>,
}

fn sgd(grad: vec4<f32>, param: vec4<f32>, buf: vec4<f32>) -> Sgd {
    var g = grad + p.weight_decay * param;
    var b = buf;
    if (p.momentum != 0.0) {
        b = g;
        if (p.first_step == 0u) {
            b = p.momentum * buf + (1.0 - p.dampening) * g;
        }
        g = select(b, g + p.momentum * b, p.nesterov == 1u);
    }
    return Sgd(param - p.lr * g, b);
}

struct Adam {
    param: vec4<f32>,
    m: vec4<f32>,
    v: vec4<f32>,
}

fn adam(grad: vec4<f32>, param: vec4<f32>, m_old: vec4<f32>, v_old: vec4<f32>) -> Adam {
    var w = param;
    var g = grad;
    if (p.decoupled == 1u) {
        w *= 1.0 - p.lr * p.weight_decay;
    } else {
        g += p.weight_decay * w;
    }
    let m = p.beta1 * m_old + (1.0 - p.beta1) * g;
    let v = p.beta2 * v_old + (1.0 - p.beta2) * g * g;
    let denom = sqrt(v) / sqrt(p.bias_correction2) + p.eps;
    return Adam(w - p.lr / p.bias_correction1 * m / denom, m, v);
}

// sgd_step and adam_step read and write the elements' 4 operands (gradient, parameter and the
// states: momentum buffer, or Adam's m and v) as f32 (from `start`), the *4 kernels as vec4s.
@compute @workgroup_size(256)
fn sgd_step(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        let r = sgd(vec4<f32>(grad[i]), vec4<f32>(param[i]), vec4<f32>(buf[i]));
        if (p.momentum != 0.0) {
            buf[i] = r.buf.x;
        }
        param[i] = r.param.x;
    }
}

@compute @workgroup_size(256)
fn adam_step(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        let r = adam(vec4<f32>(grad[i]), vec4<f32>(param[i]), vec4<f32>(buf[i]), vec4<f32>(buf2[i]));
        buf[i] = r.m.x;
        buf2[i] = r.v.x;
        param[i] = r.param.x;
    }
}

@compute @workgroup_size(256)
fn sgd_step4(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            let r = sgd(grad4[i], param4[i], buf4[i]);
            if (p.momentum != 0.0) {
                buf4[i] = r.buf;
            }
            param4[i] = r.param;
        }
    }
}

@compute @workgroup_size(256)
fn adam_step4(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            let r = adam(grad4[i], param4[i], buf4[i], buf24[i]);
            buf4[i] = r.m;
            buf24[i] = r.v;
            param4[i] = r.param;
        }
    }
}
