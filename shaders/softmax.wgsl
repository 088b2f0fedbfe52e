// softmax and log_softmax over one dimension, numerically stable (the row max is subtracted
// before exp), and their backward.
//
// Indexing: the input is viewed as [outer, n, inner] with the softmax over n; one invocation
// per row j = (o, i) walks the row at (o * n + k) * inner + i, k = 0..n.
// Backward, with y the saved output and g the upstream gradient:
//   softmax:      gx = y * (g - sum_k g*y)
//   log_softmax:  gx = g - exp(y) * sum_k g

struct Params {
    outer: u32,
    n: u32,
    inner: u32,
    log: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Forward: x, y. Backward: y (saved output), g (upstream gradient), gx.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> sy: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

// Element k of row j.
fn row_at(j: u32, k: u32) -> u32 {
    return ((j / p.inner) * p.n + k) * p.inner + j % p.inner;
}

@compute @workgroup_size(64)
fn softmax_forward(inv: Invocation) {
    let j = flat_index(inv, 64u);
    if (j >= p.outer * p.inner) {
        return;
    }
    let base = row_at(j, 0u);
    var m = x[base];
    for (var k = 1u; k < p.n; k++) {
        m = max(m, x[base + k * p.inner]);
    }
    var s = 0.0;
    for (var k = 0u; k < p.n; k++) {
        s += exp(x[base + k * p.inner] - m);
    }
    if (p.log == 1u) {
        // (x - m) - log(s), not x - (m + log(s)): the latter loses the digits of log(s)
        // when |m| is large.
        let ls = log(s);
        for (var k = 0u; k < p.n; k++) {
            y[base + k * p.inner] = (x[base + k * p.inner] - m) - ls;
        }
    } else {
        let inv = 1.0 / s;
        for (var k = 0u; k < p.n; k++) {
            y[base + k * p.inner] = exp(x[base + k * p.inner] - m) * inv;
        }
    }
}

@compute @workgroup_size(64)
fn softmax_backward(inv: Invocation) {
    let j = flat_index(inv, 64u);
    if (j < p.outer * p.inner) {
        let first = row_at(j, 0u);
        let end = row_at(j, p.n);
        var s = 0.0;
        if (p.log == 1u) {
            for (var e = first; e < end; e += p.inner) {
                s += g[e];
            }
            for (var e = first; e < end; e += p.inner) {
                gx[e] = g[e] - exp(sy[e]) * s;
            }
        } else {
            for (var e = first; e < end; e += p.inner) {
                s += g[e] * sy[e];
            }
            for (var e = first; e < end; e += p.inner) {
                gx[e] = sy[e] * (g[e] - s);
            }
        }
    }
}
