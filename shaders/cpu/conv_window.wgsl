// The epilogue of a convolution fused with ReLU and 2 x 2 max pooling, shared by
// conv_implicit.wgsl's conv_relu_pool_forward and conv_subgroup.wgsl's conv_relu_pool_subgroup:
// the pooled value of one channel's window for a quad of images, which pixel won, and their
// stores. Each module declares what store_window writes: `out` (the pooled output, NCHW),
// `out_inner` (the same with images innermost, for the next convolution), `winners_out` and
// SAVE_ARGMAX (the codes, for the backward).

// Whether v replaces the running max, per image: larger values, and NaN (which then stays), as
// max_pool2d.
fn takes4(v: vec4<f32>, best: vec4<f32>) -> vec4<bool> {
    return !is_nan4(best) & ((v > best) | is_nan4(v));
}

// The window's pooled ReLU outputs and their winner codes, packed one byte per image (image j
// of the quad in byte j): the winning pixel 0-3 (row-major), or 4 when the pooled value is not
// positive (its gradient is then 0).
struct Pooled {
    best: vec4<f32>,
    codes: u32,
}

// relu(conv + bias) pooled over the window's pixels a, b, c, d (row-major).
fn pool_window(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>, bv: f32) -> Pooled {
    var best = relu4(a + bv);
    var won = vec4<f32>(0.0);
    let v1 = relu4(b + bv);
    let t1 = takes4(v1, best);
    best = select(best, v1, t1);
    won = select(won, vec4<f32>(1.0), t1);
    let v2 = relu4(c + bv);
    let t2 = takes4(v2, best);
    best = select(best, v2, t2);
    won = select(won, vec4<f32>(2.0), t2);
    let v3 = relu4(d + bv);
    let t3 = takes4(v3, best);
    best = select(best, v3, t3);
    won = select(won, vec4<f32>(3.0), t3);
    let code = select(vec4<u32>(4u), vec4<u32>(won), best > vec4<f32>(0.0));
    return Pooled(best, code.x | (code.y << 8u) | (code.z << 16u) | (code.w << 24u));
}

// Stores window `pp` of channel `ch` for image quad q: the pooled values (NCHW, and with images
// innermost at texel (ch * windows + pp) * nq + q, zeros past the batch) and, with SAVE_ARGMAX,
// the winner codes at the same index.
fn store_window(ch: u32, pp: u32, q: u32, w: Pooled) {
    let pooled = (p.ho / 2u) * (p.wo / 2u);
    for (var j = 0u; j < 4u; j++) {
        let n = q * 4u + j;
        if (n < p.n) {
            out[(n * p.c_out + ch) * pooled + pp] = w.best[j];
        }
    }
    let texel = (ch * pooled + pp) * p.nq + q;
    let in_batch = vec4<u32>(q * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.n);
    textureStore(out_inner, texel_at(texel), select(vec4<f32>(0.0), w.best, in_batch));
    if (SAVE_ARGMAX) {
        winners_out[texel] = w.codes;
    }
}
