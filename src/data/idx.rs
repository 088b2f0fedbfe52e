//! The IDX format of MNIST: a magic number (0, 0, type, number of dims), big-endian u32 dims,
//! then the values. Files may be gzipped. Every problem is an error naming the file.
//!
//! The header is read first, from the (decompressed) stream, and checked; then exactly the
//! bytes it announces, and one more to detect trailing data. A gzipped file may announce at
//! most what deflate can expand it to, so a small file never makes the reader allocate much.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};

/// Deflate's largest expansion: a 258-byte match costs at least about two bits, so a gzip
/// file of n bytes never decompresses to more than 1032 n bytes.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// An IDX array of unsigned bytes (the only type MNIST uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The elements as bytes, row-major.
    pub data: Vec<u8>,
}

/// A checked header: the dims, the number of data bytes they announce, the header's length.
struct Header {
    dims: Vec<usize>,
    count: usize,
    len: usize,
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the stream; returns how many.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads and checks the header from the start of the stream; `io` names what a read error
/// means (e.g. a broken gzip stream).
fn read_header(r: &mut impl Read, io: &str) -> std::result::Result<Header, String> {
    let io = |e: std::io::Error| format!("{io}: {e}");
    let mut magic = [0u8; 4];
    let got = read_full(r, &mut magic).map_err(io)?;
    if got < 4 {
        return Err(format!(
            "truncated: {got} bytes, shorter than the 4-byte magic number"
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(format!(
            "wrong magic number {:02x} {:02x} {:02x} {:02x} at offset 0 (IDX files start with 00 00)",
            magic[0], magic[1], magic[2], magic[3]
        ));
    }
    if magic[2] != 0x08 {
        return Err(format!(
            "element type 0x{:02x} at offset 2 is not unsigned byte (0x08)",
            magic[2]
        ));
    }
    let ndims = magic[3] as usize;
    if ndims == 0 {
        return Err("zero dimensions at offset 3".into());
    }
    let len = 4 + 4 * ndims;
    let mut raw = vec![0u8; 4 * ndims];
    let got = read_full(r, &mut raw).map_err(io)?;
    if got < raw.len() {
        return Err(format!(
            "truncated header: {ndims} dimensions need {len} bytes, the file has {}",
            4 + got
        ));
    }
    let dims: Vec<usize> = raw
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    Ok(Header { dims, count, len })
}

fn count_mismatch(h: &Header, have: impl std::fmt::Display, truncated: bool) -> String {
    format!(
        "dimensions {:?} need {} bytes of data after the {}-byte header, found {have} ({})",
        h.dims,
        h.count,
        h.len,
        if truncated {
            "truncated"
        } else {
            "trailing bytes"
        }
    )
}

/// Reads the header, then exactly the data it announces, then checks the stream ends there.
fn read_data(r: &mut impl Read, h: Header, io: &str) -> std::result::Result<IdxArray, String> {
    let io = |e: std::io::Error| format!("{io}: {e}");
    // Grows with what actually arrives (never reserved up front from the header).
    let mut data = Vec::new();
    r.take(h.count as u64).read_to_end(&mut data).map_err(io)?;
    if data.len() < h.count {
        return Err(count_mismatch(&h, data.len(), true));
    }
    if read_full(r, &mut [0u8; 1]).map_err(io)? > 0 {
        return Err(count_mismatch(&h, "more", false));
    }
    Ok(IdxArray { dims: h.dims, data })
}

/// Reads an IDX file of u8 values, raw or gzip-compressed (detected by its magic bytes).
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io = |e: std::io::Error| Error::Io(format!("{name}: {e}"));
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    read_idx_from(file, size, &name)
}

/// Reads IDX data held in memory (a page's fetched file, say), raw or gzip-compressed, as
/// [`read_idx`] does; `name` stands for the file in error messages.
pub fn read_idx_bytes(bytes: &[u8], name: &str) -> Result<IdxArray> {
    read_idx_from(std::io::Cursor::new(bytes), bytes.len() as u64, name)
}

/// The IDX array in `source` of `size` bytes, raw or gzip-compressed.
fn read_idx_from(mut source: impl Read + Seek, size: u64, name: &str) -> Result<IdxArray> {
    let fail = |m: String| Error::Io(format!("{name}: {m}"));
    let io = |e: std::io::Error| fail(e.to_string());
    let mut magic = [0u8; 2];
    let gz = read_full(&mut source, &mut magic).map_err(io)? == 2 && magic == [0x1f, 0x8b];
    source.seek(SeekFrom::Start(0)).map_err(io)?;
    let source = BufReader::new(source);
    if gz {
        const IO: &str = "not a valid gzip stream";
        let mut r = flate2::read::GzDecoder::new(source);
        let h = read_header(&mut r, IO).map_err(fail)?;
        let max = size.saturating_mul(MAX_DEFLATE_RATIO);
        if (h.len as u64).saturating_add(h.count as u64) > max {
            return Err(fail(format!(
                "dimensions {:?} announce {} bytes of data, more than a gzip file of {size} \
                 bytes can hold (deflate expands at most {MAX_DEFLATE_RATIO}x)",
                h.dims, h.count
            )));
        }
        read_data(&mut r, h, IO).map_err(fail)
    } else {
        const IO: &str = "read error";
        let mut r = source;
        let h = read_header(&mut r, IO).map_err(fail)?;
        // The size says at once whether the data fits the header.
        let have = size.saturating_sub(h.len as u64);
        if have != h.count as u64 {
            return Err(fail(count_mismatch(&h, have, have < h.count as u64)));
        }
        read_data(&mut r, h, IO).map_err(fail)
    }
}

/// Parses IDX bytes; the error text names the offset involved.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    let mut r = bytes;
    let h = read_header(&mut r, "read error")?;
    if r.len() != h.count {
        return Err(count_mismatch(&h, r.len(), r.len() < h.count));
    }
    Ok(IdxArray {
        dims: h.dims,
        data: r.to_vec(),
    })
}
