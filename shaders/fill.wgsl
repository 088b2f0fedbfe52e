// Fills a buffer with one value (`Tensor::full`, `ones`). Zeros use the encoder's clear_buffer.
// Indexing: one invocation per element, grid folded into 2-D as everywhere.

struct Params {
    len: u32,
    value: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn fill(inv: Invocation) {
    let i = flat_index(inv, 256u);
    if (i < p.len) {
        dst[i] = p.value;
    }
}
