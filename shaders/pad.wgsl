// Padding (F.pad): constant, reflect, replicate and circular, by the MODE pipeline constant.
//
// Indexing: the input is viewed as [outer, n2, n1, n0] and the output as [outer, m2, m1, m0],
// m_a = left_a + n_a + right_a. Axis 0 is the innermost padded dim; an axis the host does not
// pad has left = right = 0 (a dim of size 1, or several unpadded dims flattened into one when
// constant padding of more than three dims runs as several passes). Each axis maps
// independently: output coordinate c reads input coordinate s = source(c - left), where
//   CONSTANT:  s if 0 <= s < n, else none (the output is p.value)
//   REFLECT:   -s below 0, 2 (n - 1) - s past n - 1 (the border not repeated; pads < n)
//   REPLICATE: clamp(s, 0, n - 1)
//   CIRCULAR:  s mod n (pads <= n, so one wrap at most)
//
// pad: one invocation per output element, a gather from its source.
//
// pad_backward: one invocation per input element (o, s2, s1, s0), summing the upstream
// gradient g [outer, m2, m1, m0] over every output position that read it. Since the axes map
// independently, those positions are the product P2 x P1 x P0 of one set per axis (its
// `Preimage`): the interior position s + left, widened to a range for replicate's edges, and
// up to two mirrored or wrapped positions. A gather, so repeated reads accumulate with no
// atomics (WGSL has none on f32) and in a fixed order; the host keeps |P2| |P1| |P0| within
// the policy's loop limit (else it runs one pass per axis, and sums replicate edges wider
// than the limit with tensor ops).

struct Params {
    in_size: vec4<u32>,
    out_size: vec4<u32>,
    left: vec4<u32>,
    len: u32,
    value: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// src: the input (forward) or the upstream gradient (backward); dst: the output.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// The modes, as PadMode numbers them.
override MODE: u32 = 0u;
const CONSTANT: u32 = 0u;
const REFLECT: u32 = 1u;
const REPLICATE: u32 = 2u;
const CIRCULAR: u32 = 3u;

// The input coordinate that output coordinate c of axis a reads, or -1 for none (constant
// padding).
fn source(c: u32, a: u32) -> i32 {
    let n = i32(p.in_size[a]);
    let s = i32(c) - i32(p.left[a]);
    switch MODE {
        case REFLECT: {
            if (s < 0) {
                return -s;
            }
            return select(s, 2 * (n - 1) - s, s >= n);
        }
        case REPLICATE: {
            return clamp(s, 0, n - 1);
        }
        case CIRCULAR: {
            return (s + n) % n;
        }
        default: {
            return select(-1, s, s >= 0 && s < n);
        }
    }
}

@compute @workgroup_size(256)
fn pad(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e >= p.len) {
        return;
    }
    var rest = e;
    var at = 0u;
    var stride = 1u;
    var inside = true;
    for (var a = 0u; a < 3u; a++) {
        let s = source(rest % p.out_size[a], a);
        rest = rest / p.out_size[a];
        inside = inside && s >= 0;
        at += u32(max(s, 0)) * stride;
        stride *= p.in_size[a];
    }
    if (inside) {
        dst[e] = src[at + rest * stride];
    } else {
        dst[e] = p.value;
    }
}

// The output positions along one axis that read input coordinate s: the range lo..=hi, then
// `extra` more (0, 1 or 2) positions, first then second.
struct Preimage {
    lo: u32,
    hi: u32,
    first: u32,
    second: u32,
    extra: u32,
}

fn add_position(q: ptr<function, Preimage>, c: u32) {
    if ((*q).extra == 0u) {
        (*q).first = c;
    } else {
        (*q).second = c;
    }
    (*q).extra += 1u;
}

fn preimage(s: u32, a: u32) -> Preimage {
    let n = p.in_size[a];
    let m = p.out_size[a];
    let left = p.left[a];
    let right = m - n - left;
    var q = Preimage(s + left, s + left, 0u, 0u, 0u);
    switch MODE {
        case REFLECT: {
            // The left border mirrors s (1 <= s <= left) to left - s, the right one
            // (n - 1 - right <= s <= n - 2) to left + 2 (n - 1) - s.
            if (s >= 1u && s <= left) {
                add_position(&q, left - s);
            }
            if (s + 2u <= n && s + right + 1u >= n) {
                add_position(&q, left + 2u * (n - 1u) - s);
            }
        }
        case REPLICATE: {
            if (s == 0u) {
                q.lo = 0u;
            }
            if (s == n - 1u) {
                q.hi = m - 1u;
            }
        }
        case CIRCULAR: {
            // s is also read by the right border's copy of the start (s < right) and the
            // left border's copy of the end (s >= n - left).
            if (s + left >= n) {
                add_position(&q, s + left - n);
            }
            if (s < right) {
                add_position(&q, s + left + n);
            }
        }
        default: {}
    }
    return q;
}

fn preimage_count(q: Preimage) -> u32 {
    return q.hi + 1u - q.lo + q.extra;
}

// The t-th position of q (t < preimage_count(q)).
fn preimage_position(q: Preimage, t: u32) -> u32 {
    let range = q.hi + 1u - q.lo;
    if (t < range) {
        return q.lo + t;
    }
    return select(q.second, q.first, t == range);
}

@compute @workgroup_size(256)
fn pad_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e >= p.len) {
        return;
    }
    let n = p.in_size;
    let q0 = preimage(e % n.x, 0u);
    let q1 = preimage((e / n.x) % n.y, 1u);
    let q2 = preimage((e / (n.x * n.y)) % n.z, 2u);
    let o = e / (n.x * n.y * n.z);
    var acc = 0.0;
    for (var t2 = 0u; t2 < preimage_count(q2); t2++) {
        let row2 = (o * p.out_size.z + preimage_position(q2, t2)) * p.out_size.y;
        for (var t1 = 0u; t1 < preimage_count(q1); t1++) {
            let row1 = (row2 + preimage_position(q1, t1)) * p.out_size.x;
            for (var t0 = 0u; t0 < preimage_count(q0); t0++) {
                acc += src[row1 + preimage_position(q0, t0)];
            }
        }
    }
    dst[e] = acc;
}
