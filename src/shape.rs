//! Shape arithmetic shared by the ops: element counts, strides, broadcasting, dim indices.

use crate::error::{shape_err, Error, Result};

/// Most dimensions a kernel's index arithmetic handles (the shaders' `array<u32, 8>`).
pub const MAX_RANK: usize = 8;

/// The element count of `shape`. A count too large for `usize` saturates to `usize::MAX` (no
/// allocation can hold it, so it fails there); tensor-creating paths reject such shapes first
/// with [`check_shape`], which names them.
pub fn numel(shape: &[usize]) -> usize {
    match shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(n) => n,
        None if shape.contains(&0) => 0,
        None => usize::MAX,
    }
}

/// Checks that a tensor of `shape` can exist: at most `MAX_RANK` dims, and the product of its
/// non-zero dims (its element count, every stride) fits in `usize` also as a count of f32
/// bytes, so no size or offset computed from it can wrap. Returns the element count.
pub fn check_shape(shape: &[usize], op: &'static str) -> Result<usize> {
    if shape.len() > MAX_RANK {
        return shape_err(
            op,
            format!("shape {shape:?} has more than {MAX_RANK} dimensions"),
        );
    }
    let fits = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(std::mem::size_of::<f32>(), |acc, &d| acc.checked_mul(d))
        .is_some();
    if !fits {
        return shape_err(
            op,
            format!("shape {shape:?} has too many elements (the element count overflows)"),
        );
    }
    Ok(numel(shape))
}

/// Contiguous row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Resolves a possibly negative dim (PyTorch style) against `rank`.
pub fn resolve_dim(dim: isize, rank: usize, op: &'static str) -> Result<usize> {
    let r = rank.max(1) as isize;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        return Err(Error::Invalid(format!(
            "{op}: dim {dim} out of range for a tensor of rank {rank}"
        )));
    }
    Ok(d as usize)
}

/// NumPy/PyTorch broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize], op: &'static str) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return shape_err(
                    op,
                    format!("shapes {a:?} and {b:?} cannot be broadcast together"),
                )
            }
        };
    }
    if rank > MAX_RANK {
        return shape_err(op, format!("rank {rank} exceeds the maximum of {MAX_RANK}"));
    }
    Ok(out)
}

/// Strides of `shape` viewed in an output of rank `rank` (left-padded with 1s), with stride 0
/// on broadcast dims: the input element for output index `idx` is at `sum(idx[d] * s[d])`.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let rank = out.len();
    let own = strides(shape);
    (0..rank)
        .map(|d| {
            if d + shape.len() < rank {
                return 0;
            }
            let k = d + shape.len() - rank;
            if shape[k] == 1 && out[d] != 1 {
                0
            } else {
                own[k]
            }
        })
        .collect()
}

/// `shape` left-padded with 1s to `rank` dims.
pub fn pad_shape(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut v = vec![1; rank - shape.len()];
    v.extend_from_slice(shape);
    v
}

/// Pads a list to `MAX_RANK` entries for a shader's `array<vec4<u32>, 2>` (uniform arrays
/// need 16-byte elements; entry d is `v[d >> 2][d & 3]`).
pub fn vec4x2(v: &[usize]) -> [[u32; 4]; MAX_RANK / 4] {
    let mut w = [[0u32; 4]; MAX_RANK / 4];
    for (i, x) in v.iter().enumerate() {
        w[i / 4][i % 4] = *x as u32;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[4, 3, 5], &[5], "t").unwrap(), vec![4, 3, 5]);
        assert_eq!(broadcast(&[4, 3, 5], &[3, 1], "t").unwrap(), vec![4, 3, 5]);
        assert_eq!(broadcast(&[2, 1], &[1, 7], "t").unwrap(), vec![2, 7]);
        let err = broadcast(&[2, 3], &[4, 3], "add").unwrap_err().to_string();
        assert!(err.contains("[2, 3]") && err.contains("[4, 3]"), "{err}");
        assert_eq!(broadcast_strides(&[3, 1], &[4, 3, 5]), vec![0, 1, 0]);
    }

    #[test]
    fn element_counts_never_wrap() {
        assert_eq!(numel(&[1 << 32, 1 << 32]), usize::MAX);
        assert_eq!(numel(&[1 << 32, 1 << 32, 0]), 0);
        assert_eq!(numel(&[]), 1);
        assert_eq!(check_shape(&[2, 0, 3], "t").unwrap(), 0);
        assert_eq!(check_shape(&[0, 1 << 40], "t").unwrap(), 0);
        for bad in [
            vec![1 << 32, 1 << 32],
            vec![(1 << 63) + 1, 2],
            vec![0, 1 << 40, 1 << 40],
            vec![usize::MAX / 2],
        ] {
            let err = check_shape(&bad, "zeros").unwrap_err().to_string();
            assert!(
                err.starts_with("zeros:") && err.contains(&format!("{bad:?}")),
                "{err}"
            );
        }
        assert!(check_shape(&[1; MAX_RANK + 1], "t").is_err());
    }
}
