//! `Tensor`: an f32, contiguous, row-major array in a GPU buffer, plus its autograd links.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::backend::cpu::texels::Texels;
use crate::device::Device;
use crate::error::{shape_err, Error, Result};
use crate::fusion::Deferred;
use crate::shape::numel;
use crate::tape::{self, Node, Op};

/// A GPU buffer owned by one or more tensors (views such as `reshape` share it).
/// Dropping the last owner returns the buffer to the device's pool.
///
/// Every in-place write bumps the storage's version ([`Storage::mark_written`]). Values derived
/// from the contents (a layout copy, a value the host knows) are kept with the version they
/// were derived from and only match that version, so a stale one can never be used; the tape
/// checks saved tensors' versions the same way (see `tape.rs`).
///
/// A storage may be *deferred* (`fusion.rs`): its buffer is allocated, and the kernels that
/// write it recorded, the first time anything asks for the buffer.
pub(crate) struct Storage {
    /// The buffer and its pool size class, once allocated.
    buffer: OnceLock<(wgpu::Buffer, u64)>,
    bytes: u64,
    me: Weak<Storage>,
    deferred: Mutex<Option<Deferred>>,
    is_deferred: AtomicBool,
    pub device: Device,
    version: AtomicU64,
    /// The same values with images innermost (see `backend/cpu/conv_implicit.rs`) for batches of this
    /// many images, when the kernel that wrote the buffer also wrote that layout: the next
    /// convolution reads it instead of re-laying the buffer out.
    images_inner: Mutex<Option<Derived<ImagesInner>>>,
    /// A texture copy of the buffer (`texels`), made for kernels that read it through texel
    /// fetches (`Policy::texel_reads`) and kept while the contents last.
    texel_copy: Mutex<Option<Derived<Arc<Texels>>>>,
    /// The value of every element when the host knows it without a readback: a one-value
    /// upload, such as the seed of `backward()`.
    known: Mutex<Option<Derived<f32>>>,
    /// The op that wrote this tensor reads its gradient images-innermost (a fused conv + ReLU +
    /// pool whose input needs no gradient): a convolution reading the tensor then writes its
    /// input gradient that way too, with the NCHW one. (A property of the producer, not of the
    /// values.)
    pub grad_images_inner: AtomicBool,
}

/// A batch size and the values laid out images-innermost for it.
type ImagesInner = (usize, Arc<Texels>);

/// A value derived from a storage's contents at one version.
struct Derived<T> {
    version: u64,
    value: T,
}

impl Storage {
    /// The buffer; a deferred storage's values are computed first. (Allocation failures of a
    /// deferred storage are reported by the device at the next submit or readback; until
    /// then a placeholder stands in.)
    pub fn buffer(&self) -> &wgpu::Buffer {
        if self.is_deferred.load(Ordering::Acquire) {
            if let Some(me) = self.me.upgrade() {
                crate::fusion::materialize(&me);
            }
        }
        &self
            .buffer
            .get_or_init(|| self.device.alloc_or_placeholder(self.bytes))
            .0
    }

    /// Makes this storage deferred: `d` computes it when it is first needed.
    pub fn set_deferred(&self, d: Deferred) {
        *self.deferred.lock().unwrap() = Some(d);
        self.is_deferred.store(true, Ordering::Release);
        if let Some(me) = self.me.upgrade() {
            self.device.register_deferred(&me);
        }
    }

    /// The deferred computation, removed (whoever takes it computes the values).
    pub fn take_deferred(&self) -> Option<Deferred> {
        if !self.is_deferred.load(Ordering::Acquire) {
            return None;
        }
        let d = self.deferred.lock().unwrap().take();
        self.is_deferred.store(false, Ordering::Release);
        d
    }

    /// `f` of the deferred computation, if the storage is deferred.
    pub fn with_deferred<R>(&self, f: impl FnOnce(&Deferred) -> R) -> Option<R> {
        self.deferred.lock().unwrap().as_ref().map(f)
    }

