//! Pipelines compiled in the background, and the dry runs that find which ones a kernel
//! variant needs.
//!
//! Where the shader compiler is slow and can compile off the queue's thread (SwiftShader in a
//! page: `Policy::conv_waits_for_pipelines`), an op whose fast kernels take long to compile
//! runs kernels that compile quickly until the fast ones are ready, so that a first training
//! step does not wait seconds for them. Which pipelines the fast variant needs is found by
//! running it dry ([`Device::dry_run`]): on fresh tensors of the same shapes, with every
//! dispatch, copy and fill skipped, so that each dispatch only names its pipeline, and the
//! pipelines not compiled yet start compiling in the background. The op asks again at its
//! next call ([`Device::variant_ready`]) and switches once all of them have compiled; the
//! variant's own dispatches then create them as usual, and the browser hands back what it
//! compiled (its pipeline cache keys on content, not on the objects).
//!
//! Nothing the dry run touches is shared: its tensors are its own, so no cached copy or flag
//! of a real tensor can be left stale. A wrong guess costs time only: a pipeline the dry run
//! did not name compiles when first dispatched, as it would without any of this.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::device::Device;
use crate::error::Result;
use crate::kernel::{Bind, PipelineKey, Shader};
use crate::platform::{self, PipelineRequest};

thread_local! {
    /// The pipelines named by the dry run in progress on this thread, if any.
    static DRY_RUN: RefCell<Option<Vec<PipelineKey>>> = const { RefCell::new(None) };
}

/// Whether this thread is inside [`Device::dry_run`]: dispatches, copies and fills record
/// nothing.
pub(crate) fn in_dry_run() -> bool {
    DRY_RUN.with(|d| d.borrow().is_some())
}

/// A pipeline asked for during a dry run, waiting for the next readback to start compiling.
struct Queued {
    key: PipelineKey,
    source: String,
    entries: Vec<wgpu::BindGroupLayoutEntry>,
}

/// A device's background compilation: what each prepared variant needs, and where each of
/// those pipelines stands.
#[derive(Default)]
pub(crate) struct Background {
    /// The pipelines each prepared variant's dry run named, by the key its op gave.
    variants: Mutex<HashMap<Vec<u8>, Vec<PipelineKey>>>,
    /// Pipelines asked for: compiled (true) or still compiling (false). Shared with the
    /// callbacks that report a compilation's end.
    compiled: Arc<Mutex<HashMap<PipelineKey, bool>>>,
    /// Asked for and not started: they start at the next readback, after the step that asked
    /// for them has been submitted, so that they do not compete with it for the CPU.
    queued: Mutex<Vec<Queued>>,
}

impl Device {
    /// Runs `f` dry (see the module's comment) and returns the pipelines its dispatches named,
    /// in order, each once.
    pub(crate) fn dry_run(&self, f: impl FnOnce() -> Result<()>) -> Result<Vec<PipelineKey>> {
        let outer = DRY_RUN.with(|d| d.borrow_mut().replace(Vec::new()));
        let result = f();
        let named = DRY_RUN.with(|d| std::mem::replace(&mut *d.borrow_mut(), outer));
        result.map(|()| named.unwrap_or_default())
    }

