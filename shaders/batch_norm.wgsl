// 2-D batch normalization over NCHW: y = (x - mean[c]) * invstd[c] * weight[c] + bias[c].
// Training reads the activation twice forward (bn_stats, bn_apply) and twice backward
// (bn_grad_sums, bn_backward); the per-channel results are finished by one invocation per
// channel (bn_stats_finish, bn_grad_finish, and bn_finish for statistics given in eval mode).
//
// Channel pieces: channel c's m = N * H * W values are x[(b * C + c) * HW + j], the i-th of
// them (i = b * HW + j) in image order. bn_stats and bn_grad_sums run C * chunks workgroups of
// 256 invocations; workgroup w covers channel w / chunks, values [k * per_chunk, (k + 1) *
// per_chunk) of it for k = w % chunks, each invocation every 256th of them, and writes one
// summary per piece, which the finish kernels combine in piece order.
//
// Indexing: elementwise kernels run one invocation per element e of [N, C, H*W], whose channel
// is (e / hw) % c. `stats` packs [mean (C values), invstd (C values)].
// Backward (training): gx = weight * invstd / m * (m * g - sum_g - xhat * sum_g_xhat), with
// m = N * H * W and xhat = (x - mean) * invstd; in eval mode the statistics are constants and
// gx = g * weight * invstd.

struct Params {
    len: u32,
    c: u32,
    hw: u32,
    training: u32,
    momentum: f32,
    eps: f32,
    // Elements per channel (N * H * W).
    m: f32,
    // Pieces per channel and values per piece (bn_stats, bn_grad_sums).
    chunks: u32,
    per_chunk: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// bn_finish: 1 mean, 2 var (the running statistics, in eval mode), 3 running_mean,
// 4 running_var (unread: scratch), 5 stats (written).
@group(0) @binding(1) var<storage, read> batch_mean: array<f32>;
@group(0) @binding(2) var<storage, read> batch_var: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
// The elementwise kernels: 1 x, 2 stats, 3 weight, then
//   bn_apply     4 bias, 5 y (written to `out`)
//   bn_backward  4 g, 5 sum_g, 6 sum_g_xhat, 7 gx
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> st: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> sum_g: array<f32>;
@group(0) @binding(6) var<storage, read> sum_g_xhat: array<f32>;
@group(0) @binding(7) var<storage, read_write> gx: array<f32>;
// The piece kernels: bn_stats 1 x, 2 pieces (written); bn_grad_sums 1 x, 2 stats, 3 weight
// (unread), 4 g, 5 pieces (written to `out`). The finish kernels: bn_stats_finish 1 pieces,
// 2 (unread), 3 running_mean, 4 running_var, 5 stats; bn_grad_finish 1 pieces, 2 sum g,
// 3 sum g * xhat (both written).
@group(0) @binding(2) var<storage, read_write> pieces_out: array<f32>;
@group(0) @binding(1) var<storage, read> pieces: array<f32>;
@group(0) @binding(2) var<storage, read_write> sum_g_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> sum_g_xhat_out: array<f32>;

// bn_finish (eval mode): one invocation per channel; the running statistics, passed in as the
// batch's, are used as they are.
@compute @workgroup_size(64)
fn bn_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) {
        return;
    }
    set_statistics(c, batch_mean[c], batch_var[c]);
}

// Channel c's statistics for bn_apply and, in training, its running statistics' update by
// `momentum` (the running variance is unbiased, as in PyTorch).
fn set_statistics(c: u32, mean: f32, variance: f32) {
    stats[c] = mean;
    stats[p.c + c] = inverseSqrt(variance + p.eps);
    if (p.training == 1u) {
        let unbiased = variance * p.m / max(p.m - 1.0, 1.0);
        running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * mean;
        running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
    }
}

fn channel(e: u32) -> u32 {
    return (e / p.hw) % p.c;
}

// Element e, in channel c, normalized.
fn xhat(e: u32, c: u32) -> f32 {
    return (x[e] - st[c]) * st[p.c + c];
}

@compute @workgroup_size(256)
fn bn_apply(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        let c = channel(e);
        out[e] = xhat(e, c) * weight[c] + bias[c];
    }
}

