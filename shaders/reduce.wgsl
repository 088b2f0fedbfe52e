// Reductions over one dimension and their backward.
//
// Indexing: the input is viewed as [outer, n, inner] (n = the reduced dim; `sum()` over all
// elements is [1, numel, 1]). Element (o, k, i) sits at (o * n + k) * inner + i (`at`).
// The sums cover `chunk` consecutive k at a time, so the output is [outer, ceil(n / chunk),
// inner]; the host picks chunk = n (one stage) unless a row is longer than one invocation may
// loop (lavapipe stops loops after 65,535 iterations), and then sums the partial sums again.
// - sum_rows: one invocation per output, looping over its chunk (many outputs);
// - sum_rows_wide: one 256-invocation workgroup per output, each invocation striding over the
//   chunk, then a tree reduction in workgroup memory (few, long rows);
// - sum_backward: one invocation per input element, gx = g[o, i] * scale;
// - max_rows / max_backward: the max and the index of its first occurrence (NaN wins, as in
//   PyTorch); the backward routes g to that index only (a gather: deterministic).
// Summing a gradient over the dims it was broadcast along (`sum_to`) is binary.wgsl's backward.

struct Params {
    outer: u32,
    n: u32,
    inner: u32,
    scale: f32,
    chunk: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// The sums and max_rows: x is the input [outer, n, inner], y the output; max_rows writes the
// indices (as f32) to idx.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<f32>;
// max_merge: the per-chunk values and indices [outer, n = chunks, inner], and the merged
// values and indices [outer, inner].
@group(0) @binding(1) var<storage, read> part_val: array<f32>;
@group(0) @binding(2) var<storage, read> part_idx: array<f32>;
@group(0) @binding(3) var<storage, read_write> merged_val: array<f32>;
@group(0) @binding(4) var<storage, read_write> merged_idx: array<f32>;
// max_backward: g [outer, inner], the saved indices, gx [outer, n, inner].
@group(0) @binding(1) var<storage, read> mg: array<f32>;
@group(0) @binding(2) var<storage, read> midx: array<f32>;
@group(0) @binding(3) var<storage, read_write> mgx: array<f32>;

fn at(o: u32, k: u32, i: u32) -> u32 {
    return (o * p.n + k) * p.inner + i;
}

// Output j of a chunked reduction, [outer, chunks, inner]: row (o, i), k from first to end.
struct Chunk {
    o: u32,
    i: u32,
    first: u32,
    end: u32,
}

fn chunks() -> u32 {
    return (p.n + p.chunk - 1u) / p.chunk;
}

fn chunk_of(j: u32) -> Chunk {
    let first = ((j / p.inner) % chunks()) * p.chunk;
    return Chunk(j / (chunks() * p.inner), j % p.inner, first, min(first + p.chunk, p.n));
}

// Input element e of [outer, n, inner]: its (o, i) position in the [outer, inner] output.
fn reduced_at(e: u32) -> u32 {
    return (e / (p.n * p.inner)) * p.inner + e % p.inner;
}

// Whether v takes over from the max so far: larger, or the first NaN (after a NaN nothing
// does, and ties keep the first occurrence).
fn beats(v: f32, best: f32) -> bool {
    return !is_nan(best) && (v > best || is_nan(v));
}

@compute @workgroup_size(256)
fn sum_rows(inv: Invocation) {
    let j = flat_index(inv, 256u);
    if (j < p.outer * chunks() * p.inner) {
        let c = chunk_of(j);
        var acc = 0.0;
        for (var k = c.first; k < c.end; k++) {
            acc += x[at(c.o, k, c.i)];
        }
        y[j] = acc * p.scale;
    }
}

@compute @workgroup_size(256)
fn sum_rows_wide(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let j = workgroup_index(wid, nwg);
    // Uniform per workgroup, so returning early keeps the barriers below uniform.
    if (j >= p.outer * chunks() * p.inner) {
        return;
    }
    let c = chunk_of(j);
    var acc = 0.0;
    for (var k = c.first + lid; k < c.end; k += 256u) {
        acc += x[at(c.o, k, c.i)];
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u) {
        y[j] = total * p.scale;
    }
}

// Here x is the upstream gradient [outer, inner] and y the input gradient [outer, n, inner].
@compute @workgroup_size(256)
fn sum_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.outer * p.n * p.inner) {
        y[e] = x[reduced_at(e)] * p.scale;
    }
}

// max_rows covers `chunk` consecutive k per output, like the sums: the output is
// [outer, ceil(n / chunk), inner] values and (global) indices; max_merge then picks, per
// [outer, inner], the first chunk holding the overall max (so ties still go to the first
// occurrence and NaN still wins).
@compute @workgroup_size(256)
fn max_rows(inv: Invocation) {
    let j = flat_index(inv, 256u);
    if (j >= p.outer * chunks() * p.inner) {
        return;
    }
    let c = chunk_of(j);
    var best = x[at(c.o, c.first, c.i)];
    var best_k = c.first;
    for (var k = c.first + 1u; k < c.end; k++) {
        let v = x[at(c.o, k, c.i)];
        if (beats(v, best)) {
            best = v;
            best_k = k;
        }
    }
    y[j] = best;
    idx[j] = f32(best_k);
}

@compute @workgroup_size(256)
fn max_merge(inv: Invocation) {
    let j = flat_index(inv, 256u);
    if (j < p.outer * p.inner) {
        let o = j / p.inner;
        let i = j % p.inner;
        var best = part_val[at(o, 0u, i)];
        var best_at = at(o, 0u, i);
        for (var c = 1u; c < p.n; c++) {
            let v = part_val[at(o, c, i)];
            if (beats(v, best)) {
                best = v;
                best_at = at(o, c, i);
            }
        }
        merged_val[j] = best;
        merged_idx[j] = part_idx[best_at];
    }
}

@compute @workgroup_size(256)
fn max_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.outer * p.n * p.inner) {
        let k = (e / p.inner) % p.n;
        mgx[e] = select(0.0, mg[reduced_at(e)], u32(midx[reduced_at(e)]) == k);
    }
}
