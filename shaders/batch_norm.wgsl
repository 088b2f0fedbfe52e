// 2-D batch normalization over NCHW: y = (x - mean[c]) * invstd[c] * weight[c] + bias[c].
// Training reads the activation twice forward (statistics, then the normalization) and twice
// backward (the gradient sums, then the input gradient), each time in `bn_channel_pass`; one
// invocation per channel finishes the per-channel results in between (bn_stats_finish,
// bn_eval_finish, bn_grad_finish).
//
// Channel pieces: channel c's m = N * H * W values are x[(b * C + c) * HW + j], the i-th of
// them (i = b * HW + j) in image order. A channel pass runs C * chunks workgroups of 256
// invocations; workgroup w covers channel w / chunks, values [k * per_chunk, (k + 1) *
// per_chunk) of it for k = w % chunks, each invocation every 256th of them. So the channel
// is the same for a whole workgroup: its constants are read once, and an invocation steps
// from value to value by adding 256 to (b, j) without dividing. With QUADS (H * W and the
// pieces multiples of 4) it takes 4 neighbours in one plane at a time and steps by 1,024
// values: one texel fetch (TEXELS) per operand and one Chan merge per quad instead of a load
// and a Welford update per value.
//
// Per-channel constants, 4 per channel (`stats`: mean, invstd, weight * invstd, bias;
// backward `coefficients`: a, b, c', mean) with the input gradient
// gx = a * g + b * (x - mean) + c', where in training (m values, xhat = (x - mean) * invstd)
// a = weight * invstd, b = -a * invstd * sum(g * xhat) / m, c' = -a * sum(g) / m, and in eval
// mode (constant statistics) b = c' = 0.

struct Params {
    len: u32,
    c: u32,
    hw: u32,
    training: u32,
    momentum: f32,
    eps: f32,
    // Elements per channel (N * H * W).
    m: f32,
    // Pieces per channel and values per piece (bn_channel_pass).
    chunks: u32,
    per_chunk: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// What bn_channel_pass does with each value:
const STATISTICS: u32 = 0u; // (count, mean, M2) per piece, into `out`
const GRADIENT_SUMS: u32 = 1u; // (sum g, sum g * xhat, 0) per piece, into `out`
const NORMALIZE: u32 = 2u; // y, into `out`
const INPUT_GRADIENT: u32 = 3u; // gx, into `out`
override PASS: u32 = STATISTICS;
// A ReLU after the normalization: NORMALIZE applies it; the backward passes take the gradient
// through it first, where the output (binding 5) is positive.
override RELU: bool = false;

// bn_channel_pass: 1 x, 2 g (unread in STATISTICS and NORMALIZE), 3 the per-channel
// constants (`stats`, or the backward coefficients in INPUT_GRADIENT; unread in STATISTICS),
// 4 out, 5 the ReLU's output (read by the backward passes with RELU); with TEXELS, 6-8 the
// same x, g and ReLU output as textures (src/backend/cpu/texels.rs), read instead of 1, 2 and
// 5 (Policy::texel_reads: on llvmpipe a storage load runs lane by lane, a texel fetch is one
// vector gather). The slots a pass leaves unread hold placeholders.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> constants: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> relu_out: array<f32>;
@group(0) @binding(6) var x_texels: texture_2d<f32>;
@group(0) @binding(7) var g_texels: texture_2d<f32>;
@group(0) @binding(8) var relu_out_texels: texture_2d<f32>;
override TEXELS: bool = false;
override QUADS: bool = false;

// The values an invocation takes at a time: 4 with QUADS, else 1.
fn width() -> u32 {
    return select(1u, 4u, QUADS);
}

// Which lanes of a group hold values.
fn lanes() -> vec4<f32> {
    return select(vec4<f32>(1.0, 0.0, 0.0, 0.0), vec4<f32>(1.0), QUADS);
}

// The group at element e of a texture copy: a quad, or one value and 3 zeros.
fn texel_group(t: texture_2d<f32>, e: u32) -> vec4<f32> {
    if (QUADS) {
        return texel_quad(t, e / 4u);
    }
    return vec4<f32>(texel_float(t, e), 0.0, 0.0, 0.0);
}

// The group at element e of x, g and the ReLU's output, from wherever TEXELS says:
// x_group, g_group and relu_out_group, one per operand (WGSL cannot pass a storage array to a
// helper), written by `group_readers` in src/ops/batch_norm.rs after this file.

// The group's values stored from element e (its lanes only).
fn store_group(e: u32, v: vec4<f32>) {
    out[e] = v.x;
    if (QUADS) {
        out[e + 1u] = v.y;
        out[e + 2u] = v.z;
        out[e + 3u] = v.w;
    }
}

// The finish kernels: 1 pieces (eval: the running mean), 2 (eval: the running variance;
// bn_grad_finish: stats), 3 weight, 4 bias (bn_grad_finish: sum g, written), then
//   bn_stats_finish, bn_eval_finish  5 running_mean, 6 running_var (unread in eval: scratch),
//                                    7 stats (written)
//   bn_grad_finish                   5 sum g * xhat, 6 coefficients (written)
@group(0) @binding(1) var<storage, read> pieces: array<f32>;
@group(0) @binding(1) var<storage, read> given_mean: array<f32>;
@group(0) @binding(2) var<storage, read> given_var: array<f32>;
@group(0) @binding(2) var<storage, read> saved_stats: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> sum_g_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> sum_g_xhat_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(6) var<storage, read_write> coefficients: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats: array<f32>;

var<workgroup> summaries: array<vec3<f32>, 256>;

// Two (count, mean, M2) summaries as one (Chan et al.): unlike sums of x and x^2 they stay
// exact for values far from 0 (1000 + noise).
fn merge_summaries(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if (n == 0.0) {
        return a;
    }
    let delta = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + delta * f, a.z + b.z + delta * delta * a.x * f);
}

