// matmul_subgroup: matmul_vec4's product for CPU adapters whose subgroups are the 8 SIMD lanes
// of llvmpipe (8 consecutive invocations), where every texel fetch costs about as much as
// 50 multiply-adds and the 8 lanes of a subgroup need the same rows of A.
//
// Indexing as in matmul.wgsl: A[bi, r, k] = a[a_off + bi * a_bs + r * a_rs + k * a_cs], B
// likewise, C[bi, r, c] = c[c_off + bi * c_bs + r * n + c]; operands are textures
// (src/backend/cpu/texels.rs: vec4 i at (i % TEXEL_ROW, i / TEXEL_ROW)).
// A workgroup of 32 invocations (4 subgroups) computes a 64 x 64 tile: subgroup s the rows
// 16 s .. 16 s + 15, lane l of it the columns 8 l .. 8 l + 7, so an invocation owns a 16 x 8
// block. Per step of 4 k values, lane l fetches A's rows l and 8 + l (or, with A read across
// its rows, two of the 16 texels of the block) and subgroupBroadcast hands every lane all 16:
// 2 fetches of A and 8 of B feed 512 multiply-adds (matmul_vec4: 16 fetches for 256).
// The host checks the forms (A_K, B_K: operand contiguous along k, or across its rows or
// columns, two vec4s per k), that offsets and strides are multiples of 4, and hands any k % 4
// tail to matmul_blocked8. No invocation returns early: a broadcast reads every lane.

