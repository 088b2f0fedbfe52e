// Batched matrix product C[bi] = A[bi] x B[bi] with arbitrary strides, so transposed operands
// (the backward's A^T and B^T) and column matrices are read in place rather than copied.
//
// Indexing: A[bi, r, k] = a[a_off + bi * a_bs + r * a_rs + k * a_cs], B likewise;
// C[bi, r, c] = c[c_off + bi * c_bs + r * n + c]. The flat workgroup index
// t = wid.x + wid.y * num_workgroups.x enumerates output tiles: the output batch
// t / (tiles_m * tiles_n), then the tile's row and column.
// With sum_batch = 1 there is one output, C = sum over bi of A[bi] x B[bi] (a weight gradient
// summed over images). The epilogue is made of pipeline constants: with ACCUMULATE the result
// is added to C instead of stored; with HAS_BIAS every output gets bias[c] added, and with
// RELU the final value goes through max(v, 0) (Linear's epilogue, saving a broadcast add and
// an activation pass). Constants rather than uniforms because llvmpipe runs a branch on a
// uniform masked: each output paid for the bias and C loads it did not use.
// Two schedules, chosen by the host from the adapter type:
// - matmul_tiled (GPUs): 16x16 invocations share 64x16 tiles of A and B in workgroup memory;
//   each invocation accumulates a 4x4 block of the 64x64 output tile.
// - CPU adapters such as lavapipe, where workgroup memory and barriers are slow and every
//   per-invocation load is a gather: matmul_blocked8 (8 x 8 outputs per invocation) for
//   larger m, matmul_rows (8 rows shared by a workgroup) when m is small; matmul_vec4 (below)
//   when the operands can be read as vec4s, or cpu/matmul_subgroup.wgsl's kernel where the
//   adapter's subgroups are its 8 SIMD lanes (a separate module: it needs subgroup operations).

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
    // Unread: the pipeline constants ACCUMULATE, HAS_BIAS and RELU hold these.
    accumulate: u32,
    has_bias: u32,
    relu: u32,
}

fn out_batches() -> u32 {
    return select(p.batch, 1u, p.sum_batch == 1u);
}

// Stores or adds one output element of column col.
override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override RELU: bool = false;

fn store(i: u32, col: u32, v: f32) {
    var r = v;
    if (HAS_BIAS) {
        r += bias[col];
    }
    if (ACCUMULATE) {
        r += c[i];
    }
    if (RELU) {
        r = relu(r);
    }
    c[i] = r;
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>; // [TK][TILE]: a_tile[kk * TILE + row]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TILE]: b_tile[kk * TILE + col]

@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tiles_m = (p.m + TILE - 1u) / TILE;
    let tiles_n = (p.n + TILE - 1u) / TILE;
    let t = wid.x + wid.y * nwg.x;
    if (t >= tiles_m * tiles_n * out_batches()) {
        return;
    }
    let ob = t / (tiles_m * tiles_n);
    let rem = t % (tiles_m * tiles_n);
    let row0 = (rem / tiles_n) * TILE;
    let col0 = (rem % tiles_n) * TILE;
    let b_first = select(ob, 0u, p.sum_batch == 1u);
    let b_last = select(ob + 1u, p.batch, p.sum_batch == 1u);

    var acc: array<vec4<f32>, 4>;
    for (var bi = b_first; bi < b_last; bi++) {
        let a_base = p.a_off + bi * p.a_bs;
        let b_base = p.b_off + bi * p.b_bs;
        for (var k0 = 0u; k0 < p.k; k0 += TK) {
            // 256 invocations load the 1024 values of each tile, 4 each, zero-padded at edges.
            for (var l = 0u; l < 4u; l++) {
                let e = li + l * 256u;
                let r = e / TK;
                let ka = k0 + e % TK;
                var av = 0.0;
                if (row0 + r < p.m && ka < p.k) {
                    av = a[a_base + (row0 + r) * p.a_rs + ka * p.a_cs];
                }
                a_tile[(e % TK) * TILE + r] = av;
                let kb = e / TILE;
                let col = e % TILE;
                var bv = 0.0;
                if (k0 + kb < p.k && col0 + col < p.n) {
                    bv = b[b_base + (k0 + kb) * p.b_rs + (col0 + col) * p.b_cs];
                }
                b_tile[kb * TILE + col] = bv;
            }
            workgroupBarrier();
            for (var kk = 0u; kk < TK; kk++) {
                let bo = kk * TILE + lid.x * 4u;
                let bv = vec4<f32>(b_tile[bo], b_tile[bo + 1u], b_tile[bo + 2u], b_tile[bo + 3u]);
                let ao = kk * TILE + lid.y * 4u;
                acc[0] += a_tile[ao] * bv;
                acc[1] += a_tile[ao + 1u] * bv;
                acc[2] += a_tile[ao + 2u] * bv;
                acc[3] += a_tile[ao + 3u] * bv;
            }
            workgroupBarrier();
        }
    }
    let c_base = p.c_off + ob * p.c_bs;
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + lid.y * 4u + r;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x * 4u + j;
            if (row < p.m && col < p.n) {
                store(c_base + row * p.n + col, col, acc[r][j]);
            }
        }
    }
}