    /// How many in-place writes the buffer has had.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Called before every in-place write to the buffer (before it is recorded): values
    /// derived from the old contents stop matching, saved copies of this tensor become stale for
    /// backward, and deferred values that read the old contents (or this storage's own) are
    /// computed first.
    pub fn mark_written(&self) {
        if let Some(me) = self.me.upgrade() {
            crate::fusion::materialize(&me);
            self.device.materialize_readers_of(&me);
        }
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Records the images-innermost copy written along with the current contents.
    pub fn set_images_inner(&self, images: usize, texels: Arc<Texels>) {
        *self.images_inner.lock().unwrap() = Some(Derived {
            version: self.version(),
            value: (images, texels),
        });
    }

    /// The images-innermost copy for a batch of `images`, if one was written with the current
    /// contents.
    pub fn images_inner(&self, images: usize) -> Option<Arc<Texels>> {
        match &*self.images_inner.lock().unwrap() {
            Some(d) if d.version == self.version() && d.value.0 == images => {
                Some(d.value.1.clone())
            }
            _ => None,
        }
    }

    /// The buffer's values in a texture (vec4 i at texel (i % TEXEL_ROW, i / TEXEL_ROW)): the
    /// copy made for the current contents, or a new one recorded now; `None` when the buffer
    /// does not fit in a texture.
    pub fn texels(&self) -> Result<Option<Arc<Texels>>> {
        // Deferred values are computed before the copy is looked up.
        let buffer = self.buffer();
        let mut copy = self.texel_copy.lock().unwrap();
        if let Some(d) = &*copy {
            if d.version == self.version() {
                return Ok(Some(d.value.clone()));
            }
        }
        let made = self.device.texels_of(buffer)?.map(Arc::new);
        *copy = made.clone().map(|value| Derived {
            version: self.version(),
            value,
        });
        Ok(made)
    }

    /// The value every element holds, if the host knows it for the current contents.
    pub fn known_value(&self) -> Option<f32> {
        match &*self.known.lock().unwrap() {
            Some(d) if d.version == self.version() => Some(d.value),
            _ => None,
        }
    }

    fn set_known_value(&self, value: f32) {
        *self.known.lock().unwrap() = Some(Derived {
            version: self.version(),
            value,
        });
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some((b, class)) = self.buffer.take() {
            self.device.release(b, class);
        }
    }
}

impl Device {
    /// A buffer for `n` f32 values (contents undefined) that a recorded command will write.
    pub(crate) fn storage(&self, n: usize) -> Result<Arc<Storage>> {
        self.storage_with(n, true)
    }

    fn storage_with(&self, n: usize, gpu_written: bool) -> Result<Arc<Storage>> {
        let bytes = (n as u64).saturating_mul(4);
        let allocated = self.alloc(bytes, gpu_written)?;
        let storage = self.new_storage(bytes);
        let _ = storage.buffer.set(allocated);
        Ok(storage)
    }

    /// A storage for `n` f32 values whose buffer is allocated when first asked for (see
    /// `fusion.rs`): one that an epilogue consumes is never allocated, so it may exceed what
    /// one buffer holds (that is reported if it is ever computed).
    pub(crate) fn deferred_storage(&self, n: usize) -> Result<Arc<Storage>> {
        Ok(self.new_storage((n as u64).saturating_mul(4)))
    }

    fn new_storage(&self, bytes: u64) -> Arc<Storage> {
        Arc::new_cyclic(|me| Storage {
            buffer: OnceLock::new(),
            bytes,
            me: me.clone(),
            deferred: Mutex::new(None),
            is_deferred: AtomicBool::new(false),
            device: self.clone(),
            version: AtomicU64::new(0),
            images_inner: Mutex::new(None),
            texel_copy: Mutex::new(None),
            known: Mutex::new(None),
            grad_images_inner: AtomicBool::new(false),
        })
    }
}

/// An n-dimensional array of f32 on a GPU. Cloning is cheap (the data is shared).
#[derive(Clone)]
pub struct Tensor(Arc<TensorInner>);

struct TensorInner {
    id: u64,
    storage: Arc<Storage>,
    shape: Vec<usize>,
    requires_grad: bool,
    /// The op that produced this tensor, if it was recorded on the tape.
    node: Option<Arc<Node>>,
    /// Accumulated gradient (leaves only).
    grad: Mutex<Option<Tensor>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, requires_grad={})",
            self.0.shape, self.0.requires_grad
        )
    }
}

fn check_rank(shape: &[usize], op: &'static str) -> Result<()> {
    crate::shape::check_shape(shape, op).map(|_| ())
}

impl Tensor {
    /// Wraps a storage as a leaf tensor (no autograd history).
    pub(crate) fn leaf(storage: Arc<Storage>, shape: Vec<usize>) -> Tensor {
        let id = storage.device.next_id();
        Tensor(Arc::new(TensorInner {
            id,
            storage,
            shape,
            requires_grad: false,
            node: None,
            grad: Mutex::new(None),
        }))
    }

