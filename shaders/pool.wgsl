// 2-D max and average pooling over NCHW planes, and their backward.
//
// Indexing: one invocation per output element (n, c, oh, ow) in the forward, one per input
// element (n, c, h, w) in the backward (one per window when the windows tile the input);
// planes are contiguous, plane index nc = n * C + c.
// Window of output (oh, ow): rows oh*SH - PH .. + KH, columns ow*SW - PW .. + KW; it always
// holds an input pixel (padding is at most half the window).
// The backward is a gather: an input pixel sums over the outputs whose window holds it,
// oh in [ceil((h + PH - KH + 1) / SH), floor((h + PH) / SH)], so it is deterministic.
// max_pool saves, per output, the index h * W + w of the window's max (first on ties, NaN wins;
// padding counts as -inf, so it never wins) as f32, and its backward routes the gradient there
// only. avg_pool divides by the window size clipped to the padded input (count_include_pad) or
// by the number of real input pixels in the window, as PyTorch does.
// The general kernels serve both: the override MAX picks the reduction.

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    count_include_pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Max pooling (true) or average pooling (false).
override MAX: bool = true;

// False under no_grad (inference): the argmax is only needed by the backward.
override SAVE_ARGMAX: bool = true;

// An element index split into (plane, row, column) of planes of `rows` x `cols`.
fn split(e: u32, rows: u32, cols: u32) -> vec3<u32> {
    let a = divmod(e, cols);
    let b = divmod(a.x, rows);
    return vec3<u32>(b.x, b.y, a.y);
}

// The top-left corner (row, column; negative in the padding) of output (oh, ow)'s window.
fn corner(oh: u32, ow: u32) -> vec2<i32> {
    return vec2<i32>(i32(oh * p.sh) - i32(p.ph), i32(ow * p.sw) - i32(p.pw));
}

// Whether v replaces the running max (after the window's first element): larger values, and
// NaN (which then stays), as PyTorch.
fn takes(v: f32, best: f32) -> bool {
    return !is_nan(best) && (v > best || is_nan(v));
}

