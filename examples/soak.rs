//! Memory over a long run of the lenet5 example's training loop (batch uploads every step, a
//! loss readback every 20 steps, losses and predictions held until the epoch ends):
//! `cargo run --release --example soak [-- STEPS]`.

use webgrad::data::{DataLoader, Mnist};
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::Module;
use webgrad::optim::{Adam, Optimizer};
use webgrad::{Device, Reduction, Result};

fn main() -> Result<()> {
    let steps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let dev = Device::new()?;
    let data = Mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-subset"))?;
    let model = LeNet5::build(&dev, LeNetFlavour::Modern)?;
    let mut opt = Adam::new(model.parameters(), 1e-3)?;
    let loader = DataLoader::new(&data.train, 64)?.shuffle(1);
    let mut step = 0;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    'outer: for epoch in 0.. {
        let mut losses = Vec::new();
        let mut preds = Vec::new();
        for (i, batch) in loader.epoch(epoch).enumerate() {
            let x = batch.images_on(&dev)?;
            let logits = model.forward(&x)?;
            let loss = logits.cross_entropy(&batch.labels, Reduction::Mean)?;
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            losses.push(loss.detach());
            preds.push(logits.argmax(1, false)?);
            if i % 20 == 19 {
                losses.last().unwrap().item()?;
            }
            step += 1;
            if [100, 200, 500, 1000, 2000, 3000, 5000, 10000].contains(&step) || step == steps {
                println!(
                    "step {step:>6}: pool {:.2} MiB, live tensors {:.2} MiB",
                    mib(dev.memory_allocated()),
                    mib(dev.memory_in_use())
                );
            }
            if step >= steps {
                break 'outer;
            }
        }
        for l in &losses {
            l.item()?;
        }
    }
    Ok(())
}
