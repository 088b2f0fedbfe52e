// Elementwise unary ops, y = f(x), and their backward, gx = g * f'(x) (some use y instead).
// The override constant OP selects the function (codes match `UnaryOp` in src/ops/unary.rs),
// so each op is its own compiled pipeline; `a` and `b` are the op's parameters (powf's exponent,
// the scalar arithmetic ops' constant, leaky_relu's slope, elu's alpha, softplus's beta and
// threshold, clamp's min and max: the `UnaryOp::row` of each).
//
// Indexing: the *4 kernels read and write vec4s (on llvmpipe a vec4 load costs far less than 4
// scalar ones), four per invocation as the prelude's `quad_index` lays them out. The scalar
// kernels, one invocation per element from `start`, take the last len % 4 elements (or
// everything when the host prefers).

override OP: u32;

struct Params {
    len: u32,
    start: u32,
    // relu_backward_sum_rows: the columns of its [len, cols] operands.
    cols: u32,
    a: f32,
    b: f32,
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

// The op codes (`const NEG`, `const RELU`, ...) and the functions `forward(x, a, b)` and
// `derivative(x, y, a, b)`, switches on the pipeline's OP, are generated from the op table in
// src/ops/unary.rs, one row per op with its forward and derivative expressions side by side,
// and appended to this file.

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

// The standard normal CDF Phi(x) = erfc(-x / sqrt(2)) / 2 (WGSL has no erf), with erfc(z) for
// z >= 0 by Numerical Recipes' Chebyshev fit (relative error below 1.2e-7 in exact arithmetic):
// relative, not absolute, precision keeps gelu's x Phi(x) exact deep into the negative tail.
fn normal_cdf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * abs(x) * 0.70710678);
    let poly = 1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807
        + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))));
    let half_erfc = 0.5 * t * exp(-0.5 * x * x - 1.26551223 + t * poly);
    return select(1.0 - half_erfc, half_erfc, x < 0.0);
}

// gelu's tanh approximation x (1 + tanh(u)) / 2, u = sqrt(2 / pi) (x + 0.044715 x^3), is
// x sigmoid(2u): the same value, without the cancellation in 1 + tanh(u) where tanh rounds to -1.
fn gelu_tanh_2u(x: f32) -> f32 {
    return 1.5957691216 * x * (1.0 + 0.044715 * x * x);
}

fn gelu_tanh_derivative(x: f32) -> f32 {
    let s = sigmoid(gelu_tanh_2u(x));
    return s * (1.0 + x * (1.0 - s) * 1.5957691216 * (1.0 + 0.134145 * x * x));
}

// log(1 + u) for u in [0, 1] as 2 atanh(s), s = u / (2 + u) <= 1/3, by its series to s^15
// (relative error below 1e-8): log(w) near w = 1 may be off by 2^-21 absolute on Vulkan, which
// would swamp a small log(1 + u).
fn log1p_unit(u: f32) -> f32 {
    let s = u / (2.0 + u);
    let q = s * s;
    let series = 1.0 + q * (1.0 / 3.0 + q * (1.0 / 5.0 + q * (1.0 / 7.0 + q * (1.0 / 9.0
        + q * (1.0 / 11.0 + q * (1.0 / 13.0 + q / 15.0))))));
    return 2.0 * s * series;
}

// softplus(beta x) / beta, and x where beta x passes the threshold (as PyTorch), with
// softplus(z) = max(z, 0) + log(1 + e^-|z|): no overflow, and e^z where z is far below 0.
fn softplus(x: f32, beta: f32, threshold: f32) -> f32 {
    let z = beta * x;
    return select((max(z, 0.0) + log1p_unit(exp(-abs(z)))) / beta, x, z > threshold);
}

// min(max(x, lo), hi) as PyTorch's clamp: hi wins where lo > hi (WGSL's clamp may return the
// median instead), and NaN stays NaN (WGSL's min and max may drop it).
fn clamp_nan(x: f32, lo: f32, hi: f32) -> f32 {
    return select(min(max(x, lo), hi), x, is_nan(x));
}

// forward and derivative on four elements.
fn forward4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(forward(v.x, p.a, p.b), forward(v.y, p.a, p.b), forward(v.z, p.a, p.b),
        forward(v.w, p.a, p.b));
}

fn derivative4(u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(
        derivative(u.x, v.x, p.a, p.b),
        derivative(u.y, v.y, p.a, p.b),
        derivative(u.z, v.z, p.a, p.b),
        derivative(u.w, v.w, p.a, p.b),
    );
}

// With TEXELS (Policy::texel_reads) these four kernels read their operands from texture
// copies instead of the buffers: forward x at binding 3, backward x, y and g at bindings 5-7
// (on llvmpipe a storage load runs lane by lane, a texel fetch is one vector gather). The
// slots left unread hold placeholders.
override TEXELS: bool = false;
@group(0) @binding(3) var x_texels: texture_2d<f32>;
@group(0) @binding(5) var bx_texels: texture_2d<f32>;
@group(0) @binding(6) var by_texels: texture_2d<f32>;
@group(0) @binding(7) var g_texels: texture_2d<f32>;

// The operands' elements and vec4s, from wherever TEXELS says.
fn x_at(i: u32) -> f32 {
    if (TEXELS) { return texel_float(x_texels, i); }
    return x[i];
}

fn x_quad(i: u32) -> vec4<f32> {
    if (TEXELS) { return texel_quad(x_texels, i); }
    return x4[i];
}

// The backward's x, y and g at element (or vec4) i.
struct Backward {
    x: f32,
    y: f32,
    g: f32,
}

struct Backward4 {
    x: vec4<f32>,
    y: vec4<f32>,
    g: vec4<f32>,
}

fn backward_at(i: u32) -> Backward {
    if (TEXELS) {
        return Backward(texel_float(bx_texels, i), texel_float(by_texels, i), texel_float(g_texels, i));
    }
    return Backward(bx[i], by[i], g[i]);
}

fn backward_quad(i: u32) -> Backward4 {
    if (TEXELS) {
        return Backward4(texel_quad(bx_texels, i), texel_quad(by_texels, i), texel_quad(g_texels, i));
    }
    return Backward4(bx4[i], by4[i], g4[i]);
}

@compute @workgroup_size(256)
fn unary_forward(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        y[i] = forward(x_at(i), p.a, p.b);
    }
}

@compute @workgroup_size(256)
fn unary_backward(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        let o = backward_at(i);
        gx[i] = o.g * derivative(o.x, o.y, p.a, p.b);
    }
}

@compute @workgroup_size(256)
fn unary_forward4(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            y4[i] = forward4(x_quad(i));
        }
    }
}

@compute @workgroup_size(256)
fn unary_backward4(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            let o = backward_quad(i);
            gx4[i] = o.g * derivative4(o.x, o.y);
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
        let v = g[i] * derivative(bx[i], by[i], p.a, p.b);
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
            let v = g4[i] * derivative4(bx4[i], by4[i]);
            gx4[i] = v;
            acc += v;
        }
        for (var j = 0u; j < 4u; j++) {
            col_sums[c4 * 4u + j] = acc[j];
        }
    }
}
