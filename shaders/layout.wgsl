// Strided copies that change a tensor's layout: permute (transpose) and expand (broadcast_to).
// The backward of permute is the inverse permute (the same kernel); the backward of expand is
// binary.wgsl's broadcast backward (`sum_to`).
//
// Indexing: one invocation per output element i; its multi-index over `out_shape` (rank dims)
// is mapped to the source offset sum(idx[d] * src_strides[d]), where src_strides are the
// source's strides taken in output-dim order (0 on expanded dims).

// 8-entry arrays packed in two vec4s (uniform-buffer arrays need 16-byte elements): entry d
// is v[d >> 2][d & 3], read in place.
struct Params {
    out_shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    len: u32,
    rank: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn strided_copy(inv: Invocation) {
    let i = flat_index(inv, 256u);
    if (i >= p.len) {
        return;
    }
    var rest = i;
    var off = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        off += (rest % p.out_shape[d >> 2u][d & 3]) * p.src_strides[d >> 2u][d & 3];
        rest = rest / p.out_shape[d >> 2u][d & 3];
    }
    dst[i] = src[off];
}
