//! Saving and loading tensors in safetensors files, with PyTorch's names and layouts.
//!
//! A save writes a temporary file beside the target (named `.NAME.webgrad-tmp-PID`), syncs it,
//! renames it over the target and syncs the directory, so a crash leaves either the old file
//! or the new one, never half of one. Temporary files of that pattern whose process no longer
//! runs are removed by the next save of the same target. Loading is strict by default, as
//! PyTorch's `load_state_dict`: the file must hold exactly the module's tensors.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::Tensor;
use std::sync::atomic::Ordering;

/// What marks a temporary file as ours: `.NAME` + this + the writing process's id.
const TMP_MARK: &str = ".webgrad-tmp-";

/// Saves within this process take turns, so that their temporary files (one name per target
/// and process) never collide.
static SAVING: Mutex<()> = Mutex::new(());

/// A temporary file of ours older than this is stale even where its process cannot be checked
/// (no `/proc`) or its id was reused.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Writes `tensors` (f32) and string `metadata` to `path` atomically.
pub fn save(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_bytes(tensors, metadata).map_err(|e| in_file(e, path))?;
    write_atomically(path, &bytes)
}

/// The safetensors file [`save`] would write, as bytes (for a download, a network or a web
/// page's storage). Blocking: in a browser use [`to_bytes_async`].
pub fn to_bytes(
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        host.push((name.clone(), t.shape().to_vec(), t.to_vec()?));
    }
    serialize(host, Vec::new(), metadata)
}

/// Like [`to_bytes`], awaiting each tensor's readback (the way to save weights in a web page).
pub async fn to_bytes_async(
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        host.push((name.clone(), t.shape().to_vec(), t.to_vec_async().await?));
    }
    serialize(host, Vec::new(), metadata)
}

/// A safetensors file of f32 tensors (name, shape, values), int64 scalars (a module's
/// counters) and string metadata.
fn serialize(
    host: Vec<(String, Vec<usize>, Vec<f32>)>,
    counters: Vec<(String, i64)>,
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let host: Vec<(String, Vec<usize>, Vec<u8>, safetensors::Dtype)> = host
        .into_iter()
        .map(|(n, s, v)| {
            (
                n,
                s,
                bytemuck::pod_collect_to_vec(&v),
                safetensors::Dtype::F32,
            )
        })
        .chain(
            counters
                .into_iter()
                .map(|(n, v)| (n, vec![], v.to_le_bytes().to_vec(), safetensors::Dtype::I64)),
        )
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = host
        .iter()
        .map(|(n, s, b, dtype)| {
            safetensors::tensor::TensorView::new(*dtype, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Io(format!("tensor {n}: {e}")))
        })
        .collect::<Result<_>>()?;
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata.clone())
    };
    safetensors::serialize(views, &meta).map_err(|e| Error::Io(e.to_string()))
}