// The averaging count of the window whose top-left corner is c.
fn divisor(c: vec2<i32>) -> f32 {
    let h_end = min(c.x + i32(p.kh), i32(p.h + p.ph));
    let w_end = min(c.y + i32(p.kw), i32(p.w + p.pw));
    if (p.count_include_pad == 1u) {
        return f32((h_end - c.x) * (w_end - c.y));
    }
    let rows = min(h_end, i32(p.h)) - max(c.x, 0);
    let cols = min(w_end, i32(p.w)) - max(c.y, 0);
    return f32(rows * cols);
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<f32>;

@compute @workgroup_size(256)
fn pool_forward(id: Invocation) {
    let e = flat_index(id, 256u);
    if (e >= p.planes * p.ho * p.wo) { return; }
    let at = split(e, p.ho, p.wo);
    let base = at.x * p.h * p.w;
    let c = corner(at.y, at.z);
    // The window's first element always takes the max (there is one: see the top), so no
    // -inf constant is needed.
    var acc = 0.0;
    var best = -1;
    for (var i = max(c.x, 0); i < min(c.x + i32(p.kh), i32(p.h)); i++) {
        for (var j = max(c.y, 0); j < min(c.y + i32(p.kw), i32(p.w)); j++) {
            let idx = i * i32(p.w) + j;
            let v = x[base + u32(idx)];
            if (!MAX) {
                acc += v;
            } else if (best < 0 || takes(v, acc)) {
                acc = v;
                best = idx;
            }
        }
    }
    if (!MAX) {
        acc /= divisor(c);
    } else if (SAVE_ARGMAX) {
        argmax[e] = f32(best);
    }
    y[e] = acc;
}

@group(0) @binding(1) var<storage, read> x2: array<vec2<f32>>;

// 2 x 2 windows with stride 2 that tile the input (H = 2 HO, W = 2 WO; W even, so every
// window row is one aligned vec2). Tile2x2 locates output o's window: `first` is its top-left
// pixel's index within the plane (as the argmax holds it), `top` the vec2 index of its top
// row in the whole tensor (the bottom row is W / 2 vec2s further).
struct Tile2x2 {
    first: u32,
    top: u32,
}

fn tile_2x2(o: u32) -> Tile2x2 {
    let at = split(o, p.ho, p.wo);
    let first = at.y * 2u * p.w + at.z * 2u;
    return Tile2x2(first, (at.x * p.h * p.w + first) / 2u);
}

// Max pooling over 2 x 2 tiles: two vec2 loads per output instead of four scalar ones.
@compute @workgroup_size(256)
fn max_pool_forward_2x2(id: Invocation) {
    let e = flat_index(id, 256u);
    if (e >= p.planes * p.ho * p.wo) { return; }
    let t = tile_2x2(e);
    let r0 = x2[t.top];
    let r1 = x2[t.top + p.w / 2u];
    var best = r0.x;
    var best_i = t.first;
    if (takes(r0.y, best)) {
        best = r0.y;
        best_i = t.first + 1u;
    }
    if (takes(r1.x, best)) {
        best = r1.x;
        best_i = t.first + p.w;
    }
    if (takes(r1.y, best)) {
        best = r1.y;
        best_i = t.first + p.w + 1u;
    }
    y[e] = best;
    if (SAVE_ARGMAX) {
        argmax[e] = f32(best_i);
    }
}

// Backward bindings: g (upstream, output-shaped), the saved argmax (max only), gx.
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> saved_argmax: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

// The range of output rows (or columns) whose window covers input row i.
fn covering(i: u32, k: u32, s: u32, pad: u32, n_out: u32) -> vec2<i32> {
    let t = i + pad;
    // first = ceil((t - k + 1) / s), or 0 when t - k + 1 <= 0; last = floor(t / s).
    var first = 0;
    if (t + 1u > k) {
        first = i32(divmod(t + s - k, s).x);
    }
    let last = min(i32(n_out) - 1, i32(divmod(t, s).x));
    return vec2<i32>(first, last);
}

@compute @workgroup_size(256)
fn pool_backward(id: Invocation) {
    let e = flat_index(id, 256u);
    if (e >= p.planes * p.h * p.w) { return; }
    let at = split(e, p.h, p.w);
    // This pixel's index within its plane, as the argmax holds it.
    let me = f32(at.y * p.w + at.z);
    let out_base = at.x * p.ho * p.wo;
    let rows = covering(at.y, p.kh, p.sh, p.ph, p.ho);
    let cols = covering(at.z, p.kw, p.sw, p.pw, p.wo);
    var acc = 0.0;
    for (var oh = rows.x; oh <= rows.y; oh++) {
        for (var ow = cols.x; ow <= cols.y; ow++) {
            let o = out_base + u32(oh) * p.wo + u32(ow);
            if (!MAX) {
                acc += g[o] / divisor(corner(u32(oh), u32(ow)));
            } else if (saved_argmax[o] == me) {
                acc += g[o];
            }
        }
    }
    gx[e] = acc;
}

// Max pooling's backward where the windows tile the input exactly (kernel = stride, no
// padding, H = HO * KH and W = WO * KW): each input pixel lies in one window, so one
// invocation per window writes its KH x KW inputs, the gradient at the saved argmax and zeros
// elsewhere. Two loads per window instead of two per input pixel.
@compute @workgroup_size(256)
fn max_pool_backward_disjoint(id: Invocation) {
    let o = flat_index(id, 256u);
    if (o >= p.planes * p.ho * p.wo) { return; }
    let at = split(o, p.ho, p.wo);
    let top = at.y * p.kh;
    let left = at.z * p.kw;
    let best = u32(saved_argmax[o]);
    let v = g[o];
    let base = at.x * p.h * p.w;
    for (var i = 0u; i < p.kh; i++) {
        let row = (top + i) * p.w;
        for (var j = 0u; j < p.kw; j++) {
            let idx = row + left + j;
            gx[base + idx] = select(0.0, v, idx == best);
        }
    }
}

@group(0) @binding(3) var<storage, read_write> gx2: array<vec2<f32>>;

// max_pool_backward_disjoint for 2 x 2 tiles: each window's rows as one aligned vec2 each.
@compute @workgroup_size(256)
fn max_pool_backward_2x2(id: Invocation) {
    let o = flat_index(id, 256u);
    if (o >= p.planes * p.ho * p.wo) { return; }
    let t = tile_2x2(o);
    let best = vec2<u32>(u32(saved_argmax[o]));
    let v = vec2<f32>(g[o]);
    let left = vec2<u32>(t.first, t.first + 1u);
    gx2[t.top] = select(vec2<f32>(0.0), v, left == best);
    gx2[t.top + p.w / 2u] = select(vec2<f32>(0.0), v, left + vec2<u32>(p.w) == best);
}
