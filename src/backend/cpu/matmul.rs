//! The matrix product on CPU adapters: register blocks per invocation, no workgroup memory
//! (`shaders/cpu/matmul_blocked.wgsl`: matmul_blocked8, matmul_rows), with the operands read
//! as vec4 texels where their strides allow (matmul_vec4, or matmul_subgroup in
//! `shaders/cpu/matmul_subgroup.wgsl` where the adapter's subgroups are its 8 SIMD lanes). The
//! unrolled parts of the shaders come from `matmul_gen.rs`; the policy picks the kernel.

use super::matmul_gen;
use super::texels::Texels;
use crate::backend::gemm::{Gemm, Piece};
use crate::backend::policy::GemmKernel;
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{shader, Bind, Shader};

pub(crate) static BLOCKED: Shader = shader!(
    "cpu/matmul_blocked",
    includes = ["matmul_common", "cpu/matmul_registers"],
    Some(matmul_gen::blocked)
);
pub(crate) static SUBGROUP: Shader = shader!(
    "cpu/matmul_subgroup",
    includes = ["matmul_common", "cpu/matmul_registers"],
    Some(matmul_gen::subgroup)
);

/// Records the pieces of `g`; operands are copied into textures once, for all the pieces.
pub(crate) fn run(dev: &Device, g: &Gemm, pieces: &[Piece]) -> Result<()> {
    let mut texels = Operands::NotYet;
    for piece in pieces {
        dispatch(dev, g, piece, &mut texels)?;
    }
    Ok(())
}

fn dispatch(dev: &Device, g: &Gemm, piece: &Piece, texels: &mut Operands) -> Result<()> {
    // The vec4 kernel over k - k % 4 when the operands' strides allow it (reading them as
    // textures), then matmul_blocked8 adds the rest.
    if dev.policy().gemm_texels(g.m, piece.k) {
        if let (Some(form), Some((a, b))) = (vec4_form(g, piece), texels.get(dev, g)?) {
            let k4 = piece.k - piece.k % 4;
            let main = Piece {
                k: k4,
                relu: piece.relu && k4 == piece.k,
                ..*piece
            };
            record(dev, g, &main, Some(Vec4 { form, a, b }))?;
            if k4 == piece.k {
                return Ok(());
            }
            let tail = Piece {
                k: piece.k - k4,
                a_off: piece.a_off + k4 * g.a.col_stride,
                b_off: piece.b_off + k4 * g.b.row_stride,
                accumulate: true,
                bias: false,
                ..*piece
            };
            return record(dev, g, &tail, None);
        }
    }
    record(dev, g, piece, None)
}

/// How the texel kernels can read the operands, (A along k, B along k), if they can.
fn vec4_form(g: &Gemm, piece: &Piece) -> Option<(bool, bool)> {
    let (a, b) = (&g.a, &g.b);
    let a_k = form(piece.a_off, a.batch_stride, a.col_stride, a.row_stride)?;
    let b_k = form(piece.b_off, b.batch_stride, b.row_stride, b.col_stride)?;
    Some((a_k, b_k))
}

/// How an operand at `offset` with these strides (between steps of k, and between its lines:
/// A's rows, B's columns) reads as vec4s: along k (true) or across its lines (false), where
/// that direction is contiguous and the offset and other strides are multiples of 4.
fn form(offset: usize, batch_stride: usize, k_stride: usize, line_stride: usize) -> Option<bool> {
    let aligned = |v: [usize; 3]| v.iter().all(|x| x % 4 == 0);
    if k_stride == 1 && aligned([offset, batch_stride, line_stride]) {
        Some(true)
    } else if line_stride == 1 && aligned([offset, batch_stride, k_stride]) {
        Some(false)
    } else {
        None
    }
}