// Two partial results as one: (count, mean, M2) summaries, or sums.
fn combine(a: vec3<f32>, b: vec3<f32>, summaries: bool) -> vec3<f32> {
    if (summaries) {
        return merge_summaries(a, b);
    }
    return a + b;
}

// Channel c's pieces (3 values each) combined in piece order.
fn merged_pieces(c: u32, summaries: bool) -> vec3<f32> {
    var s = vec3<f32>(0.0);
    for (var k = 0u; k < p.chunks; k++) {
        let o = 3u * (c * p.chunks + k);
        s = combine(s, vec3<f32>(pieces[o], pieces[o + 1u], pieces[o + 2u]), summaries);
    }
    return s;
}

// The gradient's group at element e, through the ReLU when there is one.
fn gradient(e: u32) -> vec4<f32> {
    if (RELU) {
        return select(vec4<f32>(0.0), g_group(e), relu_out_group(e) > vec4<f32>(0.0));
    }
    return g_group(e);
}

// The group of x at element e (channel constants k) in the pass: a reduction's partial result
// `s` updated, or the elementwise output written. Lanes beyond the group read 0 (g too), so
// they add nothing to the sums.
fn visit(e: u32, k: vec4<f32>, s: vec3<f32>) -> vec3<f32> {
    switch PASS {
        case STATISTICS: {
            // The group's own (count, mean, M2) merged in: for one value, Welford's update.
            let v = x_group(e);
            let n = dot(lanes(), lanes());
            let mean = dot(v, lanes()) / n;
            let d = (v - mean) * lanes();
            return merge_summaries(s, vec3<f32>(n, mean, dot(d, d)));
        }
        case GRADIENT_SUMS: {
            let ge = gradient(e);
            return s + vec3<f32>(dot(ge, vec4<f32>(1.0)), dot(ge, (x_group(e) - k.x) * k.y), 0.0);
        }
        case NORMALIZE: {
            let y = (x_group(e) - k.x) * k.z + k.w;
            store_group(e, select(y, max(y, vec4<f32>(0.0)), RELU));
        }
        default: {
            store_group(e, k.x * gradient(e) + k.y * (x_group(e) - k.w) + k.z);
        }
    }
    return s;
}

