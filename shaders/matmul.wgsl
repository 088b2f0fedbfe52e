// The matrix product's portable kernel (what GPUs run): matmul_tiled. The module starts with
// matmul_common.wgsl (parameters, indexing, bindings, the epilogue); the register-block
// kernels for CPU adapters are in cpu/matmul_blocked.wgsl and cpu/matmul_subgroup.wgsl.
//
// matmul_tiled: 16x16 invocations share 64x16 tiles of A and B in workgroup memory; each
// invocation accumulates a 4x4 block of the 64x64 output tile.

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>; // [TK][TILE]: a_tile[kk * TILE + row]
var<workgroup> b_tile: array<f32, 1024>; // [TK][TILE]: b_tile[kk * TILE + col]

// The builtins come one by one, not as an `Invocation`: Chromium's compiler counts a struct
// holding the (non-uniform) local index as non-uniform, and the barriers below need the tile's
// validity to be uniform.
@compute @workgroup_size(16, 16)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let tile = tile_of(wid, nwg, TILE, TILE);
    if (!tile.valid) { return; }
    let row0 = tile.row0;
    let col0 = tile.col0;
    var acc: array<vec4<f32>, 4>;
    for (var bi = tile.b_first; bi < tile.b_last; bi++) {
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
    for (var r = 0u; r < 4u; r++) {
        let row = row0 + lid.y * 4u + r;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x * 4u + j;
            if (row < p.m && col < p.n) {
                store(tile.c_base + row * p.n + col, col, acc[r][j]);
            }
        }
    }
}