// matmul_rows (CPU adapters): a workgroup is 16 invocations sharing the same 8 rows of A, each
// invocation owning 4 columns, so a tile is 8 x 64. The A values every invocation needs at a
// given k are the same (uniform loads), B is read 4 columns per invocation, and each k step
// does 32 multiply-adds per invocation.
const ROWS: u32 = 8u;
const LANES: u32 = 16u;
const COLS: u32 = 64u;

// With ROW_SUMS (a Linear's weight gradient dY^T X, whose bias gradient is dY summed over the
// batch: the rows of A here), matmul_rows also adds up each row of A over k into row_sums,
// saving the bias gradient its own dispatch. The host asks for it only for one-piece products.
override ROW_SUMS: bool = false;
@group(0) @binding(5) var<storage, read_write> row_sums: array<f32>;

@compute @workgroup_size(16)
fn matmul_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tiles_m = (p.m + ROWS - 1u) / ROWS;
    let tiles_n = (p.n + COLS - 1u) / COLS;
    let t = wid.x + wid.y * nwg.x;
    if (t >= tiles_m * tiles_n * out_batches()) {
        return;
    }
    let ob = t / (tiles_m * tiles_n);
    let rem = t % (tiles_m * tiles_n);
    let r0 = (rem / tiles_n) * ROWS;
    let c0 = (rem % tiles_n) * COLS + li * 4u;
    let b_first = select(ob, 0u, p.sum_batch == 1u);
    let b_last = select(ob + 1u, p.batch, p.sum_batch == 1u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var sums_lo = vec4<f32>(0.0);
    var sums_hi = vec4<f32>(0.0);
    for (var bi = b_first; bi < b_last; bi++) {
        // Rows and columns past the edge re-read the last valid one; they are not stored.
        let a_base = p.a_off + bi * p.a_bs;
        let a0 = a_base + min(r0, p.m - 1u) * p.a_rs;
        let a1 = a_base + min(r0 + 1u, p.m - 1u) * p.a_rs;
        let a2 = a_base + min(r0 + 2u, p.m - 1u) * p.a_rs;
        let a3 = a_base + min(r0 + 3u, p.m - 1u) * p.a_rs;
        let a4 = a_base + min(r0 + 4u, p.m - 1u) * p.a_rs;
        let a5 = a_base + min(r0 + 5u, p.m - 1u) * p.a_rs;
        let a6 = a_base + min(r0 + 6u, p.m - 1u) * p.a_rs;
        let a7 = a_base + min(r0 + 7u, p.m - 1u) * p.a_rs;
        let b_base = p.b_off + bi * p.b_bs;
        let bc = vec4<u32>(
            min(c0, p.n - 1u),
            min(c0 + 1u, p.n - 1u),
            min(c0 + 2u, p.n - 1u),
            min(c0 + 3u, p.n - 1u),
        ) * p.b_cs + vec4<u32>(b_base);
        for (var k = 0u; k < p.k; k++) {
            let kb = k * p.b_rs;
            let bv = vec4<f32>(b[bc.x + kb], b[bc.y + kb], b[bc.z + kb], b[bc.w + kb]);
            let ka = k * p.a_cs;
            let al = vec4<f32>(a[a0 + ka], a[a1 + ka], a[a2 + ka], a[a3 + ka]);
            let ah = vec4<f32>(a[a4 + ka], a[a5 + ka], a[a6 + ka], a[a7 + ka]);
            acc0 += al.x * bv;
            acc1 += al.y * bv;
            acc2 += al.z * bv;
            acc3 += al.w * bv;
            acc4 += ah.x * bv;
            acc5 += ah.y * bv;
            acc6 += ah.z * bv;
            acc7 += ah.w * bv;
            if (ROW_SUMS) {
                sums_lo += al;
                sums_hi += ah;
            }
        }
    }
    // The first column tile's first invocation holds its 8 rows' sums.
    if (ROW_SUMS && li == 0u && rem % tiles_n == 0u) {
        for (var i = 0u; i < 4u; i++) {
            if (r0 + i < p.m) {
                row_sums[r0 + i] = sums_lo[i];
            }
            if (r0 + 4u + i < p.m) {
                row_sums[r0 + 4u + i] = sums_hi[i];
            }
        }
    }
    let c_base = p.c_off + ob * p.c_bs;
    store_row4(c_base, r0 + 0u, c0, acc0);
    store_row4(c_base, r0 + 1u, c0, acc1);
    store_row4(c_base, r0 + 2u, c0, acc2);
    store_row4(c_base, r0 + 3u, c0, acc3);
    store_row4(c_base, r0 + 4u, c0, acc4);
    store_row4(c_base, r0 + 5u, c0, acc5);
    store_row4(c_base, r0 + 6u, c0, acc6);
    store_row4(c_base, r0 + 7u, c0, acc7);
}

