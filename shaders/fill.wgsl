// Fills a buffer with one value (`Tensor::full`, `ones`). Zeros use the encoder's clear_buffer.
// Indexing: one invocation per element, grid folded into 2-D as everywhere.

struct Params {
    len: u32,
    value: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn fill(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = (wid.x + wid.y * nwg.x) * 256u + lid;
    if (i < p.len) {
        dst[i] = p.value;
    }
}
