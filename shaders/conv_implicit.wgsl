// 2-D convolution as an implicit GEMM, for CPU adapters (lavapipe): the column matrix of
// im2col is never written; each invocation computes the input addresses of its columns as it
// goes. Same results as conv.wgsl + matmul.wgsl, without the column buffer and its traffic.
//
// Shape of the work, per image n and group g (cin_g = C / groups, cout_g = C_out / groups):
// - forward:         out[co, pix]  = sum over (c, kh, kw) of W[co, c, kh, kw] * x[c, ih, iw]
// - backward_input:  gx[c, ipix]   = sum over (co, kh, kw) of W[co, c, kh, kw] * g[co, oh, ow]
//                    where oh * SH = ih + PH - kh * DH (and likewise for w), when it divides
// - backward_weight: gw[co, (c, kh, kw)] = sum over images and (oh, ow) of g[co, oh, ow] * x[..]
// Indexing: a workgroup of 16 invocations owns 8 rows (output channels, or input channels for
// backward_input) and 128 columns; each invocation computes 8 rows x 8 columns (two vec4
// halves), so each step's 16 loads feed 64 multiply-adds (on llvmpipe every load is a gather,
// and that ratio sets the speed). The workgroup index enumerates (image or image part, group,
// row tile, column tile). Accumulators are separate variables: llvmpipe keeps dynamically
// indexed arrays in memory.

struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    c_out: u32,
    kh: u32,
    kw: u32,
    ho: u32,
    wo: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    groups: u32,
    has_bias: u32,
    // backward_weight: images per part.
    images_per_part: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// False when both strides are 1: the backward's divisibility tests compile away.
override STRIDED: bool = true;

const ROWS: u32 = 8u;
const COLS: u32 = 128u;

// (a / b, a % b) for per-invocation values, through an f32 reciprocal plus integer fix-ups:
// llvmpipe has no vector integer division (it runs 8 scalar divides per operation).
fn divmod(a: u32, b: u32) -> vec2<u32> {
    var q = u32(f32(a) / f32(b));
    var r = i32(a) - i32(q * b);
    if (r < 0) { q -= 1u; r += i32(b); }
    if (r < 0) { q -= 1u; r += i32(b); }
    if (r >= i32(b)) { q += 1u; r -= i32(b); }
    if (r >= i32(b)) { q += 1u; r -= i32(b); }
    return vec2<u32>(q, u32(r));
}

