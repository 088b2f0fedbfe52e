// 2-D max and average pooling over NCHW planes, and their backward.
//
// Indexing: one invocation per output element (n, c, oh, ow) in the forward, one per input
// element (n, c, h, w) in the backward (one per window when the windows tile the input);
// planes are contiguous, plane index nc = n * C + c.
// Window of output (oh, ow): rows oh*SH - PH .. + KH, columns ow*SW - PW .. + KW.
// The backward is a gather: an input pixel sums over the outputs whose window holds it,
// oh in [ceil((h + PH - KH + 1) / SH), floor((h + PH) / SH)], so it is deterministic.
// max_pool saves, per output, the index h * W + w of the window's max (first on ties, NaN wins;
// padding counts as -inf) as f32, and its backward routes the gradient there only.
// avg_pool divides by the window size clipped to the padded input (count_include_pad) or by
// the number of real input pixels in the window, as PyTorch does.

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

// An element index split into (plane, row, column) of planes of `rows` x `cols`.
fn split(e: u32, rows: u32, cols: u32) -> vec3<u32> {
    let a = divmod(e, cols);
    let b = divmod(a.x, rows);
    return vec3<u32>(b.x, b.y, a.y);
}

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid;
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<f32>;

@compute @workgroup_size(256)
fn max_pool_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.planes * p.ho * p.wo) {
        return;
    }
    let at = split(e, p.ho, p.wo);
    let ow = at.z;
    let oh = at.y;
    let base = at.x * p.h * p.w;
    let h0 = i32(oh * p.sh) - i32(p.ph);
    let w0 = i32(ow * p.sw) - i32(p.pw);
    var best = bitcast<f32>(0xff800000u); // -inf
    var best_i = -1;
    for (var i = max(h0, 0); i < min(h0 + i32(p.kh), i32(p.h)); i++) {
        for (var j = max(w0, 0); j < min(w0 + i32(p.kw), i32(p.w)); j++) {
            let idx = i * i32(p.w) + j;
            let v = x[base + u32(idx)];
            if (best_i < 0 || takes(v, best)) {
                best = v;
                best_i = idx;
            }
        }
    }
    y[e] = best;
    if (SAVE_ARGMAX) {
        argmax[e] = f32(best_i);
    }
}

// False under no_grad (inference): the argmax is only needed by the backward.
override SAVE_ARGMAX: bool = true;

@group(0) @binding(1) var<storage, read> x2: array<vec2<f32>>;

// Whether v replaces the running max: the first element always, then larger values, and NaN
// (which then stays), as PyTorch.
fn takes(v: f32, best: f32) -> bool {
    return !is_nan(best) && (v > best || is_nan(v));
}

// 2 x 2 windows with stride 2 that tile the input (H = 2 HO, W = 2 WO; W even, so every
// window row is one aligned vec2): two vec2 loads per output instead of four scalar ones.
@compute @workgroup_size(256)
fn max_pool_forward_2x2(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.planes * p.ho * p.wo) {
        return;
    }
    let at = split(e, p.ho, p.wo);
    // Row 2 oh of plane at.x starts at element (at.x * H + 2 oh) * W, an even number.
    let top = ((at.x * p.h + at.y * 2u) * p.w) / 2u + at.z;
    let r0 = x2[top];
    let r1 = x2[top + p.w / 2u];
    let i0 = at.y * 2u * p.w + at.z * 2u;
    var best = r0.x;
    var best_i = i0;
    if (takes(r0.y, best)) {
        best = r0.y;
        best_i = i0 + 1u;
    }
    if (takes(r1.x, best)) {
        best = r1.x;
        best_i = i0 + p.w;
    }
    if (takes(r1.y, best)) {
        best = r1.y;
        best_i = i0 + p.w + 1u;
    }
    y[e] = best;
    if (SAVE_ARGMAX) {
        argmax[e] = f32(best_i);
    }
}

