//! Indexing and selection with PyTorch's names: `narrow`, `cat`, `stack`, `index_select`,
//! `gather`, `one_hot`, `where_`, `masked_fill` (`shaders/index.wgsl`), and the reductions over
//! several dims built from the one-dim ones (`sum_dims`, `amax`, `amin`, `min_dim`).

use crate::error::{shape_err, Error, Result};
use crate::kernel::{kernel_params, shader, Bind, Shader};
use crate::ops::unary::groups;
use crate::shape::{broadcast, numel, resolve_dim};
use crate::tape::Op;
use crate::tensor::Tensor;

pub(crate) static SHADER: Shader = shader!("index");

kernel_params! {
    /// `Params` of `shaders/index.wgsl`.
    pub(crate) struct IndexParams for "index" {
        outer: u32,
        n: u32,
        m: u32,
        inner: u32,
        start: u32,
        chunk: u32,
        len: u32,
        invalid: f32,
    }
}

/// Where `take`'s indices come from (the shader's `MODE` constant).
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `start + j` (narrow).
    Range = 0,
    /// One index per position along the dim (index_select).
    List = 1,
    /// One index per output element (gather).
    Elementwise = 2,
}

/// A source seen as [outer, n, inner], indexed along n by m positions (from `start`).
#[derive(Clone, Copy, Debug)]
struct Along {
    outer: usize,
    n: usize,
    m: usize,
    inner: usize,
    start: usize,
}

impl Along {
    fn of(shape: &[usize], dim: usize, m: usize, start: usize) -> Along {
        Along {
            outer: shape[..dim].iter().product(),
            n: shape[dim],
            m,
            inner: shape[dim + 1..].iter().product(),
            start,
        }
    }

    fn params(&self, len: usize, chunk: usize) -> IndexParams {
        IndexParams {
            outer: self.outer as u32,
            n: self.n as u32,
            m: self.m as u32,
            inner: self.inner as u32,
            start: self.start as u32,
            chunk: chunk as u32,
            len: len as u32,
            invalid: f32::NAN,
        }
    }
}

/// Indices along one dim: on the host (checked, an error names any out of range) or a device
/// tensor of f32-stored integers (not checked: an invalid one, negative, too large, fractional
/// or NaN, makes its output elements NaN and sends no gradient).
#[derive(Clone, Copy, Debug)]
pub enum Indices<'a> {
    /// Indices on the host.
    Host(&'a [usize]),
    /// A device tensor of indices stored as f32 (exact below 2^24).
    Tensor(&'a Tensor),
}

impl<'a> From<&'a [usize]> for Indices<'a> {
    fn from(t: &'a [usize]) -> Self {
        Indices::Host(t)
    }
}

impl<'a> From<&'a Vec<usize>> for Indices<'a> {
    fn from(t: &'a Vec<usize>) -> Self {
        Indices::Host(t)
    }
}

impl<'a, const N: usize> From<&'a [usize; N]> for Indices<'a> {
    fn from(t: &'a [usize; N]) -> Self {
        Indices::Host(t)
    }
}

impl<'a> From<&'a Tensor> for Indices<'a> {
    fn from(t: &'a Tensor) -> Self {
        Indices::Tensor(t)
    }
}

/// What `take`'s backward needs.
pub(crate) struct TakeSaved {
    pub(crate) op: &'static str,
    along: Along,
    mode: Mode,
    in_shape: Vec<usize>,
    /// The indices (List and Elementwise): the op's second input.
    indices: Option<Tensor>,
}

impl TakeSaved {
    pub(crate) fn has_indices(&self) -> bool {
        self.indices.is_some()
    }
}

/// What `cat`'s backward needs: the dim and each input's length along it.
pub(crate) struct CatSaved {
    dim: usize,
    lengths: Vec<usize>,
}

/// `where_`'s condition (its third input), expanded to the output's shape.
pub(crate) struct WhereSaved {
    cond: Tensor,
}

/// amax's gradient weights: 1 / (number of ties) at each maximum, 0 elsewhere.
pub(crate) struct AmaxSaved {
    weights: Tensor,
    keep_shape: Vec<usize>,
}

