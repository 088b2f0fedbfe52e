//! What differs between native code and a web page, in one place.
//!
//! Natively, webgrad may block a thread until the GPU is done: `device.poll(Wait)` runs wgpu's
//! callbacks and returns when the work has finished. In a browser the page's only thread must
//! never block: `device.poll` does nothing there, a buffer mapping or a finished submission is
//! reported by the browser's event loop, which runs only while Rust code awaits. So the blocking
//! calls (`Device::new`, `Tensor::to_vec`, `Device::sync`, ...) refuse on the web with
//! [`Error::Blocking`], and their `_async` twins await the browser's callbacks instead.

use crate::error::{Error, Result};
use futures_intrusive::channel::shared::oneshot_channel;

/// A monotonic clock that also exists in a browser (`performance.now()` there; std's `Instant`,
/// which panics on `wasm32-unknown-unknown`, natively).
pub(crate) use web_time::Instant;

/// Whether this build runs in a browser (WebGPU from the page, no blocking waits).
pub(crate) const WEB: bool = cfg!(target_arch = "wasm32");

/// `Err(Error::Blocking)` on the web, where `call` would wait forever; `instead` names the
/// async twin to use.
pub(crate) fn refuse_blocking(call: &'static str, instead: &'static str) -> Result<()> {
    if WEB {
        Err(Error::Blocking { call, instead })
    } else {
        Ok(())
    }
}

/// Runs a future to completion on this thread (native code only: callers check
/// [`refuse_blocking`] first).
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// Natively, waits until the GPU has finished everything submitted, running wgpu's callbacks
/// (buffer mappings); in a browser it returns at once, as the page's event loop runs them.
pub(crate) fn wait_for_gpu(device: &wgpu::Device) -> Result<()> {
    if WEB {
        return Ok(());
    }
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map(|_| ())
        .map_err(|e| Error::Device(format!("poll failed: {e}")))
}

/// Maps `buffer` (its first `bytes`) for reading and awaits the mapping: natively after a
/// blocking poll, in a browser by awaiting the callback the event loop delivers.
pub(crate) async fn map_for_reading(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    bytes: u64,
) -> Result<()> {
    let (tx, rx) = oneshot_channel();
    buffer.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
        let _ = tx.send(r);
    });
    wait_for_gpu(device)?;
    match rx.receive().await {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Error::Device(format!("map_async failed: {e}"))),
        None => Err(Error::Device("map_async never answered".into())),
    }
}

/// Awaits the end of every submission made so far (the web's `onSubmittedWorkDone`; natively a
/// blocking poll).
pub(crate) async fn submitted_work_done(device: &wgpu::Device, queue: &wgpu::Queue) -> Result<()> {
    if !WEB {
        return wait_for_gpu(device);
    }
    let (tx, rx) = oneshot_channel();
    queue.on_submitted_work_done(move || {
        let _ = tx.send(());
    });
    rx.receive()
        .await
        .ok_or_else(|| Error::Device("the queue never reported its work done".into()))
}

/// A pipeline to compile in the background: the WGSL module, its entry point and override
/// constants, and its bind group layout's entries (the ones `kernel.rs` creates it with).
/// Read only in a page.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) struct PipelineRequest<'a> {
    pub source: String,
    pub entry: &'a str,
    pub constants: &'a [(&'a str, u32)],
    pub entries: &'a [wgpu::BindGroupLayoutEntry],
}

/// In a page, starts compiling `req` off the queue's thread (`createComputePipelineAsync`)
/// and calls `done` once it has compiled (or failed: the pipeline's own creation then reports
/// the error); `false` where that is not possible (natively, wgpu has no such call). The
/// browser keeps what it compiled: the same pipeline created later, from objects of the same
/// content, comes from its cache (Chromium: about 9 ms against 1.4 s for a heavy kernel).
#[cfg(target_arch = "wasm32")]
pub(crate) fn compile_in_background(
    device: &wgpu::Device,
    req: &PipelineRequest,
    done: impl FnOnce() + 'static,
) -> bool {
    match web::compile_pipeline_async(device, req) {
        Some(promise) => {
            web::PENDING.with(|p| p.borrow_mut().push(promise.clone()));
            wasm_bindgen_futures::spawn_local(async move {
                let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
                done();
            });
            true
        }
        None => false,
    }
}

