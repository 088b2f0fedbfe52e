// The matrix product for CPU adapters such as lavapipe, where workgroup memory and barriers
// are slow and every per-invocation load is a gather: register blocks, no workgroup memory.
// The module starts with matmul_common.wgsl and cpu/matmul_registers.wgsl; the accumulators
// lo0/hi0 .. lo7/hi7 and outer8, outer8x4, store_8x8 and store_8x4, which touch every
// row of them, are generated (src/backend/cpu/matmul_gen.rs).
// - matmul_blocked8 (larger m): 8 x 8 invocations, each computing an 8 x 8 block of a 64 x 64
//   tile.
// - matmul_rows (m <= 16): a workgroup is 16 invocations sharing the same 8 rows of A, each
//   invocation owning 4 columns, so a tile is 8 x 64. The A values every invocation needs at
//   a given k are the same (uniform loads), B is read 4 columns per invocation, and each k
//   step does 32 multiply-adds per invocation.
// - matmul_vec4: matmul_blocked8's blocks with operands read as vec4 texels. Each step of 4
//   k values loads 8 vec4s of A and 8 of B and does 256 multiply-adds.
// cpu/matmul_subgroup.wgsl has the kernel for adapters whose subgroups are their 8 SIMD
// lanes (a separate module: it needs subgroup operations).

// 4 values of A (or B) at the given indices.
fn a_at(i: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(a[i.x], a[i.y], a[i.z], a[i.w]);
}

fn b_at(i: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(b[i.x], b[i.y], b[i.z], b[i.w]);
}

// The 8 x 8 block of a 64 x 64 tile that invocation li of its 64 computes (row0 and col0 are
// the block's: 8 rows of 8 invocations); not valid past the edges.
fn block8(inv: Invocation) -> Tile {
    var t = tile_of(inv.wid, inv.nwg, 64u, 64u);
    t.row0 += (inv.lid / 8u) * 8u;
    t.col0 += (inv.lid % 8u) * 8u;
    t.valid = t.valid & (t.row0 < p.m) & (t.col0 < p.n);
    return t;
}

// matmul_blocked8: A and B read one float at a time.
@compute @workgroup_size(64)
fn matmul_blocked8(inv: Invocation) {
    let blk = block8(inv);
    if (!blk.valid) { return; }
    for (var bi = blk.b_first; bi < blk.b_last; bi++) {
        let a_base = p.a_off + bi * p.a_bs;
        let b_base = p.b_off + bi * p.b_bs;
        let ar_lo = lines4(a_base, blk.row0, p.m - 1u, p.a_rs);
        let ar_hi = lines4(a_base, blk.row0 + 4u, p.m - 1u, p.a_rs);
        let bc_lo = lines4(b_base, blk.col0, p.n - 1u, p.b_cs);
        let bc_hi = lines4(b_base, blk.col0 + 4u, p.n - 1u, p.b_cs);
        for (var k = 0u; k < p.k; k++) {
            let ka = vec4<u32>(k * p.a_cs);
            let kb = vec4<u32>(k * p.b_rs);
            outer8(a_at(ar_lo + ka), a_at(ar_hi + ka), b_at(bc_lo + kb), b_at(bc_hi + kb));
        }
    }
    store_8x8(blk.c_base, blk.row0, blk.col0);
}

// With ROW_SUMS (a Linear's weight gradient dY^T X, whose bias gradient is dY summed over the
// batch: the rows of A here), matmul_rows also adds up each row of A over k into row_sums,
// saving the bias gradient its own dispatch. The host asks for it only for one-piece products.
override ROW_SUMS: bool = false;
@group(0) @binding(5) var<storage, read_write> row_sums: array<f32>;

@compute @workgroup_size(16)
fn matmul_rows(inv: Invocation) {
    let tile = tile_of(inv.wid, inv.nwg, 8u, 64u);
    if (!tile.valid) { return; }
    let r0 = tile.row0;
    let c0 = tile.col0 + inv.lid * 4u;
    var sums_lo = vec4<f32>(0.0);
    var sums_hi = vec4<f32>(0.0);
    for (var bi = tile.b_first; bi < tile.b_last; bi++) {
        let a_base = p.a_off + bi * p.a_bs;
        let ar_lo = lines4(a_base, r0, p.m - 1u, p.a_rs);
        let ar_hi = lines4(a_base, r0 + 4u, p.m - 1u, p.a_rs);
        let bc = lines4(p.b_off + bi * p.b_bs, c0, p.n - 1u, p.b_cs);
        for (var k = 0u; k < p.k; k++) {
            let ka = vec4<u32>(k * p.a_cs);
            let al = a_at(ar_lo + ka);
            let ah = a_at(ar_hi + ka);
            outer8x4(al, ah, b_at(bc + vec4<u32>(k * p.b_rs)));
            if (ROW_SUMS) {
                sums_lo += al;
                sums_hi += ah;
            }
        }
    }
    // The first column tile's first invocation holds its 8 rows' sums.
    if (ROW_SUMS && inv.lid == 0u && tile.col0 == 0u) {
        for (var i = 0u; i < 4u; i++) {
            if (r0 + i < p.m) {
                row_sums[r0 + i] = sums_lo[i];
            }
            if (r0 + 4u + i < p.m) {
                row_sums[r0 + 4u + i] = sums_hi[i];
            }
        }
    }
    store_8x4(tile.c_base, r0, c0);
}

// matmul_vec4: A and B read as 8 texels each per step of 4 k values, in the across form (see
// cpu/matmul_registers.wgsl): 4 outer products of 8 x 8.
@compute @workgroup_size(64)
fn matmul_vec4(inv: Invocation) {
    let blk = block8(inv);
    if (!blk.valid) { return; }
    for (var bi = blk.b_first; bi < blk.b_last; bi++) {
        let rows = a_lines(bi, blk.row0);
        let cols = b_lines(bi, blk.col0);
        for (var k = 0u; k < p.k; k += 4u) {
            var ta = fetch8(a_texels, rows, k);
            var tb = fetch8(b_texels, cols, k);
            if (A_K) { ta = transposed(ta); }
            if (B_K) { tb = transposed(tb); }
            outer8(ta.t0, ta.t1, tb.t0, tb.t1);
            outer8(ta.t2, ta.t3, tb.t2, tb.t3);
            outer8(ta.t4, ta.t5, tb.t4, tb.t5);
            outer8(ta.t6, ta.t7, tb.t6, tb.t7);
        }
    }
    store_8x8(blk.c_base, blk.row0, blk.col0);
}
