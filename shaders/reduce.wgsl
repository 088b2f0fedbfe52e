// Reductions over one dimension and their backward.
//
// Indexing: the input is viewed as [outer, n, inner] (n = the reduced dim; `sum()` over all
// elements is [1, numel, 1]). Element (o, k, i) sits at (o * n + k) * inner + i.
// The sums cover `chunk` consecutive k at a time, so the output is [outer, ceil(n / chunk),
// inner]; the host picks chunk = n (one stage) unless a row is longer than one invocation may
// loop (lavapipe stops loops after 65,535 iterations), and then sums the partial sums again.
// - sum_rows: one invocation per output, looping over its chunk (many outputs);
// - sum_rows_wide: one 256-invocation workgroup per output, each invocation striding over the
//   chunk, then a tree reduction in workgroup memory (few, long rows);
// - sum_backward: one invocation per input element, gx = g[o, i] * scale;
// - max_rows / max_backward: the max and the index of its first occurrence (NaN wins, as in
//   PyTorch); the backward routes g to that index only (a gather: deterministic);
// - sum_to: sums a gradient over the dims it was broadcast along (as binary.wgsl's backward).

struct Params {
    // sum_to only: the shapes (8 entries packed in two vec4s, as uniform arrays need; entry d
    // is v[d >> 2][d & 3]),
    // then its target size, rank and number of summed positions.
    src_shape: array<vec4<u32>, 2>,
    t_shape: array<vec4<u32>, 2>,
    len: u32,
    rank: u32,
    red_count: u32,
    outer: u32,
    n: u32,
    inner: u32,
    scale: f32,
    chunk: u32,
}


@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn sum_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = linear_index(wid, nwg, lid);
    let chunks = (p.n + p.chunk - 1u) / p.chunk;
    if (j >= p.outer * chunks * p.inner) {
        return;
    }
    let o = j / (chunks * p.inner);
    let first = ((j / p.inner) % chunks) * p.chunk;
    let i = j % p.inner;
    var acc = 0.0;
    for (var k = first; k < min(first + p.chunk, p.n); k++) {
        acc += x[(o * p.n + k) * p.inner + i];
    }
    y[j] = acc * p.scale;
}

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn sum_rows_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = wid.x + wid.y * nwg.x;
    let chunks = (p.n + p.chunk - 1u) / p.chunk;
    // Uniform per workgroup, so returning early keeps the barriers below uniform.
    if (j >= p.outer * chunks * p.inner) {
        return;
    }
    let o = j / (chunks * p.inner);
    let first = ((j / p.inner) % chunks) * p.chunk;
    let i = j % p.inner;
    var acc = 0.0;
    for (var k = first + lid; k < min(first + p.chunk, p.n); k += 256u) {
        acc += x[(o * p.n + k) * p.inner + i];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step = step / 2u) {
        if (lid < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        y[j] = partial[0] * p.scale;
    }
}

@compute @workgroup_size(256)
fn sum_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Here x is the upstream gradient [outer, inner] and y the input gradient [outer, n, inner].
    let e = linear_index(wid, nwg, lid);
    if (e >= p.outer * p.n * p.inner) {
        return;
    }
    let i = e % p.inner;
    let o = e / (p.n * p.inner);
    y[e] = x[o * p.inner + i] * p.scale;
}

// max_rows writes the values to y and the indices (as f32) to idx.
@group(0) @binding(3) var<storage, read_write> idx: array<f32>;

// max_rows covers `chunk` consecutive k per output, like the sums: the output is
// [outer, ceil(n / chunk), inner] values and (global) indices; max_merge then picks, per
// [outer, inner], the first chunk holding the overall max (so ties still go to the first
// occurrence and NaN still wins).
@compute @workgroup_size(256)
fn max_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = linear_index(wid, nwg, lid);
    let chunks = (p.n + p.chunk - 1u) / p.chunk;
    if (j >= p.outer * chunks * p.inner) {
        return;
    }
    let o = j / (chunks * p.inner);
    let first = ((j / p.inner) % chunks) * p.chunk;
    let i = j % p.inner;
    var best = x[(o * p.n + first) * p.inner + i];
    var best_k = first;
    for (var k = first + 1u; k < min(first + p.chunk, p.n); k++) {
        let v = x[(o * p.n + k) * p.inner + i];
        if (!is_nan(best) && (v > best || is_nan(v))) {
            best = v;
            best_k = k;
        }
    }
    y[j] = best;
    idx[j] = f32(best_k);
}

// max_merge bindings: the per-chunk values and indices [outer, n = chunks, inner], and the
// merged values and indices [outer, inner].
@group(0) @binding(1) var<storage, read> part_val: array<f32>;
@group(0) @binding(2) var<storage, read> part_idx: array<f32>;
@group(0) @binding(3) var<storage, read_write> merged_val: array<f32>;
@group(0) @binding(4) var<storage, read_write> merged_idx: array<f32>;

@compute @workgroup_size(256)
fn max_merge(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = linear_index(wid, nwg, lid);
    if (j >= p.outer * p.inner) {
        return;
    }
    let o = j / p.inner;
    let i = j % p.inner;
    var at = o * p.n * p.inner + i;
    var best = part_val[at];
    var best_at = at;
    for (var c = 1u; c < p.n; c++) {
        at = (o * p.n + c) * p.inner + i;
        let v = part_val[at];
        if (!is_nan(best) && (v > best || is_nan(v))) {
            best = v;
            best_at = at;
        }
    }
    merged_val[j] = best;
    merged_idx[j] = part_idx[best_at];
}

// Backward bindings: g [outer, inner], the saved indices, gx [outer, n, inner].
@group(0) @binding(1) var<storage, read> mg: array<f32>;
@group(0) @binding(2) var<storage, read> midx: array<f32>;
@group(0) @binding(3) var<storage, read_write> mgx: array<f32>;

@compute @workgroup_size(256)
fn max_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.outer * p.n * p.inner) {
        return;
    }
    let i = e % p.inner;
    let k = (e / p.inner) % p.n;
    let o = e / (p.n * p.inner);
    let j = o * p.inner + i;
    mgx[e] = select(0.0, mg[j], u32(midx[j]) == k);
}

// sum_to: x has shape src_shape, y has t_shape (same rank, 1 where summed).
@compute @workgroup_size(256)
fn sum_to(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len) {
        return;
    }
    var t_idx: array<u32, 8>;
    var rest = e;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        t_idx[d] = rest % p.t_shape[d >> 2u][d & 3];
        rest = rest / p.t_shape[d >> 2u][d & 3];
    }
    var acc = 0.0;
    for (var r = 0u; r < p.red_count; r++) {
        var rr = r;
        var off = 0u;
        var stride = 1u;
        for (var d = i32(p.rank) - 1; d >= 0; d--) {
            var k = t_idx[d];
            if (p.t_shape[d >> 2u][d & 3] == 1u && p.src_shape[d >> 2u][d & 3] != 1u) {
                k = rr % p.src_shape[d >> 2u][d & 3];
                rr = rr / p.src_shape[d >> 2u][d & 3];
            }
            off += k * stride;
            stride *= p.src_shape[d >> 2u][d & 3];
        }
        acc += x[off];
    }
    y[e] = acc;
}
