// Losses computed per element (or per row) before the reduction, and their backward.
//
// - bce_logits (LOGITS): l = max(x, 0) - x t + log(1 + exp(-|x|)), the logistic loss written
//   so no exp overflows; dl/dx = sigmoid(x) - t, dl/dt = -x.
// - bce: l = -(t log p + (1 - t) log(1 - p)) with each log clamped at -100, as PyTorch;
//   dl/dp = (p - t) / max(p (1 - p), 1e-12), dl/dt = log(1 - p) - log(p) (clamped logs).
// - cross_entropy (the default options: no class weights, no label smoothing, every target a
//   class): one invocation per row i of [rows, classes] logits x and class target t_i:
//   l_i = log(sum_c exp(x_ic - m)) - (x_it - m) with m the row max (stable for |x| ~ 100);
//   the forward saves lse_i = m + log(sum) and the backward is
//   dx_ic = g_i (exp(x_ic - lse_i) - [c == t_i]), one invocation per element.
//   With a reduction (mean or sum, scale 1 / rows or 1), cross_entropy_reduced_forward computes
//   the rows' losses and their scaled sum in one dispatch (one workgroup: invocation j takes
//   rows j, j + 64, ..., then invocation 0 adds the 64 partial sums in order), and the
//   backward (REDUCED) reads the scalar upstream gradient times the scale for every row: the
//   reduction's own kernels and their dispatches (each has a fixed cost) are not needed.
// - class_loss: nll_loss, and cross_entropy with options, as PyTorch (below, before its
//   kernels); the host reduces its per-row losses.
// Indexing: one invocation per element e (per row for the forwards of cross_entropy and
// class_loss), grid folded.

