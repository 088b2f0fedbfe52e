// What the CPU adapters' register-block product kernels share (cpu/matmul_blocked.wgsl and
// cpu/matmul_subgroup.wgsl start with matmul_common.wgsl, then this file): the addresses of a
// block's rows and columns, operands read as vec4 texels, and the stores of a block's rows.
// Each invocation keeps its block of C in separately named variables, lo{i} (row i, columns
// 0-3) and hi{i} (columns 4-7), generated with the helpers that touch every row
// (src/backend/cpu/matmul_gen.rs): llvmpipe keeps a dynamically indexed private array in
// memory. Rows and columns past the edges are clamped to the last one when read (so every
// load is in bounds and no branch is needed) and skipped when stored.

// Where 4 consecutive lines (rows or columns) of an operand start: `first` .. `first + 3`,
// clamped to `last`, times the stride between lines, from `base`.
fn lines4(base: u32, first: u32, last: u32, stride: u32) -> vec4<u32> {
    let line = min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    return vec4<u32>(base) + line * stride;
}

// Stores the 4 values of one row of a block from column c0, skipping those past the edges.
fn store_row4(c_base: u32, row: u32, c0: u32, v: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.n) {
            store(c_base + row * p.n + c0 + j, c0 + j, v[j]);
        }
    }
}

// The 8 values of one row of an 8-column block (columns 0-3 in lo, 4-7 in hi).
fn store_row8(c_base: u32, row: u32, c0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    store_row4(c_base, row, c0, lo);
    store_row4(c_base, row, c0 + 4u, hi);
}

// Operands as textures (src/backend/cpu/texels.rs): vec4 i of a buffer is the texel at
// (i % TEXEL_ROW, i / TEXEL_ROW). On llvmpipe a texel fetch costs 2-4x less than a storage
// load, and a vec4 load far less than 4 scalar ones.
@group(0) @binding(1) var a_texels: texture_2d<f32>;
@group(0) @binding(2) var b_texels: texture_2d<f32>;

// How the texel kernels read an operand, pipeline constants chosen by the host from the
// strides: along k (A_K, B_K: each row of A or column of B contiguous in k, one vec4 per line
// and step of 4 k), or across its lines (contiguous in m or n: two vec4s per k for 8 lines).
// The host checks that offsets and strides are multiples of 4 and hands a k % 4 tail to
// matmul_blocked8. (Read from the parameters where the compiler is slow, one pipeline for
// every form, matmul_vec4 ran 25-40% longer in the page: the transposes below then run
// masked on every step.)
override A_K: bool = true;
override B_K: bool = false;

// One operand's 8 lines of a block as the 8 texels each step of 4 k values reads: texel j of
// the step from k is at lo[j] (hi[j - 4]) + k / 4 * k_step. Along k, texel j is line j at
// k .. k + 3; across, texels 2 kk and 2 kk + 1 are lines 0-3 and 4-7 at k + kk.
struct Lines {
    lo: vec4<u32>,
    hi: vec4<u32>,
    k_step: u32,
}

// Lines first .. first + 7 (clamped to last) from vec4 `base`, `stride` vec4s apart along k
// (`along_k`), or with `step` vec4s per k across (branch-free: both forms are a few integer
// operations, once per block).
fn lines8(base: u32, first: u32, last: u32, stride: u32, step: u32, along_k: bool) -> Lines {
    let i = base + min(first, last) / 4u;
    let s = step;
    let across_lo = vec4<u32>(i, i + 1u, i + s, i + s + 1u);
    let across_hi = vec4<u32>(i + 2u * s, i + 2u * s + 1u, i + 3u * s, i + 3u * s + 1u);
    return Lines(
        select(across_lo, lines4(base, first, last, stride), along_k),
        select(across_hi, lines4(base, first + 4u, last, stride), along_k),
        select(4u * s, 1u, along_k),
    );
}

// A's rows r0 .. r0 + 7 of batch bi (row stride a_rs, a_cs per k), and B's columns c0 .. c0 + 7
// (column stride b_cs, b_rs per k).
fn a_lines(bi: u32, r0: u32) -> Lines {
    let base = (p.a_off + bi * p.a_bs) / 4u;
    return lines8(base, r0, p.m - 1u, p.a_rs / 4u, p.a_cs / 4u, A_K);
}

fn b_lines(bi: u32, c0: u32) -> Lines {
    let base = (p.b_off + bi * p.b_bs) / 4u;
    return lines8(base, c0, p.n - 1u, p.b_cs / 4u, p.b_rs / 4u, B_K);
}

// The 8 texels of one operand's block for the step of 4 k values from k.
struct Texels8 {
    t0: vec4<f32>,
    t1: vec4<f32>,
    t2: vec4<f32>,
    t3: vec4<f32>,
    t4: vec4<f32>,
    t5: vec4<f32>,
    t6: vec4<f32>,
    t7: vec4<f32>,
}

fn fetch8(t: texture_2d<f32>, l: Lines, k: u32) -> Texels8 {
    let lo = l.lo + vec4<u32>(k / 4u * l.k_step);
    let hi = l.hi + vec4<u32>(k / 4u * l.k_step);
    return Texels8(
        texel_quad(t, lo.x), texel_quad(t, lo.y), texel_quad(t, lo.z), texel_quad(t, lo.w),
        texel_quad(t, hi.x), texel_quad(t, hi.y), texel_quad(t, hi.z), texel_quad(t, hi.w),
    );
}

// A step's texels along k in the across form: texels 2 kk and 2 kk + 1 become component kk of
// lines 0-3 and 4-7 (two 4 x 4 transposes). The kernels multiply the across form, so column kk
// of A's block (rows 0-3, 4-7) is texels 2 kk, 2 kk + 1, and row kk of B's likewise. Callers
// write `if (A_K) { ... }` in place: SwiftShader inlines calls without folding constant
// arguments (prelude.wgsl), so a choice passed in would compile both forms at each call.
fn transposed(v: Texels8) -> Texels8 {
    return Texels8(
        vec4<f32>(v.t0.x, v.t1.x, v.t2.x, v.t3.x), vec4<f32>(v.t4.x, v.t5.x, v.t6.x, v.t7.x),
        vec4<f32>(v.t0.y, v.t1.y, v.t2.y, v.t3.y), vec4<f32>(v.t4.y, v.t5.y, v.t6.y, v.t7.y),
        vec4<f32>(v.t0.z, v.t1.z, v.t2.z, v.t3.z), vec4<f32>(v.t4.z, v.t5.z, v.t6.z, v.t7.z),
        vec4<f32>(v.t0.w, v.t1.w, v.t2.w, v.t3.w), vec4<f32>(v.t4.w, v.t5.w, v.t6.w, v.t7.w),
    );
}