/// Output element (o, j, i) of [outer, m, inner] is source (o, index, i).
fn take(
    x: &Tensor,
    op: &'static str,
    along: Along,
    mode: Mode,
    indices: Option<&Tensor>,
    out_shape: Vec<usize>,
) -> Result<Tensor> {
    let dev = x.device();
    let len = numel(&out_shape);
    let out = dev.storage(len)?;
    if len > 0 {
        let idx = indices.map_or(dev.dummy_buffer(), |t| t.buffer());
        dev.dispatch_with(
            &SHADER,
            "take",
            &[("MODE", mode as u32)],
            &[
                Bind::Read(x.buffer()),
                Bind::Read(idx),
                Bind::Write(out.buffer()),
            ],
            &along.params(len, 1),
            groups(len),
        )?;
    }
    let saved_indices = indices.map(Tensor::detach);
    let inputs: Vec<&Tensor> = std::iter::once(x).chain(indices).collect();
    Ok(Tensor::from_op(out, out_shape, &inputs, || {
        Op::Take(TakeSaved {
            op,
            along,
            mode,
            in_shape: x.shape().to_vec(),
            indices: saved_indices,
        })
    }))
}

/// The scatter-add of `g` into the source's shape (no gradient for the indices).
pub(crate) fn take_backward(s: &TakeSaved, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let dev = g.device();
    let a = s.along;
    let sources = a.outer * a.n * a.inner;
    let chunk = match s.mode {
        Mode::Range => a.m,
        _ => a.m.min(dev.policy().serial_sum_limit()),
    }
    .max(1);
    let chunks = a.m.div_ceil(chunk).max(1);
    let part = Tensor::uninit(dev, &[chunks, sources])?;
    let len = chunks * sources;
    if len > 0 {
        let g_buf = if g.numel() > 0 {
            g.buffer()
        } else {
            dev.dummy_buffer()
        };
        let idx = s
            .indices
            .as_ref()
            .map_or(dev.dummy_buffer(), |t| t.buffer());
        dev.dispatch_with(
            &SHADER,
            "take_backward",
            &[("MODE", s.mode as u32)],
            &[
                Bind::Read(g_buf),
                Bind::Read(idx),
                Bind::Write(part.buffer()),
            ],
            &a.params(len, chunk),
            groups(len),
        )?;
    }
    let gx = if chunks == 1 {
        part.reshape(&s.in_shape)?
    } else {
        part.sum_dim(0, false)?.reshape(&s.in_shape)?
    };
    let mut grads = vec![Some(gx)];
    if s.indices.is_some() {
        grads.push(None);
    }
    Ok(grads)
}

pub(crate) fn cat_backward(s: &CatSaved, g: &Tensor, need: &[bool]) -> Result<Vec<Option<Tensor>>> {
    let mut start = 0;
    let mut grads = Vec::with_capacity(s.lengths.len());
    for (&len, &need) in s.lengths.iter().zip(need) {
        grads.push(if need {
            Some(g.narrow(s.dim as isize, start, len)?)
        } else {
            None
        });
        start += len;
    }
    Ok(grads)
}

pub(crate) fn where_backward(
    s: &WhereSaved,
    g: &Tensor,
    need: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let dev = g.device();
    let ga = Tensor::uninit(dev, g.shape())?;
    let gb = Tensor::uninit(dev, g.shape())?;
    let len = g.numel();
    if len > 0 {
        dev.dispatch(
            &SHADER,
            "where_backward",
            &[
                Bind::Read(s.cond.buffer()),
                Bind::Read(g.buffer()),
                Bind::Write(ga.buffer()),
                Bind::Write(gb.buffer()),
            ],
            &elementwise(len),
            groups(len),
        )?;
    }
    Ok(vec![need[0].then_some(ga), need[1].then_some(gb), None])
}

pub(crate) fn amax_backward(s: &AmaxSaved, g: &Tensor) -> Result<Tensor> {
    g.reshape(&s.keep_shape)?.mul(&s.weights)
}

/// Parameters of the elementwise entry points: only `len`.
fn elementwise(len: usize) -> IndexParams {
    IndexParams {
        len: len as u32,
        ..Default::default()
    }
}

/// 1 where `a == b` (same shapes), else 0; no gradient.
fn equal(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dev = a.device();
    let out = Tensor::uninit(dev, a.shape())?;
    let len = a.numel();
    if len > 0 {
        dev.dispatch(
            &SHADER,
            "equal",
            &[
                Bind::Read(a.buffer()),
                Bind::Read(b.buffer()),
                Bind::Write(out.buffer()),
            ],
            &elementwise(len),
            groups(len),
        )?;
    }
    Ok(out)
}

/// The dims a multi-dim reduction removes (all of them for an empty list), largest first,
/// and the output's shapes with and without them kept as size 1.
struct Reduced {
    dims: Vec<usize>,
    keep_shape: Vec<usize>,
    out_shape: Vec<usize>,
}

