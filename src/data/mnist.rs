//! MNIST-format data sets (MNIST, Fashion-MNIST) and a batching data loader.

use std::path::{Path, PathBuf};

use super::idx::{read_idx, read_idx_bytes, IdxArray};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Images (N x rows x cols, scaled to [0, 1], optionally normalised) and their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Pixels of every image, row-major, image after image.
    pub images: Vec<f32>,
    /// The class of each image.
    pub labels: Vec<u8>,
    /// Pixel rows per image.
    pub rows: usize,
    /// Pixel columns per image.
    pub cols: usize,
}

impl Dataset {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.rows * self.cols;
        &self.images[i * n..(i + 1) * n]
    }
    /// Subtracts `mean` and divides by `std` (e.g. MNIST's 0.1307 and 0.3081).
    pub fn normalize(&mut self, mean: f32, std: f32) {
        for p in &mut self.images {
            *p = (*p - mean) / std;
        }
    }

    /// Reads an images file and a labels file (IDX, raw or .gz) and checks they agree.
    pub fn from_idx(images: &Path, labels: &Path) -> Result<Dataset> {
        Dataset::from_arrays(
            read_idx(images)?,
            &images.display().to_string(),
            read_idx(labels)?,
            &labels.display().to_string(),
        )
    }

    /// Like [`from_idx`](Self::from_idx), from the files' bytes (raw or .gz), e.g. fetched by
    /// a web page; the names stand for the files in error messages.
    pub fn from_idx_bytes(
        images: &[u8],
        images_name: &str,
        labels: &[u8],
        labels_name: &str,
    ) -> Result<Dataset> {
        Dataset::from_arrays(
            read_idx_bytes(images, images_name)?,
            images_name,
            read_idx_bytes(labels, labels_name)?,
            labels_name,
        )
    }

    /// Checks that an images array and a labels array agree.
    fn from_arrays(im: IdxArray, images: &str, lb: IdxArray, labels: &str) -> Result<Dataset> {
        if im.dims.len() != 3 {
            return Err(Error::Io(format!(
                "{images}: expected 3 dimensions (count, rows, cols), found {:?}",
                im.dims
            )));
        }
        if lb.dims.len() != 1 {
            return Err(Error::Io(format!(
                "{labels}: expected 1 dimension (count), found {:?}",
                lb.dims
            )));
        }
        if im.dims[0] != lb.dims[0] {
            return Err(Error::Io(format!(
                "{images} holds {} images but {labels} holds {} labels",
                im.dims[0], lb.dims[0]
            )));
        }
        Ok(Dataset {
            images: im.data.iter().map(|&b| b as f32 / 255.0).collect(),
            labels: lb.data,
            rows: im.dims[1],
            cols: im.dims[2],
        })
    }
}

/// The train and test splits of an MNIST-format directory.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// The training images (`train-*` files).
    pub train: Dataset,
    /// The test images (`t10k-*` files).
    pub test: Dataset,
}

/// `dir/stem` or `dir/stem.gz`, whichever exists.
fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(&name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(Error::Io(format!(
        "{}: no {stem} or {stem}.gz (expected the MNIST file names)",
        dir.display()
    )))
}

impl Mnist {
    /// Loads `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
    /// and `t10k-labels-idx1-ubyte` (each raw or `.gz`) from `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        let dir = dir.as_ref();
        Ok(Mnist {
            train: Dataset::from_idx(
                &find(dir, "train-images-idx3-ubyte")?,
                &find(dir, "train-labels-idx1-ubyte")?,
            )?,
            test: Dataset::from_idx(
                &find(dir, "t10k-images-idx3-ubyte")?,
                &find(dir, "t10k-labels-idx1-ubyte")?,
            )?,
        })
    }
}

/// One batch on the host: images [b, 1, rows, cols] and labels.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Pixels, row-major, image after image.
    pub images: Vec<f32>,
    /// The class of each image.
    pub labels: Vec<usize>,
    /// `[images, 1, rows, cols]`.
    pub shape: [usize; 4],
}

impl Batch {
    /// The images as a device tensor [b, 1, rows, cols].
    pub fn images_on(&self, dev: &Device) -> Result<Tensor> {
        Tensor::from_slice(dev, &self.images, &self.shape)
    }
}

/// Batches of a data set in a seeded shuffled (or fixed) order.
#[derive(Clone, Debug)]
pub struct DataLoader<'a> {
    data: &'a Dataset,
    batch_size: usize,
    shuffle: Option<u64>,
    drop_last: bool,
}

impl<'a> DataLoader<'a> {
    /// Batches of `batch_size` samples (the last one smaller unless `drop_last`); a batch size
    /// of 0 is an error, as in PyTorch.
    pub fn new(data: &'a Dataset, batch_size: usize) -> Result<DataLoader<'a>> {
        if batch_size == 0 {
            return Err(Error::Invalid(
                "DataLoader: batch_size must be at least 1, got 0".into(),
            ));
        }
        Ok(DataLoader {
            data,
            batch_size,
            shuffle: None,
            drop_last: false,
        })
    }
    /// Shuffles each epoch with a generator seeded by `seed` and the epoch number.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }
    /// Drops the last batch when it is smaller than the batch size.
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }
    /// Number of batches per epoch.
    pub fn batches(&self) -> usize {
        if self.drop_last {
            self.data.len() / self.batch_size
        } else {
            self.data.len().div_ceil(self.batch_size)
        }
    }
    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: usize) -> impl Iterator<Item = Batch> + '_ {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        if let Some(seed) = self.shuffle {
            Rng::new(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).shuffle(&mut order);
        }
        let (bs, n) = (self.batch_size, self.batches());
        let pixels = self.data.rows * self.data.cols;
        (0..n).map(move |b| {
            let idx = &order[b * bs..((b + 1) * bs).min(order.len())];
            let mut images = Vec::with_capacity(idx.len() * pixels);
            for &i in idx {
                images.extend_from_slice(self.data.image(i));
            }
            Batch {
                images,
                labels: idx.iter().map(|&i| self.data.labels[i] as usize).collect(),
                shape: [idx.len(), 1, self.data.rows, self.data.cols],
            }
        })
    }
}