    /// A dispatch in a dry run: notes its pipeline, and queues it for compiling in the
    /// background.
    pub(crate) fn name_pipeline(
        &self,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, u32)],
        binds: &[Bind],
    ) {
        let key = crate::kernel::pipeline_key(shader, entry, constants, binds);
        DRY_RUN.with(|d| {
            if let Some(named) = d.borrow_mut().as_mut() {
                if !named.contains(&key) {
                    named.push(key.clone());
                }
            }
        });
        self.compile_in_background(shader, key);
    }

    /// Queues the pipeline of `key` for compiling in the background, unless it is compiled
    /// or asked for already.
    fn compile_in_background(&self, shader: &Shader, key: PipelineKey) {
        let bg = self.background();
        if self.has_pipeline(&key) || bg.compiled.lock().unwrap().contains_key(&key) {
            return;
        }
        bg.compiled.lock().unwrap().insert(key.clone(), false);
        bg.queued.lock().unwrap().push(Queued {
            source: shader.full_source(),
            entries: crate::kernel::layout_entries(key.3, key.2 as usize),
            key,
        });
    }

    /// Whether the pipeline of this dispatch is compiled; if not, queues it for compiling in
    /// the background (for a kernel that has a cheaper stand-in meanwhile). In a dry run,
    /// true: the dispatch names its own pipeline.
    pub(crate) fn compiled_or_queued(
        &self,
        shader: &Shader,
        entry: &'static str,
        constants: &[(&'static str, u32)],
        binds: &[Bind],
    ) -> bool {
        let key = crate::kernel::pipeline_key(shader, entry, constants, binds);
        if in_dry_run() || self.has_pipeline(&key) {
            return true;
        }
        if let Some(&done) = self.background().compiled.lock().unwrap().get(&key) {
            return done;
        }
        self.compile_in_background(shader, key);
        false
    }

    /// Whether the variant of `key` (bytes its op makes unique) can run without compiling:
    /// the first call runs `dry` dry to find its pipelines, and answers false while any of
    /// them is compiling. A dry run that fails answers true: the variant then runs, and
    /// reports its error, as it would have without the wait.
    pub(crate) fn variant_ready(&self, key: Vec<u8>, dry: impl FnOnce() -> Result<()>) -> bool {
        let bg = self.background();
        let known = bg.variants.lock().unwrap().get(&key).cloned();
        let keys = match known {
            Some(keys) => keys,
            None => {
                let keys = self.dry_run(dry).unwrap_or_default();
                bg.variants.lock().unwrap().insert(key, keys.clone());
                keys
            }
        };
        let compiled = bg.compiled.lock().unwrap();
        keys.iter()
            .all(|k| compiled.get(k).copied().unwrap_or(true) || self.has_pipeline(k))
    }

    /// Whether the variant of `key` was prepared by [`variant_ready`](Self::variant_ready).
    pub(crate) fn variant_known(&self, key: &[u8]) -> bool {
        self.background().variants.lock().unwrap().contains_key(key)
    }

    /// Starts compiling the pipelines that dry runs asked for (called after a submission, at
    /// a readback or a sync). Natively, where wgpu has no background compilation (only tests
    /// force it on: `DeviceOptions::force_background_compiles`), compiles them now, so that
    /// they are ready at the op's next call as in a page.
    pub(crate) fn start_background_compiles(&self) {
        let queued = std::mem::take(&mut *self.background().queued.lock().unwrap());
        for q in queued {
            if !platform::WEB {
                self.keyed_pipeline(&q.key, || q.source);
                self.background()
                    .compiled
                    .lock()
                    .unwrap()
                    .insert(q.key, true);
                continue;
            }
            let compiled = self.background().compiled.clone();
            let key = q.key.clone();
            let req = PipelineRequest {
                source: q.source,
                entry: q.key.1,
                constants: &q.key.4,
                entries: &q.entries,
            };
            let started = platform::compile_in_background(self.wgpu(), &req, move || {
                compiled.lock().unwrap().insert(key, true);
            });
            if !started {
                // Not expressible as a background request: compiled at its first dispatch.
                self.background()
                    .compiled
                    .lock()
                    .unwrap()
                    .insert(q.key, true);
            }
        }
    }

    /// Awaits the pipelines compiling in the background (started by a page's first training
    /// steps where the compiler is slow; at once elsewhere): the steps after it run the
    /// kernels a steady state runs.
    pub async fn pipelines_compiled_async(&self) -> Result<()> {
        self.start_background_compiles();
        platform::background_compiles_done().await;
        self.check_error()
    }
}
