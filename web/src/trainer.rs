//! LeNet-5 training and inference for the page, in plain Rust: what `lib.rs` hands to
//! JavaScript, and what the native tests of this crate run. Nothing here blocks: every readback
//! awaits, so it runs in a browser as it does natively.

use webgrad::data::{DataLoader, Dataset};
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::{Module, Sequential};
use webgrad::optim::{Adam, Optimizer};
use webgrad::{no_grad, weights, Device, Error, Reduction, Result, Tensor};

/// Batches of at most this many images in evaluation (one forward pass each).
const EVAL_BATCH: usize = 1000;

/// LeNet-5 (modern: ReLU, max pooling) with Adam, over MNIST-format digits.
pub struct Trainer {
    dev: Device,
    model: Sequential,
    opt: Adam,
    train: Dataset,
    test: Dataset,
    batch_size: usize,
    seed: u64,
    /// Where the next batch comes from: epoch and batch within it.
    epoch: usize,
    batch: usize,
}

impl Trainer {
    /// A freshly initialised LeNet-5 (from the device's generator seeded with `seed`) and an
    /// Adam optimizer with learning rate `lr`, as the native `lenet5` example trains it.
    pub fn new(
        dev: &Device,
        train: Dataset,
        test: Dataset,
        batch_size: usize,
        lr: f32,
        seed: u64,
    ) -> Result<Trainer> {
        for (name, d) in [("training", &train), ("test", &test)] {
            if (d.rows, d.cols) != (28, 28) || d.is_empty() {
                return Err(Error::Invalid(format!(
                    "the {name} digits must be 28 x 28 and at least one, got {} of {} x {}",
                    d.len(),
                    d.rows,
                    d.cols
                )));
            }
        }
        DataLoader::new(&train, batch_size)?;
        dev.manual_seed(seed);
        let model = LeNet5::build(dev, LeNetFlavour::Modern)?;
        let opt = Adam::new(model.parameters(), lr)?;
        Ok(Trainer {
            dev: dev.clone(),
            model,
            opt,
            train,
            test,
            batch_size,
            seed,
            epoch: 0,
            batch: 0,
        })
    }

    /// The device it trains on.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// The model (for a checkpoint or a prediction).
    pub fn model(&self) -> &Sequential {
        &self.model
    }

    /// Batches in one epoch (the last one may be smaller).
    pub fn batches_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.batch_size)
    }

    /// (epoch, batch within it) of the next batch.
    pub fn position(&self) -> (usize, usize) {
        (self.epoch, self.batch)
    }

    /// Trains on the next `n` batches (not past the end of the epoch) and returns the mean
    /// loss of the last one, still on the device: reading it back is the caller's choice.
    pub fn train_batches(&mut self, n: usize) -> Result<Option<Tensor>> {
        let loader = DataLoader::new(&self.train, self.batch_size)?.shuffle(self.seed);
        let mut last = None;
        for b in loader.epoch(self.epoch).skip(self.batch).take(n) {
            let x = b.images_on(&self.dev)?;
            let loss = self
                .model
                .forward(&x)?
                .cross_entropy(&b.labels, Reduction::Mean)?;
            self.opt.zero_grad();
            loss.backward()?;
            self.opt.step()?;
            last = Some(loss);
            self.batch += 1;
        }
        if self.batch >= self.batches_per_epoch() {
            self.epoch += 1;
            self.batch = 0;
        }
        Ok(last)
    }

    /// The share of the first `limit` test digits classified correctly.
    pub async fn test_accuracy(&self, limit: usize) -> Result<f32> {
        let classes = self.test_classes(limit).await?;
        let correct = classes
            .iter()
            .zip(&self.test.labels)
            .filter(|(c, l)| c == l)
            .count();
        Ok(correct as f32 / classes.len().max(1) as f32)
    }

    /// The class the model gives each of the first `limit` test digits.
    pub async fn test_classes(&self, limit: usize) -> Result<Vec<u8>> {
        let n = limit.min(self.test.len());
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(EVAL_BATCH) {
            let end = (start + EVAL_BATCH).min(n);
            let pixels = &self.test.images[start * 784..end * 784];
            let x = Tensor::from_slice(&self.dev, pixels, &[end - start, 1, 28, 28])?;
            let classes = no_grad(|| self.model.forward(&x)?.argmax(1, false))?;
            out.extend(classes.to_vec_async().await?.iter().map(|&c| c as u8));
        }
        Ok(out)
    }

    /// The probability of each class for one 28 x 28 image (pixels in [0, 1], row-major).
    pub async fn predict(&self, pixels: &[f32]) -> Result<Vec<f32>> {
        if pixels.len() != 784 {
            return Err(Error::Invalid(format!(
                "predict: expected 784 pixels (28 x 28), got {}",
                pixels.len()
            )));
        }
        let x = Tensor::from_slice(&self.dev, pixels, &[1, 1, 28, 28])?;
        let p = no_grad(|| self.model.forward(&x)?.softmax(1))?;
        p.to_vec_async().await
    }

    /// Loads a checkpoint (the safetensors file the native `lenet5` example writes).
    pub fn load_checkpoint(&self, bytes: &[u8], name: &str) -> Result<()> {
        weights::load_module_bytes(bytes, &self.model, name, true).map(|_| ())
    }

    /// The model's parameters as a safetensors file.
    pub async fn checkpoint(&self) -> Result<Vec<u8>> {
        weights::module_to_bytes_async(&self.model).await
    }
}
