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
