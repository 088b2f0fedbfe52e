//! The IDX format of MNIST: a magic number (0, 0, type, number of dims), big-endian u32 dims,
//! then the values. Files may be gzipped. Every problem is an error naming the file.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// An IDX array of unsigned bytes (the only type MNIST uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads an IDX file of u8 values, raw or gzip-compressed (detected by its magic bytes).
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let name = path.display();
    let raw = std::fs::read(path).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::Io(format!("{name}: not a valid gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(|m| Error::Io(format!("{name}: {m}")))
}

/// Parses IDX bytes; the error text names the offset involved.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "truncated: {} bytes, shorter than the 4-byte magic number",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "wrong magic number {:02x} {:02x} {:02x} {:02x} at offset 0 (IDX files start with 00 00)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "element type 0x{:02x} at offset 2 is not unsigned byte (0x08)",
            bytes[2]
        ));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err("zero dimensions at offset 3".into());
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(format!(
            "truncated header: {ndims} dimensions need {header} bytes, the file has {}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let have = bytes.len() - header;
    if have != count {
        return Err(format!(
            "dimensions {dims:?} need {count} bytes of data after the {header}-byte header, \
             found {have} ({})",
            if have < count {
                "truncated"
            } else {
                "trailing bytes"
            }
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}
