//! Buffer pool by size class. A tensor's buffer comes from here and goes back when the tensor
//! drops, into `recent` until the batch that used it is submitted, then into `free`.
//! A buffer from `recent` may be handed to an op whose kernel writes it in the same batch
//! (commands run in recording order, so its earlier readers have finished), which keeps a
//! training step's memory small; but not to a host upload: `queue.write_buffer` runs at the
//! next submit, before the recorded commands, and would overwrite data they still read.

use std::collections::HashMap;

#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    recent: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Idle textures (see `backend/cpu/texels.rs`) by their number of rows.
    textures: HashMap<u32, Vec<wgpu::Texture>>,
    allocated: u64,
    in_use: u64,
    peak_in_use: u64,
}

/// Rounds a request up to a size class: 256-byte steps up to 4 KiB, then quarter-octave
/// steps, so a pooled buffer wastes at most 25%.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(4);
    if bytes <= 4096 {
        return bytes.div_ceil(256) * 256;
    }
    let octave = 1u64 << (63 - bytes.leading_zeros());
    let step = octave / 4;
    bytes.div_ceil(step) * step
}

impl BufferPool {
    /// A pooled buffer of `class` bytes; `gpu_written` allows one released in this batch, and
    /// prefers it: `free` buffers are the only ones a host upload can take, so a kernel's
    /// output leaves them to the uploads. (Taking `free` first made a training loop with batch
    /// uploads and periodic readbacks grow its pool for hundreds of steps, as kernels took the
    /// buffers the next uploads needed.)
    ///
    /// A request may also take a buffer of the next size class up (one step: 256 bytes up to
    /// 4 KiB, a quarter octave above): a batch a little smaller than the usual one (an epoch's last) then
    /// reuses the usual batch's buffers instead of adding a set of its own.
    pub fn take(&mut self, class: u64, gpu_written: bool) -> Option<(wgpu::Buffer, u64)> {
        let up = size_class(class + 1);
        for c in [class, up] {
            let recent = match gpu_written {
                true => self.recent.get_mut(&c).and_then(|v| v.pop()),
                false => None,
            };
            if let Some(b) = recent.or_else(|| self.free.get_mut(&c).and_then(|v| v.pop())) {
                self.in_use += c;
                self.peak_in_use = self.peak_in_use.max(self.in_use);
                return Some((b, c));
            }
        }
        None
    }

    pub fn note_new(&mut self, class: u64) {
        self.allocated += class;
        self.in_use += class;
        self.peak_in_use = self.peak_in_use.max(self.in_use);
    }

    /// The most bytes held by live tensors at once since the last reset.
    pub fn peak_in_use(&self) -> u64 {
        self.peak_in_use
    }

    pub fn reset_peak(&mut self) {
        self.peak_in_use = self.in_use;
    }

    pub fn release(&mut self, class: u64, buf: wgpu::Buffer) {
        self.in_use -= class;
        self.recent.entry(class).or_default().push(buf);
    }

    /// Called after a submit: buffers released before it may take host uploads again.
    pub fn recycle_pending(&mut self) {
        for (class, bufs) in self.recent.iter_mut() {
            self.free.entry(*class).or_default().append(bufs);
        }
    }

    /// Frees every idle buffer and texture (for example under memory pressure).
    pub fn trim(&mut self) {
        for (class, bufs) in self.free.drain() {
            self.allocated -= class * bufs.len() as u64;
        }
        for (_, textures) in self.textures.drain() {
            for t in textures {
                self.allocated -= texture_bytes(&t);
            }
        }
    }

    /// An idle texture of `rows` rows. Every write to a texture is a recorded command, so
    /// one released in this batch can be handed out again at once.
    pub fn take_texture(&mut self, rows: u32) -> Option<wgpu::Texture> {
        let t = self.textures.get_mut(&rows)?.pop()?;
        self.note_in_use(texture_bytes(&t));
        Some(t)
    }

    pub fn note_new_texture(&mut self, bytes: u64) {
        self.allocated += bytes;
        self.note_in_use(bytes);
    }

    pub fn release_texture(&mut self, rows: u32, t: wgpu::Texture) {
        self.in_use -= texture_bytes(&t);
        self.textures.entry(rows).or_default().push(t);
    }

    fn note_in_use(&mut self, bytes: u64) {
        self.in_use += bytes;
        self.peak_in_use = self.peak_in_use.max(self.in_use);
    }

    pub fn allocated_bytes(&self) -> u64 {
        self.allocated
    }

    pub fn in_use_bytes(&self) -> u64 {
        self.in_use
    }
}

fn texture_bytes(t: &wgpu::Texture) -> u64 {
    t.width() as u64 * t.height() as u64 * 16
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_with_bounded_waste() {
        for bytes in [
            1u64,
            4,
            255,
            256,
            257,
            4096,
            4097,
            5000,
            1 << 20,
            (1 << 20) + 1,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes, "{bytes} -> {c}");
            assert!(c <= bytes.max(256) * 5 / 4 + 256, "{bytes} -> {c}");
        }
    }
}
