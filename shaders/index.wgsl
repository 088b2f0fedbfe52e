// Indexing along one dimension (narrow, cat, index_select, gather), one_hot, and the
// elementwise selections (where, equal).
//
// Indexing: a source is viewed as [outer, n, inner] (n = the indexed dim), the output of
// `take` as [outer, m, inner]. Output element (o, j, i) reads source element (o, k, i), where
// its index k is, by the MODE pipeline constant:
//   RANGE (narrow):           k = start + j
//   LIST (index_select):      k = idx[j]
//   ELEMENTWISE (gather):     k = idx[(o * m + j) * inner + i]
// Indices are f32-stored integers (exact below 2^24). One that is not an index (negative,
// >= n, fractional or NaN) gives p.invalid (NaN) as its output, so a bad device index makes
// the result NaN, never silently wrong; its position sends no gradient anywhere.
//
// take_backward scatter-adds the upstream gradient g [outer, m, inner] into the source's
// shape: one invocation per source element (o, k, i) and chunk of `chunk` index positions j,
// summing the g whose index is k. Repeated indices accumulate with no atomics (WGSL has none
// on f32) and in a fixed order. The output is [chunks, outer, n, inner]; the host sums over
// the chunks when one row of indices is longer than one invocation may loop over. RANGE needs
// no loop: j = k - start.
//
// put (cat): copies an input [outer, m, inner] into rows start .. start + m of an output
// [outer, n, inner], one invocation per input element.

struct Params {
    outer: u32,
    n: u32,
    m: u32,
    inner: u32,
    start: u32,
    chunk: u32,
    len: u32,
    invalid: f32,
}

override MODE: u32 = 0u;
const RANGE: u32 = 0u;
const LIST: u32 = 1u;
const ELEMENTWISE: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;

// take and take_backward: src is the source (the gradient g in the backward), idx the
// indices (a dummy for RANGE), dst the output.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
// put and one_hot write their output at binding 2.
@group(0) @binding(2) var<storage, read_write> put_dst: array<f32>;

// Element (o, j, i)'s index, as stored.
fn index_of(o: u32, j: u32, i: u32) -> f32 {
    switch MODE {
        case LIST: {
            return idx[j];
        }
        case ELEMENTWISE: {
            return idx[(o * p.m + j) * p.inner + i];
        }
        default: {
            return f32(p.start + j);
        }
    }
}

// Whether k is an index into a dim of n.
fn is_index(k: f32, n: u32) -> bool {
    return k >= 0.0 && k < f32(n) && floor(k) == k;
}

@compute @workgroup_size(256)
fn take(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e >= p.len) {
        return;
    }
    let o = e / (p.m * p.inner);
    let j = (e / p.inner) % p.m;
    let i = e % p.inner;
    let k = index_of(o, j, i);
    if (is_index(k, p.n)) {
        dst[e] = src[(o * p.n + u32(k)) * p.inner + i];
    } else {
        dst[e] = p.invalid;
    }
}

@compute @workgroup_size(256)
fn take_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e >= p.len) {
        return;
    }
    let per_chunk = p.outer * p.n * p.inner;
    let first = (e / per_chunk) * p.chunk;
    let r = e % per_chunk;
    let o = r / (p.n * p.inner);
    let k = (r / p.inner) % p.n;
    let i = r % p.inner;
    var acc = 0.0;
    if (MODE == RANGE) {
        if (k >= p.start && k - p.start < p.m) {
            acc = src[(o * p.m + k - p.start) * p.inner + i];
        }
    } else {
        for (var j = first; j < min(first + p.chunk, p.m); j++) {
            if (index_of(o, j, i) == f32(k)) {
                acc += src[(o * p.m + j) * p.inner + i];
            }
        }
    }
    dst[e] = acc;
}

@compute @workgroup_size(256)
fn put(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        let o = e / (p.m * p.inner);
        let j = (e / p.inner) % p.m;
        put_dst[(o * p.n + p.start + j) * p.inner + e % p.inner] = src[e];
    }
}

// one_hot: src holds the m = len / n class indices, out the [m, n] rows (n classes); a row
// whose index is not a class is all p.invalid (NaN).
@compute @workgroup_size(256)
fn one_hot(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        let k = src[e / p.n];
        put_dst[e] = select(p.invalid, select(0.0, 1.0, k == f32(e % p.n)), is_index(k, p.n));
    }
}

// The elementwise selections over same-shape tensors (the host broadcasts first), p.len
// elements:
// - select_where: out = a where cond != 0, else b (torch.where);
// - where_backward: ga = g where cond != 0 (else 0), gb = g where cond == 0 (else 0);
// - equal: out = 1 where a == b, else 0 (the ties of amax / amin).
@group(0) @binding(1) var<storage, read> cond: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> sel: array<f32>;
@group(0) @binding(3) var<storage, read_write> ga: array<f32>;
@group(0) @binding(4) var<storage, read_write> gb: array<f32>;
@group(0) @binding(3) var<storage, read_write> eq_out: array<f32>;

@compute @workgroup_size(256)
fn select_where(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        sel[e] = select(b[e], a[e], cond[e] != 0.0);
    }
}

// Here a is the upstream gradient.
@compute @workgroup_size(256)
fn where_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        let c = cond[e] != 0.0;
        ga[e] = select(0.0, a[e], c);
        gb[e] = select(a[e], 0.0, c);
    }
}

// Here cond is the first operand.
@compute @workgroup_size(256)
fn equal(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        eq_out[e] = select(0.0, 1.0, cond[e] == a[e]);
    }
}
