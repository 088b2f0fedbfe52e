//! Checks for a new adapter or WGSL compiler (a browser's Tint, say): every shader module
//! compiled on its own, with the compiler's messages. Used by the web crate's page tests;
//! not a stable API.

use crate::device::Device;
use crate::error::Result;
use crate::kernel::Shader;
use crate::platform::Instant;

/// What the device's WGSL compiler said of one shader module.
#[derive(Clone, Debug)]
pub struct ShaderCheck {
    /// The module's name (its file under `shaders/`, without `.wgsl`).
    pub name: &'static str,
    /// The compiler's errors (empty when the module compiled).
    pub errors: Vec<String>,
    /// Its warnings and notes.
    pub warnings: Vec<String>,
    /// Why the module was not compiled on this device (a feature it lacks), if it was not.
    pub skipped: Option<&'static str>,
    /// Milliseconds from creating the module to the compiler's answer.
    pub millis: f64,
}

/// Every shader module webgrad dispatches from, and whether it needs subgroup operations.
fn all_shaders() -> [(&'static Shader, bool); 19] {
    use crate::backend::{cpu, portable};
    use crate::ops;
    [
        (&ops::binary::SHADER, false),
        (&ops::unary::SHADER, false),
        (&ops::reduce::SHADER, false),
        (&ops::softmax::SHADER, false),
        (&ops::loss::SHADER, false),
        (&ops::layout::SHADER, false),
        (&ops::fill::SHADER, false),
        (&ops::index::SHADER, false),
        (&ops::dropout::SHADER, false),
        (&ops::pad::SHADER, false),
        (&ops::batch_norm::SHADER, false),
        (&crate::optim::SHADER, false),
        (&portable::matmul::SHADER, false),
        (&portable::conv::SHADER, false),
        (&portable::pool::SHADER, false),
        (&cpu::matmul::BLOCKED, false),
        (&cpu::conv_implicit::SHADER, false),
        (&cpu::matmul::SUBGROUP, true),
        (&cpu::conv_implicit::SUBGROUP, true),
    ]
}

/// The names of the shader files every module is built from (the module's own file first), for
/// the test that no shader file is left out of [`compile_every_shader`].
#[doc(hidden)]
pub fn shader_files() -> Vec<&'static str> {
    all_shaders().iter().map(|(s, _)| s.name).collect()
}

/// Compiles every shader module on `dev` and awaits each compiler's messages. Modules that
/// need a feature the device lacks are reported as skipped. Errors of the compiler are
/// returned in the report, not as `Err`.
pub async fn compile_every_shader(dev: &Device) -> Result<Vec<ShaderCheck>> {
    let mut out = Vec::new();
    for (shader, needs_subgroups) in all_shaders() {
        if needs_subgroups && !dev.wgpu().features().contains(wgpu::Features::SUBGROUP) {
            out.push(ShaderCheck {
                name: shader.name,
                errors: Vec::new(),
                warnings: Vec::new(),
                skipped: Some("the device has no subgroup operations"),
                millis: 0.0,
            });
            continue;
        }
        let start = Instant::now();
        let scope = dev.wgpu().push_error_scope(wgpu::ErrorFilter::Validation);
        let module = dev
            .wgpu()
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader.name),
                source: wgpu::ShaderSource::Wgsl(shader.full_source().into()),
            });
        let info = module.get_compilation_info().await;
        let scoped = scope.pop().await;
        let millis = start.elapsed().as_secs_f64() * 1e3;
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        for m in info.messages {
            let at = m
                .location
                .map(|l| format!("line {}:{}: ", l.line_number, l.line_position))
                .unwrap_or_default();
            let text = format!("{at}{}", m.message);
            match m.message_type {
                wgpu::CompilationMessageType::Error => errors.push(text),
                _ => warnings.push(text),
            }
        }
        if let Some(e) = scoped {
            if errors.is_empty() {
                errors.push(e.to_string());
            }
        }
        out.push(ShaderCheck {
            name: shader.name,
            errors,
            warnings,
            skipped: None,
            millis,
        });
    }
    Ok(out)
}

/// One pipeline a device created: its module, entry point, bindings after the parameters
/// (`kinds`: two bits each, read / write buffer, read / write texels) and override constants.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    pub shader: String,
    pub entry: String,
    pub bindings: u32,
    pub kinds: u32,
    pub constants: Vec<(String, u32)>,
}

/// The pipelines `dev` has created so far, in order (a step's pipelines are those created
/// during it).
pub fn created_pipelines(dev: &Device) -> Vec<PipelineSpec> {
    dev.created_pipelines()
        .into_iter()
        .map(|(shader, entry, bindings, kinds, constants)| PipelineSpec {
            shader: shader.into(),
            entry: entry.into(),
            bindings,
            kinds,
            constants: constants.into_iter().map(|(n, v)| (n.into(), v)).collect(),
        })
        .collect()
}

/// What compiling one pipeline cost: milliseconds to its module's compiler answer (the first
/// pipeline of each module; 0 for the others) and from creating the pipeline to the device's
/// answer.
#[derive(Clone, Debug)]
pub struct PipelineTiming {
    pub spec: PipelineSpec,
    pub module_ms: f64,
    pub ms: f64,
}

/// Creates each of `specs` on `dev`, one at a time, awaiting the device after each (on a
/// fresh device, or in a fresh browser, for a compile time free of caches).
pub async fn time_pipelines(dev: &Device, specs: &[PipelineSpec]) -> Result<Vec<PipelineTiming>> {
    let shaders = all_shaders().map(|(s, _)| s);
    let mut out = Vec::new();
    for spec in specs {
        let shader = shaders
            .iter()
            .find(|s| s.name == spec.shader)
            .ok_or_else(|| crate::Error::Invalid(format!("no shader {:?}", spec.shader)))?;
        let constants: Vec<(&str, u32)> = spec
            .constants
            .iter()
            .map(|(n, v)| (n.as_str(), *v))
            .collect();
        let (module_ms, ms) = dev
            .time_pipeline(
                shader,
                &spec.entry,
                &constants,
                spec.bindings as usize,
                spec.kinds,
            )
            .await?;
        out.push(PipelineTiming {
            spec: spec.clone(),
            module_ms,
            ms,
        });
    }
    Ok(out)
}
