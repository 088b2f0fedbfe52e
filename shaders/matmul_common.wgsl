// What every matrix-product module shares (shaders/matmul.wgsl, shaders/cpu/matmul_blocked.wgsl,
// shaders/cpu/matmul_subgroup.wgsl start with this file; src/backend/gemm.rs): the parameters,
// the bindings, which output tile a workgroup computes, and the epilogue.
//
// Batched matrix product C[bi] = A[bi] x B[bi] with arbitrary strides, so transposed operands
// (the backward's A^T and B^T) and column matrices are read in place rather than copied.
// Indexing: A[bi, r, k] = a[a_off + bi * a_bs + r * a_rs + k * a_cs], B likewise;
// C[bi, r, c] = c[c_off + bi * c_bs + r * n + c]. The flat workgroup index
// t = wid.x + wid.y * num_workgroups.x enumerates output tiles: the output batch
// t / (tiles_m * tiles_n), then the tile's row and column.
// With sum_batch = 1 there is one output, C = sum over bi of A[bi] x B[bi] (a weight gradient
// summed over images). The epilogue is made of pipeline constants: with ACCUMULATE the result
// is added to C instead of stored; with HAS_BIAS every output gets bias[c] added, and with
// RELU the final value goes through relu (Linear's epilogue, saving a broadcast add and an
// activation pass). Constants rather than uniforms because llvmpipe runs a branch on a
// uniform masked: each output paid for the bias and C loads it did not use. Where the shader
// compiler is slow (Policy::gemm_epilogue_in_params), EPILOGUE_IN_PARAMS reads the epilogue
// from the parameters instead, so that every epilogue of a kernel shares one pipeline.

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
    // Read with EPILOGUE_IN_PARAMS; otherwise the pipeline constants ACCUMULATE, HAS_BIAS and
    // RELU hold these.
    accumulate: u32,
    has_bias: u32,
    relu: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The operands as arrays of floats; the kernels that read them as textures bind those at
// 1 and 2 instead (cpu/matmul_registers.wgsl).
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

override HAS_BIAS: bool = false;
override ACCUMULATE: bool = false;
override RELU: bool = false;
override EPILOGUE_IN_PARAMS: bool = false;

// The epilogue's parts, from the constants or the parameters.
fn has_bias() -> bool {
    return select(HAS_BIAS, p.has_bias == 1u, EPILOGUE_IN_PARAMS);
}

fn accumulates() -> bool {
    return select(ACCUMULATE, p.accumulate == 1u, EPILOGUE_IN_PARAMS);
}

fn has_relu() -> bool {
    return select(RELU, p.relu == 1u, EPILOGUE_IN_PARAMS);
}

// Every product kernel takes the prelude's `Invocation` (some also take other builtins).

// The output tile of one workgroup: its output batch, first row and column, the operand
// batches summed into it (b_first .. b_last - 1: all of them with sum_batch) and where its
// output matrix starts in c. `valid` is false for the workgroups of a grid past the last tile.
struct Tile {
    valid: bool,
    ob: u32,
    row0: u32,
    col0: u32,
    b_first: u32,
    b_last: u32,
    c_base: u32,
}

// The tile of the invocation's workgroup in a grid of tiles of tile_m x tile_n outputs.
fn tile_of(wid: vec3<u32>, nwg: vec3<u32>, tile_m: u32, tile_n: u32) -> Tile {
    let tiles_m = (p.m + tile_m - 1u) / tile_m;
    let tiles_n = (p.n + tile_n - 1u) / tile_n;
    let t = workgroup_index(wid, nwg);
    let out_batches = select(p.batch, 1u, p.sum_batch == 1u);
    let ob = t / (tiles_m * tiles_n);
    let rem = t % (tiles_m * tiles_n);
    return Tile(
        t < tiles_m * tiles_n * out_batches,
        ob,
        (rem / tiles_n) * tile_m,
        (rem % tiles_n) * tile_n,
        select(ob, 0u, p.sum_batch == 1u),
        select(ob + 1u, p.batch, p.sum_batch == 1u),
        p.c_off + ob * p.c_bs,
    );
}

// The epilogue's first part: the bias of column col added, when there is one.
fn with_bias(v: f32, col: u32) -> f32 {
    if (has_bias()) {
        return v + bias[col];
    }
    return v;
}

// The epilogue's last part, once the sum is complete.
fn activation(v: f32) -> f32 {
    if (has_relu()) {
        return relu(v);
    }
    return v;
}

// Stores or adds output element i of column col.
fn store(i: u32, col: u32, v: f32) {
    var r = with_bias(v, col);
    if (accumulates()) {
        r += c[i];
    }
    c[i] = activation(r);
}