/// Records one kernel over `piece`: a texel kernel in the given form, or the scalar one the
/// policy picks for the rows.
fn record(dev: &Device, g: &Gemm, piece: &Piece, vec4: Option<Vec4>) -> Result<()> {
    let kernel = dev.policy().gemm_kernel(g.m, vec4.is_some());
    let mut constants = Vec::new();
    let (a, b) = match &vec4 {
        Some(v) => {
            constants.extend([("A_K", v.form.0 as u32), ("B_K", v.form.1 as u32)]);
            (Bind::Texels(v.a), Bind::Texels(v.b))
        }
        None => (Bind::Read(g.a.buf), Bind::Read(g.b.buf)),
    };
    let unused = dev.dummy_buffer();
    let (shader, c, slot5) = match kernel {
        // matmul_subgroup stores C as vec4s (binding 5) when its rows and offsets allow (C4),
        // else as floats (binding 3); the other slot holds the device's dummy buffer.
        GemmKernel::Subgroup8 => {
            let c4 = [g.n, piece.c_off, g.c_batch_stride]
                .iter()
                .all(|v| v % 4 == 0);
            constants.push(("C4", c4 as u32));
            let (c, c4_slot) = if c4 { (unused, g.c) } else { (g.c, unused) };
            (&SUBGROUP, c, Some(c4_slot))
        }
        // Without row sums the slot holds the dummy buffer (unwritten).
        GemmKernel::Rows => {
            constants.push(("ROW_SUMS", g.a_row_sums.is_some() as u32));
            (&BLOCKED, g.c, Some(g.a_row_sums.unwrap_or(unused)))
        }
        _ => (&BLOCKED, g.c, None),
    };
    let mut binds = vec![a, b, Bind::Write(c), g.bias_bind()];
    binds.extend(slot5.map(Bind::Write));
    if kernel != GemmKernel::Rows
        && dev.policy().gemm_waits_for_pipelines(g.m * g.n * piece.k)
        && !dev.compiled_or_queued(
            shader,
            kernel.entry(),
            &Gemm::constants(dev, piece, &constants),
            &binds,
        )
    {
        // matmul_rows over the plain operands while the kernel compiles in the background.
        let binds = [
            Bind::Read(g.a.buf),
            Bind::Read(g.b.buf),
            Bind::Write(g.c),
            g.bias_bind(),
            Bind::Write(unused),
        ];
        let rows = GemmKernel::Rows;
        return g.record(dev, &BLOCKED, rows, piece, &binds, &[("ROW_SUMS", 0)]);
    }
    g.record(dev, shader, kernel, piece, &binds, &constants)
}

/// The texel kernels' operand form (A along k, B along k) and their operands as textures.
struct Vec4<'t> {
    form: (bool, bool),
    a: &'t wgpu::TextureView,
    b: &'t wgpu::TextureView,
}

/// A product's operands as textures, copied once for all its pieces when the first piece needs
/// them; `Unavailable` when a buffer does not fit in a texture.
enum Operands {
    NotYet,
    Unavailable,
    Copied(Box<(Texels, Option<Texels>)>),
}

