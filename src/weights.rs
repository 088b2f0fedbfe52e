//! Saving and loading tensors in safetensors files, with PyTorch's names and layouts.
//! A save writes a temporary file beside the target and renames it over the target, so a
//! crash leaves either the old file or the new one, never half of one.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::Module;
use crate::tensor::Tensor;

/// Writes `tensors` (f32) and string `metadata` to `path` atomically.
pub fn save(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut host = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let bytes: Vec<u8> = t.to_vec()?.iter().flat_map(|v| v.to_le_bytes()).collect();
        host.push((name.clone(), t.shape().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = host
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Io(format!("{}: tensor {n}: {e}", path.display())))
        })
        .collect::<Result<_>>()?;
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata.clone())
    };
    let bytes = safetensors::serialize(views, &meta)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Io(format!("{}: not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// A tensor read from a file, still on the host.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads every tensor of a safetensors file (f32; f64 and f16 are converted) and its metadata.
pub fn load(
    path: impl AsRef<Path>,
) -> Result<(HashMap<String, HostTensor>, HashMap<String, String>)> {
    let path = path.as_ref();
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Io(format!("{name}: not a valid safetensors file: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let mut out = HashMap::new();
    for (tname, view) in st.tensors() {
        let d = view.data();
        let data: Vec<f32> = match view.dtype() {
            safetensors::Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            safetensors::Dtype::F64 => d
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            other => {
                return Err(Error::Io(format!(
                    "{name}: tensor {tname} has dtype {other:?}; webgrad reads f32 and f64"
                )))
            }
        };
        out.insert(
            tname.to_string(),
            HostTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok((out, header.metadata().clone().unwrap_or_default()))
}

/// Saves a module's parameters and buffers under their `state_dict` names.
pub fn save_module(path: impl AsRef<Path>, model: &dyn Module) -> Result<()> {
    save(path, &model.state_dict(), &HashMap::new())
}

/// Copies the tensors of `file` into the module's parameters and buffers. Every one must be
/// present with the same shape; a missing or mis-shaped tensor is an error naming it.
pub fn load_into(
    model: &dyn Module,
    tensors: &HashMap<String, HostTensor>,
    file: &str,
) -> Result<()> {
    let dict = model.state_dict();
    for (name, t) in &dict {
        let src = tensors
            .get(name)
            .ok_or_else(|| Error::Io(format!("{file}: no tensor {name}")))?;
        if src.shape != t.shape() {
            return Err(Error::Io(format!(
                "{file}: tensor {name} has shape {:?}, the model expects {:?}",
                src.shape,
                t.shape()
            )));
        }
    }
    for (name, t) in &dict {
        t.write_from_slice(&tensors[name].data)?;
    }
    Ok(())
}

/// Loads a module's parameters and buffers from a safetensors file.
pub fn load_module(path: impl AsRef<Path>, model: &dyn Module) -> Result<()> {
    let path = path.as_ref();
    let (tensors, _) = load(path)?;
    load_into(model, &tensors, &path.display().to_string())
}

/// Uploads a host tensor.
pub fn to_device(dev: &Device, t: &HostTensor) -> Result<Tensor> {
    Tensor::from_slice(dev, &t.data, &t.shape)
}