// The tile this workgroup owns: (image or part, group, first row, first column).
fn tile(t: u32, rows: u32, cols: u32) -> vec4<u32> {
    let tm = (rows + ROWS - 1u) / ROWS;
    let tn = (cols + COLS - 1u) / COLS;
    let per_image = p.groups * tm * tn;
    let rem = t % per_image;
    return vec4<u32>(t / per_image, rem / (tm * tn), ((rem / tn) % tm) * ROWS, (rem % tn) * COLS);
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// x at (plane, ih, iw), 0 outside the image (zero padding).
// Branch-free: a select instead of an early return, since llvmpipe turns divergent control
// flow into execution-mask bookkeeping on every call.
fn x_at(plane: u32, ih: i32, iw: i32) -> f32 {
    let inside = u32(ih) < p.h && u32(iw) < p.w;
    let v = x[select(0u, plane + u32(ih) * p.w + u32(iw), inside)];
    return select(0.0, v, inside);
}

@compute @workgroup_size(16)
fn conv_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let cin_g = p.c / p.groups;
    let cout_g = p.c_out / p.groups;
    let pixels = p.ho * p.wo;
    let t = wid.x + wid.y * nwg.x;
    let tm = (cout_g + ROWS - 1u) / ROWS;
    let tn = (pixels + COLS - 1u) / COLS;
    if (t >= p.n * p.groups * tm * tn) {
        return;
    }
    let at = tile(t, cout_g, pixels);
    let n = at.x;
    let g = at.y;
    let r0 = at.z;
    let pix0 = at.w + li * 8u;
    if (pix0 >= pixels) {
        return;
    }
    // Each column's top-left input position.
    var ih0: vec4<i32>;
    var iw0: vec4<i32>;
    var ih1: vec4<i32>;
    var iw1: vec4<i32>;
    for (var j = 0u; j < 4u; j++) {
        let q = divmod(min(pix0 + j, pixels - 1u), p.wo);
        ih0[j] = i32(q.x * p.sh) - i32(p.ph);
        iw0[j] = i32(q.y * p.sw) - i32(p.pw);
        let r = divmod(min(pix0 + 4u + j, pixels - 1u), p.wo);
        ih1[j] = i32(r.x * p.sh) - i32(p.ph);
        iw1[j] = i32(r.y * p.sw) - i32(p.pw);
    }
    let w0 = (g * cout_g + min(r0 + 0u, cout_g - 1u)) * cin_g * p.kh * p.kw;
    let w1 = (g * cout_g + min(r0 + 1u, cout_g - 1u)) * cin_g * p.kh * p.kw;
    let w2 = (g * cout_g + min(r0 + 2u, cout_g - 1u)) * cin_g * p.kh * p.kw;
    let w3 = (g * cout_g + min(r0 + 3u, cout_g - 1u)) * cin_g * p.kh * p.kw;
    let w4 = (g * cout_g + min(r0 + 4u, cout_g - 1u)) * cin_g * p.kh * p.kw;
    let w5 = (g * cout_g + min(r0 + 5u, cout_g - 1u)) * cin_g * p.kh * p.kw;
    let w6 = (g * cout_g + min(r0 + 6u, cout_g - 1u)) * cin_g * p.kh * p.kw;
    let w7 = (g * cout_g + min(r0 + 7u, cout_g - 1u)) * cin_g * p.kh * p.kw;
    var acc0 = vec4<f32>(0.0);
    var acc0h = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc1h = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc2h = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc3h = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc4h = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc5h = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc6h = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var acc7h = vec4<f32>(0.0);
    for (var c = 0u; c < cin_g; c++) {
        let plane = ((n * p.c) + g * cin_g + c) * p.h * p.w;
        for (var kh = 0u; kh < p.kh; kh++) {
            let dh = i32(kh * p.dh);
            for (var kw = 0u; kw < p.kw; kw++) {
                let dw = i32(kw * p.dw);
                let xv = vec4<f32>(
                    x_at(plane, ih0.x + dh, iw0.x + dw),
                    x_at(plane, ih0.y + dh, iw0.y + dw),
                    x_at(plane, ih0.z + dh, iw0.z + dw),
                    x_at(plane, ih0.w + dh, iw0.w + dw),
                );
                let xh = vec4<f32>(
                    x_at(plane, ih1.x + dh, iw1.x + dw),
                    x_at(plane, ih1.y + dh, iw1.y + dw),
                    x_at(plane, ih1.z + dh, iw1.z + dw),
                    x_at(plane, ih1.w + dh, iw1.w + dw),
                );
                let k = (c * p.kh + kh) * p.kw + kw;
                let wv0 = weight[w0 + k];
                acc0 += wv0 * xv;
                acc0h += wv0 * xh;
                let wv1 = weight[w1 + k];
                acc1 += wv1 * xv;
                acc1h += wv1 * xh;
                let wv2 = weight[w2 + k];
                acc2 += wv2 * xv;
                acc2h += wv2 * xh;
                let wv3 = weight[w3 + k];
                acc3 += wv3 * xv;
                acc3h += wv3 * xh;
                let wv4 = weight[w4 + k];
                acc4 += wv4 * xv;
                acc4h += wv4 * xh;
                let wv5 = weight[w5 + k];
                acc5 += wv5 * xv;
                acc5h += wv5 * xh;
                let wv6 = weight[w6 + k];
                acc6 += wv6 * xv;
                acc6h += wv6 * xh;
                let wv7 = weight[w7 + k];
                acc7 += wv7 * xv;
                acc7h += wv7 * xh;
            }
        }
    }
    let out_base = (n * p.c_out + g * cout_g) * pixels;
    store_conv(out_base, r0 + 0u, cout_g, pix0, pixels, g * cout_g + r0 + 0u, acc0, acc0h);
    store_conv(out_base, r0 + 1u, cout_g, pix0, pixels, g * cout_g + r0 + 1u, acc1, acc1h);
    store_conv(out_base, r0 + 2u, cout_g, pix0, pixels, g * cout_g + r0 + 2u, acc2, acc2h);
    store_conv(out_base, r0 + 3u, cout_g, pix0, pixels, g * cout_g + r0 + 3u, acc3, acc3h);
    store_conv(out_base, r0 + 4u, cout_g, pix0, pixels, g * cout_g + r0 + 4u, acc4, acc4h);
    store_conv(out_base, r0 + 5u, cout_g, pix0, pixels, g * cout_g + r0 + 5u, acc5, acc5h);
    store_conv(out_base, r0 + 6u, cout_g, pix0, pixels, g * cout_g + r0 + 6u, acc6, acc6h);
    store_conv(out_base, r0 + 7u, cout_g, pix0, pixels, g * cout_g + r0 + 7u, acc7, acc7h);
}