// matmul_blocked8: 8 x 8 invocations, each computing an 8 x 8 block of a 64 x 64 tile.
// Accumulators and addresses are separate variables, not arrays: llvmpipe keeps
// dynamically indexed private arrays in memory.
@compute @workgroup_size(64)
fn matmul_blocked8(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tiles_m = (p.m + 63u) / 64u;
    let tiles_n = (p.n + 63u) / 64u;
    let t = wid.x + wid.y * nwg.x;
    if (t >= tiles_m * tiles_n * out_batches()) {
        return;
    }
    let ob = t / (tiles_m * tiles_n);
    let rem = t % (tiles_m * tiles_n);
    let r0 = (rem / tiles_n) * 64u + (li / 8u) * 8u;
    let c0 = (rem % tiles_n) * 64u + (li % 8u) * 8u;
    if (r0 >= p.m || c0 >= p.n) {
        return;
    }
    let b_first = select(ob, 0u, p.sum_batch == 1u);
    let b_last = select(ob + 1u, p.batch, p.sum_batch == 1u);
    var lo0 = vec4<f32>(0.0);
    var hi0 = vec4<f32>(0.0);
    var lo1 = vec4<f32>(0.0);
    var hi1 = vec4<f32>(0.0);
    var lo2 = vec4<f32>(0.0);
    var hi2 = vec4<f32>(0.0);
    var lo3 = vec4<f32>(0.0);
    var hi3 = vec4<f32>(0.0);
    var lo4 = vec4<f32>(0.0);
    var hi4 = vec4<f32>(0.0);
    var lo5 = vec4<f32>(0.0);
    var hi5 = vec4<f32>(0.0);
    var lo6 = vec4<f32>(0.0);
    var hi6 = vec4<f32>(0.0);
    var lo7 = vec4<f32>(0.0);
    var hi7 = vec4<f32>(0.0);
    for (var bi = b_first; bi < b_last; bi++) {
        let a_base = p.a_off + bi * p.a_bs;
        let b_base = p.b_off + bi * p.b_bs;
        let ar0 = a_base + min(r0 + 0u, p.m - 1u) * p.a_rs;
        let ar1 = a_base + min(r0 + 1u, p.m - 1u) * p.a_rs;
        let ar2 = a_base + min(r0 + 2u, p.m - 1u) * p.a_rs;
        let ar3 = a_base + min(r0 + 3u, p.m - 1u) * p.a_rs;
        let ar4 = a_base + min(r0 + 4u, p.m - 1u) * p.a_rs;
        let ar5 = a_base + min(r0 + 5u, p.m - 1u) * p.a_rs;
        let ar6 = a_base + min(r0 + 6u, p.m - 1u) * p.a_rs;
        let ar7 = a_base + min(r0 + 7u, p.m - 1u) * p.a_rs;
        let bc0 = b_base + min(c0 + 0u, p.n - 1u) * p.b_cs;
        let bc1 = b_base + min(c0 + 1u, p.n - 1u) * p.b_cs;
        let bc2 = b_base + min(c0 + 2u, p.n - 1u) * p.b_cs;
        let bc3 = b_base + min(c0 + 3u, p.n - 1u) * p.b_cs;
        let bc4 = b_base + min(c0 + 4u, p.n - 1u) * p.b_cs;
        let bc5 = b_base + min(c0 + 5u, p.n - 1u) * p.b_cs;
        let bc6 = b_base + min(c0 + 6u, p.n - 1u) * p.b_cs;
        let bc7 = b_base + min(c0 + 7u, p.n - 1u) * p.b_cs;
        for (var k = 0u; k < p.k; k++) {
            let kb = k * p.b_rs;
            let ka = k * p.a_cs;
            let bl = vec4<f32>(b[bc0 + kb], b[bc1 + kb], b[bc2 + kb], b[bc3 + kb]);
            let bh = vec4<f32>(b[bc4 + kb], b[bc5 + kb], b[bc6 + kb], b[bc7 + kb]);
            let a0 = a[ar0 + ka];
            lo0 += a0 * bl;
            hi0 += a0 * bh;
            let a1 = a[ar1 + ka];
            lo1 += a1 * bl;
            hi1 += a1 * bh;
            let a2 = a[ar2 + ka];
            lo2 += a2 * bl;
            hi2 += a2 * bh;
            let a3 = a[ar3 + ka];
            lo3 += a3 * bl;
            hi3 += a3 * bh;
            let a4 = a[ar4 + ka];
            lo4 += a4 * bl;
            hi4 += a4 * bh;
            let a5 = a[ar5 + ka];
            lo5 += a5 * bl;
            hi5 += a5 * bh;
            let a6 = a[ar6 + ka];
            lo6 += a6 * bl;
            hi6 += a6 * bh;
            let a7 = a[ar7 + ka];
            lo7 += a7 * bl;
            hi7 += a7 * bh;
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
}

// Stores the 8 values of one row of an 8 x 8 block, skipping those past the edges.
fn store_row8(c_base: u32, row: u32, c0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (row >= p.m) {
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

// Stores the 4 values of one row of a 4-column block, skipping those past the edges.
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

// matmul_vec4 (CPU adapters): matmul_blocked8's 8 x 8 blocks, with operands read as vec4s (on
// llvmpipe a vec4 load costs far less than 4 scalar ones). Each step of 4 k values loads 8
// vec4s of A and 8 of B and does 256 multiply-adds. An operand is read either along k
// (A_K / B_K: contiguous in k, one vec4 per row or column) or across its rows / columns
// (contiguous in m or n, two vec4s per k). The host picks the form from the strides, checks
// that offsets and strides are multiples of 4, and hands a k % 4 tail to matmul_blocked8.
override A_K: bool = true;
override B_K: bool = false;

// The operands come as textures (src/backend/cpu/texels.rs): vec4 i of a buffer is the texel at
// (i % TEXEL_ROW, i / TEXEL_ROW). On llvmpipe a texel fetch costs 2-4x less than a storage load.
@group(0) @binding(1) var a_texels: texture_2d<f32>;
@group(0) @binding(2) var b_texels: texture_2d<f32>;

fn a4(i: u32) -> vec4<f32> {
    return textureLoad(a_texels, vec2<u32>(i % TEXEL_ROW, i / TEXEL_ROW), 0);
}

fn b4(i: u32) -> vec4<f32> {
    return textureLoad(b_texels, vec2<u32>(i % TEXEL_ROW, i / TEXEL_ROW), 0);
}

// The loaded vec4s of one 4-k step, and the 8 x 8 accumulators (rows lo: columns 0-3, hi:
// columns 4-7). Module-scope private variables, so the helpers below can update them.
var<private> ra0: vec4<f32>;
var<private> ra1: vec4<f32>;
var<private> ra2: vec4<f32>;
var<private> ra3: vec4<f32>;
var<private> ra4: vec4<f32>;
var<private> ra5: vec4<f32>;
var<private> ra6: vec4<f32>;
var<private> ra7: vec4<f32>;
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

// Component kk of four vec4s (kk is a constant at every call).
fn pick(v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>, kk: u32) -> vec4<f32> {
    return vec4<f32>(v0[kk], v1[kk], v2[kk], v3[kk]);
}

// Column kk of the step's A block (rows 0-3 or 4-7) and row kk of its B block (columns 0-3
// or 4-7).
fn a_col(kk: u32, high: bool) -> vec4<f32> {
    if (A_K) {
        return select(pick(ra0, ra1, ra2, ra3, kk), pick(ra4, ra5, ra6, ra7, kk), high);
    }
    switch kk {
        case 0u: { return select(ra0, ra1, high); }
        case 1u: { return select(ra2, ra3, high); }
        case 2u: { return select(ra4, ra5, high); }
        default: { return select(ra6, ra7, high); }
    }
}

fn b_row(kk: u32, high: bool) -> vec4<f32> {
    if (B_K) {
        return select(pick(rb0, rb1, rb2, rb3, kk), pick(rb4, rb5, rb6, rb7, kk), high);
    }
    switch kk {
        case 0u: { return select(rb0, rb1, high); }
        case 1u: { return select(rb2, rb3, high); }
        case 2u: { return select(rb4, rb5, high); }
        default: { return select(rb6, rb7, high); }
    }
}

// acc += A[:, k + kk] x B[k + kk, :] (an outer product of 8 x 8).
fn outer(kk: u32) {
    let al = a_col(kk, false);
    let ah = a_col(kk, true);
    let bl = b_row(kk, false);
    let bh = b_row(kk, true);
    lo0 += al.x * bl;
    hi0 += al.x * bh;
    lo1 += al.y * bl;
    hi1 += al.y * bh;
    lo2 += al.z * bl;
    hi2 += al.z * bh;
    lo3 += al.w * bl;
    hi3 += al.w * bh;
    lo4 += ah.x * bl;
    hi4 += ah.x * bh;
    lo5 += ah.y * bl;
    hi5 += ah.y * bh;
    lo6 += ah.z * bl;
    hi6 += ah.z * bh;
    lo7 += ah.w * bl;
    hi7 += ah.w * bh;
}

@compute @workgroup_size(64)
fn matmul_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let tiles_m = (p.m + 63u) / 64u;
    let tiles_n = (p.n + 63u) / 64u;
    let t = wid.x + wid.y * nwg.x;
    if (t >= tiles_m * tiles_n * out_batches()) {
        return;
    }
    let ob = t / (tiles_m * tiles_n);
    let rem = t % (tiles_m * tiles_n);
    let r0 = (rem / tiles_n) * 64u + (li / 8u) * 8u;
    let c0 = (rem % tiles_n) * 64u + (li % 8u) * 8u;
    if (r0 >= p.m || c0 >= p.n) {
        return;
    }
    let b_first = select(ob, 0u, p.sum_batch == 1u);
    let b_last = select(ob + 1u, p.batch, p.sum_batch == 1u);
    for (var bi = b_first; bi < b_last; bi++) {
        // Addresses in vec4s. Along k: row i's (or column j's) start, clamped to the last one
        // (rows and columns past the edge are not stored). Across: the block's first element.
        let a_base = (p.a_off + bi * p.a_bs) / 4u;
        let b_base = (p.b_off + bi * p.b_bs) / 4u;
        let a_rs = p.a_rs / 4u;
        let b_cs = p.b_cs / 4u;
        let ar0 = a_base + min(r0 + 0u, p.m - 1u) * a_rs;
        let ar1 = a_base + min(r0 + 1u, p.m - 1u) * a_rs;
        let ar2 = a_base + min(r0 + 2u, p.m - 1u) * a_rs;
        let ar3 = a_base + min(r0 + 3u, p.m - 1u) * a_rs;
        let ar4 = a_base + min(r0 + 4u, p.m - 1u) * a_rs;
        let ar5 = a_base + min(r0 + 5u, p.m - 1u) * a_rs;
        let ar6 = a_base + min(r0 + 6u, p.m - 1u) * a_rs;
        let ar7 = a_base + min(r0 + 7u, p.m - 1u) * a_rs;
        let bc0 = b_base + min(c0 + 0u, p.n - 1u) * b_cs;
        let bc1 = b_base + min(c0 + 1u, p.n - 1u) * b_cs;
        let bc2 = b_base + min(c0 + 2u, p.n - 1u) * b_cs;
        let bc3 = b_base + min(c0 + 3u, p.n - 1u) * b_cs;
        let bc4 = b_base + min(c0 + 4u, p.n - 1u) * b_cs;
        let bc5 = b_base + min(c0 + 5u, p.n - 1u) * b_cs;
        let bc6 = b_base + min(c0 + 6u, p.n - 1u) * b_cs;
        let bc7 = b_base + min(c0 + 7u, p.n - 1u) * b_cs;
        let a_blk = a_base + r0 / 4u;
        let b_blk = b_base + c0 / 4u;
        let a_cs = p.a_cs / 4u;
        let b_rs = p.b_rs / 4u;
        for (var k = 0u; k < p.k; k += 4u) {
            if (A_K) {
                let q = k / 4u;
                ra0 = a4(ar0 + q);
                ra1 = a4(ar1 + q);
                ra2 = a4(ar2 + q);
                ra3 = a4(ar3 + q);
                ra4 = a4(ar4 + q);
                ra5 = a4(ar5 + q);
                ra6 = a4(ar6 + q);
                ra7 = a4(ar7 + q);
            } else {
                // Element strides in vec4s: A[r, k] at a_blk * 4 + k * a_cs * 4 + r.
                ra0 = a4(a_blk + k * a_cs);
                ra1 = a4(a_blk + k * a_cs + 1u);
                ra2 = a4(a_blk + (k + 1u) * a_cs);
                ra3 = a4(a_blk + (k + 1u) * a_cs + 1u);
                ra4 = a4(a_blk + (k + 2u) * a_cs);
                ra5 = a4(a_blk + (k + 2u) * a_cs + 1u);
                ra6 = a4(a_blk + (k + 3u) * a_cs);
                ra7 = a4(a_blk + (k + 3u) * a_cs + 1u);
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
            outer(0u);
            outer(1u);
            outer(2u);
            outer(3u);
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
}

