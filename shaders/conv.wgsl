// 2-D convolution by im2col: unfold every output pixel's receptive field into a column matrix,
// then multiply by the weights with matmul.wgsl. Backward: col2im folds the column gradient
// back onto the input; the bias gradient sums over images and pixels.
//
// Indexing. The input x is NCHW [N, C, H, W]; a chunk of `nb` images starting at image n0 is
// unfolded at a time. cols holds, per image ni of the chunk, a [C*KH*KW, HO*WO] matrix:
//   cols[(ni * C*KH*KW + row) * HO*WO + pix], row = (c * KH + kh) * KW + kw, pix = oh * WO + ow,
// whose value is x[n0 + ni, c, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW] (0 outside the image).
// col2im is a gather: one invocation per input pixel sums the column entries that read it, so
// no two invocations write the same place (deterministic, no float atomics).

// Params (binding 0): the convolution's geometry (n, c, h, w, c_out, kh, kw, ho, wo, strides
// sh, sw, padding ph, pw, dilation dh, dw, groups), the chunk n0, nb, and the epilogue's
// has_bias, relu. The struct is `ConvParams` in src/backend/conv.rs, shared with
// cpu/conv_implicit.wgsl and appended to this module from there.

@group(0) @binding(0) var<uniform> p: Params;

// Bindings 1 and 2 of each kernel: im2col reads x and writes the chunk's column matrix cols;
// col2im reads the chunk's column gradient gcols and writes the input gradient gx (whole
// batch); epilogue reads the bias and updates out in place; bias_grad reads the output
// gradient g and writes the bias gradient gb.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> cols: array<f32>;
@group(0) @binding(1) var<storage, read> gcols: array<f32>;
@group(0) @binding(2) var<storage, read_write> gx: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> gb: array<f32>;

@compute @workgroup_size(256)
fn im2col(id: Invocation) {
    let e = flat_index(id, 256u);
    let pixels = p.ho * p.wo;
    let rows = p.c * p.kh * p.kw;
    if (e >= p.nb * rows * pixels) { return; }
    let pix = e % pixels;
    let row = (e / pixels) % rows;
    let ni = e / (pixels * rows);
    let kw = row % p.kw;
    let kh = (row / p.kw) % p.kh;
    let c = row / (p.kw * p.kh);
    let ih = i32((pix / p.wo) * p.sh + kh * p.dh) - i32(p.ph);
    let iw = i32((pix % p.wo) * p.sw + kw * p.dw) - i32(p.pw);
    var v = 0.0;
    if (ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
        v = x[((p.n0 + ni) * p.c + c) * p.h * p.w + u32(ih) * p.w + u32(iw)];
    }
    cols[e] = v;
}

// The output positions o with o*S - P + k*D == i for some tap k: o*S = i + P - k*D.
@compute @workgroup_size(256)
fn col2im(id: Invocation) {
    let e = flat_index(id, 256u);
    let plane = p.h * p.w;
    if (e >= p.nb * p.c * plane) { return; }
    let iw = i32(e % p.w);
    let ih = i32((e / p.w) % p.h);
    let c = (e / plane) % p.c;
    let ni = e / (plane * p.c);
    let pixels = p.ho * p.wo;
    let rows = p.c * p.kh * p.kw;
    var acc = 0.0;
    for (var kh = 0u; kh < p.kh; kh++) {
        let th = ih + i32(p.ph) - i32(kh * p.dh);
        if (th < 0 || th % i32(p.sh) != 0 || th / i32(p.sh) >= i32(p.ho)) {
            continue;
        }
        let oh = u32(th) / p.sh;
        for (var kw = 0u; kw < p.kw; kw++) {
            let tw = iw + i32(p.pw) - i32(kw * p.dw);
            if (tw < 0 || tw % i32(p.sw) != 0 || tw / i32(p.sw) >= i32(p.wo)) {
                continue;
            }
            let ow = u32(tw) / p.sw;
            let row = (c * p.kh + kh) * p.kw + kw;
            acc += gcols[(ni * rows + row) * pixels + oh * p.wo + ow];
        }
    }
    gx[(p.n0 * p.c) * plane + e] = acc;
}

// epilogue: out [N, C_out, HO*WO] += bias[c] (with has_bias), then max(out, 0) (with relu),
// in place.
@compute @workgroup_size(256)
fn epilogue(id: Invocation) {
    let e = flat_index(id, 256u);
    let pixels = p.ho * p.wo;
    if (e >= p.n * p.c_out * pixels) { return; }
    var v = out[e];
    if (p.has_bias == 1u) {
        v += bias[(e / pixels) % p.c_out];
    }
    if (p.relu == 1u) {
        v = relu(v);
    }
    out[e] = v;
}

// bias_grad: one workgroup per output channel sums g over images and pixels (HO * WO of them).
// It holds barriers, so it takes the builtins one by one (see the prelude's Invocation).
@compute @workgroup_size(256)
fn bias_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let co = workgroup_index(wid, nwg);
    if (co >= p.c_out) { return; }
    let pixels = p.ho * p.wo;
    var acc = 0.0;
    for (var j = lid; j < p.n * pixels; j += 256u) {
        acc += g[((j / pixels) * p.c_out + co) * pixels + j % pixels];
    }
    let total = workgroup_sum(lid, acc);
    if (lid == 0u) {
        gb[co] = total;
    }
}