// Stores one row's 4 columns (adding the bias when there is one), skipping those past the
// edges.
fn store_conv(base: u32, row: u32, rows: u32, col0: u32, cols: u32, channel: u32, v: vec4<f32>, h: vec4<f32>) {
    if (row >= rows) {
        return;
    }
    var b = 0.0;
    if (p.has_bias == 1u) {
        b = bias[channel];
    }
    for (var j = 0u; j < 4u; j++) {
        if (col0 + j < cols) {
            out[base + row * cols + col0 + j] = v[j] + b;
        }
        if (col0 + 4u + j < cols) {
            out[base + row * cols + col0 + 4u + j] = h[j] + b;
        }
    }
}

// backward_input bindings: g (upstream gradient), weight, gx.
@group(0) @binding(1) var<storage, read> grad_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad_in: array<f32>;

// g at the output position reached from input (ih, iw) through tap offset (dh, dw), or 0
// when no output position lands there (outside, or between strides).
fn g_at(plane: u32, th: i32, tw: i32) -> f32 {
    if (!STRIDED) {
        // Unit strides: oh = th, ow = tw; branch-free (see x_at).
        let inside = u32(th) < p.ho && u32(tw) < p.wo;
        let v = grad_out[select(0u, plane + u32(th) * p.wo + u32(tw), inside)];
        return select(0.0, v, inside);
    }
    if (th < 0 || tw < 0) {
        return 0.0;
    }
    var oh = u32(th);
    var ow = u32(tw);
    if (STRIDED && p.sh != 1u) {
        let q = divmod(oh, p.sh);
        if (q.y != 0u) {
            return 0.0;
        }
        oh = q.x;
    }
    if (STRIDED && p.sw != 1u) {
        let q = divmod(ow, p.sw);
        if (q.y != 0u) {
            return 0.0;
        }
        ow = q.x;
    }
    if (oh >= p.ho || ow >= p.wo) {
        return 0.0;
    }
    return grad_out[plane + oh * p.wo + ow];
}

