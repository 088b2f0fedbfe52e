//! Train ResNet-20 (`webgrad::models::ResNet20`) on Fashion-MNIST.
//!
//! ```text
//! apt-get install -y dataset-fashion-mnist     # the data, if missing
//! cargo run --release --example resnet20 -- --data /usr/share/datasets/fashion-mnist --epochs 8
//! cargo run --release --example resnet20 -- --epochs 1 --limit 20   # a short slice, to try
//! ```
//!
//! The network takes the 1 x 28 x 28 images as they are (`ResNet20::new(dev, 1, 10)`: a
//! 1-channel first convolution; the stages run at 28 x 28, 14 x 14 and 7 x 7 and the global
//! average pooling averages the 7 x 7 maps), pixels / 255 normalised with Fashion-MNIST's mean
//! 0.2860 and standard deviation 0.3530. SGD with momentum 0.9 and weight decay 5e-4, a cosine
//! learning-rate schedule from 0.1 over the epochs, batch 128, cross-entropy. After each epoch
//! it prints the epoch's time and the test accuracy and writes `--out`/resnet20.safetensors
//! (PyTorch's state_dict names: `conv1.weight`, `layer1.0.bn1.running_mean`, ...).
//! `--limit N` trains on at most N batches per epoch and tests on at most N x batch-size
//! images (a quick check; the full data otherwise).

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use webgrad::data::{DataLoader, Dataset, Mnist};
use webgrad::models::ResNet20;
use webgrad::nn::Module;
use webgrad::optim::{CosineLr, LrSchedule, Optimizer, Sgd};
use webgrad::{no_grad, weights, Device, Reduction, Result};

/// Train ResNet-20 on Fashion-MNIST (or any MNIST-format data) with webgrad.
#[derive(Parser, Debug)]
#[command(name = "resnet20")]
struct Args {
    /// Folder of MNIST-format IDX files (raw or .gz).
    #[arg(long, default_value = "/usr/share/datasets/fashion-mnist")]
    data: PathBuf,
    /// Epochs to train.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    epochs: u32,
    /// Images per batch.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    batch_size: u32,
    /// The learning rate at the start of the cosine schedule.
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    /// At most this many training batches per epoch, and test images per evaluation this
    /// many times the batch size (all without it).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
    /// Seed of the initialisation and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for the checkpoint.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
}

/// Fashion-MNIST's pixel mean and standard deviation (of pixels / 255, training set).
const MEAN: f32 = 0.2860;
const STD: f32 = 0.3530;

fn accuracy(dev: &Device, model: &ResNet20, data: &Dataset, max_images: usize) -> Result<f64> {
    let (mut correct, mut seen) = (0usize, 0usize);
    no_grad(|| -> Result<()> {
        for batch in DataLoader::new(data, 500)?.epoch(0) {
            if seen >= max_images {
                break;
            }
            let pred = model
                .forward(&batch.images_on(dev)?)?
                .argmax(1, false)?
                .to_vec()?;
            correct += pred
                .iter()
                .zip(&batch.labels)
                .filter(|(p, &l)| **p as usize == l)
                .count();
            seen += batch.labels.len();
        }
        Ok(())
    })?;
    Ok(correct as f64 / seen.max(1) as f64)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut data = Mnist::load(&args.data)?;
    data.train.normalize(MEAN, STD);
    data.test.normalize(MEAN, STD);
    let dev = Device::new()?;
    dev.manual_seed(args.seed);
    println!(
        "adapter: {}\ndata: {} ({} train / {} test images)",
        dev.info(),
        args.data.display(),
        data.train.len(),
        data.test.len()
    );
    let mut model = ResNet20::new(&dev, 1, 10)?;
    println!("ResNet-20: {} parameters", model.num_parameters());
    let mut opt = Sgd::new(model.parameters(), args.lr)?
        .with_momentum(0.9)
        .with_weight_decay(5e-4);
    let epochs = args.epochs as usize;
    let schedule = CosineLr {
        base_lr: args.lr,
        t_max: epochs,
        eta_min: 0.0,
    };
    let bs = args.batch_size as usize;
    let loader = DataLoader::new(&data.train, bs)?.shuffle(args.seed);
    let batches = args
        .limit
        .map_or(loader.batches(), |l| (l as usize).min(loader.batches()));
    let test_images = args.limit.map_or(data.test.len(), |l| l as usize * bs);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| webgrad::Error::Io(format!("{}: {e}", args.out.display())))?;
    for epoch in 0..epochs {
        opt.set_learning_rate(schedule.lr_at(epoch));
        model.set_training(true);
        let start = Instant::now();
        let mut last_loss = f32::NAN;
        for (step, batch) in loader.epoch(epoch).take(batches).enumerate() {
            let loss = model
                .forward(&batch.images_on(&dev)?)?
                .cross_entropy(&batch.labels, Reduction::Mean)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            if step % 50 == 49 || step + 1 == batches {
                last_loss = loss.item()?;
                println!(
                    "  epoch {} step {}/{batches}: loss {last_loss:.4} ({:.2} s/step)",
                    epoch + 1,
                    step + 1,
                    start.elapsed().as_secs_f64() / (step + 1) as f64
                );
            }
        }
        dev.sync()?;
        let train_s = start.elapsed().as_secs_f64();
        model.set_training(false);
        let acc = accuracy(&dev, &model, &data.test, test_images)?;
        println!(
            "epoch {}: {train_s:.1} s, lr {:.4}, last loss {last_loss:.4}, test accuracy {:.2}%",
            epoch + 1,
            opt.learning_rate(),
            acc * 100.0
        );
        weights::save_module(args.out.join("resnet20.safetensors"), &model)?;
    }
    println!(
        "checkpoint: {}",
        args.out.join("resnet20.safetensors").display()
    );
    Ok(())
}