struct Params {
    batch: u32,
    m: u32,
    n: u32,
    k: u32,
    a_off: u32,
    a_bs: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_bs: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_bs: u32,
    sum_batch: u32,
    accumulate: u32,
    has_bias: u32,
    relu: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var a_texels: texture_2d<f32>;
@group(0) @binding(2) var b_texels: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;


override A_K: bool = true;
override B_K: bool = false;
// The epilogue, as in matmul.wgsl: pipeline constants, not the Params fields of the same
// names (llvmpipe runs a branch on a uniform masked, so every output paid for the loads it
// did not use).
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override RELU: bool = false;

// With C4 (n, c_off and c_bs multiples of 4: the host checks), C is written as vec4s through
// binding 5 (binding 3 then holds a placeholder): a storage store costs about as much for 4
// floats as for 1 on llvmpipe, and an invocation stores 128 values.
override C4: bool = false;
@group(0) @binding(5) var<storage, read_write> c4: array<vec4<f32>>;

fn a4(i: u32) -> vec4<f32> {
    return textureLoad(a_texels, vec2<u32>(i % TEXEL_ROW, i / TEXEL_ROW), 0);
}

fn b4(i: u32) -> vec4<f32> {
    return textureLoad(b_texels, vec2<u32>(i % TEXEL_ROW, i / TEXEL_ROW), 0);
}

// The two A texels this lane fetched for the step (lo: rows 0-7 or the block's first 8
// texels, hi: the rest), the step's B texels, and the 16 x 8 accumulators (row i: lo{i}
// columns 0-3, hi{i} columns 4-7). Module-scope private variables, so the helpers below can
// update them.
var<private> a_lo: vec4<f32>;
var<private> a_hi: vec4<f32>;
var<private> rb0: vec4<f32>;
var<private> rb1: vec4<f32>;
var<private> rb2: vec4<f32>;
var<private> rb3: vec4<f32>;
var<private> rb4: vec4<f32>;
var<private> rb5: vec4<f32>;
var<private> rb6: vec4<f32>;
var<private> rb7: vec4<f32>;
var<private> lo0: vec4<f32>;
var<private> hi0: vec4<f32>;
var<private> lo1: vec4<f32>;
var<private> hi1: vec4<f32>;
var<private> lo2: vec4<f32>;
var<private> hi2: vec4<f32>;
var<private> lo3: vec4<f32>;
var<private> hi3: vec4<f32>;
var<private> lo4: vec4<f32>;
var<private> hi4: vec4<f32>;
var<private> lo5: vec4<f32>;
var<private> hi5: vec4<f32>;
var<private> lo6: vec4<f32>;
var<private> hi6: vec4<f32>;
var<private> lo7: vec4<f32>;
var<private> hi7: vec4<f32>;
var<private> lo8: vec4<f32>;
var<private> hi8: vec4<f32>;
var<private> lo9: vec4<f32>;
var<private> hi9: vec4<f32>;
var<private> lo10: vec4<f32>;
var<private> hi10: vec4<f32>;
var<private> lo11: vec4<f32>;
var<private> hi11: vec4<f32>;
var<private> lo12: vec4<f32>;
var<private> hi12: vec4<f32>;
var<private> lo13: vec4<f32>;
var<private> hi13: vec4<f32>;
var<private> lo14: vec4<f32>;
var<private> hi14: vec4<f32>;
var<private> lo15: vec4<f32>;
var<private> hi15: vec4<f32>;

// A[r0 + i, k + kk] of the step's block comes from the lane that fetched it (a broadcast's
// lane must be a constant, hence the spelled-out rows in step4). Along k (A_K), row i's 4
// values are the texel lane i % 8 fetched into a_lo (rows 0-7) or a_hi (rows 8-15). Across,
// texel t = 4 kk + i / 4 holds rows 4 (t % 4) .. + 3 at step kk: lane t % 8 fetched it into
// a_lo (t < 8) or a_hi.

// Row kk of the step's B block, columns 0-3 (high: 4-7).
fn b_row(kk: u32, high: bool) -> vec4<f32> {
    if (B_K) {
        let v0 = select(rb0, rb4, high);
        let v1 = select(rb1, rb5, high);
        let v2 = select(rb2, rb6, high);
        let v3 = select(rb3, rb7, high);
        return vec4<f32>(v0[kk], v1[kk], v2[kk], v3[kk]);
    }
    switch kk {
        case 0u: { return select(rb0, rb1, high); }
        case 1u: { return select(rb2, rb3, high); }
        case 2u: { return select(rb4, rb5, high); }
        default: { return select(rb6, rb7, high); }
    }
}

// The step's 4 products into every accumulator, each accumulator's in k order.
fn step4() {
    let bl0 = b_row(0u, false);
    let bh0 = b_row(0u, true);
    let bl1 = b_row(1u, false);
    let bh1 = b_row(1u, true);
    let bl2 = b_row(2u, false);
    let bh2 = b_row(2u, true);
    let bl3 = b_row(3u, false);
    let bh3 = b_row(3u, true);
    let row0 = subgroupBroadcast(a_lo, 0u);
    let a0_0 = select(subgroupBroadcast(a_lo, 0u)[0], row0[0], A_K);
    let a0_1 = select(subgroupBroadcast(a_lo, 4u)[0], row0[1], A_K);
    let a0_2 = select(subgroupBroadcast(a_hi, 0u)[0], row0[2], A_K);
    let a0_3 = select(subgroupBroadcast(a_hi, 4u)[0], row0[3], A_K);
    lo0 = lo0 + a0_0 * bl0 + a0_1 * bl1 + a0_2 * bl2 + a0_3 * bl3;
    hi0 = hi0 + a0_0 * bh0 + a0_1 * bh1 + a0_2 * bh2 + a0_3 * bh3;
    let row1 = subgroupBroadcast(a_lo, 1u);
    let a1_0 = select(subgroupBroadcast(a_lo, 0u)[1], row1[0], A_K);
    let a1_1 = select(subgroupBroadcast(a_lo, 4u)[1], row1[1], A_K);
    let a1_2 = select(subgroupBroadcast(a_hi, 0u)[1], row1[2], A_K);
    let a1_3 = select(subgroupBroadcast(a_hi, 4u)[1], row1[3], A_K);
    lo1 = lo1 + a1_0 * bl0 + a1_1 * bl1 + a1_2 * bl2 + a1_3 * bl3;
    hi1 = hi1 + a1_0 * bh0 + a1_1 * bh1 + a1_2 * bh2 + a1_3 * bh3;
    let row2 = subgroupBroadcast(a_lo, 2u);
    let a2_0 = select(subgroupBroadcast(a_lo, 0u)[2], row2[0], A_K);
    let a2_1 = select(subgroupBroadcast(a_lo, 4u)[2], row2[1], A_K);
    let a2_2 = select(subgroupBroadcast(a_hi, 0u)[2], row2[2], A_K);
    let a2_3 = select(subgroupBroadcast(a_hi, 4u)[2], row2[3], A_K);
    lo2 = lo2 + a2_0 * bl0 + a2_1 * bl1 + a2_2 * bl2 + a2_3 * bl3;
    hi2 = hi2 + a2_0 * bh0 + a2_1 * bh1 + a2_2 * bh2 + a2_3 * bh3;
    let row3 = subgroupBroadcast(a_lo, 3u);
    let a3_0 = select(subgroupBroadcast(a_lo, 0u)[3], row3[0], A_K);
    let a3_1 = select(subgroupBroadcast(a_lo, 4u)[3], row3[1], A_K);
    let a3_2 = select(subgroupBroadcast(a_hi, 0u)[3], row3[2], A_K);
    let a3_3 = select(subgroupBroadcast(a_hi, 4u)[3], row3[3], A_K);
    lo3 = lo3 + a3_0 * bl0 + a3_1 * bl1 + a3_2 * bl2 + a3_3 * bl3;
    hi3 = hi3 + a3_0 * bh0 + a3_1 * bh1 + a3_2 * bh2 + a3_3 * bh3;
    let row4 = subgroupBroadcast(a_lo, 4u);
    let a4_0 = select(subgroupBroadcast(a_lo, 1u)[0], row4[0], A_K);
    let a4_1 = select(subgroupBroadcast(a_lo, 5u)[0], row4[1], A_K);
    let a4_2 = select(subgroupBroadcast(a_hi, 1u)[0], row4[2], A_K);
    let a4_3 = select(subgroupBroadcast(a_hi, 5u)[0], row4[3], A_K);
    lo4 = lo4 + a4_0 * bl0 + a4_1 * bl1 + a4_2 * bl2 + a4_3 * bl3;
    hi4 = hi4 + a4_0 * bh0 + a4_1 * bh1 + a4_2 * bh2 + a4_3 * bh3;
    let row5 = subgroupBroadcast(a_lo, 5u);
    let a5_0 = select(subgroupBroadcast(a_lo, 1u)[1], row5[0], A_K);
    let a5_1 = select(subgroupBroadcast(a_lo, 5u)[1], row5[1], A_K);
    let a5_2 = select(subgroupBroadcast(a_hi, 1u)[1], row5[2], A_K);
    let a5_3 = select(subgroupBroadcast(a_hi, 5u)[1], row5[3], A_K);
    lo5 = lo5 + a5_0 * bl0 + a5_1 * bl1 + a5_2 * bl2 + a5_3 * bl3;
    hi5 = hi5 + a5_0 * bh0 + a5_1 * bh1 + a5_2 * bh2 + a5_3 * bh3;
    let row6 = subgroupBroadcast(a_lo, 6u);
    let a6_0 = select(subgroupBroadcast(a_lo, 1u)[2], row6[0], A_K);
    let a6_1 = select(subgroupBroadcast(a_lo, 5u)[2], row6[1], A_K);
    let a6_2 = select(subgroupBroadcast(a_hi, 1u)[2], row6[2], A_K);
    let a6_3 = select(subgroupBroadcast(a_hi, 5u)[2], row6[3], A_K);
    lo6 = lo6 + a6_0 * bl0 + a6_1 * bl1 + a6_2 * bl2 + a6_3 * bl3;
    hi6 = hi6 + a6_0 * bh0 + a6_1 * bh1 + a6_2 * bh2 + a6_3 * bh3;
    let row7 = subgroupBroadcast(a_lo, 7u);
    let a7_0 = select(subgroupBroadcast(a_lo, 1u)[3], row7[0], A_K);
    let a7_1 = select(subgroupBroadcast(a_lo, 5u)[3], row7[1], A_K);
    let a7_2 = select(subgroupBroadcast(a_hi, 1u)[3], row7[2], A_K);
    let a7_3 = select(subgroupBroadcast(a_hi, 5u)[3], row7[3], A_K);
    lo7 = lo7 + a7_0 * bl0 + a7_1 * bl1 + a7_2 * bl2 + a7_3 * bl3;
    hi7 = hi7 + a7_0 * bh0 + a7_1 * bh1 + a7_2 * bh2 + a7_3 * bh3;
    let row8 = subgroupBroadcast(a_hi, 0u);
    let a8_0 = select(subgroupBroadcast(a_lo, 2u)[0], row8[0], A_K);
    let a8_1 = select(subgroupBroadcast(a_lo, 6u)[0], row8[1], A_K);
    let a8_2 = select(subgroupBroadcast(a_hi, 2u)[0], row8[2], A_K);
    let a8_3 = select(subgroupBroadcast(a_hi, 6u)[0], row8[3], A_K);
    lo8 = lo8 + a8_0 * bl0 + a8_1 * bl1 + a8_2 * bl2 + a8_3 * bl3;
    hi8 = hi8 + a8_0 * bh0 + a8_1 * bh1 + a8_2 * bh2 + a8_3 * bh3;
    let row9 = subgroupBroadcast(a_hi, 1u);
    let a9_0 = select(subgroupBroadcast(a_lo, 2u)[1], row9[0], A_K);
    let a9_1 = select(subgroupBroadcast(a_lo, 6u)[1], row9[1], A_K);
    let a9_2 = select(subgroupBroadcast(a_hi, 2u)[1], row9[2], A_K);
    let a9_3 = select(subgroupBroadcast(a_hi, 6u)[1], row9[3], A_K);
    lo9 = lo9 + a9_0 * bl0 + a9_1 * bl1 + a9_2 * bl2 + a9_3 * bl3;
    hi9 = hi9 + a9_0 * bh0 + a9_1 * bh1 + a9_2 * bh2 + a9_3 * bh3;
    let row10 = subgroupBroadcast(a_hi, 2u);
    let a10_0 = select(subgroupBroadcast(a_lo, 2u)[2], row10[0], A_K);
    let a10_1 = select(subgroupBroadcast(a_lo, 6u)[2], row10[1], A_K);
    let a10_2 = select(subgroupBroadcast(a_hi, 2u)[2], row10[2], A_K);
    let a10_3 = select(subgroupBroadcast(a_hi, 6u)[2], row10[3], A_K);
    lo10 = lo10 + a10_0 * bl0 + a10_1 * bl1 + a10_2 * bl2 + a10_3 * bl3;
    hi10 = hi10 + a10_0 * bh0 + a10_1 * bh1 + a10_2 * bh2 + a10_3 * bh3;
    let row11 = subgroupBroadcast(a_hi, 3u);
    let a11_0 = select(subgroupBroadcast(a_lo, 2u)[3], row11[0], A_K);
    let a11_1 = select(subgroupBroadcast(a_lo, 6u)[3], row11[1], A_K);
    let a11_2 = select(subgroupBroadcast(a_hi, 2u)[3], row11[2], A_K);
    let a11_3 = select(subgroupBroadcast(a_hi, 6u)[3], row11[3], A_K);
    lo11 = lo11 + a11_0 * bl0 + a11_1 * bl1 + a11_2 * bl2 + a11_3 * bl3;
    hi11 = hi11 + a11_0 * bh0 + a11_1 * bh1 + a11_2 * bh2 + a11_3 * bh3;
    let row12 = subgroupBroadcast(a_hi, 4u);
    let a12_0 = select(subgroupBroadcast(a_lo, 3u)[0], row12[0], A_K);
    let a12_1 = select(subgroupBroadcast(a_lo, 7u)[0], row12[1], A_K);
    let a12_2 = select(subgroupBroadcast(a_hi, 3u)[0], row12[2], A_K);
    let a12_3 = select(subgroupBroadcast(a_hi, 7u)[0], row12[3], A_K);
    lo12 = lo12 + a12_0 * bl0 + a12_1 * bl1 + a12_2 * bl2 + a12_3 * bl3;
    hi12 = hi12 + a12_0 * bh0 + a12_1 * bh1 + a12_2 * bh2 + a12_3 * bh3;
    let row13 = subgroupBroadcast(a_hi, 5u);
    let a13_0 = select(subgroupBroadcast(a_lo, 3u)[1], row13[0], A_K);
    let a13_1 = select(subgroupBroadcast(a_lo, 7u)[1], row13[1], A_K);
    let a13_2 = select(subgroupBroadcast(a_hi, 3u)[1], row13[2], A_K);
    let a13_3 = select(subgroupBroadcast(a_hi, 7u)[1], row13[3], A_K);
    lo13 = lo13 + a13_0 * bl0 + a13_1 * bl1 + a13_2 * bl2 + a13_3 * bl3;
    hi13 = hi13 + a13_0 * bh0 + a13_1 * bh1 + a13_2 * bh2 + a13_3 * bh3;
    let row14 = subgroupBroadcast(a_hi, 6u);
    let a14_0 = select(subgroupBroadcast(a_lo, 3u)[2], row14[0], A_K);
    let a14_1 = select(subgroupBroadcast(a_lo, 7u)[2], row14[1], A_K);
    let a14_2 = select(subgroupBroadcast(a_hi, 3u)[2], row14[2], A_K);
    let a14_3 = select(subgroupBroadcast(a_hi, 7u)[2], row14[3], A_K);
    lo14 = lo14 + a14_0 * bl0 + a14_1 * bl1 + a14_2 * bl2 + a14_3 * bl3;
    hi14 = hi14 + a14_0 * bh0 + a14_1 * bh1 + a14_2 * bh2 + a14_3 * bh3;
    let row15 = subgroupBroadcast(a_hi, 7u);
    let a15_0 = select(subgroupBroadcast(a_lo, 3u)[3], row15[0], A_K);
    let a15_1 = select(subgroupBroadcast(a_lo, 7u)[3], row15[1], A_K);
    let a15_2 = select(subgroupBroadcast(a_hi, 3u)[3], row15[2], A_K);
    let a15_3 = select(subgroupBroadcast(a_hi, 7u)[3], row15[3], A_K);
    lo15 = lo15 + a15_0 * bl0 + a15_1 * bl1 + a15_2 * bl2 + a15_3 * bl3;
    hi15 = hi15 + a15_0 * bh0 + a15_1 * bh1 + a15_2 * bh2 + a15_3 * bh3;
}

@compute @workgroup_size(32)
fn matmul_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let tiles_m = (p.m + 63u) / 64u;
    let tiles_n = (p.n + 63u) / 64u;
    let out_batches = select(p.batch, 1u, p.sum_batch == 1u);
    let t = wid.x + wid.y * nwg.x;
    if (t >= tiles_m * tiles_n * out_batches) {
        return;
    }
    let ob = t / (tiles_m * tiles_n);
    let rem = t % (tiles_m * tiles_n);
    let r0 = (rem / tiles_n) * 64u + (li / 8u) * 16u;
    let c0 = (rem % tiles_n) * 64u + lane * 8u;
    let b_first = select(ob, 0u, p.sum_batch == 1u);
    let b_last = select(ob + 1u, p.batch, p.sum_batch == 1u);
    for (var bi = b_first; bi < b_last; bi++) {
        // Addresses in vec4s, rows and columns past the edges clamped to the last (their
        // results are not stored).
        let a_base = (p.a_off + bi * p.a_bs) / 4u;
        let b_base = (p.b_off + bi * p.b_bs) / 4u;
        let a_rs = p.a_rs / 4u;
        let a_cs = p.a_cs / 4u;
        let b_rs = p.b_rs / 4u;
        let b_cs = p.b_cs / 4u;
        // Along k: this lane's two rows. Across: texel t (lo: lane, hi: 8 + lane) is rows
        // 4 (t % 4) .. + 3 at k + t / 4; rows past the edge are clamped to the last quad.
        let last_quad = (p.m - 1u) / 4u;
        let ar_lo = a_base + min(r0 + lane, p.m - 1u) * a_rs;
        let ar_hi = a_base + min(r0 + 8u + lane, p.m - 1u) * a_rs;
        let aq_lo = a_base + min(r0 / 4u + lane % 4u, last_quad);
        let bc0 = b_base + min(c0 + 0u, p.n - 1u) * b_cs;
        let bc1 = b_base + min(c0 + 1u, p.n - 1u) * b_cs;
        let bc2 = b_base + min(c0 + 2u, p.n - 1u) * b_cs;
        let bc3 = b_base + min(c0 + 3u, p.n - 1u) * b_cs;
        let bc4 = b_base + min(c0 + 4u, p.n - 1u) * b_cs;
        let bc5 = b_base + min(c0 + 5u, p.n - 1u) * b_cs;
        let bc6 = b_base + min(c0 + 6u, p.n - 1u) * b_cs;
        let bc7 = b_base + min(c0 + 7u, p.n - 1u) * b_cs;
        let b_blk = b_base + min(c0, p.n - 1u) / 4u;
        for (var k = 0u; k < p.k; k += 4u) {
            if (A_K) {
                a_lo = a4(ar_lo + k / 4u);
                a_hi = a4(ar_hi + k / 4u);
            } else {
                // Texels 0-7: k + lane / 4, row quad lane % 4; texels 8-15: k + 2 + lane / 4.
                a_lo = a4(aq_lo + (k + lane / 4u) * a_cs);
                a_hi = a4(aq_lo + (k + 2u + lane / 4u) * a_cs);
            }
            if (B_K) {
                let q = k / 4u;
                rb0 = b4(bc0 + q);
                rb1 = b4(bc1 + q);
                rb2 = b4(bc2 + q);
                rb3 = b4(bc3 + q);
                rb4 = b4(bc4 + q);
                rb5 = b4(bc5 + q);
                rb6 = b4(bc6 + q);
                rb7 = b4(bc7 + q);
            } else {
                rb0 = b4(b_blk + k * b_rs);
                rb1 = b4(b_blk + k * b_rs + 1u);
                rb2 = b4(b_blk + (k + 1u) * b_rs);
                rb3 = b4(b_blk + (k + 1u) * b_rs + 1u);
                rb4 = b4(b_blk + (k + 2u) * b_rs);
                rb5 = b4(b_blk + (k + 2u) * b_rs + 1u);
                rb6 = b4(b_blk + (k + 3u) * b_rs);
                rb7 = b4(b_blk + (k + 3u) * b_rs + 1u);
            }
            step4();
        }
    }
    let c_base = p.c_off + ob * p.c_bs;
    store_row8(c_base, r0 + 0u, c0, lo0, hi0);
    store_row8(c_base, r0 + 1u, c0, lo1, hi1);
    store_row8(c_base, r0 + 2u, c0, lo2, hi2);
    store_row8(c_base, r0 + 3u, c0, lo3, hi3);
    store_row8(c_base, r0 + 4u, c0, lo4, hi4);
    store_row8(c_base, r0 + 5u, c0, lo5, hi5);
    store_row8(c_base, r0 + 6u, c0, lo6, hi6);
    store_row8(c_base, r0 + 7u, c0, lo7, hi7);
    store_row8(c_base, r0 + 8u, c0, lo8, hi8);
    store_row8(c_base, r0 + 9u, c0, lo9, hi9);
    store_row8(c_base, r0 + 10u, c0, lo10, hi10);
    store_row8(c_base, r0 + 11u, c0, lo11, hi11);
    store_row8(c_base, r0 + 12u, c0, lo12, hi12);
    store_row8(c_base, r0 + 13u, c0, lo13, hi13);
    store_row8(c_base, r0 + 14u, c0, lo14, hi14);
    store_row8(c_base, r0 + 15u, c0, lo15, hi15);
}

