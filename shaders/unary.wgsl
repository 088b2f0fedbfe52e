// Elementwise unary ops, y = f(x), and their backward, gx = g * f'(x) (some use y instead).
// The override constant OP selects the function (codes match `UnaryOp` in src/ops/unary.rs),
// so each op is its own compiled pipeline; `scalar` is the constant of powf and of the scalar
// arithmetic ops.
//
// Indexing: the *4 kernels read and write vec4s (on llvmpipe a vec4 load costs far less than 4
// scalar ones), four per invocation as the prelude's `quad_index` lays them out. The scalar
// kernels, one invocation per element from `start`, take the last len % 4 elements (or
// everything when the host prefers).

override OP: u32;

struct Params {
    len: u32,
    scalar: f32,
    start: u32,
    // relu_backward_sum_rows: the columns of its [len, cols] operands.
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Forward bindings: x (input), y (output); backward: x, y, g (upstream gradient), gx (input
// gradient), and relu_backward_sum_rows's col_sums. Each as f32s and as vec4s.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> by: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> gx: array<f32>;
@group(0) @binding(1) var<storage, read> bx4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> by4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> gx4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> col_sums: array<f32>;

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

// forward and derivative on four elements.
fn forward4(v: vec4<f32>) -> vec4<f32> {
    let s = p.scalar;
    return vec4<f32>(forward(OP, v.x, s), forward(OP, v.y, s), forward(OP, v.z, s), forward(OP, v.w, s));
}

fn derivative4(a: vec4<f32>, b: vec4<f32>, s: f32) -> vec4<f32> {
    return vec4<f32>(
        derivative(OP, a.x, b.x, s),
        derivative(OP, a.y, b.y, s),
        derivative(OP, a.z, b.z, s),
        derivative(OP, a.w, b.w, s),
    );
}

@compute @workgroup_size(256)
fn unary_forward(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        y[i] = forward(OP, x[i], p.scalar);
    }
}

@compute @workgroup_size(256)
fn unary_backward(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        gx[i] = g[i] * derivative(OP, bx[i], by[i], p.scalar);
    }
}

@compute @workgroup_size(256)
fn unary_forward4(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            y4[i] = forward4(x4[i]);
        }
    }
}

@compute @workgroup_size(256)
fn unary_backward4(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            gx4[i] = g4[i] * derivative4(bx4[i], by4[i], p.scalar);
        }
    }
}

// relu_backward_sum_rows: the start of a Linear + ReLU layer's backward in one dispatch instead
// of two: for the layer's output y and its gradient g, both [len, cols], gx = g * relu'(y) (as
// unary_backward with OP = RELU, y bound as both x and y) and col_sums[c] = the sum of gx[:, c]
// over the rows in order (the bias gradient, added as sum_dim(0) adds it). One invocation per
// column: lanes read neighbouring columns of a row.
@compute @workgroup_size(64)
fn relu_backward_sum_rows(inv: Invocation) {
    let c = flat_index(inv, 64u);
    if (c >= p.cols) {
        return;
    }
    var acc = 0.0;
    for (var r = 0u; r < p.len; r++) {
        let i = r * p.cols + c;
        let v = g[i] * derivative(OP, bx[i], by[i], 0.0);
        gx[i] = v;
        acc += v;
    }
    col_sums[c] = acc;
}

// relu_backward_sum_rows when cols is a multiple of 4: one invocation per 4 columns, with vec4
// loads and stores (llvmpipe pays per load instruction, not per float), in workgroups of 16 so
// that a layer's few column quads still spread over the adapter's threads.
@compute @workgroup_size(16)
fn relu_backward_sum_rows4(inv: Invocation) {
    let quads = p.cols / 4u;
    let c4 = flat_index(inv, 16u);
    if (c4 < quads) {
        var acc = vec4<f32>(0.0);
        for (var i = c4; i < p.len * quads; i += quads) {
            let v = g4[i] * derivative4(bx4[i], by4[i], 0.0);
            gx4[i] = v;
            acc += v;
        }
        for (var j = 0u; j < 4u; j++) {
            col_sums[c4 * 4u + j] = acc[j];
        }
    }
}
