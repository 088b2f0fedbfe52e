// softmax and log_softmax over one dimension, numerically stable (the row max is subtracted
// before exp), and their backward.
//
// Indexing: the input is viewed as [outer, n, inner] with the softmax over n; one invocation
// per row (o, i) walks the row at (o * n + k) * inner + i, k = 0..n.
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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn row_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 64u + lid;
}

@compute @workgroup_size(64)
fn softmax_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = row_index(wid, nwg, lid);
    if (j >= p.outer * p.inner) {
        return;
    }
    let base = (j / p.inner) * p.n * p.inner + j % p.inner;
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

// Backward bindings: y (saved output), g (upstream gradient), gx.
@group(0) @binding(1) var<storage, read> sy: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(64)
fn softmax_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = row_index(wid, nwg, lid);
    if (j >= p.outer * p.inner) {
        return;
    }
    let base = (j / p.inner) * p.n * p.inner + j % p.inner;
    var s = 0.0;
    if (p.log == 1u) {
        for (var k = 0u; k < p.n; k++) {
            s += g[base + k * p.inner];
        }
        for (var k = 0u; k < p.n; k++) {
            let e = base + k * p.inner;
            gx[e] = g[e] - exp(sy[e]) * s;
        }
    } else {
        for (var k = 0u; k < p.n; k++) {
            let e = base + k * p.inner;
            s += g[e] * sy[e];
        }
        for (var k = 0u; k < p.n; k++) {
            let e = base + k * p.inner;
            gx[e] = sy[e] * (g[e] - s);
        }
    }
}
