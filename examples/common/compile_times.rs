//! What each pipeline costs to compile, for the examples that list a first step's pipelines
//! (`first_step`, `zoo --pipelines`).

use webgrad::diagnostics::{self, PipelineSpec, PipelineTiming};
use webgrad::{Device, Result};

/// Each of `specs` created alone on a fresh device (so nothing is cached), slowest first.
pub fn slowest_first(specs: &[PipelineSpec]) -> Result<Vec<PipelineTiming>> {
    let mut times = pollster::block_on(diagnostics::time_pipelines(&Device::new()?, specs))?;
    times.sort_by(|a, b| (b.ms + b.module_ms).total_cmp(&(a.ms + a.module_ms)));
    Ok(times)
}

/// A pipeline's override constants as `NAME=value` words.
pub fn overrides(spec: &PipelineSpec) -> String {
    let words: Vec<String> = spec
        .constants
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    words.join(" ")
}