// Stores (or adds, with the bias and ReLU epilogue) the 8 values of one row of the block,
// skipping those past the edges.
fn store_row8(c_base: u32, row: u32, c0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    if (C4) {
        // n is a multiple of 4, so each half of the row is in or out as a whole.
        let i = c_base + row * p.n + c0;
        if (c0 < p.n) {
            store4(i / 4u, c0, lo);
        }
        if (c0 + 4u < p.n) {
            store4(i / 4u + 1u, c0 + 4u, hi);
        }
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.n) {
            store(c_base + row * p.n + c0 + j, c0 + j, lo[j]);
        }
        if (c0 + 4u + j < p.n) {
            store(c_base + row * p.n + c0 + 4u + j, c0 + 4u + j, hi[j]);
        }
    }
}

// store's epilogue for vec4 i4 of C (columns col .. col + 3).
fn store4(i4: u32, col: u32, v: vec4<f32>) {
    var r = v;
    if (HAS_BIAS) {
        r += vec4<f32>(bias[col], bias[col + 1u], bias[col + 2u], bias[col + 3u]);
    }
    if (ACCUMULATE) {
        r += c4[i4];
    }
    if (RELU) {
        let nan = (bitcast<vec4<u32>>(r) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
        r = select(vec4<f32>(0.0), r, (r > vec4<f32>(0.0)) | nan);
    }
    c4[i4] = r;
}

fn store(i: u32, col: u32, v: f32) {
    var r = v;
    if (HAS_BIAS) {
        r += bias[col];
    }
    if (ACCUMULATE) {
        r += c[i];
    }
    if (RELU) {
        // ReLU keeping NaN (tested on the bits: GL drivers may rewrite !(r <= 0) as r > 0).
        let nan = (bitcast<u32>(r) & 0x7fffffffu) > 0x7f800000u;
        r = select(0.0, r, (r > 0.0) | nan);
    }
    c[i] = r;
}
