// Optimizer updates, applied to a parameter in place on the GPU (PyTorch's formulas, in
// PyTorch's order). Every optimizer adds weight_decay * p to the gradient g first (L2), but
// AdamW, which decays p itself.
//
// sgd:      buf = g on the first step, else momentum * buf + (1 - dampening) * g
//           g = g + momentum * buf (Nesterov) or buf (momentum > 0)
//           p -= lr * g
// adam:     AdamW first decays p *= 1 - lr * weight_decay.
//           m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//           p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), bc_i = 1 - b_i^t (from the host)
// rmsprop:  sq = alpha sq + (1 - alpha) g^2;  centered: ga = alpha ga + (1 - alpha) g
//           avg = sqrt(sq - ga^2 (centered) or sq) + eps
//           momentum > 0: buf = momentum buf + g / avg, p -= lr * buf; else p -= lr * g / avg
// adagrad:  sum += g^2 (sum starts at initial_accumulator on the first step)
//           p -= clr * g / (sqrt(sum) + eps), clr = lr / (1 + (t - 1) lr_decay) (from the host)
// adadelta: sq = rho sq + (1 - rho) g^2
//           delta = sqrt(acc + eps) / sqrt(sq + eps) * g;  acc = rho acc + (1 - rho) delta^2
//           p -= lr * delta
//
// One pipeline per optimizer: the override OPTIMIZER picks the update (codes of `Kernel` in
// src/optim.rs) and STATES which state bindings the optimizer uses (bit k: binding 3 + k;
// the host binds its dummy buffer to the others, which are never touched).
//
// Indexing: optim_step4 handles vec4s, four per invocation as the prelude's `quad_index` lays
// them out. optim_step takes the last len % 4 elements, one per invocation from `start`, as
// the first lane of a vec4. (Several small parameters are updated as one: the host copies
// them side by side, src/optim.rs.)

override OPTIMIZER: u32;
override STATES: u32;

const SGD: u32 = 0u;
const ADAM: u32 = 1u;
const RMSPROP: u32 = 2u;
const ADAGRAD: u32 = 3u;
const ADADELTA: u32 = 4u;

