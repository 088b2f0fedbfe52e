//! `WEBGRAD_PROFILE=1`: time per kernel. Where the adapter has timestamp queries, every dispatch
//! is bracketed by two GPU timestamps (written inside the pass natively; in a browser, which
//! times only whole passes, the dispatch gets a pass of its own) and the batch is recorded and
//! submitted as usual; the timestamps are read back when the batch is flushed. Elsewhere each
//! dispatch is submitted alone and timed from the host (which adds a submit's overhead).
//!
//! In a browser nothing may wait for the GPU: there each flush's timestamps go to a readback
//! buffer of their own, and the mapping's callback adds them to the table when the page's event
//! loop delivers it (after `Device::sync_async`, say). Host timing there measures only the
//! recording, so the table is meaningful on the web where the adapter has timestamp queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::platform;

/// Per kernel: calls and seconds.
type Table = HashMap<&'static str, (u64, f64)>;

/// Most timestamps one query set holds in wgpu.
const MAX_QUERIES: u32 = 4096;

/// Per-kernel (calls, seconds), and the timestamp queries when the adapter has them.
pub(crate) struct Profiler {
    pub table: Arc<Mutex<Table>>,
    pub gpu: Option<GpuTimer>,
}

/// Two timestamps per dispatch, resolved into `resolve` and copied to `readback` at a flush.
pub(crate) struct GpuTimer {
    pub queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    /// Dispatches one batch may time (the batch is flushed when it is reached).
    pub capacity: usize,
    /// Whether timestamps can be written between a pass's dispatches; where they cannot, each
    /// timed dispatch gets a pass of its own, timed at its beginning and end.
    pub inside_passes: bool,
}

/// The features the profiler needs, when profiling and the adapter has them: timestamps inside
/// passes where there are (native), else timestamps at the passes' ends (a browser's WebGPU).
pub(crate) fn wanted_features(adapter: &wgpu::Adapter, profile: bool) -> wgpu::Features {
    let has = adapter.features();
    let inside = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    if !profile {
        wgpu::Features::empty()
    } else if has.contains(inside) {
        inside
    } else {
        has & wgpu::Features::TIMESTAMP_QUERY
    }
}

impl Profiler {
    /// A profiler, GPU-timed if the device has the features and `timestamps` (the policy's
    /// word that they can be trusted), else timing each dispatch from the host.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, timestamps: bool) -> Profiler {
        let features = device.features();
        let gpu = (timestamps && features.contains(wgpu::Features::TIMESTAMP_QUERY)).then(|| {
            let bytes = MAX_QUERIES as u64 * 8;
            let buffer = |usage| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("webgrad timestamps"),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            GpuTimer {
                queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("webgrad profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: MAX_QUERIES,
                }),
                resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
                readback: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
                period_ns: queue.get_timestamp_period() as f64,
                capacity: MAX_QUERIES as usize / 2,
                inside_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            }
        });
        Profiler {
            table: Arc::new(Mutex::new(HashMap::new())),
            gpu,
        }
    }

    /// Adds one host-timed dispatch.
    pub fn add(&self, kernel: &'static str, seconds: f64) {
        let mut table = self.table.lock().unwrap();
        let row = table.entry(kernel).or_insert((0, 0.0));
        row.0 += 1;
        row.1 += seconds;
    }

    /// A table of kernel, calls and total milliseconds, slowest first.
    pub fn report(&self) -> String {
        let table = self.table.lock().unwrap();
        let mut rows: Vec<_> = table.iter().collect();
        rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let clock = if self.gpu.is_some() {
            "GPU timestamps"
        } else {
            "host, one submit per dispatch"
        };
        let mut out = format!(
            "{:<28} {:>8} {:>10}  ({clock})\n",
            "kernel", "calls", "total ms"
        );
        for (name, (calls, secs)) in rows {
            out += &format!("{name:<28} {calls:>8} {:>10.2}\n", secs * 1e3);
        }
        out
    }
}

impl GpuTimer {
    /// Records the resolve of the batch's `timed` dispatches (timestamps 2i and 2i + 1) and
    /// their copy to a readback buffer, which it returns; call before submitting the encoder.
    /// Natively one buffer serves every flush (each flush waits for it); on the web each flush
    /// gets its own, as the previous one may still be waiting for its mapping.
    pub fn resolve(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        timed: usize,
    ) -> wgpu::Buffer {
        let n = 2 * timed as u32;
        let readback = if platform::WEB {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("webgrad timestamps"),
                size: n as u64 * 8,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        } else {
            self.readback.clone()
        };
        encoder.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &readback, 0, Some(n as u64 * 8));
        readback
    }

    /// After the submit: adds each timed dispatch's time to the table, natively at once
    /// (waiting for the GPU), on the web when the mapping's callback runs.
    pub fn collect(
        &self,
        device: &wgpu::Device,
        profiler: &Profiler,
        timed: &[&'static str],
        readback: wgpu::Buffer,
    ) -> Result<()> {
        let bytes = timed.len() as u64 * 16;
        let table = profiler.table.clone();
        let timed = timed.to_vec();
        let period_ns = self.period_ns;
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        let buffer = readback.clone();
        readback.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            if r.is_ok() {
                if let Ok(data) = buffer.get_mapped_range(..bytes) {
                    let ticks: &[u64] = bytemuck::cast_slice(&data);
                    let mut table = table.lock().unwrap();
                    for (i, kernel) in timed.iter().enumerate() {
                        let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period_ns;
                        let row = table.entry(kernel).or_insert((0, 0.0));
                        row.0 += 1;
                        row.1 += dt * 1e-9;
                    }
                }
                buffer.unmap();
            }
            let _ = tx.send(r.is_ok());
        });
        if platform::WEB {
            return Ok(());
        }
        platform::wait_for_gpu(device)?;
        match platform::block_on(rx.receive()) {
            Some(true) => Ok(()),
            _ => Err(Error::Device(
                "reading the profile's timestamps failed".into(),
            )),
        }
    }
}
