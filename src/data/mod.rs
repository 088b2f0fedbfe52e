//! Data: the IDX reader and MNIST-format data sets with a batching loader.

mod idx;
mod mnist;

pub use idx::{parse_idx, read_idx, read_idx_bytes, IdxArray};
pub use mnist::{Batch, DataLoader, Dataset, Mnist};
