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
// matmul_blocked8.
override A_K: bool = true;
override B_K: bool = false;

// One operand's 8 lines of a block, in vec4s: along k, where each starts (lo: lines 0-3, hi:
// 4-7); across, the block's first vec4 `first` and the vec4s per k, `step`.
struct Lines {
    lo: vec4<u32>,
    hi: vec4<u32>,
    first: u32,
    step: u32,
}

fn lines8(base: u32, first: u32, last: u32, stride: u32, step: u32) -> Lines {
    let lo = lines4(base, first, last, stride);
    let hi = lines4(base, first + 4u, last, stride);
    return Lines(lo, hi, base + min(first, last) / 4u, step);
}

// A's rows r0 .. r0 + 7 of batch bi (row stride a_rs, a_cs per k), and B's columns c0 .. c0 + 7
// (column stride b_cs, b_rs per k).
fn a_lines(bi: u32, r0: u32) -> Lines {
    return lines8((p.a_off + bi * p.a_bs) / 4u, r0, p.m - 1u, p.a_rs / 4u, p.a_cs / 4u);
}

fn b_lines(bi: u32, c0: u32) -> Lines {
    return lines8((p.b_off + bi * p.b_bs) / 4u, c0, p.n - 1u, p.b_cs / 4u, p.b_rs / 4u);
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

// fetch8_a and fetch8_b (generated: src/backend/cpu/matmul_gen.rs) fetch an operand's 8 texels
// of a block for the step of 4 k values from k. Along k: texel i is line i at k .. k + 3.
// Across: texels 2 kk and 2 kk + 1 are lines 0-3 and 4-7 at k + kk. Column kk of a step's A
// block (rows 0-3, then 4-7), or row kk of its B block, is then component kk of 4 texels along
// k, or texel 2 kk (2 kk + 1) across. They and the kernels' step functions are generated with
// the choice on A_K or B_K spelled out in place, not in helpers taking the operand, the form or
// kk as arguments: SwiftShader inlines every call without folding constant arguments, so such
// helpers compiled every form at every call site.