    /// The result of an op on `inputs`: recorded on the tape when grad mode is on and any input
    /// requires grad (`make_op` is only called then).
    pub(crate) fn from_op(
        storage: Arc<Storage>,
        shape: Vec<usize>,
        inputs: &[&Tensor],
        make_op: impl FnOnce() -> Op,
    ) -> Tensor {
        let node = tape::record(inputs, &storage, make_op);
        let id = storage.device.next_id();
        Tensor(Arc::new(TensorInner {
            id,
            storage,
            requires_grad: node.is_some(),
            node,
            shape,
            grad: Mutex::new(None),
        }))
    }

    /// A new tensor with uninitialised contents.
    pub(crate) fn uninit(dev: &Device, shape: &[usize]) -> Result<Tensor> {
        check_rank(shape, "tensor")?;
        Ok(Tensor::leaf(dev.storage(numel(shape))?, shape.to_vec()))
    }

    /// A tensor holding `data` with the given shape.
    ///
    /// ```
    /// # use webgrad::{Device, Tensor};
    /// let dev = Device::new()?;
    /// let t = Tensor::from_vec(&dev, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// assert_eq!(t.shape(), &[2, 3]);
    /// assert_eq!(t.to_vec()?, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// # Ok::<(), webgrad::Error>(())
    /// ```
    pub fn from_vec(dev: &Device, data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_slice(dev, &data, shape)
    }

    /// A tensor with a copy of `data` (row-major; its length must match the shape).
    pub fn from_slice(dev: &Device, data: &[f32], shape: &[usize]) -> Result<Tensor> {
        check_rank(shape, "from_vec")?;
        if data.len() != numel(shape) {
            return shape_err(
                "from_vec",
                format!(
                    "{} values do not fill shape {shape:?} ({} elements)",
                    data.len(),
                    numel(shape)
                ),
            );
        }
        // Not a buffer released in the current batch: the upload runs before its commands.
        let t = Tensor::leaf(dev.storage_with(data.len(), false)?, shape.to_vec());
        dev.write(t.buffer(), bytemuck::cast_slice(data));
        if let [value] = data {
            t.0.storage.set_known_value(*value);
        }
        Ok(t)
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(dev: &Device, value: f32) -> Result<Tensor> {
        Tensor::from_slice(dev, &[value], &[])
    }

    /// A tensor of zeros.
    pub fn zeros(dev: &Device, shape: &[usize]) -> Result<Tensor> {
        let t = Tensor::uninit(dev, shape)?;
        dev.clear(t.buffer(), t.numel() as u64 * 4);
        Ok(t)
    }

    /// A tensor of ones.
    pub fn ones(dev: &Device, shape: &[usize]) -> Result<Tensor> {
        Tensor::full(dev, shape, 1.0)
    }

    /// A tensor with every element `value`.
    pub fn full(dev: &Device, shape: &[usize], value: f32) -> Result<Tensor> {
        let t = Tensor::uninit(dev, shape)?;
        crate::ops::fill::fill(&t, value)?;
        Ok(t)
    }

    /// Uniform in [0, 1), from the device's seeded generator (see [`Device::manual_seed`]).
    pub fn rand(dev: &Device, shape: &[usize]) -> Result<Tensor> {
        check_rank(shape, "rand")?;
        let data: Vec<f32> = {
            let mut rng = dev.rng().lock().unwrap();
            (0..numel(shape)).map(|_| rng.uniform()).collect()
        };
        Tensor::from_vec(dev, data, shape)
    }

    /// Standard normal, from the device's seeded generator.
    pub fn randn(dev: &Device, shape: &[usize]) -> Result<Tensor> {
        check_rank(shape, "randn")?;
        let data: Vec<f32> = {
            let mut rng = dev.rng().lock().unwrap();
            (0..numel(shape)).map(|_| rng.normal()).collect()
        };
        Tensor::from_vec(dev, data, shape)
    }

    /// Copies the values to the host (submits pending work and waits for it). Blocking: in a
    /// browser use [`to_vec_async`](Self::to_vec_async).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let bytes = self.device().read(self.buffer(), self.numel() as u64 * 4)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Like [`to_vec`](Self::to_vec), but awaits the GPU: the way to read values in a web page
    /// (natively the wait still blocks the thread, as wgpu runs its callbacks only when polled).
    pub async fn to_vec_async(&self) -> Result<Vec<f32>> {
        let bytes = self
            .device()
            .read_async(self.buffer(), self.numel() as u64 * 4)
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        crate::platform::refuse_blocking("Tensor::item", "Tensor::item_async")?;
        self.check_item()?;
        Ok(self.to_vec()?[0])
    }

    fn check_item(&self) -> Result<()> {
        if self.numel() != 1 {
            return shape_err(
                "item",
                format!("needs a one-element tensor, got shape {:?}", self.shape()),
            );
        }
        Ok(())
    }

    /// Like [`item`](Self::item), awaiting the GPU (see [`to_vec_async`](Self::to_vec_async)).
    pub async fn item_async(&self) -> Result<f32> {
        self.check_item()?;
        Ok(self.to_vec_async().await?[0])
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Alias of [`shape`](Self::shape), as in candle.
    pub fn dims(&self) -> &[usize] {
        &self.0.shape
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// The device whose memory holds the tensor.
    pub fn device(&self) -> &Device {
        &self.0.storage.device
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.0.storage.buffer()
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// The buffer's owner, shared with views of the same data.
    pub(crate) fn storage(&self) -> &Arc<Storage> {
        &self.0.storage
    }

    /// The tape node of the op that produced this tensor, if it was recorded.
    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.0.node.as_ref()
    }

    /// The slot `backward()` accumulates a leaf's gradient in.
    pub(crate) fn grad_slot(&self) -> &Mutex<Option<Tensor>> {
        &self.0.grad
    }

    /// The same data as a new leaf that does not require grad.
    pub fn detach(&self) -> Tensor {
        Tensor::leaf(self.0.storage.clone(), self.0.shape.clone())
    }

    /// The same data as a new leaf whose gradient `backward` will fill in.
    pub fn requires_grad(self) -> Tensor {
        self.with_requires_grad(true)
    }

    /// A leaf sharing this tensor's data with `requires_grad` set as given.
    pub fn with_requires_grad(&self, requires_grad: bool) -> Tensor {
        let t = self.detach();
        Tensor(Arc::new(TensorInner {
            id: t.0.id,
            storage: t.0.storage.clone(),
            shape: t.0.shape.clone(),
            requires_grad,
            node: None,
            grad: Mutex::new(None),
        }))
    }

    /// Whether gradients flow to this tensor.
    pub fn is_requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// Whether this tensor was created by the user rather than by a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.0.node.is_none()
    }

    /// The gradient accumulated by `backward` (leaves only).
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().unwrap().clone()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap() = None;
    }

    /// Copies `src`'s values into this tensor's buffer (same element count), in recorded order.
    /// For parameter loading and optimizer state; not recorded on the tape.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        self.device().same(src.device(), "copy_from")?;
        if src.numel() != self.numel() {
            return shape_err(
                "copy_from",
                format!(
                    "source shape {:?} does not match destination {:?}",
                    src.shape(),
                    self.shape()
                ),
            );
        }
        self.0.storage.mark_written();
        self.device()
            .copy(src.buffer(), self.buffer(), self.numel() as u64 * 4);
        Ok(())
    }