@compute @workgroup_size(16)
fn conv_backward_input(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let cin_g = p.c / p.groups;
    let cout_g = p.c_out / p.groups;
    let pixels = p.h * p.w;
    let t = wid.x + wid.y * nwg.x;
    let tm = (cin_g + ROWS - 1u) / ROWS;
    let tn = (pixels + COLS - 1u) / COLS;
    if (t >= p.n * p.groups * tm * tn) {
        return;
    }
    let at = tile(t, cin_g, pixels);
    let n = at.x;
    let g = at.y;
    let r0 = at.z;
    let pix0 = at.w + li * 8u;
    if (pix0 >= pixels) {
        return;
    }
    var th0: vec4<i32>;
    var tw0: vec4<i32>;
    var th1: vec4<i32>;
    var tw1: vec4<i32>;
    for (var j = 0u; j < 4u; j++) {
        let q = divmod(min(pix0 + j, pixels - 1u), p.w);
        th0[j] = i32(q.x + p.ph);
        tw0[j] = i32(q.y + p.pw);
        let r = divmod(min(pix0 + 4u + j, pixels - 1u), p.w);
        th1[j] = i32(r.x + p.ph);
        tw1[j] = i32(r.y + p.pw);
    }
    let taps = p.kh * p.kw;
    let c0 = min(r0 + 0u, cin_g - 1u) * taps;
    let c1 = min(r0 + 1u, cin_g - 1u) * taps;
    let c2 = min(r0 + 2u, cin_g - 1u) * taps;
    let c3 = min(r0 + 3u, cin_g - 1u) * taps;
    let c4 = min(r0 + 4u, cin_g - 1u) * taps;
    let c5 = min(r0 + 5u, cin_g - 1u) * taps;
    let c6 = min(r0 + 6u, cin_g - 1u) * taps;
    let c7 = min(r0 + 7u, cin_g - 1u) * taps;
    var acc0 = vec4<f32>(0.0);
    var acc0h = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc1h = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc2h = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc3h = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc4h = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc5h = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc6h = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var acc7h = vec4<f32>(0.0);
    for (var co = 0u; co < cout_g; co++) {
        let plane = (n * p.c_out + g * cout_g + co) * p.ho * p.wo;
        let w_base = (g * cout_g + co) * cin_g * taps;
        for (var kh = 0u; kh < p.kh; kh++) {
            let dh = i32(kh * p.dh);
            for (var kw = 0u; kw < p.kw; kw++) {
                let dw = i32(kw * p.dw);
                let gv = vec4<f32>(
                    g_at(plane, th0.x - dh, tw0.x - dw),
                    g_at(plane, th0.y - dh, tw0.y - dw),
                    g_at(plane, th0.z - dh, tw0.z - dw),
                    g_at(plane, th0.w - dh, tw0.w - dw),
                );
                let gh = vec4<f32>(
                    g_at(plane, th1.x - dh, tw1.x - dw),
                    g_at(plane, th1.y - dh, tw1.y - dw),
                    g_at(plane, th1.z - dh, tw1.z - dw),
                    g_at(plane, th1.w - dh, tw1.w - dw),
                );
                let k = w_base + kh * p.kw + kw;
                let wv0 = weight[k + c0];
                acc0 += wv0 * gv;
                acc0h += wv0 * gh;
                let wv1 = weight[k + c1];
                acc1 += wv1 * gv;
                acc1h += wv1 * gh;
                let wv2 = weight[k + c2];
                acc2 += wv2 * gv;
                acc2h += wv2 * gh;
                let wv3 = weight[k + c3];
                acc3 += wv3 * gv;
                acc3h += wv3 * gh;
                let wv4 = weight[k + c4];
                acc4 += wv4 * gv;
                acc4h += wv4 * gh;
                let wv5 = weight[k + c5];
                acc5 += wv5 * gv;
                acc5h += wv5 * gh;
                let wv6 = weight[k + c6];
                acc6 += wv6 * gv;
                acc6h += wv6 * gh;
                let wv7 = weight[k + c7];
                acc7 += wv7 * gv;
                acc7h += wv7 * gh;
            }
        }
    }
    let base = (n * p.c + g * cin_g) * pixels;
    store_grad_in(base, r0 + 0u, cin_g, pix0, pixels, acc0, acc0h);
    store_grad_in(base, r0 + 1u, cin_g, pix0, pixels, acc1, acc1h);
    store_grad_in(base, r0 + 2u, cin_g, pix0, pixels, acc2, acc2h);
    store_grad_in(base, r0 + 3u, cin_g, pix0, pixels, acc3, acc3h);
    store_grad_in(base, r0 + 4u, cin_g, pix0, pixels, acc4, acc4h);
    store_grad_in(base, r0 + 5u, cin_g, pix0, pixels, acc5, acc5h);
    store_grad_in(base, r0 + 6u, cin_g, pix0, pixels, acc6, acc6h);
    store_grad_in(base, r0 + 7u, cin_g, pix0, pixels, acc7, acc7h);
}

