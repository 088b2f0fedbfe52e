//! `WEBGRAD_PROFILE=1`: time per kernel. Where the adapter has timestamp queries inside compute
//! passes, every dispatch is bracketed by two GPU timestamps and the batch is recorded and
//! submitted as usual; the timestamps are read back when the batch is flushed. Elsewhere each
//! dispatch is submitted alone and timed from the host (which adds a submit's overhead).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Most timestamps one query set holds in wgpu.
const MAX_QUERIES: u32 = 4096;

/// Per-kernel (calls, seconds), and the timestamp queries when the adapter has them.
pub(crate) struct Profiler {
    pub table: Mutex<HashMap<&'static str, (u64, f64)>>,
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
}

/// The features the profiler needs, when profiling and the adapter has them.
pub(crate) fn wanted_features(adapter: &wgpu::Adapter, profile: bool) -> wgpu::Features {
    let timestamps =
        wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    if profile && adapter.features().contains(timestamps) {
        timestamps
    } else {
        wgpu::Features::empty()
    }
}

impl Profiler {
    /// A profiler, GPU-timed if the device has the features.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Profiler {
        let gpu = device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
            .then(|| {
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
                    resolve: buffer(
                        wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    ),
                    readback: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
                    period_ns: queue.get_timestamp_period() as f64,
                    capacity: MAX_QUERIES as usize / 2,
                }
            });
        Profiler {
            table: Mutex::new(HashMap::new()),
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
    /// their copy to the readback buffer; call before submitting the encoder.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder, timed: usize) {
        let n = 2 * timed as u32;
        encoder.resolve_query_set(&self.queries, 0..n, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, Some(n as u64 * 8));
    }

    /// After the submit: waits for the timestamps and adds each dispatch's time to the table.
    pub fn collect(
        &self,
        device: &wgpu::Device,
        profiler: &Profiler,
        timed: &[&'static str],
    ) -> Result<()> {
        let bytes = timed.len() as u64 * 16;
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        self.readback
            .map_async(wgpu::MapMode::Read, ..bytes, move |r| {
                let _ = tx.send(r);
            });
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("poll failed: {e}")))?;
        match pollster::block_on(rx.receive()) {
            Some(Ok(())) => {}
            _ => {
                return Err(Error::Device(
                    "reading the profile's timestamps failed".into(),
                ))
            }
        }
        {
            let data = self
                .readback
                .get_mapped_range(..bytes)
                .map_err(|e| Error::Device(format!("reading the profile's timestamps: {e}")))?;
            let ticks: &[u64] = bytemuck::cast_slice(&data);
            let mut table = profiler.table.lock().unwrap();
            for (i, kernel) in timed.iter().enumerate() {
                let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * self.period_ns;
                let row = table.entry(kernel).or_insert((0, 0.0));
                row.0 += 1;
                row.1 += dt * 1e-9;
            }
        }
        self.readback.unmap();
        Ok(())
    }
}
