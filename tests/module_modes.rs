//! The `Module` trait's modes and compositions: `train()` / `eval()` change what Dropout and
//! BatchNorm compute (and reach every child of a `Sequential`), boxed modules are modules, and
//! every module and model is `Send + Sync`.

mod common;
use common::*;
use webgrad::models::{LeNet5, LeNetFlavour};
use webgrad::nn::*;

#[test]
fn dropout_and_batch_norm_follow_train_and_eval() {
    let dev = device();
    let shape = [4, 3, 5, 5];
    let x = tensor(&uniform(3, numel(&shape), 1.0, 3.0), &shape);
    let input = x.to_vec().unwrap();

    // Dropout: zeroes and rescales in training, the identity in eval mode.
    let mut drop = Dropout::new(0.5);
    assert_eq!(drop.is_training(), Some(true));
    let y = drop.forward(&x).unwrap().to_vec().unwrap();
    assert!(y.contains(&0.0));
    assert!(y
        .iter()
        .zip(&input)
        .all(|(&y, &x)| y == 0.0 || y == 2.0 * x));
    drop.eval();
    assert_eq!(drop.is_training(), Some(false));
    assert_eq!(drop.forward(&x).unwrap().to_vec().unwrap(), input);
    drop.train();
    assert_eq!(drop.is_training(), Some(true));
    assert_ne!(drop.forward(&x).unwrap().to_vec().unwrap(), input);

    // BatchNorm2d: batch statistics (each channel's output has mean 0) and running
    // statistics updated in training; the running statistics, untouched, in eval mode.
    let mut bn = BatchNorm2d::new(dev, 3).unwrap();
    let y = bn.forward(&x).unwrap().to_vec().unwrap();
    let channel_mean = |v: &[f32], c: usize| -> f64 {
        let per = 25;
        let vals: Vec<f64> = (0..4)
            .flat_map(|n| &v[(n * 3 + c) * per..(n * 3 + c + 1) * per])
            .map(|&v| v as f64)
            .collect();
        vals.iter().sum::<f64>() / vals.len() as f64
    };
    for c in 0..3 {
        assert!(channel_mean(&y, c).abs() < 1e-4, "channel {c}");
    }
    let running = bn.running_mean.to_vec().unwrap();
    assert!(running.iter().all(|&m| m > 0.1), "{running:?}");
    bn.eval();
    assert_eq!(bn.is_training(), Some(false));
    let y = bn.forward(&x).unwrap().to_vec().unwrap();
    let var = bn.running_var.to_vec().unwrap();
    let want: Vec<f64> = input
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / 25) % 3;
            (v as f64 - running[c] as f64) / (var[c] as f64 + 1e-5).sqrt()
        })
        .collect();
    assert_close(&y, &want, 1e-5, 1e-5, "BatchNorm2d in eval mode");
    assert_eq!(
        bn.running_mean.to_vec().unwrap(),
        running,
        "eval keeps the statistics"
    );
    bn.train();
    assert_eq!(bn.is_training(), Some(true));
}

#[test]
fn sequential_passes_the_mode_to_every_child() {
    let dev = device();
    let mut m = Sequential::new()
        .add("bn", BatchNorm1d::new(dev, 6).unwrap())
        .add("relu", ReLU)
        .add("drop", Dropout::new(0.5));
    assert_eq!(ReLU.is_training(), None);
    assert_eq!(m.is_training(), Some(true));
    let x = tensor(&randn(4, 5 * 6), &[5, 6]);
    m.eval();
    assert_eq!(m.is_training(), Some(false));
    assert!(m.layers().all(|(_, l)| l.is_training() != Some(true)));
    let a = m.forward(&x).unwrap().to_vec().unwrap();
    assert_eq!(a, m.forward(&x).unwrap().to_vec().unwrap());
    // In eval mode with fresh statistics, BatchNorm1d is x / sqrt(1 + eps).
    let want: Vec<f64> = x
        .to_vec()
        .unwrap()
        .iter()
        .map(|&v| (v as f64 / (1.0f64 + 1e-5).sqrt()).max(0.0))
        .collect();
    assert_close(&a, &want, 1e-6, 1e-5, "Sequential in eval mode");
    m.train();
    assert!(m.layers().all(|(_, l)| l.is_training() != Some(false)));
}

#[test]
fn boxed_modules_compose() {
    let dev = device();
    let layers: Vec<Box<dyn Module>> = vec![
        Box::new(LinearConfig::new(4, 3).init(dev).unwrap()),
        Box::new(ReLU),
        Box::new(Dropout::new(0.25)),
    ];
    let mut m = Sequential::new();
    for (i, layer) in layers.into_iter().enumerate() {
        m = m.add(&i.to_string(), layer);
    }
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias"]);
    let mut boxed: Box<dyn Module> = Box::new(m);
    assert_eq!(boxed.num_parameters(), 15);
    boxed.eval();
    assert_eq!(boxed.is_training(), Some(false));
    let x = tensor(&randn(5, 8), &[2, 4]);
    let a = boxed.forward(&x).unwrap().to_vec().unwrap();
    assert_eq!(a, boxed.forward(&x).unwrap().to_vec().unwrap());
    assert_eq!(boxed.describe(), "Sequential(3 layers)");
}

/// Compile-time: every module and the models are `Send + Sync` (a model may move to or be
/// shared with a worker thread).
#[test]
fn modules_and_models_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn value_send_sync<T: Send + Sync>(_: &T) {}
    let model = LeNet5::build(device(), LeNetFlavour::Modern).unwrap();
    value_send_sync(&model);
    send_sync::<Box<dyn Module>>();
    send_sync::<Sequential>();
    send_sync::<Linear>();
    send_sync::<Conv2d>();
    send_sync::<MaxPool2d>();
    send_sync::<AvgPool2d>();
    send_sync::<BatchNorm1d>();
    send_sync::<BatchNorm2d>();
    send_sync::<LayerNorm>();
    send_sync::<GroupNorm>();
    send_sync::<Dropout>();
    send_sync::<Flatten>();
    send_sync::<ReLU>();
    send_sync::<Tanh>();
    send_sync::<Sigmoid>();
    send_sync::<SiLU>();
    send_sync::<GELU>();
    send_sync::<LeakyReLU>();
    send_sync::<ELU>();
    send_sync::<Softplus>();
    send_sync::<Hardtanh>();
    send_sync::<LogSoftmax>();
    send_sync::<CrossEntropyLoss>();
    send_sync::<NLLLoss>();
    send_sync::<ZeroPad2d>();
    send_sync::<ConstantPad2d>();
    send_sync::<ReflectionPad2d>();
    send_sync::<ReplicationPad2d>();
    send_sync::<CircularPad2d>();
}
