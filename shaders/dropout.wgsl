// Dropout in training mode: each element is kept with probability 1 - p and scaled by
// 1 / (1 - p), else zeroed. The mask comes from a hash of (seed, element index), so it is
// generated on the GPU, reproducible from the seed, and independent of the dispatch shape.
// The forward saves the mask (0 or the scale) and the backward multiplies by it.
// Indexing: one invocation per element, grid folded into 2-D.

struct Params {
    len: u32,
    seed: u32,
    p: f32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> prm: Params;

// PCG-style integer hash (O'Neill's permutation), good enough for dropout masks.
fn hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Forward: x, y, mask (written). Backward: g, the saved mask, gx.
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> mask: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> saved_mask: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;

@compute @workgroup_size(256)
fn dropout_forward(inv: Invocation) {
    let i = flat_index(inv, 256u);
    if (i < prm.len) {
        let u = f32(hash(hash(i) ^ prm.seed) >> 8u) * (1.0 / 16777216.0);
        let m = select(0.0, prm.scale, u >= prm.p);
        mask[i] = m;
        y[i] = x[i] * m;
    }
}

@compute @workgroup_size(256)
fn dropout_backward(inv: Invocation) {
    let i = flat_index(inv, 256u);
    if (i < prm.len) {
        gx[i] = g[i] * saved_mask[i];
    }
}
