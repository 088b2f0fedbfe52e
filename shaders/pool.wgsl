// 2-D max, average and adaptive average pooling over NCHW planes, and their backward.
//
// Indexing: one invocation per output element (n, c, oh, ow) in the forward, one per input
// element (n, c, h, w) in the backward (one per window when the windows tile the input);
// planes are contiguous, plane index nc = n * C + c.
// Window of output (oh, ow) along the rows (the columns alike): taps oh*SH - PH + k*DH for
// k = 0..KH (dilation DH, 1 but for max pooling), those inside the input read. With padding
// at most half the window and no dilation every window holds an input pixel (ceil_mode's last
// window starts inside the input or its left padding); a dilated one may read none: its max
// is -inf and its argmax -1, which no pixel matches. Adaptive average pooling (ADAPTIVE)
// instead takes PyTorch's bins, rows floor(oh*H/HO) .. ceil((oh+1)*H/HO).
// The backward is a gather: an input pixel sums over the outputs whose window spans it,
// oh in [ceil((h + PH - span + 1) / SH), floor((h + PH) / SH)] with span = (KH-1)*DH + 1
// (adaptive: [floor(h*HO/H), ceil((h+1)*HO/H) - 1]), so it is deterministic.
// max_pool saves, per output, the index h * W + w of the window's max (first on ties, NaN wins;
// padding counts as -inf, so it never wins) as f32, and its backward routes the gradient there
// only (a dilated window spans pixels it does not read; the argmax never names them). avg_pool
// divides by the window size clipped to the padded input (count_include_pad; a ceil_mode
// window hanging further is clipped there too) or by the number of real input pixels in the
// window, as PyTorch does.
// The general kernels serve all three: the overrides MAX and ADAPTIVE pick the reduction and
// the windows.

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
    dh: u32,
    dw: u32,
    count_include_pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Max pooling (true) or average pooling (false).
override MAX: bool = true;

// Adaptive average pooling's windows (MAX false): PyTorch's bins, no kernel, stride or padding.
override ADAPTIVE: bool = false;

// False under no_grad (inference): the argmax is only needed by the backward.
override SAVE_ARGMAX: bool = true;

// An element index split into (plane, row, column) of planes of `rows` x `cols`.
fn split(e: u32, rows: u32, cols: u32) -> vec3<u32> {
    let a = divmod(e, cols);
    let b = divmod(a.x, rows);
    return vec3<u32>(b.x, b.y, a.y);
}

// One axis of a window: it reads input positions first, first + step, .. below end (all
// inside the input), and `padded` is its extent clipped to the padded input (what average
// pooling with count_include_pad divides by).
struct Axis {
    first: i32,
    end: i32,
    step: i32,
    padded: i32,
}

// Output o's window along an axis of n inputs and n_out outputs, with kernel k, stride s,
// padding pad and dilation d (ADAPTIVE: PyTorch's bin o of n_out).
fn axis(o: u32, n: u32, n_out: u32, k: u32, s: u32, pad: u32, d: u32) -> Axis {
    if (ADAPTIVE) {
        let first = i32(divmod(o * n, n_out).x);
        let end = i32(divmod((o + 1u) * n + n_out - 1u, n_out).x);
        return Axis(first, end, 1, end - first);
    }
    let start = i32(o * s) - i32(pad);
    // The first tap at or after 0: start plus ceil(-start / d) steps.
    var first = start;
    if (start < 0) {
        first += i32(divmod(u32(-start) + d - 1u, d).x * d);
    }
    let end = min(start + i32((k - 1u) * d + 1u), i32(n));
    return Axis(first, end, i32(d), min(start + i32(k), i32(n + pad)) - start);
}

// The rows and the columns of output (oh, ow)'s window.
fn rows_of(oh: u32) -> Axis {
    return axis(oh, p.h, p.ho, p.kh, p.sh, p.ph, p.dh);
}

fn cols_of(ow: u32) -> Axis {
    return axis(ow, p.w, p.wo, p.kw, p.sw, p.pw, p.dw);
}

// Whether v replaces the running max (after the window's first element): larger values, and
// NaN (which then stays), as PyTorch.
fn takes(v: f32, best: f32) -> bool {
    return !is_nan(best) && (v > best || is_nan(v));
}

// The averaging count of the window with these rows and columns.
fn divisor(rows: Axis, cols: Axis) -> f32 {
    if (p.count_include_pad == 1u) {
        return f32(rows.padded * cols.padded);
    }
    return f32((rows.end - rows.first) * (cols.end - cols.first));
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
    let rows = rows_of(at.y);
    let cols = cols_of(at.z);
    // The window's first element takes the max, so no -inf constant is needed but for a
    // window that reads nothing.
    var acc = 0.0;
    var best = -1;
    for (var i = rows.first; i < rows.end; i += rows.step) {
        for (var j = cols.first; j < cols.end; j += cols.step) {
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
        acc /= divisor(rows, cols);
    } else {
        if (best < 0) {
            // -inf, made at run time (p.planes >= 1 here): Tint refuses a constant one.
            acc = bitcast<f32>(0xff800000u | min(p.planes, 0u));
        }
        if (SAVE_ARGMAX) {
            argmax[e] = f32(best);
        }
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

// The outputs (first, last) along an axis (as `axis` takes it) whose window spans input i.
fn covering(i: u32, n: u32, n_out: u32, k: u32, s: u32, pad: u32, d: u32) -> vec2<i32> {
    if (ADAPTIVE) {
        let first = i32(divmod(i * n_out, n).x);
        return vec2<i32>(first, i32(divmod((i + 1u) * n_out + n - 1u, n).x) - 1);
    }
    let t = i + pad;
    let span = (k - 1u) * d + 1u;
    // first = ceil((t - span + 1) / s), or 0 when t - span + 1 <= 0; last = floor(t / s).
    var first = 0;
    if (t + 1u > span) {
        first = i32(divmod(t + s - span, s).x);
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
    let rows = covering(at.y, p.h, p.ho, p.kh, p.sh, p.ph, p.dh);
    let cols = covering(at.z, p.w, p.wo, p.kw, p.sw, p.pw, p.dw);
    var acc = 0.0;
    for (var oh = rows.x; oh <= rows.y; oh++) {
        for (var ow = cols.x; ow <= cols.y; ow++) {
            let o = out_base + u32(oh) * p.wo + u32(ow);
            if (!MAX) {
                acc += g[o] / divisor(rows_of(u32(oh)), cols_of(u32(ow)));
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
