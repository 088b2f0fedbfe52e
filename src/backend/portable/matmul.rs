//! The matrix product's portable schedule: `matmul_tiled` (`shaders/matmul.wgsl`), 64 x 64
//! output tiles built from tiles of A and B shared in workgroup memory.

use crate::backend::gemm::{Gemm, Piece};
use crate::backend::policy::GemmKernel;
use crate::device::Device;
use crate::error::Result;
use crate::kernel::{shader, Bind, Shader};

pub(crate) static SHADER: Shader = shader!("matmul", includes = ["matmul_common"]);

/// Records the pieces of `g`, one dispatch each.
pub(crate) fn run(dev: &Device, g: &Gemm, pieces: &[Piece]) -> Result<()> {
    debug_assert!(g.a_row_sums.is_none(), "the tiled kernel sums no rows");
    let binds = [
        Bind::Read(g.a.buf),
        Bind::Read(g.b.buf),
        Bind::Write(g.c),
        g.bias_bind(),
    ];
    for piece in pieces {
        g.record(dev, &SHADER, GemmKernel::Tiled, piece, &binds, &[])?;
    }
    Ok(())
}