@compute @workgroup_size(256)
fn avg_pool_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.planes * p.ho * p.wo) {
        return;
    }
    let at = split(e, p.ho, p.wo);
    let ow = at.z;
    let oh = at.y;
    let base = at.x * p.h * p.w;
    let h0 = i32(oh * p.sh) - i32(p.ph);
    let w0 = i32(ow * p.sw) - i32(p.pw);
    var s = 0.0;
    for (var i = max(h0, 0); i < min(h0 + i32(p.kh), i32(p.h)); i++) {
        for (var j = max(w0, 0); j < min(w0 + i32(p.kw), i32(p.w)); j++) {
            s += x[base + u32(i * i32(p.w) + j)];
        }
    }
    y[e] = s / divisor(h0, w0);
}

// The averaging count of the window whose top-left corner is (h0, w0).
fn divisor(h0: i32, w0: i32) -> f32 {
    let h_end = min(h0 + i32(p.kh), i32(p.h + p.ph));
    let w_end = min(w0 + i32(p.kw), i32(p.w + p.pw));
    if (p.count_include_pad == 1u) {
        return f32((h_end - h0) * (w_end - w0));
    }
    let rows = min(h_end, i32(p.h)) - max(h0, 0);
    let cols = min(w_end, i32(p.w)) - max(w0, 0);
    return f32(rows * cols);
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
fn max_pool_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.planes * p.h * p.w) {
        return;
    }
    let at = split(e, p.h, p.w);
    let iw = at.z;
    let ih = at.y;
    let out_base = at.x * p.ho * p.wo;
    let me = f32(ih * p.w + iw);
    let rows = covering(ih, p.kh, p.sh, p.ph, p.ho);
    let cols = covering(iw, p.kw, p.sw, p.pw, p.wo);
    var acc = 0.0;
    for (var oh = rows.x; oh <= rows.y; oh++) {
        for (var ow = cols.x; ow <= cols.y; ow++) {
            let o = out_base + u32(oh) * p.wo + u32(ow);
            if (saved_argmax[o] == me) {
                acc += g[o];
            }
        }
    }
    gx[e] = acc;
}

// Windows that tile the input exactly (kernel = stride, no padding; 2 x 2 has its own kernel
// below): each input pixel lies in at most one window, so there is nothing to loop over.
@compute @workgroup_size(256)
fn max_pool_backward_disjoint(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Windows that tile the input exactly (kernel = stride, no padding, H = HO * KH and
    // W = WO * KW): one invocation per window writes its KH x KW inputs, the gradient at the
    // saved argmax and zeros elsewhere. Two loads per window instead of two per input pixel.
    let o = linear_index(wid, nwg, lid);
    if (o >= p.planes * p.ho * p.wo) {
        return;
    }
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

// max_pool_backward_disjoint for 2 x 2 tiles (W even): each window's two rows are written as
// one aligned vec2 each.
@compute @workgroup_size(256)
fn max_pool_backward_2x2(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let o = linear_index(wid, nwg, lid);
    if (o >= p.planes * p.ho * p.wo) {
        return;
    }
    let at = split(o, p.ho, p.wo);
    // Indices within the plane, as the argmax holds them.
    let i0 = at.y * 2u * p.w + at.z * 2u;
    let best = u32(saved_argmax[o]);
    let v = g[o];
    let top = (at.x * p.h * p.w + i0) / 2u;
    gx2[top] = select(vec2<f32>(0.0), vec2<f32>(v), vec2<u32>(i0, i0 + 1u) == vec2<u32>(best));
    gx2[top + p.w / 2u] = select(
        vec2<f32>(0.0),
        vec2<f32>(v),
        vec2<u32>(i0 + p.w, i0 + p.w + 1u) == vec2<u32>(best),
    );
}

@compute @workgroup_size(256)
fn avg_pool_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.planes * p.h * p.w) {
        return;
    }
    let at = split(e, p.h, p.w);
    let iw = at.z;
    let ih = at.y;
    let out_base = at.x * p.ho * p.wo;
    let rows = covering(ih, p.kh, p.sh, p.ph, p.ho);
    let cols = covering(iw, p.kw, p.sw, p.pw, p.wo);
    var acc = 0.0;
    for (var oh = rows.x; oh <= rows.y; oh++) {
        for (var ow = cols.x; ow <= cols.y; ow++) {
            let h0 = oh * i32(p.sh) - i32(p.ph);
            let w0 = ow * i32(p.sw) - i32(p.pw);
            acc += g[out_base + u32(oh) * p.wo + u32(ow)] / divisor(h0, w0);
        }
    }
    gx[e] = acc;
}