    /// Overwrites this tensor's values from the host.
    pub fn write_from_slice(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.numel() {
            return Err(Error::Invalid(format!(
                "write_from_slice: {} values for shape {:?}",
                data.len(),
                self.shape()
            )));
        }
        // Deferred values that read the old contents are recorded first; then everything
        // recorded so far is submitted, and the upload follows it.
        self.0.storage.mark_written();
        self.device().flush()?;
        self.device()
            .write(self.buffer(), bytemuck::cast_slice(data));
        Ok(())
    }

    /// A copy of the data in a new buffer (recorded on the tape as identity).
    pub fn copy(&self) -> Result<Tensor> {
        let storage = self.device().storage(self.numel())?;
        self.device()
            .copy(self.buffer(), storage.buffer(), self.numel() as u64 * 4);
        Ok(Tensor::from_op(
            storage,
            self.shape().to_vec(),
            &[self],
            || Op::Identity,
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};

    /// Values derived from a storage's contents (the known value of a one-value upload, a
    /// layout copy) are keyed by the version they were derived at: after an in-place write
    /// they never match again, whichever path wrote.
    #[test]
    fn derived_values_only_match_their_version() {
        let dev = Device::new().unwrap();
        let t = Tensor::from_vec(&dev, vec![1.0], &[1]).unwrap();
        let s = &t.0.storage;
        assert_eq!(s.known_value(), Some(1.0));
        let v = s.version();
        s.mark_written();
        assert_eq!(s.version(), v + 1);
        assert_eq!(s.known_value(), None);

        let x = Tensor::zeros(&dev, &[4, 1, 2, 2]).unwrap();
        let texels = std::sync::Arc::new(dev.texels(4).unwrap());
        let s = &x.0.storage;
        s.set_images_inner(4, texels);
        assert!(s.images_inner(4).is_some());
        assert!(
            s.images_inner(8).is_none(),
            "another batch size never matches"
        );
        x.write_from_slice(&[0.0; 16]).unwrap();
        assert!(s.images_inner(4).is_none(), "an old version never matches");
    }
}
