// 2-D convolution as an implicit GEMM for CPU adapters (lavapipe): no column matrix; each
// invocation computes its input addresses as it goes, and reads 4 images at once.
//
// Why images innermost: on llvmpipe what costs is the number of load instructions (a storage
// load is a loop over the 8 SIMD lanes, a texel fetch a gather), and a vec4 brings 4 values
// for the price of one. The re-laid-out operands are rgba32float textures (src/backend/cpu/texels.rs),
// which llvmpipe fetches 1.4-4x faster than storage buffers. In NCHW, the 4 values a kernel
// needs together are never aligned
// (neighbouring pixels, shifted by the kernel tap), but in a copy of the tensor laid out as
// [C, H, W, NQ * 4] (images innermost, padded with zeros to a multiple of 4: `images_inner`),
// the same tap of 4 images is one aligned vec4, for any stride, padding and dilation.
// The weights get the matching layouts (`weight_forward_layout`, `weight_backward_layout`, or
// both from `weight_layouts` in a training forward) so that a block of up to 8 output (or
// input) channels at one tap is two vec4s. A block holds CH channels (an override constant),
// so that 6 channels cost 6, not 8.
//
// Kernels, per group g (cin_g = C / groups, cout_g = C_out / groups, taps = KH * KW,
// K = cin_g * taps):
// - conv_forward:    out[n, co, pix] = sum over (c, kh, kw) of W[co, c, kh, kw] * x[n, c, ih, iw]
//   one invocation: 16 images x CH output channels at one output pixel; per tap 6 texel
//   fetches feed up to 128 multiply-adds. conv_relu_pool_forward fuses ReLU and 2x2 pooling,
//   and also stores its output images-innermost for the next convolution (out_inner) and,
//   in training, each window's winner codes (packed in a u32 per quad of images).
// - conv_backward_input: gx[n, c, ih, iw] = sum over (co, kh, kw) of W[co, c, kh, kw] *
//   g[n, co, oh, ow] where oh * SH = ih + PH - kh * DH (likewise for w), when it divides;
//   one invocation: 16 images x CH input channels at one input pixel, or (unit stride and
//   dilation along the width) 8 images at two neighbouring pixels: conv_backward_input_pairs
//   (which can also write gx images-innermost: WRITE_INNER).
// - conv_backward_weight: gw[co, k] = sum over images and output pixels of g * x at tap k;
//   one invocation: CH output channels x TAPS taps (whole kernel rows, slid along the output
//   row, when the width's stride equals its dilation), summing dot products over 4 images,
//   for one part: a group of image quads and a band of output rows, so that small weights
//   still spread over many invocations. partial[part] holds the weight sums in blocks of 16
//   slots (TAPS of them used), [C_out, tap blocks, 16], then (with has_bias) the bias sums in
//   blocks of 8 slots per channel block (g summed, by the invocations of the first tap
//   block): vec4 stores, where scalar ones cost a per-lane loop each (and their compile time
//   on SwiftShader). sum_parts4 adds the parts up into the weight and bias gradients,
//   skipping the unused slots. Below a fused ReLU +
//   pooling, g is the full-size gradient (pool_grad_images_inner) or, with POOLED_G, read
//   from the pooled gradient and the winner codes.
// conv_forward and conv_backward_input number their invocations with the pixel fastest, so the
// 8 lanes of a SIMD group work on neighbouring pixels; conv_relu_pool_forward,
// conv_backward_input_pairs and conv_backward_weight number the image quads (or quad groups)
// fastest, so that their lanes fetch neighbouring texels (and the pairs kernel's lanes share
// one pixel pair and skip the same taps that reach no output pixel). Accumulators are separate
// variables: llvmpipe keeps dynamically indexed arrays in memory.

// Params (binding 0): the convolution's geometry (n, c, h, w, c_out, kh, kw, ho, wo, strides
// sh, sw, padding ph, pw, dilation dh, dw, groups), has_bias and relu (conv_forward; the
// images_inner mask is the constant RELU_MASK), the image quads nq (images padded to a multiple
// of 4, divided by 4), conv_backward_weight's parts (a part is a group of quads_per_part quads
// x a band of rows_per_part output rows; sum_parts4 adds `parts` of them, laid out by
// weight_taps and weight_ch), images_inner's planes (channels x pixels of the tensor re-laid
// out) and weight_layouts' block sizes (layout_ch, layout_ch_b). The struct is `ConvParams` in
// src/backend/conv.rs, shared with conv.wgsl and appended to this module from there.

@group(0) @binding(0) var<uniform> p: Params;

// False when both strides are 1: the backward's divisibility tests compile away.
override STRIDED: bool = true;

// Channels per block, 1-8 (Policy::conv_block_channels): a group's C channels form
// ceil(C / 8) blocks of CH = ceil(C / blocks), so 6 channels are one block of 6 rather than 8
// with 2 idle (conv_backward_weight's CH may be rounded up to a power of two, so that layers
// share its pipeline: Policy::conv_weight_grad_block_channels); the arithmetic of a block's
// channels CH..7 compiles away, and a last block's channels past C are computed but not
// stored. Blocks: ceil(C / CH).
override CH: u32 = 8u;

fn channel_blocks(c: u32) -> u32 {
    return blocks_of(c, CH);
}

// Invocations per workgroup: 64, or 32 where the host wants a small grid split more evenly
// between the adapter's threads (lavapipe runs a workgroup on one thread).
override WG: u32 = 64u;

// The invocation's index (in workgroups of WG).
fn invocation(id: Invocation) -> u32 {
    return flat_index(id, WG);
}

// ---- layouts ----

// The re-laid-out tensors are textures (src/backend/cpu/texels.rs), which the convolution kernels read
// faster than storage buffers on llvmpipe: vec4 i is the texel at (i % TEXEL_ROW, i / TEXEL_ROW).

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst_texels: texture_storage_2d<rgba32float, write>;
@group(0) @binding(3) var<storage, read> relu_out: array<f32>;

