//! webgrad in a web page. The same Rust code as natively, compiled to WebAssembly, on the
//! page's WebGPU adapter:
//! - [`Lab`] trains LeNet-5 on MNIST-format digits, classifies a drawn digit, and loads or
//!   writes checkpoints (the safetensors files of the native `lenet5` example);
//! - [`check_references`], [`check_shaders`] and [`check_blocking`] are the page tests:
//!   PyTorch's reference values for every op family and the LeNet-5 step, every shader module
//!   through the browser's WGSL compiler, and the error a blocking call gets.
//!
//! A page must never block, so every call that waits for the GPU returns a Promise.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::Promise;
use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use webgrad::data::Dataset;
use webgrad::{Device, DeviceOptions, Error, Result};

pub mod checks;
pub mod reference;
pub mod trainer;

use trainer::Trainer;

fn to_js(e: Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// Runs `f` as a Promise that resolves to its value or rejects with its error.
fn promise<F, T>(f: F) -> Promise
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: Into<JsValue>,
{
    future_to_promise(async move { f.await.map(Into::into).map_err(to_js) })
}

/// Opens the page's WebGPU device, optionally running the kernels another adapter class would
/// choose (`gpu`, `cpu`: what the page tests compare).
async fn open(kernels: Option<String>) -> Result<Device> {
    open_with(kernels, false).await
}

/// [`open`], timing every kernel when `profile` is set.
async fn open_with(kernels: Option<String>, profile: bool) -> Result<Device> {
    let mut opts = DeviceOptions::default().with_profile(profile);
    if let Some(name) = kernels {
        let class = webgrad::AdapterClass::parse(&name)
            .ok_or_else(|| Error::Invalid(format!("unknown kernel class {name:?}")))?;
        opts = opts.force_kernels(class);
    }
    Device::with_options_async(opts).await
}

/// LeNet-5 training in the page (see [`Trainer`]); JavaScript drives the loop, a few batches
/// per call, so that the page redraws between calls.
#[wasm_bindgen]
pub struct Lab {
    trainer: Rc<RefCell<Trainer>>,
}

/// Borrows the trainer for one call; a second call while one is still running is an error.
fn busy() -> Error {
    Error::Invalid("the lab is still busy with the previous call".into())
}

// The calls that await hold the trainer's borrow on purpose: a `train` arriving meanwhile
// gets the busy error instead of changing the model under a running evaluation.
#[wasm_bindgen]
#[allow(clippy::await_holding_refcell_ref)]
impl Lab {
    /// Opens the page's WebGPU device and builds LeNet-5 over the given IDX files' bytes (raw
    /// or gzipped). Resolves to a `Lab`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        train_images: Vec<u8>,
        train_labels: Vec<u8>,
        test_images: Vec<u8>,
        test_labels: Vec<u8>,
        batch_size: usize,
        lr: f32,
        seed: u64,
        kernels: Option<String>,
    ) -> Promise {
        promise(async move {
            let dev = open(kernels).await?;
            let train = Dataset::from_idx_bytes(
                &train_images,
                "train-images",
                &train_labels,
                "train-labels",
            )?;
            let test =
                Dataset::from_idx_bytes(&test_images, "test-images", &test_labels, "test-labels")?;
            let trainer = Trainer::new(&dev, train, test, batch_size, lr, seed)?;
            Ok(Lab {
                trainer: Rc::new(RefCell::new(trainer)),
            })
        })
    }

    /// The adapter the lab runs on, e.g. `SwiftShader Device (Subzero) (BrowserWebGpu, Cpu, ...)`.
    pub fn adapter(&self) -> String {
        let t = self.trainer.borrow();
        format!(
            "{} [{} kernels]",
            t.device().info(),
            t.device().kernel_class().name()
        )
    }

    /// Batches in one epoch.
    #[wasm_bindgen(js_name = batchesPerEpoch)]
    pub fn batches_per_epoch(&self) -> usize {
        self.trainer.borrow().batches_per_epoch()
    }

    /// Trains the next `n` batches and resolves to the last batch's loss.
    pub fn train(&self, n: usize) -> Promise {
        let trainer = self.trainer.clone();
        promise(async move {
            let loss = {
                let mut t = trainer.try_borrow_mut().map_err(|_| busy())?;
                t.train_batches(n)?
            };
            match loss {
                Some(l) => l.item_async().await,
                None => Ok(f32::NAN),
            }
        })
    }

    /// Resolves to the share of the first `limit` test digits classified correctly.
    #[wasm_bindgen(js_name = testAccuracy)]
    pub fn test_accuracy(&self, limit: usize) -> Promise {
        let trainer = self.trainer.clone();
        promise(async move {
            let t = trainer.try_borrow().map_err(|_| busy())?;
            t.test_accuracy(limit).await
        })
    }

    /// Resolves to the class given to each of the first `limit` test digits (a `Uint8Array`).
    #[wasm_bindgen(js_name = testClasses)]
    pub fn test_classes(&self, limit: usize) -> Promise {
        let trainer = self.trainer.clone();
        promise(async move {
            let t = trainer.try_borrow().map_err(|_| busy())?;
            let classes = t.test_classes(limit).await?;
            Ok(js_sys::Uint8Array::from(classes.as_slice()))
        })
    }

    /// Resolves to the 10 class probabilities of a 28 x 28 image (pixels in [0, 1]).
    pub fn predict(&self, pixels: Vec<f32>) -> Promise {
        let trainer = self.trainer.clone();
        promise(async move {
            let t = trainer.try_borrow().map_err(|_| busy())?;
            let p = t.predict(&pixels).await?;
            Ok(js_sys::Float32Array::from(p.as_slice()))
        })
    }

    /// Loads a checkpoint written by the native `lenet5` example (safetensors bytes).
    #[wasm_bindgen(js_name = loadCheckpoint)]
    pub fn load_checkpoint(&self, bytes: Vec<u8>, name: &str) -> std::result::Result<(), JsValue> {
        let t = self.trainer.try_borrow().map_err(|_| to_js(busy()))?;
        t.load_checkpoint(&bytes, name).map_err(to_js)
    }

    /// Resolves to the model's parameters as a safetensors file (bytes).
    pub fn checkpoint(&self) -> Promise {
        let trainer = self.trainer.clone();
        promise(async move {
            let t = trainer.try_borrow().map_err(|_| busy())?;
            let bytes = t.checkpoint().await?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()))
        })
    }
}