@compute @workgroup_size(256)
fn bn_backward(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e >= p.len) {
        return;
    }
    let c = channel(e);
    let invstd = st[p.c + c];
    if (p.training == 1u) {
        gx[e] = weight[c] * invstd / p.m * (p.m * g[e] - sum_g[c] - xhat(e, c) * sum_g_xhat[c]);
    } else {
        gx[e] = g[e] * weight[c] * invstd;
    }
}

// ---- Training statistics in one read: per-piece (count, mean, M2) summaries by Welford's
// update, merged by Chan et al.'s formula (within a workgroup by a tree, then across pieces).
// Unlike sums of x and x^2 they stay exact for values far from 0 (1000 + noise).

var<workgroup> summaries: array<vec3<f32>, 256>;

// Two (count, mean, M2) summaries as one.
fn merge_summaries(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    let n = a.x + b.x;
    if (n == 0.0) {
        return a;
    }
    let delta = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + delta * f, a.z + b.z + delta * delta * a.x * f);
}

// The index in x of channel c's i-th value.
fn channel_value(c: u32, i: u32) -> u32 {
    return ((i / p.hw) * p.c + c) * p.hw + i % p.hw;
}

// The workgroup's channel and its piece's value range (see the header).
fn piece_of(w: u32) -> vec3<u32> {
    let start = (w % p.chunks) * p.per_chunk;
    return vec3<u32>(w / p.chunks, start, min(start + p.per_chunk, p.len / max(p.c, 1u)));
}

@compute @workgroup_size(256)
fn bn_stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let w = workgroup_index(wid, nwg);
    let piece = piece_of(w);
    var s = vec3<f32>(0.0);
    if (piece.x < p.c) {
        for (var i = piece.y + li; i < piece.z; i += 256u) {
            let v = x[channel_value(piece.x, i)];
            s.x += 1.0;
            let d = v - s.y;
            s.y += d / s.x;
            s.z += d * (v - s.y);
        }
    }
    summaries[li] = s;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step = step / 2u) {
        if (li < step) {
            summaries[li] = merge_summaries(summaries[li], summaries[li + step]);
        }
        workgroupBarrier();
    }
    if (li == 0u && piece.x < p.c) {
        let t = summaries[0];
        pieces_out[3u * w] = t.x;
        pieces_out[3u * w + 1u] = t.y;
        pieces_out[3u * w + 2u] = t.z;
    }
}

// One invocation per channel: its pieces merged into the mean and biased variance.
@compute @workgroup_size(64)
fn bn_stats_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) {
        return;
    }
    var s = vec3<f32>(0.0);
    for (var k = 0u; k < p.chunks; k++) {
        let o = 3u * (c * p.chunks + k);
        s = merge_summaries(s, vec3<f32>(pieces[o], pieces[o + 1u], pieces[o + 2u]));
    }
    set_statistics(c, s.y, max(s.z / max(s.x, 1.0), 0.0));
}

// The backward's per-channel sums of g and g * xhat in one read of x and g, per piece.
@compute @workgroup_size(256)
fn bn_grad_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let w = workgroup_index(wid, nwg);
    let piece = piece_of(w);
    var s = vec2<f32>(0.0);
    if (piece.x < p.c) {
        for (var i = piece.y + li; i < piece.z; i += 256u) {
            let e = channel_value(piece.x, i);
            s += vec2<f32>(g[e], g[e] * xhat(e, piece.x));
        }
    }
    let sum_g = workgroup_sum(li, s.x);
    // Every invocation has read the first total before the tree is refilled.
    workgroupBarrier();
    let sum_g_xhat = workgroup_sum(li, s.y);
    if (li == 0u && piece.x < p.c) {
        out[2u * w] = sum_g;
        out[2u * w + 1u] = sum_g_xhat;
    }
}

// One invocation per channel: its pieces' sums added in piece order.
@compute @workgroup_size(64)
fn bn_grad_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) {
        return;
    }
    var s = vec2<f32>(0.0);
    for (var k = 0u; k < p.chunks; k++) {
        let o = 2u * (c * p.chunks + k);
        s += vec2<f32>(pieces[o], pieces[o + 1u]);
    }
    sum_g_out[c] = s.x;
    sum_g_xhat_out[c] = s.y;
}
