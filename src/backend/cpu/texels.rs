//! A tensor's values as an rgba32float texture, 4 floats per texel, in rows of
//! [`TEXEL_ROW`] texels: element i of the data is component i % 4 of texel i / 4, at
//! (x, y) = ((i / 4) % TEXEL_ROW, (i / 4) / TEXEL_ROW). Kernels for CPU adapters read their
//! large operands this way: on llvmpipe a `textureLoad` of a vec4 costs about the same as a
//! storage-buffer vec4 load from L1, and 3-4x less once the data no longer fits there (a storage
//! load is a branchy loop over the SIMD lanes, a texel fetch a straight gather).
//! Textures come from the device's pool, keyed by their number of rows, and go back when the
//! `Texels` drops; every write to one is a recorded command, so a texture released earlier in
//! the same batch can be rewritten at once (commands run in recording order).

use crate::device::Device;
use crate::error::Result;

/// Texels per texture row (the shaders' `TEXEL_ROW`).
pub(crate) const TEXEL_ROW: u32 = 1024;

/// Bytes per texel (4 x f32).
const TEXEL_BYTES: u64 = 16;

pub(crate) struct Texels {
    texture: Option<wgpu::Texture>,
    view: wgpu::TextureView,
    rows: u32,
    device: Device,
}

impl Texels {
    pub fn view(&self) -> &wgpu::TextureView {
        &self.view
    }
}

impl Drop for Texels {
    fn drop(&mut self) {
        if let Some(t) = self.texture.take() {
            self.device
                .buffer_pool()
                .lock()
                .unwrap()
                .release_texture(self.rows, t);
        }
    }
}

/// Rows of a pooled texture holding `rows` rows: quarter-octave steps, never a power of two.
/// llvmpipe compiles a variant of a shader for each combination of its textures' static
/// state, which includes whether each dimension is a power of two: with the width fixed and
/// the height never one, a kernel compiles once.
fn rows_class(rows: u32) -> u32 {
    let rows = rows.max(3);
    let step = ((1u32 << (31 - rows.leading_zeros())) / 4).max(1);
    let class = rows.div_ceil(step) * step;
    if class.is_power_of_two() {
        class + step.max(1)
    } else {
        class
    }
}

impl Device {
    /// A texture for a texture binding a kernel leaves alone (its storage-buffer twin is read
    /// instead): one texel, made once per device.
    pub(crate) fn unused_texels(&self) -> &wgpu::TextureView {
        self.dummy_texels_slot().get_or_init(|| {
            self.wgpu()
                .create_texture(&wgpu::TextureDescriptor {
                    label: Some("webgrad unused texels"),
                    size: wgpu::Extent3d {
                        width: 1,
                        height: 1,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: wgpu::TextureFormat::Rgba32Float,
                    usage: wgpu::TextureUsages::TEXTURE_BINDING,
                    view_formats: &[],
                })
                .create_view(&wgpu::TextureViewDescriptor::default())
        })
    }

    /// A texture for `texels` texels (contents undefined, for a kernel to write), or `None`
    /// when it would exceed the adapter's largest 2-D texture.
    pub(crate) fn texels(&self, texels: u64) -> Option<Texels> {
        let rows = texels.div_ceil(TEXEL_ROW as u64).max(1);
        let max = self.limits().max_texture_dimension_2d as u64;
        if rows > max || TEXEL_ROW as u64 > max {
            return None;
        }
        let rows = rows_class(rows as u32).min(max as u32);
        // An idle texture of this class, or of the next one up (a batch a little smaller than
        // the usual one then reuses the usual one's textures).
        let pooled = {
            let mut pool = self.buffer_pool().lock().unwrap();
            let up = rows_class(rows + 1);
            match pool.take_texture(rows) {
                Some(t) => Some((t, rows)),
                None if up <= max as u32 => pool.take_texture(up).map(|t| (t, up)),
                None => None,
            }
        };
        let (texture, rows) = pooled.unwrap_or_else(|| {
            self.buffer_pool()
                .lock()
                .unwrap()
                .note_new_texture(rows as u64 * TEXEL_ROW as u64 * TEXEL_BYTES);
            let texture = self.wgpu().create_texture(&wgpu::TextureDescriptor {
                label: Some("webgrad texels"),
                size: wgpu::Extent3d {
                    width: TEXEL_ROW,
                    height: rows,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING
                    | wgpu::TextureUsages::STORAGE_BINDING
                    | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            (texture, rows)
        });
        Some(Texels {
            view: texture.create_view(&wgpu::TextureViewDescriptor::default()),
            texture: Some(texture),
            rows,
            device: self.clone(),
        })
    }

    /// A texture holding the whole of `buf` (its size a multiple of 16 bytes), by a recorded
    /// copy; `None` when it does not fit in a texture.
    pub(crate) fn texels_of(&self, buf: &wgpu::Buffer) -> Result<Option<Texels>> {
        if !buf.size().is_multiple_of(TEXEL_BYTES) {
            return Ok(None);
        }
        let texels = buf.size() / TEXEL_BYTES;
        let Some(t) = self.texels(texels) else {
            return Ok(None);
        };
        let row = TEXEL_ROW as u64;
        let full_rows = (texels / row) as u32;
        let rest = (texels % row) as u32;
        let texture = t.texture.as_ref().unwrap();
        let copy = |offset: u64, origin_y: u32, width: u32, height: u32| {
            self.copy_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: buf,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset,
                        bytes_per_row: Some(TEXEL_ROW * TEXEL_BYTES as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: origin_y,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
            )
        };
        if full_rows > 0 {
            copy(0, 0, TEXEL_ROW, full_rows);
        }
        if rest > 0 {
            copy(full_rows as u64 * row * TEXEL_BYTES, full_rows, rest, 1);
        }
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::rows_class;

    #[test]
    fn row_classes_cover_the_request_with_bounded_waste() {
        for rows in [1u32, 2, 3, 4, 5, 7, 8, 9, 16, 100, 1000, 1024, 16383] {
            let c = rows_class(rows);
            assert!(c >= rows && c <= (rows * 3 / 2).max(3), "{rows} -> {c}");
            assert!(!c.is_power_of_two(), "{rows} -> {c}");
        }
    }
}