impl Operands {
    fn get(
        &mut self,
        dev: &Device,
        gemm: &Gemm,
    ) -> Result<Option<(&wgpu::TextureView, &wgpu::TextureView)>> {
        if let Operands::NotYet = self {
            let a = dev.texels_of(gemm.a.buf)?;
            // A product of a matrix with itself (or its transpose) copies it once.
            let b = if gemm.a.buf == gemm.b.buf {
                None
            } else {
                dev.texels_of(gemm.b.buf)?
            };
            *self = match (a, b) {
                (Some(a), Some(b)) => Operands::Copied(Box::new((a, Some(b)))),
                (Some(a), None) if gemm.a.buf == gemm.b.buf => {
                    Operands::Copied(Box::new((a, None)))
                }
                _ => Operands::Unavailable,
            };
        }
        Ok(match self {
            Operands::Copied(ab) => Some((ab.0.view(), ab.1.as_ref().unwrap_or(&ab.0).view())),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::backend::{gemm, Gemm, Operand};
    use crate::{AdapterClass, Device, DeviceOptions, Rng, Tensor};

    /// Every operand form of the CPU kernels (A along k or across rows, B along k or across
    /// columns), with k % 4 tails, a batch, and edges past the 8 x 8 blocks, against float64.
    /// Operand matrices are stored either [rows, cols] or transposed, and read in place.
    #[test]
    fn every_operand_form_matches_float64() {
        // The CPU schedules: matmul_vec4, and matmul_subgroup where the adapter has 8-lane
        // subgroups.
        let classes = Device::new().unwrap().runnable_kernel_classes();
        for class in classes.into_iter().filter(|c| c.is_cpu()) {
            every_operand_form_on(class);
        }
    }

    fn every_operand_form_on(class: AdapterClass) {
        let dev = Device::with_options(DeviceOptions::default().force_kernels(class)).unwrap();
        let mut rng = Rng::new(5);
        for &(batch, m, k, n) in &[
            (1usize, 20usize, 12usize, 36usize),
            (2, 33, 21, 17),
            (1, 70, 5, 9),
            (3, 24, 8, 8),
        ] {
            for a_k in [true, false] {
                for b_k in [true, false] {
                    // A [batch, m, k] stored as [m, k] (a_k) or [k, m]; likewise B [k, n].
                    // Row lengths are padded to a multiple of 4 so that the vec4 kernel applies.
                    let (a_rows, a_cols) = if a_k { (m, k) } else { (k, m) };
                    let (b_rows, b_cols) = if b_k { (n, k) } else { (k, n) };
                    let a_ld = a_cols.div_ceil(4) * 4;
                    let b_ld = b_cols.div_ceil(4) * 4;
                    let a: Vec<f32> = (0..batch * a_rows * a_ld).map(|_| rng.normal()).collect();
                    let b: Vec<f32> = (0..batch * b_rows * b_ld).map(|_| rng.normal()).collect();
                    let at = |bi: usize, r: usize, c: usize| -> f64 {
                        let (i, j) = if a_k { (r, c) } else { (c, r) };
                        a[bi * a_rows * a_ld + i * a_ld + j] as f64
                    };
                    let bt = |bi: usize, r: usize, c: usize| -> f64 {
                        let (i, j) = if b_k { (c, r) } else { (r, c) };
                        b[bi * b_rows * b_ld + i * b_ld + j] as f64
                    };
                    let ta = Tensor::from_slice(&dev, &a, &[a.len()]).unwrap();
                    let tb = Tensor::from_slice(&dev, &b, &[b.len()]).unwrap();
                    let tc = Tensor::uninit(&dev, &[batch * m * n]).unwrap();
                    let op = |buf, rows, ld, along_k: bool, first: bool| {
                        let o = Operand::rows(buf, rows, ld, true);
                        // along_k: element (r, k) of A (or (k, c) of B) at r * ld + k.
                        match (along_k, first) {
                            (true, true) | (false, false) => o,
                            _ => Operand {
                                row_stride: 1,
                                col_stride: ld,
                                ..o
                            },
                        }
                    };
                    let g = Gemm::new(
                        op(ta.buffer(), a_rows, a_ld, a_k, true),
                        op(tb.buffer(), b_rows, b_ld, b_k, false),
                        tc.buffer(),
                        batch,
                        m,
                        n,
                        k,
                    );
                    gemm(&dev, &g).unwrap();
                    let got = tc.to_vec().unwrap();
                    for bi in 0..batch {
                        for r in 0..m {
                            for c in 0..n {
                                let want: f64 = (0..k).map(|i| at(bi, r, i) * bt(bi, i, c)).sum();
                                let g = got[(bi * m + r) * n + c] as f64;
                                assert!(
                                    (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                                    "a_k {a_k} b_k {b_k} {batch}x{m}x{k}x{n} [{bi},{r},{c}]: {g} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