struct Params {
    len: u32,
    start: u32,
    lr: f32,
    weight_decay: f32,
    eps: f32,
    first_step: u32,
    momentum: f32,
    dampening: f32,
    nesterov: u32,
    beta1: f32,
    beta2: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    decoupled: u32,
    alpha: f32,
    centered: u32,
    initial_accumulator: f32,
    rho: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> state0: array<f32>;
@group(0) @binding(4) var<storage, read_write> state1: array<f32>;
@group(0) @binding(5) var<storage, read_write> state2: array<f32>;
@group(0) @binding(1) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> state04: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> state14: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> state24: array<vec4<f32>>;
// optim_step_texels and optim_step4_texels (Policy::optimizer_texel_reads) read the gradient,
// the parameter and the states from texture copies (bindings 6-10, in that order) and write
// the buffers: on llvmpipe a storage load runs lane by lane, a texel fetch is one vector
// gather. (Separate entry points, so that the others bind no textures: with five placeholder
// textures bound, optim_step4's time on LeNet-5's parameters grew 10x on lavapipe.)
@group(0) @binding(6) var grad_texels: texture_2d<f32>;
@group(0) @binding(7) var param_texels: texture_2d<f32>;
@group(0) @binding(8) var state0_texels: texture_2d<f32>;
@group(0) @binding(9) var state1_texels: texture_2d<f32>;
@group(0) @binding(10) var state2_texels: texture_2d<f32>;

// What an update reads and writes, 4 elements at a time: the parameter and up to three
// states (sgd: s0 the momentum buffer; adam: s0 m, s1 v; rmsprop: s0 the square average,
// s1 the momentum buffer, s2 the gradient average; adagrad: s0 the sum; adadelta: s0 the
// square average, s1 the squared-delta average). Separate members rather than an array:
// llvmpipe keeps dynamically indexed private arrays in memory.
struct Operands {
    param: vec4<f32>,
    s0: vec4<f32>,
    s1: vec4<f32>,
    s2: vec4<f32>,
}

// Whether the pipeline's optimizer uses state k.
fn uses(k: u32) -> bool {
    return (STATES & (1u << k)) != 0u;
}

// The gradient with the L2 penalty.
fn l2(grad: vec4<f32>, param: vec4<f32>) -> vec4<f32> {
    return grad + p.weight_decay * param;
}

// An exponential moving average's next value.
fn ema(avg: vec4<f32>, v: vec4<f32>, decay: f32) -> vec4<f32> {
    return decay * avg + (1.0 - decay) * v;
}

// The updates. A state an optimizer does not use (momentum off, not centered) is left as read.
fn sgd(grad: vec4<f32>, x: Operands) -> Operands {
    var r = x;
    var g = l2(grad, x.param);
    if (p.momentum != 0.0) {
        r.s0 = g;
        if (p.first_step == 0u) {
            r.s0 = p.momentum * x.s0 + (1.0 - p.dampening) * g;
        }
        g = select(r.s0, g + p.momentum * r.s0, p.nesterov == 1u);
    }
    r.param = x.param - p.lr * g;
    return r;
}

fn adam(grad: vec4<f32>, x: Operands) -> Operands {
    var r = x;
    var g = grad;
    if (p.decoupled == 1u) {
        r.param *= 1.0 - p.lr * p.weight_decay;
    } else {
        g = l2(grad, x.param);
    }
    r.s0 = ema(x.s0, g, p.beta1);
    r.s1 = ema(x.s1, g * g, p.beta2);
    let denom = sqrt(r.s1) / sqrt(p.bias_correction2) + p.eps;
    r.param -= p.lr / p.bias_correction1 * r.s0 / denom;
    return r;
}

fn rmsprop(grad: vec4<f32>, x: Operands) -> Operands {
    var r = x;
    let g = l2(grad, x.param);
    r.s0 = ema(x.s0, g * g, p.alpha);
    var avg = r.s0;
    if (p.centered == 1u) {
        r.s2 = ema(x.s2, g, p.alpha);
        avg -= r.s2 * r.s2;
    }
    var step = g / (sqrt(avg) + p.eps);
    if (p.momentum > 0.0) {
        r.s1 = p.momentum * x.s1 + step;
        step = r.s1;
    }
    r.param = x.param - p.lr * step;
    return r;
}

fn adagrad(grad: vec4<f32>, x: Operands) -> Operands {
    var r = x;
    let g = l2(grad, x.param);
    let sum = select(x.s0, vec4<f32>(p.initial_accumulator), p.first_step == 1u);
    r.s0 = sum + g * g;
    r.param = x.param - p.lr * (g / (sqrt(r.s0) + p.eps));
    return r;
}

fn adadelta(grad: vec4<f32>, x: Operands) -> Operands {
    var r = x;
    let g = l2(grad, x.param);
    r.s0 = ema(x.s0, g * g, p.rho);
    let delta = sqrt(x.s1 + p.eps) / sqrt(r.s0 + p.eps) * g;
    r.s1 = ema(x.s1, delta * delta, p.rho);
    r.param = x.param - p.lr * delta;
    return r;
}

// The pipeline's update (OPTIMIZER is a constant once the pipeline is compiled).
fn update(grad: vec4<f32>, x: Operands) -> Operands {
    switch (OPTIMIZER) {
        case SGD: {
            return sgd(grad, x);
        }
        case ADAM: {
            return adam(grad, x);
        }
        case RMSPROP: {
            return rmsprop(grad, x);
        }
        case ADAGRAD: {
            return adagrad(grad, x);
        }
        case ADADELTA: {
            return adadelta(grad, x);
        }
        default: {
            return x;
        }
    }
}

// Element i's operands (in the first lane) and their write-back; the states it does not use
// stay unread and unwritten.
fn load(i: u32) -> Operands {
    var x = Operands(vec4<f32>(param[i]), vec4<f32>(), vec4<f32>(), vec4<f32>());
    if (uses(0u)) { x.s0 = vec4<f32>(state0[i]); }
    if (uses(1u)) { x.s1 = vec4<f32>(state1[i]); }
    if (uses(2u)) { x.s2 = vec4<f32>(state2[i]); }
    return x;
}

fn store(i: u32, r: Operands) {
    param[i] = r.param.x;
    if (uses(0u)) { state0[i] = r.s0.x; }
    if (uses(1u)) { state1[i] = r.s1.x; }
    if (uses(2u)) { state2[i] = r.s2.x; }
}

// vec4 i's operands and their write-back.
fn load4(i: u32) -> Operands {
    var x = Operands(param4[i], vec4<f32>(), vec4<f32>(), vec4<f32>());
    if (uses(0u)) { x.s0 = state04[i]; }
    if (uses(1u)) { x.s1 = state14[i]; }
    if (uses(2u)) { x.s2 = state24[i]; }
    return x;
}

fn store4(i: u32, r: Operands) {
    param4[i] = r.param;
    if (uses(0u)) { state04[i] = r.s0; }
    if (uses(1u)) { state14[i] = r.s1; }
    if (uses(2u)) { state24[i] = r.s2; }
}

@compute @workgroup_size(256)
fn optim_step(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        store(i, update(vec4<f32>(grad[i]), load(i)));
    }
}

@compute @workgroup_size(256)
fn optim_step4(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            store4(i, update(grad4[i], load4(i)));
        }
    }
}

// Element i's and vec4 i's operands from the textures.
fn load_texels(i: u32) -> Operands {
    var x = Operands(vec4<f32>(texel_float(param_texels, i)), vec4<f32>(), vec4<f32>(),
                     vec4<f32>());
    if (uses(0u)) { x.s0 = vec4<f32>(texel_float(state0_texels, i)); }
    if (uses(1u)) { x.s1 = vec4<f32>(texel_float(state1_texels, i)); }
    if (uses(2u)) { x.s2 = vec4<f32>(texel_float(state2_texels, i)); }
    return x;
}

fn load4_texels(i: u32) -> Operands {
    var x = Operands(texel_quad(param_texels, i), vec4<f32>(), vec4<f32>(), vec4<f32>());
    if (uses(0u)) { x.s0 = texel_quad(state0_texels, i); }
    if (uses(1u)) { x.s1 = texel_quad(state1_texels, i); }
    if (uses(2u)) { x.s2 = texel_quad(state2_texels, i); }
    return x;
}

@compute @workgroup_size(256)
fn optim_step_texels(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        store(i, update(vec4<f32>(texel_float(grad_texels, i)), load_texels(i)));
    }
}

@compute @workgroup_size(256)
fn optim_step4_texels(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            store4(i, update(texel_quad(grad_texels, i), load4_texels(i)));
        }
    }
}
