// Losses computed per element (or per row) before the reduction, and their backward.
//
// - bce_logits: l = max(x, 0) - x t + log(1 + exp(-|x|)), the logistic loss written so no
//   exp overflows; dl/dx = sigmoid(x) - t, dl/dt = -x.
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

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid;
}

fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn clamped_log(v: f32) -> f32 {
    return max(log(v), -100.0);
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> l: array<f32>;

@compute @workgroup_size(256)
fn bce_logits_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len) {
        return;
    }
    let v = x[e];
    l[e] = max(v, 0.0) - v * t[e] + log(1.0 + exp(-abs(v)));
}

@compute @workgroup_size(256)
fn bce_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len) {
        return;
    }
    l[e] = -(t[e] * clamped_log(x[e]) + (1.0 - t[e]) * clamped_log(1.0 - x[e]));
}

// Backward bindings: x, t, g (upstream, per element), gx, gt.
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;
@group(0) @binding(5) var<storage, read_write> gt: array<f32>;

@compute @workgroup_size(256)
fn bce_logits_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len) {
        return;
    }
    gx[e] = g[e] * (sigmoid(x[e]) - t[e]);
    gt[e] = -g[e] * x[e];
}

@compute @workgroup_size(256)
fn bce_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len) {
        return;
    }
    let v = x[e];
    gx[e] = g[e] * (v - t[e]) / max(v * (1.0 - v), 1e-12);
    gt[e] = g[e] * (clamped_log(1.0 - v) - clamped_log(v));
}

// cross_entropy_forward: l (per row loss) and lse (per row log-sum-exp) outputs.
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;

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

@compute @workgroup_size(64)
fn cross_entropy_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (i >= p.len) {
        return;
    }
    l[i] = row_loss(i);
}

var<workgroup> partial_loss: array<f32, 64>;

// With SAVE_GRAD (training), the forward also writes the gradient for an upstream gradient of
// 1 (the seed of backward() on the loss itself): scale * (softmax - onehot), which the
// backward then returns without a dispatch of its own.
override SAVE_GRAD: bool = false;
@group(0) @binding(5) var<storage, read_write> unit_gx: array<f32>;

// l[0] = scale * sum of the rows' losses (one workgroup of 64).
@compute @workgroup_size(64)
fn cross_entropy_reduced_forward(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.len; i += 64u) {
        acc += row_loss(i);
        if (SAVE_GRAD) {
            let base = i * p.classes;
            let label = u32(t[i]);
            for (var c = 0u; c < p.classes; c++) {
                let onehot = select(0.0, 1.0, c == label);
                unit_gx[base + c] = p.scale * (exp(x[base + c] - lse[i]) - onehot);
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

// Backward bindings: x, t, g (one per row, or with REDUCED one for all), saved lse, gx.
override REDUCED: bool = false;
@group(0) @binding(3) var<storage, read> row_g: array<f32>;
@group(0) @binding(4) var<storage, read> saved_lse: array<f32>;
@group(0) @binding(5) var<storage, read_write> ce_gx: array<f32>;

@compute @workgroup_size(256)
fn cross_entropy_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len * p.classes) {
        return;
    }
    let i = e / p.classes;
    let c = e % p.classes;
    let onehot = select(0.0, 1.0, u32(t[i]) == c);
    var gi: f32;
    if (REDUCED) {
        gi = row_g[0] * p.scale;
    } else {
        gi = row_g[i];
    }
    ce_gx[e] = gi * (exp(x[e] - saved_lse[i]) - onehot);
}
