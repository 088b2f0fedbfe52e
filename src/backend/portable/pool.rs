//! 2-D max, average and adaptive average pooling (`shaders/pool.wgsl`), run by every adapter:
//! the general kernels (one invocation per output in the forward, per input pixel in the
//! backward), and for windows that tile the input exactly one invocation per window in the
//! backward, with vec2 loads and stores for 2 x 2 tiles. Windows within the policy's loop
//! limit only (`ops/pool.rs` pools larger ones one axis at a time).

use crate::device::Device;
use crate::error::Result;
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::pool::Pool2dParams;
use crate::ops::unary::groups;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("pool");

kernel_params! {
    /// `Params` of `shaders/pool.wgsl`.
    pub(crate) struct PoolParams for "pool" {
        planes: u32,
        h: u32,
        w: u32,
        ho: u32,
        wo: u32,
        kh: u32,
        kw: u32,
        sh: u32,
        sw: u32,
        ph: u32,
        pw: u32,
        dh: u32,
        dw: u32,
        count_include_pad: u32,
    }
}

/// The sizes of one pooling: N x C planes of H x W pooled to HO x WO, over the windows of `p`
/// or, `adaptive`, PyTorch's adaptive bins (average pooling; `p` unused).
#[derive(Clone, Copy)]
pub(crate) struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    pub p: Pool2dParams,
    pub adaptive: bool,
}

impl PoolGeometry {
    /// Whether the windows tile the input exactly (kernel = stride, no padding, no rows or
    /// columns left over).
    fn tiled(&self) -> bool {
        !self.adaptive
            && self.p.kernel == self.p.stride
            && self.p.padding == (0, 0)
            && self.p.dilation == (1, 1)
            && self.h == self.ho * self.p.kernel.0
            && self.w == self.wo * self.p.kernel.1
    }

    /// 2 x 2 windows that tile the input.
    fn tiled_2x2(&self) -> bool {
        self.tiled() && self.p.kernel == (2, 2)
    }

    fn params(&self) -> PoolParams {
        let p = &self.p;
        PoolParams {
            planes: self.planes as u32,
            h: self.h as u32,
            w: self.w as u32,
            ho: self.ho as u32,
            wo: self.wo as u32,
            kh: p.kernel.0 as u32,
            kw: p.kernel.1 as u32,
            sh: p.stride.0 as u32,
            sw: p.stride.1 as u32,
            ph: p.padding.0 as u32,
            pw: p.padding.1 as u32,
            dh: p.dilation.0 as u32,
            dw: p.dilation.1 as u32,
            count_include_pad: p.count_include_pad as u32,
        }
    }

    fn outputs(&self) -> usize {
        self.planes * self.ho * self.wo
    }
}

/// Max pooling (`max`) or average pooling of x into `out` (planes x HO x WO); with
/// `argmax`, max pooling also saves each window's argmax there for the backward.
pub(crate) fn pool2d_forward(
    dev: &Device,
    x: &Tensor,
    out: &wgpu::Buffer,
    geo: &PoolGeometry,
    max: bool,
    argmax: Option<&Tensor>,
) -> Result<()> {
    let entry = if max && geo.tiled_2x2() {
        "max_pool_forward_2x2"
    } else {
        "pool_forward"
    };
    dev.dispatch_with(
        &SHADER,
        entry,
        &[
            ("MAX", max as u32),
            ("ADAPTIVE", geo.adaptive as u32),
            ("SAVE_ARGMAX", argmax.is_some() as u32),
        ],
        &[
            Bind::Read(x.buffer()),
            Bind::Write(out),
            // Without the argmax the device's dummy buffer fills its slot (unwritten).
            Bind::Write(argmax.map_or(dev.dummy_buffer(), |a| a.buffer())),
        ],
        &geo.params(),
        groups(geo.outputs()),
    )
}

/// The input gradient gx ([N, C, H, W]) from the output gradient g: routed to each window's
/// saved argmax (max pooling), or spread over the window (average pooling, `argmax` None).
pub(crate) fn pool2d_backward(
    g: &Tensor,
    argmax: Option<&Tensor>,
    geo: &PoolGeometry,
    in_shape: &[usize],
) -> Result<Tensor> {
    let dev = g.device();
    let gx = Tensor::uninit(dev, in_shape)?;
    // Max pooling over windows that tile the input: one invocation per window.
    let (entry, invocations) = match (argmax.is_some(), geo.tiled()) {
        (true, true) if geo.tiled_2x2() => ("max_pool_backward_2x2", geo.outputs()),
        (true, true) => ("max_pool_backward_disjoint", geo.outputs()),
        _ => ("pool_backward", gx.numel()),
    };
    dev.dispatch_with(
        &SHADER,
        entry,
        &[
            ("MAX", argmax.is_some() as u32),
            ("ADAPTIVE", geo.adaptive as u32),
        ],
        &[
            Bind::Read(g.buffer()),
            // Average pooling reads no argmax: the device's dummy buffer fills its slot.
            Bind::Read(argmax.map_or(dev.dummy_buffer(), |a| a.buffer())),
            Bind::Write(gx.buffer()),
        ],
        &geo.params(),
        groups(invocations),
    )?;
    Ok(gx)
}