fn store_grad_in(base: u32, row: u32, rows: u32, col0: u32, cols: u32, v: vec4<f32>, h: vec4<f32>) {
    if (row >= rows) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (col0 + j < cols) {
            grad_in[base + row * cols + col0 + j] = v[j];
        }
        if (col0 + 4u + j < cols) {
            grad_in[base + row * cols + col0 + 4u + j] = h[j];
        }
    }
}

// backward_weight bindings: x, g (upstream gradient), the partial sums
// [parts * 4 phases, C_out, cin_g * KH * KW] that the host then sums over parts and phases.
const WCOLS: u32 = 32u;
@group(0) @binding(1) var<storage, read> bx: array<f32>;
@group(0) @binding(2) var<storage, read> bg: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;

fn bx_at(plane: u32, ih: i32, iw: i32) -> f32 {
    let inside = u32(ih) < p.h && u32(iw) < p.w;
    let v = bx[select(0u, plane + u32(ih) * p.w + u32(iw), inside)];
    return select(0.0, v, inside);
}

@compute @workgroup_size(16)
fn conv_backward_weight(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let cin_g = p.c / p.groups;
    let cout_g = p.c_out / p.groups;
    let taps = p.kh * p.kw;
    let cols = cin_g * taps;
    let parts = (p.n + p.images_per_part - 1u) / p.images_per_part;
    let t = wid.x + wid.y * nwg.x;
    // Tiles of 8 rows x 32 columns: 4 column groups of 8 x 4 phases, phase f summing the
    // pixels with ow = f, f + 4, ... (weight matrices are narrow, so this keeps lanes busy).
    let tm = (cout_g + ROWS - 1u) / ROWS;
    let tn = (cols + WCOLS - 1u) / WCOLS;
    if (t >= parts * p.groups * tm * tn) {
        return;
    }
    let part = t / (p.groups * tm * tn);
    let rem = t % (p.groups * tm * tn);
    let g = rem / (tm * tn);
    let r0 = ((rem / tn) % tm) * ROWS;
    let phase = li / 4u;
    let col0 = (rem % tn) * WCOLS + (li % 4u) * 8u;
    if (col0 >= cols) {
        return;
    }
    // Each column's (input channel, tap) offsets.
    var plane_off: vec4<u32>;
    var dh: vec4<i32>;
    var dw: vec4<i32>;
    var plane_off1: vec4<u32>;
    var dh1: vec4<i32>;
    var dw1: vec4<i32>;
    for (var j = 0u; j < 4u; j++) {
        let ct = divmod(min(col0 + j, cols - 1u), taps);
        let hw = divmod(ct.y, p.kw);
        plane_off[j] = (g * cin_g + ct.x) * p.h * p.w;
        dh[j] = i32(hw.x * p.dh) - i32(p.ph);
        dw[j] = i32(hw.y * p.dw) - i32(p.pw);
        let cu = divmod(min(col0 + 4u + j, cols - 1u), taps);
        let hv = divmod(cu.y, p.kw);
        plane_off1[j] = (g * cin_g + cu.x) * p.h * p.w;
        dh1[j] = i32(hv.x * p.dh) - i32(p.ph);
        dw1[j] = i32(hv.y * p.dw) - i32(p.pw);
    }
    var acc0 = vec4<f32>(0.0);
    var acc0h = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc1h = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc2h = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc3h = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc4h = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc5h = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc6h = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var acc7h = vec4<f32>(0.0);
    let first = part * p.images_per_part;
    let last = min(first + p.images_per_part, p.n);
    for (var n = first; n < last; n++) {
        let x_base = n * p.c * p.h * p.w;
        let g_base = (n * p.c_out + g * cout_g) * p.ho * p.wo;
        let g0 = g_base + min(r0 + 0u, cout_g - 1u) * p.ho * p.wo;
        let g1 = g_base + min(r0 + 1u, cout_g - 1u) * p.ho * p.wo;
        let g2 = g_base + min(r0 + 2u, cout_g - 1u) * p.ho * p.wo;
        let g3 = g_base + min(r0 + 3u, cout_g - 1u) * p.ho * p.wo;
        let g4 = g_base + min(r0 + 4u, cout_g - 1u) * p.ho * p.wo;
        let g5 = g_base + min(r0 + 5u, cout_g - 1u) * p.ho * p.wo;
        let g6 = g_base + min(r0 + 6u, cout_g - 1u) * p.ho * p.wo;
        let g7 = g_base + min(r0 + 7u, cout_g - 1u) * p.ho * p.wo;
        for (var oh = 0u; oh < p.ho; oh++) {
            let ih = i32(oh * p.sh);
            for (var ow = phase; ow < p.wo; ow += 4u) {
                let iw = i32(ow * p.sw);
                let xv = vec4<f32>(
                    bx_at(x_base + plane_off.x, ih + dh.x, iw + dw.x),
                    bx_at(x_base + plane_off.y, ih + dh.y, iw + dw.y),
                    bx_at(x_base + plane_off.z, ih + dh.z, iw + dw.z),
                    bx_at(x_base + plane_off.w, ih + dh.w, iw + dw.w),
                );
                let xh = vec4<f32>(
                    bx_at(x_base + plane_off1.x, ih + dh1.x, iw + dw1.x),
                    bx_at(x_base + plane_off1.y, ih + dh1.y, iw + dw1.y),
                    bx_at(x_base + plane_off1.z, ih + dh1.z, iw + dw1.z),
                    bx_at(x_base + plane_off1.w, ih + dh1.w, iw + dw1.w),
                );
                let o = oh * p.wo + ow;
                let gv0 = bg[g0 + o];
                acc0 += gv0 * xv;
                acc0h += gv0 * xh;
                let gv1 = bg[g1 + o];
                acc1 += gv1 * xv;
                acc1h += gv1 * xh;
                let gv2 = bg[g2 + o];
                acc2 += gv2 * xv;
                acc2h += gv2 * xh;
                let gv3 = bg[g3 + o];
                acc3 += gv3 * xv;
                acc3h += gv3 * xh;
                let gv4 = bg[g4 + o];
                acc4 += gv4 * xv;
                acc4h += gv4 * xh;
                let gv5 = bg[g5 + o];
                acc5 += gv5 * xv;
                acc5h += gv5 * xh;
                let gv6 = bg[g6 + o];
                acc6 += gv6 * xv;
                acc6h += gv6 * xh;
                let gv7 = bg[g7 + o];
                acc7 += gv7 * xv;
                acc7h += gv7 * xh;
            }
        }
    }
    let base = ((part * 4u + phase) * p.c_out + g * cout_g) * cols;
    store_partial(base, r0 + 0u, cout_g, col0, cols, acc0, acc0h);
    store_partial(base, r0 + 1u, cout_g, col0, cols, acc1, acc1h);
    store_partial(base, r0 + 2u, cout_g, col0, cols, acc2, acc2h);
    store_partial(base, r0 + 3u, cout_g, col0, cols, acc3, acc3h);
    store_partial(base, r0 + 4u, cout_g, col0, cols, acc4, acc4h);
    store_partial(base, r0 + 5u, cout_g, col0, cols, acc5, acc5h);
    store_partial(base, r0 + 6u, cout_g, col0, cols, acc6, acc6h);
    store_partial(base, r0 + 7u, cout_g, col0, cols, acc7, acc7h);
}

fn store_partial(base: u32, row: u32, rows: u32, col0: u32, cols: u32, v: vec4<f32>, h: vec4<f32>) {
    if (row >= rows) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (col0 + j < cols) {
            partial[base + row * cols + col0 + j] = v[j];
        }
        if (col0 + 4u + j < cols) {
            partial[base + row * cols + col0 + 4u + j] = h[j];
        }
    }
}