fn reduced(shape: &[usize], dims: &[isize], keepdim: bool, op: &'static str) -> Result<Reduced> {
    let rank = shape.len();
    let mut ds: Vec<usize> = if dims.is_empty() {
        (0..rank).collect()
    } else {
        dims.iter()
            .map(|&d| resolve_dim(d, rank, op))
            .collect::<Result<_>>()?
    };
    if rank == 0 {
        ds.clear();
    }
    ds.sort_unstable_by(|a, b| b.cmp(a));
    if ds.windows(2).any(|w| w[0] == w[1]) {
        return shape_err(op, format!("dims {dims:?} name one dim more than once"));
    }
    let mut keep_shape = shape.to_vec();
    for &d in &ds {
        keep_shape[d] = 1;
    }
    let out_shape = if keepdim {
        keep_shape.clone()
    } else {
        (0..rank)
            .filter(|d| !ds.contains(d))
            .map(|d| shape[d])
            .collect()
    };
    Ok(Reduced {
        dims: ds,
        keep_shape,
        out_shape,
    })
}

impl Tensor {
    /// `length` elements of dim `dim` from `start` (a copy, as `torch.narrow` but not a view);
    /// its gradient scatters into zeros.
    pub fn narrow(&self, dim: isize, start: usize, length: usize) -> Result<Tensor> {
        if self.rank() == 0 {
            return shape_err("narrow", "cannot narrow a 0-d tensor");
        }
        let d = resolve_dim(dim, self.rank(), "narrow")?;
        let size = self.shape()[d];
        if start.checked_add(length).is_none_or(|end| end > size) {
            return shape_err(
                "narrow",
                format!(
                    "start {start} + length {length} exceeds dim {dim} of {:?} (size {size})",
                    self.shape()
                ),
            );
        }
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = length;
        let along = Along::of(self.shape(), d, length, start);
        take(self, "narrow", along, Mode::Range, None, out_shape)
    }