/// Resolves to the JSON text of a report.
fn report<F>(f: F) -> Promise
where
    F: std::future::Future<Output = Result<Value>> + 'static,
{
    promise(async move { Ok(JsValue::from_str(&f.await?.to_string())) })
}

/// The names of the op-case files in `tests/reference/` that the page fetches for
/// [`check_references`] ([`reference::OP_CASE_FILES`]).
#[wasm_bindgen(js_name = referenceFiles)]
pub fn reference_files() -> Vec<String> {
    reference::OP_CASE_FILES.map(String::from).to_vec()
}

/// The page test of PyTorch's reference cases under every kernel class the adapter can run:
/// every case of the op-case files `files` (named by `names`: [`reference_files`]) and the
/// LeNet-5 step
/// (`lenet5_step.safetensors`); only the cases whose name contains `only`, if given. Resolves
/// to a JSON report ([`checks::references`]).
#[wasm_bindgen(js_name = checkReferences)]
pub fn check_references(
    names: Vec<String>,
    files: Vec<js_sys::Uint8Array>,
    lenet: Vec<u8>,
    only: Option<String>,
) -> Promise {
    report(async move {
        if names.len() != files.len() {
            return Err(Error::Invalid(format!(
                "{} file names for {} files",
                names.len(),
                files.len()
            )));
        }
        let bytes: Vec<Vec<u8>> = files.iter().map(js_sys::Uint8Array::to_vec).collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .map(String::as_str)
            .zip(bytes.iter().map(Vec::as_slice))
            .collect();
        checks::references(&files, &lenet, only.as_deref()).await
    })
}

/// The browser's WGSL compiler on every shader module: resolves to a JSON report
/// ([`checks::shaders`]).
#[wasm_bindgen(js_name = checkShaders)]
pub fn check_shaders() -> Promise {
    report(checks::shaders())
}

/// What the blocking calls return in the page: resolves to a JSON report
/// ([`checks::blocking`]).
#[wasm_bindgen(js_name = checkBlocking)]
pub fn check_blocking() -> Promise {
    report(checks::blocking())
}

/// Resolves to `{ "train_ms": [...], "infer_ms": ..., "first_ms": ... }`: training steps of
/// LeNet-5 at `batch` (forward, loss, backward, Adam, loss readback) and one inference pass at
/// `infer_batch`, on random inputs; `kernels` as in [`Lab::open`].
#[wasm_bindgen]
pub fn bench(batch: usize, steps: usize, infer_batch: usize, kernels: Option<String>) -> Promise {
    report(async move {
        let dev = open(kernels).await?;
        checks::bench(&dev, batch, steps, infer_batch).await
    })
}

/// Resolves to `{ "step": table, "inference": table }`: LeNet-5's kernel times in the page
/// ([`checks::profile`]); `kernels` as in [`Lab::open`].
#[wasm_bindgen]
pub fn profile(batch: usize, steps: usize, infer_batch: usize, kernels: Option<String>) -> Promise {
    report(async move {
        let dev = open_with(kernels, true).await?;
        checks::profile(&dev, batch, steps, infer_batch).await
    })
}

/// Resolves to the pipelines LeNet-5's first training step at `batch` and first inference at
/// `infer_batch` create ([`checks::pipeline_list`]), as JSON; `kernels` as in [`Lab::open`].
#[wasm_bindgen(js_name = pipelineList)]
pub fn pipeline_list(batch: usize, infer_batch: usize, kernels: Option<String>) -> Promise {
    report(async move {
        let dev = open(kernels).await?;
        checks::pipeline_list(&dev, batch, infer_batch).await
    })
}

/// Compiles each pipeline of `specs` (JSON, as [`pipeline_list`] resolves to) on a new device,
/// one at a time, and resolves to their compile times ([`checks::pipeline_times`]).
#[wasm_bindgen(js_name = pipelineTimes)]
pub fn pipeline_times(specs: String) -> Promise {
    report(async move {
        let specs: serde_json::Value = serde_json::from_str(&specs)
            .map_err(|e| Error::Invalid(format!("pipeline specs: {e}")))?;
        let dev = open(None).await?;
        checks::pipeline_times(&dev, &specs).await
    })
}
