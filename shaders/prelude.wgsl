// The prelude: helpers any webgrad shader may use, written once here and prepended to every
// shader module when it is compiled (src/kernel.rs, `Shader::full_source`).

// Bitwise, because `v != v` may be folded away by fast-math shader compilers, and GL drivers
// may rewrite !(v <= 0) as v > 0.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// ReLU as PyTorch computes it: NaN stays NaN (WGSL's max(NaN, 0) may give either).
fn relu(v: f32) -> f32 {
    return select(0.0, v, (v > 0.0) | is_nan(v));
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

// The builtins that number an entry point's invocations: `fn kernel(id: Invocation)`.
struct Invocation {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
}

// The invocation's index in a grid of workgroups of `size` invocations, which the host folds
// into 2-D past 65,535 workgroups (src/kernel.rs).
fn invocation_index(id: Invocation, size: u32) -> u32 {
    return (id.wid.x + id.wid.y * id.nwg.x) * size + id.lid;
}