    /// Concatenates tensors along `dim` (as `torch.cat`): all of one rank, equal but for
    /// `dim`. Its gradient is the matching narrow of the output's for each input.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return shape_err("cat", "expects a non-empty list of tensors");
        };
        if first.rank() == 0 {
            return shape_err("cat", "zero-dimensional tensors cannot be concatenated");
        }
        let d = resolve_dim(dim, first.rank(), "cat")?;
        let dev = first.device();
        let mut out_shape = first.shape().to_vec();
        out_shape[d] = 0;
        for t in tensors {
            dev.same(t.device(), "cat")?;
            let fits = t.rank() == first.rank()
                && (0..t.rank()).all(|k| k == d || t.shape()[k] == first.shape()[k]);
            if !fits {
                return shape_err(
                    "cat",
                    format!(
                        "shapes {:?} do not match but for dim {dim}",
                        tensors.iter().map(|t| t.shape()).collect::<Vec<_>>()
                    ),
                );
            }
            out_shape[d] += t.shape()[d];
        }
        crate::shape::check_shape(&out_shape, "cat")?;
        let out = dev.storage(numel(&out_shape))?;
        let mut start = 0;
        for t in tensors {
            let along = Along::of(&out_shape, d, t.shape()[d], start);
            let len = t.numel();
            if len > 0 {
                dev.dispatch(
                    &SHADER,
                    "put",
                    &[Bind::Read(t.buffer()), Bind::Write(out.buffer())],
                    &along.params(len, 1),
                    groups(len),
                )?;
            }
            start += t.shape()[d];
        }
        Ok(Tensor::from_op(out, out_shape, tensors, || {
            Op::Cat(CatSaved {
                dim: d,
                lengths: tensors.iter().map(|t| t.shape()[d]).collect(),
            })
        }))
    }

    /// Stacks tensors of one shape along a new dim `dim` (in `0..=rank`, negative counts from
    /// the end), as `torch.stack`.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return shape_err("stack", "expects a non-empty list of tensors");
        };
        if let Some(t) = tensors.iter().find(|t| t.shape() != first.shape()) {
            return shape_err(
                "stack",
                format!(
                    "expects tensors of one shape, got {:?} and {:?}",
                    first.shape(),
                    t.shape()
                ),
            );
        }
        let d = resolve_dim(dim, first.rank() + 1, "stack")?;
        let mut shape = first.shape().to_vec();
        shape.insert(d, 1);
        let views = tensors
            .iter()
            .map(|t| t.reshape(&shape))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&views.iter().collect::<Vec<_>>(), d as isize)
    }

    /// The entries `indices` of dim `dim`, in that order (repeats allowed), as
    /// `torch.index_select`. Host indices out of range are an error; a device tensor of indices
    /// (rank 0 or 1, f32-stored integers) is not checked: an invalid index gives NaN (see
    /// [`Indices`]). The gradient adds up over repeated indices.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor};
    /// let dev = Device::new()?;
    /// let x = Tensor::from_vec(&dev, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2])?;
    /// let rows = x.index_select(0, &[2, 0, 2])?;
    /// assert_eq!(rows.to_vec()?, [5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
    /// let index = Tensor::from_vec(&dev, vec![1.0, 7.0], &[2])?; // 7 is not a row
    /// let picked = x.index_select(0, &index)?.to_vec()?;
    /// assert_eq!(picked[..2], [3.0, 4.0]);
    /// assert!(picked[2].is_nan());
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn index_select<'a>(&self, dim: isize, indices: impl Into<Indices<'a>>) -> Result<Tensor> {
        if self.rank() == 0 {
            return shape_err("index_select", "cannot index a 0-d tensor");
        }
        let d = resolve_dim(dim, self.rank(), "index_select")?;
        let size = self.shape()[d];
        let uploaded;
        let idx = match indices.into() {
            Indices::Host(list) => {
                if let Some(bad) = list.iter().find(|&&k| k >= size) {
                    return Err(Error::Invalid(format!(
                        "index_select: index {bad} is out of range for dim {dim} of {:?} (size {size})",
                        self.shape()
                    )));
                }
                let values: Vec<f32> = list.iter().map(|&k| k as f32).collect();
                uploaded = Tensor::from_vec(self.device(), values, &[list.len()])?;
                &uploaded
            }
            Indices::Tensor(t) => {
                self.device().same(t.device(), "index_select")?;
                if t.rank() > 1 {
                    return shape_err(
                        "index_select",
                        format!("indices must be 0-d or 1-d, got {:?}", t.shape()),
                    );
                }
                t
            }
        };
        let m = idx.numel();
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = m;
        let along = Along::of(self.shape(), d, m, 0);
        take(
            self,
            "index_select",
            along,
            Mode::List,
            Some(idx),
            out_shape,
        )
    }

    /// `out[..., j, ...] = self[..., index[..., j, ...], ...]` along `dim`, as `torch.gather`:
    /// `index` (f32-stored integers) has the input's rank and at most its size on every other
    /// dim. The output has `index`'s shape; an invalid index gives NaN (see [`Indices`]). The
    /// gradient adds up over repeated indices.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        self.device().same(index.device(), "gather")?;
        if self.rank() == 0 {
            return shape_err("gather", "cannot index a 0-d tensor");
        }
        let d = resolve_dim(dim, self.rank(), "gather")?;
        let fits = index.rank() == self.rank()
            && (0..self.rank()).all(|k| k == d || index.shape()[k] <= self.shape()[k]);
        if !fits {
            return shape_err(
                "gather",
                format!(
                    "index {:?} must have the rank of input {:?} and at most its size on \
                     every dim but {dim}",
                    index.shape(),
                    self.shape()
                ),
            );
        }
        // Where the index is smaller on another dim, only the input's leading part of that
        // dim is read: narrow it first (differentiable), so the kernel sees equal shapes.
        let mut x = self.clone();
        for k in (0..self.rank()).filter(|&k| k != d && index.shape()[k] < self.shape()[k]) {
            x = x.narrow(k as isize, 0, index.shape()[k])?;
        }
        let along = Along::of(x.shape(), d, index.shape()[d], 0);
        let out_shape = index.shape().to_vec();
        take(
            &x,
            "gather",
            along,
            Mode::Elementwise,
            Some(index),
            out_shape,
        )
    }

    /// One-hot rows of `num_classes` for a tensor of f32-stored class indices, as
    /// `torch.nn.functional.one_hot` (shape `self.shape() + [num_classes]`, values 0 or 1 as
    /// f32, no gradient). An index that is not a class gives a row of NaN.
    pub fn one_hot(&self, num_classes: usize) -> Result<Tensor> {
        if num_classes == 0 {
            return Err(Error::Invalid(
                "one_hot: num_classes must be at least 1".into(),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape.push(num_classes);
        let dev = self.device();
        let out = Tensor::uninit(dev, &shape)?;
        let len = out.numel();
        if len > 0 {
            let p = IndexParams {
                n: num_classes as u32,
                len: len as u32,
                invalid: f32::NAN,
                ..Default::default()
            };
            dev.dispatch(
                &SHADER,
                "one_hot",
                &[Bind::Read(self.buffer()), Bind::Write(out.buffer())],
                &p,
                groups(len),
            )?;
        }
        Ok(out)
    }

    /// `a` where `cond` is nonzero, else `b`, as `torch.where(cond, a, b)` (all three
    /// broadcast together). The gradient flows to `a` where `cond` holds and to `b`
    /// elsewhere; none to `cond`.
    pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let dev = a.device();
        dev.same(b.device(), "where")?;
        dev.same(cond.device(), "where")?;
        let shape = broadcast(
            &broadcast(cond.shape(), a.shape(), "where")?,
            b.shape(),
            "where",
        )?;
        let c = cond.detach().expand(&shape)?;
        let ae = a.expand(&shape)?;
        let be = b.expand(&shape)?;
        let len = numel(&shape);
        let out = dev.storage(len)?;
        if len > 0 {
            dev.dispatch(
                &SHADER,
                "select_where",
                &[
                    Bind::Read(c.buffer()),
                    Bind::Read(ae.buffer()),
                    Bind::Read(be.buffer()),
                    Bind::Write(out.buffer()),
                ],
                &elementwise(len),
                groups(len),
            )?;
        }
        let saved = c.clone();
        Ok(Tensor::from_op(out, shape, &[&ae, &be, &c], || {
            Op::Where(WhereSaved { cond: saved })
        }))
    }

    /// `value` where `mask` is nonzero, else `self` (broadcast), as `masked_fill`; the
    /// gradient flows to `self` where the mask is 0.
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        let fill = Tensor::full(self.device(), &[], value)?;
        Tensor::where_(mask, &fill, self)
    }

    /// Sum over several dims (all of them for an empty list; negative count from the end),
    /// as `torch.sum(x, dims, keepdim)`.
    pub fn sum_dims(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let r = reduced(self.shape(), dims, keepdim, "sum_dims")?;
        let mut y = self.clone();
        for &d in &r.dims {
            y = y.sum_dim(d as isize, true)?;
        }
        if r.dims.is_empty() {
            y = y.copy()?;
        }
        y.reshape(&r.out_shape)
    }

    /// Maximum over several dims (all for an empty list), as `torch.amax`. As PyTorch, the
    /// gradient is split evenly among the elements equal to the maximum; NaN propagates
    /// (and makes its group's gradient NaN).
    pub fn amax(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let r = reduced(self.shape(), dims, keepdim, "amax")?;
        if let Some(&d) = r.dims.iter().find(|&&d| self.shape()[d] == 0) {
            return shape_err(
                "amax",
                format!("dim {d} of shape {:?} is empty", self.shape()),
            );
        }
        let x = self.detach();
        let mut m = x.clone();
        for &d in &r.dims {
            m = m.max_dim(d as isize, true)?.0;
        }
        if r.dims.is_empty() {
            // A 0-d input: the result must not share its storage.
            m = x.copy()?;
        }
        let weights = if crate::tape::is_grad_enabled() && self.is_requires_grad() {
            let mask = equal(&x, &m.expand(self.shape())?)?;
            let count = mask.sum_dims(dims, true)?;
            Some(mask.div(&count)?)
        } else {
            None
        };
        let keep_shape = r.keep_shape;
        Ok(Tensor::from_op(
            m.storage().clone(),
            r.out_shape,
            &[self],
            || {
                Op::Amax(AmaxSaved {
                    weights: weights.expect("weights exist when the op is recorded"),
                    keep_shape,
                })
            },
        ))
    }

    /// Minimum over several dims, as `torch.amin` (ties share the gradient, as [`Tensor::amax`]).
    pub fn amin(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.neg()?.amax(dims, keepdim)?.neg()
    }

    /// Minimum over `dim`: (values, indices), as `torch.min(x, dim, keepdim)`. Indices are f32;
    /// ties go to the first occurrence and NaN propagates, as [`Tensor::max_dim`].
    pub fn min_dim(&self, dim: isize, keepdim: bool) -> Result<(Tensor, Tensor)> {
        let (values, indices) = self.neg()?.max_dim(dim, keepdim)?;
        Ok((values.neg()?, indices))
    }

    /// Indices of the minima over `dim` (as f32 values).
    pub fn argmin(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self.detach().min_dim(dim, keepdim)?.1)
    }
}
