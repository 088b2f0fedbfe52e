//! A short training run on the bundled digits: 200 Adam steps of batch 32 must at least halve
//! the loss and reach 85% on 1,000 test digits; the same seed gives the same losses.

mod common;
use common::*;
use webgrad::data::{DataLoader, Mnist};
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::Module;
use webgrad::optim::{Adam, Optimizer};
use webgrad::{no_grad, Reduction};

fn run(seed: u64, steps: usize) -> (Vec<f32>, f64) {
    let dev = device();
    let data = Mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-subset")).unwrap();
    dev.manual_seed(seed);
    let model = LeNet5::build(dev, LeNetFlavour::Modern).unwrap();
    let mut opt = Adam::new(model.parameters(), 1e-3).unwrap();
    let loader = DataLoader::new(&data.train, 32).unwrap().shuffle(seed);
    let mut losses = Vec::new();
    for batch in loader.epoch(0).take(steps) {
        let loss = model
            .forward(&batch.images_on(dev).unwrap())
            .unwrap()
            .cross_entropy(&batch.labels, Reduction::Mean)
            .unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
        losses.push(loss.detach());
    }
    let losses: Vec<f32> = losses.iter().map(|l| l.item().unwrap()).collect();
    let test = DataLoader::new(&data.test, 1000)
        .unwrap()
        .epoch(0)
        .next()
        .unwrap();
    let pred = no_grad(|| {
        model
            .forward(&test.images_on(dev).unwrap())
            .unwrap()
            .argmax(1, false)
            .unwrap()
    });
    let pred = pred.to_vec().unwrap();
    let correct = pred
        .iter()
        .zip(&test.labels)
        .filter(|(p, &l)| **p as usize == l)
        .count();
    (losses, correct as f64 / test.labels.len() as f64)
}

#[test]
fn two_hundred_steps_halve_the_loss_and_learn_the_digits() {
    let (losses, acc) = run(0, 200);
    let first: f32 = losses[..20].iter().sum::<f32>() / 20.0;
    let last: f32 = losses[180..].iter().sum::<f32>() / 20.0;
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    assert!(acc > 0.85, "test accuracy {acc}");
    // Same seed, same run.
    let (again, _) = run(0, 10);
    assert_eq!(&again[..], &losses[..10]);
}