/// Awaits every background compilation started so far (natively there are none).
pub(crate) async fn background_compiles_done() {
    #[cfg(target_arch = "wasm32")]
    loop {
        let pending = web::PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        if pending.is_empty() {
            break;
        }
        for promise in pending {
            let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn compile_in_background(
    _device: &wgpu::Device,
    _req: &PipelineRequest,
    _done: impl FnOnce() + 'static,
) -> bool {
    false
}

/// The WebGPU calls wgpu does not wrap, made on the page's device through JavaScript objects.
#[cfg(target_arch = "wasm32")]
mod web {
    use super::PipelineRequest;
    use js_sys::{Array, Function, Object, Promise, Reflect};
    use std::cell::RefCell;
    use wasm_bindgen::{JsCast, JsValue};

    thread_local! {
        /// The background compilations started, for `background_compiles_done`.
        pub(super) static PENDING: RefCell<Vec<Promise>> = const { RefCell::new(Vec::new()) };
    }

    fn object(fields: &[(&str, JsValue)]) -> Object {
        let o = Object::new();
        for (k, v) in fields {
            let _ = Reflect::set(&o, &JsValue::from_str(k), v);
        }
        o
    }

    fn call(target: &JsValue, method: &str, arg: &JsValue) -> Option<JsValue> {
        let f: Function = Reflect::get(target, &JsValue::from_str(method))
            .ok()?
            .dyn_into()
            .ok()?;
        f.call1(target, arg).ok()
    }

    /// A layout entry as WebGPU's dictionary, for the binding types kernels use (None for
    /// the others).
    fn layout_entry(e: &wgpu::BindGroupLayoutEntry) -> Option<Object> {
        let s = |v: &str| JsValue::from_str(v);
        let (key, value) = match e.ty {
            wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset,
                min_binding_size: None,
            } => {
                let ty = match ty {
                    wgpu::BufferBindingType::Uniform => "uniform",
                    wgpu::BufferBindingType::Storage { read_only: true } => "read-only-storage",
                    wgpu::BufferBindingType::Storage { read_only: false } => "storage",
                };
                let dynamic = JsValue::from_bool(has_dynamic_offset);
                (
                    "buffer",
                    object(&[("type", s(ty)), ("hasDynamicOffset", dynamic)]),
                )
            }
            wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            } => (
                "texture",
                object(&[
                    ("sampleType", s("unfilterable-float")),
                    ("viewDimension", s("2d")),
                    ("multisampled", JsValue::FALSE),
                ]),
            ),
            wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::WriteOnly,
                format: wgpu::TextureFormat::Rgba32Float,
                view_dimension: wgpu::TextureViewDimension::D2,
            } => (
                "storageTexture",
                object(&[
                    ("access", s("write-only")),
                    ("format", s("rgba32float")),
                    ("viewDimension", s("2d")),
                ]),
            ),
            _ => return None,
        };
        Some(object(&[
            ("binding", JsValue::from(e.binding)),
            ("visibility", JsValue::from(e.visibility.bits())),
            (key, value.into()),
        ]))
    }

    /// `device.createComputePipelineAsync` of `req`, with a module, bind group layout and
    /// pipeline layout of its own.
    pub(super) fn compile_pipeline_async(
        device: &wgpu::Device,
        req: &PipelineRequest,
    ) -> Option<Promise> {
        let gpu: &JsValue = device.as_webgpu()?.as_ref();
        let entries = Array::new();
        for e in req.entries {
            entries.push(&layout_entry(e)?.into());
        }
        let module = call(
            gpu,
            "createShaderModule",
            &object(&[("code", req.source.as_str().into())]).into(),
        )?;
        let group = call(
            gpu,
            "createBindGroupLayout",
            &object(&[("entries", entries.into())]).into(),
        )?;
        let groups = Array::of1(&group);
        let layout = call(
            gpu,
            "createPipelineLayout",
            &object(&[("bindGroupLayouts", groups.into())]).into(),
        )?;
        let constants = object(
            &req.constants
                .iter()
                .map(|&(name, v)| (name, JsValue::from(v)))
                .collect::<Vec<_>>(),
        );
        let stage = object(&[
            ("module", module),
            ("entryPoint", JsValue::from_str(req.entry)),
            ("constants", constants.into()),
        ]);
        let desc = object(&[("layout", layout), ("compute", stage.into())]);
        call(gpu, "createComputePipelineAsync", &desc.into())?
            .dyn_into()
            .ok()
    }
}
