// 2-D batch normalization over NCHW: y = (x - mean[c]) * invstd[c] * weight[c] + bias[c].
// The per-channel sums (mean, variance, and the backward's sum g and sum g * xhat) are computed
// by the reduction kernels; this file holds the per-channel finish and the elementwise parts.
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
}

@group(0) @binding(0) var<uniform> p: Params;

// bn_finish: 1 batch_mean, 2 batch_var, 3 running_mean, 4 running_var, 5 stats (written),
// 6 mean_shift.
@group(0) @binding(1) var<storage, read> batch_mean: array<f32>;
@group(0) @binding(2) var<storage, read> batch_var: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read> mean_shift: array<f32>;
// The elementwise kernels: 1 x, 2 stats, 3 weight, then
//   bn_apply     4 bias, 5 y (written to `out`)
//   bn_g_xhat    4 g, 5 g * xhat (written to `out`)
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

// bn_finish: one invocation per channel. Training: the batch mean and biased variance give the
// statistics, and the running ones move by `momentum` (the running variance is unbiased, as in
// PyTorch). Eval: the running statistics, passed in as the batch's, are used as they are.
// The batch variance comes from values centred on the first-pass mean `batch_mean`, whose f32
// sum can be off by many ulps of the values when they are far from 0 (1000 + noise); the
// centred values' own mean `mean_shift` (0 in eval) corrects both: mean = batch_mean + shift
// and var = E[(x - batch_mean)^2] - shift^2.
@compute @workgroup_size(64)
fn bn_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) {
        return;
    }
    let shift = mean_shift[c];
    let mean = batch_mean[c] + shift;
    let variance = max(batch_var[c] - shift * shift, 0.0);
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

// g * xhat, whose per-channel sum is the weight gradient.
@compute @workgroup_size(256)
fn bn_g_xhat(inv: Invocation) {
    let e = flat_index(inv, 256u);
    if (e < p.len) {
        out[e] = g[e] * xhat(e, channel(e));
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