fn store_texel(i: u32, v: vec4<f32>) {
    textureStore(dst_texels, texel_at(i), v);
}

// With RELU_MASK (a pipeline constant: a masked load costs as much as a real one on
// llvmpipe), only the values where the ReLU's output (binding 3) is positive are kept.
override RELU_MASK: bool = false;

// With TEXELS (Policy::texel_reads), the source and the ReLU's output are read from texture
// copies (bindings 4 and 5) instead: a storage load runs lane by lane on llvmpipe, a texel
// fetch is one vector gather. The slots left unread hold placeholders.
override TEXELS: bool = false;
@group(0) @binding(4) var src_texels: texture_2d<f32>;
@group(0) @binding(5) var relu_out_texels: texture_2d<f32>;

// Element i of the source and of the ReLU's output, and vec4 i of each.
fn src_at(i: u32) -> f32 {
    if (TEXELS) {
        return texel_float(src_texels, i);
    }
    return src[i];
}

fn relu_out_at(i: u32) -> f32 {
    if (TEXELS) {
        return texel_float(relu_out_texels, i);
    }
    return relu_out[i];
}

fn src_quad(i: u32) -> vec4<f32> {
    if (TEXELS) {
        return texel_quad(src_texels, i);
    }
    return src4[i];
}

fn relu_out_quad(i: u32) -> vec4<f32> {
    if (TEXELS) {
        return texel_quad(relu_out_texels, i);
    }
    return relu_out4[i];
}

// texel plane * nq + q = src[(4q + j) * planes + plane] for j = 0..3 (0 past the last image):
// an [N, planes] tensor (planes = C * H * W) as [planes, NQ * 4].
@compute @workgroup_size(64)
fn images_inner(id: Invocation) {
    let v = invocation(id);
    if (v >= p.planes * p.nq) { return; }
    let plane = v / p.nq;
    let n0 = (v % p.nq) * 4u;
    var out = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        if (n0 + j < p.n) {
            let i = (n0 + j) * p.planes + plane;
            out[j] = src_at(i);
            if (RELU_MASK && !(relu_out_at(i) > 0.0)) {
                out[j] = 0.0;
            }
        }
    }
    store_texel(v, out);
}

@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> relu_out4: array<vec4<f32>>;

// Image n's planes 4 pb .. 4 pb + 3 (zeros past the last image; masked as in images_inner).
fn image_row(n: u32, pb: u32, blocks: u32) -> vec4<f32> {
    let i = select(0u, n * blocks + pb, n < p.n);
    var r = select(vec4<f32>(0.0), src_quad(i), n < p.n);
    if (RELU_MASK) {
        r = select(vec4<f32>(0.0), r, relu_out_quad(i) > vec4<f32>(0.0));
    }
    return r;
}

// images_inner when planes is a multiple of 4: each invocation moves a 4 x 4 block (4 planes
// of 4 images) with 4 vec4 loads and 4 vec4 stores, a transpose in registers.
@compute @workgroup_size(64)
fn images_inner4(id: Invocation) {
    let v = invocation(id);
    let blocks = p.planes / 4u;
    if (v >= blocks * p.nq) { return; }
    let q = v % p.nq;
    let pb = v / p.nq;
    let r0 = image_row(q * 4u, pb, blocks);
    let r1 = image_row(q * 4u + 1u, pb, blocks);
    let r2 = image_row(q * 4u + 2u, pb, blocks);
    let r3 = image_row(q * 4u + 3u, pb, blocks);
    let base = pb * 4u * p.nq + q;
    store_texel(base, vec4<f32>(r0.x, r1.x, r2.x, r3.x));
    store_texel(base + p.nq, vec4<f32>(r0.y, r1.y, r2.y, r3.y));
    store_texel(base + 2u * p.nq, vec4<f32>(r0.z, r1.z, r2.z, r3.z));
    store_texel(base + 3u * p.nq, vec4<f32>(r0.w, r1.w, r2.w, r3.w));
}