/// Prefixes an I/O error's message with the file it concerns.
fn in_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Io(m) => Error::Io(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// Writes `bytes` to `path` through a synced temporary file in the same directory, a rename,
/// and a synced directory. On failure the temporary file is removed and `path` is untouched.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Io(format!("{}: not a file path", path.display())))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let _turn = SAVING.lock().unwrap_or_else(|e| e.into_inner());
    remove_stale_temporaries(&dir, &file_name);
    let tmp = dir.join(format!(".{file_name}{TMP_MARK}{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        {
            // Closed before the rename.
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory is synced (where a directory can be
        // opened as a file: not on Windows).
        #[cfg(unix)]
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Removes our temporary files for `file_name` in `dir` that are stale: left by a process
/// that no longer runs (checked through `/proc` where there is one), or older than
/// `STALE_AFTER`. Best effort: what cannot be read or removed is left alone.
fn remove_stale_temporaries(dir: &Path, file_name: &str) {
    let prefix = format!(".{file_name}{TMP_MARK}");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let procfs = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let dead = procfs && !Path::new(&format!("/proc/{pid}")).exists();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if dead || old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A tensor read from a file, still on the host.
#[derive(Clone, Debug)]
pub struct HostTensor {
    /// The size of each dimension.
    pub shape: Vec<usize>,
    /// The values, row-major, converted to f32.
    pub data: Vec<f32>,
    /// The exact values where the file holds integers (i64 or i32), which f32 rounds past
    /// 2^24: BatchNorm's `num_batches_tracked` is read from these.
    pub ints: Option<Vec<i64>>,
}

/// Reads every tensor of a safetensors file and its metadata. f32 is read as is; f64, f16,
/// bf16, i64 and i32 are converted to f32 (as PyTorch's `tensor.float()`).
pub fn load(
    path: impl AsRef<Path>,
) -> Result<(HashMap<String, HostTensor>, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    load_bytes(&bytes, &path.display().to_string())
}

/// Reads every tensor of a safetensors file held in memory (fetched by a web page, say) and its
/// metadata, as [`load`] does; `name` stands for the file in error messages.
pub fn load_bytes(
    bytes: &[u8],
    name: &str,
) -> Result<(HashMap<String, HostTensor>, HashMap<String, String>)> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::Io(format!("{name}: not a valid safetensors file: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let mut out = HashMap::new();
    for (tname, view) in st.tensors() {
        let d = view.data();
        let ints: Option<Vec<i64>> = match view.dtype() {
            safetensors::Dtype::I64 => Some(
                d.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            safetensors::Dtype::I32 => Some(
                d.chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                    .collect(),
            ),
            _ => None,
        };
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F64 => d
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            safetensors::Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            safetensors::Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            // Integer tensors (class targets, BatchNorm's step count) as PyTorch's `.float()`.
            safetensors::Dtype::I64 | safetensors::Dtype::I32 => {
                ints.iter().flatten().map(|&v| v as f32).collect()
            }
            other => {
                return Err(Error::Io(format!(
                    "{name}: tensor {tname} has dtype {other:?}; webgrad reads f32, f64, f16, \
                     bf16, i64 and i32"
                )))
            }
        };
        out.insert(
            tname.to_string(),
            HostTensor {
                shape: view.shape().to_vec(),
                data,
                ints,
            },
        );
    }
    Ok((out, header.metadata().clone().unwrap_or_default()))
}

/// Saves a module's parameters and buffers under their `state_dict` names, and its counters
/// (BatchNorm's `num_batches_tracked`) as int64 scalars, so that PyTorch's
/// `load_state_dict(..., strict=True)` takes the file.
pub fn save_module(path: impl AsRef<Path>, model: &dyn Module) -> Result<()> {
    let path = path.as_ref();
    let mut host = Vec::new();
    for (name, t) in model.state_dict() {
        host.push((name, t.shape().to_vec(), t.to_vec()?));
    }
    let bytes =
        serialize(host, counters_of(model), &HashMap::new()).map_err(|e| in_file(e, path))?;
    write_atomically(path, &bytes)
}

/// A module's parameters, buffers and counters as the bytes of the safetensors file
/// [`save_module`] writes, awaiting the readbacks (works in a web page).
pub async fn module_to_bytes_async(model: &dyn Module) -> Result<Vec<u8>> {
    let mut host = Vec::new();
    for (name, t) in model.state_dict() {
        host.push((name, t.shape().to_vec(), t.to_vec_async().await?));
    }
    serialize(host, counters_of(model), &HashMap::new())
}

/// The module's counters with their values now.
fn counters_of(model: &dyn Module) -> Vec<(String, i64)> {
    model
        .named_counters()
        .into_iter()
        .map(|(n, c)| (n, c.load(Ordering::Relaxed).min(i64::MAX as u64) as i64))
        .collect()
}

/// Loads a module's parameters and buffers from the bytes of a safetensors file, with
/// PyTorch's `strict` choice (see [`load_into_with`]); `name` stands for the file in errors.
pub fn load_module_bytes(
    bytes: &[u8],
    model: &dyn Module,
    name: &str,
    strict: bool,
) -> Result<LoadReport> {
    let (tensors, _) = load_bytes(bytes, name)?;
    load_into_with(model, &tensors, name, strict)
}

/// The names a load passed over, as PyTorch's `load_state_dict` returns them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The module's tensors the file does not hold (left as they were).
    pub missing: Vec<String>,
    /// The file's tensors the module has no place for (ignored).
    pub unexpected: Vec<String>,
}

/// Copies the tensors of `file` into the module's parameters and buffers, strictly: the file
/// must hold exactly the module's tensors, with the same shapes. The error lists every missing
/// and every unexpected name, or names a mis-shaped tensor.
pub fn load_into(
    model: &dyn Module,
    tensors: &HashMap<String, HostTensor>,
    file: &str,
) -> Result<()> {
    load_into_with(model, tensors, file, true).map(|_| ())
}

/// [`load_into`] with PyTorch's `strict` choice: with `strict = false`, missing tensors are
/// left as they are and unexpected ones ignored, and both are reported. A mis-shaped tensor is
/// an error either way, as in PyTorch. Nothing is written unless the whole load succeeds.
pub fn load_into_with(
    model: &dyn Module,
    tensors: &HashMap<String, HostTensor>,
    file: &str,
    strict: bool,
) -> Result<LoadReport> {
    let dict = model.state_dict();
    let mut report = LoadReport::default();
    for (name, t) in &dict {
        let Some(src) = tensors.get(name) else {
            report.missing.push(name.clone());
            continue;
        };
        if src.shape != t.shape() {
            return Err(Error::Io(format!(
                "{file}: tensor {name} has shape {:?}, the model expects {:?}",
                src.shape,
                t.shape()
            )));
        }
    }
    // Counters the file holds are read; one it lacks (a file from before PyTorch 0.4.1, or
    // from a framework without them) keeps its value, as PyTorch's BatchNorm allows.
    let counters = model.named_counters();
    let mut counts = Vec::new();
    for (name, c) in &counters {
        if let Some(src) = tensors.get(name) {
            counts.push((c, counter_value(src, name, file)?));
        }
    }
    report.unexpected = tensors
        .keys()
        .filter(|k| !dict.iter().any(|(n, _)| n == *k) && !counters.iter().any(|(n, _)| n == *k))
        .cloned()
        .collect();
    report.unexpected.sort();
    if strict && (!report.missing.is_empty() || !report.unexpected.is_empty()) {
        let mut parts = Vec::new();
        if !report.missing.is_empty() {
            parts.push(format!("missing tensors: {}", report.missing.join(", ")));
        }
        if !report.unexpected.is_empty() {
            parts.push(format!(
                "unexpected tensors: {}",
                report.unexpected.join(", ")
            ));
        }
        return Err(Error::Io(format!(
            "{file}: does not match the model ({}); a non-strict load skips them",
            parts.join("; ")
        )));
    }
    for (name, t) in &dict {
        if let Some(src) = tensors.get(name) {
            t.write_from_slice(&src.data)?;
        }
    }
    for (c, v) in counts {
        c.store(v, Ordering::Relaxed);
    }
    Ok(report)
}

/// A counter's value from its entry: one non-negative integer (int64 in PyTorch's files; an
/// integral float is taken too).
fn counter_value(src: &HostTensor, name: &str, file: &str) -> Result<u64> {
    let bad = |what: String| Error::Io(format!("{file}: counter {name} {what}"));
    if src.data.len() != 1 {
        return Err(bad(format!(
            "has shape {:?}, expected one value",
            src.shape
        )));
    }
    let v = match &src.ints {
        Some(ints) => ints[0],
        None if src.data[0].fract() == 0.0 && src.data[0].abs() < 9.0e15 => src.data[0] as i64,
        None => return Err(bad(format!("is {}, not an integer", src.data[0]))),
    };
    u64::try_from(v).map_err(|_| bad(format!("is {v}, below 0")))
}

/// Loads a module's parameters and buffers from a safetensors file, strictly (see
/// [`load_into`]).
pub fn load_module(path: impl AsRef<Path>, model: &dyn Module) -> Result<()> {
    load_module_with(path, model, true).map(|_| ())
}

/// [`load_module`] with PyTorch's `strict` choice (see [`load_into_with`]).
pub fn load_module_with(
    path: impl AsRef<Path>,
    model: &dyn Module,
    strict: bool,
) -> Result<LoadReport> {
    let path = path.as_ref();
    let (tensors, _) = load(path)?;
    load_into_with(model, &tensors, &path.display().to_string(), strict)
}

/// Uploads a host tensor.
pub fn to_device(dev: &Device, t: &HostTensor) -> Result<Tensor> {
    Tensor::from_slice(dev, &t.data, &t.shape)
}
