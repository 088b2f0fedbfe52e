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

fn linear_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * 256u + lid;
}

// bn_finish: one invocation per channel. Training: the batch mean and biased variance give the
// statistics, and the running ones move by `momentum` (the running variance is unbiased, as in
// PyTorch). Eval: the running statistics, passed in as the batch's, are used as they are.
@group(0) @binding(1) var<storage, read> batch_mean: array<f32>;
@group(0) @binding(2) var<storage, read> batch_var: array<f32>;
@group(0) @binding(3) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(64)
fn bn_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) {
        return;
    }
    if (p.training == 1u) {
        let mean = batch_mean[c];
        let var_b = batch_var[c];
        stats[c] = mean;
        stats[p.c + c] = inverseSqrt(var_b + p.eps);
        let unbiased = var_b * p.m / max(p.m - 1.0, 1.0);
        running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * mean;
        running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
    } else {
        // Eval: the host passes the running statistics as batch_mean / batch_var.
        stats[c] = batch_mean[c];
        stats[p.c + c] = inverseSqrt(batch_var[c] + p.eps);
    }
}

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> st: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn bn_apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len) {
        return;
    }
    let c = (e / p.hw) % p.c;
    y[e] = (x[e] - st[c]) * st[p.c + c] * weight[c] + bias[c];
}

// bn_g_xhat: g * xhat, whose per-channel sum is the weight gradient.
@group(0) @binding(1) var<storage, read> bg: array<f32>;
@group(0) @binding(2) var<storage, read> bx: array<f32>;
@group(0) @binding(3) var<storage, read> bst: array<f32>;
@group(0) @binding(4) var<storage, read_write> prod: array<f32>;

@compute @workgroup_size(256)
fn bn_g_xhat(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len) {
        return;
    }
    let c = (e / p.hw) % p.c;
    prod[e] = bg[e] * (bx[e] - bst[c]) * bst[p.c + c];
}

@group(0) @binding(4) var<storage, read> bweight: array<f32>;
@group(0) @binding(5) var<storage, read> sum_g: array<f32>;
@group(0) @binding(6) var<storage, read> sum_g_xhat: array<f32>;
@group(0) @binding(7) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(256)
fn bn_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let e = linear_index(wid, nwg, lid);
    if (e >= p.len) {
        return;
    }
    let c = (e / p.hw) % p.c;
    let invstd = bst[p.c + c];
    if (p.training == 1u) {
        let xhat = (bx[e] - bst[c]) * invstd;
        gx[e] = bweight[c] * invstd / p.m * (p.m * bg[e] - sum_g[c] - xhat * sum_g_xhat[c]);
    } else {
        gx[e] = bg[e] * bweight[c] * invstd;
    }
}