struct Params {
    len: u32,
    classes: u32,
    // cross_entropy with a reduction: 1 / rows (mean) or 1 (sum).
    scale: f32,
    // class_loss: the target value that marks an ignored row (ignore_index, as f32), the
    // label smoothing, and what a row whose target is not a class gets: NaN, from the host
    // (a NaN constant is not valid WGSL).
    ignore: f32,
    smoothing: f32,
    invalid: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Bindings: x (the input: probabilities, logits), t (the targets), then
//   forwards                 3 l (the losses), cross_entropy: 4 lse, 5 unit_gx (SAVE_GRAD)
//   bce backward             3 g (upstream, per element), 4 gx, 5 gt
//   cross_entropy_backward   3 g (per row, or with REDUCED one for all), 4 gx, 5 saved lse
//   class_loss_forward       3 l, 4 stats (lse_i, a_i), 5 row_w, 6 class_w (WEIGHTED)
//   class_loss_backward      3 g (per row), 4 gx, 5 saved stats, 6 class_w (WEIGHTED)
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> l: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;
@group(0) @binding(5) var<storage, read_write> unit_gx: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;
@group(0) @binding(5) var<storage, read_write> gt: array<f32>;
@group(0) @binding(5) var<storage, read> saved_lse: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<vec2<f32>>;
@group(0) @binding(5) var<storage, read_write> row_w: array<f32>;
@group(0) @binding(5) var<storage, read> saved_stats: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read> class_w: array<f32>;

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

// The max of the logits row starting at `base`.
fn row_max(base: u32) -> f32 {
    var m = x[base];
    for (var c = 1u; c < p.classes; c++) {
        m = max(m, x[base + c]);
    }
    return m;
}

// The loss of row i, saving its log-sum-exp.
fn row_loss(i: u32) -> f32 {
    let base = i * p.classes;
    let m = row_max(base);
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

// ---- class_loss: nll_loss, and cross_entropy with options ----
//
// Row i of [rows, classes] x has target t_i (a class index as f32, from the host or a device
// tensor), class weights w (WEIGHTED; all 1 otherwise), label smoothing eps (SMOOTHING) and
// C classes. As PyTorch:
//   cross_entropy  l_i = (1 - eps) w_t (lse_i - x_it) + (eps / C) sum_c w_c (lse_i - x_ic)
//   nll_loss (NLL: x holds log-probabilities, eps = 0)   l_i = -w_t x_it
// A row whose target is p.ignore (ignore_index) gets l_i = 0, weight 0 and gradient 0. A
// target that is not a class (negative, >= C, fractional or NaN) gets p.invalid (NaN) as its
// loss, weight and gradient: a bad device target makes the loss NaN, never silently wrong.
// The forward writes row_w_i = w_t (0 if ignored; the mean divides the losses' sum by the sum
// of these, as PyTorch) and saves stats_i = (lse_i, a_i) with
//   a_i = (1 - eps) w_t + (eps / C) sum_c w_c,
// the softmax's coefficient in the gradient
//   dl_i/dx_ik = a_i softmax(x_i)_k - (1 - eps) w_t [k == t_i] - (eps / C) w_k
// (nll_loss: dl_i/dx_ik = -w_t [k == t_i]).
override NLL: bool = false;

// Row i's target class, or one of these.
const IGNORED: i32 = -1;
const NOT_A_CLASS: i32 = -2;

fn target_class(i: u32) -> i32 {
    let v = t[i];
    if (v == p.ignore) {
        return IGNORED;
    }
    if (v >= 0.0 && v < f32(p.classes) && floor(v) == v) {
        return i32(v);
    }
    return NOT_A_CLASS;
}

// Class weights (WEIGHTED) and label smoothing (SMOOTHING): pipeline constants, so that a
// kernel without them compiles to none of their code.
override WEIGHTED: bool = false;
override SMOOTHING: bool = false;

fn class_weight(c: u32) -> f32 {
    if (WEIGHTED) {
        return class_w[c];
    }
    return 1.0;
}

// Row i's (l_i, lse_i, a_i) for its target class c.
fn class_row_loss(i: u32, c: u32) -> vec3<f32> {
    let base = i * p.classes;
    let wt = class_weight(c);
    if (NLL) {
        return vec3<f32>(-wt * x[base + c], 0.0, 0.0);
    }
    let m = row_max(base);
    // Over the row: exp(x_k - m), and for the smoothing w_k and w_k (x_k - m), so that
    // sum_k w_k (lse - x_k) = w_sum ls - wz: for positive weights, two sums of terms of one
    // sign, so nothing cancels.
    var s = 0.0;
    var w_sum = 0.0;
    var wz = 0.0;
    for (var k = 0u; k < p.classes; k++) {
        let z = x[base + k] - m;
        s += exp(z);
        if (SMOOTHING) {
            w_sum += class_weight(k);
            wz += class_weight(k) * z;
        }
    }
    let ls = log(s);
    var loss = wt * (ls - (x[base + c] - m));
    var a = wt;
    if (SMOOTHING) {
        let eps_c = p.smoothing / f32(p.classes);
        loss = (1.0 - p.smoothing) * loss + eps_c * (w_sum * ls - wz);
        a = (1.0 - p.smoothing) * wt + eps_c * w_sum;
    }
    return vec3<f32>(loss, m + ls, a);
}

@compute @workgroup_size(64)
fn class_loss_forward(inv: Invocation) {
    let i = flat_index(inv, 64u);
    if (i >= p.len) {
        return;
    }
    let c = target_class(i);
    var out = vec3<f32>(0.0);
    var wt = 0.0;
    if (c == NOT_A_CLASS) {
        out = vec3<f32>(p.invalid);
        wt = p.invalid;
    } else if (c != IGNORED) {
        out = class_row_loss(i, u32(c));
        wt = class_weight(u32(c));
    }
    l[i] = out.x;
    stats[i] = out.yz;
    row_w[i] = wt;
}

@compute @workgroup_size(256)
fn class_loss_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e >= p.len * p.classes) {
        return;
    }
    let i = e / p.classes;
    let k = e % p.classes;
    let c = target_class(i);
    // An ignored row's gradient is 0 even where the upstream one is not finite (the mean over
    // no counted rows), as PyTorch.
    var d = 0.0;
    if (c == NOT_A_CLASS) {
        d = p.invalid;
    } else if (c != IGNORED) {
        let wt = class_weight(u32(c));
        let hit = select(0.0, 1.0, k == u32(c));
        if (NLL) {
            d = -wt * hit;
        } else {
            let s = saved_stats[i];
            let eps_c = p.smoothing / f32(p.classes);
            d = s.y * exp(x[e] - s.x) - (1.0 - p.smoothing) * wt * hit - eps_c * class_weight(k);
        }
        d *= g[i];
    }
    gx[e] = d;
}
