// Elementwise binary ops with NumPy broadcasting: out = a (op) b, and their backward.
// The override constant OP (codes of `BinaryOp` in src/ops/binary.rs: 0 add, 1 sub, 2 mul,
// 3 div) and, in the backward, SIDE select the formula when the pipeline is compiled.
//
// Indexing (broadcast forms): shapes are padded on the left to `rank` dims. The output is
// contiguous; `a_strides`/`b_strides` give each input's element for an output multi-index,
// with stride 0 on broadcast dims. The backward is a gather: one invocation per element of the
// input whose gradient it computes (the "target", SIDE 0 = a, 1 = b), summing over the output
// positions that element was broadcast to (the dims where `t_shape` is 1 and the output is
// not), so it is deterministic and needs no atomics. With OP add and SIDE 0 it sums g down to
// t_shape and reads neither a nor b: that is also `sum_to`, the backward of `expand`.

override OP: u32;
override SIDE: u32 = 0u;

// Shapes and strides are 8 entries packed in two vec4s (uniform-buffer arrays need 16-byte
// elements): entry d is v[d >> 2][d & 3], read in place (a helper taking the array by value
// would copy it into a private array on every call).
struct Params {
    out_shape: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
    t_shape: array<vec4<u32>, 2>,
    len: u32,
    rank: u32,
    red_count: u32,
    // binary_same's first element: binary_same4 covers those before it.
    start: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Forward: a, b, out. Backward: a, b, g (upstream gradient, output-shaped), gt (the target's
// gradient).
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> gt: array<f32>;

// The pipeline's OP (and SIDE) are read in place rather than passed in: SwiftShader inlines
// calls without folding constant arguments, so a switch on an argument compiles every case at
// every call site (prelude.wgsl).
fn apply(a: f32, b: f32) -> f32 {
    switch OP {
        case 0u: { return a + b; }
        case 1u: { return a - b; }
        case 2u: { return a * b; }
        default: { return a / b; }
    }
}

// d out / d (a or b) times the upstream gradient g.
fn local_grad(g: f32, a: f32, b: f32) -> f32 {
    switch OP {
        case 0u: { return g; }
        case 1u: { return select(g, -g, SIDE == 1u); }
        case 2u: { return select(g * b, g * a, SIDE == 1u); }
        default: { return select(g / b, -g * a / (b * b), SIDE == 1u); }
    }
}

// Same shapes: no index arithmetic. binary_same4 takes 4 vec4s per invocation (quad_index)
// over the first len - len % 4 elements, binary_same one element per invocation from `start`.
// With TEXELS (Policy::texel_reads) both read a and b from texture copies (bindings 4 and 5)
// instead of the buffers: on llvmpipe a storage load runs lane by lane, a texel fetch is one
// vector gather.
override TEXELS: bool = false;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(4) var a_texels: texture_2d<f32>;
@group(0) @binding(5) var b_texels: texture_2d<f32>;

fn a_quad(i: u32) -> vec4<f32> {
    if (TEXELS) {
        return texel_quad(a_texels, i);
    }
    return a4[i];
}

fn b_quad(i: u32) -> vec4<f32> {
    if (TEXELS) {
        return texel_quad(b_texels, i);
    }
    return b4[i];
}

@compute @workgroup_size(256)
fn binary_same4(inv: Invocation) {
    for (var j = 0u; j < 4u; j++) {
        let i = quad_index(inv, j);
        if (i < p.len / 4u) {
            let x = a_quad(i);
            let y = b_quad(i);
            out4[i] = vec4<f32>(apply(x.x, y.x), apply(x.y, y.y), apply(x.z, y.z),
                                apply(x.w, y.w));
        }
    }
}

@compute @workgroup_size(256)
fn binary_same(inv: Invocation) {
    let i = p.start + flat_index(inv, 256u);
    if (i < p.len) {
        var x: f32;
        var y: f32;
        if (TEXELS) {
            x = texel_float(a_texels, i);
            y = texel_float(b_texels, i);
        } else {
            x = a[i];
            y = b[i];
        }
        out[i] = apply(x, y);
    }
}

@compute @workgroup_size(256)
fn binary_backward_same(inv: Invocation) {
    let i = flat_index(inv, 256u);
    if (i < p.len) {
        gt[i] = local_grad(g[i], a[i], b[i]);
    }
}

@compute @workgroup_size(256)
fn binary_broadcast(inv: Invocation) {
    let i = flat_index(inv, 256u);
    if (i >= p.len) {
        return;
    }
    var rest = i;
    var ao = 0u;
    var bo = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let idx = rest % p.out_shape[d >> 2u][d & 3];
        rest = rest / p.out_shape[d >> 2u][d & 3];
        ao += idx * p.a_strides[d >> 2u][d & 3];
        bo += idx * p.b_strides[d >> 2u][d & 3];
    }
    out[i] = apply(a[ao], b[bo]);
}

@compute @workgroup_size(256)
fn binary_backward_broadcast(inv: Invocation) {
    let i = flat_index(inv, 256u);
    if (i >= p.len) {
        return;
    }
    // The target element's multi-index (dims where the target is broadcast stay 0 here).
    var idx: array<u32, 8>;
    var rest = i;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        idx[d] = rest % p.t_shape[d >> 2u][d & 3];
        rest = rest / p.t_shape[d >> 2u][d & 3];
    }
    var acc = 0.0;
    for (var r = 0u; r < p.red_count; r++) {
        // Spread r over the broadcast dims, then locate g, a and b.
        var rr = r;
        var o = 0u;
        var ao = 0u;
        var bo = 0u;
        var stride = 1u;
        for (var d = i32(p.rank) - 1; d >= 0; d--) {
            var k = idx[d];
            if (p.t_shape[d >> 2u][d & 3] == 1u && p.out_shape[d >> 2u][d & 3] != 1u) {
                k = rr % p.out_shape[d >> 2u][d & 3];
                rr = rr / p.out_shape[d >> 2u][d & 3];
            }
            o += k * stride;
            stride *= p.out_shape[d >> 2u][d & 3];
            ao += k * p.a_strides[d >> 2u][d & 3];
            bo += k * p.b_strides[d >> 2u][d & 3];
        }
        acc += local_grad(g[o], a[ao], b[bo]);
    }
    gt[i] = acc;
}
