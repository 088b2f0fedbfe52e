// Elementwise unary ops, y = f(x), and their backward, gx = g * f'(x) (some use y instead).
// The override constant OP selects the function (codes match `UnaryOp` in src/ops/unary.rs),
// so each op is its own compiled pipeline; `scalar` is the constant of powf and of the scalar
// arithmetic ops.
//
// Indexing: the workgroup index is wid.x + wid.y * num_workgroups.x (the host folds large grids
// into 2-D). The *4 kernels read and write vec4s (on llvmpipe a vec4 load costs far less than 4
// scalar ones): workgroup t covers vec4s t * 1024 .. + 1024, invocation l the vec4s
// t * 1024 + l + 256 j for j = 0..3. The scalar kernels, one invocation per element from
// `start`, take the last len % 4 elements (or everything when the host prefers).

override OP: u32;

struct Params {
    len: u32,
    scalar: f32,
    start: u32,
    // relu_backward_sum_rows: the columns of its [len, cols] operands.
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// The op codes (`const NEG`, `const RELU`, ...) and the functions `forward(op, x, s)` and
// `derivative(op, x, y, s)` are generated from the op table in src/ops/unary.rs, one row per op
// with its forward and derivative expressions side by side, and appended to this file.

// x^s that, like PyTorch, is defined for negative x when s is an integer.
fn signed_pow(x: f32, s: f32) -> f32 {
    if (s == 0.0) {
        return 1.0;
    }
    if (x < 0.0 && fract(s) == 0.0) {
        let r = pow(-x, s);
        return select(r, -r, fract(s * 0.5) != 0.0);
    }
    return pow(x, s);
}

fn sigmoid(x: f32) -> f32 {
    // Stable for large |x|: never evaluates exp of a large positive number.
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn unary_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = p.start + (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.len) {
        return;
    }
    y[i] = forward(OP, x[i], p.scalar);
}

fn forward4(v: vec4<f32>) -> vec4<f32> {
    let s = p.scalar;
    return vec4<f32>(forward(OP, v.x, s), forward(OP, v.y, s), forward(OP, v.z, s), forward(OP, v.w, s));
}

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn unary_forward4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let first = (wid.x + wid.y * nwg.x) * 1024u + lid;
    let quads = p.len / 4u;
    for (var j = 0u; j < 4u; j++) {
        let i = first + j * 256u;
        if (i < quads) {
            y4[i] = forward4(x4[i]);
        }
    }
}

// Backward bindings: x (input), y (output), g (upstream gradient), gx (input gradient).
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> by: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(256)
fn unary_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = p.start + (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i >= p.len) {
        return;
    }
    gx[i] = g[i] * derivative(OP, bx[i], by[i], p.scalar);
}

@group(0) @binding(1) var<storage, read> bx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> by4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> gx4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn unary_backward4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let first = (wid.x + wid.y * nwg.x) * 1024u + lid;
    let quads = p.len / 4u;
    let s = p.scalar;
    for (var j = 0u; j < 4u; j++) {
        let i = first + j * 256u;
        if (i < quads) {
            let a = bx4[i];
            let b = by4[i];
            gx4[i] = g4[i] * vec4<f32>(
                derivative(OP, a.x, b.x, s),
                derivative(OP, a.y, b.y, s),
                derivative(OP, a.z, b.z, s),
                derivative(OP, a.w, b.w, s),
            );
        }
    }
}

// relu_backward_sum_rows: the start of a Linear + ReLU layer's backward in one dispatch instead
// of two: for the layer's output y and its gradient g, both [len, cols], gx = g * relu'(y) (as
// unary_backward with OP = RELU, y bound as both x and y) and col_sums[c] = the sum of gx[:, c]
// over the rows in order (the bias gradient, added as sum_dim(0) adds it). One invocation per
// column: lanes read neighbouring columns of a row.
@group(0) @binding(5) var<storage, read_write> col_sums: array<f32>;

@compute @workgroup_size(64)
fn relu_backward_sum_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = (wid.x + wid.y * nwg.x) * 64u + lid;
    if (c >= p.cols) {
        return;
    }
    var acc = 0.0;
    for (var r = 0u; r < p.len; r++) {
        let i = r * p.cols + c;
        let v = g[i] * derivative(RELU, bx[i], by[i], 0.0);
        gx[i] = v;
        acc += v;
    }
    col_sums[c] = acc;
}

// relu_backward_sum_rows when cols is a multiple of 4: one invocation per 4 columns, with vec4
// loads and stores (llvmpipe pays per load instruction, not per float), in workgroups of 16 so
// that a layer's few column quads still spread over the adapter's threads.
@compute @workgroup_size(16)
fn relu_backward_sum_rows4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c4 = (wid.x + wid.y * nwg.x) * 16u + lid;
    let quads = p.cols / 4u;
    if (c4 >= quads) {
        return;
    }
    var acc = vec4<f32>(0.0);
    for (var r = 0u; r < p.len; r++) {
        let i = r * quads + c4;
        let y = bx4[i];
        let v = g4[i] * vec4<f32>(
            derivative(OP, y.x, y.x, 0.0),
            derivative(OP, y.y, y.y, 0.0),
            derivative(OP, y.z, y.z, 0.0),
            derivative(OP, y.w, y.w, 0.0),
        );
        gx4[i] = v;
        acc += v;
    }
    for (var j = 0u; j < 4u; j++) {
        col_sums[c4 * 4u + j] = acc[j];
    }
}