// The weight layouts hold, per tap, each channel block's CH channels in 8 slots (zeros past
// CH and past the group's channels): two texels that one vec4 load each brings.
// Forward: element ((g * K + k) * blocks + cb) * 8 + slot is W[g * cout_g + cb * CH + slot, k].
// Backward: element ((co_abs * taps + t) * blocks + cb) * 8 + slot is W[co_abs, cb * CH + slot,
// t] (blocks of the group's input channels).
// One invocation writes one group of 8 slots (two texels), splitting its index once: llvmpipe
// divides integers one lane at a time, so a split per element cost more than the copy.
struct Slots {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// `count` (at most ch <= 8) values of src, `step` apart from `first`; zeros after them.
fn load_slots(first: u32, step: u32, count: u32, ch: u32) -> Slots {
    var s = Slots(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var slot = 0u; slot < 4u; slot++) {
        if ((slot < ch) & (slot < count)) {
            s.lo[slot] = src[first + slot * step];
        }
        if ((slot + 4u < ch) & (slot + 4u < count)) {
            s.hi[slot] = src[first + (slot + 4u) * step];
        }
    }
    return s;
}

fn blocks_of(c: u32, ch: u32) -> u32 {
    return (c + ch - 1u) / ch;
}

// Slot groups of the forward layout with blocks of ch output channels, and group u's slots:
// slot s is W[g * cout_g + co + s, k], consecutive slots k_len apart.
fn forward_groups(ch: u32) -> u32 {
    return p.groups * (p.c / p.groups * p.kh * p.kw) * blocks_of(p.c_out / p.groups, ch);
}

fn forward_slots(u: u32, ch: u32) -> Slots {
    let cout_g = p.c_out / p.groups;
    let k_len = p.c / p.groups * p.kh * p.kw;
    let gk_cb = divmod(u, blocks_of(cout_g, ch));
    let g_k = divmod(gk_cb.x, k_len);
    let co = gk_cb.y * ch;
    return load_slots((g_k.x * cout_g + co) * k_len + g_k.y, k_len, cout_g - co, ch);
}

// The same for the backward layout, blocks of ch input channels: slot s is W[co_abs, c + s, t],
// consecutive slots taps apart.
fn backward_groups(ch: u32) -> u32 {
    return p.c_out * p.kh * p.kw * blocks_of(p.c / p.groups, ch);
}

fn backward_slots(u: u32, ch: u32) -> Slots {
    let cin_g = p.c / p.groups;
    let taps = p.kh * p.kw;
    let ct_cb = divmod(u, blocks_of(cin_g, ch));
    let co_t = divmod(ct_cb.x, taps);
    let c = ct_cb.y * ch;
    return load_slots((co_t.x * cin_g + c) * taps + co_t.y, taps, cin_g - c, ch);
}

// The layouts one dispatch writes: the forward one (blocks of p.layout_ch channels) to
// binding 2, the backward one (blocks of p.layout_ch_b) to binding 4, each where its block
// size is not 0; both in a training forward whose input needs its gradient (each dispatch has
// a fixed cost). Parameters, not pipeline constants: one pipeline serves every layer (the
// block sizes only enter index arithmetic, and the kernel runs over the weights alone).
@group(0) @binding(4) var dst_texels_b: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(64)
fn weight_layouts(id: Invocation) {
    let u = invocation(id);
    if ((p.layout_ch > 0u) & (u < forward_groups(p.layout_ch))) {
        let s = forward_slots(u, p.layout_ch);
        textureStore(dst_texels, texel_at(2u * u), s.lo);
        textureStore(dst_texels, texel_at(2u * u + 1u), s.hi);
    }
    if ((p.layout_ch_b > 0u) & (u < backward_groups(p.layout_ch_b))) {
        let s = backward_slots(u, p.layout_ch_b);
        textureStore(dst_texels_b, texel_at(2u * u), s.lo);
        textureStore(dst_texels_b, texel_at(2u * u + 1u), s.hi);
    }
}

// ---- the convolution kernels ----

// The convolution kernels read their two operands as textures (src/backend/cpu/texels.rs): vec4 i of the
// images-innermost activations (binding 1) and of the weight layout or the images-innermost
// gradient (binding 2) is the texel at (i % TEXEL_ROW, i / TEXEL_ROW). On llvmpipe a texel
// fetch costs 2-4x less than a storage-buffer load.
@group(0) @binding(1) var texels1: texture_2d<f32>;
@group(0) @binding(2) var texels2: texture_2d<f32>;

// Activation quads (x, or g in conv_backward_input) and weight quads.
fn xq(i: u32) -> vec4<f32> {
    return texel_quad(texels1, i);
}

fn wq(i: u32) -> vec4<f32> {
    return texel_quad(texels2, i);
}
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// An invocation's work: a place (a pixel, a pair of pixels or a pooling window), a block of
// CH of a group's channels (`blocks` blocks per group), the group, and a block of images (16,
// 8 or 4 images: `images` counts blocks).
struct Work {
    place: u32,
    cb: u32,
    blocks: u32,
    g: u32,
    images: u32,
}

// Invocation v's work over `places` places and `chans` channels, place fastest (the 8 lanes
// of a SIMD group work on neighbouring pixels).
fn work_places_fastest(v: u32, places: u32, chans: u32) -> Work {
    let blocks = channel_blocks(chans / p.groups);
    let rest = v / places;
    let g_i = rest / blocks;
    return Work(v % places, rest % blocks, blocks, g_i % p.groups, g_i / p.groups);
}

// Invocation v's work over `units` blocks of images, `places` places and `chans` channels,
// image blocks fastest (the 8 lanes of a SIMD group fetch neighbouring texels); past the
// last group when g >= groups.
fn work_images_fastest(v: u32, units: u32, places: u32, chans: u32) -> Work {
    let blocks = channel_blocks(chans / p.groups);
    let rest = v / units;
    let cb_g = rest / places;
    return Work(rest % places, cb_g % blocks, blocks, cb_g / blocks, v % units);
}

// conv_forward and conv_backward_input: one invocation accumulates 16 images (4 quads) x 8
// channels, acc{channel}{quad}, per tap from 4 vec4 loads of activations and 2 of weights.
// Module-scope private variables so that the helpers below can update them.
// (acc00 .. acc73 and the helpers fma16, fma16x2, fma16x4 and fma16x5 that add products into
// them, and conv_relu_pool_forward's WindowRow, window_row and fma_row, are generated by
// src/backend/cpu/conv_acc_gen.rs and appended to this module.)

// The 4 quads of images 16 nb .. 16 nb + 15 at quad index q of an images-inner tensor; zeros
// when `inside` is false (padding) or for quads past the batch.
struct Quads {
    q0: vec4<f32>,
    q1: vec4<f32>,
    q2: vec4<f32>,
    q3: vec4<f32>,
}

fn quad_at(q: u32, j: u32, nb: u32, inside: bool) -> vec4<f32> {
    let ok = inside & (nb * 4u + j < p.nq);
    return select(vec4<f32>(0.0), xq(select(0u, q + j, ok)), ok);
}

fn load16(q: u32, nb: u32, inside: bool) -> Quads {
    return Quads(quad_at(q, 0u, nb, inside), quad_at(q, 1u, nb, inside),
                 quad_at(q, 2u, nb, inside), quad_at(q, 3u, nb, inside));
}

// The fma16 helpers (generated, see above): fma16 adds the 8 channels' weights (wl: channels
// 0-3, wh: 4-7) x the 16 images of one tap; fma16x2 two channel sets' (the taps of two output
// channels in conv_backward_input_pairs); fma16x4 and fma16x5 four or five consecutive taps of
// one kernel row under ROW_SLIDE (tap i: weights at wi + i * k_step; the window's columns i
// and i + 1 of rows t and b), which fma_row combines for the row's KW taps. Each accumulator
// is written once per call (they live in memory on llvmpipe).

// Stores channel `ch`'s 8 images (lo, hi) of block nb8 (images 8 nb8 ..) at `pix` of an NCHW
// tensor with `chans` channels and `pixels` pixels, adding `b` (and applying the ReLU with
// p.relu).
fn store8(nb8: u32, ch: u32, chans: u32, pixels: u32, pix: u32, lo: vec4<f32>, hi: vec4<f32>, b: f32) {
    var l = lo + b;
    var h = hi + b;
    if (p.relu == 1u) {
        l = relu4(l);
        h = relu4(h);
    }
    for (var j = 0u; j < 4u; j++) {
        let n = nb8 * 8u + j;
        if (n < p.n) {
            out[(n * chans + ch) * pixels + pix] = l[j];
        }
        if (n + 4u < p.n) {
            out[((n + 4u) * chans + ch) * pixels + pix] = h[j];
        }
    }
}

// One channel's 16 images (the bias added when p.has_bias): `index` within the block's
// `count` channels, `ch` in the output tensor.
fn store_channel(nb: u32, index: u32, count: u32, ch: u32, chans: u32, pixels: u32, pix: u32,
                 a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) {
    if (index >= count) { return; }
    var bv = 0.0;
    if (p.has_bias == 1u) {
        bv = bias[ch];
    }
    store8(nb * 2u, ch, chans, pixels, pix, a, b, bv);
    store8(nb * 2u + 1u, ch, chans, pixels, pix, c, d, bv);
}

// store16, store_pairs and store_pooled_all (generated, see conv_acc_gen.rs) store the
// accumulators of channels first .. first + CH - 1 (of `count` in the group; ch0 is channel
// `first` in the output tensor) through store_channel, store_pair and store_pooled.

@compute @workgroup_size(64)
fn conv_forward(id: Invocation) {
    let at = work_places_fastest(invocation(id), p.ho * p.wo, p.c_out);
    if (at.images * 4u >= p.nq) { return; }
    let nb = at.images;
    let cin_g = p.c / p.groups;
    let k_len = cin_g * p.kh * p.kw;
    // Weight quads of this group and channel block, for tap k: (g * K + k) * blocks * 2 + cb * 2.
    let k_step = at.blocks * 2u;
    let w_base = at.g * k_len * k_step + at.cb * 2u;
    let ih0 = i32((at.place / p.wo) * p.sh) - i32(p.ph);
    let iw0 = i32((at.place % p.wo) * p.sw) - i32(p.pw);
    var k = 0u;
    for (var c = 0u; c < cin_g; c++) {
        let plane = (at.g * cin_g + c) * p.h;
        for (var kh = 0u; kh < p.kh; kh++) {
            let ih = ih0 + i32(kh * p.dh);
            for (var kw = 0u; kw < p.kw; kw++) {
                let iw = iw0 + i32(kw * p.dw);
                let inside = (u32(ih) < p.h) & (u32(iw) < p.w);
                let q = ((plane + u32(ih)) * p.w + u32(iw)) * p.nq + nb * 4u;
                let wi = w_base + k * k_step;
                fma16(wq(wi), wq(wi + 1u), load16(q, nb, inside));
                k++;
            }
        }
    }
    let cout_g = p.c_out / p.groups;
    store16(nb, at.cb * CH, cout_g, at.g * cout_g + at.cb * CH, p.c_out, p.ho * p.wo, at.place);
}

// conv_relu_pool_forward: max_pool2d(relu(conv2d(x) + bias), 2) in one pass, the
// convolution's output never stored. One invocation: 4 images (one quad) x CH channels at the
// 4 pixels of one 2 x 2 window, acc{channel}{pixel}: per tap 6 texel fetches (4 with SLIDE,
// about 3 with ROW_SLIDE) feed up to 128 multiply-adds, and one value is stored per window
// instead of four. With SAVE_ARGMAX (training) it also stores, per window, which of its pixels
// (0-3, row-major) won, or 4 when the pooled value is not positive (its gradient is then 0):
// the 4 images' codes packed in one u32 (image 4q + j in byte j), element (ch * pooled +
// window) * nq + q (a storage store costs a quarter of a texel store on llvmpipe).
override SAVE_ARGMAX: bool = false;

// True when the column stride equals the column dilation: then the window's right pixels at
// tap kw are its left pixels at tap kw + 1, and each tap fetches 2 quads of x instead of 4.
override SLIDE: bool = false;

// With ROW_SLIDE = KW (both strides equal their dilations, KW <= 7): the window's bottom row at
// kernel row kh is its top row at kh + 1, and its right column at tap kw its left column at
// kw + 1, so each kernel row fetches only its bottom row's KW + 1 columns: 6 quads of x per 5
// taps where SLIDE fetches 12 (the taps unrolled, the columns in registers).
override ROW_SLIDE: u32 = 0u;

@group(0) @binding(5) var<storage, read_write> winners_out: array<u32>;

// The 4 codes of a quad of images, from their packed u32.
fn unpack_codes(packed: u32) -> vec4<u32> {
    return (vec4<u32>(packed) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}
// The pooled output again with images innermost, as images_inner would lay it out (texel
// (ch * pooled + window) * nq + q, zeros past the batch), so that the next convolution reads
// it without a re-layout pass.
@group(0) @binding(6) var out_inner: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(64)
fn conv_relu_pool_forward(id: Invocation) {
    let at = work_images_fastest(invocation(id), p.nq, (p.ho / 2u) * (p.wo / 2u), p.c_out);
    if (at.g >= p.groups) { return; }
    let q = at.images;
    let pp = at.place;
    let g = at.g;
    let cin_g = p.c / p.groups;
    let k_len = cin_g * p.kh * p.kw;
    let k_step = at.blocks * 2u;
    let w_base = g * k_len * k_step + at.cb * 2u;
    // The window's top-left conv pixel; its 4 pixels are (0, 0), (0, 1), (1, 0), (1, 1) from it.
    let ih0 = i32((pp / (p.wo / 2u)) * 2u * p.sh) - i32(p.ph);
    let iw0 = i32((pp % (p.wo / 2u)) * 2u * p.sw) - i32(p.pw);
    let sh = i32(p.sh);
    let sw = i32(p.sw);
    if (ROW_SLIDE > 0u) {
        // The window's top row (t) and bottom row (b) of pixels at kernel row kh, columns
        // 0 .. KW (WindowRow): tap kw reads columns kw and kw + 1 of both rows, and the bottom
        // row at kh is the top row at kh + 1.
        let k_row = p.kw * k_step;
        for (var c = 0u; c < cin_g; c++) {
            let plane = (g * cin_g + c) * p.h;
            var t = window_row(plane, ih0, iw0, q);
            for (var kh = 0u; kh < p.kh; kh++) {
                let b = window_row(plane, ih0 + i32((kh + 1u) * p.dh), iw0, q);
                fma_row(w_base + (c * p.kh + kh) * k_row, k_step, t, b);
                t = b;
            }
        }
    } else {
        var k = 0u;
        for (var c = 0u; c < cin_g; c++) {
            let plane = (g * cin_g + c) * p.h;
            for (var kh = 0u; kh < p.kh; kh++) {
                let ih = ih0 + i32(kh * p.dh);
                // With SLIDE, the window's right column at tap kw is its left column at kw + 1.
                var left_top = pixel_quad(plane, ih, iw0, q);
                var left_bottom = pixel_quad(plane, ih + sh, iw0, q);
                for (var kw = 0u; kw < p.kw; kw++) {
                    let iw = iw0 + i32(kw * p.dw);
                    let wi = w_base + k * k_step;
                    if (!SLIDE) {
                        left_top = pixel_quad(plane, ih, iw, q);
                        left_bottom = pixel_quad(plane, ih + sh, iw, q);
                    }
                    let right_top = pixel_quad(plane, ih, iw + sw, q);
                    let right_bottom = pixel_quad(plane, ih + sh, iw + sw, q);
                    fma16(wq(wi), wq(wi + 1u), Quads(left_top, right_top, left_bottom, right_bottom));
                    left_top = right_top;
                    left_bottom = right_bottom;
                    k++;
                }
            }
        }
    }
    let cout_g = p.c_out / p.groups;
    store_pooled_all(q, at.cb * CH, cout_g, g * cout_g + at.cb * CH, pp);
}

// Quad q of the images at input pixel (ih, iw) of channel plane `plane` (zero outside).
fn pixel_quad(plane: u32, ih: i32, iw: i32, q: u32) -> vec4<f32> {
    let inside = (u32(ih) < p.h) & (u32(iw) < p.w);
    return quad_at(((plane + u32(ih)) * p.w + u32(iw)) * p.nq + q, 0u, 0u, inside);
}

// Channel `index` of the block (skipped past `count`): bias, ReLU and the max over the 4 pixels
// of the window, for the quad's images (pool_window, cpu/conv_window.wgsl).
fn store_pooled(q: u32, index: u32, count: u32, ch: u32, pp: u32,
                a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) {
    if (index >= count) { return; }
    var bv = 0.0;
    if (p.has_bias == 1u) {
        bv = bias[ch];
    }
    store_window(ch, pp, q, pool_window(a, b, c, d, bv));
}

// The backward of conv_relu_pool_forward up to the convolution's output, written straight into
// the images-innermost layout the conv backward kernels read: each window's gradient goes to
// the pixel that won (code 0-3 from the forward; 4 when the pooled ReLU output was not
// positive), zeros elsewhere. One invocation: one window of one channel for a quad of images,
// 4 scalar loads of g, one load of the packed codes, 4 texel stores.
@group(0) @binding(1) var<storage, read> pooled_g: array<f32>;
@group(0) @binding(2) var<storage, read> winners: array<u32>;
@group(0) @binding(3) var gt_texels: texture_storage_2d<rgba32float, write>;

fn store_gt(i: u32, v: vec4<f32>) {
    textureStore(gt_texels, texel_at(i), v);
}

@compute @workgroup_size(64)
fn pool_grad_images_inner(id: Invocation) {
    let v = invocation(id);
    let pw_n = p.wo / 2u;
    let pooled = (p.ho / 2u) * pw_n;
    if (v >= p.c_out * pooled * p.nq) { return; }
    let q = v % p.nq;
    let pp = (v / p.nq) % pooled;
    let ch = v / (p.nq * pooled);
    // The 4 images' gradients (0 past the batch), then per pixel of the window (row-major).
    var gv = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j++) {
        let n = q * 4u + j;
        if (n < p.n) {
            gv[j] = pooled_g[(n * p.c_out + ch) * pooled + pp];
        }
    }
    let code = unpack_codes(winners[(ch * pooled + pp) * p.nq + q]);
    let zero = vec4<f32>(0.0);
    let px0 = select(zero, gv, code == vec4<u32>(0u));
    let px1 = select(zero, gv, code == vec4<u32>(1u));
    let px2 = select(zero, gv, code == vec4<u32>(2u));
    let px3 = select(zero, gv, code == vec4<u32>(3u));
    let top = (ch * p.ho + (pp / pw_n) * 2u) * p.wo + (pp % pw_n) * 2u;
    store_gt(top * p.nq + q, px0);
    store_gt((top + 1u) * p.nq + q, px1);
    store_gt((top + p.wo) * p.nq + q, px2);
    store_gt((top + p.wo + 1u) * p.nq + q, px3);
}

// The output index o with o * stride = t (t: an input index plus padding minus tap times
// dilation), and whether there is one (t >= 0, divisible, o < size).
struct GradIndex {
    o: u32,
    ok: bool,
}

fn grad_index(t: i32, stride: u32, size: u32) -> GradIndex {
    if (STRIDED) {
        let d = divmod(select(0u, u32(t), t >= 0), stride);
        return GradIndex(d.x, (t >= 0) & (d.y == 0u) & (d.x < size));
    }
    return GradIndex(u32(t), u32(t) < size);
}

// The kernel rows [first, end) that may reach an output row from input row th0 - PH:
// unstrided, only those with 0 <= th0 - kh * DH < HO, about half of them on a small image;
// strided, all of them (grad_index tests each).
fn kernel_rows(th0: i32) -> vec2<u32> {
    if (STRIDED) {
        return vec2<u32>(0u, p.kh);
    }
    let first = u32(max(0, th0 - i32(p.ho) + i32(p.dh))) / p.dh;
    return vec2<u32>(first, min(p.kh, u32(th0) / p.dh + 1u));
}

// Here xq holds g (the output gradient, images inner) and wq the backward weight layout.
@compute @workgroup_size(64)
fn conv_backward_input(id: Invocation) {
    let at = work_places_fastest(invocation(id), p.h * p.w, p.c);
    if (at.images * 4u >= p.nq) { return; }
    let nb = at.images;
    let th0 = i32(at.place / p.w + p.ph);
    let tw0 = i32(at.place % p.w + p.pw);
    // (Lanes are neighbouring pixels of one row, so the range of kernel rows is the same across
    // a SIMD group.)
    let kh_range = kernel_rows(th0);
    let cout_g = p.c_out / p.groups;
    let k_step = at.blocks * 2u;
    for (var co = 0u; co < cout_g; co++) {
        let co_abs = at.g * cout_g + co;
        // Weight quads for (co_abs, tap t): (co_abs * taps + t) * blocks * 2 + cb * 2.
        let w_base = co_abs * p.kh * p.kw * k_step + at.cb * 2u;
        for (var kh = kh_range.x; kh < kh_range.y; kh++) {
            let r = grad_index(th0 - i32(kh * p.dh), p.sh, p.ho);
            for (var kw = 0u; kw < p.kw; kw++) {
                let c = grad_index(tw0 - i32(kw * p.dw), p.sw, p.wo);
                let q = ((co_abs * p.ho + r.o) * p.wo + c.o) * p.nq + nb * 4u;
                let wi = w_base + (kh * p.kw + kw) * k_step;
                fma16(wq(wi), wq(wi + 1u), load16(q, nb, r.ok & c.ok));
            }
        }
    }
    let cin_g = p.c / p.groups;
    store16(nb, at.cb * CH, cin_g, at.g * cin_g + at.cb * CH, p.c, p.h * p.w, at.place);
}

// conv_backward_input_pairs, for unit stride and dilation along the width: one invocation
// computes 8 images (2 quads) x CH channels at two neighbouring input pixels, acc{c}{0, 1} at
// (ih, iw) and acc{c}{2, 3} at (ih, iw + 1). Both use the same weights at each tap, and pixel
// iw + 1 at tap kw reads the gradient column that pixel iw read at tap kw - 1: per tap 2
// quads of g are fetched for 16 (pixel, image) pairs, where conv_backward_input fetches 4.
struct QuadPair {
    q0: vec4<f32>,
    q1: vec4<f32>,
}

// Quads 2 nb2 and 2 nb2 + 1 at column tw of the gradient row starting at texel row_q (zero
// outside the row, or when !ok_h, or past the batch).
fn quad_pair(row_q: u32, tw: i32, nb2: u32, ok_h: bool) -> QuadPair {
    let inside = ok_h & (u32(tw) < p.wo);
    let q = (row_q + u32(tw)) * p.nq + nb2 * 2u;
    let ok0 = inside & (nb2 * 2u < p.nq);
    let ok1 = inside & (nb2 * 2u + 1u < p.nq);
    return QuadPair(select(vec4<f32>(0.0), xq(select(0u, q, ok0)), ok0),
                    select(vec4<f32>(0.0), xq(select(0u, q + 1u, ok1)), ok1));
}

@compute @workgroup_size(64)
fn conv_backward_input_pairs(id: Invocation) {
    let pairs_w = (p.w + 1u) / 2u;
    // Image pairs of quads fastest: the 8 lanes of a SIMD group share a pixel pair (when the
    // batch has 64 images or more), so the ranges of taps below are the same across them and
    // their fetches are 8 neighbouring texel pairs.
    let at = work_images_fastest(invocation(id), (p.nq + 1u) / 2u, p.h * pairs_w, p.c);
    if (at.g >= p.groups) { return; }
    let nb2 = at.images;
    let pair = at.place;
    let cb = at.cb;
    let g = at.g;
    let cin_g = p.c / p.groups;
    let cout_g = p.c_out / p.groups;
    let ih = pair / pairs_w;
    let iw = (pair % pairs_w) * 2u;
    let taps = p.kh * p.kw;
    let th0 = i32(ih + p.ph);
    let tw0 = i32(iw + p.pw);
    let kh_range = kernel_rows(th0);
    // Only the kernel columns where one of the two pixels reaches an output column
    // (0 <= tw0 + 1 - kw and tw0 - kw < WO; unit stride and dilation along the width).
    let kw_first = u32(max(0, tw0 + 1 - i32(p.wo)));
    let kw_end = min(p.kw, u32(tw0) + 2u);
    // Output channels two at a time: each accumulator takes both channels' products in one
    // write (llvmpipe keeps the accumulators in memory), then the odd last channel alone.
    let k_step = at.blocks * 2u;
    let w_step = taps * k_step;
    var co = 0u;
    for (; co + 1u < cout_g; co += 2u) {
        let co_abs = g * cout_g + co;
        let w_base = co_abs * w_step + cb * 2u;
        for (var kh = kh_range.x; kh < kh_range.y; kh++) {
            let r = grad_index(th0 - i32(kh * p.dh), p.sh, p.ho);
            let row0 = (co_abs * p.ho + r.o) * p.wo;
            let row1 = row0 + p.ho * p.wo;
            // The second pixel at tap kw reads column tw0 + 1 - kw: the first pixel's column
            // one tap earlier.
            var second0 = quad_pair(row0, tw0 + 1 - i32(kw_first), nb2, r.ok);
            var second1 = quad_pair(row1, tw0 + 1 - i32(kw_first), nb2, r.ok);
            for (var kw = kw_first; kw < kw_end; kw++) {
                let first0 = quad_pair(row0, tw0 - i32(kw), nb2, r.ok);
                let first1 = quad_pair(row1, tw0 - i32(kw), nb2, r.ok);
                let wi = w_base + (kh * p.kw + kw) * k_step;
                fma16x2(wq(wi), wq(wi + 1u), Quads(first0.q0, first0.q1, second0.q0, second0.q1),
                        wq(wi + w_step), wq(wi + w_step + 1u),
                        Quads(first1.q0, first1.q1, second1.q0, second1.q1));
                second0 = first0;
                second1 = first1;
            }
        }
    }
    if (co < cout_g) {
        let co_abs = g * cout_g + co;
        let w_base = co_abs * w_step + cb * 2u;
        for (var kh = kh_range.x; kh < kh_range.y; kh++) {
            let r = grad_index(th0 - i32(kh * p.dh), p.sh, p.ho);
            let row_q = (co_abs * p.ho + r.o) * p.wo;
            var second = quad_pair(row_q, tw0 + 1 - i32(kw_first), nb2, r.ok);
            for (var kw = kw_first; kw < kw_end; kw++) {
                let first = quad_pair(row_q, tw0 - i32(kw), nb2, r.ok);
                let wi = w_base + (kh * p.kw + kw) * k_step;
                fma16(wq(wi), wq(wi + 1u), Quads(first.q0, first.q1, second.q0, second.q1));
                second = first;
            }
        }
    }
    store_pairs(nb2, cb * CH, cin_g, g * cin_g + cb * CH, ih * p.w + iw, iw + 1u < p.w);
}

// Channel `index` (skipped past `count`; ch in the output) of both pixels: images 8 nb2 ..
// 8 nb2 + 7 at pix (a0, a1) and, when `second`, at pix + 1 (b0, b1).
fn store_pair(nb2: u32, index: u32, count: u32, ch: u32, pix: u32, second: bool,
              a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) {
    if (index >= count) { return; }
    let pixels = p.h * p.w;
    store8(nb2, ch, p.c, pixels, pix, a0, a1, 0.0);
    if (second) {
        store8(nb2, ch, p.c, pixels, pix + 1u, b0, b1, 0.0);
    }
    if (writes_inner()) {
        store_inner((ch * pixels + pix) * p.nq + nb2 * 2u, nb2 * 2u, a0, a1);
        if (second) {
            store_inner((ch * pixels + pix + 1u) * p.nq + nb2 * 2u, nb2 * 2u, b0, b1);
        }
    }
}

// With WRITE_INNER (the input came from a fused conv + ReLU + pool, whose backward reads its
// gradient images-innermost), conv_backward_input_pairs also writes the input gradient to
// out_inner in that layout (texel (ch * H * W + pixel) * nq + quad), saving a re-layout pass.
// Where the compiler is slow, p.write_inner says it instead, so that both cases share one
// pipeline (Policy::conv_inner_copy_in_params).
override WRITE_INNER: bool = false;

fn writes_inner() -> bool {
    return WRITE_INNER | (p.write_inner == 1u);
}

// Quads q and q + 1 (texels t and t + 1) of the input gradient, zeros past the batch.
fn store_inner(t: u32, q: u32, lo: vec4<f32>, hi: vec4<f32>) {
    let images = vec4<u32>(q * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    textureStore(out_inner, texel_at(t), select(vec4<f32>(0.0), lo, images < vec4<u32>(p.n)));
    if (q + 1u < p.nq) {
        let in_batch = images + vec4<u32>(4u) < vec4<u32>(p.n);
        textureStore(out_inner, texel_at(t + 1u), select(vec4<f32>(0.0), hi, in_batch));
    }
}


// ---- the weight gradient ----

// x and g quads, both images innermost, from the textures at bindings 1 and 2.
fn xs(i: u32) -> vec4<f32> {
    return texel_quad(texels1, i);
}

fn gs(i: u32) -> vec4<f32> {
    return texel_quad(texels2, i);
}

// With POOLED_G (a convolution + ReLU + 2 x 2 pooling whose input needs no gradient), binding 2
// holds the pooled gradient itself, images innermost (texel (ch * windows + window) * nq + q),
// and binding 4 the forward's packed winner codes, element for texel: a pixel's g is its
// window's where the code names it, 0 elsewhere. No full-size gradient is then written (its
// 4 texel stores per window cost more than the second load here).
override POOLED_G: bool = false;
@group(0) @binding(4) var<storage, read> winner_codes: array<u32>;

// Output channel ch's g for quad q at output pixels (oh, ow) and (oh, ow + 1), ow even (0
// past the row's end). With POOLED_G both pixels lie in one 2 x 2 window: one texel and one
// code word for the two.
struct GPair {
    v: vec4<f32>,
    w: vec4<f32>,
}

fn g_pair(ch: u32, oh: u32, ow: u32, q: u32) -> GPair {
    if (POOLED_G) {
        let t = ((ch * (p.ho / 2u) + oh / 2u) * (p.wo / 2u) + ow / 2u) * p.nq + q;
        let g = gs(t);
        let codes = unpack_codes(winner_codes[t]);
        let here = vec4<u32>((oh % 2u) * 2u);
        let zero = vec4<f32>(0.0);
        return GPair(select(zero, g, codes == here), select(zero, g, codes == here + 1u));
    }
    let t = ((ch * p.ho + oh) * p.wo + ow) * p.nq + q;
    let inside = ow + 1u < p.wo;
    return GPair(gs(t), select(vec4<f32>(0.0), gs(select(t, t + p.nq, inside)), inside));
}

@group(0) @binding(3) var<storage, read_write> partial: array<vec4<f32>>;

// Tap k's input channel plane (C * H units) and row/column offsets relative to oh * SH, ow * SW.
fn tap(g: u32, cin_g: u32, k: u32) -> vec3<i32> {
    let taps = p.kh * p.kw;
    let c = k / taps;
    let t = k % taps;
    return vec3<i32>(
        i32((g * cin_g + c) * p.h),
        i32((t / p.kw) * p.dh) - i32(p.ph),
        i32((t % p.kw) * p.dw) - i32(p.pw),
    );
}

// The 4 images of quad q at (tap, oh, ow) of x, zero outside the image.
fn x_at(tp: vec3<i32>, oh: u32, ow: u32, q: u32) -> vec4<f32> {
    let ih = i32(oh * p.sh) + tp.y;
    let iw = i32(ow * p.sw) + tp.z;
    let inside = (u32(ih) < p.h) & (u32(iw) < p.w);
    let v = xs(select(0u, ((u32(tp.x + ih)) * p.w + u32(iw)) * p.nq + q, inside));
    return select(vec4<f32>(0.0), v, inside);
}

// Taps per block (<= 16) of conv_backward_weight, and with SLIDE_KW > 0 (the kernel width, when
// the column stride equals the column dilation) blocks of whole kernel rows (TAPS a multiple
// of SLIDE_KW): stepping to the next output column, a tap's x is then its right neighbour's
// at the previous column, and only the last tap of each kernel row is fetched.
override TAPS: u32 = 16u;
override SLIDE_KW: u32 = 0u;

// The sums of CH output channels x TAPS taps (k = tap index within the group): per (image
// quad, output pixel), up to 16 + 8 vec4 loads (fewer when sliding) feed 128 dot products of 4
// images; two output columns go into each accumulator write (they live in memory on llvmpipe).
// conv_backward_weight itself (@compute, entry point `conv_backward_weight`) is generated by
// src/backend/cpu/conv_weight_gen.rs, which writes each line repeated per tap or channel once,
// and appended to this module.

// The layout of partial (in floats): each part's row, its weight sums of absolute channel co
// and tap block kb at slots (co * tap_blocks + kb) * 16 .. + 15, then its bias sums of block
// (group g, channel block cb) at c_out * tap_blocks * 16 + (g * channel blocks + cb) * 8 .. + 7.
// tap_blocks = ceil(K / TAPS) and the channel blocks' CH come from the parameters
// (weight_taps, weight_ch) in sum_parts4.
struct PartialLayout {
    tap_blocks: u32,
    channel_blocks: u32,
    bias_at: u32,
    row_len: u32,
}

fn partial_layout(taps: u32, ch: u32) -> PartialLayout {
    let tap_blocks = (p.c / p.groups * p.kh * p.kw + taps - 1u) / taps;
    let channel_blocks = blocks_of(p.c_out / p.groups, ch);
    let bias_at = p.c_out * tap_blocks * 16u;
    let bias_len = select(0u, p.groups * channel_blocks * 8u, p.has_bias == 1u);
    return PartialLayout(tap_blocks, channel_blocks, bias_at, bias_at + bias_len);
}

// Channel co_abs's sums for tap block kb: 4 vec4s at the part's `base` (skipped past the
// group's channels; taps past TAPS and K hold unused sums).
fn store_gw(base: u32, l: PartialLayout, co_abs: u32, kb: u32, a: vec4<f32>, b: vec4<f32>,
            c: vec4<f32>, d: vec4<f32>) {
    let at = (base + (co_abs * l.tap_blocks + kb) * 16u) / 4u;
    partial[at] = a;
    partial[at + 1u] = b;
    partial[at + 2u] = c;
    partial[at + 3u] = d;
}

@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> bias_grad: array<f32>;

// Adds up conv_backward_weight's parts: src [parts, row_len] (partial_layout's, with
// p.weight_taps and p.weight_ch) into the weight gradient dst [C_out * K] and, with has_bias,
// the bias gradient [C_out]. One invocation per vec4 of a row, read once per part (a storage
// load costs per instruction, not per float, on llvmpipe); each of its 4 slots is stored
// where it holds a sum. With TEXELS, src is read from its texture copy (src_quad).
@compute @workgroup_size(64)
fn sum_parts4(id: Invocation) {
    let e4 = invocation(id);
    let l = partial_layout(p.weight_taps, p.weight_ch);
    if (e4 * 4u >= l.row_len) { return; }
    var acc = vec4<f32>(0.0);
    for (var part = 0u; part < p.parts; part++) {
        acc += src_quad(part * (l.row_len / 4u) + e4);
    }
    let k_len = p.c / p.groups * p.kh * p.kw;
    let cout_g = p.c_out / p.groups;
    for (var j = 0u; j < 4u; j++) {
        let slot = e4 * 4u + j;
        if (slot < l.bias_at) {
            // Weight slot: channel co, tap block kb, tap t of the block.
            let block = slot / 16u;
            let t = slot % 16u;
            let co = block / l.tap_blocks;
            let k = (block % l.tap_blocks) * p.weight_taps + t;
            if ((t < p.weight_taps) & (k < k_len)) {
                dst[co * k_len + k] = acc[j];
            }
        } else {
            // Bias slot: group g, channel block cb, channel i of the block.
            let b = slot - l.bias_at;
            let gcb = b / 8u;
            let ch = (gcb % l.channel_blocks) * p.weight_ch + b % 8u;
            if ((b % 8u < p.weight_ch) & (ch < cout_g)) {
                bias_grad[(gcb / l.channel_blocks) * cout_g + ch] = acc[j];
            }
        }
    }
}
