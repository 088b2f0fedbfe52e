// matmul_subgroup: matmul_vec4's product for CPU adapters whose subgroups are the 8 SIMD lanes
// of llvmpipe (8 consecutive invocations), where every texel fetch costs about as much as
// 50 multiply-adds and the 8 lanes of a subgroup need the same rows of A. The module starts
// with matmul_common.wgsl (indexing, bindings, epilogue) and cpu/matmul_registers.wgsl
// (operands as texels, A_K and B_K); the accumulators lo0/hi0 .. lo15/hi15, step4 and
// store_16x8 are generated (src/backend/cpu/matmul_gen.rs).
//
// A workgroup of 32 invocations (4 subgroups) computes a 64 x 64 tile: subgroup s the rows
// 16 s .. 16 s + 15, lane l of it the columns 8 l .. 8 l + 7, so an invocation owns a 16 x 8
// block. Per step of 4 k values, lane l fetches A's rows l and 8 + l (or, with A read across
// its rows, two of the 16 texels of the block) and subgroupBroadcast hands every lane all 16
// (step4): 2 fetches of A and 8 of B feed 512 multiply-adds (matmul_vec4: 16 fetches for 256).
// No invocation returns early: a broadcast reads every lane.
//
// A[r0 + i, k + kk] of the step's block comes from the lane that fetched it (a broadcast's
// lane must be a constant, hence the spelled-out rows of step4). Along k (A_K), row i's 4
// values are the texel lane i % 8 fetched into a_lo (rows 0-7) or a_hi (rows 8-15). Across,
// texel t = 4 kk + i / 4 holds rows 4 (t % 4) .. + 3 at step kk: lane t % 8 fetched it into
// a_lo (t < 8) or a_hi.

@compute @workgroup_size(32)
fn matmul_subgroup(inv: Invocation, @builtin(subgroup_invocation_id) lane: u32) {
    let tile = tile_of(inv.wid, inv.nwg, 64u, 64u);
    if (!tile.valid) { return; }
    let r0 = tile.row0 + (inv.lid / 8u) * 16u;
    let c0 = tile.col0 + lane * 8u;
    for (var bi = tile.b_first; bi < tile.b_last; bi++) {
        // Addresses in vec4s. Along k: this lane's two rows. Across: texel t (lo: lane, hi:
        // 8 + lane) is rows 4 (t % 4) .. + 3 at k + t / 4; rows past the edge are clamped to
        // the last quad.
        let a_base = (p.a_off + bi * p.a_bs) / 4u;
        let a_cs = p.a_cs / 4u;
        let ar_lo = a_base + min(r0 + lane, p.m - 1u) * (p.a_rs / 4u);
        let ar_hi = a_base + min(r0 + 8u + lane, p.m - 1u) * (p.a_rs / 4u);
        let aq_lo = a_base + min(r0 / 4u + lane % 4u, (p.m - 1u) / 4u);
        let cols = b_lines(bi, c0);
        for (var k = 0u; k < p.k; k += 4u) {
            let lo = select(aq_lo + (k + lane / 4u) * a_cs, ar_lo + k / 4u, A_K);
            let hi = select(aq_lo + (k + 2u + lane / 4u) * a_cs, ar_hi + k / 4u, A_K);
            var tb = fetch8(b_texels, cols, k);
            if (B_K) { tb = transposed(tb); }
            step4(texel_quad(a_texels, lo), texel_quad(a_texels, hi), tb);
        }
    }
    store_16x8(tile.c_base, r0, c0);
}

// With C4 (n, c_off and c_bs multiples of 4: the host checks), C is written as vec4s through
// binding 5 (binding 3 then holds a placeholder): a storage store costs about as much for 4
// floats as for 1 on llvmpipe, and an invocation stores 128 values.
override C4: bool = false;
@group(0) @binding(5) var<storage, read_write> c4: array<vec4<f32>>;

// store_row8, as vec4s with C4 (n is then a multiple of 4, so each half of the row is in or
// out as a whole).
fn store_row8_c4(c_base: u32, row: u32, c0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (!C4) {
        store_row8(c_base, row, c0, lo, hi);
        return;
    }
    if (row >= p.m) {
        return;
    }
    let i = (c_base + row * p.n + c0) / 4u;
    if (c0 < p.n) {
        store4(i, c0, lo);
    }
    if (c0 + 4u < p.n) {
        store4(i + 1u, c0 + 4u, hi);
    }
}

// store's epilogue for vec4 i4 of C (columns col .. col + 3).
fn store4(i4: u32, col: u32, v: vec4<f32>) {
    var r = vec4<f32>(
        with_bias(v.x, col),
        with_bias(v.y, col + 1u),
        with_bias(v.z, col + 2u),
        with_bias(v.w, col + 3u),
    );
    if (accumulates()) {
        r += c4[i4];
    }
    c4[i4] = vec4<f32>(activation(r.x), activation(r.y), activation(r.z), activation(r.w));
}