@compute @workgroup_size(256)
fn bn_channel_pass(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let w = workgroup_index(wid, nwg);
    let c = w / p.chunks;
    let piece = w % p.chunks;
    let end = min((piece + 1u) * p.per_chunk, p.len / max(p.c, 1u));
    var s = vec3<f32>(0.0);
    if (c < p.c) {
        var k = vec4<f32>(0.0);
        if (PASS != STATISTICS) {
            k = vec4<f32>(constants[4u * c], constants[4u * c + 1u], constants[4u * c + 2u],
                          constants[4u * c + 3u]);
        }
        // (b, j) of value i, advanced by 256 groups per step.
        let stride = 256u * width();
        let i0 = piece * p.per_chunk + li * width();
        var b = i0 / p.hw;
        var j = i0 % p.hw;
        let step_b = stride / p.hw;
        let step_j = stride % p.hw;
        for (var i = i0; i < end; i += stride) {
            s = visit((b * p.c + c) * p.hw + j, k, s);
            b += step_b;
            j += step_j;
            if (j >= p.hw) {
                j -= p.hw;
                b += 1u;
            }
        }
    }
    if (PASS == STATISTICS || PASS == GRADIENT_SUMS) {
        // Tree over the workgroup, one (count, mean, M2) or sums per piece.
        summaries[li] = s;
        workgroupBarrier();
        for (var step = 128u; step > 0u; step = step / 2u) {
            if (li < step) {
                summaries[li] = combine(summaries[li], summaries[li + step], PASS == STATISTICS);
            }
            workgroupBarrier();
        }
        if (li == 0u && c < p.c) {
            let t = summaries[0];
            out[3u * w] = t.x;
            out[3u * w + 1u] = t.y;
            out[3u * w + 2u] = t.z;
        }
    }
}

// Channel c's `stats` from its mean and biased variance, and in training its running
// statistics' update by `momentum` (the running variance is unbiased, as in PyTorch).
fn set_statistics(c: u32, mean: f32, variance: f32) {
    let invstd = inverseSqrt(variance + p.eps);
    stats[4u * c] = mean;
    stats[4u * c + 1u] = invstd;
    stats[4u * c + 2u] = weight[c] * invstd;
    stats[4u * c + 3u] = bias[c];
    if (p.training == 1u) {
        let unbiased = variance * p.m / max(p.m - 1.0, 1.0);
        running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * mean;
        running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
    }
}

// Training: one invocation per channel, its pieces' summaries merged in piece order.
@compute @workgroup_size(64)
fn bn_stats_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.c) {
        let s = merged_pieces(gid.x, true);
        set_statistics(gid.x, s.y, max(s.z / max(s.x, 1.0), 0.0));
    }
}

// Eval: one invocation per channel; the running statistics are used as they are.
@compute @workgroup_size(64)
fn bn_eval_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) {
        return;
    }
    set_statistics(c, given_mean[c], given_var[c]);
}

// One invocation per channel: its pieces' gradient sums added in piece order, and the input
// gradient's coefficients (see the header).
@compute @workgroup_size(64)
fn bn_grad_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) {
        return;
    }
    let s = merged_pieces(c, false);
    sum_g_out[c] = s.x;
    sum_g_xhat_out[c] = s.y;
    let invstd = saved_stats[4u * c + 1u];
    let a = weight[c] * invstd;
    var coef = vec3<f32>(a, 0.0, 0.0);
    if (p.training == 1u) {
        coef = vec3<f32>(a, -a * invstd * s.y / p.m, -a * s.x / p.m);
    }
    coefficients[4u * c] = coef.x;
    coefficients[4u * c + 1u] = coef.y;
    coefficients[4u * c + 2u] = coef.z;
    coefficients[4u * c + 3u] = saved_stats[4u * c];
}
