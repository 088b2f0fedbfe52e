// The prelude: helpers any webgrad shader may use, written once here and prepended to every
// shader module when it is compiled (src/kernel.rs, `Shader::full_source`).
//
// Kernels combine conditions with `&` and `|` rather than `&&` and `||` where both sides are
// plain comparisons: Tint lowers the short-circuit forms to branches, and SwiftShader's
// compile time grows steeply with branches in unrolled code (conv_relu_pool_forward with
// 7-tap kernel rows: 211 s with `&&` in its bounds checks, 0.5 s with `&`).
// A choice between forms of unrolled code is written where the code is, on override constants
// and literals (`if (A_K) { ... }`), not in a helper that takes the choice as an argument:
// SwiftShader inlines every call without folding constant arguments, so such a helper compiles
// every form at every call site (matmul_vec4's variants: 190-320 ms each with such helpers,
// 165-235 ms without).

// Bitwise, because `v != v` may be folded away by fast-math shader compilers, and GL drivers
// may rewrite !(v <= 0) as v > 0.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn is_nan4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
}

// ReLU as PyTorch computes it: NaN stays NaN (WGSL's max(NaN, 0) may give either).
fn relu(v: f32) -> f32 {
    return select(0.0, v, (v > 0.0) | is_nan(v));
}

// relu for 4 values. (NaN from the bits: GL drivers may rewrite !(v <= 0) as v > 0.)
fn relu4(v: vec4<f32>) -> vec4<f32> {
    return select(vec4<f32>(0.0), v, (v > vec4<f32>(0.0)) | is_nan4(v));
}

// (a / b, a % b) for per-invocation values below 2^24, through an f32 reciprocal plus integer
// fix-ups: llvmpipe has no vector integer division (it runs 8 scalar divides per operation).
fn divmod(a: u32, b: u32) -> vec2<u32> {
    var q = u32(f32(a) / f32(b));
    var r = i32(a) - i32(q * b);
    if (r < 0) { q -= 1u; r += i32(b); }
    if (r < 0) { q -= 1u; r += i32(b); }
    if (r >= i32(b)) { q += 1u; r -= i32(b); }
    if (r >= i32(b)) { q += 1u; r -= i32(b); }
    return vec2<u32>(q, u32(r));
}

// Tensors held in textures (src/backend/cpu/texels.rs) are TEXEL_ROW texels wide: vec4 i of
// a buffer is the texel at (i % TEXEL_ROW, i / TEXEL_ROW).
const TEXEL_ROW: u32 = 1024u;

// The coordinates of vec4 i in such a texture.
fn texel_at(i: u32) -> vec2<u32> {
    return vec2<u32>(i % TEXEL_ROW, i / TEXEL_ROW);
}

// Vec4 i and float e of a tensor held in such a texture.
fn texel_quad(t: texture_2d<f32>, i: u32) -> vec4<f32> {
    return textureLoad(t, texel_at(i), 0);
}

fn texel_float(t: texture_2d<f32>, e: u32) -> f32 {
    return texel_quad(t, e / 4u)[e % 4u];
}

// ---- Grid indexing and shared math (the elementwise, reduction, loss and optimizer shaders) ----

// A compute entry point's position in the grid, taken as one parameter: `fn k(inv: Invocation)`.
// Kernels with barriers take these builtins one by one instead: WGSL's uniformity analysis (as
// Chromium's Tint runs it) counts a struct holding `lid` as non-uniform as a whole.
struct Invocation {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
}

// The workgroup's index in the 1-D grid the host asked for (kernel.rs folds a grid past
// 65,535 workgroups into 2-D: x fastest).
fn workgroup_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The invocation's index in the 1-D grid, for `size` invocations per workgroup.
fn flat_index(inv: Invocation, size: u32) -> u32 {
    return workgroup_index(inv.wid, inv.nwg) * size + inv.lid;
}

// The vec4 kernels of 256 invocations (unary, optim): workgroup w covers vec4s w * 1024 ..
// + 1024, invocation l the vec4s w * 1024 + l + 256 j for j = 0..3, so that each of the four
// loads of a workgroup reads 256 neighbouring vec4s.
fn quad_index(inv: Invocation, j: u32) -> u32 {
    return workgroup_index(inv.wid, inv.nwg) * 1024u + inv.lid + j * 256u;
}

// The logistic function, stable for large |x|: never evaluates exp of a large positive number.
fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// The sum of one value per invocation of a 256-invocation workgroup, by a tree in workgroup
// memory; every invocation gets the total. It holds barriers: call it from every invocation
// (uniform control flow). A pipeline whose entry point never calls it allocates nothing for
// `tree_sums` (only the globals an entry point uses reach its compiled module).
var<workgroup> tree_sums: array<f32, 256>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    tree_sums[lid] = v;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step = step / 2u) {
        if (lid < step) {
            tree_sums[lid] += tree_sums[lid + step];
        }
        workgroupBarrier();
    }
    return tree_sums[0];
}
