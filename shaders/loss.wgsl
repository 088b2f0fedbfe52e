// Losses computed per element (or per row) before the reduction, and their backward.
//
// - bce_logits (LOGITS): l = max(x, 0) - x t + log(1 + exp(-|x|)), the logistic loss written
//   so no exp overflows; dl/dx = sigmoid(x) - t, dl/dt = -x.
// - bce: l = -(t log p + (1 - t) log(1 - p)) with each log clamped at -100, as PyTorch;
//   dl/dp = (p - t) / max(p (1 - p), 1e-12), dl/dt = log(1 - p) - log(p) (clamped logs).
// - cross_entropy: one invocation per row i of [rows, classes] logits x and class target t_i:
//   l_i = log(sum_c exp(x_ic - m)) - (x_it - m) with m the row max (stable for |x| ~ 100);
//   the forward saves lse_i = m + log(sum) and the backward is
//   dx_ic = g_i (exp(x_ic - lse_i) - [c == t_i]), one invocation per element.
//   With a reduction (mean or sum, scale 1 / rows or 1), cross_entropy_reduced_forward computes
//   the rows' losses and their scaled sum in one dispatch (one workgroup: invocation j takes
//   rows j, j + 64, ..., then invocation 0 adds the 64 partial sums in order), and the
//   backward (REDUCED) reads the scalar upstream gradient times the scale for every row: the
//   reduction's own kernels and their dispatches (each has a fixed cost) are not needed.
// Indexing: one invocation per element e (per row for cross_entropy's forward), grid folded.

struct Params {
    len: u32,
    classes: u32,
    // cross_entropy with a reduction: 1 / rows (mean) or 1 (sum).
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Bindings: x (the input: probabilities, logits), t (the targets), then
//   forwards                 3 l (the losses), cross_entropy: 4 lse, 5 unit_gx (SAVE_GRAD)
//   bce backward             3 g (upstream, per element), 4 gx, 5 gt
//   cross_entropy_backward   3 g (per row, or with REDUCED one for all), 4 gx, 5 saved lse
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> l: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<storage, read_write> unit_gx: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;
@group(0) @binding(5) var<storage, read_write> gt: array<f32>;
@group(0) @binding(5) var<storage, read> saved_lse: array<f32>;

// The binary cross-entropies, each loss beside its gradients (d/dx, d/dt).
override LOGITS: bool = false;

fn clamped_log(v: f32) -> f32 {
    return max(log(v), -100.0);
}

fn bce_loss(v: f32, t: f32) -> f32 {
    if (LOGITS) {
        return max(v, 0.0) - v * t + log(1.0 + exp(-abs(v)));
    }
    return -(t * clamped_log(v) + (1.0 - t) * clamped_log(1.0 - v));
}

fn bce_grads(v: f32, t: f32) -> vec2<f32> {
    if (LOGITS) {
        return vec2<f32>(sigmoid(v) - t, -v);
    }
    return vec2<f32>((v - t) / max(v * (1.0 - v), 1e-12), clamped_log(1.0 - v) - clamped_log(v));
}

@compute @workgroup_size(256)
fn bce_forward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        l[e] = bce_loss(x[e], t[e]);
    }
}

@compute @workgroup_size(256)
fn bce_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        let d = g[e] * bce_grads(x[e], t[e]);
        gx[e] = d.x;
        gt[e] = d.y;
    }
}

// The loss of row i, saving its log-sum-exp.
fn row_loss(i: u32) -> f32 {
    let base = i * p.classes;
    var m = x[base];
    for (var c = 1u; c < p.classes; c++) {
        m = max(m, x[base + c]);
    }
    var s = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        s += exp(x[base + c] - m);
    }
    let ls = log(s);
    lse[i] = m + ls;
    return ls - (x[base + u32(t[i])] - m);
}

// d l_i / d x_ic at element e = i * classes + c, for class c, t_i = label and lse_i:
// softmax(x_i)_c - [c == t_i].
fn ce_grad(e: u32, c: u32, label: u32, row_lse: f32) -> f32 {
    return exp(x[e] - row_lse) - select(0.0, 1.0, c == label);
}

@compute @workgroup_size(64)
fn cross_entropy_forward(inv: Invocation) {
    let i = flat_index(inv, 64u);
    if (i < p.len) {
        l[i] = row_loss(i);
    }
}

var<workgroup> partial_loss: array<f32, 64>;

// With SAVE_GRAD (training), the forward also writes the gradient for an upstream gradient of
// 1 (the seed of backward() on the loss itself): scale * (softmax - onehot), which the
// backward then returns without a dispatch of its own.
override SAVE_GRAD: bool = false;

// l[0] = scale * sum of the rows' losses (one workgroup of 64).
@compute @workgroup_size(64)
fn cross_entropy_reduced_forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.len; i += 64u) {
        acc += row_loss(i);
        if (SAVE_GRAD) {
            let base = i * p.classes;
            let label = u32(t[i]);
            let row_lse = lse[i];
            for (var c = 0u; c < p.classes; c++) {
                unit_gx[base + c] = p.scale * ce_grad(base + c, c, label, row_lse);
            }
        }
    }
    partial_loss[lid] = acc;
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var j = 0u; j < 64u; j++) {
            total += partial_loss[j];
        }
        l[0] = total * p.scale;
    }
}

override REDUCED: bool = false;

@compute @workgroup_size(256)
fn cross_entropy_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len * p.classes) {
        let i = e / p.classes;
        let gi = select(g[i], g[0] * p.scale, REDUCED);
        gx[e] = gi * ce_grad(e, e % p.classes, u32(t[i]), saved_lse[i]);
    }
}
